//! Checks a scenario's `scheduling` block (`reference/make.md` §1.6). Computing run times
//! belongs to the scheduler; this file only says whether a schedule is well formed.

use std::str::FromStr;

use super::model::{ScheduleKind, Scheduling};

/// `HH:MM` (or `HH:MM:SS`) → seconds after midnight (shared with filters' `time:` operators).
pub use crate::expr::condition::parse_time;

/// The shortest interval Make allows for `indefinitely`, in seconds.
pub const MIN_INTERVAL_SECONDS: u64 = 60;

/// Problems as `(path relative to "scheduling", reason)`. `min_interval` is the shortest
/// accepted `indefinitely` interval in seconds ([`MIN_INTERVAL_SECONDS`] unless a test
/// deployment lowers it).
pub fn check(s: &Scheduling, min_interval: u64) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut problem = |path: &str, reason: String| problems.push((path.to_string(), reason));
    match s.kind {
        ScheduleKind::Indefinitely => match s.interval {
            None => problem(
                ".interval",
                "`indefinitely` needs `interval` in seconds".into(),
            ),
            Some(i) if i < min_interval => problem(
                ".interval",
                format!("Invalid interval: {i} s is below the minimum of {min_interval} s"),
            ),
            Some(_) => {}
        },
        ScheduleKind::Once => match &s.date {
            None => problem(
                ".date",
                "`once` needs `date` as a full ISO 8601 date-time".into(),
            ),
            Some(d) if chrono::DateTime::parse_from_rfc3339(d).is_err() => problem(
                ".date",
                format!(
                    "expected a full ISO 8601 date-time such as 2026-01-31T09:00:00Z, got \"{d}\""
                ),
            ),
            Some(_) => {}
        },
        ScheduleKind::Cron => match &s.cron {
            None => problem(".cron", "`cron` needs a `cron` expression".into()),
            Some(expr) => {
                if let Err(e) = parse_cron(expr) {
                    problem(".cron", e);
                }
            }
        },
        _ => {}
    }
    if let Some(t) = &s.time
        && parse_time(t).is_none()
    {
        problem(
            ".time",
            format!("expected a time of day HH:MM, got \"{t}\""),
        );
    }
    let (day_min, day_max) = if s.kind == ScheduleKind::Weekly {
        (0, 6)
    } else {
        (1, 31)
    };
    for (k, d) in s.days.iter().flatten().enumerate() {
        if !(day_min..=day_max).contains(d) {
            problem(
                &format!(".days[{k}]"),
                format!("expected a day from {day_min} to {day_max}, got {d}"),
            );
        }
    }
    for (k, m) in s.months.iter().flatten().enumerate() {
        if !(1..=12).contains(m) {
            problem(
                &format!(".months[{k}]"),
                format!("expected a month from 1 to 12, got {m}"),
            );
        }
    }
    if let Some(between) = &s.between {
        if between.len() != 2 {
            problem(
                ".between",
                format!("expected [start, end], got {} values", between.len()),
            );
        }
        for (k, d) in between.iter().enumerate() {
            if chrono::DateTime::parse_from_rfc3339(d).is_err()
                && chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err()
            {
                problem(
                    &format!(".between[{k}]"),
                    format!("expected an ISO 8601 date, got \"{d}\""),
                );
            }
        }
    }
    for (k, r) in s.restrict.iter().flatten().enumerate() {
        for (j, t) in r.time.iter().flatten().enumerate() {
            if parse_time(t).is_none() {
                problem(
                    &format!(".restrict[{k}].time[{j}]"),
                    format!("expected a time of day HH:MM, got \"{t}\""),
                );
            }
        }
    }
    if let Some(tz) = &s.timezone
        && tz.parse::<chrono_tz::Tz>().is_err()
    {
        problem(
            ".timezone",
            format!(
                "unknown time zone \"{tz}\": expected a tz database name such as Europe/Prague"
            ),
        );
    }
    problems
}

/// Parses a cron expression. The 5-field form users write (minute first, weekday 0–7 with
/// 0 and 7 = Sunday) is translated for the `cron` crate, which wants a leading seconds field
/// and numbers weekdays from 1 = Sunday: numeric weekdays become names.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let trimmed = expr.trim();
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    let normalized = if !trimmed.starts_with('@') && fields.len() == 5 {
        format!(
            "0 {} {} {} {} {}",
            fields[0],
            fields[1],
            fields[2],
            fields[3],
            weekday_names(fields[4])
        )
    } else {
        trimmed.to_string()
    };
    cron::Schedule::from_str(&normalized)
        .map_err(|e| format!("invalid cron expression \"{expr}\": {e}"))
}

/// `1-5,0` → `MON-FRI,SUN`; numbers after `/` are steps and stay numbers.
fn weekday_names(field: &str) -> String {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let mut out = String::with_capacity(field.len() * 2);
    let mut chars = field.chars().peekable();
    let mut after_slash = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            let mut number = c.to_string();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                number.push(*d);
                chars.next();
            }
            match number
                .parse::<usize>()
                .ok()
                .and_then(|n| NAMES.get(n))
                .filter(|_| !after_slash)
            {
                Some(name) => out.push_str(name),
                None => out.push_str(&number),
            }
            after_slash = false;
        } else {
            after_slash = c == '/';
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_default(s: &Scheduling) -> Vec<(String, String)> {
        check(s, MIN_INTERVAL_SECONDS)
    }

    fn sched(v: serde_json::Value) -> Scheduling {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn interval_below_minimum_is_reported() {
        let p = check_default(&sched(json!({"type": "indefinitely", "interval": 30})));
        assert_eq!(p.len(), 1);
        assert!(p[0].1.contains("Invalid interval"), "{p:?}");
        assert!(check_default(&sched(json!({"type": "indefinitely", "interval": 900}))).is_empty());
    }

    #[test]
    fn bad_dates_days_and_times() {
        let p = check_default(&sched(
            json!({"type": "weekly", "days": [1, 7], "time": "25:00"}),
        ));
        let paths: Vec<_> = p.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, [".time", ".days[1]"]);
        assert_eq!(
            check_default(&sched(json!({"type": "once", "date": "2026-01-01"}))).len(),
            1
        );
        assert_eq!(parse_time("09:30"), Some(34200));
    }

    #[test]
    fn bad_cron_is_an_error_with_the_expression() {
        let e = parse_cron("61 * * * *").unwrap_err();
        assert!(e.contains("\"61 * * * *\""), "{e}");
        assert!(parse_cron("@hourly").is_ok());
        assert_eq!(weekday_names("1-5,0"), "MON-FRI,SUN");
        assert_eq!(weekday_names("*/2"), "*/2");
        assert_eq!(weekday_names("7"), "SUN");
    }
}
