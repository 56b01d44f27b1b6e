//! Date and time functions (`reference/make.md` §2.2 "Date and time"): `addSeconds` …
//! `addYears`, `setSecond` … `setYear`, `formatDate` and `parseDate`, plus the date coercion
//! the rest of the engine shares ([`to_datetime`], [`date_value`], [`format_datetime`]).
//!
//! Make's dates are JavaScript dates driven by moment.js, and this module follows them:
//! - a date is an instant with millisecond precision; as a value it is ISO 8601 text in UTC
//!   with milliseconds (`2016-12-08T15:55:59.536Z`), and numbers read as Unix milliseconds;
//! - text without an offset (`2016-12-08 10:00`, `2016-12-08`) is a wall-clock time in the
//!   scenario's zone ([`FnCtx::timezone`]);
//! - calendar arithmetic (`addDays`, `addMonths`, the setters) works on the wall clock of the
//!   scenario's zone, so it keeps the local time across a DST change and `addMonths` clamps to
//!   the month end; `addSeconds`/`addMinutes`/`addHours` add absolute time;
//! - a wall-clock time that a DST change skips moves forward by the gap, and one that it repeats
//!   takes the earlier instant (moment-timezone's rules);
//! - format tokens are moment's (English locale), see [`tokens`].
//!
//! An empty date (`null` or empty text) makes every function here return `null` rather than
//! fail, so a missing optional field maps to an empty value.

mod arith;
mod calendar;
mod format;
mod iso;
mod parse;
mod tokens;

