//! When a scheduled scenario runs next: Make's schedules (`indefinitely`, `once`, `daily`,
//! `weekly`, `monthly`, `yearly`, with `restrict` windows and a `between` range) and cron
//! expressions, computed in the schedule's time zone. Pure functions: the scheduler loop
//! decides what to do with the ticks.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use crate::scenario::model::{ScheduleKind, Scheduling};
use crate::scenario::schedule::{parse_cron, parse_time};

/// A schedule that cannot produce run times.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(pub String);

/// A compiled schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    spec: Scheduling,
    tz: Tz,
    cron: Option<cron::Schedule>,
    between: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Accept `indefinitely` intervals below Make's 60 s minimum (tests).
    pub min_interval: u64,
}

/// How far ahead calendar schedules look for their next run (a yearly schedule on 29 February
/// needs up to eight years).
const SEARCH_DAYS: i64 = 366 * 8 + 2;

impl Schedule {
    pub fn new(spec: &Scheduling) -> Result<Schedule, ScheduleError> {
        let tz = match &spec.timezone {
            None => chrono_tz::UTC,
            Some(name) => Tz::from_str(name)
                .map_err(|_| ScheduleError(format!("unknown time zone \"{name}\"")))?,
        };
        let cron = match (spec.kind, &spec.cron) {
            (ScheduleKind::Cron, Some(expr)) => Some(parse_cron(expr).map_err(ScheduleError)?),
            (ScheduleKind::Cron, None) => {
                return Err(ScheduleError("a cron schedule needs `cron`".into()));
            }
            _ => None,
        };
        let between = match &spec.between {
            None => None,
            Some(b) if b.len() == 2 => Some((parse_date(&b[0], tz)?, parse_date(&b[1], tz)?)),
            Some(_) => return Err(ScheduleError("`between` needs [start, end]".into())),
        };
        Ok(Schedule {
            spec: spec.clone(),
            tz,
            cron,
            between,
            min_interval: crate::scenario::schedule::MIN_INTERVAL_SECONDS,
        })
    }

    /// Whether the schedule fires on its own (not `immediately` or `on-demand`).
    pub fn is_timed(&self) -> bool {
        !matches!(
            self.spec.kind,
            ScheduleKind::Immediately | ScheduleKind::OnDemand
        )
    }

    /// The first run time strictly after `after`, or `None` when there is none any more.
    /// `anchor` is when an interval schedule started counting (its activation).
    pub fn next_after(&self, after: DateTime<Utc>, anchor: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut from = after;
        if let Some((start, _)) = self.between
            && from < start
        {
            from = start - Duration::milliseconds(1);
        }
        let next = match self.spec.kind {
            ScheduleKind::Immediately | ScheduleKind::OnDemand => None,
            ScheduleKind::Once => {
                let at = self
                    .spec
                    .date
                    .as_deref()
                    .and_then(|d| parse_date(d, self.tz).ok())?;
                (at > from).then_some(at)
            }
            ScheduleKind::Indefinitely => self.next_interval(from, anchor),
            ScheduleKind::Cron => self.next_cron(from),
            ScheduleKind::Daily
            | ScheduleKind::Weekly
            | ScheduleKind::Monthly
            | ScheduleKind::Yearly => self.next_calendar(from),
        }?;
        match self.between {
            Some((_, end)) if next > end => None,
            _ => Some(next),
        }
    }

    fn next_interval(&self, from: DateTime<Utc>, anchor: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let interval = self.spec.interval?.max(self.min_interval.max(1)) as i64;
        let elapsed = (from - anchor).num_seconds().max(-1);
        let first = elapsed.div_euclid(interval) + 1;
        // Skip ahead, bounded, to the first tick inside a `restrict` window.
        (first..first + 100_000)
            .filter_map(|k| Some(anchor + Duration::seconds(k.checked_mul(interval)?)))
            .find(|at| *at > from && self.allowed(*at))
    }

    fn next_cron(&self, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let cron = self.cron.as_ref()?;
        cron.after(&from.with_timezone(&self.tz))
            .take(10_000)
            .map(|t| t.with_timezone(&Utc))
            .find(|t| self.allowed(*t))
    }

    fn next_calendar(&self, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let time = self.spec.time.as_deref().and_then(parse_time).unwrap_or(0);
        let time = NaiveTime::from_num_seconds_from_midnight_opt(time, 0)?;
        let local_from = from.with_timezone(&self.tz).date_naive();
        for offset in 0..SEARCH_DAYS {
            let day = local_from.checked_add_signed(Duration::days(offset))?;
            if !self.day_matches(day) {
                continue;
            }
            // A wall time skipped by a DST change runs at the first instant after the gap.
            let at = match self.tz.from_local_datetime(&day.and_time(time)) {
                chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t,
                chrono::LocalResult::None => self
                    .tz
                    .from_local_datetime(&day.and_time(time + Duration::hours(1)))
                    .earliest()?,
            }
            .with_timezone(&Utc);
            if at > from && self.allowed(at) {
                return Some(at);
            }
        }
        None
    }

    fn day_matches(&self, day: NaiveDate) -> bool {
        let days = self.spec.days.as_deref().unwrap_or(&[]);
        let months = self.spec.months.as_deref().unwrap_or(&[]);
        match self.spec.kind {
            ScheduleKind::Daily => true,
            ScheduleKind::Weekly => {
                days.is_empty() || days.contains(&day.weekday().num_days_from_sunday())
            }
            ScheduleKind::Monthly => days.is_empty() || days.contains(&day.day()),
            ScheduleKind::Yearly => {
                (months.is_empty() || months.contains(&day.month()))
                    && (days.is_empty() || days.contains(&day.day()))
            }
            _ => false,
        }
    }

