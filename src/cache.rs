//! Token state: one slot per scope set, read without locks, renewed by one fetch at a time.
//!
//! A slot's current token lives in an [`ArcSwapOption`]; a request loads it and checks an
//! atomic phase, nothing more. The phase moves from fresh to "renewal due" to expired on
//! tokio timers set when the token is installed, so the request path never reads a clock.
//!
//! Fetching is cold: the first request that needs a token (or the first that sees one
//! due for renewal) spawns a driver task under the slot's mutex; everyone else subscribes
//! to that task's outcome. The task, not the request, owns the fetch, so a request that
//! goes away never strands the others.

use std::{
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering},
        Arc, Mutex, MutexGuard, OnceLock, Weak,
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use futures_util::FutureExt;
use http::HeaderValue;
use tokio::{
    runtime::{self, Handle},
    sync::watch,
    task::AbortHandle,
    time::Instant,
};
use tower::{util::BoxCloneSyncService, ServiceExt};
use tracing::Instrument;

use crate::{
    classify::Classifier,
    config::Config,
    error::{BoxError, Error, ErrorKind},
    token::{FetchReason, Scope, Token, TokenRequest},
};

/// The type-erased token fetcher; fetching is the cold path, so a box costs nothing that
/// matters.
pub(crate) type BoxFetcher = BoxCloneSyncService<TokenRequest, Token, BoxError>;

/// What every slot of a layer shares.
pub(crate) struct Core {
    pub(crate) config: Config,
    pub(crate) fetcher: BoxFetcher,
    pub(crate) classifier: Classifier,
    /// Whether the scopes of token requests are explicit (a scope policy was set).
    pub(crate) explicit_scope: bool,
}

const FRESH: u8 = 0;
const RENEW_DUE: u8 = 1;
const EXPIRED: u8 = 2;
const REJECTED: u8 = 3;

/// An installed token.
///
/// Aligned to (two) cache lines so that no other allocation shares its lines: every core
/// reads it on every request, and a neighbour written per request (such as the reference
/// count of the header's bytes) would bounce them between cores.
#[repr(align(128))]
pub(crate) struct Cached {
    /// `Bearer <token>`, marked sensitive; cloned into each request.
    pub(crate) header: HeaderValue,
    pub(crate) generation: u64,
    phase: AtomicU8,
    renewal_started: AtomicBool,
    /// Whether a rejection of it was held off yet (see [`Slot::reject`]): warned of once.
    held_off: AtomicBool,
    scope_ok: bool,
    granted: Option<Scope>,
    expires_at: Instant,
    /// Why it was fetched, and when it arrived: a token fetched because its predecessor
    /// was rejected is not itself replaced for a rejection right away.
    reason: FetchReason,
    installed_at: Instant,
    /// The task that moves its phase: stopped when the token is dropped (replaced early,
    /// by a rejection or a forced refresh), rather than left sleeping until its renewal
    /// time, one task per token replaced.
    timers: OnceLock<AbortHandle>,
}

impl Drop for Cached {
    fn drop(&mut self) {
        if let Some(timers) = self.timers.get() {
            timers.abort();
        }
    }
}

impl Cached {
    #[inline]
    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    fn usable(&self) -> bool {
        self.phase() <= RENEW_DUE
    }

    #[inline]
    fn credential(&self) -> Credential {
        Credential {
            header: self.header.clone(),
            generation: self.generation,
        }
    }

    /// Moves the phase forward, never back (a rejected token stays rejected).
    fn advance(&self, to: u8) {
        self.phase.fetch_max(to, Ordering::AcqRel);
    }
}

/// What a request needs from a token: the header and which token it was.
#[derive(Clone)]
pub(crate) struct Credential {
    pub(crate) header: HeaderValue,
    pub(crate) generation: u64,
}

/// A slot's current token as one service clone sees it: the `Arc` it last loaded,
/// revalidated on each request with a single relaxed load of the shared pointer, so a
/// cache hit writes no memory that another thread reads.
pub(crate) type TokenCache = arc_swap::cache::Cache<Current, Option<Arc<Cached>>>;

/// A slot, seen as the `ArcSwap` of its current token.
#[derive(Clone)]
pub(crate) struct Current(pub(crate) Arc<Slot>);

impl std::ops::Deref for Current {
    type Target = ArcSwapOption<Cached>;

    fn deref(&self) -> &ArcSwapOption<Cached> {
        &self.0.current
    }
}

type Outcome = Option<Result<Arc<Cached>, Error>>;

