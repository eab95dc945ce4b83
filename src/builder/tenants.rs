//! Layers for many tenants: each request's tenant picked from its head, each tenant's
//! tokens fetched with its own credentials.

use std::sync::Arc;

use super::OAuthLayerBuilder;
use crate::{layer::OAuthLayer, scope::RequestHead, tenant::Tenant};

impl OAuthLayer {
    /// A builder for a layer that serves many applications (tenants), each with
    /// credentials of its own, over the built-in HTTPS client.
    ///
    /// `pick` names each request's tenant from its head (a header, a path segment, an
    /// extension the application set). `credentials` gives a tenant's credentials; it is
    /// called when the tenant's token is fetched, so it may look them up (keep it
    /// quick: it runs on the fetch path). The layer keeps a token per tenant and scope
    /// set, found by one hash lookup; a tenant idle for the
    /// [idle timeout](OAuthLayerBuilder::scope_idle_timeout) is forgotten, with its
    /// tokens.
    ///
    /// Each token request asks for the tenant's configured scope unless a
    /// [scope policy](OAuthLayerBuilder::scope_policy) is set. A request whose tenant is
    /// `None`, or whose tenant has no credentials, fails with
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) without being sent.
    ///
    /// Tenants share one HTTPS client unless their credentials add root certificates or a
    /// client certificate (mutual TLS); those get a client of their own per fetch.
    ///
    /// ```
    /// use tower_oauth::{ClientCredentials, OAuthLayer, Tenant};
    ///
    /// let layer = OAuthLayer::for_tenants(
    ///     |req| {
    ///         let name = req.headers.get("x-customer")?.to_str().ok()?;
    ///         Some(Tenant::from(name))
    ///     },
    ///     |tenant| {
    ///         // Look the tenant's application up: a map, a secret store, ...
    ///         let secret = format!("secret-of-{tenant}");
    ///         Some(ClientCredentials::simpledocs(tenant.as_str(), secret).scope("read"))
    ///     },
    /// )
    /// .build();
    /// # let _ = layer;
    /// ```
    #[cfg(feature = "https")]
    pub fn for_tenants<P, C>(pick: P, credentials: C) -> OAuthLayerBuilder
    where
        P: Fn(&RequestHead<'_>) -> Option<Tenant> + Send + Sync + 'static,
        C: Fn(&Tenant) -> Option<crate::ClientCredentials> + Send + Sync + 'static,
    {
        let credentials: Arc<crate::fetch::TenantCredentials> = Arc::new(credentials);
        let fetcher =
            crate::fetch::TenantFetcher::new(crate::fetch::https_client(), credentials.clone());
        let mut builder = Self::with_fetcher(fetcher).tenant_policy(pick);
        builder.tenant_identity = Some(Arc::new(move |tenant: &Tenant| {
            credentials(tenant).map(|creds| super::store::identity(&creds))
        }));
        builder
    }
}

impl OAuthLayerBuilder {
    /// Serves many tenants with one layer: `pick` names each request's tenant, and the
    /// layer keeps a token per tenant and scope set. The fetcher learns whose token it
    /// fetches from [`TokenRequest::tenant`](crate::TokenRequest::tenant). Default: one
    /// tenant, unnamed.
    ///
    /// `OAuthLayer::for_tenants` (feature `https`) sets this and fetches with each tenant's credentials;
    /// use this one with a fetcher of your own. With a [store](Self::store), the tenant is
    /// part of the store key.
    pub fn tenant_policy<P>(mut self, pick: P) -> Self
    where
        P: Fn(&RequestHead<'_>) -> Option<Tenant> + Send + Sync + 'static,
    {
        self.tenant = Some(Arc::new(pick));
        self
    }
}
