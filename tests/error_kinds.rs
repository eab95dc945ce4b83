//! Every kind of token failure, end to end: a real `HttpFetcher` (the built-in client,
//! and one over an application's own hyper-util client) against a token endpoint on
//! 127.0.0.1 that answers exactly what each test says. The request fails with a
//! `tower_oauth::Error` of the right kind and retryability, whose text is lowercase and
//! holds no secret; errors of the inner service pass through untouched.

mod common;

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use common::{bounded, creds, get, mock_creds, quick, token_failure, Echo};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{Layer, Service, ServiceExt};
use tower_oauth::{
    fetch::HttpFetcher,
    mock::{MockConfig, MockServer, TokenFailure},
    AuthMethod, BoxError, ClientCredentials, Error, ErrorKind, OAuthLayer, OAuthLayerBuilder,
    ScopePolicy, Token, TokenRequest,
};

/// The secret of every test's client; no error may show it.
const SECRET: &str = "kinds-S3CR3T-9f2c";
/// A wrong secret, sent to the real mock; no error may show it either.
const WRONG_SECRET: &str = "wrong-S3CR3T-41d7";

/// The same credentials behind both fetchers: the built-in client, and `HttpFetcher::new`
/// over a plain hyper-util client.
fn layers(
    creds: ClientCredentials,
    settings: fn(OAuthLayerBuilder) -> OAuthLayerBuilder,
) -> Vec<(&'static str, OAuthLayer)> {
    let builtin = settings(OAuthLayer::builder(creds.clone())).build();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    // `with_fetcher` starts without a scope; give it the credentials' one, as `builder` does.
    let scope = ScopePolicy::fixed(creds.scope_ref().cloned());
    let custom = settings(OAuthLayer::with_fetcher(HttpFetcher::new(client, creds)))
        .scope_policy(scope)
        .build();
    vec![("built-in client", builtin), ("hyper-util client", custom)]
}

/// Settings applied to a test's layers.
type Settings = fn(OAuthLayerBuilder) -> OAuthLayerBuilder;

/// How long one request may take to fail.
const LIMIT: Duration = Duration::from_secs(10);

/// The checks every error gets: kind, retryability, a lowercase text of our own, no secret.
fn check(via: &str, err: &Error, kind: ErrorKind, retryable: bool) {
    assert_eq!(err.kind(), kind, "{via}: {err:?}");
    assert_eq!(err.is_retryable(), retryable, "{via}: {err:?}");
    let ours = kind.to_string();
    assert_eq!(
        ours,
        ours.to_lowercase(),
        "{via}: the crate's own text is lowercase"
    );
    let shown = err.to_string();
    assert!(
        shown.starts_with(&ours),
        "{via}: {shown:?} starts with {ours:?}"
    );
    for text in [shown, format!("{err:?}")] {
        assert!(!text.contains(SECRET), "{via}: secret in {text:?}");
        assert!(!text.contains(WRONG_SECRET), "{via}: secret in {text:?}");
        assert!(
            !text.contains('\n') && !text.contains('\r'),
            "{via}: {text:?}"
        );
    }
}

/// Runs one failure of the mock's token endpoint through both fetchers.
async fn mock_failure(failure_knob: TokenFailure) -> Vec<(&'static str, Error)> {
    let mock = MockServer::start().await.unwrap();
    mock.fail_token_requests(usize::MAX, failure_knob);
    let mut out = Vec::new();
    for (via, layer) in layers(creds(&mock.token_url(), SECRET), quick) {
        let err = token_failure(&layer, LIMIT).await;
        assert_eq!(layer.handle().fetches(), 1, "{via}: no budget, one fetch");
        out.push((via, err));
    }
    assert_eq!(mock.stats().token_requests, 2);
    out
}

async fn body_failure(
    status: u16,
    content_type: &'static str,
    body: &'static str,
) -> Vec<(&'static str, Error)> {
    let status = StatusCode::from_u16(status).unwrap();
    mock_failure(TokenFailure::Body(status, content_type, body)).await
}

// ---------------------------------------------------------------------------------------
// Rejected credentials
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_simpledocs_invalid_client_problem_is_an_invalid_client_error() {
    let body = r#"{"type":"invalid_client","status":401,"title":"Invalid Client","detail":"Client authentication failed."}"#;
    for (via, err) in body_failure(401, "application/problem+json", body).await {
        check(via, &err, ErrorKind::InvalidClient, false);
        assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED), "{via}");
        assert_eq!(err.oauth_error(), Some("invalid_client"), "{via}");
    }
}