/// A fetch in flight: its outcome (the sender is shared with the driver, so that a
/// flight given up on can be ended without it), and when, by the system clock, and on
/// which runtime its driver started.
struct Flight {
    tx: Arc<watch::Sender<Outcome>>,
    rx: watch::Receiver<Outcome>,
    started: std::time::Instant,
    runtime: runtime::Id,
}

impl Flight {
    /// Whether the driver runs on another runtime than the caller's. Such a runtime may
    /// be kept but no longer driven (a current-thread runtime whose `block_on` returned),
    /// and then its driver never ends, not even by its `fetch_timeout`, a timer of that
    /// runtime. On the caller's runtime it does end: the caller being polled shows that
    /// runtime is driven.
    fn elsewhere(&self) -> bool {
        Handle::try_current().map_or(true, |h| h.id() != self.runtime)
    }
}

#[derive(Default)]
struct State {
    flight: Option<Flight>,
    /// After a failed fetch: until when requests get this error without a new fetch.
    cooldown: Option<(Instant, Error)>,
    last_error: Option<ErrorKind>,
    /// The token (generation) whose renewal a background retry is scheduled for, and
    /// that task: one at a time, however many renewals fail meanwhile; stopped when a
    /// newer token's retry replaces it or the slot is dropped.
    retry_for: Option<(u64, AbortHandle)>,
    /// Since when requests without a usable token have waited on the flight; the retry
    /// budget counts from there.
    waiting_since: Option<Instant>,
}

impl State {
    /// The error that requests get without a new fetch, while a cooldown lasts.
    fn cooling_down(&self) -> Option<&Error> {
        let (until, err) = self.cooldown.as_ref()?;
        (Instant::now() < *until).then_some(err)
    }

    /// When the cooldown ends, while it lasts.
    fn cooldown_until(&self) -> Option<Instant> {
        let (until, _) = self.cooldown.as_ref()?;
        (Instant::now() < *until).then_some(*until)
    }

    fn end_flight(&mut self) {
        self.flight = None;
        self.waiting_since = None;
    }

    /// Ends a flight whose driver is gone, or runs on another runtime and has run
    /// longer, by the system clock, than a fetch can on a driven runtime
    /// ([`Config::stranded_after`]), so that the caller starts a new one on its own. Its
    /// waiters get a retryable [`ErrorKind::Timeout`] now. The old driver, if its runtime
    /// runs again, leaves the slot alone: a token it gets is not installed, a failure sets
    /// no cooldown.
    ///
    /// The system clock, not tokio's: a runtime's paused clock says nothing of how long
    /// a driver on another runtime has run.
    fn drop_stranded(&mut self, config: &Config) {
        let Some(flight) = &self.flight else {
            return;
        };
        // Its driver is gone without ending it: its task was dropped before it was first
        // polled (its runtime shut down at once). Its waiters see the channel close.
        if Arc::strong_count(&flight.tx) == 1 {
            self.end_flight();
            return;
        }
        let ran = flight.started.elapsed();
        if ran < config.stranded_after() || !flight.elsewhere() {
            return;
        }
        tracing::warn!(
            ran_ms = ran.as_millis() as u64,
            "a token fetch running on another runtime has not ended; giving up on it and \
             fetching here (was that runtime kept without being driven?)"
        );
        flight
            .tx
            .send_replace(Some(Err(Error::builder(ErrorKind::Timeout)
                .detail(
                    "the token fetch, running on another runtime, did not end \
                 (is that runtime still driven?)",
                )
                .build())));
        self.end_flight();
    }
}

/// The token state of one scope set.
///
/// Cache-line aligned for the same reason as [`Cached`]: `current` is read on every
/// request.
#[repr(align(128))]
pub(crate) struct Slot {
    pub(crate) core: Arc<Core>,
    scope: Option<Scope>,
    current: ArcSwapOption<Cached>,
    state: Mutex<State>,
    fetches: AtomicU64,
    generations: AtomicU64,
}

/// What the control handle shows of a slot; no token in it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenState {
    /// The scope set requested for this slot.
    pub scope: Option<Scope>,
    /// The scope the server granted, when it said.
    pub granted_scope: Option<Scope>,
    /// Whether the granted scope covers the requested one.
    pub scope_satisfied: bool,
    /// The status of the current token.
    pub status: TokenStatus,
    /// Time until the current token expires (by the layer's reckoning), if there is one
    /// and it has not expired.
    pub expires_in: Option<Duration>,
    /// Token requests made so far (each attempt counts).
    pub fetches: u64,
    /// The kind of the most recent fetch failure, if any fetch failed.
    pub last_error: Option<ErrorKind>,
    /// Whether a fetch is in flight.
    pub fetching: bool,
}

