//! Mapping between a projection's rows ([`fold::Row`]) and a version table's rows, through
//! the projection's columns and values: the one place that turns the codec into SQL types.

use std::collections::HashMap;
use std::error::Error as StdError;

use bytes::BytesMut;
use fold::{AggregateId, AnyProjection, Column, ColumnType, IdKind, Projection, Row, Value};
use postgres_types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, GenericClient};

use crate::schema::qualified_table;
use crate::{Error, Result};

/// The PostgreSQL type of a column in a log of `id` stream ids, for binary COPY.
pub fn sql_type(ty: ColumnType, id: IdKind) -> Type {
    match ty {
        ColumnType::Int4 => Type::INT4,
        ColumnType::Int8 => Type::INT8,
        ColumnType::Float8 => Type::FLOAT8,
        ColumnType::Text => Type::TEXT,
        ColumnType::Bool => Type::BOOL,
        ColumnType::Timestamptz => Type::TIMESTAMPTZ,
        ColumnType::Jsonb => Type::JSONB,
        ColumnType::Uuid => Type::UUID,
        ColumnType::Numeric => Type::NUMERIC,
        ColumnType::TextArray => Type::TEXT_ARRAY,
        ColumnType::AggregateId => eventlog::id_sql_type(id),
    }
}

/// A [`Value`] as a statement or COPY parameter.
#[derive(Debug)]
pub struct SqlValue<'a>(pub &'a Value);

impl ToSql for SqlValue<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Int4(v) => v.to_sql(ty, out),
            Value::Int8(v) => v.to_sql(ty, out),
            Value::Float8(v) => v.to_sql(ty, out),
            Value::Text(v) => v.to_sql(ty, out),
            Value::Bool(v) => v.to_sql(ty, out),
            Value::Timestamptz(v) => v.to_sql(ty, out),
            Value::Json(v) => v.to_sql(ty, out),
            Value::Uuid(v) => v.to_sql(ty, out),
            Value::Numeric(v) => v.to_sql(ty, out),
            Value::TextArray(v) => v.to_sql(ty, out),
            Value::Id(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [
            Type::INT4,
            Type::INT8,
            Type::FLOAT8,
            Type::TEXT,
            Type::BOOL,
            Type::TIMESTAMPTZ,
            Type::JSONB,
            Type::UUID,
            Type::NUMERIC,
            Type::TEXT_ARRAY,
        ]
        .contains(ty)
    }

    to_sql_checked!();
}

/// `aggregate_id, owner, ...`: every column of the version's table, in storage order.
pub fn column_list(projection: &dyn AnyProjection) -> String {
    projection.all_columns().iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

/// The column types of the version's table in a log of `id` stream ids, for binary COPY.
pub fn column_types(projection: &dyn AnyProjection, id: IdKind) -> Vec<Type> {
    projection.all_columns().iter().map(|c| sql_type(c.ty, id)).collect()
}

fn value_at(row: &tokio_postgres::Row, i: usize, column: &Column) -> Result<Value, tokio_postgres::Error> {
    Ok(match column.ty {
        ColumnType::Int4 => row.try_get::<_, Option<i32>>(i)?.map_or(Value::Null, Value::Int4),
        ColumnType::Int8 => row.try_get::<_, Option<i64>>(i)?.map_or(Value::Null, Value::Int8),
        ColumnType::Float8 => row.try_get::<_, Option<f64>>(i)?.map_or(Value::Null, Value::Float8),
        ColumnType::Text => row.try_get::<_, Option<String>>(i)?.map_or(Value::Null, Value::Text),
        ColumnType::Bool => row.try_get::<_, Option<bool>>(i)?.map_or(Value::Null, Value::Bool),
        ColumnType::Timestamptz => {
            row.try_get::<_, Option<chrono::DateTime<chrono::Utc>>>(i)?.map_or(Value::Null, Value::Timestamptz)
        }
        ColumnType::Jsonb => row.try_get::<_, Option<serde_json::Value>>(i)?.map_or(Value::Null, Value::Json),
        ColumnType::Uuid => row.try_get::<_, Option<fold::Uuid>>(i)?.map_or(Value::Null, Value::Uuid),
        ColumnType::Numeric => row.try_get::<_, Option<fold::Decimal>>(i)?.map_or(Value::Null, Value::Numeric),
        ColumnType::TextArray => row.try_get::<_, Option<Vec<String>>>(i)?.map_or(Value::Null, Value::TextArray),
        ColumnType::AggregateId => row.try_get::<_, Option<AggregateId>>(i)?.map_or(Value::Null, Value::Id),
    })
}

/// Reads a row selected with [`column_list`].
pub fn row_from_sql<P: Projection>(projection: &P, row: &tokio_postgres::Row) -> Result<Row<P::State>> {
    let columns = AnyProjection::all_columns(projection);
    let mut values = Vec::with_capacity(columns.len());
    for (i, column) in columns.iter().enumerate() {
        values.push(value_at(row, i, column)?);
    }
    let aggregate_id = match values.first() {
        Some(Value::Id(id)) => id.to_string(),
        _ => String::new(),
    };
    fold::row_from_values(projection, values).map_err(|reason| Error::BadRow {
        table: qualified_table(projection),
        aggregate_id,
        reason,
    })
}

/// Loads the stored rows of the given aggregates.
pub async fn load_rows<P: Projection, C: GenericClient>(
    client: &C,
    projection: &P,
    ids: &[AggregateId],
) -> Result<HashMap<AggregateId, Row<P::State>>> {
    let sql =
        format!("SELECT {} FROM {} WHERE aggregate_id = ANY($1)", column_list(projection), qualified_table(projection));
    let rows = client.query(&sql, &[&ids]).await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in &rows {
        let r = row_from_sql(projection, row)?;
        out.insert(r.aggregate_id.clone(), r);
    }
    Ok(out)
}

/// Every stored row of a version's table, ordered by aggregate (for verification).
pub async fn load_all_rows<P: Projection, C: GenericClient>(client: &C, projection: &P) -> Result<Vec<Row<P::State>>> {
    let sql = format!("SELECT {} FROM {} ORDER BY aggregate_id", column_list(projection), qualified_table(projection));
    client.query(&sql, &[]).await?.iter().map(|row| row_from_sql(projection, row)).collect()
}

/// An order-independent checksum of every row of a version's table, plus the row count:
/// equal checksums mean byte-for-byte equal tables.
pub async fn table_checksum(client: &Client, projection: &dyn AnyProjection) -> Result<(i64, String)> {
    let sql = format!(
        "SELECT count(*), coalesce(md5(string_agg(md5(a::TEXT), '' ORDER BY a.aggregate_id)), '') FROM {} a",
        qualified_table(projection)
    );
    let row = client.query_one(&sql, &[]).await?;
    Ok((row.get(0), row.get(1)))
}
