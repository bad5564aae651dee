//! The app's side of the example: its own events table (its names, its id type) and its
//! writer, which appends orders with optimistic concurrency on `(stream, version)` as an
//! event-sourced app does. reproject is not involved here: this is what exists before it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reproject::IdKind;
use tokio_postgres::Client;

/// The app's events table: its name, its columns' names, and the type of its stream ids.
#[derive(Debug, Clone)]
pub struct AppTable {
    pub table: String,
    pub id_column: String,
    pub version_column: String,
    pub type_column: String,
    pub data_column: String,
    pub ts_column: String,
    pub ids: IdKind,
    /// The app's first version of a stream (1, or 0 for stores that count from 0).
    pub first_version: i32,
}

impl AppTable {
    /// `app_events(event_id, stream_id uuid, stream_version, event_type, data jsonb,
    /// recorded_at)`: the shape the example's app has.
    pub fn uuid() -> AppTable {
        AppTable {
            table: "app_events".into(),
            id_column: "stream_id".into(),
            version_column: "stream_version".into(),
            type_column: "event_type".into(),
            data_column: "data".into(),
            ts_column: "recorded_at".into(),
            ids: IdKind::Uuid,
            first_version: 1,
        }
    }

    /// Another app's table: text ids (`order-42`), other names, versions from 0, `json` data.
    pub fn text() -> AppTable {
        AppTable {
            table: "shop_events".into(),
            id_column: "aggregate".into(),
            version_column: "seq_in_aggregate".into(),
            type_column: "kind".into(),
            data_column: "body".into(),
            ts_column: "occurred_at".into(),
            ids: IdKind::Text,
            first_version: 0,
        }
    }

    /// The table's DDL, with the unique (stream, version) every event store has.
    pub fn create_sql(&self) -> String {
        let (id_type, data_type) = match self.ids {
            IdKind::Uuid => ("UUID", "JSONB"),
            IdKind::Text => ("TEXT", "JSON"),
            IdKind::Bigint => ("BIGINT", "JSONB"),
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {t} (event_id UUID PRIMARY KEY DEFAULT gen_random_uuid(), \
             {id} {id_type} NOT NULL, {v} INT NOT NULL, {ty} TEXT NOT NULL, {d} {data_type} NOT NULL, \
             {ts} TIMESTAMPTZ NOT NULL DEFAULT now(), UNIQUE ({id}, {v}))",
            t = self.table,
            id = self.id_column,
            v = self.version_column,
            ty = self.type_column,
            d = self.data_column,
            ts = self.ts_column,
        )
    }

    /// The flags `reproject adopt` takes for this table.
    pub fn adopt_flags(&self) -> Vec<String> {
        [
            ("--table", self.table.clone()),
            ("--id", self.id_column.clone()),
            ("--version", self.version_column.clone()),
            ("--type", self.type_column.clone()),
            ("--data", self.data_column.clone()),
            ("--ts", self.ts_column.clone()),
            ("--first-version", self.first_version.to_string()),
        ]
        .into_iter()
        .flat_map(|(f, v)| [f.to_owned(), v])
        .collect()
    }

    /// The stream id of order `n`, as this table keys it.
    pub fn stream(&self, n: u64) -> String {
        match self.ids {
            IdKind::Uuid => reproject::Uuid::from_u64_pair(0x6f72_6465_7273, n).hyphenated().to_string(),
            IdKind::Text => format!("order-{n}"),
            IdKind::Bigint => n.to_string(),
        }
    }
}

/// One event the writer appends.
#[derive(Debug, Clone)]
pub struct AppEvent {
    pub stream: String,
    /// The stream's version in the app's numbering.
    pub version: i32,
    pub event_type: &'static str,
    pub data: serde_json::Value,
}

/// Where one order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Shopping,
    Paid,
    Done,
}

/// One open order: its next version (the app's numbering), its stage, the lines in its cart
/// (SKU and unit price).
#[derive(Debug, Clone)]
struct OpenOrder {
    next_version: i32,
    stage: Stage,
    cart: Vec<(String, i64)>,
}

