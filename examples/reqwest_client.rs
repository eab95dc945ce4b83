//! OAuth tokens on a `reqwest` client, with `reqwest-middleware`.
//!
//! `ClientBuilder::new(client).with(OAuthMiddleware::with_client(client, creds))` is the
//! whole setup: tokens come over the same `reqwest::Client` (no second TLS stack), are
//! cached, renewed and fetched once however many requests need them. The example sends a
//! few GETs to `/api/v1/workflows` and a POST to `/api/v1/documents` (which needs the
//! `write` scope, hence `"read write"`), all on one token. Then the server revokes the
//! token, and the next upload is answered anyway: the middleware sees the `token_expired`
//! rejection, gets a new token and sends the request again, body and all.
//!
//! It runs against the embedded mock SimpleDocs server, which serves plain HTTP on
//! 127.0.0.1 (plain HTTP token URLs are allowed on loopback only):
//!
//! ```text
//! cargo run --example reqwest_client --features reqwest,test-util
//! ```
//!
//! Against the real API, build the `reqwest::Client` with a TLS feature of reqwest, use
//! `ClientCredentials::simpledocs(id, secret)` and `https://app.simpledocs.com/api/v1/...`
//! URLs; nothing else changes.

use reqwest::StatusCode;
use reqwest_middleware::ClientBuilder;
use tower_oauth::{mock::MockServer, reqwest::OAuthMiddleware, BoxError, ClientCredentials};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mock = MockServer::start().await?;
    let base = mock.base_url();
    println!("mock SimpleDocs server at {base}");

    let creds = ClientCredentials::new(&mock.token_url(), mock.client_id(), mock.client_secret())
        .scope("read write");
    let client = reqwest::Client::new();
    let oauth = OAuthMiddleware::with_client(client.clone(), creds);
    let handle = oauth.handle();
    let api = ClientBuilder::new(client).with(oauth).build();

    for i in 1..=3 {
        let res = api.get(format!("{base}/api/v1/workflows")).send().await?;
        show(&format!("GET  /api/v1/workflows #{i}"), res, StatusCode::OK).await?;
    }

    let upload = || {
        api.post(format!("{base}/api/v1/documents"))
            .header("content-type", "text/plain")
            .body("Quarterly report: all workflows on track.")
    };
    show(
        "POST /api/v1/documents",
        upload().send().await?,
        StatusCode::CREATED,
    )
    .await?;
    println!("token requests so far: {}", handle.fetches());

    println!("\nthe server revokes every token...");
    mock.revoke_all();
    show(
        "POST /api/v1/documents",
        upload().send().await?,
        StatusCode::CREATED,
    )
    .await?;

    let stats = mock.stats();
    println!(
        "\ntoken requests: {}, tokens issued: {}, API requests: {} ({} answered token_expired)",
        handle.fetches(),
        stats.tokens_issued,
        stats.api_requests,
        stats.api_token_expired
    );
    if stats.tokens_issued != 2 || stats.api_token_expired != 1 {
        return Err("expected one token, then one more after the revocation".into());
    }
    Ok(())
}

/// Prints a response's status and body; fails unless the status is `expected`.
async fn show(what: &str, res: reqwest::Response, expected: StatusCode) -> Result<(), BoxError> {
    let status = res.status();
    let body = res.text().await?;
    println!("{what}: {status} {body}");
    if status != expected {
        return Err(format!("{what}: expected {expected}, got {status}").into());
    }
    Ok(())
}
