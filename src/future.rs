//! The response future, and the cold paths it reaches: waiting for a token, reading a
//! 401 to classify it, and replaying a rejected request.

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use bytes::{Buf, Bytes};
use http::{
    header::AUTHORIZATION, Extensions, HeaderName, HeaderValue, Method, Request, Response, Uri,
    Version,
};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use smallvec::SmallVec;
use tower::ServiceExt;
use tower_service::Service;

use crate::{
    body::{ReplayableBody, ResponseBody},
    cache::Slot,
    classify::Classification,
    error::BoxError,
    token::FetchReason,
};

type Output<ResB> = Result<Response<ResponseBody<ResB>>, BoxError>;
type BoxFuture<ResB> = Pin<Box<dyn Future<Output = Output<ResB>> + Send>>;

pin_project! {
    /// The response future of [`OAuth`](crate::OAuth).
    pub struct ResponseFuture<S, B, ResB>
    where
        S: Service<Request<B>>,
        B: ReplayableBody,
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
        B: ReplayableBody,
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
    B: ReplayableBody,
    ResB: Body,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// What a request needs after its response: to classify it, and to replay it.
pub(crate) struct Ctx<S, B: ReplayableBody> {
    pub(crate) slot: Arc<Slot>,
    pub(crate) generation: u64,
    pub(crate) inner: S,
    pub(crate) replay: Option<Replay<B>>,
}

/// A copy of the request, kept to send it again.
pub(crate) struct Replay<B: ReplayableBody> {
    head: Head,
    body: B::Replay,
}

/// The request head without its `Authorization`. Up to four other headers stay inline,
/// so the copy allocates nothing of its own (a larger set spills to the heap); inline
/// space is paid for in every move of the response future, hence not more.
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: SmallVec<[(HeaderName, HeaderValue); 4]>,
    extensions: Extensions,
}

impl Head {
    fn copy<B>(req: &Request<B>) -> Self {
        Self {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: {
                let mut headers = SmallVec::new();
                for (name, value) in req.headers() {
                    if name != AUTHORIZATION {
                        headers.push((name.clone(), value.clone()));
                    }
                }
                headers
            },
            extensions: req.extensions().clone(),
        }
    }

    fn into_request<B>(self, body: B, authorization: HeaderValue) -> Request<B> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.extensions_mut() = self.extensions;
        let headers = req.headers_mut();
        headers.reserve(self.headers.len() + 1);
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        headers.insert(AUTHORIZATION, authorization);
        req
    }
}

/// Prepares a request that will carry a token for a possible replay: the body is made
/// replayable in place, and the head copied. `None` when it cannot be replayed (or replay
/// is off).
pub(crate) fn replay_copy<B: ReplayableBody>(
    req: &mut Request<B>,
    replay_limit: Option<usize>,
) -> Option<Replay<B>> {
    let body = req.body_mut().prepare(replay_limit?)?;
    Some(Replay {
        head: Head::copy(req),
        body,
    })
}

impl<S, B, ResB> ResponseFuture<S, B, ResB>
where
    S: Service<Request<B>>,
    B: ReplayableBody,
    ResB: Body,
{
    pub(crate) fn passthrough(fut: S::Future) -> Self {
        Self {
            state: State::Passthrough { fut },
        }
    }

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
    S: Service<Request<B>, Response = Response<ResB>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: ReplayableBody + Send + 'static,
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
                    let res = ready!(fut.poll(cx)).map_err(Into::into)?;
                    let classifier = &ctx
                        .as_ref()
                        .expect("polled after completion")
                        .slot
                        .core
                        .classifier;
                    let decision = classifier.classify_head(res.status(), res.headers());
                    if decision == Classification::NotRejected {
                        return Poll::Ready(Ok(res.map(ResponseBody::inner)));
                    }
                    let ctx = ctx.take().expect("polled after completion");
                    this.state.set(State::Slow {
                        fut: Box::pin(recover(res, ctx, decision)),
                    });
                }
                StateProj::Slow { fut } => return fut.as_mut().poll(cx),
            }
        }
    }
}

