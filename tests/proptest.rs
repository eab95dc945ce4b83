//! Property tests of the two parsers that read what servers send: token responses
//! (`fetch::parse_token_response`) and `WWW-Authenticate` challenges
//! (`classify::parse_challenges`). Arbitrary input never panics and never yields an
//! unusable token; structured input is read exactly as a simple model of the documented
//! rules says.

use std::time::Duration;

use http::{header, HeaderMap, HeaderValue, StatusCode};
use proptest::{collection::vec, option, prelude::*, sample::select};
use serde_json::{json, Map, Value};
use tower_oauth::{
    classify::{
        parse_challenges, Challenge, Classification, ClassifyRejection, StandardClassifier,
    },
    fetch::parse_token_response,
    ErrorKind, Scope,
};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn visible_ascii(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// The kinds a parsed response may give; the others belong to transport, time and
/// configuration.
fn response_kind(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::InvalidClient
            | ErrorKind::InvalidScope
            | ErrorKind::UnauthorizedClient
            | ErrorKind::OAuth
            | ErrorKind::HttpStatus
            | ErrorKind::MalformedResponse
    )
}

fn headers(retry_after: Option<String>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert(header::RETRY_AFTER, value);
    }
    headers
}

// ---------------------------------------------------------------------------------------
// Token responses: arbitrary input
// ---------------------------------------------------------------------------------------

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec(("[a-z_]{1,8}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// An object with the token response's field names, holding anything.
fn any_token_document() -> impl Strategy<Value = Vec<u8>> {
    let key = select(vec![
        "access_token",
        "token_type",
        "expires_in",
        "scope",
        "error",
        "error_description",
        "type",
        "detail",
        "title",
        "created_at",
    ]);
    vec((key, any_json()), 0..7).prop_map(|kv| {
        let map: Map<String, Value> = kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        serde_json::to_vec(&Value::Object(map)).unwrap()
    })
}

fn check_outcome(
    status: u16,
    body: &[u8],
    retry_after: Option<String>,
) -> Result<(), TestCaseError> {
    let status = StatusCode::from_u16(status).unwrap();
    match parse_token_response(status, &headers(retry_after), body) {
        Ok(token) => {
            prop_assert!(status.is_success(), "a token from status {status}");
            let text = token.access_token.secret();
            prop_assert!(visible_ascii(text), "unusable token {text:?}");
            let shown = format!("{token:?}");
            prop_assert!(
                !shown.contains(&format!("\"{text}\"")),
                "token shown: {shown}"
            );
        }
        Err(err) => {
            prop_assert!(response_kind(err.kind()), "{err:?}");
            let shown = err.to_string();
            prop_assert!(!shown.chars().any(char::is_control), "{shown:?}");
            prop_assert!(
                shown.chars().count() < 600,
                "{} chars",
                shown.chars().count()
            );
            prop_assert!(err
                .retry_after()
                .is_none_or(|d| d < Duration::from_secs(u64::MAX)));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_the_token_parser(
        status in 100u16..600,
        body in vec(any::<u8>(), 0..300),
        retry_after in option::of("[ -~]{0,40}"),
    ) {
        check_outcome(status, &body, retry_after)?;
    }

    #[test]
    fn arbitrary_json_in_token_fields_never_panics_the_token_parser(
        status in prop_oneof![Just(200u16), 100u16..600],
        body in any_token_document(),
        retry_after in option::of(prop_oneof!["[0-9]{1,25}", Just("Sun, 06 Nov 1994 08:49:37 GMT".to_owned())]),
    ) {
        check_outcome(status, &body, retry_after)?;
    }

    #[test]
    fn arbitrary_text_never_panics_the_token_parser(
        body in r#"[{}\[\]":,0-9a-z_ .\\-]{0,80}"#,
    ) {
        check_outcome(200, body.as_bytes(), None)?;
    }
}

// ---------------------------------------------------------------------------------------
// Token responses: structured documents against a model
// ---------------------------------------------------------------------------------------

/// A field value and what the model expects of it.
#[derive(Debug, Clone)]
enum Field<T> {
    Absent,
    Present(Value, Result<T, ()>),
}

/// Marks the token text so a test can look for it in error output.
const MARK: &str = "TKN";

fn access_token_field() -> impl Strategy<Value = Field<String>> {
    let bad_char = select(vec![
        ' ', '\r', '\n', '\t', '\0', '\x7f', 'é', '😀', '\u{202e}',
    ]);
    prop_oneof![
        3 => "[!-~]{1,40}".prop_map(|t| {
            let t = format!("{MARK}{t}");
            Field::Present(Value::from(t.clone()), Ok(t))
        }),
        1 => ("[!-~]{0,8}", bad_char, "[!-~]{0,8}").prop_map(|(a, c, b)| {
            Field::Present(Value::from(format!("{MARK}{a}{c}{b}")), Err(()))
        }),
        1 => Just(Field::Present(Value::from(""), Err(()))),
        1 => prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(json!([MARK])),
            Just(json!({ "value": MARK })),
        ]
        .prop_map(|v| Field::Present(v, Err(()))),
        1 => Just(Field::Absent),
    ]
}

fn token_type_field() -> impl Strategy<Value = Field<()>> {
    prop_oneof![
        3 => "[bB][eE][aA][rR][eE][rR]".prop_map(|t| Field::Present(Value::from(t), Ok(()))),
        1 => Just(Field::Present(Value::Null, Ok(()))),
        2 => Just(Field::Absent),
        1 => select(vec!["mac", "DPoP", "bearer ", "Bearer2", "", "N_A"]).prop_map(|t| Field::Present(Value::from(t), Err(()))),
        1 => prop_oneof![any::<u32>().prop_map(Value::from), Just(json!([])), Just(json!(true))]
            .prop_map(|v| Field::Present(v, Err(()))),
    ]
}

/// `expires_in`, and the lifetime it means (`None`: not stated).
fn expires_in_field() -> impl Strategy<Value = Field<Option<Duration>>> {
    let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    prop_oneof![
        3 => any::<u64>().prop_map(move |s| Field::Present(Value::from(s), Ok(secs(s)))),
        2 => (0u64..100_000).prop_map(move |s| Field::Present(Value::from(s), Ok(secs(s)))),
        1 => Just(Field::Present(Value::from(0), Ok(None))),
        1 => (i64::MIN..0).prop_map(|s| Field::Present(Value::from(s), Err(()))),
        // Quarters, which JSON carries exactly: a fraction of a second counts.
        1 => (0u32..40_000_000).prop_map(|n| {
            let f = f64::from(n) / 4.0;
            Field::Present(json!(f), Ok((n > 0).then(|| Duration::from_secs_f64(f))))
        }),
        1 => (1e20f64..1e300).prop_map(|f| Field::Present(json!(f), Ok(Some(Duration::MAX)))),
        1 => (-1e7f64..-0.001).prop_map(|f| Field::Present(json!(f), Err(()))),
        2 => (" {0,2}", "[0-9]{1,30}", " {0,2}").prop_map(move |(a, d, b)| {
            let lifetime = d.parse::<u64>().map_or(Some(Duration::MAX), secs);
            Field::Present(Value::from(format!("{a}{d}{b}")), Ok(lifetime))
        }),
        1 => select(vec!["", " ", "abc", "-5", "+5", "1e3", "0x10", "5s", "1 2"]).prop_map(|s| Field::Present(Value::from(s), Err(()))),
        1 => prop_oneof![Just(json!(true)), Just(json!([])), Just(json!({"s": 1}))].prop_map(|v| Field::Present(v, Err(()))),
        1 => Just(Field::Present(Value::Null, Ok(None))),
        2 => Just(Field::Absent),
    ]
}

fn scope_field() -> impl Strategy<Value = Field<Option<Scope>>> {
    let word = "[a-z:]{1,6}";
    prop_oneof![
        2 => vec(word, 0..4).prop_map(|w| {
            let s = w.join(" ");
            Field::Present(Value::from(s.clone()), Ok(Some(Scope::new(&s))))
        }),
        1 => vec(word, 0..4).prop_map(|w| {
            let scope = Scope::new(&w.join(" "));
            Field::Present(json!(w), Ok(Some(scope)))
        }),
        1 => Just(Field::Present(json!(["read", 7]), Err(()))),
        1 => prop_oneof![any::<i32>().prop_map(Value::from), Just(json!(true)), Just(json!({"read": true}))]
            .prop_map(|v| Field::Present(v, Err(()))),
        1 => Just(Field::Present(Value::Null, Ok(None))),
        2 => Just(Field::Absent),
    ]
}

/// An `error` field: a code (known or not), or a value that is not a string.
fn error_field() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => Just(None),
        2 => select(vec![
            "invalid_client", "invalid_scope", "unauthorized_client", "invalid_request",
            "unsupported_grant_type", "server_error", "temporarily_unavailable", "access_denied",
        ])
        .prop_map(|c| Some(Value::from(c))),
        1 => "[a-z_]{1,20}".prop_map(|c| Some(Value::from(c))),
        1 => prop_oneof![Just(json!(42)), Just(json!(null)), Just(json!(["invalid_client"]))].prop_map(Some),
    ]
}

fn code_kind(code: &str) -> ErrorKind {
    match code {
        "invalid_client" => ErrorKind::InvalidClient,
        "invalid_scope" => ErrorKind::InvalidScope,
        "unauthorized_client" => ErrorKind::UnauthorizedClient,
        _ => ErrorKind::OAuth,
    }
}

fn put<T>(map: &mut Map<String, Value>, key: &str, field: &Field<T>) {
    if let Field::Present(v, _) = field {
        map.insert(key.to_owned(), v.clone());
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn structured_token_documents_are_read_as_the_model_says(
        access_token in access_token_field(),
        token_type in token_type_field(),
        expires_in in expires_in_field(),
        scope in scope_field(),
        error in error_field(),
        created_at in option::of(any::<u32>()),
    ) {
        let mut map = Map::new();
        put(&mut map, "access_token", &access_token);
        put(&mut map, "token_type", &token_type);
        put(&mut map, "expires_in", &expires_in);
        put(&mut map, "scope", &scope);
        if let Some(e) = &error {
            map.insert("error".into(), e.clone());
        }
        if let Some(c) = created_at {
            map.insert("created_at".into(), Value::from(c));
        }
        let body = serde_json::to_vec(&Value::Object(map)).unwrap();
        let result = parse_token_response(StatusCode::OK, &HeaderMap::new(), &body);

        // The model: an `error` field wins (`null` is the same as absent); then every
        // field must be acceptable.
        let expected: Result<(String, Option<Duration>, Option<Scope>), ErrorKind> = match &error {
            Some(Value::String(code)) => Err(code_kind(code)),
            Some(Value::Null) | None => {
                let token = match &access_token {
                    Field::Present(_, Ok(t)) => Ok(t.clone()),
                    _ => Err(()),
                };
                let tt = match &token_type {
                    Field::Present(_, r) => *r,
                    Field::Absent => Ok(()),
                };
                let exp = match &expires_in {
                    Field::Present(_, r) => *r,
                    Field::Absent => Ok(None),
                };
                let sc = match &scope {
                    Field::Present(_, r) => r.clone(),
                    Field::Absent => Ok(None),
                };
                match (token, tt, exp, sc) {
                    (Ok(t), Ok(()), Ok(e), Ok(s)) => Ok((t, e, s)),
                    _ => Err(ErrorKind::MalformedResponse),
                }
            }
            Some(_) => Err(ErrorKind::MalformedResponse),
        };

        match (result, expected) {
            (Ok(token), Ok((text, lifetime, granted))) => {
                prop_assert_eq!(token.access_token.secret(), text.as_str());
                prop_assert_eq!(token.expires_in, lifetime);
                prop_assert_eq!(token.scope, granted);
                prop_assert_eq!(token.extra.contains_key("created_at"), created_at.is_some());
                prop_assert!(!token.extra.contains_key("access_token"));
            }
            (Err(err), Err(kind)) => {
                prop_assert_eq!(err.kind(), kind, "{:?}", err);
                if let Some(Value::String(code)) = &error {
                    prop_assert_eq!(err.oauth_error(), Some(code.as_str()));
                    let retryable = matches!(code.as_str(), "server_error" | "temporarily_unavailable");
                    prop_assert_eq!(err.is_retryable(), retryable, "{:?}", err);
                    prop_assert_eq!(err.status(), None);
                } else {
                    prop_assert!(!err.is_retryable());
                }
                // The error never shows the token.
                if let Field::Present(Value::String(t), _) = &access_token {
                    if t.len() > MARK.len() {
                        let shown = format!("{err} {err:?}");
                        prop_assert!(!shown.contains(t.as_str()), "{}", shown);
                    }
                }
            }
            (got, want) => {
                let got = got.map(|t| format!("{t:?}")).map_err(|e| e.kind());
                prop_assert!(false, "got {:?}, model says {:?}", got, want);
            }
        }
    }

    #[test]
    fn error_statuses_give_the_code_or_the_status_and_retry_as_documented(
        status in 300u16..600,
        code in option::of(select(vec![
            "invalid_client", "invalid_scope", "unauthorized_client", "invalid_request",
            "server_error", "temporarily_unavailable", "slow_down",
        ])),
        as_problem in any::<bool>(),
        description in option::of("[ -~]{0,40}"),
        token in "[A-Za-z0-9]{12}",
    ) {
        let status = StatusCode::from_u16(status).unwrap();
        let body = match (code, as_problem) {
            (Some(code), false) => json!({"error": code, "error_description": description}).to_string(),
            (Some(code), true) => json!({"type": format!("https://errors.test/{code}"), "status": status.as_u16(), "detail": description}).to_string(),
            // A token in an error response is never taken.
            (None, _) => json!({"access_token": format!("{MARK}{token}"), "token_type": "Bearer"}).to_string(),
        };
        let err = parse_token_response(status, &HeaderMap::new(), body.as_bytes()).unwrap_err();
        let status_retryable = status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408;
        prop_assert_eq!(err.status(), Some(status));
        match code {
            Some(code) => {
                let kind = code_kind(code);
                prop_assert_eq!(err.kind(), kind);
                prop_assert_eq!(err.oauth_error(), Some(code));
                let retryable = matches!(code, "server_error" | "temporarily_unavailable")
                    || (kind == ErrorKind::OAuth && status_retryable);
                prop_assert_eq!(err.is_retryable(), retryable);
            }
            None => {
                prop_assert_eq!(err.kind(), ErrorKind::HttpStatus);
                prop_assert_eq!(err.is_retryable(), status_retryable);
                let shown = format!("{err} {err:?}");
                prop_assert!(!shown.contains(&token), "{}", shown);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Challenges
// ---------------------------------------------------------------------------------------

fn check_challenges(parsed: &[Challenge]) -> Result<(), TestCaseError> {
    for c in parsed {
        prop_assert!(
            !c.scheme.is_empty() && c.scheme.chars().all(is_tchar),
            "{:?}",
            c
        );
        if let Some(t68) = &c.token68 {
            prop_assert!(c.params.is_empty(), "{:?}", c);
            let body = t68.trim_end_matches('=');
            prop_assert!(!body.is_empty(), "{:?}", c);
            prop_assert!(
                body.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-._~+/".contains(ch)),
                "{:?}",
                c
            );
        }
        for (name, _) in &c.params {
            prop_assert!(!name.is_empty() && name.chars().all(is_tchar), "{:?}", c);
            prop_assert_eq!(name, &name.to_ascii_lowercase());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_header_text_never_panics_the_challenge_parser(value in "\\PC{0,80}") {
        check_challenges(&parse_challenges(&value))?;
    }

    #[test]
    fn challenge_like_text_never_panics_the_challenge_parser(
        value in r#"[a-zA-Z0-9 ,="\\\t!#$%&'*+.^_`|~/-]{0,80}"#,
    ) {
        check_challenges(&parse_challenges(&value))?;
    }
}

/// A parameter value and how it is written.
#[derive(Debug, Clone)]
enum Written {
    Token(String),
    /// Quoted; `escape_all` backslash-escapes every character, not just `"` and `\`.
    Quoted {
        value: String,
        escape_all: bool,
    },
}

impl Written {
    fn value(&self) -> &str {
        match self {
            Written::Token(v) | Written::Quoted { value: v, .. } => v,
        }
    }

    fn write(&self, out: &mut String) {
        match self {
            Written::Token(v) => out.push_str(v),
            Written::Quoted { value, escape_all } => {
                out.push('"');
                for c in value.chars() {
                    if *escape_all || c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Generated {
    scheme: String,
    token68: Option<String>,
    /// Name, value, and whether to put spaces around `=`.
    params: Vec<(String, Written, bool)>,
}

fn token() -> impl Strategy<Value = String> {
    "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,10}"
}

fn written() -> impl Strategy<Value = Written> {
    prop_oneof![
        token().prop_map(Written::Token),
        ("[\\PC\t]{0,16}", any::<bool>())
            .prop_map(|(value, escape_all)| Written::Quoted { value, escape_all }),
        // The values the classifier looks for, in both spellings.
        select(vec!["invalid_token", "token_expired", "insufficient_scope"]).prop_flat_map(|v| {
            prop_oneof![
                Just(Written::Token(v.to_owned())),
                Just(Written::Quoted {
                    value: v.to_owned(),
                    escape_all: false
                }),
            ]
        }),
    ]
}

fn challenge() -> impl Strategy<Value = Generated> {
    let scheme = prop_oneof![
        token(),
        select(vec!["Bearer", "bearer", "Basic", "DPoP", "Negotiate"]).prop_map(str::to_owned)
    ];
    let name = prop_oneof![
        token(),
        select(vec![
            "error",
            "Error",
            "realm",
            "scope",
            "error_description"
        ])
        .prop_map(str::to_owned)
    ];
    prop_oneof![
        3 => (scheme.clone(), vec((name, written(), any::<bool>()), 0..4))
            .prop_map(|(scheme, params)| Generated { scheme, token68: None, params }),
        1 => (scheme, "[A-Za-z0-9._~+/-]{1,16}={0,2}")
            .prop_map(|(scheme, t68)| Generated { scheme, token68: Some(t68), params: Vec::new() }),
    ]
}

fn write_challenges(list: &[Generated], loose: bool) -> String {
    let mut out = String::new();
    for (i, c) in list.iter().enumerate() {
        if i > 0 {
            out.push_str(if loose { " , ,  " } else { ", " });
        }
        out.push_str(&c.scheme);
        if let Some(t68) = &c.token68 {
            out.push(' ');
            out.push_str(t68);
        }
        for (j, (name, value, spaced)) in c.params.iter().enumerate() {
            out.push_str(if j == 0 {
                " "
            } else if loose {
                " ,\t"
            } else {
                ", "
            });
            out.push_str(name);
            out.push_str(if *spaced { " = " } else { "=" });
            value.write(&mut out);
        }
    }
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn written_challenges_are_read_back_exactly(
        list in vec(challenge(), 1..5),
        loose in any::<bool>(),
    ) {
        let text = write_challenges(&list, loose);
        let parsed = parse_challenges(&text);
        check_challenges(&parsed)?;
        prop_assert_eq!(parsed.len(), list.len(), "{}: {:?}", text, parsed);
        for (got, want) in parsed.iter().zip(&list) {
            prop_assert_eq!(&got.scheme, &want.scheme, "{}", text);
            prop_assert_eq!(&got.token68, &want.token68, "{}", text);
            let want_params: Vec<(String, String)> = want
                .params
                .iter()
                .map(|(n, v, _)| (n.to_ascii_lowercase(), v.value().to_owned()))
                .collect();
            prop_assert_eq!(&got.params, &want_params, "{}", text);
        }
    }

    #[test]
    fn a_401_is_a_rejection_exactly_when_a_bearer_challenge_says_invalid_token(
        list in vec(challenge(), 1..4),
        split in any::<bool>(),
    ) {
        // One header value, or one header per challenge.
        let mut headers = HeaderMap::new();
        let values: Vec<String> = if split {
            list.iter().map(|c| write_challenges(std::slice::from_ref(c), false)).collect()
        } else {
            vec![write_challenges(&list, false)]
        };
        // RFC 9110 challenges are ASCII; non-ASCII values have their own test below.
        let usable = |v: &str| v.is_ascii() && HeaderValue::from_str(v).is_ok();
        for v in values.iter().filter(|v| usable(v)) {
            headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_str(v).unwrap());
        }
        let sent: Vec<&Generated> = if split {
            list.iter().zip(&values).filter(|(_, v)| usable(v)).map(|(c, _)| c).collect()
        } else if headers.is_empty() {
            Vec::new()
        } else {
            list.iter().collect()
        };
        let says_invalid = sent.iter().any(|c| {
            c.scheme.eq_ignore_ascii_case("bearer")
                && c.params
                    .iter()
                    .find(|(n, _, _)| n.eq_ignore_ascii_case("error"))
                    .is_some_and(|(_, v, _)| matches!(v.value(), "invalid_token" | "token_expired"))
        });
        let classifier = StandardClassifier::default();
        let got = classifier.classify_head(StatusCode::UNAUTHORIZED, &headers);
        let want = if says_invalid { Classification::Rejected } else { Classification::NotRejected };
        prop_assert_eq!(got, want, "{:?}", values);
        // Never for another status.
        prop_assert_eq!(classifier.classify_head(StatusCode::FORBIDDEN, &headers), Classification::NotRejected);
    }
}

/// Found by the property above: servers do send UTF-8 in a quoted parameter (a localised
/// `error_description`, a realm named after a place), and `HeaderValue` carries it.
#[test]
fn a_non_ascii_parameter_does_not_hide_an_invalid_token_error() {
    let value =
        r#"Bearer realm="Zürich", error="invalid_token", error_description="le jeton a expiré""#;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(value).unwrap(),
    );
    let parsed = parse_challenges(value);
    assert_eq!(
        parsed[0].param("error"),
        Some("invalid_token"),
        "the parser reads it"
    );
    assert_eq!(
        StandardClassifier::default().classify_head(StatusCode::UNAUTHORIZED, &headers),
        Classification::Rejected,
        "the classifier should read it too"
    );
}
