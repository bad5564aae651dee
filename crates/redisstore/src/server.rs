//! A private `redis-server` from the Debian package: on a free loopback port, with a random
//! password, its data (the append-only file) in a directory of its own, AOF on with
//! `appendfsync always` (a write is acknowledged only once it is on disk), no RDB snapshots.
//! Used by the tests, the benches and `reproject redis start`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// The binary the Debian package installs.
pub const DEFAULT_BINARY: &str = "/usr/bin/redis-server";

/// How the server is started.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub binary: PathBuf,
    /// Where the append-only file and the server's log live.
    pub dir: PathBuf,
    pub port: u16,
    pub password: String,
    /// Detach (`--daemonize yes`, with a pid file in `dir`): the server outlives this process.
    pub daemonize: bool,
}

impl ServerConfig {
    /// The arguments of `redis-server`: loopback only, the password required, AOF with an
    /// fsync per write, no RDB saves, no other persistence to reason about.
    pub fn args(&self) -> Vec<String> {
        let dir = self.dir.to_string_lossy().into_owned();
        [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--protected-mode",
            "yes",
            "--requirepass",
            &self.password,
            "--dir",
            &dir,
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--daemonize",
            if self.daemonize { "yes" } else { "no" },
            "--pidfile",
            "redis.pid",
            "--logfile",
            "redis.log",
            // Bulk replays send one script call per partition: allow large requests.
            "--proto-max-bulk-len",
            "1gb",
            "--lua-time-limit",
            "60000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// The URL a client connects with.
    pub fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}/", self.password, self.port)
    }
}

/// A random password: 32 bytes of `/dev/urandom`, hex.
pub fn random_password() -> Result<String> {
    use std::io::Read;
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| Error::Server(format!("reading /dev/urandom: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Server(format!("no free port: {e}")))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| Error::Server(e.to_string()))
}

/// Starts `redis-server` with `config` and waits (up to 20 s) until it answers a PING with
/// the password.
pub fn spawn(config: &ServerConfig) -> Result<Child> {
    let mut child = Command::new(&config.binary)
        .args(config.args())
        .current_dir(&config.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::Server(format!("starting {}: {e}", config.binary.display())))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Server(format!(
                "redis-server exited with {status} at start (log: {})",
                config.dir.join("redis.log").display()
            )));
        }
        if ping(&config.url()).is_ok() {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Server(format!("redis-server on port {} did not answer within 20 s", config.port)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One PING over a blocking connection.
pub fn ping(url: &str) -> Result<()> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_connection_with_timeout(Duration::from_millis(500))?;
    redis::cmd("PING").query::<String>(&mut con)?;
    Ok(())
}

/// Asks the server at `url` to shut down (`SHUTDOWN`: with AOF on, the file is fsynced first).
/// The server closes the connection instead of answering, which is not an error here.
pub fn shutdown(url: &str) -> Result<()> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_connection_with_timeout(Duration::from_secs(2))?;
    match redis::cmd("SHUTDOWN").query::<()>(&mut con) {
        Ok(()) => Ok(()),
        Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A throwaway `redis-server`: a temporary directory, a free port, a random password; killed
/// (SIGKILL) and its directory removed on drop. [`Throwaway::restart`] shuts it down and starts
/// it again on the same directory and port: what survives is what the append-only file holds.
#[derive(Debug)]
pub struct Throwaway {
    config: ServerConfig,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Throwaway {
    /// Starts one with the Debian package's binary.
    pub fn start() -> Result<Throwaway> {
        let dir = tempfile::Builder::new()
            .prefix("redisstore-")
            .tempdir()
            .map_err(|e| Error::Server(format!("temporary directory: {e}")))?;
        let config = ServerConfig {
            binary: PathBuf::from(DEFAULT_BINARY),
            dir: dir.path().to_path_buf(),
            port: free_port()?,
            password: random_password()?,
            daemonize: false,
        };
        let child = spawn(&config)?;
        Ok(Throwaway { config, child: Some(child), _dir: dir })
    }

    /// The URL to connect with (password included).
    pub fn url(&self) -> String {
        self.config.url()
    }

    /// The URL without the password (a connection with it is refused).
    pub fn url_without_password(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.config.port)
    }

    pub fn port(&self) -> u16 {
        self.config.port
    }

    /// The server's directory (the append-only files, `redis.log`).
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// `SHUTDOWN`, wait for the process to exit, and start again on the same directory and
    /// port.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.child = Some(spawn(&self.config)?);
        Ok(())
    }

    /// `SHUTDOWN` and wait for the process to exit (up to 20 s, then SIGKILL).
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            shutdown(&self.url())?;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if child.try_wait().map_err(|e| Error::Server(e.to_string()))?.is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::Server("redis-server did not exit within 20 s of SHUTDOWN".into()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A long-lived `redis-server` of the CLI in a directory of its own (default
/// `.reproject/redis`): its port and password in `redis.json` (mode 0600), chosen at the first
/// start and kept, so that `reproject redis url` and `--store redis` find it again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Embedded {
    pub port: u16,
    pub password: String,
}

impl Embedded {
    fn file(dir: &Path) -> PathBuf {
        dir.join("redis.json")
    }

    /// The server's record in `dir`, if it was ever started there.
    pub fn load(dir: &Path) -> Result<Option<Embedded>> {
        match std::fs::read(Embedded::file(dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Server(format!("{}: {e}", Embedded::file(dir).display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Server(format!("{}: {e}", Embedded::file(dir).display()))),
        }
    }

    fn config(&self, dir: &Path) -> ServerConfig {
        ServerConfig {
            binary: PathBuf::from(DEFAULT_BINARY),
            dir: dir.to_path_buf(),
            port: self.port,
            password: self.password.clone(),
            daemonize: true,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}/", self.password, self.port)
    }

    /// Starts the server in `dir` unless it answers already (creating the directory and its
    /// record at the first start); returns its record.
    pub fn ensure_running(dir: &Path) -> Result<Embedded> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let io = |e: std::io::Error| Error::Server(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        let embedded = match Embedded::load(dir)? {
            Some(e) => e,
            None => {
                let e = Embedded { port: free_port()?, password: random_password()? };
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(Embedded::file(dir))
                    .map_err(io)?;
                use std::io::Write;
                file.write_all(&serde_json::to_vec(&e).expect("serializable")).map_err(io)?;
                e
            }
        };
        if ping(&embedded.url()).is_ok() {
            return Ok(embedded);
        }
        let config = embedded.config(dir);
        let status = Command::new(&config.binary)
            .args(config.args())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| Error::Server(format!("starting {}: {e}", config.binary.display())))?;
        if !status.success() {
            return Err(Error::Server(format!(
                "redis-server exited with {status} (log: {})",
                dir.join("redis.log").display()
            )));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while ping(&embedded.url()).is_err() {
            if Instant::now() > deadline {
                return Err(Error::Server(format!(
                    "redis-server on port {} did not answer within 20 s (log: {})",
                    embedded.port,
                    dir.join("redis.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(embedded)
    }

    /// Shuts the server in `dir` down (AOF fsynced first); false when it was not running.
    pub fn stop(dir: &Path) -> Result<bool> {
        let Some(embedded) = Embedded::load(dir)? else {
            return Ok(false);
        };
        if ping(&embedded.url()).is_err() {
            return Ok(false);
        }
        shutdown(&embedded.url())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while ping(&embedded.url()).is_ok() {
            if Instant::now() > deadline {
                return Err(Error::Server("redis-server still answers 20 s after SHUTDOWN".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(true)
    }
}
