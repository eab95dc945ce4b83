//! The token cache: header insertion, single flight, hand-off, renewal ahead of expiry.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use common::{advance, body_of, bounded, get, seen, send, Echo, Fetcher, Step};
use futures_util::FutureExt;
use http::{header::AUTHORIZATION, HeaderValue, Request, Response};
use http_body_util::{Empty, Full};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_oauth::{FetchReason, OAuthLayer, ScopePolicy, Token, TokenRequest, TokenStatus};

const SEC: Duration = Duration::from_secs(1);

fn layer(fetcher: &Fetcher) -> OAuthLayer {
    OAuthLayer::with_fetcher(fetcher.clone())
        .renew_ahead(20 * SEC)
        .build()
}

type Sent = Arc<Mutex<Vec<HeaderValue>>>;

/// An inner service that answers at once and records the `Authorization` values it is
/// sent.
fn recording() -> (
    Sent,
    impl Service<
            Request<Empty<Bytes>>,
            Response = Response<Empty<Bytes>>,
            Error = std::convert::Infallible,
            Future = impl std::future::Future + Send + 'static,
        > + Clone
        + Send
        + 'static,
) {
    let sent: Sent = Arc::default();
    let sink = sent.clone();
    let inner = service_fn(move |req: Request<Empty<Bytes>>| {
        let sink = sink.clone();
        async move {
            if let Some(v) = req.headers().get(AUTHORIZATION) {
                sink.lock().unwrap().push(v.clone());
            }
            Ok::<_, std::convert::Infallible>(Response::new(Empty::<Bytes>::new()))
        }
    });
    (sent, inner)
}

#[tokio::test(start_paused = true)]
async fn the_bearer_header_is_added_and_marked_sensitive() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let (captured, inner) = recording();
    let mut svc = layer(&fetcher).layer(inner);
    for _ in 0..3 {
        let req = Request::get("/x").body(Empty::new()).unwrap();
        send(&mut svc, req).await.unwrap();
    }
    let captured = captured.lock().unwrap();
    assert_eq!(captured.len(), 3);
    for value in captured.iter() {
        assert_eq!(value.to_str().unwrap(), "Bearer tok-1");
        assert!(value.is_sensitive());
    }
    assert_eq!(fetcher.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_clone_that_keeps_sending_makes_its_own_copy_of_the_header_once_per_token() {
    // A clone per worker thread writes only its own header's reference count. Seen from
    // the inner service: a clone's first requests share the layer's header bytes (a
    // clone made for one request never copies); then its requests share one copy of its
    // own, another clone's another; and a new token reaches every clone at once.
    const PER_CLONE: usize = 40;
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let (captured, inner) = recording();
    let layer = layer(&fetcher);
    layer.handle().warm_up().await.unwrap();
    let mut a = layer.layer(inner);
    let mut b = a.clone();
    let get = || Request::get("/x").body(Empty::new()).unwrap();
    for _ in 0..PER_CLONE {
        send(&mut a, get()).await.unwrap();
    }
    for _ in 0..PER_CLONE {
        send(&mut b, get()).await.unwrap();
    }
    layer.handle().force_refresh().await.unwrap();
    send(&mut a, get()).await.unwrap();
    send(&mut b, get()).await.unwrap();

    let sent = captured.lock().unwrap();
    let (first, renewed) = sent.split_at(2 * PER_CLONE);
    assert!(first
        .iter()
        .all(|v| v == "Bearer tok-1" && v.is_sensitive()));
    assert!(renewed
        .iter()
        .all(|v| v == "Bearer tok-2" && v.is_sensitive()));
    let bytes_of = |v: &HeaderValue| v.as_bytes().as_ptr();
    let (a_sent, b_sent) = first.split_at(PER_CLONE);
    assert_eq!(
        bytes_of(&a_sent[0]),
        bytes_of(&b_sent[0]),
        "at first, both send the layer's header"
    );
    for sent in [a_sent, b_sent] {
        let shared = sent
            .iter()
            .take_while(|v| bytes_of(v) == bytes_of(&a_sent[0]))
            .count();
        // `OWN_COPY_AFTER` in src/service.rs.
        assert_eq!(
            shared, 16,
            "sixteen requests with the layer's header, then a copy"
        );
    }
    let a_own = bytes_of(&a_sent[PER_CLONE - 1]);
    let b_own = bytes_of(&b_sent[PER_CLONE - 1]);
    assert_ne!(a_own, bytes_of(&a_sent[0]), "then a copy of their own");
    assert_ne!(a_own, b_own, "each clone has its own copy");
    assert_eq!(
        bytes_of(&a_sent[PER_CLONE - 2]),
        a_own,
        "one copy, not one per request"
    );
    assert_eq!(bytes_of(&b_sent[PER_CLONE - 2]), b_own);
    assert_eq!(fetcher.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_requests_without_a_token_cause_one_fetch() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::from_millis(50));
    let echo = Echo::default();
    let svc = layer(&fetcher).layer(echo.clone());
    let calls = (0..1000).map(|_| {
        let mut svc = svc.clone();
        tokio::spawn(async move { send(&mut svc, get("/x")).await })
    });
    let results = futures_util::future::join_all(calls).await;
    for r in results {
        let res = r.unwrap().unwrap();
        assert_eq!(seen(&res), Some("Bearer tok-1"));
    }
    assert_eq!(fetcher.calls(), 1);
    assert_eq!(echo.calls(), 1000);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_request_that_started_the_fetch_does_not_fail_the_others() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::from_millis(100));
    let svc = layer(&fetcher).layer(Echo::default());

    let mut first = svc.clone();
    let first = tokio::spawn(async move { send(&mut first, get("/a")).await });
    // Let the first request start the fetch, then take it away.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(fetcher.calls(), 1);
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());

    let mut second = svc.clone();
    let res = send(&mut second, get("/b")).await.unwrap();
    assert_eq!(seen(&res), Some("Bearer tok-1"));
    assert_eq!(
        fetcher.calls(),
        1,
        "the second request joined the same fetch"
    );
}

