//! How the CLI speaks: the process-wide output settings (`--quiet`, `--progress`,
//! colour), one JSON value per command on stdout (scrubbed of secrets), and the human formats
//! listings use (sizes in KiB/MiB, ages such as `3 min ago`, the short form of a
//! repository URL).
//!
//! Not here: what any command does, errors (`error.rs`), or the progress bar itself
//! (`progress.rs`).

use std::sync::OnceLock;

use serde_json::Value;
use time::OffsetDateTime;

/// Output settings chosen once at start-up from the global flags and the terminal.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Settings {
    /// `--quiet`: nothing but errors (and what was asked for: `--json`, listings).
    pub(crate) quiet: bool,
    /// `--progress`: progress even when stderr is not a terminal (plain lines).
    pub(crate) progress: bool,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Records the settings for the rest of the process (the first call wins).
pub(crate) fn init(settings: Settings) {
    let _ = SETTINGS.set(settings);
}

fn settings() -> Settings {
    SETTINGS.get().copied().unwrap_or_default()
}

/// True with `--quiet`: informational output is suppressed.
pub(crate) fn quiet() -> bool {
    settings().quiet
}

/// True with `--progress`: progress is shown on a non-terminal too.
pub(crate) fn progress_forced() -> bool {
    settings().progress
}

/// Prints `value` as one line on stdout, with every configured secret scrubbed.
#[allow(clippy::print_stdout)]
pub(crate) fn print_json(value: &Value) {
    let text = value.to_string();
    println!("{}", sandbox_core::scrub(&text));
}

/// Prints an outcome as one JSON line on stdout (scrubbed), as `--json` asks.
///
/// # Errors
/// When the outcome cannot be serialized.
pub(crate) fn print_outcome(outcome: &impl serde::Serialize) -> anyhow::Result<()> {
    print_json(&serde_json::to_value(outcome)?);
    Ok(())
}

/// A line of human output on stdout, unless `--quiet`.
#[allow(clippy::print_stdout)]
pub(crate) fn say(line: impl std::fmt::Display) {
    if !quiet() {
        println!("{}", sandbox_core::scrub(&line.to_string()));
    }
}

/// A byte count for people: `512 B`, `14.2 KiB`, `3.0 MiB`, `1.2 GiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// How long ago `then` was, as a listing shows it: `just now`, `42 s ago`,
/// `3 min ago`, `5 h ago`, `2 days ago`.
pub(crate) fn ago(then: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (now - then).whole_seconds();
    match secs {
        i64::MIN..=-1 => "in the future".to_owned(),
        0..=4 => "just now".to_owned(),
        5..=59 => format!("{secs} s ago"),
        60..=3_599 => format!("{} min ago", secs / 60),
        3_600..=86_399 => format!("{} h ago", secs / 3_600),
        86_400..=172_799 => "1 day ago".to_owned(),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// A time still to come, for people: `in 40 s`, `in 12 min`, `in 3 h`, `due` once it
/// passed.
pub(crate) fn until(then: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (then - now).whole_seconds();
    match secs {
        i64::MIN..=0 => "due".to_owned(),
        1..=59 => format!("in {secs} s"),
        60..=3_599 => format!("in {} min", secs / 60),
        3_600..=86_399 => format!("in {} h", secs / 3_600),
        _ => format!("in {} days", secs / 86_400),
    }
}

/// A repository URL as a listing shows it: `host/owner/repo` for network URLs (scheme,
/// user and `.git` dropped), the path for local repositories.
pub(crate) fn short_repo(url: &str) -> String {
    let url = url.trim_end_matches('/');
    let url = url.strip_suffix(".git").unwrap_or(url);
    if let Some(path) = url.strip_prefix("file://") {
        return path.to_owned();
    }
    if let Some((_, rest)) = url.split_once("://") {
        // drop userinfo (already scrubbed, still noise) and the default ports' noise
        let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
        return rest.to_owned();
    }
    // scp-like `git@host:owner/repo`
    match url.split_once(':') {
        Some((userhost, path)) if !userhost.contains('/') => {
            let host = userhost.rsplit_once('@').map_or(userhost, |(_, h)| h);
            format!("{host}/{path}")
        }
        _ => url.to_owned(),
    }
}

/// Prints a [`table`] on stdout, secrets scrubbed (also under `--quiet`: it is what
/// was asked for).
#[allow(clippy::print_stdout)]
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", sandbox_core::scrub(&table(header, rows)));
}

/// Column widths for a table whose rows are already strings: each column is as wide
/// as its widest cell; the last column is not padded.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[test]
    fn sizes_are_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1_457_000), "1.4 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn ages_read_like_a_person_says_them() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(ago(now, now), "just now");
        assert_eq!(ago(now - Duration::seconds(42), now), "42 s ago");
        assert_eq!(ago(now - Duration::minutes(3), now), "3 min ago");
        assert_eq!(ago(now - Duration::hours(5), now), "5 h ago");
        assert_eq!(ago(now - Duration::hours(30), now), "1 day ago");
        assert_eq!(ago(now - Duration::days(9), now), "9 days ago");
    }

    #[test]
    fn repositories_are_shortened_to_host_and_path() {
        assert_eq!(short_repo("https://github.com/o/r.git"), "github.com/o/r");
        assert_eq!(short_repo("git@github.com:o/r.git"), "github.com/o/r");
        assert_eq!(short_repo("ssh://git@host:2222/o/r"), "host:2222/o/r");
        assert_eq!(short_repo("file:///srv/git/r.git"), "/srv/git/r");
        assert_eq!(short_repo("/srv/git/r"), "/srv/git/r");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["NAME", "AGE"],
            &[
                vec!["a".into(), "1 s ago".into()],
                vec!["long-name".into(), "x".into()],
            ],
        );
        assert_eq!(t, "NAME       AGE\na          1 s ago\nlong-name  x\n");
    }
}
