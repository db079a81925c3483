//! Deterministic upstream repositories for the bench, generated through a
//! `git fast-import` stream and cached under `target/bench-startup/fixtures/`.
//!
//! The shape imitates a source repository: files of source-like text lines spread over
//! two directory levels, a log-normal-ish spread of file sizes (a few large files), and a
//! history in which each commit edits one to three files (hot files more often), now
//! and then adds or deletes one. A second branch (`feature/bench`) forks a few dozen
//! commits before the tip and carries commits of its own. A third branch
//! (`orphan/bench`) is an orphan: one commit whose tree shares no path, blob or
//! history with `main` (a `gh-pages`-like site of as many files, with its own
//! `.gitignore`), for the far-branch case. The same preset and
//! generator version always give the same commits (fixed timestamps, a seeded PRNG).

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::measure::git_cmd;
use std::time::Instant;

use anyhow::{Context, bail};

/// Bump when the generated content changes: cached fixtures are keyed by it.
pub(crate) const GENERATOR_VERSION: u32 = 2;

/// The default branch of every generated fixture.
pub(crate) const MAIN: &str = "main";
/// The second branch, forked before the tip.
pub(crate) const FEATURE: &str = "feature/bench";
/// The orphan branch: a tree far from `main`'s.
pub(crate) const ORPHAN: &str = "orphan/bench";

/// A fixture size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Preset {
    pub(crate) name: &'static str,
    pub(crate) files: usize,
    pub(crate) commits: usize,
    /// Mean file size in bytes at the start of history.
    pub(crate) mean_file_bytes: usize,
}

impl Preset {
    pub(crate) const SMALL: Preset = Preset {
        name: "small",
        files: 1_000,
        commits: 1_000,
        mean_file_bytes: 2_000,
    };
    pub(crate) const MEDIUM: Preset = Preset {
        name: "medium",
        files: 3_000,
        commits: 20_000,
        mean_file_bytes: 5_000,
    };
    pub(crate) const LARGE: Preset = Preset {
        name: "large",
        files: 30_000,
        commits: 30_000,
        mean_file_bytes: 2_000,
    };

    pub(crate) fn by_name(name: &str) -> anyhow::Result<Preset> {
        match name {
            "small" => Ok(Self::SMALL),
            "medium" => Ok(Self::MEDIUM),
            "large" => Ok(Self::LARGE),
            other => bail!("unknown preset `{other}`; use small, medium or large"),
        }
    }

    fn seed(&self) -> u64 {
        self.name.bytes().fold(
            0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(GENERATOR_VERSION),
            |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3),
        )
    }
}

/// What a generated (or mirrored) fixture holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct FixtureInfo {
    /// `small`/`medium`/`large`, or the repository given with `--repo`.
    pub(crate) name: String,
    pub(crate) generator_version: Option<u32>,
    /// The bare repository.
    pub(crate) path: PathBuf,
    pub(crate) default_branch: String,
    /// A branch other than the default one, for the other-branch case.
    pub(crate) other_branch: Option<String>,
    /// An orphan branch sharing nothing with the default one, for the far-branch case
    /// (generated fixtures from version 2 on).
    #[serde(default)]
    pub(crate) orphan_branch: Option<String>,
    pub(crate) files_at_tip: usize,
    pub(crate) bytes_at_tip: u64,
    pub(crate) commits: usize,
    pub(crate) pack_bytes: u64,
    /// How long generating it took (0 when it came from the cache).
    pub(crate) generated_ms: f64,
}

/// A deterministic PRNG (splitmix64).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
}

const WORDS: &[&str] = &[
    "let",
    "fn",
    "self",
    "value",
    "result",
    "config",
    "buffer",
    "index",
    "count",
    "state",
    "request",
    "response",
    "handler",
    "error",
    "context",
    "options",
    "client",
    "server",
    "path",
    "name",
    "items",
    "entry",
    "cache",
    "token",
    "stream",
    "reader",
    "writer",
    "parse",
    "render",
    "update",
    "insert",
    "remove",
    "build",
    "start",
    "stop",
    "next",
    "len",
    "map",
    "filter",
    "collect",
    "iter",
    "into",
    "from",
    "as_str",
    "unwrap_or",
    "Some",
    "None",
    "Ok",
    "Err",
    "match",
    "if",
    "else",
    "return",
    "for",
    "in",
    "while",
    "struct",
    "impl",
    "pub",
    "use",
    "mod",
    "const",
    "static",
    "async",
    "await",
    "move",
    "true",
    "false",
    "u64",
    "usize",
    "String",
    "Vec",
    "Option",
    "Result",
    "Arc",
    "Mutex",
    "timeout",
    "retry",
    "offset",
    "limit",
    "header",
    "payload",
    "schema",
    "record",
    "session",
    "user",
    "account",
    "metric",
    "event",
    "queue",
    "worker",
    "task",
    "job",
];
const PUNCT: &[&str] = &[
    " ", " ", " ", ".", "(", ")", ", ", " = ", "::", "; ", " + ", " { ", " }", "&",
];

