//! End-to-end runs of the `simpledocs` example binary against its embedded mock server.
//!
//! Each test runs the compiled example as a child process (killed after a minute) and
//! reads its last stdout line, a JSON summary, and its stderr report. Fetch counts are
//! asserted against bounds derived from the token lifetimes: a token is renewed no
//! earlier than `lifetime - renew_ahead` after it was fetched (the layer clamps
//! `renew_ahead` to half the lifetime) and stops being used `lifetime - margin` after
//! it was fetched (`margin` is at most a tenth of the lifetime).
//!
//! The last tests run it against a hostile stand-in server (a thread on 127.0.0.1) whose
//! answers carry tokens, parts and encodings of the secret, and terminal escapes: none
//! of it may be printed.

use std::{
    collections::HashMap,
    fmt,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

/// The client-authentication options (`--auth-method`, `--dpop`, `--issuer`).
#[path = "demo/auth.rs"]
mod auth;

/// No run may take longer than this; the demo itself takes about 7 s.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The example binary, built first when it is missing or older than this test binary
/// (`cargo test --test demo` does not build examples; plain `cargo test` does).
fn example() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary has a path");
        // target/<profile>/deps/demo-<hash> -> target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("tests run from target/<profile>/deps");
        let bin = profile_dir
            .join("examples")
            .join(format!("simpledocs{}", std::env::consts::EXE_SUFFIX));
        let modified = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
        let stale = match (modified(&bin), modified(&exe)) {
            (Some(bin), Some(exe)) => bin < exe,
            _ => true,
        };
        if stale {
            let mut cargo = Command::new(env!("CARGO"));
            // Drop what cargo set for this test run: build scripts that watch these
            // variables would otherwise rebuild their crates.
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy();
                let set_by_cargo = [
                    "CARGO_PKG_",
                    "CARGO_MANIFEST_",
                    "CARGO_CRATE_",
                    "CARGO_BIN_",
                ]
                .iter()
                .any(|prefix| key.starts_with(prefix))
                    || key == "CARGO_PRIMARY_PACKAGE"
                    || key == "CARGO_TARGET_TMPDIR";
                if set_by_cargo {
                    cargo.env_remove(&*key);
                }
            }
            cargo.args(["build", "--example", "simpledocs", "--manifest-path"]);
            cargo.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
            // This test's own features, so that `--all-features` builds the example
            // with Redis (and reuses the library this test was built with).
            cargo.args(["--no-default-features", "--features", &enabled_features()]);
            if profile_dir
                .file_name()
                .is_some_and(|name| name == "release")
            {
                cargo.arg("--release");
            }
            let status = cargo.status().expect("cargo runs");
            assert!(status.success(), "cargo build --example simpledocs failed");
        }
        assert!(bin.exists(), "no example binary at {}", bin.display());
        bin
    })
}

/// What one run of the example produced.
struct Output {
    args: Vec<String>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "simpledocs {:?} exited with {:?}\n--- stdout\n{}--- stderr\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

impl Output {
    /// The last stdout line, parsed.
    fn summary(&self) -> Value {
        let last = self
            .stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("no stdout\n{self}"));
        serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON: {e}\n{self}"))
    }

    fn number(&self, key: &str) -> u64 {
        self.summary()[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} is not a number\n{self}"))
    }

    /// The `key=value` counters of the `mock:` stderr line.
    fn mock_stats(&self) -> HashMap<String, u64> {
        let line = self
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("mock: "))
            .unwrap_or_else(|| panic!("no mock line\n{self}"));
        line.split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.parse().expect("a counter")))
            .collect()
    }

    fn last_stderr_line(&self) -> &str {
        self.stderr.lines().last().unwrap_or_default()
    }

    /// How many stderr lines contain `text`.
    fn lines_with(&self, text: &str) -> usize {
        self.stderr.lines().filter(|l| l.contains(text)).count()
    }
}

