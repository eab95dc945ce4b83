//! Redaction: the one set of rules by which text from elsewhere (a token endpoint's
//! error document, a client's error, an API's answer) is cleaned before it is shown, and
//! the one form in which a URL is shown.
//!
//! A [`Redactor`] knows the secrets (a client secret, tokens) and cleans text in three
//! steps:
//!
//! 1. each secret, and each form in which it was sent (form-encoded, percent-encoded,
//!    inside a `Basic` value), is replaced where it stands by `<redacted>`;
//! 2. control characters, bidirectional controls and invisible characters are dropped,
//!    and the text is cut to 200 characters;
//! 3. what is left is decoded every way a server commonly encodes text: percent and
//!    form encoding (either case), JSON `\u` escapes, HTML character references, and
//!    base64 or base64url at each of the four alignments, one within another up to
//!    three deep. If any decoding holds 8 characters in a row of a secret (all of a
//!    secret of 4 to 7 characters), the text is left out whole: [`REDACTED`].
//!
//! A secret under 4 characters is not looked for: it would match ordinary words.
//!
//! ```
//! use tower_oauth::redact::{Redactor, REDACTED};
//!
//! let redactor = Redactor::new().with_secret("Ech0ed-S3cret/with+more!");
//! // The secret whole is replaced where it stands.
//! assert_eq!(
//!     redactor.clean("bad secret Ech0ed-S3cret/with+more!"),
//!     "bad secret <redacted>"
//! );
//! // A part of it, or an encoding, takes the text out.
//! assert_eq!(redactor.clean("bad secret Ech0ed-S3cret/with+m"), REDACTED);
//! assert_eq!(redactor.clean("got RWNoMGVkLVMzY3JldA=="), REDACTED);
//! // Control characters never pass.
//! assert_eq!(redactor.clean("all good\r\n\u{1b}[2K"), "all good[2K");
//! ```

mod decode;

use std::{collections::HashSet, fmt};

use http::Uri;
use zeroize::Zeroizing;

use self::decode::decode_once;

/// What [`Redactor::clean`] shows in place of a text that held a secret.
pub const REDACTED: &str = "<redacted: it held a secret>";

/// What replaces a secret where it stands.
const MARK: &str = "<redacted>";

/// How many characters of a secret in a row count as showing it.
const RUN: usize = 8;

/// The shortest secret looked for.
const SHORTEST: usize = 4;

/// The longest text shown, in characters; the rest is cut.
pub(crate) const MAX_TEXT: usize = 200;

/// How many decodings of one text are looked at, at most: a bound on the work a
/// hostile text can cause.
const MAX_FORMS: usize = 256;

/// How many decodings deep (a percent-encoding inside base64 inside HTML is three).
const DEPTH: usize = 3;

/// Cleans text by the rules of this module (see there).
///
/// Cloned cheaply enough for an error path; wipes what it holds on drop.
#[derive(Clone, Default)]
pub struct Redactor {
    /// The secrets, without the characters text is shown without.
    secrets: Vec<Zeroizing<String>>,
    /// What is replaced where it stands: the secrets and the forms they were sent in,
    /// longest first.
    forms: Vec<Zeroizing<String>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// A redactor that knows no secret yet: it only strips control characters and cuts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a secret (a client secret, a token) to look for.
    pub fn with_secret(mut self, secret: &str) -> Self {
        self.add_secret(secret);
        self
    }

    /// Adds a secret (a client secret, a token) to look for; one known already, or
    /// under 4 characters, changes nothing.
    pub fn add_secret(&mut self, secret: &str) {
        let shown = Zeroizing::new(shown_text(secret));
        if shown.chars().count() < SHORTEST || self.secrets.contains(&shown) {
            return;
        }
        self.secrets.push(shown);
        self.add_form(secret);
        self.add_form(&shown_text(secret));
    }

    /// Adds a form in which a secret was sent (its encoding in a form body, a `Basic`
    /// value), replaced where it stands.
    pub(crate) fn add_form(&mut self, form: &str) {
        if form.chars().count() < SHORTEST || self.forms.iter().any(|f| f.as_str() == form) {
            return;
        }
        self.forms.push(Zeroizing::new(form.to_owned()));
        // Longest first, so that a form containing another is replaced whole.
        self.forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    }

    /// `text` as it may be shown: each secret replaced where it stands, control and
    /// invisible characters dropped, cut to 200 characters; or [`REDACTED`], if what is
    /// left still holds a part of a secret or an encoding of one.
    pub fn clean(&self, text: &str) -> String {
        self.cleaned(text).unwrap_or_else(|| REDACTED.to_owned())
    }

    /// [`clean`](Self::clean), or `None` for a text left out.
    pub(crate) fn cleaned(&self, text: &str) -> Option<String> {
        // Replaced as it is shown: a secret split by characters that are left out must
        // not come back whole.
        let mut text = Zeroizing::new(shown_text(text));
        for form in &self.forms {
            if text.contains(form.as_str()) {
                *text = text.replace(form.as_str(), MARK);
            }
        }
        let shown = sanitize(&text);
        (!self.holds_secret(&shown)).then_some(shown)
    }

