//! Transparent re-issue: a rejected token is renewed and the request replayed once,
//! buffered and streaming bodies alike, without losing a wakeup of the replayed stream.

mod common;

use std::{
    collections::HashSet,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use common::{body_of, get, send, Fetcher};
use futures_util::stream;
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use tokio::sync::Notify;
use tokio_stream::wrappers::ReceiverStream;
use tower::{Layer, Service};
use tower_oauth::{BoxError, OAuthLayer, OAuthLayerBuilder};

const SEC: Duration = Duration::from_secs(1);

/// How the fake API says "token rejected".
#[derive(Clone, Copy)]
enum Style {
    /// SimpleDocs: 401 + problem JSON `token_expired`.
    Problem,
    /// RFC 6750: 401 + `WWW-Authenticate: Bearer error="invalid_token"`.
    Challenge,
}

/// How much of the request body the fake API reads before answering a rejection.
#[derive(Clone, Copy)]
enum Read {
    All,
    /// Answer after the first frame, dropping the rest unread.
    FirstFrame,
    /// Answer without reading the body at all.
    Nothing,
}

/// A fake API: rejects revoked tokens, echoes accepted bodies, records what it saw.
#[derive(Clone)]
struct Api {
    revoked: Arc<Mutex<HashSet<String>>>,
    /// Reject every token, whatever it is.
    reject_all: bool,
    style: Style,
    read: Read,
    calls: Arc<AtomicUsize>,
    accepted: Arc<Mutex<Vec<(String, Bytes)>>>,
    /// Paths that take this long to answer.
    slow: Option<(&'static str, Duration)>,
}

impl Api {
    fn new(style: Style) -> Self {
        Self {
            revoked: Arc::default(),
            reject_all: false,
            style,
            read: Read::All,
            calls: Arc::default(),
            accepted: Arc::default(),
            slow: None,
        }
    }

    fn revoke(&self, token: &str) {
        self.revoked
            .lock()
            .unwrap()
            .insert(format!("Bearer {token}"));
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn accepted(&self) -> Vec<(String, Bytes)> {
        self.accepted.lock().unwrap().clone()
    }
}

fn rejection(style: Style) -> Response<Full<Bytes>> {
    let mut res = match style {
        Style::Problem => {
            let mut res = Response::new(Full::new(Bytes::from_static(
                br#"{"type":"token_expired","status":401,"title":"Token Expired","detail":"The access token has expired."}"#,
            )));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                "application/problem+json".parse().unwrap(),
            );
            res
        }
        Style::Challenge => {
            let mut res = Response::new(Full::new(Bytes::new()));
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                r#"Bearer realm="api", error="invalid_token""#.parse().unwrap(),
            );
            res
        }
    };
    *res.status_mut() = StatusCode::UNAUTHORIZED;
    res
}

impl<B> Service<Request<B>> for Api
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        Box::pin(async move {
            if let Some((path, delay)) = this.slow {
                if req.uri().path() == path {
                    tokio::time::sleep(delay).await;
                }
            }
            let auth = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let rejected = this.reject_all || this.revoked.lock().unwrap().contains(&auth);
            let mut body = req.into_body();
            if rejected {
                match this.read {
                    Read::All => while body.frame().await.is_some() {},
                    Read::FirstFrame => {
                        let _ = body.frame().await;
                    }
                    Read::Nothing => {}
                }
                return Ok(rejection(this.style));
            }
            let bytes = match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => Bytes::from_static(b"<body error>"),
            };
            this.accepted.lock().unwrap().push((auth, bytes.clone()));
            Ok(Response::new(Full::new(bytes)))
        })
    }
}

fn layer(fetcher: &Fetcher) -> OAuthLayer {
    OAuthLayer::with_fetcher(fetcher.clone()).build()
}

/// A streaming body of `n` chunks of `size` bytes, chunk `i` filled with byte `i`.
fn streaming(n: usize, size: usize) -> (BoxBody<Bytes, BoxError>, Bytes) {
    let chunks: Vec<Bytes> = (0..n).map(|i| Bytes::from(vec![i as u8; size])).collect();
    let whole: Bytes = chunks.concat().into();
    let frames = stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, BoxError>(Frame::data(c))),
    );
    (BoxBody::new(StreamBody::new(frames)), whole)
}

