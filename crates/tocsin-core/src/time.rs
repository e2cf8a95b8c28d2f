//! Event time: a UTC instant in milliseconds, parsed from the timestamp shapes sensors write.
//!
//! Correlation runs on event time, not on arrival time, so every event needs one. Sensors
//! disagree on the format (`2026-03-02T08:00:00.123Z` from ECS, `2026-03-02 08:00:00.123` from
//! Sysmon's `UtcTime`, epoch seconds or milliseconds as numbers); [`Timestamp::parse`] reads
//! them all without allocating. Output is always RFC 3339 with milliseconds and `Z`, so the
//! same input gives byte-identical output.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

/// Why a timestamp could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognised timestamp {0:?} (expected RFC 3339, 'YYYY-MM-DD HH:MM:SS[.fff]' or epoch seconds/milliseconds)")]
pub struct InvalidTimestamp(pub String);

/// A duration in milliseconds, written in configuration as `30s`, `15m`, `6h`, `2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DurationMs(pub i64);

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?} (expected a number followed by s, m, h or d, e.g. 6h)")]
pub struct InvalidDuration(pub String);

impl DurationMs {
    /// Parse `Ns`, `Nm`, `Nh`, `Nd` (the Sigma timespan syntax) or `Nms`.
    pub fn parse(text: &str) -> Result<Self, InvalidDuration> {
        let t = text.trim();
        let err = || InvalidDuration(text.to_owned());
        let (num, unit) = if let Some(n) = t.strip_suffix("ms") {
            (n, 1)
        } else if let Some(n) = t.strip_suffix('s') {
            (n, 1_000)
        } else if let Some(n) = t.strip_suffix('m') {
            (n, 60_000)
        } else if let Some(n) = t.strip_suffix('h') {
            (n, 3_600_000)
        } else if let Some(n) = t.strip_suffix('d') {
            (n, 86_400_000)
        } else {
            return Err(err());
        };
        let n: i64 = num.trim().parse().map_err(|_| err())?;
        if n < 0 {
            return Err(err());
        }
        n.checked_mul(unit).map(DurationMs).ok_or_else(err)
    }
}

