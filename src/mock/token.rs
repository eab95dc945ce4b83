//! The token endpoint, `POST /api/oauth/token`: the client-credentials grant.
//!
//! A request is counted on arrival, then waits out the configured delay, then meets any
//! injected failure; only then is it checked (method, form, client credentials, grant
//! type, scope) and granted. Every answer carries `Cache-Control: no-store`.

// Rejections are whole responses carried in `Err`; they are built once per request, so their
// size doesn't matter and boxing them would only add noise.
#![allow(clippy::result_large_err)]

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::config::TokenFailure;
use super::request::{
    is_form_urlencoded, parse_basic, parse_form, read_body, single_authorization, BodyError, Params,
};
use super::response::{
    invalid_client, invalid_request, invalid_scope, json_response, no_store, problem,
    unsupported_grant_type, DropConnection, Resp, JSON,
};
use super::state::{Scopes, Shared, TokenInfo};
use super::stats::{Counters, IssuedToken};

/// Path of the token endpoint.
pub(super) const TOKEN_PATH: &str = "/api/oauth/token";
/// Largest token request body accepted.
const TOKEN_BODY_LIMIT: usize = 64 * 1024;

/// `/api/oauth/token`: counts, applies the delay and injected failures, then grants.
pub(super) async fn token_endpoint(
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
    if params.contains("client_assertion") || params.contains("client_assertion_type") {
        if basic.is_some() {
            return Err(invalid_request(
                "Client authentication must use one method: an assertion or the Authorization header, not both.",
            ));
        }
        assertion_client(shared, &params)?;
    } else {
        secret_client(shared, &params, basic.as_ref())?;
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
    let jkt = token_proof(shared, parts)?;
    Ok(issue_token(shared, scope, jkt))
}

/// Authenticates a client by its id and secret, from the form or `Authorization: Basic`.
fn secret_client(
    shared: &Shared,
    params: &Params,
    basic: Option<&(String, String)>,
) -> Result<(), Resp> {
    let via_basic = basic.is_some();
    let (id, secret) = match basic {
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
    let known = match tenant_number(id, shared.tenants) {
        Some(i) => constant_time_eq(secret.as_bytes(), tenant_secret(i).as_bytes()),
        None => {
            id == shared.client_id
                && constant_time_eq(secret.as_bytes(), shared.client_secret.as_bytes())
        }
    };
    if !known {
        return Err(invalid_client(
            via_basic,
            "Client authentication failed: unknown client or wrong secret.",
        ));
    }
    Ok(())
}

/// Authenticates a client by its assertion.
#[cfg(feature = "jwt")]
fn assertion_client(shared: &Shared, params: &Params) -> Result<(), Resp> {
    super::jwt::authenticate(shared, params).map(drop)
}

/// Without the `jwt` feature the mock knows no client assertions.
#[cfg(not(feature = "jwt"))]
fn assertion_client(_: &Shared, _: &Params) -> Result<(), Resp> {
    Err(invalid_client(
        false,
        "Client authentication failed: client assertions are not supported.",
    ))
}

/// The thumbprint of the request's DPoP key, if it sent a good proof.
#[cfg(feature = "jwt")]
fn token_proof(shared: &Shared, parts: &Parts) -> Result<Option<String>, Resp> {
    super::dpop::token_proof(shared, parts)
}

/// Without the `jwt` feature a `DPoP` header is ignored: the token is a bearer token.
#[cfg(not(feature = "jwt"))]
fn token_proof(_: &Shared, _: &Parts) -> Result<Option<String>, Resp> {
    Ok(None)
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
fn issue_token(shared: &Shared, scope: Scopes, jkt: Option<String>) -> Resp {
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
            jkt: jkt.clone(),
        },
    );
    let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
    inner.issued.push(IssuedToken {
        scope: scope.canonical(),
        lifetime,
        jkt,
    });
    let expires_in = match &inner.expires_in_field {
        None => Some(Value::from(lifetime.as_secs())),
        Some(Value::Null) => None,
        Some(value) => Some(value.clone()),
    };
    drop(inner);

    let mut body = Map::new();
    body.insert("access_token".into(), Value::from(token));
    body.insert("token_type".into(), Value::from(token_type));
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

/// Compares secrets in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The number of tenant application `id` (`tenant-<i>`, 1 ≤ i ≤ `tenants`), if it is one.
fn tenant_number(id: &str, tenants: usize) -> Option<usize> {
    let i: usize = id.strip_prefix("tenant-")?.parse().ok()?;
    (1..=tenants).contains(&i).then_some(i)
}

/// The secret of tenant application `i`.
pub(super) fn tenant_secret(i: usize) -> String {
    format!("tenant-{i}-secret")
}
