//! Discovery of a provider's token endpoint (RFC 8414, OpenID Connect Discovery 1.0).
//!
//! [`ProviderMetadata::discover_with`] reads the issuer's metadata document and checks
//! it. [`Discovery`] keeps what it read, per issuer, so that many credentials built from
//! one issuer read the document once.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Map, Value};
use tokio::{sync::OnceCell, time::Instant};
use tower::ServiceExt;
use tower_service::Service;

use crate::credentials::{discovered::Discovered, AuthMethod, ClientCredentials, ClientSecret};
use crate::{
    error::{BoxError, Error, ErrorKind},
    fetch::MAX_TOKEN_RESPONSE_BYTES,
    sync::lock,
};

/// An authorization server's metadata (RFC 8414 §2): the fields this crate uses, and the
/// others as they were.
///
/// The fields are as the document gave them. [`discover_with`](Self::discover_with)
/// checked them; [`ClientCredentials::from_metadata`] checks the endpoints again.
///
/// ```
/// # #[cfg(feature = "test-util")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_oauth::BoxError> {
/// use tower_oauth::{mock::MockServer, AuthMethod, ClientCredentials, ProviderMetadata};
///
/// let server = MockServer::start().await?;
/// let client = hyper_util::client::legacy::Client::builder(
///     hyper_util::rt::TokioExecutor::new(),
/// )
/// .build_http();
/// let metadata = ProviderMetadata::discover_with(client, &server.base_url()).await?;
/// assert_eq!(metadata.token_endpoint, server.token_url());
/// assert!(metadata.supports(AuthMethod::ClientSecretBasic));
///
/// let creds = ClientCredentials::from_metadata(&metadata, "my-client", "my-secret")?;
/// assert_eq!(creds.token_url().to_string(), server.token_url());
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "test-util"))]
/// # fn main() {}
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProviderMetadata {
    /// The issuer identifier: the URL discovery was asked for.
    pub issuer: String,
    /// The token endpoint URL.
    pub token_endpoint: String,
    /// `token_endpoint_auth_methods_supported`, if listed.
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// `token_endpoint_auth_signing_alg_values_supported`, if listed.
    pub token_endpoint_auth_signing_alg_values_supported: Option<Vec<String>>,
    /// `dpop_signing_alg_values_supported` (RFC 9449), if listed.
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
    /// `mtls_endpoint_aliases.token_endpoint` (RFC 8705 §5), if given.
    pub mtls_token_endpoint: Option<String>,
    /// Every other field of the document.
    pub other: Map<String, Value>,
}

impl ProviderMetadata {
    /// Reads the metadata of `issuer` with the built-in HTTPS client; see
    /// [`discover_with`](Self::discover_with).
    ///
    /// # Errors
    ///
    /// As `discover_with`.
    ///
    /// # Panics
    ///
    /// As [`https_client`](crate::fetch::https_client) does: when there is no crypto provider.
    #[cfg(feature = "https")]
    pub async fn discover(issuer: &str) -> Result<Self, Error> {
        Self::discover_with(crate::fetch::https_client(), issuer).await
    }

