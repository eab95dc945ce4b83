//! The service: the request hot path.

use std::{
    fmt, mem,
    sync::Arc,
    task::{Context, Poll},
};

use http::{header::AUTHORIZATION, HeaderValue, Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::{
    body::{ReplayableBody, ResponseBody},
    cache::{Credential, Slot},
    classify::Classifier,
    error::BoxError,
    future::{self, Ctx, ResponseFuture},
    layer::Shared,
    replay::{Home, Replay},
    scope::{by_method_index, Slots},
};

/// Adds `Authorization: Bearer <token>` to requests and re-issues rejected tokens.
///
/// Made by [`OAuthLayer`](crate::OAuthLayer). A request that already has an
/// `Authorization` header is passed through untouched.
pub struct OAuth<S> {
    inner: S,
    home: Arc<Home<S>>,
    /// The layer's registry number (`Shared::id`), copied: read on every request.
    layer: u64,
    tokens: Tokens,
    // Copied from the layer's settings: read on every request, kept one pointer away.
    classifier: Classifier,
    replay_limit: Option<usize>,
}

/// This clone's view of the layer's tokens.
#[derive(Clone)]
enum Tokens {
    One(Local),
    /// `read` and `write`, at their slot indexes.
    ByMethod([Local; 2]),
    /// Scopes computed per request: looked up in the layer's list each time.
    Dynamic,
}

/// One slot and this clone's copy of its current token's header.
#[derive(Clone)]
struct Local {
    slot: Arc<Slot>,
    /// This clone's own copy of the current token's `Authorization` value, and the
    /// generation of the token it is of, checked per request with one load of the slot's
    /// word. Every request clones the header it sends, which writes the reference count of
    /// the header's bytes: with one header shared by every clone, that count would move
    /// between cores on every request. A service clone per worker thread, as
    /// multi-threaded clients keep them, writes only its own.
    own: Option<(u64, HeaderValue)>,
    /// Requests sent with the layer's shared header since `own` was last up to date
    /// (inherited by clones). The copy is made at [`OWN_COPY_AFTER`], so that clones made
    /// for one request, which could not amortise it, never make one.
    shared_sends: u32,
}

/// Requests a clone sends with the layer's shared header before it makes its own copy.
const OWN_COPY_AFTER: u32 = 16;

impl Local {
    fn new(slot: &Arc<Slot>) -> Self {
        Self {
            slot: slot.clone(),
            own: None,
            shared_sends: 0,
        }
    }

    #[inline]
    fn credential(&mut self) -> Option<Credential> {
        if let Some((generation, header)) = &self.own {
            let peek = self.slot.peek();
            if peek.generation() == *generation && peek.usable() {
                if peek.wants_renewal() {
                    self.slot.renewal_due(*generation);
                }
                return Some(Credential {
                    header: header.clone(),
                    generation: *generation,
                });
            }
        }
        let shared = self.slot.fast()?;
        // Not yet copied for this token: share the layer's header for a few requests,
        // then copy it (once per token).
        if self.shared_sends < OWN_COPY_AFTER {
            self.shared_sends += 1;
            return Some(shared);
        }
        let header = own_copy(&shared.header);
        self.own = Some((shared.generation, header.clone()));
        self.shared_sends = 0;
        Some(Credential {
            header,
            generation: shared.generation,
        })
    }
}

/// A copy of `header` in bytes of its own.
#[cold]
fn own_copy(header: &HeaderValue) -> HeaderValue {
    let bytes = bytes::Bytes::from_owner(HeaderBytes(header.as_bytes().into()));
    match HeaderValue::from_maybe_shared(bytes) {
        Ok(mut copy) => {
            copy.set_sensitive(header.is_sensitive());
            copy
        }
        // Cannot happen (the bytes came from a header value); sharing is still correct.
        Err(_) => header.clone(),
    }
}

/// The bytes of a clone's own header. Aligned so that the reference count kept in front
/// of them, written by every request the clone sends, has a cache line to itself.
#[repr(align(128))]
struct HeaderBytes(Box<[u8]>);

impl AsRef<[u8]> for HeaderBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl<S: Clone> Clone for OAuth<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            home: self.home.clone(),
            layer: self.layer,
            tokens: self.tokens.clone(),
            classifier: self.classifier.clone(),
            replay_limit: self.replay_limit,
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

impl<S> OAuth<S>
where
    S: Clone + Send + 'static,
{
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        let tokens = match &shared.slots {
            Slots::One(slot) => Tokens::One(Local::new(slot)),
            Slots::ByMethod { read, write } => {
                Tokens::ByMethod([Local::new(read), Local::new(write)])
            }
            Slots::Dynamic { .. } => Tokens::Dynamic,
        };
        let classifier = shared.core.classifier.clone();
        let replay_limit = shared.core.config.replay_limit;
        Self {
            layer: shared.id,
            home: Home::register(shared, &inner),
            inner,
            tokens,
            classifier,
            replay_limit,
        }
    }
}

