//! Integration tests for `feature-flags`.
