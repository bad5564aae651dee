//! The row codec's vocabulary: a projection describes its state as typed columns and values,
//! and the engine turns them into table DDL, binary COPY, the guarded upsert, JSON for the API
//! and snapshots, and verify's column list, without knowing any field.
//!
//! A state type implements [`RowCodec`], by hand or with `#[derive(RowCodec)]` over fields that
//! are [`ColumnValue`]s (integers, floats, text, booleans, instants, uuids, numerics, text
//! arrays, JSON, and `Option` of any of them for a nullable column).

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

use crate::id::{AggregateId, IdKind};

/// The PostgreSQL types a state column may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Int4,
    Int8,
    Float8,
    Text,
    Bool,
    Timestamptz,
    /// JSON, stored as `jsonb` and served as JSON (not as a string holding JSON).
    Jsonb,
    Uuid,
    /// An exact decimal (`numeric`), up to 28 significant digits.
    Numeric,
    /// `text[]`.
    TextArray,
    /// The log's stream id type (`BIGINT`, `UUID` or `TEXT`, see [`IdKind`]): the engine's
    /// `aggregate_id` column, or a state column that refers to another stream.
    AggregateId,
}

impl ColumnType {
    /// The type as written in a `CREATE TABLE`, in a log whose stream ids are `id`.
    pub fn sql(self, id: IdKind) -> &'static str {
        match self {
            ColumnType::Int4 => "INT",
            ColumnType::Int8 => "BIGINT",
            ColumnType::Float8 => "DOUBLE PRECISION",
            ColumnType::Text => "TEXT",
            ColumnType::Bool => "BOOLEAN",
            ColumnType::Timestamptz => "TIMESTAMPTZ",
            ColumnType::Jsonb => "JSONB",
            ColumnType::Uuid => "UUID",
            ColumnType::Numeric => "NUMERIC",
            ColumnType::TextArray => "TEXT[]",
            ColumnType::AggregateId => match id {
                IdKind::Bigint => "BIGINT",
                IdKind::Uuid => "UUID",
                IdKind::Text => "TEXT",
            },
        }
    }

    /// The type's name in messages (the log's id type is named as such).
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::AggregateId => "stream id",
            other => other.sql(IdKind::Bigint),
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
    Column::new("aggregate_id", ColumnType::AggregateId),
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
    Json(serde_json::Value),
    Uuid(Uuid),
    Numeric(Decimal),
    TextArray(Vec<String>),
    Id(AggregateId),
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
                | (Value::Json(_), ColumnType::Jsonb)
                | (Value::Uuid(_), ColumnType::Uuid)
                | (Value::Numeric(_), ColumnType::Numeric)
                | (Value::TextArray(_), ColumnType::TextArray)
                | (Value::Id(_), ColumnType::AggregateId)
        )
    }

    /// The value as PostgreSQL's `to_jsonb` renders it (as `serde_json` then reads it), so
    /// that a row folded in memory and a row read through the API compare field by field.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Int4(v) => json!(v),
            Value::Int8(v) => json!(v),
            Value::Float8(v) => json!(v),
            Value::Text(v) => json!(v),
            Value::Bool(v) => json!(v),
            Value::Timestamptz(t) => json!(t.to_rfc3339_opts(SecondsFormat::AutoSi, false)),
            Value::Json(v) => v.clone(),
            Value::Uuid(v) => json!(v.hyphenated().to_string()),
            // `to_jsonb` prints a numeric with its scale: `100` reads back as an integer,
            // `12.50` as a float (exact in the table and in SQL; as exact as a float in JSON).
            Value::Numeric(d) => match d.scale() {
                0 => d.to_i64().map_or_else(|| json!(d.to_f64()), |v| json!(v)),
                _ => json!(d.to_f64()),
            },
            Value::TextArray(v) => json!(v),
            Value::Id(id) => id.to_json(),
        }
    }

    /// Reads a value of `column` from its JSON (as [`Value::to_json`] or `to_jsonb` wrote it);
    /// `id` is the log's id kind, for a column of type [`ColumnType::AggregateId`].
    pub fn from_json(column: &Column, json: &serde_json::Value, id: IdKind) -> Result<Value, RowError> {
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
            ColumnType::Jsonb => Some(Value::Json(json.clone())),
            ColumnType::Uuid => json.as_str().and_then(|s| Uuid::try_parse(s).ok()).map(Value::Uuid),
            ColumnType::Numeric => match json {
                serde_json::Value::Number(n) => n.to_string().parse::<Decimal>().ok().or_else(|| {
                    // A float in exponent form (`1e-7`): through f64.
                    n.as_f64().and_then(Decimal::from_f64_retain)
                }),
                serde_json::Value::String(s) => s.parse::<Decimal>().ok(),
                _ => None,
            }
            .map(Value::Numeric),
            ColumnType::TextArray => json.as_array().and_then(|items| {
                items.iter().map(|i| i.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>().map(Value::TextArray)
            }),
            ColumnType::AggregateId => return id.from_json(json).map(Value::Id).map_err(|e| bad(e.to_string())),
        };
        value.ok_or_else(|| bad(format!("{json} is not a {}", column.ty.name())))
    }
}

