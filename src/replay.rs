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

    /// The request again, without an `Authorization`; `None` if the body turned out not
    /// to be replayable (or the head does not parse back).
    pub(crate) fn into_request(self) -> Option<Request<B>> {
        let body = B::replay(self.body)?;
        self.head.into_request(body)
    }
}

/// Boxes kept per thread for head copies; more than this many free at once are dropped.
const SPARE_HEADS: usize = 256;
/// A box whose buffers grew past these is not kept.
const SPARE_BYTES: usize = 4 * 1024;
const SPARE_HEADERS: usize = 64;
/// Header values longer than this are shared (a reference count) rather than copied.
const COPY_VALUE_MAX: usize = 128;

thread_local! {
    // Boxed on purpose: a box moves between this list and a response future.
    #[allow(clippy::vec_box)]
    static SPARE: RefCell<Vec<Box<Head>>> = const { RefCell::new(Vec::new()) };
}

/// The copy itself. The URI, the header names and the short header values are copied as
/// bytes into one buffer that the box keeps between uses: copying a few dozen bytes costs
/// less than the atomic reference-count updates of cloning them (two for each `Bytes`,
/// one on clone and one on drop), and unlike a clone of a `Vec`-backed `Bytes` it never
/// allocates. They are parsed back only for a replay.
struct Head {
    method: Method,
    version: Version,
    extensions: Extensions,
    bytes: Vec<u8>,
    /// Where the scheme, authority and path-and-query end in `bytes`, for those present.
    uri: [Option<u32>; 3],
    headers: Vec<HeaderCopy>,
}

struct HeaderCopy {
    /// The name is `bytes[previous end..name_end]`.
    name_end: u32,
    value: ValueCopy,
}

enum ValueCopy {
    /// `bytes[name_end..end]`.
    Copied {
        end: u32,
        sensitive: bool,
    },
    Shared(HeaderValue),
}

impl Head {
    #[inline]
    fn push(&mut self, part: &[u8]) -> u32 {
        self.bytes.extend_from_slice(part);
        // Headers and URIs past 4 GiB are refused long before this.
        self.bytes.len() as u32
    }
}

/// A request head without its `Authorization`, in a box reused from this thread's free list.
pub(crate) struct HeadCopy(Option<Box<Head>>);