#[tokio::test]
async fn an_rfc6749_invalid_client_is_an_invalid_client_error() {
    let body = r#"{"error":"invalid_client","error_description":"unknown client"}"#;
    for (via, err) in body_failure(400, "application/json", body).await {
        check(via, &err, ErrorKind::InvalidClient, false);
        assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST), "{via}");
        assert_eq!(err.oauth_error(), Some("invalid_client"), "{via}");
    }
}

#[tokio::test]
async fn a_problem_type_given_as_a_uri_is_read_by_its_last_segment() {
    let body = r#"{"type":"https://errors.example/oauth/invalid_client","status":401}"#;
    for (via, err) in body_failure(401, "application/problem+json", body).await {
        check(via, &err, ErrorKind::InvalidClient, false);
        assert_eq!(err.oauth_error(), Some("invalid_client"), "{via}");
    }
}

#[tokio::test]
async fn a_wrong_secret_is_an_invalid_client_error_whatever_the_auth_method() {
    let mock = MockServer::start_with(MockConfig::new().client_secret(SECRET))
        .await
        .unwrap();
    for method in [AuthMethod::ClientSecretPost, AuthMethod::ClientSecretBasic] {
        let wrong = ClientCredentials::new(&mock.token_url(), mock.client_id(), WRONG_SECRET)
            .auth_method(method);
        for (via, layer) in layers(wrong, quick) {
            let via = &format!("{via}, {method:?}");
            let err = token_failure(&layer, LIMIT).await;
            check(via, &err, ErrorKind::InvalidClient, false);
            assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED), "{via}");
            // Warming up fails fast with the same kind.
            let warm = layer.handle().warm_up().await.unwrap_err();
            check(via, &warm, ErrorKind::InvalidClient, false);
        }
    }
    assert_eq!(mock.stats().tokens_issued, 0);
}

// ---------------------------------------------------------------------------------------
// Scope and grant
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_scope_beyond_the_application_is_an_invalid_scope_error() {
    let mock = MockServer::start_with(MockConfig::new().app_scope("read"))
        .await
        .unwrap();
    let creds = ClientCredentials::new(&mock.token_url(), mock.client_id(), mock.client_secret())
        .scope("read write");
    for (via, layer) in layers(creds, quick) {
        let err = token_failure(&layer, LIMIT).await;
        check(via, &err, ErrorKind::InvalidScope, false);
        assert_eq!(err.oauth_error(), Some("invalid_scope"), "{via}");
    }
    assert_eq!(mock.stats().tokens_issued, 0);
}

#[tokio::test]
async fn no_scope_for_a_read_write_application_is_an_invalid_scope_error_with_the_reason() {
    // The mock's application has the `read write` scope: it must ask for one explicitly.
    let mock = MockServer::start().await.unwrap();
    let creds = ClientCredentials::new(&mock.token_url(), mock.client_id(), mock.client_secret());
    assert!(creds.scope_ref().is_none());
    for (via, layer) in layers(creds, quick) {
        let err = token_failure(&layer, LIMIT).await;
        check(via, &err, ErrorKind::InvalidScope, false);
        assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST), "{via}");
        assert_eq!(err.oauth_error(), Some("invalid_scope"), "{via}");
        // The server's own reason comes with it.
        let shown = err.to_string();
        assert!(
            shown.ends_with(
                ": An application with the read write scope must ask for scope explicitly: \
                 read, write or read write."
            ),
            "{via}: {shown}"
        );
        assert_eq!(layer.handle().fetches(), 1, "{via}: not retried");
    }
    assert_eq!(mock.stats().tokens_issued, 0);
}

#[tokio::test]
async fn an_rfc6749_invalid_scope_is_an_invalid_scope_error() {
    let body = r#"{"error":"invalid_scope","error_description":"scope admin is unknown"}"#;
    for (via, err) in body_failure(400, "application/json", body).await {
        check(via, &err, ErrorKind::InvalidScope, false);
        assert_eq!(err.oauth_error(), Some("invalid_scope"), "{via}");
    }
}

#[tokio::test]
async fn unauthorized_client_is_its_own_kind() {
    let body = r#"{"error":"unauthorized_client","error_description":"grant not allowed"}"#;
    for (via, err) in body_failure(400, "application/json", body).await {
        check(via, &err, ErrorKind::UnauthorizedClient, false);
        assert_eq!(err.oauth_error(), Some("unauthorized_client"), "{via}");
    }
}

