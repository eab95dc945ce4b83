//! The state of a recording: which frames are kept, what each reader may still read,
//! and what reading the next frame takes.

use std::{
    collections::VecDeque,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::{
    cursor::{Cursor, Reader},
    wake::Waiting,
};
use crate::body::error::RecordError;

/// Whether a recorded body can be cut off: whether its error type can say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::body) enum Cut {
    /// It can (its error can hold a [`ReplayError`](crate::body::ReplayError)): the body
    /// first sent is cut off when it leads its replay past the limit, or falls behind a
    /// replay that passed it.
    Reported,
    /// It cannot (`Infallible`): a replay is made only of a body known to fit the limit
    /// whole (ended, or by its size hint), and no reader is ever cut off. What a reader
    /// behind has yet to read is kept even past the limit, which only a body longer than
    /// its size hint said reaches.
    Impossible,
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

/// The state of a recording, shared by its readers and by the [`Recording`](super::Recording).
pub(super) struct State<B> {
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

/// What polling a recording body gives.
pub(super) type Polled<E> = Poll<Option<Result<Frame<Bytes>, RecordError<E>>>>;

fn lost<E>(reader: Reader) -> Polled<E> {
    Poll::Ready(Some(Err(RecordError::Replay(reader.loss()))))
}

impl<B> State<B> {
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

    /// The state of a body that had nothing to send: there is no first reader.
    pub(super) fn empty() -> Self {
        Self::new(Source::Ended(None), 0, Cut::Reported, Cursor::Gone)
    }

    /// The state of a recording whose source is still to be handed over, with its first
    /// reader at the start.
    pub(super) fn unset(limit: usize, cut: Cut) -> Self {
        Self::new(Source::Unset, limit, cut, Cursor::At(0))
    }

    /// Hands the body over; returns the waker of the readers that polled before, to be
    /// woken once the state is unlocked.
    pub(super) fn hand_over(&mut self, body: B) -> Waker {
        self.source = Source::Open(body);
        self.source_waker.clone()
    }

    /// Starts the replay, if one made now could yield the whole body (see [`Cut`]).
    pub(super) fn start_replay(&mut self) -> bool
    where
        B: Body,
    {
        if !self.replayable() {
            return false;
        }
        self.replay = Cursor::At(0);
        true
    }

    /// The [`Recording`](super::Recording) is dropped: a replay can no longer be made.
    pub(super) fn forget_replay(&mut self) {
        if self.replay == Cursor::Unmade {
            self.replay = Cursor::Gone;
        }
        self.release();
    }

    /// `reader` is dropped.
    pub(super) fn forget_reader(&mut self, reader: Reader) {
        self.set(reader, Cursor::Gone);
        self.release();
        // Whichever reader polled the source last, the source wakes the others: only this
        // reader's waker is to be let go.
        self.waiting.forget(reader);
    }

    /// Whether `reader` has nothing more to yield.
    pub(super) fn is_end(&self, reader: Reader) -> bool {
        match self.cursor(reader) {
            Cursor::Ended => true,
            Cursor::At(next) => {
                matches!(self.source, Source::Ended(None)) && next >= self.frames.taken()
            }
            Cursor::Unmade | Cursor::CutOff | Cursor::Gone => false,
        }
    }

    /// What `reader` has yet to yield: what is kept for it, and what the source has left.
    pub(super) fn size_hint(&self, reader: Reader) -> SizeHint
    where
        B: Body,
    {
        let Cursor::At(next) = self.cursor(reader) else {
            return SizeHint::with_exact(0);
        };
        let pending = self.frames.bytes_from(next);
        match &self.source {
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

impl<B> State<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    /// The next frame for `reader`, and the other reader's waker when this poll took from
    /// the source something the other one waits for (to be woken once the recording is
    /// unlocked).
    pub(super) fn read(
        &mut self,
        reader: Reader,
        cx: &mut Context<'_>,
    ) -> (Polled<B::Error>, Option<Waker>) {
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
