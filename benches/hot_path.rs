//! The per-request cost of `OAuth<S>` with a cached, fresh token, side by side with the
//! bare inner service, tower-http's `AddAuthorization` (a static header: the floor) and
//! two hand-written token caches (`std::sync::Mutex`, `tokio::sync::RwLock`), and, for
//! context, the `Mutex` cache keeping a copy of each request for a replay as the layer
//! does by default.
//!
//! Every iteration builds the request, polls the service ready, calls it and polls the
//! response future (the inner service answers at once), then drops the response; the
//! same code runs for every variant.
//!
//! After the criterion groups, a paired pass measures each variant's ratio to the floor
//! again, in short rounds alternating floor and variant, so that the machine's drift over
//! the minutes a criterion group takes cancels out of the ratio (the criterion figures
//! measure the variants one after another). It runs in several processes, because where
//! a process's stack and heap land moves the figures too (see `paired_processes`).
//!
//! `cargo bench --bench hot_path` (`paired` to run the paired pass alone;
//! `PAIRED_PROCESSES=n` for another number of processes than 5)

mod support;

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{criterion_group, BenchmarkGroup, Criterion};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service};
use tower_http::auth::AddAuthorization;
use tower_oauth::OAuthLayer;

use support::{
    quantile, send_now, static_request, Answer, CachedToken, MutexCache, MutexCacheReplay,
    RwLockCache, TOKEN,
};

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
        "mutex_cache_replay",
        MutexCacheReplay::new(inner, CachedToken::fresh()),
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

type Make = fn() -> Request<Full<Bytes>>;

/// The requests every pass measures: a static GET answered 200 and 404, and a POST whose
/// header values and body are made at runtime (what the replay copy costs when cloning
/// them is not free, see tests/alloc.rs).
const REQUESTS: [(&str, StatusCode, Make); 3] = [
    ("ok", StatusCode::OK, static_request),
    ("not_found", StatusCode::NOT_FOUND, static_request),
    (
        "ok_runtime_request",
        StatusCode::OK,
        support::runtime_request,
    ),
];

/// Runs `f` with the two layers measured (replay on, replay off), their token fetched.
fn with_warmed_layers(f: impl FnOnce(&[OAuthLayer; 2])) {
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
    f(&layers);
    for layer in &layers {
        assert_eq!(layer.handle().fetches(), 1, "every request was a cache hit");
    }
}

fn hot_path(c: &mut Criterion) {
    with_warmed_layers(|layers| {
        for (name, status, make) in REQUESTS {
            compare(c, layers, &format!("hot_path/{name}"), status, make);
        }
    });
}

/// The same layer with and without a token store, in one run: the store is asked only
/// when a token is needed, so a cache hit costs the same.
fn with_store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fetcher = tower::service_fn(|_: tower_oauth::TokenRequest| async {
        Ok::<_, tower_oauth::BoxError>(tower_oauth::Token::new(
            TOKEN,
            Some(Duration::from_secs(3600)),
        ))
    });
    let stored = OAuthLayer::with_fetcher(fetcher)
        .store(tower_oauth::store::MemoryStore::new())
        .store_key("bench")
        .build();
    let plain = rt.block_on(support::warmed_layer(true));
    rt.block_on(stored.handle().warm_up()).expect("warm-up");
    let _guard = rt.enter();
    let mut g = c.benchmark_group("hot_path_store/ok");
    let inner = Answer(StatusCode::OK);
    bench_one(&mut g, "oauth", plain.layer(inner), static_request);
    bench_one(
        &mut g,
        "oauth_with_store",
        stored.layer(inner),
        static_request,
    );
    g.finish();
    assert_eq!(
        stored.handle().fetches(),
        1,
        "every request was a cache hit"
    );
}

/// Requests per timed block in the paired pass, and rounds per variant.
const BLOCK: u32 = 20_000;
const ROUNDS: usize = 31;

/// Time of `BLOCK` requests through `svc`.
fn block<S, ResB>(svc: &mut S, make: fn() -> Request<Full<Bytes>>) -> Duration
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>>,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..BLOCK {
        black_box(send_now(svc, make()).status());
    }
    start.elapsed()
}

/// `svc`'s time over the floor's, per round, in rounds that alternate which goes first.
fn paired_ratios<S, ResB>(
    floor: &mut AddAuthorization<Answer>,
    svc: &mut S,
    make: fn() -> Request<Full<Bytes>>,
) -> Vec<u64>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>>,
    S::Error: std::fmt::Debug,
{
    // Warm both up before the first round counts.
    block(floor, make);
    block(svc, make);
    let mut ratios: Vec<u64> = (0..ROUNDS)
        .map(|round| {
            let (f, v) = if round % 2 == 0 {
                let f = block(floor, make);
                (f, block(svc, make))
            } else {
                let v = block(svc, make);
                (block(floor, make), v)
            };
            // In thousandths, to sort as integers.
            (v.as_secs_f64() / f.as_secs_f64() * 1000.0).round() as u64
        })
        .collect();
    ratios.sort_unstable();
    ratios
}