/// A state that is one row of a version's table: its columns and the conversions to and from
/// their values. `#[derive(RowCodec)]` writes it for a struct whose fields are
/// [`ColumnValue`]s (a field marked `#[row(json)]` may be any serde type, stored as `jsonb`;
/// `#[row(rename = "col")]` names its column).
pub trait RowCodec: Sized {
    /// The state's columns, in storage order; the engine adds `aggregate_id` before them and
    /// `aggregate_version, applied_seq` after them ([`ENGINE_COLUMNS`]).
    const COLUMNS: &'static [Column];

    /// Appends the state's values to `out`, one per column, in column order.
    fn write_values(&self, out: &mut Vec<Value>);

    /// Reads a state back from its values (as [`RowCodec::write_values`] gave them).
    fn from_values(values: Vec<Value>) -> Result<Self, String>;

    /// The state's values, one per column, in column order.
    fn to_values(&self) -> Vec<Value> {
        let mut out = Vec::with_capacity(Self::COLUMNS.len());
        self.write_values(&mut out);
        out
    }
}

/// A Rust type that is one column of a row: its PostgreSQL type, whether it may be NULL, and
/// the conversions to and from a [`Value`].
pub trait ColumnValue: Sized {
    /// The column's type.
    const TYPE: ColumnType;
    /// Whether the column is nullable (`Option<T>`).
    const NULLABLE: bool = false;
    /// The value to store.
    fn to_value(&self) -> Value;
    /// The Rust value from a stored one; the error says what was found (the caller adds the
    /// column's name).
    fn from_value(value: Value) -> Result<Self, String>;
}

fn expected<T>(ty: ColumnType, got: &Value) -> Result<T, String> {
    Err(format!("expected {}, got {got:?}", ty.name()))
}

macro_rules! column_value {
    ($rust:ty, $ty:ident, $variant:ident) => {
        impl ColumnValue for $rust {
            const TYPE: ColumnType = ColumnType::$ty;
            fn to_value(&self) -> Value {
                Value::$variant(self.clone())
            }
            fn from_value(value: Value) -> Result<Self, String> {
                match value {
                    Value::$variant(v) => Ok(v),
                    other => expected(Self::TYPE, &other),
                }
            }
        }
    };
}

column_value!(i32, Int4, Int4);
column_value!(i64, Int8, Int8);
column_value!(f64, Float8, Float8);
column_value!(String, Text, Text);
column_value!(bool, Bool, Bool);
column_value!(DateTime<Utc>, Timestamptz, Timestamptz);
column_value!(serde_json::Value, Jsonb, Json);
column_value!(Uuid, Uuid, Uuid);
column_value!(Decimal, Numeric, Numeric);
column_value!(Vec<String>, TextArray, TextArray);
column_value!(AggregateId, AggregateId, Id);

