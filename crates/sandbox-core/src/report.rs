//! What a start did: [`StartupReport`].

use std::time::{Duration, Instant};

/// A named phase of a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Deciding fast paths (feature flags).
    Flags,
    /// Looking up a base snapshot.
    SnapshotLookup,
    /// Fetching a base snapshot from a shared registry into the local store (a local
    /// miss on a host configured with a registry).
    SnapshotPull,
    /// Publishing a built snapshot to a shared registry (builds only).
    SnapshotPush,
    /// Creating the sandbox (and restoring a snapshot into it).
    Provision,
    /// Full or shallow clone (cold path).
    GitClone,
    /// Shallow fetch of one branch plus checkout (warm path).
    GitSync,
    /// Running setup commands.
    Setup,
    /// Writing a snapshot.
    Snapshot,
    /// Setting the git identity and running the recipe's after-start hooks (every
    /// start: cold, warm, reconnected).
    AfterStart,
}

impl Phase {
    /// The snake_case name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flags => "flags",
            Self::SnapshotLookup => "snapshot_lookup",
            Self::SnapshotPull => "snapshot_pull",
            Self::SnapshotPush => "snapshot_push",
            Self::Provision => "provision",
            Self::GitClone => "git_clone",
            Self::GitSync => "git_sync",
            Self::Setup => "setup",
            Self::Snapshot => "snapshot",
            Self::AfterStart => "after_start",
        }
    }
}

/// How long one phase took.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PhaseTiming {
    /// The phase.
    pub name: Phase,
    /// Its duration.
    #[serde(rename = "ms", serialize_with = "ms")]
    pub duration: Duration,
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

/// Which way a start went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartPath {
    /// From a base snapshot plus a catch-up sync.
    Warm,
    /// A fresh clone.
    Cold,
    /// An existing sandbox of the requested name, returned as it was (no git).
    Reconnected,
    /// The user's own directory used as the workspace (no git, no snapshot).
    Workdir,
}

/// Where the workspace ended up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeadInfo {
    /// The branch HEAD names.
    pub branch: String,
    /// The commit HEAD points at.
    pub commit: String,
}

/// What one start did: the path, why, and the phases with their durations.
/// The CLI prints it, the bench aggregates it, libraries get it as a value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StartupReport {
    /// Warm or cold.
    pub path: StartPath,
    /// Why that path (e.g. "snapshot 1700000000000-ab12cd34 is ready", "no snapshot").
    pub reason: String,
    /// Phases in the order they ran.
    pub phases: Vec<PhaseTiming>,
    /// The whole start.
    #[serde(rename = "total_ms", serialize_with = "ms")]
    pub total: Duration,
    /// Where HEAD ended up.
    pub head: Option<HeadInfo>,
    /// Bytes the git transfer received (clone or catch-up fetch).
    pub received_bytes: u64,
}

impl StartupReport {
    /// The duration of `phase`, summed if it ran more than once.
    pub fn phase(&self, phase: Phase) -> Option<Duration> {
        let mut it = self.phases.iter().filter(|p| p.name == phase).peekable();
        it.peek()?;
        Some(it.map(|p| p.duration).sum())
    }
}

impl std::fmt::Display for StartPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Warm => "warm",
            Self::Cold => "cold",
            Self::Reconnected => "reconnected",
            Self::Workdir => "workdir",
        })
    }
}

/// One line: path, total, head and phases, e.g.
/// `warm in 64.1 ms on main@1a2b3c4d (provision 2.0 ms, git_sync 60.3 ms): snapshot … is ready`.
impl std::fmt::Display for StartupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} in {:.1} ms",
            self.path,
            self.total.as_secs_f64() * 1e3
        )?;
        if let Some(h) = &self.head {
            let short = h.commit.get(..8).unwrap_or(&h.commit);
            write!(f, " on {}@{short}", h.branch)?;
        }
        if !self.phases.is_empty() {
            f.write_str(" (")?;
            for (i, p) in self.phases.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(
                    f,
                    "{} {:.1} ms",
                    p.name.as_str(),
                    p.duration.as_secs_f64() * 1e3
                )?;
            }
            f.write_str(")")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Collects phase timings while a start runs.
#[derive(Debug)]
pub struct PhaseClock {
    started: Instant,
    phases: Vec<PhaseTiming>,
}

impl Default for PhaseClock {
    fn default() -> Self {
        Self::start()
    }
}

impl PhaseClock {
    /// Starts the overall clock.
    pub fn start() -> Self {
        Self {
            started: Instant::now(),
            phases: Vec::new(),
        }
    }

    /// Records a phase that took `duration`.
    pub fn record(&mut self, name: Phase, duration: Duration) {
        self.phases.push(PhaseTiming { name, duration });
        tracing::debug!(
            phase = name.as_str(),
            ms = duration.as_secs_f64() * 1e3,
            "phase done"
        );
    }

    /// Times an async phase.
    pub async fn time<T, F: std::future::Future<Output = T>>(&mut self, name: Phase, fut: F) -> T {
        let t = Instant::now();
        let out = fut.await;
        self.record(name, t.elapsed());
        out
    }

    /// The phases so far.
    pub fn phases(&self) -> &[PhaseTiming] {
        &self.phases
    }

    /// Finishes into a report.
    pub fn finish(
        self,
        path: StartPath,
        reason: impl Into<String>,
        head: Option<HeadInfo>,
        received_bytes: u64,
    ) -> StartupReport {
        StartupReport {
            path,
            reason: reason.into(),
            total: self.started.elapsed(),
            phases: self.phases,
            head,
            received_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_displays_on_one_line() {
        let report = StartupReport {
            path: StartPath::Warm,
            reason: "snapshot s1 is ready".into(),
            phases: vec![PhaseTiming {
                name: Phase::GitSync,
                duration: Duration::from_millis(12),
            }],
            total: Duration::from_millis(20),
            head: Some(HeadInfo {
                branch: "main".into(),
                commit: "0123456789abcdef".into(),
            }),
            received_bytes: 0,
        };
        assert_eq!(
            report.to_string(),
            "warm in 20.0 ms on main@01234567 (git_sync 12.0 ms): snapshot s1 is ready"
        );
    }
}
