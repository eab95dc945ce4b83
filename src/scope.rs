//! Scope policies: which scope set each request's token must have, and the token slot of
//! each scope set.

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use dashmap::DashMap;
use http::{Extensions, HeaderMap, Method, Request, Uri, Version};
use tokio::time::Instant;

use crate::{cache::Slot, config::Core, sync::lock, token::Scope};

type ScopeFn = dyn Fn(&RequestHead<'_>) -> Option<Scope> + Send + Sync;

/// The head of a request, as a [`ScopePolicy::from_fn`] closure sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The HTTP version.
    pub version: Version,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions.
    pub extensions: &'a Extensions,
}

/// Chooses the scope for each request; the layer keeps one token per distinct scope set.
///
/// Scopes are sets: `"read write"` and `"write read"` are one scope set, and an empty one
/// is the same as none (no `scope` parameter is sent).
///
/// ```
/// use tower_oauth::ScopePolicy;
///
/// // GET, HEAD and OPTIONS carry a `read` token, everything else a `write` token.
/// let policy = ScopePolicy::by_method("read", "write");
/// // Or anything computed from the request head.
/// let policy = ScopePolicy::from_fn(|req| {
///     req.uri.path().starts_with("/api/v1/admin").then(|| "admin".into())
/// });
/// # let _ = policy;
/// ```
#[derive(Clone)]
pub struct ScopePolicy(Kind);

#[derive(Clone)]
enum Kind {
    Fixed(Option<Scope>),
    ByMethod { read: Scope, write: Scope },
    Custom(Arc<ScopeFn>),
}

impl ScopePolicy {
    /// One scope for every request (`None`, or an empty scope: omit the scope parameter).
    /// The default, with the credentials' configured scope.
    pub fn fixed(scope: Option<Scope>) -> Self {
        Self(Kind::Fixed(scope))
    }

    /// `read` for `GET`, `HEAD` and `OPTIONS`, `write` for every other method. When the
    /// two are the same scope set, the layer keeps one token for both.
    pub fn by_method(read: impl Into<Scope>, write: impl Into<Scope>) -> Self {
        Self(Kind::ByMethod {
            read: read.into(),
            write: write.into(),
        })
    }

    /// The scope computed by `f` from the request head.
    ///
    /// The layer keeps a token for each scope set `f` returns, found by a hash lookup.
    /// There is no fixed limit on the number of sets. A set unused for the
    /// [idle timeout](crate::Builder::scope_idle_timeout) is forgotten, with its
    /// token; its next request fetches a new one. Sets are only known once a request has
    /// needed them, so [`TokenHandle::warm_up`](crate::TokenHandle::warm_up) fetches
    /// nothing before the first request.
    pub fn from_fn<F>(f: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> Option<Scope> + Send + Sync + 'static,
    {
        Self(Kind::Custom(Arc::new(f)))
    }

    pub(crate) fn into_slots(self, core: Arc<Core>, idle: Duration) -> Slots {
        match self.0 {
            Kind::Fixed(scope) => Slots::One(Slot::new(core, non_empty(scope))),
            Kind::ByMethod { read, write } if read == write => {
                Slots::One(Slot::new(core, non_empty(Some(read))))
            }
            Kind::ByMethod { read, write } => Slots::ByMethod([
                Slot::new(core.clone(), non_empty(Some(read))),
                Slot::new(core, non_empty(Some(write))),
            ]),
            Kind::Custom(f) => Slots::Dynamic(Box::new(Dynamic {
                f,
                known: DashMap::new(),
                core,
                epochs: Epochs::new(idle),
            })),
        }
    }
}

impl fmt::Debug for ScopePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Fixed(scope) => f.debug_tuple("Fixed").field(scope).finish(),
            Kind::ByMethod { read, write } => f
                .debug_struct("ByMethod")
                .field("read", read)
                .field("write", write)
                .finish(),
            Kind::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// An empty scope set asks for no scope: the same as none.
fn non_empty(scope: Option<Scope>) -> Option<Scope> {
    scope.filter(|s| !s.is_empty())
}

/// The token slots of a layer, one per scope set.
pub(crate) enum Slots {
    One(Arc<Slot>),
    /// `read` at index 0, `write` at index 1 (see [`by_method_index`]).
    ByMethod([Arc<Slot>; 2]),
    /// Scope sets computed per request.
    Dynamic(Box<Dynamic>),
}

/// The scope sets of a [`ScopePolicy::from_fn`] layer: a concurrent hash map, read under
/// a shard's read lock, with idle sets swept out when a new set is added.
pub(crate) struct Dynamic {
    f: Arc<ScopeFn>,
    known: DashMap<Option<Scope>, Arc<Slot>>,
    core: Arc<Core>,
    epochs: Epochs,
}

/// The slot index of a method under [`ScopePolicy::by_method`]: 0 for `read` (`GET`,
/// `HEAD`, `OPTIONS`), 1 for `write`.
#[inline]
pub(crate) fn by_method_index(method: &Method) -> usize {
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => 0,
        _ => 1,
    }
}

