//! Finding the PostgreSQL server binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

fn usable(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file() && dir.join("pg_ctl").is_file()
}

/// Finds the server binaries: `PG_BINDIR`, else `pg_config --bindir`, else the highest
/// `/usr/lib/postgresql/*/bin`.
pub fn find_bindir() -> Result<PathBuf> {
    let env = std::env::var_os("PG_BINDIR").map(PathBuf::from);
    find_bindir_from(env.as_deref())
}

/// [`find_bindir`] with the override given explicitly (an override that is not usable is an
/// error, not a fallback: the user asked for it).
pub fn find_bindir_from(override_dir: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = override_dir {
        if usable(dir) {
            return Ok(dir.to_path_buf());
        }
        return Err(Error::NoBinaries { looked: format!("PG_BINDIR={}", dir.display()) });
    }
    let mut looked = Vec::new();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if usable(&dir) {
                return Ok(dir);
            }
            looked.push(dir.display().to_string());
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
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
    looked.push("pg_config --bindir".into());
    looked.push("/usr/lib/postgresql/*/bin".into());
    Err(Error::NoBinaries { looked: looked.join(", ") })
}
