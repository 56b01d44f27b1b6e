//! Checks a scenario's `scheduling` block (`reference/make.md` §1.6). Computing run times
//! belongs to the scheduler; this file only says whether a schedule is well formed.

use super::model::{ScheduleKind, Scheduling};

/// The shortest interval Make allows for `indefinitely`, in seconds.
pub const MIN_INTERVAL_SECONDS: u64 = 60;

/// Problems as `(path relative to "scheduling", reason)`.
pub fn check(s: &Scheduling) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut problem = |path: &str, reason: String| problems.push((path.to_string(), reason));
    match s.kind {
        ScheduleKind::Indefinitely => match s.interval {
            None => problem(
                ".interval",
                "`indefinitely` needs `interval` in seconds".into(),
            ),
            Some(i) if i < MIN_INTERVAL_SECONDS => problem(
                ".interval",
                format!("Invalid interval: {i} s is below the minimum of {MIN_INTERVAL_SECONDS} s"),
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

/// `HH:MM` (or `HH:MM:SS`) → seconds after midnight.
pub fn parse_time(t: &str) -> Option<u32> {
    let mut parts = t.split(':');
    let h: u32 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let s: u32 = match parts.next() {
        Some(s) => s.parse().ok()?,
        None => 0,
    };
    if parts.next().is_some() || h > 23 || m > 59 || s > 59 {
        return None;
    }
    Some(h * 3600 + m * 60 + s)
}

/// Checks a cron expression: 5 fields (minute first, as users write them), or 6–7 with seconds.
pub fn parse_cron(expr: &str) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if expr.trim_start().starts_with('@') {
        return Ok(());
    }
    if !(5..=7).contains(&fields) {
        return Err(format!(
            "expected 5 cron fields (minute hour day month weekday), got {fields} in \"{expr}\""
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sched(v: serde_json::Value) -> Scheduling {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn interval_below_minimum_is_reported() {
        let p = check(&sched(json!({"type": "indefinitely", "interval": 30})));
        assert_eq!(p.len(), 1);
        assert!(p[0].1.contains("Invalid interval"), "{p:?}");
        assert!(check(&sched(json!({"type": "indefinitely", "interval": 900}))).is_empty());
    }

    #[test]
    fn bad_dates_days_and_times() {
        let p = check(&sched(
            json!({"type": "weekly", "days": [1, 7], "time": "25:00"}),
        ));
        let paths: Vec<_> = p.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, [".time", ".days[1]"]);
        assert_eq!(
            check(&sched(json!({"type": "once", "date": "2026-01-01"}))).len(),
            1
        );
        assert_eq!(parse_time("09:30"), Some(34200));
    }
}
