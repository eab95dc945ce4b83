//! A [`TokenStore`] on Redis, for a fleet of processes that share their tokens.
//!
//! # Keys
//!
//! Every key starts with the store's [prefix](RedisStore::prefix), `tower-oauth:` by
//! default, inside a hash tag. For the layer's key `k`:
//!
//! - `{tower-oauth:k}` holds the value, set with `SET .. PX <ttl>`. It expires on its
//!   own; a zero time to live writes nothing.
//! - `{tower-oauth:k}:lease` holds the lease owner's id, set with `SET .. NX PX <ttl>`.
//!   It expires on its own, so a holder that dies is replaced after the lease time.
//!
//! The braces make a key and its lease hash to one cluster slot.
//!
//! # Compare and delete
//!
//! [`release`](TokenStore::release) and [`invalidate`](TokenStore::invalidate) run one
//! Lua script (`EVALSHA`, loaded on first use). It deletes `KEYS[1]` only if its value is
//! `ARGV[1]`, and answers 1 if it deleted, else 0. Redis runs a script atomically, so a
//! lease taken over by another owner, or a token replaced by a newer one, is left alone.
//!
//! # Failures
//!
//! A call to a server that is down fails within about two seconds: connecting and each
//! answer time out after one second, and a reconnection is tried twice. The layer bounds
//! every call with its own store timeout too. The connection is remade in the background,
//! so a store outlives a restart of its server.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use tower_oauth::{store::RedisStore, ErrorKind};
//!
//! // A URL that does not parse is a configuration error; its password never shows.
//! let err = RedisStore::connect("redis://:hunter2@[bad").await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Config);
//! assert!(!format!("{err} {err:?}").contains("hunter2"));
//! # }
//! ```

use std::{fmt, time::Duration};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use percent_encoding::percent_decode_str;
use redis::{
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
    Client, Cmd, Pipeline, RedisFuture, Script, Value,
};

use super::TokenStore;
use crate::{
    error::{BoxError, Error, ErrorKind},
    redact::Redactor,
};

/// The prefix of every key, unless [`RedisStore::prefix`] sets another.
const DEFAULT_PREFIX: &str = "tower-oauth:";

/// How long connecting, and each answer, may take.
const TIMEOUT: Duration = Duration::from_secs(1);

/// How often a lost connection is tried again before a call fails.
const RETRIES: usize = 2;

/// The first pause between reconnection attempts; it doubles, up to [`MAX_DELAY`].
const MIN_DELAY: Duration = Duration::from_millis(50);

/// The longest pause between reconnection attempts.
const MAX_DELAY: Duration = Duration::from_millis(500);

/// Deletes `KEYS[1]` if it holds `ARGV[1]`: 1 if it did, else 0.
const COMPARE_AND_DELETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
";

/// A [`TokenStore`] on one Redis server or a Redis cluster.
///
/// Cloning it is cheap: clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    prefix: String,
    compare_and_delete: Script,
}

