//! Prometheus for real (`reproject obs start`): a live projector, a producer, the API under
//! load and an adaptive replay, scraped every second; every series the seed asks for must
//! have samples, and every panel of the Grafana board (`deploy/grafana/reproject.json`) must
//! evaluate to at least one series. Skipped, saying why, only where the `prometheus` binary
//! is not installed (`.ci/run` installs it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support;

fn prometheus_installed() -> bool {
    std::env::var_os("PROMETHEUS_BIN").is_some_and(|p| Path::new(&p).is_file())
        || std::env::var("PATH").unwrap_or_default().split(':').any(|d| Path::new(d).join("prometheus").is_file())
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr")
}

/// A plain HTTP/1.0 GET (no client library in this test binary); returns status and body.
fn http_get(addr: SocketAddr, path_and_query: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(format!("GET {path_and_query} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /api/v1/query`: the instant vector's samples as (labels, value), or the error.
fn query(prom: SocketAddr, expr: &str, at: Option<f64>) -> Result<Vec<(Value, f64)>, String> {
    let mut path = format!("/api/v1/query?query={}", urlencode(expr));
    if let Some(t) = at {
        path.push_str(&format!("&time={t:.3}"));
    }
    let (status, body) = http_get(prom, &path).ok_or("no answer from prometheus")?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
    if v["status"] != "success" {
        return Err(format!("{status}: {body}"));
    }
    Ok(v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|s| (s["metric"].clone(), s["value"][1].as_str().and_then(|x| x.parse().ok()).unwrap_or(f64::NAN)))
                .collect()
        })
        .unwrap_or_default())
}

/// A predicate on a query's samples.
type Accept = dyn Fn(&[(Value, f64)]) -> bool;

