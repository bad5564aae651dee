//! The bank's accounts as reproject projections: the example a user's own projection follows.
//!
//! Two versions of one read model (family `accounts`), each an implementation of
//! [`fold::Projection`]: [`V3`], the model that has served for two years, with its bug (it reads
//! a fee's amount only from the top-level `amount_cents`, so every fee of the fee engine v2,
//! nested under `fee`, folds as zero), and [`V4`], which upcasts every fee to the current shape
//! (see [`FEE_UPCASTERS`]) and adds `lifetime_deposits` and `last_activity_at`.
//!
//! Only this module (and the lab around it: generator, model, producer, verify) knows an
//! account's fields; the engine sees columns and values.

mod account;
mod event;
mod projection;

pub use account::{Account, AccountV3, Ledger, Status};
pub use event::{decode, BankEvent, EventType};
pub use projection::{fee_engine_v2_since, FEE_ENGINE_V2_SINCE_UNIX, FEE_UPCASTERS, V3, V4};
