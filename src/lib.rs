//! OAuth 2.0 client-credentials authentication for any [tower] HTTP client.
//!
//! [`OAuthLayer`] wraps a `tower::Service<http::Request<B>>` (a hyper-util client, a
//! tonic `Channel`, anything) and adds `Authorization: Bearer <token>` to every request.
//! Tokens come from the token endpoint by the client-credentials grant (RFC 6749 §4.4).
//! They are cached, renewed in the background before they expire, and fetched once however
//! many requests need them. When the API rejects a token, the layer gets a new one and
//! replays the request, so callers never see an expiry.
//!
//! # Quick start
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_oauth::{ClientCredentials, OAuthLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_oauth::BoxError> {
//! # let mock = tower_oauth::mock::MockServer::start().await?;
//! # let (token_url, client_id, client_secret) =
//! #     (mock.token_url(), mock.client_id().to_owned(), mock.client_secret().to_owned());
//! # let base = mock.base_url();
//! // For SimpleDocs: ClientCredentials::simpledocs(client_id, client_secret)
//! let creds = ClientCredentials::new(&token_url, client_id, client_secret).scope("read");
//! let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let api = ServiceBuilder::new()
//!     .layer(OAuthLayer::new(creds))
//!     .service(http);
//!
//! let get = || http::Request::get(format!("{base}/api/v1/workflows")).body(Full::default());
//! assert_eq!(api.clone().oneshot(get()?).await?.status(), 200);
//!
//! // The server revokes every token: the next request is rejected with 401
//! // `token_expired`, and replayed with a new token before the caller sees it.
//! mock.revoke_all();
//! assert_eq!(api.oneshot(get()?).await?.status(), 200);
//! # assert_eq!(mock.stats().tokens_issued, 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Where things are
//!
//! - [`OAuthLayer`], its [`OAuthLayerBuilder`] (every setting, with its default) and the
//!   [`TokenHandle`] (warm up, force a renewal, look at the tokens).
//! - [`OAuth`], the service: what it adds to requests, how it replays them, and what it
//!   needs of the inner service.
//! - [`ClientCredentials`] and [`fetch`]: where tokens come from (the built-in form POST,
//!   or any `Service<TokenRequest, Response = Token>`).
//! - [`ScopePolicy`]: which scope each request's token must have;
//!   `OAuthLayer::for_tenants`: one layer for many applications, each with its own
//!   credentials ([`Tenant`]).
//! - [`store`]: tokens shared by a fleet of processes (in memory, or Redis with the
//!   `redis` feature), fetched by one process at a time.
//! - `jose` (feature `jwt`): `private_key_jwt`, `client_secret_jwt`, assertion sources
//!   and DPoP-bound tokens ([`OAuthLayerBuilder`]`::dpop`); [`ProviderMetadata`] and
//!   [`Discovery`]: credentials from an issuer's metadata. Mutual TLS and rotating
//!   secrets are on [`ClientCredentials`].
//! - [`metrics`]: what the layer reports through the `metrics` facade.
//! - [`classify`]: what counts as a rejected token. [`body`]: which request bodies are
//!   replayed, and up to what size.
//! - [`Error`] and [`ErrorKind`]: why a token could not be had, and whether to retry;
//!   [`retry`]: a `tower::retry` policy that retries what can be.
//! - [`recipes`]: the layer under reqwest, reqwest-middleware, a proxy, a retry stack,
//!   and with the `oauth2` crate.
//! - [`redact`]: how server text and URLs are cleaned of secrets before anything shows
//!   them.
//!
//! # Feature flags
//!
//! - `https` (default): the built-in token client (hyper, hyper-util, rustls), which
//!   honours `HTTPS_PROXY` and `NO_PROXY`: `OAuthLayer::new`, `OAuthLayer::builder`,
//!   `fetch::HttpFetcher::https`. It uses the process default crypto provider if one is
//!   installed, else the one selected below.
//! - `aws-lc-rs` (default) or `ring`: the rustls crypto provider; aws-lc-rs wins if both.
//! - `native-roots` (default): trust the operating system's root certificates.
//! - `webpki-roots`: trust the Mozilla root certificates compiled in.
//! - `test-util`: `mock`, an embedded mock SimpleDocs server for integration tests.
//! - `tonic`: replayable `tonic::body::Body` request bodies.
//! - `reqwest`: the `reqwest` module: a `reqwest::Client` as the wrapped service or
//!   the token client, and a `reqwest-middleware` middleware.
//! - `secrecy`: `ClientSecret: From<secrecy::SecretString>`.
//! - `oauth2`: the `oauth2` module: tokens from the `oauth2` crate's client-credentials
//!   exchange.
//! - `redis`: `store::RedisStore`, a token store on Redis or a Redis cluster.
//! - `metrics`: counters, a histogram and gauges through the `metrics` facade (see
//!   [`metrics`]).
//! - `jwt`: the `jose` module: `private_key_jwt` and `client_secret_jwt` client
//!   authentication, assertion sources, and DPoP proofs (jsonwebtoken on aws-lc-rs).
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![deny(rustdoc::broken_intra_doc_links)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
mod builder;
mod cache;
pub mod classify;
mod config;
mod credentials;
mod discovery;
#[cfg(feature = "jwt")]
mod dpop;
mod error;
pub mod fetch;
mod future;
mod handle;
#[cfg(feature = "jwt")]
pub mod jose;
mod layer;
pub mod metrics;
#[cfg(feature = "test-util")]
pub mod mock;
#[cfg(feature = "oauth2")]
pub mod oauth2;
mod pool;
pub mod recipes;
pub mod redact;
mod replay;
#[cfg(feature = "reqwest")]
pub mod reqwest;
pub mod retry;
mod scope;
mod service;
pub mod store;
mod sync;
mod tenant;
mod token;

#[allow(deprecated)]
pub use crate::builder::Builder;
pub use crate::{
    builder::OAuthLayerBuilder,
    cache::{TokenState, TokenStatus},
    credentials::{
        AuthMethod, ClientCredentials, ClientSecret, FileSecret, SecretSource, SIMPLEDOCS_TOKEN_URL,
    },
    discovery::{Discovery, ProviderMetadata},
    error::{BoxError, Error, ErrorKind},
    future::ResponseFuture,
    handle::TokenHandle,
    layer::OAuthLayer,
    scope::{RequestHead, ScopePolicy},
    service::OAuth,
    tenant::Tenant,
    token::{AccessToken, FetchReason, Scope, Token, TokenRequest, TokenType},
};
