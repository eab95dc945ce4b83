//! Token URL validation: a URL the secret is sent to is checked whole.

use http::Uri;

use crate::error::{Error, ErrorKind};

/// `text` as a token URL, if the secret can only go where it says.
///
/// `http::Uri` accepts a port that does not parse (`:99999`, `:abc`), for which the
/// connector then uses the scheme's default port, and drops a fragment without a word;
/// user info it keeps but no client sends, while clients log it.
pub(super) fn token_url_checked(text: &str) -> Result<Uri, Error> {
    let refused =
        |why: &str| Error::new(ErrorKind::Config).with_detail(&format!("token url {why}"));
    let uri: Uri = text.parse().map_err(|e| {
        Error::new(ErrorKind::Config)
            .with_detail("token url is not a valid url")
            .with_source(e)
    })?;
    let authority = match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(authority)) => authority.as_str(),
        _ => return Err(refused("must be an absolute http or https url")),
    };
    if authority.contains('@') {
        return Err(refused(
            "must not hold a user name or password: pass the client id and secret as \
             ClientCredentials' arguments, and choose AuthMethod::ClientSecretBasic to send \
             them in an Authorization: Basic header",
        ));
    }
    // A host that is there but empty (`https://:443/token`) is no host (RFC 9110 §4.2.1).
    if uri.host().is_none_or(str::is_empty) {
        return Err(refused("has no host"));
    }
    // What follows the host (past an IPv6 literal's brackets) is `:port` or nothing.
    let after_host = match authority.rfind(']') {
        Some(end) => &authority[end + 1..],
        None => authority.find(':').map_or("", |at| &authority[at..]),
    };
    if let Some(port) = after_host.strip_prefix(':') {
        let number = port
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| port.parse::<u16>().ok())
            .flatten();
        if !matches!(number, Some(1..)) {
            return Err(refused("has a port that is not a number from 1 to 65535"));
        }
    }
    if text.contains('#') {
        return Err(refused("must not have a fragment"));
    }
    Ok(uri)
}
