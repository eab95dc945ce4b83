//! Least privilege: one token per scope set, granted-scope checks, the control handle.

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
use common::{advance, get, seen, send, Echo, Fetcher, Step};
use futures_util::FutureExt;
use http::{Request, StatusCode};
use http_body_util::Full;
use tower::{service_fn, Layer, ServiceExt};
use tower_oauth::{
    fetch::HttpFetcher, ClientCredentials, ErrorKind, OAuthLayer, Scope, ScopePolicy, Token,
    TokenRequest, TokenStatus,
};

const SEC: Duration = Duration::from_secs(1);

fn post(path: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .body(Full::new(Bytes::from_static(b"doc")))
        .unwrap()
}

fn by_method(fetcher: &Fetcher) -> OAuthLayer {
    OAuthLayer::with_fetcher(fetcher.clone())
        .scope_policy(ScopePolicy::by_method("read", "write"))
        .renew_ahead(20 * SEC)
        .build()
}

#[tokio::test(start_paused = true)]
async fn concurrent_gets_and_posts_fetch_exactly_one_token_per_scope() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::from_millis(30));
    let echo = Echo::default();
    let svc = by_method(&fetcher).layer(echo.clone());
    let calls = (0..400).map(|i| {
        let mut svc = svc.clone();
        tokio::spawn(async move {
            let req = if i % 2 == 0 {
                get("/api/v1/workflows")
            } else {
                post("/api/v1/documents")
            };
            let method = req.method().clone();
            (method, send(&mut svc, req).await.unwrap())
        })
    });
    let mut by_token = std::collections::HashMap::<(String, String), usize>::new();
    for r in futures_util::future::join_all(calls).await {
        let (method, res) = r.unwrap();
        *by_token
            .entry((method.to_string(), seen(&res).unwrap().to_owned()))
            .or_default() += 1;
    }
    assert_eq!(fetcher.calls(), 2);
    let mut scopes = fetcher.scopes();
    scopes.sort();
    assert_eq!(scopes, [Some("read".to_owned()), Some("write".to_owned())]);
    // Every GET carried one token, every POST the other.
    assert_eq!(by_token.len(), 2, "{by_token:?}");
    assert!(by_token.values().all(|&n| n == 200));
}

#[tokio::test(start_paused = true)]
async fn renewing_one_scope_does_not_stall_the_other() {
    // The read token's fetches hang after the first; the write scope keeps working.
    let read_calls = Arc::new(AtomicUsize::new(0));
    let counter = read_calls.clone();
    let fetcher = service_fn(move |req: TokenRequest| {
        let n = counter.fetch_add(
            req.scope.as_ref().is_some_and(|s| s.as_str() == "read") as usize,
            Ordering::SeqCst,
        );
        async move {
            let is_read = req.scope.as_ref().is_some_and(|s| s.as_str() == "read");
            if is_read && n >= 1 {
                std::future::pending::<()>().await;
            }
            let token = Token::new(
                format!("{}-token", req.scope.as_ref().unwrap()),
                Some(100 * SEC),
            );
            Ok::<_, Infallible>(token.with_scope(req.scope.unwrap()))
        }
    });
    let layer = OAuthLayer::with_fetcher(fetcher)
        .scope_policy(ScopePolicy::by_method("read", "write"))
        .fetch_timeout(1000 * SEC)
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo::default());
    handle.warm_up().await.unwrap();
    // Both tokens expire; the read side's renewal hangs while the write side renews.
    advance(96 * SEC).await;
    let mut reader = svc.clone();
    let stuck_read = tokio::spawn(async move { send(&mut reader, get("/r")).await });
    advance(Duration::ZERO).await;
    let res = tokio::time::timeout(SEC, send(&mut svc, post("/w")))
        .await
        .expect("write is not stalled");
    assert_eq!(seen(&res.unwrap()), Some("Bearer write-token"));
    assert!(
        !stuck_read.is_finished(),
        "read still waits for its own token"
    );
    let states = handle.state();
    let read = states
        .iter()
        .find(|s| s.scope == Some(Scope::new("read")))
        .unwrap();
    assert!(read.fetching);
    assert_eq!(read_calls.load(Ordering::SeqCst), 2);
}

