//! `formatDate(date; format; [timezone])`: writes a date with moment.js tokens (English
//! locale) in a zone.
//!
//! | token | output | token | output |
//! |---|---|---|---|
//! | `YYYY` `YY` `Y` | 2016, 16, 2016 | `Q` `Qo` | 4, 4th |
//! | `M` `Mo` `MM` `MMM` `MMMM` | 12, 12th, 12, Dec, December | `D` `Do` `DD` | 8, 8th, 08 |
//! | `DDD` `DDDo` `DDDD` | 343, 343rd, 343 (day of year) | `d` `do` | 4, 4th (0 = Sunday) |
//! | `dd` `ddd` `dddd` | Th, Thu, Thursday | `e` `E` | 4, 4 (locale / ISO weekday) |
//! | `w` `wo` `ww` | 50 (locale week) | `W` `Wo` `WW` | 49 (ISO week) |
//! | `gg` `gggg` | locale week-year | `GG` `GGGG` | ISO week-year |
//! | `H` `HH` `h` `hh` `k` `kk` | 0–23, 1–12, 1–24 | `m` `mm` `s` `ss` | minutes, seconds |
//! | `S` `SS` `SSS` … | tenths, hundredths, ms … | `a` `A` | pm, PM |
//! | `Z` `ZZ` | +01:00, +0100 | `z` `zz` | CET (zone abbreviation) |
//! | `X` `x` | Unix seconds, Unix ms | `N` … | AD |
//!
//! `[text]` is literal, as are characters that are not tokens. An empty format writes
//! moment's default, `YYYY-MM-DDTHH:mm:ssZ` (with a literal `Z` in UTC).

use chrono::{DateTime, Datelike, Offset, Timelike, Utc};
use chrono_tz::{OffsetName, Tz};
use serde_json::Value;

use super::calendar::{MONTHS, WEEKDAYS, ordinal, week_of_year};
use super::tokens::{Piece, tokenize};
use super::{FnCtx, arg, date_arg, zone_arg};
use crate::expr::functions::FnResult;
use crate::expr::value::to_text;

/// `formatDate(date; format; [timezone])`.
pub(super) fn format_date(args: &[Value], ctx: &FnCtx) -> FnResult {
    let Some(date) = date_arg("formatDate", args, 0, ctx)? else {
        return Ok(Value::Null);
    };
    let format = to_text(arg(args, 1));
    let tz = zone_arg(args, 2, ctx);
    Ok(Value::String(format_datetime(date, &format, tz)))
}

/// Writes `date` in `tz` with a moment.js format string (see the module table).
pub fn format_datetime(date: DateTime<Utc>, format: &str, tz: Tz) -> String {
    let parts = Parts::new(date, tz);
    let format = if format.is_empty() {
        if parts.offset_seconds == 0 {
            "YYYY-MM-DDTHH:mm:ss[Z]"
        } else {
            "YYYY-MM-DDTHH:mm:ssZ"
        }
    } else {
        format
    };
    let mut out = String::new();
    for piece in tokenize(format) {
        match piece {
            Piece::Literal(text) => out.push_str(&text),
            Piece::Token(token) => match parts.token(&token) {
                Some(text) => out.push_str(&text),
                None => out.push_str(&token),
            },
        }
    }
    out
}

/// Whether moment has a formatter for `token` (tokens without one are written as is, and
/// `parseDate` does not count them as read).
pub(super) fn has_formatter(token: &str) -> bool {
    Parts::new(DateTime::<Utc>::default(), chrono_tz::UTC)
        .token(token)
        .is_some()
}

/// The fields of a date on a zone's wall clock.
struct Parts {
    year: i64,
    /// 1–12.
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    millisecond: i64,
    /// 0 = Sunday.
    weekday: i64,
    day_of_year: i64,
    offset_seconds: i64,
    abbreviation: String,
    unix_ms: i64,
}

impl Parts {
    fn new(date: DateTime<Utc>, tz: Tz) -> Self {
        let local = date.with_timezone(&tz);
        let offset = local.offset();
        Parts {
            year: i64::from(local.year()),
            month: i64::from(local.month()),
            day: i64::from(local.day()),
            hour: i64::from(local.hour()),
            minute: i64::from(local.minute()),
            second: i64::from(local.second()),
            millisecond: i64::from(local.timestamp_subsec_millis().min(999)),
            weekday: i64::from(local.weekday().num_days_from_sunday()),
            day_of_year: i64::from(local.ordinal()),
            offset_seconds: i64::from(offset.fix().local_minus_utc()),
            abbreviation: offset.abbreviation().unwrap_or_default().to_string(),
            unix_ms: date.timestamp_millis(),
        }
    }

