//! Running the server binaries (as `postgres` when we are root) and the file-system chores
//! around them: ownership, directory creation, locking.

use std::ffi::CString;
use std::fs::File;
use std::net::TcpListener;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Error, Result};

/// Whether this process runs as root, in which case PostgreSQL must run as `postgres`.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// uid and gid of the `postgres` user.
fn postgres_ids() -> Result<(u32, u32)> {
    let name = CString::new("postgres").expect("literal has no nul");
    // SAFETY: getpwnam returns null or a pointer into static storage that stays valid until the
    // next getpw* call; we copy the two fields out at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(Error::NoPostgresUser);
    }
    // SAFETY: checked non-null above.
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// A closure turning an I/O error on `path` into [`Error::Io`].
pub(crate) fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io { action, path: path.display().to_string(), source }
}

/// Makes `path` owned by the postgres user when we run as root (the server writes there).
pub(crate) fn hand_over(path: &Path) -> Result<()> {
    if !is_root() {
        return Ok(());
    }
    let (uid, gid) = postgres_ids()?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_err("handing to postgres", path))
}

/// Creates `dir` and any missing ancestors; when root, the ones created here are handed to
/// `postgres` (ancestors that existed before are left alone: they are not ours to change).
pub(crate) fn create_dirs(dir: &Path) -> Result<()> {
    let mut missing: Vec<&Path> = dir.ancestors().take_while(|p| !p.as_os_str().is_empty() && !p.exists()).collect();
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    missing.reverse();
    for created in missing {
        hand_over(created)?;
    }
    Ok(())
}

/// A command for server binary `program`, run as `postgres` through `runuser` when we are
/// root (`sudo` is not assumed to exist; `runuser` ships with util-linux).
pub(crate) fn server_command(bindir: &Path, program: &str) -> Command {
    let path = bindir.join(program);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    };
    // Our working directory may not be readable by `postgres` (e.g. /root), and initdb and
    // pg_ctl warn or fail when they cannot return to it; every path we pass is absolute.
    cmd.current_dir("/");
    cmd
}

/// The command line of `cmd`, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let s = a.to_string_lossy();
            if s.contains(' ') || s.is_empty() {
                format!("\"{s}\"")
            } else {
                s.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion and returns its stdout; a failure carries the command line and
/// the last 20 lines of its output.
pub(crate) fn run(mut cmd: Command) -> Result<String> {
    let command = describe(&cmd);
    tracing::debug!(%command, "running");
    let out = cmd.stdin(Stdio::null()).output().map_err(|source| Error::Spawn { command: command.clone(), source })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        return Err(Error::Command { command, status: out.status.to_string(), output: tail(&text, 20) });
    }
    Ok(stdout)
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The last `lines` lines of the file at `path`, or a note saying it could not be read.
pub(crate) fn tail_file(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => tail(&String::from_utf8_lossy(&bytes), lines),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Quotes `s` for `sh` (single quotes; an embedded single quote becomes `'\''`).
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A free loopback port: bound to port 0, read back and released. Another program may take it
/// before the server binds it; callers that picked the port themselves retry on that.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::NoPort)?;
    Ok(listener.local_addr().map_err(Error::NoPort)?.port())
}

/// Whether `port` can be bound on the loopback address right now.
pub(crate) fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// An exclusive advisory lock on a directory, held until dropped. Serialises processes that
/// initialise or start the same cluster at once (e.g. two `reproject` commands without
/// `DATABASE_URL`), which would otherwise race on initdb or on the port.
pub(crate) struct DirLock {
    // Held only for its lifetime: closing the descriptor releases the lock.
    _file: File,
}

impl DirLock {
    /// Blocks until the lock on `dir` is ours.
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock> {
        let file = File::open(dir).map_err(io_err("opening for a lock", dir))?;
        loop {
            // SAFETY: the fd is valid for the life of `file`.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(DirLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(io_err("locking", dir)(err));
            }
        }
    }
}

/// `path` made absolute against the working directory (without resolving symlinks), because
/// the server binaries run from `/`.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(io_err("resolving", path))
}
