//! The service: the request hot path.
//!
//! `call` finds the request's slot, checks this clone's copy of the token's header
//! against the slot with one atomic load, inserts the header and calls the inner service.
//! Everything else (waiting for a token, classifying a 401, replaying) is in
//! [`future`](crate::future).

use std::{
    fmt, mem,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{header::AUTHORIZATION, HeaderValue, Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::{
    body::ResponseBody,
    cache::{Credential, Slot},
    config::Core,
    error::BoxError,
    future::{self, At, Ctx, Home, ResponseFuture},
    scope::{by_method_index, Slots},
};

/// Adds `Authorization: Bearer <token>` to requests and re-issues rejected tokens.
///
/// Made by [`OAuthLayer`](crate::OAuthLayer). A request that already has an
/// `Authorization` header is passed through untouched.
///
/// # Replay
///
/// A response that says the token was rejected (see [`classify`](crate::classify))
/// marks the token unusable, gets a new one and replays the request once. If the replay
/// is rejected too, that response goes to the caller: there is no loop. A token fetched
/// because of a rejection is not replaced for another within `reissue_interval`, so a
/// server that rejects every token costs one token request per interval.
///
/// Replay works however the service is called: `oneshot` on the last clone, a clone per
/// request, `call_all`, behind a `Buffer`. Each response future holds an `Arc` to what its
/// cold path needs. The replay goes to a clone of the inner service kept for the purpose,
/// polled ready anew. Which bodies can be replayed is in [`body`](crate::body).
///
/// # Readiness and capacity
///
/// `poll_ready` is the inner service's. What it reserves (a concurrency permit, a buffer
/// slot) goes with the request the caller then sends, also while that request waits for
/// a token. So the token fetcher must not need that capacity: give an
/// [`HttpFetcher`](crate::fetch::HttpFetcher) a client of its own (`OAuthLayer::new`
/// does), or a fetch can wait for permits held by requests that wait for it; it then
/// fails with a [`Timeout`](crate::ErrorKind::Timeout) after `fetch_timeout`.
pub struct OAuth<S> {
    inner: S,
    home: Arc<Home<S>>,
    /// This clone's copies of the tokens' headers, at their fixed slot indexes.
    held: [Held; 2],
}

/// This clone's copy of a slot's current `Authorization` value.
///
/// Every request clones the header it sends, which writes the reference count of the
/// header's bytes. With one header shared by every clone, that count would move between
/// cores on every request; a clone that keeps sending (a service per worker thread)
/// makes its own copy after [`OWN_COPY_AFTER`] requests, so that it writes only its own.
/// A clone made for one request never copies.
#[derive(Default)]
enum Held {
    #[default]
    Nothing,
    /// The slot's header, shared with every clone, and the requests sent with it.
    Shared {
        generation: u64,
        header: HeaderValue,
        sends: u32,
    },
    /// The header in bytes of this clone's own.
    Own {
        generation: u64,
        header: HeaderValue,
    },
}

/// Requests a clone sends with the slot's shared header before it makes its own copy.
const OWN_COPY_AFTER: u32 = 16;

impl Held {
    /// The header for this request, if the slot's current token can be used as it is.
    #[inline]
    fn credential(&mut self, slot: &Arc<Slot>) -> Option<Credential> {
        let peek = slot.peek();
        if peek.usable() {
            let header = match self {
                Held::Own { generation, header } if *generation == peek.generation => {
                    Some(header.clone())
                }
                Held::Shared {
                    generation,
                    header,
                    sends,
                } if *generation == peek.generation => {
                    *sends += 1;
                    if *sends < OWN_COPY_AFTER {
                        Some(header.clone())
                    } else {
                        let own = own_copy(header);
                        *self = Held::Own {
                            generation: peek.generation,
                            header: own.clone(),
                        };
                        Some(own)
                    }
                }
                _ => None,
            };
            if let Some(header) = header {
                if peek.renewal_due() {
                    slot.renewal_due(peek.generation);
                }
                return Some(Credential {
                    header,
                    generation: peek.generation,
                });
            }
        }
        self.reload(slot)
    }

    /// Takes the slot's current header, if it can be used: once per token and clone.
    #[cold]
    #[inline(never)]
    fn reload(&mut self, slot: &Arc<Slot>) -> Option<Credential> {
        let cred = slot.fast()?;
        *self = Held::Shared {
            generation: cred.generation,
            header: cred.header.clone(),
            sends: 0,
        };
        Some(cred)
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
    /// A clone starts without header copies of its own: a clone made for one request
    /// (`svc.clone().oneshot(req)`) then costs one reference count, not one per token.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            home: self.home.clone(),
            held: Default::default(),
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
    pub(crate) fn new(inner: S, slots: Arc<Slots>, core: Arc<Core>) -> Self {
        Self {
            home: Arc::new(Home::new(slots, core, &inner)),
            inner,
            held: Default::default(),
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
    B: Body<Data = Bytes> + Send + 'static,
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
        let (at, cred) = match &*self.home.slots {
            Slots::One(slot) => (At::Fixed(0), self.held[0].credential(slot)),
            Slots::ByMethod(slots) => {
                let index = by_method_index(req.method());
                (At::Fixed(index), self.held[index].credential(&slots[index]))
            }
            // A request with its own `Authorization` needs no token, nor a scope set.
            Slots::Dynamic(_) if req.headers().contains_key(AUTHORIZATION) => {
                return ResponseFuture::passthrough(self.inner.call(req));
            }
            Slots::Dynamic(dynamic) => {
                let key = dynamic.key_of(&req);
                let cred = dynamic.with(&key, |slot| slot.fast()).flatten();
                (At::Key(key), cred)
            }
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
            return self.call_cold(at, req);
        };
        if let Some(own) = req.headers_mut().insert(AUTHORIZATION, cred.header) {
            req.headers_mut().insert(AUTHORIZATION, own);
            return ResponseFuture::passthrough(self.inner.call(req));
        }
        let replay = self.home.prepare_replay(&mut req);
        #[cfg_attr(not(feature = "jwt"), allow(unused_mut))]
        let mut ctx = Ctx::new(self.home.clone(), at, cred.generation, replay);
        // The replay copy has no proof: a replay signs one of its own.
        #[cfg(feature = "jwt")]
        if let Err(err) = ctx.prove(&mut req) {
            return ResponseFuture::slow(async move { Err(err.into()) });
        }
        ResponseFuture::called(self.inner.call(req), ctx)
    }
}

impl<S> OAuth<S>
where
    S: Clone + Send + 'static,
{
    /// No usable token: wait for one. The instance polled ready goes with the request,
    /// with what readiness reserved for it (a concurrency permit, a buffer slot): the
    /// caller's reservation, for this request. This service keeps a clone, to be polled
    /// ready for the next.
    #[cold]
    #[inline(never)]
    fn call_cold<B, ResB>(&mut self, at: At, req: Request<B>) -> ResponseFuture<S, B, ResB>
    where
        S: Service<Request<B>, Response = Response<ResB>>,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        ResB: Body + Send + 'static,
        ResB::Data: Send,
        ResB::Error: Send,
    {
        let clone = self.inner.clone();
        let ready = mem::replace(&mut self.inner, clone);
        let ctx = Ctx::new(self.home.clone(), at, 0, None);
        ResponseFuture::slow(future::call_after_token(ctx, ready, req))
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
