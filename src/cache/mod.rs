//! Token state: one slot per scope set, read without locks, renewed by one fetch at a time.
//!
//! A slot's current token lives in an [`ArcSwapOption`], and its generation and phase in
//! one atomic word beside it ([`token`]): a request checks the word, nothing more. Tokio
//! timers set when the token is installed move the phase from fresh to "renewal due" to
//! expired, so the request path never reads a clock. Fetching is cold: the first request
//! that needs a token (or the first that sees one due for renewal) starts a driver task
//! ([`driver`]) under the slot's mutex, and everyone else waits on that task's outcome
//! ([`flight`]). The task, not the request, owns the fetch, so a request that goes away
//! never strands the others.

mod backoff;
mod driver;
mod flight;
mod obtain;
mod renewal;
mod status;
mod token;

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex, Weak,
};

use arc_swap::ArcSwapOption;
use tokio::time::Instant;

pub use self::status::{TokenState, TokenStatus};
pub(crate) use self::token::{Credential, Peek, Phase};
use self::{
    flight::{wait, Control, Fetch},
    token::{Installed, Word},
};
use crate::{
    config::Core,
    error::{Error, ErrorKind},
    sync::lock,
    tenant::Tenant,
    token::{FetchReason, Scope, SlotKey},
};

/// The token state of one scope set.
///
/// Aligned to 128 bytes through [`Hot`], whose fields have those bytes to themselves.
pub(crate) struct Slot {
    hot: Hot,
    pub(crate) core: Arc<Core>,
    scope: Option<Scope>,
    /// The tenant its tokens are for, on a layer for many.
    tenant: Option<Tenant>,
    control: Mutex<Control>,
    fetches: AtomicU64,
    /// Tokens read from the layer's store rather than fetched.
    store_hits: AtomicU64,
    /// The slot's key in the layer's token store, if it has one.
    store_key: Option<String>,
    generations: AtomicU64,
    /// The sweep epoch of its last use, for a scope set computed per request
    /// (see `scope::Epochs`).
    pub(crate) used_epoch: AtomicU64,
    /// Itself, for the tasks it starts: the hot path takes `&self`.
    me: Weak<Slot>,
}

/// What every request reads, on cache lines of their own: every core reads them, and a
/// neighbour written often (the mutex, locked by requests during an outage) would bounce
/// those lines between cores.
#[repr(align(128))]
struct Hot {
    state: Word,
    current: ArcSwapOption<Installed>,
}

const _: () = assert!(std::mem::align_of::<Slot>() == 128);

impl AsRef<Word> for Slot {
    fn as_ref(&self) -> &Word {
        &self.hot.state
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // A scheduled retry holds the slot weakly and would find it gone; it is not left
        // sleeping out its pause (up to `max_retry_after`).
        if let Some(retry) = lock(&self.control).retry.take() {
            retry.task.abort();
        }
    }
}

impl Slot {
    /// A slot for `scope`, with no token yet; in an `Arc`, which its tasks hold weakly.
    pub(crate) fn new(core: Arc<Core>, key: SlotKey) -> Arc<Self> {
        let store_key = core.store_key(&key);
        let SlotKey { tenant, scope } = key;
        Arc::new_cyclic(|me| Self {
            hot: Hot {
                state: Word::empty(),
                current: ArcSwapOption::empty(),
            },
            core,
            scope,
            tenant,
            control: Mutex::new(Control::default()),
            fetches: AtomicU64::new(0),
            store_hits: AtomicU64::new(0),
            store_key,
            generations: AtomicU64::new(1),
            used_epoch: AtomicU64::new(0),
            me: me.clone(),
        })
    }

    /// The scope set its tokens are requested for.
    pub(crate) fn scope(&self) -> Option<&Scope> {
        self.scope.as_ref()
    }

