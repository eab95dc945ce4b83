//! Body wrappers: replayable request bodies and the layer's response body.
//!
//! A request is replayed once when the API rejects its token. Buffered bodies
//! ([`Full`], [`Empty`], [`String`]) are kept before sending: a body of up to 512 bytes
//! is copied into a buffer reused per thread (no allocation), a larger `Full` body is
//! cloned, which shares its bytes (see [`BufferedReplay`]). Streaming bodies
//! ([`BoxBody`], [`UnsyncBoxBody`], tonic's body) are wrapped so that the frames are
//! recorded as they are sent, up to the replay limit (64 KiB by default). A request whose
//! body had sent more than that when the rejection arrived, or whose size hint says it
//! will, is not replayable, and the caller then gets the rejection as it came; memory per
//! request stays within the limit.
//!
//! The recording is shared by the body that is sent and the one that is replayed: either
//! of them may read ahead of the other, so a response that arrives before the request
//! body was fully sent, or a replay that starts before the first body was read at all,
//! still yields every byte exactly once per body, with one exception: the first body may
//! lead a replay under way by the limit and one frame at most. Reading on past that, it
//! is cut off with a [`ReplayError`] instead (its request was answered; the replay is
//! what the caller waits for), so that the replay is sent whole within the limit's
//! memory; the replay never waits for the first body. Whichever of them polled the original
//! body last, both are woken when it has more to give: the first body may be kept
//! without being polled long after its rejection, and the replay does not wait on it.
//!
//! A frame is kept only while it may still be read: until the response comes back (the
//! [`Recording`] is then dropped) and, once a replay has started, until both bodies have
//! read it. A body that goes on sending after its response came (a long upload, a gRPC
//! stream) keeps nothing of what it sends.

use std::{
    collections::VecDeque,
    fmt,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Wake, Waker},
};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{
    combinators::{BoxBody, UnsyncBoxBody},
    BodyExt, Either, Empty, Full,
};
use pin_project_lite::pin_project;

use crate::replay::{BodyCopy, COPY_BODY_MAX};

/// A request body the layer knows how to replay.
///
/// Implemented for [`Full<Bytes>`], [`Empty<Bytes>`], [`String`], and for
/// [`BoxBody<Bytes, E>`] and [`UnsyncBoxBody<Bytes, E>`] whose error type can hold a
/// [`ReplayError`] (`E: From<ReplayError>`, as `BoxError` is): a recorded body reports
/// through it that it was cut off or outgrew the limit. For another body type, or a boxed
/// body whose error cannot (`BoxBody<Bytes, Infallible>`, what `Full::new(b).boxed()`
/// makes), box it with such an error before the layer, and use a client of that body
/// type:
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{combinators::BoxBody, BodyExt, Full};
/// use tower_oauth::BoxError;
///
/// let body: BoxBody<Bytes, BoxError> =
///     Full::new(Bytes::from("{}")).map_err(BoxError::from).boxed();
/// ```
///
/// An [`Either`] of two of these is replayable as its side is. hyper's `Incoming` is
/// accepted as it is but never replayed (it cannot be rebuilt); boxed like this, it is
/// recorded and replayed like any streaming body. With the `tonic` feature,
/// `tonic::body::Body` is replayable too.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a request body the OAuth layer can replay",
    note = "use `Full<Bytes>`, `Empty<Bytes>`, `String`, or a `BoxBody<Bytes, E>` whose error \
            `E` implements `From<ReplayError>` (`body.map_err(BoxError::from).boxed()`)"
)]
pub trait ReplayableBody: Body + Sized {
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

/// Replaces a streaming body with its recording wrapper, made by `wrap`.
fn record<B, F>(body: &mut B, limit: usize, wrap: F) -> Option<Recording<B>>
where
    B: Body<Data = Bytes> + Default,
    F: FnOnce(RecordingBody<B>) -> B,
{
    if body.is_end_stream() {
        return Some(Recording::empty());
    }
    match Recording::start(std::mem::take(body), limit) {
        Ok((recording_body, recording)) => {
            *body = wrap(recording_body);
            Some(recording)
        }
        Err(original) => {
            *body = original;
            None
        }
    }
}

impl<E> ReplayableBody for BoxBody<Bytes, E>
where
    E: From<ReplayError> + Send + 'static,
{
    type Replay = Recording<Self>;

    fn prepare(&mut self, limit: usize) -> Option<Self::Replay> {
        record(self, limit, |b| BoxBody::new(b.map_err(E::from_recorded)))
    }

    fn replay(replay: Self::Replay) -> Option<Self> {
        replay
            .replay()
            .map(|b| BoxBody::new(b.map_err(E::from_recorded)))
    }
}

impl<E> ReplayableBody for UnsyncBoxBody<Bytes, E>
where
    E: From<ReplayError> + Send + 'static,
{
    type Replay = Recording<Self>;

    fn prepare(&mut self, limit: usize) -> Option<Self::Replay> {
        record(self, limit, |b| {
            UnsyncBoxBody::new(b.map_err(E::from_recorded))
        })
    }

    fn replay(replay: Self::Replay) -> Option<Self> {
        replay
            .replay()
            .map(|b| UnsyncBoxBody::new(b.map_err(E::from_recorded)))
    }
}

/// Either side, as that side is: replayed when it is.
impl<L, R> ReplayableBody for Either<L, R>
where
    L: ReplayableBody,
    R: ReplayableBody,
    Self: Body,
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
        record(self, limit, tonic::body::Body::new)
    }

    fn replay(replay: Self::Replay) -> Option<Self> {
        replay.replay().map(tonic::body::Body::new)
    }
}

