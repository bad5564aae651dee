//! The lab's own model of a bank account: which event comes next, what it does to the
//! account, and what its payload looks like.
//!
//! This model is deliberately independent of `fold`: it never calls a projection's `apply`,
//! so checking a projection against it is a real check. The generator and the producer share
//! it, so historical and live events follow the same rules.
//!
//! The truth it keeps is what a correct projection must compute: fees of both payload shapes
//! reduce the balance, `lifetime_deposits` sums `deposited` amounts only (not incoming
//! transfers), and `last_activity_at` is the time of the account's last event of any type.

use std::fmt::Write as _;

use crate::bank::{EventType, Status};
use chrono::{DateTime, Utc};
use rand::Rng;

/// The currencies accounts are opened in; an account stores an index into this list.
pub const CURRENCIES: [&str; 5] = ["EUR", "USD", "GBP", "CHF", "SEK"];

/// Relative weights of the currencies at opening (euro-heavy, like a European bank).
const CURRENCY_WEIGHTS: [u32; 5] = [60, 20, 10, 6, 4];

/// The first instant, in Unix microseconds, at which fees use the nested v2 payload.
pub const FEE_ENGINE_V2_SINCE_MICROS: i64 = crate::bank::FEE_ENGINE_V2_SINCE_UNIX * 1_000_000;

/// The owner text of an account: derived from its id, so the model need not store it.
pub fn owner_of(aggregate_id: i64) -> String {
    format!("cust-{aggregate_id:09}")
}

/// Whether a fee written at `ts_micros` uses the nested shape of the fee engine v2.
pub fn fee_is_nested(ts_micros: i64) -> bool {
    ts_micros >= FEE_ENGINE_V2_SINCE_MICROS
}

/// A Unix-microsecond instant as a `DateTime`.
pub fn micros_to_datetime(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).expect("generated timestamps are in range")
}

/// One account as the lab knows it to be after every event written so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountModel {
    pub aggregate_id: i64,
    /// Index into [`CURRENCIES`].
    pub currency: u8,
    pub status: Status,
    pub balance: i64,
    pub lifetime_deposits: i64,
    /// Unix microseconds of the last event.
    pub last_activity_micros: i64,
    /// Version of the last event (0 before `account_opened`).
    pub version: i32,
    /// `global_seq` of the last event.
    pub applied_seq: i64,
    /// At least one fee was written in the nested v2 shape, which projection v3 reads as zero.
    pub v3_bug: bool,
}

/// A state change of one account: one event on one aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Opened {
        currency: u8,
    },
    Deposited {
        cents: i64,
    },
    Withdrew {
        cents: i64,
    },
    FeeCharged {
        cents: i64,
    },
    Frozen,
    Unfrozen,
    Closed,
    Reopened,
    /// Money sent to account `to`; `transfer` names the pair of events.
    TransferSent {
        cents: i64,
        to: i64,
        transfer: u64,
    },
    /// Money received from account `from`; `transfer` names the pair of events.
    TransferReceived {
        cents: i64,
        from: i64,
        transfer: u64,
    },
}

impl Change {
    /// The event type that records this change.
    pub fn event_type(&self) -> EventType {
        match self {
            Change::Opened { .. } => EventType::AccountOpened,
            Change::Deposited { .. } => EventType::Deposited,
            Change::Withdrew { .. } => EventType::Withdrew,
            Change::FeeCharged { .. } => EventType::FeeCharged,
            Change::Frozen => EventType::Frozen,
            Change::Unfrozen => EventType::Unfrozen,
            Change::Closed => EventType::Closed,
            Change::Reopened => EventType::Reopened,
            Change::TransferSent { .. } => EventType::TransferSent,
            Change::TransferReceived { .. } => EventType::TransferReceived,
        }
    }
}

/// What an existing account does next, as chosen from its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A change of this account alone.
    Single(Change),
    /// A transfer of `cents` to another account, which the caller picks: a `transfer_sent`
    /// here and a `transfer_received` there, written together.
    Transfer { cents: i64 },
}

/// Relative weights of what an open account does next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    pub deposit: f64,
    pub withdraw: f64,
    pub fee: f64,
    pub transfer: f64,
    pub freeze: f64,
    pub close: f64,
}

impl Mix {
    /// The historical mix of the generator.
    pub const GENERATOR: Mix =
        Mix { deposit: 0.45, withdraw: 0.25, fee: 0.10, transfer: 0.08, freeze: 0.03, close: 0.01 };

