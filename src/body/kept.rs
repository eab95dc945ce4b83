//! What a request keeps of its body for a replay, chosen by the body's type.
//!
//! The built-in types are found by comparing type ids, which are constants once the
//! layer is compiled for a body type: a `Full<Bytes>` request goes straight to its copy.
//! Other types are looked up among those registered on the builder, and passed through
//! unreplayed when they are not there.

use std::{
    any::{type_name, Any, TypeId},
    convert::Infallible,
    fmt,
    sync::Arc,
};

use bytes::Bytes;
use http_body::Body;
use http_body_util::{
    combinators::{BoxBody, UnsyncBoxBody},
    Empty, Full,
};

use super::{
    buffered::BufferedReplay,
    recording::{Cut, Recorded, Recording, RecordingBody},
    replayable::{self, ReplayableBody},
};
use crate::error::BoxError;

/// What a request keeps of its body for a replay.
pub(crate) struct KeptBody<B>(Kept<B>);

enum Kept<B> {
    Full(BufferedReplay<Full<Bytes>>),
    String(BufferedReplay<String>),
    Empty,
    /// A streaming body, recorded as it is sent.
    Recorded {
        recording: Recording<B>,
        wrap: Wrap<B>,
    },
    /// A registered [`ReplayableBody`]: what it keeps, boxed, and how it is made again.
    Replayable {
        kept: Box<dyn Any + Send>,
        replay: fn(Box<dyn Any + Send>) -> Option<B>,
    },
}

/// How a recorded body's type is made of a reader of its recording.
enum Wrap<B> {
    /// A built-in type, of the reader as it is.
    Reader(fn(RecordingBody<B>) -> B),
    /// A registered type, of the reader with its errors boxed.
    Boxed(fn(Recorded<B>) -> B),
}

impl<B> Clone for Wrap<B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B> Copy for Wrap<B> {}

impl<B> Wrap<B> {
    fn apply(self, reader: RecordingBody<B>) -> B {
        match self {
            Self::Reader(wrap) => wrap(reader),
            Self::Boxed(wrap) => wrap(Recorded::new(reader)),
        }
    }
}

/// `value` as a `B`, when `T` is `B`. Both checks fold to constants.
fn cast<T: 'static, B: 'static>(value: T) -> Option<B> {
    if TypeId::of::<T>() != TypeId::of::<B>() {
        return None;
    }
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<B>>()
        .and_then(Option::take)
}

/// How a built-in streaming type `B` is recorded, if `B` is one.
fn built_in_recorded<B: 'static>() -> Option<(Wrap<B>, Cut)> {
    fn reader<T: 'static, B: 'static>(
        wrap: fn(RecordingBody<T>) -> T,
        cut: Cut,
    ) -> Option<(Wrap<B>, Cut)> {
        Some((Wrap::Reader(cast(wrap)?), cut))
    }
    type Boxed<E> = BoxBody<Bytes, E>;
    type Unsync<E> = UnsyncBoxBody<Bytes, E>;
    let found = reader::<Boxed<BoxError>, B>(replayable::boxed, Cut::Reported)
        .or_else(|| reader::<Unsync<BoxError>, B>(replayable::unsync_boxed, Cut::Reported))
        .or_else(|| reader::<Boxed<Infallible>, B>(replayable::boxed_infallible, Cut::Impossible))
        .or_else(|| {
            reader::<Unsync<Infallible>, B>(replayable::unsync_boxed_infallible, Cut::Impossible)
        });
    #[cfg(feature = "tonic")]
    let found =
        found.or_else(|| reader::<tonic::body::Body, B>(tonic::body::Body::new, Cut::Reported));
    found
}

