//! `reproject obs start|stop|status`: a Prometheus server of our own (the Debian package's
//! binary, never its system service), on a loopback port, with its configuration and data in
//! a directory of ours, scraping the API, the projectors and the producer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::parse_duration;

/// The configuration template (placeholders filled in by [`config_yaml`]).
const TEMPLATE: &str = include_str!("../../deploy/prometheus/prometheus.yml");

/// Where Prometheus listens by default: not 9090, which the distribution's service would take.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9490";

#[derive(Debug, Args)]
pub struct ObsArgs {
    #[command(subcommand)]
    pub action: ObsAction,
    /// Prometheus' directory: its generated configuration, its data, its log and its pid file.
    #[arg(long, global = true, env = "REPROJECT_OBS_DIR", default_value = ".reproject/prometheus")]
    pub dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ObsAction {
    /// Write the scrape configuration and start Prometheus in the background; wait until ready.
    Start(StartArgs),
    /// Stop the Prometheus started by `obs start` (its data stays in --dir).
    Stop,
    /// Say whether it runs, and where.
    Status,
}

#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Where Prometheus serves its UI and HTTP API (loopback only).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// The read API to scrape (`reproject api --listen`).
    #[arg(long = "api", value_name = "ADDR", default_values_t = [SocketAddr::from(([127, 0, 0, 1], 8080))])]
    pub api: Vec<SocketAddr>,
    /// Projectors to scrape (`reproject projector --metrics-listen`); repeat the flag.
    #[arg(long = "projector", value_name = "ADDR", default_values_t = [
        SocketAddr::from(([127, 0, 0, 1], 9187)), SocketAddr::from(([127, 0, 0, 1], 9188))])]
    pub projector: Vec<SocketAddr>,
    /// Producers to scrape (`reproject produce --metrics-listen`).
    #[arg(long = "producer", value_name = "ADDR", default_values_t = [SocketAddr::from(([127, 0, 0, 1], 9189))])]
    pub producer: Vec<SocketAddr>,
    /// Scrape interval (short, so that a test or a demo sees samples quickly).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub scrape_interval: Duration,
    /// The Prometheus binary (default: `prometheus` on PATH, as installed by the Debian package).
    #[arg(long, env = "PROMETHEUS_BIN", value_name = "PATH")]
    pub prometheus_bin: Option<PathBuf>,
    /// How long samples are kept.
    #[arg(long, default_value = "2d")]
    pub retention: String,
}

/// A running Prometheus of ours.
#[derive(Debug, Clone)]
pub struct Running {
    pub pid: u32,
    pub url: String,
}

pub async fn run(a: ObsArgs) -> Result<ExitCode> {
    match a.action {
        ObsAction::Start(s) => {
            let running = start(&a.dir, &s)?;
            println!("prometheus: {} (pid {}, data in {})", running.url, running.pid, a.dir.display());
        }
        ObsAction::Stop => match stop(&a.dir)? {
            Some(pid) => println!("prometheus (pid {pid}) stopped"),
            None => println!("prometheus is not running (no live pid in {})", a.dir.display()),
        },
        ObsAction::Status => match running(&a.dir) {
            Some(r) => println!("running: {} (pid {})", r.url, r.pid),
            None => {
                println!("not running");
                return Ok(ExitCode::FAILURE);
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// The Prometheus binary: the flag, else `prometheus` on PATH; `None` when not installed.
pub fn find_binary(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return p.is_file().then(|| p.to_owned());
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join("prometheus")).find(|p| p.is_file())
}

fn quoted(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ")
}

/// The scrape configuration for `s`: [`TEMPLATE`] with its placeholders filled in.
pub fn config_yaml(s: &StartArgs) -> String {
    let interval = format!("{}ms", s.scrape_interval.as_millis().max(100));
    // A scrape may not outlast the interval.
    let timeout = format!("{}ms", (s.scrape_interval.as_millis() * 9 / 10).max(90));
    TEMPLATE
        .replace("__INTERVAL__", &interval)
        .replace("__TIMEOUT__", &timeout)
        .replace("__API_TARGETS__", &quoted(&s.api))
        .replace("__PROJECTOR_TARGETS__", &quoted(&s.projector))
        .replace("__PRODUCER_TARGETS__", &quoted(&s.producer))
        .replace("__SELF_TARGET__", &quoted(&[s.listen]))
}

fn pid_file(dir: &Path) -> PathBuf {
    dir.join("prometheus.pid")
}

fn alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid as i32, 0) } == 0
}

