//! `reproject api | load`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{database_url, parse_duration, Global};
use crate::Catalog;

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Address to listen on. A non-loopback address needs an admin token.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Connections to PostgreSQL (each pipelines concurrent requests).
    #[arg(long, default_value_t = 8)]
    pub pool: usize,
    /// A file holding the admin token that `POST /cutover` requires (`Authorization: Bearer
    /// TOKEN`; at least 16 bytes). Without a token the endpoint is disabled.
    #[arg(long, value_name = "FILE", conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,
    /// The admin token itself, from the environment (prefer the file: a flag's value shows in
    /// `ps`).
    #[arg(long = "admin-token", env = "REPROJECT_ADMIN_TOKEN", hide_env_values = true, hide = true)]
    pub admin_token: Option<String>,
    /// A request's head must arrive within this; also closes keep-alive connections idle
    /// between requests for this long.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub header_read_timeout: Duration,
    /// Close a connection on which nothing is read or written for this long.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub idle_timeout: Duration,
    /// Connections served at once (more wait in the accept queue).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Largest request body accepted (bytes); larger ones get 413.
    #[arg(long, default_value_t = 65536)]
    pub max_body_bytes: usize,
    /// A request not answered within this gets 503 with `Retry-After` (the database is slow or
    /// unreachable) rather than hanging.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub request_timeout: Duration,
}

/// The admin token from `--admin-token-file` or `REPROJECT_ADMIN_TOKEN`, if any.
fn admin_token(a: &ApiArgs) -> Result<Option<api::AdminToken>> {
    let (text, source) = match (&a.admin_token_file, &a.admin_token) {
        (Some(path), _) => (
            std::fs::read_to_string(path).with_context(|| format!("--admin-token-file {}", path.display()))?,
            format!("--admin-token-file {}", path.display()),
        ),
        (None, Some(text)) => (text.clone(), "REPROJECT_ADMIN_TOKEN".to_owned()),
        (None, None) => return Ok(None),
    };
    api::AdminToken::new(&text).map(Some).with_context(|| source)
}

/// Resolves when the process gets SIGINT (Ctrl-C) or SIGTERM (what `kill`, systemd and
/// container runtimes send): either starts the graceful drain.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the API gracefully");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    let signal = tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    tracing::info!(signal, "shutting down");
}

pub async fn api(g: &Global, a: ApiArgs, catalog: &Catalog) -> Result<ExitCode> {
    if a.pool == 0 {
        bail!("--pool must be at least 1");
    }
    if a.request_timeout.is_zero() {
        bail!("--request-timeout must be more than 0s");
    }
    if a.max_body_bytes == 0 {
        bail!("--max-body-bytes must be at least 1");
    }
    // Validated before the database is touched: a bad token or an exposed address fails first.
    let token = admin_token(&a)?;
    api::check_exposure(a.listen, token.as_ref()).context("--listen")?;
    let mut config = api::ApiConfig::new(database_url(g)?, a.listen, a.pool, catalog.projections());
    config.default_family = catalog.default_family_name().map(str::to_owned);
    config.admin_token = token;
    config.limits.header_read_timeout = a.header_read_timeout;
    config.limits.idle_timeout = a.idle_timeout;
    config.limits.max_connections = a.max_connections as usize;
    config.limits.max_body_bytes = a.max_body_bytes;
    config.limits.request_timeout = a.request_timeout;
    if config.admin_token.is_none() {
        println!("POST /cutover is disabled (no --admin-token-file or REPROJECT_ADMIN_TOKEN)");
    }
    api::serve(&config, shutdown_signal(), |addr| println!("listening on http://{addr}"))
        .await
        .context("serving the API")?;
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
    /// Read aggregates 1..=N of a bigint log (Zipf over them). Default: ids that exist, sampled
    /// from the served version's table (see --sample-ids).
    #[arg(long, value_name = "N")]
    pub aggregates: Option<u64>,
    /// The read model to read (`?family=`); default: the API's.
    #[arg(long)]
    pub family: Option<String>,
    /// How many existing ids to sample from the database (Zipf over them, in a fixed order):
    /// the family's active version's table, through --database-url or the embedded cluster.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub sample_ids: u64,
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

pub async fn load(g: &Global, a: LoadArgs) -> Result<ExitCode> {
    if a.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if a.rate.is_some_and(|r| !r.is_finite() || r <= 0.0) {
        bail!("--rate must be positive");
    }
    if a.sample_ids == 0 {
        bail!("--sample-ids must be at least 1");
    }
    let ids = match a.aggregates {
        Some(0) => bail!("--aggregates must be at least 1"),
        Some(_) => None,
        None => {
            let client = eventlog::connect(&database_url(g)?).await.context("connecting to sample ids")?;
            let (version, ids) = readmodel::sample_ids(&client, a.family.as_deref(), a.sample_ids)
                .await
                .context("sampling aggregate ids that exist")?;
            println!("reading {} ids sampled from {version}", ids.len());
            Some(std::sync::Arc::new(ids))
        }
    };
    let config = loadgen::LoadConfig {
        url: a.url,
        concurrency: a.concurrency,
        duration: a.duration,
        rate: a.rate,
        aggregates: a.aggregates.unwrap_or(1),
        ids,
        family: a.family.clone(),
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
