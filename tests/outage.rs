//! Failure behaviour: no stampede, brief outages absorbed, graceful degradation, hangs.

mod common;

use std::time::Duration;

use common::{
    advance, get, invalid_client, mock_creds, mock_creds_with_secret, seen, send, Echo, Fetcher,
    Step,
};
use http::StatusCode;
use tower::Layer;
use tower_oauth::{
    mock::{MockConfig, MockServer, TokenFailure},
    ClientCredentials, Error, ErrorKind, OAuth, OAuthLayer, TokenHandle, TokenStatus,
};

const SEC: Duration = Duration::from_secs(1);

/// A layer against the mock with a short retry budget so the tests run in real time.
fn fast_retrying(creds: ClientCredentials) -> OAuthLayer {
    OAuthLayer::builder(creds)
        .initial_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(200))
        .retry_budget(Duration::from_millis(600))
        .fetch_timeout(Duration::from_secs(2))
        .build()
}

/// A 503 from the token endpoint, with `Retry-After` if given.
fn unavailable(retry_after: Option<&str>) -> Error {
    let mut headers = http::HeaderMap::new();
    if let Some(after) = retry_after {
        headers.insert(http::header::RETRY_AFTER, after.parse().unwrap());
    }
    tower_oauth::fetch::parse_token_response(StatusCode::SERVICE_UNAVAILABLE, &headers, b"")
        .unwrap_err()
}

fn kind(err: &tower_oauth::BoxError) -> ErrorKind {
    err.downcast_ref::<Error>()
        .unwrap_or_else(|| panic!("not our error: {err}"))
        .kind()
}

async fn storm(
    layer: &OAuthLayer,
    n: usize,
) -> Vec<
    Result<
        http::Response<tower_oauth::body::ResponseBody<http_body_util::Full<bytes::Bytes>>>,
        tower_oauth::BoxError,
    >,
