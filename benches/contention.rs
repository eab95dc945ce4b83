//! Throughput with every core sending through one shared service (clones of it), for
//! `OAuth<S>` and the same baselines as `hot_path`: the bare service, tower-http's
//! `AddAuthorization`, the `Mutex` and `RwLock` token caches, and, for context, the
//! `Mutex` cache keeping a copy of each request for a replay.
//!
//! One criterion iteration is one request; each sample spreads its iterations over one
//! thread per core, started together, and counts the wall time until the last one ends.
//! The figure is therefore wall time per request with all cores busy.
//!
//! A second group, `contention/clone_per_request_2_threads`, sends from two threads a
//! request each on a new clone of the shared service, `svc.clone().oneshot(req)`, as
//! axum handlers do with a client in their state: `OAuth<S>`, `AddAuthorization`, the
//! `Mutex` cache and, for context, the bare service. At the end it prints each one's
//! mean time per request and its ratio to the `Mutex` cache.
//!
//! `cargo bench --bench contention` (a quick check:
//! `cargo bench --bench contention -- --warm-up-time 1 --measurement-time 2`)

mod support;

use std::{
    hint::black_box,
    sync::Barrier,
    thread,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{
    criterion_group, criterion_main, measurement::WallTime, BenchmarkGroup, Criterion,
};
use futures_util::FutureExt;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_http::auth::AddAuthorization;

use support::{
    send_now, static_request, Answer, CachedToken, MutexCache, MutexCacheReplay, RwLockCache,
    Tally, TOKEN,
};

fn threads() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// How each thread sends its requests.
#[derive(Debug, Clone, Copy)]
enum Style {
    /// Through one clone of the service that the thread keeps.
    KeptClone,
    /// Each through a new clone of the shared service, called once: `oneshot`.
    ClonePerRequest,
}

/// Sends `iters` requests from `n` threads in `style`, and returns the wall time from the
/// common start to the last response.
fn run<S, ResB>(
    svc: &S,
    rt: &tokio::runtime::Handle,
    iters: u64,
    n: usize,
    style: Style,
) -> Duration
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>> + Clone + Send + Sync,
    S::Error: std::fmt::Debug,
{
    let per_thread = iters.div_ceil(n as u64);
    let start = Barrier::new(n + 1);
    thread::scope(|scope| {
        for _ in 0..n {
            let mut kept = svc.clone();
            let start = &start;
            scope.spawn(move || {
                let _rt = rt.enter();
                start.wait();
                for _ in 0..per_thread {
                    let res = match style {
                        Style::KeptClone => send_now(&mut kept, static_request()),
                        Style::ClonePerRequest => svc
                            .clone()
                            .oneshot(static_request())
                            .now_or_never()
                            .expect("a cache hit answers at once")
                            .expect("the request succeeds"),
                    };
                    black_box(res.status());
                }
            });
        }
        start.wait();
        Instant::now()
    })
    .elapsed()
}

fn bench_one<S, ResB>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Handle,
    name: &str,
    svc: S,
) where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>> + Clone + Send + Sync,
    S::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| run(&svc, rt, iters, threads(), Style::KeptClone))
    });
}

/// Like `bench_one`, two threads each sending on a clone per request; adds to `tally`.
fn bench_clone_per_request<S, ResB>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Handle,
    tally: &Tally,
    name: &str,
    svc: S,
) where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>> + Clone + Send + Sync,
    S::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let elapsed = run(&svc, rt, iters, 2, Style::ClonePerRequest);
            tally.add(name, elapsed, iters)
        })
    });
}

