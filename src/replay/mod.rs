//! What a request keeps so that it can be sent again after a rejected token.
//!
//! The head is copied as bytes into a buffer reused per thread ([`head`]); the body is
//! kept as its type allows ([`KeptBody`]). Neither allocates for a request of
//! usual size: see [`crate::pool`]. What is too large to copy is cloned, which can
//! allocate: the request's extensions, when it has any (their map and a box per value;
//! tonic-generated clients add a `GrpcMethod` to every request), and header values over
//! 128 bytes built at runtime from a `Vec` or `String` (their shared form).

mod head;

use bytes::Bytes;
use http::Request;
use http_body::Body;

use crate::body::{KeptBody, Replayers};

use self::head::HeadCopy;

/// A copy of a request kept to send it again.
pub(crate) struct Replay<B> {
    head: HeadCopy,
    body: KeptBody<B>,
}

impl<B: Body<Data = Bytes> + Send + 'static> Replay<B> {
    /// Prepares a request that will carry a token for a possible replay: the body is made
    /// replayable in place, and the head copied. `None` when the body cannot be replayed.
    #[inline]
    pub(crate) fn prepare(req: &mut Request<B>, limit: usize, custom: &Replayers) -> Option<Self> {
        let body = KeptBody::keep(req.body_mut(), limit, custom)?;
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
