//! Reading requests: bodies within a limit, token-request forms and `Authorization` headers.
//!
//! Each parser either returns what it read or the problem document to answer with, so
//! the endpoints stay a sequence of checks. Bodies are read through
//! [`http_body_util::Limited`], and a broken body is told apart from one that is too large.

// Rejections are whole responses carried in `Err`; they are built once per request, so their
// size doesn't matter and boxing them would only add noise.
#![allow(clippy::result_large_err)]

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http_body::Body as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::BoxError;

use super::response::{invalid_client, invalid_request, Resp};

/// Base64 for `Authorization: Basic`, accepting credentials with or without padding.
const BASIC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a request body could not be read.
pub(super) enum BodyError {
    /// Longer than the limit.
    TooLarge,
    /// The connection failed while the body was read.
    Broken,
}

/// Reads a whole body, up to `limit` bytes.
pub(super) async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    Limited::new(body, limit)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(body_error)
}

/// Reads a body to its end without keeping it, up to `limit` bytes.
pub(super) async fn discard_body(body: Incoming, limit: usize) -> Result<(), BodyError> {
    let mut body = Limited::new(body, limit);
    while let Some(frame) = body.frame().await {
        frame.map_err(body_error)?;
    }
    Ok(())
}

/// Whether a body's `Content-Length` says it is longer than `limit`.
pub(super) fn declared_longer_than(body: &Incoming, limit: usize) -> bool {
    u64::try_from(limit).is_ok_and(|limit| body.size_hint().lower() > limit)
}

/// Tells a body that is too large from one that broke.
fn body_error(error: BoxError) -> BodyError {
    if error.downcast_ref::<LengthLimitError>().is_some() {
        BodyError::TooLarge
    } else {
        BodyError::Broken
    }
}

/// Whether the `Content-Type` is `application/x-www-form-urlencoded` (parameters allowed).
pub(super) fn is_form_urlencoded(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The decoded form parameters of a token request, each name at most once.
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    /// The parameter's value; an empty value counts as omitted (RFC 6749 §3.1).
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }

    /// Whether the parameter is present with a value.
    pub(super) fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Parses a form body, refusing any parameter given more than once, whatever its values
/// (RFC 6749 §3.1, §3.2).
pub(super) fn parse_form(body: &[u8]) -> Result<Params, Resp> {
    if std::str::from_utf8(body).is_err() {
        return Err(invalid_request("The request body is not valid UTF-8."));
    }
    let mut params = Params(Vec::new());
    for (key, value) in form_urlencoded::parse(body) {
        if params.0.iter().any(|(seen, _)| *seen == key) {
            return Err(invalid_request(
                "A request parameter is repeated; each may appear once.",
            ));
        }
        params.0.push((key.into_owned(), value.into_owned()));
    }
    Ok(params)
}

/// The `Authorization` header, if there is exactly one; two or more are refused.
pub(super) fn single_authorization(headers: &HeaderMap) -> Result<Option<&HeaderValue>, Resp> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => Ok(Some(value)),
        (Some(_), Some(_)) => Err(invalid_request("Only one Authorization header is allowed.")),
    }
}

/// Decodes `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
pub(super) fn parse_basic(value: &HeaderValue) -> Result<(String, String), Resp> {
    let malformed = || invalid_request("The Authorization header is malformed.");
    let value = value.to_str().map_err(|_| malformed())?.trim();
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid_client(
            true,
            "Client authentication failed: the token endpoint accepts only the Basic scheme.",
        ));
    }
    let decoded = BASIC_BASE64
        .decode(credentials.trim())
        .map_err(|_| malformed())?;
    let colon = decoded
        .iter()
        .position(|&byte| byte == b':')
        .ok_or_else(malformed)?;
    let id = form_decode(&decoded[..colon]).ok_or_else(malformed)?;
    let secret = form_decode(&decoded[colon + 1..]).ok_or_else(malformed)?;
    Ok((id, secret))
}

/// Form-url-decodes one value: `+` is a space, `%XX` a byte; `None` if the result isn't UTF-8.
fn form_decode(input: &[u8]) -> Option<String> {
    fn hex(byte: u8) -> Option<u8> {
        char::from(byte)
            .to_digit(16)
            .and_then(|digit| u8::try_from(digit).ok())
    }
    let mut output = Vec::with_capacity(input.len());
    let mut index = 0;
    while index < input.len() {
        let byte = input[index];
        let escaped = match (byte, input.get(index + 1), input.get(index + 2)) {
            (b'%', Some(&high), Some(&low)) => hex(high).zip(hex(low)),
            _ => None,
        };
        match (byte, escaped) {
            (_, Some((high, low))) => {
                output.push(high << 4 | low);
                index += 3;
            }
            (b'+', None) => {
                output.push(b' ');
                index += 1;
            }
            (other, None) => {
                output.push(other);
                index += 1;
            }
        }
    }
    String::from_utf8(output).ok()
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive);
/// `None` without one, a bare `Bearer` included (no credentials, not a wrong token).
pub(super) fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The token of an `Authorization: DPoP <token>` header (scheme case-insensitive).
#[cfg(feature = "jwt")]
pub(super) fn dpop_token(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("dpop") && !token.is_empty()).then_some(token)
}
