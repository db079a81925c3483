//! Samples, their summaries, and the checks every repetition runs: HEAD and the tree
//! against upstream, and a timed `git status` right after the start.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use sandbox_core::StartupReport;

/// One repetition of one case.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Sample {
    /// Wall time of the start (or the git command), in milliseconds.
    pub(crate) total_ms: f64,
    /// `git status` right after, in milliseconds.
    pub(crate) status_ms: Option<f64>,
    /// Phases as the start reported them (name, ms), in order.
    pub(crate) phases: Vec<(String, f64)>,
    /// Bytes the git transfer received, when known.
    pub(crate) received_bytes: Option<u64>,
}

impl Sample {
    /// A sample from a headstart start: the wall time around the call and its phases
    /// (repeated phases summed), plus `other` for time no phase accounts for.
    pub(crate) fn from_report(wall_ms: f64, report: &StartupReport) -> Self {
        let mut phases: Vec<(String, f64)> = Vec::new();
        for p in &report.phases {
            let ms = p.duration.as_secs_f64() * 1e3;
            match phases.iter_mut().find(|(n, _)| n == p.name.as_str()) {
                Some((_, v)) => *v += ms,
                None => phases.push((p.name.as_str().to_owned(), ms)),
            }
        }
        let accounted: f64 = phases.iter().map(|(_, v)| v).sum();
        if wall_ms - accounted > 0.0 {
            phases.push(("other".to_owned(), wall_ms - accounted));
        }
        Self {
            total_ms: wall_ms,
            status_ms: None,
            phases,
            received_bytes: Some(report.received_bytes),
        }
    }

    /// A sample with one phase named `phase`.
    pub(crate) fn single(phase: &str, ms: f64) -> Self {
        Self {
            total_ms: ms,
            status_ms: None,
            phases: vec![(phase.to_owned(), ms)],
            received_bytes: None,
        }
    }
}

/// Median, min and max of a series.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Stats {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Stats {
    pub(crate) fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// One case's result: every sample and the summaries.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct CaseResult {
    /// Stable id for comparisons across runs (`hs_warm_1`).
    pub(crate) id: String,
    /// What a person reads.
    pub(crate) label: String,
    /// `headstart`, `git`, `docker`, `scaling`.
    pub(crate) group: String,
    /// `http`, `git-daemon`, `local`.
    pub(crate) transport: String,
    /// Which fixture it ran on.
    pub(crate) fixture: String,
    pub(crate) samples: Vec<Sample>,
    pub(crate) total: Option<Stats>,
    pub(crate) status: Option<Stats>,
    /// Median per phase, in the order the phases first appeared.
    pub(crate) phases: Vec<(String, f64)>,
    pub(crate) received_bytes: Option<u64>,
    /// Why the case did not run (no Docker engine, ...).
    pub(crate) skipped: Option<String>,
    /// Anything worth knowing (the restore method used, ...).
    pub(crate) note: Option<String>,
    /// The interleaved round the case ran in: cases of one round ran repetition by
    /// repetition in turn, so their samples pair up by index.
    #[serde(default)]
    pub(crate) round: Option<String>,
}

impl CaseResult {
    pub(crate) fn new(id: &str, label: &str, group: &str, transport: &str, fixture: &str) -> Self {
        Self {
            id: id.to_owned(),
            label: label.to_owned(),
            group: group.to_owned(),
            transport: transport.to_owned(),
            fixture: fixture.to_owned(),
            samples: Vec::new(),
            total: None,
            status: None,
            phases: Vec::new(),
            received_bytes: None,
            skipped: None,
            note: None,
            round: None,
        }
    }

    pub(crate) fn skipped(mut self, why: impl Into<String>) -> Self {
        self.skipped = Some(why.into());
        self
    }

