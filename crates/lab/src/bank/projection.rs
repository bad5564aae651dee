//! The bank's two projection versions, v3 and v4, and the fee's upcaster chain.

use fold::{ApplyError, DecodeError, Envelope, Payload, Projection, Upcaster};
use serde_json::{json, Value as Json};

use super::account::{Account, AccountV3, Ledger, Status};
use super::event::{decode, BankEvent};

/// 2025-05-01T00:00:00Z: eight months before the end of the generated two-year history.
pub const FEE_ENGINE_V2_SINCE_UNIX: i64 = 1_746_057_600;

/// The instant the fee engine started emitting the nested fee payload that v3 misreads.
///
/// Events of type `fee_charged` at or after this instant carry `{"fee": {"amount_cents": ..}}`
/// instead of a top-level `amount_cents`; the generator and the producer follow the same rule.
pub fn fee_engine_v2_since() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(FEE_ENGINE_V2_SINCE_UNIX, 0).expect("constant is a valid instant")
}

/// The schema versions of `fee_charged`, oldest first:
/// 1. fee engine v1: `{"amount_cents": n, ...}`;
/// 2. fee engine v2 (since 2025-05-01): `{"fee": {"amount_cents": n, ...}, ...}`;
/// 3. `{"schema": 3, "fee": {"amount_cents": n, "tax_cents": t, ...}, ...}`: the version is
///    stated, and the tax is always present.
///
/// Each step only adds what the next shape has, with its default; nothing is removed or
/// renamed, so a v1 payload keeps its top-level `amount_cents` after upcasting.
pub const FEE_UPCASTERS: [Upcaster; 1] = [Upcaster {
    event_type: "fee_charged",
    // What the steps and the decoders read; the rest of a fee's payload is skipped unparsed.
    reads: &["schema", "amount_cents", "fee"],
    version_of: fee_schema,
    steps: &[fee_nest_amount, fee_state_tax],
}];

fn fee_schema(payload: &Json) -> u32 {
    match payload.get("schema") {
        Some(v) => v.as_u64().and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
        None if payload.get("fee").is_some() => 2,
        None => 1,
    }
}

/// 1 → 2: the amount, nested under `fee` as the fee engine v2 writes it.
fn fee_nest_amount(payload: &mut Json) {
    if let Some(object) = payload.as_object_mut() {
        if let Some(cents) = object.get("amount_cents").cloned() {
            object.entry("fee").or_insert_with(|| json!({ "amount_cents": cents }));
        }
    }
}

/// 2 → 3: the schema number, and a tax of zero where none was written.
fn fee_state_tax(payload: &mut Json) {
    if let Some(object) = payload.as_object_mut() {
        if let Some(fee) = object.get_mut("fee").and_then(Json::as_object_mut) {
            fee.entry("tax_cents").or_insert(json!(0));
        }
        object.insert("schema".into(), json!(3));
    }
}

/// How a version reads a fee: v4 reads the nested `fee.amount_cents` (every schema version
/// upcast to it); v3 reads only the top level.
#[derive(Clone, Copy)]
struct Rules {
    nested_fee: bool,
}

fn apply<L: Ledger>(rules: Rules, state: Option<L>, event: &Envelope<BankEvent>) -> Result<L, ApplyError> {
    let mut state = state;
    apply_in_place(rules, &mut state, event)?;
    Ok(state.expect("an applied event leaves an account"))
}

/// Folds `event` into the account where it lies; every error is found before anything
/// changes, so a failing event leaves the account as it was.
fn apply_in_place<L: Ledger>(
    rules: Rules,
    state: &mut Option<L>,
    event: &Envelope<BankEvent>,
) -> Result<(), ApplyError> {
    let account = match (state.as_mut(), &event.body) {
        (None, BankEvent::AccountOpened { owner, currency }) => state.insert(L::open(owner, currency)),
        (None, _) => return Err(ApplyError::new(&event.meta, "first event is not account_opened")),
        (Some(_), BankEvent::AccountOpened { .. }) => {
            return Err(ApplyError::new(&event.meta, "account_opened on an existing account"))
        }
        (Some(account), _) => account,
    };
    match &event.body {
        BankEvent::AccountOpened { .. } => {}
        BankEvent::Deposited { amount_cents } => {
            *account.balance_mut() += amount_cents;
            account.deposited(*amount_cents);
        }
        BankEvent::Withdrew { amount_cents } | BankEvent::TransferSent { amount_cents } => {
            *account.balance_mut() -= amount_cents;
        }
        BankEvent::TransferReceived { amount_cents } => *account.balance_mut() += amount_cents,
        BankEvent::FeeCharged { top_level_cents, nested_cents } => {
            let cents = if rules.nested_fee {
                nested_cents.or(*top_level_cents).unwrap_or(0)
            } else {
                // The bug: the nested shape of the fee engine v2 reads as a zero fee.
                top_level_cents.unwrap_or(0)
            };
            *account.balance_mut() -= cents;
        }
        BankEvent::Frozen => *account.status_mut() = Status::Frozen,
        BankEvent::Unfrozen | BankEvent::Reopened => *account.status_mut() = Status::Open,
        BankEvent::Closed => *account.status_mut() = Status::Closed,
    }
    account.touched(event.meta.ts);
    Ok(())
}

