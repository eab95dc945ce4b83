//! Throughput with every core sending through one shared service (clones of it), for
//! `OAuth<S>` and the same baselines as `hot_path`: the bare service, tower-http's
//! `AddAuthorization`, the `Mutex` and `RwLock` token caches, and, for context, the
//! `Mutex` cache keeping a copy of each request for a replay.
//!
//! One criterion iteration is one request; each sample spreads its iterations over one
//! thread per core, started together, and counts the wall time until the last one ends.
//! The figure is therefore wall time per request with all cores busy.
//!
//! `cargo bench --bench contention`

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
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service};
use tower_http::auth::AddAuthorization;

use support::{
    send_now, static_request, Answer, CachedToken, MutexCache, MutexCacheReplay, RwLockCache, TOKEN,
};

fn threads() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Sends `iters` requests from `threads()` threads, each through its own clone of
/// `svc`, and returns the wall time from the common start to the last response.
fn run<S, ResB>(svc: &S, rt: &tokio::runtime::Handle, iters: u64) -> Duration
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>> + Clone + Send,
    S::Error: std::fmt::Debug,
{
    let n = threads();
    let per_thread = iters.div_ceil(n as u64);
    let start = Barrier::new(n + 1);
    thread::scope(|scope| {
        for _ in 0..n {
            let mut svc = svc.clone();
            let start = &start;
            scope.spawn(move || {
                let _rt = rt.enter();
                start.wait();
                for _ in 0..per_thread {
                    let res = send_now(&mut svc, static_request());
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
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>> + Clone + Send,
    S::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| b.iter_custom(|iters| run(&svc, rt, iters)));
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

    assert_eq!(
        layer.handle().fetches(),
        1,
        "every measured request was a cache hit"
    );
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
