//! The tests' cluster: one per test process, started on first use and removed by a detached
//! watchdog once the process is gone.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::bindir::find_bindir;
use crate::cluster::{initdb, start, Profile};
use crate::exec::{free_port, hand_over, io_err, is_root, sh_quote};
use crate::sql;
use crate::Result;

/// A throwaway cluster shared by the tests of one process; each test takes a fresh database.
#[derive(Debug)]
pub struct Throwaway {
    dir: PathBuf,
    port: u16,
    password: String,
    next: AtomicU64,
}

/// The result is kept, error included, so that when the cluster cannot start every test fails
/// at once with the same message instead of each retrying initdb.
static THROWAWAY: OnceLock<Result<Throwaway, String>> = OnceLock::new();

/// The process's throwaway cluster ([`Profile::Test`], in a new temporary directory, on a free
/// port), started on first use. Safe from any thread, in sync or async code: the start uses
/// only blocking process calls.
///
/// # Panics
/// When the cluster cannot be started, with the harness's error: tests cannot go on without it.
pub fn throwaway() -> &'static Throwaway {
    match THROWAWAY.get_or_init(|| Throwaway::start().map_err(|e| e.to_string())) {
        Ok(t) => t,
        Err(e) => panic!("cannot start the throwaway postgresql: {e}"),
    }
}

impl Throwaway {
    /// A throwaway cluster of the caller's own, not shared: for a test that crash-restarts or
    /// stops it ([`Throwaway::restart_immediate`], [`Throwaway::stop_immediate`]), which the
    /// shared cluster's other tests must not see. Removed when the process exits, like the
    /// shared one.
    pub fn private() -> Result<Throwaway> {
        Throwaway::start()
    }

    /// Crash-restarts the cluster: `pg_ctl stop -m immediate` (every backend killed at once,
    /// no checkpoint; the next start runs crash recovery), then a start on the same port.
    pub fn restart_immediate(&self) -> Result<()> {
        self.stop_immediate()?;
        self.start_again()
    }

    /// Stops the cluster in immediate mode (a crash, as far as its clients can tell) and waits
    /// until it is down. Its port stays reserved for [`Throwaway::start_again`] only as long as
    /// no other program takes it.
    pub fn stop_immediate(&self) -> Result<()> {
        let bindir = find_bindir()?;
        let mut cmd = crate::exec::server_command(&bindir, "pg_ctl");
        cmd.arg("-D").arg(self.dir.join("data")).args(["-m", "immediate", "-w", "stop"]);
        crate::exec::run(cmd)?;
        Ok(())
    }

    /// Starts the stopped cluster again on its port and waits until it accepts connections
    /// (after crash recovery, if it was stopped in immediate mode).
    pub fn start_again(&self) -> Result<()> {
        start(&find_bindir()?, &self.dir.join("data"), self.port)
    }

    fn start() -> Result<Throwaway> {
        let bindir = find_bindir()?;
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("pgharness-{pid}-{nanos}"));
        // create_dir, not create_dir_all: the directory must be new, or it is not ours to remove.
        std::fs::create_dir(&dir).map_err(io_err("creating", &dir))?;
        // Traversable by `postgres` when we are root (and harmless otherwise).
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(io_err("chmod", &dir))?;
        hand_over(&dir)?;
        // Spawned before initdb so that the directory is removed even if what follows fails or
        // the process dies half-way.
        spawn_watchdog(&bindir, &dir)?;
        let data = dir.join("data");
        let password = initdb(&bindir, &data, Profile::Test)?;
        let port = free_port()?;
        start(&bindir, &data, port)?;
        Ok(Throwaway { dir, port, password, next: AtomicU64::new(0) })
    }

    /// The cluster's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory holding the data directory (`data/`) and the server log
    /// (`data/server.log`), removed after the process exits.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The URL of database `db` on this cluster, with the superuser's password.
    pub fn url(&self, db: &str) -> String {
        sql::url(self.port, &self.password, db)
    }

    /// The superuser's password (a connection without it is refused).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Creates a new, empty database with a name unique in this cluster (`t_<n>_<pid>`) and
    /// returns its URL. Callable from sync code and from inside a tokio runtime alike.
    ///
    /// # Panics
    /// When the database cannot be created.
    pub fn fresh_database(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("t_{n}_{}", std::process::id());
        if let Err(e) = sql::create_database(self.port, &self.password, &name) {
            panic!("cannot create a fresh database: {e}");
        }
        self.url(&name)
    }
}

/// Spawns a detached shell that waits for this process to end, then stops the cluster in
/// `dir/data` (immediate mode: nothing in it is worth a clean shutdown) and removes `dir`.
/// Rust never drops statics, so nothing inside the process could do this reliably; the shell
/// runs in its own process group so that a Ctrl-C or a kill of the test's group spares it.
fn spawn_watchdog(bindir: &Path, dir: &Path) -> Result<()> {
    let pg_ctl = sh_quote(&bindir.join("pg_ctl").to_string_lossy());
    let as_postgres = if is_root() { "runuser -u postgres -- " } else { "" };
    let data = sh_quote(&dir.join("data").to_string_lossy());
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         if [ -f {data}/postmaster.pid ]; then cd / && {as_postgres}{pg_ctl} -D {data} -m immediate -w stop; fi; \
         rm -rf {dir}",
        pid = std::process::id(),
        dir = sh_quote(&dir.to_string_lossy()),
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
        .map_err(|source| crate::Error::Spawn { command: format!("sh -c {script}"), source })?;
    tracing::debug!(dir = %dir.display(), "throwaway watchdog started");
    Ok(())
}
