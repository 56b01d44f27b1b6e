//! Execution history is paged, summarised and written without stalling the service: the
//! store's module pages, summaries and parts (on every backend, `common::backends`), and the
//! real `switchyard serve` answering `GET /api/executions/{id}` with a summary and
//! `?module=&offset=&limit=` with pages (the harness of `tests/service.rs`), on SQLite and on
//! PostgreSQL when `SWITCHYARD_TEST_DATABASE_URL` is set.
//!
//! - `module_pages_and_summaries` / `module_data_in_parts_belongs_to_its_worker` (store);
//! - `a_database_of_the_first_schema_keeps_its_history`: the migration to pages keeps every
//!   stored output of a database made by the first schema;
//! - `a_large_execution_is_read_in_pages`: a repeater of 5,000 behind a webhook, a filter,
//!   errors and a truncated output: the summary's counts, every page, `next`, the bounds and
//!   every bad parameter (400/404 envelopes);
//! - `saving_a_large_execution_does_not_stall_the_service`: 200,000 output bundles saved
//!   while `/health` is probed every 20 ms; no probe waits a second during the save.

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard::store::{
    ExecutionFinish, ExecutionOutcome, ExecutionSource, FinalStatus, ModuleCounts, ModuleData,
    ModuleEntry, ModuleSummary, NewExecution, Store,
};

use common::backends::each_backend;
use harness::{Backend, TestDb, hook_json};

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

async fn new_execution(store: &Store) -> String {
    let blueprint = r#"{"name":"h","flow":[{"id":1,"module":"gateway:CustomWebHook"}]}"#;
    let (scenario_id, version) = store.create_scenario("history", blueprint).await.unwrap();
    store
        .create_execution(NewExecution {
            scenario_id: &scenario_id,
            version,
            source: ExecutionSource::Manual,
            payload: None,
        })
        .await
        .unwrap()
}

fn success(report: &Value) -> ExecutionOutcome<'_> {
    ExecutionOutcome {
        status: FinalStatus::Success,
        operations: 1,
        cycles: 1,
        report: Some(report),
        error: None,
        trigger: None,
    }
}

fn counts(module_id: u32, runs: u64, bundles: u64, errors: u64, filtered: u64) -> ModuleCounts {
    ModuleCounts {
        module_id,
        runs,
        bundles,
        errors,
        filtered,
    }
}

