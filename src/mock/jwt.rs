//! Signed client authentication at the token endpoint (feature `jwt`): client
//! assertions (RFC 7523 §2.2) for `private_key_jwt` and `client_secret_jwt`, and the
//! state DPoP shares with them: the `jti`s already seen and the current nonces.
//!
//! An assertion is checked as oidc-provider checks one: its type, the signature with the
//! client's registered key (or its secret for HS256), `iss` = `sub` = the client id,
//! `aud` naming the token endpoint or the issuer, `exp` in the future with 15 s of
//! leeway, and a `jti` not seen before. Every failure is `401 invalid_client`.

// Rejections are whole responses carried in `Err`; they are built once per request, so their
// size doesn't matter and boxing them would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::request::Params;
use super::response::{invalid_client, Resp};
use super::state::{lock, Shared};
use super::stats::Counters;

/// The one `client_assertion_type` there is (RFC 7523 §2.2).
pub(super) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew allowed on an assertion's `exp`, as oidc-provider's default `clockTolerance`.
const LEEWAY_SECS: u64 = 15;
/// Past this many remembered `jti`s, those whose time is up are forgotten.
const JTI_PRUNE_AT: usize = 4096;

/// A registered client's public key and the algorithms it may sign with.
#[derive(Clone)]
pub(super) struct ClientKey {
    key: DecodingKey,
    algs: Vec<Algorithm>,
}

impl ClientKey {
    /// Reads a public JWK; `Err` says why it is not one.
    pub(super) fn from_jwk(jwk: &Value) -> Result<ClientKey, String> {
        if jwk.get("d").is_some() || jwk.get("k").is_some() {
            return Err("the JWK holds private key material; register the public key".into());
        }
        let parsed: Jwk =
            serde_json::from_value(jwk.clone()).map_err(|_| "not a JWK".to_owned())?;
        let key = DecodingKey::from_jwk(&parsed).map_err(|e| format!("unusable JWK: {e}"))?;
        let text = |name: &str| jwk.get(name).and_then(Value::as_str);
        let algs = match (text("alg"), text("kty"), text("crv")) {
            (Some(alg), _, _) => vec![alg.parse().map_err(|_| format!("unknown alg {alg:?}"))?],
            (None, Some("RSA"), _) => vec![Algorithm::RS256, Algorithm::PS256],
            (None, Some("EC"), Some("P-256")) => vec![Algorithm::ES256],
            (None, Some("EC"), Some("P-384")) => vec![Algorithm::ES384],
            (None, Some("OKP"), Some("Ed25519")) => vec![Algorithm::EdDSA],
            _ => return Err("not an RSA, P-256, P-384 or Ed25519 public JWK".into()),
        };
        Ok(ClientKey { key, algs })
    }
}

/// What [`MockConfig`](super::MockConfig) says about signed authentication and DPoP.
#[derive(Clone, Default)]
pub(super) struct JoseConfig {
    pub(super) clients: Vec<(String, ClientKey)>,
    pub(super) client_secret_jwt: bool,
    pub(super) token_nonce: bool,
    pub(super) api_nonce: bool,
}

impl fmt::Debug for JoseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.clients.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("JoseConfig")
            .field("private_key_jwt_clients", &ids)
            .field("client_secret_jwt", &self.client_secret_jwt)
            .field("require_dpop_nonce", &self.token_nonce)
            .field("require_api_dpop_nonce", &self.api_nonce)
            .finish()
    }
}

/// Where a DPoP proof is checked: each place has its own nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Site {
    /// The token endpoint.
    Token,
    /// The API under `/api/v1/`.
    Api,
}

/// Which `jti`s a `jti` must differ from.
#[derive(Debug, Clone, Copy)]
pub(super) enum JtiKind {
    Assertion,
    Proof,
}

/// The server's signed-authentication state: fixed settings, then what changes.
pub(super) struct Jose {
    clients: HashMap<String, ClientKey>,
    client_secret_jwt: bool,
    token_nonce: bool,
    api_nonce: bool,
    seen: Mutex<Seen>,
}

/// `jti`s seen (to the Unix time they may be forgotten) and the current nonces.
struct Seen {
    assertions: HashMap<String, u64>,
    proofs: HashMap<String, u64>,
    token_nonce: String,
    api_nonce: String,
}

