//! Positions in one partition of the log.

use serde::{Deserialize, Serialize};

/// A reader's cursor in one partition: every event with `(tx_id, global_seq) <= (tx, seq)` has
/// been consumed, and none after it.
///
/// `Position::boundary(x)` (= `(x, 0)`) means "every event written by a transaction with an
/// xid below `x`"; since sequence values start at 1 no event sits exactly on it. Positions are
/// totally ordered, so "at or past" comparisons between versions are plain `>=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Position {
    pub tx: i64,
    pub seq: i64,
}

impl Position {
    /// Before the first event.
    pub const START: Position = Position { tx: 0, seq: 0 };

    /// Everything written by transactions with an xid below `tx`.
    pub fn boundary(tx: i64) -> Position {
        Position { tx, seq: 0 }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.tx, self.seq)
    }
}