    /// Reads the metadata of `issuer` over an HTTP client service.
    ///
    /// It asks for `/.well-known/oauth-authorization-server` first, put between the
    /// host and the issuer's path (RFC 8414 §3). If that answers anything but a 2xx
    /// status, it asks for `/.well-known/openid-configuration` appended to the issuer.
    /// The document is read up to [`MAX_TOKEN_RESPONSE_BYTES`].
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::Config`]: `issuer` is not an `https` URL (or `http` on loopback)
    ///   without query or fragment; the document's `issuer` is not exactly `issuer`
    ///   (RFC 8414 §3.3); or a token endpoint fails the checks of
    ///   [`ClientCredentials::try_new`], or is plain `http` off loopback.
    /// - [`ErrorKind::MalformedResponse`]: the document is not JSON, is too large, or
    ///   lacks `issuer` or `token_endpoint`.
    /// - [`ErrorKind::HttpStatus`]: both documents answered an error status.
    /// - [`ErrorKind::Transport`]: the client failed.
    pub async fn discover_with<C, B>(client: C, issuer: &str) -> Result<Self, Error>
    where
        C: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
        C::Error: Into<BoxError>,
        B: Body,
        B::Error: Into<BoxError>,
    {
        let issuer_url = checked_endpoint(issuer, "issuer")?;
        if issuer_url.query().is_some() {
            return Err(Error::new(ErrorKind::Config).with_detail("issuer must have no query"));
        }
        let [rfc8414, openid] = well_known(&issuer_url);
        let (status, body) = match get(client.clone(), rfc8414).await? {
            (status, body) if status.is_success() => (status, body),
            _ => get(client, openid).await?,
        };
        if !status.is_success() {
            return Err(Error::new(ErrorKind::HttpStatus)
                .with_status(status)
                .with_detail("discovery document not found"));
        }
        parse(&body, issuer)
    }

    /// Whether the provider lists `method` among its token endpoint auth methods; `true`
    /// when it lists none.
    pub fn supports(&self, method: AuthMethod) -> bool {
        let Some(listed) = &self.token_endpoint_auth_methods_supported else {
            return true;
        };
        listed.iter().any(|m| m == method.registered_name())
    }
}

/// `text` as an endpoint URL: whole, as a token URL must be, and `https` unless on
/// loopback. `what` names it in errors, which never show it.
fn checked_endpoint(text: &str, what: &str) -> Result<Uri, Error> {
    let refused = |err: Error| {
        let detail = format!("{what}: {err}");
        Error::new(ErrorKind::Config).with_detail(&detail)
    };
    let creds = ClientCredentials::try_new(text, "", "").map_err(refused)?;
    creds.check_transport().map_err(refused)?;
    Ok(creds.token_url().clone())
}

/// The RFC 8414 and the OpenID Connect well-known URLs of `issuer`.
fn well_known(issuer: &Uri) -> [Uri; 2] {
    let origin = format!(
        "{}://{}",
        issuer.scheme_str().unwrap_or("https"),
        issuer.authority().map_or("", |a| a.as_str())
    );
    // A terminating `/` is no path (RFC 8414 §3.1).
    let path = issuer.path().trim_end_matches('/');
    [
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}{path}/.well-known/openid-configuration"),
    ]
    .map(|url| url.parse().expect("built from a valid url"))
}

/// `GET url`: the status and the body, read up to the limit.
async fn get<C, B>(client: C, url: Uri) -> Result<(http::StatusCode, Bytes), Error>
where
    C: Service<Request<Full<Bytes>>, Response = Response<B>>,
    C::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut req = Request::new(Full::default());
    *req.uri_mut() = url;
    req.headers_mut()
        .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let response = client
        .oneshot(req)
        .await
        .map_err(|e| Error::new(ErrorKind::Transport).with_source(e))?;
    let (parts, body) = response.into_parts();
    let too_large = || Error::malformed("discovery document exceeds 64 KiB");
    match Limited::new(body, MAX_TOKEN_RESPONSE_BYTES).collect().await {
        Ok(collected) => Ok((parts.status, collected.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(Error::new(ErrorKind::Transport).with_source(e)),
    }
}

/// The metadata in `body`, checked against the `issuer` asked for.
fn parse(body: &[u8], issuer: &str) -> Result<ProviderMetadata, Error> {
    let Ok(Value::Object(mut doc)) = serde_json::from_slice::<Value>(body) else {
        return Err(Error::malformed("discovery document is not a json object"));
    };
    let mut string = |name: &'static str| match doc.remove(name) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(Error::malformed(name)),
    };
    let found_issuer = string("issuer")?;
    if found_issuer != issuer {
        // Neither is shown: either may carry credentials in its user info.
        return Err(Error::new(ErrorKind::Config)
            .with_detail("the discovery document names another issuer than the one asked for"));
    }
    let token_endpoint = string("token_endpoint")?;
    checked_endpoint(&token_endpoint, "token_endpoint")?;
    let mut list = |name: &'static str| match doc.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                _ => Err(Error::malformed(name)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(Error::malformed(name)),
    };
    let methods = list("token_endpoint_auth_methods_supported")?;
    let signing = list("token_endpoint_auth_signing_alg_values_supported")?;
    let dpop = list("dpop_signing_alg_values_supported")?;
    let mtls_token_endpoint = match doc.get("mtls_endpoint_aliases") {
        Some(Value::Object(aliases)) => match aliases.get("token_endpoint") {
            Some(Value::String(alias)) => {
                checked_endpoint(alias, "mtls_endpoint_aliases.token_endpoint")?;
                Some(alias.clone())
            }
            None => None,
            Some(_) => return Err(Error::malformed("mtls_endpoint_aliases")),
        },
        None => None,
        Some(_) => return Err(Error::malformed("mtls_endpoint_aliases")),
    };
    Ok(ProviderMetadata {
        issuer: found_issuer,
        token_endpoint,
        token_endpoint_auth_methods_supported: methods,
        token_endpoint_auth_signing_alg_values_supported: signing,
        dpop_signing_alg_values_supported: dpop,
        mtls_token_endpoint,
        other: doc,
    })
}

impl ClientCredentials {
    /// Credentials for the token endpoint `metadata` names.
    ///
    /// The method is `client_secret_post`, or `client_secret_basic` when the provider
    /// lists that and not the other. See [`auth_method`](Self::auth_method) for what
    /// changes with the method.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Config`] error if the token endpoint or its mTLS alias fails the
    /// checks of [`try_new`](Self::try_new), or is plain `http` off loopback.
    pub fn from_metadata(
        metadata: &ProviderMetadata,
        client_id: impl Into<String>,
        client_secret: impl Into<ClientSecret>,
    ) -> Result<Self, Error> {
        let token_endpoint = checked_endpoint(&metadata.token_endpoint, "token_endpoint")?;
        let mtls_token_endpoint = metadata
            .mtls_token_endpoint
            .as_deref()
            .map(|alias| checked_endpoint(alias, "mtls_endpoint_aliases.token_endpoint"))
            .transpose()?;
        let mut creds = Self::try_new(&metadata.token_endpoint, client_id, client_secret)?;
        creds.set_discovered(Discovered {
            token_endpoint,
            mtls_token_endpoint,
            methods: metadata.token_endpoint_auth_methods_supported.clone(),
        });
        let method = if !metadata.supports(AuthMethod::ClientSecretPost)
            && metadata.supports(AuthMethod::ClientSecretBasic)
        {
            AuthMethod::ClientSecretBasic
        } else {
            AuthMethod::ClientSecretPost
        };
        Ok(creds.auth_method(method))
    }
}

