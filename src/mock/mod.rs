//! An embedded mock of the SimpleDocs token endpoint and API, for tests and demos.
//!
//! [`MockServer`] listens on `127.0.0.1` on a random port and speaks HTTP/1.1 (with
//! keep-alive). A connection that takes more than 30 s to send a whole request head,
//! idle time between requests included, is closed. It implements:
//!
//! * `POST /api/oauth/token`: the OAuth 2.0 client-credentials grant. Client credentials
//!   come either in the form body (`client_id`, `client_secret`) or in an
//!   `Authorization: Basic` header whose two halves are form-url-encoded (RFC 6749
//!   §2.3.1), never both. The optional `scope` is `read`, `write` or `read write` (in any
//!   order). As SimpleDocs documents, omitting it (or sending it empty or as spaces only)
//!   grants `read` to an application scoped to `read` or to `write`, while an application
//!   with the `read write` scope (the default, see [`MockConfig::app_scope`]) must ask
//!   explicitly and gets `400 invalid_scope` otherwise. Success answers `200` with
//!   `{"access_token","token_type":"Bearer","expires_in","scope","created_at"}` and
//!   `Cache-Control: no-store`.
//! * `GET /api/v1/workflows` (needs scope `read`): a fixed list of two workflows.
//! * `POST /api/v1/documents` (needs scope `write`): reads the whole body, up to 8 MiB
//!   (`413 payload_too_large` beyond), and answers `201` with
//!   `{"id","received_bytes","fnv1a64"}`; the bodies are kept, see
//!   [`MockServer::received_documents`]. A body is read only once the request carries a
//!   bearer token; an upload whose token is rejected is read to its end and dropped.
//!
//! Every error is a problem document (`Content-Type: application/problem+json`) such as
//! `{"type":"token_expired","status":401,"title":"Token Expired","detail":"The access token
//! has expired."}`. The types are `invalid_request`, `invalid_client`,
//! `unsupported_grant_type`, `invalid_scope` (token endpoint), `unauthorized` (no bearer
//! credentials, with `WWW-Authenticate: Bearer realm="simpledocs"`), `invalid_token`,
//! `token_expired`, `insufficient_scope` (API), and `not_found`, `method_not_allowed`,
//! `payload_too_large`.
//!
//! Token expiry is measured with [`tokio::time::Instant`], so tests that call
//! `tokio::time::pause()` and `tokio::time::advance()` can expire tokens without waiting.
//! The header read timeout runs on the same clock: advancing it past 30 s also closes
//! the idle connections of clients that keep them pooled.
//!
//! Tests steer the server with knobs: [`MockServer::revoke_all`],
//! [`MockServer::expire_token`], [`MockServer::fail_token_requests`] (status codes,
//! `Retry-After`, hostile bodies, hanging or dropped connections),
//! [`MockServer::set_token_delay`], [`MockServer::set_token_lifetime`] and
//! [`MockServer::set_expires_in_field`]; they observe it with [`MockServer::stats`],
//! [`MockServer::issued_tokens`] and [`MockServer::received_documents`].
//!
//! # Example
//!
//! ```
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tower_oauth::mock::MockServer;
//!
//! // A minimal HTTP/1.1 exchange over a fresh connection; returns (status line, body).
//! async fn exchange(addr: std::net::SocketAddr, head: &str, body: &str) -> (String, String) {
//!     let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
//!     let request = format!(
//!         "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
//!         body.len()
//!     );
//!     stream.write_all(request.as_bytes()).await.unwrap();
//!     let mut response = String::new();
//!     stream.read_to_string(&mut response).await.unwrap();
//!     let (head, body) = response.split_once("\r\n\r\n").unwrap();
//!     (head.lines().next().unwrap().to_owned(), body.to_owned())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let server = MockServer::start().await?;
//!
//! // Exchange the client credentials for a token.
//! let form = form_urlencoded::Serializer::new(String::new())
//!     .append_pair("grant_type", "client_credentials")
//!     .append_pair("client_id", server.client_id())
//!     .append_pair("client_secret", server.client_secret())
//!     .append_pair("scope", "read")
//!     .finish();
//! let head = "POST /api/oauth/token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded";
//! let (status, body) = exchange(server.addr(), head, &form).await;
//! assert_eq!(status, "HTTP/1.1 200 OK");
//! let token: serde_json::Value = serde_json::from_str(&body).unwrap();
//! assert_eq!(token["token_type"], "Bearer");
//! assert_eq!(token["scope"], "read");
//! assert_eq!(token["expires_in"], 7200);
//!
//! // Use it on the API.
//! let access_token = token["access_token"].as_str().unwrap();
//! let head = format!("GET /api/v1/workflows HTTP/1.1\r\nAuthorization: Bearer {access_token}");
//! let (status, body) = exchange(server.addr(), &head, "").await;
//! assert_eq!(status, "HTTP/1.1 200 OK");
//! assert!(body.contains("Onboarding"));
//!
//! // Once the token is revoked, the API says so.
//! server.revoke_all();
//! let (status, body) = exchange(server.addr(), &head, "").await;
//! assert_eq!(status, "HTTP/1.1 401 Unauthorized");
//! assert!(body.contains(r#""type":"token_expired""#));
//!
//! let stats = server.stats();
//! assert_eq!((stats.tokens_issued, stats.api_ok, stats.api_token_expired), (1, 1, 1));
//! # Ok(())
//! # }
//! ```

