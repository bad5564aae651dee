//! A second read model of the bank's events, to prove the projection interface: per account,
//! how much of each kind of activity it has seen (family `activity`, version `activity_v1`).
//!
//! It shares nothing with the accounts projections but the events' decoding and the fee's
//! upcaster chain: its own state, columns and rules. It accepts any first event (it counts
//! activity, it does not check an account's lifecycle), so unlike `accounts` it never refuses
//! an event that decodes.

use chrono::{DateTime, Utc};
use fold::{ApplyError, DecodeError, Envelope, Payload, Projection, RowCodec, Upcaster};

use crate::bank::{decode, BankEvent, FEE_UPCASTERS};

/// One account's activity.
#[derive(Debug, Clone, PartialEq, Eq, RowCodec)]
pub struct Activity {
    pub deposits: i64,
    pub largest_deposit_cents: i64,
    pub withdrawals: i64,
    pub fees: i64,
    /// Fees of every schema version, read through the upcasters.
    pub fee_cents: i64,
    /// Transfers sent and received.
    pub transfers: i64,
    /// The instant of the account's first and last event.
    pub first_event_at: DateTime<Utc>,
    pub last_event_at: DateTime<Utc>,
}

/// The activity projection, version 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ActivityV1;

impl Projection for ActivityV1 {
    type Event = BankEvent;
    type State = Activity;

    fn family(&self) -> &'static str {
        "activity"
    }
    fn name(&self) -> &'static str {
        "activity_v1"
    }
    fn table(&self) -> String {
        "activity_v1".to_owned()
    }
    fn upcasters(&self) -> &[Upcaster] {
        &FEE_UPCASTERS
    }
    fn decode(&self, event_type: &str, payload: &Payload<'_>) -> Result<BankEvent, DecodeError> {
        decode(event_type, payload)
    }
    fn apply(&self, state: Option<Activity>, event: &Envelope<BankEvent>) -> Result<Activity, ApplyError> {
        let ts = event.meta.ts;
        let mut a = state.unwrap_or(Activity {
            deposits: 0,
            largest_deposit_cents: 0,
            withdrawals: 0,
            fees: 0,
            fee_cents: 0,
            transfers: 0,
            first_event_at: ts,
            last_event_at: ts,
        });
        match &event.body {
            BankEvent::Deposited { amount_cents } => {
                a.deposits += 1;
                a.largest_deposit_cents = a.largest_deposit_cents.max(*amount_cents);
            }
            BankEvent::Withdrew { .. } => a.withdrawals += 1,
            BankEvent::FeeCharged { nested_cents, top_level_cents } => {
                a.fees += 1;
                a.fee_cents += nested_cents.or(*top_level_cents).unwrap_or(0);
            }
            BankEvent::TransferSent { .. } | BankEvent::TransferReceived { .. } => a.transfers += 1,
            BankEvent::AccountOpened { .. }
            | BankEvent::Frozen
            | BankEvent::Unfrozen
            | BankEvent::Closed
            | BankEvent::Reopened => {}
        }
        a.last_event_at = ts;
        Ok(a)
    }
}

/// The expected activity of every aggregate, computed in SQL straight from `log.events`,
/// independently of this module's fold: the check the activity test compares the table with.
/// Columns: `aggregate_id`, the state's columns, `aggregate_version`, `applied_seq`.
pub const EXPECTED_FROM_LOG_SQL: &str = include_str!("sql/activity_expected.sql");

#[cfg(test)]
mod tests {
    use super::*;
    use fold::{decode_event, fold_from, AggregateId, Meta};

    #[test]
    fn counts_each_kind_of_activity_and_reads_every_fee_shape() {
        let history = [
            ("account_opened", r#"{"owner":"o","currency":"EUR"}"#),
            ("deposited", r#"{"amount_cents":500}"#),
            ("deposited", r#"{"amount_cents":900}"#),
            ("fee_charged", r#"{"amount_cents":10}"#),
            ("fee_charged", r#"{"fee":{"amount_cents":20}}"#),
            ("frozen", r#"{}"#),
            ("transfer_received", r#"{"amount_cents":5}"#),
            ("withdrew", r#"{"amount_cents":1}"#),
        ];
        let events: Vec<_> = history
            .iter()
            .enumerate()
            .map(|(i, (t, p))| {
                let meta = Meta {
                    global_seq: i as i64 + 1,
                    aggregate_id: AggregateId::Int(3),
                    aggregate_version: i as i32 + 1,
                    ts: DateTime::from_timestamp(1_000 + i as i64, 0).unwrap(),
                };
                decode_event(&ActivityV1, meta, t, p.as_bytes()).unwrap()
            })
            .collect();
        let row = fold_from(&ActivityV1, None, events).unwrap().row.unwrap();
        let a = &row.state;
        assert_eq!((a.deposits, a.largest_deposit_cents, a.withdrawals), (2, 900, 1));
        assert_eq!((a.fees, a.fee_cents, a.transfers), (2, 30, 1));
        assert_eq!((a.first_event_at.timestamp(), a.last_event_at.timestamp()), (1_000, 1_007));
        assert_eq!(row.aggregate_version, 8);
        assert_eq!(Activity::from_values(a.to_values()), Ok(a.clone()));
    }
}
