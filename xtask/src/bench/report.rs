//! The results file, the ratios with their targets, the markdown table and the
//! comparison with a baseline run.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use super::fixture::{FixtureInfo, Preset};
use super::measure::{CaseResult, Stats, git_cmd};

/// Everything one run measured (the JSON under `target/bench-startup/`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Results {
    pub(crate) schema: u32,
    pub(crate) timestamp: String,
    pub(crate) command: String,
    pub(crate) headstart_commit: Option<String>,
    pub(crate) machine: Machine,
    pub(crate) fixture: FixtureInfo,
    /// Time to have the fixture ready (generation on a cold cache), ms.
    pub(crate) fixture_ready_ms: f64,
    pub(crate) reps: usize,
    pub(crate) cases: Vec<CaseResult>,
    pub(crate) ratios: Vec<Ratio>,
    /// Wall time of the whole run up to the report, seconds.
    pub(crate) wall_s: f64,
}

/// Where the numbers come from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Machine {
    pub(crate) cores: usize,
    pub(crate) kernel: String,
    pub(crate) git: String,
    pub(crate) restore_method: String,
    pub(crate) build_profile: String,
    /// `/proc/loadavg` when the run started: other work on the machine skews numbers.
    #[serde(default)]
    pub(crate) load_at_start: String,
    /// The filesystem of the scratch directory (sandboxes, snapshots, clones).
    #[serde(default)]
    pub(crate) scratch_fs: Option<MountInfo>,
}

/// One mount, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct MountInfo {
    pub(crate) mount_point: String,
    pub(crate) fstype: String,
    pub(crate) source: String,
    /// Per-mount options (`rw,relatime`).
    pub(crate) options: String,
    /// Per-superblock options (`rw,lowerdir=...`, `rw,discard`).
    pub(crate) super_options: String,
    /// For ext3/ext4: whether it has a journal (`/proc/fs/jbd2/<device>-*` exists).
    /// Without one, ext4 skips inodes freed in the last 60-360 s each time it allocates
    /// one (`find_inode_bit` → `recently_deleted`), so creating a file costs in
    /// proportion to what was deleted just before: the bench's own teardowns.
    #[serde(default)]
    pub(crate) journal: Option<bool>,
}

/// `\040` and the like in mountinfo paths back to their bytes.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one line of `/proc/self/mountinfo`: `id parent major:minor root mount_point
/// options [optional fields...] - fstype source super_options`.
pub(crate) fn parse_mountinfo_line(line: &str) -> Option<MountInfo> {
    let (pre, post) = line.split_once(" - ")?;
    let pre: Vec<&str> = pre.split(' ').collect();
    let mut post = post.split(' ');
    Some(MountInfo {
        mount_point: unescape_octal(pre.get(4)?),
        options: (*pre.get(5)?).to_owned(),
        fstype: post.next()?.to_owned(),
        source: unescape_octal(post.next()?),
        super_options: post.next().unwrap_or_default().to_owned(),
        journal: None,
    })
}

/// Whether the ext3/ext4 filesystem on `source` (`/dev/vda`) has a journal: jbd2 lists
/// each journal it runs as `<device>-<inode>`. `None` for other filesystems.
fn has_journal(fstype: &str, source: &str) -> Option<bool> {
    if !matches!(fstype, "ext3" | "ext4") {
        return None;
    }
    let dev = Path::new(source).file_name()?.to_str()?.to_owned();
    let prefix = format!("{dev}-");
    let journals = std::fs::read_dir("/proc/fs/jbd2").ok();
    Some(journals.is_some_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with(&prefix)))
    }))
}

/// The mount `path` lives on: the last listed mount whose mount point is `path` or one
/// of its ancestors, longest first.
pub(crate) fn mount_of(path: &Path, mountinfo: &str) -> Option<MountInfo> {
    mountinfo
        .lines()
        .filter_map(parse_mountinfo_line)
        .filter(|m| path.starts_with(&m.mount_point))
        .fold(None, |best: Option<MountInfo>, m| match best {
            Some(b) if b.mount_point.len() > m.mount_point.len() => Some(b),
            _ => Some(m),
        })
}

