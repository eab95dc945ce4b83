//! `GET /.well-known/oauth-authorization-server`: the server's metadata (RFC 8414).
//!
//! The issuer is the server's base URL, `http://127.0.0.1:PORT`; the document lists the
//! token endpoint, the two client-secret methods, the grant and the scopes.

use std::net::SocketAddr;

use http::StatusCode;
use serde_json::json;

use super::response::{json_response, Resp, JSON};
use super::state::Shared;
use super::stats::Counters;

/// Path of the metadata document.
pub(super) const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// The metadata document of the server at `addr`.
pub(super) fn metadata(shared: &Shared, addr: SocketAddr) -> Resp {
    Counters::bump(&shared.counters.discovery_requests);
    let issuer = format!("http://{addr}");
    let document = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}{}", super::token::TOKEN_PATH),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["read", "write"],
    });
    json_response(StatusCode::OK, JSON, &document)
}
