//! One layer for many applications (tenants): a token per tenant and scope set, fetched
//! with the tenant's credentials, looked up per request, forgotten when idle.

mod common;

use std::{
    collections::HashSet,
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use common::{advance, bounded, get, seen, send, Echo};
use http::Request;
use http_body_util::Full;
use tower::{service_fn, Layer, ServiceExt};
use tower_oauth::{
    mock::{MockConfig, MockServer},
    ClientCredentials, Error, ErrorKind, OAuthLayer, OAuthLayerBuilder, ScopePolicy, Tenant, Token,
    TokenRequest,
};

const SEC: Duration = Duration::from_secs(1);

fn for_tenant(name: &str) -> Request<Full<Bytes>> {
    let mut req = get("/documents");
    req.headers_mut().insert("x-tenant", name.parse().unwrap());
    req
}

fn pick(req: &tower_oauth::RequestHead<'_>) -> Option<Tenant> {
    let name = req.headers.get("x-tenant")?.to_str().ok()?;
    Some(Tenant::from(name))
}

/// A layer for tenants whose fetcher answers `tok-<tenant>-<n>` at once, for an hour;
/// and the tenants it was asked for, in order.
fn tenants_with_fetcher() -> (OAuthLayerBuilder, Arc<Mutex<Vec<String>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    let n = Arc::new(AtomicUsize::new(0));
    let fetcher = service_fn(move |req: TokenRequest| {
        let tenant = req
            .tenant()
            .expect("every request names a tenant")
            .to_string();
        log.lock().unwrap().push(tenant.clone());
        let n = n.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok::<_, Infallible>(Token::new(format!("tok-{tenant}-{n}"), Some(3600 * SEC))) }
    });
    (OAuthLayer::with_fetcher(fetcher).tenant_policy(pick), asked)
}

#[tokio::test]
async fn ten_thousand_tenants_each_get_their_own_token_once() {
    let (builder, asked) = tenants_with_fetcher();
    let layer = builder.build();
    let mut svc = layer.layer(Echo::default());
    for pass in 0..2 {
        for i in 0..10_000 {
            let name = format!("t{i}");
            let res = send(&mut svc, for_tenant(&name)).await.unwrap();
            let token = seen(&res).unwrap();
            assert!(
                token.starts_with(&format!("Bearer tok-{name}-")),
                "pass {pass}, tenant {name}: {token}"
            );
        }
    }
    let asked = asked.lock().unwrap();
    assert_eq!(
        asked.len(),
        10_000,
        "one fetch per tenant, none on the second pass"
    );
    assert_eq!(asked.iter().collect::<HashSet<_>>().len(), 10_000);
    assert_eq!(layer.handle().state().len(), 10_000);
}

#[tokio::test(start_paused = true)]
async fn idle_tenants_are_forgotten_and_fetch_again_when_they_return() {
    let (builder, asked) = tenants_with_fetcher();
    let layer = builder.scope_idle_timeout(60 * SEC).build();
    let mut svc = layer.layer(Echo::default());
    for name in ["a", "b", "c"] {
        send(&mut svc, for_tenant(name)).await.unwrap();
    }
    assert_eq!(layer.handle().state().len(), 3);
    // "a" keeps coming; "b" and "c" go idle.
    for _ in 0..8 {
        advance(10 * SEC).await;
        send(&mut svc, for_tenant("a")).await.unwrap();
    }
    let left: Vec<_> = layer
        .handle()
        .state()
        .into_iter()
        .map(|s| s.tenant.unwrap().to_string())
        .collect();
    assert_eq!(left, ["a"], "idle tenants swept out");
    send(&mut svc, for_tenant("b")).await.unwrap();
    assert_eq!(asked.lock().unwrap().as_slice(), ["a", "b", "c", "b"]);
}

#[tokio::test]
async fn a_tenant_has_a_token_per_scope_set() {
    let (builder, asked) = tenants_with_fetcher();
    let layer = builder
        .scope_policy(ScopePolicy::by_method("read", "write"))
        .build();
    let mut svc = layer.layer(Echo::default());
    for name in ["a", "b"] {
        send(&mut svc, for_tenant(name)).await.unwrap();
        let mut post = for_tenant(name);
        *post.method_mut() = http::Method::POST;
        send(&mut svc, post).await.unwrap();
        send(&mut svc, for_tenant(name)).await.unwrap();
    }
    assert_eq!(asked.lock().unwrap().len(), 4, "(tenant, scope set) pairs");
    let mut keys: Vec<_> = layer
        .handle()
        .state()
        .into_iter()
        .map(|s| (s.tenant.unwrap().to_string(), s.scope.unwrap().to_string()))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [("a", "read"), ("a", "write"), ("b", "read"), ("b", "write")]
            .map(|(t, s)| (t.to_owned(), s.to_owned()))
    );
}

