//! Integration tests for `sandbox-core`: the git engine against real git servers on
//! loopback (git daemon, smart HTTP through `git http-backend`, `file://`), started by
//! the tests themselves, and the `RepoUrl` table.

mod common;
mod git_auth;
mod git_clone;
mod git_limits;
mod git_paths_agree;
mod git_ssh;
mod git_sync;
mod git_sync_far;
mod git_sync_paths;
mod git_sync_seal;
mod git_url_forms;
mod measure_far;
mod measure_status;
mod measure_transports;
mod names;
mod repo_url;
