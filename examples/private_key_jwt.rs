//! `private_key_jwt`: the client proves who it is with a signed assertion, no secret.
//!
//! A fresh P-256 key is generated, its public JWK is registered with the embedded
//! mock SimpleDocs server, and the layer gets a token by signing a client assertion
//! (RFC 7523) with the private key. One API call shows the token at work.
//!
//! ```text
//! cargo run --example private_key_jwt --features jwt,test-util
//! ```
//!
//! Against a real authorization server, register the public JWK (or a certificate) with
//! it, load the private key with `SigningKey::from_pem`, and use its token URL.

use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt};
use tower_oauth::{
    jose::{SigningAlg, SigningKey},
    mock::{MockConfig, MockServer},
    BoxError, ClientCredentials, OAuthLayer,
};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // A new key pair, as PKCS#8 PEM (made with rcgen here; in production, the key your
    // secret store holds). The server is given only its public half.
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?.serialize_pem();
    let key = SigningKey::from_pem(SigningAlg::ES256, pem.as_bytes())?.with_key_id("key-1");
    let public_jwk = key.public_jwk().ok_or("an ES256 key has a public JWK")?;
    println!("generated a P-256 key, public JWK {public_jwk}");

    let config = MockConfig::new().private_key_jwt("reporting-job", public_jwk);
    let mock = MockServer::start_with(config).await?;
    println!(
        "mock SimpleDocs server at {}, client reporting-job registered",
        mock.base_url()
    );

    let creds =
        ClientCredentials::private_key_jwt(&mock.token_url(), "reporting-job", key).scope("read");
    let api = OAuthLayer::builder(creds)
        .build()
        .layer(tower_oauth::fetch::https_client());

    let req = Request::get(format!("{}/api/v1/workflows", mock.base_url())).body(Full::default())?;
    let res = api.oneshot(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    println!(
        "GET /api/v1/workflows: {status} {}",
        String::from_utf8_lossy(&body)
    );

    let stats = mock.stats();
    println!(
        "assertions verified: {}, tokens issued: {}",
        stats.assertions_verified, stats.tokens_issued
    );
    if status != StatusCode::OK || stats.assertions_verified != 1 {
        return Err("expected one verified assertion and a 200".into());
    }
    Ok(())
}
