//! reqwest as the token client.

use super::service::ReqwestService;
use crate::{
    fetch::HttpFetcher, scope::ScopePolicy, ClientCredentials, OAuthLayer, OAuthLayerBuilder,
};

impl HttpFetcher<ReqwestService> {
    /// A fetcher over a `reqwest::Client` the application already has: the same form
    /// POST, parsing, redaction and 64 KiB cap as over any client.
    ///
    /// The form is sent as a body reqwest cannot clone, so the client never resends it on
    /// a 307 or 308 redirect; a response from any redirect it follows (301, 302, 303,
    /// without the form) fails the fetch as a transport error. Give it a client with
    /// `redirect::Policy::none()` to not follow those either.
    pub fn reqwest(client: ::reqwest::Client, creds: ClientCredentials) -> Self {
        Self::new(ReqwestService::new(client).refusing_redirects(), creds)
    }
}

/// A builder for a layer that fetches tokens with `creds` over `client` (see
/// [`HttpFetcher::reqwest`]). Like `OAuthLayer::builder`, its scope policy starts as the
/// credentials' fixed scope. Request bodies of type `reqwest::Body` are replayed, recorded
/// as they are sent ([`OAuthLayerBuilder::replay_body`]).
pub fn builder(client: ::reqwest::Client, creds: ClientCredentials) -> OAuthLayerBuilder {
    let policy = ScopePolicy::fixed(creds.scope_ref().cloned());
    OAuthLayer::with_fetcher(HttpFetcher::reqwest(client, creds))
        .scope_policy(policy)
        .replay_body::<::reqwest::Body>(::reqwest::Body::wrap)
}