    /// The current token's generation and phase: one atomic load, for a caller that
    /// holds a copy of a token's header and wants to know whether it is still good.
    #[inline]
    pub(crate) fn peek(&self) -> Peek {
        self.hot.state.peek()
    }

    /// The current token if a request can carry it as it is. Takes no lock and allocates
    /// nothing; starts a background renewal when one is due.
    #[inline]
    pub(crate) fn fast(&self) -> Option<Credential> {
        let current = self.hot.current.load();
        let installed = current.as_deref()?;
        let peek = self.peek();
        // Another generation: a token is being installed; the slow path waits for it.
        if peek.generation != installed.generation || !peek.phase().live() {
            return None;
        }
        if peek.renewal_due() {
            self.renewal_due(installed.generation);
        }
        peek.usable().then(|| installed.credential())
    }

    /// Starts the background renewal of token `generation`, due for one, unless it was
    /// started already; if it cannot start (no runtime here), a later request tries again.
    #[cold]
    pub(crate) fn renewal_due(&self, generation: u64) {
        if self.hot.state.claim_renewal(generation)
            && !self.renew_in_background(FetchReason::AheadOfExpiry)
        {
            self.hot.state.release_renewal(generation);
        }
    }

    /// The slow path: waits for a usable token, fetching one if needed.
    pub(crate) async fn acquire(&self) -> Result<Credential, Error> {
        let rx = {
            let mut control = lock(&self.control);
            let current = self.hot.current.load();
            // Read under the lock, which installs take: the word is of this token.
            let phase = current.as_deref().map(|_| self.peek().phase());
            if let (Some(installed), Some(phase)) = (current.as_deref(), phase) {
                if phase.live() {
                    return self.credential(installed);
                }
            }
            control.fetch.drop_stranded(&self.core.config);
            let rx = match &control.fetch {
                Fetch::InFlight(flight) => flight.rx.clone(),
                _ => {
                    if let Some(err) = control.fetch.cooling_down() {
                        return Err(err.clone());
                    }
                    let reason = match phase {
                        None => FetchReason::First,
                        Some(Phase::Rejected) => FetchReason::Rejected,
                        Some(_) => FetchReason::Expired,
                    };
                    self.start_flight(&mut control, reason)
                }
            };
            // The first request to wait starts the retry budget, whether it started the
            // flight or found one running (a renewal the token ran out during); by the
            // driver's clock, so only on its runtime (a paused clock elsewhere may be
            // anywhere). A request elsewhere leaves the driver to count from its next
            // failure.
            if let Fetch::InFlight(flight) = &mut control.fetch {
                if !flight.elsewhere() {
                    flight.waiting_since.get_or_insert_with(Instant::now);
                }
            }
            rx
        };
        let installed = wait(rx).await?;
        self.credential(&installed)
    }

    /// The credential of `installed`, unless strict scope checking refuses it.
    fn credential(&self, installed: &Installed) -> Result<Credential, Error> {
        if !installed.scope_ok && self.core.config.strict_scope {
            return Err(
                Error::new(ErrorKind::InsufficientScope).with_detail(&format!(
                    "requested \"{}\", granted \"{}\"",
                    self.scope.as_ref().map(Scope::as_str).unwrap_or(""),
                    installed.granted.as_ref().map(Scope::as_str).unwrap_or("")
                )),
            );
        }
        Ok(installed.credential())
    }

