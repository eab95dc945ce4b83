//! What a request keeps so it can be sent again after a rejected token, and what it costs.
//!
//! Two things would otherwise make every request pay for the rare replay:
//!
//! - **The way back to the service.** A response future that sees a rejection needs the
//!   layer's token slot and a ready clone of the inner service. Holding an `Arc` to them
//!   would write a shared reference count twice per request, and cloning the inner service
//!   (a hyper-util client is several `Arc`s) even more. Instead each service made by
//!   [`OAuthLayer::layer`](crate::OAuthLayer) registers a [`Home`] under a number; the
//!   future keeps the number and looks the home up on the cold path. If every clone of the
//!   service is gone by then, there is nothing to replay with and the response is returned
//!   as it came.
//! - **The copy of the request head.** Method, URI, headers and extensions are cloned
//!   (reference counts, no bytes copied) into a [`HeadCopy`], a box taken from a
//!   per-thread free list and given back when the future is done, so a cache hit allocates
//!   nothing after the first request on a thread, and the response future stays small to
//!   move.

use std::{
    any::Any,
    cell::RefCell,
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, LazyLock, Mutex, Weak,
    },
};

use http::{
    header::AUTHORIZATION, Extensions, HeaderName, HeaderValue, Method, Request, Uri, Version,
};

use crate::{body::ReplayableBody, layer::Shared};

type Registry = Mutex<HashMap<u64, Weak<dyn Any + Send + Sync>>>;

static HOMES: LazyLock<Registry> = LazyLock::new(Default::default);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A service made by the layer, as its response futures find it again: the layer's shared
/// state and a spare clone of the inner service to replay on.
pub(crate) struct Home<S> {
    pub(crate) id: u64,
    pub(crate) shared: Arc<Shared>,
    spare: Mutex<S>,
}

impl<S> Home<S>
where
    S: Clone + Send + 'static,
{
    pub(crate) fn register(shared: Arc<Shared>, inner: &S) -> Arc<Self> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let home = Arc::new(Self {
            id,
            shared,
            spare: Mutex::new(inner.clone()),
        });
        let weak: Weak<dyn Any + Send + Sync> = Arc::downgrade(&home) as _;
        lock(&HOMES).insert(id, weak);
        home
    }

    /// The home registered as `id`, while any clone of its service is alive.
    pub(crate) fn find(id: u64) -> Option<Arc<Self>> {
        let found = lock(&HOMES).get(&id)?.upgrade()?;
        found.downcast::<Self>().ok()
    }

    /// A clone of the inner service, not yet polled ready.
    pub(crate) fn service(&self) -> S {
        lock(&self.spare).clone()
    }
}

