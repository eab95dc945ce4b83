//! The built-in fetcher against a real, independently written authorization server:
//! `oidc-provider` (Node.js, pinned in tests/oidc/package.json) on 127.0.0.1. Also keeps
//! the server's configuration for the issue-22 client-authentication methods proven
//! (tests/oidc/selfcheck.mjs).
//!
//! Needs `npm ci --prefix tests/oidc`; panics with that fix otherwise.

mod common;

use std::time::Duration;

use common::oidc::{http, OidcProvider, SECRET};
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use tower::ServiceExt;
use tower_oauth::{
    fetch::HttpFetcher, AuthMethod, ClientCredentials, ErrorKind, FetchReason, Scope, Token,
    TokenRequest,
};

async fn discovery(op: &OidcProvider) -> Value {
    let req = Request::get(op.discovery_url())
        .body(Full::default())
        .unwrap();
    let (status, json) = http(req).await;
    assert_eq!(status, 200);
    json
}

async fn fetch(creds: ClientCredentials, scope: Option<&str>) -> Result<Token, tower_oauth::Error> {
    HttpFetcher::https(creds)
        .oneshot(TokenRequest::new(scope.map(Scope::new), FetchReason::First))
        .await
}

fn strings(doc: &Value, key: &str) -> Vec<String> {
    doc[key]
        .as_array()
        .unwrap_or_else(|| panic!("discovery has no array {key}: {doc}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn secret_post_and_secret_basic_clients_get_active_tokens_with_the_read_scope() {
    let op = OidcProvider::start();
    for (client_id, method) in [
        ("secret-post", AuthMethod::ClientSecretPost),
        ("secret-basic", AuthMethod::ClientSecretBasic),
    ] {
        let creds =
            ClientCredentials::new(&op.token_endpoint(), client_id, SECRET).auth_method(method);
        let token = fetch(creds, Some("read"))
            .await
            .unwrap_or_else(|e| panic!("{client_id}: {e}"));
        assert_eq!(token.scope, Some(Scope::new("read")), "{client_id}");
        // server.mjs sets ttl.ClientCredentials to 600 s.
        assert_eq!(
            token.expires_in,
            Some(Duration::from_secs(600)),
            "{client_id}"
        );

        let info = op.introspect(token.access_token.secret()).await;
        assert_eq!(info["active"], Value::Bool(true), "{client_id}: {info}");
        assert_eq!(info["client_id"], client_id);
        assert_eq!(info["scope"], "read");
        assert_eq!(info["token_type"], "Bearer");
        assert!(
            info.get("cnf").is_none(),
            "a plain secret token is unbound: {info}"
        );
    }
}

#[tokio::test]
async fn both_scopes_are_granted_and_an_unknown_token_is_inactive() {
    let op = OidcProvider::start();
    let creds = ClientCredentials::new(&op.token_endpoint(), "secret-basic", SECRET)
        .auth_method(AuthMethod::ClientSecretBasic);
    let token = fetch(creds, Some("write read")).await.unwrap();
    assert_eq!(token.scope, Some(Scope::new("read write")));

    let info = op.introspect("not-a-token-this-server-issued").await;
    assert_eq!(info["active"], Value::Bool(false), "{info}");
}

#[tokio::test]
async fn a_wrong_secret_is_invalid_client_with_both_methods() {
    let op = OidcProvider::start();
    for (client_id, method) in [
        ("secret-post", AuthMethod::ClientSecretPost),
        ("secret-basic", AuthMethod::ClientSecretBasic),
    ] {
        let creds = ClientCredentials::new(&op.token_endpoint(), client_id, "wrong-secret")
            .auth_method(method);
        let err = fetch(creds, Some("read")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidClient, "{client_id}: {err}");
        assert!(!err.is_retryable(), "{client_id}: {err}");
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("wrong-secret"),
            "{client_id}: the error shows the secret"
        );
    }
}

#[tokio::test]
async fn the_dpop_client_is_refused_without_a_proof() {
    // Without a DPoP signer on the request the fetcher sends no proof: the `dpop` client
    // (dpop_bound_access_tokens) must get no token, as invalid_grant ("DPoP proof JWT
    // not provided"). tests/oidc_client_auth.rs gets its tokens with proofs.
    let op = OidcProvider::start();
    let creds = ClientCredentials::new(&op.token_endpoint(), "dpop", SECRET);
    let err = fetch(creds, Some("read")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OAuth, "{err}");
    assert_eq!(err.oauth_error(), Some("invalid_grant"), "{err}");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(400), "{err}");
    // Sending it again without a proof cannot help.
    assert!(!err.is_retryable(), "{err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(SECRET), "the error shows the client secret");
}

#[tokio::test]
async fn discovery_lists_the_issue_22_methods_dpop_algs_and_the_mtls_alias() {
    let op = OidcProvider::start();
    let doc = discovery(&op).await;
    assert_eq!(doc["issuer"], op.issuer());
    assert_eq!(doc["token_endpoint"], op.token_endpoint());

    let methods = strings(&doc, "token_endpoint_auth_methods_supported");
    for m in [
        "client_secret_basic",
        "client_secret_post",
        "client_secret_jwt",
        "private_key_jwt",
        "tls_client_auth",
        "self_signed_tls_client_auth",
    ] {
        assert!(methods.iter().any(|x| x == m), "{m} not in {methods:?}");
    }
    let algs = strings(&doc, "token_endpoint_auth_signing_alg_values_supported");
    for alg in ["HS256", "RS256", "PS256", "ES256", "EdDSA"] {
        assert!(algs.iter().any(|x| x == alg), "{alg} not in {algs:?}");
    }
    let dpop = strings(&doc, "dpop_signing_alg_values_supported");
    for alg in ["ES256", "EdDSA", "RS256", "PS256"] {
        assert!(dpop.iter().any(|x| x == alg), "{alg} not in {dpop:?}");
    }
    assert_eq!(
        doc["mtls_endpoint_aliases"]["token_endpoint"],
        op.mtls_token_endpoint()
    );
    assert!(op.mtls_token_endpoint().starts_with("https://127.0.0.1:"));
    assert_eq!(doc["tls_client_certificate_bound_access_tokens"], true);
    assert!(strings(&doc, "grant_types_supported")
        .iter()
        .any(|g| g == "client_credentials"));
}

#[test]
fn the_fixtures_are_there() {
    for name in [
        "rsa.pem",
        "ec.pem",
        "ed25519.pem",
        "wrong-rsa.pem",
        "ca.pem",
        "server.pem",
        "server-key.pem",
        "client.pem",
        "client-key.pem",
        "self-signed.pem",
        "self-signed-key.pem",
    ] {
        let path = OidcProvider::fixture(name);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(text.starts_with("-----BEGIN "), "{name} is not PEM");
    }
}

#[test]
fn the_server_configuration_is_proven_end_to_end_by_selfcheck() {
    let op = OidcProvider::start();
    let (ok, output) = op.selfcheck();
    assert!(ok, "tests/oidc/selfcheck.mjs failed:\n{output}");
    // It ran its checks, all of them: secrets, client_secret_jwt, private_key_jwt (4
    // algs), both mTLS methods and the DPoP nonce dance.
    assert!(output.contains(", 0 failed"), "{output}");
    for line in [
        "ok   private_key_jwt EdDSA (aud = token endpoint): token",
        "ok   client_secret_jwt HS256 (aud = issuer, no kid): token",
        "ok   tls_client_auth: token bound to the certificate (cnf.x5t#S256)",
        "ok   self_signed_tls_client_auth: token",
        "ok   DPoP proof without a nonce: 400 use_dpop_nonce with a DPoP-Nonce header",
        "ok   DPoP token: introspection active with cnf.jkt = the proof key thumbprint",
    ] {
        assert!(output.contains(line), "selfcheck lacks {line:?}:\n{output}");
    }
}
