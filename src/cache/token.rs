//! The installed token, its phase, and the timers that move the phase.
//!
//! A slot keeps its current token's generation and [`Phase`] packed in one atomic
//! [`Word`], so that a request checks both with a single load. A phase only moves
//! forward, and only for the generation it was meant for: a timer or a rejection that
//! arrives after its token was replaced changes nothing, and a rejected token stays
//! rejected. Tokio timers, set when a token is installed, move the phase, so the request
//! path never reads a clock.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        OnceLock, Weak,
    },
    time::Duration,
};

use bytes::Bytes;
use http::HeaderValue;
use tokio::{task::AbortHandle, time::Instant};

use super::backoff::CEILING;
use crate::{
    config::Config,
    error::{Error, ErrorKind},
    metrics::Labels,
    token::{FetchReason, Scope, Token, TokenType},
};

/// Where a token is in its life. Ordered: a phase never moves back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// In use, not yet due for renewal.
    Fresh,
    /// In use; a renewal should be under way.
    RenewDue,
    /// Past its expiry, by the layer's reckoning: not sent.
    Expired,
    /// The API rejected it: not sent.
    Rejected,
}

impl Phase {
    /// Whether a token in this phase still works: neither expired nor rejected.
    #[inline]
    pub(crate) fn live(self) -> bool {
        self <= Phase::RenewDue
    }

    #[inline]
    fn from_word(word: u64) -> Self {
        match word & PHASE {
            0 => Phase::Fresh,
            1 => Phase::RenewDue,
            2 => Phase::Expired,
            _ => Phase::Rejected,
        }
    }
}

// The word's layout: the generation above four flag bits.
const PHASE: u64 = 0b0011;
/// Strict scope checking refuses the token: it is installed (shown, renewed) but not sent.
const REFUSED: u64 = 0b0100;
/// A background renewal of the token was started.
const RENEWING: u64 = 0b1000;
const FLAGS: u64 = 0b1111;
const GENERATION_SHIFT: u32 = 4;

/// One load of a slot's [`Word`]: its current token's generation and phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peek {
    /// The current token's generation; 0 before the first token.
    pub(crate) generation: u64,
    /// The word's flag bits.
    flags: u64,
}

impl Peek {
    #[inline]
    fn of(word: u64) -> Self {
        Self {
            generation: word >> GENERATION_SHIFT,
            flags: word & FLAGS,
        }
    }

    /// The current token's phase.
    #[inline]
    pub(crate) fn phase(self) -> Phase {
        Phase::from_word(self.flags)
    }

    /// Whether a request may carry the token: it is live and strict scope checking (if
    /// on) accepted it.
    #[inline]
    pub(crate) fn usable(self) -> bool {
        self.phase().live() && self.flags & REFUSED == 0
    }

    /// Whether the token is due for renewal and nobody started one yet: the caller
    /// should call [`Slot::renewal_due`](super::Slot::renewal_due).
    #[inline]
    pub(crate) fn renewal_due(self) -> bool {
        self.phase() == Phase::RenewDue && self.flags & RENEWING == 0
    }
}

/// A slot's current token generation and phase, in one atomic word: the single source
/// of truth for the phase.
#[derive(Debug)]
pub(crate) struct Word(AtomicU64);

impl Word {
    /// Before the first token: generation 0, which no token has, and not usable.
    pub(super) fn empty() -> Self {
        Self(AtomicU64::new(Phase::Expired as u64))
    }

    #[inline]
    pub(super) fn peek(&self) -> Peek {
        Peek::of(self.0.load(Ordering::Acquire))
    }

    /// Makes `generation` current and fresh. Called after the token itself is stored, so
    /// that a reader that sees the generation here finds its token there.
    pub(super) fn install(&self, generation: u64, refused: bool) {
        let refused = if refused { REFUSED } else { 0 };
        let word = generation << GENERATION_SHIFT | refused | Phase::Fresh as u64;
        self.0.store(word, Ordering::Release);
    }

    /// Moves token `generation` forward to `to`. Whether it moved: not when another token
    /// is current or the phase is already as far.
    pub(super) fn advance(&self, generation: u64, to: Phase) -> bool {
        self.update(generation, |w| {
            (Phase::from_word(w) < to).then_some(w & !PHASE | to as u64)
        })
    }

    /// Claims the renewal of token `generation`, due for one: whether this caller should
    /// start it (nobody did yet).
    pub(super) fn claim_renewal(&self, generation: u64) -> bool {
        self.update(generation, |w| {
            Peek::of(w).renewal_due().then_some(w | RENEWING)
        })
    }

    /// Gives a claimed renewal back, so that a later request tries again.
    pub(super) fn release_renewal(&self, generation: u64) {
        self.update(generation, |w| Some(w & !RENEWING));
    }

    fn update(&self, generation: u64, f: impl Fn(u64) -> Option<u64>) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w >> GENERATION_SHIFT == generation)
                    .then(|| f(w))
                    .flatten()
            })
            .is_ok()
    }
}

