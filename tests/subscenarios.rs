//! Sub-scenarios through the service on every backend: a caller's
//! `scenario-service:CallSubscenario` starts the callee as an execution of its own (stored,
//! linked both ways), a waiting call gets the callee's `ReturnData` outputs, a call that does
//! not wait gets the callee's execution id, inputs are checked against their declared types
//! before anything is stored, and cycles and nesting deeper than the limit are refused naming
//! the chain. The exports are `tests/data/exports/subscenario-*.json`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::backends::{TestDb, each_backend};
use serde_json::{Value, json};
use switchyard::catalog::{Catalog, CatalogOptions};
use switchyard::queue::{Completions, Queue, QueueOptions, Runner, RunnerOptions};
use switchyard::store::{ExecutionSource, ExecutionStatus, NewExecution, Store};

fn export(file: &str) -> String {
    let path = format!("{}/tests/data/exports/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).expect("export file")
}

/// The test's catalog and queue, with workers running until the test ends.
struct Service {
    store: Store,
    catalog: Catalog,
    queue: Queue,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn service(db: &TestDb) -> Service {
    let store = db.store.clone();
    let queue = Queue::new(&store, QueueOptions::default());
    let registry = Arc::new(switchyard::apps::AppRegistry::build(Default::default()).unwrap());
    let catalog = Catalog::new(store.clone(), registry, CatalogOptions::default());
    let options = RunnerOptions {
        heartbeat: Duration::from_millis(200),
        ..RunnerOptions::default()
    };
    let runner = Runner::new(catalog.clone(), &queue, options, Completions::default())
        .unwrap()
        .shared();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker_queue = queue.clone();
    tokio::spawn(async move {
        worker_queue
            .work("test-worker", runner, 2, async {
                let _ = stopped.await;
            })
            .await
    });
    Service {
        store,
        catalog,
        queue,
        _stop: stop,
    }
}

impl Service {
    /// Stores `blueprint` (active when `active`) and returns its id.
    async fn scenario(&self, blueprint: &str, active: bool) -> String {
        let stored = self
            .catalog
            .create(blueprint)
            .await
            .expect("the blueprint loads");
        if active {
            self.catalog.set_active(&stored.id, true).await.unwrap();
        }
        stored.id
    }

    /// Runs scenario `id` now with `payload` (as the API's "run now" does) and waits for its end.
    async fn run(&self, id: &str, payload: Value) -> switchyard::store::Execution {
        let row = self.store.get_scenario(id).await.unwrap();
        let execution = self
            .store
            .create_execution(NewExecution {
                scenario_id: id,
                version: row.version,
                source: ExecutionSource::Manual,
                payload: Some(&payload),
            })
            .await
            .unwrap();
        self.queue.wake_workers();
        self.finished(&execution).await
    }

    async fn finished(&self, id: &str) -> switchyard::store::Execution {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let e = self.store.get_execution(id).await.unwrap();
            if e.status.is_terminal() {
                return e;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "execution {id} still {:?}",
                e.status
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn output(&self, execution: &str, module: u32) -> Vec<Value> {
        let page = self
            .store
            .module_page(execution, module, 0, 10)
            .await
            .unwrap();
        page.records.into_iter().map(|r| r.output).collect()
    }
}

fn error_message(e: &switchyard::store::Execution) -> String {
    e.error
        .as_ref()
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The caller export, calling the stored callee `callee` by Make's `SCN_<id>`.
fn caller_of(callee: &str) -> String {
    export("subscenario-caller.json").replace("SCN_ORDER_LOOKUP", &format!("SCN_{callee}"))
}

#[tokio::test]
async fn a_waiting_call_returns_the_callees_outputs_and_both_executions_are_linked() {
    each_backend(|db| async move {
        let s = service(&db).await;
        let callee = s.scenario(&export("subscenario-callee.json"), true).await;
        let caller = s.scenario(&caller_of(&callee), false).await;
        let run = s
            .run(
                &caller,
                json!({"order": "A-7", "qty": "3", "express": true}),
            )
            .await;
        assert_eq!(run.status, ExecutionStatus::Success, "{:?}", run.error);
        // Waited for: the callee's outputs, flat, with its declared `eta` that nothing returned.
        assert_eq!(
            s.output(&run.id, 2).await,
            [json!({"orderNumber": "A-7", "total": 30, "shipping": "express", "eta": null})]
        );
        // Not waited for: the id of the execution it queued.
        let started = s.output(&run.id, 3).await;
        let audit = started[0]["executionId"]
            .as_str()
            .expect("an execution id")
            .to_string();
        let audit_run = s.finished(&audit).await;
        assert_eq!(
            audit_run.status,
            ExecutionStatus::Success,
            "{:?}",
            audit_run.error
        );
        // The inputs were converted to their declared types, the default filled in.
        assert_eq!(
            audit_run.payload,
            Some(json!({"orderNumber": "A-7-audit", "quantity": 1, "express": null}))
        );
        assert_eq!(
            audit_run.report.as_ref().unwrap()["outputs"],
            json!({"orderNumber": "A-7-audit", "total": 10, "shipping": "standard"})
        );

        // History links both ways, as `GET /api/executions/{id}` shows them.
        let report = switchyard::api::execution_report(&s.store, &run)
            .await
            .unwrap();
        assert_eq!(report["calledBy"], Value::Null);
        let called = report["calledExecutions"].as_array().unwrap().clone();
        assert_eq!(called.len(), 2, "{called:?}");
        assert_eq!(called[0]["scenarioId"], json!(callee));
        assert_eq!(called[0]["module"], json!(2));
        assert_eq!(called[0]["status"], json!("success"));
        assert_eq!(called[1]["executionId"], json!(audit));
        assert_eq!(called[1]["module"], json!(3));
        let waited = called[0]["executionId"].as_str().unwrap();
        let child = s.store.get_execution(waited).await.unwrap();
        let child_report = switchyard::api::execution_report(&s.store, &child)
            .await
            .unwrap();
        assert_eq!(
            child_report["calledBy"],
            json!({"executionId": run.id, "scenarioId": caller, "module": 2, "status": "success"})
        );
        assert_eq!(
            child_report["outputs"],
            json!({"orderNumber": "A-7", "total": 30, "shipping": "express"})
        );
        assert_eq!(child_report["calledExecutions"], json!([]));
    })
    .await;
}

#[tokio::test]
async fn inputs_that_do_not_fit_their_declared_types_fail_the_call_before_anything_is_stored() {
    each_backend(|db| async move {
        let s = service(&db).await;
        let callee = s.scenario(&export("subscenario-callee.json"), true).await;
        let caller = s.scenario(&caller_of(&callee), false).await;
        let run = s
            .run(
                &caller,
                json!({"order": "", "qty": "many", "express": "maybe"}),
            )
            .await;
        assert_eq!(run.status, ExecutionStatus::Error);
        assert_eq!(run.error.as_ref().unwrap()["module"], json!(2));
        assert_eq!(run.error.as_ref().unwrap()["name"], json!("DataError"));
        assert_eq!(
            error_message(&run),
            "mapper.data.orderNumber: is required (text); \
             mapper.data.quantity: expected a number, got text \"many\"; \
             mapper.data.express: expected a boolean (true or false), got text \"maybe\""
        );
        let links = s.store.execution_links(&run.id).await.unwrap();
        assert!(links.called.is_empty(), "nothing was started: {links:?}");
    })
    .await;
}

#[tokio::test]
async fn inactive_or_uncallable_or_unknown_callees_are_refused_by_name() {
    each_backend(|db| async move {
        let s = service(&db).await;
        let inactive = s.scenario(&export("subscenario-callee.json"), false).await;
        let caller = s.scenario(&caller_of(&inactive), false).await;
        let run = s.run(&caller, json!({"order": "A-1"})).await;
        assert_eq!(run.status, ExecutionStatus::Error);
        assert_eq!(
            error_message(&run),
            format!("the called scenario «Order lookup» ({inactive}) is inactive: activate it to call it")
        );
        let plain = s
            .scenario(
                r#"{"name": "Plain", "flow": [{"id": 1, "module": "util:SetVariable2", "mapper": {"name": "a", "value": "1"}}]}"#,
                true,
            )
            .await;
        let caller = s.scenario(&caller_of(&plain), false).await;
        let run = s.run(&caller, json!({"order": "A-1"})).await;
        assert!(
            error_message(&run).contains("does not start with scenario-service:StartSubscenario"),
            "{}",
            error_message(&run)
        );
        let by_name = export("subscenario-caller.json").replace("SCN_ORDER_LOOKUP", "No such scenario");
        let caller = s.scenario(&by_name, false).await;
        let run = s.run(&caller, json!({"order": "A-1"})).await;
        assert_eq!(
            error_message(&run),
            "parameters.scenario: no scenario has the id or name \"No such scenario\""
        );
    })
    .await;
}

/// A callable scenario named `name` that calls `callee` (waiting) with its own `depth` + 1.
fn relay(name: &str, callee: &str) -> String {
    json!({
        "name": name,
        "flow": [
            {"id": 1, "module": "scenario-service:StartSubscenario", "version": 2,
             "metadata": {"interface": [{"name": "depth", "type": "number", "required": true}]}},
            {"id": 2, "module": "scenario-service:CallSubscenario", "version": 2,
             "parameters": {"scenario": callee},
             "mapper": {"data": {"depth": "{{var.input.depth + 1}}"}, "shouldWaitForExecutionEnd": true}},
            {"id": 3, "module": "scenario-service:ReturnData", "version": 2,
             "mapper": {"deepest": "{{ifempty(2.deepest; 1.depth)}}"}}
        ]
    })
    .to_string()
}

#[tokio::test]
async fn a_cycle_is_refused_naming_the_chain() {
    each_backend(|db| async move {
        let s = service(&db).await;
        // Ping calls Pong by name, Pong calls Ping: the second call of Ping is refused.
        let ping = s.scenario(&relay("Ping", "Pong"), true).await;
        let pong = s.scenario(&relay("Pong", "Ping"), true).await;
        let run = s.run(&ping, json!({"depth": 0})).await;
        assert_eq!(run.status, ExecutionStatus::Error);
        let message = error_message(&run);
        assert!(
            message.contains(&format!(
                "calling «Ping» again would make a cycle: «Ping» ({ping}) → «Pong» ({pong}) → «Ping» ({ping})"
            )),
            "{message}"
        );
    })
    .await;
}

#[tokio::test]
async fn calls_nest_at_most_ten_deep() {
    each_backend(|db| async move {
        let s = service(&db).await;
        // Level0 → Level1 → … → Level11; Level11 returns at once.
        let mut ids = Vec::new();
        let last = s
            .scenario(
                r#"{"name": "Level11", "flow": [
                    {"id": 1, "module": "scenario-service:StartSubscenario", "metadata": {"interface": [{"name": "depth", "type": "number"}]}},
                    {"id": 2, "module": "scenario-service:ReturnData", "mapper": {"deepest": "{{1.depth}}"}}]}"#,
                true,
            )
            .await;
        ids.push(last);
        for level in (0..11).rev() {
            let id = s.scenario(&relay(&format!("Level{level}"), &format!("Level{}", level + 1)), true).await;
            ids.push(id);
        }
        // Ten levels below Level1 work: Level1 → … → Level11 is ten calls.
        let run = s.run(&ids[10], json!({"depth": 1})).await;
        assert_eq!(run.status, ExecutionStatus::Success, "{:?}", run.error);
        assert_eq!(run.report.as_ref().unwrap()["outputs"], json!({"deepest": 11}));
        // From Level0 the eleventh call is refused, and every caller above fails with it.
        let run = s.run(&ids[11], json!({"depth": 0})).await;
        assert_eq!(run.status, ExecutionStatus::Error);
        let message = error_message(&run);
        assert!(message.contains("calls nest at most 10 deep: «Level0»"), "{message}");
        assert!(message.contains("→ «Level11»"), "{message}");
    })
    .await;
}

/// The service as `serve` wires it (API and console on one router, the queue's workers), on
/// 127.0.0.1; its base URL.
async fn http_service(s: &Service) -> String {
    let options = RunnerOptions {
        heartbeat: Duration::from_millis(200),
        ..RunnerOptions::default()
    };
    let runner = Runner::new(s.catalog.clone(), &s.queue, options, Completions::default())
        .unwrap()
        .shared();
    let state = switchyard::api::AppState::new(
        s.queue.clone(),
        runner,
        switchyard::api::token_hash(TOKEN),
        switchyard::api::HookLimits::default(),
        2,
    );
    let app = switchyard::api::app_with(
        state,
        switchyard::console::router(switchyard::console::ConsoleOptions::default()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

const TOKEN: &str = "subscenario-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_over_http_shows_the_call_in_the_api_and_links_both_ways_in_the_console() {
    each_backend(|db| async move {
        let s = service(&db).await;
        let base = http_service(&s).await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let callee = s.scenario(&export("subscenario-callee.json"), true).await;
        let caller = s.scenario(&caller_of(&callee), false).await;
        let started: Value = http
            .post(format!("{base}/api/scenarios/{caller}/run"))
            .bearer_auth(TOKEN)
            .body(r#"{"order": "H-1", "qty": 2, "express": "false"}"#)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let run = started["executionId"]
            .as_str()
            .expect("an execution id")
            .to_string();
        assert_eq!(s.finished(&run).await.status, ExecutionStatus::Success);
        let report: Value = http
            .get(format!("{base}/api/executions/{run}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let called = report["calledExecutions"]
            .as_array()
            .expect("the calls")
            .clone();
        assert_eq!(called.len(), 2, "{report}");
        let child = called[0]["executionId"].as_str().unwrap().to_string();
        let child_report: Value = http
            .get(format!("{base}/api/executions/{child}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(child_report["calledBy"]["executionId"], json!(run));
        assert_eq!(
            child_report["outputs"],
            json!({"orderNumber": "H-1", "total": 20, "shipping": "standard"})
        );

        // The console's execution pages link the two executions both ways.
        let login = http
            .post(format!("{base}/login"))
            .form(&[("token", TOKEN)])
            .send()
            .await
            .unwrap();
        let cookie = login.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let page = |id: String| {
            let (http, base, cookie) = (http.clone(), base.clone(), cookie.clone());
            async move {
                let reply = http
                    .get(format!("{base}/executions/{id}"))
                    .header("cookie", cookie)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(reply.status(), 200);
                reply.text().await.unwrap()
            }
        };
        let caller_page = page(run.clone()).await;
        assert!(caller_page.contains("Called scenarios"), "{caller_page}");
        assert!(caller_page.contains(&format!("href=\"/executions/{child}\"")));
        let child_page = page(child.clone()).await;
        assert!(child_page.contains("Called by"), "{child_page}");
        assert!(child_page.contains(&format!("href=\"/executions/{run}\"")));
        assert!(child_page.contains("Outputs"));
    })
    .await;
}