#[tokio::test]
async fn other_oauth_codes_are_oauth_errors_that_name_the_code() {
    let body = r#"{"error":"unsupported_grant_type"}"#;
    for (via, err) in body_failure(400, "application/json", body).await {
        check(via, &err, ErrorKind::OAuth, false);
        assert_eq!(err.oauth_error(), Some("unsupported_grant_type"), "{via}");
        assert!(
            err.to_string().contains("unsupported_grant_type"),
            "{via}: {err}"
        );
    }
}

#[tokio::test]
async fn server_error_and_temporarily_unavailable_are_retryable_oauth_errors() {
    for (status, code) in [(500, "server_error"), (503, "temporarily_unavailable")] {
        let status = StatusCode::from_u16(status).unwrap();
        for (via, err) in mock_failure(TokenFailure::Status(status)).await {
            check(via, &err, ErrorKind::OAuth, true);
            assert_eq!(err.oauth_error(), Some(code), "{via}");
            assert_eq!(err.status(), Some(status), "{via}");
        }
    }
}

#[tokio::test]
async fn retry_after_is_reported_with_the_error() {
    let knob = TokenFailure::StatusWithRetryAfter(StatusCode::SERVICE_UNAVAILABLE, 7);
    for (via, err) in mock_failure(knob).await {
        check(via, &err, ErrorKind::OAuth, true);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)), "{via}");
    }
}

// ---------------------------------------------------------------------------------------
// HTTP errors without an OAuth document, and malformed successes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_html_error_page_is_a_retryable_http_status_error() {
    let page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
    for (via, err) in body_failure(502, "text/html", page).await {
        check(via, &err, ErrorKind::HttpStatus, true);
        assert_eq!(err.status(), Some(StatusCode::BAD_GATEWAY), "{via}");
        assert_eq!(err.oauth_error(), None, "{via}");
        assert!(err.to_string().contains("502"), "{via}: {err}");
    }
}

#[tokio::test]
async fn a_plain_text_500_is_a_retryable_http_status_error() {
    for (via, err) in body_failure(500, "text/plain", "Internal Server Error").await {
        check(via, &err, ErrorKind::HttpStatus, true);
        assert_eq!(
            err.status(),
            Some(StatusCode::INTERNAL_SERVER_ERROR),
            "{via}"
        );
    }
}

#[tokio::test]
async fn too_many_requests_is_retryable_and_a_plain_4xx_is_not() {
    for (via, err) in body_failure(429, "", "").await {
        check(via, &err, ErrorKind::HttpStatus, true);
        assert_eq!(err.status(), Some(StatusCode::TOO_MANY_REQUESTS), "{via}");
    }
    for (via, err) in body_failure(404, "text/plain", "no such endpoint").await {
        check(via, &err, ErrorKind::HttpStatus, false);
        assert_eq!(err.status(), Some(StatusCode::NOT_FOUND), "{via}");
    }
    // JSON, but not an error document: still just a status.
    for (via, err) in body_failure(401, "application/json", r#"{"message":"nope"}"#).await {
        check(via, &err, ErrorKind::HttpStatus, false);
    }
}

#[tokio::test]
async fn a_success_that_is_not_json_is_a_malformed_response() {
    for (via, err) in body_failure(200, "text/html", "<html>welcome</html>").await {
        check(via, &err, ErrorKind::MalformedResponse, false);
    }
}

#[tokio::test]
async fn a_success_carrying_an_error_field_is_that_error() {
    let body = r#"{"error":"invalid_scope","error_description":"nope"}"#;
    for (via, err) in body_failure(200, "application/json", body).await {
        check(via, &err, ErrorKind::InvalidScope, false);
        assert_eq!(err.oauth_error(), Some("invalid_scope"), "{via}");
    }
    // Even next to a token, the error wins: the token is not used.
    let body = r#"{"access_token":"tok-next-to-error","error":"invalid_client"}"#;
    for (via, err) in body_failure(200, "application/json", body).await {
        check(via, &err, ErrorKind::InvalidClient, false);
        assert!(
            !format!("{err} {err:?}").contains("tok-next-to-error"),
            "{via}"
        );
    }
    let body = r#"{"error":"access_denied"}"#;
    for (via, err) in body_failure(200, "application/json", body).await {
        check(via, &err, ErrorKind::OAuth, false);
        assert_eq!(err.oauth_error(), Some("access_denied"), "{via}");
    }
}

// ---------------------------------------------------------------------------------------
// Transport and time
// ---------------------------------------------------------------------------------------

/// A loopback port that was bound, then closed: connecting to it is refused.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_transport_error() {
    let url = format!("http://127.0.0.1:{}/token", closed_port().await);
    for (via, layer) in layers(creds(&url, SECRET), quick) {
        let err = token_failure(&layer, LIMIT).await;
        check(via, &err, ErrorKind::Transport, true);
        assert_eq!(err.status(), None, "{via}");
        assert!(
            std::error::Error::source(&err).is_some(),
            "{via}: keeps the cause"
        );
    }
}

