//! How a mock server is set up and steered: [`MockConfig`] and [`TokenFailure`].
//!
//! The configuration fixes the one application the server knows (its credentials and
//! scope) and the token lifetime; a [`TokenFailure`] scripts how the next token requests
//! fail, through [`MockServer::fail_token_requests`](super::MockServer::fail_token_requests).

use std::fmt;
use std::time::Duration;

/// Default client id of the mock application.
const DEFAULT_CLIENT_ID: &str = "simpledocs-demo-client";
/// Default client secret of the mock application.
const DEFAULT_CLIENT_SECRET: &str = "demo-secret";
/// Default scope of the mock application.
const DEFAULT_APP_SCOPE: &str = "read write";
/// Default token lifetime, as documented by SimpleDocs.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(7200);

/// Configuration of a [`MockServer`](super::MockServer): the application's credentials, scope and token lifetime.
#[derive(Clone)]
pub struct MockConfig {
    pub(super) client_id: String,
    pub(super) client_secret: String,
    pub(super) app_scope: String,
    pub(super) token_lifetime: Duration,
    pub(super) tenants: usize,
    /// Signed client authentication and DPoP (feature `jwt`).
    #[cfg(feature = "jwt")]
    pub(super) jose: super::jose::JoseConfig,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            app_scope: DEFAULT_APP_SCOPE.to_owned(),
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            tenants: 0,
            #[cfg(feature = "jwt")]
            jose: super::jose::JoseConfig::default(),
        }
    }
}

impl fmt::Debug for MockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("MockConfig");
        out.field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("app_scope", &self.app_scope)
            .field("token_lifetime", &self.token_lifetime)
            .field("tenants", &self.tenants);
        #[cfg(feature = "jwt")]
        out.field("jose", &self.jose);
        out.finish()
    }
}

impl MockConfig {
    /// Creates the default configuration (same as [`MockConfig::default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the client id the server accepts (default `simpledocs-demo-client`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// Sets the client secret the server accepts (default `demo-secret`).
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = secret.into();
        self
    }

    /// Sets the space-separated scopes the application may be granted (default `read write`).
    ///
    /// An application with both `read` and `write` must name a scope in every token
    /// request; one with a single scope that names none is granted `read`.
    pub fn app_scope(mut self, scope: impl Into<String>) -> Self {
        self.app_scope = scope.into();
        self
    }

    /// Also accepts `n` tenant applications, numbered from 1: client id `tenant-<i>`,
    /// secret `tenant-<i>-secret`, with the same scope as the main application (see
    /// [`MockServer::tenant_credentials`](super::MockServer::tenant_credentials)).
    /// Default: none.
    pub fn tenants(mut self, n: usize) -> Self {
        self.tenants = n;
        self
    }

    /// Sets the lifetime of issued tokens (default 7200 s).
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Also accepts client `client_id`, authenticating with `private_key_jwt`: a client
    /// assertion that `public_jwk` verifies. Default: no such client.
    ///
    /// The client has the main application's scope. Its algorithms are the JWK's `alg`,
    /// else RS256 and PS256 for an RSA key, ES256 for P-256, EdDSA for Ed25519.
    ///
    /// # Panics
    ///
    /// If `public_jwk` is not a public RSA, EC or OKP JWK (one with a `d` member is refused).
    #[cfg(feature = "jwt")]
    pub fn private_key_jwt(
        mut self,
        client_id: impl Into<String>,
        public_jwk: serde_json::Value,
    ) -> Self {
        let key = super::jose::ClientKey::from_jwk(&public_jwk)
            .unwrap_or_else(|why| panic!("MockConfig::private_key_jwt: {why}"));
        self.jose.clients.push((client_id.into(), key));
        self
    }

    /// Whether the main application may authenticate with `client_secret_jwt`: an HS256
    /// client assertion signed with its secret (default `false`).
    #[cfg(feature = "jwt")]
    pub fn client_secret_jwt(mut self, allow: bool) -> Self {
        self.jose.client_secret_jwt = allow;
        self
    }

    /// Whether DPoP proofs at the token endpoint must carry its current nonce; one
    /// without it is answered `400 use_dpop_nonce` with a `DPoP-Nonce` header
    /// (default `false`).
    #[cfg(feature = "jwt")]
    pub fn require_dpop_nonce(mut self, require: bool) -> Self {
        self.jose.token_nonce = require;
        self
    }

    /// Whether DPoP proofs at the API must carry its current nonce; one without it is
    /// answered `401` with `WWW-Authenticate: DPoP error="use_dpop_nonce"` and a
    /// `DPoP-Nonce` header (default `false`).
    #[cfg(feature = "jwt")]
    pub fn require_api_dpop_nonce(mut self, require: bool) -> Self {
        self.jose.api_nonce = require;
        self
    }
}

/// How the next token requests fail, see
/// [`MockServer::fail_token_requests`](super::MockServer::fail_token_requests).
#[non_exhaustive]
#[derive(Debug, Clone)]
pub enum TokenFailure {
    /// Answer this status with a problem document of type `server_error` (`temporarily_unavailable` for 503).
    Status(http::StatusCode),
    /// Like [`TokenFailure::Status`], plus a `Retry-After` header with this many seconds.
    StatusWithRetryAfter(http::StatusCode, u64),
    /// Answer this status, `Content-Type` (omitted when empty) and raw body.
    Body(http::StatusCode, &'static str, &'static str),
    /// Never answer, keeping the connection open.
    Hang,
    /// Drop the connection without writing a response.
    CloseConnection,
}
