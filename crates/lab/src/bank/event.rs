//! The bank's events: their types and their decoding from `(type, payload)`.

use fold::{DecodeError, Payload};
use serde::Deserialize;

/// The bank's event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    AccountOpened,
    Deposited,
    Withdrew,
    FeeCharged,
    Frozen,
    Unfrozen,
    Closed,
    Reopened,
    TransferSent,
    TransferReceived,
}

impl EventType {
    /// Every known type, in a fixed order.
    pub const ALL: [EventType; 10] = [
        EventType::AccountOpened,
        EventType::Deposited,
        EventType::Withdrew,
        EventType::FeeCharged,
        EventType::Frozen,
        EventType::Unfrozen,
        EventType::Closed,
        EventType::Reopened,
        EventType::TransferSent,
        EventType::TransferReceived,
    ];

    /// The `type` column's text.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::AccountOpened => "account_opened",
            EventType::Deposited => "deposited",
            EventType::Withdrew => "withdrew",
            EventType::FeeCharged => "fee_charged",
            EventType::Frozen => "frozen",
            EventType::Unfrozen => "unfrozen",
            EventType::Closed => "closed",
            EventType::Reopened => "reopened",
            EventType::TransferSent => "transfer_sent",
            EventType::TransferReceived => "transfer_received",
        }
    }

    /// Parses the `type` column's text.
    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// The decoded, typed content of a bank event: only the fields some projection reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BankEvent {
    AccountOpened {
        owner: String,
        currency: String,
    },
    Deposited {
        amount_cents: i64,
    },
    Withdrew {
        amount_cents: i64,
    },
    /// A fee. Until the fee engine v2 release the amount was top level; since then it is
    /// nested under `fee`. Both are kept as written so each projection reads what it reads.
    FeeCharged {
        top_level_cents: Option<i64>,
        nested_cents: Option<i64>,
    },
    Frozen,
    Unfrozen,
    Closed,
    Reopened,
    TransferSent {
        amount_cents: i64,
    },
    TransferReceived {
        amount_cents: i64,
    },
}

#[derive(Deserialize)]
struct OpenedPayload {
    owner: String,
    currency: String,
}

#[derive(Deserialize)]
struct AmountPayload {
    amount_cents: i64,
}

#[derive(Deserialize)]
struct FeePayload {
    amount_cents: Option<i64>,
    fee: Option<AmountPayload>,
}

/// Payloads of types whose content no projection reads must still be JSON objects.
#[derive(Deserialize)]
struct AnyObject {}

fn parse<T: serde::de::DeserializeOwned>(event_type: EventType, payload: &Payload<'_>) -> Result<T, DecodeError> {
    payload.parse().map_err(|e| DecodeError::malformed(event_type.as_str(), e))
}

fn positive(event_type: EventType, cents: i64) -> Result<i64, DecodeError> {
    if cents > 0 {
        Ok(cents)
    } else {
        Err(DecodeError::malformed(event_type.as_str(), format!("amount_cents must be positive, got {cents}")))
    }
}

/// Decodes the `type` column and the (upcast) payload.
pub fn decode(event_type: &str, payload: &Payload<'_>) -> Result<BankEvent, DecodeError> {
    let t = EventType::parse(event_type).ok_or_else(|| DecodeError::UnknownType(event_type.to_owned()))?;
    let body = match t {
        EventType::AccountOpened => {
            let p: OpenedPayload = parse(t, payload)?;
            BankEvent::AccountOpened { owner: p.owner, currency: p.currency }
        }
        EventType::Deposited => {
            BankEvent::Deposited { amount_cents: positive(t, parse::<AmountPayload>(t, payload)?.amount_cents)? }
        }
        EventType::Withdrew => {
            BankEvent::Withdrew { amount_cents: positive(t, parse::<AmountPayload>(t, payload)?.amount_cents)? }
        }
        EventType::TransferSent => {
            BankEvent::TransferSent { amount_cents: positive(t, parse::<AmountPayload>(t, payload)?.amount_cents)? }
        }
        EventType::TransferReceived => {
            BankEvent::TransferReceived { amount_cents: positive(t, parse::<AmountPayload>(t, payload)?.amount_cents)? }
        }
        EventType::FeeCharged => {
            let p: FeePayload = parse(t, payload)?;
            let top_level_cents = p.amount_cents.map(|c| positive(t, c)).transpose()?;
            let nested_cents = p.fee.map(|f| positive(t, f.amount_cents)).transpose()?;
            if top_level_cents.is_none() && nested_cents.is_none() {
                return Err(DecodeError::malformed(t.as_str(), "neither amount_cents nor fee.amount_cents is present"));
            }
            BankEvent::FeeCharged { top_level_cents, nested_cents }
        }
        EventType::Frozen | EventType::Unfrozen | EventType::Closed | EventType::Reopened => {
            parse::<AnyObject>(t, payload)?;
            match t {
                EventType::Frozen => BankEvent::Frozen,
                EventType::Unfrozen => BankEvent::Unfrozen,
                EventType::Closed => BankEvent::Closed,
                _ => BankEvent::Reopened,
            }
        }
    };
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(event_type: &str, payload: &[u8]) -> Result<BankEvent, DecodeError> {
        super::decode(event_type, &Payload::Stored(payload))
    }

    #[test]
    fn decodes_every_known_type() {
        let cases: [(&str, &str); 10] = [
            ("account_opened", r#"{"owner":"c-1","currency":"EUR","branch":"x"}"#),
            ("deposited", r#"{"amount_cents":5,"memo":"m"}"#),
            ("withdrew", r#"{"amount_cents":5}"#),
            ("fee_charged", r#"{"fee":{"amount_cents":7,"kind":"monthly"}}"#),
            ("frozen", r#"{"reason":"kyc"}"#),
            ("unfrozen", r#"{}"#),
            ("closed", r#"{"reason":"customer"}"#),
            ("reopened", r#"{}"#),
            ("transfer_sent", r#"{"amount_cents":3,"to":9}"#),
            ("transfer_received", r#"{"amount_cents":3,"from":1}"#),
        ];
        for (t, p) in cases {
            decode(t, p.as_bytes()).unwrap_or_else(|e| panic!("{t}: {e}"));
        }
    }

    #[test]
    fn keeps_both_fee_shapes_apart() {
        let legacy = decode("fee_charged", br#"{"amount_cents":250,"kind":"wire"}"#).unwrap();
        assert_eq!(legacy, BankEvent::FeeCharged { top_level_cents: Some(250), nested_cents: None });
        let v2 = decode("fee_charged", br#"{"fee":{"amount_cents":250},"engine":"fees-v2"}"#).unwrap();
        assert_eq!(v2, BankEvent::FeeCharged { top_level_cents: None, nested_cents: Some(250) });
    }

    #[test]
    fn rejects_unknown_types_and_malformed_payloads() {
        assert_eq!(decode("teleported", b"{}"), Err(DecodeError::UnknownType("teleported".into())));
        let missing = decode("deposited", br#"{"memo":"no amount"}"#).unwrap_err();
        assert!(missing.to_string().contains("malformed deposited payload"), "{missing}");
        let negative = decode("withdrew", br#"{"amount_cents":-4}"#).unwrap_err();
        assert!(negative.to_string().contains("must be positive"), "{negative}");
        assert!(decode("fee_charged", br#"{"kind":"wire"}"#).is_err());
        assert!(decode("frozen", b"[1,2]").is_err());
        assert!(decode("deposited", b"not json").is_err());
    }
}