    /// The text of one token; `None` if moment has no formatter for it.
    fn token(&self, token: &str) -> Option<String> {
        let hour12 = match self.hour % 12 {
            0 => 12,
            h => h,
        };
        let era_year = if self.year > 0 {
            self.year
        } else {
            1 - self.year
        };
        let (locale_week, locale_year) = week_of_year(self.year, self.day_of_year, 0, 6);
        let (iso_week, iso_year) = week_of_year(self.year, self.day_of_year, 1, 4);
        let month_name = usize::try_from(self.month - 1)
            .ok()
            .and_then(|i| MONTHS.get(i))
            .copied()
            .unwrap_or_default();
        let day_name = usize::try_from(self.weekday)
            .ok()
            .and_then(|i| WEEKDAYS.get(i))
            .copied()
            .unwrap_or_default();
        let quarter = (self.month + 2) / 3;
        let text = match token {
            "M" => self.month.to_string(),
            "Mo" => ordinal(self.month),
            "MM" => pad(self.month, 2),
            "MMM" => month_name.chars().take(3).collect(),
            "MMMM" => month_name.to_string(),
            "Q" => quarter.to_string(),
            "Qo" => ordinal(quarter),
            "D" => self.day.to_string(),
            "Do" => ordinal(self.day),
            "DD" => pad(self.day, 2),
            "DDD" => self.day_of_year.to_string(),
            "DDDo" => ordinal(self.day_of_year),
            "DDDD" => pad(self.day_of_year, 3),
            "d" | "e" => self.weekday.to_string(),
            "do" => ordinal(self.weekday),
            "dd" => day_name.chars().take(2).collect(),
            "ddd" => day_name.chars().take(3).collect(),
            "dddd" => day_name.to_string(),
            "E" => match self.weekday {
                0 => 7,
                d => d,
            }
            .to_string(),
            "w" => locale_week.to_string(),
            "wo" => ordinal(locale_week),
            "ww" => pad(locale_week, 2),
            "W" => iso_week.to_string(),
            "Wo" => ordinal(iso_week),
            "WW" => pad(iso_week, 2),
            "gg" => zero_fill(locale_year % 100, 2, false),
            "gggg" => zero_fill(locale_year, 4, false),
            "ggggg" => zero_fill(locale_year, 5, false),
            "GG" => zero_fill(iso_year % 100, 2, false),
            "GGGG" => zero_fill(iso_year, 4, false),
            "GGGGG" => zero_fill(iso_year, 5, false),
            "Y" if self.year <= 9999 => zero_fill(self.year, 4, false),
            "Y" => format!("+{}", self.year),
            "YY" => zero_fill(self.year % 100, 2, false),
            "YYYY" => zero_fill(self.year, 4, false),
            "YYYYY" => zero_fill(self.year, 5, false),
            "YYYYYY" => zero_fill(self.year, 6, true),
            "y" => era_year.to_string(),
            "yo" => ordinal(era_year),
            "yy" => zero_fill(era_year % 100, 2, false),
            "yyy" => zero_fill(era_year, 3, false),
            "yyyy" => zero_fill(era_year, 4, false),
            "N" | "NN" | "NNN" | "NNNNN" => if self.year > 0 { "AD" } else { "BC" }.to_string(),
            "NNNN" => if self.year > 0 {
                "Anno Domini"
            } else {
                "Before Christ"
            }
            .to_string(),
            "a" => if self.hour < 12 { "am" } else { "pm" }.to_string(),
            "A" => if self.hour < 12 { "AM" } else { "PM" }.to_string(),
            "H" => self.hour.to_string(),
            "HH" => pad(self.hour, 2),
            "h" => hour12.to_string(),
            "hh" => pad(hour12, 2),
            "k" => if self.hour == 0 { 24 } else { self.hour }.to_string(),
            "kk" => pad(if self.hour == 0 { 24 } else { self.hour }, 2),
            "Hmm" => format!("{}{}", self.hour, pad(self.minute, 2)),
            "Hmmss" => format!(
                "{}{}{}",
                self.hour,
                pad(self.minute, 2),
                pad(self.second, 2)
            ),
            "hmm" => format!("{}{}", hour12, pad(self.minute, 2)),
            "hmmss" => format!("{}{}{}", hour12, pad(self.minute, 2), pad(self.second, 2)),
            "m" => self.minute.to_string(),
            "mm" => pad(self.minute, 2),
            "s" => self.second.to_string(),
            "ss" => pad(self.second, 2),
            "S" => (self.millisecond / 100).to_string(),
            "SS" => pad(self.millisecond / 10, 2),
            "SSS" => pad(self.millisecond, 3),
            s if s.len() > 3 && s.bytes().all(|b| b == b'S') => {
                format!("{}{}", pad(self.millisecond, 3), "0".repeat(s.len() - 3))
            }
            "Z" => self.offset(":"),
            "ZZ" => self.offset(""),
            "z" | "zz" => self.abbreviation.clone(),
            "X" => self.unix_ms.div_euclid(1000).to_string(),
            "x" => self.unix_ms.to_string(),
            _ => return None,
        };
        Some(text)
    }

