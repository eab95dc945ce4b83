//! Test doubles shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod oidc;
pub mod redis;

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{header::AUTHORIZATION, HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt};
use tower_oauth::{
    mock::MockServer, BoxError, ClientCredentials, Error, ErrorKind, OAuthLayer, OAuthLayerBuilder,
    Token, TokenRequest,
};

/// What a scripted fetch does.
#[derive(Clone)]
pub enum Step {
    /// Answer a token after `delay` (tokio time).
    Token {
        lifetime: Option<Duration>,
        delay: Duration,
    },
    /// Fail with this error after `delay`.
    Fail(Error, Duration),
    /// Fail with a foreign error.
    Io,
    /// Never answer.
    Hang,
}

impl Step {
    /// A token valid for `lifetime`, answered at once.
    pub fn token(lifetime: Duration) -> Self {
        Step::Token {
            lifetime: Some(lifetime),
            delay: Duration::ZERO,
        }
    }
}

/// A token fetcher that counts its calls and follows a script; when the script runs out
/// it repeats its last step. Tokens are `tok-<n>` (n = call number, from 1).
#[derive(Clone)]
pub struct Fetcher {
    pub calls: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<TokenRequest>>>,
    script: Arc<Mutex<VecDeque<Step>>>,
    last: Arc<Mutex<Step>>,
    scope_in_token: bool,
}

impl Fetcher {
    /// Tokens with `lifetime`, answered after `delay`.
    pub fn tokens(lifetime: Duration, delay: Duration) -> Self {
        Self::script(vec![Step::Token {
            lifetime: Some(lifetime),
            delay,
        }])
    }

    pub fn script(steps: Vec<Step>) -> Self {
        let last = steps.last().cloned().expect("a step");
        Self {
            calls: Arc::default(),
            requests: Arc::default(),
            script: Arc::new(Mutex::new(steps.into())),
            last: Arc::new(Mutex::new(last)),
            scope_in_token: true,
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Scopes requested so far, in order.
    pub fn scopes(&self) -> Vec<Option<String>> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.scope.as_ref().map(|s| s.as_str().to_owned()))
            .collect()
    }
}

impl Service<TokenRequest> for Fetcher {
    type Response = Token;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Token, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: TokenRequest) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.requests.lock().unwrap().push(req.clone());
        let step = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.last.lock().unwrap().clone());
        let scope = req.scope.clone();
        let with_scope = self.scope_in_token;
        Box::pin(async move {
            match step {
                Step::Token { lifetime, delay } => {
                    tokio::time::sleep(delay).await;
                    let mut t = Token::new(format!("tok-{n}"), lifetime);
                    if with_scope {
                        t.scope = scope;
                    }
                    Ok(t)
                }
                Step::Fail(e, delay) => {
                    tokio::time::sleep(delay).await;
                    Err(Box::new(e) as BoxError)
                }
                Step::Io => Err(Box::new(std::io::Error::other("connection refused")) as BoxError),
                Step::Hang => std::future::pending().await,
            }
        })
    }
}

/// An inner service that answers 200 and echoes the `Authorization` it got in the
/// `x-seen-authorization` header, the body it got as the response body. It counts calls.
#[derive(Clone, Default)]
pub struct Echo {
    pub calls: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl Echo {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl<B> Service<Request<B>> for Echo
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let auth = req
            .headers()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_owned());
        self.seen.lock().unwrap().push(auth.clone());
        Box::pin(async move {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => Bytes::from_static(b"<body error>"),
            };
            let mut res = Response::new(Full::new(body));
            *res.status_mut() = StatusCode::OK;
            if let Some(a) = auth {
                res.headers_mut()
                    .insert("x-seen-authorization", a.parse().unwrap());
            }
            Ok(res)
        })
    }
}

/// A GET request with an empty body.
pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::new(Bytes::new())).unwrap()
}

/// The `Authorization` the inner service saw, from an [`Echo`] response.
pub fn seen<B>(res: &Response<B>) -> Option<&str> {
    res.headers()
        .get("x-seen-authorization")
        .map(|v| v.to_str().unwrap())
}

/// Waits for `svc` to be ready and sends `req` (spelled out once, since a service generic
/// over the body type leaves `ServiceExt::ready` ambiguous).
pub async fn send<S, B>(svc: &mut S, req: Request<B>) -> Result<S::Response, S::Error>
where
    S: Service<Request<B>>,
{
    tower::ServiceExt::<Request<B>>::ready(svc)
        .await?
        .call(req)
        .await
}

/// The whole body of `res`.
pub async fn body_of<B>(res: Response<B>) -> Bytes
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    res.into_body().collect().await.unwrap().to_bytes()
}

/// Runs `fut`, failing the test instead of hanging it if it takes longer than `limit`.
pub async fn bounded<F: Future>(limit: Duration, fut: F) -> F::Output {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("the test scenario did not finish within {limit:?}"))
}

/// Credentials of the client `test-client` with `secret`, for the token endpoint at `url`.
pub fn creds(url: &str, secret: &str) -> ClientCredentials {
    ClientCredentials::new(url, "test-client", secret)
}

/// The mock's own credentials, asking for `read` (its application must name a scope).
pub fn mock_creds(mock: &MockServer) -> ClientCredentials {
    mock_creds_with_secret(mock, mock.client_secret())
}

/// The mock's client id with `secret`, right or wrong, asking for `read`.
pub fn mock_creds_with_secret(mock: &MockServer, secret: &str) -> ClientCredentials {
    ClientCredentials::new(&mock.token_url(), mock.client_id(), secret).scope("read")
}

/// Settings that give up at once: a 200 ms fetch timeout, no retry budget, 1–5 ms
/// backoffs, so every failure reaches the caller from a single fetch.
pub fn quick(builder: OAuthLayerBuilder) -> OAuthLayerBuilder {
    builder
        .fetch_timeout(Duration::from_millis(200))
        .retry_budget(Duration::ZERO)
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(5))
}

/// Sends one request through `layer` in front of an [`Echo`]; it must fail with a token
/// error within `limit`, without ever reaching the inner service.
pub async fn token_failure(layer: &OAuthLayer, limit: Duration) -> Error {
    let echo = Echo::default();
    let res = bounded(limit, layer.layer(echo.clone()).oneshot(get("/"))).await;
    let err = match res {
        Ok(res) => panic!(
            "expected a token failure, got {} with {:?}",
            res.status(),
            seen(&res)
        ),
        Err(err) => err,
    };
    assert_eq!(
        echo.calls(),
        0,
        "no request goes out without a usable token"
    );
    match err.downcast_ref::<Error>() {
        Some(err) => err.clone(),
        None => panic!("not a tower_oauth::Error: {err:?}"),
    }
}

/// An `invalid_client` error, as the built-in fetcher makes it from the server's answer.
pub fn invalid_client() -> Error {
    let err = tower_oauth::fetch::parse_token_response(
        StatusCode::UNAUTHORIZED,
        &HeaderMap::new(),
        br#"{"error":"invalid_client"}"#,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidClient);
    err
}

/// Advances paused time and lets the tasks that wake up (renewal timers, fetches) run.
pub async fn advance(by: Duration) {
    tokio::time::advance(by).await;
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// A log sink to hand a `tracing_subscriber` as its writer: every line it writes, kept.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}
