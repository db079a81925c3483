//! Files under `<data_dir>/feature-flags/`: the install id, the `/flags` answer cache,
//! the unreachable-host (negative) cache, cached definitions and the exposures already
//! sent.
//!
//! What it is: small JSON files written atomically (temp file + rename), private to the
//! user (mode 0600). What it is not: a lock-protected database; two concurrent
//! `headstart` processes may both write, and the last complete write wins.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::eval::Definitions;
use crate::remote::RemoteFlag;

pub(crate) const INSTALL_ID_FILE: &str = "install-id";
const FLAGS_CACHE_FILE: &str = "flags-cache.json";
const UNREACHABLE_FILE: &str = "unreachable.json";
const DEFINITIONS_FILE: &str = "definitions.json";
const EXPOSURES_FILE: &str = "exposures.json";

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn open_private(path: &Path, create_new: bool) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if create_new {
        opts.create_new(true);
    } else {
        opts.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut f = open_private(&tmp, true)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let text = std::fs::read(path).ok()?;
    match serde_json::from_slice(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "ignoring unreadable cache file");
            None
        }
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) {
    let result = serde_json::to_vec(value)
        .map_err(std::io::Error::other)
        .and_then(|bytes| write_atomic(path, &bytes));
    if let Err(e) = result {
        tracing::debug!(path = %path.display(), error = %e, "could not write cache file");
    }
}

/// Reads the install id, creating it (a random UUID, file mode 0600) on first use.
pub(crate) fn install_id(flags_dir: &Path) -> std::io::Result<String> {
    let path = flags_dir.join(INSTALL_ID_FILE);
    if let Some(id) = read_install_id(&path) {
        return Ok(id);
    }
    std::fs::create_dir_all(flags_dir)?;
    let id = uuid::Uuid::new_v4().to_string();
    match open_private(&path, true) {
        Ok(mut f) => {
            f.write_all(id.as_bytes())?;
            f.sync_all()?;
            Ok(id)
        }
        // Another process created it first (use theirs), or the file is corrupt
        // (replace it).
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match read_install_id(&path) {
            Some(theirs) => Ok(theirs),
            None => {
                write_atomic(&path, id.as_bytes())?;
                Ok(id)
            }
        },
        Err(e) => Err(e),
    }
}

fn read_install_id(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let id = text.trim();
    uuid::Uuid::parse_str(id).ok().map(|_| id.to_owned())
}

/// Cached `/flags` answers for one (host, project, distinct id, person properties).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FlagsCache {
    pub(crate) host: String,
    pub(crate) project_key: String,
    pub(crate) distinct_id: String,
    pub(crate) properties: crate::eval::Properties,
    pub(crate) flags: HashMap<String, CachedFlag>,
}

/// One flag's cached answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CachedFlag {
    pub(crate) fetched_at_ms: u64,
    pub(crate) request_id: Option<String>,
    pub(crate) flag: RemoteFlag,
}

/// How many (host, project, id, properties) scopes the cache keeps, so commands that
/// send different person properties do not evict each other.
pub(crate) const MAX_SCOPES: usize = 4;

impl FlagsCache {
    pub(crate) fn same_scope(&self, other: &FlagsCache) -> bool {
        self.host == other.host
            && self.project_key == other.project_key
            && self.distinct_id == other.distinct_id
            && self.properties == other.properties
    }
}

impl CachedFlag {
    pub(crate) fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.fetched_at_ms))
    }
}

/// The host that timed out or refused, and when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Unreachable {
    pub(crate) host: String,
    pub(crate) failed_at_ms: u64,
    pub(crate) error: String,
}

/// Definitions fetched with an ETag.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CachedDefinitions {
    pub(crate) host: String,
    pub(crate) etag: Option<String>,
    pub(crate) fetched_at_ms: u64,
    pub(crate) definitions: Definitions,
}

/// The files of one data directory.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    dir: PathBuf,
}

impl Store {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Store { dir }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cached scopes, most recently written first.
    pub(crate) fn flags_cache(&self) -> Vec<FlagsCache> {
        read_json(&self.dir.join(FLAGS_CACHE_FILE)).unwrap_or_default()
    }

    /// Writes `scope` first, keeping up to [`MAX_SCOPES`] others.
    pub(crate) fn save_flags_scope(&self, scope: FlagsCache) {
        let mut all = self.flags_cache();
        all.retain(|c| !c.same_scope(&scope));
        all.insert(0, scope);
        all.truncate(MAX_SCOPES);
        write_json(&self.dir.join(FLAGS_CACHE_FILE), &all);
    }

    /// The unreachable record for `host` if it is younger than `remember_for`.
    pub(crate) fn unreachable(&self, host: &str, remember_for: Duration) -> Option<Unreachable> {
        let u: Unreachable = read_json(&self.dir.join(UNREACHABLE_FILE))?;
        let until = u
            .failed_at_ms
            .saturating_add(remember_for.as_millis() as u64);
        (u.host == host && until > now_ms()).then_some(u)
    }

    pub(crate) fn mark_unreachable(&self, host: &str, error: &str) {
        let u = Unreachable {
            host: host.to_owned(),
            failed_at_ms: now_ms(),
            error: error.to_owned(),
        };
        write_json(&self.dir.join(UNREACHABLE_FILE), &u);
    }

    pub(crate) fn clear_unreachable(&self) {
        let _ = std::fs::remove_file(self.dir.join(UNREACHABLE_FILE));
    }

    pub(crate) fn definitions(&self) -> Option<CachedDefinitions> {
        read_json(&self.dir.join(DEFINITIONS_FILE))
    }

    pub(crate) fn save_definitions(&self, defs: &CachedDefinitions) {
        write_json(&self.dir.join(DEFINITIONS_FILE), defs);
    }

    pub(crate) fn exposures(&self) -> BTreeSet<String> {
        read_json(&self.dir.join(EXPOSURES_FILE)).unwrap_or_default()
    }

    /// Adds `keys` to the set of exposures already delivered.
    pub(crate) fn add_exposures(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        let mut all = self.exposures();
        all.extend(keys.iter().cloned());
        write_json(&self.dir.join(EXPOSURES_FILE), &all);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_id_is_stable_and_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested/feature-flags");
        let a = install_id(&dir).unwrap();
        let b = install_id(&dir).unwrap();
        assert_eq!(a, b);
        assert!(uuid::Uuid::parse_str(&a).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(INSTALL_ID_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_corrupt_install_id_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(INSTALL_ID_FILE), "not a uuid").unwrap();
        let id = install_id(tmp.path()).unwrap();
        assert!(uuid::Uuid::parse_str(&id).is_ok());
        assert_eq!(install_id(tmp.path()).unwrap(), id);
    }

    #[test]
    fn unreachable_expires() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Store::new(tmp.path().to_owned());
        let minute = Duration::from_secs(60);
        s.mark_unreachable("http://h", "timeout");
        assert_eq!(s.unreachable("http://h", minute).unwrap().error, "timeout");
        assert!(s.unreachable("http://other", minute).is_none());
        assert!(s.unreachable("http://h", Duration::ZERO).is_none());
        s.clear_unreachable();
        assert!(s.unreachable("http://h", minute).is_none());
    }
}
