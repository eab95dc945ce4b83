//! The recording of a streaming request body, shared by the body first sent and its
//! replay.
//!
//! `cursor` says what each reader may still do, `state` what is recorded and what
//! reading the next frame takes, `wake` who is woken when the body has more to give,
//! and `readers` the bodies made of them.

mod cursor;
mod readers;
mod state;
mod wake;

pub use self::readers::{Recorded, Recording, RecordingBody};
pub(super) use self::state::Cut;