    /// This mix with transfers making up `ratio` (0..1) of an open account's actions.
    pub fn with_transfer_ratio(self, ratio: f64) -> Mix {
        let ratio = ratio.clamp(0.0, 0.95);
        let others = self.deposit + self.withdraw + self.fee + self.freeze + self.close;
        Mix { transfer: others * ratio / (1.0 - ratio), ..self }
    }

    fn total(&self) -> f64 {
        self.deposit + self.withdraw + self.fee + self.transfer + self.freeze + self.close
    }
}

impl Default for Mix {
    fn default() -> Self {
        Mix::GENERATOR
    }
}

/// A positive amount in cents, spread over four orders of magnitude.
fn amount<R: Rng + ?Sized>(rng: &mut R, min_exp: u32, max_exp: u32) -> i64 {
    let exp = rng.gen_range(min_exp..max_exp);
    rng.gen_range(10i64.pow(exp)..10i64.pow(exp + 1))
}

/// Picks a currency for a new account.
pub fn pick_currency<R: Rng + ?Sized>(rng: &mut R) -> u8 {
    let total: u32 = CURRENCY_WEIGHTS.iter().sum();
    let mut r = rng.gen_range(0..total);
    for (i, w) in CURRENCY_WEIGHTS.iter().enumerate() {
        if r < *w {
            return i as u8;
        }
        r -= w;
    }
    0
}

impl AccountModel {
    /// An account that does not exist yet: the first change applied must be [`Change::Opened`].
    pub fn unopened(aggregate_id: i64) -> AccountModel {
        AccountModel {
            aggregate_id,
            currency: 0,
            status: Status::Open,
            balance: 0,
            lifetime_deposits: 0,
            last_activity_micros: 0,
            version: 0,
            applied_seq: 0,
            v3_bug: false,
        }
    }

    /// The currency code.
    pub fn currency_code(&self) -> &'static str {
        CURRENCIES[self.currency as usize]
    }

    /// The time of the last event.
    pub fn last_activity_at(&self) -> DateTime<Utc> {
        micros_to_datetime(self.last_activity_micros)
    }

    /// Chooses this account's next action from its state: a closed account can only be
    /// reopened, a frozen one unfrozen or charged a fee, and an open one never withdraws or
    /// sends more than its balance.
    pub fn choose<R: Rng + ?Sized>(&self, rng: &mut R, mix: &Mix) -> Action {
        match self.status {
            Status::Closed => Action::Single(Change::Reopened),
            Status::Frozen => {
                if rng.gen_bool(0.4) {
                    Action::Single(Change::Unfrozen)
                } else {
                    Action::Single(Change::FeeCharged { cents: rng.gen_range(50..=2_500) })
                }
            }
            Status::Open => {
                let deposit = Change::Deposited { cents: amount(rng, 2, 6) };
                let mut r = rng.gen::<f64>() * mix.total();
                let mut take = |w: f64| {
                    let hit = r < w;
                    r -= w;
                    hit
                };
                if take(mix.deposit) {
                    Action::Single(deposit)
                } else if take(mix.withdraw) {
                    let wanted = amount(rng, 2, 5);
                    match self.spendable(rng, wanted) {
                        Some(cents) => Action::Single(Change::Withdrew { cents }),
                        None => Action::Single(deposit),
                    }
                } else if take(mix.fee) {
                    Action::Single(Change::FeeCharged { cents: rng.gen_range(50..=2_500) })
                } else if take(mix.transfer) {
                    let wanted = amount(rng, 2, 5);
                    match self.spendable(rng, wanted) {
                        Some(cents) => Action::Transfer { cents },
                        None => Action::Single(deposit),
                    }
                } else if take(mix.freeze) {
                    Action::Single(Change::Frozen)
                } else {
                    Action::Single(Change::Closed)
                }
            }
        }
    }

    /// `wanted` if the balance covers it, else a smaller amount the balance covers, else None.
    fn spendable<R: Rng + ?Sized>(&self, rng: &mut R, wanted: i64) -> Option<i64> {
        if wanted <= self.balance {
            Some(wanted)
        } else if self.balance >= 100 {
            Some(rng.gen_range(100..=self.balance))
        } else {
            None
        }
    }

    /// Whether this account may receive a transfer.
    pub fn can_receive(&self) -> bool {
        self.version > 0 && self.status != Status::Closed
    }

    /// Records `change`, written as the next version at `ts_micros` with `global_seq` `seq`.
    pub fn apply(&mut self, change: &Change, ts_micros: i64, seq: i64) {
        match *change {
            Change::Opened { currency } => {
                self.currency = currency;
                self.status = Status::Open;
            }
            Change::Deposited { cents } => {
                self.balance += cents;
                self.lifetime_deposits += cents;
            }
            Change::Withdrew { cents } | Change::TransferSent { cents, .. } => self.balance -= cents,
            Change::TransferReceived { cents, .. } => self.balance += cents,
            Change::FeeCharged { cents } => {
                self.balance -= cents;
                if fee_is_nested(ts_micros) {
                    self.v3_bug = true;
                }
            }
            Change::Frozen => self.status = Status::Frozen,
            Change::Unfrozen | Change::Reopened => self.status = Status::Open,
            Change::Closed => self.status = Status::Closed,
        }
        self.version += 1;
        self.applied_seq = seq;
        self.last_activity_micros = ts_micros;
    }
}

