//! The cost of a DPoP proof per algorithm, against the Bearer hot path's baseline
//! (cloning a sensitive `Authorization` value) measured in the same run; and of a whole
//! request through the layer with a DPoP token against one with a Bearer token.
//!
//! `cargo bench --bench dpop --features jwt -- --warm-up-time 1 --measurement-time 3`

use std::{hint::black_box, time::Duration};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderValue, Method, Uri};
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tower_oauth::{
    jose::{Dpop, DpopKey, SigningAlg},
    BoxError, OAuthLayer, Token, TokenRequest, TokenType,
};

const RSA_PEM: &[u8] = include_bytes!("../tests/fixtures/jose/rsa-2048.pem");
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.an-access-token-of-typical-length.c2lnbmF0dXJl";

fn proofs(c: &mut Criterion) {
    let mut group = c.benchmark_group("dpop");
    let mut bearer = HeaderValue::try_from(format!("Bearer {TOKEN}")).unwrap();
    bearer.set_sensitive(true);
    group.bench_function("bearer_header_clone", |b| {
        b.iter(|| black_box(&bearer).clone())
    });

    let uri: Uri = "https://api.example/v1/documents?page=2".parse().unwrap();
    let keys = [
        DpopKey::generate(SigningAlg::ES256).unwrap(),
        DpopKey::generate(SigningAlg::EdDSA).unwrap(),
        DpopKey::from_pem(SigningAlg::RS256, RSA_PEM).unwrap(),
        DpopKey::from_pem(SigningAlg::PS256, RSA_PEM).unwrap(),
    ];
    for key in keys {
        let name = format!("proof_{}", key.alg());
        let dpop = Dpop::new(key);
        dpop.remember_nonce(&uri, &HeaderValue::from_static("a-server-nonce"));
        group.bench_function(name, |b| {
            b.iter(|| {
                dpop.proof(&Method::GET, black_box(&uri), Some(TOKEN))
                    .unwrap()
            })
        });
    }
    group.finish();
}

/// A request through the layer with a `DPoP` token (a proof per request) against the same
/// request with a `Bearer` token, per algorithm; the inner service answers at once.
fn requests(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::default()))
    });
    let layer = |token_type: TokenType, dpop: Option<Dpop>| {
        let fetcher = tower::service_fn(move |_: TokenRequest| async move {
            Ok::<_, BoxError>(
                Token::new(TOKEN, Some(Duration::from_secs(3600))).with_token_type(token_type),
            )
        });
        let builder = OAuthLayer::with_fetcher(fetcher);
        let layer = match dpop {
            Some(dpop) => builder.dpop(dpop).build(),
            None => builder.build(),
        };
        rt.block_on(layer.handle().warm_up()).unwrap();
        layer
    };
    let request = || {
        http::Request::get("https://api.example/v1/documents?page=2")
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    let mut group = c.benchmark_group("dpop_request");
    let bearer = layer(TokenType::Bearer, None).layer(answer);
    group.bench_function("bearer", |b| {
        b.to_async(&rt).iter(|| bearer.clone().oneshot(request()))
    });
    let keys = [
        DpopKey::generate(SigningAlg::ES256).unwrap(),
        DpopKey::generate(SigningAlg::EdDSA).unwrap(),
        DpopKey::from_pem(SigningAlg::RS256, RSA_PEM).unwrap(),
        DpopKey::from_pem(SigningAlg::PS256, RSA_PEM).unwrap(),
    ];
    for key in keys {
        let name = format!("dpop_{}", key.alg());
        let svc = layer(TokenType::DPoP, Some(Dpop::new(key))).layer(answer);
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| svc.clone().oneshot(request()))
        });
    }
    group.finish();
}

criterion_group!(benches, proofs, requests);
criterion_main!(benches);