impl Slots {
    /// Every slot that exists now.
    pub(crate) fn all(&self) -> Vec<Arc<Slot>> {
        match self {
            Slots::One(slot) => vec![slot.clone()],
            Slots::ByMethod(slots) => slots.to_vec(),
            Slots::Dynamic(dynamic) => dynamic.known.iter().map(|e| e.value().clone()).collect(),
        }
    }

    /// The fixed slot at `index` (`One` or `ByMethod`).
    #[inline]
    pub(crate) fn fixed(&self, index: usize) -> Option<&Arc<Slot>> {
        match self {
            Slots::One(slot) => Some(slot),
            Slots::ByMethod(slots) => slots.get(index),
            Slots::Dynamic(_) => None,
        }
    }
}

impl Dynamic {
    /// The scope set `f` gives a request.
    #[inline]
    pub(crate) fn scope_of<B>(&self, req: &Request<B>) -> Option<Scope> {
        non_empty((self.f)(&RequestHead {
            method: req.method(),
            uri: req.uri(),
            version: req.version(),
            headers: req.headers(),
            extensions: req.extensions(),
        }))
    }

    /// Runs `hit` on the slot of `scope` if it exists, marking it used. No allocation; a
    /// shard's read lock is held while `hit` runs.
    #[inline]
    pub(crate) fn with<T>(
        &self,
        scope: &Option<Scope>,
        hit: impl FnOnce(&Arc<Slot>) -> T,
    ) -> Option<T> {
        let slot = self.known.get(scope)?;
        self.epochs.mark(&slot);
        Some(hit(&slot))
    }

    /// The slot of `scope`, made if it does not exist yet (cold: a request that needs a
    /// token). Adding a set first sweeps out idle ones, at most once per epoch.
    pub(crate) fn slot(&self, scope: &Option<Scope>) -> Arc<Slot> {
        if let Some(slot) = self.with(scope, Arc::clone) {
            return slot;
        }
        if let Some(epoch) = self.epochs.advance() {
            // A slot last used before epoch `epoch - 4` has been idle for a whole timeout
            // at least (see `Epochs`).
            let before = epoch.saturating_sub(Epochs::IDLE_EPOCHS);
            self.known
                .retain(|_, slot| slot.used_epoch.load(Ordering::Relaxed) >= before);
        }
        let slot = self
            .known
            .entry(scope.clone())
            .or_insert_with(|| Slot::new(self.core.clone(), scope.clone()))
            .clone();
        self.epochs.mark(&slot);
        slot
    }
}

/// Coarse time for idle sweeps, so that the request path reads no clock: a counter that
/// moves on by one every quarter of the idle timeout, read when a new scope set is added.
/// A request stores the current epoch in its slot (a write only when it changed).
///
/// A slot last used in epoch `k` is dropped once the epoch is `k + 5` or later: at least
/// the whole timeout after its last use, at most a quarter more (or later, when no new
/// scope set comes to trigger a sweep).
struct Epochs {
    current: AtomicU64,
    /// When the current epoch started, and how long one lasts.
    started: Mutex<Option<Instant>>,
    length: Duration,
}

impl Epochs {
    const IDLE_EPOCHS: u64 = 4;

    fn new(idle: Duration) -> Self {
        Self {
            current: AtomicU64::new(0),
            started: Mutex::new(None),
            length: (idle / Self::IDLE_EPOCHS as u32).max(Duration::from_millis(1)),
        }
    }

    #[inline]
    fn mark(&self, slot: &Slot) {
        let now = self.current.load(Ordering::Relaxed);
        if slot.used_epoch.load(Ordering::Relaxed) != now {
            slot.used_epoch.store(now, Ordering::Relaxed);
        }
    }

    /// Moves the epoch on by the whole epochs elapsed; the new epoch, if it moved.
    fn advance(&self) -> Option<u64> {
        let now = Instant::now();
        let mut started = lock(&self.started);
        let Some(start) = *started else {
            *started = Some(now);
            return None;
        };
        let elapsed = now.saturating_duration_since(start);
        let epochs = (elapsed.as_nanos() / self.length.as_nanos()) as u64;
        if epochs == 0 {
            return None;
        }
        *started = Some(start + self.length * epochs.min(u32::MAX as u64) as u32);
        let epoch = self.current.fetch_add(epochs, Ordering::Relaxed) + epochs;
        Some(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_scopes_of_a_policy() {
        for (policy, shown) in [
            (ScopePolicy::fixed(None), "Fixed(None)"),
            (
                ScopePolicy::fixed(Some("read".into())),
                r#"Fixed(Some(Scope("read")))"#,
            ),
            (
                ScopePolicy::by_method("read", "write"),
                r#"ByMethod { read: Scope("read"), write: Scope("write") }"#,
            ),
            (ScopePolicy::from_fn(|_| None), "Custom(..)"),
        ] {
            assert_eq!(format!("{policy:?}"), shown);
        }
    }
}