const CHANNELS: [&str; 7] = ["app", "web", "branch", "sepa", "card", "atm", "api"];
const CITIES: [(&str, &str); 8] = [
    ("DE", "Berlin"),
    ("DE", "Hamburg"),
    ("FR", "Paris"),
    ("NL", "Amsterdam"),
    ("GB", "London"),
    ("ES", "Madrid"),
    ("IT", "Milan"),
    ("SE", "Stockholm"),
];
const DEPOSIT_MEMOS: [&str; 6] =
    ["salary", "cash deposit at branch", "refund", "interest payout", "savings top-up", "invoice 2231 paid"];
const MERCHANTS: [(&str, &str); 8] = [
    ("Corner Grocer", "5411"),
    ("City Transit", "4111"),
    ("Northwind Fuel", "5541"),
    ("Blue Bottle Cafe", "5814"),
    ("Pharma Plus", "5912"),
    ("Bookshop & Co", "5942"),
    ("Stream Media", "4899"),
    ("Hotel Aurora", "7011"),
];
const FEE_KINDS: [&str; 5] = ["monthly", "wire", "overdraft", "card_replacement", "fx"];
const FREEZE_REASONS: [&str; 4] = ["kyc_review", "suspected_fraud", "court_order", "customer_request"];
const CLOSE_REASONS: [&str; 3] = ["customer_request", "dormant", "bank_decision"];
const PRODUCTS: [&str; 4] = ["checking", "savings", "business", "student"];
const DEVICES: [&str; 4] = ["ios", "android", "web", "teller"];

fn pick<'a, R: Rng + ?Sized, T>(rng: &mut R, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

fn push_hex<R: Rng + ?Sized>(out: &mut String, rng: &mut R, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bits = 0u64;
    for i in 0..digits {
        if i % 16 == 0 {
            bits = rng.gen();
        }
        out.push(HEX[(bits & 15) as usize] as char);
        bits >>= 4;
    }
}

/// Appends `,"request_id":"…","channel":"…","device":"…","geo":{…}`: the envelope every
/// event carries. The request id takes five random words and prints the first (an earlier
/// generator printed all of them as a UUID), so every later draw, and with it every account,
/// amount and timestamp of the log, is what it was.
fn push_envelope<R: Rng + ?Sized>(out: &mut String, rng: &mut R) {
    let words: [u64; 5] = rng.gen();
    let (country, city) = pick(rng, &CITIES);
    let _ = write!(
        out,
        ",\"request_id\":\"{:016x}\",\"channel\":\"{}\",\"device\":\"{}\",\"geo\":{{\"country\":\"{country}\",\"city\":\"{city}\"}}",
        words[0],
        pick(rng, &CHANNELS),
        pick(rng, &DEVICES),
    );
}

fn push_reference<R: Rng + ?Sized>(out: &mut String, rng: &mut R, prefix: &str) {
    let _ = write!(out, ",\"reference\":\"{prefix}-");
    push_hex(out, rng, 16);
    out.push('"');
}

