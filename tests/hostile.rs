//! Hostile token endpoints: responses built to break a client. Each gives a typed error,
//! never a panic, and never shows the token text it carried; lifetimes from the server
//! are bounded; plain HTTP off loopback, caller-set `Authorization` headers and redirects
//! are handled as documented.

mod common;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use common::{bounded, creds, get, mock_creds, quick, seen, token_failure, Echo};
use http::{header::AUTHORIZATION, HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};
use tower::{Layer, ServiceExt};
use tower_oauth::{
    fetch::parse_token_response,
    mock::{MockServer, TokenFailure},
    ClientCredentials, Error, ErrorKind, OAuthLayer, OAuthLayerBuilder, TokenStatus,
};

const SECRET: &str = "hostile-S3CR3T-77ab";

// ---------------------------------------------------------------------------------------
// A hand-written endpoint, for what the mock cannot say
// ---------------------------------------------------------------------------------------

/// What the hand-written endpoint answers to every request.
#[derive(Clone)]
enum Answer {
    /// These bytes, then the connection is closed.
    Bytes(Vec<u8>),
    /// `head`, then `body` one byte per `every`.
    Drip {
        head: Vec<u8>,
        body: Vec<u8>,
        every: Duration,
    },
    /// `head`, then data forever; `chunked` frames it as chunks.
    Endless { head: Vec<u8>, chunked: bool },
}

