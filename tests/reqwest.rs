//! reqwest in every place the layer takes an HTTP client: as the wrapped service
//! (`ReqwestService`), as the token client (`tower_oauth::reqwest::builder`), and as a
//! `reqwest-middleware` client with `OAuthMiddleware` on the layer's token cache.

#[path = "support/simpledocs.rs"]
mod simpledocs;

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{future::join_all, stream};
use http::{Request, StatusCode};
use http_body::Frame;
use http_body_util::{Full, StreamBody};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use simpledocs::{
    assert_accepted_with_one_new_token, credentials, document, guard, post, SIZES, UPLOADED,
};
use tower::{Layer, ServiceExt};
use tower_oauth::{
    mock::MockServer,
    reqwest::{OAuthMiddleware, ReqwestService},
    OAuthLayer, OAuthLayerBuilder,
};

/// A mock server and a layer whose token client is reqwest; its first token was fetched
/// and then revoked.
async fn revoked() -> (MockServer, OAuthLayer) {
    let mock = MockServer::start().await.unwrap();
    let layer = tower_oauth::reqwest::builder(reqwest::Client::new(), credentials(&mock)).build();
    guard(layer.handle().warm_up()).await.unwrap();
    mock.revoke_all();
    (mock, layer)
}

/// The mock's client credentials, asking for the `read` scope that listing needs.
fn reader(mock: &MockServer) -> tower_oauth::ClientCredentials {
    credentials(mock).scope("read")
}

fn middleware_client(layer: &OAuthLayer) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(OAuthMiddleware::from_layer(layer))
        .build()
}

fn documents_url(mock: &MockServer) -> String {
    format!("{}/api/v1/documents", mock.base_url())
}

fn workflows_url(mock: &MockServer) -> String {
    format!("{}/api/v1/workflows", mock.base_url())
}

#[tokio::test]
async fn a_layer_whose_token_client_is_reqwest_gets_a_token_from_the_server() {
    let mock = MockServer::start().await.unwrap();
    let layer = tower_oauth::reqwest::builder(reqwest::Client::new(), reader(&mock)).build();
    guard(layer.handle().warm_up()).await.unwrap();
    assert_eq!(mock.stats().tokens_issued, 1);
    assert_eq!(layer.handle().fetches(), 1);
    let api = layer.layer(ReqwestService::new(reqwest::Client::new()));
    let req = Request::get(workflows_url(&mock))
        .body(String::new())
        .unwrap();
    assert_eq!(guard(api.oneshot(req)).await.unwrap().status(), 200);
    assert_eq!(mock.stats().api_ok, 1);
}

#[tokio::test]
async fn a_reqwest_service_under_the_layer_replays_a_rejected_upload_byte_for_byte() {
    for (seed, len) in SIZES.into_iter().enumerate() {
        let (mock, layer) = revoked().await;
        let doc = document(seed as u8, len);
        let api = layer.layer(ReqwestService::new(reqwest::Client::new()));
        let res = guard(api.oneshot(post(&mock, Full::new(doc.clone()))))
            .await
            .unwrap();
        assert_eq!(res.status(), UPLOADED, "{len}-byte body");
        assert_accepted_with_one_new_token(&mock, &layer, &[doc]);
    }
}

#[tokio::test]
async fn a_reqwest_service_under_the_layer_replays_a_string_body() {
    let (mock, layer) = revoked().await;
    let doc = "a document as text".to_owned();
    let api = layer.layer(ReqwestService::new(reqwest::Client::new()));
    let res = guard(api.oneshot(post(&mock, doc.clone()))).await.unwrap();
    assert_eq!(res.status(), UPLOADED);
    assert_accepted_with_one_new_token(&mock, &layer, &[Bytes::from(doc)]);
}

#[tokio::test]
async fn a_reqwest_service_under_the_layer_replays_a_reqwest_body() {
    for (seed, len) in SIZES.into_iter().enumerate() {
        let (mock, layer) = revoked().await;
        let doc = document(seed as u8, len);
        let api = layer.layer(ReqwestService::new(reqwest::Client::new()));
        let body = reqwest::Body::from(doc.clone());
        let res = guard(api.oneshot(post(&mock, body))).await.unwrap();
        assert_eq!(res.status(), UPLOADED, "{len}-byte body");
        assert_accepted_with_one_new_token(&mock, &layer, &[doc]);
    }
}

