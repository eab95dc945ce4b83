//! What counts as a rejected token: the response classifiers.
//!
//! When the API rejects the token a request carried, the layer gets a new token and
//! replays the request. [`StandardClassifier`] recognises the three common ways servers
//! say so:
//!
//! - **SimpleDocs**: status 401, `Content-Type` `application/json` or
//!   `application/problem+json` (parameters such as `charset` allowed), and a body that
//!   is a JSON object whose `type` member is the string `token_expired` or
//!   `invalid_token`. An `error` member with one of those two strings counts the same (an
//!   RFC 6750 error code put in the body). Nothing else in the body counts: the match is
//!   exact and case-sensitive, a `type` or `error` that is not a string (an object, say)
//!   is ignored without hiding the other member, and a body that is not a JSON object,
//!   or is longer than the layer's `inspect_limit`, is not a rejection.
//! - **RFC 6750**: status 401 with a `WWW-Authenticate` value holding a `Bearer`
//!   challenge (any case) whose `error` parameter, quoted or not, is `invalid_token` (or
//!   `token_expired`), e.g. `Bearer realm="api", error="invalid_token"`. Bytes elsewhere
//!   in the value, such as non-ASCII ones in a quoted realm, do not matter.
//! - **gRPC**: `grpc-status: 16` (UNAUTHENTICATED) in the response head (a
//!   trailers-only response), whatever the HTTP status (gRPC answers 200; a proxy may
//!   answer 401).
//!
//! Anything else is not a token rejection: 401 `invalid_client`, 403
//! `insufficient_scope` and every other status pass through untouched.
//!
//! A custom classifier implements [`ClassifyRejection`]; [`parse_challenges`] gives it the
//! `WWW-Authenticate` parser the RFC 6750 rule uses.
//!
//! ```
//! use http::{HeaderMap, StatusCode};
//! use tower_oauth::classify::{Classification, ClassifyRejection, StandardClassifier};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("www-authenticate", r#"Bearer error="invalid_token""#.parse().unwrap());
//! let c = StandardClassifier::default();
//! assert_eq!(c.classify_head(StatusCode::UNAUTHORIZED, &headers), Classification::Rejected);
//! assert_eq!(c.classify_head(StatusCode::OK, &HeaderMap::new()), Classification::NotRejected);
//! ```

mod challenge;
mod inspect;
mod rules;

use std::{any::Any, sync::Arc};

use http::{HeaderMap, StatusCode};

pub use challenge::{parse_challenges, Challenge};

/// What the head of a response says about the token that the request carried.
///
/// More answers may come (non-exhaustive): a `match` on it needs a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Classification {
    /// The token was not rejected; the response goes to the caller as it is.
    NotRejected,
    /// The token was rejected: renew it and replay the request.
    Rejected,
    /// The body decides: read up to the inspection limit, then ask
    /// [`ClassifyRejection::classify_body`].
    InspectBody,
}

/// Decides whether a response means "the token was rejected".
///
/// `classify_head` runs on every response, so it should be cheap; a body is only read
/// when it answers [`Classification::InspectBody`].
pub trait ClassifyRejection: Send + Sync + 'static {
    /// Classifies a response by its status and headers.
    fn classify_head(&self, status: StatusCode, headers: &HeaderMap) -> Classification;

    /// Classifies a response by its body, when `classify_head` asked for it. `body` is
    /// the whole body, at most the inspection limit long. The default says "not
    /// rejected".
    fn classify_body(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> bool {
        let _ = (status, headers, body);
        false
    }
}

/// A layer's classifier as each request carries it: the standard one by value (nothing
/// shared is touched per request), any other behind an `Arc`.
#[derive(Clone)]
pub(crate) enum Classifier {
    Standard(StandardClassifier),
    Custom(Arc<dyn ClassifyRejection>),
}

impl Classifier {
    pub(crate) fn new<C: ClassifyRejection>(classifier: C) -> Self {
        match (&classifier as &dyn Any).downcast_ref::<StandardClassifier>() {
            Some(standard) => Self::Standard(*standard),
            None => Self::Custom(Arc::new(classifier)),
        }
    }

    #[inline]
    pub(crate) fn classify_head(&self, status: StatusCode, headers: &HeaderMap) -> Classification {
        match self {
            Self::Standard(c) => c.classify_head(status, headers),
            Self::Custom(c) => c.classify_head(status, headers),
        }
    }

