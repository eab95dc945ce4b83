//! Tokens from the `oauth2` crate: its client-credentials exchange as the layer's fetcher.
//!
//! An application that already configures an `oauth2::basic::BasicClient` keeps it: the
//! layer asks it for tokens (`tower_oauth::oauth2::fetcher`) and does the rest itself:
//! caching, one fetch at a time, renewal, and a new token plus a replay when the API
//! rejects one. oauth2's requests go over the application's own HTTP client service (here
//! hyper-util's), so oauth2's reqwest support is not needed.
//!
//! It runs against the embedded mock SimpleDocs server on 127.0.0.1:
//!
//! ```text
//! cargo run --example oauth2_bridge --features oauth2,test-util
//! ```

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use oauth2::{basic::BasicClient, ClientId, ClientSecret, TokenUrl};
use tower::{ServiceBuilder, ServiceExt};
use tower_oauth::{mock::MockServer, BoxError, Error, OAuthLayer, ScopePolicy};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mock = MockServer::start().await?;
    let base = mock.base_url();
    println!("mock SimpleDocs server at {base}");

    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let oauth2_client = |secret: &str| -> Result<_, BoxError> {
        Ok(BasicClient::new(ClientId::new(mock.client_id().to_owned()))
            .set_client_secret(ClientSecret::new(secret.to_owned()))
            .set_token_uri(TokenUrl::new(mock.token_url())?))
    };

    let fetcher = tower_oauth::oauth2::fetcher(oauth2_client(mock.client_secret())?, http.clone());
    let layer = OAuthLayer::with_fetcher(fetcher)
        .scope_policy(ScopePolicy::fixed(Some("read".into())))
        .build();
    let handle = layer.handle();
    let api = ServiceBuilder::new().layer(layer).service(http.clone());
    let list = || Request::get(format!("{base}/api/v1/workflows")).body(Full::default());

    for i in 1..=2 {
        let status = api.clone().oneshot(list()?).await?.status();
        println!("GET /api/v1/workflows #{i}: {status}");
    }
    println!("the server revokes every token...");
    mock.revoke_all();
    let status = api.clone().oneshot(list()?).await?.status();
    println!("GET /api/v1/workflows #3: {status} (a new token, the request replayed)");
    if status != StatusCode::OK || handle.fetches() != 2 {
        return Err(format!("expected 2 token fetches, got {}", handle.fetches()).into());
    }

    println!("\nwith a wrong secret, the oauth2 error is a typed, non-retryable one:");
    let fetcher = tower_oauth::oauth2::fetcher(oauth2_client("wrong")?, http.clone());
    let layer = OAuthLayer::with_fetcher(fetcher).build();
    let api = ServiceBuilder::new().layer(layer).service(http);
    let err = api
        .oneshot(list()?)
        .await
        .expect_err("a wrong secret fails");
    let err = err
        .downcast_ref::<Error>()
        .ok_or("not a tower_oauth::Error")?;
    println!(
        "  {err} (kind {:?}, retryable: {})",
        err.kind(),
        err.is_retryable()
    );
    Ok(())
}
