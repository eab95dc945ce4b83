//! Tokens, scopes and token requests: what fetchers take and return.

use std::{fmt, sync::Arc, time::Duration};

use zeroize::Zeroizing;

use crate::tenant::Tenant;

/// A secret string, the one type behind [`ClientSecret`](crate::ClientSecret) and
/// [`AccessToken`]: `<redacted>` in `Debug` and `Display`, wiped from memory on drop.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(Zeroizing<String>);

impl Secret {
    pub(crate) fn new(secret: String) -> Self {
        Self(Zeroizing::new(secret))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An access token: redacted in `Debug` and `Display`, wiped from memory on drop.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AccessToken(Secret);

impl AccessToken {
    /// Wraps a token string.
    pub fn new(token: impl Into<String>) -> Self {
        Self(Secret::new(token.into()))
    }

    /// The token itself; keep it out of logs.
    pub fn secret(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A set of OAuth scopes, kept in a canonical form (sorted, without duplicates) so that
/// `"write read"` and `"read write"` are the same scope set and share one cached token.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(Arc<str>);

impl Scope {
    /// Parses a space-separated scope list.
    pub fn new(scope: &str) -> Self {
        let mut parts: Vec<&str> = scope.split_ascii_whitespace().collect();
        parts.sort_unstable();
        parts.dedup();
        Self(parts.join(" ").into())
    }

    /// The canonical space-separated form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The individual scope tokens.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split(' ').filter(|s| !s.is_empty())
    }

    /// Whether every scope of `other` is in `self`.
    pub fn contains(&self, other: &Scope) -> bool {
        other.iter().all(|s| self.iter().any(|t| t == s))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Scope {
    fn from(s: &str) -> Self {
        Scope::new(s)
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({:?})", &*self.0)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A token as a fetcher returns it.
#[derive(Clone)]
#[non_exhaustive]
pub struct Token {
    /// The access token.
    pub access_token: AccessToken,
    /// Its lifetime as the server stated it; `None` when the server did not say (or said
    /// zero), in which case the layer's default lifetime applies.
    pub expires_in: Option<Duration>,
    /// When the server advises renewing it (a `refresh_in` field, as Microsoft's
    /// endpoints send); `None` when it did not say. Renewal is then due at this point
    /// of its lifetime, never after expiry, whatever the builder says.
    pub refresh_in: Option<Duration>,
    /// The scope the server granted; `None` when the response did not say, which
    /// RFC 6749 §5.1 defines as "the scope that was requested".
    pub scope: Option<Scope>,
    /// Other fields of the token response, kept as the server sent them.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// How the token is sent: `Bearer`, or `DPoP` with a proof (RFC 9449).
    pub token_type: TokenType,
}

/// The `token_type` of a token, which names the `Authorization` scheme it is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TokenType {
    /// `Authorization: Bearer <token>` (RFC 6750). The default.
    #[default]
    Bearer,
    /// `Authorization: DPoP <token>` with a `DPoP` proof on each request (RFC 9449).
    DPoP,
}

impl Token {
    /// A bearer token with the given lifetime.
    pub fn new(access_token: impl Into<String>, expires_in: Option<Duration>) -> Self {
        Self {
            access_token: AccessToken::new(access_token),
            expires_in,
            refresh_in: None,
            scope: None,
            extra: serde_json::Map::new(),
            token_type: TokenType::Bearer,
        }
    }

    /// Sets when the token should be renewed, counted from its request (see
    /// [`refresh_in`](Self::refresh_in)).
    pub fn with_refresh_in(mut self, refresh_in: Duration) -> Self {
        self.refresh_in = Some(refresh_in);
        self
    }

    /// Sets the token type. Default: [`TokenType::Bearer`].
    pub fn with_token_type(mut self, token_type: TokenType) -> Self {
        self.token_type = token_type;
        self
    }

    /// Its lifetime as the layer counts it: as stated (a zero is no statement), else
    /// `default`; never more than `max`.
    pub(crate) fn lifetime(&self, default: Duration, max: Duration) -> Duration {
        match self.expires_in {
            Some(d) if !d.is_zero() => d,
            _ => default,
        }
        .min(max)
    }

    /// Sets the granted scope.
    pub fn with_scope(mut self, scope: impl Into<Scope>) -> Self {
        self.scope = Some(scope.into());
        self
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &self.access_token)
            .field("expires_in", &self.expires_in)
            .field("refresh_in", &self.refresh_in)
            .field("scope", &self.scope)
            .field("token_type", &self.token_type)
            // Extra fields may hold other credentials (an id_token, say): keys only.
            .field("extra_fields", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What a token slot is for: a tenant (on a layer for many) and a scope set; an empty
/// scope set is none.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct SlotKey {
    pub(crate) tenant: Option<Tenant>,
    pub(crate) scope: Option<Scope>,
}

impl SlotKey {
    /// The key of a scope set, with no tenant.
    pub(crate) fn scope(scope: Option<Scope>) -> Self {
        Self {
            tenant: None,
            scope: scope.filter(|s| !s.is_empty()),
        }
    }
}

/// Why a token is being fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FetchReason {
    /// There was no token yet.
    First,
    /// The current token is near its end and is renewed while still in use.
    AheadOfExpiry,
    /// The current token expired before it could be renewed.
    Expired,
    /// The API rejected the current token.
    Rejected,
    /// The control handle asked for a new token.
    Forced,
}

impl FetchReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::First => "first",
            Self::AheadOfExpiry => "ahead_of_expiry",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
            Self::Forced => "forced",
        }
    }
}

/// What a token fetcher is asked for: a token for a scope set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenRequest {
    /// The scope to request; `None` for none, or for the fetcher's default when the scope
    /// is not [explicit](Self::scope_is_explicit).
    pub scope: Option<Scope>,
    /// Why the token is needed.
    pub reason: FetchReason,
    explicit_scope: bool,
    tenant: Option<Tenant>,
    #[cfg(feature = "jwt")]
    dpop: Option<crate::jose::Dpop>,
}

impl TokenRequest {
    /// A request for the given scope, [not explicit](Self::scope_is_explicit).
    pub fn new(scope: Option<Scope>, reason: FetchReason) -> Self {
        Self {
            scope,
            reason,
            explicit_scope: false,
            tenant: None,
            #[cfg(feature = "jwt")]
            dpop: None,
        }
    }

    /// The tenant the token is for, on a layer for many
    /// ([`OAuthLayerBuilder::tenant_policy`](crate::OAuthLayerBuilder::tenant_policy));
    /// `None` on others, and for requests the policy named no tenant for.
    pub fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }

    /// Sets the [tenant](Self::tenant), as the layer does; for testing a fetcher of your
    /// own.
    pub fn with_tenant(mut self, tenant: Option<Tenant>) -> Self {
        self.tenant = tenant;
        self
    }

    /// The DPoP signer the token is to be bound to, if any.
    #[cfg(feature = "jwt")]
    pub fn dpop(&self) -> Option<&crate::jose::Dpop> {
        self.dpop.as_ref()
    }

    /// Sets a DPoP signer: the built-in fetcher then sends a proof, and accepts a
    /// `DPoP` token. Default: none.
    #[cfg(feature = "jwt")]
    pub fn with_dpop(mut self, dpop: crate::jose::Dpop) -> Self {
        self.dpop = Some(dpop);
        self
    }

    /// Whether [`scope`](Self::scope), `None` included, was chosen by a scope policy set
    /// on the layer ([`OAuthLayerBuilder::scope_policy`](crate::OAuthLayerBuilder::scope_policy), which
    /// `OAuthLayer::builder` sets too), and is to be asked for as it is: `None` is then no
    /// scope at all. `false` under the default policy of
    /// [`OAuthLayer::with_fetcher`](crate::OAuthLayer::with_fetcher) and for requests
    /// made with [`new`](Self::new) (see
    /// [`with_explicit_scope`](Self::with_explicit_scope)): a fetcher may then put a
    /// default scope of its own in place of `None`, as
    /// [`HttpFetcher`](crate::fetch::HttpFetcher) does with its credentials' scope.
    pub fn scope_is_explicit(&self) -> bool {
        self.explicit_scope
    }

    /// Sets whether the scope is [explicit](Self::scope_is_explicit), as the layer does
    /// for the requests it makes; for testing a fetcher of your own with both kinds.
    ///
    /// ```
    /// use tower_oauth::{FetchReason, Scope, TokenRequest};
    ///
    /// let none_at_all = TokenRequest::new(None, FetchReason::First).with_explicit_scope(true);
    /// assert!(none_at_all.scope_is_explicit());
    /// let read = TokenRequest::new(Some(Scope::new("read")), FetchReason::First);
    /// assert!(!read.scope_is_explicit());
    /// ```
    pub fn with_explicit_scope(mut self, explicit: bool) -> Self {
        self.explicit_scope = explicit;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_canonical() {
        assert_eq!(Scope::new("write  read read"), Scope::new("read write"));
        assert_eq!(Scope::new("write read").as_str(), "read write");
        assert!(Scope::new("read write").contains(&Scope::new("write")));
        assert!(!Scope::new("read").contains(&Scope::new("write")));
    }

    #[test]
    fn an_access_token_is_redacted_in_debug_and_display() {
        let token = AccessToken::new("very-secret-token");
        assert_eq!(format!("{token:?}"), "AccessToken(<redacted>)");
        assert_eq!(token.to_string(), "<redacted>");
        assert_eq!(token.secret(), "very-secret-token");
    }

    #[test]
    fn token_debug_names_the_extra_fields_but_hides_their_values() {
        let mut t =
            Token::new("very-secret-token", Some(Duration::from_secs(5))).with_scope("read");
        t.extra
            .insert("id_token".into(), "eyJ-secret-id-token".into());
        let shown = format!("{t:?}");
        for part in [
            "AccessToken(<redacted>)",
            "expires_in: Some(5s)",
            r#"Scope("read")"#,
            "id_token",
        ] {
            assert!(shown.contains(part), "{part} in {shown}");
        }
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn tokens_are_redacted() {
        let t = Token::new("very-secret-token", Some(Duration::from_secs(5)));
        let shown = format!("{t:?} {} {:?}", t.access_token, t.access_token);
        assert!(!shown.contains("very-secret-token"), "{shown}");
    }
}