/// The app's writer: orders that get placed, filled, paid, shipped (or cancelled), with notes
/// once `notes` is on (the type the app adds later). Deterministic for a seed.
pub struct Writer {
    table: AppTable,
    rng: ChaCha8Rng,
    orders: HashMap<u64, OpenOrder>,
    next_order: u64,
    /// How many orders are open at once.
    open: usize,
    pub notes: bool,
}

impl Writer {
    /// A writer for `table`, keeping about `open` orders in flight.
    pub fn new(table: AppTable, seed: u64, open: usize) -> Writer {
        Writer {
            table,
            rng: ChaCha8Rng::seed_from_u64(seed),
            orders: HashMap::new(),
            next_order: 1,
            open,
            notes: false,
        }
    }

    /// Numbers new orders from `first` on (runs that must not collide take disjoint ranges).
    pub fn starting_at(mut self, first: u64) -> Writer {
        self.next_order = first.max(1);
        self
    }

    /// The next `n` events, across the open orders (new ones placed as others finish).
    pub fn next_events(&mut self, n: usize) -> Vec<AppEvent> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if self.orders.len() < self.open {
                let id = self.next_order;
                self.next_order += 1;
                let order =
                    OpenOrder { next_version: self.table.first_version, stage: Stage::Shopping, cart: Vec::new() };
                self.orders.insert(id, order);
                let customer = format!("c-{}", self.rng.gen_range(1..5_000));
                out.push(self.event(id, "order_placed", serde_json::json!({ "customer": customer })));
                continue;
            }
            let pick = self.rng.gen_range(0..self.orders.len());
            let id = *self.orders.keys().nth(pick).expect("pick is in range");
            let OpenOrder { stage, cart, .. } = self.orders[&id].clone();
            let roll = self.rng.gen_range(0..100);
            let event = match stage {
                Stage::Shopping if roll < 10 && self.notes => {
                    ("order_note_added", serde_json::json!({ "text": format!("note {roll}") }))
                }
                Stage::Shopping if roll < 65 || cart.is_empty() => {
                    let sku = format!("SKU-{}", self.rng.gen_range(100..160));
                    let price = self.rng.gen_range(99..20_000);
                    let qty = self.rng.gen_range(1..4);
                    self.orders.get_mut(&id).expect("open").cart.push((sku.clone(), price));
                    ("item_added", serde_json::json!({ "sku": sku, "qty": qty, "price_cents": price }))
                }
                Stage::Shopping if roll < 75 => {
                    let (sku, price) = cart[self.rng.gen_range(0..cart.len())].clone();
                    ("item_removed", serde_json::json!({ "sku": sku, "qty": 1, "price_cents": price }))
                }
                Stage::Shopping if roll < 80 => {
                    self.orders.get_mut(&id).expect("open").stage = Stage::Done;
                    ("order_cancelled", serde_json::json!({ "reason": "changed mind" }))
                }
                Stage::Shopping => {
                    self.orders.get_mut(&id).expect("open").stage = Stage::Paid;
                    ("order_paid", serde_json::json!({}))
                }
                Stage::Paid if roll < 20 && self.notes => {
                    ("order_note_added", serde_json::json!({ "text": "ship fast" }))
                }
                Stage::Paid => {
                    self.orders.get_mut(&id).expect("open").stage = Stage::Done;
                    ("order_shipped", serde_json::json!({ "carrier": "dhl" }))
                }
                Stage::Done => unreachable!("finished orders are removed"),
            };
            out.push(self.event(id, event.0, event.1));
            if self.orders[&id].stage == Stage::Done {
                self.orders.remove(&id);
            }
        }
        out
    }

    /// One event of order `id` at its next version (a removal keeps its line's quantity
    /// honest: only what was added is removed, once).
    fn event(&mut self, id: u64, event_type: &'static str, data: serde_json::Value) -> AppEvent {
        let order = self.orders.get_mut(&id).expect("an open order");
        let version = order.next_version;
        order.next_version += 1;
        if event_type == "item_removed" {
            let sku = data["sku"].as_str().unwrap_or_default().to_owned();
            if let Some(i) = order.cart.iter().position(|(s, _)| *s == sku) {
                order.cart.remove(i);
            }
        }
        AppEvent { stream: self.table.stream(id), version, event_type, data }
    }

    /// Appends `events` in one transaction, as the app does (one INSERT of many rows); returns
    /// how long it took. `native`: into reproject's `log.events` instead of the app's table.
    pub async fn insert(
        &self,
        client: &Client,
        events: &[AppEvent],
        native: bool,
    ) -> Result<Duration, tokio_postgres::Error> {
        let t = &self.table;
        let id_type = match t.ids {
            IdKind::Uuid => "UUID",
            IdKind::Text => "TEXT",
            IdKind::Bigint => "BIGINT",
        };
        // The log numbers versions from 1; the app from `first_version`.
        let shift = if native { 1 - t.first_version } else { 0 };
        let sql = if native {
            format!(
                "INSERT INTO log.events (aggregate_id, version, type, payload, ts) \
                 SELECT s::{id_type}, v, t, d::JSONB, $5 FROM unnest($1::TEXT[], $2::INT[], $3::TEXT[], $4::TEXT[]) \
                 WITH ORDINALITY AS e(s, v, t, d, n) ORDER BY n"
            )
        } else {
            format!(
                "INSERT INTO {} ({}, {}, {}, {}, {}) \
                 SELECT s::{id_type}, v, t, d::JSONB, $5 FROM unnest($1::TEXT[], $2::INT[], $3::TEXT[], $4::TEXT[]) \
                 WITH ORDINALITY AS e(s, v, t, d, n) ORDER BY n",
                t.table, t.id_column, t.version_column, t.type_column, t.data_column, t.ts_column
            )
        };
        let streams: Vec<&str> = events.iter().map(|e| e.stream.as_str()).collect();
        let versions: Vec<i32> = events.iter().map(|e| e.version + shift).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type).collect();
        let data: Vec<String> = events.iter().map(|e| e.data.to_string()).collect();
        let started = Instant::now();
        client.execute(&sql, &[&streams, &versions, &types, &data, &Utc::now()]).await?;
        Ok(started.elapsed())
    }
}

