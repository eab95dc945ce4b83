//! DPoP on API requests (RFC 9449 §7): a proof beside every `DPoP` token, and the nonce
//! a resource server asks for.
//!
//! The layer signs a proof for each request that carries a `DPoP` token: the method, the
//! URI without query or fragment, a fresh `jti`, and `ath`, the hash of the token. A
//! proof costs a signature (see BENCHMARKS.md), so it is made only for DPoP tokens; a
//! server that answers a DPoP proof with a `Bearer` token gets Bearer requests.
//!
//! A `DPoP-Nonce` header on any response is kept for the next proofs to that origin. A
//! `401` whose `WWW-Authenticate` has a `DPoP` challenge with `error="use_dpop_nonce"` is
//! not a rejected token: the request is replayed once with the same token and a proof
//! with the new nonce, within the layer's replay rules; if it cannot be replayed, the
//! caller gets the `401`.

use http::{
    header::{AUTHORIZATION, WWW_AUTHENTICATE},
    HeaderMap, Request, StatusCode, Uri,
};

use crate::{
    classify::parse_challenges,
    error::Error,
    jose::{Dpop, DPOP, DPOP_NONCE},
};

/// Adds a proof to `req` if its `Authorization` carries a `DPoP` token.
///
/// # Errors
///
/// [`ErrorKind::Config`](crate::ErrorKind::Config) when the request's URI is not
/// absolute (a proof names the scheme and host), or signing fails.
pub(crate) fn prove<B>(dpop: &Dpop, req: &mut Request<B>) -> Result<(), Error> {
    let Some(token) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"DPoP "))
        .and_then(|t| std::str::from_utf8(t).ok())
    else {
        return Ok(());
    };
    let proof = dpop.proof(req.method(), req.uri(), Some(token))?;
    req.headers_mut().insert(DPOP, proof);
    Ok(())
}

/// Keeps a `DPoP-Nonce` the response carries; whether it is a nonce challenge, to be
/// met by replaying the request.
pub(crate) fn nonce_challenge(
    dpop: &Dpop,
    uri: &Uri,
    status: StatusCode,
    headers: &HeaderMap,
) -> bool {
    let Some(nonce) = headers.get(DPOP_NONCE) else {
        return false;
    };
    dpop.remember_nonce(uri, nonce);
    status == StatusCode::UNAUTHORIZED
        && headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .any(|c| {
                c.scheme.eq_ignore_ascii_case("DPoP") && c.param("error") == Some("use_dpop_nonce")
            })
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, Method};

    use super::*;

    #[test]
    fn a_proof_goes_only_with_a_dpop_token() {
        let dpop = Dpop::generate().unwrap();
        let mut bearer = Request::get("https://api.example/x")
            .header(AUTHORIZATION, "Bearer t")
            .body(())
            .unwrap();
        prove(&dpop, &mut bearer).unwrap();
        assert!(bearer.headers().get(DPOP).is_none());
        let mut bound = Request::post("https://api.example/x?q=1")
            .header(AUTHORIZATION, "DPoP t")
            .body(())
            .unwrap();
        prove(&dpop, &mut bound).unwrap();
        let proof = bound.headers().get(DPOP).expect("a proof");
        assert!(proof.is_sensitive());
        let relative = Request::builder()
            .method(Method::GET)
            .uri("/x")
            .header(AUTHORIZATION, "DPoP t")
            .body(())
            .unwrap();
        let err = prove(&dpop, &mut { relative }).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
    }

    #[test]
    fn a_nonce_is_kept_and_only_a_dpop_use_dpop_nonce_401_is_a_challenge() {
        let dpop = Dpop::generate().unwrap();
        let uri: Uri = "https://api.example/x".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert!(!nonce_challenge(
            &dpop,
            &uri,
            StatusCode::UNAUTHORIZED,
            &headers
        ));
        headers.insert(DPOP_NONCE, HeaderValue::from_static("n-1"));
        assert!(!nonce_challenge(&dpop, &uri, StatusCode::OK, &headers));
        assert_eq!(dpop.nonce(&uri).as_deref(), Some("n-1"), "kept from a 200");
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="invalid_token""#),
        );
        assert!(!nonce_challenge(
            &dpop,
            &uri,
            StatusCode::UNAUTHORIZED,
            &headers
        ));
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"DPoP algs="ES256", error="use_dpop_nonce""#),
        );
        assert!(nonce_challenge(
            &dpop,
            &uri,
            StatusCode::UNAUTHORIZED,
            &headers
        ));
    }
}
