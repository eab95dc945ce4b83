//! A real HTTP request over loopback through `OAuth<S>` (its token fetched beforehand),
//! side by side with tower-http's `AddAuthorization` (a static header: the floor) and the
//! bare client. The server is hyper (HTTP/1.1, keep-alive) on `127.0.0.1:0`, answering
//! every request with 200 and a small body; the client is hyper-util's legacy client;
//! both run on one multi-threaded tokio runtime.
//!
//! Each request is a GET on a clone of the service (`svc.clone().oneshot(req)`, as
//! applications send), whose response body is read to its end. At concurrency 1 one
//! criterion iteration is one request; at concurrency 64 it is 64 requests sent at once
//! and awaited together (criterion's throughput line gives requests per second). At the
//! end, each variant's mean time per iteration and its ratio to `AddAuthorization` at the
//! same concurrency are printed.
//!
//! `cargo bench --bench end_to_end` (a quick check:
//! `cargo bench --bench end_to_end -- --warm-up-time 1 --measurement-time 2`)

mod support;

use std::{
    convert::Infallible,
    fmt,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{
    criterion_group, criterion_main, measurement::WallTime, BenchmarkGroup, Criterion, Throughput,
};
use futures_util::future::join_all;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};
use tokio::{net::TcpListener, runtime::Runtime};
use tower::{Layer, Service, ServiceExt};
use tower_http::auth::AddAuthorization;

use support::{Tally, TOKEN};

const CONCURRENCY: [usize; 2] = [1, 64];

/// Starts the server on the current runtime and returns its address.
async fn serve() -> SocketAddr {
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let answer = hyper::service::service_fn(|_: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        br#"{"id":42,"title":"quarterly report"}"#,
                    ))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), answer)
                    .await;
            });
        }
    });
    addr
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends `n` GETs at once, each on its own clone of `svc`, and reads every response.
async fn batch<S, ResB>(svc: &S, uri: &Uri, n: usize)
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>> + Clone,
    S::Error: fmt::Debug,
    ResB: http_body::Body,
    ResB::Error: fmt::Debug,
{
    let calls = (0..n).map(|_| {
        let req = Request::get(uri.clone()).body(Full::default()).unwrap();
        let svc = svc.clone();
        async move {
            let res = svc.oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res.into_body().collect().await.unwrap();
        }
    });
    join_all(calls).await;
}

fn bench_one<S, ResB>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    tally: &Tally,
    (name, concurrency): (&str, usize),
    uri: &Uri,
    svc: S,
) where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>> + Clone,
    S::Error: fmt::Debug,
    ResB: http_body::Body,
    ResB::Error: fmt::Debug,
{
    let key = format!("{name}/{concurrency}");
    group.bench_function(name, |b| {
        b.to_async(rt).iter_custom(|iters| {
            let (svc, uri, tally, key) = (svc.clone(), uri.clone(), tally.clone(), key.clone());
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    batch(&svc, &uri, concurrency).await;
                }
                tally.add(&key, start.elapsed(), iters)
            }
        })
    });
}

fn end_to_end(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(serve());
    let uri: Uri = format!("http://{addr}/v1/documents/42").parse().unwrap();
    let layer = rt.block_on(support::warmed_layer(true));
    let http = client();
    let tally = Tally::default();

    for concurrency in CONCURRENCY {
        let mut g = c.benchmark_group(format!("end_to_end/concurrency_{concurrency}"));
        g.throughput(Throughput::Elements(concurrency as u64));
        let variants = [
            ("bare", concurrency),
            ("add_authorization", concurrency),
            ("oauth", concurrency),
        ];
        bench_one(&mut g, &rt, &tally, variants[0], &uri, http.clone());
        bench_one(
            &mut g,
            &rt,
            &tally,
            variants[1],
            &uri,
            AddAuthorization::bearer(http.clone(), TOKEN),
        );
        bench_one(
            &mut g,
            &rt,
            &tally,
            variants[2],
            &uri,
            layer.layer(http.clone()),
        );
        g.finish();
    }

    for concurrency in CONCURRENCY {
        let names = ["bare", "add_authorization", "oauth"].map(|n| format!("{n}/{concurrency}"));
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        tally.print_ratios(
            &format!("end_to_end, concurrency {concurrency}"),
            names[1],
            &names,
        );
    }
    assert_eq!(
        layer.handle().fetches(),
        1,
        "every measured request was a cache hit"
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(30);
    targets = end_to_end
}
criterion_main!(benches);
