//! Connection helper and the raw JSONB wire type.

use std::time::Duration;

use bytes::BytesMut;
use postgres_types::{FromSql, IsNull, ToSql, Type};
use tokio_postgres::{Client, NoTls};

/// Connects as `reproject` (see [`connect_as`]): for short commands, whose connections need
/// no finer name.
pub async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    connect_as(url, "reproject").await
}

/// Connects with `application_name` = `name` (e.g. `reproject live v4`: process, version and
/// role, so that `pg_stat_activity` and the stall report say who is who; a name in the URL
/// wins) and TCP keepalives that notice a dead peer in about 10 s on an idle connection
/// (`tcp_user_timeout` does the same for unacknowledged writes), instead of the kernel's two
/// hours. Drives the connection on a background task; the connection's own error, if it dies,
/// is logged, and the client then fails its next call.
pub async fn connect_as(url: &str, name: &str) -> Result<Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    // NOTICEs (e.g. "relation already exists, skipping") are noise for a projector.
    config.options("-c client_min_messages=warning");
    if config.get_application_name().is_none() {
        config.application_name(name);
    }
    config
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES)
        .tcp_user_timeout(KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_RETRIES);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

/// Idle time before the first keepalive probe.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// Time between unanswered probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// Unanswered probes before the connection is declared dead.
const KEEPALIVE_RETRIES: u32 = 3;
/// A connection attempt that gets no answer (a host gone, a SYN dropped) fails after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The JSON text of a `jsonb` (or `json`) value, without parsing it into a tree: the fold
/// decodes it straight into typed payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jsonb(pub Vec<u8>);

impl<'a> FromSql<'a> for Jsonb {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            match raw.split_first() {
                Some((1, text)) => Ok(Jsonb(text.to_vec())),
                _ => Err("unsupported jsonb wire version".into()),
            }
        } else {
            Ok(Jsonb(raw.to_vec()))
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }
}

impl ToSql for Jsonb {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }

    postgres_types::to_sql_checked!();
}
