//! Client authentication with signed assertions, and DPoP, at a token endpoint on
//! 127.0.0.1 that checks signatures with the client's public key.

mod common;

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use bytes::Bytes;
use common::{get, seen, send, Echo};
use futures_util::future::BoxFuture;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{jwk::Jwk, Algorithm, DecodingKey, Validation};
use serde_json::{json, Map, Value};
use tower::{Layer, ServiceExt};
use tower_oauth::{
    fetch::HttpFetcher,
    jose::{AssertionContext, AssertionSource, Dpop, SigningAlg, SigningKey},
    AuthMethod, BoxError, ClientCredentials, ErrorKind, FetchReason, OAuthLayer, TokenRequest,
    TokenType,
};

const RSA_PEM: &[u8] = include_bytes!("fixtures/jose/rsa-2048.pem");
const EC_PEM: &[u8] = include_bytes!("fixtures/jose/ec-p256.pem");
const TOKEN: &str = r#"{"access_token":"tok-1","token_type":"Bearer","expires_in":300}"#;

/// What the token endpoint was sent.
#[derive(Clone, Debug)]
struct Seen {
    form: Map<String, Value>,
    authorization: Option<String>,
    dpop: Option<String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;
type Answer = Box<dyn Fn(usize, &Seen) -> Response<Full<Bytes>> + Send + Sync>;

/// A token endpoint on 127.0.0.1 that answers the `n`th request with `answer(n, seen)`.
async fn endpoint(answer: Answer) -> (String, Log) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/oauth/token", listener.local_addr().unwrap());
    let (log, answer) = (Log::default(), Arc::new(answer));
    let kept = log.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (log, answer) = (log.clone(), answer.clone());
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (log, answer) = (log.clone(), answer.clone());
                async move {
                    let header = |name: &str| {
                        req.headers()
                            .get(name)
                            .map(|v| v.to_str().unwrap().to_owned())
                    };
                    let (authorization, dpop) = (header("authorization"), header("dpop"));
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let form = form_urlencoded::parse(&body)
                        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                        .collect();
                    let seen = Seen {
                        form,
                        authorization,
                        dpop,
                    };
                    let n = {
                        let mut log = log.lock().unwrap();
                        log.push(seen.clone());
                        log.len()
                    };
                    Ok::<_, Infallible>(answer(n, &seen))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (url, kept)
}

fn answer(status: u16, body: &str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body.to_owned())));
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    res
}

/// The claims of `jwt` if its signature verifies with `key` and it is a client
/// assertion for `client_id` at `url`.
fn verified(
    jwt: &str,
    key: &DecodingKey,
    alg: Algorithm,
    client_id: &str,
    url: &str,
) -> Option<Map<String, Value>> {
    let mut validation = Validation::new(alg);
    validation.set_audience(&[url]);
    validation.set_issuer(&[client_id]);
    validation.sub = Some(client_id.to_owned());
    validation.set_required_spec_claims(&["exp", "iat", "jti", "aud", "iss", "sub"]);
    jsonwebtoken::decode::<Map<String, Value>>(jwt, key, &validation)
        .ok()
        .map(|data| data.claims)
}

fn public_key(key: &SigningKey) -> DecodingKey {
    let jwk: Jwk = serde_json::from_value(key.public_jwk().unwrap()).unwrap();
    DecodingKey::from_jwk(&jwk).unwrap()
}

