//! A demo and smoke tool: SimpleDocs API calls through `tower-oauth`, against the
//! embedded mock server or any real server.
//!
//! Without arguments it starts the embedded mock SimpleDocs server with 3-second tokens
//! and sends 80 requests from 4 workers, 350 ms apart, for about 7 seconds. Watch for:
//!
//! - one token fetch for the first request, then renewals *ahead of expiry* while the
//!   requests keep flowing on the current token;
//! - halfway through, the server revokes every token it issued. The next requests get
//!   `401 token_expired`; the layer fetches a new token and replays them, so every
//!   request still succeeds.
//!
//! Unless told `--scope`, each request asks for only the scope it needs, as SimpleDocs
//! recommends: `read` for a GET, `write` for a POST (`ScopePolicy::by_method`, one token
//! for each). Asking for none would not do: the mock's application, like a SimpleDocs
//! application with the `read write` scope, must name a scope in its token requests.
//!
//! ```text
//! cargo run --example simpledocs
//! cargo run --example simpledocs -- --help
//! cargo run --example simpledocs -- --requests 30 --token-lifetime-secs 1 --interval-ms 50
//! SIMPLEDOCS_CLIENT_SECRET=... cargo run --example simpledocs -- \
//!     --base-url https://app.simpledocs.com --client-id ID --scope read
//! ```
//!
//! Request bodies are `Full<Bytes>`: already in memory, so the layer replays them
//! whatever their size (`--method POST --body-bytes 100000 --scope write --revoke-after 4`
//! shows it; the mock acknowledges each upload's size and hash, and the tool checks
//! them). A streaming body larger than the layer's replay limit (64 KiB by default)
//! could not be replayed: its caller would get the `401 token_expired` as it came,
//! which this tool would count as a failed request.
//!
//! Progress goes to stderr. The last line on stdout is one JSON object,
//! `{"requests":N,"ok":K,"statuses":{"200":K},"errors":E,"token_fetches":F}`. The exit
//! status is 0 when every request got a 2xx answer, 1 otherwise (with a one-line reason
//! on stderr), 2 for bad arguments. Neither the client secret nor a token is ever printed.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    process::ExitCode,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use tokio::time::Instant;
use tower::{timeout::Timeout, ServiceBuilder, ServiceExt};
use tower_oauth::{
    fetch::{https_client, HttpsClient},
    mock::{MockConfig, MockServer},
    AuthMethod, ClientCredentials, ErrorKind, OAuth, OAuthLayer, ScopePolicy, TokenHandle,
    TokenStatus,
};

/// The largest `--body-bytes`: the body is built in memory before the first request.
const MAX_BODY_BYTES: usize = 256 << 20;

const USAGE: &str = "\
simpledocs: SimpleDocs API calls through tower-oauth, against the embedded mock or a real server

USAGE:
    cargo run --example simpledocs [-- OPTIONS]

