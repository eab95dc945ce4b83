//! What the tool prints of what others say (an API's problem type, a client's error, a
//! URL): only what the crate's redaction rules let through, with the client secret and
//! every token this client sent as the secrets.

use std::{
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use http::{header::AUTHORIZATION, Request, Uri};
use tower::Service;
use tower_oauth::redact::{self, Redactor, REDACTED};

/// Cleans text for printing; shared by the client stack (which tells it each token it
/// sends) and the reports.
#[derive(Clone)]
pub(crate) struct Shown(Arc<Mutex<Redactor>>);

impl Shown {
    pub(crate) fn new(client_secret: &str) -> Self {
        Self(Arc::new(Mutex::new(
            Redactor::new().with_secret(client_secret),
        )))
    }

    fn redactor(&self) -> std::sync::MutexGuard<'_, Redactor> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `text` as it may be printed: no secret, no token, no control character, at most
    /// 200 characters.
    pub(crate) fn text(&self, text: &str) -> String {
        self.redactor().clean(text)
    }

    /// A problem `type` (or `error`) as a reason: its last path segment, as it is when it
    /// looks like a code (`token_expired`), quoted otherwise, so that it reads as the
    /// server's words. Cleaned whole first: the segment alone could hold too little of a
    /// secret to be recognised.
    pub(crate) fn problem(&self, value: &str) -> String {
        let cleaned = self.text(value);
        if cleaned == REDACTED {
            return cleaned;
        }
        let code = cleaned.rsplit('/').next().unwrap_or(&cleaned);
        let plain = code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if (plain && !code.is_empty()) || code == "<redacted>" {
            code.to_owned()
        } else {
            format!("{code:?}")
        }
    }

    /// Learns one more secret never to print (a tenant's client secret, a store key).
    pub(crate) fn add_secret(&self, secret: &str) {
        self.redactor().add_secret(secret);
    }

    /// Learns a token this client sent.
    fn note_token(&self, token: &str) {
        self.add_secret(token);
    }
}

/// `text` as the crate shows a URL (no user info, no query), or a note that it is none.
pub(crate) fn url(text: &str) -> String {
    match text.parse::<Uri>() {
        Ok(uri) => redact::url(&uri).to_string(),
        Err(_) => "(not a valid url)".to_owned(),
    }
}

/// The HTTP client under the OAuth layer, telling [`Shown`] each token it carries: the
/// tokens are secrets the layer never hands out.
#[derive(Clone)]
pub(crate) struct NoteTokens<S> {
    inner: S,
    shown: Shown,
}

impl<S> NoteTokens<S> {
    pub(crate) fn new(inner: S, shown: Shown) -> Self {
        Self { inner, shown }
    }
}

impl<S, B> Service<Request<B>> for NoteTokens<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let token = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("DPoP "))
            });
        if let Some(token) = token {
            self.shown.note_token(token);
        }
        self.inner.call(req)
    }
}
