//! A fleet's figures, counts not timings: token requests at the endpoint (the mock's
//! count) with and without a shared Redis store, a burst of 500 cold layers, Redis
//! killed mid-run, and the memory a tenant or scope-set key costs.
//!
//! It starts its own `redis-server` and mock server on 127.0.0.1 and stops them. The
//! fleet's processes are this binary again, in a child mode (`FLEET_CHILD`); each runs
//! four layers with caches of their own. `FLEET_QUICK=1` shortens the timed runs.
//!
//! `cargo bench --features redis,test-util --bench fleet`

#[allow(dead_code)]
#[path = "../tests/common/redis.rs"]
mod redis_server;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    convert::Infallible,
    env,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicIsize, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use redis_server::RedisServer;
use tokio::{sync::Barrier, time::Instant};
use tower::{service_fn, Layer, ServiceExt};
use tower_oauth::{
    fetch::https_client,
    mock::{MockConfig, MockServer},
    store::RedisStore,
    ClientCredentials, OAuthLayer, ScopePolicy, Tenant, Token, TokenHandle, TokenRequest,
};

/// Counts the bytes allocated and not yet freed, for the memory figures.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes unchanged to the system allocator; the counter is an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CHILD: &str = "FLEET_CHILD";
const PROCESSES: usize = 20;
const LAYERS: usize = 4;
/// Each layer's pause between requests.
const INTERVAL: Duration = Duration::from_millis(200);
const KEYS: usize = 10_000;

fn main() {
    if let Ok(spec) = env::var(CHILD) {
        return child(&spec);
    }
    // Only under `cargo bench`, which passes `--bench` (`cargo test --benches` does not).
    if !env::args().any(|a| a == "--bench") {
        return;
    }
    let quick = env::var_os("FLEET_QUICK").is_some();
    let run = Duration::from_secs(if quick { 10 } else { 30 });
    let mut rows = vec![memory_per_key()];
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let redis = RedisServer::start();
        let url = redis.url();
        let with = fleet(Some(&url), None, run).await;
        let without = fleet(None, None, run).await;
        rows.push(format!(
            "| {PROCESSES} processes x {LAYERS} layers, 3 s tokens, {} s | token requests: \
             {with} with the store, {without} without ({:.0}x) |",
            run.as_secs(),
            without as f64 / with.max(1) as f64
        ));
        rows.push(burst(&redis, true).await);
        rows.push(burst(&redis, false).await);
        drop(redis);
        rows.push(redis_killed(run).await);
    });
    println!("\n| Figure | Result |\n|---|---|");
    for row in rows {
        println!("{row}");
    }
}

/// The credentials of the mock's application, asking for `read`.
fn creds(mock: &MockServer) -> ClientCredentials {
    ClientCredentials::try_new(&mock.token_url(), mock.client_id(), mock.client_secret())
        .expect("the mock's token url")
        .scope("read")
}

async fn store(url: &str) -> RedisStore {
    RedisStore::connect(url).await.expect("redis answers")
}

/// One GET of the mock's API through `svc`: whether it got a 2xx.
async fn get<S, B>(svc: S, base: &str) -> bool
where
    S: tower::Service<Request<Full<Bytes>>, Response = Response<B>>,
    B: http_body::Body,
{
    let req = Request::get(format!("{base}/api/v1/workflows"))
        .body(Full::new(Bytes::new()))
        .expect("a request");
    match svc.oneshot(req).await {
        Ok(res) => {
            let ok = res.status().is_success();
            let _ = res.into_body().collect().await;
            ok
        }
        Err(_) => false,
    }
}

