//! The running server: [`MockServer`], its accept loop and the routing of each request.
//!
//! The accept loop owns the connection tasks in a `JoinSet`, so dropping the server (which
//! aborts the loop) closes every connection. Each request goes to the token endpoint or
//! the API by its path; anything else is `404 not_found`.

use std::fmt;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::api::{api, API_PREFIX};
use super::config::{MockConfig, TokenFailure};
use super::discovery::{metadata, METADATA_PATH};
use super::response::{not_found, DropConnection, Resp};
use super::state::{lock, Shared};
use super::stats::{IssuedToken, MockStats};
use super::token::{token_endpoint, TOKEN_PATH};

/// How long a connection may take to send a whole request head, idle keep-alive time included.
pub(super) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

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
        let shared = Arc::new(Shared::new(config, format!("http://{addr}"), TOKEN_PATH));
        let listener = Arc::new(Mutex::new(Some(listener)));
        let accept_task = tokio::spawn(accept_loop(
            Arc::clone(&listener),
            Arc::clone(&shared),
            addr,
        ));
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
        self.shared.base_url.clone()
    }

    /// Returns the token endpoint URL, `http://127.0.0.1:PORT/api/oauth/token`.
    pub fn token_url(&self) -> String {
        self.shared.token_url.clone()
    }

    /// Returns the client id the server accepts.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// Returns the client secret the server accepts.
    pub fn client_secret(&self) -> &str {
        &self.shared.client_secret
    }

    /// The client id and secret of tenant application `i` (from 1), accepted when the
    /// server was started with [`MockConfig::tenants`](super::MockConfig::tenants) of at
    /// least `i`.
    pub fn tenant_credentials(&self, i: usize) -> (String, String) {
        (format!("tenant-{i}"), super::token::tenant_secret(i))
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

    /// Replaces the DPoP nonces of the token endpoint and the API: a proof carrying an
    /// old one is answered with a `use_dpop_nonce` challenge and the new nonce, when
    /// nonces are required (see [`MockConfig::require_api_dpop_nonce`]).
    #[cfg(feature = "jwt")]
    pub fn rotate_dpop_nonce(&self) {
        self.shared.jose.rotate_nonces();
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
        let listener = lock(&self.listener).take();
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
async fn accept_loop(
    listener: Arc<Mutex<Option<TcpListener>>>,
    shared: Arc<Shared>,
    addr: SocketAddr,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = poll_fn(|cx| {
            let guard = lock(&listener);
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
            let service = service_fn(move |request| handle(Arc::clone(&shared), addr, request));
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

/// Serves one request.
async fn handle(
    shared: Arc<Shared>,
    addr: SocketAddr,
    request: Request<Incoming>,
) -> Result<Resp, DropConnection> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let result = if path == TOKEN_PATH {
        token_endpoint(&shared, request).await
    } else if path == METADATA_PATH {
        Ok(metadata(&shared, addr))
    } else if path.starts_with(API_PREFIX) {
        api(&shared, request).await
    } else {
        Ok(not_found())
    };
    match &result {
        Ok(response) => {
            tracing::debug!(%method, %path, status = response.status().as_u16(), "mock server answered");
        }
        Err(_) => tracing::debug!(%method, %path, "mock server dropped the connection"),
    }
    result
}