#[tokio::test]
async fn errors_name_the_token_host_and_a_named_layer_so_two_layers_are_told_apart() {
    let mut shown = Vec::new();
    let named: [(&str, Settings); 2] = [
        ("simpledocs", |b| quick(b).name("simpledocs")),
        ("billing", |b| quick(b).name("billing")),
    ];
    for (name, settings) in named {
        let port = closed_port().await;
        let url = format!("http://127.0.0.1:{port}/token?key=in-the-query");
        // Unnamed, either fetcher: the host alone.
        for (via, layer) in layers(creds(&url, SECRET), quick) {
            let err = token_failure(&layer, LIMIT).await;
            assert_eq!(
                err.to_string(),
                format!("token request failed (127.0.0.1:{port})"),
                "{via}"
            );
        }
        // Named: the name first.
        for (via, layer) in layers(creds(&url, SECRET), settings) {
            let err = token_failure(&layer, LIMIT).await.to_string();
            assert_eq!(
                err,
                format!("{name}: token request failed (127.0.0.1:{port})"),
                "{via}"
            );
            shown.push(err);
        }
    }
    assert_ne!(shown[0], shown[2], "{shown:?}");
}

#[tokio::test]
async fn a_dropped_connection_is_a_retryable_transport_error() {
    for (via, err) in mock_failure(TokenFailure::CloseConnection).await {
        check(via, &err, ErrorKind::Transport, true);
        assert_eq!(err.status(), None, "{via}");
    }
}

#[tokio::test]
async fn an_endpoint_that_never_answers_is_a_retryable_timeout() {
    for (via, err) in mock_failure(TokenFailure::Hang).await {
        check(via, &err, ErrorKind::Timeout, true);
        assert_eq!(err.status(), None, "{via}");
    }
}

// ---------------------------------------------------------------------------------------
// Retryability drives retries
// ---------------------------------------------------------------------------------------

fn with_budget(builder: OAuthLayerBuilder) -> OAuthLayerBuilder {
    builder
        .fetch_timeout(Duration::from_secs(2))
        .retry_budget(Duration::from_millis(400))
        .initial_backoff(Duration::from_millis(5))
        .max_backoff(Duration::from_millis(20))
}

#[tokio::test]
async fn retryable_failures_are_retried_within_the_budget_and_others_are_not() {
    let mock = MockServer::start().await.unwrap();
    let url = mock.token_url();

    mock.fail_token_requests(
        usize::MAX,
        TokenFailure::Body(StatusCode::BAD_GATEWAY, "text/html", "<html>down</html>"),
    );
    for (via, layer) in layers(creds(&url, SECRET), with_budget) {
        let err = token_failure(&layer, LIMIT).await;
        check(via, &err, ErrorKind::HttpStatus, true);
        assert!(
            layer.handle().fetches() >= 2,
            "{via}: retried, {} fetches",
            layer.handle().fetches()
        );
    }

    let body = r#"{"error":"invalid_client"}"#;
    mock.fail_token_requests(
        usize::MAX,
        TokenFailure::Body(StatusCode::UNAUTHORIZED, "application/json", body),
    );
    for (via, layer) in layers(creds(&url, SECRET), with_budget) {
        let err = token_failure(&layer, LIMIT).await;
        check(via, &err, ErrorKind::InvalidClient, false);
        assert_eq!(layer.handle().fetches(), 1, "{via}: not retried");
    }

    mock.fail_token_requests(
        usize::MAX,
        TokenFailure::Body(StatusCode::OK, "text/plain", "ok"),
    );
    for (via, layer) in layers(creds(&url, SECRET), with_budget) {
        let err = token_failure(&layer, LIMIT).await;
        check(via, &err, ErrorKind::MalformedResponse, false);
        assert_eq!(layer.handle().fetches(), 1, "{via}: not retried");
    }
}

