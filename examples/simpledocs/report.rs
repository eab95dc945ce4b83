//! What the tool prints: the banner before a run, the failures during it, the summary
//! and the verdict after.

use std::{
    collections::BTreeMap, fmt::Write as _, process::ExitCode, sync::atomic::Ordering,
    time::Duration,
};

use tokio::time::Instant;
use tower_oauth::{mock::MockServer, ErrorKind, TokenHandle, TokenStatus};

use crate::{
    auth::AuthChoice,
    cli::{MethodChoice, Options, PolicyChoice},
    jose::Jose,
    lock,
    plan::{Plan, DOCUMENTS_PATH, WORKFLOWS_PATH},
    shown::{self, Shown},
    work::{Run, Tally, REQUEST_TIMEOUT},
};

/// Says what is about to happen. `token_url` is shown already; `method` is the
/// credentials' auth method. `mock` is the mock's token lifetime and the layer's
/// renew-ahead setting, when the mock is the server. URLs are shown as the crate shows
/// them: without user info or query.
pub(crate) fn banner(
    o: &Options,
    plan: &Plan,
    base: &str,
    token_url: &str,
    client_id: &str,
    (method, jose): (&str, &Jose),
    mock: Option<(Duration, Duration)>,
) {
    eprintln!(
        "tower-oauth SimpleDocs {}",
        if o.demo { "demo" } else { "run" }
    );
    let base = shown::url(base);
    match mock {
        Some((lifetime, ahead)) => eprintln!(
            "  server : embedded mock at {base} (tokens live {}; the layer renews them {} ahead)",
            seconds(lifetime),
            seconds(ahead)
        ),
        None => eprintln!("  server : {base}"),
    }
    let auth = match o.auth.method {
        AuthChoice::Post | AuthChoice::Basic => format!("{method}, secret not shown"),
        AuthChoice::ClientSecretJwt => {
            format!("{method}: HS256 assertions signed with the secret, not shown")
        }
        AuthChoice::PrivateKeyJwt => format!(
            "{method}: {}",
            jose.key_note(mock.is_some()).unwrap_or_default()
        ),
        AuthChoice::TlsClientAuth => match &o.auth.client_cert {
            Some((cert, _)) => format!("{method}: certificate {}", cert.path.display()),
            None => method.to_owned(),
        },
    };
    eprintln!("  token  : {token_url} as client {client_id:?} (auth {auth})");
    if let Some(note) = jose.dpop_note() {
        let nonces = if mock.is_some() {
            "; the mock wants a nonce at the token endpoint and the API"
        } else {
            ""
        };
        eprintln!("  dpop   : {note}{nonces}");
    }
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
    if let Some(n) = o.tenants {
        eprintln!("  tenants: {n} applications of the mock, one token each, requests round-robin");
    }
    if let Some(url) = &o.redis_url {
        eprintln!(
            "  store  : redis at {} (prefix {:?}; tokens {}); shared with other processes",
            shown::url(url),
            o.store_prefix,
            if o.store_key.is_some() {
                "sealed with the store key"
            } else {
                "stored as they are"
            }
        );
    }
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

/// The time since `started`, as progress lines begin.
pub(crate) fn stamp(started: Instant) -> String {
    format!("[{:6.2}s]", started.elapsed().as_secs_f64())
}

/// One line naming a failure that produced no answer, as it may be printed.
pub(crate) fn describe_error(err: &(dyn std::error::Error + 'static), shown: &Shown) -> String {
    let line = if let Some(e) = err.downcast_ref::<tower_oauth::Error>() {
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
    };
    shown.text(&line)
}

/// An error and its sources, joined by ": " (to be cleaned before it is printed).
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
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

pub(crate) fn kind_code(kind: ErrorKind) -> &'static str {
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

/// Prints the summary (stderr), the JSON line (stdout) and the verdict. `method` is the
/// credentials' auth method, as the summary names it.
pub(crate) fn report(
    run: &Run,
    handle: &TokenHandle,
    mock: Option<&MockServer>,
    (method, jose): (&str, &Jose),
) -> ExitCode {
    let tally = lock(&run.tally);
    let requests = run.plan.requests;
    let fetches = handle.fetches();
    let store_hits = handle.store_hits();
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
        "summary: {requests} requests: {} ok ({}), {} errors; {fetches} token fetch(es), \
         {store_hits} token(s) from the store in {:.1}s",
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
        // The server's words.
        let granted = state
            .granted_scope
            .as_ref()
            .map_or("(unknown)".into(), |s| {
                format!("{:?}", run.shown.text(s.as_str()))
            });
        let status = match state.status {
            TokenStatus::None => "none",
            TokenStatus::Fresh => "fresh",
            TokenStatus::RenewalDue => "renewal-due",
            TokenStatus::Expired => "expired",
            TokenStatus::Rejected => "rejected",
            _ => "other",
        };
        let tenant = state
            .tenant
            .as_ref()
            .map_or(String::new(), |t| format!("tenant={t} "));
        eprintln!(
            "token slot {tenant}scope={scope} granted={granted} status={status} store_hits={} \
             fetches={}",
            state.store_hits, state.fetches
        );
    }
    if let Some(mock) = mock {
        let s = mock.stats();
        eprintln!(
            "mock: token_requests={} tokens_issued={} token_errors={} api_requests={} api_ok={} \
             api_token_expired={} api_insufficient_scope={} assertions_verified={} \
             dpop_proofs_checked={} dpop_nonce_challenges={}",
            s.token_requests,
            s.tokens_issued,
            s.token_errors,
            s.api_requests,
            s.api_ok,
            s.api_token_expired,
            s.api_insufficient_scope,
            s.assertions_verified,
            s.dpop_proofs_checked,
            s.dpop_nonce_challenges
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
    let mut extra = format!(",\"auth_method\":\"{method}\"");
    if jose.dpop() {
        extra.push_str(",\"dpop\":true");
        if let Some(mock) = mock {
            let challenges = mock.stats().dpop_nonce_challenges;
            let _ = write!(extra, ",\"dpop_nonce_challenges\":{challenges}");
        }
    }
    println!(
        "{{\"requests\":{requests},\"ok\":{},\"statuses\":{},\"errors\":{},\"token_fetches\":{fetches},\
         \"store_hits\":{store_hits}{extra}}}",
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
