//! `reqwest::Client` as a tower service of `http` requests and responses.

use std::{
    any::Any,
    fmt,
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::error::BoxError;

/// A `reqwest::Client` as a `tower::Service<http::Request<B>>`, for
/// [`OAuthLayer`](crate::OAuthLayer) to wrap.
///
/// Any request body of `Data = Bytes` is accepted (`Full<Bytes>`, `String`,
/// `reqwest::Body`, ...). A `reqwest::Body` is passed on as it is; any other body is
/// wrapped with `reqwest::Body::wrap`, which reqwest cannot clone, so it never resends it
/// on a 307 or 308 redirect. Responses are `http::Response<reqwest::Body>`; errors are the
/// `reqwest::Error`, boxed. The layer replays `reqwest::Body` requests when its builder
/// registers them, as [`builder`](super::builder) does.
///
/// ```
/// use tower::{Layer, ServiceExt};
/// use tower_oauth::{reqwest::ReqwestService, OAuthLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_oauth::BoxError> {
/// # let mock = tower_oauth::mock::MockServer::start().await?;
/// # let creds = tower_oauth::ClientCredentials::new(
/// #     &mock.token_url(), mock.client_id(), mock.client_secret()).scope("read");
/// let client = reqwest::Client::new();
/// let layer = tower_oauth::reqwest::builder(client.clone(), creds).build();
/// let api = layer.layer(ReqwestService::new(client));
/// let req = http::Request::get(format!("{}/api/v1/workflows", mock.base_url())).body(String::new())?;
/// assert_eq!(api.oneshot(req).await?.status(), 200);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ReqwestService {
    client: ::reqwest::Client,
    /// Fail a response that came from another URL than the request's (a redirect the
    /// client followed): for the token client, whose form must go nowhere else.
    refuse_redirects: bool,
}

impl fmt::Debug for ReqwestService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReqwestService")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl ReqwestService {
    /// Wraps `client`; clones of the service share its connection pool.
    pub fn new(client: ::reqwest::Client) -> Self {
        Self {
            client,
            refuse_redirects: false,
        }
    }

    /// Fails responses that came from a redirect the client followed.
    pub(crate) fn refusing_redirects(mut self) -> Self {
        self.refuse_redirects = true;
        self
    }

    /// The wrapped client.
    pub fn get_ref(&self) -> &::reqwest::Client {
        &self.client
    }

    /// Unwraps the client.
    pub fn into_inner(self) -> ::reqwest::Client {
        self.client
    }
}

impl From<::reqwest::Client> for ReqwestService {
    fn from(client: ::reqwest::Client) -> Self {
        Self::new(client)
    }
}

/// The body as reqwest takes it: a `reqwest::Body` as it is (so it stays cloneable when
/// it was), anything else wrapped.
fn reqwest_body<B>(body: B) -> ::reqwest::Body
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let mut body = Some(body);
    if let Some(own) = (&mut body as &mut dyn Any).downcast_mut::<Option<::reqwest::Body>>() {
        if let Some(own) = own.take() {
            return own;
        }
    }
    match body {
        Some(body) => ::reqwest::Body::wrap(body),
        None => ::reqwest::Body::from(Bytes::new()),
    }
}

impl<B> Service<Request<B>> for ReqwestService
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<::reqwest::Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // A reqwest client is always ready: its pool queues internally.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        let req = match ::reqwest::Request::try_from(req.map(reqwest_body)) {
            Ok(req) => req,
            Err(error) => {
                return ResponseFuture {
                    state: State::Invalid { error: Some(error) },
                }
            }
        };
        let sent_to = self.refuse_redirects.then(|| req.url().clone());
        ResponseFuture {
            state: State::Sent {
                fut: self.client.call(req),
                sent_to,
            },
        }
    }
}

type Pending = <::reqwest::Client as Service<::reqwest::Request>>::Future;

pin_project! {
    /// The response future of [`ReqwestService`].
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        // The `http::Request` did not convert (a URI reqwest does not take).
        Invalid { error: Option<::reqwest::Error> },
        Sent { #[pin] fut: Pending, sent_to: Option<::reqwest::Url> },
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<::reqwest::Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Invalid { error } => {
                let error = error.take().expect("polled after completion");
                Poll::Ready(Err(error.into()))
            }
            StateProj::Sent { fut, sent_to } => {
                let res = ready!(fut.poll(cx))?;
                if let Some(sent_to) = sent_to.as_ref().filter(|url| *url != res.url()) {
                    // Only the origin: the path or query could hold what the request sent.
                    return Poll::Ready(Err(format!(
                        "the client followed a redirect from {} to {}",
                        sent_to.origin().ascii_serialization(),
                        res.url().origin().ascii_serialization()
                    )
                    .into()));
                }
                Poll::Ready(Ok(res.into()))
            }
        }
    }
}