#[tokio::test(start_paused = true)]
async fn a_token_is_renewed_ahead_of_expiry_while_requests_keep_using_it() {
    // Lifetime 100 s, renewal due at 80 s, the renewal fetch takes 5 s.
    let fetcher = Fetcher::script(vec![
        Step::Token {
            lifetime: Some(100 * SEC),
            delay: Duration::ZERO,
        },
        Step::Token {
            lifetime: Some(100 * SEC),
            delay: 5 * SEC,
        },
    ]);
    let layer = layer(&fetcher);
    let handle = layer.handle();
    let mut svc = layer.layer(Echo::default());
    handle.warm_up().await.unwrap();

    advance(81 * SEC).await;
    assert_eq!(handle.state()[0].status, TokenStatus::RenewalDue);
    // Every request in the renewal window completes at once with the current token:
    // none of them waits for the fetch.
    for _ in 0..10 {
        let fut = ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
            .await
            .unwrap()
            .call(get("/x"));
        let res = fut.now_or_never().expect("no waiting").unwrap();
        assert_eq!(seen(&res), Some("Bearer tok-1"));
    }
    advance(Duration::ZERO).await;
    assert_eq!(
        fetcher.calls(),
        2,
        "one background renewal, however many requests"
    );
    assert!(handle.state()[0].fetching);

    advance(6 * SEC).await;
    let res = send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(seen(&res), Some("Bearer tok-2"));
    assert_eq!(fetcher.calls(), 2);
    let reasons: Vec<FetchReason> = fetcher
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.reason)
        .collect();
    assert_eq!(reasons, [FetchReason::First, FetchReason::AheadOfExpiry]);
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_is_never_sent_and_requests_wait_for_a_new_one() {
    let fetcher = Fetcher::tokens(100 * SEC, SEC);
    let layer = layer(&fetcher);
    let handle = layer.handle();
    let echo = Echo::default();
    let mut svc = layer.layer(echo.clone());
    handle.warm_up().await.unwrap();
    // Idle through the renewal window, past expiry (100 s minus the 5 s margin).
    advance(96 * SEC).await;
    assert_eq!(handle.state()[0].status, TokenStatus::Expired);
    let res = send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(seen(&res), Some("Bearer tok-2"));
    assert_eq!(fetcher.calls(), 2);
    assert_eq!(
        *echo.seen.lock().unwrap(),
        [Some("Bearer tok-2".to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn a_missing_or_zero_expires_in_gets_the_default_lifetime() {
    for lifetime in [None, Some(Duration::ZERO)] {
        let fetcher = Fetcher::script(vec![Step::Token {
            lifetime,
            delay: Duration::ZERO,
        }]);
        let layer = OAuthLayer::with_fetcher(fetcher.clone())
            .default_lifetime(30 * SEC)
            .build();
        let handle = layer.handle();
        handle.warm_up().await.unwrap();
        advance(Duration::ZERO).await;
        // 30 s minus the expiry margin, capped at a tenth of the lifetime (3 s).
        assert_eq!(handle.state()[0].expires_in, Some(27 * SEC), "{lifetime:?}");
        assert_eq!(handle.state()[0].status, TokenStatus::Fresh);
        advance(28 * SEC).await;
        assert_eq!(handle.state()[0].status, TokenStatus::Expired);
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_with_its_own_authorization_is_left_alone() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let mut svc = layer(&fetcher).layer(Echo::default());
    let mut req = get("/x");
    req.headers_mut().insert(
        AUTHORIZATION,
        HeaderValue::from_static("Basic dXNlcjpwdw=="),
    );
    let res = send(&mut svc, req).await.unwrap();
    assert_eq!(seen(&res), Some("Basic dXNlcjpwdw=="));
    assert_eq!(fetcher.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn with_a_token_cached_a_request_with_its_own_authorization_is_passed_through_exactly() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let layer = layer(&fetcher);
    layer.handle().warm_up().await.unwrap();
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = heads.clone();
    let mut svc = layer.layer(service_fn(move |req: Request<Full<Bytes>>| {
        record.lock().unwrap().push(req.headers().clone());
        async { Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new()))) }
    }));

    let mut own = HeaderValue::from_static("Basic dXNlcjpwdw==");
    own.set_sensitive(true);
    // One value; then two `Authorization` values among other repeated headers.
    let mut single = get("/x");
    single
        .headers_mut()
        .insert("x-a", HeaderValue::from_static("1"));
    single.headers_mut().insert(AUTHORIZATION, own.clone());
    single
        .headers_mut()
        .insert("x-b", HeaderValue::from_static("2"));
    let mut several = single.clone();
    several
        .headers_mut()
        .append(AUTHORIZATION, HeaderValue::from_static("Basic second"));
    several
        .headers_mut()
        .append("x-a", HeaderValue::from_static("3"));
    let sent = [single.headers().clone(), several.headers().clone()];
    send(&mut svc, single).await.unwrap();
    send(&mut svc, several).await.unwrap();

    let heads = heads.lock().unwrap();
    for (got, want) in heads.iter().zip(&sent) {
        let order = |h: &http::HeaderMap| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.clone(), v.is_sensitive()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            order(got),
            order(want),
            "the same headers, in the same order"
        );
    }
    assert_eq!(heads.len(), 2);
    assert_eq!(fetcher.calls(), 1, "only the warm-up");
}

#[tokio::test(start_paused = true)]
async fn the_fetcher_is_asked_for_the_policy_scope() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let mut svc = OAuthLayer::with_fetcher(fetcher.clone())
        .scope_policy(ScopePolicy::fixed(Some("write read".into())))
        .build()
        .layer(Echo::default());
    send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(fetcher.scopes(), [Some("read write".to_owned())]);
}

#[tokio::test(start_paused = true)]
async fn services_from_one_layer_share_one_token() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let layer = layer(&fetcher);
    let mut a = layer.layer(Echo::default());
    let mut b = layer.layer(Echo::default());
    let ra = send(&mut a, get("/a")).await.unwrap();
    let rb = send(&mut b, get("/b")).await.unwrap();
    assert_eq!(seen(&ra), seen(&rb));
    assert_eq!(fetcher.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_body_reaches_the_inner_service_intact() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let mut svc = layer(&fetcher).layer(Echo::default());
    let req = Request::post("/x")
        .body(Full::new(Bytes::from_static(b"hello world")))
        .unwrap();
    let res = send(&mut svc, req).await.unwrap();
    assert_eq!(&body_of(res).await[..], b"hello world");
}

#[tokio::test(start_paused = true)]
async fn a_renewal_that_could_not_start_outside_a_runtime_is_started_by_a_later_request() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let layer = layer(&fetcher);
    let handle = layer.handle();
    let svc = layer.layer(Echo::default());
    handle.warm_up().await.unwrap();
    advance(81 * SEC).await;

    // A request from a thread with no tokio runtime still gets the current token, but
    // cannot spawn the renewal.
    let mut elsewhere = svc.clone();
    let seen_there = std::thread::spawn(move || {
        let fut = send(&mut elsewhere, get("/x"));
        let res = fut.now_or_never().expect("a cache hit").unwrap();
        seen(&res).map(str::to_owned)
    })
    .join()
    .unwrap();
    assert_eq!(seen_there.as_deref(), Some("Bearer tok-1"));
    assert_eq!(fetcher.calls(), 1);

    // The next request on the runtime starts it.
    let mut here = svc.clone();
    send(&mut here, get("/x")).await.unwrap();
    advance(Duration::ZERO).await;
    assert_eq!(fetcher.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_renewal_set_later_than_the_expiry_margin_does_not_keep_the_token_in_use_past_it() {
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    // `renew_ahead` (1 s) shorter than the default expiry margin (5 s).
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .renew_ahead(SEC)
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo::default());
    let res = send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(seen(&res), Some("Bearer tok-1"));
    advance(96 * SEC).await; // past the margin (95 s), before the renewal point (99 s)
    assert_eq!(handle.state()[0].status, TokenStatus::Expired);
    let res = send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(seen(&res), Some("Bearer tok-2"));
}

/// A runtime of its own, to be shut down while the layer lives on.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The `Authorization` a request through `layer` carries, sent on `runtime`.
fn sent_on(runtime: &tokio::runtime::Runtime, layer: &OAuthLayer) -> Option<String> {
    runtime.block_on(async {
        let mut svc = layer.layer(Echo::default());
        let res = send(&mut svc, get("/x")).await.unwrap();
        seen(&res).map(str::to_owned)
    })
}

#[test]
fn a_token_whose_timers_runtime_shut_down_is_not_sent_from_another_runtime() {
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::ZERO);
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let first = runtime();
    first.block_on(layer.handle().warm_up()).unwrap();
    // The task that would expire the token goes with its runtime; nothing else would
    // ever move the token's phase.
    drop(first);
    assert_eq!(layer.handle().state()[0].status, TokenStatus::Expired);
    let sent = sent_on(&runtime(), &layer);
    assert_eq!(sent.as_deref(), Some("Bearer tok-2"));
    assert_eq!(fetcher.calls(), 2);
}

