//! Reading token responses (RFC 6749 §5.1 and §5.2, SimpleDocs problem documents).

use std::time::{Duration, SystemTime};

use http::{header, HeaderMap, StatusCode};
use serde_json::{Map, Value};

use crate::redact::{Redactor, REDACTED};
use crate::{
    error::{Error, ErrorKind},
    token::{AccessToken, Scope, Token, TokenType},
};

/// The largest token response body read. A longer one is not read: after a success status
/// it is an [`ErrorKind::MalformedResponse`]; after an error status, an
/// [`ErrorKind::HttpStatus`] error that keeps what the status and `Retry-After` say.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// Parses a token endpoint's response.
///
/// Tolerated: `expires_in` as a number (a fraction of a second counts) or a string of
/// digits (zero, or absent, means "not stated": the layer's default lifetime applies; a
/// value too large for a `u64` is clamped), `token_type` in any case or absent, `scope` absent, a string or an array of
/// strings, any of these or `error` as `null` (the same as absent), and any other fields
/// (kept in [`Token::extra`]). `refresh_in` is read as `expires_in` is, into
/// [`Token::refresh_in`]; a bad value is ignored rather than an error.
///
/// # Errors
///
/// - a success status with a body that is not a JSON object, or with an unusable
///   `access_token` (absent, empty, not a string, characters not allowed in a header),
///   a `token_type` other than bearer, a negative or non-numeric `expires_in`, or a
///   `scope` of the wrong type: [`ErrorKind::MalformedResponse`];
/// - an `error` field (even with status 200), or a problem document's `type`, mapped to
///   [`ErrorKind::InvalidClient`], [`ErrorKind::InvalidScope`],
///   [`ErrorKind::UnauthorizedClient`] or [`ErrorKind::OAuth`];
/// - an error status with no such document: [`ErrorKind::HttpStatus`].
///
/// Errors never contain the token.
pub fn parse_token_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Token, Error> {
    parse_redacting(status, headers, body, &Redactor::new())
}

/// [`parse_token_response`], with the text the server sent (error code and
/// description) cleaned by `redactor` (see [`redact`](crate::redact)), which also looks
/// for the token of the response itself.
pub(crate) fn parse_redacting(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    redactor: &Redactor,
) -> Result<Token, Error> {
    parse_as(status, headers, body, redactor, false)
}

/// [`parse_redacting`], accepting a `DPoP` token type when `proof_sent`.
pub(crate) fn parse_as(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    redactor: &Redactor,
    proof_sent: bool,
) -> Result<Token, Error> {
    let retry_after = retry_after(headers);
    // Why a body is not a JSON document, for a success status (serde_json's messages
    // say where, not what: no part of the body).
    let mut not_json = None;
    let json: Option<Map<String, Value>> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Some(map),
        Ok(_) => None,
        Err(e) => {
            not_json = Some(e);
            None
        }
    };
    // The token of this very response, if the server put one beside an error, is never
    // shown either.
    let mut redactor = redactor.clone();
    if let Some(token) = json
        .as_ref()
        .and_then(|map| map.get("access_token"))
        .and_then(Value::as_str)
    {
        redactor.add_secret(token);
    }
    if !status.is_success() {
        return Err(
            match json.as_ref().and_then(|map| oauth_error(map, &redactor)) {
                Some((code, detail)) => oauth_failure(status, &code, detail, retry_after),
                None => {
                    let mut b = status_error(status, retry_after);
                    if status.is_redirection() {
                        b = b.with_detail("redirects are not followed");
                    }
                    b
                }
            },
        );
    }
    let Some(mut map) = json else {
        return Err(match not_json {
            Some(e) => Error::new(ErrorKind::MalformedResponse)
                .with_detail(&format!("token response is not valid json: {e}")),
            None => Error::malformed("token response is not a json object"),
        });
    };
    // Some servers write every member, `"error": null` included, on success too.
    if map.get("error").is_some_and(|e| !e.is_null()) {
        if let Some((code, detail)) = oauth_error(&map, &redactor) {
            return Err(oauth_failure(status, &code, detail, retry_after));
        }
        return Err(Error::malformed(
            "token response has an error field that is not a string",
        ));
    }

    let access_token = match map.remove("access_token") {
        Some(Value::String(s)) => AccessToken::new(s),
        Some(_) => return Err(Error::malformed("access_token is not a string")),
        None => return Err(Error::malformed("access_token is missing")),
    };
    let token = access_token.secret();
    if token.is_empty() {
        return Err(Error::malformed("access_token is empty"));
    }
    if !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Error::malformed(
            "access_token contains characters not allowed in a header",
        ));
    }
    let token_type = match map.remove("token_type") {
        None | Some(Value::Null) => TokenType::Bearer,
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => TokenType::Bearer,
        // Only a proof makes a DPoP token usable (RFC 9449 §5).
        Some(Value::String(t)) if proof_sent && t.eq_ignore_ascii_case("dpop") => TokenType::DPoP,
        Some(Value::String(_)) => return Err(Error::malformed("token_type is not bearer")),
        Some(_) => return Err(Error::malformed("token_type is not a string")),
    };
    let expires_in = match map.remove("expires_in") {
        None | Some(Value::Null) => None,
        Some(v) => parse_expires_in(&v)?,
    };
    let refresh_in = map.remove("refresh_in").and_then(|v| parse_refresh_in(&v));
    let scope = match map.remove("scope") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Scope::new(&s)),
        Some(Value::Array(items)) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in &items {
                match item {
                    Value::String(s) => parts.push(s.as_str()),
                    _ => return Err(Error::malformed("scope array holds a non-string")),
                }
            }
            Some(Scope::new(&parts.join(" ")))
        }
        Some(_) => return Err(Error::malformed("scope is not a string")),
    };
    Ok(Token {
        access_token,
        expires_in,
        refresh_in,
        scope,
        extra: map,
        token_type,
    })
}

