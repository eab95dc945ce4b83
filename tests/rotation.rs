//! Rotating client secrets: a `SecretSource` read on first use and once more per
//! `invalid_client`, with the token request sent again when the secret changed.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use bytes::Bytes;
use futures_util::future::{join_all, BoxFuture};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{util::BoxCloneSyncService, ServiceExt};
use tower_oauth::{
    fetch::HttpFetcher, BoxError, ClientCredentials, ClientSecret, Error, ErrorKind, FetchReason,
    FileSecret, SecretSource, Token, TokenRequest,
};

type Endpoint = BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>;

/// A token endpoint that accepts one secret at a time, and echoes a refused one back in
/// its error description, as careless servers do.
#[derive(Clone, Default)]
struct Server {
    accepted: Arc<Mutex<String>>,
    requests: Arc<AtomicUsize>,
}

impl Server {
    fn accepting(secret: &str) -> Self {
        let server = Self::default();
        server.rotate(secret);
        server
    }

    fn rotate(&self, secret: &str) {
        *self.accepted.lock().unwrap() = secret.to_owned();
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn client(&self) -> Endpoint {
        let server = self.clone();
        Endpoint::new(tower::service_fn(move |req: Request<Full<Bytes>>| {
            let server = server.clone();
            async move {
                server.requests.fetch_add(1, Ordering::SeqCst);
                // Let concurrent fetches send theirs before this one is answered.
                tokio::task::yield_now().await;
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let sent = form_urlencoded::parse(&body)
                    .find(|(name, _)| name == "client_secret")
                    .map(|(_, value)| value.into_owned())
                    .unwrap_or_default();
                let accepted = server.accepted.lock().unwrap().clone();
                let (status, body) = if sent == accepted {
                    (
                        StatusCode::OK,
                        r#"{"access_token":"rotated-token","token_type":"Bearer","expires_in":600}"#
                            .to_owned(),
                    )
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        format!(
                            r#"{{"error":"invalid_client","error_description":"bad secret {sent}"}}"#
                        ),
                    )
                };
                let mut res = Response::new(Full::new(Bytes::from(body)));
                *res.status_mut() = status;
                Ok(res)
            }
        }))
    }
}

/// A source that returns what `secret` holds and counts its reads.
#[derive(Clone, Default)]
struct Counted {
    secret: Arc<Mutex<String>>,
    reads: Arc<AtomicUsize>,
}

impl Counted {
    fn holding(secret: &str) -> Self {
        let source = Self::default();
        source.set(secret);
        source
    }

    fn set(&self, secret: &str) {
        *self.secret.lock().unwrap() = secret.to_owned();
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

impl SecretSource for Counted {
    fn secret(&self) -> BoxFuture<'_, Result<ClientSecret, BoxError>> {
        Box::pin(async move {
            self.reads.fetch_add(1, Ordering::SeqCst);
            // Let other fetches run while this read is under way.
            tokio::task::yield_now().await;
            Ok(ClientSecret::new(self.secret.lock().unwrap().clone()))
        })
    }
}

fn creds(source: impl SecretSource) -> ClientCredentials {
    ClientCredentials::new("https://auth.example/token", "my-client", "unused")
        .secret_source(source)
}

async fn fetch(fetcher: &HttpFetcher<Endpoint>) -> Result<Token, Error> {
    fetcher
        .clone()
        .oneshot(TokenRequest::new(None, FetchReason::First))
        .await
}

#[tokio::test]
async fn the_source_is_read_on_first_use_and_kept() {
    let server = Server::accepting("first-secret");
    let source = Counted::holding("first-secret");
    let fetcher = HttpFetcher::new(server.client(), creds(source.clone()));
    assert_eq!(source.reads(), 0);
    for _ in 0..3 {
        fetch(&fetcher).await.unwrap();
    }
    assert_eq!((source.reads(), server.requests()), (1, 3));
}

#[tokio::test]
async fn a_rotated_secret_is_read_again_once_and_the_request_retried_at_once() {
    let server = Server::accepting("first-secret");
    let source = Counted::holding("first-secret");
    let fetcher = HttpFetcher::new(server.client(), creds(source.clone()));
    fetch(&fetcher).await.unwrap();

    server.rotate("second-secret");
    source.set("second-secret");
    let token = fetch(&fetcher).await.unwrap();
    assert_eq!(token.access_token.secret(), "rotated-token");
    // One refused request, one re-read, one retried request.
    assert_eq!((source.reads(), server.requests()), (2, 3));
    fetch(&fetcher).await.unwrap();
    assert_eq!((source.reads(), server.requests()), (2, 4));
}

#[tokio::test]
async fn concurrent_fetches_refused_with_the_same_secret_read_the_source_once() {
    const FETCHES: usize = 16;
    let server = Server::accepting("first-secret");
    let source = Counted::holding("first-secret");
    let fetcher = HttpFetcher::new(server.client(), creds(source.clone()));
    fetch(&fetcher).await.unwrap();

    server.rotate("second-secret");
    source.set("second-secret");
    let results = join_all((0..FETCHES).map(|_| fetch(&fetcher))).await;
    for result in results {
        assert_eq!(result.unwrap().access_token.secret(), "rotated-token");
    }
    assert_eq!(source.reads(), 2);
    // Each was refused once and retried once.
    assert_eq!(server.requests(), 1 + 2 * FETCHES);
}

#[tokio::test]
async fn an_unchanged_secret_leaves_invalid_client_standing_without_a_loop() {
    let server = Server::accepting("first-secret");
    let source = Counted::holding("first-secret");
    let fetcher = HttpFetcher::new(server.client(), creds(source.clone()));
    fetch(&fetcher).await.unwrap();

    server.rotate("second-secret");
    let err = fetch(&fetcher).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidClient, "{err}");
    assert!(!err.is_retryable());
    assert_eq!((source.reads(), server.requests()), (2, 2));
    // The echoed secret is redacted as a configured one is.
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("first-secret"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}

#[tokio::test]
async fn a_source_that_fails_fails_the_fetch_with_a_config_error() {
    let server = Server::accepting("first-secret");
    let missing = std::env::temp_dir().join(format!("tower-oauth-missing-{}", std::process::id()));
    let fetcher = HttpFetcher::new(server.client(), creds(FileSecret::new(missing)));
    let err = fetch(&fetcher).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("secret source"), "{err}");
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn the_file_source_picks_up_a_rewritten_file() {
    let path = std::env::temp_dir().join(format!("tower-oauth-secret-{}", std::process::id()));
    std::fs::write(&path, "first-secret\n").unwrap();
    let server = Server::accepting("first-secret");
    let fetcher = HttpFetcher::new(server.client(), creds(FileSecret::new(&path)));
    fetch(&fetcher).await.unwrap();

    std::fs::write(&path, "second-secret\r\n").unwrap();
    server.rotate("second-secret");
    let token = fetch(&fetcher).await.unwrap();
    assert_eq!(token.access_token.secret(), "rotated-token");
    assert_eq!(server.requests(), 3);
    std::fs::remove_file(&path).unwrap();
}