#[cfg(any(feature = "https", feature = "test-util"))]
impl ReplayableBody for hyper::body::Incoming {
    type Replay = std::convert::Infallible;

    /// An incoming body (a proxy forwarding a request) cannot be rebuilt: never replayed.
    fn prepare(&mut self, _limit: usize) -> Option<Self::Replay> {
        None
    }

    fn replay(replay: Self::Replay) -> Option<Self> {
        match replay {}
    }
}

/// Converts the recorder's error into a body's error type.
trait FromRecorded<E> {
    fn from_recorded(err: RecordError<E>) -> Self;
}

impl<E: From<ReplayError>> FromRecorded<E> for E {
    fn from_recorded(err: RecordError<E>) -> Self {
        match err {
            RecordError::Body(e) => e,
            RecordError::Replay(e) => E::from(e),
        }
    }
}

/// A recorded body could not go on: a replayed body whose data had been dropped from the
/// recording because the body outgrew the replay limit, or the body first sent, cut off
/// because it led its replay, still behind it, past the limit (its request had been
/// answered and is being sent again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayError(Lost);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    Replay,
    Superseded,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Lost::Replay => "request body outgrew the replay limit and cannot be replayed",
            Lost::Superseded => {
                "request body cut off: its request is being replayed, and reading on would \
                 take the replay past the replay limit"
            }
        })
    }
}

impl std::error::Error for ReplayError {}

#[cfg(feature = "tonic")]
impl From<ReplayError> for tonic::Status {
    fn from(err: ReplayError) -> Self {
        tonic::Status::internal(err.to_string())
    }
}

/// The error of a recording body: the original body's error, or a replay failure.
#[derive(Debug)]
pub enum RecordError<E> {
    /// The original body failed.
    Body(E),
    /// The replay lost data (see [`ReplayError`]).
    Replay(ReplayError),
}

impl<E: fmt::Display> fmt::Display for RecordError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Body(e) => e.fmt(f),
            Self::Replay(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RecordError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Body(e) => Some(e),
            Self::Replay(e) => Some(e),
        }
    }
}

/// The shared recording of a streaming body; what rebuilds it for a replay.
///
/// While it is kept, the frames the body sends are kept too (up to the replay limit), for
/// the replay it may make. Dropping it lets go of them: the body then keeps nothing of
/// what it sends.
pub struct Recording<B> {
    shared: Arc<Mutex<Shared<B>>>,
}

impl<B> Drop for Recording<B> {
    fn drop(&mut self) {
        let mut shared = lock(&self.shared);
        shared.replayable = false;
        shared.release();
    }
}

impl<B> fmt::Debug for Recording<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recording").finish_non_exhaustive()
    }
}

struct Shared<B> {
    /// The original body, while it has more to give.
    source: Option<B>,
    /// What the source is polled with, whichever reader polls it: a waker of `waiting`.
    source_waker: Waker,
    waiting: Arc<Waiting>,
    /// Kept data frames; `chunks[0]` is frame number `dropped`.
    chunks: VecDeque<Bytes>,
    /// The number of frames let go of: those no reader can read any more and, once the
    /// body outgrew the limit or failed, all of them (a reader behind then gets an error).
    dropped: usize,
    /// Data bytes taken from the source so far, kept or not.
    recorded_bytes: usize,
    /// Data bytes in `chunks`.
    kept_bytes: usize,
    /// Whether the first body was cut off to keep its replay within the limit.
    first_cut: bool,
    limit: usize,
    trailers: Option<HeaderMap>,
    /// Set once the source has ended.
    done: bool,
    /// Whether the [`Recording`] is kept: a replay may still start from the first frame.
    replayable: bool,
    /// The number of the next data frame each reader yields, while that reader exists.
    readers: [Option<usize>; 2],
}

/// The readers of a recording: the body first sent and its replay.
const FIRST: usize = 0;
const REPLAY: usize = 1;

/// The readers waiting on the source, each with its own waker.
///
/// A source keeps the waker of its last poll only, and the reader that polled it last may
/// not poll again for a long time while keeping its body: a first attempt's body still
/// held by a connection after its rejection (an HTTP/2 stream waiting for window, an
/// HTTP/1 connection with a full write buffer). The source is therefore polled with a
/// waker that wakes every waiting reader, so a replay is not stalled behind it.
#[derive(Default)]
struct Waiting {
    // Its own lock, not the recording's: a source may wake while being polled, that is
    // while the recording is locked.
    readers: Mutex<[Option<Waker>; 2]>,
}

