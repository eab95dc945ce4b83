//! Tests of the mock server, over real HTTP/1.1 on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::api::{fnv1a64, API_BODY_LIMIT};
use super::server::HEADER_READ_TIMEOUT;
use super::{MockConfig, MockServer, MockStats, TokenFailure};

/// Upper bound for any single exchange in tests that run on the real clock.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A response with its body read.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "body is not JSON ({error}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: http::header::HeaderName) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }

    /// Asserts a problem document of this status and type.
    fn assert_problem(&self, status: StatusCode, kind: &str) -> Value {
        let body = self.json();
        assert_eq!(self.status, status, "body: {body}");
        assert_eq!(self.header(CONTENT_TYPE), Some("application/problem+json"));
        assert_eq!(body["type"], kind, "body: {body}");
        assert_eq!(body["status"], status.as_u16());
        assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        body
    }
}

/// Sends one request on a fresh connection, without a timeout (for paused-clock tests).
async fn exchange(addr: SocketAddr, request: Request<Full<Bytes>>) -> hyper::Result<Reply> {
    let stream = TcpStream::connect(addr).await.expect("connect to mock");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Sends one request, failing the test if it errs or takes longer than [`EXCHANGE_TIMEOUT`].
async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Reply {
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(addr, request))
        .await
        .expect("exchange timed out")
        .expect("exchange failed")
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        serializer.append_pair(key, value);
    }
    serializer.finish()
}