/// The status of a slot's current token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenStatus {
    /// No token has been obtained yet.
    None,
    /// A token is in use and not yet due for renewal.
    Fresh,
    /// A token is in use and due for renewal.
    RenewalDue,
    /// The token expired.
    Expired,
    /// The API rejected the token.
    Rejected,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // A scheduled retry holds the slot weakly and would find it gone; it is not left
        // sleeping out its pause (up to `max_retry_after`).
        let mut state = crate::sync::lock(&self.state);
        if let Some((_, retry)) = state.retry_for.take() {
            retry.abort();
        }
    }
}

impl Slot {
    pub(crate) fn new(core: Arc<Core>, scope: Option<Scope>) -> Self {
        Self {
            core,
            scope,
            current: ArcSwapOption::empty(),
            state: Mutex::new(State::default()),
            fetches: AtomicU64::new(0),
            generations: AtomicU64::new(1),
        }
    }

    pub(crate) fn scope(&self) -> Option<&Scope> {
        self.scope.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// The current token if it can be used as it is, loaded through the shared
    /// `ArcSwap` (services with a per-clone [`TokenCache`] use [`Slot::admits`] directly).
    #[inline]
    pub(crate) fn fast(self: &Arc<Self>) -> Option<Credential> {
        let guard = self.current.load();
        let cached = guard.as_deref()?;
        self.admits(cached).then(|| cached.credential())
    }

    /// The hot path: whether `cached`, this slot's current token, can be used as it is.
    /// Takes no lock and allocates nothing; starts a background renewal when one is due.
    #[inline]
    pub(crate) fn admits(self: &Arc<Self>, cached: &Cached) -> bool {
        match cached.phase() {
            FRESH => {}
            RENEW_DUE => {
                if !cached.renewal_started.load(Ordering::Relaxed)
                    && !cached.renewal_started.swap(true, Ordering::AcqRel)
                    && !self.renew_in_background(FetchReason::AheadOfExpiry)
                {
                    // Could not start (no runtime here): let a later request try
                    // again.
                    cached.renewal_started.store(false, Ordering::Release);
                }
            }
            _ => return false,
        }
        cached.scope_ok || !self.core.config.strict_scope
    }

    /// The slow path: waits for a usable token, fetching one if needed.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<Credential, Error> {
        let rx = {
            let mut state = self.lock();
            let current = self.current.load();
            match current.as_deref() {
                Some(c) if c.usable() => return self.credential(c),
                _ => {}
            }
            state.drop_stranded(&self.core.config);
            let rx = if let Some(flight) = &state.flight {
                flight.rx.clone()
            } else {
                if let Some(err) = state.cooling_down() {
                    return Err(err.clone());
                }
                let reason = match current.as_deref().map(Cached::phase) {
                    None => FetchReason::First,
                    Some(REJECTED) => FetchReason::Rejected,
                    Some(_) => FetchReason::Expired,
                };
                self.start_flight(&mut state, reason)
            };
            // The first request to wait starts the retry budget, whether it started the
            // flight or found one running (a renewal the token ran out during); by the
            // driver's clock, so only on its runtime (a paused clock elsewhere may be
            // anywhere). A request elsewhere leaves the driver to count from its next
            // failure.
            if state.flight.as_ref().is_some_and(|f| !f.elsewhere()) {
                state.waiting_since.get_or_insert_with(Instant::now);
            }
            rx
        };
        let cached = wait(rx).await?;
        self.credential(&cached)
    }

    fn credential(&self, cached: &Cached) -> Result<Credential, Error> {
        if !cached.scope_ok && self.core.config.strict_scope {
            return Err(Error::builder(ErrorKind::InsufficientScope)
                .detail(&format!(
                    "requested \"{}\", granted \"{}\"",
                    self.scope.as_ref().map(Scope::as_str).unwrap_or(""),
                    cached.granted.as_ref().map(Scope::as_str).unwrap_or("")
                ))
                .build());
        }
        Ok(cached.credential())
    }

