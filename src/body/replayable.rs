//! The [`ReplayableBody`] trait, its streaming implementations, and how each recorded
//! body type is made again of a reader of its recording.

use std::convert::Infallible;

use bytes::Bytes;
use http_body::Body;
use http_body_util::{
    combinators::{BoxBody, UnsyncBoxBody},
    BodyExt, Either,
};

use super::{
    error::{FromRecorded, RecordError, ReplayError},
    recording::{Cut, Recording, RecordingBody},
};

/// A request body type that knows how to be kept for a replay.
///
/// The layer accepts any request body and replays the built-in types without this trait:
/// [`Full<Bytes>`](http_body_util::Full), [`Empty<Bytes>`](http_body_util::Empty),
/// [`String`], boxed bodies with a [`BoxError`](crate::BoxError) or [`Infallible`] error,
/// and `tonic::body::Body` (feature `tonic`). A type that implements this trait is
/// replayed once it is registered on the layer's builder. The crate implements it for the
/// built-in types, and for these, which need registering:
///
/// - [`BoxBody<Bytes, E>`] and [`UnsyncBoxBody<Bytes, E>`] whose error type can hold a
///   [`ReplayError`] (`E: From<ReplayError>`): a recorded body reports through it that
///   it was cut off or outgrew the limit;
/// - an [`Either`] of two of these, replayable as its side is.
///
/// hyper's `Incoming` implements it too, and is never replayed (it cannot be rebuilt).
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{combinators::BoxBody, Either, Full};
/// use tower_oauth::{body::ReplayableBody, BoxError};
///
/// type Request = Either<Full<Bytes>, BoxBody<Bytes, BoxError>>;
///
/// let mut body: Request = Either::Left(Full::new(Bytes::from("{}")));
/// let kept = body.prepare(64 * 1024).expect("a full body is always kept");
/// let again = Request::replay(kept).expect("and made again");
/// assert!(matches!(again, Either::Left(_)));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a request body the OAuth layer can replay",
    note = "bodies of any type are accepted; only types that implement `ReplayableBody` can be \
            registered as replayable this way (register others with a function that makes \
            them of a recorded body)"
)]
pub trait ReplayableBody: Body<Data = Bytes> + Sized {
    /// What is kept to rebuild the body.
    type Replay: Send + 'static;

    /// Prepares the body for sending, in place (a streaming body is wrapped to record
    /// what it sends), and returns what rebuilds it when it can be replayed within
    /// `limit` bytes.
    fn prepare(&mut self, limit: usize) -> Option<Self::Replay>;

    /// Rebuilds the body, or `None` if it turned out not to be replayable (more than the
    /// limit had been sent when the replay was asked for).
    fn replay(replay: Self::Replay) -> Option<Self>;
}

/// A boxed body of a reader whose error type can say it was cut off.
pub(super) fn boxed<E>(reader: RecordingBody<BoxBody<Bytes, E>>) -> BoxBody<Bytes, E>
where
    E: From<ReplayError> + Send + 'static,
{
    BoxBody::new(reader.map_err(E::from_recorded))
}

/// [`boxed`], unsync.
pub(super) fn unsync_boxed<E>(
    reader: RecordingBody<UnsyncBoxBody<Bytes, E>>,
) -> UnsyncBoxBody<Bytes, E>
where
    E: From<ReplayError> + Send + 'static,
{
    UnsyncBoxBody::new(reader.map_err(E::from_recorded))
}

/// A boxed body of a reader whose error type cannot say anything: recorded with
/// [`Cut::Impossible`], which never loses data a reader has yet to read.
pub(super) fn boxed_infallible(
    reader: RecordingBody<BoxBody<Bytes, Infallible>>,
) -> BoxBody<Bytes, Infallible> {
    BoxBody::new(reader.map_err(uncut))
}

/// [`boxed_infallible`], unsync.
pub(super) fn unsync_boxed_infallible(
    reader: RecordingBody<UnsyncBoxBody<Bytes, Infallible>>,
) -> UnsyncBoxBody<Bytes, Infallible> {
    UnsyncBoxBody::new(reader.map_err(uncut))
}

/// The error of a reader recorded with [`Cut::Impossible`], which has none.
fn uncut(err: RecordError<Infallible>) -> Infallible {
    match err {
        RecordError::Body(never) => never,
        // Such a recording cuts no reader off and lets go of no frame a reader has yet
        // to read; its source cannot fail.
        RecordError::Replay(lost) => unreachable!("a recording that cannot cut lost data: {lost}"),
    }
}

