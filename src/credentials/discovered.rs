//! What credentials built from an authorization server's metadata keep of it, and the
//! registered names of the auth methods (fetching the metadata is in `crate::discovery`).

use http::Uri;

use crate::error::{Error, ErrorKind};
use crate::{AuthMethod, ClientCredentials};

impl AuthMethod {
    /// The method's registered name (RFC 8414 §2, RFC 8705 §2, OpenID Connect Core §9),
    /// as `token_endpoint_auth_methods_supported` lists it.
    pub(crate) fn registered_name(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::TlsClientAuth => "tls_client_auth",
            AuthMethod::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
            #[cfg(feature = "jwt")]
            AuthMethod::ClientSecretJwt => "client_secret_jwt",
            #[cfg(feature = "jwt")]
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }

    /// Whether the client authenticates with its TLS certificate.
    pub(crate) fn is_tls(self) -> bool {
        matches!(
            self,
            AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth
        )
    }
}

/// What credentials built from metadata keep of it.
#[derive(Debug)]
pub(crate) struct Discovered {
    pub(crate) token_endpoint: Uri,
    pub(crate) mtls_token_endpoint: Option<Uri>,
    pub(crate) methods: Option<Vec<String>>,
}

impl ClientCredentials {
    /// [`auth_method`](Self::auth_method), refusing at once, for credentials built from
    /// a provider's metadata, a method the provider does not list.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] naming the method; `self` is dropped.
    pub fn try_auth_method(self, method: AuthMethod) -> Result<Self, Error> {
        let creds = self.auth_method(method);
        creds.check_auth_method()?;
        Ok(creds)
    }

    /// Keeps what discovery found.
    pub(crate) fn set_discovered(&mut self, found: Discovered) {
        self.discovered = Some(std::sync::Arc::new(found));
    }

    /// Points discovered credentials at the endpoint their method uses.
    pub(super) fn follow_discovered_endpoint(&mut self) {
        if let Some(found) = &self.discovered {
            self.token_url = match (&found.mtls_token_endpoint, self.auth_method.is_tls()) {
                (Some(alias), true) => alias.clone(),
                _ => found.token_endpoint.clone(),
            };
        }
    }

    /// Checks that discovered credentials use a method the provider lists.
    pub(crate) fn check_auth_method(&self) -> Result<(), Error> {
        let Some(listed) = self.discovered.as_ref().and_then(|d| d.methods.as_ref()) else {
            return Ok(());
        };
        let name = self.auth_method.registered_name();
        if listed.iter().any(|m| m == name) {
            return Ok(());
        }
        Err(Error::new(ErrorKind::Config).with_detail(&format!(
            "the provider does not list the token endpoint auth method `{name}`"
        )))
    }
}
