//! Token renewal under load, on a multi-thread runtime. Not criterion: the figures are a
//! completion time with a fetch count, and latency percentiles.
//!
//! 1. Refresh storm: the cached token has expired (no request touched it while it was
//!    due for renewal) and 10 000 requests, spawned as tasks and parked on a gate, are
//!    released at once; the fetch takes 5 ms. Measured: the time from the release until
//!    every request has its response, the fetches it took (one expected), how many
//!    requests found no usable token and waited, and the same 10 000 requests with a
//!    fresh token. Then the storm's floor: the same requests, each released before a
//!    bare 5 ms timer has fired waiting for it on a tokio `watch` and then sending with
//!    the fresh token; from both, what each waiting request added to fetch + fresh.
//! 2. Renewal ahead of expiry: per-request latency (p50, p99) while a background
//!    renewal is in flight (the fetch takes 50 ms; requests keep the current token), and
//!    in steady state.
//! 3. Waiters, on one thread: what a request that waits for a fetch costs over one that
//!    finds a fresh token, against a request that waits on a bare tokio `watch` first.
//!    Each variant runs alone with its name (`waiters_layer`, `waiters_bare`,
//!    `waiters_fresh`), so that callgrind can count its instructions.
//!
//! `cargo bench --bench refresh` (a part's name to run only the parts it names)

mod support;