    /// Whether `text`, read as it is or decoded any way this module knows, holds 8
    /// characters in a row of a secret (all of a shorter one).
    pub fn holds_secret(&self, text: &str) -> bool {
        if self.secrets.is_empty() {
            return false;
        }
        let runs = self.runs();
        let lengths: HashSet<usize> = runs.iter().map(|r| r.chars().count()).collect();
        decodings(text)
            .iter()
            .any(|form| lengths.iter().any(|&len| holds_run(form, len, &runs)))
    }

    /// Every run of [`RUN`] characters of each secret, or all of a shorter one.
    fn runs(&self) -> HashSet<&str> {
        let mut runs = HashSet::new();
        for secret in &self.secrets {
            let bounds: Vec<usize> = secret
                .char_indices()
                .map(|(i, _)| i)
                .chain([secret.len()])
                .collect();
            if bounds.len() <= RUN {
                runs.insert(secret.as_str());
                continue;
            }
            for w in bounds.windows(RUN + 1) {
                runs.insert(&secret[w[0]..w[RUN]]);
            }
        }
        runs
    }
}

/// Whether any run of `len` characters of `text` is one of `runs`.
fn holds_run(text: &str, len: usize, runs: &HashSet<&str>) -> bool {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    bounds
        .windows(len + 1)
        .any(|w| runs.contains(&text[w[0]..w[len]]))
}

/// `text` and its decodings, each without the characters text is shown without.
fn decodings(text: &str) -> Vec<Zeroizing<String>> {
    let mut forms = vec![Zeroizing::new(shown_text(text))];
    let mut fresh = 0..1;
    for _ in 0..DEPTH {
        let start = forms.len();
        for i in fresh {
            for decoded in decode_once(&forms[i]) {
                let decoded = Zeroizing::new(shown_text(&decoded));
                if forms.len() < MAX_FORMS && !forms.contains(&decoded) {
                    forms.push(decoded);
                }
            }
        }
        fresh = start..forms.len();
    }
    forms
}

/// Keeps text printable and short, so that text from elsewhere cannot put control
/// characters or megabytes into logs or a terminal: the characters [`shown`] keeps,
/// cut to 200.
pub(crate) fn sanitize(text: &str) -> String {
    let mut kept = text.chars().filter(|&c| shown(c));
    let mut out: String = kept.by_ref().take(MAX_TEXT).collect();
    if kept.next().is_some() {
        out.push('…');
    }
    out
}

/// Whether shown text keeps `c`: not control characters, the bidirectional controls
/// that can make a line read differently from what it says, or invisible characters
/// (zero-width, soft hyphen, byte order mark) that could split a secret so that it no
/// longer matches, yet reads the same.
fn shown(c: char) -> bool {
    !c.is_control()
        && !matches!(
            c,
            '\u{00ad}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// `text` without the characters it is shown without (see [`shown`]).
fn shown_text(text: &str) -> String {
    text.chars().filter(|&c| shown(c)).collect()
}

/// `uri` as this crate shows a URL, in errors, logs, `Debug` and the demo: scheme,
/// host, port and path; a user name or password, and the query (which may carry a key),
/// each shown as `<redacted>`.
///
/// ```
/// let uri = "https://svc:pw@auth.example:8443/token?key=K".parse().unwrap();
/// assert_eq!(
///     tower_oauth::redact::url(&uri).to_string(),
///     "https://<redacted>@auth.example:8443/token?<redacted>"
/// );
/// ```
pub fn url(uri: &Uri) -> ShownUrl<'_> {
    ShownUrl(uri)
}

/// The host and port of `uri`, as errors name a token endpoint: never its user info,
/// path or query.
pub(crate) fn host(uri: &Uri) -> Option<String> {
    let authority = uri.authority()?;
    Some(match authority.port() {
        Some(port) => format!("{}:{port}", sanitize(authority.host())),
        None => sanitize(authority.host()),
    })
}

/// A URL as this crate shows it; see [`url`].
pub struct ShownUrl<'a>(&'a Uri);