impl<S> OAuth<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// Replays do not go to this instance: they go to a clone of the service as the layer
    /// wrapped it, kept for them and shared by every clone of this service. A service
    /// replaced here is used for requests but not for replays; to replace the inner
    /// service, wrap the new one with the layer instead.
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

    #[inline]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let (slot, cred) = match &mut self.tokens {
            Tokens::One(local) => (0, local.credential()),
            Tokens::ByMethod(locals) => {
                let index = by_method_index(req.method());
                (index, locals[index as usize].credential())
            }
            // A request with its own `Authorization` needs no token, nor a scope set: it
            // must not add one of the `MAX_SCOPE_SETS`.
            Tokens::Dynamic if req.headers().contains_key(AUTHORIZATION) => {
                return ResponseFuture::passthrough(self.inner.call(req));
            }
            Tokens::Dynamic => match self.home.shared.slots.resolve(&req) {
                Ok((index, slot)) => (index, slot.fast()),
                Err(err) => return Self::no_slot(err),
            },
        };
        // A request with its own `Authorization` passes through. With a token at hand, one
        // `insert` both adds ours and finds theirs (put back below); that is lossless
        // unless some header has several values, when `contains_key` asks first.
        let headers = req.headers();
        if (cred.is_none() || headers.len() != headers.keys_len())
            && headers.contains_key(AUTHORIZATION)
        {
            return ResponseFuture::passthrough(self.inner.call(req));
        }
        let Some(cred) = cred else {
            // Cold: wait for a token. The instance polled ready goes with the request,
            // with what readiness reserved for it (a concurrency permit, a buffer slot):
            // the caller's reservation, for this request, not for a later one. This
            // service keeps a clone, to be polled ready for the next.
            let clone = self.inner.clone();
            let ready = mem::replace(&mut self.inner, clone);
            let slot_ref = self.home.shared.slots.get(slot).expect("resolved above");
            return ResponseFuture::slow(future::call_after_token(
                slot_ref,
                self.ctx(slot, 0),
                ready,
                req,
            ));
        };
        if let Some(own) = req.headers_mut().insert(AUTHORIZATION, cred.header) {
            req.headers_mut().insert(AUTHORIZATION, own);
            return ResponseFuture::passthrough(self.inner.call(req));
        }
        let mut ctx = self.ctx(slot, cred.generation);
        if let Some(limit) = self.replay_limit {
            ctx.replay = Replay::prepare(&mut req, limit);
        }
        ResponseFuture::called(self.inner.call(req), ctx)
    }
}

impl<S> OAuth<S> {
    /// A request whose scope set got no slot (one with its own `Authorization` never
    /// asks for one): it fails.
    #[cold]
    #[inline(never)]
    fn no_slot<B, ResB>(err: crate::Error) -> ResponseFuture<S, B, ResB>
    where
        S: Service<Request<B>, Response = Response<ResB>>,
        B: ReplayableBody,
        ResB: Body + Send + 'static,
        ResB::Data: Send,
        ResB::Error: Send,
    {
        ResponseFuture::slow(std::future::ready(Err(err.into())))
    }

    #[inline]
    fn ctx<B: ReplayableBody>(&self, slot: u32, generation: u64) -> Ctx<B> {
        Ctx {
            layer: self.layer,
            home: self.home.id,
            slot,
            generation,
            classifier: self.classifier.clone(),
            replay: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use tower_layer::Layer;

    #[test]
    fn debug_shows_the_inner_service() {
        let fetcher = tower::service_fn(|_: crate::TokenRequest| async {
            Err::<crate::Token, crate::BoxError>("no tokens here".into())
        });
        let svc = crate::OAuthLayer::with_fetcher(fetcher).build().layer(7u8);
        assert_eq!(format!("{svc:?}"), "OAuth { inner: 7, .. }");
    }
}
