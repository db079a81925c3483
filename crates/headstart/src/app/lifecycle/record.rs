//! The lifecycle's files and decisions, free of any provider: the record of a sandbox
//! (`<data dir>/lifecycle/<name>.json`, written aside and renamed), its lease
//! (`<name>.lease`, a `flock`: shared by commands and starts, exclusive for a stop),
//! what the idle watch does with a record at a given time ([`decide`]), and the
//! durations users write (`30m`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sandbox_core::SandboxName;
use serde::{Deserialize, Serialize};
use snapshot_refresh::RecipeCommand;
use time::OffsetDateTime;

use crate::app::{Error, Result};

/// How long an operation waits for a stop or hibernate of the sandbox to finish.
const LEASE_WAIT: Duration = Duration::from_secs(600);

/// Where a complete sandbox is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Started and not stopped since.
    Running,
    /// Stopped after being idle (Docker: the container is stopped; local: only the
    /// record says so).
    Stopped,
    /// Docker: its container was committed to an image and removed.
    Hibernated,
}

/// The lifecycle record of one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The provider kind (`local`, `docker`).
    pub(crate) provider: String,
    /// Stop after this long without activity (`None`: never).
    #[serde(default)]
    pub(crate) idle_timeout: Option<Duration>,
    /// Hibernate (Docker) after this long without activity (`None`: never).
    #[serde(default)]
    pub(crate) hibernate_after: Option<Duration>,
    /// The end of the last start, command or look at its ports.
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) last_activity: OffsetDateTime,
    /// Where it is.
    pub(crate) state: RunState,
    /// The recipe's after-start hooks, run again on a resume.
    #[serde(default)]
    pub(crate) after_start: Vec<RecipeCommand>,
}

/// What the daemon does with a sandbox now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleAction {
    /// Nothing.
    Keep,
    /// Stop it.
    Stop,
    /// Hibernate it (Docker).
    Hibernate,
}

/// What the daemon does with the sandbox of `r` at `now`: hibernate a Docker one idle
/// for `hibernate_after` (running or stopped), stop a running one idle for
/// `idle_timeout`, else nothing. Zero durations mean never.
pub(crate) fn decide(r: &Record, now: OffsetDateTime) -> IdleAction {
    let idle = Duration::try_from(now - r.last_activity).unwrap_or(Duration::ZERO);
    let passed = |d: Option<Duration>| d.is_some_and(|d| !d.is_zero() && idle >= d);
    match r.state {
        RunState::Hibernated => IdleAction::Keep,
        _ if r.provider == "docker" && passed(r.hibernate_after) => IdleAction::Hibernate,
        RunState::Running if passed(r.idle_timeout) => IdleAction::Stop,
        _ => IdleAction::Keep,
    }
}

/// When the sandbox of `r` will be stopped unless used.
pub(crate) fn idle_deadline(r: &Record) -> Option<OffsetDateTime> {
    let t = r.idle_timeout.filter(|d| !d.is_zero())?;
    (r.state == RunState::Running).then(|| r.last_activity + t)
}

/// `90s`, `30m`, `2h`, `1d`, or plain seconds; `0` is zero (for idle timeouts: never).
///
/// # Errors
/// [`Error::InvalidInput`] for anything else.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let bad = || Error::InvalidInput(format!("`{s}` is not a duration (e.g. 90s, 30m, 2h, 1d)"));
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(unit).map(Duration::from_secs).ok_or_else(bad)
}

/// The lifecycle settings a recipe file may carry besides its commands:
/// `"idle_timeout"` and `"hibernate_after"`, a duration string (`"30m"`) or seconds.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RecipeLifecycle {
    #[serde(default)]
    idle_timeout: Option<serde_json::Value>,
    #[serde(default)]
    hibernate_after: Option<serde_json::Value>,
}

impl RecipeLifecycle {
    /// Read from the recipe file (already read once as a recipe: it exists and is JSON).
    pub(crate) fn read(path: Option<&Path>) -> Result<(Option<Duration>, Option<Duration>)> {
        let Some(path) = path else {
            return Ok((None, None));
        };
        let parsed: Self = fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let one = |v: Option<serde_json::Value>, key: &str| -> Result<Option<Duration>> {
            let bad = || {
                Error::InvalidInput(format!(
                    "recipe {}: `{key}` must be a duration such as \"30m\" or a number of seconds",
                    path.display()
                ))
            };
            match v {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::Number(n)) => n
                    .as_u64()
                    .map(|s| Some(Duration::from_secs(s)))
                    .ok_or_else(bad),
                Some(serde_json::Value::String(s)) => {
                    parse_duration(&s).map(Some).map_err(|_| bad())
                }
                Some(_) => Err(bad()),
            }
        };
        Ok((
            one(parsed.idle_timeout, "idle_timeout")?,
            one(parsed.hibernate_after, "hibernate_after")?,
        ))
    }
}

