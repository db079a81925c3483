//! Parsing the pkt-lines of an upload-pack request (protocol v0/v1 and v2).

/// What a client asked `git-upload-pack` for in one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadPackRequest {
    /// The protocol v2 command (`fetch`, `ls-refs`), `None` for v0/v1.
    pub command: Option<String>,
    /// `want <oid>` lines.
    pub wants: usize,
    /// `want-ref <ref>` lines (v2).
    pub want_refs: usize,
    /// `have <oid>` lines.
    pub haves: usize,
    /// `shallow <oid>` lines (commits the client already has as shallow).
    pub shallows: usize,
    /// The `deepen N` depth, if the client asked for one.
    pub deepen: Option<u32>,
    /// Whether the client said `done`.
    pub done: bool,
}

/// Parses an upload-pack request body (already decompressed). Unknown lines are
/// ignored; a malformed length ends the parse.
pub fn parse_upload_pack(body: &[u8]) -> UploadPackRequest {
    let mut req = UploadPackRequest::default();
    let mut rest = body;
    while rest.len() >= 4 {
        let Some(len) = std::str::from_utf8(&rest[..4])
            .ok()
            .and_then(|h| usize::from_str_radix(h, 16).ok())
        else {
            break;
        };
        if len < 4 {
            // 0000 flush, 0001 delim, 0002 response-end
            rest = &rest[4..];
            continue;
        }
        if len > rest.len() {
            break;
        }
        let line = &rest[4..len];
        rest = &rest[len..];
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\n');
        if let Some(c) = line.strip_prefix("command=") {
            req.command = Some(c.to_owned());
        } else if line.starts_with("want-ref ") {
            req.want_refs += 1;
        } else if line.starts_with("want ") {
            req.wants += 1;
        } else if line.starts_with("have ") {
            req.haves += 1;
        } else if line.starts_with("shallow ") {
            req.shallows += 1;
        } else if let Some(d) = line.strip_prefix("deepen ") {
            req.deepen = d.trim().parse().ok();
        } else if line == "done" {
            req.done = true;
        }
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(s: &str) -> String {
        format!("{:04x}{s}", s.len() + 4)
    }

    #[test]
    fn parses_v0_and_v2_requests() {
        let oid = "a".repeat(40);
        let v0 = format!(
            "{}{}0000{}{}{}",
            pkt(&format!("want {oid} multi_ack_detailed side-band-64k\n")),
            pkt(&format!("want {oid}\n")),
            pkt("deepen 1\n"),
            pkt(&format!("have {oid}\n")),
            pkt("done\n")
        );
        let r = parse_upload_pack(v0.as_bytes());
        assert_eq!(
            (r.wants, r.haves, r.deepen, r.done, r.command),
            (2, 1, Some(1), true, None)
        );
        let v2 = format!(
            "{}{}0001{}{}0000",
            pkt("command=fetch"),
            pkt("agent=git/2"),
            pkt(&format!("want {oid}\n")),
            pkt("deepen 3\n")
        );
        let r = parse_upload_pack(v2.as_bytes());
        assert_eq!(
            (r.wants, r.deepen, r.command.as_deref()),
            (1, Some(3), Some("fetch"))
        );
    }
}
