//! `reproject api | load`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{database_url, parse_duration, Global};

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Connections to PostgreSQL (each pipelines concurrent requests).
    #[arg(long, default_value_t = 8)]
    pub pool: usize,
}

pub async fn api(g: &Global, a: ApiArgs) -> Result<ExitCode> {
    if a.pool == 0 {
        bail!("--pool must be at least 1");
    }
    let config = api::ApiConfig { database_url: database_url(g)?, listen: a.listen, pool_size: a.pool };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    api::serve(&config, shutdown, |addr| println!("listening on http://{addr}")).await.context("serving the API")?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Base URL of the API (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Concurrent readers.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// How long to run (`30s`, `5m`).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub duration: Duration,
    /// Total requests per second (default: as fast as the API answers).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Aggregate ids are drawn (Zipf) from 1..=N.
    #[arg(long, default_value_t = 100_000)]
    pub aggregates: u64,
    /// Zipf exponent of the ids.
    #[arg(long, default_value_t = 1.1)]
    pub zipf: f64,
    /// Per-second CSV (time, ok, failed, p50, p99, versions served).
    #[arg(long, default_value = "results/load.csv")]
    pub csv: PathBuf,
    /// Exit non-zero if any request failed.
    #[arg(long)]
    pub fail_on_error: bool,
}

pub async fn load(a: LoadArgs) -> Result<ExitCode> {
    if a.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if a.rate.is_some_and(|r| !r.is_finite() || r <= 0.0) {
        bail!("--rate must be positive");
    }
    let config = loadgen::LoadConfig {
        url: a.url,
        concurrency: a.concurrency,
        duration: a.duration,
        rate: a.rate,
        aggregates: a.aggregates,
        zipf: a.zipf,
        seed: 1,
        csv_path: Some(a.csv.clone()),
    };
    let report = loadgen::run(&config).await.context("load")?;
    for s in &report.seconds {
        println!(
            "{:>4}s ok={:<7} failed={:<4} p50={:.2}ms p99={:.2}ms {}",
            s.second,
            s.ok,
            s.failed,
            s.p50_ms,
            s.p99_ms,
            s.versions.join(",")
        );
    }
    for f in &report.failures {
        println!("failure: {f}");
    }
    println!("per-second log: {}", a.csv.display());
    println!("{}", report.to_json_line());
    Ok(if a.fail_on_error && report.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
