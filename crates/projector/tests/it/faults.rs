//! Faults of the infrastructure, not of our own processes: the database crash-restarted and
//! the projector's connection terminated while a producer appends. The live projector is never
//! restarted: it reconnects on its own and resumes from its stored positions, and at the end
//! its table equals the lab's true state and every event was applied exactly once.
//!
//! The producer's choices come from a seed, printed; `FAULTS_SEED=N` replays a run.

use std::time::{Duration, Instant};

use lab::bank::V4;
use projector::LiveConfig;

use crate::support::wait_for;

/// The seed of this run: `FAULTS_SEED` if set, else from the clock; printed either way.
fn seed() -> u64 {
    let seed = std::env::var("FAULTS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    println!("FAULTS_SEED={seed}");
    seed
}

/// One query on a new connection, `None` while the database is away: the test's own
/// connections die with the server too.
async fn query_i64(url: &str, sql: &str) -> Option<i64> {
    let client = eventlog::connect_as(url, "reproject test probe").await.ok()?;
    client.query_one(sql, &[]).await.ok().map(|r| r.get(0))
}

/// Events v4 has applied, as committed with its rows (`read.projection_offsets`).
async fn applied(url: &str) -> Option<i64> {
    query_i64(url, "SELECT coalesce(sum(events_applied), 0)::BIGINT FROM read.projection_offsets WHERE version = 'v4'")
        .await
}

/// Events in the log.
async fn logged(url: &str) -> Option<i64> {
    query_i64(url, "SELECT count(*) FROM log.events").await
}

/// The backend pid of the live projector of v4 in the database of `url`, found by its name.
async fn live_pid(url: &str) -> Option<i32> {
    let client = eventlog::connect_as(url, "reproject test probe").await.ok()?;
    let row = client
        .query_opt(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'reproject live v4' \
             AND datname = current_database()",
            &[],
        )
        .await
        .ok()??;
    Some(row.get(0))
}

/// A seeded log in a fresh database of `cluster`; returns its URL.
async fn seeded(cluster: &pgharness::Throwaway) -> String {
    let url = cluster.fresh_database();
    let mut seed = lab::SeedConfig::new(6_000, 400, 11);
    seed.partitions = 4;
    seed.chunk_events = 3_000;
    lab::seed::run(&url, seed).await.expect("seed");
    url
}

/// The live projector (never restarted by the test) and a producer at 1,000 events/s.
struct Running {
    live: tokio::task::JoinHandle<projector::Result<projector::LiveReport>>,
    stop_live: tokio::sync::watch::Sender<bool>,
    producer: tokio::task::JoinHandle<lab::Result<lab::ProduceReport>>,
    stop_producer: tokio::sync::watch::Sender<bool>,
}

fn start(url: &str, seed: u64) -> Running {
    let config = LiveConfig {
        poll: Duration::from_millis(10),
        batch: 500,
        max_outage: Duration::from_secs(60),
        ..LiveConfig::new(url, V4)
    };
    let (stop_live, stopped) = tokio::sync::watch::channel(false);
    let live = tokio::spawn(async move { projector::run_live(&config, stopped).await });
    let produce = lab::ProduceConfig {
        writers: 2,
        max_outage: Duration::from_secs(60),
        ..lab::ProduceConfig::new(1_000.0, None, seed)
    };
    let (stop_producer, stopped) = tokio::sync::watch::channel(false);
    let url = url.to_owned();
    let producer = tokio::spawn(async move { lab::produce::run(&url, produce, stopped).await });
    Running { live, stop_live, producer, stop_producer }
}

impl Running {
    /// Both still running, as neither may stop on a fault.
    fn assert_alive(&self, when: &str) {
        assert!(!self.live.is_finished(), "the live projector stopped {when}");
        assert!(!self.producer.is_finished(), "the producer stopped {when}");
    }

    /// Waits until v4 has applied `n` events or more (committed).
    async fn applied_at_least(&self, url: &str, n: i64, within: Duration, what: &str) {
        wait_for(within, what, || async { applied(url).await.is_some_and(|a| a >= n) }).await;
        self.assert_alive(what);
    }

    /// Stops the producer, lets the projector drain the log, stops it; checks that v4 equals
    /// the lab's true state and that every event was applied exactly once.
    async fn finish_and_verify(self, url: &str) -> (lab::ProduceReport, projector::LiveReport) {
        self.stop_producer.send(true).unwrap();
        let produced = self.producer.await.unwrap().expect("the producer ends without an error");
        let total = logged(url).await.expect("count the log");
        wait_for(Duration::from_secs(60), "the projector to apply the whole log", || async {
            applied(url).await == Some(total)
        })
        .await;
        self.stop_live.send(true).unwrap();
        let live = self.live.await.unwrap().expect("the live projector ends without an error");
        let mut client = eventlog::connect(url).await.unwrap();
        let expected = lab::verify::against_expected(&client, &V4).await.unwrap();
        assert!(expected.ok && expected.diffs == 0, "v4 against the true state:\n{}", expected.render());
        let folded = projector::verify_against_log(&mut client, &V4).await.unwrap();
        assert!(folded.ok && folded.diffs == 0, "v4 against a fold of the log:\n{}", folded.render());
        // Applied counts commit with the rows: equal to the log, no event applied twice or lost.
        assert_eq!(applied(url).await, Some(total), "events applied (committed) against events in the log");
        assert_eq!(folded.events_folded as i64, total);
        (produced, live)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_projector_and_the_producer_ride_out_a_crash_restart_of_the_database() {
    let seed = seed();
    let cluster = std::sync::Arc::new(pgharness::Throwaway::private().expect("a private cluster"));
    let url = seeded(&cluster).await;
    let run = start(&url, seed);
    run.applied_at_least(&url, 6_000, Duration::from_secs(60), "the seeded log to be applied").await;

    let logged_before = logged(&url).await.unwrap();
    let crashed = Instant::now();
    let restarting = cluster.clone();
    tokio::task::spawn_blocking(move || restarting.restart_immediate())
        .await
        .unwrap()
        .expect("pg_ctl stop -m immediate, then start");
    let restarted_s = crashed.elapsed().as_secs_f64();
    run.assert_alive("during the crash restart");
    // Past what was logged before the crash: the producer writes again, the projector applies.
    run.applied_at_least(&url, logged_before + 500, Duration::from_secs(90), "events written after the restart").await;
    let resumed_s = crashed.elapsed().as_secs_f64();
    let (produced, live) = run.finish_and_verify(&url).await;
    println!(
        "crash restart: server down and up in {restarted_s:.2}s, projector applying new events {resumed_s:.2}s after \
         the crash; produced {} events, live applied {} (this run's count; in-doubt batches excluded)",
        produced.events, live.events_applied
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_projector_rides_out_its_connection_terminated_three_times() {
    let seed = seed();
    let url = seeded(pgharness::throwaway()).await;
    let run = start(&url, seed);
    run.applied_at_least(&url, 6_000, Duration::from_secs(60), "the seeded log to be applied").await;
    let admin = eventlog::connect(&url).await.unwrap();
    for round in 1..=3 {
        let pid = live_pid(&url).await.expect("the live projector's connection, by its application_name");
        let terminated: bool = admin.query_one("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap().get(0);
        assert!(terminated, "round {round}: pg_terminate_backend({pid})");
        let at = applied(&url).await.unwrap();
        wait_for(Duration::from_secs(30), "a new connection of the live projector", || async {
            live_pid(&url).await.is_some_and(|p| p != pid)
        })
        .await;
        run.applied_at_least(&url, at + 200, Duration::from_secs(60), "events applied after the termination").await;
    }
    run.finish_and_verify(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_worker_whose_connection_is_terminated_mid_partition_redoes_only_that_partition() {
    let url = seeded(pgharness::throwaway()).await;
    // Slowed down so that the workers are mid-partition when one is terminated.
    let config = slowed_replay(&url);
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let replay = tokio::spawn(async move { projector::replay(&config, stopped).await });
    let admin = eventlog::connect(&url).await.unwrap();
    // Found by its name; folding (idle on the server while it folds what it has read, at the
    // rate limit) or reading, it has a partition in flight until the bulk phase ends.
    let find = "SELECT pid FROM pg_stat_activity WHERE application_name = 'reproject replay v4 worker 1' \
                AND datname = current_database()";
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid: i32 = loop {
        if let Some(row) = admin.query_opt(find, &[]).await.unwrap() {
            break row.get(0);
        }
        assert!(Instant::now() < deadline, "timed out waiting for worker 1 to fold a partition");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!replay.is_finished(), "the replay ended before a worker could be terminated");
    let terminated: bool = admin.query_one("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap().get(0);
    assert!(terminated, "pg_terminate_backend({pid})");
    let report = replay.await.unwrap().expect("the replay survives its worker's lost connection");
    assert!(report.catch_up.is_some(), "the replay passed the barrier and caught up");
    let mut client = eventlog::connect(&url).await.unwrap();
    let folded = projector::verify_against_log(&mut client, &V4).await.unwrap();
    assert!(folded.ok && folded.diffs == 0, "v4 against a fold of the log:\n{}", folded.render());
    let total = logged(&url).await.unwrap();
    assert_eq!(applied(&url).await, Some(total), "events applied (committed) against events in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_rides_out_a_crash_restart_of_the_database_in_its_bulk_phase() {
    let cluster = std::sync::Arc::new(pgharness::Throwaway::private().expect("a private cluster"));
    let url = seeded(&cluster).await;
    // As in production: a commit is durable once acknowledged. (With the test profile's
    // `synchronous_commit = off`, a server crash forgets the last few hundred ms of commits; rows
    // and positions go together, so a tail resumes exactly all the same, but a version
    // registered just before the crash is forgotten and the replay stops on `UnknownVersion`.)
    let admin = eventlog::connect(&url).await.unwrap();
    admin.batch_execute("ALTER SYSTEM SET synchronous_commit = on").await.unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    drop(admin);
    let config = slowed_replay(&url);
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let replay = tokio::spawn(async move { projector::replay(&config, stopped).await });
    let deadline = Instant::now() + Duration::from_secs(30);
    let worker = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'reproject replay v4 worker %' \
                  AND datname = current_database()";
    while query_i64(&url, worker).await.unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "timed out waiting for the replay's workers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!replay.is_finished(), "the replay ended before the crash");
    let restarting = cluster.clone();
    tokio::task::spawn_blocking(move || restarting.restart_immediate()).await.unwrap().expect("crash restart");
    let report = replay.await.unwrap().expect("the replay survives the crash restart");
    assert!(report.catch_up.is_some(), "the replay passed the barrier and caught up");
    let mut client = eventlog::connect(&url).await.unwrap();
    let folded = projector::verify_against_log(&mut client, &V4).await.unwrap();
    assert!(folded.ok && folded.diffs == 0, "v4 against a fold of the log:\n{}", folded.render());
    let total = logged(&url).await.unwrap();
    assert_eq!(applied(&url).await, Some(total), "events applied (committed) against events in the log");
}

/// A cutover behind a lock another session holds (a DBA's `LOCK TABLE` on the offsets): the
/// cutover gives up after its lock timeout with an error that names it, switches nothing, and
/// once the lock is released a waiting cutover switches.
#[tokio::test]
async fn a_cutover_behind_a_held_lock_times_out_by_name_switches_nothing_and_then_switches() {
    use crate::support::*;
    let (url, mut client) = fresh_log(4).await;
    bulk_events(&client, 500, 3).await;
    prepare_version(&mut client, &lab::bank::V3).await;
    prepare_version(&mut client, &V4).await;
    let mut v3 = projector::Tailer::open(&client, lab::bank::V3, projector::TailOptions::batch(1_000)).await.unwrap();
    drain(&mut v3, &mut client).await;
    let mut v4 = projector::Tailer::open(&client, V4, projector::TailOptions::batch(1_000)).await.unwrap();
    drain(&mut v4, &mut client).await;
    readmodel::set_state(&client, "v3", readmodel::State::Ready).await.unwrap();
    readmodel::cutover(&mut client, "v3").await.unwrap();
    readmodel::set_state(&client, "v4", readmodel::State::Ready).await.unwrap();

    let mut dba = eventlog::connect_as(&url, "dba").await.unwrap();
    let held = dba.transaction().await.unwrap();
    held.batch_execute("LOCK TABLE read.projection_offsets IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let started = Instant::now();
    let err = readmodel::cutover(&mut client, "v4").await.unwrap_err();
    assert!(matches!(err, readmodel::Error::LockTimeout { .. }), "{err}");
    assert!(err.to_string().contains("lock_timeout"), "the error names the timeout: {err}");
    assert!(started.elapsed() >= readmodel::CUTOVER_LOCK_TIMEOUT, "it waited its timeout");
    let state = |v: &'static str| {
        let url = url.clone();
        async move {
            let c = eventlog::connect(&url).await.unwrap();
            readmodel::version_info(&c, v).await.unwrap().state
        }
    };
    held.rollback().await.unwrap();
    assert_eq!(state("v3").await, readmodel::State::Active, "nothing switched");
    assert_eq!(state("v4").await, readmodel::State::Ready, "nothing switched");

    // Held again, and released while a waiting cutover retries: it switches.
    let held = dba.transaction().await.unwrap();
    held.batch_execute("LOCK TABLE read.projection_offsets IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let deadline = tokio::time::Instant::now() + readmodel::CUTOVER_LOCK_TIMEOUT * 5;
    let waiting = tokio::spawn(async move {
        let r = readmodel::cutover_waiting(&mut client, "v4", Some(deadline)).await;
        (r, client)
    });
    // Released only once the waiting cutover has timed out on it and is waiting again in a new
    // transaction (seen in pg_stat_activity: a lock wait with a later xact_start).
    let watch = eventlog::connect_as(&url, "watch").await.unwrap();
    let waits = || async {
        let sql = "SELECT xact_start::text FROM pg_stat_activity \
                   WHERE application_name = 'reproject' AND wait_event_type = 'Lock' AND datname = current_database()";
        watch.query(sql, &[]).await.unwrap().first().map(|r| r.get::<_, String>(0))
    };
    let deadline = Instant::now() + readmodel::CUTOVER_LOCK_TIMEOUT * 4;
    let mut first: Option<String> = None;
    loop {
        assert!(Instant::now() < deadline, "the cutover never retried behind the lock");
        match (waits().await, &first) {
            (Some(now), None) => first = Some(now),
            (Some(now), Some(before)) if &now != before => break,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    held.rollback().await.unwrap();
    let (switched, _client) = waiting.await.unwrap();
    let switched = switched.unwrap();
    assert!(switched.switched && switched.previous.as_deref() == Some("v3"));
    assert_eq!(state("v4").await, readmodel::State::Active);
}

/// A replay of v4 slowed down (3,000 events/s) so that its workers are mid-partition when a
/// fault hits, stopping at the head, riding out outages of up to a minute.
fn slowed_replay(url: &str) -> projector::ReplayConfig<V4> {
    projector::ReplayConfig {
        workers: 2,
        batch: 1_000,
        rate_limit: Some(3_000.0),
        poll: Duration::from_millis(10),
        stop_at_head: true,
        max_outage: Duration::from_secs(60),
        ..projector::ReplayConfig::new(url, V4)
    }
}
