//! DPoP proofs (RFC 9449) at the token endpoint and the API (feature `jwt`).
//!
//! A proof is checked as oidc-provider checks one: `typ` `dpop+jwt`, an asymmetric
//! `alg`, a public `jwk` in the header that verifies the signature, `htm` and `htu`
//! naming this request, `iat` within 60 s of now, a `jti` not seen before, `ath` (at the
//! API) hashing the access token, and the site's current nonce when nonces are required.
//! The token endpoint answers a bad proof `400 invalid_dpop_proof` and a missing or
//! stale nonce `400 use_dpop_nonce`, as OAuth errors; the API answers `401` problem
//! documents with a `WWW-Authenticate: DPoP` challenge. A nonce challenge carries the
//! current nonce in `DPoP-Nonce`.

// Rejections are whole responses carried in `Err`; they are built once per request, so their
// size doesn't matter and boxing them would only add noise.
#![allow(clippy::result_large_err)]

use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::request::Parts;
use http::{Method, StatusCode};
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Map, Value};

use super::jose::{now_secs, JtiKind, Site};
use super::response::{dpop_challenge, insert_nonce, json_response, Resp, JSON};
use super::state::Shared;
use super::stats::Counters;

/// How far a proof's `iat` may be from now, either way.
const IAT_WINDOW_SECS: u64 = 60;
/// The algorithms a proof may be signed with.
const PROOF_ALGS: [Algorithm; 5] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::PS256,
];

/// Why a proof was refused.
enum ProofError {
    /// The proof is missing, malformed, or doesn't fit the request.
    Invalid(String),
    /// The proof lacks the site's current nonce.
    UseNonce,
}

/// What a proof must say to fit the request.
struct Expected<'a> {
    site: Site,
    method: &'a Method,
    htu: String,
    access_token: Option<&'a str>,
}

/// The token endpoint's check: `Ok(None)` without a `DPoP` header, `Ok(Some(jkt))`
/// for a good proof, else the `400` OAuth error to answer.
pub(super) fn token_proof(shared: &Shared, parts: &Parts) -> Result<Option<String>, Resp> {
    if !parts.headers.contains_key("dpop") {
        return Ok(None);
    }
    let expected = Expected {
        site: Site::Token,
        method: &Method::POST,
        htu: shared.token_url.clone(),
        access_token: None,
    };
    match check(shared, parts, &expected) {
        Ok(jkt) => Ok(Some(jkt)),
        Err(ProofError::Invalid(detail)) => Err(json_response(
            StatusCode::BAD_REQUEST,
            JSON,
            &json!({"error": "invalid_dpop_proof", "error_description": detail}),
        )),
        Err(ProofError::UseNonce) => {
            let mut response = json_response(
                StatusCode::BAD_REQUEST,
                JSON,
                &json!({"error": "use_dpop_nonce",
                    "error_description": "Authorization server requires nonce in DPoP proof"}),
            );
            insert_nonce(&mut response, &shared.jose.nonce(Site::Token));
            Err(response)
        }
    }
}

/// The API's check of the proof sent with `Authorization: DPoP <access_token>`:
/// the key's thumbprint, else the `401` to answer.
pub(super) fn api_proof(
    shared: &Shared,
    parts: &Parts,
    access_token: &str,
) -> Result<String, Resp> {
    let expected = Expected {
        site: Site::Api,
        method: &parts.method,
        htu: format!("{}{}", shared.base_url, parts.uri.path()),
        access_token: Some(access_token),
    };
    check(shared, parts, &expected).map_err(|error| match error {
        ProofError::Invalid(detail) => dpop_challenge("invalid_dpop_proof", &detail, None),
        ProofError::UseNonce => dpop_challenge(
            "use_dpop_nonce",
            "Resource server requires nonce in DPoP proof",
            Some(&shared.jose.nonce(Site::Api)),
        ),
    })
}

/// Checks the request's one proof and counts the outcome.
fn check(shared: &Shared, parts: &Parts, expected: &Expected<'_>) -> Result<String, ProofError> {
    let counters = &shared.counters;
    Counters::bump(&counters.dpop_proofs_checked);
    let result = verify(shared, parts, expected);
    match &result {
        Ok(_) => {}
        Err(ProofError::Invalid(_)) => Counters::bump(&counters.dpop_proofs_rejected),
        Err(ProofError::UseNonce) => Counters::bump(&counters.dpop_nonce_challenges),
    }
    result
}

fn verify(shared: &Shared, parts: &Parts, expected: &Expected<'_>) -> Result<String, ProofError> {
    let invalid = |why: &str| ProofError::Invalid(format!("The DPoP proof is invalid: {why}."));
    let mut proofs = parts.headers.get_all("dpop").iter();
    let proof = match (proofs.next(), proofs.next()) {
        (Some(proof), None) => proof.to_str().map_err(|_| invalid("it is not text"))?,
        (None, _) => return Err(invalid("a DPoP header is required")),
        (Some(_), Some(_)) => return Err(invalid("only one DPoP header is allowed")),
    };
    let header: Map<String, Value> = proof
        .split('.')
        .next()
        .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| invalid("its header is not base64url JSON"))?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(invalid("typ must be dpop+jwt"));
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|alg| alg.parse::<Algorithm>().ok())
        .filter(|alg| PROOF_ALGS.contains(alg))
        .ok_or_else(|| invalid("alg must be an asymmetric algorithm"))?;
    let jwk = header
        .get("jwk")
        .filter(|jwk| jwk.get("d").is_none() && jwk.get("k").is_none())
        .ok_or_else(|| invalid("the header must carry a public jwk"))?;
    let jwk: Jwk =
        serde_json::from_value(jwk.clone()).map_err(|_| invalid("the jwk is not a JWK"))?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| invalid("the jwk is no usable key"))?;
    let jkt = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| invalid("the jwk has no thumbprint"))?;

    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(proof, &key, &validation)
        .map_err(|_| invalid("its signature does not verify with its jwk"))?
        .claims;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("htm") != Some(expected.method.as_str()) {
        return Err(invalid("htm does not match the request method"));
    }
    if text("htu") != Some(expected.htu.as_str()) {
        return Err(invalid("htu does not match the request URL"));
    }
    let iat = claims.get("iat").and_then(Value::as_u64);
    if iat.is_none_or(|iat| iat.abs_diff(now_secs()) > IAT_WINDOW_SECS) {
        return Err(invalid("iat is missing or not within 60 s of now"));
    }
    let jti = text("jti").filter(|jti| !jti.is_empty());
    let Some(jti) = jti else {
        return Err(invalid("jti is missing"));
    };
    if let Some(token) = expected.access_token {
        let ath = URL_SAFE_NO_PAD.encode(digest(&SHA256, token.as_bytes()));
        if text("ath") != Some(ath.as_str()) {
            return Err(invalid("ath does not hash the access token"));
        }
    }
    let jose = &shared.jose;
    if jose.nonce_required(expected.site)
        && text("nonce") != Some(jose.nonce(expected.site).as_str())
    {
        return Err(ProofError::UseNonce);
    }
    let until = iat.unwrap_or_default().saturating_add(IAT_WINDOW_SECS);
    if !jose.first_use(JtiKind::Proof, jti, until) {
        return Err(invalid("its jti was used before"));
    }
    Ok(jkt)
}
