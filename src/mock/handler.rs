//! Request handling: the token endpoint, the protected API and the problem documents.

// Rejections are whole responses carried in `Err`; they are built once per request, so their
// size doesn't matter and boxing them would only add noise.
#![allow(clippy::result_large_err)]

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderValue, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION, PRAGMA,
    RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use crate::BoxError;

use super::state::{Counters, Scopes, Shared, TokenInfo};
use super::{IssuedToken, TokenFailure};

/// Path of the token endpoint.
const TOKEN_PATH: &str = "/api/oauth/token";
/// Prefix of the protected API.
const API_PREFIX: &str = "/api/v1/";
/// The endpoint that needs `read`.
const WORKFLOWS_PATH: &str = "/api/v1/workflows";
/// The endpoint that needs `write`.
const DOCUMENTS_PATH: &str = "/api/v1/documents";
/// Largest token request body accepted.
const TOKEN_BODY_LIMIT: usize = 64 * 1024;
/// Largest upload accepted: ample for tests (the largest they send is 1 MB), small enough
/// that a test server never buffers much.
pub(super) const API_BODY_LIMIT: usize = 8 * 1024 * 1024;
/// The realm named in `WWW-Authenticate` challenges.
const REALM: &str = "simpledocs";

const JSON: &str = "application/json";
const PROBLEM_JSON: &str = "application/problem+json";

/// Base64 for `Authorization: Basic`, accepting credentials with or without padding.
const BASIC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The body type of every response.
type Resp = Response<Full<Bytes>>;

/// Returned by the service to make hyper drop the connection without writing a response.
#[derive(Debug)]
pub(super) struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("mock server dropped the connection")
    }
}

impl std::error::Error for DropConnection {}

/// Why a request body could not be read.
enum BodyError {
    TooLarge,
    Broken,
}

/// Serves one request.
pub(super) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Resp, DropConnection> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let result = if path == TOKEN_PATH {
        token_endpoint(&shared, request).await
    } else if path.starts_with(API_PREFIX) {
        api(&shared, request).await
    } else {
        Ok(not_found())
    };
    match &result {
        Ok(response) => {
            tracing::debug!(%method, %path, status = response.status().as_u16(), "mock server answered");
        }
        Err(_) => tracing::debug!(%method, %path, "mock server dropped the connection"),
    }
    result
}

/// Reads a whole body, up to `limit` bytes.
async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    Limited::new(body, limit)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(body_error)
}

/// Reads a body to its end without keeping it, up to `limit` bytes.
async fn discard_body(body: Incoming, limit: usize) -> Result<(), BodyError> {
    let mut body = Limited::new(body, limit);
    while let Some(frame) = body.frame().await {
        frame.map_err(body_error)?;
    }
    Ok(())
}

/// Whether a body's `Content-Length` says it is longer than `limit`.
fn declared_longer_than(body: &Incoming, limit: usize) -> bool {
    u64::try_from(limit).is_ok_and(|limit| body.size_hint().lower() > limit)
}

fn body_error(error: BoxError) -> BodyError {
    if error.downcast_ref::<LengthLimitError>().is_some() {
        BodyError::TooLarge
    } else {
        BodyError::Broken
    }
}

// ---------------------------------------------------------------------------------------------
// Token endpoint
// ---------------------------------------------------------------------------------------------

