//! Stream ids as an application has them: a 64-bit integer, a uuid or a text, fixed per log.
//!
//! The engine keys everything by [`AggregateId`] (rows, held events, snapshots, the API's
//! paths); the log records which [`IdKind`] it holds, and every id read from a flag, a path or
//! JSON is parsed with that kind, so `"42"` is the integer 42 in a bigint log and the text
//! `42` in a text log, never a guess.

use std::fmt;

use uuid::Uuid;

/// The type of a log's stream ids, chosen when the log is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdKind {
    /// A 64-bit integer (`BIGINT`): the lab's bank.
    #[default]
    Bigint,
    /// A uuid (`UUID`): Marten, Eventuous, EventStoreDB stream ids.
    Uuid,
    /// Any text (`TEXT`), e.g. `order-123`.
    Text,
}

impl IdKind {
    /// Every kind, in the order `--id-type` lists them.
    pub const ALL: [IdKind; 3] = [IdKind::Bigint, IdKind::Uuid, IdKind::Text];

    /// The name used in flags, the registry and messages: `bigint`, `uuid` or `text`.
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::Bigint => "bigint",
            IdKind::Uuid => "uuid",
            IdKind::Text => "text",
        }
    }

    /// The kind named `name` (`bigint`, `uuid`, `text`; `int8` and `varchar` as aliases).
    pub fn from_name(name: &str) -> Option<IdKind> {
        match name.trim().to_ascii_lowercase().as_str() {
            "bigint" | "int8" | "int" | "integer" => Some(IdKind::Bigint),
            "uuid" => Some(IdKind::Uuid),
            "text" | "varchar" | "character varying" => Some(IdKind::Text),
            _ => None,
        }
    }

    /// Parses an id of this kind from its text form (a flag, a URL path segment).
    pub fn parse(self, text: &str) -> Result<AggregateId, IdError> {
        let bad = |expected: &'static str| IdError { kind: self, shown: shown(text), expected };
        match self {
            IdKind::Bigint => text.parse::<i64>().map(AggregateId::Int).map_err(|_| bad("a 64-bit integer")),
            IdKind::Uuid => Uuid::try_parse(text).map(AggregateId::Uuid).map_err(|_| bad("a uuid")),
            IdKind::Text if text.is_empty() => Err(bad("a non-empty text")),
            IdKind::Text => Ok(AggregateId::Text(text.into())),
        }
    }

    /// Reads an id of this kind from JSON as [`AggregateId::to_json`] (or `to_jsonb`) writes it:
    /// a number for bigint, a string otherwise (a string of digits is accepted for bigint).
    pub fn from_json(self, json: &serde_json::Value) -> Result<AggregateId, IdError> {
        match (self, json) {
            (IdKind::Bigint, serde_json::Value::Number(n)) => n.as_i64().map(AggregateId::Int).ok_or_else(|| IdError {
                kind: self,
                shown: shown(&n.to_string()),
                expected: "a 64-bit integer",
            }),
            (_, serde_json::Value::String(s)) => self.parse(s),
            (_, other) => Err(IdError { kind: self, shown: shown(&other.to_string()), expected: "a string or number" }),
        }
    }
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for IdKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IdKind::from_name(s).ok_or_else(|| format!("unknown id type {:?} (expected bigint, uuid or text)", shown(s)))
    }
}

/// At most 40 characters of a client's text, for messages.
fn shown(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A text that is not an id of the log's kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{shown:?} is not a {kind} stream id (expected {expected})")]
pub struct IdError {
    pub kind: IdKind,
    pub shown: String,
    pub expected: &'static str,
}

/// One stream's (aggregate's) id. Every id of one log has the same variant, the log's
/// [`IdKind`]; ordering compares within a variant (integers numerically, uuids and texts by
/// bytes, which is PostgreSQL's order for `uuid` and for `text COLLATE "C"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AggregateId {
    Int(i64),
    Uuid(Uuid),
    Text(Box<str>),
}

impl AggregateId {
    /// The kind of this id.
    pub fn kind(&self) -> IdKind {
        match self {
            AggregateId::Int(_) => IdKind::Bigint,
            AggregateId::Uuid(_) => IdKind::Uuid,
            AggregateId::Text(_) => IdKind::Text,
        }
    }

    /// The integer, for a bigint log.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            AggregateId::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// The uuid, for a uuid log.
    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            AggregateId::Uuid(v) => Some(*v),
            _ => None,
        }
    }

    /// The text, for a text log.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            AggregateId::Text(v) => Some(v),
            _ => None,
        }
    }

    /// The id as PostgreSQL's `to_jsonb` renders the column: a number or a string.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            AggregateId::Int(v) => serde_json::Value::from(*v),
            other => serde_json::Value::String(other.to_string()),
        }
    }

    /// The bytes of the id as a Kafka record key: the integer's decimal text, the uuid's
    /// hyphenated text, the text itself.
    pub fn key_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl fmt::Display for AggregateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AggregateId::Int(v) => write!(f, "{v}"),
            AggregateId::Uuid(v) => write!(f, "{}", v.hyphenated()),
            AggregateId::Text(v) => f.write_str(v),
        }
    }
}

