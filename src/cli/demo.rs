//! `reproject demo`: the whole story at demo scale, on the embedded cluster by default: seed,
//! live v3 serving under load, replay v4 beside it, catch-up, cutover with zero failed reads,
//! verification against the generator's truth, time travel from snapshots.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use lab::bank::{V3, V4};

use super::{database_url, Global};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Events to seed.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Aggregates to seed.
    #[arg(long, default_value_t = 100_000)]
    pub aggregates: u64,
    /// Live ingest while the projectors run (events/s).
    #[arg(long, default_value_t = 1_000.0)]
    pub ingest: f64,
    /// How long the readers run (the cutover happens once v4 has caught up).
    #[arg(long, value_parser = super::parse_duration, default_value = "40s")]
    pub load: Duration,
    /// Start Prometheus (`reproject obs`) over the demo when the binary is installed.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub prometheus: bool,
    /// Where that Prometheus listens.
    #[arg(long, default_value = super::obs::DEFAULT_LISTEN)]
    pub prometheus_listen: std::net::SocketAddr,
    /// That Prometheus' directory (configuration, data, pid file).
    #[arg(long, env = "REPROJECT_OBS_DIR", default_value = ".reproject/prometheus")]
    pub obs_dir: std::path::PathBuf,
}

fn say(step: &str) {
    println!("\n== {step}");
}

fn live_v3_to_head(url: &str) -> projector::LiveConfig<V3> {
    projector::LiveConfig { stop_at_head: true, ..projector::LiveConfig::new(url, V3) }
}

