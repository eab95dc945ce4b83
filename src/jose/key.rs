//! Signing keys: what signs client assertions and DPoP proofs.

use std::{fmt, str::FromStr, sync::Arc};

use aws_lc_rs::{
    encoding::AsDer,
    rsa::{KeyPair as RsaKeyPair, KeyPairComponents, PublicKeyComponents},
    signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING},
};
use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine as _,
};
use jsonwebtoken::{
    crypto::CryptoProvider,
    jwk::{Jwk, ThumbprintHash},
    Algorithm, EncodingKey,
};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind};

/// The shortest HS256 secret accepted: 256 bits, the size of the hash (RFC 7518 §3.2).
const MIN_HS256_SECRET: usize = 32;

/// A JWS signing algorithm this crate signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
    /// HMAC with SHA-256, for `client_secret_jwt`.
    HS256,
}

impl SigningAlg {
    /// The JOSE name, as in a JWT header's `alg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::PS256 => "PS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
            Self::HS256 => "HS256",
        }
    }

    pub(crate) fn algorithm(self) -> Algorithm {
        match self {
            Self::RS256 => Algorithm::RS256,
            Self::PS256 => Algorithm::PS256,
            Self::ES256 => Algorithm::ES256,
            Self::EdDSA => Algorithm::EdDSA,
            Self::HS256 => Algorithm::HS256,
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlg {
    type Err = Error;

    /// Parses a JOSE name, ignoring case (`es256` is `ES256`).
    fn from_str(s: &str) -> Result<Self, Error> {
        [
            Self::RS256,
            Self::PS256,
            Self::ES256,
            Self::EdDSA,
            Self::HS256,
        ]
        .into_iter()
        .find(|alg| alg.as_str().eq_ignore_ascii_case(s.trim()))
        .ok_or_else(|| {
            config("unknown signing algorithm: expected RS256, PS256, ES256, EdDSA or HS256")
        })
    }
}

/// A private key and the algorithm it signs with.
///
/// `Debug` shows the algorithm and key id, never the key. Cloning is cheap.
///
/// ```
/// use tower_oauth::jose::{SigningAlg, SigningKey};
///
/// let key = SigningKey::from_jwk(r#"{"kty":"OKP","crv":"Ed25519","kid":"k1",
///     "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
///     "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#)?;
/// assert_eq!(key.alg(), SigningAlg::EdDSA);
/// assert_eq!(key.key_id(), Some("k1"));
/// assert_eq!(format!("{key:?}"), r#"SigningKey { alg: EdDSA, kid: Some("k1"), key: <redacted> }"#);
/// # Ok::<(), tower_oauth::Error>(())
/// ```
#[derive(Clone)]
pub struct SigningKey {
    alg: SigningAlg,
    kid: Option<Arc<str>>,
    key: Arc<EncodingKey>,
    /// The public JWK; `None` for HS256, whose key is the secret.
    public: Option<Arc<Jwk>>,
}

impl SigningKey {
    /// A key from a PEM private key: PKCS#8 (`PRIVATE KEY`) for any algorithm, or PKCS#1
    /// (`RSA PRIVATE KEY`) for RS256 and PS256.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`] error if the PEM holds no private key for `alg` (an EC
    /// key for RS256, a P-384 key for ES256, an RSA key under 2048 bits), or `alg` is
    /// HS256 (see [`hs256`](Self::hs256)). The error never shows the key.
    pub fn from_pem(alg: SigningAlg, pem: &[u8]) -> Result<Self, Error> {
        let key = match alg {
            SigningAlg::RS256 | SigningAlg::PS256 => EncodingKey::from_rsa_pem(pem),
            SigningAlg::ES256 => EncodingKey::from_ec_pem(pem),
            SigningAlg::EdDSA => EncodingKey::from_ed_pem(pem),
            SigningAlg::HS256 => {
                return Err(config("an HS256 key is a shared secret, not a PEM key"))
            }
        }
        .map_err(|e| config(&format!("the PEM holds no private key for {alg}")).with_source(e))?;
        Self::checked(alg, key)
    }

    /// A private key from a JWK (RFC 7517): RSA, EC on P-256, or OKP Ed25519.
    ///
    /// The key id is the JWK's `kid`. The algorithm is its `alg`, else RS256, ES256 or
    /// EdDSA by key type.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`] error if the JSON is no private JWK of those kinds, or
    /// its `alg` does not fit the key. The error never shows the key.
    pub fn from_jwk(json: &str) -> Result<Self, Error> {
        let jwk: Map<String, Value> =
            serde_json::from_str(json).map_err(|_| config("the JWK is not a JSON object"))?;
        let text = |name: &str| jwk.get(name).and_then(Value::as_str);
        let bytes = |name: &str| -> Result<Zeroizing<Vec<u8>>, Error> {
            let value =
                text(name).ok_or_else(|| config(&format!("the JWK has no `{name}` member")))?;
            URL_SAFE_NO_PAD
                .decode(value.trim_end_matches('='))
                .map(Zeroizing::new)
                .map_err(|_| config(&format!("the JWK's `{name}` is not base64url")))
        };
        if !jwk.contains_key("d") {
            return Err(config("the JWK is a public key: it has no `d` member"));
        }
        let (default_alg, pkcs8) = match text("kty") {
            Some("RSA") => {
                let (n, e, d) = (bytes("n")?, bytes("e")?, bytes("d")?);
                let (p, q) = (bytes("p")?, bytes("q")?);
                let (dp, dq, qi) = (bytes("dp")?, bytes("dq")?, bytes("qi")?);
                let components = KeyPairComponents {
                    public_key: PublicKeyComponents {
                        n: n.as_slice(),
                        e: e.as_slice(),
                    },
                    d: d.as_slice(),
                    p: p.as_slice(),
                    q: q.as_slice(),
                    dP: dp.as_slice(),
                    dQ: dq.as_slice(),
                    qInv: qi.as_slice(),
                };
                let pair = RsaKeyPair::from_components(&components)
                    .map_err(|e| config("the RSA JWK is not a usable key").with_source(e))?;
                let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'_>>::as_der(&pair)
                    .map_err(|e| config("the RSA JWK cannot be encoded").with_source(e))?;
                (SigningAlg::RS256, Zeroizing::new(der.as_ref().to_vec()))
            }
            Some("EC") => {
                if text("crv") != Some("P-256") {
                    return Err(config("an EC JWK must be on the P-256 curve"));
                }
                let mut point = Zeroizing::new(vec![4u8]);
                point.extend_from_slice(&bytes("x")?);
                point.extend_from_slice(&bytes("y")?);
                let pair = EcdsaKeyPair::from_private_key_and_public_key(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &bytes("d")?,
                    &point,
                )
                .map_err(|e| config("the EC JWK is not a usable key").with_source(e))?;
                let der = pair
                    .to_pkcs8v1()
                    .map_err(|e| config("the EC JWK cannot be encoded").with_source(e))?;
                (SigningAlg::ES256, Zeroizing::new(der.as_ref().to_vec()))
            }
            Some("OKP") => {
                if text("crv") != Some("Ed25519") {
                    return Err(config("an OKP JWK must be on the Ed25519 curve"));
                }
                let pair = Ed25519KeyPair::from_seed_and_public_key(&bytes("d")?, &bytes("x")?)
                    .map_err(|e| config("the OKP JWK is not a usable key").with_source(e))?;
                let der = pair
                    .to_pkcs8v1()
                    .map_err(|e| config("the OKP JWK cannot be encoded").with_source(e))?;
                (SigningAlg::EdDSA, Zeroizing::new(der.as_ref().to_vec()))
            }
            Some("oct") => {
                return Err(config(
                    "an `oct` JWK is a shared secret: use client_secret_jwt instead",
                ))
            }
            _ => return Err(config("the JWK's `kty` is not RSA, EC or OKP")),
        };
        let alg = match text("alg") {
            Some(alg) => alg.parse()?,
            None => default_alg,
        };
        let key = Self::from_pem(alg, pem(&pkcs8).as_bytes())?;
        Ok(match text("kid") {
            Some(kid) => key.with_key_id(kid),
            None => key,
        })
    }

    /// An HS256 key of a shared secret, as `client_secret_jwt` signs with.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`] error if the secret is shorter than 32 bytes: RFC 7518
    /// §3.2 wants a key at least as long as the hash.
    pub fn hs256(secret: &[u8]) -> Result<Self, Error> {
        if secret.len() < MIN_HS256_SECRET {
            return Err(config(&format!(
                "an HS256 secret must be at least {MIN_HS256_SECRET} bytes (RFC 7518 §3.2); \
                 this one has {}",
                secret.len()
            )));
        }
        let key = EncodingKey::from_secret(secret)
            .map_err(|e| config("the HS256 secret is not usable").with_source(e))?;
        Self::checked(SigningAlg::HS256, key)
    }

    /// A key from a generated PKCS#8 document.
    pub(crate) fn from_pkcs8(alg: SigningAlg, der: &[u8]) -> Result<Self, Error> {
        let key = match alg {
            SigningAlg::ES256 => EncodingKey::from_ec_der(der),
            SigningAlg::EdDSA => EncodingKey::from_ed_der(der),
            _ => return Err(config(&format!("keys for {alg} are not generated"))),
        };
        Self::checked(alg, key)
    }

    /// Signs once and derives the public JWK, so a key that does not fit `alg` is
    /// refused now rather than at its first use.
    fn checked(alg: SigningAlg, key: EncodingKey) -> Result<Self, Error> {
        if CryptoProvider::try_get_default().is_none() {
            return Err(config(
                "jsonwebtoken has no crypto provider: install one with \
                 `jsonwebtoken::crypto::CryptoProvider::install_default`",
            ));
        }
        jsonwebtoken::crypto::sign(b"key check", &key, alg.algorithm())
            .map_err(|e| config(&format!("the key does not sign with {alg}")).with_source(e))?;
        let public = match alg {
            SigningAlg::HS256 => None,
            _ => Some(Arc::new(
                Jwk::from_encoding_key(&key, alg.algorithm()).map_err(|e| {
                    config("the key's public part cannot be derived").with_source(e)
                })?,
            )),
        };
        Ok(Self {
            alg,
            kid: None,
            key: Arc::new(key),
            public,
        })
    }

    /// Sets the key id, sent as the `kid` header. Default: the JWK's `kid`, else none.
    pub fn with_key_id(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(Arc::from(kid.into()));
        self
    }

    /// The key id, if known.
    pub fn key_id(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm it signs with.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The public JWK (`kty`, the public members, `alg` and `kid` when known); `None`
    /// for HS256, whose key is secret.
    pub fn public_jwk(&self) -> Option<Value> {
        let mut jwk = serde_json::to_value(self.public.as_deref()?).ok()?;
        if let (Some(kid), Some(map)) = (&self.kid, jwk.as_object_mut()) {
            map.insert("kid".into(), Value::String(kid.to_string()));
        }
        Some(jwk)
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key, base64url; `None` for HS256.
    pub fn thumbprint(&self) -> Option<String> {
        self.public
            .as_ref()?
            .thumbprint(ThumbprintHash::SHA256)
            .ok()
    }

    /// The public key as jsonwebtoken holds it.
    pub(crate) fn jwk(&self) -> Option<&Jwk> {
        self.public.as_deref()
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.key
    }

    /// The base64url signature of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<String, Error> {
        jsonwebtoken::crypto::sign(message, &self.key, self.alg.algorithm())
            .map_err(|e| config("signing failed").with_source(e))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid.as_deref())
            .field("key", &format_args!("<redacted>"))
            .finish()
    }
}

/// A PKCS#8 document as PEM text, the one form jsonwebtoken reads every key type from.
fn pem(der: &[u8]) -> Zeroizing<String> {
    let body = Zeroizing::new(STANDARD.encode(der));
    let mut out = Zeroizing::new(String::with_capacity(body.len() + 80));
    out.push_str("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

pub(crate) fn config(detail: &str) -> Error {
    Error::new(ErrorKind::Config).with_detail(detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::test_support::*;

    #[test]
    fn pem_and_jwk_keys_of_each_type_load_with_their_public_jwk() {
        let rsa_jwk: Value = serde_json::from_str(RSA_JWK).unwrap();
        let ec_jwk: Value = serde_json::from_str(EC_JWK).unwrap();
        for (pem, jwk, alg) in [
            (RSA_PEM, &rsa_jwk, SigningAlg::RS256),
            (RSA_PEM, &rsa_jwk, SigningAlg::PS256),
            (EC_PEM, &ec_jwk, SigningAlg::ES256),
        ] {
            let from_pem = SigningKey::from_pem(alg, pem).unwrap();
            let mut json = jwk.clone();
            json["alg"] = alg.as_str().into();
            let from_jwk = SigningKey::from_jwk(&json.to_string()).unwrap();
            assert_eq!(from_jwk.alg(), alg);
            assert_eq!(from_jwk.key_id(), jwk["kid"].as_str());
            let public = from_pem.public_jwk().unwrap();
            for member in ["n", "e", "x", "y"] {
                assert_eq!(public.get(member), jwk.get(member), "{alg} {member}");
            }
            assert!(public.get("d").is_none(), "{alg}: {public}");
            assert_eq!(from_pem.thumbprint(), from_jwk.thumbprint(), "{alg}");
        }
    }

    #[test]
    fn an_ed25519_jwk_has_the_rfc_8037_thumbprint() {
        let key = SigningKey::from_jwk(ED_JWK).unwrap();
        assert_eq!(key.alg(), SigningAlg::EdDSA);
        assert_eq!(key.key_id(), Some("rfc8037"));
        // RFC 8037 appendix A.3.
        assert_eq!(
            key.thumbprint().as_deref(),
            Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
        );
        let public = key.public_jwk().unwrap();
        assert_eq!(public["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
        assert!(public.get("d").is_none());
    }

    #[test]
    fn a_key_that_does_not_fit_its_algorithm_is_refused_when_made() {
        for (alg, pem) in [
            (SigningAlg::ES256, RSA_PEM),
            (SigningAlg::EdDSA, RSA_PEM),
            (SigningAlg::RS256, EC_PEM),
            (SigningAlg::PS256, EC_PEM),
            (SigningAlg::ES256, EC_P384_PEM),
            (SigningAlg::HS256, EC_PEM),
            (
                SigningAlg::ES256,
                b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
            ),
        ] {
            let err = SigningKey::from_pem(alg, pem).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{alg}: {err}");
        }
        // A JWK whose `alg` does not fit its key type.
        let mut jwk: Value = serde_json::from_str(EC_JWK).unwrap();
        jwk["alg"] = "RS256".into();
        let err = SigningKey::from_jwk(&jwk.to_string()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        // A public JWK, a wrong curve, an `oct` key, and one whose `d` is not its own.
        let mut public: Value = serde_json::from_str(EC_JWK).unwrap();
        public.as_object_mut().unwrap().remove("d");
        let mut foreign: Value = serde_json::from_str(EC_JWK).unwrap();
        foreign["d"] = serde_json::from_str::<Value>(ED_JWK).unwrap()["d"].clone();
        for (json, says) in [
            (public.to_string(), "public key"),
            (EC_JWK.replace("P-256", "P-384"), "P-256"),
            (
                r#"{"kty":"oct","k":"c2VjcmV0","d":"x"}"#.to_owned(),
                "client_secret_jwt",
            ),
            (foreign.to_string(), "not a usable key"),
            ("[1]".to_owned(), "JSON object"),
        ] {
            let err = SigningKey::from_jwk(&json).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{says}: {err}");
            assert!(err.to_string().contains(says), "{says}: {err}");
        }
    }

    #[test]
    fn an_hs256_secret_under_32_bytes_is_refused_saying_why() {
        let err = SigningKey::hs256(&[7; 31]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("at least 32 bytes"), "{err}");
        let key = SigningKey::hs256(&[7; 32]).unwrap();
        assert_eq!(key.alg(), SigningAlg::HS256);
        assert!(key.public_jwk().is_none() && key.thumbprint().is_none());
    }

    #[test]
    fn debug_shows_the_algorithm_and_key_id_but_no_key_material() {
        let jwk: Value = serde_json::from_str(RSA_JWK).unwrap();
        let pem = std::str::from_utf8(RSA_PEM).unwrap();
        let keys = [
            SigningKey::from_jwk(RSA_JWK).unwrap(),
            SigningKey::from_pem(SigningAlg::PS256, RSA_PEM)
                .unwrap()
                .with_key_id("k-9"),
            SigningKey::hs256(b"0123456789abcdef0123456789abcdef-hs").unwrap(),
        ];
        for key in keys {
            let shown = format!("{key:?}");
            assert!(shown.contains("key: <redacted>"), "{shown}");
            assert!(shown.contains(key.alg().as_str()), "{shown}");
            if let Some(kid) = key.key_id() {
                assert!(shown.contains(kid), "{shown}");
            }
            for secret in ["d", "p", "q", "dp", "dq", "qi"] {
                let part = &jwk[secret].as_str().unwrap()[..16];
                assert!(!shown.contains(part), "{shown}");
            }
            assert!(!shown.contains(&pem[40..80]), "{shown}");
            assert!(!shown.contains("0123456789abcdef"), "{shown}");
        }
    }

    #[test]
    fn algorithm_names_parse_ignoring_case() {
        assert_eq!("es256".parse::<SigningAlg>().unwrap(), SigningAlg::ES256);
        assert_eq!("EdDSA".parse::<SigningAlg>().unwrap(), SigningAlg::EdDSA);
        assert_eq!("PS256".parse::<SigningAlg>().unwrap(), SigningAlg::PS256);
        let err = "none".parse::<SigningAlg>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
    }
}
