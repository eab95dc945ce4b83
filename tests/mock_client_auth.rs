//! The mock server's signed client authentication and DPoP, met by the crate's own
//! fetcher and layer: `private_key_jwt` for each algorithm, `client_secret_jwt`, DPoP at
//! the token endpoint and the API with their nonces, and every refusal the mock sends.

use bytes::Bytes;
use http::{header::WWW_AUTHENTICATE, HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tower::{Layer, ServiceExt};
use tower_oauth::{
    fetch::{https_client, HttpFetcher},
    jose::{Dpop, SigningAlg, SigningKey},
    mock::{MockConfig, MockServer},
    AuthMethod, BoxError, ClientCredentials, ErrorKind, FetchReason, OAuthLayer, TokenRequest,
    TokenType,
};

const RSA_PEM: &[u8] = include_bytes!("fixtures/oidc/rsa.pem");
const RSA_JWK: &str = include_str!("fixtures/oidc/rsa.jwk.json");
const EC_PEM: &[u8] = include_bytes!("fixtures/oidc/ec.pem");
const EC_JWK: &str = include_str!("fixtures/oidc/ec.jwk.json");
const ED_PEM: &[u8] = include_bytes!("fixtures/oidc/ed25519.pem");
const ED_JWK: &str = include_str!("fixtures/oidc/ed25519.jwk.json");
const WRONG_RSA_PEM: &[u8] = include_bytes!("fixtures/oidc/wrong-rsa.pem");
const SECRET: &str = "a-client-secret-of-at-least-32-bytes!";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn jwk(json: &str) -> Value {
    serde_json::from_str(json).unwrap()
}

/// A mock that knows the RSA, EC and Ed25519 fixture keys as clients `rsa`, `ec`, `ed`.
fn with_keys(config: MockConfig) -> MockConfig {
    config
        .private_key_jwt("rsa", jwk(RSA_JWK))
        .private_key_jwt("ec", jwk(EC_JWK))
        .private_key_jwt("ed", jwk(ED_JWK))
}

/// Fetches a token with the crate's built-in fetcher.
async fn fetch(
    creds: ClientCredentials,
    dpop: Option<&Dpop>,
) -> Result<tower_oauth::Token, tower_oauth::Error> {
    let mut request = TokenRequest::new(None, FetchReason::First);
    if let Some(dpop) = dpop {
        request = request.with_dpop(dpop.clone());
    }
    HttpFetcher::https(creds).oneshot(request).await
}

/// `GET /api/v1/workflows` through a layer built from `layer`; the status.
async fn get_workflows(
    mock: &MockServer,
    layer: &OAuthLayer,
) -> Result<StatusCode, tower_oauth::BoxError> {
    let svc = layer.layer(https_client());
    let req = Request::get(format!("{}/api/v1/workflows", mock.base_url())).body(Full::default())?;
    let res = svc.oneshot(req).await?;
    Ok(res.status())
}

/// The kind of a layer error.
fn kind(err: &BoxError) -> ErrorKind {
    err.downcast_ref::<tower_oauth::Error>()
        .map(tower_oauth::Error::kind)
        .unwrap_or_else(|| panic!("not a tower_oauth::Error: {err}"))
}

/// Sends a raw request; the status, headers and JSON body.
async fn raw(req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let res = client.request(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&body).unwrap(),
    )
}

