//! Mutual-TLS client authentication (RFC 8705): the certificate the built-in client presents.
//!
//! With `AuthMethod::TlsClientAuth` or `AuthMethod::SelfSignedTlsClientAuth` the token
//! endpoint knows the client by the certificate it presents in the TLS handshake. The form
//! carries `client_id` and no secret.

use std::{fmt, sync::Arc};

use rustls::{
    client::ResolvesClientCert,
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    sign::CertifiedKey,
    SignatureScheme,
};

use crate::error::{Error, ErrorKind};
use crate::{AuthMethod, ClientCredentials};

/// A client certificate chain and its private key, checked to match.
///
/// `Debug` shows the chain length only.
#[derive(Clone)]
pub(crate) struct ClientCertificate(Arc<CertifiedKey>);

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("chain", &self.0.cert.len())
            .finish_non_exhaustive()
    }
}

impl ResolvesClientCert for ClientCertificate {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ClientCertificate {
    /// The resolver a rustls client config presents the certificate with.
    pub(crate) fn resolver(&self) -> Arc<dyn ResolvesClientCert> {
        Arc::new(self.clone())
    }
}

/// A `Config` error about the client certificate. Parser errors are left out: they can
/// quote the PEM text, and so the key.
fn refused(why: &str) -> Error {
    Error::new(ErrorKind::Config).with_detail(&format!("client certificate {why}"))
}

impl ClientCredentials {
    /// Sets the certificate the built-in HTTPS client presents to the token endpoint
    /// (mutual TLS, RFC 8705). Default: none.
    ///
    /// `cert_chain_pem` holds the client certificate first, then any intermediates.
    /// `private_key_pem` holds its key (PKCS#8, PKCS#1 or SEC1). Use it with
    /// [`AuthMethod::TlsClientAuth`] or [`AuthMethod::SelfSignedTlsClientAuth`]; see
    /// [`tls_client_auth`](Self::tls_client_auth).
    ///
    /// Only [`HttpFetcher::https`](crate::fetch::HttpFetcher::https) presents it. A client
    /// passed to [`HttpFetcher::new`](crate::fetch::HttpFetcher::new) presents its own.
    ///
    /// # Certificate-bound tokens
    ///
    /// A server may bind the token to the certificate (RFC 8705 §3, `cnf.x5t#S256`). The API
    /// then accepts it only over a connection that presents the same certificate. The layer
    /// does not make that connection: the inner client does. Give it the same certificate.
    ///
    /// With hyper-util and hyper-rustls:
    ///
    /// ```no_run
    /// # #[cfg(feature = "aws-lc-rs")]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    /// use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    ///
    /// let chain = CertificateDer::pem_file_iter("client.crt")?.collect::<Result<Vec<_>, _>>()?;
    /// let key = PrivateKeyDer::from_pem_file("client.key")?;
    /// let tls = rustls::ClientConfig::builder()
    ///     .with_root_certificates(rustls::RootCertStore::empty())
    ///     .with_client_auth_cert(chain, key)?;
    /// let https = hyper_rustls::HttpsConnectorBuilder::new()
    ///     .with_tls_config(tls)
    ///     .https_only()
    ///     .enable_http1()
    ///     .build();
    /// let api: Client<_, http_body_util::Full<bytes::Bytes>> =
    ///     Client::builder(TokioExecutor::new()).build(https);
    /// # let _ = api;
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "aws-lc-rs"))]
    /// # fn main() {}
    /// ```
    ///
    /// With reqwest, build the client with `reqwest::Identity::from_pem(cert_and_key_pem)` and
    /// `ClientBuilder::identity`.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`] error if the chain holds no certificate, the key does not
    /// parse, or the key does not match the certificate. The error shows no key material.
    pub fn client_certificate(
        mut self,
        cert_chain_pem: impl AsRef<[u8]>,
        private_key_pem: impl AsRef<[u8]>,
    ) -> Result<Self, Error> {
        let chain = CertificateDer::pem_slice_iter(cert_chain_pem.as_ref())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| refused("chain is not valid PEM"))?;
        if chain.is_empty() {
            return Err(refused("chain holds no certificate"));
        }
        let key = PrivateKeyDer::from_pem_slice(private_key_pem.as_ref())
            .map_err(|_| refused("key is not a PEM private key"))?;
        let provider = crypto_provider()
            .ok_or_else(|| refused("cannot be checked: no rustls crypto provider"))?;
        let key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|_| refused("key is not a supported private key"))?;
        let certified = CertifiedKey::new(chain, key);
        if certified.keys_match().is_err() {
            return Err(refused("key does not match the certificate"));
        }
        self.client_cert = Some(ClientCertificate(Arc::new(certified)));
        Ok(self)
    }

    /// Credentials for mutual-TLS client authentication: `client_id` and no secret, with
    /// [`AuthMethod::TlsClientAuth`]. Add the certificate with
    /// [`client_certificate`](Self::client_certificate).
    ///
    /// # Errors
    ///
    /// As [`try_new`](Self::try_new) does for `token_url`.
    pub fn tls_client_auth(token_url: &str, client_id: impl Into<String>) -> Result<Self, Error> {
        Ok(Self::try_new(token_url, client_id, "")?.auth_method(AuthMethod::TlsClientAuth))
    }

    /// The certificate set with [`client_certificate`](Self::client_certificate).
    pub(crate) fn client_cert(&self) -> Option<&ClientCertificate> {
        self.client_cert.as_ref()
    }

    /// Checks that a TLS client authentication method has a certificate to present.
    pub(crate) fn check_client_cert(&self) -> Result<(), Error> {
        if self.auth_method.is_tls() && self.client_cert.is_none() {
            return Err(refused(
                "is missing: the auth method is tls client auth; set one with \
                 ClientCredentials::client_certificate",
            ));
        }
        Ok(())
    }
}

/// The process default crypto provider, else the one a feature of this crate selects:
/// aws-lc-rs over ring, as hyper-rustls and reqwest choose.
pub(crate) fn crypto_provider() -> Option<Arc<CryptoProvider>> {
    CryptoProvider::get_default()
        .cloned()
        .or_else(feature_provider)
}

#[cfg(feature = "aws-lc-rs")]
fn feature_provider() -> Option<Arc<CryptoProvider>> {
    Some(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
fn feature_provider() -> Option<Arc<CryptoProvider>> {
    Some(Arc::new(rustls::crypto::ring::default_provider()))
}

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
fn feature_provider() -> Option<Arc<CryptoProvider>> {
    None
}