    /// Whether `at` falls inside one of the `restrict` windows (always, when there are none).
    fn allowed(&self, at: DateTime<Utc>) -> bool {
        let Some(windows) = self.spec.restrict.as_deref().filter(|w| !w.is_empty()) else {
            return true;
        };
        let local = at.with_timezone(&self.tz);
        let seconds = local.num_seconds_from_midnight();
        windows.iter().any(|w| {
            let day_ok = w.days.as_deref().is_none_or(|d| {
                d.is_empty() || d.contains(&local.weekday().num_days_from_sunday())
            });
            let month_ok = w
                .months
                .as_deref()
                .is_none_or(|m| m.is_empty() || m.contains(&local.month()));
            let time_ok = match w.time.as_deref() {
                Some([from, to]) => match (parse_time(from), parse_time(to)) {
                    (Some(f), Some(t)) if f <= t => (f..=t).contains(&seconds),
                    (Some(f), Some(t)) => seconds >= f || seconds <= t,
                    _ => false,
                },
                _ => true,
            };
            day_ok && month_ok && time_ok
        })
    }
}

fn parse_date(text: &str, tz: Tz) -> Result<DateTime<Utc>, ScheduleError> {
    if let Ok(d) = DateTime::parse_from_rfc3339(text) {
        return Ok(d.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| tz.from_local_datetime(&d.and_hms_opt(0, 0, 0)?).earliest())
        .map(|d| d.with_timezone(&Utc))
        .ok_or_else(|| ScheduleError(format!("expected an ISO 8601 date, got \"{text}\"")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schedule(v: serde_json::Value) -> Schedule {
        Schedule::new(&serde_json::from_value(v).unwrap()).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn ticks(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        let anchor = at(from);
        let mut t = anchor;
        (0..n)
            .map_while(|_| {
                t = s.next_after(t, anchor)?;
                Some(t.format("%Y-%m-%dT%H:%M:%SZ %a").to_string())
            })
            .collect()
    }

    #[test]
    fn interval_counts_from_the_anchor_and_respects_restrict_windows() {
        let s = schedule(json!({"type": "indefinitely", "interval": 900}));
        assert_eq!(
            ticks(&s, "2026-01-05T10:00:00Z", 2),
            ["2026-01-05T10:15:00Z Mon", "2026-01-05T10:30:00Z Mon"]
        );
        let s = schedule(json!({"type": "indefinitely", "interval": 3600,
            "restrict": [{"days": [1, 2, 3, 4, 5], "time": ["09:00", "17:00"]}]}));
        // Friday 16:30 → 17:30 is outside, so the next runs are Monday 09:30 and 10:30.
        assert_eq!(
            ticks(&s, "2026-01-09T16:30:00Z", 3),
            [
                "2026-01-12T09:30:00Z Mon",
                "2026-01-12T10:30:00Z Mon",
                "2026-01-12T11:30:00Z Mon"
            ]
        );
    }

    #[test]
    fn calendar_schedules_in_a_time_zone() {
        let s = schedule(json!({"type": "daily", "time": "09:00", "timezone": "Europe/Prague"}));
        assert_eq!(
            ticks(&s, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T07:00:00Z Sun", "2026-03-30T07:00:00Z Mon"]
        );
        let s = schedule(json!({"type": "weekly", "days": [1, 5], "time": "08:30"}));
        assert_eq!(
            ticks(&s, "2026-01-06T00:00:00Z", 3),
            [
                "2026-01-09T08:30:00Z Fri",
                "2026-01-12T08:30:00Z Mon",
                "2026-01-16T08:30:00Z Fri"
            ]
        );
        let s = schedule(json!({"type": "monthly", "days": [31], "time": "00:00"}));
        assert_eq!(
            ticks(&s, "2026-01-31T00:00:00Z", 2),
            ["2026-03-31T00:00:00Z Tue", "2026-05-31T00:00:00Z Sun"]
        );
        let s = schedule(json!({"type": "yearly", "months": [2], "days": [29], "time": "12:00"}));
        assert_eq!(
            ticks(&s, "2026-01-01T00:00:00Z", 1),
            ["2028-02-29T12:00:00Z Tue"]
        );
    }

    #[test]
    fn once_cron_between_and_untimed() {
        let s = schedule(json!({"type": "once", "date": "2026-02-01T10:00:00Z"}));
        assert_eq!(
            ticks(&s, "2026-01-01T00:00:00Z", 3),
            ["2026-02-01T10:00:00Z Sun"]
        );
        let s = schedule(json!({"type": "cron", "cron": "*/20 9 * * 1"}));
        assert_eq!(
            ticks(&s, "2026-01-05T09:10:00Z", 3),
            [
                "2026-01-05T09:20:00Z Mon",
                "2026-01-05T09:40:00Z Mon",
                "2026-01-12T09:00:00Z Mon"
            ]
        );
        let s = schedule(
            json!({"type": "daily", "time": "06:00", "between": ["2026-01-10", "2026-01-11T23:00:00Z"]}),
        );
        assert_eq!(
            ticks(&s, "2026-01-01T00:00:00Z", 5),
            ["2026-01-10T06:00:00Z Sat", "2026-01-11T06:00:00Z Sun"]
        );
        assert!(!schedule(json!({"type": "on-demand"})).is_timed());
        assert_eq!(
            ticks(
                &schedule(json!({"type": "immediately"})),
                "2026-01-01T00:00:00Z",
                1
            ),
            Vec::<String>::new()
        );
    }
}
