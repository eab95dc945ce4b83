//! Token stores: where a fleet of processes shares its tokens.
//!
//! A layer keeps its current token in memory and reads nothing else on the request path.
//! With a store set ([`OAuthLayerBuilder::store`](crate::OAuthLayerBuilder::store)), the
//! layer asks the store before it asks the token endpoint, and only when its own cache
//! needs a token: on first use, when a renewal is due, and after the API rejects one.
//! Processes that share a store share their tokens:
//!
//! - a token another process fetched is read from the store, not fetched again;
//! - one process at a time fetches for a key: it takes a lease (`SET NX PX` on Redis),
//!   fetches, writes the token with a time to live of its remaining lifetime, and gives
//!   the lease back; the others wait for the token to appear (bounded), then read it;
//! - a rejected token is deleted from the store only if it is still the one stored
//!   (compare and delete), so a fleet that sees one revoke fetches once.
//!
//! A store is never a new way to fail. Every store call is bounded by
//! [`OAuthLayerBuilder::store_timeout`](crate::OAuthLayerBuilder::store_timeout); a store
//! that is down, slow or answers garbage is logged (a warning) and the layer fetches on
//! its own. A token read from the store is checked as one from the token endpoint is.
//!
//! A store works on opaque bytes under string keys; the layer encodes (and optionally
//! encrypts) what it keeps there. Implement [`TokenStore`] for another backend.
//!
//! # Keys
//!
//! A key says what its token is for: the token URL, the client id and the added
//! parameters of the credentials (never the secret), the tenant, the scope set, and the
//! thumbprint of the layer's DPoP key if it has one. Layers whose keys match share
//! tokens. `RedisStore` (feature `redis`) puts its own prefix in front.
//!
//! # Threat model
//!
//! Without a [`StoreCipher`], tokens are kept as they are (JSON), for as long as they
//! live:
//!
//! - whoever can read the store can use the tokens until they expire, as whoever can
//!   read the process's memory can;
//! - whoever can write it can plant a token (their own, say) that the fleet then sends:
//!   requests would run as another client. The layer checks a stored token as it checks
//!   a token response (a clean header value, a known type, a lifetime that makes sense),
//!   but cannot tell whose it is;
//! - whoever can delete from it or hold its leases can only make the fleet fetch more,
//!   or wait up to the store wait before fetching on its own.
//!
//! Keep the store on a private network, with authentication (a Redis ACL user) and TLS
//! (`rediss://`). With a [`StoreCipher`]
//! ([`OAuthLayerBuilder::store_cipher`](crate::OAuthLayerBuilder::store_cipher)), each
//! value is sealed with XChaCha20-Poly1305 under the key you give, bound to its store key:
//! reading the store shows no token, and a planted or moved value does not open (it is
//! ignored, with a warning, and the layer fetches). The cipher key is then the secret to
//! guard; client secrets and private keys never go to the store in either case.

mod codec;
pub(crate) mod fleet;

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::future::BoxFuture;

pub use self::codec::StoreCipher;
use crate::{error::BoxError, sync::lock};

#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
mod redis_tls;
#[cfg(feature = "redis")]
pub use self::{redis::RedisStore, redis_tls::RedisTls};

/// A key-value store with leases, shared by the processes of a fleet.
///
/// Keys are the layer's (see [`OAuthLayerBuilder::store`](crate::OAuthLayerBuilder::store));
/// a store may add a prefix of its own. Values are opaque: the layer's encoding of a
/// token, encrypted when a key is set. Every method is bounded by the layer's store
/// timeout, and an error from any of them makes the layer carry on without the store for
/// that fetch, so an implementation need not retry.
pub trait TokenStore: Send + Sync + 'static {
    /// The value under `key`, if there is one.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, BoxError>>;

    /// Sets `key` to `value`, to be forgotten after `ttl`.
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Takes the lease on `key` for `owner` unless someone holds it: whether it was taken.
    /// A lease ends after `ttl` if it is not released, so a holder that dies is replaced.
    fn lease<'a>(
        &'a self,
        key: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BoxError>>;

    /// Ends the lease on `key` if `owner` still holds it.
    fn release<'a>(&'a self, key: &'a str, owner: &'a str) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Deletes `key` if its value is still `value`: whether it was deleted.
    fn invalidate<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
    ) -> BoxFuture<'a, Result<bool, BoxError>>;
}