    pub(crate) fn classify_body(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> bool {
        match self {
            Self::Standard(c) => c.classify_body(status, headers, body),
            Self::Custom(c) => c.classify_body(status, headers, body),
        }
    }
}

/// The built-in classifier: SimpleDocs problem documents, RFC 6750 challenges and gRPC
/// UNAUTHENTICATED, each of which can be turned off.
///
/// A 401 response is a rejection when
///
/// - a `WWW-Authenticate` value holds a `Bearer` challenge with `error` `invalid_token`
///   or `token_expired` (decided from the head); or else
/// - its `Content-Type` is `application/json` or `application/problem+json` and its
///   whole body (within the inspect limit) is a JSON object with a member `type` or
///   `error` whose value is exactly the string `token_expired` or `invalid_token`.
///   Members of another JSON type are ignored: `{"type": "token_expired", "error":
///   {"code": "E42"}}` is a rejection, `{"error": {"code": "invalid_token"}}` is not.
///
/// A response of any status (gRPC answers 200; a proxy may answer 401) is a rejection
/// when its head carries `grpc-status: 16`. The [module docs](crate::classify) give the
/// details.
#[derive(Debug, Clone, Copy)]
pub struct StandardClassifier {
    simpledocs: bool,
    rfc6750: bool,
    grpc: bool,
}

impl Default for StandardClassifier {
    fn default() -> Self {
        Self {
            simpledocs: true,
            rfc6750: true,
            grpc: true,
        }
    }
}

impl StandardClassifier {
    /// Whether to read 401 JSON bodies for a `type` (or `error`) member
    /// `token_expired`/`invalid_token`. Default: `true`.
    pub fn simpledocs(mut self, on: bool) -> Self {
        self.simpledocs = on;
        self
    }

    /// Whether to honour `WWW-Authenticate: Bearer error="invalid_token"`. Default: `true`.
    pub fn rfc6750(mut self, on: bool) -> Self {
        self.rfc6750 = on;
        self
    }

    /// Whether `grpc-status: 16` in the head is a rejection. Default: `true`.
    pub fn grpc(mut self, on: bool) -> Self {
        self.grpc = on;
        self
    }
}

impl StandardClassifier {
    /// Whether the head carries gRPC UNAUTHENTICATED (and gRPC is on).
    #[inline]
    fn grpc_unauthenticated(&self, headers: &HeaderMap) -> bool {
        self.grpc && rules::grpc_unauthenticated(headers)
    }
}

impl ClassifyRejection for StandardClassifier {
    #[inline]
    fn classify_head(&self, status: StatusCode, headers: &HeaderMap) -> Classification {
        if status == StatusCode::UNAUTHORIZED {
            if self.rfc6750 && rules::bearer_rejected(headers) {
                return Classification::Rejected;
            }
            if self.grpc_unauthenticated(headers) {
                return Classification::Rejected;
            }
            if self.simpledocs && rules::is_json(headers) {
                return Classification::InspectBody;
            }
            return Classification::NotRejected;
        }
        if self.grpc_unauthenticated(headers) {
            return Classification::Rejected;
        }
        Classification::NotRejected
    }

    fn classify_body(&self, status: StatusCode, _headers: &HeaderMap, body: &[u8]) -> bool {
        status == StatusCode::UNAUTHORIZED && self.simpledocs && rules::problem_rejected(body)
    }
}

#[cfg(test)]
mod tests {
    use http::{header, HeaderName};

    use super::rules::GRPC_STATUS;
    use super::*;

    fn head(status: u16, pairs: &[(&str, &str)]) -> Classification {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        StandardClassifier::default().classify_head(StatusCode::from_u16(status).unwrap(), &headers)
    }

    fn body(json: &str) -> bool {
        StandardClassifier::default().classify_body(
            StatusCode::UNAUTHORIZED,
            &HeaderMap::new(),
            json.as_bytes(),
        )
    }