/// A finish stores the outputs it is given and a summary of them with the engine's counts;
/// a module's outputs are read a page at a time; an execution without a recorded summary is
/// summarised from its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_pages_and_summaries() {
    each_backend(|db| async move {
        let s = &db.store;
        let id = new_execution(s).await;
        // Module 2 produced 500 bundles of which the log kept 300 (one too large to store);
        // module 3, interleaved, kept all 3; module 4 ran and produced nothing; module 9 has
        // outputs but no counts.
        let outputs: Vec<(u32, Value)> = std::iter::once((1, json!({"trigger": true})))
            .chain((0..300).map(|i| (2, json!({"i": i}))))
            .chain((0..3).map(|i| (3, json!({"k": i}))))
            .chain(std::iter::once((9, json!({"extra": 1}))))
            .collect();
        let mut outputs = outputs;
        outputs[150].1 = json!({"big": "x".repeat(2000)});
        outputs.swap(2, 301);
        let entries: Vec<ModuleEntry<'_>> = outputs
            .iter()
            .map(|(module_id, output)| ModuleEntry {
                module_id: *module_id,
                output,
            })
            .collect();
        let mut data = ModuleData::prepare(&entries, 1000).unwrap();
        data.summarise(&[
            counts(1, 1, 1, 0, 0),
            counts(2, 1, 500, 0, 0),
            counts(3, 300, 3, 1, 297),
            counts(4, 3, 0, 3, 0),
        ]);
        let report = json!({"status": "success"});
        let mut tx = s.begin_write().await.unwrap();
        let finished = tx
            .finish_executions(&[ExecutionFinish {
                id: &id,
                outcome: success(&report),
                module_data: &data,
            }])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(finished, [true]);

        let summary =
            |module, runs, bundles, stored, omitted, errors, filtered, truncated| ModuleSummary {
                module,
                runs: Some(runs),
                bundles: Some(bundles),
                stored,
                omitted: Some(omitted),
                errors: Some(errors),
                filtered: Some(filtered),
                truncated,
                inputs: 0,
            };
        let mut extra = summary(9, 0, 1, 1, 0, 0, 0, 0);
        (extra.runs, extra.errors, extra.filtered) = (None, None, None);
        assert_eq!(
            s.module_summaries(&id).await.unwrap(),
            [
                summary(1, 1, 1, 1, 0, 0, 0, 0),
                summary(2, 1, 500, 300, 200, 0, 0, 1),
                summary(3, 300, 3, 3, 0, 1, 297, 0),
                summary(4, 3, 0, 0, 0, 3, 0, 0),
                extra,
            ]
        );

        // Pages of module 2: in order, with their position in the execution's log.
        let page = s.module_page(&id, 2, 0, 100).await.unwrap();
        assert_eq!(page.total, 300);
        assert_eq!(page.records.len(), 100);
        assert_eq!(page.records[0].output, json!({"i": 0}));
        assert_eq!(page.records[0].seq, 1);
        assert_eq!(
            page.records[1].output,
            json!({"i": 2}),
            "index 2 moved away"
        );
        let page = s.module_page(&id, 2, 250, 100).await.unwrap();
        assert_eq!(page.records.len(), 50);
        assert_eq!(page.records[48].output, json!({"i": 299}));
        assert_eq!(
            page.records[49].output,
            json!({"i": 1}),
            "index 1 moved last"
        );
        let seqs: Vec<u32> = page.records.iter().map(|r| r.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let all: Vec<Value> = s
            .module_page(&id, 2, 0, 1000)
            .await
            .unwrap()
            .records
            .into_iter()
            .map(|r| r.output)
            .collect();
        assert_eq!(all.len(), 300);
        assert_eq!(all[148], json!({"__truncated__": true, "bytes": 2010}));
        assert!(
            s.module_page(&id, 2, 300, 10)
                .await
                .unwrap()
                .records
                .is_empty()
        );
        assert!(
            s.module_page(&id, 2, u64::MAX, 10)
                .await
                .unwrap()
                .records
                .is_empty()
        );
        let page = s.module_page(&id, 3, 0, 10).await.unwrap();
        assert_eq!(page.total, 3);
        assert_eq!(page.records[0].output, json!({"k": 0}));
        assert_eq!(
            page.records[0].seq, 2,
            "module 3's first output came second"
        );
        assert_eq!(s.module_page(&id, 4, 0, 10).await.unwrap().total, 0);
        assert_eq!(s.module_page("nope", 4, 0, 10).await.unwrap().total, 0);

        // No summary recorded (data appended without a finish): what the rows say.
        let other = new_execution(s).await;
        assert_eq!(s.module_summaries(&other).await.unwrap(), []);
        let first = json!({"a": 1});
        let big = json!({"b": "y".repeat(200)});
        s.append_module_data(
            &other,
            &[
                ModuleEntry {
                    module_id: 5,
                    output: &first,
                },
                ModuleEntry {
                    module_id: 1,
                    output: &big,
                },
                ModuleEntry {
                    module_id: 5,
                    output: &first,
                },
            ],
            100,
        )
        .await
        .unwrap();
        // Queued (or running): its data is still being written, no summary yet.
        assert_eq!(s.module_summaries(&other).await.unwrap(), []);
        assert!(s.finish_execution(&other, success(&report)).await.unwrap());
        let unrecorded = |module, stored, truncated| ModuleSummary {
            module,
            runs: None,
            bundles: None,
            stored,
            omitted: None,
            errors: None,
            filtered: None,
            truncated,
            inputs: 0,
        };
        assert_eq!(
            s.module_summaries(&other).await.unwrap(),
            [unrecorded(5, 2, 0), unrecorded(1, 1, 1)]
        );
        assert!(
            s.module_summaries("0123456789abcdef0123456789abcdef")
                .await
                .unwrap_err()
                .is_not_found()
        );
    })
    .await;
}

