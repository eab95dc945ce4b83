//! The layer.

use std::{fmt, sync::Arc};

use tower_layer::Layer;

use crate::{config::Core, handle::TokenHandle, scope::Slots, service::OAuth};

/// Adds `Authorization: Bearer <token>` to every request, with cached, renewed tokens.
///
/// Every service made by one layer (and its clones) shares one token cache. Build one
/// with [`OAuthLayer::new`], [`OAuthLayer::builder`] or [`OAuthLayer::with_fetcher`];
/// the [`Builder`](crate::Builder) documents the settings.
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