/// `refresh_in`, read as `expires_in` is. It is only advice: a value that is not a
/// positive number of seconds is ignored (logged at debug level), not an error.
fn parse_refresh_in(v: &Value) -> Option<Duration> {
    if v.is_null() {
        return None;
    }
    let parsed = parse_expires_in(v).ok().flatten();
    if parsed.is_none() {
        tracing::debug!("token response has a refresh_in that is not a positive number; ignored");
    }
    parsed
}

/// `expires_in` as a lifetime; zero means "not stated". A fraction of a second counts: a
/// positive lifetime is never rounded down to zero (and so to the default lifetime).
fn parse_expires_in(v: &Value) -> Result<Option<Duration>, Error> {
    let lifetime = match v {
        Value::Number(n) => {
            if let Some(secs) = n.as_u64() {
                Duration::from_secs(secs)
            } else if n.as_i64().is_some() {
                return Err(Error::malformed("expires_in is negative"));
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() && f > 0.0 => Duration::try_from_secs_f64(f)
                        .unwrap_or(Duration::MAX)
                        .max(Duration::from_nanos(1)),
                    Some(0.0) => Duration::ZERO,
                    _ => return Err(Error::malformed("expires_in is negative")),
                }
            }
        }
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::malformed("expires_in is not a number"));
            }
            // All digits: the only failure left is overflow, which we clamp.
            s.parse::<u64>().map_or(Duration::MAX, Duration::from_secs)
        }
        _ => return Err(Error::malformed("expires_in is not a number")),
    };
    Ok((!lifetime.is_zero()).then_some(lifetime))
}

/// The OAuth error code and description of an error document, RFC 6749 §5.2 (`error`,
/// `error_description`) or a problem document (`type`, `detail` or `title`), as they
/// may be shown: cleaned by `redactor`.
///
/// A standard code is shown as it came, whatever secret it happens to contain
/// ("client" in `invalid_client`): what it says decides how the error is handled.
fn oauth_error(map: &Map<String, Value>, redactor: &Redactor) -> Option<(String, Option<String>)> {
    let text = |k: &str| map.get(k).and_then(Value::as_str);
    let (code, detail) = match text("error") {
        Some(code) => (code, text("error_description")),
        None => (text("type")?, text("detail").or_else(|| text("title"))),
    };
    let detail = detail.map(|d| redactor.clean(d));
    // Problem types may be URIs; the last segment is the code. Looked at whole too: the
    // segment could hold a part of a secret too short to count alone.
    let segment = code.rsplit('/').next().unwrap_or(code);
    if let Some(standard) = STANDARD_CODES.iter().find(|c| **c == segment) {
        return Some(((*standard).to_owned(), detail));
    }
    let code = match redactor.cleaned(code) {
        Some(whole) => redactor.clean(whole.rsplit('/').next().unwrap_or(&whole)),
        None => REDACTED.to_owned(),
    };
    Some((code, detail))
}