mod handler;
mod state;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use state::Shared;

/// Default client id of the mock application.
const DEFAULT_CLIENT_ID: &str = "simpledocs-demo-client";
/// Default client secret of the mock application.
const DEFAULT_CLIENT_SECRET: &str = "demo-secret";
/// Default scope of the mock application.
const DEFAULT_APP_SCOPE: &str = "read write";
/// Default token lifetime, as documented by SimpleDocs.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(7200);
/// How long a connection may take to send a whole request head, idle keep-alive time included.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Configuration of a [`MockServer`]: the application's credentials, scope and token lifetime.
#[derive(Clone)]
pub struct MockConfig {
    client_id: String,
    client_secret: String,
    app_scope: String,
    token_lifetime: Duration,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            app_scope: DEFAULT_APP_SCOPE.to_owned(),
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
        }
    }
}

impl fmt::Debug for MockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("app_scope", &self.app_scope)
            .field("token_lifetime", &self.token_lifetime)
            .finish()
    }
}

impl MockConfig {
    /// Creates the default configuration (same as [`MockConfig::default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the client id the server accepts (default `simpledocs-demo-client`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// Sets the client secret the server accepts (default `demo-secret`).
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = secret.into();
        self
    }

    /// Sets the space-separated scopes the application may be granted (default `read write`).
    ///
    /// An application with both `read` and `write` must name a scope in every token
    /// request; one with a single scope that names none is granted `read`.
    pub fn app_scope(mut self, scope: impl Into<String>) -> Self {
        self.app_scope = scope.into();
        self
    }

    /// Sets the lifetime of issued tokens (default 7200 s).
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }
}

/// How the next token requests fail, see [`MockServer::fail_token_requests`].
#[non_exhaustive]
#[derive(Debug, Clone)]
pub enum TokenFailure {
    /// Answer this status with a problem document of type `server_error` (`temporarily_unavailable` for 503).
    Status(http::StatusCode),
    /// Like [`TokenFailure::Status`], plus a `Retry-After` header with this many seconds.
    StatusWithRetryAfter(http::StatusCode, u64),
    /// Answer this status, `Content-Type` (omitted when empty) and raw body.
    Body(http::StatusCode, &'static str, &'static str),
    /// Never answer, keeping the connection open.
    Hang,
    /// Drop the connection without writing a response.
    CloseConnection,
}

/// A snapshot of the server's request counters, see [`MockServer::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MockStats {
    /// Requests to the token endpoint, whatever their outcome.
    pub token_requests: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// Token requests answered with an error, including injected failures.
    pub token_errors: u64,
    /// Requests to any path under `/api/v1/`.
    pub api_requests: u64,
    /// API requests answered with a 2xx status.
    pub api_ok: u64,
    /// API requests rejected with `token_expired` (expired or revoked token).
    pub api_token_expired: u64,
    /// API requests rejected with `invalid_token` (unknown token).
    pub api_invalid_token: u64,
    /// API requests rejected with `unauthorized` (no `Authorization: Bearer` header).
    pub api_unauthorized: u64,
    /// API requests rejected with `insufficient_scope`.
    pub api_insufficient_scope: u64,
}

impl MockStats {
    /// Returns the number of API requests rejected for authentication or authorization reasons.
    pub fn api_rejected(&self) -> u64 {
        self.api_token_expired
            + self.api_invalid_token
            + self.api_unauthorized
            + self.api_insufficient_scope
    }
}

/// What the server issued for one token (the token text itself is deliberately absent).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssuedToken {
    /// The granted scope, in canonical order (`read`, `write` or `read write`).
    pub scope: String,
    /// The lifetime the server enforces for this token.
    pub lifetime: Duration,
}

/// A running mock SimpleDocs server bound to `127.0.0.1`; dropping it stops it.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    listener: Arc<Mutex<Option<TcpListener>>>,
    accept_task: JoinHandle<()>,
}