impl<T: ColumnValue> ColumnValue for Option<T> {
    const TYPE: ColumnType = T::TYPE;
    const NULLABLE: bool = true;
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, T::to_value)
    }
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// What `#[derive(RowCodec)]` calls for a `#[row(json)]` field: any serde value as `jsonb`.
pub fn json_to_value<T: serde::Serialize>(value: &T) -> Value {
    // Serializing a value of a derived type to a JSON tree fails only for maps whose keys are
    // not strings: a programming error in the state type, caught by its first test.
    Value::Json(serde_json::to_value(value).expect("a #[row(json)] field serializes to JSON"))
}

/// What `#[derive(RowCodec)]` calls to read a `#[row(json)]` field back.
pub fn json_from_value<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, String> {
    match value {
        Value::Json(v) => serde_json::from_value(v).map_err(|e| e.to_string()),
        other => expected(ColumnType::Jsonb, &other),
    }
}

/// What `#[derive(RowCodec)]` calls for each field: the next value, read as the field's type,
/// with the column named in any error.
pub fn take<T, I>(values: &mut I, column: &str, read: impl FnOnce(Value) -> Result<T, String>) -> Result<T, String>
where
    I: Iterator<Item = Value>,
{
    let value = values.next().ok_or_else(|| format!("column {column} is missing"))?;
    read(value).map_err(|e| format!("column {column}: {e}"))
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
            (Column::new("h", ColumnType::Jsonb), Value::Json(json!({"SKU-124": {"qty": 2}}))),
            (Column::new("i", ColumnType::Uuid), Value::Uuid(Uuid::from_u128(77))),
            (Column::new("j", ColumnType::Numeric), Value::Numeric("12.5".parse().unwrap())),
            (Column::new("k", ColumnType::Numeric), Value::Numeric(Decimal::from(100))),
            (Column::new("l", ColumnType::TextArray), Value::TextArray(vec!["a".into(), "b c".into()])),
            (Column::new("m", ColumnType::AggregateId), Value::Id(AggregateId::from("order-1"))),
        ];
        for (column, value) in cases {
            assert!(value == Value::Null || value.fits(column.ty), "{column:?}");
            assert_eq!(Value::from_json(&column, &value.to_json(), IdKind::Text), Ok(value), "{column:?}");
        }
        assert_eq!(Value::Timestamptz(t).to_json(), json!("2023-11-14T22:13:20.250+00:00"));
        assert_eq!(Value::Json(json!({"a": [1]})).to_json(), json!({"a": [1]}), "JSON is served as JSON");
        assert_eq!(Value::Numeric(Decimal::from(100)).to_json(), json!(100), "as to_jsonb prints `100`");
        assert_eq!(Value::Numeric("12.50".parse().unwrap()).to_json(), json!(12.5), "as to_jsonb prints `12.50`");
    }

    #[test]
    fn refuses_json_that_does_not_fit_the_column() {
        let e = Value::from_json(&Column::new("balance", ColumnType::Int8), &json!("ten"), IdKind::Bigint).unwrap_err();
        assert_eq!(e.to_string(), "column balance: \"ten\" is not a BIGINT");
        assert!(Value::from_json(&Column::new("n", ColumnType::Int4), &json!(1u64 << 40), IdKind::Bigint).is_err());
        assert!(
            Value::from_json(&Column::new("n", ColumnType::Text), &serde_json::Value::Null, IdKind::Bigint).is_err()
        );
        let id = Column::new("aggregate_id", ColumnType::AggregateId);
        assert!(Value::from_json(&id, &json!("x"), IdKind::Uuid).unwrap_err().reason.contains("uuid"));
        assert!(Value::from_json(&Column::new("t", ColumnType::TextArray), &json!([1]), IdKind::Bigint).is_err());
    }

    #[test]
    fn options_are_nullable_columns_of_their_inner_type() {
        assert_eq!(<Option<i64> as ColumnValue>::TYPE, ColumnType::Int8);
        const { assert!(<Option<i64> as ColumnValue>::NULLABLE) };
        const { assert!(!<i64 as ColumnValue>::NULLABLE) };
        assert_eq!(Option::<i64>::from_value(Value::Null), Ok(None));
        assert_eq!(Some(3i64).to_value(), Value::Int8(3));
        assert_eq!(i64::from_value(Value::Text("x".into())), Err("expected BIGINT, got Text(\"x\")".into()));
    }
}