/// Data is split into parts by outputs and by bytes, in order, the summary with the last;
/// a part is written only while the execution is running and claimed by the worker that
/// wrote the parts before (a re-claim by another worker drops them and refuses the rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_data_in_parts_belongs_to_its_worker() {
    let outputs: Vec<Value> = (0..10).map(|i| json!({"i": i})).collect();
    let entries: Vec<ModuleEntry<'_>> = outputs
        .iter()
        .map(|output| ModuleEntry {
            module_id: 2,
            output,
        })
        .collect();
    let mut data = ModuleData::prepare(&entries, 1000).unwrap();
    data.summarise(&[counts(2, 1, 10, 0, 0)]);
    assert_eq!(data.bytes(), 7 * 10);
    let sizes = |parts: &[ModuleData]| parts.iter().map(ModuleData::len).collect::<Vec<_>>();
    let parts = ModuleData::prepare(&entries, 1000)
        .unwrap()
        .into_parts(4, 1 << 20);
    assert_eq!(sizes(&parts), [4, 4, 2]);
    let parts = ModuleData::prepare(&entries, 1000)
        .unwrap()
        .into_parts(100, 3 * 7);
    assert_eq!(sizes(&parts), [3, 3, 3, 1]);
    let parts = ModuleData::prepare(&entries, 1000)
        .unwrap()
        .into_parts(100, 1);
    assert_eq!(
        sizes(&parts),
        [1; 10],
        "an output over the limit is a part alone"
    );
    let parts = data.into_parts(4, 1 << 20);
    assert!(parts[..2].iter().all(|p| p.summary().is_none()));
    assert_eq!(parts[2].summary().unwrap()[0].stored, 10);
    assert_eq!(sizes(&ModuleData::default().into_parts(4, 4)), [0]);

    each_backend(|db| async move {
        let s = &db.store;
        let outputs: Vec<Value> = (0..10).map(|i| json!({"i": i})).collect();
        let entries: Vec<ModuleEntry<'_>> = outputs
            .iter()
            .map(|output| ModuleEntry {
                module_id: 2,
                output,
            })
            .collect();
        let part = || ModuleData::prepare(&entries[..5], 1000).unwrap();
        let id = new_execution(s).await;
        let append = |worker: &'static str| {
            let id = id.clone();
            async move {
                let mut tx = s.begin_write().await.unwrap();
                let written = tx.append_module_part(&id, worker, &part()).await.unwrap();
                tx.commit().await.unwrap();
                written
            }
        };
        assert!(!append("worker-a").await, "queued: no worker holds it");
        s.claim_execution(&id, "worker-a", 3)
            .await
            .unwrap()
            .unwrap();
        assert!(append("worker-a").await);
        assert!(
            !append("worker-b").await,
            "another worker's part is refused"
        );
        assert_eq!(s.module_page(&id, 2, 0, 100).await.unwrap().total, 5);
        // Worker b takes the execution over (worker a looked dead): a's part is dropped and
        // a writes nothing more.
        s.claim_execution(&id, "worker-b", 3)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.module_page(&id, 2, 0, 100).await.unwrap().total, 0);
        assert!(!append("worker-a").await);
        assert!(append("worker-b").await);
        let mut tx = s.begin_write().await.unwrap();
        assert!(!tx.claimed_by(&id, "worker-a").await.unwrap());
        assert!(tx.claimed_by(&id, "worker-b").await.unwrap());
        assert!(!tx.claimed_by("not an id", "worker-b").await.unwrap());
        tx.commit().await.unwrap();
        let page = s.module_page(&id, 2, 0, 100).await.unwrap();
        assert_eq!(page.total, 5);
        assert_eq!(page.records[4].output, json!({"i": 4}));
        // Finished: no part is written any more.
        let report = json!({});
        assert!(s.finish_execution(&id, success(&report)).await.unwrap());
        assert!(!append("worker-b").await);
    })
    .await;
}