#[tokio::test]
async fn five_hundred_requests_through_a_reqwest_service_on_a_cold_cache_fetch_one_token() {
    let mock = MockServer::start().await.unwrap();
    let layer = tower_oauth::reqwest::builder(reqwest::Client::new(), reader(&mock)).build();
    let api = layer.layer(ReqwestService::new(reqwest::Client::new()));
    let calls = (0..500).map(|_| {
        let req = Request::get(workflows_url(&mock))
            .body(String::new())
            .unwrap();
        api.clone().oneshot(req)
    });
    for res in guard(join_all(calls)).await {
        assert_eq!(res.unwrap().status(), 200);
    }
    assert_eq!(mock.stats().token_requests, 1);
    assert_eq!(mock.stats().api_ok, 500);
}

#[tokio::test]
async fn the_middleware_replays_a_rejected_upload_byte_for_byte() {
    for (seed, len) in SIZES.into_iter().enumerate() {
        let (mock, layer) = revoked().await;
        let doc = document(seed as u8, len);
        let api = middleware_client(&layer);
        let res = guard(api.post(documents_url(&mock)).body(doc.clone()).send())
            .await
            .unwrap();
        assert_eq!(res.status(), UPLOADED, "{len}-byte body");
        assert_accepted_with_one_new_token(&mock, &layer, &[doc]);
    }
}

#[tokio::test]
async fn five_hundred_requests_through_the_middleware_on_a_cold_cache_fetch_one_token() {
    let mock = MockServer::start().await.unwrap();
    let api = ClientBuilder::new(reqwest::Client::new())
        .with(OAuthMiddleware::with_client(
            reqwest::Client::new(),
            reader(&mock),
        ))
        .build();
    let url = workflows_url(&mock);
    let calls = (0..500).map(|_| api.get(&url).send());
    for res in guard(join_all(calls)).await {
        assert_eq!(res.unwrap().status(), 200);
    }
    assert_eq!(mock.stats().token_requests, 1);
    assert_eq!(mock.stats().api_ok, 500);
}

#[tokio::test]
async fn the_middleware_leaves_a_request_with_its_own_authorization_alone() {
    let mock = MockServer::start().await.unwrap();
    let layer = tower_oauth::reqwest::builder(reqwest::Client::new(), credentials(&mock)).build();
    let api = middleware_client(&layer);
    let res = guard(api.get(workflows_url(&mock)).bearer_auth("mine").send())
        .await
        .unwrap();
    // The server did not know the caller's token, and the middleware did not step in.
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(mock.stats().api_invalid_token, 1);
    assert_eq!(mock.stats().token_requests, 0);
    assert_eq!(layer.handle().fetches(), 0);
}

/// `doc` as a stream of `chunk`-byte frames that reqwest cannot clone and that says
/// nothing of its size.
fn streamed(doc: &Bytes, chunk: usize) -> reqwest::Body {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = doc
        .chunks(chunk)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    reqwest::Body::wrap(StreamBody::new(stream::iter(frames)))
}

#[tokio::test]
async fn the_middleware_replays_a_rejected_streamed_body_byte_for_byte() {
    let doc = document(7, 300);
    let stream = document(8, 4 * 1024);
    let bodies = [
        // A wrapped body is a stream to reqwest, whatever it wraps: it cannot be cloned.
        (doc.clone(), reqwest::Body::wrap(Full::new(doc.clone()))),
        (stream.clone(), streamed(&stream, 500)),
    ];
    for (doc, body) in bodies {
        let (mock, layer) = revoked().await;
        let api = middleware_client(&layer);
        let res = guard(api.post(documents_url(&mock)).body(body).send())
            .await
            .unwrap();
        assert_eq!(res.status(), UPLOADED, "{}-byte body", doc.len());
        assert_accepted_with_one_new_token(&mock, &layer, std::slice::from_ref(&doc));
        assert_eq!(
            mock.stats().api_token_expired,
            1,
            "sent once, replayed once"
        );
        // The next request goes through with the new token, without another fetch.
        let res = guard(api.post(documents_url(&mock)).body(doc.clone()).send())
            .await
            .unwrap();
        assert_eq!(res.status(), UPLOADED);
        assert_eq!(mock.received_documents(), vec![doc.clone(), doc]);
        assert_eq!(mock.stats().tokens_issued, 2);
    }
}

