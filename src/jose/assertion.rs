//! Client assertions (RFC 7523 §2.2): signed here, or from a source per token request.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use futures_util::future::BoxFuture;
use jsonwebtoken::Header;
use serde_json::json;
use zeroize::Zeroizing;

use super::{
    claims::{jti, now_secs},
    key::{config, SigningKey},
};
use crate::{
    error::{BoxError, Error},
    sync::lock,
};

/// What an assertion is for: the client it names and the token endpoint it is sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AssertionContext {
    client_id: String,
    audience: String,
}

impl AssertionContext {
    /// A context for `client_id` at the token endpoint `audience`.
    pub fn new(client_id: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            audience: audience.into(),
        }
    }

    /// The client id: `iss` and `sub` of a signed assertion.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The token endpoint URL: the `aud` of a signed assertion.
    pub fn audience(&self) -> &str {
        &self.audience
    }
}

/// A client assertion source, asked once per token request: workload identity tokens
/// (a Kubernetes service-account token, an Azure federated credential).
///
/// The built-in fetcher sends what it returns as `client_assertion`. An error fails that
/// token request, not retried.
pub trait AssertionSource: Send + Sync + 'static {
    /// The assertion, a JWT, for one token request.
    fn assertion(&self, ctx: &AssertionContext) -> BoxFuture<'_, Result<String, BoxError>>;
}

/// Signs an RFC 7523 §2.2 client assertion: `iss` = `sub` = the client id, `aud` = the
/// token URL, a fresh `jti`, `iat`, and `exp` `lifetime` later; `kid` when known.
pub(crate) fn sign_assertion(
    key: &SigningKey,
    ctx: &AssertionContext,
    lifetime: Duration,
) -> Result<Zeroizing<String>, Error> {
    let iat = now_secs();
    let claims = json!({
        "iss": ctx.client_id,
        "sub": ctx.client_id,
        "aud": ctx.audience,
        "jti": jti()?,
        "iat": iat,
        "exp": iat + lifetime.as_secs().max(1),
    });
    let mut header = Header::new(key.alg().algorithm());
    header.kid = key.key_id().map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, key.encoding_key())
        .map(Zeroizing::new)
        .map_err(|e| config("the client assertion cannot be signed").with_source(e))
}

/// An assertion read from a file that another process keeps fresh: a projected
/// Kubernetes service-account token, an Azure federated token file.
///
/// The file is read again when its modification time or length changes; otherwise the
/// last contents are returned. Surrounding whitespace is dropped. Errors name the
/// file, never its contents.
///
/// ```
/// use tower_oauth::{jose::FileAssertion, ClientCredentials};
///
/// let creds = ClientCredentials::new("https://login.example/token", "my-client", "")
///     .client_assertion(FileAssertion::new("/var/run/secrets/tokens/token"));
/// # let _ = creds;
/// ```
#[derive(Clone)]
pub struct FileAssertion {
    path: Arc<Path>,
    last: Arc<Mutex<Option<Read>>>,
}

/// What the file held when last read, and how it looked then.
struct Read {
    modified: Option<SystemTime>,
    len: u64,
    token: Arc<Zeroizing<String>>,
}

impl FileAssertion {
    /// A source reading `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: Arc::from(path.into()),
            last: Arc::default(),
        }
    }

    /// The contents, read again only when the file changed. Blocking: run it off the
    /// async threads.
    fn read(path: &Path, last: &Mutex<Option<Read>>) -> Result<String, Error> {
        let name = path
            .file_name()
            .map_or_else(|| "?".into(), |n| n.to_string_lossy());
        let failed = |what: &str, e: std::io::Error| {
            config(&format!("the assertion file `{name}` {what}")).with_source(e)
        };
        let meta = std::fs::metadata(path).map_err(|e| failed("cannot be read", e))?;
        let (modified, len) = (meta.modified().ok(), meta.len());
        if let Some(read) = &*lock(last) {
            if read.modified == modified && read.len == len && modified.is_some() {
                return Ok(read.token.as_str().to_owned());
            }
        }
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| failed("cannot be read", e))?);
        let token = text.trim();
        if token.is_empty() {
            return Err(config(&format!("the assertion file `{name}` is empty")));
        }
        let token = Arc::new(Zeroizing::new(token.to_owned()));
        *lock(last) = Some(Read {
            modified,
            len,
            token: token.clone(),
        });
        Ok(token.as_str().to_owned())
    }
}

impl AssertionSource for FileAssertion {
    fn assertion(&self, _ctx: &AssertionContext) -> BoxFuture<'_, Result<String, BoxError>> {
        let (path, last) = (self.path.clone(), self.last.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || Self::read(&path, &last))
                .await
                .map_err(|e| config("reading the assertion file stopped").with_source(e))?
                .map_err(BoxError::from)
        })
    }
}

