//! `reproject log create`: an empty event log, for an app that will append to it.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use fold::IdKind;

use super::{database_url, Global};

#[derive(Debug, Args)]
pub struct LogArgs {
    #[command(subcommand)]
    pub command: LogCommand,
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Create an empty log (`log.events`, hash-partitioned, with its indexes). An app then
    /// appends `(aggregate_id, version, type, ts, payload)` rows; `global_seq` and `tx_id` fill
    /// themselves in. To keep an existing events table where it is, use `reproject adopt`.
    Create(CreateArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Hash partitions (the replay's unit of parallel work): a few per core of the replay.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub partitions: u32,
    /// The type of the stream ids: bigint, uuid or text.
    #[arg(long, default_value = "bigint", value_name = "TYPE")]
    pub id_type: IdKind,
}

pub async fn run(g: &Global, a: LogArgs) -> Result<ExitCode> {
    match a.command {
        LogCommand::Create(c) => create(g, c).await,
    }
}

async fn create(g: &Global, a: CreateArgs) -> Result<ExitCode> {
    let mut client = eventlog::connect(&database_url(g)?).await.context("connecting")?;
    if eventlog::exists(&client).await? {
        let kind = eventlog::id_kind(&client).await?;
        bail!(
            "this database already has a log ({} partitions, {kind} stream ids)",
            eventlog::partition_count(&client).await?
        );
    }
    eventlog::create(&mut client, a.partitions, a.id_type).await.context("creating the log")?;
    eventlog::ensure_indexes(&client).await.context("indexing the log")?;
    println!(
        "log created: {} partitions, {} stream ids. Append rows to log.events (aggregate_id, version, type, ts, \
         payload); global_seq and tx_id fill themselves in.",
        a.partitions, a.id_type
    );
    Ok(ExitCode::SUCCESS)
}
