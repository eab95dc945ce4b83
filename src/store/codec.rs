//! What a layer writes to a store: a token as JSON, sealed when a key is given.
//!
//! The plain form is `{"v":1,"access_token":..,"token_type":..,"scope":..,"iat":..,"exp":..}`
//! with times in Unix milliseconds: the clocks of a fleet agree on wall time, not on
//! their monotonic clocks. The sealed form is `x1` followed by a random 24-byte nonce and
//! the XChaCha20-Poly1305 ciphertext of the plain form, with the store key as associated
//! data, so a value moved to another key does not open.
//!
//! A value read back is checked as a token response is: a clean token, a type the layer
//! knows, a lifetime that makes sense. Whatever is wrong, the reason names no part of
//! the value.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use bytes::Bytes;
use chacha20poly1305::{
    aead::{Aead, Generate, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::{
    error::{Error, ErrorKind},
    token::{Scope, Token},
};

/// The tag of a sealed value.
const SEALED: &[u8] = b"x1";
const NONCE_LEN: usize = 24;
/// The longest value read: a token response is bounded the same way.
const MAX_VALUE: usize = 64 * 1024;

/// A key that seals the tokens a layer keeps in its store (XChaCha20-Poly1305).
///
/// Give every process of a fleet the same key. A layer with a key reads only values
/// sealed with it; one without reads only plain values.
#[derive(Clone)]
pub struct StoreCipher {
    cipher: XChaCha20Poly1305,
}

impl StoreCipher {
    /// A cipher from 32 key bytes.
    pub fn new(key: [u8; 32]) -> Self {
        let key = Zeroizing::new(key);
        Self {
            cipher: XChaCha20Poly1305::new(&(*key).into()),
        }
    }

    /// A cipher from a key in standard or URL-safe base64 (32 bytes once decoded), as it
    /// would come from a secret manager or an environment variable.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when it is not base64 of 32 bytes; the error shows none of it.
    pub fn from_base64(key: &str) -> Result<Self, Error> {
        let key = key.trim();
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        let bytes = engines
            .iter()
            .find_map(|e| e.decode(key).ok())
            .map(Zeroizing::new)
            .ok_or_else(|| {
                Error::new(ErrorKind::Config).with_detail("the store key is not base64")
            })?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            Error::new(ErrorKind::Config).with_detail(&format!(
                "the store key is {} bytes; it must be 32",
                bytes.len()
            ))
        })?;
        Ok(Self::new(key))
    }
}

impl fmt::Debug for StoreCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreCipher(<redacted>)")
    }
}

/// A token as read back from a store.
pub(crate) struct Decoded {
    pub(crate) token: Token,
    pub(crate) issued_at: SystemTime,
    pub(crate) expires_at: SystemTime,
}

/// The stored form of `token`, issued at `issued_at`, under store key `key`.
pub(crate) fn encode(
    token: &Token,
    issued_at: SystemTime,
    expires_at: SystemTime,
    cipher: Option<&StoreCipher>,
    key: &str,
) -> Bytes {
    let plain = Zeroizing::new(
        json!({
            "v": 1,
            "access_token": token.access_token.secret(),
            "token_type": "Bearer",
            "scope": token.scope.as_ref().map(Scope::as_str),
            "iat": millis(issued_at),
            "exp": millis(expires_at),
        })
        .to_string(),
    );
    let Some(cipher) = cipher else {
        return Bytes::copy_from_slice(plain.as_bytes());
    };
    let nonce = XNonce::generate();
    let payload = Payload {
        msg: plain.as_bytes(),
        aad: key.as_bytes(),
    };
    let sealed = cipher
        .cipher
        .encrypt(&nonce, payload)
        .expect("sealing a value of a few hundred bytes cannot fail");
    let mut value = Vec::with_capacity(SEALED.len() + NONCE_LEN + sealed.len());
    value.extend_from_slice(SEALED);
    value.extend_from_slice(&nonce);
    value.extend_from_slice(&sealed);
    Bytes::from(value)
}

