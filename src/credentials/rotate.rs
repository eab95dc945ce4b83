//! Rotating client secrets: a [`SecretSource`] the built-in fetcher reads.

use std::{
    fmt,
    future::Future,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use zeroize::Zeroizing;

use crate::{
    error::{BoxError, Error, ErrorKind},
    sync::lock,
};
use crate::{ClientCredentials, ClientSecret};

/// Where the current client secret comes from: a file, a vault, a sidecar.
///
/// The fetcher reads the source on first use and keeps what it read. When the token
/// endpoint answers `invalid_client`, it reads the source again, once per secret: fetches
/// refused with the same secret share that one read. If the secret changed, the token
/// request is sent again at once with the new one. If not, the `invalid_client` error
/// stands.
///
/// ```
/// use tower_oauth::{ClientCredentials, FileSecret};
///
/// // A Kubernetes or Vault secret mounted as a file.
/// let creds = ClientCredentials::new("https://auth.example/token", "my-client", "")
///     .secret_source(FileSecret::new("/var/run/secrets/oauth/client-secret"));
/// # let _ = creds;
/// ```
pub trait SecretSource: Send + Sync + 'static {
    /// Reads the current secret.
    ///
    /// An error fails the token fetch with an [`ErrorKind::Config`] error whose source it is.
    /// Keep the secret out of it.
    fn secret(&self) -> BoxFuture<'_, Result<ClientSecret, BoxError>>;
}

/// A secret kept in a file, such as a mounted Kubernetes or Vault secret.
///
/// Each read reads the whole file. Trailing line breaks are trimmed.
#[derive(Debug, Clone)]
pub struct FileSecret {
    path: PathBuf,
}

impl FileSecret {
    /// A source that reads the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl SecretSource for FileSecret {
    fn secret(&self) -> BoxFuture<'_, Result<ClientSecret, BoxError>> {
        let path = self.path.clone();
        Box::pin(async move {
            let text = tokio::task::spawn_blocking(move || std::fs::read_to_string(path)).await??;
            let text = Zeroizing::new(text);
            Ok(ClientSecret::new(text.trim_end_matches(['\r', '\n'])))
        })
    }
}

/// One read of the source, shared by every fetch that waits for it. Any of them drives it,
/// so dropping the one that started it strands no other.
type Read = Shared<BoxFuture<'static, Result<ClientSecret, Error>>>;

/// What is known of the source. Each read gets the next generation number.
enum State {
    /// Not read yet, or the last read failed.
    Unread { next: u64 },
    /// A read is under way.
    Reading { generation: u64, read: Read },
    /// The secret the last read returned.
    Read {
        generation: u64,
        secret: ClientSecret,
    },
}

/// A secret source and what was last read from it, shared by clones of the credentials.
pub(crate) struct Rotation {
    source: Arc<dyn SecretSource>,
    state: Mutex<State>,
}

impl fmt::Debug for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSource").finish_non_exhaustive()
    }
}

impl Rotation {
    fn new(source: Arc<dyn SecretSource>) -> Self {
        Self {
            source,
            state: Mutex::new(State::Unread { next: 1 }),
        }
    }

    /// The current secret and its generation, reading the source if nothing was read.
    async fn current(&self) -> Result<(u64, ClientSecret), Error> {
        let (generation, read) = {
            let mut state = lock(&self.state);
            match &*state {
                State::Read { generation, secret } => return Ok((*generation, secret.clone())),
                State::Reading { generation, read } => (*generation, read.clone()),
                State::Unread { next } => {
                    let next = *next;
                    self.start(&mut state, next)
                }
            }
        };
        Ok((generation, self.finish(generation, read).await?))
    }

    /// After the endpoint refused `used`, of `generation`: a different secret, if the
    /// source now holds one. The source is read at most once per generation refused.
    async fn after_rejection(
        &self,
        generation: u64,
        used: &ClientSecret,
    ) -> Result<Option<ClientSecret>, Error> {
        let (newer, read) = {
            let mut state = lock(&self.state);
            match &*state {
                // Another fetch read the source since: use what it read.
                State::Read {
                    generation: g,
                    secret,
                } if *g > generation => return Ok((secret != used).then(|| secret.clone())),
                State::Read { generation: g, .. } => {
                    let next = g + 1;
                    self.start(&mut state, next)
                }
                State::Reading { generation, read } => (*generation, read.clone()),
                State::Unread { next } => {
                    let next = *next;
                    self.start(&mut state, next)
                }
            }
        };
        let secret = self.finish(newer, read).await?;
        Ok((secret != *used).then_some(secret))
    }

