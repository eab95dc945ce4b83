//! The command line, parsed with clap.

use std::time::Duration;

use clap::{
    error::ErrorKind, parser::ValueSource, CommandFactory, FromArgMatches, Parser, ValueEnum,
};

use crate::auth::{AuthArgs, AuthChoice, AuthOptions};

/// The largest `--body-bytes`: the body is built in memory before the first request.
const MAX_BODY_BYTES: usize = 256 << 20;

/// The no-argument demo's schedule. 20 rounds 350 ms apart span 6.65 s; a token is
/// renewed 2 s after it was fetched (3 s lifetime, renewed 1 s ahead) and unusable
/// after 2.7 s, so each half of the run (before and after the revoke) crosses one
/// renewal: 4 token fetches in all (first, renewal, re-issue after the revoke, renewal).
const DEMO_REQUESTS: usize = 80;
const DEMO_CONCURRENCY: usize = 4;
const DEMO_INTERVAL: Duration = Duration::from_millis(350);
const DEMO_TOKEN_LIFETIME: Duration = Duration::from_secs(3);
const DEMO_REVOKE_AFTER: usize = 40;

const ABOUT: &str =
    "SimpleDocs API calls through tower-oauth, against the embedded mock or a real server";

const LONG_ABOUT: &str = "\
SimpleDocs API calls through tower-oauth, against the embedded mock or a real server.