#[test]
fn a_token_whose_runtime_shut_down_before_its_timers_ever_ran_is_not_sent_either() {
    // This runtime polls the caller as soon as it is woken: `block_on` returns with the
    // token before the task that moves the token's phase was ever polled.
    let eager = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .event_interval(1)
        .build()
        .unwrap();
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::ZERO);
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let sent = sent_on(&eager, &layer);
    assert_eq!(sent.as_deref(), Some("Bearer tok-1"));
    drop(eager);
    assert_eq!(layer.handle().state()[0].status, TokenStatus::Expired);
    let sent = sent_on(&runtime(), &layer);
    assert_eq!(sent.as_deref(), Some("Bearer tok-2"));
}

#[test]
fn a_fetch_cut_off_by_its_runtime_shutting_down_is_started_again_on_the_next_request() {
    let fetcher = Fetcher::script(vec![
        Step::Hang,
        Step::Token {
            lifetime: Some(3600 * SEC),
            delay: Duration::ZERO,
        },
    ]);
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let first = runtime();
    let waited = first.block_on(async {
        let svc = layer.layer(Echo::default());
        tokio::time::timeout(SEC / 10, svc.oneshot(get("/x"))).await
    });
    assert!(waited.is_err(), "the first fetch hangs");
    // The fetch's task goes with its runtime, before it could answer.
    drop(first);
    let sent = runtime().block_on(async {
        let svc = layer.layer(Echo::default());
        let res = bounded(10 * SEC, svc.oneshot(get("/x")))
            .await
            .expect("a new fetch, not the dead one's error");
        seen(&res).map(str::to_owned)
    });
    assert_eq!(sent.as_deref(), Some("Bearer tok-2"));
    assert_eq!(fetcher.calls(), 2);
}

