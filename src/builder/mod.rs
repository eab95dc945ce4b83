//! The layer's builder: its settings and their defaults.

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

#[cfg(feature = "jwt")]
mod dpop;
mod renewal;
mod store;
mod tenants;

use crate::{
    body::{Recorded, ReplayableBody, Replayers},
    classify::{Classifier, ClassifyRejection, StandardClassifier},
    config::{BoxFetcher, Config, Core, TenantIdentity, DEFAULT_REPLAY_LIMIT},
    error::BoxError,
    layer::OAuthLayer,
    scope::{PickTenant, ScopePolicy},
    store::{fleet::Fleet, StoreCipher, TokenStore},
    token::{Token, TokenRequest},
};

/// The default of [`OAuthLayerBuilder::scope_idle_timeout`].
const DEFAULT_SCOPE_IDLE: Duration = Duration::from_secs(10 * 60);

impl OAuthLayer {
    /// A layer that fetches tokens with `creds` over the built-in HTTPS client, with
    /// default settings.
    #[cfg(feature = "https")]
    pub fn new(creds: crate::ClientCredentials) -> Self {
        Self::builder(creds).build()
    }

    /// A builder for a layer that fetches tokens with `creds` over the built-in HTTPS
    /// client. Its scope policy starts as the credentials' fixed scope; a policy set with
    /// [`OAuthLayerBuilder::scope_policy`] replaces it.
    #[cfg(feature = "https")]
    pub fn builder(creds: crate::ClientCredentials) -> OAuthLayerBuilder {
        let policy = ScopePolicy::fixed(creds.scope_ref().cloned());
        let host = crate::redact::host(creds.token_url()).map(Arc::from);
        let identity = store::identity(&creds);
        let mut builder =
            Self::with_fetcher(crate::fetch::HttpFetcher::https(creds)).scope_policy(policy);
        builder.host = host;
        builder.store_identity = Some(identity);
        builder
    }

    /// A builder for a layer whose tokens come from `fetcher`: any
    /// `Service<TokenRequest, Response = Token>`, e.g. an
    /// [`HttpFetcher`](crate::fetch::HttpFetcher) over your own HTTP client, or a
    /// `service_fn`. Its scope policy starts as "no scope".
    pub fn with_fetcher<F>(fetcher: F) -> OAuthLayerBuilder
    where
        F: Service<TokenRequest, Response = Token> + Clone + Send + Sync + 'static,
        F::Error: Into<BoxError>,
        F::Future: Send + 'static,
    {
        OAuthLayerBuilder {
            fetcher: BoxCloneSyncService::new(tower::ServiceExt::map_err(fetcher, Into::into)),
            policy: ScopePolicy::fixed(None),
            policy_set: false,
            classifier: Classifier::new(StandardClassifier::default()),
            config: Config::default(),
            replay: true,
            replay_limit: DEFAULT_REPLAY_LIMIT,
            replayers: Replayers::default(),
            scope_idle: DEFAULT_SCOPE_IDLE,
            name: None,
            host: None,
            store: None,
            store_cipher: None,
            store_identity: None,
            tenant: None,
            tenant_identity: None,
            #[cfg(feature = "jwt")]
            dpop: None,
        }
    }
}

/// Settings of an [`OAuthLayer`].
///
/// A clone has the same settings and fetcher; each layer built from either has tokens of
/// its own.
///
/// ```
/// use std::time::Duration;
/// use tower::service_fn;
/// use tower_oauth::{BoxError, OAuthLayer, Token, TokenRequest};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let fetcher = service_fn(|_: TokenRequest| async {
///     Ok::<_, BoxError>(Token::new("tok", Some(Duration::from_secs(3600))))
/// });
/// let builder = OAuthLayer::with_fetcher(fetcher).fetch_timeout(Duration::from_secs(3));
/// let (one, other) = (builder.clone().build(), builder.build());
/// one.handle().warm_up().await.unwrap();
/// assert_eq!((one.handle().fetches(), other.handle().fetches()), (1, 0));
/// # }
/// ```
#[derive(Clone)]
pub struct OAuthLayerBuilder {
    fetcher: BoxFetcher,
    policy: ScopePolicy,
    /// Whether `scope_policy` was called: the policy's scopes are then explicit.
    policy_set: bool,
    classifier: Classifier,
    config: Config,
    /// Set apart from the limit, so that the two setters can come in any order.
    replay: bool,
    replay_limit: usize,
    replayers: Replayers,
    scope_idle: Duration,
    name: Option<Arc<str>>,
    /// The token endpoint's host, known when the layer has the built-in fetcher.
    host: Option<Arc<str>>,
    store: Option<Arc<dyn TokenStore>>,
    store_cipher: Option<StoreCipher>,
    /// The first part of the store keys: known from the credentials, or given.
    store_identity: Option<Arc<str>>,
    /// Picks each request's tenant, on a layer for many.
    tenant: Option<Arc<PickTenant>>,
    /// The first part of a tenant's store keys, from its credentials.
    tenant_identity: Option<Arc<TenantIdentity>>,
    #[cfg(feature = "jwt")]
    dpop: Option<crate::jose::Dpop>,
}