impl fmt::Display for ShownUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uri = self.0;
        if let Some(scheme) = uri.scheme_str() {
            write!(f, "{scheme}://")?;
        }
        if let Some(authority) = uri.authority() {
            if authority.as_str().contains('@') {
                f.write_str("<redacted>@")?;
            }
            f.write_str(authority.host())?;
            if let Some(port) = authority.port() {
                write!(f, ":{port}")?;
            }
        }
        f.write_str(uri.path())?;
        if uri.query().is_some() {
            f.write_str("?<redacted>")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ShownUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use base64::{
        engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
        Engine as _,
    };

    use super::*;

    const SECRET: &str = "p@ss w0rd+/=%&:x-Zq";

    fn redactor() -> Redactor {
        Redactor::new().with_secret(SECRET)
    }

    #[test]
    fn a_secret_whole_is_replaced_where_it_stands_and_the_rest_kept() {
        assert_eq!(
            redactor().clean(&format!("bad {SECRET} here")),
            "bad <redacted> here"
        );
        // A form it was sent in, too.
        let mut r = redactor();
        r.add_form("p%40ss+w0rd%2B%2F%3D%25%26%3Ax-Zq");
        assert_eq!(
            r.clean("got client_secret=p%40ss+w0rd%2B%2F%3D%25%26%3Ax-Zq&x=1"),
            "got client_secret=<redacted>&x=1"
        );
    }

    #[test]
    fn eight_characters_of_a_secret_in_a_row_take_the_text_out() {
        let r = redactor();
        assert_eq!(r.clean("starts p@ss w0r."), REDACTED);
        assert_eq!(r.clean("ends &:x-Zq"), "ends &:x-Zq");
        assert_eq!(r.clean("ends d+/=%&:x-Zq"), REDACTED);
        // Seven are not a run.
        assert_eq!(r.clean("p@ss w0"), "p@ss w0");
    }

    #[test]
    fn every_common_encoding_of_a_part_is_seen_through() {
        let part = &SECRET[3..15];
        let lower: String = part.bytes().map(|b| format!("%{b:02x}")).collect();
        let upper: String = part.bytes().map(|b| format!("%{b:02X}")).collect();
        let form: String = form_urlencoded::byte_serialize(part.as_bytes()).collect();
        let json: String = part
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        let html: String = part.chars().map(|c| format!("&#{};", c as u32)).collect();
        let html_hex: String = part.chars().map(|c| format!("&#x{:X}", c as u32)).collect();
        let mut echoes = vec![lower, upper, form, json, html, html_hex];
        // Base64 of a part with 0, 1 or 2 bytes before it, and a cut of it at each
        // offset: every alignment.
        for lead in ["", "a", "ab"] {
            let b64 = STANDARD.encode(format!("{lead}{part}"));
            let url = URL_SAFE_NO_PAD.encode(format!("{lead}{part}!?"));
            echoes.push(b64.clone());
            echoes.push(url);
            echoes.push(b64[1..].to_owned());
        }
        // One encoding inside another.
        echoes.push(
            STANDARD.encode(form_urlencoded::byte_serialize(part.as_bytes()).collect::<String>()),
        );
        echoes.push(html_unescaped_inverse(&STANDARD.encode(part)));
        // Three deep (8 characters, percent-encoded, in base64, as decimal references),
        // in text that holds every kind of escape besides.
        let percent: String = part[..8].bytes().map(|b| format!("%{b:02X}")).collect();
        let three: String = STANDARD
            .encode(percent)
            .chars()
            .map(|c| format!("&#{};", c as u32))
            .collect();
        echoes.push(format!("a+b %41 &amp; \\u0041 {three}"));
        for echo in echoes {
            assert!(redactor().holds_secret(&echo), "{echo}");
            assert_eq!(redactor().clean(&format!("x {echo} y")), REDACTED, "{echo}");
        }
    }

    /// Every character as a hexadecimal reference.
    fn html_unescaped_inverse(text: &str) -> String {
        text.chars()
            .map(|c| format!("&#x{:x};", c as u32))
            .collect()
    }

    #[test]
    fn text_without_a_secret_is_kept_whatever_it_looks_like() {
        let r = redactor();
        for text in [
            "invalid_client: client a%20b &amp; c+d unknown",
            "eyJhbGciOiJIUzI1NiJ9 is not a token we issued",
            "\\u0041 and &#65; and %41",
        ] {
            assert_eq!(r.clean(text), text);
        }
        // Without secrets, only control characters go.
        assert_eq!(Redactor::new().clean("a\r\nb\u{202e}c"), "abc");
    }

    #[test]
    fn a_secret_under_four_characters_is_not_looked_for() {
        let r = Redactor::new().with_secret("abc");
        assert_eq!(r.clean("abcdef"), "abcdef");
        // From 4 to 7 characters, all of it.
        let r = Redactor::new().with_secret("s3cr");
        assert_eq!(r.clean("a s3cr b"), "a <redacted> b");
        assert_eq!(r.clean("a %73%33%63%72 b"), REDACTED);
    }

    #[test]
    fn long_text_is_cut_and_looked_at_as_shown() {
        let long = format!("{}{SECRET}", "x".repeat(MAX_TEXT));
        // The secret whole is replaced before the cut; past the cut nothing shows.
        let shown = redactor().clean(&long);
        assert!(shown.ends_with('…') && !shown.contains("p@ss"), "{shown}");
        // Control characters splitting a part do not hide it.
        assert_eq!(redactor().clean("p@ss\r\n w0rd+"), REDACTED);
    }

    #[test]
    fn a_url_is_shown_without_user_info_or_query() {
        let uri: Uri = "https://svc:hunter2@auth.example:8443/oauth/token?api_key=KEY"
            .parse()
            .unwrap();
        assert_eq!(
            format!("{} {:?}", url(&uri), url(&uri)),
            "https://<redacted>@auth.example:8443/oauth/token?<redacted> \
             https://<redacted>@auth.example:8443/oauth/token?<redacted>"
        );
        let uri: Uri = "http://[::1]:8080/t".parse().unwrap();
        assert_eq!(url(&uri).to_string(), "http://[::1]:8080/t");
    }
}
