//! What a reqwest request keeps to be sent again after a rejected token.

use ::reqwest::{Body, Request};

use crate::body::{KeptBody, Replayers};

/// A copy of a request kept to send it again.
pub(super) enum Replay {
    /// The request as reqwest clones it: no body, or a buffered one.
    Cloned(Request),
    /// A streaming body, recorded as it is sent within the replay limit, and the head.
    Recorded { head: Request, body: KeptBody<Body> },
}

impl Replay {
    /// Prepares `req` for a possible replay: a body reqwest cannot clone is swapped for
    /// one recording it as the layer's bodies are. `None` when it cannot be replayed.
    pub(super) fn prepare(req: &mut Request, limit: usize, replayers: &Replayers) -> Option<Self> {
        if let Some(copy) = req.try_clone() {
            return Some(Self::Cloned(copy));
        }
        let mut body = req.body_mut().take()?;
        let kept = KeptBody::keep(&mut body, limit, replayers);
        // Without its body, reqwest clones the rest.
        let head = req.try_clone();
        *req.body_mut() = Some(body);
        Some(Self::Recorded {
            head: head?,
            body: kept?,
        })
    }

    /// The request again, as it was prepared; `None` if its recording went over the
    /// limit before the rejection came.
    pub(super) fn into_request(self) -> Option<Request> {
        match self {
            Self::Cloned(req) => Some(req),
            Self::Recorded { mut head, body } => {
                *head.body_mut() = Some(body.into_body()?);
                Some(head)
            }
        }
    }
}
