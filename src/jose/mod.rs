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

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};

use crate::error::Error;

mod assertion;
mod dpop;
mod key;

pub(crate) use self::assertion::sign_assertion;
pub use self::{
    assertion::{AssertionContext, AssertionSource, FileAssertion},
    dpop::{Dpop, DpopKey},
    key::{SigningAlg, SigningKey},
};

/// A fresh `jti`: 128 random bits, base64url.
fn jti() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|e| key::config("no randomness for a jti").with_source(e))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Seconds since the Unix epoch, on the wall clock as JWT times are.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
