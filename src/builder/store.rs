//! The builder's token store settings (see [`crate::store`]).

use std::{sync::Arc, time::Duration};

use super::OAuthLayerBuilder;
use crate::store::{StoreCipher, TokenStore};

impl OAuthLayerBuilder {
    /// Shares tokens with other processes (or layers) through `store`: see [`store`](crate::store)
    /// for how. Default: none, each layer fetches its own.
    ///
    /// The store is asked only when the layer's own cache needs a token (first use,
    /// renewal, rejection), never on the request path. Its keys start with what the
    /// tokens are for: the token URL, the client id and the added parameters (never the
    /// secret), then the scope set. A layer built with
    /// [`OAuthLayer::with_fetcher`](crate::OAuthLayer::with_fetcher) has no credentials to key by: give it a
    /// [`store_key`](Self::store_key).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_oauth::{store::MemoryStore, OAuthLayer, Token, TokenRequest};
    ///
    /// let shared = Arc::new(MemoryStore::new());
    /// let fetcher = tower::service_fn(|_: TokenRequest| async {
    ///     Ok::<_, tower_oauth::BoxError>(Token::new("tok", None))
    /// });
    /// let layer = OAuthLayer::with_fetcher(fetcher)
    ///     .store(shared.clone())
    ///     .store_key("https://auth.example.com/token|my-client")
    ///     .build();
    /// # let _ = layer;
    /// ```
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The start of the layer's store keys, in place of the one its credentials give;
    /// required with [`OAuthLayer::with_fetcher`](crate::OAuthLayer::with_fetcher) and a store. Layers whose tokens are
    /// interchangeable (same token endpoint, client and parameters) share a key.
    pub fn store_key(mut self, identity: impl Into<String>) -> Self {
        self.store_identity = Some(Arc::from(identity.into()));
        self
    }

    /// Seals the tokens kept in the store with `cipher` (XChaCha20-Poly1305), so that
    /// whoever can read the store cannot use them, and whoever can write it cannot plant
    /// one. Default: tokens are kept as they are; see [`store`](crate::store) for what
    /// that exposes.
    pub fn store_cipher(mut self, cipher: StoreCipher) -> Self {
        self.store_cipher = Some(cipher);
        self
    }

    /// The bound on each call to the store. Default: 500 ms. A call that fails or takes
    /// longer is logged, the layer fetches on its own, and the store is left alone for
    /// five seconds.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.config.store_timeout = timeout;
        self
    }

    /// How long to wait for a token another process is fetching before fetching one
    /// here. Default: 10 s. A process that holds the store's lease and dies is replaced
    /// sooner, when its lease ends (the fetch timeout plus the store timeout).
    pub fn store_wait(mut self, wait: Duration) -> Self {
        self.config.store_wait = wait;
        self
    }
}

/// What tokens of `creds` are for, as their store keys begin: the token URL, the client
/// id and the added parameters, never the secret.
#[cfg(feature = "https")]
pub(super) fn identity(creds: &crate::ClientCredentials) -> Arc<str> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("client_id", creds.client_id());
    for (name, value) in creds.params() {
        form.append_pair(name, value);
    }
    Arc::from(format!("{}|{}", creds.token_url(), form.finish()))
}
