//! The three checks behind [`StandardClassifier`](super::StandardClassifier).
//!
//! Each rule is a plain function of a response's head or body: an RFC 6750 `Bearer`
//! challenge with a rejection error, gRPC UNAUTHENTICATED, and a SimpleDocs problem
//! document whose `type` or `error` is a rejection code. They read bytes, not strings,
//! so obs-text elsewhere in a header never hides what they look for.

use http::{header, HeaderMap, HeaderName};

use super::challenge::read_challenges;

/// Built once: looking a header up by `&str` parses the name on every response.
pub(super) static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// Error codes and problem types that mean "this token is no good, get another".
const REJECTED_TYPES: [&str; 2] = ["token_expired", "invalid_token"];

/// Whether the head carries gRPC UNAUTHENTICATED (`grpc-status: 16`).
#[inline]
pub(super) fn grpc_unauthenticated(headers: &HeaderMap) -> bool {
    headers
        .get(&GRPC_STATUS)
        .is_some_and(|code| code.as_bytes() == b"16")
}

/// Whether some `WWW-Authenticate` value holds a `Bearer` challenge with a rejection code.
#[inline]
pub(super) fn bearer_rejected(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        // Bytes, not `to_str`: a non-ASCII byte elsewhere must not hide the error.
        .any(|v| bearer_invalid_token(v.as_bytes()))
}

/// Whether the `Content-Type` is JSON. Works on the bytes, like
/// [`bearer_invalid_token`]: obs-text in a parameter must not hide the media type.
pub(super) fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let ct = ct.as_bytes();
    let essence = ct
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    essence.eq_ignore_ascii_case(b"application/json")
        || essence.eq_ignore_ascii_case(b"application/problem+json")
}

/// Whether a body is a JSON object whose `type` or `error` member is a rejection code.
pub(super) fn problem_rejected(body: &[u8]) -> bool {
    // Any JSON object, members read by name: an `error` that is an object (a server's
    // own error record) must not hide `type: token_expired` beside it.
    let Ok(serde_json::Value::Object(problem)) = serde_json::from_slice(body) else {
        return false;
    };
    ["type", "error"]
        .iter()
        .filter_map(|member| problem.get(*member)?.as_str())
        .any(|code| REJECTED_TYPES.contains(&code))
}

/// Whether one `WWW-Authenticate` value holds a `Bearer` challenge whose `error` is a
/// rejection code. Works on the bytes: a quoted string may hold obs-text (RFC 9110
/// §5.5), and such a byte in a realm must not hide the error beside it.
fn bearer_invalid_token(value: &[u8]) -> bool {
    read_challenges(value).iter().any(|c| {
        c.scheme.eq_ignore_ascii_case(b"bearer")
            && c.param(b"error")
                .is_some_and(|e| REJECTED_TYPES.iter().any(|t| t.as_bytes() == e))
    })
}
