//! The layer's response body: the inner body, or the start of a 401 the layer read to
//! classify it, followed by the rest.

use std::{
    collections::VecDeque,
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The layer's response body: the inner body unchanged, or, after the layer had to
    /// read the start of a 401 to classify it, that start followed by the rest.
    ///
    /// Its data is [`Bytes`] and its error the inner body's, so hyper and tonic take it
    /// as they took the inner body.
    pub struct ResponseBody<B: Body> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B: Body> {
        Inner { #[pin] body: B },
        // Boxed: rare, and left inline it would make every response larger to move.
        Prefixed { prefixed: Box<Prefixed<B>> },
    }
}

struct Prefixed<B: Body> {
    prefix: VecDeque<Frame<Bytes>>,
    rest: Option<Pin<Box<B>>>,
    error: Option<B::Error>,
}

impl<B: Body> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn prefixed(
        prefix: VecDeque<Frame<Bytes>>,
        rest: Option<Pin<Box<B>>>,
        error: Option<B::Error>,
    ) -> Self {
        Self {
            kind: Kind::Prefixed {
                prefixed: Box::new(Prefixed {
                    prefix,
                    rest,
                    error,
                }),
            },
        }
    }
}

impl<B: Body> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Prefixed { .. } => "prefixed",
        };
        f.debug_struct("ResponseBody").field("kind", &kind).finish()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: Buf,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map(|frame| frame.map_data(into_bytes)))),
            KindProj::Prefixed { prefixed } => {
                let Prefixed {
                    prefix,
                    rest,
                    error,
                } = &mut **prefixed;
                if let Some(frame) = prefix.pop_front() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                if let Some(e) = error.take() {
                    return Poll::Ready(Some(Err(e)));
                }
                match rest {
                    Some(body) => body
                        .as_mut()
                        .poll_frame(cx)
                        .map(|f| f.map(|r| r.map(|frame| frame.map_data(into_bytes)))),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Prefixed { prefixed } => {
                let Prefixed {
                    prefix,
                    rest,
                    error,
                } = &**prefixed;
                prefix.is_empty()
                    && error.is_none()
                    && rest.as_ref().is_none_or(|b| b.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Prefixed { prefixed } => {
                let Prefixed { prefix, rest, .. } = &**prefixed;
                let buffered: u64 = prefix
                    .iter()
                    .filter_map(Frame::data_ref)
                    .map(|c| c.len() as u64)
                    .sum();
                let Some(rest) = rest else {
                    return SizeHint::with_exact(buffered);
                };
                let hint = rest.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(hint.lower() + buffered);
                if let Some(upper) = hint.upper() {
                    out.set_upper(upper + buffered);
                }
                out
            }
        }
    }
}

fn into_bytes<D: Buf>(mut data: D) -> Bytes {
    // For `Bytes` this is a move, not a copy.
    data.copy_to_bytes(data.remaining())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::test_support::Boxed;
    use http_body_util::{BodyExt, Empty, Full};

    #[tokio::test]
    async fn the_prefixed_response_body_yields_prefix_then_rest() {
        let rest = Box::pin(Full::new(Bytes::from_static(b"world")));
        let prefix = VecDeque::from([Frame::data(Bytes::from_static(b"hello "))]);
        let mut body = ResponseBody::prefixed(prefix, Some(rest), None);
        assert_eq!(body.size_hint().exact(), Some(11));
        assert_eq!(format!("{body:?}"), r#"ResponseBody { kind: "prefixed" }"#);
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert_eq!(got, b"hello world");
        assert!(body.is_end_stream());
    }

    #[test]
    fn the_response_body_is_at_most_a_word_larger_than_the_inner_body() {
        // The layer's response is moved on every request: the rare prefixed form must
        // not make it larger.
        fn extra<B: Body>() -> usize {
            std::mem::size_of::<ResponseBody<B>>() - std::mem::size_of::<B>()
        }
        let word = std::mem::size_of::<usize>();
        assert!(extra::<Full<Bytes>>() <= word);
        assert!(extra::<Empty<Bytes>>() <= word);
        assert!(extra::<Boxed>() <= word);
        assert!(extra::<String>() <= word);
    }

    #[test]
    fn a_prefixed_response_body_ends_after_its_prefix_its_error_and_its_rest() {
        let hello = || VecDeque::from([Frame::data(Bytes::from_static(b"hello"))]);
        let empty_rest = || {
            Some(Box::pin(Boxed::new(
                Full::new(Bytes::new()).map_err(|e| match e {}),
            )))
        };
        let cases: [(ResponseBody<Boxed>, bool); 4] = [
            (ResponseBody::prefixed(hello(), None, None), false),
            (ResponseBody::prefixed(hello(), empty_rest(), None), false),
            (
                ResponseBody::prefixed(VecDeque::new(), None, Some("reset".into())),
                false,
            ),
            (
                ResponseBody::prefixed(VecDeque::new(), empty_rest(), None),
                true,
            ),
        ];
        for (i, (body, ended)) in cases.into_iter().enumerate() {
            assert_eq!(body.is_end_stream(), ended, "case {i}");
        }
    }
}