impl<B> KeptBody<B>
where
    B: Body<Data = Bytes> + Send + 'static,
{
    /// Makes the body replayable in place (a streaming body is swapped for a recording
    /// one of the same type) and keeps what a replay needs. `None`: this body cannot be
    /// replayed (its type is not one the layer knows, its size hint is over the limit);
    /// the reason is logged at `debug`.
    #[inline]
    pub(crate) fn keep(body: &mut B, limit: usize, custom: &Replayers) -> Option<Self> {
        let any = body as &mut dyn Any;
        let kept = if let Some(full) = any.downcast_mut::<Full<Bytes>>() {
            Kept::Full(full.prepare(limit)?)
        } else if any.is::<Empty<Bytes>>() {
            Kept::Empty
        } else if let Some(text) = any.downcast_mut::<String>() {
            Kept::String(text.prepare(limit)?)
        } else if let Some((wrap, cut)) = built_in_recorded::<B>() {
            let recording = Recording::record(body, limit, cut, |reader| wrap.apply(reader))?;
            Kept::Recorded { recording, wrap }
        } else {
            return Self::keep_other(body, limit, custom);
        };
        Some(Self(kept))
    }

    /// A body of a type that is not built in: kept as registered, if it is.
    #[cold]
    #[inline(never)]
    fn keep_other(body: &mut B, limit: usize, custom: &Replayers) -> Option<Self> {
        #[cfg(any(feature = "https", feature = "test-util"))]
        if TypeId::of::<B>() == TypeId::of::<hyper::body::Incoming>() {
            tracing::debug!(
                "request body is hyper's Incoming, which cannot be rebuilt; not replayable"
            );
            return None;
        }
        let Some(registered) = custom.find::<B>() else {
            tracing::debug!(
                body = type_name::<B>(),
                "request body type is not one the layer replays; register it on the builder \
                 to have it replayed"
            );
            return None;
        };
        let kept = match registered {
            Registered::Wrap(wrap) => {
                let wrap = Wrap::Boxed(wrap);
                let recording =
                    Recording::record(body, limit, Cut::Reported, |reader| wrap.apply(reader))?;
                Kept::Recorded { recording, wrap }
            }
            Registered::Replayable { keep, replay } => Kept::Replayable {
                kept: keep(body, limit)?,
                replay,
            },
        };
        Some(Self(kept))
    }

    /// The body again for the replay; `None` if it turned out not to be replayable.
    pub(crate) fn into_body(self) -> Option<B> {
        match self.0 {
            Kept::Full(kept) => cast(<Full<Bytes>>::replay(kept)?),
            Kept::String(kept) => cast(String::replay(kept)?),
            Kept::Empty => cast(Empty::<Bytes>::new()),
            Kept::Recorded { recording, wrap } => recording.replay().map(|r| wrap.apply(r)),
            Kept::Replayable { kept, replay } => replay(kept),
        }
    }
}

impl<B> fmt::Debug for KeptBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0 {
            Kept::Full(_) | Kept::String(_) | Kept::Empty => "buffered",
            Kept::Recorded { .. } => "recorded",
            Kept::Replayable { .. } => "registered",
        };
        f.debug_tuple("KeptBody").field(&kind).finish()
    }
}

/// The body types registered on the builder, beyond the built-in ones. The default has
/// none.
#[derive(Clone, Default)]
pub(crate) struct Replayers {
    // `None` rather than an empty slice: the default allocates nothing.
    types: Option<Arc<[Registration]>>,
}

struct Registration {
    id: TypeId,
    name: &'static str,
    /// A [`Registered`] of the type.
    how: Arc<dyn Any + Send + Sync>,
}

/// How a registered type `T` is kept.
enum Registered<T> {
    /// Recorded, and made of a reader of the recording by this function.
    Wrap(fn(Recorded<T>) -> T),
    /// As its [`ReplayableBody`] implementation says.
    Replayable {
        keep: fn(&mut T, usize) -> Option<Box<dyn Any + Send>>,
        replay: fn(Box<dyn Any + Send>) -> Option<T>,
    },
}

impl<T> Clone for Registered<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Registered<T> {}

