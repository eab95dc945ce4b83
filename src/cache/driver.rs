//! The fetch driver: the task that owns a flight, and the background retries of renewals.
//!
//! A driver fetches, retrying within the retry budget, installs the token and tells the
//! waiters. Whether a token is still in use only changes what happens after the last
//! attempt: a renewal keeps the token and tries again later in the background
//! ([`renewal_failed`]); requests without a token get the error, and so does every
//! request during the cooldown that follows ([`give_up`]).

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use tokio::{runtime::Handle, sync::watch, time::Instant};
use tracing::Instrument;

use super::{
    backoff::{backoff, later, pause_after},
    flight::{Control, Fetch, Flight, Outcome, Retry, Waiter},
    token::Installed,
    Slot,
};
use crate::{
    error::{Error, ErrorKind},
    sync::lock,
    token::{FetchReason, Scope},
};

type Sender = Arc<watch::Sender<Option<Outcome>>>;

impl Slot {
    /// Starts a flight; called with the slot's lock held.
    pub(super) fn start_flight(&self, control: &mut Control, reason: FetchReason) -> Waiter {
        self.start_flight_at(control, reason, 1)
    }

    /// [`start_flight`](Self::start_flight), counting backoff from `attempt`.
    fn start_flight_at(&self, control: &mut Control, reason: FetchReason, attempt: u32) -> Waiter {
        let (tx, rx) = watch::channel(None);
        let tx = Arc::new(tx);
        // A root span: the fetch runs in a task of its own, for every request that waits
        // on it (or none: a renewal), not as a part of the request that started it,
        // which it only follows from.
        let span = tracing::info_span!(
            parent: None,
            "oauth.fetch",
            scope = self.scope.as_ref().map(Scope::as_str).unwrap_or(""),
            reason = reason.as_str(),
            layer = self.core.name.as_deref(),
            tenant = self.tenant.as_ref().map(|t| t.as_str())
        );
        span.follows_from(tracing::Span::current());
        match Handle::try_current() {
            Ok(handle) => {
                control.fetch = Fetch::InFlight(Flight::new(tx.clone(), &handle));
                handle.spawn(drive(self.arc(), reason, attempt, tx).instrument(span));
            }
            Err(_) => {
                control.fetch = Fetch::Idle;
                let err = Error::new(ErrorKind::Config)
                    .with_detail("a tokio runtime is required to fetch tokens");
                let _ = tx.send(Some(Err(self.core.label(err))));
            }
        }
        rx
    }

    /// Schedules a renewal of the token `generation` at `at`, unless one is already
    /// scheduled for that token. `false` when there is no runtime to schedule it on.
    pub(super) fn schedule_retry(
        &self,
        control: &mut Control,
        generation: u64,
        reason: FetchReason,
        attempt: u32,
        at: Instant,
    ) -> bool {
        if control
            .retry
            .as_ref()
            .is_some_and(|r| r.generation == generation)
        {
            return true;
        }
        let Ok(runtime) = Handle::try_current() else {
            return false;
        };
        // The retry holds the slot weakly: a layer dropped meanwhile is not kept fetching.
        let slot = self.me.clone();
        let task = runtime.spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(slot) = slot.upgrade() {
                slot.retry_renewal(generation, reason, attempt);
            }
        });
        let retry = Retry {
            generation,
            task: task.abort_handle(),
        };
        if let Some(older) = control.retry.replace(retry) {
            // For a token since replaced: it would find nothing to do.
            older.task.abort();
        }
        true
    }

    /// Renews the token `generation` as scheduled, unless that is no longer needed: the
    /// token was replaced meanwhile or is no longer usable (the next request fetches), or
    /// a fetch is running (its failure schedules the next retry). A cooldown set since
    /// puts the renewal off until it ends.
    fn retry_renewal(&self, generation: u64, reason: FetchReason, attempt: u32) {
        let mut control = lock(&self.control);
        if control
            .retry
            .as_ref()
            .is_some_and(|r| r.generation == generation)
        {
            control.retry = None;
        }
        let still_needed = self.live() == Some(generation);
        control.fetch.drop_stranded(&self.core.config);
        if !still_needed || control.fetch.flight().is_some() {
            return;
        }
        match control.fetch.cooldown_until() {
            Some(until) => {
                self.schedule_retry(&mut control, generation, reason, attempt, until);
            }
            None => {
                self.start_flight_at(&mut control, reason, attempt);
            }
        }
    }

    /// Makes `installed` the current token; called with the slot's lock held, which
    /// every install takes, so that a reader under the lock sees the word of this token.
    fn put(&self, installed: Arc<Installed>) {
        let refused = !installed.scope_ok && self.core.config.strict_scope;
        // The token first, then the word: a reader that sees the new generation finds it.
        self.hot.current.store(Some(installed.clone()));
        self.hot.state.install(installed.generation, refused);
        let labels = crate::metrics::Labels::new(self.core.name.as_ref(), self.scope.as_ref());
        labels.token_installed(
            installed
                .expires_at
                .saturating_duration_since(Instant::now()),
        );
        installed.start_timers(self.me.clone(), labels);
    }

    fn arc(&self) -> Arc<Slot> {
        self.me
            .upgrade()
            .expect("a slot is only reached through the Arc that Slot::new made")
    }
}

