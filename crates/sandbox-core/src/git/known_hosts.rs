//! Verifying an ssh server's host key against an OpenSSH `known_hosts` file: plain
//! and hashed (`|1|salt|hmac`) host names, `[host]:port` entries, comma-separated
//! patterns with `*`/`?` wildcards and `!` negation, and `@revoked` keys.
//!
//! Not here: `@cert-authority` lines (host certificates) are ignored, so such hosts
//! need a plain key line; nothing is ever added to the file.

use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

/// The verdict on a host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A line for this host lists this key.
    Known,
    /// Lines for this host exist but list other keys (changed key: possible attack).
    Changed,
    /// The key is marked `@revoked`.
    Revoked,
    /// No line names this host.
    Unknown,
}

/// The name `known_hosts` uses for a host and port (`host`, or `[host]:port` when
/// the port is not 22).
pub(crate) fn host_entry_name(host: &str, port: Option<u16>) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match port {
        None | Some(22) => host.to_owned(),
        Some(p) => format!("[{host}]:{p}"),
    }
}

/// The default file: `~/.ssh/known_hosts`.
pub(crate) fn default_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".ssh/known_hosts"))
}

/// Checks `key` (the raw key blob the server presented) for `name` (see
/// [`host_entry_name`]) against the text of a `known_hosts` file.
pub(crate) fn verify(text: &str, name: &str, key: &[u8]) -> Verdict {
    let mut host_listed = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or("");
        let marker = first.strip_prefix('@');
        if marker.is_some() {
            first = fields.next().unwrap_or("");
        }
        let (Some(_kind), Some(blob)) = (fields.next(), fields.next()) else {
            continue;
        };
        if marker == Some("cert-authority") || !patterns_match(first, name) {
            continue;
        }
        let same_key = base64_decode(blob).is_some_and(|b| b == key);
        if marker == Some("revoked") {
            if same_key {
                return Verdict::Revoked;
            }
            continue;
        }
        host_listed = true;
        if same_key {
            return Verdict::Known;
        }
    }
    if host_listed {
        Verdict::Changed
    } else {
        Verdict::Unknown
    }
}

fn patterns_match(patterns: &str, name: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        let Some((salt, hash)) = hashed.split_once('|') else {
            return false;
        };
        let (Some(salt), Some(hash)) = (base64_decode(salt), base64_decode(hash)) else {
            return false;
        };
        return hmac_sha1(&salt, name.as_bytes()).as_slice() == hash.as_slice();
    }
    let mut matched = false;
    for pattern in patterns.split(',') {
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated, name) => return false,
            Some(_) => {}
            None => matched |= glob(pattern, name),
        }
    }
    matched
}

/// `*` and `?` wildcards, ASCII case-insensitive (host names).
fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

fn hmac_sha1(key: &[u8], message: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut k = if key.len() > BLOCK {
        Sha1::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(BLOCK, 0);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha1::new()
        .chain_update(&ipad)
        .chain_update(message)
        .finalize();
    Sha1::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Standard base64 as OpenSSH writes it; missing padding and stray trailing bits
/// are forgiven (a hand-edited file).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    LENIENT.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(data: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    #[test]
    fn plain_hashed_wildcard_negated_and_revoked_entries() {
        let key = b"\0\0\0\x0bssh-ed25519\0\0\0\x20abcdefghijklmnopqrstuvwxyz012345".to_vec();
        let other = b"another key".to_vec();
        let (k, o) = (b64(&key), b64(&other));
        let name = host_entry_name("127.0.0.1", Some(2222));
        assert_eq!(name, "[127.0.0.1]:2222");
        assert_eq!(host_entry_name("github.com", Some(22)), "github.com");

        assert_eq!(
            verify(&format!("[127.0.0.1]:2222 ssh-ed25519 {k}\n"), &name, &key),
            Verdict::Known
        );
        assert_eq!(
            verify(&format!("# c\n\n{name} ssh-ed25519 {o}\n"), &name, &key),
            Verdict::Changed
        );
        assert_eq!(
            verify(&format!("127.0.0.1 ssh-ed25519 {k}\n"), &name, &key),
            Verdict::Unknown,
            "port matters"
        );
        assert_eq!(
            verify(
                &format!("a.example,*.example.com ssh-ed25519 {k}\n"),
                "git.example.com",
                &key
            ),
            Verdict::Known
        );
        assert_eq!(
            verify(
                &format!("*.example.com,!bad.example.com ssh-ed25519 {k}\n"),
                "bad.example.com",
                &key
            ),
            Verdict::Unknown
        );
        assert_eq!(
            verify(
                &format!("@revoked * ssh-ed25519 {k}\n{name} ssh-ed25519 {k}\n"),
                &name,
                &key
            ),
            Verdict::Revoked
        );
        assert_eq!(
            verify(&format!("@cert-authority * ssh-ed25519 {k}\n"), &name, &key),
            Verdict::Unknown
        );

        // Hashed: |1|base64(salt)|base64(HMAC-SHA1(salt, name)), as `ssh-keygen -H` writes.
        let salt = b"0123456789abcdefghij";
        let hashed = format!(
            "|1|{}|{}",
            b64(salt),
            b64(&hmac_sha1(salt, name.as_bytes()))
        );
        assert_eq!(
            verify(&format!("{hashed} ssh-ed25519 {k}\n"), &name, &key),
            Verdict::Known
        );
        assert_eq!(
            verify(
                &format!("{hashed} ssh-ed25519 {k}\n"),
                "[127.0.0.1]:2223",
                &key
            ),
            Verdict::Unknown
        );
    }

    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        // RFC 2202 test case 2.
        let mac = hmac_sha1(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }
}
