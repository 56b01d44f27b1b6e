//! The one text form of a point in time in the API and in the CLI's `--json` output: RFC 3339
//! in UTC with milliseconds and `Z` (`"2026-12-03T07:33:11.120Z"`), as Make's and Botpress's
//! APIs write them. The store keeps epoch milliseconds; only the edges format them.

use chrono::{DateTime, SecondsFormat};

/// `ms` (milliseconds since the Unix epoch) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
///
/// The store only holds times it took from the clock, all well inside chrono's range (about
/// ±262,000 years); a value beyond it is shown as its epoch milliseconds rather than dropped.
pub fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn milliseconds_in_utc_with_z() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_283_191_120), "2026-12-03T07:33:11.120Z");
        // Whole seconds keep their three digits; times before 1970 work too.
        assert_eq!(rfc3339(1_796_283_191_000), "2026-12-03T07:33:11.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn out_of_range_is_kept_as_milliseconds() {
        assert_eq!(rfc3339(i64::MAX), i64::MAX.to_string());
    }
}
