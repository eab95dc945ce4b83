//! HTTP Basic client authentication (RFC 6749 §2.3.1).

use base64::Engine as _;
use http::HeaderValue;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use zeroize::Zeroizing;

/// Characters escaped in Basic credentials: everything but RFC 3986 unreserved ones.
pub(super) const BASIC_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `Basic <base64(id:secret)>`, each part percent-encoded first, marked sensitive.
pub(super) fn authorization(client_id: &str, secret: &str) -> HeaderValue {
    let user_pass = Zeroizing::new(format!(
        "{}:{}",
        utf8_percent_encode(client_id, BASIC_ESCAPE),
        utf8_percent_encode(secret, BASIC_ESCAPE)
    ));
    let encoded =
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(user_pass.as_bytes()));
    let mut value = HeaderValue::try_from(format!("Basic {}", encoded.as_str()))
        .expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}