/// `PROCESSES` children against one mock with 3 s tokens, sharing the Redis at
/// `redis` when given, with `margin` as their expiry margin (else the default): the
/// token requests the mock counted.
async fn fleet(redis: Option<&str>, margin: Option<Duration>, run: Duration) -> u64 {
    let mock = MockServer::start_with(MockConfig::new().token_lifetime(Duration::from_secs(3)))
        .await
        .expect("the mock starts");
    let spec = [
        mock.base_url(),
        mock.client_id().to_owned(),
        mock.client_secret().to_owned(),
        redis.unwrap_or("-").to_owned(),
        run.as_millis().to_string(),
        margin.map_or("-".into(), |m| m.as_millis().to_string()),
    ]
    .join(" ");
    let exe = env::current_exe().expect("this binary");
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .env(CHILD, &spec)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .expect("a child process")
        })
        .collect();
    let (mut ok, mut failed, mut fetches, mut hits) = (0, 0, 0, 0);
    for child in children {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .expect("joined")
            .expect("the child's output");
        let text = String::from_utf8_lossy(&out.stdout);
        let n: Vec<u64> = text
            .split_whitespace()
            .map(|w| w.parse().expect("a count"))
            .collect();
        ok += n[0];
        failed += n[1];
        fetches += n[2];
        hits += n[3];
    }
    let at_endpoint = mock.stats().token_requests;
    eprintln!(
        "fleet (store: {}, margin {margin:?}): {ok} ok, {failed} failed; layers: {fetches} fetches, {hits} store \
         hits; token endpoint: {at_endpoint} requests",
        redis.is_some()
    );
    assert_eq!(failed, 0, "every request of the fleet succeeds");
    at_endpoint
}

/// A child process: `LAYERS` layers, each with its own cache, sending a request every
/// `INTERVAL` for the run's length. Prints `ok failed fetches store_hits`.
fn child(spec: &str) {
    let [base, id, secret, redis, millis, margin] = spec.split(' ').collect::<Vec<_>>()[..] else {
        panic!("a bad {CHILD}");
    };
    let run = Duration::from_millis(millis.parse().expect("a run length"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let shared = match redis {
            "-" => None,
            url => Some(store(url).await),
        };
        let token_url = format!("{base}/api/oauth/token");
        let client = https_client();
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (mut handles, mut tasks) = (Vec::new(), Vec::new());
        for _ in 0..LAYERS {
            let creds = ClientCredentials::try_new(&token_url, id, secret)
                .expect("the mock's token url")
                .scope("read");
            let mut builder = OAuthLayer::builder(creds);
            if margin != "-" {
                let millis = margin.parse().expect("a margin");
                builder = builder.expiry_margin(Duration::from_millis(millis));
            }
            if let Some(store) = &shared {
                builder = builder.store(store.clone());
            }
            let layer = builder.build();
            handles.push(layer.handle());
            let svc = layer.layer(client.clone());
            let (ok, failed, base) = (ok.clone(), failed.clone(), base.to_owned());
            tasks.push(tokio::spawn(async move {
                let end = Instant::now() + run;
                while Instant::now() < end {
                    let counter = if get(svc.clone(), &base).await {
                        &ok
                    } else {
                        &failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(INTERVAL).await;
                }
            }));
        }
        for task in tasks {
            task.await.expect("a layer's task");
        }
        let fetches: u64 = handles.iter().map(TokenHandle::fetches).sum();
        let hits: u64 = handles.iter().map(TokenHandle::store_hits).sum();
        println!(
            "{} {} {fetches} {hits}",
            ok.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed)
        );
    });
}

/// 500 cold layers, each with its own cache, one request each, all at once, sharing one
/// Redis: through one shared `RedisStore` (one multiplexed connection) or a
/// `RedisStore` each.
async fn burst(redis: &RedisServer, shared: bool) -> String {
    const CLIENTS: usize = 500;
    let mock = MockServer::start_with(MockConfig::new())
        .await
        .expect("the mock starts");
    let one = store(&redis.url()).await.prefix("burst-shared:");
    let client = https_client();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let (mut handles, mut tasks) = (Vec::new(), Vec::new());
    for _ in 0..CLIENTS {
        let store = match shared {
            true => one.clone(),
            false => store(&redis.url()).await.prefix("burst-own:"),
        };
        let layer = OAuthLayer::builder(creds(&mock)).store(store).build();
        handles.push(layer.handle());
        let svc = layer.layer(client.clone());
        let (barrier, base) = (barrier.clone(), mock.base_url());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            get(svc, &base).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        ok += usize::from(task.await.expect("a client's task"));
    }
    let hits: u64 = handles.iter().map(TokenHandle::store_hits).sum();
    let connections = ["a connection each", "one shared connection"][usize::from(shared)];
    format!(
        "| {CLIENTS} cold layers at once, one Redis, {connections} | token requests: {}; \
         store hits {hits}; {ok} of {CLIENTS} requests ok |",
        mock.stats().token_requests
    )
}

