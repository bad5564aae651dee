//! `reproject demo`: the whole story at demo scale, on the embedded cluster by default.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use fold::Projection;

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
    #[arg(long, default_value_t = 2_000.0)]
    pub ingest: f64,
}

fn say(step: &str) {
    println!("\n== {step}");
}

fn live_config(url: &str, projection: Projection, until: Option<i64>) -> projector::LiveConfig {
    projector::LiveConfig {
        database_url: url.to_owned(),
        projection,
        batch: 10_000,
        until,
        stop_at_head: true,
        quarantine: false,
        from_offset: None,
        poll: Duration::from_millis(20),
        synchronous_commit: false,
        rate_limit: None,
    }
}

pub async fn run(g: &Global, a: DemoArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let url = database_url(g)?;
    println!("database: {url}");
    let never = tokio::sync::watch::channel(false).1;

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
    let v3 = projector::run_live(&live_config(&url, Projection::V3, None), never.clone()).await.context("live v3")?;
    println!(
        "v3: {} events in {:.1}s = {:.0} events/s through the tail path (activated: {})",
        v3.events_read, v3.seconds, v3.events_per_s, v3.activated
    );

    say("replay v4 from offset 0 beside v3 (bulk, barrier), then catch up with the moving tail");
    let replay = projector::ReplayConfig {
        database_url: url.clone(),
        projection: Projection::V4,
        workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        batch: 10_000,
        rate_limit: None,
        catch_up_rate_limit: None,
        catch_up: true,
        stop_at_head: true,
        until: None,
        quarantine: false,
        from_offset: None,
        poll: Duration::from_millis(20),
        progress: true,
    };
    let v4 = projector::replay(&replay, never.clone()).await.context("replay v4")?;
    let caught = v4.catch_up.clone().unwrap_or_default();
    println!(
        "v4 bulk: {} events, {} rows in {:.1}s + barrier {:.1}s = {:.0} events/s ({:.0} MB/s); \
         catch-up: {} events in {:.1}s; peak RSS {} MB",
        v4.bulk_events,
        v4.bulk_rows,
        v4.bulk_seconds,
        v4.barrier_seconds,
        v4.bulk_events_per_s,
        v4.bulk_mb_per_s,
        caught.events_read,
        caught.seconds,
        v4.peak_rss_bytes / 1_000_000
    );

    say("stop the writers; freeze v3 and v4 at the same position X");
    stop_producer.send(true).ok();
    let produced = producer.await.context("producer task")?.context("producer")?;
    println!("{}", produced.render());
    let client = eventlog::connect(&url).await?;
    let x = eventlog::snapshot_xmax(&client).await?;
    projector::run_live(&live_config(&url, Projection::V3, Some(x)), never.clone()).await?;
    projector::run_live(&live_config(&url, Projection::V4, Some(x)), never.clone()).await?;
    println!("both versions at X = {x} on every partition");

    say("verify v3 against the generator's true state (its fee bug must show, exactly)");
    let r3 = lab::verify::against_expected(&client, Projection::V3).await?;
    println!("{}", r3.render());
    say("verify v4 against the generator's true state");
    let r4 = lab::verify::against_expected(&client, Projection::V4).await?;
    println!("-- SQL:\n{}\n{}", r4.sql.trim(), r4.render());
    say("compare v4 with v3 at X on their common columns");
    let both = lab::verify::between_versions(&client, Projection::V4, Projection::V3).await?;
    println!("{}", both.render());
    let explained = both.ok;
    println!("every v3/v4 difference is the v3 fee bug, and every bug aggregate differs: {explained}");

    say("summary");
    println!("seed:      {:.0} events/s", seeded.events_per_s);
    println!("live v3:   {:.0} events/s (tail path)", v3.events_per_s);
    println!(
        "replay v4: {:.0} events/s (bulk + barrier), {:.1}s for {} events",
        v4.bulk_events_per_s,
        v4.bulk_seconds + v4.barrier_seconds,
        v4.bulk_events
    );
    println!("v3 vs expected: {} diffs ({} expected from the bug) -> {}", r3.diffs, r3.expected_diffs, verdict(r3.ok));
    println!("v4 vs expected: {} diffs -> {}", r4.diffs, verdict(r4.ok));
    println!("demo finished in {:.0}s", started.elapsed().as_secs_f64());
    Ok(if r3.ok && r4.ok && explained { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "OK"
    } else {
        "MISMATCH"
    }
}