/// A shared store, as layers that share one hold it.
impl<T: TokenStore + ?Sized> TokenStore for Arc<T> {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, BoxError>> {
        (**self).get(key)
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        (**self).put(key, value, ttl)
    }

    fn lease<'a>(
        &'a self,
        key: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        (**self).lease(key, owner, ttl)
    }

    fn release<'a>(&'a self, key: &'a str, owner: &'a str) -> BoxFuture<'a, Result<(), BoxError>> {
        (**self).release(key, owner)
    }

    fn invalidate<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        (**self).invalidate(key, value)
    }
}

/// A [`TokenStore`] in this process's memory: layers that share one share their tokens,
/// as processes that share a Redis do. For tests, and for several layers of one process
/// that call the same API with the same credentials.
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    value: Bytes,
    until: Instant,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The live value under `key`; expired entries are dropped on the way.
    fn live(entries: &mut HashMap<String, Entry>, key: &str) -> Option<Bytes> {
        match entries.get(key) {
            Some(e) if e.until > Instant::now() => Some(e.value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values are tokens: only their number shows.
        f.debug_struct("MemoryStore")
            .field("entries", &lock(&self.entries).len())
            .finish()
    }
}

/// The key of the lease on `key`.
fn lease_key(key: &str) -> String {
    format!("{key}:lease")
}

impl TokenStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, BoxError>> {
        let value = Self::live(&mut lock(&self.entries), key);
        Box::pin(async move { Ok(value) })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        let until = Instant::now() + ttl;
        lock(&self.entries).insert(key.to_owned(), Entry { value, until });
        Box::pin(async { Ok(()) })
    }

    fn lease<'a>(
        &'a self,
        key: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        let mut entries = lock(&self.entries);
        let key = lease_key(key);
        let taken = Self::live(&mut entries, &key).is_none();
        if taken {
            let entry = Entry {
                value: Bytes::copy_from_slice(owner.as_bytes()),
                until: Instant::now() + ttl,
            };
            entries.insert(key, entry);
        }
        Box::pin(async move { Ok(taken) })
    }

    fn release<'a>(&'a self, key: &'a str, owner: &'a str) -> BoxFuture<'a, Result<(), BoxError>> {
        let mut entries = lock(&self.entries);
        let key = lease_key(key);
        if Self::live(&mut entries, &key).is_some_and(|v| v == owner.as_bytes()) {
            entries.remove(&key);
        }
        Box::pin(async { Ok(()) })
    }

    fn invalidate<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        let mut entries = lock(&self.entries);
        let deleted = Self::live(&mut entries, key).is_some_and(|v| v == value);
        if deleted {
            entries.remove(key);
        }
        Box::pin(async move { Ok(deleted) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lease_is_held_once_until_released_by_its_owner_or_expired() {
        let store = MemoryStore::new();
        let ttl = Duration::from_secs(60);
        assert!(store.lease("k", "a", ttl).await.unwrap());
        assert!(!store.lease("k", "b", ttl).await.unwrap());
        store.release("k", "b").await.unwrap();
        assert!(
            !store.lease("k", "b", ttl).await.unwrap(),
            "b does not own it"
        );
        store.release("k", "a").await.unwrap();
        assert!(store
            .lease("k", "b", Duration::from_millis(1))
            .await
            .unwrap());
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            store.lease("k", "c", ttl).await.unwrap(),
            "b's lease ran out"
        );
    }

    #[tokio::test]
    async fn invalidate_deletes_only_the_value_it_names() {
        let store = MemoryStore::new();
        let ttl = Duration::from_secs(60);
        store
            .put("k", Bytes::from_static(b"new"), ttl)
            .await
            .unwrap();
        assert!(!store
            .invalidate("k", Bytes::from_static(b"old"))
            .await
            .unwrap());
        assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"new"[..]));
        assert!(store
            .invalidate("k", Bytes::from_static(b"new"))
            .await
            .unwrap());
        assert_eq!(store.get("k").await.unwrap(), None);
        store
            .put("e", Bytes::from_static(b"v"), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(store.get("e").await.unwrap(), None, "expired");
        store
            .put("t", Bytes::from_static(b"token-value"), ttl)
            .await
            .unwrap();
        assert!(!format!("{store:?}").contains("token-value"));
    }
}
