//! The store's side of the console on both backends: sessions found by the hash of their id,
//! refused once expired, ended by sign-out; the scenario list's figures (latest status, runs
//! since a moment) and attached hooks, each in one statement.

mod common;

use common::backends::{TestDb, each_backend};
use switchyard::store::{ConsoleSession, ExecutionSource, NewExecution, StoreError, now_ms};

fn hash(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

#[tokio::test]
async fn sessions_are_found_by_hash_expire_and_end() {
    each_backend(|db: TestDb| async move {
        let store = db.store;
        let now = now_ms();
        let live = ConsoleSession {
            id_sha256: hash(1),
            csrf_token: "csrf-1".into(),
            created_at: now,
            expires_at: now + 60_000,
        };
        store.insert_console_session(&live).await.unwrap();
        assert_eq!(store.console_session(&hash(1)).await.unwrap(), Some(live));
        assert_eq!(store.console_session(&hash(2)).await.unwrap(), None);

        let expired = ConsoleSession {
            id_sha256: hash(3),
            csrf_token: "csrf-3".into(),
            created_at: now - 120_000,
            expires_at: now - 60_000,
        };
        store.insert_console_session(&expired).await.unwrap();
        assert_eq!(store.console_session(&hash(3)).await.unwrap(), None);

        assert!(store.delete_console_session(&hash(1)).await.unwrap());
        assert!(!store.delete_console_session(&hash(1)).await.unwrap());
        assert_eq!(store.console_session(&hash(1)).await.unwrap(), None);

        // Only a SHA-256 in hex is a session key.
        let err = store.console_session("not-a-hash").await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput { .. }), "{err}");
    })
    .await;
}

#[tokio::test]
async fn the_list_figures_come_per_scenario() {
    each_backend(|db: TestDb| async move {
        let store = db.store;
        let blueprint = r#"{"name": "s", "flow": []}"#;
        let (busy, version) = store.create_scenario("busy", blueprint).await.unwrap();
        let (idle, _) = store.create_scenario("idle", blueprint).await.unwrap();
        let since = now_ms();
        for _ in 0..3 {
            store
                .create_execution(NewExecution {
                    scenario_id: &busy,
                    version,
                    source: ExecutionSource::Manual,
                    payload: None,
                })
                .await
                .unwrap();
        }
        let activity = store.scenario_activity(since).await.unwrap();
        assert_eq!(activity[&busy].runs_since, 3);
        assert_eq!(activity[&busy].last_status.as_deref(), Some("queued"));
        assert!(!activity.contains_key(&idle));
        let later = store.scenario_activity(now_ms() + 60_000).await.unwrap();
        assert_eq!(later[&busy].runs_since, 0);

        let hook = store.ensure_hook(&busy, 1).await.unwrap();
        let hooks = store.attached_hooks().await.unwrap();
        assert_eq!(hooks[&busy], vec![(1, hook)]);
        assert!(!hooks.contains_key(&idle));
        store.retire_hooks(&busy, &[]).await.unwrap();
        assert!(store.attached_hooks().await.unwrap().is_empty());
    })
    .await;
}