/// The expected state of every order, folded in SQL straight from the app's table
/// (independently of the projections' Rust fold): `(stream, status, item_count, total, items)`
/// for `orders_v1`'s columns, the check the example and the tests compare the read model with.
pub fn expected_orders_sql(t: &AppTable) -> String {
    format!(
        "WITH e AS (SELECT {id}::TEXT AS stream, {v} AS version, {ty} AS type, {d}::JSONB AS data FROM {table}), \
         status AS (SELECT DISTINCT ON (stream) stream, \
                      CASE type WHEN 'order_placed' THEN 'placed' WHEN 'order_paid' THEN 'paid' \
                                WHEN 'order_shipped' THEN 'shipped' ELSE 'cancelled' END AS status \
                    FROM e WHERE type IN ('order_placed', 'order_paid', 'order_shipped', 'order_cancelled') \
                    ORDER BY stream, version DESC), \
         lines AS (SELECT stream, data ->> 'sku' AS sku, \
                          sum(CASE type WHEN 'item_added' THEN 1 ELSE -1 END * (data ->> 'qty')::BIGINT) AS qty, \
                          sum(CASE type WHEN 'item_added' THEN 1 ELSE -1 END * (data ->> 'qty')::BIGINT \
                              * (data ->> 'price_cents')::BIGINT) AS cents \
                   FROM e WHERE type IN ('item_added', 'item_removed') GROUP BY 1, 2) \
         SELECT s.stream, s.status, coalesce(sum(l.qty), 0)::BIGINT AS item_count, \
                (coalesce(sum(l.cents), 0)::NUMERIC / 100)::NUMERIC AS total, \
                coalesce(jsonb_object_agg(l.sku, l.qty) FILTER (WHERE l.qty > 0), '{{}}') AS items \
         FROM status s LEFT JOIN lines l USING (stream) GROUP BY s.stream, s.status",
        id = t.id_column,
        v = t.version_column,
        ty = t.type_column,
        d = t.data_column,
        table = t.table,
    )
}
