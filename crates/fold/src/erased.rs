//! A projection behind a trait object, for the places that pick a version at run time per
//! request or per command (the API's time travel, the registry's bookkeeping) and touch one
//! aggregate or one table at a time, never the per-event hot path.
//!
//! Rows cross this boundary as JSON in the shape of PostgreSQL's `to_jsonb` of a table row:
//! the engine's columns and the state's, by name.

use serde_json::{Map, Value as Json};

use crate::codec::{Column, RowCodec, RowError, Value, ENGINE_COLUMNS};
use crate::guard::{decode_event, fold_from};
use crate::id::{AggregateId, IdKind};
use crate::projection::{ApplyError, DecodeError, Meta, Projection, Row};

/// One aggregate folded from stored events (see [`AnyProjection::fold_json`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedJson {
    /// The row as `to_jsonb` renders it, or `None` when no event applied.
    pub row: Option<Map<String, Json>>,
    /// The aggregate version and `global_seq` of the last applied (or skipped) event (0, 0
    /// before any).
    pub aggregate_version: i32,
    pub applied_seq: i64,
    /// Versions read past a missing one, which the guard holds instead of skipping the gap.
    pub pending_versions: Vec<i32>,
}

/// Why a history could not be folded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    #[error("event at global_seq {global_seq} cannot be decoded: {error}")]
    Decode { global_seq: i64, error: DecodeError },
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("stored row does not fit the projection: {0}")]
    BadRow(#[from] RowError),
}

/// The parts of a [`Projection`] that do not depend on its types, usable as `dyn`.
pub trait AnyProjection: Send + Sync + std::fmt::Debug {
    fn family(&self) -> &'static str;
    fn name(&self) -> &'static str;
    fn table(&self) -> String;
    /// The state's columns (without the engine's).
    fn state_columns(&self) -> &'static [Column];
    /// Every column of the version's table, in storage order.
    fn all_columns(&self) -> Vec<Column> {
        let mut cols = vec![ENGINE_COLUMNS[0]];
        cols.extend_from_slice(self.state_columns());
        cols.extend_from_slice(&ENGINE_COLUMNS[1..]);
        cols
    }
    /// Whether unknown event types stop the fold (see [`Projection::strict_types`]).
    fn strict_types(&self) -> bool;
    /// Folds one aggregate's stored events `(meta, type, payload)`, in any order, on top of
    /// `start` (a row as JSON, e.g. a snapshot of versions 1..k, in a log of `id` ids),
    /// through the version guard.
    fn fold_json(
        &self,
        start: Option<&Json>,
        id: IdKind,
        events: &[(Meta, &str, &[u8])],
    ) -> Result<FoldedJson, FoldError>;
}

impl<P: Projection> AnyProjection for P {
    fn family(&self) -> &'static str {
        Projection::family(self)
    }
    fn name(&self) -> &'static str {
        Projection::name(self)
    }
    fn table(&self) -> String {
        Projection::table(self)
    }
    fn state_columns(&self) -> &'static [Column] {
        P::State::COLUMNS
    }
    fn strict_types(&self) -> bool {
        Projection::strict_types(self)
    }
    fn fold_json(
        &self,
        start: Option<&Json>,
        id: IdKind,
        events: &[(Meta, &str, &[u8])],
    ) -> Result<FoldedJson, FoldError> {
        let start = start.map(|j| row_from_json(self, j, id)).transpose()?;
        let mut decoded = Vec::with_capacity(events.len());
        for (meta, event_type, payload) in events {
            decoded.push(
                decode_event(self, meta.clone(), event_type, payload)
                    .map_err(|error| FoldError::Decode { global_seq: meta.global_seq, error })?,
            );
        }
        let stream = fold_from(self, start, decoded)?;
        let applied_seq = match (&stream.row, &stream.mark) {
            (Some(r), _) => r.applied_seq,
            (None, Some(m)) => m.applied_seq,
            (None, None) => 0,
        };
        Ok(FoldedJson {
            row: stream.row.as_ref().map(|r| row_json(self, r)),
            aggregate_version: stream.version(),
            applied_seq,
            pending_versions: stream.pending.keys().copied().collect(),
        })
    }
}

/// Every value of `row`, the engine's columns included, in the table's column order.
pub fn row_values<P: Projection>(_projection: &P, row: &Row<P::State>) -> Vec<Value> {
    let mut values = Vec::with_capacity(P::State::COLUMNS.len() + 3);
    values.push(Value::Id(row.aggregate_id.clone()));
    row.state.write_values(&mut values);
    values.push(Value::Int4(row.aggregate_version));
    values.push(Value::Int8(row.applied_seq));
    values
}

/// Reads a row from the values of every column, in the table's order (as [`row_values`]).
pub fn row_from_values<P: Projection>(_projection: &P, mut values: Vec<Value>) -> Result<Row<P::State>, String> {
    use crate::codec::ColumnValue;
    let n = P::State::COLUMNS.len();
    if values.len() != n + 3 {
        return Err(format!("expected {} columns, got {}", n + 3, values.len()));
    }
    let column = |name: &'static str| move |e: String| format!("column {name}: {e}");
    let applied_seq = i64::from_value(values.pop().expect("length checked")).map_err(column("applied_seq"))?;
    let aggregate_version =
        i32::from_value(values.pop().expect("length checked")).map_err(column("aggregate_version"))?;
    let state_values = values.split_off(1);
    let aggregate_id =
        AggregateId::from_value(values.pop().expect("length checked")).map_err(column("aggregate_id"))?;
    Ok(Row { aggregate_id, aggregate_version, applied_seq, state: P::State::from_values(state_values)? })
}

/// The row as PostgreSQL's `to_jsonb` renders a row of the version's table.
pub fn row_json<P: Projection>(projection: &P, row: &Row<P::State>) -> Map<String, Json> {
    let columns = AnyProjection::all_columns(projection);
    columns.iter().zip(row_values(projection, row)).map(|(c, v)| (c.name.to_owned(), v.to_json())).collect()
}

/// Reads a row from its `to_jsonb` form (as [`row_json`] writes it), in a log of `id` ids.
pub fn row_from_json<P: Projection>(projection: &P, json: &Json, id: IdKind) -> Result<Row<P::State>, RowError> {
    let mut values = Vec::new();
    for column in AnyProjection::all_columns(projection) {
        let field = json.get(column.name).unwrap_or(&Json::Null);
        values.push(Value::from_json(&column, field, id)?);
    }
    row_from_values(projection, values).map_err(|reason| RowError { column: "(row)".into(), reason })
}