    /// Starts read number `generation`.
    fn start(&self, state: &mut State, generation: u64) -> (u64, Read) {
        let source = self.source.clone();
        let read = async move {
            source.secret().await.map_err(|e| {
                Error::new(ErrorKind::Config)
                    .with_detail("the client secret source failed")
                    .with_source(e)
            })
        }
        .boxed()
        .shared();
        *state = State::Reading {
            generation,
            read: read.clone(),
        };
        (generation, read)
    }

    /// Waits for read number `generation` and records what it returned.
    async fn finish(&self, generation: u64, read: Read) -> Result<ClientSecret, Error> {
        let result = read.await;
        let mut state = lock(&self.state);
        if matches!(&*state, State::Reading { generation: g, .. } if *g == generation) {
            *state = match &result {
                Ok(secret) => State::Read {
                    generation,
                    secret: secret.clone(),
                },
                Err(_) => State::Unread {
                    next: generation + 1,
                },
            };
        }
        result
    }
}

impl ClientCredentials {
    /// Reads the client secret from `source` instead of using the one given to the
    /// constructor. Default: none, the constructor's secret is used.
    ///
    /// Only [`HttpFetcher`](crate::fetch::HttpFetcher) reads it: on first use, and again
    /// after `invalid_client` (see [`SecretSource`]). Clones of these credentials share
    /// what was read. The secret read is redacted from errors as a configured one is.
    pub fn secret_source(mut self, source: impl SecretSource) -> Self {
        self.secret_source = Some(Arc::new(Rotation::new(Arc::new(source))));
        self
    }

    /// These credentials with `secret`.
    fn with_secret(&self, secret: ClientSecret) -> Arc<Self> {
        let mut creds = self.clone();
        creds.client_secret = secret;
        Arc::new(creds)
    }
}

/// Runs `attempt` with the credentials' secret, read from their source if they have one.
/// When the source gives a new secret after `invalid_client`, runs it once more with that.
pub(crate) async fn with_rotation<T, F, Fut>(
    creds: Arc<ClientCredentials>,
    attempt: F,
) -> Result<T, Error>
where
    F: Fn(Arc<ClientCredentials>) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let Some(rotation) = creds.secret_source.clone() else {
        return attempt(creds).await;
    };
    let (generation, secret) = rotation.current().await?;
    match attempt(creds.with_secret(secret.clone())).await {
        Err(err) if err.kind() == ErrorKind::InvalidClient => {
            match rotation.after_rejection(generation, &secret).await? {
                Some(newer) => {
                    tracing::debug!("client secret rotated; sending the token request again");
                    attempt(creds.with_secret(newer)).await
                }
                None => Err(err),
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A source that counts its reads and returns what `secret` holds.
    struct Counted {
        reads: Arc<AtomicUsize>,
        secret: Arc<Mutex<String>>,
    }

    impl SecretSource for Counted {
        fn secret(&self) -> BoxFuture<'_, Result<ClientSecret, BoxError>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let secret = lock(&self.secret).clone();
            Box::pin(async move {
                tokio::task::yield_now().await;
                Ok(ClientSecret::new(secret))
            })
        }
    }

    #[tokio::test]
    async fn a_refused_generation_is_read_again_once_and_later_refusals_reuse_it() {
        let reads = Arc::new(AtomicUsize::new(0));
        let secret = Arc::new(Mutex::new("old-secret".to_owned()));
        let rotation = Rotation::new(Arc::new(Counted {
            reads: reads.clone(),
            secret: secret.clone(),
        }));
        let (generation, first) = rotation.current().await.unwrap();
        assert_eq!(first.secret(), "old-secret");
        assert_eq!(rotation.current().await.unwrap().0, generation);
        assert_eq!(reads.load(Ordering::SeqCst), 1);

        *lock(&secret) = "new-secret".to_owned();
        let refused = futures_util::future::join_all(
            (0..8).map(|_| rotation.after_rejection(generation, &first)),
        )
        .await;
        for newer in refused {
            assert_eq!(newer.unwrap().unwrap().secret(), "new-secret");
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2);

        // The new secret refused too, and unchanged: one more read, no newer secret.
        let (generation, current) = rotation.current().await.unwrap();
        assert!(rotation
            .after_rejection(generation, &current)
            .await
            .unwrap()
            .is_none());
        assert!(rotation
            .after_rejection(generation, &current)
            .await
            .unwrap()
            .is_none());
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_rotation_debug_shows_no_secret() {
        let rotation = Rotation::new(Arc::new(FileSecret::new("/nonexistent")));
        *lock(&rotation.state) = State::Read {
            generation: 1,
            secret: ClientSecret::new("hunter2-rotated"),
        };
        assert!(!format!("{rotation:?}").contains("hunter2"));
    }
}