fn contention(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let layer = rt.block_on(support::warmed_layer(true));
    let no_replay = rt.block_on(support::warmed_layer(false));
    let handle = rt.handle();

    let mut g = c.benchmark_group(format!("contention/{}_threads", threads()));
    let inner = Answer(StatusCode::OK);
    bench_one(&mut g, handle, "bare", inner);
    bench_one(
        &mut g,
        handle,
        "add_authorization",
        AddAuthorization::bearer(inner, TOKEN),
    );
    bench_one(
        &mut g,
        handle,
        "mutex_cache",
        MutexCache::new(inner, CachedToken::fresh()),
    );
    bench_one(
        &mut g,
        handle,
        "mutex_cache_replay",
        MutexCacheReplay::new(inner, CachedToken::fresh()),
    );
    bench_one(
        &mut g,
        handle,
        "rwlock_cache",
        RwLockCache::new(inner, CachedToken::fresh()),
    );
    bench_one(&mut g, handle, "oauth", layer.layer(inner));
    bench_one(&mut g, handle, "oauth_replay_off", no_replay.layer(inner));
    g.finish();

    let tally = Tally::default();
    let mut g = c.benchmark_group("contention/clone_per_request_2_threads");
    bench_clone_per_request(&mut g, handle, &tally, "bare", inner);
    bench_clone_per_request(
        &mut g,
        handle,
        &tally,
        "add_authorization",
        AddAuthorization::bearer(inner, TOKEN),
    );
    bench_clone_per_request(
        &mut g,
        handle,
        &tally,
        "mutex_cache",
        MutexCache::new(inner, CachedToken::fresh()),
    );
    bench_clone_per_request(
        &mut g,
        handle,
        &tally,
        "mutex_cache_replay",
        MutexCacheReplay::new(inner, CachedToken::fresh()),
    );
    bench_clone_per_request(&mut g, handle, &tally, "oauth", layer.layer(inner));
    bench_clone_per_request(
        &mut g,
        handle,
        &tally,
        "oauth_replay_off",
        no_replay.layer(inner),
    );
    g.finish();
    tally.print_ratios(
        "contention, clone per request, 2 threads",
        "mutex_cache",
        &[
            "bare",
            "add_authorization",
            "mutex_cache",
            "mutex_cache_replay",
            "oauth",
            "oauth_replay_off",
        ],
    );

    for style in [Style::ClonePerRequest, Style::KeptClone] {
        paired(
            handle,
            style,
            &[
                ("add_authorization", &AddAuthorization::bearer(inner, TOKEN)),
                ("oauth", &layer.layer(inner)),
                ("oauth_replay_off", &no_replay.layer(inner)),
                (
                    "mutex_cache_replay",
                    &MutexCacheReplay::new(inner, CachedToken::fresh()),
                ),
            ],
            &MutexCache::new(inner, CachedToken::fresh()),
        );
    }

    assert_eq!(
        layer.handle().fetches(),
        1,
        "every measured request was a cache hit"
    );
}

/// A sender of the paired pass: a clone of a service, type-erased.
trait Sends: Sync {
    fn round(&self, rt: &tokio::runtime::Handle, iters: u64, style: Style) -> Duration;
}

impl<S, ResB> Sends for S
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>> + Clone + Send + Sync,
    S::Error: std::fmt::Debug,
{
    fn round(&self, rt: &tokio::runtime::Handle, iters: u64, style: Style) -> Duration {
        run(self, rt, iters, 2, style)
    }
}

/// Two threads sending in `style`, each variant against the `Mutex` cache in alternating
/// rounds: the machine's drift, which moves these figures by tens of percent between
/// criterion groups, cancels out of each round's ratio. Prints the median ratio over
/// `ROUNDS` rounds, with the quartiles.
fn paired(
    rt: &tokio::runtime::Handle,
    style: Style,
    variants: &[(&str, &dyn Sends)],
    baseline: &dyn Sends,
) {
    const ROUNDS: usize = 31;
    const ITERS: u64 = 100_000;
    println!("{style:?}, 2 threads, paired with mutex_cache ({ROUNDS} rounds of {ITERS}):");
    for (name, variant) in variants {
        let mut ratios: Vec<u64> = (0..ROUNDS)
            .map(|_| {
                let base = baseline.round(rt, ITERS, style);
                let this = variant.round(rt, ITERS, style);
                (this.as_secs_f64() / base.as_secs_f64() * 1000.0) as u64
            })
            .collect();
        ratios.sort_unstable();
        let q = |x| support::quantile(&ratios, x) as f64 / 1000.0;
        println!(
            "  {name:<20} {:.3}x  [{:.3}, {:.3}]",
            q(0.5),
            q(0.25),
            q(0.75)
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = contention
}
criterion_main!(benches);
