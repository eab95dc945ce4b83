//! What a mock server observed: request counters and the tokens it issued.
//!
//! The connection tasks bump [`Counters`] without taking the state lock; a test reads them
//! as a [`MockStats`] snapshot through [`MockServer::stats`](super::MockServer::stats).
//! [`IssuedToken`] records each grant without the token text.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A snapshot of the server's request counters, see [`MockServer::stats`](super::MockServer::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MockStats {
    /// Requests to the token endpoint, whatever their outcome.
    pub token_requests: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// Token requests answered with an error, including injected failures.
    pub token_errors: u64,
    /// Requests to any path under `/api/v1/`.
    pub api_requests: u64,
    /// API requests answered with a 2xx status.
    pub api_ok: u64,
    /// API requests rejected with `token_expired` (expired or revoked token).
    pub api_token_expired: u64,
    /// API requests rejected with `invalid_token` (unknown token).
    pub api_invalid_token: u64,
    /// API requests rejected with `unauthorized` (no `Authorization: Bearer` header).
    pub api_unauthorized: u64,
    /// API requests rejected with `insufficient_scope`.
    pub api_insufficient_scope: u64,
    /// Requests for the metadata document, `/.well-known/oauth-authorization-server`.
    pub discovery_requests: u64,
    /// Client assertions that verified (`private_key_jwt`, `client_secret_jwt`).
    pub assertions_verified: u64,
    /// DPoP proofs examined, at the token endpoint and the API, whatever the outcome.
    pub dpop_proofs_checked: u64,
    /// DPoP proofs refused as `invalid_dpop_proof`, a token bound to another key included.
    pub dpop_proofs_rejected: u64,
    /// `use_dpop_nonce` challenges, at the token endpoint and the API.
    pub dpop_nonce_challenges: u64,
}

impl MockStats {
    /// Returns the number of API requests rejected for authentication or authorization reasons.
    pub fn api_rejected(&self) -> u64 {
        self.api_token_expired
            + self.api_invalid_token
            + self.api_unauthorized
            + self.api_insufficient_scope
    }
}

/// What the server issued for one token (the token text itself is deliberately absent).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssuedToken {
    /// The granted scope, in canonical order (`read`, `write` or `read write`).
    pub scope: String,
    /// The lifetime the server enforces for this token.
    pub lifetime: Duration,
    /// For a DPoP token, the RFC 7638 thumbprint of the key it is bound to (`jkt`).
    pub jkt: Option<String>,
}

/// Request counters, updated without taking the lock.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) token_requests: AtomicU64,
    pub(super) tokens_issued: AtomicU64,
    pub(super) token_errors: AtomicU64,
    pub(super) api_requests: AtomicU64,
    pub(super) api_ok: AtomicU64,
    pub(super) api_token_expired: AtomicU64,
    pub(super) api_invalid_token: AtomicU64,
    pub(super) api_unauthorized: AtomicU64,
    pub(super) api_insufficient_scope: AtomicU64,
    pub(super) discovery_requests: AtomicU64,
    pub(super) assertions_verified: AtomicU64,
    pub(super) dpop_proofs_checked: AtomicU64,
    pub(super) dpop_proofs_rejected: AtomicU64,
    pub(super) dpop_nonce_challenges: AtomicU64,
}

impl Counters {
    /// Adds one to `counter`.
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
    }

    /// Reads every counter.
    pub(super) fn snapshot(&self) -> MockStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::SeqCst);
        MockStats {
            token_requests: get(&self.token_requests),
            tokens_issued: get(&self.tokens_issued),
            token_errors: get(&self.token_errors),
            api_requests: get(&self.api_requests),
            api_ok: get(&self.api_ok),
            api_token_expired: get(&self.api_token_expired),
            api_invalid_token: get(&self.api_invalid_token),
            api_unauthorized: get(&self.api_unauthorized),
            api_insufficient_scope: get(&self.api_insufficient_scope),
            discovery_requests: get(&self.discovery_requests),
            assertions_verified: get(&self.assertions_verified),
            dpop_proofs_checked: get(&self.dpop_proofs_checked),
            dpop_proofs_rejected: get(&self.dpop_proofs_rejected),
            dpop_nonce_challenges: get(&self.dpop_nonce_challenges),
        }
    }
}
