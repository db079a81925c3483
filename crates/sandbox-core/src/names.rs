//! Validated names: branches, sandboxes, snapshots.

use crate::error::Error;

/// Implements `Display` (the value, padded as `{:>12}` asks) and `Debug`
/// (`TypeName(value)`) for a tuple struct over a `String`. Shared by the validated
/// name types of the headstart crates; not part of the supported API.
#[doc(hidden)]
#[macro_export]
macro_rules! __string_newtype_fmt {
    ($name:ident) => {
        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.pad(&self.0)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }
    };
}

fn escaped(value: &str) -> String {
    value.escape_debug().to_string()
}

/// A git branch name, validated as `refs/heads/<name>` by git's own rules, and never
/// starting with `-`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct BranchName(String);

impl BranchName {
    /// Validates `name` as a branch name.
    ///
    /// # Errors
    /// [`Error::InvalidName`] saying why git would refuse it.
    pub fn new(name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        let bad = |reason: &str| Error::InvalidName {
            what: "branch name",
            value: escaped(&name),
            reason: reason.into(),
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.starts_with('-') {
            return Err(bad("a branch name may not start with `-`"));
        }
        if name.starts_with("refs/") {
            return Err(bad("give the short name (`feature/x`), not a full ref"));
        }
        if name == "HEAD" {
            return Err(bad("`HEAD` is not a branch"));
        }
        if name == "@" {
            // libgit2 accepts `refs/heads/@`, but the git CLI reads `@` as HEAD.
            return Err(bad("`@` is git's shorthand for HEAD, not a branch"));
        }
        if !git2::Reference::is_valid_name(&format!("refs/heads/{name}")) {
            return Err(bad(
                "not a valid git ref name (no spaces, `..`, `~`, `^`, `:`, `?`, `*`, `[`, `\\`, \
                 no leading or trailing `/` or `.`, no `.lock` suffix)",
            ));
        }
        Ok(Self(name))
    }

    /// The short name (`feature/x`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::__string_newtype_fmt!(BranchName);

impl std::str::FromStr for BranchName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl<'de> serde::Deserialize<'de> for BranchName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Checks a simple identifier: 1 to 63 characters of `[a-z0-9._-]`, starting with a
/// letter or digit. Safe as a directory name, a container name and a label value.
fn check_ident(what: &'static str, value: &str) -> Result<(), Error> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && !value.contains("..");
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what,
            value: escaped(value),
            reason: "use 1 to 63 characters of a-z, 0-9, `.`, `_` or `-`, starting with a letter \
                     or digit"
                .into(),
        })
    }
}

macro_rules! ident_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates the name.
            ///
            /// # Errors
            /// [`Error::InvalidName`] listing the allowed characters.
            pub fn new(value: impl Into<String>) -> Result<Self, Error> {
                let value = value.into();
                check_ident($what, &value)?;
                Ok(Self(value))
            }

            /// The name as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        crate::__string_newtype_fmt!($name);

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::new(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

ident_type!(
    /// The name of a sandbox: what `headstart exec NAME` and reconnects use.
    SandboxName,
    "sandbox name"
);

ident_type!(
    /// The id of one snapshot.
    SnapshotId,
    "snapshot id"
);

impl SnapshotId {
    /// A fresh, unique, sortable-by-time id (`<unix-millis>-<random>`).
    pub fn generate() -> Self {
        let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let rand = uuid::Uuid::new_v4().simple().to_string();
        Self(format!("{millis:013}-{}", &rand[..8]))
    }
}

impl SandboxName {
    /// A fresh random name (`hs-<8 hex>`), for sandboxes started without one.
    pub fn generate() -> Self {
        let rand = uuid::Uuid::new_v4().simple().to_string();
        Self(format!("hs-{}", &rand[..8]))
    }
}