/// The lifecycle directory of a data directory.
fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("lifecycle")
}

fn record_path(data_dir: &Path, name: &SandboxName) -> PathBuf {
    dir(data_dir).join(format!("{name}.json"))
}

/// The record of `name`, if there is a readable one.
pub(crate) fn read(data_dir: &Path, name: &SandboxName) -> Option<Record> {
    let path = record_path(data_dir, name);
    let bytes = fs::read(&path).ok()?;
    serde_json::from_slice(&bytes)
        .inspect_err(|e| tracing::warn!(path = %path.display(), %e, "unreadable lifecycle record"))
        .ok()
}

/// Writes the record of `name` (aside, then renamed over the old one).
pub(crate) fn write(data_dir: &Path, name: &SandboxName, record: &Record) -> Result<()> {
    let path = record_path(data_dir, name);
    let io = |e| Error::io(format!("writing {}", path.display()), e);
    fs::create_dir_all(dir(data_dir)).map_err(io)?;
    let json = serde_json::to_vec_pretty(record).map_err(|e| io(io::Error::other(e)))?;
    sandbox_core::tree::write_atomic(&path, &json, 0o666).map_err(io)
}

/// Forgets the record of `name` (a removed sandbox).
pub(crate) fn forget(data_dir: &Path, name: &SandboxName) {
    let _ = fs::remove_file(record_path(data_dir, name));
    let _ = fs::remove_file(dir(data_dir).join(format!("{name}.lease")));
}

/// Every name with a record.
pub(crate) fn names(data_dir: &Path) -> Vec<SandboxName> {
    let Ok(entries) = fs::read_dir(dir(data_dir)) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let file = e.ok()?.file_name();
            let stem = file.to_str()?.strip_suffix(".json")?.to_owned();
            SandboxName::new(stem).ok()
        })
        .collect()
}

/// A held lease of one sandbox name (a `flock`, released when dropped or when the
/// process dies).
#[derive(Debug)]
pub(crate) struct Lease {
    _file: fs::File,
}

