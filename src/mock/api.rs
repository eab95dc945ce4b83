//! The protected API under `/api/v1/`: workflows to read and documents to upload.
//!
//! A request is routed, then authenticated by its bearer token and authorized by the
//! token's scope; each rejection is a problem document with the matching
//! `WWW-Authenticate` challenge, except `token_expired`, which SimpleDocs documents
//! with the problem body alone.

// Rejections are whole responses carried in `Err`; they are built once per request, so their
// size doesn't matter and boxing them would only add noise.
#![allow(clippy::result_large_err)]

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, ALLOW, LOCATION, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use tokio::time::Instant;

use super::request::{
    bearer_token, declared_longer_than, discard_body, read_body, single_authorization, BodyError,
};
use super::response::{
    dpop_challenge, json_response, not_found, problem, DropConnection, Resp, JSON,
};
use super::state::{Scopes, Shared};
use super::stats::Counters;

/// Prefix of the protected API.
pub(super) const API_PREFIX: &str = "/api/v1/";
/// The endpoint that needs `read`.
const WORKFLOWS_PATH: &str = "/api/v1/workflows";
/// The endpoint that needs `write`.
const DOCUMENTS_PATH: &str = "/api/v1/documents";
/// Largest upload accepted: ample for tests (the largest they send is 1 MB), small enough
/// that a test server never buffers much.
pub(super) const API_BODY_LIMIT: usize = 8 * 1024 * 1024;
/// The realm named in `WWW-Authenticate` challenges.
const REALM: &str = "simpledocs";

/// `/api/v1/*`: routes, authenticates, authorizes and serves.
///
/// The body is read only once the request has a bearer token: an upload is stored if the
/// token is good and read to its end (up to [`API_BODY_LIMIT`]) and dropped if not.
/// Other requests are answered without reading their body, and hyper then closes the
/// connection unless the body was already in.
pub(super) async fn api(
    shared: &Shared,
    request: Request<Incoming>,
) -> Result<Resp, DropConnection> {
    let counters = &shared.counters;
    Counters::bump(&counters.api_requests);
    let (parts, body) = request.into_parts();
    let (required, method, allow) = match parts.uri.path() {
        WORKFLOWS_PATH => (Scopes::READ, Method::GET, "GET"),
        DOCUMENTS_PATH => (Scopes::WRITE, Method::POST, "POST"),
        _ => return Ok(not_found()),
    };
    if parts.method != method {
        let mut response = problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method Not Allowed",
            "This endpoint does not support the request method.",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
        return Ok(response);
    }
    let (token, dpop) = match credentials(shared, &parts.headers) {
        Ok(found) => found,
        Err(response) => return Ok(response),
    };
    let too_large = declared_longer_than(&body, API_BODY_LIMIT);
    let checked = bound_key(shared, &parts, token, dpop)
        .and_then(|jkt| authorize(shared, token, required, jkt.as_deref()));
    if let Err(response) = checked {
        // A client whose token is rejected may still be sending its upload, to send it
        // again with a new token, often on this connection: take the rest of it first, as
        // closing the connection on unread bytes could reset it before the answer is read.
        if !too_large {
            if let Err(BodyError::Broken) = discard_body(body, API_BODY_LIMIT).await {
                return Err(DropConnection);
            }
        }
        return Ok(response);
    }
    let response = if required == Scopes::READ {
        json_response(
            StatusCode::OK,
            JSON,
            &json!({"data": [{"id": 1, "name": "Onboarding"}, {"id": 2, "name": "Contract review"}]}),
        )
    } else {
        let body = if too_large {
            Err(BodyError::TooLarge)
        } else {
            read_body(body, API_BODY_LIMIT).await
        };
        match body {
            Ok(body) => store_document(shared, body),
            Err(BodyError::TooLarge) => return Ok(payload_too_large()),
            Err(BodyError::Broken) => return Err(DropConnection),
        }
    };
    Counters::bump(&counters.api_ok);
    Ok(response)
}

fn payload_too_large() -> Resp {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "Payload Too Large",
        &format!("The request body exceeds {} MiB.", API_BODY_LIMIT >> 20),
    )
}

/// The outcome of checking an access token.
enum Verdict {
    Valid,
    Unknown,
    Expired,
    Insufficient,
    /// A DPoP token whose proof was signed by another key.
    OtherKey,
}

