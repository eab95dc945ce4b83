//! The response future, and the cold paths it reaches: waiting for a token, reading a
//! 401 to classify it, and replaying a rejected request.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use http::{header::AUTHORIZATION, Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::ServiceExt;
use tower_service::Service;

use crate::{
    body::ResponseBody,
    cache::Slot,
    classify::{Classification, Classifier},
    config::Core,
    error::BoxError,
    replay::Replay,
    scope::{SlotKey, Slots},
    sync::lock,
    token::FetchReason,
};

type Output<ResB> = Result<Response<ResponseBody<ResB>>, BoxError>;
type BoxFuture<ResB> = Pin<Box<dyn Future<Output = Output<ResB>> + Send>>;

pin_project! {
    /// The response future of [`OAuth`](crate::OAuth).
    pub struct ResponseFuture<S, B, ResB>
    where
        S: Service<Request<B>>,
        ResB: Body,
    {
        #[pin]
        state: State<S, B, ResB>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, ResB>
    where
        S: Service<Request<B>>,
        ResB: Body,
    {
        // The request had its own `Authorization`: not ours to judge.
        Passthrough { #[pin] fut: S::Future },
        // The hot path: the inner call with a cached token.
        Called { #[pin] fut: S::Future, ctx: Option<Ctx<S, B>> },
        // Everything cold, boxed.
        Slow { fut: BoxFuture<ResB> },
    }
}

impl<S, B, ResB> fmt::Debug for ResponseFuture<S, B, ResB>
where
    S: Service<Request<B>>,
    ResB: Body,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// What the response futures of a service (and its clones) reach back to on their cold
/// paths: the layer's token slots and settings, and a spare clone of the inner service
/// to replay on. Each future holds an `Arc` of it, so a replay works however the service
/// was called, even when every clone of it is gone.
///
/// Aligned to (two) cache lines so that its reference count, written by every request
/// and every clone, does not share a line with the fields every request reads.
#[repr(align(128))]
pub(crate) struct Home<S> {
    pub(crate) slots: Arc<Slots>,
    core: Arc<Core>,
    /// Locked only to clone it, for a replay. A `Mutex` makes `Home` `Sync` for any
    /// `S: Send` (tower services often are not `Sync`).
    spare: Mutex<S>,
}

impl<S: Clone> Home<S> {
    pub(crate) fn new(slots: Arc<Slots>, core: Arc<Core>, inner: &S) -> Self {
        Self {
            slots,
            core,
            spare: Mutex::new(inner.clone()),
        }
    }

    /// A clone of the inner service, not yet polled ready.
    fn service(&self) -> S {
        lock(&self.spare).clone()
    }
}

impl<S> Home<S> {
    /// Keeps what a replay of `req` needs, if replay is on and its body can be replayed.
    #[inline]
    pub(crate) fn prepare_replay<B>(&self, req: &mut Request<B>) -> Option<Replay<B>>
    where
        B: Body<Data = Bytes> + Send + 'static,
    {
        let limit = self.core.config.replay_limit?;
        Replay::prepare(req, limit, &self.core.replayers)
    }

    fn classifier(&self) -> &Classifier {
        &self.core.classifier
    }

    /// The layer's DPoP key, if its tokens are bound to one.
    #[cfg(feature = "jwt")]
    #[inline]
    pub(crate) fn dpop(&self) -> Option<&crate::jose::Dpop> {
        self.core.dpop.as_ref()
    }

    /// The slot a request's token came from (made again if a scope set computed per
    /// request was forgotten meanwhile).
    fn slot(&self, at: &At) -> Arc<Slot> {
        match (at, &*self.slots) {
            (At::Key(key), Slots::Dynamic(dynamic)) => dynamic.slot(key),
            (At::Fixed(index), slots) => slots
                .fixed(*index)
                .expect("a fixed index comes from the layer's own slots")
                .clone(),
            (At::Key(_), _) => unreachable!("a key is kept only for slots made per request"),
        }
    }
}

/// Where a request's token came from.
pub(crate) enum At {
    /// A slot of a fixed or by-method policy, by index.
    Fixed(usize),
    /// The tenant and scope set of a slot made per request: a scope set a
    /// [`ScopePolicy::from_fn`](crate::ScopePolicy::from_fn) gave, or a tenant's.
    Key(SlotKey),
}

/// What a request needs after its response: to classify it, and to replay it.
pub(crate) struct Ctx<S, B> {
    home: Arc<Home<S>>,
    at: At,
    generation: u64,
    replay: Option<Replay<B>>,
    /// The request's URI, when it carried a DPoP proof: a nonce in the answer is for its
    /// origin.
    #[cfg(feature = "jwt")]
    target: Option<http::Uri>,
}

impl<S, B> Ctx<S, B> {
    #[inline]
    pub(crate) fn new(
        home: Arc<Home<S>>,
        at: At,
        generation: u64,
        replay: Option<Replay<B>>,
    ) -> Self {
        Self {
            home,
            at,
            generation,
            replay,
            #[cfg(feature = "jwt")]
            target: None,
        }
    }

    /// Adds a DPoP proof to `req` if the layer has a key and the request a DPoP token,
    /// and remembers where it went.
    #[cfg(feature = "jwt")]
    pub(crate) fn prove<T>(&mut self, req: &mut Request<T>) -> Result<(), crate::Error> {
        if let Some(dpop) = self.home.dpop() {
            crate::dpop::prove(dpop, req)?;
            self.target = Some(req.uri().clone());
        }
        Ok(())
    }
}

impl<S, B, ResB> ResponseFuture<S, B, ResB>
where
    S: Service<Request<B>>,
    ResB: Body,
{
    #[inline]
    pub(crate) fn passthrough(fut: S::Future) -> Self {
        Self {
            state: State::Passthrough { fut },
        }
    }

    #[inline]
    pub(crate) fn called(fut: S::Future, ctx: Ctx<S, B>) -> Self {
        Self {
            state: State::Called {
                fut,
                ctx: Some(ctx),
            },
        }
    }

    pub(crate) fn slow<F>(fut: F) -> Self
    where
        F: Future<Output = Output<ResB>> + Send + 'static,
    {
        Self {
            state: State::Slow { fut: Box::pin(fut) },
        }
    }
}

impl<S, B, ResB> Future for ResponseFuture<S, B, ResB>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Send,
{
    type Output = Output<ResB>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Passthrough { fut } => {
                    let res = ready!(fut.poll(cx)).map_err(Into::into)?;
                    return Poll::Ready(Ok(res.map(ResponseBody::inner)));
                }
                StateProj::Called { fut, ctx } => {
                    let res = match ready!(fut.poll(cx)) {
                        Ok(res) => res,
                        Err(e) => {
                            *ctx = None;
                            return Poll::Ready(Err(e.into()));
                        }
                    };
                    let kept = ctx.as_ref().expect("polled after completion");
                    #[cfg(feature = "jwt")]
                    if let (Some(dpop), Some(target)) = (kept.home.dpop(), &kept.target) {
                        if crate::dpop::nonce_challenge(dpop, target, res.status(), res.headers()) {
                            let ctx = ctx.take().expect("polled after completion");
                            this.state.set(State::Slow {
                                fut: Box::pin(meet_nonce::<S, B, ResB>(res, ctx)),
                            });
                            continue;
                        }
                    }
                    let decision = kept
                        .home
                        .classifier()
                        .classify_head(res.status(), res.headers());
                    if decision == Classification::NotRejected {
                        // The request's copy is not kept for as long as the caller keeps
                        // this future.
                        *ctx = None;
                        return Poll::Ready(Ok(res.map(ResponseBody::inner)));
                    }
                    let ctx = ctx.take().expect("polled after completion");
                    this.state.set(State::Slow {
                        fut: Box::pin(recover::<S, B, ResB>(res, ctx, decision)),
                    });
                }
                StateProj::Slow { fut } => return fut.as_mut().poll(cx),
            }
        }
    }
}

