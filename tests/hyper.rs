//! The layer around hyper-util's legacy client, over real loopback connections to the
//! embedded mock SimpleDocs server.

mod common;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use common::{body_of, bounded};
use http::{header, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{combinators::BoxBody, Full, StreamBody};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tower::{Layer, Service, ServiceExt};
use tower_oauth::{mock::MockServer, BoxError, ClientCredentials, OAuthLayer};

/// How long a scenario over loopback may take before it fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(30);

/// The client an application would use: rustls for `https://`, plain TCP for `http://`.
fn client<B>() -> Client<HttpsConnector<HttpConnector>, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    // No roots: the mock server is plain HTTP on loopback.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

fn layer(mock: &MockServer, scope: &str) -> OAuthLayer {
    OAuthLayer::new(
        ClientCredentials::new(&mock.token_url(), mock.client_id(), mock.client_secret())
            .scope(scope),
    )
}

fn get(mock: &MockServer) -> Request<Full<Bytes>> {
    Request::get(format!("{}/api/v1/workflows", mock.base_url()))
        .body(Full::default())
        .unwrap()
}

fn post<B>(mock: &MockServer, body: B) -> Request<B> {
    Request::post(format!("{}/api/v1/documents", mock.base_url()))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .unwrap()
}

/// A streaming body of `chunks`, with no length known in advance (sent chunked).
fn streaming(chunks: Vec<Bytes>) -> BoxBody<Bytes, BoxError> {
    let frames = tokio_stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, BoxError>(Frame::data(c))),
    );
    BoxBody::new(StreamBody::new(frames))
}

/// A document of `len` bytes, distinct for each `seed`.
fn document(seed: u8, len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test]
async fn gets_through_a_hyper_client_share_one_token() {
    let mock = MockServer::start().await.unwrap();
    let layer = layer(&mock, "read write");
    let svc = layer.layer(client::<Full<Bytes>>());

    bounded(LIMIT, async {
        for _ in 0..3 {
            let res = svc.clone().oneshot(get(&mock)).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert!(String::from_utf8_lossy(&body_of(res).await).contains("Onboarding"));
        }
        let concurrent = (0..10).map(|_| svc.clone().oneshot(get(&mock)));
        for res in futures_util::future::join_all(concurrent).await {
            assert_eq!(res.unwrap().status(), StatusCode::OK);
        }
    })
    .await;

    let stats = mock.stats();
    assert_eq!(stats.tokens_issued, 1);
    assert_eq!(stats.token_requests, 1);
    assert_eq!((stats.api_requests, stats.api_ok), (13, 13));
    assert_eq!(layer.handle().fetches(), 1);
}

#[tokio::test]
async fn after_revocation_buffered_and_streaming_posts_are_replayed_byte_for_byte_with_one_new_token(
) {
    let mock = MockServer::start().await.unwrap();
    let layer = layer(&mock, "read write");
    // Two clients, one per body type, behind one layer: one token cache.
    let buffered = layer.layer(client::<Full<Bytes>>());
    let streamed = layer.layer(client::<BoxBody<Bytes, BoxError>>());

    let res = bounded(LIMIT, buffered.clone().oneshot(get(&mock)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(mock.stats().tokens_issued, 1);
    mock.revoke_all();

    let full_docs: Vec<Bytes> = (0..3).map(|i| document(i, 1000 << (2 * i))).collect();
    let stream_docs: Vec<Vec<Bytes>> = (0..3)
        .map(|i| {
            (0..5)
                .map(|c| document(100 + i * 10 + c, 777 * (c as usize + 1)))
                .collect()
        })
        .collect();

    let full_calls = full_docs.iter().map(|doc| {
        let svc = buffered.clone();
        let req = post(&mock, Full::new(doc.clone()));
        async move { svc.oneshot(req).await }
    });
    let stream_calls = stream_docs.iter().map(|chunks| {
        let svc = streamed.clone();
        let req = post(&mock, streaming(chunks.clone()));
        async move { svc.oneshot(req).await }
    });
    let (full_results, stream_results) = bounded(LIMIT, async {
        tokio::join!(
            futures_util::future::join_all(full_calls),
            futures_util::future::join_all(stream_calls)
        )
    })
    .await;

    for res in full_results {
        let res = res.expect("a buffered post failed");
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    for res in stream_results {
        let res = res.expect("a streaming post failed");
        assert_eq!(res.status(), StatusCode::CREATED);
    }

    let mut sent: Vec<Bytes> = full_docs;
    sent.extend(stream_docs.iter().map(|chunks| chunks.concat().into()));
    let mut received = mock.received_documents();
    assert_eq!(
        received.len(),
        sent.len(),
        "each document accepted exactly once"
    );
    sent.sort();
    received.sort();
    assert_eq!(received, sent, "the documents arrived byte for byte");

    let stats = mock.stats();
    assert_eq!(stats.tokens_issued, 2, "exactly one token re-issued");
    // All six were sent with the revoked token in the join's first poll, before any
    // answer could arrive: each was rejected once and replayed once.
    assert_eq!(stats.api_token_expired, 6);
    assert_eq!(stats.api_ok, 1 + 6);
    assert_eq!(stats.api_requests, 1 + 6 + 6);
    assert_eq!(layer.handle().fetches(), 2);
}

#[tokio::test]
async fn insufficient_scope_passes_through_untouched_without_a_new_token_or_a_replay() {
    let mock = MockServer::start().await.unwrap();
    let layer = layer(&mock, "read");
    let svc = layer.layer(client::<Full<Bytes>>());
    let doc = document(7, 4096);

    let res = bounded(LIMIT, svc.clone().oneshot(get(&mock)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let before = mock.stats();
    assert_eq!(before.tokens_issued, 1);

    let res = bounded(LIMIT, svc.oneshot(post(&mock, Full::new(doc.clone()))))
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = body_of(res).await;

    let after = mock.stats();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(after.tokens_issued, before.tokens_issued, "no re-issue");
    assert_eq!(after.token_requests, before.token_requests);
    assert_eq!(after.api_requests, before.api_requests + 1, "no replay");
    assert_eq!(after.api_insufficient_scope, 1);
    assert!(mock.received_documents().is_empty());
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["type"], "insufficient_scope");

    // What the mock answers a client without the layer, holding a `read` token.
    let token = direct_token(&mock, "read").await;
    let mut direct = post(&mock, Full::new(doc));
    direct.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    let expected = bounded(LIMIT, client::<Full<Bytes>>().oneshot(direct))
        .await
        .unwrap();
    assert_eq!(status, expected.status());
    for name in [
        header::CONTENT_TYPE,
        header::WWW_AUTHENTICATE,
        header::CONTENT_LENGTH,
    ] {
        assert_eq!(headers.get(&name), expected.headers().get(&name), "{name}");
    }
    assert_eq!(
        body,
        body_of(expected).await,
        "the body passed through byte for byte"
    );
}

/// A token obtained straight from the mock's token endpoint, without the layer.
async fn direct_token(mock: &MockServer, scope: &str) -> String {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", mock.client_id())
        .append_pair("client_secret", mock.client_secret())
        .append_pair("scope", scope)
        .finish();
    let req = Request::builder()
        .method(Method::POST)
        .uri(mock.token_url())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .unwrap();
    let mut client = client::<Full<Bytes>>();
    let res: Response<Incoming> = bounded(LIMIT, client.ready().await.unwrap().call(req))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let token: serde_json::Value = serde_json::from_slice(&body_of(res).await).unwrap();
    token["access_token"].as_str().unwrap().to_owned()
}