/// The mount of `dir` (canonicalised) on this machine.
pub(crate) fn scratch_fs(dir: &Path) -> Option<MountInfo> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut m = mount_of(&dir, &info)?;
    m.journal = has_journal(&m.fstype, &m.source);
    Some(m)
}

impl Machine {
    pub(crate) fn probe(restore_method: String, load_at_start: String, scratch: &Path) -> Self {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let git = git_cmd()
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel,
            git,
            restore_method,
            build_profile: if cfg!(debug_assertions) {
                "debug (numbers not representative: run through `cargo xtask`, which builds in release)".into()
            } else {
                "release".into()
            },
            load_at_start,
            scratch_fs: scratch_fs(scratch),
        }
    }
}

/// The commit of the headstart checkout the bench was built from.
pub(crate) fn git_head_of_workspace() -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let out = git_cmd()
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// One ratio of two cases, with its target when one is set. When both cases ran in one
/// interleaved round, `value` is the median of the per-pair ratios (repetition `i` of
/// the numerator over repetition `i` of the denominator), with their min and max;
/// otherwise the ratio of the two medians.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Ratio {
    pub(crate) id: String,
    pub(crate) label: String,
    pub(crate) numerator: String,
    pub(crate) denominator: String,
    pub(crate) value: Option<f64>,
    /// `paired` (median of per-pair ratios) or `medians` (ratio of the medians).
    #[serde(default)]
    pub(crate) method: String,
    /// Min and max of the per-pair ratios (paired only).
    #[serde(default)]
    pub(crate) min: Option<f64>,
    #[serde(default)]
    pub(crate) max: Option<f64>,
    /// The per-pair ratios, in repetition order (paired only).
    #[serde(default)]
    pub(crate) pairs: Vec<f64>,
    /// The ratio of the two medians, whatever the method.
    #[serde(default)]
    pub(crate) ratio_of_medians: Option<f64>,
    /// The ratio must be at most this.
    pub(crate) target_max: Option<f64>,
    /// `Some(true)` PASS, `Some(false)` MISS, `None` not measured.
    pub(crate) pass: Option<bool>,
    pub(crate) note: Option<String>,
}

fn case_of<'a>(cases: &'a [CaseResult], id: &str) -> Option<&'a CaseResult> {
    cases.iter().find(|c| c.id == id && c.skipped.is_none())
}

fn median_of(cases: &[CaseResult], id: &str) -> Option<f64> {
    case_of(cases, id).and_then(CaseResult::median)
}

/// Per-pair ratios of two cases of one interleaved round: repetition `i` of `num`
/// over repetition `i` of `den`. `None` when they did not run in one round or their
/// repetitions do not pair up.
pub(crate) fn pair_ratios(num: &CaseResult, den: &CaseResult) -> Option<Vec<f64>> {
    let same_round = num.round.is_some() && num.round == den.round;
    if !same_round || num.samples.len() != den.samples.len() || num.samples.is_empty() {
        return None;
    }
    num.samples
        .iter()
        .zip(&den.samples)
        .map(|(n, d)| (d.total_ms > 0.0).then(|| n.total_ms / d.total_ms))
        .collect()
}

