//! Snapshot keys and setup recipes.

use std::fmt;
use std::time::Duration;

use sandbox_core::{RepoUrl, Transport};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// One setup command of a [`Recipe`]: an argv (never a shell string) and its deadline.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecipeCommand {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Per-command deadline (default 10 minutes).
    #[serde(default, with = "opt_secs", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

impl RecipeCommand {
    /// A command from its argv.
    ///
    /// # Errors
    /// [`Error::InvalidRecipe`] when the argv is empty.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(argv: I) -> Result<Self, Error> {
        let argv: Vec<String> = argv.into_iter().map(Into::into).collect();
        if argv.first().is_none_or(String::is_empty) {
            return Err(Error::InvalidRecipe(
                "a recipe command needs a program name".into(),
            ));
        }
        Ok(Self {
            argv,
            timeout: None,
        })
    }

    /// Sets the deadline.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

mod opt_secs {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let v: Option<f64> = serde::Deserialize::deserialize(d)?;
        v.map(|s| Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// How a snapshot is prepared after the clone: setup commands, the base image and the
/// secrets its commands may see. Its [`digest`](Recipe::digest) is part of the
/// [`SnapshotKey`], so changing the recipe starts a new line of snapshots instead of
/// reusing stale ones.
///
/// # Secrets
///
/// Recipe commands run repository code, so by default they see **no** secret: not the
/// git token (`HEADSTART_GIT_TOKEN`, `GITHUB_TOKEN`), not any variable that holds a
/// registered secret (cloud tokens, analytics keys), neither from the build sandbox's
/// environment nor inherited from the host's. A recipe that needs one names it:
///
/// ```json
/// {"commands": [{"argv": ["make", "deps"]}], "secrets": ["HEADSTART_GIT_TOKEN"]}
/// ```
///
/// Each named variable is passed to every command of the recipe with its value from the
/// builder's environment; the git token variables fall back to the token of the
/// build's credentials. A named variable that has no value is left unset. Only the
/// names are part of the digest, never the values, so rotating a token does not start
/// a new line of snapshots. Whatever a command prints is scrubbed of every registered
/// secret before it is recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recipe {
    /// Commands run in the workspace, in order; the first failure fails the build.
    #[serde(default)]
    pub commands: Vec<RecipeCommand>,
    /// The base image (container providers), `None` for the provider default.
    #[serde(default)]
    pub base_image: Option<String>,
    /// Names of environment variables holding secrets that the commands may see (see
    /// [Secrets](#secrets)); empty by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Hooks run on **every** start (cold, warm, reconnected), after the checkout and
    /// before the start returns; a failing one fails the start. Not part of the
    /// [`digest`](Self::digest): they do not change what a snapshot holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_start: Vec<RecipeCommand>,
}

impl Recipe {
    /// An empty recipe (clone only).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Adds a command.
    #[must_use]
    pub fn command(mut self, command: RecipeCommand) -> Self {
        self.commands.push(command);
        self
    }

    /// Lets the commands see the secret variable `name` (see [Secrets](#secrets)).
    ///
    /// # Errors
    /// [`Error::InvalidRecipe`] when `name` is not a variable name.
    pub fn secret(mut self, name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        check_var_name(&name)?;
        if !self.secrets.contains(&name) {
            self.secrets.push(name);
        }
        Ok(self)
    }

    /// Checks what deserialising cannot: the secret names are variable names.
    ///
    /// # Errors
    /// [`Error::InvalidRecipe`] naming the bad entry.
    pub fn validate(&self) -> Result<(), Error> {
        self.secrets.iter().try_for_each(|n| check_var_name(n))
    }

    /// A stable digest of the commands (argv only; deadlines do not change the result),
    /// the base image and the names (never the values) of the secrets it may see: 16
    /// hex digits of SHA-256.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"headstart-recipe-v1\0");
        for c in &self.commands {
            h.update(b"cmd\0");
            for a in &c.argv {
                h.update((a.len() as u64).to_le_bytes());
                h.update(a.as_bytes());
            }
        }
        h.update(b"image\0");
        h.update(self.base_image.as_deref().unwrap_or("").as_bytes());
        // recipes without secrets keep the digest they always had
        if !self.secrets.is_empty() {
            let mut names: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
            names.sort_unstable();
            names.dedup();
            h.update(b"secrets\0");
            for n in names {
                h.update((n.len() as u64).to_le_bytes());
                h.update(n.as_bytes());
            }
        }
        hex::encode(&h.finalize()[..8])
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
fn check_var_name(name: &str) -> Result<(), Error> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRecipe(format!(
            "recipe secret `{}` is not an environment variable name",
            name.escape_debug()
        )))
    }
}

