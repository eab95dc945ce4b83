//! Scope policies: which scope set each request's token must have.

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use arc_swap::ArcSwap;
use http::{Extensions, HeaderMap, Method, Request, Uri, Version};

use crate::{
    cache::{Settings, Slot},
    error::{Error, ErrorKind},
    token::Scope,
};

/// The most scope sets a [`ScopePolicy::from_fn`] layer keeps a token for.
pub const MAX_SCOPE_SETS: usize = 64;

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
    /// Meant for a handful of scope sets: the layer keeps a token for each set `f` has
    /// returned, for its whole life, and finds a request's set among them by a linear
    /// search. At most [`MAX_SCOPE_SETS`] sets: a request that needs one more fails with
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) (no token is requested for it;
    /// the sets already known keep working), so that scopes computed from what requests
    /// carry cannot grow the layer's tokens, and its token requests, without bound.
    /// Sets are only known once a request has needed them, so
    /// [`TokenHandle::warm_up`](crate::TokenHandle::warm_up) fetches nothing before the
    /// first request; for a start-up check, use a fixed or by-method policy.
    pub fn from_fn<F>(f: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> Option<Scope> + Send + Sync + 'static,
    {
        Self(Kind::Custom(Arc::new(f)))
    }

    pub(crate) fn into_slots(self, core: Arc<Settings>) -> Slots {
        match self.0 {
            Kind::Fixed(scope) => Slots::One(Slot::new(core, non_empty(scope))),
            Kind::ByMethod { read, write } if read == write => {
                Slots::One(Slot::new(core, non_empty(Some(read))))
            }
            Kind::ByMethod { read, write } => Slots::ByMethod {
                read: Slot::new(core.clone(), non_empty(Some(read))),
                write: Slot::new(core, non_empty(Some(write))),
            },
            Kind::Custom(f) => Slots::Dynamic {
                f,
                known: ArcSwap::from_pointee(Vec::new()),
                insert: Mutex::new(()),
                core,
            },
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

/// The slots of a layer, resolved per request.
pub(crate) enum Slots {
    One(Arc<Slot>),
    ByMethod {
        read: Arc<Slot>,
        write: Arc<Slot>,
    },
    Dynamic {
        f: Arc<ScopeFn>,
        /// Copy-on-write list: read without a lock, extended under `insert`.
        known: ArcSwap<Vec<Arc<Slot>>>,
        insert: Mutex<()>,
        core: Arc<Settings>,
    },
}

/// The slot index of a method under [`ScopePolicy::by_method`]: 0 for `read` (`GET`,
/// `HEAD`, `OPTIONS`), 1 for `write`.
#[inline]
pub(crate) fn by_method_index(method: &Method) -> u32 {
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => 0,
        _ => 1,
    }
}

impl Slots {
    /// The slot for a request, and its index (stable for the life of the layer; see
    /// [`Slots::get`]). Fails only for a request that needs a scope set past
    /// [`MAX_SCOPE_SETS`].
    pub(crate) fn resolve<B>(&self, req: &Request<B>) -> Result<(u32, Arc<Slot>), Error> {
        match self {
            Slots::One(slot) => Ok((0, slot.clone())),
            Slots::ByMethod { read, write } => {
                let index = by_method_index(req.method());
                Ok((index, [read, write][index as usize].clone()))
            }
            Slots::Dynamic {
                f,
                known,
                insert,
                core,
            } => {
                let scope = non_empty(f(&RequestHead {
                    method: req.method(),
                    uri: req.uri(),
                    version: req.version(),
                    headers: req.headers(),
                    extensions: req.extensions(),
                }));
                let find = |slots: &[Arc<Slot>]| {
                    let i = slots.iter().position(|s| s.scope() == scope.as_ref())?;
                    Some((i as u32, slots[i].clone()))
                };
                if let Some(found) = find(&known.load()) {
                    return Ok(found);
                }
                let _guard = insert.lock().unwrap_or_else(|e| e.into_inner());
                let current = known.load_full();
                if let Some(found) = find(&current) {
                    return Ok(found);
                }
                if current.len() >= MAX_SCOPE_SETS {
                    return Err(Error::builder(ErrorKind::Config)
                        .detail(&format!(
                            "the scope policy asked for more than {MAX_SCOPE_SETS} distinct \
                             scope sets"
                        ))
                        .build());
                }
                // Slots are only ever appended, so an index keeps naming the same slot.
                let slot = Slot::new(core.clone(), scope);
                let mut next = Vec::with_capacity(current.len() + 1);
                next.extend(current.iter().cloned());
                next.push(slot.clone());
                known.store(Arc::new(next));
                Ok((current.len() as u32, slot))
            }
        }
    }

    /// The slot at `index`, as [`Slots::resolve`] gave it.
    pub(crate) fn get(&self, index: u32) -> Option<Arc<Slot>> {
        match (self, index) {
            (Slots::One(slot), 0) => Some(slot.clone()),
            (Slots::ByMethod { read, .. }, 0) => Some(read.clone()),
            (Slots::ByMethod { write, .. }, 1) => Some(write.clone()),
            (Slots::Dynamic { known, .. }, i) => known.load().get(i as usize).cloned(),
            _ => None,
        }
    }

    /// Every slot that exists now.
    pub(crate) fn all(&self) -> Vec<Arc<Slot>> {
        match self {
            Slots::One(slot) => vec![slot.clone()],
            Slots::ByMethod { read, write } => vec![read.clone(), write.clone()],
            Slots::Dynamic { known, .. } => known.load().iter().cloned().collect(),
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
