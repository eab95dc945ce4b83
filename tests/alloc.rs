//! A request that finds a cached token allocates exactly what it would allocate without
//! the layer: the header value is cloned, not built, and the replay copy goes into
//! buffers reused per thread.
//! The exceptions are measured exactly, each against the one clone it costs: the replay
//! copy of the request's extensions (when it has any), of a header value over 128 bytes
//! and of a body over 512 bytes, each of the last two when built from a `Vec` at runtime.
//! `OAuthLayerBuilder::replay(false)` turns all three off. A request without any header also has its
//! header map allocated by the `Authorization` insert, as by any first header.
//!
//! A counting global allocator counts the allocations of the current thread only, so
//! tests running side by side (and tokio's worker threads) do not disturb each other.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    convert::Infallible,
    future::{ready, Future, Ready},
    pin::pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::Bytes;
use http::{
    header::{ACCEPT, CONTENT_TYPE},
    HeaderValue, Request, Response, StatusCode,
};
use http_body_util::{Empty, Full};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_oauth::{BoxError, OAuthLayer, Scope, ScopePolicy, Token, TokenRequest};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: the slot is gone while the thread tears down; those are not counted.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches
// only a const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// An inner service that answers at once, allocating nothing of its own.
#[derive(Clone, Copy)]
struct Answer(StatusCode);

impl<B> Service<Request<B>> for Answer {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        drop(req);
        let mut res = Response::new(Empty::new());
        *res.status_mut() = self.0;
        ready(Ok(res))
    }
}

/// The layer (as `configure` sets it up), with a token fetched and installed; the runtime
/// must outlive the test because the token's renewal timers live on it.
fn warmed_layer(
    rt: &tokio::runtime::Runtime,
    configure: impl FnOnce(tower_oauth::OAuthLayerBuilder) -> tower_oauth::OAuthLayerBuilder,
) -> OAuthLayer {
    let fetcher = service_fn(|_: TokenRequest| async {
        Ok::<_, BoxError>(Token::new(
            "eyJhbGciOiJSUzI1NiJ9.benchmark-token",
            Some(Duration::from_secs(3600)),
        ))
    });
    let layer = configure(OAuthLayer::with_fetcher(fetcher)).build();
    rt.block_on(layer.handle().warm_up()).expect("warm-up");
    // Scopes computed per request are known, and fetched, once a request needs them.
    rt.block_on(layer.layer(Answer(StatusCode::OK)).oneshot(empty_request()))
        .expect("a first request");
    layer
}

/// Allocations made by `n` requests: build, `poll_ready`, `call`, poll the future to
/// completion, drop the response. The same code measures both services.
fn allocations_per_requests<S, B, R>(svc: &mut S, make: &impl Fn() -> Request<B>, n: u64) -> u64
where
    S: Service<Request<B>, Response = R>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let before = allocations();
    for _ in 0..n {
        let req = make();
        match svc.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => {}
            _ => panic!("the service is always ready"),
        }
        let fut = pin!(svc.call(req));
        match fut.poll(&mut cx) {
            Poll::Ready(Ok(res)) => drop(res),
            Poll::Ready(Err(e)) => panic!("request failed: {e:?}"),
            Poll::Pending => panic!("a cache hit must not wait"),
        }
    }
    allocations() - before
}

/// How requests reach the service measured.
#[derive(Clone, Copy)]
enum Sending {
    /// All through one service.
    Through,
    /// Each through a fresh clone of the service, which itself never sends: the pattern
    /// of clients cloned per request (`svc.clone().oneshot(req)`).
    ClonePerRequest,
}

/// Allocations made by `n` requests sent to `svc` as `sending` says.
fn allocations_sending<S, B, R>(
    svc: &mut S,
    make: &impl Fn() -> Request<B>,
    n: u64,
    sending: Sending,
) -> u64
where
    S: Service<Request<B>, Response = R> + Clone,
    S::Error: std::fmt::Debug,
{
    match sending {
        Sending::Through => allocations_per_requests(svc, make, n),
        Sending::ClonePerRequest => {
            let before = allocations();
            for _ in 0..n {
                allocations_per_requests(&mut svc.clone(), make, 1);
            }
            allocations() - before
        }
    }
}