fn oauth_failure(
    status: StatusCode,
    code: &str,
    detail: Option<String>,
    retry_after: Option<Duration>,
) -> Error {
    let kind = match code {
        "invalid_client" => ErrorKind::InvalidClient,
        "invalid_scope" => ErrorKind::InvalidScope,
        "unauthorized_client" => ErrorKind::UnauthorizedClient,
        _ => ErrorKind::OAuth,
    };
    // Retryable as `Error::is_retryable` reads the code and status.
    let mut b = Error::new(kind)
        .with_oauth_error(code)
        .with_retry_after_opt(retry_after);
    if !status.is_success() {
        b = b.with_status(status);
    }
    if let Some(detail) = detail {
        b = b.with_detail(&detail);
    }
    b
}

/// The error codes of RFC 6749 §4.1.2.1 and §5.2 and RFC 6750 §3.1.
const STANDARD_CODES: [&str; 11] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "access_denied",
    "server_error",
    "temporarily_unavailable",
    "invalid_token",
    "insufficient_scope",
];

/// A response whose body is over [`MAX_TOKEN_RESPONSE_BYTES`], unread: an error status
/// keeps what it says without its body (retryable or not, `Retry-After`).
pub(crate) fn too_large(status: StatusCode, headers: &HeaderMap) -> Error {
    let detail = "token response body exceeds 64 KiB";
    if status.is_success() {
        return Error::new(ErrorKind::MalformedResponse)
            .with_status(status)
            .with_detail(detail);
    }
    status_error(status, retry_after(headers)).with_detail(detail)
}

/// An error status with no usable error document: retryable as the status says, with
/// the pause `Retry-After` asked for.
fn status_error(status: StatusCode, retry_after: Option<Duration>) -> Error {
    Error::new(ErrorKind::HttpStatus)
        .with_status(status)
        .with_retry_after_opt(retry_after)
}

