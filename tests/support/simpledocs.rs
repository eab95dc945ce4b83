//! The embedded mock SimpleDocs server as the replay tests use it: a layer with the
//! `write` scope, a plain-HTTP hyper-util client, document uploads, and a guard against
//! hanging.
#![allow(dead_code, unreachable_pub)]

use std::{future::Future, time::Duration};

use bytes::Bytes;
use http::{header, Request, StatusCode};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tower_oauth::{mock::MockServer, ClientCredentials, OAuthLayer};

/// The body sizes the upload tests send: one kept as a copy, one kept as a clone.
pub const SIZES: [usize; 2] = [300, 4 * 1024];

/// Fails the test instead of hanging it.
pub async fn guard<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("the test scenario did not finish")
}

/// The mock's client credentials, asking for the `write` scope that uploads need.
pub fn credentials(mock: &MockServer) -> ClientCredentials {
    ClientCredentials::new(&mock.token_url(), mock.client_id(), mock.client_secret()).scope("write")
}

/// A layer fetching from the mock with the built-in client.
pub fn layer(mock: &MockServer) -> OAuthLayer {
    OAuthLayer::builder(credentials(mock)).build()
}

/// A mock server and a layer whose first token was fetched and then revoked: the next
/// request is rejected with `token_expired`.
pub async fn revoked() -> (MockServer, OAuthLayer) {
    let mock = MockServer::start().await.unwrap();
    let layer = layer(&mock);
    guard(layer.handle().warm_up()).await.unwrap();
    mock.revoke_all();
    (mock, layer)
}

/// A plain-HTTP hyper-util client for bodies of type `B`.
pub fn http<B>() -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new()).build_http()
}

/// An upload to `POST /api/v1/documents`.
pub fn post<B>(mock: &MockServer, body: B) -> Request<B> {
    Request::post(format!("{}/api/v1/documents", mock.base_url()))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .unwrap()
}

/// A document of `len` bytes, distinct for each `seed`.
pub fn document(seed: u8, len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

/// The mock accepted exactly `sent` (in any order), after one new token.
pub fn assert_accepted_with_one_new_token(mock: &MockServer, layer: &OAuthLayer, sent: &[Bytes]) {
    let mut received = mock.received_documents();
    let mut sent = sent.to_vec();
    received.sort();
    sent.sort();
    assert!(received == sent, "the API received other bodies than sent");
    let stats = mock.stats();
    assert_eq!(
        stats.tokens_issued, 2,
        "one token, then exactly one new one"
    );
    assert_eq!(layer.handle().fetches(), 2);
    assert!(stats.api_token_expired >= 1, "the revoked token was sent");
}

/// What the mock answers a successful upload.
pub const UPLOADED: StatusCode = StatusCode::CREATED;
