//! The standard fetcher: a client-credentials form POST over an HTTP client service.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use tower::ServiceExt;
use tower_service::Service;

use super::{
    parse::{parse_as, too_large, MAX_TOKEN_RESPONSE_BYTES},
    signed::{wants_nonce, Signed},
};
use crate::{
    credentials::{with_rotation, ClientCredentials},
    error::{BoxError, Error, ErrorKind},
    redact::Redactor,
    token::{Token, TokenRequest},
};

/// Fetches tokens with the client-credentials grant over an HTTP client service `C`.
///
/// The request is a `POST` of `application/x-www-form-urlencoded` to the token URL,
/// authenticated as [`ClientCredentials::auth_method`] says, asking for the
/// [`TokenRequest`]'s scope, or, when it names none and the scope is not
/// [explicit](TokenRequest::scope_is_explicit) (the default policy of
/// [`OAuthLayer::with_fetcher`](crate::OAuthLayer::with_fetcher)), the credentials' own
/// [`scope`](ClientCredentials::scope), followed by any parameters added with
/// [`ClientCredentials::param`]. The response is read up to
/// [`MAX_TOKEN_RESPONSE_BYTES`] and parsed by
/// [`parse_token_response`](super::parse_token_response). Redirects are never followed
/// (a 3xx is an [`ErrorKind::HttpStatus`] error), and a plain-HTTP token URL is refused
/// unless it is on loopback or explicitly allowed.
pub struct HttpFetcher<C> {
    client: C,
    creds: Arc<ClientCredentials>,
    /// Whether the client is the built-in one, which presents the credentials' certificate.
    presents_cert: bool,
}

impl<C: Clone> Clone for HttpFetcher<C> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            creds: self.creds.clone(),
            presents_cert: self.presents_cert,
        }
    }
}

impl<C> fmt::Debug for HttpFetcher<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpFetcher")
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }
}

impl<C> HttpFetcher<C> {
    /// A fetcher over an HTTP client service the application already has.
    ///
    /// Not one behind the concurrency limit or buffer of the service the layer wraps:
    /// requests waiting for a token hold what the service's readiness reserved, which
    /// the fetch would then wait for (see [Readiness and
    /// capacity](crate#readiness-and-capacity)).
    pub fn new(client: C, creds: ClientCredentials) -> Self {
        Self {
            client,
            creds: Arc::new(creds),
            presents_cert: false,
        }
    }

    /// The credentials it uses.
    pub fn credentials(&self) -> &ClientCredentials {
        &self.creds
    }
}

#[cfg(feature = "https")]
impl HttpFetcher<super::https::HttpsClient> {
    /// A fetcher over the built-in HTTPS client (see [`HttpsClient`](super::HttpsClient)),
    /// trusting the credentials' extra root certificates too.
    ///
    /// # Panics
    ///
    /// As [`https_client`](super::https_client) does: when there is no crypto provider.
    pub fn https(creds: ClientCredentials) -> Self {
        let proxies = hyper_util::client::proxy::matcher::Matcher::from_env();
        let client =
            super::https::client_with(creds.root_certificates(), creds.client_cert(), proxies);
        Self {
            presents_cert: true,
            ..Self::new(client, creds)
        }
    }
}

