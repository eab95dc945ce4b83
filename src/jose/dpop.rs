//! DPoP proofs (RFC 9449): a key the client holds and the proof JWTs it signs.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
};

use aws_lc_rs::{
    digest::{digest, SHA256},
    rand::SystemRandom,
    signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING},
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use http::{HeaderName, HeaderValue, Method, Uri};
use serde_json::{json, Map, Value};

use super::{
    claims::{jti, now_secs},
    key::{config, SigningAlg, SigningKey},
};
use crate::{error::Error, sync::lock};

/// At most this many origins' nonces are kept; past it the map starts over, and a
/// forgotten origin costs one `use_dpop_nonce` round trip.
const MAX_ORIGINS: usize = 64;

/// A key for DPoP proofs: an asymmetric [`SigningKey`] and the proof header made of its
/// public JWK, prepared once.
///
/// `Debug` shows the algorithm and thumbprint, never the key. Cloning is cheap.
#[derive(Clone)]
pub struct DpopKey {
    key: SigningKey,
    /// `{"typ":"dpop+jwt","alg":..,"jwk":..}`, base64url.
    header: Arc<str>,
    jkt: Arc<str>,
}

impl DpopKey {
    /// A new random key for ES256 (the usual choice) or EdDSA, made by aws-lc-rs.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`](crate::ErrorKind::Config) error for another algorithm,
    /// or if key generation fails.
    pub fn generate(alg: SigningAlg) -> Result<Self, Error> {
        let rng = SystemRandom::new();
        let pkcs8 = match alg {
            SigningAlg::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            }
            SigningAlg::EdDSA => Ed25519KeyPair::generate_pkcs8v1(&rng),
            _ => {
                return Err(config(&format!(
                    "DPoP keys are generated for ES256 and EdDSA, not {alg}"
                )))
            }
        }
        .map_err(|e| config("DPoP key generation failed").with_source(e))?;
        Self::from_signing_key(SigningKey::from_pkcs8(alg, pkcs8.as_ref())?)
    }

    /// A key from a PEM private key, for RS256, PS256, ES256 or EdDSA (see
    /// [`SigningKey::from_pem`]).
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`](crate::ErrorKind::Config) error as
    /// [`SigningKey::from_pem`] gives one, and for HS256.
    pub fn from_pem(alg: SigningAlg, pem: &[u8]) -> Result<Self, Error> {
        Self::from_signing_key(SigningKey::from_pem(alg, pem)?)
    }

    /// A DPoP key of an asymmetric signing key.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`](crate::ErrorKind::Config) error for an HS256 key: a
    /// proof must carry its public key.
    pub fn from_signing_key(key: SigningKey) -> Result<Self, Error> {
        let (Some(jwk), Some(jkt)) = (key.jwk(), key.thumbprint()) else {
            return Err(config("a DPoP key must be asymmetric, not HS256"));
        };
        let header = json!({"typ": "dpop+jwt", "alg": key.alg().as_str(), "jwk": jwk});
        let header = serde_json::to_vec(&header)
            .map_err(|e| config("the DPoP header cannot be written").with_source(e))?;
        Ok(Self {
            header: URL_SAFE_NO_PAD.encode(header).into(),
            jkt: jkt.into(),
            key,
        })
    }

    /// The RFC 7638 thumbprint of the public key (the `jkt` a server binds tokens to).
    pub fn thumbprint(&self) -> &str {
        &self.jkt
    }

    /// The algorithm proofs are signed with.
    pub fn alg(&self) -> SigningAlg {
        self.key.alg()
    }

    /// The public JWK sent in every proof's header.
    pub fn public_jwk(&self) -> Value {
        self.key.public_jwk().unwrap_or_default()
    }
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &self.key.alg())
            .field("jkt", &&*self.jkt)
            .field("key", &format_args!("<redacted>"))
            .finish()
    }
}

