//! Layers sharing tokens through a real Redis, as the replicas of a fleet do: one token
//! request for all of them, one re-issue after a revoke, sealed tokens at rest, and no
//! failed request when Redis goes away.

mod common;

use std::{sync::Arc, time::Duration};

use common::{bounded, get, redis::RedisServer, seen, Echo, Fetcher};
use futures_util::future::join_all;
use http::StatusCode;
use tower::{Layer, ServiceExt};
use tower_oauth::{
    mock::{MockConfig, MockServer},
    store::{RedisStore, RedisTls, StoreCipher},
    ClientCredentials, OAuthLayer, OAuthLayerBuilder,
};

const SEC: Duration = Duration::from_secs(1);
const LIMIT: Duration = Duration::from_secs(30);

async fn store(redis: &RedisServer) -> RedisStore {
    RedisStore::connect(&redis.url())
        .await
        .expect("connects to the test server")
        .prefix("fleet-test:")
}

fn layer_on(fetcher: &Fetcher, store: RedisStore) -> OAuthLayerBuilder {
    OAuthLayer::with_fetcher(fetcher.clone())
        .store(store)
        .store_key("https://auth.example/token|client_id=fleet")
}

#[tokio::test]
async fn five_hundred_layers_on_one_redis_make_one_token_request() {
    let redis = RedisServer::start();
    // One connection per twenty layers, as twenty-five processes would have.
    let mut stores = Vec::new();
    for _ in 0..25 {
        stores.push(store(&redis).await);
    }
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::from_millis(100));
    let layers: Vec<_> = (0..500)
        .map(|i| layer_on(&fetcher, stores[i % 25].clone()).build())
        .collect();
    let handles: Vec<_> = layers.iter().map(|l| l.handle()).collect();
    for warmed in bounded(LIMIT, join_all(handles.iter().map(|h| h.warm_up()))).await {
        warmed.unwrap();
    }
    assert_eq!(fetcher.calls(), 1);
    let hits: u64 = handles.iter().map(|h| h.store_hits()).sum();
    assert_eq!(hits, 499);
}

#[tokio::test]
async fn a_revoke_seen_by_every_replica_is_fetched_for_once() {
    let redis = RedisServer::start();
    let mock = MockServer::start().await.unwrap();
    let creds = || common::mock_creds(&mock);
    let mut layers = Vec::new();
    for _ in 0..8 {
        layers.push(
            OAuthLayer::builder(creds())
                .store(store(&redis).await)
                .build(),
        );
    }
    for layer in &layers {
        layer.handle().warm_up().await.unwrap();
    }
    assert_eq!(mock.stats().tokens_issued, 1, "one token for the fleet");
    mock.revoke_all();
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let url = format!("{}/api/v1/workflows", mock.base_url());
    let sent = join_all(layers.iter().map(|layer| {
        let req = http::Request::get(&url).body(Default::default()).unwrap();
        layer.layer(http.clone()).oneshot(req)
    }));
    for res in bounded(LIMIT, sent).await {
        assert_eq!(res.unwrap().status(), StatusCode::OK, "replayed");
    }
    assert_eq!(
        mock.stats().tokens_issued,
        2,
        "the revoked token deleted once, its re-issue shared"
    );
}

#[tokio::test]
async fn tokens_at_rest_are_sealed_and_keyed_without_the_secret() {
    let redis = RedisServer::start();
    let mock = MockServer::start_with(MockConfig::new()).await.unwrap();
    let cipher = StoreCipher::new([9; 32]);
    let layer = OAuthLayer::builder(common::mock_creds(&mock))
        .store(store(&redis).await)
        .store_cipher(cipher.clone())
        .build();
    let res = layer
        .layer(Echo::default())
        .oneshot(get("/"))
        .await
        .unwrap();
    let token = seen(&res).unwrap().trim_start_matches("Bearer ").to_owned();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*fleet-test:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "one token key, its lease released: {keys:?}");
    assert!(keys[0].contains(mock.client_id()), "{}", keys[0]);
    assert!(!keys[0].contains(mock.client_secret()), "{}", keys[0]);
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!raw.is_empty());
    assert!(
        !raw.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token is not readable at rest"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 7200 * 1000,
        "a ttl of the token's lifetime: {ttl}"
    );
    // Another replica with the key reads it.
    let other = OAuthLayer::builder(common::mock_creds(&mock))
        .store(store(&redis).await)
        .store_cipher(cipher)
        .build();
    other.handle().warm_up().await.unwrap();
    assert_eq!(
        (mock.stats().tokens_issued, other.handle().store_hits()),
        (1, 1)
    );
}

