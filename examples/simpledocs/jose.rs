//! Signed client authentication and DPoP (feature `jwt`): the `private_key_jwt` key, read
//! from `--private-key` or generated for the embedded mock, `client_secret_jwt` against
//! the mock, and the DPoP key. Without the feature their options are refused before a run
//! (`auth::NO_JWT`), and [`Jose`] changes nothing.

use tower_oauth::{mock::MockConfig, ClientCredentials, OAuthLayerBuilder};

use crate::auth::AuthOptions;
#[cfg(feature = "jwt")]
use crate::auth::{AlgChoice, AuthChoice, DpopAlg, Pem};
#[cfg(feature = "jwt")]
use tower_oauth::jose::{Dpop, DpopKey, SigningAlg, SigningKey};
#[cfg(feature = "jwt")]
use zeroize::Zeroizing;

/// The embedded mock's client secret for `client_secret_jwt`: an HS256 key must have 32
/// bytes (RFC 7518 §3.2), and the mock's default secret has 11.
#[cfg(feature = "jwt")]
const MOCK_HS256_SECRET: &str = "simpledocs-demo-secret-long-enough-for-hs256";

/// The keys a run signs with.
#[derive(Default)]
pub(crate) struct Jose {
    /// The `private_key_jwt` key, and whether it was generated for this run.
    #[cfg(feature = "jwt")]
    key: Option<(SigningKey, Option<String>)>,
    #[cfg(feature = "jwt")]
    client_secret_jwt: bool,
    #[cfg(feature = "jwt")]
    dpop: Option<Dpop>,
}

#[cfg(feature = "jwt")]
impl Jose {
    /// The keys `a` asks for: read, or generated (a `private_key_jwt` key only when
    /// `a` has none and the mock is the server: `AuthOptions::checked` saw to that).
    pub(crate) fn load(a: &AuthOptions) -> Result<Self, String> {
        let key = match (a.method, &a.private_key) {
            (AuthChoice::PrivateKeyJwt, Some(pem)) => Some((
                key_from_pem(pem, a.signing_alg)?,
                Some(pem.path.display().to_string()),
            )),
            (AuthChoice::PrivateKeyJwt, None) => Some((generated_key(a.signing_alg)?, None)),
            _ => None,
        };
        let key = key.map(|(key, from)| match &a.key_id {
            Some(kid) => (key.with_key_id(kid.as_str()), from),
            None => (key, from),
        });
        let dpop = match a.dpop {
            Some(alg) => {
                let alg = match alg {
                    DpopAlg::ES256 => SigningAlg::ES256,
                    DpopAlg::EdDSA => SigningAlg::EdDSA,
                };
                let key = DpopKey::generate(alg).map_err(|e| format!("--dpop: {e}"))?;
                Some(Dpop::new(key))
            }
            None => None,
        };
        Ok(Self {
            key,
            client_secret_jwt: a.method == AuthChoice::ClientSecretJwt,
            dpop,
        })
    }

    /// The embedded mock's `config`, made to accept this run's client `client_id`: its
    /// public key registered, HS256 assertions of a long enough secret, DPoP nonces
    /// required at the token endpoint and the API so that the run meets their challenges.
    pub(crate) fn mock_config(&self, mut config: MockConfig, client_id: &str) -> MockConfig {
        if let Some((key, _)) = &self.key {
            let jwk = key
                .public_jwk()
                .expect("a private_key_jwt key is asymmetric: it has a public JWK");
            config = config.client_id(client_id).private_key_jwt(client_id, jwk);
        }
        if self.client_secret_jwt {
            config = config
                .client_secret(MOCK_HS256_SECRET)
                .client_secret_jwt(true);
        }
        if self.dpop.is_some() {
            config = config.require_dpop_nonce(true).require_api_dpop_nonce(true);
        }
        config
    }

    /// `creds` signing their assertions with the key, if there is one.
    pub(crate) fn credentials(&self, creds: ClientCredentials) -> ClientCredentials {
        match &self.key {
            Some((key, _)) => creds.signing_key(key.clone()),
            None => creds,
        }
    }

    /// `builder` binding its tokens to the DPoP key, if there is one.
    pub(crate) fn layer(&self, builder: OAuthLayerBuilder) -> OAuthLayerBuilder {
        match &self.dpop {
            Some(dpop) => builder.dpop(dpop.clone()),
            None => builder,
        }
    }

    /// What the banner says of the signing key: its algorithm, id and origin.
    pub(crate) fn key_note(&self, mock: bool) -> Option<String> {
        let (key, from) = self.key.as_ref()?;
        let kid = key
            .key_id()
            .map_or(String::new(), |kid| format!(" {kid:?}"));
        let from = match from {
            Some(path) => format!("from {path}"),
            None if mock => "generated for this run, its public JWK registered with the \
                             embedded mock"
                .to_owned(),
            None => "generated for this run".to_owned(),
        };
        Some(format!("{} key{kid} {from}; key not shown", key.alg()))
    }