/// A fetcher that always grants only `read`, whatever was asked.
fn grants_read_only(
) -> impl tower::Service<TokenRequest, Response = Token, Error = Infallible, Future = impl Send>
       + Clone
       + Send
       + Sync
       + 'static {
    service_fn(|_req: TokenRequest| async {
        Ok::<_, Infallible>(Token::new("narrow", Some(100 * SEC)).with_scope("read"))
    })
}

#[tokio::test(start_paused = true)]
async fn an_insufficient_granted_scope_is_reported_and_the_request_still_sent() {
    let layer = OAuthLayer::with_fetcher(grants_read_only())
        .scope_policy(ScopePolicy::fixed(Some("read write".into())))
        .build();
    let handle = layer.handle();
    let echo = Echo::default();
    let mut svc = layer.layer(echo.clone());
    let res = send(&mut svc, post("/x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let state = &handle.state()[0];
    assert_eq!(state.granted_scope, Some(Scope::new("read")));
    assert!(!state.scope_satisfied);
    assert_eq!(echo.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn strict_mode_refuses_an_insufficient_scope_before_sending() {
    let layer = OAuthLayer::with_fetcher(grants_read_only())
        .scope_policy(ScopePolicy::fixed(Some("read write".into())))
        .strict_scope(true)
        .build();
    let echo = Echo::default();
    let mut svc = layer.layer(echo.clone());
    for _ in 0..2 {
        let err = send(&mut svc, post("/x")).await.unwrap_err();
        let err = err.downcast_ref::<tower_oauth::Error>().unwrap();
        assert_eq!(err.kind(), ErrorKind::InsufficientScope);
        assert!(!err.is_retryable());
    }
    assert_eq!(echo.calls(), 0, "nothing was sent");
    // The control handle says so too, as requests would get it.
    for result in [
        layer.handle().warm_up().await,
        layer.handle().force_refresh().await,
    ] {
        assert_eq!(result.unwrap_err().kind(), ErrorKind::InsufficientScope);
    }
}

#[tokio::test(start_paused = true)]
async fn a_403_insufficient_scope_passes_through_without_reissue() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let inner = service_fn(|_req: Request<Full<Bytes>>| async {
        let mut res = http::Response::new(Full::new(Bytes::from_static(
            br#"{"type":"insufficient_scope","status":403,"title":"Insufficient Scope"}"#,
        )));
        *res.status_mut() = StatusCode::FORBIDDEN;
        res.headers_mut()
            .insert("content-type", "application/problem+json".parse().unwrap());
        Ok::<_, Infallible>(res)
    });
    let mut svc = OAuthLayer::with_fetcher(fetcher.clone())
        .build()
        .layer(inner);
    for _ in 0..3 {
        let res = send(&mut svc, post("/x")).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(fetcher.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn force_refresh_renews_every_scope_while_requests_keep_going() {
    let fetcher = Fetcher::script(vec![Step::Token {
        lifetime: Some(100 * SEC),
        delay: SEC,
    }]);
    let layer = by_method(&fetcher);
    let handle = layer.handle();
    let mut svc = layer.layer(Echo::default());
    handle.warm_up().await.unwrap();
    assert_eq!(fetcher.calls(), 2);
    let forced = tokio::spawn({
        let handle = handle.clone();
        async move { handle.force_refresh().await }
    });
    advance(Duration::ZERO).await;
    // During the forced renewal the current tokens are still served at once.
    let fut = ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
        .await
        .unwrap();
    let res = tower::Service::call(fut, get("/x"))
        .now_or_never()
        .unwrap()
        .unwrap();
    assert!(seen(&res).is_some());
    advance(2 * SEC).await;
    forced.await.unwrap().unwrap();
    assert_eq!(fetcher.calls(), 4);
    assert!(handle
        .state()
        .iter()
        .all(|s| s.status == TokenStatus::Fresh));
}

#[tokio::test(start_paused = true)]
async fn the_handle_view_holds_no_secret() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let layer = by_method(&fetcher);
    let handle = layer.handle();
    handle.warm_up().await.unwrap();
    let shown = format!("{handle:?} {:?} {layer:?}", handle.state());
    assert!(!shown.contains("tok-"), "{shown}");
    assert!(shown.contains("read") && shown.contains("write"));
    assert_eq!(handle.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn one_scope_set_written_two_ways_or_left_empty_is_one_token() {
    // by_method with the same set for both: one token for GETs and POSTs.
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .scope_policy(ScopePolicy::by_method("read write", "write read"))
        .build();
    let mut svc = layer.layer(Echo::default());
    let got = seen(&send(&mut svc, get("/x")).await.unwrap()).map(str::to_owned);
    let posted = seen(&send(&mut svc, post("/x")).await.unwrap()).map(str::to_owned);
    assert_eq!(got, posted);
    assert_eq!(fetcher.scopes(), [Some("read write".to_owned())]);
    assert_eq!(layer.handle().state().len(), 1);

    // An empty scope asks for none, as `None` does: one token, no scope parameter.
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .scope_policy(ScopePolicy::from_fn(|req| {
            (req.method == http::Method::POST).then(|| Scope::new(" "))
        }))
        .build();
    let mut svc = layer.layer(Echo::default());
    send(&mut svc, get("/x")).await.unwrap();
    send(&mut svc, post("/x")).await.unwrap();
    assert_eq!(fetcher.scopes(), [None]);
    assert_eq!(layer.handle().state().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_scope_function_gets_every_scope_set_it_asks_for_and_no_more() {
    // No fixed limit on scope sets (idle ones are swept out: tests/scope_sets.rs); a
    // request with its own `Authorization` takes none.
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .scope_policy(ScopePolicy::from_fn(|req| {
            Some(Scope::new(req.uri.path().trim_start_matches('/')))
        }))
        .build();
    let mut svc = layer.layer(Echo::default());
    // Requests with their own `Authorization` need no token and take no set.
    for i in 0..100 {
        let mut own = get(&format!("/own{i}"));
        own.headers_mut()
            .insert(http::header::AUTHORIZATION, "Bearer mine".parse().unwrap());
        assert_eq!(
            seen(&send(&mut svc, own).await.unwrap()),
            Some("Bearer mine")
        );
    }
    assert!(layer.handle().state().is_empty());
    for i in 0..65 {
        let res = send(&mut svc, get(&format!("/s{i}"))).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(fetcher.calls(), 65, "a token for each set, the 65th too");
    assert_eq!(layer.handle().state().len(), 65);

    // Known sets are not fetched again, and a request with its own `Authorization` passes
    // through.
    let res = send(&mut svc, get("/s7")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut own = get("/s65");
    own.headers_mut()
        .insert(http::header::AUTHORIZATION, "Bearer mine".parse().unwrap());
    let res = send(&mut svc, own).await.unwrap();
    assert_eq!(seen(&res), Some("Bearer mine"));
    assert_eq!(fetcher.calls(), 65);
    assert_eq!(layer.handle().state().len(), 65);
}

#[tokio::test]
async fn a_request_the_policy_gives_no_scope_asks_for_none_whatever_the_credentials_say() {
    // The token endpoint, in process: records each form and answers a token.
    let forms = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let endpoint = {
        let forms = forms.clone();
        service_fn(move |req: Request<Full<Bytes>>| {
            let forms = forms.clone();
            async move {
                let body = http_body_util::BodyExt::collect(req.into_body()).await?;
                let form = String::from_utf8(body.to_bytes().to_vec()).unwrap();
                forms.lock().unwrap().push(form);
                let token = r#"{"access_token":"t","token_type":"Bearer","expires_in":60}"#;
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(token))))
            }
        })
    };
    let creds = ClientCredentials::new("http://127.0.0.1:9/token", "id", "secret").scope("admin");
    let admin_only =
        ScopePolicy::from_fn(|req| req.uri.path().starts_with("/admin").then(|| "admin".into()));
    let layer = OAuthLayer::with_fetcher(HttpFetcher::new(endpoint.clone(), creds.clone()))
        .scope_policy(admin_only)
        .build();
    let mut svc = layer.layer(Echo::default());
    send(&mut svc, get("/public")).await.unwrap();
    send(&mut svc, get("/admin/users")).await.unwrap();
    // Under `with_fetcher` with no policy set, the fetcher's credentials' scope.
    let layer = OAuthLayer::with_fetcher(HttpFetcher::new(endpoint, creds)).build();
    send(&mut layer.layer(Echo::default()), get("/public"))
        .await
        .unwrap();

    let forms = forms.lock().unwrap().clone();
    assert_eq!(forms.len(), 3, "{forms:?}");
    assert!(!forms[0].contains("scope"), "{}", forms[0]);
    assert!(forms[1].contains("scope=admin"), "{}", forms[1]);
    assert!(forms[2].contains("scope=admin"), "{}", forms[2]);
}
