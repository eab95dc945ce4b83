//! How a layer uses its store: a token shared by a fleet, fetched by one process at a time.
//!
//! When a slot needs a token, [`Fleet::obtain`] runs, off the request path:
//!
//! 1. After a rejection, the rejected token is deleted from the store if it is still the
//!    one there (compare and delete).
//! 2. Unless the fetch was forced, the store is read. A token there that is not the one
//!    the slot already has, that opens and checks out and has time left, is used.
//! 3. Otherwise the process takes the key's lease, fetches, writes the token with a time
//!    to live of its lifetime, and releases the lease.
//! 4. A process that finds the lease taken reads the store again, at growing intervals,
//!    until the token appears, the lease frees up (its holder died or failed: it takes
//!    the lease itself), or the store wait runs out (it fetches on its own).
//!
//! Every store call is bounded by the store timeout. A call that fails or times out is
//! logged as a warning, the process fetches on its own, and the store is left alone
//! for [`REST`]: a store that is down costs one timeout, not one per fetch.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use tokio::time::Instant;

use super::{
    codec::{self, StoreCipher},
    TokenStore,
};
use crate::{
    error::{BoxError, Error},
    metrics::{self, StoreEvent},
    redact::sanitize,
    sync::lock,
    token::{FetchReason, Token},
};

/// How long a store is left alone after a call to it failed.
pub(crate) const REST: Duration = Duration::from_secs(5);
/// The first pause between reads while another process holds the lease; it doubles up to
/// [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(20);
const MAX_POLL: Duration = Duration::from_millis(250);

/// A layer's store and how it uses it.
pub(crate) struct Fleet {
    store: Arc<dyn TokenStore>,
    cipher: Option<StoreCipher>,
    /// The bound on each store call.
    pub(crate) timeout: Duration,
    /// How long to wait for another process's token before fetching on its own.
    pub(crate) wait: Duration,
    /// Set when a store call fails: until then, the store is not asked.
    resting_until: Mutex<Option<Instant>>,
    /// The layer's name, for its metrics.
    layer: Option<Arc<str>>,
}

/// A token and where it came from.
pub(crate) struct Obtained {
    pub(crate) token: Token,
    /// When it was issued, by the wall clock of whoever fetched it.
    pub(crate) issued_at: SystemTime,
    /// Its stored form, to compare with later (see [`Fleet::obtain`]'s `held`).
    pub(crate) value: Bytes,
    /// Whether it was read from the store rather than fetched here.
    pub(crate) from_store: bool,
}

/// What one read of the store found.
enum Read {
    Hit(Obtained),
    Miss,
    Down,
}

/// How a token's lifetime is reckoned, from the layer's settings.
#[derive(Clone, Copy)]
pub(crate) struct Lifetimes {
    pub(crate) default: Duration,
    pub(crate) max: Duration,
    /// The expiry margin: a stored token with less than twice the margin it gets (this,
    /// at most a tenth of its lifetime, as for any token) left is not used.
    pub(crate) expiry_margin: Duration,
    /// How long a fetch may take: the lease lasts this and the store timeout.
    pub(crate) fetch_timeout: Duration,
}

impl Fleet {
    pub(crate) fn new(
        store: Arc<dyn TokenStore>,
        cipher: Option<StoreCipher>,
        timeout: Duration,
        wait: Duration,
        layer: Option<Arc<str>>,
    ) -> Self {
        Self {
            store,
            cipher,
            timeout,
            wait,
            resting_until: Mutex::new(None),
            layer,
        }
    }

