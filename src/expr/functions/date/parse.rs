//! `parseDate(text; format; [timezone])`: reads text with a moment.js format (the tokens of
//! `formatDate`), the way moment's default, forgiving parser does:
//! - each token searches the rest of the text for its pattern (`YYYY` 1–4 digits, `MM` 1–2
//!   digits, `MMM`/`MMMM` an English month name, `Do` `8th`, `a`/`A` am/pm, `Z` an offset,
//!   `X` Unix seconds, `x` Unix milliseconds …), skipping anything in between; literal text is
//!   searched for the same way, and tokens that find nothing are simply left unset;
//! - missing fields default as moment does: with no year, month and day the date is today
//!   (in the zone), a day alone takes this month, a month alone day 1; time fields are 0;
//! - the wall-clock result is read in the zone (argument 3 if it is a tz database name, else
//!   the scenario's), unless the text carries an offset (`Z`);
//! - the text is rejected when no token matched, a field is out of range (month 13,
//!   30 February, hour 25 …), a month or day name is unknown, or a weekday contradicts the date.
//!
//! An empty format reads the text as ISO 8601, as moment does.

use std::sync::LazyLock;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;
use regex::Regex;
use serde_json::Value;

use super::calendar::{
    MONTHS, WEEKDAYS, civil_from_days, day_of_year_from_weeks, days_from_civil, days_in_month,
    days_in_year, month_from_name, week_of_year, weekday, weekday_from_name, weeks_in_year,
};
use super::format::has_formatter;
use super::tokens::{Piece, tokenize};
use super::{FnCtx, arg, date_value, from_local, from_millis, in_range_year, is_blank, zone_arg};
use crate::expr::functions::{FnError, FnResult};
use crate::expr::value::to_text;

const NAME: &str = "parseDate";

/// `parseDate(text; format; [timezone])`.
pub(super) fn parse_date(args: &[Value], ctx: &FnCtx) -> FnResult {
    let input = arg(args, 0);
    if is_blank(input) {
        return Ok(Value::Null);
    }
    let text = to_text(input);
    let format = to_text(arg(args, 1));
    let tz = zone_arg(args, 2, ctx);
    if format.is_empty() {
        return super::to_datetime(&Value::String(text.clone()), tz)
            .map(date_value)
            .ok_or_else(|| {
                FnError::new(format!(
                    "{NAME}: text {text:?} is not an ISO 8601 date; give its format as \
                     argument 2"
                ))
            });
    }
    match read(&text, &format, tz, ctx.now) {
        Ok(date) => Ok(date_value(date)),
        Err(Failure::NoMatch) => Err(FnError::new(format!(
            "{NAME}: text {text:?} does not match the format {format:?}"
        ))),
        Err(Failure::Invalid(reason)) => Err(FnError::new(format!(
            "{NAME}: text {text:?} read with the format {format:?} is not a valid date: {reason}"
        ))),
        Err(Failure::OutOfRange) => Err(FnError::new(format!(
            "{NAME}: text {text:?} read with the format {format:?} is out of the supported \
             date range"
        ))),
    }
}

#[derive(Debug, PartialEq)]
enum Failure {
    NoMatch,
    Invalid(String),
    OutOfRange,
}

macro_rules! patterns {
    ($($name:ident = $pattern:expr;)*) => {
        $(static $name: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(&$pattern).expect("static regex"));)*
    };
}

patterns! {
    DIGIT1 = "[0-9]";
    DIGITS1TO2 = "[0-9][0-9]?";
    DIGITS3 = "[0-9]{3}";
    DIGITS1TO3 = "[0-9]{1,3}";
    DIGITS1TO4 = "[0-9]{1,4}";
    DIGITS1TO6 = "[+-]?[0-9]{1,6}";
    DIGITS3TO4 = "[0-9]{3}[0-9]?";
    DIGITS5TO6 = "[0-9]{5}[0-9]?";
    UNSIGNED = "[0-9]+";
    SIGNED = "[+-]?[0-9]+";
    OFFSET = "(?i)Z|[+-][0-9][0-9](?::?[0-9][0-9])?";
    TIMESTAMP = r"[+-]?[0-9]+(?:\.[0-9]{1,3})?";
    DAY_ORDINAL = "(?i)[0-9]{1,2}(?:th|st|nd|rd)|[0-9]{1,2}";
    MERIDIEM = r"(?i)[ap]\.?m?\.?";
    ERA = "(?i)Anno Domini|Before Christ|AD|BC";
    MONTH_NAME = names_pattern(&MONTHS, &[3]);
    WEEKDAY_NAME = names_pattern(&WEEKDAYS, &[3, 2]);
}

