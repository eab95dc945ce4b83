//! The builder's DPoP setting (see [`jose::Dpop`](crate::jose::Dpop)).

use super::OAuthLayerBuilder;
use crate::jose::Dpop;

impl OAuthLayerBuilder {
    /// Binds the layer's tokens to `dpop`'s key (RFC 9449). Default: none, Bearer tokens.
    ///
    /// Token requests carry a DPoP proof, and the built-in fetcher meets the token
    /// endpoint's `use_dpop_nonce` by retrying once with the nonce. When the server
    /// answers with a `DPoP` token, every API request carries `Authorization: DPoP
    /// <token>` and a fresh proof of its own (method, URI without query, `ath` of the
    /// token). A `401` with a `DPoP` challenge `error="use_dpop_nonce"` is replayed once
    /// with the server's nonce, within the [replay rules](crate::OAuth#replay).
    ///
    /// Proofs name the request's scheme and host: the inner service must be given
    /// absolute URIs (as hyper-util's client and reqwest are), or requests fail with
    /// [`ErrorKind::Config`](crate::ErrorKind::Config). A proof is a signature per
    /// request: about 14 µs with EdDSA, 22 µs with ES256 and over 500 µs with RSA keys
    /// (BENCHMARKS.md). With a [store](Self::store), only layers with the same key share
    /// tokens: the key's thumbprint is part of the store key.
    ///
    /// ```
    /// use tower_oauth::{jose::Dpop, OAuthLayer, Token, TokenRequest};
    ///
    /// # fn main() -> Result<(), tower_oauth::Error> {
    /// let fetcher = tower::service_fn(|_: TokenRequest| async {
    ///     Ok::<_, tower_oauth::BoxError>(Token::new("tok", None))
    /// });
    /// let layer = OAuthLayer::with_fetcher(fetcher).dpop(Dpop::generate()?).build();
    /// # let _ = layer;
    /// # Ok(())
    /// # }
    /// ```
    pub fn dpop(mut self, dpop: Dpop) -> Self {
        self.dpop = Some(dpop);
        self
    }
}