/// The next request goes through with the second token, fetched once.
async fn assert_the_token_was_renewed<S>(svc: &mut S, fetcher: &Fetcher, api: &Api)
where
    S: Service<
        Request<Full<Bytes>>,
        Response = Response<tower_oauth::body::ResponseBody<Full<Bytes>>>,
    >,
    S::Error: std::fmt::Debug,
{
    let res = send(svc, get("/x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(fetcher.calls(), 2);
    assert_eq!(api.accepted()[0].0, "Bearer tok-2");
}

async fn warm(fetcher: &Fetcher, layer: &OAuthLayer) {
    layer.handle().warm_up().await.unwrap();
    assert_eq!(fetcher.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_is_renewed_and_the_request_replayed() {
    for style in [Style::Problem, Style::Challenge] {
        let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
        let api = Api::new(style);
        let layer = layer(&fetcher);
        let mut svc = layer.layer(api.clone());
        warm(&fetcher, &layer).await;
        api.revoke("tok-1");

        let req = Request::post("/docs")
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        let res = send(&mut svc, req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(body_of(res).await, "payload");
        assert_eq!(fetcher.calls(), 2);
        assert_eq!(api.calls(), 2, "one rejection, one replay");
        assert_eq!(
            api.accepted(),
            [("Bearer tok-2".to_owned(), Bytes::from_static(b"payload"))]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn small_bodies_built_at_runtime_are_replayed_byte_for_byte() {
    // Bodies of up to 512 bytes that only the request holds are kept as a copy rather
    // than a clone: around that boundary, the replay must carry the very same bytes.
    for len in [1, 511, 512, 513] {
        let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
        let api = Api::new(Style::Problem);
        let layer = layer(&fetcher);
        let mut svc = layer.layer(api.clone());
        warm(&fetcher, &layer).await;
        api.revoke("tok-1");

        let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let req = Request::post("/docs")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let res = send(&mut svc, req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{len} bytes");
        assert_eq!(body_of(res).await, body, "{len} bytes");
        assert_eq!(api.calls(), 2, "one rejection, one replay");
        assert_eq!(
            api.accepted(),
            [("Bearer tok-2".to_owned(), Bytes::from(body))]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_rejections_of_one_token_cause_one_fetch() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::from_millis(20));
    let mut api = Api::new(Style::Problem);
    // Every request leaves with tok-1 before the first rejection comes back.
    api.slow = Some(("/x", SEC));
    let layer = layer(&fetcher);
    let svc = layer.layer(api.clone());
    warm(&fetcher, &layer).await;
    api.revoke("tok-1");

    let calls = (0..200).map(|_| {
        let mut svc = svc.clone();
        tokio::spawn(async move { send(&mut svc, get("/x")).await })
    });
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(fetcher.calls(), 2, "one initial fetch, one re-issue");
    assert_eq!(api.calls(), 400);
    assert!(api
        .accepted()
        .iter()
        .all(|(auth, _)| auth == "Bearer tok-2"));
}

#[tokio::test(start_paused = true)]
async fn a_request_is_replayed_at_most_once() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let mut api = Api::new(Style::Problem);
    api.reject_all = true;
    let layer = layer(&fetcher);
    let mut svc = layer.layer(api.clone());

    let res = send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(body_of(res)
        .await
        .starts_with(br#"{"type":"token_expired""#));
    assert_eq!(api.calls(), 2, "the original and one replay, no loop");
    assert_eq!(
        fetcher.calls(),
        2,
        "the re-issued token is not fetched again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_rejected_after_another_replaced_the_token_uses_the_newer_one() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let mut api = Api::new(Style::Problem);
    api.slow = Some(("/slow", 10 * SEC));
    let layer = layer(&fetcher);
    let svc = layer.layer(api.clone());
    warm(&fetcher, &layer).await;

    // The slow request leaves with tok-1 ...
    let mut slow = svc.clone();
    let slow = tokio::spawn(async move { send(&mut slow, get("/slow")).await });
    tokio::time::sleep(SEC).await;
    // ... tok-1 is revoked, and a fast request gets it replaced by tok-2 ...
    api.revoke("tok-1");
    let mut fast = svc.clone();
    assert_eq!(
        send(&mut fast, get("/fast")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(fetcher.calls(), 2);
    // ... so the slow one's rejection is replayed with tok-2, without another fetch.
    let res = slow.await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(fetcher.calls(), 2);
    assert!(api
        .accepted()
        .iter()
        .all(|(auth, _)| auth == "Bearer tok-2"));
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_under_the_limit_is_replayed_byte_for_byte() {
    for read in [Read::All, Read::FirstFrame, Read::Nothing] {
        let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
        let mut api = Api::new(Style::Problem);
        api.read = read;
        let layer = layer(&fetcher);
        let mut svc = layer.layer(api.clone());
        warm(&fetcher, &layer).await;
        api.revoke("tok-1");

        let (body, whole) = streaming(16, 1000);
        let res = send(&mut svc, Request::post("/docs").body(body).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(body_of(res).await, whole);
        assert_eq!(api.accepted(), [("Bearer tok-2".to_owned(), whole)]);
        assert_eq!(fetcher.calls(), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_over_the_limit_returns_the_original_rejection_and_still_renews() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let api = Api::new(Style::Problem);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .replay_limit(4 * 1024)
        .build();
    let mut svc = layer.layer(api.clone());
    warm(&fetcher, &layer).await;
    api.revoke("tok-1");

    let (body, _) = streaming(8, 1024);
    let res = send(&mut svc, Request::post("/docs").body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        body_of(res).await,
        body_of(rejection(Style::Problem)).await,
        "the caller gets the 401 untouched"
    );
    assert_eq!(api.calls(), 1, "not replayed");

    // The token was renewed all the same.
    assert_the_token_was_renewed(&mut svc, &fetcher, &api).await;
}

#[tokio::test(start_paused = true)]
async fn a_body_whose_size_hint_exceeds_the_limit_is_not_replayed() {
    // Turning replay off and on again keeps the limit.
    let limits: [fn(OAuthLayerBuilder) -> OAuthLayerBuilder; 2] = [
        |b| b.replay_limit(1024),
        |b| b.replay_limit(1024).replay(false).replay(true),
    ];
    for limit in limits {
        let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
        let api = Api::new(Style::Problem);
        let layer = limit(OAuthLayer::with_fetcher(fetcher.clone())).build();
        let mut svc = layer.layer(api.clone());
        warm(&fetcher, &layer).await;
        api.revoke("tok-1");

        let body = BoxBody::new(
            Full::new(Bytes::from(vec![7u8; 2048])).map_err(|e| -> BoxError { match e {} }),
        );
        let res = send(&mut svc, Request::post("/docs").body(body).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(api.calls(), 1);
        common::advance(Duration::ZERO).await;
        assert_eq!(fetcher.calls(), 2, "renewed, not replayed");
    }
}

/// Bytes whose owner says when it is dropped, to tell whether anything still holds them.
struct Tracked {
    bytes: Vec<u8>,
    dropped: Arc<AtomicBool>,
}

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_still_sending_after_its_response_came_keeps_no_copy_of_what_it_sent() {
    // A long upload or a gRPC stream: the API answers after the first frame and goes on
    // reading the body for as long as it lasts. No replay is possible once the answer is
    // in, so the layer must not keep the frames already sent.
    type Boxed = BoxBody<Bytes, BoxError>;
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let held: Arc<Mutex<Option<Boxed>>> = Arc::default();
    let api = {
        let held = held.clone();
        tower::service_fn(move |req: Request<Boxed>| {
            let held = held.clone();
            async move {
                let mut body = req.into_body();
                let first = body.frame().await.unwrap()?.into_data().unwrap();
                assert_eq!(first.len(), 1000);
                *held.lock().unwrap() = Some(body);
                Ok::<_, BoxError>(Response::new(Full::new(Bytes::new())))
            }
        })
    };
    let layer = layer(&fetcher);
    let mut svc = layer.layer(api);
    warm(&fetcher, &layer).await;

    let dropped = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    let tracked = Bytes::from_owner(Tracked {
        bytes: vec![1; 1000],
        dropped: dropped.clone(),
    });
    tx.send(Ok(Frame::data(tracked))).await.unwrap();
    let body = BoxBody::new(StreamBody::new(ReceiverStream::new(rx)));
    let res = send(&mut svc, Request::post("/upload").body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        held.lock().unwrap().is_some(),
        "the API still reads the body"
    );
    assert!(
        dropped.load(Ordering::SeqCst),
        "the frame sent is not kept once the response came"
    );

    // The body goes on as before.
    tx.send(Ok(Frame::data(Bytes::from_static(b"more"))))
        .await
        .unwrap();
    drop(tx);
    let body = held.lock().unwrap().take().unwrap();
    assert_eq!(body.collect().await.unwrap().to_bytes(), "more");
}

// A replayed streaming body shares its source with the abandoned first attempt's body.
// When that body was the last to poll the source, the replay must still be woken for the
// next frame, whether the first body is then dropped or kept without being polled again:
// a lost wakeup would hang the replay.

/// What the holder of the first attempt's body does after its last poll.
#[derive(Clone, Copy)]
enum Then {
    /// Drops the body.
    Drop,
    /// Keeps the body without polling it until `release` is notified, like an HTTP/2
    /// stream waiting for window or an HTTP/1 connection with a full write buffer.
    Park,
}

/// An inner service whose first attempt reads one frame, answers 401 `invalid_token`
/// and hands its body to a task that polls it once more after the replay is waiting on
/// the shared source (as hyper's h2 pipe task does), then drops or keeps it; the replay
/// answers the number of bytes it read.
#[derive(Clone)]
struct PollsTheAbandonedBody {
    calls: Arc<AtomicUsize>,
    replay_waiting: Arc<Notify>,
    then: Then,
    release: Arc<Notify>,
    first_dropped: Arc<AtomicBool>,
}

impl Service<Request<BoxBody<Bytes, BoxError>>> for PollsTheAbandonedBody {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<BoxBody<Bytes, BoxError>>) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        Box::pin(async move {
            let mut body = req.into_body();
            if n == 0 {
                // First attempt: read frame 1, answer 401 invalid_token, but keep the body
                // alive in another task that polls it once more after the replay is
                // waiting on the source, then drops or keeps it.
                body.frame().await.unwrap().unwrap();
                tokio::spawn(async move {
                    this.replay_waiting.notified().await;
                    std::future::poll_fn(|cx| {
                        Poll::Ready(
                            http_body::Body::poll_frame(Pin::new(&mut body), cx).is_pending(),
                        )
                    })
                    .await;
                    if let Then::Park = this.then {
                        this.release.notified().await;
                    }
                    drop(body);
                    this.first_dropped.store(true, Ordering::SeqCst);
                });
                let mut res = Response::new(Full::new(Bytes::new()));
                *res.status_mut() = StatusCode::UNAUTHORIZED;
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    r#"Bearer error="invalid_token""#.parse().unwrap(),
                );
                Ok(res)
            } else {
                // Replay: read frame 1 (recorded), then wait on the source for frame 2.
                let f = body.frame().await.unwrap().unwrap();
                this.replay_waiting.notify_one();
                let mut total = f.data_ref().unwrap().len();
                while let Some(f) = body.frame().await {
                    total += f.unwrap().data_ref().map_or(0, |d| d.len());
                }
                Ok(Response::new(Full::new(Bytes::from(total.to_string()))))
            }
        })
    }
}

/// Sends a two-frame streaming request whose first attempt is rejected, the second
/// frame coming 200 ms after the first; returns the replay's answer (the byte count it
/// read) and whether the first attempt's body had been dropped by then.
async fn replay_with_first_body_then(then: Then) -> (String, bool) {
    let fetcher = Fetcher::tokens(Duration::from_secs(3600), Duration::ZERO);
    let inner = PollsTheAbandonedBody {
        calls: Arc::default(),
        replay_waiting: Arc::new(Notify::new()),
        then,
        release: Arc::new(Notify::new()),
        first_dropped: Arc::default(),
    };
    let release = inner.release.clone();
    let first_dropped = inner.first_dropped.clone();
    let mut svc = layer(&fetcher).layer(inner);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(8);
    let body = BoxBody::new(StreamBody::new(ReceiverStream::new(rx)));
    tx.send(Ok(Frame::data(Bytes::from_static(b"one"))))
        .await
        .unwrap();
    let call = tower::ServiceExt::<Request<BoxBody<Bytes, BoxError>>>::ready(&mut svc)
        .await
        .unwrap()
        .call(Request::post("/x").body(body).unwrap());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(Ok(Frame::data(Bytes::from_static(b"two"))))
            .await
            .unwrap();
    });
    let res = tokio::select! {
        biased;
        _ = tokio::time::sleep(Duration::from_secs(3)) => panic!("replay hung: lost wakeup"),
        r = call => r,
    };
    let body = body_of(res.unwrap()).await;
    let dropped = first_dropped.load(Ordering::SeqCst);
    release.notify_one();
    (String::from_utf8(body.to_vec()).unwrap(), dropped)
}

#[tokio::test]
async fn a_streaming_replay_is_woken_when_the_abandoned_first_body_polled_the_source_last() {
    let (read, _) = replay_with_first_body_then(Then::Drop).await;
    assert_eq!(read, "6");
}

#[tokio::test(start_paused = true)]
async fn a_streaming_replay_is_woken_while_the_first_body_that_polled_the_source_last_is_kept_unpolled(
) {
    let (read, first_dropped) = replay_with_first_body_then(Then::Park).await;
    assert_eq!(read, "6", "the replay read both frames");
    assert!(!first_dropped, "the first body was still kept");
}

/// An inner service that always answers the same response.
fn fixed(
    status: StatusCode,
    headers: &[(&'static str, &'static str)],
    body: &'static [u8],
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    let headers: Vec<(&'static str, &'static str)> = headers.to_vec();
    tower::service_fn(move |_req: Request<Full<Bytes>>| {
        let mut res = Response::new(Full::new(Bytes::from_static(body)));
        *res.status_mut() = status;
        for (k, v) in &headers {
            res.headers_mut().append(*k, v.parse().unwrap());
        }
        std::future::ready(Ok::<_, Infallible>(res))
    })
}

#[tokio::test(start_paused = true)]
async fn a_response_that_is_not_an_expiry_passes_through_byte_for_byte() {
    let big = Box::leak(
        format!(
            r#"{{"type":"token_expired","pad":"{}"}}"#,
            "x".repeat(10_000)
        )
        .into_boxed_str(),
    );
    type Case = (StatusCode, Vec<(&'static str, &'static str)>, &'static [u8]);
    let cases: Vec<Case> = vec![
        (
            StatusCode::UNAUTHORIZED,
            vec![
                ("content-type", "application/problem+json"),
                ("x-trace", "a"),
                ("x-trace", "b"),
            ],
            br#"{"type":"invalid_client","status":401,"title":"Invalid Client"}"#,
        ),
        (
            StatusCode::FORBIDDEN,
            vec![("content-type", "application/problem+json")],
            br#"{"type":"insufficient_scope","status":403}"#,
        ),
        (
            StatusCode::UNAUTHORIZED,
            vec![("content-type", "text/html")],
            b"<h1>token_expired</h1>",
        ),
        (
            StatusCode::UNAUTHORIZED,
            vec![("content-type", "application/json")],
            b"{not json",
        ),
        // Longer than the inspection limit: not classified, still delivered whole.
        (
            StatusCode::UNAUTHORIZED,
            vec![("content-type", "application/json")],
            big.as_bytes(),
        ),
        (StatusCode::NOT_FOUND, vec![], b"nope"),
    ];
    for (status, headers, body) in cases {
        let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
        let mut svc = layer(&fetcher).layer(fixed(status, &headers, body));
        let res = send(&mut svc, get("/x")).await.unwrap();
        assert_eq!(res.status(), status);
        let mut want = HeaderMap::new();
        for (k, v) in &headers {
            want.append(*k, v.parse().unwrap());
        }
        assert_eq!(res.headers(), &want);
        assert_eq!(body_of(res).await, Bytes::from_static(body));
        assert_eq!(fetcher.calls(), 1, "no re-issue for {status}");
    }
}

/// A 401 `application/json` `token_expired` document padded to `len` bytes: whole (a
/// `Full`, whose size hint is exact) or in 1 KiB frames (no size hint).
fn padded_rejection(len: usize, streamed: bool) -> (Response<BoxBody<Bytes, BoxError>>, Bytes) {
    let start = r#"{"type":"token_expired","pad":""#;
    let pad = len - start.len() - 2;
    let whole = Bytes::from(format!("{start}{}\"}}", "x".repeat(pad)));
    assert_eq!(whole.len(), len);
    let body = if streamed {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = whole
            .chunks(1024)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        BoxBody::new(StreamBody::new(stream::iter(frames)))
    } else {
        Full::new(whole.clone()).map_err(|e| match e {}).boxed()
    };
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::UNAUTHORIZED;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    (res, whole)
}

#[tokio::test(start_paused = true)]
async fn a_401_body_is_read_up_to_the_inspection_limit_and_no_further() {
    // The default `inspect_limit`.
    const LIMIT: usize = 4096;
    // (length, streamed, classified): a body of exactly the limit is read and found to be
    // a rejection; one the size hint puts past it is not read; a streamed one is read up
    // to the limit, not classified, and delivered whole.
    for (len, streamed, classified) in [
        (LIMIT, false, true),
        (LIMIT, true, true),
        (LIMIT + 1, false, false),
        (3 * LIMIT, true, false),
    ] {
        let case = format!("{len} bytes, streamed: {streamed}");
        let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let inner = tower::service_fn(move |_req: Request<Full<Bytes>>| {
            let res = match counted.fetch_add(1, Ordering::SeqCst) {
                0 => padded_rejection(len, streamed).0,
                _ => Response::new(
                    Full::new(Bytes::from_static(b"ok"))
                        .map_err(|e| match e {})
                        .boxed(),
                ),
            };
            std::future::ready(Ok::<_, Infallible>(res))
        });
        let mut svc = layer(&fetcher).layer(inner);
        let res = send(&mut svc, get("/x")).await.unwrap();
        if classified {
            assert_eq!(res.status(), StatusCode::OK, "{case}");
            assert_eq!(body_of(res).await, "ok", "{case}");
            assert_eq!(
                (fetcher.calls(), calls.load(Ordering::SeqCst)),
                (2, 2),
                "{case}"
            );
        } else {
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{case}");
            assert_eq!(
                body_of(res).await,
                padded_rejection(len, streamed).1,
                "{case}"
            );
            assert_eq!(
                (fetcher.calls(), calls.load(Ordering::SeqCst)),
                (1, 1),
                "{case}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_replay_that_cannot_get_a_token_returns_the_fetch_error() {
    use common::Step;
    let fetcher = Fetcher::script(vec![
        Step::Token {
            lifetime: Some(100 * SEC),
            delay: Duration::ZERO,
        },
        Step::Fail(
            tower_oauth_error(tower_oauth::ErrorKind::InvalidClient),
            Duration::ZERO,
        ),
    ]);
    let api = Api::new(Style::Problem);
    let layer = layer(&fetcher);
    let mut svc = layer.layer(api.clone());
    warm(&fetcher, &layer).await;
    api.revoke("tok-1");
    let err = send(&mut svc, get("/x")).await.unwrap_err();
    let err = err.downcast_ref::<tower_oauth::Error>().expect("our error");
    assert_eq!(err.kind(), tower_oauth::ErrorKind::InvalidClient);
}

/// An `invalid_client` error as the HTTP fetcher would produce it.
fn tower_oauth_error(kind: tower_oauth::ErrorKind) -> tower_oauth::Error {
    assert_eq!(kind, tower_oauth::ErrorKind::InvalidClient);
    tower_oauth::fetch::parse_token_response(
        StatusCode::UNAUTHORIZED,
        &HeaderMap::new(),
        br#"{"type":"invalid_client","status":401}"#,
    )
    .unwrap_err()
}

#[tokio::test(start_paused = true)]
async fn with_replay_off_a_rejection_reaches_the_caller_and_the_token_is_renewed() {
    // Setting the limit does not turn replay back on, before or after.
    let offs: [fn(OAuthLayerBuilder) -> OAuthLayerBuilder; 3] = [
        |b| b.replay(false),
        |b| b.replay(false).replay_limit(1024),
        |b| b.replay_limit(1024).replay(false),
    ];
    for off in offs {
        let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
        let api = Api::new(Style::Problem);
        let layer = off(OAuthLayer::with_fetcher(fetcher.clone())).build();
        let mut svc = layer.layer(api.clone());
        warm(&fetcher, &layer).await;
        api.revoke("tok-1");

        let res = send(&mut svc, get("/x")).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(api.calls(), 1, "not replayed");
        assert_the_token_was_renewed(&mut svc, &fetcher, &api).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_server_that_rejects_every_token_costs_one_reissue_per_interval() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let mut api = Api::new(Style::Problem);
    api.reject_all = true;
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .reissue_interval(2 * SEC)
        .build();
    let mut svc = layer.layer(api.clone());

    // tok-1 is rejected, tok-2 fetched and rejected too: the caller gets that 401.
    for _ in 0..5 {
        let res = send(&mut svc, get("/x")).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        fetcher.calls(),
        2,
        "tok-2 is not replaced within the interval"
    );
    assert_eq!(
        api.calls(),
        2 + 4,
        "the four later requests were not replayed"
    );

    common::advance(3 * SEC).await;
    let res = send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(fetcher.calls(), 3, "after the interval, one more re-issue");
}

#[tokio::test(start_paused = true)]
async fn a_rejection_after_every_clone_of_the_service_was_dropped_is_still_replayed() {
    use tower::ServiceExt;

    for keep_service in [true, false] {
        let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
        let mut api = Api::new(Style::Problem);
        api.slow = Some(("/slow", SEC));
        let layer = layer(&fetcher);
        let mut svc = layer.layer(api.clone());
        warm(&fetcher, &layer).await;
        api.revoke("tok-1");

        let ready = ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
            .await
            .unwrap();
        let pending = tokio::spawn(ready.call(get("/slow")));
        let kept = keep_service.then_some(svc);
        tokio::time::advance(2 * SEC).await;
        let res = pending.await.unwrap().unwrap();
        // The response future holds what a replay needs, whether or not any clone of the
        // service is left.
        assert_eq!(res.status(), StatusCode::OK, "replayed ({keep_service})");
        assert_eq!((api.calls(), fetcher.calls()), (2, 2));
        let sent: Vec<_> = api.accepted().into_iter().map(|(auth, _)| auth).collect();
        assert_eq!(sent, ["Bearer tok-2"]);
        drop(kept);
    }
}

#[tokio::test(start_paused = true)]
async fn a_layer_used_through_oneshot_replays_a_rejected_request() {
    use tower::ServiceExt;

    // The quick start's pattern: a service per request, called with `oneshot`, from one
    // layer kept for the application. The service is gone before its response comes.
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let api = Api::new(Style::Challenge);
    let layer = layer(&fetcher);
    warm(&fetcher, &layer).await;
    api.revoke("tok-1");

    let mut statuses = vec![];
    for _ in 0..3 {
        let svc = tower::ServiceBuilder::new()
            .layer(layer.clone())
            .service(api.clone());
        let res = svc.oneshot(get("/x")).await.unwrap();
        statuses.push(res.status());
        common::advance(Duration::ZERO).await;
    }
    // The first is rejected and replayed with the renewed token; the later ones carry it
    // from the start.
    assert_eq!(statuses, [StatusCode::OK; 3]);
    assert_eq!((fetcher.calls(), api.calls()), (2, 4));
    let sent: Vec<_> = api.accepted().into_iter().map(|(auth, _)| auth).collect();
    assert_eq!(sent, ["Bearer tok-2"; 3]);
}

#[tokio::test(start_paused = true)]
async fn a_token_fetched_while_its_predecessor_was_rejected_counts_as_a_reissue() {
    // The renewal ahead of expiry is under way when the api rejects the token it renews:
    // the token that renewal brings is the re-issue, held off like any other.
    let fetcher = Fetcher::tokens(100 * SEC, 2 * SEC);
    let mut api = Api::new(Style::Problem);
    api.reject_all = true;
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .renew_ahead(30 * SEC)
        .reissue_interval(10 * SEC)
        .build();
    let mut svc = layer.layer(api.clone());
    warm(&fetcher, &layer).await;
    common::advance(75 * SEC).await;

    // tok-1 is due for renewal: this request starts it, is rejected, and is replayed
    // with tok-2 from that renewal, which is rejected too.
    let res = send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!((fetcher.calls(), api.calls()), (2, 2));

    // tok-2 came because tok-1 was rejected: not replaced within the interval.
    let res = send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        (fetcher.calls(), api.calls()),
        (2, 3),
        "held off, not replayed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_completed_response_future_lets_go_of_the_request_copy() {
    // A caller that keeps the future after its response (as a `join!` of futures that
    // finish apart does) must not keep the request's copy alive with it.
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let api = Api::new(Style::Problem);
    let layer = layer(&fetcher);
    let mut svc = layer.layer(api.clone());
    warm(&fetcher, &layer).await;

    let marker = Arc::new(());
    let mut req = get("/x");
    req.extensions_mut().insert(marker.clone());
    std::future::poll_fn(|cx| Service::<Request<Full<Bytes>>>::poll_ready(&mut svc, cx))
        .await
        .unwrap();
    let mut fut = Box::pin(svc.call(req));
    let res = std::future::poll_fn(|cx| fut.as_mut().poll(cx))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        Arc::strong_count(&marker),
        1,
        "the request and its copy are gone while the future is kept"
    );
    drop(fut);
}
