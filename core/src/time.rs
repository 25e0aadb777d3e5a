//! Timestamps and durations as they appear in flag documents.
//!
//! Everything is Unix milliseconds (i64) in UTC. Parsing is strict and dependency-free: RFC 3339
//! timestamps (`2026-11-21T09:00:00Z`, `…+02:00`, optional fraction), bare dates (`2027-02-01`,
//! midnight UTC) and compact durations (`500ms`, `30s`, `90m`, `24h`, `7d`, `1h30m`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds.
pub type Millis = i64;

/// The current wall-clock time in Unix milliseconds.
pub fn now_millis() -> Millis {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => elapsed.as_millis() as Millis,
        Err(before) => -(before.duration().as_millis() as Millis),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    bytes.iter().try_fold(0u32, |acc, b| {
        acc.checked_mul(10)?.checked_add(u32::from(b - b'0'))
    })
}

fn parse_date_part(bytes: &[u8]) -> Option<i64> {
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year = i64::from(digits(&bytes[0..4])?);
    let month = digits(&bytes[5..7])?;
    let day = digits(&bytes[8..10])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// Parses an RFC 3339 timestamp or a bare `YYYY-MM-DD` date (midnight UTC).
pub fn parse_timestamp(text: &str) -> Option<Millis> {
    let bytes = text.as_bytes();
    let days = parse_date_part(bytes.get(0..10)?)?;
    if bytes.len() == 10 {
        return Some(days * 86_400_000);
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') || bytes.len() < 20 {
        return None;
    }
    let time = &bytes[11..];
    if time[2] != b':' || time[5] != b':' {
        return None;
    }
    let hour = digits(&time[0..2])?;
    let minute = digits(&time[3..5])?;
    let second = digits(&time[6..8])?;
    // 60 is a leap second; it is folded onto the next second like most parsers do.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &time[8..];
    let mut millis = 0i64;
    if rest.first() == Some(&b'.') {
        let fraction_len = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if fraction_len == 0 {
            return None;
        }
        let fraction = &rest[1..1 + fraction_len];
        for (i, digit) in fraction.iter().take(3).enumerate() {
            millis += i64::from(digit - b'0') * [100, 10, 1][i];
        }
        rest = &rest[1 + fraction_len..];
    }
    let offset_minutes: i64 = match rest {
        [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = i64::from(digits(&[*h1, *h2])?);
            let om = i64::from(digits(&[*m1, *m2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let minutes = oh * 60 + om;
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    let seconds =
        days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
            - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// Formats Unix milliseconds as RFC 3339 UTC with millisecond precision when non-zero.
pub fn format_timestamp(millis: Millis) -> String {
    let seconds = millis.div_euclid(1000);
    let ms = millis.rem_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let secs_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    if ms == 0 {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
    }
}

/// The UTC calendar date (`YYYY-MM-DD`) of a timestamp.
pub fn format_date(millis: Millis) -> String {
    let (year, month, day) = civil_from_days(millis.div_euclid(86_400_000));
    format!("{year:04}-{month:02}-{day:02}")
}

/// Parses a compact duration: one or more `<integer><unit>` groups with units `ms`, `s`, `m`,
/// `h`, `d`, largest first (`1h30m`). Zero is allowed (`0s`); an empty string is not.
pub fn parse_duration(text: &str) -> Option<Millis> {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    let mut total: Millis = 0;
    let mut last_unit = i64::MAX;
    let mut pos = 0;
    while pos < bytes.len() {
        let start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        let number = i64::from(digits(&bytes[start..pos])?);
        let unit_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_alphabetic() {
            pos += 1;
        }
        let unit: i64 = match &bytes[unit_start..pos] {
            b"ms" => 1,
            b"s" => 1000,
            b"m" => 60_000,
            b"h" => 3_600_000,
            b"d" => 86_400_000,
            _ => return None,
        };
        if unit >= last_unit {
            return None;
        }
        last_unit = unit;
        total = total.checked_add(number.checked_mul(unit)?)?;
    }
    Some(total)
}

/// Formats a duration in the compact form that [`parse_duration`] reads.
pub(crate) fn format_duration(millis: Millis) -> String {
    if millis == 0 {
        return "0s".to_string();
    }
    let mut rest = millis;
    let mut out = String::new();
    for (unit, name) in [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
        (1, "ms"),
    ] {
        if rest >= unit {
            out.push_str(&format!("{}{}", rest / unit, name));
            rest %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        let t = parse_timestamp("2026-11-21T09:00:00Z").expect("valid");
        assert_eq!(t, 1_795_251_600_000);
        assert_eq!(format_timestamp(t), "2026-11-21T09:00:00Z");
        assert_eq!(parse_timestamp("2026-11-21T11:00:00+02:00"), Some(t));
        assert_eq!(parse_timestamp("2026-11-21T09:00:00.250Z"), Some(t + 250));
        assert_eq!(parse_timestamp("1970-01-01"), Some(0));
        assert_eq!(parse_timestamp("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(format_date(t), "2026-11-21");
        assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn bad_timestamps_are_rejected() {
        for bad in [
            "",
            "2026-13-01",
            "2023-02-29",
            "2026-11-21T25:00:00Z",
            "2026-11-21T09:00:00",
            "2026-11-21T09:00Z",
            "2026/11/21",
            "2026-11-21T09:00:00.Z",
            "tomorrow",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Some(86_400_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("500ms"), Some(500));
        assert_eq!(parse_duration("7d"), Some(604_800_000));
        assert_eq!(parse_duration("0s"), Some(0));
        for bad in ["", "h", "24", "30m1h", "1.5h", "-1h", "1w", "1h 30m"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(format_duration(5_400_000), "1h30m");
        assert_eq!(format_duration(86_400_500), "1d500ms");
    }
}
