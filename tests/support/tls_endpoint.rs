//! A local HTTPS token endpoint whose certificate a CA made for the test signs.
#![allow(dead_code, unreachable_pub)]

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::net::TcpListener;
use tokio_rustls::{
    rustls::{self, pki_types::PrivateKeyDer},
    TlsAcceptor,
};

/// A running endpoint at `https://localhost:{port}/token`.
pub struct TlsEndpoint {
    /// The token URL.
    pub url: String,
    /// The port it listens on (on 127.0.0.1).
    pub port: u16,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// Token requests answered.
    pub served: Arc<AtomicUsize>,
    /// The cipher suite of each handshake completed, as `Debug` shows it.
    pub suites: Arc<Mutex<Vec<String>>>,
}

impl TlsEndpoint {
    /// Token requests answered so far.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

/// Starts an endpoint that answers every request with a token.
pub async fn start() -> TlsEndpoint {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let suites = Arc::new(Mutex::new(Vec::new()));
    let handshakes = suites.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            let handshakes = handshakes.clone();
            tokio::spawn(async move {
                // A client that does not trust the certificate ends the handshake.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Some(suite) = tls.get_ref().1.negotiated_cipher_suite() {
                    handshakes
                        .lock()
                        .unwrap()
                        .push(format!("{:?}", suite.suite()));
                }
                let answer = service_fn(move |_req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let body =
                        r#"{"access_token":"tls-token","token_type":"Bearer","expires_in":600}"#;
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), answer)
                    .await;
            });
        }
    });
    TlsEndpoint {
        url: format!("https://localhost:{port}/token"),
        port,
        ca_pem: ca.pem(),
        ca_der: ca.der().to_vec(),
        served,
        suites,
    }
}
