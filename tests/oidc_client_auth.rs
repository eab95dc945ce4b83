//! Issue 22's client-authentication methods, each against a real, independently written
//! authorization server: `oidc-provider` (Node.js, pinned in tests/oidc/package.json) on
//! 127.0.0.1, configured by tests/oidc/server.mjs with the keys of tests/fixtures/oidc/.
//!
//! Every token is checked at the server's introspection endpoint (RFC 7662): active, for
//! the client that asked, and bound (`cnf`) where the method binds it. Every refusal is
//! checked to be typed, not retryable, and free of key material and secrets.
//!
//! Needs `npm ci --prefix tests/oidc`; panics with that fix otherwise.

mod common;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine as _,
};
use bytes::Bytes;
use common::{get, oidc::OidcProvider, oidc::SECRET, seen, send, Echo};
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tower::{Layer, ServiceExt};
use tower_oauth::{
    fetch::{https_client, HttpFetcher},
    jose::{
        AssertionContext, AssertionSource, Dpop, DpopKey, FileAssertion, SigningAlg, SigningKey,
    },
    AuthMethod, BoxError, ClientCredentials, Error, ErrorKind, FetchReason, OAuthLayer,
    ProviderMetadata, Scope, Token, TokenRequest, TokenType,
};

/// server.mjs sets `ttl.ClientCredentials` to 600 s.
const LIFETIME: Duration = Duration::from_secs(600);

