//! One cluster in one data directory: initialise, start, stop, report.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::info;

use crate::auth;
use crate::bindir::find_bindir;
use crate::exec::{
    absolute, create_dirs, free_port, hand_over, io_err, is_root, port_is_free, run, server_command, tail_file, DirLock,
};
use crate::sql;
use crate::{Error, Result};

/// The database `ensure_running` makes sure of, and [`Cluster::database_url`] points at.
const DEFAULT_DB: &str = "reproject";

/// What the cluster is tuned for. Written into `postgresql.conf` when the cluster is
/// initialised; a later start with another profile keeps the first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Demo and benchmarks: durable (fsync on) but commits do not wait for their WAL flush; WAL
    /// is minimal, so a COPY into a table created or truncated in the same transaction skips
    /// WAL; big buffers and a long checkpoint interval.
    Bulk,
    /// Tests: nothing is durable (fsync and full-page writes off), no autovacuum to make
    /// timings noisy, many connections for many parallel tests.
    Test,
}

impl Profile {
    /// The settings appended to `postgresql.conf`.
    fn settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Profile::Bulk => &[
                ("fsync", "on"),
                ("synchronous_commit", "off"),
                ("wal_level", "minimal"),
                // wal_level=minimal refuses to start with WAL senders configured.
                ("max_wal_senders", "0"),
                ("shared_buffers", "1GB"),
                ("work_mem", "64MB"),
                ("maintenance_work_mem", "1GB"),
                ("max_wal_size", "16GB"),
                ("checkpoint_timeout", "30min"),
                ("autovacuum", "on"),
                ("max_connections", "200"),
                // The benchmarks measure one backend's work; parallel plans would blur that.
                ("max_parallel_workers_per_gather", "0"),
                // pg_stat_wal's timing columns are read by the benchmarks.
                ("track_wal_io_timing", "on"),
            ],
            Profile::Test => &[
                ("fsync", "off"),
                ("synchronous_commit", "off"),
                ("full_page_writes", "off"),
                ("wal_level", "minimal"),
                ("max_wal_senders", "0"),
                ("shared_buffers", "256MB"),
                ("max_connections", "300"),
                ("autovacuum", "off"),
            ],
        }
    }
}

/// Where and how to run a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The data directory (created, with missing parents, on first use).
    pub data_dir: PathBuf,
    /// A fixed port; `None` reuses the port of the last start when it is free, else picks a
    /// free loopback port.
    pub port: Option<u16>,
    /// The tuning written at initialisation.
    pub profile: Profile,
}

impl ClusterConfig {
    /// The CLI's embedded default: [`Profile::Bulk`], any free port.
    pub fn bulk(data_dir: impl Into<PathBuf>) -> ClusterConfig {
        ClusterConfig { data_dir: data_dir.into(), port: None, profile: Profile::Bulk }
    }

    /// A cluster for tests: [`Profile::Test`], any free port.
    pub fn test(data_dir: impl Into<PathBuf>) -> ClusterConfig {
        ClusterConfig { data_dir: data_dir.into(), port: None, profile: Profile::Test }
    }
}

/// A running cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Its data directory (absolute).
    pub data_dir: PathBuf,
    /// The loopback port it listens on.
    pub port: u16,
    /// The `postgres` superuser's password (from `reproject.password` in the data directory).
    pub password: String,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster").field("data_dir", &self.data_dir).field("port", &self.port).finish_non_exhaustive()
    }
}

