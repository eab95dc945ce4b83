//! `GET /.well-known/oauth-authorization-server`: the server's metadata (RFC 8414).
//!
//! The issuer is the server's base URL, `http://127.0.0.1:PORT`; the document lists the
//! token endpoint, the two client-secret methods (and, with the `jwt` feature, the signed
//! methods the configuration turned on and the DPoP algorithms), the grant and the scopes.

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
    #[allow(unused_mut)] // Without `jwt`, the two secret methods are all.
    let mut methods = vec!["client_secret_post", "client_secret_basic"];
    #[allow(unused_mut)]
    let mut document = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}{}", super::token::TOKEN_PATH),
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["read", "write"],
    });
    #[cfg(feature = "jwt")]
    {
        if shared.jose.client_secret_jwt {
            methods.push("client_secret_jwt");
        }
        if !shared.jose.clients.is_empty() {
            methods.push("private_key_jwt");
        }
        document["token_endpoint_auth_signing_alg_values_supported"] =
            json!(["HS256", "RS256", "PS256", "ES256", "EdDSA"]);
        document["dpop_signing_alg_values_supported"] = json!(["ES256", "EdDSA", "RS256", "PS256"]);
    }
    document["token_endpoint_auth_methods_supported"] = json!(methods);
    json_response(StatusCode::OK, JSON, &document)
}
