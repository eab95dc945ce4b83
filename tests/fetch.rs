//! The HTTP fetcher against the mock SimpleDocs server: both client authentication
//! methods, hostile secrets, scopes, a user-supplied HTTP client.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{get, seen, send, Echo};
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{Layer, Service, ServiceExt};
use tower_oauth::{
    fetch::HttpFetcher,
    mock::{MockConfig, MockServer},
    AuthMethod, ClientCredentials, ErrorKind, FetchReason, OAuthLayer, Scope, ScopePolicy,
    TokenRequest,
};

const HOSTILE: &str = "p+l&u=s%2B/\"q\\ u\u{fc}ber secret";

async fn hostile_mock() -> MockServer {
    MockServer::start_with(
        MockConfig::new()
            .client_id("id with space+plus")
            .client_secret(HOSTILE),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_hostile_secret_works_with_both_authentication_methods() {
    let mock = hostile_mock().await;
    for method in [AuthMethod::ClientSecretPost, AuthMethod::ClientSecretBasic] {
        let creds = ClientCredentials::new(&mock.token_url(), mock.client_id(), HOSTILE)
            .auth_method(method);
        let mut fetcher = HttpFetcher::https(creds);
        let token = fetcher
            .ready()
            .await
            .unwrap()
            .call(TokenRequest::new(
                Some(Scope::new("write read")),
                FetchReason::First,
            ))
            .await
            .unwrap_or_else(|e| panic!("{method:?}: {e}"));
        assert_eq!(token.scope, Some(Scope::new("read write")));
        assert_eq!(token.expires_in, Some(Duration::from_secs(7200)));
    }
    assert_eq!(mock.stats().tokens_issued, 2);
}

#[tokio::test]
async fn a_wrong_secret_is_invalid_client_with_both_methods() {
    let mock = hostile_mock().await;
    for method in [AuthMethod::ClientSecretPost, AuthMethod::ClientSecretBasic] {
        let creds = ClientCredentials::new(&mock.token_url(), mock.client_id(), "p+l&u=s")
            .auth_method(method);
        let err = HttpFetcher::https(creds)
            .oneshot(TokenRequest::new(None, FetchReason::First))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidClient, "{method:?}");
        assert!(!err.to_string().contains("p+l&u=s"));
    }
}

#[tokio::test]
async fn the_fetcher_runs_over_a_client_the_application_already_has() {
    let mock = MockServer::start().await.unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let creds = ClientCredentials::new(&mock.token_url(), mock.client_id(), mock.client_secret());
    let layer = OAuthLayer::with_fetcher(HttpFetcher::new(client, creds))
        .scope_policy(ScopePolicy::fixed(Some("read".into())))
        .build();
    let mut svc = layer.layer(Echo::default());
    let res = send(&mut svc, get("/x")).await.unwrap();
    assert!(seen(&res).unwrap().starts_with("Bearer sdk_"));
    assert_eq!(mock.stats().tokens_issued, 1);
    assert_eq!(mock.issued_tokens()[0].scope, "read");
}

#[tokio::test]
async fn a_dynamic_scope_policy_keeps_one_token_per_scope_it_returns() {
    let mock = MockServer::start().await.unwrap();
    let creds = ClientCredentials::new(&mock.token_url(), mock.client_id(), mock.client_secret());
    let layer = OAuthLayer::builder(creds)
        .scope_policy(ScopePolicy::from_fn(|req| {
            Some(
                if req.uri.path().starts_with("/admin") {
                    "read write"
                } else {
                    "read"
                }
                .into(),
            )
        }))
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo::default());
    for path in ["/a", "/admin/x", "/b", "/admin/y", "/c"] {
        send(&mut svc, get(path)).await.unwrap();
    }
    assert_eq!(mock.stats().tokens_issued, 2);
    let mut scopes: Vec<String> = handle
        .state()
        .iter()
        .map(|s| s.scope.as_ref().unwrap().to_string())
        .collect();
    scopes.sort();
    assert_eq!(scopes, ["read", "read write"]);
}
