//! Mutual-TLS client authentication (RFC 8705): the built-in client presents the
//! configured certificate, and the form carries `client_id` and no secret.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use tokio::net::TcpListener;
use tokio_rustls::{
    rustls::{self, pki_types::PrivateKeyDer, server::WebPkiClientVerifier, RootCertStore},
    TlsAcceptor,
};
use tower::ServiceExt;
use tower_oauth::{
    fetch::HttpFetcher, AuthMethod, ClientCredentials, Error, ErrorKind, FetchReason, Token,
    TokenRequest,
};

/// What the endpoint saw of one token request.
#[derive(Debug, Clone)]
struct Seen {
    client_cert: bool,
    form: Vec<(String, String)>,
    authorization: Option<String>,
}

/// A token endpoint at `https://localhost:{port}/token` that requires a client
/// certificate its CA signed.
struct MtlsEndpoint {
    url: String,
    ca_pem: String,
    /// A client certificate and key the CA signed, PEM.
    client_cert_pem: String,
    client_key_pem: String,
    /// Another key, which matches no certificate here.
    other_key_pem: String,
    handshakes: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn start() -> MtlsEndpoint {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["my-client".to_owned()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.der().clone()],
            PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (count, record) = (handshakes.clone(), seen.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, count, record) = (acceptor.clone(), count.clone(), record.clone());
            tokio::spawn(async move {
                count.fetch_add(1, Ordering::SeqCst);
                // A client without an accepted certificate ends here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let client_cert = tls.get_ref().1.peer_certificates().is_some();
                let answer = service_fn(move |req: Request<Incoming>| {
                    let record = record.clone();
                    async move {
                        let authorization = req
                            .headers()
                            .get(http::header::AUTHORIZATION)
                            .map(|v| v.to_str().unwrap().to_owned());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let form = form_urlencoded::parse(&body).into_owned().collect();
                        record.lock().unwrap().push(Seen {
                            client_cert,
                            form,
                            authorization,
                        });
                        let token = r#"{"access_token":"mtls-token","token_type":"Bearer","expires_in":600}"#;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(token))))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), answer)
                    .await;
            });
        }
    });
    MtlsEndpoint {
        url: format!("https://localhost:{port}/token"),
        ca_pem: ca.pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
        other_key_pem: KeyPair::generate().unwrap().serialize_pem(),
        handshakes,
        seen,
    }
}

async fn fetch(creds: ClientCredentials) -> Result<Token, Error> {
    HttpFetcher::https(creds)
        .oneshot(TokenRequest::new(None, FetchReason::First))
        .await
}

#[tokio::test]
async fn the_built_in_client_presents_the_certificate_and_sends_no_secret() {
    let endpoint = start().await;
    for method in [
        AuthMethod::TlsClientAuth,
        AuthMethod::SelfSignedTlsClientAuth,
    ] {
        let creds = ClientCredentials::tls_client_auth(&endpoint.url, "my-client")
            .unwrap()
            .auth_method(method)
            .add_root_certificate(&endpoint.ca_pem)
            .unwrap()
            .client_certificate(&endpoint.client_cert_pem, &endpoint.client_key_pem)
            .unwrap();
        let token = fetch(creds).await.unwrap();
        assert_eq!(token.access_token.secret(), "mtls-token");
    }
    let seen = endpoint.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for seen in seen {
        assert!(seen.client_cert, "{seen:?}");
        assert_eq!(seen.authorization, None, "{seen:?}");
        let names: Vec<&str> = seen.form.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["grant_type", "client_id"], "{seen:?}");
        assert_eq!(seen.form[1].1, "my-client");
    }
}

#[tokio::test]
async fn a_tls_method_without_a_certificate_is_refused_before_anything_is_sent() {
    let endpoint = start().await;
    let creds = ClientCredentials::tls_client_auth(&endpoint.url, "my-client")
        .unwrap()
        .add_root_certificate(&endpoint.ca_pem)
        .unwrap();
    let err = fetch(creds).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("client certificate"), "{err}");
    assert_eq!(endpoint.handshakes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_endpoint_requiring_a_certificate_refuses_a_client_without_one() {
    let endpoint = start().await;
    let creds = ClientCredentials::new(&endpoint.url, "my-client", "s3cret")
        .add_root_certificate(&endpoint.ca_pem)
        .unwrap();
    let err = fetch(creds).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
    assert!(endpoint.seen.lock().unwrap().is_empty());
    assert!(endpoint.handshakes.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn a_key_that_does_not_match_or_parse_is_refused_without_showing_it() {
    let endpoint = start().await;
    let creds = ClientCredentials::tls_client_auth(&endpoint.url, "my-client").unwrap();
    let body = |pem: &str| {
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>()
    };
    let broken_key = endpoint.client_key_pem.replace('A', "!");
    for (chain, key, says) in [
        (
            &endpoint.client_cert_pem,
            &endpoint.other_key_pem,
            "does not match",
        ),
        (&endpoint.client_cert_pem, &broken_key, "key"),
        (&endpoint.client_cert_pem, &endpoint.client_cert_pem, "key"),
        (
            &endpoint.client_key_pem,
            &endpoint.client_key_pem,
            "no certificate",
        ),
    ] {
        let err = creds.clone().client_certificate(chain, key).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        let mut shown = format!("{err} {err:?}");
        let mut source = std::error::Error::source(&err);
        while let Some(inner) = source {
            shown.push_str(&format!(" {inner} {inner:?}"));
            source = inner.source();
        }
        assert!(shown.contains(says), "{says}: {shown}");
        for pem in [key, &endpoint.client_key_pem] {
            let material = body(pem);
            for part in material.as_bytes().chunks(16) {
                let part = std::str::from_utf8(part).unwrap();
                assert!(!shown.contains(part), "{part}: {shown}");
            }
        }
    }
    // A certificate set shows in Debug as a chain length, not as its key.
    let with_cert = creds
        .client_certificate(&endpoint.client_cert_pem, &endpoint.client_key_pem)
        .unwrap();
    let shown = format!("{with_cert:?}");
    assert!(shown.contains("ClientCertificate { chain: 1"), "{shown}");
}