impl fmt::Display for DurationMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms % 86_400_000 == 0 && ms != 0 {
            write!(f, "{}d", ms / 86_400_000)
        } else if ms % 3_600_000 == 0 && ms != 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms % 60_000 == 0 && ms != 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Timestamp {
    /// Parse a textual timestamp. Without an offset, the time is taken as UTC.
    pub fn parse(text: &str) -> Result<Self, InvalidTimestamp> {
        parse_text(text.trim().as_bytes()).ok_or_else(|| InvalidTimestamp(text.to_owned()))
    }

    /// Interpret a number as epoch seconds (below 10^11) or milliseconds.
    pub fn from_epoch_number(n: f64) -> Option<Self> {
        if !n.is_finite() {
            return None;
        }
        if n.abs() < 1e11 {
            Some(Timestamp((n * 1000.0).round() as i64))
        } else if n.abs() < 1e14 {
            Some(Timestamp(n.round() as i64))
        } else {
            None
        }
    }

    /// Build from a civil UTC date and time.
    pub fn from_civil(year: i64, month: u32, day: u32, hour: u32, min: u32, sec: u32) -> Self {
        let days = days_from_civil(year, month, day);
        Timestamp(((days * 24 + hour as i64) * 60 + min as i64) * 60_000 + sec as i64 * 1000)
    }

    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// The UTC civil date and time: (year, month, day, hour, minute, second).
    pub fn civil(self) -> (i64, u32, u32, u32, u32, u32) {
        let secs = self.0.div_euclid(1000);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        (
            y,
            m,
            d,
            (sod / 3600) as u32,
            ((sod / 60) % 60) as u32,
            (sod % 60) as u32,
        )
    }

    /// The RFC 3339 form (`2026-03-02T06:00:00.000Z`, what `Display` writes) as bytes,
    /// built without the formatting machinery for callers that write many timestamps;
    /// `None` for a year outside 0000–9999.
    pub fn rfc3339_bytes(self) -> Option<[u8; 24]> {
        let (y, mo, d, h, mi, s) = self.civil();
        if !(0..=9999).contains(&y) {
            return None;
        }
        let ms = self.0.rem_euclid(1000) as u32;
        let mut b = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut v: u32| {
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, y as u32);
        put(5, 2, mo);
        put(8, 2, d);
        put(11, 2, h);
        put(14, 2, mi);
        put(17, 2, s);
        put(20, 3, ms);
        Some(b)
    }

    /// This instant plus a duration.
    pub fn plus(self, d: DurationMs) -> Self {
        Timestamp(self.0.saturating_add(d.0))
    }

    /// The start of the window of width `width` that holds this instant (aligned to the epoch).
    pub fn floor_to(self, width: DurationMs) -> Self {
        if width.0 <= 0 {
            return self;
        }
        Timestamp(self.0.div_euclid(width.0) * width.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(bytes) = self.rfc3339_bytes() {
            // ASCII digits and separators only.
            return f.write_str(std::str::from_utf8(&bytes).expect("ASCII"));
        }
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for DurationMs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationMs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        DurationMs::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn num(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    if b.is_empty() {
        return None;
    }
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

fn parse_text(b: &[u8]) -> Option<Timestamp> {
    if b.len() < 19 {
        // Maybe a bare epoch number written as a string.
        let n: f64 = std::str::from_utf8(b).ok()?.parse().ok()?;
        return Timestamp::from_epoch_number(n);
    }
    if b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ' || b[10] == b't') {
        let n: f64 = std::str::from_utf8(b).ok()?.parse().ok()?;
        return Timestamp::from_epoch_number(n);
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = num(&b[0..4])? as i64;
    let month = num(&b[5..7])?;
    let day = num(&b[8..10])?;
    let hour = num(&b[11..13])?;
    let min = num(&b[14..16])?;
    let sec = num(&b[17..19])?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 60
    {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0i64;
    if let Some((b'.', frac)) = rest.split_first() {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let mut scale = 100;
        for &c in &frac[..digits.min(3)] {
            millis += (c - b'0') as i64 * scale;
            scale /= 10;
        }
        rest = &frac[digits..];
    }
    let offset_minutes: i64 = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let (h, m) = match tail {
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => (num(&[*h1, *h2])?, num(&[*m1, *m2])?),
                [h1, h2] => (num(&[*h1, *h2])?, 0),
                _ => return None,
            };
            let v = (h * 60 + m) as i64;
            if *sign == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let base = Timestamp::from_civil(year, month, day, hour, min, sec.min(59));
    Some(Timestamp(base.0 + millis - offset_minutes * 60_000))
}

/// The ISO 8601 week number (1–53) of a civil date.
pub fn iso_week(year: i64, month: u32, day: u32) -> u32 {
    let days = days_from_civil(year, month, day);
    // 1970-01-01 was a Thursday; ISO weekday 1 = Monday.
    let weekday = (days + 3).rem_euclid(7) + 1;
    // The Thursday of this week decides the week-based year.
    let thursday = days - weekday + 4;
    let (ty, _, _) = civil_from_days(thursday);
    let jan1 = days_from_civil(ty, 1, 1);
    ((thursday - jan1) / 7 + 1) as u32
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_sensor_formats() {
        let expected = Timestamp::from_civil(2026, 3, 2, 8, 0, 0).0 + 123;
        for s in [
            "2026-03-02T08:00:00.123Z",
            "2026-03-02 08:00:00.123",
            "2026-03-02T09:00:00.123+01:00",
            "2026-03-02T07:00:00.123456-0100",
            "2026-03-02T08:00:00.1234567Z",
        ] {
            assert_eq!(Timestamp::parse(s).unwrap().0, expected, "{s}");
        }
        assert_eq!(Timestamp::parse("1772438400").unwrap().0, 1_772_438_400_000);
        assert_eq!(
            Timestamp::parse("1772438400123").unwrap().0,
            1_772_438_400_123
        );
        assert!(Timestamp::parse("2026-13-02T08:00:00Z").is_err());
        assert!(Timestamp::parse("2026-02-30T08:00:00Z").is_err());
        assert!(Timestamp::parse("yesterday").is_err());
    }

    #[test]
    fn rfc3339_bytes_agree_with_the_civil_fields() {
        for ms in [0i64, 999, 1_772_431_200_123, 253_402_300_799_999, -1] {
            let t = Timestamp(ms);
            let (y, mo, d, h, mi, s) = t.civil();
            let want = format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
                ms.rem_euclid(1000)
            );
            match t.rfc3339_bytes() {
                Some(bytes) => assert_eq!(std::str::from_utf8(&bytes).unwrap(), want),
                None => assert!(!(0..=9999).contains(&y)),
            }
            assert_eq!(t.to_string(), want);
        }
        assert!(Timestamp(253_402_300_800_000).rfc3339_bytes().is_none());
    }

    #[test]
    fn display_round_trips() {
        for ms in [0i64, 1_772_438_400_123, -86_400_001, 4_102_444_800_000] {
            let t = Timestamp(ms);
            assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
        }
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn iso_weeks() {
        assert_eq!(iso_week(2026, 1, 1), 1);
        assert_eq!(iso_week(2021, 1, 3), 53);
        assert_eq!(iso_week(2024, 12, 30), 1);
        assert_eq!(iso_week(2026, 3, 2), 10);
        assert_eq!(
            Timestamp::from_civil(2026, 3, 2, 8, 5, 9).civil(),
            (2026, 3, 2, 8, 5, 9)
        );
    }

    #[test]
    fn durations() {
        assert_eq!(DurationMs::parse("6h").unwrap().0, 6 * 3_600_000);
        assert_eq!(DurationMs::parse("15m").unwrap().0, 900_000);
        assert_eq!(DurationMs::parse("2d").unwrap().to_string(), "2d");
        assert!(DurationMs::parse("6 hours").is_err());
        assert!(DurationMs::parse("-1h").is_err());
    }
}