    /// A token for `key`: from the store if another process fetched one, else from
    /// `fetch`, written to the store for the others. `held` is the stored form of the
    /// token the slot has now (being renewed or rejected), which is not a hit.
    pub(crate) async fn obtain<F, Fut>(
        &self,
        key: &str,
        held: Option<&Bytes>,
        reason: FetchReason,
        life: Lifetimes,
        fetch: F,
    ) -> Result<Obtained, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, Error>>,
    {
        if self.resting() {
            return self.fetched(key, fetch().await?, life, false).await;
        }
        if let (FetchReason::Rejected, Some(held)) = (reason, held) {
            if self
                .call(self.store.invalidate(key, held.clone()))
                .await
                .is_none()
            {
                return self.fetched(key, fetch().await?, life, false).await;
            }
        }
        if reason != FetchReason::Forced {
            match self.read(key, held, life).await {
                Read::Hit(obtained) => return Ok(obtained),
                Read::Miss => {}
                Read::Down => return self.fetched(key, fetch().await?, life, false).await,
            }
        }
        let owner = owner();
        let deadline = Instant::now() + self.wait;
        let mut pause = FIRST_POLL;
        let mut waited = false;
        loop {
            let lease_ttl = life.fetch_timeout.saturating_add(self.timeout);
            match self.call(self.store.lease(key, &owner, lease_ttl)).await {
                None => return self.fetched(key, fetch().await?, life, false).await,
                Some(true) => {
                    tracing::debug!("store lease taken; fetching for the fleet");
                    let fetched = fetch().await;
                    let result = match fetched {
                        Ok(token) => self.fetched(key, token, life, true).await,
                        Err(err) => Err(err),
                    };
                    // Released whether the fetch worked or not: a failure frees the
                    // key for the next process at once rather than after the lease.
                    self.call(self.store.release(key, &owner)).await;
                    return result;
                }
                Some(false) if !waited => {
                    waited = true;
                    metrics::store(self.layer.as_deref(), StoreEvent::Wait);
                }
                Some(false) => {}
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    wait_ms = self.wait.as_millis() as u64,
                    "another process held the store lease past the store wait; fetching \
                     without it"
                );
                return self.fetched(key, fetch().await?, life, true).await;
            }
            tokio::time::sleep(pause.min(deadline - Instant::now())).await;
            pause = (pause * 2).min(MAX_POLL);
            match self.read(key, held, life).await {
                Read::Hit(obtained) => return Ok(obtained),
                Read::Miss => {}
                Read::Down => return self.fetched(key, fetch().await?, life, false).await,
            }
        }
    }

    /// Reads `key`: a usable token that is not `held`, or nothing.
    async fn read(&self, key: &str, held: Option<&Bytes>, life: Lifetimes) -> Read {
        let Some(found) = self.call(self.store.get(key)).await else {
            return Read::Down;
        };
        let miss = || {
            metrics::store(self.layer.as_deref(), StoreEvent::Miss);
            Read::Miss
        };
        let Some(value) = found.filter(|v| Some(v) != held) else {
            return miss();
        };
        let decoded = match codec::decode(&value, self.cipher.as_ref(), key) {
            Ok(decoded) => decoded,
            Err(why) => {
                tracing::warn!(why, "token store holds a value this layer cannot use");
                return miss();
            }
        };
        let left = decoded
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let lifetime = decoded
            .expires_at
            .duration_since(decoded.issued_at)
            .unwrap_or_default();
        if left < life.expiry_margin.min(lifetime / 10).saturating_mul(2) {
            return miss();
        }
        metrics::store(self.layer.as_deref(), StoreEvent::Hit);
        tracing::debug!(
            left_ms = left.as_millis() as u64,
            "token read from the store"
        );
        Read::Hit(Obtained {
            token: decoded.token,
            issued_at: decoded.issued_at,
            value,
            from_store: true,
        })
    }

    /// A token fetched here, written to the store when `share` (and the store is up).
    async fn fetched(
        &self,
        key: &str,
        token: Token,
        life: Lifetimes,
        share: bool,
    ) -> Result<Obtained, Error> {
        let lifetime = token.lifetime(life.default, life.max);
        // Counted from now, a little after the server's clock started: a reader that
        // trusts it stops using the token no later than the server does.
        let issued_at = SystemTime::now();
        let value = codec::encode(
            &token,
            issued_at,
            issued_at + lifetime,
            self.cipher.as_ref(),
            key,
        );
        if share && !self.resting() {
            self.call(self.store.put(key, value.clone(), lifetime))
                .await;
        }
        Ok(Obtained {
            token,
            issued_at,
            value,
            from_store: false,
        })
    }

    /// Runs a store call within the store timeout; `None` when it failed, after which the
    /// store rests.
    async fn call<T>(&self, call: impl Future<Output = Result<T, BoxError>>) -> Option<T> {
        let why = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(err)) => sanitize(&err.to_string()),
            Err(_) => format!("no answer within {:?}", self.timeout),
        };
        tracing::warn!(
            error = %why,
            rest_ms = REST.as_millis() as u64,
            "token store failed; fetching without it"
        );
        metrics::store(self.layer.as_deref(), StoreEvent::Error);
        *lock(&self.resting_until) = Some(Instant::now() + REST);
        None
    }

    fn resting(&self) -> bool {
        let mut until = lock(&self.resting_until);
        match *until {
            Some(t) if t > Instant::now() => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }
}

/// A lease owner: random, so that no two holders in a fleet share one.
fn owner() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}
