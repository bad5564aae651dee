//! Event schema evolution by upcasting: an event type may be stored in several schema versions;
//! a chain of small pure functions (v1 → v2 → v3, each adding defaults, never removing or
//! renaming) brings every stored payload to the current shape before a projection decodes it.
//!
//! The chain runs inside [`crate::decode_event`], the one decode every path calls (replay,
//! tail, repair, time travel), so no path can see an old shape that another path upcasts.
//! Event types without a chain are decoded straight from the stored bytes, at no extra cost.

use serde::de::DeserializeOwned;

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
        let mut value: serde_json::Value =
            serde_json::from_slice(payload).map_err(|e| DecodeError::malformed(self.event_type, e))?;
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
}
