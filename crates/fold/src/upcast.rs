//! Event schema evolution by upcasting: an event type may be stored in several schema versions;
//! a chain of small pure functions (v1 → v2 → v3, each adding defaults, never removing or
//! renaming) brings every stored payload to the current shape before a projection decodes it.
//!
//! The chain runs inside [`crate::decode_event`], the one decode every path calls (replay,
//! tail, repair, time travel), so no path can see an old shape that another path upcasts.
//! Event types without a chain are decoded straight from the stored bytes, at no extra cost.

use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use crate::projection::DecodeError;

/// An event's payload as a projection's `decode` receives it: the stored JSON text, or the
/// JSON an upcaster chain produced from it. Either way, [`Payload::parse`] reads it.
#[derive(Debug, Clone)]
pub enum Payload<'a> {
    Stored(&'a [u8]),
    Upcast(serde_json::Value),
}

impl Payload<'_> {
    /// Deserializes the payload into `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match self {
            Payload::Stored(bytes) => serde_json::from_slice(bytes),
            Payload::Upcast(value) => T::deserialize(value),
        }
    }
}

/// The upcaster chain of one event type.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    pub event_type: &'static str,
    /// The top-level fields that the steps and the projection's `decode` read; the others are
    /// skipped unparsed, which keeps upcasting cheap on the replay's hot path. Empty: every
    /// field is kept.
    pub reads: &'static [&'static str],
    /// The schema version of a stored payload (1 for the first shape), read from its content
    /// (a version field, or the shape itself).
    pub version_of: fn(&serde_json::Value) -> u32,
    /// `steps[i]` lifts schema version `i + 1` to `i + 2`; the current version is
    /// `steps.len() + 1`.
    pub steps: &'static [fn(&mut serde_json::Value)],
}

impl Upcaster {
    /// The schema version `decode` reads.
    pub fn current(&self) -> u32 {
        self.steps.len() as u32 + 1
    }

    /// Brings `payload` to the current version. A version this build does not know (0, or
    /// newer than the current one) is an error, never a guess.
    pub fn upcast(&self, payload: &[u8]) -> Result<serde_json::Value, DecodeError> {
        let mut value = self.parse(payload).map_err(|e| DecodeError::malformed(self.event_type, e))?;
        let version = (self.version_of)(&value);
        if version == 0 || version > self.current() {
            return Err(DecodeError::malformed(
                self.event_type,
                format!("schema version {version} is not one this build reads (1..={})", self.current()),
            ));
        }
        for step in &self.steps[version as usize - 1..] {
            step(&mut value);
        }
        Ok(value)
    }

    /// The payload as JSON, with only the fields in `reads` (all of them when it is empty).
    fn parse(&self, payload: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
        if self.reads.is_empty() {
            return serde_json::from_slice(payload);
        }
        let mut de = serde_json::Deserializer::from_slice(payload);
        let object = Only(self.reads).deserialize(&mut de)?;
        de.end()?;
        Ok(serde_json::Value::Object(object))
    }
}

/// Deserializes a JSON object keeping only the listed fields.
struct Only(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Only {
    type Value = serde_json::Map<String, serde_json::Value>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Only {
    type Value = serde_json::Map<String, serde_json::Value>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key_seed(Field(self.0))? {
            match key {
                Some(name) => {
                    out.insert(name.to_owned(), map.next_value()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// A key, matched against the listed fields without allocating.
struct Field(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Field {
    type Value = Option<&'static str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Field {
    type Value = Option<&'static str>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().copied().find(|k| *k == v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add_b(v: &mut serde_json::Value) {
        v.as_object_mut().unwrap().entry("b").or_insert(2.into());
    }

    #[test]
    fn keeps_only_the_fields_it_reads_and_refuses_what_is_not_an_object() {
        let chain = Upcaster {
            event_type: "t",
            reads: &["a", "b", "v"],
            version_of: |p| if p.get("v").is_some() { 2 } else { 1 },
            steps: &[add_b],
        };
        let up = chain.upcast(br#"{"a":1,"noise":{"deep":["x"]},"other":"s\"q"}"#).unwrap();
        assert_eq!(up, serde_json::json!({ "a": 1, "b": 2 }));
        let current = chain.upcast(br#"{"a":1,"b":5,"v":2}"#).unwrap();
        assert_eq!(current, serde_json::json!({ "a": 1, "b": 5, "v": 2 }), "the current version is left as it is");
        for bad in [&b"[1,2]"[..], b"{\"a\":1} trailing", b"not json"] {
            let e = chain.upcast(bad).unwrap_err();
            assert!(e.to_string().starts_with("malformed t payload"), "{e}");
        }
        let all = Upcaster { reads: &[], ..chain };
        assert_eq!(all.upcast(br#"{"a":1,"z":3}"#).unwrap(), serde_json::json!({ "a": 1, "z": 3, "b": 2 }));
    }
}
