//! The layer.

use std::{fmt, sync::Arc};

use tower_layer::Layer;

use crate::{config::Core, handle::TokenHandle, scope::Slots, service::OAuth};

/// Adds `Authorization: Bearer <token>` to every request, with cached, renewed tokens.
///
/// Every service made by one layer (and its clones) shares one token cache. Build one
/// with `OAuthLayer::new`, `OAuthLayer::builder` (feature `https`) or
/// [`OAuthLayer::with_fetcher`];
/// the [`OAuthLayerBuilder`](crate::OAuthLayerBuilder) documents the settings.
///
/// # Tokens and renewal
///
/// Each scope set has one cached token. A request that finds it usable takes no lock and
/// allocates nothing for it: it clones the prebuilt header (marked sensitive).
///
/// - A token is **fresh** until `renew_ahead` before it expires. Then the first request
///   that sees it starts a background renewal; requests keep using it meanwhile.
/// - It is **expired** `expiry_margin` before the server's stated expiry. An expired token
///   is never sent: requests wait for the new one.
/// - Lifetimes count from when the token request was sent. A token that arrives already
///   expired is never used; the attempt counts as a [`Timeout`](crate::ErrorKind::Timeout).
/// - However many requests need a token at once, the token endpoint sees one request. The
///   fetch runs in its own task: a caller that gives up does not cancel it for the others.
///
/// The phases move on tokio timers, so tests can use `tokio::time::pause`. A runtime with
/// its time driver is required (`enable_time` or `enable_all`); without it a fetch fails
/// as [`Cancelled`](crate::ErrorKind::Cancelled). Fetch on a runtime that keeps running:
/// a fetch left on a runtime that is no longer driven is given up by requests on another
/// runtime once it has run longer than a fetch can (twice `retry_budget` plus
/// `fetch_timeout`, plus a second). Paused-clock runtimes should not share a layer with
/// others: budgets and cooldowns are read by each caller's clock.
///
/// # Errors and retry
///
/// Retryable fetch failures (transport, timeout, 5xx, 429) are retried inside the layer
/// with jittered exponential backoff, honouring `Retry-After`, within `retry_budget`.
/// Then, and at once for a non-retryable failure such as `invalid_client`, waiting
/// requests get the [`Error`](crate::Error). Requests in the following cooldown get it too,
/// without a new fetch. A failed renewal keeps the current token while it is valid.
///
/// # Security
///
/// - Secrets and tokens are redacted in `Debug` and `Display`, wiped on drop, and never
///   appear in errors or logs.
/// - The built-in fetcher refuses a plain `http://` token URL except on loopback, and
///   never follows redirects. Token responses are capped at 64 KiB.
/// - A request that already carries an `Authorization` header is left alone.
///
/// # Logs
///
/// `tracing`: an `oauth.fetch` span per fetch (scope, reason, outcome and duration of
/// each attempt, backoff delays), an event per replay, and a warning, once per token,
/// when the API rejects a token that was just re-issued. Nothing is logged per request
/// on the hot path.
#[derive(Clone)]
pub struct OAuthLayer {
    slots: Arc<Slots>,
    core: Arc<Core>,
}

impl fmt::Debug for OAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthLayer")
            .field("config", &self.core.config)
            .finish_non_exhaustive()
    }
}

impl OAuthLayer {
    pub(crate) fn new_parts(slots: Arc<Slots>, core: Arc<Core>) -> Self {
        Self { slots, core }
    }

    /// The token slots and settings, for a client integration that shares them.
    #[cfg(feature = "reqwest")]
    pub(crate) fn parts(&self) -> (&Arc<Slots>, &Arc<Core>) {
        (&self.slots, &self.core)
    }

    /// A handle to warm up, force renewal and inspect this layer's tokens.
    pub fn handle(&self) -> TokenHandle {
        TokenHandle::new(self.slots.clone())
    }
}

impl<S> Layer<S> for OAuthLayer
where
    S: Clone + Send + 'static,
{
    type Service = OAuth<S>;

    fn layer(&self, inner: S) -> OAuth<S> {
        OAuth::new(inner, self.slots.clone(), self.core.clone())
    }
}
