//! Signed client authentication and DPoP (feature `jwt`).
//!
//! - [`SigningKey`]: a private key for `private_key_jwt` client assertions (RFC 7523).
//! - [`AssertionSource`]: an assertion made elsewhere, asked for per token request;
//!   [`FileAssertion`] reads a projected token file.
//! - [`Dpop`]: DPoP proofs (RFC 9449) with a [`DpopKey`], and the nonces servers send.
//!
//! Signatures come from jsonwebtoken on aws-lc-rs.
//!
//! ```
//! use tower_oauth::{jose::{DpopKey, SigningAlg, SigningKey}, AuthMethod, ClientCredentials};
//!
//! // Any asymmetric key works; a generated DPoP key's PEM is not at hand, so use a JWK.
//! let key = SigningKey::from_jwk(r#"{"kty":"OKP","crv":"Ed25519","kid":"k1",
//!     "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
//!     "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#)?;
//! let creds = ClientCredentials::private_key_jwt("https://login.example/token", "my-client", key);
//! assert_eq!(*creds.auth_method_ref(), AuthMethod::PrivateKeyJwt);
//! assert_eq!(DpopKey::generate(SigningAlg::ES256)?.thumbprint().len(), 43);
//! # Ok::<(), tower_oauth::Error>(())
//! ```

mod assertion;
mod claims;
mod dpop;
mod key;

pub(crate) use self::{
    assertion::sign_assertion,
    dpop::{DPOP, DPOP_NONCE},
};
pub use self::{
    assertion::{AssertionContext, AssertionSource, FileAssertion},
    dpop::{Dpop, DpopKey},
    key::{SigningAlg, SigningKey},
};

/// Keys and a verifier for the tests of this module.
#[cfg(test)]
pub(crate) mod test_support {
    use jsonwebtoken::{jwk::Jwk, DecodingKey, Header, Validation};
    use serde_json::{Map, Value};

    use super::SigningAlg;

    pub(crate) const RSA_PEM: &[u8] = include_bytes!("../../tests/fixtures/jose/rsa-2048.pem");
    pub(crate) const RSA_JWK: &str = include_str!("../../tests/fixtures/jose/rsa-2048.jwk.json");
    pub(crate) const EC_PEM: &[u8] = include_bytes!("../../tests/fixtures/jose/ec-p256.pem");
    pub(crate) const EC_JWK: &str = include_str!("../../tests/fixtures/jose/ec-p256.jwk.json");
    pub(crate) const EC_P384_PEM: &[u8] = include_bytes!("../../tests/fixtures/jose/ec-p384.pem");
    /// RFC 8037 appendix A.1.
    pub(crate) const ED_JWK: &str = r#"{"kty":"OKP","crv":"Ed25519","kid":"rfc8037",
        "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
        "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;

    /// Verifies `jwt` with the public `jwk` (or an HS256 `secret`) as a server would,
    /// checking no claim but the signature; returns its header and claims.
    pub(crate) fn verify(
        jwt: &str,
        alg: SigningAlg,
        jwk: Option<&Value>,
        secret: Option<&[u8]>,
    ) -> (Header, Map<String, Value>) {
        let key = match (jwk, secret) {
            (Some(jwk), _) => {
                let jwk: Jwk = serde_json::from_value(jwk.clone()).unwrap();
                DecodingKey::from_jwk(&jwk).unwrap()
            }
            (None, Some(secret)) => DecodingKey::from_secret(secret).unwrap(),
            (None, None) => panic!("a key to verify with"),
        };
        let mut validation = Validation::new(alg.algorithm());
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Map<String, Value>>(jwt, &key, &validation)
            .expect("the signature verifies");
        (data.header, data.claims)
    }
}