    /// Marks the token `generation` as rejected by the API, if it is still the current
    /// one; a newer token is left alone.
    ///
    /// Returns `false` when the rejection is held off: the current token was itself
    /// fetched because of a rejection less than `reissue_interval` ago, which says the
    /// server rejects fresh tokens too; fetching another at once would only load the
    /// token endpoint.
    pub(crate) fn reject(&self, generation: u64) -> bool {
        let guard = self.current.load();
        let Some(current) = guard.as_deref() else {
            return true;
        };
        if current.generation != generation {
            return true;
        }
        if current.reason == FetchReason::Rejected
            && current.installed_at.elapsed() < self.core.config.reissue_interval
        {
            let scope = self.scope.as_ref().map(Scope::as_str).unwrap_or("");
            // Warned of once per token: a server that rejects every token would otherwise
            // log a warning per request.
            if current.held_off.swap(true, Ordering::Relaxed) {
                tracing::debug!(scope, "api rejected a token fetched moments ago; held off");
            } else {
                tracing::warn!(
                    scope,
                    "api rejected a token fetched moments ago for the same reason; not \
                     re-issuing yet"
                );
            }
            return false;
        }
        current.advance(REJECTED);
        tracing::debug!(
            scope = self.scope.as_ref().map(Scope::as_str).unwrap_or(""),
            "api rejected the current token"
        );
        true
    }

    /// Starts a fetch unless one is running, without waiting for it; during a cooldown,
    /// a renewal of the token still in use is scheduled for when the cooldown ends. `false`
    /// only when a fetch was due but could not start (no runtime here): a later request
    /// should try again.
    pub(crate) fn renew_in_background(self: &Arc<Self>, reason: FetchReason) -> bool {
        let mut state = self.lock();
        state.drop_stranded(&self.core.config);
        if state.flight.is_some() {
            return true;
        }
        if let Some(until) = state.cooldown_until() {
            let current = self.current.load();
            return match current.as_deref().filter(|c| c.usable()) {
                Some(c) => self.schedule_retry(&mut state, c.generation, reason, 1, until),
                // No token to keep using: the next request fetches, after the cooldown.
                None => true,
            };
        }
        self.start_flight(&mut state, reason);
        state.flight.is_some()
    }