fn line(rng: &mut Rng) -> String {
    let indent = 4 * rng.below(4);
    let mut s = " ".repeat(indent);
    let words = 2 + rng.below(9);
    for _ in 0..words {
        s.push_str(WORDS[rng.below(WORDS.len())]);
        if rng.chance(150) {
            s.push_str(&format!("{}", rng.below(10_000)));
        }
        s.push_str(PUNCT[rng.below(PUNCT.len())]);
    }
    s.truncate(s.trim_end().len());
    s
}

/// The in-memory model of the tree while the history is generated.
#[derive(Debug)]
struct Model {
    files: BTreeMap<String, Vec<String>>,
    paths: Vec<String>,
    next_id: usize,
}

impl Model {
    fn new(preset: &Preset, rng: &mut Rng) -> Self {
        let mut files = BTreeMap::new();
        let mut paths = Vec::with_capacity(preset.files);
        for i in 0..preset.files {
            let path = file_path(i, preset.files);
            // Sizes: mostly around the mean, one in fifty ten times larger.
            let mut target = preset.mean_file_bytes / 3 + rng.below(preset.mean_file_bytes);
            if rng.chance(20) {
                target *= 10;
            }
            let mut lines = Vec::new();
            let mut size = 0;
            while size < target {
                let l = line(rng);
                size += l.len() + 1;
                lines.push(l);
            }
            files.insert(path.clone(), lines);
            paths.push(path);
        }
        Self {
            files,
            paths,
            next_id: preset.files,
        }
    }

    /// Picks a file, preferring the first fifth of the paths (hot files).
    fn pick(&self, rng: &mut Rng) -> String {
        let n = self.paths.len();
        let i = if rng.chance(700) {
            rng.below((n / 5).max(1))
        } else {
            rng.below(n)
        };
        self.paths[i].clone()
    }

    /// One commit's changes: (path, Some(new content) | None for delete).
    fn edit(&mut self, rng: &mut Rng, total_files: usize) -> Vec<(String, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let k = 1 + rng.below(3);
        for _ in 0..k {
            let path = self.pick(rng);
            let Some(lines) = self.files.get_mut(&path) else {
                continue;
            };
            let at = rng.below(lines.len().max(1));
            match rng.below(3) {
                0 => {
                    for _ in 0..1 + rng.below(6) {
                        lines.insert(at.min(lines.len()), line(rng));
                    }
                }
                1 if lines.len() > 4 => {
                    let end = (at + 1 + rng.below(3)).min(lines.len());
                    lines.drain(at..end);
                }
                _ => {
                    for j in at..(at + 1 + rng.below(4)).min(lines.len()) {
                        lines[j] = line(rng);
                    }
                }
            }
            let content = join(lines);
            out.push((path, Some(content)));
        }
        if rng.chance(20) {
            let path = file_path(self.next_id, total_files);
            self.next_id += 1;
            let lines: Vec<String> = (0..10 + rng.below(60)).map(|_| line(rng)).collect();
            out.push((path.clone(), Some(join(&lines))));
            self.files.insert(path.clone(), lines);
            self.paths.push(path);
        } else if rng.chance(5) && self.paths.len() > 10 {
            let i = rng.below(self.paths.len());
            let path = self.paths.swap_remove(i);
            self.files.remove(&path);
            out.retain(|(p, _)| p != &path);
            out.push((path, None));
        }
        out
    }
}

fn join(lines: &[String]) -> Vec<u8> {
    let mut v = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        v.extend_from_slice(l.as_bytes());
        v.push(b'\n');
    }
    v
}

/// `src/m03/s07/f00321.rs`: about 25 files per directory, two levels.
fn file_path(i: usize, total: usize) -> String {
    let per_dir = 25;
    let dirs = total.div_ceil(per_dir).max(1);
    let subs = (dirs as f64).sqrt().ceil() as usize;
    let d = (i / per_dir) % dirs;
    let ext = ["rs", "rs", "rs", "md", "toml", "ts", "py"][i % 7];
    format!("src/m{:03}/s{:03}/f{i:06}.{ext}", d / subs, d % subs)
}