/// The former name of [`OAuthLayerBuilder`], kept until 1.0.
#[deprecated(since = "0.2.0", note = "renamed `OAuthLayerBuilder`")]
pub type Builder = OAuthLayerBuilder;

impl fmt::Debug for OAuthLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthLayerBuilder")
            .field("policy", &self.policy)
            .field("config", &self.config)
            .field("replay", &self.replay)
            .field("replay_limit", &self.replay_limit)
            .field("replayers", &self.replayers)
            .field("scope_idle", &self.scope_idle)
            .field("name", &self.name)
            .field("store", &self.store.is_some())
            .field("store_cipher", &self.store_cipher)
            .finish_non_exhaustive()
    }
}

impl OAuthLayerBuilder {
    /// Which scope each request's token must have. Default: the credentials' scope for
    /// `OAuthLayer::builder` (with the `https` feature), none for
    /// [`OAuthLayer::with_fetcher`]. A request the policy set here gives no scope (`None`,
    /// or an empty scope) is fetched without one, whatever scope the fetcher's
    /// credentials have ([`TokenRequest::scope_is_explicit`]); with no policy set under
    /// `with_fetcher`, an [`HttpFetcher`](crate::fetch::HttpFetcher) asks for its
    /// credentials' scope.
    pub fn scope_policy(mut self, policy: ScopePolicy) -> Self {
        self.policy = policy;
        self.policy_set = true;
        self
    }

