//! A hand-written gRPC service, `test.Docs`, and its client, for the tonic tests.
//!
//! There is no protoc here, so the messages derive `prost::Message` by hand and the
//! client and server are written directly on `tonic::client::Grpc` and
//! `tonic::server::Grpc`, the way generated code does it.
//!
//! The server checks `Authorization: Bearer <token>` against a set of valid tokens that
//! the test fills (as its fetcher issues tokens) and empties (to revoke them). A bad token
//! is answered with `UNAUTHENTICATED` as a trailers-only response, that is
//! `grpc-status: 16` in the response head, by default before reading any of the request
//! body.
#![allow(dead_code, unreachable_pub)]

use std::{
    collections::HashSet,
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http_body_util::BodyExt;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{
    body::Body,
    client::GrpcService,
    server::{ClientStreamingService, NamedService, UnaryService},
    Request, Response, Status, Streaming,
};
use tonic_prost::ProstCodec;
use tower::Service;

/// `Get` asks for a document by id.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetRequest {
    #[prost(string, tag = "1")]
    pub id: String,
}

/// A document.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Doc {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub title: String,
}

/// One message of an `Upload` stream.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    #[prost(bytes = "bytes", tag = "1")]
    pub data: Bytes,
}

/// What `Upload` received: message count, total bytes and their FNV-1a 64 checksum.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct UploadSummary {
    #[prost(uint64, tag = "1")]
    pub messages: u64,
    #[prost(uint64, tag = "2")]
    pub bytes: u64,
    #[prost(uint64, tag = "3")]
    pub fnv1a64: u64,
}