fn fixture(name: &str) -> Vec<u8> {
    let path = OidcProvider::fixture(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The DER of the first PEM block of a fixture.
fn der(name: &str) -> Vec<u8> {
    let text = String::from_utf8(fixture(name)).unwrap();
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    STANDARD.decode(body).unwrap()
}

/// Strings that must never appear in what an error shows: PEM armour, 20-character
/// pieces of each key's base64 DER (at every offset modulo 4, so re-encodings of any
/// slice are caught too), and the shared secret.
fn key_material(key_files: &[&str]) -> Vec<String> {
    let mut out = vec![
        "PRIVATE KEY".to_owned(),
        "BEGIN".to_owned(),
        SECRET.to_owned(),
    ];
    for name in key_files {
        let der = der(name);
        for shift in 0..3 {
            let encoded = STANDARD.encode(&der[shift..]);
            out.extend(
                encoded
                    .as_bytes()
                    .chunks(20)
                    .filter(|c| c.len() == 20)
                    .map(|c| String::from_utf8(c.to_vec()).unwrap()),
            );
            let encoded = URL_SAFE_NO_PAD.encode(&der[shift..]);
            out.extend(
                encoded
                    .as_bytes()
                    .chunks(20)
                    .filter(|c| c.len() == 20)
                    .map(|c| String::from_utf8(c.to_vec()).unwrap()),
            );
        }
    }
    out
}

/// Everything an error shows: `Display`, `Debug`, and each source's `Display` and
/// `Debug` (what a log line with its causes shows).
fn shown(err: &Error) -> String {
    let mut text = format!("{err}\n{err:?}");
    let mut next = std::error::Error::source(err);
    while let Some(cause) = next {
        text.push_str(&format!("\n{cause}\n{cause:?}"));
        next = cause.source();
    }
    text
}

/// Asserts `err` is of `kind`, not retryable, and shows none of `secrets` (never printing
/// the error or the secret it found, only where).
fn assert_refused(err: &Error, kind: ErrorKind, secrets: &[String], what: &str) {
    assert_eq!(err.kind(), kind, "{what}: {err}");
    assert!(!err.is_retryable(), "{what}: retryable: {err}");
    let text = shown(err);
    for (i, secret) in secrets.iter().enumerate() {
        assert!(
            !text.contains(secret.as_str()),
            "{what}: the error shows key material or a secret (forbidden string #{i})"
        );
    }
}

/// Asserts the server says `token` is active, for `client_id`, with scope `read`.
async fn assert_active(op: &OidcProvider, token: &Token, client_id: &str) -> Value {
    assert_eq!(token.scope, Some(Scope::new("read")), "{client_id}");
    assert_eq!(token.expires_in, Some(LIFETIME), "{client_id}");
    let info = op.introspect(token.access_token.secret()).await;
    assert_eq!(info["active"], true, "{client_id}: {info}");
    assert_eq!(info["client_id"], client_id, "{info}");
    assert_eq!(info["scope"], "read", "{info}");
    info
}

async fn fetch(creds: ClientCredentials) -> Result<Token, Error> {
    HttpFetcher::https(creds)
        .oneshot(TokenRequest::new(
            Some(Scope::new("read")),
            FetchReason::First,
        ))
        .await
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A `jti` no other assertion of this process has; `pad` makes it longer.
fn unique_jti(pad: usize) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}-{nanos}-{n}{}", std::process::id(), "x".repeat(pad))
}

/// An ES256 client assertion for `pkjwt-es256` made here, independently of the crate's
/// signer, valid from `iat` to `exp`.
fn es256_assertion(audience: &str, iat: u64, exp: u64, jti: &str) -> String {
    let key = EncodingKey::from_ec_pem(&fixture("ec.pem")).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("pkjwt-es256".into());
    let claims = json!({
        "iss": "pkjwt-es256",
        "sub": "pkjwt-es256",
        "aud": audience,
        "jti": jti,
        "iat": iat,
        "exp": exp,
    });
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// An assertion source that signs each assertion in the test, valid for `validity`
/// seconds from `offset` seconds after now, and keeps what it was asked and gave.
struct InTestSigner {
    offset: i64,
    validity: u64,
    asked: Mutex<Vec<AssertionContext>>,
    given: Mutex<Vec<String>>,
}

impl InTestSigner {
    fn new(offset: i64, validity: u64) -> Arc<Self> {
        Arc::new(Self {
            offset,
            validity,
            asked: Mutex::default(),
            given: Mutex::default(),
        })
    }
}

/// `Arc<InTestSigner>` as a source, so the test keeps a handle on what it did.
struct Shared(Arc<InTestSigner>);

impl AssertionSource for Shared {
    fn assertion(&self, ctx: &AssertionContext) -> BoxFuture<'_, Result<String, BoxError>> {
        let iat = now().checked_add_signed(self.0.offset).unwrap();
        let jwt = es256_assertion(ctx.audience(), iat, iat + self.0.validity, &unique_jti(0));
        self.0.asked.lock().unwrap().push(ctx.clone());
        self.0.given.lock().unwrap().push(jwt.clone());
        Box::pin(async move { Ok(jwt) })
    }
}

fn pkjwt_key(alg: SigningAlg, pem: &str, client_id: &str) -> SigningKey {
    SigningKey::from_pem(alg, &fixture(pem))
        .unwrap()
        .with_key_id(client_id)
}

/// base64url(SHA-256(DER)) of a certificate fixture: its RFC 8705 `x5t#S256`.
fn x5t_s256(cert: &str) -> String {
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der(cert));
    URL_SAFE_NO_PAD.encode(hash.as_ref())
}

fn mtls_creds(
    url: &str,
    client_id: &str,
    method: AuthMethod,
    cert: &str,
    key: &str,
) -> ClientCredentials {
    ClientCredentials::tls_client_auth(url, client_id)
        .unwrap()
        .auth_method(method)
        .client_certificate(fixture(cert), fixture(key))
        .unwrap()
        .add_root_certificate(fixture("ca.pem"))
        .unwrap()
}

