//! Scope sets computed per request (`ScopePolicy::from_fn`) at scale: thousands of sets,
//! each with its own token fetched once, and sets left idle forgotten.

mod common;

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use common::{advance, get, seen, send, Echo};
use http::{Request, StatusCode};
use http_body_util::Full;
use tower::{service_fn, Layer, Service};
use tower_oauth::{OAuthLayer, OAuthLayerBuilder, Scope, ScopePolicy, Token, TokenRequest};

const SEC: Duration = Duration::from_secs(1);

/// A request for tenant `i`: its scope set is `tenant:<i>`.
fn for_tenant(i: usize) -> Request<Full<Bytes>> {
    let mut req = get("/documents");
    req.headers_mut()
        .insert("x-tenant", i.to_string().parse().unwrap());
    req
}

/// A layer whose scope set is the request's tenant, with a fetcher that answers at once
/// with `tok-<scope>-<n>` (n: the fetch's number, from 1), valid for an hour; and the
/// fetcher's count of fetches.
fn per_tenant() -> (OAuthLayerBuilder, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let fetcher = service_fn(move |req: TokenRequest| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            let scope = req.scope.expect("every request has a tenant");
            let token = Token::new(format!("tok-{}-{n}", scope.as_str()), Some(3600 * SEC));
            Ok::<_, Infallible>(token.with_scope(scope))
        }
    });
    let policy = ScopePolicy::from_fn(|req| {
        let tenant = req.headers.get("x-tenant")?.to_str().ok()?;
        Some(Scope::new(&format!("tenant:{tenant}")))
    });
    let builder = OAuthLayer::with_fetcher(fetcher).scope_policy(policy);
    (builder, fetches)
}

/// Sends tenant `i`'s request and returns the token the inner service saw.
async fn token_seen<S, R>(svc: &mut S, i: usize) -> String
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<R>>,
    S::Error: std::fmt::Display,
{
    let res = send(svc, for_tenant(i))
        .await
        .unwrap_or_else(|e| panic!("tenant {i}'s request failed: {e}"));
    assert_eq!(res.status(), StatusCode::OK);
    let auth = seen(&res).expect("a token was sent");
    auth.strip_prefix("Bearer ").unwrap().to_owned()
}

fn fetches(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_scope_sets_each_get_their_own_token_fetched_once() {
    const SETS: usize = 10_000;
    let (builder, fetched) = per_tenant();
    let layer = builder.build();
    let mut svc = layer.layer(Echo::default());

    let mut tokens = Vec::with_capacity(SETS);
    for i in 0..SETS {
        let token = token_seen(&mut svc, i).await;
        let prefix = format!("tok-tenant:{i}-");
        assert!(token.starts_with(&prefix), "tenant {i} got {token}");
        tokens.push(token);
    }
    assert_eq!(fetches(&fetched), SETS, "one fetch per scope set");
    assert_eq!(layer.handle().state().len(), SETS);

    // A second pass finds every token cached.
    for (i, token) in tokens.iter().enumerate() {
        assert_eq!(&token_seen(&mut svc, i).await, token, "tenant {i}");
    }
    assert_eq!(fetches(&fetched), SETS, "nothing fetched again");
}

#[tokio::test(start_paused = true)]
async fn a_scope_set_left_idle_past_the_idle_timeout_is_forgotten_and_fetched_again() {
    const SETS: usize = 100;
    const KEPT: usize = 10;
    let (builder, fetched) = per_tenant();
    let layer = builder.scope_idle_timeout(60 * SEC).build();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo::default());

    let mut tokens = Vec::with_capacity(SETS);
    for i in 0..SETS {
        tokens.push(token_seen(&mut svc, i).await);
    }
    assert_eq!(fetches(&fetched), SETS);
    assert_eq!(handle.state().len(), SETS);

    // The first few sets are used again 40 s in; the others stay idle.
    advance(40 * SEC).await;
    for (i, token) in tokens.iter().enumerate().take(KEPT) {
        assert_eq!(&token_seen(&mut svc, i).await, token);
    }
    // 70 s in, the others have been idle past the timeout; a request triggers the sweep.
    advance(30 * SEC).await;
    assert_eq!(token_seen(&mut svc, 0).await, tokens[0]);
    advance(Duration::ZERO).await;
    assert_eq!(
        handle.state().len(),
        KEPT,
        "only the sets used within the idle timeout are kept"
    );
    assert_eq!(fetches(&fetched), SETS, "the kept sets fetched nothing");

    // A forgotten set starts over with a new token.
    let again = token_seen(&mut svc, 50).await;
    assert_eq!(again, format!("tok-tenant:50-{}", SETS + 1));
    assert_eq!(fetches(&fetched), SETS + 1);
    assert_eq!(handle.state().len(), KEPT + 1);
}
