//! The builder's token timing settings: when a token counts as expired, and when it is
//! renewed.

use std::time::Duration;

use super::OAuthLayerBuilder;

impl OAuthLayerBuilder {
    /// How long before its expiry a token is renewed in the background, while requests
    /// keep using it. Never more than half the token's lifetime; never less than the
    /// [`expiry_margin`](Self::expiry_margin) (a shorter one renews when the token
    /// expires). Default: 60 s, for tokens of less than an hour.
    ///
    /// Once called, it applies to every lifetime and wins over
    /// [`renew_at_fraction`](Self::renew_at_fraction), whichever is called last. A
    /// `refresh_in` in the token response wins over both.
    pub fn renew_ahead(mut self, ahead: Duration) -> Self {
        self.config.renew_ahead = ahead;
        self.config.renew_ahead_set = true;
        self
    }

    /// Renews tokens once this fraction of their lifetime has passed, for every
    /// lifetime. Never after expiry. Default: one half for tokens of an hour or more (as
    /// MSAL), so a token outlives an outage of half its lifetime; shorter tokens renew
    /// [`renew_ahead`](Self::renew_ahead) before their end.
    ///
    /// [`renew_ahead`](Self::renew_ahead), when called, wins over this; a `refresh_in`
    /// in the token response wins over both.
    ///
    /// # Panics
    ///
    /// When `fraction` is not in `(0, 1]`.
    pub fn renew_at_fraction(mut self, fraction: f64) -> Self {
        assert!(
            fraction > 0.0 && fraction <= 1.0,
            "renew_at_fraction must be in (0, 1], got {fraction}"
        );
        self.config.renew_fraction = Some(fraction);
        self
    }

    /// Moves each renewal earlier by a random part of up to `fraction` of the time from
    /// the token's arrival to its renewal point, so that replicas started together do
    /// not renew together. `0.0` turns it off. Default: 0.1.
    ///
    /// # Panics
    ///
    /// When `fraction` is not in `[0, 1)`.
    pub fn renew_jitter(mut self, fraction: f64) -> Self {
        assert!(
            (0.0..1.0).contains(&fraction),
            "renew_jitter must be in [0, 1), got {fraction}"
        );
        self.config.renew_jitter = fraction;
        self
    }

    /// How long before the server's stated expiry a token stops being used, to allow for
    /// latency and clock drift. Never more than a tenth of the lifetime. Default: 5 s.
    pub fn expiry_margin(mut self, margin: Duration) -> Self {
        self.config.expiry_margin = margin;
        self
    }

    /// The lifetime assumed when a token response has no `expires_in` (or zero).
    /// Default: 300 s.
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.default_lifetime = lifetime.max(Duration::from_secs(1));
        self
    }

    /// The longest lifetime believed; larger `expires_in` values, and a longer
    /// [`default_lifetime`](Self::default_lifetime), are clamped to it. Default: 24 h.
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.max_lifetime = lifetime.max(Duration::from_secs(1));
        self
    }
}
