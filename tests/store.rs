//! A token store shared by many layers, as by the processes of a fleet: one fetch for
//! all of them, one re-issue after a revoke, and a store that fails is never a new way
//! for requests to fail. Against the in-memory store and stores that misbehave; the Redis
//! store's own tests are in `store_redis.rs`.

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
use common::{bounded, get, seen, Echo, Fetcher};
use futures_util::future::{join_all, BoxFuture};
use http::{header::AUTHORIZATION, Response, StatusCode};
use http_body_util::Full;
use tower::{service_fn, Layer, ServiceExt};
use tower_oauth::{
    store::{MemoryStore, StoreCipher, TokenStore},
    BoxError, OAuthLayer, OAuthLayerBuilder, TokenRequest,
};

const SEC: Duration = Duration::from_secs(1);
const LIMIT: Duration = Duration::from_secs(20);
/// The store key of the layers below, for their one scope set (none).
const KEY: &str = "test-identity|scope=";

fn layer_on(fetcher: &Fetcher, store: impl TokenStore) -> OAuthLayerBuilder {
    OAuthLayer::with_fetcher(fetcher.clone())
        .store(store)
        .store_key("test-identity")
        .store_timeout(Duration::from_millis(100))
}

#[tokio::test]
async fn five_hundred_layers_started_at_once_make_one_token_request() {
    let store = Arc::new(MemoryStore::new());
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::from_millis(50));
    let layers: Vec<_> = (0..500)
        .map(|_| layer_on(&fetcher, store.clone()).build())
        .collect();
    let handles: Vec<_> = layers.iter().map(|l| l.handle()).collect();
    let warmed = join_all(handles.iter().map(|h| h.warm_up()));
    for result in bounded(LIMIT, warmed).await {
        result.unwrap();
    }
    assert_eq!(fetcher.calls(), 1, "one token request for the whole fleet");
    let hits: u64 = layers.iter().map(|l| l.handle().store_hits()).sum();
    assert_eq!(hits, 499);
    let fetches: u64 = layers.iter().map(|l| l.handle().fetches()).sum();
    assert_eq!(fetches, 1, "a token read from the store is not a fetch");
    // Every layer sends the one token.
    for layer in layers.iter().step_by(50) {
        let res = layer
            .layer(Echo::default())
            .oneshot(get("/"))
            .await
            .unwrap();
        assert_eq!(seen(&res), Some("Bearer tok-1"));
    }
}

/// An API that rejects `tok-1` (revoked) and accepts every other token.
fn api_that_revoked_the_first_token() -> impl tower::Service<
    http::Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    service_fn(|req: http::Request<Full<Bytes>>| async move {
        let auth = req.headers().get(AUTHORIZATION).cloned();
        let mut res = Response::new(Full::new(Bytes::new()));
        if auth.as_ref().and_then(|a| a.to_str().ok()) == Some("Bearer tok-1") {
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            res.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                r#"Bearer error="invalid_token""#.parse().unwrap(),
            );
        }
        Ok::<_, Infallible>(res)
    })
}

#[tokio::test]
async fn a_fleet_that_sees_one_revoke_fetches_once() {
    let store = Arc::new(MemoryStore::new());
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::from_millis(20));
    let layers: Vec<_> = (0..10)
        .map(|_| layer_on(&fetcher, store.clone()).build())
        .collect();
    for layer in &layers {
        layer.handle().warm_up().await.unwrap();
    }
    assert_eq!(fetcher.calls(), 1);
    // Every layer sends tok-1, is told it was revoked, and replays with a new token.
    let sent = join_all(layers.iter().map(|l| {
        l.layer(api_that_revoked_the_first_token())
            .oneshot(get("/"))
    }));
    for res in bounded(LIMIT, sent).await {
        assert_eq!(res.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(
        fetcher.calls(),
        2,
        "the rejected token is deleted once, and its one re-issue shared"
    );
}

#[tokio::test]
async fn layers_renewing_together_fetch_once_per_renewal() {
    let store = Arc::new(MemoryStore::new());
    // Tokens of a second, renewed at half their lifetime; the first arrives at once.
    let fetcher = Fetcher::tokens(SEC, Duration::ZERO);
    let layers: Vec<_> = (0..4)
        .map(|_| {
            layer_on(&fetcher, store.clone())
                .expiry_margin(Duration::from_millis(10))
                .build()
        })
        .collect();
    for layer in &layers {
        layer.handle().warm_up().await.unwrap();
    }
    assert_eq!(fetcher.calls(), 1);
    // Requests on every layer until each has renewed its token once.
    let renewed = async {
        loop {
            for layer in &layers {
                let res = layer.layer(Echo::default()).oneshot(get("/")).await;
                res.unwrap();
            }
            let hits: u64 = layers.iter().map(|l| l.handle().store_hits()).sum();
            if fetcher.calls() >= 2 && hits >= 6 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    bounded(LIMIT, renewed).await;
    let hits: u64 = layers.iter().map(|l| l.handle().store_hits()).sum();
    assert_eq!(
        (fetcher.calls(), hits),
        (2, 6),
        "the first layer due renews for all four"
    );
}

/// A store whose every call fails, counting calls.
#[derive(Clone, Default)]
struct Down(Arc<AtomicUsize>);

impl TokenStore for Down {
    fn get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, BoxError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err("connection refused".into()) })
    }
    fn put<'a>(&'a self, _: &'a str, _: Bytes, _: Duration) -> BoxFuture<'a, Result<(), BoxError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err("connection refused".into()) })
    }
    fn lease<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Duration,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err("connection refused".into()) })
    }
    fn release<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<(), BoxError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err("connection refused".into()) })
    }
    fn invalidate<'a>(&'a self, _: &'a str, _: Bytes) -> BoxFuture<'a, Result<bool, BoxError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err("connection refused".into()) })
    }
}

