//! A real, independently written authorization server for the client-authentication
//! tests: `node tests/oidc/server.mjs` (the pinned `oidc-provider` package) on
//! 127.0.0.1, started per test and stopped on drop.
//!
//! Needs `node` (20.19 or later) and `npm ci --prefix tests/oidc`; without them
//! [`OidcProvider::start`] panics with the fix instead of skipping.

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    thread,
    time::Duration,
};

/// How long the server may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The secret of the `secret-post`, `secret-basic`, `secret-jwt` and `dpop` clients
/// (32+ bytes, so it is also a valid HS256 key for `client_secret_jwt`). A test fixture.
pub const SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";

/// The subject DN registered for the `mtls` client (that of `client.pem`).
pub const CLIENT_SUBJECT_DN: &str = "CN=mtls,O=tower-oauth tests";

/// A running `tests/oidc/server.mjs`; killed on drop.
pub struct OidcProvider {
    child: Child,
    issuer: String,
    mtls: String,
    stderr: Arc<Mutex<String>>,
}

fn crate_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn node_setup_hint() -> &'static str {
    "the oidc-provider tests need Node.js 20.19+ on PATH and the server's packages: \
     run `npm ci --prefix tests/oidc` in the crate root"
}

/// Panics, saying how to fix it, unless `node` runs and `tests/oidc/node_modules` holds
/// oidc-provider.
pub fn require_node() {
    match Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`node --version` failed ({}): {}",
            out.status,
            node_setup_hint()
        ),
        Err(err) => panic!("`node` could not be run ({err}): {}", node_setup_hint()),
    }
    let package = crate_root().join("tests/oidc/node_modules/oidc-provider/package.json");
    assert!(
        package.is_file(),
        "{} is missing: {}",
        package.display(),
        node_setup_hint()
    );
}

/// The value of `"key":"..."` in the server's ready line (its values are plain URLs).
fn json_str(line: &str, key: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.get(key)?.as_str().map(str::to_owned)
}

impl OidcProvider {
    /// Starts the server on ports the OS chooses and waits (at most 20 s) for it to
    /// listen.
    ///
    /// # Panics
    ///
    /// If `node` or the server's packages are missing (with the fix), or the server
    /// does not come up (with its stderr).
    pub fn start() -> Self {
        require_node();
        let mut child = Command::new("node")
            .arg("tests/oidc/server.mjs")
            .current_dir(crate_root())
            .env("OIDC_PORT", "0")
            .env("OIDC_MTLS_PORT", "0")
            .stdin(Stdio::piped()) // closed when this process dies: the server then exits
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("spawning node failed ({err}): {}", node_setup_hint()));

        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut pipe = child.stderr.take().expect("stderr is piped");
            let sink = Arc::clone(&stderr);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }

        let (tx, rx) = mpsc::channel();
        {
            let stdout = child.stdout.take().expect("stdout is piped");
            thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                for line in lines.by_ref() {
                    let Ok(line) = line else { break };
                    if line.trim_start().starts_with('{') {
                        let _ = tx.send(line);
                        break;
                    }
                }
                // Keep draining so the server never blocks on a full pipe.
                for _ in lines {}
            });
        }

        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(err) => {
                let _ = child.kill();
                let status = child.wait().ok();
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "tests/oidc/server.mjs did not become ready ({err:?}; exit status {status:?}). \
                     Its stderr:\n{}\n({})",
                    stderr.lock().unwrap(),
                    node_setup_hint()
                );
            }
        };
        let (Some(issuer), Some(mtls)) = (json_str(&line, "issuer"), json_str(&line, "mtls"))
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tests/oidc/server.mjs printed an unexpected ready line: {line}");
        };
        Self {
            child,
            issuer,
            mtls,
            stderr,
        }
    }

    /// The issuer, `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The origin of the mTLS listener, `https://127.0.0.1:PORT2` (server certificate
    /// `server.pem`, signed by `ca.pem`).
    pub fn mtls_origin(&self) -> &str {
        &self.mtls
    }

    /// The token endpoint on plain HTTP.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// The token endpoint's mTLS alias (RFC 8705 §5), on HTTPS.
    pub fn mtls_token_endpoint(&self) -> String {
        format!("{}/token", self.mtls)
    }

    /// The introspection endpoint (RFC 7662) on plain HTTP; any secret client may call it.
    pub fn introspection_endpoint(&self) -> String {
        format!("{}/token/introspection", self.issuer)
    }

    /// The discovery document's URL.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// A file of `tests/fixtures/oidc/` (test-only keys and certificates).
    pub fn fixture(name: &str) -> PathBuf {
        crate_root().join("tests/fixtures/oidc").join(name)
    }

    /// What the server has written to stderr so far (notices, and with `OIDC_DEBUG=1` in
    /// the environment each refused request's error description).
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Runs `node tests/oidc/selfcheck.mjs` against this server: the configuration
    /// proven end to end with `jose`, independently of this crate. Returns its exit
    /// success and its output.
    pub fn selfcheck(&self) -> (bool, String) {
        let out = Command::new("node")
            .arg("tests/oidc/selfcheck.mjs")
            .arg(&self.issuer)
            .arg(&self.mtls)
            .current_dir(crate_root())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| panic!("spawning node failed ({err}): {}", node_setup_hint()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("tests/oidc/server.mjs stderr:\n{}", self.logs());
        }
    }
}

/// Sends `req` to the server over plain HTTP: the status and the JSON body (`Null` if
/// the body is not JSON).
pub async fn http(
    req: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> (u16, serde_json::Value) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let res = client.request(req).await.expect("request to oidc-provider");
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

impl OidcProvider {
    /// RFC 7662 introspection of `token` at the plain listener, authenticated as
    /// `secret-post`.
    pub async fn introspect(&self, token: &str) -> serde_json::Value {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("client_id", "secret-post")
            .append_pair("client_secret", SECRET)
            .finish();
        let req = http::Request::post(self.introspection_endpoint())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(http_body_util::Full::new(bytes::Bytes::from(form)))
            .unwrap();
        let (status, json) = http(req).await;
        assert_eq!(status, 200, "introspection answered {json}");
        json
    }
}
