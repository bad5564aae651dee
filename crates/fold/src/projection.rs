//! The trait a projection implements, and the types the engine hands it.

use chrono::{DateTime, Utc};

use crate::codec::RowCodec;
use crate::id::AggregateId;
use crate::upcast::{Payload, Upcaster};

/// Where an event sits in the log: the engine's part of every event, whatever its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub global_seq: i64,
    /// The stream the event belongs to (the log's id kind: an integer, a uuid or a text).
    pub aggregate_id: AggregateId,
    /// The event's number in its aggregate's stream, 1, 2, 3, ... without gaps.
    pub aggregate_version: i32,
    pub ts: DateTime<Utc>,
}

/// A decoded event with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<E> {
    pub meta: Meta,
    pub body: E,
}

/// One row of a read model: the projection's state of one aggregate plus the engine's guard
/// columns (the aggregate, the version of the last applied event and its `global_seq`).
///
/// The guard lives here, not in the projection's state: a projection never sees or stores an
/// aggregate version, and the engine compares versions without knowing the state's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row<S> {
    pub aggregate_id: AggregateId,
    pub aggregate_version: i32,
    pub applied_seq: i64,
    pub state: S,
}

/// Why an event's `(type, payload)` could not be decoded. A malformed payload goes to
/// quarantine (with `--quarantine`) or stops the projector, naming the event; an unknown type
/// is skipped unless the projection is strict ([`Projection::strict_types`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("malformed {event_type} payload: {reason}")]
    MalformedPayload { event_type: String, reason: String },
}

impl DecodeError {
    /// A payload of `event_type` that does not have the shape its decoder needs.
    pub fn malformed(event_type: &str, reason: impl std::fmt::Display) -> DecodeError {
        DecodeError::MalformedPayload { event_type: event_type.to_owned(), reason: reason.to_string() }
    }
}

/// An event that decodes but cannot follow the state it is applied to (an account opened
/// twice, a deposit before the opening): the projection's own rule, in its own words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("aggregate {aggregate_id} version {aggregate_version}: {reason}")]
pub struct ApplyError {
    pub aggregate_id: AggregateId,
    pub aggregate_version: i32,
    pub reason: String,
}

impl ApplyError {
    /// `event` cannot be applied, for `reason`.
    pub fn new(meta: &Meta, reason: impl Into<String>) -> ApplyError {
        ApplyError {
            aggregate_id: meta.aggregate_id.clone(),
            aggregate_version: meta.aggregate_version,
            reason: reason.into(),
        }
    }
}

/// A read model as a left fold of the log: what a user implements to have reproject replay,
/// tail, verify, cut over, time-travel and repair it.
///
/// The engine (bulk replay, gap-safe tail, version guard, offsets with the data, held events,
/// snapshots, time travel, repair) works through this trait only. Implementations are cheap
/// values (a unit struct, a small enum) passed by value; every driver is generic over them,
/// so the fold of each event is a static call, never a dynamic one.
///
/// Rows are keyed by `aggregate_id`: one row per aggregate, in a table hash-partitioned like
/// the log. ARCHITECTURE.md says why other keys are not offered and what they would cost.
pub trait Projection: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The events this projection reads, decoded.
    type Event: Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static;
    /// One aggregate's state: one row of the version's table, without the engine's guard
    /// columns. `#[derive(RowCodec)]` gives it its columns.
    type State: RowCodec + Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static;

    /// The read model this is a version of, e.g. `accounts`: versions of one family replace
    /// one another at cutover, and the API serves the family's active one.
    fn family(&self) -> &'static str;

    /// This version's name, e.g. `v4`: the key of the registry, unique across families.
    fn name(&self) -> &'static str;

    /// The version's table in schema `read` (`{family}_{name}` unless overridden).
    fn table(&self) -> String {
        format!("{}_{}", self.family(), self.name())
    }

    /// Upcasters that bring older schema versions of an event type to the shape `decode`
    /// reads. Run before every decode, on every path (replay, tail, repair, time travel).
    fn upcasters(&self) -> &[Upcaster] {
        &[]
    }

    /// Decodes an event from its type and (upcast) payload. A type this projection does not
    /// know is [`DecodeError::UnknownType`]: the engine skips such an event (the version guard
    /// still counts it, so nothing waits for it), unless [`Projection::strict_types`].
    fn decode(&self, event_type: &str, payload: &Payload<'_>) -> Result<Self::Event, DecodeError>;

    /// Whether an event of a type `decode` does not know stops the projector (or, with
    /// quarantine, dead-letters it) instead of being skipped. Default: skipped, because apps
    /// add event types before their read models know them. A property of the projection, so
    /// that every path (replay, tail, verify, repair, time travel) folds the same way.
    fn strict_types(&self) -> bool {
        false
    }

    /// Folds one event into the state of its aggregate (`None` before its first event). The
    /// engine guarantees that `event` is the next version of the aggregate.
    fn apply(&self, state: Option<Self::State>, event: &Envelope<Self::Event>) -> Result<Self::State, ApplyError>;

    /// [`Projection::apply`] on the state where it lies: what the engine calls for every event.
    /// On `Ok` the state is `Some`; on an error it must be left exactly as it was (the engine
    /// keeps the row of an aggregate whose event it dead-letters). The default applies a
    /// clone; a projection whose state owns heap data (strings, vectors) overrides it and
    /// saves an allocation and a copy of that data on every event.
    fn apply_in_place(&self, state: &mut Option<Self::State>, event: &Envelope<Self::Event>) -> Result<(), ApplyError> {
        *state = Some(self.apply(state.clone(), event)?);
        Ok(())
    }
}