impl fmt::Debug for MockServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .field("client_id", &self.shared.client_id)
            .field("client_secret", &"<redacted>")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl MockServer {
    /// Starts a server with [`MockConfig::default`].
    pub async fn start() -> std::io::Result<MockServer> {
        Self::start_with(MockConfig::default()).await
    }

    /// Binds `127.0.0.1:0` and spawns the accept loop on the current tokio runtime.
    pub async fn start_with(config: MockConfig) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let listener = Arc::new(Mutex::new(Some(listener)));
        let accept_task = tokio::spawn(accept_loop(Arc::clone(&listener), Arc::clone(&shared)));
        tracing::debug!(%addr, "mock SimpleDocs server started");
        Ok(MockServer {
            addr,
            shared,
            listener,
            accept_task,
        })
    }

    /// Returns the socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns the base URL, `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Returns the token endpoint URL, `http://127.0.0.1:PORT/api/oauth/token`.
    pub fn token_url(&self) -> String {
        format!("{}/api/oauth/token", self.base_url())
    }

    /// Returns the client id the server accepts.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// Returns the client secret the server accepts.
    pub fn client_secret(&self) -> &str {
        &self.shared.client_secret
    }

    /// Sets the lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.lock().token_lifetime = lifetime;
    }

    /// Overrides the `expires_in` value sent with new tokens (`None`: the real lifetime in whole seconds, rounded down; `Some(Value::Null)`: omit the field).
    ///
    /// The server keeps enforcing the real lifetime whatever it advertises.
    pub fn set_expires_in_field(&self, value: Option<serde_json::Value>) {
        self.shared.lock().expires_in_field = value;
    }

    /// Makes every token issued so far answer `token_expired` from now on.
    pub fn revoke_all(&self) {
        let mut inner = self.shared.lock();
        for info in inner.tokens.values_mut() {
            info.revoked = true;
        }
    }

    /// Makes one token answer `token_expired` from now on; returns whether the token was known.
    pub fn expire_token(&self, token: &str) -> bool {
        match self.shared.lock().tokens.get_mut(token) {
            Some(info) => {
                info.revoked = true;
                true
            }
            None => false,
        }
    }

    /// Makes the next `n` token requests fail with `failure` (`usize::MAX`: until cleared), replacing any pending failures.
    pub fn fail_token_requests(&self, n: usize, failure: TokenFailure) {
        let mut inner = self.shared.lock();
        inner.failures.clear();
        if n > 0 {
            inner.failures.push_back((n, failure));
        }
    }

    /// Queues `n` more failing token requests after those already pending (`usize::MAX`: until cleared).
    ///
    /// Unlike [`MockServer::fail_token_requests`] this keeps pending failures, so a test can
    /// script a sequence such as "one 503, then one dropped connection, then success".
    pub fn push_token_failures(&self, n: usize, failure: TokenFailure) {
        if n > 0 {
            self.shared.lock().failures.push_back((n, failure));
        }
    }

    /// Removes every pending token failure.
    pub fn clear_token_failures(&self) {
        self.shared.lock().failures.clear();
    }

    /// Sets a delay (measured with [`tokio::time::sleep`]) before each token request is answered.
    ///
    /// The request is counted in [`MockStats::token_requests`] on arrival, before the delay;
    /// injected failures are applied after it.
    pub fn set_token_delay(&self, delay: Duration) {
        self.shared.lock().token_delay = delay;
    }

    /// Returns a snapshot of the request counters.
    pub fn stats(&self) -> MockStats {
        self.shared.counters.snapshot()
    }

    /// Returns the bodies of successful `POST /api/v1/documents` requests, in order.
    pub fn received_documents(&self) -> Vec<Bytes> {
        self.shared.lock().documents.clone()
    }

    /// Returns what was issued for every token so far, in order.
    pub fn issued_tokens(&self) -> Vec<IssuedToken> {
        self.shared.lock().issued.clone()
    }

    /// Stops the server: the listening socket is closed at once and open connections are dropped.
    pub fn shutdown(self) {
        // `Drop` does the work.
    }

    fn stop(&self) {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(listener);
        self.accept_task.abort();
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Accepts connections until the listener is taken away, serving each on its own task.
///
/// The connection tasks live in a `JoinSet` owned by this task, so aborting it closes them.
async fn accept_loop(listener: Arc<Mutex<Option<TcpListener>>>, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = poll_fn(|cx| {
            let guard = listener.lock().unwrap_or_else(PoisonError::into_inner);
            match guard.as_ref() {
                Some(listener) => listener.poll_accept(cx).map(Some),
                None => Poll::Ready(None),
            }
        })
        .await;
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            None => return,
            Some(Ok(accepted)) => accepted,
            Some(Err(error)) => {
                tracing::warn!(%error, "mock server failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            let service = service_fn(move |request| handler::handle(Arc::clone(&shared), request));
            // Without a timer hyper enforces no header read timeout, and a client that
            // never finishes its request head would hold the connection forever.
            let result = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "mock server connection ended with an error");
            }
        });
    }
}