/// The ratios that matter, with the issue's targets.
pub(crate) fn ratios(
    cases: &[CaseResult],
    fixture: &FixtureInfo,
    preset: &Preset,
    real_repo: bool,
    scaling_skipped: bool,
) -> Vec<Ratio> {
    let targets_apply = !real_repo && preset.name == "medium";
    let scope_note = (!targets_apply).then(|| {
        format!(
            "targets are defined for the medium fixture over loopback HTTP; this run used {}",
            fixture.name
        )
    });
    let mk = |id: &str, label: &str, num: &str, den: &str, target: f64| {
        let ratio_of_medians = match (median_of(cases, num), median_of(cases, den)) {
            (Some(n), Some(d)) if d > 0.0 => Some(n / d),
            _ => None,
        };
        let pairs = match (case_of(cases, num), case_of(cases, den)) {
            (Some(n), Some(d)) => pair_ratios(n, d),
            _ => None,
        };
        let stats = pairs.as_deref().and_then(Stats::of);
        let value = stats.map(|s| s.median).or(ratio_of_medians);
        Ratio {
            id: id.to_owned(),
            label: label.to_owned(),
            numerator: num.to_owned(),
            denominator: den.to_owned(),
            value,
            method: if stats.is_some() { "paired" } else { "medians" }.to_owned(),
            min: stats.map(|s| s.min),
            max: stats.map(|s| s.max),
            pairs: pairs.unwrap_or_default(),
            ratio_of_medians,
            target_max: Some(target),
            pass: value.map(|v| v <= target),
            note: if value.is_none() {
                Some("not measured (a case is missing or failed)".into())
            } else {
                scope_note.clone()
            },
        }
    };
    let mut out = vec![
        mk(
            "warm_vs_depth1",
            "warm / git clone --depth=1",
            "hs_warm_1",
            "git_clone_depth1",
            0.1,
        ),
        mk(
            "warm_vs_full",
            "warm / git clone (full)",
            "hs_warm_1",
            "git_clone_full",
            1.0 / 30.0,
        ),
        mk(
            "cold_vs_depth1",
            "cold / git clone --depth=1",
            "hs_cold",
            "git_clone_depth1",
            1.1,
        ),
        mk(
            "warm_vs_floor",
            "warm / floor (git fetch + checkout -B on the same snapshot), 1 ahead",
            "hs_warm_1",
            "floor_warm_1",
            0.7,
        ),
        mk(
            "cli_warm_vs_floor",
            "`headstart up` CLI warm / floor, 1 ahead",
            "cli_warm_1",
            "floor_warm_1",
            0.8,
        ),
        mk(
            "other_branch_vs_clone_branch",
            "warm to another branch / git clone --depth=1 --branch",
            "hs_warm_other_branch",
            "git_clone_depth1_branch",
            0.5,
        ),
        mk(
            "orphan_branch_vs_clone_branch",
            "warm to an orphan branch (a far tree) / git clone --depth=1 --branch of it",
            "hs_warm_orphan_branch",
            "git_clone_depth1_orphan_branch",
            0.5,
        ),
        mk(
            "warm100_vs_warm1",
            "warm(100 ahead) / warm(1 ahead)",
            "hs_warm_100",
            "hs_warm_1",
            2.0,
        ),
    ];
    // History size: the large fixture's warm start over the small one's.
    let (large, small) = match preset.name {
        "large" => ("hs_warm_1", "hs_warm_1_small"),
        "small" => ("hs_warm_1_large", "hs_warm_1"),
        _ => ("hs_warm_1_large", "hs_warm_1_small"),
    };
    let mut size = mk(
        "warm_large_vs_small",
        "warm(large) / warm(small)",
        large,
        small,
        3.0,
    );
    if real_repo || scaling_skipped {
        size.value = None;
        size.pass = None;
        size.note = Some(
            "not measured in this run (--quick, --repo or --no-scaling: it needs the small and \
             the large fixture)"
                .into(),
        );
    } else {
        // This target is about history size, not the medium fixture.
        size.note = None;
    }
    out.push(size);
    out
}

fn ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.2} s", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20))
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