/// The Prometheus recorded in `dir`, if its process is alive.
pub fn running(dir: &Path) -> Option<Running> {
    let text = std::fs::read_to_string(pid_file(dir)).ok()?;
    let mut lines = text.lines();
    let pid: u32 = lines.next()?.trim().parse().ok()?;
    let url = lines.next()?.trim().to_owned();
    alive(pid).then_some(Running { pid, url })
}

/// Writes the configuration into `dir` and starts Prometheus in the background (its own
/// process group, so a Ctrl-C of the caller does not stop it); returns once its readiness
/// endpoint answers. A Prometheus already running from `dir` is stopped first, so the new
/// flags apply.
pub fn start(dir: &Path, s: &StartArgs) -> Result<Running> {
    if !s.listen.ip().is_loopback() {
        bail!("--listen {}: Prometheus is served on a loopback address only", s.listen);
    }
    let Some(bin) = find_binary(s.prometheus_bin.as_deref()) else {
        bail!("no prometheus binary (install the Debian package: apt-get install prometheus, or set --prometheus-bin)");
    };
    stop(dir)?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, config_yaml(s)).with_context(|| format!("writing {}", config.display()))?;
    let log_path = dir.join("prometheus.log");
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = Command::new(&bin);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--storage.tsdb.retention.time={}", s.retention))
        .arg(format!("--web.listen-address={}", s.listen))
        .arg("--web.enable-lifecycle")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
    let url = format!("http://{}", s.listen);
    std::fs::write(pid_file(dir), format!("{}\n{url}\n", child.id()))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!("prometheus exited ({status}) at start; its log ({}) ends:\n{}", log_path.display(), tail.join("\n"));
        }
        if ready(s.listen) {
            return Ok(Running { pid: child.id(), url });
        }
        if Instant::now() > deadline {
            bail!("prometheus did not become ready on {} within 60 s (log: {})", s.listen, log_path.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `GET /-/ready` answers 200 (a plain HTTP/1.0 request over a socket: no client needed).
fn ready(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /-/ready HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

/// Stops the Prometheus recorded in `dir` (SIGTERM, then SIGKILL after 10 s); returns its pid.
pub fn stop(dir: &Path) -> Result<Option<u32>> {
    let Some(r) = running(dir) else {
        let _ = std::fs::remove_file(pid_file(dir));
        return Ok(None);
    };
    // SAFETY: signals to the pid this command started and recorded.
    unsafe { libc::kill(r.pid as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(r.pid) && !zombie(r.pid) {
        if Instant::now() > deadline {
            // SAFETY: as above.
            unsafe { libc::kill(r.pid as i32, libc::SIGKILL) };
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_file(pid_file(dir)).ok();
    Ok(Some(r.pid))
}

/// A process that has exited but is not reaped (a child of this very process) counts as gone.
fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_every_target_and_the_interval() {
        let s = StartArgs {
            listen: "127.0.0.1:9490".parse().unwrap(),
            api: vec!["127.0.0.1:8080".parse().unwrap()],
            projector: vec!["127.0.0.1:9187".parse().unwrap(), "127.0.0.1:9188".parse().unwrap()],
            producer: vec!["127.0.0.1:9189".parse().unwrap()],
            scrape_interval: Duration::from_secs(1),
            prometheus_bin: None,
            retention: "2d".into(),
        };
        let yaml = config_yaml(&s);
        assert!(!yaml.contains("__"), "every placeholder filled: {yaml}");
        assert!(yaml.contains("scrape_interval: 1000ms"), "{yaml}");
        assert!(yaml.contains("targets: [\"127.0.0.1:9187\", \"127.0.0.1:9188\"]"), "{yaml}");
        assert!(yaml.contains("targets: [\"127.0.0.1:9490\"]"), "{yaml}");
    }
}
