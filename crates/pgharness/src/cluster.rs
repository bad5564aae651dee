//! One cluster in one data directory: initialise, start, stop, status.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use tracing::info;

use crate::bindir::find_bindir;
use crate::{Error, Result};

/// What the cluster is tuned for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Demo and benchmarks: durable (fsync on), but commits do not wait for their flush, WAL is
    /// minimal (so COPY into a table truncated in the same transaction skips WAL), big buffers.
    Bulk,
    /// Tests: nothing is durable (fsync off), small buffers, many connections.
    Test,
}

impl Profile {
    fn settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Profile::Bulk => &[
                ("fsync", "on"),
                ("synchronous_commit", "off"),
                ("wal_level", "minimal"),
                ("max_wal_senders", "0"),
                ("shared_buffers", "1GB"),
                ("work_mem", "64MB"),
                ("maintenance_work_mem", "1GB"),
                ("max_wal_size", "16GB"),
                ("checkpoint_timeout", "30min"),
                ("autovacuum", "on"),
                ("max_connections", "200"),
                ("max_parallel_workers_per_gather", "0"),
                ("track_wal_io_timing", "on"),
            ],
            Profile::Test => &[
                ("fsync", "off"),
                ("synchronous_commit", "off"),
                ("full_page_writes", "off"),
                ("wal_level", "minimal"),
                ("max_wal_senders", "0"),
                ("shared_buffers", "128MB"),
                ("max_connections", "300"),
                ("autovacuum", "off"),
                ("max_parallel_workers_per_gather", "0"),
            ],
        }
    }
}

/// Where and how to run a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub data_dir: PathBuf,
    /// A fixed port; `None` picks a free loopback port.
    pub port: Option<u16>,
    pub profile: Profile,
}

impl ClusterConfig {
    /// The CLI's embedded default.
    pub fn bulk(data_dir: PathBuf) -> ClusterConfig {
        ClusterConfig { data_dir, port: None, profile: Profile::Bulk }
    }
}

/// A running cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub data_dir: PathBuf,
    pub port: u16,
}

/// What `status` reports.
#[derive(Debug, Clone)]
pub struct Status {
    pub data_dir: PathBuf,
    pub initialized: bool,
    pub running: bool,
    pub port: Option<u16>,
    pub log_file: PathBuf,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "data dir:    {}", self.data_dir.display())?;
        writeln!(f, "initialized: {}", self.initialized)?;
        writeln!(f, "running:     {}", self.running)?;
        if let Some(port) = self.port {
            writeln!(f, "port:        {port}")?;
            if self.running {
                writeln!(f, "url:         {}", url(port, "reproject"))?;
            }
        }
        write!(f, "log file:    {}", self.log_file.display())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    port: u16,
}

fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("reproject_state.json")
}

fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server.log")
}

fn url(port: u16, db: &str) -> String {
    format!("postgresql://postgres@127.0.0.1:{port}/{db}")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.display().to_string(), source }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// uid and gid of the `postgres` user.
fn postgres_ids() -> Result<(u32, u32)> {
    let name = std::ffi::CString::new("postgres").expect("no nul");
    // SAFETY: getpwnam returns a pointer into static storage or null; read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(Error::NoPostgresUser);
    }
    // SAFETY: checked non-null above.
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// Makes `dir` owned by the postgres user when we run as root.
pub(crate) fn hand_over(dir: &Path) -> Result<()> {
    if !is_root() {
        return Ok(());
    }
    let (uid, gid) = postgres_ids()?;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(io(dir))
}

/// A command for a server binary, run as `postgres` when we are root.
pub(crate) fn server_command(bindir: &Path, program: &str) -> Command {
    let path = bindir.join(program);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

/// Runs a command to completion; a failure carries the tail of its output.
pub(crate) fn run(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd.output().map_err(|e| Error::Command {
        command: what.to_owned(),
        status: "not started".into(),
        output: e.to_string(),
    })?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(Error::Command { command: what.to_owned(), status: out.status.to_string(), output: tail(&text, 20) });
    }
    Ok(text)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A free loopback port (bound and released; a small race with other programs is accepted).
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::NoPort)?;
    Ok(listener.local_addr().map_err(Error::NoPort)?.port())
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Runs initdb into `data_dir` (created and handed to `postgres`) and writes the profile's
/// settings.
pub(crate) fn initdb(bindir: &Path, data_dir: &Path, profile: Profile) -> Result<()> {
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    hand_over(data_dir)?;
    let mut cmd = server_command(bindir, "initdb");
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"]);
    if profile == Profile::Test {
        cmd.arg("--no-sync");
    }
    run(cmd, "initdb")?;
    let mut conf = String::from("\n# reproject\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n");
    for (k, v) in profile.settings() {
        conf.push_str(&format!("{k} = '{v}'\n"));
    }
    let path = data_dir.join("postgresql.conf");
    let mut existing = std::fs::read_to_string(&path).map_err(io(&path))?;
    existing.push_str(&conf);
    std::fs::write(&path, existing).map_err(io(&path))?;
    info!(dir = %data_dir.display(), "cluster initialised");
    Ok(())
}

