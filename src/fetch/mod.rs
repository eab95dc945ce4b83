//! Token fetchers: services that turn a [`TokenRequest`] into a [`Token`].
//!
//! Any `Service<TokenRequest, Response = Token>` whose error converts into a
//! [`BoxError`](crate::BoxError) can fetch tokens for the layer, e.g. a `service_fn` that
//! asks a sidecar or a vault. [`HttpFetcher`] is the standard one: it POSTs the
//! client-credentials form to the token endpoint over any HTTP client service, and, with
//! the `https` feature, over a built-in hyper + rustls client.
//!
//! ```
//! use std::time::Duration;
//! use tower::service_fn;
//! use tower_oauth::{Token, TokenRequest, OAuthLayer};
//!
//! let fetcher = service_fn(|req: TokenRequest| async move {
//!     // Ask a sidecar, a vault, a file...
//!     let _scope = req.scope;
//!     Ok::<_, std::convert::Infallible>(Token::new("token-from-vault", Some(Duration::from_secs(600))))
//! });
//! let layer = OAuthLayer::with_fetcher(fetcher).build();
//! # let _ = layer;
//! ```
//!
//! [`TokenRequest`]: crate::TokenRequest
//! [`Token`]: crate::Token

mod http;
#[cfg(feature = "https")]
mod https;
mod parse;
#[cfg(feature = "https")]
mod proxy;
mod signed;
#[cfg(feature = "https")]
mod tenants;

pub use self::http::HttpFetcher;
#[cfg(feature = "https")]
pub use self::https::{https_client, HttpsClient};
pub use self::parse::{parse_token_response, MAX_TOKEN_RESPONSE_BYTES};
#[cfg(feature = "https")]
pub use self::proxy::ProxyConnector;
#[cfg(feature = "https")]
pub(crate) use self::tenants::{TenantCredentials, TenantFetcher};
