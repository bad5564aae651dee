//! `reproject adopt`: the log fed from the app's own events table, online (see
//! `eventlog::adopt` for the design and ARCHITECTURE.md, "Adopted tables").

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use eventlog::adopt::{self, AdoptSpec, QualifiedName};

use super::{database_url, parse_duration, Global};

#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// The app's events table (`schema.table`; `public` by default). Needed the first time;
    /// a rerun resumes the adoption recorded in the database.
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,
    /// Its stream id column (bigint, uuid or text: the log's ids become of that type).
    #[arg(long = "id", value_name = "COLUMN")]
    pub id_column: Option<String>,
    /// Its per-stream version column (an integer).
    #[arg(long = "version", value_name = "COLUMN")]
    pub version_column: Option<String>,
    /// Its event type column (text).
    #[arg(long = "type", value_name = "COLUMN")]
    pub type_column: Option<String>,
    /// Its payload column (jsonb, json, or text holding JSON).
    #[arg(long = "data", value_name = "COLUMN")]
    pub data_column: Option<String>,
    /// Its timestamp column (timestamptz).
    #[arg(long = "ts", value_name = "COLUMN")]
    pub ts_column: Option<String>,
    /// The app's first version of a stream: 1, or 0 for stores that count from 0.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(0..=1))]
    pub first_version: i32,
    /// The column reproject adds to the table: the inserting transaction's id, for new rows
    /// only (nullable: no rewrite, the app's inserts fill it by its default).
    #[arg(long, default_value = AdoptSpec::TX_COLUMN, value_name = "COLUMN")]
    pub tx_column: String,
    /// Hash partitions of the log, if this database has none yet.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub partitions: u32,
    /// How long the claim may make the app's writers wait for the table's lock (once), per
    /// attempt; it is tried up to 10 times.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub lock_timeout: Duration,
    /// History rows copied per transaction (a resumed import restarts from the last one).
    #[arg(long, default_value_t = 50_000)]
    pub chunk: usize,
    /// New rows copied per transaction by the feed.
    #[arg(long, default_value_t = 5_000)]
    pub batch: usize,
    /// Wait between polls of an idle table.
    #[arg(long, value_parser = parse_duration, default_value = "50ms")]
    pub poll: Duration,
    /// Stop once every row committed when the feed started is copied (default: feed until
    /// Ctrl-C, as long as the app writes).
    #[arg(long)]
    pub stop_at_head: bool,
    /// Compare the table with the log row by row up to the feed's position and name what
    /// differs (rows the app updated or deleted after their copy); changes nothing.
    #[arg(long)]
    pub check: bool,
    /// Serve the feed's Prometheus metrics on this address.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl AdoptArgs {
    /// The spec from the flags, if the table is named (every column then must be).
    fn spec(&self) -> Result<Option<AdoptSpec>> {
        let Some(table) = &self.table else {
            let given = [&self.id_column, &self.version_column, &self.type_column, &self.data_column, &self.ts_column];
            if given.iter().any(|c| c.is_some()) {
                bail!("column flags name columns of a table: give --table too");
            }
            return Ok(None);
        };
        let need = |flag: &str, value: &Option<String>| {
            value.clone().with_context(|| format!("--table {table}: {flag} COLUMN is needed the first time"))
        };
        let spec = AdoptSpec {
            table: QualifiedName::parse(table)?,
            id_column: need("--id", &self.id_column)?,
            version_column: need("--version", &self.version_column)?,
            type_column: need("--type", &self.type_column)?,
            data_column: need("--data", &self.data_column)?,
            ts_column: need("--ts", &self.ts_column)?,
            first_version: self.first_version,
            tx_column: self.tx_column.clone(),
        };
        spec.validate()?;
        Ok(Some(spec))
    }
}

pub async fn run(g: &Global, a: AdoptArgs) -> Result<ExitCode> {
    if a.chunk == 0 || a.batch == 0 {
        bail!("--chunk and --batch must be at least 1");
    }
    let flagged = a.spec()?;
    let url = database_url(g)?;
    let mut client = eventlog::connect(&url).await.context("connecting")?;
    if a.check {
        let report = adopt::check(&mut client).await.context("checking the adopted table against the log")?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    if let Some(addr) = a.metrics_listen {
        let bound = api::spawn_metrics_server(addr).await.context("--metrics-listen")?;
        tracing::info!(%bound, "metrics on /metrics");
    }
    let spec = match (flagged, adopt::adoption(&client).await?) {
        (Some(spec), _) => spec,
        (None, Some(existing)) => existing.spec,
        (None, None) => bail!("nothing adopted in this database yet: name the table and its columns (see --help)"),
    };
    let source = adopt::inspect(&client, &spec).await?;
    println!(
        "adopting {} ({} stream ids, ~{} rows): column {} added for new rows, no rewrite",
        spec.table, source.id_kind, source.rows_estimate, spec.tx_column
    );
    let adopted = adopt::claim(&mut client, &spec, a.partitions, a.lock_timeout, 10).await?;
    adopt::ensure_feed_index(&client, &spec).await.context("indexing the table for the feed")?;
    let bar = indicatif::ProgressBar::new(source.rows_estimate.max(adopted.history_rows).max(1) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("history {bar:30} {pos}/{len} rows {per_sec} [{elapsed_precise}]")
            .expect("valid template"),
    );
    let history = adopt::import_history(&url, a.chunk, |done| {
        if done as u64 > bar.length().unwrap_or(0) {
            bar.set_length(done as u64);
        }
        bar.set_position(done as u64);
    })
    .await
    .context("importing the history")?;
    bar.finish_and_clear();
    println!(
        "history: {} rows copied ({} before a restart) in {:.1} s ({:.0} events/s), log indexed in {:.1} s",
        history.rows, history.resumed_from, history.seconds, history.events_per_s, history.index_seconds
    );
    let mut feeder = adopt::Feeder::open(&client, a.batch).await?;
    println!("feeding new rows of {} into the log (Ctrl-C stops)", spec.table);
    let copied = adopt::follow(&mut client, &mut feeder, a.poll, a.stop_at_head, super::ctrl_c()).await?;
    let state = feeder.adoption();
    println!(
        "{}",
        serde_json::json!({
            "table": spec.table.to_string(),
            "id_type": state.id_kind,
            "history_rows": state.history_rows,
            "fed_rows": state.fed_rows,
            "copied_now": copied,
        })
    );
    Ok(ExitCode::SUCCESS)
}