> {
    let svc = layer.layer(Echo::default());
    let calls = (0..n).map(|_| {
        let mut svc = svc.clone();
        tokio::spawn(async move { send(&mut svc, get("/x")).await })
    });
    let all = futures_util::future::join_all(calls);
    tokio::time::timeout(Duration::from_secs(10), all)
        .await
        .expect("every caller is answered within the budget")
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_against_an_endpoint_that_always_fails_cause_a_handful_of_fetches() {
    let mock = MockServer::start().await.unwrap();
    mock.fail_token_requests(
        usize::MAX,
        TokenFailure::Status(StatusCode::SERVICE_UNAVAILABLE),
    );
    let layer = fast_retrying(mock_creds(&mock));

    let results = storm(&layer, 10_000).await;
    for r in &results {
        let err = r.as_ref().unwrap_err();
        assert_eq!(kind(err), ErrorKind::OAuth);
        let ours = err.downcast_ref::<Error>().unwrap();
        assert!(ours.is_retryable());
        assert_eq!(ours.oauth_error(), Some("temporarily_unavailable"));
    }
    let fetches = mock.stats().token_requests;
    assert!(
        (2..=10).contains(&fetches),
        "retried within the budget, not per request: {fetches}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_with_a_wrong_secret_cause_one_fetch() {
    let mock = MockServer::start().await.unwrap();
    let layer = fast_retrying(mock_creds_with_secret(&mock, "wrong-secret"));

    let results = storm(&layer, 10_000).await;
    for r in &results {
        assert_eq!(kind(r.as_ref().unwrap_err()), ErrorKind::InvalidClient);
    }
    assert_eq!(
        mock.stats().token_requests,
        1,
        "invalid_client is not retried"
    );
}

/// Sends `n` concurrent requests through `layer` and returns how many failed with `kind`.
async fn wave(layer: &OAuthLayer, n: usize, want: ErrorKind) -> usize {
    let results = storm(layer, n).await;
    results
        .iter()
        .filter(|r| r.as_ref().is_err_and(|e| kind(e) == want))
        .count()
}

#[tokio::test(start_paused = true)]
async fn requests_during_the_cooldown_get_the_error_at_once_without_a_fetch() {
    for (err, retryable) in [(unavailable(None), true), (invalid_client(), false)] {
        let want = err.kind();
        let fetcher = Fetcher::script(vec![Step::Fail(err, Duration::ZERO)]);
        let layer = OAuthLayer::with_fetcher(fetcher.clone())
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(2 * SEC)
            .retry_budget(SEC)
            .build();
        assert_eq!(wave(&layer, 1_000, want).await, 1_000);
        let first = fetcher.calls();
        assert_eq!(first > 1, retryable, "only retryable failures are retried");
        // No time has passed: the next wave is answered from the cooldown.
        assert_eq!(wave(&layer, 1_000, want).await, 1_000);
        assert_eq!(fetcher.calls(), first);
        // After the cooldown, the next request tries again.
        advance(2 * SEC).await;
        assert_eq!(wave(&layer, 10, want).await, 10);
        assert!(fetcher.calls() > first);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_fails_twice_then_recovers_costs_callers_a_wait_not_an_error() {
    let mock = MockServer::start().await.unwrap();
    mock.fail_token_requests(2, TokenFailure::Status(StatusCode::SERVICE_UNAVAILABLE));
    let layer = fast_retrying(mock_creds(&mock));

    let results = storm(&layer, 1_000).await;
    for r in results {
        assert_eq!(r.unwrap().status(), StatusCode::OK);
    }
    let stats = mock.stats();
    assert_eq!((stats.token_requests, stats.tokens_issued), (3, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let mock = MockServer::start().await.unwrap();
    mock.fail_token_requests(
        1,
        TokenFailure::StatusWithRetryAfter(StatusCode::TOO_MANY_REQUESTS, 1),
    );
    let layer = OAuthLayer::builder(mock_creds(&mock))
        .initial_backoff(Duration::from_millis(10))
        .retry_budget(Duration::from_secs(3))
        .build();
    let started = std::time::Instant::now();
    let results = storm(&layer, 10).await;
    assert!(results.iter().all(|r| r.is_ok()));
    assert_eq!(mock.stats().token_requests, 2);
    // The second attempt waited for Retry-After, not for the 10 ms backoff.
    assert!(started.elapsed() >= SEC);
}

#[tokio::test(start_paused = true)]
async fn a_failed_renewal_keeps_the_valid_token_and_tries_again_later() {
    let fail = || Step::Fail(unavailable(None), Duration::ZERO);
    let fetcher = Fetcher::script(vec![
        Step::token(100 * SEC),
        fail(),
        fail(),
        Step::token(100 * SEC),
    ]);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .renew_ahead(20 * SEC)
        .max_backoff(2 * SEC)
        .build();
    let handle = layer.handle();
    let echo = Echo::default();
    let mut svc = layer.layer(echo.clone());
    handle.warm_up().await.unwrap();

    advance(81 * SEC).await;
    // Renewal is due and fails twice; requests meanwhile use the still-valid token, and
    // the retries (with backoff) get a new one before the old one expires.
    let mut tokens = Vec::new();
    for _ in 0..5 {
        let res = send(&mut svc, get("/x")).await.unwrap();
        tokens.push(seen(&res).unwrap().to_owned());
        advance(SEC).await;
    }
    assert_eq!(tokens.first().map(String::as_str), Some("Bearer tok-1"));
    assert_eq!(tokens.last().map(String::as_str), Some("Bearer tok-4"));
    assert!(tokens
        .iter()
        .all(|t| t == "Bearer tok-1" || t == "Bearer tok-4"));
    assert_eq!(
        fetcher.calls(),
        4,
        "two failures, then the retry that worked"
    );
    assert_eq!(handle.state()[0].last_error, Some(ErrorKind::HttpStatus));
    assert_eq!(handle.state()[0].status, TokenStatus::Fresh);
    assert!(
        echo.seen.lock().unwrap().iter().all(Option::is_some),
        "never without a token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_token_endpoint_times_out_and_does_not_wedge_later_requests() {
    let mock = MockServer::start().await.unwrap();
    mock.fail_token_requests(usize::MAX, TokenFailure::Hang);
    let layer = OAuthLayer::builder(mock_creds(&mock))
        .fetch_timeout(Duration::from_millis(300))
        .initial_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(50))
        .retry_budget(Duration::from_millis(100))
        .build();
    let results = storm(&layer, 100).await;
    for r in &results {
        assert_eq!(kind(r.as_ref().unwrap_err()), ErrorKind::Timeout);
    }
    assert_eq!(mock.stats().token_requests, 1);

    mock.clear_token_failures();
    tokio::time::sleep(Duration::from_millis(100)).await; // past the cooldown
    let results = storm(&layer, 100).await;
    assert!(results
        .iter()
        .all(|r| r.as_ref().is_ok_and(|r| r.status() == StatusCode::OK)));
    assert_eq!(mock.stats().tokens_issued, 1);
}

#[tokio::test(start_paused = true)]
async fn warm_up_fails_fast_on_a_wrong_secret() {
    let mock = MockServer::start_with(MockConfig::new()).await.unwrap();
    let layer = OAuthLayer::new(mock_creds_with_secret(&mock, "nope"));
    let err = layer.handle().warm_up().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidClient);
    assert_eq!(err.oauth_error(), Some("invalid_client"));
    assert_eq!(layer.handle().state()[0].status, TokenStatus::None);
    assert_eq!(
        layer.handle().state()[0].last_error,
        Some(ErrorKind::InvalidClient)
    );
}

#[tokio::test(start_paused = true)]
async fn force_refresh_returns_the_first_error_at_once_while_the_token_is_kept() {
    let fetcher = Fetcher::script(vec![
        Step::Token {
            lifetime: Some(7200 * SEC),
            delay: Duration::ZERO,
        },
        Step::Fail(invalid_client(), Duration::ZERO),
    ]);
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let handle = layer.handle();
    handle.warm_up().await.unwrap();

    let started = tokio::time::Instant::now();
    let err = handle.force_refresh().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidClient);
    assert!(
        started.elapsed() < SEC,
        "answered at once, not when the token runs out"
    );
    assert_eq!(fetcher.calls(), 2);

    // The token still works and is still sent.
    let mut svc = layer.layer(Echo::default());
    let res = send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(seen(&res), Some("Bearer tok-1"));
    assert_eq!(handle.state()[0].status, TokenStatus::Fresh);
    assert!(!handle.state()[0].fetching);

    // Retrying cannot mend a wrong secret: no fetch in the background for the rest of
    // the token's life.
    advance(3600 * SEC).await;
    let res = send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(seen(&res), Some("Bearer tok-1"));
    assert_eq!(fetcher.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_renewal_told_to_wait_does_not_hold_requests_once_the_token_expires() {
    // Told to come back in 60 s (`Retry-After`), or refused for bad credentials, which
    // retrying cannot mend (a pause of `max_backoff`, 30 s): either way a pause.
    for (failure, expected) in [
        (unavailable(Some("60")), ErrorKind::HttpStatus),
        (invalid_client(), ErrorKind::InvalidClient),
    ] {
        let fetcher = Fetcher::script(vec![
            Step::token(100 * SEC),
            Step::Fail(failure, Duration::ZERO),
            Step::token(100 * SEC),
        ]);
        let layer = OAuthLayer::with_fetcher(fetcher.clone())
            .renew_ahead(20 * SEC)
            .max_backoff(30 * SEC)
            .build();
        let mut svc = layer.layer(Echo::default());
        send(&mut svc, get("/x")).await.unwrap();

        // Into the renewal window: this request starts the renewal, which fails; the
        // token, valid until 95 s, is still sent.
        advance(81 * SEC).await;
        let res = send(&mut svc, get("/x")).await.unwrap();
        assert_eq!(seen(&res), Some("Bearer tok-1"));
        advance(SEC).await;
        assert_eq!(fetcher.calls(), 2);

        // Past expiry, inside the pause: the error at once, without a fetch and without a
        // wait for the pause to end.
        advance(15 * SEC).await;
        let started = tokio::time::Instant::now();
        let err = send(&mut svc, get("/x")).await.unwrap_err();
        assert_eq!(kind(&err), expected);
        assert!(started.elapsed() < SEC);
        assert_eq!(
            fetcher.calls(),
            2,
            "{expected:?}: no fetch during the pause"
        );

        // After the pause, a request fetches a new token.
        advance(60 * SEC).await;
        let res = send(&mut svc, get("/x")).await.unwrap();
        assert_eq!(seen(&res), Some("Bearer tok-3"));
        assert_eq!(fetcher.calls(), 3);
    }
}

#[tokio::test(start_paused = true)]
async fn a_renewal_retry_scheduled_before_a_new_token_arrived_fetches_nothing() {
    let fetcher = Fetcher::script(vec![
        Step::token(100 * SEC),
        Step::Fail(unavailable(None), Duration::ZERO),
        Step::token(100 * SEC),
    ]);
    // No budget: the failed renewal is given up on at once and retried 5–10 s later.
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .renew_ahead(20 * SEC)
        .retry_budget(Duration::ZERO)
        .initial_backoff(10 * SEC)
        .max_backoff(10 * SEC)
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo::default());
    send(&mut svc, get("/x")).await.unwrap();
    advance(81 * SEC).await;
    send(&mut svc, get("/x")).await.unwrap();
    advance(Duration::from_millis(10)).await;
    assert_eq!(fetcher.calls(), 2, "the renewal failed");
    assert!(!handle.state()[0].fetching);

    // A new token arrives before the retry is due: the retry has nothing left to do.
    handle.force_refresh().await.unwrap();
    assert_eq!(fetcher.calls(), 3);
    advance(30 * SEC).await;
    assert_eq!(fetcher.calls(), 3);
    let res = send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(seen(&res), Some("Bearer tok-3"));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_fetcher_is_backed_off_from_like_a_failing_one() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let fetcher = tower::service_fn(move |_: tower_oauth::TokenRequest| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            if true {
                panic!("a bug in the token fetcher");
            }
            Err::<tower_oauth::Token, tower_oauth::BoxError>("unreachable".into())
        }
    });
    let layer = OAuthLayer::with_fetcher(fetcher)
        .initial_backoff(Duration::from_millis(100))
        .max_backoff(2 * SEC)
        .retry_budget(SEC)
        .build();
    let calls = || calls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(wave(&layer, 1_000, ErrorKind::Cancelled).await, 1_000);
    let first = calls();
    assert!(
        (2..=6).contains(&first),
        "retried within the budget: {first}"
    );
    // The next wave is answered from the cooldown, without calling the fetcher again.
    assert_eq!(wave(&layer, 1_000, ErrorKind::Cancelled).await, 1_000);
    assert_eq!(calls(), first);
    let err = layer.handle().warm_up().await.unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
}

/// A two-hour token, then a token endpoint that is always unavailable; one attempt per
/// flight (no retry budget), so each failed renewal is retried only in the background.
fn failing_renewals(initial_backoff: Duration, max_backoff: Duration) -> (Fetcher, OAuthLayer) {
    let fetcher = Fetcher::script(vec![
        Step::Token {
            lifetime: Some(7200 * SEC),
            delay: Duration::ZERO,
        },
        Step::Fail(unavailable(None), Duration::ZERO),
    ]);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .retry_budget(Duration::ZERO)
        .initial_backoff(initial_backoff)
        .max_backoff(max_backoff)
        .build();
    (fetcher, layer)
}

#[tokio::test(start_paused = true)]
async fn failed_renewals_share_one_retry_however_many_there_were() {
    // One attempt per flight; a retry 5–10 s after each failure.
    let (fetcher, layer) = failing_renewals(10 * SEC, 10 * SEC);
    let handle = layer.handle();
    handle.warm_up().await.unwrap();
    for _ in 0..20 {
        handle.force_refresh().await.unwrap_err();
    }
    assert_eq!(fetcher.calls(), 21);
    for _ in 0..100 {
        advance(SEC).await;
    }
    let retries = fetcher.calls() - 21;
    // One schedule: one retry every 5–10 s (twenty schedules would make far more).
    assert!((10..=20).contains(&retries), "{retries} retries in 100 s");
}

#[tokio::test(start_paused = true)]
async fn background_retries_of_a_failing_renewal_back_off_further_each_time() {
    // One attempt per flight; retries after 0.5–1 s, then 1–2 s, 2–4 s, 4–8 s, ...
    let (fetcher, layer) = failing_renewals(SEC, 1000 * SEC);
    let handle = layer.handle();
    handle.warm_up().await.unwrap();
    handle.force_refresh().await.unwrap_err();
    assert_eq!(fetcher.calls(), 2);
    for _ in 0..60 {
        advance(SEC).await;
    }
    // Doubling delays fit five or six retries in 60 s; a delay that did not grow would
    // retry every second.
    let retries = fetcher.calls() - 2;
    assert!((5..=6).contains(&retries), "{retries} retries in 60 s");
}

/// A layer over `fetcher` (one attempt per flight, background retries after 0.5–1 s,
/// then 1–2 s) with its first token, and a service that has started that token's
/// renewal, due at 500 s, with the fetcher's second step (a failure).
async fn first_renewal_failed(fetcher: &Fetcher) -> (TokenHandle, OAuth<Echo>) {
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .renew_ahead(500 * SEC)
        .retry_budget(Duration::ZERO)
        .initial_backoff(SEC)
        .max_backoff(2 * SEC)
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo::default());
    handle.warm_up().await.unwrap();
    advance(501 * SEC).await;
    send(&mut svc, get("/x")).await.unwrap();
    advance(Duration::from_millis(10)).await;
    assert_eq!(fetcher.calls(), 2);
    (handle, svc)
}

#[tokio::test(start_paused = true)]
async fn a_renewal_retry_that_falls_in_a_newer_pause_waits_for_its_end() {
    let fetcher = Fetcher::script(vec![
        Step::token(1000 * SEC),
        Step::Fail(unavailable(Some("10")), Duration::ZERO),
        Step::Fail(unavailable(Some("30")), Duration::ZERO),
        Step::token(1000 * SEC),
    ]);
    // The renewal, due at 500 s, fails and asks for 10 s: a retry is scheduled for then.
    let (handle, mut svc) = first_renewal_failed(&fetcher).await;
    // Meanwhile a forced refresh fails and asks for 30 s: the retry waits for that.
    advance(5 * SEC).await;
    assert!(handle.force_refresh().await.unwrap_err().is_retryable());
    assert_eq!(fetcher.calls(), 3);
    advance(25 * SEC).await;
    assert_eq!(fetcher.calls(), 3, "the retry waits out the newer pause");
    advance(10 * SEC).await;
    assert_eq!(fetcher.calls(), 4, "and then renews: {:?}", handle.state());
    let res = send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(seen(&res), Some("Bearer tok-4"));
}

#[tokio::test(start_paused = true)]
async fn a_new_tokens_failed_renewal_gets_its_own_retry_while_an_old_one_is_pending() {
    let fetcher = Fetcher::script(vec![
        Step::token(1000 * SEC),
        Step::Fail(unavailable(Some("60")), Duration::ZERO),
        Step::token(40 * SEC),
        Step::Fail(unavailable(None), Duration::ZERO),
        Step::token(1000 * SEC),
    ]);
    // The first token's renewal fails and asks for 60 s: its retry is 60 s away.
    let (handle, mut svc) = first_renewal_failed(&fetcher).await;
    // A forced refresh gets a 40 s token, due for renewal after 20 s; that renewal fails.
    handle.force_refresh().await.unwrap();
    advance(21 * SEC).await;
    let res = send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(seen(&res), Some("Bearer tok-3"));
    advance(Duration::from_millis(10)).await;
    assert_eq!(fetcher.calls(), 4);
    // Its own retry comes 0.5–1 s later, long before the first token's would have.
    advance(SEC).await;
    assert_eq!(fetcher.calls(), 5, "{:?}", handle.state());
    let res = send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(seen(&res), Some("Bearer tok-5"));
}

#[tokio::test(start_paused = true)]
async fn a_renewal_that_falls_due_during_a_cooldown_is_made_when_it_ends() {
    let fetcher = Fetcher::script(vec![
        Step::token(1000 * SEC),
        Step::Fail(invalid_client(), Duration::ZERO),
        Step::token(1000 * SEC),
    ]);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .renew_ahead(500 * SEC)
        .max_backoff(60 * SEC)
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo::default());
    handle.warm_up().await.unwrap();

    // A forced refresh just before the renewal is due fails and cools down for 60 s.
    advance(490 * SEC).await;
    assert_eq!(
        handle.force_refresh().await.unwrap_err().kind(),
        ErrorKind::InvalidClient
    );
    // The renewal falls due at 500 s, in the cooldown: it is made when the cooldown ends.
    advance(11 * SEC).await;
    let res = send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(seen(&res), Some("Bearer tok-1"));
    advance(48 * SEC).await;
    assert_eq!(fetcher.calls(), 2, "nothing during the cooldown");
    advance(2 * SEC).await;
    assert_eq!(fetcher.calls(), 3, "{:?}", handle.state());
    let res = send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(seen(&res), Some("Bearer tok-3"));
}

#[tokio::test(start_paused = true)]
async fn requests_that_wait_on_a_renewal_the_token_ran_out_during_have_the_budget_from_then() {
    let fetcher = Fetcher::script(vec![
        Step::token(100 * SEC),
        Step::Hang,
        Step::Fail(unavailable(None), Duration::ZERO),
    ]);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .renew_ahead(9 * SEC)
        .fetch_timeout(10 * SEC)
        .retry_budget(5 * SEC)
        .initial_backoff(Duration::from_millis(100))
        .max_backoff(Duration::from_millis(200))
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo::default());
    handle.warm_up().await.unwrap();
    // The renewal starts at 91 s and hangs until its timeout at 101 s; the token expires
    // at 95 s, and a request comes at 95.5 s.
    advance(91 * SEC).await;
    send(&mut svc, get("/x")).await.unwrap();
    advance(Duration::ZERO).await; // the renewal's attempt starts
    advance(4500 * Duration::from_millis(1)).await;
    assert_eq!(handle.state()[0].status, TokenStatus::Expired);
    let came = tokio::time::Instant::now();
    let err = send(&mut svc, get("/x")).await.unwrap_err();
    // Its budget, counted from when it came, is spent when the hanging attempt times out:
    // no retries after that (from the timeout, they would have held it 5 s longer).
    assert_eq!(kind(&err), ErrorKind::Timeout);
    assert_eq!(came.elapsed(), Duration::from_millis(5500));
    assert_eq!(fetcher.calls(), 2);
}

