//! Secrets stay secret: no public type or error of the crate shows the client secret or a
//! token in `Debug` or `Display`, no log line of a whole fetch, request, replay and
//! renewal cycle does, and the `Authorization` header the inner service gets is marked
//! sensitive.

mod common;

use std::{
    fmt,
    sync::{Arc, Mutex, OnceLock},
    task::{Context, Poll},
    time::Duration,
};

use base64::Engine as _;
use bytes::Bytes;
use common::Logs;
use http::{header::AUTHORIZATION, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tower::{Layer, Service, ServiceExt};
use tower_oauth::{
    fetch::HttpFetcher,
    mock::{MockConfig, MockServer, TokenFailure},
    AccessToken, AuthMethod, ClientCredentials, ClientSecret, Error, ErrorKind, FetchReason,
    OAuthLayer, Scope, ScopePolicy, Token, TokenRequest,
};
use tracing_subscriber::fmt::format::FmtSpan;

const SECRET: &str = "S3CR3T-secrets-5e1d";
const WRONG_SECRET: &str = "WR0NG-secrets-a4c2";
const TOKEN: &str = "tok-secrets-91b7e";
const ID_TOKEN: &str = "idtok-secrets-c0ff";

/// Everything that must never show: the secrets, in the forms they travel in, and tokens.
struct Forbidden(Vec<String>);

impl Forbidden {
    fn new(client_id: &str) -> Self {
        let mut words = vec![
            SECRET.to_owned(),
            WRONG_SECRET.to_owned(),
            TOKEN.to_owned(),
            ID_TOKEN.to_owned(),
        ];
        for secret in [SECRET, WRONG_SECRET] {
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
            words.push(basic);
        }
        Self(words)
    }

    fn add(&mut self, word: &str) {
        assert!(word.len() >= 8, "too short to search for: {word:?}");
        self.0.push(word.to_owned());
    }

    #[track_caller]
    fn check(&self, what: &str, text: &str) {
        for word in &self.0 {
            assert!(
                !text.contains(word.as_str()),
                "{what} shows {word:?}:\n{text}"
            );
        }
    }
}

fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::new(Bytes::new())).unwrap()
}

/// What an inner service saw of one request.
#[derive(Clone)]
struct Seen {
    authorization: Option<String>,
    sensitive: bool,
    request_debug: String,
}

/// The inner service: a real HTTP client to the mock API that records the
/// `Authorization` it is handed.
#[derive(Clone)]
struct Recorder {
    client: Client<HttpConnector, Full<Bytes>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Recorder")
    }
}

