//! Buffered request bodies ([`Full`], [`Empty`], [`String`]): kept whole for a replay,
//! a small one as a copy in a buffer reused per thread.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use http_body::Body;
use http_body_util::{Empty, Full};

use super::replayable::ReplayableBody;
use crate::pool::{self, FreeList};

/// Bodies longer than this are shared rather than copied (see [`BodyCopy`]).
pub(crate) const COPY_BODY_MAX: usize = 512;

thread_local! {
    static SPARE_BUFFERS: FreeList<Vec<u8>> = const { FreeList::new() };
}

/// A small request body kept as a copy of its bytes, in a buffer reused per thread.
///
/// Keeping a body by cloning its `Bytes` costs an atomic reference count on clone and on
/// drop, and when the `Bytes` was made from a `Vec`, an allocation for its shared form on
/// the first clone. A copy of a few hundred bytes costs less than either.
pub(crate) struct BodyCopy(Vec<u8>);

impl BodyCopy {
    /// Copies `data` (at most [`COPY_BODY_MAX`] bytes: longer bodies are shared instead).
    pub(crate) fn of(data: &[u8]) -> Self {
        debug_assert!(data.len() <= COPY_BODY_MAX);
        let mut buf =
            pool::take(&SPARE_BUFFERS).unwrap_or_else(|| Vec::with_capacity(COPY_BODY_MAX));
        buf.extend_from_slice(data);
        Self(buf)
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for BodyCopy {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        buf.clear();
        // Never grown: every copy fits the capacity it was made with.
        pool::give(&SPARE_BUFFERS, buf);
    }
}

impl ReplayableBody for Empty<Bytes> {
    type Replay = Self;

    fn prepare(&mut self, _limit: usize) -> Option<Self::Replay> {
        Some(Self::new())
    }

    fn replay(replay: Self::Replay) -> Option<Self> {
        Some(replay)
    }
}

/// What a buffered body ([`Full`], [`String`]) keeps for its replay: the bytes of a body
/// of up to 512 bytes copied into a buffer reused per thread, or a clone of a larger body.
///
/// A clone of `Bytes` costs atomic reference-count updates, and an allocation when the
/// `Bytes` was made from a `Vec` (its shared form is made on the first clone); a clone of a
/// `String` allocates. Copying a small body costs less than either. Bytes that are
/// `'static` or already shared with others are cloned whatever their size.
pub struct BufferedReplay<B>(Kept<B>);

enum Kept<B> {
    Copied(BodyCopy),
    Cloned(B),
}

impl<B> fmt::Debug for BufferedReplay<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body may be a secret: its length only.
        let (kind, len) = match &self.0 {
            Kept::Copied(copy) => ("copied", Some(copy.as_slice().len())),
            Kept::Cloned(_) => ("cloned", None),
        };
        f.debug_struct("BufferedReplay")
            .field("kind", &kind)
            .field("len", &len)
            .finish()
    }
}

/// Takes the bytes out of a `Full` body, leaving it empty; `None` if it has none.
fn take_full(body: &mut Full<Bytes>) -> Option<Bytes> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(body).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().ok(),
        _ => None,
    }
}

impl ReplayableBody for Full<Bytes> {
    type Replay = BufferedReplay<Self>;

    fn prepare(&mut self, _limit: usize) -> Option<Self::Replay> {
        // `Full` lends no view of its bytes: they are taken out and put back as they were
        // (unless there are none, as for a `GET`).
        let data = if self.is_end_stream() {
            None
        } else {
            take_full(self)
        };
        let Some(data) = data else {
            return Some(BufferedReplay(Kept::Cloned(Self::default())));
        };
        let kept = if data.len() <= COPY_BODY_MAX && data.is_unique() {
            Kept::Copied(BodyCopy::of(&data))
        } else {
            Kept::Cloned(Self::new(data.clone()))
        };
        *self = Self::new(data);
        Some(BufferedReplay(kept))
    }

    fn replay(replay: Self::Replay) -> Option<Self> {
        Some(match replay.0 {
            Kept::Copied(copy) => Self::new(Bytes::copy_from_slice(copy.as_slice())),
            Kept::Cloned(body) => body,
        })
    }
}

impl ReplayableBody for String {
    type Replay = BufferedReplay<Self>;

    fn prepare(&mut self, _limit: usize) -> Option<Self::Replay> {
        Some(BufferedReplay(if self.is_empty() {
            Kept::Cloned(Self::new())
        } else if self.len() <= COPY_BODY_MAX {
            Kept::Copied(BodyCopy::of(self.as_bytes()))
        } else {
            Kept::Cloned(self.clone())
        }))
    }

    fn replay(replay: Self::Replay) -> Option<Self> {
        match replay.0 {
            Kept::Copied(copy) => Self::from_utf8(copy.as_slice().to_vec()).ok(),
            Kept::Cloned(body) => Some(body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::test_support::bytes_of;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn buffered_bodies_replay_by_clone() {
        let mut body = Full::new(Bytes::from_static(b"abc"));
        let replay = body.prepare(0);
        let replayed = <Full<Bytes>>::replay(replay.unwrap()).unwrap();
        for b in [body, replayed] {
            assert_eq!(b.collect().await.unwrap().to_bytes(), "abc");
        }
    }

    #[tokio::test]
    async fn a_full_body_is_sent_and_replayed_byte_for_byte_however_it_is_kept() {
        let shared = Bytes::from(vec![9u8; 16]);
        type Make = fn(&Bytes) -> Bytes;
        let cases: [(Make, &str); 5] = [
            // Only this body's: copied.
            (|_| Bytes::from(vec![7u8; COPY_BODY_MAX]), "copied"),
            (|_| Bytes::from(vec![8u8; COPY_BODY_MAX + 1]), "cloned"),
            (|_| Bytes::from_static(b"static"), "cloned"),
            // Shared with another holder.
            (|shared| shared.clone(), "cloned"),
            (|_| Bytes::new(), "cloned"),
        ];
        for (make, kind) in cases {
            let mut body = Full::new(make(&shared));
            let expected = make(&shared).to_vec();
            let replay = body.prepare(0).unwrap();
            let debug = format!("{replay:?}");
            assert!(debug.contains(kind), "{} bytes: {debug}", expected.len());
            assert_eq!(bytes_of(body).await, expected, "the body sent is unchanged");
            let again = Full::replay(replay).unwrap();
            assert_eq!(bytes_of(again).await, expected, "the replay is identical");
        }
    }

    #[tokio::test]
    async fn a_string_body_is_replayed_exactly() {
        for text in ["", "héllo", &"x".repeat(COPY_BODY_MAX + 10)] {
            let mut body = text.to_owned();
            let replay = body.prepare(0).unwrap();
            assert_eq!(body, text);
            assert_eq!(String::replay(replay).unwrap(), text);
        }
    }

    #[test]
    fn body_copies_reuse_their_buffers_on_the_same_thread() {
        std::thread::spawn(|| {
            let first = BodyCopy::of(b"first");
            let addr = first.as_slice().as_ptr();
            drop(first);
            let second = BodyCopy::of(b"second body");
            assert_eq!(second.as_slice(), b"second body");
            assert_eq!(second.as_slice().as_ptr(), addr);
        })
        .join()
        .unwrap();
    }
}
