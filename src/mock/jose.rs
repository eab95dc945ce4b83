//! What the mock knows and remembers for signed client authentication and DPoP
//! (feature `jwt`): the registered client keys, the `jti`s already seen and the
//! current nonces.
//!
//! [`JoseConfig`] is what [`MockConfig`](super::MockConfig) collects; [`Jose`] is the
//! running server's part of the shared state, behind its own mutex.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::sync::lock;

/// Past this many remembered `jti`s, those whose time is up are forgotten.
const JTI_PRUNE_AT: usize = 4096;

/// A registered client's public key and the algorithms it may sign with.
#[derive(Clone)]
pub(super) struct ClientKey {
    pub(super) key: DecodingKey,
    pub(super) algs: Vec<Algorithm>,
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
    pub(super) clients: HashMap<String, ClientKey>,
    pub(super) client_secret_jwt: bool,
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

#[cfg(test)]
mod tests {
    use serde_json::Map;

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
