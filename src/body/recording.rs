//! The recording of a streaming request body, shared by the body first sent and its
//! replay: which frames are kept, which reader may read what, and who is woken.

use std::{
    collections::VecDeque,
    fmt, mem,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Wake, Waker},
};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::error::{Lost, RecordError, ReplayError};
use crate::error::BoxError;

/// The shared recording of a streaming body; what rebuilds it for a replay.
///
/// While it is kept, the frames the body sends are kept too (up to the replay limit), for
/// the replay it may make. Dropping it lets go of them: the body then keeps nothing of
/// what it sends.
pub struct Recording<B> {
    shared: Arc<Mutex<Shared<B>>>,
}

/// Whether a recorded body can be cut off: whether its error type can say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cut {
    /// It can (its error can hold a [`ReplayError`]): the body first sent is cut off
    /// when it leads its replay past the limit, or falls behind a replay that passed it.
    Reported,
    /// It cannot (`Infallible`): a replay is made only of a body known to fit the limit
    /// whole (ended, or by its size hint), and no reader is ever cut off. What a reader
    /// behind has yet to read is kept even past the limit, which only a body longer than
    /// its size hint said reaches.
    Impossible,
}

/// One of the two readers of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// The body first sent.
    First,
    /// Its replay.
    Replay,
}

impl Reader {
    fn other(self) -> Self {
        match self {
            Self::First => Self::Replay,
            Self::Replay => Self::First,
        }
    }

    /// Why this reader lost frames it had yet to read: the first body was cut off in
    /// favour of its replay; the replay found the recording incomplete.
    fn loss(self) -> ReplayError {
        ReplayError(match self {
            Self::First => Lost::Superseded,
            Self::Replay => Lost::Replay,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::First => "first",
            Self::Replay => "replay",
        }
    }
}

/// What a reader may still do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    /// The replay, not made yet while one may be: it would read from the first frame.
    Unmade,
    /// Reads on from data frame number `next`.
    At(usize),
    /// Has yielded its end (after the trailers, if any).
    Ended,
    /// The first body, cut off to keep its replay within the limit: every read fails.
    CutOff,
    /// Dropped; or the replay, never to be made.
    Gone,
}

impl Cursor {
    /// The first frame this reader may still read, if it may read any.
    fn needs(self) -> Option<usize> {
        match self {
            Self::Unmade => Some(0),
            Self::At(next) => Some(next),
            Self::Ended | Self::CutOff | Self::Gone => None,
        }
    }
}

/// The body being recorded.
enum Source<B> {
    /// Not handed over yet: a body's recording form is made before the body is moved in.
    Unset,
    /// Has more to give.
    Open(B),
    /// Has ended, with these trailers.
    Ended(Option<HeaderMap>),
    /// Has failed: every reader gets an error, never an early end.
    Failed,
}

/// The data frames taken from the source, numbered from the first.
#[derive(Default)]
struct Frames {
    /// The frames still kept; `kept[0]` is frame number `dropped`.
    kept: VecDeque<Bytes>,
    /// The number of frames let go of: those no reader can read any more and, once the
    /// body outgrew the limit or failed, all of them (a reader behind then gets an error).
    dropped: usize,
    /// Data bytes in `kept`.
    kept_bytes: usize,
    /// Data bytes taken from the source so far, kept or not.
    taken_bytes: usize,
}

impl Frames {
    /// The number of frames taken from the source.
    fn taken(&self) -> usize {
        self.dropped + self.kept.len()
    }

    fn get(&self, number: usize) -> Option<&Bytes> {
        self.kept.get(number.checked_sub(self.dropped)?)
    }

    fn keep(&mut self, data: Bytes) {
        self.kept_bytes += data.len();
        self.kept.push_back(data);
    }

    /// Lets go of the frames before frame number `needed`.
    fn drop_before(&mut self, needed: usize) {
        while self.dropped < needed {
            let Some(data) = self.kept.pop_front() else {
                break;
            };
            self.kept_bytes -= data.len();
            self.dropped += 1;
        }
    }

    /// Lets go of every kept frame, and of the one taken now: a reader behind gets an
    /// error.
    fn drop_all_and_skip(&mut self) {
        self.dropped += self.kept.len() + 1;
        self.kept.clear();
        self.kept_bytes = 0;
    }

    /// Data bytes kept from frame number `from` on.
    fn bytes_from(&self, from: usize) -> u64 {
        let skip = from.saturating_sub(self.dropped);
        self.kept.iter().skip(skip).map(|d| d.len() as u64).sum()
    }
}

struct Shared<B> {
    source: Source<B>,
    /// What the source is polled with, whichever reader polls it: a waker of `waiting`.
    source_waker: Waker,
    waiting: Arc<Waiting>,
    frames: Frames,
    limit: usize,
    cut: Cut,
    first: Cursor,
    replay: Cursor,
}

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
    wakers: Mutex<Wakers>,
}

