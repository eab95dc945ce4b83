//! Regression: a replayed streaming body is woken when the abandoned first body was the
//! last to poll the shared source, whether that first body is then dropped or kept
//! without being polled again (a lost wakeup would hang the replay).

mod common;

mod lost_wakeup {
    use crate::common::Fetcher;
    use bytes::Bytes;
    use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
    use std::{
        future::Future,
        sync::{
            atomic::{AtomicBool, AtomicUsize, Ordering},
            Arc,
        },
        time::Duration,
    };
    use tokio::sync::Notify;
    use tokio_stream::wrappers::ReceiverStream;
    use tower::{Service, ServiceBuilder, ServiceExt};
    use tower_oauth::{BoxError, OAuthLayer};

    /// What the holder of the first attempt's body does after its last poll.
    #[derive(Clone, Copy)]
    enum Then {
        /// Drops the body.
        Drop,
        /// Keeps the body without polling it until `release` is notified, like an HTTP/2
        /// stream waiting for window or an HTTP/1 connection with a full write buffer.
        Park,
    }

    #[derive(Clone)]
    struct Inner {
        calls: Arc<AtomicUsize>,
        b_waiting: Arc<Notify>,
        then: Then,
        release: Arc<Notify>,
        first_dropped: Arc<AtomicBool>,
    }

    impl Service<http::Request<BoxBody<Bytes, BoxError>>> for Inner {
        type Response = http::Response<Full<Bytes>>;
        type Error = BoxError;
        type Future =
            std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), BoxError>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: http::Request<BoxBody<Bytes, BoxError>>) -> Self::Future {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let this = self.clone();
            Box::pin(async move {
                let mut body = req.into_body();
                if n == 0 {
                    // First attempt: read frame 1, answer 401 invalid_token, but keep the body
                    // alive in another task (like hyper's h2 pipe task) that polls it once more
                    // after the replay is waiting on the source, then drops or keeps it.
                    body.frame().await.unwrap().unwrap();
                    tokio::spawn(async move {
                        this.b_waiting.notified().await;
                        std::future::poll_fn(|cx| {
                            std::task::Poll::Ready(
                                http_body::Body::poll_frame(std::pin::Pin::new(&mut body), cx)
                                    .is_pending(),
                            )
                        })
                        .await;
                        if let Then::Park = this.then {
                            this.release.notified().await;
                        }
                        drop(body);
                        this.first_dropped.store(true, Ordering::SeqCst);
                    });
                    let mut res = http::Response::new(Full::new(Bytes::new()));
                    *res.status_mut() = http::StatusCode::UNAUTHORIZED;
                    res.headers_mut().insert(
                        "www-authenticate",
                        r#"Bearer error="invalid_token""#.parse().unwrap(),
                    );
                    Ok(res)
                } else {
                    // Replay: read frame 1 (recorded), then wait on the source for frame 2.
                    let f = body.frame().await.unwrap().unwrap();
                    this.b_waiting.notify_one();
                    let mut total = f.data_ref().unwrap().len();
                    while let Some(f) = body.frame().await {
                        total += f.unwrap().data_ref().map_or(0, |d| d.len());
                    }
                    Ok(http::Response::new(Full::new(Bytes::from(
                        total.to_string(),
                    ))))
                }
            })
        }
    }

    /// Sends a two-frame streaming request whose first attempt is rejected, the second
    /// frame coming 200 ms after the first; returns the replay's answer (the byte count it
    /// read) and whether the first attempt's body had been dropped by then.
    async fn replay_with_first_body_then(then: Then) -> (String, bool) {
        let fetcher = Fetcher::tokens(Duration::from_secs(3600), Duration::ZERO);
        let layer = OAuthLayer::with_fetcher(fetcher).build();
        let inner = Inner {
            calls: Arc::default(),
            b_waiting: Arc::new(Notify::new()),
            then,
            release: Arc::new(Notify::new()),
            first_dropped: Arc::default(),
        };
        let release = inner.release.clone();
        let first_dropped = inner.first_dropped.clone();
        let mut svc = ServiceBuilder::new().layer(layer).service(inner);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, BoxError>>(8);
        let body = BoxBody::new(StreamBody::new(ReceiverStream::new(rx)));
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"one"))))
            .await
            .unwrap();
        let call = ServiceExt::<http::Request<BoxBody<Bytes, BoxError>>>::ready(&mut svc)
            .await
            .unwrap()
            .call(http::Request::post("/x").body(body).unwrap());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"two"))))
                .await
                .unwrap();
        });
        let res = tokio::select! {
            biased;
            _ = tokio::time::sleep(Duration::from_secs(3)) => panic!("replay hung: lost wakeup"),
            r = call => r,
        };
        let body = res.unwrap().into_body().collect().await.unwrap().to_bytes();
        let dropped = first_dropped.load(Ordering::SeqCst);
        release.notify_one();
        (String::from_utf8(body.to_vec()).unwrap(), dropped)
    }

    #[tokio::test]
    async fn replay_is_woken_when_the_abandoned_first_body_polled_the_source_last() {
        let (read, _) = replay_with_first_body_then(Then::Drop).await;
        assert_eq!(read, "6");
    }

    #[tokio::test(start_paused = true)]
    async fn replay_is_woken_while_the_first_body_that_polled_the_source_last_is_kept_unpolled() {
        let (read, first_dropped) = replay_with_first_body_then(Then::Park).await;
        assert_eq!(read, "6", "the replay read both frames");
        assert!(!first_dropped, "the first body was still kept");
    }
}
