//! Turning flags into a dead-letter scope: statuses, times and ages.

use std::time::Duration;

use outbox_core::{DeadLetterScope, DeadLetterStatus};

use crate::args::Filter;

/// The scope the filter flags describe.
///
/// # Errors
/// A one-line reason naming the flag when a status or time does not parse.
pub fn scope(filter: &Filter) -> Result<DeadLetterScope, String> {
    let mut scope = DeadLetterScope::all();
    if let Some(queue) = &filter.queue {
        scope = scope.queue(queue.clone());
    }
    if let Some(partition) = filter.partition {
        scope = scope.partition(partition);
    }
    if let Some(payload_type) = &filter.payload_type {
        scope = scope.payload_type(payload_type.clone());
    }
    for status in &filter.status {
        let status: DeadLetterStatus = status.parse().map_err(|_| {
            format!("--status {status:?}: use pending, reprocessing, resolved or discarded")
        })?;
        scope = scope.status(status);
    }
    if let Some(time) = &filter.failed_after {
        scope = scope.failed_after(parse_time(time).map_err(|e| format!("--failed-after: {e}"))?);
    }
    if let Some(time) = &filter.failed_before {
        scope = scope.failed_before(parse_time(time).map_err(|e| format!("--failed-before: {e}"))?);
    }
    Ok(scope.ids(filter.ids.iter().copied()))
}

/// Epoch milliseconds, or an RFC 3339 time (`2026-05-01T12:00:00Z`, with
/// optional fractional seconds and a `+hh:mm` offset), or a date (midnight UTC).
///
/// # Errors
/// A reason saying which formats are accepted.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    parse_rfc3339(text).ok_or_else(|| {
        format!(
            "{text:?} is not a time: use epoch milliseconds or RFC 3339 such as 2026-05-01T12:00:00Z"
        )
    })
}

fn number(text: &str, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|n| range.contains(n))
}

fn parse_rfc3339(text: &str) -> Option<i64> {
    let (date, rest) = match text.find(['T', 't', ' ']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let year = number(parts.next()?, 1970..=9999)?;
    let month = number(parts.next()?, 1..=12)?;
    let day = number(parts.next()?, 1..=31)?;
    if parts.next().is_some() || day > days_in_month(year, month) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    let Some(rest) = rest else {
        return Some(ms);
    };
    let (clock, offset_ms) = if let Some(clock) = rest.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (clock, offset) = rest.split_at(at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (h, m) = offset[1..].split_once(':')?;
        let offset = number(h, 0..=23)? * 3_600_000 + number(m, 0..=59)? * 60_000;
        (clock, sign * offset)
    };
    let (whole, fraction) = match clock.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (clock, None),
    };
    let mut hms = whole.split(':');
    let hours = number(hms.next()?, 0..=23)?;
    let minutes = number(hms.next()?, 0..=59)?;
    let seconds = number(hms.next()?, 0..=60)?;
    if hms.next().is_some() {
        return None;
    }
    let millis = match fraction {
        None => 0,
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            let padded = format!("{f:0<3}");
            number(&padded[..3], 0..=999)?
        }
        Some(_) => return None,
    };
    ms += hours * 3_600_000 + minutes * 60_000 + seconds * 1000 + millis;
    Some(ms - offset_ms)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Epoch milliseconds as RFC 3339 in UTC with milliseconds.
pub fn format_time(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// An age such as `7d`, `24h`, `30m`, `1h30m`, `0s` (units ms, s, m, h, d, w).
///
/// # Errors
/// A reason with examples.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not an age: use a number and a unit, such as 30m, 24h or 7d");
    let mut total: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit_ms)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(bad)?;
    }
    Ok(Duration::from_millis(total))
}

/// A duration for people: `850ms`, `12.4s`, `3m20s`, `2h05m`, `3d04h`.
pub fn format_age(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{}.{}s", s, ms % 1000 / 100),
        60_000..3_600_000 => format!("{}m{:02}s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86_400, s / 3600 % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_epoch_ms_or_rfc3339() {
        assert_eq!(parse_time("1767225600000"), Ok(1_767_225_600_000));
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Ok(1_767_225_600_000));
        assert_eq!(parse_time("2026-01-01"), Ok(1_767_225_600_000));
        assert_eq!(
            parse_time("2026-01-01T02:00:00.5+02:00"),
            Ok(1_767_225_600_500)
        );
        assert_eq!(
            parse_time("2025-12-31T23:00:00-01:00"),
            Ok(1_767_225_600_000)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00.123Z"), Ok(123));
        for bad in [
            "yesterday",
            "2026-02-30",
            "2026-13-01T00:00:00Z",
            "2026-01-01T25:00:00Z",
            "2026-01-01T00:00:00",
        ] {
            assert!(parse_time(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn times_format_and_round_trip() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(1_767_225_600_500), "2026-01-01T00:00:00.500Z");
        for ms in [0, 951_782_400_000, 1_709_164_800_123, 4_102_444_799_999] {
            assert_eq!(parse_time(&format_time(ms)), Ok(ms));
        }
    }

    #[test]
    fn ages_parse_and_format() {
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_age("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_age("0s"), Ok(Duration::ZERO));
        for bad in ["", "7", "d", "7x", "-1d", "99999999999999999999w"] {
            assert!(parse_age(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(format_age(850), "850ms");
        assert_eq!(format_age(12_400), "12.4s");
        assert_eq!(format_age(200_000), "3m20s");
        assert_eq!(format_age(7_500_000), "2h05m");
        assert_eq!(format_age(273_600_000), "3d04h");
    }

    #[test]
    fn filters_become_a_scope() {
        let filter = Filter {
            queue: Some("orders".into()),
            status: vec!["pending".into()],
            failed_after: Some("2026-01-01".into()),
            ids: vec![3, 4],
            ..Filter::default()
        };
        let expected = DeadLetterScope::all()
            .queue("orders")
            .status(DeadLetterStatus::Pending)
            .failed_after(1_767_225_600_000)
            .ids([3, 4]);
        assert_eq!(scope(&filter), Ok(expected));
        let bad = Filter {
            status: vec!["done".into()],
            ..Filter::default()
        };
        assert!(scope(&bad).unwrap_err().contains("--status"));
    }
}
