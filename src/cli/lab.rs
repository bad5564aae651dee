//! `reproject seed | produce | verify`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{database_url, parse_duration, Global};
use crate::Catalog;

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Events to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Distinct aggregates (accounts); each gets an account_opened event.
    #[arg(long, default_value_t = 100_000)]
    pub aggregates: u64,
    /// Generator seed: the same seed gives the same log.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Zipf exponent of aggregate popularity.
    #[arg(long, default_value_t = 1.1)]
    pub zipf: f64,
    /// Hash partitions of the log (fixed when the log is created).
    #[arg(long, default_value_t = 16)]
    pub partitions: u32,
    /// With --topic: partitions of the topic, if it is created (default: --partitions).
    #[arg(long, value_name = "N")]
    pub topic_partitions: Option<u32>,
    /// Drop the existing log, read models and lab tables first.
    #[arg(long)]
    pub reset: bool,
}

pub async fn seed(g: &Global, a: SeedArgs) -> Result<ExitCode> {
    if a.events == 0 || a.aggregates == 0 {
        bail!("--events and --aggregates must be positive");
    }
    if a.aggregates > a.events {
        bail!(
            "--aggregates ({}) cannot exceed --events ({}): every aggregate has an opening event",
            a.aggregates,
            a.events
        );
    }
    if !(1..=1024).contains(&a.partitions) {
        bail!("--partitions must be between 1 and 1024");
    }
    if !(a.zipf.is_finite() && a.zipf > 0.0) {
        bail!("--zipf must be a positive number, got {}", a.zipf);
    }
    let mut config = lab::SeedConfig::new(a.events, a.aggregates, a.seed);
    config.zipf = a.zipf;
    config.partitions = a.partitions;
    config.reset = a.reset;
    config.progress = true;
    if a.events > config.max_events() {
        bail!("--events {} is too large: at most {}", a.events, config.max_events());
    }
    // Everything else the seeder would refuse, refused before the cluster starts.
    config.validate().context("invalid --events, --aggregates or --zipf")?;
    let url = database_url(g)?;
    #[cfg(not(feature = "kafka"))]
    g.no_topic()?;
    let report = lab::seed::run(&url, config).await.context("seeding the log")?;
    println!("{}", report.render());
    #[cfg(feature = "kafka")]
    if let Some(topic) = &g.topic()? {
        let partitions = a.topic_partitions.unwrap_or(a.partitions);
        topic.create(partitions, false).await.with_context(|| format!("creating {topic}"))?;
        let mirror = kafkalog::MirrorConfig::new(&url, topic.clone());
        let report = kafkalog::mirror(&mirror, super::ctrl_c())
            .await
            .with_context(|| format!("mirroring the log into {topic}"))?;
        println!(
            "mirrored {} events into {topic} ({partitions} partitions) in {:.1} s: {:.0} events/s",
            report.events, report.seconds, report.events_per_s
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Target events per second across all writers (0: as fast as possible).
    #[arg(long, default_value_t = 5_000.0)]
    pub rate: f64,
    /// Concurrent writer connections, each owning a range of the aggregates.
    #[arg(long, default_value_t = 4)]
    pub writers: u32,
    /// Most commands per transaction (fewer at low rates: about 100 commits/s per writer).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Share of transfers that send to another writer's range.
    #[arg(long, default_value_t = 0.25)]
    pub cross_range_ratio: f64,
    /// Write the run's per-second events, conflicts and retries to this CSV file.
    #[arg(long)]
    pub csv: Option<std::path::PathBuf>,
    /// Stop after this long (`30s`, `5m`); default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Seed of the producer's choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Serve the producer's Prometheus metrics (`GET /metrics`) on this address, e.g.
    /// `127.0.0.1:9189` (events appended, version conflicts, retries).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// When the database becomes unreachable, each writer reconnects with backoff for up to
    /// this long, then the producer gives up with an error.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub max_outage: Duration,
}

pub async fn produce(g: &Global, a: ProduceArgs) -> Result<ExitCode> {
    if a.writers == 0 {
        bail!("--writers must be at least 1");
    }
    if !a.rate.is_finite() || a.rate < 0.0 {
        bail!("--rate must be a non-negative number of events per second");
    }
    let url = database_url(g)?;
    if let Some(addr) = a.metrics_listen {
        let bound = api::spawn_metrics_server(addr).await.context("--metrics-listen")?;
        tracing::info!(%bound, "metrics on /metrics");
    }
    if !(0.0..=1.0).contains(&a.cross_range_ratio) {
        bail!("--cross-range-ratio must be within 0..=1");
    }
    let config = lab::ProduceConfig {
        writers: a.writers,
        batch: a.batch,
        cross_range_ratio: a.cross_range_ratio,
        max_outage: a.max_outage,
        ..lab::ProduceConfig::new(a.rate, a.duration, a.seed)
    };
    let stop = super::ctrl_c();
    #[cfg(not(feature = "kafka"))]
    g.no_topic()?;
    // With --topic, a mirror follows the event store into the topic while the writers run,
    // then drains what they left.
    #[cfg(feature = "kafka")]
    let topic = g.topic()?;
    #[cfg(feature = "kafka")]
    let (mirror_stop_tx, mirror_stop) = tokio::sync::watch::channel(false);
    #[cfg(feature = "kafka")]
    let mirror = topic.as_ref().map(|topic| {
        let config = kafkalog::MirrorConfig { follow: true, ..kafkalog::MirrorConfig::new(&url, topic.clone()) };
        tokio::spawn(async move { kafkalog::mirror(&config, mirror_stop).await })
    });
    let report = lab::produce::run(&url, config, stop).await.context("producing")?;
    println!("{}", report.render());
    #[cfg(feature = "kafka")]
    if let (Some(mirror), Some(topic)) = (mirror, &topic) {
        mirror_stop_tx.send_replace(true);
        mirror.await.context("mirror task")?.with_context(|| format!("mirroring into {topic}"))?;
        let last = kafkalog::MirrorConfig::new(&url, topic.clone());
        let drained = kafkalog::mirror(&last, tokio::sync::watch::channel(false).1)
            .await
            .with_context(|| format!("mirroring into {topic}"))?;
        println!("mirror into {topic}: caught up ({} events in the last pass)", drained.events);
    }
    if let Some(path) = a.csv {
        let rows: Vec<Vec<String>> = report
            .per_second
            .iter()
            .map(|s| {
                vec![
                    format!("{:.2}", s.t_s),
                    s.events.to_string(),
                    format!("{:.0}", s.events_per_s),
                    s.conflicts.to_string(),
                    s.retries.to_string(),
                ]
            })
            .collect();
        bench::write_csv(&path, &["t_s", "events", "events_per_s", "conflicts", "retries"], &rows)?;
        println!("csv: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The version to check.
    #[arg(long = "projection", visible_alias = "version", value_name = "PROJECTION")]
    pub projection: String,
    /// `log` (a fold of the log up to the version's positions: any projection), `expected` (the
    /// lab generator's true state: the bank's accounts only), or another version of the family.
    /// Default: `expected` for a version of the bank's accounts in a seeded database, else `log`.
    #[arg(long, default_value = "auto")]
    pub against: String,
    /// Require both versions to be frozen at this position (`projector --until X`) first.
    #[arg(long, value_name = "POSITION")]
    pub at: Option<i64>,
    /// Also print the SQL that was run.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub show_sql: bool,
}

pub async fn verify(g: &Global, a: VerifyArgs, catalog: &Catalog) -> Result<ExitCode> {
    let left = catalog.find(&a.projection).with_context(|| format!("--projection {}", a.projection))?;
    let right = match a.against.as_str() {
        "expected" | "log" | "auto" => None,
        other => Some(
            catalog
                .find(other)
                .with_context(|| format!("--against {other} (log, expected or a version of this binary)"))?,
        ),
    };
    if a.at.is_some() && right.is_none() {
        bail!("--at compares two versions: give --against VERSION");
    }
    let mut client = eventlog::connect(&database_url(g)?).await.context("connecting")?;
    let against = match a.against.as_str() {
        "auto" if lab::verify::has_expected(&client, left.any()).await? => "expected",
        "auto" => "log",
        other => other,
    };
    if against == "log" {
        let report = left
            .verify_against_log(&mut client)
            .await
            .with_context(|| format!("verifying {} against the log", a.projection))?;
        println!("{}", report.render());
        return Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let report = match right {
        None => lab::verify::against_expected(&client, left.any()).await?,
        Some(right) => {
            if let Some(at) = a.at {
                frozen_at(&client, left.any().name(), at).await?;
                frozen_at(&client, right.any().name(), at).await?;
            }
            lab::verify::between_versions(&client, left.any(), right.any()).await?
        }
    };
    if a.show_sql {
        println!("-- SQL:\n{}\n", report.sql.trim());
    }
    println!("{}", report.render());
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Checks that every partition of `projection` sits exactly at the boundary `at`.
async fn frozen_at(client: &tokio_postgres::Client, projection: &str, at: i64) -> Result<()> {
    let positions = readmodel::offsets(client, projection).await?;
    let off: Vec<_> = positions.iter().filter(|p| **p != eventlog::Position::boundary(at)).collect();
    if !off.is_empty() {
        bail!(
            "{projection} is not frozen at {at}: {} of {} partitions are elsewhere (e.g. {}); \
             run `reproject projector --mode live --projection {projection} --until {at}`",
            off.len(),
            positions.len(),
            off[0]
        );
    }
    Ok(())
}
