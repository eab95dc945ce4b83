//! A token fetcher on the `oauth2` crate (feature `oauth2`): its
//! client-credentials exchange, over any HTTP client service.
//!
//! [`fetcher`] takes an oauth2 [`BasicClient`] with its
//! token URL set ([`TokenClient`]) and the HTTP client service to send requests with: a
//! [`ReqwestService`](crate::reqwest::ReqwestService), a hyper-util client, any
//! `Service<http::Request<Full<Bytes>>>`. oauth2's own reqwest support is not needed, so
//! no second reqwest is built.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use oauth2::{basic::BasicClient, ClientId, ClientSecret, TokenUrl};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_oauth::{OAuthLayer, ScopePolicy};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_oauth::BoxError> {
//! # let mock = tower_oauth::mock::MockServer::start().await?;
//! # let (token_url, id, secret) =
//! #     (mock.token_url(), mock.client_id().to_owned(), mock.client_secret().to_owned());
//! # let url = format!("{}/api/v1/workflows", mock.base_url());
//! let client = BasicClient::new(ClientId::new(id))
//!     .set_client_secret(ClientSecret::new(secret))
//!     .set_token_uri(TokenUrl::new(token_url)?);
//! let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//!
//! let layer = OAuthLayer::with_fetcher(tower_oauth::oauth2::fetcher(client, http.clone()))
//!     .scope_policy(ScopePolicy::fixed(Some("read".into())))
//!     .build();
//! let api = ServiceBuilder::new().layer(layer).service(http);
//! let res = api.oneshot(http::Request::get(url).body(Full::default())?).await?;
//! assert_eq!(res.status(), 200);
//! # Ok(())
//! # }
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use ::oauth2::{
    basic::{BasicClient, BasicErrorResponse, BasicTokenResponse},
    EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, RequestTokenError, TokenResponse,
};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use tower::ServiceExt;
use tower_service::Service;

use crate::{
    error::{BoxError, Error, ErrorKind},
    fetch::{parse_token_response, MAX_TOKEN_RESPONSE_BYTES},
    token::{Scope, Token, TokenRequest},
};

/// An oauth2 [`BasicClient`] with its token URL set, as
/// `BasicClient::new(id).set_token_uri(url)` makes it.
pub type TokenClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// A fetcher that gets tokens by `client`'s client-credentials exchange, sent over `http`.
///
/// Each [`TokenRequest`]'s scope is asked for as oauth2 scopes (none when it has none);
/// the answer's `expires_in` and `scope` become the [`Token`]'s.
pub fn fetcher<C>(client: TokenClient, http: C) -> Fetcher<C> {
    Fetcher {
        client: Arc::new(client),
        http,
    }
}

/// A `Service<TokenRequest, Response = Token>` on oauth2's client-credentials exchange;
/// made by [`fetcher`].
///
/// # Errors
///
/// - The server's OAuth error code: `invalid_client` is [`ErrorKind::InvalidClient`],
///   `invalid_scope` [`ErrorKind::InvalidScope`], `unauthorized_client`
///   [`ErrorKind::UnauthorizedClient`], any other [`ErrorKind::OAuth`] with the code.
/// - An error status whose body oauth2 cannot read (a problem document, an HTML page):
///   read as [`parse_token_response`] reads it, so retryable by its status.
/// - A success that is not a token response: [`ErrorKind::MalformedResponse`].
/// - The HTTP client's errors: [`ErrorKind::Transport`] (retryable), or
///   [`ErrorKind::Timeout`] for a tokio or tower `Elapsed`.
#[derive(Clone)]
pub struct Fetcher<C> {
    client: Arc<TokenClient>,
    http: C,
}

impl<C> fmt::Debug for Fetcher<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // oauth2's client redacts its secret in `Debug`; the token URL is enough here.
        f.debug_struct("Fetcher")
            .field("token_url", &self.client.token_uri().as_str())
            .finish_non_exhaustive()
    }
}