impl<C, ResB> Service<TokenRequest> for HttpFetcher<C>
where
    C: Service<Request<Full<Bytes>>, Response = Response<ResB>> + Clone + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Into<BoxError>,
{
    type Response = Token;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Token, Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Readiness of the client is awaited in the call: fetches are rare and cold.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: TokenRequest) -> Self::Future {
        let client = self.client.clone();
        let creds = self.creds.clone();
        let host: Option<Arc<str>> = crate::redact::host(creds.token_url()).map(Arc::from);
        let presents_cert = self.presents_cert;
        // One token request; sent again only when the secret source gives a new secret.
        let attempt = move |client: C, creds: Arc<ClientCredentials>, request: TokenRequest| async move {
            creds.check_transport()?;
            creds.check_params()?;
            creds.check_auth_method()?;
            if presents_cert {
                #[cfg(feature = "https")]
                creds.check_client_cert()?;
            }
            let default = creds.scope_ref().filter(|_| !request.scope_is_explicit());
            // An empty scope is none (RFC 6749 §3: a parameter without a value counts as
            // omitted), as the layer treats it.
            let asked = request.scope.as_ref().filter(|s| !s.is_empty());
            let scope = asked.or(default);
            let mut redactor = creds.redactor();
            // A DPoP server may answer `use_dpop_nonce` once, with the nonce it wants.
            let mut nonce_asked = false;
            loop {
                // Fresh for each attempt: an assertion's `jti` and a proof are single-use.
                let signed = Signed::new(&creds, &request, &mut redactor).await?;
                let body = creds.form_body(scope, signed.assertion.as_deref().map(|a| a.as_str()));
                let mut req = Request::builder()
                    .method(Method::POST)
                    .uri(creds.token_url().clone())
                    .header(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/x-www-form-urlencoded"),
                    )
                    .header(header::ACCEPT, HeaderValue::from_static("application/json"))
                    .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
                    .map_err(|e| Error::new(ErrorKind::Config).with_source(e))?;
                if let Some(basic) = creds.basic_authorization() {
                    req.headers_mut().insert(header::AUTHORIZATION, basic);
                }
                let proof_sent = signed.proof.is_some();
                #[cfg(feature = "jwt")]
                if let Some(proof) = signed.proof {
                    req.headers_mut().insert(crate::jose::DPOP, proof);
                }
                let response = client
                    .clone()
                    .oneshot(req)
                    .await
                    .map_err(|e| transport_error(e.into(), &redactor))?;
                let (parts, body) = response.into_parts();
                if let Some(len) = parts
                    .headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    if len > MAX_TOKEN_RESPONSE_BYTES as u64 {
                        return Err(too_large(parts.status, &parts.headers));
                    }
                }
                let bytes = match Limited::new(body, MAX_TOKEN_RESPONSE_BYTES).collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                        return Err(too_large(parts.status, &parts.headers))
                    }
                    Err(e) => return Err(transport_error(e, &redactor)),
                };
                // A server may echo what it was sent in its error description, whole, in
                // part or encoded; keep it out of the error (and so out of logs).
                let result = parse_as(parts.status, &parts.headers, &bytes, &redactor, proof_sent);
                // The nonce is kept from every answer (the last one is the one to use),
                // and asked for once.
                if wants_nonce(&creds, &request, &parts.headers, &result) && !nonce_asked {
                    nonce_asked = true;
                    continue;
                }
                return result;
            }
        };
        let fetch = with_rotation(creds, move |creds| {
            attempt(client.clone(), creds, request.clone())
        });
        Box::pin(async move { fetch.await.map_err(|e| e.with_origin(None, host.as_ref())) })
    }
}

/// A transport failure, with the client's error as its source, unless that error (or one
/// it chains to) shows the secret, as a client that repeats its request in its errors
/// would: the source is then the error's text, cleaned (see [`redact`](crate::redact)).
fn transport_error(err: BoxError, redactor: &Redactor) -> Error {
    let mut shown = format!("{err} {err:?}");
    let mut source = err.source();
    while let Some(inner) = source {
        shown.push_str(&format!(" {inner} {inner:?}"));
        source = inner.source();
    }
    if !redactor.holds_secret(&shown) {
        return Error::new(ErrorKind::Transport).with_source(err);
    }
    Error::new(ErrorKind::Transport).with_source(redactor.clean(&err.to_string()))
}

#[cfg(test)]
mod tests {
    use std::{sync::Mutex, time::Duration};

    use super::*;
    use crate::{credentials::AuthMethod, token::FetchReason};

    type Forms = Arc<Mutex<Vec<String>>>;

    /// A scripted token endpoint client.
    type Endpoint = tower::util::BoxCloneSyncService<
        Request<Full<Bytes>>,
        Response<Full<Bytes>>,
        std::convert::Infallible,
    >;