/// What [`Cluster::status`] reports.
#[derive(Debug, Clone)]
pub struct Status {
    /// The data directory (absolute).
    pub data_dir: PathBuf,
    /// Whether initdb has run there.
    pub initialized: bool,
    /// Whether a server runs there now.
    pub running: bool,
    /// The port it listens on (running), or listened on last (stopped).
    pub port: Option<u16>,
    /// The postmaster's pid, when running.
    pub pid: Option<u32>,
    /// The URL of the `reproject` database (with its password), when running.
    pub url: Option<String>,
    /// The server log.
    pub log_file: PathBuf,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (self.initialized, self.running, self.pid) {
            (false, _, _) => "not initialised".to_owned(),
            (true, true, Some(pid)) => format!("running (pid {pid})"),
            (true, true, None) => "running".to_owned(),
            (true, false, _) => "stopped".to_owned(),
        };
        writeln!(f, "postgresql: {state}")?;
        writeln!(f, "data dir:   {}", self.data_dir.display())?;
        if let Some(port) = self.port {
            writeln!(f, "port:       {port}{}", if self.running { "" } else { " (last used)" })?;
        }
        if self.url.is_some() {
            // The URL carries the password: `reproject db url` prints it, a status does not.
            writeln!(
                f,
                "url:        `reproject db url` (password in {})",
                auth::password_path(&self.data_dir).display()
            )?;
        }
        write!(f, "log file:   {}", self.log_file.display())
    }
}

/// What we remember between processes, in the data directory.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    port: u16,
}

fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("reproject.json")
}

/// The server log: pg_ctl's `-l` file, inside the data directory so that it goes wherever the
/// cluster goes and the `postgres` user can always write it.
pub(crate) fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server.log")
}

fn is_initialized(data_dir: &Path) -> bool {
    data_dir.join("PG_VERSION").is_file()
}

fn read_state(data_dir: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(state_path(data_dir)).ok()?;
    serde_json::from_str::<StateFile>(&text).ok().map(|s| s.port)
}

fn write_state(data_dir: &Path, port: u16) -> Result<()> {
    let path = state_path(data_dir);
    let text = serde_json::to_string(&StateFile { port }).expect("state serialises");
    std::fs::write(&path, text).map_err(io_err("writing", &path))
}

/// The pid and port of the running postmaster, from `postmaster.pid` (its first and fourth
/// lines), which is the truth even when our state file is missing or stale.
fn read_pid_file(data_dir: &Path) -> Option<(u32, u16)> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    let port = lines.nth(2)?.trim().parse().ok()?;
    Some((pid, port))
}

/// Runs initdb into `data_dir` (created and handed to `postgres` if needed) with a new random
/// superuser password (`scram-sha-256` on every connection, the password kept in
/// `reproject.password`, mode 0600) and appends the listening setup and the profile's settings
/// to `postgresql.conf`. Returns the password.
pub(crate) fn initdb(bindir: &Path, data_dir: &Path, profile: Profile) -> Result<String> {
    create_dirs(data_dir)?;
    // Also when it existed (empty) before: initdb runs as postgres and must own it.
    hand_over(data_dir)?;
    // initdb wants an empty data directory, so the password file waits beside it (0600, the
    // server's user's) and moves in once initdb is done.
    let password = auth::generate()?;
    let mut pwfile = data_dir.as_os_str().to_owned();
    pwfile.push(".initdb-password");
    let pwfile = PathBuf::from(pwfile);
    let _ = std::fs::remove_file(&pwfile);
    auth::write_password_file(&pwfile, &password)?;
    let mut cmd = server_command(bindir, "initdb");
    cmd.arg("-D").arg(data_dir).args([
        "-U",
        "postgres",
        "--auth=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C.UTF-8",
        "--no-instructions",
    ]);
    cmd.arg(format!("--pwfile={}", pwfile.display()));
    if profile == Profile::Test {
        // A throwaway cluster need not survive a crash of the machine.
        cmd.arg("--no-sync");
    }
    let ran = run(cmd).map_err(|e| permission_hint(e, data_dir));
    if let Err(e) = ran {
        let _ = std::fs::remove_file(&pwfile);
        return Err(e);
    }
    let kept = auth::password_path(data_dir);
    std::fs::rename(&pwfile, &kept).map_err(io_err("moving the password file to", &kept))?;
    // TCP on loopback only; no Unix socket, whose path length is limited to ~100 bytes and
    // whose default directory (/var/run/postgresql) may not exist or be writable.
    let mut conf = String::from("\n# written by reproject's pgharness\nlisten_addresses = '127.0.0.1'\n");
    conf.push_str("unix_socket_directories = ''\n");
    for (key, value) in profile.settings() {
        conf.push_str(&format!("{key} = '{value}'\n"));
    }
    let path = data_dir.join("postgresql.conf");
    let mut file = std::fs::OpenOptions::new().append(true).open(&path).map_err(io_err("opening", &path))?;
    std::io::Write::write_all(&mut file, conf.as_bytes()).map_err(io_err("writing", &path))?;
    info!(dir = %data_dir.display(), ?profile, "cluster initialised");
    Ok(password)
}