/// The request found no usable token: wait for one, then send.
pub(crate) async fn call_after_token<S, B, ResB>(
    mut ctx: Ctx<S, B>,
    mut inner: S,
    mut req: Request<B>,
) -> Output<ResB>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Send,
{
    // `inner` is the instance the caller polled ready, holding what that reserved (see
    // `OAuth::call_cold`). The token endpoint must not need it: a fetcher over a client
    // that shares a concurrency limit or buffer with this service needs capacity of its
    // own.
    let cred = ctx.home.slot(&ctx.at).acquire().await?;
    ctx.generation = cred.generation;
    req.headers_mut().insert(AUTHORIZATION, cred.header);
    #[cfg(feature = "jwt")]
    ctx.prove(&mut req)?;
    ctx.replay = ctx.home.prepare_replay(&mut req);
    // From here on it is the hot path's future.
    ResponseFuture::<S, B, ResB>::called(inner.call(req), ctx).await
}

/// The response may say the token was rejected: find out, renew the token, replay once.
async fn recover<S, B, ResB>(
    res: Response<ResB>,
    ctx: Ctx<S, B>,
    decision: Classification,
) -> Output<ResB>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Send,
{
    let home = ctx.home;
    let (res, rejected) = match decision {
        Classification::Rejected => (res.map(ResponseBody::inner), true),
        _ => {
            home.classifier()
                .inspect(res, home.core.config.inspect_limit)
                .await
        }
    };
    if !rejected {
        return Ok(res);
    }
    let slot = home.slot(&ctx.at);
    if !slot.reject(ctx.generation) {
        return Ok(res);
    }
    let Some(mut req) = ctx.replay.and_then(Replay::into_request) else {
        // Not replayable (replay off, a body past the limit, or a head that does not
        // parse back): the token is still renewed, and the caller gets the 401 as it came.
        tracing::debug!("rejected request cannot be replayed; returning the response");
        let _ = slot.renew_in_background(FetchReason::Rejected);
        return Ok(res);
    };
    drop(res);
    let cred = slot.acquire().await?;
    tracing::info!(
        scope = slot.scope().map(|s| s.as_str()).unwrap_or(""),
        "token rejected by the api; replaying the request with a new token"
    );
    // Replayed once, on a fresh clone of the service: whatever this answers goes to the
    // caller.
    req.headers_mut().insert(AUTHORIZATION, cred.header);
    #[cfg(feature = "jwt")]
    if let Some(dpop) = home.dpop() {
        crate::dpop::prove(dpop, &mut req)?;
    }
    crate::metrics::replay(home.core.name.as_deref());
    let res = home.service().oneshot(req).await.map_err(Into::into)?;
    Ok(res.map(ResponseBody::inner))
}

