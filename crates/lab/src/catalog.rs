//! Every projection of the lab, for the places that take them as trait objects (the API's
//! time travel, the benches). The `reproject` binary registers the same ones, as an adopter
//! registers theirs, in `reproject::bank()` (the root crate's catalog).

use fold::AnyProjection;

use crate::activity::ActivityV1;
use crate::bank::{V3, V4};

/// The bank's accounts (`v3`, `v4`) and its activity read model (`activity_v1`), in that
/// order, as trait objects.
pub fn projections() -> Vec<&'static dyn AnyProjection> {
    vec![&V3, &V4, &ActivityV1]
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lab_has_the_banks_two_families() {
        let names: Vec<(&str, &str)> = super::projections().iter().map(|p| (p.family(), p.name())).collect();
        assert_eq!(names, [("accounts", "v3"), ("accounts", "v4"), ("activity", "activity_v1")]);
    }
}