/// The token in a stored value, if it is one this layer can use; else why not.
pub(crate) fn decode(
    value: &[u8],
    cipher: Option<&StoreCipher>,
    key: &str,
) -> Result<Decoded, &'static str> {
    if value.len() > MAX_VALUE {
        return Err("the value is too large");
    }
    let plain = match (cipher, value.strip_prefix(SEALED)) {
        (Some(cipher), Some(sealed)) if sealed.len() > NONCE_LEN => {
            let (nonce, sealed) = sealed.split_at(NONCE_LEN);
            let nonce = XNonce::try_from(nonce).map_err(|_| "the nonce is malformed")?;
            let payload = Payload {
                msg: sealed,
                aad: key.as_bytes(),
            };
            Zeroizing::new(
                cipher
                    .cipher
                    .decrypt(&nonce, payload)
                    .map_err(|_| "the value does not open with the store key")?,
            )
        }
        (Some(_), _) => return Err("the value is not sealed, and a store key is set"),
        (None, Some(_)) => return Err("the value is sealed, and no store key is set"),
        (None, None) => Zeroizing::new(value.to_vec()),
    };
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&plain) else {
        return Err("the value is not a JSON object");
    };
    if map.get("v").and_then(Value::as_u64) != Some(1) {
        return Err("the value has an unknown version");
    }
    let access_token = match map.get("access_token") {
        Some(Value::String(t)) if !t.is_empty() => t,
        _ => return Err("the value has no access token"),
    };
    // The rule a token response's token meets (RFC 6750 §2.1 allows less).
    if !access_token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err("the value's access token is not a clean header value");
    }
    match map.get("token_type").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        _ => return Err("the value's token type is unknown"),
    }
    let scope = match map.get("scope") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Scope::new(s)),
        Some(_) => return Err("the value's scope is not a string"),
    };
    let time = |field| map.get(field).and_then(Value::as_u64).map(from_millis);
    let (Some(issued_at), Some(expires_at)) = (time("iat"), time("exp")) else {
        return Err("the value has no issue or expiry time");
    };
    let Ok(lifetime) = expires_at.duration_since(issued_at) else {
        return Err("the value expires before it was issued");
    };
    let mut token = Token::new(access_token.clone(), Some(lifetime));
    token.scope = scope;
    Ok(Decoded {
        token,
        issued_at,
        expires_at,
    })
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        Token::new("tok-0123456789", Some(Duration::from_secs(60))).with_scope("write read")
    }

    fn times() -> (SystemTime, SystemTime) {
        let iat = from_millis(1_700_000_000_000);
        (iat, iat + Duration::from_secs(60))
    }

    #[test]
    fn a_plain_value_reads_back_as_written() {
        let (iat, exp) = times();
        let value = encode(&token(), iat, exp, None, "k");
        let back = decode(&value, None, "k").unwrap();
        assert_eq!(back.token.access_token.secret(), "tok-0123456789");
        assert_eq!(back.token.scope, Some(Scope::new("read write")));
        assert_eq!((back.issued_at, back.expires_at), (iat, exp));
        assert_eq!(back.token.expires_in, Some(Duration::from_secs(60)));
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_under_its_store_key() {
        let (iat, exp) = times();
        let cipher = StoreCipher::new([7; 32]);
        let value = encode(&token(), iat, exp, Some(&cipher), "k");
        assert!(!value.windows(14).any(|w| w == b"tok-0123456789"));
        let back = decode(&value, Some(&cipher), "k").unwrap();
        assert_eq!(back.token.access_token.secret(), "tok-0123456789");
        assert!(decode(&value, Some(&cipher), "other").is_err(), "moved");
        assert!(decode(&value, Some(&StoreCipher::new([8; 32])), "k").is_err());
        assert!(decode(&value, None, "k").is_err());
        let plain = encode(&token(), iat, exp, None, "k");
        assert!(decode(&plain, Some(&cipher), "k").is_err(), "planted");
        let two = encode(&token(), iat, exp, Some(&cipher), "k");
        assert_ne!(value, two, "a fresh nonce each time");
    }

    #[test]
    fn garbage_is_refused_without_echoing_it() {
        for bad in [
            &b"not json tok-secret"[..],
            br#"{"v":2,"access_token":"tok-secret","token_type":"Bearer","iat":1,"exp":2}"#,
            br#"{"v":1,"access_token":"","token_type":"Bearer","iat":1,"exp":2}"#,
            br#"{"v":1,"access_token":"tok-secret\r\nX: 1","token_type":"Bearer","iat":1,"exp":2}"#,
            br#"{"v":1,"access_token":"tok-secret","token_type":"mac","iat":1,"exp":2}"#,
            br#"{"v":1,"access_token":"tok-secret","token_type":"Bearer","iat":5,"exp":2}"#,
            br#"{"v":1,"access_token":"tok-secret","token_type":"Bearer","scope":3,"iat":1,"exp":2}"#,
            br#"{"v":1,"access_token":"tok-secret","token_type":"Bearer"}"#,
            b"x1short",
        ] {
            let why = decode(bad, None, "k").err().expect("refused");
            assert!(!why.contains("tok-secret"));
        }
    }

    #[test]
    fn a_store_key_from_base64_must_be_32_bytes_and_is_never_shown() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([3u8; 32]);
        assert!(StoreCipher::from_base64(&b64).is_ok());
        let err = StoreCipher::from_base64("c2hvcnQ=").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(!err.to_string().contains("c2hvcnQ"));
        assert!(StoreCipher::from_base64("not base64!").is_err());
        assert_eq!(
            format!("{:?}", StoreCipher::new([1; 32])),
            "StoreCipher(<redacted>)"
        );
    }
}
