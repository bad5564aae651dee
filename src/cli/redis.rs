//! `reproject redis start | stop | url | verify`, and `--store` of the replay: where a
//! version's rows go.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::{database_url, Global};
use crate::Catalog;

/// Where a replay writes its rows, from `--store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// The version's table in PostgreSQL.
    Postgres,
    /// A Redis server at this URL.
    Redis(String),
    /// The embedded redis-server in --redis-dir, started if needed.
    EmbeddedRedis,
}

impl Store {
    /// Parses `--store`: `postgres`, `redis`, or a `redis://` URL.
    pub fn parse(raw: &str) -> Result<Store> {
        match raw {
            "postgres" | "pg" => Ok(Store::Postgres),
            "redis" => Ok(Store::EmbeddedRedis),
            url if url.starts_with("redis://") => {
                redis_url_ok(url).with_context(|| format!("--store {}", redact(url)))?;
                Ok(Store::Redis(url.to_owned()))
            }
            other => bail!("--store {other}: expected postgres, redis (the embedded server) or a redis:// URL"),
        }
    }

    /// The Redis URL to write to (the embedded server started if needed), if a Redis store.
    pub fn redis_url(&self, dir: &Path) -> Result<Option<String>> {
        Ok(match self {
            Store::Postgres => None,
            Store::Redis(url) => Some(url.clone()),
            Store::EmbeddedRedis => Some(
                redisstore::Embedded::ensure_running(dir)
                    .with_context(|| format!("starting the embedded redis-server in {}", dir.display()))?
                    .url(),
            ),
        })
    }
}

fn redis_url_ok(url: &str) -> Result<()> {
    redisstore::check_url(url).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A URL with its password hidden, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

#[derive(Debug, Args)]
pub struct RedisArgs {
    /// Data directory of the embedded redis-server (its append-only file, log, port and password).
    #[arg(long, global = true, env = "REPROJECT_REDIS_DIR", default_value = ".reproject/redis")]
    pub redis_dir: PathBuf,
    #[command(subcommand)]
    pub command: RedisCommand,
}

#[derive(Debug, Subcommand)]
pub enum RedisCommand {
    /// Start the embedded redis-server (loopback, a password, AOF with appendfsync always).
    Start,
    /// Shut the embedded redis-server down (its append-only file is fsynced first).
    Stop,
    /// Print the embedded server's URL (password included: the file it is read from is 0600).
    Url,
    /// Compare a version's rows in Redis with the fold of the log up to their positions.
    Verify(RedisVerifyArgs),
    /// Store a fold's snapshot at a consistent cut (default: the log's boundary now), a start
    /// for `projector --mode replay --store redis... --from-snapshot CUT`.
    Snapshot(RedisSnapshotArgs),
}

#[derive(Debug, Args)]
pub struct RedisSnapshotArgs {
    /// The projection version whose fold to snapshot.
    #[arg(long = "projection", visible_alias = "version", value_name = "PROJECTION")]
    pub projection: String,
    /// The cut: a tail boundary (`reproject position`); default: the boundary now.
    #[arg(long, value_name = "POSITION")]
    pub cut: Option<i64>,
}

#[derive(Debug, Args)]
pub struct RedisVerifyArgs {
    /// The projection version whose Redis rows to check.
    #[arg(long = "projection", visible_alias = "version", value_name = "PROJECTION")]
    pub projection: String,
    /// `redis` (the embedded server) or a `redis://` URL.
    #[arg(long, default_value = "redis", env = "REPROJECT_REDIS_URL", hide_env_values = true)]
    pub store: String,
}

pub async fn run(g: &Global, a: RedisArgs, catalog: &Catalog) -> Result<ExitCode> {
    match a.command {
        RedisCommand::Start => {
            let e = redisstore::Embedded::ensure_running(&a.redis_dir)
                .with_context(|| format!("starting the embedded redis-server in {}", a.redis_dir.display()))?;
            println!("redis-server on 127.0.0.1:{} (data in {})", e.port, a.redis_dir.display());
            Ok(ExitCode::SUCCESS)
        }
        RedisCommand::Stop => {
            let stopped = redisstore::Embedded::stop(&a.redis_dir).context("stopping the embedded redis-server")?;
            println!("{}", if stopped { "stopped" } else { "not running" });
            Ok(ExitCode::SUCCESS)
        }
        RedisCommand::Url => {
            let Some(e) = redisstore::Embedded::load(&a.redis_dir)? else {
                bail!("no embedded redis-server in {} (run `reproject redis start`)", a.redis_dir.display());
            };
            println!("{}", e.url());
            Ok(ExitCode::SUCCESS)
        }
        RedisCommand::Snapshot(s) => {
            let entry = catalog.find(&s.projection).with_context(|| format!("--projection {}", s.projection))?;
            let url = database_url(g)?;
            let cut = match s.cut {
                Some(cut) => cut,
                None => {
                    let client = eventlog::connect(&url).await.context("connecting to PostgreSQL")?;
                    eventlog::boundary(&client).await.context("reading the log's boundary")?
                }
            };
            let report = entry
                .cut_snapshot(url, cut)
                .await
                .with_context(|| format!("snapshot of {} at cut {cut}", s.projection))?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        RedisCommand::Verify(v) => {
            let entry = catalog.find(&v.projection).with_context(|| format!("--projection {}", v.projection))?;
            let store = Store::parse(&v.store)?;
            let Some(redis_url) = store.redis_url(&a.redis_dir)? else {
                bail!("--store postgres: use `reproject verify --against log` for a PostgreSQL version");
            };
            let client = eventlog::connect(&database_url(g)?).await.context("connecting to PostgreSQL")?;
            let report = entry
                .redis_verify(&client, redis_url)
                .await
                .with_context(|| format!("verifying {} in redis", v.projection))?;
            println!("{}", report.render().replacen("read.", "redis ", 1));
            Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_flag_names_what_it_refuses() {
        assert_eq!(Store::parse("postgres").unwrap(), Store::Postgres);
        assert_eq!(Store::parse("redis").unwrap(), Store::EmbeddedRedis);
        assert_eq!(
            Store::parse("redis://:pw@127.0.0.1:6390/").unwrap(),
            Store::Redis("redis://:pw@127.0.0.1:6390/".into())
        );
        let e = Store::parse("mongo").unwrap_err().to_string();
        assert!(e.contains("--store mongo"), "{e}");
        assert_eq!(redact("redis://:secret@127.0.0.1:1/"), "redis://***@127.0.0.1:1/");
    }
}
