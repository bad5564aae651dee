//! A throwaway Kafka-protocol broker: `tansu` on its sqlite storage, in a temporary directory,
//! on a free port. Tests share one per test process ([`Broker::shared`]); the demo and the
//! benches own one ([`Broker::start`]) and stop it when it is dropped. A detached watchdog
//! stops the broker and removes its directory once the process that started it is gone.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{Error, KafkaLog, Result};

/// Where `.ci/run` installs the broker (`cargo install --root`), relative to `$HOME`.
const CACHED: &str = ".cache/reproject/tansu/bin/tansu";

/// The `tansu` binary: `$TANSU`, else `tansu` on `PATH`, else `~/.cache/reproject/tansu/bin/tansu`.
pub fn tansu_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("TANSU") {
        return Ok(PathBuf::from(path));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        if let Some(found) = std::env::split_paths(&paths).map(|d| d.join("tansu")).find(|p| p.is_file()) {
            return Ok(found);
        }
    }
    let cached = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(CACHED));
    match cached {
        Some(path) if path.is_file() => Ok(path),
        _ => Err(Error::Broker(format!(
            "no `tansu` broker found ($TANSU, PATH, ~/{CACHED}); install it with \
             `cargo install tansu --version 0.6.0 --locked --features libsql --root ~/.cache/reproject/tansu` \
             (what .ci/run does), or point --log at a running Kafka cluster"
        ))),
    }
}

/// A running broker.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

static SHARED: OnceLock<Result<Broker, String>> = OnceLock::new();

impl Broker {
    /// Starts a broker on a free port of 127.0.0.1 and waits until it answers.
    pub fn start() -> Result<Broker> {
        let binary = tansu_binary()?;
        let dir = tempfile::Builder::new().prefix("tansu-").tempdir().map_err(|e| Error::Broker(e.to_string()))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::Broker(format!("no free port: {e}")))?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("tansu.log")).map_err(|e| Error::Broker(e.to_string()))?;
        let child = Command::new(&binary)
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db?maintenance_interval=5s"])
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| Error::Broker(e.to_string()))?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| Error::Broker(format!("{}: {e}", binary.display())))?;
        let broker = Broker { child, port, dir };
        broker.watchdog()?;
        broker.wait_ready(Duration::from_secs(20))?;
        tracing::info!(port, dir = %broker.dir.path().display(), "tansu broker started");
        Ok(broker)
    }

    /// The broker of this test process, started on first use.
    ///
    /// # Panics
    /// When it cannot start: the tests that need it cannot go on.
    pub fn shared() -> &'static Broker {
        match SHARED.get_or_init(|| Broker::start().map_err(|e| e.to_string())) {
            Ok(b) => b,
            Err(e) => panic!("cannot start the throwaway Kafka broker: {e}"),
        }
    }

    /// `HOST:PORT` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A topic on this broker.
    pub fn log(&self, topic: &str) -> KafkaLog {
        KafkaLog { brokers: self.bootstrap(), topic: topic.to_owned() }
    }

    /// The broker's own log file (for a failing test's message).
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("tansu.log")
    }

    fn wait_ready(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
                return Err(Error::Broker(format!("not listening after {within:?}; its log:\n{log}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A detached shell that stops the broker once this process is gone (statics are never
    /// dropped) and removes its directory.
    fn watchdog(&self) -> Result<()> {
        let script = format!(
            "while kill -0 {parent} 2>/dev/null && kill -0 {child} 2>/dev/null; do sleep 1; done; \
             kill {child} 2>/dev/null; sleep 1; kill -9 {child} 2>/dev/null; rm -rf '{dir}'",
            parent = std::process::id(),
            child = self.child.id(),
            dir = self.dir.path().display()
        );
        Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| Error::Broker(format!("watchdog: {e}")))?;
        Ok(())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
