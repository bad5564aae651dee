//! An app's read model, as an adopter writes it with reproject: orders keyed by uuid, in the
//! app's own `app_events` table, folded into two versions of the `orders` read model.
//!
//! `orders_v1` shows each order's customer, status, items (a JSON map, served as JSON) and
//! total (an exact decimal). `orders_v2` adds the notes (`order_note_added`, a type the app
//! added after v1 shipped: v1 skips it) and when the order was placed. Both use only the
//! `reproject` facade: the trait, `#[derive(RowCodec)]`, the envelope types.
//!
//! [`app`] is the app's side: its table and its writer, used by the example's script and by
//! reproject's own tests.

pub mod app;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use reproject::{ApplyError, Decimal, DecodeError, Envelope, Payload, Projection, RowCodec};
use serde::{Deserialize, Serialize};

/// The order events both versions read.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderEvent {
    Placed {
        customer: String,
    },
    ItemAdded {
        sku: String,
        qty: i64,
        price_cents: i64,
    },
    ItemRemoved {
        sku: String,
        qty: i64,
        price_cents: i64,
    },
    Paid,
    Shipped,
    Cancelled,
    /// Only `orders_v2` reads it; to `orders_v1` it is a type it does not know (skipped).
    NoteAdded {
        text: String,
    },
}

#[derive(Deserialize)]
struct PlacedPayload {
    customer: String,
}

#[derive(Deserialize)]
struct ItemPayload {
    sku: String,
    qty: i64,
    price_cents: i64,
}

#[derive(Deserialize)]
struct NotePayload {
    text: String,
}

/// Decodes the types both versions know; `notes` also decodes `order_note_added`.
fn decode(event_type: &str, payload: &Payload<'_>, notes: bool) -> Result<OrderEvent, DecodeError> {
    let bad = |e: serde_json::Error| DecodeError::malformed(event_type, e);
    Ok(match event_type {
        "order_placed" => OrderEvent::Placed { customer: payload.parse::<PlacedPayload>().map_err(bad)?.customer },
        "item_added" => {
            let p: ItemPayload = payload.parse().map_err(bad)?;
            OrderEvent::ItemAdded { sku: p.sku, qty: p.qty, price_cents: p.price_cents }
        }
        "item_removed" => {
            let p: ItemPayload = payload.parse().map_err(bad)?;
            OrderEvent::ItemRemoved { sku: p.sku, qty: p.qty, price_cents: p.price_cents }
        }
        "order_paid" => OrderEvent::Paid,
        "order_shipped" => OrderEvent::Shipped,
        "order_cancelled" => OrderEvent::Cancelled,
        "order_note_added" if notes => {
            OrderEvent::NoteAdded { text: payload.parse::<NotePayload>().map_err(bad)?.text }
        }
        other => return Err(DecodeError::UnknownType(other.to_owned())),
    })
}

/// One line of an order: how many, at what unit price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub qty: i64,
    pub price_cents: i64,
}

/// An order as `orders_v1` serves it.
#[derive(Debug, Clone, PartialEq, RowCodec)]
pub struct Order {
    pub customer: String,
    pub status: String,
    /// SKU → line, stored as `jsonb` and served as a JSON object.
    #[row(json)]
    pub items: BTreeMap<String, Line>,
    pub item_count: i64,
    /// In currency units, exact (`numeric`).
    pub total: Decimal,
}

/// An order as `orders_v2` serves it: v1's columns, the notes and when it was placed.
#[derive(Debug, Clone, PartialEq, RowCodec)]
pub struct OrderV2 {
    pub customer: String,
    pub status: String,
    #[row(json)]
    pub items: BTreeMap<String, Line>,
    pub item_count: i64,
    pub total: Decimal,
    /// `text[]`.
    pub notes: Vec<String>,
    pub placed_at: Option<DateTime<Utc>>,
}

/// What both states have: the fold's common part.
trait OrderState: Sized {
    fn placed(customer: &str, at: DateTime<Utc>) -> Self;
    fn core(&mut self) -> (&mut String, &mut BTreeMap<String, Line>, &mut i64, &mut Decimal);
    fn note(&mut self, _text: &str) {}
}

impl OrderState for Order {
    fn placed(customer: &str, _at: DateTime<Utc>) -> Self {
        Order {
            customer: customer.into(),
            status: "placed".into(),
            items: BTreeMap::new(),
            item_count: 0,
            total: Decimal::ZERO,
        }
    }
    fn core(&mut self) -> (&mut String, &mut BTreeMap<String, Line>, &mut i64, &mut Decimal) {
        (&mut self.status, &mut self.items, &mut self.item_count, &mut self.total)
    }
}

impl OrderState for OrderV2 {
    fn placed(customer: &str, at: DateTime<Utc>) -> Self {
        OrderV2 {
            customer: customer.into(),
            status: "placed".into(),
            items: BTreeMap::new(),
            item_count: 0,
            total: Decimal::ZERO,
            notes: Vec::new(),
            placed_at: Some(at),
        }
    }
    fn core(&mut self) -> (&mut String, &mut BTreeMap<String, Line>, &mut i64, &mut Decimal) {
        (&mut self.status, &mut self.items, &mut self.item_count, &mut self.total)
    }
    fn note(&mut self, text: &str) {
        self.notes.push(text.to_owned());
    }
}

