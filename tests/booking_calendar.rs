//! The built-in booking calendar (`src/store/calendars.rs`), on SQLite and (with
//! `SWITCHYARD_TEST_DATABASE_URL`) PostgreSQL:
//!
//! - `store_rules`: calendars created on first use and titled by the integrations entry,
//!   availability windows cut into slots, `free_slots` counting bookings, `book` refusing a
//!   start outside the availability, a full slot and an unknown calendar (naming the field),
//!   `cancel_booking` freeing the place, `list_bookings` with and without cancelled ones.
//! - `sixteen_concurrent_bookings_of_one_place`: 16 concurrent bookings of a one-capacity slot
//!   from two pools (like two processes) → exactly one succeeds, the others are told the slot
//!   is full, and the store holds one booking.

mod common;

use chrono::{DateTime, Utc};
use common::backends::{TestDb, each_backend};
use serde_json::{Map, json};
use switchyard::store::{BookingStatus, StoreError, Window, iso};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn data(value: serde_json::Value) -> Map<String, serde_json::Value> {
    value.as_object().unwrap().clone()
}

/// Mondays 09:00–11:00 UTC in 30-minute slots of two places; Wednesdays 14:00–15:00 in one
/// one-hour slot of one place. 2030-01-07 is a Monday.
fn week() -> Vec<Window> {
    vec![
        Window {
            weekday: 1,
            start_minute: 9 * 60,
            end_minute: 11 * 60,
            slot_minutes: 30,
            capacity: 2,
        },
        Window {
            weekday: 3,
            start_minute: 14 * 60,
            end_minute: 15 * 60,
            slot_minutes: 60,
            capacity: 1,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_rules() {
    each_backend(|db: TestDb| async move {
        let store = db.store;
        // Created on first use, titled by its alias; the integrations entry's title wins.
        let created = store.ensure_calendar("visits", None, None).await.unwrap();
        assert_eq!(created.title, "visits");
        let titled = store
            .ensure_calendar("visits", Some("Site visits"), Some("📅"))
            .await
            .unwrap();
        assert_eq!(titled.title, "Site visits");
        assert_eq!(titled.icon, "📅");
        let again = store.ensure_calendar("visits", None, None).await.unwrap();
        assert_eq!(again, titled, "a bare first use keeps the declared title");

        store.set_availability("visits", &week()).await.unwrap();
        assert_eq!(store.availability("visits").await.unwrap(), week());

        let from = at("2030-01-07T00:00:00Z");
        let to = at("2030-01-14T00:00:00Z");
        let free = store.free_slots("visits", from, to).await.unwrap();
        let starts: Vec<String> = free.iter().map(|s| iso(s.start)).collect();
        assert_eq!(
            starts,
            [
                "2030-01-07T09:00:00Z",
                "2030-01-07T09:30:00Z",
                "2030-01-07T10:00:00Z",
                "2030-01-07T10:30:00Z",
                "2030-01-09T14:00:00Z",
            ]
        );
        assert_eq!(free[0].free, 2);
        assert_eq!(iso(free[4].end), "2030-01-09T15:00:00Z");

        // Two places at 09:00: two bookings fill it, the third is refused.
        let ann = store
            .book(
                "visits",
                at("2030-01-07T09:00:00Z"),
                "ann@example.com",
                data(json!({"phone": "1"})),
            )
            .await
            .unwrap();
        assert_eq!(ann.status, BookingStatus::Booked);
        assert_eq!(iso(ann.end), "2030-01-07T09:30:00Z");
        let free = store.free_slots("visits", from, to).await.unwrap();
        assert_eq!(
            (iso(free[0].start).as_str(), free[0].free),
            ("2030-01-07T09:00:00Z", 1)
        );
        let bob = store
            .book("visits", at("2030-01-07T09:00:00Z"), "bob", Map::new())
            .await
            .unwrap();
        let free = store.free_slots("visits", from, to).await.unwrap();
        assert_eq!(iso(free[0].start), "2030-01-07T09:30:00Z", "09:00 is full");
        match store
            .book("visits", at("2030-01-07T09:00:00Z"), "cy", Map::new())
            .await
        {
            Err(StoreError::Conflict { reason, .. }) => {
                assert!(reason.starts_with("slot: 2030-01-07T09:00:00Z"), "{reason}");
                assert!(reason.contains("is full"), "{reason}");
            }
            other => panic!("expected a full slot, got {other:?}"),
        }

        // Outside the availability: between slots, past the window, another day.
        for start in [
            "2030-01-07T09:15:00Z",
            "2030-01-07T11:00:00Z",
            "2030-01-08T09:00:00Z",
        ] {
            match store.book("visits", at(start), "cy", Map::new()).await {
                Err(StoreError::InvalidInput { reason, .. }) => {
                    assert!(reason.starts_with("slot: "), "{reason}");
                    assert!(reason.contains("outside the availability"), "{reason}");
                }
                other => panic!("{start}: expected outside the availability, got {other:?}"),
            }
        }
        // Unknown calendar.
        match store
            .book("nowhere", at("2030-01-07T09:00:00Z"), "cy", Map::new())
            .await
        {
            Err(StoreError::NotFound { what, id }) => {
                assert_eq!((what, id.as_str()), ("calendar", "\"nowhere\""));
            }
            other => panic!("expected an unknown calendar, got {other:?}"),
        }
        assert!(matches!(
            store.free_slots("nowhere", from, to).await,
            Err(StoreError::NotFound { .. })
        ));
        // A backwards range names `to`.
        match store.free_slots("visits", to, from).await {
            Err(StoreError::InvalidInput { reason, .. }) => assert!(reason.starts_with("to:")),
            other => panic!("{other:?}"),
        }

        // Cancel frees the place; cancelling twice is refused; unknown ids are not found.
        let cancelled = store.cancel_booking("visits", &ann.id).await.unwrap();
        assert_eq!(cancelled.status, BookingStatus::Cancelled);
        assert_eq!(cancelled.data, data(json!({"phone": "1"})));
        assert!(matches!(
            store.cancel_booking("visits", &ann.id).await,
            Err(StoreError::Conflict { .. })
        ));
        assert!(matches!(
            store.cancel_booking("visits", "no-such-booking").await,
            Err(StoreError::NotFound {
                what: "booking",
                ..
            })
        ));
        let free = store.free_slots("visits", from, to).await.unwrap();
        assert_eq!(
            (iso(free[0].start).as_str(), free[0].free),
            ("2030-01-07T09:00:00Z", 1)
        );
        let cy = store
            .book("visits", at("2030-01-07T09:00:00Z"), "cy", Map::new())
            .await
            .unwrap();

        // List: live bookings by start then creation; cancelled ones on request.
        let live = store
            .list_bookings("visits", from, to, false)
            .await
            .unwrap();
        let ids: Vec<&str> = live.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, [bob.id.as_str(), cy.id.as_str()]);
        assert_eq!(live[0], bob);
        let all = store.list_bookings("visits", from, to, true).await.unwrap();
        assert_eq!(all.len(), 3);
        assert!(
            all.iter()
                .any(|b| b.id == ann.id && b.status == BookingStatus::Cancelled)
        );
        let none = store
            .list_bookings("visits", at("2030-01-08T00:00:00Z"), to, true)
            .await
            .unwrap();
        assert!(none.is_empty());

        // Availability that cannot make slots is refused, naming the window and field.
        let mut bad = week();
        bad[1].slot_minutes = 90;
        match store.set_availability("visits", &bad).await {
            Err(StoreError::InvalidInput { reason, .. }) => {
                assert!(reason.starts_with("windows[1].slotMinutes"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.availability("visits").await.unwrap(), week());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_bookings_of_one_place() {
    each_backend(|db: TestDb| async move {
        let other = db.another_store().await;
        let store = db.store.clone();
        store.ensure_calendar("desk", None, None).await.unwrap();
        store.set_availability("desk", &week()).await.unwrap();
        let slot = at("2030-01-09T14:00:00Z");
        let attempts: Vec<_> = (0..16)
            .map(|i| {
                let store = if i % 2 == 0 {
                    store.clone()
                } else {
                    other.clone()
                };
                tokio::spawn(async move {
                    store
                        .book("desk", slot, &format!("person {i}"), Map::new())
                        .await
                })
            })
            .collect();
        let mut booked = 0;
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(_) => booked += 1,
                Err(StoreError::Conflict { reason, .. }) => {
                    assert!(reason.contains("is full"), "{reason}")
                }
                Err(other) => panic!("expected success or a full slot, got {other:?}"),
            }
        }
        assert_eq!(booked, 1, "exactly one of 16 concurrent bookings succeeds");
        let listed = store
            .list_bookings("desk", slot, at("2030-01-10T00:00:00Z"), true)
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert!(
            store
                .free_slots("desk", slot, at("2030-01-10T00:00:00Z"))
                .await
                .unwrap()
                .is_empty()
        );
        other.close().await;
    })
    .await;
}
