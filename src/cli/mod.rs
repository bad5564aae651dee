//! Command-line flags (clap derive), their validation, and dispatch to the libraries.

mod adopt;
mod bench;
mod db;
mod demo;
mod lab;
mod large;
mod log;
mod obs;
pub(crate) mod project;
mod redis;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::Catalog;

/// Rebuild event-sourced read models from the log, fast and exact, and cut over with zero
/// downtime.
///
/// Without --database-url (or DATABASE_URL) every command uses a private PostgreSQL cluster
/// that reproject starts itself from the local binaries, in --data-dir.
#[derive(Debug, Parser)]
#[command(name = "reproject", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `reproject=debug`.
    #[arg(long, global = true, env = "REPROJECT_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// PostgreSQL URL. Unset: the embedded cluster in --data-dir (started if needed).
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Data directory of the embedded cluster.
    #[arg(long, global = true, env = "REPROJECT_DATA_DIR", default_value = ".reproject/pg")]
    pub data_dir: PathBuf,
    /// A Kafka topic as the log (`kafka://HOST:PORT[,HOST:PORT]/TOPIC`), keyed by aggregate_id:
    /// `seed` and `produce` write the event store and mirror it into the topic; `projector`
    /// reads the topic instead of the event store. Unset: the PostgreSQL event store only.
    /// Needs a build with the `kafka` feature.
    #[arg(long, global = true, env = "REPROJECT_TOPIC", value_name = "kafka://HOST:PORT/TOPIC")]
    pub topic: Option<String>,
}

impl Global {
    /// The Kafka topic of `--topic`, parsed, if given.
    #[cfg(feature = "kafka")]
    pub fn topic(&self) -> Result<Option<kafkalog::KafkaLog>> {
        self.topic
            .as_deref()
            .map(|t| kafkalog::KafkaLog::parse(t).map_err(|e| anyhow::anyhow!("--topic {t}: {e}")))
            .transpose()
    }

    /// Refuses `--topic` in a build without Kafka.
    #[cfg(not(feature = "kafka"))]
    pub fn no_topic(&self) -> Result<()> {
        if let Some(t) = &self.topic {
            bail!("--topic {t}: this build has no Kafka support (rebuild with `--features kafka`)");
        }
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole story at demo scale: seed, live v3, replay v4, catch-up, verify.
    Demo(demo::DemoArgs),
    /// Generate the deterministic log and its true final state (binary COPY, resumable).
    Seed(lab::SeedArgs),
    /// Append live events with W concurrent writers at a steady rate.
    Produce(lab::ProduceArgs),
    /// Compare a version with the true state, or with another version at a frozen position.
    Verify(lab::VerifyArgs),
    /// Benchmarks: figures as ratios against baselines from the same run; CSV and SVG plots.
    Bench(bench::BenchArgs),
    /// Lab runs at a tier: `lab large` seeds, builds v3, rebuilds v4 under load, cuts over,
    /// verifies; resumable.
    Lab(large::LabArgs),
    /// Serve the read API (active version resolved per request), time travel, cutover, metrics.
    Api(serve::ApiArgs),
    /// Drive load at the read API: Zipf ids, every request's status and latency recorded.
    Load(serve::LoadArgs),
    /// Manage the embedded PostgreSQL cluster.
    Db(db::DbArgs),
    /// The event log: `log create` makes an empty one (for an app that will append to it).
    Log(log::LogArgs),
    /// Adopt the app's own events table: the log fed from it online, writers unchanged, its own
    /// stream ids (uuid, text or bigint); resumable, and it keeps feeding until stopped.
    Adopt(adopt::AdoptArgs),
    /// Run a projector: `live` tails the log; `replay` rebuilds a version from offset 0.
    Projector(project::ProjectorArgs),
    /// Re-fold one aggregate from the log and write it back (single-aggregate repair).
    Repair(project::RepairArgs),
    /// Store aggregate snapshots every N versions, so time travel folds at most N events.
    Snapshot(project::SnapshotArgs),
    /// Promote a ready version to active, atomically, once it has caught up; or the version the
    /// last cutover retired (a rollback).
    Cutover(project::CutoverArgs),
    /// Roll back the last cutover: promote the version it retired, if that version has kept up
    /// (its live projector keeps tailing for --retired-window after a cutover) and its table is
    /// intact.
    Rollback(project::RollbackArgs),
    /// Show the registry: every version, its state, positions and lag.
    Projections,
    /// Print the log's current tail boundary (an xid usable as --until / --at).
    Position,
    /// A Prometheus server of our own scraping every reproject process: start, stop, status.
    Obs(obs::ObsArgs),
    /// The embedded redis-server (a Redis read model's store): start, stop, url; and verify a
    /// version's rows in Redis against the log.
    Redis(redis::RedisArgs),
}

/// Installs the tracing subscriber on stderr.
pub fn init_tracing(filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

/// Parses durations with units (`30s`, `5m`, `1h30m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (use units, e.g. 30s, 5m)"))
}

/// Resolves the database URL: the flag, or the embedded cluster (started if needed).
pub fn database_url(global: &Global) -> Result<String> {
    if let Some(url) = &global.database_url {
        return Ok(url.clone());
    }
    let cluster = pgharness::Cluster::ensure_running(&pgharness::ClusterConfig::bulk(global.data_dir.clone()))
        .with_context(|| format!("starting the embedded PostgreSQL in {}", global.data_dir.display()))?;
    Ok(cluster.database_url())
}

/// A stop signal that flips on Ctrl-C.
pub fn ctrl_c() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("interrupted: finishing the current batch");
            let _ = tx.send(true);
        }
    });
    rx
}