/// Starts the cluster in `data_dir` on `port` and waits (up to 60 s) until it accepts
/// connections. A failure carries the last 20 lines of the server log, where the reason is.
pub(crate) fn start(bindir: &Path, data_dir: &Path, port: u16) -> Result<()> {
    let log = log_path(data_dir);
    let mut cmd = server_command(bindir, "pg_ctl");
    cmd.arg("-D").arg(data_dir).arg("-l").arg(&log).args(["-w", "-t", "60", "-o"]).arg(format!("-p {port}"));
    cmd.arg("start");
    run(cmd)
        .map_err(|e| match e {
            Error::Command { command, status, output } => Error::Command {
                command,
                status,
                output: format!("{output}\nlast lines of {}:\n{}", log.display(), tail_file(&log, 20)),
            },
            other => other,
        })
        .map_err(|e| permission_hint(e, data_dir))?;
    info!(dir = %data_dir.display(), port, "cluster started");
    Ok(())
}

/// Adds a hint to a "Permission denied" failure when we are root: the server runs as
/// `postgres`, which must be able to traverse every directory above the data directory (a
/// data directory under /root, or under a 0700 temporary directory, is out of its reach).
fn permission_hint(err: Error, data_dir: &Path) -> Error {
    match err {
        Error::Command { command, status, output } if is_root() && output.contains("Permission denied") => {
            let output = format!(
                "{output}\nhint: the server runs as the postgres user, which needs search (x) permission on every \
                 directory above {} (e.g. `chmod o+x` them, or pick a data directory elsewhere)",
                data_dir.display()
            );
            Error::Command { command, status, output }
        }
        other => other,
    }
}

/// Whether a server runs in `data_dir`, per `pg_ctl status` (exit 0: running; 3: not running;
/// 4: no data directory).
fn is_running(bindir: &Path, data_dir: &Path) -> bool {
    let mut cmd = server_command(bindir, "pg_ctl");
    cmd.arg("-D").arg(data_dir).arg("status");
    cmd.stdin(std::process::Stdio::null()).output().map(|o| o.status.success()).unwrap_or(false)
}

/// Stops the server in `data_dir` (fast mode) and waits until it is down; the caller holds
/// the directory lock.
fn stop_server(bindir: &Path, data_dir: &Path) -> Result<()> {
    let mut cmd = server_command(bindir, "pg_ctl");
    cmd.arg("-D").arg(data_dir).args(["-m", "fast", "-w", "stop"]);
    run(cmd)?;
    info!(dir = %data_dir.display(), "cluster stopped");
    Ok(())
}

/// Whether a failed start failed because another program holds the port (so a new port helps).
fn port_was_taken(err: &Error) -> bool {
    matches!(err, Error::Command { output, .. }
        if output.contains("could not bind") || output.contains("Address already in use"))
}

/// The directory whose lock serialises work on `data_dir` (its parent, created if missing).
fn lock_dir(data_dir: &Path) -> Result<PathBuf> {
    let parent = data_dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("/"));
    create_dirs(parent)?;
    Ok(parent.to_path_buf())
}

