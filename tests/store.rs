//! The durable store (`switchyard::store`), one suite run on every available backend: a fresh
//! SQLite file in a temporary directory always, and PostgreSQL when
//! `SWITCHYARD_TEST_DATABASE_URL` is set (`eval "$(.ci/postgres.sh)"`), each test in its own
//! freshly created database so tests run in parallel. Concurrency tests race separate pools
//! (as separate processes would) against one database.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::backends::{TestDb, each_backend, with_database};

use serde_json::{Value, json};
use switchyard::store::{
    Backend, Delivery, ExecutionCursor, ExecutionFilter, ExecutionFinish, ExecutionOutcome,
    ExecutionSource, ExecutionStatus, FinalStatus, IncompleteStatus, ModuleData, ModuleEntry,
    NewDelivery, NewExecution, NewIncomplete, SQLITE_FILE_NAME, Store, StoreError, StorePool,
    TriggerStateChange,
};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A blueprint with formatting and key order that must survive byte for byte.
const BLUEPRINT_V1: &str = "{\n  \"name\": \"Orders\",\n  \"flow\": [{\"id\": 1, \"module\": \
     \"gateway:CustomWebHook\"}],\n  \"metadata\": {\"b\": 1, \"a\": 2}\n}";
const BLUEPRINT_V2: &str = r#"{"name":"Orders v2","flow":[{"id":1,"module":"gateway:CustomWebHook"},{"id":2,"module":"json:ParseJSON"}]}"#;

async fn scenario(store: &Store, name: &str) -> String {
    store
        .create_scenario(name, BLUEPRINT_V1)
        .await
        .expect("create scenario")
        .0
}

async fn execution(store: &Store, scenario_id: &str, payload: Value) -> String {
    store
        .create_execution(NewExecution {
            scenario_id,
            version: 1,
            source: ExecutionSource::Manual,
            payload: Some(&payload),
        })
        .await
        .expect("create execution")
}

fn outcome(status: FinalStatus, report: &Value) -> ExecutionOutcome<'_> {
    ExecutionOutcome {
        status,
        operations: 3,
        cycles: 1,
        report: Some(report),
        error: None,
        trigger: None,
    }
}

async fn finish(store: &Store, id: &str, status: FinalStatus) -> bool {
    let report = json!({"status": status.as_str()});
    store
        .finish_execution(id, outcome(status, &report))
        .await
        .expect("finish")
}

fn all_executions() -> ExecutionFilter {
    ExecutionFilter {
        limit: ExecutionFilter::MAX_LIMIT,
        ..ExecutionFilter::default()
    }
}

async fn count(store: &Store) -> usize {
    store
        .list_executions(&all_executions())
        .await
        .unwrap()
        .len()
}

const MISSING: &str = "0123456789abcdef0123456789abcdef";

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Opening and migrating
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_applies_settings_and_migrations_once() {
    each_backend(|db| async move {
        let reopened = db.another_store().await;
        assert_eq!(reopened.backend(), db.backend);
        assert_eq!(db.store.backend(), db.backend);
        match db.backend {
            Backend::Sqlite => {
                let pool = db.store.sqlite_pool().expect("sqlite pool");
                assert!(db.store.postgres_pool().is_none());
                let mut conn = pool.acquire().await.unwrap();
                for (pragma, expected) in [
                    ("journal_mode", "wal"),
                    ("auto_vacuum", "2"),
                    ("foreign_keys", "1"),
                    ("synchronous", "2"),
                    ("busy_timeout", "5000"),
                ] {
                    use sqlx::Row;
                    let row = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA {pragma}")))
                        .fetch_one(&mut *conn)
                        .await
                        .unwrap();
                    let got = match row.try_get::<String, _>(0) {
                        Ok(text) => text.to_lowercase(),
                        Err(_) => row.try_get::<i64, _>(0).unwrap().to_string(),
                    };
                    assert_eq!(got, expected, "PRAGMA {pragma}");
                }
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%migrations'",
                )
                .fetch_all(&mut *conn)
                .await
                .unwrap();
                assert_eq!(tables, vec!["_switchyard_migrations".to_string()]);
                drop(conn); // the pool's only connection
                let file = db.sqlite_file().unwrap();
                assert!(file.exists(), "{file:?}");
                // `connect` takes a sqlite:// URL to the same file.
                let url = format!("sqlite://{}", file.display());
                let by_url = Store::connect(&url).await.expect("connect sqlite url");
                let (id, _) = by_url.create_scenario("via url", BLUEPRINT_V1).await.unwrap();
                assert_eq!(db.store.get_scenario(&id).await.unwrap().name, "via url");
            }
            Backend::Postgres => {
                let pool = db.store.postgres_pool().expect("postgres pool");
                assert!(db.store.sqlite_pool().is_none());
                let applied: Vec<i64> =
                    sqlx::query_scalar("SELECT version FROM _switchyard_migrations")
                        .fetch_all(pool)
                        .await
                        .unwrap();
                // Versions are the files' numeric prefixes (numbers taken by work on other
                // branches leave gaps until it lands).
                let mut versions: Vec<i64> = std::fs::read_dir(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/migrations/postgres"
                ))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "sql"))
                .map(|p| {
                    let name = p.file_name().unwrap().to_string_lossy().into_owned();
                    name.split('_').next().unwrap().parse().unwrap()
                })
                .collect();
                versions.sort_unstable();
                assert_eq!(applied, versions, "each migration once");
            }
        }
        assert!(format!("{:?}", db.store).contains(&format!("{:?}", db.backend)));
    })
    .await;
}

/// A database upgraded from the apalis-backed queue loses apalis's tables and migration
/// book (migration 0013: the queue is the executions table now) and keeps everything else;
/// a queued execution left behind is still queued, so no job is lost with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_drops_the_old_job_tables_and_keeps_queued_executions() {
    each_backend(|db| async move {
        let (id, _) = db
            .store
            .create_scenario("before", BLUEPRINT_V1)
            .await
            .unwrap();
        let payload = json!({"n": 1});
        let queued = db
            .store
            .create_execution(NewExecution {
                scenario_id: &id,
                version: 1,
                source: ExecutionSource::Manual,
                payload: Some(&payload),
            })
            .await
            .unwrap();
        // The tables apalis kept, as a database from before 0013 has them, and 0013 not
        // yet applied.
        let (old_tables, count_old, tables): (&[&str], &str, i64) = match db.store.pool() {
            switchyard::store::StorePool::Sqlite(_) => (
                &["CREATE TABLE Jobs (id TEXT)", "CREATE TABLE Workers (id TEXT)",
                  "CREATE TABLE _sqlx_migrations (version BIGINT)"],
                "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('Jobs', 'Workers', '_sqlx_migrations')",
                3,
            ),
            switchyard::store::StorePool::Postgres(_) => (
                &["CREATE SCHEMA apalis", "CREATE TABLE apalis.jobs (id TEXT)",
                  "CREATE TABLE _sqlx_migrations (version BIGINT)"],
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = 'apalis' OR table_name = '_sqlx_migrations'",
                2,
            ),
        };
        let mut statements: Vec<&str> = old_tables.to_vec();
        statements.push("DELETE FROM _switchyard_migrations WHERE version = 13");
        for sql in &statements {
            execute(&db.store, sql).await;
        }
        assert_eq!(count_rows(&db.store, count_old).await, tables);

        let reopened = db.another_store().await;
        assert_eq!(count_rows(&reopened, count_old).await, 0, "the old tables are gone");
        assert_eq!(reopened.get_scenario(&id).await.unwrap().name, "before");
        assert_eq!(
            reopened.runnable_executions(10, 0).await.unwrap(),
            vec![queued],
            "the queued execution is still the queue's"
        );
        reopened
            .create_scenario("after", BLUEPRINT_V1)
            .await
            .unwrap();
        assert_eq!(db.store.list_scenarios().await.unwrap().len(), 2);
    })
    .await;
}

async fn execute(store: &switchyard::store::Store, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match store.pool() {
        switchyard::store::StorePool::Sqlite(pool) => {
            sqlx::raw_sql(sql).execute(pool).await.unwrap();
        }
        switchyard::store::StorePool::Postgres(pool) => {
            sqlx::raw_sql(sql).execute(pool).await.unwrap();
        }
    }
}

async fn count_rows(store: &switchyard::store::Store, sql: &str) -> i64 {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match store.pool() {
        switchyard::store::StorePool::Sqlite(pool) => {
            sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
        }
        switchyard::store::StorePool::Postgres(pool) => {
            sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
        }
    }
}

#[tokio::test]
async fn an_sqlite_file_without_incremental_vacuum_is_converted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(SQLITE_FILE_NAME);
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::query("CREATE TABLE other_tool (x INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO other_tool VALUES (7)")
            .execute(&pool)
            .await
            .unwrap();
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(mode, 0, "created without auto_vacuum");
        pool.close().await;
    }
    let store = Store::open_sqlite(dir.path()).await.unwrap();
    let pool = store.sqlite_pool().unwrap();
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(mode, 2, "converted to INCREMENTAL");
    let x: i64 = sqlx::query_scalar("SELECT x FROM other_tool")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(x, 7, "existing data kept");
    store.create_scenario("works", BLUEPRINT_V1).await.unwrap();
}