#[tokio::test]
async fn a_zero_backoff_still_waits_between_attempts() {
    // Real time: a zero delay would retry as fast as the fetcher fails.
    let fetcher = Fetcher::script(vec![Step::Fail(unavailable(None), Duration::ZERO)]);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .initial_backoff(Duration::ZERO)
        .max_backoff(Duration::ZERO)
        .retry_budget(Duration::from_millis(300))
        .build();
    let err = layer.handle().warm_up().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HttpStatus);
    // At least 10 ms apart: at most 31 attempts in 300 ms (hundreds without the floor).
    let calls = fetcher.calls();
    assert!((2..=31).contains(&calls), "{calls} attempts in 300 ms");
}

/// How many tasks are alive on the current runtime.
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(start_paused = true)]
async fn a_fetch_retrying_for_a_dropped_layer_stops() {
    // A budget of an hour; the request that waited gives up after a second.
    let fetcher = Fetcher::script(vec![Step::Fail(unavailable(None), Duration::ZERO)]);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .retry_budget(3600 * SEC)
        .build();
    let mut svc = layer.layer(Echo::default());
    let waited = tokio::time::timeout(SEC, send(&mut svc, get("/x"))).await;
    assert!(waited.is_err(), "still retrying");
    assert_eq!(alive_tasks(), 1, "the fetch's driver");
    drop((layer, svc));
    // Its backoff (at most `max_backoff`, 2 s) ends and it finds nobody left.
    advance(3 * SEC).await;
    let calls = fetcher.calls();
    for _ in 0..60 {
        advance(SEC).await;
    }
    assert_eq!(fetcher.calls(), calls, "no fetch for a layer that is gone");
    assert_eq!(alive_tasks(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_renewal_retrying_for_a_dropped_layer_stops() {
    let fetcher = Fetcher::script(vec![
        Step::token(7200 * SEC),
        Step::Fail(unavailable(None), Duration::ZERO),
    ]);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .retry_budget(3600 * SEC)
        .build();
    let mut svc = layer.layer(Echo::default());
    send(&mut svc, get("/x")).await.unwrap();
    // Renewal due 60 s before expiry: this request starts it, and it keeps failing.
    advance(7145 * SEC).await;
    send(&mut svc, get("/x")).await.unwrap();
    for _ in 0..10 {
        advance(SEC / 10).await;
    }
    assert!(fetcher.calls() > 2, "the renewal is retrying");
    drop((layer, svc));
    advance(3 * SEC).await;
    let calls = fetcher.calls();
    for _ in 0..60 {
        advance(SEC).await;
    }
    assert_eq!(
        fetcher.calls(),
        calls,
        "no renewal for a layer that is gone"
    );
    assert_eq!(alive_tasks(), 0);
}
