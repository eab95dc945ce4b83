//! Recipes: the layer in the stacks it is most often put in. Docs only.
//!
//! Each recipe compiles as it is shown; the ones that need a network are not run.
//!
//! # reqwest under the layer
//!
//! `reqwest::ReqwestService` makes a `reqwest::Client` a tower
//! service; `reqwest::builder` fetches tokens over the same
//! client and replays `reqwest::Body` requests (feature `reqwest`).
//!
//! ```no_run
//! # #[cfg(feature = "reqwest")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_oauth::BoxError> {
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_oauth::{reqwest::ReqwestService, ClientCredentials};
//!
//! let client = reqwest::Client::new();
//! let creds = ClientCredentials::simpledocs("id", "secret").scope("read");
//! let api = ServiceBuilder::new()
//!     .layer(tower_oauth::reqwest::builder(client.clone(), creds).build())
//!     .service(ReqwestService::new(client));
//! let req = http::Request::get("https://app.simpledocs.com/api/v1/workflows")
//!     .body(reqwest::Body::from(""))?;
//! let res = api.oneshot(req).await?;
//! # let _ = res;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "reqwest"))]
//! # fn main() {}
//! ```
//!
//! # reqwest-middleware
//!
//! `reqwest::OAuthMiddleware` puts the layer's token cache in a
//! `reqwest_middleware::ClientWithMiddleware` (feature `reqwest`).
//!
//! ```no_run
//! # #[cfg(feature = "reqwest")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_oauth::BoxError> {
//! use reqwest_middleware::ClientBuilder;
//! use tower_oauth::{reqwest::OAuthMiddleware, ClientCredentials};
//!
//! let client = reqwest::Client::new();
//! let creds = ClientCredentials::simpledocs("id", "secret").scope("read");
//! let api = ClientBuilder::new(client.clone())
//!     .with(OAuthMiddleware::with_client(client, creds))
//!     .build();
//! let res = api.get("https://app.simpledocs.com/api/v1/workflows").send().await?;
//! # let _ = res;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "reqwest"))]
//! # fn main() {}
//! ```
//!
//! # A proxy that forwards hyper's `Incoming`
//!
//! An incoming request's body is forwarded as it streams in. Sent as it is, hyper's
//! `Incoming` is not replayed: a rejected token reaches the caller as the API answered.
//! Boxed, it is recorded up to the replay limit and replayed (see [`body`](crate::body)).
//! The same holds for an axum handler's `axum::body::Body`, once it is registered with
//! [`replay_body`](crate::OAuthLayerBuilder::replay_body)`(axum::body::Body::new)` (next recipe).
//!
//! ```no_run
//! # #[cfg(feature = "https")]
//! # fn main() {
//! use http_body_util::{combinators::BoxBody, BodyExt};
//! use hyper::body::{Bytes, Incoming};
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_oauth::{BoxError, ClientCredentials, OAuthLayer};
//!
//! let creds = ClientCredentials::simpledocs("id", "secret").scope("read write");
//! // Plain HTTP here; give it hyper-rustls's connector for HTTPS.
//! let upstream = Client::builder(TokioExecutor::new()).build_http::<BoxBody<Bytes, BoxError>>();
//! let api = ServiceBuilder::new()
//!     .layer(OAuthLayer::new(creds))
//!     .service(upstream);
//! // Serve this with hyper (`TowerToHyperService`) or as an axum fallback.
//! let proxy = tower::service_fn(move |req: http::Request<Incoming>| {
//!     // Boxed so that it is replayed; forward `req` unchanged to not replay it.
//!     let req = req.map(|body| BoxBody::new(body.map_err(BoxError::from)));
//!     api.clone().oneshot(req)
//! });
//! # let _ = proxy;
//! # }
//! # #[cfg(not(feature = "https"))]
//! # fn main() {}
//! ```
//!
//! # An axum proxy
//!
//! An axum handler forwards its `Request<axum::body::Body>` through the layer. Registered
//! with [`replay_body`](crate::OAuthLayerBuilder::replay_body)`(axum::body::Body::new)`,
//! the body is recorded up to the replay limit as it streams upstream, and a request
//! rejected for its token is replayed with a new one.
//!
//! ```no_run
//! # #[cfg(feature = "https")]
//! # fn main() {
//! use axum::{
//!     body::Body,
//!     extract::{Request, State},
//!     http::{StatusCode, Uri},
//!     response::Response,
//!     routing::any,
//!     Router,
//! };
//! use hyper_util::{
//!     client::legacy::{connect::HttpConnector, Client},
//!     rt::TokioExecutor,
//! };
//! use tower::{Layer, ServiceExt};
//! use tower_oauth::{ClientCredentials, OAuth, OAuthLayer};
//!
//! type Upstream = OAuth<Client<HttpConnector, Body>>;
//!
//! async fn forward(State(api): State<Upstream>, mut req: Request) -> Result<Response, StatusCode> {
//!     let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
//!     let uri = format!("http://api.internal{path}");
//!     *req.uri_mut() = uri.parse::<Uri>().map_err(|_| StatusCode::BAD_REQUEST)?;
//!     let res = api.oneshot(req).await.map_err(|_| StatusCode::BAD_GATEWAY)?;
//!     Ok(res.map(Body::new))
//! }
//!
//! let creds = ClientCredentials::simpledocs("id", "secret").scope("read write");
//! let layer = OAuthLayer::builder(creds)
//!     .replay_body(Body::new) // axum's body is recorded and replayed
//!     .build();
//! // Plain HTTP here; give it hyper-rustls's connector for HTTPS.
//! let upstream = Client::builder(TokioExecutor::new()).build_http::<Body>();
//! let app: Router = Router::new()
//!     .route("/{*path}", any(forward))
//!     .with_state(layer.layer(upstream));
//! // Serve `app` with `axum::serve` (axum's `tokio` feature) or hyper.
//! # let _ = app;
//! # }
//! # #[cfg(not(feature = "https"))]
//! # fn main() {}
//! ```
//!
//! # A `BoxCloneService` with a timeout and retries
//!
//! [`RetryTokenErrors`](crate::retry::RetryTokenErrors) retries what the layer could not
//! get a token for, after the layer's own retry budget; a timeout per attempt goes below
//! the retries, an overall one above them.
//!
//! ```no_run
//! # #[cfg(feature = "https")]
//! # fn main() {
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::{util::BoxCloneService, ServiceBuilder};
//! use tower_oauth::{retry::RetryTokenErrors, BoxError, ClientCredentials, OAuthLayer};
//!
//! let creds = ClientCredentials::simpledocs("id", "secret").scope("read");
//! let api: BoxCloneService<http::Request<Full<Bytes>>, _, BoxError> = BoxCloneService::new(
//!     ServiceBuilder::new()
//!         .timeout(Duration::from_secs(30)) // overall
//!         .retry(RetryTokenErrors::new().retries(3))
//!         .timeout(Duration::from_secs(10)) // per attempt
//!         .layer(OAuthLayer::new(creds))
//!         .service(tower_oauth::fetch::https_client()),
//! );
//! # let _ = api;
//! # }
//! # #[cfg(not(feature = "https"))]
//! # fn main() {}
//! ```
//!
//! # Tokens from the `oauth2` crate
//!
//! An `oauth2::basic::BasicClient` with its token URL set fetches the tokens
//! (`oauth2::fetcher`, feature `oauth2`); the layer does the rest.
//!
//! ```no_run
//! # #[cfg(feature = "oauth2")]
//! # fn main() -> Result<(), tower_oauth::BoxError> {
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use oauth2::{basic::BasicClient, ClientId, ClientSecret, TokenUrl};
//! use tower::ServiceBuilder;
//! use tower_oauth::{OAuthLayer, ScopePolicy};
//!
//! let client = BasicClient::new(ClientId::new("id".into()))
//!     .set_client_secret(ClientSecret::new("secret".into()))
//!     .set_token_uri(TokenUrl::new("http://127.0.0.1:8080/oauth/token".into())?);
//! let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let layer = OAuthLayer::with_fetcher(tower_oauth::oauth2::fetcher(client, http.clone()))
//!     .scope_policy(ScopePolicy::fixed(Some("read".into())))
//!     .build();
//! let api = ServiceBuilder::new().layer(layer).service(http);
//! # let _ = api;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "oauth2"))]
//! # fn main() {}
//! ```
