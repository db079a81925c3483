//! Options for connecting to sandboxes and running commands in them.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::Error;
use crate::names::{SandboxName, SnapshotId};

/// Resource limits for a sandbox (honoured by providers that can isolate; the local
/// provider ignores them and says so in its docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    /// CPU limit in cores (e.g. `1.5`).
    pub cpus: Option<f64>,
    /// Memory limit in bytes.
    pub memory_bytes: Option<u64>,
}

/// How to get a sandbox from a [`SandboxProvider`](crate::SandboxProvider).
///
/// Reconnect-first: when `name` names a sandbox that exists, `connect` returns it.
/// With `force_create`, an existing sandbox of that name (live or crashed) is
/// **removed and replaced**, its workspace included.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The sandbox name; `None` generates one.
    pub name: Option<SandboxName>,
    /// Replace an existing sandbox of the same name instead of reconnecting to it.
    pub force_create: bool,
    /// Restore the workspace (and, for container providers, the image) from this
    /// snapshot.
    pub base_snapshot: Option<SnapshotId>,
    /// Deadline for creating the sandbox.
    pub timeout: Option<Duration>,
    /// Environment for every command run in the sandbox.
    pub env: BTreeMap<String, String>,
    /// Extra labels (providers that support labels attach them).
    pub labels: BTreeMap<String, String>,
    /// Resource limits.
    pub resources: Resources,
    /// Remove the sandbox after this long (`headstart prune` enforces it).
    pub ttl: Option<Duration>,
    /// Container image for providers that run images (`None`: the provider's default).
    pub image: Option<String>,
    /// Use this host directory as the workspace instead of a fresh one (the user's own
    /// checkout, e.g. `headstart up --workdir .`). Never deleted by headstart.
    pub workdir: Option<PathBuf>,
    /// Leave a newly created sandbox `creating` until
    /// [`Sandbox::mark_ready`](crate::Sandbox::mark_ready) is called: until then `get` and `list` do not offer
    /// it, the handle holds the name's lock (a concurrent `connect` of the name waits),
    /// and a crash leaves a record that the next `connect` or `prune` repairs. Orchestrators
    /// that fill the workspace after creating it (a clone) set this, so that a sandbox is
    /// never reported ready before its checkout is complete.
    pub defer_ready: bool,
    /// Stops a long creation (a restore, an image build) when cancelled.
    pub cancel: Option<crate::CancelToken>,
    /// TCP ports to publish on the host's loopback (container providers; a new
    /// sandbox only: an existing container keeps the ports it was made with).
    pub ports: Vec<PortRequest>,
}

/// A container TCP port to publish on the host's loopback (`127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PortRequest {
    /// The port inside the sandbox.
    pub container: u16,
    /// The host port (`None`: one the engine picks).
    pub host: Option<u16>,
}

impl PortRequest {
    /// Parses `CONTAINER` or `HOST:CONTAINER` (ports 1-65535).
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] saying what is wrong.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|n| *n != 0)
                .ok_or_else(|| {
                    Error::InvalidOptions(format!(
                        "a port is `CONTAINER` or `HOST:CONTAINER`, each 1-65535; got `{s}`"
                    ))
                })
        };
        Ok(match s.split_once(':') {
            Some((h, c)) => Self {
                container: port(c)?,
                host: Some(port(h)?),
            },
            None => Self {
                container: port(s)?,
                host: None,
            },
        })
    }
}

/// A sandbox port and the host address that reaches it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PublishedPort {
    /// The port inside the sandbox.
    pub container: u16,
    /// `127.0.0.1:PORT` for a published port; `direct` where the sandbox's processes
    /// bind host ports themselves (the local provider).
    pub host_address: String,
}

impl ConnectOptions {
    /// Default options: generated name, reconnect-first, no snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps a new sandbox `creating` until [`Sandbox::mark_ready`](crate::Sandbox::mark_ready).
    #[must_use]
    pub fn defer_ready(mut self, defer: bool) -> Self {
        self.defer_ready = defer;
        self
    }

    /// Sets a token that stops the creation when cancelled.
    #[must_use]
    pub fn cancel(mut self, token: crate::CancelToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Sets the sandbox name.
    #[must_use]
    pub fn name(mut self, name: SandboxName) -> Self {
        self.name = Some(name);
        self
    }

    /// Replace an existing sandbox of the same name.
    #[must_use]
    pub fn force_create(mut self, force: bool) -> Self {
        self.force_create = force;
        self
    }

    /// Restore from a snapshot.
    #[must_use]
    pub fn base_snapshot(mut self, id: SnapshotId) -> Self {
        self.base_snapshot = Some(id);
        self
    }

    /// Sets the creation deadline.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adds an environment variable for commands in the sandbox.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets a time to live.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the container image.
    #[must_use]
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Uses a host directory as the workspace.
    #[must_use]
    pub fn workdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    /// Publishes a port (container providers).
    #[must_use]
    pub fn port(mut self, port: PortRequest) -> Self {
        self.ports.push(port);
        self
    }

    /// Sets resource limits.
    #[must_use]
    pub fn resources(mut self, resources: Resources) -> Self {
        self.resources = resources;
        self
    }
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A callback that receives output as it is produced.
pub type OutputSink = Arc<dyn Fn(Stream, &[u8]) + Send + Sync>;

/// Where a command's standard input comes from (without one: `/dev/null`).
///
/// Providers that support it (local, Docker) copy it to the command as the command
/// reads and close the command's input at its end. A reader is read once: a second
/// command run with the same request gets an empty input; bytes are given to every
/// run. Cloning shares the source.
#[derive(Clone)]
pub struct ExecStdin(StdinSource);

#[derive(Clone)]
enum StdinSource {
    Bytes(Arc<[u8]>),
    Reader(Arc<Mutex<Option<Box<dyn Read + Send>>>>),
}

impl ExecStdin {
    /// These bytes, then end of file.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self(StdinSource::Bytes(bytes.into().into()))
    }

    /// Whatever `reader` gives until its end (e.g. the caller's own standard input).
    /// Providers read it on a thread of their own, so a blocking reader is fine.
    pub fn reader(reader: impl Read + Send + 'static) -> Self {
        Self(StdinSource::Reader(Arc::new(Mutex::new(Some(Box::new(
            reader,
        ))))))
    }

    /// The input for one run (for providers): the reader, or an empty one once a run
    /// took it.
    pub fn take(&self) -> Box<dyn Read + Send> {
        match &self.0 {
            StdinSource::Bytes(b) => Box::new(std::io::Cursor::new(b.clone())),
            StdinSource::Reader(r) => r
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
                .unwrap_or_else(|| Box::new(std::io::empty())),
        }
    }
}

impl fmt::Debug for ExecStdin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            StdinSource::Bytes(b) => write!(f, "ExecStdin({} bytes)", b.len()),
            StdinSource::Reader(_) => f.write_str("ExecStdin(reader)"),
        }
    }
}

