//! `addSeconds` … `addYears` and `setSecond` … `setYear`, with moment.js semantics:
//! - an empty amount (`null`, blank text) adds nothing, as in moment;
//! - `addSeconds`/`addMinutes`/`addHours` add absolute time (fractions allowed, truncated to
//!   the millisecond);
//! - `addDays`/`addMonths`/`addYears` round the amount half away from zero (`addYears(d; 0.5)`
//!   is six months) and work on the scenario zone's wall clock; months clamp to the month end
//!   (`2016-01-31` + 1 month = `2016-02-29`);
//! - setters truncate the value and roll over like JavaScript's `Date` setters
//!   (`setSecond(d; 70)` is second 10 of the next minute, `setDate(d; 0)` the previous month's
//!   last day); `setMonth` (1–12 or an English name) and `setYear` clamp the day to the month
//!   end; `setDay` takes 1 = Sunday … 7 = Saturday or an English name and moves within the
//!   Sunday-based week.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Offset, TimeDelta, Timelike, Utc};
use serde_json::Value;

use super::calendar::{days_in_month, month_from_name, weekday_from_name};
use super::{
    FnCtx, arg, date_arg, date_value, describe, from_local, from_millis, is_blank, number_arg,
    out_of_range,
};
use crate::expr::functions::{FnError, FnResult};
use crate::expr::value::to_number;

/// The amount to add: a number, or nothing (`null`, blank text), which moment reads as 0.
fn amount_arg(name: &str, args: &[Value]) -> Result<f64, FnError> {
    if is_blank(arg(args, 1)) {
        Ok(0.0)
    } else {
        number_arg(name, args, 1)
    }
}

/// Adds `amount × unit_ms` milliseconds.
fn add_absolute(name: &str, unit_ms: f64, args: &[Value], ctx: &FnCtx) -> FnResult {
    let Some(date) = date_arg(name, args, 0, ctx)? else {
        return Ok(Value::Null);
    };
    let amount = amount_arg(name, args)?;
    let ms = date.timestamp_millis() as f64 + amount * unit_ms;
    from_millis(ms)
        .map(date_value)
        .ok_or_else(|| out_of_range(name))
}

pub(super) fn add_seconds(args: &[Value], ctx: &FnCtx) -> FnResult {
    add_absolute("addSeconds", 1e3, args, ctx)
}

pub(super) fn add_minutes(args: &[Value], ctx: &FnCtx) -> FnResult {
    add_absolute("addMinutes", 6e4, args, ctx)
}

pub(super) fn add_hours(args: &[Value], ctx: &FnCtx) -> FnResult {
    add_absolute("addHours", 3.6e6, args, ctx)
}

/// Applies `change` to the date's wall-clock time in the scenario's zone. `change` returns
/// `Ok(None)` when the result leaves the representable range.
fn on_wall_clock(
    name: &str,
    args: &[Value],
    ctx: &FnCtx,
    change: impl FnOnce(NaiveDateTime) -> Result<Option<NaiveDateTime>, FnError>,
) -> FnResult {
    let Some(date) = date_arg(name, args, 0, ctx)? else {
        return Ok(Value::Null);
    };
    let local = date.with_timezone(&ctx.timezone);
    let changed = change(local.naive_local())?.ok_or_else(|| out_of_range(name))?;
    from_local(changed, ctx.timezone, Some(local.offset().fix()))
        .and_then(|d: DateTime<Utc>| from_millis(d.timestamp_millis() as f64))
        .map(date_value)
        .ok_or_else(|| out_of_range(name))
}

/// A whole number from an amount, `None` beyond any date arithmetic (so callers report
/// "out of range" instead of overflowing).
fn whole(n: f64) -> Option<i64> {
    (n.is_finite() && n.abs() < 1e12).then_some(n as i64)
}

