//! The per-request cost of `OAuth<S>` with a cached, fresh token, side by side with the
//! bare inner service, tower-http's `AddAuthorization` (a static header: the floor) and
//! two hand-written token caches (`std::sync::Mutex`, `tokio::sync::RwLock`).
//!
//! Every iteration builds the request, polls the service ready, calls it and polls the
//! response future (the inner service answers at once), then drops the response; the
//! same code runs for every variant.
//!
//! `cargo bench --bench hot_path`

mod support;

use std::{hint::black_box, time::Duration};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service};
use tower_http::auth::AddAuthorization;
use tower_oauth::OAuthLayer;

use support::{send_now, static_request, Answer, CachedToken, MutexCache, RwLockCache, TOKEN};

fn bench_one<S, ResB>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut svc: S,
    make: fn() -> Request<Full<Bytes>>,
) where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>>,
    S::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.iter(|| {
            let res = send_now(&mut svc, make());
            black_box(res.status())
        })
    });
}

fn compare(
    c: &mut Criterion,
    layers: &[OAuthLayer; 2],
    group: &str,
    status: StatusCode,
    make: fn() -> Request<Full<Bytes>>,
) {
    let mut g = c.benchmark_group(group);
    let inner = Answer(status);
    bench_one(&mut g, "bare", inner, make);
    bench_one(
        &mut g,
        "add_authorization",
        AddAuthorization::bearer(inner, TOKEN),
        make,
    );
    bench_one(
        &mut g,
        "mutex_cache",
        MutexCache::new(inner, CachedToken::fresh()),
        make,
    );
    bench_one(
        &mut g,
        "rwlock_cache",
        RwLockCache::new(inner, CachedToken::fresh()),
        make,
    );
    bench_one(&mut g, "oauth", layers[0].layer(inner), make);
    bench_one(&mut g, "oauth_replay_off", layers[1].layer(inner), make);
    g.finish();
}

fn hot_path(c: &mut Criterion) {
    // The runtime outlives every measurement: the cached token's timers live on it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let layers = [
        rt.block_on(support::warmed_layer(true)),
        rt.block_on(support::warmed_layer(false)),
    ];
    let _guard = rt.enter();

    compare(c, &layers, "hot_path/ok", StatusCode::OK, static_request);
    compare(
        c,
        &layers,
        "hot_path/not_found",
        StatusCode::NOT_FOUND,
        static_request,
    );
    // Header values and a body made at runtime: what the replay copy costs when cloning
    // them is not free (see tests/alloc.rs).
    compare(
        c,
        &layers,
        "hot_path/ok_runtime_request",
        StatusCode::OK,
        support::runtime_request,
    );

    for layer in &layers {
        assert_eq!(
            layer.handle().fetches(),
            1,
            "every measured request was a cache hit"
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = hot_path
}
criterion_main!(benches);
