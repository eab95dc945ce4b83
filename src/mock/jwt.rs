//! Signed client authentication at the token endpoint (feature `jwt`): client
//! assertions (RFC 7523 §2.2) for `private_key_jwt` and `client_secret_jwt`.
//!
//! An assertion is checked as oidc-provider checks one: its type, the signature with the
//! client's registered key (or its secret for HS256), `iss` = `sub` = the client id,
//! `aud` naming the token endpoint or the issuer, `exp` in the future with 15 s of
//! leeway, and a `jti` not seen before. Every failure is `401 invalid_client`.

// Rejections are whole responses carried in `Err`; they are built once per request, so their
// size doesn't matter and boxing them would only add noise.
#![allow(clippy::result_large_err)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::jose::JtiKind;
use super::request::Params;
use super::response::{invalid_client, Resp};
use super::state::Shared;
use super::stats::Counters;

/// The one `client_assertion_type` there is (RFC 7523 §2.2).
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew allowed on an assertion's `exp`, as oidc-provider's default `clockTolerance`.
const LEEWAY_SECS: u64 = 15;

/// The claims of a JWT, read without checking anything; `None` if it has no JSON payload.
pub(super) fn unverified_claims(jwt: &str) -> Option<Map<String, Value>> {
    let payload = jwt.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// Authenticates the client of a token request by its assertion; returns its id.
pub(super) fn authenticate(shared: &Shared, params: &Params) -> Result<String, Resp> {
    let fail = |why: &str| invalid_client(false, &format!("Client authentication failed: {why}."));
    if params.get("client_assertion_type") != Some(ASSERTION_TYPE) {
        return Err(fail(
            "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ));
    }
    let Some(assertion) = params.get("client_assertion") else {
        return Err(fail("no client_assertion was sent"));
    };
    if params.contains("client_secret") {
        return Err(fail("a client_secret was sent with the client assertion"));
    }
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| fail("the client assertion is not a JWT"))?;
    let issuer = unverified_claims(assertion)
        .and_then(|claims| claims.get("iss")?.as_str().map(str::to_owned))
        .ok_or_else(|| fail("the client assertion has no iss"))?;
    let id = params.get("client_id").unwrap_or(issuer.as_str());
    let jose = &shared.jose;
    let secret_key;
    let (key, algs) = if header.alg == Algorithm::HS256 {
        if !(jose.client_secret_jwt && id == shared.client_id) {
            return Err(fail("this client may not use client_secret_jwt"));
        }
        secret_key = DecodingKey::from_secret(shared.client_secret.as_bytes())
            .map_err(|_| fail("the client secret is no HS256 key"))?;
        (&secret_key, &[Algorithm::HS256][..])
    } else {
        let client = jose
            .clients
            .get(id)
            .ok_or_else(|| fail("no client with this id uses private_key_jwt"))?;
        (&client.key, client.algs.as_slice())
    };

    let mut validation = Validation::new(header.alg);
    validation.algorithms = algs.to_vec();
    validation.leeway = LEEWAY_SECS;
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud", "jti"]);
    validation.set_issuer(&[id]);
    validation.sub = Some(id.to_owned());
    validation.set_audience(&[shared.token_url.as_str(), shared.base_url.as_str()]);
    let claims = jsonwebtoken::decode::<Map<String, Value>>(assertion, key, &validation)
        .map_err(|e| fail(&format!("the client assertion does not verify ({e})")))?
        .claims;
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .unwrap_or_default();
    if jti.is_empty() {
        return Err(fail("the client assertion has an empty jti"));
    }
    if !jose.first_use(JtiKind::Assertion, jti, exp.saturating_add(LEEWAY_SECS)) {
        return Err(fail(
            "the client assertion was used before (its jti is not new)",
        ));
    }
    Counters::bump(&shared.counters.assertions_verified);
    Ok(id.to_owned())
}
