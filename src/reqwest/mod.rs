//! reqwest integration (feature `reqwest`): a `reqwest::Client` as the service the layer
//! wraps ([`ReqwestService`]), as the token client ([`builder`],
//! [`HttpFetcher::reqwest`](crate::fetch::HttpFetcher::reqwest)), and a
//! `reqwest-middleware` middleware on the layer's tokens ([`OAuthMiddleware`]).
//!
//! ```
//! use reqwest_middleware::ClientBuilder;
//! use tower_oauth::reqwest::OAuthMiddleware;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_oauth::BoxError> {
//! # let mock = tower_oauth::mock::MockServer::start().await?;
//! # let creds = tower_oauth::ClientCredentials::new(
//! #     &mock.token_url(), mock.client_id(), mock.client_secret()).scope("read");
//! # let url = format!("{}/api/v1/workflows", mock.base_url());
//! let client = reqwest::Client::new();
//! // Tokens come over the same client: no second TLS stack.
//! let api = ClientBuilder::new(client.clone())
//!     .with(OAuthMiddleware::with_client(client, creds))
//!     .build();
//! assert_eq!(api.get(&url).send().await?.status(), 200);
//!
//! // A revoked token is re-issued and the request replayed.
//! mock.revoke_all();
//! assert_eq!(api.get(&url).send().await?.status(), 200);
//! # assert_eq!(mock.stats().tokens_issued, 2);
//! # Ok(())
//! # }
//! ```

mod fetch;
mod middleware;
mod replay;
mod service;

pub use self::{
    fetch::builder,
    middleware::OAuthMiddleware,
    service::{ReqwestService, ResponseFuture},
};
