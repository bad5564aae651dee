//! Every projection this build knows, by name: where the binary, the API and the benches turn
//! a version name from a flag or the registry into a projection.
//!
//! The drivers are generic over [`fold::Projection`], so a name is turned into a type once, at
//! the edge, with [`dispatch!`](crate::dispatch); code that only needs names, columns or a
//! one-aggregate fold takes a `&dyn AnyProjection` from [`Known::as_any`].

use fold::AnyProjection;

use crate::activity::ActivityV1;
use crate::bank::{V3, V4};

/// A projection version this build can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    V3(V3),
    V4(V4),
    ActivityV1(ActivityV1),
}

/// A version name no projection of this build has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown projection version {0:?} (known: v3, v4, activity_v1)")]
pub struct UnknownProjection(pub String);

impl Known {
    /// Every known version, families together, oldest first within a family.
    pub const ALL: [Known; 3] = [Known::V3(V3), Known::V4(V4), Known::ActivityV1(ActivityV1)];

    /// The version named `name` (`v3`, `v4`, `activity_v1`).
    pub fn parse(name: &str) -> Result<Known, UnknownProjection> {
        Known::ALL.into_iter().find(|k| k.as_any().name() == name).ok_or_else(|| UnknownProjection(name.to_owned()))
    }

    /// The projection behind a trait object.
    pub fn as_any(&self) -> &'static dyn AnyProjection {
        match self {
            Known::V3(_) => &V3,
            Known::V4(_) => &V4,
            Known::ActivityV1(_) => &ActivityV1,
        }
    }

    /// Every known projection behind a trait object, in [`Known::ALL`]'s order (the API's
    /// catalog: its first family, `accounts`, is the one served by default).
    pub fn catalog() -> Vec<&'static dyn AnyProjection> {
        Known::ALL.iter().map(Known::as_any).collect()
    }

    /// The version's name.
    pub fn name(&self) -> &'static str {
        self.as_any().name()
    }

    /// The newest version of `family`, if this build has one.
    pub fn newest_of(family: &str) -> Option<Known> {
        Known::ALL.into_iter().rev().find(|k| k.as_any().family() == family)
    }
}

impl std::str::FromStr for Known {
    type Err = UnknownProjection;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Known::parse(s)
    }
}

impl std::fmt::Display for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs `$body` with `$p` bound to the concrete projection behind a [`Known`]: one
/// monomorphic copy of the generic code per projection, no dynamic call per event.
///
/// ```
/// use lab::catalog::Known;
/// let known = Known::parse("v4").unwrap();
/// let table = lab::dispatch!(known, p => fold::Projection::table(&p));
/// assert_eq!(table, "accounts_v4");
/// ```
#[macro_export]
macro_rules! dispatch {
    ($known:expr, $p:ident => $body:expr) => {
        match $known {
            $crate::catalog::Known::V3($p) => $body,
            $crate::catalog::Known::V4($p) => $body,
            $crate::catalog::Known::ActivityV1($p) => $body,
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_names_the_known_ones_when_it_cannot() {
        assert_eq!(Known::parse("v4"), Ok(Known::V4(V4)));
        assert_eq!(Known::parse("activity_v1").unwrap().as_any().table(), "activity_v1");
        assert_eq!(
            Known::parse("v9").unwrap_err().to_string(),
            "unknown projection version \"v9\" (known: v3, v4, activity_v1)"
        );
        assert_eq!(Known::newest_of("accounts"), Some(Known::V4(V4)));
        let names: Vec<&str> = Known::ALL.iter().map(Known::name).collect();
        assert_eq!(names, ["v3", "v4", "activity_v1"], "the error message lists them all");
    }
}
