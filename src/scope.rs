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
use tokio::{runtime::Handle, task::JoinHandle, time::Instant};

pub(crate) use crate::token::SlotKey;
use crate::{cache::Slot, config::Core, sync::lock, tenant::Tenant, token::Scope};

type ScopeFn = dyn Fn(&RequestHead<'_>) -> Option<Scope> + Send + Sync;

/// Picks a request's tenant from its head.
pub(crate) type PickTenant = dyn Fn(&RequestHead<'_>) -> Option<Tenant> + Send + Sync;

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
    /// [idle timeout](crate::OAuthLayerBuilder::scope_idle_timeout) is forgotten, with its
    /// token; its next request fetches a new one. Sets are only known once a request has
    /// needed them, so [`TokenHandle::warm_up`](crate::TokenHandle::warm_up) fetches
    /// nothing before the first request.
    pub fn from_fn<F>(f: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> Option<Scope> + Send + Sync + 'static,
    {
        Self(Kind::Custom(Arc::new(f)))
    }

    /// The slots of a layer with this policy; with `tenant`, slots are made per tenant
    /// and scope set as requests come.
    pub(crate) fn into_slots(
        self,
        core: Arc<Core>,
        idle: Duration,
        tenant: Option<Arc<PickTenant>>,
    ) -> Slots {
        let dynamic = |scope, tenant| {
            Slots::Dynamic(Arc::new(Dynamic {
                scope,
                tenant,
                known: DashMap::new(),
                core: core.clone(),
                epoch: AtomicU64::new(0),
                tick: (idle / IDLE_EPOCHS as u32).max(Duration::from_millis(1)),
                sweeper: Mutex::new(None),
            }))
        };
        if tenant.is_some() {
            return dynamic(self.0, tenant);
        }
        match self.0 {
            Kind::Fixed(scope) => Slots::One(Slot::new(core, SlotKey::scope(scope))),
            Kind::ByMethod { read, write } if read == write => {
                Slots::One(Slot::new(core, SlotKey::scope(Some(read))))
            }
            Kind::ByMethod { read, write } => Slots::ByMethod([
                Slot::new(core.clone(), SlotKey::scope(Some(read))),
                Slot::new(core, SlotKey::scope(Some(write))),
            ]),
            custom @ Kind::Custom(_) => dynamic(custom, None),
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
    Dynamic(Arc<Dynamic>),
}

/// The scope sets of a [`ScopePolicy::from_fn`] layer: a concurrent hash map, read under
/// a shard's read lock, with idle sets swept out by a background task.
///
/// The request path reads no clock. Time is counted in epochs of an eighth of the idle
/// timeout, moved on by the sweeper; a request stores the current epoch in its slot (a
/// write only when it changed). A slot last used in epoch `k` is dropped at the start of
/// epoch `k + 9`: more than the idle timeout after its last use, at most an eighth more.
pub(crate) struct Dynamic {
    /// The scope policy: any kind, on a layer for many tenants.
    scope: Kind,
    tenant: Option<Arc<PickTenant>>,
    known: DashMap<SlotKey, Arc<Slot>>,
    core: Arc<Core>,
    epoch: AtomicU64,
    tick: Duration,
    /// The sweeper task, started with the first scope set on the runtime of that
    /// request, and again if that runtime has gone.
    sweeper: Mutex<Option<JoinHandle<()>>>,
}

/// Epochs in an idle timeout.
const IDLE_EPOCHS: u64 = 8;

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
    /// The tenant and scope set of a request.
    #[inline]
    pub(crate) fn key_of<B>(&self, req: &Request<B>) -> SlotKey {
        self.key_of_head(&RequestHead {
            method: req.method(),
            uri: req.uri(),
            version: req.version(),
            headers: req.headers(),
            extensions: req.extensions(),
        })
    }

    /// The tenant and scope set of a request head.
    #[inline]
    pub(crate) fn key_of_head(&self, head: &RequestHead<'_>) -> SlotKey {
        let scope = match &self.scope {
            Kind::Fixed(scope) => scope.clone(),
            Kind::ByMethod { read, write } => match by_method_index(head.method) {
                0 => Some(read.clone()),
                _ => Some(write.clone()),
            },
            Kind::Custom(f) => f(head),
        };
        SlotKey {
            tenant: self.tenant.as_ref().and_then(|pick| pick(head)),
            scope: non_empty(scope),
        }
    }

    /// Runs `hit` on the slot of `key` if it exists, marking it used. No allocation; a
    /// shard's read lock is held while `hit` runs.
    #[inline]
    pub(crate) fn with<T>(&self, key: &SlotKey, hit: impl FnOnce(&Arc<Slot>) -> T) -> Option<T> {
        let slot = self.known.get(key)?;
        let now = self.epoch.load(Ordering::Relaxed);
        if slot.used_epoch.load(Ordering::Relaxed) != now {
            slot.used_epoch.store(now, Ordering::Relaxed);
        }
        Some(hit(&slot))
    }

    /// The slot of `key`, made if it does not exist yet (cold: a request that needs a
    /// token).
    pub(crate) fn slot(self: &Arc<Self>, key: &SlotKey) -> Arc<Slot> {
        if let Some(slot) = self.with(key, Arc::clone) {
            return slot;
        }
        self.keep_sweeping();
        let slot = self
            .known
            .entry(key.clone())
            .or_insert_with(|| Slot::new(self.core.clone(), key.clone()))
            .clone();
        slot.used_epoch
            .store(self.epoch.load(Ordering::Relaxed), Ordering::Relaxed);
        slot
    }

    /// Starts the sweeper if it is not running (first set, or its runtime is gone). It
    /// holds the map weakly: it ends when the layer is dropped.
    fn keep_sweeping(self: &Arc<Self>) {
        let mut sweeper = lock(&self.sweeper);
        if sweeper.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let Ok(runtime) = Handle::try_current() else {
            // No runtime here: a later set, made on one, starts it.
            return;
        };
        let map = Arc::downgrade(self);
        let tick = self.tick;
        *sweeper = Some(runtime.spawn(async move {
            let mut ticks = tokio::time::interval_at(Instant::now() + tick, tick);
            loop {
                ticks.tick().await;
                let Some(map) = map.upgrade() else { return };
                map.sweep();
            }
        }));
    }

    /// Moves the epoch on and drops the slots idle for a whole timeout.
    fn sweep(&self) {
        let epoch = self.epoch.fetch_add(1, Ordering::Relaxed) + 1;
        self.known
            .retain(|_, slot| slot.used_epoch.load(Ordering::Relaxed) + IDLE_EPOCHS >= epoch);
    }
}

impl Drop for Dynamic {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.sweeper).take() {
            task.abort();
        }
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
