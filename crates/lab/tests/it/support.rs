//! Test harness: fresh databases, small seeded logs, and an independent fold of the log.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lab::SeedConfig;
use tokio_postgres::Client;

/// A fresh empty database: its URL and a client.
pub async fn fresh() -> (String, Client) {
    let url = pgharness::throwaway().fresh_database();
    let client = eventlog::connect(&url).await.expect("connect");
    (url, client)
}

/// The small config the tests seed: 20k events, 2k aggregates, 4 partitions, 5k-event chunks.
pub fn small(seed: u64) -> SeedConfig {
    SeedConfig { partitions: 4, chunk_events: 5_000, ..SeedConfig::new(20_000, 2_000, seed) }
}

/// A fresh database seeded with `cfg`.
pub async fn seeded(cfg: SeedConfig) -> (String, Client) {
    let (url, client) = fresh().await;
    let report = lab::seed::run(&url, cfg).await.expect("seed");
    assert!(report.complete, "{report:?}");
    (url, client)
}

/// One account's state as the tests compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub owner: String,
    pub currency: String,
    pub status: String,
    pub balance: i64,
    pub lifetime_deposits: i64,
    pub last_activity_at: DateTime<Utc>,
    pub version: i32,
    pub applied_seq: i64,
    pub v3_bug: bool,
}

/// A tiny fold of the whole log written for the tests alone: JSON by hand, no `fold`, no
/// `lab::model`. Fails the test on a gap in versions.
pub async fn hand_fold(client: &Client) -> BTreeMap<i64, Row> {
    let rows = client
        .query(
            "SELECT aggregate_id, version, type, ts, payload::TEXT, global_seq FROM log.events \
             ORDER BY aggregate_id, version",
            &[],
        )
        .await
        .unwrap();
    let mut out: BTreeMap<i64, Row> = BTreeMap::new();
    for r in rows {
        let (id, version, kind, ts, payload, seq): (i64, i32, String, DateTime<Utc>, String, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        let p: serde_json::Value = serde_json::from_str(&payload).unwrap();
        let cents = |v: &serde_json::Value| v["amount_cents"].as_i64().unwrap_or_else(|| panic!("{id}/{version}: {p}"));
        if kind == "account_opened" {
            assert_eq!(version, 1, "aggregate {id} opened at version {version}");
            out.insert(
                id,
                Row {
                    owner: p["owner"].as_str().unwrap().into(),
                    currency: p["currency"].as_str().unwrap().into(),
                    status: "open".into(),
                    balance: 0,
                    lifetime_deposits: 0,
                    last_activity_at: ts,
                    version: 1,
                    applied_seq: seq,
                    v3_bug: false,
                },
            );
            continue;
        }
        let a = out.get_mut(&id).unwrap_or_else(|| panic!("aggregate {id} has events before its opening"));
        assert_eq!(version, a.version + 1, "aggregate {id}: version gap");
        match kind.as_str() {
            "deposited" => {
                a.balance += cents(&p);
                a.lifetime_deposits += cents(&p);
            }
            "withdrew" | "transfer_sent" => a.balance -= cents(&p),
            "transfer_received" => a.balance += cents(&p),
            "fee_charged" => {
                if p.get("fee").is_some() {
                    a.balance -= cents(&p["fee"]);
                    a.v3_bug = true;
                } else {
                    a.balance -= cents(&p);
                }
            }
            "frozen" => a.status = "frozen".into(),
            "unfrozen" | "reopened" => a.status = "open".into(),
            "closed" => a.status = "closed".into(),
            other => panic!("unknown type {other}"),
        }
        a.version = version;
        a.applied_seq = seq;
        a.last_activity_at = ts;
    }
    out
}

/// `lab.expected_accounts`, keyed by aggregate.
pub async fn expected(client: &Client) -> BTreeMap<i64, Row> {
    let rows = client
        .query(
            "SELECT aggregate_id, owner, currency, status, balance, lifetime_deposits, last_activity_at, \
             aggregate_version, applied_seq, v3_bug FROM lab.expected_accounts",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.get(0),
                Row {
                    owner: r.get(1),
                    currency: r.get(2),
                    status: r.get(3),
                    balance: r.get(4),
                    lifetime_deposits: r.get(5),
                    last_activity_at: r.get(6),
                    version: r.get(7),
                    applied_seq: r.get(8),
                    v3_bug: r.get(9),
                },
            )
        })
        .collect()
}

/// Asserts two states are equal aggregate by aggregate, naming the first difference.
pub fn assert_same(expected: &BTreeMap<i64, Row>, folded: &BTreeMap<i64, Row>) {
    for (id, e) in expected {
        assert_eq!(Some(e), folded.get(id), "aggregate {id}: expected vs fold of the log");
    }
    assert_eq!(expected.len(), folded.len(), "aggregate counts");
}

/// A checksum of the log's content (everything but `tx_id`, which differs between databases).
pub async fn log_checksum(client: &Client) -> String {
    client
        .query_one(
            "SELECT md5(string_agg(concat_ws('|', global_seq, aggregate_id, version, type, \
             (extract(epoch FROM ts) * 1000000)::BIGINT, payload::TEXT), E'\\n' ORDER BY global_seq)) FROM log.events",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// A checksum of `lab.expected_accounts`.
pub async fn expected_checksum(client: &Client) -> String {
    client
        .query_one("SELECT md5(string_agg(e::TEXT, E'\\n' ORDER BY aggregate_id)) FROM lab.expected_accounts AS e", &[])
        .await
        .unwrap()
        .get(0)
}

/// Builds `read.<table>` of `projection` by folding the whole log with the product's fold, as a
/// projector would (without the projector crates, so these tests stand alone).
pub async fn project<P: fold::Projection>(client: &Client, projection: &P) {
    let rows = client
        .query(
            "SELECT global_seq, aggregate_id, version, type, ts, payload::TEXT FROM log.events \
             ORDER BY aggregate_id, version",
            &[],
        )
        .await
        .unwrap();
    let mut streams: BTreeMap<fold::AggregateId, fold::Guarded<P>> = BTreeMap::new();
    for r in rows {
        let kind: String = r.get(3);
        let payload: String = r.get(5);
        let meta =
            fold::Meta { global_seq: r.get(0), aggregate_id: r.get(1), aggregate_version: r.get(2), ts: r.get(4) };
        let id = meta.aggregate_id.clone();
        let event = fold::decode_event(projection, meta, &kind, payload.as_bytes()).unwrap();
        streams.entry(id).or_default().offer(projection, event).unwrap();
    }
    let json: Vec<serde_json::Value> = streams
        .values()
        .filter_map(|s| s.row.as_ref())
        .map(|row| serde_json::Value::Object(fold::row_json(projection, row)))
        .collect();
    let columns: Vec<String> = fold::AnyProjection::all_columns(projection)
        .iter()
        .map(|c| format!("{} {}", c.name, c.ty.sql(fold::IdKind::Bigint)))
        .collect();
    let table = format!("read.\"{}\"", projection.table());
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS read; DROP TABLE IF EXISTS {table}; \
             CREATE TABLE {table} ({}, PRIMARY KEY (aggregate_id))",
            columns.join(", ")
        ))
        .await
        .unwrap();
    client
        .execute(
            &format!("INSERT INTO {table} SELECT * FROM jsonb_populate_recordset(NULL::{table}, $1::TEXT::JSONB)"),
            &[&serde_json::Value::Array(json).to_string()],
        )
        .await
        .unwrap();
}