impl<C, ResB> Service<TokenRequest> for Fetcher<C>
where
    C: Service<Request<Full<Bytes>>, Response = Response<ResB>> + Clone + Send + Sync + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Into<BoxError>,
{
    type Response = Token;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Token, Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // The client's readiness is awaited in the call: fetches are rare and cold.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: TokenRequest) -> Self::Future {
        let client = self.client.clone();
        let http = self.http.clone();
        Box::pin(async move {
            // oauth2 keeps only the error code of an error response; the response itself
            // is kept here, so its status and `Retry-After` still count.
            let failed: Arc<Mutex<Option<Failed>>> = Arc::default();
            let send = {
                let failed = failed.clone();
                move |req: HttpRequest| send(http.clone(), req, failed.clone())
            };
            let scopes = request
                .scope
                .iter()
                .flat_map(Scope::iter)
                .map(|s| ::oauth2::Scope::new(s.to_owned()));
            let answer = client
                .exchange_client_credentials()
                .add_scopes(scopes)
                .request_async(&send)
                .await;
            let failed = failed.lock().ok().and_then(|mut f| f.take());
            answer.map(token).map_err(|e| error(e, failed))
        })
    }
}

/// The token of an oauth2 answer.
fn token(answer: BasicTokenResponse) -> Token {
    // No lifetime, or zero, is "not said": the layer's default lifetime applies.
    let lifetime = answer.expires_in().filter(|d| !d.is_zero());
    let mut token = Token::new(answer.access_token().secret().as_str(), lifetime);
    if let Some(scopes) = answer.scopes() {
        let granted: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        token = token.with_scope(Scope::new(&granted.join(" ")));
    }
    token
}

/// An error response, as it came.
struct Failed {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// Sends one oauth2 request over `http`, keeping an error response in `failed`.
async fn send<C, ResB>(
    http: C,
    req: HttpRequest,
    failed: Arc<Mutex<Option<Failed>>>,
) -> Result<HttpResponse, HttpError>
where
    C: Service<Request<Full<Bytes>>, Response = Response<ResB>>,
    C::Error: Into<BoxError>,
    ResB: Body,
    ResB::Error: Into<BoxError>,
{
    let req = req.map(|body| Full::new(Bytes::from(body)));
    let res = http.oneshot(req).await.map_err(|e| HttpError(e.into()))?;
    let (parts, body) = res.into_parts();
    let body = match Limited::new(body, MAX_TOKEN_RESPONSE_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(HttpError(Box::new(
                Error::new(ErrorKind::MalformedResponse)
                    .with_status(parts.status)
                    .with_source("token response body exceeds 64 KiB"),
            )))
        }
        Err(e) => return Err(HttpError(e)),
    };
    if !parts.status.is_success() {
        if let Ok(mut slot) = failed.lock() {
            *slot = Some(Failed {
                status: parts.status,
                headers: parts.headers.clone(),
                body: body.clone(),
            });
        }
    }
    Ok(Response::from_parts(parts, body.to_vec()))
}

/// The crate's error for an oauth2 one.
fn error(err: RequestTokenError<HttpError, BasicErrorResponse>, failed: Option<Failed>) -> Error {
    match err {
        RequestTokenError::Request(HttpError(e)) => Error::from_fetcher(e),
        RequestTokenError::ServerResponse(response) => {
            let code = response.error().as_ref();
            let kind = match code {
                "invalid_client" => ErrorKind::InvalidClient,
                "invalid_scope" => ErrorKind::InvalidScope,
                "unauthorized_client" => ErrorKind::UnauthorizedClient,
                _ => ErrorKind::OAuth,
            };
            let err = Error::new(kind).with_oauth_error(code);
            match failed {
                // The status and `Retry-After` as the crate's own parser reads them.
                Some(f) => match parse_token_response(f.status, &f.headers, &f.body) {
                    Err(parsed) if parsed.kind() == kind => parsed,
                    _ => err.with_status(f.status),
                },
                None => err,
            }
        }
        // oauth2 reads only RFC 6749 error documents; problem documents, HTML pages and
        // empty bodies are read as the built-in fetcher reads them.
        RequestTokenError::Parse(..) | RequestTokenError::Other(_) if failed.is_some() => {
            let f = failed.expect("checked");
            match parse_token_response(f.status, &f.headers, &f.body) {
                Err(e) => e,
                Ok(_) => Error::new(ErrorKind::HttpStatus).with_status(f.status),
            }
        }
        RequestTokenError::Parse(e, _) => {
            Error::new(ErrorKind::MalformedResponse).with_source(e.into_inner())
        }
        RequestTokenError::Other(detail) => {
            Error::new(ErrorKind::MalformedResponse).with_source(detail)
        }
    }
}

/// The HTTP client's error, as oauth2 needs it: a `std::error::Error`.
#[derive(Debug)]
struct HttpError(BoxError);

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
