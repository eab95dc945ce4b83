//! Replay after a rejected token works however the service is called: consumed by
//! `oneshot`, driven by `call_all`, cloned per request, behind a `Buffer`, boxed.
//!
//! Each test fetches a token from the mock SimpleDocs server, revokes it, uploads
//! documents (of a few hundred bytes and of a few KiB) and expects them accepted, byte
//! for byte, after exactly one new token.

#[path = "support/simpledocs.rs"]
mod simpledocs;

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use simpledocs::{
    assert_accepted_with_one_new_token, document, guard, http, post, revoked, SIZES, UPLOADED,
};
use tower::{buffer::Buffer, util::BoxCloneService, BoxError, Layer, ServiceExt};
use tower_oauth::body::ResponseBody;

#[tokio::test]
async fn a_service_made_for_one_request_and_consumed_by_oneshot_replays_it() {
    for (seed, len) in SIZES.into_iter().enumerate() {
        let (mock, layer) = revoked().await;
        let doc = document(seed as u8, len);
        // The only instance of the service, gone once `oneshot` has called it.
        let api = layer.layer(http::<Full<Bytes>>());
        let res = guard(api.oneshot(post(&mock, Full::new(doc.clone()))))
            .await
            .unwrap();
        assert_eq!(res.status(), UPLOADED, "{len}-byte body");
        assert_accepted_with_one_new_token(&mock, &layer, &[doc]);
    }
}

#[tokio::test]
async fn requests_sent_with_call_all_are_replayed() {
    let (mock, layer) = revoked().await;
    let docs: Vec<Bytes> = SIZES
        .into_iter()
        .enumerate()
        .map(|(seed, len)| document(seed as u8, len))
        .collect();
    let requests = docs
        .iter()
        .map(|doc| post(&mock, Full::new(doc.clone())))
        .collect::<Vec<_>>();
    let api = layer.layer(http::<Full<Bytes>>());
    let responses: Vec<_> = guard(api.call_all(stream::iter(requests)).collect()).await;
    for res in responses {
        assert_eq!(res.unwrap().status(), UPLOADED);
    }
    assert_accepted_with_one_new_token(&mock, &layer, &docs);
}

#[tokio::test]
async fn a_clone_per_request_is_replayed() {
    for (seed, len) in SIZES.into_iter().enumerate() {
        let (mock, layer) = revoked().await;
        let doc = document(seed as u8, len);
        // As an axum handler does with a service in its state.
        let api = layer.layer(http::<Full<Bytes>>());
        let res = guard(api.clone().oneshot(post(&mock, Full::new(doc.clone()))))
            .await
            .unwrap();
        assert_eq!(res.status(), UPLOADED, "{len}-byte body");
        assert_accepted_with_one_new_token(&mock, &layer, &[doc]);
    }
}

#[tokio::test]
async fn a_request_sent_through_a_buffer_is_replayed() {
    for (seed, len) in SIZES.into_iter().enumerate() {
        let (mock, layer) = revoked().await;
        let doc = document(seed as u8, len);
        // The buffer's worker owns the service; it ends once its last handle is gone.
        let api = Buffer::new(layer.layer(http::<Full<Bytes>>()), 8);
        let res = guard(api.oneshot(post(&mock, Full::new(doc.clone()))))
            .await
            .unwrap();
        assert_eq!(res.status(), UPLOADED, "{len}-byte body");
        assert_accepted_with_one_new_token(&mock, &layer, &[doc]);
    }
}

#[tokio::test]
async fn a_request_sent_through_a_box_clone_service_is_replayed() {
    for (seed, len) in SIZES.into_iter().enumerate() {
        let (mock, layer) = revoked().await;
        let doc = document(seed as u8, len);
        let api: BoxCloneService<Request<Full<Bytes>>, Response<ResponseBody<Incoming>>, BoxError> =
            BoxCloneService::new(layer.layer(http::<Full<Bytes>>()));
        let res = guard(api.oneshot(post(&mock, Full::new(doc.clone()))))
            .await
            .unwrap();
        assert_eq!(res.status(), UPLOADED, "{len}-byte body");
        assert_accepted_with_one_new_token(&mock, &layer, &[doc]);
    }
}
