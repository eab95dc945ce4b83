//! The built-in HTTPS client for token requests.

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::{legacy::Client, proxy::matcher::Matcher},
    rt::TokioExecutor,
};
use rustls::{pki_types::CertificateDer, ClientConfig, RootCertStore};

use super::proxy::ProxyConnector;
use crate::credentials::{crypto_provider, ClientCertificate};

/// The built-in token client: hyper-util's pooled client over rustls, through the proxy
/// the environment names (see [`ProxyConnector`]). It speaks plain HTTP too, which the
/// fetcher only allows on loopback unless told otherwise.
///
/// Its crypto provider is the process default when one is installed
/// ([`CryptoProvider::install_default`](rustls::crypto::CryptoProvider::install_default)), else the one the `aws-lc-rs` (preferred) or
/// `ring` feature selects. It trusts the operating system's root certificates (feature
/// `native-roots`, default), the Mozilla ones (feature `webpki-roots`), and those added
/// with [`ClientCredentials::add_root_certificate`](crate::ClientCredentials::add_root_certificate).
pub type HttpsClient = Client<HttpsConnector<ProxyConnector>, Full<Bytes>>;

/// Builds the built-in token client, with no extra root certificate.
///
/// # Panics
///
/// Panics if there is no crypto provider (no process default is installed and neither
/// `aws-lc-rs` nor `ring` is enabled), or if the process default supports no TLS version
/// rustls deems safe.
pub fn https_client() -> HttpsClient {
    client_with(&[], None, Matcher::from_env())
}

/// The built-in token client, also trusting `extra_roots`, proxied as `proxies` says.
pub(crate) fn client_with(
    extra_roots: &[CertificateDer<'static>],
    client_cert: Option<&ClientCertificate>,
    proxies: Matcher,
) -> HttpsClient {
    let provider = crypto_provider().expect(
        "no rustls crypto provider: enable the `aws-lc-rs` or `ring` feature of \
             tower-oauth, or install a process default with CryptoProvider::install_default",
    );
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the crypto provider supports a safe TLS version")
        .with_root_certificates(root_store(extra_roots));
    // The certificate and key were checked to match when they were set.
    let config = match client_cert {
        Some(cert) => config.with_client_cert_resolver(cert.resolver()),
        None => config.with_no_client_auth(),
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(ProxyConnector::new(proxies));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// The roots the features select, and `extra`.
fn root_store(extra: &[CertificateDer<'static>]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    #[cfg(feature = "native-roots")]
    {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "an operating system root certificate could not be loaded");
        }
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "operating system root certificates loaded");
    }
    #[cfg(feature = "webpki-roots")]
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // Each was checked when it was added to the credentials.
    roots.add_parsable_certificates(extra.iter().cloned());
    roots
}