#[tokio::test]
async fn a_retryable_failure_followed_by_success_gives_a_token() {
    let mock = MockServer::start().await.unwrap();
    for (via, layer) in layers(mock_creds(&mock), with_budget) {
        mock.fail_token_requests(1, TokenFailure::CloseConnection);
        mock.push_token_failures(1, TokenFailure::Status(StatusCode::SERVICE_UNAVAILABLE));
        let echo = Echo::default();
        let res = bounded(LIMIT, layer.layer(echo.clone()).oneshot(get("/")))
            .await
            .unwrap_or_else(|e| panic!("{via}: {e}"));
        assert!(
            common::seen(&res).is_some_and(|a| a.starts_with("Bearer sdk_")),
            "{via}"
        );
        assert_eq!(
            layer.handle().fetches(),
            3,
            "{via}: two failures, then the token"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The inner service's own errors
// ---------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct InnerError(&'static str);

impl fmt::Display for InnerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inner failed: {}", self.0)
    }
}

impl std::error::Error for InnerError {}

/// An inner service that fails in `poll_ready` or in `call`, as told; counts calls.
#[derive(Clone)]
struct Failing {
    in_ready: bool,
    calls: Arc<AtomicUsize>,
}

impl Service<Request<Full<Bytes>>> for Failing {
    type Response = Response<Full<Bytes>>;
    type Error = InnerError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, InnerError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), InnerError>> {
        if self.in_ready {
            Poll::Ready(Err(InnerError("not ready")))
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let had_token = req.headers().contains_key(http::header::AUTHORIZATION);
        Box::pin(async move {
            assert!(had_token, "the failing call still carried a token");
            Err(InnerError("connection reset by api"))
        })
    }
}

#[tokio::test]
async fn errors_of_the_inner_service_pass_through_unchanged() {
    let mock = MockServer::start().await.unwrap();
    for (via, layer) in layers(mock_creds(&mock), quick) {
        for in_ready in [false, true] {
            let inner = Failing {
                in_ready,
                calls: Arc::default(),
            };
            let svc = layer.layer(inner.clone());
            let err: BoxError = bounded(LIMIT, svc.oneshot(get("/")))
                .await
                .expect_err("the inner service fails");
            assert!(
                err.downcast_ref::<Error>().is_none(),
                "{via}: not wrapped: {err:?}"
            );
            let inner_err = err
                .downcast_ref::<InnerError>()
                .unwrap_or_else(|| panic!("{via}: not the inner error: {err:?}"));
            let expected = if in_ready {
                "not ready"
            } else {
                "connection reset by api"
            };
            assert_eq!(inner_err, &InnerError(expected), "{via}");
            assert_eq!(
                inner.calls.load(Ordering::SeqCst),
                usize::from(!in_ready),
                "{via}"
            );
        }
    }
}

#[tokio::test]
async fn an_infallible_inner_service_never_yields_a_token_error_once_a_token_exists() {
    let mock = MockServer::start().await.unwrap();
    let creds = ClientCredentials::new(&mock.token_url(), mock.client_id(), mock.client_secret())
        .scope("read");
    for (via, layer) in layers(creds, quick) {
        layer
            .handle()
            .warm_up()
            .await
            .unwrap_or_else(|e| panic!("{via}: {e}"));
        // The endpoint breaks afterwards; the cached token keeps requests going.
        mock.fail_token_requests(
            usize::MAX,
            TokenFailure::Status(StatusCode::INTERNAL_SERVER_ERROR),
        );
        let svc = layer.layer(tower::service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }));
        for _ in 0..3 {
            let res = svc.clone().oneshot(get("/")).await;
            assert_eq!(res.map(|r| r.status()).ok(), Some(StatusCode::OK), "{via}");
        }
        assert_eq!(layer.handle().fetches(), 1, "{via}");
        mock.clear_token_failures();
    }
}

// ---------------------------------------------------------------------------------------
// A fetch that ends without an outcome
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_fetch_that_panics_is_a_cancelled_error_and_a_later_request_fetches_again() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let fetcher = tower::service_fn(move |_req: TokenRequest| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            assert!(n > 0, "the first fetch panics (a deliberate test panic)");
            Ok::<_, Infallible>(Token::new(
                "tok-after-panic",
                Some(Duration::from_secs(600)),
            ))
        }
    });
    // No retry budget: the panic reaches the request as the failed fetch it is.
    let layer = quick(OAuthLayer::with_fetcher(fetcher)).build();
    let err = token_failure(&layer, LIMIT).await;
    check("panicking fetcher", &err, ErrorKind::Cancelled, true);
    assert!(err.to_string().contains("panicked"), "{err}");

    // The slot is not left waiting on the dead fetch: after the cooldown (the backoff
    // delay, at most 5 ms here) the next request fetches anew.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let res = bounded(
        Duration::from_secs(5),
        layer.layer(Echo::default()).oneshot(get("/")),
    )
    .await
    .unwrap_or_else(|e| panic!("the next request gets a token: {e:?}"));
    assert_eq!(common::seen(&res), Some("Bearer tok-after-panic"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
