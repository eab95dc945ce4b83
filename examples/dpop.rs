//! DPoP (RFC 9449): tokens bound to a key the client holds, a proof on every call.
//!
//! The layer is given a `Dpop` signer. Its token request carries a proof, so the
//! embedded mock SimpleDocs server binds the token to the proof's key and answers
//! `token_type: DPoP`. Each API call then carries `Authorization: DPoP <token>` and a
//! fresh proof of its own. Both the token endpoint and the API want a server nonce: the
//! first proof to each is answered `use_dpop_nonce`, and the layer sends it again with
//! the nonce. Then the server rotates its nonce, and the next call is challenged and
//! replayed the same way, without a new token.
//!
//! ```text
//! cargo run --example dpop --features jwt,test-util
//! ```

use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt};
use tower_oauth::{
    jose::Dpop,
    mock::{MockConfig, MockServer},
    BoxError, ClientCredentials, OAuthLayer,
};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let config = MockConfig::new()
        .require_dpop_nonce(true)
        .require_api_dpop_nonce(true);
    let mock = MockServer::start_with(config).await?;
    println!("mock SimpleDocs server at {}", mock.base_url());

    // A new ES256 key; the token will be useless without it.
    let dpop = Dpop::generate()?;
    println!("DPoP key thumbprint (jkt): {}", dpop.key().thumbprint());

    let creds = ClientCredentials::new(&mock.token_url(), mock.client_id(), mock.client_secret())
        .scope("read");
    let mut api = OAuthLayer::builder(creds)
        .dpop(dpop.clone())
        .build()
        .layer(tower_oauth::fetch::https_client());
    let url = format!("{}/api/v1/workflows", mock.base_url());

    for i in 1..=2 {
        let req = Request::get(&url).body(Full::default())?;
        let res = api.ready().await?.call(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        println!(
            "GET /api/v1/workflows #{i}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        if status != StatusCode::OK {
            return Err(format!("call #{i}: expected 200, got {status}").into());
        }
    }
    let bound = mock.issued_tokens()[0].jkt.clone();
    println!(
        "the token is bound to jkt {}",
        bound.as_deref().unwrap_or("(none)")
    );

    println!("\nthe server rotates its DPoP nonce...");
    mock.rotate_dpop_nonce();
    let req = Request::get(&url).body(Full::default())?;
    let status = api.ready().await?.call(req).await?.status();
    println!("GET /api/v1/workflows #3: {status}");

    let stats = mock.stats();
    println!(
        "\ntokens issued: {}, API requests: {} ({} answered), proofs checked: {}, nonce challenges: {}",
        stats.tokens_issued,
        stats.api_requests,
        stats.api_ok,
        stats.dpop_proofs_checked,
        stats.dpop_nonce_challenges
    );
    // One challenge at the token endpoint, one at the first API call, one after the rotation.
    let expected = status == StatusCode::OK
        && stats.tokens_issued == 1
        && stats.dpop_nonce_challenges == 3
        && bound.as_deref() == Some(dpop.key().thumbprint());
    if !expected {
        return Err("expected one DPoP token and three nonce challenges, each met".into());
    }
    Ok(())
}