/// A request left waiting on a runtime that is no longer driven.
type Waiting = tokio::task::JoinHandle<Result<Option<String>, tower_oauth::BoxError>>;

#[test]
fn a_fetch_stranded_on_a_runtime_no_longer_driven_is_given_up_by_the_next_request_elsewhere() {
    // The first fetch, taking `SEC / 5` of tokio time, starts on a runtime that is then
    // kept but no longer driven, so that it never ends; later fetches answer at once. On
    // a driven runtime a fetch cannot run longer than twice the retry budget plus the
    // fetch timeout, plus a second: 1.6 s here.
    let fetcher = Fetcher::script(vec![
        Step::Token {
            lifetime: Some(3600 * SEC),
            delay: SEC / 5,
        },
        Step::Token {
            lifetime: Some(3600 * SEC),
            delay: Duration::ZERO,
        },
    ]);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .fetch_timeout(SEC / 5)
        .retry_budget(SEC / 10)
        .build();
    let kept = runtime();
    let mut svc = layer.layer(Echo::default());
    let waiting: Waiting = kept.spawn(async move {
        send(&mut svc, get("/x"))
            .await
            .map(|r| seen(&r).map(str::to_owned))
    });
    kept.block_on(async { tokio::time::sleep(SEC / 50).await });
    assert!(
        !waiting.is_finished(),
        "block_on returns before the fetch ends"
    );
    assert!(layer.handle().state()[0].fetching);

    std::thread::sleep(2 * (SEC / 5 + SEC / 10) + SEC + SEC / 10);
    // A request on another runtime gives the stranded fetch up and fetches there.
    let other = runtime();
    let warmed = other.block_on(async {
        tokio::time::timeout(10 * SEC, layer.handle().warm_up())
            .await
            .expect("bounded by the layer, not a hang")
    });
    assert!(warmed.is_ok(), "{warmed:?}");
    assert_eq!(sent_on(&other, &layer).as_deref(), Some("Bearer tok-2"));
    assert_eq!(fetcher.calls(), 2);
    // The kept runtime runs again: the request waiting there was told, with a retryable
    // timeout; its fetch ends, and its token is not installed over the one in use (its
    // timers would run on the runtime that stalled).
    let err = kept.block_on(async { waiting.await.unwrap().unwrap_err() });
    let err = err
        .downcast_ref::<tower_oauth::Error>()
        .expect("a token error");
    assert_eq!(err.kind(), tower_oauth::ErrorKind::Timeout, "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("another runtime"), "{err}");
    kept.block_on(async { tokio::time::sleep(SEC / 2).await });
    assert_eq!(sent_on(&other, &layer).as_deref(), Some("Bearer tok-2"));
    assert_eq!(fetcher.calls(), 2);
}

#[test]
fn a_fetch_whose_task_never_ran_is_started_again_by_the_next_request() {
    // The fetch's task is queued on a runtime that is never driven, then dropped with it
    // before it was ever polled (so its own guard never ran).
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::ZERO);
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let never_driven = runtime();
    {
        let _entered = never_driven.enter();
        let started = futures_util::FutureExt::now_or_never(layer.handle().warm_up());
        assert!(started.is_none(), "waiting for the fetch it queued");
    }
    assert!(layer.handle().state()[0].fetching);
    drop(never_driven);
    assert_eq!(fetcher.calls(), 0);
    // Not joined (it would never end, or end Cancelled): fetched anew.
    let warmed = runtime().block_on(async {
        tokio::time::timeout(10 * SEC, layer.handle().warm_up())
            .await
            .expect("bounded by the layer, not a hang")
    });
    assert!(warmed.is_ok(), "{warmed:?}");
    assert_eq!(fetcher.calls(), 1);
}