    /// `+01:00` / `+0100`.
    fn offset(&self, separator: &str) -> String {
        let minutes = self.offset_seconds / 60;
        let sign = if minutes < 0 { '-' } else { '+' };
        let minutes = minutes.abs();
        format!(
            "{sign}{}{separator}{}",
            pad(minutes / 60, 2),
            pad(minutes % 60, 2)
        )
    }
}

/// A non-negative number padded with zeros to `width`.
fn pad(n: i64, width: usize) -> String {
    zero_fill(n, width, false)
}

/// moment's `zeroFill`: sign (`-`, or `+` when forced), then the magnitude padded to `width`.
fn zero_fill(n: i64, width: usize, force_sign: bool) -> String {
    let sign = if n < 0 {
        "-"
    } else if force_sign {
        "+"
    } else {
        ""
    };
    format!("{sign}{:0width$}", n.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use serde_json::json;

    const DATE: &str = "2016-12-08T15:55:57.536Z";

    fn fmt(date: &str, format: &str, tz: &str) -> String {
        match ok("formatDate", &[json!(date), json!(format), json!(tz)]) {
            Value::String(s) => s,
            other => panic!("formatDate returned {other}"),
        }
    }

    #[test]
    fn documented_examples() {
        // make.md: the organisation zone is Europe/Prague; 1.`Date created` is 07:32 UTC.
        let created = "2018-10-01T07:32:00.000Z";
        assert_eq!(fmt(created, "MM/DD/YYYY", "Europe/Prague"), "10/01/2018");
        assert_eq!(
            fmt(created, "YYYY-MM-DD hh:mm A", "Europe/Prague"),
            "2018-10-01 09:32 AM"
        );
        assert_eq!(fmt(created, "DD.MM.YYYY HH:mm", "UTC"), "01.10.2018 07:32");
        // The scenario zone applies without a third argument.
        assert_eq!(
            call_in(
                chrono_tz::Europe::Prague,
                "formatDate",
                &[json!(created), json!("YYYY-MM-DD hh:mm A")]
            ),
            Ok(json!("2018-10-01 09:32 AM"))
        );
        // "ISO output is a single formatDate(now; "YYYY-MM-DDTHH:mm:ssZ")".
        assert_eq!(
            fmt(DATE, "YYYY-MM-DDTHH:mm:ssZ", "UTC"),
            "2016-12-08T15:55:57+00:00"
        );
    }

    #[test]
    fn unknown_zones_are_ignored() {
        for zone in ["Mars/Olympus", "CET+1", "", "utc"] {
            assert_eq!(fmt(DATE, "HH:mm", zone), "15:55", "{zone}");
        }
        assert_eq!(
            call_in(
                chrono_tz::Europe::Prague,
                "formatDate",
                &[json!(DATE), json!("HH:mm Z"), json!("Nowhere/Land")]
            ),
            Ok(json!("16:55 +01:00"))
        );
        assert_eq!(
            ok("formatDate", &[json!(DATE), json!("HH:mm"), json!(7)]),
            json!("15:55")
        );
    }

    #[test]
    fn every_token() {
        let cases = [
            ("YYYY YY Y YYYYY YYYYYY", "2016 16 2016 02016 +002016"),
            ("M Mo MM MMM MMMM", "12 12th 12 Dec December"),
            ("Q Qo", "4 4th"),
            ("D Do DD", "8 8th 08"),
            ("DDD DDDo DDDD", "343 343rd 343"),
            ("d do dd ddd dddd e E", "4 4th Th Thu Thursday 4 4"),
            ("w wo ww W Wo WW", "50 50th 50 49 49th 49"),
            ("gg gggg ggggg GG GGGG GGGGG", "16 2016 02016 16 2016 02016"),
            ("H HH h hh k kk", "15 15 3 03 15 15"),
            ("m mm s ss", "55 55 57 57"),
            ("S SS SSS SSSS SSSSSS", "5 53 536 5360 536000"),
            ("a A", "pm PM"),
            ("Z ZZ z", "+00:00 +0000 UTC"),
            ("X x", "1481212557 1481212557536"),
            ("Hmm Hmmss hmm hmmss", "1555 155557 355 35557"),
            ("N NNNN y yo yy", "AD Anno Domini 2016 2016th 16"),
        ];
        for (format, expected) in cases {
            assert_eq!(fmt(DATE, format, "UTC"), expected, "{format}");
        }
    }

    #[test]
    fn small_values_and_midnight() {
        let date = "2017-01-02T00:05:09.007Z";
        assert_eq!(
            fmt(date, "M/D/YY H:m:s h a k S SS SSS", "UTC"),
            "1/2/17 0:5:9 12 am 24 0 00 007"
        );
        assert_eq!(fmt(date, "Do DDDD E d", "UTC"), "2nd 002 1 1");
        // 2017-01-01 is a Sunday: ISO week 52 of 2016, locale week 1 of 2017.
        assert_eq!(
            fmt("2017-01-01T12:00:00Z", "W GGGG w gggg", "UTC"),
            "52 2016 1 2017"
        );
        assert_eq!(fmt("2017-01-01T12:00:00Z", "h A", "UTC"), "12 PM");
    }

    #[test]
    fn zones_and_dst() {
        assert_eq!(
            fmt(DATE, "YYYY-MM-DD HH:mm Z ZZ z", "Europe/Prague"),
            "2016-12-08 16:55 +01:00 +0100 CET"
        );
        assert_eq!(
            fmt("2016-07-08T15:55:57Z", "HH:mm Z z", "Europe/Prague"),
            "17:55 +02:00 CEST"
        );
        assert_eq!(
            fmt(DATE, "YYYY-MM-DD HH:mm Z", "America/St_Johns"),
            "2016-12-08 12:25 -03:30"
        );
        assert_eq!(
            fmt(DATE, "dddd HH:mm", "Pacific/Kiritimati"),
            "Friday 05:55"
        );
        // The same instant on both sides of Prague's autumn change.
        assert_eq!(
            fmt("2021-10-31T00:30:00Z", "HH:mm z", "Europe/Prague"),
            "02:30 CEST"
        );
        assert_eq!(
            fmt("2021-10-31T01:30:00Z", "HH:mm z", "Europe/Prague"),
            "02:30 CET"
        );
    }

    #[test]
    fn literals_and_defaults() {
        assert_eq!(
            fmt(DATE, "[Today is] dddd, [the] Do", "UTC"),
            "Today is Thursday, the 8th"
        );
        assert_eq!(fmt(DATE, "\\YYYY YYYY", "UTC"), "YYYY 2016");
        assert_eq!(
            fmt(DATE, "LLLL", "UTC"),
            "Thursday, December 8, 2016 3:55 PM"
        );
        assert_eq!(
            fmt(DATE, "L LT LTS", "UTC"),
            "12/08/2016 3:55 PM 3:55:57 PM"
        );
        assert_eq!(fmt(DATE, "l ll", "UTC"), "12/8/2016 Dec 8, 2016");
        assert_eq!(fmt(DATE, "w| ččč", "UTC"), "w| ččč");
        assert_eq!(fmt(DATE, "", "UTC"), "2016-12-08T15:55:57Z");
        assert_eq!(fmt(DATE, "", "Europe/Prague"), "2016-12-08T16:55:57+01:00");
        assert_eq!(
            ok("formatDate", &[json!(DATE)]),
            json!("2016-12-08T15:55:57Z")
        );
    }

    #[test]
    fn date_inputs() {
        // Unix milliseconds and naive text (read in the scenario's zone).
        assert_eq!(
            ok(
                "formatDate",
                &[
                    json!(1_481_212_557_536_i64),
                    json!("YYYY-MM-DD HH:mm:ss.SSS")
                ]
            ),
            json!("2016-12-08 15:55:57.536")
        );
        assert_eq!(
            call_in(
                chrono_tz::Europe::Prague,
                "formatDate",
                &[json!("2016-12-08 10:00"), json!("HH:mm"), json!("UTC")]
            ),
            Ok(json!("09:00"))
        );
        assert_eq!(ok("formatDate", &[json!(null), json!("YYYY")]), json!(null));
        assert_eq!(ok("formatDate", &[json!(""), json!("YYYY")]), json!(null));
        err(
            "formatDate",
            &[json!("yesterday"), json!("YYYY")],
            "argument 1 must be a date",
        );
        err(
            "formatDate",
            &[json!(true), json!("YYYY")],
            "got boolean true",
        );
        err(
            "formatDate",
            &[json!([DATE, DATE]), json!("YYYY")],
            "must be a date",
        );
        // A one-item array stands for its item (Make's coercion, issue 12 gap 9).
        assert_eq!(
            ok("formatDate", &[json!([DATE]), json!("YYYY")]),
            json!("2016")
        );
    }

    #[test]
    fn extreme_years() {
        assert_eq!(
            fmt("-000044-03-15T12:00:00Z", "YYYY YY Y N y", "UTC"),
            "-0044 -44 -0044 BC 45"
        );
        assert_eq!(
            fmt("+012345-01-01T00:00:00Z", "YYYY Y YYYYYY", "UTC"),
            "12345 +12345 +012345"
        );
    }
}
