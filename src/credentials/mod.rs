//! Client credentials: where to get tokens and how to authenticate there.

use std::{fmt, net::IpAddr, sync::Arc};

use http::Uri;

use crate::{
    error::{Error, ErrorKind},
    redact,
    token::{Scope, Secret},
};

mod basic;
pub(crate) mod discovered;
mod form;
#[cfg(feature = "jwt")]
mod jwt;
#[cfg(feature = "https")]
mod mtls;
mod rotate;
mod url;

#[cfg(feature = "https")]
pub(crate) use self::mtls::{crypto_provider, ClientCertificate};
pub(crate) use self::rotate::with_rotation;
pub use self::rotate::{FileSecret, SecretSource};
use self::url::token_url_checked;

/// The SimpleDocs token endpoint.
pub const SIMPLEDOCS_TOKEN_URL: &str = "https://app.simpledocs.com/api/oauth/token";

/// A client secret: redacted in `Debug` and `Display`, wiped from memory on drop.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ClientSecret(Secret);

impl ClientSecret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Secret::new(secret.into()))
    }

    /// The secret itself; keep it out of logs. The same accessor as
    /// [`AccessToken::secret`](crate::AccessToken::secret).
    pub fn secret(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Display for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<String> for ClientSecret {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl From<&str> for ClientSecret {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

/// A secret an application already keeps in a `secrecy::SecretString`; its copy here is
/// wiped on drop too.
#[cfg(feature = "secrecy")]
impl From<secrecy::SecretString> for ClientSecret {
    fn from(s: secrecy::SecretString) -> Self {
        use secrecy::ExposeSecret;
        Self::new(s.expose_secret())
    }
}

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `client_id` and `client_secret` as form parameters in the request body; what
    /// SimpleDocs documents. The default.
    #[default]
    ClientSecretPost,
    /// HTTP Basic authentication (RFC 6749 §2.3.1).
    ///
    /// The id and the secret are each percent-encoded before Base64: every byte but
    /// `A-Z a-z 0-9 - . _ ~` is escaped, and a space becomes `%20`, never `+`. Servers
    /// that form-decode (turning `+` into a space) and servers that only percent-decode
    /// both read that back as the original text.
    ClientSecretBasic,
    /// Mutual TLS with a certificate a CA issued (RFC 8705 §2.1, `tls_client_auth`). The
    /// form carries `client_id` and no secret. See
    /// `ClientCredentials::client_certificate` (feature `https`).
    TlsClientAuth,
    /// Mutual TLS with a self-signed certificate the server has registered (RFC 8705 §2.2,
    /// `self_signed_tls_client_auth`). The form carries `client_id` and no secret.
    SelfSignedTlsClientAuth,
    /// An HS256 client assertion signed with the client secret (`client_secret_jwt`,
    /// RFC 7523 and OpenID Connect Core §9); the secret must be at least 32 bytes.
    #[cfg(feature = "jwt")]
    ClientSecretJwt,
    /// A client assertion signed with a private key, or from an assertion source
    /// (`private_key_jwt`); see [`ClientCredentials::private_key_jwt`].
    #[cfg(feature = "jwt")]
    PrivateKeyJwt,
}

/// What a client needs to get tokens: the token URL, its id and secret, the scope to ask
/// for and how to authenticate.
#[derive(Clone)]
pub struct ClientCredentials {
    token_url: Uri,
    client_id: String,
    client_secret: ClientSecret,
    scope: Option<Scope>,
    auth_method: AuthMethod,
    allow_http: bool,
    /// Further form parameters, in the order given.
    params: Vec<(String, String)>,
    /// Root certificates the built-in client trusts besides those its features select.
    #[cfg(feature = "https")]
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The certificate the built-in client presents, for mutual TLS.
    #[cfg(feature = "https")]
    client_cert: Option<ClientCertificate>,
    /// Where the secret comes from, when it rotates.
    secret_source: Option<Arc<rotate::Rotation>>,
    /// What discovery said about the token endpoint, when the credentials came from it.
    discovered: Option<Arc<discovered::Discovered>>,
    /// The signing key, assertion source and assertion lifetime.
    #[cfg(feature = "jwt")]
    jwt: jwt::JwtAuth,
}

/// The form parameters the grant itself sets: [`ClientCredentials::param`] refuses them.
const GRANT_PARAMS: [&str; 4] = ["grant_type", "scope", "client_id", "client_secret"];

impl ClientCredentials {
    /// Credentials for any OAuth 2.0 token endpoint.
    ///
    /// # Panics
    ///
    /// Panics, with the message of the error [`try_new`](Self::try_new) would return, if
    /// `token_url` is not a whole `http` or `https` URL; use `try_new` for a fallible
    /// version.
    pub fn new(
        token_url: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<ClientSecret>,
    ) -> Self {
        match Self::try_new(token_url, client_id, client_secret) {
            Ok(creds) => creds,
            Err(err) => panic!("{err}"),
        }
    }

    /// Credentials for any OAuth 2.0 token endpoint.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`] error, saying what is wrong, unless `token_url` is whole:
    /// an `http` or `https` scheme, a host, a port (if any) from 1 to 65535, no user
    /// name or password (pass them as `client_id` and `client_secret`) and no fragment.
    /// The error never shows the URL.
    pub fn try_new(
        token_url: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<ClientSecret>,
    ) -> Result<Self, Error> {
        let token_url = token_url_checked(token_url)?;
        Ok(Self {
            token_url,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scope: None,
            auth_method: AuthMethod::default(),
            allow_http: false,
            params: Vec::new(),
            #[cfg(feature = "https")]
            roots: Vec::new(),
            #[cfg(feature = "https")]
            client_cert: None,
            secret_source: None,
            discovered: None,
            #[cfg(feature = "jwt")]
            jwt: jwt::JwtAuth::default(),
        })
    }

    /// Credentials for the SimpleDocs API, with its documented token URL.
    pub fn simpledocs(
        client_id: impl Into<String>,
        client_secret: impl Into<ClientSecret>,
    ) -> Self {
        Self::new(SIMPLEDOCS_TOKEN_URL, client_id, client_secret)
    }

    /// Sets the scope to request, space-separated (`"read write"`). Default: none, the
    /// parameter is omitted and the server picks its default.
    pub fn scope(mut self, scope: impl Into<Scope>) -> Self {
        let scope = scope.into();
        self.scope = (!scope.is_empty()).then_some(scope);
        self
    }

    /// Sets the client authentication method. Default: [`AuthMethod::ClientSecretPost`],
    /// or for [discovered](Self::from_metadata) credentials the first of `client_secret_post`
    /// and `client_secret_basic` the provider supports.
    ///
    /// For discovered credentials, a method the provider does not list fails each fetch
    /// with an [`ErrorKind::Config`] error before anything is sent
    /// ([`try_auth_method`](Self::try_auth_method) refuses it at once). A TLS method
    /// selects the provider's mTLS token endpoint alias, if it has one.
    pub fn auth_method(mut self, method: AuthMethod) -> Self {
        self.auth_method = method;
        self.follow_discovered_endpoint();
        self
    }

    /// Allows a plain `http://` token URL on a host other than loopback. Default: `false`;
    /// plain HTTP is refused except on `127.0.0.0/8`, `::1` and `localhost`, since it
    /// would send the secret in the clear.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Adds a form parameter to every token request the built-in fetcher sends, for token
    /// endpoints that want more than the grant's own: `audience` (Auth0 and others),
    /// `resource` (RFC 8707; Azure AD v1). Each call adds one pair, sent after the
    /// grant's own parameters in the order given; a name given twice is sent twice (RFC
    /// 8707 allows several `resource`). Default: none.
    ///
    /// The names the grant sets itself, `grant_type`, `scope`, `client_id` and
    /// `client_secret` (set with [`scope`](Self::scope), [`auth_method`](Self::auth_method)
    /// and the constructor), and an empty name cannot be added: with one of them the
    /// built-in fetcher sends no token request and fails each with an
    /// [`ErrorKind::Config`] error that names the parameter.
    ///
    /// Values are sent as given and are not secrets to this crate (only the client secret
    /// is redacted from errors); `Debug` shows the names alone.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Adds root certificates the built-in HTTPS client trusts for the token endpoint,
    /// besides the operating system's: a private CA, or a TLS-inspecting proxy's. Default:
    /// none. `der_or_pem` is one DER certificate, or PEM text with one or more.
    ///
    /// Only [`HttpFetcher::https`](crate::fetch::HttpFetcher::https) (and so
    /// [`OAuthLayer::new`](crate::OAuthLayer::new)) uses them; a client passed to
    /// [`HttpFetcher::new`](crate::fetch::HttpFetcher::new) keeps its own.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`] error if `der_or_pem` holds no certificate, or one that
    /// cannot be a trust anchor.
    #[cfg(feature = "https")]
    pub fn add_root_certificate(mut self, der_or_pem: impl AsRef<[u8]>) -> Result<Self, Error> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let refused = |why: &str| {
            Error::new(ErrorKind::Config).with_detail(&format!("root certificate {why}"))
        };
        let bytes = der_or_pem.as_ref();
        let certs = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            CertificateDer::pem_slice_iter(bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| refused("is not valid PEM").with_source(e))?
        } else {
            vec![CertificateDer::from(bytes.to_vec())]
        };
        if certs.is_empty() {
            return Err(refused("PEM holds no certificate"));
        }
        for cert in &certs {
            rustls::RootCertStore::empty()
                .add(cert.clone())
                .map_err(|e| refused("cannot be a trust anchor").with_source(e))?;
        }
        self.roots.extend(certs);
        Ok(self)
    }

    /// The root certificates added with [`add_root_certificate`](Self::add_root_certificate).
    #[cfg(feature = "https")]
    pub(crate) fn root_certificates(&self) -> &[rustls::pki_types::CertificateDer<'static>] {
        &self.roots
    }

    /// The parameters added with [`param`](Self::param), in order.
    pub fn params(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.params.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The token URL.
    pub fn token_url(&self) -> &Uri {
        &self.token_url
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The client secret.
    pub fn client_secret(&self) -> &ClientSecret {
        &self.client_secret
    }

    /// The scope set with [`scope`](Self::scope), if any. Getters are named after their
    /// setter with `_ref`, as `http::request::Builder::method_ref` is.
    pub fn scope_ref(&self) -> Option<&Scope> {
        self.scope.as_ref()
    }

    /// The client authentication method set with [`auth_method`](Self::auth_method).
    pub fn auth_method_ref(&self) -> &AuthMethod {
        &self.auth_method
    }

    /// The configured scope.
    #[deprecated(since = "0.2.0", note = "renamed `scope_ref`, after its setter")]
    pub fn configured_scope(&self) -> Option<&Scope> {
        self.scope_ref()
    }

    /// The client authentication method.
    #[deprecated(since = "0.2.0", note = "renamed `auth_method_ref`, after its setter")]
    pub fn method(&self) -> AuthMethod {
        self.auth_method
    }

    /// Checks that the token URL may be used: HTTPS, or plain HTTP on loopback or when
    /// explicitly allowed.
    pub(crate) fn check_transport(&self) -> Result<(), Error> {
        if self.token_url.scheme_str() == Some("https") || self.allow_http {
            return Ok(());
        }
        let host = self.token_url.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if loopback {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::Config).with_detail(
                "refusing to send client credentials over plain http to a non-loopback host",
            ))
        }
    }

    /// Checks the parameters added with [`param`](Self::param): none may be one the grant
    /// sets itself, or nameless.
    pub(crate) fn check_params(&self) -> Result<(), Error> {
        let Some((name, _)) = self
            .params
            .iter()
            .find(|(name, _)| name.is_empty() || GRANT_PARAMS.contains(&name.as_str()))
        else {
            return Ok(());
        };
        let detail = if name.is_empty() {
            "a token request parameter has an empty name".to_owned()
        } else {
            format!("the token request parameter `{name}` is the grant's own and cannot be added")
        };
        Err(Error::new(ErrorKind::Config).with_detail(&detail))
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = f.debug_struct("ClientCredentials");
        shown
            .field("token_url", &redact::url(&self.token_url))
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("scope", &self.scope)
            .field("auth_method", &self.auth_method)
            .field("allow_insecure_http", &self.allow_http)
            .field(
                "params",
                &self.params.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            );
        #[cfg(feature = "https")]
        shown
            .field("root_certificates", &self.roots.len())
            .field("client_certificate", &self.client_cert);
        shown
            .field("secret_source", &self.secret_source.is_some())
            .field("discovered", &self.discovered.is_some());
        #[cfg(feature = "jwt")]
        shown.field("jwt", &self.jwt);
        shown.finish()
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use http::HeaderValue;

    use super::*;

    #[cfg(feature = "secrecy")]
    #[test]
    fn a_secrecy_secret_string_becomes_a_redacted_client_secret() {
        let secret = ClientSecret::from(secrecy::SecretString::from("s3cr3t-from-secrecy"));
        assert_eq!(secret.secret(), "s3cr3t-from-secrecy");
        assert!(!format!("{secret:?} {secret}").contains("s3cr3t"));
    }

    #[test]
    fn debug_shows_no_password_or_query_of_the_token_url() {
        // User info is refused at construction; any `Uri` shown is shown without it.
        let uri: Uri = "https://svc:hunter2-password@auth.example:8443/oauth/token?api_key=KEY-123"
            .parse()
            .unwrap();
        let shown = format!("{:?}", redact::url(&uri));
        assert_eq!(
            shown,
            "https://<redacted>@auth.example:8443/oauth/token?<redacted>"
        );
        let creds = ClientCredentials::new(
            "https://auth.example:8443/oauth/token?api_key=KEY-123",
            "id",
            "secret",
        );
        let shown = format!("{creds:?}");
        assert!(
            shown.contains(r#"token_url: https://auth.example:8443/oauth/token?<redacted>"#),
            "{shown}"
        );
        for hidden in ["KEY-123", "api_key"] {
            assert!(!shown.contains(hidden), "{hidden}: {shown}");
        }
        let plain = ClientCredentials::new("https://auth.example/token", "id", "secret");
        assert!(format!("{plain:?}").contains("token_url: https://auth.example/token,"));
    }

    #[test]
    fn a_token_url_that_is_not_whole_is_refused_with_what_is_wrong() {
        for (url, says) in [
            ("http://127.0.0.1:99999/token", "port"),
            ("http://127.0.0.1:65536/token", "port"),
            ("http://127.0.0.1:abc/token", "port"),
            ("http://127.0.0.1:-1/token", "port"),
            ("https://auth.example:443x/token", "port"),
            ("https://auth.example:/token", "port"),
            ("https://auth.example:+443/token", "port"),
            ("https://auth.example:0/token", "port"),
            ("http://[::1]:99999/token", "port"),
            ("https://auth.example/token#part", "fragment"),
            ("https://auth.example/token?a=b#part", "fragment"),
            ("ftp://auth.example/token", "http or https"),
            ("auth.example:443", "http or https"),
        ] {
            let err = ClientCredentials::try_new(url, "id", "secret").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{url}");
            let shown = err.to_string();
            assert!(shown.contains("token url"), "{url}: {shown}");
            assert!(shown.contains(says), "{url}: {shown}");
        }
        for url in [
            "https://auth.example:8443/oauth/token?tenant=a",
            "http://127.0.0.1:080/token",
            "http://[::1]:8080/token",
            "https://auth.example:65535/token",
            "HTTPS://Auth.Example/token",
        ] {
            assert!(
                ClientCredentials::try_new(url, "id", "secret").is_ok(),
                "{url}"
            );
        }
    }

    #[test]
    fn user_info_in_the_token_url_is_refused_without_being_shown() {
        for url in [
            "https://svc:hunter2-password@auth.example/token",
            "https://svc@auth.example/token",
            "https://:hunter2-password@auth.example/token",
            "https://@auth.example/token",
        ] {
            let err = ClientCredentials::try_new(url, "id", "secret").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{url}");
            let shown = format!("{err} {err:?}");
            // It says how credentials are passed instead.
            for part in [
                "user",
                "client id",
                "secret",
                "AuthMethod::ClientSecretBasic",
            ] {
                assert!(shown.contains(part), "{part}: {url}: {shown}");
            }
            for hidden in ["hunter2", "svc"] {
                assert!(!shown.contains(hidden), "{hidden}: {url}: {shown}");
            }
            // `new` panics with the same message.
            let panic = std::panic::catch_unwind(|| ClientCredentials::new(url, "id", "s"))
                .expect_err("new panics");
            let message = panic.downcast_ref::<String>().expect("a formatted message");
            assert!(
                message.contains("AuthMethod::ClientSecretBasic"),
                "{message}"
            );
            assert!(
                !message.contains("hunter2") && !message.contains("svc"),
                "{message}"
            );
        }
    }

    const HOSTILE: &str = "a+b&c=d%e/f\"g\\h i\u{fc}";

    fn decode_basic(value: &HeaderValue) -> (String, String) {
        let b64 = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (id, secret) = raw.split_once(':').unwrap();
        (id.to_owned(), secret.to_owned())
    }

    #[test]
    fn basic_credentials_read_the_same_with_form_and_plain_percent_decoding() {
        let creds = ClientCredentials::new("https://x.test/token", "id:1 +", HOSTILE)
            .auth_method(AuthMethod::ClientSecretBasic);
        let (id, secret) = decode_basic(&creds.basic_authorization().unwrap());
        assert!(!secret.contains('+') && !secret.contains(' '), "{secret}");
        for (enc, want) in [(&id, "id:1 +"), (&secret, HOSTILE)] {
            let form: String = form_urlencoded::parse(format!("v={enc}").as_bytes())
                .next()
                .unwrap()
                .1
                .into_owned();
            let plain = percent_encoding::percent_decode_str(enc)
                .decode_utf8()
                .unwrap();
            assert_eq!(form, want);
            assert_eq!(plain, want);
        }
        assert!(creds.basic_authorization().unwrap().is_sensitive());
        // Basic credentials stay out of the body.
        assert!(!creds.form_body(None, None).contains("client_secret"));
    }

    #[test]
    fn post_credentials_round_trip_through_form_decoding() {
        let creds = ClientCredentials::new("https://x.test/token", "id", HOSTILE);
        let body = creds.form_body(Some(&Scope::new("write read")), None);
        let pairs: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert!(pairs.contains(&("client_secret".into(), HOSTILE.into())));
        assert!(pairs.contains(&("grant_type".into(), "client_credentials".into())));
        assert!(pairs.contains(&("scope".into(), "read write".into())));
        assert!(creds.basic_authorization().is_none());
    }

    #[test]
    fn plain_http_only_on_loopback_unless_allowed() {
        let ok = |url: &str| {
            ClientCredentials::new(url, "i", "s")
                .check_transport()
                .is_ok()
        };
        assert!(ok("https://example.test/token"));
        assert!(ok("http://127.0.0.1:8080/token"));
        assert!(ok("http://127.8.0.1/token"));
        assert!(ok("http://[::1]:80/token"));
        assert!(ok("http://localhost/token"));
        assert!(!ok("http://example.test/token"));
        assert!(!ok("http://10.0.0.1/token"));
        assert!(ClientCredentials::new("http://example.test/t", "i", "s")
            .allow_insecure_http(true)
            .check_transport()
            .is_ok());
    }

    #[test]
    fn a_client_secret_is_redacted_in_debug_and_display() {
        let secret = ClientSecret::new("hunter2-s3cret");
        assert_eq!(format!("{secret:?}"), "ClientSecret(<redacted>)");
        assert_eq!(secret.to_string(), "<redacted>");
        assert_eq!(secret.secret(), "hunter2-s3cret");
    }

    #[test]
    fn credentials_debug_shows_everything_but_the_secret() {
        let creds =
            ClientCredentials::new("https://auth.test/token", "my-client", "hunter2-s3cret")
                .scope("read")
                .auth_method(AuthMethod::ClientSecretBasic)
                .param("client_assertion", "eyJ.private.value");
        let shown = format!("{creds:?}");
        for part in [
            "ClientCredentials",
            "https://auth.test/token",
            "my-client",
            "ClientSecret(<redacted>)",
            "read",
            "ClientSecretBasic",
            "allow_insecure_http: false",
            r#"params: ["client_assertion"]"#,
        ] {
            assert!(shown.contains(part), "{part} in {shown}");
        }
        assert!(!shown.contains("hunter2"), "{shown}");
        // A parameter can carry a credential: its name is shown, not its value.
        assert!(!shown.contains("eyJ.private.value"), "{shown}");
    }

    #[test]
    fn the_accessors_return_what_was_configured() {
        let creds = ClientCredentials::new("https://auth.test/token", "my-client", "s3cret")
            .scope("write read")
            .auth_method(AuthMethod::ClientSecretBasic)
            .param("client_assertion", "eyJ.private.value");
        assert_eq!(creds.token_url(), "https://auth.test/token");
        assert_eq!(
            creds.params().collect::<Vec<_>>(),
            [("client_assertion", "eyJ.private.value")]
        );
        assert_eq!(creds.client_id(), "my-client");
        assert_eq!(creds.client_secret().secret(), "s3cret");
        assert_eq!(creds.scope_ref(), Some(&Scope::new("read write")));
        assert_eq!(creds.auth_method_ref(), &AuthMethod::ClientSecretBasic);
        assert_eq!(
            *ClientCredentials::new("https://auth.test/token", "i", "s").auth_method_ref(),
            AuthMethod::ClientSecretPost
        );
    }

    #[test]
    fn an_empty_scope_is_left_out_of_the_request() {
        let creds = ClientCredentials::new("https://auth.test/token", "id", "s3cret").scope("  ");
        assert_eq!(creds.scope_ref(), None);
        let body = creds.form_body(creds.scope_ref(), None);
        assert!(!body.contains("scope"), "{}", body.as_str());
    }

    #[test]
    fn simpledocs_preset_uses_the_documented_url() {
        let creds = ClientCredentials::simpledocs("id", "secret").scope("read write");
        assert_eq!(creds.token_url().to_string(), SIMPLEDOCS_TOKEN_URL);
        assert_eq!(creds.scope_ref().unwrap().as_str(), "read write");
        assert!(!format!("{creds:?}").contains("\"secret\""));
        assert!(ClientCredentials::try_new("not a url", "i", "s").is_err());
        assert!(ClientCredentials::try_new("/relative", "i", "s").is_err());
        // A host that is there but empty is no host.
        for url in [
            "https://:443/token",
            "http://:8080/token",
            "https://u:p@:443/t",
        ] {
            assert!(ClientCredentials::try_new(url, "i", "s").is_err(), "{url}");
        }
    }
}
