//! When tokens are renewed: half the lifetime for long tokens, `refresh_in`, the
//! builder's settings and their precedence, and jitter across replicas.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{advance, get, Echo};
use tokio::time::Instant;
use tower::{service_fn, Layer, ServiceExt};
use tower_oauth::{BoxError, OAuthLayer, OAuthLayerBuilder, Token, TokenRequest};

const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// A token endpoint that answers at once with tokens of `lifetime` (and `refresh_in`,
/// when set), and keeps when each request came.
#[derive(Clone)]
struct Issuer {
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Issuer {
    fn builder(lifetime: Duration, refresh_in: Option<Duration>) -> (Self, OAuthLayerBuilder) {
        let issuer = Issuer {
            calls: Arc::default(),
        };
        let calls = issuer.calls.clone();
        let fetcher = service_fn(move |_: TokenRequest| {
            let n = {
                let mut calls = calls.lock().unwrap();
                calls.push(Instant::now());
                calls.len()
            };
            let token = Token::new(format!("tok-{n}"), Some(lifetime));
            let token = match refresh_in {
                Some(r) => token.with_refresh_in(r),
                None => token,
            };
            async move { Ok::<_, BoxError>(token) }
        });
        (issuer, OAuthLayer::with_fetcher(fetcher))
    }

    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

/// Warms every layer up now, then steps the clock by `step` until `until`, sending a
/// request through each layer per step (a request is what starts a due renewal).
/// Returns when each layer's second fetch came, counted from the start.
async fn renewals(
    layers: &[(Issuer, OAuthLayer)],
    step: Duration,
    until: Duration,
) -> Vec<Duration> {
    let start = Instant::now();
    for (_, layer) in layers {
        layer.handle().warm_up().await.unwrap();
    }
    assert!(layers.iter().all(|(issuer, _)| issuer.calls() == 1));
    while start.elapsed() < until {
        advance(step).await;
        for (_, layer) in layers {
            let res = layer
                .layer(Echo::default())
                .oneshot(get("/"))
                .await
                .unwrap();
            assert!(res.status().is_success());
        }
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        if layers.iter().all(|(issuer, _)| issuer.calls() >= 2) {
            break;
        }
    }
    layers
        .iter()
        .map(|(issuer, _)| {
            let calls = issuer.calls.lock().unwrap();
            assert_eq!(calls.len(), 2, "one renewal by {until:?}");
            calls[1] - start
        })
        .collect()
}

async fn renewal_of(
    builder: OAuthLayerBuilder,
    issuer: Issuer,
    step: Duration,
    until: Duration,
) -> Duration {
    renewals(&[(issuer, builder.build())], step, until).await[0]
}

#[tokio::test(start_paused = true)]
async fn a_two_hour_token_renews_near_half_its_lifetime() {
    let (issuer, builder) = Issuer::builder(2 * HOUR, None);
    let at = renewal_of(builder, issuer, 10 * SEC, 2 * HOUR).await;
    assert!(at >= HOUR.mul_f64(0.9) && at <= HOUR, "renewed at {at:?}");
}

#[tokio::test(start_paused = true)]
async fn a_five_minute_token_renews_a_minute_ahead_of_its_end() {
    let (issuer, builder) = Issuer::builder(5 * MIN, None);
    let at = renewal_of(builder.renew_jitter(0.0), issuer, SEC, 5 * MIN).await;
    assert_eq!(at, 4 * MIN);
    let (issuer, builder) = Issuer::builder(5 * MIN, None);
    let at = renewal_of(builder, issuer, SEC, 5 * MIN).await;
    assert!(
        at >= (4 * MIN).mul_f64(0.9) && at <= 4 * MIN,
        "jittered: {at:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_servers_refresh_in_is_honoured_but_never_past_expiry() {
    let (issuer, builder) = Issuer::builder(2 * HOUR, Some(10 * MIN));
    let at = renewal_of(builder.renew_jitter(0.0), issuer, SEC, 2 * HOUR).await;
    assert_eq!(at, 10 * MIN);
    let (issuer, builder) = Issuer::builder(HOUR, Some(3 * HOUR));
    let at = renewal_of(builder.renew_jitter(0.0), issuer, SEC, 2 * HOUR).await;
    assert_eq!(
        at,
        HOUR - 5 * SEC,
        "at expiry (less the 5 s margin), not after"
    );
}

#[tokio::test(start_paused = true)]
async fn renew_ahead_wins_over_the_fraction_and_the_fraction_over_the_default() {
    let (issuer, builder) = Issuer::builder(2 * HOUR, None);
    let builder = builder.renew_at_fraction(0.75).renew_jitter(0.0);
    assert_eq!(
        renewal_of(builder, issuer, 10 * SEC, 2 * HOUR).await,
        90 * MIN
    );
    let (issuer, builder) = Issuer::builder(2 * HOUR, None);
    let builder = builder
        .renew_at_fraction(0.75)
        .renew_ahead(10 * MIN)
        .renew_jitter(0.0);
    assert_eq!(
        renewal_of(builder, issuer, 10 * SEC, 2 * HOUR).await,
        110 * MIN
    );
    let (issuer, builder) = Issuer::builder(2 * HOUR, None);
    let builder = builder
        .renew_ahead(10 * MIN)
        .renew_at_fraction(0.75)
        .renew_jitter(0.0);
    assert_eq!(
        renewal_of(builder, issuer, 10 * SEC, 2 * HOUR).await,
        110 * MIN,
        "in either order"
    );
}

fn replicas(jitter: Option<f64>) -> Vec<(Issuer, OAuthLayer)> {
    (0..100)
        .map(|_| {
            let (issuer, builder) = Issuer::builder(5 * MIN, None);
            let builder = match jitter {
                Some(j) => builder.renew_jitter(j),
                None => builder,
            };
            (issuer, builder.build())
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn replicas_started_together_spread_their_renewals_over_the_jitter_window() {
    let mut at = renewals(&replicas(None), SEC, 5 * MIN).await;
    at.sort();
    at.dedup();
    let (first, last) = (at[0], at[at.len() - 1]);
    assert!(
        first >= (4 * MIN).mul_f64(0.9) && last <= 4 * MIN,
        "{first:?}..{last:?}"
    );
    assert!(last - first >= 10 * SEC, "spread over {first:?}..{last:?}");
    assert!(at.len() >= 10, "{} distinct instants", at.len());
}

#[tokio::test(start_paused = true)]
async fn without_jitter_replicas_started_together_renew_at_one_instant() {
    let mut at = renewals(&replicas(Some(0.0)), SEC, 5 * MIN).await;
    at.dedup();
    assert_eq!(at, [4 * MIN]);
}

#[test]
#[should_panic(expected = "renew_at_fraction must be in (0, 1]")]
fn a_fraction_past_one_is_refused() {
    let (_, builder) = Issuer::builder(HOUR, None);
    let _ = builder.renew_at_fraction(1.5);
}
