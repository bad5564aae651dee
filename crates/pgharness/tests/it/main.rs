//! Integration tests of the harness against real PostgreSQL clusters started from the local
//! binaries: the throwaway cluster, a persistent cluster's life cycle, and the binaries lookup.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use pgharness::{Cluster, ClusterConfig, Error};

/// Runs `SELECT 1` through tokio-postgres and returns the database it ran in.
async fn select_one(url: &str) -> String {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connects");
    tokio::spawn(connection);
    let row = client.query_one("SELECT 1::int4, current_database()", &[]).await.expect("SELECT 1");
    assert_eq!(row.get::<_, i32>(0), 1);
    row.get(1)
}

#[tokio::test]
async fn throwaway_gives_distinct_working_databases() {
    // Called from inside a runtime on purpose: the harness must not block_on this thread.
    let pg = pgharness::throwaway();
    let a = pg.fresh_database();
    let b = pg.fresh_database();
    assert_ne!(a, b);
    assert!(a.starts_with(&format!("postgresql://postgres:{}@127.0.0.1:{}/", pg.password(), pg.port())), "{a}");
    let (db_a, db_b) = (select_one(&a).await, select_one(&b).await);
    assert_ne!(db_a, db_b);
    assert_eq!(pg.url(&db_a), a);
    assert!(pg.dir().join("data").join("PG_VERSION").is_file());
}

/// Connects to `db` on the loopback `port` as `user`, with `password` if given.
async fn connect_as(port: u16, user: &str, password: Option<&str>, db: &str) -> Result<(), tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config.host("127.0.0.1").port(port).user(user).dbname(db);
    if let Some(password) = password {
        config.password(password);
    }
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute("SELECT 1").await
}

/// Asserts that connections to `port` without the password, or with a wrong one, are refused
/// for the superuser and for any other role name, and that the right password gets in.
async fn assert_locked(port: u16, password: &str) {
    for (user, pw) in [("postgres", None), ("postgres", Some("wrong")), ("root", None), ("nobody", None)] {
        let err =
            connect_as(port, user, pw, "postgres").await.expect_err(&format!("{user} with {pw:?} must be refused"));
        let text = format!("{err:?}");
        assert!(text.contains("password") || text.contains("28P01") || text.contains("28000"), "{user}: {text}");
    }
    connect_as(port, "postgres", Some(password), "postgres").await.expect("the password gets in");
}

#[tokio::test]
async fn throwaway_refuses_a_connection_without_the_password() {
    let pg = pgharness::throwaway();
    assert_locked(pg.port(), pg.password()).await;
    let file = pg.dir().join("data").join("reproject.password");
    let mode = std::fs::metadata(&file).expect("the password file exists").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    let data_mode = std::fs::metadata(pg.dir().join("data")).unwrap().permissions().mode();
    assert_eq!(data_mode & 0o077, 0, "the data directory is its owner's only");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), pg.password());
}

#[test]
fn throwaway_from_many_threads_is_one_cluster() {
    let ports: Vec<u16> = (0..4)
        .map(|_| std::thread::spawn(|| pgharness::throwaway().port()))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert!(ports.windows(2).all(|w| w[0] == w[1]), "{ports:?}");
}

/// A temporary parent directory that the `postgres` user can traverse (tempfile may make it
/// 0700, which would lock the server out when the tests run as root), and that stops any
/// cluster left in it when dropped, so that a failing test leaves no server behind.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::Builder::new().prefix("pgharness-it-").tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Scratch { dir }
    }

    fn data_dir(&self) -> PathBuf {
        // Two levels down, so that ensure_running has to create a parent directory too.
        self.dir.path().join("state").join("pg")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Cluster::stop(&self.data_dir());
    }
}