/// `Retry-After` as delta-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Result<Token, Error> {
        parse_token_response(StatusCode::OK, &HeaderMap::new(), body.as_bytes())
    }

    /// The error [`parse_redacting`] makes of `body`, with no headers.
    fn redacting(status: StatusCode, body: &str, secrets: &[&str]) -> Error {
        let redactor = secrets
            .iter()
            .fold(Redactor::new(), |r, secret| r.with_secret(secret));
        parse_redacting(status, &HeaderMap::new(), body.as_bytes(), &redactor).unwrap_err()
    }

    fn err(status: u16, body: &str) -> Error {
        parse_token_response(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
        )
        .unwrap_err()
    }

    #[test]
    fn accepts_the_documented_response() {
        let t = ok(r#"{"access_token":"eyJhbGciOiJIUzI1NiJ9.x","token_type":"Bearer","expires_in":7200,"scope":"read write","created_at":1709654400}"#).unwrap();
        assert_eq!(t.access_token.secret(), "eyJhbGciOiJIUzI1NiJ9.x");
        assert_eq!(t.expires_in, Some(Duration::from_secs(7200)));
        assert_eq!(t.scope, Some(Scope::new("read write")));
        assert_eq!(t.extra.get("created_at"), Some(&Value::from(1709654400)));
    }

    #[test]
    fn refresh_in_is_read_as_a_number_or_a_numeric_string() {
        let t = ok(r#"{"access_token":"a","expires_in":7200,"refresh_in":3600}"#).unwrap();
        assert_eq!(t.refresh_in, Some(Duration::from_secs(3600)));
        assert!(
            !t.extra.contains_key("refresh_in"),
            "read, not kept as extra"
        );
        let t = ok(r#"{"access_token":"a","refresh_in":" 1800 "}"#).unwrap();
        assert_eq!(t.refresh_in, Some(Duration::from_secs(1800)));
        let t = ok(r#"{"access_token":"a"}"#).unwrap();
        assert_eq!(t.refresh_in, None);
    }

    #[test]
    fn a_bad_refresh_in_is_ignored_not_an_error() {
        for bad in [r#"-5"#, r#""soon""#, r#"0"#, r#"null"#, r#"[1]"#, r#"true"#] {
            let body = format!(r#"{{"access_token":"a","expires_in":60,"refresh_in":{bad}}}"#);
            let t = ok(&body).unwrap_or_else(|e| panic!("{bad}: {e}"));
            assert_eq!(t.refresh_in, None, "{bad}");
            assert_eq!(t.expires_in, Some(Duration::from_secs(60)), "{bad}");
        }
    }

    #[test]
    fn tolerates_what_real_servers_vary() {
        let t = ok(r#"{"access_token":"a","token_type":"bearer","expires_in":"3600"}"#).unwrap();
        assert_eq!(t.expires_in, Some(Duration::from_secs(3600)));
        assert_eq!(t.scope, None);
        let t = ok(r#"{"access_token":"a","token_type":"BEARER","expires_in":0}"#).unwrap();
        assert_eq!(t.expires_in, None);
        let t = ok(r#"{"access_token":"a"}"#).unwrap();
        assert_eq!(t.expires_in, None);
        let t = ok(r#"{"access_token":"a","expires_in":99999999999999999999999}"#).unwrap();
        assert_eq!(t.expires_in, Some(Duration::MAX));
        let t = ok(r#"{"access_token":"a","expires_in":"99999999999999999999999"}"#).unwrap();
        assert_eq!(t.expires_in, Some(Duration::MAX));
        let t = ok(r#"{"access_token":"a","expires_in":" 60 "}"#).unwrap();
        assert_eq!(t.expires_in, Some(Duration::from_secs(60)));
        let t = ok(r#"{"access_token":"a","expires_in":59.9,"scope":["write","read"]}"#).unwrap();
        assert_eq!(t.expires_in, Some(Duration::from_millis(59_900)));
        assert_eq!(t.scope, Some(Scope::new("read write")));
        // Under a second is a lifetime too, never "not stated" (the default lifetime).
        for (json, lifetime) in [
            ("0.5", Some(Duration::from_millis(500))),
            ("1e-300", Some(Duration::from_nanos(1))),
            ("1e30", Some(Duration::MAX)),
            ("0.0", None),
        ] {
            let t = ok(&format!(r#"{{"access_token":"a","expires_in":{json}}}"#)).unwrap();
            assert_eq!(t.expires_in, lifetime, "{json}");
        }
        // Every member written, the absent ones as null.
        let t = ok(
            r#"{"access_token":"a","token_type":null,"expires_in":null,"scope":null,"error":null,"error_description":null}"#,
        )
        .unwrap();
        assert_eq!((t.expires_in, t.scope), (None, None));
    }

    #[test]
    fn rejects_unusable_tokens_with_a_typed_error() {
        for body in [
            r#"{"access_token":"a","token_type":"mac"}"#,
            r#"{"access_token":"","token_type":"Bearer"}"#,
            r#"{"access_token":"a\r\nb"}"#,
            r#"{"access_token":"a b"}"#,
            r#"{"access_token":42}"#,
            r#"{"token_type":"Bearer"}"#,
            r#"{"access_token":"a","expires_in":-5}"#,
            r#"{"access_token":"a","expires_in":"-5"}"#,
            r#"{"access_token":"a","expires_in":"soon"}"#,
            r#"{"access_token":"a","expires_in":true}"#,
            r#"{"access_token":"a","scope":5}"#,
            r#"{"access_token":"a""#,
            "<html>oops</html>",
            "[]",
            "",
        ] {
            let e = ok(body).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::MalformedResponse, "{body}");
            assert!(!e.is_retryable());
        }
    }

    #[test]
    fn maps_error_documents_in_both_forms() {
        let e = err(
            401,
            r#"{"type":"invalid_client","status":401,"title":"Invalid Client","detail":"Bad id."}"#,
        );
        assert_eq!(
            (e.kind(), e.oauth_error()),
            (ErrorKind::InvalidClient, Some("invalid_client"))
        );
        let e = err(
            400,
            r#"{"error":"invalid_client","error_description":"no"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::InvalidClient);
        assert_eq!(
            err(400, r#"{"error":"invalid_scope"}"#).kind(),
            ErrorKind::InvalidScope
        );
        assert_eq!(
            err(400, r#"{"error":"unauthorized_client"}"#).kind(),
            ErrorKind::UnauthorizedClient
        );
        let e = err(400, r#"{"error":"unsupported_grant_type"}"#);
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::OAuth, false));
        let e = err(503, r#"{"error":"temporarily_unavailable"}"#);
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::OAuth, true));
        let e = err(502, "<html>Bad gateway</html>");
        assert_eq!(
            (e.kind(), e.is_retryable(), e.status()),
            (ErrorKind::HttpStatus, true, Some(StatusCode::BAD_GATEWAY))
        );
        let e = err(404, "not here");
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::HttpStatus, false));
        assert_eq!(err(429, "").kind(), ErrorKind::HttpStatus);
        assert!(err(429, "").is_retryable());
        let e = err(302, "");
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::HttpStatus, false));
        // A 200 that carries an error is an error.
        let e = ok(r#"{"error":"invalid_client"}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidClient);
    }

    #[test]
    fn a_retryable_code_or_status_makes_an_oauth_error_retryable() {
        // The code alone: a server_error is worth retrying whatever the status.
        let e = err(400, r#"{"error":"server_error"}"#);
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::OAuth, true));
        let e = ok(r#"{"error":"temporarily_unavailable"}"#).unwrap_err();
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::OAuth, true));
        // The status alone, for a code that says nothing about retrying.
        let e = err(503, r#"{"error":"invalid_request"}"#);
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::OAuth, true));
        let e = err(429, r#"{"type":"rate_limited"}"#);
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::OAuth, true));
    }

    #[test]
    fn a_rejected_client_or_scope_is_not_retryable_even_with_a_retryable_status() {
        for (status, body, kind) in [
            (
                503,
                r#"{"error":"invalid_client"}"#,
                ErrorKind::InvalidClient,
            ),
            (500, r#"{"error":"invalid_scope"}"#, ErrorKind::InvalidScope),
            (
                429,
                r#"{"error":"unauthorized_client"}"#,
                ErrorKind::UnauthorizedClient,
            ),
        ] {
            let e = err(status, body);
            assert_eq!((e.kind(), e.is_retryable()), (kind, false), "{body}");
        }
    }

    #[test]
    fn an_oauth_error_keeps_an_error_status_but_not_a_success_status() {
        let e = err(400, r#"{"error":"invalid_scope"}"#);
        assert_eq!(e.status(), Some(StatusCode::BAD_REQUEST));
        let e = ok(r#"{"error":"invalid_scope"}"#).unwrap_err();
        assert_eq!((e.kind(), e.status()), (ErrorKind::InvalidScope, None));
    }

    #[test]
    fn reads_retry_after() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, "7".parse().unwrap());
        let e = parse_token_response(StatusCode::SERVICE_UNAVAILABLE, &h, b"").unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));

        let in_a_minute = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(60));
        h.insert(header::RETRY_AFTER, in_a_minute.parse().unwrap());
        let e = parse_token_response(StatusCode::SERVICE_UNAVAILABLE, &h, b"").unwrap_err();
        let after = e.retry_after().unwrap();
        assert!(
            after > Duration::from_secs(55) && after <= Duration::from_secs(60),
            "{after:?}"
        );

        h.insert(
            header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        let e = parse_token_response(StatusCode::SERVICE_UNAVAILABLE, &h, b"").unwrap_err();
        assert_eq!(
            e.retry_after(),
            Some(Duration::ZERO),
            "a date in the past means now"
        );

        h.insert(header::RETRY_AFTER, "soon".parse().unwrap());
        let e = parse_token_response(StatusCode::SERVICE_UNAVAILABLE, &h, b"").unwrap_err();
        assert_eq!(e.retry_after(), None);
    }

    #[test]
    fn a_secret_split_by_characters_an_error_leaves_out_is_still_redacted() {
        const SECRET: &str = "S3CR3T-value";
        for split in [
            "\\n", "\\r\\n", "\\u0000", "\\t", "\\u200e", "\\u202e", "\\u200b", "\\u00ad",
            "\\ufeff",
        ] {
            let echoed = format!("{}{split}{}", &SECRET[..4], &SECRET[4..]);
            let body = format!(
                r#"{{"error":"invalid_client","error_description":"secret {echoed} is wrong"}}"#
            );
            let err = redacting(StatusCode::UNAUTHORIZED, &body, &[SECRET]);
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(SECRET), "split by {split}: {shown}");
            assert!(shown.contains("secret <redacted> is wrong"), "{shown}");
        }
        // A secret that holds such a character itself is not shown without it either.
        let secret = "S3CR\u{ad}3T\tvalue";
        let body = r#"{"error":"invalid_client","error_description":"secret S3CR\u00ad3T\tvalue is wrong"}"#;
        let err = redacting(StatusCode::UNAUTHORIZED, body, &[secret]);
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("S3CR3Tvalue"), "{shown}");
        assert!(shown.contains("secret <redacted> is wrong"), "{shown}");
    }

    #[test]
    fn an_error_beside_a_token_does_not_show_that_token() {
        let token = "tok-visible-0123456789";
        let body = format!(
            r#"{{"access_token":"{token}","error":"server_error","error_description":"issued {token} but failed"}}"#
        );
        let err =
            parse_token_response(StatusCode::OK, &HeaderMap::new(), body.as_bytes()).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(token), "{shown}");
        assert!(shown.contains("issued <redacted> but failed"), "{shown}");
        // A part of it, or its base64, takes the description out.
        for echo in [&token[..12], "dG9rLXZpc2libGUtMDEy"] {
            let body = format!(
                r#"{{"access_token":"{token}","error":"server_error","error_description":"issued {echo}"}}"#
            );
            let err = parse_token_response(StatusCode::OK, &HeaderMap::new(), body.as_bytes())
                .unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(echo), "{shown}");
            assert!(
                shown.contains("(server_error): <redacted: it held a secret>"),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_secret_echoed_in_an_encoding_of_the_servers_own_is_not_shown() {
        const SECRET: &str = "p@ss w0rd+/=%&:x";
        let echoes = [
            // Percent-encoded with lowercase hex (the sent form has uppercase).
            "p%40ss%20w0rd%2b%2f%3d%25%26%3ax",
            // Form-encoded with lowercase hex.
            "p%40ss+w0rd%2b%2f%3d%25%26%3ax",
            // HTML-escaped, by name and by number.
            "p@ss w0rd+/=%&amp;:x",
            "p@ss w0rd+/=%&#38;:x",
            "p&#x40;ss w0rd+/=%&#x26;:x",
        ];
        for echo in echoes {
            let body =
                format!(r#"{{"error":"invalid_client","error_description":"bad secret {echo}"}}"#);
            let err = redacting(StatusCode::UNAUTHORIZED, &body, &[SECRET]);
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("w0rd"), "{echo}: {shown}");
            assert!(shown.contains("<redacted"), "{echo}: {shown}");
        }
        // Text with no secret in it, encoded or not, is kept as it is.
        let body =
            r#"{"error":"invalid_client","error_description":"client a%20b &amp; c+d unknown"}"#;
        let err = redacting(StatusCode::UNAUTHORIZED, body, &[SECRET]);
        assert!(
            err.to_string().ends_with("client a%20b &amp; c+d unknown"),
            "{err}"
        );
    }

    #[test]
    fn a_body_that_is_not_json_says_why_without_quoting_it() {
        let err = ok(r#"{"access_token":"tok-secret","expires_in":1e400}"#).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MalformedResponse);
        assert!(
            err.to_string()
                .contains("not valid json: number out of range"),
            "{err}"
        );
        assert!(!err.to_string().contains("tok-secret"), "{err}");
        let err = ok(r#"["access_token"]"#).unwrap_err();
        assert!(err.to_string().ends_with("not a json object"), "{err}");
    }

    #[test]
    fn a_standard_error_code_is_not_redacted_whatever_secret_it_contains() {
        // A secret that is a part of the code, and a token that is.
        let err = redacting(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"invalid_client","error_description":"client unknown"}"#,
            &["client"],
        );
        assert_eq!(err.kind(), ErrorKind::InvalidClient, "{err}");
        assert!(!err.is_retryable());
        assert_eq!(err.oauth_error(), Some("invalid_client"));
        assert!(err.to_string().ends_with(": <redacted> unknown"), "{err}");
        let err =
            ok(r#"{"access_token":"unavailable","error":"temporarily_unavailable"}"#).unwrap_err();
        assert_eq!(err.oauth_error(), Some("temporarily_unavailable"));
        assert!(err.is_retryable(), "{err}");
        // Any other code is redacted like the rest of the text.
        let err = redacting(
            StatusCode::BAD_REQUEST,
            r#"{"error":"bad_client_thing"}"#,
            &["client"],
        );
        assert_eq!(err.oauth_error(), Some("bad_<redacted>_thing"));
    }
}
