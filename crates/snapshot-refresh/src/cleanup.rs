//! What a dead build leaves behind, and how the next one (or `prune`) removes it.
//!
//! A build process killed mid-way (SIGKILL, a crash, a reboot) leaves:
//! - its **seed** (`state/seeds/<key>.<id>/`, a copy of a clone's `.git`);
//! - its **job file** (`state/jobs/<key>.<id>.json`) if it never started;
//! - its **build sandbox** (`build-<digest of key>`);
//! - the **processes** its recipe started: they run in their own process groups, so
//!   the builder's death does not kill them. Every recipe command gets
//!   `HEADSTART_BUILD=<state id>/<key>` in its environment (inherited by whatever it
//!   starts), and the cleanup finds them by that in `/proc/<pid>/environ` (the way CI
//!   servers find a job's strays), immune to pid and process-group reuse.
//!
//! A key's leftovers are stale only while its build lock ([`BuildLock`]) is free: the
//! cleanup takes the lock itself while it removes them, so it never races a running
//! build. A key with a fresh job file (a detached build about to start) is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sandbox_core::{SandboxName, SandboxProvider};
use sha2::{Digest, Sha256};

use crate::builder::JobFile;
use crate::error::Result;
use crate::refresh::build_sandbox_name_of;
use crate::state::BuildLock;
use sandbox_core::git::seed;

/// The variable that marks a recipe command's processes with their build.
pub const BUILD_MARKER_VAR: &str = "HEADSTART_BUILD";

/// A job file younger than this belongs to a detached build that is about to start.
const JOB_GRACE: Duration = Duration::from_secs(60);

/// What [`Builder::cleanup_stale`](crate::SnapshotBuilder::cleanup_stale) removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct CleanupReport {
    /// Processes left running by dead builds' recipes, killed.
    pub processes_killed: usize,
    /// Build sandboxes of dead builds, removed.
    pub sandboxes_removed: Vec<SandboxName>,
    /// Seeds of dead builds, removed.
    pub seeds_removed: usize,
    /// Job files whose build never started, removed.
    pub jobs_removed: usize,
}

impl CleanupReport {
    /// True when nothing was left behind.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    fn add(&mut self, other: Self) {
        self.processes_killed += other.processes_killed;
        self.sandboxes_removed.extend(other.sandboxes_removed);
        self.seeds_removed += other.seeds_removed;
        self.jobs_removed += other.jobs_removed;
    }
}

/// The marker value for builds of `key` run with `state_dir`: a digest of the state
/// directory (so two data directories never touch each other's builds) and the key.
pub(crate) fn marker(state_dir: &Path, key: &str) -> String {
    format!("{}/{key}", state_id(state_dir))
}

fn state_id(state_dir: &Path) -> String {
    let dir = fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    hex::encode(&Sha256::digest(dir.as_os_str().as_encoded_bytes())[..6])
}

/// One job file on disk.
struct Job {
    path: PathBuf,
    fresh: bool,
    seed: Option<PathBuf>,
}

/// Everything in a state directory that belongs to a key.
#[derive(Default)]
struct KeyState {
    seeds: Vec<PathBuf>,
    jobs: Vec<Job>,
}

impl KeyState {
    fn has_fresh_job(&self) -> bool {
        self.jobs.iter().any(|j| j.fresh)
    }
}

/// `<key>.<id><suffix>` → `key`.
fn key_of(file_name: &str, suffix: &str) -> Option<String> {
    let stem = file_name.strip_suffix(suffix)?;
    let (key, id) = stem.rsplit_once('.')?;
    (!key.is_empty() && !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| key.to_owned())
}

fn list_dir(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.to_owned(), e.path())))
        .collect()
}

/// Every key the state directory knows (lock files, seeds, job files) and its seeds and
/// job files.
fn scan(state_dir: &Path) -> BTreeMap<String, KeyState> {
    let mut keys: BTreeMap<String, KeyState> = BTreeMap::new();
    for (name, _) in list_dir(&state_dir.join("locks")) {
        if let Some(key) = name.strip_suffix(".lock") {
            keys.entry(key.to_owned()).or_default();
        }
    }
    for (name, path) in list_dir(&state_dir.join("seeds")) {
        if let Some(key) = key_of(&name, "") {
            keys.entry(key).or_default().seeds.push(path);
        }
    }
    for (name, path) in list_dir(&state_dir.join("jobs")) {
        let Some(key) = key_of(&name, ".json") else {
            continue;
        };
        let fresh = fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < JOB_GRACE);
        let seed = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<JobFile>(&b).ok())
            .and_then(|j| j.seed);
        keys.entry(key)
            .or_default()
            .jobs
            .push(Job { path, fresh, seed });
    }
    keys
}