impl<S> Drop for Home<S> {
    fn drop(&mut self) {
        lock(&HOMES).remove(&self.id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A copy of a request kept to send it again.
pub(crate) struct Replay<B: ReplayableBody> {
    pub(crate) head: HeadCopy,
    pub(crate) body: B::Replay,
}

impl<B: ReplayableBody> Replay<B> {
    /// Prepares a request that will carry a token for a possible replay: the body is made
    /// replayable in place, and the head copied. `None` when the body cannot be replayed.
    #[inline]
    pub(crate) fn prepare(req: &mut Request<B>, limit: usize) -> Option<Self> {
        let body = req.body_mut().prepare(limit)?;
        Some(Self {
            head: HeadCopy::of(req),
            body,
        })
    }

    /// The parts to send the request again with, or `None` if the body turned out not
    /// to be replayable.
    pub(crate) fn into_parts(self) -> Option<(HeadCopy, B)> {
        let body = B::replay(self.body)?;
        Some((self.head, body))
    }
}

/// Boxes kept per thread for head copies; more than this many free at once are dropped.
const SPARE_HEADS: usize = 256;
/// A box whose header list grew past this is not kept.
const SPARE_HEADERS: usize = 64;

thread_local! {
    // Boxed on purpose: a box moves between this list and a response future.
    #[allow(clippy::vec_box)]
    static SPARE: RefCell<Vec<Box<Head>>> = const { RefCell::new(Vec::new()) };
}

struct Head {
    method: Method,
    uri: Option<Uri>,
    version: Version,
    headers: Vec<(HeaderName, HeaderValue)>,
    extensions: Extensions,
}

/// A request head without its `Authorization`, in a box reused from this thread's free list.
pub(crate) struct HeadCopy(Option<Box<Head>>);

impl HeadCopy {
    fn of<B>(req: &Request<B>) -> Self {
        let mut head = SPARE
            .try_with(|spare| spare.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_else(|| {
                Box::new(Head {
                    method: Method::GET,
                    uri: None,
                    version: Version::default(),
                    headers: Vec::new(),
                    extensions: Extensions::new(),
                })
            });
        head.method = req.method().clone();
        head.uri = Some(req.uri().clone());
        head.version = req.version();
        let headers = req.headers();
        head.headers.reserve(headers.len());
        for (name, value) in headers {
            if name != AUTHORIZATION {
                head.headers.push((name.clone(), value.clone()));
            }
        }
        head.extensions = req.extensions().clone();
        Self(Some(head))
    }

    /// The request, with `authorization` as its only `Authorization`.
    pub(crate) fn into_request<B>(mut self, body: B, authorization: HeaderValue) -> Request<B> {
        let head = self.0.as_mut().expect("a head copy is used once");
        let mut req = Request::new(body);
        *req.method_mut() = std::mem::replace(&mut head.method, Method::GET);
        *req.uri_mut() = head.uri.take().unwrap_or_default();
        *req.version_mut() = head.version;
        *req.extensions_mut() = std::mem::take(&mut head.extensions);
        let headers = req.headers_mut();
        headers.reserve(head.headers.len() + 1);
        for (name, value) in head.headers.drain(..) {
            headers.append(name, value);
        }
        headers.insert(AUTHORIZATION, authorization);
        req
    }
}

impl Drop for HeadCopy {
    fn drop(&mut self) {
        let Some(mut head) = self.0.take() else {
            return;
        };
        // Let go of the request's parts now, not when the box is next used.
        head.method = Method::GET;
        head.uri = None;
        head.headers.clear();
        head.extensions = Extensions::new();
        if head.headers.capacity() > SPARE_HEADERS {
            return;
        }
        // During thread teardown the free list may be gone: the box is simply freed.
        let _ = SPARE.try_with(|spare| {
            if let Ok(mut spare) = spare.try_borrow_mut() {
                if spare.len() < SPARE_HEADS {
                    spare.push(head);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use http_body_util::Full;

    fn request() -> Request<Full<Bytes>> {
        Request::post("https://api.example/v1/docs?x=1")
            .header("x-one", "1")
            .header("x-many", "a")
            .header("x-many", "b")
            .header(AUTHORIZATION, "Bearer old")
            .extension(7u32)
            .body(Full::new(Bytes::from_static(b"body")))
            .unwrap()
    }

    #[test]
    fn a_head_copy_rebuilds_the_request_with_the_new_authorization() {
        let mut req = request();
        let (head, body) = Replay::prepare(&mut req, 1024)
            .unwrap()
            .into_parts()
            .unwrap();
        let again = head.into_request(body, HeaderValue::from_static("Bearer new"));
        assert_eq!(again.method(), req.method());
        assert_eq!(again.uri(), req.uri());
        assert_eq!(again.version(), req.version());
        assert_eq!(again.extensions().get::<u32>(), Some(&7));
        assert_eq!(again.headers()["x-one"], "1");
        let many: Vec<_> = again.headers().get_all("x-many").iter().collect();
        assert_eq!(many, ["a", "b"]);
        let auth: Vec<_> = again.headers().get_all(AUTHORIZATION).iter().collect();
        assert_eq!(auth, ["Bearer new"]);
        assert_eq!(again.headers().len(), req.headers().len());
    }

    #[test]
    fn head_boxes_are_reused_on_the_same_thread_and_come_back_empty() {
        std::thread::spawn(|| {
            let first = HeadCopy::of(&request());
            let addr = first.0.as_deref().map(|h| h as *const Head as usize);
            drop(first);
            let spare = SPARE.with_borrow(|s| {
                assert_eq!(s.len(), 1);
                assert!(s[0].uri.is_none() && s[0].headers.is_empty());
                assert!(s[0].extensions.get::<u32>().is_none());
                s[0].as_ref() as *const Head as usize
            });
            assert_eq!(Some(spare), addr);
            let second = HeadCopy::of(&request());
            assert_eq!(second.0.as_deref().map(|h| h as *const Head as usize), addr);
            assert_eq!(SPARE.with_borrow(Vec::len), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_dropped_home_is_no_longer_found() {
        let fetcher = tower::service_fn(|_: crate::TokenRequest| async {
            Err::<crate::Token, crate::BoxError>("no tokens here".into())
        });
        let layer = crate::OAuthLayer::with_fetcher(fetcher).build();
        let home = Home::register(layer.shared.clone(), &());
        let id = home.id;
        assert!(Home::<()>::find(id).is_some());
        assert!(Home::<u8>::find(id).is_none(), "another service type");
        drop(home);
        assert!(Home::<()>::find(id).is_none());
    }
}