fn apply<S: OrderState>(state: Option<S>, event: &Envelope<OrderEvent>) -> Result<S, ApplyError> {
    let mut order = match (state, &event.body) {
        (None, OrderEvent::Placed { customer }) => return Ok(S::placed(customer, event.meta.ts)),
        (None, _) => return Err(ApplyError::new(&event.meta, "the first event of an order is order_placed")),
        (Some(_), OrderEvent::Placed { .. }) => return Err(ApplyError::new(&event.meta, "order placed twice")),
        (Some(order), _) => order,
    };
    let (status, items, count, total) = order.core();
    let cents = |qty: i64, price: i64| Decimal::new(qty * price, 2);
    match &event.body {
        OrderEvent::Placed { .. } => unreachable!("handled above"),
        OrderEvent::ItemAdded { sku, qty, price_cents } => {
            let line = items.entry(sku.clone()).or_insert(Line { qty: 0, price_cents: *price_cents });
            line.qty += qty;
            *count += qty;
            *total += cents(*qty, *price_cents);
        }
        OrderEvent::ItemRemoved { sku, qty, price_cents } => {
            let Some(line) = items.get_mut(sku) else {
                return Err(ApplyError::new(&event.meta, format!("item {sku} removed but never added")));
            };
            line.qty -= qty;
            if line.qty <= 0 {
                items.remove(sku);
            }
            *count -= qty;
            *total -= cents(*qty, *price_cents);
        }
        OrderEvent::Paid => *status = "paid".into(),
        OrderEvent::Shipped => *status = "shipped".into(),
        OrderEvent::Cancelled => *status = "cancelled".into(),
        OrderEvent::NoteAdded { text } => order.note(text),
    }
    Ok(order)
}

/// `orders_v1`: the read model the app shipped first.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrdersV1;

impl Projection for OrdersV1 {
    type Event = OrderEvent;
    type State = Order;
    fn family(&self) -> &'static str {
        "orders"
    }
    fn name(&self) -> &'static str {
        "orders_v1"
    }
    fn decode(&self, event_type: &str, payload: &Payload<'_>) -> Result<OrderEvent, DecodeError> {
        decode(event_type, payload, false)
    }
    fn apply(&self, state: Option<Order>, event: &Envelope<OrderEvent>) -> Result<Order, ApplyError> {
        apply(state, event)
    }
}

/// `orders_v2`: v1 plus the notes and the time an order was placed.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrdersV2;

impl Projection for OrdersV2 {
    type Event = OrderEvent;
    type State = OrderV2;
    fn family(&self) -> &'static str {
        "orders"
    }
    fn name(&self) -> &'static str {
        "orders_v2"
    }
    fn decode(&self, event_type: &str, payload: &Payload<'_>) -> Result<OrderEvent, DecodeError> {
        decode(event_type, payload, true)
    }
    fn apply(&self, state: Option<OrderV2>, event: &Envelope<OrderEvent>) -> Result<OrderV2, ApplyError> {
        apply(state, event)
    }
}

/// The app's catalog: what its reproject binary serves and builds.
pub fn catalog() -> reproject::Catalog {
    reproject::Catalog::new().with(OrdersV1).with(OrdersV2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reproject::fold::{decode_event, fold_from};
    use reproject::{AggregateId, Meta};

    fn meta(v: i32) -> Meta {
        Meta {
            global_seq: v as i64,
            aggregate_id: AggregateId::Uuid(reproject::Uuid::from_u128(7)),
            aggregate_version: v,
            ts: DateTime::from_timestamp(1_700_000_000 + v as i64, 0).unwrap(),
        }
    }

    #[test]
    fn v1_skips_the_note_v2_keeps_it_and_both_count_its_version() {
        let stored = [
            ("order_placed", r#"{"customer":"c-1"}"#),
            ("item_added", r#"{"sku":"SKU-124","qty":2,"price_cents":1250}"#),
            ("order_note_added", r#"{"text":"gift wrap"}"#),
            ("item_removed", r#"{"sku":"SKU-124","qty":1,"price_cents":1250}"#),
            ("order_paid", "{}"),
        ];
        let v1: Vec<_> = stored
            .iter()
            .enumerate()
            .map(|(i, (t, d))| decode_event(&OrdersV1, meta(i as i32 + 1), t, d.as_bytes()).unwrap())
            .collect();
        let row = fold_from(&OrdersV1, None, v1).unwrap().row.unwrap();
        assert_eq!((row.aggregate_version, row.state.status.as_str(), row.state.item_count), (5, "paid", 1));
        assert_eq!(row.state.total, Decimal::new(1250, 2));
        let v2: Vec<_> = stored
            .iter()
            .enumerate()
            .map(|(i, (t, d))| decode_event(&OrdersV2, meta(i as i32 + 1), t, d.as_bytes()).unwrap())
            .collect();
        let row = fold_from(&OrdersV2, None, v2).unwrap().row.unwrap();
        assert_eq!(row.state.notes, ["gift wrap"]);
        assert_eq!(row.state.items["SKU-124"], Line { qty: 1, price_cents: 1250 });
        let json = reproject::fold::row_json(&OrdersV2, &row);
        assert_eq!(json["items"]["SKU-124"]["qty"], 1, "items are JSON, not a string: {json:?}");
        assert_eq!(json["notes"], serde_json::json!(["gift wrap"]));
    }
}
