//! Integration tests of the projectors against a real throwaway PostgreSQL.

mod support;
mod replay;
mod tail;
