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
//! `{"requests":N,"ok":K,"statuses":{"200":K},"errors":E,"token_fetches":F,"store_hits":H}`
//! (`token_fetches` counts this process's token requests; `store_hits`, tokens it read
//! from the `--redis-url` store that another process fetched). The exit
//! status is 0 when every request got a 2xx answer, 1 otherwise (with a one-line reason
//! on stderr), 2 for bad arguments.
//!
//! Neither the client secret, a private key nor a token is ever printed, and what a
//! server says (a problem type, an error) is printed only as `tower_oauth::redact` cleans it:
//! no part of the secret or of a token this client sent, no control character, at most
//! 200 characters. URLs are shown without user info or query.
//!
//! A fleet: processes given one `--redis-url` share their tokens (one fetches, the others
//! read it from Redis; needs `--features redis`), and `--tenants N` spreads the requests
//! over N applications of the mock, one layer with a token per tenant.
//!
//! Client authentication: `--auth-method private_key_jwt` signs assertions with
//! `--private-key` (against the embedded mock, a key generated for the run and registered
//! with it), `client_secret_jwt` with the secret, `tls_client_auth` presents
//! `--client-cert` to a real HTTPS server; `--dpop` binds tokens to a key of the run (the
//! mock then challenges for nonces), and `--issuer` finds the token endpoint by
//! discovery. The signed methods and DPoP need `--features jwt`.
//!
//! The modules: `cli` (the command line), `auth` (client authentication and discovery),
//! `jose` (keys and DPoP), `fleet` (the store and tenants), `plan` (the
//! requests), `work` (the workers),
//! `monitor` (token fetches as they happen), `report` (what is printed), `shown` (what
//! of others' words may be).

mod auth;
mod cli;
mod fleet;
mod jose;
mod monitor;
mod plan;
mod report;
mod shown;
mod work;

use std::{
    process::ExitCode,
    sync::{atomic::AtomicUsize, Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;
use tower::ServiceBuilder;
use tower_oauth::{
    fetch::https_client,
    mock::{MockConfig, MockServer},
    OAuthLayer, ScopePolicy,
};

use crate::{
    auth::Endpoint,
    cli::{Options, PolicyChoice},
    jose::Jose,
    monitor::Monitor,
    plan::Plan,
    report::{banner, report},
    shown::{NoteTokens, Shown},
    work::{worker, Client, Run, Tally, REQUEST_TIMEOUT},
};

/// The embedded mock's client id, unless `--client-id` names another.
const MOCK_CLIENT_ID: &str = "simpledocs-demo-client";
/// How often the token state is sampled to report fetches.
const MONITOR_TICK: Duration = Duration::from_millis(20);

#[tokio::main]
async fn main() -> ExitCode {
    let options = Options::from_command_line();
    if std::env::var_os("RUST_LOG").is_some() {
        // The layer's own logs (fetches, replays), e.g. RUST_LOG=tower_oauth=info.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    match run(options).await {
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
    let jose = Jose::load(&o.auth)?;
    // The server: the given one, or the embedded mock.
    let lifetime = o.token_lifetime.unwrap_or(Duration::from_secs(7200));
    let mock = match o.base_url {
        Some(_) => None,
        None => {
            let config = MockConfig::new()
                .token_lifetime(lifetime)
                .tenants(o.tenants.unwrap_or(0));
            let id = o.client_id.as_deref().unwrap_or(MOCK_CLIENT_ID);
            let config = jose.mock_config(config, id);
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
    let client_id = o
        .client_id
        .clone()
        .or_else(|| mock.as_ref().map(|m| m.client_id().to_owned()))
        .ok_or("--client-id (or SIMPLEDOCS_CLIENT_ID) is required with --base-url")?;
    // Only a method that proves the client with its secret is given one.
    let client_secret = if o.auth.method.uses_secret() {
        o.client_secret
            .clone()
            .or_else(|| mock.as_ref().map(|m| m.client_secret().to_owned()))
            .ok_or("--client-secret (or SIMPLEDOCS_CLIENT_SECRET) is required with --base-url")?
    } else {
        String::new()
    };
    let shown = Shown::new(&client_secret);
    let endpoint = Endpoint::resolve(token_url, o.issuer.as_deref(), &shown).await?;

    let plan = Plan::new(&o, &base, mock.is_some())?;
    // We know the mock's token lifetime; renew a third of it ahead.
    let renew_ahead = mock
        .as_ref()
        .map(|_| (lifetime / 3).min(Duration::from_secs(60)));
    let credentials = |id: &str, secret: String| {
        let creds = endpoint.credentials(id, secret)?;
        let discovered = matches!(endpoint, Endpoint::Discovered(_));
        let mut creds = jose
            .credentials(o.auth.apply(creds, discovered)?)
            .allow_insecure_http(o.allow_insecure_http);
        if let Some(scope) = &o.scope {
            creds = creds.scope(scope.as_str());
        }
        for (name, value) in &o.params {
            creds = creds.param(name.as_str(), value.as_str());
        }
        Ok::<_, String>(creds)
    };
    let creds = credentials(&client_id, client_secret)?;
    let method = auth::method_name(*creds.auth_method_ref());
    banner(
        &o,
        &plan,
        &base,
        &endpoint.shown_url(o.auth.method),
        &client_id,
        (method, &jose),
        renew_ahead.map(|ahead| (lifetime, ahead)),
    );
    let mut builder = match (o.tenants, &mock) {
        (Some(n), Some(mock)) => fleet::for_tenants(mock, n, &shown, credentials)?,
        _ => OAuthLayer::builder(creds),
    };
    builder = fleet::with_store(builder, &o, &shown).await?;
    builder = jose.layer(builder);
    if o.scope_policy == PolicyChoice::ByMethod {
        builder = builder.scope_policy(ScopePolicy::by_method("read", "write"));
    }
    if let Some(ahead) = renew_ahead {
        builder = builder.renew_ahead(ahead);
    }
    let layer = builder.build();
    let handle = layer.handle();
    let client: Client = ServiceBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .layer(layer)
        .service(NoteTokens::new(https_client(), shown.clone()));

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
        shown,
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

    Ok(report(&run, &handle, mock.as_deref(), (method, &jose)))
}

/// The value behind `m`, even if a thread panicked holding it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
