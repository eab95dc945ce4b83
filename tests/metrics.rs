//! What the `metrics` feature emits: fetches by reason and outcome, rejections,
//! replays and the expiry gauges, labelled with the layer's name.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use common::{get, Fetcher};
use http::{header::WWW_AUTHENTICATE, Request, Response, StatusCode};
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::{service_fn, Layer, ServiceExt};
use tower_oauth::{BoxError, OAuthLayer};

const HOUR: Duration = Duration::from_secs(3600);

/// What was emitted since the last snapshot: a snapshot takes counts, samples and
/// gauge values away (they read 0 in the next one).
struct Seen(Vec<(String, Labels, DebugValue)>);

/// A metric's labels as (key, value) pairs, sorted.
type Labels = Vec<(String, String)>;

impl Seen {
    fn of(snapshotter: &Snapshotter) -> Self {
        let all = snapshotter.snapshot().into_vec().into_iter();
        Self(
            all.map(|(key, _, _, value)| {
                let key = key.key();
                let mut labels: Vec<_> = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                labels.sort();
                (key.name().to_owned(), labels, value)
            })
            .collect(),
        )
    }

    /// The value of metric `name` whose labels are exactly `labels`, if emitted.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        let mut want: Vec<_> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        self.0
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map(|(_, _, v)| v)
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.value(name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            Some(other) => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.value(name, labels) {
            Some(DebugValue::Gauge(v)) => v.into_inner(),
            other => panic!("{name} is not a gauge: {other:?}"),
        }
    }
}

/// An API that rejects the first token once `revoked` is set, and accepts any other.
fn api(
    revoked: Arc<AtomicBool>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = BoxError,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    service_fn(move |req: Request<Full<Bytes>>| {
        let first = req.headers()["authorization"] == "Bearer tok-1";
        let reject = first && revoked.load(Ordering::SeqCst);
        async move {
            let mut res = Response::new(Full::default());
            if reject {
                *res.status_mut() = StatusCode::UNAUTHORIZED;
                res.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    r#"Bearer error="invalid_token""#.parse().unwrap(),
                );
            }
            Ok::<_, BoxError>(res)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn fetches_rejections_and_replays_are_counted_under_the_layers_name() {
    // Thread-local: the layer's tasks run on this current-thread runtime, so they see it.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let fetcher = Fetcher::tokens(HOUR, Duration::ZERO);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .name("simpledocs")
        .build();
    layer.handle().warm_up().await.unwrap();

    let fetches = "tower_oauth_token_fetches_total";
    let layer_label = ("layer", "simpledocs");
    let first = [layer_label, ("reason", "first"), ("outcome", "ok")];
    let rejected = [layer_label, ("reason", "rejected"), ("outcome", "ok")];
    let seen = Seen::of(&snapshotter);
    assert_eq!(seen.counter(fetches, &first), 1);
    assert_eq!(seen.counter(fetches, &rejected), 0);
    let durations = seen.value("tower_oauth_token_fetch_duration_seconds", &[layer_label]);
    assert!(
        matches!(durations, Some(DebugValue::Histogram(v)) if v.len() == 1),
        "{durations:?}"
    );
    let labels = [layer_label, ("scope", "")];
    let expiry = seen.gauge("tower_oauth_token_expiry_seconds", &labels);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // An hour's token, less the 5 s expiry margin; a minute's slack for a slow machine.
    assert!(
        (expiry - now - 3595.0).abs() < 60.0,
        "expiry {expiry}, now {now}"
    );
    let left = seen.gauge("tower_oauth_token_time_to_expiry_seconds", &labels);
    assert_eq!(left, 3595.0);

    let revoked = Arc::new(AtomicBool::new(true));
    let svc = layer.layer(api(revoked));
    let res = svc.oneshot(get("/docs")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "replayed with a new token");

    assert_eq!(fetcher.calls(), 2);
    let seen = Seen::of(&snapshotter);
    assert_eq!(seen.counter(fetches, &first), 0, "no first fetch since");
    assert_eq!(seen.counter(fetches, &rejected), 1);
    let one = [layer_label];
    assert_eq!(seen.counter("tower_oauth_rejections_total", &one), 1);
    assert_eq!(seen.counter("tower_oauth_replays_total", &one), 1);
}

#[tokio::test(start_paused = true)]
async fn the_time_to_expiry_gauge_follows_the_renewal_timer_and_expiry() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let local = metrics::set_default_local_recorder(&recorder);

    let fetcher = Fetcher::tokens(HOUR, Duration::ZERO);
    let layer = OAuthLayer::with_fetcher(fetcher.clone())
        .renew_jitter(0.0)
        .build();
    layer.handle().warm_up().await.unwrap();
    let labels = [("layer", ""), ("scope", "")];
    let name = "tower_oauth_token_time_to_expiry_seconds";
    assert_eq!(Seen::of(&snapshotter).gauge(name, &labels), 3595.0);
    // Renewal is due at half the lifetime; no request comes to start it.
    common::advance(HOUR / 2).await;
    assert_eq!(Seen::of(&snapshotter).gauge(name, &labels), 1795.0);
    // A recorder of its own for the expiry: one that saw nothing would not have the gauge.
    drop(local);
    let at_expiry = DebuggingRecorder::new();
    let snapshotter = at_expiry.snapshotter();
    let _local = metrics::set_default_local_recorder(&at_expiry);
    common::advance(HOUR / 2).await;
    assert_eq!(Seen::of(&snapshotter).gauge(name, &labels), 0.0, "expired");
    assert_eq!(fetcher.calls(), 1, "nothing asked for a new token");
}

#[test]
fn an_unnamed_layer_is_labelled_with_an_empty_name_and_no_token() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let fetcher = Fetcher::tokens(HOUR, Duration::ZERO);
            let layer = OAuthLayer::with_fetcher(fetcher).build();
            layer.handle().warm_up().await.unwrap();
        })
    });
    let seen = Seen::of(&snapshotter);
    let labels = [("layer", ""), ("reason", "first"), ("outcome", "ok")];
    assert_eq!(seen.counter("tower_oauth_token_fetches_total", &labels), 1);
    for (name, labels, _) in &seen.0 {
        for (_, value) in labels {
            assert!(!value.contains("tok-"), "a token in {name} {labels:?}");
        }
    }
}
