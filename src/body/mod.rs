//! Body wrappers: replayable request bodies and the layer's response body.
//!
//! A request is replayed once when the API rejects its token. The layer accepts any
//! request body, and keeps those it knows how to send again:
//!
//! - **Buffered** bodies ([`Full<Bytes>`](http_body_util::Full),
//!   [`Empty<Bytes>`](http_body_util::Empty), [`String`]) are kept before sending: a body
//!   of up to 512 bytes is copied into a buffer reused per thread (no allocation), a
//!   larger `Full` body is cloned, which shares its bytes (see [`BufferedReplay`]).
//! - **Streaming** bodies ([`BoxBody`](http_body_util::combinators::BoxBody) and
//!   [`UnsyncBoxBody`](http_body_util::combinators::UnsyncBoxBody) with a
//!   [`BoxError`](crate::BoxError) error, tonic's body) are wrapped so that the frames
//!   are recorded as they are sent, up to the replay limit (64 KiB by default). A request
//!   whose body had sent more than that when the rejection arrived, or whose size hint
//!   says it will, is not replayable, and the caller then gets the rejection as it came;
//!   memory per request stays within the limit.
//! - **Boxed bodies that cannot fail** (`BoxBody<Bytes, Infallible>`, what
//!   `Full::new(b).boxed()` makes) are recorded too, but their error cannot say that a
//!   body was cut off (below). Such a request is replayed only when its body is known to
//!   fit the limit whole when the rejection arrives: it had been read to its end, or its
//!   size hint says the rest fits. Otherwise it is not replayable; no body is ever cut
//!   short.
//! - **Registered** types: any other body type the builder was told how to make of a
//!   [`Recorded`] body (`axum::body::Body::new`, `reqwest::Body::wrap`), recorded like
//!   the boxed ones ([`OAuthLayerBuilder::replay_body`](crate::OAuthLayerBuilder::replay_body)), or that
//!   implements [`ReplayableBody`] (an `Either` of replayable bodies, a `BoxBody` whose
//!   error `E: From<ReplayError>`; [`OAuthLayerBuilder::replayable_body`](crate::OAuthLayerBuilder::replayable_body)).
//! - Anything else, hyper's `Incoming` among them, is sent as it is and not replayed
//!   (logged at `debug`).
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

mod buffered;
mod error;
mod kept;
mod recording;
mod replayable;
mod response;
#[cfg(test)]
mod test_support;

pub(crate) use self::kept::{KeptBody, Replayers};
pub use self::{
    buffered::BufferedReplay,
    error::{RecordError, ReplayError},
    recording::{Recorded, Recording, RecordingBody},
    replayable::ReplayableBody,
    response::ResponseBody,
};