/// Removes the leftovers of dead builds of every key whose lock is free, and of
/// `own.0` (whose lock the caller holds) except the seed `own.1`.
pub(crate) async fn cleanup(
    provider: &dyn SandboxProvider,
    state_dir: &Path,
    own: Option<(&str, Option<&Path>)>,
) -> Result<CleanupReport> {
    let keys = scan(state_dir);
    if keys.is_empty() {
        return Ok(CleanupReport::default());
    }
    let mut report = CleanupReport::default();
    for (key, st) in keys {
        let is_own = own.is_some_and(|(k, _)| k == key);
        let _lock = if is_own {
            None
        } else {
            if st.has_fresh_job() {
                continue;
            }
            let Some(lock) = BuildLock::try_acquire(state_dir, &key)? else {
                continue; // a build is running
            };
            // a detached build may have been handed a job since the scan
            if scan_jobs_fresh(state_dir, &key) {
                continue;
            }
            Some(lock)
        };
        let keep = own.and_then(|(k, s)| s.filter(|_| k == key));
        let r = clean_key(provider, state_dir, &key, &st, keep).await;
        report.add(r);
    }
    if !report.is_empty() {
        tracing::info!(?report, "cleaned up after dead builds");
    }
    Ok(report)
}

fn scan_jobs_fresh(state_dir: &Path, key: &str) -> bool {
    scan(state_dir)
        .get(key)
        .is_some_and(KeyState::has_fresh_job)
}

/// Removes one key's leftovers; the caller holds its lock.
async fn clean_key(
    provider: &dyn SandboxProvider,
    state_dir: &Path,
    key: &str,
    st: &KeyState,
    keep_seed: Option<&Path>,
) -> CleanupReport {
    let needle = marker(state_dir, key);
    let processes_killed = tokio::task::spawn_blocking(move || kill_marked(&needle))
        .await
        .unwrap_or(0);
    let mut report = CleanupReport {
        processes_killed,
        ..CleanupReport::default()
    };
    // a build sandbox stays `creating` (unlisted) while it builds: remove it by name
    let name = build_sandbox_name_of(key);
    match provider.remove(&name).await {
        Ok(()) => report.sandboxes_removed.push(name),
        Err(sandbox_core::Error::SandboxNotFound { .. }) => {}
        Err(e) => {
            tracing::warn!(sandbox = %name, error = %e, "could not remove a dead build's sandbox");
        }
    }
    // seeds handed to a job that is still to start are kept with it
    let keep: Vec<&Path> = keep_seed
        .into_iter()
        .chain(
            st.jobs
                .iter()
                .filter(|j| j.fresh)
                .filter_map(|j| j.seed.as_deref()),
        )
        .collect();
    for s in &st.seeds {
        if !keep.iter().any(|k| same_path(k, s)) {
            seed::discard(s);
            report.seeds_removed += 1;
        }
    }
    for j in st.jobs.iter().filter(|j| !j.fresh) {
        if fs::remove_file(&j.path).is_ok() {
            report.jobs_removed += 1;
        }
    }
    report
}

fn same_path(a: &Path, b: &Path) -> bool {
    a == b || fs::canonicalize(a).ok() == fs::canonicalize(b).ok()
}

/// Kills every process of this user whose environment carries `HEADSTART_BUILD=marker`
/// (and what they start while we look), and returns how many were killed.
pub(crate) fn kill_marked(marker: &str) -> usize {
    let needle = format!("{BUILD_MARKER_VAR}={marker}");
    let me = std::process::id();
    let mut killed = BTreeSet::new();
    // a process may fork while we scan: look again until a scan finds none
    for _ in 0..50 {
        let found: Vec<u32> = marked(&needle)
            .into_iter()
            .filter(|&pid| pid != me)
            .collect();
        if found.is_empty() {
            break;
        }
        for pid in found {
            let Some(p) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            else {
                continue;
            };
            if rustix::process::kill_process(p, rustix::process::Signal::KILL).is_ok() {
                killed.insert(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if !killed.is_empty() {
        tracing::info!(
            marker,
            processes = killed.len(),
            "killed processes a dead build left running"
        );
    }
    killed.len()
}

/// Pids whose environment holds the entry `needle` (zombies have none; processes of
/// other users are unreadable and skipped).
fn marked(needle: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|&b| b == 0)
                    .any(|entry| entry == needle.as_bytes())
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_back_from_file_names() {
        assert_eq!(
            key_of("local-tmp-up-0a1b2c3d4e5f.0123456789ab", "").as_deref(),
            Some("local-tmp-up-0a1b2c3d4e5f")
        );
        assert_eq!(
            key_of("github.com-a-b.c-0a1b2c3d4e5f.deadbeef.json", ".json").as_deref(),
            Some("github.com-a-b.c-0a1b2c3d4e5f")
        );
        assert_eq!(key_of("x.tmp-123", ""), None);
        assert_eq!(key_of("nodot", ""), None);
    }
}
