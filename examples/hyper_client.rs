//! OAuth tokens on hyper-util's legacy client.
//!
//! Wraps a `hyper_util::client::legacy::Client` (rustls, `https_or_http`; the one
//! `tower_oauth::fetch::https_client` builds) with
//! `ServiceBuilder::new().layer(OAuthLayer::new(creds))`, then sends a few GETs to
//! `/api/v1/workflows` and a POST to `/api/v1/documents` (which needs the `write` scope,
//! hence `"read write"`). All of them share one token, fetched on the first request. Then
//! the server revokes the token, and the next request is answered anyway: the layer sees
//! the `token_expired` rejection, gets a new token and sends the request again.
//!
//! It runs against the embedded mock SimpleDocs server, which serves plain HTTP on
//! 127.0.0.1 (the built-in token client allows plain HTTP on loopback only):
//!
//! ```text
//! cargo run --example hyper_client
//! ```
//!
//! Against the real API, use `ClientCredentials::simpledocs(id, secret)` and
//! `https://app.simpledocs.com/api/v1/...` URLs; nothing else changes.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_oauth::{mock::MockServer, BoxError, ClientCredentials, OAuthLayer};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mock = MockServer::start().await?;
    let base = mock.base_url();
    println!("mock SimpleDocs server at {base}");

    let creds = ClientCredentials::new(&mock.token_url(), mock.client_id(), mock.client_secret())
        .scope("read write");
    let layer = OAuthLayer::new(creds);
    let handle = layer.handle();

    // The crate's own client: rustls with the process default or its feature's provider.
    let client = tower_oauth::fetch::https_client();
    let mut api = ServiceBuilder::new().layer(layer).service(client);

    for i in 1..=3 {
        let req = Request::get(format!("{base}/api/v1/workflows")).body(Full::default())?;
        let res = api.ready().await?.call(req).await?;
        show(&format!("GET  /api/v1/workflows #{i}"), res, StatusCode::OK).await?;
    }

    let document = Bytes::from_static(b"Quarterly report: all workflows on track.");
    let req = Request::post(format!("{base}/api/v1/documents"))
        .header("content-type", "text/plain")
        .body(Full::new(document))?;
    let res = api.ready().await?.call(req).await?;
    show("POST /api/v1/documents", res, StatusCode::CREATED).await?;
    println!("token requests so far: {}", handle.fetches());

    println!("\nthe server revokes every token...");
    mock.revoke_all();
    let req = Request::get(format!("{base}/api/v1/workflows")).body(Full::default())?;
    let res = api.ready().await?.call(req).await?;
    show("GET  /api/v1/workflows #4", res, StatusCode::OK).await?;

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
async fn show<B>(what: &str, res: Response<B>, expected: StatusCode) -> Result<(), BoxError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let status = res.status();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(Into::into)?
        .to_bytes();
    println!("{what}: {status} {}", String::from_utf8_lossy(&body));
    if status != expected {
        return Err(format!("{what}: expected {expected}, got {status}").into());
    }
    Ok(())
}
