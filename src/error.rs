//! Errors: why a token could not be obtained.

use std::{fmt, sync::Arc, time::Duration};

use http::StatusCode;
use tokio::time::Instant;

use crate::redact::sanitize;

/// A boxed error, the error type at the service boundary (as in tower).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of failure an [`Error`] is; match on it to decide what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The token endpoint rejected the client id or secret (`invalid_client`).
    InvalidClient,
    /// The requested scope is invalid, unknown or exceeds what the client may have (`invalid_scope`).
    InvalidScope,
    /// The client may not use this grant (`unauthorized_client`).
    UnauthorizedClient,
    /// Any other OAuth error code (`invalid_request`, `unsupported_grant_type`, ...);
    /// [`Error::oauth_error`] tells which.
    OAuth,
    /// The token endpoint answered with an HTTP error status and no usable OAuth error
    /// document (an HTML error page, plain text, an empty body).
    HttpStatus,
    /// The token endpoint answered success with a body that is not a usable token
    /// response.
    MalformedResponse,
    /// The token request could not be sent or its response could not be read.
    Transport,
    /// The token request did not complete within the fetch timeout (or a timeout the
    /// fetcher applies itself: tokio's or tower's `Elapsed`).
    Timeout,
    /// The configuration cannot work, e.g. a plain-HTTP token URL that is not on loopback.
    Config,
    /// The granted scope lacks a requested scope and strict scope checking is on.
    InsufficientScope,
    /// The token fetch stopped without an outcome (its runtime shut down, or it panicked).
    Cancelled,
}

