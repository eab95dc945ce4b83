//! The fetcher of a layer for many tenants: each token request with its tenant's
//! credentials.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tower::ServiceExt;
use tower_service::Service;

use super::{http::HttpFetcher, https::HttpsClient};
use crate::{
    credentials::ClientCredentials,
    error::{Error, ErrorKind},
    tenant::Tenant,
    token::{Token, TokenRequest},
};

/// The credentials of a tenant; `None` for a tenant without any.
pub(crate) type TenantCredentials = dyn Fn(&Tenant) -> Option<ClientCredentials> + Send + Sync;

/// Fetches each tenant's tokens with its credentials, over one HTTPS client shared by
/// every tenant whose credentials need nothing of their own (extra root certificates, a
/// client certificate); a tenant that does gets a client of its own for each fetch.
#[derive(Clone)]
pub(crate) struct TenantFetcher {
    client: HttpsClient,
    credentials: Arc<TenantCredentials>,
}

impl TenantFetcher {
    pub(crate) fn new(client: HttpsClient, credentials: Arc<TenantCredentials>) -> Self {
        Self {
            client,
            credentials,
        }
    }
}

impl fmt::Debug for TenantFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantFetcher").finish_non_exhaustive()
    }
}

impl Service<TokenRequest> for TenantFetcher {
    type Response = Token;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Token, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: TokenRequest) -> Self::Future {
        let Some(tenant) = request.tenant() else {
            let err = Error::new(ErrorKind::Config)
                .with_detail("the tenant policy named no tenant for this request");
            return Box::pin(async { Err(err) });
        };
        let Some(creds) = (self.credentials)(tenant) else {
            let err = Error::new(ErrorKind::Config)
                .with_detail(&format!("no credentials for tenant \"{tenant}\""));
            return Box::pin(async { Err(err) });
        };
        let fetcher = if creds.root_certificates().is_empty() && creds.client_cert().is_none() {
            HttpFetcher::new(self.client.clone(), creds)
        } else {
            HttpFetcher::https(creds)
        };
        Box::pin(fetcher.oneshot(request))
    }
}
