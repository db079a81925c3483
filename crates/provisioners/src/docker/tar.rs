//! A minimal ustar writer for the offline base image's root filesystem.
//!
//! Only what `docker import` needs: directories, regular files and symlinks with fixed
//! owner and mtime, so the same inputs give the same bytes (and digest). Not a general
//! tar library: no long names (over 100 bytes), no reading.

use std::io;

pub(crate) struct TarWriter {
    out: Vec<u8>,
}

#[derive(Clone, Copy)]
enum Kind {
    File,
    Dir,
    Symlink,
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

    fn header(
        &mut self,
        path: &str,
        kind: Kind,
        mode: u32,
        size: u64,
        link: &str,
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
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], 0);
        h[156] = match kind {
            Kind::File => b'0',
            Kind::Symlink => b'2',
            Kind::Dir => b'5',
        };
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..269].copy_from_slice(b"root");
        h[297..301].copy_from_slice(b"root");
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
        self.header(&path, Kind::Dir, mode, 0, "")
    }

    pub(crate) fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.header(path, Kind::File, mode, data.len() as u64, "")?;
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        Ok(())
    }

    pub(crate) fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.header(path, Kind::Symlink, 0o777, 0, target)
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(&[0u8; 1024]);
        self.out
    }
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
}
