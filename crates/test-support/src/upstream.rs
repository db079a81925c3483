//! Upstream repositories for tests and benchmarks, built with the git CLI.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};

use crate::git_cli::{git_command, git_in};

/// One change in a fixture commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Writes a regular file (mode 100644).
    Write(String, Vec<u8>),
    /// Deletes a file or directory.
    Delete(String),
    /// Adds a submodule gitlink (mode 160000) pointing at a commit id.
    Gitlink(String, String),
}

impl Change {
    /// A [`Change::Write`] from text.
    pub fn write(path: &str, text: &str) -> Self {
        Self::Write(path.to_owned(), text.as_bytes().to_vec())
    }
}

/// A bare upstream repository `app.git` under a temporary serving root (the
/// `--base-path` of [`GitDaemon`](crate::GitDaemon), the project root of
/// [`GitHttpServer`](crate::GitHttpServer)). Removed on drop.
#[derive(Debug)]
pub struct Upstream {
    root: tempfile::TempDir,
    name: String,
    seq: AtomicU64,
}

impl Upstream {
    /// A bare repository whose default branch is `default_branch` (and which has no
    /// other branch), with one commit holding a README and `files` small files spread
    /// over directories of 100.
    ///
    /// # Errors
    /// When git fails.
    pub fn new(default_branch: &str, files: usize) -> anyhow::Result<Self> {
        let root = tempfile::Builder::new().prefix("hs-upstream-").tempdir()?;
        let name = "app.git".to_owned();
        let path = root.path().join(&name);
        let out = git_command()
            .args([
                "init",
                "--bare",
                "--quiet",
                "--initial-branch",
                default_branch,
            ])
            .arg(&path)
            .output()
            .context("git init --bare")?;
        if !out.status.success() {
            bail!(
                "git init --bare failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let up = Self {
            root,
            name,
            seq: AtomicU64::new(0),
        };
        let mut changes = vec![Change::write("README.md", "# fixture\n")];
        for i in 0..files {
            changes.push(Change::Write(
                Self::file_path(i),
                format!("file {i}\nline two of file {i}\n").into_bytes(),
            ));
        }
        up.commit(default_branch, &changes)?;
        Ok(up)
    }

    /// The path of the `i`th generated file (`src/d003/f00321.txt`).
    pub fn file_path(i: usize) -> String {
        format!("src/d{:03}/f{i:05}.txt", i / 100)
    }

    /// The serving root (the directory holding `app.git`).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The repository's path relative to [`root`](Self::root) (`app.git`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bare repository's directory.
    pub fn path(&self) -> PathBuf {
        self.root.path().join(&self.name)
    }

    /// `file:///.../app.git`.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    /// Runs `git -C <bare repo> args...`.
    ///
    /// # Errors
    /// When git fails.
    pub fn git(&self, args: &[&str]) -> anyhow::Result<String> {
        git_in(&self.path(), args)
    }

    /// The commit `branch` points at, if the branch exists.
    ///
    /// # Errors
    /// When git fails for another reason.
    pub fn try_tip(&self, branch: &str) -> anyhow::Result<Option<String>> {
        let out = git_command()
            .arg("-C")
            .arg(self.path())
            .args(["rev-parse", "--verify", "--quiet"])
            .arg(format!("refs/heads/{branch}^{{commit}}"))
            .output()?;
        if out.status.success() {
            Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()))
        } else {
            Ok(None)
        }
    }

    /// The commit `branch` points at.
    ///
    /// # Errors
    /// When the branch does not exist.
    pub fn tip(&self, branch: &str) -> anyhow::Result<String> {
        self.try_tip(branch)?
            .with_context(|| format!("upstream has no branch {branch}"))
    }

    /// The tree id of `branch`'s tip.
    ///
    /// # Errors
    /// When the branch does not exist.
    pub fn tree(&self, branch: &str) -> anyhow::Result<String> {
        self.git(&["rev-parse", &format!("refs/heads/{branch}^{{tree}}")])
    }

    /// The branches, sorted.
    ///
    /// # Errors
    /// When git fails.
    pub fn branches(&self) -> anyhow::Result<Vec<String>> {
        let out = self.git(&["for-each-ref", "--format=%(refname:short)", "refs/heads/"])?;
        let mut v: Vec<String> = out.lines().map(str::to_owned).collect();
        v.sort();
        Ok(v)
    }

    /// Makes `branch` (which must exist) the default branch (HEAD).
    ///
    /// # Errors
    /// When git fails.
    pub fn set_default_branch(&self, branch: &str) -> anyhow::Result<()> {
        self.git(&["symbolic-ref", "HEAD", &format!("refs/heads/{branch}")])
            .map(drop)
    }

    /// Creates `name` at `from`'s tip.
    ///
    /// # Errors
    /// When `from` does not exist or `name` does.
    pub fn create_branch(&self, name: &str, from: &str) -> anyhow::Result<String> {
        let tip = self.tip(from)?;
        self.git(&[
            "update-ref",
            &format!("refs/heads/{name}"),
            &tip,
            &"0".repeat(40),
        ])?;
        Ok(tip)
    }

    /// Deletes branch `name`.
    ///
    /// # Errors
    /// When it does not exist.
    pub fn delete_branch(&self, name: &str) -> anyhow::Result<()> {
        let tip = self.tip(name)?;
        self.git(&["update-ref", "-d", &format!("refs/heads/{name}"), &tip])
            .map(drop)
    }

    /// Adds one commit with `changes` on `branch` (created, without parent, if it does
    /// not exist). Returns the new tip.
    ///
    /// # Errors
    /// When git fast-import fails.
    pub fn commit(&self, branch: &str, changes: &[Change]) -> anyhow::Result<String> {
        let parent = self.try_tip(branch)?;
        let mut stream = Vec::new();
        self.commit_stream(
            &mut stream,
            branch,
            parent.as_deref(),
            changes,
            "fixture commit",
        )?;
        fast_import(&self.path(), &stream, false)?;
        self.tip(branch)
    }

    /// Advances `branch` by `n` commits, each rewriting one generated file and adding
    /// one new file. Returns the new tip.
    ///
    /// # Errors
    /// When the branch does not exist or git fails.
    pub fn advance(&self, branch: &str, n: usize) -> anyhow::Result<String> {
        let mut parent = Some(self.tip(branch)?);
        let mut stream = Vec::new();
        for _ in 0..n {
            let k = self.seq.load(Ordering::Relaxed);
            let changes = [
                Change::write(&format!("changes/c{k:06}.txt"), &format!("change {k}\n")),
                Change::write(&format!("changes/latest-{branch}.txt"), &format!("{k}\n")),
            ];
            let msg = format!("advance {branch}");
            self.commit_stream(&mut stream, branch, parent.as_deref(), &changes, &msg)?;
            parent = None; // fast-import continues the branch it just wrote
        }
        fast_import(&self.path(), &stream, false)?;
        self.tip(branch)
    }

    /// Creates `n` branches `<prefix>0000`, `<prefix>0001`, ... each with one commit of
    /// its own on top of `from` (one `git fast-import`, so thousands take a moment).
    ///
    /// # Errors
    /// When `from` does not exist or git fails.
    pub fn add_branches(&self, prefix: &str, n: usize, from: &str) -> anyhow::Result<()> {
        let base = self.tip(from)?;
        let mut stream = Vec::new();
        for i in 0..n {
            let name = format!("{prefix}{i:04}");
            let change = Change::write(&format!("branches/{name}.txt"), &format!("{name}\n"));
            self.commit_stream(&mut stream, &name, Some(&base), &[change], "branch commit")?;
        }
        fast_import(&self.path(), &stream, false)
    }

    /// Rewrites `branch` like a force-push: replaces its tip with a different commit on
    /// the same parent (or a new root commit), so the old tip is no longer reachable.
    /// Returns the new tip.
    ///
    /// # Errors
    /// When the branch does not exist or git fails.
    pub fn rewrite(&self, branch: &str, changes: &[Change]) -> anyhow::Result<String> {
        let old = self.tip(branch)?;
        let parent = self
            .git(&["rev-parse", "--verify", "--quiet", &format!("{old}^")])
            .ok();
        let mut stream = Vec::new();
        match &parent {
            Some(p) => self.commit_stream(&mut stream, branch, Some(p), changes, "rewritten")?,
            None => {
                // Root commit: `reset` drops the branch's current value in fast-import.
                stream.extend_from_slice(format!("reset refs/heads/{branch}\n").as_bytes());
                self.commit_stream(&mut stream, branch, None, changes, "rewritten root")?;
            }
        }
        fast_import(&self.path(), &stream, true)?;
        let new = self.tip(branch)?;
        if new == old {
            bail!("rewrite of {branch} produced the same commit");
        }
        Ok(new)
    }

    fn commit_stream(
        &self,
        out: &mut Vec<u8>,
        branch: &str,
        parent: Option<&str>,
        changes: &[Change],
        message: &str,
    ) -> anyhow::Result<()> {
        let k = self.seq.fetch_add(1, Ordering::Relaxed);
        let when = 1_700_000_000 + k;
        let message = format!("{message} #{k}\n");
        writeln!(out, "commit refs/heads/{branch}")?;
        writeln!(out, "author Fixture <fixture@example.com> {when} +0000")?;
        writeln!(out, "committer Fixture <fixture@example.com> {when} +0000")?;
        write!(out, "data {}\n{message}\n", message.len())?;
        if let Some(p) = parent {
            writeln!(out, "from {p}")?;
        }
        for c in changes {
            match c {
                Change::Write(path, data) => {
                    write!(out, "M 100644 inline {path}\ndata {}\n", data.len())?;
                    out.extend_from_slice(data);
                    out.push(b'\n');
                }
                Change::Delete(path) => writeln!(out, "D {path}")?,
                Change::Gitlink(path, id) => writeln!(out, "M 160000 {id} {path}")?,
            }
        }
        out.push(b'\n');
        Ok(())
    }
}

/// Feeds `stream` (commands of `git fast-import`, without the final `done`) to
/// `git fast-import` in the repository `dir`; `force` lets it rewrite branches.
///
/// # Errors
/// When git cannot start or refuses the stream (its error output is in the message).
pub fn fast_import(dir: &Path, stream: &[u8], force: bool) -> anyhow::Result<()> {
    let mut cmd = git_command();
    cmd.arg("-C")
        .arg(dir)
        .args(["fast-import", "--quiet", "--done"]);
    if force {
        cmd.arg("--force");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting git fast-import")?;
    {
        let mut stdin = child.stdin.take().context("fast-import stdin")?;
        stdin.write_all(stream)?;
        stdin.write_all(b"done\n")?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "git fast-import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
