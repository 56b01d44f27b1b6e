//! The built-in booking calendar (the `calendar` app) on both backends: calendars named by
//! alias, their recurring weekly availability (windows cut into slots of a length, each slot
//! taking a number of bookings), and the bookings themselves.
//!
//! Invariants:
//! - **A booking never overfills a slot**: [`Store::book`] runs in one write transaction that
//!   first locks the calendar's row (`BEGIN IMMEDIATE` on SQLite, `SELECT … FOR UPDATE` on
//!   PostgreSQL), then checks the slot against the availability, counts the slot's live
//!   bookings and inserts only while they are under its capacity. So of concurrent bookings of
//!   a slot with capacity one, from any number of processes, exactly one succeeds.
//! - All times are UTC: windows are minutes after midnight UTC on an ISO weekday (1 = Monday),
//!   slot starts are instants. A slot is a start a window produces: the window's start plus a
//!   whole number of slot lengths, ending within the window.
//! - Errors name what was wrong: an unknown calendar is `NotFound`, a full slot is a
//!   `Conflict` ("slot … is full"), a start that is no slot of the availability and bad
//!   windows are `InvalidInput` naming the field.

use chrono::{DateTime, Datelike, Duration, NaiveTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::StoreError;
use super::{Result, Store, begin_write, check_text, for_update_in, new_id, now_ms};

/// The longest calendar alias, in bytes.
pub const MAX_CALENDAR_ALIAS_BYTES: usize = 200;
/// The longest span [`Store::free_slots`] and [`Store::list_bookings`] look at.
pub const MAX_CALENDAR_SPAN_DAYS: i64 = 366;
/// The longest `who` of a booking, in bytes.
const MAX_WHO_BYTES: usize = 1000;
/// The most windows a calendar's availability may hold.
const MAX_WINDOWS: usize = 7 * 48;

/// A booking calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BookingCalendar {
    pub alias: String,
    pub title: String,
    pub icon: String,
}

/// One recurring weekly window of availability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// ISO weekday: 1 = Monday … 7 = Sunday.
    pub weekday: u8,
    /// Minutes after midnight UTC the window opens (0..1440).
    pub start_minute: u16,
    /// Minutes after midnight UTC the window closes (after `start_minute`, at most 1440).
    pub end_minute: u16,
    /// The length of each slot, in minutes.
    pub slot_minutes: u16,
    /// How many bookings each slot takes.
    pub capacity: u32,
}

/// A slot with room left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FreeSlot {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub capacity: u32,
    /// Bookings the slot can still take.
    pub free: u32,
}

/// Whether a booking holds its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BookingStatus {
    Booked,
    Cancelled,
}

impl BookingStatus {
    fn as_str(self) -> &'static str {
        match self {
            BookingStatus::Booked => "booked",
            BookingStatus::Cancelled => "cancelled",
        }
    }
}

/// One booking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Booking {
    pub id: String,
    pub calendar: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub who: String,
    pub data: Map<String, Value>,
    pub status: BookingStatus,
    pub created_at: DateTime<Utc>,
}

impl Booking {
    /// The booking as a bundle: times in ISO 8601 UTC.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "calendar": self.calendar,
            "start": iso(self.start),
            "end": iso(self.end),
            "who": self.who,
            "data": Value::Object(self.data.clone()),
            "status": self.status.as_str(),
            "createdAt": iso(self.created_at),
        })
    }
}

/// `at` as ISO 8601 in UTC, to the second.
pub fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

type BookingRow = (String, String, i64, i64, String, String, String, i64);

const BOOKING_COLUMNS: &str = "SELECT id, calendar, slot_start, slot_end, who, data, status, created_at FROM booking_bookings";

fn instant(ms: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::corrupt("booking time", format!("{ms} is out of range")))
}

fn booking_from(row: BookingRow) -> Result<Booking> {
    let (id, calendar, start, end, who, data, status, created_at) = row;
    let data = match serde_json::from_str(&data) {
        Ok(Value::Object(data)) => data,
        Ok(_) => return Err(StoreError::corrupt("booking data", "not an object")),
        Err(e) => return Err(StoreError::corrupt("booking data", e.to_string())),
    };
    let status = match status.as_str() {
        "booked" => BookingStatus::Booked,
        "cancelled" => BookingStatus::Cancelled,
        other => return Err(StoreError::corrupt("booking status", other.to_string())),
    };
    Ok(Booking {
        id,
        calendar,
        start: instant(start)?,
        end: instant(end)?,
        who,
        data,
        status,
        created_at: instant(created_at)?,
    })
}

