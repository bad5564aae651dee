//! One event as a Kafka record. Key: the aggregate id as text (decimal digits, a uuid's
//! hyphenated form, or the text id itself; so murmur2 of the key puts all of an aggregate's
//! events in one partition, in the order they were written). Value: a JSON envelope,
//!
//! ```json
//! {"seq": 17, "version": 3, "type": "Deposited", "ts": "2024-01-01T00:00:00Z",
//!  "payload": {...}, "state": {...}}
//! ```
//!
//! where `seq` is the event's `global_seq` in the event store (the projector's `applied_seq`),
//! and `state`, only in a state-carrying topic (experiment 7), is the aggregate's row after the
//! event. Extra fields are ignored; a missing or mistyped one is a [`Error::BadRecord`].

use chrono::{DateTime, Utc};
use eventlog::RawEvent;
use fold::IdKind;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{Error, Result};

/// A record's key and value, ready to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub value: String,
}

/// Encodes `event` (and, for a state-carrying topic, the aggregate's row after it).
pub fn encode(event: &RawEvent, state: Option<&serde_json::Map<String, serde_json::Value>>) -> Record {
    let payload = std::str::from_utf8(&event.payload).unwrap_or("null");
    let mut value = format!(
        "{{\"seq\":{},\"version\":{},\"type\":{},\"ts\":\"{}\",\"payload\":{}",
        event.global_seq,
        event.version,
        serde_json::Value::from(event.event_type.as_str()),
        event.ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        payload
    );
    if let Some(state) = state {
        value.push_str(",\"state\":");
        value.push_str(&serde_json::to_string(state).expect("a JSON map serializes"));
    }
    value.push('}');
    Record { key: event.aggregate_id.to_string(), value }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    seq: i64,
    version: i32,
    #[serde(rename = "type")]
    event_type: String,
    ts: DateTime<Utc>,
    #[serde(borrow)]
    payload: &'a RawValue,
    #[serde(borrow, default)]
    state: Option<&'a RawValue>,
}

/// A decoded record: the event (its `tx_id` is the record's offset) and the state it carries,
/// if any.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub event: RawEvent,
    pub state: Option<serde_json::Value>,
}

/// Decodes the record at `partition`/`offset` of a topic mirroring a log of `id` stream ids.
pub fn decode(partition: u32, offset: i64, id: IdKind, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Decoded> {
    let bad = |reason: String| Error::BadRecord { partition, offset, reason };
    let key = key.ok_or_else(|| bad("no key (expected the aggregate id)".into()))?;
    let aggregate_id = std::str::from_utf8(key)
        .map_err(|_| bad(format!("key {:?} is not UTF-8", String::from_utf8_lossy(key))))
        .and_then(|k| id.parse(k).map_err(|e| bad(format!("key {e}"))))?;
    let value = value.ok_or_else(|| bad("no value (a tombstone?)".into()))?;
    let e: Envelope<'_> = serde_json::from_slice(value).map_err(|e| bad(format!("value: {e}")))?;
    let state = match e.state {
        Some(raw) => Some(serde_json::from_str(raw.get()).map_err(|e| bad(format!("state: {e}")))?),
        None => None,
    };
    Ok(Decoded {
        event: RawEvent {
            global_seq: e.seq,
            aggregate_id,
            version: e.version,
            event_type: e.event_type,
            ts: e.ts,
            payload: e.payload.get().as_bytes().to_vec(),
            tx_id: offset,
        },
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event() -> RawEvent {
        RawEvent {
            global_seq: 17,
            aggregate_id: 42.into(),
            version: 3,
            event_type: "Deposited".into(),
            ts: Utc.timestamp_micros(1_700_000_000_123_456).unwrap(),
            payload: br#"{"amount_cents": 500}"#.to_vec(),
            tx_id: 999,
        }
    }

    #[test]
    fn an_event_survives_the_record_round_trip() {
        let e = event();
        let r = encode(&e, None);
        assert_eq!(r.key, "42");
        let d = decode(3, 55, IdKind::Bigint, Some(r.key.as_bytes()), Some(r.value.as_bytes())).unwrap();
        assert_eq!(d.event, RawEvent { tx_id: 55, ..e.clone() });
        assert!(d.state.is_none());
        let mut state = serde_json::Map::new();
        state.insert("balance_cents".into(), 500.into());
        let r = encode(&e, Some(&state));
        let d = decode(3, 56, IdKind::Bigint, Some(r.key.as_bytes()), Some(r.value.as_bytes())).unwrap();
        assert_eq!(d.state.unwrap()["balance_cents"], 500);
    }

    #[test]
    fn a_uuid_key_is_its_text() {
        let e = RawEvent { aggregate_id: fold::AggregateId::Uuid(fold::Uuid::from_u128(5)), ..event() };
        let r = encode(&e, None);
        assert_eq!(r.key, "00000000-0000-0000-0000-000000000005");
        let d = decode(0, 1, IdKind::Uuid, Some(r.key.as_bytes()), Some(r.value.as_bytes())).unwrap();
        assert_eq!(d.event.aggregate_id, e.aggregate_id);
        assert!(decode(0, 1, IdKind::Bigint, Some(r.key.as_bytes()), Some(r.value.as_bytes())).is_err());
    }

    #[test]
    fn bad_records_name_their_place_and_fault() {
        let r = encode(&event(), None);
        let e = decode(1, 7, IdKind::Bigint, Some(b"x"), Some(r.value.as_bytes())).unwrap_err().to_string();
        assert!(e.contains("partition 1 offset 7") && e.contains("\"x\""), "{e}");
        let e = decode(1, 8, IdKind::Bigint, Some(b"42"), None).unwrap_err().to_string();
        assert!(e.contains("tombstone"), "{e}");
        let e = decode(1, 9, IdKind::Bigint, Some(b"42"), Some(br#"{"seq":1}"#)).unwrap_err().to_string();
        assert!(e.contains("offset 9") && e.contains("missing field"), "{e}");
    }
}
