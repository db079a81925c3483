//! The reference's semver operators: `major.minor.patch` with a `v` prefix and pre-release
//! or build suffixes ignored, and the tilde, caret and wildcard ranges.
//!
//! What it is not: full SemVer 2.0 precedence (pre-releases are dropped, as the
//! reference does).

use serde_json::Value;

use super::engine::{EvalError, MISSING, UNSUPPORTED};
use super::python::python_scalar_str;

type Semver = (u64, u64, u64);

fn semver_part(p: &str) -> Option<u64> {
    if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) || (p.len() > 1 && p.starts_with('0'))
    {
        return None;
    }
    p.parse().ok()
}

fn parse_semver(text: &str) -> Option<Semver> {
    let t = text.trim().trim_start_matches(['v', 'V']);
    let t = t.split('-').next().unwrap_or("");
    let t = t.split('+').next().unwrap_or("");
    let parts: Vec<&str> = t.split('.').collect();
    let major = semver_part(parts.first().copied().filter(|p| !p.is_empty())?)?;
    let part = |i: usize| match parts.get(i) {
        Some(p) if !p.is_empty() => semver_part(p),
        _ => Some(0),
    };
    Some((major, part(1)?, part(2)?))
}

fn semver_bounds(operator: &str, text: &str) -> Option<(Semver, Semver)> {
    match operator {
        "semver_tilde" => {
            let (a, b, c) = parse_semver(text)?;
            Some(((a, b, c), (a, b + 1, 0)))
        }
        "semver_caret" => {
            let (a, b, c) = parse_semver(text)?;
            let upper = if a > 0 {
                (a + 1, 0, 0)
            } else if b > 0 {
                (0, b + 1, 0)
            } else {
                (0, 0, c + 1)
            };
            Some(((a, b, c), upper))
        }
        _ => {
            let cleaned = text.trim().trim_start_matches(['v', 'V']).replace('*', "");
            let cleaned = cleaned.trim_end_matches('.');
            let parts: Vec<&str> = cleaned.split('.').filter(|p| !p.is_empty()).collect();
            match parts.len() {
                0 => None,
                1 => {
                    let a = semver_part(parts[0])?;
                    Some(((a, 0, 0), (a + 1, 0, 0)))
                }
                2 => {
                    let (a, b) = (semver_part(parts[0])?, semver_part(parts[1])?);
                    Some(((a, b, 0), (a, b + 1, 0)))
                }
                _ => {
                    let (a, b, c) = (
                        semver_part(parts[0])?,
                        semver_part(parts[1])?,
                        semver_part(parts[2])?,
                    );
                    Some(((a, b, c), (a, b, c + 1)))
                }
            }
        }
    }
}

pub(super) fn match_semver(
    operator: &str,
    value: &Value,
    actual: &Value,
) -> Result<bool, EvalError> {
    let wanted_text = python_scalar_str(value).ok_or(UNSUPPORTED)?;
    let got = python_scalar_str(actual)
        .and_then(|s| parse_semver(&s))
        .ok_or(MISSING);
    if matches!(
        operator,
        "semver_tilde" | "semver_caret" | "semver_wildcard"
    ) {
        let (lo, hi) = semver_bounds(operator, &wanted_text).ok_or(UNSUPPORTED)?;
        let got = got?;
        return Ok(lo <= got && got < hi);
    }
    let wanted = parse_semver(&wanted_text).ok_or(UNSUPPORTED)?;
    let got = got?;
    Ok(match operator {
        "semver_eq" => got == wanted,
        "semver_neq" => got != wanted,
        "semver_gt" => got > wanted,
        "semver_gte" => got >= wanted,
        "semver_lt" => got < wanted,
        _ => got <= wanted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_parsing() {
        assert_eq!(parse_semver("v1.2.3-beta"), Some((1, 2, 3)));
        assert_eq!(parse_semver("1.2"), Some((1, 2, 0)));
        assert_eq!(parse_semver("01.2"), None);
        assert_eq!(parse_semver(""), None);
        assert_eq!(
            semver_bounds("semver_caret", "0.0.3"),
            Some(((0, 0, 3), (0, 0, 4)))
        );
        assert_eq!(
            semver_bounds("semver_wildcard", "1.*"),
            Some(((1, 0, 0), (2, 0, 0)))
        );
    }
}
