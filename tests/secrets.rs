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
use common::{body_of, bounded, get, quick, token_failure, Logs};
use http::{header::AUTHORIZATION, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use proptest::prelude::*;
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

/// How long one request may take to fail.
const LIMIT: Duration = Duration::from_secs(10);

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
            "OAuthLayerBuilder",
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
    let res = bounded(Duration::from_secs(10), fut).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    show("Response<ResponseBody>", format!("{res:?}"));
    show("ResponseBody", format!("{:?}", res.body()));
    let body = body_of(res).await;
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
        token_failure(
            &quick(OAuthLayer::builder(ClientCredentials::new(
                "http://example.invalid/t",
                "id",
                SECRET,
            )))
            .build(),
            LIMIT,
        )
        .await,
    );
    for method in [AuthMethod::ClientSecretPost, AuthMethod::ClientSecretBasic] {
        let wrong = ClientCredentials::new(&mock.token_url(), mock.client_id(), WRONG_SECRET)
            .auth_method(method);
        errors.push(token_failure(&quick(OAuthLayer::builder(wrong)).build(), LIMIT).await);
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
        errors.push(token_failure(&quick(OAuthLayer::builder(creds.clone())).build(), LIMIT).await);
    }
    mock.clear_token_failures();
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = ClientCredentials::new(&format!("http://127.0.0.1:{port}/t"), "id", SECRET);
    errors.push(token_failure(&quick(OAuthLayer::builder(refused)).build(), LIMIT).await);
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
    errors.push(token_failure(&strict, LIMIT).await);
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
    let err = token_failure(&quick(OAuthLayer::builder(creds)).build(), LIMIT).await;
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
            let res = bounded(Duration::from_secs(10), svc.clone().oneshot(get(&url)))
                .await
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
        bounded(Duration::from_secs(10), layer.handle().force_refresh())
            .await
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

// ---------------------------------------------------------------------------------------
// Echoes of the secret, partial and encoded
// ---------------------------------------------------------------------------------------

/// How many characters of a secret in a row count as showing it.
const RUN: usize = 8;

/// Every `RUN`-character window of `text` (by characters), or `text` itself if shorter.
fn runs(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() < RUN {
        return vec![text.to_owned()];
    }
    chars.windows(RUN).map(|w| w.iter().collect()).collect()
}

/// The first run of `RUN` characters of any of `sources` found in `text`.
fn shown_run(text: &str, sources: &[String]) -> Option<String> {
    sources
        .iter()
        .flat_map(|s| runs(s))
        .find(|run| text.contains(run.as_str()))
}

/// An error, its `Debug` and every error below it, as they would be shown.
fn everything_shown(err: &Error) -> String {
    let mut text = format!("{err} / {err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(&format!(" / {s} / {s:?}"));
        source = s.source();
    }
    text
}

