//! The wakers of the readers waiting on the source.

use std::{
    mem,
    sync::{Arc, Mutex},
    task::{Wake, Waker},
};

use super::cursor::Reader;

/// The readers waiting on the source, each with its own waker.
///
/// A source keeps the waker of its last poll only, and the reader that polled it last may
/// not poll again for a long time while keeping its body: a first attempt's body still
/// held by a connection after its rejection (an HTTP/2 stream waiting for window, an
/// HTTP/1 connection with a full write buffer). The source is therefore polled with a
/// waker that wakes every waiting reader, so a replay is not stalled behind it.
#[derive(Default)]
pub(super) struct Waiting {
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
    pub(super) fn register(&self, reader: Reader, waker: &Waker) {
        match lock(&self.wakers).of(reader) {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }

    /// Takes `reader`'s waker out, and the other reader's: the one to wake.
    pub(super) fn take_other(&self, reader: Reader) -> Option<Waker> {
        let mut wakers = lock(&self.wakers);
        *wakers.of(reader) = None;
        wakers.of(reader.other()).take()
    }

    /// Lets go of `reader`'s waker.
    pub(super) fn forget(&self, reader: Reader) {
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

/// Locks a mutex, whether or not a thread panicked holding it: the recording's state is
/// consistent between any two of its steps.
pub(super) use crate::sync::lock;
