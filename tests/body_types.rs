//! The layer takes the request body types applications have: axum's and reqwest's
//! bodies, `Limited`, and a `BoxBody` whose error is `Infallible` (what
//! `Full::new(b).boxed()` gives). Each goes through the layer over an inner service of that
//! body type, against the mock SimpleDocs server; after a rejected token, the request gets
//! an answer and at most one new token is fetched, and the types that can be replayed
//! (a boxed `Full`, or a type registered with `OAuthLayerBuilder::replay_body`) are.

#[path = "support/simpledocs.rs"]
mod simpledocs;

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use simpledocs::{
    assert_accepted_with_one_new_token, credentials, document, guard, http, layer, post, UPLOADED,
};
use tower::{Layer, Service, ServiceExt};
use tower_oauth::{mock::MockServer, BoxError, OAuthLayer};

/// An inner service for requests of any body type `B`: it reads the body to its end and
/// forwards the request with the bytes as a `Full<Bytes>` through a hyper-util client.
#[derive(Clone)]
struct Forward {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Forward {
    fn new() -> Self {
        Self {
            client: http::<Full<Bytes>>(),
        }
    }
}

impl<B> Service<Request<B>> for Forward
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.map_err(Into::into)?.to_bytes();
            let res = client
                .request(Request::from_parts(parts, Full::new(bytes)))
                .await?;
            Ok(res)
        })
    }
}

/// Sends `req` through `svc` and returns the status it got. The tests send each request
/// on a clone of a service they keep, so that only the body type is under test.
async fn status<S, B, R>(svc: S, req: Request<B>) -> StatusCode
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: fmt::Debug,
{
    guard(svc.oneshot(req)).await.unwrap().status()
}

/// With a fresh token the upload is accepted; after a revocation it gets an answer, the
/// upload accepted (replayed) or the 401 as it came, and at most one new token.
async fn accepted_then_answered<S, B, R>(mock: &MockServer, api: &S, body: fn(Bytes) -> B)
where
    S: Service<Request<B>, Response = Response<R>> + Clone,
    S::Error: fmt::Debug,
{
    let first = document(1, 300);
    assert_eq!(
        status(api.clone(), post(mock, body(first.clone()))).await,
        UPLOADED
    );
    assert_eq!(mock.received_documents(), std::slice::from_ref(&first));
    assert_eq!(mock.stats().tokens_issued, 1);

    mock.revoke_all();
    let second = document(2, 300);
    match status(api.clone(), post(mock, body(second.clone()))).await {
        UPLOADED => assert_eq!(mock.received_documents(), [first, second]),
        StatusCode::UNAUTHORIZED => assert_eq!(mock.received_documents(), [first]),
        other => panic!("neither replayed nor passed through: {other}"),
    }
    assert!(mock.stats().tokens_issued <= 2, "at most one new token");
}

/// With a fresh token the upload is accepted; after a revocation too, replayed after
/// exactly one new token.
async fn accepted_then_replayed<S, B, R>(
    mock: &MockServer,
    layer: &OAuthLayer,
    api: &S,
    body: fn(Bytes) -> B,
) where
    S: Service<Request<B>, Response = Response<R>> + Clone,
    S::Error: fmt::Debug,
{
    let first = document(1, 300);
    assert_eq!(
        status(api.clone(), post(mock, body(first.clone()))).await,
        UPLOADED
    );
    assert_eq!(mock.stats().tokens_issued, 1);

    mock.revoke_all();
    let second = document(2, 4 * 1024);
    assert_eq!(
        status(api.clone(), post(mock, body(second.clone()))).await,
        UPLOADED
    );
    assert_accepted_with_one_new_token(mock, layer, &[first, second]);
}

#[tokio::test]
async fn an_axum_body_goes_through_the_layer() {
    let mock = MockServer::start().await.unwrap();
    let api = layer(&mock).layer(Forward::new());
    accepted_then_answered(&mock, &api, axum::body::Body::from).await;
}

#[tokio::test]
async fn a_reqwest_body_goes_through_the_layer() {
    let mock = MockServer::start().await.unwrap();
    let api = layer(&mock).layer(Forward::new());
    accepted_then_answered(&mock, &api, reqwest::Body::from).await;
}

#[tokio::test]
async fn a_limited_full_body_goes_through_the_layer() {
    let mock = MockServer::start().await.unwrap();
    let api = layer(&mock).layer(Forward::new());
    accepted_then_answered(&mock, &api, |b| Limited::new(Full::new(b), 1 << 20)).await;
}

#[tokio::test]
async fn a_boxed_full_body_with_an_infallible_error_is_replayed() {
    let mock = MockServer::start().await.unwrap();
    let layer = layer(&mock);
    let api = layer.layer(Forward::new());
    let boxed: fn(Bytes) -> BoxBody<Bytes, Infallible> = |b| Full::new(b).boxed();
    accepted_then_replayed(&mock, &layer, &api, boxed).await;
}

#[tokio::test]
async fn an_axum_body_registered_on_the_builder_is_replayed() {
    let mock = MockServer::start().await.unwrap();
    let layer = OAuthLayer::builder(credentials(&mock))
        .replay_body::<axum::body::Body>(axum::body::Body::new)
        .build();
    let api = layer.layer(Forward::new());
    accepted_then_replayed(&mock, &layer, &api, axum::body::Body::from).await;
}

#[tokio::test]
async fn a_reqwest_body_registered_on_the_builder_is_replayed() {
    let mock = MockServer::start().await.unwrap();
    let layer = OAuthLayer::builder(credentials(&mock))
        .replay_body::<reqwest::Body>(reqwest::Body::wrap)
        .build();
    let api = layer.layer(Forward::new());
    accepted_then_replayed(&mock, &layer, &api, reqwest::Body::from).await;
}