#[derive(Default)]
struct Wakers {
    first: Option<Waker>,
    replay: Option<Waker>,
}

impl Wakers {
    fn of(&mut self, reader: Reader) -> &mut Option<Waker> {
        match reader {
            Reader::First => &mut self.first,
            Reader::Replay => &mut self.replay,
        }
    }
}

impl Waiting {
    /// Registers `reader`'s waker, to be woken when the source is ready.
    fn register(&self, reader: Reader, waker: &Waker) {
        match lock(&self.wakers).of(reader) {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }

    /// Takes `reader`'s waker out, and the other reader's: the one to wake.
    fn take_other(&self, reader: Reader) -> Option<Waker> {
        let mut wakers = lock(&self.wakers);
        *wakers.of(reader) = None;
        wakers.of(reader.other()).take()
    }

    /// Lets go of `reader`'s waker.
    fn forget(&self, reader: Reader) {
        *lock(&self.wakers).of(reader) = None;
    }
}

impl Wake for Waiting {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let Wakers { first, replay } = mem::take(&mut *lock(&self.wakers));
        for waker in [first, replay].into_iter().flatten() {
            waker.wake();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What polling a recording body gives.
type Polled<E> = Poll<Option<Result<Frame<Bytes>, RecordError<E>>>>;

fn lost<E>(reader: Reader) -> Polled<E> {
    Poll::Ready(Some(Err(RecordError::Replay(reader.loss()))))
}

impl<B> Shared<B> {
    fn new(source: Source<B>, limit: usize, cut: Cut, first: Cursor) -> Self {
        let waiting = Arc::new(Waiting::default());
        Self {
            source,
            source_waker: Waker::from(waiting.clone()),
            waiting,
            frames: Frames::default(),
            limit,
            cut,
            first,
            replay: Cursor::Unmade,
        }
    }

    fn cursor(&self, reader: Reader) -> Cursor {
        match reader {
            Reader::First => self.first,
            Reader::Replay => self.replay,
        }
    }

    fn set(&mut self, reader: Reader, cursor: Cursor) {
        match reader {
            Reader::First => self.first = cursor,
            Reader::Replay => self.replay = cursor,
        }
    }

    /// Lets go of the frames no one can read any more: a replay still to be made would
    /// read from the first frame, each reader reads on from where it is.
    fn release(&mut self) {
        let needed = [self.first, self.replay]
            .into_iter()
            .filter_map(Cursor::needs)
            .min()
            .unwrap_or(usize::MAX);
        self.frames.drop_before(needed);
    }

    /// Whether the first body, about to read on from the source, is cut off instead: it
    /// leads its replay, which has frames yet to read, and reading on would keep more
    /// for the replay. Once past the limit (by the last frame it read; a body within the
    /// limit reads its end), the first body is cut off rather than the replay (the first
    /// request has been answered; the replay is what its caller waits for). It is not made
    /// to wait instead: a connection may keep the first body without ever polling it
    /// again, and the replay might then never be sent.
    fn cuts_off(&self, reader: Reader) -> bool {
        let replay_behind = matches!(self.replay, Cursor::At(at) if at < self.frames.taken());
        reader == Reader::First
            && self.cut == Cut::Reported
            && replay_behind
            && self.frames.kept_bytes > self.limit
    }

    /// Whether a frame `reader` takes from the source is kept. `reader` is the furthest:
    /// the frame is wanted by the other reader, behind it, or by a replay still to be
    /// made, and kept while the body is within the limit. A replay under way keeps what
    /// it has yet to read whatever the body's length: the first body is cut off before
    /// that passes the limit ([`cuts_off`](Self::cuts_off)), unless it cannot be.
    fn keeps(&self, reader: Reader) -> bool {
        let behind = matches!(self.cursor(reader.other()), Cursor::At(_));
        let wanted = behind || self.replay == Cursor::Unmade;
        wanted
            && (self.frames.taken_bytes <= self.limit
                || (behind && (reader == Reader::First || self.cut == Cut::Impossible)))
    }

    /// Whether a replay made now could yield the whole body, and, for a body that cannot
    /// be cut off, without any reader ever having to be.
    fn replayable(&self) -> bool
    where
        B: Body,
    {
        // While the recording is kept, frames are let go of only past the limit or after
        // the body failed.
        if self.frames.dropped > 0 {
            return false;
        }
        match (&self.source, self.cut) {
            (_, Cut::Reported) | (Source::Ended(_), Cut::Impossible) => true,
            (Source::Open(body), Cut::Impossible) => body.size_hint().upper().is_some_and(|rest| {
                rest.saturating_add(self.frames.taken_bytes as u64) <= self.limit as u64
            }),
            (Source::Unset | Source::Failed, Cut::Impossible) => false,
        }
    }
}

impl<B> Shared<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    /// The next frame for `reader`, and the other reader's waker when this poll took from
    /// the source something the other one waits for (to be woken once the recording is
    /// unlocked).
    fn read(&mut self, reader: Reader, cx: &mut Context<'_>) -> (Polled<B::Error>, Option<Waker>) {
        let next = match self.cursor(reader) {
            Cursor::At(next) if next >= self.frames.dropped => next,
            Cursor::Ended => return (Poll::Ready(None), None),
            // Cut off, or behind the other reader with frames let go of: for the first
            // body, that other reader is its replay.
            _ => return (lost(reader), None),
        };
        if let Some(data) = self.frames.get(next).cloned() {
            self.set(reader, Cursor::At(next + 1));
            self.release();
            return (Poll::Ready(Some(Ok(Frame::data(data)))), None);
        }
        if let Some(end) = self.end(reader) {
            return (end, None);
        }
        if self.cuts_off(reader) {
            self.first = Cursor::CutOff;
            self.release();
            return (lost(reader), None);
        }
        self.poll_source(reader, next, cx)
    }

    /// The end for `reader`, which has read every frame, once the source has given all
    /// it had: the trailers, if any, then the end.
    fn end(&mut self, reader: Reader) -> Option<Polled<B::Error>> {
        let trailers = match &self.source {
            Source::Unset | Source::Open(_) => return None,
            Source::Ended(trailers) => trailers.clone(),
            // Not reached: every reader is behind a failure, and gets an error.
            Source::Failed => None,
        };
        self.set(reader, Cursor::Ended);
        Some(Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t)))))
    }

    /// Takes the next frame from the source for `reader`, at the front, which yields
    /// frame number `next`.
    fn poll_source(
        &mut self,
        reader: Reader,
        next: usize,
        cx: &mut Context<'_>,
    ) -> (Polled<B::Error>, Option<Waker>) {
        // Registered before the poll: a source may wake its waker within the poll (and
        // one not handed over yet wakes it once it is).
        self.waiting.register(reader, cx.waker());
        let Source::Open(source) = &mut self.source else {
            return (Poll::Pending, None);
        };
        let polled = Pin::new(source).poll_frame(&mut Context::from_waker(&self.source_waker));
        let Poll::Ready(polled) = polled else {
            return (Poll::Pending, None);
        };
        // The other reader, if it waits on the source, now has this frame (or the end)
        // to read from the recording.
        let other = self.waiting.take_other(reader);
        let frame = match polled {
            None => {
                self.source = Source::Ended(None);
                self.set(reader, Cursor::Ended);
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                self.source = Source::Failed;
                self.frames.drop_all_and_skip();
                Poll::Ready(Some(Err(RecordError::Body(e))))
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    self.take(reader, next, data.clone());
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => {
                        self.source = Source::Ended(Some(trailers.clone()));
                        self.set(reader, Cursor::Ended);
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

    /// Records data frame number `next`, taken from the source by `reader`.
    fn take(&mut self, reader: Reader, next: usize, data: Bytes) {
        self.frames.taken_bytes = self.frames.taken_bytes.saturating_add(data.len());
        if self.keeps(reader) {
            self.frames.keep(data);
        } else {
            // Past the limit, nothing is kept any more (replays can no longer be made);
            // with no one to read it, this frame is not kept either.
            self.frames.drop_all_and_skip();
        }
        self.set(reader, Cursor::At(next + 1));
    }
}

impl<B> Drop for Recording<B> {
    fn drop(&mut self) {
        let mut shared = lock(&self.shared);
        if shared.replay == Cursor::Unmade {
            shared.replay = Cursor::Gone;
        }
        shared.release();
    }
}

impl<B> fmt::Debug for Recording<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recording").finish_non_exhaustive()
    }
}

impl<B: Body<Data = Bytes>> Recording<B> {
    /// A recording of a body that had nothing to send: there is no first reader.
    fn empty() -> Self {
        let shared = Shared::new(Source::Ended(None), 0, Cut::Reported, Cursor::Gone);
        Self {
            shared: Arc::new(Mutex::new(shared)),
        }
    }

    /// A recording whose source is still to be handed over, and its first reader.
    fn unset(limit: usize, cut: Cut) -> (RecordingBody<B>, Self) {
        let shared = Shared::new(Source::Unset, limit, cut, Cursor::At(0));
        let shared = Arc::new(Mutex::new(shared));
        let first = RecordingBody {
            shared: shared.clone(),
            reader: Reader::First,
        };
        (first, Self { shared })
    }

    /// Hands the body over to the recording, and wakes a reader that polled before.
    fn set_source(&self, body: B) {
        let mut shared = lock(&self.shared);
        shared.source = Source::Open(body);
        let waker = shared.source_waker.clone();
        drop(shared);
        waker.wake();
    }

    /// Starts recording `body`, or gives it back if its size hint already exceeds `limit`.
    #[cfg(test)]
    pub(super) fn start(body: B, limit: usize) -> Result<(RecordingBody<B>, Self), B> {
        if body.size_hint().lower() > limit as u64 {
            return Err(body);
        }
        let (first, recording) = Self::unset(limit, Cut::Reported);
        recording.set_source(body);
        Ok((first, recording))
    }

    /// Replaces `body`, in place, with a body of the same type made by `wrap` of the
    /// recording's first reader, and returns the recording. `None`, with `body` left as it
    /// was, when its size hint already exceeds `limit`.
    pub(super) fn record(
        body: &mut B,
        limit: usize,
        cut: Cut,
        wrap: impl FnOnce(RecordingBody<B>) -> B,
    ) -> Option<Self> {
        if body.is_end_stream() {
            return Some(Self::empty());
        }
        if body.size_hint().lower() > limit as u64 {
            tracing::debug!(
                limit,
                "request body's size hint exceeds the replay limit; it cannot be replayed"
            );
            return None;
        }
        // The recording form is made first, so that no placeholder body is needed to move
        // the original out.
        let (first, recording) = Self::unset(limit, cut);
        let original = mem::replace(body, wrap(first));
        recording.set_source(original);
        Some(recording)
    }

    /// A body that yields the recording from the start, then the rest of the source;
    /// `None` if it cannot yield the whole body (see [`Cut`]).
    pub(super) fn replay(self) -> Option<RecordingBody<B>> {
        let mut shared = lock(&self.shared);
        if !shared.replayable() {
            return None;
        }
        // Set before this recording is dropped, so that the frames stay for the replay.
        shared.replay = Cursor::At(0);
        drop(shared);
        Some(RecordingBody {
            shared: self.shared.clone(),
            reader: Reader::Replay,
        })
    }
}

/// One reader of a recording: the body first sent, or its replay.
pub struct RecordingBody<B> {
    shared: Arc<Mutex<Shared<B>>>,
    reader: Reader,
}

impl<B> fmt::Debug for RecordingBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingBody")
            .field("reader", &self.reader.name())
            .finish_non_exhaustive()
    }
}

