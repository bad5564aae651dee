//! Connection helper and the raw JSONB wire type.

use bytes::BytesMut;
use postgres_types::{FromSql, IsNull, ToSql, Type};
use tokio_postgres::{Client, NoTls};

/// Connects and drives the connection on a background task. The connection's own error, if
/// it dies, is logged; the client then fails its next call.
pub async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    // NOTICEs (e.g. "relation already exists, skipping") are noise for a projector.
    config.options("-c client_min_messages=warning");
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

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