#[test]
fn a_fetch_given_up_as_stranded_stops_retrying_when_its_runtime_runs_again() {
    // The first attempt fails on a runtime that then stops being driven, in the backoff
    // before its retry; a request elsewhere gives it up later and fetches there.
    let fetcher = Fetcher::script(vec![
        Step::Io,
        Step::Token {
            lifetime: Some(3600 * SEC),
            delay: Duration::ZERO,
        },
    ]);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .fetch_timeout(SEC / 5)
        .retry_budget(SEC / 5)
        .initial_backoff(SEC / 10)
        .build();
    let kept = runtime();
    let handle = layer.handle();
    let _waiting = kept.spawn(async move { handle.warm_up().await });
    kept.block_on(async { tokio::time::sleep(SEC / 100).await });
    assert_eq!(fetcher.calls(), 1, "failed, backing off");
    std::thread::sleep(2 * (SEC / 5 + SEC / 5) + SEC + SEC / 10);
    let other = runtime();
    assert_eq!(sent_on(&other, &layer).as_deref(), Some("Bearer tok-2"));
    // Its backoff over, the given-up fetch finds it was replaced and makes no attempt.
    kept.block_on(async { tokio::time::sleep(SEC / 2).await });
    assert_eq!(fetcher.calls(), 2);
}