/// Polls `expr` until `ok` accepts its samples or `deadline` passes (then panics with the last
/// answer).
fn wait_for(
    prom: SocketAddr,
    what: &str,
    expr: &str,
    deadline: Instant,
    ok: impl Fn(&[(Value, f64)]) -> bool,
) -> Vec<(Value, f64)> {
    loop {
        let answer = query(prom, expr, None);
        if let Ok(samples) = &answer {
            if ok(samples) {
                return samples.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no acceptable samples for `{expr}` in time; last answer: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Stops everything the test started, even when it fails.
struct Processes {
    children: Vec<Child>,
    obs_dir: PathBuf,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.children {
            // SAFETY: SIGTERM to children this test spawned; each is reaped right after.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
        let _ = support::bin().args(["obs", "stop", "--dir"]).arg(&self.obs_dir).output();
    }
}

/// The board's queries with Grafana's variables replaced: every version, a 10 s rate window.
fn board_queries(board: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in board["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("?").to_owned();
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            out.push((title.clone(), expr.replace("$version", ".*").replace("$__rate_interval", "10s")));
        }
    }
    out
}

#[tokio::test]
async fn prometheus_scrapes_every_series_and_every_board_panel_has_data() {
    if !prometheus_installed() {
        eprintln!("skipped: no `prometheus` binary on PATH (apt-get install prometheus; .ci/run does)");
        return;
    }
    let url = support::seeded(30_000, 1_000, 4).await;
    let client = eventlog::connect(&url).await.expect("connect");
    // One event that cannot be folded: dead-lettered, its aggregate quarantined (--quarantine).
    client
        .batch_execute(
            "INSERT INTO log.events (aggregate_id, version, type, ts, payload) \
             VALUES (900001, 1, 'deposited', now(), '{\"amount_cents\": \"lots\"}')",
        )
        .await
        .expect("a bad event");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (api, live, replay, producer, prom) = (free_port(), free_port(), free_port(), free_port(), free_port());
    let s = |a: SocketAddr| a.to_string();
    let mut procs = Processes { children: Vec::new(), obs_dir: tmp.path().join("prom") };
    procs.children.push(support::spawn(&url, &["api", "--listen", &s(api), "--pool", "2"]));
    procs.children.push(support::spawn(
        &url,
        &["projector", "--mode", "live", "--version", "v3", "--quarantine", "--batch", "2000", "--progress", "false"]
            .into_iter()
            .chain(["--metrics-listen", &s(live)])
            .collect::<Vec<_>>(),
    ));
    procs
        .children
        .push(support::spawn(&url, &["produce", "--rate", "100", "--writers", "2", "--metrics-listen", &s(producer)]));
    let obs_dir = procs.obs_dir.to_str().expect("utf-8 path").to_owned();
    let out = support::run_ok(
        &url,
        &[
            "obs",
            "start",
            "--dir",
            &obs_dir,
            "--listen",
            &s(prom),
            "--api",
            &s(api),
            "--projector",
            &s(live),
            "--projector",
            &s(replay),
            "--producer",
            &s(producer),
        ],
    );
    assert!(out.contains(&format!("http://{prom}")), "obs start prints the URL: {out}");
    let api_url = format!("http://{api}");
    let csv = tmp.path().join("load.csv");
    procs.children.push(support::spawn(
        &url,
        &["load", "--url", &api_url, "--concurrency", "2", "--duration", "300s", "--rate", "300"]
            .into_iter()
            .chain(["--aggregates", "1000", "--csv", csv.to_str().expect("utf-8")])
            .collect::<Vec<_>>(),
    ));

    let deadline = Instant::now() + Duration::from_secs(120);
    let p99 = r#"histogram_quantile(0.99, sum by (le) (rate(reproject_api_request_duration_seconds_bucket{route="/aggregate/{id}",version="v3"}[5s])))"#;
    let finite = |s: &[(Value, f64)]| s.iter().any(|(_, v)| v.is_finite() && *v > 0.0);
    let before = wait_for(prom, "read-API p99 without a replay", p99, deadline, finite);
    let no_replay =
        query(prom, r#"count(reproject_replay_partition_progress_ratio{version="v4"})"#, None).expect("query");
    assert!(no_replay.is_empty(), "no replay has started yet: {no_replay:?}");

    procs.children.push(support::spawn(
        &url,
        &["projector", "--mode", "replay", "--version", "v4", "--catch-up", "--quarantine", "--workers", "2"]
            .into_iter()
            .chain(["--rate-limit", "20000", "--max-live-p99-increase", "50%", "--live-api", &api_url])
            .chain(["--metrics-listen", &s(replay), "--progress", "false"])
            .collect::<Vec<_>>(),
    ));
    let bulk_rate = r#"sum(rate(reproject_projector_events_read_total{phase="bulk",version="v4"}[3s]))"#;
    let positive = |s: &[(Value, f64)]| s.iter().any(|(_, v)| *v > 0.0);
    wait_for(prom, "replay events/s", bulk_rate, deadline, positive);
    let during = wait_for(prom, "read-API p99 with a replay running", p99, deadline, finite);
    eprintln!(
        "read-API p99 (Prometheus, 5 s windows): {:.2} ms without a replay, {:.2} ms with one running",
        before[0].1 * 1e3,
        during[0].1 * 1e3
    );

    // Every series the seed names, with real samples.
    let at_least = |n: f64| move |s: &[(Value, f64)]| s.iter().any(|(_, v)| *v >= n);
    let any = |s: &[(Value, f64)]| !s.is_empty();
    let series: Vec<(&str, &str, Box<Accept>)> = vec![
        (
            "replay MB/s",
            r#"rate(reproject_projector_read_bytes_total{phase="bulk",version="v4"}[10s])"#,
            Box::new(positive),
        ),
        ("apply batch size", r#"reproject_projector_batch_events_count{version="v3"}"#, Box::new(at_least(1.0))),
        (
            "batch size buckets",
            r#"reproject_projector_batch_events_bucket{version="v3",le="2500"}"#,
            Box::new(at_least(1.0)),
        ),
        (
            "write latency (tail)",
            r#"reproject_projector_write_duration_seconds_count{phase="tail"}"#,
            Box::new(at_least(1.0)),
        ),
        (
            "write latency (bulk)",
            r#"reproject_projector_write_duration_seconds_count{phase="bulk",version="v4"}"#,
            Box::new(at_least(1.0)),
        ),
        (
            "per-partition replay progress",
            r#"count(reproject_replay_partition_progress_ratio{version="v4"})"#,
            Box::new(at_least(4.0)),
        ),
        ("live lag (events)", r#"reproject_projection_lag_events{version="v3"}"#, Box::new(any)),
        ("live lag (seconds)", r#"reproject_projector_lag_seconds{version="v3"}"#, Box::new(any)),
        ("catch-up lag to the tail", r#"reproject_projection_lag_events{version="v4"}"#, Box::new(any)),
        ("build progress", r#"reproject_build_progress_ratio{job="projector",version="v4"}"#, Box::new(any)),
        ("build ETA", r#"reproject_build_eta_seconds{version="v4"}"#, Box::new(any)),
        ("held events", r#"reproject_held_events{version="v3"}"#, Box::new(any)),
        ("dead letters", r#"reproject_dead_letters{version="v3"}"#, Box::new(at_least(1.0))),
        ("quarantined aggregates", r#"reproject_quarantined_aggregates{version="v3"}"#, Box::new(at_least(1.0))),
        (
            "dead letters in the replay",
            r#"reproject_projector_dead_letters_total{version="v4"}"#,
            Box::new(at_least(1.0)),
        ),
        (
            "adaptive rate limit",
            r#"reproject_replay_rate_limit_events_per_second{version="v4"}"#,
            Box::new(at_least(1.0)),
        ),
        ("adaptive measured p99", r#"reproject_replay_live_p99_seconds{version="v4"}"#, Box::new(positive)),
        ("adaptive threshold", r#"reproject_replay_live_p99_threshold_seconds{version="v4"}"#, Box::new(positive)),
        ("PostgreSQL commits", "reproject_pg_xact_commit_total", Box::new(at_least(1.0))),
        (
            "database reconnects (api, live, producer)",
            r#"count(reproject_db_reconnects_total{process=~"api|live|producer"})"#,
            Box::new(at_least(3.0)),
        ),
        ("producer scraped", r#"up{job="producer"}"#, Box::new(at_least(1.0))),
        ("every target up", r#"min(up{job=~"api|projector|producer"})"#, Box::new(at_least(1.0))),
    ];
    for (what, expr, ok) in &series {
        wait_for(prom, what, expr, deadline, ok);
    }

    // The Grafana board: the current schema, and every panel's queries answer with series.
    let board: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/reproject.json")).expect("board"),
    )
    .expect("the board is JSON");
    assert!(board["schemaVersion"].as_u64().is_some_and(|v| v >= 39), "a current Grafana schema");
    let queries = board_queries(&board);
    assert!(queries.len() >= 14, "every panel has its queries: {}", queries.len());
    loop {
        let failing: Vec<String> = queries
            .iter()
            .filter_map(|(title, expr)| match query(prom, expr, None) {
                Ok(s) if !s.is_empty() => None,
                Ok(_) => Some(format!("{title}: no series for `{expr}`")),
                Err(e) => Some(format!("{title}: `{expr}` failed: {e}")),
            })
            .collect();
        if failing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "board panels without data:\n{}", failing.join("\n"));
        std::thread::sleep(Duration::from_millis(500));
    }
    // `reproject projections` shows the same counts.
    let listing = support::run_ok(&url, &["projections"]);
    let v3 = listing.lines().find(|l| l.starts_with("v3 ")).expect("v3 listed");
    assert!(v3.contains("held=0 dead_letters=1 quarantined=1"), "{listing}");
    drop(procs);
}

#[tokio::test]
async fn the_replay_warns_for_every_dead_letter_and_projections_counts_them() {
    let url = support::seeded(3_000, 300, 2).await;
    let client = eventlog::connect(&url).await.expect("connect");
    client
        .batch_execute(
            "INSERT INTO log.events (aggregate_id, version, type, ts, payload) VALUES \
             (900001, 1, 'deposited', now(), '{\"amount_cents\": \"lots\"}'), \
             (900002, 1, 'deposited', now(), '{\"amount_cents\": \"many\"}')",
        )
        .await
        .expect("bad events");
    let out = support::run(
        &url,
        &["projector", "--mode", "replay", "--version", "v4", "--catch-up", "--stop-at-head", "--quarantine"]
            .into_iter()
            .chain(["--progress", "false"])
            .collect::<Vec<_>>(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "replay failed: {stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("event dead-lettered")).collect();
    assert_eq!(warnings.len(), 2, "one WARN per dead letter:\n{stderr}");
    assert!(warnings.iter().all(|l| l.contains("WARN")), "{warnings:?}");
    let listing = support::run_ok(&url, &["projections"]);
    let v4 = listing.lines().find(|l| l.starts_with("v4 ")).expect("v4 listed");
    assert!(v4.contains("dead_letters=2 quarantined=2"), "{listing}");
}
