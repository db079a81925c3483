//! The one scrubber: every secret value configured in this process is replaced by
//! `[redacted]` in anything recorded or printed.
//!
//! Secrets are registered once, where they enter the program:
//! [`Credentials::token`](crate::Credentials::token) registers the git token itself;
//! other crates register theirs (cloud API tokens, analytics keys) with
//! [`register_secret`]. Everything that records or prints text that may hold a
//! secret (recipe output, failure records, build logs, `--json`, tracing) passes it
//! through [`scrub`] first. Besides the registered values, `scrub` also hides the
//! userinfo of URLs (`https://user:secret@host`) and token-like query parameters
//! (`?token=…`, `?access_token=…`), which may come from output of programs that
//! never told us their secrets.
//!
//! This is not a vault: it stores copies of the secrets in process memory (as the
//! process already holds them) and never writes them anywhere.

use std::borrow::Cow;
use std::sync::RwLock;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not registered: replacing every `a` in a log helps
/// nobody, and a token that short is no secret.
pub const MIN_SECRET_LEN: usize = 6;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers `secret` so that [`scrub`] hides it from now on (surrounding whitespace
/// is ignored; values shorter than [`MIN_SECRET_LEN`] are not registered).
pub fn register_secret(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut all = SECRETS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !all.iter().any(|s| s == secret) {
        all.push(secret.to_owned());
        // longest first, so a secret containing another is replaced whole
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// The variables the git token is read from (first non-empty wins). Never passed to
/// commands in a sandbox unless asked for by name.
pub const GIT_TOKEN_VARS: &[&str] = &["HEADSTART_GIT_TOKEN", "GITHUB_TOKEN"];

static SECRET_VARS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers `name` as an environment variable that holds a secret (a cloud API token,
/// an analytics key): [`is_secret_var`] is true for it from now on. Register the value
/// itself with [`register_secret`].
pub fn register_secret_var(name: &str) {
    let mut all = SECRET_VARS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !all.iter().any(|n| n == name) {
        all.push(name.to_owned());
    }
}

/// True when `text` contains a registered secret.
pub fn contains_secret(text: &str) -> bool {
    SECRETS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .any(|s| text.contains(s.as_str()))
}

/// True when the environment variable `name=value` must not reach a command by
/// default: `name` is one of [`GIT_TOKEN_VARS`] or was registered with
/// [`register_secret_var`], or `value` contains a registered secret.
pub fn is_secret_var(name: &str, value: &str) -> bool {
    GIT_TOKEN_VARS.contains(&name)
        || SECRET_VARS
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|n| n == name)
        || contains_secret(value)
}

/// `text` with every registered secret, URL userinfo password and token-like query
/// parameter replaced by [`REDACTED`]. Borrows when there is nothing to hide.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    {
        let all = SECRETS
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for secret in all.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
    }
    match scrub_urls(&out) {
        Some(s) => Cow::Owned(s),
        None => out,
    }
}

/// [`scrub`] for text that was cut at a size limit: a secret cut in two leaves its
/// beginning at the very end, which is hidden too (when at least 4 characters of a
/// registered secret remain there).
pub fn scrub_cut(text: &str) -> Cow<'_, str> {
    let out = scrub(text);
    let cut = {
        let all = SECRETS
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.iter()
            .filter_map(|secret| {
                (4..secret.len())
                    .rev()
                    .filter(|&n| secret.is_char_boundary(n))
                    .find(|&n| out.ends_with(&secret[..n]))
            })
            .max()
    };
    match cut {
        Some(n) => Cow::Owned(format!("{}{REDACTED}", &out[..out.len() - n])),
        None => out,
    }
}

/// Query parameter names whose values are credentials.
pub(crate) const TOKEN_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "private_token",
    "auth",
    "auth_token",
    "api_key",
    "apikey",
    "key",
    "password",
    "secret",
    "sig",
    "signature",
    "x-access-token",
    "oauth_token",
    "client_secret",
];

/// Substrings that make any parameter name a credential (`X-Amz-Signature`,
/// `github_token`, `db_password`).
const TOKEN_PARTS: &[&str] = &["token", "secret", "passw", "signature", "credential"];

/// True when `name` (a URL query or fragment parameter) carries a credential. The name
/// is percent-decoded first (`%74oken` is `token` to a server).
pub(crate) fn is_token_param(name: &str) -> bool {
    let lower = percent_decode(name).to_ascii_lowercase();
    TOKEN_PARAMS.contains(&lower.as_str()) || TOKEN_PARTS.iter().any(|p| lower.contains(p))
}

