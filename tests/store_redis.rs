//! `RedisStore` against a real `redis-server` on 127.0.0.1: leases, expiry, compare and
//! delete, prefixes, a server that dies and comes back, and passwords kept out of sight.

mod common;

use std::{
    future::Future,
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::redis::RedisServer;
use tower_oauth::{
    store::{RedisStore, TokenStore},
    ErrorKind,
};

const LONG: Duration = Duration::from_secs(60);

/// How long a call to a dead server may take before the test calls it a hang.
const CALL_LIMIT: Duration = Duration::from_secs(5);

const PASSWORD: &str = "hunter2-secret";

async fn store(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&server.url()).await.expect("connect")
}

/// A plain redis connection, to look at what the store wrote.
async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Polls `check` every 20 ms until it is true; fails the test after 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `fut`, failing the test if it takes longer than [`CALL_LIMIT`].
async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(CALL_LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not return within {CALL_LIMIT:?}"))
}

#[tokio::test]
async fn only_one_of_two_clients_takes_a_lease_and_only_its_owner_releases_it() {
    let server = RedisServer::start();
    let (a, b) = (store(&server).await, store(&server).await);

    assert!(a.lease("k", "owner-a", LONG).await.unwrap());
    assert!(!b.lease("k", "owner-b", LONG).await.unwrap(), "a holds it");

    b.release("k", "owner-b").await.unwrap();
    assert!(
        !b.lease("k", "owner-b", LONG).await.unwrap(),
        "b does not own it"
    );

    a.release("k", "owner-a").await.unwrap();
    assert!(
        b.lease("k", "owner-b", LONG).await.unwrap(),
        "a gave it back"
    );
}

#[tokio::test]
async fn leases_on_different_keys_are_independent() {
    let server = RedisServer::start();
    let (a, b) = (store(&server).await, store(&server).await);
    assert!(a.lease("k1", "owner-a", LONG).await.unwrap());
    assert!(b.lease("k2", "owner-b", LONG).await.unwrap());
    assert!(!b.lease("k1", "owner-b", LONG).await.unwrap());
}

#[tokio::test]
async fn a_lease_holder_that_dies_is_replaced_after_the_lease_time() {
    let server = RedisServer::start();
    let (dead, alive) = (store(&server).await, store(&server).await);

    assert!(dead
        .lease("k", "dead", Duration::from_millis(200))
        .await
        .unwrap());
    drop(dead);
    assert!(
        !alive.lease("k", "alive", LONG).await.unwrap(),
        "held until it expires"
    );

    eventually("the dead holder's lease expires", || async {
        alive.lease("k", "alive", LONG).await.unwrap()
    })
    .await;
    let mut raw = raw(&server).await;
    let owner: String = redis::cmd("GET")
        .arg("{tower-oauth:k}:lease")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(owner, "alive");
}

#[tokio::test]
async fn put_sets_a_time_to_live_and_the_value_goes_when_it_ends() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let mut raw = raw(&server).await;
    let pttl = |key: &'static str| {
        let mut raw = raw.clone();
        async move {
            let ms: i64 = redis::cmd("PTTL")
                .arg(key)
                .query_async(&mut raw)
                .await
                .unwrap();
            ms
        }
    };

    store
        .put("long", Bytes::from_static(b"v1"), LONG)
        .await
        .unwrap();
    let ms = pttl("{tower-oauth:long}").await;
    assert!(ms > 0 && ms <= 60_000, "PTTL {ms}");
    assert_eq!(
        store.get("long").await.unwrap().as_deref(),
        Some(&b"v1"[..])
    );

    store
        .put(
            "short",
            Bytes::from_static(b"v2"),
            Duration::from_millis(300),
        )
        .await
        .unwrap();
    let ms = pttl("{tower-oauth:short}").await;
    assert!(ms > 0 && ms <= 300, "PTTL {ms}");
    eventually("the value expires", || async {
        store.get("short").await.unwrap().is_none()
    })
    .await;

    store
        .put("zero", Bytes::from_static(b"v3"), Duration::ZERO)
        .await
        .unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg("{tower-oauth:zero}")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(exists, 0, "a zero time to live writes nothing");
}

#[tokio::test]
async fn invalidate_deletes_only_the_value_it_names() {
    let server = RedisServer::start();
    let store = store(&server).await;
    store
        .put("k", Bytes::from_static(b"new"), LONG)
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
    assert!(
        !store
            .invalidate("k", Bytes::from_static(b"new"))
            .await
            .unwrap(),
        "gone"
    );
}

#[tokio::test]
async fn values_are_bytes_not_text() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let value = Bytes::from_static(&[0, 159, 146, 150, 255, b'\n']);
    store.put("bin", value.clone(), LONG).await.unwrap();
    assert_eq!(store.get("bin").await.unwrap(), Some(value.clone()));
    assert!(store.invalidate("bin", value).await.unwrap());
}