Without options: the demo. The embedded mock issues 3 s tokens; 80 requests (4 at once,
350 ms apart) cross two renewals, and after 40 requests the mock revokes every token:
the layer re-issues and replays, and every request succeeds. Each request asks for
the scope it needs (\"read\" for these GETs).

OPTIONS:
    --base-url URL            API base; no mock is started        [default: the embedded mock]
    --token-url URL           token endpoint                      [default: BASE/api/oauth/token]
    --client-id ID            or env SIMPLEDOCS_CLIENT_ID         [default: the mock's]
    --client-secret S         or env SIMPLEDOCS_CLIENT_SECRET     [default: the mock's]
                              (the env vars are read only with --base-url, so real
                              credentials never go to the mock)
    --scope S                 the scope every request asks for, e.g. \"read write\"
                                                                  [default: by method, see --scope-policy]
    --auth-method post|basic  client authentication               [default: post]
    --param NAME=VALUE        one more token request parameter, e.g. audience=https://api.example
                              (repeatable; grant_type, scope, client_id and client_secret
                              are the grant's own and refused)
    --method GET|POST|mixed   mixed alternates GET /api/v1/workflows and POST /api/v1/documents
                                                                  [default: GET]
    --path P                  request path (GET or POST)          [default: /api/v1/workflows for GET,
                                                                   /api/v1/documents for POST]
    --body-bytes N            POST body size (a fixed pattern, at most 256 MiB)  [default: 0]
                              (the embedded mock takes uploads of up to 8 MiB)
    --requests N              how many requests                   [default: 10]
    --concurrency C           how many at once                    [default: 4]
    --interval-ms MS          pause before each request of a worker  [default: 0]
    --scope-policy fixed|by-method
                              by-method: \"read\" for GET, \"write\" for POST (one token each,
                              only the scope each request needs; --scope is ignored);
                              fixed: --scope for every request, or no scope at all without
                              --scope (the server's default, which SimpleDocs refuses to
                              an application with the \"read write\" scope)
                                                                  [default: fixed with --scope,
                                                                   by-method without]
    --allow-insecure-http     allow a plain http token URL that is not loopback
    --revoke-after N          (mock) revoke every token after N completed requests [default: off]
    --token-lifetime-secs N   (mock) token lifetime; the layer renews min(N/3 s, 60 s) ahead
                                                                  [default: 7200, as SimpleDocs]
    -h, --help                this text

OUTPUT:
    Progress on stderr; the last stdout line is
    {\"requests\":N,\"ok\":K,\"statuses\":{\"200\":K},\"errors\":E,\"token_fetches\":F}
    ok: 2xx answers; errors: requests that got no answer; token_fetches: token requests made.
    Exit 0 when every request got a 2xx, 1 otherwise (reason on stderr), 2 for bad arguments.
";

/// The no-argument demo's schedule. 20 rounds 350 ms apart span 6.65 s; a token is
/// renewed 2 s after it was fetched (3 s lifetime, renewed 1 s ahead) and unusable
/// after 2.7 s, so each half of the run (before and after the revoke) crosses one
/// renewal: 4 token fetches in all (first, renewal, re-issue after the revoke, renewal).
const DEMO_REQUESTS: usize = 80;
const DEMO_CONCURRENCY: usize = 4;
const DEMO_INTERVAL: Duration = Duration::from_millis(350);
const DEMO_TOKEN_LIFETIME: Duration = Duration::from_secs(3);
const DEMO_REVOKE_AFTER: usize = 40;

const WORKFLOWS_PATH: &str = "/api/v1/workflows";
const DOCUMENTS_PATH: &str = "/api/v1/documents";
/// Beyond this many requests, progress is printed per batch instead of per request.
const VERBOSE_LIMIT: usize = 100;
/// The most of a response body read (to find a problem `type` or an upload receipt).
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Bound on each request, token fetch included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the token state is sampled to report fetches.
const MONITOR_TICK: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MethodChoice {
    Get,
    Post,
    Mixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PolicyChoice {
    Fixed,
    ByMethod,
}

/// The parsed command line.
#[derive(Debug)]
struct Options {
    demo: bool,
    base_url: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    auth_method: AuthMethod,
    params: Vec<(String, String)>,
    method: MethodChoice,
    path: Option<String>,
    body_bytes: usize,
    requests: usize,
    concurrency: usize,
    interval: Duration,
    scope_policy: PolicyChoice,
    allow_insecure_http: bool,
    revoke_after: Option<usize>,
    token_lifetime: Option<Duration>,
}

enum Command {
    Help,
    Run(Box<Options>),
}

impl Options {
    fn demo() -> Self {
        Self {
            demo: true,
            requests: DEMO_REQUESTS,
            concurrency: DEMO_CONCURRENCY,
            interval: DEMO_INTERVAL,
            revoke_after: Some(DEMO_REVOKE_AFTER),
            token_lifetime: Some(DEMO_TOKEN_LIFETIME),
            ..Self::defaults()
        }
    }

    fn defaults() -> Self {
        Self {
            demo: false,
            base_url: None,
            token_url: None,
            client_id: None,
            client_secret: None,
            scope: None,
            auth_method: AuthMethod::ClientSecretPost,
            params: Vec::new(),
            method: MethodChoice::Get,
            path: None,
            body_bytes: 0,
            requests: 10,
            concurrency: 4,
            interval: Duration::ZERO,
            scope_policy: PolicyChoice::ByMethod,
            allow_insecure_http: false,
            revoke_after: None,
            token_lifetime: None,
        }
    }

    fn parse(args: &[String]) -> Result<Command, String> {
        if args.is_empty() {
            return Ok(Command::Run(Box::new(Self::demo())));
        }
        let mut o = Self::defaults();
        let mut policy = None;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
                _ => (arg.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next().cloned())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match name {
                "-h" | "--help" => return Ok(Command::Help),
                "--base-url" => o.base_url = Some(value()?),
                "--token-url" => o.token_url = Some(value()?),
                "--client-id" => o.client_id = Some(value()?),
                "--client-secret" => o.client_secret = Some(value()?),
                "--scope" => o.scope = Some(value()?),
                "--auth-method" => {
                    o.auth_method = match value()?.to_ascii_lowercase().as_str() {
                        "post" => AuthMethod::ClientSecretPost,
                        "basic" => AuthMethod::ClientSecretBasic,
                        other => {
                            return Err(format!("--auth-method is post or basic, not {other:?}"))
                        }
                    }
                }
                "--param" => {
                    let pair = value()?;
                    let Some((name, value)) = pair.split_once('=') else {
                        return Err(format!("--param is NAME=VALUE, not {pair:?}"));
                    };
                    o.params.push((name.to_owned(), value.to_owned()));
                }
                "--method" => {
                    o.method = match value()?.to_ascii_lowercase().as_str() {
                        "get" => MethodChoice::Get,
                        "post" => MethodChoice::Post,
                        "mixed" => MethodChoice::Mixed,
                        other => {
                            return Err(format!("--method is GET, POST or mixed, not {other:?}"))
                        }
                    }
                }
                "--path" => {
                    let path = value()?;
                    if !path.starts_with('/') {
                        return Err(format!("--path must start with '/', got {path:?}"));
                    }
                    o.path = Some(path);
                }
                "--body-bytes" => o.body_bytes = number(name, &value()?)?,
                "--requests" => o.requests = number(name, &value()?)?,
                "--concurrency" => o.concurrency = number(name, &value()?)?,
                "--interval-ms" => o.interval = Duration::from_millis(number(name, &value()?)?),
                "--scope-policy" => {
                    policy = Some(match value()?.to_ascii_lowercase().as_str() {
                        "fixed" => PolicyChoice::Fixed,
                        "by-method" => PolicyChoice::ByMethod,
                        other => {
                            return Err(format!(
                                "--scope-policy is fixed or by-method, not {other:?}"
                            ))
                        }
                    })
                }
                "--allow-insecure-http" if inline.is_none() => o.allow_insecure_http = true,
                "--revoke-after" => o.revoke_after = Some(number(name, &value()?)?),
                "--token-lifetime-secs" => {
                    o.token_lifetime = Some(Duration::from_secs(number(name, &value()?)?))
                }
                other => return Err(format!("unknown option {other:?}")),
            }
        }
        // A scope given is for every request; without one, each asks for what it needs.
        o.scope_policy = policy.unwrap_or(match o.scope {
            Some(_) => PolicyChoice::Fixed,
            None => PolicyChoice::ByMethod,
        });
        if o.body_bytes > MAX_BODY_BYTES {
            return Err(format!(
                "--body-bytes is at most {MAX_BODY_BYTES} (256 MiB), got {}",
                o.body_bytes
            ));
        }
        if o.requests == 0 || o.concurrency == 0 {
            return Err("--requests and --concurrency must be at least 1".into());
        }
        if o.revoke_after == Some(0) {
            return Err("--revoke-after must be at least 1".into());
        }
        if o.token_lifetime == Some(Duration::ZERO) {
            return Err("--token-lifetime-secs must be at least 1".into());
        }
        if o.base_url.is_some() && (o.revoke_after.is_some() || o.token_lifetime.is_some()) {
            return Err(
                "--revoke-after and --token-lifetime-secs only apply to the embedded mock, \
                        not with --base-url"
                    .into(),
            );
        }
        if o.method == MethodChoice::Mixed && o.path.is_some() {
            return Err("--path does not combine with --method mixed".into());
        }
        Ok(Command::Run(Box::new(o)))
    }
}

fn number<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{name} expects a whole number, got {text:?}"))
}

/// The client stack: a per-request timeout around the OAuth layer around hyper-util's
/// pooled client over rustls (`https_or_http`). Any tower HTTP client would do.
type Client = Timeout<OAuth<HttpsClient>>;

/// What each request does, and what the run shares.
struct Plan {
    requests: usize,
    concurrency: usize,
    interval: Duration,
    method: MethodChoice,
    uri: Uri,
    workflows: Uri,
    documents: Uri,
    /// The POST body, a fixed pattern; cloning it per request copies nothing.
    body: Bytes,
    body_fnv1a64: u64,
    revoke_after: Option<usize>,
    verbose: bool,
    progress_every: usize,
}

impl Plan {
    fn target(&self, i: usize) -> (Method, &Uri) {
        match self.method {
            MethodChoice::Get => (Method::GET, &self.uri),
            MethodChoice::Post => (Method::POST, &self.uri),
            MethodChoice::Mixed if i % 2 == 1 => (Method::POST, &self.documents),
            MethodChoice::Mixed => (Method::GET, &self.workflows),
        }
    }

    fn request(&self, i: usize) -> Request<Full<Bytes>> {
        let (method, uri) = self.target(i);
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .header(header::ACCEPT, HeaderValue::from_static("application/json"))
            .header(
                header::USER_AGENT,
                HeaderValue::from_static("tower-oauth-simpledocs-example"),
            );
        let body = if method == Method::POST {
            builder = builder.header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            self.body.clone()
        } else {
            Bytes::new()
        };
        builder
            .body(Full::new(body))
            .expect("method, uri and headers are valid")
    }
}

/// The outcome of one request.
enum Outcome {
    /// An answer: its status, the problem `type` of an error answer, and, for an upload
    /// the server acknowledged with a different size or hash than was sent, what differs.
    Answer {
        status: StatusCode,
        problem: Option<String>,
        mismatch: Option<String>,
    },
    /// No answer (a token failure, a transport error, a timeout).
    Failed(String),
}

/// The counts of a run.
#[derive(Default)]
struct Tally {
    ok: usize,
    errors: usize,
    statuses: BTreeMap<u16, usize>,
    /// Why requests failed (non-2xx or no answer), with counts.
    failures: BTreeMap<String, usize>,
    mismatches: Vec<String>,
}

/// What the workers share.
struct Run {
    plan: Plan,
    started: Instant,
    completed: AtomicUsize,
    revokes: Arc<AtomicUsize>,
    tally: Mutex<Tally>,
    monitor: Arc<Mutex<Monitor>>,
    handle: TokenHandle,
    mock: Option<Arc<MockServer>>,
}

fn stamp(started: Instant) -> String {
    format!("[{:6.2}s]", started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        // The layer's own logs (fetches, replays), e.g. RUST_LOG=tower_oauth=info.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match Options::parse(&args) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("error: {msg}\n(run with --help for usage)");
            return ExitCode::from(2);
        }
    };
    match run(*options).await {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Sets everything up, runs the workers and reports. `Err` is a setup problem (no
/// request was sent).
async fn run(o: Options) -> Result<ExitCode, String> {
    // The server: the given one, or the embedded mock.
    let lifetime = o.token_lifetime.unwrap_or(Duration::from_secs(7200));
    let mock = match o.base_url {
        Some(_) => None,
        None => {
            let config = MockConfig::new().token_lifetime(lifetime);
            let mock = MockServer::start_with(config)
                .await
                .map_err(|e| format!("cannot start the embedded mock server: {e}"))?;
            Some(Arc::new(mock))
        }
    };
    let base = match (&o.base_url, &mock) {
        (Some(url), _) => url.trim_end_matches('/').to_owned(),
        (None, Some(mock)) => mock.base_url(),
        (None, None) => unreachable!("a mock is started when there is no base url"),
    };
    let token_url = o
        .token_url
        .clone()
        .unwrap_or_else(|| format!("{base}/api/oauth/token"));
    // Real credentials come from the environment only for a real server.
    let from_env = |name: &str| {
        o.base_url
            .as_ref()
            .and_then(|_| std::env::var(name).ok())
            .filter(|v| !v.is_empty())
    };
    let client_id = o
        .client_id
        .clone()
        .or_else(|| from_env("SIMPLEDOCS_CLIENT_ID"))
        .or_else(|| mock.as_ref().map(|m| m.client_id().to_owned()))
        .ok_or("--client-id (or SIMPLEDOCS_CLIENT_ID) is required with --base-url")?;
    let client_secret = o
        .client_secret
        .clone()
        .or_else(|| from_env("SIMPLEDOCS_CLIENT_SECRET"))
        .or_else(|| mock.as_ref().map(|m| m.client_secret().to_owned()))
        .ok_or("--client-secret (or SIMPLEDOCS_CLIENT_SECRET) is required with --base-url")?;

    let mut creds = ClientCredentials::try_new(&token_url, client_id.as_str(), client_secret)
        .map_err(|e| format!("--token-url {token_url:?}: {e}"))?
        .auth_method(o.auth_method)
        .allow_insecure_http(o.allow_insecure_http);
    if let Some(scope) = &o.scope {
        creds = creds.scope(scope.as_str());
    }
    for (name, value) in &o.params {
        creds = creds.param(name.as_str(), value.as_str());
    }

    let mut builder = OAuthLayer::builder(creds);
    if o.scope_policy == PolicyChoice::ByMethod {
        builder = builder.scope_policy(ScopePolicy::by_method("read", "write"));
    }
    let renew_ahead = mock
        .as_ref()
        .map(|_| (lifetime / 3).min(Duration::from_secs(60)));
    if let Some(ahead) = renew_ahead {
        // We know the mock's token lifetime; renew a third of it ahead.
        builder = builder.renew_ahead(ahead);
    }
    let layer = builder.build();
    let handle = layer.handle();
    let client: Client = ServiceBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .layer(layer)
        .service(https_client());

    let url = |path: &str| -> Result<Uri, String> {
        format!("{base}{path}")
            .parse()
            .map_err(|e| format!("{base}{path} is not a valid url: {e}"))
    };
    let default_path = match o.method {
        MethodChoice::Post => DOCUMENTS_PATH,
        _ => WORKFLOWS_PATH,
    };
    let body: Bytes = (0..o.body_bytes).map(|i| b'a' + (i % 26) as u8).collect();
    let plan = Plan {
        requests: o.requests,
        concurrency: o.concurrency.min(o.requests),
        interval: o.interval,
        method: o.method,
        uri: url(o.path.as_deref().unwrap_or(default_path))?,
        workflows: url(WORKFLOWS_PATH)?,
        documents: url(DOCUMENTS_PATH)?,
        body_fnv1a64: fnv1a64(&body),
        body,
        revoke_after: o.revoke_after.filter(|_| mock.is_some()),
        verbose: o.requests <= VERBOSE_LIMIT,
        progress_every: o.requests.div_ceil(20),
    };

    print_header(
        &o,
        &plan,
        &base,
        &token_url,
        &client_id,
        renew_ahead.map(|ahead| (lifetime, ahead)),
    );

    let started = Instant::now();
    let revokes = Arc::new(AtomicUsize::new(0));
    let monitor = Arc::new(Mutex::new(Monitor::new(
        handle.clone(),
        started,
        revokes.clone(),
    )));
    let run = Arc::new(Run {
        plan,
        started,
        completed: AtomicUsize::new(0),
        revokes,
        tally: Mutex::new(Tally::default()),
        monitor: monitor.clone(),
        handle: handle.clone(),
        mock: mock.clone(),
    });
    let ticker = tokio::spawn({
        let monitor = monitor.clone();
        async move {
            let mut tick = tokio::time::interval(MONITOR_TICK);
            loop {
                tick.tick().await;
                lock(&monitor).poll();
            }
        }
    });
    let workers: Vec<_> = (0..run.plan.concurrency)
        .map(|w| tokio::spawn(worker(w, client.clone(), run.clone())))
        .collect();
    for w in workers {
        w.await.map_err(|e| format!("a worker panicked: {e}"))?;
    }
    ticker.abort();
    lock(&monitor).poll();

    Ok(report(&run, &handle, mock.as_deref()))
}

/// Says what is about to happen. `mock` is the mock's token lifetime and the layer's
/// renew-ahead setting, when the mock is the server.
fn print_header(
    o: &Options,
    plan: &Plan,
    base: &str,
    token_url: &str,
    client_id: &str,
    mock: Option<(Duration, Duration)>,
) {
    eprintln!(
        "tower-oauth SimpleDocs {}",
        if o.demo { "demo" } else { "run" }
    );
    match mock {
        Some((lifetime, ahead)) => eprintln!(
            "  server : embedded mock at {base} (tokens live {}; the layer renews them {} ahead)",
            seconds(lifetime),
            seconds(ahead)
        ),
        None => eprintln!("  server : {base}"),
    }
    let auth = match o.auth_method {
        AuthMethod::ClientSecretBasic => "basic",
        _ => "post",
    };
    eprintln!("  token  : {token_url} as client {client_id:?} (auth {auth}, secret not shown)");
    let scopes = match (o.scope_policy, &o.scope) {
        (PolicyChoice::Fixed, None) => {
            "none requested: the server's default (refused to a \"read write\" application)"
                .to_owned()
        }
        (PolicyChoice::Fixed, Some(scope)) => format!("{scope:?} for every request"),
        (PolicyChoice::ByMethod, scope) => format!(
            "by method: \"read\" for GET, \"write\" for POST{}",
            if scope.is_some() {
                " (--scope is ignored)"
            } else {
                ""
            }
        ),
    };
    eprintln!("  scope  : {scopes}");
    let what = match o.method {
        MethodChoice::Get => format!("GET {}", plan.uri.path()),
        MethodChoice::Post => format!("POST {} ({} bytes)", plan.uri.path(), plan.body.len()),
        MethodChoice::Mixed => format!(
            "GET {WORKFLOWS_PATH} and POST {DOCUMENTS_PATH} ({} bytes) alternately",
            plan.body.len()
        ),
    };
    let mut schedule = format!(
        "  plan   : {} requests, {what}, {} at once, {} ms apart",
        plan.requests,
        plan.concurrency,
        plan.interval.as_millis()
    );
    if let Some(n) = plan.revoke_after {
        let _ = write!(schedule, "; the server revokes every token after {n}");
    }
    eprintln!("{schedule}");
    if o.demo {
        eprintln!(
            "  watch  : tokens renewed ahead of expiry while requests flow; after the revoke, \
             the layer re-issues and replays: nothing fails"
        );
    }
    eprintln!();
}

/// `3 s`, `333 ms`.
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Sends requests `w`, `w + C`, `w + 2C`, ... one after another.
async fn worker(w: usize, client: Client, run: Arc<Run>) {
    let plan = &run.plan;
    for i in (w..plan.requests).step_by(plan.concurrency) {
        if !plan.interval.is_zero() {
            tokio::time::sleep(plan.interval).await;
        }
        let (method, uri) = plan.target(i);
        let path = uri.path().to_owned();
        let outcome = send(client.clone(), plan.request(i), plan).await;
        let done = run.completed.fetch_add(1, Ordering::SeqCst) + 1;
        let line = {
            let mut tally = lock(&run.tally);
            tally.record(&outcome)
        };
        lock(&run.monitor).poll();
        // (`rem_euclid`: `is_multiple_of` is newer than the crate's MSRV.)
        if plan.verbose || done.rem_euclid(plan.progress_every) == 0 || done == plan.requests {
            let what = if plan.verbose {
                format!("w{w} #{:<3} {method:<4} {path}", i + 1)
            } else {
                format!("{done}/{} done; last: w{w} {method} {path}", plan.requests)
            };
            eprintln!(
                "{} {what} -> {line}  (token fetches: {})",
                stamp(run.started),
                run.handle.fetches()
            );
        }
        if plan.revoke_after == Some(done) {
            if let Some(mock) = &run.mock {
                mock.revoke_all();
                run.revokes.fetch_add(1, Ordering::SeqCst);
                eprintln!(
                    "{} !! RECOVERY TEST: the server revoked every token it issued (after {done} \
                     requests); the next requests get 401 token_expired",
                    stamp(run.started)
                );
            }
        }
    }
}

async fn send(client: Client, request: Request<Full<Bytes>>, plan: &Plan) -> Outcome {
    let is_post = request.method() == Method::POST;
    let response = match client.oneshot(request).await {
        Ok(response) => response,
        Err(err) => return Outcome::Failed(describe_error(&*err)),
    };
    let status = response.status();
    let body = match Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            return Outcome::Failed(format!(
                "reading the {} response failed: {}",
                status.as_u16(),
                chain(&*err)
            ))
        }
    };
    let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let field = |name: &str| json.as_ref().and_then(|j| j.get(name)).cloned();
    if !status.is_success() {
        let problem = field("type").or_else(|| field("error")).and_then(|v| {
            v.as_str()
                .map(|t| t.rsplit('/').next().unwrap_or(t).to_owned())
        });
        return Outcome::Answer {
            status,
            problem,
            mismatch: None,
        };
    }
    // The mock (and any server that says so) acknowledges uploads with their size and
    // FNV-1a hash: a replayed body must arrive whole.
    let mut mismatch = None;
    if is_post {
        if let Some(received) = field("received_bytes").and_then(|v| v.as_u64()) {
            if received != plan.body.len() as u64 {
                mismatch = Some(format!(
                    "server received {received} bytes, {} were sent",
                    plan.body.len()
                ));
            }
        }
        if let Some(hash) = field("fnv1a64").and_then(|v| v.as_str().map(str::to_owned)) {
            let sent = format!("{:016x}", plan.body_fnv1a64);
            if mismatch.is_none() && !hash.eq_ignore_ascii_case(&sent) {
                mismatch = Some(format!("server hashed the body as {hash}, sent {sent}"));
            }
        }
    }
    Outcome::Answer {
        status,
        problem: None,
        mismatch,
    }
}

impl Tally {
    /// Counts an outcome; returns how to show it.
    fn record(&mut self, outcome: &Outcome) -> String {
        match outcome {
            Outcome::Answer {
                status,
                problem,
                mismatch,
            } => {
                *self.statuses.entry(status.as_u16()).or_default() += 1;
                let mut shown = status.as_u16().to_string();
                if status.is_success() {
                    self.ok += 1;
                } else {
                    let reason = match problem {
                        Some(problem) => format!("{} {problem}", status.as_u16()),
                        None => format!(
                            "{} {}",
                            status.as_u16(),
                            status.canonical_reason().unwrap_or("")
                        ),
                    };
                    shown = reason.clone();
                    *self.failures.entry(reason).or_default() += 1;
                }
                if let Some(m) = mismatch {
                    self.mismatches.push(m.clone());
                    let _ = write!(shown, " (body mismatch: {m})");
                }
                shown
            }
            Outcome::Failed(reason) => {
                self.errors += 1;
                *self.failures.entry(reason.clone()).or_default() += 1;
                format!("error: {reason}")
            }
        }
    }
}

/// One line naming a failure that produced no answer.
fn describe_error(err: &(dyn std::error::Error + 'static)) -> String {
    if let Some(e) = err.downcast_ref::<tower_oauth::Error>() {
        let code = e.oauth_error().unwrap_or(kind_code(e.kind()));
        // With an OAuth code the kind says it all; otherwise the full text (with the
        // detail and the cause) does.
        let what = if e.oauth_error().is_some() {
            e.kind().to_string()
        } else {
            chain(e)
        };
        format!("token request failed: {code} ({what})")
    } else if err.is::<tower::timeout::error::Elapsed>() {
        format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())
    } else {
        format!("request failed: {}", chain(err))
    }
}

/// An error and its sources, joined by ": ".
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.ends_with(&s_text) {
            let _ = write!(text, ": {s_text}");
        }
        source = s.source();
    }
    text
}

fn kind_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidClient => "invalid_client",
        ErrorKind::InvalidScope => "invalid_scope",
        ErrorKind::UnauthorizedClient => "unauthorized_client",
        ErrorKind::OAuth => "oauth_error",
        ErrorKind::HttpStatus => "http_status",
        ErrorKind::MalformedResponse => "malformed_response",
        ErrorKind::Transport => "transport",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Config => "config",
        ErrorKind::InsufficientScope => "insufficient_scope",
        ErrorKind::Cancelled => "cancelled",
        _ => "error",
    }
}

