//! The cluster's one door: the `postgres` superuser with a random password, checked with
//! `scram-sha-256` on every connection (TCP on loopback; there is no Unix socket).
//!
//! Without it, any local OS account could connect as the superuser over 127.0.0.1 (`trust`),
//! run `COPY ... FROM PROGRAM` as `postgres`, or drop the log's append-only triggers. The
//! password is generated at `initdb` and kept in `reproject.password` inside the data
//! directory (mode 0600, in a 0700 directory owned by the server's user): the account that
//! owns the cluster (or root) reads it to build its URLs; nobody else can.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::exec::{hand_over, io_err};
use crate::{Error, Result};

/// The file holding the superuser's password, inside the data directory.
pub(crate) fn password_path(data_dir: &Path) -> PathBuf {
    data_dir.join("reproject.password")
}

/// What `pg_hba.conf` says once the cluster is locked: password on every connection.
const HBA: &str = "# written by reproject's pgharness: scram-sha-256 on every connection; the \
                   password is in reproject.password\n\
                   local all all scram-sha-256\n\
                   host all all 127.0.0.1/32 scram-sha-256\n\
                   host all all ::1/128 scram-sha-256\n";

/// A new random password: 32 bytes from the kernel's CSPRNG, hex-encoded (so it needs no
/// escaping in a URL, a connection string or SQL).
pub(crate) fn generate() -> Result<String> {
    let path = Path::new("/dev/urandom");
    let mut bytes = [0u8; 32];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut bytes)).map_err(io_err("reading", path))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `password` to a new file at `path`, mode 0600 from its creation (never readable by
/// others, not even briefly), handed to the server's user.
pub(crate) fn write_password_file(path: &Path, password: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("creating", path))?;
    file.write_all(password.as_bytes()).map_err(io_err("writing", path))?;
    hand_over(path)
}

/// The password of the cluster in `data_dir`.
pub(crate) fn read_password(data_dir: &Path) -> Result<String> {
    let path = password_path(data_dir);
    let text = std::fs::read_to_string(&path)
        .map_err(|source| Error::Password { path: path.display().to_string(), source })?;
    Ok(text.trim().to_owned())
}

/// Whether `pg_hba.conf` still lets some connection in without a password (a cluster
/// initialised before the harness set one).
pub(crate) fn trusts(data_dir: &Path) -> Result<bool> {
    let path = data_dir.join("pg_hba.conf");
    let text = std::fs::read_to_string(&path).map_err(io_err("reading", &path))?;
    Ok(text.lines().map(|l| l.split('#').next().unwrap_or("")).any(|l| l.split_whitespace().last() == Some("trust")))
}

/// Replaces `pg_hba.conf` with [`HBA`] (keeping the file, so its owner and mode stay).
pub(crate) fn write_hba(data_dir: &Path) -> Result<()> {
    let path = data_dir.join("pg_hba.conf");
    std::fs::write(&path, HBA).map_err(io_err("writing", &path))
}