    /// A token endpoint client that answers `status` and `body`, and keeps each form and
    /// `Authorization` value it is sent.
    fn canned(status: u16, body: String, sent: Forms) -> Endpoint {
        Endpoint::new(tower::service_fn(move |req: Request<Full<Bytes>>| {
            let sent = sent.clone();
            let body = body.clone();
            async move {
                let auth = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .map(|v| v.to_str().unwrap().to_owned());
                let form = req.into_body().collect().await.unwrap().to_bytes();
                let mut sent = sent.lock().unwrap();
                sent.push(String::from_utf8(form.to_vec()).unwrap());
                sent.extend(auth);
                let mut res = Response::new(Full::new(Bytes::from(body)));
                *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
                Ok(res)
            }
        }))
    }

    /// A token endpoint client that answers a success with `body` and a `Content-Length`
    /// that matches it.
    fn with_length(body: Vec<u8>) -> Endpoint {
        let body = Bytes::from(body);
        Endpoint::new(tower::service_fn(move |_req: Request<Full<Bytes>>| {
            let body = body.clone();
            async move {
                let mut res = Response::new(Full::new(body.clone()));
                res.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
                Ok(res)
            }
        }))
    }

    /// A token endpoint client that answers `status` with `Retry-After: 7` and a body one
    /// byte over the limit, its length declared or not.
    fn oversized(status: u16, declared: bool) -> Endpoint {
        Endpoint::new(tower::service_fn(
            move |_req: Request<Full<Bytes>>| async move {
                let body = vec![b' '; MAX_TOKEN_RESPONSE_BYTES + 1];
                let len = body.len();
                let mut res = Response::new(Full::new(Bytes::from(body)));
                *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
                if declared {
                    res.headers_mut()
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                }
                Ok(res)
            },
        ))
    }

    #[tokio::test]
    async fn an_error_status_with_a_body_over_the_limit_keeps_what_its_head_says() {
        let creds = ClientCredentials::new("https://auth.example/token", "id", "secret");
        for (status, retryable) in [(429, true), (408, true), (503, true), (400, false)] {
            for declared in [true, false] {
                let err = HttpFetcher::new(oversized(status, declared), creds.clone())
                    .oneshot(TokenRequest::new(None, FetchReason::First))
                    .await
                    .unwrap_err();
                let case = format!("{status}, length declared: {declared}: {err}");
                assert_eq!(err.kind(), ErrorKind::HttpStatus, "{case}");
                assert_eq!(err.status().map(|s| s.as_u16()), Some(status), "{case}");
                assert_eq!(err.is_retryable(), retryable, "{case}");
                assert_eq!(err.retry_after(), Some(Duration::from_secs(7)), "{case}");
                assert!(err.to_string().contains("exceeds 64 KiB"), "{case}");
            }
        }
    }

    async fn fetch(creds: ClientCredentials, status: u16, body: String) -> Result<Token, Error> {
        HttpFetcher::new(canned(status, body, Forms::default()), creds)
            .oneshot(TokenRequest::new(None, FetchReason::First))
            .await
    }

