//! The built-in client's TLS: the roots it trusts and the crypto provider it uses.

#[path = "support/tls_endpoint.rs"]
mod tls_endpoint;

use tower::ServiceExt;
use tower_oauth::{
    fetch::HttpFetcher, ClientCredentials, Error, ErrorKind, FetchReason, Token, TokenRequest,
};

async fn fetch(creds: ClientCredentials) -> Result<Token, Error> {
    HttpFetcher::https(creds)
        .oneshot(TokenRequest::new(None, FetchReason::First))
        .await
}

#[tokio::test]
async fn an_endpoint_signed_by_a_private_ca_is_refused_until_its_root_is_added() {
    let endpoint = tls_endpoint::start().await;
    let creds = ClientCredentials::new(&endpoint.url, "id", "secret");

    let err = fetch(creds.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        chain.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    assert!(chain.contains("certificate"), "{chain}");
    assert_eq!(endpoint.served(), 0);

    for root in [endpoint.ca_pem.as_bytes(), &endpoint.ca_der[..]] {
        let trusting = creds.clone().add_root_certificate(root).unwrap();
        let token = fetch(trusting).await.unwrap();
        assert_eq!(token.access_token.secret(), "tls-token");
    }
    assert_eq!(endpoint.served(), 2);
}

#[test]
fn a_root_certificate_that_is_no_certificate_is_refused_when_added() {
    let creds = ClientCredentials::new("https://auth.example/token", "id", "secret");
    let key_only = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    for bad in [&b"not a certificate"[..], key_only.as_bytes(), b""] {
        let err = creds.clone().add_root_certificate(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("root certificate"), "{err}");
    }
    let shown = format!("{creds:?}");
    assert!(shown.contains("root_certificates: 0"), "{shown}");
}

#[tokio::test]
async fn the_process_default_provider_is_used_when_one_is_installed() {
    use tokio_rustls::rustls::crypto::{aws_lc_rs, CryptoProvider};
    // Only ChaCha20: a suite the feature-selected provider would not choose first.
    let only_chacha = CryptoProvider {
        cipher_suites: vec![aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256],
        ..aws_lc_rs::default_provider()
    };
    // Every test in this file may run under it: they only ask for a working handshake.
    let _ = only_chacha.install_default();

    let endpoint = tls_endpoint::start().await;
    let creds = ClientCredentials::new(&endpoint.url, "id", "secret")
        .add_root_certificate(&endpoint.ca_pem)
        .unwrap();
    fetch(creds).await.unwrap();
    let suites = endpoint.suites.lock().unwrap().clone();
    assert_eq!(suites, ["TLS13_CHACHA20_POLY1305_SHA256"]);
}
