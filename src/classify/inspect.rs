//! Reading the start of a response body to classify it, without losing a byte.

use std::collections::VecDeque;

use bytes::{Buf, Bytes};
use http::Response;
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use super::Classifier;
use crate::body::ResponseBody;

impl Classifier {
    /// Reads the start of a response body (at most the inspection limit) and asks the
    /// classifier about it. The caller still gets every byte: the start, then the rest.
    pub(crate) async fn inspect<ResB>(
        &self,
        res: Response<ResB>,
        limit: usize,
    ) -> (Response<ResponseBody<ResB>>, bool)
    where
        ResB: Body + Send + 'static,
        ResB::Data: Send,
    {
        let (parts, body) = res.into_parts();
        if body.size_hint().lower() > limit as u64 {
            return (
                Response::from_parts(parts, ResponseBody::inner(body)),
                false,
            );
        }
        let mut body = Box::pin(body);
        let mut frames: VecDeque<Frame<Bytes>> = VecDeque::new();
        let mut len = 0usize;
        let mut ended = false;
        let mut error = None;
        while len <= limit {
            match body.frame().await {
                None => {
                    ended = true;
                    break;
                }
                Some(Err(e)) => {
                    error = Some(e);
                    break;
                }
                Some(Ok(frame)) => {
                    let frame = frame.map_data(|mut d| d.copy_to_bytes(d.remaining()));
                    if let Some(data) = frame.data_ref() {
                        len += data.len();
                    }
                    frames.push_back(frame);
                }
            }
        }
        let rejected = ended && error.is_none() && {
            let mut whole = Vec::with_capacity(len);
            for data in frames.iter().filter_map(Frame::data_ref) {
                whole.extend_from_slice(data);
            }
            self.classify_body(parts.status, &parts.headers, &whole)
        };
        let rest = (!ended && error.is_none()).then_some(body);
        (
            Response::from_parts(parts, ResponseBody::prefixed(frames, rest, error)),
            rejected,
        )
    }
}
