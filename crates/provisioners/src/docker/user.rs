//! The container user: any host `uid:gid` becomes a real user inside the container.
//!
//! Containers run as the host user's numeric `uid:gid` (or [`DockerConfig::user`]),
//! which the image usually does not know: `whoami` fails, git cannot look up the user,
//! and `HOME` is `/`. Before the container starts, [`prepare`] reads the image's
//! `/etc/passwd` and `/etc/group` through the engine's archive API and, when the uid
//! (or gid) has no entry, writes them back with one added (`headstart`, home
//! `/home/headstart` made and owned by that user, shell `/bin/sh`). The runtime then
//! sets `HOME` from that entry for every process. Works for any image (the base image,
//! a pulled one, a snapshot), changes only the container (never the image), runs
//! nothing inside it, and leaves a user the image already has as it is.
//!
//! [`DockerConfig::user`]: super::DockerConfig::user

use bollard::Docker;
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use sandbox_core::{Error, Result};

use super::engine::{engine_error, is_not_found};
use super::tar::{TarWriter, read_files};

/// The name given to a user (and group) the image does not have.
pub const SANDBOX_USER: &str = "headstart";

/// A numeric `uid[:gid]`; `None` for a user given by name (the image must know it).
fn numeric(user: &str) -> Option<(u32, u32)> {
    let (uid, gid) = match user.split_once(':') {
        Some((u, g)) => (u.parse().ok()?, g.parse().ok()?),
        None => {
            let uid = user.parse().ok()?;
            (uid, uid)
        }
    };
    Some((uid, gid))
}

/// One file of a (not yet started) container, `None` when it does not exist.
async fn read_file(docker: &Docker, container: &str, path: &str) -> Result<Option<Vec<u8>>> {
    let options = DownloadFromContainerOptionsBuilder::default()
        .path(path)
        .build();
    let mut stream = docker.download_from_container(container, Some(options));
    let mut archive = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => archive.extend_from_slice(&bytes),
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(engine_error(format!("reading {path} in {container}"), e)),
        }
    }
    let files = read_files(&archive)
        .map_err(|e| Error::io(format!("reading {path} from {container}"), e))?;
    Ok(files.into_iter().next().map(|(_, data)| data))
}

/// A name not taken in `db` (an `/etc/passwd` or `/etc/group` text): `headstart`, else
/// `headstart-<id>`.
fn free_name(db: &str, id: u32) -> String {
    let taken = |n: &str| db.lines().any(|l| l.split(':').next() == Some(n));
    if taken(SANDBOX_USER) {
        format!("{SANDBOX_USER}-{id}")
    } else {
        SANDBOX_USER.to_owned()
    }
}

/// True when `db` has an entry whose third field (uid or gid) is `id`.
fn has_id(db: &str, id: u32) -> bool {
    let id = id.to_string();
    db.lines().any(|l| l.split(':').nth(2) == Some(id.as_str()))
}

/// What [`prepare`] adds to the user and group databases.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Additions {
    pub(crate) passwd: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) home: Option<String>,
}

/// The databases with `uid:gid` added where missing (pure; see [`prepare`]).
pub(crate) fn add_user(passwd: &str, group: &str, uid: u32, gid: u32) -> Additions {
    let with_newline = |s: &str| {
        if s.is_empty() || s.ends_with('\n') {
            s.to_owned()
        } else {
            format!("{s}\n")
        }
    };
    let mut out = Additions {
        passwd: None,
        group: None,
        home: None,
    };
    if !has_id(group, gid) {
        let name = free_name(group, gid);
        out.group = Some(format!("{}{name}:x:{gid}:\n", with_newline(group)));
    }
    if !has_id(passwd, uid) {
        let name = free_name(passwd, uid);
        let home = format!("home/{name}");
        out.passwd = Some(format!(
            "{}{name}:x:{uid}:{gid}:{name}:/{home}:/bin/sh\n",
            with_newline(passwd)
        ));
        out.home = Some(home);
    }
    out
}

/// Makes `user` (a numeric `uid[:gid]`) known in a created, not yet started container:
/// see the [module docs](self). A user given by name is left to the image.
///
/// # Errors
/// [`Error::Provider`] when the engine fails.
pub(crate) async fn prepare(docker: &Docker, container: &str, user: &str) -> Result<()> {
    let Some((uid, gid)) = numeric(user) else {
        return Ok(());
    };
    let passwd = read_file(docker, container, "/etc/passwd").await?;
    let group = read_file(docker, container, "/etc/group").await?;
    let text = |b: Option<Vec<u8>>| String::from_utf8_lossy(&b.unwrap_or_default()).into_owned();
    let add = add_user(&text(passwd), &text(group), uid, gid);
    if add.passwd.is_none() && add.group.is_none() {
        return Ok(());
    }
    let io = |e| Error::io("writing the container's user database", e);
    let mut t = TarWriter::new();
    if let Some(p) = &add.passwd {
        t.file("etc/passwd", 0o644, p.as_bytes()).map_err(io)?;
    }
    if let Some(g) = &add.group {
        t.file("etc/group", 0o644, g.as_bytes()).map_err(io)?;
    }
    if let Some(home) = &add.home {
        t.dir_owned(home, 0o755, (uid, gid)).map_err(io)?;
    }
    // Without `copyUIDGID` the engine keeps the owners the archive names (root for
    // the databases, the user for the home); with it, it would give every file to the
    // container user, and look that user up in the very database being written.
    let options = UploadToContainerOptionsBuilder::default().path("/").build();
    docker
        .upload_to_container(
            container,
            Some(options),
            bollard::body_full(t.finish().into()),
        )
        .await
        .map_err(|e| engine_error(format!("adding user {user} to container {container}"), e))?;
    tracing::debug!(%container, %user, "container user added to /etc/passwd");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_users_only() {
        assert_eq!(numeric("1000:1001"), Some((1000, 1001)));
        assert_eq!(numeric("1000"), Some((1000, 1000)));
        assert_eq!(numeric("agent"), None);
        assert_eq!(numeric("1000:staff"), None);
    }

    #[test]
    fn adds_only_what_is_missing() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nheadstart:x:5:5::/x:/bin/sh";
        let group = "root:x:0:\n";
        let add = add_user(passwd, group, 0, 0);
        assert_eq!(
            add,
            Additions {
                passwd: None,
                group: None,
                home: None
            }
        );
        let add = add_user(passwd, group, 1000, 1000);
        assert_eq!(
            add.passwd.as_deref(),
            Some(
                "root:x:0:0:root:/root:/bin/sh\nheadstart:x:5:5::/x:/bin/sh\nheadstart-1000:x:1000:1000:headstart-1000:/home/headstart-1000:/bin/sh\n"
            )
        );
        assert_eq!(add.group.as_deref(), Some("root:x:0:\nheadstart:x:1000:\n"));
        assert_eq!(add.home.as_deref(), Some("home/headstart-1000"));
        // an image without the files gets them
        let add = add_user("", "", 7, 8);
        assert_eq!(
            add.passwd.as_deref(),
            Some("headstart:x:7:8:headstart:/home/headstart:/bin/sh\n")
        );
    }
}