Without options: the demo. The embedded mock issues 3 s tokens; 80 requests (4 at once,
350 ms apart) cross two renewals, and after 40 requests the mock revokes every token:
the layer re-issues and replays, and every request succeeds. Each request asks for the
scope it needs (\"read\" for these GETs).";

const OUTPUT: &str = "\
Output:
  Progress on stderr; the last stdout line is
  {\"requests\":N,\"ok\":K,\"statuses\":{\"200\":K},\"errors\":E,\"token_fetches\":F,
   \"store_hits\":H,\"auth_method\":\"client_secret_post\"}
  ok: 2xx answers; errors: requests that got no answer; token_fetches: token requests
  this process made; store_hits: tokens read from the --redis-url store instead.
  With --dpop it adds \"dpop\":true and, against the embedded mock,
  \"dpop_nonce_challenges\":N (use_dpop_nonce answers the layer met).
  Exit 0 when every request got a 2xx, 1 otherwise (reason on stderr), 2 for bad arguments.
  Neither the client secret, a private key nor a token is ever printed; what a server
  says is shown only as tower_oauth::redact cleans it.";

#[derive(Debug, Parser)]
#[command(name = "simpledocs", about = ABOUT, long_about = LONG_ABOUT, after_help = OUTPUT)]
struct Cli {
    /// API base; no mock is started [default: the embedded mock]
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Token endpoint [default: BASE/api/oauth/token]
    #[arg(long, value_name = "URL")]
    token_url: Option<String>,
    /// Find the token endpoint in this issuer's metadata (RFC 8414, or OpenID Connect
    /// discovery), instead of --token-url
    #[arg(long, value_name = "URL", conflicts_with = "token_url")]
    issuer: Option<String>,
    /// Client id [default: the mock's]; the variable is read only with --base-url, so
    /// real credentials never go to the mock
    #[arg(
        long,
        value_name = "ID",
        env = "SIMPLEDOCS_CLIENT_ID",
        hide_env_values = true
    )]
    client_id: Option<String>,
    /// Client secret [default: the mock's]; the variable is read only with --base-url
    #[arg(
        long,
        value_name = "S",
        env = "SIMPLEDOCS_CLIENT_SECRET",
        hide_env_values = true
    )]
    client_secret: Option<String>,
    /// The scope every request asks for, e.g. "read write" [default: by method, see
    /// --scope-policy]
    #[arg(long, value_name = "S")]
    scope: Option<String>,
    /// One more token request parameter, e.g. audience=https://api.example (repeatable;
    /// grant_type, scope, client_id and client_secret are the grant's own and refused)
    #[arg(long, value_name = "NAME=VALUE", value_parser = name_value)]
    param: Vec<(String, String)>,
    /// mixed alternates GET /api/v1/workflows and POST /api/v1/documents
    #[arg(long, value_enum, ignore_case = true, default_value_t = MethodChoice::Get)]
    method: MethodChoice,
    /// Request path (GET or POST) [default: /api/v1/workflows for GET,
    /// /api/v1/documents for POST]
    #[arg(long, value_name = "P", value_parser = absolute_path)]
    path: Option<String>,
    /// POST body size (a fixed pattern, at most 256 MiB; the embedded mock takes up
    /// to 8 MiB)
    #[arg(long, value_name = "N", default_value_t = 0)]
    body_bytes: usize,
    /// How many requests [default: 10; the demo: 80]
    #[arg(long, value_name = "N")]
    requests: Option<usize>,
    /// How many at once [default: 4]
    #[arg(long, value_name = "C")]
    concurrency: Option<usize>,
    /// Pause before each request of a worker [default: 0; the demo: 350]
    #[arg(long, value_name = "MS")]
    interval_ms: Option<u64>,
    /// by-method: "read" for GET, "write" for POST (one token each, only the scope each
    /// request needs; --scope is ignored); fixed: --scope for every request, or no
    /// scope at all without --scope (the server's default, which SimpleDocs refuses to
    /// an application with the "read write" scope) [default: fixed with --scope,
    /// by-method without]
    #[arg(long, value_enum, ignore_case = true)]
    scope_policy: Option<PolicyChoice>,
    /// Allow a plain http token URL that is not loopback
    #[arg(long)]
    allow_insecure_http: bool,
    /// (mock) Revoke every token after N completed requests [default: off; the demo: 40]
    #[arg(long, value_name = "N")]
    revoke_after: Option<usize>,
    /// (mock) Token lifetime; the layer renews min(N/3 s, 60 s) ahead [default: 7200,
    /// as SimpleDocs; the demo: 3]
    #[arg(long, value_name = "N")]
    token_lifetime_secs: Option<u64>,
    /// Share tokens with other processes through this Redis (needs the "redis"
    /// feature): one of them fetches, the others read the token from the store
    #[arg(long, value_name = "URL", help_heading = "Fleet")]
    redis_url: Option<String>,
    /// The start of every Redis key
    #[arg(
        long,
        value_name = "P",
        default_value = "tower-oauth:",
        help_heading = "Fleet"
    )]
    store_prefix: String,
    /// Seal tokens in the store with this base64 32-byte key (XChaCha20-Poly1305)
    #[arg(
        long,
        value_name = "B64",
        env = "SIMPLEDOCS_STORE_KEY",
        hide_env_values = true,
        help_heading = "Fleet"
    )]
    store_key: Option<String>,
    /// As --store-key, read from a file
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "store_key",
        help_heading = "Fleet"
    )]
    store_key_file: Option<std::path::PathBuf>,
    /// (mock) Spread the requests round-robin over N tenant applications, each with
    /// its own credentials and tokens (one layer, OAuthLayer::for_tenants)
    #[arg(long, value_name = "N", help_heading = "Fleet")]
    tenants: Option<usize>,
    #[command(flatten)]
    auth: AuthArgs,
}

/// `--method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MethodChoice {
    Get,
    Post,
    Mixed,
}

/// `--scope-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PolicyChoice {
    Fixed,
    ByMethod,
}

/// What a run is to do, once the command line is read and checked.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) demo: bool,
    pub(crate) base_url: Option<String>,
    pub(crate) token_url: Option<String>,
    pub(crate) issuer: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<String>,
    pub(crate) scope: Option<String>,
    pub(crate) auth: AuthOptions,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) method: MethodChoice,
    pub(crate) path: Option<String>,
    pub(crate) body_bytes: usize,
    pub(crate) requests: usize,
    pub(crate) concurrency: usize,
    pub(crate) interval: Duration,
    pub(crate) scope_policy: PolicyChoice,
    pub(crate) allow_insecure_http: bool,
    pub(crate) revoke_after: Option<usize>,
    pub(crate) token_lifetime: Option<Duration>,
    pub(crate) redis_url: Option<String>,
    pub(crate) store_prefix: String,
    /// The store key, base64, from `--store-key` or `--store-key-file`.
    pub(crate) store_key: Option<String>,
    pub(crate) tenants: Option<usize>,
}

