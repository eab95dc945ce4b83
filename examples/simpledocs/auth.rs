//! Client authentication: the `--auth-method` options, the key and certificate files they
//! name, and the token endpoint found by discovery (`--issuer`). What needs the `jwt`
//! feature (signed assertions, DPoP) is in `jose`.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use tower_oauth::{AuthMethod, ClientCredentials, ProviderMetadata};
use zeroize::Zeroizing;

use crate::shown::{self, Shown};

/// What to say when a `jwt` option is used in a build without the feature.
pub(crate) const NO_JWT: &str = "built without the jwt feature: run with --features jwt";

/// The client-authentication options, under their own heading in `--help`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Client authentication")]
pub(crate) struct AuthArgs {
    /// How the client proves who it is [default: post; with --issuer, post or basic,
    /// as the provider lists them]
    #[arg(long, value_enum, ignore_case = true, value_name = "METHOD")]
    auth_method: Option<AuthChoice>,
    /// (private_key_jwt) The private key, PEM (PKCS#8, or PKCS#1 for RSA) [default:
    /// against the embedded mock, a key generated for the run and registered with it]
    #[arg(long, value_name = "FILE")]
    private_key: Option<PathBuf>,
    /// (private_key_jwt) The key id sent as the assertions' `kid`
    #[arg(long, value_name = "KID")]
    key_id: Option<String>,
    /// (private_key_jwt) The assertions' algorithm [default: by the key's type: RS256
    /// for RSA, ES256 for P-256, EdDSA for Ed25519; ES256 for a generated key]
    #[arg(long, value_enum, ignore_case = true, value_name = "ALG")]
    signing_alg: Option<AlgChoice>,
    /// (tls_client_auth) The client certificate, PEM, followed by any intermediates
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// (tls_client_auth) The client certificate's private key, PEM
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Also trust this CA (PEM) for the token endpoint, e.g. a private CA; discovery
    /// and the API use the system's roots only
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Bind tokens to a key generated for the run (DPoP, RFC 9449): a proof with every
    /// token request and API call. The embedded mock then asks for its nonces (needs the
    /// jwt feature)
    #[arg(long)]
    dpop: bool,
    /// The DPoP proofs' algorithm
    #[arg(long, value_enum, ignore_case = true, value_name = "ALG", default_value_t = DpopAlg::ES256)]
    dpop_alg: DpopAlg,
}

/// `--auth-method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AuthChoice {
    /// client_secret_post: id and secret in the form
    #[value(alias = "client_secret_post")]
    Post,
    /// client_secret_basic: id and secret in an Authorization: Basic header
    #[value(alias = "client_secret_basic")]
    Basic,
    /// An assertion signed with --private-key (needs the jwt feature)
    #[value(name = "private_key_jwt", alias = "private-key-jwt")]
    PrivateKeyJwt,
    /// An HS256 assertion signed with the client secret, at least 32 bytes (needs the
    /// jwt feature)
    #[value(name = "client_secret_jwt", alias = "client-secret-jwt")]
    ClientSecretJwt,
    /// Mutual TLS with --client-cert and --client-key, against a real HTTPS server
    #[value(name = "tls_client_auth", alias = "tls-client-auth")]
    TlsClientAuth,
}

impl AuthChoice {
    /// Whether the client secret is what proves the client.
    pub(crate) fn uses_secret(self) -> bool {
        matches!(self, Self::Post | Self::Basic | Self::ClientSecretJwt)
    }
}

/// `--signing-alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AlgChoice {
    #[value(name = "RS256")]
    RS256,
    #[value(name = "PS256")]
    PS256,
    #[value(name = "ES256")]
    ES256,
    #[value(name = "EdDSA")]
    EdDSA,
}

/// `--dpop-alg`: the algorithms a DPoP key is generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DpopAlg {
    #[value(name = "ES256")]
    ES256,
    #[value(name = "EdDSA")]
    EdDSA,
}