/// The name under which a repository's base snapshots are stored: derived from the
/// repository (host, port and path, normalised) and the recipe digest.
///
/// Normalisation: the host is lower-cased and the path loses a trailing `/` and `.git`;
/// scheme and user are ignored, so the https, ssh and scp-like forms of one repository
/// share a key. A port other than the scheme's default is part of the key (two
/// servers on one host are two repositories: one must never boot from the other's
/// snapshot), and the path keeps its case (a case-sensitive server may hold both `App`
/// and `app`). Local repositories (`file://` and paths) key on their absolute path.
/// The result is a safe name (`[a-z0-9._-]`, at most 63 characters): a readable
/// prefix plus a digest of the full identity.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotKey {
    name: String,
    identity: String,
}

impl SnapshotKey {
    /// The key for `url` built with `recipe`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] when the URL names no repository path.
    pub fn for_repo(url: &RepoUrl, recipe: &Recipe) -> Result<Self, Error> {
        let identity = repo_identity(url)?;
        let mut h = Sha256::new();
        h.update(identity.as_bytes());
        h.update(b"\0");
        h.update(recipe.digest().as_bytes());
        let digest = hex::encode(&h.finalize()[..6]);
        let readable: String = identity
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let readable = readable.trim_matches(|c| c == '-' || c == '.');
        let mut prefix: String = readable.chars().rev().take(63 - 13).collect();
        prefix = prefix.chars().rev().collect();
        let prefix = prefix.trim_matches(|c| c == '-' || c == '.');
        let mut name = format!("{prefix}-{digest}");
        while name.contains("--") {
            name = name.replace("--", "-");
        }
        while name.contains("..") {
            name = name.replace("..", ".");
        }
        let name = name.trim_start_matches(['-', '.']).to_owned();
        Ok(Self { name, identity })
    }

    /// The key as stored (a safe name).
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The normalised repository identity the key was derived from
    /// (`host/owner/repo`, or `local/<path>`).
    pub fn identity(&self) -> &str {
        &self.identity
    }
}

impl fmt::Display for SnapshotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.name)
    }
}

impl fmt::Debug for SnapshotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SnapshotKey({} = {})", self.name, self.identity)
    }
}