fn keep_replayable<T: ReplayableBody>(body: &mut T, limit: usize) -> Option<Box<dyn Any + Send>> {
    Some(Box::new(body.prepare(limit)?))
}

fn replay_replayable<T: ReplayableBody>(kept: Box<dyn Any + Send>) -> Option<T> {
    T::replay(*kept.downcast::<T::Replay>().ok()?)
}

impl Replayers {
    /// Registers `T`, recorded as it is sent like a boxed body, then made of its recording
    /// by `wrap` (`axum::body::Body::new`, `reqwest::Body::wrap`, `BoxBody::new`).
    ///
    /// Its error holds the cut-off [`ReplayError`](crate::body::ReplayError) (see
    /// [`Recorded`]). A request costs the recording's allocations, as a boxed body's does,
    /// and whatever `wrap` allocates (a box, for the functions above). A built-in type is
    /// kept as built in whatever is registered; a type registered again replaces its
    /// earlier registration.
    pub(crate) fn with<T>(self, wrap: fn(Recorded<T>) -> T) -> Self
    where
        T: Body<Data = Bytes> + Unpin + Send + 'static,
        T::Error: Into<BoxError>,
    {
        self.register::<T>(Registered::Wrap(wrap))
    }

    /// Registers `T`, kept as its [`ReplayableBody`] implementation says. What it keeps is
    /// boxed: one allocation per request on top of its own.
    pub(crate) fn with_replayable<T>(self) -> Self
    where
        T: ReplayableBody + Send + 'static,
    {
        self.register::<T>(Registered::Replayable {
            keep: keep_replayable::<T>,
            replay: replay_replayable::<T>,
        })
    }

    fn register<T: 'static>(self, how: Registered<T>) -> Self {
        let id = TypeId::of::<T>();
        // A type registered again is kept as it was registered last.
        let others = self.types.iter().flat_map(|types| types.iter());
        let types = others
            .filter(|r| r.id != id)
            .map(|r| Registration {
                id: r.id,
                name: r.name,
                how: r.how.clone(),
            })
            .chain([Registration {
                id,
                name: type_name::<T>(),
                how: Arc::new(how),
            }])
            .collect();
        Self { types: Some(types) }
    }

    /// Whether `T` is registered.
    #[cfg(feature = "reqwest")]
    pub(crate) fn knows<T: 'static>(&self) -> bool {
        let mut types = self.types.iter().flat_map(|types| types.iter());
        types.any(|r| r.id == TypeId::of::<T>())
    }

    fn find<B: 'static>(&self) -> Option<Registered<B>> {
        let types = self.types.as_deref()?;
        let found = types.iter().find(|r| r.id == TypeId::of::<B>())?;
        found.how.downcast_ref::<Registered<B>>().copied()
    }
}

