//! Kill -9 at random points, restart, and converge to the exact single-pass state.
//!
//! Every kill schedule is drawn from a seed printed at the test's start; a failure is replayed
//! with `REPROJECT_TEST_SEED=<seed> cargo test --test it crash::<test>`.

use std::time::Duration;

use lab::bank::V4;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::support::*;

/// Runs `config`'s producer on `url` in the background until the returned sender says stop.
fn start_producer(
    url: &str,
    config: lab::ProduceConfig,
) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<lab::ProduceReport>) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let url = url.to_owned();
    let producer = tokio::spawn(async move { lab::produce::run(&url, config, stop_rx).await.expect("producer") });
    (stop_tx, producer)
}

/// The seed of a test's random schedule: `REPROJECT_TEST_SEED` if set (to replay a failure),
/// else a fresh one; printed either way, before anything is drawn from it.
fn test_seed(test: &str) -> u64 {
    let seed = match std::env::var("REPROJECT_TEST_SEED") {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("REPROJECT_TEST_SEED={s:?} is not a u64")),
        Err(_) => rand::random(),
    };
    eprintln!("{test}: seed {seed} (rerun with REPROJECT_TEST_SEED={seed})");
    seed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_projector_killed_at_random_points_under_four_writers_ends_exact() {
    let seed = test_seed("the_live_projector_killed_at_random_points_under_four_writers_ends_exact");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let url = seeded(30_000, 3_000, 8).await;
    let config = lab::ProduceConfig::new(1_500.0, None, 7);
    let (stop_tx, producer) = start_producer(&url, config);
    for _ in 0..5 {
        let child = spawn(&url, &["projector", "--mode", "live", "--version", "v4", "--batch", "500"]);
        let at = Duration::from_millis(rng.gen_range(100..1_500));
        tokio::task::spawn_blocking(move || kill_after(child, at)).await.unwrap();
    }
    stop_tx.send(true).unwrap();
    let produced = producer.await.unwrap();
    assert!(produced.events > 0, "the producer wrote while the projector crashed");
    run_ok(&url, &["projector", "--mode", "live", "--version", "v4", "--stop-at-head"]);
    let report = verify_expected(&url, &V4).await;
    assert_eq!(report.diffs, 0, "seed {seed}: {}", report.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_killed_in_bulk_and_catch_up_ends_identical_to_a_clean_pass() {
    let seed = test_seed("a_replay_killed_in_bulk_and_catch_up_ends_identical_to_a_clean_pass");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let url = seeded(60_000, 5_000, 16).await;
    let config = lab::ProduceConfig::new(1_000.0, None, 11);
    let (stop_tx, producer) = start_producer(&url, config);
    for round in 0..6 {
        // Small batches keep catch-up long enough to be killed inside it too.
        let child = spawn(
            &url,
            &[
                "projector",
                "--mode",
                "replay",
                "--version",
                "v4",
                "--workers",
                "2",
                "--catch-up",
                "--batch",
                "200",
                "--progress",
                "false",
            ],
        );
        let at = Duration::from_millis(rng.gen_range(50..400) * (round + 1));
        tokio::task::spawn_blocking(move || kill_after(child, at)).await.unwrap();
    }
    stop_tx.send(true).unwrap();
    producer.await.unwrap();
    run_ok(
        &url,
        &["projector", "--mode", "replay", "--version", "v4", "--catch-up", "--stop-at-head", "--progress", "false"],
    );
    let report = verify_expected(&url, &V4).await;
    assert_eq!(report.diffs, 0, "seed {seed}: {}", report.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_projector_killed_repeatedly_under_an_unpaced_batched_producer_ends_exact() {
    let seed = test_seed("the_live_projector_killed_repeatedly_under_an_unpaced_batched_producer_ends_exact");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let url = seeded(30_000, 3_000, 8).await;
    // As fast as it goes: batches of 100 commands, 4 writers over disjoint ranges, a
    // larger share of transfers (half of them across ranges) than the default, and a
    // longer pause before the cross-range ones (more versions n+1 before n).
    let config = lab::ProduceConfig {
        transfer_ratio: 0.2,
        cross_range_ratio: 0.5,
        transfer_pause: Duration::from_millis(10),
        ..lab::ProduceConfig::new(0.0, None, seed)
    };
    let (stop_tx, producer) = start_producer(&url, config);
    for _ in 0..6 {
        let child = spawn(&url, &["projector", "--mode", "live", "--version", "v4", "--batch", "2000"]);
        let at = Duration::from_millis(rng.gen_range(200..1_200));
        tokio::task::spawn_blocking(move || kill_after(child, at)).await.unwrap();
    }
    stop_tx.send(true).unwrap();
    let produced = producer.await.unwrap();
    println!("{}", produced.render());
    assert!(produced.events > 5_000 && produced.cross_range_transfers > 0, "{produced:?}");
    let client = eventlog::connect(&url).await.unwrap();
    let inverted = lab::verify::inverted_versions(&client).await.unwrap();
    println!("{inverted} versions precede their predecessor in (tx_id, global_seq) order");
    assert!(
        inverted > 0,
        "the batched producer still writes version n+1 before version n in (tx_id, global_seq) order"
    );
    run_ok(&url, &["projector", "--mode", "live", "--version", "v4", "--stop-at-head"]);
    let report = verify_expected(&url, &V4).await;
    assert_eq!(report.diffs, 0, "seed {seed}: {}", report.render());
}
