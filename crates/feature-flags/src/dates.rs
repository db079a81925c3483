//! `is_date_before` / `is_date_after` with the reference SDK's parsing: relative filter
//! values (`-30d`, `-12h`, `-2w`, `-3m`, `-1y`), `Z` and ` UTC` suffixes, a bare year
//! (that year, today's month and day), naive times taken as UTC.
//!
//! What it is not: Python's `datetime.fromisoformat`. Only the common ISO shapes are
//! parsed here (`YYYY-MM-DD`, optionally `T` or space and `HH:MM[:SS[.ffffff]]`, optionally
//! `±HH:MM`); any other text is reported as unparsable so the caller defers to the
//! server rather than guess.

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Why a date could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateError {
    /// Not a date (or not a shape parsed here).
    Unparsable,
}

/// The filter value as an instant: a relative date from `now`, else an absolute one.
pub(crate) fn parse_filter(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, DateError> {
    if let Some(relative) = relative(text, now) {
        return Ok(relative);
    }
    parse_absolute(text, now)
}

/// `^-?<number><unit>$` with unit h, d, w, m or y, counted back from `now`. `None` when
/// the text is not relative or the result leaves years 1..=9999.
fn relative(text: &str, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let body = text.strip_prefix('-').unwrap_or(text);
    let unit = body.chars().last()?;
    let digits = &body[..body.len() - unit.len_utf8()];
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !unit.is_ascii_lowercase()
    {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    if n >= 10_000 {
        return None;
    }
    match unit {
        'h' => now.checked_sub(Duration::hours(n)),
        'd' => now.checked_sub(Duration::days(n)),
        'w' => now.checked_sub(Duration::weeks(n)),
        'm' => subtract_months(now, n),
        'y' => subtract_years(now, n),
        _ => None,
    }
}

fn days_in(year: i32, month: u8) -> u8 {
    Month::try_from(month).map_or(31, |m| m.length(year))
}

/// One month at a time, clamping the day after each step (March 31 minus two months is
/// January 28, through February 28).
fn subtract_months(dt: OffsetDateTime, months: i64) -> Option<OffsetDateTime> {
    let current = i64::from(dt.year()) * 12 + i64::from(u8::from(dt.month())) - 1;
    let target = current - months;
    let year = target.div_euclid(12);
    let month = (target.rem_euclid(12) + 1) as u8;
    if !(1..=9999).contains(&year) {
        return None;
    }
    let mut day = dt.day();
    let mut index = current - 1;
    while index >= target {
        if day <= 28 {
            break;
        }
        day = day.min(days_in(
            index.div_euclid(12) as i32,
            (index.rem_euclid(12) + 1) as u8,
        ));
        index -= 1;
    }
    let date = Date::from_calendar_date(year as i32, Month::try_from(month).ok()?, day).ok()?;
    Some(dt.replace_date(date))
}

fn subtract_years(dt: OffsetDateTime, years: i64) -> Option<OffsetDateTime> {
    let year = i64::from(dt.year()) - years;
    if !(1..=9999).contains(&year) {
        return None;
    }
    let day = if years > 0 && dt.month() == Month::February && dt.day() == 29 {
        28
    } else {
        dt.day()
    };
    let date = Date::from_calendar_date(year as i32, dt.month(), day).ok()?;
    Some(dt.replace_date(date))
}

/// An absolute date: the reference's clean-up (`Z`, ` UTC`, a bare year, a space before
/// the offset), then the ISO shapes listed in the module docs. Naive means UTC.
pub(crate) fn parse_absolute(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, DateError> {
    let text = text.trim();
    let mut owned;
    let mut t: &str = text;
    if let Some(rest) = t.strip_suffix('Z') {
        owned = format!("{rest}+00:00");
        t = &owned;
    } else if t.len() >= 4
        && t.is_char_boundary(t.len() - 4)
        && t[t.len() - 4..].eq_ignore_ascii_case(" UTC")
    {
        owned = format!("{}+00:00", &t[..t.len() - 4]);
        t = &owned;
    } else if t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit()) {
        let year: i32 = t.parse().map_err(|_| DateError::Unparsable)?;
        let date = Date::from_calendar_date(year, now.month(), now.day())
            .map_err(|_| DateError::Unparsable)?;
        return Ok(PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc());
    }
    // " +02:00" at the end loses its space.
    let b = t.as_bytes();
    if b.len() >= 7 {
        let tail = &b[b.len() - 7..];
        if tail[0] == b' '
            && (tail[1] == b'+' || tail[1] == b'-')
            && tail[2].is_ascii_digit()
            && tail[3].is_ascii_digit()
            && tail[4] == b':'
            && tail[5].is_ascii_digit()
            && tail[6].is_ascii_digit()
        {
            owned = format!("{}{}", &t[..t.len() - 7], &t[t.len() - 6..]);
            t = &owned;
        }
    }
    iso(t).ok_or(DateError::Unparsable)
}

fn num(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.f{1,6}]]][±HH:MM]`.
fn iso(t: &str) -> Option<OffsetDateTime> {
    if !t.is_ascii() || t.len() < 10 {
        return None;
    }
    let (date, rest) = t.split_at(10);
    let d = date.as_bytes();
    if d[4] != b'-' || d[7] != b'-' {
        return None;
    }
    let year = num(&date[..4])? as i32;
    let month = Month::try_from(num(&date[5..7])? as u8).ok()?;
    let date = Date::from_calendar_date(year, month, num(&date[8..10])? as u8).ok()?;
    if rest.is_empty() {
        return Some(PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc());
    }
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' '))?;
    let (clock, offset) = match rest.find(['+', '-']) {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let (hms, fraction) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    if fraction.is_some() && parts.len() != 3 {
        return None;
    }
    let micro = match fraction {
        None => 0,
        Some(f) if (1..=6).contains(&f.len()) => num(f)? * 10u32.pow(6 - f.len() as u32),
        Some(_) => return None,
    };
    let time = Time::from_hms_micro(
        num(parts[0])? as u8,
        num(parts[1])? as u8,
        parts.get(2).map_or(Some(0), |s| num(s))? as u8,
        micro,
    )
    .ok()?;
    let offset = match offset {
        None => UtcOffset::UTC,
        Some(o) => {
            let b = o.as_bytes();
            if b.len() != 6 || b[3] != b':' {
                return None;
            }
            let sign = if b[0] == b'-' { -1 } else { 1 };
            let (h, m) = (num(&o[1..3])? as i8, num(&o[4..6])? as i8);
            if h > 23 || m > 59 {
                return None;
            }
            UtcOffset::from_hms(sign * h, sign * m, 0).ok()?
        }
    };
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2024-03-31 10:00 UTC);

    #[test]
    fn relative_dates_count_back_with_clamping() {
        assert_eq!(
            parse_filter("-2m", NOW),
            Ok(datetime!(2024-01-29 10:00 UTC))
        );
        assert_eq!(
            parse_filter("-1m", NOW),
            Ok(datetime!(2024-02-29 10:00 UTC))
        );
        assert_eq!(
            parse_filter("-3d", NOW),
            Ok(datetime!(2024-03-28 10:00 UTC))
        );
        assert_eq!(
            parse_filter("12h", NOW),
            Ok(datetime!(2024-03-30 22:00 UTC))
        );
        let leap = datetime!(2024-02-29 00:00 UTC);
        assert_eq!(
            parse_filter("-1y", leap),
            Ok(datetime!(2023-02-28 00:00 UTC))
        );
        assert!(parse_filter("-10000d", NOW).is_err());
        assert!(parse_filter("-3x", NOW).is_err());
    }

    #[test]
    fn absolute_dates() {
        assert_eq!(
            parse_absolute("2024-01-01", NOW),
            Ok(datetime!(2024-01-01 0:00 UTC))
        );
        assert_eq!(
            parse_absolute("2024-01-01T10:00:00Z", NOW),
            Ok(datetime!(2024-01-01 10:00 UTC))
        );
        assert_eq!(
            parse_absolute("2024-01-01 10:00:00 +02:00", NOW),
            Ok(datetime!(2024-01-01 10:00 +2))
        );
        assert_eq!(
            parse_absolute("2024-01-01 10:00 utc", NOW),
            Ok(datetime!(2024-01-01 10:00 UTC))
        );
        assert_eq!(
            parse_absolute("2024-01-01T10:00:00.5", NOW),
            Ok(datetime!(2024-01-01 10:00:00.5 UTC))
        );
        assert_eq!(
            parse_absolute("2019", NOW),
            Ok(datetime!(2019-03-31 0:00 UTC))
        );
        for bad in [
            "2024-02-30",
            "garbage",
            "2024-1-1",
            "20240101",
            "2024-01-01T25:00",
        ] {
            assert!(parse_absolute(bad, NOW).is_err(), "{bad}");
        }
    }
}