#[test]
fn requests_on_any_runtime_or_none_join_a_fetch_on_a_driven_runtime() {
    // Whatever their clock: a paused one, one a test advanced by an hour (a runtime's
    // paused clock says nothing of how long a fetch elsewhere has run), or none at all.
    type Join = fn(&OAuthLayer) -> Result<(), tower_oauth::Error>;
    fn paused() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    }
    let joiners: [(&str, Join); 4] = [
        ("real clock", |layer| {
            runtime().block_on(layer.handle().warm_up())
        }),
        ("paused clock", |layer| {
            paused().block_on(layer.handle().warm_up())
        }),
        ("advanced clock", |layer| {
            paused().block_on(async {
                tokio::time::advance(3600 * SEC).await;
                layer.handle().warm_up().await
            })
        }),
        ("no runtime", |layer| {
            plain_block_on(layer.handle().warm_up())
        }),
    ];
    for (what, join) in joiners {
        let fetcher = Fetcher::tokens(3600 * SEC, SEC / 5);
        let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
        let driven = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let handle = layer.handle();
        let first = driven.spawn(async move { handle.warm_up().await });
        while !layer.handle().state()[0].fetching {
            std::thread::yield_now();
        }
        assert!(join(&layer).is_ok(), "{what}");
        assert!(driven.block_on(first).unwrap().is_ok(), "{what}");
        assert_eq!(fetcher.calls(), 1, "{what}");
    }
}

/// Polls `fut` to completion on this thread, with no tokio runtime.
fn plain_block_on<F: std::future::Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[tokio::test(start_paused = true)]
async fn a_token_shorter_than_twice_renew_ahead_is_renewed_at_half_its_life() {
    // The default `renew_ahead` (60 s) is more than half of a 100 s lifetime: renewal is
    // due at 50 s, not at 40 s. Without jitter, which would move it earlier.
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .renew_jitter(0.0)
        .build();
    let handle = layer.handle();
    handle.warm_up().await.unwrap();
    advance(49 * SEC).await;
    assert_eq!(handle.state()[0].status, TokenStatus::Fresh);
    advance(2 * SEC).await;
    assert_eq!(handle.state()[0].status, TokenStatus::RenewalDue);
}