impl Waiting {
    /// Registers `reader`'s waker, to be woken when the source is ready.
    fn register(&self, reader: usize, waker: &Waker) {
        let mut readers = lock(&self.readers);
        match &mut readers[reader] {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }

    /// Takes `reader`'s waker out, and the other reader's: the one to wake.
    fn take_other(&self, reader: usize) -> Option<Waker> {
        let mut readers = lock(&self.readers);
        readers[reader] = None;
        readers[1 - reader].take()
    }
}

impl Wake for Waiting {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let readers = std::mem::take(&mut *lock(&self.readers));
        for waker in readers.into_iter().flatten() {
            waker.wake();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<B> Shared<B> {
    fn new(source: Option<B>, limit: usize) -> Self {
        let waiting = Arc::new(Waiting::default());
        Self {
            done: source.is_none(),
            source,
            source_waker: Waker::from(waiting.clone()),
            waiting,
            chunks: VecDeque::new(),
            dropped: 0,
            recorded_bytes: 0,
            kept_bytes: 0,
            first_cut: false,
            limit,
            trailers: None,
            replayable: true,
            readers: [None; 2],
        }
    }

    /// Where `reader` is: the number of the next data frame it yields.
    fn pos(&self, reader: usize) -> usize {
        // Set for as long as the reader exists.
        self.readers[reader].unwrap_or_default()
    }

    /// Lets go of the frames no one can read any more: a replay still to be made would
    /// read from the first frame, each reader reads on from where it is.
    fn release(&mut self) {
        let needed = if self.replayable {
            0
        } else {
            self.readers
                .iter()
                .flatten()
                .copied()
                .min()
                .unwrap_or(usize::MAX)
        };
        while self.dropped < needed {
            let Some(chunk) = self.chunks.pop_front() else {
                break;
            };
            self.kept_bytes -= chunk.len();
            self.dropped += 1;
        }
    }

    /// Lets go of every kept frame: a reader behind gets an error.
    fn drop_all(&mut self) {
        self.dropped += self.chunks.len();
        self.chunks.clear();
        self.kept_bytes = 0;
    }
}

impl<B: Body<Data = Bytes>> Recording<B> {
    fn empty() -> Self {
        Self {
            shared: Arc::new(Mutex::new(Shared::new(None, 0))),
        }
    }

    /// Starts recording `body`, or gives it back if its size hint already exceeds `limit`.
    fn start(body: B, limit: usize) -> Result<(RecordingBody<B>, Self), B> {
        if body.size_hint().lower() > limit as u64 {
            return Err(body);
        }
        let mut shared = Shared::new(Some(body), limit);
        shared.readers[FIRST] = Some(0);
        let shared = Arc::new(Mutex::new(shared));
        let body = RecordingBody {
            shared: shared.clone(),
            reader: FIRST,
            trailers_sent: false,
        };
        Ok((body, Self { shared }))
    }

    /// A body that yields the recording from the start, then the rest of the source.
    fn replay(self) -> Option<RecordingBody<B>> {
        let mut shared = lock(&self.shared);
        // While the recording is kept, frames are let go of only past the limit or after
        // the body failed.
        if shared.dropped > 0 {
            return None;
        }
        // Set before this recording is dropped, so that the frames stay for the replay.
        shared.readers[REPLAY] = Some(0);
        drop(shared);
        Some(RecordingBody {
            shared: self.shared.clone(),
            reader: REPLAY,
            trailers_sent: false,
        })
    }
}

/// One reader of a recording: the body first sent, or its replay.
pub struct RecordingBody<B> {
    shared: Arc<Mutex<Shared<B>>>,
    /// Which reader this is: [`FIRST`] or [`REPLAY`].
    reader: usize,
    trailers_sent: bool,
}

impl<B> fmt::Debug for RecordingBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reader = if self.reader == FIRST {
            "first"
        } else {
            "replay"
        };
        f.debug_struct("RecordingBody")
            .field("reader", &reader)
            .finish_non_exhaustive()
    }
}

impl<B> Drop for RecordingBody<B> {
    fn drop(&mut self) {
        let mut shared = lock(&self.shared);
        shared.readers[self.reader] = None;
        shared.release();
        // Whichever reader polled the source last, the source wakes the others: only this
        // reader's waker is to be let go.
        lock(&shared.waiting.readers)[self.reader] = None;
    }
}

/// What polling a recording body gives.
type Polled<E> = Poll<Option<Result<Frame<Bytes>, RecordError<E>>>>;

impl<B> Shared<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    /// The next frame for `reader`, and the other reader's waker when this poll took from
    /// the source something the other one waits for (to be woken once the recording is
    /// unlocked).
    fn read(
        &mut self,
        reader: usize,
        trailers_sent: &mut bool,
        cx: &mut Context<'_>,
    ) -> (Polled<B::Error>, Option<Waker>) {
        let lost = |why| Poll::Ready(Some(Err(RecordError::Replay(ReplayError(why)))));
        if reader == FIRST && self.first_cut {
            return (lost(Lost::Superseded), None);
        }
        let pos = self.pos(reader);
        if pos < self.dropped {
            // Behind the other reader, with frames let go of: for the first body, that
            // other reader is its replay.
            let why = if reader == FIRST {
                Lost::Superseded
            } else {
                Lost::Replay
            };
            return (lost(why), None);
        }
        let recorded = self.dropped + self.chunks.len();
        if pos < recorded {
            let chunk = self.chunks[pos - self.dropped].clone();
            self.readers[reader] = Some(pos + 1);
            self.release();
            return (Poll::Ready(Some(Ok(Frame::data(chunk)))), None);
        }
        if self.done {
            if !*trailers_sent {
                *trailers_sent = true;
                if let Some(t) = &self.trailers {
                    return (Poll::Ready(Some(Ok(Frame::trailers(t.clone())))), None);
                }
            }
            return (Poll::Ready(None), None);
        }
        // The first body leads its replay, which has frames yet to read: reading on would
        // keep more for the replay. Once past the limit (by the last frame it read; a body
        // within the limit reads its end), the first body is cut off rather than
        // the replay (the first request has been answered; the replay is what its caller
        // waits for). It is not made to wait instead: a connection may keep the first body
        // without ever polling it again, and the replay might then never be sent.
        let replay_behind = self.readers[REPLAY].is_some_and(|at| at < recorded);
        if reader == FIRST && !self.replayable && replay_behind && self.kept_bytes > self.limit {
            self.first_cut = true;
            self.readers[FIRST] = None;
            self.release();
            return (lost(Lost::Superseded), None);
        }
        let Some(source) = self.source.as_mut() else {
            return (Poll::Ready(None), None);
        };
        // Registered before the poll: a source may wake its waker within the poll.
        self.waiting.register(reader, cx.waker());
        let polled = Pin::new(source).poll_frame(&mut Context::from_waker(&self.source_waker));
        let Poll::Ready(polled) = polled else {
            return (Poll::Pending, None);
        };
        // The other reader, if it waits on the source, now has this frame (or the end)
        // to read from the recording.
        let other = self.waiting.take_other(reader);
        let frame = match polled {
            None => {
                self.done = true;
                self.source = None;
                *trailers_sent = true;
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                // The source is unusable now; every reader after this one sees the end.
                self.done = true;
                self.source = None;
                self.drop_all();
                self.dropped += 1;
                Poll::Ready(Some(Err(RecordError::Body(e))))
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    self.recorded_bytes = self.recorded_bytes.saturating_add(data.len());
                    // This reader is the furthest: the frame is wanted by a replay still
                    // to be made, or by the other reader, behind it. A replay under way
                    // keeps what it has yet to read whatever the body's length: the first
                    // body is cut off before that passes the limit (above).
                    let wanted = self.replayable || self.readers[1 - reader].is_some();
                    let for_replay = reader == FIRST && self.readers[REPLAY].is_some();
                    if wanted && (self.recorded_bytes <= self.limit || for_replay) {
                        self.kept_bytes += data.len();
                        self.chunks.push_back(data.clone());
                    } else {
                        // Past the limit, nothing is kept any more (replays can no longer
                        // be made); with no one to read it, this frame is not kept either.
                        self.drop_all();
                        self.dropped += 1;
                    }
                    self.readers[reader] = Some(pos + 1);
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => {
                        self.trailers = Some(trailers.clone());
                        self.done = true;
                        self.source = None;
                        *trailers_sent = true;
                        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                    }
                    // Unknown frame kinds are neither data nor trailers: skip them.
                    Err(_) => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                },
            },
        };
        (frame, other)
    }
}

