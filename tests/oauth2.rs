//! The `oauth2` crate's client-credentials exchange as the layer's token fetcher
//! (`tower_oauth::oauth2::fetcher`), against the mock server.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use oauth2::{basic::BasicClient, ClientId, ClientSecret, TokenUrl};
use tower::{ServiceBuilder, ServiceExt};
use tower_oauth::{
    mock::{MockServer, TokenFailure},
    oauth2::{fetcher, Fetcher, TokenClient},
    Error, ErrorKind, FetchReason, OAuthLayer, ScopePolicy, TokenRequest,
};

type Http = Client<HttpConnector, Full<Bytes>>;

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

fn client(token_url: &str, id: &str, secret: &str) -> TokenClient {
    BasicClient::new(ClientId::new(id.to_owned()))
        .set_client_secret(ClientSecret::new(secret.to_owned()))
        .set_token_uri(TokenUrl::new(token_url.to_owned()).unwrap())
}

fn bridge(mock: &MockServer, secret: &str) -> Fetcher<Http> {
    fetcher(client(&mock.token_url(), mock.client_id(), secret), http())
}

fn read_request() -> TokenRequest {
    TokenRequest::new(Some("read".into()), FetchReason::First)
}

async fn list(mock: &MockServer, secret: &str) -> (OAuthLayer, Result<StatusCode, Error>) {
    let layer = OAuthLayer::with_fetcher(bridge(mock, secret))
        .scope_policy(ScopePolicy::fixed(Some("read".into())))
        .build();
    let api = ServiceBuilder::new().layer(layer.clone()).service(http());
    let req = Request::get(format!("{}/api/v1/workflows", mock.base_url()))
        .body(Full::default())
        .unwrap();
    let res = api.oneshot(req).await.map(|r| r.status()).map_err(|e| {
        e.downcast::<Error>()
            .map(|e| *e)
            .unwrap_or_else(|e| panic!("not a tower_oauth::Error: {e}"))
    });
    (layer, res)
}

#[tokio::test]
async fn a_layer_on_the_bridge_gets_a_token_and_the_request_succeeds() {
    let mock = MockServer::start().await.unwrap();
    let (layer, res) = list(&mock, mock.client_secret()).await;
    assert_eq!(res.unwrap(), StatusCode::OK);
    assert_eq!(layer.handle().fetches(), 1);
    assert_eq!(mock.stats().tokens_issued, 1);
    assert_eq!(mock.issued_tokens()[0].scope, "read");
}

#[tokio::test]
async fn a_wrong_secret_is_one_fetch_and_a_non_retryable_invalid_client() {
    let mock = MockServer::start().await.unwrap();
    let (layer, res) = list(&mock, "not-the-secret").await;
    let err = res.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidClient);
    assert!(!err.is_retryable());
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(layer.handle().fetches(), 1);
    assert_eq!(mock.stats().token_requests, 1);
}

#[tokio::test]
async fn the_tokens_lifetime_and_scope_come_from_the_answer() {
    let mock = MockServer::start().await.unwrap();
    mock.set_token_lifetime(Duration::from_secs(900));
    let token = bridge(&mock, mock.client_secret())
        .oneshot(read_request())
        .await
        .unwrap();
    assert_eq!(token.expires_in, Some(Duration::from_secs(900)));
    assert_eq!(token.scope, Some("read".into()));
}

#[tokio::test]
async fn an_unavailable_token_endpoint_is_retryable_with_its_retry_after() {
    let mock = MockServer::start().await.unwrap();
    mock.fail_token_requests(
        1,
        TokenFailure::StatusWithRetryAfter(StatusCode::SERVICE_UNAVAILABLE, 7),
    );
    let err = bridge(&mock, mock.client_secret())
        .oneshot(read_request())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn an_unknown_scope_is_invalid_scope() {
    let mock = MockServer::start().await.unwrap();
    let err = bridge(&mock, mock.client_secret())
        .oneshot(TokenRequest::new(Some("admin".into()), FetchReason::First))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidScope);
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_token_endpoint_that_cannot_be_reached_is_a_retryable_transport_error() {
    let mock = MockServer::start().await.unwrap();
    let token_url = mock.token_url();
    mock.shutdown();
    let err = fetcher(client(&token_url, "id", "secret"), http())
        .oneshot(read_request())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_success_that_is_not_a_token_response_is_malformed() {
    let mock = MockServer::start().await.unwrap();
    mock.fail_token_requests(
        1,
        TokenFailure::Body(StatusCode::OK, "application/json", "{}"),
    );
    let err = bridge(&mock, mock.client_secret())
        .oneshot(read_request())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedResponse);
    assert!(!err.is_retryable());
}