/// The ratios block (printed first) and the table, as markdown.
pub(crate) fn render(r: &Results) -> String {
    let mut s = String::new();
    let f = &r.fixture;
    let _ = writeln!(s, "## headstart startup bench\n");
    let _ = writeln!(
        s,
        "Fixture `{}`: {} files ({:.1} MB) at the tip, {} commits, pack {:.1} MB; \
         served on loopback by `git http-backend` (smart HTTP) and `git daemon`. \
         {} repetitions per case, medians. Machine: {} cores (load average {} at the start), \
         Linux {}, {}, restore method `{}`, {} build. headstart commit {}.\n",
        f.name,
        f.files_at_tip,
        f.bytes_at_tip as f64 / 1e6,
        f.commits,
        f.pack_bytes as f64 / 1e6,
        r.reps,
        r.machine.cores,
        r.machine.load_at_start,
        r.machine.kernel,
        r.machine.git,
        r.machine.restore_method,
        r.machine.build_profile,
        r.headstart_commit.as_deref().unwrap_or("unknown"),
    );
    if let Some(m) = &r.machine.scratch_fs {
        let _ = writeln!(
            s,
            "Scratch directory on `{}` ({} from `{}`{}), mount options `{}`, superblock options \
             `{}`.\n",
            m.mount_point,
            m.fstype,
            m.source,
            match m.journal {
                Some(true) => ", with a journal",
                Some(false) => {
                    ", **without a journal**: each file created skips the inodes freed in the \
                     last minutes, so creation costs follow the bench's own deletions"
                }
                None => "",
            },
            m.options,
            m.super_options
        );
    }
    let _ = writeln!(
        s,
        "Ratios marked with a per-pair range ran interleaved (one repetition of each case \
         in turn); their value is the median of the per-pair ratios.\n"
    );
    let _ = writeln!(
        s,
        "### Ratios (targets on the medium fixture, loopback HTTP)\n"
    );
    let _ = writeln!(
        s,
        "| ratio | value | per-pair min–max | target | result |\n|---|---|---|---|---|"
    );
    for q in &r.ratios {
        let value = q
            .value
            .map_or_else(|| "—".to_owned(), |v| format!("{v:.3}"));
        let spread = match (q.min, q.max) {
            (Some(a), Some(b)) => format!("{a:.3}–{b:.3} ({} pairs)", q.pairs.len()),
            _ if q.value.is_some() => "(ratio of medians, not paired)".to_owned(),
            _ => "—".to_owned(),
        };
        let target = q
            .target_max
            .map_or_else(String::new, |t| format!("≤ {}", fmt_target(t)));
        let result = match q.pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "not measured",
        };
        let note = q
            .note
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "| {} | {value} | {spread} | {target} | {result}{note} |",
            q.label
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "### Cases\n\n| case | median | min | max | `git status` after | received | phases (median) |\n|---|---|---|---|---|---|---|"
    );
    for c in &r.cases {
        if let Some(why) = &c.skipped {
            let _ = writeln!(s, "| {} | — | — | — | — | — | skipped: {why} |", c.label);
            continue;
        }
        let Some(t) = c.total else { continue };
        let status = c.status.map_or_else(|| "—".to_owned(), |x| ms(x.median));
        let received = c.received_bytes.map_or_else(|| "—".to_owned(), bytes);
        let mut phases: Vec<String> = c
            .phases
            .iter()
            .map(|(n, v)| format!("{n} {}", ms(*v)))
            .collect();
        if let Some(n) = &c.note {
            phases.push(format!("({n})"));
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {status} | {received} | {} |",
            c.label,
            ms(t.median),
            ms(t.min),
            ms(t.max),
            phases.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "\nheadstart runs in-process (library `FastStart`, release build); each repetition \
         starts a fresh sandbox, checks HEAD, the index tree and a clean `git status` \
         against upstream; `git status` is timed right after the start (for the cold start \
         it runs while the background snapshot build does). Phases: `connect`, `fetch` and \
         `checkout` split the engine's clone or sync (from its debug events), `git_other` is \
         the rest of it (opening the repository, submodule/LFS check, refs); `other` is time \
         outside every reported phase. Fixture ready in {:.1} s{}.",
        r.fixture_ready_ms / 1e3,
        if r.fixture.generated_ms > 0.0 {
            " (generated on a cold cache)"
        } else {
            " (cached)"
        }
    );
    s
}

