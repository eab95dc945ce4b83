//! The `WWW-Authenticate` challenge parser (RFC 9110 §11.6.1).
//!
//! A header value may hold several challenges, each a scheme followed by a token68 or by
//! comma-separated parameters whose values may be quoted. The parser works on bytes, so
//! obs-text in a quoted string never hides the parameters beside it, and it never fails:
//! on malformed input it keeps what it could read up to the fault.

use std::borrow::Cow;

/// One authentication challenge of a `WWW-Authenticate` header (RFC 9110 §11.6.1).
///
/// [`parse_challenges`](super::parse_challenges) makes them; more fields may come
/// (non-exhaustive).
///
/// ```
/// use tower_oauth::classify::parse_challenges;
///
/// let challenges = parse_challenges(r#"Bearer realm="api", error="invalid_token""#);
/// assert_eq!(challenges[0].scheme, "Bearer");
/// assert_eq!(challenges[0].param("ERROR"), Some("invalid_token"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Challenge {
    /// The auth scheme, as sent (compare case-insensitively).
    pub scheme: String,
    /// A token68 credential, if the challenge carries one instead of parameters.
    pub token68: Option<String>,
    /// The auth parameters, names lowercased, quoted values unescaped.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of the parameter `name` (case-insensitive), if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the challenges of one `WWW-Authenticate` header value.
///
/// Several challenges may share a value (`Basic realm="a", Bearer error="invalid_token"`);
/// quoted strings may contain commas, `=` and escaped quotes. Parsing never fails: on
/// malformed input it returns the challenges it could read up to that point.
pub fn parse_challenges(value: &str) -> Vec<Challenge> {
    // Schemes, names and unquoted values are ASCII; a quoted value is the input's UTF-8
    // with ASCII backslashes removed, still UTF-8. Lossy only to never fail.
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    read_challenges(value.as_bytes())
        .into_iter()
        .map(|c| Challenge {
            scheme: text(c.scheme),
            token68: c.token68.map(text),
            params: c
                .params
                .into_iter()
                .map(|(k, v)| (text(k).to_ascii_lowercase(), text(&v)))
                .collect(),
        })
        .collect()
}

/// A challenge as read from the bytes of a header value.
pub(super) struct RawChallenge<'a> {
    /// The auth scheme, as sent.
    pub(super) scheme: &'a [u8],
    token68: Option<&'a [u8]>,
    /// Names as sent; quoted values unescaped (borrowed when they held no escape).
    params: Vec<(&'a [u8], Cow<'a, [u8]>)>,
}

impl RawChallenge<'_> {
    /// The value of the parameter `name` (case-insensitive), if present.
    pub(super) fn param(&self, name: &[u8]) -> Option<&[u8]> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

/// Reads the challenges of one header value, up to the first fault.
pub(super) fn read_challenges(value: &[u8]) -> Vec<RawChallenge<'_>> {
    let mut p = Parser { s: value, i: 0 };
    let mut out = Vec::new();
    loop {
        p.skip_list_separators();
        if p.at_end() {
            break;
        }
        let Some(scheme) = p.token() else { break };
        let mut challenge = RawChallenge {
            scheme,
            token68: None,
            params: Vec::new(),
        };
        let had_space = p.skip_ws();
        if had_space && !p.at_end() && p.peek() != Some(b',') {
            // Either token68 or the first auth-param.
            let save = p.i;
            if let Some(t68) = p.token68() {
                p.skip_ws();
                if p.at_end() || p.peek() == Some(b',') {
                    challenge.token68 = Some(t68);
                    out.push(challenge);
                    continue;
                }
            }
            p.i = save;
            match p.auth_param() {
                Some(param) => challenge.params.push(param),
                None => {
                    out.push(challenge);
                    break;
                }
            }
            // Further params follow a comma; a token without `=` starts a new challenge.
            loop {
                let save = p.i;
                p.skip_ws();
                if p.peek() != Some(b',') {
                    p.i = save;
                    break;
                }
                p.skip_list_separators();
                let before = p.i;
                match p.auth_param() {
                    Some(param) => challenge.params.push(param),
                    None => {
                        p.i = before;
                        break;
                    }
                }
            }
        }
        out.push(challenge);
    }
    out
}

/// A cursor over the bytes of a header value.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl<'a> Parser<'a> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) -> bool {
        let start = self.i;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        self.i > start
    }

    fn skip_list_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| &self.s[start..self.i])
    }

    fn token68(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        {
            self.i += 1;
        }
        if self.i == start {
            return None;
        }
        while self.peek() == Some(b'=') {
            self.i += 1;
        }
        Some(&self.s[start..self.i])
    }

    fn auth_param(&mut self) -> Option<(&'a [u8], Cow<'a, [u8]>)> {
        let name = self.token()?;
        self.skip_ws();
        if self.peek() != Some(b'=') {
            return None;
        }
        self.i += 1;
        self.skip_ws();
        let value = if self.peek() == Some(b'"') {
            self.quoted()?
        } else {
            Cow::Borrowed(self.token()?)
        };
        Some((name, value))
    }

    /// A quoted string, unescaped; its bytes are taken as they are, whatever they encode.
    fn quoted(&mut self) -> Option<Cow<'a, [u8]>> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.i += 1;
        let start = self.i;
        let mut unescaped: Option<Vec<u8>> = None;
        loop {
            match self.peek()? {
                b'"' => {
                    let raw = &self.s[start..self.i];
                    self.i += 1;
                    return Some(unescaped.map_or(Cow::Borrowed(raw), Cow::Owned));
                }
                b'\\' => {
                    let out = unescaped.get_or_insert_with(|| self.s[start..self.i].to_vec());
                    self.i += 1;
                    out.push(self.peek()?);
                    self.i += 1;
                }
                b => {
                    if let Some(out) = &mut unescaped {
                        out.push(b);
                    }
                    self.i += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parser_reads_params_token68_and_escapes() {
        let c = parse_challenges(
            r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "Newauth");
        assert_eq!(c[0].param("title"), Some(r#"Login to "apps""#));
        assert_eq!(c[0].param("TYPE"), Some("1"));
        assert_eq!(c[1].param("realm"), Some("simple"));
        let c = parse_challenges("Negotiate abc123==, Bearer");
        assert_eq!(c[0].token68.as_deref(), Some("abc123=="));
        assert_eq!(c[1].scheme, "Bearer");
        assert!(parse_challenges("").is_empty());
        assert!(parse_challenges(r#"Bearer error="unterminated"#)
            .iter()
            .all(|c| c.param("error").is_none()));
    }

    #[test]
    fn a_token68_is_read_at_the_end_of_a_value() {
        let c = parse_challenges("Negotiate abc123==");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].token68.as_deref(), Some("abc123=="));
        assert!(c[0].params.is_empty());
    }

    #[test]
    fn a_malformed_challenge_is_read_only_up_to_the_fault() {
        // A parameter with nothing after `=` is not a parameter with an empty value.
        let c = parse_challenges(r#"Bearer realm="api", error="#);
        assert_eq!(c[0].param("realm"), Some("api"));
        assert!(c.iter().all(|c| c.param("error").is_none()), "{c:?}");
        // A token68 or a parameter must be separated from the scheme by a space.
        let c = parse_challenges("Bearer/abc");
        assert_eq!(
            c,
            vec![Challenge {
                scheme: "Bearer".into(),
                token68: None,
                params: Vec::new(),
            }]
        );
    }
}