/// The connection, to one server or to a cluster; both reconnect on their own.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisStore {
    /// A store on the server at `url` (`redis://` or `rediss://`), connected before it
    /// returns.
    ///
    /// A password goes in the URL (`redis://:password@host:6379`); it never shows in
    /// the store's `Debug` or in an error. `rediss://` trusts the operating system's root
    /// certificates ([`connect_with_tls`](Self::connect_with_tls) for a private CA or a
    /// client certificate). Its rustls crypto provider is the process default, or the one the
    /// `aws-lc-rs` or `ring` feature selects when only one of them is on.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] if the URL does not parse, is not `redis://` or
    /// `rediss://`, or needs a crypto provider there is none of.
    /// [`ErrorKind::Transport`] if the server cannot be reached or refuses the login.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let redactor = redactor_for([url]);
        check_url(url)?;
        let client = Client::open(url).map_err(|e| config(&redactor, &e))?;
        Self::managed(client, &redactor).await
    }

    /// A store on the server at `rediss://` `url` that trusts, or presents, what `tls`
    /// says: a private CA, a client certificate. Otherwise as [`connect`](Self::connect).
    ///
    /// # Errors
    ///
    /// As for [`connect`](Self::connect); a `redis://` URL is a
    /// [`ErrorKind::Config`] error too (there is no TLS to configure), and so is a
    /// certificate or key that does not parse.
    pub async fn connect_with_tls(url: &str, tls: super::RedisTls) -> Result<Self, Error> {
        let redactor = redactor_for([url]);
        check_url(url)?;
        if !url
            .get(..9)
            .is_some_and(|s| s.eq_ignore_ascii_case("rediss://"))
        {
            return Err(
                Error::new(ErrorKind::Config).with_detail("TLS settings need a rediss:// url")
            );
        }
        let client =
            Client::build_with_tls(url, tls.certificates()).map_err(|e| config(&redactor, &e))?;
        Self::managed(client, &redactor).await
    }

    /// A connection manager for `client`, connected, with this module's timeouts.
    async fn managed(client: Client, redactor: &Redactor) -> Result<Self, Error> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(RETRIES)
            .set_min_delay(MIN_DELAY)
            .set_max_delay(MAX_DELAY);
        let manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| connect_failed(redactor, &e))?;
        Ok(Self::from_connection_manager(manager))
    }

    /// A store on the Redis cluster that `urls` (some of its nodes) belong to, connected
    /// before it returns.
    ///
    /// The URLs are as for [`connect`](Self::connect), and must share one password.
    ///
    /// # Errors
    ///
    /// As for [`connect`](Self::connect).
    pub async fn cluster<I>(urls: I) -> Result<Self, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let urls: Vec<String> = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
        let redactor = redactor_for(urls.iter().map(String::as_str));
        if urls.is_empty() {
            return Err(Error::new(ErrorKind::Config).with_detail("no redis cluster url"));
        }
        for url in &urls {
            check_url(url)?;
        }
        let retry_wait = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let client = ClusterClient::builder(urls.iter().map(String::as_str))
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .retries(RETRIES as u32)
            .min_retry_wait(retry_wait(MIN_DELAY))
            .max_retry_wait(retry_wait(MAX_DELAY))
            .build()
            .map_err(|e| config(&redactor, &e))?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(|e| connect_failed(&redactor, &e))?;
        Ok(Self::with_conn(Conn::Cluster(conn)))
    }

    /// A store on a connection you configured yourself (timeouts, retries, TLS).
    ///
    /// With the redis crate's default settings, a call to a server that is down waits
    /// through six reconnection attempts, several seconds. The layer's store timeout
    /// still bounds it.
    pub fn from_connection_manager(manager: ConnectionManager) -> Self {
        Self::with_conn(Conn::Single(manager))
    }

    fn with_conn(conn: Conn) -> Self {
        Self {
            conn,
            prefix: DEFAULT_PREFIX.to_owned(),
            compare_and_delete: Script::new(COMPARE_AND_DELETE),
        }
    }

    /// Puts every key under `prefix` (default `tower-oauth:`), so stores with different
    /// prefixes on one server never see each other's keys.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The Redis key of the layer's `key`.
    fn value_key(&self, key: &str) -> String {
        value_key(&self.prefix, key)
    }

    /// The Redis key of the lease on the layer's `key`.
    fn lease_key(&self, key: &str) -> String {
        lease_key(&self.prefix, key)
    }

    /// Runs the compare-and-delete script on `key` and `value`: whether it deleted.
    async fn compare_and_delete(&self, key: String, value: &[u8]) -> Result<bool, BoxError> {
        let mut conn = self.conn.clone();
        let deleted: i64 = self
            .compare_and_delete
            .key(key)
            .arg(value)
            .invoke_async(&mut conn)
            .await?;
        Ok(deleted == 1)
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the connection: its settings hold the password.
        let kind = match self.conn {
            Conn::Single(_) => "single",
            Conn::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("kind", &kind)
            .finish()
    }
}

/// The Redis key of the layer's `key` under `prefix`, all of it a hash tag.
fn value_key(prefix: &str, key: &str) -> String {
    format!("{{{prefix}{key}}}")
}

/// The Redis key of the lease on `key`: the same hash tag, so the same cluster slot.
fn lease_key(prefix: &str, key: &str) -> String {
    format!("{{{prefix}{key}}}:lease")
}