/// The lab's commands: the bank's generator, producer and benchmarks.
const LAB_COMMANDS: [&str; 5] = ["demo", "seed", "produce", "bench", "lab"];

/// Parses this process's flags for a binary with `catalog`'s projections and runs the command.
pub fn main(catalog: Catalog) -> ExitCode {
    let mut command = Cli::command();
    // The binary's own name in usage lines and errors (an adopter's binary is not `reproject`).
    if let Some(name) = std::env::args_os()
        .next()
        .and_then(|a| std::path::Path::new(&a).file_name().map(|n| n.to_string_lossy().into_owned()))
    {
        let name: &'static str = Box::leak(name.into_boxed_str());
        command = command.name(name).bin_name(name);
    }
    if !catalog.has_lab() {
        for lab in LAB_COMMANDS {
            command = command.mut_subcommand(lab, |c| c.hide(true));
        }
    }
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_tracing(&cli.log);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime starts");
    match runtime.block_on(run(cli, &catalog)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Refuses a lab command in a binary whose catalog has no lab.
fn lab_only(catalog: &Catalog, name: &str) -> Result<()> {
    if !catalog.has_lab() {
        bail!(
            "`{name}` is a command of the lab (the bank's generator, producer and benchmarks): this binary serves \
             its own projections ({}); run it with the `reproject` binary",
            catalog.names().join(", ")
        );
    }
    Ok(())
}

/// Runs one command.
pub async fn run(cli: Cli, catalog: &Catalog) -> Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Demo(args) => {
            lab_only(catalog, "demo")?;
            demo::run(&g, args).await
        }
        Command::Seed(args) => {
            lab_only(catalog, "seed")?;
            lab::seed(&g, args).await
        }
        Command::Produce(args) => {
            lab_only(catalog, "produce")?;
            lab::produce(&g, args).await
        }
        Command::Bench(args) => {
            lab_only(catalog, "bench")?;
            bench::run(&g, args).await
        }
        Command::Lab(args) => {
            lab_only(catalog, "lab")?;
            large::run(&g, args).await
        }
        Command::Verify(args) => lab::verify(&g, args, catalog).await,
        Command::Db(args) => db::run(&g, args).await,
        Command::Log(args) => log::run(&g, args).await,
        Command::Adopt(args) => adopt::run(&g, args).await,
        Command::Api(args) => serve::api(&g, args, catalog).await,
        Command::Load(args) => serve::load(&g, args).await,
        Command::Projector(args) => project::projector(&g, args, catalog).await,
        Command::Repair(args) => project::repair(&g, args, catalog).await,
        Command::Snapshot(args) => project::snapshot(&g, args, catalog).await,
        Command::Cutover(args) => project::cutover(&g, args).await,
        Command::Rollback(args) => project::rollback(&g, args).await,
        Command::Projections => project::projections(&g).await,
        Command::Position => project::position(&g).await,
        Command::Obs(args) => obs::run(args).await,
        Command::Redis(args) => redis::run(&g, args, catalog).await,
    }
}