/// Projection v3 of `accounts`: owner, currency, status and balance, with the fee bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct V3;

impl Projection for V3 {
    type Event = BankEvent;
    type State = AccountV3;

    fn family(&self) -> &'static str {
        "accounts"
    }
    fn name(&self) -> &'static str {
        "v3"
    }
    fn decode(&self, event_type: &str, payload: &Payload<'_>) -> Result<BankEvent, DecodeError> {
        decode(event_type, payload)
    }
    fn apply(&self, state: Option<AccountV3>, event: &Envelope<BankEvent>) -> Result<AccountV3, ApplyError> {
        apply(Rules { nested_fee: false }, state, event)
    }
    fn apply_in_place(&self, state: &mut Option<AccountV3>, event: &Envelope<BankEvent>) -> Result<(), ApplyError> {
        apply_in_place(Rules { nested_fee: false }, state, event)
    }
}

/// Projection v4 of `accounts`: every fee upcast to the current shape and read, plus
/// `lifetime_deposits` and `last_activity_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct V4;

impl Projection for V4 {
    type Event = BankEvent;
    type State = Account;

    fn family(&self) -> &'static str {
        "accounts"
    }
    fn name(&self) -> &'static str {
        "v4"
    }
    fn upcasters(&self) -> &[Upcaster] {
        &FEE_UPCASTERS
    }
    fn decode(&self, event_type: &str, payload: &Payload<'_>) -> Result<BankEvent, DecodeError> {
        decode(event_type, payload)
    }
    fn apply(&self, state: Option<Account>, event: &Envelope<BankEvent>) -> Result<Account, ApplyError> {
        apply(Rules { nested_fee: true }, state, event)
    }
    fn apply_in_place(&self, state: &mut Option<Account>, event: &Envelope<BankEvent>) -> Result<(), ApplyError> {
        apply_in_place(Rules { nested_fee: true }, state, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use fold::{decode_event, fold_prefix, row_from_json, row_json, AggregateId, IdKind, Meta, Row};

    fn at(unix: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(unix, 0).unwrap()
    }

    fn meta(version: i32, unix: i64) -> Meta {
        Meta {
            global_seq: 100 + version as i64,
            aggregate_id: AggregateId::Int(7),
            aggregate_version: version,
            ts: at(unix),
        }
    }

    fn ev(version: i32, unix: i64, body: BankEvent) -> Envelope<BankEvent> {
        Envelope { meta: meta(version, unix), body }
    }

    fn fold_all<P: Projection<Event = BankEvent>>(p: P, events: &[Envelope<BankEvent>]) -> Row<P::State> {
        fold_prefix(&p, events.to_vec()).unwrap().row.unwrap()
    }

    fn history() -> Vec<Envelope<BankEvent>> {
        vec![
            ev(1, 1_000, BankEvent::AccountOpened { owner: "c-7".into(), currency: "EUR".into() }),
            ev(2, 2_000, BankEvent::Deposited { amount_cents: 10_000 }),
            ev(3, 3_000, BankEvent::FeeCharged { top_level_cents: Some(150), nested_cents: None }),
            ev(4, 4_000, BankEvent::Withdrew { amount_cents: 2_000 }),
            ev(5, 5_000, BankEvent::Frozen),
            ev(6, 6_000, BankEvent::FeeCharged { top_level_cents: None, nested_cents: Some(300) }),
            ev(7, 7_000, BankEvent::Unfrozen),
            ev(8, 8_000, BankEvent::TransferReceived { amount_cents: 500 }),
            ev(9, 9_000, BankEvent::TransferSent { amount_cents: 50 }),
            ev(10, 10_000, BankEvent::Closed),
        ]
    }

    #[test]
    fn v4_folds_a_hand_checked_history() {
        let row = fold_all(V4, &history());
        let a = &row.state;
        // 10000 - 150 - 2000 - 300 + 500 - 50
        assert_eq!(a.balance, 8_000);
        assert_eq!(a.lifetime_deposits, 10_000);
        assert_eq!(a.status, Status::Closed);
        assert_eq!(a.last_activity_at, Some(at(10_000)));
        assert_eq!((row.aggregate_version, row.applied_seq), (10, 110));
        assert_eq!((a.owner.as_str(), a.currency.as_str()), ("c-7", "EUR"));
    }

    #[test]
    fn v3_misreads_only_the_nested_fee() {
        let v3 = fold_all(V3, &history()).state;
        assert_eq!(v3.balance, 8_300, "the nested 300 fee is lost, the legacy 150 fee is kept");
        let without_nested: Vec<_> = history()
            .into_iter()
            .filter(|e| !matches!(e.body, BankEvent::FeeCharged { nested_cents: Some(_), .. }))
            .collect();
        assert_eq!(fold_all(V3, &without_nested).state.balance, fold_all(V4, &without_nested).state.balance);
    }

    #[test]
    fn refuses_events_that_cannot_follow_the_state() {
        let deposit = ev(1, 1, BankEvent::Deposited { amount_cents: 1 });
        assert_eq!(
            V4.apply(None, &deposit).unwrap_err().to_string(),
            "aggregate 7 version 1: first event is not account_opened"
        );
        let opened = history()[0].clone();
        let state = V4.apply(None, &opened).unwrap();
        assert!(V4.apply(Some(state), &opened).unwrap_err().reason.contains("existing account"));
    }

    #[test]
    fn a_refused_event_leaves_the_account_in_place_as_it_was() {
        fn check<P: Projection<Event = BankEvent>>(p: P) {
            let mut state = None;
            assert!(p.apply_in_place(&mut state, &ev(1, 1, BankEvent::Deposited { amount_cents: 1 })).is_err());
            assert_eq!(state, None);
            let history = history();
            p.apply_in_place(&mut state, &history[0]).unwrap();
            p.apply_in_place(&mut state, &history[1]).unwrap();
            let before = state.clone();
            assert!(p.apply_in_place(&mut state, &history[0]).is_err(), "opened twice");
            assert_eq!(state, before);
        }
        check(V3);
        check(V4);
    }

    #[test]
    fn rows_round_trip_through_values_and_json() {
        let v4 = fold_all(V4, &history());
        assert_eq!(row_from_json(&V4, &serde_json::Value::Object(row_json(&V4, &v4)), IdKind::Bigint), Ok(v4.clone()));
        let json = row_json(&V4, &v4);
        let keys: Vec<&str> = json.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 9, "aggregate_id, six state columns, aggregate_version, applied_seq: {keys:?}");
        assert_eq!(json["last_activity_at"], serde_json::json!("1970-01-01T02:46:40+00:00"));
        let v3 = fold_all(V3, &history());
        let back = row_from_json(&V3, &serde_json::Value::Object(row_json(&V3, &v3)), IdKind::Bigint).unwrap();
        assert_eq!(back, v3);
        assert!(!row_json(&V3, &v3).contains_key("lifetime_deposits"));
    }

    /// One fee of 250 cents written in each of the three schema versions folds, under v4, to
    /// the state of the current shape with its defaults; v3, which has no upcasters, still
    /// reads what it reads (the top-level amount only).
    #[test]
    fn every_schema_version_of_a_fee_folds_like_the_current_shape() {
        let opened = (r#"{"owner":"c-7","currency":"EUR"}"#, "account_opened");
        let shapes = [
            r#"{"amount_cents":250,"kind":"wire"}"#,
            r#"{"fee":{"amount_cents":250,"kind":"wire"},"engine":"fees-v2"}"#,
            r#"{"schema":3,"fee":{"amount_cents":250,"kind":"wire","tax_cents":0},"engine":"fees-v3"}"#,
        ];
        let fold_with = |fee: &str| {
            let events = vec![
                decode_event(&V4, meta(1, 1), opened.1, opened.0.as_bytes()).unwrap(),
                decode_event(&V4, meta(2, 2), "deposited", br#"{"amount_cents":1000}"#).unwrap(),
                decode_event(&V4, meta(3, 3), "fee_charged", fee.as_bytes()).unwrap(),
            ];
            fold::fold_from(&V4, None, events).unwrap().row.unwrap()
        };
        let current = fold_with(shapes[2]);
        assert_eq!(current.state.balance, 750);
        for (version, shape) in shapes.iter().enumerate() {
            assert_eq!(fold_with(shape), current, "schema version {}", version + 1);
            let upcast = FEE_UPCASTERS[0].upcast(shape.as_bytes()).unwrap();
            assert_eq!(upcast["schema"], 3, "schema version {} reaches the current shape", version + 1);
            assert_eq!(upcast["fee"]["tax_cents"], 0);
            assert_eq!(upcast["fee"]["amount_cents"], 250);
        }
        let v1 = FEE_UPCASTERS[0].upcast(shapes[0].as_bytes()).unwrap();
        assert_eq!(v1["amount_cents"], 250, "upcasting adds, it never removes");
        let v3_reads = |shape: &str| match decode_event(&V3, meta(3, 3), "fee_charged", shape.as_bytes()).unwrap().body
        {
            Some(BankEvent::FeeCharged { top_level_cents, .. }) => top_level_cents,
            other => panic!("{other:?}"),
        };
        assert_eq!(v3_reads(shapes[0]), Some(250));
        assert_eq!(v3_reads(shapes[1]), None, "v3's bug stays: it does not upcast");
    }

    #[test]
    fn an_unknown_schema_version_is_an_error_not_a_guess() {
        for payload in [r#"{"schema":4,"fee":{"amount_cents":1}}"#, r#"{"schema":"x","fee":{"amount_cents":1}}"#] {
            let e = decode_event(&V4, meta(3, 3), "fee_charged", payload.as_bytes()).unwrap_err();
            assert!(e.to_string().contains("schema version"), "{e}");
        }
    }
}
