//! The copy of a request's head kept for a replay: its parts copied as bytes into a
//! buffer reused per thread, parsed back only for a replay.

use http::{
    header::AUTHORIZATION, Extensions, HeaderName, HeaderValue, Method, Request, Uri, Version,
};

use crate::pool::{self, FreeList};

/// A head box whose buffers grew past these is not kept.
const SPARE_BYTES: usize = 4 * 1024;
const SPARE_SHARED: usize = 16;
/// Header values longer than this are shared (a reference count) rather than copied.
const COPY_VALUE_MAX: usize = 128;

thread_local! {
    // Boxed on purpose: a box moves between this list and a response future.
    #[allow(clippy::vec_box)]
    static SPARE_HEADS: FreeList<Box<Head>> = const { FreeList::new() };
}

/// The copy itself. The URI and the headers are copied as bytes into one buffer that the
/// box keeps between uses: copying a few dozen bytes costs less than the atomic
/// reference-count updates of cloning them (two for each `Bytes`, one on clone and one on
/// drop), and unlike a clone of a `Vec`-backed `Bytes` it never allocates. They are
/// parsed back only for a replay.
///
/// The buffer holds the URI's scheme, authority and path-and-query (each that is present,
/// ending where `uri` says), then one record per header: an eight-byte prefix (the name's
/// length, and a tag: the value's length and whether it is sensitive, or that the value
/// is the next one in `shared`), the name, and the value when copied.
struct Head {
    method: Method,
    version: Version,
    extensions: Extensions,
    bytes: Vec<u8>,
    uri: [Option<u32>; 3],
    /// Header values too long to copy, in the order of their records.
    shared: Vec<HeaderValue>,
}

/// Tag bits of a header record.
const SHARED: u32 = 1 << 31;
const SENSITIVE: u32 = 1 << 30;
const VALUE_LEN: u32 = SENSITIVE - 1;

impl Head {
    #[cold]
    fn new_boxed() -> Box<Self> {
        Box::new(Self {
            method: Method::GET,
            version: Version::default(),
            extensions: Extensions::new(),
            bytes: Vec::new(),
            uri: [None; 3],
            shared: Vec::new(),
        })
    }

    #[inline]
    fn push(&mut self, part: &[u8]) -> u32 {
        self.bytes.extend_from_slice(part);
        // Headers and URIs past 4 GiB are refused long before this.
        self.bytes.len() as u32
    }

    #[inline]
    fn push_header(&mut self, name: &HeaderName, value: &HeaderValue) {
        let name = name.as_str().as_bytes();
        let raw = value.as_bytes();
        let copied = raw.len() <= COPY_VALUE_MAX;
        let tag = if copied {
            raw.len() as u32 | if value.is_sensitive() { SENSITIVE } else { 0 }
        } else {
            self.shared.push(value.clone());
            SHARED
        };
        let mut prefix = [0; 8];
        prefix[..4].copy_from_slice(&(name.len() as u32).to_le_bytes());
        prefix[4..].copy_from_slice(&tag.to_le_bytes());
        self.bytes.extend_from_slice(&prefix);
        self.bytes.extend_from_slice(name);
        if copied {
            self.bytes.extend_from_slice(raw);
        }
    }
}

/// Splits `n` bytes off the front of `rest`.
fn split<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (part, tail) = rest.split_at_checked(n)?;
    *rest = tail;
    Some(part)
}

/// A request head without its `Authorization`, in a box reused from this thread's free list.
pub(crate) struct HeadCopy(Option<Box<Head>>);

impl HeadCopy {
    /// Copies the head of a request, all but its `Authorization`.
    pub(crate) fn of<B>(req: &Request<B>) -> Self {
        let mut head = pool::take(&SPARE_HEADS).unwrap_or_else(Head::new_boxed);
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
        for (name, value) in req.headers() {
            if name != AUTHORIZATION {
                head.push_header(name, value);
            }
        }
        Self(Some(head))
    }