/// `^(…)`, case-insensitive, of the names and their prefixes of the given lengths, longest
/// first (moment's month and weekday regexes).
fn names_pattern(names: &[&str], prefixes: &[usize]) -> String {
    let mut pieces: Vec<&str> = Vec::new();
    for name in names {
        pieces.push(name);
        pieces.extend(prefixes.iter().filter_map(|&n| name.get(..n)));
    }
    pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
    format!("(?i)^(?:{})", pieces.join("|"))
}

/// The pattern a token searches for; `None` for tokens moment cannot parse (their own text is
/// searched for instead).
fn pattern(token: &str) -> Option<&'static Regex> {
    let re: &LazyLock<Regex> = match token {
        "M" | "MM" | "D" | "DD" | "d" | "e" | "E" | "H" | "HH" | "h" | "hh" | "k" | "kk" | "m"
        | "mm" | "s" | "ss" | "w" | "ww" | "W" | "WW" | "gg" | "GG" | "YY" => &DIGITS1TO2,
        "MMM" | "MMMM" => &MONTH_NAME,
        "dd" | "ddd" | "dddd" => &WEEKDAY_NAME,
        "Do" => &DAY_ORDINAL,
        "DDD" | "S" | "SS" | "SSS" => &DIGITS1TO3,
        "DDDD" => &DIGITS3,
        "Q" => &DIGIT1,
        "YYYY" | "gggg" | "GGGG" => &DIGITS1TO4,
        "YYYYY" | "YYYYYY" | "ggggg" | "GGGGG" => &DIGITS1TO6,
        "Y" | "x" => &SIGNED,
        "y" | "yy" | "yyy" | "yyyy" => &UNSIGNED,
        "Hmm" | "hmm" => &DIGITS3TO4,
        "Hmmss" | "hmmss" => &DIGITS5TO6,
        "a" | "A" => &MERIDIEM,
        "Z" | "ZZ" => &OFFSET,
        "X" => &TIMESTAMP,
        "N" | "NN" | "NNN" | "NNNN" | "NNNNN" => &ERA,
        s if s.len() > 3 && s.bytes().all(|b| b == b'S') => &UNSIGNED,
        _ => return None,
    };
    Some(LazyLock::force(re))
}

const YEAR: usize = 0;
const MONTH: usize = 1;
const DATE: usize = 2;
const HOUR: usize = 3;
const MINUTE: usize = 4;
const SECOND: usize = 5;
const MILLISECOND: usize = 6;

/// Week-based fields (`d`, `e`, `E`, `w`, `W`, `gg`, `GG`).
#[derive(Debug, Default)]
struct WeekFields {
    d: Option<i64>,
    e: Option<i64>,
    iso_e: Option<i64>,
    w: Option<i64>,
    iso_w: Option<i64>,
    gg: Option<i64>,
    iso_gg: Option<i64>,
}

impl WeekFields {
    fn any(&self) -> bool {
        [
            self.d,
            self.e,
            self.iso_e,
            self.w,
            self.iso_w,
            self.gg,
            self.iso_gg,
        ]
        .iter()
        .any(Option::is_some)
    }
}

/// What the tokens read.
#[derive(Debug, Default)]
struct Fields {
    /// Year, month (0-based), day, hour, minute, second, millisecond.
    a: [Option<i64>; 7],
    day_of_year: Option<i64>,
    week: WeekFields,
    pm: Option<bool>,
    offset_minutes: Option<i64>,
    timestamp_ms: Option<f64>,
    matched: bool,
    invalid: Option<String>,
}

/// JavaScript's `toInt(+text)`: the number truncated towards zero, 0 if it is not one.
fn to_int(text: &str) -> i64 {
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map_or(0, |f| f.trunc() as i64)
}

