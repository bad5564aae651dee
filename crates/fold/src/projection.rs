//! The projection versions and their `apply` functions.

use crate::account::{Account, Status};
use crate::event::{Event, EventBody};

/// A projection version: which fold turns events into rows of `read.accounts_<name>`.
///
/// v3 is the model that has served for two years. It reads a fee's amount only from the
/// top-level `amount_cents` field, so every fee written by the fee engine v2 (nested under
/// `fee`) is silently folded as zero. v4 reads both shapes and adds `lifetime_deposits` and
/// `last_activity_at`, which v3 never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Projection {
    V3,
    V4,
}

/// A projection name that no fold implements.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown projection version {0:?} (known: v3, v4)")]
pub struct UnknownProjection(pub String);

/// An event that decodes but cannot follow the state it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("aggregate {aggregate_id} version {version}: first event is not account_opened")]
    NotOpened { aggregate_id: i64, version: i32 },
    #[error("aggregate {aggregate_id} version {version}: account_opened on an existing account")]
    OpenedTwice { aggregate_id: i64, version: i32 },
}

impl Projection {
    /// Every projection version this code can build.
    pub const ALL: [Projection; 2] = [Projection::V3, Projection::V4];

    /// Parses a version name such as `v4`.
    pub fn parse(name: &str) -> Result<Projection, UnknownProjection> {
        match name {
            "v3" => Ok(Projection::V3),
            "v4" => Ok(Projection::V4),
            other => Err(UnknownProjection(other.to_owned())),
        }
    }

    /// The version name, as stored in the registry.
    pub fn name(self) -> &'static str {
        match self {
            Projection::V3 => "v3",
            Projection::V4 => "v4",
        }
    }

    /// The read-model table of this version, in schema `read`.
    pub fn table(self) -> &'static str {
        match self {
            Projection::V3 => "accounts_v3",
            Projection::V4 => "accounts_v4",
        }
    }

    /// Whether rows carry `lifetime_deposits` and `last_activity_at`.
    pub fn has_activity_columns(self) -> bool {
        matches!(self, Projection::V4)
    }

    /// Folds one event into the state of its aggregate. The caller guarantees that `event` is
    /// the next version of `state` (see [`crate::Stream`] for the guard that ensures it).
    pub fn apply(self, state: Option<Account>, event: &Event) -> Result<Account, ApplyError> {
        let mut account = match (state, &event.body) {
            (None, EventBody::AccountOpened { owner, currency }) => Account {
                aggregate_id: event.aggregate_id,
                owner: owner.clone(),
                currency: currency.clone(),
                status: Status::Open,
                balance: 0,
                lifetime_deposits: 0,
                last_activity_at: None,
                version: 0,
                applied_seq: 0,
            },
            (None, _) => {
                return Err(ApplyError::NotOpened { aggregate_id: event.aggregate_id, version: event.version })
            }
            (Some(_), EventBody::AccountOpened { .. }) => {
                return Err(ApplyError::OpenedTwice { aggregate_id: event.aggregate_id, version: event.version })
            }
            (Some(account), _) => account,
        };
        match &event.body {
            EventBody::AccountOpened { .. } => {}
            EventBody::Deposited { amount_cents } => {
                account.balance += amount_cents;
                if self.has_activity_columns() {
                    account.lifetime_deposits += amount_cents;
                }
            }
            EventBody::Withdrew { amount_cents } | EventBody::TransferSent { amount_cents } => {
                account.balance -= amount_cents;
            }
            EventBody::TransferReceived { amount_cents } => account.balance += amount_cents,
            EventBody::FeeCharged { top_level_cents, nested_cents } => {
                let cents = match self {
                    // The bug: the nested shape of the fee engine v2 reads as a zero fee.
                    Projection::V3 => top_level_cents.unwrap_or(0),
                    Projection::V4 => nested_cents.or(*top_level_cents).unwrap_or(0),
                };
                account.balance -= cents;
            }
            EventBody::Frozen => account.status = Status::Frozen,
            EventBody::Unfrozen | EventBody::Reopened => account.status = Status::Open,
            EventBody::Closed => account.status = Status::Closed,
        }
        if self.has_activity_columns() {
            account.last_activity_at = Some(event.ts);
        }
        account.version = event.version;
        account.applied_seq = event.global_seq;
        Ok(account)
    }
}