#[tokio::test]
async fn private_key_jwt_with_each_algorithm_gets_a_token_for_its_client() {
    let op = OidcProvider::start();
    for (client_id, alg, pem) in [
        ("pkjwt-rs256", SigningAlg::RS256, "rsa.pem"),
        ("pkjwt-ps256", SigningAlg::PS256, "rsa.pem"),
        ("pkjwt-es256", SigningAlg::ES256, "ec.pem"),
        ("pkjwt-eddsa", SigningAlg::EdDSA, "ed25519.pem"),
    ] {
        let creds = ClientCredentials::private_key_jwt(
            &op.token_endpoint(),
            client_id,
            pkjwt_key(alg, pem, client_id),
        );
        let token = fetch(creds)
            .await
            .unwrap_or_else(|e| panic!("{client_id}: {e}"));
        assert_eq!(token.token_type, TokenType::Bearer, "{client_id}");
        let info = assert_active(&op, &token, client_id).await;
        assert!(info.get("cnf").is_none(), "{client_id}: unbound: {info}");
    }
}

#[tokio::test]
async fn client_secret_jwt_gets_a_token_and_a_wrong_secret_is_invalid_client() {
    let op = OidcProvider::start();
    let creds = ClientCredentials::new(&op.token_endpoint(), "secret-jwt", SECRET)
        .auth_method(AuthMethod::ClientSecretJwt);
    let token = fetch(creds).await.unwrap_or_else(|e| panic!("{e}"));
    assert_active(&op, &token, "secret-jwt").await;

    // Another secret of the same length: the HMAC does not verify.
    let wrong = "wrong-secret-0123456789abcdef0123456789abcde";
    assert_eq!(wrong.len(), SECRET.len());
    let creds = ClientCredentials::new(&op.token_endpoint(), "secret-jwt", wrong)
        .auth_method(AuthMethod::ClientSecretJwt);
    let err = fetch(creds).await.unwrap_err();
    let mut secrets = key_material(&[]);
    secrets.push(wrong.to_owned());
    assert_refused(
        &err,
        ErrorKind::InvalidClient,
        &secrets,
        "wrong HS256 secret",
    );
}

