//! The row codec's vocabulary: a projection describes its state as typed columns and values,
//! and the engine turns them into table DDL, binary COPY, the guarded upsert, JSON for the API
//! and snapshots, and verify's column list, without knowing any field.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

/// The PostgreSQL types a state column may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Int4,
    Int8,
    Float8,
    Text,
    Bool,
    Timestamptz,
}

impl ColumnType {
    /// The type as written in a `CREATE TABLE`.
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::Int4 => "INT",
            ColumnType::Int8 => "BIGINT",
            ColumnType::Float8 => "DOUBLE PRECISION",
            ColumnType::Text => "TEXT",
            ColumnType::Bool => "BOOLEAN",
            ColumnType::Timestamptz => "TIMESTAMPTZ",
        }
    }
}

/// One column of a projection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Column {
    /// A lowercase snake_case SQL identifier.
    pub name: &'static str,
    pub ty: ColumnType,
    /// Whether the column may hold [`Value::Null`].
    pub nullable: bool,
}

impl Column {
    /// A `NOT NULL` column.
    pub const fn new(name: &'static str, ty: ColumnType) -> Column {
        Column { name, ty, nullable: false }
    }

    /// A column that may be NULL.
    pub const fn nullable(name: &'static str, ty: ColumnType) -> Column {
        Column { name, ty, nullable: true }
    }
}

/// The engine's columns around every state: `aggregate_id` first, then the state's columns,
/// then the guard's `aggregate_version` and `applied_seq`.
pub const ENGINE_COLUMNS: [Column; 3] = [
    Column::new("aggregate_id", ColumnType::Int8),
    Column::new("aggregate_version", ColumnType::Int4),
    Column::new("applied_seq", ColumnType::Int8),
];

/// One value of a state column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int4(i32),
    Int8(i64),
    Float8(f64),
    Text(String),
    Bool(bool),
    Timestamptz(DateTime<Utc>),
}

/// A row (or its JSON) that does not fit the projection's columns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {reason}")]
pub struct RowError {
    pub column: String,
    pub reason: String,
}

impl Value {
    /// Whether the value can be stored in a column of type `ty` (NULL aside).
    pub fn fits(&self, ty: ColumnType) -> bool {
        matches!(
            (self, ty),
            (Value::Int4(_), ColumnType::Int4)
                | (Value::Int8(_), ColumnType::Int8)
                | (Value::Float8(_), ColumnType::Float8)
                | (Value::Text(_), ColumnType::Text)
                | (Value::Bool(_), ColumnType::Bool)
                | (Value::Timestamptz(_), ColumnType::Timestamptz)
        )
    }

    /// The value as PostgreSQL's `to_jsonb` renders it, so that a row folded in memory and a
    /// row read through the API compare field by field.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Int4(v) => json!(v),
            Value::Int8(v) => json!(v),
            Value::Float8(v) => json!(v),
            Value::Text(v) => json!(v),
            Value::Bool(v) => json!(v),
            Value::Timestamptz(t) => json!(t.to_rfc3339_opts(SecondsFormat::AutoSi, false)),
        }
    }

    /// Reads a value of `column` from its JSON (as [`Value::to_json`] or `to_jsonb` wrote it).
    pub fn from_json(column: &Column, json: &serde_json::Value) -> Result<Value, RowError> {
        let bad = |reason: String| RowError { column: column.name.to_owned(), reason };
        if json.is_null() {
            return if column.nullable { Ok(Value::Null) } else { Err(bad("is null".into())) };
        }
        let value = match column.ty {
            ColumnType::Int4 => json.as_i64().and_then(|v| i32::try_from(v).ok()).map(Value::Int4),
            ColumnType::Int8 => json.as_i64().map(Value::Int8),
            ColumnType::Float8 => json.as_f64().map(Value::Float8),
            ColumnType::Text => json.as_str().map(|s| Value::Text(s.to_owned())),
            ColumnType::Bool => json.as_bool().map(Value::Bool),
            ColumnType::Timestamptz => json
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| Value::Timestamptz(t.with_timezone(&Utc))),
        };
        value.ok_or_else(|| bad(format!("{json} is not a {}", column.ty.sql())))
    }

    /// The integer of an `Int8` column, for `read_values`.
    pub fn into_i64(self, column: &str) -> Result<i64, String> {
        match self {
            Value::Int8(v) => Ok(v),
            other => Err(format!("column {column}: expected BIGINT, got {other:?}")),
        }
    }

    /// The integer of an `Int4` column, for `read_values`.
    pub fn into_i32(self, column: &str) -> Result<i32, String> {
        match self {
            Value::Int4(v) => Ok(v),
            other => Err(format!("column {column}: expected INT, got {other:?}")),
        }
    }

    /// The text of a `Text` column, for `read_values`.
    pub fn into_text(self, column: &str) -> Result<String, String> {
        match self {
            Value::Text(v) => Ok(v),
            other => Err(format!("column {column}: expected TEXT, got {other:?}")),
        }
    }

    /// The instant of a nullable `Timestamptz` column, for `read_values`.
    pub fn into_opt_ts(self, column: &str) -> Result<Option<DateTime<Utc>>, String> {
        match self {
            Value::Null => Ok(None),
            Value::Timestamptz(t) => Ok(Some(t)),
            other => Err(format!("column {column}: expected TIMESTAMPTZ, got {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_json() {
        let t = DateTime::from_timestamp(1_700_000_000, 250_000_000).unwrap();
        let cases = [
            (Column::new("a", ColumnType::Int4), Value::Int4(-3)),
            (Column::new("b", ColumnType::Int8), Value::Int8(1 << 40)),
            (Column::new("c", ColumnType::Float8), Value::Float8(0.5)),
            (Column::new("d", ColumnType::Text), Value::Text("x".into())),
            (Column::new("e", ColumnType::Bool), Value::Bool(true)),
            (Column::new("f", ColumnType::Timestamptz), Value::Timestamptz(t)),
            (Column::nullable("g", ColumnType::Timestamptz), Value::Null),
        ];
        for (column, value) in cases {
            assert!(value == Value::Null || value.fits(column.ty), "{column:?}");
            assert_eq!(Value::from_json(&column, &value.to_json()), Ok(value), "{column:?}");
        }
        assert_eq!(Value::Timestamptz(t).to_json(), json!("2023-11-14T22:13:20.250+00:00"));
    }

    #[test]
    fn refuses_json_that_does_not_fit_the_column() {
        let e = Value::from_json(&Column::new("balance", ColumnType::Int8), &json!("ten")).unwrap_err();
        assert_eq!(e.to_string(), "column balance: \"ten\" is not a BIGINT");
        assert!(Value::from_json(&Column::new("n", ColumnType::Int4), &json!(1u64 << 40)).is_err());
        assert!(Value::from_json(&Column::new("n", ColumnType::Text), &serde_json::Value::Null).is_err());
    }
}