/// An HTTP/1.1 endpoint on 127.0.0.1 that reads each request whole, counts it, and
/// answers as scripted. Dropping it stops it and its connections.
struct Endpoint {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Endpoint {
    async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let answer = answer.clone();
                let counter = counter.clone();
                connections.spawn(async move {
                    let _ = serve(stream, answer, counter).await;
                });
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads one request (head and `Content-Length` body), then answers.
async fn serve(
    mut stream: TcpStream,
    answer: Answer,
    counter: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    counter.fetch_add(1, Ordering::SeqCst);
    match answer {
        Answer::Bytes(bytes) => {
            stream.write_all(&bytes).await?;
            stream.shutdown().await?;
        }
        Answer::Drip { head, body, every } => {
            stream.write_all(&head).await?;
            for b in body {
                tokio::time::sleep(every).await;
                stream.write_all(&[b]).await?;
            }
        }
        Answer::Endless { head, chunked } => {
            stream.write_all(&head).await?;
            let data = vec![b'x'; 8192];
            loop {
                if chunked {
                    stream.write_all(b"2000\r\n").await?;
                    stream.write_all(&data).await?;
                    stream.write_all(b"\r\n").await?;
                } else {
                    stream.write_all(&data).await?;
                }
            }
        }
    }
    Ok(())
}

/// How a response body is framed on the wire.
#[derive(Clone, Copy)]
enum Framing {
    Length,
    Chunked,
    /// No length: the body ends when the connection closes.
    Close,
}

fn response(status: u16, content_type: &str, body: &[u8], framing: Framing) -> Vec<u8> {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Whatever");
    let mut out = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
    if !content_type.is_empty() {
        out.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    match framing {
        Framing::Length => out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len())),
        Framing::Chunked => out.push_str("Transfer-Encoding: chunked\r\n\r\n"),
        Framing::Close => out.push_str("\r\n"),
    }
    let mut out = out.into_bytes();
    match framing {
        Framing::Chunked => {
            for part in body.chunks(1000) {
                out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                out.extend_from_slice(part);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
        _ => out.extend_from_slice(body),
    }
    out
}

fn json_200(body: &[u8]) -> Vec<u8> {
    response(200, "application/json", body, Framing::Length)
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// How long one request may take to fail.
const LIMIT: Duration = Duration::from_secs(15);

/// No retries, so each hostile answer is fetched once and its error comes back at once;
/// a 5 s fetch timeout leaves room for the answer to arrive whole.
fn one_fetch(creds: ClientCredentials) -> OAuthLayerBuilder {
    quick(OAuthLayer::builder(creds)).fetch_timeout(Duration::from_secs(5))
}

/// Neither the token text nor the secret in the error, and no line breaks or other
/// control characters.
fn assert_clean(case: &str, err: &Error, token: &str) {
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(token), "{case}: token text in {text:?}");
        assert!(!text.contains(SECRET), "{case}: secret in {text:?}");
        assert!(
            !text.chars().any(char::is_control),
            "{case}: control character in {text:?}"
        );
    }
}

/// Lets timer tasks run after the paused clock moved.
async fn settle() {
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        tokio::task::yield_now().await;
    }
}

// ---------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------

struct Case {
    name: &'static str,
    /// The token text the response carries somewhere (it must never show).
    token: &'static str,
    wire: Vec<u8>,
    kind: ErrorKind,
    retryable: bool,
}

fn case(name: &'static str, token: &'static str, wire: Vec<u8>, kind: ErrorKind) -> Case {
    Case {
        name,
        token,
        wire,
        kind,
        retryable: false,
    }
}

fn malformed(name: &'static str, token: &'static str, body: &str) -> Case {
    case(
        name,
        token,
        json_200(body.as_bytes()),
        ErrorKind::MalformedResponse,
    )
}

fn padded(token: &str, len: usize) -> Vec<u8> {
    let mut body =
        format!(r#"{{"access_token":"{token}","token_type":"Bearer","pad":""#).into_bytes();
    body.resize(len, b'x');
    body.extend_from_slice(b"\"}");
    body
}

fn table() -> Vec<Case> {
    use ErrorKind::MalformedResponse as M;
    let big = 70 * 1024;
    let mut deep = br#"{"access_token":"TOK-DEEP","x":"#.to_vec();
    deep.extend(std::iter::repeat_n(b'[', 60_000));
    vec![
        case("not json", "TOK-FORM", response(200, "text/plain", b"access_token=TOK-FORM&token_type=bearer", Framing::Length), M),
        case("html", "TOK-HTML", response(200, "text/html", b"<html>TOK-HTML</html>", Framing::Length), M),
        malformed("truncated json", "TOK-TRUNC", r#"{"access_token":"TOK-TRUNC","token_type":"Bea"#),
        malformed("empty body", "TOK-NONE", ""),
        malformed("json array", "TOK-ARRAY", r#"["TOK-ARRAY"]"#),
        malformed("json string", "TOK-STRING", r#""TOK-STRING""#),
        malformed("json null", "TOK-NULL", "null"),
        malformed("access_token a number", "42", r#"{"access_token":42,"token_type":"Bearer"}"#),
        malformed("access_token an object", "TOK-OBJ", r#"{"access_token":{"value":"TOK-OBJ"}}"#),
        malformed("access_token missing", "TOK-MISSING", r#"{"token_type":"Bearer","expires_in":60,"id":"TOK-MISSING"}"#),
        malformed("expires_in abc", "TOK-ABC", r#"{"access_token":"TOK-ABC","expires_in":"abc"}"#),
        malformed("expires_in an array", "TOK-EARR", r#"{"access_token":"TOK-EARR","expires_in":[]}"#),
        malformed("expires_in an object", "TOK-EOBJ", r#"{"access_token":"TOK-EOBJ","expires_in":{"s":1}}"#),
        malformed("expires_in a bool", "TOK-EBOOL", r#"{"access_token":"TOK-EBOOL","expires_in":true}"#),
        malformed("expires_in negative", "TOK-NEG", r#"{"access_token":"TOK-NEG","expires_in":-60}"#),
        malformed("expires_in negative text", "TOK-NEGS", r#"{"access_token":"TOK-NEGS","expires_in":"-60"}"#),
        malformed("expires_in negative fraction", "TOK-NEGF", r#"{"access_token":"TOK-NEGF","expires_in":-0.5}"#),
        malformed("expires_in hex", "TOK-HEX", r#"{"access_token":"TOK-HEX","expires_in":"0x10"}"#),
        malformed("CR LF in the token", "TOK-CRLF", r#"{"access_token":"TOK-CRLF\r\nX-Injected: yes"}"#),
        malformed("LF in the token", "TOK-LF", r#"{"access_token":"TOK-LF\nX-Injected: yes"}"#),
        malformed("NUL in the token", "TOK-NUL", r#"{"access_token":"TOK-NUL\u0000"}"#),
        malformed("tab in the token", "TOK-TAB", r#"{"access_token":"TOK-TAB\tmore"}"#),
        malformed("DEL in the token", "TOK-DEL", r#"{"access_token":"TOK-DEL\u007f"}"#),
        malformed("escape sequence in the token", "TOK-ESC", r#"{"access_token":"TOK-ESC\u001b[31m"}"#),
        malformed("space in the token", "TOK-SPACE", r#"{"access_token":"TOK-SPACE more"}"#),
        malformed("non-ascii token", "TOK-CAFÉ", r#"{"access_token":"TOK-CAFÉ"}"#),
        malformed("empty token", "\"\"", r#"{"access_token":"","token_type":"Bearer"}"#),
        malformed("blank token", "\"  \"", r#"{"access_token":"  ","token_type":"Bearer"}"#),
        malformed("mac token_type", "TOK-MAC", r#"{"access_token":"TOK-MAC","token_type":"mac"}"#),
        malformed("DPoP token_type", "TOK-DPOP", r#"{"access_token":"TOK-DPOP","token_type":"DPoP"}"#),
        malformed("numeric token_type", "TOK-TT", r#"{"access_token":"TOK-TT","token_type":1}"#),
        malformed("numeric scope", "TOK-SCOPE", r#"{"access_token":"TOK-SCOPE","scope":7}"#),
        malformed("scope array with a number", "TOK-SARR", r#"{"access_token":"TOK-SARR","scope":["read",7]}"#),
        malformed("numeric error field", "TOK-ERR", r#"{"access_token":"TOK-ERR","error":42}"#),
        case("invalid utf-8", "TOK-UTF", json_200(b"{\"access_token\":\"TOK-UTF\xff\xfe\"}"), M),
        case("deeply nested json", "TOK-DEEP", json_200(&deep), M),
        case("huge body with a length", "TOK-BIG1", json_200(&padded("TOK-BIG1", big)), M),
        case("huge body, chunked", "TOK-BIG2", response(200, "application/json", &padded("TOK-BIG2", big), Framing::Chunked), M),
        case("huge body, closed", "TOK-BIG3", response(200, "application/json", &padded("TOK-BIG3", big), Framing::Close), M),
        case(
            "a lying huge length",
            "TOK-LIE",
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{\"access_token\":\"TOK-LIE\"}".to_vec(),
            M,
        ),
        Case {
            retryable: true,
            ..case("huge error page", "TOK-BIGERR", response(502, "text/html", &padded("TOK-BIGERR", big), Framing::Chunked), ErrorKind::HttpStatus)
        },
        Case {
            retryable: true,
            ..case("not http at all", "TOK-GARBAGE", b"TOK-GARBAGE garbage\r\n\r\n".to_vec(), ErrorKind::Transport)
        },
        Case {
            retryable: true,
            ..case(
                "body shorter than its length",
                "TOK-SHORT",
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"access_token\":\"TOK-SHORT\"".to_vec(),
                ErrorKind::Transport,
            )
        },
    ]
}

#[tokio::test]
async fn every_hostile_token_response_gives_its_typed_error_without_the_token() {
    for case in table() {
        let endpoint = Endpoint::start(Answer::Bytes(case.wire.clone())).await;
        let layer = one_fetch(creds(&endpoint.url(), SECRET)).build();
        let err = token_failure(&layer, LIMIT).await;
        assert_eq!(err.kind(), case.kind, "{}: {err:?}", case.name);
        assert_eq!(err.is_retryable(), case.retryable, "{}: {err:?}", case.name);
        assert_clean(case.name, &err, case.token);
        assert_eq!(endpoint.requests(), 1, "{}", case.name);
        assert_eq!(
            layer.handle().state()[0].status,
            TokenStatus::None,
            "{}",
            case.name
        );
    }
}

#[test]
fn the_parser_gives_the_same_errors_for_the_table_bodies() {
    for case in table() {
        let Some(split) = case.wire.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&case.wire[..split]);
        // Only plainly framed, complete bodies: the rest is the transport's business.
        if !head.contains("Content-Length")
            || head.contains("100000000")
            || case.name.contains("shorter")
        {
            continue;
        }
        let status = head[9..12].parse::<u16>().unwrap();
        let body = &case.wire[split + 4..];
        // Size limits are the fetcher's; the parser may accept a long body.
        if body.len() > tower_oauth::fetch::MAX_TOKEN_RESPONSE_BYTES {
            continue;
        }
        let err = parse_token_response(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body,
        );
        let err = err.err().unwrap_or_else(|| panic!("{}: parsed", case.name));
        assert_eq!(err.kind(), case.kind, "{}: {err:?}", case.name);
        assert_clean(case.name, &err, case.token);
    }
}

#[tokio::test]
async fn an_endless_body_is_cut_at_the_limit_instead_of_read_forever() {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";
    for chunked in [false, true] {
        let head = if chunked {
            format!("{head}Transfer-Encoding: chunked\r\n\r\n")
        } else {
            format!("{head}Connection: close\r\n\r\n")
        };
        let endpoint = Endpoint::start(Answer::Endless {
            head: head.into_bytes(),
            chunked,
        })
        .await;
        // A long fetch timeout: only the size limit can end this in time.
        let layer = one_fetch(creds(&endpoint.url(), SECRET))
            .fetch_timeout(Duration::from_secs(30))
            .build();
        let err = token_failure(&layer, LIMIT).await;
        assert_eq!(
            err.kind(),
            ErrorKind::MalformedResponse,
            "chunked {chunked}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_body_dripping_a_byte_at_a_time_hits_the_fetch_timeout() {
    let body = br#"{"access_token":"TOK-DRIP","token_type":"Bearer","expires_in":3600}"#.to_vec();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let drips = [
        // Headers at once, then the body a byte per 100 ms.
        (head.clone().into_bytes(), body.clone()),
        // The headers themselves dripping.
        (Vec::new(), [head.into_bytes(), body].concat()),
    ];
    for (head, body) in drips {
        let endpoint = Endpoint::start(Answer::Drip {
            head,
            body,
            every: Duration::from_millis(100),
        })
        .await;
        let layer = one_fetch(creds(&endpoint.url(), SECRET))
            .fetch_timeout(Duration::from_millis(500))
            .build();
        let err = token_failure(&layer, LIMIT).await;
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
        assert!(err.is_retryable());
        assert_clean("drip", &err, "TOK-DRIP");
    }
}

#[tokio::test]
async fn hostile_error_descriptions_are_kept_short_and_printable() {
    let long = format!(
        r#"{{"error":"invalid_client\r\nX-Forged: 1","error_description":"line one\r\n\u001b[31mline two{}"}}"#,
        "y".repeat(10_000)
    );
    let endpoint = Endpoint::start(Answer::Bytes(response(
        400,
        "application/json",
        long.as_bytes(),
        Framing::Length,
    )))
    .await;
    let layer = one_fetch(creds(&endpoint.url(), SECRET)).build();
    let err = token_failure(&layer, LIMIT).await;
    // A forged code is not `invalid_client`: it is some other OAuth error.
    assert_eq!(err.kind(), ErrorKind::OAuth, "{err:?}");
    assert_clean("forged description", &err, "\u{1b}");
    let shown = err.to_string();
    assert!(
        shown.contains("line one") && shown.contains("line two"),
        "{shown}"
    );
    assert!(shown.len() < 600, "{} bytes: {shown}", shown.len());
    assert!(err
        .oauth_error()
        .is_some_and(|c| !c.chars().any(char::is_control)));
}

// ---------------------------------------------------------------------------------------
// Lifetimes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_zero_or_missing_expires_in_means_the_default_lifetime() {
    for field in [
        Some(json!(0)),
        Some(json!("0")),
        Some(serde_json::Value::Null),
    ] {
        let mock = MockServer::start().await.unwrap();
        mock.set_expires_in_field(field.clone());
        let layer = OAuthLayer::builder(mock_creds(&mock))
            .default_lifetime(Duration::from_secs(120))
            .expiry_margin(Duration::from_secs(5))
            .renew_ahead(Duration::from_secs(30))
            .build();
        let handle = layer.handle();
        handle.warm_up().await.unwrap();
        tokio::time::pause();

        // 120 s, less the 5 s margin: not the 7200 s the server really gives, not zero.
        let left = handle.state()[0].expires_in.expect("a usable token");
        assert!(
            left <= Duration::from_secs(115) && left > Duration::from_secs(110),
            "{field:?}: {left:?}"
        );
        // And it is renewed on that schedule: due 30 s before the end.
        tokio::time::advance(Duration::from_secs(80)).await;
        settle().await;
        assert_eq!(handle.state()[0].status, TokenStatus::Fresh, "{field:?}");
        tokio::time::advance(Duration::from_secs(15)).await;
        settle().await;
        assert_eq!(
            handle.state()[0].status,
            TokenStatus::RenewalDue,
            "{field:?}"
        );
        assert_eq!(handle.fetches(), 1);
        tokio::time::resume();
    }
}

#[tokio::test]
async fn a_huge_expires_in_is_clamped_to_the_max_lifetime_without_a_renewal_loop() {
    let mock = MockServer::start().await.unwrap();
    mock.set_expires_in_field(Some(json!(1_000_000_000_000u64)));
    let max = Duration::from_secs(600);
    let layer = OAuthLayer::builder(mock_creds(&mock))
        .max_lifetime(max)
        .expiry_margin(Duration::from_secs(5))
        .renew_ahead(Duration::from_secs(60))
        .build();
    let handle = layer.handle();
    let svc = layer.layer(Echo::default());
    let res = svc.clone().oneshot(get("/")).await.unwrap();
    let first = seen(&res).expect("a token").to_owned();
    tokio::time::pause();

    let left = handle.state()[0].expires_in.expect("a usable token");
    assert!(
        left <= max && left > max - Duration::from_secs(10),
        "{left:?}"
    );

    // Requests and time pass; the same token serves them all, no fetch loop.
    for _ in 0..3 {
        for _ in 0..5 {
            let res = svc.clone().oneshot(get("/")).await.unwrap();
            assert_eq!(seen(&res), Some(first.as_str()));
        }
        tokio::time::advance(Duration::from_secs(100)).await;
        settle().await;
    }
    assert_eq!(handle.fetches(), 1);
    assert_eq!(mock.stats().token_requests, 1);
    assert_eq!(handle.state()[0].status, TokenStatus::Fresh);

    // Not kept for a century: past the clamped lifetime it is expired.
    tokio::time::advance(Duration::from_secs(300)).await;
    settle().await;
    let state = &handle.state()[0];
    assert_eq!(state.status, TokenStatus::Expired);
    assert_eq!(state.expires_in, None);

    // The next request gets a new token.
    tokio::time::resume();
    let res = bounded(Duration::from_secs(10), svc.clone().oneshot(get("/")))
        .await
        .unwrap();
    assert_ne!(seen(&res), Some(first.as_str()));
    assert_eq!(handle.fetches(), 2);
}

#[tokio::test]
async fn a_huge_expires_in_works_even_with_an_unbounded_max_lifetime() {
    let mock = MockServer::start().await.unwrap();
    // Beyond u64: the parser clamps it to the longest `Duration`.
    mock.set_expires_in_field(Some(json!("99999999999999999999999")));
    let layer = OAuthLayer::builder(mock_creds(&mock))
        .max_lifetime(Duration::MAX)
        .retry_budget(Duration::ZERO)
        .build();
    let echo = Echo::default();
    let res = bounded(Duration::from_secs(10), layer.layer(echo).oneshot(get("/"))).await;
    let res = res.unwrap_or_else(|e| panic!("the token should be usable: {e:?}"));
    assert!(seen(&res).is_some_and(|a| a.starts_with("Bearer sdk_")));
    assert_eq!(layer.handle().state()[0].status, TokenStatus::Fresh);
}

#[tokio::test]
async fn an_unbounded_retry_budget_retries_instead_of_failing() {
    let mock = MockServer::start().await.unwrap();
    mock.fail_token_requests(2, TokenFailure::Status(StatusCode::SERVICE_UNAVAILABLE));
    let layer = OAuthLayer::builder(mock_creds(&mock))
        .retry_budget(Duration::MAX)
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(5))
        .build();
    let res = bounded(
        Duration::from_secs(10),
        layer.layer(Echo::default()).oneshot(get("/")),
    )
    .await;
    let res = res.unwrap_or_else(|e| panic!("retried until the endpoint recovered: {e:?}"));
    assert!(seen(&res).is_some());
    assert_eq!(layer.handle().fetches(), 3);
}

// ---------------------------------------------------------------------------------------
// Token URLs, plain HTTP, caller headers, redirects
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn plain_http_to_a_host_off_loopback_is_refused_before_connecting() {
    // `.invalid` never resolves; the refusal comes before any lookup or connection.
    let layer = one_fetch(creds("http://example.invalid/token", SECRET)).build();
    let err = token_failure(&layer, LIMIT).await;
    assert_eq!(err.kind(), ErrorKind::Config, "{err:?}");
    assert!(!err.is_retryable());
    assert_clean("config", &err, SECRET);

    // A loopback address the crate does not recognise as one (IPv4-mapped IPv6) stands in
    // for a remote host, so the test sends nothing off this machine.
    let mock = MockServer::start().await.unwrap();
    let mapped = format!(
        "http://[::ffff:127.0.0.1]:{}/api/oauth/token",
        mock.addr().port()
    );
    let refused =
        ClientCredentials::new(&mapped, mock.client_id(), mock.client_secret()).scope("read");
    let err = token_failure(&one_fetch(refused.clone()).build(), LIMIT).await;
    assert_eq!(err.kind(), ErrorKind::Config, "{err:?}");
    assert_eq!(mock.stats().token_requests, 0, "refused before connecting");

    // Allowed: the request goes out (it succeeds where IPv6 is available).
    let layer = one_fetch(refused.allow_insecure_http(true)).build();
    let res = bounded(
        Duration::from_secs(10),
        layer.layer(Echo::default()).oneshot(get("/")),
    )
    .await;
    match res {
        Ok(res) => {
            assert!(seen(&res).is_some());
            assert_eq!(mock.stats().tokens_issued, 1);
        }
        Err(err) => {
            let err = err.downcast_ref::<Error>().expect("a token error");
            assert_eq!(
                err.kind(),
                ErrorKind::Transport,
                "not a config error: {err:?}"
            );
        }
    }

    // Allowed, on a closed loopback port: a transport error, not a config one.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = creds(&format!("http://127.0.0.1:{port}/token"), SECRET).allow_insecure_http(true);
    let err = token_failure(&one_fetch(closed).build(), LIMIT).await;
    assert_eq!(err.kind(), ErrorKind::Transport, "{err:?}");
}

/// Token URLs the crate would have sent the secret somewhere other than they say: a port
/// that does not parse (the connector fell back to the scheme's default port), user info
/// (never used, but logged by the client) or a fragment (silently dropped).
fn unsendable_token_urls(port: u16) -> Vec<String> {
    let mut urls: Vec<String> = [
        "http://127.0.0.1:99999/token",
        "http://127.0.0.1:65536/token",
        "http://127.0.0.1:abc/token",
        "http://127.0.0.1:-1/token",
        "http://127.0.0.1:/token",
        "http://127.0.0.1:+80/token",
        "http://127.0.0.1:0/token",
        "https://127.0.0.1:99999/token",
        "https://127.0.0.1:443x/token",
        "http://[::1]:99999/token",
    ]
    .map(str::to_owned)
    .into();
    for authority in [
        format!("svc:hunter2-password@127.0.0.1:{port}"),
        format!("svc@127.0.0.1:{port}"),
        format!("@127.0.0.1:{port}"),
    ] {
        urls.push(format!("http://{authority}/token"));
    }
    urls.push(format!("http://127.0.0.1:{port}/token#hunter2-password"));
    urls
}

#[tokio::test]
async fn a_token_url_that_is_not_whole_is_refused_at_construction_and_nothing_is_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut accepted = Vec::new();
    for url in unsendable_token_urls(port) {
        match ClientCredentials::try_new(&url, "hostile-client", SECRET) {
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::Config, "{url}: {err:?}");
                assert!(!err.is_retryable(), "{url}");
                assert_clean(&url, &err, "hunter2");
                assert!(!format!("{err:?}").contains("svc"), "{url}: {err:?}");
                // The message says what is wrong with the url.
                let shown = err.to_string();
                assert!(shown.contains("token url"), "{url}: {shown}");
            }
            Ok(creds) => {
                // What the crate did with it: a token request, sent somewhere.
                let _ = token_failure(&one_fetch(creds).build(), LIMIT).await;
                accepted.push(url);
            }
        }
    }
    let connected = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(
        accepted.is_empty() && connected.is_err(),
        "accepted {accepted:?}; the listener on {port} was {}connected to",
        if connected.is_ok() { "" } else { "not " }
    );
    // The witness works: a valid url to it is connected to.
    let creds = creds(&format!("http://127.0.0.1:{port}/token"), SECRET);
    let fetch = tokio::spawn(async move { token_failure(&one_fetch(creds).build(), LIMIT).await });
    let connected = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
    assert!(matches!(connected, Ok(Ok(_))), "a valid url connects");
    fetch.abort();
}

#[tokio::test]
async fn a_request_with_its_own_authorization_is_passed_through_untouched() {
    let mock = MockServer::start().await.unwrap();
    // Even a broken token endpoint does not matter: it is never asked.
    mock.fail_token_requests(usize::MAX, TokenFailure::Hang);
    let layer = one_fetch(mock_creds(&mock)).build();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    // An inner service that always says "token expired", which would normally be replayed.
    let inner = tower::service_fn(move |req: Request<Full<Bytes>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let auth = req.headers().get(AUTHORIZATION).cloned();
        async move {
            let mut res = Response::new(Full::new(Bytes::from_static(
                br#"{"type":"token_expired","status":401}"#,
            )));
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            res.headers_mut()
                .insert("content-type", "application/problem+json".parse().unwrap());
            if let Some(auth) = auth {
                res.headers_mut().insert("x-seen-authorization", auth);
            }
            Ok::<_, Infallible>(res)
        }
    });
    let svc = layer.layer(inner);
    for own in ["Basic dXNlcjpwYXNz", "Bearer caller-own-token"] {
        let mut req = get("/");
        req.headers_mut()
            .insert(AUTHORIZATION, own.parse().unwrap());
        let res = bounded(Duration::from_secs(5), svc.clone().oneshot(req))
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "the caller gets the answer as is"
        );
        assert_eq!(seen(&res), Some(own));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "no replay");
    assert_eq!(layer.handle().fetches(), 0);
    assert_eq!(mock.stats().token_requests, 0);
}

#[tokio::test]
async fn redirects_from_the_token_endpoint_are_never_followed() {
    // The target is a working token endpoint: following would succeed, and would hand the
    // secret to whatever the redirect names.
    let mock = MockServer::start().await.unwrap();
    for status in [301u16, 302, 303, 307, 308] {
        let reason = StatusCode::from_u16(status)
            .unwrap()
            .canonical_reason()
            .unwrap();
        let wire = format!(
            "HTTP/1.1 {status} {reason}\r\nLocation: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            mock.token_url()
        );
        let endpoint = Endpoint::start(Answer::Bytes(wire.into_bytes())).await;
        let creds = ClientCredentials::new(&endpoint.url(), mock.client_id(), mock.client_secret());
        let layer = one_fetch(creds).build();
        let err = token_failure(&layer, LIMIT).await;
        assert_eq!(err.kind(), ErrorKind::HttpStatus, "{status}: {err:?}");
        assert_eq!(err.status().map(|s| s.as_u16()), Some(status));
        assert!(!err.is_retryable(), "{status}");
        assert_eq!(endpoint.requests(), 1);
    }
    assert_eq!(
        mock.stats().token_requests,
        0,
        "the redirect target saw nothing"
    );
}
