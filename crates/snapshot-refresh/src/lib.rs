//! Per-repository base snapshots: keys, lookup, refresh builds, the background
//! builder, garbage collection and the `FastStart` orchestration.
//!
//! Not a provider: it talks to sandboxes only through the `sandbox-core` traits.