/// moment's `parseTwoDigitYear`: 69–99 are 19xx, 00–68 20xx.
fn two_digit_year(text: &str) -> i64 {
    let n = to_int(text);
    n.saturating_add(if n > 68 { 1900 } else { 2000 })
}

impl Fields {
    fn apply(&mut self, token: &str, input: &str) {
        let n = || to_int(input);
        match token {
            "M" | "MM" => self.a[MONTH] = Some(n().saturating_sub(1)),
            "MMM" | "MMMM" => match month_from_name(input) {
                Some(m) => self.a[MONTH] = Some(m as i64),
                None => self.invalid = Some(format!("{input:?} is not a month name")),
            },
            "Q" => self.a[MONTH] = Some(n().saturating_sub(1).saturating_mul(3)),
            "D" | "DD" => self.a[DATE] = Some(n()),
            "Do" => {
                let digits: String = input.chars().take_while(char::is_ascii_digit).collect();
                self.a[DATE] = Some(to_int(&digits));
            }
            "DDD" | "DDDD" => self.day_of_year = Some(n()),
            "d" => self.week.d = Some(n()),
            "e" => self.week.e = Some(n()),
            "E" => self.week.iso_e = Some(n()),
            "dd" | "ddd" | "dddd" => match weekday_from_name(input) {
                Some(d) => self.week.d = Some(d as i64),
                None => self.invalid = Some(format!("{input:?} is not a day name")),
            },
            "w" | "ww" => self.week.w = Some(n()),
            "W" | "WW" => self.week.iso_w = Some(n()),
            "gg" => self.week.gg = Some(two_digit_year(input)),
            "gggg" | "ggggg" => self.week.gg = Some(n()),
            "GG" => self.week.iso_gg = Some(two_digit_year(input)),
            "GGGG" | "GGGGG" => self.week.iso_gg = Some(n()),
            "YY" => self.a[YEAR] = Some(two_digit_year(input)),
            "YYYY" if input.len() == 2 => self.a[YEAR] = Some(two_digit_year(input)),
            "YYYY" | "YYYYY" | "YYYYYY" | "Y" | "y" | "yy" | "yyy" | "yyyy" => {
                self.a[YEAR] = Some(n());
            }
            "H" | "HH" | "h" | "hh" => self.a[HOUR] = Some(n()),
            "k" | "kk" => self.a[HOUR] = Some(if n() == 24 { 0 } else { n() }),
            "Hmm" | "hmm" | "Hmmss" | "hmmss" => {
                // Digits only (see `pattern`), so byte offsets are char boundaries.
                let len = input.len();
                let (hour, minute, second) = if token.ends_with("ss") {
                    (
                        &input[..len - 4],
                        &input[len - 4..len - 2],
                        Some(&input[len - 2..]),
                    )
                } else {
                    (&input[..len - 2], &input[len - 2..], None)
                };
                self.a[HOUR] = Some(to_int(hour));
                self.a[MINUTE] = Some(to_int(minute));
                if let Some(second) = second {
                    self.a[SECOND] = Some(to_int(second));
                }
            }
            "m" | "mm" => self.a[MINUTE] = Some(n()),
            "s" | "ss" => self.a[SECOND] = Some(n()),
            s if s.bytes().all(|b| b == b'S') => {
                // moment: toInt(('0.' + input) * 1000).
                let fraction = format!("0.{input}").parse::<f64>().unwrap_or(0.0);
                self.a[MILLISECOND] = Some((fraction * 1000.0).trunc() as i64);
            }
            "a" | "A" => self.pm = Some(input.to_ascii_lowercase().starts_with('p')),
            "Z" | "ZZ" => self.offset_minutes = Some(offset_minutes(input)),
            "X" => self.timestamp_ms = Some(input.parse::<f64>().unwrap_or(f64::NAN) * 1000.0),
            "x" => self.timestamp_ms = Some(n() as f64),
            // Ordinal tokens (`Mo` …), `z` and eras only consume their text.
            _ => {}
        }
    }
}

