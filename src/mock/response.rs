//! The responses every endpoint shares: problem documents and JSON bodies.
//!
//! Every error the mock answers is a problem document (`application/problem+json`) with
//! `type`, `status`, `title` and `detail`; the OAuth errors of the token endpoint
//! (RFC 6749 §5.2) are built here too, so request parsing and both endpoints name them
//! the same way. [`DropConnection`] is the one outcome that is not a response.

use std::fmt;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

/// The media type of successful JSON answers.
pub(super) const JSON: &str = "application/json";
/// The media type of problem documents (RFC 9457).
const PROBLEM_JSON: &str = "application/problem+json";

/// The body type of every response.
pub(super) type Resp = Response<Full<Bytes>>;

/// Returned by the service to make hyper drop the connection without writing a response.
#[derive(Debug)]
pub(super) struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("mock server dropped the connection")
    }
}

impl std::error::Error for DropConnection {}

/// Adds `Cache-Control: no-store` and `Pragma: no-cache`, as token responses need.
pub(super) fn no_store(mut response: Resp) -> Resp {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// `400 invalid_request`: the request is malformed.
pub(super) fn invalid_request(detail: &str) -> Resp {
    problem(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "Invalid Request",
        detail,
    )
}

/// `401 invalid_client`, with a `Basic` challenge when the client authenticated that way.
pub(super) fn invalid_client(via_basic: bool, detail: &str) -> Resp {
    let mut response = problem(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "Invalid Client",
        detail,
    );
    if via_basic {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="simpledocs""#),
        );
    }
    response
}

/// `400 unsupported_grant_type`: only `client_credentials` is supported.
pub(super) fn unsupported_grant_type(detail: &str) -> Resp {
    problem(
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        "Unsupported Grant Type",
        detail,
    )
}

/// `400 invalid_scope`: the scope is unknown, too wide, or missing where required.
pub(super) fn invalid_scope(detail: &str) -> Resp {
    problem(
        StatusCode::BAD_REQUEST,
        "invalid_scope",
        "Invalid Scope",
        detail,
    )
}

/// `401` for a request with `Authorization: DPoP`: a problem document of type `kind`,
/// `WWW-Authenticate: DPoP error="<kind>", error_description="<detail>"`, and the
/// `DPoP-Nonce` to use when one is given.
pub(super) fn dpop_challenge(kind: &str, detail: &str, nonce: Option<&str>) -> Resp {
    let title = match kind {
        "invalid_dpop_proof" => "Invalid DPoP Proof",
        "use_dpop_nonce" => "Use DPoP Nonce",
        "invalid_token" => "Invalid Token",
        _ => "Unauthorized",
    };
    let mut response = problem(StatusCode::UNAUTHORIZED, kind, title, detail);
    let challenge = format!(r#"DPoP error="{kind}", error_description="{detail}""#);
    if let Ok(challenge) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
    }
    if let Some(nonce) = nonce {
        insert_nonce(&mut response, nonce);
    }
    response
}

/// Adds a `DPoP-Nonce` header (RFC 9449 §8.1).
pub(super) fn insert_nonce(response: &mut Resp, nonce: &str) {
    if let Ok(value) = HeaderValue::from_str(nonce) {
        response.headers_mut().insert("dpop-nonce", value);
    }
}

/// `404 not_found`: nothing is served at this path.
pub(super) fn not_found() -> Resp {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        "Not Found",
        "There is no resource at this path.",
    )
}

/// A problem document: `{"type","status","title","detail"}` as `application/problem+json`.
pub(super) fn problem(status: StatusCode, kind: &str, title: &str, detail: &str) -> Resp {
    json_response(
        status,
        PROBLEM_JSON,
        &json!({"type": kind, "status": status.as_u16(), "title": title, "detail": detail}),
    )
}

/// A JSON body with this status and `Content-Type`.
pub(super) fn json_response(status: StatusCode, content_type: &'static str, value: &Value) -> Resp {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
