//! How long the cache waits: between fetch attempts, after giving up, and at most.
//!
//! Delays grow with each attempt and carry jitter, so that many layers failing at once
//! do not retry in step; a server's `Retry-After` is honoured up to a cap; and "forever"
//! settings are read as a century rather than overflowing the clock.

use std::time::Duration;

use tokio::time::Instant;

use crate::{config::Config, error::Error};

/// The longest span the cache reckons with: a hundred years.
pub(super) const CEILING: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// The shortest backoff delay, whatever the settings: a zero delay would retry a failing
/// endpoint in a tight loop (and, on a paused clock, never let time move on).
const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// Growing backoff with jitter: `initial * 2^(attempt-1)`, capped, then scaled by a
/// random factor in `[0.5, 1.0)`, and at least [`MIN_BACKOFF`] (the two settings count
/// as at least that too); at least what `Retry-After` asked for (itself capped).
pub(super) fn backoff(config: &Config, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exp = config
        .initial_backoff
        .max(MIN_BACKOFF)
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(config.max_backoff.max(MIN_BACKOFF));
    let jittered = exp.mul_f64(0.5 + fastrand::f64() * 0.5).max(MIN_BACKOFF);
    match retry_after {
        Some(after) => jittered.max(after.min(config.max_retry_after)),
        None => jittered,
    }
}

/// How long to wait after a failed fetch before the next: the backoff delay, and at least
/// `max_backoff` after a failure that retrying cannot mend.
pub(super) fn pause_after(config: &Config, err: &Error, delay: Duration) -> Duration {
    if err.is_retryable() {
        delay
    } else {
        delay.max(config.max_backoff)
    }
}

/// `at + d`, saturating at a hundred years ahead instead of overflowing, so that
/// "forever" settings (`Duration::MAX`) mean forever rather than a panic.
pub(super) fn later(at: Instant, d: Duration) -> Instant {
    at + d.min(CEILING)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let c = Config::default();
        for attempt in 1..20 {
            let d = backoff(&c, attempt, None);
            let full = c
                .initial_backoff
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(c.max_backoff);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert_eq!(
            backoff(&c, 1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            backoff(&c, 1, Some(Duration::from_secs(3600))),
            c.max_retry_after
        );
    }

    #[test]
    fn forever_is_a_century_and_anything_shorter_is_itself() {
        let now = Instant::now();
        let hour = Duration::from_secs(3600);
        assert_eq!(later(now, hour), now + hour);
        let century = later(now, Duration::MAX) - now;
        assert!(
            century >= Duration::from_secs(99 * 365 * 24 * 3600),
            "{century:?}"
        );
        assert_eq!(later(now, Duration::MAX), later(now, century * 2));
    }
}
