//! `reproject api` as a process: SIGTERM stops it the way Ctrl-C does, draining the request
//! in flight before it exits.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::bin;

/// Upper bound of every wait below: a condition that does not come true by then fails the test.
const BOUND: Duration = Duration::from_secs(30);

/// Starts `reproject api` on a free port against `url`; returns the child and its address.
fn start_api(url: &str) -> (Child, String) {
    let mut child = bin()
        .args(["api", "--listen", "127.0.0.1:0", "--pool", "1"])
        .env("DATABASE_URL", url)
        .env_remove("REPROJECT_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn reproject api");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("the api prints its address").expect("utf-8 stdout");
        if let Some(addr) = line.strip_prefix("listening on http://") {
            break addr.to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// Polls `check` until it holds; panics after [`BOUND`].
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + BOUND;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_request_in_flight_then_exits() {
    let url = pgharness::throwaway().fresh_database();
    let mut client = eventlog::connect(&url).await.expect("connect");
    eventlog::create(&mut client, 2, fold::IdKind::Bigint).await.expect("log");
    readmodel::ensure_schema(&mut client).await.expect("read schema");
    let (mut child, addr) = start_api(&url);

    // Hold the registry so that a GET /projections stays in flight until we let it go.
    let mut locker = eventlog::connect(&url).await.expect("connect");
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE read.projections IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let request_addr = addr.clone();
    let in_flight = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(&request_addr).await.expect("connect to the api");
        stream.write_all(b"GET /projections HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        String::from_utf8_lossy(&reply).into_owned()
    });
    until("the request waits on the registry lock", || async {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'read.projections'::regclass",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        waiting > 0
    })
    .await;

    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    until("the api stops accepting", || async { tokio::net::TcpStream::connect(&addr).await.is_err() }).await;
    assert!(child.try_wait().unwrap().is_none(), "the api exited with a request in flight");

    lock.rollback().await.unwrap();
    let reply = tokio::time::timeout(BOUND, in_flight).await.expect("the request completes").unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "the request in flight is answered in full: {reply}");
    assert!(reply.contains("\"projections\""), "{reply}");
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the api did not exit after draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "a drained SIGTERM is a clean exit: {status}");
}
