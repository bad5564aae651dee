//! `reproject db`: the embedded cluster.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::Global;

#[derive(Debug, Args)]
pub struct DbArgs {
    #[command(subcommand)]
    pub action: DbAction,
}

#[derive(Debug, Subcommand)]
pub enum DbAction {
    /// Initialise (first time) and start the cluster; reuse it when it already runs.
    Start,
    /// Stop the cluster (data stays in --data-dir).
    Stop,
    /// Say whether the cluster is initialised and running, its port, URL and log file.
    Status,
    /// Print the cluster's database URL (starting it if needed).
    Url,
}

pub async fn run(g: &Global, args: DbArgs) -> Result<ExitCode> {
    let dir = g.data_dir.clone();
    match args.action {
        DbAction::Start => {
            let cluster = pgharness::Cluster::ensure_running(&pgharness::ClusterConfig::bulk(dir.clone()))
                .with_context(|| format!("starting PostgreSQL in {}", dir.display()))?;
            println!("running: {}", cluster.database_url());
        }
        DbAction::Stop => {
            pgharness::Cluster::stop(&dir).with_context(|| format!("stopping PostgreSQL in {}", dir.display()))?;
            println!("stopped");
        }
        DbAction::Status => {
            let status = pgharness::Cluster::status(&dir).with_context(|| format!("reading {}", dir.display()))?;
            println!("{status}");
        }
        DbAction::Url => println!("{}", super::database_url(g)?),
    }
    Ok(ExitCode::SUCCESS)
}