/// The request found no usable token: wait for one, then send.
pub(crate) async fn call_after_token<S, B, ResB>(
    slot: Arc<Slot>,
    mut inner: S,
    mut req: Request<B>,
) -> Output<ResB>
where
    S: Service<Request<B>, Response = Response<ResB>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: ReplayableBody + Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Send,
{
    let cred = slot.clone().acquire().await?;
    req.headers_mut().insert(AUTHORIZATION, cred.header);
    let replay = replay_copy(&mut req, slot.core.config.replay_limit);
    // `inner` was polled ready by `OAuth::poll_ready`; waiting does not undo that. From
    // here on it is the hot path's future.
    let fut = inner.call(req);
    let ctx = Ctx {
        slot,
        generation: cred.generation,
        inner,
        replay,
    };
    ResponseFuture::called(fut, ctx).await
}

/// The response may say the token was rejected: find out, renew the token, replay once.
async fn recover<S, B, ResB>(
    res: Response<ResB>,
    ctx: Ctx<S, B>,
    decision: Classification,
) -> Output<ResB>
where
    S: Service<Request<B>, Response = Response<ResB>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: ReplayableBody + Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Send,
{
    let (res, rejected) = match decision {
        Classification::Rejected => (res.map(ResponseBody::inner), true),
        _ => inspect(res, &ctx.slot).await,
    };
    if !rejected {
        return Ok(res);
    }
    let Ctx {
        slot,
        generation,
        mut inner,
        replay,
    } = ctx;
    if !slot.reject(generation) {
        return Ok(res);
    }
    let replay = replay.and_then(|r| B::replay(r.body).map(|body| (r.head, body)));
    let Some((head, body)) = replay else {
        // Not replayable: the token is still renewed, and the caller gets the 401 as it came.
        tracing::debug!("rejected request body is not replayable; returning the response");
        let _ = slot.renew_in_background(FetchReason::Rejected);
        return Ok(res);
    };
    drop(res);
    let cred = slot.clone().acquire().await?;
    tracing::info!(
        scope = slot.scope().map(|s| s.as_str()).unwrap_or(""),
        "token rejected by the api; replaying the request with a new token"
    );
    let req = head.into_request(body, cred.header);
    // Replayed once: whatever this answers goes to the caller.
    let res = inner
        .ready()
        .await
        .map_err(Into::into)?
        .call(req)
        .await
        .map_err(Into::into)?;
    Ok(res.map(ResponseBody::inner))
}

/// Reads the start of a response body (at most the inspection limit) and asks the
/// classifier about it. The caller still gets every byte: the start, then the rest.
async fn inspect<ResB>(res: Response<ResB>, slot: &Slot) -> (Response<ResponseBody<ResB>>, bool)
where
    ResB: Body + Send + 'static,
    ResB::Data: Send,
{
    let limit = slot.core.config.inspect_limit;
    let (parts, body) = res.into_parts();
    if body.size_hint().lower() > limit as u64 {
        return (
            Response::from_parts(parts, ResponseBody::inner(body)),
            false,
        );
    }
    let mut body = Box::pin(body);
    let mut frames: VecDeque<Frame<Bytes>> = VecDeque::new();
    let mut len = 0usize;
    let mut ended = false;
    let mut error = None;
    while len <= limit {
        match body.frame().await {
            None => {
                ended = true;
                break;
            }
            Some(Err(e)) => {
                error = Some(e);
                break;
            }
            Some(Ok(frame)) => {
                let frame = frame.map_data(|mut d| d.copy_to_bytes(d.remaining()));
                if let Some(data) = frame.data_ref() {
                    len += data.len();
                }
                frames.push_back(frame);
            }
        }
    }
    let rejected = ended && error.is_none() && {
        let mut whole = Vec::with_capacity(len);
        for data in frames.iter().filter_map(Frame::data_ref) {
            whole.extend_from_slice(data);
        }
        slot.core
            .classifier
            .classify_body(parts.status, &parts.headers, &whole)
    };
    let rest = (!ended && error.is_none()).then_some(body);
    (
        Response::from_parts(parts, ResponseBody::prefixed(frames, rest, error)),
        rejected,
    )
}
