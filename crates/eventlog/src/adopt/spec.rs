//! What to adopt: the app's table and which of its columns hold the stream id, the version,
//! the type, the payload and the time, as the user names them.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A `schema.table` name, each part an identifier as PostgreSQL stores it (not quoted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

impl QualifiedName {
    /// Parses `table` or `schema.table` (`public` when no schema is given). Unquoted parts are
    /// folded to lowercase, as PostgreSQL does; `"Quoted"` parts are kept as written.
    pub fn parse(text: &str) -> Result<QualifiedName> {
        let parts = split_identifier_path(text)?;
        match parts.as_slice() {
            [name] => Ok(QualifiedName { schema: "public".into(), name: name.clone() }),
            [schema, name] => Ok(QualifiedName { schema: schema.clone(), name: name.clone() }),
            _ => Err(Error::Adopt(format!("--table {text:?}: expected table or schema.table"))),
        }
    }

    /// The name quoted for SQL (`"public"."app_events"`).
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl std::fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// An identifier quoted for SQL: the one way a name from a flag reaches a statement.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Splits `a.b`, `"A"."b.c"`, folding unquoted parts to lowercase.
fn split_identifier_path(text: &str) -> Result<Vec<String>> {
    let bad = || Error::Adopt(format!("{text:?} is not a table name"));
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(bad()),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if !(c.is_alphanumeric() || c == '_' || c == '$') {
                    return Err(bad());
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return Err(bad());
        }
        parts.push(part);
        match chars.next() {
            Some('.') => continue,
            None => return Ok(parts),
            Some(_) => return Err(bad()),
        }
    }
}

/// The app's table and the meaning of its columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptSpec {
    pub table: QualifiedName,
    /// The stream id column (`bigint`/`int`, `uuid` or `text`/`varchar`).
    pub id_column: String,
    /// The event's number within its stream (an integer column).
    pub version_column: String,
    /// The event type (`text`/`varchar`).
    pub type_column: String,
    /// The payload (`jsonb`, `json` or `text` holding JSON).
    pub data_column: String,
    /// When the event happened (`timestamptz`, or `timestamp` read in the server's time zone).
    pub ts_column: String,
    /// The app's first version of a stream: 1, or 0 for stores that count from 0
    /// (EventStoreDB); the log numbers from 1 (`version - first_version + 1`).
    pub first_version: i32,
    /// The column reproject adds for gap-safe positions (the writer's transaction id).
    pub tx_column: String,
}

impl AdoptSpec {
    /// The default column reproject adds.
    pub const TX_COLUMN: &'static str = "reproject_tx_id";

    /// The spec of `table` with its `[id, version, type, data, ts]` columns, streams counted
    /// from 1, and the default added column.
    pub fn new(table: QualifiedName, [id, version, ty, data, ts]: [&str; 5]) -> AdoptSpec {
        AdoptSpec {
            table,
            id_column: id.into(),
            version_column: version.into(),
            type_column: ty.into(),
            data_column: data.into(),
            ts_column: ts.into(),
            first_version: 1,
            tx_column: AdoptSpec::TX_COLUMN.into(),
        }
    }

    /// Checks what can be checked without the database.
    pub fn validate(&self) -> Result<()> {
        if !(0..=1).contains(&self.first_version) {
            return Err(Error::Adopt(format!(
                "--first-version {}: a stream's first version is 0 or 1",
                self.first_version
            )));
        }
        let columns = [
            ("--id", &self.id_column),
            ("--version", &self.version_column),
            ("--type", &self.type_column),
            ("--data", &self.data_column),
            ("--ts", &self.ts_column),
        ];
        for (flag, column) in columns {
            if column.is_empty() {
                return Err(Error::Adopt(format!("{flag} names no column")));
            }
            if *column == self.tx_column {
                return Err(Error::Adopt(format!("{flag} {column}: that is the column reproject adds (--tx-column)")));
            }
        }
        Ok(())
    }

    /// `SELECT`s of the app's table, each column cast to the log's type: the id (`id`), the
    /// log's version, type, ts and payload, in that order.
    pub(crate) fn select_list(&self, id_type: &str) -> String {
        format!(
            "{id}::{id_type}, ({version} - {first} + 1)::INT, {ty}::TEXT, {ts}::TIMESTAMPTZ, {data}::JSONB",
            id = quote_ident(&self.id_column),
            version = quote_ident(&self.version_column),
            first = self.first_version,
            ty = quote_ident(&self.type_column),
            ts = quote_ident(&self.ts_column),
            data = quote_ident(&self.data_column),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_parse_like_postgresql_folds_them() {
        let q = |t: &str| QualifiedName::parse(t).map(|n| (n.schema, n.name));
        assert_eq!(q("app_events").unwrap(), ("public".into(), "app_events".into()));
        assert_eq!(q("Shop.App_Events").unwrap(), ("shop".into(), "app_events".into()));
        assert_eq!(q("\"Shop\".\"a.b\"\"c\"").unwrap(), ("Shop".into(), "a.b\"c".into()));
        for bad in ["", "a.", ".a", "a.b.c", "a;drop", "\"open"] {
            assert!(q(bad).is_err(), "{bad:?}");
        }
        assert_eq!(QualifiedName::parse("\"A\"\"x\"").unwrap().quoted(), "\"public\".\"A\"\"x\"");
    }

    #[test]
    fn a_spec_refuses_what_it_can_see_is_wrong() {
        let spec = AdoptSpec::new(
            QualifiedName::parse("app_events").unwrap(),
            ["stream_id", "stream_version", "event_type", "data", "recorded_at"],
        );
        assert!(spec.validate().is_ok());
        let e = AdoptSpec { first_version: 2, ..spec.clone() }.validate().unwrap_err().to_string();
        assert!(e.contains("--first-version 2"), "{e}");
        let e = AdoptSpec { data_column: "reproject_tx_id".into(), ..spec.clone() }.validate().unwrap_err();
        assert!(e.to_string().contains("--data reproject_tx_id"), "{e}");
        assert!(spec.select_list("uuid").starts_with("\"stream_id\"::uuid, (\"stream_version\" - 1 + 1)::INT"));
    }
}