    /// Marks the token `generation` as rejected by the API, if it is still the current
    /// one; a newer token is left alone.
    ///
    /// Returns `false` when the rejection is held off: the current token was itself
    /// fetched because of a rejection less than `reissue_interval` ago, which says the
    /// server rejects fresh tokens too; fetching another at once would only load the
    /// token endpoint.
    pub(crate) fn reject(&self, generation: u64) -> bool {
        let current = self.hot.current.load();
        let Some(installed) = current.as_deref().filter(|c| c.generation == generation) else {
            return true;
        };
        let scope = self.scope.as_ref().map(Scope::as_str).unwrap_or("");
        if installed.reason == FetchReason::Rejected
            && installed.installed_at.elapsed() < self.core.config.reissue_interval
        {
            // Warned of once per token: a server that rejects every token would otherwise
            // log a warning per request.
            if installed.first_hold_off() {
                tracing::warn!(
                    scope,
                    "api rejected a token fetched moments ago for the same reason; not \
                     re-issuing yet"
                );
            } else {
                tracing::debug!(scope, "api rejected a token fetched moments ago; held off");
            }
            return false;
        }
        if self.hot.state.advance(generation, Phase::Rejected) {
            crate::metrics::rejection(self.core.name.as_deref());
        }
        tracing::debug!(scope, "api rejected the current token");
        true
    }

    /// Starts a fetch unless one is running, without waiting for it; during a cooldown,
    /// a renewal of the token still in use is scheduled for when the cooldown ends. `false`
    /// only when a fetch was due but could not start (no runtime here): a later request
    /// should try again.
    pub(crate) fn renew_in_background(&self, reason: FetchReason) -> bool {
        let mut control = lock(&self.control);
        control.fetch.drop_stranded(&self.core.config);
        if control.fetch.flight().is_some() {
            return true;
        }
        if let Some(until) = control.fetch.cooldown_until() {
            return match self.live() {
                Some(generation) => self.schedule_retry(&mut control, generation, reason, 1, until),
                // No token to keep using: the next request fetches, after the cooldown.
                None => true,
            };
        }
        self.start_flight(&mut control, reason);
        control.fetch.flight().is_some()
    }

    /// Fetches a new token now (joining a fetch in flight) and waits for it; like a
    /// request, fails when strict scope checking refuses it.
    pub(crate) async fn force(self: Arc<Self>) -> Result<(), Error> {
        let rx = {
            let mut control = lock(&self.control);
            control.fetch.drop_stranded(&self.core.config);
            match &control.fetch {
                Fetch::InFlight(flight) => flight.rx.clone(),
                _ => self.start_flight(&mut control, FetchReason::Forced),
            }
        };
        let installed = wait(rx).await?;
        self.credential(&installed).map(drop)
    }

    /// Waits for a usable token; fails fast on bad credentials.
    pub(crate) async fn warm_up(self: Arc<Self>) -> Result<(), Error> {
        self.acquire().await.map(drop)
    }

    /// What the control handle shows of it.
    pub(crate) fn view(&self) -> TokenState {
        let control = lock(&self.control);
        let current = self.hot.current.load();
        let token = current.as_deref().map(|c| (c, self.peek().phase()));
        let counts = status::Counts {
            fetches: self.fetches.load(Ordering::Relaxed),
            store_hits: self.store_hits.load(Ordering::Relaxed),
        };
        status::view(
            self.scope.as_ref(),
            self.tenant.as_ref(),
            token,
            &control,
            counts,
        )
    }

