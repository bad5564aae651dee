//! Where a version's data lives in Redis, and how a row's values are written as hash fields.
//!
//! Every key of one version shares the hash tag `{<family>_<version>}`, so that in a Redis
//! Cluster they all map to one hash slot and one script may touch them atomically:
//!
//! - `rp:{accounts_v4}:row:<id>`: a hash per aggregate, one field per state column (a NULL
//!   is an absent field), plus `_version` (the aggregate version applied last) and `_seq`
//!   (its `global_seq`);
//! - `rp:{accounts_v4}:pos`: a hash, log partition -> position `tx:seq`;
//! - `rp:{accounts_v4}:fence:<partition>`: the highest fencing token seen for the partition;
//! - `rp:{accounts_v4}:held:<partition>`: events held behind a gap, `id:version` -> JSON;
//! - `rp:{accounts_v4}:meta`: the bulk boundary and the log's shape the version was built on.

use chrono::{DateTime, SecondsFormat, Utc};
use eventlog::{Position, RawEvent};
use fold::{AggregateId, AnyProjection, Column, ColumnType, IdKind, Projection, Row, RowCodec, Value};
use serde_json::{json, Value as Json};

use crate::{Error, Result};

/// The keys of one projection version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `rp:{family_version}`.
    prefix: String,
}

impl Layout {
    /// The layout of `projection`'s version (its family and name are lowercase identifiers,
    /// checked by the registry's rules, so they hold no brace).
    pub fn of(projection: &dyn AnyProjection) -> Result<Layout> {
        Layout::named(projection.family(), projection.name())
    }

    /// The layout of version `name` of `family`.
    pub fn named(family: &str, name: &str) -> Result<Layout> {
        let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok(family) || !ok(name) {
            return Err(Error::Config(format!(
                "family {family:?} and version {name:?} must be lowercase identifiers to name Redis keys"
            )));
        }
        Ok(Layout { prefix: format!("rp:{{{family}_{name}}}") })
    }

    /// The hash tag every key of the version shares: `{family_version}`.
    pub fn hash_tag(&self) -> &str {
        &self.prefix[3..]
    }

    pub fn row(&self, id: &AggregateId) -> String {
        format!("{}:row:{id}", self.prefix)
    }

    /// The prefix of the row keys (`SCAN MATCH` takes it with a `*`).
    pub fn row_prefix(&self) -> String {
        format!("{}:row:", self.prefix)
    }

    pub fn positions(&self) -> String {
        format!("{}:pos", self.prefix)
    }

    pub fn fence(&self, partition: u32) -> String {
        format!("{}:fence:{partition}", self.prefix)
    }

    /// The events held in `partition` (read before their predecessor): hash `id:version` ->
    /// the event as JSON, written and removed with the batches.
    pub fn held(&self, partition: u32) -> String {
        format!("{}:held:{partition}", self.prefix)
    }

    pub fn meta(&self) -> String {
        format!("{}:meta", self.prefix)
    }
}

/// A position as stored: `tx:seq`.
pub fn position_text(p: Position) -> String {
    format!("{}:{}", p.tx, p.seq)
}

/// Reads a position stored by [`position_text`].
pub fn parse_position(text: &str) -> Result<Position> {
    let bad = || Error::BadData(format!("position {text:?} is not tx:seq"));
    let (tx, seq) = text.split_once(':').ok_or_else(bad)?;
    Ok(Position { tx: tx.parse().map_err(|_| bad())?, seq: seq.parse().map_err(|_| bad())? })
}

/// A value as a hash field's text; `None` for NULL (the field is left out). Text, numerics and
/// ids are stored as they print, so that `HGETALL` reads well; the rest as JSON or as Rust
/// prints them, each read back exactly by [`decode_value`].
pub fn encode_value(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::Int4(v) => v.to_string(),
        Value::Int8(v) => v.to_string(),
        // Rust prints the shortest text that parses back to the same f64.
        Value::Float8(v) => v.to_string(),
        Value::Text(v) => v.clone(),
        Value::Bool(v) => v.to_string(),
        Value::Timestamptz(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        Value::Json(v) => v.to_string(),
        Value::Uuid(v) => v.hyphenated().to_string(),
        // Keeps the scale: `12.50` stays `12.50`.
        Value::Numeric(d) => d.to_string(),
        Value::TextArray(v) => serde_json::to_string(v).expect("strings serialize"),
        Value::Id(id) => id.to_string(),
    })
}

/// Reads a field written by [`encode_value`] as a value of `column`; `id` is the log's id kind.
pub fn decode_value(column: &Column, text: Option<&str>, id: IdKind) -> Result<Value, String> {
    let Some(text) = text else {
        return if column.nullable { Ok(Value::Null) } else { Err(format!("column {} is missing", column.name)) };
    };
    let bad = |e: &dyn std::fmt::Display| format!("column {}: {text:?}: {e}", column.name);
    Ok(match column.ty {
        ColumnType::Int4 => Value::Int4(text.parse().map_err(|e| bad(&e))?),
        ColumnType::Int8 => Value::Int8(text.parse().map_err(|e| bad(&e))?),
        ColumnType::Float8 => Value::Float8(text.parse().map_err(|e| bad(&e))?),
        ColumnType::Text => Value::Text(text.to_owned()),
        ColumnType::Bool => Value::Bool(text.parse().map_err(|e| bad(&e))?),
        ColumnType::Timestamptz => {
            Value::Timestamptz(DateTime::parse_from_rfc3339(text).map_err(|e| bad(&e))?.with_timezone(&Utc))
        }
        ColumnType::Jsonb => Value::Json(serde_json::from_str(text).map_err(|e| bad(&e))?),
        ColumnType::Uuid => Value::Uuid(text.parse().map_err(|e| bad(&e))?),
        ColumnType::Numeric => Value::Numeric(text.parse().map_err(|e| bad(&e))?),
        ColumnType::TextArray => Value::TextArray(serde_json::from_str(text).map_err(|e| bad(&e))?),
        ColumnType::AggregateId => Value::Id(id.parse(text).map_err(|e| bad(&e))?),
    })
}

