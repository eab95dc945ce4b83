//! Shared state of a mock server: the application, the tokens and the test knobs.
//!
//! [`Shared`] is what every connection task and the [`MockServer`](super::MockServer)
//! handle hold through an `Arc`: the fixed application settings, the lock-free counters
//! and, behind one std mutex, everything that changes. [`lock`] is the module's only way
//! to take a mutex.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::config::{MockConfig, TokenFailure};
use super::stats::{Counters, IssuedToken};

/// A set of the scopes SimpleDocs knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Scopes {
    pub(super) read: bool,
    pub(super) write: bool,
}

impl Scopes {
    /// Only `read`.
    pub(super) const READ: Scopes = Scopes {
        read: true,
        write: false,
    };
    /// Only `write`.
    pub(super) const WRITE: Scopes = Scopes {
        read: false,
        write: true,
    };

    /// Both `read` and `write`.
    pub(super) const READ_WRITE: Scopes = Scopes {
        read: true,
        write: true,
    };

    /// Whether every scope of `other` is in `self`.
    pub(super) fn contains(self, other: Scopes) -> bool {
        (self.read || !other.read) && (self.write || !other.write)
    }

    /// Whether the set is empty.
    pub(super) fn is_empty(self) -> bool {
        !self.read && !self.write
    }

    /// The canonical space-separated form, `read` before `write`.
    pub(super) fn canonical(self) -> String {
        match (self.read, self.write) {
            (true, true) => "read write",
            (true, false) => "read",
            (false, true) => "write",
            (false, false) => "",
        }
        .to_owned()
    }

    /// Parses a space-separated scope list; `Err` names the first unknown scope.
    pub(super) fn parse(list: &str) -> Result<Scopes, String> {
        let mut scopes = Scopes::default();
        for item in list.split(' ').filter(|item| !item.is_empty()) {
            match item {
                "read" => scopes.read = true,
                "write" => scopes.write = true,
                other => return Err(other.to_owned()),
            }
        }
        Ok(scopes)
    }

    /// Parses a configured application scope, ignoring unknown entries.
    fn parse_lenient(list: &str) -> Scopes {
        Scopes {
            read: list.split_whitespace().any(|item| item == "read"),
            write: list.split_whitespace().any(|item| item == "write"),
        }
    }
}

/// What the server remembers about an issued token.
#[derive(Debug)]
pub(super) struct TokenInfo {
    pub(super) scope: Scopes,
    /// `None` when the lifetime is too long to represent: the token never expires.
    pub(super) expires_at: Option<Instant>,
    pub(super) revoked: bool,
    /// The thumbprint of the DPoP key the token is bound to; `None` for a bearer token.
    pub(super) jkt: Option<String>,
}

/// The mutable part of the state, behind a std mutex that is never held across `.await`.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) token_lifetime: Duration,
    pub(super) expires_in_field: Option<serde_json::Value>,
    pub(super) token_delay: Duration,
    /// Pending injected failures: how many requests remain for each (`usize::MAX`: forever).
    pub(super) failures: VecDeque<(usize, TokenFailure)>,
    pub(super) tokens: HashMap<String, TokenInfo>,
    pub(super) issued: Vec<IssuedToken>,
    pub(super) documents: Vec<Bytes>,
    pub(super) next_document_id: u64,
}

impl Inner {
    /// Takes the failure for the next token request, if any.
    pub(super) fn take_failure(&mut self) -> Option<TokenFailure> {
        let (remaining, failure) = self.failures.front_mut()?;
        let failure = failure.clone();
        if *remaining != usize::MAX {
            *remaining -= 1;
            if *remaining == 0 {
                self.failures.pop_front();
            }
        }
        Some(failure)
    }
}

/// Everything the connection tasks and the [`MockServer`](super::MockServer) handle share.
pub(super) struct Shared {
    /// `http://127.0.0.1:PORT`, the issuer: token assertions and DPoP proofs name it.
    pub(super) base_url: String,
    /// The base URL and the token endpoint's path.
    pub(super) token_url: String,
    pub(super) client_id: String,
    pub(super) client_secret: String,
    /// Tenant applications accepted besides the main one (`tenant-1` ..).
    pub(super) tenants: usize,
    pub(super) app_scope: Scopes,
    pub(super) counters: Counters,
    /// Signed client authentication and DPoP.
    #[cfg(feature = "jwt")]
    pub(super) jose: super::jose::Jose,
    inner: Mutex<Inner>,
}

impl Shared {
    /// Builds the initial state of the server at `base_url` from a configuration.
    pub(super) fn new(config: MockConfig, base_url: String, token_path: &str) -> Shared {
        Shared {
            token_url: format!("{base_url}{token_path}"),
            base_url,
            #[cfg(feature = "jwt")]
            jose: super::jose::Jose::new(config.jose),
            app_scope: Scopes::parse_lenient(&config.app_scope),
            client_id: config.client_id,
            client_secret: config.client_secret,
            tenants: config.tenants,
            counters: Counters::default(),
            inner: Mutex::new(Inner {
                token_lifetime: config.token_lifetime,
                expires_in_field: None,
                token_delay: Duration::ZERO,
                failures: VecDeque::new(),
                tokens: HashMap::new(),
                issued: Vec::new(),
                documents: Vec::new(),
                next_document_id: 1,
            }),
        }
    }

    /// Locks the mutable state.
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
}

pub(super) use crate::sync::lock;