/// `method`'s registered name (RFC 8414 §2), as the banner and the summary show it.
pub(crate) fn method_name(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::ClientSecretPost => "client_secret_post",
        AuthMethod::ClientSecretBasic => "client_secret_basic",
        AuthMethod::TlsClientAuth => "tls_client_auth",
        AuthMethod::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
        #[cfg(feature = "jwt")]
        AuthMethod::ClientSecretJwt => "client_secret_jwt",
        #[cfg(feature = "jwt")]
        AuthMethod::PrivateKeyJwt => "private_key_jwt",
        _ => "other",
    }
}

/// A PEM file as read, and where it came from (for messages; never its content).
pub(crate) struct Pem {
    pub(crate) path: PathBuf,
    pub(crate) bytes: Zeroizing<Vec<u8>>,
}

impl Pem {
    fn read(flag: &str, path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("{flag} {}: cannot read it ({e})", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            bytes: Zeroizing::new(bytes),
        })
    }
}

/// The client-authentication options, checked, with their files read.
pub(crate) struct AuthOptions {
    pub(crate) method: AuthChoice,
    /// Whether `--auth-method` was given (with `--issuer`, the provider picks otherwise).
    pub(crate) method_given: bool,
    pub(crate) private_key: Option<Pem>,
    pub(crate) key_id: Option<String>,
    pub(crate) signing_alg: Option<AlgChoice>,
    /// The certificate chain and its key.
    pub(crate) client_cert: Option<(Pem, Pem)>,
    pub(crate) ca_cert: Option<Pem>,
    pub(crate) dpop: Option<DpopAlg>,
}

impl std::fmt::Debug for AuthOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthOptions")
            .field("method", &self.method)
            .field("private_key", &self.private_key.as_ref().map(|k| &k.path))
            .field("dpop", &self.dpop)
            .finish_non_exhaustive()
    }
}

impl AuthOptions {
    /// Checks `args`; `mock_tokens` says whether the embedded mock is the token endpoint
    /// (no `--base-url`, `--token-url` or `--issuer`). Files are read here, so that a
    /// missing one is a usage error.
    pub(crate) fn checked(args: AuthArgs, mock_tokens: bool) -> Result<Self, String> {
        let method = args.auth_method.unwrap_or(AuthChoice::Post);
        let jwt_flag = matches!(
            method,
            AuthChoice::PrivateKeyJwt | AuthChoice::ClientSecretJwt
        ) || args.private_key.is_some()
            || args.key_id.is_some()
            || args.signing_alg.is_some()
            || args.dpop;
        if jwt_flag && !cfg!(feature = "jwt") {
            return Err(NO_JWT.into());
        }
        let key_flags =
            args.private_key.is_some() || args.key_id.is_some() || args.signing_alg.is_some();
        if key_flags && method != AuthChoice::PrivateKeyJwt {
            return Err(
                "--private-key, --key-id and --signing-alg need --auth-method private_key_jwt"
                    .into(),
            );
        }
        if method == AuthChoice::PrivateKeyJwt && args.private_key.is_none() && !mock_tokens {
            return Err(
                "--auth-method private_key_jwt needs --private-key: a key is \
                        generated only for the embedded mock, which registers it"
                    .into(),
            );
        }
        if method == AuthChoice::TlsClientAuth {
            if mock_tokens {
                return Err(
                    "--auth-method tls_client_auth needs a real server over HTTPS \
                            (--token-url or --issuer): the embedded mock serves plain HTTP \
                            and sees no client certificate"
                        .into(),
                );
            }
            if args.client_cert.is_none() {
                return Err(
                    "--auth-method tls_client_auth needs --client-cert and --client-key".into(),
                );
            }
        } else if args.client_cert.is_some() {
            return Err("--client-cert and --client-key need --auth-method tls_client_auth".into());
        }
        let client_cert = match (&args.client_cert, &args.client_key) {
            (Some(cert), Some(key)) => Some((
                Pem::read("--client-cert", cert)?,
                Pem::read("--client-key", key)?,
            )),
            // clap requires the two together.
            _ => None,
        };
        Ok(Self {
            method,
            method_given: args.auth_method.is_some(),
            private_key: args
                .private_key
                .as_deref()
                .map(|p| Pem::read("--private-key", p))
                .transpose()?,
            key_id: args.key_id,
            signing_alg: args.signing_alg,
            client_cert,
            ca_cert: args
                .ca_cert
                .as_deref()
                .map(|p| Pem::read("--ca-cert", p))
                .transpose()?,
            dpop: args.dpop.then_some(args.dpop_alg),
        })
    }

