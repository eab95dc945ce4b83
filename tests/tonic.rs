//! The layer in front of a tonic `Channel`, against a real tonic server on 127.0.0.1.
//!
//! The server (`support/grpc.rs`) answers `UNAUTHENTICATED` to revoked tokens as a
//! trailers-only response, which the standard classifier treats as a rejected token:
//! the layer renews the token once and replays the call, client streams included.

mod common;
#[path = "support/grpc.rs"]
mod grpc;

use std::time::Duration;

use bytes::Bytes;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{transport::Channel, Code};
use tower::{ServiceBuilder, ServiceExt};
use tower_oauth::{OAuth, OAuthLayer, OAuthLayerBuilder, Token, TokenHandle};

use common::{bounded, Fetcher};
use grpc::{Chunk, DocsClient, DocsServer, Seen, UploadSummary};

/// Every test is over within this, or fails.
const LIMIT: Duration = Duration::from_secs(20);

struct Setup {
    server: DocsServer,
    fetcher: Fetcher,
    handle: TokenHandle,
    client: DocsClient<OAuth<Channel>>,
}

/// A server, a counting fetcher whose tokens the server accepts, and a client over a
/// `Channel` behind the layer (adjusted by `settings`).
async fn setup(
    fetch_delay: Duration,
    settings: impl FnOnce(OAuthLayerBuilder) -> OAuthLayerBuilder,
) -> Setup {
    let server = DocsServer::default();
    let addr = server.spawn().await;
    let fetcher = Fetcher::tokens(Duration::from_secs(3600), fetch_delay);
    let issuer = server.clone();
    let issuing = fetcher.clone().map_response(move |token: Token| {
        issuer.accept(token.access_token.secret());
        token
    });
    let layer = settings(OAuthLayer::with_fetcher(issuing)).build();
    let handle = layer.handle();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid endpoint")
        .connect()
        .await
        .expect("connect to the test server");
    let client = DocsClient::new(ServiceBuilder::new().layer(layer).service(channel));
    Setup {
        server,
        fetcher,
        handle,
        client,
    }
}

/// `n` messages of 1 KiB, each with different bytes.
fn chunks(n: usize) -> Vec<Chunk> {
    (0..n)
        .map(|i| Chunk {
            data: (0..1024).map(|j| (i * 7 + j * 13) as u8).collect::<Bytes>(),
        })
        .collect()
}

