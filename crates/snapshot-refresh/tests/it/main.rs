//! Integration tests for `snapshot-refresh`.