/// What a request needs from a token: the header and which token it was.
#[derive(Clone)]
pub(crate) struct Credential {
    pub(crate) header: HeaderValue,
    pub(crate) generation: u64,
}

/// A token as installed in a slot; its phase is in the slot's [`Word`].
///
/// Aligned to (two) cache lines so that no other allocation shares its lines: every core
/// reads it on every request, and a neighbour written per request (such as the reference
/// count of the header's bytes) would bounce them between cores.
#[repr(align(128))]
pub(super) struct Installed {
    /// `Bearer <token>`, marked sensitive; cloned into each request.
    pub(super) header: HeaderValue,
    pub(super) generation: u64,
    /// Whether a rejection of it was held off yet (see `Slot::reject`): warned of once.
    held_off: AtomicBool,
    pub(super) scope_ok: bool,
    pub(super) granted: Option<Scope>,
    pub(super) expires_at: Instant,
    renew_at: Instant,
    /// Why it was fetched, and when it arrived: a token fetched because its predecessor
    /// was rejected is not itself replaced for a rejection right away.
    pub(super) reason: FetchReason,
    pub(super) installed_at: Instant,
    /// The task that moves its phase: stopped when the token is dropped (replaced early,
    /// by a rejection or a forced refresh), rather than left sleeping until its renewal
    /// time, one task per token replaced.
    timers: OnceLock<AbortHandle>,
    /// Its form in the layer's token store, if the layer has one: a read that finds it
    /// there has found nothing new, and a rejection deletes only it.
    pub(super) value: Option<Bytes>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Some(timers) = self.timers.get() {
            timers.abort();
        }
    }
}

impl Installed {
    /// Turns a token fetched at `requested_at` into one ready to install as `generation`.
    ///
    /// # Errors
    ///
    /// A token that is not a clean header value, or that expired before it arrived.
    pub(super) fn new(
        config: &Config,
        scope: Option<&Scope>,
        token: Token,
        requested_at: Instant,
        reason: FetchReason,
        generation: u64,
    ) -> Result<Self, Error> {
        let header = bearer_header(token.access_token.secret(), token.token_type)?;
        let lifetime = token.lifetime(config.default_lifetime, config.max_lifetime);
        // Count from when the request was sent: the server's clock started no earlier.
        let lifetime = lifetime.min(CEILING);
        let end = requested_at + lifetime;
        let expires_at = end - config.expiry_margin.min(lifetime / 10);
        let now = Instant::now();
        if expires_at <= now {
            // Never handed out: an expired token is not sent. Retried like a fetch that
            // timed out, as a quicker answer would do.
            return Err(Error::new(ErrorKind::Timeout).with_detail(&format!(
                "the token expired before it arrived: it lasts {lifetime:?} from the \
                     request (less the expiry margin), the answer took {:?}",
                now - requested_at
            )));
        }
        let renew_at = super::renewal::renew_at(
            config,
            requested_at,
            lifetime,
            expires_at,
            token.refresh_in,
            now,
        );
        let scope_ok = match (scope, &token.scope) {
            (Some(requested), Some(granted)) => granted.contains(requested),
            _ => true,
        };
        if !scope_ok {
            tracing::warn!(
                requested = scope.map(Scope::as_str).unwrap_or(""),
                granted = token.scope.as_ref().map(Scope::as_str).unwrap_or(""),
                "token endpoint granted less scope than requested"
            );
        }
        Ok(Self {
            header,
            generation,
            held_off: AtomicBool::new(false),
            scope_ok,
            granted: token.scope,
            expires_at,
            renew_at,
            reason,
            installed_at: now,
            timers: OnceLock::new(),
            value: None,
        })
    }

    #[inline]
    pub(super) fn credential(&self) -> Credential {
        Credential {
            header: self.header.clone(),
            generation: self.generation,
        }
    }

    /// Whether this is the first rejection held off for it.
    pub(super) fn first_hold_off(&self) -> bool {
        !self.held_off.swap(true, Ordering::Relaxed)
    }

    /// Starts the task that moves this token's phase in its slot's word. Called once the
    /// token is current: a timer that fired before would find another generation there.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub(super) fn start_timers<S>(&self, slot: Weak<S>, labels: Labels)
    where
        S: AsRef<Word> + Send + Sync + 'static,
    {
        let guard = ExpireOnDrop {
            slot,
            generation: self.generation,
            labels,
        };
        let task = tokio::spawn(run_timers(guard, self.renew_at, self.expires_at));
        let _ = self.timers.set(task.abort_handle());
    }
}