impl fmt::Debug for FileAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileAssertion")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::{
        error::ErrorKind,
        jose::{test_support::*, SigningAlg},
    };

    const SECRET: &[u8] = b"a-client-secret-of-more-than-32-bytes";

    fn keys() -> Vec<SigningKey> {
        vec![
            SigningKey::from_pem(SigningAlg::RS256, RSA_PEM).unwrap(),
            SigningKey::from_pem(SigningAlg::PS256, RSA_PEM)
                .unwrap()
                .with_key_id("ps"),
            SigningKey::from_pem(SigningAlg::ES256, EC_PEM).unwrap(),
            SigningKey::from_jwk(ED_JWK).unwrap(),
            SigningKey::hs256(SECRET).unwrap(),
        ]
    }

    #[test]
    fn an_assertion_carries_each_rfc_7523_claim_and_verifies_with_the_public_key() {
        let ctx = AssertionContext::new("client-7", "https://as.example/oauth/token");
        for key in keys() {
            let alg = key.alg();
            let jwt = sign_assertion(&key, &ctx, Duration::from_secs(60)).unwrap();
            let (header, claims) = verify(&jwt, alg, key.public_jwk().as_ref(), Some(SECRET));
            assert_eq!(header.alg, alg.algorithm());
            assert_eq!(header.kid.as_deref(), key.key_id(), "{alg}");
            assert_eq!(header.typ.as_deref(), Some("JWT"));
            assert_eq!(claims["iss"], "client-7", "{alg}");
            assert_eq!(claims["sub"], "client-7", "{alg}");
            assert_eq!(claims["aud"], "https://as.example/oauth/token", "{alg}");
            let iat = claims["iat"].as_u64().unwrap();
            assert_eq!(claims["exp"].as_u64().unwrap(), iat + 60, "{alg}");
            assert!(iat.abs_diff(now_secs()) < 3600, "{alg}: iat {iat}");
            // 128 bits, base64url without padding.
            let jti = claims["jti"].as_str().unwrap();
            assert_eq!(jti.len(), 22, "{jti}");
            assert!(!jti.contains(['+', '/', '=']), "{jti}");
        }
    }

    #[test]
    fn every_assertion_has_a_new_jti_and_the_lifetime_asked_for() {
        let key = SigningKey::from_pem(SigningAlg::ES256, EC_PEM).unwrap();
        let public = key.public_jwk();
        let ctx = AssertionContext::new("c", "https://as.example/token");
        let claims = |lifetime| {
            let jwt = sign_assertion(&key, &ctx, lifetime).unwrap();
            verify(&jwt, SigningAlg::ES256, public.as_ref(), None).1
        };
        let (a, b) = (
            claims(Duration::from_secs(300)),
            claims(Duration::from_secs(300)),
        );
        assert_ne!(a["jti"], b["jti"]);
        let lifetime = |c: &serde_json::Map<String, Value>| {
            c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap()
        };
        assert_eq!(lifetime(&a), 300);
        assert_eq!(lifetime(&claims(Duration::from_millis(10))), 1);
    }

    /// A directory of its own for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tower-oauth-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn a_file_assertion_is_read_again_only_when_the_file_changes() {
        let path = scratch("rotates").join("token");
        let source = FileAssertion::new(&path);
        let ctx = AssertionContext::new("c", "https://as.example/token");
        std::fs::write(&path, "token-one\n").unwrap();
        let when = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(source.assertion(&ctx).await.unwrap(), "token-one");
        // A new token of another length is read at once.
        std::fs::write(&path, "token-number-two").unwrap();
        assert_eq!(source.assertion(&ctx).await.unwrap(), "token-number-two");
        // Same length and modification time: the copy in memory is returned.
        std::fs::write(&path, "token-number-3xx").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        let seen = std::fs::metadata(&path).unwrap().modified().unwrap();
        file.set_modified(when).unwrap();
        source.assertion(&ctx).await.unwrap();
        assert_eq!(source.assertion(&ctx).await.unwrap(), "token-number-3xx");
        std::fs::write(&path, "token-number-4xx").unwrap();
        file.set_modified(when).unwrap();
        assert_eq!(source.assertion(&ctx).await.unwrap(), "token-number-3xx");
        // Another modification time: read again.
        file.set_modified(seen + Duration::from_secs(5)).unwrap();
        assert_eq!(source.assertion(&ctx).await.unwrap(), "token-number-4xx");
    }

    #[tokio::test]
    async fn a_missing_or_empty_assertion_file_is_a_config_error_naming_the_file() {
        let dir = scratch("errors");
        let ctx = AssertionContext::new("c", "https://as.example/token");
        let empty = dir.join("empty-token");
        std::fs::write(&empty, " \n").unwrap();
        for (path, says) in [
            (dir.join("missing-token"), "`missing-token` cannot be read"),
            (empty, "`empty-token` is empty"),
        ] {
            let err = FileAssertion::new(&path).assertion(&ctx).await.unwrap_err();
            let err = err.downcast::<Error>().unwrap();
            assert_eq!(err.kind(), ErrorKind::Config);
            assert!(!err.is_retryable());
            assert!(err.to_string().contains(says), "{err}");
            assert!(!err.to_string().contains(dir.to_str().unwrap()), "{err}");
        }
    }
}