/// A running `git fast-import`, fed through `w`.
struct FastImport {
    child: std::process::Child,
    w: BufWriter<std::process::ChildStdin>,
}

impl FastImport {
    /// Starts `git -C repo fast-import --quiet --done <extra>` behind a write buffer of
    /// `capacity` bytes.
    fn start(repo: &Path, extra: &[&str], capacity: usize) -> anyhow::Result<Self> {
        let mut child = git_cmd()
            .arg("-C")
            .arg(repo)
            .args(["fast-import", "--quiet", "--done"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting git fast-import")?;
        let stdin = child.stdin.take().context("fast-import stdin")?;
        Ok(Self {
            child,
            w: BufWriter::with_capacity(capacity, stdin),
        })
    }

    /// Ends the stream (`done`) and waits for the import: an error when it failed.
    fn finish(self) -> anyhow::Result<()> {
        let Self { child, mut w } = self;
        w.write_all(b"done\n")?;
        w.flush()?;
        drop(w);
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "git fast-import failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

/// Writes one commit to the fast-import stream.
fn write_commit(
    out: &mut impl Write,
    branch: &str,
    from: Option<&str>,
    seq: u64,
    message: &str,
    changes: &[(String, Option<Vec<u8>>)],
) -> std::io::Result<()> {
    let when = 1_600_000_000 + seq * 60;
    writeln!(out, "commit refs/heads/{branch}")?;
    writeln!(out, "author Bench <bench@example.com> {when} +0000")?;
    writeln!(out, "committer Bench <bench@example.com> {when} +0000")?;
    write!(out, "data {}\n{message}\n", message.len())?;
    if let Some(f) = from {
        writeln!(out, "from {f}")?;
    }
    for (path, content) in changes {
        match content {
            Some(data) => {
                write!(out, "M 100644 inline {path}\ndata {}\n", data.len())?;
                out.write_all(data)?;
                out.write_all(b"\n")?;
            }
            None => writeln!(out, "D {path}")?,
        }
    }
    writeln!(out)
}

/// Where the fixture for `preset` is cached.
pub(crate) fn cache_path(cache_dir: &Path, preset: &Preset) -> PathBuf {
    cache_dir.join(format!("{}-v{GENERATOR_VERSION}.git", preset.name))
}

/// The cached fixture for `preset`, generated first if missing.
pub(crate) fn ensure(cache_dir: &Path, preset: &Preset) -> anyhow::Result<FixtureInfo> {
    let path = cache_path(cache_dir, preset);
    let info_path = path.with_extension("json");
    if path.join("HEAD").is_file() {
        if let Ok(bytes) = std::fs::read(&info_path) {
            if let Ok(info) = serde_json::from_slice::<FixtureInfo>(&bytes) {
                if info.path == path {
                    return Ok(FixtureInfo {
                        generated_ms: 0.0,
                        ..info
                    });
                }
            }
        }
    }
    eprintln!(
        "generating the {} fixture ({} files, {} commits; cached for later runs) ...",
        preset.name, preset.files, preset.commits
    );
    let started = Instant::now();
    let tmp = cache_dir.join(format!(".{}-v{GENERATOR_VERSION}.tmp", preset.name));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(cache_dir)?;
    generate(&tmp, preset)?;
    let _ = std::fs::remove_dir_all(&path);
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("moving the fixture into {}", path.display()))?;
    let mut info = describe(&path, preset.name, Some(GENERATOR_VERSION))?;
    info.generated_ms = started.elapsed().as_secs_f64() * 1e3;
    std::fs::write(&info_path, serde_json::to_vec_pretty(&info)?)?;
    eprintln!(
        "  done in {:.1} s: {} files at the tip ({:.1} MB), {} commits, pack {:.1} MB",
        info.generated_ms / 1e3,
        info.files_at_tip,
        info.bytes_at_tip as f64 / 1e6,
        info.commits,
        info.pack_bytes as f64 / 1e6
    );
    Ok(info)
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = git_cmd()
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .with_context(|| format!("running git {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Configuration every served fixture gets: partial clone and bitmaps allowed.
pub(crate) fn configure_for_serving(repo: &Path) -> anyhow::Result<()> {
    for (k, v) in [
        ("uploadpack.allowFilter", "true"),
        ("uploadpack.allowAnySHA1InWant", "true"),
        ("http.receivepack", "false"),
        ("gc.auto", "0"),
    ] {
        git(repo, &["config", k, v])?;
    }
    Ok(())
}

fn generate(dir: &Path, preset: &Preset) -> anyhow::Result<()> {
    let out = git_cmd()
        .args(["init", "--bare", "--quiet", "--initial-branch", MAIN])
        .arg(dir)
        .output()?;
    if !out.status.success() {
        bail!("git init failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    configure_for_serving(dir)?;
    let mut import = FastImport::start(dir, &["--depth=50"], 1 << 20)?;
    let mut rng = Rng::new(preset.seed());
    let mut model = Model::new(preset, &mut rng);
    let initial: Vec<(String, Option<Vec<u8>>)> = std::iter::once((
        "README.md".to_owned(),
        Some(format!("# bench fixture `{}`\n", preset.name).into_bytes()),
    ))
    .chain(model.files.iter().map(|(p, l)| (p.clone(), Some(join(l)))))
    .collect();
    write_commit(&mut import.w, MAIN, None, 0, "initial import\n", &initial)?;
    drop(initial);
    // The feature branch forks this many commits before the tip.
    let fork_at = preset.commits.saturating_sub(40).max(1);
    for seq in 1..preset.commits {
        let changes = model.edit(&mut rng, preset.files);
        write_commit(
            &mut import.w,
            MAIN,
            None,
            seq as u64,
            &format!("change {seq}: edit {} files\n", changes.len()),
            &changes,
        )?;
        if seq == fork_at {
            writeln!(
                import.w,
                "reset refs/heads/{FEATURE}\nfrom refs/heads/{MAIN}\n"
            )?;
        }
    }
    // The feature branch's own commits (its model diverges; the main model is done).
    for k in 0..20 {
        let changes = model.edit(&mut rng, preset.files);
        write_commit(
            &mut import.w,
            FEATURE,
            None,
            (preset.commits + k) as u64,
            &format!("feature work {k}\n"),
            &changes,
        )?;
    }
    write_orphan(&mut import.w, preset)?;
    import.finish()?;
    git(
        dir,
        &["symbolic-ref", "HEAD", &format!("refs/heads/{MAIN}")],
    )?;
    // One pack with good deltas and a bitmap, as a hosting service would serve it.
    git(
        dir,
        &[
            "repack",
            "-a",
            "-d",
            "-f",
            "-b",
            "--window=10",
            "--depth=50",
            "-q",
        ],
    )?;
    Ok(())
}

/// The orphan branch's one commit: `preset.files` files of source-like text under
/// `site/` (sizes around the preset's mean, from a PRNG of its own so `main` and the
/// feature branch stay what they were), a `.gitignore` `main` does not have, no parent.
fn write_orphan(w: &mut impl Write, preset: &Preset) -> anyhow::Result<()> {
    let mut rng = Rng::new(preset.seed() ^ 0x6f72_7068_616e);
    let mut files: Vec<(String, Option<Vec<u8>>)> =
        vec![(".gitignore".to_owned(), Some(b"/_site/\n*.tmp\n".to_vec()))];
    // A line is about 45 bytes.
    let lines_max = (2 * preset.mean_file_bytes / 45).max(2);
    for i in 0..preset.files {
        let path = format!(
            "site/{}",
            file_path(i, preset.files).trim_start_matches("src/")
        );
        let lines: Vec<String> = (0..1 + rng.below(lines_max))
            .map(|_| line(&mut rng))
            .collect();
        files.push((path, Some(join(&lines))));
    }
    let seq = (preset.commits + 100) as u64;
    write_commit(
        w,
        ORPHAN,
        None,
        seq,
        "the site, on an orphan branch\n",
        &files,
    )?;
    Ok(())
}

/// Counts what a bare repository holds.
pub(crate) fn describe(
    path: &Path,
    name: &str,
    generator_version: Option<u32>,
) -> anyhow::Result<FixtureInfo> {
    let default_branch = git(path, &["symbolic-ref", "--short", "HEAD"])?;
    let branches = git(
        path,
        &["for-each-ref", "--format=%(refname:short)", "refs/heads/"],
    )?;
    let other_branch = branches
        .lines()
        .find(|b| *b == FEATURE)
        .or_else(|| branches.lines().find(|b| *b != default_branch))
        .map(str::to_owned);
    let orphan_branch = branches.lines().find(|b| *b == ORPHAN).map(str::to_owned);
    let commits: usize = git(path, &["rev-list", "--count", &default_branch])?
        .parse()
        .unwrap_or(0);
    let ls = git(path, &["ls-tree", "-r", "-l", &default_branch])?;
    let mut files = 0;
    let mut bytes = 0u64;
    for l in ls.lines() {
        files += 1;
        if let Some(size) = l
            .split_whitespace()
            .nth(3)
            .and_then(|s| s.parse::<u64>().ok())
        {
            bytes += size;
        }
    }
    let mut pack_bytes = 0;
    if let Ok(entries) = std::fs::read_dir(path.join("objects/pack")) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "pack") {
                pack_bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    Ok(FixtureInfo {
        name: name.to_owned(),
        generator_version,
        path: path.to_owned(),
        default_branch,
        other_branch,
        orphan_branch,
        files_at_tip: files,
        bytes_at_tip: bytes,
        commits,
        pack_bytes,
        generated_ms: 0.0,
    })
}

/// Mirrors a real repository (`--repo URL|PATH`) into the cache, or updates the mirror.
pub(crate) fn mirror(cache_dir: &Path, repo: &str) -> anyhow::Result<FixtureInfo> {
    std::fs::create_dir_all(cache_dir)?;
    let slug: String = repo
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .rev()
        .take(60)
        .collect::<String>()
        .chars()
        .rev()
        .collect();
    let path = cache_dir.join(format!("repo-{slug}.git"));
    let started = Instant::now();
    if path.join("HEAD").is_file() {
        eprintln!("updating the mirror of {repo} ...");
        git(&path, &["remote", "update", "--prune"])?;
    } else {
        eprintln!("mirroring {repo} (once; later runs update the mirror) ...");
        let out = git_cmd()
            .args(["clone", "--mirror", "--quiet", "--", repo])
            .arg(&path)
            .output()?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&path);
            bail!(
                "git clone --mirror {repo} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    configure_for_serving(&path)?;
    let mut info = describe(&path, repo, None)?;
    info.generated_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(info)
}

/// Copies a cached fixture to `dest` for serving (objects hard-linked by git's local
/// clone), so the bench can advance its branches without touching the cache.
pub(crate) fn serve_copy(info: &FixtureInfo, dest: &Path) -> anyhow::Result<()> {
    let out = git_cmd()
        .args(["clone", "--mirror", "--quiet", "--local"])
        .arg(&info.path)
        .arg(dest)
        .output()?;
    if !out.status.success() {
        bail!(
            "copying the fixture failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A mirror clone keeps `origin`; the served copy needs none.
    let _ = git(dest, &["remote", "remove", "origin"]);
    configure_for_serving(dest)?;
    Ok(())
}

/// Advances `branch` of the bare repository by `n` commits, each editing one to three
/// existing files the way the generator's history does. Returns the new tip.
pub(crate) fn advance(
    repo: &Path,
    branch: &str,
    n: usize,
    seed: u64,
    repack: bool,
) -> anyhow::Result<String> {
    if n == 0 {
        return git(repo, &["rev-parse", &format!("refs/heads/{branch}")]);
    }
    let ls = git(repo, &["ls-tree", "-r", "--name-only", branch])?;
    let paths: Vec<String> = ls
        .lines()
        .filter(|p| !p.ends_with(".bin"))
        .map(str::to_owned)
        .collect();
    if paths.is_empty() {
        bail!("{branch} has no files to edit");
    }
    let mut rng = Rng::new(seed);
    let mut edited: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // 8 KiB: `BufWriter`'s default
    let mut import = FastImport::start(repo, &[], 8 << 10)?;
    let tip = git(repo, &["rev-parse", &format!("refs/heads/{branch}")])?;
    for k in 0..n {
        let mut changes = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let path = paths[rng.below(paths.len())].clone();
            if !edited.contains_key(&path) {
                let text =
                    git(repo, &["cat-file", "-p", &format!("{tip}:{path}")]).unwrap_or_default();
                edited.insert(path.clone(), text.lines().map(str::to_owned).collect());
            }
            let Some(lines) = edited.get_mut(&path) else {
                continue;
            };
            let at = rng.below(lines.len().max(1));
            for _ in 0..1 + rng.below(4) {
                lines.insert(at.min(lines.len()), line(&mut rng));
            }
            changes.push((path, Some(join(lines))));
        }
        let from = (k == 0).then_some(tip.as_str());
        write_commit(
            &mut import.w,
            branch,
            from,
            seed.wrapping_add(k as u64) % 1_000_000_000,
            &format!("bench advance {k}\n"),
            &changes,
        )?;
    }
    import.finish()?;
    if repack {
        // Like a hosting service after a push: one pack again, existing deltas reused,
        // new objects delta-compressed, a fresh bitmap.
        git(repo, &["repack", "-a", "-d", "-b", "-q"])?;
    }
    git(repo, &["rev-parse", &format!("refs/heads/{branch}")])
}

/// The commit a branch of a bare repository points at.
pub(crate) fn tip(repo: &Path, branch: &str) -> anyhow::Result<String> {
    git(repo, &["rev-parse", &format!("refs/heads/{branch}")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic() {
        let p = Preset {
            name: "t",
            files: 50,
            commits: 10,
            mean_file_bytes: 300,
        };
        let mut a = Rng::new(p.seed());
        let mut b = Rng::new(p.seed());
        let mut ma = Model::new(&p, &mut a);
        let mut mb = Model::new(&p, &mut b);
        for _ in 0..20 {
            assert_eq!(ma.edit(&mut a, p.files), mb.edit(&mut b, p.files));
        }
        assert_eq!(ma.files, mb.files);
    }

    const TINY: Preset = Preset {
        name: "tiny",
        files: 60,
        commits: 80,
        mean_file_bytes: 400,
    };

    #[test]
    fn the_same_preset_gives_the_same_commits_and_a_feature_branch() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.git");
        let b = dir.path().join("b.git");
        generate(&a, &TINY).unwrap();
        generate(&b, &TINY).unwrap();
        assert_eq!(tip(&a, MAIN).unwrap(), tip(&b, MAIN).unwrap());
        assert_eq!(tip(&a, FEATURE).unwrap(), tip(&b, FEATURE).unwrap());
        let info = describe(&a, "tiny", Some(GENERATOR_VERSION)).unwrap();
        assert_eq!(info.default_branch, MAIN);
        assert_eq!(info.other_branch.as_deref(), Some(FEATURE));
        assert_eq!(info.orphan_branch.as_deref(), Some(ORPHAN));
        assert_eq!(info.commits, TINY.commits);
        assert!(info.files_at_tip > TINY.files, "{info:?}");
        assert!(info.pack_bytes > 0);
        // The feature branch forks from main and carries its own commits.
        let base = git(&a, &["merge-base", MAIN, FEATURE]).unwrap();
        assert_ne!(base, tip(&a, MAIN).unwrap());
        assert_ne!(base, tip(&a, FEATURE).unwrap());
        // The orphan branch shares no commit and no path with main.
        let parents = git(&a, &["rev-list", "--count", ORPHAN]).unwrap();
        assert_eq!(parents, "1");
        assert!(
            !git_cmd()
                .arg("-C")
                .arg(&a)
                .args(["merge-base", MAIN, ORPHAN])
                .output()
                .unwrap()
                .status
                .success()
        );
        let ls = git(&a, &["ls-tree", "-r", "--name-only", ORPHAN]).unwrap();
        assert_eq!(ls.lines().count(), TINY.files + 1);
        assert!(
            ls.lines()
                .all(|p| p == ".gitignore" || p.starts_with("site/"))
        );
    }

    #[test]
    fn advance_adds_exactly_n_commits_that_edit_files() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("up.git");
        generate(&repo, &TINY).unwrap();
        let before = tip(&repo, MAIN).unwrap();
        for repack in [false, true] {
            let start = tip(&repo, MAIN).unwrap();
            let new = advance(&repo, MAIN, 7, 42, repack).unwrap();
            assert_ne!(new, start);
            let n = git(&repo, &["rev-list", "--count", &format!("{start}..{new}")]).unwrap();
            assert_eq!(n, "7");
            let changed = git(&repo, &["diff", "--name-only", &start, &new]).unwrap();
            assert!(!changed.is_empty());
        }
        assert_eq!(
            advance(&repo, MAIN, 0, 1, false).unwrap(),
            tip(&repo, MAIN).unwrap()
        );
        assert_ne!(tip(&repo, MAIN).unwrap(), before);
    }

    #[test]
    fn paths_spread_over_directories() {
        let dirs: std::collections::BTreeSet<String> = (0..3000)
            .map(|i| {
                let p = file_path(i, 3000);
                p.rsplit_once('/')
                    .map(|(d, _)| d.to_owned())
                    .unwrap_or_default()
            })
            .collect();
        assert!(dirs.len() >= 100 && dirs.len() <= 130, "{}", dirs.len());
    }
}