/// `naive` moved by `months` calendar months, the day clamped to the month end.
fn shift_months(naive: NaiveDateTime, months: i64) -> Option<NaiveDateTime> {
    let index = i64::from(naive.year())
        .checked_mul(12)?
        .checked_add(i64::from(naive.month0()))?
        .checked_add(months)?;
    let year = index.div_euclid(12);
    let month = index.rem_euclid(12) + 1;
    let day = i64::from(naive.day()).min(days_in_month(year, month));
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(year).ok()?,
        u32::try_from(month).ok()?,
        u32::try_from(day).ok()?,
    )?;
    Some(date.and_time(naive.time()))
}

fn add_calendar(name: &str, args: &[Value], ctx: &FnCtx, unit: CalendarUnit) -> FnResult {
    on_wall_clock(name, args, ctx, |naive| {
        let amount = amount_arg(name, args)?;
        Ok(match unit {
            // f64::round rounds half away from zero, as moment's absRound.
            CalendarUnit::Days => whole(amount.round())
                .and_then(TimeDelta::try_days)
                .and_then(|d| naive.checked_add_signed(d)),
            CalendarUnit::Months => whole(amount.round()).and_then(|m| shift_months(naive, m)),
            CalendarUnit::Years => {
                whole((amount * 12.0).round()).and_then(|m| shift_months(naive, m))
            }
        })
    })
}

enum CalendarUnit {
    Days,
    Months,
    Years,
}

pub(super) fn add_days(args: &[Value], ctx: &FnCtx) -> FnResult {
    add_calendar("addDays", args, ctx, CalendarUnit::Days)
}

pub(super) fn add_months(args: &[Value], ctx: &FnCtx) -> FnResult {
    add_calendar("addMonths", args, ctx, CalendarUnit::Months)
}

pub(super) fn add_years(args: &[Value], ctx: &FnCtx) -> FnResult {
    add_calendar("addYears", args, ctx, CalendarUnit::Years)
}

/// The setter value in argument 2, truncated like JavaScript's `ToIntegerOrInfinity`.
fn set_value(name: &str, args: &[Value]) -> Result<f64, FnError> {
    Ok(number_arg(name, args, 1)?.trunc())
}

/// Sets a time field: the field is zeroed, then `value` units are added, so values out of
/// range roll over into the next larger unit.
fn set_time_field(
    name: &str,
    args: &[Value],
    ctx: &FnCtx,
    zero: fn(&NaiveDateTime) -> Option<NaiveDateTime>,
    unit: fn(i64) -> Option<TimeDelta>,
) -> FnResult {
    on_wall_clock(name, args, ctx, |naive| {
        let value = set_value(name, args)?;
        Ok(whole(value)
            .and_then(unit)
            .and_then(|delta| zero(&naive)?.checked_add_signed(delta)))
    })
}

pub(super) fn set_second(args: &[Value], ctx: &FnCtx) -> FnResult {
    set_time_field(
        "setSecond",
        args,
        ctx,
        |n| n.with_second(0),
        TimeDelta::try_seconds,
    )
}

pub(super) fn set_minute(args: &[Value], ctx: &FnCtx) -> FnResult {
    set_time_field(
        "setMinute",
        args,
        ctx,
        |n| n.with_minute(0),
        TimeDelta::try_minutes,
    )
}

pub(super) fn set_hour(args: &[Value], ctx: &FnCtx) -> FnResult {
    set_time_field(
        "setHour",
        args,
        ctx,
        |n| n.with_hour(0),
        TimeDelta::try_hours,
    )
}

/// `setDate(date; day)`: day of the month; 0 is the previous month's last day, 32 rolls on.
pub(super) fn set_date(args: &[Value], ctx: &FnCtx) -> FnResult {
    set_time_field(
        "setDate",
        args,
        ctx,
        |n| n.with_day(1),
        |day| TimeDelta::try_days(day.checked_sub(1)?),
    )
}

