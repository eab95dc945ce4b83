//! What the layer logs: enough to diagnose a failure, and not once per request.
//!
//! One test, its cases one after another on current-thread runtimes under one subscriber
//! set for this thread: tests on other threads, with subscribers of their own, could
//! make it miss events (tracing caches a callsite's interest process-wide).

mod common;

use std::{future::Future, io, time::Duration};

use common::{get, send, Echo, Fetcher, Logs};
use http::{header::WWW_AUTHENTICATE, Response, StatusCode};
use http_body_util::Full;
use tower::{service_fn, Layer};
use tower_oauth::{BoxError, OAuthLayer, Token, TokenRequest};

#[test]
fn fetch_failures_held_off_reissues_and_fetches_are_each_logged_once() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let lines = |level: &str, containing: &str| -> Vec<String> {
        logs.text()
            .lines()
            .filter(|l| l.contains(level) && l.contains(containing))
            .map(str::to_owned)
            .collect()
    };

    paused(a_failed_fetch());
    let failed = lines("WARN", "token fetch failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("connection refused by the test"),
        "a failed fetch is logged with its cause: {}",
        failed[0]
    );

    logs.clear();
    paused(an_api_that_rejects_every_token());
    // tok-1 rejected, tok-2 fetched for it and rejected too: held off from then on (the
    // reissue interval has not passed). One warning for tok-2, not one per request.
    let held_off = lines("WARN", "not re-issuing yet");
    assert_eq!(held_off.len(), 1, "{held_off:#?}");
    assert!(lines("DEBUG", "held off").len() >= 18);

    logs.clear();
    paused(a_request_in_a_span_of_its_own());
    // The fetch serves every request that waits on it, and a renewal none: its span is a
    // root, not a child of whichever request's span was current.
    let fetched = lines("INFO", "token fetched");
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert!(fetched[0].contains("oauth.fetch"), "{}", fetched[0]);
    assert!(!fetched[0].contains("user_request"), "{}", fetched[0]);

    logs.clear();
    paused(two_named_layers_failing());
    // Each layer's fetch span carries its name.
    for name in ["simpledocs", "billing"] {
        let failed = lines("WARN", &format!("layer=\"{name}\""));
        assert_eq!(failed.len(), 1, "{name}: {}", logs.text());
        assert!(failed[0].contains("oauth.fetch"), "{}", failed[0]);
    }
}

fn paused(case: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(case);
}

async fn a_failed_fetch() {
    let fetcher = service_fn(|_: TokenRequest| async {
        Err::<Token, BoxError>(Box::new(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "connection refused by the test",
        )))
    });
    let layer = OAuthLayer::with_fetcher(fetcher)
        .retry_budget(Duration::ZERO)
        .build();
    let err = layer.handle().warm_up().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "token request failed",
        "Display keeps to itself"
    );
}

async fn an_api_that_rejects_every_token() {
    let fetcher = Fetcher::tokens(Duration::from_secs(3600), Duration::ZERO);
    let rejecting = service_fn(|_: http::Request<Full<bytes::Bytes>>| async {
        let mut res = Response::new(Full::<bytes::Bytes>::default());
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        res.headers_mut().insert(
            WWW_AUTHENTICATE,
            r#"Bearer error="invalid_token""#.parse().unwrap(),
        );
        Ok::<_, BoxError>(res)
    });
    let mut svc = OAuthLayer::with_fetcher(fetcher.clone())
        .build()
        .layer(rejecting);
    for _ in 0..20 {
        let res = send(&mut svc, get("/x")).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(fetcher.calls(), 2);
}

async fn a_request_in_a_span_of_its_own() {
    let fetcher = Fetcher::tokens(Duration::from_secs(3600), Duration::ZERO);
    let mut svc = OAuthLayer::with_fetcher(fetcher)
        .build()
        .layer(Echo::default());
    let request = tracing::info_span!("user_request", id = 7);
    tracing::Instrument::instrument(send(&mut svc, get("/x")), request)
        .await
        .unwrap();
}

/// Two named layers whose fetches fail alike: their errors say which layer failed.
async fn two_named_layers_failing() {
    let refused = || {
        service_fn(|_: TokenRequest| async {
            Err::<Token, BoxError>(Box::new(io::Error::other("refused")))
        })
    };
    let mut errors = Vec::new();
    for name in ["simpledocs", "billing"] {
        let layer = OAuthLayer::with_fetcher(refused())
            .name(name)
            .retry_budget(Duration::ZERO)
            .build();
        errors.push(layer.handle().warm_up().await.unwrap_err().to_string());
    }
    assert_eq!(
        errors,
        [
            "simpledocs: token request failed",
            "billing: token request failed"
        ]
    );
}