#[tokio::test]
async fn a_unary_call_carries_a_bearer_token_from_one_fetch() {
    bounded(LIMIT, async {
        let mut s = setup(Duration::ZERO, |b| b).await;

        let doc = s.client.get("a").await.expect("the first call succeeds");
        assert_eq!((doc.id.as_str(), doc.title.as_str()), ("a", "Document a"));
        let doc = s.client.get("b").await.expect("the second call succeeds");
        assert_eq!(doc.id, "b");

        assert_eq!(s.fetcher.calls(), 1);
        assert_eq!(s.handle.fetches(), 1);
        assert_eq!(
            s.server.log(),
            [
                Seen::new("Get", "tok-1", true),
                Seen::new("Get", "tok-1", true)
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn many_concurrent_unary_calls_on_a_cold_cache_share_one_fetch() {
    bounded(LIMIT, async {
        let s = setup(Duration::from_millis(20), |b| b).await;

        let calls = (0..32).map(|i| {
            let mut client = s.client.clone();
            async move { client.get(&i.to_string()).await }
        });
        let docs = futures_util::future::join_all(calls).await;

        for (i, doc) in docs.into_iter().enumerate() {
            assert_eq!(doc.expect("every call succeeds").id, i.to_string());
        }
        assert_eq!(s.fetcher.calls(), 1);
        let log = s.server.log();
        assert_eq!(log.len(), 32);
        assert!(log
            .iter()
            .all(|seen| *seen == Seen::new("Get", "tok-1", true)));
    })
    .await;
}

#[tokio::test]
async fn a_revoked_token_is_renewed_once_and_the_unary_call_replayed() {
    bounded(LIMIT, async {
        let mut s = setup(Duration::ZERO, |b| b).await;
        s.client
            .get("before")
            .await
            .expect("a call with the first token");
        assert_eq!(s.fetcher.calls(), 1);

        s.server.revoke_all();
        let doc = s.client.get("after").await.expect("the call is replayed");

        assert_eq!(doc.id, "after");
        assert_eq!(s.fetcher.calls(), 2);
        assert_eq!(
            s.server.log(),
            [
                Seen::new("Get", "tok-1", true),
                Seen::new("Get", "tok-1", false),
                Seen::new("Get", "tok-2", true),
            ]
        );

        // The new token is cached: no more fetches, no more rejections.
        s.client
            .get("later")
            .await
            .expect("a call with the new token");
        assert_eq!(s.fetcher.calls(), 2);
        assert_eq!(s.server.counts(), (3, 1));
    })
    .await;
}

#[tokio::test]
async fn a_client_stream_rejected_before_it_was_sent_is_replayed_byte_for_byte() {
    bounded(LIMIT, async {
        let mut s = setup(Duration::ZERO, |b| b).await;
        s.handle.warm_up().await.expect("the first token");
        s.server.revoke_all();

        // Only 3 of the 20 messages exist until the server has answered UNAUTHENTICATED:
        // the response comes while the request body is still being sent, and the replay
        // must carry those 3 (recorded) and the 17 that follow (not yet read at all).
        let sent = chunks(20);
        let (tx, rx) = tokio::sync::mpsc::channel(sent.len());
        let mut rejections = s.server.rejections();
        let feed = async {
            for chunk in &sent[..3] {
                tx.send(chunk.clone()).await.expect("the stream is alive");
            }
            rejections
                .wait_for(|n| *n >= 1)
                .await
                .expect("the server runs");
            for chunk in &sent[3..] {
                tx.send(chunk.clone()).await.expect("the stream is alive");
            }
            drop(tx);
        };
        let (summary, ()) = tokio::join!(s.client.upload(ReceiverStream::new(rx)), feed);

        let expected = UploadSummary::of(&sent);
        assert_eq!(expected.bytes, 20 * 1024);
        assert_eq!(summary.expect("the upload is replayed"), expected);
        assert_eq!(s.server.uploads(), [expected]);
        assert_eq!(s.fetcher.calls(), 2);
        assert_eq!(
            s.server.log(),
            [
                Seen::new("Upload", "tok-1", false),
                Seen::new("Upload", "tok-2", true),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn a_client_stream_rejected_after_it_was_sent_is_replayed_byte_for_byte() {
    bounded(LIMIT, async {
        let mut s = setup(Duration::ZERO, |b| b).await;
        s.handle.warm_up().await.expect("the first token");
        s.server.revoke_all();
        s.server.read_body_before_rejecting(true);

        let sent = chunks(20);
        let stream = tokio_stream::iter(sent.clone());
        let summary = s.client.upload(stream).await;

        let expected = UploadSummary::of(&sent);
        assert_eq!(summary.expect("the upload is replayed"), expected);
        assert_eq!(s.server.uploads(), [expected]);
        assert_eq!(s.fetcher.calls(), 2);
        assert_eq!(s.server.counts(), (1, 1));
    })
    .await;
}

#[tokio::test]
async fn a_client_stream_over_the_replay_limit_gets_unauthenticated_but_the_token_is_renewed() {
    bounded(LIMIT, async {
        let mut s = setup(Duration::ZERO, |b| b.replay_limit(4 * 1024)).await;
        s.handle.warm_up().await.expect("the first token");
        s.server.revoke_all();
        // The whole 20 KiB goes through the layer before the answer, so the recording
        // has outgrown the 4 KiB limit by then.
        s.server.read_body_before_rejecting(true);

        let err = s
            .client
            .upload(tokio_stream::iter(chunks(20)))
            .await
            .expect_err("a body over the replay limit is not replayed");
        assert_eq!(err.code(), Code::Unauthenticated);
        assert!(s.server.uploads().is_empty());

        // The rejection still renews the token, without waiting for another call...
        while s.fetcher.calls() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // ...and the next call uses the new one at once.
        s.client.get("next").await.expect("the next call succeeds");
        assert_eq!(s.fetcher.calls(), 2);
        assert_eq!(
            s.server.log(),
            [
                Seen::new("Upload", "tok-1", false),
                Seen::new("Get", "tok-2", true),
            ]
        );
    })
    .await;
}
