//! What the layer logs: enough to diagnose a failure, and not once per request.

mod common;

use std::{
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{get, send, Fetcher};
use http::{header::WWW_AUTHENTICATE, Response, StatusCode};
use http_body_util::Full;
use tower::{service_fn, Layer};
use tower_oauth::{BoxError, OAuthLayer, Token, TokenRequest};
use tracing_subscriber::fmt::MakeWriter;

/// Log lines written by a subscriber set for the current thread (the tests run on a
/// current-thread runtime, so the fetch tasks log on it too).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(self.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn lines(&self, level: &str, containing: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(level) && l.contains(containing))
            .map(str::to_owned)
            .collect()
    }
}

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_fetch_is_logged_with_its_cause() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let fetcher = tower::service_fn(|_: TokenRequest| async {
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
    let failed = logs.lines("WARN", "token fetch failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("connection refused by the test"),
        "the log says why: {}",
        failed[0]
    );
}

#[tokio::test(start_paused = true)]
async fn an_api_that_rejects_every_token_is_warned_of_once_per_token_not_per_request() {
    let logs = Logs::default();
    let _guard = logs.capture();
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
    // tok-1 rejected, tok-2 fetched for it and rejected too: held off from then on (the
    // reissue interval has not passed), one warning for tok-2.
    assert_eq!(fetcher.calls(), 2);
    let held_off = logs.lines("WARN", "not re-issuing yet");
    assert_eq!(held_off.len(), 1, "{held_off:#?}");
    assert!(logs.lines("DEBUG", "held off").len() >= 18);
}

#[tokio::test(start_paused = true)]
async fn a_fetch_is_not_logged_as_a_part_of_the_request_that_started_it() {
    // The fetch serves every request that waits on it, and a renewal none: its span is a
    // root, not a child of whichever request's span was current.
    let logs = Logs::default();
    let _guard = logs.capture();
    let fetcher = Fetcher::tokens(Duration::from_secs(3600), Duration::ZERO);
    let mut svc = OAuthLayer::with_fetcher(fetcher)
        .build()
        .layer(common::Echo::default());
    let request = tracing::info_span!("user_request", id = 7);
    tracing::Instrument::instrument(send(&mut svc, get("/x")), request)
        .await
        .unwrap();
    let fetched = logs.lines("INFO", "token fetched");
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert!(fetched[0].contains("oauth.fetch"), "{}", fetched[0]);
    assert!(!fetched[0].contains("user_request"), "{}", fetched[0]);
}
