//! `bench cutover` (experiment 2) and `bench time-travel`: the API under load while the active
//! version switches, and as-of latency by history length.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fold::Projection;
use lab::bank::{V3, V4};
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// The admin token of the APIs the benchmarks start: random per process, so that no other
/// local account can switch a benchmark's version.
pub fn admin_token() -> &'static api::AdminToken {
    static TOKEN: std::sync::OnceLock<api::AdminToken> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        let text: String =
            rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(32).map(char::from).collect();
        api::AdminToken::new(&text).expect("32 alphanumerics make a valid token")
    })
}

/// Starts the API in this process on a free loopback port, with the bench's admin token.
pub async fn start_api(url: &str) -> Result<SocketAddr> {
    let state =
        api::state(url, 8, Some(admin_token().clone()), lab::catalog::projections()).await.context("api pool")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, api::router(state)).await {
            tracing::error!(error = %e, "api stopped");
        }
    });
    Ok(addr)
}

fn live<P: Projection>(url: &str, projection: P, stop_at_head: bool, until: Option<i64>) -> projector::LiveConfig<P> {
    projector::LiveConfig { stop_at_head, until, ..projector::LiveConfig::new(url, projection) }
}

/// Drops every read model: the benchmark starts from the log alone.
pub async fn reset_read_side(url: &str) -> Result<()> {
    let mut client = eventlog::connect(url).await?;
    client.batch_execute("DROP SCHEMA IF EXISTS read CASCADE").await?;
    readmodel::ensure_schema(&mut client).await?;
    Ok(())
}

/// Builds `projection` by replay and catch-up, and activates it if nothing is active.
pub async fn build_active<P: Projection>(url: &str, projection: P, workers: usize) -> Result<()> {
    let never = tokio::sync::watch::channel(false).1;
    let config = projector::ReplayConfig { workers, ..projector::ReplayConfig::new(url, projection) };
    projector::replay(&config, never).await?;
    Ok(())
}

/// Configuration of `bench cutover`.
#[derive(Debug, Clone)]
pub struct CutoverBenchConfig {
    pub database_url: String,
    pub ingest: f64,
    pub concurrency: usize,
    pub duration: Duration,
    pub workers: usize,
    pub out_dir: PathBuf,
    /// Keep the read side as it is (v3 already built and active) instead of rebuilding v3.
    pub reuse_active_v3: bool,
}

/// Figures of `bench cutover`.
#[derive(Debug, Clone, Serialize)]
pub struct CutoverBench {
    pub requests: u64,
    pub failed_reads: u64,
    pub not_found: u64,
    pub version_regressions: u64,
    pub versions_served: std::collections::BTreeMap<String, u64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Time inside the cutover transaction (server side).
    pub switch_ms: f64,
    /// Round trip of the successful POST /cutover.
    pub switch_request_ms: f64,
    /// Refusals (409: not caught up yet) before the switch went through.
    pub refused_attempts: u64,
    pub frozen_position: i64,
    /// Aggregates where v4 and v3 differ at the frozen position for any reason other than the
    /// v3 fee bug, plus bug aggregates that do not differ: must be 0.
    pub diffs: u64,
    /// All differing aggregates (the fee-bug set).
    pub diffs_total: u64,
    pub diffs_v4_vs_expected: u64,
    pub aggregates: i64,
}

