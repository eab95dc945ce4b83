//! The recording and its two readers, as bodies: the body first sent and its replay.

use std::{
    fmt, mem,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{
    cursor::Reader,
    state::{Cut, State},
    wake::lock,
};
use crate::{body::error::RecordError, error::BoxError};

/// The shared recording of a streaming body; what rebuilds it for a replay.
///
/// While it is kept, the frames the body sends are kept too (up to the replay limit), for
/// the replay it may make. Dropping it lets go of them: the body then keeps nothing of
/// what it sends.
pub struct Recording<B> {
    state: Arc<Mutex<State<B>>>,
}

impl<B> Drop for Recording<B> {
    fn drop(&mut self) {
        lock(&self.state).forget_replay();
    }
}

impl<B> fmt::Debug for Recording<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recording").finish_non_exhaustive()
    }
}

impl<B: Body<Data = Bytes>> Recording<B> {
    /// A recording whose source is still to be handed over, and its first reader.
    fn unset(limit: usize, cut: Cut) -> (RecordingBody<B>, Self) {
        let state = Arc::new(Mutex::new(State::unset(limit, cut)));
        let first = RecordingBody {
            state: state.clone(),
            reader: Reader::First,
        };
        (first, Self { state })
    }

    /// Hands the body over to the recording, and wakes a reader that polled before.
    fn hand_over(&self, body: B) {
        let waker = lock(&self.state).hand_over(body);
        waker.wake();
    }

    /// Starts recording `body`, or gives it back if its size hint already exceeds `limit`.
    #[cfg(test)]
    pub(in crate::body) fn start(body: B, limit: usize) -> Result<(RecordingBody<B>, Self), B> {
        if body.size_hint().lower() > limit as u64 {
            return Err(body);
        }
        let (first, recording) = Self::unset(limit, Cut::Reported);
        recording.hand_over(body);
        Ok((first, recording))
    }

    /// Replaces `body`, in place, with a body of the same type made by `wrap` of the
    /// recording's first reader, and returns the recording. `None`, with `body` left as it
    /// was, when its size hint already exceeds `limit`.
    pub(in crate::body) fn record(
        body: &mut B,
        limit: usize,
        cut: Cut,
        wrap: impl FnOnce(RecordingBody<B>) -> B,
    ) -> Option<Self> {
        if body.is_end_stream() {
            return Some(Self {
                state: Arc::new(Mutex::new(State::empty())),
            });
        }
        if body.size_hint().lower() > limit as u64 {
            tracing::debug!(
                limit,
                "request body's size hint exceeds the replay limit; it cannot be replayed"
            );
            return None;
        }
        // The body's recording form is made first, so that no placeholder is needed to
        // move the original out (a wrapper that looks at its body when made, as tonic's
        // does, sees one not yet ended).
        let (first, recording) = Self::unset(limit, cut);
        let original = mem::replace(body, wrap(first));
        recording.hand_over(original);
        Some(recording)
    }

    /// A body that yields the recording from the start, then the rest of the source;
    /// `None` if it cannot yield the whole body (see [`Cut`]).
    pub(in crate::body) fn replay(self) -> Option<RecordingBody<B>> {
        // Started before this recording is dropped, so that the frames stay for the replay.
        if !lock(&self.state).start_replay() {
            return None;
        }
        Some(RecordingBody {
            state: self.state.clone(),
            reader: Reader::Replay,
        })
    }
}

/// One reader of a recording: the body first sent, or its replay.
pub struct RecordingBody<B> {
    state: Arc<Mutex<State<B>>>,
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
        lock(&self.state).forget_reader(self.reader);
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
        let (polled, other) = lock(&self.state).read(self.reader, cx);
        if let Some(other) = other {
            other.wake();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.state).is_end(self.reader)
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.state).size_hint(self.reader)
    }
}

/// A reader of a recording, as a body whose errors are boxed: what a body type
/// registered on the layer's builder is made of, for the body first sent and for its
/// replay.
///
/// Its error is the original body's, boxed, or a
/// [`ReplayError`](crate::body::ReplayError): the body first sent is cut off with one
/// when it leads its replay past the replay limit. A type that wraps errors in its own
/// (`axum::Error`, `reqwest::Error`) has it in its source chain.
pub struct Recorded<B>(RecordingBody<B>);

impl<B> Recorded<B> {
    pub(in crate::body) fn new(reader: RecordingBody<B>) -> Self {
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
            RecordError::Replay(e) => Box::new(e) as BoxError,
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
    use std::{collections::VecDeque, task::Waker};

    use crate::body::{
        error::{Lost, ReplayError},
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