/// A layer for the mock's tenant applications, by number (`x-tenant: 2`); tenant 99
/// has credentials the mock does not know, tenant 0 none at all.
fn for_mock_tenants(mock: &MockServer) -> OAuthLayerBuilder {
    let url = mock.token_url();
    let known: Vec<(String, String)> = (1..=3).map(|i| mock.tenant_credentials(i)).collect();
    OAuthLayer::for_tenants(pick, move |tenant| {
        let i: usize = tenant.as_str().parse().ok()?;
        let (id, secret) = match i {
            0 => return None,
            99 => ("tenant-99".to_owned(), "tenant-99-secret".to_owned()),
            i => known.get(i - 1)?.clone(),
        };
        Some(ClientCredentials::new(&url, id, secret).scope("read"))
    })
    .retry_budget(Duration::ZERO)
}

async fn failure(layer: &tower_oauth::OAuthLayer, req: Request<Full<Bytes>>) -> Error {
    let err = bounded(10 * SEC, layer.layer(Echo::default()).oneshot(req))
        .await
        .expect_err("a token failure");
    err.downcast_ref::<Error>()
        .expect("a tower_oauth::Error")
        .clone()
}

#[tokio::test]
async fn each_tenant_is_fetched_with_its_own_credentials() {
    let mock = MockServer::start_with(MockConfig::new().tenants(3))
        .await
        .unwrap();
    let layer = for_mock_tenants(&mock).build();
    let mut tokens = HashSet::new();
    for i in 1..=3 {
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let svc = layer.layer(http);
        let res = svc
            .oneshot(
                Request::get(format!("{}/api/v1/workflows", mock.base_url()))
                    .header("x-tenant", i.to_string())
                    .body(Full::default())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "tenant {i}");
        let echo = layer
            .layer(Echo::default())
            .oneshot(for_tenant(&i.to_string()))
            .await
            .unwrap();
        tokens.insert(seen(&echo).unwrap().to_owned());
    }
    assert_eq!(tokens.len(), 3, "a token each");
    assert_eq!(mock.stats().tokens_issued, 3);
    let unknown = failure(&layer, for_tenant("99")).await;
    assert_eq!(unknown.kind(), ErrorKind::InvalidClient);
    let none = failure(&layer, for_tenant("0")).await;
    assert_eq!(none.kind(), ErrorKind::Config);
    assert!(
        none.to_string().contains("no credentials for tenant"),
        "{none}"
    );
    let unnamed = failure(&layer, get("/")).await;
    assert_eq!(unnamed.kind(), ErrorKind::Config);
    // The failures are the failing tenants' own: the others still work.
    let ok = layer
        .layer(Echo::default())
        .oneshot(for_tenant("2"))
        .await
        .unwrap();
    assert!(seen(&ok).is_some());
    assert_eq!(mock.stats().tokens_issued, 3);
}

#[tokio::test]
async fn layers_for_tenants_share_each_tenants_token_through_a_store() {
    let mock = MockServer::start_with(MockConfig::new().tenants(2))
        .await
        .unwrap();
    let store = Arc::new(tower_oauth::store::MemoryStore::new());
    let a = for_mock_tenants(&mock).store(store.clone()).build();
    let b = for_mock_tenants(&mock).store(store.clone()).build();
    let seen_by = |layer: &tower_oauth::OAuthLayer, tenant: &str| {
        let call = layer.layer(Echo::default()).oneshot(for_tenant(tenant));
        async move { seen(&call.await.unwrap()).unwrap().to_owned() }
    };
    let one = seen_by(&a, "1").await;
    assert_eq!(
        seen_by(&b, "1").await,
        one,
        "tenant 1's token, from the store"
    );
    assert_eq!(mock.stats().tokens_issued, 1);
    assert_ne!(seen_by(&b, "2").await, one, "tenant 2 has its own");
    assert_eq!(mock.stats().tokens_issued, 2);
    assert_eq!((a.handle().store_hits(), b.handle().store_hits()), (0, 1));
}
