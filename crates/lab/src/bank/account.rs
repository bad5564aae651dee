//! The state of one bank account as a projection sees it.

use chrono::{DateTime, Utc};
use fold::{ColumnType, ColumnValue, RowCodec, Value};
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

/// A status is stored as its text (`open`, `frozen`, `closed`).
impl ColumnValue for Status {
    const TYPE: ColumnType = ColumnType::Text;
    fn to_value(&self) -> Value {
        Value::Text(self.as_str().to_owned())
    }
    fn from_value(value: Value) -> Result<Self, String> {
        let text = String::from_value(value)?;
        Status::parse(&text).ok_or_else(|| format!("unknown status {text:?}"))
    }
}

/// The state of one account as projection v4 folds it: one row of `read.accounts_v4`, without
/// the engine's guard columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, RowCodec)]
pub struct Account {
    pub owner: String,
    pub currency: String,
    pub status: Status,
    pub balance: i64,
    pub lifetime_deposits: i64,
    pub last_activity_at: Option<DateTime<Utc>>,
}

/// The state of one account as projection v3 folds it (one row of `read.accounts_v3`): the
/// columns v3 has served for two years, without v4's `lifetime_deposits` and
/// `last_activity_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, RowCodec)]
pub struct AccountV3 {
    pub owner: String,
    pub currency: String,
    pub status: Status,
    pub balance: i64,
}

/// What the bank's fold needs of an account state, whichever version's: opening one, its
/// balance and status, and what a version records beyond them (v4 counts deposits and the last
/// activity; v3 does not).
pub trait Ledger: Sized {
    /// A freshly opened account.
    fn open(owner: &str, currency: &str) -> Self;
    fn balance_mut(&mut self) -> &mut i64;
    fn status_mut(&mut self) -> &mut Status;
    /// A deposit of `amount_cents` (the balance is already moved).
    fn deposited(&mut self, _amount_cents: i64) {}
    /// Any event, applied at `at`.
    fn touched(&mut self, _at: DateTime<Utc>) {}
}

impl Ledger for Account {
    fn open(owner: &str, currency: &str) -> Self {
        Account {
            owner: owner.to_owned(),
            currency: currency.to_owned(),
            status: Status::Open,
            balance: 0,
            lifetime_deposits: 0,
            last_activity_at: None,
        }
    }
    fn balance_mut(&mut self) -> &mut i64 {
        &mut self.balance
    }
    fn status_mut(&mut self) -> &mut Status {
        &mut self.status
    }
    fn deposited(&mut self, amount_cents: i64) {
        self.lifetime_deposits += amount_cents;
    }
    fn touched(&mut self, at: DateTime<Utc>) {
        self.last_activity_at = Some(at);
    }
}

impl Ledger for AccountV3 {
    fn open(owner: &str, currency: &str) -> Self {
        AccountV3 { owner: owner.to_owned(), currency: currency.to_owned(), status: Status::Open, balance: 0 }
    }
    fn balance_mut(&mut self) -> &mut i64 {
        &mut self.balance
    }
    fn status_mut(&mut self) -> &mut Status {
        &mut self.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_codecs_name_each_versions_columns() {
        let names = |c: &[fold::Column]| c.iter().map(|c| c.name).collect::<Vec<_>>().join(",");
        assert_eq!(names(AccountV3::COLUMNS), "owner,currency,status,balance");
        assert_eq!(names(Account::COLUMNS), "owner,currency,status,balance,lifetime_deposits,last_activity_at");
        assert!(Account::COLUMNS[5].nullable && !Account::COLUMNS[4].nullable);
        assert_eq!(Account::COLUMNS[2].ty, ColumnType::Text);
        let a = Account { status: Status::Frozen, ..Account::open("o", "EUR") };
        assert_eq!(Account::from_values(a.to_values()), Ok(a));
        let bad = AccountV3::from_values(vec![
            Value::Text("o".into()),
            Value::Text("EUR".into()),
            Value::Text("gone".into()),
            Value::Int8(1),
        ]);
        assert_eq!(bad, Err("column status: unknown status \"gone\"".into()));
    }
}
