//! Blocking SQL against a cluster, for the few statements the harness needs (creating
//! databases) from synchronous code that may itself be running inside a tokio runtime.

use std::future::Future;
use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use crate::{Error, Result};

/// The URL of database `db` on the loopback cluster at `port`, with the superuser's password
/// (hex, so it needs no escaping).
pub(crate) fn url(port: u16, password: &str, db: &str) -> String {
    format!("postgresql://postgres:{password}@127.0.0.1:{port}/{db}")
}

/// [`url`] without the password, for messages and logs.
pub(crate) fn redacted_url(port: u16, db: &str) -> String {
    format!("postgresql://postgres:***@127.0.0.1:{port}/{db}")
}

/// Connects as `postgres` with `password` to database `db` on `port` and runs `f` with the
/// client.
///
/// The work runs on a new thread with its own current-thread runtime: calling
/// `Runtime::block_on` on a thread that already drives a runtime (a `#[tokio::test]`) panics,
/// and a new thread has none.
pub(crate) fn with_client<T, F, Fut>(port: u16, password: &str, db: &str, what: String, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, tokio_postgres::Error>>,
{
    let db = db.to_owned();
    let password = password.to_owned();
    let url = redacted_url(port, &db);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Io { action: "starting a runtime for", path: url.clone(), source })?;
        let result = runtime.block_on(async {
            let mut config = Config::new();
            config
                .host("127.0.0.1")
                .port(port)
                .user("postgres")
                .password(&password)
                .dbname(&db)
                .application_name("pgharness")
                .connect_timeout(Duration::from_secs(10));
            let (client, connection) = config.connect(NoTls).await?;
            // The connection future does the I/O; it ends when the client is dropped.
            let driver = tokio::spawn(connection);
            let result = f(client).await;
            let _ = driver.await;
            result
        });
        result.map_err(|source| Error::Sql { what, url, source })
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Creates database `name` (an identifier we generate: letters, digits, underscores) unless it
/// exists. Two processes racing to create it both succeed.
pub(crate) fn ensure_database(port: u16, password: &str, name: &str) -> Result<()> {
    let name = name.to_owned();
    with_client(port, password, "postgres", format!("creating database {name}"), move |client| async move {
        let exists = client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await?.is_some();
        if exists {
            return Ok(());
        }
        match client.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await {
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => Ok(()),
            other => other,
        }
    })
}

/// Creates database `name`, which must not exist yet.
pub(crate) fn create_database(port: u16, password: &str, name: &str) -> Result<()> {
    let name = name.to_owned();
    with_client(port, password, "postgres", format!("creating database {name}"), move |client| async move {
        client.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await
    })
}

/// Sets the superuser's password (on a cluster initialised with `trust`, before the harness
/// set one).
pub(crate) fn set_password(port: u16, password: &str) -> Result<()> {
    // ALTER ROLE takes no bind parameters: the password goes in as a quoted literal.
    let literal = password.replace('\'', "''");
    let sql = format!("ALTER ROLE postgres PASSWORD '{literal}'");
    with_client(port, password, "postgres", "setting the superuser's password".to_owned(), move |client| async move {
        client.batch_execute(&sql).await
    })
}