/// Four layers sharing a Redis, steady requests with 2 s tokens; the
/// Redis is killed halfway. The token requests before and after, and the requests that failed.
async fn redis_killed(run: Duration) -> String {
    let mut redis = RedisServer::start();
    let mock = MockServer::start_with(MockConfig::new().token_lifetime(Duration::from_secs(2)))
        .await
        .expect("the mock starts");
    let shared = store(&redis.url()).await;
    let client = https_client();
    let end = Instant::now() + run;
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..LAYERS {
        let layer = OAuthLayer::builder(creds(&mock))
            .store(shared.clone())
            .build();
        let svc = layer.layer(client.clone());
        let (failed, base) = (failed.clone(), mock.base_url());
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while Instant::now() < end {
                if !get(svc.clone(), &base).await {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                sent += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            sent
        }));
    }
    tokio::time::sleep(run / 2).await;
    let before = mock.stats().token_requests;
    redis.kill();
    let mut sent = 0;
    for task in tasks {
        sent += task.await.expect("a layer's task");
    }
    let after = mock.stats().token_requests - before;
    format!(
        "| Redis killed halfway, {LAYERS} layers, 2 s tokens, {} s | {} of {sent} requests \
         failed; token requests {before} before the kill, {after} after |",
        run.as_secs(),
        failed.load(Ordering::Relaxed)
    )
}

/// Live bytes per key after `KEYS` tenants, and after `KEYS` scope sets, each with a
/// token of 40 bytes.
fn memory_per_key() -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let fetcher = service_fn(|_: TokenRequest| async {
        Ok::<_, Infallible>(Token::new("t".repeat(40), Some(Duration::from_secs(3600))))
    });
    let tenant = |req: &tower_oauth::RequestHead<'_>| {
        let name = req.headers.get("x-key")?.to_str().ok()?;
        Some(Tenant::from(name))
    };
    let scope = ScopePolicy::from_fn(|req| {
        let name = req.headers.get("x-key")?.to_str().ok()?;
        Some(name.into())
    });
    let tenants = OAuthLayer::with_fetcher(fetcher).tenant_policy(tenant);
    let scopes = OAuthLayer::with_fetcher(fetcher).scope_policy(scope);
    let per_key = [tenants, scopes].map(|builder| {
        rt.block_on(async {
            let layer = builder.build();
            let inner = service_fn(|_: Request<Full<Bytes>>| async {
                Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
            });
            let svc = layer.layer(inner);
            let send = |key: String| {
                let req = Request::get("http://api.test/")
                    .header("x-key", key)
                    .body(Full::new(Bytes::new()))
                    .expect("a request");
                svc.clone().oneshot(req)
            };
            // The first key builds what every key shares.
            send("warm".into()).await.expect("an answer");
            let before = LIVE.load(Ordering::Relaxed);
            for i in 0..KEYS {
                send(format!("key-{i}")).await.expect("an answer");
            }
            let after = LIVE.load(Ordering::Relaxed);
            drop(svc);
            (after - before) / KEYS as isize
        })
    });
    format!(
        "| Memory per key, {KEYS} keys, 40-byte tokens | {} bytes per tenant \
         (`tenant_policy`); {} bytes per scope set (`ScopePolicy::from_fn`) |",
        per_key[0], per_key[1]
    )
}