impl<E> ReplayableBody for BoxBody<Bytes, E>
where
    E: From<ReplayError> + Send + 'static,
{
    type Replay = Recording<Self>;

    fn prepare(&mut self, limit: usize) -> Option<Self::Replay> {
        Recording::record(self, limit, Cut::Reported, boxed)
    }

    fn replay(replay: Self::Replay) -> Option<Self> {
        replay.replay().map(boxed)
    }
}

impl<E> ReplayableBody for UnsyncBoxBody<Bytes, E>
where
    E: From<ReplayError> + Send + 'static,
{
    type Replay = Recording<Self>;

    fn prepare(&mut self, limit: usize) -> Option<Self::Replay> {
        Recording::record(self, limit, Cut::Reported, unsync_boxed)
    }

    fn replay(replay: Self::Replay) -> Option<Self> {
        replay.replay().map(unsync_boxed)
    }
}

/// Either side, as that side is: replayed when it is.
impl<L, R> ReplayableBody for Either<L, R>
where
    L: ReplayableBody,
    R: ReplayableBody,
    Self: Body<Data = Bytes>,
{
    type Replay = Either<L::Replay, R::Replay>;

    fn prepare(&mut self, limit: usize) -> Option<Self::Replay> {
        match self {
            Either::Left(body) => body.prepare(limit).map(Either::Left),
            Either::Right(body) => body.prepare(limit).map(Either::Right),
        }
    }

    fn replay(replay: Self::Replay) -> Option<Self> {
        match replay {
            Either::Left(kept) => L::replay(kept).map(Either::Left),
            Either::Right(kept) => R::replay(kept).map(Either::Right),
        }
    }
}

#[cfg(feature = "tonic")]
impl ReplayableBody for tonic::body::Body {
    type Replay = Recording<Self>;

    fn prepare(&mut self, limit: usize) -> Option<Self::Replay> {
        Recording::record(self, limit, Cut::Reported, tonic::body::Body::new)
    }

    fn replay(replay: Self::Replay) -> Option<Self> {
        replay.replay().map(tonic::body::Body::new)
    }
}

#[cfg(any(feature = "https", feature = "test-util"))]
impl ReplayableBody for hyper::body::Incoming {
    type Replay = Infallible;

    /// An incoming body (a proxy forwarding a request) cannot be rebuilt: never replayed.
    fn prepare(&mut self, _limit: usize) -> Option<Self::Replay> {
        None
    }

    fn replay(replay: Self::Replay) -> Option<Self> {
        match replay {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::test_support::{bytes_of, chunks, Boxed};
    use http_body_util::{Empty, Full};

    #[tokio::test]
    async fn either_body_is_replayed_as_its_side_is() {
        type Both = Either<Full<Bytes>, Boxed>;
        let mut left: Both = Either::Left(Full::new(Bytes::from_static(b"left side")));
        let kept = left.prepare(1024).expect("a full body is replayable");
        let again = Both::replay(kept).expect("replayed");
        assert!(matches!(again, Either::Left(_)));
        assert_eq!(bytes_of(again).await, "left side");
        assert_eq!(bytes_of(left).await, "left side");

        let (body, whole) = chunks(4);
        let mut right: Both = Either::Right(body);
        let kept = right.prepare(1024).expect("recorded");
        let again = Both::replay(kept).expect("replayed");
        assert!(matches!(again, Either::Right(_)));
        assert_eq!(bytes_of(again).await, whole);
        assert_eq!(bytes_of(right).await, whole);

        // Past the limit, its side is not replayable, and neither is the either.
        let (body, _) = chunks(10);
        let mut right: Both = Either::Right(body);
        let kept = right
            .prepare(10)
            .expect("recorded while it may be replayed");
        bytes_of(right).await;
        assert!(Both::replay(kept).is_none());
    }

    #[tokio::test]
    async fn empty_and_unsync_boxed_bodies_are_replayed() {
        let mut empty = Empty::<Bytes>::new();
        let replay = empty.prepare(0).expect("an empty body is replayable");
        assert!(Empty::replay(replay).expect("and replayed").is_end_stream());

        let (body, whole) = chunks(4);
        let mut first = UnsyncBoxBody::new(body);
        let replay = first.prepare(1024).expect("recorded");
        assert_eq!(format!("{replay:?}"), "Recording { .. }");
        let again = UnsyncBoxBody::replay(replay).expect("replayable");
        for body in [again, first] {
            let all = body.collect().await.unwrap();
            assert_eq!(all.trailers().unwrap()["x-checksum"], "42");
            assert_eq!(all.to_bytes(), whole);
        }
    }
}
