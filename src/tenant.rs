//! Tenants: one layer serving many applications, each with credentials of its own.

use std::{fmt, sync::Arc};

/// Which application a request is made for, when one layer serves many (see
/// `OAuthLayer::for_tenants` (feature `https`) and
/// [`OAuthLayerBuilder::tenant_policy`](crate::OAuthLayerBuilder::tenant_policy)).
///
/// A name the application chooses: a customer id, say. The layer keeps a token per
/// tenant and scope set, found by a hash lookup, and forgets the tokens of a tenant idle
/// for the [idle timeout](crate::OAuthLayerBuilder::scope_idle_timeout). It shows in
/// logs and in [`TokenState`](crate::TokenState): it is not a secret.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(Arc<str>);

impl Tenant {
    /// A tenant named `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// Its name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Tenant {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<String> for Tenant {
    fn from(name: String) -> Self {
        Self::new(name)
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tenant({:?})", &*self.0)
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