/// A database made by the first schema (module data keyed by log position, no summaries)
/// keeps its history through the migration to pages: every stored output, in log order, in
/// pages per module, and a summary counted from the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_first_schema_keeps_its_history() {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    fn first_schema(sql: &'static str) -> Migrator {
        let mut migrator = Migrator::with_migrations(vec![Migration::new(
            1,
            "store".into(),
            MigrationType::Simple,
            sqlx::AssertSqlSafe(sql).into_sql_str(),
            false,
        )]);
        migrator.dangerous_set_table_name(switchyard::store::MIGRATIONS_TABLE);
        migrator
    }
    use sqlx::SqlSafeStr;
    const SQLITE: &str = include_str!("../migrations/sqlite/0001_store.sql");
    const POSTGRES: &str = include_str!("../migrations/postgres/0001_store.sql");
    const EXECUTION: &str = "0123456789abcdef0123456789abcdef";
    // The first schema's rows: scenario, version, execution and three outputs (module 2,
    // module 1, module 2) in log order.
    const ROWS: &[&str] = &[
        "INSERT INTO scenarios (id, name, version, created_at, updated_at) \
         VALUES ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'old', 1, 0, 0)",
        "INSERT INTO scenario_versions (scenario_id, version, blueprint, created_at) \
         VALUES ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 1, '{}', 0)",
        "INSERT INTO executions (id, scenario_id, version, status, source, created_at) \
         VALUES ('0123456789abcdef0123456789abcdef', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 1, \
         'success', 'manual', 0)",
    ];
    let outputs = [
        (0, 2, json!({"a": 1})),
        (1, 1, json!({"b": 2})),
        (2, 2, json!({"a": 3})),
    ];
    let outputs = &outputs;
    let check = |store: Store| async move {
        let data = store.module_data(EXECUTION).await.unwrap();
        let read: Vec<(u32, u32, Value)> = data
            .into_iter()
            .map(|r| (r.seq, r.module_id, r.output))
            .collect();
        assert_eq!(read, outputs.to_vec());
        let page = store.module_page(EXECUTION, 2, 0, 10).await.unwrap();
        assert_eq!(page.total, 2);
        assert_eq!(page.records[1].output, json!({"a": 3}));
        let modules: Vec<(u32, u64)> = store
            .module_summaries(EXECUTION)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.module, m.stored))
            .collect();
        assert_eq!(modules, [(2, 2), (1, 1)]);
    };

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(switchyard::store::SQLITE_FILE_NAME);
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        first_schema(SQLITE).run(&pool).await.unwrap();
        for sql in ROWS {
            sqlx::query(*sql).execute(&pool).await.unwrap();
        }
        for (seq, module, output) in outputs {
            sqlx::query(
                "INSERT INTO execution_modules (execution_id, seq, module_id, output) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(EXECUTION)
            .bind(seq)
            .bind(module)
            .bind(output.to_string())
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
    check(Store::open_sqlite(dir.path()).await.unwrap()).await;

    let Some(pg) = common::backends::create_pg_database("switchyard_history").await else {
        return;
    };
    {
        let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
        first_schema(POSTGRES).run(&pool).await.unwrap();
        for sql in ROWS {
            sqlx::query(*sql).execute(&pool).await.unwrap();
        }
        for (seq, module, output) in outputs {
            sqlx::query(
                "INSERT INTO execution_modules (execution_id, seq, module_id, output) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(EXECUTION)
            .bind(i64::from(*seq))
            .bind(i64::from(*module))
            .bind(sqlx::types::Json(output))
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
    let store = Store::connect(&pg.url).await.unwrap();
    check(store.clone()).await;
    store.close().await;
    common::backends::drop_pg_database(&pg.admin_url, &pg.name)
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------------

common::backend_tests!(
    a_large_execution_is_read_in_pages,
    saving_a_large_execution_does_not_stall_the_service,
);

/// `{"error": {"code", "message", "path"?}}` of a reply with status `status`.
fn envelope(reply: harness::Reply, status: u16, what: &str) -> Value {
    let reply = reply.expect(status, what);
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    reply.json["error"].clone()
}

/// A webhook, a repeater of `{{1.n}}` bundles, a filter that lets 10 of them through, a
/// module that fails on one of those (ignored) and a trigger bundle over the byte cap: the
/// summary counts each; the repeater's bundles are read back in pages of every size.
async fn a_large_execution_is_read_in_pages(db: TestDb) {
    let svc = db.serve(&[]).await;
    let api = &svc.api;
    let http = reqwest::Client::new();
    let blueprint = json!({"name": "history", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "history"}},
        {"id": 2, "module": "builtin:BasicRepeater",
         "mapper": {"start": 1, "repeats": "{{1.n}}", "step": 1}},
        {"id": 3, "module": "util:SetVariable2",
         "mapper": {"name": "k", "scope": "roundtrip", "value": "{{2.i}}"},
         "filter": {"name": "first ten", "conditions":
             [[{"a": "{{2.i}}", "o": "number:lessorequal", "b": "10"}]]}},
        {"id": 4, "module": "builtin:BasicRepeater",
         "mapper": {"start": 1, "repeats": "{{if(3.k = 1; 99999; 0)}}", "step": 1},
         "onerror": [{"id": 9, "module": "builtin:Ignore"}]}
    ]});
    let (_, hook) = api.create_active(&blueprint).await;
    let n = 5000u64;
    // The trigger's bundle is over the 64 KiB a stored output may have.
    let body = json!({"n": n, "padding": "p".repeat(70_000)});
    let reply = hook_json(&http, &svc.url(&hook.unwrap()), &body)
        .await
        .expect(200, "webhook");
    let id = harness::execution_header(&reply);
    let execution = api.finished(&id).await;
    assert_eq!(execution["status"], "success", "{execution}");
    assert!(execution.get("log").is_none(), "{execution}");
    let summary_bytes = api.get(&format!("/api/executions/{id}")).await.text.len();
    assert!(
        summary_bytes < 4096,
        "the summary is small: {summary_bytes} bytes"
    );

    // The summary: what each module did and what of it is stored.
    let modules = execution["modules"].as_array().expect("modules").clone();
    let ids: Vec<u64> = modules
        .iter()
        .map(|m| m["module"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4], "in order of first run: {execution}");
    let stored = |m: &Value| m["stored"].as_u64().expect("stored");
    let repeater_stored = stored(&modules[1]);
    assert!(
        (1..=n).contains(&repeater_stored),
        "some of the repeater's bundles are stored: {}",
        modules[1]
    );
    assert_eq!(
        modules[0],
        json!({"module": 1, "runs": 1, "bundles": 1, "stored": 1, "omitted": 0, "errors": 0,
               "filtered": 0, "truncated": 1, "inputs": 0})
    );
    assert_eq!(
        modules[1],
        json!({"module": 2, "runs": 1, "bundles": n, "stored": repeater_stored,
               "omitted": n - repeater_stored, "errors": 0, "filtered": 0, "truncated": 0,
               "inputs": 1})
    );
    assert_eq!(
        modules[2],
        json!({"module": 3, "runs": 10, "bundles": 10, "stored": 10, "omitted": 0,
               "errors": 0, "filtered": n - 10, "truncated": 0, "inputs": 10})
    );
    assert_eq!(
        modules[3],
        json!({"module": 4, "runs": 10, "bundles": 0, "stored": 0, "omitted": 0, "errors": 1,
               "filtered": 0, "truncated": 0, "inputs": 10})
    );

    // Every page of the repeater's bundles, 1,000 at a time: in order, `next` chaining them.
    let page_path = |offset: u64, limit: u64| {
        format!("/api/executions/{id}?module=2&offset={offset}&limit={limit}")
    };
    let mut offset = 0;
    let mut seen = Vec::new();
    loop {
        let page = api
            .get(&page_path(offset, 1000))
            .await
            .expect(200, "page")
            .json;
        assert_eq!(
            (
                &page["module"],
                &page["offset"],
                &page["limit"],
                &page["total"]
            ),
            (
                &json!(2),
                &json!(offset),
                &json!(1000),
                &json!(repeater_stored)
            ),
            "{offset}"
        );
        let bundles = page["bundles"].as_array().unwrap();
        assert_eq!(bundles.len() as u64, (repeater_stored - offset).min(1000));
        seen.extend(bundles.iter().cloned());
        match page["next"].as_u64() {
            Some(next) => {
                assert_eq!(next, offset + 1000);
                offset = next;
            }
            None => break,
        }
    }
    assert_eq!(seen.len() as u64, repeater_stored);
    for (k, bundle) in seen.iter().enumerate() {
        assert_eq!(bundle["output"], json!({"i": k + 1}), "bundle {k}");
    }
    // `seq` is the position in the whole log: the trigger's bundle came first.
    assert_eq!(seen[0]["seq"], 1);
    let seqs: Vec<u64> = seen.iter().map(|b| b["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    // The default page, the smallest, the last and past the end.
    let page = api
        .get(&format!("/api/executions/{id}?module=2"))
        .await
        .expect(200, "default page")
        .json;
    assert_eq!((&page["offset"], &page["limit"]), (&json!(0), &json!(100)));
    let bundles = page["bundles"].as_array().unwrap();
    assert_eq!(bundles[..], seen[..100.min(seen.len())]);
    let page = api.get(&page_path(7, 1)).await.expect(200, "limit 1").json;
    assert_eq!(page["bundles"], json!([seen[7]]));
    assert_eq!(page["next"], 8);
    let last = repeater_stored - 1;
    let page = api
        .get(&page_path(last, 1000))
        .await
        .expect(200, "last")
        .json;
    assert_eq!(page["bundles"], json!([seen[last as usize]]));
    assert_eq!(page["next"], Value::Null);
    for offset in [repeater_stored, u64::MAX] {
        let page = api
            .get(&page_path(offset, 10))
            .await
            .expect(200, "past the end")
            .json;
        assert_eq!(
            (&page["bundles"], &page["next"]),
            (&json!([]), &Value::Null)
        );
        assert_eq!(page["total"], repeater_stored);
    }
    // A module that ran without storing anything, and one whose output was truncated.
    let page = api
        .get(&format!("/api/executions/{id}?module=4"))
        .await
        .expect(200, "module 4")
        .json;
    assert_eq!((&page["total"], &page["bundles"]), (&json!(0), &json!([])));
    let page = api
        .get(&format!("/api/executions/{id}?module=1"))
        .await
        .expect(200, "module 1")
        .json;
    assert_eq!(page["bundles"][0]["output"]["__truncated__"], true);
    assert_eq!(page["bundles"][0]["seq"], 0);

    // The inputs of module 4's operations, evaluated per bundle: the first one's repeats
    // made it fail; they come after every output in the log, and never in an output page.
    let page = api
        .get(&format!(
            "/api/executions/{id}?module=4&bundles=input&limit=3"
        ))
        .await
        .expect(200, "module 4's inputs")
        .json;
    assert_eq!((&page["total"], &page["next"]), (&json!(10), &json!(3)));
    let inputs: Vec<&Value> = page["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["input"])
        .collect();
    assert_eq!(
        inputs,
        [
            &json!({"start": 1, "repeats": 99999, "step": 1}),
            &json!({"start": 1, "repeats": 0, "step": 1}),
            &json!({"start": 1, "repeats": 0, "step": 1}),
        ]
    );
    assert!(page["bundles"][0]["output"].is_null());
    assert!(page["bundles"][0]["seq"].as_u64().unwrap() > *seqs.last().unwrap());
    let page = api
        .get(&format!("/api/executions/{id}?module=2&bundles=input"))
        .await
        .expect(200, "the repeater's input")
        .json;
    assert_eq!(
        page["bundles"][0]["input"],
        json!({"start": 1, "repeats": n, "step": 1})
    );
    // The trigger maps nothing: no input.
    let page = api
        .get(&format!("/api/executions/{id}?module=1&bundles=input"))
        .await
        .expect(200, "the trigger's input")
        .json;
    assert_eq!((&page["total"], &page["bundles"]), (&json!(0), &json!([])));

    // Bad parameters: 400 naming the parameter; a module that did not run: 404 naming it.
    for (query, path, message) in [
        (
            "module=2&limit=0",
            "limit",
            "query parameter \"limit\": expected 1 to 1000, got 0",
        ),
        (
            "module=2&limit=1001",
            "limit",
            "query parameter \"limit\": expected 1 to 1000, got 1001",
        ),
        (
            "module=2&limit=abc",
            "limit",
            "query parameter \"limit\": invalid digit found in string",
        ),
        (
            "module=2&offset=-1",
            "offset",
            "query parameter \"offset\": invalid digit found in string",
        ),
        (
            "module=two",
            "module",
            "query parameter \"module\": invalid digit found in string",
        ),
        (
            "offset=100",
            "module",
            "query parameter \"module\" is required with offset, limit and bundles: they page one module's bundles",
        ),
        (
            "bundles=input",
            "module",
            "query parameter \"module\" is required with offset, limit and bundles: they page one module's bundles",
        ),
        (
            "limit=10",
            "module",
            "query parameter \"module\" is required with offset, limit and bundles: they page one module's bundles",
        ),
    ] {
        let reply = api.get(&format!("/api/executions/{id}?{query}")).await;
        assert_eq!(
            envelope(reply, 400, query),
            json!({"code": "bad_request", "path": path, "message": message}),
            "{query}"
        );
    }
    let reply = api.get(&format!("/api/executions/{id}?modul=2")).await;
    let error = envelope(reply, 400, "an unknown parameter");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `modul`"),
        "{error}"
    );
    let reply = api
        .get(&format!("/api/executions/{id}?module=2&bundles=sideways"))
        .await;
    let error = envelope(reply, 400, "an unknown side");
    assert_eq!(error["path"], "bundles", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("unknown variant `sideways`, expected `input` or `output`"),
        "{error}"
    );
    let reply = api.get(&format!("/api/executions/{id}?module=7")).await;
    assert_eq!(
        envelope(reply, 404, "module 7"),
        json!({"code": "not_found", "path": "module",
               "message": format!("module 7 in execution {id} not found")})
    );
    let missing = "0123456789abcdef0123456789abcdef";
    let reply = api
        .get(&format!("/api/executions/{missing}?module=2"))
        .await;
    assert_eq!(envelope(reply, 404, "no execution")["code"], "not_found");
}

/// 200 modules × 1,000 bundles (200,000 outputs, ~40 MB) saved while `/health` is asked
/// every 20 ms: no answer waits for the save (the outputs are written in parts of their own
/// transactions); the execution's summary and pages read as usual. The save begins when the
/// first part is committed (seen through a store of the test's own) and ends with the
/// finish; the engine's run before it is not measured (that is the executor's concern).
async fn saving_a_large_execution_does_not_stall_the_service(db: TestDb) {
    const MODULES: u64 = 200;
    const BUNDLES: u64 = 1000;
    let svc = db.serve(&[]).await;
    let api = &svc.api;
    let http = reqwest::Client::new();
    let mut flow = vec![
        json!({"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "large"}}),
        json!({"id": 2, "module": "builtin:BasicRepeater",
               "mapper": {"start": 1, "repeats": "{{1.n}}", "step": 1}}),
    ];
    for id in 3..=MODULES + 1 {
        flow.push(json!({"id": id, "module": "util:SetVariable2",
            "mapper": {"name": format!("v{id}"), "scope": "roundtrip",
                       "value": format!("{{{{2.i}}}} {}", "text ".repeat(30))}}));
    }
    let (_, hook) = api
        .create_active(&json!({"name": "large", "flow": flow}))
        .await;
    let url = svc.url(&hook.unwrap());

    // /health every 20 ms: when each probe was sent and how long it waited.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let client = http.clone();
        let health = svc.url("/health");
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut probes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let asked = Instant::now();
                let reply = client.get(&health).send().await.expect("/health");
                assert_eq!(reply.status(), 200);
                probes.push((asked, asked.elapsed()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            probes
        })
    };
    let started = Instant::now();
    let reply = hook_json(&http, &url, &json!({"n": BUNDLES}))
        .await
        .expect(200, "webhook");
    let id = harness::execution_header(&reply);
    // The save has begun once the first part (the trigger's output, module 1, comes first)
    // is committed.
    let store = db.store().await;
    let save_began = harness::eventually("the save to begin", 300, || async {
        match store.module_page(&id, 1, 0, 1).await.unwrap().total {
            0 => Err("no output stored yet".to_string()),
            _ => Ok(Instant::now()),
        }
    })
    .await;
    let execution = harness::eventually("the large execution to finish", 300, || async {
        let e = api.execution(&id).await;
        match harness::is_terminal(e["status"].as_str().unwrap_or("")) {
            true => Ok(e),
            false => Err(format!("status {}", e["status"])),
        }
    })
    .await;
    let saved = Instant::now();
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let probes = probe.await.expect("probe");
    store.close().await;
    let worst_of = |from: Instant, to: Instant| {
        probes
            .iter()
            .filter(|(asked, waited)| *asked + *waited >= from && *asked <= to)
            .map(|(_, waited)| *waited)
            .max()
            .unwrap_or_default()
    };
    // Probes sent up to one poll before the first part was seen count as during the save.
    let worst = worst_of(save_began - Duration::from_millis(100), saved);
    let worst_overall = worst_of(started, saved);
    let during = probes
        .iter()
        .filter(|(asked, _)| *asked >= save_began && *asked <= saved)
        .count();
    assert_eq!(execution["status"], "success", "{execution}");
    let modules = execution["modules"].as_array().unwrap();
    assert_eq!(modules.len() as u64, MODULES + 1);
    let stored: u64 = modules.iter().map(|m| m["stored"].as_u64().unwrap()).sum();
    assert_eq!(stored, 1 + MODULES * BUNDLES);
    let page = api
        .get(&format!(
            "/api/executions/{id}?module={}&offset=990&limit=1000",
            MODULES + 1
        ))
        .await
        .expect(200, "the last module's last page")
        .json;
    assert_eq!(page["total"], BUNDLES);
    assert_eq!(page["bundles"].as_array().unwrap().len(), 10);
    eprintln!(
        "{:?}: {stored} outputs, execution {took:?}, saved in {:?}; /health worst {worst:?} \
         during the save ({during} probes), {worst_overall:?} overall",
        db.backend,
        saved - save_began,
    );
    assert!(
        worst < Duration::from_millis(1000),
        "/health waited {worst:?} while the execution was saved"
    );
    assert!(during >= 5, "the save was probed: {during} probes");
}