/// Reports token fetches as they happen, by sampling the layer's token state: a fetch
/// shows as a rising counter, and the status seen before it tells why it happened.
struct Monitor {
    handle: TokenHandle,
    started: Instant,
    revokes: Arc<AtomicUsize>,
    slots: Vec<SlotTrack>,
}

#[derive(Default)]
struct SlotTrack {
    fetches: u64,
    saw_due: bool,
    saw_expired: bool,
    saw_rejected: bool,
    revokes: usize,
    last_error: Option<ErrorKind>,
}

impl Monitor {
    fn new(handle: TokenHandle, started: Instant, revokes: Arc<AtomicUsize>) -> Self {
        Self {
            handle,
            started,
            revokes,
            slots: Vec::new(),
        }
    }

    fn poll(&mut self) {
        let revokes = self.revokes.load(Ordering::SeqCst);
        for (i, state) in self.handle.state().iter().enumerate() {
            if self.slots.len() <= i {
                self.slots.push(SlotTrack::default());
            }
            let track = &mut self.slots[i];
            let new_fetch = state.fetches > track.fetches;
            // While a fetch runs, the status is the outgoing token's; count it once.
            if new_fetch || !state.fetching {
                match state.status {
                    TokenStatus::RenewalDue => track.saw_due = true,
                    TokenStatus::Expired => track.saw_expired = true,
                    TokenStatus::Rejected => track.saw_rejected = true,
                    _ => {}
                }
            }
            let scope = state
                .scope
                .as_ref()
                .map_or("server default".to_owned(), |s| format!("\"{s}\""));
            while track.fetches < state.fetches {
                track.fetches += 1;
                let revoked = track.revokes < revokes;
                let why = if track.fetches == 1 {
                    "first token"
                } else if track.saw_rejected || (revoked && !track.saw_due && !track.saw_expired) {
                    "re-issued: the API rejected the token (401); the rejected requests are \
                     replayed with the new one"
                } else if track.saw_expired {
                    "renewed after the token expired"
                } else if track.saw_due {
                    "renewed ahead of expiry; requests keep using the current token meanwhile"
                } else if state.last_error.is_some() {
                    "another attempt after a failed fetch"
                } else {
                    "renewed"
                };
                eprintln!(
                    "{} ** token fetch #{} (scope {scope}): {why}",
                    stamp(self.started),
                    track.fetches
                );
                track.saw_due = false;
                track.saw_expired = false;
                track.saw_rejected = false;
                track.revokes = revokes;
            }
            if state.last_error != track.last_error {
                if let Some(kind) = state.last_error {
                    eprintln!(
                        "{} ** token fetch failed (scope {scope}): {} ({kind})",
                        stamp(self.started),
                        kind_code(kind)
                    );
                }
                track.last_error = state.last_error;
            }
        }
    }
}