/// The fetch driver: retries within the budget, installs the token, tells the waiters.
async fn drive(mut slot: Arc<Slot>, reason: FetchReason, first_attempt: u32, tx: Sender) {
    let guard = FlightGuard {
        slot: Arc::downgrade(&slot),
        rx: tx.subscribe(),
    };
    let core = slot.core.clone();
    let config = &core.config;
    let mut attempt = first_attempt.saturating_sub(1);
    // A renewal (or a forced fetch) of a token still in use counts its retry budget from
    // its start. Requests without a usable token count from when the first of them came:
    // from the start if there was none then, else from the flight's record of the first
    // request that waited (the token ran out during the renewal), or this failure.
    let flight_started = Instant::now();
    let mut waiting_since = slot.live().is_none().then_some(flight_started);
    loop {
        attempt += 1;
        let started = Instant::now();
        let result = slot.fetch_once(reason, started).await;
        let elapsed = started.elapsed();
        let elapsed_ms = elapsed.as_millis() as u64;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        crate::metrics::fetch(core.name.as_deref(), reason, outcome, elapsed);
        let err = match result {
            Ok(installed) => {
                tracing::info!(attempt, elapsed_ms, outcome = "ok", "token fetched");
                install(&slot, &guard, Arc::new(installed), &tx);
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
        lock(&slot.control).last_error = Some(err.kind());

        let now = Instant::now();
        let delay = backoff(config, attempt, err.retry_after());
        let renewing = slot.live().is_some();
        let since = if renewing {
            flight_started
        } else {
            *waiting_since.get_or_insert_with(|| guard.waiting_since(&slot).unwrap_or(now))
        };
        if err.is_retryable() && later(now, delay) <= later(since, config.retry_budget) {
            slot = match back_off(slot, &guard, delay).await {
                Some(slot) => slot,
                None => return,
            };
            continue;
        }
        if renewing {
            renewal_failed(&slot, &guard, reason, attempt, delay, err, &tx);
        } else {
            give_up(&slot, &guard, delay, err, &tx);
        }
        return;
    }
}

/// Installs the token a flight fetched and tells its waiters, unless the flight was given
/// up on as stranded (its waiters were told): the flight that replaced it owns the slot,
/// and this token's timers would run where this did.
fn install(slot: &Slot, flight: &FlightGuard, installed: Arc<Installed>, tx: &Sender) {
    {
        let mut control = lock(&slot.control);
        if !flight.owns(&control) {
            tracing::info!("token from a fetch given up on not installed");
            return;
        }
        slot.put(installed.clone());
        control.fetch = Fetch::Idle;
    }
    let _ = tx.send(Some(Ok(installed)));
}

/// Requests without a usable token failed past the retry budget or beyond retrying:
/// everyone waiting gets the error, and so does everyone arriving during the cooldown,
/// without a new fetch.
fn give_up(slot: &Slot, flight: &FlightGuard, delay: Duration, err: Error, tx: &Sender) {
    let cooldown = pause_after(&slot.core.config, &err, delay);
    let until = later(Instant::now(), cooldown);
    // Says when to come back, to a retry policy outside the layer.
    let err = err.with_cooldown_until(until);
    {
        let mut control = lock(&slot.control);
        if flight.owns(&control) {
            control.fetch = Fetch::CoolingDown {
                until,
                error: err.clone(),
            };
        }
    }
    let _ = tx.send(Some(Err(err)));
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
    slot: &Slot,
    flight: &FlightGuard,
    reason: FetchReason,
    attempt: u32,
    delay: Duration,
    err: Error,
    tx: &Sender,
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
    let until = later(Instant::now(), pause);
    let cooling = !retryable || err.retry_after().is_some();
    let err = if cooling {
        err.with_cooldown_until(until)
    } else {
        err
    };
    // A flight given up on as stranded leaves the slot to the flight that replaced it.
    let mut control = lock(&slot.control);
    if flight.owns(&control) {
        control.fetch = if cooling {
            Fetch::CoolingDown {
                until,
                error: err.clone(),
            }
        } else {
            Fetch::Idle
        };
        // Read under the lock, so that a token installed after it is not the one the
        // retry is for.
        if let Some(generation) = slot.live().filter(|_| retryable) {
            slot.schedule_retry(&mut control, generation, reason, attempt + 1, until);
        }
    }
    drop(control);
    let _ = tx.send(Some(Err(err)));
}

/// Clears the slot's flight if the driver ends without doing so itself (its runtime shut
/// down; a panic of the fetcher is caught as a failed fetch), so that the next request
/// starts a new fetch instead of waiting on one that no longer exists. Its waiters see the
/// sender dropped and get [`ErrorKind::Cancelled`].
struct FlightGuard {
    slot: Weak<Slot>,
    rx: Waiter,
}

impl FlightGuard {
    /// This driver's flight, if the slot's flight is still it: not given up on as
    /// stranded (see [`Fetch::drop_stranded`]) and replaced.
    fn flight<'a>(&self, control: &'a Control) -> Option<&'a Flight> {
        control
            .fetch
            .flight()
            .filter(|f| f.rx.same_channel(&self.rx))
    }

    fn owns(&self, control: &Control) -> bool {
        self.flight(control).is_some()
    }

    /// Since when requests without a usable token have waited on this flight.
    fn waiting_since(&self, slot: &Slot) -> Option<Instant> {
        self.flight(&lock(&slot.control))?.waiting_since
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let Some(slot) = self.slot.upgrade() else {
            return;
        };
        let mut control = lock(&slot.control);
        if self.owns(&control) {
            control.fetch = Fetch::Idle;
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
    if !flight.owns(&lock(&slot.control)) {
        tracing::debug!("token fetch given up: another replaced it");
        return None;
    }
    Some(slot)
}
