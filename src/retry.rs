//! A `tower::retry` policy for token failures: [`RetryTokenErrors`].
//!
//! The layer retries failed token fetches itself, within its
//! [retry budget](crate::OAuthLayerBuilder::retry_budget). Past that, it answers the error for a
//! cooldown. Put `tower::retry::RetryLayer::new(RetryTokenErrors::new())` outside the
//! layer to send a request again once the cooldown is over:
//!
//! ```
//! use bytes::Bytes;
//! use http::Request;
//! use http_body_util::Full;
//! use tower::{retry::RetryLayer, ServiceBuilder};
//! use tower_oauth::{retry::RetryTokenErrors, BoxError, OAuthLayer, Token, TokenRequest};
//!
//! # let fetcher = tower::service_fn(|_: TokenRequest| async {
//! #     Ok::<_, BoxError>(Token::new("tok", None))
//! # });
//! # let http = tower::service_fn(|_: Request<Full<Bytes>>| async {
//! #     Ok::<_, BoxError>(http::Response::new(()))
//! # });
//! let api = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryTokenErrors::new().retries(2)))
//!     .layer(OAuthLayer::with_fetcher(fetcher).build())
//!     .service(http);
//! # let _ = api;
//! ```

use std::time::Duration;

use http::Request;
use tower::retry::Policy;

use crate::error::{BoxError, Error};

/// Retries a request whose token could not be had, when retrying can help.
///
/// It retries when the error is a [`tower_oauth::Error`](crate::Error) that
/// [`is_retryable`](crate::Error::is_retryable) (a token endpoint down, overloaded or
/// unreachable), and never for other errors (bad credentials, the inner service's own
/// errors) or for responses. Before each retry it pauses for the longest of the error's
/// [`cooldown`](crate::Error::cooldown), its [`retry_after`](crate::Error::retry_after)
/// and [`min_pause`](Self::min_pause).
///
/// Requests must be `Request<B>` with `B: Clone`, since each attempt sends a copy:
/// `Full<Bytes>`, `String`, `Empty`. `tower::retry` clones the policy per request, so
/// the retry count is per request.
#[derive(Debug, Clone)]
pub struct RetryTokenErrors {
    retries: u32,
    min_pause: Duration,
}

impl RetryTokenErrors {
    /// A policy that retries once, pausing at least 100 ms.
    pub fn new() -> Self {
        Self {
            retries: 1,
            min_pause: Duration::from_millis(100),
        }
    }

    /// How many times a request is retried at most. Default: 1.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The shortest pause before a retry, when the error asks for none longer.
    /// Default: 100 ms.
    pub fn min_pause(mut self, pause: Duration) -> Self {
        self.min_pause = pause;
        self
    }

    /// The pause before retrying after `result`, if it is to be retried; counts the retry.
    fn decide<Res>(&mut self, result: &Result<Res, BoxError>) -> Option<Duration> {
        let err = result.as_ref().err()?.downcast_ref::<Error>()?;
        if !err.is_retryable() || self.retries == 0 {
            return None;
        }
        self.retries -= 1;
        let asked = err.cooldown().max(err.retry_after()).unwrap_or_default();
        Some(asked.max(self.min_pause))
    }
}

impl Default for RetryTokenErrors {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Clone, Res> Policy<Request<B>, Res, BoxError> for RetryTokenErrors {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _req: &mut Request<B>,
        result: &mut Result<Res, BoxError>,
    ) -> Option<Self::Future> {
        self.decide(result).map(tokio::time::sleep)
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        Some(req.clone())
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use tokio::time::Instant;

    use super::*;
    use crate::ErrorKind;

    fn failed(err: Error) -> Result<(), BoxError> {
        Err(Box::new(err))
    }

    #[test]
    fn a_retryable_token_error_is_retried_as_many_times_as_allowed() {
        let mut policy = RetryTokenErrors::new().retries(2);
        let busy = || failed(Error::new(ErrorKind::Transport));
        assert_eq!(policy.decide(&busy()), Some(Duration::from_millis(100)));
        assert_eq!(policy.decide(&busy()), Some(Duration::from_millis(100)));
        assert_eq!(policy.decide(&busy()), None);
    }

    #[test]
    fn other_errors_and_responses_are_never_retried() {
        let mut policy = RetryTokenErrors::new().retries(5);
        let invalid = Error::new(ErrorKind::InvalidClient).with_oauth_error("invalid_client");
        assert_eq!(policy.decide(&failed(invalid)), None);
        let client_error = Error::new(ErrorKind::HttpStatus).with_status(StatusCode::BAD_REQUEST);
        assert_eq!(policy.decide(&failed(client_error)), None);
        let inner: Result<(), BoxError> = Err(std::io::Error::other("reset").into());
        assert_eq!(policy.decide(&inner), None);
        assert_eq!(policy.decide(&Ok::<_, BoxError>(())), None);
        // Nothing was counted: a retryable error still has all five retries.
        for _ in 0..5 {
            assert!(policy
                .decide(&failed(Error::new(ErrorKind::Timeout)))
                .is_some());
        }
    }

    #[test]
    fn the_pause_is_at_least_what_the_error_asks_for() {
        let mut policy = RetryTokenErrors::new().retries(3);
        let busy = Error::new(ErrorKind::HttpStatus)
            .with_status(StatusCode::SERVICE_UNAVAILABLE)
            .with_retry_after(Duration::from_secs(7));
        assert_eq!(policy.decide(&failed(busy)), Some(Duration::from_secs(7)));

        let cooling = Error::new(ErrorKind::Transport)
            .with_cooldown_until(Instant::now() + Duration::from_secs(30));
        let pause = policy.decide(&failed(cooling)).unwrap();
        assert!(
            pause > Duration::from_secs(29) && pause <= Duration::from_secs(30),
            "{pause:?}"
        );

        let quick = Error::new(ErrorKind::Transport).with_retry_after(Duration::from_millis(1));
        assert_eq!(
            policy.decide(&failed(quick)),
            Some(Duration::from_millis(100))
        );
    }

    #[test]
    fn requests_with_clonable_bodies_are_copied_for_each_attempt() {
        let mut policy = RetryTokenErrors::new();
        let req = Request::post("http://api.test/upload")
            .body(String::from("payload"))
            .unwrap();
        let copy = Policy::<_, (), BoxError>::clone_request(&mut policy, &req).unwrap();
        assert_eq!((copy.uri(), copy.body()), (req.uri(), req.body()));
    }
}
