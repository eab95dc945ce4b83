//! What a recorded body says when it cannot go on.

use std::fmt;

/// A recorded body could not go on: a replayed body whose data had been dropped from the
/// recording because the body outgrew the replay limit, or the body first sent, cut off
/// because it led its replay, still behind it, past the limit (its request had been
/// answered and is being sent again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayError(pub(super) Lost);

/// Which reader lost data, and so why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lost {
    /// The replay: the body had outgrown the limit, or failed.
    Replay,
    /// The body first sent: it was cut off to keep its replay within the limit.
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
///
/// More causes may come (non-exhaustive): a `match` on it needs a `_` arm.
#[derive(Debug)]
#[non_exhaustive]
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

/// Converts the recorder's error into a body's error type that can hold a
/// [`ReplayError`].
pub(super) trait FromRecorded<E> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