/// One process's paired pass: prints `<request> <variant> <median> <p25> <p75>` per row.
fn paired(layers: &[OAuthLayer; 2]) {
    for (name, status, make) in REQUESTS {
        let inner = Answer(status);
        let mut floor = AddAuthorization::bearer(inner, TOKEN);
        let rows = [
            (
                "mutex_cache",
                paired_ratios(
                    &mut floor,
                    &mut MutexCache::new(inner, CachedToken::fresh()),
                    make,
                ),
            ),
            (
                "mutex_cache_replay",
                paired_ratios(
                    &mut floor,
                    &mut MutexCacheReplay::new(inner, CachedToken::fresh()),
                    make,
                ),
            ),
            (
                "rwlock_cache",
                paired_ratios(
                    &mut floor,
                    &mut RwLockCache::new(inner, CachedToken::fresh()),
                    make,
                ),
            ),
            (
                "oauth",
                paired_ratios(&mut floor, &mut layers[0].layer(inner), make),
            ),
            (
                "oauth_replay_off",
                paired_ratios(&mut floor, &mut layers[1].layer(inner), make),
            ),
        ];
        for (variant, ratios) in rows {
            let q = |p| quantile(&ratios, p);
            println!("{name} {variant} {} {} {}", q(0.5), q(0.25), q(0.75));
        }
    }
}

/// Processes the paired pass runs in, unless `PAIRED_PROCESSES` says otherwise.
const PROCESSES: usize = 5;

/// Runs the paired pass in several processes and prints each ratio's median over them.
///
/// One process's ratios are steady (their interquartile range is about ±1 %), but they
/// move by up to ±8 % from one process to the next: where the stack and the heap land
/// (address randomisation) changes how the same code runs. A figure from one process is
/// one draw of that; the median over processes is the figure to quote.
fn paired_processes() {
    let processes = std::env::var("PAIRED_PROCESSES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(PROCESSES);
    println!(
        "paired: ratio to add_authorization, {ROUNDS} alternating rounds of {BLOCK} requests \
         each, in {processes} processes; median over the processes [lowest, highest], then \
         each process's median"
    );
    let exe = std::env::current_exe().expect("the bench binary");
    let mut rows: Vec<(String, Vec<u64>)> = Vec::new();
    for _ in 0..processes {
        let out = std::process::Command::new(&exe)
            .args(["--bench", "paired"])
            .env("PAIRED_CHILD", "1")
            .output()
            .expect("the paired pass runs");
        assert!(out.status.success(), "the paired pass failed: {out:?}");
        for (i, line) in String::from_utf8_lossy(&out.stdout).lines().enumerate() {
            let mut parts = line.split_whitespace();
            let (Some(request), Some(variant), Some(median)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let key = format!("{request:<20} {variant:<18}");
            let median: u64 = median.parse().expect("a ratio in thousandths");
            match rows.get_mut(i) {
                Some((k, values)) if *k == key => values.push(median),
                _ => rows.push((key, vec![median])),
            }
        }
    }
    let x = |r: u64| r as f64 / 1000.0;
    for (key, values) in &rows {
        let each: Vec<String> = values.iter().map(|&v| format!("{:.3}", x(v))).collect();
        let mut sorted = values.clone();
        sorted.sort_unstable();
        println!(
            "  {key} {:.3}x  [{:.3}, {:.3}]  ({})",
            x(quantile(&sorted, 0.5)),
            x(sorted[0]),
            x(sorted[sorted.len() - 1]),
            each.join(", ")
        );
    }
    // The targets compare the layer with the caches: that comparison is taken within each
    // process, where both met the same layout.
    println!("paired, against the hand-written caches: per process, the layer's time over the cache's; median [lowest, highest]");
    let find = |request: &str, variant: &str| {
        rows.iter()
            .find(|(k, _)| {
                let mut words = k.split_whitespace();
                words.next() == Some(request) && words.next() == Some(variant)
            })
            .map(|(_, v)| v.clone())
    };
    for (request, _, _) in REQUESTS {
        for variant in ["oauth", "oauth_replay_off"] {
            for cache in ["mutex_cache", "rwlock_cache", "mutex_cache_replay"] {
                let (Some(ours), Some(theirs)) = (find(request, variant), find(request, cache))
                else {
                    continue;
                };
                // In thousandths again.
                let mut ratios: Vec<u64> = ours
                    .iter()
                    .zip(&theirs)
                    .map(|(&o, &t)| (o as f64 / t as f64 * 1000.0).round() as u64)
                    .collect();
                ratios.sort_unstable();
                let faster = ratios.iter().filter(|&&r| r < 1000).count();
                println!(
                    "  {request:<20} {variant:<18} / {cache:<13} {:.3}x  [{:.3}, {:.3}]  faster in {faster} of {}",
                    x(quantile(&ratios, 0.5)),
                    x(ratios[0]),
                    x(ratios[ratios.len() - 1]),
                    ratios.len()
                );
            }
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = hot_path, with_store
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument narrows what runs. Without
    // `--bench` (`cargo test --benches`) or with `--list`, criterion only checks or lists
    // its benchmarks, and the minutes-long paired pass is left out.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .map(String::as_str);
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list");
    if filter != Some("paired") {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    if measuring && filter.is_none_or(|f| f == "paired") {
        if std::env::var_os("PAIRED_CHILD").is_none() {
            paired_processes();
            return;
        }
        with_warmed_layers(paired);
    }
}
