-- The built-in booking calendar (the `calendar` app, `src/store/calendars.rs`): a calendar is
-- named by its alias (the integrations entry's, or created on first use); its availability is a
-- set of recurring weekly windows (ISO weekday 1 = Monday … 7, minutes after midnight UTC) cut
-- into slots of `slot_minutes`, each taking `capacity` bookings. A booking is one row per
-- person per slot (`slot_start` in milliseconds since the epoch, UTC). A booking runs in one
-- write transaction that locks the calendar's row (`SELECT … FOR UPDATE`), counts the slot's live bookings and inserts
-- only while they are under capacity, so concurrent bookings never overfill a slot.
-- migrations/sqlite/0017_booking_calendar.sql is the same change for SQLite.
CREATE TABLE booking_calendars (
    alias      TEXT    NOT NULL PRIMARY KEY,
    title      TEXT    NOT NULL,
    icon       TEXT    NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);

CREATE TABLE booking_availability (
    calendar     TEXT    NOT NULL REFERENCES booking_calendars (alias) ON DELETE CASCADE,
    weekday      INTEGER NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    start_minute INTEGER NOT NULL CHECK (start_minute BETWEEN 0 AND 1439),
    end_minute   INTEGER NOT NULL CHECK (end_minute BETWEEN 1 AND 1440),
    slot_minutes INTEGER NOT NULL CHECK (slot_minutes > 0),
    capacity     BIGINT  NOT NULL CHECK (capacity > 0),
    PRIMARY KEY (calendar, weekday, start_minute)
);

CREATE TABLE booking_bookings (
    id         TEXT    NOT NULL PRIMARY KEY,
    calendar   TEXT    NOT NULL REFERENCES booking_calendars (alias) ON DELETE CASCADE,
    slot_start BIGINT NOT NULL,
    slot_end   BIGINT NOT NULL,
    who        TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    status     TEXT    NOT NULL CHECK (status IN ('booked', 'cancelled')),
    created_at BIGINT NOT NULL
);

CREATE INDEX booking_bookings_slot ON booking_bookings (calendar, slot_start);