impl Lease {
    fn open(data_dir: &Path, name: &SandboxName) -> Result<fs::File> {
        let path = dir(data_dir).join(format!("{name}.lease"));
        let io = |e| Error::io(format!("opening {}", path.display()), e);
        fs::create_dir_all(dir(data_dir)).map_err(io)?;
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)
    }

    fn try_take(data_dir: &Path, name: &SandboxName, exclusive: bool) -> Result<Option<Self>> {
        use rustix::fs::FlockOperation::{NonBlockingLockExclusive, NonBlockingLockShared};
        let file = Self::open(data_dir, name)?;
        let op = if exclusive {
            NonBlockingLockExclusive
        } else {
            NonBlockingLockShared
        };
        match rustix::fs::flock(&file, op) {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(Error::io(format!("locking the lease of {name}"), e.into())),
        }
    }

    /// The lease shared with other users of the sandbox, waiting while a stop or
    /// hibernate holds it.
    ///
    /// # Errors
    /// When the lease file cannot be used, or a stop held it for [`LEASE_WAIT`].
    pub(crate) async fn shared(data_dir: &Path, name: &SandboxName) -> Result<Self> {
        let t = Instant::now();
        loop {
            if let Some(l) = Self::try_take(data_dir, name, false)? {
                return Ok(l);
            }
            if t.elapsed() > LEASE_WAIT {
                return Err(Error::Busy(format!(
                    "sandbox {name} is being stopped or hibernated and it has not finished in {} s",
                    LEASE_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The lease alone (`None` while a command, a start or another stop holds it).
    ///
    /// # Errors
    /// When the lease file cannot be used.
    pub(crate) fn try_exclusive(data_dir: &Path, name: &SandboxName) -> Result<Option<Self>> {
        Self::try_take(data_dir, name, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: RunState, provider: &str, idle_for: u64) -> Record {
        Record {
            provider: provider.into(),
            idle_timeout: Some(Duration::from_secs(30)),
            hibernate_after: None,
            last_activity: OffsetDateTime::now_utc() - Duration::from_secs(idle_for),
            state,
            after_start: Vec::new(),
        }
    }

    #[test]
    fn a_running_sandbox_is_stopped_once_its_idle_time_passed() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            decide(&record(RunState::Running, "docker", 10), now),
            IdleAction::Keep
        );
        assert_eq!(
            decide(&record(RunState::Running, "docker", 31), now),
            IdleAction::Stop
        );
        assert_eq!(
            decide(&record(RunState::Running, "local", 31), now),
            IdleAction::Stop
        );
        // stopped already: nothing more without hibernate_after
        assert_eq!(
            decide(&record(RunState::Stopped, "docker", 900), now),
            IdleAction::Keep
        );
        // zero or none: never
        let mut r = record(RunState::Running, "docker", 900);
        r.idle_timeout = Some(Duration::ZERO);
        assert_eq!(decide(&r, now), IdleAction::Keep);
        r.idle_timeout = None;
        assert_eq!(decide(&r, now), IdleAction::Keep);
        assert_eq!(idle_deadline(&r), None);
        // activity in the future (a clock step) is not idleness
        let mut r = record(RunState::Running, "docker", 0);
        r.last_activity = now + Duration::from_secs(60);
        assert_eq!(decide(&r, now), IdleAction::Keep);
    }

    #[test]
    fn hibernate_after_applies_to_docker_sandboxes_running_or_stopped() {
        let now = OffsetDateTime::now_utc();
        for state in [RunState::Running, RunState::Stopped] {
            let mut r = record(state, "docker", 120);
            r.hibernate_after = Some(Duration::from_secs(60));
            assert_eq!(decide(&r, now), IdleAction::Hibernate, "{state:?}");
            r.provider = "local".into();
            let expect = if state == RunState::Running {
                IdleAction::Stop
            } else {
                IdleAction::Keep
            };
            assert_eq!(decide(&r, now), expect, "local never hibernates");
        }
        let mut r = record(RunState::Hibernated, "docker", 9999);
        r.hibernate_after = Some(Duration::from_secs(60));
        assert_eq!(decide(&r, now), IdleAction::Keep);
    }

    #[test]
    fn the_idle_deadline_is_the_last_activity_plus_the_timeout_while_running() {
        let r = record(RunState::Running, "docker", 10);
        assert_eq!(
            idle_deadline(&r),
            Some(r.last_activity + Duration::from_secs(30))
        );
        assert_eq!(
            idle_deadline(&record(RunState::Stopped, "docker", 10)),
            None
        );
    }

    #[test]
    fn durations_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        let e = parse_duration("3 weeks").unwrap_err();
        assert_eq!(e.kind(), "invalid_input");
        assert!(e.to_string().contains("30m"), "{e}");
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn a_shared_lease_keeps_the_exclusive_one_away_and_shared_ones_coexist() {
        let home = tempfile::tempdir().unwrap();
        let name = SandboxName::new("box").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let a = rt.block_on(Lease::shared(home.path(), &name)).unwrap();
        let b = rt.block_on(Lease::shared(home.path(), &name)).unwrap();
        assert!(Lease::try_exclusive(home.path(), &name).unwrap().is_none());
        drop(a);
        assert!(
            Lease::try_exclusive(home.path(), &name).unwrap().is_none(),
            "b holds it"
        );
        drop(b);
        let stop = Lease::try_exclusive(home.path(), &name)
            .unwrap()
            .expect("free now");
        // a command arriving during a stop waits for it, then runs
        let waited = rt.block_on(async {
            let t = Instant::now();
            let release = async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                drop(stop);
            };
            let (l, ()) = tokio::join!(Lease::shared(home.path(), &name), release);
            l.unwrap();
            t.elapsed()
        });
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
    }

    #[test]
    fn records_round_trip_and_a_removed_sandbox_forgets_its_record() {
        let home = tempfile::tempdir().unwrap();
        let name = SandboxName::new("box").unwrap();
        let r = record(RunState::Stopped, "docker", 5);
        write(home.path(), &name, &r).unwrap();
        let back = read(home.path(), &name).unwrap();
        assert_eq!(back.state, RunState::Stopped);
        assert_eq!(back.idle_timeout, r.idle_timeout);
        assert_eq!(names(home.path()), vec![name.clone()]);
        forget(home.path(), &name);
        assert!(read(home.path(), &name).is_none());
        // a torn record is no record (and not a stop)
        fs::write(record_path(home.path(), &name), b"{\"provider\":").unwrap();
        assert!(read(home.path(), &name).is_none());
    }
}
