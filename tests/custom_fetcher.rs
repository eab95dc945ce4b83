//! A fetcher of your own that fails with a `tower_oauth::Error` is treated as the
//! built-in fetcher is: a failure retrying cannot mend fails at once, after one fetch; a
//! retryable one is retried, no sooner than its `Retry-After`.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{get, Echo};
use http::StatusCode;
use tokio::time::Instant;
use tower::{service_fn, Layer, ServiceExt};
use tower_oauth::{BoxError, Error, ErrorKind, OAuthLayer, Token, TokenRequest};

/// A `service_fn` fetcher that answers `answers` in turn (the last one again when they
/// run out) and records when each fetch was made.
fn fetcher(
    answers: Vec<Result<Token, Error>>,
) -> (
    impl tower::Service<
            TokenRequest,
            Response = Token,
            Error = BoxError,
            Future = impl Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static,
    Arc<Mutex<Vec<Instant>>>,
) {
    let made = Arc::new(Mutex::new(Vec::new()));
    let log = made.clone();
    let answers = Arc::new(answers);
    let svc = service_fn(move |_: TokenRequest| {
        let answers = answers.clone();
        let made = made.clone();
        async move {
            let n = {
                let mut made = made.lock().unwrap();
                made.push(Instant::now());
                made.len()
            };
            answers[(n - 1).min(answers.len() - 1)]
                .clone()
                .map_err(BoxError::from)
        }
    });
    (svc, log)
}

#[tokio::test(start_paused = true)]
async fn a_custom_fetchers_invalid_client_error_fails_at_once_after_one_fetch() {
    let invalid = Error::new(ErrorKind::InvalidClient)
        .with_source(std::io::Error::other("vault: client disabled"))
        .with_oauth_error("invalid_client")
        .with_status(StatusCode::UNAUTHORIZED);
    let (fetcher, made) = fetcher(vec![Err(invalid)]);
    // The default retry budget (5 s) would retry a retryable error for seconds.
    let layer = OAuthLayer::with_fetcher(fetcher).build();
    let echo = Echo::default();
    let start = Instant::now();

    let err = layer
        .layer(echo.clone())
        .oneshot(get("/"))
        .await
        .unwrap_err();

    assert!(
        start.elapsed() < Duration::from_millis(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(made.lock().unwrap().len(), 1, "one fetch, no retries");
    assert_eq!(echo.calls(), 0);
    let err = err.downcast_ref::<Error>().expect("a tower_oauth::Error");
    assert_eq!(err.kind(), ErrorKind::InvalidClient);
    assert!(!err.is_retryable());
    assert_eq!(err.oauth_error(), Some("invalid_client"));
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert!(std::error::Error::source(err).is_some());
}

#[tokio::test(start_paused = true)]
async fn a_custom_fetchers_retryable_error_is_retried_after_its_retry_after() {
    let busy = Error::new(ErrorKind::HttpStatus)
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
        .with_retry_after(Duration::from_secs(3));
    assert!(busy.is_retryable());
    let token = Token::new("tok", Some(Duration::from_secs(3600)));
    let (fetcher, made) = fetcher(vec![Err(busy), Ok(token)]);
    let layer = OAuthLayer::with_fetcher(fetcher).build();
    let echo = Echo::default();

    let res = layer.layer(echo.clone()).oneshot(get("/")).await.unwrap();

    assert_eq!(res.status(), StatusCode::OK);
    let made = made.lock().unwrap();
    assert_eq!(made.len(), 2, "one failure, one retry");
    let pause = made[1] - made[0];
    assert!(pause >= Duration::from_secs(3), "retried after {pause:?}");
    assert_eq!(echo.calls(), 1);
}
