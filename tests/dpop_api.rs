//! DPoP on API requests: a fresh, verifiable proof beside every `DPoP` token, and a
//! resource server's nonce challenge met by one replay.

mod common;

use std::{
    collections::HashSet,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use bytes::Bytes;
use common::{body_of, Fetcher};
use http::{header::AUTHORIZATION, Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::Full;
use jsonwebtoken::{jwk::Jwk, DecodingKey, Validation};
use serde_json::Value;
use tower::{service_fn, Layer, ServiceExt};
use tower_oauth::{
    jose::Dpop, ErrorKind, OAuthLayer, OAuthLayerBuilder, Token, TokenRequest, TokenType,
};

const SEC: Duration = Duration::from_secs(1);
const URL: &str = "https://api.example/v1/docs?page=2";

/// A token fetcher that answers `DPoP`-bound tokens `dpop-tok-<n>`, and checks that the
/// token request named the layer's DPoP key.
fn dpop_tokens(
    key: &Dpop,
) -> impl tower::Service<
    TokenRequest,
    Response = Token,
    Error = tower_oauth::BoxError,
    Future = impl Send,
> + Clone
       + Send
       + Sync
       + 'static {
    let key = key.clone();
    let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    service_fn(move |req: TokenRequest| {
        assert_eq!(
            req.dpop(),
            Some(&key),
            "the token request carries the layer's key"
        );
        let n = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        async move {
            Ok(Token::new(format!("dpop-tok-{n}"), Some(3600 * SEC))
                .with_token_type(TokenType::DPoP))
        }
    })
}

/// What the API saw of each request: its `Authorization` and its proof's claims, after
/// checking the proof's signature with the key in its header.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, Value)>>>);

fn verified_claims(proof: &str) -> Value {
    let header = jsonwebtoken::decode_header(proof).expect("a JWT");
    assert_eq!(header.typ.as_deref(), Some("dpop+jwt"));
    let jwk: Jwk = header.jwk.expect("the public key in the header");
    let key = DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(proof, &key, &validation)
        .expect("the proof's signature checks out")
        .claims
}

/// An API that checks proofs, and asks for a nonce (`n-1`) the first time it sees none.
fn api(
    seen: Seen,
    ask_for_nonce: bool,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    service_fn(move |req: Request<Full<Bytes>>| {
        let seen = seen.clone();
        async move {
            let auth = req.headers()[AUTHORIZATION].to_str().unwrap().to_owned();
            let claims = match req.headers().get("dpop") {
                Some(proof) => verified_claims(proof.to_str().unwrap()),
                None => Value::Null,
            };
            seen.0.lock().unwrap().push((auth, claims.clone()));
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let mut res = Response::new(Full::new(body));
            if ask_for_nonce && claims.get("nonce").is_none() {
                *res.status_mut() = StatusCode::UNAUTHORIZED;
                let h = res.headers_mut();
                h.insert(
                    "www-authenticate",
                    r#"DPoP algs="ES256 EdDSA", error="use_dpop_nonce""#
                        .parse()
                        .unwrap(),
                );
                h.insert("dpop-nonce", "n-1".parse().unwrap());
            }
            Ok::<_, Infallible>(res)
        }
    })
}

fn layer(dpop: &Dpop) -> OAuthLayerBuilder {
    OAuthLayer::with_fetcher(dpop_tokens(dpop)).dpop(dpop.clone())
}

#[tokio::test]
async fn every_request_carries_a_fresh_proof_bound_to_the_token() {
    let dpop = Dpop::generate().unwrap();
    let seen = Seen::default();
    let svc = layer(&dpop).build().layer(api(seen.clone(), false));
    for _ in 0..3 {
        let req = Request::post(URL).body(Full::from("x")).unwrap();
        assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 200);
    }
    let seen = seen.0.lock().unwrap();
    let ath = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        b"dpop-tok-1",
    ));
    let mut jtis = HashSet::new();
    for (auth, claims) in seen.iter() {
        assert_eq!(auth, "DPoP dpop-tok-1");
        assert_eq!(claims["htm"], "POST");
        assert_eq!(claims["htu"], "https://api.example/v1/docs", "no query");
        assert_eq!(claims["ath"], ath.as_str());
        assert!(claims["iat"].as_u64().is_some());
        assert!(jtis.insert(claims["jti"].as_str().unwrap().to_owned()));
    }
    assert_eq!(jtis.len(), 3, "a new jti each request");
}

#[tokio::test]
async fn a_nonce_challenge_is_replayed_once_with_the_nonce_and_the_same_token() {
    let dpop = Dpop::generate().unwrap();
    let seen = Seen::default();
    let layer = layer(&dpop).build();
    let svc = layer.layer(api(seen.clone(), true));
    let req = Request::post(URL).body(Full::from("the body")).unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200, "the caller never sees the challenge");
    assert_eq!(body_of(res).await, "the body", "replayed byte for byte");
    {
        let seen = seen.0.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen[0].1.get("nonce").is_none());
        assert_eq!(seen[1].1["nonce"], "n-1");
        assert_eq!(seen[1].0, "DPoP dpop-tok-1", "the same token");
        assert_ne!(seen[0].1["jti"], seen[1].1["jti"]);
    }
    // The nonce is kept: the next request carries it at once.
    let req = Request::get(URL).body(Full::default()).unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap().status(), 200);
    assert_eq!(seen.0.lock().unwrap().len(), 3);
    assert_eq!(
        layer.handle().fetches(),
        1,
        "a nonce is not a rejected token"
    );
}

#[tokio::test]
async fn a_challenge_that_cannot_be_replayed_reaches_the_caller() {
    let dpop = Dpop::generate().unwrap();
    let seen = Seen::default();
    let svc = layer(&dpop)
        .replay(false)
        .build()
        .layer(api(seen.clone(), true));
    let req = Request::get(URL).body(Full::default()).unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(seen.0.lock().unwrap().len(), 1);
    assert_eq!(
        dpop.nonce(&URL.parse().unwrap()).as_deref(),
        Some("n-1"),
        "kept"
    );
}

#[tokio::test]
async fn a_bearer_token_goes_without_a_proof() {
    let dpop = Dpop::generate().unwrap();
    let seen = Seen::default();
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::ZERO);
    let svc = OAuthLayer::with_fetcher(fetcher)
        .dpop(dpop)
        .build()
        .layer(api(seen.clone(), false));
    let req = Request::get(URL).body(Full::default()).unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap().status(), 200);
    let seen = seen.0.lock().unwrap();
    assert_eq!(seen[0].0, "Bearer tok-1");
    assert_eq!(seen[0].1, Value::Null, "no proof");
}

#[tokio::test]
async fn a_relative_uri_cannot_be_proven_and_fails_typed() {
    let dpop = Dpop::generate().unwrap();
    let svc = layer(&dpop).build().layer(api(Seen::default(), false));
    let req = Request::get("/v1/docs").body(Full::default()).unwrap();
    let err = svc.oneshot(req).await.unwrap_err();
    let err = err.downcast_ref::<tower_oauth::Error>().expect("typed");
    assert_eq!(err.kind(), ErrorKind::Config);
}
