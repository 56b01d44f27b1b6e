//! Incomplete executions end to end on a real SQLite store: Break parks a bundle, automatic
//! retries resume it at the failed module on Make's schedule, a success resolves it, and a
//! bundle that keeps failing is given up after its attempts.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use switchyard::catalog::{Catalog, CatalogOptions};
use switchyard::queue::retry::retry_due;
use switchyard::queue::{
    Completions, ExecutionPayload, Queue, QueueOptions, ResumePoint, Runner, RunnerOptions,
};
use switchyard::store::{
    ExecutionSource, ExecutionStatus, IncompleteStatus, NewExecution, Store, now_ms,
};

/// A loopback API that fails its first `failures` calls with 503.
async fn flaky_server(failures: usize) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/flaky",
        post(move || {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < failures {
                    (StatusCode::SERVICE_UNAVAILABLE, "busy")
                } else {
                    (StatusCode::OK, "done")
                }
            }
        }),
    );
    let url = format!("http://{}/flaky", common::server::serve(app).await);
    (url, calls)
}

fn blueprint(url: &str) -> String {
    json!({"name": "flaky", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
        {"id": 2, "module": "http:MakeRequest", "mapper": {"url": url, "method": "post"},
         "onerror": [{"id": 9, "module": "builtin:Break", "mapper": {"retry": true, "count": "2", "interval": "1"}}]},
        {"id": 3, "module": "util:SetVariable2", "mapper": {"name": "after", "value": "{{2.data}} for {{1.order}}"}}
    ], "metadata": {"scenario": {"dlq": true}}})
    .to_string()
}

struct Setup {
    _dir: tempfile::TempDir,
    store: Store,
    queue: Queue,
    runner: Runner,
    scenario: String,
}

async fn setup(url: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).await.unwrap();
    let queue = Queue::new(&store, QueueOptions::default());
    let registry = Arc::new(
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback())
            .unwrap(),
    );
    let catalog = Catalog::new(store.clone(), registry, CatalogOptions::default());
    let runner = Runner::new(
        catalog,
        &queue,
        RunnerOptions::default(),
        Completions::default(),
    )
    .unwrap();
    let (scenario, _) = store
        .create_scenario("flaky", &blueprint(url))
        .await
        .unwrap();
    Setup {
        _dir: dir,
        store,
        queue,
        runner,
        scenario,
    }
}

async fn run_webhook(s: &Setup) -> String {
    let payload = json!({"order": "A-7"});
    let new = NewExecution {
        scenario_id: &s.scenario,
        version: 1,
        source: ExecutionSource::Webhook,
        payload: Some(&payload),
    };
    let id = s.store.create_execution(new).await.unwrap();
    s.runner.execute(&id).await.unwrap();
    id
}

/// Executions created by retries, oldest first.
async fn retries(s: &Setup) -> Vec<String> {
    let filter = switchyard::store::ExecutionFilter {
        scenario_id: Some(s.scenario.clone()),
        status: None,
        limit: 100,
        before: None,
    };
    let mut rows = s.store.list_executions(&filter).await.unwrap();
    rows.reverse();
    rows.into_iter()
        .filter(|e| e.source == ExecutionSource::Retry)
        .map(|e| e.id)
        .collect()
}

#[tokio::test]
async fn a_parked_bundle_is_retried_at_the_failed_module_and_resolved() {
    let (url, calls) = flaky_server(1).await;
    let s = setup(&url).await;
    let first = run_webhook(&s).await;
    assert_eq!(
        s.store.get_execution(&first).await.unwrap().status,
        ExecutionStatus::Incomplete
    );
    let parked = s
        .store
        .list_incomplete(&s.scenario, None, 10)
        .await
        .unwrap();
    assert_eq!(parked.len(), 1);
    let next = parked[0]
        .next_attempt_at
        .expect("Break with retry schedules an attempt");
    assert!(
        (next - now_ms() - 60_000).abs() < 5_000,
        "first attempt one minute later, got {next}"
    );
    assert_eq!(parked[0].bundle, json!({"1": {"order": "A-7"}}));

    assert_eq!(
        retry_due(&s.store, &s.queue, now_ms()).await.unwrap(),
        0,
        "not due yet"
    );
    assert_eq!(retry_due(&s.store, &s.queue, next).await.unwrap(), 1);
    assert_eq!(
        retry_due(&s.store, &s.queue, next).await.unwrap(),
        0,
        "an attempt is taken once"
    );
    let retry = retries(&s).await;
    assert_eq!(retry.len(), 1);
    // The retry stores where and with what it resumes, read back as it was written.
    let queued = s.store.get_execution(&retry[0]).await.unwrap();
    assert_eq!(
        ExecutionPayload::from_stored(queued.source, queued.payload.clone()),
        Ok(ExecutionPayload::Resume(ResumePoint {
            incomplete: Some(parked[0].id.clone()),
            module: 2,
            bundle: json!({"1": {"order": "A-7"}}).as_object().cloned().unwrap(),
        }))
    );
    s.runner.execute(&retry[0]).await.unwrap();

    let done = s.store.get_execution(&retry[0]).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Success);
    // The flow resumed at module 2 with the parked bundle and went on to module 3.
    let outputs: Vec<Value> = s
        .store
        .module_data(&retry[0])
        .await
        .unwrap()
        .into_iter()
        .map(|m| json!({"module": m.module_id, "output": m.output}))
        .collect();
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    assert_eq!(
        outputs[1],
        json!({"module": 3, "output": {"after": "done for A-7"}})
    );
    assert_eq!(
        s.store.get_incomplete(&parked[0].id).await.unwrap().status,
        IncompleteStatus::Resolved
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_bundle_that_keeps_failing_is_given_up_after_its_attempts() {
    let (url, calls) = flaky_server(usize::MAX).await;
    let s = setup(&url).await;
    run_webhook(&s).await;
    let id = s
        .store
        .list_incomplete(&s.scenario, None, 10)
        .await
        .unwrap()[0]
        .id
        .clone();
    let mut now = now_ms();
    for attempt in 1..=2 {
        now += 61_000;
        assert_eq!(
            retry_due(&s.store, &s.queue, now).await.unwrap(),
            1,
            "attempt {attempt}"
        );
        let retry = retries(&s).await;
        s.runner.execute(retry.last().unwrap()).await.unwrap();
        assert_eq!(
            s.store
                .get_execution(retry.last().unwrap())
                .await
                .unwrap()
                .status,
            ExecutionStatus::Incomplete
        );
        assert_eq!(
            s.store
                .list_incomplete(&s.scenario, None, 10)
                .await
                .unwrap()
                .len(),
            1,
            "a failing retry parks no copy"
        );
    }
    assert_eq!(
        retry_due(&s.store, &s.queue, now + 61_000).await.unwrap(),
        0
    );
    let given_up = s.store.get_incomplete(&id).await.unwrap();
    assert_eq!(
        (given_up.status, given_up.attempts),
        (IncompleteStatus::Failed, 2)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
