//! A fixed set of connections. tokio-postgres pipelines concurrent queries on one connection,
//! so a few connections serve many concurrent requests; a closed connection is replaced on its
//! next use, so a database restart costs the requests in flight, not the process.

use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OnceCell, RwLock, RwLockReadGuard};
use tokio_postgres::{Client, Statement};

const CURRENT_ROW: &str = include_str!("sql/current_row.sql");

/// The `application_name` of the pool's connections.
const APP_NAME: &str = "reproject api";

/// One pooled connection and the statements prepared on it.
pub struct Conn {
    client: Client,
    /// Prepared on first use rather than at connect, so the API can start before the read
    /// schema exists.
    current_row: OnceCell<Statement>,
    /// Time travel's statements: one aggregate's events after a version, and its latest
    /// snapshot inside a cut (prepared once the snapshot table exists).
    aggregate_events: OnceCell<Statement>,
    latest_snapshot: OnceCell<Statement>,
}

impl Conn {
    async fn open(url: &str, statement_timeout: Option<Duration>) -> Result<Conn, tokio_postgres::Error> {
        let client = eventlog::connect_as(url, APP_NAME).await?;
        if let Some(timeout) = statement_timeout {
            client.batch_execute(&format!("SET statement_timeout = {}", timeout.as_millis().max(1))).await?;
        }
        Ok(Conn {
            client,
            current_row: OnceCell::new(),
            aggregate_events: OnceCell::new(),
            latest_snapshot: OnceCell::new(),
        })
    }

    /// The prepared `read.current_row($1, $2)` call: one round trip per read instead of two.
    pub async fn current_row(&self) -> Result<&Statement, tokio_postgres::Error> {
        self.current_row.get_or_try_init(|| self.client.prepare(CURRENT_ROW)).await
    }

    /// The prepared `eventlog::aggregate_events_after` statement.
    pub async fn aggregate_events(&self) -> Result<&Statement, eventlog::Error> {
        self.aggregate_events.get_or_try_init(|| eventlog::prepare_aggregate_events(&self.client)).await
    }

    /// The prepared snapshot lookup, or `None` while the snapshot table does not exist.
    pub async fn latest_snapshot(&self) -> Result<Option<&Statement>, readmodel::Error> {
        if let Some(s) = self.latest_snapshot.get() {
            return Ok(Some(s));
        }
        match readmodel::prepare_latest_snapshot(&self.client).await? {
            Some(s) => Ok(Some(self.latest_snapshot.get_or_init(|| async { s }).await)),
            None => Ok(None),
        }
    }
}

impl Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// Round-robin connections to one database.
pub struct Pool {
    url: String,
    /// Set on each pooled connection: a statement stuck (behind a lock, say) is cancelled by
    /// the server instead of holding up every request pipelined behind it on its connection.
    statement_timeout: Option<Duration>,
    /// Since when the database has been unreachable, if it is.
    outage: std::sync::Mutex<Option<std::time::Instant>>,
    slots: Vec<RwLock<Conn>>,
    next: AtomicUsize,
}

impl Pool {
    /// Opens `size` connections (at least one).
    pub async fn connect(url: &str, size: usize) -> Result<Pool, tokio_postgres::Error> {
        Pool::connect_with(url, size, None).await
    }

    /// Opens `size` connections (at least one), each with `statement_timeout` if given.
    pub async fn connect_with(
        url: &str,
        size: usize,
        statement_timeout: Option<Duration>,
    ) -> Result<Pool, tokio_postgres::Error> {
        let size = size.max(1);
        let mut slots = Vec::with_capacity(size);
        for _ in 0..size {
            slots.push(RwLock::new(Conn::open(url, statement_timeout).await?));
        }
        Ok(Pool {
            url: url.to_owned(),
            statement_timeout,
            outage: std::sync::Mutex::new(None),
            slots,
            next: AtomicUsize::new(0),
        })
    }

    /// Logs the start of an outage once (every request meets it until it ends: each is answered
    /// 503 without a log line of its own).
    fn outage_began(&self, err: &tokio_postgres::Error) {
        let mut outage = self.outage.lock().expect("outage lock");
        if outage.is_none() {
            *outage = Some(std::time::Instant::now());
            tracing::warn!(reason = %eventlog::reconnect::reason(err), "database unreachable: answering 503 until it is back");
        }
    }

    /// A connection was replaced: logs the end of the outage, if one was logged.
    fn outage_ended(&self) {
        match self.outage.lock().expect("outage lock").take() {
            Some(since) => {
                tracing::warn!(outage_s = since.elapsed().as_secs_f64(), "database connection back: serving again")
            }
            None => tracing::warn!("postgres connection closed: replaced"),
        }
    }

    /// The number of connections.
    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// A connection for one request (shared with other requests, which pipeline on it).
    pub async fn get(&self) -> Result<RwLockReadGuard<'_, Conn>, tokio_postgres::Error> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        {
            let conn = slot.read().await;
            if !conn.client.is_closed() {
                return Ok(conn);
            }
        }
        let mut write = slot.write().await;
        if write.client.is_closed() {
            match Conn::open(&self.url, self.statement_timeout).await {
                Ok(conn) => *write = conn,
                Err(e) => {
                    self.outage_began(&e);
                    return Err(e);
                }
            }
            metrics::counter!(eventlog::reconnect::RECONNECTS, "process" => "api").increment(1);
            self.outage_ended();
        }
        Ok(write.downgrade())
    }

    /// A connection of its own, for work that must not queue pipelined reads behind it: the
    /// cutover transaction (which needs `&mut Client`) and the registry's lag scans.
    pub async fn dedicated(&self) -> Result<Client, tokio_postgres::Error> {
        eventlog::connect_as(&self.url, "reproject api admin").await
    }
}