/// Allocations per request added by the layer (as `configure` sets it up) on `make`'s
/// requests, over the bare service, after a warm-up that lets per-thread state settle
/// (the free list of replay head copies, lazy statics).
fn extra_allocations_per_request<B>(
    configure: impl FnOnce(tower_oauth::OAuthLayerBuilder) -> tower_oauth::OAuthLayerBuilder,
    status: StatusCode,
    make: impl Fn() -> Request<B>,
) -> f64
where
    B: tower_oauth::body::ReplayableBody + Send + 'static,
{
    extra_allocations_sending(configure, status, make, Sending::Through)
}

/// [`extra_allocations_per_request`], with the requests sent as `sending` says.
fn extra_allocations_sending<B>(
    configure: impl FnOnce(tower_oauth::OAuthLayerBuilder) -> tower_oauth::OAuthLayerBuilder,
    status: StatusCode,
    make: impl Fn() -> Request<B>,
    sending: Sending,
) -> f64
where
    B: tower_oauth::body::ReplayableBody + Send + 'static,
{
    const N: u64 = 1000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let layer = warmed_layer(&rt, configure);
    let _guard = rt.enter();

    let mut bare = Answer(status);
    let mut layered = layer.layer(Answer(status));
    allocations_sending(&mut bare, &make, 100, sending);
    allocations_sending(&mut layered, &make, 100, sending);

    let without = allocations_sending(&mut bare, &make, N, sending);
    let with = allocations_sending(&mut layered, &make, N, sending);
    assert!(
        without > 0,
        "the counting allocator counts (building a request allocates)"
    );
    assert_eq!(layer.handle().fetches(), 1, "every request was a cache hit");
    (with as f64 - without as f64) / N as f64
}

#[test]
fn a_service_cloned_for_every_request_allocates_no_more_than_without_the_layer() {
    // A clone makes its own copy of the token header only after it has sent a few
    // requests: clones that live for one request never copy.
    assert_eq!(
        extra_allocations_sending(
            |b| b,
            StatusCode::OK,
            empty_request,
            Sending::ClonePerRequest
        ),
        0.0
    );
}

#[test]
fn with_scopes_computed_per_request_a_cache_hit_allocates_no_more_than_without_the_layer() {
    let read = Scope::new("read");
    let by_request = ScopePolicy::from_fn(move |_| Some(read.clone()));
    assert_eq!(
        extra_allocations_per_request(
            |b| b.scope_policy(by_request),
            StatusCode::OK,
            empty_request
        ),
        0.0
    );
}

fn assert_no_extra_allocations<B>(status: StatusCode, make: impl Fn() -> Request<B>)
where
    B: tower_oauth::body::ReplayableBody + Send + 'static,
{
    assert_eq!(extra_allocations_per_request(|b| b, status, make), 0.0);
}

const URL: &str = "https://api.simpledocs.example/v1/documents/42?fields=title,owner";

// The first three tests isolate the layer's own hot path: everything in the request is
// either `'static` or already shared, so cloning it for the replay copy is free. The last
// three are requests as applications build them (header values, bodies and relative URIs
// made at runtime); `Bytes` made from a `Vec` allocates on its first clone, so any copy
// of such a request made on a cache hit shows up here.

fn full_request() -> Request<Full<Bytes>> {
    Request::post(URL)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .body(Full::new(Bytes::from_static(
            br#"{"title":"quarterly report"}"#,
        )))
        .unwrap()
}

fn empty_request() -> Request<Empty<Bytes>> {
    Request::get(URL)
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .body(Empty::new())
        .unwrap()
}

#[test]
fn a_cache_hit_with_a_full_body_allocates_no_more_than_without_the_layer() {
    assert_no_extra_allocations(StatusCode::OK, full_request);
}

