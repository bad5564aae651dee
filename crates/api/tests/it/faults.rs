//! The API and the live projector through a database outage (a private cluster stopped in
//! immediate mode, then started again): every reproject connection is named in
//! `pg_stat_activity`; while the database is away the API answers 503 with `Retry-After`
//! within its request timeout, never hanging; once it is back, 200 again, and the projector
//! applies new events, neither process restarted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lab::bank::{V3, V4};

use crate::support::*;

/// Polls `done` every 50 ms until it holds, failing with `what` after `within`.
async fn wait_for<F, Fut>(within: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `application_name`s of the connections to the database of `url`, but the probe's own.
async fn names(url: &str) -> Vec<String> {
    let Ok(client) = eventlog::connect_as(url, "reproject test probe").await else { return Vec::new() };
    let rows = client
        .query(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() \
             AND backend_type = 'client backend' AND pid <> pg_backend_pid() ORDER BY 1",
            &[],
        )
        .await
        .unwrap_or_default();
    rows.iter().map(|r| r.get(0)).collect()
}

/// A GET of `path`: its status, its `Retry-After` and how long it took.
async fn get(http: &reqwest::Client, base: &str, path: &str) -> (u16, Option<String>, Duration) {
    let started = Instant::now();
    let response = http.get(format!("{base}{path}")).send().await.expect("the API answers");
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), retry_after, started.elapsed())
}

/// Runs a blocking harness call (pg_ctl) off the runtime's threads.
async fn blocking(cluster: &Arc<pgharness::Throwaway>, f: fn(&pgharness::Throwaway) -> pgharness::Result<()>) {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || f(&cluster)).await.unwrap().expect("pg_ctl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_503_with_retry_after_during_an_outage_and_200_after_it_without_a_restart() {
    let cluster = Arc::new(pgharness::Throwaway::private().expect("a private cluster"));
    let url = cluster.fresh_database();
    let n = 20;
    let mut client = eventlog::connect(&url).await.unwrap();
    eventlog::create(&mut client, PARTITIONS, fold::IdKind::Bigint).await.unwrap();
    eventlog::ensure_indexes(&client).await.unwrap();
    readmodel::ensure_schema(&mut client).await.unwrap();
    append(&mut client, &history(1..=n, 5)).await;
    build(&mut client, &V3, n).await;
    readmodel::cutover(&mut client, "v3").await.unwrap();
    drop(client);

    let request_timeout = Duration::from_secs(2);
    let mut config = api::ApiConfig::new(url.clone(), "127.0.0.1:0".parse().unwrap(), 2, lab::catalog::projections());
    config.default_family = Some("accounts".into());
    config.limits.request_timeout = request_timeout;
    let (base, _shutdown) = serve(config).await;
    let live_config = projector::LiveConfig {
        poll: Duration::from_millis(10),
        max_outage: Duration::from_secs(60),
        ..projector::LiveConfig::new(&url, V4)
    };
    let (_stop_live, stopped) = tokio::sync::watch::channel(false);
    let live = tokio::spawn(async move { projector::run_live(&live_config, stopped).await });
    let http = reqwest::Client::new();

    // Who is who, by name.
    wait_for(Duration::from_secs(30), "the API's pool and the live projector by name", || async {
        let names = names(&url).await;
        names.iter().any(|n| n == "reproject api") && names.iter().any(|n| n == "reproject live v4")
    })
    .await;
    let unnamed: Vec<String> = names(&url).await.into_iter().filter(|n| !n.starts_with("reproject")).collect();
    assert!(unnamed.is_empty(), "connections without a reproject name: {unnamed:?}");
    assert_eq!(get(&http, &base, "/aggregate/1").await.0, 200);

    blocking(&cluster, pgharness::Throwaway::stop_immediate).await;
    let down = Instant::now();
    for _ in 0..5 {
        let (status, retry_after, took) = get(&http, &base, "/aggregate/1").await;
        assert_eq!(status, 503, "a read while the database is down");
        assert_eq!(retry_after.as_deref(), Some("1"), "a 503 says when to retry");
        assert!(
            took <= request_timeout + Duration::from_secs(1),
            "a read hung for {took:?} (timeout {request_timeout:?})"
        );
    }
    blocking(&cluster, pgharness::Throwaway::start_again).await;
    let up = Instant::now();
    wait_for(Duration::from_secs(30), "a 200 after the restart", || async {
        get(&http, &base, "/aggregate/1").await.0 == 200
    })
    .await;
    println!(
        "outage: database down {:.2}s; first 200 {:.2}s after it was back",
        (up - down).as_secs_f64(),
        up.elapsed().as_secs_f64()
    );

    // The live projector, not restarted either, applies what is written after the outage.
    let mut client = eventlog::connect(&url).await.unwrap();
    append(&mut client, &[opened(n + 1)]).await;
    wait_for(Duration::from_secs(60), "the live projector to apply an event written after the outage", || async {
        client
            .query_opt("SELECT 1 FROM read.accounts_v4 WHERE aggregate_id = $1", &[&(n + 1)])
            .await
            .is_ok_and(|r| r.is_some())
    })
    .await;
    assert!(!live.is_finished(), "the live projector stopped");
}

fn opened(id: i64) -> eventlog::NewEvent {
    eventlog::NewEvent {
        aggregate_id: id.into(),
        version: 1,
        event_type: "account_opened".into(),
        ts: chrono::Utc::now(),
        payload: format!(r#"{{"owner":"c-{id}","currency":"EUR"}}"#),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_stuck_behind_a_lock_is_answered_503_at_the_request_timeout_and_200_once_it_is_released() {
    let f = fixture(5, false).await;
    let request_timeout = Duration::from_secs(1);
    let mut config = api::ApiConfig::new(f.url.clone(), "127.0.0.1:0".parse().unwrap(), 1, lab::catalog::projections());
    config.default_family = Some("accounts".into());
    config.limits.request_timeout = request_timeout;
    let (base, _shutdown) = serve(config).await;
    let http = reqwest::Client::new();
    assert_eq!(get(&http, &base, "/aggregate/1").await.0, 200);

    // A migration, say, holding the read table: every read of it waits on the lock.
    let mut locker = eventlog::connect(&f.url).await.unwrap();
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE read.accounts_v3 IN ACCESS EXCLUSIVE MODE").await.unwrap();
    for _ in 0..3 {
        let (status, retry_after, took) = get(&http, &base, "/aggregate/1").await;
        assert_eq!(status, 503, "a read behind the lock");
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert!(
            took >= request_timeout && took <= request_timeout + Duration::from_secs(1),
            "answered after {took:?}, timeout {request_timeout:?}"
        );
    }
    // The abandoned statements do not stay queued on the pool's one connection behind the
    // lock: the server cancels them at the statement timeout (the request timeout).
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'reproject api' \
                   AND datname = current_database() AND wait_event_type = 'Lock'";
    let probe = eventlog::connect(&f.url).await.unwrap();
    wait_for(Duration::from_secs(5), "the API's statements behind the lock to be cancelled", || async {
        probe.query_one(waiting, &[]).await.unwrap().get::<_, i64>(0) == 0
    })
    .await;
    tx.rollback().await.unwrap();
    let (status, _, took) = get(&http, &base, "/aggregate/1").await;
    assert_eq!(status, 200, "a read once the lock is released");
    assert!(took < request_timeout, "the read after the lock took {took:?}");
}
