//! Signed client authentication: `private_key_jwt` and `client_secret_jwt` settings.

use std::{fmt, sync::Arc, time::Duration};

use zeroize::Zeroizing;

use super::{AuthMethod, ClientCredentials};
use crate::{
    error::{Error, ErrorKind},
    jose::{sign_assertion, AssertionContext, AssertionSource, SigningKey},
};

/// How long a signed assertion is valid by default.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// The key, the assertion source and the assertion lifetime of a client.
#[derive(Clone, Default)]
pub(crate) struct JwtAuth {
    key: Option<SigningKey>,
    source: Option<Arc<dyn AssertionSource>>,
    lifetime: Option<Duration>,
}

impl fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("signing_key", &self.key)
            .field("assertion_source", &self.source.is_some())
            .field("assertion_lifetime", &self.lifetime)
            .finish()
    }
}

impl ClientCredentials {
    /// Credentials that authenticate with a client assertion signed by `key`
    /// (`private_key_jwt`); no client secret.
    ///
    /// # Panics
    ///
    /// As [`new`](Self::new) does, if `token_url` is not a whole `http` or `https` URL.
    pub fn private_key_jwt(token_url: &str, client_id: impl Into<String>, key: SigningKey) -> Self {
        Self::new(token_url, client_id, "").signing_key(key)
    }

    /// Sets the key client assertions are signed with, and the method to
    /// [`AuthMethod::PrivateKeyJwt`]. Default: none.
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.jwt.key = Some(key);
        self.auth_method = AuthMethod::PrivateKeyJwt;
        self
    }

    /// Sets a source asked for the client assertion of each token request, and the
    /// method to [`AuthMethod::PrivateKeyJwt`]. It is used instead of a
    /// [`signing_key`](Self::signing_key). Default: none.
    pub fn client_assertion(mut self, source: impl AssertionSource) -> Self {
        self.jwt.source = Some(Arc::new(source));
        self.auth_method = AuthMethod::PrivateKeyJwt;
        self
    }

    /// Sets how long an assertion signed here is valid (`exp` - `iat`), rounded down to
    /// whole seconds, at least one. Default: 60 seconds.
    pub fn assertion_lifetime(mut self, lifetime: Duration) -> Self {
        self.jwt.lifetime = Some(lifetime);
        self
    }

    /// The signing key set with [`signing_key`](Self::signing_key), if any.
    pub fn signing_key_ref(&self) -> Option<&SigningKey> {
        self.jwt.key.as_ref()
    }

    /// A fresh client assertion for one token request, if the method uses one.
    ///
    /// Errors are [`ErrorKind::Config`] errors, or the source's own [`Error`]: none is
    /// retried.
    pub(crate) async fn assertion(&self) -> Result<Option<Zeroizing<String>>, Error> {
        let ctx = || AssertionContext::new(self.client_id.as_str(), self.token_url.to_string());
        let lifetime = self.jwt.lifetime.unwrap_or(DEFAULT_LIFETIME);
        if !matches!(
            self.auth_method,
            AuthMethod::PrivateKeyJwt | AuthMethod::ClientSecretJwt
        ) {
            return Ok(None);
        }
        if let Some((name, _)) = self
            .params
            .iter()
            .find(|(n, _)| n == "client_assertion" || n == "client_assertion_type")
        {
            return Err(Error::new(ErrorKind::Config).with_detail(&format!(
                "the token request parameter `{name}` is the grant's own and cannot be added"
            )));
        }
        let assertion = match self.auth_method {
            AuthMethod::PrivateKeyJwt => match (&self.jwt.source, &self.jwt.key) {
                (Some(source), _) => {
                    let made = source.assertion(&ctx()).await.map_err(|e| {
                        match e.downcast::<Error>() {
                            Ok(err) => *err,
                            Err(e) => Error::new(ErrorKind::Config)
                                .with_detail("the client assertion source failed")
                                .with_source(e),
                        }
                    })?;
                    Zeroizing::new(made)
                }
                (None, Some(key)) => sign_assertion(key, &ctx(), lifetime)?,
                (None, None) => {
                    return Err(Error::new(ErrorKind::Config).with_detail(
                        "private_key_jwt needs a signing key or a client assertion source",
                    ))
                }
            },
            AuthMethod::ClientSecretJwt => {
                let key =
                    SigningKey::hs256(self.client_secret.secret().as_bytes()).map_err(|e| {
                        Error::new(ErrorKind::Config)
                            .with_detail(
                                "client_secret_jwt signs with the client secret, which must \
                                 be at least 32 bytes (RFC 7518 §3.2)",
                            )
                            .with_source(e)
                    })?;
                sign_assertion(&key, &ctx(), lifetime)?
            }
            _ => return Ok(None),
        };
        Ok(Some(assertion))
    }
}
