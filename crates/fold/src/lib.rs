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
mod projection;
mod upcast;

pub use codec::{Column, ColumnType, RowError, Value, ENGINE_COLUMNS};
pub use erased::{row_from_json, row_from_values, row_json, row_values, AnyProjection, FoldError, FoldedJson};
pub use guard::{decode_event, fold_from, fold_prefix, Guarded, Offer};
pub use projection::{ApplyError, DecodeError, Envelope, Meta, Projection, Row};
pub use upcast::{Payload, Upcaster};
