//! OAuth 2.0 client-credentials authentication for any [tower] HTTP client.
//!
//! [`OAuthLayer`] wraps a `tower::Service<http::Request<B>>` (a hyper-util client, a
//! tonic `Channel`, anything) and adds `Authorization: Bearer <token>` to every request.
//! Tokens come from the token endpoint by the client-credentials grant (RFC 6749 §4.4),
//! are cached until shortly before they expire, renewed in the background, and re-issued
//! when the API says a token was rejected, with the request replayed so that callers
//! never see an expiry.
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
//! let request = http::Request::get(format!("{base}/api/v1/workflows")).body(Full::default())?;
//! let response = api.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(())
//! # }
//! ```
//!
//! # Cache and renewal
//!
//! Each scope set has one cached token, held in an [`arc_swap`] cell: a request that finds
//! a usable token takes no lock; it clones the prebuilt header value (marked sensitive)
//! into the request. It allocates nothing on the layer's behalf but for three parts of
//! the request that the copy kept for a replay (on by default, see [`Builder::replay`])
//! clones rather than copies, each on every request that has it:
//!
//! - **extensions**, when the request carries any: cloning them allocates their map and
//!   a box per value (three allocations for one extension). tonic-generated clients put
//!   a `GrpcMethod` extension on every request;
//! - **a header value over 128 bytes**: its clone allocates once when the value was
//!   built at runtime (parsed, or from a `String` or `Vec`), not when it is `'static`;
//! - **a body over 512 bytes**: a `Full` whose bytes were built from a `Vec` allocates
//!   once likewise, and a `String` is cloned, which allocates (see [Body replay
//!   limits](#body-replay-limits)).
//!
//! With replay off none of these is cloned. A request without any header gets its header
//! map allocated by the `Authorization` insert, as it would by any first header.
//!
//! A clone of the service that keeps sending (16 requests with one token) makes its own
//! copy of the token's header value, so that clones on different threads do not write one
//! shared reference count on every request; a clone made for a single request never
//! copies. The token's phase moves on tokio timers (so tests can use
//! `tokio::time::pause`):
//!
//! - **fresh** until `renew_ahead` (default 60 s, at most half the lifetime) before it
//!   expires; then **renewal due**: the first request to see it starts a background
//!   fetch and every request keeps using the current token meanwhile;
//! - **expired** `expiry_margin` (default 5 s, at most a tenth of the lifetime) before
//!   the server's stated expiry; an expired token is never sent, requests wait for the
//!   new one. Renewal is never due later than that (a `renew_ahead` shorter than the
//!   margin renews at expiry). The timers run on the runtime that fetched the token; if
//!   it shuts down while the layer lives on, the token counts as expired and the next
//!   request, on whatever runtime, fetches a new one. A runtime that is kept but no
//!   longer driven (a current-thread runtime whose `block_on` has returned) runs no
//!   timers and no tasks. A fetch it was running never ends (its `fetch_timeout` is one
//!   of its timers), and requests on any runtime that wait for it wait until it has run
//!   longer, by the system clock, than a fetch can on a driven runtime (twice
//!   `retry_budget` plus `fetch_timeout`, plus a second) and a request on another
//!   runtime comes: that request gives it up and fetches on its own runtime, and the
//!   requests that waited get a retryable [`Timeout`](ErrorKind::Timeout) error (a
//!   timeout of their own bounds them sooner); the stranded fetch's token, if that
//!   runtime runs again, is not installed. A token whose timers it runs stays fresh past
//!   its expiry until the API rejects it (then it is re-issued as below). So fetch on a
//!   runtime that keeps running.
//!
//! Lifetimes count from when the token request was sent; a token already expired when
//! it arrives (the answer took longer than its lifetime, less the margin) is never
//! used: the attempt counts as a [`Timeout`](ErrorKind::Timeout) and is retried like
//! one. A response without
//! `expires_in`, or with zero, gets `default_lifetime` (300 s); larger values than
//! `max_lifetime` (24 h) are clamped. However many requests need a token at once, the
//! token endpoint sees one request (single flight). The fetch runs in its own task: a
//! request that is dropped while waiting (a timeout, a caller gone) does not cancel it
//! for the others. A Tokio runtime with its time driver is required (`enable_time`, or
//! `enable_all`: the fetch timeout and the token's phases are tokio timers; on a runtime
//! without it the fetch fails as [`Cancelled`](ErrorKind::Cancelled)). Budgets and
//! cooldowns are read by each caller's tokio clock: runtimes whose clocks are paused
//! (tests) should not share a layer with other runtimes.
//!
//! # Re-issue on rejection
//!
//! A response that says the token was rejected — SimpleDocs' 401 `token_expired` (or
//! `invalid_token`) problem document, an RFC 6750 `WWW-Authenticate: Bearer
//! error="invalid_token"` challenge, or gRPC `UNAUTHENTICATED` in a trailers-only
//! response (see [`classify`]) — marks that token unusable (only if it is still the
//! current one: a token already replaced is not fetched again), gets a new token and
//! replays the request once. If the replay is rejected too, that response goes to the
//! caller: there is no loop. A token that was itself fetched because of a rejection (or
//! that arrived while its predecessor stood rejected) is not replaced for another
//! rejection within `reissue_interval` (1 s), so a server that rejects every token costs
//! one token request per interval, not one per request.
//! 401 `invalid_client`, 403 `insufficient_scope` and every other response pass through
//! untouched, byte for byte; reading a 401 body to classify it is capped at
//! `inspect_limit` (4 KiB). A JSON 401 is held until its body ends or passes that limit,
//! so a server that keeps such a body open holds the response: a timeout outside the
//! layer bounds it.
//!
//! A replay goes to a clone of the inner service that the service keeps for the purpose.
//! If every clone of the service has been dropped by the time a rejection arrives (a
//! service made for one request and called with `oneshot`, as in the quick start), the
//! token is still marked rejected and renewed in the background, but the request cannot
//! be replayed: the caller gets the response as it came. To have such requests replayed
//! too, keep a service for the application and call a clone of it per request
//! (`svc.clone().oneshot(req)`).
//!
//! # Readiness and capacity
//!
//! `poll_ready` is the inner service's. What it reserves (a concurrency permit, a buffer
//! slot) goes with the request the caller then sends, as it would without the layer: a
//! request that finds no usable token holds it while it waits for one. So the token
//! fetcher must not need that capacity. Give [`HttpFetcher`](fetch::HttpFetcher) a client
//! of its own, not one behind the concurrency limit or buffer of the service the layer
//! wraps (the built-in client of `OAuthLayer::new` is its own): otherwise requests waiting
//! for a token can hold every permit the fetch needs, and it fails with a
//! [`Timeout`](ErrorKind::Timeout) after `fetch_timeout`. A replay is sent on a clone of
//! the service, polled ready anew: it needs a permit of its own (the rejected request has
//! given its back by then), so with a limit of one, a caller that keeps its service polled
//! ready for its next request holds the replay back until it sends that request.
//!
//! # Body replay limits
//!
//! Buffered bodies (`Full<Bytes>`, `Empty<Bytes>`, `String`) are kept for a replay: a
//! body of up to 512 bytes is copied into a buffer reused per thread (no allocation), a
//! larger `Full` body is cloned, which shares its bytes (and allocates their shared form
//! when they were built from a `Vec`); a larger `String` is cloned too, which allocates.
//! Streaming bodies (`BoxBody`, `UnsyncBoxBody`, `tonic::body::Body`) are recorded while
//! they are sent, up to `replay_limit` (64 KiB), until the response comes back: a body
//! that goes on sending after that keeps no copy. A body that had sent more than the
//! limit when the rejection arrived, or whose size hint says it will, is not
//! replayed: the token is still renewed and the caller gets the original 401. A boxed
//! body's error type must be able to hold a [`body::ReplayError`] (`BoxError` can;
//! `Infallible`, what `Full::new(b).boxed()` has, cannot): box such a body as
//! `body.map_err(BoxError::from).boxed()` and use a client of that body type. hyper's
//! `Incoming` (a proxy forwarding a request as it came) is accepted but never replayed;
//! boxed that way, it is. An `http_body_util::Either` of two of these is replayed as its
//! side is. See [`body`].
//!
//! # Errors and retry
//!
//! The service error is [`BoxError`]. Errors of the inner service pass through as they
//! are; a failure to get a token is an [`Error`] with an [`ErrorKind`] and
//! [`Error::is_retryable`], so a `tower::retry` policy outside the layer can decide.
//! Retryable fetch failures (transport, timeout, 5xx, 429) are retried inside the layer
//! with jittered exponential backoff (100 ms doubling to 2 s, honouring `Retry-After` up
//! to 60 s) while requests wait, within a `retry_budget` of 5 s; each attempt has its own
//! `fetch_timeout` of 10 s. Then, and at once for non-retryable failures such as
//! `invalid_client`, every waiting request gets the error, and requests arriving during
//! the following cooldown (the next backoff delay, at least `max_backoff` for
//! non-retryable errors) get it too without a new fetch. If a renewal fails while the
//! current token is still valid, the token stays in use: a retryable failure is retried
//! within the same budget, then again after a backoff delay in the background for as
//! long as the token lasts; a non-retryable one is not retried until a request needs a
//! new token. A renewal that falls due during a cooldown (or whose retry does) is made
//! when the cooldown ends. [`TokenHandle::force_refresh`] returns the error that ended the attempt.
//! A fetcher that panics counts as a failed fetch ([`ErrorKind::Cancelled`]).
//!
//! # Security defaults
//!
//! - [`ClientSecret`] and [`AccessToken`] redact themselves in `Debug` and `Display` and
//!   are wiped from memory on drop; errors and log events never contain them: text a
//!   server or client sends back is searched for the secret (and a token response's own
//!   token) as sent, in its encodings and in common escapes, and what matches is left
//!   out (a secret shorter than 4 characters is not searched for: it would match
//!   everywhere). The `Authorization` header is marked sensitive.
//! - The built-in fetcher refuses a plain `http://` token URL except on loopback, unless
//!   [`ClientCredentials::allow_insecure_http`] says otherwise, and never follows
//!   redirects.
//! - Token responses are capped at 64 KiB; tokens that are empty or hold characters that
//!   are not visible ASCII are refused.
//! - A request that already carries an `Authorization` header is left alone.
//!
//! # Feature flags
//!
//! - `https` (default): the built-in token client (hyper, hyper-util, rustls with the
//!   webpki roots), `OAuthLayer::new`, `OAuthLayer::builder` and
//!   `fetch::HttpFetcher::https`.
//! - `test-util`: the embedded mock SimpleDocs server, `mock`.
//! - `tonic`: replayable `tonic::body::Body` request bodies.
//!
//! # Observability
//!
//! `tracing` events: an `oauth.fetch` span per fetch, a root that follows from the span
//! of the request that started it (scope, reason: `first`,
//! `ahead_of_expiry`, `expired`, `rejected`, `forced`) with the outcome and duration of
//! each attempt (a failure with its kind and its cause: the chain of source errors) and
//! the backoff delays; an event per replay; a warning, once per token, when the API
//! rejects a token fetched moments ago for a rejection (not re-issued within
//! `reissue_interval`). Nothing is logged per request on the hot path. No secret or
//! token is ever recorded.
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
mod error;
pub mod fetch;
mod future;
mod handle;
mod layer;
#[cfg(feature = "test-util")]
pub mod mock;
mod pool;
mod replay;
mod scope;
mod service;
mod sync;
mod token;

pub use crate::{
    builder::Builder,
    cache::{TokenState, TokenStatus},
    credentials::{AuthMethod, ClientCredentials, ClientSecret, SIMPLEDOCS_TOKEN_URL},
    error::{BoxError, Error, ErrorKind},
    future::ResponseFuture,
    handle::TokenHandle,
    layer::OAuthLayer,
    scope::{RequestHead, ScopePolicy},
    service::OAuth,
    token::{AccessToken, FetchReason, Scope, Token, TokenRequest},
};
