//! A throwaway `redis-server` (or `valkey-server`) on 127.0.0.1, for store tests.
//!
//! Std only, so every test that includes `mod common;` compiles it.

use std::{
    env,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    thread,
    time::{Duration, Instant},
};

/// How long a server may take to answer its first `PING`.
const STARTUP: Duration = Duration::from_secs(10);

/// A Redis server of its own for one test: its own port and data directory, no
/// persistence. Dropping it kills the server and removes the directory.
pub struct RedisServer {
    binary: PathBuf,
    args: Vec<String>,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server; see [`RedisServer::start_with`].
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with `extra` arguments (`--requirepass`, ...) and waits until it
    /// answers.
    ///
    /// Panics if there is no server binary: tests that need one never skip.
    pub fn start_with(extra: &[&str]) -> Self {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let binary = find_binary();
        let port = free_port();
        let n = STARTED.fetch_add(1, Ordering::SeqCst);
        let dir = env::temp_dir().join(format!(
            "tower-oauth-redis-{}-{n}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary data directory");
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            dir.to_str().expect("a UTF-8 temp dir"),
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut server = Self {
            binary,
            args,
            port,
            dir,
            child: None,
        };
        server.spawn();
        server
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server now (SIGKILL), keeping its port and directory for
    /// [`restart`](Self::restart).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.log_path()).expect("a server log file");
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a second log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", self.binary.display()));
        self.child = Some(child);
        self.wait_until_it_answers();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Polls with a raw `PING` until the server answers `+PONG` (or `-NOAUTH`, which a
    /// server with a password answers once it is up).
    fn wait_until_it_answers(&mut self) {
        let deadline = Instant::now() + STARTUP;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "redis server exited ({status}) before answering; its log:\n{}",
                    self.log()
                );
            }
            if let Some(answer) = ping(addr) {
                if answer.starts_with("+PONG") || answer.starts_with("-NOAUTH") {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "redis server did not answer PING within {STARTUP:?}; its log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The first line a server answers to `PING`, if it answers at all.
fn ping(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(b"PING\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// `REDIS_SERVER`, else `redis-server` or `valkey-server` on `PATH`.
fn find_binary() -> PathBuf {
    if let Some(path) = env::var_os("REDIS_SERVER") {
        return PathBuf::from(path);
    }
    let path = env::var_os("PATH").unwrap_or_default();
    for name in ["redis-server", "valkey-server"] {
        if let Some(found) = env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| is_file(p))
        {
            return found;
        }
    }
    panic!(
        "these tests need a Redis server and found none: install one \
         (`apt-get install -y redis-server`) or set REDIS_SERVER to its path"
    );
}

fn is_file(path: &Path) -> bool {
    path.metadata().map(|m| m.is_file()).unwrap_or(false)
}

/// A port nobody listens on now (the OS's pick for a listener dropped at once).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
    listener.local_addr().expect("its address").port()
}
