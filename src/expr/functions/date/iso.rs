//! Reading date text: ISO 8601 (the forms moment.js accepts, minus the bare-digit ones that
//! would turn numeric text into dates) and RFC 2822.

use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;
use regex::Regex;

use super::{from_local, from_millis};

/// `YYYY-MM[-DD]` or `YYYYMMDD` (year may be `±YYYYYY`), then optionally `T`/space and
/// `HH[:mm[:ss[.fff]]]` (colons optional), then optionally `Z` or `±HH[[:]mm]`.
static ISO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)^\s*
        (?P<year>[+-][0-9]{6}|[0-9]{4})
        (?: -(?P<month>[0-9]{2})(?:-(?P<day>[0-9]{2}))? | (?P<bmonth>[0-9]{2})(?P<bday>[0-9]{2}) )
        (?: [Tt\x20]
            (?P<hour>[0-9]{2})
            (?: :?(?P<minute>[0-9]{2})
                (?: :?(?P<second>[0-9]{2}) (?:[.,](?P<fraction>[0-9]+))? )?
            )?
        )?
        \s*
        (?P<zone>[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?
        \s*$",
    )
    .expect("static regex")
});

/// Parses ISO 8601 or RFC 2822 text; a time without an offset is a wall-clock time in `tz`.
pub(super) fn parse(text: &str, tz: Tz) -> Option<DateTime<Utc>> {
    parse_iso(text, tz).or_else(|| {
        let date = DateTime::parse_from_rfc2822(text.trim()).ok()?;
        from_millis(date.timestamp_millis() as f64)
    })
}

fn parse_iso(text: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let caps = ISO.captures(text)?;
    let num = |name: &str| -> Option<u32> { caps.name(name)?.as_str().parse().ok() };
    let year: i32 = caps.name("year")?.as_str().parse().ok()?;
    let month = num("month").or_else(|| num("bmonth"))?;
    let day = num("day").or_else(|| num("bday")).unwrap_or(1);
    let date = NaiveDate::from_ymd_opt(year, month, day)?;

    let hour = num("hour").unwrap_or(0);
    let minute = num("minute").unwrap_or(0);
    let second = num("second").unwrap_or(0);
    let millis = caps.name("fraction").map_or(0, |f| {
        // Milliseconds are all a JavaScript date keeps; further digits are dropped.
        let digits: String = f.as_str().chars().chain("000".chars()).take(3).collect();
        digits.parse::<u32>().unwrap_or(0)
    });
    // `24:00` is the end of the day, i.e. midnight of the next one.
    let (hour, next_day) = if hour == 24 && minute == 0 && second == 0 && millis == 0 {
        (0, true)
    } else {
        (hour, false)
    };
    let time = NaiveTime::from_hms_milli_opt(hour, minute, second, millis)?;
    let mut local = NaiveDateTime::new(date, time);
    if next_day {
        local = local.checked_add_signed(TimeDelta::days(1))?;
    }

    match caps.name("zone").map(|z| z.as_str()) {
        None => from_local(local, tz, None),
        Some("Z" | "z") => from_millis(local.and_utc().timestamp_millis() as f64),
        Some(zone) => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let digits: String = zone.chars().filter(char::is_ascii_digit).collect();
            let hours: i64 = digits.get(..2)?.parse().ok()?;
            let minutes: i64 = digits
                .get(2..)
                .filter(|m| !m.is_empty())
                .map_or(Some(0), |m| m.parse().ok())?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = TimeDelta::minutes(sign * (hours * 60 + minutes));
            let utc = local.checked_sub_signed(offset)?;
            from_millis(utc.and_utc().timestamp_millis() as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(text: &str, tz: Tz) -> Option<String> {
        parse(text, tz).map(super::super::iso_string)
    }

    #[test]
    fn extended_and_basic_forms() {
        let utc = chrono_tz::UTC;
        let cases = [
            ("2016-12-08T15:55:57.536Z", "2016-12-08T15:55:57.536Z"),
            ("2016-12-08t15:55:57.536z", "2016-12-08T15:55:57.536Z"),
            ("2016-12-08T15:55:57Z", "2016-12-08T15:55:57.000Z"),
            ("2016-12-08T15:55:57.5Z", "2016-12-08T15:55:57.500Z"),
            ("2016-12-08T15:55:57.123456789Z", "2016-12-08T15:55:57.123Z"),
            ("2016-12-08T15:55:57,25Z", "2016-12-08T15:55:57.250Z"),
            ("2016-12-08T15:55Z", "2016-12-08T15:55:00.000Z"),
            ("2016-12-08T15Z", "2016-12-08T15:00:00.000Z"),
            ("2016-12-08 15:55:57", "2016-12-08T15:55:57.000Z"),
            ("  2016-12-08T15:55:57+01:00 ", "2016-12-08T14:55:57.000Z"),
            ("2016-12-08T15:55:57-0530", "2016-12-08T21:25:57.000Z"),
            ("2016-12-08T15:55:57 +01", "2016-12-08T14:55:57.000Z"),
            ("20161208T155557Z", "2016-12-08T15:55:57.000Z"),
            ("20161208", "2016-12-08T00:00:00.000Z"),
            ("2016-12", "2016-12-01T00:00:00.000Z"),
            ("2016-12-08T24:00:00Z", "2016-12-09T00:00:00.000Z"),
            ("+002016-12-08T00:00:00Z", "2016-12-08T00:00:00.000Z"),
            ("-000001-01-01T00:00:00Z", "-000001-01-01T00:00:00.000Z"),
            (
                "Thu, 08 Dec 2016 15:55:57 +0100",
                "2016-12-08T14:55:57.000Z",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(iso(text, utc).as_deref(), Some(expected), "{text}");
        }
    }

    #[test]
    fn naive_text_is_local_to_the_zone() {
        let ny = chrono_tz::America::New_York;
        assert_eq!(
            iso("2016-12-08T10:00:00", ny).as_deref(),
            Some("2016-12-08T15:00:00.000Z")
        );
        assert_eq!(
            iso("2016-07-08T10:00:00", ny).as_deref(),
            Some("2016-07-08T14:00:00.000Z")
        );
        // An explicit offset wins over the zone.
        assert_eq!(
            iso("2016-07-08T10:00:00Z", ny).as_deref(),
            Some("2016-07-08T10:00:00.000Z")
        );
    }

    #[test]
    fn rejects_non_dates() {
        let utc = chrono_tz::UTC;
        for text in [
            "",
            "2016",
            "201612",
            "1482940980",
            "2016-13-01",
            "2016-02-30",
            "2016-12-08T25:00:00Z",
            "2016-12-08T24:00:01Z",
            "2016-12-08T23:60:00Z",
            "2016-12-08T23:59:60Z",
            "2016-12-08T10:00:00+24:00",
            "2016-12-08T10:00:00+01:60",
            "2016-12-08X10:00",
            "8.12.2016",
            "+999999-01-01T00:00:00Z",
            "hello",
            "２０１６-12-08",
        ] {
            assert_eq!(iso(text, utc), None, "{text}");
        }
    }
}
