//! Durations (`1m30s`) and byte sizes (`512m`) as Compose writes them.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A duration in nanoseconds; printed as Go prints durations (`1m30s`), as Compose does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub u64);

impl Duration {
    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0)
    }
}

/// Parses `1h2m3.5s`, `100ms`, `10us`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (expected e.g. 30s, 1m30s, 500ms)");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return if secs >= 0.0 && secs.is_finite() {
            Ok(Duration((secs * 1e9) as u64))
        } else {
            Err(bad())
        };
    }
    let mut total: f64 = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += n * mult;
    }
    if total > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Duration(total.round() as u64))
}

fn frac(mut v: u64, digits: u32) -> String {
    // `v` holds `digits` decimal places; print them without trailing zeros.
    let mut s = String::new();
    let mut started = false;
    for _ in 0..digits {
        let d = v % 10;
        v /= 10;
        if d != 0 || started {
            started = true;
            s.insert(0, char::from(b'0' + d as u8));
        }
    }
    if s.is_empty() {
        String::new()
    } else {
        format!(".{s}")
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n == 0 {
            return f.write_str("0s");
        }
        if n < 1_000 {
            return write!(f, "{n}ns");
        }
        if n < 1_000_000 {
            return write!(f, "{}{}µs", n / 1_000, frac(n % 1_000, 3));
        }
        if n < 1_000_000_000 {
            return write!(f, "{}{}ms", n / 1_000_000, frac(n % 1_000_000, 6));
        }
        let secs = n / 1_000_000_000;
        let sub = frac(n % 1_000_000_000, 9);
        let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h{m}m{s}{sub}s")
        } else if m > 0 {
            write!(f, "{m}m{s}{sub}s")
        } else {
            write!(f, "{s}{sub}s")
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 30s or 1m30s")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
                parse_duration(s).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
                Ok(Duration(n.saturating_mul(1_000_000_000)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
                u64::try_from(n)
                    .map(|n| Duration(n.saturating_mul(1_000_000_000)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Duration, E> {
                parse_duration(&n.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A size in bytes (`-1` means unlimited where Compose allows it); printed as a string of
/// digits, as Compose does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub i64);

/// Parses `1024`, `512k`, `1.5g`, `64mb`, `2GiB` (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<Bytes, String> {
    let bad = || format!("invalid size {s:?} (expected e.g. 512m, 1g, 1048576)");
    let t = s.trim();
    if let Ok(n) = t.parse::<i64>() {
        return Ok(Bytes(n));
    }
    let num_len = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let n: f64 = t[..num_len].parse().map_err(|_| bad())?;
    let unit = t[num_len..].trim().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    let v = n * mult;
    if !v.is_finite() || v > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(Bytes(v as i64))
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 512m or 1g")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Bytes, E> {
                parse_bytes(s).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Bytes, E> {
                i64::try_from(n).map(Bytes).map_err(|_| E::custom("size too large"))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Bytes, E> {
                Ok(Bytes(n))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Bytes, E> {
                Ok(Bytes(n as i64))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip_go_format() {
        for (input, want) in [
            ("30s", "30s"),
            ("90s", "1m30s"),
            ("1h", "1h0m0s"),
            ("1m", "1m0s"),
            ("1.5s", "1.5s"),
            ("100ms", "100ms"),
            ("1h2m3s", "1h2m3s"),
            ("10us", "10µs"),
            ("0s", "0s"),
            ("5", "5s"),
            ("1.5h", "1h30m0s"),
        ] {
            assert_eq!(parse_duration(input).unwrap().to_string(), want, "{input}");
        }
        for bad in ["", "abc", "10x", "s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        for (input, want) in [
            ("1024", 1024),
            ("1k", 1024),
            ("512m", 512 << 20),
            ("1g", 1 << 30),
            ("1GB", 1 << 30),
            ("2GiB", 2 << 30),
            ("1.5k", 1536),
            ("-1", -1),
        ] {
            assert_eq!(parse_bytes(input).unwrap().0, want, "{input}");
        }
        assert!(parse_bytes("12q").is_err());
    }
}