impl<B> Body for RecordingBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = RecordError<B::Error>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        // The lock is never held across an await: polling is synchronous. Wakers are
        // woken once it is released.
        let mut shared = lock(&this.shared);
        let (polled, other) = shared.read(this.reader, &mut this.trailers_sent, cx);
        drop(shared);
        if let Some(other) = other {
            other.wake();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let shared = lock(&self.shared);
        let recorded = shared.dropped + shared.chunks.len();
        shared.done
            && shared.pos(self.reader) >= recorded
            && (self.trailers_sent || shared.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        let shared = lock(&self.shared);
        let pending: u64 = shared
            .chunks
            .iter()
            .skip(shared.pos(self.reader).saturating_sub(shared.dropped))
            .map(|c| c.len() as u64)
            .sum();
        match &shared.source {
            Some(source) => {
                let hint = source.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(hint.lower() + pending);
                if let Some(upper) = hint.upper() {
                    out.set_upper(upper + pending);
                }
                out
            }
            None => SizeHint::with_exact(pending),
        }
    }
}

pin_project! {
    /// The layer's response body: the inner body unchanged, or, after the layer had to
    /// read the start of a 401 to classify it, that start followed by the rest.
    ///
    /// Its data is [`Bytes`] and its error the inner body's, so hyper and tonic take it
    /// as they took the inner body.
    pub struct ResponseBody<B: Body> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B: Body> {
        Inner { #[pin] body: B },
        // Boxed: rare, and left inline it would make every response larger to move.
        Prefixed { prefixed: Box<Prefixed<B>> },
    }
}

struct Prefixed<B: Body> {
    prefix: VecDeque<Frame<Bytes>>,
    rest: Option<Pin<Box<B>>>,
    error: Option<B::Error>,
}

impl<B: Body> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn prefixed(
        prefix: VecDeque<Frame<Bytes>>,
        rest: Option<Pin<Box<B>>>,
        error: Option<B::Error>,
    ) -> Self {
        Self {
            kind: Kind::Prefixed {
                prefixed: Box::new(Prefixed {
                    prefix,
                    rest,
                    error,
                }),
            },
        }
    }
}

