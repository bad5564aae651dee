//! Integration tests of the projectors against a real throwaway PostgreSQL.

mod replay;
mod support;
mod tail;