/// The discovery documents of issuers, each read once and kept for a time.
///
/// [`metadata`](Self::metadata) reads an issuer's document on first use and keeps the
/// checked [`ProviderMetadata`] for the [`ttl`](Self::ttl), 24 hours by default. Callers
/// asking at once share one read. A failed read is not kept. Clones share what is kept.
pub struct Discovery<C> {
    client: C,
    ttl: Duration,
    entries: Arc<Mutex<HashMap<String, Arc<OnceCell<Kept>>>>>,
}

/// A document and when it was read.
struct Kept {
    read_at: Instant,
    metadata: Arc<ProviderMetadata>,
}

impl<C: Clone> Clone for Discovery<C> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            ttl: self.ttl,
            entries: self.entries.clone(),
        }
    }
}

impl<C> fmt::Debug for Discovery<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery")
            .field("ttl", &self.ttl)
            .field("issuers", &lock(&self.entries).len())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "https")]
impl Discovery<crate::fetch::HttpsClient> {
    /// A cache that reads with the built-in HTTPS client.
    ///
    /// # Panics
    ///
    /// As [`https_client`](crate::fetch::https_client) does: when there is no crypto provider.
    pub fn new() -> Self {
        Self::with_client(crate::fetch::https_client())
    }
}

#[cfg(feature = "https")]
impl Default for Discovery<crate::fetch::HttpsClient> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> Discovery<C> {
    /// A cache that reads over an HTTP client service.
    pub fn with_client(client: C) -> Self {
        Self {
            client,
            ttl: Duration::from_secs(24 * 60 * 60),
            entries: Arc::default(),
        }
    }

    /// Sets how long a document is kept. Default: 24 hours.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

impl<C, B> Discovery<C>
where
    C: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    C::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    /// The metadata of `issuer`, read with
    /// [`ProviderMetadata::discover_with`] unless a read younger than the TTL is kept.
    ///
    /// # Errors
    ///
    /// As `discover_with`.
    pub async fn metadata(&self, issuer: &str) -> Result<Arc<ProviderMetadata>, Error> {
        let cell = {
            let mut entries = lock(&self.entries);
            let cell = entries.entry(issuer.to_owned()).or_default();
            if cell
                .get()
                .is_some_and(|kept| kept.read_at.elapsed() >= self.ttl)
            {
                *cell = Arc::default();
            }
            cell.clone()
        };
        let kept = cell
            .get_or_try_init(|| async {
                let metadata = ProviderMetadata::discover_with(self.client.clone(), issuer).await?;
                Ok::<_, Error>(Kept {
                    read_at: Instant::now(),
                    metadata: Arc::new(metadata),
                })
            })
            .await?;
        Ok(kept.metadata.clone())
    }

    /// Credentials for `issuer`'s token endpoint: [`metadata`](Self::metadata), then
    /// [`ClientCredentials::from_metadata`].
    ///
    /// # Errors
    ///
    /// As those two.
    pub async fn credentials(
        &self,
        issuer: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<ClientSecret>,
    ) -> Result<ClientCredentials, Error> {
        let metadata = self.metadata(issuer).await?;
        ClientCredentials::from_metadata(&metadata, client_id, client_secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_well_known_part_goes_between_host_and_path() {
        let urls = |issuer: &str| well_known(&issuer.parse().unwrap()).map(|u| u.to_string());
        assert_eq!(
            urls("https://auth.example/tenant/1"),
            [
                "https://auth.example/.well-known/oauth-authorization-server/tenant/1",
                "https://auth.example/tenant/1/.well-known/openid-configuration",
            ]
        );
        for issuer in ["https://auth.example", "https://auth.example/"] {
            assert_eq!(
                urls(issuer),
                [
                    "https://auth.example/.well-known/oauth-authorization-server",
                    "https://auth.example/.well-known/openid-configuration",
                ]
            );
        }
    }

    #[test]
    fn a_document_that_is_not_an_object_or_lacks_a_field_is_malformed() {
        for body in [
            &b"not json"[..],
            b"[]",
            br#"{"token_endpoint":"https://a.example/t"}"#,
            br#"{"issuer":"https://a.example"}"#,
            br#"{"issuer":"https://a.example","token_endpoint":"https://a.example/t","token_endpoint_auth_methods_supported":"client_secret_post"}"#,
        ] {
            let err = parse(body, "https://a.example").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MalformedResponse, "{err}");
        }
    }
}
