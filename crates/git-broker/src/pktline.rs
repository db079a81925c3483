//! The bits of git's pkt-line protocol the broker speaks itself: reading
//! receive-pack's command list (the lines before the pack) and writing a
//! report-status answer for a refused push. Everything else passes through unread.

use crate::policy::RefUpdate;

/// The largest command list read before giving up (many refs, no pack).
pub(crate) const MAX_COMMANDS_BYTES: usize = 4 << 20;

/// The result of reading the start of a receive-pack request body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Commands {
    /// The command list is not complete yet.
    NeedMore,
    /// The commands, up to and including the flush packet, and the capabilities of
    /// the first command.
    Done {
        updates: Vec<RefUpdate>,
        capabilities: Vec<String>,
    },
    /// Not a command list the broker can check.
    Invalid(String),
}

/// Parses the command list at the start of `buf`.
pub(crate) fn parse_commands(buf: &[u8]) -> Commands {
    let mut pos = 0;
    let mut updates = Vec::new();
    let mut capabilities = Vec::new();
    loop {
        let Some(head) = buf.get(pos..pos + 4) else {
            return Commands::NeedMore;
        };
        let Some(len) = std::str::from_utf8(head)
            .ok()
            .and_then(|h| usize::from_str_radix(h, 16).ok())
        else {
            return Commands::Invalid("not a pkt-line".into());
        };
        if len == 0 {
            // No commands at all is git's probe before a large (chunked) push:
            // receive-pack answers it with nothing, so it passes.
            return Commands::Done {
                updates,
                capabilities,
            };
        }
        if len < 4 {
            return Commands::Invalid(format!("unexpected pkt-line {len:04x}"));
        }
        let Some(payload) = buf.get(pos + 4..pos + len) else {
            return Commands::NeedMore;
        };
        pos += len;
        let line = payload.strip_suffix(b"\n").unwrap_or(payload);
        let (command, caps) = match line.iter().position(|&b| b == 0) {
            Some(i) => (&line[..i], Some(&line[i + 1..])),
            None => (line, None),
        };
        let Ok(command) = std::str::from_utf8(command) else {
            return Commands::Invalid("a command that is not UTF-8".into());
        };
        if command.starts_with("push-cert") {
            return Commands::Invalid(
                "signed pushes (push certificates) are not supported through the broker".into(),
            );
        }
        if command.starts_with("shallow ") && updates.is_empty() {
            continue;
        }
        let mut parts = command.splitn(3, ' ');
        let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Commands::Invalid(format!("not a ref update: {command:?}"));
        };
        if !is_oid(old) || !is_oid(new) || name.is_empty() {
            return Commands::Invalid(format!("not a ref update: {command:?}"));
        }
        if updates.is_empty() {
            if let Some(caps) = caps {
                capabilities = String::from_utf8_lossy(caps)
                    .split(' ')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
        }
        updates.push(RefUpdate {
            old: old.to_owned(),
            new: new.to_owned(),
            name: name.to_owned(),
        });
    }
}

fn is_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn pkt(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(format!("{:04x}", payload.len() + 4).as_bytes());
    out.extend_from_slice(payload);
}

/// The largest side-band payload (65520 minus the length and the band byte).
const SIDEBAND_MAX: usize = 65515;

/// A receive-pack result refusing every ref: `unpack ok`, then `ng <ref> <reason>`
/// per ref, then flush; inside side-band 1 when the client asked for
/// `side-band-64k` (or `side-band`). The `ng` lines are the same for report-status
/// and report-status-v2.
pub(crate) fn refusal_report(refused: &[(String, String)], capabilities: &[String]) -> Vec<u8> {
    let mut report = Vec::new();
    pkt(&mut report, b"unpack ok\n");
    for (name, reason) in refused {
        let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
        pkt(&mut report, format!("ng {name} {reason}\n").as_bytes());
    }
    report.extend_from_slice(b"0000");
    let has = |c: &str| capabilities.iter().any(|x| x == c);
    let max = if has("side-band-64k") {
        SIDEBAND_MAX
    } else if has("side-band") {
        995
    } else {
        return report;
    };
    let mut out = Vec::new();
    for chunk in report.chunks(max) {
        let mut payload = Vec::with_capacity(chunk.len() + 1);
        payload.push(1);
        payload.extend_from_slice(chunk);
        pkt(&mut out, &payload);
    }
    out.extend_from_slice(b"0000");
    out
}

/// True when the client asked for a report (`report-status` or `report-status-v2`).
pub(crate) fn wants_report(capabilities: &[String]) -> bool {
    capabilities
        .iter()
        .any(|c| c == "report-status" || c == "report-status-v2")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        pkt(&mut v, s.as_bytes());
        v
    }

    #[test]
    fn reads_the_command_list_and_the_first_capabilities() {
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        let mut body = line(&format!(
            "{a} {b} refs/heads/x\0report-status side-band-64k agent=git/2.47\n"
        ));
        assert_eq!(parse_commands(&body), Commands::NeedMore);
        body.extend(line(&format!("{a} {} refs/heads/y\n", "0".repeat(40))));
        body.extend_from_slice(b"0000PACK...");
        let Commands::Done {
            updates,
            capabilities,
        } = parse_commands(&body)
        else {
            panic!("not parsed");
        };
        assert_eq!(updates.len(), 2);
        assert_eq!(updates[0].name, "refs/heads/x");
        assert!(updates[1].is_delete());
        assert_eq!(capabilities[..2], ["report-status", "side-band-64k"]);
        assert_eq!(parse_commands(&body[..body.len() - 13]), Commands::NeedMore);
        assert!(matches!(parse_commands(b"zzzz"), Commands::Invalid(_)));
        assert_eq!(
            parse_commands(b"0000"),
            Commands::Done {
                updates: vec![],
                capabilities: vec![]
            },
            "the probe of a large push"
        );
    }

    #[test]
    fn a_refusal_is_a_report_wrapped_in_band_one_when_asked() {
        let refused = [("refs/heads/main".to_owned(), "no\nway".to_owned())];
        let plain = refusal_report(&refused, &["report-status".to_owned()]);
        assert_eq!(
            plain,
            b"000eunpack ok\n001dng refs/heads/main noway\n0000".to_vec()
        );
        let banded = refusal_report(&refused, &["side-band-64k".to_owned()]);
        let mut expected = Vec::new();
        let mut inner = vec![1u8];
        inner.extend_from_slice(&plain);
        pkt(&mut expected, &inner);
        expected.extend_from_slice(b"0000");
        assert_eq!(banded, expected);
    }
}