/// A command to run in a sandbox: an argv, never a shell string.
#[derive(Clone)]
pub struct ExecRequest {
    argv: Vec<String>,
    /// Working directory relative to the workspace (`None`: the workspace itself).
    pub cwd: Option<PathBuf>,
    /// Extra environment (on top of the sandbox's).
    pub env: BTreeMap<String, String>,
    /// Kill the command after this long; the output then says `timed_out`.
    pub timeout: Option<Duration>,
    /// Keep at most this many bytes of each stream (default 1 MiB); the rest is dropped
    /// and `truncated` is set.
    pub output_limit: usize,
    /// Receives output as it is produced.
    pub sink: Option<OutputSink>,
    /// Allocate a terminal (providers that support it).
    pub tty: bool,
    /// Standard input (`None`: `/dev/null`; providers that support it: local, Docker).
    pub stdin: Option<ExecStdin>,
    /// Delivers a signal to the running command (providers that support it: local,
    /// Docker); see [`SignalToken`](crate::SignalToken).
    pub signals: Option<crate::SignalToken>,
}

impl ExecRequest {
    /// A command from its argv.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] when the argv is empty or the program name is empty.
    pub fn new<I, S>(argv: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let argv: Vec<String> = argv.into_iter().map(Into::into).collect();
        if argv.first().is_none_or(|p| p.is_empty()) {
            return Err(Error::InvalidOptions(
                "a command needs a program name".into(),
            ));
        }
        Ok(Self {
            argv,
            cwd: None,
            env: BTreeMap::new(),
            timeout: None,
            output_limit: 1 << 20,
            sink: None,
            tty: false,
            stdin: None,
            signals: None,
        })
    }

    /// The argv (program first).
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// Sets the timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adds an environment variable.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the output sink.
    #[must_use]
    pub fn sink(mut self, sink: OutputSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Sets the working directory, relative to the workspace (it must stay inside it).
    #[must_use]
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Keeps at most `bytes` of each output stream (default 1 MiB).
    #[must_use]
    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = bytes;
        self
    }

    /// Feeds the command's standard input from `stdin`.
    #[must_use]
    pub fn stdin(mut self, stdin: ExecStdin) -> Self {
        self.stdin = Some(stdin);
        self
    }

    /// Delivers the signal sent through `token` to the running command.
    #[must_use]
    pub fn signals(mut self, token: crate::SignalToken) -> Self {
        self.signals = Some(token);
        self
    }

    /// Asks for a terminal (providers that support one; the local provider ignores it).
    #[must_use]
    pub fn tty(mut self, tty: bool) -> Self {
        self.tty = tty;
        self
    }
}

impl fmt::Debug for ExecRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecRequest")
            .field("argv", &self.argv)
            .field("cwd", &self.cwd)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("tty", &self.tty)
            .field("stdin", &self.stdin)
            .field(
                "signals",
                &self.signals.as_ref().map(crate::SignalToken::received),
            )
            .finish_non_exhaustive()
    }
}

/// What a command did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExecOutput {
    /// The exit code (128 + N when signal N ended it, as a shell reports it); `None`
    /// when the timeout killed it or no code is known.
    pub exit_code: Option<i32>,
    /// True when the timeout killed it.
    pub timed_out: bool,
    /// Captured standard output (at most `output_limit` bytes).
    #[serde(with = "lossy")]
    pub stdout: Vec<u8>,
    /// Captured standard error (at most `output_limit` bytes).
    #[serde(with = "lossy")]
    pub stderr: Vec<u8>,
    /// True when either stream was cut at `output_limit`.
    pub truncated: bool,
    /// Wall time.
    pub duration: Duration,
}

impl ExecOutput {
    /// True when the command exited with status 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// Standard output as text (invalid UTF-8 replaced).
    pub fn stdout_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// Standard error as text (invalid UTF-8 replaced).
    pub fn stderr_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}

mod lossy {
    pub(super) fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(b))
    }
}

#[cfg(test)]
mod port_tests {
    use super::PortRequest;

    #[test]
    fn ports_parse_container_or_host_colon_container() {
        let p = PortRequest::parse("3000").unwrap();
        assert_eq!((p.container, p.host), (3000, None));
        let p = PortRequest::parse("8080:3000").unwrap();
        assert_eq!((p.container, p.host), (3000, Some(8080)));
        for bad in ["", "0", "x", "70000", "1:2:3", ":3000", "3000:"] {
            assert!(PortRequest::parse(bad).is_err(), "{bad}");
        }
    }
}