    /// The generation of the current token if it still works (neither expired nor
    /// rejected).
    fn live(&self) -> Option<u64> {
        let peek = self.peek();
        peek.phase().live().then_some(peek.generation)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering::SeqCst},
        time::Duration,
    };

    use tower::util::BoxCloneSyncService;

    use super::*;
    use crate::{
        classify::{Classifier, StandardClassifier},
        config::Config,
        error::BoxError,
        token::{Token, TokenRequest},
    };

    /// A slot whose `n`th fetch gets a token lasting `lifetimes[n]` seconds (the last one
    /// once they run out), granted `granted` when set.
    fn slot(config: Config, scope: Option<&str>, granted: Option<&'static str>) -> Arc<Slot> {
        slot_with(config, scope, granted, &[600])
    }

    fn slot_with(
        config: Config,
        scope: Option<&str>,
        granted: Option<&'static str>,
        lifetimes: &'static [u64],
    ) -> Arc<Slot> {
        let calls = Arc::new(AtomicUsize::new(0));
        let fetcher = tower::service_fn(move |_: TokenRequest| {
            let n = calls.fetch_add(1, SeqCst);
            let secs = lifetimes[n.min(lifetimes.len() - 1)];
            let token = Token::new(format!("token-{n}"), Some(Duration::from_secs(secs)));
            let token = match granted {
                Some(scope) => token.with_scope(Scope::new(scope)),
                None => token,
            };
            async move { Ok::<_, BoxError>(token) }
        });
        let core = Core {
            config,
            fetcher: BoxCloneSyncService::new(fetcher),
            classifier: Classifier::new(StandardClassifier::default()),
            replayers: Default::default(),
            explicit_scope: false,
            name: None,
            host: None,
            fleet: None,
            store_identity: None,
            tenant_identity: None,
            #[cfg(feature = "jwt")]
            dpop: None,
        };
        Slot::new(Arc::new(core), SlotKey::scope(scope.map(Scope::new)))
    }

    #[tokio::test(start_paused = true)]
    async fn an_installed_token_peeks_fresh_under_its_generation() {
        let slot = slot(Config::default(), None, None);
        assert!(!slot.peek().usable(), "no token yet");
        assert!(slot.fast().is_none());
        let cred = slot.acquire().await.unwrap();
        let peek = slot.peek();
        assert_eq!(peek.generation, cred.generation);
        assert_eq!(peek.phase(), Phase::Fresh);
        assert!(peek.usable());
        assert_eq!(slot.fast().unwrap().generation, cred.generation);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejection_is_not_undone_by_the_renewal_timer() {
        let rejected = slot(Config::default(), None, None);
        let control = slot(Config::default(), None, None);
        let generation = rejected.acquire().await.unwrap().generation;
        control.acquire().await.unwrap();
        assert!(rejected.reject(generation));
        // Past the renewal time (600 s, renewed 60 s ahead), then past expiry.
        tokio::time::sleep(Duration::from_secs(550)).await;
        assert_eq!(control.peek().phase(), Phase::RenewDue, "the timers ran");
        assert_eq!(rejected.peek().phase(), Phase::Rejected);
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(control.peek().phase(), Phase::Expired, "the timers ran");
        assert_eq!(rejected.peek().phase(), Phase::Rejected);
        assert!(rejected.fast().is_none());
        assert_eq!(rejected.view().status, TokenStatus::Rejected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_replaced_tokens_timers_leave_its_successor_alone() {
        // The first token lasts 100 s, the second 1000 s.
        let slot = slot_with(Config::default(), None, None, &[100, 1000]);
        let first = slot.acquire().await.unwrap().generation;
        slot.clone().force().await.unwrap();
        let second = slot.peek().generation;
        assert_ne!(first, second);
        assert!(slot.reject(first), "a stale rejection is not held off");
        assert_eq!(slot.peek().phase(), Phase::Fresh, "and changes nothing");
        // Past the first token's renewal and expiry.
        tokio::time::sleep(Duration::from_secs(200)).await;
        let peek = slot.peek();
        assert_eq!((peek.generation, peek.phase()), (second, Phase::Fresh));
        assert_eq!(slot.fast().unwrap().generation, second);
    }

    #[tokio::test(start_paused = true)]
    async fn strict_scope_refuses_a_narrower_token_on_every_path() {
        let config = Config {
            strict_scope: true,
            ..Config::default()
        };
        let slot = slot(config, Some("read write"), Some("read"));
        let err = slot.acquire().await.err().expect("refused");
        assert_eq!(err.kind(), ErrorKind::InsufficientScope);
        let peek = slot.peek();
        assert_eq!(peek.phase(), Phase::Fresh, "installed and shown");
        assert!(!peek.usable(), "but not sent");
        assert!(slot.fast().is_none());
        assert!(!slot.view().scope_satisfied);
    }
}