#[tokio::test]
async fn the_middleware_returns_the_rejection_of_a_stream_over_the_limit_or_with_replay_off() {
    let doc = document(9, 16 * 1024);
    // With replay off, no body is replayed. Under a limit, a body whose size hint is over
    // it is never kept; a stream without one is judged by what it had sent when the 401
    // came, which depends on timing, so it is not used here.
    type Setting = fn(OAuthLayerBuilder) -> OAuthLayerBuilder;
    let settings: [(Setting, bool); 2] = [
        (|b| b.replay_limit(1024), false),
        (|b| b.replay(false), true),
    ];
    for (setting, with_stream) in settings {
        let mut bodies = vec![reqwest::Body::wrap(Full::new(doc.clone()))];
        if with_stream {
            bodies.push(streamed(&doc, 1024));
        }
        for body in bodies {
            let mock = MockServer::start().await.unwrap();
            let builder = tower_oauth::reqwest::builder(reqwest::Client::new(), credentials(&mock));
            let layer = setting(builder).build();
            guard(layer.handle().warm_up()).await.unwrap();
            mock.revoke_all();
            let api = middleware_client(&layer);
            let res = guard(api.post(documents_url(&mock)).body(body).send())
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            // The caller gets the 401 whole, body included, after the middleware read it.
            let text = guard(res.text()).await.unwrap();
            assert!(text.contains("token_expired"), "{text}");
            assert_eq!(mock.stats().api_token_expired, 1, "not replayed");
            assert!(mock.received_documents().is_empty());
            guard(layer.handle().warm_up()).await.unwrap();
            assert_eq!(mock.stats().tokens_issued, 2, "the token was renewed");
        }
    }
}

/// A token endpoint on loopback that redirects every POST with `status` to `/elsewhere`,
/// where it answers a token; it returns what `/elsewhere` was sent.
async fn redirecting(status: u16) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use http_body_util::BodyExt;
    use hyper::{body::Incoming, server::conn::http1, service::service_fn, Response};
    use hyper_util::rt::TokioIo;

    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let kept = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = kept.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let seen = seen.clone();
                async move {
                    let path = req.uri().path().to_owned();
                    let body = req.into_body().collect().await?.to_bytes();
                    let res = if path == "/elsewhere" {
                        seen.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&body).into_owned());
                        Response::new(Full::new(Bytes::from_static(
                            br#"{"access_token":"t","token_type":"Bearer","expires_in":60}"#,
                        )))
                    } else {
                        Response::builder()
                            .status(status)
                            .header("location", "/elsewhere")
                            .body(Full::default())
                            .unwrap()
                    };
                    Ok::<_, hyper::Error>(res)
                }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
        }
    });
    (url, seen)
}

#[tokio::test]
async fn the_reqwest_token_client_never_takes_a_token_from_a_redirect_nor_resends_the_form() {
    for status in [301, 302, 303, 307, 308] {
        let (url, seen) = redirecting(status).await;
        let creds = tower_oauth::ClientCredentials::new(&url, "id", "s3cret-in-form");
        let layer = tower_oauth::reqwest::builder(reqwest::Client::new(), creds)
            .retry_budget(std::time::Duration::ZERO)
            .build();
        let err = guard(layer.handle().warm_up()).await.unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("s3cret-in-form"), "{status}: {shown}");
        let seen = seen.lock().unwrap();
        assert!(
            seen.iter().all(|body| !body.contains("s3cret")),
            "{status}: the form went to the redirect target: {seen:?}"
        );
    }
}
