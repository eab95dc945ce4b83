//! `OAuthLayer` in a stack with `tower::retry` and `tower::timeout`, and which order to
//! stack them in.
//!
//! Outermost first:
//!
//! 1. **overall timeout**: bounds everything the caller waits for, every attempt and
//!    every pause between attempts included;
//! 2. **retry**: looks at each attempt's outcome and decides whether to try again;
//! 3. **per-attempt timeout**: bounds one attempt, so a stuck attempt fails early
//!    instead of using up the whole overall budget (whether it is then retried is the
//!    policy's call, see below);
//! 4. **`OAuthLayer`**, innermost: every attempt asks the token cache again, so an attempt
//!    after a token was renewed or re-issued carries the current token, not the one the
//!    first attempt had. And a token fetch is never lost to a timeout above it: the fetch
//!    belongs to a background task, not to the request that started it, so when an
//!    attempt times out the fetch goes on, and the next request (or attempt) gets its
//!    token without a new fetch.
//!
//! With the layer outside the retry instead, the token would be added once and every
//! attempt would resend it, stale or not, and a failed token fetch would never reach the
//! retry policy.
//!
//! The policy, the crate's `tower_oauth::retry::RetryTokenErrors`, retries only what the
//! crate marks retryable (`tower_oauth::Error::is_retryable`), i.e. a token endpoint
//! that is down, overloaded or unreachable; never bad credentials. It pauses until the
//! layer's cooldown after the failure is over. An expired per-attempt timeout is not
//! retried, since the server may have acted on the request; write a policy of your own
//! that also retries `tower::timeout::error::Elapsed` for requests safe to repeat.
//!
//! The demonstration, against the embedded mock SimpleDocs server:
//!
//! * the token endpoint fails twice with 503; the retry policy tries again until it
//!   succeeds;
//! * the token endpoint gets slow after a revocation; one request's attempt times out
//!   while the new token is being fetched, the fetch completes anyway, and the next
//!   request uses that token without fetching again.
//!
//! ```text
//! cargo run --example retry_timeout
//! ```

use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Full;
use tower::{timeout::error::Elapsed, Service, ServiceBuilder, ServiceExt};
use tower_oauth::{
    mock::{MockServer, TokenFailure},
    retry::RetryTokenErrors,
    BoxError, ClientCredentials, OAuthLayer,
};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mock = MockServer::start().await?;
    let base = mock.base_url();
    println!("mock SimpleDocs server at {base}");

    let creds = ClientCredentials::new(&mock.token_url(), mock.client_id(), mock.client_secret())
        .scope("read write");
    // The layer retries failed token fetches by itself for up to `retry_budget` (5 s by
    // default) before it hands the error to the caller. It is zero here so that the
    // failures reach the retry policy and you can watch it work.
    let layer = OAuthLayer::builder(creds)
        .retry_budget(Duration::ZERO)
        .build();
    let handle = layer.handle();

    let mut api = ServiceBuilder::new()
        .timeout(Duration::from_secs(10)) // overall
        .retry(RetryTokenErrors::new().retries(4))
        .timeout(Duration::from_secs(1)) // per attempt
        .layer(layer)
        .service(tower_oauth::fetch::https_client());
    let workflows = || Request::get(format!("{base}/api/v1/workflows")).body(Full::default());

    println!("\n1. the token endpoint answers 503 twice");
    mock.fail_token_requests(2, TokenFailure::Status(StatusCode::SERVICE_UNAVAILABLE));
    let res = api.ready().await?.call(workflows()?).await?;
    println!("  GET /api/v1/workflows: {}", res.status());
    let stats = mock.stats();
    println!(
        "  token requests: {} ({} failed), tokens issued: {}",
        stats.token_requests, stats.token_errors, stats.tokens_issued
    );
    if res.status() != StatusCode::OK || stats.tokens_issued != 1 || stats.token_errors != 2 {
        return Err("expected success on the third token request".into());
    }

    println!("\n2. the token is revoked and the token endpoint takes 1.5 s to answer");
    mock.revoke_all();
    mock.set_token_delay(Duration::from_millis(1500));
    match api.ready().await?.call(workflows()?).await {
        Err(err) if err.is::<Elapsed>() => {
            println!("  GET /api/v1/workflows: attempt timed out while the new token was fetched")
        }
        other => return Err(format!("expected a per-attempt timeout, got {other:?}").into()),
    }
    println!("  fetch in flight: {}", handle.state()[0].fetching);
    // Wait for the background fetch to finish (no request needs to drive it).
    for _ in 0..50 {
        if !handle.state()[0].fetching {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = api.ready().await?.call(workflows()?).await?;
    println!("  GET /api/v1/workflows: {}", res.status());
    let stats = mock.stats();
    println!(
        "  tokens issued: {} (the timed-out attempt's fetch completed and was used)",
        stats.tokens_issued
    );
    if res.status() != StatusCode::OK || stats.tokens_issued != 2 {
        return Err("expected the second token to be fetched once and used".into());
    }
    println!("\ntoken requests made by the layer: {}", handle.fetches());
    Ok(())
}