    /// The crate's method for a method that needs no key of `jose`'s; `None` for
    /// `private_key_jwt`, which `ClientCredentials::signing_key` sets.
    pub(crate) fn auth_method(&self) -> Option<AuthMethod> {
        match self.method {
            AuthChoice::Post => Some(AuthMethod::ClientSecretPost),
            AuthChoice::Basic => Some(AuthMethod::ClientSecretBasic),
            AuthChoice::TlsClientAuth => Some(AuthMethod::TlsClientAuth),
            #[cfg(feature = "jwt")]
            AuthChoice::ClientSecretJwt => Some(AuthMethod::ClientSecretJwt),
            // Refused by `checked` without the feature.
            #[cfg(not(feature = "jwt"))]
            AuthChoice::ClientSecretJwt => None,
            AuthChoice::PrivateKeyJwt => None,
        }
    }

    /// `creds` with the method and its certificate, and the extra root. Credentials
    /// `discovered` from metadata keep the method the provider's list chose, unless told.
    pub(crate) fn apply(
        &self,
        mut creds: ClientCredentials,
        discovered: bool,
    ) -> Result<ClientCredentials, String> {
        if let Some(method) = self.auth_method() {
            if self.method_given || !discovered {
                creds = creds.auth_method(method);
            }
        }
        if let Some((cert, key)) = &self.client_cert {
            // The crate's error names what is wrong and shows no key material.
            creds = creds
                .client_certificate(&*cert.bytes, &*key.bytes)
                .map_err(|e| {
                    format!(
                        "--client-cert {} / --client-key {}: {e}",
                        cert.path.display(),
                        key.path.display()
                    )
                })?;
        }
        if let Some(ca) = &self.ca_cert {
            creds = creds
                .add_root_certificate(&*ca.bytes)
                .map_err(|e| format!("--ca-cert {}: {e}", ca.path.display()))?;
        }
        Ok(creds)
    }
}

/// Where tokens come from: a token URL, or an issuer's metadata read once at start.
pub(crate) enum Endpoint {
    /// `--token-url`, or the default under the base URL.
    Url(String),
    /// What `--issuer` published.
    Discovered(Box<ProviderMetadata>),
}

impl Endpoint {
    /// The token URL, or the issuer's metadata, read now.
    pub(crate) async fn resolve(
        token_url: String,
        issuer: Option<&str>,
        shown: &Shown,
    ) -> Result<Self, String> {
        let Some(issuer) = issuer else {
            return Ok(Self::Url(token_url));
        };
        let metadata = ProviderMetadata::discover(issuer).await.map_err(|e| {
            let why = shown.text(&crate::report::chain(&e));
            format!("--issuer {}: discovery failed: {why}", shown::url(issuer))
        })?;
        Ok(Self::Discovered(Box::new(metadata)))
    }

    /// Credentials for this endpoint, before the method is applied.
    pub(crate) fn credentials(
        &self,
        id: &str,
        secret: String,
    ) -> Result<ClientCredentials, String> {
        match self {
            Self::Url(url) => ClientCredentials::try_new(url, id, secret)
                .map_err(|e| format!("token url {}: {e}", shown::url(url))),
            Self::Discovered(metadata) => ClientCredentials::from_metadata(metadata, id, secret)
                .map_err(|e| format!("the discovered token endpoint: {e}")),
        }
    }

    /// The token URL for the banner: for a TLS method, the provider's mTLS alias if any.
    pub(crate) fn shown_url(&self, method: AuthChoice) -> String {
        match self {
            Self::Url(url) => shown::url(url),
            Self::Discovered(m) => {
                let url = match (&m.mtls_token_endpoint, method) {
                    (Some(alias), AuthChoice::TlsClientAuth) => alias,
                    _ => &m.token_endpoint,
                };
                format!(
                    "{} (found at issuer {})",
                    shown::url(url),
                    shown::url(&m.issuer)
                )
            }
        }
    }
}