    /// The timeout of one token request, independent of any timeout around the layer.
    /// Default: 10 s.
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.config.fetch_timeout = timeout;
        self
    }

    /// The first backoff delay after a retryable fetch failure; it doubles per attempt,
    /// with jitter (each delay is 50–100 % of the nominal one). Default: 100 ms. No delay
    /// is shorter than 10 ms, whatever this and [`max_backoff`](Self::max_backoff) say:
    /// zero would retry a failing endpoint in a tight loop.
    pub fn initial_backoff(mut self, delay: Duration) -> Self {
        self.config.initial_backoff = delay;
        self
    }

    /// The longest backoff delay; also the cooldown after a non-retryable failure
    /// (`invalid_client`), during which requests get that error without a new fetch.
    /// Default: 2 s. Counts as at least 10 ms (see
    /// [`initial_backoff`](Self::initial_backoff)).
    pub fn max_backoff(mut self, delay: Duration) -> Self {
        self.config.max_backoff = delay;
        self
    }

    /// How long requests without a usable token may wait while retryable failures are
    /// retried; after that they get the error. Default: 5 s.
    ///
    /// After giving up, the layer keeps answering that error, without a new fetch, for a
    /// cooldown: the next backoff delay (at most [`max_backoff`](Self::max_backoff), or
    /// what `Retry-After` asked for). A retry policy outside the layer should pause at
    /// least that long between attempts.
    pub fn retry_budget(mut self, budget: Duration) -> Self {
        self.config.retry_budget = budget;
        self
    }

    /// The longest `Retry-After` honoured. Default: 60 s.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.config.max_retry_after = max;
        self
    }

    /// Fail requests with an [`ErrorKind::InsufficientScope`](crate::ErrorKind) error,
    /// before sending them, when the granted scope lacks a requested scope. Default:
    /// `false` (a warning is logged and the request is sent).
    ///
    /// The requested scope is the one the [scope policy](Self::scope_policy) names. A
    /// scope a fetcher adds of its own accord (an
    /// [`HttpFetcher`](crate::fetch::HttpFetcher)'s credentials' scope, under
    /// `with_fetcher` with no policy set) is not known to the layer and not checked: set
    /// the policy to that scope to have it checked.
    pub fn strict_scope(mut self, strict: bool) -> Self {
        self.config.strict_scope = strict;
        self
    }

    /// The most of a streaming request body kept for a replay. Default: 64 KiB.
    ///
    /// A request can be replayed when no more than this had been sent by the time the
    /// rejection arrived (the rest is then read from the original body as the replay
    /// goes), and when its size hint does not already exceed it. Buffered bodies
    /// (`Full`, `Empty`, `String`) are always replayable.
    ///
    /// What was kept is let go of when the response comes back, even if the body goes on
    /// sending (a long upload, a gRPC stream); after a rejection, each frame once neither
    /// the replay nor the original body has it still to read. An original body still
    /// being read by its connection after the rejection may lead the replay by this and
    /// one frame at most: reading on, it is cut off with a
    /// [`ReplayError`](crate::body::ReplayError), so that the replay is sent whole.
    ///
    /// Only the limit: it does not turn replay on when [`replay(false)`](Self::replay)
    /// turned it off, in whichever order the two are set.
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        self.replay_limit = bytes;
        self
    }

    /// Whether a request rejected for its token is replayed with a new one. Default:
    /// `true`.
    ///
    /// Replay keeps a copy of each request until its response head arrives: the URI,
    /// header names, header values of up to 128 bytes and a body of up to 512 bytes are
    /// copied as bytes into buffers reused per thread (no allocation once the thread has
    /// sent a request). The rest is cloned, which can allocate on every request: longer
    /// values and bodies share their bytes, and a value or body built at runtime from a
    /// `Vec` or `String` (a parsed header value, a `format!`ed body) allocates its shared
    /// form then; the request's extensions, when it has any, allocate their map and a
    /// box per value (tonic-generated clients add a `GrpcMethod` to every request). Of a
    /// streaming body, what it has sent so far is kept (see
    /// [`replay_limit`](Self::replay_limit)). A copied head is parsed back only for a
    /// replay. With replay off nothing is copied or cloned; a rejected token is still
    /// renewed, and the rejection reaches the caller; a `tower::retry` outside the layer
    /// can then resend.
    pub fn replay(mut self, on: bool) -> Self {
        self.replay = on;
        self
    }

    /// Replays request bodies of type `T`, which the layer does not know, by recording
    /// them as they are sent. Default: none registered.
    ///
    /// `wrap` makes a `T` of any body, as `axum::body::Body::new`, `reqwest::Body::wrap`
    /// and `BoxBody::new` do. The layer swaps each request's body for `wrap(recorded)`,
    /// which reads the original and keeps what it sends, and makes the replay the same way.
    /// Such a body is replayed as a boxed one is, within
    /// [`replay_limit`](Self::replay_limit). The body first sent is cut off with a
    /// [`ReplayError`](crate::body::ReplayError), found in its error's source chain, when
    /// it leads its replay past the limit.
    ///
    /// A request costs the recording's allocations and whatever `wrap` allocates (a box,
    /// for the functions above). The built-in body types (see [`body`](crate::body)) are
    /// replayed without registering. A type registered again replaces its earlier
    /// registration.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{combinators::UnsyncBoxBody, BodyExt};
    /// use tower_oauth::{BoxError, OAuthLayer, Token, TokenRequest};
    ///
    /// # let fetcher = tower::service_fn(|_: TokenRequest| async {
    /// #     Ok::<_, BoxError>(Token::new("tok", None))
    /// # });
    /// // A body type of another crate: built from any body, as `axum::body::Body::new` is.
    /// type Other = UnsyncBoxBody<Bytes, std::io::Error>;
    /// let layer = OAuthLayer::with_fetcher(fetcher)
    ///     .replay_body::<Other>(|recorded| {
    ///         recorded.map_err(|e| std::io::Error::other(e)).boxed_unsync()
    ///     })
    ///     .build();
    /// # let _ = layer;
    /// ```
    pub fn replay_body<T>(mut self, wrap: fn(Recorded<T>) -> T) -> Self
    where
        T: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
        T::Error: Into<BoxError>,
    {
        self.replayers = self.replayers.with(wrap);
        self
    }

    /// Replays request bodies of type `T` as its [`ReplayableBody`] implementation says:
    /// an `Either` of replayable bodies, a `BoxBody<Bytes, E>` whose
    /// `E: From<ReplayError>`, or a body type of your own. Default: none registered.
    ///
    /// What `T` keeps is boxed: one allocation per request.
    ///
    /// [`ReplayableBody`]: crate::body::ReplayableBody
    pub fn replayable_body<T>(mut self) -> Self
    where
        T: ReplayableBody + Send + 'static,
    {
        self.replayers = self.replayers.with_replayable::<T>();
        self
    }

    /// The most of a 401 body read to classify it. Default: 4 KiB.
    pub fn inspect_limit(mut self, bytes: usize) -> Self {
        self.config.inspect_limit = bytes;
        self
    }

    /// The least time between two re-issues caused by rejections. Default: 1 s.
    ///
    /// A token fetched because the API rejected its predecessor (or that arrived while
    /// its predecessor stood rejected) is not replaced for another rejection within this
    /// time: such rejections reach the caller as they came.
    /// A server that rejects every token (a wrong audience, a skewed clock) then costs
    /// one token request per interval rather than one per wave of requests.
    pub fn reissue_interval(mut self, interval: Duration) -> Self {
        self.config.reissue_interval = interval;
        self
    }

    /// What counts as a rejected token. Default: [`StandardClassifier`].
    ///
    /// Response futures reach it through the `Arc` they hold already: any classifier
    /// costs the same per request.
    pub fn classifier(mut self, classifier: impl ClassifyRejection) -> Self {
        self.classifier = Classifier::new(classifier);
        self
    }

    /// How long a scope set of a [`ScopePolicy::from_fn`] policy is kept unused before it
    /// is forgotten with its token. Default: 10 minutes.
    ///
    /// A background task, started with the first scope set, sweeps idle sets out, so
    /// memory is bounded by the sets in use, not by a count. A set is kept at least this
    /// long after its last request and forgotten within an eighth more. A forgotten set's
    /// next request fetches a new token. The sweep runs on the runtime of the request that
    /// started it; if that runtime is gone, the next new set starts another.
    pub fn scope_idle_timeout(mut self, idle: Duration) -> Self {
        self.scope_idle = idle;
        self
    }

    /// A name for the layer, to tell it apart from others in one application. Default:
    /// none.
    ///
    /// Its errors start with the name (`simpledocs: token request timed out ...`), and its
    /// `oauth.fetch` spans carry it as the `layer` field. Errors name the token endpoint's
    /// host (never its user info or query) whether the layer is named or not, when it is
    /// known: the built-in fetcher knows it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(Arc::from(crate::redact::sanitize(&name.into())));
        self
    }

    /// Builds the layer.
    ///
    /// # Panics
    ///
    /// When a [store](Self::store) is set on a layer without credentials (built with
    /// [`OAuthLayer::with_fetcher`]) and no [`store_key`](Self::store_key) is given: its
    /// tokens would have no key to be shared under.
    pub fn build(mut self) -> OAuthLayer {
        assert!(
            self.store.is_none() || self.store_identity.is_some() || self.tenant_identity.is_some(),
            "a layer with a token store and a fetcher of its own needs \
             OAuthLayerBuilder::store_key: nothing else says which tokens it shares"
        );
        self.config.has_store = self.store.is_some();
        let fleet = self.store.take().map(|store| {
            Fleet::new(
                store,
                self.store_cipher.take(),
                self.config.store_timeout,
                self.config.store_wait,
                self.name.clone(),
            )
        });
        self.config.replay_limit = self.replay.then_some(self.replay_limit);
        let core = Arc::new(Core {
            config: self.config,
            fetcher: self.fetcher,
            classifier: self.classifier,
            replayers: self.replayers,
            explicit_scope: self.policy_set,
            name: self.name,
            host: self.host,
            fleet,
            store_identity: self.store_identity,
            tenant_identity: self.tenant_identity,
            #[cfg(feature = "jwt")]
            dpop: self.dpop,
        });
        let slots = self
            .policy
            .into_slots(core.clone(), self.scope_idle, self.tenant);
        OAuthLayer::new_parts(Arc::new(slots), core)
    }
}