impl Options {
    /// Reads the command line; on `--help` or a usage error, clap prints and exits (0 or
    /// 2).
    pub(crate) fn from_command_line() -> Self {
        let demo = std::env::args_os().len() <= 1;
        let matches = Cli::command().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        // Real credentials come from the environment only for a real server.
        if cli.base_url.is_none() {
            for (id, value) in [
                ("client_id", &mut cli.client_id),
                ("client_secret", &mut cli.client_secret),
            ] {
                if matches.value_source(id) == Some(ValueSource::EnvVariable) {
                    *value = None;
                }
            }
        }
        Self::checked(cli, demo)
            .unwrap_or_else(|msg| Cli::command().error(ErrorKind::ValueValidation, msg).exit())
    }

    /// The options `cli` says, or why they cannot work together.
    fn checked(cli: Cli, demo: bool) -> Result<Self, String> {
        let store_key = match &cli.store_key_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("--store-key-file {}: {e}", path.display()))?,
            ),
            None => cli.store_key.clone(),
        };
        // The embedded mock is the token endpoint unless another is named.
        let mock_tokens = cli.base_url.is_none() && cli.token_url.is_none() && cli.issuer.is_none();
        let auth = AuthOptions::checked(cli.auth, mock_tokens)?;
        let o = Self {
            demo,
            // A scope given is for every request; without one, each asks for what it needs.
            scope_policy: cli.scope_policy.unwrap_or(match cli.scope {
                Some(_) => PolicyChoice::Fixed,
                None => PolicyChoice::ByMethod,
            }),
            base_url: cli.base_url,
            token_url: cli.token_url,
            issuer: cli.issuer,
            client_id: cli.client_id.filter(|v| !v.is_empty()),
            client_secret: cli.client_secret.filter(|v| !v.is_empty()),
            scope: cli.scope,
            auth,
            params: cli.param,
            method: cli.method,
            path: cli.path,
            body_bytes: cli.body_bytes,
            requests: cli
                .requests
                .unwrap_or(if demo { DEMO_REQUESTS } else { 10 }),
            concurrency: cli
                .concurrency
                .unwrap_or(if demo { DEMO_CONCURRENCY } else { 4 }),
            interval: cli.interval_ms.map_or(
                if demo { DEMO_INTERVAL } else { Duration::ZERO },
                Duration::from_millis,
            ),
            allow_insecure_http: cli.allow_insecure_http,
            revoke_after: cli.revoke_after.or(demo.then_some(DEMO_REVOKE_AFTER)),
            token_lifetime: cli
                .token_lifetime_secs
                .map(Duration::from_secs)
                .or(demo.then_some(DEMO_TOKEN_LIFETIME)),
            redis_url: cli.redis_url,
            store_prefix: cli.store_prefix,
            store_key: store_key.map(|k| k.trim().to_owned()),
            tenants: cli.tenants,
        };
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
                "--revoke-after and --token-lifetime-secs only apply to the embedded \
                        mock, not with --base-url"
                    .into(),
            );
        }
        if o.tenants == Some(0) {
            return Err("--tenants must be at least 1".into());
        }
        if o.tenants.is_some() && o.base_url.is_some() {
            return Err("--tenants only applies to the embedded mock, not with --base-url".into());
        }
        if o.tenants.is_some() && !matches!(o.auth.method, AuthChoice::Post | AuthChoice::Basic) {
            return Err(
                "--tenants works with --auth-method post or basic: the mock's tenants \
                        have short secrets and no registered keys"
                    .into(),
            );
        }
        if o.store_key.is_some() && o.redis_url.is_none() {
            return Err("--store-key and --store-key-file need --redis-url".into());
        }
        if o.method == MethodChoice::Mixed && o.path.is_some() {
            return Err("--path does not combine with --method mixed".into());
        }
        Ok(o)
    }
}

/// `NAME=VALUE`, split at the first `=`.
fn name_value(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((name, value)) => Ok((name.to_owned(), value.to_owned())),
        None => Err("expected NAME=VALUE".to_owned()),
    }
}

/// A path that starts with `/`.
fn absolute_path(path: &str) -> Result<String, String> {
    if path.starts_with('/') {
        Ok(path.to_owned())
    } else {
        Err("must start with '/'".to_owned())
    }
}
