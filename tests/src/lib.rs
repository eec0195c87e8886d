//! Test support for end-to-end tests; see `tests/` in this crate.
