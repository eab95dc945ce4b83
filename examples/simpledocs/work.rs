//! The workers: each sends its share of the requests, one after another, and counts
//! what came back.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use tokio::time::Instant;
use tower::{timeout::Timeout, ServiceExt};
use tower_oauth::{fetch::HttpsClient, mock::MockServer, OAuth, TokenHandle};

use crate::{
    lock,
    monitor::Monitor,
    plan::Plan,
    report::{chain, describe_error, stamp},
    shown::{NoteTokens, Shown},
};

/// The most of a response body read (to find a problem `type` or an upload receipt).
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Bound on each request, token fetch included.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The client stack: a per-request timeout around the OAuth layer around hyper-util's
/// pooled client over rustls (`https_or_http`), which notes the tokens it sends so that
/// none is printed. Any tower HTTP client would do.
pub(crate) type Client = Timeout<OAuth<NoteTokens<HttpsClient>>>;

/// The outcome of one request.
pub(crate) enum Outcome {
    /// An answer: its status, the problem `type` of an error answer (as it may be
    /// shown), and, for an upload the server acknowledged with a different size or hash
    /// than was sent, what differs.
    Answer {
        status: StatusCode,
        problem: Option<String>,
        mismatch: Option<String>,
    },
    /// No answer (a token failure, a transport error, a timeout), and why.
    Failed(String),
}

/// The counts of a run.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) ok: usize,
    pub(crate) errors: usize,
    pub(crate) statuses: BTreeMap<u16, usize>,
    /// Why requests failed (non-2xx or no answer), with counts.
    pub(crate) failures: BTreeMap<String, usize>,
    pub(crate) mismatches: Vec<String>,
}

/// What the workers share.
pub(crate) struct Run {
    pub(crate) plan: Plan,
    pub(crate) started: Instant,
    pub(crate) completed: AtomicUsize,
    pub(crate) revokes: Arc<AtomicUsize>,
    pub(crate) tally: Mutex<Tally>,
    pub(crate) monitor: Arc<Mutex<Monitor>>,
    pub(crate) handle: TokenHandle,
    pub(crate) mock: Option<Arc<MockServer>>,
    pub(crate) shown: Shown,
}

/// Sends requests `w`, `w + C`, `w + 2C`, ... one after another.
pub(crate) async fn worker(w: usize, client: Client, run: Arc<Run>) {
    let plan = &run.plan;
    for i in (w..plan.requests).step_by(plan.concurrency) {
        if !plan.interval.is_zero() {
            tokio::time::sleep(plan.interval).await;
        }
        let (method, uri) = plan.target(i);
        let path = uri.path().to_owned();
        let outcome = send(client.clone(), plan.request(i), &run).await;
        let done = run.completed.fetch_add(1, Ordering::SeqCst) + 1;
        let line = lock(&run.tally).record(&outcome);
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

async fn send(client: Client, request: Request<Full<Bytes>>, run: &Run) -> Outcome {
    let is_post = request.method() == Method::POST;
    let response = match client.oneshot(request).await {
        Ok(response) => response,
        Err(err) => return Outcome::Failed(describe_error(&*err, &run.shown)),
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
                run.shown.text(&chain(&*err))
            ))
        }
    };
    let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let field = |name: &str| json.as_ref().and_then(|j| j.get(name)).cloned();
    if !status.is_success() {
        let problem = field("type")
            .or_else(|| field("error"))
            .and_then(|v| v.as_str().map(|t| run.shown.problem(t)));
        return Outcome::Answer {
            status,
            problem,
            mismatch: None,
        };
    }
    // The mock (and any server that says so) acknowledges uploads with their size and
    // FNV-1a hash: a replayed body must arrive whole.
    let plan = &run.plan;
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
                let hash = run.shown.problem(&hash);
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