impl std::fmt::Display for Projection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Projection {
    type Err = UnknownProjection;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Projection::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn at(unix: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(unix, 0).unwrap()
    }

    fn ev(version: i32, unix: i64, body: EventBody) -> Event {
        Event { global_seq: 100 + version as i64, aggregate_id: 7, version, ts: at(unix), body }
    }

    fn fold_all(p: Projection, events: &[Event]) -> Account {
        events.iter().fold(None, |s, e| Some(p.apply(s, e).unwrap())).unwrap()
    }

    fn history() -> Vec<Event> {
        vec![
            ev(1, 1_000, EventBody::AccountOpened { owner: "c-7".into(), currency: "EUR".into() }),
            ev(2, 2_000, EventBody::Deposited { amount_cents: 10_000 }),
            ev(3, 3_000, EventBody::FeeCharged { top_level_cents: Some(150), nested_cents: None }),
            ev(4, 4_000, EventBody::Withdrew { amount_cents: 2_000 }),
            ev(5, 5_000, EventBody::Frozen),
            ev(6, 6_000, EventBody::FeeCharged { top_level_cents: None, nested_cents: Some(300) }),
            ev(7, 7_000, EventBody::Unfrozen),
            ev(8, 8_000, EventBody::TransferReceived { amount_cents: 500 }),
            ev(9, 9_000, EventBody::TransferSent { amount_cents: 50 }),
            ev(10, 10_000, EventBody::Closed),
        ]
    }

    #[test]
    fn v4_folds_a_hand_checked_history() {
        let a = fold_all(Projection::V4, &history());
        // 10000 - 150 - 2000 - 300 + 500 - 50
        assert_eq!(a.balance, 8_000);
        assert_eq!(a.lifetime_deposits, 10_000);
        assert_eq!(a.status, Status::Closed);
        assert_eq!(a.last_activity_at, Some(at(10_000)));
        assert_eq!((a.version, a.applied_seq), (10, 110));
        assert_eq!((a.owner.as_str(), a.currency.as_str()), ("c-7", "EUR"));
    }

    #[test]
    fn v3_misreads_only_the_nested_fee() {
        let v3 = fold_all(Projection::V3, &history());
        assert_eq!(v3.balance, 8_300, "the nested 300 fee is lost, the legacy 150 fee is kept");
        assert_eq!(v3.lifetime_deposits, 0);
        assert_eq!(v3.last_activity_at, None);
        let without_nested: Vec<Event> = history()
            .into_iter()
            .filter(|e| !matches!(e.body, EventBody::FeeCharged { nested_cents: Some(_), .. }))
            .collect();
        assert_eq!(
            fold_all(Projection::V3, &without_nested).balance,
            fold_all(Projection::V4, &without_nested).balance
        );
    }

    #[test]
    fn refuses_events_that_cannot_follow_the_state() {
        let deposit = ev(1, 1, EventBody::Deposited { amount_cents: 1 });
        assert_eq!(Projection::V4.apply(None, &deposit), Err(ApplyError::NotOpened { aggregate_id: 7, version: 1 }));
        let opened = history()[0].clone();
        let state = Projection::V4.apply(None, &opened).unwrap();
        assert!(matches!(Projection::V4.apply(Some(state), &opened), Err(ApplyError::OpenedTwice { .. })));
    }

    #[test]
    fn parses_names() {
        assert_eq!(Projection::parse("v4"), Ok(Projection::V4));
        assert_eq!(
            Projection::parse("v9").unwrap_err().to_string(),
            "unknown projection version \"v9\" (known: v3, v4)"
        );
    }
}
