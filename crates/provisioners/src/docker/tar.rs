//! A minimal ustar writer (and reader) for root filesystems and container files.
//!
//! Only what `docker import` and the engine's archive API need: directories, regular
//! files, symlinks and hard links with a fixed mtime (owner root unless given), so the
//! same inputs give the same bytes (and digest); and reading the regular files out of
//! an archive the engine sends. Not a general tar library: no long names (over 100
//! bytes) when writing, no PAX or GNU extensions when reading.

use std::io;

pub(crate) struct TarWriter {
    out: Vec<u8>,
}

#[derive(Clone, Copy)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
}

fn octal(field: &mut [u8], value: u64) {
    // width-1 octal digits, NUL-terminated
    let s = format!("{value:0width$o}", width = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[s.len()] = 0;
}

impl TarWriter {
    pub(crate) fn new() -> Self {
        Self { out: Vec::new() }
    }

    #[allow(clippy::too_many_arguments)]
    fn header(
        &mut self,
        path: &str,
        kind: Kind,
        mode: u32,
        size: u64,
        link: &str,
        owner: (u32, u32),
    ) -> io::Result<()> {
        let too_long = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("tar {what} too long: {path}"),
            )
        };
        if path.len() > 100 {
            return Err(too_long("path"));
        }
        if link.len() > 100 {
            return Err(too_long("link target"));
        }
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], u64::from(owner.0));
        octal(&mut h[116..124], u64::from(owner.1));
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], 0);
        h[156] = match kind {
            Kind::File => b'0',
            Kind::Hardlink => b'1',
            Kind::Symlink => b'2',
            Kind::Dir => b'5',
        };
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        if owner == (0, 0) {
            h[265..269].copy_from_slice(b"root");
            h[297..301].copy_from_slice(b"root");
        }
        // checksum: computed with the checksum field as spaces
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.out.extend_from_slice(&h);
        Ok(())
    }

    pub(crate) fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        let path = if path.ends_with('/') {
            path.to_owned()
        } else {
            format!("{path}/")
        };
        self.header(&path, Kind::Dir, mode, 0, "", (0, 0))
    }

    /// A directory owned by `uid:gid` (numeric only; no names in the header).
    pub(crate) fn dir_owned(&mut self, path: &str, mode: u32, owner: (u32, u32)) -> io::Result<()> {
        let path = if path.ends_with('/') {
            path.to_owned()
        } else {
            format!("{path}/")
        };
        self.header(&path, Kind::Dir, mode, 0, "", owner)
    }

    pub(crate) fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.header(path, Kind::File, mode, data.len() as u64, "", (0, 0))?;
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        Ok(())
    }

    pub(crate) fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.header(path, Kind::Symlink, 0o777, 0, target, (0, 0))
    }

    /// A hard link to `target`, an entry written earlier (archive path, relative).
    pub(crate) fn hardlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.header(path, Kind::Hardlink, 0o755, 0, target, (0, 0))
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> usize {
        self.out.len()
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(&[0u8; 1024]);
        self.out
    }
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// The regular files of a ustar archive: (path, contents), in archive order. Other
/// entries are skipped; a truncated or malformed archive gives an error.
pub(crate) fn read_files(archive: &[u8]) -> io::Result<Vec<(String, Vec<u8>)>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("tar: {what}"));
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(h) = archive.get(at..at + 512) {
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let name_end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let mut name = String::from_utf8_lossy(&h[..name_end]).into_owned();
        if &h[257..262] == b"ustar" && h[345] != 0 {
            let prefix_end = h[345..500].iter().position(|&b| b == 0).unwrap_or(155);
            name = format!(
                "{}/{name}",
                String::from_utf8_lossy(&h[345..345 + prefix_end])
            );
        }
        let size = parse_octal(&h[124..136]).ok_or_else(|| bad("bad size field"))?;
        let size = usize::try_from(size).map_err(|_| bad("entry too large"))?;
        let start = at + 512;
        let end = start
            .checked_add(size)
            .ok_or_else(|| bad("entry too large"))?;
        if matches!(h[156], b'0' | 0) {
            let data = archive
                .get(start..end)
                .ok_or_else(|| bad("truncated entry"))?;
            out.push((name, data.to_vec()));
        }
        at = start + size.div_ceil(512) * 512;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_block_aligned_and_checksummed() {
        let mut t = TarWriter::new();
        t.dir("bin", 0o755).unwrap();
        t.file("bin/hello", 0o755, b"hi\n").unwrap();
        t.symlink("bin/sh", "hello").unwrap();
        let bytes = t.finish();
        assert_eq!(bytes.len() % 512, 0);
        assert_eq!(bytes.len(), 512 * 4 + 1024);
        assert_eq!(&bytes[0..4], b"bin/");
        assert_eq!(&bytes[512 + 257..512 + 262], b"ustar");
        // checksum verifies
        let h = &bytes[512..1024];
        let mut copy = h.to_vec();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u64 = copy.iter().map(|&b| u64::from(b)).sum();
        let stored = std::str::from_utf8(&h[148..154]).unwrap();
        assert_eq!(u64::from_str_radix(stored, 8).unwrap(), sum);
        assert!(TarWriter::new().file(&"x".repeat(101), 0o644, b"").is_err());
    }

    #[test]
    fn reads_back_the_files_it_wrote() {
        let mut t = TarWriter::new();
        t.dir_owned("home/u", 0o755, (1000, 1000)).unwrap();
        t.file("etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n")
            .unwrap();
        t.hardlink("etc/passwd-", "etc/passwd").unwrap();
        t.file("big", 0o644, &[7u8; 1500]).unwrap();
        let bytes = t.finish();
        assert_eq!(&bytes[108..115], b"0001750");
        let files = read_files(&bytes).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].0, "etc/passwd");
        assert_eq!(files[1].1.len(), 1500);
        assert!(read_files(&bytes[..bytes.len() - 1024 - 600]).is_err());
    }
}
