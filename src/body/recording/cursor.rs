//! The two readers of a recording, and what each may still do.

use crate::body::error::{Lost, ReplayError};

/// One of the two readers of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reader {
    /// The body first sent.
    First,
    /// Its replay.
    Replay,
}

impl Reader {
    pub(super) fn other(self) -> Self {
        match self {
            Self::First => Self::Replay,
            Self::Replay => Self::First,
        }
    }

    /// Why this reader lost frames it had yet to read: the first body was cut off in
    /// favour of its replay; the replay found the recording incomplete.
    pub(super) fn loss(self) -> ReplayError {
        ReplayError(match self {
            Self::First => Lost::Superseded,
            Self::Replay => Lost::Replay,
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::First => "first",
            Self::Replay => "replay",
        }
    }
}

/// What a reader may still do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cursor {
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
    pub(super) fn needs(self) -> Option<usize> {
        match self {
            Self::Unmade => Some(0),
            Self::At(next) => Some(next),
            Self::Ended | Self::CutOff | Self::Gone => None,
        }
    }
}
