//! One upstream demanding a token, one broker serving it on a current-thread tokio
//! runtime, and the git CLI run on a blocking thread of that runtime (so the broker's
//! tracing events happen on the test's own thread, where `capture_tracing` sees them).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, bail};
use git_broker::{Broker, Grant, GrantHints, GrantSpec, PushPolicy};
use sandbox_core::{BranchName, Credentials, RepoUrl};
use test_support::{GitHttpServer, Upstream, git_command, random_token};

/// What the tests' grants say after "expired" / "revoked".
pub(crate) const RENEW_HINT: &str = "fixture-hint: ask for a new grant";
/// What the tests' grants say after "no credentials".
pub(crate) const REGISTER_HINT: &str = "fixture-hint: register the token again";
/// The branch the tests' sandboxes own.
pub(crate) const OWN_BRANCH: &str = "agent/one";

pub(crate) struct Env {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) broker: Broker,
    pub(crate) addr: SocketAddr,
    pub(crate) upstream: Upstream,
    pub(crate) server: GitHttpServer,
    pub(crate) token: String,
    pub(crate) home: tempfile::TempDir,
}

impl Env {
    pub(crate) fn new() -> anyhow::Result<Self> {
        Self::with_broker(Broker::new()?, Upstream::new("main", 20)?)
    }

    pub(crate) fn with_broker(broker: Broker, upstream: Upstream) -> anyhow::Result<Self> {
        let token = random_token();
        let server = GitHttpServer::start_with_token(upstream.root(), &token)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let home = tempfile::Builder::new()
            .prefix("hs-broker-home-")
            .tempdir()?;
        let mut env = Self {
            rt,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            broker: broker.clone(),
            upstream,
            server,
            token,
            home,
        };
        env.addr = env.serve(broker)?;
        Ok(env)
    }

    /// Serves `broker` on a new loopback port of this runtime.
    pub(crate) fn serve(&self, broker: Broker) -> anyhow::Result<SocketAddr> {
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let _guard = self.rt.enter();
        broker.spawn(listener);
        Ok(addr)
    }

    pub(crate) fn upstream_url(&self) -> anyhow::Result<RepoUrl> {
        Ok(RepoUrl::parse(&self.server.url(self.upstream.name()))?)
    }

    pub(crate) fn spec(&self, push: PushPolicy) -> anyhow::Result<GrantSpec> {
        Ok(GrantSpec {
            upstream: self.upstream_url()?,
            credentials: Credentials::token(self.token.clone()),
            expires_at: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
            push,
            hints: GrantHints {
                renew: Some(RENEW_HINT.into()),
                register: Some(REGISTER_HINT.into()),
            },
        })
    }

    pub(crate) fn own_branch_policy() -> anyhow::Result<PushPolicy> {
        Ok(PushPolicy::own_branch(&BranchName::new(OWN_BRANCH)?))
    }

    /// A grant for the own branch, expiring in an hour.
    pub(crate) fn grant(&self) -> anyhow::Result<Grant> {
        Ok(self.broker.grant(self.spec(Self::own_branch_policy()?)?)?)
    }

    /// A git command with an isolated configuration (no system or global config,
    /// `HOME` a temp dir, no prompts, no credential helper): it holds no credentials.
    pub(crate) fn git_cmd(&self, dir: Option<&Path>, args: &[&str]) -> Command {
        let mut cmd = git_command();
        cmd.env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path())
            .env_remove("GIT_ASKPASS")
            .env_remove("SSH_ASKPASS");
        if let Some(dir) = dir {
            cmd.arg("-C").arg(dir);
        }
        cmd.args(args);
        cmd
    }

    /// Runs git on a blocking thread while the broker runs on this thread.
    pub(crate) fn run(&self, mut cmd: Command) -> anyhow::Result<Output> {
        for (k, v) in cmd.get_envs() {
            let v = v
                .map(|v| v.to_string_lossy().into_owned())
                .unwrap_or_default();
            if v.contains(&self.token) {
                bail!("the token is in git's environment ({k:?})");
            }
        }
        if std::env::vars().any(|(_, v)| v.contains(&self.token)) {
            bail!("the token is in the test process's environment");
        }
        self.rt
            .block_on(async move { tokio::task::spawn_blocking(move || cmd.output()).await })?
            .context("running git")
    }

    /// Runs git and wants success; returns stdout.
    pub(crate) fn git_ok(&self, dir: Option<&Path>, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(self.git_cmd(dir, args))?;
        if !out.status.success() {
            bail!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Runs git and wants failure; returns stderr.
    pub(crate) fn git_fails(&self, dir: Option<&Path>, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(self.git_cmd(dir, args))?;
        if out.status.success() {
            bail!(
                "git {} succeeded, expected a refusal; stderr: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Clones `url` into a fresh directory under the temp home; returns it.
    pub(crate) fn clone(&self, url: &str, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.home.path().join(name);
        let d = dir.to_str().context("utf-8 path")?;
        self.git_ok(None, &["clone", "--quiet", url, d])?;
        Ok(dir)
    }

    /// A commit on a new local branch `branch` of `dir`; returns its id.
    pub(crate) fn commit_on(&self, dir: &Path, branch: &str, text: &str) -> anyhow::Result<String> {
        self.git_ok(Some(dir), &["checkout", "--quiet", "-B", branch])?;
        std::fs::write(dir.join("agent.txt"), text)?;
        self.git_ok(Some(dir), &["add", "agent.txt"])?;
        self.git_ok(Some(dir), &["commit", "--quiet", "-m", text])?;
        self.git_ok(Some(dir), &["rev-parse", "HEAD"])
    }
}

/// `n` commits on a new local branch `branch` of `dir` (on top of HEAD, same tree),
/// in one `git fast-import`.
pub(crate) fn local_commits(dir: &Path, branch: &str, n: usize) -> anyhow::Result<()> {
    let head = test_support::git_in(dir, &["rev-parse", "HEAD"])?;
    let mut stream = String::new();
    for i in 1..=n {
        let from = if i == 1 {
            head.clone()
        } else {
            format!(":{}", i - 1)
        };
        let msg = format!("local {i}\n");
        stream.push_str(&format!(
            "commit refs/heads/{branch}\nmark :{i}\ncommitter F <f@example.com> {} +0000\ndata {}\n{msg}from {from}\n\n",
            1_700_000_000 + i,
            msg.len()
        ));
    }
    test_support::fast_import(dir, stream.as_bytes(), false)?;
    test_support::git_in(dir, &["checkout", "--quiet", branch])?;
    Ok(())
}