/// The token of the request's `Authorization: Bearer` (or, with the `jwt` feature,
/// `DPoP`) header and whether it was `DPoP`; without one, the answer.
fn credentials<'a>(shared: &Shared, headers: &'a HeaderMap) -> Result<(&'a str, bool), Resp> {
    let authorization = single_authorization(headers)?;
    if let Some(token) = authorization.and_then(bearer_token) {
        return Ok((token, false));
    }
    #[cfg(feature = "jwt")]
    if let Some(token) = authorization.and_then(super::request::dpop_token) {
        return Ok((token, true));
    }
    Counters::bump(&shared.counters.api_unauthorized);
    let mut response = problem(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Unauthorized",
        "An access token is required: send Authorization: Bearer <token>.",
    );
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer realm="simpledocs""#),
    );
    Err(response)
}

/// The thumbprint of the key a `DPoP` request's proof was signed with, once the proof is
/// checked; `None` for a bearer request.
#[cfg(feature = "jwt")]
fn bound_key(
    shared: &Shared,
    parts: &Parts,
    token: &str,
    dpop: bool,
) -> Result<Option<String>, Resp> {
    if !dpop {
        return Ok(None);
    }
    super::dpop::api_proof(shared, parts, token).map(Some)
}

/// Without the `jwt` feature every request is a bearer request.
#[cfg(not(feature = "jwt"))]
fn bound_key(_: &Shared, _: &Parts, _: &str, _: bool) -> Result<Option<String>, Resp> {
    Ok(None)
}

/// Checks an access token against `required` and the proof key `jkt` (`None` for a
/// bearer request), counting and answering rejections.
fn authorize(
    shared: &Shared,
    token: &str,
    required: Scopes,
    jkt: Option<&str>,
) -> Result<(), Resp> {
    let counters = &shared.counters;
    let now = Instant::now();
    let verdict = match shared.lock().tokens.get(token) {
        None => Verdict::Unknown,
        // A DPoP token sent as a bearer token, or the reverse (RFC 9449 §7.1).
        Some(info) if info.jkt.is_some() != jkt.is_some() => Verdict::Unknown,
        Some(info) if info.jkt.as_deref() != jkt => Verdict::OtherKey,
        Some(info) if info.revoked || info.expires_at.is_some_and(|at| now >= at) => {
            Verdict::Expired
        }
        Some(info) if !info.scope.contains(required) => Verdict::Insufficient,
        Some(_) => Verdict::Valid,
    };
    let scheme = if jkt.is_some() { "DPoP" } else { "Bearer" };
    let (status, kind, title, detail, challenge) = match verdict {
        Verdict::Valid => return Ok(()),
        Verdict::OtherKey => {
            Counters::bump(&counters.dpop_proofs_rejected);
            return Err(dpop_challenge(
                "invalid_dpop_proof",
                "The DPoP proof is invalid: the access token is bound to another key.",
                None,
            ));
        }
        Verdict::Unknown => {
            Counters::bump(&counters.api_invalid_token);
            let detail = "The access token is invalid.";
            let challenge = format!(
                r#"{scheme} realm="{REALM}", error="invalid_token", error_description="{detail}""#
            );
            (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "Invalid Token",
                detail.to_owned(),
                challenge,
            )
        }
        Verdict::Expired => {
            Counters::bump(&counters.api_token_expired);
            let detail = "The access token has expired.";
            // SimpleDocs documents only the problem body for an expiry; no challenge, so
            // clients are exercised on the body as the reference describes it.
            let challenge = String::new();
            (
                StatusCode::UNAUTHORIZED,
                "token_expired",
                "Token Expired",
                detail.to_owned(),
                challenge,
            )
        }
        Verdict::Insufficient => {
            Counters::bump(&counters.api_insufficient_scope);
            let needed = required.canonical();
            let detail =
                format!("The access token lacks the {needed} scope this endpoint requires.");
            let challenge = format!(
                r#"{scheme} realm="{REALM}", error="insufficient_scope", scope="{needed}""#
            );
            (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "Insufficient Scope",
                detail,
                challenge,
            )
        }
    };
    let mut response = problem(status, kind, title, &detail);
    if !challenge.is_empty() {
        if let Ok(challenge) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
        }
    }
    Err(response)
}

/// Records a document and answers `201` with its id, length and FNV-1a hash.
fn store_document(shared: &Shared, body: Bytes) -> Resp {
    let received_bytes = body.len();
    let hash = fnv1a64(&body);
    let id = {
        let mut inner = shared.lock();
        let id = inner.next_document_id;
        inner.next_document_id += 1;
        inner.documents.push(body);
        id
    };
    let mut response = json_response(
        StatusCode::CREATED,
        JSON,
        &json!({"id": id, "received_bytes": received_bytes, "fnv1a64": format!("{hash:016x}")}),
    );
    if let Ok(location) = HeaderValue::from_str(&format!("{DOCUMENTS_PATH}/{id}")) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

/// The 64-bit FNV-1a hash.
pub(super) fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
