//! The layer in real tower stacks: under and over `tower::retry` and `tower::timeout`,
//! behind and in front of `Buffer` and `ConcurrencyLimit`, and cloned into many tasks.

mod common;

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use common::{body_of, bounded, get, invalid_client, seen, Echo, Fetcher, Step};
use http::{header::AUTHORIZATION, Request, Response, StatusCode};
use http_body_util::Full;
use tower::{retry::Policy, timeout::error::Elapsed, Layer, Service, ServiceBuilder, ServiceExt};
use tower_oauth::{BoxError, Error, ErrorKind, FetchReason, OAuthLayer, TokenStatus};

/// How long a scenario may take before it fails instead of hanging; generous, since
/// paused time jumps ahead anyway.
const LIMIT: Duration = Duration::from_secs(300);

/// A fetcher answering `tok-<n>` tokens valid for an hour, after `delay`.
fn fetcher(delay: Duration) -> Fetcher {
    Fetcher::tokens(Duration::from_secs(3600), delay)
}

// ---------------------------------------------------------------------------------------------
// A retry policy and an inner service to compose with
// ---------------------------------------------------------------------------------------------

/// Which errors [`RetryPolicy`] retries.
#[derive(Clone, Copy)]
enum Retryable {
    /// Token errors the crate marks retryable.
    TokenErrors,
    /// Those, and `tower::timeout` expiries.
    TokenErrorsAndTimeouts,
    /// Every error.
    Any,
}

/// Retries some errors, at most `left` times per request, waiting `wait` before each retry.
#[derive(Clone)]
struct RetryPolicy {
    which: Retryable,
    left: usize,
    wait: Duration,
    retries: Arc<AtomicUsize>,
}

impl RetryPolicy {
    fn new(which: Retryable, max_retries: usize, wait: Duration) -> Self {
        Self {
            which,
            left: max_retries,
            wait,
            retries: Arc::default(),
        }
    }

    /// Retries made so far, over all requests.
    fn retries(&self) -> usize {
        self.retries.load(Ordering::SeqCst)
    }
}

impl<Res> Policy<Request<Full<Bytes>>, Res, BoxError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _req: &mut Request<Full<Bytes>>,
        result: &mut Result<Res, BoxError>,
    ) -> Option<Self::Future> {
        let err = result.as_ref().err()?;
        let token_error = err.downcast_ref::<Error>().is_some_and(Error::is_retryable);
        let retry = match self.which {
            Retryable::TokenErrors => token_error,
            Retryable::TokenErrorsAndTimeouts => token_error || err.is::<Elapsed>(),
            Retryable::Any => true,
        };
        if !retry || self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.retries.fetch_add(1, Ordering::SeqCst);
        Some(tokio::time::sleep(self.wait))
    }

    fn clone_request(&mut self, req: &Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> {
        Some(req.clone())
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// An inner service that answers like [`Echo`] after `delay`, can fail its first calls,
/// can reject one token the way SimpleDocs does, and records every `Authorization` it
/// saw and the most calls it had in flight at once.
#[derive(Clone, Default)]
struct Backend {
    echo: Echo,
    delay: Duration,
    failures_left: Arc<AtomicUsize>,
    rejected_token: Option<&'static str>,
    seen: Arc<Mutex<Vec<Option<String>>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

impl Backend {
    fn with_delay(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    fn failing_first(self, n: usize) -> Self {
        self.failures_left.store(n, Ordering::SeqCst);
        self
    }

    fn rejecting(mut self, authorization: &'static str) -> Self {
        self.rejected_token = Some(authorization);
        self
    }

    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

/// Counts a call out of flight when it ends, even if its caller dropped it.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Service<Request<Full<Bytes>>> for Backend {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let in_flight = InFlight(self.in_flight.clone());
        let auth = req
            .headers()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_owned());
        self.seen.lock().unwrap().push(auth.clone());
        let fail = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let reject = auth.is_some() && auth.as_deref() == self.rejected_token;
        let delay = self.delay;
        let mut echo = self.echo.clone();
        Box::pin(async move {
            let _in_flight = in_flight;
            tokio::time::sleep(delay).await;
            if fail {
                return Err(std::io::Error::other("connection reset by peer").into());
            }
            if reject {
                return Ok(token_expired());
            }
            Ok(echo.call(req).await?)
        })
    }
}

/// What SimpleDocs answers for an expired or revoked token.
fn token_expired() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header("content-type", "application/problem+json")
        .body(Full::new(Bytes::from_static(
            br#"{"type":"token_expired","status":401,"title":"Token Expired","detail":"The access token has expired."}"#,
        )))
        .unwrap()
}

/// Sends `n` requests at once, each from its own task through its own clone of `svc`.
async fn send_concurrently<S, B>(svc: S, n: usize) -> Vec<Response<B>>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Send + 'static,
{
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let svc = svc.clone();
            tokio::spawn(async move {
                svc.oneshot(get(&format!("/item/{i}")))
                    .await
                    .map_err(Into::into)
            })
        })
        .collect();
    let mut responses = Vec::with_capacity(n);
    for task in tasks {
        let result: Result<_, BoxError> = task.await.expect("the task panicked");
        match result {
            Ok(res) => responses.push(res),
            Err(err) => panic!("request failed: {err}"),
        }
    }
    responses
}