/// Runs the example with `args`, without any credentials from the environment.
fn run(args: &[&str]) -> Output {
    let started = Instant::now();
    let mut child = Command::new(example())
        .args(args)
        .env_remove("SIMPLEDOCS_CLIENT_ID")
        .env_remove("SIMPLEDOCS_CLIENT_SECRET")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("piped")));
    let stderr = read_all(Box::new(child.stderr.take().expect("piped")));
    let (code, timed_out) = loop {
        if let Some(status) = child.try_wait().expect("wait for the example") {
            break (status.code(), false);
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            break (child.wait().ok().and_then(|s| s.code()), true);
        }
        thread::sleep(Duration::from_millis(20));
    };
    let out = Output {
        args: args.iter().map(|a| a.to_string()).collect(),
        code,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        elapsed: started.elapsed(),
    };
    assert!(!timed_out, "killed after {RUN_TIMEOUT:?}\n{out}");
    out
}

#[test]
fn the_demo_renews_tokens_ahead_of_expiry_and_recovers_from_a_revoke_without_a_failure() {
    let out = run(&[]);
    assert_eq!(out.code, Some(0), "{out}");
    let summary = out.summary();
    assert_eq!(summary["requests"], 80, "{out}");
    assert_eq!(summary["ok"], 80, "{out}");
    assert_eq!(summary["errors"], 0, "{out}");
    assert_eq!(summary["statuses"], json!({"200": 80}), "{out}");

    // 3 s tokens renewed 1 s ahead: renewal is due 2 s after a fetch, the token is
    // unusable after 2.7 s. Each half of the run (requests 1-40 before the revoke, 41-80
    // after) lasts at least 9 x 350 ms = 3.15 s > 2.7 s, so each half needs a renewal:
    // first + renewal + re-issue after the revoke + renewal = 4 at least. And fetches
    // are at least 2 s apart except for the re-issue, so at most 2 + elapsed / 2 s
    // (4 in a run of 7.1 s; 5 only if the machine stalled the run past 8 s).
    let fetches = out.number("token_fetches");
    let most = 2 + (out.elapsed.as_secs_f64() / 2.0) as u64;
    assert!(
        (4..=most).contains(&fetches),
        "{fetches} fetches, at most {most}\n{out}"
    );

    // The renewals happened while the old token was still usable, and every fetch was
    // reported.
    assert!(out.lines_with("renewed ahead of expiry") >= 2, "{out}");
    assert_eq!(out.lines_with("** token fetch #") as u64, fetches, "{out}");
    // Every token was asked for with the one scope the GETs need.
    assert_eq!(out.lines_with("(scope \"read\")") as u64, fetches, "{out}");

    // The recovery: the revoked token was rejected, and every rejected request was
    // replayed once and succeeded.
    assert_eq!(out.lines_with("RECOVERY TEST"), 1, "{out}");
    assert_eq!(
        out.lines_with("re-issued: the API rejected the token"),
        1,
        "{out}"
    );
    let mock = out.mock_stats();
    assert!(mock["api_token_expired"] >= 1, "{out}");
    assert_eq!(mock["api_ok"], 80, "{out}");
    assert_eq!(
        mock["api_requests"],
        80 + mock["api_token_expired"],
        "{out}"
    );
    assert_eq!(mock["tokens_issued"], fetches, "{out}");
}

#[test]
fn one_second_tokens_are_renewed_before_the_server_expires_them() {
    let out = run(&[
        "--requests",
        "60",
        "--concurrency",
        "4",
        "--interval-ms",
        "100",
        "--token-lifetime-secs",
        "1",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.number("ok"), 60, "{out}");
    assert_eq!(out.number("errors"), 0, "{out}");

    // 1 s tokens: renewal due after 667 ms, unusable after 900 ms. Each worker sleeps
    // 15 x 100 ms, so its requests span at least 1.4 s: at least 2 fetches. Renewals are
    // at least 667 ms apart: at most 1 + elapsed / 667 ms (3 in a run of 1.6 s).
    let fetches = out.number("token_fetches");
    let most = 1 + (out.elapsed.as_secs_f64() / (2.0 / 3.0)) as u64;
    assert!(
        (2..=most).contains(&fetches),
        "{fetches} fetches, at most {most}\n{out}"
    );

    // The server never saw an expired token: the layer renewed before it had to.
    let mock = out.mock_stats();
    assert_eq!(mock["api_token_expired"], 0, "{out}");
    assert_eq!(mock["tokens_issued"], fetches, "{out}");
}

#[test]
fn a_wrong_secret_fails_every_request_with_invalid_client_and_is_never_printed() {
    let secret = "wrong-secret-Zq7xW2";
    let out = run(&["--client-secret", secret]);
    assert_eq!(out.code, Some(1), "{out}");
    let reason = out.last_stderr_line();
    assert!(reason.starts_with("error: "), "{out}");
    assert!(reason.contains("invalid_client"), "{out}");

    let summary = out.summary();
    assert_eq!(summary["requests"], 10, "{out}");
    assert_eq!(summary["errors"], 10, "{out}");
    assert_eq!(summary["ok"], 0, "{out}");
    assert_eq!(summary["statuses"], json!({}), "{out}");
    // A rejected client is not retried in a loop: one fetch per 2 s cooldown.
    let fetches = out.number("token_fetches");
    let most = 1 + (out.elapsed.as_secs_f64() / 2.0) as u64;
    assert!((1..=most).contains(&fetches), "{fetches} fetches\n{out}");
    assert_eq!(out.mock_stats()["api_requests"], 0, "{out}");

    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(secret), "the secret was printed\n{out}");
        assert!(
            !text.contains("demo-secret"),
            "the mock's secret was printed\n{out}"
        );
    }
}