/// Builds `Bearer <token>`, refusing tokens that are not a clean header value.
fn bearer_header(token: &str, token_type: TokenType) -> Result<HeaderValue, Error> {
    if token.is_empty() {
        return Err(Error::malformed("access token is empty"));
    }
    if !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Error::malformed(
            "access token contains characters not allowed in a header",
        ));
    }
    let scheme = match token_type {
        TokenType::DPoP => "DPoP",
        _ => "Bearer",
    };
    let mut value = HeaderValue::try_from(format!("{scheme} {token}"))
        .map_err(|_| Error::malformed("access token is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Moves the token's phase on the tokio clock; ends early once the token is dropped.
///
/// The token expires when this task ends, however it ends. If it is dropped early, its
/// runtime shut down (a layer kept beyond the runtime it was first used on): nothing
/// would move the phase any more, so the token counts as expired now, and the next
/// request fetches a new one, with timers on its own runtime, instead of sending this
/// one past its expiry. The guard is an argument, not made in the body: a task dropped
/// before its first poll (its runtime shut down at once) expires the token too.
async fn run_timers<S>(token: ExpireOnDrop<S>, renew_at: Instant, expires_at: Instant)
where
    S: AsRef<Word>,
{
    tokio::time::sleep_until(renew_at).await;
    // Not kept while sleeping: a timer does not keep its slot alive.
    let Some(slot) = token.slot.upgrade() else {
        return;
    };
    AsRef::<Word>::as_ref(&*slot).advance(token.generation, Phase::RenewDue);
    drop(slot);
    token
        .labels
        .time_to_expiry(expires_at.saturating_duration_since(Instant::now()));
    tokio::time::sleep_until(expires_at).await;
}

/// Expires a token when dropped (see [`run_timers`]); a token already replaced is left
/// alone, as the word holds another generation.
struct ExpireOnDrop<S: AsRef<Word>> {
    slot: Weak<S>,
    generation: u64,
    labels: Labels,
}

impl<S: AsRef<Word>> Drop for ExpireOnDrop<S> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.upgrade() {
            // Only if it was current: a replaced token's gauge is its successor's now.
            if AsRef::<Word>::as_ref(&*slot).advance(self.generation, Phase::Expired) {
                self.labels.time_to_expiry(Duration::ZERO);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_refuses_bad_tokens_and_is_sensitive() {
        assert!(bearer_header("abc.DEF-123_~+/=", TokenType::Bearer)
            .unwrap()
            .is_sensitive());
        let dpop = bearer_header("abc.DEF", TokenType::DPoP).unwrap();
        assert_eq!(dpop, "DPoP abc.DEF");
        assert!(dpop.is_sensitive());
        for bad in [
            "",
            "a b",
            "a\r\nX-Evil: 1",
            "tab\there",
            "caf\u{e9}",
            "nul\0",
        ] {
            let err = bearer_header(bad, TokenType::Bearer).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MalformedResponse);
            assert!(!err.to_string().contains(bad) || bad.is_empty());
        }
    }

    #[test]
    fn an_installed_generation_peeks_fresh_and_usable() {
        let word = Word::empty();
        assert_eq!(word.peek().generation, 0);
        assert!(
            !word.peek().usable(),
            "nothing to use before the first token"
        );
        word.install(7, false);
        let peek = word.peek();
        assert_eq!(peek.generation, 7);
        assert_eq!(peek.phase(), Phase::Fresh);
        assert!(peek.usable());
        assert!(!peek.renewal_due());
    }

    #[test]
    fn a_token_refused_for_its_scope_is_live_but_not_usable() {
        let word = Word::empty();
        word.install(3, true);
        assert_eq!(word.peek().phase(), Phase::Fresh);
        assert!(!word.peek().usable());
        assert!(word.advance(3, Phase::RenewDue));
        assert!(word.peek().renewal_due(), "its renewal still runs");
    }

    #[test]
    fn a_rejection_is_not_undone_by_a_late_timer() {
        let word = Word::empty();
        word.install(7, false);
        assert!(word.advance(7, Phase::Rejected));
        assert!(!word.advance(7, Phase::RenewDue));
        assert!(!word.advance(7, Phase::Expired));
        assert_eq!(word.peek().phase(), Phase::Rejected);
        assert!(!word.peek().usable());
    }

    #[test]
    fn a_stale_generation_moves_nothing() {
        let word = Word::empty();
        word.install(7, false);
        word.install(8, false);
        assert!(!word.advance(7, Phase::Rejected));
        assert!(!word.advance(7, Phase::Expired));
        assert_eq!(word.peek().generation, 8);
        assert_eq!(word.peek().phase(), Phase::Fresh);
        assert!(word.peek().usable());
    }

    #[test]
    fn a_renewal_is_claimed_once_per_token_until_given_back() {
        let word = Word::empty();
        word.install(5, false);
        assert!(!word.claim_renewal(5), "not due yet");
        assert!(word.advance(5, Phase::RenewDue));
        assert!(word.claim_renewal(5));
        assert!(!word.claim_renewal(5));
        assert!(!word.peek().renewal_due());
        assert!(word.peek().usable(), "still sent while it renews");
        word.release_renewal(5);
        assert!(word.claim_renewal(5));
        word.install(6, false);
        assert!(!word.claim_renewal(5), "another token is current");
        assert!(word.advance(6, Phase::RenewDue));
        assert!(
            word.peek().renewal_due(),
            "a new token's renewal is unclaimed"
        );
    }
}