pub async fn run(g: &Global, a: DemoArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let url = database_url(g)?;
    println!("database: {url}");
    let prometheus = if a.prometheus { start_prometheus(&a).await } else { None };

    say(&format!("seed {} events over {} accounts", a.events, a.aggregates));
    let mut seed = lab::SeedConfig::new(a.events, a.aggregates, 42);
    seed.reset = true;
    seed.progress = true;
    let seeded = lab::seed::run(&url, seed).await.context("seeding")?;
    println!("{}", seeded.render());

    say(&format!("writers append at {} events/s from now on", a.ingest));
    let (stop_producer, producer_stop) = tokio::sync::watch::channel(false);
    let producer = {
        let url = url.clone();
        let config = lab::ProduceConfig::new(a.ingest, None, 7);
        tokio::spawn(async move { lab::produce::run(&url, config, producer_stop).await })
    };

    say("live projector v3 tails the log to the head (v3 becomes the active version)");
    let v3 =
        projector::run_live(&live_v3_to_head(&url), tokio::sync::watch::channel(false).1).await.context("live v3")?;
    println!(
        "v3: {} events in {:.1}s = {:.0} events/s through the tail path (activated: {})",
        v3.events_read, v3.seconds, v3.events_per_s, v3.activated
    );

    stop_producer.send(true).ok();
    let produced = producer.await.context("producer task")?.context("producer")?;
    println!("{}", produced.render());

    say("serve reads from v3 under load; replay v4 beside it and catch up; cut over; freeze both and compare");
    let cutover = bench::CutoverBenchConfig {
        database_url: url.clone(),
        ingest: a.ingest,
        concurrency: 4,
        duration: a.load,
        workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        out_dir: std::path::PathBuf::from("results/demo"),
        reuse_active_v3: true,
    };
    let (stop_names, names_stop) = tokio::sync::watch::channel(false);
    let names = tokio::spawn(connection_names(url.clone(), names_stop));
    let c = bench::cutover_bench(&cutover).await;
    stop_names.send(true).ok();
    let names = names.await.context("the pg_stat_activity sampler")?;
    let c = c.context("replay, catch-up and cutover under load")?;
    println!("connections in pg_stat_activity meanwhile, by application_name: {}", names.join(", "));
    println!(
        "reads: {} ({} not found), failed: {}, version regressions: {}, served: {:?}; p50 {:.2} ms, p99 {:.2} ms",
        c.requests, c.not_found, c.failed_reads, c.version_regressions, c.versions_served, c.p50_ms, c.p99_ms
    );
    println!(
        "cutover: {:.2} ms in the transaction, after {} refusals while v4 caught up; frozen at X = {}",
        c.switch_ms, c.refused_attempts, c.frozen_position
    );

    say("verify v3 against the generator's true state (its fee bug must show, exactly)");
    let client = eventlog::connect(&url).await?;
    let r3 = lab::verify::against_expected(&client, &V3).await?;
    println!("{}", r3.render());
    say("verify v4 against the generator's true state");
    let r4 = lab::verify::against_expected(&client, &V4).await?;
    println!("-- SQL:\n{}\n{}", r4.sql.trim(), r4.render());
    let explained = c.diffs == 0;

    say("time travel: v4 snapshots every 100 versions, then the busiest account as of mid-log");
    let t = bench::time_travel_check(&url, V4).await.context("time travel")?;
    println!(
        "snapshots: {} stored in {:.1}s ({:.1} MB)",
        t.snapshot.total_rows,
        t.snapshot.seconds,
        t.snapshot.table_bytes as f64 / 1e6
    );
    println!(
        "aggregate {} as of offset {}: balance {} after {} events (from the snapshot at version {}, {} events read \
         from the log) in {:.2} ms; equals the fold of the log prefix: {}",
        t.aggregate_id,
        t.offset,
        t.balance_cents,
        t.events_folded,
        t.snapshot_version.map_or("none".into(), |v| v.to_string()),
        t.events_read,
        t.ms,
        verdict(t.matches_log_prefix)
    );

    say("summary");
    println!("seed:        {:.0} events/s", seeded.events_per_s);
    println!("live v3:     {:.0} events/s (tail path)", v3.events_per_s);
    println!(
        "reads:       {} during replay and cutover, {} failed, p99 {:.2} ms",
        c.requests, c.failed_reads, c.p99_ms
    );
    println!(
        "cutover:     {:.2} ms; v4 vs v3 at X: {} differ, {} not explained by the v3 fee bug",
        c.switch_ms, c.diffs_total, c.diffs
    );
    println!("v3 vs truth: {} diffs ({} expected from the bug) -> {}", r3.diffs, r3.expected_diffs, verdict(r3.ok));
    println!("v4 vs truth: {} diffs -> {}", r4.diffs, verdict(r4.ok));
    println!(
        "time travel: {:.2} ms for {} events as of mid-log -> {}",
        t.ms,
        t.events_folded,
        verdict(t.matches_log_prefix)
    );
    if let Some(url) = &prometheus {
        println!("prometheus:  {url} keeps the demo's samples (`reproject obs stop`)");
    }
    println!(
        "demo finished in {:.0}s; the cluster keeps running (`reproject db stop`)",
        started.elapsed().as_secs_f64()
    );
    Ok(if r3.ok && r4.ok && explained && c.failed_reads == 0 && t.matches_log_prefix {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "OK"
    } else {
        "MISMATCH"
    }
}

/// When Prometheus is installed: serves this process's metrics (every component of the demo
/// runs in it) on a free loopback port and starts `reproject obs` scraping it; returns its URL.
/// Without the binary, or if it cannot start, the demo goes on without it and says why.
/// The `application_name`s of reproject's connections seen in `pg_stat_activity`, sampled every
/// 200 ms until `stop`: the demo shows who is who on the server (the live projector, each
/// replay worker, the API's pool).
async fn connection_names(url: String, mut stop: tokio::sync::watch::Receiver<bool>) -> Vec<String> {
    let Ok(client) = eventlog::connect_as(&url, "reproject demo").await else {
        return Vec::new();
    };
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let sql = "SELECT DISTINCT application_name FROM pg_stat_activity \
                   WHERE application_name LIKE 'reproject%' AND pid <> pg_backend_pid()";
        if let Ok(rows) = client.query(sql, &[]).await {
            seen.extend(rows.iter().map(|r| r.get::<_, String>(0)));
        }
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    seen.into_iter().collect()
}

async fn start_prometheus(a: &DemoArgs) -> Option<String> {
    if super::obs::find_binary(None).is_none() {
        println!("prometheus: not installed (apt-get install prometheus), the demo runs without it");
        return None;
    }
    let bound = match api::spawn_metrics_server(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).await {
        Ok(bound) => bound,
        Err(e) => {
            println!("prometheus: not started, no metrics endpoint: {e}");
            return None;
        }
    };
    let args = super::obs::StartArgs {
        listen: a.prometheus_listen,
        api: vec![bound],
        projector: Vec::new(),
        producer: Vec::new(),
        scrape_interval: Duration::from_secs(1),
        prometheus_bin: None,
        retention: "2d".into(),
    };
    match super::obs::start(&a.obs_dir, &args) {
        Ok(r) => {
            println!("prometheus: {} scrapes this demo ({bound}/metrics) every second", r.url);
            Some(r.url)
        }
        Err(e) => {
            println!("prometheus: not started: {e:#}");
            None
        }
    }
}