/// The JSON payload of `change` on account `aggregate_id` (whose currency is `currency`)
/// written at `ts_micros`: the fields projections read plus realistic ones they ignore, about
/// 150–300 bytes of JSON (log rows of ~360 bytes on disk on average). Fees use the top-level
/// shape before the fee engine v2 and the nested one from then on.
pub fn render_payload<R: Rng + ?Sized>(
    rng: &mut R,
    aggregate_id: i64,
    currency: u8,
    change: &Change,
    ts_micros: i64,
) -> String {
    let mut out = String::with_capacity(384);
    let cur = CURRENCIES[currency as usize];
    match *change {
        Change::Opened { currency } => {
            let _ = write!(
                out,
                "{{\"owner\":\"{}\",\"currency\":\"{}\",\"product\":\"{}\",\"branch\":\"BR-{:03}\",\"kyc_level\":{}",
                owner_of(aggregate_id),
                CURRENCIES[currency as usize],
                pick(rng, &PRODUCTS),
                rng.gen_range(1..400),
                rng.gen_range(1..=3),
            );
        }
        Change::Deposited { cents } => {
            let _ = write!(
                out,
                "{{\"amount_cents\":{cents},\"currency\":\"{cur}\",\"memo\":\"{}\",\"counterparty\":{{\"iban\":\"DE{:02}{:018}\"}}",
                pick(rng, &DEPOSIT_MEMOS),
                rng.gen_range(10..100),
                rng.gen_range(0..1_000_000_000_000_000_000u64),
            );
            push_reference(&mut out, rng, "DEP");
        }
        Change::Withdrew { cents } => {
            let (name, mcc) = pick(rng, &MERCHANTS);
            let _ = write!(
                out,
                "{{\"amount_cents\":{cents},\"currency\":\"{cur}\",\"merchant\":{{\"name\":\"{name}\",\"mcc\":\"{mcc}\"}},\"card_last4\":\"{:04}\"",
                rng.gen_range(0..10_000),
            );
            push_reference(&mut out, rng, "WDR");
        }
        Change::FeeCharged { cents } => {
            let kind = pick(rng, &FEE_KINDS);
            if fee_is_nested(ts_micros) {
                let _ = write!(
                    out,
                    "{{\"fee\":{{\"amount_cents\":{cents},\"currency\":\"{cur}\",\"kind\":\"{kind}\",\"tax_cents\":0,\"schedule\":\"v2-standard\"}},\"engine\":\"fees-v2\""
                );
            } else {
                let _ = write!(
                    out,
                    "{{\"amount_cents\":{cents},\"currency\":\"{cur}\",\"kind\":\"{kind}\",\"schedule\":\"2024-standard\""
                );
            }
            push_reference(&mut out, rng, "FEE");
        }
        Change::Frozen | Change::Closed => {
            let reason =
                if matches!(change, Change::Frozen) { pick(rng, &FREEZE_REASONS) } else { pick(rng, &CLOSE_REASONS) };
            let _ = write!(
                out,
                "{{\"reason\":\"{reason}\",\"by\":\"ops-{:03}\",\"case_id\":\"CASE-",
                rng.gen_range(1..200)
            );
            push_hex(&mut out, rng, 10);
            out.push('"');
        }
        Change::Unfrozen | Change::Reopened => {
            let _ = write!(out, "{{\"by\":\"ops-{:03}\",\"note\":\"reviewed and cleared\"", rng.gen_range(1..200));
        }
        Change::TransferSent { cents, to, transfer } => {
            let _ = write!(
                out,
                "{{\"amount_cents\":{cents},\"currency\":\"{cur}\",\"to\":{to},\"transfer_id\":\"TRF-{transfer:016x}\",\"memo\":\"transfer to {}\"",
                owner_of(to)
            );
        }
        Change::TransferReceived { cents, from, transfer } => {
            let _ = write!(
                out,
                "{{\"amount_cents\":{cents},\"currency\":\"{cur}\",\"from\":{from},\"transfer_id\":\"TRF-{transfer:016x}\",\"memo\":\"transfer from {}\"",
                owner_of(from)
            );
        }
    }
    push_envelope(&mut out, rng);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const BEFORE_V2: i64 = FEE_ENGINE_V2_SINCE_MICROS - 1;
    const AFTER_V2: i64 = FEE_ENGINE_V2_SINCE_MICROS;

    #[test]
    fn folds_a_hand_checked_history() {
        let mut a = AccountModel::unopened(7);
        let history = [
            (Change::Opened { currency: 2 }, 10),
            (Change::Deposited { cents: 10_000 }, 20),
            (Change::FeeCharged { cents: 150 }, BEFORE_V2),
            (Change::Withdrew { cents: 2_000 }, AFTER_V2),
            (Change::Frozen, AFTER_V2 + 1),
            (Change::FeeCharged { cents: 300 }, AFTER_V2 + 2),
            (Change::Unfrozen, AFTER_V2 + 3),
            (Change::TransferReceived { cents: 500, from: 3, transfer: 1 }, AFTER_V2 + 4),
            (Change::TransferSent { cents: 50, to: 3, transfer: 2 }, AFTER_V2 + 5),
            (Change::Closed, AFTER_V2 + 6),
        ];
        for (i, (change, ts)) in history.iter().enumerate() {
            a.apply(change, *ts, 100 + i as i64);
            if i == 2 {
                assert!(!a.v3_bug, "a top-level fee before the v2 engine is read correctly by v3");
            }
        }
        assert_eq!(a.balance, 10_000 - 150 - 2_000 - 300 + 500 - 50);
        assert_eq!(a.lifetime_deposits, 10_000, "incoming transfers are not deposits");
        assert_eq!(a.status, Status::Closed);
        assert_eq!(a.currency_code(), "GBP");
        assert_eq!((a.version, a.applied_seq, a.last_activity_micros), (10, 109, AFTER_V2 + 6));
        assert!(a.v3_bug, "the nested fee after the v2 engine is the v3 bug");
    }

    #[test]
    fn choices_follow_the_state() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut a = AccountModel::unopened(1);
        a.apply(&Change::Opened { currency: 0 }, 0, 1);
        for _ in 0..2_000 {
            match a.choose(&mut rng, &Mix::GENERATOR) {
                Action::Single(Change::Withdrew { cents }) | Action::Transfer { cents } => {
                    assert!(cents > 0 && cents <= a.balance, "spends {cents} of {}", a.balance)
                }
                Action::Single(Change::Opened { .. } | Change::Reopened | Change::Unfrozen) => {
                    panic!("not a choice for an open account")
                }
                _ => {}
            }
        }
        a.apply(&Change::Closed, 1, 2);
        assert_eq!(a.choose(&mut rng, &Mix::GENERATOR), Action::Single(Change::Reopened));
        a.apply(&Change::Reopened, 2, 3);
        a.apply(&Change::Frozen, 3, 4);
        for _ in 0..100 {
            let action = a.choose(&mut rng, &Mix::GENERATOR);
            assert!(
                matches!(action, Action::Single(Change::Unfrozen | Change::FeeCharged { .. })),
                "{action:?} on a frozen account"
            );
        }
    }

    #[test]
    fn payloads_decode_with_the_fold_decoder() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let changes = [
            Change::Opened { currency: 1 },
            Change::Deposited { cents: 123 },
            Change::Withdrew { cents: 45 },
            Change::FeeCharged { cents: 7 },
            Change::Frozen,
            Change::Unfrozen,
            Change::Closed,
            Change::Reopened,
            Change::TransferSent { cents: 9, to: 11, transfer: 5 },
            Change::TransferReceived { cents: 9, from: 12, transfer: 5 },
        ];
        for ts in [BEFORE_V2, AFTER_V2] {
            for change in &changes {
                let payload = render_payload(&mut rng, 42, 1, change, ts);
                assert!((120..=420).contains(&payload.len()), "{} bytes: {payload}", payload.len());
                let body =
                    crate::bank::decode(change.event_type().as_str(), &fold::Payload::Stored(payload.as_bytes()))
                        .unwrap_or_else(|e| panic!("{e}: {payload}"));
                match (change, body) {
                    (
                        Change::FeeCharged { .. },
                        crate::bank::BankEvent::FeeCharged { top_level_cents, nested_cents },
                    ) => {
                        let expected = if ts >= AFTER_V2 { (None, Some(7)) } else { (Some(7), None) };
                        assert_eq!((top_level_cents, nested_cents), expected);
                    }
                    (Change::Opened { .. }, crate::bank::BankEvent::AccountOpened { owner, currency }) => {
                        assert_eq!((owner.as_str(), currency.as_str()), ("cust-000000042", "USD"));
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn transfer_ratio_sets_the_share_of_transfers() {
        let mix = Mix::GENERATOR.with_transfer_ratio(0.25);
        assert!((mix.transfer / mix.total() - 0.25).abs() < 1e-9);
    }
}