#[test]
fn a_cache_hit_with_an_empty_body_allocates_no_more_than_without_the_layer() {
    assert_no_extra_allocations(StatusCode::OK, empty_request);
}

#[test]
fn a_not_found_answer_allocates_no_more_than_without_the_layer() {
    assert_no_extra_allocations(StatusCode::NOT_FOUND, empty_request);
}

// Requests as applications build them: header values, bodies and relative URIs made at
// runtime. The replay copy keeps the URI, the header names, values of up to 128 bytes and
// a body of up to 512 bytes as copied bytes (in buffers reused per thread), so they cost
// nothing. A larger body is kept by cloning it, and a `Bytes` made from a `Vec` allocates
// its shared form on its first clone: one allocation. With replay off, nothing.

fn runtime_headers() -> Request<Empty<Bytes>> {
    // A parsed value, a custom name and its parsed value: three `Vec`-backed parts that a
    // clone would each promote to a shared (allocated) form.
    Request::get(URL)
        .header(ACCEPT, "application/json")
        .header("x-request-id", "5f0c7d3e-1b2a")
        .body(Empty::<Bytes>::new())
        .unwrap()
}

fn runtime_body() -> Request<Full<Bytes>> {
    // A body from a `Vec` whose length is its capacity, as `format!` leaves it.
    let body = format!(r#"{{"title":"{}"}}"#, "quarterly report").into_bytes();
    Request::post(URL)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn large_runtime_body() -> Request<Full<Bytes>> {
    // Past the 512 bytes that are copied: shared instead. A `Vec` whose length is its
    // capacity, so that `Bytes` makes its shared form on the first clone.
    let body = vec![b'a'; 600];
    Request::post(URL)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn relative_uri() -> Request<Empty<Bytes>> {
    // As requests to a client with a base URL often carry.
    Request::get("/v1/documents/42")
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .body(Empty::<Bytes>::new())
        .unwrap()
}

#[test]
fn with_replay_off_runtime_built_requests_allocate_no_more_than_without_the_layer() {
    let off = |b: tower_oauth::OAuthLayerBuilder| b.replay(false);
    assert_eq!(
        extra_allocations_per_request(off, StatusCode::OK, runtime_headers),
        0.0
    );
    assert_eq!(
        extra_allocations_per_request(off, StatusCode::OK, runtime_body),
        0.0
    );
    assert_eq!(
        extra_allocations_per_request(off, StatusCode::OK, relative_uri),
        0.0
    );
}

#[test]
fn with_replay_on_runtime_built_requests_allocate_nothing_but_a_large_vec_body_once() {
    let on = |b: tower_oauth::OAuthLayerBuilder| b;
    assert_eq!(
        extra_allocations_per_request(on, StatusCode::OK, runtime_headers),
        0.0
    );
    assert_eq!(
        extra_allocations_per_request(on, StatusCode::OK, relative_uri),
        0.0
    );
    assert_eq!(
        extra_allocations_per_request(on, StatusCode::OK, runtime_body),
        0.0
    );
    assert_eq!(
        extra_allocations_per_request(on, StatusCode::OK, large_runtime_body),
        1.0
    );
}

// What the replay copy cannot keep as copied bytes. The request's extensions are cloned,
// which allocates when there are any; tonic-generated clients put a `GrpcMethod` on every
// request. A header value over 128 bytes is kept by a clone, which allocates its shared
// form when it was built at runtime. Each is measured against the allocations of that
// one clone, made outside the layer, so that the copy is seen to cost exactly it.

/// Allocations made by `f` (not by dropping what it returns).
fn allocations_of<T>(f: impl FnOnce() -> T) -> u64 {
    let before = allocations();
    let kept = f();
    let n = allocations() - before;
    drop(kept);
    n
}

fn grpc_request() -> Request<Empty<Bytes>> {
    // As a tonic-generated client sends it: a `GrpcMethod` extension on every request.
    Request::post("https://api.simpledocs.example/simpledocs.v1.Documents/Get")
        .header(CONTENT_TYPE, HeaderValue::from_static("application/grpc"))
        .extension(tonic::GrpcMethod::new("simpledocs.v1.Documents", "Get"))
        .body(Empty::<Bytes>::new())
        .unwrap()
}

#[test]
fn with_replay_on_a_request_with_an_extension_allocates_one_clone_of_its_extensions() {
    let clone = allocations_of(|| grpc_request().extensions().clone()) as f64
        - allocations_of(|| drop(grpc_request())) as f64;
    assert!(clone > 0.0, "cloning an extension map allocates");
    assert_eq!(
        extra_allocations_per_request(|b| b, StatusCode::OK, grpc_request),
        clone
    );
}

#[test]
fn with_replay_off_a_request_with_an_extension_allocates_no_more_than_without_the_layer() {
    assert_eq!(
        extra_allocations_per_request(|b| b.replay(false), StatusCode::OK, grpc_request),
        0.0
    );
}

/// A request with one header value of `len` bytes made at runtime (from a `String`, as
/// `format!` or a parse leaves it: `Vec`-backed).
fn runtime_value_of(len: usize) -> impl Fn() -> Request<Empty<Bytes>> {
    move || {
        Request::get(URL)
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header("x-trace-context", "t".repeat(len))
            .body(Empty::<Bytes>::new())
            .unwrap()
    }
}

static LONG_STATIC_VALUE: &str = concat!(
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01;",
    "tenant=simpledocs-example;region=eu-central-1;",
    "session=7f1c9e2a-52b4-4c1e-9a33-0d6f1b2c3d4e;attempt=1",
);

fn long_static_value() -> Request<Empty<Bytes>> {
    Request::get(URL)
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .header(
            "x-trace-context",
            HeaderValue::from_static(LONG_STATIC_VALUE),
        )
        .body(Empty::<Bytes>::new())
        .unwrap()
}

#[test]
fn with_replay_on_a_runtime_header_value_over_128_bytes_allocates_one_clone_of_it() {
    let on = |b: tower_oauth::OAuthLayerBuilder| b;
    let value = || HeaderValue::try_from("t".repeat(129)).unwrap();
    let clone = allocations_of(|| {
        let v = value();
        v.clone()
    }) as f64
        - allocations_of(value) as f64;
    assert!(clone > 0.0, "the first clone of a runtime value allocates");
    assert_eq!(
        extra_allocations_per_request(on, StatusCode::OK, runtime_value_of(129)),
        clone
    );
    // Up to 128 bytes the value is copied; a `'static` value of any length clones for free.
    assert_eq!(
        extra_allocations_per_request(on, StatusCode::OK, runtime_value_of(128)),
        0.0
    );
    assert!(LONG_STATIC_VALUE.len() > 128);
    assert_eq!(
        extra_allocations_per_request(on, StatusCode::OK, long_static_value),
        0.0
    );
}

#[test]
fn with_replay_off_a_long_runtime_header_value_allocates_no_more_than_without_the_layer() {
    assert_eq!(
        extra_allocations_per_request(|b| b.replay(false), StatusCode::OK, runtime_value_of(129)),
        0.0
    );
}

fn headerless_request() -> Request<Empty<Bytes>> {
    Request::get(URL).body(Empty::<Bytes>::new()).unwrap()
}

#[test]
fn a_request_without_headers_costs_only_the_header_map_that_authorization_is_inserted_into() {
    let first_insert = allocations_of(|| {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer x"),
        );
        headers
    }) as f64;
    assert!(first_insert > 0.0, "a first insert allocates the map");
    for configure in [|b| b, |b: tower_oauth::OAuthLayerBuilder| b.replay(false)] {
        assert_eq!(
            extra_allocations_per_request(configure, StatusCode::OK, headerless_request),
            first_insert
        );
    }
}