/// `%XX` escapes decoded (invalid ones kept as they are), lossily as UTF-8.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Hides `scheme://user:PASSWORD@` and `?token=VALUE` in free text; `None` when
/// nothing changed.
fn scrub_urls(text: &str) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // userinfo: "://" then non-space up to '@' containing ':'
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.find(':') {
                out.push_str(&userinfo[..=colon]);
                out.push_str(REDACTED);
                out.push_str(&authority[at..]);
                changed = true;
                rest = &tail[end..];
                continue;
            }
        }
        rest = tail;
    }
    out.push_str(rest);
    // query parameters: [?&]name=value
    let bytes = out.clone();
    let mut result = String::with_capacity(bytes.len());
    let mut i = 0;
    let b = bytes.as_bytes();
    while i < b.len() {
        let c = b[i];
        if matches!(c, b'?' | b'&' | b'#' | b';') {
            let start = i + 1;
            let eq = bytes[start..]
                .find(|ch: char| ch == '=' || ch == '&' || ch.is_whitespace())
                .map(|n| start + n);
            if let Some(eq) = eq.filter(|&e| b.get(e) == Some(&b'=')) {
                if is_token_param(&bytes[start..eq]) {
                    let vend = bytes[eq + 1..]
                        .find(|ch: char| {
                            matches!(ch, '&' | '#' | ';' | '"' | '\'' | '`') || ch.is_whitespace()
                        })
                        .map_or(bytes.len(), |n| eq + 1 + n);
                    if vend > eq + 1 && &bytes[eq + 1..vend] != REDACTED {
                        result.push_str(&bytes[i..=eq]);
                        result.push_str(REDACTED);
                        changed = true;
                        i = vend;
                        continue;
                    }
                }
            }
        }
        let ch = bytes[i..].chars().next().map_or(1, char::len_utf8);
        result.push_str(&bytes[i..i + ch]);
        i += ch;
    }
    changed.then_some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_hidden() {
        register_secret("ghp_scrubtest_0123456789");
        let s = scrub("env: HEADSTART_GIT_TOKEN=ghp_scrubtest_0123456789\n");
        assert_eq!(s, "env: HEADSTART_GIT_TOKEN=[redacted]\n");
        assert!(matches!(scrub("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn secret_variables_are_known_by_name_or_value() {
        register_secret("hcloud_scrubtest_abcdef");
        register_secret_var("SCRUBTEST_API_KEY");
        assert!(is_secret_var("GITHUB_TOKEN", ""));
        assert!(is_secret_var("SCRUBTEST_API_KEY", "x"));
        assert!(is_secret_var("ANYTHING", "Bearer hcloud_scrubtest_abcdef"));
        assert!(!is_secret_var("PATH", "/usr/bin"));
        assert!(contains_secret("a hcloud_scrubtest_abcdef b"));
    }

    #[test]
    fn a_secret_cut_at_a_limit_is_hidden() {
        register_secret("cutsecret_0123456789");
        assert_eq!(scrub_cut("x=cutsecret_01"), "x=[redacted]");
        assert_eq!(scrub_cut("x=cutsecret_0123456789"), "x=[redacted]");
        assert_eq!(scrub_cut("x=cut"), "x=cut", "3 characters are no secret");
        assert_eq!(scrub_cut("plain"), "plain");
    }

    #[test]
    fn short_values_are_not_registered() {
        register_secret("abc");
        assert_eq!(scrub("abc"), "abc");
    }

    #[test]
    fn url_userinfo_and_token_params_are_hidden() {
        assert_eq!(
            scrub("fetching https://bob:hunter2@host/x.git failed"),
            "fetching https://bob:[redacted]@host/x.git failed"
        );
        assert_eq!(
            scrub("GET https://host/x.git?token=abc123&b=2 404"),
            "GET https://host/x.git?token=[redacted]&b=2 404"
        );
        assert_eq!(
            scrub("cannot reach `https://h/r?%74oken=abc123#token=def456`: refused"),
            "cannot reach `https://h/r?%74oken=[redacted]#token=[redacted]`: refused"
        );
        assert_eq!(
            scrub("https://h/r;x_token=abc123"),
            "https://h/r;x_token=[redacted]"
        );
        assert_eq!(scrub("https://host/a?b=1"), "https://host/a?b=1");
        assert_eq!(scrub("été ?é=1"), "été ?é=1");
    }
}