/// `setDay(date; 1–7 | name)`: 1 = Sunday … 7 = Saturday within the Sunday-based week;
/// 8 is next week's Sunday, 0 last week's Saturday. Names may be full, three- or two-letter.
pub(super) fn set_day(args: &[Value], ctx: &FnCtx) -> FnResult {
    const NAME: &str = "setDay";
    on_wall_clock(NAME, args, ctx, |naive| {
        let value = arg(args, 1);
        let target = match (value, to_number(value)) {
            (_, Some(n)) => Some(n.trunc() - 1.0),
            (Value::String(s), None) => weekday_from_name(s.trim()).map(|d| d as f64),
            _ => None,
        };
        let target = target.ok_or_else(|| {
            FnError::new(format!(
                "{NAME}: argument 2 must be a day number (1 = Sunday … 7 = Saturday) or an \
                 English day name, got {}",
                describe(value)
            ))
        })?;
        let current = i64::from(naive.weekday().num_days_from_sunday());
        Ok(whole(target)
            .and_then(|t| t.checked_sub(current))
            .and_then(TimeDelta::try_days)
            .and_then(|d| naive.checked_add_signed(d)))
    })
}

/// `setMonth(date; 1–12 | name)`: 13 is next year's January, 0 last year's December; the day
/// is clamped to the month's end (`2016-01-31` → February = `2016-02-29`).
pub(super) fn set_month(args: &[Value], ctx: &FnCtx) -> FnResult {
    const NAME: &str = "setMonth";
    on_wall_clock(NAME, args, ctx, |naive| {
        let value = arg(args, 1);
        let target = match (value, to_number(value)) {
            (_, Some(n)) => Some(n.trunc()),
            (Value::String(s), None) => month_from_name(s.trim()).map(|m| m as f64 + 1.0),
            _ => None,
        };
        let target = target.ok_or_else(|| {
            FnError::new(format!(
                "{NAME}: argument 2 must be a month number (1–12) or an English month name, \
                 got {}",
                describe(value)
            ))
        })?;
        let current = i64::from(naive.month());
        Ok(whole(target)
            .and_then(|t| t.checked_sub(current))
            .and_then(|delta| shift_months(naive, delta)))
    })
}

