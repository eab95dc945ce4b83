//! The standard fetcher: a client-credentials form POST over an HTTP client service.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use tower::ServiceExt;
use tower_service::Service;

use super::parse::{parse_token_response, MAX_TOKEN_RESPONSE_BYTES};
use crate::{
    credentials::ClientCredentials,
    error::{BoxError, Error, ErrorKind},
    token::{Token, TokenRequest},
};

/// Fetches tokens with the client-credentials grant over an HTTP client service `C`.
///
/// The request is a `POST` of `application/x-www-form-urlencoded` to the token URL,
/// authenticated as [`ClientCredentials::auth_method`] says, asking for the
/// [`TokenRequest`]'s scope. The response is read up to
/// [`MAX_TOKEN_RESPONSE_BYTES`] and parsed by
/// [`parse_token_response`](super::parse_token_response). Redirects are never followed
/// (a 3xx is an [`ErrorKind::HttpStatus`] error), and a plain-HTTP token URL is refused
/// unless it is on loopback or explicitly allowed.
pub struct HttpFetcher<C> {
    client: C,
    creds: Arc<ClientCredentials>,
}

impl<C: Clone> Clone for HttpFetcher<C> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            creds: self.creds.clone(),
        }
    }
}

impl<C> fmt::Debug for HttpFetcher<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpFetcher")
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }
}

impl<C> HttpFetcher<C> {
    /// A fetcher over an HTTP client service the application already has.
    pub fn new(client: C, creds: ClientCredentials) -> Self {
        Self {
            client,
            creds: Arc::new(creds),
        }
    }

    /// The credentials it uses.
    pub fn credentials(&self) -> &ClientCredentials {
        &self.creds
    }
}

#[cfg(feature = "https")]
impl HttpFetcher<super::HttpsClient> {
    /// A fetcher over the built-in HTTPS client.
    pub fn https(creds: ClientCredentials) -> Self {
        Self::new(super::https_client(), creds)
    }
}

impl<C, ResB> Service<TokenRequest> for HttpFetcher<C>
where
    C: Service<Request<Full<Bytes>>, Response = Response<ResB>> + Clone + Send + 'static,
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
        // Readiness of the client is awaited in the call: fetches are rare and cold.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: TokenRequest) -> Self::Future {
        let client = self.client.clone();
        let creds = self.creds.clone();
        Box::pin(async move {
            creds.check_transport()?;
            let body = creds.form_body(request.scope.as_ref());
            let mut req = Request::builder()
                .method(Method::POST)
                .uri(creds.token_url().clone())
                .header(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                )
                .header(header::ACCEPT, HeaderValue::from_static("application/json"))
                .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
                .map_err(|e| Error::with_source(ErrorKind::Config, e))?;
            if let Some(basic) = creds.basic_authorization() {
                req.headers_mut().insert(header::AUTHORIZATION, basic);
            }
            let response = client
                .oneshot(req)
                .await
                .map_err(|e| Error::with_source(ErrorKind::Transport, e))?;
            let (parts, body) = response.into_parts();
            if let Some(len) = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
            {
                if len > MAX_TOKEN_RESPONSE_BYTES as u64 {
                    return Err(too_large(parts.status));
                }
            }
            let bytes = match Limited::new(body, MAX_TOKEN_RESPONSE_BYTES).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Err(too_large(parts.status))
                }
                Err(e) => return Err(Error::with_source(ErrorKind::Transport, e)),
            };
            parse_token_response(parts.status, &parts.headers, &bytes).map_err(|err| {
                // A server may echo what it was sent in its error description; keep the
                // secret out of the error (and so out of logs).
                match scrub(&bytes, creds.client_secret().expose()) {
                    Some(clean) => parse_token_response(parts.status, &parts.headers, &clean)
                        .err()
                        .unwrap_or(err),
                    None => err,
                }
            })
        })
    }
}

/// `body` with every occurrence of `secret` replaced, if there is any.
fn scrub(body: &[u8], secret: &str) -> Option<Vec<u8>> {
    let secret = secret.as_bytes();
    if secret.len() < 4 || !body.windows(secret.len()).any(|w| w == secret) {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(secret) {
            out.extend_from_slice(b"<redacted>");
            i += secret.len();
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    Some(out)
}

fn too_large(status: http::StatusCode) -> Error {
    let kind = if status.is_success() {
        ErrorKind::MalformedResponse
    } else {
        ErrorKind::HttpStatus
    };
    Error::builder(kind)
        .status(status)
        .retryable(status.is_server_error())
        .detail("token response body exceeds 64 KiB")
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_every_occurrence_of_the_secret() {
        let body = br#"{"error":"invalid_client","error_description":"s3cr3t is not s3cr3t"}"#;
        let clean = scrub(body, "s3cr3t").unwrap();
        let err = parse_token_response(http::StatusCode::UNAUTHORIZED, &Default::default(), &clean)
            .unwrap_err();
        assert!(!format!("{err} {err:?}").contains("s3cr3t"));
        assert!(err.to_string().contains("<redacted> is not <redacted>"));
        assert!(scrub(b"nothing here", "s3cr3t").is_none());
    }
}