/// A token endpoint client that answers `status` and the JSON body `answer` makes of
/// the form and `Authorization` value it was sent.
fn answering<F>(
    status: u16,
    answer: F,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static
where
    F: Fn(&str, Option<&str>) -> serde_json::Value + Clone + Send + Sync + 'static,
{
    tower::service_fn(move |req: Request<Full<Bytes>>| {
        let answer = answer.clone();
        async move {
            let auth = req
                .headers()
                .get(AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned());
            let form = req.into_body().collect().await.unwrap().to_bytes();
            let body = answer(std::str::from_utf8(&form).unwrap(), auth.as_deref());
            let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok(res)
        }
    })
}

/// A 24-character secret, as in the report.
const ECHOED: &str = "Ech0ed-S3cret/with+more!";

/// What a token endpoint says, from the form and the `Authorization` value it got.
type Echo = fn(&str, Option<&str>) -> String;

/// The echoes of the report and its kin: a part of the secret as it is, percent-encoded
/// in lowercase, as HTML references; the form body in base64 and base64url; the end of
/// the Basic value.
fn echoes() -> [(&'static str, AuthMethod, Echo); 7] {
    [
        (
            "all but its last 4 characters",
            AuthMethod::ClientSecretPost,
            |_, _| format!("bad secret {}", &ECHOED[..20]),
        ),
        ("its middle", AuthMethod::ClientSecretPost, |_, _| {
            format!("bad secret ...{}...", &ECHOED[5..15])
        }),
        (
            "a part, percent-encoded in lowercase",
            AuthMethod::ClientSecretPost,
            |_, _| {
                let part: String = ECHOED[2..14].bytes().map(|b| format!("%{b:02x}")).collect();
                format!("bad secret {part}")
            },
        ),
        (
            "a part, as HTML character references",
            AuthMethod::ClientSecretPost,
            |_, _| {
                let part: String = ECHOED[4..16]
                    .chars()
                    .map(|c| format!("&#{};", c as u32))
                    .collect();
                format!("<p>bad secret {part}</p>")
            },
        ),
        (
            "the form body in base64",
            AuthMethod::ClientSecretPost,
            |form, _| {
                format!(
                    "cannot parse {}",
                    base64::engine::general_purpose::STANDARD.encode(form)
                )
            },
        ),
        (
            "the form body in base64url",
            AuthMethod::ClientSecretPost,
            |form, _| {
                let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                format!("cannot parse {}", b64url.encode(form))
            },
        ),
        (
            "the end of the Basic value",
            AuthMethod::ClientSecretBasic,
            |_, auth| {
                let value = auth.expect("a Basic value");
                format!("bad credentials ...{}", &value[value.len() - 24..])
            },
        ),
    ]
}

#[tokio::test]
async fn a_partial_or_encoded_echo_of_the_secret_shows_neither_in_the_error_nor_the_log() {
    let logs = logs();
    for (what, method, echo) in echoes() {
        let creds =
            ClientCredentials::new("https://auth.example/token", "id", ECHOED).auth_method(method);
        let client = answering(
            500,
            move |form, auth| serde_json::json!({"error": "server_error", "error_description": echo(form, auth)}),
        );
        let layer = quick(OAuthLayer::with_fetcher(HttpFetcher::new(client, creds))).build();
        let err = token_failure(&layer, LIMIT).await;
        // The status and the code are kept.
        assert_eq!(err.kind(), ErrorKind::OAuth, "{what}: {err:?}");
        assert_eq!(err.oauth_error(), Some("server_error"), "{what}: {err:?}");
        assert_eq!(
            err.status(),
            Some(StatusCode::INTERNAL_SERVER_ERROR),
            "{what}"
        );
        let shown = everything_shown(&err);
        assert_eq!(shown_run(&shown, &[ECHOED.into()]), None, "{what}: {shown}");
        assert!(shown.contains("redacted"), "{what}: {shown}");
    }
    let text = logs.text();
    assert!(text.contains("token fetch failed"), "{text}");
    assert_eq!(shown_run(&text, &[ECHOED.into()]), None, "the log:\n{text}");
    // Nor any part of the encoded echoes: the form body's base64 past its first 60
    // characters (which encode `grant_type=client_credentials&client_id=id&`).
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", "id")
        .append_pair("client_secret", ECHOED)
        .finish();
    let encoded = [
        base64::engine::general_purpose::STANDARD.encode(&form)[60..].to_owned(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&form)[60..].to_owned(),
    ];
    assert_eq!(shown_run(&text, &encoded), None, "the log:\n{text}");
}

/// How an echo is encoded, one layer.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    Raw,
    Form,
    /// Every byte but `A-Z a-z 0-9 - . _ ~`, upper- or lowercase hex.
    Percent {
        lower: bool,
    },
    /// Every byte.
    PercentAll {
        lower: bool,
    },
    /// Every character as `\uXXXX` text (a JSON string inside the server's text).
    JsonEscapes,
    /// Every character as a decimal, or a hexadecimal, reference; or only `& < > " '`.
    Html {
        hex: bool,
        all: bool,
    },
    Base64 {
        url: bool,
        pad: bool,
    },
}

impl Encoding {
    fn apply(self, text: &str) -> String {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        let hex = |b: u8, lower: bool| {
            if lower {
                format!("%{b:02x}")
            } else {
                format!("%{b:02X}")
            }
        };
        match self {
            Self::Raw => text.to_owned(),
            Self::Form => form_urlencoded::byte_serialize(text.as_bytes()).collect(),
            Self::Percent { lower } => text
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => hex(b, lower),
                })
                .collect(),
            Self::PercentAll { lower } => text.bytes().map(|b| hex(b, lower)).collect(),
            Self::JsonEscapes => text.encode_utf16().map(|u| format!("\\u{u:04x}")).collect(),
            Self::Html { hex, all } => text
                .chars()
                .map(|c| match c {
                    '&' if !all => "&amp;".to_owned(),
                    '<' if !all => "&lt;".to_owned(),
                    '>' if !all => "&gt;".to_owned(),
                    '"' if !all => "&quot;".to_owned(),
                    '\'' if !all => "&#39;".to_owned(),
                    c if !all => c.to_string(),
                    c if hex => format!("&#x{:x};", c as u32),
                    c => format!("&#{};", c as u32),
                })
                .collect(),
            Self::Base64 { url, pad } => match (url, pad) {
                (false, true) => STANDARD.encode(text),
                (false, false) => STANDARD_NO_PAD.encode(text),
                (true, true) => URL_SAFE.encode(text),
                (true, false) => URL_SAFE_NO_PAD.encode(text),
            },
        }
    }
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![
        Just(Encoding::Raw),
        Just(Encoding::Form),
        any::<bool>().prop_map(|lower| Encoding::Percent { lower }),
        any::<bool>().prop_map(|lower| Encoding::PercentAll { lower }),
        Just(Encoding::JsonEscapes),
        (any::<bool>(), any::<bool>()).prop_map(|(hex, all)| Encoding::Html { hex, all }),
        (any::<bool>(), any::<bool>()).prop_map(|(url, pad)| Encoding::Base64 { url, pad }),
    ]
}

