//! A held-back horizon explains itself: the live projector names the transaction that holds
//! it, keeps waiting (never skips past it), and drains when it ends.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lab::bank::V4;

use crate::support::*;

/// The formatted log lines of this test's thread (the tokio test runtime runs every task of
/// the test on it).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_idle_transaction_in_another_database_is_named_by_the_projector_and_the_lag_drains_when_it_ends() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (url, mut client) = fresh_log(4).await;
    append(&mut client, &[opened(9), deposited(9, 2, 10), deposited(9, 3, 20)]).await;
    let stall_after = Duration::from_secs(1);
    let config =
        projector::LiveConfig { poll: Duration::from_millis(10), stall_after, ..projector::LiveConfig::new(&url, V4) };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let live = tokio::spawn(async move { projector::run_live(&config, stopped).await });
    wait_for(Duration::from_secs(30), "the projector to apply version 3", || async {
        readmodel::offsets(&client, "v4").await.is_ok()
            && row(&client, &V4, 9).await.is_some_and(|a| a.aggregate_version == 3)
    })
    .await;

    // BEGIN; SELECT pg_current_xact_id(); and nothing more, in another database.
    let other = eventlog::connect(&pgharness::throwaway().fresh_database()).await.unwrap();
    other.batch_execute("SET application_name = 'nightly-report'; BEGIN; SELECT pg_current_xact_id()").await.unwrap();
    let pid: i32 = other.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let held_at = Instant::now();
    let events: Vec<_> = (4..54).map(|v| deposited(9, v, v as i64)).collect();
    append(&mut client, &events).await;

    wait_for(stall_after + Duration::from_secs(20), "a WARN naming the holder's pid", || async {
        logs.text().lines().any(|l| l.contains("WARN") && l.contains(&format!("holder_pid={pid}")))
    })
    .await;
    let named_after = held_at.elapsed();
    let warning = logs.text().lines().find(|l| l.contains(&format!("holder_pid={pid}"))).unwrap().to_owned();
    for field in ["holder_database=", "holder_user=", "holder_application=\"nightly-report\"", "holder_xact_start="] {
        assert!(warning.contains(field), "{field} missing: {warning}");
    }
    assert!(warning.contains("idle in transaction"), "{warning}");
    assert!(named_after >= stall_after, "warned before the threshold: {named_after:?}");
    // The same holder is what `reproject projections` and `GET /projections` report.
    let status = eventlog::horizon_status(&client).await.unwrap();
    assert!(status.waiting, "{status:?}");
    assert_eq!(status.holder.as_ref().and_then(|h| h.pid), Some(pid), "{status:?}");
    // Repeated while the stall lasts.
    wait_for(Duration::from_secs(20), "a second warning", || async {
        logs.text().lines().filter(|l| l.contains(&format!("holder_pid={pid}"))).count() >= 2
    })
    .await;
    // Lag, never loss: nothing above the horizon was applied, nothing was skipped.
    assert_eq!(row(&client, &V4, 9).await.unwrap().aggregate_version, 3, "the projector read past the horizon");
    let lag = readmodel::lag_events(&client, &readmodel::offsets(&client, "v4").await.unwrap()).await.unwrap();
    assert_eq!(lag, 50, "the 50 new events wait");

    other.batch_execute("ROLLBACK").await.unwrap();
    wait_for(Duration::from_secs(30), "the lag to drain to 0", || async {
        let offsets = readmodel::offsets(&client, "v4").await.unwrap();
        readmodel::lag_events(&client, &offsets).await.unwrap() == 0
            && row(&client, &V4, 9).await.is_some_and(|a| a.aggregate_version == 53)
    })
    .await;
    wait_for(Duration::from_secs(10), "the end of the stall in the log", || async {
        logs.text().contains("stall over")
    })
    .await;
    stop.send(true).unwrap();
    live.await.unwrap().expect("the projector ran without error");
}