/// Starts the cluster in `data_dir` on `port` and waits until it accepts connections.
pub(crate) fn start(bindir: &Path, data_dir: &Path, port: u16) -> Result<()> {
    let log = log_path(data_dir);
    let mut cmd = server_command(bindir, "pg_ctl");
    cmd.arg("-D").arg(data_dir).arg("-l").arg(&log).args(["-w", "-t", "60", "-o"]).arg(format!("-p {port}")).arg("start");
    run(cmd, "pg_ctl start").map_err(|e| match e {
        Error::Command { command, status, output } => {
            let server_log = std::fs::read_to_string(&log).map(|t| tail(&t, 20)).unwrap_or_default();
            Error::Command { command, status, output: format!("{output}\nserver log:\n{server_log}") }
        }
        other => other,
    })?;
    info!(dir = %data_dir.display(), port, "cluster started");
    Ok(())
}

fn running(bindir: &Path, data_dir: &Path) -> bool {
    let mut cmd = server_command(bindir, "pg_ctl");
    cmd.arg("-D").arg(data_dir).arg("status");
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

/// Creates database `db` unless it exists.
pub(crate) fn create_database(bindir: &Path, port: u16, db: &str) -> Result<()> {
    let mut check = Command::new(bindir.join("psql"));
    check.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-Atc"]).arg(format!(
        "SELECT 1 FROM pg_database WHERE datname = '{}'",
        db.replace('\'', "''")
    ));
    if run(check, "psql")?.trim() == "1" {
        return Ok(());
    }
    let mut create = Command::new(bindir.join("createdb"));
    create.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", db]);
    run(create, "createdb")?;
    Ok(())
}

impl Cluster {
    /// Initialises (first time), starts (when stopped) or reuses (when running) the cluster,
    /// and makes sure the `reproject` database exists. Idempotent.
    pub fn ensure_running(config: &ClusterConfig) -> Result<Cluster> {
        let bindir = find_bindir()?;
        let dir = absolute(&config.data_dir)?;
        if !dir.join("PG_VERSION").is_file() {
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            initdb(&bindir, &dir, config.profile)?;
        }
        let saved = std::fs::read_to_string(state_path(&dir))
            .ok()
            .and_then(|t| serde_json::from_str::<StateFile>(&t).ok())
            .map(|s| s.port);
        let port = if running(&bindir, &dir) {
            saved.ok_or_else(|| Error::Command {
                command: "pg_ctl status".into(),
                status: "running".into(),
                output: format!("a cluster runs in {} but its port is unknown; stop it first", dir.display()),
            })?
        } else {
            let port = match (config.port, saved) {
                (Some(p), _) => p,
                (None, Some(p)) if port_is_free(p) => p,
                _ => free_port()?,
            };
            std::fs::write(state_path(&dir), serde_json::to_string(&StateFile { port }).expect("serialises"))
                .map_err(io(&dir))?;
            start(&bindir, &dir, port)?;
            port
        };
        create_database(&bindir, port, "reproject")?;
        Ok(Cluster { data_dir: dir, port })
    }

    /// Reports the cluster in `data_dir`.
    pub fn status(data_dir: &Path) -> Result<Status> {
        let dir = absolute(data_dir)?;
        let initialized = dir.join("PG_VERSION").is_file();
        let running = initialized && running(&find_bindir()?, &dir);
        let port = std::fs::read_to_string(state_path(&dir))
            .ok()
            .and_then(|t| serde_json::from_str::<StateFile>(&t).ok())
            .map(|s| s.port);
        Ok(Status { log_file: log_path(&dir), data_dir: dir, initialized, running, port })
    }

    /// Stops the cluster in `data_dir` (a no-op when it is not running).
    pub fn stop(data_dir: &Path) -> Result<()> {
        let bindir = find_bindir()?;
        let dir = absolute(data_dir)?;
        if dir.join("PG_VERSION").is_file() && running(&bindir, &dir) {
            let mut cmd = server_command(&bindir, "pg_ctl");
            cmd.arg("-D").arg(&dir).args(["-m", "fast", "-w", "stop"]);
            run(cmd, "pg_ctl stop")?;
            info!(dir = %dir.display(), "cluster stopped");
        }
        Ok(())
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        url(self.port, db)
    }

    /// The URL of the `reproject` database.
    pub fn database_url(&self) -> String {
        self.url("reproject")
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir().map_err(io(path))?.join(path))
    }
}
