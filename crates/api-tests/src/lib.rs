//! Tests of headstart's library API, written as an outside crate would write them:
//! only `snapshot_refresh` (its [prelude](../snapshot_refresh/prelude/index.html) and
//! re-exports), no `sandbox-core` or `provisioners` imports, no test-support helpers.
//!
//! This crate is not a library anyone uses: the tests are in `tests/it`.
#![deny(missing_docs)]
