//! The example's app: creates its own events table and appends orders to it, as any
//! event-sourced app writes (nothing here knows reproject). It prints one JSON line per run
//! with how long its inserts took, which is what adopting the table may cost it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use reproject_example_orders::app::{AppTable, Writer};

#[derive(Parser)]
#[command(about = "The example app: its events table and its writer")]
struct Cli {
    /// PostgreSQL URL of the app's database.
    #[arg(long, env = "APP_DATABASE_URL")]
    database_url: String,
    /// Which of the example's tables: `uuid` (app_events, uuid stream ids) or `text`
    /// (shop_events, text ids, versions from 0).
    #[arg(long, value_enum, default_value = "uuid")]
    shape: Shape,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Shape {
    Uuid,
    Text,
}

#[derive(Subcommand)]
enum Command {
    /// Create the app's events table.
    Setup,
    /// Append orders: `--events` of them in batches, or at `--rate` for `--duration`.
    Write(WriteArgs),
    /// Print the flags `reproject adopt` takes for this table.
    AdoptFlags,
    /// Compare a version of the `orders` read model with the orders folded in SQL straight
    /// from the app's table (independently of reproject's fold); prints `{"diffs": N, ...}`.
    Check {
        /// The version to check (`orders_v1`, `orders_v2`).
        #[arg(long)]
        version: String,
    },
}

#[derive(clap::Args)]
struct WriteArgs {
    /// Events to write (with --rate: until --duration instead).
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Events per insert (one transaction each).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Events per second; unset: as fast as the database takes them.
    #[arg(long)]
    rate: Option<f64>,
    /// With --rate: how long to write.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    duration: Duration,
    /// The app's new event type: orders get notes (`order_note_added`).
    #[arg(long)]
    notes: bool,
    /// Write into reproject's `log.events` (a native log) instead of the app's table.
    #[arg(long)]
    native: bool,
    /// Order numbers start here (runs that must not collide take disjoint ranges).
    #[arg(long, default_value_t = 1)]
    first_order: u64,
    /// Seed of the orders' content.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let table = match cli.shape {
        Shape::Uuid => AppTable::uuid(),
        Shape::Text => AppTable::text(),
    };
    let client = reproject::eventlog::connect(&cli.database_url).await.context("connecting")?;
    match cli.command {
        Command::Setup => {
            client.batch_execute(&table.create_sql()).await.context("creating the app's table")?;
            println!("{} ready", table.table);
        }
        Command::AdoptFlags => println!("{}", table.adopt_flags().join(" ")),
        Command::Check { version } => {
            let (compared, diffs, sample) = check(&client, &table, &version).await?;
            println!(
                "{}",
                serde_json::json!({ "version": version, "compared": compared, "diffs": diffs, "sample": sample })
            );
        }
        Command::Write(a) => write(&client, table, a).await?,
    }
    Ok(())
}

async fn write(client: &tokio_postgres::Client, table: AppTable, a: WriteArgs) -> Result<()> {
    let mut writer = Writer::new(table, a.seed, 200).starting_at(a.first_order);
    writer.notes = a.notes;
    let started = Instant::now();
    let mut times = Vec::new();
    let mut written = 0usize;
    loop {
        let done = match a.rate {
            Some(_) => started.elapsed() >= a.duration,
            None => written >= a.events,
        };
        if done {
            break;
        }
        let n = match a.rate {
            Some(_) => a.batch,
            None => a.batch.min(a.events - written),
        };
        let events = writer.next_events(n);
        let took = writer.insert(client, &events, a.native).await.context("the app's insert failed")?;
        times.push(took.as_secs_f64() * 1e3);
        written += n;
        if let Some(rate) = a.rate {
            let due = Duration::from_secs_f64(written as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times.get(((times.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    println!(
        "{}",
        serde_json::json!({
            "events": written,
            "batches": times.len(),
            "batch_events": a.batch,
            "mean_batch_ms": mean,
            "p50_batch_ms": at(0.5),
            "p99_batch_ms": at(0.99),
            "seconds": started.elapsed().as_secs_f64(),
            "native": a.native,
        })
    );
    Ok(())
}

/// The read model's orders against the SQL fold of the app's table: status, item count, total
/// and each SKU's quantity, for every order (a row missing on either side counts).
async fn check(client: &tokio_postgres::Client, table: &AppTable, version: &str) -> Result<(i64, i64, Vec<String>)> {
    let expected = reproject_example_orders::app::expected_orders_sql(table);
    let sql = format!(
        "WITH expected AS ({expected}), \
         served AS (SELECT aggregate_id::TEXT AS stream, status, item_count, total, \
                       (SELECT coalesce(jsonb_object_agg(k, (v ->> 'qty')::BIGINT), '{{}}') \
                        FROM jsonb_each(items) AS i(k, v)) AS items \
                    FROM read.\"orders_{version}\") \
         SELECT coalesce(e.stream, s.stream), (SELECT count(*) FROM expected) \
         FROM expected e FULL JOIN served s USING (stream) \
         WHERE e.stream IS NULL OR s.stream IS NULL OR e.status <> s.status OR e.item_count <> s.item_count \
            OR e.total <> s.total OR e.items <> s.items"
    );
    let rows = client.query(&sql, &[]).await.context("comparing with the SQL fold of the app's table")?;
    let compared = match rows.first() {
        Some(r) => r.get(1),
        None => client.query_one(&format!("SELECT count(*) FROM ({expected}) e"), &[]).await?.get(0),
    };
    let sample = rows.iter().take(5).map(|r| r.get::<_, String>(0)).collect();
    Ok((compared, rows.len() as i64, sample))
}
