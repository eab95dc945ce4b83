//! The service: the request hot path.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{
    header::{Entry, AUTHORIZATION},
    Request, Response,
};
use http_body::Body;
use tower_service::Service;

use crate::{
    body::{ReplayableBody, ResponseBody},
    error::BoxError,
    future::{self, Ctx, ResponseFuture},
    layer::Shared,
};

/// Adds `Authorization: Bearer <token>` to requests and re-issues rejected tokens.
///
/// Made by [`OAuthLayer`](crate::OAuthLayer). A request that already has an
/// `Authorization` header is passed through untouched.
pub struct OAuth<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for OAuth<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for OAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> OAuth<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResB> Service<Request<B>> for OAuth<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: ReplayableBody + Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Send,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // Call the instance that was polled ready; keep the clone for next time.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);

        let slot = self.shared.slots.resolve(&req);
        let vacant = match req.headers_mut().entry(AUTHORIZATION) {
            Entry::Vacant(vacant) => vacant,
            Entry::Occupied(_) => return ResponseFuture::passthrough(inner.call(req)),
        };
        match slot.fast() {
            Some(cred) => {
                vacant.insert(cred.header);
                let replay = future::replay_copy(&mut req, slot.core.config.replay_limit);
                let fut = inner.call(req);
                ResponseFuture::called(
                    fut,
                    Ctx {
                        slot,
                        generation: cred.generation,
                        inner,
                        replay,
                    },
                )
            }
            None => ResponseFuture::slow(future::call_after_token(slot, inner, req)),
        }
    }
}