    /// Schedules a renewal of the token `generation` at `at`, unless one is already
    /// scheduled for that token. `false` when there is no runtime to schedule it on.
    fn schedule_retry(
        self: &Arc<Self>,
        state: &mut State,
        generation: u64,
        reason: FetchReason,
        attempt: u32,
        at: Instant,
    ) -> bool {
        if state
            .retry_for
            .as_ref()
            .is_some_and(|(g, _)| *g == generation)
        {
            return true;
        }
        let Ok(runtime) = Handle::try_current() else {
            return false;
        };
        // The retry holds the slot weakly: a layer dropped meanwhile is not kept fetching.
        let slot = Arc::downgrade(self);
        let task = runtime.spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(slot) = slot.upgrade() {
                slot.retry_renewal(generation, reason, attempt);
            }
        });
        if let Some((_, older)) = state.retry_for.replace((generation, task.abort_handle())) {
            // For a token since replaced: it would find nothing to do.
            older.abort();
        }
        true
    }

    /// Renews the token `generation` as scheduled, unless that is no longer needed: the
    /// token was replaced meanwhile or is no longer usable (the next request fetches), or
    /// a fetch is running (its failure schedules the next retry). A cooldown set since
    /// puts the renewal off until it ends.
    fn retry_renewal(self: &Arc<Self>, generation: u64, reason: FetchReason, attempt: u32) {
        let mut state = self.lock();
        if state
            .retry_for
            .as_ref()
            .is_some_and(|(g, _)| *g == generation)
        {
            state.retry_for = None;
        }
        let current = self.current.load();
        let still_needed = current
            .as_deref()
            .is_some_and(|c| c.generation == generation && c.usable());
        state.drop_stranded(&self.core.config);
        if !still_needed || state.flight.is_some() {
            return;
        }
        match state.cooldown_until() {
            Some(until) => {
                self.schedule_retry(&mut state, generation, reason, attempt, until);
            }
            None => {
                self.start_flight_at(&mut state, reason, attempt);
            }
        }
    }

    /// Fetches a new token now (joining a fetch in flight) and waits for it; like a
    /// request, fails when strict scope checking refuses it.
    pub(crate) async fn force(self: Arc<Self>) -> Result<(), Error> {
        let rx = {
            let mut state = self.lock();
            state.drop_stranded(&self.core.config);
            match &state.flight {
                Some(flight) => flight.rx.clone(),
                None => self.start_flight(&mut state, FetchReason::Forced),
            }
        };
        let cached = wait(rx).await?;
        self.credential(&cached).map(drop)
    }

    /// Waits for a usable token; fails fast on bad credentials.
    pub(crate) async fn warm_up(self: Arc<Self>) -> Result<(), Error> {
        self.acquire().await.map(drop)
    }

    pub(crate) fn view(&self) -> TokenState {
        let current = self.current.load_full();
        let state = self.lock();
        let now = Instant::now();
        let status = match current.as_deref().map(Cached::phase) {
            None => TokenStatus::None,
            Some(FRESH) => TokenStatus::Fresh,
            Some(RENEW_DUE) => TokenStatus::RenewalDue,
            Some(EXPIRED) => TokenStatus::Expired,
            Some(_) => TokenStatus::Rejected,
        };
        TokenState {
            scope: self.scope.clone(),
            granted_scope: current.as_ref().and_then(|c| c.granted.clone()),
            scope_satisfied: current.as_ref().is_none_or(|c| c.scope_ok),
            status,
            expires_in: current
                .as_ref()
                .filter(|c| c.usable())
                .map(|c| c.expires_at.saturating_duration_since(now)),
            fetches: self.fetches.load(Ordering::Relaxed),
            last_error: state.last_error,
            fetching: state.flight.is_some(),
        }
    }

    /// Spawns the driver task; called with the state lock held.
    fn start_flight(
        self: &Arc<Self>,
        state: &mut State,
        reason: FetchReason,
    ) -> watch::Receiver<Outcome> {
        self.start_flight_at(state, reason, 1)
    }

    /// [`start_flight`](Self::start_flight), counting backoff from `attempt`.
    fn start_flight_at(
        self: &Arc<Self>,
        state: &mut State,
        reason: FetchReason,
        attempt: u32,
    ) -> watch::Receiver<Outcome> {
        let (tx, rx) = watch::channel(None);
        let tx = Arc::new(tx);
        state.cooldown = None;
        // A root span: the fetch runs in a task of its own, for every request that waits
        // on it (or none: a renewal), not as a part of the request that started it,
        // which it only follows from.
        let span = tracing::info_span!(
            parent: None,
            "oauth.fetch",
            scope = self.scope.as_ref().map(Scope::as_str).unwrap_or(""),
            reason = reason.as_str()
        );
        span.follows_from(tracing::Span::current());
        match Handle::try_current() {
            Ok(handle) => {
                state.flight = Some(Flight {
                    tx: tx.clone(),
                    rx: rx.clone(),
                    started: std::time::Instant::now(),
                    runtime: handle.id(),
                });
                handle.spawn(drive(self.clone(), reason, attempt, tx).instrument(span));
            }
            Err(_) => {
                state.end_flight();
                let _ = tx.send(Some(Err(Error::builder(ErrorKind::Config)
                    .detail("a tokio runtime is required to fetch tokens")
                    .build())));
            }
        }
        rx
    }

    /// Turns a fetched token into the installed one.
    fn install(
        &self,
        token: Token,
        requested_at: Instant,
        reason: FetchReason,
    ) -> Result<Arc<Cached>, Error> {
        let config = &self.core.config;
        let header = bearer_header(token.access_token.secret())?;
        let lifetime = match token.expires_in {
            Some(d) if !d.is_zero() => d,
            _ => config.default_lifetime,
        }
        .min(config.max_lifetime);
        // Count from when the request was sent: the server's clock started no earlier.
        let lifetime = lifetime.min(CEILING);
        let end = requested_at + lifetime;
        let expires_at = end - config.expiry_margin.min(lifetime / 10);
        let now = Instant::now();
        if expires_at <= now {
            // Never handed out: an expired token is not sent. Retried like a fetch that
            // timed out, as a quicker answer would do.
            return Err(Error::builder(ErrorKind::Timeout)
                .detail(&format!(
                    "the token expired before it arrived: it lasts {lifetime:?} from the \
                     request (less the expiry margin), the answer took {:?}",
                    now - requested_at
                ))
                .build());
        }
        // Renewal is due no later than expiry: a `renew_ahead` shorter than the margin
        // must not keep the token in use past it.
        let renew_at = (end - config.renew_ahead.min(lifetime / 2)).min(expires_at);
        let scope_ok = match (&self.scope, &token.scope) {
            (Some(requested), Some(granted)) => granted.contains(requested),
            _ => true,
        };
        if !scope_ok {
            tracing::warn!(
                requested = self.scope.as_ref().map(Scope::as_str).unwrap_or(""),
                granted = token.scope.as_ref().map(Scope::as_str).unwrap_or(""),
                "token endpoint granted less scope than requested"
            );
        }
        // A token that replaces a rejected one is the re-issue for that rejection, whatever
        // started its fetch (a renewal can be under way when the rejection comes).
        let reason = match self.current.load().as_deref().map(Cached::phase) {
            Some(REJECTED) if reason != FetchReason::Rejected => {
                tracing::debug!(
                    fetched_for = reason.as_str(),
                    "token arrived while its predecessor stood rejected: it is that \
                     rejection's re-issue"
                );
                FetchReason::Rejected
            }
            _ => reason,
        };
        let cached = Arc::new(Cached {
            header,
            generation: self.generations.fetch_add(1, Ordering::Relaxed),
            phase: AtomicU8::new(FRESH),
            renewal_started: AtomicBool::new(false),
            held_off: AtomicBool::new(false),
            scope_ok,
            granted: token.scope,
            expires_at,
            reason,
            installed_at: Instant::now(),
            timers: OnceLock::new(),
        });
        let guard = ExpireOnDrop(Arc::downgrade(&cached));
        let timers = tokio::spawn(run_timers(guard, renew_at, expires_at));
        let _ = cached.timers.set(timers.abort_handle());
        Ok(cached)
    }

    fn has_usable(&self) -> bool {
        self.current.load().as_deref().is_some_and(Cached::usable)
    }
}