/// A store that never answers.
struct Hangs;

impl TokenStore for Hangs {
    fn get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, BoxError>> {
        Box::pin(std::future::pending())
    }
    fn put<'a>(&'a self, _: &'a str, _: Bytes, _: Duration) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(std::future::pending())
    }
    fn lease<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Duration,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        Box::pin(std::future::pending())
    }
    fn release<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(std::future::pending())
    }
    fn invalidate<'a>(&'a self, _: &'a str, _: Bytes) -> BoxFuture<'a, Result<bool, BoxError>> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn a_store_that_is_down_costs_one_call_then_rests_and_every_request_succeeds() {
    let store = Down::default();
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::ZERO);
    let layer = layer_on(&fetcher, store.clone()).build();
    let svc = layer.layer(Echo::default());
    for _ in 0..5 {
        let res = bounded(LIMIT, svc.clone().oneshot(get("/"))).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    layer.handle().force_refresh().await.unwrap();
    assert_eq!(fetcher.calls(), 2, "fetched on its own");
    assert_eq!(
        store.0.load(Ordering::SeqCst),
        1,
        "after the first failure the store is left alone"
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_that_hangs_is_bounded_by_the_store_timeout() {
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::ZERO);
    let layer = layer_on(&fetcher, Hangs).fetch_timeout(SEC).build();
    let started = tokio::time::Instant::now();
    bounded(LIMIT, layer.handle().warm_up()).await.unwrap();
    assert_eq!(fetcher.calls(), 1);
    assert!(
        started.elapsed() < SEC,
        "one store timeout (100 ms of paused time), not more: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn garbage_in_the_store_is_ignored_and_replaced() {
    let store = Arc::new(MemoryStore::new());
    store
        .put(
            KEY,
            Bytes::from_static(b"{\"v\":1,\"access_token\":\"x y\"}"),
            60 * SEC,
        )
        .await
        .unwrap();
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::ZERO);
    let first = layer_on(&fetcher, store.clone()).build();
    first.handle().warm_up().await.unwrap();
    assert_eq!((fetcher.calls(), first.handle().store_hits()), (1, 0));
    let second = layer_on(&fetcher, store.clone()).build();
    second.handle().warm_up().await.unwrap();
    assert_eq!(
        (fetcher.calls(), second.handle().store_hits()),
        (1, 1),
        "the first layer wrote a good token over the garbage"
    );
    // A stored token that is not a clean header value is refused like a token response.
    store
        .put(
            KEY,
            Bytes::from_static(
                br#"{"v":1,"access_token":"a\r\nX-Evil: 1","token_type":"Bearer","iat":1,"exp":99999999999999}"#,
            ),
            60 * SEC,
        )
        .await
        .unwrap();
    let third = layer_on(&fetcher, store.clone()).build();
    third.handle().warm_up().await.unwrap();
    let res = third
        .layer(Echo::default())
        .oneshot(get("/"))
        .await
        .unwrap();
    assert_eq!(seen(&res), Some("Bearer tok-2"));
}

#[tokio::test]
async fn a_lease_holder_that_died_is_replaced_when_its_lease_ends() {
    let store = Arc::new(MemoryStore::new());
    // A process took the lease and died before writing a token.
    assert!(store
        .lease(KEY, "dead-process", Duration::from_millis(300))
        .await
        .unwrap());
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::ZERO);
    let layer = layer_on(&fetcher, store.clone()).build();
    bounded(LIMIT, layer.handle().warm_up()).await.unwrap();
    assert_eq!(fetcher.calls(), 1);
    let next = layer_on(&fetcher, store.clone()).build();
    next.handle().warm_up().await.unwrap();
    assert_eq!(
        (fetcher.calls(), next.handle().store_hits()),
        (1, 1),
        "the replacement wrote its token for the fleet"
    );
}

#[tokio::test]
async fn a_lease_held_past_the_store_wait_is_fetched_around() {
    let store = Arc::new(MemoryStore::new());
    assert!(store.lease(KEY, "slow-process", 60 * SEC).await.unwrap());
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::ZERO);
    let layer = layer_on(&fetcher, store.clone())
        .store_wait(Duration::from_millis(100))
        .build();
    bounded(LIMIT, layer.handle().warm_up()).await.unwrap();
    assert_eq!(fetcher.calls(), 1);
}

