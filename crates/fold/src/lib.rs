//! The account projections as pure functions: decode an event from the log, apply it to a state.
//!
//! Everything here is deterministic and free of I/O, so the live projector, the replay, time
//! travel and single-aggregate repair all fold with exactly the same code and can only differ in
//! where their events come from and how they batch the results.

mod account;
mod event;
mod guard;
mod projection;

pub use account::{Account, Status};
pub use event::{decode, DecodeError, Event, EventBody, EventType};
pub use guard::{fold_from, fold_prefix, Offer, Stream};
pub use projection::{ApplyError, Projection, UnknownProjection};

/// The instant the fee engine started emitting the nested fee payload that v3 misreads.
///
/// Events of type `fee_charged` at or after this instant carry `{"fee": {"amount_cents": ..}}`
/// instead of a top-level `amount_cents`; the generator and the producer follow the same rule.
pub fn fee_engine_v2_since() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(FEE_ENGINE_V2_SINCE_UNIX, 0).expect("constant is a valid instant")
}

/// 2025-05-01T00:00:00Z: eight months before the end of the generated two-year history.
pub const FEE_ENGINE_V2_SINCE_UNIX: i64 = 1_746_057_600;