/// A raw client-credentials request with these form parameters and an optional proof.
fn token_request(
    mock: &MockServer,
    form: &[(&str, &str)],
    proof: Option<&str>,
) -> Request<Full<Bytes>> {
    let mut body = form_urlencoded::Serializer::new(String::new());
    body.append_pair("grant_type", "client_credentials");
    body.append_pair("scope", "read");
    for (name, value) in form {
        body.append_pair(name, value);
    }
    let mut req =
        Request::post(mock.token_url()).header("content-type", "application/x-www-form-urlencoded");
    if let Some(proof) = proof {
        req = req.header("dpop", proof);
    }
    req.body(Full::from(body.finish())).unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// An ES256 client assertion for client `ec` with these claims changed.
fn assertion(mock: &MockServer, changes: Value) -> String {
    let mut claims = json!({
        "iss": "ec", "sub": "ec", "aud": mock.token_url(),
        "jti": format!("jti-{}", fastrand::u64(..)), "iat": now(), "exp": now() + 60,
    });
    for (name, value) in changes.as_object().unwrap() {
        claims[name] = value.clone();
    }
    let key = EncodingKey::from_ec_pem(EC_PEM).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap()
}

#[tokio::test]
async fn the_layer_gets_tokens_by_private_key_jwt_with_each_algorithm() {
    let mock = MockServer::start_with(with_keys(MockConfig::new()))
        .await
        .unwrap();
    let keys = [
        (
            "rsa",
            SigningKey::from_pem(SigningAlg::RS256, RSA_PEM).unwrap(),
        ),
        (
            "rsa",
            SigningKey::from_pem(SigningAlg::PS256, RSA_PEM).unwrap(),
        ),
        (
            "ec",
            SigningKey::from_pem(SigningAlg::ES256, EC_PEM).unwrap(),
        ),
        (
            "ed",
            SigningKey::from_pem(SigningAlg::EdDSA, ED_PEM).unwrap(),
        ),
    ];
    for (n, (id, key)) in keys.into_iter().enumerate() {
        let alg = key.alg();
        let creds = ClientCredentials::private_key_jwt(&mock.token_url(), id, key).scope("read");
        let layer = OAuthLayer::builder(creds).build();
        let status = get_workflows(&mock, &layer).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{alg}");
        let stats = mock.stats();
        assert_eq!(stats.assertions_verified, n as u64 + 1, "{alg}");
        assert_eq!(stats.tokens_issued, n as u64 + 1, "{alg}");
    }
    assert_eq!(mock.stats().token_errors, 0);
}

#[tokio::test]
async fn a_wrong_key_or_unknown_client_is_invalid_client() {
    let mock = MockServer::start_with(with_keys(MockConfig::new()))
        .await
        .unwrap();
    let wrong = SigningKey::from_pem(SigningAlg::RS256, WRONG_RSA_PEM).unwrap();
    let ec = SigningKey::from_pem(SigningAlg::ES256, EC_PEM).unwrap();
    let cases = [
        ClientCredentials::private_key_jwt(&mock.token_url(), "rsa", wrong),
        // A key registered, but for another client.
        ClientCredentials::private_key_jwt(&mock.token_url(), "ed", ec.clone()),
        ClientCredentials::private_key_jwt(&mock.token_url(), "nobody", ec),
    ];
    for creds in cases {
        let layer = OAuthLayer::builder(creds.scope("read")).build();
        let err = get_workflows(&mock, &layer).await.unwrap_err();
        assert_eq!(kind(&err), ErrorKind::InvalidClient, "{err}");
    }
    let stats = mock.stats();
    assert_eq!((stats.assertions_verified, stats.tokens_issued), (0, 0));
    assert_eq!(stats.token_errors, 3);
}

#[tokio::test]
async fn client_secret_jwt_is_accepted_only_where_the_mock_allows_it() {
    let creds = |mock: &MockServer| {
        ClientCredentials::new(&mock.token_url(), mock.client_id(), SECRET)
            .auth_method(AuthMethod::ClientSecretJwt)
            .scope("read")
    };
    let config = MockConfig::new().client_secret(SECRET);
    let allowed = MockServer::start_with(config.clone().client_secret_jwt(true))
        .await
        .unwrap();
    let layer = OAuthLayer::builder(creds(&allowed)).build();
    assert_eq!(
        get_workflows(&allowed, &layer).await.unwrap(),
        StatusCode::OK
    );
    assert_eq!(allowed.stats().assertions_verified, 1);

    let refused = MockServer::start_with(config).await.unwrap();
    let err = fetch(creds(&refused), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidClient);
    // Signed with another secret.
    let other = ClientCredentials::new(
        &allowed.token_url(),
        allowed.client_id(),
        format!("{SECRET}x"),
    )
    .auth_method(AuthMethod::ClientSecretJwt);
    assert_eq!(
        fetch(other, None).await.unwrap_err().kind(),
        ErrorKind::InvalidClient
    );
    assert_eq!(allowed.stats().assertions_verified, 1);
}

#[tokio::test]
async fn assertions_are_checked_for_audience_expiry_subject_type_and_replay() {
    let mock = MockServer::start_with(with_keys(MockConfig::new()))
        .await
        .unwrap();
    let good = assertion(&mock, json!({}));
    fn form(jwt: &str) -> [(&str, &str); 2] {
        [
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", jwt),
        ]
    }
    let (status, _, body) = raw(token_request(&mock, &form(&good), None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The issuer (base URL) is an audience too.
    let to_issuer = assertion(&mock, json!({"aud": mock.base_url()}));
    assert_eq!(
        raw(token_request(&mock, &form(&to_issuer), None)).await.0,
        StatusCode::OK
    );

    let refused = [
        ("replayed", good),
        (
            "another audience",
            assertion(&mock, json!({"aud": "https://as.example/token"})),
        ),
        ("expired", assertion(&mock, json!({"exp": now() - 60}))),
        ("sub is not iss", assertion(&mock, json!({"sub": "rsa"}))),
        ("no jti", assertion(&mock, json!({"jti": null}))),
    ];
    for (what, jwt) in &refused {
        let (status, _, body) = raw(token_request(&mock, &form(jwt), None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["type"], "invalid_client", "{what}: {body}");
    }
    let wrong_type = [
        ("client_assertion_type", "urn:example:other"),
        ("client_assertion", refused[1].1.as_str()),
    ];
    let (status, _, body) = raw(token_request(&mock, &wrong_type, None)).await;
    assert_eq!(
        (status, &body["type"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_client"))
    );
    assert_eq!(mock.stats().assertions_verified, 2);
}

#[tokio::test]
async fn dpop_at_the_token_endpoint_meets_the_nonce_and_binds_the_token_to_the_key() {
    let mock = MockServer::start_with(with_keys(MockConfig::new()).require_dpop_nonce(true))
        .await
        .unwrap();
    let key = SigningKey::from_pem(SigningAlg::EdDSA, ED_PEM).unwrap();
    let creds = ClientCredentials::private_key_jwt(&mock.token_url(), "ed", key).scope("read");
    let dpop = Dpop::generate().unwrap();
    let token = fetch(creds.clone(), Some(&dpop)).await.unwrap();
    assert_eq!(token.token_type, TokenType::DPoP);
    let stats = mock.stats();
    assert_eq!(stats.dpop_nonce_challenges, 1);
    assert_eq!(stats.dpop_proofs_checked, 2);
    assert_eq!((stats.tokens_issued, stats.assertions_verified), (1, 2));
    let issued = mock.issued_tokens();
    assert_eq!(issued[0].jkt.as_deref(), Some(dpop.key().thumbprint()));

    // The nonce is kept: the next request needs no challenge. Without a proof, a Bearer token.
    fetch(creds.clone(), Some(&dpop)).await.unwrap();
    assert_eq!(mock.stats().dpop_nonce_challenges, 1);
    let bearer = fetch(creds, None).await.unwrap();
    assert_eq!(bearer.token_type, TokenType::Bearer);
    assert_eq!(mock.issued_tokens()[2].jkt, None);
}

#[tokio::test]
async fn the_token_endpoint_answers_use_dpop_nonce_and_invalid_dpop_proof_as_oauth_errors() {
    let mock = MockServer::start_with(MockConfig::new().require_dpop_nonce(true))
        .await
        .unwrap();
    let secret = [
        ("client_id", mock.client_id()),
        ("client_secret", mock.client_secret()),
    ];
    let token_url: Uri = mock.token_url().parse().unwrap();
    let dpop = Dpop::generate().unwrap();
    let proof = |dpop: &Dpop, uri: &Uri| {
        dpop.proof(&Method::POST, uri, None)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };

    let (status, headers, body) = raw(token_request(
        &mock,
        &secret,
        Some(&proof(&dpop, &token_url)),
    ))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "use_dpop_nonce", "error_description": "Authorization server requires nonce in DPoP proof"})
    );
    let nonce = headers
        .get("dpop-nonce")
        .expect("a DPoP-Nonce header")
        .clone();
    assert_eq!(headers["cache-control"], "no-store");

    dpop.remember_nonce(&token_url, &nonce);
    let elsewhere: Uri = format!("{}/oauth/token", mock.base_url()).parse().unwrap();
    let (status, _, body) = raw(token_request(
        &mock,
        &secret,
        Some(&proof(&dpop, &elsewhere)),
    ))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_dpop_proof", "{body}");
    assert!(
        body["error_description"].as_str().unwrap().contains("htu"),
        "{body}"
    );

    let good = proof(&dpop, &token_url);
    let (status, _, body) = raw(token_request(&mock, &secret, Some(&good))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let (status, _, body) = raw(token_request(&mock, &secret, Some(&good))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error_description"].as_str().unwrap().contains("jti"),
        "{body}"
    );

    let stats = mock.stats();
    assert_eq!(
        (stats.dpop_nonce_challenges, stats.dpop_proofs_rejected),
        (1, 2)
    );
    assert_eq!((stats.dpop_proofs_checked, stats.tokens_issued), (4, 1));
}

#[tokio::test]
async fn the_layer_sends_dpop_proofs_to_the_api_and_replays_a_nonce_challenge() {
    let config = with_keys(MockConfig::new())
        .require_dpop_nonce(true)
        .require_api_dpop_nonce(true);
    let mock = MockServer::start_with(config).await.unwrap();
    let key = SigningKey::from_pem(SigningAlg::ES256, EC_PEM).unwrap();
    let creds = ClientCredentials::private_key_jwt(&mock.token_url(), "ec", key).scope("read");
    let dpop = Dpop::generate().unwrap();
    let layer = OAuthLayer::builder(creds).dpop(dpop.clone()).build();

    // The token endpoint's nonce, then the API's: one challenge each, each met once.
    assert_eq!(get_workflows(&mock, &layer).await.unwrap(), StatusCode::OK);
    let stats = mock.stats();
    assert_eq!((stats.dpop_nonce_challenges, stats.api_ok), (2, 1));
    assert_eq!(
        mock.issued_tokens()[0].jkt.as_deref(),
        Some(dpop.key().thumbprint())
    );
    assert_eq!(get_workflows(&mock, &layer).await.unwrap(), StatusCode::OK);
    assert_eq!(
        mock.stats().dpop_nonce_challenges,
        2,
        "the API nonce was kept"
    );

    mock.rotate_dpop_nonce();
    assert_eq!(get_workflows(&mock, &layer).await.unwrap(), StatusCode::OK);
    let stats = mock.stats();
    assert_eq!((stats.dpop_nonce_challenges, stats.api_ok), (3, 3));
    assert_eq!((stats.tokens_issued, stats.dpop_proofs_rejected), (1, 0));
    assert_eq!(
        stats.api_requests, 5,
        "two challenged requests, each sent twice"
    );
}

#[tokio::test]
async fn the_api_refuses_proofs_that_do_not_fit_the_request_or_the_token() {
    let mock = MockServer::start_with(MockConfig::new().require_api_dpop_nonce(true))
        .await
        .unwrap();
    let creds = ClientCredentials::new(&mock.token_url(), mock.client_id(), mock.client_secret())
        .scope("read");
    let dpop = Dpop::generate().unwrap();
    let token = fetch(creds, Some(&dpop)).await.unwrap();
    let token = token.access_token.secret().to_owned();
    let url: Uri = format!("{}/api/v1/workflows", mock.base_url())
        .parse()
        .unwrap();
    let send = |scheme: &str, proof: Option<http::HeaderValue>| {
        let mut req =
            Request::get(url.clone()).header("authorization", format!("{scheme} {token}"));
        if let Some(proof) = proof {
            req = req.header("dpop", proof);
        }
        raw(req.body(Full::default()).unwrap())
    };

    // No nonce yet: a challenge with the API's nonce.
    let (status, headers, body) = send(
        "DPoP",
        Some(dpop.proof(&Method::GET, &url, Some(&token)).unwrap()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["type"], "use_dpop_nonce");
    assert_eq!(
        headers[WWW_AUTHENTICATE],
        r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#
    );
    dpop.remember_nonce(&url, &headers["dpop-nonce"]);

    let good = dpop.proof(&Method::GET, &url, Some(&token)).unwrap();
    let other_key = Dpop::generate().unwrap();
    other_key.remember_nonce(&url, &headers["dpop-nonce"]);
    let refusals = [
        ("no proof", None),
        (
            "another method",
            Some(dpop.proof(&Method::POST, &url, Some(&token)).unwrap()),
        ),
        (
            "no ath",
            Some(dpop.proof(&Method::GET, &url, None).unwrap()),
        ),
        (
            "another key",
            Some(other_key.proof(&Method::GET, &url, Some(&token)).unwrap()),
        ),
    ];
    for (what, proof) in refusals {
        let (status, headers, body) = send("DPoP", proof).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(body["type"], "invalid_dpop_proof", "{what}: {body}");
        let challenge = headers[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            challenge.starts_with(r#"DPoP error="invalid_dpop_proof""#),
            "{what}: {challenge}"
        );
    }
    let (status, _, body) = send("Bearer", None).await;
    assert_eq!(
        (status, &body["type"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_token"))
    );

    let (status, _, body) = send("DPoP", Some(good.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = send("DPoP", Some(good)).await;
    assert_eq!(
        (status, &body["type"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_dpop_proof"))
    );
    assert!(body["detail"].as_str().unwrap().contains("jti"), "{body}");

    let stats = mock.stats();
    assert_eq!((stats.api_ok, stats.api_invalid_token), (1, 1));
    assert_eq!(
        (stats.dpop_nonce_challenges, stats.dpop_proofs_rejected),
        (1, 5)
    );
}

#[tokio::test]
async fn the_config_shows_client_ids_and_no_key_material() {
    let config = with_keys(MockConfig::new().client_secret(SECRET)).client_secret_jwt(true);
    let shown = format!("{config:?}");
    assert!(shown.contains(r#"["rsa", "ec", "ed"]"#), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(
        !shown.contains(jwk(EC_JWK)["x"].as_str().unwrap()),
        "{shown}"
    );
}

#[tokio::test]
async fn discovery_lists_the_signed_methods_the_mock_was_given() {
    let plain = MockServer::start().await.unwrap();
    let meta = tower_oauth::ProviderMetadata::discover(&plain.base_url())
        .await
        .unwrap();
    assert!(!meta.supports(AuthMethod::PrivateKeyJwt));
    assert!(!meta.supports(AuthMethod::ClientSecretJwt));
    let signed = MockServer::start_with(
        MockConfig::new()
            .private_key_jwt("ec", jwk(EC_JWK))
            .client_secret_jwt(true),
    )
    .await
    .unwrap();
    let meta = tower_oauth::ProviderMetadata::discover(&signed.base_url())
        .await
        .unwrap();
    assert!(meta.supports(AuthMethod::PrivateKeyJwt));
    assert!(meta.supports(AuthMethod::ClientSecretJwt));
    assert!(meta.supports(AuthMethod::ClientSecretPost));
    let algs = meta
        .dpop_signing_alg_values_supported
        .clone()
        .unwrap_or_default();
    assert!(algs.iter().any(|a| a == "ES256"), "{algs:?}");
    // Credentials from it get a token by private_key_jwt.
    let key = SigningKey::from_pem(SigningAlg::ES256, EC_PEM).unwrap();
    let creds = ClientCredentials::from_metadata(&meta, "ec", "")
        .unwrap()
        .signing_key(key)
        .scope("read");
    OAuthLayer::builder(creds)
        .build()
        .handle()
        .warm_up()
        .await
        .unwrap();
    assert_eq!(signed.stats().assertions_verified, 1);
}
