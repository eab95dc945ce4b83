//! What a request keeps so that it can be sent again after a rejected token.
//!
//! The head is copied as bytes into a buffer reused per thread ([`head`]); the body is
//! kept as its type allows ([`KeptBody`]). Neither allocates for a request of
//! usual size: see [`crate::pool`]. What is too large to copy is cloned, which can
//! allocate: the request's extensions, when it has any (their map and a box per value;
//! tonic-generated clients add a `GrpcMethod` to every request), and header values over
//! 128 bytes built at runtime from a `Vec` or `String` (their shared form).

mod head;

use std::cell::RefCell;

use http::Request;

use crate::{
    body::{KeptBody, ReplayableBody},
    pool::{self, FreeList},
};

use self::head::HeadCopy;

/// A copy of a request kept to send it again.
pub(crate) struct Replay<B: ReplayableBody> {
    head: HeadCopy,
    body: KeptBody<B>,
}

impl<B: ReplayableBody> Replay<B> {
    /// Prepares a request that will carry a token for a possible replay: the body is made
    /// replayable in place, and the head copied. `None` when the body cannot be replayed.
    #[inline]
    pub(crate) fn prepare(req: &mut Request<B>, limit: usize) -> Option<Self> {
        let body = KeptBody::keep(req.body_mut(), limit)?;
        Some(Self {
            head: HeadCopy::of(req),
            body,
        })
    }

    /// The request again, without an `Authorization`; `None` if the body turned out not
    /// to be replayable (or the head does not parse back).
    pub(crate) fn into_request(self) -> Option<Request<B>> {
        let body = self.body.into_body()?;
        self.head.into_request(body)
    }
}

/// Bodies longer than this are shared rather than copied (see [`BodyCopy`]).
pub(crate) const COPY_BODY_MAX: usize = 512;

thread_local! {
    static SPARE_BODIES: FreeList<Vec<u8>> = const { RefCell::new(Vec::new()) };
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
            pool::take(&SPARE_BODIES).unwrap_or_else(|| Vec::with_capacity(COPY_BODY_MAX));
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
        pool::give(&SPARE_BODIES, buf);
    }
}
