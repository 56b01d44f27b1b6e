//! Data stores end to end, on SQLite and (with `SWITCHYARD_TEST_DATABASE_URL`) PostgreSQL:
//!
//! - `store_rules`: typed validation, the size limit, insert-if-absent, merge updates, delete,
//!   search with Make's filter, count; 16 concurrent merges into one key from two pools lose no
//!   field and 16 concurrent insert-if-absent of one key succeed once; records survive the
//!   store being closed and opened again.
//! - `modules`: every `datastore:*` module run by the engine (happy paths and errors: unknown
//!   store, no store handle, existing key, missing record, bad filter).
//! - `cli_round_trip`: `switchyard datastores create --fields / list / show / export / import /
//!   delete`, and `switchyard run --data-dir` writing records a later process reads back.
//! - `api`: `/api/datastores` create, list, show, records (paged), export, import, delete and
//!   their errors.
//! - `dedupe_once_per_key`: Make's dedupe pattern (webhook → ExistRecord → filter → AddRecord
//!   with `overwrite: false` → HTTP call) under 16 concurrent deliveries of one key makes
//!   exactly one downstream call; on PostgreSQL also with two worker processes.

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Map, Value, json};
use switchyard::engine::{self, RunInput};
use switchyard::module::datastore::{
    AddMode, DataStore, RecordCondition, RecordQuery, SortBy, parse_fields,
};
use switchyard::module::{DataStoresHandle, ErrorKind, ExecutionContext, Extensions};
use switchyard::store::{NewDataStore, Store};

use harness::*;

common::backend_tests!(
    store_rules,
    modules,
    cli_round_trip,
    api,
    dedupe_once_per_key
);

fn map(v: Value) -> Map<String, Value> {
    v.as_object().expect("an object").clone()
}

async fn create(store: &Store, name: &str, fields: &str, max: u64) -> DataStore {
    store
        .create_datastore(NewDataStore {
            name,
            id: None,
            fields: parse_fields(fields).unwrap(),
            max_size_bytes: max,
        })
        .await
        .expect("create data store")
}

