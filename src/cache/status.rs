//! What the control handle shows of a slot: its token's status and fetch record.
//!
//! Built on demand from the slot's state; it carries no token and no secret, so it is
//! safe to log.

use std::time::Duration;

use tokio::time::Instant;

use super::{flight::Control, token::Installed, token::Phase};
use crate::{error::ErrorKind, tenant::Tenant, token::Scope};

/// What the control handle shows of a slot; no token in it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenState {
    /// The scope set requested for this slot.
    pub scope: Option<Scope>,
    /// The tenant its tokens are for, on a layer for many
    /// ([`OAuthLayerBuilder::tenant_policy`](crate::OAuthLayerBuilder::tenant_policy)).
    pub tenant: Option<Tenant>,
    /// The scope the server granted, when it said.
    pub granted_scope: Option<Scope>,
    /// Whether the granted scope covers the requested one.
    pub scope_satisfied: bool,
    /// The status of the current token.
    pub status: TokenStatus,
    /// Time until the current token expires (by the layer's reckoning), if there is one
    /// and it has not expired.
    pub expires_in: Option<Duration>,
    /// Token requests made so far (each attempt counts); not tokens read from a
    /// [store](crate::store).
    pub fetches: u64,
    /// Tokens read from the layer's [store](crate::store), fetched by another process
    /// (or layer).
    pub store_hits: u64,
    /// The kind of the most recent fetch failure, if any fetch failed.
    pub last_error: Option<ErrorKind>,
    /// Whether a fetch is in flight.
    pub fetching: bool,
}

/// The status of a slot's current token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenStatus {
    /// No token has been obtained yet.
    None,
    /// A token is in use and not yet due for renewal.
    Fresh,
    /// A token is in use and due for renewal.
    RenewalDue,
    /// The token expired.
    Expired,
    /// The API rejected the token.
    Rejected,
}

impl TokenStatus {
    /// The status of a slot whose token is in `phase` (`None`: no token). Not a `From`
    /// impl: `Phase` is private, and a public impl would show it in the docs.
    fn of(phase: Option<Phase>) -> Self {
        match phase {
            None => TokenStatus::None,
            Some(Phase::Fresh) => TokenStatus::Fresh,
            Some(Phase::RenewDue) => TokenStatus::RenewalDue,
            Some(Phase::Expired) => TokenStatus::Expired,
            Some(Phase::Rejected) => TokenStatus::Rejected,
        }
    }
}

/// A slot's counters.
pub(super) struct Counts {
    pub(super) fetches: u64,
    pub(super) store_hits: u64,
}

/// The state of a slot asking for `scope`, whose current token (if any) is `token` in
/// its phase; read under the slot's lock, so that the two agree.
pub(super) fn view(
    scope: Option<&Scope>,
    tenant: Option<&Tenant>,
    token: Option<(&Installed, Phase)>,
    control: &Control,
    counts: Counts,
) -> TokenState {
    let now = Instant::now();
    TokenState {
        scope: scope.cloned(),
        tenant: tenant.cloned(),
        granted_scope: token.and_then(|(t, _)| t.granted.clone()),
        scope_satisfied: token.is_none_or(|(t, _)| t.scope_ok),
        status: TokenStatus::of(token.map(|(_, phase)| phase)),
        expires_in: token
            .filter(|(_, phase)| phase.live())
            .map(|(t, _)| t.expires_at.saturating_duration_since(now)),
        fetches: counts.fetches,
        store_hits: counts.store_hits,
        last_error: control.last_error,
        fetching: control.fetch.flight().is_some(),
    }
}