#[tokio::test]
async fn sealed_tokens_are_shared_only_by_layers_with_the_key() {
    let store = Arc::new(MemoryStore::new());
    let key = StoreCipher::new([42; 32]);
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::ZERO);
    let sealed = |cipher: StoreCipher| layer_on(&fetcher, store.clone()).store_cipher(cipher);
    let a = sealed(key.clone()).build();
    a.handle().warm_up().await.unwrap();
    let raw = store.get(KEY).await.unwrap().expect("a stored token");
    assert!(!raw.windows(5).any(|w| w == b"tok-1"), "sealed at rest");
    let b = sealed(key.clone()).build();
    b.handle().warm_up().await.unwrap();
    assert_eq!((fetcher.calls(), b.handle().store_hits()), (1, 1));
    let other_key = sealed(StoreCipher::new([7; 32])).build();
    other_key.handle().warm_up().await.unwrap();
    let no_key = layer_on(&fetcher, store.clone()).build();
    no_key.handle().warm_up().await.unwrap();
    assert_eq!(fetcher.calls(), 3, "neither can read the sealed token");
}

/// A store that keeps the keys it was asked for.
#[cfg(feature = "https")]
#[derive(Clone, Default)]
struct Keys(Arc<std::sync::Mutex<Vec<String>>>, Arc<MemoryStore>);

#[cfg(feature = "https")]
impl TokenStore for Keys {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, BoxError>> {
        self.0.lock().unwrap().push(key.to_owned());
        self.1.get(key)
    }
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        self.1.put(key, value, ttl)
    }
    fn lease<'a>(
        &'a self,
        key: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        self.1.lease(key, owner, ttl)
    }
    fn release<'a>(&'a self, key: &'a str, owner: &'a str) -> BoxFuture<'a, Result<(), BoxError>> {
        self.1.release(key, owner)
    }
    fn invalidate<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        self.1.invalidate(key, value)
    }
}

#[cfg(feature = "https")]
#[tokio::test]
async fn keys_name_the_endpoint_client_parameters_and_scope_but_never_the_secret() {
    let mock = tower_oauth::mock::MockServer::start().await.unwrap();
    let store = Keys::default();
    let creds = common::mock_creds(&mock).param("audience", "https://api.example");
    let layer = OAuthLayer::builder(creds)
        .scope_policy(tower_oauth::ScopePolicy::by_method("read", "write"))
        .store(store.clone())
        .build();
    layer.handle().warm_up().await.unwrap();
    let keys = store.0.lock().unwrap().clone();
    assert_eq!(keys.len(), 2, "one per scope set: {keys:?}");
    for key in &keys {
        assert!(key.starts_with(&mock.token_url()), "{key}");
        assert!(key.contains(mock.client_id()), "{key}");
        assert!(key.contains("audience=https%3A%2F%2Fapi.example"), "{key}");
        assert!(!key.contains(mock.client_secret()), "{key}");
    }
    assert!(keys.iter().any(|k| k.ends_with("|scope=read")));
    assert!(keys.iter().any(|k| k.ends_with("|scope=write")));
}

#[tokio::test]
async fn a_forced_refresh_fetches_and_shares_the_new_token() {
    let store = Arc::new(MemoryStore::new());
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::ZERO);
    let a = layer_on(&fetcher, store.clone()).build();
    a.handle().warm_up().await.unwrap();
    a.handle().force_refresh().await.unwrap();
    assert_eq!(fetcher.calls(), 2, "forced: the store is not read first");
    let b = layer_on(&fetcher, store.clone()).build();
    let res = b.layer(Echo::default()).oneshot(get("/")).await.unwrap();
    assert_eq!(seen(&res), Some("Bearer tok-2"));
}

#[test]
#[should_panic(expected = "store_key")]
fn a_store_without_a_key_is_refused_at_build() {
    let fetcher = service_fn(|_: TokenRequest| async {
        Ok::<_, BoxError>(tower_oauth::Token::new("t", None))
    });
    let _ = OAuthLayer::with_fetcher(fetcher)
        .store(MemoryStore::new())
        .build();
}

#[tokio::test]
async fn short_lived_tokens_are_shared_with_the_default_expiry_margin() {
    // The margin a token gets is at most a tenth of its lifetime, in the store as in the
    // cache: a 3 s token is worth reading for most of its life, not ignored for being
    // shorter than twice the 5 s default margin.
    let store = Arc::new(MemoryStore::new());
    let fetcher = Fetcher::tokens(3 * SEC, Duration::ZERO);
    let a = layer_on(&fetcher, store.clone()).build();
    a.handle().warm_up().await.unwrap();
    let b = layer_on(&fetcher, store.clone()).build();
    b.handle().warm_up().await.unwrap();
    assert_eq!((fetcher.calls(), b.handle().store_hits()), (1, 1));
}
