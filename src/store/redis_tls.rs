//! TLS settings for a Redis store beyond the operating system's root certificates: a
//! private CA, and a client certificate for servers that ask for one.

use std::fmt;

use redis::{ClientTlsConfig, TlsCertificates};

/// How a [`RedisStore`](super::RedisStore) connects over `rediss://` when the system's
/// root certificates are not enough (see
/// [`RedisStore::connect_with_tls`](super::RedisStore::connect_with_tls)).
///
/// `Debug` shows which parts are set, never their contents.
#[derive(Clone, Default)]
pub struct RedisTls {
    root_certificate: Option<Vec<u8>>,
    client_certificate: Option<(Vec<u8>, Vec<u8>)>,
}

impl RedisTls {
    /// No settings: the system's root certificates, no client certificate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the CA certificate `pem` (PEM) instead of the system's roots: a managed
    /// Redis with a private CA, or a test server.
    pub fn root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificate = Some(pem.into());
        self
    }

    /// Presents `cert_pem` with its private key `key_pem` (PEM) to a server that asks for
    /// a client certificate (`tls-auth-clients yes`).
    pub fn client_certificate(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.client_certificate = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// The redis crate's form of these settings.
    pub(super) fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: self
                .client_certificate
                .as_ref()
                .map(|(cert, key)| ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.root_certificate.clone(),
        }
    }
}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTls")
            .field("root_certificate", &self.root_certificate.is_some())
            .field("client_certificate", &self.client_certificate.is_some())
            .finish()
    }
}