    /// The request again; `None` if a part does not parse back (only a value made with an
    /// unchecked constructor could fail to).
    pub(crate) fn into_request<B>(mut self, body: B) -> Option<Request<B>> {
        let head = self.0.as_mut().expect("a head copy is used once");
        // The URI's parts, each that is present, end where `head.uri` says.
        let mut taken = 0;
        let mut uri_part = |end: Option<u32>| -> Option<Option<&[u8]>> {
            let Some(end) = end else {
                return Some(None);
            };
            let part = head.bytes.get(taken..end as usize)?;
            taken = end as usize;
            Some(Some(part))
        };
        let [scheme, authority, path] = head.uri;
        let mut parts = http::uri::Parts::default();
        if let Some(s) = uri_part(scheme)? {
            parts.scheme = Some(std::str::from_utf8(s).ok()?.parse().ok()?);
        }
        if let Some(a) = uri_part(authority)? {
            parts.authority = Some(http::uri::Authority::try_from(a).ok()?);
        }
        if let Some(p) = uri_part(path)? {
            parts.path_and_query = Some(http::uri::PathAndQuery::try_from(p).ok()?);
        }
        let mut rest = &head.bytes[taken..];
        let mut req = Request::new(body);
        *req.uri_mut() = Uri::from_parts(parts).ok()?;
        *req.method_mut() = std::mem::replace(&mut head.method, Method::GET);
        *req.version_mut() = head.version;
        *req.extensions_mut() = std::mem::take(&mut head.extensions);
        let headers = req.headers_mut();
        let mut shared = head.shared.drain(..);
        while !rest.is_empty() {
            let prefix = split(&mut rest, 8)?;
            let name_len = u32::from_le_bytes(prefix[..4].try_into().ok()?);
            let tag = u32::from_le_bytes(prefix[4..].try_into().ok()?);
            let name = HeaderName::from_bytes(split(&mut rest, name_len as usize)?).ok()?;
            let value = if tag & SHARED != 0 {
                shared.next()?
            } else {
                let raw = split(&mut rest, (tag & VALUE_LEN) as usize)?;
                let mut value = HeaderValue::from_bytes(raw).ok()?;
                value.set_sensitive(tag & SENSITIVE != 0);
                value
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
        head.shared.clear();
        head.bytes.clear();
        if head.bytes.capacity() <= SPARE_BYTES && head.shared.capacity() <= SPARE_SHARED {
            pool::give(&SPARE_HEADS, head);
        }
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
        HeadCopy::of(req).into_request(req.body().clone()).unwrap()
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
            assert_eq!(SPARE_HEADS.with(FreeList::len), 1);
            let spare = pool::take(&SPARE_HEADS).expect("given back");
            assert!(spare.bytes.is_empty() && spare.shared.is_empty());
            assert!(spare.extensions.get::<u32>().is_none());
            assert_eq!(Some(spare.as_ref() as *const Head as usize), addr);
            pool::give(&SPARE_HEADS, spare);
            let second = HeadCopy::of(&request("/b"));
            assert_eq!(second.0.as_deref().map(|h| h as *const Head as usize), addr);
            assert_eq!(SPARE_HEADS.with(FreeList::len), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_head_box_is_kept_only_while_its_buffers_stay_within_the_limits() {
        // (path length, header values too long to copy, kept); a head of a couple of KiB
        // (a long query, cookies) is common enough to be worth keeping.
        for (path, long, kept) in [
            (2 * 1024, 0, true),
            (SPARE_BYTES + 1, 0, false),
            (1, SPARE_SHARED, true),
            (1, SPARE_SHARED + 1, false),
        ] {
            std::thread::spawn(move || {
                let mut req = Request::new(());
                *req.uri_mut() = format!("/{}", "p".repeat(path - 1)).parse().unwrap();
                for _ in 0..long {
                    req.headers_mut()
                        .append(COOKIE, "c".repeat(COPY_VALUE_MAX + 1).parse().unwrap());
                }
                drop(HeadCopy::of(&req));
                let spares = SPARE_HEADS.with(FreeList::len);
                assert_eq!(spares, usize::from(kept), "path {path}, {long} long values");
            })
            .join()
            .unwrap();
        }
    }

    mod round_trip {
        use super::*;
        use proptest::{collection::vec, prelude::*, sample::select};

        fn name() -> impl Strategy<Value = HeaderName> {
            prop_oneof![
                select(vec![
                    http::header::ACCEPT,
                    http::header::CONTENT_TYPE,
                    http::header::COOKIE,
                    http::header::AUTHORIZATION,
                    http::header::USER_AGENT,
                ]),
                "[a-z][a-z0-9-]{0,40}".prop_map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap()),
            ]
        }

        fn value() -> impl Strategy<Value = HeaderValue> {
            // Every byte a header value may hold: visible ASCII, space, tab and obs-text,
            // in lengths on both sides of the copy limit.
            let byte = prop_oneof![0x20u8..=0x7e, 0x80u8..=0xff, Just(b'\t')];
            (vec(byte, 0..COPY_VALUE_MAX * 2), any::<bool>()).prop_map(|(bytes, sensitive)| {
                let mut value = HeaderValue::from_bytes(&bytes).unwrap();
                value.set_sensitive(sensitive);
                value
            })
        }

        fn uri() -> impl Strategy<Value = Uri> {
            (
                select(vec!["", "http://", "https://"]),
                "[a-z]{1,12}(\\.[a-z]{2,5})?(:[0-9]{1,5})?",
                "(/[a-zA-Z0-9._~%!$&'()*+,;=:@-]{0,20}){0,4}",
                "(\\?[a-zA-Z0-9._~%!$&'()*+,;=:@/?-]{0,30})?",
            )
                .prop_map(|(scheme, host, path, query)| {
                    let text = if scheme.is_empty() {
                        format!("/{path}{query}")
                    } else {
                        format!("{scheme}{host}{path}{query}")
                    };
                    text.parse().unwrap()
                })
        }

        /// The headers as a list: name, value, sensitivity, in the map's order.
        fn listed(req: &Request<()>) -> Vec<(HeaderName, HeaderValue, bool)> {
            req.headers()
                .iter()
                .filter(|(n, _)| *n != AUTHORIZATION)
                .map(|(n, v)| (n.clone(), v.clone(), v.is_sensitive()))
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 256,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn any_head_is_copied_and_rebuilt_exactly(
                uri in uri(),
                headers in vec((name(), value()), 0..24),
                method in select(vec![Method::GET, Method::POST, Method::DELETE]),
            ) {
                let mut req = Request::new(());
                *req.uri_mut() = uri;
                *req.method_mut() = method;
                for (name, value) in headers {
                    req.headers_mut().append(name, value);
                }
                let copy = HeadCopy::of(&req);
                let again = copy.into_request(()).expect("a copied head parses back");
                prop_assert_eq!(again.uri(), req.uri());
                prop_assert_eq!(again.method(), req.method());
                prop_assert_eq!(listed(&again), listed(&req));
                prop_assert!(!again.headers().contains_key(AUTHORIZATION));
            }
        }
    }
}