impl HeadCopy {
    /// Copies the head of a request, all but its `Authorization`.
    fn of<B>(req: &Request<B>) -> Self {
        let mut head = SPARE
            .try_with(|spare| spare.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_else(|| {
                Box::new(Head {
                    method: Method::GET,
                    version: Version::default(),
                    extensions: Extensions::new(),
                    bytes: Vec::new(),
                    uri: [None; 3],
                    headers: Vec::new(),
                })
            });
        head.method = req.method().clone();
        head.version = req.version();
        head.extensions = req.extensions().clone();
        let uri = req.uri();
        head.uri = [
            uri.scheme_str().map(|s| head.push(s.as_bytes())),
            uri.authority().map(|a| head.push(a.as_str().as_bytes())),
            uri.path_and_query()
                .map(|p| head.push(p.as_str().as_bytes())),
        ];
        let headers = req.headers();
        head.headers.reserve(headers.len());
        for (name, value) in headers {
            if name == AUTHORIZATION {
                continue;
            }
            let name_end = head.push(name.as_str().as_bytes());
            let value = if value.len() <= COPY_VALUE_MAX {
                ValueCopy::Copied {
                    end: head.push(value.as_bytes()),
                    sensitive: value.is_sensitive(),
                }
            } else {
                ValueCopy::Shared(value.clone())
            };
            head.headers.push(HeaderCopy { name_end, value });
        }
        Self(Some(head))
    }

    /// The request again; `None` if a part does not parse back (only a value made with an
    /// unchecked constructor could fail to).
    fn into_request<B>(mut self, body: B) -> Option<Request<B>> {
        let head = self.0.as_mut().expect("a head copy is used once");
        let bytes = &head.bytes;
        let mut start = 0;
        let mut next = |end: u32| {
            let part = &bytes[start..end as usize];
            start = end as usize;
            part
        };
        let [scheme, authority, path] = head.uri;
        let parts = {
            let mut parts = http::uri::Parts::default();
            parts.scheme = match scheme {
                Some(end) => Some(std::str::from_utf8(next(end)).ok()?.parse().ok()?),
                None => None,
            };
            parts.authority = match authority {
                Some(end) => Some(http::uri::Authority::try_from(next(end)).ok()?),
                None => None,
            };
            parts.path_and_query = match path {
                Some(end) => Some(http::uri::PathAndQuery::try_from(next(end)).ok()?),
                None => None,
            };
            parts
        };
        let mut req = Request::new(body);
        *req.uri_mut() = Uri::from_parts(parts).ok()?;
        *req.method_mut() = std::mem::replace(&mut head.method, Method::GET);
        *req.version_mut() = head.version;
        *req.extensions_mut() = std::mem::take(&mut head.extensions);
        let headers = req.headers_mut();
        headers.reserve(head.headers.len() + 1);
        for copy in head.headers.drain(..) {
            let name = HeaderName::from_bytes(next(copy.name_end)).ok()?;
            let value = match copy.value {
                ValueCopy::Copied { end, sensitive } => {
                    let mut value = HeaderValue::from_bytes(next(end)).ok()?;
                    value.set_sensitive(sensitive);
                    value
                }
                ValueCopy::Shared(value) => value,
            };
            headers.append(name, value);
        }
        Some(req)
    }
}

impl Drop for HeadCopy {
    fn drop(&mut self) {
        let Some(mut head) = self.0.take() else {
            return;
        };
        // Let go of the request's parts now, not when the box is next used.
        head.method = Method::GET;
        head.extensions = Extensions::new();
        head.headers.clear();
        head.bytes.clear();
        if head.bytes.capacity() > SPARE_BYTES || head.headers.capacity() > SPARE_HEADERS {
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
    use http::header::COOKIE;
    use http_body_util::Full;

    fn request(uri: &str) -> Request<Full<Bytes>> {
        let mut secret = HeaderValue::from_static("s3cret");
        secret.set_sensitive(true);
        Request::post(uri)
            .header("x-one", "1")
            .header("x-many", "a")
            .header("x-many", "b")
            .header("x-secret", secret)
            .header(COOKIE, "c".repeat(COPY_VALUE_MAX + 1))
            .header("x-empty", "")
            .header(
                "x-obs-text",
                HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
            )
            .extension(7u32)
            .body(Full::new(Bytes::from_static(b"body")))
            .unwrap()
    }

    fn round_trip(req: &mut Request<Full<Bytes>>) -> Request<Full<Bytes>> {
        Replay::prepare(req, 1024).unwrap().into_request().unwrap()
    }

    #[test]
    fn a_head_copy_rebuilds_the_request_exactly() {
        for uri in [
            "https://api.example/v1/docs?x=1&y=%20",
            "http://user@h.example:8080/",
            "http://h.example",
            "/pkg.Service/Method",
            "/?q",
            "*",
            "h.example:443",
        ] {
            let mut req = request(uri);
            let again = round_trip(&mut req);
            assert_eq!(again.uri(), req.uri(), "{uri}");
            assert_eq!(again.uri().to_string(), req.uri().to_string(), "{uri}");
            assert_eq!(again.method(), req.method());
            assert_eq!(again.version(), req.version());
            assert_eq!(again.extensions().get::<u32>(), Some(&7));
            assert_eq!(again.headers(), req.headers(), "{uri}");
            assert!(again.headers()["x-secret"].is_sensitive());
            assert!(!again.headers()["x-one"].is_sensitive());
            let many: Vec<_> = again.headers().get_all("x-many").iter().collect();
            assert_eq!(many, ["a", "b"]);
        }
    }

    #[test]
    fn a_head_copy_keeps_an_extension_method_and_version() {
        let mut req = request("/x");
        *req.method_mut() = Method::from_bytes(b"PROPFIND-WITH-A-LONG-NAME").unwrap();
        *req.version_mut() = Version::HTTP_2;
        let again = round_trip(&mut req);
        assert_eq!(again.method(), req.method());
        assert_eq!(again.version(), Version::HTTP_2);
    }

    #[test]
    fn head_boxes_are_reused_on_the_same_thread_and_come_back_empty() {
        std::thread::spawn(|| {
            let first = HeadCopy::of(&request("/a"));
            let addr = first.0.as_deref().map(|h| h as *const Head as usize);
            drop(first);
            let spare = SPARE.with_borrow(|s| {
                assert_eq!(s.len(), 1);
                assert!(s[0].bytes.is_empty() && s[0].headers.is_empty());
                assert!(s[0].extensions.get::<u32>().is_none());
                s[0].as_ref() as *const Head as usize
            });
            assert_eq!(Some(spare), addr);
            let second = HeadCopy::of(&request("/b"));
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