/// `host[:port]/path`: the host lower-cased, a port only when it is not the scheme's
/// default, the path as given without `.git` and slashes at the ends; `local/<path>`
/// for local repositories.
pub(crate) fn repo_identity(url: &RepoUrl) -> Result<String, Error> {
    let mut path = url.path().trim_matches('/').to_owned();
    if let Some(stripped) = path.strip_suffix(".git") {
        path = stripped.trim_end_matches('/').to_owned();
    }
    if path.is_empty() {
        return Err(Error::InvalidKey(format!("{url} names no repository path")));
    }
    let host = match (url.transport(), url.non_default_port()) {
        (Transport::File, _) => "local".to_owned(),
        (_, None) => url.host().unwrap_or("unknown").to_ascii_lowercase(),
        (_, Some(port)) => format!(
            "{}:{port}",
            url.host().unwrap_or("unknown").to_ascii_lowercase()
        ),
    };
    Ok(format!("{host}/{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(url: &str) -> SnapshotKey {
        SnapshotKey::for_repo(&RepoUrl::parse(url).unwrap(), &Recipe::empty()).unwrap()
    }

    #[test]
    fn forms_of_one_repository_share_a_key() {
        let forms = [
            "https://github.com/acme/app.git",
            "https://github.com/acme/app",
            "https://github.com/acme/app/",
            "https://GitHub.com/acme/app.git/",
            "ssh://git@github.com/acme/app.git",
            "ssh://git@github.com:22/acme/app",
            "https://github.com:443/acme/app",
            "git@github.com:acme/app.git",
            "git://github.com/acme/app.git",
            "git://github.com:9418/acme/app.git",
        ];
        let first = key(forms[0]);
        for f in forms {
            assert_eq!(key(f), first, "{f}");
        }
        assert_eq!(first.identity(), "github.com/acme/app");
    }

    #[test]
    fn another_port_or_another_case_is_another_repository() {
        let base = key("git://127.0.0.1/small.git");
        for other in [
            "git://127.0.0.1:9419/small.git",
            "http://127.0.0.1:8080/small.git",
            "ssh://git@127.0.0.1:2222/small.git",
            "git://127.0.0.1/Small.git",
        ] {
            assert_ne!(key(other), base, "{other}");
        }
        assert_eq!(
            key("git://127.0.0.1:9419/small.git").identity(),
            "127.0.0.1:9419/small"
        );
        assert_eq!(
            key("http://127.0.0.1:8080/a/App.git").identity(),
            "127.0.0.1:8080/a/App"
        );
    }

    #[test]
    fn different_repositories_and_recipes_differ() {
        assert_ne!(
            key("https://github.com/acme/app"),
            key("https://github.com/acme/app2")
        );
        assert_ne!(
            key("https://github.com/acme/app"),
            key("https://gitlab.com/acme/app")
        );
        let url = RepoUrl::parse("https://github.com/acme/app").unwrap();
        let with_cmd = Recipe::empty().command(RecipeCommand::new(["make"]).unwrap());
        assert_ne!(
            SnapshotKey::for_repo(&url, &Recipe::empty()).unwrap(),
            SnapshotKey::for_repo(&url, &with_cmd).unwrap()
        );
    }

    #[test]
    fn local_paths_get_keys_and_keep_case() {
        let a = key("file:///srv/Repos/app.git");
        let b = key("/srv/Repos/app.git/");
        assert_eq!(a, b);
        assert_eq!(a.identity(), "local/srv/Repos/app");
        assert_ne!(a, key("/srv/repos/app"));
    }

    #[test]
    fn keys_are_safe_names() {
        let long = format!("https://example.com/{}/repo", "x".repeat(200));
        for url in [
            "https://example.com/a/b",
            long.as_str(),
            "https://example.com/we.ird__name/-dash-",
            "file:///tmp/a b",
            "file:///tmp/.Tmp1n2hKs/Upstream",
        ]
        .iter()
        .filter_map(|u| RepoUrl::parse(u).ok())
        {
            let k = SnapshotKey::for_repo(&url, &Recipe::empty()).unwrap();
            let s = k.as_str();
            assert!(s.len() <= 63, "{s}");
            assert!(
                sandbox_core::SnapshotId::new(s).is_ok(),
                "{s} must be a valid store name"
            );
        }
    }

    #[test]
    fn recipe_digest_ignores_timeouts_but_not_argv() {
        let a = Recipe::empty().command(RecipeCommand::new(["make", "deps"]).unwrap());
        let b = Recipe::empty().command(
            RecipeCommand::new(["make", "deps"])
                .unwrap()
                .timeout(Duration::from_secs(5)),
        );
        let c = Recipe::empty().command(RecipeCommand::new(["make", "dep", "s"]).unwrap());
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn secrets_are_named_in_the_digest_and_checked() {
        let plain = Recipe::empty().command(RecipeCommand::new(["make"]).unwrap());
        // unchanged for recipes without secrets (existing snapshot keys stay valid)
        assert_eq!(plain.digest(), "8dea23e0f30afeeb");
        let with = plain.clone().secret("HEADSTART_GIT_TOKEN").unwrap();
        assert_ne!(with.digest(), plain.digest());
        let json = r#"{"commands":[{"argv":["make"]}],"secrets":["HEADSTART_GIT_TOKEN"]}"#;
        let parsed: Recipe = serde_json::from_str(json).unwrap();
        assert_eq!(parsed, with);
        assert_eq!(parsed.digest(), with.digest());
        assert!(plain.clone().secret("A=B").is_err());
        assert!(plain.clone().secret("").is_err());
        let bad: Recipe = serde_json::from_str(r#"{"secrets":["1X"]}"#).unwrap();
        assert!(bad.validate().is_err());
    }
}