impl<B> Drop for RecordingBody<B> {
    fn drop(&mut self) {
        let mut shared = lock(&self.shared);
        shared.set(self.reader, Cursor::Gone);
        shared.release();
        // Whichever reader polled the source last, the source wakes the others: only this
        // reader's waker is to be let go.
        shared.waiting.forget(self.reader);
    }
}

impl<B> Body for RecordingBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = RecordError<B::Error>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // The lock is never held across an await: polling is synchronous. Wakers are
        // woken once it is released.
        let mut shared = lock(&self.shared);
        let (polled, other) = shared.read(self.reader, cx);
        drop(shared);
        if let Some(other) = other {
            other.wake();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let shared = lock(&self.shared);
        match shared.cursor(self.reader) {
            Cursor::Ended => true,
            Cursor::At(next) => {
                matches!(shared.source, Source::Ended(None)) && next >= shared.frames.taken()
            }
            Cursor::Unmade | Cursor::CutOff | Cursor::Gone => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        let shared = lock(&self.shared);
        let Cursor::At(next) = shared.cursor(self.reader) else {
            return SizeHint::with_exact(0);
        };
        let pending = shared.frames.bytes_from(next);
        match &shared.source {
            Source::Open(source) => {
                let hint = source.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(hint.lower() + pending);
                if let Some(upper) = hint.upper() {
                    out.set_upper(upper + pending);
                }
                out
            }
            Source::Unset => SizeHint::new(),
            Source::Ended(_) | Source::Failed => SizeHint::with_exact(pending),
        }
    }
}

/// A reader of a recording, as a body whose errors are boxed: what a body type
/// registered on the layer's builder is made of, first to be sent, then for its replay.
///
/// Its error is the original body's, or a [`ReplayError`]: the body first sent is cut
/// off with one when it leads its replay past the replay limit.
pub struct Recorded<B>(RecordingBody<B>);

impl<B> Recorded<B> {
    pub(super) fn new(reader: RecordingBody<B>) -> Self {
        Self(reader)
    }
}

impl<B> fmt::Debug for Recorded<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Recorded").field(&self.0).finish()
    }
}

impl<B> Body for Recorded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.0).poll_frame(cx).map_err(|e| match e {
            RecordError::Body(e) => e.into(),
            RecordError::Replay(e) => e.into(),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{
        replayable::ReplayableBody,
        test_support::{chunks, read_all, read_n, Boxed},
    };
    use futures_util::stream;
    use http_body_util::{BodyExt, Full, StreamBody};

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
}