    /// Computes the summaries from the samples.
    pub(crate) fn finish(mut self) -> Self {
        let totals: Vec<f64> = self.samples.iter().map(|s| s.total_ms).collect();
        self.total = Stats::of(&totals);
        let statuses: Vec<f64> = self.samples.iter().filter_map(|s| s.status_ms).collect();
        self.status = Stats::of(&statuses);
        let mut names: Vec<String> = Vec::new();
        for s in &self.samples {
            for (n, _) in &s.phases {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        self.phases = names
            .into_iter()
            .map(|n| {
                let v: Vec<f64> = self
                    .samples
                    .iter()
                    .map(|s| {
                        s.phases
                            .iter()
                            .filter(|(m, _)| *m == n)
                            .map(|(_, v)| v)
                            .sum()
                    })
                    .collect();
                let median = Stats::of(&v).map_or(0.0, |s| s.median);
                (n, median)
            })
            .collect();
        let mut rb: Vec<u64> = self
            .samples
            .iter()
            .filter_map(|s| s.received_bytes)
            .collect();
        rb.sort_unstable();
        self.received_bytes = rb.get(rb.len() / 2).copied();
        self
    }

    pub(crate) fn median(&self) -> Option<f64> {
        self.total.map(|s| s.median)
    }
}

/// A `git` command isolated from the machine's configuration.
pub(crate) fn git_cmd() -> Command {
    let mut cmd = Command::new("git");
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null());
    cmd
}

/// Runs a git command, failing with its stderr.
pub(crate) fn run_git(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `git -C dir <args>`, failing with its stderr.
pub(crate) fn run_git_in(dir: &Path, args: &[&str], what: &str) -> anyhow::Result<String> {
    run_git(git_cmd().arg("-C").arg(dir).args(args), what)
}

/// The checks after a start: `git status` (timed; the worktree must be clean), HEAD on
/// `branch` at `commit`, and the index's tree equal to the commit's tree. Returns the
/// `git status` time in milliseconds.
pub(crate) fn check_workspace(ws: &Path, branch: &str, commit: &str) -> anyhow::Result<f64> {
    let t = Instant::now();
    let status = run_git_in(
        ws,
        &["status", "--porcelain", "--untracked-files=normal"],
        "git status",
    )?;
    let status_ms = t.elapsed().as_secs_f64() * 1e3;
    if !status.trim().is_empty() {
        let first: Vec<&str> = status.lines().take(5).collect();
        bail!(
            "the workspace {} is not clean after the start: {}",
            ws.display(),
            first.join("; ")
        );
    }
    let repo = git2::Repository::open(ws)
        .with_context(|| format!("{} is not a repository", ws.display()))?;
    let head = repo.head().context("reading HEAD")?;
    let name = head.shorthand().unwrap_or_default().to_owned();
    let id = head.peel_to_commit().context("HEAD names no commit")?;
    if name != branch || id.id().to_string() != commit {
        bail!(
            "HEAD of {} is {name} at {}, expected {branch} at {commit}",
            ws.display(),
            id.id()
        );
    }
    let mut index = repo.index().context("reading the index")?;
    let tree = index.write_tree().context("writing the index's tree")?;
    if tree != id.tree_id() {
        bail!(
            "the index of {} holds tree {tree}, expected {} (the upstream commit's)",
            ws.display(),
            id.tree_id()
        );
    }
    Ok(status_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_odd_and_even_series() {
        let s = Stats::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 5.0));
        let s = Stats::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn phase_medians_sum_repeated_phases_per_sample() {
        let mut c = CaseResult::new("x", "x", "g", "http", "f");
        c.samples = vec![
            Sample {
                total_ms: 10.0,
                phases: vec![("a".into(), 2.0), ("a".into(), 3.0), ("b".into(), 5.0)],
                ..Sample::default()
            },
            Sample {
                total_ms: 20.0,
                phases: vec![("b".into(), 7.0)],
                ..Sample::default()
            },
            Sample {
                total_ms: 30.0,
                phases: vec![("a".into(), 1.0)],
                ..Sample::default()
            },
        ];
        let c = c.finish();
        assert_eq!(c.median(), Some(20.0));
        assert_eq!(c.phases, vec![("a".into(), 1.0), ("b".into(), 5.0)]);
    }
}
