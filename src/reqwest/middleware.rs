//! The layer's tokens for a `reqwest-middleware` client.

use std::{fmt, sync::Arc};

use http::{header::AUTHORIZATION, Extensions, Uri};
use reqwest_middleware::{Error as MiddlewareError, Middleware, Next, Result};

use super::replay::Replay;
use crate::{
    body::Replayers,
    cache::Slot,
    classify::Classification,
    layer::OAuthLayer,
    scope::{by_method_index, Slots},
    token::FetchReason,
    ClientCredentials, RequestHead, TokenHandle,
};

/// A [`reqwest_middleware::Middleware`] that adds `Authorization: Bearer <token>` to
/// requests and re-issues rejected tokens, as [`OAuth`](crate::OAuth) does.
///
/// It runs on the token cache of an [`OAuthLayer`]: the same renewal, single-flight
/// fetch, scope policy, classifier and re-issue rules. A request that already has an
/// `Authorization` header is left alone.
///
/// # Replay
///
/// A request rejected for its token is replayed once with a new one. A request reqwest
/// can clone (`reqwest::Request::try_clone`: a buffered body, or none) is replayed as
/// cloned; the replay limit does not apply, as reqwest keeps a buffered body whole anyway.
/// A streamed body is recorded as it is sent, up to the layer's
/// [replay limit](crate::OAuthLayerBuilder::replay_limit), as the layer records its own
/// (see [`body`](crate::body)). A stream that had sent more than the limit when the
/// rejection came is not replayed: the token is still renewed, and the 401 is returned
/// as it came. Replay off on the layer turns it off here too.
///
/// # Errors
///
/// A token that cannot be had fails the request with
/// [`reqwest_middleware::Error::Middleware`], whose cause is the crate's
/// [`Error`](crate::Error).
#[derive(Clone)]
pub struct OAuthMiddleware {
    layer: OAuthLayer,
    /// The layer's body types, and `reqwest::Body` whatever layer it is.
    replayers: Replayers,
}

impl fmt::Debug for OAuthMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthMiddleware")
            .field("layer", &self.layer)
            .field("replayers", &self.replayers)
            .finish()
    }
}

impl OAuthMiddleware {
    /// A middleware that fetches tokens with `creds` over the built-in HTTPS client, with
    /// default settings (see [`OAuthLayer::new`]).
    #[cfg(feature = "https")]
    pub fn new(creds: ClientCredentials) -> Self {
        Self::from_layer(&OAuthLayer::new(creds))
    }

    /// A middleware that fetches tokens with `creds` over `client`, with default settings
    /// (see [`builder`](super::builder) for the token client's rules).
    pub fn with_client(client: ::reqwest::Client, creds: ClientCredentials) -> Self {
        Self::from_layer(&super::fetch::builder(client, creds).build())
    }

    /// A middleware that shares `layer`'s tokens and settings, with every service that
    /// layer made.
    pub fn from_layer(layer: &OAuthLayer) -> Self {
        let mut replayers = layer.parts().1.replayers.clone();
        if !replayers.knows::<::reqwest::Body>() {
            // As `builder` registers it: streamed bodies are recorded for a replay.
            replayers = replayers.with::<::reqwest::Body>(::reqwest::Body::wrap);
        }
        Self {
            layer: layer.clone(),
            replayers,
        }
    }

    /// A handle to warm up, force renewal and inspect its tokens.
    pub fn handle(&self) -> TokenHandle {
        self.layer.handle()
    }

    /// The slot of the request's scope set.
    fn slot(&self, req: &::reqwest::Request, extensions: &Extensions) -> Arc<Slot> {
        match &**self.layer.parts().0 {
            Slots::One(slot) => slot.clone(),
            Slots::ByMethod(slots) => slots[by_method_index(req.method())].clone(),
            Slots::Dynamic(dynamic) => {
                // A `Url` always parses as a `Uri`; the fallback is never used.
                let uri: Uri = req.url().as_str().parse().unwrap_or_default();
                let key = dynamic.key_of_head(&RequestHead {
                    method: req.method(),
                    uri: &uri,
                    version: req.version(),
                    headers: req.headers(),
                    extensions,
                });
                dynamic.slot(&key)
            }
        }
    }

    /// Whether the response says the token was rejected; reads the start of the body when
    /// the classifier needs it, and hands back every byte.
    async fn rejected(&self, res: ::reqwest::Response) -> (::reqwest::Response, bool) {
        let core = self.layer.parts().1;
        match core.classifier.classify_head(res.status(), res.headers()) {
            Classification::NotRejected => (res, false),
            Classification::Rejected => (res, true),
            _ => {
                let url = res.url().clone();
                let res = http::Response::<::reqwest::Body>::from(res);
                let (res, rejected) = core
                    .classifier
                    .inspect(res, core.config.inspect_limit)
                    .await;
                let (mut parts, body) = res.into_parts();
                // The URL goes back the only way reqwest offers: its builder extension.
                let tagged = ::reqwest::ResponseBuilderExt::url(http::Response::builder(), url)
                    .body(())
                    .map(|res| res.into_parts().0.extensions)
                    .unwrap_or_default();
                parts.extensions.extend(tagged);
                let body = ::reqwest::Body::wrap(body);
                (http::Response::from_parts(parts, body).into(), rejected)
            }
        }
    }
}

#[async_trait::async_trait]
impl Middleware for OAuthMiddleware {
    async fn handle(
        &self,
        mut req: ::reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<::reqwest::Response> {
        if req.headers().contains_key(AUTHORIZATION) {
            return next.run(req, extensions).await;
        }
        let slot = self.slot(&req, extensions);
        let cred = match slot.fast() {
            Some(cred) => cred,
            None => slot.acquire().await.map_err(MiddlewareError::middleware)?,
        };
        req.headers_mut().insert(AUTHORIZATION, cred.header);
        let replay = self
            .layer
            .parts()
            .1
            .config
            .replay_limit
            .and_then(|limit| Replay::prepare(&mut req, limit, &self.replayers));
        let res = next.clone().run(req, extensions).await?;
        let (res, rejected) = self.rejected(res).await;
        if !rejected || !slot.reject(cred.generation) {
            return Ok(res);
        }
        let Some(mut req) = replay.and_then(Replay::into_request) else {
            tracing::debug!("rejected request cannot be replayed; returning the response");
            let _ = slot.renew_in_background(FetchReason::Rejected);
            return Ok(res);
        };
        drop(res);
        let cred = slot.acquire().await.map_err(MiddlewareError::middleware)?;
        tracing::info!(
            scope = slot.scope().map(|s| s.as_str()).unwrap_or(""),
            "token rejected by the api; replaying the request with a new token"
        );
        req.headers_mut().insert(AUTHORIZATION, cred.header);
        next.run(req, extensions).await
    }
}