impl From<i64> for AggregateId {
    fn from(v: i64) -> Self {
        AggregateId::Int(v)
    }
}

impl From<Uuid> for AggregateId {
    fn from(v: Uuid) -> Self {
        AggregateId::Uuid(v)
    }
}

impl From<&str> for AggregateId {
    fn from(v: &str) -> Self {
        AggregateId::Text(v.into())
    }
}

impl From<String> for AggregateId {
    fn from(v: String) -> Self {
        AggregateId::Text(v.into_boxed_str())
    }
}

impl serde::Serialize for AggregateId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            AggregateId::Int(v) => serializer.serialize_i64(*v),
            other => serializer.collect_str(other),
        }
    }
}

/// Stream ids as statement and COPY parameters and results: `BIGINT`, `UUID`, `TEXT` (or
/// `VARCHAR`) columns, each variant only in a column of its own kind.
#[cfg(feature = "postgres")]
mod sql {
    use super::AggregateId;
    use bytes::BytesMut;
    use postgres_types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
    use std::error::Error;

    type BoxError = Box<dyn Error + Sync + Send>;

    fn accepts(ty: &Type) -> bool {
        [Type::INT8, Type::UUID, Type::TEXT, Type::VARCHAR].contains(ty)
    }

    impl ToSql for AggregateId {
        fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
            match (self, ty) {
                (AggregateId::Int(v), &Type::INT8) => v.to_sql(ty, out),
                (AggregateId::Uuid(v), &Type::UUID) => v.to_sql(ty, out),
                (AggregateId::Text(v), &Type::TEXT | &Type::VARCHAR) => (&**v).to_sql(ty, out),
                (id, ty) => Err(format!("a {} stream id ({id}) cannot be stored in a {ty} column", id.kind()).into()),
            }
        }

        fn accepts(ty: &Type) -> bool {
            accepts(ty)
        }

        to_sql_checked!();
    }

    impl<'a> FromSql<'a> for AggregateId {
        fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
            Ok(match *ty {
                Type::INT8 => AggregateId::Int(i64::from_sql(ty, raw)?),
                Type::UUID => AggregateId::Uuid(uuid::Uuid::from_sql(ty, raw)?),
                _ => AggregateId::Text(<&str>::from_sql(ty, raw)?.into()),
            })
        }

        fn accepts(ty: &Type) -> bool {
            accepts(ty)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_parses_its_own_text_and_names_what_it_expected() {
        assert_eq!(IdKind::Bigint.parse("42"), Ok(AggregateId::Int(42)));
        assert_eq!(IdKind::Bigint.parse("-5"), Ok(AggregateId::Int(-5)));
        let u = "5a6fd385-7a2b-4c1e-9d3f-0123456789ab";
        assert_eq!(IdKind::Uuid.parse(u).unwrap().to_string(), u);
        assert_eq!(IdKind::Text.parse("order-1"), Ok(AggregateId::from("order-1")));
        assert_eq!(IdKind::Text.parse("42"), Ok(AggregateId::from("42")), "a text log keeps digits as text");
        let e = IdKind::Bigint.parse(u).unwrap_err();
        assert_eq!(e.to_string(), format!("\"{u}\" is not a bigint stream id (expected a 64-bit integer)"));
        assert!(IdKind::Uuid.parse("order-1").unwrap_err().to_string().contains("expected a uuid"));
        assert!(IdKind::Text.parse("").is_err());
    }

    #[test]
    fn json_round_trips_in_to_jsonb_shape() {
        for id in [AggregateId::Int(7), AggregateId::Uuid(Uuid::from_u128(9)), AggregateId::from("a b")] {
            let json = id.to_json();
            assert_eq!(id.kind().from_json(&json), Ok(id.clone()));
            assert_eq!(serde_json::to_value(&id).unwrap(), json);
        }
        assert_eq!(AggregateId::Int(7).to_json(), serde_json::json!(7));
        assert_eq!(IdKind::Bigint.from_json(&serde_json::json!("12")), Ok(AggregateId::Int(12)));
    }

    #[test]
    fn kinds_parse_from_flag_names() {
        for kind in IdKind::ALL {
            assert_eq!(kind.as_str().parse::<IdKind>(), Ok(kind));
        }
        assert_eq!("INT8".parse::<IdKind>(), Ok(IdKind::Bigint));
        assert!("float".parse::<IdKind>().unwrap_err().contains("bigint, uuid or text"));
    }
}
