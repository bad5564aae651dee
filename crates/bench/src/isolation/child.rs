//! The replay as a child process of this binary (`reproject projector --mode replay`): started,
//! paused, resumed, stopped or killed, and its report read back.

use std::time::Duration;

use anyhow::{Context, Result};
use fold::Projection;
use lab::bank::V4;
use projector::CpuPriority;

use super::IsolationConfig;

/// How long a replay gets to stop after SIGINT before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How one phase's replay runs (a child process `reproject projector --mode replay`).
pub(super) struct ReplaySpec {
    pub(super) rate_limit: Option<f64>,
    pub(super) adaptive: Option<projector::AdaptiveConfig>,
    pub(super) priority: CpuPriority,
}

/// What the replay child printed at its end (its `ReplayReport`, the fields used here).
pub(super) struct ChildReport {
    pub(super) bulk_events: u64,
    pub(super) bulk_seconds: f64,
    pub(super) adaptive: Option<projector::AdaptiveReport>,
}

impl ChildReport {
    fn parse(line: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(line).context("the replay's report is not JSON")?;
        let num = |v: &serde_json::Value, key: &str| v.get(key).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        let adaptive = match v.get("adaptive").filter(|a| a.is_object()) {
            Some(a) => Some(serde_json::from_value(a.clone()).context("the replay's adaptive report")?),
            None => None,
        };
        Ok(ChildReport {
            bulk_events: v
                .get("bulk_events")
                .and_then(serde_json::Value::as_u64)
                .context("no bulk_events in the report")?,
            bulk_seconds: num(&v, "bulk_seconds"),
            adaptive,
        })
    }
}

/// A replay running as a child process of this binary, its stdout collected in the background.
pub(super) struct ReplayChild {
    child: tokio::process::Child,
    stdout: tokio::task::JoinHandle<std::io::Result<String>>,
}

impl ReplayChild {
    pub(super) fn spawn(config: &IsolationConfig, spec: &ReplaySpec) -> Result<Self> {
        let exe = std::env::current_exe().context("locating this binary to run the replay")?;
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(["--log", "warn", "projector", "--mode", "replay", "--version", V4.name()])
            .args(["--workers", &config.workers.to_string(), "--batch", "10000", "--stop-at-head"])
            .args(["--progress", "false", "--database-url", &config.database_url])
            .args(["--nice", &spec.priority.nice.to_string()]);
        if spec.priority.idle {
            cmd.arg("--sched-idle");
        }
        if spec.priority.cpus != 0 {
            cmd.args(["--cpus", &projector::priority::format_cpus(spec.priority.cpus)]);
        }
        if let Some(limit) = spec.rate_limit {
            cmd.args(["--rate-limit", &limit.to_string()]);
        }
        if let Some(a) = &spec.adaptive {
            cmd.args(["--max-live-p99-increase", &a.max_live_p99_increase.to_string()]).args([
                "--live-api",
                &a.api_url,
                "--probe-aggregates",
                &a.probe_aggregates.to_string(),
                "--live-p99-from",
                a.source.as_str(),
            ]);
        }
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("starting {} projector --mode replay", exe.display()))?;
        let mut out = child.stdout.take().expect("stdout is piped");
        let stdout = tokio::spawn(async move {
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut out, &mut text).await?;
            Ok(text)
        });
        tracing::info!(pid = child.id(), priority = %spec.priority.describe(), "replay child started");
        Ok(ReplayChild { child, stdout })
    }

    /// Sends `signal` to the child (a no-op once it has exited).
    pub(super) fn signal(&mut self, signal: libc::c_int) -> Result<()> {
        if let (None, Some(pid)) = (self.child.try_wait()?, self.child.id()) {
            // SAFETY: kill takes plain integers; `pid` is our own, not yet reaped, child.
            if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
                anyhow::bail!("signal {signal} to the replay (pid {pid}): {}", std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Whether the child has exited on its own (the replay finished).
    pub(super) fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGKILL, and wait for the exit; its report is not needed.
    pub(super) async fn kill(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// SIGINT (the CLI stops the replay gracefully and prints its report), then wait; SIGKILL
    /// after [`STOP_GRACE`]. Returns the report on the child's stdout.
    pub(super) async fn stop(mut self) -> Result<ChildReport> {
        // A paused child would not see the SIGINT until resumed.
        for signal in [libc::SIGCONT, libc::SIGINT] {
            if let Err(e) = self.signal(signal) {
                tracing::warn!(error = %e, "stopping the replay");
            }
        }
        let status = match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                tracing::warn!("the replay did not stop within {STOP_GRACE:?} of SIGINT: killing it");
                self.child.kill().await?;
                anyhow::bail!("the replay did not stop within {STOP_GRACE:?} of SIGINT (killed)");
            }
        };
        let out = self.stdout.await?.context("reading the replay's stdout")?;
        if !status.success() {
            anyhow::bail!("the replay exited with {status} (its error is on stderr above)");
        }
        let line = out.lines().rev().find(|l| !l.trim().is_empty()).context("the replay printed no report")?;
        ChildReport::parse(line)
    }
}