fn postmaster_pid(data_dir: &Path) -> u32 {
    Cluster::status(data_dir).expect("status").pid.expect("running cluster has a pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_life_cycle() {
    let scratch = Scratch::new();
    let data_dir = scratch.data_dir();

    let before = Cluster::status(&data_dir).expect("status");
    assert!(!before.initialized && !before.running, "{before}");

    // First call: initdb and start, and the `reproject` database exists.
    let config = ClusterConfig::test(&data_dir);
    let first = Cluster::ensure_running(&config).expect("first ensure_running");
    assert_eq!(select_one(&first.database_url()).await, "reproject");
    let status = Cluster::status(&data_dir).expect("status");
    assert!(status.initialized && status.running, "{status}");
    assert_eq!(status.port, Some(first.port));
    assert_eq!(status.url.as_deref(), Some(first.database_url().as_str()));
    assert!(status.log_file.is_file(), "{status}");
    let text = status.to_string();
    assert!(text.contains("running") && text.contains(&first.port.to_string()), "{text}");
    let pid = postmaster_pid(&data_dir);

    assert_locked(first.port, &first.password).await;

    // Second call: the same server (same port and postmaster), no second initdb.
    let version_mtime = std::fs::metadata(data_dir.join("PG_VERSION")).unwrap().modified().unwrap();
    let second = Cluster::ensure_running(&config).expect("second ensure_running");
    assert_eq!(second, first);
    assert_eq!(postmaster_pid(&data_dir), pid);
    assert_eq!(std::fs::metadata(data_dir.join("PG_VERSION")).unwrap().modified().unwrap(), version_mtime);

    // Stop: status says so; stopping again is a no-op.
    Cluster::stop(&data_dir).expect("stop");
    let stopped = Cluster::status(&data_dir).expect("status");
    assert!(stopped.initialized && !stopped.running && stopped.pid.is_none() && stopped.url.is_none(), "{stopped}");
    assert!(stopped.to_string().contains("stopped"), "{stopped}");
    Cluster::stop(&data_dir).expect("second stop");

    // Start again: data survives (the database is still there), a new postmaster.
    let third = Cluster::ensure_running(&config).expect("third ensure_running");
    assert_eq!(select_one(&third.database_url()).await, "reproject");
    assert_ne!(postmaster_pid(&data_dir), pid);
    assert_eq!(third.password, first.password, "the password is kept across restarts");
    Cluster::stop(&data_dir).expect("final stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_initialised_with_trust_is_locked_on_its_next_start() {
    let scratch = Scratch::new();
    let data_dir = scratch.data_dir();
    let config = ClusterConfig::test(&data_dir);
    let first = Cluster::ensure_running(&config).expect("first ensure_running");
    Cluster::stop(&data_dir).expect("stop");
    // Make it what an older harness left: trust for every local connection, no password file.
    std::fs::write(data_dir.join("pg_hba.conf"), "host all all 127.0.0.1/32 trust\n").unwrap();
    std::fs::remove_file(data_dir.join("reproject.password")).unwrap();
    let second = Cluster::ensure_running(&config).expect("ensure_running on the trusting cluster");
    assert_ne!(second.password, first.password, "a new password");
    assert_locked(second.port, &second.password).await;
    assert_eq!(select_one(&second.database_url()).await, "reproject");
    Cluster::stop(&data_dir).expect("final stop");
}

#[test]
fn start_failure_reports_the_server_log() {
    let scratch = Scratch::new();
    // Hold a port so the server cannot bind it; a fixed port is not retried.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().unwrap().port();
    let config = ClusterConfig { port: Some(port), ..ClusterConfig::test(scratch.data_dir()) };
    let err = Cluster::ensure_running(&config).expect_err("port is taken");
    let text = err.to_string();
    assert!(matches!(err, Error::Command { .. }), "{text}");
    assert!(text.contains("pg_ctl") && text.contains("server.log"), "{text}");
    assert!(text.contains("could not bind") || text.contains("already in use"), "{text}");
    drop(holder);
}

#[test]
fn missing_binaries_give_an_install_hint() {
    let err = pgharness::find_bindir_from(Some(Path::new("/nonexistent"))).expect_err("no binaries there");
    let text = err.to_string();
    assert!(matches!(err, Error::NoBinaries { .. }), "{text}");
    assert!(text.contains("/nonexistent") && text.contains("apt-get install") && text.contains("PG_BINDIR"), "{text}");
}

#[test]
fn binaries_are_found_without_override() {
    let dir = pgharness::find_bindir_from(None).expect("the machine has PostgreSQL server binaries");
    assert!(dir.join("initdb").is_file() && dir.join("pg_ctl").is_file(), "{}", dir.display());
}

#[test]
fn data_dir_out_of_postgres_reach_gets_a_hint_when_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // Not root: the server runs as us and can reach our own directories.
    }
    let locked = tempfile::Builder::new().prefix("pgharness-it-locked-").tempdir().expect("tempdir");
    // Root's and 0700: `postgres` cannot traverse it.
    std::fs::set_permissions(locked.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let data_dir = locked.path().join("pg");
    let result = Cluster::ensure_running(&ClusterConfig::test(&data_dir));
    if result.is_ok() {
        let _ = Cluster::stop(&data_dir); // Leave no server behind when the test fails.
    }
    let err = result.expect_err("unreachable");
    let text = err.to_string();
    assert!(text.contains("Permission denied") && text.contains("hint:"), "{text}");
}