/// Builds `Bearer <token>`, refusing tokens that are not a clean header value.
fn bearer_header(token: &str) -> Result<HeaderValue, Error> {
    if token.is_empty() {
        return Err(Error::malformed("access token is empty"));
    }
    if !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Error::malformed(
            "access token contains characters not allowed in a header",
        ));
    }
    let mut value = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| Error::malformed("access token is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

async fn wait(mut rx: watch::Receiver<Outcome>) -> Result<Arc<Cached>, Error> {
    match rx.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().expect("waited for Some"),
        Err(_) => Err(Error::new(ErrorKind::Cancelled)),
    }
}

/// Moves the token's phase on the tokio clock; ends early once the token is dropped.
///
/// The token expires when this task ends, however it ends. If it is dropped early, its
/// runtime shut down (a layer kept beyond the runtime it was first used on): nothing
/// would move the phase any more, so the token counts as expired now, and the next
/// request fetches a new one, with timers on its own runtime, instead of sending this
/// one past its expiry. The guard is an argument, not made in the body: a task dropped
/// before its first poll (its runtime shut down at once) expires the token too.
async fn run_timers(token: ExpireOnDrop, renew_at: Instant, expires_at: Instant) {
    tokio::time::sleep_until(renew_at).await;
    match token.0.upgrade() {
        Some(t) => t.advance(RENEW_DUE),
        None => return,
    }
    tokio::time::sleep_until(expires_at).await;
}

/// Expires a token when dropped (see [`run_timers`]).
struct ExpireOnDrop(Weak<Cached>);

impl Drop for ExpireOnDrop {
    fn drop(&mut self) {
        if let Some(t) = self.0.upgrade() {
            t.advance(EXPIRED);
        }
    }
}