#[tokio::test]
async fn prefixes_keep_two_stores_on_one_server_apart() {
    let server = RedisServer::start();
    let a = store(&server).await.prefix("app-a:");
    let b = store(&server).await.prefix("app-b:");

    a.put("k", Bytes::from_static(b"a"), LONG).await.unwrap();
    assert_eq!(b.get("k").await.unwrap(), None);
    assert!(!b.invalidate("k", Bytes::from_static(b"a")).await.unwrap());
    assert!(a.lease("k", "owner", LONG).await.unwrap());
    assert!(
        b.lease("k", "owner", LONG).await.unwrap(),
        "b's lease is its own"
    );
    b.release("k", "owner").await.unwrap();
    assert!(
        !a.lease("k", "other", LONG).await.unwrap(),
        "a's lease is still held"
    );

    let mut raw = raw(&server).await;
    let value: Option<String> = redis::cmd("GET")
        .arg("{app-a:k}")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("a"));
    assert!(format!("{a:?}").contains("app-a:"));
}

#[tokio::test]
async fn calls_to_a_dead_server_fail_and_work_again_once_it_is_back() {
    let mut server = RedisServer::start();
    let store = store(&server).await;
    store
        .put("k", Bytes::from_static(b"v"), LONG)
        .await
        .unwrap();

    server.kill();
    // Each call fails on its own, without the layer's timeout: a hang fails the test.
    assert!(within("get", store.get("k")).await.is_err());
    assert!(within("put", store.put("k", Bytes::new(), LONG))
        .await
        .is_err());
    assert!(within("lease", store.lease("k", "o", LONG)).await.is_err());
    assert!(within("release", store.release("k", "o")).await.is_err());
    let invalidate = store.invalidate("k", Bytes::new());
    assert!(within("invalidate", invalidate).await.is_err());

    server.restart();
    // The same store, not rebuilt: its connection is remade in the background.
    eventually("the store reconnects", || async {
        store
            .put("k", Bytes::from_static(b"again"), LONG)
            .await
            .is_ok()
    })
    .await;
    assert_eq!(
        store.get("k").await.unwrap().as_deref(),
        Some(&b"again"[..])
    );
    assert!(store.lease("k", "o", LONG).await.unwrap());
    assert!(store
        .invalidate("k", Bytes::from_static(b"again"))
        .await
        .unwrap());
}

#[tokio::test]
async fn a_password_in_the_url_never_shows() {
    let server = RedisServer::start_with(&["--requirepass", PASSWORD]);
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}", server.port());

    let store = RedisStore::connect(&url).await.expect("the right password");
    store
        .put("k", Bytes::from_static(b"v"), LONG)
        .await
        .unwrap();
    let shown = format!("{store:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(shown.contains("single"), "{shown}");

    let wrong = format!("redis://:{PASSWORD}-wrong@127.0.0.1:{}", server.port());
    let err = RedisStore::connect(&wrong)
        .await
        .expect_err("a wrong password");
    assert_eq!(err.kind(), ErrorKind::Transport);
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");

    let refused = format!("redis://:{PASSWORD}@127.0.0.1:1");
    let err = RedisStore::connect(&refused)
        .await
        .expect_err("nobody listens");
    assert_eq!(err.kind(), ErrorKind::Transport);
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");

    let bad = format!("redis://:{PASSWORD}@127.0.0.1:notaport");
    let err = RedisStore::connect(&bad).await.expect_err("a bad url");
    assert_eq!(err.kind(), ErrorKind::Config);
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");

    let err = RedisStore::cluster([&refused])
        .await
        .expect_err("nobody listens");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");
}

#[tokio::test]
async fn a_cluster_store_keeps_a_key_and_its_lease_in_one_slot() {
    // A one-node cluster that serves every slot.
    let server = RedisServer::start_with(&["--cluster-enabled", "yes"]);
    let mut raw = raw(&server).await;
    redis::cmd("CLUSTER")
        .arg(&["ADDSLOTSRANGE", "0", "16383"])
        .exec_async(&mut raw)
        .await
        .unwrap();
    eventually("the cluster is up", || {
        let mut raw = raw.clone();
        async move {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut raw)
                .await
                .unwrap();
            info.contains("cluster_state:ok")
        }
    })
    .await;

    let a = RedisStore::cluster([server.url()]).await.expect("connect");
    let b = RedisStore::cluster([server.url()]).await.expect("connect");
    assert!(format!("{a:?}").contains("cluster"));
    assert!(a.lease("k", "owner-a", LONG).await.unwrap());
    assert!(!b.lease("k", "owner-b", LONG).await.unwrap());
    b.release("k", "owner-b").await.unwrap();
    assert!(
        !b.lease("k", "owner-b", LONG).await.unwrap(),
        "b does not own it"
    );
    a.release("k", "owner-a").await.unwrap();
    assert!(b.lease("k", "owner-b", LONG).await.unwrap());
    // The lease is where the slot check below looks for it.
    let owner: String = redis::cmd("GET")
        .arg("{tower-oauth:k}:lease")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(owner, "owner-b");

    b.put("k", Bytes::from_static(b"v"), LONG).await.unwrap();
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    assert!(!a.invalidate("k", Bytes::from_static(b"old")).await.unwrap());
    assert!(a.invalidate("k", Bytes::from_static(b"v")).await.unwrap());

    let slot = |key: &'static str| {
        let mut raw = raw.clone();
        async move {
            let slot: i64 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query_async(&mut raw)
                .await
                .unwrap();
            slot
        }
    };
    assert_eq!(
        slot("{tower-oauth:k}").await,
        slot("{tower-oauth:k}:lease").await
    );
}