#[tokio::test]
async fn connect_rejects_bad_urls_without_echoing_them() {
    for url in ["mysql://u:hunter2@h/db", "hunter2", "sqlite::memory:"] {
        let err = Store::connect(url).await.unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(
            matches!(
                err,
                StoreError::UnsupportedUrl { .. } | StoreError::InvalidInput { .. }
            ),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios and hooks
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_keep_every_version() {
    each_backend(|db| async move {
        let s = &db.store;
        let (id, version) = s.create_scenario("Orders", BLUEPRINT_V1).await.unwrap();
        assert_eq!(version, 1);
        assert_eq!(id.len(), 32);
        let row = s.get_scenario(&id).await.unwrap();
        assert_eq!(
            (row.name.as_str(), row.version, row.active),
            ("Orders", 1, false)
        );

        let v2 = s.update_scenario(&id, BLUEPRINT_V2).await.unwrap();
        assert_eq!(v2, 2);
        assert_eq!(s.get_scenario(&id).await.unwrap().version, 2);
        // The old version is kept byte for byte, the new one is current.
        assert_eq!(s.get_version(&id, 1).await.unwrap().blueprint, BLUEPRINT_V1);
        assert_eq!(s.get_version(&id, 2).await.unwrap().blueprint, BLUEPRINT_V2);
        let versions: Vec<u32> = s
            .list_versions(&id)
            .await
            .unwrap()
            .iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(versions, vec![1, 2]);
        assert_not_found(s.get_version(&id, 3).await);

        s.rename_scenario(&id, "Orders (EU)").await.unwrap();
        s.set_active(&id, true).await.unwrap();
        let row = s.get_scenario(&id).await.unwrap();
        assert_eq!((row.name.as_str(), row.active), ("Orders (EU)", true));
        assert!(row.updated_at >= row.created_at);

        let (other, _) = s.create_scenario("Alerts", BLUEPRINT_V1).await.unwrap();
        let names: Vec<String> = s
            .list_scenarios()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, vec!["Alerts", "Orders (EU)"]);

        s.delete_scenario(&other).await.unwrap();
        assert_not_found(s.get_scenario(&other).await);
        assert_not_found(s.delete_scenario(&other).await);
        assert_eq!(s.list_scenarios().await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_input_is_checked_the_same_everywhere() {
    each_backend(|db| async move {
        let s = &db.store;
        for (name, blueprint) in [
            ("", BLUEPRINT_V1),
            ("nul\0name", BLUEPRINT_V1),
            ("ok", "{not json"),
            ("ok", ""),
        ] {
            let err = s.create_scenario(name, blueprint).await.unwrap_err();
            assert!(matches!(err, StoreError::InvalidInput { .. }), "{err}");
        }
        let (id, _) = s.create_scenario("ok", BLUEPRINT_V1).await.unwrap();
        let err = s.update_scenario(&id, "[1,").await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput { .. }), "{err}");
        assert_eq!(s.get_scenario(&id).await.unwrap().version, 1);

        for missing in [MISSING, "not-an-id", "a\0b", ""] {
            assert_not_found(s.get_scenario(missing).await);
            assert_not_found(s.update_scenario(missing, BLUEPRINT_V2).await);
            assert_not_found(s.set_active(missing, true).await);
            assert_not_found(s.rename_scenario(missing, "x").await);
            assert!(s.list_versions(missing).await.unwrap().is_empty());
        }
        let err = s.get_scenario("a\0b").await.unwrap_err();
        assert!(!err.to_string().contains('\0'), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_keep_their_id_and_follow_their_scenario() {
    each_backend(|db| async move {
        let s = &db.store;
        let id = scenario(s, "Hooked").await;
        let hook = s.ensure_hook(&id, 1).await.unwrap();
        assert_eq!(hook.len(), 64);
        assert!(hook.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(s.ensure_hook(&id, 1).await.unwrap(), hook, "idempotent");

        // Inactive scenario: the hook exists but does not accept deliveries.
        let row = s.get_hook(&hook).await.unwrap().expect("hook");
        assert_eq!((row.module_id, row.attached, row.active), (1, true, false));
        assert_eq!(row.scenario_id, id);

        s.set_active(&id, true).await.unwrap();
        assert!(s.get_hook(&hook).await.unwrap().unwrap().active);

        // Editing keeps the URL.
        s.update_scenario(&id, BLUEPRINT_V2).await.unwrap();
        assert_eq!(s.ensure_hook(&id, 1).await.unwrap(), hook);
        let row = s.get_hook(&hook).await.unwrap().unwrap();
        assert_eq!(row.scenario_version, 2);
        let second = s.ensure_hook(&id, 2).await.unwrap();
        assert_ne!(second, hook);
        let modules: Vec<u32> = s
            .hooks_for(&id)
            .await
            .unwrap()
            .iter()
            .map(|h| h.module_id)
            .collect();
        assert_eq!(modules, vec![1, 2]);

        // Module 2 leaves the scenario; when it comes back it has the same hook.
        assert_eq!(s.retire_hooks(&id, &[1]).await.unwrap(), 1);
        let row = s.get_hook(&second).await.unwrap().unwrap();
        assert_eq!((row.attached, row.active), (false, false));
        assert_eq!(s.retire_hooks(&id, &[1]).await.unwrap(), 0);
        assert_eq!(s.ensure_hook(&id, 2).await.unwrap(), second);
        assert!(s.get_hook(&second).await.unwrap().unwrap().active);

        // Hooks go inactive with their scenario.
        s.set_active(&id, false).await.unwrap();
        for h in s.hooks_for(&id).await.unwrap() {
            assert!(h.attached && !h.active, "{h:?}");
        }

        assert!(
            s.get_hook(&switchyard::store::new_id())
                .await
                .unwrap()
                .is_none()
        );
        assert!(s.get_hook("../etc").await.unwrap().is_none());
        assert_not_found(s.ensure_hook(MISSING, 1).await);

        s.delete_scenario(&id).await.unwrap();
        assert!(s.get_hook(&hook).await.unwrap().is_none());
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Executions
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_lifecycle_claims_and_finishes_once() {
    each_backend(|db| async move {
        let s = &db.store;
        let sc = scenario(s, "Life").await;
        let payload = json!({"order": 42, "lines": [1, 2]});
        let id = execution(s, &sc, payload.clone()).await;
        let e = s.get_execution(&id).await.unwrap();
        assert_eq!(e.status, ExecutionStatus::Queued);
        assert_eq!(e.source, ExecutionSource::Manual);
        assert_eq!(e.payload, Some(payload));
        assert_eq!((e.attempt, e.version), (0, 1));
        assert!(e.started_at.is_none() && e.finished_at.is_none());

        let claimed = s
            .claim_execution(&id, "worker-a", 3)
            .await
            .unwrap()
            .expect("claim");
        assert_eq!(claimed.status, ExecutionStatus::Running);
        assert_eq!(claimed.attempt, 1);
        assert_eq!(claimed.worker_id.as_deref(), Some("worker-a"));
        assert!(claimed.started_at.is_some() && claimed.heartbeat_at.is_some());
        let out = json!({"x": 1});
        s.append_module_data(
            &id,
            &[ModuleEntry {
                module_id: 1,
                output: &out,
            }],
            1 << 20,
        )
        .await
        .unwrap();
        assert!(s.heartbeat_execution(&id, "worker-a").await.unwrap());

        // worker-a dies; the queue re-delivers to worker-b, which starts over.
        let again = s
            .claim_execution(&id, "worker-b", 3)
            .await
            .unwrap()
            .expect("re-claim");
        assert_eq!((again.status, again.attempt), (ExecutionStatus::Running, 2));
        assert!(
            s.module_data(&id).await.unwrap().is_empty(),
            "lost attempt's data dropped"
        );
        assert!(!s.heartbeat_execution(&id, "worker-a").await.unwrap());
        assert!(s.heartbeat_execution(&id, "worker-b").await.unwrap());

        let report = json!({"status": "success", "log": []});
        let done = ExecutionOutcome {
            status: FinalStatus::Success,
            operations: 7,
            cycles: 2,
            report: Some(&report),
            error: None,
            trigger: None,
        };
        assert!(s.finish_execution(&id, done).await.unwrap());
        // A second finish (a zombie worker, a retry) changes nothing.
        let late_error = json!({"name": "RuntimeError", "message": "late"});
        let late = ExecutionOutcome {
            status: FinalStatus::Error,
            operations: 1,
            cycles: 1,
            report: None,
            error: Some(&late_error),
            trigger: None,
        };
        assert!(!s.finish_execution(&id, late).await.unwrap());
        assert!(!finish(s, &id, FinalStatus::Incomplete).await);
        let e = s.get_execution(&id).await.unwrap();
        assert_eq!(e.status, ExecutionStatus::Success);
        assert_eq!((e.operations, e.cycles), (7, 2));
        assert_eq!(e.report, Some(report));
        assert_eq!(e.error, None);
        assert!(e.finished_at.is_some());
        // Finished executions are not claimed again, nor kept alive.
        assert!(
            s.claim_execution(&id, "worker-c", 3)
                .await
                .unwrap()
                .is_none()
        );
        assert!(!s.heartbeat_execution(&id, "worker-b").await.unwrap());
        assert_eq!(s.get_execution(&id).await.unwrap().attempt, 2);

        // A queued execution can be finished directly (e.g. cancelled with an error).
        let q = execution(s, &sc, json!(null)).await;
        assert!(finish(s, &q, FinalStatus::Error).await);
        assert_eq!(
            s.get_execution(&q).await.unwrap().status,
            ExecutionStatus::Error
        );

        assert_not_found(s.get_execution(MISSING).await);
        assert_not_found(s.claim_execution(MISSING, "w", 3).await);
        assert_not_found(
            s.finish_execution(MISSING, outcome(FinalStatus::Success, &json!({})))
                .await,
        );
        assert_not_found(
            s.create_execution(NewExecution {
                scenario_id: &sc,
                version: 9,
                source: ExecutionSource::Manual,
                payload: None,
            })
            .await,
        );
        let err = s.claim_execution(&q, "", 3).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput { .. }), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_finishers_set_one_terminal_status() {
    each_backend(|db| async move {
        let other = db.another_store().await;
        let sc = scenario(&db.store, "Race").await;
        for round in 0..10 {
            let id = execution(&db.store, &sc, json!({"round": round})).await;
            db.store
                .claim_execution(&id, "w", 3)
                .await
                .unwrap()
                .unwrap();
            let statuses = [
                FinalStatus::Success,
                FinalStatus::Error,
                FinalStatus::Incomplete,
            ];
            let mut tasks = Vec::new();
            for (i, status) in statuses.into_iter().cycle().take(6).enumerate() {
                let store = if i % 2 == 0 {
                    db.store.clone()
                } else {
                    other.clone()
                };
                let id = id.clone();
                tasks.push(tokio::spawn(async move {
                    (status, finish(&store, &id, status).await)
                }));
            }
            let mut winners = Vec::new();
            for t in tasks {
                let (status, won) = t.await.unwrap();
                if won {
                    winners.push(status);
                }
            }
            assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
            let stored = db.store.get_execution(&id).await.unwrap();
            assert_eq!(stored.status, ExecutionStatus::from(winners[0]));
            assert_eq!(stored.report, Some(json!({"status": winners[0].as_str()})));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_finishes_finishes_each_open_execution_once_with_its_data() {
    each_backend(|db| async move {
        let s = &db.store;
        let sc = scenario(s, "Batch").await;
        let mut ids = Vec::new();
        for n in 0..150 {
            ids.push(execution(s, &sc, json!({"n": n})).await);
        }
        let done_before = ids[3].clone();
        assert!(finish(s, &done_before, FinalStatus::Error).await);
        // Each execution gets an output per module, some more than others; the batch is
        // larger than one UPDATE statement takes.
        let outputs: Vec<Vec<Value>> = (0..ids.len())
            .map(|n| (0..(n % 3 + 1)).map(|m| json!({"n": n, "m": m})).collect())
            .collect();
        let entries: Vec<Vec<ModuleEntry<'_>>> = outputs
            .iter()
            .map(|o| {
                o.iter()
                    .enumerate()
                    .map(|(m, output)| ModuleEntry {
                        module_id: m as u32 + 1,
                        output,
                    })
                    .collect()
            })
            .collect();
        let data: Vec<ModuleData> = entries
            .iter()
            .map(|e| ModuleData::prepare(e, 10_000).unwrap())
            .collect();
        let no_data = ModuleData::default();
        let reports: Vec<Value> = (0..ids.len()).map(|n| json!({"report": n})).collect();
        let mut batch: Vec<ExecutionFinish<'_>> = ids
            .iter()
            .enumerate()
            .map(|(n, id)| ExecutionFinish {
                id,
                outcome: outcome(FinalStatus::Success, &reports[n]),
                module_data: &data[n],
            })
            .collect();
        // Named twice: the second entry finishes nothing. Unknown and malformed ids neither.
        batch.push(ExecutionFinish {
            id: &ids[0],
            outcome: outcome(FinalStatus::Error, &reports[0]),
            module_data: &data[0],
        });
        let unknown = "0123456789abcdef0123456789abcdef".to_string();
        batch.push(ExecutionFinish {
            id: &unknown,
            outcome: outcome(FinalStatus::Success, &reports[0]),
            module_data: &no_data,
        });
        batch.push(ExecutionFinish {
            id: "not an id",
            outcome: outcome(FinalStatus::Success, &reports[0]),
            module_data: &no_data,
        });
        let mut tx = s.begin_write().await.unwrap();
        let finished = tx.finish_executions(&batch).await.unwrap();
        tx.commit().await.unwrap();

        let expected: Vec<bool> = (0..batch.len())
            .map(|slot| slot < ids.len() && slot != 3)
            .collect();
        assert_eq!(finished, expected);
        for (n, id) in ids.iter().enumerate() {
            let stored = s.get_execution(id).await.unwrap();
            let data = s.module_data(id).await.unwrap();
            if n == 3 {
                assert_eq!(stored.status, ExecutionStatus::Error, "never overwritten");
                assert!(data.is_empty());
                continue;
            }
            assert_eq!(stored.status, ExecutionStatus::Success);
            assert_eq!(stored.report, Some(reports[n].clone()));
            assert!(stored.finished_at.is_some());
            let read: Vec<(u32, u32, Value)> = data
                .into_iter()
                .map(|r| (r.seq, r.module_id, r.output))
                .collect();
            let wanted: Vec<(u32, u32, Value)> = outputs[n]
                .iter()
                .enumerate()
                .map(|(m, o)| (m as u32, m as u32 + 1, o.clone()))
                .collect();
            assert_eq!(read, wanted, "execution {n}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_list_newest_first_with_filters_and_cursor() {
    each_backend(|db| async move {
        let s = &db.store;
        let a = scenario(s, "A").await;
        let b = scenario(s, "B").await;
        let mut ids = Vec::new();
        for i in 0..9 {
            let sc = if i % 3 == 0 { &b } else { &a };
            let id = execution(s, sc, json!({"i": i})).await;
            if i % 2 == 0 {
                finish(s, &id, FinalStatus::Success).await;
            }
            ids.push(id);
            if i % 4 == 0 {
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
        // Expected order: newest first by (created_at, id).
        let mut expected = Vec::new();
        for id in &ids {
            let e = s.get_execution(id).await.unwrap();
            expected.push((e.created_at, e.id));
        }
        expected.sort();
        expected.reverse();
        let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();

        let all = s.list_executions(&all_executions()).await.unwrap();
        let listed: Vec<String> = all.iter().map(|e| e.id.clone()).collect();
        assert_eq!(listed, expected);

        // Pages of 4 through the cursor, as an API client would (via its text form).
        let mut paged = Vec::new();
        let mut before: Option<ExecutionCursor> = None;
        loop {
            let page = s
                .list_executions(&ExecutionFilter {
                    limit: 4,
                    before: before.clone(),
                    ..ExecutionFilter::default()
                })
                .await
                .unwrap();
            assert!(page.len() <= 4);
            let Some(last) = page.last() else { break };
            before = Some(last.cursor().to_string().parse().unwrap());
            paged.extend(page.iter().map(|e| e.id.clone()));
        }
        assert_eq!(paged, expected);

        let only_b = s
            .list_executions(&ExecutionFilter {
                scenario_id: Some(b.clone()),
                ..all_executions()
            })
            .await
            .unwrap();
        assert_eq!(only_b.len(), 3);
        assert!(only_b.iter().all(|e| e.scenario_id == b));

        let queued_a = s
            .list_executions(&ExecutionFilter {
                scenario_id: Some(a.clone()),
                status: Some(ExecutionStatus::Queued),
                ..all_executions()
            })
            .await
            .unwrap();
        let want: HashSet<&String> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0 && i % 2 == 1)
            .map(|(_, id)| id)
            .collect();
        let got: HashSet<&String> = queued_a.iter().map(|e| &e.id).collect();
        assert_eq!(got, want);

        let none = s
            .list_executions(&ExecutionFilter {
                scenario_id: Some("nope".into()),
                ..all_executions()
            })
            .await
            .unwrap();
        assert!(none.is_empty());
        // limit 0 means the default page size.
        let default_page = s
            .list_executions(&ExecutionFilter {
                limit: 0,
                ..ExecutionFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(default_page.len(), 9);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runnable_executions_are_found_for_the_workers() {
    each_backend(|db| async move {
        let s = &db.store;
        let sc = scenario(s, "Stale").await;
        let queued = execution(s, &sc, json!(1)).await;
        let running = execution(s, &sc, json!(2)).await;
        s.claim_execution(&running, "w", 3).await.unwrap().unwrap();
        let done = execution(s, &sc, json!(3)).await;
        finish(s, &done, FinalStatus::Success).await;

        let now = switchyard::store::now_ms();
        // The running one's worker is alive: only the queued one.
        assert_eq!(
            s.runnable_executions(10, now - 60_000).await.unwrap(),
            vec![queued.clone()]
        );
        // Silent: it comes first; the finished one never.
        assert_eq!(
            s.runnable_executions(10, now + 60_000).await.unwrap(),
            vec![running.clone(), queued.clone()]
        );
        assert_eq!(
            s.runnable_executions(1, now + 60_000).await.unwrap(),
            vec![running]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_data_is_appended_in_order_and_capped() {
    each_backend(|db| async move {
        let s = &db.store;
        let sc = scenario(s, "Data").await;
        let id = execution(s, &sc, json!({})).await;
        let small = json!({"ok": true});
        let big = json!({"text": "x".repeat(500)});
        let big_len = serde_json::to_string(&big).unwrap().len();
        let truncated = s
            .append_module_data(
                &id,
                &[
                    ModuleEntry {
                        module_id: 1,
                        output: &small,
                    },
                    ModuleEntry {
                        module_id: 2,
                        output: &big,
                    },
                ],
                100,
            )
            .await
            .unwrap();
        assert_eq!(truncated, 1);
        let mut deep = json!(0);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        let nul = json!({"s": "a\u{0}b"});
        let truncated = s
            .append_module_data(
                &id,
                &[
                    ModuleEntry {
                        module_id: 3,
                        output: &deep,
                    },
                    ModuleEntry {
                        module_id: 1,
                        output: &nul,
                    },
                ],
                1 << 20,
            )
            .await
            .unwrap();
        assert_eq!(truncated, 1);
        let data = s.module_data(&id).await.unwrap();
        let seqs: Vec<u32> = data.iter().map(|d| d.seq).collect();
        let modules: Vec<u32> = data.iter().map(|d| d.module_id).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3]);
        assert_eq!(modules, vec![1, 2, 3, 1]);
        assert_eq!((data[0].output.clone(), data[0].truncated), (small, false));
        assert_eq!(
            data[1].output,
            json!({"__truncated__": true, "bytes": big_len})
        );
        assert!(data[1].truncated);
        assert!(data[2].truncated, "too deep to read back");
        assert_eq!(data[2].output["__truncated__"], json!(true));
        assert_eq!(data[3].output, json!({"s": "a\u{FFFD}b"}));
        assert!(!data[3].truncated);

        // Exactly at the cap is kept.
        let exact = json!({"t": "y".repeat(20)});
        let exact_len = serde_json::to_string(&exact).unwrap().len();
        let t = s
            .append_module_data(
                &id,
                &[ModuleEntry {
                    module_id: 4,
                    output: &exact,
                }],
                exact_len,
            )
            .await
            .unwrap();
        assert_eq!(t, 0);
        assert_eq!(s.module_data(&id).await.unwrap()[4].output, exact);

        // Many entries in one call (several INSERT statements).
        let many: Vec<Value> = (0..450).map(|i| json!({"n": i})).collect();
        let entries: Vec<ModuleEntry> = many
            .iter()
            .map(|o| ModuleEntry {
                module_id: 9,
                output: o,
            })
            .collect();
        s.append_module_data(&id, &entries, 1000).await.unwrap();
        let data = s.module_data(&id).await.unwrap();
        assert_eq!(data.len(), 455);
        assert_eq!(data[454].output, json!({"n": 449}));
        assert_eq!(data[454].seq, 454);

        assert_not_found(
            s.append_module_data(
                MISSING,
                &[ModuleEntry {
                    module_id: 1,
                    output: &json!(1),
                }],
                10,
            )
            .await,
        );
        assert!(s.module_data(MISSING).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_documents_read_back_the_same_on_every_backend() {
    each_backend(|db| async move {
        let s = &db.store;
        let sc = scenario(s, "Json").await;
        let payload = json!({
            "z": 1, "a": [1.5, -2, 12345678901234_i64, true, null],
            "nested": {"k": "ünïcödé ✓", "nul": "x\u{0}y", "esc": "\\u0000 \"q\""},
            "k\u{0}ey": 1
        });
        let id = execution(s, &sc, payload).await;
        let stored = s.get_execution(&id).await.unwrap().payload.unwrap();
        assert_eq!(
            stored,
            json!({
                "z": 1, "a": [1.5, -2, 12345678901234_i64, true, null],
                "nested": {"k": "ünïcödé ✓", "nul": "x\u{FFFD}y", "esc": "\\u0000 \"q\""},
                "k\u{FFFD}ey": 1
            })
        );
        let mut deep = json!(1);
        for _ in 0..128 {
            deep = json!({"d": deep});
        }
        let err = s
            .create_execution(NewExecution {
                scenario_id: &sc,
                version: 1,
                source: ExecutionSource::Manual,
                payload: Some(&deep),
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput { .. }), "{err}");
        assert!(
            !err.to_string().contains("\"d\""),
            "no payload in errors: {err}"
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Webhook deliveries
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_queue_executions_and_drop_duplicates() {
    each_backend(|db| async move {
        let s = &db.store;
        let sc = scenario(s, "Hooks").await;
        let hook = s.ensure_hook(&sc, 1).await.unwrap();
        let other_hook = s.ensure_hook(&sc, 2).await.unwrap();
        let body = json!({"event": "order.created", "id": "evt_1"});

        let first = s
            .accept_delivery(&hook, Some("evt_1"), &sc, 1, &body)
            .await
            .unwrap();
        let Delivery::Accepted { execution_id } = &first else {
            panic!("expected Accepted, got {first:?}")
        };
        let e = s.get_execution(execution_id).await.unwrap();
        assert_eq!(
            (e.status, e.source),
            (ExecutionStatus::Queued, ExecutionSource::Webhook)
        );
        assert_eq!(e.payload, Some(body.clone()));

        let again = s
            .accept_delivery(&hook, Some("evt_1"), &sc, 1, &json!({"other": 1}))
            .await
            .unwrap();
        assert_eq!(
            again,
            Delivery::Duplicate {
                execution_id: execution_id.clone()
            }
        );
        assert_eq!(again.execution_id(), first.execution_id());
        assert_eq!(count(s).await, 1, "a duplicate stores nothing");

        // The same key on another hook is another event.
        let elsewhere = s
            .accept_delivery(&other_hook, Some("evt_1"), &sc, 1, &body)
            .await
            .unwrap();
        assert!(
            matches!(elsewhere, Delivery::Accepted { .. }),
            "{elsewhere:?}"
        );
        // No key (or an empty one): every delivery is new.
        let n1 = s.accept_delivery(&hook, None, &sc, 1, &body).await.unwrap();
        let n2 = s
            .accept_delivery(&hook, Some(""), &sc, 1, &body)
            .await
            .unwrap();
        assert!(matches!(n1, Delivery::Accepted { .. }) && matches!(n2, Delivery::Accepted { .. }));
        assert_ne!(n1.execution_id(), n2.execution_id());
        // Long and odd keys are accepted and still deduplicated.
        let long = "k".repeat(5000);
        let l1 = s
            .accept_delivery(&hook, Some(&long), &sc, 1, &body)
            .await
            .unwrap();
        let l2 = s
            .accept_delivery(&hook, Some(&long), &sc, 1, &body)
            .await
            .unwrap();
        assert!(matches!(l2, Delivery::Duplicate { .. }));
        assert_eq!(l1.execution_id(), l2.execution_id());
        let odd = "a\0b\nc";
        let o1 = s
            .accept_delivery(&hook, Some(odd), &sc, 1, &body)
            .await
            .unwrap();
        let o2 = s
            .accept_delivery(&hook, Some(odd), &sc, 1, &body)
            .await
            .unwrap();
        assert!(
            matches!(o1, Delivery::Accepted { .. }) && matches!(o2, Delivery::Duplicate { .. })
        );
        assert_eq!(count(s).await, 6);

        let err = s
            .accept_delivery(MISSING, None, &sc, 1, &body)
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
        let err = s
            .accept_delivery(&hook, Some("k2"), &sc, 7, &body)
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(
            !err.to_string().contains(&hook),
            "hook ids are secret: {err}"
        );
        // A hook answers only for its own scenario.
        let other_scenario = scenario(s, "Other").await;
        let err = s
            .accept_delivery(&hook, None, &other_scenario, 1, &body)
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
        let unknown_hook = switchyard::store::new_id();
        let err = s
            .accept_delivery(&unknown_hook, Some("k3"), &sc, 1, &body)
            .await
            .unwrap_err();
        assert!(
            err.is_not_found() && !err.to_string().contains(&unknown_hook),
            "{err}"
        );
        assert_eq!(count(s).await, 6, "failed deliveries leave nothing behind");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_deliveries_commits_together_with_an_answer_each() {
    each_backend(|db| async move {
        let s = &db.store;
        let sc = scenario(s, "Batch").await;
        let other = scenario(s, "Other").await;
        let hook = s.ensure_hook(&sc, 1).await.unwrap();
        let foreign_hook = s.ensure_hook(&other, 1).await.unwrap();
        let delivery = |hook: &str, key: Option<&str>, n: i64| {
            NewDelivery::new(hook, key, &sc, 1, &json!({"n": n})).unwrap()
        };
        let batch = vec![
            delivery(&hook, None, 1),
            delivery(&hook, Some("evt_1"), 2),
            delivery(&hook, Some("evt_1"), 3),
            delivery(&foreign_hook, None, 4),
            delivery(&hook, None, 5),
        ];
        let planned: Vec<String> = batch.iter().map(|d| d.execution_id().to_string()).collect();

        // Dropped without a commit: nothing was stored.
        let mut tx = s.begin_write().await.unwrap();
        tx.accept_deliveries(&batch).await.unwrap();
        drop(tx);
        assert_eq!(count(s).await, 0, "an uncommitted batch leaves nothing");

        let mut tx = s.begin_write().await.unwrap();
        let results = tx.accept_deliveries(&batch).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(results.len(), 5);
        let accepted = |i: usize| Delivery::Accepted {
            execution_id: planned[i].clone(),
        };
        assert_eq!(results[0].as_ref().unwrap(), &accepted(0));
        assert_eq!(results[1].as_ref().unwrap(), &accepted(1));
        assert_eq!(
            results[2].as_ref().unwrap(),
            &Delivery::Duplicate {
                execution_id: planned[1].clone()
            },
            "the same key later in the batch is a duplicate of the first"
        );
        assert!(
            matches!(&results[3], Err(StoreError::NotFound { what: "hook", .. })),
            "{:?}",
            results[3]
        );
        assert_eq!(results[4].as_ref().unwrap(), &accepted(4));
        assert_eq!(count(&db.another_store().await).await, 3);
        for (i, n) in [(0, 1), (1, 2), (4, 5)] {
            let e = s.get_execution(&planned[i]).await.unwrap();
            assert_eq!(e.payload, Some(json!({"n": n})));
            assert_eq!(e.status, ExecutionStatus::Queued);
        }
        assert_not_found(s.get_execution(&planned[2]).await);

        // A delivery for a version that does not exist fails its batch; alone it says why.
        let lost = NewDelivery::new(&hook, None, &sc, 99, &json!({})).unwrap();
        let mut tx = s.begin_write().await.unwrap();
        assert!(
            tx.accept_deliveries(&[delivery(&hook, None, 6), lost.clone()])
                .await
                .is_err()
        );
        drop(tx);
        let mut tx = s.begin_write().await.unwrap();
        match tx.accept_deliveries(std::slice::from_ref(&lost)).await {
            Err(StoreError::NotFound { what, .. }) => assert_eq!(what, "scenario version"),
            other => panic!("expected a missing version, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_deliveries_with_one_key_queue_one_execution() {
    each_backend(|db| async move {
        let other = db.another_store().await;
        let sc = scenario(&db.store, "Race hooks").await;
        let hook = db.store.ensure_hook(&sc, 1).await.unwrap();
        for round in 0..20 {
            let key = format!("evt_{round}");
            let body = json!({"round": round});
            let (a, b) = tokio::join!(
                db.store.accept_delivery(&hook, Some(&key), &sc, 1, &body),
                other.accept_delivery(&hook, Some(&key), &sc, 1, &body),
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            let accepted = [&a, &b]
                .iter()
                .filter(|d| matches!(d, Delivery::Accepted { .. }))
                .count();
            assert_eq!(accepted, 1, "round {round}: {a:?} {b:?}");
            assert_eq!(a.execution_id(), b.execution_id(), "round {round}");
        }
        assert_eq!(count(&db.store).await, 20);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Triggers: state, ticks, incomplete executions
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_state_survives_edits_and_caps_seen_ids() {
    each_backend(|db| async move {
        let s = &db.store;
        let sc = scenario(s, "Poller").await;
        let key = "module:1/connection:gmail-7";
        assert!(s.trigger_state(&sc, key).await.unwrap().is_none());

        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cursor = json!({"historyId": "1000"});
        let state = s
            .commit_trigger_state(&sc, key, Some(&cursor), &ids(&["m1", "m2", "m3"]), 4)
            .await
            .unwrap();
        assert_eq!(state.seen_ids, ids(&["m1", "m2", "m3"]));
        assert_eq!(state.cursor, Some(cursor.clone()));

        // Editing the scenario does not reset the trigger.
        s.update_scenario(&sc, BLUEPRINT_V2).await.unwrap();
        let kept = s
            .trigger_state(&sc, key)
            .await
            .unwrap()
            .expect("state kept");
        assert_eq!(kept.cursor, Some(cursor.clone()));
        assert_eq!(kept.seen_ids, ids(&["m1", "m2", "m3"]));

        // Known ids are not repeated; the list keeps the newest `cap`; `None` keeps the cursor.
        let state = s
            .commit_trigger_state(&sc, key, None, &ids(&["m3", "m4", "m5"]), 4)
            .await
            .unwrap();
        assert_eq!(state.seen_ids, ids(&["m2", "m3", "m4", "m5"]));
        assert_eq!(state.cursor, Some(cursor.clone()));
        let read = s.trigger_state(&sc, key).await.unwrap().unwrap();
        assert_eq!(read.seen_ids, state.seen_ids);
        assert_eq!(read.cursor, state.cursor);
        assert!(read.updated_at >= kept.updated_at);

        // Another key of the same scenario is independent.
        assert!(s.trigger_state(&sc, "module:2").await.unwrap().is_none());

        assert_eq!(read.generation, 0);
        assert!(s.reset_trigger_state(&sc, key).await.unwrap());
        let reset = s
            .trigger_state(&sc, key)
            .await
            .unwrap()
            .expect("an emptied row");
        assert_eq!((reset.cursor, reset.seen_ids.len()), (None, 0));
        assert_eq!(reset.generation, 1);
        // Resetting an empty state forgets nothing and starts no new generation.
        assert!(!s.reset_trigger_state(&sc, key).await.unwrap());
        assert_eq!(
            s.trigger_state(&sc, key).await.unwrap().unwrap().generation,
            1
        );
        assert!(!s.reset_trigger_state(&sc, "module:2").await.unwrap());

        assert_not_found(s.commit_trigger_state(MISSING, key, None, &[], 10).await);
        let err = s.trigger_state(&sc, "").await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput { .. }), "{err}");
    })
    .await;
}

/// Runs one statement on the store's own database.
async fn raw_sql(store: &Store, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match store.pool() {
        StorePool::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        StorePool::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
    }
    .expect("raw statement");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trigger_state_commits_with_the_finish_and_only_once() {
    each_backend(|db| async move {
        let s = &db.store;
        let sc = scenario(s, "Poller").await;
        let key = "module:1";
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let report = json!({"status": "success"});
        let finish_with = |id: String, cursor: Value, new: Vec<String>| {
            let (sc, report) = (sc.clone(), report.clone());
            let store = s.clone();
            async move {
                let change = TriggerStateChange {
                    scenario_id: &sc,
                    key,
                    cursor: Some(&cursor),
                    new_seen_ids: &new,
                    cap: 100,
                    generation: 0,
                };
                let outcome = ExecutionOutcome {
                    trigger: Some(change),
                    ..outcome(FinalStatus::Success, &report)
                };
                store.finish_execution(&id, outcome).await
            }
        };

        // The finish that finishes the execution commits the state.
        let e1 = execution(s, &sc, json!(null)).await;
        s.claim_execution(&e1, "w", 3).await.unwrap().unwrap();
        assert!(
            finish_with(e1.clone(), json!({"n": 1}), ids(&["a", "b"]))
                .await
                .unwrap()
        );
        let state = s.trigger_state(&sc, key).await.unwrap().expect("committed");
        assert_eq!(state.cursor, Some(json!({"n": 1})));
        assert_eq!(state.seen_ids, ids(&["a", "b"]));
        assert_eq!(
            s.get_execution(&e1).await.unwrap().status,
            ExecutionStatus::Success
        );

        // A second finish of the same execution (a duplicate delivery) commits nothing.
        assert!(
            !finish_with(e1.clone(), json!({"n": 2}), ids(&["c"]))
                .await
                .unwrap()
        );
        let state = s.trigger_state(&sc, key).await.unwrap().unwrap();
        assert_eq!(state.cursor, Some(json!({"n": 1})));
        assert_eq!(state.seen_ids, ids(&["a", "b"]));

        // A rolled-back run is finished without a change: the state stays.
        let e2 = execution(s, &sc, json!(null)).await;
        assert!(finish(s, &e2, FinalStatus::Error).await);
        let state = s.trigger_state(&sc, key).await.unwrap().unwrap();
        assert_eq!(state.cursor, Some(json!({"n": 1})));

        // One transaction: when the state cannot be written, the execution is not finished
        // either (its job will run it again).
        let e3 = execution(s, &sc, json!(null)).await;
        s.claim_execution(&e3, "w", 3).await.unwrap().unwrap();
        raw_sql(s, "UPDATE trigger_state SET seen_ids = '[1, 2]'").await;
        let err = finish_with(e3.clone(), json!({"n": 3}), ids(&["d"]))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert_eq!(
            s.get_execution(&e3).await.unwrap().status,
            ExecutionStatus::Running
        );
        raw_sql(s, "UPDATE trigger_state SET seen_ids = '[\"a\", \"b\"]'").await;
        let state = s.trigger_state(&sc, key).await.unwrap().unwrap();
        assert_eq!(state.cursor, Some(json!({"n": 1})), "nothing of e3 stored");
        assert!(
            finish_with(e3.clone(), json!({"n": 3}), ids(&["d"]))
                .await
                .unwrap()
        );
        let state = s.trigger_state(&sc, key).await.unwrap().unwrap();
        assert_eq!(state.cursor, Some(json!({"n": 3})));
        assert_eq!(state.seen_ids, ids(&["a", "b", "d"]));

        // Two workers racing to finish one execution: exactly one commits its change.
        let e4 = execution(s, &sc, json!(null)).await;
        let other = db.another_store().await;
        let (sc2, report2) = (sc.clone(), report.clone());
        let e4b = e4.clone();
        let racer = tokio::spawn(async move {
            let new = vec!["y".to_string()];
            let cursor = json!({"n": "y"});
            let change = TriggerStateChange {
                scenario_id: &sc2,
                key: "module:1",
                cursor: Some(&cursor),
                new_seen_ids: &new,
                cap: 100,
                generation: 0,
            };
            let outcome = ExecutionOutcome {
                trigger: Some(change),
                ..outcome(FinalStatus::Success, &report2)
            };
            other.finish_execution(&e4b, outcome).await.unwrap()
        });
        let mine = finish_with(e4.clone(), json!({"n": "x"}), ids(&["x"]))
            .await
            .unwrap();
        let theirs = racer.await.unwrap();
        assert!(mine ^ theirs, "exactly one finish: {mine} {theirs}");
        let state = s.trigger_state(&sc, key).await.unwrap().unwrap();
        let (winner, loser) = if mine { ("x", "y") } else { ("y", "x") };
        assert_eq!(state.cursor, Some(json!({"n": winner})));
        assert!(state.seen_ids.contains(&winner.to_string()));
        assert!(!state.seen_ids.contains(&loser.to_string()), "{state:?}");

        // A change for a scenario that does not exist is refused, and nothing is finished.
        let e5 = execution(s, &sc, json!(null)).await;
        let none: Vec<String> = Vec::new();
        let change = TriggerStateChange {
            scenario_id: MISSING,
            key,
            cursor: None,
            new_seen_ids: &none,
            cap: 10,
            generation: 0,
        };
        let outcome = ExecutionOutcome {
            trigger: Some(change),
            ..outcome(FinalStatus::Success, &report)
        };
        assert_not_found(s.finish_execution(&e5, outcome).await);
        assert_eq!(
            s.get_execution(&e5).await.unwrap().status,
            ExecutionStatus::Queued
        );
    })
    .await;
}

/// A poll that read the state before a reset and finishes after it commits nothing: its
/// progress belongs to the state the reset forgot, so the next poll starts afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_drops_the_progress_of_a_poll_that_read_before_it() {
    each_backend(|db| async move {
        let s = &db.store;
        let sc = scenario(s, "Poller").await;
        let key = "module:1";
        let report = json!({"status": "success"});
        let finish_poll = |cursor: Value, generation: i64| {
            let (sc, report) = (sc.clone(), report.clone());
            async move {
                let id = execution(s, &sc, json!(null)).await;
                s.claim_execution(&id, "w", 3).await.unwrap().unwrap();
                let new = vec![cursor.to_string()];
                let change = TriggerStateChange {
                    scenario_id: &sc,
                    key,
                    cursor: Some(&cursor),
                    new_seen_ids: &new,
                    cap: 100,
                    generation,
                };
                let outcome = ExecutionOutcome {
                    trigger: Some(change),
                    ..outcome(FinalStatus::Success, &report)
                };
                assert!(s.finish_execution(&id, outcome).await.unwrap(), "finished");
                s.trigger_state(&sc, key).await.unwrap().unwrap()
            }
        };

        // The first poll read no state (generation 0) and commits.
        let state = finish_poll(json!(1), 0).await;
        assert_eq!(state.cursor, Some(json!(1)));
        // A second poll reads generation 0; a reset comes before it finishes.
        assert!(s.reset_trigger_state(&sc, key).await.unwrap());
        let state = finish_poll(json!(2), 0).await;
        assert_eq!(state.cursor, None, "the reset was undone: {state:?}");
        assert!(state.seen_ids.is_empty(), "{state:?}");
        // A poll that read the new generation commits as usual.
        let state = finish_poll(json!(3), 1).await;
        assert_eq!(state.cursor, Some(json!(3)));
        assert_eq!(state.seen_ids, ["3"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_trigger_commits_lose_no_seen_ids() {
    each_backend(|db| async move {
        let other = db.another_store().await;
        let sc = scenario(&db.store, "Poller").await;
        let mut tasks = Vec::new();
        for i in 0..12 {
            let store = if i % 2 == 0 {
                db.store.clone()
            } else {
                other.clone()
            };
            let sc = sc.clone();
            tasks.push(tokio::spawn(async move {
                let new = vec![format!("a{i}"), format!("b{i}")];
                let cursor = json!({"n": i});
                store
                    .commit_trigger_state(&sc, "t", Some(&cursor), &new, 1000)
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let state = db.store.trigger_state(&sc, "t").await.unwrap().unwrap();
        assert_eq!(state.seen_ids.len(), 24, "{:?}", state.seen_ids);
        let unique: HashSet<&String> = state.seen_ids.iter().collect();
        assert_eq!(unique.len(), 24);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_schedule_tick_is_claimed_exactly_once() {
    each_backend(|db| async move {
        let sc = scenario(&db.store, "Cron").await;
        let mut stores = vec![db.store.clone()];
        for _ in 0..3 {
            stores.push(db.another_store().await);
        }
        let base = 1_800_000_000_000_i64;
        let mut tasks = Vec::new();
        for (n, store) in stores.iter().enumerate() {
            let store = store.clone();
            let sc = sc.clone();
            tasks.push(tokio::spawn(async move {
                let mut won = Vec::new();
                for tick in 0..50 {
                    // Walk the ticks in different orders to make the races varied.
                    let tick = if n % 2 == 0 { tick } else { 49 - tick };
                    if store.claim_tick(&sc, base + tick * 60_000).await.unwrap() {
                        won.push(tick);
                    }
                }
                won
            }));
        }
        let mut winners = vec![0; 50];
        for t in tasks {
            for tick in t.await.unwrap() {
                winners[tick as usize] += 1;
            }
        }
        assert_eq!(winners, vec![1; 50], "each tick exactly one winner");
        assert!(!db.store.claim_tick(&sc, base).await.unwrap());
        assert!(db.store.claim_tick(&sc, base + 1).await.unwrap());
        let other = scenario(&db.store, "Other").await;
        assert!(
            db.store.claim_tick(&other, base).await.unwrap(),
            "ticks are per scenario"
        );
        assert_not_found(db.store.claim_tick(MISSING, base).await);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claiming_a_tick_with_its_execution_is_atomic() {
    each_backend(|db| async move {
        let other = db.another_store().await;
        let sc = scenario(&db.store, "Cron").await;
        for tick in 0..10_i64 {
            let at = 1_800_000_000_000 + tick * 1000;
            let payload = json!({"tick": at});
            let (a, b) = tokio::join!(
                db.store.claim_tick_execution(&sc, 1, at, Some(&payload)),
                other.claim_tick_execution(&sc, 1, at, Some(&payload)),
            );
            let ids: Vec<String> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
            assert_eq!(ids.len(), 1, "tick {tick}");
            let e = db.store.get_execution(&ids[0]).await.unwrap();
            assert_eq!(
                (e.source, e.status),
                (ExecutionSource::Schedule, ExecutionStatus::Queued)
            );
            assert_eq!(e.payload, Some(payload));
            assert!(!db.store.claim_tick(&sc, at).await.unwrap());
        }
        assert_eq!(
            count(&db.store).await,
            10,
            "losers leave no execution behind"
        );
        assert_not_found(db.store.claim_tick_execution(&sc, 5, 1, None).await);
        assert_eq!(count(&db.store).await, 10);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_executions_wait_retry_and_close() {
    each_backend(|db| async move {
        let s = &db.store;
        let sc = scenario(s, "Breaks").await;
        let exec = execution(s, &sc, json!({})).await;
        finish(s, &exec, FinalStatus::Incomplete).await;
        let bundle = json!({"1": {"order": 5}});
        let error = json!({"name": "ConnectionError", "message": "timeout"});
        let retry = json!({"retry": true, "count": 3, "interval": 15});
        let now = 1_900_000_000_000_i64;
        let new = |next: Option<i64>| NewIncomplete {
            execution_id: &exec,
            scenario_id: &sc,
            version: 1,
            module_id: 2,
            bundle: &bundle,
            error: Some(&error),
            retry: Some(&retry),
            next_attempt_at: next,
        };
        let due = s.insert_incomplete(new(Some(now - 1))).await.unwrap();
        let later = s.insert_incomplete(new(Some(now + 60_000))).await.unwrap();
        let manual = s.insert_incomplete(new(None)).await.unwrap();

        let row = s.get_incomplete(&due).await.unwrap();
        assert_eq!(row.status, IncompleteStatus::Pending);
        assert_eq!((row.module_id, row.version, row.attempts), (2, 1, 0));
        assert_eq!(
            (row.bundle, row.error, row.retry),
            (bundle.clone(), Some(error.clone()), Some(retry.clone()))
        );
        assert_eq!(row.execution_id, exec);

        let listed: HashSet<String> = s
            .list_incomplete(&sc, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            listed,
            HashSet::from([due.clone(), later.clone(), manual.clone()])
        );

        let due_now: Vec<String> = s
            .due_incomplete(now, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(due_now, vec![due.clone()]);

        // Two retriers race for the due row: one wins the attempt.
        assert!(
            s.bump_incomplete(&due, now, Some(now + 30_000))
                .await
                .unwrap()
        );
        assert!(
            !s.bump_incomplete(&due, now, Some(now + 30_000))
                .await
                .unwrap()
        );
        assert!(s.due_incomplete(now, 10).await.unwrap().is_empty());
        let bumped = s.get_incomplete(&due).await.unwrap();
        assert_eq!(
            (bumped.attempts, bumped.next_attempt_at),
            (1, Some(now + 30_000))
        );
        let due_later: Vec<String> = s
            .due_incomplete(now + 60_000, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            due_later,
            vec![due.clone(), later.clone()],
            "earliest first"
        );
        assert!(
            s.bump_incomplete(&manual, now, None).await.unwrap(),
            "manual replay"
        );

        assert!(s.resolve_incomplete(&due).await.unwrap());
        assert!(!s.resolve_incomplete(&due).await.unwrap());
        assert!(!s.fail_incomplete(&due).await.unwrap());
        assert!(!s.bump_incomplete(&due, now + 60_000, None).await.unwrap());
        assert!(s.fail_incomplete(&later).await.unwrap());
        assert_eq!(
            s.get_incomplete(&due).await.unwrap().status,
            IncompleteStatus::Resolved
        );
        assert_eq!(
            s.get_incomplete(&later).await.unwrap().status,
            IncompleteStatus::Failed
        );
        assert!(
            s.due_incomplete(now + 120_000, 10)
                .await
                .unwrap()
                .is_empty()
        );

        let pending = s
            .list_incomplete(&sc, Some(IncompleteStatus::Pending), 100)
            .await
            .unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, manual);
        assert_eq!(s.list_incomplete(&sc, None, 2).await.unwrap().len(), 2);

        assert_not_found(s.get_incomplete(MISSING).await);
        assert_not_found(
            s.insert_incomplete(NewIncomplete {
                execution_id: MISSING,
                ..new(None)
            })
            .await,
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_bundles_commit_with_their_transaction_once_per_execution() {
    each_backend(|db| async move {
        let s = &db.store;
        let sc = scenario(s, "Parking").await;
        let exec = execution(s, &sc, json!({})).await;
        let (one, two) = (json!({"1": {"n": 1}}), json!({"1": {"n": 2}}));
        let parked = |bundle| NewIncomplete {
            execution_id: &exec,
            scenario_id: &sc,
            version: 1,
            module_id: 2,
            bundle,
            error: None,
            retry: None,
            next_attempt_at: None,
        };
        let bundles = |s: &Store| {
            let (s, sc) = (s.clone(), sc.clone());
            async move {
                let mut rows = s.list_incomplete(&sc, None, 100).await.unwrap();
                rows.sort_by_key(|r| r.bundle["1"]["n"].as_i64());
                rows.into_iter().map(|r| r.bundle).collect::<Vec<_>>()
            }
        };

        // A transaction that does not commit parks nothing.
        let mut tx = s.begin_write().await.unwrap();
        assert_eq!(
            tx.park_bundles(&[parked(&one), parked(&two)])
                .await
                .unwrap(),
            2
        );
        drop(tx);
        assert!(bundles(s).await.is_empty());

        let mut tx = s.begin_write().await.unwrap();
        tx.park_bundles(&[parked(&one), parked(&two)])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(bundles(s).await, vec![one.clone(), two.clone()]);

        // The same execution's bundles written again (its finish retried) are not doubled.
        let mut tx = s.begin_write().await.unwrap();
        assert_eq!(
            tx.park_bundles(&[parked(&one), parked(&two)])
                .await
                .unwrap(),
            0
        );
        tx.commit().await.unwrap();
        assert_eq!(bundles(s).await, vec![one.clone(), two.clone()]);

        // A bundle parked on its own is numbered after them.
        let three = json!({"1": {"n": 3}});
        s.insert_incomplete(parked(&three)).await.unwrap();
        assert_eq!(
            bundles(s).await,
            vec![one.clone(), two.clone(), three.clone()]
        );

        // Bundles of two executions, or of none stored, are refused.
        let other = execution(s, &sc, json!({})).await;
        let mut tx = s.begin_write().await.unwrap();
        let x = json!({});
        let mixed = [
            parked(&x),
            NewIncomplete {
                execution_id: &other,
                ..parked(&x)
            },
        ];
        assert!(tx.park_bundles(&mixed).await.is_err());
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Retention, maintenance, metrics, token
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_only_old_finished_executions_in_batches() {
    each_backend(|db| async move {
        let s = &db.store;
        let sc = scenario(s, "Retention").await;
        let hook = s.ensure_hook(&sc, 1).await.unwrap();
        let out = json!({"v": 1});

        // Old: finished before `cutoff`. One is a keyed delivery, one has a pending incomplete.
        let mut old = Vec::new();
        for i in 0..7 {
            let id = execution(s, &sc, json!({"old": i})).await;
            s.append_module_data(
                &id,
                &[ModuleEntry {
                    module_id: 1,
                    output: &out,
                }],
                100,
            )
            .await
            .unwrap();
            finish(s, &id, FinalStatus::Success).await;
            old.push(id);
        }
        let delivered = s
            .accept_delivery(&hook, Some("evt-old"), &sc, 1, &json!({}))
            .await
            .unwrap();
        finish(s, delivered.execution_id(), FinalStatus::Error).await;
        old.push(delivered.execution_id().to_string());
        let parked = execution(s, &sc, json!({})).await;
        finish(s, &parked, FinalStatus::Incomplete).await;
        let incomplete = s
            .insert_incomplete(NewIncomplete {
                execution_id: &parked,
                scenario_id: &sc,
                version: 1,
                module_id: 1,
                bundle: &json!({}),
                error: None,
                retry: None,
                next_attempt_at: None,
            })
            .await
            .unwrap();
        let still_queued = execution(s, &sc, json!({})).await;
        let still_running = execution(s, &sc, json!({})).await;
        s.claim_execution(&still_running, "w", 3)
            .await
            .unwrap()
            .unwrap();

        tokio::time::sleep(Duration::from_millis(5)).await;
        let cutoff = switchyard::store::now_ms();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let recent = execution(s, &sc, json!({})).await;
        finish(s, &recent, FinalStatus::Success).await;

        // keep_days = 30, evaluated 30 days after `cutoff`; batches of 3.
        let day = 86_400_000;
        let deleted = s
            .prune_at(cutoff + 30 * day, Some(30), None, 3)
            .await
            .unwrap();
        assert_eq!(deleted, 8);
        for id in &old {
            assert_not_found(s.get_execution(id).await);
            assert!(s.module_data(id).await.unwrap().is_empty());
        }
        for id in [&parked, &still_queued, &still_running, &recent] {
            s.get_execution(id).await.expect("kept");
        }
        assert_eq!(
            s.get_incomplete(&incomplete).await.unwrap().status,
            IncompleteStatus::Pending
        );
        // The delivery went with its execution: the key is accepted again.
        let again = s
            .accept_delivery(&hook, Some("evt-old"), &sc, 1, &json!({}))
            .await
            .unwrap();
        assert!(matches!(again, Delivery::Accepted { .. }), "{again:?}");

        // Nothing more to delete at the same time.
        assert_eq!(
            s.prune_at(cutoff + 30 * day, Some(30), None, 3)
                .await
                .unwrap(),
            0
        );

        // Once resolved, the parked execution can go too; queued and running never do.
        s.resolve_incomplete(&incomplete).await.unwrap();
        let far = cutoff + 400 * day;
        assert_eq!(s.prune_at(far, Some(1), None, 1000).await.unwrap(), 2);
        assert_not_found(s.get_incomplete(&incomplete).await);
        s.get_execution(&still_queued).await.expect("queued kept");
        s.get_execution(&still_running).await.expect("running kept");
        s.get_execution(again.execution_id())
            .await
            .expect("queued delivery kept");
        assert_eq!(
            s.prune(None, None, 100).await.unwrap(),
            0,
            "no limits, no deletes"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_the_newest_per_scenario() {
    each_backend(|db| async move {
        let s = &db.store;
        let a = scenario(s, "A").await;
        let b = scenario(s, "B").await;
        let mut a_ids = Vec::new();
        for i in 0..6 {
            let id = execution(s, &a, json!({"i": i})).await;
            finish(s, &id, FinalStatus::Success).await;
            a_ids.push(id);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let b_id = execution(s, &b, json!({})).await;
        finish(s, &b_id, FinalStatus::Success).await;
        let a_queued = execution(s, &a, json!({})).await;

        let deleted = s.prune(None, Some(2), 1).await.unwrap();
        assert_eq!(deleted, 4);
        let left: HashSet<String> = s
            .list_executions(&all_executions())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(
            left,
            HashSet::from([
                a_ids[4].clone(),
                a_ids[5].clone(),
                b_id.clone(),
                a_queued.clone()
            ])
        );
        assert_eq!(s.prune(None, Some(2), 1).await.unwrap(), 0);
        assert_eq!(s.prune(None, Some(0), 10).await.unwrap(), 3);
        assert_eq!(count(s).await, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_forgets_old_schedule_ticks() {
    each_backend(|db| async move {
        let s = &db.store;
        let sc = scenario(s, "Ticks").await;
        let now = switchyard::store::now_ms();
        let day = 86_400_000;
        for d in 0..10 {
            assert!(s.claim_tick(&sc, now - d * day - 1).await.unwrap());
        }
        s.prune_at(now, None, None, 2).await.unwrap();
        // Ticks within the last 7 days are still claimed; older ones were forgotten.
        for d in 0..7 {
            assert!(
                !s.claim_tick(&sc, now - d * day - 1).await.unwrap(),
                "day {d}"
            );
        }
        for d in 7..10 {
            assert!(
                s.claim_tick(&sc, now - d * day - 1).await.unwrap(),
                "day {d}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_shrinks_after_prune_and_maintain() {
    each_backend(|db| async move {
        let s = &db.store;
        let sc = scenario(s, "Bulk").await;
        // About 5 MB of execution data: 50 executions × 100 KB of module output.
        let chunk = json!({"blob": "0123456789abcdef".repeat(6400)});
        for i in 0..50 {
            let id = execution(s, &sc, json!({"i": i})).await;
            s.append_module_data(
                &id,
                &[ModuleEntry {
                    module_id: 1,
                    output: &chunk,
                }],
                1 << 20,
            )
            .await
            .unwrap();
            finish(s, &id, FinalStatus::Success).await;
        }
        s.maintain().await.unwrap();
        let size = |db: &TestDb| {
            db.sqlite_file()
                .map(|f| std::fs::metadata(f).unwrap().len())
        };
        let before = size(&db);

        let deleted = s.prune(None, Some(0), 7).await.unwrap();
        assert_eq!(deleted, 50);
        s.maintain().await.unwrap();
        assert_eq!(count(s).await, 0);

        if let (Some(before), Some(after)) = (before, size(&db)) {
            assert!(
                before > 5_000_000,
                "the data reached the file: {before} bytes"
            );
            assert!(after < before / 4, "file shrank: {before} -> {after} bytes");
            let wal = db.sqlite_file().unwrap().with_extension("db-wal");
            let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
            assert!(wal_len < 1_000_000, "WAL truncated: {wal_len} bytes");
        } else {
            assert_eq!(db.backend, Backend::Postgres);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_starts_over_under_steady_writes() {
    // A passive checkpoint never reaches the end of a WAL that is appended to meanwhile, so
    // without the checkpointer's restart the WAL grows for as long as the writes go on. With
    // it, the WAL starts over once past 16,384 frames (64 MB) and is cut back to
    // `journal_size_limit` (64 MB): its file shrinks while the writes go on. The checkpointer
    // looks every 500 ms while the writer commits (an idle one is woken by the first commit),
    // so the restart comes after 64 MB and whatever is written in one look: the writes go on
    // until the file shrinks, failing after 1000 MB or two minutes.
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_sqlite(dir.path()).await.unwrap();
    let wal = dir.path().join(SQLITE_FILE_NAME).with_extension("db-wal");
    let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let sc = scenario(&s, "Steady").await;
    let chunk = json!({"blob": "0123456789abcdef".repeat(64 * 1024)}); // 1 MB
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let (mut largest, mut written) = (0, 0);
    let started_over = loop {
        let id = execution(&s, &sc, json!({"n": written})).await;
        let entry = ModuleEntry {
            module_id: 1,
            output: &chunk,
        };
        s.append_module_data(&id, &[entry], 2 << 20).await.unwrap();
        written += 1;
        let now = wal_len();
        if now < largest {
            break true;
        }
        largest = now;
        if written >= 1000 || std::time::Instant::now() > deadline {
            break false;
        }
    };
    let after = wal_len();
    assert!(
        started_over && after <= 64 << 20,
        "the WAL never started over: {largest} bytes after {written} MB written"
    );
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_scenario_removes_everything_it_owns() {
    each_backend(|db| async move {
        let s = &db.store;
        let keep = scenario(s, "Keep").await;
        let kept_exec = execution(s, &keep, json!({})).await;
        let sc = scenario(s, "Doomed").await;
        let hook = s.ensure_hook(&sc, 1).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..520 {
            ids.push(execution(s, &sc, json!({"i": i})).await);
        }
        s.append_module_data(
            &ids[0],
            &[ModuleEntry {
                module_id: 1,
                output: &json!(1),
            }],
            100,
        )
        .await
        .unwrap();
        s.accept_delivery(&hook, Some("k"), &sc, 1, &json!({}))
            .await
            .unwrap();
        s.commit_trigger_state(&sc, "t", Some(&json!(1)), &[], 10)
            .await
            .unwrap();
        s.claim_tick(&sc, 5).await.unwrap();
        let inc = s
            .insert_incomplete(NewIncomplete {
                execution_id: &ids[1],
                scenario_id: &sc,
                version: 1,
                module_id: 1,
                bundle: &json!({}),
                error: None,
                retry: None,
                next_attempt_at: Some(0),
            })
            .await
            .unwrap();

        s.delete_scenario(&sc).await.unwrap();
        assert_not_found(s.get_scenario(&sc).await);
        assert!(s.get_hook(&hook).await.unwrap().is_none());
        assert_not_found(s.get_execution(&ids[0]).await);
        assert!(s.module_data(&ids[0]).await.unwrap().is_empty());
        assert!(s.trigger_state(&sc, "t").await.unwrap().is_none());
        assert_not_found(s.get_incomplete(&inc).await);
        assert_eq!(count(s).await, 1);
        s.get_execution(&kept_exec)
            .await
            .expect("other scenario untouched");
        // Its id is free again: a new scenario never sees the old ticks (new ids anyway).
        assert_not_found(s.claim_tick(&sc, 5).await);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_counts_cover_every_status() {
    each_backend(|db| async move {
        let s = &db.store;
        let sc = scenario(s, "Metrics").await;
        let zero = s.count_executions_by_status().await.unwrap();
        assert_eq!(zero.len(), 5);
        assert!(zero.iter().all(|(_, n)| *n == 0));
        for _ in 0..3 {
            execution(s, &sc, json!({})).await;
        }
        let running = execution(s, &sc, json!({})).await;
        s.claim_execution(&running, "w", 3).await.unwrap();
        for status in [
            FinalStatus::Success,
            FinalStatus::Success,
            FinalStatus::Error,
        ] {
            let id = execution(s, &sc, json!({})).await;
            finish(s, &id, status).await;
        }
        let counts = s.count_executions_by_status().await.unwrap();
        assert_eq!(
            counts,
            vec![
                (ExecutionStatus::Queued, 3),
                (ExecutionStatus::Running, 1),
                (ExecutionStatus::Success, 2),
                (ExecutionStatus::Error, 1),
                (ExecutionStatus::Incomplete, 0),
            ]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_hash_is_replaced_not_added() {
    each_backend(|db| async move {
        let s = &db.store;
        assert_eq!(s.api_token_hash().await.unwrap(), None);
        let first = "a".repeat(64);
        let second = "0123456789abcdef".repeat(4);
        s.set_api_token_hash(&first).await.unwrap();
        assert_eq!(s.api_token_hash().await.unwrap(), Some(first.clone()));
        s.set_api_token_hash(&second).await.unwrap();
        assert_eq!(s.api_token_hash().await.unwrap(), Some(second.clone()));
        for bad in ["", "xyz", &"A".repeat(64), &"a".repeat(63)] {
            let err = s.set_api_token_hash(bad).await.unwrap_err();
            assert!(matches!(err, StoreError::InvalidInput { .. }), "{err}");
        }
        assert_eq!(s.api_token_hash().await.unwrap(), Some(second));
    })
    .await;
}

#[test]
fn database_name_is_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://u:p@127.0.0.1:55432/switchyard", "t1"),
        "postgres://u:p@127.0.0.1:55432/t1"
    );
    assert_eq!(
        with_database("postgres://u@h/db?sslmode=disable", "t2"),
        "postgres://u@h/t2?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "t3"), "postgres://h/t3");
}