/// A DPoP signer: the key, and the last `DPoP-Nonce` each origin sent.
///
/// Clones share the key and the nonces. Set it on a
/// [`TokenRequest`](crate::TokenRequest) with
/// [`with_dpop`](crate::TokenRequest::with_dpop) and the built-in fetcher sends proofs.
///
/// ```
/// use http::{Method, Uri};
/// use tower_oauth::jose::Dpop;
///
/// let dpop = Dpop::generate()?;
/// let uri: Uri = "https://api.example/v1/docs?page=2".parse().unwrap();
/// let proof = dpop.proof(&Method::GET, &uri, Some("the-access-token"))?;
/// assert_eq!(proof.to_str().unwrap().split('.').count(), 3);
/// assert!(proof.is_sensitive());
/// # Ok::<(), tower_oauth::Error>(())
/// ```
#[derive(Clone)]
pub struct Dpop {
    shared: Arc<Shared>,
}

struct Shared {
    key: DpopKey,
    /// `scheme://host:port` to the last nonce it sent.
    nonces: Mutex<HashMap<String, Arc<str>>>,
}

impl Dpop {
    /// A signer with `key`.
    pub fn new(key: DpopKey) -> Self {
        Self {
            shared: Arc::new(Shared {
                key,
                nonces: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A signer with a new ES256 key.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`](crate::ErrorKind::Config) error if key generation fails.
    pub fn generate() -> Result<Self, Error> {
        DpopKey::generate(SigningAlg::ES256).map(Self::new)
    }

    /// The key.
    pub fn key(&self) -> &DpopKey {
        &self.shared.key
    }

    /// A proof for a request: `htm` and `htu` (the URI without query and fragment),
    /// `iat`, a fresh `jti`, `ath` when `access_token` is given, and the origin's last
    /// nonce, if any. The value is marked sensitive.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`](crate::ErrorKind::Config) error if `uri` is not absolute
    /// (a scheme and a host), or signing fails.
    pub fn proof(
        &self,
        method: &Method,
        uri: &Uri,
        access_token: Option<&str>,
    ) -> Result<HeaderValue, Error> {
        let (htu, origin) = target(uri)?;
        let mut claims = Map::with_capacity(6);
        claims.insert("jti".into(), jti()?.into());
        claims.insert("htm".into(), method.as_str().into());
        claims.insert("htu".into(), htu.into());
        claims.insert("iat".into(), now_secs().into());
        if let Some(token) = access_token {
            let hash = digest(&SHA256, token.as_bytes());
            claims.insert("ath".into(), URL_SAFE_NO_PAD.encode(hash).into());
        }
        let nonce = lock(&self.shared.nonces).get(&origin).cloned();
        if let Some(nonce) = nonce {
            claims.insert("nonce".into(), nonce.to_string().into());
        }
        let claims = serde_json::to_vec(&claims)
            .map_err(|e| config("the DPoP claims cannot be written").with_source(e))?;
        let header = &self.shared.key.header;
        let mut jwt = String::with_capacity(header.len() + claims.len() * 4 / 3 + 700);
        jwt.push_str(header);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut jwt);
        let signature = self.shared.key.key.sign(jwt.as_bytes())?;
        jwt.push('.');
        jwt.push_str(&signature);
        let mut value = HeaderValue::try_from(jwt)
            .map_err(|_| config("the DPoP proof is not a header value"))?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// Keeps a `DPoP-Nonce` value `uri`'s origin sent, for its next proofs. A value that
    /// is not a valid nonce (RFC 9449 §8.1), or a relative `uri`, is ignored.
    pub fn remember_nonce(&self, uri: &Uri, value: &HeaderValue) {
        let Ok((_, origin)) = target(uri) else { return };
        let nonce = value.as_bytes();
        let valid = !nonce.is_empty()
            && nonce
                .iter()
                .all(|&b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        let Ok(nonce) = value.to_str() else { return };
        if !valid {
            return;
        }
        let mut nonces = lock(&self.shared.nonces);
        if nonces.len() >= MAX_ORIGINS && !nonces.contains_key(&origin) {
            nonces.clear();
        }
        nonces.insert(origin, Arc::from(nonce));
    }

    /// The last nonce `uri`'s origin sent, if any.
    pub fn nonce(&self, uri: &Uri) -> Option<String> {
        let (_, origin) = target(uri).ok()?;
        lock(&self.shared.nonces)
            .get(&origin)
            .map(|n| n.to_string())
    }
}

impl PartialEq for Dpop {
    /// The same signer: clones of one `Dpop`.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for Dpop {}

impl fmt::Debug for Dpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dpop")
            .field("key", &self.shared.key)
            .field("origins_with_nonce", &lock(&self.shared.nonces).len())
            .finish()
    }
}

/// The `DPoP` request header (RFC 9449 §4.1).
pub(crate) const DPOP: HeaderName = HeaderName::from_static("dpop");
/// The `DPoP-Nonce` response header (RFC 9449 §8).
pub(crate) const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The `htu` of `uri` (no user info, query or fragment) and its origin
/// (`scheme://host:port`, the port explicit).
fn target(uri: &Uri) -> Result<(String, String), Error> {
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(config("a DPoP proof needs an absolute URI"));
    };
    let scheme = scheme.to_ascii_lowercase();
    let host = authority.host().to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        _ => 80,
    };
    let port = authority.port_u16().unwrap_or(default_port);
    let shown_port = if port == default_port {
        String::new()
    } else {
        format!(":{port}")
    };
    let path = match uri.path() {
        "" => "/",
        path => path,
    };
    Ok((
        format!("{scheme}://{host}{shown_port}{path}"),
        format!("{scheme}://{host}:{port}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{error::ErrorKind, jose::test_support::*};

    fn keys() -> Vec<DpopKey> {
        vec![
            DpopKey::generate(SigningAlg::ES256).unwrap(),
            DpopKey::generate(SigningAlg::EdDSA).unwrap(),
            DpopKey::from_pem(SigningAlg::RS256, RSA_PEM).unwrap(),
            DpopKey::from_pem(SigningAlg::PS256, RSA_PEM).unwrap(),
            DpopKey::from_pem(SigningAlg::ES256, EC_PEM).unwrap(),
        ]
    }

    /// Verifies a proof with the key in its own header, as a server does.
    fn open(proof: &HeaderValue) -> (jsonwebtoken::Header, Map<String, Value>) {
        let proof = proof.to_str().unwrap();
        let header = jsonwebtoken::decode_header(proof).unwrap();
        let jwk = serde_json::to_value(header.jwk.as_ref().expect("a jwk header")).unwrap();
        let alg = match header.alg {
            jsonwebtoken::Algorithm::RS256 => SigningAlg::RS256,
            jsonwebtoken::Algorithm::PS256 => SigningAlg::PS256,
            jsonwebtoken::Algorithm::ES256 => SigningAlg::ES256,
            jsonwebtoken::Algorithm::EdDSA => SigningAlg::EdDSA,
            other => panic!("{other:?}"),
        };
        verify(proof, alg, Some(&jwk), None)
    }

    #[test]
    fn a_proof_carries_each_rfc_9449_claim_and_verifies_with_its_own_jwk() {
        let uri: Uri = "https://API.example:443/v1/docs?page=2#top"
            .parse()
            .unwrap();
        for key in keys() {
            let alg = key.alg();
            let dpop = Dpop::new(key.clone());
            let proof = dpop.proof(&Method::GET, &uri, Some("tok")).unwrap();
            assert!(proof.is_sensitive());
            let (header, claims) = open(&proof);
            assert_eq!(header.typ.as_deref(), Some("dpop+jwt"), "{alg}");
            assert_eq!(header.alg, alg.algorithm());
            let jwk = serde_json::to_value(header.jwk.unwrap()).unwrap();
            assert!(jwk.get("d").is_none(), "{alg}: {jwk}");
            assert_eq!(jwk, key.public_jwk(), "{alg}");
            assert_eq!(claims["htm"], "GET");
            assert_eq!(claims["htu"], "https://api.example/v1/docs", "{alg}");
            assert!(claims["iat"].as_u64().unwrap().abs_diff(now_secs()) < 3600);
            assert_eq!(claims["jti"].as_str().unwrap().len(), 22);
            assert!(claims.contains_key("ath") && !claims.contains_key("nonce"));
            let second = open(&dpop.proof(&Method::GET, &uri, Some("tok")).unwrap()).1;
            assert_ne!(claims["jti"], second["jti"], "{alg}");
        }
    }

    #[test]
    fn ath_is_the_rfc_9449_hash_of_the_token_and_absent_without_one() {
        let dpop = Dpop::generate().unwrap();
        let uri: Uri = "http://127.0.0.1:8080/token".parse().unwrap();
        // RFC 9449 §7.1.
        let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
        let claims = open(&dpop.proof(&Method::POST, &uri, Some(token)).unwrap()).1;
        assert_eq!(claims["ath"], "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
        assert_eq!(claims["htu"], "http://127.0.0.1:8080/token");
        assert_eq!(claims["htm"], "POST");
        let claims = open(&dpop.proof(&Method::POST, &uri, None).unwrap()).1;
        assert!(!claims.contains_key("ath"));
    }

    #[test]
    fn a_nonce_is_sent_to_the_origin_that_gave_it_and_no_other() {
        let dpop = Dpop::generate().unwrap();
        let token_url: Uri = "https://as.example/token".parse().unwrap();
        dpop.remember_nonce(&token_url, &HeaderValue::from_static("n-1"));
        // The same origin, its port explicit, another path; a clone shares the nonces.
        let same: Uri = "https://as.example:443/other".parse().unwrap();
        let claims = open(&dpop.clone().proof(&Method::GET, &same, None).unwrap()).1;
        assert_eq!(claims["nonce"], "n-1");
        for other in [
            "http://as.example/token",
            "https://as.example:8443/token",
            "https://rs.example/",
        ] {
            let claims = open(
                &dpop
                    .proof(&Method::GET, &other.parse().unwrap(), None)
                    .unwrap(),
            )
            .1;
            assert!(!claims.contains_key("nonce"), "{other}");
        }
        // A newer nonce replaces it; one that is not a nonce is ignored.
        dpop.remember_nonce(&token_url, &HeaderValue::from_static("n-2"));
        dpop.remember_nonce(&token_url, &HeaderValue::from_static("has space"));
        dpop.remember_nonce(&token_url, &HeaderValue::from_static("quote\""));
        assert_eq!(dpop.nonce(&same).as_deref(), Some("n-2"));
    }

    #[test]
    fn symmetric_keys_and_relative_uris_are_refused() {
        let hs = SigningKey::hs256(&[1; 32]).unwrap();
        assert_eq!(
            DpopKey::from_signing_key(hs).unwrap_err().kind(),
            ErrorKind::Config
        );
        for alg in [SigningAlg::RS256, SigningAlg::HS256] {
            assert_eq!(
                DpopKey::generate(alg).unwrap_err().kind(),
                ErrorKind::Config
            );
        }
        let err = Dpop::generate()
            .unwrap()
            .proof(&Method::GET, &"/relative".parse().unwrap(), None)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
    }

    #[test]
    fn debug_shows_the_thumbprint_but_no_key_material() {
        let key = DpopKey::from_pem(SigningAlg::ES256, EC_PEM).unwrap();
        let jwk: Value = serde_json::from_str(EC_JWK).unwrap();
        let shown = format!("{:?} {key:?}", Dpop::new(key.clone()));
        assert!(shown.contains(key.thumbprint()), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("ES256"),
            "{shown}"
        );
        assert!(!shown.contains(jwk["d"].as_str().unwrap()), "{shown}");
        assert_eq!(
            key.thumbprint(),
            SigningKey::from_jwk(EC_JWK).unwrap().thumbprint().unwrap()
        );
    }
}