/// Prints the summary (stderr), the JSON line (stdout) and the verdict.
fn report(run: &Run, handle: &TokenHandle, mock: Option<&MockServer>) -> ExitCode {
    let tally = lock(&run.tally);
    let requests = run.plan.requests;
    let fetches = handle.fetches();
    let statuses: BTreeMap<String, usize> = tally
        .statuses
        .iter()
        .map(|(code, n)| (code.to_string(), *n))
        .collect();

    eprintln!();
    let shown: Vec<String> = tally
        .statuses
        .iter()
        .map(|(code, n)| format!("{code} x{n}"))
        .collect();
    eprintln!(
        "summary: {requests} requests: {} ok ({}), {} errors; {fetches} token fetch(es) in {:.1}s",
        tally.ok,
        if shown.is_empty() {
            "no answers".into()
        } else {
            shown.join(", ")
        },
        tally.errors,
        run.started.elapsed().as_secs_f64()
    );
    for state in handle.state() {
        let scope = state
            .scope
            .as_ref()
            .map_or("(none)".into(), |s| format!("{:?}", s.as_str()));
        let granted = state
            .granted_scope
            .as_ref()
            .map_or("(unknown)".into(), |s| format!("{:?}", s.as_str()));
        let status = match state.status {
            TokenStatus::None => "none",
            TokenStatus::Fresh => "fresh",
            TokenStatus::RenewalDue => "renewal-due",
            TokenStatus::Expired => "expired",
            TokenStatus::Rejected => "rejected",
            _ => "other",
        };
        eprintln!(
            "token slot scope={scope} granted={granted} status={status} fetches={}",
            state.fetches
        );
    }
    if let Some(mock) = mock {
        let s = mock.stats();
        eprintln!(
            "mock: token_requests={} tokens_issued={} token_errors={} api_requests={} api_ok={} \
             api_token_expired={} api_insufficient_scope={}",
            s.token_requests,
            s.tokens_issued,
            s.token_errors,
            s.api_requests,
            s.api_ok,
            s.api_token_expired,
            s.api_insufficient_scope
        );
        if run.revokes.load(Ordering::SeqCst) > 0 {
            eprintln!(
                "recovery: {} requests were rejected after the revoke (401 token_expired), got \
                 a new token and were replayed; {} of {requests} requests succeeded",
                s.api_token_expired, tally.ok
            );
        }
    }

    let failure = verdict(&tally, requests);
    if failure.is_none() {
        eprintln!("all {requests} requests succeeded");
    }
    println!(
        "{{\"requests\":{requests},\"ok\":{},\"statuses\":{},\"errors\":{},\"token_fetches\":{fetches}}}",
        tally.ok,
        serde_json::to_string(&statuses).expect("a map of strings to numbers serializes"),
        tally.errors,
    );
    match failure {
        None => ExitCode::SUCCESS,
        Some(reason) => {
            eprintln!("error: {reason}");
            ExitCode::from(1)
        }
    }
}

/// Why the run failed, in one line; `None` when every request got a 2xx answer (with
/// the body that was sent).
fn verdict(tally: &Tally, requests: usize) -> Option<String> {
    let failed = requests - tally.ok;
    if failed > 0 {
        let mut reasons: Vec<(&String, &usize)> = tally.failures.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1));
        if let [(reason, _)] = reasons[..] {
            if failed == requests {
                return Some(reason.clone());
            }
            return Some(format!("{failed} of {requests} requests failed: {reason}"));
        }
        let listed: Vec<String> = reasons
            .iter()
            .map(|(reason, n)| format!("{reason} (x{n})"))
            .collect();
        return Some(format!(
            "{failed} of {requests} requests failed: {}",
            listed.join("; ")
        ));
    }
    let first = tally.mismatches.first()?;
    Some(format!(
        "{} of {requests} uploads arrived different from what was sent: {first}",
        tally.mismatches.len()
    ))
}

/// The 64-bit FNV-1a hash, as the mock reports for uploads.
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