#[tokio::test]
async fn an_assertion_source_is_asked_per_request_with_the_client_and_token_url() {
    let op = OidcProvider::start();
    let signer = InTestSigner::new(0, 60);
    let fetcher = HttpFetcher::https(
        ClientCredentials::new(&op.token_endpoint(), "pkjwt-es256", "")
            .client_assertion(Shared(signer.clone())),
    );
    for _ in 0..2 {
        let token = fetcher
            .clone()
            .oneshot(TokenRequest::new(
                Some(Scope::new("read")),
                FetchReason::First,
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_active(&op, &token, "pkjwt-es256").await;
    }
    let asked = signer.asked.lock().unwrap();
    assert_eq!(asked.len(), 2, "asked once per token request");
    for ctx in asked.iter() {
        assert_eq!(ctx.client_id(), "pkjwt-es256");
        assert_eq!(ctx.audience(), op.token_endpoint());
    }
}

#[tokio::test]
async fn a_file_assertion_is_read_again_when_the_file_is_rewritten() {
    let op = OidcProvider::start();
    let dir = std::env::temp_dir().join(format!("tower-oauth-oidc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join("assertion-token");
    let write = |jti: &str| {
        let iat = now();
        let jwt = es256_assertion(&op.token_endpoint(), iat, iat + 120, jti);
        std::fs::write(&path, format!("{jwt}\n")).unwrap();
        jwt
    };
    let fetcher = HttpFetcher::https(
        ClientCredentials::new(&op.token_endpoint(), "pkjwt-es256", "")
            .client_assertion(FileAssertion::new(&path)),
    );
    let once = || {
        fetcher.clone().oneshot(TokenRequest::new(
            Some(Scope::new("read")),
            FetchReason::First,
        ))
    };

    let first = write(&unique_jti(0));
    let token = once().await.unwrap_or_else(|e| panic!("assertion 1: {e}"));
    assert_active(&op, &token, "pkjwt-es256").await;

    // The file unchanged: the same assertion again, whose `jti` the server has seen.
    // This is the control: the server does refuse a replayed assertion.
    let err = once().await.unwrap_err();
    let mut secrets = key_material(&["ec.pem"]);
    secrets.push(first.clone());
    secrets.push(first.rsplit('.').next().unwrap().to_owned());
    assert_refused(
        &err,
        ErrorKind::InvalidClient,
        &secrets,
        "replayed file assertion",
    );

    // Rewritten (a longer `jti`, so a new length even where mtimes are coarse): read again.
    let second = write(&unique_jti(7));
    assert_ne!(first.len(), second.len());
    let token = once().await.unwrap_or_else(|e| panic!("assertion 2: {e}"));
    assert_active(&op, &token, "pkjwt-es256").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn tls_client_auth_and_self_signed_get_certificate_bound_tokens_at_the_mtls_alias() {
    let op = OidcProvider::start();
    for (client_id, method, cert, key) in [
        (
            "mtls",
            AuthMethod::TlsClientAuth,
            "client.pem",
            "client-key.pem",
        ),
        (
            "mtls-self-signed",
            AuthMethod::SelfSignedTlsClientAuth,
            "self-signed.pem",
            "self-signed-key.pem",
        ),
    ] {
        let creds = mtls_creds(&op.mtls_token_endpoint(), client_id, method, cert, key);
        let token = fetch(creds)
            .await
            .unwrap_or_else(|e| panic!("{client_id}: {e}"));
        assert_eq!(token.token_type, TokenType::Bearer);
        let info = assert_active(&op, &token, client_id).await;
        assert_eq!(
            info["cnf"]["x5t#S256"],
            x5t_s256(cert),
            "{client_id}: bound to the certificate presented: {info}"
        );
    }
}

#[tokio::test]
async fn a_certificate_the_client_did_not_register_is_invalid_client() {
    let op = OidcProvider::start();
    for (client_id, method, cert, key) in [
        // The self-signed certificate's subject is not the registered DN.
        (
            "mtls",
            AuthMethod::TlsClientAuth,
            "self-signed.pem",
            "self-signed-key.pem",
        ),
        // A CA-issued certificate is not the registered self-signed one.
        (
            "mtls-self-signed",
            AuthMethod::SelfSignedTlsClientAuth,
            "client.pem",
            "client-key.pem",
        ),
    ] {
        let creds = mtls_creds(&op.mtls_token_endpoint(), client_id, method, cert, key);
        let err = fetch(creds).await.unwrap_err();
        assert_refused(
            &err,
            ErrorKind::InvalidClient,
            &key_material(&[key]),
            client_id,
        );
    }
}

/// What one token request and its answer looked like on the wire.
#[derive(Debug, Clone)]
struct Exchange {
    /// The `nonce` claim of the request's DPoP proof.
    proof_nonce: Option<String>,
    status: u16,
    error: Option<String>,
    /// The `DPoP-Nonce` header of the answer, as the server sent it.
    nonce_header: Option<String>,
}

type Exchanges = Arc<Mutex<Vec<Exchange>>>;

/// An HTTP client service for the fetcher.
type TokenClient =
    tower::util::BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>, BoxError>;

/// The built-in HTTPS client, recording each exchange; the `DPoP-Nonce` of the first
/// `replace` answers is replaced by a well-formed one the server never issued.
fn tap(log: Exchanges, replace: usize) -> TokenClient {
    let client = https_client();
    TokenClient::new(tower::service_fn(move |req: Request<Full<Bytes>>| {
        let (client, log) = (client.clone(), log.clone());
        Box::pin(async move {
            let proof_nonce = req.headers().get("dpop").and_then(|proof| {
                let payload = proof.to_str().ok()?.split('.').nth(1)?;
                let claims: Value =
                    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
                claims.get("nonce")?.as_str().map(str::to_owned)
            });
            let res = client.oneshot(req).await?;
            let (mut parts, body) = res.into_parts();
            let body = body.collect().await?.to_bytes();
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let nonce_header = parts
                .headers
                .get("dpop-nonce")
                .map(|v| v.to_str().unwrap().to_owned());
            let n = {
                let mut log = log.lock().unwrap();
                log.push(Exchange {
                    proof_nonce,
                    status: parts.status.as_u16(),
                    error: json["error"].as_str().map(str::to_owned),
                    nonce_header: nonce_header.clone(),
                });
                log.len()
            };
            if n <= replace && nonce_header.is_some() {
                parts.headers.insert(
                    "dpop-nonce",
                    HeaderValue::from_str(&format!("not-issued-{n}")).unwrap(),
                );
            }
            Ok::<_, BoxError>(Response::from_parts(parts, Full::new(body)))
        })
    }))
}

fn dpop_request(dpop: &Dpop) -> TokenRequest {
    TokenRequest::new(Some(Scope::new("read")), FetchReason::First).with_dpop(dpop.clone())
}

#[tokio::test]
async fn dpop_meets_the_nonce_challenge_once_and_gets_a_key_bound_dpop_token() {
    let op = OidcProvider::start();
    for dpop in [
        Dpop::generate().unwrap(),
        Dpop::new(DpopKey::generate(SigningAlg::EdDSA).unwrap()),
    ] {
        let alg = dpop.key().alg();
        let log = Exchanges::default();
        let creds = ClientCredentials::new(&op.token_endpoint(), "dpop", SECRET);
        let token = HttpFetcher::new(tap(log.clone(), 0), creds)
            .oneshot(dpop_request(&dpop))
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(token.token_type, TokenType::DPoP, "{alg}");

        let log = log.lock().unwrap().clone();
        assert_eq!(log.len(), 2, "{alg}: a challenge, then the token: {log:?}");
        let (challenge, answer) = (&log[0], &log[1]);
        assert_eq!(challenge.proof_nonce, None, "{alg}");
        assert_eq!(challenge.status, 400, "{alg}");
        assert_eq!(challenge.error.as_deref(), Some("use_dpop_nonce"), "{alg}");
        let nonce = challenge.nonce_header.clone().expect("a DPoP-Nonce header");
        assert_eq!(answer.proof_nonce.as_deref(), Some(nonce.as_str()), "{alg}");
        assert_eq!(answer.status, 200, "{alg}");

        let info = assert_active(&op, &token, "dpop").await;
        assert_eq!(info["token_type"], "DPoP", "{alg}: {info}");
        assert_eq!(
            info["cnf"]["jkt"],
            dpop.key().thumbprint(),
            "{alg}: bound to the proof key: {info}"
        );
    }
}

#[tokio::test]
async fn a_second_nonce_challenge_is_returned_as_a_typed_error_after_one_retry() {
    // The fetcher answers one `use_dpop_nonce` with a retry and returns the second: a
    // proxy hands it a nonce the server never issued, so the retry is challenged again.
    let op = OidcProvider::start();
    let dpop = Dpop::generate().unwrap();
    let log = Exchanges::default();
    let creds = ClientCredentials::new(&op.token_endpoint(), "dpop", SECRET);
    let err = HttpFetcher::new(tap(log.clone(), usize::MAX), creds)
        .oneshot(dpop_request(&dpop))
        .await
        .unwrap_err();
    assert_refused(
        &err,
        ErrorKind::OAuth,
        &key_material(&[]),
        "second challenge",
    );
    assert_eq!(err.oauth_error(), Some("use_dpop_nonce"), "{err}");
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 2, "one retry, no loop: {log:?}");
    assert_eq!(log[1].proof_nonce.as_deref(), Some("not-issued-1"));
    assert!(log
        .iter()
        .all(|x| x.error.as_deref() == Some("use_dpop_nonce")));
}

#[tokio::test]
async fn after_a_failed_retry_the_next_fetch_uses_the_nonce_the_server_sent_last() {
    // RFC 9449 §8: the client uses the nonce the server supplied last. Only the first
    // challenge's nonce is forged; the retry's challenge carries a real one.
    let op = OidcProvider::start();
    let dpop = Dpop::generate().unwrap();
    let log = Exchanges::default();
    let creds = ClientCredentials::new(&op.token_endpoint(), "dpop", SECRET);
    let fetcher = HttpFetcher::new(tap(log.clone(), 1), creds);
    let err = fetcher
        .clone()
        .oneshot(dpop_request(&dpop))
        .await
        .unwrap_err();
    assert_eq!(err.oauth_error(), Some("use_dpop_nonce"), "{err}");
    let last = log.lock().unwrap()[1].nonce_header.clone();
    assert!(last.is_some(), "the retry's challenge carries a nonce");
    let uri: http::Uri = op.token_endpoint().parse().unwrap();
    assert_eq!(
        dpop.nonce(&uri),
        last,
        "the nonce kept is the server's last one"
    );

    let token = fetcher.oneshot(dpop_request(&dpop)).await.unwrap();
    assert_eq!(token.token_type, TokenType::DPoP);
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 3, "the next fetch succeeds at once: {log:?}");
}

#[tokio::test]
async fn discovery_gives_credentials_for_the_token_endpoint_and_its_mtls_alias() {
    let op = OidcProvider::start();
    let meta = ProviderMetadata::discover(op.issuer())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(meta.issuer, op.issuer());
    assert_eq!(meta.token_endpoint, op.token_endpoint());
    assert_eq!(
        meta.mtls_token_endpoint.as_deref(),
        Some(op.mtls_token_endpoint().as_str())
    );

    let creds = ClientCredentials::from_metadata(&meta, "secret-post", SECRET).unwrap();
    assert_eq!(*creds.auth_method_ref(), AuthMethod::ClientSecretPost);
    let token = fetch(creds).await.unwrap_or_else(|e| panic!("{e}"));
    assert_active(&op, &token, "secret-post").await;

    // A TLS method picks the mTLS alias.
    let creds = ClientCredentials::from_metadata(&meta, "mtls", "")
        .unwrap()
        .auth_method(AuthMethod::TlsClientAuth)
        .client_certificate(fixture("client.pem"), fixture("client-key.pem"))
        .unwrap()
        .add_root_certificate(fixture("ca.pem"))
        .unwrap();
    assert_eq!(creds.token_url().to_string(), op.mtls_token_endpoint());
    let token = fetch(creds).await.unwrap_or_else(|e| panic!("{e}"));
    let info = assert_active(&op, &token, "mtls").await;
    assert_eq!(info["cnf"]["x5t#S256"], x5t_s256("client.pem"), "{info}");

    // And private_key_jwt on discovered credentials.
    let creds = ClientCredentials::from_metadata(&meta, "pkjwt-es256", "")
        .unwrap()
        .signing_key(pkjwt_key(SigningAlg::ES256, "ec.pem", "pkjwt-es256"));
    let token = fetch(creds).await.unwrap_or_else(|e| panic!("{e}"));
    assert_active(&op, &token, "pkjwt-es256").await;
}

#[tokio::test]
async fn a_wrong_key_is_invalid_client_not_retried_and_shows_no_key() {
    let op = OidcProvider::start();
    // wrong-rsa.pem under the kid of pkjwt-rs256: the signature does not verify.
    let creds = ClientCredentials::private_key_jwt(
        &op.token_endpoint(),
        "pkjwt-rs256",
        pkjwt_key(SigningAlg::RS256, "wrong-rsa.pem", "pkjwt-rs256"),
    );
    let err = fetch(creds).await.unwrap_err();
    assert_refused(
        &err,
        ErrorKind::InvalidClient,
        &key_material(&["wrong-rsa.pem", "rsa.pem"]),
        "wrong key",
    );
    assert_eq!(err.oauth_error(), Some("invalid_client"));
}

#[tokio::test]
async fn an_expired_assertion_is_invalid_client_asked_for_once_and_not_shown() {
    // The crate's own signer cannot make one (`assertion_lifetime` is at least 1 s, and
    // `iat` is now), so the source signs one that expired 5 minutes ago.
    let op = OidcProvider::start();
    let signer = InTestSigner::new(-600, 300);
    let creds = ClientCredentials::new(&op.token_endpoint(), "pkjwt-es256", "")
        .client_assertion(Shared(signer.clone()));
    let err = fetch(creds).await.unwrap_err();
    let given = signer.given.lock().unwrap().clone();
    assert_eq!(given.len(), 1, "not retried");
    let mut secrets = key_material(&["ec.pem"]);
    for jwt in &given {
        secrets.push(jwt.clone());
        secrets.push(jwt.rsplit('.').next().unwrap().to_owned());
    }
    assert_refused(
        &err,
        ErrorKind::InvalidClient,
        &secrets,
        "expired assertion",
    );

    // The same through the layer: warm-up fails at once, one more assertion asked for.
    let creds = ClientCredentials::new(&op.token_endpoint(), "pkjwt-es256", "")
        .client_assertion(Shared(signer.clone()))
        .scope("read");
    let layer = OAuthLayer::builder(creds).build();
    let err = layer.handle().warm_up().await.unwrap_err();
    let given = signer.given.lock().unwrap().clone();
    assert_eq!(given.len(), 2, "the layer does not retry invalid_client");
    for jwt in &given {
        secrets.push(jwt.clone());
        secrets.push(jwt.rsplit('.').next().unwrap().to_owned());
    }
    assert_refused(
        &err,
        ErrorKind::InvalidClient,
        &secrets,
        "expired assertion (layer)",
    );
}

#[tokio::test]
async fn the_layer_warms_up_with_private_key_jwt_and_sends_the_token() {
    let op = OidcProvider::start();
    let creds = ClientCredentials::private_key_jwt(
        &op.token_endpoint(),
        "pkjwt-eddsa",
        pkjwt_key(SigningAlg::EdDSA, "ed25519.pem", "pkjwt-eddsa"),
    )
    .scope("read");
    let layer = OAuthLayer::builder(creds).build();
    let tokens = layer.handle();
    tokens.warm_up().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tokens.fetches(), 1);

    let echo = Echo::default();
    let mut svc = layer.layer(echo.clone());
    let res = send(&mut svc, get("http://127.0.0.1:9/v1/docs"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sent = seen(&res).expect("an Authorization header").to_owned();
    let token = sent.strip_prefix("Bearer ").expect("a Bearer token");
    assert_eq!(tokens.fetches(), 1, "the warmed-up token is used");
    let info = op.introspect(token).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], "pkjwt-eddsa", "{info}");
    assert_eq!(info["scope"], "read", "{info}");
}

#[tokio::test]
async fn the_layer_sends_a_dpop_token_it_got_from_the_real_server() {
    let op = OidcProvider::start();
    let dpop = Dpop::generate().unwrap();
    let creds = ClientCredentials::new(&op.token_endpoint(), "dpop", SECRET).scope("read");
    let echo = Echo::default();
    let mut svc = OAuthLayer::builder(creds)
        .dpop(dpop.clone())
        .build()
        .layer(echo.clone());
    let res = send(&mut svc, get("http://127.0.0.1:9/v1/docs"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sent = seen(&res).expect("an Authorization header").to_owned();
    let token = sent.strip_prefix("DPoP ").expect("a DPoP token");
    let info = op.introspect(token).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["cnf"]["jkt"], dpop.key().thumbprint(), "{info}");
}

#[test]
fn the_key_material_check_would_catch_a_key_shown_in_pem_or_base64url() {
    // A control for `assert_refused`: the forbidden strings do match a key's text.
    for name in [
        "rsa.pem",
        "wrong-rsa.pem",
        "ec.pem",
        "ed25519.pem",
        "self-signed-key.pem",
    ] {
        let forbidden = key_material(&[name]);
        let pem = String::from_utf8(fixture(name)).unwrap().replace('\n', "");
        let url = URL_SAFE_NO_PAD.encode(&der(name)[1..]);
        assert!(
            forbidden.iter().skip(3).any(|s| pem.contains(s.as_str())),
            "{name}"
        );
        assert!(
            forbidden.iter().skip(3).any(|s| url.contains(s.as_str())),
            "{name}"
        );
    }
}
