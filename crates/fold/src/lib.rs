//! Projections as pure functions, and the engine's side of them: the [`Projection`] trait a user
//! implements (decode an event, apply it to a state, encode the state as a row), the upcasters
//! that bring old event shapes to the current one, and the per-aggregate version guard.
//!
//! Everything here is deterministic and free of I/O, so the live projector, the replay, time
//! travel and single-aggregate repair all fold with exactly the same code and can only differ in
//! where their events come from and how they batch the results. Nothing here knows a field of
//! any particular projection: the bank accounts of the lab are one implementation among others
//! (`lab::bank`).

mod codec;
mod erased;
mod guard;
mod id;
mod projection;
mod upcast;

pub use codec::{
    json_from_value, json_to_value, take, Column, ColumnType, ColumnValue, RowCodec, RowError, Value, ENGINE_COLUMNS,
};
pub use erased::{row_from_json, row_from_values, row_json, row_values, AnyProjection, FoldError, FoldedJson};
pub use guard::{decode_event, fold_from, fold_prefix, Decoded, Guarded, Mark, Offer};
pub use id::{AggregateId, IdError, IdKind};
pub use projection::{ApplyError, DecodeError, Envelope, Meta, Projection, Row};
/// `#[derive(RowCodec)]`: a state struct's fields as its columns (see [`RowCodec`]).
pub use reproject_derive::RowCodec;
pub use upcast::{Payload, Upcaster};
/// Re-exported for projections' states: `uuid::Uuid` and `rust_decimal::Decimal` are the Rust
/// types of `uuid` and `numeric` columns.
pub use {rust_decimal::Decimal, uuid::Uuid};