/// A `PX` argument: whole milliseconds, at least one, as Redis refuses zero.
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl TokenStore for RedisStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, BoxError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(self.value_key(key))
                .query_async(&mut conn)
                .await?;
            Ok(value.map(Bytes::from))
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            if ttl.is_zero() {
                return Ok(());
            }
            let mut conn = self.conn.clone();
            redis::cmd("SET")
                .arg(self.value_key(key))
                .arg(&value[..])
                .arg("PX")
                .arg(millis(ttl))
                .exec_async(&mut conn)
                .await?;
            Ok(())
        })
    }

    fn lease<'a>(
        &'a self,
        key: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            // `OK` when set, nil when someone holds it.
            let taken: Option<String> = redis::cmd("SET")
                .arg(self.lease_key(key))
                .arg(owner)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl))
                .query_async(&mut conn)
                .await?;
            Ok(taken.is_some())
        })
    }

    fn release<'a>(&'a self, key: &'a str, owner: &'a str) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            self.compare_and_delete(self.lease_key(key), owner.as_bytes())
                .await?;
            Ok(())
        })
    }

    fn invalidate<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        Box::pin(async move { self.compare_and_delete(self.value_key(key), &value).await })
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A redactor that knows the passwords in `urls`, as written and percent-decoded.
fn redactor_for<'a>(urls: impl IntoIterator<Item = &'a str>) -> Redactor {
    let mut redactor = Redactor::new();
    for url in urls {
        let Some(password) = redis::parse_redis_url(url).and_then(|u| {
            u.password().map(|p| {
                (
                    p.to_owned(),
                    percent_decode_str(p).decode_utf8_lossy().into_owned(),
                )
            })
        }) else {
            continue;
        };
        redactor.add_secret(&password.0);
        redactor.add_secret(&password.1);
    }
    redactor
}

/// Checks that `url` is `redis://` or `rediss://`, and that TLS has a crypto provider.
///
/// Its text is never shown: a URL that does not parse may hold a password anywhere.
fn check_url(url: &str) -> Result<(), Error> {
    let bad = || Error::new(ErrorKind::Config).with_detail("not a redis:// or rediss:// url");
    let parsed = redis::parse_redis_url(url).ok_or_else(bad)?;
    match parsed.scheme() {
        "redis" => Ok(()),
        "rediss" if has_crypto_provider() => Ok(()),
        "rediss" => Err(Error::new(ErrorKind::Config).with_detail(
            "rediss:// needs a rustls crypto provider: enable one of the `aws-lc-rs` or \
             `ring` features, or install a process default",
        )),
        _ => Err(bad()),
    }
}

/// Whether rustls will find a crypto provider, rather than panic: an installed process
/// default, or exactly one provider compiled in.
fn has_crypto_provider() -> bool {
    rustls::crypto::CryptoProvider::get_default().is_some()
        || cfg!(feature = "aws-lc-rs") != cfg!(feature = "ring")
}

/// A configuration error from the redis crate, cleaned of passwords.
fn config(redactor: &Redactor, err: &redis::RedisError) -> Error {
    let detail = redactor.clean(&format!("redis: {err}"));
    Error::new(ErrorKind::Config).with_detail(&detail)
}

/// A failure to connect, cleaned of passwords.
fn connect_failed(redactor: &Redactor, err: &redis::RedisError) -> Error {
    let detail = redactor.clean(&format!("could not connect to redis: {err}"));
    Error::new(ErrorKind::Transport).with_detail(&detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_and_its_lease_share_a_hash_tag_under_the_prefix() {
        assert_eq!(value_key("p:", "k"), "{p:k}");
        assert_eq!(lease_key("p:", "k"), "{p:k}:lease");
    }

    #[test]
    fn ttls_are_whole_milliseconds_and_never_zero() {
        assert_eq!(millis(Duration::from_micros(10)), 1);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn passwords_are_found_as_written_and_decoded() {
        let redactor = redactor_for(["redis://user:pa%24%24word-1@host:6379"]);
        assert!(redactor.holds_secret("pa%24%24word-1"));
        assert!(redactor.holds_secret("pa$$word-1"));
        assert!(!redactor.holds_secret("user@host"));
    }

    #[tokio::test]
    async fn only_redis_and_rediss_urls_are_taken() {
        for url in [
            "http://:hunter2-secret@h",
            "hunter2-secret",
            "unix:///tmp/r.sock",
        ] {
            let err = RedisStore::connect(url).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{url}");
            assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
        }
        let err = RedisStore::cluster(Vec::<String>::new()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
    }

    #[tokio::test]
    async fn rediss_without_a_crypto_provider_is_a_config_error_not_a_panic() {
        // Nothing in this test binary installs a process default provider.
        let err = RedisStore::connect("rediss://127.0.0.1:1")
            .await
            .unwrap_err();
        let one_provider = cfg!(feature = "aws-lc-rs") != cfg!(feature = "ring");
        let expected = if one_provider {
            ErrorKind::Transport
        } else {
            ErrorKind::Config
        };
        assert_eq!(err.kind(), expected, "{err}");
    }
}