fn calendar_not_found(alias: &str) -> StoreError {
    StoreError::NotFound {
        what: "calendar",
        id: format!("\"{}\"", alias.chars().take(80).collect::<String>()),
    }
}

/// Refuses an alias no backend should store.
pub fn check_calendar_alias(alias: &str) -> Result<()> {
    check_text("calendar alias", alias, MAX_CALENDAR_ALIAS_BYTES)?;
    if alias.trim() != alias || alias.chars().any(char::is_control) {
        return Err(StoreError::InvalidInput {
            what: "calendar alias",
            reason: "must not start or end with white space or contain control characters".into(),
        });
    }
    Ok(())
}

/// Refuses windows that cannot produce slots: each names its index and field.
pub fn check_windows(windows: &[Window]) -> Result<()> {
    let bad = |i: usize, field: &str, reason: &str| StoreError::InvalidInput {
        what: "availability",
        reason: format!("windows[{i}].{field}: {reason}"),
    };
    if windows.len() > MAX_WINDOWS {
        return Err(StoreError::InvalidInput {
            what: "availability",
            reason: format!("at most {MAX_WINDOWS} windows"),
        });
    }
    for (i, w) in windows.iter().enumerate() {
        if !(1..=7).contains(&w.weekday) {
            return Err(bad(i, "weekday", "expected 1 (Monday) to 7 (Sunday)"));
        }
        if w.start_minute >= 1440 {
            return Err(bad(i, "start", "expected a time of day before 24:00"));
        }
        if w.end_minute <= w.start_minute || w.end_minute > 1440 {
            return Err(bad(
                i,
                "end",
                "expected a time after the start, at most 24:00",
            ));
        }
        if w.slot_minutes == 0 || w.slot_minutes > w.end_minute - w.start_minute {
            return Err(bad(
                i,
                "slotMinutes",
                "expected at least 1 and at most the window's length",
            ));
        }
        if w.capacity == 0 {
            return Err(bad(i, "capacity", "expected at least 1"));
        }
        if windows[..i]
            .iter()
            .any(|o| o.weekday == w.weekday && o.start_minute == w.start_minute)
        {
            return Err(bad(
                i,
                "start",
                "another window opens at the same time that day",
            ));
        }
    }
    Ok(())
}

/// The slot of `windows` starting at `start`: its end and capacity.
fn slot_at(windows: &[Window], start: DateTime<Utc>) -> Option<(DateTime<Utc>, u32)> {
    let weekday = start.weekday().number_from_monday() as u8;
    let since_midnight = start.time().signed_duration_since(NaiveTime::MIN);
    if since_midnight.num_milliseconds() % 60_000 != 0 {
        return None;
    }
    let minute = since_midnight.num_minutes();
    windows.iter().find_map(|w| {
        let (open, close, len) = (
            i64::from(w.start_minute),
            i64::from(w.end_minute),
            i64::from(w.slot_minutes),
        );
        let fits = w.weekday == weekday
            && minute >= open
            && (minute - open) % len == 0
            && minute + len <= close;
        fits.then(|| (start + Duration::minutes(len), w.capacity))
    })
}

/// Every slot of `windows` starting in `[from, to)`, in order: `(start, end, capacity)`.
fn slots_between(
    windows: &[Window],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>, u32)> {
    let mut slots = Vec::new();
    let mut day = from.date_naive();
    while day <= to.date_naive() {
        let midnight = day.and_time(NaiveTime::MIN).and_utc();
        let weekday = day.weekday().number_from_monday() as u8;
        for w in windows.iter().filter(|w| w.weekday == weekday) {
            let mut minute = w.start_minute;
            while minute + w.slot_minutes <= w.end_minute {
                let start = midnight + Duration::minutes(i64::from(minute));
                if start >= from && start < to {
                    let end = start + Duration::minutes(i64::from(w.slot_minutes));
                    slots.push((start, end, w.capacity));
                }
                minute += w.slot_minutes;
            }
        }
        day = match day.succ_opt() {
            Some(next) => next,
            None => break,
        };
    }
    slots.sort_by_key(|slot| slot.0);
    slots.dedup_by_key(|slot| slot.0);
    slots
}

