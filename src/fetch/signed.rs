//! What signs a token request: a client assertion (RFC 7523) and a DPoP proof
//! (RFC 9449). Without the `jwt` feature, nothing.

use http::{HeaderMap, HeaderValue};
use zeroize::Zeroizing;

use crate::{credentials::ClientCredentials, error::Error, redact::Redactor, token::TokenRequest};

/// The signed parts of one token request, made fresh for each attempt.
#[derive(Default)]
pub(super) struct Signed {
    /// The `client_assertion` form parameter.
    pub(super) assertion: Option<Zeroizing<String>>,
    /// The `DPoP` header.
    pub(super) proof: Option<HeaderValue>,
}

impl Signed {
    /// Makes the assertion and the proof `request` and `creds` call for, and teaches
    /// `redactor` the assertion, as a server could echo it.
    #[cfg_attr(not(feature = "jwt"), allow(clippy::unused_async, unused_variables))]
    pub(super) async fn new(
        creds: &ClientCredentials,
        request: &TokenRequest,
        redactor: &mut Redactor,
    ) -> Result<Self, Error> {
        #[cfg(feature = "jwt")]
        {
            let assertion = creds.assertion().await?;
            if let Some(assertion) = &assertion {
                redactor.add_secret(assertion);
                if let Some((_, signature)) = assertion.rsplit_once('.') {
                    redactor.add_secret(signature);
                }
            }
            let proof = match request.dpop() {
                Some(dpop) => Some(dpop.proof(&http::Method::POST, creds.token_url(), None)?),
                None => None,
            };
            Ok(Self { assertion, proof })
        }
        #[cfg(not(feature = "jwt"))]
        Ok(Self::default())
    }
}

/// Keeps the `DPoP-Nonce` the token endpoint sent, and says whether to try once more:
/// the answer was `use_dpop_nonce` (RFC 9449 §8) with a nonce to use.
#[cfg_attr(not(feature = "jwt"), allow(unused_variables))]
pub(super) fn wants_nonce(
    creds: &ClientCredentials,
    request: &TokenRequest,
    headers: &HeaderMap,
    result: &Result<crate::Token, Error>,
) -> bool {
    #[cfg(feature = "jwt")]
    if let Some(dpop) = request.dpop() {
        let Some(nonce) = headers.get(crate::jose::DPOP_NONCE) else {
            return false;
        };
        dpop.remember_nonce(creds.token_url(), nonce);
        return result
            .as_ref()
            .is_err_and(|e| e.oauth_error() == Some("use_dpop_nonce"));
    }
    false
}