/// Experiment 2: load running, v3 live and active, v4 replayed and caught up, cutover; then
/// both frozen at one position and compared.
pub async fn cutover_bench(config: &CutoverBenchConfig) -> Result<CutoverBench> {
    let url = config.database_url.clone();
    let client = eventlog::connect(&url).await?;
    let v3_active = readmodel::version_info(&client, "v3").await.is_ok_and(|i| i.state == readmodel::State::Active);
    if !(config.reuse_active_v3 && v3_active) {
        reset_read_side(&url).await?;
        tracing::info!("building v3 (the live, active version)");
        build_active(&url, V3, config.workers).await?;
    } else {
        let mut c = eventlog::connect(&url).await?;
        let _ = readmodel::drop_version(&mut c, &V4).await;
    }
    let aggregates: i64 = client.query_one("SELECT count(*) FROM lab.expected_accounts", &[]).await?.get(0);
    let addr = start_api(&url).await?;
    let base = format!("http://{addr}");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let producer = {
        let (url, stop) = (url.clone(), stop_rx.clone());
        let cfg = lab::ProduceConfig::new(config.ingest, None, 5);
        tokio::spawn(async move { lab::produce::run(&url, cfg, stop).await })
    };
    let live_v3 = {
        let (cfg, stop) = (live(&url, V3, false, None), stop_rx.clone());
        tokio::spawn(async move { projector::run_live(&cfg, stop).await })
    };
    let load = {
        let cfg = loadgen::LoadConfig {
            url: base.clone(),
            concurrency: config.concurrency,
            duration: config.duration,
            rate: None,
            aggregates: aggregates as u64,
            ids: None,
            family: None,
            zipf: 1.1,
            seed: 9,
            csv_path: Some(config.out_dir.join("cutover_load.csv")),
        };
        tokio::spawn(async move { loadgen::run(&cfg).await })
    };
    let load_started = Instant::now();
    tracing::info!("replaying v4 beside v3 under load");
    let replay_v4 = {
        let cfg = projector::ReplayConfig {
            workers: config.workers,
            stop_at_head: false,
            ..projector::ReplayConfig::new(&url, V4)
        };
        let stop = stop_rx.clone();
        tokio::spawn(async move { projector::replay(&cfg, stop).await })
    };
    // Wait for v4 to be ready, and for at least a third of the load to have run on v3.
    loop {
        let ready =
            readmodel::version_info(&client, "v4").await.map(|i| i.state == readmodel::State::Ready).unwrap_or(false);
        if ready && load_started.elapsed() >= config.duration / 3 {
            break;
        }
        if replay_v4.is_finished() || load_started.elapsed() > config.duration {
            bail!("v4 did not become ready within the load's duration: lengthen --duration");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let http = reqwest::Client::new();
    let mut refused = 0u64;
    let (switch_ms, switch_request_ms) = loop {
        let t0 = Instant::now();
        let resp = http
            .post(format!("{base}/cutover"))
            .bearer_auth(admin_token().expose())
            .json(&serde_json::json!({"version": "v4"}))
            .send()
            .await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if status.is_success() {
            break (body["switch_ms"].as_f64().unwrap_or(f64::NAN), t0.elapsed().as_secs_f64() * 1e3);
        }
        if status.as_u16() != 409 || refused > 10_000 {
            bail!("cutover failed: {status} {body}");
        }
        refused += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tracing::info!(switch_ms, refused, "switched to v4");
    let report = load.await?.context("load")?;
    stop_tx.send(true).ok();
    producer.await?.context("producer")?;
    live_v3.await?.context("live v3")?;
    replay_v4.await?.context("replay v4")?;

    let x = eventlog::snapshot_xmax(&client).await?;
    let never = tokio::sync::watch::channel(false).1;
    projector::run_live(&live(&url, V3, false, Some(x)), never.clone()).await.context("freezing v3")?;
    projector::run_live(&live(&url, V4, false, Some(x)), never).await.context("freezing v4")?;
    let between = lab::verify::between_versions(&client, &V4, &V3).await?;
    let v4 = lab::verify::against_expected(&client, &V4).await?;
    println!("-- frozen comparison at X = {x}:\n{}\n{}", between.sql.trim(), between.render());
    write_cutover_seconds(&config.out_dir, &report)?;
    crate::plot::figures::render("cutover", &config.out_dir)?;
    Ok(CutoverBench {
        requests: report.requests,
        failed_reads: report.failed,
        not_found: report.not_found,
        version_regressions: report.version_regressions,
        versions_served: report.versions_served.clone(),
        p50_ms: report.p50_ms,
        p99_ms: report.p99_ms,
        switch_ms,
        switch_request_ms,
        refused_attempts: refused,
        frozen_position: x,
        diffs: between.unexpected,
        diffs_total: between.diffs,
        diffs_v4_vs_expected: v4.diffs,
        aggregates,
    })
}

/// Writes `cutover.csv`: every second of the load, the reads each version served, the 404s, the
/// failed reads, p50 and p99.
fn write_cutover_seconds(out_dir: &std::path::Path, report: &loadgen::LoadReport) -> Result<()> {
    let mut versions: Vec<&String> = report.seconds.iter().flat_map(|s| s.served.keys()).collect();
    versions.sort();
    versions.dedup();
    let mut header: Vec<String> = vec!["second".into()];
    header.extend(versions.iter().map(|v| format!("reads_{v}")));
    header.extend(["not_found", "failed", "p50_ms", "p99_ms"].map(String::from));
    let rows: Vec<Vec<String>> = report
        .seconds
        .iter()
        .map(|s| {
            let served: u64 = s.served.values().sum();
            let mut row = vec![s.second.to_string()];
            row.extend(versions.iter().map(|v| s.served.get(*v).copied().unwrap_or(0).to_string()));
            row.extend([
                s.ok.saturating_sub(served).to_string(),
                s.failed.to_string(),
                format!("{:.3}", s.p50_ms),
                format!("{:.3}", s.p99_ms),
            ]);
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    crate::write_csv(&out_dir.join("cutover.csv"), &header, &rows)
}

/// Latency of one history-length class, with or without snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct TimeTravelClass {
    /// `no_snapshots` (the baseline: every as-of folds from the first event) or `snapshots`.
    pub mode: &'static str,
    pub target_events: i64,
    pub aggregate_id: i64,
    pub events: i64,
    pub requests: u64,
    /// Mean events read from the log per request (past the snapshot, when one was used).
    pub mean_events_read: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Figures of `bench time-travel`.
#[derive(Debug, Clone, Serialize)]
pub struct TimeTravelBench {
    pub classes: Vec<TimeTravelClass>,
    /// The 1k-event class with snapshots (what the API serves once `reproject snapshot` ran).
    pub p99_ms_1k: f64,
    pub p99_ms_1k_no_snapshots: f64,
    /// `p99_ms_1k / p99_ms_1k_no_snapshots`.
    pub p99_ratio_1k: f64,
    pub snapshot: projector::SnapshotReport,
}

/// as-of latency over HTTP for aggregates with about 1, 100, 1k and 10k events, first with no
/// snapshots of the fold (the baseline), then after `reproject snapshot --every N`, with the
/// same random offsets in both passes.
pub async fn time_travel_bench(
    url: &str,
    requests: u64,
    snapshot_every: i32,
    out_dir: &std::path::Path,
) -> Result<TimeTravelBench> {
    let projection = V4;
    let mut client = eventlog::connect(url).await?;
    readmodel::ensure_schema(&mut client).await?;
    readmodel::drop_snapshots(&client, &projection).await?;
    let addr = start_api(url).await?;
    let http = reqwest::Client::new();
    let mut targets = Vec::new();
    for target in [1_i64, 100, 1_000, 10_000] {
        let row = client
            .query_opt(
                "SELECT aggregate_id, aggregate_version FROM lab.expected_accounts \
                 WHERE aggregate_version >= $1 ORDER BY aggregate_version, aggregate_id LIMIT 1",
                &[&(target as i32)],
            )
            .await?;
        let Some(row) = row else { continue };
        let (id, events): (i64, i32) = (row.get(0), row.get(1));
        let last_seq: i64 =
            client.query_one("SELECT max(global_seq) FROM log.events WHERE aggregate_id = $1", &[&id]).await?.get(0);
        targets.push((target, id, events as i64, last_seq));
    }
    let mut classes = Vec::new();
    let mut snapshot = None;
    for mode in ["no_snapshots", "snapshots"] {
        if mode == "snapshots" {
            let config =
                projector::SnapshotConfig { every: snapshot_every, ..projector::SnapshotConfig::new(url, projection) };
            snapshot = Some(projector::build_snapshots(&config).await?);
        }
        for &(target, id, events, last_seq) in &targets {
            // The same offsets in both passes; a few unmeasured requests warm the caches first.
            let mut rng = rand::rngs::StdRng::seed_from_u64(17 + target as u64);
            let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut events_read = 0u64;
            for i in 0..requests + 20 {
                let offset = rng.gen_range(1..=last_seq);
                let path = format!("http://{addr}/aggregate/{id}/as-of?offset={offset}&version={}", projection.name());
                let t0 = Instant::now();
                let resp = http.get(path).send().await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                let elapsed = t0.elapsed();
                if !(status.is_success() || status.as_u16() == 404) {
                    bail!("as-of for aggregate {id} answered {status}");
                }
                if i >= 20 {
                    hist.record(elapsed.as_micros().max(1) as u64)?;
                    let body: serde_json::Value = serde_json::from_slice(&body)?;
                    events_read += body["events_read"].as_u64().unwrap_or(0);
                }
            }
            classes.push(TimeTravelClass {
                mode,
                target_events: target,
                aggregate_id: id,
                events,
                requests,
                mean_events_read: events_read as f64 / requests.max(1) as f64,
                p50_ms: hist.value_at_quantile(0.5) as f64 / 1e3,
                p99_ms: hist.value_at_quantile(0.99) as f64 / 1e3,
            });
        }
    }
    crate::write_csv(
        &out_dir.join("time_travel.csv"),
        &["mode", "target_events", "aggregate_id", "events", "requests", "mean_events_read", "p50_ms", "p99_ms"],
        &classes
            .iter()
            .map(|c| {
                vec![
                    c.mode.to_string(),
                    c.target_events.to_string(),
                    c.aggregate_id.to_string(),
                    c.events.to_string(),
                    c.requests.to_string(),
                    format!("{:.1}", c.mean_events_read),
                    format!("{:.3}", c.p50_ms),
                    format!("{:.3}", c.p99_ms),
                ]
            })
            .collect::<Vec<_>>(),
    )?;
    crate::plot::figures::render("time_travel", out_dir)?;
    let p99_1k =
        |mode: &str| classes.iter().find(|c| c.mode == mode && c.target_events == 1_000).map_or(f64::NAN, |c| c.p99_ms);
    let (p99_ms_1k, p99_ms_1k_no_snapshots) = (p99_1k("snapshots"), p99_1k("no_snapshots"));
    Ok(TimeTravelBench {
        classes,
        p99_ms_1k,
        p99_ms_1k_no_snapshots,
        p99_ratio_1k: p99_ms_1k / p99_ms_1k_no_snapshots,
        snapshot: snapshot.expect("the snapshots pass ran"),
    })
}

/// What the demo's time-travel step saw.
#[derive(Debug, Clone, Serialize)]
pub struct TimeTravelCheck {
    pub snapshot: projector::SnapshotReport,
    pub aggregate_id: i64,
    /// The cut: half the log's last `global_seq`.
    pub offset: i64,
    pub events_folded: i64,
    pub snapshot_version: Option<i64>,
    pub events_read: i64,
    pub balance_cents: i64,
    pub ms: f64,
    /// The answer equals the fold of the aggregate's log prefix, computed here from the log.
    pub matches_log_prefix: bool,
}

/// Stores `projection`'s snapshots, then asks the API for the busiest aggregate as of the
/// middle of the log and checks the answer against a fold of the log prefix.
pub async fn time_travel_check<P: Projection>(url: &str, projection: P) -> Result<TimeTravelCheck> {
    let snapshot = projector::build_snapshots(&projector::SnapshotConfig::new(url, projection.clone())).await?;
    let client = eventlog::connect(url).await?;
    let row = client
        .query_one(
            "SELECT (SELECT aggregate_id FROM lab.expected_accounts ORDER BY aggregate_version DESC, aggregate_id \
             LIMIT 1), (SELECT max(global_seq) / 2 FROM log.events)",
            &[],
        )
        .await?;
    let (id, offset): (i64, i64) = (row.get(0), row.get(1));
    let addr = start_api(url).await?;
    let path = format!("http://{addr}/aggregate/{id}/as-of?offset={offset}&version={}", projection.name());
    let t0 = Instant::now();
    let resp = reqwest::get(&path).await?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    if !resp.status().is_success() {
        bail!("GET {path} answered {}", resp.status());
    }
    let body: serde_json::Value = resp.json().await?;
    let raws =
        eventlog::aggregate_events(&client, &id.into(), chrono::DateTime::<chrono::Utc>::MAX_UTC, offset).await?;
    let events = raws.iter().map(|r| r.decode(&projection)).collect::<Result<Vec<_>, _>>()?;
    let expected = fold::fold_from(&projection, None, events)?.row;
    let served = fold::row_from_json(&projection, &body, fold::IdKind::Bigint).ok();
    Ok(TimeTravelCheck {
        snapshot,
        aggregate_id: id,
        offset,
        events_folded: body["events_folded"].as_i64().unwrap_or(0),
        snapshot_version: body["snapshot_version"].as_i64(),
        events_read: body["events_read"].as_i64().unwrap_or(0),
        balance_cents: body["balance"].as_i64().unwrap_or(0),
        ms,
        matches_log_prefix: expected.is_some() && served == expected,
    })
}