use std::{
    future::{poll_fn, Future},
    hint::black_box,
    mem,
    pin::pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use tokio::sync::watch;
use tower::{service_fn, Layer, ServiceExt};
use tower_oauth::{
    body::ResponseBody, BoxError, OAuth, OAuthLayer, Token, TokenHandle, TokenRequest, TokenStatus,
};

use support::{quantile, send_now, static_request, Answer, TOKEN};

const STORM_REQUESTS: usize = 10_000;
const STORM_FETCH: Duration = Duration::from_millis(5);
const STORM_ROUNDS: usize = 30;

const RENEWAL_FETCH: Duration = Duration::from_millis(50);
const RENEWAL_ROUNDS: usize = 5;

/// How the next token fetch behaves; the benchmark changes it between phases.
#[derive(Clone, Copy)]
struct Plan {
    delay: Duration,
    lifetime: Duration,
}

/// A token fetcher that follows `plan`, counting the fetches it finished.
#[derive(Clone)]
struct Fetcher {
    plan: Arc<Mutex<Plan>>,
    finished: Arc<AtomicU64>,
}

impl Fetcher {
    fn new(plan: Plan) -> Self {
        Self {
            plan: Arc::new(Mutex::new(plan)),
            finished: Arc::default(),
        }
    }

    fn set(&self, plan: Plan) {
        *self.plan.lock().unwrap() = plan;
    }

    fn finished(&self) -> u64 {
        self.finished.load(Ordering::SeqCst)
    }

    fn layer(
        &self,
        builder: impl FnOnce(tower_oauth::OAuthLayerBuilder) -> tower_oauth::OAuthLayerBuilder,
    ) -> OAuthLayer {
        let this = self.clone();
        let fetcher = service_fn(move |_: TokenRequest| {
            let plan = *this.plan.lock().unwrap();
            let finished = this.finished.clone();
            async move {
                tokio::time::sleep(plan.delay).await;
                finished.fetch_add(1, Ordering::SeqCst);
                Ok::<_, BoxError>(Token::new(TOKEN, Some(plan.lifetime)))
            }
        });
        builder(OAuthLayer::with_fetcher(fetcher)).build()
    }
}

fn status(handle: &TokenHandle) -> TokenStatus {
    handle.state()[0].status
}

/// Waits (bounded) until the token has reached `wanted`, which its timers set.
async fn until_status(handle: &TokenHandle, wanted: TokenStatus) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(handle) != wanted {
        assert!(Instant::now() < deadline, "token never became {wanted:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One storm: `STORM_REQUESTS` tasks, spawned and parked first, then released at once.
struct Storm {
    /// From the release to the last response.
    elapsed: Duration,
    /// Requests whose first poll found no usable token and waited for the fetch.
    waited: usize,
}

/// How the released requests get their token.
#[derive(Clone, Copy, PartialEq)]
enum Wait {
    /// From the layer: the real storm (or none, when the token is fresh).
    Layer,
    /// The storm's floor: a request released before the "fetch" has ended (a bare 5 ms
    /// timer started at the release) waits on a tokio `watch` for it, then sends through
    /// the layer with its fresh token. What waking that many waiters costs with nothing
    /// of the layer's own waiting path.
    Bare,
}

/// Sends one request through `svc` once `token` says the token is there, and counts in
/// `waited` a wait: on `token` (the floor's), or in the layer (a first poll that is
/// pending).
async fn send_counting_waits(
    svc: OAuth<Answer>,
    mut token: watch::Receiver<bool>,
    waited: Arc<AtomicUsize>,
) -> Result<Response<ResponseBody<Full<Bytes>>>, BoxError> {
    if !*token.borrow() {
        waited.fetch_add(1, Ordering::Relaxed);
        token.wait_for(|t| *t).await.expect("the token comes");
    }
    let mut fut = pin!(svc.oneshot(static_request()));
    let mut first = true;
    poll_fn(|cx| {
        let poll = fut.as_mut().poll(cx);
        if mem::take(&mut first) && poll.is_pending() {
            waited.fetch_add(1, Ordering::Relaxed);
        }
        poll
    })
    .await
}

async fn fire(svc: &OAuth<Answer>, how: Wait) -> Storm {
    let (go, gate) = watch::channel(false);
    let (fetched, token) = watch::channel(how == Wait::Layer);
    let parked = Arc::new(AtomicUsize::new(0));
    let waited = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..STORM_REQUESTS)
        .map(|_| {
            let (svc, mut gate, token) = (svc.clone(), gate.clone(), token.clone());
            let (parked, waited) = (parked.clone(), waited.clone());
            tokio::spawn(async move {
                parked.fetch_add(1, Ordering::SeqCst);
                gate.wait_for(|go| *go).await.expect("the gate stays open");
                send_counting_waits(svc, token, waited).await
            })
        })
        .collect();
    while parked.load(Ordering::SeqCst) < STORM_REQUESTS {
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    go.send_replace(true);
    if how == Wait::Bare {
        tokio::spawn(async move {
            tokio::time::sleep(STORM_FETCH).await;
            fetched.send_replace(true);
        });
    }
    for task in tasks {
        let res = task.await.expect("no panic").expect("the request succeeds");
        assert_eq!(res.status(), StatusCode::OK);
    }
    Storm {
        elapsed: started.elapsed(),
        waited: waited.load(Ordering::Relaxed),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn storm(rt: &tokio::runtime::Runtime) {
    const SHORT: Duration = Duration::from_millis(30);
    const LONG: Duration = Duration::from_secs(3600);
    let fetcher = Fetcher::new(Plan {
        delay: STORM_FETCH,
        lifetime: SHORT,
    });
    let layer = fetcher.layer(|b| b);
    let handle = layer.handle();
    let svc = layer.layer(Answer(StatusCode::OK));

    let mut rounds = Vec::new();
    rt.block_on(async {
        handle.warm_up().await.expect("warm-up");
        for _ in 0..STORM_ROUNDS {
            // A short-lived token, left unused until it expires: no renewal ahead of
            // expiry starts, so the storm finds no usable token.
            fetcher.set(Plan {
                delay: STORM_FETCH,
                lifetime: SHORT,
            });
            handle.force_refresh().await.expect("refresh");
            until_status(&handle, TokenStatus::Expired).await;
            fetcher.set(Plan {
                delay: STORM_FETCH,
                lifetime: LONG,
            });

            let before = handle.fetches();
            let storm = fire(&svc, Wait::Layer).await;
            let fetches = handle.fetches() - before;
            assert_eq!(
                fetches, 1,
                "a storm of {STORM_REQUESTS} requests makes one fetch"
            );
            assert_eq!(status(&handle), TokenStatus::Fresh);

            // The same requests with the fresh token: what the storm costs without a fetch.
            let fresh = fire(&svc, Wait::Layer).await;
            assert_eq!(fresh.waited, 0, "with a fresh token nobody waits");
            let bare = fire(&svc, Wait::Bare).await;
            assert_eq!(handle.fetches() - before, 1, "a fresh token needs no fetch");
            rounds.push(Round {
                storm,
                fresh: fresh.elapsed,
                bare,
            });
        }
    });

    let med = |f: &dyn Fn(&Round) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let storm = med(&|r| ms(r.storm.elapsed));
    let fresh = med(&|r| ms(r.fresh));
    println!(
        "refresh storm: {STORM_REQUESTS} requests, token expired, fetch {} ms, {STORM_ROUNDS} rounds (medians)",
        ms(STORM_FETCH)
    );
    println!(
        "  all complete after     {storm:7.2} ms   (min {:.2}, max {:.2})",
        rounds
            .iter()
            .map(|r| ms(r.storm.elapsed))
            .fold(f64::MAX, f64::min),
        rounds
            .iter()
            .map(|r| ms(r.storm.elapsed))
            .fold(0.0, f64::max),
    );
    println!("  fresh token, no fetch  {fresh:7.2} ms");
    println!(
        "  storm / (fetch + fresh)   {:.2}",
        med(&|r| ms(r.storm.elapsed) / (ms(STORM_FETCH) + ms(r.fresh)))
    );
    println!(
        "  waited for the fetch   {:7.0} of {STORM_REQUESTS} requests (min {}, max {})",
        med(&|r| r.storm.waited as f64),
        rounds.iter().map(|r| r.storm.waited).min().unwrap(),
        rounds.iter().map(|r| r.storm.waited).max().unwrap(),
    );
    println!(
        "  per waiter, over fetch + fresh: layer {:.0} ns, bare watch wait {:.0} ns ({:.0} waited, all in {:.2} ms)",
        med(&|r| r.per_waiter(&r.storm)),
        med(&|r| r.per_waiter(&r.bare)),
        med(&|r| r.bare.waited as f64),
        med(&|r| ms(r.bare.elapsed)),
    );
    println!(
        "  per waiter, layer / bare  {:.2}",
        med(&|r| r.per_waiter(&r.storm) / r.per_waiter(&r.bare))
    );
    println!("  fetches per storm      1 (asserted for each of {STORM_ROUNDS} rounds)");
}

/// One round of the storm: the storm, the same requests with a fresh token, and the
/// floor (`Wait::Bare`).
struct Round {
    storm: Storm,
    fresh: Duration,
    bare: Storm,
}

impl Round {
    /// What each request that waited added to fetch + fresh, in nanoseconds.
    fn per_waiter(&self, storm: &Storm) -> f64 {
        let over = storm.elapsed.as_secs_f64() - (STORM_FETCH + self.fresh).as_secs_f64();
        over * 1e9 / storm.waited.max(1) as f64
    }
}

/// Sends requests one after another from this thread for as long as `go` says, and
/// records each one's latency in nanoseconds.
fn sample(svc: &mut OAuth<Answer>, out: &mut Vec<u64>, mut go: impl FnMut() -> bool) {
    while go() {
        let t = Instant::now();
        let res = send_now(svc, static_request());
        black_box(res.status());
        drop(res);
        out.push(t.elapsed().as_nanos() as u64);
    }
}

fn renewal(rt: &tokio::runtime::Runtime) {
    // Renewal is due after 1 s, the token expires after 1.8 s: the 50 ms renewal fetch
    // ends long before the current token stops being usable.
    let plan = Plan {
        delay: RENEWAL_FETCH,
        lifetime: Duration::from_secs(2),
    };
    let fetcher = Fetcher::new(plan);
    let layer = fetcher.layer(|b| b.renew_ahead(Duration::from_secs(1)));
    let handle = layer.handle();
    let mut svc = layer.layer(Answer(StatusCode::OK));
    let _rt = rt.enter();
    rt.block_on(handle.warm_up()).expect("warm-up");

    let mut steady = Vec::with_capacity(4 << 20);
    let mut renewing = Vec::with_capacity(4 << 20);
    let mut windows = Vec::new();
    for _ in 0..RENEWAL_ROUNDS {
        // Steady state: a fresh token, nothing in flight, for as long as a renewal takes.
        assert_eq!(status(&handle), TokenStatus::Fresh);
        let end = Instant::now() + RENEWAL_FETCH;
        sample(&mut svc, &mut steady, || Instant::now() < end);

        // Renewal: the first request in the renew-ahead window starts the fetch; sample
        // until the fetcher has answered.
        rt.block_on(until_status(&handle, TokenStatus::RenewalDue));
        let (done, fetches) = (fetcher.finished(), handle.fetches());
        let started = Instant::now();
        sample(&mut svc, &mut renewing, || fetcher.finished() == done);
        windows.push(started.elapsed());
        assert_eq!(handle.fetches(), fetches + 1, "one background renewal");
        rt.block_on(until_status(&handle, TokenStatus::Fresh));
    }

    steady.sort_unstable();
    renewing.sort_unstable();
    let (s50, s99) = (quantile(&steady, 0.5), quantile(&steady, 0.99));
    let (r50, r99) = (quantile(&renewing, 0.5), quantile(&renewing, 0.99));
    println!(
        "renewal ahead of expiry: fetch {} ms, {RENEWAL_ROUNDS} rounds, renewal windows median {:.1} ms",
        ms(RENEWAL_FETCH),
        ms(median(windows))
    );
    println!(
        "  steady state     p50 {s50:6} ns   p99 {s99:6} ns   ({} requests)",
        steady.len()
    );
    println!(
        "  during renewal   p50 {r50:6} ns   p99 {r99:6} ns   ({} requests)",
        renewing.len()
    );
    println!(
        "  during / steady  p50 {:.2}x        p99 {:.2}x",
        r50 as f64 / s50 as f64,
        r99 as f64 / s99 as f64
    );
}

/// Requests and rounds of the waiters part.
const WAITERS: usize = 2_000;
const WAITER_ROUNDS: usize = 9;

/// How the requests of a waiters round get their token.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Waiters {
    /// The token is fresh: nobody waits (the baseline).
    Fresh,
    /// Each request first waits on a bare tokio `watch`, then sends with the fresh token.
    Bare,
    /// The cache is empty: each request waits in the layer for its one fetch.
    Layer,
}

/// One waiters round on a current-thread runtime: `WAITERS` requests are spawned and
/// each polled up to where it waits (none for `Fresh`); then the fetch, or the bare
/// gate, ends and every request completes. Returns the time from the first spawn to the
/// last response.
fn waiters_round(how: Waiters) -> Duration {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (open, fetch_gate) = watch::channel(false);
        let fetcher = service_fn(move |_: TokenRequest| {
            let mut gate = fetch_gate.clone();
            async move {
                gate.wait_for(|open| *open).await?;
                Ok::<_, BoxError>(Token::new(TOKEN, Some(Duration::from_secs(3600))))
            }
        });
        let layer = OAuthLayer::with_fetcher(fetcher).build();
        let handle = layer.handle();
        let svc = layer.layer(Answer(StatusCode::OK));
        if how != Waiters::Layer {
            open.send_replace(true);
            handle.warm_up().await.expect("warm-up");
        }
        let (release, released) = watch::channel(how != Waiters::Bare);
        let waiting = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = (0..WAITERS)
            .map(|_| {
                let (svc, released, waiting) = (svc.clone(), released.clone(), waiting.clone());
                tokio::spawn(send_counting_waits(svc, released, waiting))
            })
            .collect();
        if how != Waiters::Fresh {
            while waiting.load(Ordering::Relaxed) < WAITERS {
                tokio::task::yield_now().await;
            }
        }
        open.send_replace(true);
        release.send_replace(true);
        for task in tasks {
            let res = task.await.expect("no panic").expect("the request succeeds");
            assert_eq!(res.status(), StatusCode::OK);
        }
        let elapsed = started.elapsed();
        let expected = if how == Waiters::Fresh { 0 } else { WAITERS };
        assert_eq!(
            waiting.load(Ordering::Relaxed),
            expected,
            "{how:?}: who waited"
        );
        assert_eq!(handle.fetches(), 1, "one fetch");
        elapsed
    })
}

fn waiters(which: &[Waiters]) {
    let per_request = |how: Waiters| {
        let mut rounds: Vec<Duration> = (0..WAITER_ROUNDS).map(|_| waiters_round(how)).collect();
        rounds.sort();
        rounds[rounds.len() / 2].as_secs_f64() * 1e9 / WAITERS as f64
    };
    let figures: Vec<(Waiters, f64)> = which.iter().map(|&how| (how, per_request(how))).collect();
    println!(
        "waiters: {WAITERS} requests on one thread, {WAITER_ROUNDS} rounds (medians, per request)"
    );
    for (how, ns) in &figures {
        println!("  {:<6} {ns:7.0} ns", format!("{how:?}").to_lowercase());
    }
    if let [(Waiters::Fresh, fresh), (Waiters::Bare, bare), (Waiters::Layer, layer)] = figures[..] {
        println!(
            "  per waiter over fresh: bare {:.0} ns, layer {:.0} ns",
            bare - fresh,
            layer - fresh
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument picks the parts whose name
    // contains it.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if wanted("storm") {
        storm(&rt);
    }
    if wanted("renewal") {
        renewal(&rt);
    }
    // Each alone (`waiters_layer`, ...) to count its instructions under callgrind.
    let which: Vec<Waiters> = [
        ("waiters_fresh", Waiters::Fresh),
        ("waiters_bare", Waiters::Bare),
        ("waiters_layer", Waiters::Layer),
    ]
    .into_iter()
    .filter(|(name, _)| wanted(name))
    .map(|(_, how)| how)
    .collect();
    if !which.is_empty() {
        waiters(&which);
    }
}