/// A token endpoint that issues a token only for a client assertion `key` verifies.
async fn verifying(key: DecodingKey, alg: Algorithm) -> (String, Log) {
    let url = Arc::new(Mutex::new(String::new()));
    let at = url.clone();
    let (endpoint_url, log) = endpoint(Box::new(move |_, seen| {
        let jwt = seen.form["client_assertion"].as_str().unwrap_or_default();
        let url = at.lock().unwrap().clone();
        match verified(jwt, &key, alg, "client-1", &url) {
            Some(_) => answer(200, TOKEN),
            None => answer(401, r#"{"error":"invalid_client"}"#),
        }
    }))
    .await;
    *url.lock().unwrap() = endpoint_url.clone();
    (endpoint_url, log)
}

async fn fetch(
    creds: ClientCredentials,
    request: TokenRequest,
) -> Result<tower_oauth::Token, tower_oauth::Error> {
    HttpFetcher::https(creds).oneshot(request).await
}

fn first() -> TokenRequest {
    TokenRequest::new(None, FetchReason::First)
}

#[tokio::test]
async fn private_key_jwt_sends_an_assertion_the_public_key_verifies_and_no_secret() {
    let keys = [
        SigningKey::from_pem(SigningAlg::RS256, RSA_PEM).unwrap(),
        SigningKey::from_pem(SigningAlg::PS256, RSA_PEM).unwrap(),
        SigningKey::from_pem(SigningAlg::ES256, EC_PEM)
            .unwrap()
            .with_key_id("k-1"),
    ];
    for key in keys {
        let alg = key.alg();
        let algorithm: Algorithm = alg.as_str().parse().unwrap();
        let (url, log) = verifying(public_key(&key), algorithm).await;
        let creds = ClientCredentials::private_key_jwt(&url, "client-1", key.clone()).scope("read");
        assert_eq!(*creds.auth_method_ref(), AuthMethod::PrivateKeyJwt);
        for _ in 0..2 {
            let token = fetch(creds.clone(), first()).await.unwrap();
            assert_eq!(token.access_token.secret(), "tok-1", "{alg}");
        }
        let log = log.lock().unwrap();
        let form = &log[0].form;
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["scope"], "read");
        assert_eq!(form["client_id"], "client-1");
        assert_eq!(
            form["client_assertion_type"],
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        assert!(!form.contains_key("client_secret"), "{alg}: {form:?}");
        assert_eq!(log[0].authorization, None);
        let header =
            jsonwebtoken::decode_header(form["client_assertion"].as_str().unwrap()).unwrap();
        assert_eq!(header.kid.as_deref(), key.key_id(), "{alg}");
        // A fresh assertion for each request.
        assert_ne!(form["client_assertion"], log[1].form["client_assertion"]);
    }
}

#[tokio::test]
async fn a_key_the_server_does_not_know_is_refused_as_invalid_client() {
    let known = SigningKey::from_pem(SigningAlg::ES256, EC_PEM).unwrap();
    let (url, _) = verifying(public_key(&known), Algorithm::ES256).await;
    let unknown = SigningKey::from_jwk(
        &json!({"kty": "OKP", "crv": "Ed25519",
        "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})
        .to_string(),
    )
    .unwrap();
    let err = fetch(
        ClientCredentials::private_key_jwt(&url, "client-1", unknown),
        first(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidClient);
}

#[tokio::test]
async fn client_secret_jwt_signs_with_the_secret_and_a_short_secret_sends_nothing() {
    const SECRET: &str = "a-client-secret-of-at-least-32-bytes!";
    let key = DecodingKey::from_secret(SECRET.as_bytes()).unwrap();
    let (url, log) = verifying(key, Algorithm::HS256).await;
    let creds =
        ClientCredentials::new(&url, "client-1", SECRET).auth_method(AuthMethod::ClientSecretJwt);
    fetch(creds, first()).await.unwrap();
    let form = log.lock().unwrap()[0].form.clone();
    assert!(!form.contains_key("client_secret"), "{form:?}");
    assert!(!format!("{form:?}").contains(SECRET));

    let short = ClientCredentials::new(&url, "client-1", "only-31-bytes-long-secret-here!")
        .auth_method(AuthMethod::ClientSecretJwt);
    let err = fetch(short, first()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("at least 32 bytes"), "{err}");
    assert!(!format!("{err} {err:?}").contains("only-31"), "{err:?}");
    assert_eq!(
        log.lock().unwrap().len(),
        1,
        "the short secret sent a request"
    );
}

/// An assertion source that counts its calls, or fails.
#[derive(Clone, Default)]
struct Counting {
    calls: Arc<AtomicUsize>,
    fail: bool,
}

impl AssertionSource for Counting {
    fn assertion(&self, ctx: &AssertionContext) -> BoxFuture<'_, Result<String, BoxError>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let made = format!("workload-assertion-{n}-for-{}", ctx.client_id());
        let fail = self.fail;
        Box::pin(async move {
            if fail {
                Err("the identity agent is down".into())
            } else {
                Ok(made)
            }
        })
    }
}

#[tokio::test]
async fn an_assertion_source_is_asked_for_every_token_request() {
    let (url, log) = endpoint(Box::new(|_, _| answer(200, TOKEN))).await;
    let source = Counting::default();
    let creds = ClientCredentials::new(&url, "client-1", "").client_assertion(source.clone());
    for _ in 0..2 {
        fetch(creds.clone(), first()).await.unwrap();
    }
    assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    let log = log.lock().unwrap();
    assert_eq!(
        log[0].form["client_assertion"],
        "workload-assertion-1-for-client-1"
    );
    assert_eq!(
        log[1].form["client_assertion"],
        "workload-assertion-2-for-client-1"
    );
}

#[tokio::test]
async fn a_failing_source_fails_the_request_before_sending_and_is_not_retried() {
    let (url, log) = endpoint(Box::new(|_, _| answer(200, TOKEN))).await;
    let source = Counting {
        fail: true,
        ..Counting::default()
    };
    let err = fetch(
        ClientCredentials::new(&url, "c", "").client_assertion(source),
        first(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(!err.is_retryable());
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_assertion_the_server_echoes_is_redacted() {
    let (url, _) = endpoint(Box::new(|_, seen| {
        let echo = seen.form["client_assertion"].as_str().unwrap().to_owned();
        let body = json!({"error": "invalid_client", "error_description": format!("bad {echo}")});
        answer(401, &body.to_string())
    }))
    .await;
    let key = SigningKey::from_pem(SigningAlg::ES256, EC_PEM).unwrap();
    let err = fetch(
        ClientCredentials::private_key_jwt(&url, "client-1", key),
        first(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidClient);
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(!shown.contains("eyJ"), "{shown}");
}

/// The claims of a DPoP proof, verified with the key in its header.
fn proof_claims(proof: &str) -> Map<String, Value> {
    let header = jsonwebtoken::decode_header(proof).unwrap();
    assert_eq!(header.typ.as_deref(), Some("dpop+jwt"));
    let key = DecodingKey::from_jwk(header.jwk.as_ref().unwrap()).unwrap();
    let mut validation = Validation::new(header.alg);
    validation.set_required_spec_claims(&["iat", "jti", "htm", "htu"]);
    validation.validate_exp = false;
    jsonwebtoken::decode::<Map<String, Value>>(proof, &key, &validation)
        .unwrap()
        .claims
}

#[tokio::test]
async fn a_dpop_nonce_asked_for_is_sent_at_once_and_the_dpop_token_installed() {
    let (url, log) = endpoint(Box::new(|n, seen| {
        let claims = proof_claims(seen.dpop.as_deref().expect("a DPoP proof"));
        match (n, claims.get("nonce").and_then(Value::as_str)) {
            (1, None) => {
                let mut res = answer(400, r#"{"error":"use_dpop_nonce"}"#);
                res.headers_mut()
                    .insert("dpop-nonce", "n-1".parse().unwrap());
                res
            }
            (2, Some("n-1")) => answer(
                200,
                r#"{"access_token":"dpop-tok","token_type":"DPoP","expires_in":300}"#,
            ),
            _ => answer(400, r#"{"error":"invalid_dpop_proof"}"#),
        }
    }))
    .await;
    let key = SigningKey::from_pem(SigningAlg::ES256, EC_PEM).unwrap();
    let fetcher = HttpFetcher::https(ClientCredentials::private_key_jwt(&url, "client-1", key));
    let dpop = Dpop::generate().unwrap();
    let binding = dpop.clone();
    let with_dpop = tower::service_fn(move |req: TokenRequest| {
        fetcher.clone().oneshot(req.with_dpop(binding.clone()))
    });
    let echo = Echo::default();
    let mut svc = OAuthLayer::with_fetcher(with_dpop)
        .build()
        .layer(echo.clone());
    let res = send(&mut svc, get("http://api.example/v1")).await.unwrap();
    assert_eq!(seen(&res), Some("DPoP dpop-tok"));

    let log = log.lock().unwrap();
    assert_eq!(log.len(), 2);
    let (first, second) = (&log[0], &log[1]);
    let claims = proof_claims(second.dpop.as_deref().unwrap());
    assert_eq!(claims["htm"], "POST");
    assert_eq!(claims["htu"], url.as_str());
    assert!(!claims.contains_key("ath"));
    // The retry is signed afresh: a new proof and a new client assertion.
    assert_ne!(
        proof_claims(first.dpop.as_deref().unwrap())["jti"],
        claims["jti"]
    );
    assert_ne!(
        first.form["client_assertion"],
        second.form["client_assertion"]
    );
    assert_eq!(dpop.nonce(&url.parse().unwrap()).as_deref(), Some("n-1"));
}

#[tokio::test]
async fn a_second_use_dpop_nonce_is_an_oauth_error_after_two_requests() {
    let (url, log) = endpoint(Box::new(|n, _| {
        let mut res = answer(400, r#"{"error":"use_dpop_nonce"}"#);
        res.headers_mut()
            .insert("dpop-nonce", format!("n-{n}").parse().unwrap());
        res
    }))
    .await;
    let creds = ClientCredentials::new(&url, "c", "secret");
    let err = fetch(creds, first().with_dpop(Dpop::generate().unwrap()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OAuth);
    assert_eq!(err.oauth_error(), Some("use_dpop_nonce"));
    assert_eq!(log.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_dpop_token_is_malformed_unless_a_proof_was_sent() {
    let (url, log) = endpoint(Box::new(|_, _| {
        answer(
            200,
            r#"{"access_token":"t","token_type":"dpop","expires_in":60}"#,
        )
    }))
    .await;
    let creds = ClientCredentials::new(&url, "c", "secret");
    let err = fetch(creds.clone(), first()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedResponse);
    assert!(log.lock().unwrap()[0].dpop.is_none());
    let token = fetch(creds, first().with_dpop(Dpop::generate().unwrap()))
        .await
        .unwrap();
    assert_eq!(token.token_type, TokenType::DPoP);
}