impl Recorder {
    fn new() -> Self {
        Self {
            client: http_client(),
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Service<Request<Full<Bytes>>> for Recorder {
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Request<Full<Bytes>>>::poll_ready(&mut self.client, cx)
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let value = req.headers().get(AUTHORIZATION);
        self.seen.lock().unwrap().push(Seen {
            authorization: value.map(|v| v.to_str().unwrap().to_owned()),
            sensitive: value.is_some_and(|v| v.is_sensitive()),
            request_debug: format!("{req:?}"),
        });
        self.client.call(req)
    }
}

/// The bearer tokens the inner service was given, without the scheme.
fn tokens(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter_map(|s| {
            s.authorization
                .as_deref()?
                .strip_prefix("Bearer ")
                .map(str::to_owned)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Debug and Display of every public type
// ---------------------------------------------------------------------------------------

/// Gets a request's token error through `layer`.
async fn token_error(layer: &OAuthLayer) -> Error {
    let svc = layer.layer(tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
    }));
    let err = tokio::time::timeout(Duration::from_secs(10), svc.oneshot(get("/")))
        .await
        .expect("bounded")
        .expect_err("a token error");
    err.downcast_ref::<Error>()
        .expect("a tower_oauth::Error")
        .clone()
}

/// A layer that gives up at once: short fetch timeout, no retry budget.
fn quick(builder: tower_oauth::Builder) -> OAuthLayer {
    builder
        .fetch_timeout(Duration::from_millis(200))
        .retry_budget(Duration::ZERO)
        .max_backoff(Duration::from_millis(5))
        .build()
}

#[tokio::test]
async fn no_public_type_shows_the_secret_or_a_token() {
    logs();
    let mock = MockServer::start_with(MockConfig::new().client_secret(SECRET))
        .await
        .unwrap();
    let mut forbidden = Forbidden::new(mock.client_id());
    let mut shown: Vec<(String, String)> = Vec::new();
    let mut show = |what: &str, text: String| shown.push((what.to_owned(), text));

    // Credentials and tokens.
    for method in [AuthMethod::ClientSecretPost, AuthMethod::ClientSecretBasic] {
        let creds = ClientCredentials::new(&mock.token_url(), mock.client_id(), SECRET)
            .scope("read")
            .auth_method(method);
        show("ClientCredentials", format!("{creds:?}"));
        show(
            "ClientCredentials::client_secret",
            format!("{:?} {}", creds.client_secret(), creds.client_secret()),
        );
        show(
            "HttpFetcher",
            format!("{:?}", HttpFetcher::new(http_client(), creds.clone())),
        );
        show(
            "Builder",
            format!("{:?}", OAuthLayer::builder(creds.clone())),
        );
        show("OAuthLayer", format!("{:?}", OAuthLayer::new(creds)));
    }
    let secret = ClientSecret::new(SECRET);
    show("ClientSecret", format!("{secret:?} {secret}"));
    let access = AccessToken::new(TOKEN);
    show("AccessToken", format!("{access:?} {access}"));
    let mut token = Token::new(TOKEN, Some(Duration::from_secs(60))).with_scope("read");
    token.extra.insert("id_token".into(), ID_TOKEN.into());
    show("Token", format!("{token:?}"));
    show(
        "TokenRequest",
        format!(
            "{:?}",
            TokenRequest::new(Some(Scope::new("read")), FetchReason::First)
        ),
    );
    for policy in [
        ScopePolicy::fixed(Some("read".into())),
        ScopePolicy::by_method("read", "write"),
        ScopePolicy::from_fn(|_| Some("read".into())),
    ] {
        show("ScopePolicy", format!("{policy:?}"));
    }
    show(
        "MockConfig",
        format!("{:?}", MockConfig::new().client_secret(SECRET)),
    );

    // A working layer, after a request: handle, state, service, future, body.
    let creds = ClientCredentials::new(&mock.token_url(), mock.client_id(), SECRET).scope("read");
    let layer = OAuthLayer::builder(creds).build();
    let recorder = Recorder::new();
    let mut svc = layer.layer(recorder.clone());
    show("OAuth<S>", format!("{svc:?}"));
    let url = format!("{}/api/v1/workflows", mock.base_url());
    let fut = svc.ready().await.unwrap().call(get(&url));
    show("ResponseFuture", format!("{fut:?}"));
    let res = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("bounded")
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    show("Response<ResponseBody>", format!("{res:?}"));
    show("ResponseBody", format!("{:?}", res.body()));
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(!body.is_empty());
    let handle = layer.handle();
    show("TokenHandle", format!("{handle:?}"));
    show("TokenState", format!("{:?}", handle.state()));
    show("OAuthLayer after use", format!("{layer:?}"));
    show("MockServer", format!("{mock:?}"));
    show("MockStats", format!("{:?}", mock.stats()));
    show("IssuedToken", format!("{:?}", mock.issued_tokens()));
    let issued = tokens(&recorder.seen());
    assert_eq!(issued.len(), 1);
    forbidden.add(&issued[0]);
    // The request as the inner service got it: the header is marked sensitive, so even
    // its Debug hides the token.
    show(
        "Request seen by the inner service",
        recorder.seen()[0].request_debug.clone(),
    );

    // Errors of every kind, most of them built from what a server said.
    let mut errors: Vec<Error> = Vec::new();
    errors.push(ClientCredentials::try_new("not a url", "id", SECRET).unwrap_err());
    errors.push(
        token_error(&quick(OAuthLayer::builder(ClientCredentials::new(
            "http://example.invalid/t",
            "id",
            SECRET,
        ))))
        .await,
    );
    for method in [AuthMethod::ClientSecretPost, AuthMethod::ClientSecretBasic] {
        let wrong = ClientCredentials::new(&mock.token_url(), mock.client_id(), WRONG_SECRET)
            .auth_method(method);
        errors.push(token_error(&quick(OAuthLayer::builder(wrong))).await);
    }
    let failures = [
        TokenFailure::Body(
            StatusCode::OK,
            "application/json",
            r#"{"access_token":"tok-secrets-91b7e\r\nX: 1","token_type":"Bearer"}"#,
        ),
        TokenFailure::Body(
            StatusCode::OK,
            "application/json",
            r#"{"access_token":"tok-secrets-91b7e","token_type":"mac"}"#,
        ),
        TokenFailure::Body(
            StatusCode::OK,
            "application/json",
            r#"{"access_token":"tok-secrets-91b7e","expires_in":-1}"#,
        ),
        TokenFailure::Body(
            StatusCode::BAD_GATEWAY,
            "text/html",
            "<html>tok-secrets-91b7e</html>",
        ),
        TokenFailure::Body(
            StatusCode::BAD_REQUEST,
            "application/json",
            r#"{"error":"invalid_scope"}"#,
        ),
        TokenFailure::Status(StatusCode::SERVICE_UNAVAILABLE),
        TokenFailure::CloseConnection,
        TokenFailure::Hang,
    ];
    let creds = ClientCredentials::new(&mock.token_url(), mock.client_id(), SECRET);
    for failure in failures {
        mock.fail_token_requests(usize::MAX, failure);
        errors.push(token_error(&quick(OAuthLayer::builder(creds.clone()))).await);
    }
    mock.clear_token_failures();
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = ClientCredentials::new(&format!("http://127.0.0.1:{port}/t"), "id", SECRET);
    errors.push(token_error(&quick(OAuthLayer::builder(refused))).await);
    // Granted less than asked, with strict scope checking.
    let narrow = tower::service_fn(|_req: TokenRequest| async {
        Ok::<_, std::convert::Infallible>(
            Token::new(TOKEN, Some(Duration::from_secs(60))).with_scope("read"),
        )
    });
    let strict = OAuthLayer::with_fetcher(narrow)
        .scope_policy(ScopePolicy::fixed(Some("read write".into())))
        .strict_scope(true)
        .build();
    errors.push(token_error(&strict).await);
    show(
        "TokenHandle with a narrow token",
        format!("{:?}", strict.handle()),
    );

    let kinds: Vec<ErrorKind> = errors.iter().map(Error::kind).collect();
    for kind in [
        ErrorKind::Config,
        ErrorKind::InvalidClient,
        ErrorKind::InvalidScope,
        ErrorKind::MalformedResponse,
        ErrorKind::HttpStatus,
        ErrorKind::OAuth,
        ErrorKind::Transport,
        ErrorKind::Timeout,
        ErrorKind::InsufficientScope,
    ] {
        assert!(kinds.contains(&kind), "no {kind:?} error among {kinds:?}");
    }
    for err in &errors {
        let mut chain = format!("{err} / {err:?}");
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            chain.push_str(&format!(" / {s} / {s:?}"));
            source = s.source();
        }
        show("Error", chain);
    }

    for (what, text) in &shown {
        assert!(!text.is_empty(), "{what} shows nothing");
        forbidden.check(what, text);
    }
    // The checks looked at real output.
    let all: String = shown.iter().map(|(_, t)| t.as_str()).collect();
    assert!(
        all.contains("redacted") && all.contains("ClientCredentials") && all.contains("Sensitive")
    );
}

#[tokio::test]
async fn a_server_that_echoes_the_secret_is_quoted_sanitised_and_nothing_more() {
    logs();
    // The crate keeps the server's own description (cut and stripped of control
    // characters): whatever the server chose to say is the server's. The crate adds no
    // secret of its own.
    let mock = MockServer::start_with(MockConfig::new().client_secret(SECRET))
        .await
        .unwrap();
    mock.fail_token_requests(
        usize::MAX,
        TokenFailure::Body(
            StatusCode::UNAUTHORIZED,
            "application/json",
            "{\"error\":\"invalid_client\",\"error_description\":\"secret S3CR3T\\r\\nis wrong\"}",
        ),
    );
    let creds = ClientCredentials::new(&mock.token_url(), mock.client_id(), SECRET);
    let err = token_error(&quick(OAuthLayer::builder(creds))).await;
    assert_eq!(err.kind(), ErrorKind::InvalidClient);
    let shown = err.to_string();
    assert!(shown.contains("secret S3CR3Tis wrong"), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
}

// ---------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------

/// The log of this test binary, TRACE and up, with span events. Installed as the global
/// subscriber (a per-thread one misses events whose callsite interest another test's
/// thread cached first); every test starts by calling it.
fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_span_events(FmtSpan::FULL)
            .with_writer(logs.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        logs
    })
}

#[tokio::test]
async fn a_full_fetch_request_replay_and_renewal_cycle_logs_no_secret_and_no_token() {
    let logs = logs();
    let mock = MockServer::start_with(MockConfig::new().client_secret(SECRET))
        .await
        .unwrap();
    let url = format!("{}/api/v1/workflows", mock.base_url());
    let mut forbidden = Forbidden::new(mock.client_id());
    let mut seen_all = Vec::new();

    for method in [AuthMethod::ClientSecretPost, AuthMethod::ClientSecretBasic] {
        let creds = ClientCredentials::new(&mock.token_url(), mock.client_id(), SECRET)
            .scope("read")
            .auth_method(method);
        let layer = OAuthLayer::builder(creds)
            .initial_backoff(Duration::from_millis(5))
            .max_backoff(Duration::from_millis(20))
            .build();
        let recorder = Recorder::new();
        let svc = layer.layer(recorder.clone());
        let send = || async {
            let res = tokio::time::timeout(Duration::from_secs(10), svc.clone().oneshot(get(&url)))
                .await
                .expect("bounded")
                .unwrap();
            let status = res.status();
            res.into_body().collect().await.unwrap();
            status
        };

        // First fetch (slow path), then the hot path.
        assert_eq!(send().await, StatusCode::OK);
        assert_eq!(send().await, StatusCode::OK);
        // The token is revoked: 401 token_expired, renewal, replay.
        mock.revoke_all();
        assert_eq!(send().await, StatusCode::OK);
        // A renewal that fails once, then succeeds, while the token stays in use.
        mock.fail_token_requests(1, TokenFailure::Status(StatusCode::INTERNAL_SERVER_ERROR));
        tokio::time::timeout(Duration::from_secs(10), layer.handle().force_refresh())
            .await
            .expect("bounded")
            .unwrap();
        assert_eq!(send().await, StatusCode::OK);

        let seen = recorder.seen();
        assert_eq!(seen.len(), 5, "{method:?}: 4 requests, one replayed");
        seen_all.extend(seen);
    }
    // A rejected secret, logged as a failed fetch.
    let wrong = ClientCredentials::new(&mock.token_url(), mock.client_id(), WRONG_SECRET)
        .auth_method(AuthMethod::ClientSecretBasic);
    let err = OAuthLayer::builder(wrong)
        .build()
        .handle()
        .warm_up()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidClient);

    // Every header the inner service got was marked sensitive.
    for s in &seen_all {
        assert!(
            s.authorization.is_some() && s.sensitive,
            "{:?}",
            s.authorization
        );
    }
    let issued = tokens(&seen_all);
    let mut distinct = issued.clone();
    distinct.sort();
    distinct.dedup();
    // Per method: the first token, the one after the replay, the forced one.
    assert_eq!(distinct.len(), 6, "{} tokens", distinct.len());
    assert_eq!(mock.stats().tokens_issued, 6);
    assert_eq!(mock.stats().api_token_expired, 2);
    for token in &distinct {
        forbidden.add(token);
    }

    let text = logs.text();
    // The capture worked: the cycle is in the log.
    for line in [
        "token fetched",
        "token fetch failed",
        "replaying the request",
        "oauth.fetch",
        "mock server answered",
    ] {
        assert!(text.contains(line), "no {line:?} in the log:\n{text}");
    }
    forbidden.check("the log", &text);
}