/// The fetch driver: retries within the budget, installs the token, tells the waiters.
async fn drive(
    mut slot: Arc<Slot>,
    reason: FetchReason,
    first_attempt: u32,
    tx: Arc<watch::Sender<Outcome>>,
) {
    let guard = FlightGuard {
        slot: Arc::downgrade(&slot),
        rx: tx.subscribe(),
    };
    let core = slot.core.clone();
    let config = &core.config;
    let mut attempt = first_attempt.saturating_sub(1);
    // When requests started waiting (no usable token); the retry budget counts from there.
    // Set at the start when there is no usable token, else from the slot's record of the
    // first request that waited, or the first failure once the token is gone.
    let flight_started = Instant::now();
    let mut waiting_since = (!slot.has_usable()).then_some(flight_started);
    loop {
        attempt += 1;
        let started = Instant::now();
        slot.fetches.fetch_add(1, Ordering::Relaxed);
        let request = TokenRequest::new(slot.scope.clone(), reason)
            .with_explicit_scope(slot.core.explicit_scope);
        // A fetcher that panics is a failed fetch like any other, backed off from and
        // cooled down after, not a cancelled flight that the next request restarts at once.
        let fetch = AssertUnwindSafe(slot.core.fetcher.clone().oneshot(request)).catch_unwind();
        let result = match tokio::time::timeout(config.fetch_timeout, fetch).await {
            Ok(Ok(Ok(token))) => slot.install(token, started, reason),
            Ok(Ok(Err(err))) => Err(Error::from_fetcher(err)),
            Ok(Err(_panic)) => Err(Error::builder(ErrorKind::Cancelled)
                .detail("the token fetcher panicked")
                .build()),
            Err(_) => Err(Error::builder(ErrorKind::Timeout)
                .detail(&format!("no answer within {:?}", config.fetch_timeout))
                .build()),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let err = match result {
            Ok(cached) => {
                tracing::info!(attempt, elapsed_ms, outcome = "ok", "token fetched");
                {
                    let mut state = slot.lock();
                    if !guard.owns(&state) {
                        // Given up on as stranded (its waiters were told): the flight
                        // that replaced it owns the slot, and this token's timers would
                        // run where this did.
                        tracing::info!("token from a fetch given up on not installed");
                        return;
                    }
                    slot.current.store(Some(cached.clone()));
                    state.end_flight();
                    state.cooldown = None;
                }
                let _ = tx.send(Some(Ok(cached)));
                return;
            }
            Err(err) => err,
        };
        tracing::warn!(
            attempt,
            elapsed_ms,
            outcome = "error",
            kind = ?err.kind(),
            retryable = err.is_retryable(),
            error = %err,
            cause = %err.causes(),
            "token fetch failed"
        );
        slot.lock().last_error = Some(err.kind());

        let now = Instant::now();
        let delay = backoff(config, attempt, err.retry_after());
        if slot.has_usable() {
            // A renewal (or a forced fetch) with a token still in use: retried within the
            // budget like a fetch requests wait for, so that a blip costs nothing, then
            // given up on in this flight.
            if err.is_retryable() && later(now, delay) <= later(flight_started, config.retry_budget)
            {
                slot = match back_off(slot, &guard, delay).await {
                    Some(slot) => slot,
                    None => return,
                };
                continue;
            }
            renewal_failed(&slot, &guard, reason, attempt, delay, err, &tx);
            return;
        }
        // Requests that joined a renewal the token ran out during have waited since they
        // came, not since this failure.
        let since = *waiting_since.get_or_insert_with(|| slot.lock().waiting_since.unwrap_or(now));
        if err.is_retryable() && later(now, delay) <= later(since, config.retry_budget) {
            slot = match back_off(slot, &guard, delay).await {
                Some(slot) => slot,
                None => return,
            };
            continue;
        }
        // Give up: everyone waiting gets the error, and so does everyone arriving during
        // the cooldown, without a new fetch.
        let cooldown = pause_after(config, &err, delay);
        {
            let mut state = slot.lock();
            if guard.owns(&state) {
                state.end_flight();
                state.cooldown = Some((later(Instant::now(), cooldown), err.clone()));
            }
        }
        let _ = tx.send(Some(Err(err)));
        return;
    }
}

/// A renewal failed, past the retry budget or beyond retrying, while the current token
/// still works: the token is kept.
///
/// The flight ends here, with the error, so that whoever waits on it (a
/// [`force_refresh`](crate::TokenHandle::force_refresh)) learns of the failure now rather
/// than when the token runs out, and a request that later finds no usable token does not
/// join a driver that is sleeping out a pause. A retryable failure is tried again after
/// the backoff delay, by a new flight, while the token is still usable and nobody else
/// has started one: one retry is scheduled per token (a newer token's failure gets its
/// own), and a retry that falls in a cooldown set meanwhile waits for its end rather than
/// being dropped. A failure that asked for a pause (`Retry-After`) or that retrying
/// cannot mend (`invalid_client`) also sets a cooldown, as when requests give up: until
/// it ends, a request without a usable token gets this error at once. A non-retryable
/// failure is not retried in the background; the next fetch is made when a request
/// needs a token.
fn renewal_failed(
    slot: &Arc<Slot>,
    flight: &FlightGuard,
    reason: FetchReason,
    attempt: u32,
    delay: Duration,
    err: Error,
    tx: &watch::Sender<Outcome>,
) {
    let retryable = err.is_retryable();
    let pause = pause_after(&slot.core.config, &err, delay);
    if retryable {
        tracing::info!(
            delay_ms = pause.as_millis() as u64,
            "renewal failed; current token kept, retrying later"
        );
    } else {
        tracing::warn!(
            "renewal failed and retrying cannot help; current token kept until it expires"
        );
    }
    // A flight given up on as stranded leaves the slot to the flight that replaced it.
    let mut state = slot.lock();
    if flight.owns(&state) {
        state.end_flight();
        let now = Instant::now();
        if !retryable || err.retry_after().is_some() {
            state.cooldown = Some((later(now, pause), err.clone()));
        }
        // Read under the lock, so that a token installed after it is not the one the
        // retry is for.
        let current = slot.current.load();
        if let Some(c) = current.as_deref().filter(|c| retryable && c.usable()) {
            slot.schedule_retry(
                &mut state,
                c.generation,
                reason,
                attempt + 1,
                later(now, pause),
            );
        }
    }
    drop(state);
    let _ = tx.send(Some(Err(err)));
}

/// Clears the slot's flight if the driver ends without doing so itself (its runtime shut
/// down; a panic of the fetcher is caught as a failed fetch), so that the next request
/// starts a new fetch instead of waiting on one that no longer exists. Its waiters see the
/// sender dropped and get [`ErrorKind::Cancelled`].
struct FlightGuard {
    slot: Weak<Slot>,
    rx: watch::Receiver<Outcome>,
}

impl FlightGuard {
    /// Whether the slot's flight is still this driver's: not given up on as stranded
    /// (see [`State::drop_stranded`]) and replaced.
    fn owns(&self, state: &State) -> bool {
        state
            .flight
            .as_ref()
            .is_some_and(|f| f.rx.same_channel(&self.rx))
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let Some(slot) = self.slot.upgrade() else {
            return;
        };
        let mut state = slot.lock();
        if self.owns(&state) {
            state.end_flight();
        }
    }
}

/// Sleeps out a backoff delay holding the slot only weakly, so that a layer dropped
/// meanwhile (with every service and handle: nobody left to want a token) is not kept
/// fetching for the rest of the retry budget; `None` when it was, or when the flight was
/// given up on as stranded meanwhile (nobody waits on it any more).
async fn back_off(slot: Arc<Slot>, flight: &FlightGuard, delay: Duration) -> Option<Arc<Slot>> {
    tracing::info!(
        delay_ms = delay.as_millis() as u64,
        "backing off before retrying the token fetch"
    );
    let weak = Arc::downgrade(&slot);
    drop(slot);
    tokio::time::sleep(delay).await;
    let Some(slot) = weak.upgrade() else {
        tracing::debug!("token fetch given up: its layer is gone");
        return None;
    };
    if !flight.owns(&slot.lock()) {
        tracing::debug!("token fetch given up: another replaced it");
        return None;
    }
    Some(slot)
}

/// How long to wait after a failed fetch before the next: the backoff delay, and at least
/// `max_backoff` after a failure that retrying cannot mend.
fn pause_after(config: &Config, err: &Error, delay: Duration) -> Duration {
    if err.is_retryable() {
        delay
    } else {
        delay.max(config.max_backoff)
    }
}

/// `at + d`, saturating at a hundred years ahead instead of overflowing, so that
/// "forever" settings (`Duration::MAX`) mean forever rather than a panic.
fn later(at: Instant, d: Duration) -> Instant {
    at + d.min(CEILING)
}

/// The longest span the cache reckons with: a hundred years.
const CEILING: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// The shortest backoff delay, whatever the settings: a zero delay would retry a failing
/// endpoint in a tight loop (and, on a paused clock, never let time move on).
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// Growing backoff with jitter: `initial * 2^(attempt-1)`, capped, then scaled by a
/// random factor in `[0.5, 1.0)`, and at least [`MIN_BACKOFF`] (the two settings count
/// as at least that too); at least what `Retry-After` asked for (itself capped).
fn backoff(config: &Config, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exp = config
        .initial_backoff
        .max(MIN_BACKOFF)
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(config.max_backoff.max(MIN_BACKOFF));
    let jittered = exp.mul_f64(0.5 + fastrand::f64() * 0.5).max(MIN_BACKOFF);
    match retry_after {
        Some(after) => jittered.max(after.min(config.max_retry_after)),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let c = Config::default();
        for attempt in 1..20 {
            let d = backoff(&c, attempt, None);
            let full = c
                .initial_backoff
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(c.max_backoff);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert_eq!(
            backoff(&c, 1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            backoff(&c, 1, Some(Duration::from_secs(3600))),
            c.max_retry_after
        );
    }

    #[test]
    fn forever_is_a_century_and_anything_shorter_is_itself() {
        let now = Instant::now();
        let hour = Duration::from_secs(3600);
        assert_eq!(later(now, hour), now + hour);
        let century = later(now, Duration::MAX) - now;
        assert!(
            century >= Duration::from_secs(99 * 365 * 24 * 3600),
            "{century:?}"
        );
        assert_eq!(later(now, Duration::MAX), later(now, century * 2));
    }

    #[test]
    fn bearer_header_refuses_bad_tokens_and_is_sensitive() {
        assert!(bearer_header("abc.DEF-123_~+/=").unwrap().is_sensitive());
        for bad in [
            "",
            "a b",
            "a\r\nX-Evil: 1",
            "tab\there",
            "caf\u{e9}",
            "nul\0",
        ] {
            let err = bearer_header(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MalformedResponse);
            assert!(!err.to_string().contains(bad) || bad.is_empty());
        }
    }
}