fn check_span(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<()> {
    if to <= from {
        return Err(StoreError::InvalidInput {
            what: "time range",
            reason: "to: expected a time after from".into(),
        });
    }
    if to - from > Duration::days(MAX_CALENDAR_SPAN_DAYS) {
        return Err(StoreError::InvalidInput {
            what: "time range",
            reason: format!("to: at most {MAX_CALENDAR_SPAN_DAYS} days after from"),
        });
    }
    Ok(())
}

type WindowRow = (i32, i32, i32, i32, i64);

fn window_from((weekday, start, end, slot, capacity): WindowRow) -> Window {
    Window {
        weekday: weekday.clamp(0, 7) as u8,
        start_minute: start.clamp(0, 1440) as u16,
        end_minute: end.clamp(0, 1440) as u16,
        slot_minutes: slot.clamp(1, 1440) as u16,
        capacity: capacity.clamp(0, i64::from(u32::MAX)) as u32,
    }
}

const WINDOW_COLUMNS: &str = "SELECT weekday, start_minute, end_minute, slot_minutes, capacity \
                              FROM booking_availability WHERE calendar = $1 \
                              ORDER BY weekday, start_minute";

impl Store {
    /// The calendar `alias`, created (titled by its alias, no icon) when it does not exist. A
    /// `title` or `icon` given replaces the stored one: the integrations entry is the truth.
    pub async fn ensure_calendar(
        &self,
        alias: &str,
        title: Option<&str>,
        icon: Option<&str>,
    ) -> Result<BookingCalendar> {
        check_calendar_alias(alias)?;
        if let Some(title) = title {
            check_text("calendar title", title, MAX_CALENDAR_ALIAS_BYTES)?;
        }
        if let Some(icon) = icon.filter(|i| !i.is_empty()) {
            check_text("calendar icon", icon, 2048)?;
        }
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO booking_calendars (alias, title, icon, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (alias) DO UPDATE SET \
                 title = COALESCE($5, booking_calendars.title), \
                 icon = COALESCE($6, booking_calendars.icon)",
            )
            .bind(alias)
            .bind(title.unwrap_or(alias))
            .bind(icon.unwrap_or(""))
            .bind(now_ms())
            .bind(title)
            .bind(icon)
            .execute(pool)
            .await?;
        });
        self.calendar(alias).await
    }

    /// The calendar `alias`; unknown: `NotFound`.
    pub async fn calendar(&self, alias: &str) -> Result<BookingCalendar> {
        if check_calendar_alias(alias).is_err() {
            return Err(calendar_not_found(alias));
        }
        let row: Option<(String, String, String)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT alias, title, icon FROM booking_calendars WHERE alias = $1")
                .bind(alias)
                .fetch_optional(pool)
                .await?
        });
        let (alias, title, icon) = row.ok_or_else(|| calendar_not_found(alias))?;
        Ok(BookingCalendar { alias, title, icon })
    }

    /// Replaces the availability of calendar `alias` with `windows` (bookings stay).
    pub async fn set_availability(&self, alias: &str, windows: &[Window]) -> Result<()> {
        check_windows(windows)?;
        self.calendar(alias).await?;
        on_pool!(self, pool => {
            let mut tx = begin_write(pool).await?;
            sqlx::query("DELETE FROM booking_availability WHERE calendar = $1")
                .bind(alias)
                .execute(&mut *tx)
                .await?;
            for w in windows {
                sqlx::query(
                    "INSERT INTO booking_availability \
                     (calendar, weekday, start_minute, end_minute, slot_minutes, capacity) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(alias)
                .bind(i32::from(w.weekday))
                .bind(i32::from(w.start_minute))
                .bind(i32::from(w.end_minute))
                .bind(i32::from(w.slot_minutes))
                .bind(i64::from(w.capacity))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The availability of calendar `alias`, by weekday and start.
    pub async fn availability(&self, alias: &str) -> Result<Vec<Window>> {
        self.calendar(alias).await?;
        let rows: Vec<WindowRow> = on_pool!(self, pool => {
            sqlx::query_as(WINDOW_COLUMNS).bind(alias).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(window_from).collect())
    }

    /// The slots of calendar `alias` starting in `[from, to)` that can take another booking.
    pub async fn free_slots(
        &self,
        alias: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<FreeSlot>> {
        check_span(from, to)?;
        let windows = self.availability(alias).await?;
        let booked: Vec<(i64, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT slot_start, COUNT(*) FROM booking_bookings \
                 WHERE calendar = $1 AND status = 'booked' AND slot_start >= $2 AND slot_start < $3 \
                 GROUP BY slot_start",
            )
            .bind(alias)
            .bind(from.timestamp_millis())
            .bind(to.timestamp_millis())
            .fetch_all(pool)
            .await?
        });
        let booked: std::collections::HashMap<i64, i64> = booked.into_iter().collect();
        Ok(slots_between(&windows, from, to)
            .into_iter()
            .filter_map(|(start, end, capacity)| {
                let taken = booked.get(&start.timestamp_millis()).copied().unwrap_or(0);
                let free = i64::from(capacity) - taken;
                (free > 0).then_some(FreeSlot {
                    start,
                    end,
                    capacity,
                    free: free as u32,
                })
            })
            .collect())
    }

    /// Books the slot of calendar `alias` starting at `start` for `who`, atomically (see the
    /// file's invariants). A start that is no slot: `InvalidInput`; a full slot: `Conflict`.
    pub async fn book(
        &self,
        alias: &str,
        start: DateTime<Utc>,
        who: &str,
        data: Map<String, Value>,
    ) -> Result<Booking> {
        check_text("booking who", who, MAX_WHO_BYTES)?;
        if check_calendar_alias(alias).is_err() {
            return Err(calendar_not_found(alias));
        }
        let data_text = serde_json::to_string(&data).map_err(|e| StoreError::InvalidInput {
            what: "booking data",
            reason: e.to_string(),
        })?;
        let id = new_id();
        let created_at = now_ms();
        let end = on_pool!(self, pool => {
            let mut tx = begin_write(pool).await?;
            let locked: Option<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT alias FROM booking_calendars WHERE alias = $1{}",
                for_update_in(&tx)
            )))
            .bind(alias)
            .fetch_optional(&mut *tx)
            .await?;
            if locked.is_none() {
                return Err(calendar_not_found(alias));
            }
            let windows: Vec<WindowRow> = sqlx::query_as(WINDOW_COLUMNS)
                .bind(alias)
                .fetch_all(&mut *tx)
                .await?;
            let windows: Vec<Window> = windows.into_iter().map(window_from).collect();
            let Some((end, capacity)) = slot_at(&windows, start) else {
                return Err(StoreError::InvalidInput {
                    what: "booking",
                    reason: format!(
                        "slot: {} is outside the availability of calendar \"{alias}\" \
                         (no slot starts then)",
                        iso(start)
                    ),
                });
            };
            let (taken,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM booking_bookings \
                 WHERE calendar = $1 AND slot_start = $2 AND status = 'booked'",
            )
            .bind(alias)
            .bind(start.timestamp_millis())
            .fetch_one(&mut *tx)
            .await?;
            if taken >= i64::from(capacity) {
                return Err(StoreError::Conflict {
                    what: "booking",
                    reason: format!(
                        "slot: {} of calendar \"{alias}\" is full ({capacity} of {capacity} booked)",
                        iso(start)
                    ),
                });
            }
            sqlx::query(
                "INSERT INTO booking_bookings \
                 (id, calendar, slot_start, slot_end, who, data, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'booked', $7)",
            )
            .bind(&id)
            .bind(alias)
            .bind(start.timestamp_millis())
            .bind(end.timestamp_millis())
            .bind(who)
            .bind(&data_text)
            .bind(created_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            end
        });
        Ok(Booking {
            id,
            calendar: alias.to_string(),
            start,
            end,
            who: who.to_string(),
            data,
            status: BookingStatus::Booked,
            created_at: instant(created_at)?,
        })
    }

    /// Cancels booking `id` of calendar `alias`, freeing its place. Unknown: `NotFound`;
    /// already cancelled: `Conflict`.
    pub async fn cancel_booking(&self, alias: &str, id: &str) -> Result<Booking> {
        self.calendar(alias).await?;
        let not_found = || StoreError::NotFound {
            what: "booking",
            id: format!("\"{}\"", id.chars().take(80).collect::<String>()),
        };
        let row: Option<BookingRow> = on_pool!(self, pool => {
            let mut tx = begin_write(pool).await?;
            let row: Option<BookingRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{BOOKING_COLUMNS} WHERE calendar = $1 AND id = $2{}",
                for_update_in(&tx)
            )))
            .bind(alias)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if row.as_ref().is_some_and(|r| r.6 == "booked") {
                sqlx::query("UPDATE booking_bookings SET status = 'cancelled' WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            row
        });
        let mut booking = booking_from(row.ok_or_else(not_found)?)?;
        if booking.status == BookingStatus::Cancelled {
            return Err(StoreError::Conflict {
                what: "booking",
                reason: format!("booking \"{id}\" is already cancelled"),
            });
        }
        booking.status = BookingStatus::Cancelled;
        Ok(booking)
    }

    /// The bookings of calendar `alias` whose slot starts in `[from, to)`, by start then
    /// creation; cancelled ones only when `include_cancelled`.
    pub async fn list_bookings(
        &self,
        alias: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        include_cancelled: bool,
    ) -> Result<Vec<Booking>> {
        check_span(from, to)?;
        self.calendar(alias).await?;
        let rows: Vec<BookingRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{BOOKING_COLUMNS} WHERE calendar = $1 AND slot_start >= $2 AND slot_start < $3 \
                 AND (status = 'booked' OR $4) ORDER BY slot_start, created_at, id"
            )))
            .bind(alias)
            .bind(from.timestamp_millis())
            .bind(to.timestamp_millis())
            .bind(include_cancelled)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(booking_from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(weekday: u8, start: u16, end: u16, slot: u16, capacity: u32) -> Window {
        Window {
            weekday,
            start_minute: start,
            end_minute: end,
            slot_minutes: slot,
            capacity,
        }
    }

    #[test]
    fn slots_are_cut_from_windows_and_must_fit() {
        // 2030-01-07 is a Monday.
        let windows = [window(1, 9 * 60, 10 * 60 + 45, 30, 2)];
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        assert_eq!(
            slot_at(&windows, at("2030-01-07T09:30:00Z")),
            Some((at("2030-01-07T10:00:00Z"), 2))
        );
        // 10:30 + 30 min passes the window's end; 09:15 is between slots; Tuesday has none.
        assert_eq!(slot_at(&windows, at("2030-01-07T10:30:00Z")), None);
        assert_eq!(slot_at(&windows, at("2030-01-07T09:15:00Z")), None);
        assert_eq!(slot_at(&windows, at("2030-01-08T09:00:00Z")), None);
        assert_eq!(slot_at(&windows, at("2030-01-07T09:00:30Z")), None);
        let slots = slots_between(
            &windows,
            at("2030-01-07T09:10:00Z"),
            at("2030-01-14T09:01:00Z"),
        );
        let starts: Vec<String> = slots.iter().map(|s| iso(s.0)).collect();
        assert_eq!(
            starts,
            [
                "2030-01-07T09:30:00Z",
                "2030-01-07T10:00:00Z",
                "2030-01-14T09:00:00Z"
            ]
        );
    }

    #[test]
    fn bad_windows_name_their_field() {
        let reason = |w: Window| match check_windows(&[w]) {
            Err(StoreError::InvalidInput { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason(window(0, 0, 60, 30, 1)).starts_with("windows[0].weekday"));
        assert!(reason(window(1, 60, 60, 30, 1)).starts_with("windows[0].end"));
        assert!(reason(window(1, 0, 60, 90, 1)).starts_with("windows[0].slotMinutes"));
        assert!(reason(window(1, 0, 60, 30, 0)).starts_with("windows[0].capacity"));
        assert!(check_windows(&[window(7, 0, 1440, 1440, 1)]).is_ok());
    }
}
