//! reproject: rebuild event-sourced read models from the log, fast and exact, and cut readers
//! over with zero downtime.
//!
//! This crate is the facade an application depends on: the projection interface
//! ([`Projection`], `#[derive(RowCodec)]`, [`Envelope`], ...), the engine's crates under their
//! own names ([`fold`], [`eventlog`], [`readmodel`], [`projector`], [`api`]), and the whole
//! command line as a library entry point: an application's binary registers its projections
//! in a [`Catalog`] and calls [`main`], and gets every subcommand and the HTTP API for them.
//!
//! ```no_run
//! # #[derive(Debug, Clone, Copy)] struct OrdersV1;
//! # impl reproject::Projection for OrdersV1 {
//! #     type Event = (); type State = S;
//! #     fn family(&self) -> &'static str { "orders" }
//! #     fn name(&self) -> &'static str { "orders_v1" }
//! #     fn decode(&self, _: &str, _: &reproject::Payload<'_>) -> Result<(), reproject::DecodeError> { Ok(()) }
//! #     fn apply(&self, _: Option<S>, _: &reproject::Envelope<()>) -> Result<S, reproject::ApplyError> { Ok(S { n: 0 }) }
//! # }
//! # #[derive(Debug, Clone, PartialEq, reproject::RowCodec)] struct S { n: i64 }
//! fn main() -> std::process::ExitCode {
//!     reproject::main(reproject::Catalog::new().with(OrdersV1))
//! }
//! ```

pub mod catalog;
mod cli;

pub use catalog::{bank, Catalog, Entry};
pub use fold::{
    AggregateId, ApplyError, Column, ColumnType, ColumnValue, Decimal, DecodeError, Envelope, IdKind, Meta, Payload,
    Projection, Row, RowCodec, Upcaster, Uuid, Value,
};
pub use {api, eventlog, fold, projector, readmodel};

/// Runs the command line with `catalog`'s projections: parses the flags of this process,
/// starts a runtime, runs the command, and returns its exit code (errors are printed, with
/// their causes, on stderr). The `reproject` binary is `main(reproject::bank())`.
pub fn main(catalog: Catalog) -> std::process::ExitCode {
    cli::main(catalog)
}