#[tokio::test]
async fn redis_killed_mid_run_fails_no_request() {
    let mut redis = RedisServer::start();
    let mock = MockServer::start().await.unwrap();
    mock.set_token_lifetime(2 * SEC);
    let creds: ClientCredentials = common::mock_creds(&mock);
    let layers: Vec<_> = {
        let mut layers = Vec::new();
        for _ in 0..4 {
            let layer = OAuthLayer::builder(creds.clone())
                .store(store(&redis).await)
                .store_timeout(Duration::from_millis(200))
                .expiry_margin(Duration::from_millis(100))
                .build();
            layers.push(Arc::new(layer));
        }
        layers
    };
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let url = format!("{}/api/v1/workflows", mock.base_url());
    let mut failed = 0;
    let mut sent = 0;
    // Steady requests over three token lifetimes; Redis dies after the first.
    let run = async {
        for round in 0..60 {
            if round == 20 {
                redis.kill();
            }
            for layer in &layers {
                let req = http::Request::get(&url).body(Default::default()).unwrap();
                match layer.layer(http.clone()).oneshot(req).await {
                    Ok(res) if res.status().is_success() => {}
                    _ => failed += 1,
                }
                sent += 1;
            }
            tokio::time::sleep(SEC / 10).await;
        }
    };
    bounded(LIMIT, run).await;
    assert_eq!((failed, sent), (0, 240), "no request failed");
    assert!(
        mock.stats().tokens_issued >= 4,
        "each layer fetched on its own once Redis was gone: {}",
        mock.stats().tokens_issued
    );
}

/// The Redis key of the layers' token above, and of its lease.
const KEY: &str = "{fleet-test:https://auth.example/token|client_id=fleet|scope=}";

async fn raw(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_replica_that_died_holding_the_lease_is_replaced_when_it_ends() {
    let redis = RedisServer::start();
    let mut conn = raw(&redis).await;
    // A replica took the lease for 300 ms and died before writing a token.
    let taken: Option<String> = redis::cmd("SET")
        .arg(format!("{KEY}:lease"))
        .arg("dead-replica")
        .arg("NX")
        .arg("PX")
        .arg(300)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(taken.as_deref(), Some("OK"));
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::ZERO);
    let layer = layer_on(&fetcher, store(&redis).await).build();
    bounded(LIMIT, layer.handle().warm_up()).await.unwrap();
    assert_eq!(fetcher.calls(), 1, "it waited, then took the lease itself");
    let stored: Option<Vec<u8>> = redis::cmd("GET")
        .arg(KEY)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(stored.is_some(), "and wrote its token for the others");
    let lease: Option<String> = redis::cmd("GET")
        .arg(format!("{KEY}:lease"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(lease, None, "and gave the lease back");
}

#[tokio::test]
async fn garbage_under_the_key_is_ignored_and_replaced() {
    let redis = RedisServer::start();
    let mut conn = raw(&redis).await;
    let () = redis::cmd("SET")
        .arg(KEY)
        .arg("{\"v\":1,\"access_token\":\"planted\",\"token_type\":\"mac\"}")
        .query_async(&mut conn)
        .await
        .unwrap();
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::ZERO);
    let layer = layer_on(&fetcher, store(&redis).await).build();
    let res = layer
        .layer(Echo::default())
        .oneshot(get("/"))
        .await
        .unwrap();
    assert_eq!(
        seen(&res),
        Some("Bearer tok-1"),
        "the planted value is not used"
    );
    let next = layer_on(&fetcher, store(&redis).await).build();
    next.handle().warm_up().await.unwrap();
    assert_eq!(
        (fetcher.calls(), next.handle().store_hits()),
        (1, 1),
        "the good token replaced it"
    );
}

/// A Redis that serves TLS with the test CA's server certificate and asks for a client
/// certificate from the same CA (it also listens in plain on the harness's port, for its
/// readiness check), and its TLS URL.
fn tls_redis() -> (RedisServer, String) {
    let fixture = |name: &str| format!("{}/tests/fixtures/oidc/{name}", env!("CARGO_MANIFEST_DIR"));
    let tls_port = common::redis::free_port().to_string();
    let (cert, key, ca) = (
        fixture("server.pem"),
        fixture("server-key.pem"),
        fixture("ca.pem"),
    );
    let redis = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "yes",
    ]);
    (redis, format!("rediss://127.0.0.1:{tls_port}"))
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/oidc/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[tokio::test]
async fn replicas_share_tokens_over_tls_with_a_private_ca_and_a_client_certificate() {
    // Both rustls providers are compiled in under --all-features: say which, as an
    // application would.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (_redis, url) = tls_redis();
    let tls = RedisTls::new()
        .root_certificate(fixture("ca.pem"))
        .client_certificate(fixture("client.pem"), fixture("client-key.pem"));
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::ZERO);
    let mut layers = Vec::new();
    for _ in 0..2 {
        let store = RedisStore::connect_with_tls(&url, tls.clone())
            .await
            .expect("connects over TLS")
            .prefix("fleet-test:");
        layers.push(layer_on(&fetcher, store).build());
    }
    for layer in &layers {
        layer.handle().warm_up().await.unwrap();
    }
    assert_eq!((fetcher.calls(), layers[1].handle().store_hits()), (1, 1));
    assert!(!format!("{tls:?}").contains("BEGIN"), "{tls:?}");

    // Without the CA the server is not trusted; without the client certificate it
    // refuses the connection; a redis:// url has no TLS to configure.
    let untrusted =
        RedisTls::new().client_certificate(fixture("client.pem"), fixture("client-key.pem"));
    let no_client = RedisTls::new().root_certificate(fixture("ca.pem"));
    for (tls, what) in [
        (untrusted, "untrusted"),
        (no_client, "no client certificate"),
    ] {
        let err = bounded(LIMIT, RedisStore::connect_with_tls(&url, tls))
            .await
            .expect_err(what);
        assert_eq!(
            err.kind(),
            tower_oauth::ErrorKind::Transport,
            "{what}: {err}"
        );
        assert!(!err.to_string().contains("PRIVATE KEY"), "{what}: {err}");
    }
    let plain = RedisStore::connect_with_tls("redis://127.0.0.1:1", RedisTls::new()).await;
    assert_eq!(plain.unwrap_err().kind(), tower_oauth::ErrorKind::Config);
}

