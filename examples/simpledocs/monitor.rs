//! Token fetches as they happen, found by sampling the layer's token state.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use tokio::time::Instant;
use tower_oauth::{ErrorKind, TokenHandle, TokenStatus};

use crate::report::{kind_code, stamp};

/// Reports token fetches as they happen, by sampling the layer's token state: a fetch
/// shows as a rising counter, and the status seen before it tells why it happened.
pub(crate) struct Monitor {
    handle: TokenHandle,
    started: Instant,
    revokes: Arc<AtomicUsize>,
    /// By tenant and scope set (the handle's order is not promised).
    slots: HashMap<String, SlotTrack>,
}

#[derive(Default)]
struct SlotTrack {
    fetches: u64,
    store_hits: u64,
    saw_due: bool,
    saw_expired: bool,
    saw_rejected: bool,
    revokes: usize,
    last_error: Option<ErrorKind>,
}

impl Monitor {
    pub(crate) fn new(handle: TokenHandle, started: Instant, revokes: Arc<AtomicUsize>) -> Self {
        Self {
            handle,
            started,
            revokes,
            slots: HashMap::new(),
        }
    }

    pub(crate) fn poll(&mut self) {
        let revokes = self.revokes.load(Ordering::SeqCst);
        for state in self.handle.state() {
            let slot = format!("{:?} {:?}", state.tenant, state.scope);
            let track = self.slots.entry(slot).or_default();
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
            let mut scope = state
                .scope
                .as_ref()
                .map_or("server default".to_owned(), |s| format!("\"{s}\""));
            if let Some(tenant) = &state.tenant {
                scope = format!("{scope}, tenant {tenant}");
            }
            while track.store_hits < state.store_hits {
                track.store_hits += 1;
                eprintln!(
                    "{} ** token read from the store (scope {scope}): another process fetched it",
                    stamp(self.started)
                );
                track.saw_due = false;
                track.saw_expired = false;
                track.saw_rejected = false;
            }
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
