//! Finding the PostgreSQL server binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Error, Result};

/// Whether `dir` holds the server binaries we run.
fn usable(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"].iter().all(|p| dir.join(p).is_file())
}

/// Finds the server binaries: `PG_BINDIR` if set, else `pg_config --bindir` (when that
/// directory has the server binaries: Debian's `pg_config` may come from the client package
/// alone), else the highest-numbered `/usr/lib/postgresql/*/bin` that has them.
pub fn find_bindir() -> Result<PathBuf> {
    let env = std::env::var_os("PG_BINDIR").filter(|v| !v.is_empty()).map(PathBuf::from);
    find_bindir_from(env.as_deref())
}

/// [`find_bindir`] with the `PG_BINDIR` override passed in, so that callers (and tests) need
/// not mutate the process environment. An override that is not usable is an error, not a
/// reason to fall back: the user asked for that directory.
pub fn find_bindir_from(override_dir: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = override_dir {
        if usable(dir) {
            return Ok(dir.to_path_buf());
        }
        return Err(Error::NoBinaries { looked: format!("PG_BINDIR={}", dir.display()) });
    }
    let mut looked = Vec::new();
    let pg_config = Command::new("pg_config").arg("--bindir").stdin(Stdio::null()).stderr(Stdio::null()).output();
    match pg_config {
        Ok(out) if out.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if usable(&dir) {
                return Ok(dir);
            }
            looked.push(format!("{} (from pg_config --bindir)", dir.display()));
        }
        _ => looked.push("pg_config --bindir (no pg_config)".to_owned()),
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    // Numeric names only: "15" but also "9" sort by number, not as strings.
                    let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                    Some((v, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    if let Some((_, dir)) = versions.into_iter().rev().find(|(_, d)| usable(d)) {
        return Ok(dir);
    }
    looked.push(format!("{}/*/bin", root.display()));
    Err(Error::NoBinaries { looked: looked.join(", ") })
}
