//! The fleet options: tokens shared with other processes through Redis (`--redis-url`),
//! and one layer for many tenant applications (`--tenants`).

use std::collections::HashMap;

use tower_oauth::{
    mock::MockServer, ClientCredentials, OAuthLayer, OAuthLayerBuilder, RequestHead, Tenant,
};

use crate::{cli::Options, shown::Shown};

/// The request header that names a request's tenant.
pub(crate) const TENANT_HEADER: &str = "x-tenant";

/// The tenant a request names in its [`TENANT_HEADER`].
fn pick(req: &RequestHead<'_>) -> Option<Tenant> {
    let name = req.headers.get(TENANT_HEADER)?.to_str().ok()?;
    Some(Tenant::from(name))
}

/// The name of tenant `i` (from 0), as requests name it: the mock's client id for it.
pub(crate) fn tenant_name(i: usize) -> String {
    format!("tenant-{}", i + 1)
}

/// One layer for the mock's first `n` tenant applications, each fetching with its own
/// credentials, which `creds` makes from a client id and secret. The secrets join what
/// `shown` never prints.
pub(crate) fn for_tenants(
    mock: &MockServer,
    n: usize,
    shown: &Shown,
    creds: impl Fn(&str, String) -> Result<ClientCredentials, String>,
) -> Result<OAuthLayerBuilder, String> {
    let mut by_tenant = HashMap::with_capacity(n);
    for i in 1..=n {
        let (id, secret) = mock.tenant_credentials(i);
        shown.add_secret(&secret);
        by_tenant.insert(Tenant::from(id.as_str()), creds(&id, secret)?);
    }
    Ok(OAuthLayer::for_tenants(pick, move |tenant: &Tenant| {
        by_tenant.get(tenant).cloned()
    }))
}

/// `builder` with the `--redis-url` store, when one is given.
#[cfg(feature = "redis")]
pub(crate) async fn with_store(
    builder: OAuthLayerBuilder,
    o: &Options,
    shown: &Shown,
) -> Result<OAuthLayerBuilder, String> {
    use tower_oauth::store::{RedisStore, StoreCipher};

    let Some(url) = &o.redis_url else {
        return Ok(builder);
    };
    // The crate's errors never show a password from the URL.
    let store = RedisStore::connect(url)
        .await
        .map_err(|e| shown.text(&format!("--redis-url {}: {e}", crate::shown::url(url))))?
        .prefix(o.store_prefix.as_str());
    let mut builder = builder.store(store);
    if let Some(key) = &o.store_key {
        shown.add_secret(key);
        // Not the crate's message: say nothing of the key but its expected form.
        let cipher = StoreCipher::from_base64(key)
            .map_err(|_| "--store-key is not a base64-encoded 32-byte key".to_owned())?;
        builder = builder.store_cipher(cipher);
    }
    Ok(builder)
}

/// Without the `redis` feature, `--redis-url` is refused.
#[cfg(not(feature = "redis"))]
pub(crate) async fn with_store(
    builder: OAuthLayerBuilder,
    o: &Options,
    _shown: &Shown,
) -> Result<OAuthLayerBuilder, String> {
    let _ = (&o.store_prefix, &o.store_key);
    match o.redis_url {
        Some(_) => Err(
            "--redis-url: this build has no Redis support (built without the \
                        \"redis\" feature; run with --features redis)"
                .into(),
        ),
        None => Ok(builder),
    }
}