/// The API asked for a DPoP nonce (which [`crate::dpop::nonce_challenge`] kept): replay
/// once, with the same token and a proof with the nonce.
#[cfg(feature = "jwt")]
async fn meet_nonce<S, B, ResB>(res: Response<ResB>, ctx: Ctx<S, B>) -> Output<ResB>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Send,
{
    let home = ctx.home;
    let Some(mut req) = ctx.replay.and_then(Replay::into_request) else {
        tracing::debug!("api asked for a DPoP nonce; the request cannot be replayed");
        return Ok(res.map(ResponseBody::inner));
    };
    drop(res);
    let cred = home.slot(&ctx.at).acquire().await?;
    req.headers_mut().insert(AUTHORIZATION, cred.header);
    let dpop = home
        .dpop()
        .expect("a nonce challenge is met only with a DPoP key");
    crate::dpop::prove(dpop, &mut req)?;
    tracing::debug!("api asked for a DPoP nonce; replaying the request with it");
    crate::metrics::replay(home.core.name.as_deref());
    let uri = req.uri().clone();
    let res = home.service().oneshot(req).await.map_err(Into::into)?;
    // A nonce on the answer is kept for the next proofs; a second challenge goes to the
    // caller.
    crate::dpop::nonce_challenge(dpop, &uri, res.status(), res.headers());
    Ok(res.map(ResponseBody::inner))
}
