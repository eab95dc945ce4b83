//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! With the feature on, the layer emits these to whatever recorder the application
//! installed (a Prometheus exporter, say); without it, nothing is compiled in.
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `tower_oauth_token_fetches_total` | counter | `layer`, `reason`, `outcome` | token requests: `reason` as in [`FetchReason`], `outcome` `ok` or `error` |
//! | `tower_oauth_token_fetch_duration_seconds` | histogram | `layer` | how long each token request took |
//! | `tower_oauth_replays_total` | counter | `layer` | requests replayed with a new token |
//! | `tower_oauth_rejections_total` | counter | `layer` | tokens the API rejected |
//! | `tower_oauth_store_requests_total` | counter | `layer`, `result` | token store lookups: `hit`, `miss`, `error`, `wait` |
//! | `tower_oauth_token_expiry_seconds` | gauge | `layer`, `scope` | the current token's expiry, as a unix timestamp |
//! | `tower_oauth_token_time_to_expiry_seconds` | gauge | `layer`, `scope` | its time to expiry: set on install and when renewal falls due; 0 once expired |
//!
//! `layer` is the layer's [name](crate::OAuthLayerBuilder::name), `""` when unnamed;
//! `scope` is the token's scope set, `""` for none. No token or secret is ever a label.
//! The expiry gauge follows the Prometheus convention: alert on
//! `tower_oauth_token_expiry_seconds - time() < 300`.
//!
//! ```
//! # use std::time::Duration;
//! # use tower_oauth::{BoxError, OAuthLayer, Token, TokenRequest};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let fetcher = tower::service_fn(|_: TokenRequest| async {
//! #     Ok::<_, BoxError>(Token::new("tok", Some(Duration::from_secs(3600))))
//! # });
//! // With a recorder installed, this emits one fetch, labelled `layer="simpledocs"`.
//! let layer = OAuthLayer::with_fetcher(fetcher).name("simpledocs").build();
//! layer.handle().warm_up().await.unwrap();
//! # }
//! ```
//!
//! [`FetchReason`]: crate::FetchReason

use std::{sync::Arc, time::Duration};

#[cfg(feature = "metrics")]
use ::metrics::{counter, gauge, histogram};

use crate::token::{FetchReason, Scope};

/// What a token store lookup came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreEvent {
    /// The store had a usable token.
    Hit,
    /// It had none.
    Miss,
    /// It failed.
    Error,
    /// Another replica held the lease: waited for its token.
    Wait,
}

impl StoreEvent {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Error => "error",
            Self::Wait => "wait",
        }
    }
}

#[cfg(feature = "metrics")]
fn name(layer: Option<&str>) -> String {
    layer.unwrap_or("").to_owned()
}

/// A token request ended with `outcome` (`ok` or `error`) after `elapsed`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn fetch(
    layer: Option<&str>,
    reason: FetchReason,
    outcome: &'static str,
    elapsed: Duration,
) {
    #[cfg(feature = "metrics")]
    {
        counter!(
            "tower_oauth_token_fetches_total",
            "layer" => name(layer),
            "reason" => reason.as_str(),
            "outcome" => outcome
        )
        .increment(1);
        histogram!("tower_oauth_token_fetch_duration_seconds", "layer" => name(layer))
            .record(elapsed.as_secs_f64());
    }
}

/// A rejected request is replayed with a new token.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn replay(layer: Option<&str>) {
    #[cfg(feature = "metrics")]
    counter!("tower_oauth_replays_total", "layer" => name(layer)).increment(1);
}

/// The API rejected a token.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn rejection(layer: Option<&str>) {
    #[cfg(feature = "metrics")]
    counter!("tower_oauth_rejections_total", "layer" => name(layer)).increment(1);
}

/// A token store lookup came to `event`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn store(layer: Option<&str>, event: StoreEvent) {
    #[cfg(feature = "metrics")]
    counter!(
        "tower_oauth_store_requests_total",
        "layer" => name(layer),
        "result" => event.as_str()
    )
    .increment(1);
}

/// The labels of one slot's expiry gauges; empty without the feature.
#[derive(Debug, Clone, Default)]
pub(crate) struct Labels {
    #[cfg(feature = "metrics")]
    layer: Option<Arc<str>>,
    #[cfg(feature = "metrics")]
    scope: Option<Scope>,
}

impl Labels {
    /// The labels of a slot of layer `layer` for `scope`.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(layer: Option<&Arc<str>>, scope: Option<&Scope>) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            layer: layer.cloned(),
            #[cfg(feature = "metrics")]
            scope: scope.cloned(),
        }
    }

    /// A token that expires in `time_to_expiry` was installed.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn token_installed(&self, time_to_expiry: Duration) {
        #[cfg(feature = "metrics")]
        {
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .saturating_add(time_to_expiry);
            let (layer, scope) = self.values();
            gauge!("tower_oauth_token_expiry_seconds", "layer" => layer, "scope" => scope)
                .set(unix.as_secs_f64());
        }
        self.time_to_expiry(time_to_expiry);
    }

    /// The current token expires in `left` (zero: it expired).
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn time_to_expiry(&self, left: Duration) {
        #[cfg(feature = "metrics")]
        {
            let (layer, scope) = self.values();
            gauge!(
                "tower_oauth_token_time_to_expiry_seconds",
                "layer" => layer,
                "scope" => scope
            )
            .set(left.as_secs_f64());
        }
    }

    #[cfg(feature = "metrics")]
    fn values(&self) -> (String, String) {
        (
            name(self.layer.as_deref()),
            self.scope.as_ref().map_or("", Scope::as_str).to_owned(),
        )
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    #[test]
    fn store_lookups_are_counted_by_layer_and_result() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, || {
            store(Some("simpledocs"), StoreEvent::Hit);
            store(Some("simpledocs"), StoreEvent::Hit);
            store(None, StoreEvent::Wait);
        });
        let mut seen: Vec<_> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                assert_eq!(key.name(), "tower_oauth_store_requests_total");
                let labels: Vec<_> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                (labels.join(","), value)
            })
            .collect();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            seen,
            [
                ("layer=,result=wait".to_owned(), DebugValue::Counter(1)),
                (
                    "layer=simpledocs,result=hit".to_owned(),
                    DebugValue::Counter(2)
                ),
            ]
        );
    }
}