// ---------------------------------------------------------------------------------------------
// Retry and timeout outside the layer
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_retry_around_the_layer_recovers_from_retryable_fetch_failures_within_an_overall_timeout()
{
    // Two refused connections, then a token. With no retry budget of its own, the layer
    // hands each failure to the caller, and the retry policy tries again.
    let fetcher = Fetcher::script(vec![
        Step::Io,
        Step::Io,
        Step::token(Duration::from_secs(3600)),
    ]);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .retry_budget(Duration::ZERO)
        .build();
    let echo = Echo::default();
    let policy = RetryPolicy::new(Retryable::TokenErrors, 5, Duration::from_secs(1));
    let svc = ServiceBuilder::new()
        .timeout(Duration::from_secs(30))
        .retry(policy.clone())
        .layer(layer.clone())
        .service(echo.clone());

    let res = bounded(LIMIT, svc.oneshot(get("/workflows")))
        .await
        .unwrap();

    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen(&res), Some("Bearer tok-3"));
    assert_eq!(fetcher.calls(), 3);
    assert_eq!(policy.retries(), 2);
    assert_eq!(
        echo.calls(),
        1,
        "failed attempts never reach the inner service"
    );
    assert_eq!(layer.handle().fetches(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_retry_around_the_layer_does_not_retry_errors_marked_not_retryable() {
    let invalid_client = invalid_client();
    assert!(!invalid_client.is_retryable());
    let fetcher = Fetcher::script(vec![Step::Fail(invalid_client, Duration::ZERO)]);
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let policy = RetryPolicy::new(Retryable::TokenErrors, 5, Duration::from_secs(1));
    let svc = ServiceBuilder::new()
        .retry(policy.clone())
        .layer(layer)
        .service(Echo::default());

    let err = bounded(LIMIT, svc.oneshot(get("/workflows")))
        .await
        .unwrap_err();

    let err = err.downcast_ref::<Error>().expect("a tower_oauth::Error");
    assert_eq!(err.kind(), ErrorKind::InvalidClient);
    assert_eq!(policy.retries(), 0);
    assert_eq!(fetcher.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_overall_timeout_around_a_retry_bounds_fetches_that_keep_failing() {
    let fetcher = Fetcher::script(vec![Step::Io]);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .retry_budget(Duration::ZERO)
        .build();
    let policy = RetryPolicy::new(Retryable::TokenErrors, 100, Duration::from_secs(1));
    let svc = ServiceBuilder::new()
        .timeout(Duration::from_millis(4500))
        .retry(policy.clone())
        .layer(layer.clone())
        .service(Echo::default());

    let err = bounded(LIMIT, svc.oneshot(get("/workflows")))
        .await
        .unwrap_err();

    assert!(err.is::<Elapsed>(), "the overall timeout ends it: {err}");
    // Attempts at 0, 1, 2, 3 and 4 s, each after the previous failure's cooldown.
    assert_eq!(fetcher.calls(), 5);
    assert_eq!(
        policy.retries(),
        5,
        "the fifth retry was waiting when time ran out"
    );
    let state = &layer.handle().state()[0];
    assert_eq!(state.last_error, Some(ErrorKind::Transport));
    assert!(!state.fetching, "no fetch outlives its failure");
}

#[tokio::test(start_paused = true)]
async fn per_attempt_timeouts_inside_a_retry_join_the_fetch_in_flight_instead_of_starting_another()
{
    // The token takes 2.5 s; each attempt gets 1 s. Attempts at 0, 1 and 2 s all wait on
    // the one fetch, which no timeout cancels; the third gets the token.
    let fetcher = fetcher(Duration::from_millis(2500));
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let echo = Echo::default();
    let policy = RetryPolicy::new(Retryable::TokenErrorsAndTimeouts, 5, Duration::ZERO);
    let svc = ServiceBuilder::new()
        .retry(policy.clone())
        .timeout(Duration::from_secs(1))
        .layer(layer)
        .service(echo.clone());

    let res = bounded(LIMIT, svc.oneshot(get("/workflows")))
        .await
        .unwrap();

    assert_eq!(seen(&res), Some("Bearer tok-1"));
    assert_eq!(policy.retries(), 2);
    assert_eq!(fetcher.calls(), 1);
    assert_eq!(echo.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_that_fires_while_a_token_is_fetched_does_not_cancel_the_fetch_for_others() {
    let fetcher = fetcher(Duration::from_secs(3));
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let echo = Echo::default();
    let impatient = ServiceBuilder::new()
        .timeout(Duration::from_secs(1))
        .layer(layer.clone())
        .service(echo.clone());
    let patient = layer.layer(echo.clone());

    // The impatient request is polled first, so its call starts the fetch.
    let (first, second) = bounded(LIMIT, async {
        tokio::join!(
            impatient.oneshot(get("/first")),
            patient.clone().oneshot(get("/second"))
        )
    })
    .await;

    let err = first.unwrap_err();
    assert!(err.is::<Elapsed>(), "the first request timed out: {err}");
    let res = second.expect("the second request got the token the first one started");
    assert_eq!(seen(&res), Some("Bearer tok-1"));
    assert_eq!(fetcher.calls(), 1);
    assert_eq!(
        fetcher.requests.lock().unwrap()[0].reason,
        FetchReason::First
    );
    assert_eq!(
        echo.calls(),
        1,
        "the timed-out request never reached the inner service"
    );

    let res = bounded(LIMIT, patient.oneshot(get("/third")))
        .await
        .unwrap();
    assert_eq!(seen(&res), Some("Bearer tok-1"));
    assert_eq!(fetcher.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_fetch_abandoned_by_its_only_caller_still_installs_the_token() {
    let fetcher = fetcher(Duration::from_secs(3));
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let echo = Echo::default();
    let impatient = ServiceBuilder::new()
        .timeout(Duration::from_secs(1))
        .layer(layer.clone())
        .service(echo.clone());

    let err = bounded(LIMIT, impatient.clone().oneshot(get("/first")))
        .await
        .unwrap_err();
    assert!(err.is::<Elapsed>());
    assert!(layer.handle().state()[0].fetching);

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(layer.handle().state()[0].status, TokenStatus::Fresh);

    let res = bounded(LIMIT, impatient.oneshot(get("/second")))
        .await
        .unwrap();
    assert_eq!(seen(&res), Some("Bearer tok-1"));
    assert_eq!(fetcher.calls(), 1);
    assert_eq!(echo.calls(), 1);
}

// ---------------------------------------------------------------------------------------------
// Retry and timeout inside the layer
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_timeout_inside_the_layer_does_not_count_the_wait_for_a_token() {
    // The token takes 5 s, the inner timeout is 1 s: it only covers the inner call.
    let fetcher = fetcher(Duration::from_secs(5));
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let echo = Echo::default();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .timeout(Duration::from_secs(1))
        .service(echo.clone());

    let res = bounded(LIMIT, svc.oneshot(get("/workflows")))
        .await
        .unwrap();

    assert_eq!(seen(&res), Some("Bearer tok-1"));
    assert_eq!(fetcher.calls(), 1);
    assert_eq!(echo.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_inside_the_layer_reaches_the_caller_unchanged_and_keeps_the_token() {
    let fetcher = fetcher(Duration::ZERO);
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let backend = Backend::with_delay(Duration::from_secs(2));
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .timeout(Duration::from_secs(1))
        .service(backend.clone());

    let err = bounded(LIMIT, svc.clone().oneshot(get("/slow")))
        .await
        .unwrap_err();
    assert!(err.is::<Elapsed>(), "the inner timeout's own error: {err}");
    assert!(err.downcast_ref::<Error>().is_none());

    let err = bounded(LIMIT, svc.oneshot(get("/slow"))).await.unwrap_err();
    assert!(err.is::<Elapsed>());
    assert_eq!(
        fetcher.calls(),
        1,
        "an inner timeout is not a token problem"
    );
    assert_eq!(layer.handle().state()[0].status, TokenStatus::Fresh);
    assert_eq!(
        backend.seen(),
        vec![
            Some("Bearer tok-1".to_owned()),
            Some("Bearer tok-1".to_owned())
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_inside_the_layer_resends_with_the_same_token_and_fetches_once() {
    let fetcher = fetcher(Duration::ZERO);
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let backend = Backend::default().failing_first(2);
    let policy = RetryPolicy::new(Retryable::Any, 3, Duration::from_millis(100));
    let svc = ServiceBuilder::new()
        .layer(layer)
        .retry(policy.clone())
        .service(backend.clone());

    let res = bounded(LIMIT, svc.oneshot(get("/flaky"))).await.unwrap();

    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen(&res), Some("Bearer tok-1"));
    assert_eq!(policy.retries(), 2);
    assert_eq!(backend.seen(), vec![Some("Bearer tok-1".to_owned()); 3]);
    assert_eq!(fetcher.calls(), 1);
}

// ---------------------------------------------------------------------------------------------
// Buffer and ConcurrencyLimit
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_buffer_around_the_layer_shares_one_fetch_among_all_queued_requests() {
    let fetcher = fetcher(Duration::from_secs(1));
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let echo = Echo::default();
    let svc = ServiceBuilder::new()
        .buffer(4)
        .layer(layer)
        .service(echo.clone());

    let responses = bounded(LIMIT, send_concurrently(svc, 32)).await;

    assert_eq!(responses.len(), 32);
    assert!(responses.iter().all(|r| seen(r) == Some("Bearer tok-1")));
    assert_eq!(fetcher.calls(), 1);
    assert_eq!(echo.calls(), 32);
}

#[tokio::test(start_paused = true)]
async fn a_buffer_inside_the_layer_carries_authorized_requests_and_their_replays() {
    // Every request first carries tok-1, which the backend rejects; all of them are
    // replayed through the buffer with the one re-issued token.
    let fetcher = fetcher(Duration::from_secs(1));
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let backend = Backend::with_delay(Duration::from_millis(10)).rejecting("Bearer tok-1");
    let svc = ServiceBuilder::new()
        .layer(layer)
        .buffer(4)
        .service(backend.clone());

    let responses = bounded(LIMIT, send_concurrently(svc, 32)).await;

    assert!(responses
        .iter()
        .all(|r| r.status() == StatusCode::OK && seen(r) == Some("Bearer tok-2")));
    assert_eq!(fetcher.calls(), 2);
    assert_eq!(
        backend.calls(),
        64,
        "each request once with tok-1, once replayed"
    );
    let seen = backend.seen();
    let count = |t: &str| seen.iter().filter(|s| s.as_deref() == Some(t)).count();
    assert_eq!((count("Bearer tok-1"), count("Bearer tok-2")), (32, 32));
}

#[tokio::test(start_paused = true)]
async fn a_concurrency_limit_around_the_layer_bounds_requests_waiting_for_the_token_too() {
    let fetcher = fetcher(Duration::from_secs(1));
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let backend = Backend::with_delay(Duration::from_millis(100));
    let svc = ServiceBuilder::new()
        .concurrency_limit(3)
        .layer(layer)
        .service(backend.clone());

    let responses = bounded(LIMIT, send_concurrently(svc, 20)).await;

    assert!(responses.iter().all(|r| seen(r) == Some("Bearer tok-1")));
    assert_eq!(fetcher.calls(), 1);
    assert_eq!(backend.calls(), 20);
    assert_eq!(backend.max_in_flight(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_concurrency_limit_inside_the_layer_is_called_through_the_instance_polled_ready() {
    // `ConcurrencyLimit` panics when called without the permit `poll_ready` took, so the
    // layer must call the instance it polled, on first sends and replays alike.
    let fetcher = fetcher(Duration::from_secs(1));
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let backend = Backend::with_delay(Duration::from_millis(100)).rejecting("Bearer tok-1");
    let svc = ServiceBuilder::new()
        .layer(layer)
        .concurrency_limit(3)
        .service(backend.clone());

    let responses = bounded(LIMIT, send_concurrently(svc, 20)).await;

    assert!(responses.iter().all(|r| seen(r) == Some("Bearer tok-2")));
    assert_eq!(fetcher.calls(), 2);
    // Only the three requests holding permits carried tok-1 and were replayed; the
    // others were sent after the rejection, with tok-2 from the start.
    let seen = backend.seen();
    let count = |t: &str| seen.iter().filter(|s| s.as_deref() == Some(t)).count();
    assert_eq!((count("Bearer tok-1"), count("Bearer tok-2")), (3, 20));
    assert_eq!(backend.max_in_flight(), 3);
}

// ---------------------------------------------------------------------------------------------
// Many tasks
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clones_of_a_full_stack_used_from_fifty_tasks_share_one_fetch() {
    const TASKS: usize = 50;
    const REQUESTS: usize = 20;
    let fetcher = fetcher(Duration::from_millis(50));
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let echo = Echo::default();
    let policy = RetryPolicy::new(Retryable::TokenErrors, 2, Duration::from_millis(10));
    let svc = ServiceBuilder::new()
        .timeout(Duration::from_secs(20))
        .retry(policy.clone())
        .timeout(Duration::from_secs(10))
        .layer(layer.clone())
        .service(echo.clone());

    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let mut ok = 0;
                for r in 0..REQUESTS {
                    let body = format!("task {t} request {r}");
                    let req = Request::post("/documents")
                        .body(Full::new(Bytes::from(body.clone())))
                        .unwrap();
                    let res = svc.clone().oneshot(req).await.expect("request failed");
                    assert_eq!(seen(&res), Some("Bearer tok-1"));
                    assert_eq!(body_of(res).await, body.as_bytes());
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        ok += bounded(LIMIT, task).await.expect("a task panicked");
    }

    assert_eq!(ok, TASKS * REQUESTS);
    assert_eq!(echo.calls(), TASKS * REQUESTS);
    assert_eq!(fetcher.calls(), 1);
    assert_eq!(policy.retries(), 0);
    assert_eq!(layer.handle().fetches(), 1);
}

// ---------------------------------------------------------------------------------------------
// Capacity reserved with poll_ready while the token is fetched
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_request_waiting_for_its_token_keeps_the_permit_its_caller_reserved() {
    // What `poll_ready` reserved is the caller's, for the request it then sends: it goes
    // with that request while it waits for the first token, as it does with a token at
    // hand. (Were it let go of, the caller's next `poll_ready` would take it and the
    // request, needing a permit again, could never be sent.)
    for warm in [false, true] {
        let layer = OAuthLayer::with_fetcher(fetcher(Duration::from_millis(100))).build();
        if warm {
            layer.handle().warm_up().await.unwrap();
        }
        let mut svc = ServiceBuilder::new()
            .layer(layer)
            .concurrency_limit(1)
            .service(Echo::default());
        type Req = Request<Full<Bytes>>;
        std::future::poll_fn(|cx| Service::<Req>::poll_ready(&mut svc, cx))
            .await
            .unwrap();
        let first = svc.call(get("/1"));
        let again =
            std::future::poll_fn(|cx| Poll::Ready(Service::<Req>::poll_ready(&mut svc, cx))).await;
        assert!(
            again.is_pending(),
            "the only permit went with the request (warm {warm})"
        );
        let res = bounded(LIMIT, first).await.unwrap();
        assert_eq!(seen(&res), Some("Bearer tok-1"), "warm {warm}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_waits_for_capacity_before_taking_a_job_is_answered_from_a_cold_start() {
    // A common backpressure loop: ready, then take the next job, then send it. The
    // producer sends each job after the previous one is answered.
    let layer = OAuthLayer::with_fetcher(fetcher(Duration::from_millis(100))).build();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .concurrency_limit(1)
        .service(Echo::default());
    let (jobs_tx, mut jobs) = tokio::sync::mpsc::channel::<Request<Full<Bytes>>>(1);
    let (done_tx, mut done) = tokio::sync::mpsc::channel(4);
    let worker = tokio::spawn(async move {
        while ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
            .await
            .is_ok()
        {
            let Some(job) = jobs.recv().await else { return };
            let answer = svc.call(job);
            let done_tx = done_tx.clone();
            tokio::spawn(async move {
                let _ = done_tx.send(answer.await.map(|r| r.status())).await;
            });
        }
    });
    for i in 0..3 {
        jobs_tx.send(get(&format!("/{i}"))).await.unwrap();
        let answer = bounded(LIMIT, done.recv()).await.expect("the worker lives");
        assert_eq!(answer.unwrap(), StatusCode::OK, "job {i}");
    }
    worker.abort();
}

#[tokio::test(start_paused = true)]
async fn a_fetcher_needing_the_only_permit_a_waiting_request_holds_fails_with_a_fetch_timeout() {
    // Documented: the token fetcher must not need capacity of the service the layer wraps
    // (a client behind the same concurrency limit). Here it needs the only permit, which
    // the request waiting for the token holds: the fetch times out, a typed error, not a
    // hang; with a permit to spare it works.
    for (limit, works) in [(1, false), (2, true)] {
        let permits = Arc::new(tokio::sync::Semaphore::new(limit));
        let fetch_permits = permits.clone();
        let fetcher = tower::service_fn(move |_: tower_oauth::TokenRequest| {
            let permits = fetch_permits.clone();
            async move {
                let _permit = permits.acquire_owned().await?;
                Ok::<_, BoxError>(tower_oauth::Token::new(
                    "tok-1",
                    Some(Duration::from_secs(3600)),
                ))
            }
        });
        let svc = ServiceBuilder::new()
            .layer(
                OAuthLayer::with_fetcher(fetcher)
                    .fetch_timeout(Duration::from_secs(2))
                    .build(),
            )
            .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(
                permits,
            ))
            .service(Echo::default());
        let result = bounded(LIMIT, svc.oneshot(get("/x"))).await;
        match (result, works) {
            (Ok(res), true) => assert_eq!(seen(&res), Some("Bearer tok-1")),
            (Err(err), false) => {
                let err = err.downcast_ref::<Error>().expect("a token error");
                assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
            }
            (other, _) => panic!("limit {limit}: {:?}", other.map(|r| r.status())),
        }
    }
}
