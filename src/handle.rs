//! The control handle of a layer's tokens.

use std::{fmt, sync::Arc};

use crate::{cache::TokenState, error::Error, scope::Slots};

/// Controls a layer's tokens: warm up, force renewal, look at their state.
///
/// Cheap to clone. Nothing it shows contains a token or a secret.
///
/// ```
/// use tower_oauth::{ClientCredentials, OAuthLayer, TokenStatus};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_oauth::BoxError> {
/// # let mock = tower_oauth::mock::MockServer::start().await?;
/// # let (token_url, client_id, client_secret) =
/// #     (mock.token_url(), mock.client_id().to_owned(), mock.client_secret().to_owned());
/// let creds = ClientCredentials::new(&token_url, client_id, client_secret).scope("read");
/// let layer = OAuthLayer::new(creds);
/// let tokens = layer.handle();
///
/// // Fail fast at start-up on a wrong secret or an unreachable token endpoint.
/// tokens.warm_up().await?;
/// assert_eq!(tokens.fetches(), 1);
/// assert_eq!(tokens.state()[0].status, TokenStatus::Fresh);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TokenHandle {
    slots: Arc<Slots>,
}

impl fmt::Debug for TokenHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenHandle")
            .field("tokens", &self.state())
            .finish()
    }
}

impl TokenHandle {
    /// Gets a token for every scope set the policy knows of now (one for a fixed policy,
    /// two for a by-method one), so that a service can fail fast at start-up.
    ///
    /// # Errors
    ///
    /// The first fetch error, e.g. [`ErrorKind::InvalidClient`](crate::ErrorKind) for a
    /// wrong secret.
    pub async fn warm_up(&self) -> Result<(), Error> {
        let warmups = self.slots.all().into_iter().map(|s| s.warm_up());
        futures_util::future::try_join_all(warmups).await.map(drop)
    }

    /// Fetches new tokens now for every known scope set; requests keep using the current
    /// tokens meanwhile. With a [store](crate::store), the new tokens are fetched (the
    /// store is not read first) and written there for the others, who use them from
    /// their next renewal or rejection on.
    ///
    /// # Errors
    ///
    /// The first fetch error that is not retried: a non-retryable one (`invalid_client`)
    /// at once, a retryable one when the [retry budget](crate::OAuthLayerBuilder::retry_budget) is spent
    /// or `Retry-After` asks for a longer pause. A token still valid is kept in use;
    /// after a retryable failure its renewal is tried again in the background. With
    /// [`strict_scope`](crate::OAuthLayerBuilder::strict_scope), an
    /// [`InsufficientScope`](crate::ErrorKind::InsufficientScope) error when the new token
    /// lacks the requested scope, as requests would get.
    pub async fn force_refresh(&self) -> Result<(), Error> {
        let forced = self.slots.all().into_iter().map(|s| s.force());
        futures_util::future::try_join_all(forced).await.map(drop)
    }

    /// The state of each scope set's token.
    pub fn state(&self) -> Vec<TokenState> {
        self.slots.all().iter().map(|s| s.view()).collect()
    }

    /// Token requests made so far, over all scope sets (each attempt counts).
    pub fn fetches(&self) -> u64 {
        self.state().iter().map(|s| s.fetches).sum()
    }

    /// Tokens read from the layer's [store](crate::store) rather than fetched, over all
    /// scope sets.
    pub fn store_hits(&self) -> u64 {
        self.state().iter().map(|s| s.store_hits).sum()
    }
}

impl TokenHandle {
    pub(crate) fn new(slots: Arc<Slots>) -> Self {
        Self { slots }
    }
}
