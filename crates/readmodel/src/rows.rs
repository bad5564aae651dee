//! Mapping between [`fold::Account`] and a version table's rows.

use std::collections::HashMap;

use fold::{Account, Projection, Status};
use postgres_types::{ToSql, Type};
use tokio_postgres::{Client, GenericClient, Row};

use crate::schema::qualified_table;
use crate::{Error, Result};

/// The columns of a version's table, in storage order.
#[derive(Debug, Clone, Copy)]
pub struct Columns {
    projection: Projection,
}

const BASE: [(&str, Type); 5] = [
    ("aggregate_id", Type::INT8),
    ("owner", Type::TEXT),
    ("currency", Type::TEXT),
    ("status", Type::TEXT),
    ("balance", Type::INT8),
];
const ACTIVITY: [(&str, Type); 2] = [("lifetime_deposits", Type::INT8), ("last_activity_at", Type::TIMESTAMPTZ)];
const GUARD: [(&str, Type); 2] = [("aggregate_version", Type::INT4), ("applied_seq", Type::INT8)];

impl Columns {
    /// The columns of `projection`'s table.
    pub fn of(projection: Projection) -> Columns {
        Columns { projection }
    }

    fn all(self) -> Vec<(&'static str, Type)> {
        let mut cols: Vec<(&str, Type)> = BASE.to_vec();
        if self.projection.has_activity_columns() {
            cols.extend(ACTIVITY.iter().cloned());
        }
        cols.extend(GUARD.iter().cloned());
        cols
    }

    /// Column names.
    pub fn names(self) -> Vec<&'static str> {
        self.all().into_iter().map(|(n, _)| n).collect()
    }

    /// Column types, for binary COPY.
    pub fn types(self) -> Vec<Type> {
        self.all().into_iter().map(|(_, t)| t).collect()
    }

    /// `aggregate_id, owner, ...` for SQL.
    pub fn list(self) -> String {
        self.names().join(", ")
    }

    /// The values of one account, in column order.
    pub fn values(self, a: &Account) -> Vec<&(dyn ToSql + Sync)> {
        let mut v: Vec<&(dyn ToSql + Sync)> =
            vec![&a.aggregate_id, &a.owner, &a.currency, status_ref(a.status), &a.balance];
        if self.projection.has_activity_columns() {
            v.push(&a.lifetime_deposits);
            v.push(&a.last_activity_at);
        }
        v.push(&a.version);
        v.push(&a.applied_seq);
        v
    }

    /// Reads an account from a row selected with [`Columns::list`].
    pub fn from_row(self, row: &Row) -> Result<Account> {
        let aggregate_id: i64 = row.try_get(0)?;
        let status: &str = row.try_get(3)?;
        let status = Status::parse(status).ok_or_else(|| Error::BadRow {
            table: self.projection.table().to_owned(),
            aggregate_id,
            reason: format!("unknown status {status:?}"),
        })?;
        let (lifetime_deposits, last_activity_at, next) =
            if self.projection.has_activity_columns() { (row.try_get(5)?, row.try_get(6)?, 7) } else { (0, None, 5) };
        Ok(Account {
            aggregate_id,
            owner: row.try_get(1)?,
            currency: row.try_get(2)?,
            status,
            balance: row.try_get(4)?,
            lifetime_deposits,
            last_activity_at,
            version: row.try_get(next)?,
            applied_seq: row.try_get(next + 1)?,
        })
    }
}

fn status_ref(status: Status) -> &'static (dyn ToSql + Sync) {
    static OPEN: &str = "open";
    static FROZEN: &str = "frozen";
    static CLOSED: &str = "closed";
    match status {
        Status::Open => &OPEN,
        Status::Frozen => &FROZEN,
        Status::Closed => &CLOSED,
    }
}

/// Loads the stored rows of the given aggregates.
pub async fn load_accounts<C: GenericClient>(
    client: &C,
    projection: Projection,
    ids: &[i64],
) -> Result<HashMap<i64, Account>> {
    let cols = Columns::of(projection);
    let sql = format!("SELECT {} FROM {} WHERE aggregate_id = ANY($1)", cols.list(), qualified_table(projection));
    let rows = client.query(&sql, &[&ids]).await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in &rows {
        let a = cols.from_row(row)?;
        out.insert(a.aggregate_id, a);
    }
    Ok(out)
}

/// Reads an account from the `to_jsonb` of a row (as the read function returns it).
pub fn account_from_json(projection: Projection, json: &serde_json::Value) -> Option<Account> {
    let i = |k: &str| json.get(k).and_then(|v| v.as_i64());
    let s = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    Some(Account {
        aggregate_id: i("aggregate_id")?,
        owner: s("owner")?,
        currency: s("currency")?,
        status: Status::parse(json.get("status")?.as_str()?)?,
        balance: i("balance")?,
        lifetime_deposits: if projection.has_activity_columns() { i("lifetime_deposits")? } else { 0 },
        last_activity_at: json
            .get("last_activity_at")
            .and_then(|v| v.as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc)),
        version: i("aggregate_version")? as i32,
        applied_seq: i("applied_seq")?,
    })
}

/// An order-independent checksum of every row of a version's table, plus the row count:
/// equal checksums mean byte-for-byte equal tables.
pub async fn table_checksum(client: &Client, projection: Projection) -> Result<(i64, String)> {
    let sql = format!(
        "SELECT count(*), coalesce(md5(string_agg(md5(a::TEXT), '' ORDER BY a.aggregate_id)), '') FROM {} a",
        qualified_table(projection)
    );
    let row = client.query_one(&sql, &[]).await?;
    Ok((row.get(0), row.get(1)))
}