#[test]
fn by_method_scopes_fetch_exactly_one_read_and_one_write_token() {
    let out = run(&[
        "--scope-policy",
        "by-method",
        "--method",
        "mixed",
        "--scope",
        "read write",
        "--requests",
        "12",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    let summary = out.summary();
    assert_eq!(summary["statuses"], json!({"200": 6, "201": 6}), "{out}");
    assert_eq!(summary["token_fetches"], 2, "{out}");
    for scope in ["read", "write"] {
        let slot = format!("token slot scope=\"{scope}\" granted=\"{scope}\" ");
        let line = out.stderr.lines().find(|l| l.starts_with(&slot));
        let line = line.unwrap_or_else(|| panic!("no {scope} slot\n{out}"));
        assert!(line.ends_with(" fetches=1"), "{line}\n{out}");
    }
    assert_eq!(out.mock_stats()["tokens_issued"], 2, "{out}");
}

#[test]
fn a_buffered_post_body_larger_than_the_replay_limit_is_replayed_intact_across_a_revoke() {
    // 100 000 bytes is more than the 64 KiB replay limit for streaming bodies, but a
    // `Full` body is already in memory: it is replayed whatever its size. The mock
    // acknowledges each upload with its size and hash, which the example checks.
    let out = run(&[
        "--method",
        "POST",
        "--body-bytes",
        "100000",
        "--scope",
        "write",
        "--requests",
        "8",
        "--concurrency",
        "2",
        "--revoke-after",
        "4",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    let summary = out.summary();
    assert_eq!(summary["statuses"], json!({"201": 8}), "{out}");
    assert_eq!(summary["errors"], 0, "{out}");
    // 2-hour tokens: the first, and the re-issue after the revoke.
    assert_eq!(summary["token_fetches"], 2, "{out}");

    let mock = out.mock_stats();
    let rejected = mock["api_token_expired"];
    assert!(
        rejected >= 1,
        "no upload was rejected, so none was replayed\n{out}"
    );
    assert_eq!(mock["api_requests"], 8 + rejected, "{out}");
    assert_eq!(mock["api_ok"], 8, "{out}");
    assert_eq!(out.lines_with("body mismatch"), 0, "{out}");
}

#[test]
fn a_plain_http_token_url_off_loopback_is_refused_before_any_connection() {
    let out = run(&["--token-url", "http://example.invalid/token"]);
    assert_eq!(out.code, Some(1), "{out}");
    let reason = out.last_stderr_line();
    assert!(
        reason.starts_with("error: token request failed: config"),
        "{out}"
    );
    assert!(reason.contains("plain http"), "{out}");
    // Had it tried to connect, resolving `example.invalid` would have failed as a
    // transport error instead.
    assert_eq!(out.lines_with("transport"), 0, "{out}");

    let summary = out.summary();
    assert_eq!(summary["errors"], 10, "{out}");
    assert_eq!(summary["ok"], 0, "{out}");
    let mock = out.mock_stats();
    assert_eq!(
        (mock["token_requests"], mock["api_requests"]),
        (0, 0),
        "{out}"
    );
}

#[test]
fn without_a_scope_each_request_asks_for_the_scope_its_method_needs() {
    let out = run(&["--method", "mixed", "--requests", "8"]);
    assert_eq!(out.code, Some(0), "{out}");
    let summary = out.summary();
    assert_eq!(summary["statuses"], json!({"200": 4, "201": 4}), "{out}");
    assert_eq!(summary["token_fetches"], 2, "{out}");
    for scope in ["read", "write"] {
        let slot = format!("token slot scope=\"{scope}\" granted=\"{scope}\" ");
        assert_eq!(out.lines_with(&slot), 1, "no {scope} slot\n{out}");
    }
    assert_eq!(out.mock_stats()["api_insufficient_scope"], 0, "{out}");
}

#[test]
fn asking_for_no_scope_is_refused_with_invalid_scope_for_a_read_write_application() {
    // The mock's application has the `read write` scope, so it must ask for one.
    let out = run(&["--scope-policy", "fixed", "--requests", "3"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.last_stderr_line()
            .starts_with("error: token request failed: invalid_scope"),
        "{out}"
    );
    let summary = out.summary();
    assert_eq!(summary["errors"], 3, "{out}");
    assert_eq!(summary["statuses"], json!({}), "{out}");
    let mock = out.mock_stats();
    assert!(mock["token_errors"] >= 1, "{out}");
    assert_eq!(
        (mock["tokens_issued"], mock["api_requests"]),
        (0, 0),
        "{out}"
    );
}

#[test]
fn a_token_without_the_write_scope_is_reported_as_insufficient_scope() {
    // A `read` token; uploads need `write`.
    let out = run(&["--method", "POST", "--scope", "read", "--requests", "6"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(
        out.last_stderr_line(),
        "error: 403 insufficient_scope",
        "{out}"
    );
    let summary = out.summary();
    assert_eq!(summary["statuses"], json!({"403": 6}), "{out}");
    assert_eq!(summary["errors"], 0, "{out}");
    // A 403 is not a rejected token: no re-issue.
    assert_eq!(summary["token_fetches"], 1, "{out}");
}

#[test]
fn partial_failures_are_counted_per_status_and_named_with_their_share() {
    // A read-only token: the GETs succeed, the POSTs of `mixed` get 403.
    let out = run(&["--method", "mixed", "--scope", "read", "--requests", "10"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(
        out.last_stderr_line(),
        "error: 5 of 10 requests failed: 403 insufficient_scope",
        "{out}"
    );
    let summary = out.summary();
    assert_eq!(summary["ok"], 5, "{out}");
    assert_eq!(summary["statuses"], json!({"200": 5, "403": 5}), "{out}");
    assert_eq!(summary["errors"], 0, "{out}");
}

#[test]
fn basic_client_authentication_gets_a_token_from_the_mock() {
    let out = run(&["--auth-method", "basic", "--requests", "5"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.number("ok"), 5, "{out}");
    assert_eq!(out.number("token_fetches"), 1, "{out}");
}

#[test]
fn an_added_token_parameter_is_sent_and_one_the_grant_sets_is_refused() {
    let out = run(&["--param", "audience=https://api.example", "--requests", "3"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.number("ok"), 3, "{out}");

    let out = run(&["--param", "scope=admin", "--requests", "3"]);
    assert_eq!(out.code, Some(1), "{out}");
    let reason = out.last_stderr_line();
    assert!(
        reason.starts_with("error: token request failed: config"),
        "{out}"
    );
    assert!(reason.contains("`scope`"), "{out}");
    assert!(!reason.contains("admin"), "{out}");
    assert_eq!(out.mock_stats()["token_requests"], 0, "{out}");
}

#[test]
fn help_lists_the_options_and_an_unknown_option_is_a_usage_error() {
    let help = run(&["--help"]);
    assert_eq!(help.code, Some(0), "{help}");
    for option in [
        "--base-url",
        "--token-url",
        "--scope-policy",
        "--param",
        "--revoke-after",
    ] {
        assert!(help.stdout.contains(option), "{option} missing\n{help}");
    }

    let bad = run(&["--frobnicate"]);
    assert_eq!(bad.code, Some(2), "{bad}");
    // clap's words for an unknown option.
    assert!(
        bad.stderr.contains("unexpected argument '--frobnicate'"),
        "{bad}"
    );
    assert!(bad.stdout.is_empty(), "{bad}");

    // A body too large to build is a usage error, not a panic.
    let huge = run(&["--method", "POST", "--body-bytes", "18446744073709551615"]);
    assert_eq!(huge.code, Some(2), "{huge}");
    assert!(huge.stderr.contains("--body-bytes is at most"), "{huge}");
}

// ---------------------------------------------------------------------------------------
// A hostile server
// ---------------------------------------------------------------------------------------

/// A SimpleDocs stand-in on 127.0.0.1 that answers as scripted: its token endpoint
/// with `token_answer`, its API with each of `api_answers` in turn (status and JSON
/// body). It stops with the test process.
fn hostile_server(token_answer: (u16, String), api_answers: Vec<(u16, String)>) -> String {
    use std::{
        io::Write,
        net::{TcpListener, TcpStream},
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
    };

    fn serve(mut stream: TcpStream, answer: &dyn Fn(&str) -> (u16, String)) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let (status, body) = answer(&path);
        let _ = write!(
            stream,
            "HTTP/1.1 {status} Whatever\r\nContent-Type: application/problem+json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }

    let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
    let addr = listener.local_addr().expect("an address");
    let next = Arc::new(AtomicUsize::new(0));
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (token_answer, api_answers, next) =
                (token_answer.clone(), api_answers.clone(), next.clone());
            thread::spawn(move || {
                serve(stream, &|path| {
                    if path.ends_with("/oauth/token") {
                        return token_answer.clone();
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    api_answers[i % api_answers.len()].clone()
                })
            });
        }
    });
    format!("http://{addr}")
}

/// Runs of 8 characters of `secret` (by characters) found in `text`.
fn runs_of(secret: &str, text: &str) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .windows(8)
        .map(|w| w.iter().collect::<String>())
        .filter(|run| text.contains(run.as_str()))
        .collect()
}

/// What a run shows, as one text, for the checks.
fn all_output(out: &Output) -> String {
    format!("{}{}", out.stdout, out.stderr)
}

/// No control character but line ends, no bidirectional control.
#[track_caller]
fn assert_printable(out: &Output) {
    let bad: Vec<char> = all_output(out)
        .chars()
        .filter(|&c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c))
        .collect();
    assert!(bad.is_empty(), "control characters {bad:?} printed\n{out}");
}

const HOSTILE_SECRET: &str = "h0stile-Secret/4-the+demo";
const HOSTILE_TOKEN: &str = "tok-Hx7w-4c9e1f27b3d5a8";

#[test]
fn a_hostile_api_gets_neither_a_secret_nor_a_token_nor_a_control_character_printed() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let token = (
        200,
        json!({"access_token": HOSTILE_TOKEN, "token_type": "Bearer", "expires_in": 3600})
            .to_string(),
    );
    let api = vec![
        (
            401,
            json!({"type": format!("https://e/{HOSTILE_TOKEN}")}).to_string(),
        ),
        (
            400,
            json!({"type": "\u{1b}[2K\r\u{1b}[1Aall 6 requests succeeded\n"}).to_string(),
        ),
        (
            400,
            json!({"type": "bad\r\nall 6 requests succeeded\r\n"}).to_string(),
        ),
        (
            500,
            json!({"error": format!("secret {} is wrong", &HOSTILE_SECRET[..21])}).to_string(),
        ),
        (403, json!({"type": b64.encode(HOSTILE_SECRET)}).to_string()),
        (
            409,
            json!({"error": format!("\u{202e}{}", b64.encode(HOSTILE_TOKEN))}).to_string(),
        ),
    ];
    let base = hostile_server(token, api);
    let out = run(&[
        "--base-url",
        &base,
        "--client-id",
        "hostile-id",
        "--client-secret",
        HOSTILE_SECRET,
        "--requests",
        "6",
        "--concurrency",
        "1",
    ]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.summary()["ok"], 0, "{out}");
    assert_eq!(out.summary()["token_fetches"], 1, "{out}");
    let text = all_output(&out);
    for secret in [
        HOSTILE_SECRET.to_owned(),
        HOSTILE_TOKEN.to_owned(),
        b64.encode(HOSTILE_SECRET),
        b64.encode(HOSTILE_TOKEN),
    ] {
        assert_eq!(runs_of(&secret, &text), Vec::<String>::new(), "{out}");
    }
    assert_printable(&out);
    // The server's text cannot make a line of its own.
    assert_eq!(
        out.stderr.lines().filter(|l| l.starts_with("all ")).count(),
        0,
        "{out}"
    );
    // The run says what failed: each status, with what could be shown of its type.
    assert!(out.lines_with("-> 401 ") >= 1, "{out}");
    assert!(out.lines_with("redacted") >= 1, "{out}");
}

#[test]
fn a_hostile_token_endpoint_gets_no_part_of_the_secret_printed() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let form = format!(
        "grant_type=client_credentials&scope=read&client_id=hostile-id&client_secret={}",
        HOSTILE_SECRET.replace('/', "%2F").replace('+', "%2B")
    );
    let token = (
        500,
        json!({
            "error": "server_error",
            "error_description": format!(
                "bad secret {} in \u{1b}[31m{}\r\nall 3 requests succeeded",
                &HOSTILE_SECRET[..21],
                b64.encode(&form)
            ),
        })
        .to_string(),
    );
    let base = hostile_server(token, vec![(200, "{}".to_owned())]);
    let out = run(&[
        "--base-url",
        &base,
        "--client-id",
        "hostile-id",
        "--client-secret",
        HOSTILE_SECRET,
        "--requests",
        "3",
    ]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.last_stderr_line().contains("server_error"), "{out}");
    let text = all_output(&out);
    for secret in [
        HOSTILE_SECRET.to_owned(),
        b64.encode(&form)[56..].to_owned(),
    ] {
        assert_eq!(runs_of(&secret, &text), Vec::<String>::new(), "{out}");
    }
    assert_printable(&out);
}

#[test]
fn user_info_in_a_url_is_never_printed_and_the_banner_shows_the_url_without_it() {
    let base = hostile_server((500, "{}".to_owned()), vec![(200, "{}".to_owned())]);
    let host = base.trim_start_matches("http://");
    let with_user = format!("http://svc:pa55w0rd-in-url@{host}");
    for args in [
        vec!["--base-url", with_user.as_str()],
        vec![
            "--base-url",
            base.as_str(),
            "--token-url",
            &format!("{with_user}/api/oauth/token"),
        ],
    ] {
        let mut args: Vec<&str> = args;
        args.extend([
            "--client-id",
            "id",
            "--client-secret",
            HOSTILE_SECRET,
            "--requests",
            "1",
        ]);
        let out = run(&args);
        assert_eq!(out.code, Some(2), "{out}");
        let text = all_output(&out);
        for hidden in ["pa55w0rd", "svc:"] {
            assert!(!text.contains(hidden), "{hidden} printed\n{out}");
        }
        assert!(runs_of(HOSTILE_SECRET, &text).is_empty(), "{out}");
        // The banner names the server as the crate shows URLs.
        assert!(
            out.stderr.contains(&format!("http://<redacted>@{host}")),
            "{out}"
        );
        // And the refusal says how to pass credentials instead.
        assert!(
            out.last_stderr_line()
                .contains("AuthMethod::ClientSecretBasic"),
            "{out}"
        );
    }
}

#[test]
fn help_shows_no_secret_from_the_environment() {
    let out = Command::new(example())
        .arg("--help")
        .env("SIMPLEDOCS_CLIENT_SECRET", HOSTILE_SECRET)
        .env("SIMPLEDOCS_CLIENT_ID", "env-client-id")
        .output()
        .expect("the example runs");
    assert_eq!(out.status.code(), Some(0));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("SIMPLEDOCS_CLIENT_SECRET"), "{text}");
    assert!(runs_of(HOSTILE_SECRET, &text).is_empty(), "{text}");
}

// ---------------------------------------------------------------------------------------
// A fleet: processes sharing one Redis, and tenants
// ---------------------------------------------------------------------------------------

/// The crate features this test was built with, comma-separated, for the example build.
fn enabled_features() -> String {
    let features = [
        ("https", cfg!(feature = "https")),
        ("aws-lc-rs", cfg!(feature = "aws-lc-rs")),
        ("ring", cfg!(feature = "ring")),
        ("native-roots", cfg!(feature = "native-roots")),
        ("webpki-roots", cfg!(feature = "webpki-roots")),
        ("test-util", cfg!(feature = "test-util")),
        ("tonic", cfg!(feature = "tonic")),
        ("reqwest", cfg!(feature = "reqwest")),
        ("secrecy", cfg!(feature = "secrecy")),
        ("oauth2", cfg!(feature = "oauth2")),
        ("redis", cfg!(feature = "redis")),
        ("metrics", cfg!(feature = "metrics")),
        ("jwt", cfg!(feature = "jwt")),
    ];
    let on: Vec<&str> = features
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect();
    on.join(",")
}

#[test]
fn three_tenants_fetch_one_token_each_and_every_request_succeeds() {
    let out = run(&["--tenants", "3", "--requests", "12"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.number("ok"), 12, "{out}");
    assert_eq!(out.number("token_fetches"), 3, "{out}");
    assert_eq!(out.number("store_hits"), 0, "{out}");
    assert_eq!(out.mock_stats()["token_requests"], 3, "{out}");
    for tenant in ["tenant-1", "tenant-2", "tenant-3"] {
        let slot = format!("token slot tenant={tenant} scope=\"read\"");
        assert_eq!(out.lines_with(&slot), 1, "{slot}\n{out}");
    }
    // The tenants' secrets are the mock's `tenant-<i>-secret`.
    assert!(!all_output(&out).contains("-secret"), "{out}");
}

#[cfg(feature = "redis")]
#[allow(dead_code)]
#[path = "common/redis.rs"]
mod redis_server;

/// A store key for the runs below (32 bytes, base64); it must never be printed.
#[cfg(feature = "redis")]
const STORE_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

#[cfg(feature = "redis")]
#[test]
fn two_processes_sharing_one_redis_fetch_one_token_and_the_other_reads_it() {
    use tower_oauth::mock::{MockConfig, MockServer};

    let redis = redis_server::RedisServer::start();
    let rt = tokio::runtime::Runtime::new().expect("a runtime for the mock");
    let mock = rt
        .block_on(MockServer::start_with(MockConfig::new()))
        .expect("the mock starts");
    let (base, id, secret) = (mock.base_url(), mock.client_id(), mock.client_secret());
    let redis_url = redis.url();
    let args = [
        "--base-url",
        &base,
        "--client-id",
        id,
        "--client-secret",
        secret,
        "--redis-url",
        &redis_url,
        "--store-prefix",
        "demo-test:",
        "--store-key",
        STORE_KEY,
        "--requests",
        "4",
    ];
    // Both at once: one takes the store's lease and fetches, the other waits for it.
    let outs: Vec<Output> = thread::scope(|s| {
        let runs: Vec<_> = (0..2).map(|_| s.spawn(|| run(&args))).collect();
        runs.into_iter().map(|r| r.join().expect("a run")).collect()
    });
    for out in &outs {
        assert_eq!(out.code, Some(0), "{out}");
        assert_eq!(out.number("ok"), 4, "{out}");
        let text = all_output(out);
        assert!(!text.contains(secret) && !text.contains(STORE_KEY), "{out}");
    }
    let fetches: u64 = outs.iter().map(|o| o.number("token_fetches")).sum();
    let hits: u64 = outs.iter().map(|o| o.number("store_hits")).sum();
    let both = format!("{}\n{}", outs[0], outs[1]);
    assert_eq!((fetches, hits), (1, 1), "{both}");
    assert_eq!(mock.stats().token_requests, 1, "{both}");
    let reader = outs.iter().find(|o| o.number("store_hits") == 1).unwrap();
    assert_eq!(
        reader.lines_with("** token read from the store"),
        1,
        "{both}"
    );
}

#[cfg(feature = "redis")]
#[test]
fn a_store_key_that_is_not_32_bytes_of_base64_is_a_usage_error_that_does_not_echo_it() {
    let redis = redis_server::RedisServer::start();
    let key = "bm90LWEta2V5LXNlY3JldA==";
    let out = run(&["--redis-url", &redis.url(), "--store-key", key]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("--store-key is not"), "{out}");
    assert!(!all_output(&out).contains(key), "{out}");
}
