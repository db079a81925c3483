//! Integration tests for `feature-flags`.
#![allow(clippy::unwrap_used)] // helpers of tests, not only #[test] fns

mod differential;
mod evaluation;
mod resolver;
mod server;
mod support;
