//! Single flight: at most one fetch per slot, whose outcome everyone waiting shares.
//!
//! A slot's mutex guards its [`Control`]: the [`Fetch`] state (idle, a fetch in flight,
//! or cooling down after a failure: one at a time, each with the data valid in it), the
//! background retry scheduled for a failed renewal, and the last failure. A flight runs
//! in a task of its own and tells its waiters through a watch channel, so a waiter that
//! goes away never strands the others; a flight whose task is gone or stuck on another
//! runtime is given up on ([`Fetch::drop_stranded`]).

use std::sync::Arc;

use tokio::{
    runtime::{self, Handle},
    sync::watch,
    task::AbortHandle,
    time::Instant,
};

use super::token::Installed;
use crate::{
    config::Config,
    error::{Error, ErrorKind},
};

/// What a flight ends with: the token it installed, or why it failed.
pub(super) type Outcome = Result<Arc<Installed>, Error>;

/// The receiving end of a flight: `None` until it ends.
pub(super) type Waiter = watch::Receiver<Option<Outcome>>;

/// A slot's state under its mutex.
#[derive(Default)]
pub(super) struct Control {
    pub(super) fetch: Fetch,
    /// The background retry of a failed renewal: one at a time, however many renewals
    /// fail meanwhile; stopped when a newer token's retry replaces it or the slot is
    /// dropped.
    pub(super) retry: Option<Retry>,
    pub(super) last_error: Option<ErrorKind>,
}

/// Whether a fetch runs, or requests without a token get the last failure at once.
#[derive(Default)]
pub(super) enum Fetch {
    /// No fetch runs; a request that needs a token starts one.
    #[default]
    Idle,
    /// A driver task is fetching; requests without a usable token wait on it.
    InFlight(Flight),
    /// After a failed fetch: until `until`, requests without a usable token get `error`
    /// without a new fetch. Once `until` has passed it counts as idle.
    CoolingDown { until: Instant, error: Error },
}

/// A fetch in flight: its outcome (the sender is shared with the driver, so that a
/// flight given up on can be ended without it), and when, by the system clock, and on
/// which runtime its driver started.
pub(super) struct Flight {
    tx: Arc<watch::Sender<Option<Outcome>>>,
    pub(super) rx: Waiter,
    started: std::time::Instant,
    runtime: runtime::Id,
    /// Since when requests without a usable token have waited on it; the retry budget
    /// counts from there.
    pub(super) waiting_since: Option<Instant>,
}

/// A scheduled background retry of the renewal of token `generation`.
pub(super) struct Retry {
    pub(super) generation: u64,
    pub(super) task: AbortHandle,
}

impl Flight {
    /// A flight on `runtime`, told its outcome through `tx`.
    pub(super) fn new(tx: Arc<watch::Sender<Option<Outcome>>>, runtime: &Handle) -> Self {
        Self {
            rx: tx.subscribe(),
            tx,
            started: std::time::Instant::now(),
            runtime: runtime.id(),
            waiting_since: None,
        }
    }

    /// Whether the driver runs on another runtime than the caller's. Such a runtime may
    /// be kept but no longer driven (a current-thread runtime whose `block_on` returned),
    /// and then its driver never ends, not even by its `fetch_timeout`, a timer of that
    /// runtime. On the caller's runtime it does end: the caller being polled shows that
    /// runtime is driven.
    pub(super) fn elsewhere(&self) -> bool {
        Handle::try_current().map_or(true, |h| h.id() != self.runtime)
    }
}

impl Fetch {
    /// The flight, while one runs.
    pub(super) fn flight(&self) -> Option<&Flight> {
        match self {
            Fetch::InFlight(flight) => Some(flight),
            _ => None,
        }
    }

    /// The error that requests get without a new fetch, while a cooldown lasts.
    pub(super) fn cooling_down(&self) -> Option<&Error> {
        match self {
            Fetch::CoolingDown { until, error } if Instant::now() < *until => Some(error),
            _ => None,
        }
    }

    /// When the cooldown ends, while it lasts.
    pub(super) fn cooldown_until(&self) -> Option<Instant> {
        match self {
            Fetch::CoolingDown { until, .. } if Instant::now() < *until => Some(*until),
            _ => None,
        }
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
    pub(super) fn drop_stranded(&mut self, config: &Config) {
        let Fetch::InFlight(flight) = self else {
            return;
        };
        // Its driver is gone without ending it: its task was dropped before it was first
        // polled (its runtime shut down at once). Its waiters see the channel close.
        if Arc::strong_count(&flight.tx) == 1 {
            *self = Fetch::Idle;
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
            .send_replace(Some(Err(Error::new(ErrorKind::Timeout).with_detail(
                "the token fetch, running on another runtime, did not end \
                 (is that runtime still driven?)",
            ))));
        *self = Fetch::Idle;
    }
}

/// Waits for a flight's outcome; a driver gone without one cancelled it.
pub(super) async fn wait(mut rx: Waiter) -> Outcome {
    match rx.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().expect("waited for Some"),
        Err(_) => Err(Error::new(ErrorKind::Cancelled)),
    }
}