    #[tokio::test]
    async fn the_secret_is_redacted_in_every_form_the_server_could_echo_it() {
        const SECRET: &str = "k3y/With/Slashes+plus&more";
        for method in [AuthMethod::ClientSecretPost, AuthMethod::ClientSecretBasic] {
            let creds = ClientCredentials::new("https://auth.example/token", "id", SECRET)
                .auth_method(method);
            // What was sent, as the server saw it: the form body or the Basic value.
            let sent = Forms::default();
            let _ = HttpFetcher::new(canned(401, "{}".into(), sent.clone()), creds.clone())
                .oneshot(TokenRequest::new(None, FetchReason::First))
                .await;
            let sent = sent.lock().unwrap().join(" ");
            let echoes = [
                // Escaped as PHP's json_encode does by default, and as \u escapes.
                serde_json::to_string(SECRET).unwrap().replace('/', "\\/"),
                format!("\"{}\"", SECRET.replace('k', "\\u006b")),
                // The whole request echoed: form-encoded or base64, as sent.
                serde_json::to_string(&sent).unwrap(),
            ];
            for echo in echoes {
                let body = format!(r#"{{"error":"invalid_client","error_description":{echo}}}"#);
                let err = fetch(creds.clone(), 401, body).await.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::InvalidClient);
                let shown = format!("{err} {err:?}");
                assert!(shown.contains("<redacted>"), "{method:?} {echo}: {shown}");
                assert!(!shown.contains(SECRET), "{method:?} {echo}: {shown}");
                for form in creds.secret_forms() {
                    assert!(!shown.contains(form.as_str()), "{method:?} {echo}: {shown}");
                }
            }
        }
        // A problem document's text is redacted too, and its type, before the type is cut
        // to its last path segment (which would hold a part of this secret).
        let creds = ClientCredentials::new("https://auth.example/token", "id", SECRET);
        let body = format!(r#"{{"type":"{SECRET}","detail":"got {SECRET}"}}"#);
        let err = fetch(creds, 400, body).await.unwrap_err();
        let shown = format!("{err} {err:?}");
        for part in SECRET.split('/').filter(|p| p.len() >= 4) {
            assert!(!shown.contains(part), "{part}: {shown}");
        }
    }

    #[tokio::test]
    async fn a_token_response_of_exactly_the_limit_is_read_and_a_longer_one_is_not() {
        let creds = ClientCredentials::new("https://auth.example/token", "id", "secret");
        let body = |len: usize| {
            let mut body = br#"{"access_token":"t","pad":""#.to_vec();
            body.resize(len - 2, b'x');
            body.extend_from_slice(br#""}"#);
            body
        };
        let at_limit = body(MAX_TOKEN_RESPONSE_BYTES);
        assert_eq!(at_limit.len(), 64 * 1024);
        let token = HttpFetcher::new(with_length(at_limit), creds.clone())
            .oneshot(TokenRequest::new(None, FetchReason::First))
            .await
            .unwrap();
        assert_eq!(token.access_token.secret(), "t");

        let err = HttpFetcher::new(with_length(body(MAX_TOKEN_RESPONSE_BYTES + 1)), creds)
            .oneshot(TokenRequest::new(None, FetchReason::First))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MalformedResponse);
        assert!(err.to_string().contains("64 KiB"), "{err}");
    }

    /// A client error that repeats the form it failed to send, as some clients' do.
    #[derive(Debug)]
    struct Repeats(String);

    impl fmt::Display for Repeats {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "could not send {}", self.0)
        }
    }

    impl std::error::Error for Repeats {}

    #[tokio::test]
    async fn a_transport_error_that_repeats_the_request_does_not_carry_the_secret() {
        const SECRET: &str = "s3cret-transport-77";
        let failing = |repeat: bool| {
            tower::service_fn(move |req: Request<Full<Bytes>>| async move {
                let form = req.into_body().collect().await.unwrap().to_bytes();
                let text = if repeat {
                    String::from_utf8(form.to_vec()).unwrap()
                } else {
                    "the form".to_owned()
                };
                Err::<Response<Full<Bytes>>, _>(Repeats(text))
            })
        };
        let creds = ClientCredentials::new("https://auth.example/token", "id", SECRET);
        for repeat in [true, false] {
            let err = HttpFetcher::new(failing(repeat), creds.clone())
                .oneshot(TokenRequest::new(None, FetchReason::First))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Transport);
            let source = std::error::Error::source(&err).expect("a source");
            let shown = format!("{err} {err:?} {source}");
            assert!(!shown.contains(SECRET), "{shown}");
            assert!(shown.contains("could not send"), "{shown}");
            // A client error that shows no secret stays the source as it is.
            assert_eq!(source.is::<Repeats>(), !repeat, "{shown}");
        }
        // One that shows it in an encoding of its own (lowercase percent-hex) is caught.
        let creds = ClientCredentials::new("https://auth.example/token", "id", "p@ss w0rd/x");
        let lowercase = tower::service_fn(|_: Request<Full<Bytes>>| async {
            Err::<Response<Full<Bytes>>, _>(Repeats("sent p%40ss%20w0rd%2fx".to_owned()))
        });
        let err = HttpFetcher::new(lowercase, creds)
            .oneshot(TokenRequest::new(None, FetchReason::First))
            .await
            .unwrap_err();
        let source = std::error::Error::source(&err).expect("a source");
        let shown = format!("{err} {err:?} {source} {:?}", err.causes());
        assert!(!shown.contains("w0rd"), "{shown}");
        assert!(!source.is::<Repeats>(), "{shown}");
    }

    #[test]
    fn the_fetcher_debug_shows_its_credentials_without_the_secret() {
        let creds = ClientCredentials::new("https://auth.example/token", "my-client", "hunter2");
        let shown = format!("{:?}", HttpFetcher::new((), creds));
        for part in ["HttpFetcher", "my-client", "ClientSecret(<redacted>)"] {
            assert!(shown.contains(part), "{part} in {shown}");
        }
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[tokio::test]
    async fn the_credentials_scope_is_asked_for_when_the_request_names_none_but_not_explicitly() {
        let creds = ClientCredentials::new("https://auth.example/token", "id", "secret")
            .scope("read write");
        let token = r#"{"access_token":"t","token_type":"Bearer","expires_in":60}"#;
        for (asked, explicit, want) in [
            (None, false, Some("scope=read+write")),
            (Some("read"), false, Some("scope=read&")),
            (None, true, None),
            (Some("read"), true, Some("scope=read&")),
            // An empty scope is none: never `scope=` (RFC 6749 §3).
            (Some("  "), false, Some("scope=read+write")),
            (Some(""), true, None),
        ] {
            let sent = Forms::default();
            let request = TokenRequest::new(asked.map(crate::Scope::new), FetchReason::First)
                .with_explicit_scope(explicit);
            HttpFetcher::new(canned(200, token.into(), sent.clone()), creds.clone())
                .oneshot(request)
                .await
                .unwrap();
            let form = sent.lock().unwrap()[0].clone();
            match want {
                Some(want) => assert!(form.contains(want), "{asked:?}, {explicit}: {form}"),
                None => assert!(!form.contains("scope"), "{asked:?}, {explicit}: {form}"),
            }
        }
    }

    #[tokio::test]
    async fn added_parameters_follow_the_grants_own_in_order_and_encoded() {
        let token = r#"{"access_token":"t","token_type":"Bearer","expires_in":60}"#;
        for method in [AuthMethod::ClientSecretPost, AuthMethod::ClientSecretBasic] {
            let creds = ClientCredentials::new("https://auth.example/token", "id", "secret")
                .auth_method(method)
                .scope("read")
                .param("audience", "https://api.example/ & more")
                .param("resource", "urn:one")
                .param("resource", "urn:two");
            let sent = Forms::default();
            HttpFetcher::new(canned(200, token.into(), sent.clone()), creds)
                .oneshot(TokenRequest::new(None, FetchReason::First))
                .await
                .unwrap();
            let form = sent.lock().unwrap()[0].clone();
            let pairs: Vec<(String, String)> = form_urlencoded::parse(form.as_bytes())
                .into_owned()
                .collect();
            let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
            let grant: &[&str] = match method {
                AuthMethod::ClientSecretPost => {
                    &["grant_type", "scope", "client_id", "client_secret"]
                }
                _ => &["grant_type", "scope"],
            };
            assert_eq!(names[..grant.len()], *grant, "{form}");
            assert_eq!(
                pairs[grant.len()..],
                [
                    ("audience".into(), "https://api.example/ & more".into()),
                    ("resource".into(), "urn:one".into()),
                    ("resource".into(), "urn:two".into()),
                ],
                "{form}"
            );
        }
    }

    #[tokio::test]
    async fn a_parameter_the_grant_sets_itself_is_refused_before_anything_is_sent() {
        for name in ["grant_type", "scope", "client_id", "client_secret", ""] {
            let creds = ClientCredentials::new("https://auth.example/token", "id", "secret")
                .param("audience", "a")
                .param(name, "x");
            let sent = Forms::default();
            let token = r#"{"access_token":"t","token_type":"Bearer","expires_in":60}"#;
            let err = HttpFetcher::new(canned(200, token.into(), sent.clone()), creds)
                .oneshot(TokenRequest::new(None, FetchReason::First))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{name:?}");
            assert!(!err.is_retryable(), "{name:?}");
            let shown = err.to_string();
            let named = if name.is_empty() { "empty name" } else { name };
            assert!(shown.contains(named), "{name:?}: {shown}");
            assert!(
                sent.lock().unwrap().is_empty(),
                "{name:?}: a request was sent"
            );
        }
    }
}