/// `/api/oauth/token`: counts, applies the delay and injected failures, then grants.
async fn token_endpoint(
    shared: &Shared,
    request: Request<Incoming>,
) -> Result<Resp, DropConnection> {
    let counters = &shared.counters;
    Counters::bump(&counters.token_requests);
    let (parts, body) = request.into_parts();
    let body = read_body(body, TOKEN_BODY_LIMIT).await;
    let (failure, delay) = {
        let mut inner = shared.lock();
        (inner.take_failure(), inner.token_delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(failure) = failure {
        Counters::bump(&counters.token_errors);
        return injected_failure(failure).await;
    }
    let response = match body {
        Ok(body) => grant(shared, &parts, &body),
        Err(BodyError::TooLarge) => invalid_request("The request body is too large."),
        Err(BodyError::Broken) => {
            Counters::bump(&counters.token_errors);
            return Err(DropConnection);
        }
    };
    if response.status().is_success() {
        Counters::bump(&counters.tokens_issued);
    } else {
        Counters::bump(&counters.token_errors);
    }
    Ok(no_store(response))
}

/// Answers (or doesn't) as an injected failure says.
async fn injected_failure(failure: TokenFailure) -> Result<Resp, DropConnection> {
    match failure {
        TokenFailure::Status(status) => Ok(server_failure(status, None)),
        TokenFailure::StatusWithRetryAfter(status, secs) => Ok(server_failure(status, Some(secs))),
        TokenFailure::Body(status, content_type, body) => {
            let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
            *response.status_mut() = status;
            if !content_type.is_empty() {
                if let Ok(value) = HeaderValue::from_str(content_type) {
                    response.headers_mut().insert(CONTENT_TYPE, value);
                }
            }
            Ok(response)
        }
        TokenFailure::Hang => std::future::pending().await,
        TokenFailure::CloseConnection => Err(DropConnection),
    }
}

/// A problem document for an injected status.
fn server_failure(status: StatusCode, retry_after: Option<u64>) -> Resp {
    let (kind, detail) = if status == StatusCode::SERVICE_UNAVAILABLE {
        (
            "temporarily_unavailable",
            "The authorization server is temporarily unavailable.",
        )
    } else {
        (
            "server_error",
            "The authorization server encountered an unexpected condition.",
        )
    };
    let title = status.canonical_reason().unwrap_or("Error");
    let mut response = no_store(problem(status, kind, title, detail));
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The client-credentials grant proper; every outcome is a response.
fn grant(shared: &Shared, parts: &Parts, body: &[u8]) -> Resp {
    match try_grant(shared, parts, body) {
        Ok(response) | Err(response) => response,
    }
}

fn try_grant(shared: &Shared, parts: &Parts, body: &[u8]) -> Result<Resp, Resp> {
    if parts.method != Method::POST {
        let mut response = problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method Not Allowed",
            "The token endpoint only accepts POST.",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return Err(response);
    }
    if !is_form_urlencoded(&parts.headers) {
        return Err(invalid_request(
            "The request body must be application/x-www-form-urlencoded.",
        ));
    }
    let params = parse_form(body)?;
    let basic = match single_authorization(&parts.headers)? {
        None => None,
        Some(value) => Some(parse_basic(value)?),
    };
    if basic.is_some() && (params.contains("client_id") || params.contains("client_secret")) {
        return Err(invalid_request(
            "Client credentials must be sent either in the Authorization header or in the request body, not both.",
        ));
    }
    match params.get("grant_type") {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(unsupported_grant_type(
                "The grant type is not supported; use client_credentials.",
            ))
        }
        None => {
            return Err(unsupported_grant_type(
                "The grant_type parameter is missing; use client_credentials.",
            ))
        }
    }
    let via_basic = basic.is_some();
    let (id, secret) = match &basic {
        Some((id, secret)) => (Some(id.as_str()), Some(secret.as_str())),
        // A client whose secret is empty may omit it (RFC 6749 §2.3.1).
        None => (
            params.get("client_id"),
            params.get("client_secret").or(Some("")),
        ),
    };
    let (Some(id), Some(secret)) = (id, secret) else {
        return Err(invalid_client(
            via_basic,
            "Client authentication failed: no client credentials were provided.",
        ));
    };
    if id != shared.client_id
        || !constant_time_eq(secret.as_bytes(), shared.client_secret.as_bytes())
    {
        return Err(invalid_client(
            via_basic,
            "Client authentication failed: unknown client or wrong secret.",
        ));
    }
    let scope = match params.get("scope").map(Scopes::parse) {
        None => default_scope(shared)?,
        Some(Ok(scope)) if scope.is_empty() => default_scope(shared)?,
        Some(Ok(scope)) if shared.app_scope.contains(scope) => scope,
        Some(Ok(_)) => {
            return Err(invalid_scope(
                "The requested scope exceeds the scope of the application.",
            ))
        }
        Some(Err(_)) => {
            return Err(invalid_scope(
                "The requested scope is unknown; use read, write or both.",
            ))
        }
    };
    Ok(issue_token(shared, scope))
}

/// The scope granted when the request names none: `read`, unless the application has both
/// scopes, which SimpleDocs makes ask explicitly.
fn default_scope(shared: &Shared) -> Result<Scopes, Resp> {
    if shared.app_scope.contains(Scopes::READ_WRITE) {
        return Err(invalid_scope(
            "An application with the read write scope must ask for scope explicitly: read, write or read write.",
        ));
    }
    Ok(Scopes::READ)
}

/// Stores a new token and builds the success response.
fn issue_token(shared: &Shared, scope: Scopes) -> Resp {
    let now = Instant::now();
    let mut inner = shared.lock();
    let lifetime = inner.token_lifetime;
    let token = loop {
        let candidate = new_token();
        if !inner.tokens.contains_key(&candidate) {
            break candidate;
        }
    };
    inner.tokens.insert(
        token.clone(),
        TokenInfo {
            scope,
            expires_at: now.checked_add(lifetime),
            revoked: false,
        },
    );
    inner.issued.push(IssuedToken {
        scope: scope.canonical(),
        lifetime,
    });
    let expires_in = match &inner.expires_in_field {
        None => Some(Value::from(lifetime.as_secs())),
        Some(Value::Null) => None,
        Some(value) => Some(value.clone()),
    };
    drop(inner);

    let mut body = Map::new();
    body.insert("access_token".into(), Value::from(token));
    body.insert("token_type".into(), Value::from("Bearer"));
    if let Some(expires_in) = expires_in {
        body.insert("expires_in".into(), expires_in);
    }
    body.insert("scope".into(), Value::from(scope.canonical()));
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    body.insert("created_at".into(), Value::from(created_at));
    json_response(StatusCode::OK, JSON, &Value::Object(body))
}

/// A random opaque token: `sdk_` and 40 lowercase hex digits.
fn new_token() -> String {
    format!(
        "sdk_{:016x}{:016x}{:08x}",
        fastrand::u64(..),
        fastrand::u64(..),
        fastrand::u32(..)
    )
}

/// Whether the `Content-Type` is `application/x-www-form-urlencoded` (parameters allowed).
fn is_form_urlencoded(headers: &HeaderMap) -> bool {
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
struct Params(Vec<(String, String)>);

impl Params {
    /// The parameter's value; an empty value counts as omitted (RFC 6749 §3.1).
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }

    fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Parses a form body, refusing any parameter given more than once, whatever its values
/// (RFC 6749 §3.1, §3.2).
fn parse_form(body: &[u8]) -> Result<Params, Resp> {
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
fn single_authorization(headers: &HeaderMap) -> Result<Option<&HeaderValue>, Resp> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => Ok(Some(value)),
        (Some(_), Some(_)) => Err(invalid_request("Only one Authorization header is allowed.")),
    }
}

/// Decodes `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
fn parse_basic(value: &HeaderValue) -> Result<(String, String), Resp> {
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

/// Compares secrets in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Adds `Cache-Control: no-store` and `Pragma: no-cache`, as token responses need.
fn no_store(mut response: Resp) -> Resp {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn invalid_request(detail: &str) -> Resp {
    problem(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "Invalid Request",
        detail,
    )
}

fn invalid_client(via_basic: bool, detail: &str) -> Resp {
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

fn unsupported_grant_type(detail: &str) -> Resp {
    problem(
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        "Unsupported Grant Type",
        detail,
    )
}

fn invalid_scope(detail: &str) -> Resp {
    problem(
        StatusCode::BAD_REQUEST,
        "invalid_scope",
        "Invalid Scope",
        detail,
    )
}

// ---------------------------------------------------------------------------------------------
// Protected API
// ---------------------------------------------------------------------------------------------

/// `/api/v1/*`: routes, authenticates, authorizes and serves.
///
/// The body is read only once the request has a bearer token: an upload is stored if the
/// token is good and read to its end (up to [`API_BODY_LIMIT`]) and dropped if not.
/// Other requests are answered without reading their body, and hyper then closes the
/// connection unless the body was already in.
async fn api(shared: &Shared, request: Request<Incoming>) -> Result<Resp, DropConnection> {
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
    let token = match bearer_credentials(shared, &parts.headers) {
        Ok(token) => token,
        Err(response) => return Ok(response),
    };
    let too_large = declared_longer_than(&body, API_BODY_LIMIT);
    if let Err(response) = authorize(shared, token, required) {
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

/// The outcome of checking a bearer token.
enum Verdict {
    Valid,
    Unknown,
    Expired,
    Insufficient,
}

/// The token of the request's `Authorization: Bearer` header; without one, the answer.
fn bearer_credentials<'a>(shared: &Shared, headers: &'a HeaderMap) -> Result<&'a str, Resp> {
    if let Some(token) = single_authorization(headers)?.and_then(bearer_token) {
        return Ok(token);
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

/// Checks a bearer token against `required`, counting and answering rejections.
fn authorize(shared: &Shared, token: &str, required: Scopes) -> Result<(), Resp> {
    let counters = &shared.counters;
    let now = Instant::now();
    let verdict = match shared.lock().tokens.get(token) {
        None => Verdict::Unknown,
        Some(info) if info.revoked || info.expires_at.is_some_and(|at| now >= at) => {
            Verdict::Expired
        }
        Some(info) if !info.scope.contains(required) => Verdict::Insufficient,
        Some(_) => Verdict::Valid,
    };
    let (status, kind, title, detail, challenge) = match verdict {
        Verdict::Valid => return Ok(()),
        Verdict::Unknown => {
            Counters::bump(&counters.api_invalid_token);
            let detail = "The access token is invalid.";
            let challenge = format!(
                r#"Bearer realm="{REALM}", error="invalid_token", error_description="{detail}""#
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
            let challenge =
                format!(r#"Bearer realm="{REALM}", error="insufficient_scope", scope="{needed}""#);
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

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive);
/// `None` without one, a bare `Bearer` included (no credentials, not a wrong token).
fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
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

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

fn not_found() -> Resp {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        "Not Found",
        "There is no resource at this path.",
    )
}

/// A problem document: `{"type","status","title","detail"}` as `application/problem+json`.
fn problem(status: StatusCode, kind: &str, title: &str, detail: &str) -> Resp {
    json_response(
        status,
        PROBLEM_JSON,
        &json!({"type": kind, "status": status.as_u16(), "title": title, "detail": detail}),
    )
}

fn json_response(status: StatusCode, content_type: &'static str, value: &Value) -> Resp {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
