//! The built-in client's connector: direct, or through an HTTP proxy's `CONNECT` tunnel.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::Uri;
use hyper_util::{
    client::{
        legacy::connect::{proxy::Tunnel, HttpConnector},
        proxy::matcher::Matcher,
    },
    rt::TokioIo,
};
use tokio::net::TcpStream;
use tower::ServiceExt;
use tower_service::Service;

use crate::error::BoxError;

/// Opens the TCP connections of the built-in token client: through the proxy that
/// `HTTPS_PROXY` (or `ALL_PROXY`) names, unless `NO_PROXY` lists the host, else directly.
///
/// The variables are read, as curl reads them, when the client is built. Only `https`
/// token URLs use the proxy, through a `CONNECT` tunnel, so TLS stays end to end; a
/// proxy's own URL must be `http`. A plain-HTTP token URL is always reached directly.
#[derive(Clone)]
pub struct ProxyConnector {
    http: HttpConnector,
    proxies: Arc<Matcher>,
}

impl ProxyConnector {
    /// A connector that proxies as `proxies` says.
    pub(crate) fn new(proxies: Matcher) -> Self {
        let mut http = HttpConnector::new();
        // The TLS connector above hands over `https` URLs too.
        http.enforce_http(false);
        Self {
            http,
            proxies: Arc::new(proxies),
        }
    }
}

impl fmt::Debug for ProxyConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The matcher's `Debug` shows no proxy password (hyper-util keeps it in a header).
        f.debug_struct("ProxyConnector")
            .field("proxies", &self.proxies)
            .finish_non_exhaustive()
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        // Connecting is the cold path: a token fetch on a new connection.
        let http = self.http.clone();
        let proxy = match dst.scheme_str() {
            Some("https") => self.proxies.intercept(&dst),
            _ => None,
        };
        match proxy {
            Some(proxy) => {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), http);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move { tunnel.oneshot(dst).await.map_err(Into::into) })
            }
            None => Box::pin(async move { http.oneshot(dst).await.map_err(Into::into) }),
        }
    }
}