fn token_request(server: &MockServer, body: String) -> Request<Full<Bytes>> {
    Request::post("/api/oauth/token")
        .header(HOST, server.addr().to_string())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn token_request_basic(
    server: &MockServer,
    authorization: &str,
    body: String,
) -> Request<Full<Bytes>> {
    let mut request = token_request(server, body);
    request
        .headers_mut()
        .insert(AUTHORIZATION, authorization.parse().unwrap());
    request
}

/// A form body with the server's own credentials.
fn credentials_form(server: &MockServer, scope: Option<&str>) -> String {
    let mut pairs = vec![
        ("grant_type", "client_credentials"),
        ("client_id", server.client_id()),
        ("client_secret", server.client_secret()),
    ];
    if let Some(scope) = scope {
        pairs.push(("scope", scope));
    }
    form(&pairs)
}

/// Gets a token with the server's credentials, asserting success.
async fn get_token(server: &MockServer, scope: Option<&str>) -> String {
    let reply = send(
        server.addr(),
        token_request(server, credentials_form(server, scope)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.json()["access_token"].as_str().unwrap().to_owned()
}

fn api_get(server: &MockServer, token: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::get("/api/v1/workflows").header(HOST, server.addr().to_string());
    if let Some(token) = token {
        builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(Full::new(Bytes::new())).unwrap()
}

fn api_post(server: &MockServer, token: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post("/api/v1/documents")
        .header(HOST, server.addr().to_string())
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(Full::new(body.into()))
        .unwrap()
}

/// Percent-encodes every byte outside RFC 3986 "unreserved" (so a space becomes `%20`).
fn percent_encode_all(input: &str) -> String {
    input
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Form-url-encodes a single value (a space becomes `+`).
fn form_encode(input: &str) -> String {
    form_urlencoded::byte_serialize(input.as_bytes()).collect()
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

#[tokio::test]
async fn grants_a_token_with_form_credentials() {
    let server = MockServer::start().await.unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let reply = send(
        server.addr(),
        token_request(&server, credentials_form(&server, Some("read write"))),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header(CONTENT_TYPE), Some("application/json"));
    assert_eq!(reply.header(CACHE_CONTROL), Some("no-store"));
    let body = reply.json();
    let token = body["access_token"].as_str().unwrap();
    assert!(token.starts_with("sdk_"), "{token}");
    assert_eq!(token.len(), 44);
    assert!(token[4..]
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 7200);
    assert_eq!(body["scope"], "read write");
    let created_at = body["created_at"].as_u64().unwrap();
    assert!(created_at >= before && created_at <= before + 60);

    // Tokens are random: a second one differs.
    let second = get_token(&server, Some("read")).await;
    assert_ne!(second, token);

    let issued = server.issued_tokens();
    assert_eq!(issued.len(), 2);
    assert_eq!(issued[0].scope, "read write");
    assert_eq!(issued[0].lifetime, Duration::from_secs(7200));
    assert_eq!(issued[1].scope, "read");
    let stats = server.stats();
    assert_eq!(stats.token_requests, 2);
    assert_eq!(stats.tokens_issued, 2);
    assert_eq!(stats.token_errors, 0);
}

/// A token request without a usable scope: missing, empty, or spaces only.
const NO_SCOPE: [Option<&str>; 3] = [None, Some(""), Some("   ")];

#[tokio::test]
async fn requested_scopes_are_normalised_and_unknown_ones_refused() {
    let server = MockServer::start().await.unwrap();
    for (requested, granted) in [
        ("read", "read"),
        ("write", "write"),
        ("write read", "read write"),
        ("read write read", "read write"),
        (" read  write ", "read write"),
    ] {
        let reply = send(
            server.addr(),
            token_request(&server, credentials_form(&server, Some(requested))),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{requested:?}");
        assert_eq!(reply.json()["scope"], granted, "{requested:?}");
    }

    for bad in ["admin", "read admin", "READ", "read,write"] {
        let reply = send(
            server.addr(),
            token_request(&server, credentials_form(&server, Some(bad))),
        )
        .await;
        reply.assert_problem(StatusCode::BAD_REQUEST, "invalid_scope");
        assert_eq!(reply.header(CACHE_CONTROL), Some("no-store"));
    }

    // An application scoped to `read` cannot get `write`.
    let read_only = MockServer::start_with(MockConfig::new().app_scope("read"))
        .await
        .unwrap();
    let reply = send(
        read_only.addr(),
        token_request(&read_only, credentials_form(&read_only, Some("read write"))),
    )
    .await;
    reply.assert_problem(StatusCode::BAD_REQUEST, "invalid_scope");
    assert!(read_only.issued_tokens().is_empty());
}

#[tokio::test]
async fn a_read_write_application_that_omits_scope_is_told_to_ask_for_it() {
    // `read write` is the default application scope.
    let server = MockServer::start().await.unwrap();
    for requested in NO_SCOPE {
        let reply = send(
            server.addr(),
            token_request(&server, credentials_form(&server, requested)),
        )
        .await;
        let problem = reply.assert_problem(StatusCode::BAD_REQUEST, "invalid_scope");
        assert_eq!(problem["title"], "Invalid Scope", "{requested:?}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("must ask for scope explicitly"),
            "{requested:?}: {detail}"
        );
        assert_eq!(reply.header(CACHE_CONTROL), Some("no-store"));
    }
    // The same holds with credentials in an `Authorization: Basic` header.
    let grant = form(&[("grant_type", "client_credentials")]);
    let header = basic(server.client_id(), server.client_secret());
    send(server.addr(), token_request_basic(&server, &header, grant))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_scope");

    assert!(server.issued_tokens().is_empty());
    let stats = server.stats();
    assert_eq!((stats.token_errors, stats.tokens_issued), (4, 0));

    // Named explicitly, the same application gets either scope or both.
    for scope in ["read", "write", "read write"] {
        get_token(&server, Some(scope)).await;
    }
    let granted: Vec<_> = server
        .issued_tokens()
        .into_iter()
        .map(|t| t.scope)
        .collect();
    assert_eq!(granted, ["read", "write", "read write"]);
}

#[tokio::test]
async fn a_single_scope_application_that_omits_scope_gets_read() {
    // As the reference puts it: omitting scope yields `read` when the application is
    // scoped to read or write.
    for app_scope in ["read", "write"] {
        let server = MockServer::start_with(MockConfig::new().app_scope(app_scope))
            .await
            .unwrap();
        for requested in NO_SCOPE {
            let reply = send(
                server.addr(),
                token_request(&server, credentials_form(&server, requested)),
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{app_scope}: {requested:?}");
            assert_eq!(reply.json()["scope"], "read", "{app_scope}: {requested:?}");
        }
        let granted: Vec<_> = server
            .issued_tokens()
            .into_iter()
            .map(|t| t.scope)
            .collect();
        assert_eq!(granted, ["read"; 3], "{app_scope}");
    }
}

#[tokio::test]
async fn hostile_secret_works_in_the_form_and_in_basic() {
    let id = "client:with space";
    let secret = "a+b&c=d%e/f\"g\\h iü:z";
    let server = MockServer::start_with(MockConfig::new().client_id(id).client_secret(secret))
        .await
        .unwrap();
    assert_eq!(server.client_id(), id);
    assert_eq!(server.client_secret(), secret);

    // Form body.
    assert!(get_token(&server, Some("write")).await.starts_with("sdk_"));

    let grant = form(&[("grant_type", "client_credentials"), ("scope", "read")]);
    // Basic with %20-style encoding.
    let header = basic(&percent_encode_all(id), &percent_encode_all(secret));
    let reply = send(
        server.addr(),
        token_request_basic(&server, &header, grant.clone()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // Basic with form encoding (`+` for space).
    let header = basic(&form_encode(id), &form_encode(secret));
    assert!(header.contains('+') || form_encode(secret).contains('+'));
    let reply = send(
        server.addr(),
        token_request_basic(&server, &header, grant.clone()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // Scheme is case-insensitive.
    let header = header.replacen("Basic", "bAsIc", 1);
    let reply = send(
        server.addr(),
        token_request_basic(&server, &header, grant.clone()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);

    // Without the URL-encoding, `+` and `%e/` no longer decode to the secret.
    let header = basic(&form_encode(id), secret);
    let reply = send(
        server.addr(),
        token_request_basic(&server, &header, grant.clone()),
    )
    .await;
    reply.assert_problem(StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(
        reply.header(WWW_AUTHENTICATE),
        Some(r#"Basic realm="simpledocs""#)
    );
    assert_eq!(server.stats().tokens_issued, 4);
}

#[tokio::test]
async fn an_empty_secret_may_be_sent_empty_or_left_out() {
    // RFC 6749 §2.3.1: a client whose secret is empty may omit the parameter.
    let server = MockServer::start_with(MockConfig::new().client_id("id").client_secret(""))
        .await
        .unwrap();
    let grant = [("grant_type", "client_credentials"), ("scope", "read")];
    for secret in [Some(""), None] {
        let mut pairs = vec![("client_id", "id")];
        pairs.extend(secret.map(|s| ("client_secret", s)));
        pairs.extend(grant);
        let reply = send(server.addr(), token_request(&server, form(&pairs))).await;
        assert_eq!(reply.status, StatusCode::OK, "{secret:?}: {:?}", reply.body);
    }
    let reply = send(
        server.addr(),
        token_request_basic(&server, &basic("id", ""), form(&grant)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);

    // A secret that is not empty may not be left out.
    let server = MockServer::start().await.unwrap();
    let pairs = [
        ("grant_type", "client_credentials"),
        ("client_id", server.client_id()),
    ];
    send(server.addr(), token_request(&server, form(&pairs)))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn basic_splits_at_the_first_colon() {
    let server = MockServer::start_with(MockConfig::new().client_id("id").client_secret("p:w"))
        .await
        .unwrap();
    let grant = form(&[("grant_type", "client_credentials"), ("scope", "read")]);
    let reply = send(
        server.addr(),
        token_request_basic(&server, &basic("id", "p:w"), grant),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn rejects_bad_token_requests() {
    let server = MockServer::start().await.unwrap();
    let addr = server.addr();
    let id = server.client_id().to_owned();

    // Wrong secret.
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", &id),
        ("client_secret", "nope"),
    ]);
    let reply = send(addr, token_request(&server, body)).await;
    let problem = reply.assert_problem(StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(problem["title"], "Invalid Client");
    assert_eq!(reply.header(CACHE_CONTROL), Some("no-store"));
    assert!(!String::from_utf8_lossy(&reply.body).contains("demo-secret"));

    // Wrong secrets of the right length: the last byte other, two bytes swapped (their
    // differences are equal, so a comparison that let two differences cancel would pass).
    for secret in ["demo-secreT", "deom-secret"] {
        let body = form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", secret),
        ]);
        send(addr, token_request(&server, body))
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_client");
    }

    // Wrong client id, missing credentials.
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", "someone-else"),
        ("client_secret", "demo-secret"),
    ]);
    send(addr, token_request(&server, body))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_client");
    let body = form(&[("grant_type", "client_credentials")]);
    send(addr, token_request(&server, body))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_client");

    // Grant type missing or other.
    let body = form(&[("client_id", &id), ("client_secret", "demo-secret")]);
    send(addr, token_request(&server, body))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    let body = form(&[
        ("grant_type", "password"),
        ("client_id", &id),
        ("client_secret", "demo-secret"),
    ]);
    send(addr, token_request(&server, body))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "unsupported_grant_type");

    // Basic and form credentials, or a part of them, both.
    for in_form in [
        &[("client_id", id.as_str()), ("client_secret", "demo-secret")][..],
        &[("client_id", id.as_str())],
        &[("client_secret", "demo-secret")],
    ] {
        let mut pairs = vec![("grant_type", "client_credentials")];
        pairs.extend_from_slice(in_form);
        let request = token_request_basic(&server, &basic(&id, "demo-secret"), form(&pairs));
        send(addr, request)
            .await
            .assert_problem(StatusCode::BAD_REQUEST, "invalid_request");
    }

    // Malformed: not a form, repeated parameter, bad Basic, not UTF-8.
    let mut request = token_request(&server, credentials_form(&server, Some("read")));
    request
        .headers_mut()
        .insert(CONTENT_TYPE, "application/json".parse().unwrap());
    send(addr, request)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_request");
    let body = format!("{}&scope=read&scope=write", credentials_form(&server, None));
    send(addr, token_request(&server, body))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_request");
    let grant = form(&[("grant_type", "client_credentials")]);
    send(
        addr,
        token_request_basic(&server, "Basic !!!not-base64", grant.clone()),
    )
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "invalid_request");
    let no_colon = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("no-colon")
    );
    send(addr, token_request_basic(&server, &no_colon, grant))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_request");
    let request = Request::post("/api/oauth/token")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(b"grant_type=\xff\xfe")))
        .unwrap();
    send(addr, request)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_request");

    // Too large (the token endpoint accepts 64 KiB).
    let body = format!(
        "{}&pad={}",
        credentials_form(&server, Some("read")),
        "x".repeat(70_000)
    );
    send(addr, token_request(&server, body))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_request");

    // Not POST.
    let request = Request::get("/api/oauth/token")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = send(addr, request).await;
    reply.assert_problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(reply.header(http::header::ALLOW), Some("POST"));

    let stats = server.stats();
    assert_eq!(stats.token_requests, 17);
    assert_eq!(stats.token_errors, 17);
    assert_eq!(stats.tokens_issued, 0);
    assert!(server.issued_tokens().is_empty());
}

#[tokio::test]
async fn a_token_request_of_up_to_64_kib_is_read_and_unknown_parameters_are_ignored() {
    let server = MockServer::start().await.unwrap();
    let body = format!(
        "{}&audience=https%3A%2F%2Fapi.example&pad={}",
        credentials_form(&server, Some("read")),
        "x".repeat(60_000)
    );
    let reply = send(server.addr(), token_request(&server, body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.json()["scope"], "read");
}

#[tokio::test]
async fn a_repeated_parameter_is_refused_whatever_its_values() {
    let server = MockServer::start().await.unwrap();
    let id = server.client_id().to_owned();
    let secret = server.client_secret().to_owned();
    let grant = ("grant_type", "client_credentials");
    // RFC 6749 §3.1: parameters must not be included more than once, even when one of the
    // values is empty (and so would count as omitted on its own).
    let repeated: [Vec<(&str, &str)>; 5] = [
        vec![
            grant,
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", ""),
            ("scope", "write"),
        ],
        vec![
            grant,
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "write"),
            ("scope", ""),
        ],
        vec![
            grant,
            ("client_id", ""),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "read"),
        ],
        vec![
            grant,
            ("client_id", &id),
            ("client_secret", &secret),
            ("client_secret", ""),
            ("scope", "read"),
        ],
        vec![
            ("grant_type", ""),
            grant,
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "read"),
        ],
    ];
    for pairs in repeated {
        let body = form(&pairs);
        let reply = send(server.addr(), token_request(&server, body.clone())).await;
        let problem = reply.assert_problem(StatusCode::BAD_REQUEST, "invalid_request");
        assert!(
            problem["detail"].as_str().unwrap().contains("repeated"),
            "{body}: {problem}"
        );
    }
    assert!(server.issued_tokens().is_empty());

    // Given once, an empty value still counts as omitted: this `client_id` does not
    // clash with the credentials in the `Authorization: Basic` header.
    let body = form(&[grant, ("client_id", ""), ("scope", "write")]);
    let header = basic(&id, &secret);
    let reply = send(server.addr(), token_request_basic(&server, &header, body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.json()["scope"], "write");
}

#[tokio::test]
async fn api_serves_workflows_with_a_valid_token() {
    let server = MockServer::start().await.unwrap();
    let token = get_token(&server, Some("read")).await;
    let reply = send(server.addr(), api_get(&server, Some(&token))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header(CONTENT_TYPE), Some("application/json"));
    assert_eq!(
        reply.json(),
        json!({"data": [{"id": 1, "name": "Onboarding"}, {"id": 2, "name": "Contract review"}]})
    );

    // The scheme is case-insensitive.
    let request = Request::get("/api/v1/workflows")
        .header(AUTHORIZATION, format!("bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(server.addr(), request).await.status, StatusCode::OK);

    let stats = server.stats();
    assert_eq!((stats.api_requests, stats.api_ok), (2, 2));
    assert_eq!(stats.api_rejected(), 0);
}

#[tokio::test]
async fn api_rejects_missing_and_unknown_tokens() {
    let server = MockServer::start().await.unwrap();
    let reply = send(server.addr(), api_get(&server, None)).await;
    reply.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        reply.header(WWW_AUTHENTICATE),
        Some(r#"Bearer realm="simpledocs""#)
    );

    let reply = send(server.addr(), api_get(&server, Some("sdk_not-a-token"))).await;
    reply.assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");

    // The scheme without a token is no credentials, not a wrong token (RFC 6750 §3.1).
    for bare in ["Bearer", "bearer    "] {
        let mut request = api_get(&server, None);
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, bare.parse().unwrap());
        let reply = send(server.addr(), request).await;
        reply.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }

    let request = Request::get("/api/v1/nothing-here")
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(server.addr(), request)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");
    let request = Request::get("/elsewhere")
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(server.addr(), request)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");

    let stats = server.stats();
    assert_eq!(stats.api_requests, 5);
    assert_eq!(stats.api_unauthorized, 3);
    assert_eq!(stats.api_invalid_token, 1);
    assert_eq!(stats.api_ok, 0);
    assert_eq!(stats.api_rejected(), 4);
}

#[tokio::test(start_paused = true)]
async fn token_expires_after_its_lifetime_on_the_tokio_clock() {
    // No timeouts here: with a paused clock they would fire spuriously. Each step is one
    // exchange with a local server on a fresh connection, so the test cannot hang.
    let server = MockServer::start_with(MockConfig::new().token_lifetime(Duration::from_secs(60)))
        .await
        .unwrap();
    let reply = exchange(
        server.addr(),
        token_request(&server, credentials_form(&server, Some("read"))),
    )
    .await
    .unwrap();
    assert_eq!(reply.json()["expires_in"], 60);
    let token = reply.json()["access_token"].as_str().unwrap().to_owned();

    tokio::time::advance(Duration::from_secs(59)).await;
    let reply = exchange(server.addr(), api_get(&server, Some(&token)))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);

    tokio::time::advance(Duration::from_secs(2)).await;
    let reply = exchange(server.addr(), api_get(&server, Some(&token)))
        .await
        .unwrap();
    let problem = reply.assert_problem(StatusCode::UNAUTHORIZED, "token_expired");
    assert_eq!(
        problem,
        json!({"type": "token_expired", "status": 401, "title": "Token Expired",
               "detail": "The access token has expired."})
    );

    // A shorter lifetime applies to tokens issued from now on only.
    server.set_token_lifetime(Duration::from_secs(5));
    let reply = exchange(
        server.addr(),
        token_request(&server, credentials_form(&server, Some("read"))),
    )
    .await
    .unwrap();
    assert_eq!(reply.json()["expires_in"], 5);
    let short = reply.json()["access_token"].as_str().unwrap().to_owned();
    tokio::time::advance(Duration::from_secs(6)).await;
    let reply = exchange(server.addr(), api_get(&server, Some(&short)))
        .await
        .unwrap();
    reply.assert_problem(StatusCode::UNAUTHORIZED, "token_expired");
    let lifetimes: Vec<_> = server
        .issued_tokens()
        .iter()
        .map(|issued| issued.lifetime)
        .collect();
    assert_eq!(lifetimes, [Duration::from_secs(60), Duration::from_secs(5)]);
    assert_eq!(server.stats().api_token_expired, 2);
}

#[tokio::test]
async fn expires_in_field_can_be_overridden() {
    let server = MockServer::start().await.unwrap();
    let grant = || token_request(&server, credentials_form(&server, Some("read")));

    server.set_expires_in_field(Some(json!("3600")));
    assert_eq!(
        send(server.addr(), grant()).await.json()["expires_in"],
        "3600"
    );

    server.set_expires_in_field(Some(Value::Null));
    let body = send(server.addr(), grant()).await.json();
    assert!(body.get("expires_in").is_none(), "{body}");
    assert_eq!(body["token_type"], "Bearer");

    server.set_expires_in_field(None);
    assert_eq!(
        send(server.addr(), grant()).await.json()["expires_in"],
        7200
    );
    // What is advertised does not change what is enforced.
    assert!(server
        .issued_tokens()
        .iter()
        .all(|issued| issued.lifetime == Duration::from_secs(7200)));
}

#[tokio::test]
async fn revoke_all_and_expire_token() {
    let server = MockServer::start().await.unwrap();
    let first = get_token(&server, Some("read")).await;
    let second = get_token(&server, Some("read")).await;

    assert!(server.expire_token(&first));
    assert!(!server.expire_token("sdk_unknown"));
    send(server.addr(), api_get(&server, Some(&first)))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_expired");
    assert_eq!(
        send(server.addr(), api_get(&server, Some(&second)))
            .await
            .status,
        StatusCode::OK
    );

    server.revoke_all();
    send(server.addr(), api_get(&server, Some(&second)))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "token_expired");
    // Tokens issued afterwards are fine.
    let third = get_token(&server, Some("read")).await;
    assert_eq!(
        send(server.addr(), api_get(&server, Some(&third)))
            .await
            .status,
        StatusCode::OK
    );
    let stats = server.stats();
    assert_eq!((stats.api_token_expired, stats.api_ok), (2, 2));
}

#[tokio::test]
async fn write_needs_the_write_scope() {
    let server = MockServer::start().await.unwrap();
    let read = get_token(&server, Some("read")).await;
    let reply = send(server.addr(), api_post(&server, &read, "body")).await;
    reply.assert_problem(StatusCode::FORBIDDEN, "insufficient_scope");
    assert!(reply
        .header(WWW_AUTHENTICATE)
        .is_some_and(|challenge| challenge.contains(r#"error="insufficient_scope""#)));
    assert!(server.received_documents().is_empty());

    let write = get_token(&server, Some("write")).await;
    send(server.addr(), api_get(&server, Some(&write)))
        .await
        .assert_problem(StatusCode::FORBIDDEN, "insufficient_scope");
    assert_eq!(server.stats().api_insufficient_scope, 2);
}

#[tokio::test]
async fn documents_are_echoed_with_their_fnv1a64() {
    // Reference vectors of FNV-1a 64.
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);

    let server = MockServer::start().await.unwrap();
    let token = get_token(&server, Some("read write")).await;
    let reply = send(server.addr(), api_post(&server, &token, "foobar")).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.header(CONTENT_TYPE), Some("application/json"));
    assert_eq!(
        reply.json(),
        json!({"id": 1, "received_bytes": 6, "fnv1a64": "85944171f73967e8"})
    );

    let big = Bytes::from(
        (0..1_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    );
    let reply = send(server.addr(), api_post(&server, &token, big.clone())).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let body = reply.json();
    assert_eq!(body["id"], 2);
    assert_eq!(body["received_bytes"], 1_000_000);
    assert_eq!(body["fnv1a64"], format!("{:016x}", fnv1a64(&big)));

    let empty = send(server.addr(), api_post(&server, &token, Bytes::new())).await;
    assert_eq!(empty.json()["fnv1a64"], "cbf29ce484222325");

    assert_eq!(
        server.received_documents(),
        vec![Bytes::from_static(b"foobar"), big, Bytes::new()]
    );
    assert_eq!(server.stats().api_ok, 3);
}

#[tokio::test]
async fn injected_status_failures() {
    let server = MockServer::start().await.unwrap();
    let grant = || token_request(&server, credentials_form(&server, Some("read")));

    server.fail_token_requests(2, TokenFailure::Status(StatusCode::SERVICE_UNAVAILABLE));
    for _ in 0..2 {
        send(server.addr(), grant())
            .await
            .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
    }
    assert_eq!(send(server.addr(), grant()).await.status, StatusCode::OK);

    server.fail_token_requests(1, TokenFailure::Status(StatusCode::INTERNAL_SERVER_ERROR));
    send(server.addr(), grant())
        .await
        .assert_problem(StatusCode::INTERNAL_SERVER_ERROR, "server_error");

    server.fail_token_requests(
        1,
        TokenFailure::StatusWithRetryAfter(StatusCode::TOO_MANY_REQUESTS, 7),
    );
    let reply = send(server.addr(), grant()).await;
    reply.assert_problem(StatusCode::TOO_MANY_REQUESTS, "server_error");
    assert_eq!(reply.header(RETRY_AFTER), Some("7"));

    server.fail_token_requests(
        1,
        TokenFailure::Body(StatusCode::OK, "text/html", "<html>login</html>"),
    );
    let reply = send(server.addr(), grant()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header(CONTENT_TYPE), Some("text/html"));
    assert_eq!(reply.body, "<html>login</html>");

    // Until cleared.
    server.fail_token_requests(usize::MAX, TokenFailure::Status(StatusCode::BAD_GATEWAY));
    for _ in 0..3 {
        assert_eq!(
            send(server.addr(), grant()).await.status,
            StatusCode::BAD_GATEWAY
        );
    }
    server.clear_token_failures();
    assert_eq!(send(server.addr(), grant()).await.status, StatusCode::OK);

    // A new call replaces pending failures; push_token_failures queues after them.
    server.fail_token_requests(5, TokenFailure::Status(StatusCode::BAD_GATEWAY));
    server.fail_token_requests(1, TokenFailure::Status(StatusCode::GATEWAY_TIMEOUT));
    server.push_token_failures(1, TokenFailure::Status(StatusCode::BAD_GATEWAY));
    let statuses = [
        send(server.addr(), grant()).await.status,
        send(server.addr(), grant()).await.status,
        send(server.addr(), grant()).await.status,
    ];
    assert_eq!(
        statuses,
        [
            StatusCode::GATEWAY_TIMEOUT,
            StatusCode::BAD_GATEWAY,
            StatusCode::OK
        ]
    );

    // Zero failures are none.
    server.fail_token_requests(0, TokenFailure::Status(StatusCode::BAD_GATEWAY));
    server.push_token_failures(0, TokenFailure::Status(StatusCode::BAD_GATEWAY));
    assert_eq!(send(server.addr(), grant()).await.status, StatusCode::OK);

    let stats = server.stats();
    assert_eq!(stats.token_requests, 14);
    assert_eq!(stats.token_errors, 10);
    assert_eq!(stats.tokens_issued, 4);
}

#[tokio::test]
async fn injected_hang_never_answers() {
    let server = MockServer::start().await.unwrap();
    server.fail_token_requests(1, TokenFailure::Hang);
    let request = token_request(&server, credentials_form(&server, Some("read")));
    let outcome =
        tokio::time::timeout(Duration::from_millis(300), exchange(server.addr(), request)).await;
    assert!(outcome.is_err(), "expected a client-side timeout");
    // The next request is served normally, in parallel with the hung one.
    assert!(get_token(&server, Some("read")).await.starts_with("sdk_"));
    let stats = server.stats();
    assert_eq!(
        (
            stats.token_requests,
            stats.token_errors,
            stats.tokens_issued
        ),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn injected_close_drops_the_connection() {
    let server = MockServer::start().await.unwrap();
    server.fail_token_requests(1, TokenFailure::CloseConnection);
    let request = token_request(&server, credentials_form(&server, Some("read")));
    let outcome = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(server.addr(), request))
        .await
        .expect("a dropped connection is reported promptly");
    let error = outcome.expect_err("no response is expected");
    assert!(
        error.is_incomplete_message() || error.is_closed(),
        "{error:?}"
    );
    assert!(get_token(&server, Some("read")).await.starts_with("sdk_"));
    assert_eq!(server.stats().token_errors, 1);
}

#[tokio::test]
async fn token_delay_holds_the_answer_but_counts_at_once() {
    let server = MockServer::start().await.unwrap();
    server.set_token_delay(Duration::from_millis(300));
    let addr = server.addr();
    let request = token_request(&server, credentials_form(&server, Some("read")));
    let started = std::time::Instant::now();
    let pending = tokio::spawn(async move { send(addr, request).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let during = server.stats();
    assert_eq!((during.token_requests, during.tokens_issued), (1, 0));
    let reply = pending.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(server.stats().tokens_issued, 1);

    server.set_token_delay(Duration::ZERO);
    let started = std::time::Instant::now();
    get_token(&server, Some("read")).await;
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn a_request_head_left_unfinished_is_dropped_after_the_header_read_timeout() {
    let server = MockServer::start().await.unwrap();
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream
        .write_all(b"POST /api/oauth/token HTTP/1.1\r\nHost: mock\r\nContent-Len")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    // The clock is paused: waiting for the server's timer takes no real time.
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(HEADER_READ_TIMEOUT * 4, stream.read(&mut buf))
        .await
        .expect("the server still holds the half-sent request");
    // Closed, without an answer.
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= HEADER_READ_TIMEOUT && waited < HEADER_READ_TIMEOUT + Duration::from_secs(1),
        "{waited:?}"
    );
    assert_eq!(server.stats().token_requests, 0);
}

/// Reads one response off a raw connection: its status line and body (`Content-Length` framed).
async fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buf).await.expect("read a response");
        assert!(n > 0, "closed without a whole response: {received:?}");
        received.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(received[..head_end].to_vec()).unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .expect("a Content-Length");
    let mut body = received.split_off(head_end);
    while body.len() < length {
        let n = stream.read(&mut buf).await.expect("read a response body");
        assert!(n > 0, "closed in the middle of a response body");
        body.extend_from_slice(&buf[..n]);
    }
    assert_eq!(body.len(), length, "one response at a time");
    let status = head.lines().next().unwrap().to_owned();
    (status, body)
}

/// A token from `server` for `scope`, without a timeout (for paused-clock tests).
async fn token_on_paused_clock(server: &MockServer, scope: &str) -> String {
    let request = token_request(server, credentials_form(server, Some(scope)));
    let reply = exchange(server.addr(), request).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.json()["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(start_paused = true)]
async fn requests_that_need_no_body_are_answered_without_waiting_for_it() {
    let server = MockServer::start().await.unwrap();
    let write = token_on_paused_clock(&server, "write").await;
    // Each head announces a gigabyte that never comes: only an upload the server
    // accepts is read.
    let unauthenticated = "POST /api/v1/documents HTTP/1.1".to_owned();
    let wrong_method = format!("PUT /api/v1/documents HTTP/1.1\r\nAuthorization: Bearer {write}");
    for (request_line, status, kind) in [
        ("POST /elsewhere HTTP/1.1", 404, "not_found"),
        ("POST /api/v1/nothing-here HTTP/1.1", 404, "not_found"),
        ("POST /api/v1/workflows HTTP/1.1", 405, "method_not_allowed"),
        (wrong_method.as_str(), 405, "method_not_allowed"),
        (unauthenticated.as_str(), 401, "unauthorized"),
    ] {
        let mut stream = TcpStream::connect(server.addr()).await.unwrap();
        let head = format!(
            "{request_line}\r\nHost: mock\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: 1073741824\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        // The clock is paused: a server waiting for the body fails this at once.
        let (status_line, body) =
            tokio::time::timeout(Duration::from_secs(10), read_response(&mut stream))
                .await
                .unwrap_or_else(|_| panic!("{request_line}: no answer without the body"));
        assert!(
            status_line.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request_line}: {status_line}"
        );
        let problem: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["type"], kind, "{request_line}");
    }
    assert!(server.received_documents().is_empty());
    assert_eq!(server.stats().api_unauthorized, 1);
}

#[tokio::test]
async fn an_upload_of_8_mib_is_taken_whole() {
    let server = MockServer::start().await.unwrap();
    let token = get_token(&server, Some("write")).await;
    let upload = Bytes::from(vec![7u8; 8 * 1024 * 1024]);
    let reply = send(server.addr(), api_post(&server, &token, upload.clone())).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.json()["received_bytes"], upload.len());
    assert_eq!(server.received_documents(), [upload]);
}

#[tokio::test(start_paused = true)]
async fn an_upload_declared_larger_than_the_limit_is_refused_before_it_is_read() {
    let server = MockServer::start().await.unwrap();
    let write = token_on_paused_clock(&server, "write").await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /api/v1/documents HTTP/1.1\r\nHost: mock\r\nAuthorization: Bearer {write}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        API_BODY_LIMIT + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (status_line, body) =
        tokio::time::timeout(Duration::from_secs(10), read_response(&mut stream))
            .await
            .expect("refused without reading the body");
    assert!(status_line.starts_with("HTTP/1.1 413 "), "{status_line}");
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["type"], "payload_too_large");
    assert!(server.received_documents().is_empty());
    assert_eq!(server.stats().api_ok, 0);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_upload_is_read_to_its_end_and_the_connection_kept() {
    // A client whose token was revoked may still be sending its upload, and sends it
    // again on the same pooled connection: answering before the body is in would close
    // the connection under it.
    let server = MockServer::start().await.unwrap();
    let revoked = token_on_paused_clock(&server, "write").await;
    server.revoke_all();
    let fresh = token_on_paused_clock(&server, "read").await;

    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /api/v1/documents HTTP/1.1\r\nHost: mock\r\nAuthorization: Bearer {revoked}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 2000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b'a'; 1000]).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await;
    assert!(early.is_err(), "answered before the body was in: {early:?}");
    stream.write_all(&[b'b'; 1000]).await.unwrap();
    let (status_line, body) = read_response(&mut stream).await;
    assert!(status_line.starts_with("HTTP/1.1 401 "), "{status_line}");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["type"],
        "token_expired"
    );

    // The same connection serves the next request.
    let next = format!(
        "GET /api/v1/workflows HTTP/1.1\r\nHost: mock\r\nAuthorization: Bearer {fresh}\r\n\r\n"
    );
    stream.write_all(next.as_bytes()).await.unwrap();
    let (status_line, _) = read_response(&mut stream).await;
    assert!(status_line.starts_with("HTTP/1.1 200 "), "{status_line}");
    assert!(server.received_documents().is_empty());
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let server = MockServer::start().await.unwrap();
    let token = get_token(&server, Some("read")).await;
    let stream = TcpStream::connect(server.addr()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    for _ in 0..3 {
        let response = tokio::time::timeout(
            EXCHANGE_TIMEOUT,
            sender.send_request(api_get(&server, Some(&token))),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body().collect().await.unwrap();
    }
    assert_eq!(server.stats().api_ok, 3);
}

#[tokio::test]
async fn counters_add_up() {
    let server = MockServer::start().await.unwrap();
    let read = get_token(&server, Some("read")).await;
    server.fail_token_requests(1, TokenFailure::Status(StatusCode::SERVICE_UNAVAILABLE));
    send(
        server.addr(),
        token_request(&server, credentials_form(&server, Some("read"))),
    )
    .await;
    send(server.addr(), api_get(&server, Some(&read))).await;
    send(server.addr(), api_get(&server, None)).await;
    send(server.addr(), api_get(&server, Some("sdk_bogus"))).await;
    send(server.addr(), api_post(&server, &read, "x")).await;
    server.revoke_all();
    send(server.addr(), api_get(&server, Some(&read))).await;

    let expected = MockStats {
        token_requests: 2,
        tokens_issued: 1,
        token_errors: 1,
        api_requests: 5,
        api_ok: 1,
        api_token_expired: 1,
        api_invalid_token: 1,
        api_unauthorized: 1,
        api_insufficient_scope: 1,
        discovery_requests: 0,
        assertions_verified: 0,
        dpop_proofs_checked: 0,
        dpop_proofs_rejected: 0,
        dpop_nonce_challenges: 0,
    };
    assert_eq!(server.stats(), expected);
    assert_eq!(server.stats().api_rejected(), 4);
}

#[tokio::test]
async fn debug_output_hides_the_secret() {
    let config = MockConfig::new().client_secret("s3cr3t-value");
    assert!(!format!("{config:?}").contains("s3cr3t-value"));
    let server = MockServer::start_with(config.clone()).await.unwrap();
    let debug = format!("{server:?}");
    assert!(!debug.contains("s3cr3t-value"), "{debug}");
    assert!(debug.contains("simpledocs-demo-client"));
    assert_eq!(server.client_secret(), "s3cr3t-value");
}

#[tokio::test]
async fn urls_point_at_the_server() {
    let server = MockServer::start().await.unwrap();
    let port = server.addr().port();
    assert!(server.addr().ip().is_loopback());
    assert_eq!(server.base_url(), format!("http://127.0.0.1:{port}"));
    assert_eq!(
        server.token_url(),
        format!("http://127.0.0.1:{port}/api/oauth/token")
    );
}

#[tokio::test]
async fn shutdown_closes_the_listener_and_open_connections() {
    let server = MockServer::start().await.unwrap();
    let addr = server.addr();
    server.fail_token_requests(1, TokenFailure::Hang);
    let request = token_request(&server, credentials_form(&server, Some("read")));
    let hung = tokio::spawn(tokio::time::timeout(
        EXCHANGE_TIMEOUT,
        exchange(addr, request),
    ));
    // Wait until the hung request has reached the server.
    tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        while server.stats().token_requests == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();

    server.shutdown();
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
    let outcome = hung.await.unwrap().expect("hung request ends at shutdown");
    assert!(outcome.is_err(), "the hung request cannot succeed");
}

#[tokio::test]
async fn drop_stops_the_server() {
    let server = MockServer::start().await.unwrap();
    let addr = server.addr();
    drop(server);
    assert!(TcpStream::connect(addr).await.is_err());
}

#[test]
fn config_builder_and_defaults() {
    let config = MockConfig::default();
    let debug = format!("{config:?}");
    assert!(debug.contains("simpledocs-demo-client"));
    assert!(debug.contains("read write"));
    assert!(debug.contains("7200"));
    assert!(!debug.contains("demo-secret"));
    let custom = MockConfig::new()
        .client_id("a")
        .client_secret("b")
        .app_scope("write")
        .token_lifetime(Duration::from_secs(1));
    assert_eq!(custom.client_id, "a");
    assert_eq!(custom.client_secret, "b");
    assert_eq!(custom.app_scope, "write");
    assert_eq!(custom.token_lifetime, Duration::from_secs(1));
}
