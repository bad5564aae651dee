//! The state of one bank account as a projection sees it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Lifecycle of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Frozen,
    Closed,
}

impl Status {
    /// The text stored in read-model tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Frozen => "frozen",
            Status::Closed => "closed",
        }
    }

    /// Parses the text stored in read-model tables.
    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "open" => Some(Status::Open),
            "frozen" => Some(Status::Frozen),
            "closed" => Some(Status::Closed),
            _ => None,
        }
    }
}

/// The state of one account, as the bank's projections fold it (one row of
/// `read.accounts_<version>`, without the engine's guard columns).
///
/// `lifetime_deposits` and `last_activity_at` exist only from projection v4 on; v3 leaves
/// them at zero and `None` and does not store them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub owner: String,
    pub currency: String,
    pub status: Status,
    pub balance: i64,
    pub lifetime_deposits: i64,
    pub last_activity_at: Option<DateTime<Utc>>,
}
