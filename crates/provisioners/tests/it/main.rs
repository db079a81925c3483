//! Integration tests for `provisioners`.
