//! The harness: a fresh database with a log of generated accounts, read tables built by
//! folding that log in the test (v3 active, v4 ready), and the API served on 127.0.0.1:0.

use std::collections::HashMap;
use std::net::SocketAddr;

use chrono::{DateTime, Duration, Utc};
use eventlog::{NewEvent, Position, RawEvent};
use fold::{Projection, Row};
use lab::bank::{V3, V4};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio_postgres::Client;

/// Partitions of the test log: more than one, so positions are compared per partition.
pub const PARTITIONS: u32 = 4;

/// The admin token the fixture's API is started with; [`Fixture::post`] sends it.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub struct Fixture {
    pub client: Client,
    /// The database's URL.
    pub url: String,
    pub base: String,
    pub http: reqwest::Client,
    /// Aggregates 1..=n exist.
    pub n: i64,
    /// Dropping it stops the server.
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

/// A history for aggregates `ids`: opened, then a seeded mix of every event type, with
/// timestamps rising per aggregate from 2024-01-01 and crossing the fee engine v2 date, so
/// each aggregate's fees come in both shapes and v3 and v4 disagree on every balance.
pub fn history(ids: std::ops::RangeInclusive<i64>, seed: u64) -> Vec<NewEvent> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let v2 = lab::bank::fee_engine_v2_since();
    let mut per_aggregate: Vec<Vec<NewEvent>> = Vec::new();
    for id in ids {
        let mut events = Vec::new();
        let mut ts = at("2024-01-01T00:00:00Z") + Duration::minutes(rng.gen_range(0..10_000));
        let push = |events: &mut Vec<NewEvent>, ts: DateTime<Utc>, t: &str, payload: String| {
            let version = events.len() as i32 + 1;
            events.push(NewEvent { aggregate_id: id.into(), version, event_type: t.into(), ts, payload });
        };
        push(&mut events, ts, "account_opened", format!(r#"{{"owner":"c-{id}","currency":"EUR"}}"#));
        let mut frozen = false;
        let len = rng.gen_range(4..14);
        for k in 0..len {
            // The last two events straddle the fee engine switch: a legacy fee before it and a
            // nested one after it.
            ts = if k == len - 1 {
                ts.max(v2) + Duration::days(rng.gen_range(1..90))
            } else {
                ts + Duration::hours(rng.gen_range(1..2_000))
            };
            let cents = rng.gen_range(1..50_000);
            let (t, payload) = if k == len - 1 {
                ("fee_charged", format!(r#"{{"fee":{{"amount_cents":{}}},"engine":"fees-v2"}}"#, 100 + id))
            } else if k == len - 2 || (ts < v2 && rng.gen_bool(0.1)) {
                ("fee_charged", format!(r#"{{"amount_cents":{}}}"#, 50 + id))
            } else {
                match rng.gen_range(0..6) {
                    0 | 1 => ("deposited", format!(r#"{{"amount_cents":{cents}}}"#)),
                    2 => ("withdrew", format!(r#"{{"amount_cents":{cents}}}"#)),
                    3 => ("transfer_sent", format!(r#"{{"amount_cents":{cents},"to":1}}"#)),
                    4 => ("transfer_received", format!(r#"{{"amount_cents":{cents},"from":2}}"#)),
                    _ => {
                        frozen = !frozen;
                        (if frozen { "frozen" } else { "unfrozen" }, r#"{"reason":"kyc"}"#.to_owned())
                    }
                }
            };
            push(&mut events, ts, t, payload);
        }
        per_aggregate.push(events);
    }
    // Interleave the aggregates by timestamp, as a live system would append them.
    let mut all: Vec<NewEvent> = per_aggregate.into_iter().flatten().collect();
    all.sort_by(|a, b| (a.ts, &a.aggregate_id, a.version).cmp(&(b.ts, &b.aggregate_id, b.version)));
    all
}

/// Appends `events` in one transaction.
pub async fn append(client: &mut Client, events: &[NewEvent]) {
    let tx = client.transaction().await.unwrap();
    for e in events {
        eventlog::append_event(&tx, e).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// Every event of aggregates `1..=n` (version order per aggregate).
pub async fn log_events(client: &Client, n: i64) -> HashMap<i64, Vec<RawEvent>> {
    let mut out = HashMap::new();
    for id in 1..=n {
        out.insert(
            id,
            eventlog::aggregate_events(client, &fold::AggregateId::from(id), DateTime::<Utc>::MAX_UTC, i64::MAX)
                .await
                .unwrap(),
        );
    }
    out
}

/// The state `projection` folds for each aggregate from its whole history.
pub async fn expected<P: Projection>(client: &Client, projection: &P, n: i64) -> HashMap<i64, Row<P::State>> {
    log_events(client, n)
        .await
        .into_iter()
        .map(|(id, events)| {
            let row =
                fold::fold_from(projection, None, events.iter().map(|e| e.decode(projection).unwrap())).unwrap().row;
            (id, row.unwrap())
        })
        .collect()
}

/// The head of each partition of the log.
async fn heads(client: &Client) -> Vec<Position> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        let sql = format!(
            "SELECT tx_id, global_seq FROM log.{} ORDER BY tx_id DESC, global_seq DESC LIMIT 1",
            eventlog::partition_table(p)
        );
        out.push(
            client
                .query_opt(&sql, &[])
                .await
                .unwrap()
                .map_or(Position::START, |r| Position { tx: r.get(0), seq: r.get(1) }),
        );
    }
    out
}

/// Brings `projection`'s table up to the head of the log: folds every aggregate in Rust and
/// commits the rows with every partition's head position, in one tail batch.
pub async fn project<P: Projection>(client: &mut Client, projection: &P, n: i64) {
    let rows: Vec<Row<P::State>> = expected(client, projection, n).await.into_values().collect();
    let before = readmodel::offsets(&*client, projection.name()).await.unwrap();
    let heads = heads(client).await;
    let mut offsets = Vec::new();
    for (p, (from, to)) in before.iter().zip(&heads).enumerate() {
        // Nothing appends while a test projects, so the lag past `from` is what this folds.
        let sql = format!(
            "SELECT count(*) FROM log.{} WHERE (tx_id, global_seq) > ($1, $2)",
            eventlog::partition_table(p as u32)
        );
        let applied: i64 = client.query_one(&sql, &[&from.tx, &from.seq]).await.unwrap().get(0);
        offsets.push((p as u32, *to.max(from), applied));
    }
    let batch = readmodel::TailBatch {
        projection: projection.clone(),
        rows,
        offsets,
        held: None,
        dead_letters: Vec::new(),
        marks: Vec::new(),
        unmarked: Vec::new(),
    };
    readmodel::commit_tail_batch(client, &batch).await.unwrap();
}

/// Registers `projection`, builds its table to the head of the log and marks it ready.
pub async fn build<P: Projection>(client: &mut Client, projection: &P, n: i64) {
    readmodel::register(client, projection, readmodel::State::Building, PARTITIONS).await.unwrap();
    readmodel::add_primary_key(client, projection).await.unwrap();
    project(client, projection, n).await;
    readmodel::set_state(&*client, projection.name(), readmodel::State::Ready).await.unwrap();
}

/// A log of `n` accounts; v3 built and active; v4 built and ready when `with_v4`; the API
/// serving it through `api::serve` on a free loopback port.
pub async fn fixture(n: i64, with_v4: bool) -> Fixture {
    let url = pgharness::throwaway().fresh_database();
    let mut client = eventlog::connect(&url).await.unwrap();
    eventlog::create(&mut client, PARTITIONS, fold::IdKind::Bigint).await.unwrap();
    eventlog::ensure_indexes(&client).await.unwrap();
    readmodel::ensure_schema(&mut client).await.unwrap();
    append(&mut client, &history(1..=n, n as u64)).await;
    build(&mut client, &V3, n).await;
    readmodel::cutover(&mut client, "v3").await.unwrap();
    if with_v4 {
        build(&mut client, &V4, n).await;
    }
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let (ready, addr) = tokio::sync::oneshot::channel::<SocketAddr>();
    let mut config = api::ApiConfig::new(url.clone(), "127.0.0.1:0".parse().unwrap(), 4, lab::catalog::projections());
    config.default_family = Some("accounts".into());
    config.admin_token = Some(api::AdminToken::new(ADMIN_TOKEN).unwrap());
    tokio::spawn(async move {
        let stop = async move {
            let _ = stop.await;
        };
        api::serve(&config, stop, move |a| ready.send(a).unwrap()).await.unwrap();
    });
    let addr = addr.await.expect("the server starts");
    Fixture { client, url, base: format!("http://{addr}"), http: reqwest::Client::new(), n, _shutdown: shutdown }
}

/// Serves `config` (its listen address on a free loopback port) in the background; the server
/// runs until the returned sender is dropped. Returns the base URL.
pub async fn serve(mut config: api::ApiConfig) -> (String, tokio::sync::oneshot::Sender<()>) {
    config.listen = "127.0.0.1:0".parse().unwrap();
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let (ready, addr) = tokio::sync::oneshot::channel::<SocketAddr>();
    tokio::spawn(async move {
        let stop = async move {
            let _ = stop.await;
        };
        api::serve(&config, stop, move |a| ready.send(a).unwrap()).await.unwrap();
    });
    (format!("http://{}", addr.await.expect("the server starts")), shutdown)
}

impl Fixture {
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// POSTs a JSON `body` with the admin token.
    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.post_as(path, body, Some(ADMIN_TOKEN)).await
    }

    /// POSTs a JSON `body` with `token` as the bearer token, or with no `Authorization`.
    pub async fn post_as(&self, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

/// Asserts that a served row (current or as-of) is exactly `row` as `projection` stores it:
/// every column of its table, by name, plus the version that served it.
pub fn assert_row<P: Projection>(body: &Value, projection: &P, row: &Row<P::State>, context: &str) {
    assert_eq!(body["projection_version"], projection.name(), "{context}: {body}");
    for (column, want) in fold::row_json(projection, row) {
        assert_eq!(body[&column], want, "{context}: column {column}: {body}");
    }
    let columns = fold::AnyProjection::all_columns(projection);
    let known = |k: &str| columns.iter().any(|c| c.name == k);
    if let Some(object) = body.as_object() {
        let stored: Vec<&String> = object.keys().filter(|k| known(k)).collect();
        assert_eq!(stored.len(), columns.len(), "{context}: exactly the table's columns: {body}");
    }
}

/// The sum of a counter's samples whose labels contain every one of `labels`.
pub fn counter(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