async fn store_rules(db: TestDb) {
    let store = db.store().await;
    let handle: DataStoresHandle = store.datastores_handle();
    let contacts = create(
        &store,
        "contacts",
        "email:text!,count:number,seen:date,tags:array",
        4096,
    )
    .await;

    // Typed validation: converted when the text reads as the type, refused otherwise.
    let written = handle
        .add(
            &contacts,
            Some("ann"),
            map(json!({"email": "ann@x.org", "count": "3", "seen": "2026-03-01"})),
            AddMode::InsertIfAbsent,
        )
        .await
        .unwrap();
    assert_eq!(
        Value::Object(written.data.clone()),
        json!({"email": "ann@x.org", "count": 3, "seen": "2026-03-01T00:00:00.000Z", "tags": null})
    );
    let refused = handle
        .add(
            &contacts,
            Some("bob"),
            map(json!({"email": "b@x.org", "count": "lots", "colour": "red"})),
            AddMode::Replace,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::DataError);
    for part in ["\"contacts\"", "\"bob\"", "\"count\"", "\"colour\""] {
        assert!(
            refused.message.contains(part),
            "{part} in {}",
            refused.message
        );
    }
    let required = handle
        .add(
            &contacts,
            Some("bob"),
            map(json!({"count": 1})),
            AddMode::Replace,
        )
        .await
        .unwrap_err();
    assert!(
        required.message.contains("required") && required.message.contains("\"email\""),
        "{}",
        required.message
    );
    assert!(!handle.exists(&contacts, "bob").await.unwrap());

    // Insert-if-absent refuses an existing key and changes nothing; replace replaces.
    let exists = handle
        .add(
            &contacts,
            Some("ann"),
            map(json!({"email": "other@x.org"})),
            AddMode::InsertIfAbsent,
        )
        .await
        .unwrap_err();
    assert_eq!(exists.kind, ErrorKind::DataError);
    assert!(exists.message.contains("\"ann\""), "{}", exists.message);
    assert_eq!(
        handle.get(&contacts, "ann").await.unwrap().unwrap().data["email"],
        "ann@x.org"
    );
    handle
        .add(
            &contacts,
            Some("ann"),
            map(json!({"email": "ann@y.org", "tags": ["a", "b"]})),
            AddMode::Replace,
        )
        .await
        .unwrap();
    let ann = handle.get(&contacts, "ann").await.unwrap().unwrap();
    assert_eq!(ann.data["email"], "ann@y.org");
    assert_eq!(
        ann.data["count"],
        Value::Null,
        "replace writes the whole record"
    );

    // An empty key is generated.
    let generated = handle
        .add(
            &contacts,
            None,
            map(json!({"email": "gen@x.org", "count": 10})),
            AddMode::InsertIfAbsent,
        )
        .await
        .unwrap();
    assert_eq!(generated.key.len(), 32);

    // Update merges; a missing record is created only with insert-missing.
    let updated = handle
        .update(&contacts, "ann", map(json!({"count": 7})), false)
        .await
        .unwrap();
    assert_eq!(updated.data["email"], "ann@y.org");
    assert_eq!(updated.data["count"], 7);
    let missing = handle
        .update(&contacts, "zed", map(json!({"count": 1})), false)
        .await
        .unwrap_err();
    assert_eq!(missing.kind, ErrorKind::DataError);
    assert!(missing.message.contains("\"zed\""), "{}", missing.message);
    handle
        .update(
            &contacts,
            "zed",
            map(json!({"email": "z@x.org", "count": 1})),
            true,
        )
        .await
        .unwrap();

    // Search: Make's filter (OR of AND groups), sort, limit.
    let query = |filter: Value, sort: Vec<SortBy>, limit: Option<usize>| RecordQuery {
        filter: serde_json::from_value::<Vec<Vec<RecordCondition>>>(filter).unwrap(),
        sort,
        limit,
    };
    let keys = |records: Vec<switchyard::module::datastore::Record>| {
        records.into_iter().map(|r| r.key).collect::<Vec<_>>()
    };
    let by_count = vec![SortBy {
        field: "count".into(),
        descending: true,
    }];
    let found = handle
        .search(
            &contacts,
            &query(
                json!([[{"a": "count", "o": "number:greater", "b": 1}]]),
                by_count.clone(),
                None,
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(found), [generated.key.as_str(), "ann"]);
    let found = handle
        .search(
            &contacts,
            &query(
                json!([[{"a": "email", "o": "text:endwith", "b": "@Y.ORG"}], [{"a": "key", "o": "text:equal", "b": "zed"}]]),
                Vec::new(),
                None,
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(found), ["zed"], "text:endwith is case-sensitive");
    let found = handle
        .search(
            &contacts,
            &query(
                json!([[{"a": "email", "o": "text:endwith:ci", "b": "@Y.ORG"}]]),
                Vec::new(),
                None,
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(found), ["ann"]);
    let found = handle
        .search(&contacts, &query(json!([]), by_count, Some(1)))
        .await
        .unwrap();
    assert_eq!(keys(found), [generated.key.as_str()]);
    let bad = handle
        .search(
            &contacts,
            &query(json!([[{"a": "phone", "o": "exist"}]]), Vec::new(), None),
        )
        .await
        .unwrap_err();
    assert_eq!(bad.kind, ErrorKind::DataError);
    assert!(bad.message.contains("\"phone\""), "{}", bad.message);
    assert_eq!(handle.count(&contacts).await.unwrap(), 3);

    // Delete, delete all.
    assert!(handle.delete(&contacts, "zed").await.unwrap());
    assert!(!handle.delete(&contacts, "zed").await.unwrap());
    assert_eq!(handle.count(&contacts).await.unwrap(), 2);

    // The size limit: a record that does not fit is refused, a smaller one still fits.
    let small = create(&store, "small", "note:text", 200).await;
    handle
        .add(
            &small,
            Some("a"),
            map(json!({"note": "x".repeat(100)})),
            AddMode::Replace,
        )
        .await
        .unwrap();
    let full = handle
        .add(
            &small,
            Some("b"),
            map(json!({"note": "y".repeat(100)})),
            AddMode::Replace,
        )
        .await
        .unwrap_err();
    assert_eq!(full.kind, ErrorKind::RuntimeError);
    assert!(
        full.message.contains("\"small\"") && full.message.contains("full"),
        "{}",
        full.message
    );
    handle
        .add(
            &small,
            Some("b"),
            map(json!({"note": "short"})),
            AddMode::Replace,
        )
        .await
        .unwrap();
    // Replacing a record with a smaller one frees space.
    handle
        .add(
            &small,
            Some("a"),
            map(json!({"note": "tiny"})),
            AddMode::Replace,
        )
        .await
        .unwrap();
    handle
        .add(
            &small,
            Some("c"),
            map(json!({"note": "z".repeat(80)})),
            AddMode::Replace,
        )
        .await
        .unwrap();
    let info = store.get_datastore("small").await.unwrap();
    assert_eq!(info.records, 3);
    assert!(info.size_bytes <= 200, "{info:?}");
    assert_eq!(handle.delete_all(&small).await.unwrap(), 3);
    let info = store.get_datastore(&small.id).await.unwrap();
    assert_eq!((info.records, info.size_bytes), (0, 0));

    // Concurrent merges into one key, from two pools (like two processes): no field is lost.
    let fields: Vec<String> = (0..16).map(|i| format!("f{i}:number")).collect();
    let wide = create(&store, "wide", &fields.join(","), 1 << 20).await;
    let other: DataStoresHandle = db.store().await.datastores_handle();
    let handles = [handle.clone(), other.clone()];
    let wide_ref = &wide;
    futures::stream::iter(0..16)
        .map(|i| {
            let h = handles[i % 2].clone();
            async move {
                h.update(wide_ref, "shared", map(json!({format!("f{i}"): i})), true)
                    .await
                    .expect("merge");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let shared = handle.get(&wide, "shared").await.unwrap().unwrap();
    for i in 0..16 {
        assert_eq!(
            shared.data[&format!("f{i}")],
            json!(i),
            "f{i} lost: {:?}",
            shared.data
        );
    }

    // Concurrent insert-if-absent of one key: exactly one succeeds.
    let dedupe = create(&store, "dedupe", "", 1 << 20).await;
    let dedupe_ref = &dedupe;
    let outcomes: Vec<Result<_, _>> = futures::stream::iter(0..16)
        .map(|i| {
            let h = handles[i % 2].clone();
            async move {
                h.add(
                    dedupe_ref,
                    Some("order-1"),
                    Map::new(),
                    AddMode::InsertIfAbsent,
                )
                .await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .filter_map(|o| o.as_ref().err())
            .all(|e| e.kind == ErrorKind::DataError)
    );
    assert_eq!(handle.count(&dedupe).await.unwrap(), 1);

    // Restart: the records are read back by a store opened afresh.
    store.close().await;
    let reopened = db.store().await;
    let again = reopened.get_datastore("contacts").await.unwrap();
    assert_eq!(again.records, 2);
    let ann = reopened
        .datastore_record(&again.id, "ann")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ann.data["count"], 7);
    reopened.close().await;
}

/// Runs `flow` once on `input` with the data stores of `store` (none when `None`).
async fn run(store: Option<&Store>, flow: Value, input: Value) -> Value {
    let registry =
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback())
            .expect("registry");
    let blueprint = json!({"name": "datastore test", "flow": flow, "metadata": {}});
    let scenario = switchyard::scenario::load(&blueprint.to_string(), &registry)
        .unwrap_or_else(|e| panic!("load: {e}"));
    let mut extensions = Extensions::default();
    if let Some(store) = store {
        extensions.insert::<DataStoresHandle>(store.datastores_handle());
    }
    let report = engine::run(
        &scenario,
        RunInput {
            bundles: vec![input],
            context: ExecutionContext {
                extensions,
                ..ExecutionContext::new("test")
            },
            ..RunInput::default()
        },
    )
    .await;
    report.to_json()
}

fn trigger() -> Value {
    json!({"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}})
}

fn outputs(report: &Value, module: u64) -> Vec<Value> {
    report["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["module"] == module)
        .map(|e| e["output"].clone())
        .collect()
}

async fn modules(db: TestDb) {
    let store = db.store().await;
    create(
        &store,
        "people",
        "name:text,age:number,vip:boolean",
        1 << 20,
    )
    .await;
    let ds = |id: u64, module: &str, mapper: Value| json!({"id": id, "module": format!("datastore:{module}"), "parameters": {"datastore": "people"}, "mapper": mapper});

    // Add (with and without a key), exist, get (flat and wrapped), count.
    let report = run(
        Some(&store),
        json!([
            trigger(),
            ds(2, "AddRecord", json!({"key": "{{1.id}}", "overwrite": false, "data": {"name": "{{1.name}}", "age": "{{1.age}}"}})),
            ds(3, "AddRecord", json!({"key": "", "data": {"name": "anonymous"}})),
            ds(4, "ExistRecord", json!({"key": "{{1.id}}"})),
            ds(5, "ExistRecord", json!({"key": "nobody"})),
            ds(6, "GetRecord", json!({"key": "{{1.id}}"})),
            ds(7, "GetRecord", json!({"key": "{{1.id}}", "returnWrapped": true})),
            ds(8, "GetRecord", json!({"key": "nobody", "returnWrapped": false})),
            ds(9, "CountRecords", json!({}))
        ]),
        json!({"id": "p1", "name": "Ann", "age": "41"}),
    )
    .await;
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(
        outputs(&report, 2),
        [json!({"key": "p1", "data": {"name": "Ann", "age": 41, "vip": null}})]
    );
    assert_eq!(outputs(&report, 3)[0]["key"].as_str().unwrap().len(), 32);
    assert_eq!(outputs(&report, 4), [json!({"exist": true})]);
    assert_eq!(outputs(&report, 5), [json!({"exist": false})]);
    assert_eq!(
        outputs(&report, 6),
        [json!({"name": "Ann", "age": 41, "vip": null, "key": "p1"})]
    );
    assert_eq!(
        outputs(&report, 7),
        [json!({"key": "p1", "data": {"name": "Ann", "age": 41, "vip": null}})]
    );
    assert_eq!(outputs(&report, 8), [json!({})]);
    assert_eq!(outputs(&report, 9), [json!({"count": 2})]);

    // Update (merge; upsert), search with filter, sort and limit, continue when empty.
    let report = run(
        Some(&store),
        json!([
            trigger(),
            ds(2, "UpdateRecord", json!({"key": "p1", "upsert": false, "overwriteArrays": false, "data": {"vip": "true"}})),
            ds(3, "UpdateRecord", json!({"key": "p2", "upsert": true, "data": {"name": "Bob", "age": 30}})),
            {"id": 4, "module": "datastore:SearchRecord",
             "parameters": {"datastore": "people", "limit": 2, "continueWhenNoRes": false},
             "mapper": {"filter": [[{"a": "age", "o": "number:greaterorequal", "b": "{{1.min}}"}]],
                        "sort": [{"key": "age", "order": "asc"}]}}
        ]),
        json!({"min": 18}),
    )
    .await;
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(
        outputs(&report, 2),
        [json!({"key": "p1", "data": {"name": "Ann", "age": 41, "vip": true}})]
    );
    let found = outputs(&report, 4);
    assert_eq!(found.len(), 2);
    assert_eq!(
        found[0],
        json!({"key": "p2", "data": {"name": "Bob", "age": 30, "vip": null}})
    );
    assert_eq!(found[1]["key"], "p1");

    let search = |continue_when_empty: bool| {
        json!({"id": 2, "module": "datastore:SearchRecords",
               "parameters": {"datastore": "people", "continueWhenNoRes": continue_when_empty},
               "mapper": {"filter": [[{"a": "name", "o": "text:equal", "b": "Nobody"}]]}})
    };
    let report = run(Some(&store), json!([trigger(), search(false)]), json!({})).await;
    assert!(outputs(&report, 2).is_empty(), "{report}");
    let report = run(Some(&store), json!([trigger(), search(true)]), json!({})).await;
    assert_eq!(outputs(&report, 2), [json!({})]);

    // Errors: an existing key with overwrite off (DataError), a value of the wrong type, an
    // update of a missing record, an unknown store, a bad filter, no store handle at all.
    let error_of = |report: &Value| {
        (
            report["error"]["name"].clone(),
            report["error"]["message"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    };
    let report = run(
        Some(&store),
        json!([
            trigger(),
            ds(
                2,
                "AddRecord",
                json!({"key": "p1", "overwrite": false, "data": {"name": "again"}})
            )
        ]),
        json!({}),
    )
    .await;
    let (name, message) = error_of(&report);
    assert_eq!(name, "DataError", "{report}");
    assert!(
        message.contains("datastore:AddRecord") && message.contains("\"p1\""),
        "{message}"
    );

    let report = run(
        Some(&store),
        json!([
            trigger(),
            ds(
                2,
                "AddRecord",
                json!({"key": "p9", "overwrite": true, "data": {"age": "old"}})
            )
        ]),
        json!({}),
    )
    .await;
    let (name, message) = error_of(&report);
    assert_eq!(name, "DataError", "{report}");
    assert!(
        message.contains("\"age\"") && message.contains("number"),
        "{message}"
    );

    let report = run(
        Some(&store),
        json!([
            trigger(),
            ds(
                2,
                "UpdateRecord",
                json!({"key": "ghost", "data": {"age": 1}})
            )
        ]),
        json!({}),
    )
    .await;
    assert_eq!(error_of(&report).0, "DataError", "{report}");

    let unknown = json!([trigger(), {"id": 2, "module": "datastore:GetRecord", "parameters": {"datastore": "nope"}, "mapper": {"key": "a"}}]);
    let report = run(Some(&store), unknown.clone(), json!({})).await;
    let (name, message) = error_of(&report);
    assert_eq!(name, "InvalidConfigurationError", "{report}");
    assert!(
        message.contains("datastore:GetRecord") && message.contains("\"nope\""),
        "{message}"
    );

    let report = run(
        Some(&store),
        json!([trigger(), {"id": 2, "module": "datastore:SearchRecord", "parameters": {"datastore": "people"},
                           "mapper": {"filter": [[{"a": "age", "o": "number:around", "b": 1}]]}}]),
        json!({}),
    )
    .await;
    let (name, message) = error_of(&report);
    assert_eq!(name, "DataError", "{report}");
    assert!(message.contains("number:around"), "{message}");

    let report = run(None, unknown, json!({})).await;
    let (name, message) = error_of(&report);
    assert_eq!(name, "InvalidConfigurationError", "{report}");
    assert!(message.contains("--data-dir"), "{message}");

    // Delete one, then all.
    let report = run(
        Some(&store),
        json!([
            trigger(),
            ds(2, "DeleteRecord", json!({"key": "p2"})),
            ds(3, "CountRecords", json!({})),
            ds(4, "DeleteAllRecords", json!({})),
            ds(5, "CountRecords", json!({}))
        ]),
        json!({}),
    )
    .await;
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(outputs(&report, 3), [json!({"count": 2})]);
    assert_eq!(outputs(&report, 5), [json!({"count": 0})]);

    // A missing `datastore` parameter is a load error.
    let registry =
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback())
            .unwrap();
    let blueprint = json!({"name": "x", "flow": [trigger(), {"id": 2, "module": "datastore:GetRecord", "mapper": {"key": "a"}}]});
    let err = match switchyard::scenario::load(&blueprint.to_string(), &registry) {
        Ok(_) => panic!("a blueprint without parameters.datastore loaded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("parameters.datastore"), "{err}");
    store.close().await;
}

async fn cli_round_trip(db: TestDb) {
    let out = db.cli(&[
        "datastores",
        "create",
        "leads",
        "--fields",
        "email:text,count:number,seen:date",
    ]);
    let created = stdout_ok(&out, "create");
    assert!(
        created.contains("leads") && created.contains("email:text,count:number,seen:date"),
        "{created}"
    );
    let out = db.cli(&["datastores", "create", "leads"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = db.cli(&["datastores", "create", "bad", "--fields", "a:txet"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"txet\""));

    let list = stdout_json(&db.cli(&["datastores", "list", "--json"]), "list");
    assert_eq!(list["datastores"][0]["name"], "leads");
    assert_eq!(
        list["datastores"][0]["fields"][1],
        json!({"name": "count", "type": "number"})
    );

    // A run writes records (the scenario names the store by its id); a later process reads them.
    let id = list["datastores"][0]["id"].as_str().unwrap().to_string();
    let blueprint = db.write_json(
        "write.json",
        &json!({"name": "w", "flow": [
            {"id": 1, "module": "datastore:AddRecord", "parameters": {"datastore": id},
             "mapper": {"key": "a@x.org", "overwrite": true, "data": {"email": "a@x.org", "count": 1, "seen": "2026-05-01T10:00:00Z"}}}
        ]}),
    );
    let mut run_args: Vec<String> = vec!["run".into(), blueprint.to_string_lossy().into_owned()];
    run_args.extend(db.db_args());
    let out = std::process::Command::new(binary())
        .args(&run_args)
        .output()
        .unwrap();
    stdout_ok(&out, "run --data-dir");

    let show = stdout_ok(&db.cli(&["datastores", "show", "leads"]), "show");
    assert!(
        show.contains("records:   1") && show.contains("email:text,count:number,seen:date"),
        "{show}"
    );
    let exported = stdout_ok(&db.cli(&["datastores", "export", "leads"]), "export");
    assert_eq!(
        exported,
        "{\"key\":\"a@x.org\",\"data\":{\"email\":\"a@x.org\",\"count\":1,\"seen\":\"2026-05-01T10:00:00.000Z\"}}\n"
    );

    // Import: a wrong line is named and nothing is written; a good file is written.
    let bad = db.dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"key\":\"b\",\"data\":{\"count\":2}}\n{\"key\":\"c\",\"data\":{\"count\":\"two\"}}\n",
    )
    .unwrap();
    let out = db.cli(&["datastores", "import", "leads", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("\"count\""), "{err}");
    let good = db.dir.path().join("good.jsonl");
    std::fs::write(
        &good,
        format!("{exported}{{\"key\":\"b\",\"data\":{{\"count\":2}}}}\n"),
    )
    .unwrap();
    let imported = stdout_json(
        &db.cli(&[
            "datastores",
            "import",
            "leads",
            good.to_str().unwrap(),
            "--json",
        ]),
        "import",
    );
    assert_eq!(imported["imported"], 2);
    assert_eq!(imported["datastore"]["records"], 2);

    let deleted = stdout_ok(&db.cli(&["datastores", "delete", "leads"]), "delete");
    assert!(
        deleted.contains("leads") && deleted.contains("2 record"),
        "{deleted}"
    );
    let list = stdout_json(&db.cli(&["datastores", "list", "--json"]), "list");
    assert_eq!(list["datastores"], json!([]));
    let out = db.cli(&["datastores", "show", "leads"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

async fn api(db: TestDb) {
    let svc = db.serve(&[]).await;
    let api = &svc.api;
    let created = api
        .post(
            "/api/datastores",
            &json!({"name": "orders", "fields": "ref:text!,total:number", "maxSizeBytes": 10000}),
        )
        .await
        .expect(201, "create")
        .json;
    assert_eq!(created["name"], "orders");
    assert_eq!(created["maxSizeBytes"], 10000);
    let by_id = api
        .post(
            "/api/datastores",
            &json!({"name": "legacy", "id": 148248, "fields": [{"name": "n", "type": "number"}]}),
        )
        .await
        .expect(201, "create with Make's id")
        .json;
    assert_eq!(by_id["id"], "148248");
    let dup = api
        .post("/api/datastores", &json!({"name": "orders"}))
        .await
        .expect(409, "duplicate");
    assert_eq!(dup.json["error"]["code"], "conflict");
    let bad = api
        .post(
            "/api/datastores",
            &json!({"name": "x", "fields": "a:colour"}),
        )
        .await
        .expect(422, "bad type");
    assert_eq!(bad.json["error"]["path"], "fields");
    api.post("/api/datastores", &json!({"name": "x", "size": 1}))
        .await
        .expect(422, "unknown field");

    let lines: String = (0..5)
        .map(|i| format!("{{\"key\":\"o{i}\",\"data\":{{\"ref\":\"R{i}\",\"total\":{i}}}}}\n"))
        .collect();
    let import = |body: String| {
        let client = api.client.clone();
        let url = format!("{}/api/datastores/orders/import", api.base);
        async move {
            Reply::from(
                client
                    .post(url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let reply = import(lines.clone()).await.expect(200, "import");
    assert_eq!(reply.json["imported"], 5);
    let reply = import("{\"key\":\"o9\",\"data\":{\"total\":1}}\n".into())
        .await
        .expect(422, "import without a required field");
    assert!(
        reply.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1"),
        "{}",
        reply.text
    );
    let reply = import("{\"key\":\"o9\",\"data\":{\"ref\":\"R\"}}\nnot json\n".into())
        .await
        .expect(422, "import of a broken line");
    assert!(
        reply.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{}",
        reply.text
    );

    let shown = api
        .get("/api/datastores/orders")
        .await
        .expect(200, "show")
        .json;
    assert_eq!(shown["records"], 5);
    let list = api.get("/api/datastores").await.expect(200, "list").json;
    assert_eq!(list["datastores"].as_array().unwrap().len(), 2);

    let page = api
        .get("/api/datastores/orders/records?limit=2")
        .await
        .expect(200, "page 1")
        .json;
    assert_eq!(
        page["records"][0],
        json!({"key": "o0", "data": {"ref": "R0", "total": 0}})
    );
    assert_eq!(page["next"], "o1");
    let page = api
        .get("/api/datastores/orders/records?limit=2&after=o3")
        .await
        .expect(200, "last page")
        .json;
    assert_eq!(page["records"].as_array().unwrap().len(), 1);
    assert_eq!(page["next"], Value::Null);
    api.get("/api/datastores/orders/records?limit=0")
        .await
        .expect(400, "limit 0");

    let export = api
        .get("/api/datastores/orders/export")
        .await
        .expect(200, "export");
    assert_eq!(export.text, lines);
    assert_eq!(export.header("content-type"), Some("application/x-ndjson"));

    let openapi = api
        .get("/openapi.json")
        .await
        .expect(200, "OpenAPI document")
        .json;
    for path in [
        "/api/datastores",
        "/api/datastores/{reference}",
        "/api/datastores/{reference}/records",
        "/api/datastores/{reference}/export",
        "/api/datastores/{reference}/import",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "OpenAPI document lacks {path}"
        );
    }

    api.send(
        reqwest::Method::DELETE,
        "/api/datastores/orders",
        &Value::Null,
    )
    .await
    .expect(204, "delete");
    let gone = api.get("/api/datastores/orders").await.expect(404, "gone");
    assert_eq!(gone.json["error"]["code"], "not_found");
    api.get("/api/datastores/orders/export")
        .await
        .expect(404, "export of an unknown store");
}

/// Webhook → ExistRecord → filter `exist = false` → AddRecord (`overwrite: false`) → the counter.
/// The deliveries that lose the race fail at AddRecord by design, many in a row: `maxErrors: 0`
/// keeps Make's consecutive-errors rule from turning the scenario off halfway.
fn dedupe_scenario(counter: &str) -> Value {
    json!({"name": "dedupe", "metadata": {"scenario": {"maxErrors": 0}}, "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "dedupe"}},
        {"id": 2, "module": "datastore:ExistRecord", "parameters": {"datastore": "seen"},
         "mapper": {"key": "{{1.key}}"}},
        {"id": 3, "module": "datastore:AddRecord", "parameters": {"datastore": "seen"},
         "filter": {"name": "new key", "conditions": [[{"a": "{{2.exist}}", "o": "boolean:equal", "b": "false"}]]},
         "mapper": {"key": "{{1.key}}", "overwrite": false, "data": {}}},
        {"id": 4, "module": "http:MakeRequest", "mapper": {
            "url": format!("{counter}/count"), "method": "post", "contentType": "json",
            "inputMethod": "jsonString", "jsonStringBodyContent": "{\"n\": {{1.n}}}",
            "parseResponse": true}}
    ]})
}

async fn deliver_16(svc: &Service, hook: &str, n: u64) {
    let client = reqwest::Client::new();
    let url = svc.url(hook);
    let replies: Vec<Reply> =
        futures::stream::iter(0..16)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    hook_json(&client, &url, &json!({"key": format!("order-{n}"), "n": n})).await
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
    assert!(replies.iter().all(|r| r.status.is_success()), "{replies:?}");
}

async fn dedupe_once_per_key(db: TestDb) {
    let out = db.cli(&["datastores", "create", "seen"]);
    stdout_ok(&out, "create store");
    let (counter, counts) = counter_server(Duration::from_millis(5)).await;
    let svc = db
        .serve(&["--concurrency", "16", "--hook-rate", "100000"])
        .await;
    let (scenario, hook) = svc.api.create_active(&dedupe_scenario(&counter)).await;
    let hook = hook.expect("a hook");
    deliver_16(&svc, &hook, 1).await;
    let executions = svc.api.all_finished(&scenario, 16, 60).await;
    assert_eq!(executions.len(), 16);
    let ok = executions
        .iter()
        .filter(|e| e["status"] == "success")
        .count();
    assert!(ok >= 1, "{executions:?}");
    wait_distinct(&counts, 1, 30).await;
    // Let any straggler reach the counter before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = counts.lock().unwrap().clone();
    assert_eq!(seen.get(&1), Some(&1), "one downstream call: {seen:?}");

    // On PostgreSQL: the same with two worker processes doing the work.
    if db.backend == Backend::Postgres {
        let mut svc = svc;
        svc.kill();
        let svc = db.serve(&["--no-workers", "--hook-rate", "100000"]).await;
        let _workers = [
            db.worker(&["--concurrency", "8", "--heartbeat-seconds", "1"]),
            db.worker(&["--concurrency", "8", "--heartbeat-seconds", "1"]),
        ];
        deliver_16(&svc, &hook, 2).await;
        let executions = svc.api.all_finished(&scenario, 32, 90).await;
        assert_eq!(executions.len(), 32);
        wait_distinct(&counts, 2, 30).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = counts.lock().unwrap().clone();
        assert_eq!(seen.get(&2), Some(&1), "one downstream call: {seen:?}");
    }
}