impl Cluster {
    /// Initialises (first time), starts (when stopped) or reuses (when running) the cluster in
    /// `config.data_dir`, and makes sure the `reproject` database exists. Idempotent, and safe
    /// to call from several processes at once (they serialise on a lock of the parent
    /// directory). A stopped cluster restarts on the port it used last when that is free.
    pub fn ensure_running(config: &ClusterConfig) -> Result<Cluster> {
        let bindir = find_bindir()?;
        let dir = absolute(&config.data_dir)?;
        let parent = lock_dir(&dir)?;
        let _lock = DirLock::acquire(&parent)?;
        if !is_initialized(&dir) {
            initdb(&bindir, &dir, config.profile)?;
        }
        // A cluster initialised by an older harness trusts every local connection: lock it.
        let legacy = auth::trusts(&dir)?;
        if legacy && !auth::password_path(&dir).is_file() {
            auth::write_password_file(&auth::password_path(&dir), &auth::generate()?)?;
        }
        let password = auth::read_password(&dir)?;
        let port = if is_running(&bindir, &dir) {
            let port = read_pid_file(&dir)
                .map(|(_, port)| port)
                .or_else(|| read_state(&dir))
                .ok_or_else(|| Error::UnknownPort { dir: dir.display().to_string() })?;
            info!(dir = %dir.display(), port, "cluster already running");
            port
        } else {
            Self::start_stopped(&bindir, &dir, config.port)?
        };
        let port = if legacy {
            // Set the password while trust still lets us in, then restart on the new
            // pg_hba.conf: a reload would apply it at some later instant, a restart before
            // this returns.
            sql::set_password(port, &password)?;
            auth::write_hba(&dir)?;
            stop_server(&bindir, &dir)?;
            let port = Self::start_stopped(&bindir, &dir, config.port.or(Some(port)))?;
            info!(dir = %dir.display(), "cluster locked: scram-sha-256 with the password in reproject.password");
            port
        } else {
            port
        };
        sql::ensure_database(port, &password, DEFAULT_DB)?;
        Ok(Cluster { data_dir: dir, port, password })
    }

    /// Starts the stopped cluster in `dir`: on `fixed` if given, else on the last port if free,
    /// else on a new free port (retried when another program takes it first).
    fn start_stopped(bindir: &Path, dir: &Path, fixed: Option<u16>) -> Result<u16> {
        let mut port = match (fixed, read_state(dir)) {
            (Some(port), _) => port,
            (None, Some(port)) if port_is_free(port) => port,
            _ => free_port()?,
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            match start(bindir, dir, port) {
                Ok(()) => break,
                Err(e) if fixed.is_none() && attempts < 3 && port_was_taken(&e) => {
                    tracing::warn!(port, "port taken before the server bound it; trying another");
                    port = free_port()?;
                }
                Err(e) => return Err(e),
            }
        }
        write_state(dir, port)?;
        Ok(port)
    }

    /// Reports the cluster in `data_dir`: initialised, running, port, pid, URL, log file.
    pub fn status(data_dir: &Path) -> Result<Status> {
        let dir = absolute(data_dir)?;
        let initialized = is_initialized(&dir);
        // The binaries are needed only to ask about an initialised cluster.
        let running = initialized && is_running(&find_bindir()?, &dir);
        let from_pid = if running { read_pid_file(&dir) } else { None };
        let port = from_pid.map(|(_, port)| port).or_else(|| read_state(&dir));
        let password = if running { auth::read_password(&dir).ok() } else { None };
        let url = port.zip(password).map(|(port, password)| sql::url(port, &password, DEFAULT_DB));
        Ok(Status {
            log_file: log_path(&dir),
            data_dir: dir,
            initialized,
            running,
            port,
            pid: from_pid.map(|(pid, _)| pid),
            url,
        })
    }

    /// Stops the cluster in `data_dir` (fast mode: open sessions are ended, data is flushed) and
    /// waits until it is down. A no-op when it is not initialised or not running.
    pub fn stop(data_dir: &Path) -> Result<()> {
        let dir = absolute(data_dir)?;
        if !is_initialized(&dir) {
            return Ok(());
        }
        let bindir = find_bindir()?;
        let parent = lock_dir(&dir)?;
        let _lock = DirLock::acquire(&parent)?;
        if is_running(&bindir, &dir) {
            stop_server(&bindir, &dir)?;
        }
        Ok(())
    }

    /// The URL of database `db` with the password, e.g.
    /// `postgresql://postgres:5f0c…@127.0.0.1:54321/db`.
    pub fn url(&self, db: &str) -> String {
        sql::url(self.port, &self.password, db)
    }

    /// The URL of the `reproject` database.
    pub fn database_url(&self) -> String {
        self.url(DEFAULT_DB)
    }
}