    /// What the banner says of DPoP: the key's algorithm and thumbprint (both public).
    pub(crate) fn dpop_note(&self) -> Option<String> {
        let key = self.dpop.as_ref()?.key();
        Some(format!(
            "tokens bound to an {} key generated for this run (jkt {})",
            key.alg(),
            key.thumbprint()
        ))
    }

    /// Whether tokens are DPoP-bound.
    pub(crate) fn dpop(&self) -> bool {
        self.dpop.is_some()
    }
}

#[cfg(not(feature = "jwt"))]
impl Jose {
    /// Nothing to load: the options that would need a key were refused.
    pub(crate) fn load(a: &AuthOptions) -> Result<Self, String> {
        let _ = (&a.private_key, &a.key_id, &a.signing_alg, &a.dpop);
        Ok(Self::default())
    }

    pub(crate) fn mock_config(&self, config: MockConfig, _client_id: &str) -> MockConfig {
        config
    }

    pub(crate) fn credentials(&self, creds: ClientCredentials) -> ClientCredentials {
        creds
    }

    pub(crate) fn layer(&self, builder: OAuthLayerBuilder) -> OAuthLayerBuilder {
        builder
    }

    pub(crate) fn key_note(&self, _mock: bool) -> Option<String> {
        None
    }

    pub(crate) fn dpop_note(&self) -> Option<String> {
        None
    }

    pub(crate) fn dpop(&self) -> bool {
        false
    }
}

#[cfg(feature = "jwt")]
fn signing_alg(alg: AlgChoice) -> SigningAlg {
    match alg {
        AlgChoice::RS256 => SigningAlg::RS256,
        AlgChoice::PS256 => SigningAlg::PS256,
        AlgChoice::ES256 => SigningAlg::ES256,
        AlgChoice::EdDSA => SigningAlg::EdDSA,
    }
}

/// The key types a PEM may hold: the algorithm each signs with by default, and its name.
#[cfg(feature = "jwt")]
const KEY_TYPES: [(SigningAlg, &str); 3] = [
    (SigningAlg::ES256, "a P-256"),
    (SigningAlg::EdDSA, "an Ed25519"),
    (SigningAlg::RS256, "an RSA"),
];

/// The key in `pem`, for `alg` or, without one, for its type's algorithm. The crate's
/// errors are not passed on: ours name the file and the type, never the key.
#[cfg(feature = "jwt")]
fn key_from_pem(pem: &Pem, alg: Option<AlgChoice>) -> Result<SigningKey, String> {
    let file = format!("--private-key {}", pem.path.display());
    // Trying each type is how the type is told: the crate parses PEM, we don't.
    let found = || {
        KEY_TYPES
            .iter()
            .find_map(|(alg, name)| Some((SigningKey::from_pem(*alg, &pem.bytes).ok()?, *name)))
    };
    let Some(alg) = alg else {
        return found().map(|(key, _)| key).ok_or_else(|| {
            format!(
                "{file}: no RSA, P-256 or Ed25519 private key in PEM (PKCS#8, or PKCS#1 for \
                 RSA); if it is one, name its algorithm with --signing-alg"
            )
        });
    };
    let alg = signing_alg(alg);
    SigningKey::from_pem(alg, &pem.bytes).map_err(|_| match found() {
        Some((key, name)) => format!(
            "{file}: the key does not fit --signing-alg {alg}: it is {name} key, which \
             signs with {}",
            if key.alg() == SigningAlg::RS256 {
                "RS256 or PS256".to_owned()
            } else {
                key.alg().to_string()
            }
        ),
        None => format!("{file}: no private key for {alg} in PEM (PKCS#8, or PKCS#1 for RSA)"),
    })
}

/// A new key for `alg` (ES256 unless told), made by rcgen as PKCS#8 PEM.
#[cfg(feature = "jwt")]
fn generated_key(alg: Option<AlgChoice>) -> Result<SigningKey, String> {
    let (alg, rcgen_alg) = match alg.unwrap_or(AlgChoice::ES256) {
        AlgChoice::ES256 => (SigningAlg::ES256, &rcgen::PKCS_ECDSA_P256_SHA256),
        AlgChoice::EdDSA => (SigningAlg::EdDSA, &rcgen::PKCS_ED25519),
        other => {
            return Err(format!(
                "--signing-alg {}: a key is generated for ES256 or EdDSA only; give an RSA \
                 key with --private-key",
                signing_alg(other)
            ))
        }
    };
    let pair = rcgen::KeyPair::generate_for(rcgen_alg)
        .map_err(|e| format!("generating a {alg} key failed: {e}"))?;
    let pem = Zeroizing::new(pair.serialize_pem());
    SigningKey::from_pem(alg, pem.as_bytes())
        .map_err(|e| format!("the generated {alg} key is not usable: {}", e.kind()))
}
