//! Settings shared by every part of a layer, and their defaults.

use std::{sync::Arc, time::Duration};

use tower::util::BoxCloneSyncService;

use crate::{
    body::Replayers,
    classify::Classifier,
    error::{BoxError, Error},
    store::fleet::Fleet,
    tenant::Tenant,
    token::{Scope, SlotKey, Token, TokenRequest},
};

/// The default of [`OAuthLayerBuilder::replay_limit`](crate::OAuthLayerBuilder::replay_limit).
pub(crate) const DEFAULT_REPLAY_LIMIT: usize = 64 * 1024;

/// The type-erased token fetcher; fetching is the cold path, so a box costs nothing that
/// matters.
pub(crate) type BoxFetcher = BoxCloneSyncService<TokenRequest, Token, BoxError>;

/// Settings shared by every slot of a layer. See the builder for meanings and defaults.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) renew_ahead: Duration,
    /// Whether `renew_ahead` was set on the builder: it then wins over the fraction.
    pub(crate) renew_ahead_set: bool,
    /// `None`: half the lifetime for long tokens, `renew_ahead` for short ones.
    pub(crate) renew_fraction: Option<f64>,
    pub(crate) renew_jitter: f64,
    pub(crate) expiry_margin: Duration,
    pub(crate) default_lifetime: Duration,
    pub(crate) max_lifetime: Duration,
    pub(crate) fetch_timeout: Duration,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) retry_budget: Duration,
    pub(crate) max_retry_after: Duration,
    pub(crate) strict_scope: bool,
    /// `None`: replay is off.
    pub(crate) replay_limit: Option<usize>,
    pub(crate) inspect_limit: usize,
    pub(crate) reissue_interval: Duration,
    /// The bound on each call to the token store.
    pub(crate) store_timeout: Duration,
    /// How long to wait for a token another process is fetching.
    pub(crate) store_wait: Duration,
    /// Whether the layer has a token store.
    pub(crate) has_store: bool,
}

impl Config {
    /// Longer than any fetch can run on a driven runtime: a fetch requests wait for makes
    /// its last attempt within the retry budget counted from when the first of them came
    /// (a renewal: from its start, and again from when its token ran out, so twice), and
    /// each attempt ends within `fetch_timeout`; a second more for scheduling delays.
    /// With a token store, an attempt may first wait for another process (the store
    /// wait) and make a few store calls (each within the store timeout).
    pub(crate) fn stranded_after(&self) -> Duration {
        let store = match self.has_store {
            true => self
                .store_wait
                .saturating_add(self.store_timeout.saturating_mul(4)),
            false => Duration::ZERO,
        };
        let attempt = self.fetch_timeout.saturating_add(store);
        self.retry_budget
            .saturating_add(attempt)
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(1))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            renew_ahead: Duration::from_secs(60),
            renew_ahead_set: false,
            renew_fraction: None,
            renew_jitter: 0.1,
            expiry_margin: Duration::from_secs(5),
            default_lifetime: Duration::from_secs(300),
            max_lifetime: Duration::from_secs(24 * 60 * 60),
            fetch_timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            retry_budget: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
            strict_scope: false,
            replay_limit: Some(DEFAULT_REPLAY_LIMIT),
            inspect_limit: 4 * 1024,
            reissue_interval: Duration::from_secs(1),
            store_timeout: Duration::from_millis(500),
            store_wait: Duration::from_secs(10),
            has_store: false,
        }
    }
}

/// What every slot of a layer shares.
pub(crate) struct Core {
    pub(crate) config: Config,
    pub(crate) fetcher: BoxFetcher,
    pub(crate) classifier: Classifier,
    /// Body types registered for replay on the builder.
    pub(crate) replayers: Replayers,
    /// Whether the scopes of token requests are explicit (a scope policy was set).
    pub(crate) explicit_scope: bool,
    /// The layer's name ([`OAuthLayerBuilder::name`](crate::OAuthLayerBuilder::name)), shown in its errors
    /// and spans.
    pub(crate) name: Option<Arc<str>>,
    /// The token endpoint's host, when the builder knows it.
    pub(crate) host: Option<Arc<str>>,
    /// The token store shared with other processes, if one is set.
    pub(crate) fleet: Option<Fleet>,
    /// What the layer's tokens are for (token URL, client id, parameters), the first
    /// part of their store keys.
    pub(crate) store_identity: Option<Arc<str>>,
    /// What a tenant's tokens are for, on a layer with credentials per tenant; `None`
    /// for a tenant without credentials, which has no tokens.
    pub(crate) tenant_identity: Option<Arc<TenantIdentity>>,
    /// The layer's DPoP key, when its tokens are bound to one.
    #[cfg(feature = "jwt")]
    pub(crate) dpop: Option<crate::jose::Dpop>,
}

/// What a tenant's tokens are for: the start of their store keys.
pub(crate) type TenantIdentity = dyn Fn(&Tenant) -> Option<Arc<str>> + Send + Sync;

impl Core {
    /// The store key of the tokens of `key`, if the layer has a store: what they are for
    /// (the token URL, client id and parameters of the layer's or the tenant's
    /// credentials, never the secret), the tenant and the scope set.
    pub(crate) fn store_key(&self, key: &SlotKey) -> Option<String> {
        self.fleet.as_ref()?;
        let tenant = key.tenant.as_ref();
        let identity = match (&self.tenant_identity, tenant) {
            (Some(identity), Some(tenant)) => identity(tenant)?,
            _ => self.store_identity.clone()?,
        };
        let tenant = match tenant {
            Some(t) => format!(
                "|tenant={}",
                form_urlencoded::byte_serialize(t.as_str().as_bytes()).collect::<String>()
            ),
            None => String::new(),
        };
        let scope = key.scope.as_ref().map(Scope::as_str).unwrap_or("");
        // DPoP-bound tokens work only with their key: shared only by layers that have it.
        #[cfg(feature = "jwt")]
        let scope = match &self.dpop {
            Some(dpop) => format!("{scope}|jkt={}", dpop.key().thumbprint()),
            None => scope.to_owned(),
        };
        Some(format!("{identity}{tenant}|scope={scope}"))
    }

    /// `err` says which layer and token host it is from.
    pub(crate) fn label(&self, err: Error) -> Error {
        err.with_origin(self.name.as_ref(), self.host.as_ref())
    }
}
