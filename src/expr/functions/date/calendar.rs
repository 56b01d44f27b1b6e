//! Proleptic Gregorian arithmetic on plain integers (no chrono range limits, no panics):
//! day numbers, month lengths, English names and moment's week numbering.

/// English month names, January first.
pub(super) const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// English weekday names, Sunday first (JavaScript's numbering).
pub(super) const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

pub(super) fn is_leap(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

pub(super) fn days_in_year(year: i64) -> i64 {
    if is_leap(year) { 366 } else { 365 }
}

/// Days in `month` (1–12) of `year`; 0 for a month out of range.
pub(super) fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a civil date (month 1–12; the day may be out of range, it just
/// counts on). Callers keep `year` within ±10⁹ so nothing overflows.
pub(super) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9).rem_euclid(12);
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month 1–12, day) of a day number.
pub(super) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Weekday of a civil date, 0 = Sunday.
pub(super) fn weekday(year: i64, month: i64, day: i64) -> i64 {
    (days_from_civil(year, month, day) + 4).rem_euclid(7)
}

/// moment's `firstWeekOffset`: where week 1 starts relative to January 1st, for weeks that
/// start on `dow` (0 = Sunday) and whose first week contains January `7 + dow - doy`.
fn first_week_offset(year: i64, dow: i64, doy: i64) -> i64 {
    let fwd = 7 + dow - doy;
    let fwdlw = (7 + weekday(year, 1, fwd) - dow).rem_euclid(7);
    -fwdlw + fwd - 1
}

pub(super) fn weeks_in_year(year: i64, dow: i64, doy: i64) -> i64 {
    let offset = first_week_offset(year, dow, doy);
    let next = first_week_offset(year + 1, dow, doy);
    (days_in_year(year) - offset + next) / 7
}

/// moment's `weekOfYear`: (week, week-year) of the day `day_of_year` (1-based) of `year`.
/// ISO weeks are `dow = 1, doy = 4`; the English locale's are `dow = 0, doy = 6`.
pub(super) fn week_of_year(year: i64, day_of_year: i64, dow: i64, doy: i64) -> (i64, i64) {
    let offset = first_week_offset(year, dow, doy);
    let week = (day_of_year - offset - 1).div_euclid(7) + 1;
    if week < 1 {
        let previous = year - 1;
        (week + weeks_in_year(previous, dow, doy), previous)
    } else if week > weeks_in_year(year, dow, doy) {
        (week - weeks_in_year(year, dow, doy), year + 1)
    } else {
        (week, year)
    }
}

/// moment's `dayOfYearFromWeeks`: (year, day of year) of `weekday` (0 = Sunday) in `week`.
pub(super) fn day_of_year_from_weeks(
    year: i64,
    week: i64,
    weekday: i64,
    dow: i64,
    doy: i64,
) -> (i64, i64) {
    let local_weekday = (7 + weekday - dow).rem_euclid(7);
    let offset = first_week_offset(year, dow, doy);
    let day = 1 + 7 * (week - 1) + local_weekday + offset;
    if day <= 0 {
        let previous = year - 1;
        (previous, days_in_year(previous) + day)
    } else if day > days_in_year(year) {
        (year + 1, day - days_in_year(year))
    } else {
        (year, day)
    }
}

/// English ordinal: `1st`, `2nd`, `3rd`, `4th`, `11th`, `12th`, `13th`, `21st`, `101st`.
pub(super) fn ordinal(n: i64) -> String {
    let last = n.rem_euclid(10);
    let suffix = if (n.rem_euclid(100)) / 10 == 1 {
        "th"
    } else {
        match last {
            1 => "st",
            2 => "nd",
            3 => "rd",
            _ => "th",
        }
    };
    format!("{n}{suffix}")
}

/// moment's month-name parser (non-strict): the first month whose full or three-letter name
/// starts `text`, ignoring case. 0-based.
pub(super) fn month_from_name(text: &str) -> Option<usize> {
    let lower = text.to_lowercase();
    MONTHS.iter().position(|name| {
        let name = name.to_lowercase();
        lower.starts_with(&name) || lower.starts_with(&name[..3])
    })
}

/// moment's weekday-name parser (non-strict): the first day whose full, three- or two-letter
/// name starts `text`, ignoring case. 0 = Sunday.
pub(super) fn weekday_from_name(text: &str) -> Option<usize> {
    let lower = text.to_lowercase();
    WEEKDAYS.iter().position(|name| {
        let name = name.to_lowercase();
        lower.starts_with(&name) || lower.starts_with(&name[..3]) || lower.starts_with(&name[..2])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDate};

    #[test]
    fn civil_round_trip_matches_chrono() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            let date = NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32).expect("valid");
            assert_eq!(
                i64::from(date.weekday().num_days_from_sunday()),
                weekday(y, m, d)
            );
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2016, 12, 8), 17_143);
        // Days past the month's end count on.
        assert_eq!(days_from_civil(2016, 1, 32), days_from_civil(2016, 2, 1));
    }

    #[test]
    fn iso_weeks_match_chrono() {
        let mut date = NaiveDate::from_ymd_opt(1999, 12, 1).expect("valid");
        while date.year() < 2027 {
            let iso = date.iso_week();
            let (week, year) =
                week_of_year(i64::from(date.year()), i64::from(date.ordinal()), 1, 4);
            assert_eq!(
                (week, year),
                (i64::from(iso.week()), i64::from(iso.year())),
                "{date}"
            );
            let (y, doy) = day_of_year_from_weeks(
                year,
                week,
                i64::from(date.weekday().num_days_from_sunday()),
                1,
                4,
            );
            assert_eq!(
                (y, doy),
                (i64::from(date.year()), i64::from(date.ordinal()))
            );
            date = date.succ_opt().expect("valid");
        }
    }

    #[test]
    fn english_locale_weeks() {
        // Week 1 is the week (Sunday–Saturday) containing January 1st.
        assert_eq!(week_of_year(2016, 1, 0, 6), (1, 2016)); // Friday 2016-01-01
        assert_eq!(week_of_year(2016, 3, 0, 6), (2, 2016)); // Sunday 2016-01-03
        assert_eq!(week_of_year(2016, 343, 0, 6), (50, 2016)); // 2016-12-08
        assert_eq!(week_of_year(2016, 366, 0, 6), (53, 2016)); // Saturday 2016-12-31
        assert_eq!(week_of_year(2017, 365, 0, 6), (1, 2018)); // Sunday 2017-12-31
    }

    #[test]
    fn ordinals_and_names() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 0]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd",
                "101st", "111th", "0th"
            ]
        );
        assert_eq!(month_from_name("January"), Some(0));
        assert_eq!(month_from_name("sep"), Some(8));
        assert_eq!(month_from_name("SEPTEMBER"), Some(8));
        assert_eq!(month_from_name("Ma"), None);
        assert_eq!(month_from_name("Foo"), None);
        assert_eq!(weekday_from_name("Monday"), Some(1));
        assert_eq!(weekday_from_name("tu"), Some(2));
        assert_eq!(weekday_from_name("SAT"), Some(6));
        assert_eq!(weekday_from_name("x"), None);
        assert_eq!(days_in_month(2016, 2), 29);
        assert_eq!(days_in_month(1900, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(2016, 13), 0);
    }
}