/// `Z`, `+01:00`, `-0530`, `+01` as minutes east of UTC.
fn offset_minutes(input: &str) -> i64 {
    let digits: Vec<i64> = input
        .chars()
        .filter_map(|c| c.to_digit(10).map(i64::from))
        .collect();
    let hours = match digits.get(..2) {
        Some([a, b]) => a * 10 + b,
        _ => return 0,
    };
    let minutes = match digits.get(2..4) {
        Some([a, b]) => a * 10 + b,
        _ => 0,
    };
    let total = hours * 60 + minutes;
    if input.starts_with('-') {
        -total
    } else {
        total
    }
}

/// Years beyond this are out of range before any arithmetic can overflow.
const YEAR_SANITY: i64 = 1_000_000;

fn sane_year(year: i64) -> Result<i64, Failure> {
    if year.abs() > YEAR_SANITY {
        Err(Failure::OutOfRange)
    } else {
        Ok(year)
    }
}

/// Parses `text` with `format`; wall-clock results are read in `tz`, defaults come from `now`.
fn read(text: &str, format: &str, tz: Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>, Failure> {
    let mut fields = Fields::default();
    let mut rest = text;
    for piece in tokenize(format) {
        let (token, found) = match &piece {
            Piece::Literal(literal) => (None, find_literal(rest, literal)),
            Piece::Token(token) => {
                let found = match pattern(token) {
                    Some(re) => re.find(rest).map(|m| (m.start(), m.end())),
                    None => find_literal(rest, token),
                };
                (Some(token.as_str()), found)
            }
        };
        let Some((start, end)) = found.filter(|(start, end)| end > start) else {
            continue;
        };
        let input = &rest[start..end];
        if let Some(token) = token.filter(|t| has_formatter(t)) {
            fields.matched = true;
            fields.apply(token, input);
        }
        rest = &rest[end..];
    }
    fields.into_date(tz, now)
}

fn find_literal(rest: &str, literal: &str) -> Option<(usize, usize)> {
    if literal.is_empty() {
        return None;
    }
    rest.find(literal)
        .map(|start| (start, start + literal.len()))
}

impl Fields {
    /// moment's `configFromArray` and `checkOverflow`.
    fn into_date(mut self, tz: Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>, Failure> {
        if let Some(reason) = self.invalid.take() {
            return Err(Failure::Invalid(reason));
        }
        if let Some(ms) = self.timestamp_ms {
            return from_millis(ms).ok_or(Failure::OutOfRange);
        }
        if !self.matched {
            return Err(Failure::NoMatch);
        }
        if let (Some(pm), Some(hour)) = (self.pm, self.a[HOUR]) {
            if pm && hour < 12 {
                self.a[HOUR] = Some(hour + 12);
            } else if !pm && hour == 12 {
                self.a[HOUR] = Some(0);
            }
        }
        if self.pm.is_some() && self.a.iter().all(Option::is_none) {
            return Err(Failure::Invalid("am/pm without a time".to_string()));
        }

        let today = now.with_timezone(&tz);
        let current = [
            i64::from(today.year()),
            i64::from(today.month0()),
            i64::from(today.day()),
        ];
        let (today_year, today_doy) = (i64::from(today.year()), i64::from(today.ordinal()));

        let mut problem: Option<String> = None;
        if self.week.any()
            && self.a[DATE].is_none()
            && self.a[MONTH].is_none()
            && let Some(reason) = self.day_of_year_from_weeks(today_year, today_doy)?
        {
            problem = Some(reason);
        }
        if let Some(doy) = self.day_of_year {
            let year = sane_year(self.a[YEAR].unwrap_or(current[YEAR]))?;
            if (1..=days_in_year(year)).contains(&doy) {
                let (_, month, day) = civil_from_days(days_from_civil(year, 1, 1) + doy - 1);
                self.a[MONTH] = Some(month - 1);
                self.a[DATE] = Some(day);
            } else {
                problem.get_or_insert(format!("day of year {doy} is out of range"));
            }
        }
        let mut i = 0;
        while i < 3 && self.a[i].is_none() {
            self.a[i] = Some(current[i]);
            i += 1;
        }
        let mut value = [0_i64; 7];
        for (slot, (field, default)) in value
            .iter_mut()
            .zip(self.a.iter().zip([0, 0, 1, 0, 0, 0, 0]))
        {
            *slot = field.unwrap_or(default);
        }
        let [year, month0, day, hour, minute, second, ms] = value;
        let year = sane_year(year)?;

        let overflow = if !(0..=11).contains(&month0) {
            Some(format!(
                "month {} is out of range",
                month0.saturating_add(1)
            ))
        } else if day < 1 || day > days_in_month(year, month0 + 1) {
            Some(format!(
                "{} has no day {day}",
                MONTHS.get(month0 as usize).copied().unwrap_or_default()
            ))
        } else if !(0..=24).contains(&hour) || (hour == 24 && (minute, second, ms) != (0, 0, 0)) {
            Some(format!("hour {hour} is out of range"))
        } else if !(0..=59).contains(&minute) {
            Some(format!("minute {minute} is out of range"))
        } else if !(0..=59).contains(&second) {
            Some(format!("second {second} is out of range"))
        } else if !(0..=999).contains(&ms) {
            Some(format!("millisecond {ms} is out of range"))
        } else {
            None
        };
        if let Some(reason) = overflow.or(problem) {
            return Err(Failure::Invalid(reason));
        }

        // 24:00 is midnight at the end of the day.
        let (hour, next_day) = if hour == 24 { (0, true) } else { (hour, false) };
        let year32 = i32::try_from(year).ok().filter(|y| in_range_year(*y));
        let date = year32
            .and_then(|y| NaiveDate::from_ymd_opt(y, (month0 + 1) as u32, day as u32))
            .ok_or(Failure::OutOfRange)?;
        let time =
            NaiveTime::from_hms_milli_opt(hour as u32, minute as u32, second as u32, ms as u32)
                .ok_or(Failure::OutOfRange)?;
        let mut local = date.and_time(time);
        if next_day {
            local = local
                .checked_add_signed(TimeDelta::days(1))
                .ok_or(Failure::OutOfRange)?;
        }

        if let Some(d) = self.week.d {
            let actual = weekday(
                i64::from(local.year()),
                i64::from(local.month()),
                i64::from(local.day()),
            );
            if d != actual {
                let named = WEEKDAYS.get(d as usize).copied().unwrap_or("that weekday");
                return Err(Failure::Invalid(format!(
                    "{} is a {}, not a {named}",
                    local.date(),
                    WEEKDAYS.get(actual as usize).copied().unwrap_or_default()
                )));
            }
        }

        let instant = match self.offset_minutes {
            Some(offset) => local
                .checked_sub_signed(TimeDelta::minutes(offset))
                .map(|utc| utc.and_utc()),
            None => from_local(local, tz, None),
        };
        instant
            .and_then(|d| from_millis(d.timestamp_millis() as f64))
            .ok_or(Failure::OutOfRange)
    }

    /// moment's `dayOfYearFromWeekInfo`: a date from week fields when no month or day was
    /// read. Returns the reason when the week or weekday is out of range.
    fn day_of_year_from_weeks(
        &mut self,
        today_year: i64,
        today_doy: i64,
    ) -> Result<Option<String>, Failure> {
        let w = &self.week;
        let (dow, doy, week_year, week, weekday, weekday_ok) =
            if w.iso_gg.is_some() || w.iso_w.is_some() || w.iso_e.is_some() {
                let (_, iso_year) = week_of_year(today_year, today_doy, 1, 4);
                let week_year = w.iso_gg.or(self.a[YEAR]).unwrap_or(iso_year);
                let weekday = w.iso_e.unwrap_or(1);
                (
                    1,
                    4,
                    week_year,
                    w.iso_w.unwrap_or(1),
                    weekday,
                    (1..=7).contains(&weekday),
                )
            } else {
                let (current_week, current_year) = week_of_year(today_year, today_doy, 0, 6);
                let week_year = w.gg.or(self.a[YEAR]).unwrap_or(current_year);
                let (weekday, ok) = match (w.d, w.e) {
                    (Some(d), _) => (d, (0..=6).contains(&d)),
                    (None, Some(e)) => (e, (0..=6).contains(&e)),
                    (None, None) => (0, true),
                };
                (0, 6, week_year, w.w.unwrap_or(current_week), weekday, ok)
            };
        let week_year = sane_year(week_year)?;
        if week < 1 || week > weeks_in_year(week_year, dow, doy) {
            return Ok(Some(format!("week {week} is out of range")));
        }
        if !weekday_ok {
            return Ok(Some(format!("weekday {weekday} is out of range")));
        }
        let (year, day) = day_of_year_from_weeks(week_year, week, weekday, dow, doy);
        self.a[YEAR] = Some(year);
        self.day_of_year = Some(day);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use serde_json::json;

    fn parse(text: &str, format: &str) -> Value {
        ok("parseDate", &[json!(text), json!(format)])
    }

    fn parse_in(text: &str, format: &str, zone: &str) -> Value {
        ok("parseDate", &[json!(text), json!(format), json!(zone)])
    }

    #[test]
    fn make_doc_examples() {
        assert_eq!(
            parse("2016-12-28", "YYYY-MM-DD"),
            json!("2016-12-28T00:00:00.000Z")
        );
        assert_eq!(
            parse("2016-12-28 16:03", "YYYY-MM-DD HH:mm"),
            json!("2016-12-28T16:03:00.000Z")
        );
        assert_eq!(
            parse("10/28/2016 04:03 pm", "MM/DD/YYYY hh:mm a"),
            json!("2016-10-28T16:03:00.000Z")
        );
        assert_eq!(parse("1482940980", "X"), json!("2016-12-28T16:03:00.000Z"));
        assert_eq!(
            ok("parseDate", &[json!(1_482_940_980), json!("X")]),
            json!("2016-12-28T16:03:00.000Z")
        );
    }

    #[test]
    fn formats_with_names_ordinals_and_fractions() {
        let cases = [
            (
                "Aug 18, 2019 10:00 AM",
                "MMM D, YYYY hh:mm A",
                "2019-08-18T10:00:00.000Z",
            ),
            ("august 18 2019", "MMMM D YYYY", "2019-08-18T00:00:00.000Z"),
            (
                "Sunday, 18th August 2019",
                "dddd, Do MMMM YYYY",
                "2019-08-18T00:00:00.000Z",
            ),
            (
                "12-10-2019 20:30",
                "DD-MM-YYYY HH:mm",
                "2019-10-12T20:30:00.000Z",
            ),
            (
                "1.12.2021 16:30",
                "D.M.YYYY HH:mm",
                "2021-12-01T16:30:00.000Z",
            ),
            (
                "20161208155557",
                "YYYYMMDDHHmmss",
                "2016-12-08T15:55:57.000Z",
            ),
            (
                "2016-12-08T15:55:57.5",
                "YYYY-MM-DDTHH:mm:ss.S",
                "2016-12-08T15:55:57.500Z",
            ),
            (
                "2016-12-08 15:55:57.123456",
                "YYYY-MM-DD HH:mm:ss.SSSSSS",
                "2016-12-08T15:55:57.123Z",
            ),
            (
                "2016-12-08 15:55:57.05",
                "YYYY-MM-DD HH:mm:ss.SS",
                "2016-12-08T15:55:57.050Z",
            ),
            ("1481212557536", "x", "2016-12-08T15:55:57.536Z"),
            ("1481212557.5", "X", "2016-12-08T15:55:57.500Z"),
            ("08/12/16", "DD/MM/YY", "2016-12-08T00:00:00.000Z"),
            ("08/12/69", "DD/MM/YY", "1969-12-08T00:00:00.000Z"),
            ("08/12/68", "DD/MM/YY", "2068-12-08T00:00:00.000Z"),
            ("2016 343", "YYYY DDDD", "2016-12-08T00:00:00.000Z"),
            ("2016 Q4", "YYYY [Q]Q", "2016-10-01T00:00:00.000Z"),
            (
                "2016-12-08 at 3:55 pm",
                "YYYY-MM-DD [at] h:mm a",
                "2016-12-08T15:55:00.000Z",
            ),
            (
                "12:30 am 2016-12-08",
                "hh:mm a YYYY-MM-DD",
                "2016-12-08T00:30:00.000Z",
            ),
            (
                "2016-12-08 24:00",
                "YYYY-MM-DD HH:mm",
                "2016-12-09T00:00:00.000Z",
            ),
            (
                "2016-12-08 24:00",
                "YYYY-MM-DD kk:mm",
                "2016-12-08T00:00:00.000Z",
            ),
            (
                "2016-12-08 1555",
                "YYYY-MM-DD Hmm",
                "2016-12-08T15:55:00.000Z",
            ),
            (
                "2016-12-08 35557 pm",
                "YYYY-MM-DD hmmss a",
                "2016-12-08T15:55:57.000Z",
            ),
            ("2016-W49-4", "GGGG-[W]WW-E", "2016-12-08T00:00:00.000Z"),
            ("2016 50 4", "gggg ww d", "2016-12-08T00:00:00.000Z"),
            ("12/8/2016", "L", "2016-12-08T00:00:00.000Z"),
        ];
        for (text, format, expected) in cases {
            assert_eq!(parse(text, format), json!(expected), "{text} / {format}");
        }
    }

    #[test]
    fn forgiving_like_moment() {
        // Separators need not match; missing tokens are left unset.
        assert_eq!(
            parse("2016/12/28", "YYYY-MM-DD"),
            json!("2016-12-28T00:00:00.000Z")
        );
        assert_eq!(
            parse("2016-12-28", "YYYY-MM-DD HH:mm"),
            json!("2016-12-28T00:00:00.000Z")
        );
        assert_eq!(
            parse("Date: 2016-12-28 (Wed)", "YYYY-MM-DD"),
            json!("2016-12-28T00:00:00.000Z")
        );
        // Defaults: no date → today; a day alone → this month; a month alone → day 1.
        assert_eq!(parse("10:30", "HH:mm"), json!("2016-12-08T10:30:00.000Z"));
        assert_eq!(parse("15", "DD"), json!("2016-12-15T00:00:00.000Z"));
        assert_eq!(parse("3", "M"), json!("2016-03-01T00:00:00.000Z"));
        assert_eq!(parse("2020", "YYYY"), json!("2020-01-01T00:00:00.000Z"));
        // A weekday alone is that day of the current (Sunday-based) week.
        assert_eq!(parse("Monday", "dddd"), json!("2016-12-05T00:00:00.000Z"));
        // Names that are not names are skipped like any unmatched token (moment's behaviour):
        // the month then defaults to January.
        assert_eq!(
            parse("Foo 8, 2016", "MMM D, YYYY"),
            json!("2016-01-08T00:00:00.000Z")
        );
        assert_eq!(
            parse("Xyz 2016-12-08", "ddd YYYY-MM-DD"),
            json!("2016-12-08T00:00:00.000Z")
        );
        // Empty format: ISO 8601.
        assert_eq!(
            parse("2016-12-28T16:03:00Z", ""),
            json!("2016-12-28T16:03:00.000Z")
        );
    }

    #[test]
    fn zones_and_offsets() {
        assert_eq!(
            parse_in("2016-12-28 16:03", "YYYY-MM-DD HH:mm", "Europe/Prague"),
            json!("2016-12-28T15:03:00.000Z")
        );
        assert_eq!(
            parse_in("2016-07-28 16:03", "YYYY-MM-DD HH:mm", "Europe/Prague"),
            json!("2016-07-28T14:03:00.000Z")
        );
        // Unknown zone names fall back to the scenario's zone.
        assert_eq!(
            call_in(
                chrono_tz::America::New_York,
                "parseDate",
                &[
                    json!("2016-12-28 16:03"),
                    json!("YYYY-MM-DD HH:mm"),
                    json!("Atlantis")
                ]
            ),
            Ok(json!("2016-12-28T21:03:00.000Z"))
        );
        // An offset in the text wins.
        assert_eq!(
            parse_in(
                "2016-12-28 16:03 +05:30",
                "YYYY-MM-DD HH:mm Z",
                "Europe/Prague"
            ),
            json!("2016-12-28T10:33:00.000Z")
        );
        assert_eq!(
            parse("2016-12-28T16:03:00-0800", "YYYY-MM-DDTHH:mm:ssZZ"),
            json!("2016-12-29T00:03:00.000Z")
        );
        assert_eq!(
            parse("2016-12-28T16:03:00Z", "YYYY-MM-DDTHH:mm:ssZ"),
            json!("2016-12-28T16:03:00.000Z")
        );
        // DST: the skipped 02:30 moves to 03:30 CEST; the repeated one is the earlier.
        assert_eq!(
            parse_in("2021-03-28 02:30", "YYYY-MM-DD HH:mm", "Europe/Prague"),
            json!("2021-03-28T01:30:00.000Z")
        );
        assert_eq!(
            parse_in("2021-10-31 02:30", "YYYY-MM-DD HH:mm", "Europe/Prague"),
            json!("2021-10-31T00:30:00.000Z")
        );
    }

    #[test]
    fn invalid_dates_say_why() {
        err(
            "parseDate",
            &[json!("hello"), json!("YYYY-MM-DD")],
            "does not match the format \"YYYY-MM-DD\"",
        );
        err(
            "parseDate",
            &[json!("2016-13-01"), json!("YYYY-MM-DD")],
            "month 13 is out of range",
        );
        err(
            "parseDate",
            &[json!("2016-02-30"), json!("YYYY-MM-DD")],
            "February has no day 30",
        );
        err(
            "parseDate",
            &[json!("2016-12-08 25:00"), json!("YYYY-MM-DD HH:mm")],
            "hour 25",
        );
        err(
            "parseDate",
            &[json!("2016-12-08 24:30"), json!("YYYY-MM-DD HH:mm")],
            "hour 24",
        );
        err(
            "parseDate",
            &[json!("2016-12-08 10:61"), json!("YYYY-MM-DD HH:mm")],
            "minute 61",
        );
        err(
            "parseDate",
            &[json!("2016-12-08 10:10:99"), json!("YYYY-MM-DD HH:mm:ss")],
            "second 99",
        );
        err(
            "parseDate",
            &[json!("Friday 2016-12-08"), json!("dddd YYYY-MM-DD")],
            "2016-12-08 is a Thursday, not a Friday",
        );
        err(
            "parseDate",
            &[json!("2016 400"), json!("YYYY DDDD")],
            "day of year 400",
        );
        err(
            "parseDate",
            &[json!("2016-W60"), json!("GGGG-[W]WW")],
            "week 60",
        );
        err(
            "parseDate",
            &[json!("pm"), json!("a")],
            "am/pm without a time",
        );
        err(
            "parseDate",
            &[json!("abc"), json!("")],
            "not an ISO 8601 date",
        );
        err(
            "parseDate",
            &[json!("99999999999999999999"), json!("x")],
            "out of the supported date range",
        );
        err(
            "parseDate",
            &[json!("9999999999999999"), json!("X")],
            "out of the supported date range",
        );
        err(
            "parseDate",
            &[json!("999999"), json!("YYYYYY")],
            "out of the supported date range",
        );
        err(
            "parseDate",
            &[json!("+999999 1 1"), json!("YYYYYY M D")],
            "out of the supported date range",
        );
    }

    #[test]
    fn empty_text_is_null() {
        assert_eq!(ok("parseDate", &[json!(""), json!("YYYY")]), json!(null));
        assert_eq!(ok("parseDate", &[json!(null), json!("YYYY")]), json!(null));
    }

    #[test]
    fn never_panics_on_odd_input() {
        let long = "9".repeat(400);
        let texts = [
            "",
            "\u{0}",
            "ž",
            "１２",
            long.as_str(),
            "-",
            "+",
            "12345678901234567890 12345678901234567890",
            "Sept",
            "am pm",
        ];
        let formats = [
            "YYYY",
            "Hmmss",
            "hmm",
            "SSSSSSSSS",
            "GGGGG",
            "gg",
            "E",
            "e",
            "w",
            "Do",
            "DDDo",
            "Mo",
            "z",
            "N",
            "Q",
            "[",
            "]",
            "\\",
            "x X",
            "YYYYY-MM",
            "dddd",
            "LLLL",
            "kk",
        ];
        for text in texts {
            for format in formats {
                let _ = call("parseDate", &[json!(text), json!(format)]);
            }
        }
    }
}
