//! One attempt at a token: from the layer's store when another process fetched one,
//! else from the token fetcher; readied for installing.

use std::{panic::AssertUnwindSafe, sync::atomic::Ordering, time::SystemTime};

use futures_util::FutureExt;
use tokio::time::Instant;
use tower::ServiceExt;

use super::{
    token::{Installed, Phase},
    Slot,
};
use crate::{
    error::{Error, ErrorKind},
    store::fleet::Lifetimes,
    token::{FetchReason, Token, TokenRequest},
};

impl Slot {
    /// One attempt: fetches a token, bounded by `fetch_timeout`, and readies it for
    /// installing. A fetcher that panics is a failed fetch like any other, backed off
    /// from and cooled down after, not a cancelled flight that the next request restarts
    /// at once.
    pub(super) async fn fetch_once(
        &self,
        reason: FetchReason,
        started: Instant,
    ) -> Result<Installed, Error> {
        self.fetch_once_unlabelled(reason, started)
            .await
            .map_err(|err| self.core.label(err))
    }

    async fn fetch_once_unlabelled(
        &self,
        reason: FetchReason,
        started: Instant,
    ) -> Result<Installed, Error> {
        let config = &self.core.config;
        let (token, requested_at, value) = match (&self.core.fleet, &self.store_key) {
            (Some(fleet), Some(key)) => {
                let held = self.hot.current.load_full();
                let held = held.as_ref().and_then(|i| i.value.as_ref());
                let life = Lifetimes {
                    default: config.default_lifetime,
                    max: config.max_lifetime,
                    expiry_margin: config.expiry_margin,
                    fetch_timeout: config.fetch_timeout,
                };
                let obtained = fleet
                    .obtain(key, held, reason, life, || self.fetch_token(reason))
                    .await?;
                let requested_at = if obtained.from_store {
                    self.store_hits.fetch_add(1, Ordering::Relaxed);
                    // Its lifetime counts from when it was issued, as for the process
                    // that fetched it: the fleet renews it at the same point.
                    let age = SystemTime::now()
                        .duration_since(obtained.issued_at)
                        .unwrap_or_default();
                    Instant::now().checked_sub(age).unwrap_or(started)
                } else {
                    started
                };
                (obtained.token, requested_at, Some(obtained.value))
            }
            _ => (self.fetch_token(reason).await?, started, None),
        };
        // A token that replaces a rejected one is the re-issue for that rejection,
        // whatever started its fetch (a renewal can be under way when the rejection comes).
        let reason = if reason != FetchReason::Rejected && self.peek().phase() == Phase::Rejected {
            tracing::debug!(
                fetched_for = reason.as_str(),
                "token arrived while its predecessor stood rejected: it is that \
                 rejection's re-issue"
            );
            FetchReason::Rejected
        } else {
            reason
        };
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let mut installed = Installed::new(
            config,
            self.scope.as_ref(),
            token,
            requested_at,
            reason,
            generation,
        )?;
        installed.value = value;
        Ok(installed)
    }

    /// Asks the token fetcher for a token, bounded by `fetch_timeout`.
    async fn fetch_token(&self, reason: FetchReason) -> Result<Token, Error> {
        let config = &self.core.config;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let request = TokenRequest::new(self.scope.clone(), reason)
            .with_explicit_scope(self.core.explicit_scope)
            .with_tenant(self.tenant.clone());
        #[cfg(feature = "jwt")]
        let request = match &self.core.dpop {
            Some(dpop) => request.with_dpop(dpop.clone()),
            None => request,
        };
        let fetch = AssertUnwindSafe(self.core.fetcher.clone().oneshot(request)).catch_unwind();
        match tokio::time::timeout(config.fetch_timeout, fetch).await {
            Ok(Ok(Ok(token))) => Ok(token),
            Ok(Ok(Err(err))) => Err(Error::from_fetcher(err)),
            Ok(Err(_panic)) => {
                Err(Error::new(ErrorKind::Cancelled).with_detail("the token fetcher panicked"))
            }
            Err(_) => Err(Error::new(ErrorKind::Timeout)
                .with_detail(&format!("no answer within {:?}", config.fetch_timeout))),
        }
    }
}