impl UploadSummary {
    /// The summary of `chunks` as the server computes it.
    pub fn of<'a>(chunks: impl IntoIterator<Item = &'a Chunk>) -> Self {
        let mut summary = UploadSummary {
            messages: 0,
            bytes: 0,
            fnv1a64: FNV_OFFSET,
        };
        for chunk in chunks {
            summary.add(&chunk.data);
        }
        summary
    }

    fn add(&mut self, data: &[u8]) {
        self.messages += 1;
        self.bytes += data.len() as u64;
        for &b in data {
            self.fnv1a64 = (self.fnv1a64 ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

const GET: &str = "/test.Docs/Get";
const UPLOAD: &str = "/test.Docs/Upload";

/// One call as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `"Get"` or `"Upload"`.
    pub method: &'static str,
    /// The bearer token, or `"-"` when there was none.
    pub token: String,
    /// Whether the token was valid (otherwise the call got `UNAUTHENTICATED`).
    pub accepted: bool,
}

impl Seen {
    pub fn new(method: &'static str, token: &str, accepted: bool) -> Self {
        Self {
            method,
            token: token.to_owned(),
            accepted,
        }
    }
}

/// The `test.Docs` server: its valid tokens and what it saw. Cheap to clone.
#[derive(Clone)]
pub struct DocsServer {
    state: Arc<State>,
}

struct State {
    valid: Mutex<HashSet<String>>,
    log: Mutex<Vec<Seen>>,
    uploads: Mutex<Vec<UploadSummary>>,
    rejected: watch::Sender<usize>,
    read_body_before_rejecting: AtomicBool,
}

impl Default for DocsServer {
    fn default() -> Self {
        Self {
            state: Arc::new(State {
                valid: Mutex::default(),
                log: Mutex::default(),
                uploads: Mutex::default(),
                rejected: watch::channel(0).0,
                read_body_before_rejecting: AtomicBool::new(false),
            }),
        }
    }
}

impl DocsServer {
    /// Makes `token` valid.
    pub fn accept(&self, token: &str) {
        self.state.valid.lock().unwrap().insert(token.to_owned());
    }

    /// Makes every token known so far invalid, as if revoked.
    pub fn revoke_all(&self) {
        self.state.valid.lock().unwrap().clear();
    }

    /// Whether to read the whole request body before answering `UNAUTHENTICATED`
    /// (default: answer at once, before reading any of it).
    pub fn read_body_before_rejecting(&self, on: bool) {
        self.state
            .read_body_before_rejecting
            .store(on, Ordering::SeqCst);
    }

    /// Every call so far, in order.
    pub fn log(&self) -> Vec<Seen> {
        self.state.log.lock().unwrap().clone()
    }

    /// Calls accepted and rejected so far.
    pub fn counts(&self) -> (usize, usize) {
        let log = self.state.log.lock().unwrap();
        let accepted = log.iter().filter(|s| s.accepted).count();
        (accepted, log.len() - accepted)
    }

    /// The summaries of accepted uploads, in order.
    pub fn uploads(&self) -> Vec<UploadSummary> {
        self.state.uploads.lock().unwrap().clone()
    }

    /// Watches the number of rejected calls.
    pub fn rejections(&self) -> watch::Receiver<usize> {
        self.state.rejected.subscribe()
    }

    /// Serves on `127.0.0.1:0` until the runtime stops; returns the address.
    pub async fn spawn(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let router = tonic::transport::Server::builder().add_service(self.clone());
        tokio::spawn(router.serve_with_incoming(incoming));
        addr
    }

    /// Checks the bearer token and logs the call.
    fn authorize(&self, method: &'static str, headers: &http::HeaderMap) -> bool {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("-");
        let accepted = self.state.valid.lock().unwrap().contains(token);
        self.state
            .log
            .lock()
            .unwrap()
            .push(Seen::new(method, token, accepted));
        if !accepted {
            self.state.rejected.send_modify(|n| *n += 1);
        }
        accepted
    }
}

impl NamedService for DocsServer {
    const NAME: &'static str = "test.Docs";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Service<http::Request<Body>> for DocsServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let server = self.clone();
        Box::pin(async move {
            let method = match req.uri().path() {
                GET => "Get",
                UPLOAD => "Upload",
                _ => return Ok(Status::unimplemented("no such method").into_http()),
            };
            if !server.authorize(method, req.headers()) {
                if server
                    .state
                    .read_body_before_rejecting
                    .load(Ordering::SeqCst)
                {
                    let _ = req.into_body().collect().await;
                }
                return Ok(Status::unauthenticated("token expired or revoked").into_http());
            }
            let res = if method == "Get" {
                let codec = ProstCodec::<Doc, GetRequest>::default();
                tonic::server::Grpc::new(codec).unary(GetMethod, req).await
            } else {
                let codec = ProstCodec::<UploadSummary, Chunk>::default();
                let upload = UploadMethod(server.clone());
                tonic::server::Grpc::new(codec)
                    .client_streaming(upload, req)
                    .await
            };
            Ok(res)
        })
    }
}

struct GetMethod;

impl UnaryService<GetRequest> for GetMethod {
    type Response = Doc;
    type Future = BoxFuture<Result<Response<Doc>, Status>>;

    fn call(&mut self, req: Request<GetRequest>) -> Self::Future {
        let id = req.into_inner().id;
        Box::pin(async move {
            Ok(Response::new(Doc {
                title: format!("Document {id}"),
                id,
            }))
        })
    }
}

struct UploadMethod(DocsServer);

impl ClientStreamingService<Chunk> for UploadMethod {
    type Response = UploadSummary;
    type Future = BoxFuture<Result<Response<UploadSummary>, Status>>;

    fn call(&mut self, req: Request<Streaming<Chunk>>) -> Self::Future {
        let server = self.0.clone();
        Box::pin(async move {
            let mut stream = req.into_inner();
            let mut summary = UploadSummary::of([]);
            while let Some(chunk) = stream.message().await? {
                summary.add(&chunk.data);
            }
            server.state.uploads.lock().unwrap().push(summary.clone());
            Ok(Response::new(summary))
        })
    }
}

/// A `test.Docs` client over any gRPC transport service, e.g. a tonic `Channel` behind
/// the OAuth layer.
#[derive(Clone)]
pub struct DocsClient<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T> DocsClient<T>
where
    T: GrpcService<Body>,
    T::Error: Into<tower_oauth::BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tower_oauth::BoxError> + Send,
{
    pub fn new(inner: T) -> Self {
        Self {
            inner: tonic::client::Grpc::new(inner),
        }
    }

    /// The unary `Get`.
    pub async fn get(&mut self, id: &str) -> Result<Doc, Status> {
        self.ready().await?;
        let req = Request::new(GetRequest { id: id.to_owned() });
        let path = PathAndQuery::from_static(GET);
        let codec = ProstCodec::<GetRequest, Doc>::default();
        Ok(self.inner.unary(req, path, codec).await?.into_inner())
    }

    /// The client-streaming `Upload`.
    pub async fn upload(
        &mut self,
        chunks: impl Stream<Item = Chunk> + Send + 'static,
    ) -> Result<UploadSummary, Status> {
        self.ready().await?;
        let path = PathAndQuery::from_static(UPLOAD);
        let codec = ProstCodec::<Chunk, UploadSummary>::default();
        let res = self
            .inner
            .client_streaming(Request::new(chunks), path, codec)
            .await?;
        Ok(res.into_inner())
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("service not ready: {}", e.into())))
    }
}
