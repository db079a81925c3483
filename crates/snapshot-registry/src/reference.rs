//! `--registry REF`: where snapshots go, e.g. `ghcr.io/acme/headstart` or
//! `127.0.0.1:5000/headstart`.

use std::fmt;
use std::net::IpAddr;

use crate::error::Error;

/// A registry host and a repository in it (no tag, no digest: tags are the snapshot
/// keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    registry: String,
    repository: String,
}

impl RegistryRef {
    /// Parses `HOST[:PORT]/REPOSITORY`, as `docker push` names images (without a tag).
    ///
    /// # Errors
    /// [`Error::InvalidReference`] saying what to write instead.
    pub fn parse(value: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::InvalidReference {
            value: value.escape_debug().to_string(),
            reason: reason.to_owned(),
        };
        let v = value.trim();
        if v.is_empty() {
            return Err(bad("it is empty; give HOST[:PORT]/REPOSITORY"));
        }
        if v.contains("://") {
            return Err(bad(
                "leave out the scheme (HTTPS is used; plain HTTP for loopback hosts or with the insecure setting)",
            ));
        }
        if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains whitespace"));
        }
        if v.contains('@') {
            return Err(bad(
                "no user or digest: credentials come from the Docker config or the token setting",
            ));
        }
        let Some((host, repository)) = v.split_once('/') else {
            return Err(bad(
                "name the registry host and a repository, e.g. ghcr.io/acme/headstart",
            ));
        };
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(bad(
                "the first part must be a registry host (with a dot or a port, or localhost), e.g. ghcr.io/acme/headstart",
            ));
        }
        if repository
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
        {
            return Err(bad(
                "no tag: headstart tags snapshots itself (<key>, <key>-<id>)",
            ));
        }
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        };
        if !repository.split('/').all(segment_ok) {
            return Err(bad(
                "the repository path takes lowercase letters, digits, `.`, `_` and `-` between slashes",
            ));
        }
        Ok(Self {
            registry: host.to_owned(),
            repository: repository.to_owned(),
        })
    }

    /// The registry host (with its port, if any).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path in it.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The host without the port.
    pub fn host(&self) -> &str {
        let r = self.registry.as_str();
        if let Some(rest) = r.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        match r.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => r,
        }
    }

    /// True for `localhost` and loopback addresses, where plain HTTP is allowed (like
    /// Docker).
    pub fn is_loopback(&self) -> bool {
        let host = self.host();
        host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The repository `name` below this one (`HOST/REPO/name`), on the same registry.
    #[must_use]
    pub fn child(&self, name: &str) -> Self {
        Self {
            registry: self.registry.clone(),
            repository: format!("{}/{name}", self.repository),
        }
    }

    pub(crate) fn tag(&self, tag: &str) -> oci_client::Reference {
        oci_client::Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            tag.to_owned(),
        )
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

/// Checks that `key` can be a tag (snapshot keys from snapshot-refresh always can).
pub(crate) fn check_tag(key: &str) -> Result<(), Error> {
    let ok = !key.is_empty()
        && key.len() <= 100
        && key.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidReference {
            value: key.escape_debug().to_string(),
            reason: "a snapshot key must be usable as a tag (letters, digits, `.`, `_`, `-`)"
                .into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_and_paths() {
        let r = RegistryRef::parse("127.0.0.1:5000/headstart").expect("valid");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "headstart");
        assert!(r.is_loopback());
        let r = RegistryRef::parse("ghcr.io/acme/headstart").expect("valid");
        assert_eq!(r.host(), "ghcr.io");
        assert!(!r.is_loopback());
        assert!(
            RegistryRef::parse("localhost:5000/a/b")
                .expect("valid")
                .is_loopback()
        );
        assert!(
            RegistryRef::parse("[::1]:5000/a")
                .expect("valid")
                .is_loopback()
        );
    }

    #[test]
    fn refuses_what_is_not_a_repository() {
        for bad in [
            "",
            "https://ghcr.io/acme/x",
            "acme/headstart",
            "ghcr.io",
            "ghcr.io/acme/x:latest",
            "ghcr.io/Acme/x",
            "user@ghcr.io/x",
            "ghcr.io//x",
            "ghcr.io/x y",
        ] {
            let e = RegistryRef::parse(bad).expect_err(bad);
            assert_eq!(e.kind(), "invalid_registry", "{bad}");
        }
    }
}