    #[test]
    fn simpledocs_problem_documents() {
        use Classification::*;
        assert_eq!(
            head(401, &[("content-type", "application/json")]),
            InspectBody
        );
        assert_eq!(
            head(
                401,
                &[("content-type", "application/problem+json; charset=utf-8")]
            ),
            InspectBody
        );
        assert_eq!(head(401, &[("content-type", "text/html")]), NotRejected);
        assert_eq!(head(401, &[]), NotRejected);
        // Obs-text in a parameter does not hide the media type.
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_bytes(b"application/json; profile=\"caf\xe9\"").unwrap(),
        );
        assert_eq!(
            StandardClassifier::default().classify_head(StatusCode::UNAUTHORIZED, &headers),
            InspectBody
        );
        assert!(body(
            r#"{"type":"token_expired","status":401,"title":"Token Expired"}"#
        ));
        assert!(body(r#"{"type":"invalid_token"}"#));
        assert!(body(r#"{"error":"invalid_token"}"#));
        assert!(!body(r#"{"type":"invalid_client","status":401}"#));
        assert!(!body(r#"{"type":"insufficient_scope","status":403}"#));
        assert!(!body(r#"{"type":"token_expired""#));
        assert!(!body("token_expired"));
        assert!(!body(r#"{"type":7}"#));
        // Only 401 bodies count.
        assert!(!StandardClassifier::default().classify_body(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            br#"{"type":"token_expired"}"#
        ));
    }

    #[test]
    fn rfc6750_challenges() {
        use Classification::*;
        let w = "www-authenticate";
        assert_eq!(
            head(401, &[(w, r#"Bearer error="invalid_token""#)]),
            Rejected
        );
        assert_eq!(head(401, &[(w, "Bearer error=invalid_token")]), Rejected);
        assert_eq!(
            head(
                401,
                &[(
                    w,
                    r#"bearer realm="x", error="invalid_token", error_description="The access token expired""#
                )]
            ),
            Rejected
        );
        assert_eq!(
            head(
                401,
                &[(w, r#"Basic realm="a, b", Bearer error="invalid_token""#)]
            ),
            Rejected
        );
        assert_eq!(
            head(
                401,
                &[
                    (w, r#"Basic realm="x""#),
                    (w, r#"Bearer error="invalid_token""#)
                ]
            ),
            Rejected
        );
        // A quoted string that merely contains the words is not the error parameter.
        assert_eq!(
            head(401, &[(w, r#"Bearer realm="error=\"invalid_token\"""#)]),
            NotRejected
        );
        assert_eq!(
            head(401, &[(w, r#"Bearer error="insufficient_scope""#)]),
            NotRejected
        );
        assert_eq!(
            head(401, &[(w, r#"Basic error="invalid_token""#)]),
            NotRejected
        );
        assert_eq!(head(401, &[(w, r#"Bearer realm="api""#)]), NotRejected);
        assert_eq!(
            head(403, &[(w, r#"Bearer error="invalid_token""#)]),
            NotRejected
        );
    }

    #[test]
    fn a_non_utf8_byte_elsewhere_in_a_challenge_does_not_hide_the_error() {
        let classify = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_bytes(value).unwrap(),
            );
            StandardClassifier::default().classify_head(StatusCode::UNAUTHORIZED, &headers)
        };
        use Classification::*;
        // The same realm in UTF-8 and in Latin-1 (obs-text, which a quoted string may hold).
        assert_eq!(
            classify("Bearer realm=\"café\", error=\"invalid_token\"".as_bytes()),
            Rejected
        );
        assert_eq!(
            classify(b"Bearer realm=\"caf\xe9\", error=\"invalid_token\""),
            Rejected
        );
        assert_eq!(
            classify(b"Bearer error=\"invalid_token\", error_description=\"expir\xe9\""),
            Rejected
        );
        assert_eq!(
            classify(b"Basic realm=\"caf\xe9\", Bearer error=\"invalid_token\""),
            Rejected
        );
        // An escaped non-UTF-8 byte is skipped like any other.
        assert_eq!(
            classify(b"Bearer realm=\"\\\xe9\", error=invalid_token"),
            Rejected
        );
        // Non-UTF-8 bytes do not make another error into a rejection.
        assert_eq!(
            classify(b"Bearer realm=\"caf\xe9\", error=\"insufficient_scope\""),
            NotRejected
        );
        assert_eq!(classify(b"Bearer error=\"invalid_token\xe9\""), NotRejected);
    }

    #[test]
    fn a_body_member_that_is_not_a_string_is_ignored_not_fatal() {
        assert!(body(
            r#"{"type":"token_expired","status":401,"error":{"code":"E42"}}"#
        ));
        assert!(body(r#"{"type":["a"],"error":"invalid_token"}"#));
        assert!(body(r#"{"type":null,"error":"invalid_token","detail":7}"#));
        // Only a string member counts: a code nested in an object does not.
        assert!(!body(
            r#"{"type":"invalid_client","error":{"code":"invalid_token"}}"#
        ));
        assert!(!body(r#"{"type":{"code":"token_expired"}}"#));
        assert!(!body(r#"{"error":["invalid_token"]}"#));
        // Codes match exactly, and only under `type` or `error`.
        assert!(!body(r#"{"type":"TOKEN_EXPIRED"}"#));
        assert!(!body(r#"{"code":"token_expired"}"#));
        assert!(!body(r#"{"type":"urn:problem:token_expired"}"#));
        // Not a JSON object: not a rejection.
        assert!(!body(r#"["token_expired"]"#));
        assert!(!body(r#""token_expired""#));
        assert!(!body("not json at all"));
        assert!(!body(""));
        assert!(!body(r#"{"type":"token_expired"} trailing"#));
    }

    #[test]
    fn grpc_unauthenticated_in_the_head() {
        use Classification::*;
        assert_eq!(head(200, &[("grpc-status", "16")]), Rejected);
        assert_eq!(head(200, &[("grpc-status", "7")]), NotRejected);
        assert_eq!(head(200, &[("grpc-status", "0")]), NotRejected);
        assert_eq!(head(200, &[]), NotRejected);
        // A proxy's 401 with gRPC UNAUTHENTICATED, without a challenge or a JSON body.
        assert_eq!(head(401, &[("grpc-status", "16")]), Rejected);
        assert_eq!(head(401, &[("grpc-status", "7")]), NotRejected);
        assert_eq!(
            StandardClassifier::default()
                .grpc(false)
                .classify_head(StatusCode::UNAUTHORIZED, &{
                    let mut h = HeaderMap::new();
                    h.insert(GRPC_STATUS.clone(), "16".parse().unwrap());
                    h
                }),
            NotRejected
        );
    }

    #[test]
    fn a_scheme_alone_before_a_comma_does_not_hide_the_next_challenge() {
        let w = "www-authenticate";
        assert_eq!(
            head(401, &[(w, r#"Basic , Bearer error="invalid_token""#)]),
            Classification::Rejected
        );
        let c = parse_challenges(r#"Basic , Bearer realm="api""#);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].scheme.as_str(), c[0].params.len()), ("Basic", 0));
        assert_eq!(c[1].param("realm"), Some("api"));
    }

    #[test]
    fn each_standard_rule_can_be_turned_off_alone() {
        use Classification::*;
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            h
        };
        let bearer = headers(&[("www-authenticate", r#"Bearer error="invalid_token""#)]);
        let json = headers(&[("content-type", "application/json")]);
        let grpc = headers(&[("grpc-status", "16")]);
        let expired = br#"{"type":"token_expired"}"#;
        let u = StatusCode::UNAUTHORIZED;

        let c = StandardClassifier::default().rfc6750(false);
        assert_eq!(c.classify_head(u, &bearer), NotRejected);
        assert_eq!(c.classify_head(u, &json), InspectBody);
        assert_eq!(c.classify_head(StatusCode::OK, &grpc), Rejected);

        let c = StandardClassifier::default().simpledocs(false);
        assert_eq!(c.classify_head(u, &json), NotRejected);
        assert!(!c.classify_body(u, &json, expired));
        assert_eq!(c.classify_head(u, &bearer), Rejected);

        let c = StandardClassifier::default().grpc(false);
        assert_eq!(c.classify_head(StatusCode::OK, &grpc), NotRejected);
        assert_eq!(c.classify_head(u, &bearer), Rejected);
        assert!(c.classify_body(u, &json, expired));
    }

    /// A custom classifier that only looks at the head.
    struct HeadOnly;

    impl ClassifyRejection for HeadOnly {
        fn classify_head(&self, _: StatusCode, _: &HeaderMap) -> Classification {
            Classification::InspectBody
        }
    }

    #[test]
    fn a_layer_classifier_answers_as_the_classifier_it_wraps() {
        let u = StatusCode::UNAUTHORIZED;
        let json = HeaderMap::new();
        let expired = br#"{"type":"token_expired"}"#;

        let standard = Classifier::new(StandardClassifier::default());
        assert!(matches!(standard, Classifier::Standard(_)));
        assert!(standard.classify_body(u, &json, expired));
        assert!(!standard.classify_body(u, &json, br#"{"type":"invalid_client"}"#));

        // A custom classifier that does not read bodies gets the default: not rejected.
        assert!(!HeadOnly.classify_body(u, &json, expired));
        let custom = Classifier::new(HeadOnly);
        assert!(matches!(custom, Classifier::Custom(_)));
        assert_eq!(custom.classify_head(u, &json), Classification::InspectBody);
        assert!(!custom.classify_body(u, &json, expired));
    }
}
