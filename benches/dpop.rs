//! The cost of a DPoP proof per algorithm, against the Bearer hot path's baseline
//! (cloning a sensitive `Authorization` value) measured in the same run.
//!
//! `cargo bench --bench dpop --features jwt -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderValue, Method, Uri};
use tower_oauth::jose::{Dpop, DpopKey, SigningAlg};

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

criterion_group!(benches, proofs);
criterion_main!(benches);