#[tokio::test]
async fn replicas_share_tokens_through_a_three_node_cluster() {
    let nodes: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start_with(&["--cluster-enabled", "yes"]))
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect();
    let created = std::process::Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli (installed with redis-server) creates the cluster");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
    let mut conns = Vec::new();
    for node in &nodes {
        conns.push(raw(node).await);
    }
    // Every node sees every slot served before the stores connect.
    let settled = async {
        loop {
            let mut ok = 0;
            for conn in &mut conns {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(conn)
                    .await
                    .unwrap();
                ok += usize::from(info.contains("cluster_state:ok"));
            }
            if ok == conns.len() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    bounded(LIMIT, settled).await;

    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    let fetcher = Fetcher::tokens(3600 * SEC, Duration::ZERO);
    let pick = |req: &tower_oauth::RequestHead<'_>| {
        let name = req.headers.get("x-tenant")?.to_str().ok()?;
        Some(tower_oauth::Tenant::from(name))
    };
    let mut layers = Vec::new();
    for _ in 0..2 {
        let store = RedisStore::cluster(urls.clone())
            .await
            .expect("connects to the cluster")
            .prefix("fleet-test:");
        layers.push(layer_on(&fetcher, store).tenant_policy(pick).build());
    }
    // Thirty tenants' keys spread over the three nodes' slots.
    for layer in &layers {
        let svc = layer.layer(Echo::default());
        for i in 0..30 {
            let mut req = get("/");
            req.headers_mut()
                .insert("x-tenant", i.to_string().parse().unwrap());
            let res = bounded(LIMIT, svc.clone().oneshot(req)).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        }
    }
    assert_eq!(
        fetcher.calls(),
        30,
        "one token request per tenant for both replicas"
    );
    assert_eq!(layers[1].handle().store_hits(), 30);
    let mut holding = 0;
    for conn in &mut conns {
        let keys: i64 = redis::cmd("DBSIZE").query_async(conn).await.unwrap();
        holding += usize::from(keys > 0);
    }
    assert_eq!(holding, 3, "every node holds some of the tokens");
}