/// What of the request a server echoes: a run of the secret (from `start`, `len`
/// characters), as it is, as the form body carries it or as the Basic value does.
#[derive(Debug, Clone, Copy)]
enum Carrier {
    Secret,
    FormBody,
    BasicValue,
}

/// Where in an error document the echo goes.
#[derive(Debug, Clone, Copy)]
enum Place {
    Description,
    ProblemDetail,
    ProblemTitle,
    /// A code of the server's own: `x_<echo>`.
    Code,
    /// A problem type URI's last segment.
    ProblemType,
}

/// The run of characters of `text` from the `start`-th, `len` long (by characters).
fn chars_run(text: &str, start: usize, len: usize) -> String {
    text.chars().skip(start).take(len).collect()
}

/// `text` with `prefix` and `suffix` of the same encoding taken off its two ends: the
/// part that encodes what lies between them (a little more for base64, whose edges mix
/// bits of neighbours).
fn between<'a>(text: &'a str, prefix: &str, suffix: &str) -> &'a str {
    let common = |a: &mut dyn Iterator<Item = (usize, char)>, b: &mut dyn Iterator<Item = char>| {
        a.zip(b)
            .take_while(|((_, x), y)| x == y)
            .last()
            .map(|((i, c), _)| i + c.len_utf8())
    };
    let start = common(&mut text.char_indices(), &mut prefix.chars()).unwrap_or(0);
    let end = text.len()
        - common(
            &mut text
                .char_indices()
                .rev()
                .map(|(i, c)| (text.len() - i - c.len_utf8(), c)),
            &mut suffix.chars().rev(),
        )
        .unwrap_or(0);
    if start < end {
        &text[start..end]
    } else {
        ""
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, max_global_rejects: 4096, failure_persistence: None, ..ProptestConfig::default() })]

    /// No run of 8 characters of a random secret, echoed by the token endpoint in a
    /// random part of its error document, carried as it is, in the form body or in the
    /// Basic value, under one or two random encodings, shows in the error: neither the
    /// run itself nor any 8 characters of its encoded form.
    #[test]
    fn no_echo_of_the_secret_in_any_encoding_shows_in_the_error(
        secret in "[A-Za-z0-9 !\"#$%&'()*+,./:;<=>?@\\[\\\\\\]^_`{|}~é漢😀-]{12,28}",
        start in 0usize..20,
        len in 8usize..14,
        lead in "[a-z=&:]{0,3}",
        carrier in prop_oneof![Just(Carrier::Secret), Just(Carrier::FormBody), Just(Carrier::BasicValue)],
        first in encoding(),
        second in proptest::option::of(encoding()),
        place in prop_oneof![
            Just(Place::Description), Just(Place::ProblemDetail), Just(Place::ProblemTitle),
            Just(Place::Code), Just(Place::ProblemType),
        ],
    ) {
        let start = start % (secret.chars().count() - 7);
        let run = chars_run(&secret, start, len);
        // Up to 3 characters of the secret on either side of the run, echoed with it.
        let before = chars_run(&secret, start.saturating_sub(3), start.min(3));
        let after = chars_run(&secret, start + run.chars().count(), 3);
        // The echoed text, with what precedes the run and follows it in that text.
        let (prefix, suffix, method) = match carrier {
            Carrier::Secret => (format!("{lead}{before}"), after, AuthMethod::ClientSecretPost),
            Carrier::FormBody => {
                let form = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                (
                    format!("secret={}", form(&before)),
                    format!("{}&scope=read", form(&after)),
                    AuthMethod::ClientSecretPost,
                )
            }
            Carrier::BasicValue => {
                let pct = |s: &str| Encoding::Percent { lower: false }.apply(s);
                (format!("id:{}", pct(&before)), pct(&after), AuthMethod::ClientSecretBasic)
            }
        };
        let carried = match carrier {
            Carrier::Secret => run.clone(),
            Carrier::FormBody => form_urlencoded::byte_serialize(run.as_bytes()).collect(),
            Carrier::BasicValue => Encoding::Percent { lower: false }.apply(&run),
        };
        let encode = |text: &str| {
            let once = first.apply(text);
            second.map_or(once.clone(), |e| e.apply(&once))
        };
        let whole = encode(&format!("{prefix}{carried}{suffix}"));
        // What encodes the run, to be found nowhere in what the error shows.
        let core = between(&whole, &encode(&prefix), &encode(&suffix)).to_owned();
        // Short enough to be shown whole: a cut echo may show a part too short to count.
        prop_assume!(whole.chars().count() <= 190);
        prop_assume!(!matches!(place, Place::ProblemType) || !whole.contains('/'));

        let body = move |_: &str, _: Option<&str>| -> serde_json::Value {
            match place {
                Place::Description => serde_json::json!({"error": "invalid_request", "error_description": format!("bad {whole}")}),
                Place::ProblemDetail => serde_json::json!({"type": "invalid_request", "detail": format!("bad {whole}")}),
                Place::ProblemTitle => serde_json::json!({"type": "invalid_request", "title": format!("bad {whole}")}),
                Place::Code => serde_json::json!({"error": format!("x_{whole}")}),
                Place::ProblemType => serde_json::json!({"type": format!("https://e/{whole}")}),
            }
        };
        let creds = ClientCredentials::new("https://auth.example/token", "id", secret.as_str()).auth_method(method);
        let fetcher = HttpFetcher::new(answering(400, body), creds);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let err = runtime
            .block_on(fetcher.oneshot(TokenRequest::new(None, FetchReason::First)))
            .expect_err("an error document");
        prop_assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
        let shown = everything_shown(&err);
        let found = shown_run(&shown, &[secret.clone(), core.clone()]);
        prop_assert!(found.is_none(), "{:?} shows {:?} of {:?}: {}", encode(&carried), found, core, shown);
    }
}
