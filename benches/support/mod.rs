//! What the benchmarks share: the inner service, the requests, the baselines the layer is
//! measured against, and one way of sending a request that every variant goes through.
#![allow(dead_code, unreachable_pub)]

use std::{
    convert::Infallible,
    fmt,
    future::{ready, Future, Ready},
    mem,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{
    future::{Either, ErrInto},
    FutureExt, TryFutureExt,
};
use http::{
    header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE},
    HeaderValue, Request, Response, StatusCode,
};
use http_body_util::Full;
use tower::{service_fn, Service};
use tower_oauth::{BoxError, OAuthLayer, Token, TokenRequest};

/// The access token every variant sends (a JWT-sized string, as real ones are).
pub const TOKEN: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJiZW5jaC1jbGllbnQiLCJzY29wZSI6InJlYWQgd3JpdGUiLCJleHAiOjQxMDI0NDQ4MDB9.c2lnbmF0dXJlLW9mLXRoZS1iZW5jaG1hcmstdG9rZW4";

const URL: &str = "https://api.simpledocs.example/v1/documents/42?fields=title,owner";

/// The inner service: answers at once with `status` and an empty body, without
/// allocating.
#[derive(Debug, Clone, Copy)]
pub struct Answer(pub StatusCode);

impl<B> Service<Request<B>> for Answer {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        drop(req);
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = self.0;
        ready(Ok(res))
    }
}

/// A GET whose parts are all `'static` (nothing to copy): the layer's own cost.
pub fn static_request() -> Request<Full<Bytes>> {
    Request::get(URL)
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A POST as applications build it: header values and a JSON body made at runtime.
pub fn runtime_request() -> Request<Full<Bytes>> {
    let body = format!(r#"{{"title":"{}","owner":{}}}"#, "quarterly report", 7).into_bytes();
    Request::post(URL)
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/json")
        .header("x-request-id", "5f0c7d3e-1b2a-4c55-9e0f")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Sends one request to a service whose inner service answers at once: `poll_ready`,
/// `call`, and one poll of the response future. Every variant is measured through this.
#[inline]
pub fn send_now<S, B>(svc: &mut S, req: Request<B>) -> S::Response
where
    S: Service<Request<B>>,
    S::Error: fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => panic!("not ready: {e:?}"),
        Poll::Pending => panic!("the inner service is always ready"),
    }
    svc.call(req)
        .now_or_never()
        .expect("a cache hit answers at once")
        .expect("the request succeeds")
}

/// `Bearer <TOKEN>`, built once and marked sensitive, as the baselines keep it.
pub fn bearer() -> HeaderValue {
    let mut value = HeaderValue::try_from(format!("Bearer {TOKEN}")).unwrap();
    value.set_sensitive(true);
    value
}

/// A token as a hand-written cache keeps it.
#[derive(Debug, Clone)]
pub struct CachedToken {
    header: HeaderValue,
    expires_at: Instant,
}

impl CachedToken {
    /// A token valid for an hour.
    pub fn fresh() -> Self {
        Self {
            header: bearer(),
            expires_at: Instant::now() + Duration::from_secs(3600),
        }
    }

    fn usable(&self) -> bool {
        Instant::now() < self.expires_at
    }
}

fn no_token() -> BoxError {
    // A real cache would fetch here; that path is cold and not what is measured.
    "no usable token cached".into()
}

/// Baseline: a token cache behind `Arc<std::sync::Mutex<Option<_>>>`, locked on every
/// request to check the token and clone its header.
#[derive(Debug, Clone)]
pub struct MutexCache<S> {
    inner: S,
    token: Arc<Mutex<Option<CachedToken>>>,
}

impl<S> MutexCache<S> {
    pub fn new(inner: S, token: CachedToken) -> Self {
        Self {
            inner,
            token: Arc::new(Mutex::new(Some(token))),
        }
    }
}

impl<S, B> Service<Request<B>> for MutexCache<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Either<ErrInto<S::Future, BoxError>, Ready<Result<S::Response, BoxError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let header = {
            let token = self.token.lock().unwrap();
            token
                .as_ref()
                .filter(|t| t.usable())
                .map(|t| t.header.clone())
        };
        match header {
            Some(header) => {
                req.headers_mut().insert(AUTHORIZATION, header);
                Either::Left(self.inner.call(req).err_into())
            }
            None => Either::Right(ready(Err(no_token()))),
        }
    }
}

/// Context for the layer's default (not a target's baseline): the `Mutex` cache doing
/// what the layer does with replay on. It keeps a copy of each request, cloned as
/// hand-written code clones an `http::Request` (which is not `Clone`): part by part, the
/// header map and the extensions whole. Its response future looks at the status; on a
/// 401 a real cache would renew the token and send the copy (cold, never reached here),
/// otherwise the copy is dropped.
#[derive(Debug, Clone)]
pub struct MutexCacheReplay<S>(MutexCache<S>);

