//! The tests' cluster: one per test process, removed by a watchdog when the process is gone.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::bindir::find_bindir;
use crate::cluster::{free_port, hand_over, initdb, run, start, Profile};

/// A throwaway cluster shared by the tests of one process; each test takes a fresh database.
#[derive(Debug)]
pub struct Throwaway {
    bindir: PathBuf,
    dir: PathBuf,
    port: u16,
    next: AtomicU64,
}

static THROWAWAY: OnceLock<Throwaway> = OnceLock::new();

/// The process's throwaway cluster, started on first use (safe from any thread, sync or async).
/// Panics with the harness's error when no cluster can be started: tests need one.
pub fn throwaway() -> &'static Throwaway {
    THROWAWAY.get_or_init(|| Throwaway::start().unwrap_or_else(|e| panic!("throwaway PostgreSQL: {e}")))
}

impl Throwaway {
    fn start() -> crate::Result<Throwaway> {
        let bindir = find_bindir()?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("reproject-test-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| crate::Error::Io { path: dir.display().to_string(), source })?;
        hand_over(&dir)?;
        let data = dir.join("data");
        initdb(&bindir, &data, Profile::Test)?;
        let port = free_port()?;
        start(&bindir, &data, port)?;
        // Statics are never dropped: a detached watchdog stops the cluster and removes its
        // directory once this process has exited.
        let pg_ctl = if is_root() {
            format!("runuser -u postgres -- {}/pg_ctl", bindir.display())
        } else {
            format!("{}/pg_ctl", bindir.display())
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {pg_ctl} -D '{data}' -m immediate stop; rm -rf '{dir}'",
            pid = std::process::id(),
            data = data.display(),
            dir = dir.display()
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|source| crate::Error::Io { path: "sh (watchdog)".into(), source })?;
        Ok(Throwaway { bindir, dir, port, next: AtomicU64::new(0) })
    }

    /// The cluster's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new, empty database and returns its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!("t{}_{}", std::process::id(), self.next.fetch_add(1, Ordering::Relaxed));
        let mut cmd = Command::new(self.bindir.join("createdb"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", &name]);
        run(cmd, "createdb").unwrap_or_else(|e| panic!("fresh database: {e}"));
        self.url(&name)
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