use chrono::{
    DateTime, Datelike, FixedOffset, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;
use serde_json::Value;

use super::array::describe;
use super::{FnCtx, FnError, Function};
use crate::expr::value::to_number;

pub use format::format_datetime;

/// The date functions by their IML names.
pub fn lookup(name: &str) -> Option<Function> {
    let function: Function = match name {
        "addSeconds" => arith::add_seconds,
        "addMinutes" => arith::add_minutes,
        "addHours" => arith::add_hours,
        "addDays" => arith::add_days,
        "addMonths" => arith::add_months,
        "addYears" => arith::add_years,
        "setSecond" => arith::set_second,
        "setMinute" => arith::set_minute,
        "setHour" => arith::set_hour,
        "setDate" => arith::set_date,
        "setDay" => arith::set_day,
        "setMonth" => arith::set_month,
        "setYear" => arith::set_year,
        "formatDate" => format::format_date,
        "parseDate" => parse::parse_date,
        _ => return None,
    };
    Some(function)
}

/// Reads a value as an instant, the way Make coerces a value to a date:
/// - ISO 8601 / RFC 3339 text, extended or basic (`2016-12-08T15:55:57.536Z`,
///   `2016-12-08 15:55`, `20161208T155557+0100`), date-only (`2016-12-08`) or year-month
///   (`2016-12`); without an offset it is a wall-clock time in `tz`;
/// - RFC 2822 text (`Thu, 08 Dec 2016 15:55:57 GMT`);
/// - a number, as Unix milliseconds (fractions truncated, as JavaScript does);
/// - a one-item array, as its item ([`value::single`](crate::expr::value::single)).
///
/// Anything else (other text, booleans, arrays of several items, collections, `null`) is
/// not a date.
pub fn to_datetime(value: &Value, tz: Tz) -> Option<DateTime<Utc>> {
    match crate::expr::value::single(value) {
        Value::Number(n) => from_millis(n.as_f64()?),
        Value::String(s) => iso::parse(s, tz),
        _ => None,
    }
}

/// A date as Make outputs it: ISO 8601 text in UTC with milliseconds.
pub fn date_value(date: DateTime<Utc>) -> Value {
    Value::String(iso_string(date))
}

/// `2016-12-08T15:55:59.536Z`; years outside 0–9999 are written with a sign and six digits,
/// as JavaScript's `toISOString` does.
pub fn iso_string(date: DateTime<Utc>) -> String {
    let year = date.year();
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else if year < 0 {
        format!("-{:06}", year.unsigned_abs())
    } else {
        format!("+{year:06}")
    };
    format!(
        "{year}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        date.month(),
        date.day(),
        date.hour(),
        date.minute(),
        date.second(),
        date.timestamp_subsec_millis().min(999)
    )
}

/// Years this module computes with. chrono's own limit is ±262 143; staying well inside it
/// keeps every offset and DST adjustment clear of chrono's overflow panics.
const YEAR_LIMIT: i32 = 250_000;

fn in_range_year(year: i32) -> bool {
    (-YEAR_LIMIT..=YEAR_LIMIT).contains(&year)
}

/// An instant from Unix milliseconds, truncated towards zero like a JavaScript date.
pub(crate) fn from_millis(ms: f64) -> Option<DateTime<Utc>> {
    if !ms.is_finite() || ms.abs() > 8.64e15 {
        return None;
    }
    // In range, so the cast is exact.
    DateTime::from_timestamp_millis(ms.trunc() as i64).filter(|d| in_range_year(d.year()))
}

/// The instant a wall-clock time in `tz` names. Skipped times (DST gap) move forward by the
/// gap; repeated times take `prefer` when it is one of the two offsets, else the earlier one.
pub(crate) fn from_local(
    local: NaiveDateTime,
    tz: Tz,
    prefer: Option<FixedOffset>,
) -> Option<DateTime<Utc>> {
    if !in_range_year(local.year()) {
        return None;
    }
    let instant = match tz.from_local_datetime(&local) {
        LocalResult::Single(d) => d.with_timezone(&Utc),
        LocalResult::Ambiguous(earlier, later) => {
            if prefer == Some(later.offset().fix()) {
                later.with_timezone(&Utc)
            } else {
                earlier.with_timezone(&Utc)
            }
        }
        LocalResult::None => {
            // Read the wall time with the offset in force before the gap.
            let probe = local.checked_sub_signed(TimeDelta::days(1))?;
            let before = tz.offset_from_utc_datetime(&probe).fix();
            let utc = local
                .checked_sub_signed(TimeDelta::seconds(i64::from(before.local_minus_utc())))?;
            Utc.from_utc_datetime(&utc)
        }
    };
    Some(instant)
}

static NULL: Value = Value::Null;

/// Argument `i`, `null` when absent.
fn arg(args: &[Value], i: usize) -> &Value {
    args.get(i).unwrap_or(&NULL)
}

/// Null or blank text: an empty date.
fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// The date in argument `i`; `Ok(None)` when it is empty.
fn date_arg(
    name: &str,
    args: &[Value],
    i: usize,
    ctx: &FnCtx,
) -> Result<Option<DateTime<Utc>>, FnError> {
    let value = crate::expr::value::single(arg(args, i));
    if is_blank(value) {
        return Ok(None);
    }
    to_datetime(value, ctx.timezone).map(Some).ok_or_else(|| {
        FnError::new(format!(
            "{name}: argument {} must be a date (ISO 8601 text such as \
             2016-12-08T15:55:57.536Z, or Unix milliseconds), got {}",
            i + 1,
            describe(value)
        ))
    })
}

/// The number in argument `i`.
fn number_arg(name: &str, args: &[Value], i: usize) -> Result<f64, FnError> {
    let value = arg(args, i);
    to_number(value).ok_or_else(|| {
        FnError::new(format!(
            "{name}: argument {} must be a number, got {}",
            i + 1,
            describe(value)
        ))
    })
}

/// The zone named by argument `i`. Make recognises only tz database names and silently uses
/// the scenario's zone for anything else, including no argument.
fn zone_arg(args: &[Value], i: usize, ctx: &FnCtx) -> Tz {
    match arg(args, i) {
        Value::String(name) => name.trim().parse::<Tz>().unwrap_or(ctx.timezone),
        _ => ctx.timezone,
    }
}

fn out_of_range(name: &str) -> FnError {
    FnError::new(format!("{name}: the resulting date is out of range"))
}

#[cfg(test)]
pub(super) mod test_support {
    use super::super::{FnCtx, FnResult, Function};
    use chrono::{DateTime, Utc};
    use serde_json::Value;

    /// The context the IML example runner uses (now = 2016-12-08T15:55:57.536Z) in a zone.
    pub fn ctx_in(timezone: chrono_tz::Tz) -> FnCtx {
        let now = DateTime::parse_from_rfc3339("2016-12-08T15:55:57.536Z")
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default();
        FnCtx { now, timezone }
    }

    /// Calls a registered function by name.
    pub fn call(name: &str, args: &[Value]) -> FnResult {
        call_in(chrono_tz::UTC, name, args)
    }

    pub fn call_in(tz: chrono_tz::Tz, name: &str, args: &[Value]) -> FnResult {
        let f: Function = super::lookup(name).expect("function is registered");
        f(args, &ctx_in(tz))
    }

    /// Calls and expects success.
    pub fn ok(name: &str, args: &[Value]) -> Value {
        call(name, args).unwrap_or_else(|e| panic!("{name}({args:?}) failed: {e}"))
    }

    /// Calls and expects an error containing `needle`.
    pub fn err(name: &str, args: &[Value], needle: &str) {
        match call(name, args) {
            Ok(v) => panic!("{name}({args:?}) returned {v}, expected an error"),
            Err(e) => assert!(
                e.0.contains(needle),
                "{name}({args:?}) error {:?} lacks {needle:?}",
                e.0
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid test date")
            .with_timezone(&Utc)
    }

    #[test]
    fn iso_output_has_millis_and_z() {
        assert_eq!(
            date_value(utc("2016-12-08T15:55:59.536Z")),
            json!("2016-12-08T15:55:59.536Z")
        );
        assert_eq!(
            iso_string(utc("2016-12-08T15:55:59Z")),
            "2016-12-08T15:55:59.000Z"
        );
        let far = DateTime::from_timestamp_millis(253_402_300_800_000).expect("in range");
        assert_eq!(iso_string(far), "+010000-01-01T00:00:00.000Z");
        let before = DateTime::from_timestamp_millis(-62_198_755_200_000).expect("in range");
        assert_eq!(iso_string(before), "-000001-01-01T00:00:00.000Z");
    }

    #[test]
    fn to_datetime_reads_text_and_millis() {
        let tz = chrono_tz::UTC;
        let expected = utc("2016-12-08T15:55:57.536Z");
        assert_eq!(
            to_datetime(&json!("2016-12-08T15:55:57.536Z"), tz),
            Some(expected)
        );
        assert_eq!(
            to_datetime(&json!("2016-12-08T16:55:57.536+01:00"), tz),
            Some(expected)
        );
        assert_eq!(
            to_datetime(&json!(1_481_212_557_536_i64), tz),
            Some(expected)
        );
        assert_eq!(to_datetime(&json!(1_481_212_557_536.9), tz), Some(expected));
        assert_eq!(
            to_datetime(&json!("2016-12-08"), tz),
            Some(utc("2016-12-08T00:00:00Z"))
        );
        assert_eq!(
            to_datetime(&json!("2016-12-08"), chrono_tz::Europe::Prague),
            Some(utc("2016-12-07T23:00:00Z"))
        );
        assert_eq!(
            to_datetime(&json!("Thu, 08 Dec 2016 15:55:57 GMT"), tz),
            Some(utc("2016-12-08T15:55:57Z"))
        );
        for bad in [
            json!("abc"),
            json!(""),
            json!(null),
            json!(true),
            json!([1, 2]),
            json!({"a": 1}),
            json!(1e300),
            json!(-1e300),
            json!("1482940980"),
        ] {
            assert_eq!(to_datetime(&bad, tz), None, "{bad}");
        }
    }

    #[test]
    fn local_times_in_dst_gaps_and_overlaps() {
        let prague = chrono_tz::Europe::Prague;
        let at = |s: &str| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("valid naive date")
        };
        // 2021-03-28 02:30 does not exist in Prague: it moves forward to 03:30 CEST.
        assert_eq!(
            from_local(at("2021-03-28 02:30:00"), prague, None),
            Some(utc("2021-03-28T01:30:00Z"))
        );
        // 2021-10-31 02:30 happens twice: the earlier (CEST) one unless CET is preferred.
        assert_eq!(
            from_local(at("2021-10-31 02:30:00"), prague, None),
            Some(utc("2021-10-31T00:30:00Z"))
        );
        let cet = FixedOffset::east_opt(3600);
        assert_eq!(
            from_local(at("2021-10-31 02:30:00"), prague, cet),
            Some(utc("2021-10-31T01:30:00Z"))
        );
    }

    #[test]
    fn unknown_names_are_not_registered() {
        for name in ["dateDifference", "now", "contains", "length", "adddays"] {
            assert!(lookup(name).is_none(), "{name}");
        }
        assert!(lookup("addDays").is_some());
    }

    #[test]
    fn zone_argument_falls_back_to_the_default() {
        let ctx = ctx_in(chrono_tz::Europe::Prague);
        assert_eq!(zone_arg(&[json!("UTC")], 0, &ctx), chrono_tz::UTC);
        assert_eq!(
            zone_arg(&[json!("America/New_York")], 0, &ctx),
            chrono_tz::America::New_York
        );
        assert_eq!(
            zone_arg(&[json!("CEST+2")], 0, &ctx),
            chrono_tz::Europe::Prague
        );
        assert_eq!(zone_arg(&[json!(2)], 0, &ctx), chrono_tz::Europe::Prague);
        assert_eq!(zone_arg(&[], 0, &ctx), chrono_tz::Europe::Prague);
    }
}

/// Every date and array function, fed combinations of awkward arguments, returns a value or
/// an error and never panics.
#[cfg(test)]
mod robustness {
    use super::super::{FnCtx, lookup};
    use serde_json::{Value, json};

    const NAMES: [&str; 34] = [
        "addSeconds",
        "addMinutes",
        "addHours",
        "addDays",
        "addMonths",
        "addYears",
        "setSecond",
        "setMinute",
        "setHour",
        "setDate",
        "setDay",
        "setMonth",
        "setYear",
        "formatDate",
        "parseDate",
        "map",
        "join",
        "first",
        "last",
        "sort",
        "distinct",
        "deduplicate",
        "flatten",
        "keys",
        "slice",
        "merge",
        "add",
        "remove",
        "reverse",
        "shuffle",
        "arrayDiff",
        "arrayIntersect",
        "toArray",
        "toCollection",
    ];

    #[test]
    fn no_function_panics_on_odd_arguments() {
        let values = [
            json!(null),
            json!(true),
            json!(0),
            json!(-1),
            json!(1.5),
            json!(1e300),
            json!(-1e300),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(""),
            json!(" "),
            json!("abc"),
            json!("2016-12-08T15:55:57.536Z"),
            json!("+250000-12-31T23:59:59.999Z"),
            json!("-250000-01-01T00:00:00Z"),
            json!(8.64e15),
            json!("Monday"),
            json!("January"),
            json!("YYYY [x] Do W w gggg GGGG X x"),
            json!("\\"),
            json!("["),
            json!("desc ci"),
            json!("99999999999999999999"),
            json!([]),
            json!([1, "a", null, [2, [3]], {"k": "v"}]),
            json!({"a": {"b": [1, 2]}, "key": "x", "value": 2}),
            json!([{"key": 1, "value": {"b": 1}}, {"key": null}]),
        ];
        let thirds = [
            json!(null),
            json!("UTC"),
            json!("key"),
            json!(-3),
            json!([1]),
        ];
        let ctx = super::test_support::ctx_in(chrono_tz::Europe::Prague);
        let call = |name: &str, args: &[Value], ctx: &FnCtx| {
            let f = lookup(name).expect("registered");
            let _ = f(args, ctx);
        };
        for name in NAMES {
            call(name, &[], &ctx);
            for a in &values {
                call(name, std::slice::from_ref(a), &ctx);
                for b in &values {
                    call(name, &[a.clone(), b.clone()], &ctx);
                    for c in &thirds {
                        call(name, &[a.clone(), b.clone(), c.clone()], &ctx);
                    }
                }
            }
        }
    }
}
