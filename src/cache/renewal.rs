//! When a token is renewed: a point in its lifetime, moved earlier by a random jitter.
//!
//! The point is, in order of precedence: the server's `refresh_in`; the end less
//! `renew_ahead`, when the builder set it; the builder's `renew_at_fraction` of the
//! lifetime; else half the lifetime for tokens of an hour or more, and the end less the
//! default `renew_ahead` for shorter ones. It is never after expiry. The jitter spreads
//! replicas started together, so that they do not all renew at one instant.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::Config;

/// Lifetimes from which the default renewal point is half the lifetime, as MSAL does:
/// an hour's token survives a half-hour outage of its token endpoint.
const LONG_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// When a token that lasts `lifetime` from `requested_at`, and expires (by the layer's
/// reckoning) at `expires_at`, is due for renewal; `now` is when it is installed.
pub(super) fn renew_at(
    config: &Config,
    requested_at: Instant,
    lifetime: Duration,
    expires_at: Instant,
    refresh_in: Option<Duration>,
    now: Instant,
) -> Instant {
    let ahead = |ahead: Duration| requested_at + lifetime - ahead.min(lifetime / 2);
    let nominal = match (refresh_in, config.renew_fraction) {
        (Some(refresh_in), _) => requested_at + refresh_in.min(lifetime),
        _ if config.renew_ahead_set => ahead(config.renew_ahead),
        (None, Some(fraction)) => requested_at + lifetime.mul_f64(fraction),
        (None, None) if lifetime >= LONG_LIFETIME => requested_at + lifetime / 2,
        (None, None) => ahead(config.renew_ahead),
    }
    .min(expires_at);
    jittered(nominal, now, config.renew_jitter)
}

/// `nominal` moved earlier by up to `fraction` of the time from `now` to it.
fn jittered(nominal: Instant, now: Instant, fraction: f64) -> Instant {
    if fraction <= 0.0 || nominal <= now {
        return nominal;
    }
    nominal - (nominal - now).mul_f64(fraction * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(config: &Config, lifetime: Duration, refresh_in: Option<Duration>) -> Duration {
        let start = Instant::now();
        let expires_at = start + lifetime - config.expiry_margin.min(lifetime / 10);
        renew_at(config, start, lifetime, expires_at, refresh_in, start) - start
    }

    fn steady() -> Config {
        Config {
            renew_jitter: 0.0,
            ..Config::default()
        }
    }

    #[test]
    fn long_tokens_renew_at_half_and_short_ones_ahead_of_their_end() {
        let config = steady();
        assert_eq!(at(&config, 2 * HOUR, None), HOUR);
        assert_eq!(at(&config, HOUR, None), HOUR / 2);
        let five_minutes = Duration::from_secs(300);
        assert_eq!(at(&config, five_minutes, None), Duration::from_secs(240));
        assert_eq!(
            at(&config, Duration::from_secs(60), None),
            Duration::from_secs(30),
            "never more than half the lifetime ahead"
        );
    }

    #[test]
    fn renew_ahead_wins_over_the_fraction_and_refresh_in_over_both() {
        let config = Config {
            renew_fraction: Some(0.8),
            ..steady()
        };
        assert_eq!(at(&config, 2 * HOUR, None), 2 * HOUR.mul_f64(0.8));
        let config = Config {
            renew_ahead: Duration::from_secs(600),
            renew_ahead_set: true,
            ..config
        };
        assert_eq!(
            at(&config, 2 * HOUR, None),
            2 * HOUR - Duration::from_secs(600)
        );
        let refresh_in = Some(Duration::from_secs(100));
        assert_eq!(at(&config, 2 * HOUR, refresh_in), Duration::from_secs(100));
    }

    #[test]
    fn renewal_is_never_after_expiry() {
        let config = Config {
            renew_fraction: Some(1.0),
            ..steady()
        };
        assert_eq!(at(&config, HOUR, None), HOUR - Duration::from_secs(5));
        let late = Some(3 * HOUR);
        assert_eq!(at(&steady(), HOUR, late), HOUR - Duration::from_secs(5));
    }

    #[test]
    fn jitter_moves_renewal_earlier_by_at_most_its_fraction() {
        let config = Config::default();
        let (mut earliest, mut latest) = (2 * HOUR, Duration::ZERO);
        for _ in 0..200 {
            let when = at(&config, 2 * HOUR, None);
            earliest = earliest.min(when);
            latest = latest.max(when);
        }
        assert!(earliest >= HOUR.mul_f64(0.9), "{earliest:?}");
        assert!(latest <= HOUR, "{latest:?}");
        assert!(
            latest - earliest > HOUR / 20,
            "spread: {earliest:?}..{latest:?}"
        );
    }
}