impl fmt::Debug for Replayers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self
            .types
            .iter()
            .flat_map(|t| t.iter())
            .map(|r| r.name)
            .collect();
        f.debug_struct("Replayers").field("types", &names).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::{fmt, pin::Pin, task::Context, task::Poll};

    use futures_util::stream;
    use http_body::{Frame, SizeHint};
    use http_body_util::{BodyExt, Either, Limited, StreamBody};

    use super::*;
    use crate::body::{
        buffered::COPY_BODY_MAX,
        test_support::{bytes_of, chunks, Boxed},
        ReplayError,
    };

    /// Keeps `body` as the layer does, reads the body sent to its end, then the replay:
    /// what each yielded.
    async fn sent_then_replayed<B>(mut body: B, custom: &Replayers) -> (Bytes, Option<Bytes>)
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: fmt::Debug,
    {
        let kept = KeptBody::keep(&mut body, 1024, custom).expect("kept");
        let sent = bytes_of(body).await;
        let replayed = match kept.into_body() {
            Some(again) => Some(bytes_of(again).await),
            None => None,
        };
        (sent, replayed)
    }

    /// A stream of `frames` that cannot fail, and says nothing of its size.
    fn infallible_stream(frames: &[&'static [u8]]) -> BoxBody<Bytes, Infallible> {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = frames
            .iter()
            .map(|f| Ok(Frame::data(Bytes::from_static(f))))
            .collect();
        BoxBody::new(StreamBody::new(stream::iter(frames)))
    }

    #[tokio::test]
    async fn each_built_in_type_is_kept_and_given_back_byte_for_byte() {
        let none = Replayers::default();
        let small = Bytes::from(vec![1u8; COPY_BODY_MAX]);
        let large = Bytes::from(vec![2u8; COPY_BODY_MAX + 1]);
        for data in [small.clone(), large.clone(), Bytes::new()] {
            let (sent, again) = sent_then_replayed(Full::new(data.clone()), &none).await;
            assert_eq!((sent, again), (data.clone(), Some(data.clone())));
            let text = String::from_utf8(data.to_vec()).unwrap();
            let (sent, again) = sent_then_replayed(text, &none).await;
            assert_eq!((sent, again), (data.clone(), Some(data)));
        }
        let (sent, again) = sent_then_replayed(Empty::<Bytes>::new(), &none).await;
        assert_eq!((sent, again), (Bytes::new(), Some(Bytes::new())));

        let (body, whole) = chunks(5);
        let whole = Bytes::from(whole);
        let (sent, again) = sent_then_replayed(body, &none).await;
        assert_eq!((sent, again), (whole.clone(), Some(whole.clone())));
        let (body, _) = chunks(5);
        let (sent, again) = sent_then_replayed(UnsyncBoxBody::new(body), &none).await;
        assert_eq!((sent, again), (whole.clone(), Some(whole.clone())));

        let parts: [&'static [u8]; 3] = [b"one ", b"two ", b"three"];
        let expected = Bytes::from_static(b"one two three");
        let (sent, again) = sent_then_replayed(infallible_stream(&parts), &none).await;
        assert_eq!((sent, again), (expected.clone(), Some(expected.clone())));
        let unsync = UnsyncBoxBody::new(infallible_stream(&parts));
        let (sent, again) = sent_then_replayed(unsync, &none).await;
        assert_eq!((sent, again), (expected.clone(), Some(expected)));

        #[cfg(feature = "tonic")]
        {
            let (body, _) = chunks(5);
            let (sent, again) = sent_then_replayed(tonic::body::Body::new(body), &none).await;
            assert_eq!((sent, again), (whole.clone(), Some(whole)));
        }
    }

    #[tokio::test]
    async fn a_body_of_a_type_the_layer_does_not_know_is_sent_as_it_is_and_not_kept() {
        let mut body = Limited::new(Full::new(Bytes::from_static(b"limited")), 1024);
        assert!(KeptBody::keep(&mut body, 1024, &Replayers::default()).is_none());
        assert_eq!(bytes_of(body).await, "limited");
    }

    /// A body type of the application's own, made of any body.
    struct Custom(BoxBody<Bytes, BoxError>);

    impl Custom {
        fn new<B>(body: B) -> Self
        where
            B: Body<Data = Bytes> + Send + Sync + 'static,
            B::Error: Into<BoxError>,
        {
            Self(BoxBody::new(body.map_err(Into::into)))
        }
    }

    impl Body for Custom {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Pin::new(&mut self.0).poll_frame(cx)
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_end_stream()
        }

        fn size_hint(&self) -> SizeHint {
            self.0.size_hint()
        }
    }

    #[tokio::test]
    async fn a_registered_body_type_is_recorded_and_replayed() {
        let (body, whole) = chunks(6);
        let mut unregistered = Custom::new(body);
        assert!(KeptBody::keep(&mut unregistered, 1024, &Replayers::default()).is_none());

        let custom = Replayers::default().with::<Custom>(Custom::new);
        let (body, _) = chunks(6);
        let (sent, again) = sent_then_replayed(Custom::new(body), &custom).await;
        assert_eq!(sent, whole);
        assert_eq!(again.expect("replayed"), whole);

        // It is recorded like a boxed body: leading its replay past the limit, the body
        // sent is cut off with a `ReplayError`, and the replay is whole.
        let (body, whole) = chunks(10);
        let mut first = Custom::new(body);
        let kept = KeptBody::keep(&mut first, 10, &custom).expect("kept");
        let replay = kept
            .into_body()
            .expect("replayable before the body is read");
        let mut sent = Vec::new();
        let err = loop {
            match first.frame().await.expect("an error before the end") {
                Ok(frame) => sent.extend_from_slice(&frame.into_data().unwrap()),
                Err(err) => break err,
            }
        };
        assert_eq!(sent, whole[..12], "the limit and one frame");
        assert!(err.downcast_ref::<ReplayError>().is_some(), "{err}");
        assert_eq!(bytes_of(replay).await, whole);
    }

    /// An error of the application's own that can say a body was cut off.
    #[derive(Debug)]
    struct AppError;

    impl From<ReplayError> for AppError {
        fn from(_: ReplayError) -> Self {
            Self
        }
    }

    #[tokio::test]
    async fn a_type_registered_as_replayable_is_kept_as_it_says() {
        type Both = Either<Full<Bytes>, Boxed>;
        let custom = Replayers::default()
            .with_replayable::<Both>()
            .with_replayable::<BoxBody<Bytes, AppError>>();

        let left: Both = Either::Left(Full::new(Bytes::from_static(b"left")));
        let (sent, again) = sent_then_replayed(left, &custom).await;
        assert_eq!((sent, again), ("left".into(), Some("left".into())));
        let (body, whole) = chunks(4);
        let (sent, again) = sent_then_replayed(Both::Right(body), &custom).await;
        assert_eq!((sent, again), (whole.clone().into(), Some(whole.into())));

        let app = Full::new(Bytes::from_static(b"app")).map_err(|e| match e {});
        let app = BoxBody::<Bytes, AppError>::new(app);
        let (sent, again) = sent_then_replayed(app, &custom).await;
        assert_eq!((sent, again), ("app".into(), Some("app".into())));
        let names = format!("{custom:?}");
        assert!(
            names.contains("Either") && names.contains("AppError"),
            "{names}"
        );
    }

    #[tokio::test]
    async fn a_body_that_cannot_fail_is_replayed_only_when_it_fits_whole_and_never_cut_short() {
        let none = Replayers::default();
        let parts: [&'static [u8]; 3] = [b"one ", b"two ", b"three"];

        // Read to its end when the rejection comes: replayed.
        let mut first = infallible_stream(&parts);
        let kept = KeptBody::keep(&mut first, 1024, &none).expect("kept");
        assert_eq!(bytes_of(first).await, "one two three");
        let again = kept.into_body().expect("replayed");
        assert_eq!(bytes_of(again).await, "one two three");

        // Read part of the way, with no size hint to say the rest fits: not replayed,
        // and the body sent goes on whole.
        let mut first = infallible_stream(&parts);
        let kept = KeptBody::keep(&mut first, 1024, &none).expect("kept");
        let head = first.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(head, "one ");
        assert!(kept.into_body().is_none());
        assert_eq!(bytes_of(first).await, "two three");

        // Not read at all, but its size hint says it fits (`Full::new(b).boxed()`):
        // replayed, and both bodies read whole in any order.
        let mut first = Full::new(Bytes::from_static(b"fits")).boxed();
        let kept = KeptBody::keep(&mut first, 1024, &none).expect("kept");
        let again = kept.into_body().expect("replayed");
        assert_eq!(bytes_of(again).await, "fits");
        assert_eq!(bytes_of(first).await, "fits");
    }
}
