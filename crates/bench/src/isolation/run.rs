//! The run of `bench isolation`: v3 live behind the API, then its phases in order, and its
//! figures.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use lab::bank::{V3, V4};
use projector::CpuPriority;

use super::blocks::ADAPTIVE_LABELS;
use super::child::ReplaySpec;
use super::output::{write_blocks, write_phases};
use super::phases::Bench;
use super::{IsolationBench, IsolationConfig};
use crate::cpu_split::LivePinned;
use crate::serving::{build_active, reset_read_side, start_api};

/// Experiment 3: v3 active behind the in-process API; the load at a fixed rate in phases: no
/// replay, a full-speed replay of v4, a replay at a fixed limit (each `duration` long), the
/// adaptive replay, paused and running in `rounds` pairs of `block`-long blocks, no replay
/// again, and the presence check (`rounds` pairs of blocks with a stopped replay process and with
/// none). Each replay starts from scratch and is stopped at its phase's end.
pub async fn isolation_bench(config: &IsolationConfig) -> Result<IsolationBench> {
    let url = config.database_url.clone();
    reset_read_side(&url).await?;
    tracing::info!("building v3 (the live, active version)");
    build_active(&url, V3, config.workers).await?;
    let client = eventlog::connect(&url).await?;
    let aggregates: i64 = client.query_one("SELECT count(*) FROM lab.expected_accounts", &[]).await?.get(0);
    let log_events: i64 = client.query_one("SELECT count(*) FROM log.events", &[]).await?.get(0);
    let addr: SocketAddr = start_api(&url).await?;
    let _pinned = match config.live_cpus {
        0 => None,
        cpus => Some(LivePinned::pin(&client, cpus).await?),
    };
    let bench = Bench { config, base: format!("http://{addr}"), aggregates };

    let none = bench.phase("no_replay", None).await?;
    // Full speed is the unprotected worst case: no limit, normal priority, every core (the
    // replay process and its backends would otherwise inherit the live path's cores).
    let every_core = if config.live_cpus == 0 { 0 } else { crate::cpu_split::every_core() };
    let full_spec = ReplaySpec {
        rate_limit: None,
        adaptive: None,
        priority: CpuPriority { cpus: every_core, ..CpuPriority::NORMAL },
    };
    let full = bench.phase("full_speed", Some(full_spec)).await?;
    let fixed_rate_limit = config.fixed_rate_limit.unwrap_or((full.replay_events_per_s * 0.25).max(1_000.0));
    let fixed_spec =
        ReplaySpec { rate_limit: Some(fixed_rate_limit), adaptive: None, priority: config.protected_priority };
    let fixed = bench.phase("fixed_limit", Some(fixed_spec)).await?;
    // The adaptive phase's ceiling is the full-speed rate: above it the limit would not bind.
    let adaptive_config = projector::AdaptiveConfig {
        api_url: bench.base.clone(),
        max_live_p99_increase: config.max_live_p99_increase,
        probe_aggregates: aggregates.max(1) as u64,
        source: projector::LatencySource::Metrics,
    };
    let ceiling = full.replay_events_per_s.max(10_000.0);
    let spec =
        ReplaySpec { rate_limit: Some(ceiling), adaptive: Some(adaptive_config), priority: config.protected_priority };
    let adaptive = bench.paused_and_running(spec, "adaptive", config.rounds, ADAPTIVE_LABELS).await?;
    write_blocks(config, "isolation_adaptive_blocks", &adaptive)?;
    // Whether a level the paused blocks share with the running ones is the machine's drift or
    // the paused replay's presence: the same load once every replay has exited, then a stopped
    // replay process against none, interleaved.
    let after = bench.phase("no_replay_after", None).await?;
    let presence_rate = adaptive.second.replay_events_per_s.max(projector::adaptive::FLOOR);
    let presence_spec =
        ReplaySpec { rate_limit: Some(presence_rate), adaptive: None, priority: config.protected_priority };
    let presence = bench.presence_phase(presence_spec).await?;
    write_blocks(config, "isolation_presence_blocks", &presence)?;
    let (curve, curve_failed) = bench.curve(full.replay_events_per_s).await?;
    let mut cleanup = eventlog::connect(&url).await?;
    readmodel::drop_version(&mut cleanup, &V4).await.context("dropping v4 after the run")?;
    let mut notes = presence.notes;
    let phases = vec![none, full, fixed, adaptive.first, adaptive.second, after, presence.first, presence.second];
    for p in phases.iter().filter(|p| p.replay_finished_early) {
        notes.push(format!(
            "phase {}: the replay finished before the phase ended; enlarge --events or shorten --duration",
            p.phase
        ));
    }
    let ratio = |v: f64, base: f64| if base > 0.0 { v / base } else { f64::NAN };
    let (b50, b99) = (phases[0].p50_ms, phases[0].p99_ms);
    write_phases(config, &phases)?;
    Ok(IsolationBench {
        aggregates,
        log_events,
        phase_seconds: config.duration.as_secs_f64(),
        request_rate: config.request_rate,
        concurrency: config.concurrency,
        workers: config.workers,
        baseline_p50_ms: b50,
        baseline_p99_ms: b99,
        p99_ratio_full_speed: ratio(phases[1].p99_ms, b99),
        p99_ratio_fixed_limit: ratio(phases[2].p99_ms, b99),
        p99_ratio_adaptive: ratio(phases[4].p99_ms, phases[3].p99_ms),
        p99_ratio_adaptive_rounds: adaptive.ratios,
        p99_ratio_adaptive_ci90: adaptive.ci90,
        p99_ratio_paused_vs_no_replay: ratio(phases[3].p99_ms, b99),
        p99_ratio_no_replay_after: ratio(phases[5].p99_ms, b99),
        p99_ratio_stopped_vs_absent: ratio(phases[6].p99_ms, phases[7].p99_ms),
        p99_ratio_presence_rounds: presence.ratios,
        p99_ratio_stopped_vs_absent_ci90: presence.ci90,
        p50_ratio_stopped_vs_absent: ratio(phases[6].p50_ms, phases[7].p50_ms),
        p50_ratio_full_speed: ratio(phases[1].p50_ms, b50),
        p50_ratio_fixed_limit: ratio(phases[2].p50_ms, b50),
        p50_ratio_adaptive: ratio(phases[4].p50_ms, phases[3].p50_ms),
        replay_events_per_s_full_speed: phases[1].replay_events_per_s,
        replay_events_per_s_fixed_limit: phases[2].replay_events_per_s,
        replay_events_per_s_adaptive: phases[4].replay_events_per_s,
        fixed_rate_limit,
        max_live_p99_increase: config.max_live_p99_increase,
        adaptive_rounds: config.rounds,
        adaptive_block_seconds: config.block.as_secs_f64(),
        adaptive: adaptive.report,
        failed_reads: phases.iter().map(|p| p.failed).sum::<u64>() + curve_failed,
        curve,
        live_cores: (config.live_cpus != 0).then(|| projector::priority::format_cpus(config.live_cpus)),
        phases,
        notes,
    })
}
