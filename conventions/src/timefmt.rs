//! RFC 3339 timestamps in UTC, written by hand: the engine only ever formats Unix times
//! as text, which does not justify a date-time crate.

/// Now as `2026-11-22T05:00:00Z`, or with nanoseconds (`...:00.123456789Z`).
pub fn rfc3339(nanos: bool) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    at(now.as_secs() as i64, nanos.then_some(now.subsec_nanos()))
}

/// A Unix time as RFC 3339 (nanoseconds, when given, always nine digits, so that such
/// stamps compare as strings).
pub fn at(secs: i64, nanos: Option<u32>) -> String {
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let frac = match nanos {
        Some(n) => format!(".{n:09}"),
        None => String::new(),
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Seconds since the epoch of an RFC 3339 time (an image config's `created`) (`2024-02-29T12:00:00.5Z`), UTC only.
pub fn parse(s: &str) -> Option<u64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let mut t = time.splitn(3, ':');
    let (h, min) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    let sec = t.next()?.split('.').next()?.parse::<i64>().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + min * 60 + sec).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_unix_times() {
        assert_eq!(super::at(0, None), "1970-01-01T00:00:00Z");
        assert_eq!(super::at(1_795_305_600, Some(5)), "2026-11-22T00:00:00.000000005Z");
    }

    #[test]
    fn rfc3339_times_are_read() {
        assert_eq!(super::parse("1970-01-02T00:00:01Z"), Some(86_401));
        assert_eq!(super::parse("2024-02-29T12:00:00.5Z"), Some(1_709_208_000));
        assert_eq!(super::parse("yesterday"), None);
    }
}
