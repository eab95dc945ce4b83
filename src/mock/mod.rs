//! An embedded mock of the SimpleDocs token endpoint and API, for tests and demos.
//!
//! [`MockServer`] listens on `127.0.0.1` on a random port and speaks HTTP/1.1 (with
//! keep-alive). A connection that takes more than 30 s to send a whole request head,
//! idle time between requests included, is closed. It implements:
//!
//! * `POST /api/oauth/token`: the OAuth 2.0 client-credentials grant. Client credentials
//!   come either in the form body (`client_id`, `client_secret`) or in an
//!   `Authorization: Basic` header whose two halves are form-url-encoded (RFC 6749
//!   §2.3.1), never both. The optional `scope` is `read`, `write` or `read write` (in any
//!   order). As SimpleDocs documents, omitting it (or sending it empty or as spaces only)
//!   grants `read` to an application scoped to `read` or to `write`, while an application
//!   with the `read write` scope (the default, see [`MockConfig::app_scope`]) must ask
//!   explicitly and gets `400 invalid_scope` otherwise. Success answers `200` with
//!   `{"access_token","token_type":"Bearer","expires_in","scope","created_at"}` and
//!   `Cache-Control: no-store`.
//! * `GET /api/v1/workflows` (needs scope `read`): a fixed list of two workflows.
//! * `POST /api/v1/documents` (needs scope `write`): reads the whole body, up to 8 MiB
//!   (`413 payload_too_large` beyond), and answers `201` with
//!   `{"id","received_bytes","fnv1a64"}`; the bodies are kept, see
//!   [`MockServer::received_documents`]. A body is read only once the request carries a
//!   bearer token; an upload whose token is rejected is read to its end and dropped.
//! * `GET /.well-known/oauth-authorization-server`: the server's metadata (RFC 8414),
//!   for testing discovery offline. The issuer is [`MockServer::base_url`]; the document
//!   lists the token endpoint and the `client_secret_post` and `client_secret_basic`
//!   methods. Counted in [`MockStats::discovery_requests`].
//!
//! With the `jwt` feature the mock also checks signed client authentication and DPoP
//! (RFC 9449), as oidc-provider does (the knobs below exist only with `jwt`):
//!
//! * `MockConfig::private_key_jwt` registers a client by its public JWK;
//!   `MockConfig::client_secret_jwt` lets the main application sign HS256 assertions
//!   with its secret. An assertion must verify, name the client as `iss` and `sub`, name
//!   the token endpoint or the base URL as `aud`, not be expired (15 s leeway), and carry
//!   a new `jti`; otherwise `401 invalid_client`.
//! * A token request with a good `DPoP` proof gets `token_type: DPoP`, bound to the key's
//!   thumbprint ([`IssuedToken::jkt`]); a bad proof gets `400 invalid_dpop_proof`.
//! * `Authorization: DPoP <token>` needs a proof of the same key for this method and URL,
//!   with `ath`; a bad one gets `401` and `WWW-Authenticate: DPoP error="invalid_dpop_proof"`.
//!   A DPoP token sent as `Bearer` is `invalid_token`.
//! * `MockConfig::require_dpop_nonce` and `MockConfig::require_api_dpop_nonce` want
//!   the server's nonce in proofs: without it, `use_dpop_nonce` (`400` at the token
//!   endpoint, `401` with a `DPoP` challenge at the API) and a `DPoP-Nonce` header.
//!   `MockServer::rotate_dpop_nonce` makes the current nonces stale.
//!
//! Every error is a problem document (`Content-Type: application/problem+json`) such as
//! `{"type":"token_expired","status":401,"title":"Token Expired","detail":"The access token
//! has expired."}`. The types are `invalid_request`, `invalid_client`,
//! `unsupported_grant_type`, `invalid_scope` (token endpoint), `unauthorized` (no bearer
//! credentials, with `WWW-Authenticate: Bearer realm="simpledocs"`), `invalid_token`,
//! `token_expired`, `insufficient_scope` (API), and `not_found`, `method_not_allowed`,
//! `payload_too_large`; with `jwt`, also `invalid_dpop_proof` and `use_dpop_nonce` (API),
//! while the token endpoint answers those two as OAuth errors (`{"error", "error_description"}`).
//!
//! Token expiry is measured with [`tokio::time::Instant`], so tests that call
//! `tokio::time::pause()` and `tokio::time::advance()` can expire tokens without waiting.
//! The header read timeout runs on the same clock: advancing it past 30 s also closes
//! the idle connections of clients that keep them pooled.
//!
//! Tests steer the server with knobs: [`MockServer::revoke_all`],
//! [`MockServer::expire_token`], [`MockServer::fail_token_requests`] (status codes,
//! `Retry-After`, hostile bodies, hanging or dropped connections),
//! [`MockServer::set_token_delay`], [`MockServer::set_token_lifetime`] and
//! [`MockServer::set_expires_in_field`]; they observe it with [`MockServer::stats`],
//! [`MockServer::issued_tokens`] and [`MockServer::received_documents`].
//!
//! # Example
//!
//! ```
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tower_oauth::mock::MockServer;
//!
//! // A minimal HTTP/1.1 exchange over a fresh connection; returns (status line, body).
//! async fn exchange(addr: std::net::SocketAddr, head: &str, body: &str) -> (String, String) {
//!     let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
//!     let request = format!(
//!         "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
//!         body.len()
//!     );
//!     stream.write_all(request.as_bytes()).await.unwrap();
//!     let mut response = String::new();
//!     stream.read_to_string(&mut response).await.unwrap();
//!     let (head, body) = response.split_once("\r\n\r\n").unwrap();
//!     (head.lines().next().unwrap().to_owned(), body.to_owned())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let server = MockServer::start().await?;
//!
//! // Exchange the client credentials for a token.
//! let form = form_urlencoded::Serializer::new(String::new())
//!     .append_pair("grant_type", "client_credentials")
//!     .append_pair("client_id", server.client_id())
//!     .append_pair("client_secret", server.client_secret())
//!     .append_pair("scope", "read")
//!     .finish();
//! let head = "POST /api/oauth/token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded";
//! let (status, body) = exchange(server.addr(), head, &form).await;
//! assert_eq!(status, "HTTP/1.1 200 OK");
//! let token: serde_json::Value = serde_json::from_str(&body).unwrap();
//! assert_eq!(token["token_type"], "Bearer");
//! assert_eq!(token["scope"], "read");
//! assert_eq!(token["expires_in"], 7200);
//!
//! // Use it on the API.
//! let access_token = token["access_token"].as_str().unwrap();
//! let head = format!("GET /api/v1/workflows HTTP/1.1\r\nAuthorization: Bearer {access_token}");
//! let (status, body) = exchange(server.addr(), &head, "").await;
//! assert_eq!(status, "HTTP/1.1 200 OK");
//! assert!(body.contains("Onboarding"));
//!
//! // Once the token is revoked, the API says so.
//! server.revoke_all();
//! let (status, body) = exchange(server.addr(), &head, "").await;
//! assert_eq!(status, "HTTP/1.1 401 Unauthorized");
//! assert!(body.contains(r#""type":"token_expired""#));
//!
//! let stats = server.stats();
//! assert_eq!((stats.tokens_issued, stats.api_ok, stats.api_token_expired), (1, 1, 1));
//! # Ok(())
//! # }
//! ```

mod api;
mod config;
mod discovery;
#[cfg(feature = "jwt")]
mod dpop;
#[cfg(feature = "jwt")]
mod jose;
#[cfg(feature = "jwt")]
mod jwt;
mod request;
mod response;
mod server;
mod state;
mod stats;
#[cfg(test)]
mod tests;
mod token;

pub use config::{MockConfig, TokenFailure};
pub use server::MockServer;
pub use stats::{IssuedToken, MockStats};