impl<S> MutexCacheReplay<S> {
    pub fn new(inner: S, token: CachedToken) -> Self {
        Self(MutexCache::new(inner, token))
    }
}

/// A request cloned part by part.
fn clone_request<B: Clone>(req: &Request<B>) -> Request<B> {
    let mut copy = Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    copy
}

impl<S, B, ResB> Service<Request<B>> for MutexCacheReplay<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    B: Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = KeepCopy<<MutexCache<S> as Service<Request<B>>>::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let copy = clone_request(&req);
        KeepCopy {
            fut: self.0.call(req),
            copy: Some(copy),
        }
    }
}

pin_project_lite::pin_project! {
    /// [`MutexCacheReplay`]'s response future: the inner one, and the request's copy.
    pub struct KeepCopy<F, B> {
        #[pin]
        fut: F,
        copy: Option<Request<B>>,
    }
}

impl<F, B, ResB> Future for KeepCopy<F, B>
where
    F: Future<Output = Result<Response<ResB>, BoxError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let res = std::task::ready!(this.fut.poll(cx))?;
        if res.status() != StatusCode::UNAUTHORIZED {
            *this.copy = None;
        }
        Poll::Ready(Ok(res))
    }
}

/// Baseline: a token cache behind `Arc<tokio::sync::RwLock<Option<_>>>`, read-locked
/// on every request. An async lock can only be taken in the response future, so that
/// future is an `async` block, boxed, owning a clone of the inner service.
#[derive(Debug, Clone)]
pub struct RwLockCache<S> {
    inner: S,
    token: Arc<tokio::sync::RwLock<Option<CachedToken>>>,
}

impl<S> RwLockCache<S> {
    pub fn new(inner: S, token: CachedToken) -> Self {
        Self {
            inner,
            token: Arc::new(tokio::sync::RwLock::new(Some(token))),
        }
    }
}

impl<S, B> Service<Request<B>> for RwLockCache<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let token = self.token.clone();
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let header = {
                let token = token.read().await;
                match token.as_ref().filter(|t| t.usable()) {
                    Some(t) => t.header.clone(),
                    None => return Err(no_token()),
                }
            };
            req.headers_mut().insert(AUTHORIZATION, header);
            inner.call(req).await.map_err(Into::into)
        })
    }
}

/// An `OAuthLayer` (with or without replay) whose token (valid for an hour) is already
/// fetched. Call it inside
/// the runtime that will stay alive while the layer is used: the token's renewal timers
/// live there.
pub async fn warmed_layer(replay: bool) -> OAuthLayer {
    let fetcher = service_fn(|_: TokenRequest| async {
        Ok::<_, BoxError>(Token::new(TOKEN, Some(Duration::from_secs(3600))))
    });
    let layer = OAuthLayer::with_fetcher(fetcher).replay(replay).build();
    layer.handle().warm_up().await.expect("warm-up");
    layer
}

/// The `q`-quantile of sorted samples.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    assert!(!sorted.is_empty(), "no samples");
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// The time each variant of a bench took per iteration, added up over every run criterion
/// makes of it (its warm-up included), to print each one's ratio to a baseline measured in
/// the same process.
#[derive(Debug, Clone, Default)]
pub struct Tally(Arc<Mutex<Vec<(String, Duration, u64)>>>);

impl Tally {
    /// Counts `iters` iterations of `name` that took `elapsed`, and returns `elapsed`
    /// (what an `iter_custom` routine returns).
    pub fn add(&self, name: &str, elapsed: Duration, iters: u64) -> Duration {
        let mut all = self.0.lock().unwrap();
        match all.iter_mut().find(|(n, ..)| n == name) {
            Some((_, total, count)) => {
                *total += elapsed;
                *count += iters;
            }
            None => all.push((name.to_owned(), elapsed, iters)),
        }
        elapsed
    }

    /// The mean time of one iteration of `name`, in nanoseconds.
    pub fn mean_ns(&self, name: &str) -> Option<f64> {
        let all = self.0.lock().unwrap();
        let (_, total, count) = all.iter().find(|(n, ..)| n == name)?;
        (*count > 0).then(|| total.as_nanos() as f64 / *count as f64)
    }

    /// Prints, under `title`, each of `names` with its mean time and its ratio to `base`.
    pub fn print_ratios(&self, title: &str, base: &str, names: &[&str]) {
        println!("\n{title} (mean over all runs, warm-up included; ratio to {base}):");
        let Some(floor) = self.mean_ns(base) else {
            println!("  {base} was not measured");
            return;
        };
        for name in names {
            match self.mean_ns(name) {
                Some(ns) => println!("  {name:<40} {:>12.0} ns  {:>6.2}x", ns, ns / floor),
                None => println!("  {name:<40} not measured"),
            }
        }
    }
}