impl ErrorKind {
    /// Whether errors of this kind are always worth retrying: transport failures,
    /// timeouts and cancelled fetches.
    ///
    /// For [`ErrorKind::HttpStatus`] and [`ErrorKind::OAuth`] it depends on the status
    /// or code (5xx, 408, 429, `server_error` and `temporarily_unavailable` are
    /// retryable), so ask [`Error::is_retryable`] rather than the kind.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Transport | Self::Timeout | Self::Cancelled)
    }

    fn describe(self) -> &'static str {
        match self {
            Self::InvalidClient => "token endpoint rejected the client credentials",
            Self::InvalidScope => "token endpoint rejected the requested scope",
            Self::UnauthorizedClient => "client is not authorized for the client-credentials grant",
            Self::OAuth => "token endpoint returned an oauth error",
            Self::HttpStatus => "token endpoint returned an http error",
            Self::MalformedResponse => "token endpoint returned a malformed token response",
            Self::Transport => "token request failed",
            Self::Timeout => "token request timed out",
            Self::Config => "invalid oauth configuration",
            Self::InsufficientScope => "granted token scope lacks a requested scope",
            Self::Cancelled => "token fetch was cancelled",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Why a token could not be obtained.
///
/// It is cheap to clone: one failed fetch is shared by every request that waited on it.
/// It reaches callers of the service as a [`BoxError`]; use
/// `err.downcast_ref::<tower_oauth::Error>()` to get it back. It never contains the
/// client secret or a token.
///
/// Its text starts with the layer's [name](crate::OAuthLayerBuilder::name), if it has one, and
/// names the token endpoint's host when it is known:
/// `simpledocs: token request failed (auth.example.com)`.
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    status: Option<StatusCode>,
    oauth_error: Option<String>,
    detail: Option<String>,
    retry_after: Option<Duration>,
    /// The name of the layer that returned it, if it has one.
    layer: Option<Arc<str>>,
    /// The token endpoint's host (and port), never its user info, path or query.
    host: Option<Arc<str>>,
    /// Set by the layer when it gives up: until then it answers this error, not fetching.
    cooldown_until: Option<Instant>,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind`, with no status, code, source or `Retry-After`; the `with_`
    /// methods add them.
    ///
    /// A fetcher of your own returns such an error (boxed, as its `BoxError`), and the
    /// layer handles it as it does the built-in fetcher's: a non-retryable kind fails at
    /// once, a retryable one is retried within the retry budget, and
    /// [`retry_after`](Error::retry_after) is honoured.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::StatusCode;
    /// use tower_oauth::{Error, ErrorKind};
    ///
    /// let err = Error::new(ErrorKind::InvalidClient)
    ///     .with_oauth_error("invalid_client")
    ///     .with_status(StatusCode::UNAUTHORIZED);
    /// assert!(!err.is_retryable());
    ///
    /// let busy = Error::new(ErrorKind::HttpStatus)
    ///     .with_status(StatusCode::SERVICE_UNAVAILABLE)
    ///     .with_retry_after(Duration::from_secs(30));
    /// assert!(busy.is_retryable());
    /// ```
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            inner: Arc::new(Inner {
                kind,
                status: None,
                oauth_error: None,
                detail: None,
                retry_after: None,
                cooldown_until: None,
                layer: None,
                host: None,
                source: None,
            }),
        }
    }

    /// Sets the error this one comes from, returned by `source()`. Its text is shown in
    /// logs (cleaned of control characters), so it must not hold a secret.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner_mut().source = Some(Arc::from(source.into()));
        self
    }

    /// Sets the OAuth error code (`invalid_client`, `temporarily_unavailable`, ...).
    ///
    /// With [`ErrorKind::OAuth`], `server_error` and `temporarily_unavailable` make the
    /// error retryable.
    pub fn with_oauth_error(mut self, code: &str) -> Self {
        self.inner_mut().oauth_error = Some(sanitize(code));
        self
    }

    /// Sets the HTTP status the token endpoint answered with.
    ///
    /// With [`ErrorKind::HttpStatus`] or [`ErrorKind::OAuth`], a 5xx, 408 or 429 status
    /// makes the error retryable.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.inner_mut().status = Some(status);
        self
    }

    /// Sets how long the token endpoint asked clients to wait: the layer waits at least
    /// this long (up to its `max_retry_after`) before fetching again.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.inner_mut().retry_after = Some(after);
        self
    }

    /// Sets a description shown after the kind; cleaned of control characters and cut.
    pub(crate) fn with_detail(mut self, detail: &str) -> Self {
        self.inner_mut().detail = Some(sanitize(detail));
        self
    }

    pub(crate) fn with_retry_after_opt(self, after: Option<Duration>) -> Self {
        match after {
            Some(after) => self.with_retry_after(after),
            None => self,
        }
    }

    /// Says which layer and token host the error is from; a host it has is kept.
    pub(crate) fn with_origin(mut self, layer: Option<&Arc<str>>, host: Option<&Arc<str>>) -> Self {
        let host = host.filter(|_| self.inner.host.is_none());
        if layer.is_none() && host.is_none() {
            return self;
        }
        let inner = self.inner_mut();
        if let Some(layer) = layer {
            inner.layer = Some(layer.clone());
        }
        if let Some(host) = host {
            inner.host = Some(host.clone());
        }
        self
    }

    /// Marks the error as the one the layer answers, without fetching, until `until`.
    pub(crate) fn with_cooldown_until(mut self, until: Instant) -> Self {
        self.inner_mut().cooldown_until = Some(until);
        self
    }

    /// A fresh error has the only reference; a clone being extended is copied first.
    fn inner_mut(&mut self) -> &mut Inner {
        Arc::make_mut(&mut self.inner)
    }

    pub(crate) fn malformed(what: &'static str) -> Self {
        Error::new(ErrorKind::MalformedResponse).with_detail(what)
    }

    /// Turns any fetcher error into an `Error`, keeping ours as they are.
    pub(crate) fn from_fetcher(err: BoxError) -> Self {
        match err.downcast::<Error>() {
            Ok(err) => *err,
            Err(err) => {
                if err.is::<tokio::time::error::Elapsed>()
                    || err.is::<tower::timeout::error::Elapsed>()
                {
                    Error::new(ErrorKind::Timeout)
                } else {
                    Error::new(ErrorKind::Transport).with_source(err)
                }
            }
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Whether trying again later can help; a `tower::retry` policy can use this.
    ///
    /// True for the kinds [`ErrorKind::is_retryable`] names, and for
    /// [`ErrorKind::HttpStatus`] and [`ErrorKind::OAuth`] with a 5xx, 408 or 429 status,
    /// or the OAuth code `server_error` or `temporarily_unavailable`.
    pub fn is_retryable(&self) -> bool {
        let inner = &self.inner;
        let retryable_status = |s: StatusCode| {
            s.is_server_error()
                || s == StatusCode::TOO_MANY_REQUESTS
                || s == StatusCode::REQUEST_TIMEOUT
        };
        match inner.kind {
            ErrorKind::HttpStatus | ErrorKind::OAuth => {
                inner.status.is_some_and(retryable_status)
                    || matches!(
                        inner.oauth_error.as_deref(),
                        Some("server_error" | "temporarily_unavailable")
                    )
            }
            kind => kind.is_retryable(),
        }
    }

    /// The HTTP status the token endpoint answered with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        self.inner.status
    }

    /// The OAuth error code (`invalid_client`, ...), from either an RFC 6749 `error`
    /// field or a problem document's `type`.
    pub fn oauth_error(&self) -> Option<&str> {
        self.inner.oauth_error.as_deref()
    }

    /// How long the token endpoint asked clients to wait (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// How much longer, from now, the layer goes on answering this error without a new
    /// fetch: the cooldown after it gave up (see
    /// [`retry_budget`](crate::OAuthLayerBuilder::retry_budget)). `None` for an error the
    /// layer did not give up with (a fetcher's own error, before the layer saw it).
    ///
    /// A retry policy outside the layer should pause at least this long: a request sent
    /// sooner gets this error again.
    pub fn cooldown(&self) -> Option<Duration> {
        let until = self.inner.cooldown_until?;
        Some(until.saturating_duration_since(Instant::now()))
    }

    /// The errors below this one, outermost first, as a log line shows them (`""` when
    /// there are none): `Display` leaves its source out, as is usual, and a transport
    /// failure's reason (refused, reset, a TLS failure) is there.
    pub(crate) fn causes(&self) -> String {
        let mut out = String::new();
        let mut next = std::error::Error::source(self);
        // Bounded, like server text: a source chain is not ours.
        for _ in 0..8 {
            let Some(err) = next else { break };
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&sanitize(&err.to_string()));
            next = err.source();
        }
        out
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        if let Some(layer) = &inner.layer {
            write!(f, "{layer}: ")?;
        }
        f.write_str(inner.kind.describe())?;
        // What is known of where it failed, in parentheses: host, code, status.
        let status = inner.status.map(|s| format!("http {}", s.as_u16()));
        let mut parts = [
            inner.host.as_deref(),
            inner.oauth_error.as_deref(),
            status.as_deref(),
        ]
        .into_iter()
        .flatten();
        if let Some(first) = parts.next() {
            write!(f, " ({first}")?;
            for part in parts {
                write!(f, ", {part}")?;
            }
            f.write_str(")")?;
        }
        if let Some(detail) = &self.inner.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("retryable", &self.is_retryable());
        if let Some(status) = self.inner.status {
            d.field("status", &status);
        }
        if let Some(code) = &self.inner.oauth_error {
            d.field("oauth_error", code);
        }
        if let Some(detail) = &self.inner.detail {
            d.field("detail", detail);
        }
        if let Some(after) = self.inner.retry_after {
            d.field("retry_after", &after);
        }
        if let Some(layer) = &self.inner.layer {
            d.field("layer", layer);
        }
        if let Some(host) = &self.inner.host {
            d.field("host", host);
        }
        if let Some(source) = &self.inner.source {
            d.field("source", &**source);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::MAX_TEXT;

    #[test]
    fn display_is_lowercase_and_names_the_code() {
        let err = Error::new(ErrorKind::InvalidClient)
            .with_status(StatusCode::UNAUTHORIZED)
            .with_oauth_error("invalid_client");
        assert_eq!(
            err.to_string(),
            "token endpoint rejected the client credentials (invalid_client, http 401)"
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn server_text_is_stripped_of_control_characters_and_cut() {
        let long = format!("a\r\nb\u{202e}{}", "x".repeat(500));
        let err = Error::new(ErrorKind::OAuth).with_detail(&long);
        let shown = err.to_string();
        assert!(!shown.contains('\n') && !shown.contains('\r') && !shown.contains('\u{202e}'));
        assert!(shown.len() < 300);
        assert!(shown.ends_with('…'));
        // Cut only when something was cut: control characters removed do not count.
        let exact = format!("{}\r\n", "y".repeat(MAX_TEXT));
        let shown = Error::new(ErrorKind::OAuth).with_detail(&exact).to_string();
        assert!(shown.ends_with(&"y".repeat(MAX_TEXT)), "{shown}");
    }

    #[test]
    fn debug_shows_every_field_that_is_set() {
        let err = Error::new(ErrorKind::OAuth)
            .with_status(StatusCode::SERVICE_UNAVAILABLE)
            .with_oauth_error("temporarily_unavailable")
            .with_detail("try again\r\nlater")
            .with_retry_after(Duration::from_secs(7))
            .with_source(std::io::Error::other("boom"));
        let shown = format!("{err:?}");
        for part in [
            "kind: OAuth",
            "retryable: true",
            "status: 503",
            "oauth_error: \"temporarily_unavailable\"",
            "detail: \"try againlater\"",
            "retry_after: 7s",
            "source: Custom",
        ] {
            assert!(shown.contains(part), "{part} in {shown}");
        }
        // Unset fields are left out.
        let shown = format!("{:?}", Error::new(ErrorKind::Timeout));
        assert_eq!(shown, "Error { kind: Timeout, retryable: true }");
    }

    #[test]
    fn causes_lists_the_source_chain_outermost_first() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("connect failed")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = Error::new(ErrorKind::Transport).with_source(Outer(refused));
        assert_eq!(err.causes(), "connect failed: refused");
        assert_eq!(Error::new(ErrorKind::Timeout).causes(), "");
    }

    #[test]
    fn fetcher_errors_keep_our_error_and_wrap_others() {
        let ours: BoxError = Box::new(Error::new(ErrorKind::InvalidScope));
        assert_eq!(Error::from_fetcher(ours).kind(), ErrorKind::InvalidScope);
        let elapsed: BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert_eq!(Error::from_fetcher(elapsed).kind(), ErrorKind::Timeout);
        let io: BoxError = Box::new(std::io::Error::other("boom"));
        let wrapped = Error::from_fetcher(io);
        assert_eq!(wrapped.kind(), ErrorKind::Transport);
        assert!(std::error::Error::source(&wrapped).is_some());
    }
}