/// `setYear(date; year)`: 29 February becomes 28 February in a common year.
pub(super) fn set_year(args: &[Value], ctx: &FnCtx) -> FnResult {
    const NAME: &str = "setYear";
    on_wall_clock(NAME, args, ctx, |naive| {
        let target = set_value(NAME, args)?;
        let current = i64::from(naive.year());
        Ok(whole(target)
            .and_then(|t| t.checked_sub(current)?.checked_mul(12))
            .and_then(|delta| shift_months(naive, delta)))
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use serde_json::{Value, json};

    const DATE: &str = "2016-12-08T15:55:57.536Z";

    fn run(name: &str, date: &str, amount: Value) -> Value {
        ok(name, &[json!(date), amount])
    }

    #[test]
    fn documented_additions() {
        let cases = [
            ("addSeconds", 2, "2016-12-08T15:55:59.536Z"),
            ("addSeconds", -2, "2016-12-08T15:55:55.536Z"),
            ("addMinutes", 2, "2016-12-08T15:57:57.536Z"),
            ("addMinutes", -2, "2016-12-08T15:53:57.536Z"),
            ("addHours", 2, "2016-12-08T17:55:57.536Z"),
            ("addHours", -2, "2016-12-08T13:55:57.536Z"),
            ("addDays", 2, "2016-12-10T15:55:57.536Z"),
            ("addDays", -2, "2016-12-06T15:55:57.536Z"),
            ("addMonths", 2, "2017-02-08T15:55:57.536Z"),
            ("addMonths", -2, "2016-10-08T15:55:57.536Z"),
            ("addYears", 2, "2018-12-08T15:55:57.536Z"),
            ("addYears", -2, "2014-12-08T15:55:57.536Z"),
        ];
        for (name, amount, expected) in cases {
            assert_eq!(
                run(name, DATE, json!(amount)),
                json!(expected),
                "{name}({amount})"
            );
        }
    }

    #[test]
    fn amounts_as_text_and_fractions() {
        assert_eq!(
            run("addSeconds", DATE, json!("2")),
            json!("2016-12-08T15:55:59.536Z")
        );
        assert_eq!(
            run("addSeconds", DATE, json!(0.5)),
            json!("2016-12-08T15:55:58.036Z")
        );
        assert_eq!(
            run("addHours", DATE, json!(1.5)),
            json!("2016-12-08T17:25:57.536Z")
        );
        // Days, months and years round half away from zero.
        assert_eq!(
            run("addDays", DATE, json!(1.5)),
            json!("2016-12-10T15:55:57.536Z")
        );
        assert_eq!(
            run("addDays", DATE, json!(-1.5)),
            json!("2016-12-06T15:55:57.536Z")
        );
        assert_eq!(
            run("addDays", DATE, json!(1.4)),
            json!("2016-12-09T15:55:57.536Z")
        );
        assert_eq!(
            run("addYears", DATE, json!(0.5)),
            json!("2017-06-08T15:55:57.536Z")
        );
        assert_eq!(
            run("addDays", DATE, json!(true)),
            json!("2016-12-09T15:55:57.536Z")
        );
    }

    #[test]
    fn empty_amounts_add_nothing() {
        for name in [
            "addSeconds",
            "addMinutes",
            "addHours",
            "addDays",
            "addMonths",
            "addYears",
        ] {
            assert_eq!(ok(name, &[json!(DATE)]), json!(DATE), "{name}");
            assert_eq!(ok(name, &[json!(DATE), json!(null)]), json!(DATE), "{name}");
            assert_eq!(ok(name, &[json!(DATE), json!(" ")]), json!(DATE), "{name}");
        }
        // Setters have no such default.
        err(
            "setHour",
            &[json!(DATE)],
            "setHour: argument 2 must be a number, got null",
        );
    }

    #[test]
    fn month_end_clamping() {
        let cases = [
            (
                "addMonths",
                "2016-01-31T10:00:00.000Z",
                1,
                "2016-02-29T10:00:00.000Z",
            ),
            (
                "addMonths",
                "2017-01-31T10:00:00.000Z",
                1,
                "2017-02-28T10:00:00.000Z",
            ),
            (
                "addMonths",
                "2016-03-31T10:00:00.000Z",
                -1,
                "2016-02-29T10:00:00.000Z",
            ),
            (
                "addMonths",
                "2016-10-31T10:00:00.000Z",
                1,
                "2016-11-30T10:00:00.000Z",
            ),
            (
                "addMonths",
                "2016-12-31T10:00:00.000Z",
                14,
                "2018-02-28T10:00:00.000Z",
            ),
            (
                "addMonths",
                "2016-01-15T10:00:00.000Z",
                -13,
                "2014-12-15T10:00:00.000Z",
            ),
            (
                "addYears",
                "2016-02-29T10:00:00.000Z",
                1,
                "2017-02-28T10:00:00.000Z",
            ),
            (
                "addYears",
                "2016-02-29T10:00:00.000Z",
                4,
                "2020-02-29T10:00:00.000Z",
            ),
        ];
        for (name, date, amount, expected) in cases {
            assert_eq!(
                run(name, date, json!(amount)),
                json!(expected),
                "{name}({date}; {amount})"
            );
        }
    }

    #[test]
    fn calendar_arithmetic_keeps_the_wall_clock_across_dst() {
        let prague = chrono_tz::Europe::Prague;
        // 12:00 CET on 27 March 2021; the next day is in CEST, still 12:00 local.
        assert_eq!(
            call_in(
                prague,
                "addDays",
                &[json!("2021-03-27T11:00:00.000Z"), json!(1)]
            ),
            Ok(json!("2021-03-28T10:00:00.000Z"))
        );
        // addHours is absolute.
        assert_eq!(
            call_in(
                prague,
                "addHours",
                &[json!("2021-03-27T11:00:00.000Z"), json!(24)]
            ),
            Ok(json!("2021-03-28T11:00:00.000Z"))
        );
        // 02:30 local on the change day does not exist: it moves forward to 03:30 CEST.
        assert_eq!(
            call_in(
                prague,
                "addDays",
                &[json!("2021-03-27T01:30:00.000Z"), json!(1)]
            ),
            Ok(json!("2021-03-28T01:30:00.000Z"))
        );
        // Months across the autumn change keep 09:00 local.
        assert_eq!(
            call_in(
                prague,
                "addMonths",
                &[json!("2021-10-15T07:00:00.000Z"), json!(1)]
            ),
            Ok(json!("2021-11-15T08:00:00.000Z"))
        );
        // Setting a field in the repeated hour keeps the offset the date already had.
        assert_eq!(
            call_in(
                prague,
                "setSecond",
                &[json!("2021-10-31T01:30:00.000Z"), json!(5)]
            ),
            Ok(json!("2021-10-31T01:30:05.000Z"))
        );
        assert_eq!(
            call_in(
                prague,
                "setSecond",
                &[json!("2021-10-31T00:30:00.000Z"), json!(5)]
            ),
            Ok(json!("2021-10-31T00:30:05.000Z"))
        );
        // Make's own doc example (organisation zone Europe/Prague): August → January keeps
        // 13:36 local, which is 12:36 UTC in winter.
        assert_eq!(
            call_in(
                prague,
                "setMonth",
                &[json!("2015-08-07T11:36:39.138Z"), json!("January")]
            ),
            Ok(json!("2015-01-07T12:36:39.138Z"))
        );
    }

    #[test]
    fn setters_roll_over() {
        let cases = [
            ("setSecond", json!(10), "2016-12-08T15:55:10.536Z"),
            ("setSecond", json!(70), "2016-12-08T15:56:10.536Z"),
            ("setSecond", json!(-1), "2016-12-08T15:54:59.536Z"),
            ("setSecond", json!(10.9), "2016-12-08T15:55:10.536Z"),
            ("setMinute", json!(10), "2016-12-08T15:10:57.536Z"),
            ("setMinute", json!(61), "2016-12-08T16:01:57.536Z"),
            ("setHour", json!(6), "2016-12-08T06:55:57.536Z"),
            ("setHour", json!(-6), "2016-12-07T18:55:57.536Z"),
            ("setHour", json!(24), "2016-12-09T00:55:57.536Z"),
            ("setDate", json!(5), "2016-12-05T15:55:57.536Z"),
            ("setDate", json!(32), "2017-01-01T15:55:57.536Z"),
            ("setDate", json!(0), "2016-11-30T15:55:57.536Z"),
            ("setMonth", json!(5), "2016-05-08T15:55:57.536Z"),
            ("setMonth", json!("5"), "2016-05-08T15:55:57.536Z"),
            ("setMonth", json!(13), "2017-01-08T15:55:57.536Z"),
            ("setMonth", json!(0), "2015-12-08T15:55:57.536Z"),
            ("setMonth", json!("January"), "2016-01-08T15:55:57.536Z"),
            ("setMonth", json!("feb"), "2016-02-08T15:55:57.536Z"),
            ("setYear", json!(2017), "2017-12-08T15:55:57.536Z"),
            ("setYear", json!("1999"), "1999-12-08T15:55:57.536Z"),
        ];
        for (name, value, expected) in cases {
            assert_eq!(
                run(name, DATE, value.clone()),
                json!(expected),
                "{name}({value})"
            );
        }
    }

    #[test]
    fn set_month_and_year_clamp_the_day() {
        assert_eq!(
            run("setMonth", "2016-01-31T00:00:00.000Z", json!(2)),
            json!("2016-02-29T00:00:00.000Z")
        );
        assert_eq!(
            run("setMonth", "2016-01-31T00:00:00.000Z", json!(14)),
            json!("2017-02-28T00:00:00.000Z")
        );
        assert_eq!(
            run("setYear", "2016-02-29T00:00:00.000Z", json!(2017)),
            json!("2017-02-28T00:00:00.000Z")
        );
    }

    #[test]
    fn set_day_numbers_and_names() {
        // 2016-12-08 is a Thursday; its week runs Sunday 4th … Saturday 10th.
        let cases = [
            (json!(1), "2016-12-04T15:55:57.536Z"),
            (json!(5), "2016-12-08T15:55:57.536Z"),
            (json!(7), "2016-12-10T15:55:57.536Z"),
            (json!(8), "2016-12-11T15:55:57.536Z"),
            (json!(0), "2016-12-03T15:55:57.536Z"),
            (json!("2"), "2016-12-05T15:55:57.536Z"),
            (json!("Monday"), "2016-12-05T15:55:57.536Z"),
            (json!("sunday"), "2016-12-04T15:55:57.536Z"),
            (json!("Sat"), "2016-12-10T15:55:57.536Z"),
            (json!("Tu"), "2016-12-06T15:55:57.536Z"),
        ];
        for (value, expected) in cases {
            assert_eq!(
                run("setDay", DATE, value.clone()),
                json!(expected),
                "setDay({value})"
            );
        }
        // Make's doc examples: Wednesday 2018-06-27.
        let wednesday = "2018-06-27T11:36:39.138Z";
        assert_eq!(
            run("setDay", wednesday, json!("Monday")),
            json!("2018-06-25T11:36:39.138Z")
        );
        assert_eq!(
            run("setDay", wednesday, json!(1)),
            json!("2018-06-24T11:36:39.138Z")
        );
        assert_eq!(
            run("setDay", wednesday, json!(7)),
            json!("2018-06-30T11:36:39.138Z")
        );
    }

    #[test]
    fn bad_arguments() {
        err(
            "addDays",
            &[json!("not a date"), json!(1)],
            "addDays: argument 1 must be a date",
        );
        err(
            "addDays",
            &[json!("2016-13-45"), json!(1)],
            "got text \"2016-13-45\"",
        );
        err(
            "addDays",
            &[json!(DATE), json!("two")],
            "addDays: argument 2 must be a number, got text \"two\"",
        );
        err(
            "addSeconds",
            &[json!(DATE), json!([1, 2])],
            "argument 2 must be a number, got an array",
        );
        err(
            "setDay",
            &[json!(DATE), json!("Funday")],
            "English day name, got text \"Funday\"",
        );
        err(
            "setMonth",
            &[json!(DATE), json!("Smarch")],
            "English month name",
        );
        err("setMonth", &[json!(DATE), json!(null)], "month number");
        err(
            "setYear",
            &[json!(DATE), json!([2017, 2018])],
            "must be a number, got an array",
        );
        err("setHour", &[json!({"a": 1}), json!(1)], "got a collection");
    }

    #[test]
    fn empty_dates_give_null() {
        for name in ["addDays", "addSeconds", "setHour", "setDay", "setMonth"] {
            assert_eq!(ok(name, &[json!(null), json!(1)]), json!(null), "{name}");
            assert_eq!(ok(name, &[json!(""), json!(1)]), json!(null), "{name}");
        }
    }

    #[test]
    fn huge_amounts_are_errors_not_panics() {
        let huge = [
            json!(1e300),
            json!(-1e300),
            json!(9.2e18),
            json!(1e15),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(u64::MAX),
        ];
        for name in [
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
        ] {
            for amount in &huge {
                err(name, &[json!(DATE), amount.clone()], "out of range");
            }
        }
        // Near the edge of the supported range.
        err(
            "addYears",
            &[json!("+200000-01-01T00:00:00Z"), json!(60000)],
            "out of range",
        );
        err("setYear", &[json!(DATE), json!(-300000)], "out of range");
        assert_eq!(
            run("setYear", DATE, json!(-1)),
            json!("-000001-12-08T15:55:57.536Z")
        );
    }

    #[test]
    fn works_from_millis_input() {
        assert_eq!(
            ok("addDays", &[json!(1_481_212_557_536_i64), json!(1)]),
            json!("2016-12-09T15:55:57.536Z")
        );
    }
}