/// The hash fields of a row's state (NULLs left out), without the guard's fields.
pub fn state_fields<P: Projection>(projection: &P, row: &Row<P::State>) -> Vec<(&'static str, String)> {
    // The engine's columns are not fields: the id is in the key, the guard has its own two.
    AnyProjection::state_columns(projection)
        .iter()
        .zip(row.state.to_values())
        .filter_map(|(c, v)| encode_value(&v).map(|text| (c.name, text)))
        .collect()
}

/// A row read back from its hash (field, value pairs as `HGETALL` returns them).
pub fn row_from_fields<P: Projection>(
    projection: &P,
    aggregate_id: AggregateId,
    fields: &std::collections::HashMap<String, String>,
    id: IdKind,
) -> Result<Row<P::State>> {
    let columns = AnyProjection::state_columns(projection);
    let bad = |reason: String| Error::BadData(format!("row {aggregate_id}: {reason}"));
    let mut values = Vec::with_capacity(columns.len() + 3);
    values.push(Value::Id(aggregate_id.clone()));
    for column in columns {
        values.push(decode_value(column, fields.get(column.name).map(String::as_str), id).map_err(bad)?);
    }
    let guard = |name: &str| -> Result<&String> {
        fields.get(name).ok_or_else(|| Error::BadData(format!("row {aggregate_id}: field {name} is missing")))
    };
    let version: i32 = guard("_version")?.parse().map_err(|e| bad(format!("_version: {e}")))?;
    let seq: i64 = guard("_seq")?.parse().map_err(|e| bad(format!("_seq: {e}")))?;
    values.push(Value::Int4(version));
    values.push(Value::Int8(seq));
    fold::row_from_values(projection, values).map_err(bad)
}

/// The field of a held event in its partition's held hash.
pub fn held_field(id: &AggregateId, version: i32) -> String {
    format!("{id}:{version}")
}

/// A raw event as JSON (held events, snapshots).
pub fn raw_json(e: &RawEvent) -> Json {
    json!({
        "global_seq": e.global_seq,
        "aggregate_id": e.aggregate_id.to_string(),
        "version": e.version,
        "type": e.event_type,
        "ts": e.ts.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        "payload": String::from_utf8_lossy(&e.payload),
        "tx_id": e.tx_id,
    })
}

/// Reads an event written by [`raw_json`].
pub fn raw_from_json(json: &Json, id: IdKind) -> Option<RawEvent> {
    Some(RawEvent {
        global_seq: json.get("global_seq")?.as_i64()?,
        aggregate_id: id.parse(json.get("aggregate_id")?.as_str()?).ok()?,
        version: i32::try_from(json.get("version")?.as_i64()?).ok()?,
        event_type: json.get("type")?.as_str()?.to_owned(),
        ts: DateTime::parse_from_rfc3339(json.get("ts")?.as_str()?).ok()?.with_timezone(&Utc),
        payload: json.get("payload")?.as_str()?.as_bytes().to_vec(),
        tx_id: json.get("tx_id")?.as_i64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fold::Decimal;

    #[test]
    fn every_value_type_reads_back_as_written() {
        let cases = [
            (Column::new("a", ColumnType::Int4), Value::Int4(-7)),
            (Column::new("b", ColumnType::Int8), Value::Int8(i64::MAX)),
            (Column::new("c", ColumnType::Float8), Value::Float8(0.1 + 0.2)),
            (Column::new("d", ColumnType::Text), Value::Text("a:b {c}".into())),
            (Column::new("e", ColumnType::Bool), Value::Bool(true)),
            (
                Column::new("f", ColumnType::Timestamptz),
                Value::Timestamptz(DateTime::parse_from_rfc3339("2026-12-07T23:01:02.123456789Z").unwrap().into()),
            ),
            (Column::new("g", ColumnType::Jsonb), Value::Json(serde_json::json!({"x": [1, 2.5, "y"]}))),
            (Column::new("h", ColumnType::Uuid), Value::Uuid(fold::Uuid::from_u128(42))),
            (Column::new("i", ColumnType::Numeric), Value::Numeric("12.50".parse::<Decimal>().unwrap())),
            (Column::new("j", ColumnType::TextArray), Value::TextArray(vec!["x".into(), "\"y\"".into()])),
            (Column::new("k", ColumnType::AggregateId), Value::Id(AggregateId::from(99))),
            (Column::nullable("l", ColumnType::Text), Value::Null),
        ];
        for (column, value) in cases {
            let text = encode_value(&value);
            let back = decode_value(&column, text.as_deref(), IdKind::Bigint).unwrap();
            assert_eq!(back, value, "column {}", column.name);
            if let Value::Numeric(d) = back {
                assert_eq!(d.scale(), 2, "a numeric keeps its scale");
            }
        }
    }

    #[test]
    fn keys_of_one_version_share_one_hash_tag() {
        let layout = Layout::named("accounts", "v4").unwrap();
        assert_eq!(layout.hash_tag(), "{accounts_v4}");
        for key in [layout.row(&AggregateId::from(1)), layout.positions(), layout.fence(3), layout.meta()] {
            assert!(key.starts_with("rp:{accounts_v4}:"), "{key}");
        }
        assert!(Layout::named("Accounts", "v4").is_err());
        assert!(Layout::named("accounts", "v}4").is_err());
    }
}
