//! The per-request cost of `OAuth<S>` under a `ScopePolicy::from_fn` policy with 1, 64
//! and 10,000 scope sets, every set's token fetched beforehand, requests cycling through
//! the sets; and, for context, the layer with one fixed scope. The inner service answers
//! at once (as in `hot_path`), so what grows with the number of sets is the layer's
//! lookup of the request's set.
//!
//! The policy reads the set's number from an `x-tenant` header and clones a scope built
//! beforehand, so that it costs the same whatever the number of sets; every variant sends
//! the same requests, header included. At the end, each variant's mean time per request
//! and its ratio to the 1-set case are printed. A number of sets the layer refuses to
//! warm up (a layer with a cap on scope sets) is reported and left out.
//!
//! `cargo bench --bench scope_sets` (a quick check:
//! `cargo bench --bench scope_sets -- --warm-up-time 1 --measurement-time 2`)

mod support;

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_oauth::{BoxError, OAuthLayer, Scope, ScopePolicy, Token, TokenRequest};

use support::{send_now, static_request, Answer, Tally, TOKEN};

const SETS: [usize; 3] = [1, 64, 10_000];

/// The requests of one variant: the static GET of `hot_path` with an `x-tenant` header,
/// for each of `sets` tenants in turn.
struct Requests {
    tenants: Vec<HeaderValue>,
    next: usize,
}

impl Requests {
    fn new(sets: usize) -> Self {
        let tenants = (0..sets)
            .map(|i| HeaderValue::try_from(i.to_string()).unwrap())
            .collect();
        Self { tenants, next: 0 }
    }

    fn next(&mut self) -> Request<Full<Bytes>> {
        let mut req = static_request();
        req.headers_mut()
            .insert("x-tenant", self.tenants[self.next].clone());
        self.next = (self.next + 1) % self.tenants.len();
        req
    }
}

/// A `from_fn` layer with a scope set per tenant, `tenant:<i>` for `i` below `sets`.
fn per_tenant(sets: usize) -> OAuthLayer {
    let scopes: Arc<Vec<Scope>> = Arc::new(
        (0..sets)
            .map(|i| Scope::new(&format!("tenant:{i}")))
            .collect(),
    );
    let policy = ScopePolicy::from_fn(move |req| {
        let i: usize = req.headers.get("x-tenant")?.to_str().ok()?.parse().ok()?;
        scopes.get(i).cloned()
    });
    let fetcher = service_fn(|req: TokenRequest| async move {
        let token = Token::new(TOKEN, Some(Duration::from_secs(3600)));
        Ok::<_, BoxError>(match req.scope {
            Some(scope) => token.with_scope(scope),
            None => token,
        })
    });
    OAuthLayer::with_fetcher(fetcher)
        .scope_policy(policy)
        .build()
}

/// Sends one request per set, so that every set's token is fetched.
async fn warm_up<S, ResB>(svc: &S, sets: usize) -> Result<(), BoxError>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
{
    let mut requests = Requests::new(sets);
    for _ in 0..sets {
        svc.clone()
            .oneshot(requests.next())
            .await
            .map_err(Into::into)?;
    }
    Ok(())
}

fn bench_one<S, ResB>(c: &mut Criterion, tally: &Tally, name: &str, mut svc: S, sets: usize)
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>>,
    S::Error: std::fmt::Debug,
{
    let mut requests = Requests::new(sets);
    c.bench_function(&format!("scope_sets/{name}"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let res = send_now(&mut svc, requests.next());
                black_box(res.status());
            }
            tally.add(name, start.elapsed(), iters)
        })
    });
}

fn scope_sets(c: &mut Criterion) {
    // The runtime outlives every measurement: the cached tokens' timers live on it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let tally = Tally::default();
    let inner = Answer(StatusCode::OK);
    let mut names = Vec::new();

    let fixed = rt.block_on(support::warmed_layer(true));
    bench_one(c, &tally, "fixed_scope", fixed.layer(inner), SETS[2]);
    names.push("fixed_scope".to_owned());

    for sets in SETS {
        let name = format!("sets_{sets}");
        let layer = per_tenant(sets);
        let svc = layer.layer(inner);
        if let Err(err) = rt.block_on(warm_up(&svc, sets)) {
            println!("scope_sets/{name}: not measured, the warm-up failed: {err}");
            continue;
        }
        bench_one(c, &tally, &name, svc, sets);
        assert_eq!(
            layer.handle().fetches(),
            sets as u64,
            "every measured request was a cache hit"
        );
        names.push(name);
    }

    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    tally.print_ratios("scope_sets", "sets_1", &names);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = scope_sets
}
criterion_main!(benches);
