//! Integration tests for `sandbox-core`.
