//! Integration tests of the lab against a throwaway PostgreSQL: seeding, resumption, the
//! producer and verification.

mod produce;
mod seed;
mod support;
mod verify;