impl<B: Body> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Prefixed { .. } => "prefixed",
        };
        f.debug_struct("ResponseBody").field("kind", &kind).finish()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: Buf,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map(|frame| frame.map_data(into_bytes)))),
            KindProj::Prefixed { prefixed } => {
                let Prefixed {
                    prefix,
                    rest,
                    error,
                } = &mut **prefixed;
                if let Some(frame) = prefix.pop_front() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                if let Some(e) = error.take() {
                    return Poll::Ready(Some(Err(e)));
                }
                match rest {
                    Some(body) => body
                        .as_mut()
                        .poll_frame(cx)
                        .map(|f| f.map(|r| r.map(|frame| frame.map_data(into_bytes)))),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Prefixed { prefixed } => {
                let Prefixed {
                    prefix,
                    rest,
                    error,
                } = &**prefixed;
                prefix.is_empty()
                    && error.is_none()
                    && rest.as_ref().is_none_or(|b| b.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Prefixed { prefixed } => {
                let Prefixed { prefix, rest, .. } = &**prefixed;
                let buffered: u64 = prefix
                    .iter()
                    .filter_map(Frame::data_ref)
                    .map(|c| c.len() as u64)
                    .sum();
                let Some(rest) = rest else {
                    return SizeHint::with_exact(buffered);
                };
                let hint = rest.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(hint.lower() + buffered);
                if let Some(upper) = hint.upper() {
                    out.set_upper(upper + buffered);
                }
                out
            }
        }
    }
}

fn into_bytes<D: Buf>(mut data: D) -> Bytes {
    // For `Bytes` this is a move, not a copy.
    data.copy_to_bytes(data.remaining())
}

/// What a request keeps of its body for a replay.
pub(crate) struct KeptBody<B: ReplayableBody>(B::Replay);

impl<B: ReplayableBody> KeptBody<B> {
    /// Makes the body replayable in place and keeps what a replay needs; `None` when it
    /// cannot be replayed.
    #[inline]
    pub(crate) fn keep(body: &mut B, limit: usize) -> Option<Self> {
        body.prepare(limit).map(Self)
    }

    /// The body again, for the replay.
    pub(crate) fn into_body(self) -> Option<B> {
        B::replay(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::BoxError;
    use futures_util::stream;
    use http_body_util::StreamBody;

    type Boxed = BoxBody<Bytes, BoxError>;

    fn chunks(n: u8) -> (Boxed, Vec<u8>) {
        let parts: Vec<Bytes> = (0..n).map(|i| Bytes::from(vec![i; 3])).collect();
        let whole = parts.concat();
        let mut frames: Vec<Result<Frame<Bytes>, BoxError>> =
            parts.into_iter().map(|c| Ok(Frame::data(c))).collect();
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "42".parse().unwrap());
        frames.push(Ok(Frame::trailers(trailers)));
        (BoxBody::new(StreamBody::new(stream::iter(frames))), whole)
    }

    async fn read_all(mut body: Boxed) -> (Vec<u8>, Option<HeaderMap>) {
        let mut data = Vec::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            match frame.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(f) => trailers = f.into_trailers().ok(),
            }
        }
        (data, trailers)
    }

    async fn read_n(body: &mut Boxed, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..n {
            let frame = body.frame().await.unwrap().unwrap();
            out.extend_from_slice(frame.data_ref().unwrap());
        }
        out
    }

    #[tokio::test]
    async fn a_replay_before_the_first_read_yields_every_byte_once() {
        let (body, whole) = chunks(5);
        let mut first = body;
        let replay = first.prepare(1024);
        let replay = Boxed::replay(replay.unwrap()).unwrap();
        let (got, trailers) = read_all(replay).await;
        assert_eq!(got, whole);
        assert_eq!(trailers.unwrap()["x-checksum"], "42");
        // The first body, read afterwards, still yields everything.
        assert_eq!(read_all(first).await.0, whole);
    }

    #[tokio::test]
    async fn a_replay_after_a_partial_read_yields_every_byte_once() {
        let (body, whole) = chunks(6);
        let mut first = body;
        let replay = first.prepare(1024);
        let head = read_n(&mut first, 2).await;
        assert_eq!(head, whole[..6]);
        let mut replay = Boxed::replay(replay.unwrap()).unwrap();
        // Interleave: the replay reads past the first body's position.
        let mut got = read_n(&mut replay, 4).await;
        let rest_of_first = read_n(&mut first, 2).await;
        assert_eq!(rest_of_first, whole[6..12]);
        got.extend(read_all(replay).await.0);
        assert_eq!(got, whole);
        assert_eq!(read_all(first).await.0, whole[12..]);
    }

    #[tokio::test]
    async fn a_body_that_outgrows_the_limit_is_not_replayable() {
        let (body, whole) = chunks(10);
        let mut first = body;
        let replay = first.prepare(10);
        assert_eq!(
            read_all(first).await.0,
            whole,
            "the first body is unaffected"
        );
        assert!(Boxed::replay(replay.unwrap()).is_none());
    }

    #[tokio::test]
    async fn a_first_body_leading_its_replay_past_the_limit_is_cut_off_and_the_replay_is_whole() {
        let (body, whole) = chunks(10);
        let mut first = body;
        let replay = first.prepare(10);
        let replay = Boxed::replay(replay.unwrap()).unwrap();
        // Nine bytes kept for the replay: one more frame may be read, then no more.
        assert_eq!(read_n(&mut first, 4).await, whole[..12]);
        for _ in 0..2 {
            let err = first.frame().await.unwrap().unwrap_err();
            let err = err.downcast::<ReplayError>().unwrap();
            assert_eq!(err.0, Lost::Superseded, "{err}");
            assert!(err.to_string().starts_with("request body cut off"), "{err}");
        }
        let (got, trailers) = read_all(replay).await;
        assert_eq!(got, whole, "the replay yields every byte");
        assert_eq!(trailers.unwrap()["x-checksum"], "42");
    }

    #[tokio::test]
    async fn a_first_body_within_the_limit_reads_its_end_while_the_replay_waits() {
        let (body, whole) = chunks(3);
        let mut first = body;
        let replay = first.prepare(whole.len());
        let replay = Boxed::replay(replay.unwrap()).unwrap();
        let (got, trailers) = read_all(first).await;
        assert_eq!(got, whole);
        assert_eq!(trailers.unwrap()["x-checksum"], "42");
        assert_eq!(read_all(replay).await.0, whole);
    }

    #[tokio::test]
    async fn a_first_body_behind_a_replay_that_passed_the_limit_is_cut_off() {
        let (body, whole) = chunks(10);
        let mut first = body;
        let replay = first.prepare(10);
        let mut replay = Boxed::replay(replay.unwrap()).unwrap();
        // The replay reads 15 bytes ahead: it does not wait, the first body's frames go.
        assert_eq!(read_n(&mut replay, 5).await, whole[..15]);
        let err = first.frame().await.unwrap().unwrap_err();
        assert_eq!(err.downcast::<ReplayError>().unwrap().0, Lost::Superseded);
        assert_eq!(read_all(replay).await.0, whole[15..]);
    }

    #[tokio::test]
    async fn a_size_hint_over_the_limit_is_not_recorded() {
        let hundred = || Boxed::new(Full::new(Bytes::from(vec![1u8; 100])).map_err(|e| match e {}));
        assert!(hundred().prepare(99).is_none());
        assert!(
            hundred().prepare(100).is_some(),
            "exactly the limit is recorded"
        );
    }

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
    async fn the_prefixed_response_body_yields_prefix_then_rest() {
        let rest = Box::pin(Full::new(Bytes::from_static(b"world")));
        let prefix = VecDeque::from([Frame::data(Bytes::from_static(b"hello "))]);
        let mut body = ResponseBody::prefixed(prefix, Some(rest), None);
        assert_eq!(body.size_hint().exact(), Some(11));
        assert_eq!(format!("{body:?}"), r#"ResponseBody { kind: "prefixed" }"#);
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert_eq!(got, b"hello world");
        assert!(body.is_end_stream());
    }

    async fn bytes_of<B: Body<Data = Bytes>>(body: B) -> Bytes
    where
        B::Error: fmt::Debug,
    {
        body.collect().await.unwrap().to_bytes()
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
    fn the_response_body_is_at_most_a_word_larger_than_the_inner_body() {
        // The layer's response is moved on every request: the rare prefixed form must
        // not make it larger.
        fn extra<B: Body>() -> usize {
            std::mem::size_of::<ResponseBody<B>>() - std::mem::size_of::<B>()
        }
        let word = std::mem::size_of::<usize>();
        assert!(extra::<Full<Bytes>>() <= word);
        assert!(extra::<Empty<Bytes>>() <= word);
        assert!(extra::<Boxed>() <= word);
        assert!(extra::<String>() <= word);
    }

    /// A source fed by the test that, like real bodies, keeps the waker of its last poll
    /// only.
    #[derive(Clone, Default)]
    struct Gate(Arc<Mutex<(VecDeque<Bytes>, Option<Waker>)>>);

    impl Gate {
        fn body(&self) -> Boxed {
            Boxed::new(self.clone())
        }

        fn send(&self, data: Bytes) {
            let waker = {
                let mut gate = self.0.lock().unwrap();
                gate.0.push_back(data);
                gate.1.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    impl Body for Gate {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            let mut gate = self.0.lock().unwrap();
            match gate.0.pop_front() {
                Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                None => {
                    gate.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }
    }

    /// A waker that records that it was woken.
    struct Woken(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Woken {
        fn waker() -> (Waker, Arc<Self>) {
            let woken = Arc::new(Self(false.into()));
            (Waker::from(woken.clone()), woken)
        }

        fn get(&self) -> bool {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    fn poll(body: &mut Boxed, waker: &Waker) -> Poll<Option<Bytes>> {
        Pin::new(body)
            .poll_frame(&mut Context::from_waker(waker))
            .map(|f| f.map(|f| f.unwrap().into_data().unwrap()))
    }

    /// Bytes that say when the last handle to them is dropped.
    fn tracked(len: usize) -> (Bytes, Arc<std::sync::atomic::AtomicBool>) {
        struct Owner(Vec<u8>, Arc<std::sync::atomic::AtomicBool>);
        impl AsRef<[u8]> for Owner {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }
        impl Drop for Owner {
            fn drop(&mut self) {
                self.1.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        (
            Bytes::from_owner(Owner(vec![7; len], dropped.clone())),
            dropped,
        )
    }

    fn is_dropped(flag: &std::sync::atomic::AtomicBool) -> bool {
        flag.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[test]
    fn a_reader_waiting_on_the_source_is_woken_though_another_reader_polled_it_last() {
        let gate = Gate::default();
        let mut first = gate.body();
        let mut replay = Boxed::replay(first.prepare(1024).unwrap()).unwrap();
        let (replay_waker, replay_woken) = Woken::waker();
        let (first_waker, _) = Woken::waker();
        assert!(poll(&mut replay, &replay_waker).is_pending());
        // The first body polls last, then is kept without being polled again.
        assert!(poll(&mut first, &first_waker).is_pending());
        gate.send(Bytes::from_static(b"two"));
        assert!(replay_woken.get(), "the replay is woken");
        assert_eq!(
            poll(&mut replay, &replay_waker),
            Poll::Ready(Some("two".into()))
        );
        drop(first);
    }

    #[test]
    fn a_recording_lets_go_of_its_frames_once_no_replay_can_be_made() {
        let gate = Gate::default();
        let mut first = gate.body();
        let handle = first.prepare(1024).unwrap();
        let waker = Waker::noop();
        let (data, sent_dropped) = tracked(10);
        gate.send(data);
        assert!(poll(&mut first, waker).is_ready());
        assert!(
            !is_dropped(&sent_dropped),
            "kept while a replay can be made"
        );
        drop(handle);
        assert!(is_dropped(&sent_dropped), "let go with the replay handle");
        let (data, later_dropped) = tracked(10);
        gate.send(data);
        assert!(poll(&mut first, waker).is_ready());
        assert!(is_dropped(&later_dropped), "no longer recorded");
        // The first body itself is unaffected.
        gate.send(Bytes::from_static(b"three"));
        assert_eq!(poll(&mut first, waker), Poll::Ready(Some("three".into())));
    }

    #[test]
    fn a_frame_is_let_go_once_every_reader_has_read_it() {
        let gate = Gate::default();
        let mut first = gate.body();
        let mut replay = Boxed::replay(first.prepare(1024).unwrap()).unwrap();
        let waker = Waker::noop();
        let (data, one_dropped) = tracked(10);
        gate.send(data);
        assert!(poll(&mut first, waker).is_ready());
        assert!(!is_dropped(&one_dropped), "the replay has yet to read it");
        assert!(poll(&mut replay, waker).is_ready());
        assert!(is_dropped(&one_dropped), "both readers have read it");
        // A frame the replay has yet to read outlives the first body, not the replay.
        let (data, two_dropped) = tracked(10);
        gate.send(data);
        assert!(poll(&mut first, waker).is_ready());
        drop(first);
        assert!(!is_dropped(&two_dropped));
        assert!(poll(&mut replay, waker).is_ready());
        assert!(is_dropped(&two_dropped));
        assert!(poll(&mut replay, waker).is_pending());
    }

    #[test]
    fn frames_kept_for_a_first_body_behind_go_when_its_replay_reads_past_the_limit() {
        let gate = Gate::default();
        let mut first = gate.body();
        let mut replay = Boxed::replay(first.prepare(15).unwrap()).unwrap();
        let waker = Waker::noop();
        let (data, kept_dropped) = tracked(10);
        gate.send(data);
        assert!(poll(&mut replay, waker).is_ready());
        assert!(
            !is_dropped(&kept_dropped),
            "the first body has yet to read it"
        );
        // The replay reads on past the limit: the first body behind is cut off, and what
        // was kept for it goes.
        gate.send(Bytes::from_static(b"0123456789"));
        assert!(poll(&mut replay, waker).is_ready());
        assert!(is_dropped(&kept_dropped), "nothing kept past the limit");
        drop(first);
    }

    #[tokio::test]
    async fn what_both_bodies_have_read_no_longer_counts_against_the_first_bodys_lead() {
        let (body, whole) = chunks(10);
        let mut first = body;
        let mut replay = Boxed::replay(first.prepare(9).unwrap()).unwrap();
        // Level, past the limit: each frame is let go of once both have read it.
        for frame in whole[..9].chunks(3) {
            assert_eq!(read_n(&mut first, 1).await, frame);
            assert_eq!(read_n(&mut replay, 1).await, frame);
        }
        // Then leading by the limit (9 bytes) and a frame, and no more.
        assert_eq!(read_n(&mut first, 4).await, whole[9..21]);
        let err = first.frame().await.unwrap().unwrap_err();
        assert_eq!(err.downcast::<ReplayError>().unwrap().0, Lost::Superseded);
        assert_eq!(read_all(replay).await.0, whole[9..]);
    }

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

    #[test]
    fn a_recording_error_shows_and_chains_the_error_it_carries() {
        let failed = RecordError::Body(std::io::Error::other("connection reset"));
        assert_eq!(failed.to_string(), "connection reset");
        let source = std::error::Error::source(&failed).expect("a source");
        assert_eq!(source.to_string(), "connection reset");

        let lost = RecordError::<std::io::Error>::Replay(ReplayError(Lost::Replay));
        assert_eq!(
            lost.to_string(),
            "request body outgrew the replay limit and cannot be replayed"
        );
        let source = std::error::Error::source(&lost).expect("a source");
        assert!(source.is::<ReplayError>());
    }

    #[test]
    fn a_reader_polled_from_another_task_is_woken_in_that_task() {
        let gate = Gate::default();
        let mut first = gate.body();
        let _replay = first.prepare(1024).unwrap();
        let (before, _) = Woken::waker();
        let (after, after_woken) = Woken::waker();
        assert!(poll(&mut first, &before).is_pending());
        // The body moved to another task, which polls it with its own waker.
        assert!(poll(&mut first, &after).is_pending());
        gate.send(Bytes::from_static(b"one"));
        assert!(after_woken.get(), "the task polling it now is woken");
        assert_eq!(poll(&mut first, &after), Poll::Ready(Some("one".into())));
    }

    #[tokio::test]
    async fn a_failed_source_is_an_error_for_every_reader_never_an_early_end() {
        let failing = || {
            let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
                Ok(Frame::data(Bytes::from_static(b"one"))),
                Err("boom".into()),
            ];
            Boxed::new(StreamBody::new(stream::iter(frames)))
        };
        // A replay made after the failure: none can be.
        let mut first = failing();
        let recording = first.prepare(1024).unwrap();
        assert_eq!(read_n(&mut first, 1).await, b"one");
        let err = first.frame().await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "boom");
        assert!(Boxed::replay(recording).is_none());

        // A replay made before, level with the first body when the source fails.
        let mut first = failing();
        let mut replay = Boxed::replay(first.prepare(1024).unwrap()).unwrap();
        assert_eq!(read_n(&mut replay, 1).await, b"one");
        assert_eq!(read_n(&mut first, 1).await, b"one");
        assert_eq!(
            first.frame().await.unwrap().unwrap_err().to_string(),
            "boom"
        );
        let err = replay.frame().await.expect("not an end").unwrap_err();
        assert!(err.is::<ReplayError>(), "{err}");
    }

    #[tokio::test]
    async fn a_recording_body_hints_its_size_and_end_as_it_is_read() {
        let mut first =
            Boxed::new(Full::new(Bytes::from_static(b"twelve bytes")).map_err(|e| match e {}));
        let replay = Boxed::replay(first.prepare(1024).unwrap()).unwrap();
        for body in [&first, &replay] {
            assert_eq!(body.size_hint().exact(), Some(12));
            assert!(!body.is_end_stream());
        }
        assert_eq!(read_n(&mut first, 1).await, b"twelve bytes");
        // The source has given its bytes; the replay has them still to yield.
        assert_eq!(replay.size_hint().exact(), Some(12));
        assert_eq!(first.size_hint().exact(), Some(0));
        assert!(first.frame().await.is_none());
        assert!(first.is_end_stream());
        assert!(!replay.is_end_stream());
        assert_eq!(read_all(replay).await.0, b"twelve bytes");

        // With trailers: the end is after them.
        let (body, whole) = chunks(2);
        let mut first = body;
        let _recording = first.prepare(1024).unwrap();
        assert_eq!(read_n(&mut first, 2).await, whole);
        let trailers = first.frame().await.unwrap().unwrap();
        assert!(trailers.is_trailers());
        assert!(first.is_end_stream(), "ended once its trailers are read");
    }

    #[test]
    fn a_prefixed_response_body_ends_after_its_prefix_its_error_and_its_rest() {
        let hello = || VecDeque::from([Frame::data(Bytes::from_static(b"hello"))]);
        let empty_rest = || {
            Some(Box::pin(Boxed::new(
                Full::new(Bytes::new()).map_err(|e| match e {}),
            )))
        };
        let cases: [(ResponseBody<Boxed>, bool); 4] = [
            (ResponseBody::prefixed(hello(), None, None), false),
            (ResponseBody::prefixed(hello(), empty_rest(), None), false),
            (
                ResponseBody::prefixed(VecDeque::new(), None, Some("reset".into())),
                false,
            ),
            (
                ResponseBody::prefixed(VecDeque::new(), empty_rest(), None),
                true,
            ),
        ];
        for (i, (body, ended)) in cases.into_iter().enumerate() {
            assert_eq!(body.is_end_stream(), ended, "case {i}");
        }
    }

    #[test]
    fn a_reader_dropped_behind_the_other_lets_go_of_what_only_it_had_left_to_read() {
        let gate = Gate::default();
        let mut first = gate.body();
        // No further replay can be made once this one is.
        let mut replay = Boxed::replay(first.prepare(1024).unwrap()).unwrap();
        let (data, dropped) = tracked(10);
        gate.send(data);
        assert!(poll(&mut replay, Waker::noop()).is_ready());
        assert!(!is_dropped(&dropped), "the first body has yet to read it");
        drop(first);
        assert!(is_dropped(&dropped), "let go with the first body");
    }

    #[test]
    fn a_recording_body_says_which_reader_it_is() {
        let (body, _) = chunks(1);
        let Ok((first, recording)) = Recording::start(body, 1024) else {
            panic!("recorded");
        };
        let replay = recording.replay().unwrap();
        assert_eq!(
            format!("{first:?}"),
            r#"RecordingBody { reader: "first", .. }"#
        );
        assert_eq!(
            format!("{replay:?}"),
            r#"RecordingBody { reader: "replay", .. }"#
        );
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