#[tokio::test(start_paused = true)]
async fn a_token_the_scope_check_lets_through_is_served_from_the_hot_path() {
    // `read write` is asked for. Granted only `read` without strict mode, or all of it in
    // strict mode, the token is used as it is: a clone that keeps sending makes its own
    // copy of the header, as on any cache hit (the slow path sends the layer's).
    for (granted, strict) in [("read", false), ("read write", true)] {
        let fetcher = service_fn(move |_: TokenRequest| async move {
            Ok::<_, std::convert::Infallible>(
                Token::new("narrow", Some(100 * SEC)).with_scope(granted),
            )
        });
        let (captured, inner) = recording();
        let layer = OAuthLayer::with_fetcher(fetcher)
            .scope_policy(ScopePolicy::fixed(Some("read write".into())))
            .strict_scope(strict)
            .build();
        layer.handle().warm_up().await.unwrap();
        let mut svc = layer.layer(inner);
        for _ in 0..40 {
            let req = Request::get("/x").body(Empty::new()).unwrap();
            send(&mut svc, req).await.unwrap();
        }
        let sent = captured.lock().unwrap();
        assert_eq!(sent.len(), 40);
        let bytes_of = |v: &HeaderValue| v.as_bytes().as_ptr();
        assert_ne!(
            bytes_of(&sent[39]),
            bytes_of(&sent[0]),
            "granted {granted:?}, strict {strict}: the clone's own copy, from the hot path"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_reissued_token_rejected_exactly_reissue_interval_after_it_arrived_is_replaced() {
    // An api that rejects every token.
    let api = service_fn(|_req: Request<Full<Bytes>>| async {
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = http::StatusCode::UNAUTHORIZED;
        res.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="invalid_token""#),
        );
        Ok::<_, std::convert::Infallible>(res)
    });
    let fetcher = Fetcher::tokens(100 * SEC, Duration::ZERO);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .reissue_interval(2 * SEC)
        .build();
    let mut svc = layer.layer(api);
    // tok-1 is rejected, tok-2 fetched for it and rejected too: held off.
    send(&mut svc, get("/x")).await.unwrap();
    send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(fetcher.calls(), 2);
    // The hold-off lasts less than the interval: at exactly 2 s, tok-2 is replaced.
    advance(2 * SEC).await;
    send(&mut svc, get("/x")).await.unwrap();
    assert_eq!(fetcher.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_token_replaced_early_leaves_no_task_behind() {
    // Each token has a task that moves its phase on the clock; a token replaced long
    // before its renewal time (forced here, or rejected) must take its task with it.
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::ZERO);
    let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo::default());
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    assert_eq!(tasks(), 0);
    for _ in 0..100 {
        handle.force_refresh().await.unwrap();
        send(&mut svc, get("/x")).await.unwrap();
    }
    advance(Duration::ZERO).await;
    assert_eq!(fetcher.calls(), 100);
    assert_eq!(tasks(), 1, "the current token's task only");
    drop((layer, handle, svc));
    advance(Duration::ZERO).await;
    assert_eq!(tasks(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_renewal_retry_ends_with_its_layer() {
    let fetcher = Fetcher::script(vec![
        Step::Token {
            lifetime: Some(100 * SEC),
            delay: Duration::ZERO,
        },
        Step::Fail(
            tower_oauth::fetch::parse_token_response(
                http::StatusCode::SERVICE_UNAVAILABLE,
                &[(http::header::RETRY_AFTER, HeaderValue::from_static("3600"))]
                    .into_iter()
                    .collect(),
                b"",
            )
            .unwrap_err(),
            Duration::ZERO,
        ),
    ]);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .max_retry_after(3600 * SEC)
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo::default());
    send(&mut svc, get("/x")).await.unwrap();
    // The renewal, due at 50 s, fails and asks for an hour: a retry is scheduled then.
    advance(55 * SEC).await;
    send(&mut svc, get("/x")).await.unwrap();
    advance(Duration::ZERO).await;
    assert_eq!(fetcher.calls(), 2);
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    assert_eq!(tasks(), 2, "the token's timers and the retry");
    drop((layer, handle, svc));
    advance(Duration::ZERO).await;
    assert_eq!(tasks(), 0, "neither sleeps on for its layer");
}

#[tokio::test(start_paused = true)]
async fn a_token_that_expires_before_it_arrives_is_never_sent() {
    let ms = Duration::from_millis;
    for (lifetime, delay) in [
        // Its stated lifetime ran out while it was fetched.
        (ms(50), ms(100)),
        // Within its expiry margin (a tenth of 100 ms) on arrival: expired by the
        // layer's reckoning.
        (ms(100), ms(95)),
    ] {
        let fetcher = Fetcher::script(vec![
            Step::Token {
                lifetime: Some(lifetime),
                delay,
            },
            Step::Token {
                lifetime: Some(300 * SEC),
                delay: ms(10),
            },
        ]);
        let layer = OAuthLayer::with_fetcher(fetcher.clone()).build();
        let mut svc = layer.layer(Echo::default());
        let res = send(&mut svc, get("/x")).await.unwrap();
        // Counted as a failed attempt (retryable, like a timeout): the next one is used.
        assert_eq!(
            seen(&res),
            Some("Bearer tok-2"),
            "{lifetime:?} after {delay:?}"
        );
        assert_eq!(fetcher.calls(), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn tokens_that_always_expire_before_they_arrive_end_in_a_timeout_error() {
    let fetcher = Fetcher::tokens(Duration::from_millis(50), Duration::from_millis(100));
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .retry_budget(SEC)
        .build();
    let err = layer.handle().warm_up().await.unwrap_err();
    assert_eq!(err.kind(), tower_oauth::ErrorKind::Timeout, "{err}");
    assert!(
        err.to_string().contains("expired before it arrived"),
        "{err}"
    );
    assert!(fetcher.calls() > 1, "retried within the budget");
    assert_eq!(layer.handle().state()[0].status, TokenStatus::None);
}

#[tokio::test(start_paused = true)]
async fn the_default_lifetime_is_clamped_to_the_max_lifetime_too() {
    let fetcher = Fetcher::script(vec![Step::Token {
        lifetime: None,
        delay: Duration::ZERO,
    }]);
    let layer = OAuthLayer::with_fetcher(fetcher)
        .default_lifetime(300 * SEC)
        .max_lifetime(10 * SEC)
        .build();
    layer.handle().warm_up().await.unwrap();
    // 10 s less the margin (a tenth of it).
    assert_eq!(layer.handle().state()[0].expires_in, Some(9 * SEC));
}
