//! Integration tests for `headstart`.
