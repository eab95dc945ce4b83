//! The decodings a text is read in when a secret is looked for: percent and form
//! encoding, HTML character references, JSON escapes, base64 and base64url.

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine as _,
};
use percent_encoding::percent_decode_str;
use zeroize::Zeroizing;

/// The shortest run of base64 characters decoded: 4 bytes, the shortest secret.
const MIN_BASE64: usize = 6;

/// Each decoding of `text` that changes it, one layer deep.
pub(super) fn decode_once(text: &str) -> Vec<Zeroizing<String>> {
    let mut out = Vec::new();
    let percent = |t: &str| Zeroizing::new(percent_decode_str(t).decode_utf8_lossy().into_owned());
    if text.contains('%') {
        out.push(percent(text));
    }
    if text.contains('+') {
        out.push(percent(&Zeroizing::new(text.replace('+', " "))));
    }
    if text.contains('&') {
        out.push(Zeroizing::new(html_unescaped(text)));
    }
    if text.contains('\\') {
        out.push(Zeroizing::new(json_unescaped(text)));
    }
    out.extend(base64_decoded(text));
    out.retain(|d| d.as_str() != text);
    out
}

/// Base64 and base64url, padded or not, trailing bits allowed: what servers write.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The runs of base64 characters of `text` decoded, at each of the four alignments (a
/// server may echo a part of an encoding that starts anywhere): four texts, each the
/// runs' decodings at that alignment, joined by spaces.
fn base64_decoded(text: &str) -> Vec<Zeroizing<String>> {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '-' | '_');
    let runs: Vec<&str> = text
        .split(|c: char| !is_b64(c))
        .filter(|run| run.len() >= MIN_BASE64)
        .collect();
    if runs.is_empty() {
        return Vec::new();
    }
    (0..4)
        .map(|offset| {
            let mut joined = Zeroizing::new(String::new());
            for run in &runs {
                let mut chars = Zeroizing::new(
                    run[offset.min(run.len())..]
                        .replace('-', "+")
                        .replace('_', "/"),
                );
                // A lone character past the last whole byte decodes to nothing.
                if chars.len() % 4 == 1 {
                    chars.pop();
                }
                if let Ok(bytes) = LENIENT.decode(chars.as_bytes()) {
                    let bytes = Zeroizing::new(bytes);
                    joined.push_str(&String::from_utf8_lossy(&bytes));
                    joined.push(' ');
                }
            }
            joined
        })
        .collect()
}

/// `text` with JSON escapes (`\uXXXX`, surrogate pairs included, `\n`, `\/` and the
/// like) replaced by their characters; anything else as it is.
fn json_unescaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut high: Option<u16> = None;
    while let Some(at) = rest.find('\\') {
        if at > 0 {
            high = None;
        }
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let unit = rest
            .get(2..6)
            .filter(|_| rest[1..].starts_with('u'))
            .and_then(|hex| u16::from_str_radix(hex, 16).ok());
        if let Some(unit) = unit {
            rest = &rest[6..];
            match (high.take(), unit) {
                (Some(h), 0xdc00..=0xdfff) => {
                    out.extend(char::decode_utf16([h, unit]).flatten());
                }
                (_, 0xd800..=0xdbff) => high = Some(unit),
                (_, unit) => out.extend(char::from_u32(unit.into())),
            }
            continue;
        }
        high = None;
        let simple = rest[1..].chars().next().and_then(|c| {
            Some(match c {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                'b' => '\u{8}',
                'f' => '\u{c}',
                '/' | '\\' | '"' | '\'' => c,
                _ => return None,
            })
        });
        match simple {
            Some(c) => {
                out.push(c);
                rest = &rest[2..];
            }
            None => {
                out.push('\\');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The named character references of HTML for ASCII punctuation, and a few more.
const HTML_NAMES: [(&str, char); 33] = [
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("excl", '!'),
    ("num", '#'),
    ("dollar", '$'),
    ("percnt", '%'),
    ("lpar", '('),
    ("rpar", ')'),
    ("ast", '*'),
    ("plus", '+'),
    ("comma", ','),
    ("period", '.'),
    ("sol", '/'),
    ("colon", ':'),
    ("semi", ';'),
    ("equals", '='),
    ("quest", '?'),
    ("commat", '@'),
    ("lsqb", '['),
    ("bsol", '\\'),
    ("rsqb", ']'),
    ("Hat", '^'),
    ("lowbar", '_'),
    ("grave", '`'),
    ("lcub", '{'),
    ("verbar", '|'),
    ("rcub", '}'),
    ("nbsp", '\u{a0}'),
    ("hyphen", '\u{2010}'),
    ("dash", '\u{2010}'),
];

/// `text` with HTML character references (`&amp;`, `&#38;`, `&#x26;`, a number without
/// its `;`) replaced by their characters; anything else as it is.
fn html_unescaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match html_reference(&rest[1..]) {
            Some((ch, len)) => {
                out.push(ch);
                rest = &rest[1 + len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The character a reference at the start of `text` (past its `&`) stands for, and
/// how long the reference is.
fn html_reference(text: &str) -> Option<(char, usize)> {
    if let Some(number) = text.strip_prefix('#') {
        let (radix, digits) = match number.strip_prefix(['x', 'X']) {
            Some(hex) => (16, hex),
            None => (10, number),
        };
        let len = digits
            .find(|c: char| !c.is_digit(radix))
            .unwrap_or(digits.len());
        if len > 8 {
            return None;
        }
        let code = u32::from_str_radix(&digits[..len], radix).ok()?;
        let ch = char::from_u32(code)?;
        let prefix = number.len() - digits.len() + 1;
        let semicolon = usize::from(digits[len..].starts_with(';'));
        return Some((ch, prefix + len + semicolon));
    }
    let end = text.find(';').filter(|&end| end <= 10)?;
    let name = &text[..end];
    HTML_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, ch)| (ch, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_character_references_are_unescaped_and_anything_else_kept() {
        assert_eq!(html_unescaped("a&amp;b&lt;&#65;&#x42;&#X43;"), "a&b<ABC");
        assert_eq!(
            html_unescaped("a & b &bogus; &#xZZ; &"),
            "a & b &bogus; &#xZZ; &"
        );
        assert_eq!(
            html_unescaped("&#x1F600;&quot;&apos;&sol;&#65"),
            "\u{1F600}\"'/A"
        );
    }

    #[test]
    fn json_escapes_are_unescaped_surrogates_included() {
        assert_eq!(
            json_unescaped(r#"a\u0041\/\"\ud83d\ude00\q"#),
            "aA/\"\u{1F600}\\q"
        );
        assert_eq!(json_unescaped(r"\u12"), r"\u12");
    }
}