impl Jose {
    /// The state a configuration starts with.
    pub(super) fn new(config: JoseConfig) -> Jose {
        Jose {
            clients: config.clients.into_iter().collect(),
            client_secret_jwt: config.client_secret_jwt,
            token_nonce: config.token_nonce,
            api_nonce: config.api_nonce,
            seen: Mutex::new(Seen {
                assertions: HashMap::new(),
                proofs: HashMap::new(),
                token_nonce: new_nonce(),
                api_nonce: new_nonce(),
            }),
        }
    }

    /// Whether proofs at `site` must carry its nonce.
    pub(super) fn nonce_required(&self, site: Site) -> bool {
        match site {
            Site::Token => self.token_nonce,
            Site::Api => self.api_nonce,
        }
    }

    /// The current nonce of `site`.
    pub(super) fn nonce(&self, site: Site) -> String {
        let seen = lock(&self.seen);
        match site {
            Site::Token => seen.token_nonce.clone(),
            Site::Api => seen.api_nonce.clone(),
        }
    }

    /// Replaces both nonces, so proofs carrying the old ones are challenged.
    pub(super) fn rotate_nonces(&self) {
        let mut seen = lock(&self.seen);
        seen.token_nonce = new_nonce();
        seen.api_nonce = new_nonce();
    }

    /// Records `jti` until the Unix time `until`; `false` if it was seen before.
    pub(super) fn first_use(&self, kind: JtiKind, jti: &str, until: u64) -> bool {
        let mut seen = lock(&self.seen);
        let set = match kind {
            JtiKind::Assertion => &mut seen.assertions,
            JtiKind::Proof => &mut seen.proofs,
        };
        if set.contains_key(jti) {
            return false;
        }
        if set.len() >= JTI_PRUNE_AT {
            let now = now_secs();
            set.retain(|_, until| *until >= now);
        }
        set.insert(jti.to_owned(), until);
        true
    }
}

/// A fresh nonce: 128 random bits as hex, within RFC 9449's `NQCHAR`.
fn new_nonce() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Seconds since the Unix epoch, the clock JWT times are on.
pub(super) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

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
    let token_url = format!("{}{}", shared.base_url, super::token::TOKEN_PATH);
    validation.set_audience(&[token_url.as_str(), shared.base_url.as_str()]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::test_support::{EC_JWK, ED_JWK, RSA_JWK};

    fn public(private: &str) -> Value {
        let mut jwk: Map<String, Value> = serde_json::from_str(private).unwrap();
        for member in ["d", "p", "q", "dp", "dq", "qi"] {
            jwk.remove(member);
        }
        Value::Object(jwk)
    }

    #[test]
    fn a_public_jwk_allows_the_algorithms_of_its_key_type_and_a_private_one_is_refused() {
        let algs = |jwk: &Value| ClientKey::from_jwk(jwk).unwrap().algs;
        let mut rsa = public(RSA_JWK);
        rsa.as_object_mut().unwrap().remove("alg");
        assert_eq!(algs(&rsa), [Algorithm::RS256, Algorithm::PS256]);
        rsa["alg"] = "PS256".into();
        assert_eq!(algs(&rsa), [Algorithm::PS256]);
        assert_eq!(algs(&public(ED_JWK)), [Algorithm::EdDSA]);
        let why = ClientKey::from_jwk(&serde_json::from_str(EC_JWK).unwrap())
            .err()
            .expect("a private JWK is refused");
        assert!(why.contains("private"), "{why}");
        assert!(ClientKey::from_jwk(&serde_json::json!({"kty": "oct", "k": "c2VjcmV0"})).is_err());
    }

    #[test]
    fn a_jti_is_accepted_once_per_kind_and_rotation_changes_both_nonces() {
        let jose = Jose::new(JoseConfig::default());
        let far = now_secs() + 60;
        assert!(jose.first_use(JtiKind::Assertion, "j-1", far));
        assert!(!jose.first_use(JtiKind::Assertion, "j-1", far));
        assert!(jose.first_use(JtiKind::Proof, "j-1", far));
        let (token, api) = (jose.nonce(Site::Token), jose.nonce(Site::Api));
        assert_ne!(token, api);
        jose.rotate_nonces();
        assert_ne!(jose.nonce(Site::Token), token);
        assert_ne!(jose.nonce(Site::Api), api);
    }
}