fn fmt_target(t: f64) -> String {
    if (t - 1.0 / 30.0).abs() < 1e-9 {
        "1/30".into()
    } else if (t - 0.1).abs() < 1e-9 {
        "1/10".into()
    } else {
        format!("{t}")
    }
}

/// The change per case against a baseline results file.
pub(crate) fn compare(r: &Results, baseline: &Path) -> anyhow::Result<String> {
    let bytes =
        std::fs::read(baseline).with_context(|| format!("reading {}", baseline.display()))?;
    let base: Results = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a bench results file", baseline.display()))?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Change against {} ({}, commit {})\n\n| case | baseline | now | change |\n|---|---|---|---|",
        baseline.display(),
        base.timestamp,
        base.headstart_commit.as_deref().unwrap_or("?")
    );
    for c in &r.cases {
        let now = c.median();
        let before = base
            .cases
            .iter()
            .find(|b| b.id == c.id && b.skipped.is_none())
            .and_then(CaseResult::median);
        let change = match (before, now) {
            (Some(b), Some(n)) if b > 0.0 => format!("{:+.1} %", (n / b - 1.0) * 100.0),
            _ => "—".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {change} |",
            c.label,
            before.map_or_else(|| "—".into(), ms),
            now.map_or_else(|| "—".into(), ms)
        );
    }
    if base.fixture.name != r.fixture.name {
        let _ = writeln!(
            s,
            "\n(the baseline used the {} fixture, this run {}: not comparable)",
            base.fixture.name, r.fixture.name
        );
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::measure::Sample;

    fn case(id: &str, ms: &[f64]) -> CaseResult {
        let mut c = CaseResult::new(id, id, "g", "http", "medium");
        c.samples = ms.iter().map(|m| Sample::single("x", *m)).collect();
        c.finish()
    }

    fn fixture() -> FixtureInfo {
        FixtureInfo {
            name: "medium".into(),
            generator_version: Some(1),
            path: "/x".into(),
            default_branch: "main".into(),
            other_branch: None,
            orphan_branch: None,
            files_at_tip: 1,
            bytes_at_tip: 1,
            commits: 1,
            pack_bytes: 1,
            generated_ms: 0.0,
        }
    }

    #[test]
    fn ratios_pass_and_miss_against_their_targets() {
        let cases = vec![
            case("hs_warm_1", &[50.0, 60.0, 70.0]),
            case("git_clone_depth1", &[400.0, 500.0, 600.0]),
            case("git_clone_full", &[3000.0]),
            case("hs_cold", &[560.0]),
            case("hs_warm_100", &[130.0]),
            case("hs_warm_1_small", &[40.0]),
            case("hs_warm_1_large", &[100.0]),
        ];
        let r = ratios(&cases, &fixture(), &Preset::MEDIUM, false, false);
        let get = |id: &str| r.iter().find(|q| q.id == id).unwrap();
        assert_eq!(get("warm_vs_depth1").value, Some(60.0 / 500.0));
        assert_eq!(get("warm_vs_depth1").pass, Some(false));
        assert_eq!(get("warm_vs_full").pass, Some(true));
        assert_eq!(get("cold_vs_depth1").pass, Some(false));
        assert_eq!(get("warm100_vs_warm1").pass, Some(false));
        assert_eq!(get("warm_large_vs_small").value, Some(2.5));
        assert_eq!(get("warm_large_vs_small").pass, Some(true));
    }

    #[test]
    fn a_missing_case_is_not_measured_rather_than_a_pass() {
        let cases = vec![case("git_clone_depth1", &[400.0])];
        let r = ratios(&cases, &fixture(), &Preset::MEDIUM, false, true);
        assert!(r.iter().all(|q| q.pass.is_none() && q.value.is_none()));
    }

    fn paired(id: &str, round: &str, ms: &[f64]) -> CaseResult {
        let mut c = CaseResult::new(id, id, "g", "http", "medium");
        c.samples = ms.iter().map(|m| Sample::single("x", *m)).collect();
        c.round = Some(round.into());
        c.finish()
    }

    #[test]
    fn an_interleaved_ratio_is_the_median_of_per_pair_ratios() {
        // Pairs: 10/100, 30/100, 60/200, 10/50, 90/300 = 0.1, 0.3, 0.3, 0.2, 0.3.
        let cases = vec![
            paired("hs_warm_1", "ahead_1", &[10.0, 30.0, 60.0, 10.0, 90.0]),
            paired(
                "floor_warm_1",
                "ahead_1",
                &[100.0, 100.0, 200.0, 50.0, 300.0],
            ),
            // Same samples, another round: not paired.
            paired("cli_warm_1", "elsewhere", &[10.0, 30.0, 60.0, 10.0, 90.0]),
        ];
        let r = ratios(&cases, &fixture(), &Preset::MEDIUM, false, true);
        let get = |id: &str| r.iter().find(|q| q.id == id).unwrap();
        let w = get("warm_vs_floor");
        assert_eq!(w.method, "paired");
        assert_eq!(w.pairs, vec![0.1, 0.3, 0.3, 0.2, 0.3]);
        assert_eq!(w.value, Some(0.3));
        assert_eq!((w.min, w.max), (Some(0.1), Some(0.3)));
        // The ratio of medians (30 / 100) is kept beside it.
        assert_eq!(w.ratio_of_medians, Some(0.3));
        assert_eq!(w.pass, Some(true));
        let c = get("cli_warm_vs_floor");
        assert_eq!(c.method, "medians");
        assert!(c.pairs.is_empty() && c.min.is_none());
        assert_eq!(c.value, Some(0.3));
        // Even counts: the median is the mean of the middle two.
        let n = paired("a", "r", &[1.0, 2.0, 3.0, 8.0]);
        let d = paired("b", "r", &[1.0, 1.0, 1.0, 1.0]);
        let pr = pair_ratios(&n, &d).unwrap();
        assert_eq!(Stats::of(&pr).unwrap().median, 2.5);
        // Unequal repetition counts do not pair.
        let d3 = paired("b", "r", &[1.0, 1.0, 1.0]);
        assert!(pair_ratios(&n, &d3).is_none());
    }

    #[test]
    fn mountinfo_lines_parse_and_the_longest_mount_wins() {
        let line = "36 35 98:0 /mnt1 /mnt/parent\\040dir rw,noatime master:1 - ext3 /dev/root \
                    rw,errors=continue";
        let m = parse_mountinfo_line(line).unwrap();
        assert_eq!(m.mount_point, "/mnt/parent dir");
        assert_eq!(m.options, "rw,noatime");
        assert_eq!(m.fstype, "ext3");
        assert_eq!(m.source, "/dev/root");
        assert_eq!(m.super_options, "rw,errors=continue");
        // No optional fields.
        let m = parse_mountinfo_line("22 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/l")
            .unwrap();
        assert_eq!(
            (m.mount_point.as_str(), m.fstype.as_str()),
            ("/", "overlay")
        );
        assert!(parse_mountinfo_line("garbage").is_none());
        let info = "22 1 0:21 / / rw,relatime - overlay overlay rw\n\
                    30 22 252:0 / /work rw,relatime shared:5 - ext4 /dev/vda rw,discard\n\
                    31 22 252:0 / /workshop rw - xfs /dev/vdb rw\n";
        let m = mount_of(Path::new("/work/wt/x"), info).unwrap();
        assert_eq!(
            (m.mount_point.as_str(), m.fstype.as_str()),
            ("/work", "ext4")
        );
        assert_eq!(mount_of(Path::new("/tmp"), info).unwrap().fstype, "overlay");
    }
}
