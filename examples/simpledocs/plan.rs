//! What each request of a run is: its method, URL and body.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Uri};
use http_body_util::Full;

use crate::{
    cli::{MethodChoice, Options},
    fleet::{tenant_name, TENANT_HEADER},
};

pub(crate) const WORKFLOWS_PATH: &str = "/api/v1/workflows";
pub(crate) const DOCUMENTS_PATH: &str = "/api/v1/documents";
/// Beyond this many requests, progress is printed per batch instead of per request.
const VERBOSE_LIMIT: usize = 100;

/// What each request does, and what the run shares.
pub(crate) struct Plan {
    pub(crate) requests: usize,
    pub(crate) concurrency: usize,
    pub(crate) interval: Duration,
    pub(crate) method: MethodChoice,
    pub(crate) uri: Uri,
    workflows: Uri,
    documents: Uri,
    /// The POST body, a fixed pattern; cloning it per request copies nothing.
    pub(crate) body: Bytes,
    pub(crate) body_fnv1a64: u64,
    pub(crate) revoke_after: Option<usize>,
    /// The tenants' header values, taken in turn; empty without `--tenants`.
    tenants: Vec<HeaderValue>,
    pub(crate) verbose: bool,
    pub(crate) progress_every: usize,
}

impl Plan {
    /// The plan `o` asks for against `base`; `mock` says whether the embedded mock is the
    /// server (only it can revoke tokens).
    ///
    /// # Errors
    ///
    /// When `base` and a path do not make a valid URL (the message does not repeat it:
    /// it may hold a password).
    pub(crate) fn new(o: &Options, base: &str, mock: bool) -> Result<Self, String> {
        let url = |path: &str| -> Result<Uri, String> {
            format!("{base}{path}")
                .parse()
                .map_err(|e| format!("--base-url with the path {path:?} is not a valid url: {e}"))
        };
        let default_path = match o.method {
            MethodChoice::Post => DOCUMENTS_PATH,
            _ => WORKFLOWS_PATH,
        };
        let body: Bytes = (0..o.body_bytes).map(|i| b'a' + (i % 26) as u8).collect();
        Ok(Self {
            requests: o.requests,
            concurrency: o.concurrency.min(o.requests),
            interval: o.interval,
            method: o.method,
            uri: url(o.path.as_deref().unwrap_or(default_path))?,
            workflows: url(WORKFLOWS_PATH)?,
            documents: url(DOCUMENTS_PATH)?,
            body_fnv1a64: fnv1a64(&body),
            body,
            revoke_after: o.revoke_after.filter(|_| mock),
            tenants: (0..o.tenants.unwrap_or(0))
                .map(|i| HeaderValue::try_from(tenant_name(i)).expect("a plain name"))
                .collect(),
            verbose: o.requests <= VERBOSE_LIMIT,
            progress_every: o.requests.div_ceil(20),
        })
    }

    /// The method and URL of request `i`.
    pub(crate) fn target(&self, i: usize) -> (Method, &Uri) {
        match self.method {
            MethodChoice::Get => (Method::GET, &self.uri),
            MethodChoice::Post => (Method::POST, &self.uri),
            MethodChoice::Mixed if i % 2 == 1 => (Method::POST, &self.documents),
            MethodChoice::Mixed => (Method::GET, &self.workflows),
        }
    }

    /// Request `i`.
    pub(crate) fn request(&self, i: usize) -> Request<Full<Bytes>> {
        let (method, uri) = self.target(i);
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .header(header::ACCEPT, HeaderValue::from_static("application/json"))
            .header(
                header::USER_AGENT,
                HeaderValue::from_static("tower-oauth-simpledocs-example"),
            );
        if !self.tenants.is_empty() {
            builder = builder.header(TENANT_HEADER, self.tenants[i % self.tenants.len()].clone());
        }
        let body = if method == Method::POST {
            builder = builder.header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            self.body.clone()
        } else {
            Bytes::new()
        };
        builder
            .body(Full::new(body))
            .expect("method, uri and headers are valid")
    }
}

/// The 64-bit FNV-1a hash, as the mock reports for uploads.
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
