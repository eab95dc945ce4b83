//! Bodies and readers the body tests share.

use std::fmt;

use bytes::Bytes;
use futures_util::stream;
use http::HeaderMap;
use http_body::{Body, Frame};
use http_body_util::{combinators::BoxBody, BodyExt, StreamBody};

use crate::error::BoxError;

pub(crate) type Boxed = BoxBody<Bytes, BoxError>;

/// A boxed body of `n` frames of 3 bytes, and trailers.
pub(crate) fn chunks(n: u8) -> (Boxed, Vec<u8>) {
    let parts: Vec<Bytes> = (0..n).map(|i| Bytes::from(vec![i; 3])).collect();
    let whole = parts.concat();
    let mut frames: Vec<Result<Frame<Bytes>, BoxError>> =
        parts.into_iter().map(|c| Ok(Frame::data(c))).collect();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "42".parse().unwrap());
    frames.push(Ok(Frame::trailers(trailers)));
    (BoxBody::new(StreamBody::new(stream::iter(frames))), whole)
}

pub(crate) async fn read_all(mut body: Boxed) -> (Vec<u8>, Option<HeaderMap>) {
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

pub(crate) async fn read_n(body: &mut Boxed, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..n {
        let frame = body.frame().await.unwrap().unwrap();
        out.extend_from_slice(frame.data_ref().unwrap());
    }
    out
}

pub(crate) async fn bytes_of<B: Body<Data = Bytes>>(body: B) -> Bytes
where
    B::Error: fmt::Debug,
{
    body.collect().await.unwrap().to_bytes()
}
