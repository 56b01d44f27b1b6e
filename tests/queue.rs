//! The job queue on every backend. The queue is the executions table: webhook deliveries are
//! group-committed by the store writer as queued executions, executions run by the accepting
//! process are never queued (and are taken over when it dies), workers wake when executions
//! are queued, two processes run each execution once, and one that keeps crashing its worker
//! is not run forever.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::backends::{TestDb, each_backend};
use serde_json::json;
use switchyard::catalog::{Catalog, CatalogOptions};
use switchyard::queue::{
    Completions, ExecutionPayload, Intake, Queue, QueueOptions, ResumePoint, RunHere, Runner,
    RunnerOptions, SLOT_WAIT,
};
use switchyard::store::{
    Delivery, ExecutionOutcome, ExecutionSource, ExecutionStatus, FinalStatus, NewDelivery,
    NewExecution, Store, StorePool, now_ms,
};

const BLUEPRINT: &str = r#"{"name": "Echo", "flow": [
    {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
    {"id": 2, "module": "util:SetVariable2", "mapper": {"name": "n", "value": "{{1.n}}"}}
]}"#;

/// Executions waiting in the queue (`queued`): the queue's jobs.
async fn jobs(store: &Store) -> i64 {
    const SQL: &str = "SELECT COUNT(*) FROM executions WHERE status = 'queued'";
    match store.pool() {
        StorePool::Sqlite(pool) => sqlx::query_scalar(SQL).fetch_one(pool).await.unwrap(),
        StorePool::Postgres(pool) => sqlx::query_scalar(SQL).fetch_one(pool).await.unwrap(),
    }
}

/// Whether execution `id` waits in the queue for a worker.
async fn is_queued(store: &Store, id: &str) -> bool {
    store.get_execution(id).await.unwrap().status == ExecutionStatus::Queued
}

/// A runner with heartbeats every 100 ms: a claim without one for 300 ms counts as a dead
/// worker's.
fn runner(store: &Store, queue: &Queue) -> Arc<Runner> {
    runner_beating(store, queue, Duration::from_millis(100))
}

/// A runner whose claims send a heartbeat every `heartbeat` (dead after three missed).
fn runner_beating(store: &Store, queue: &Queue, heartbeat: Duration) -> Arc<Runner> {
    let registry = Arc::new(
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback())
            .unwrap(),
    );
    let catalog = Catalog::new(store.clone(), registry, CatalogOptions::default());
    let options = RunnerOptions {
        heartbeat,
        ..RunnerOptions::default()
    };
    Arc::new(Runner::new(catalog, queue, options, Completions::default()).unwrap())
}

/// Workers on the queue until the returned sender is used (or dropped).
fn start_worker(
    queue: &Queue,
    store: &Store,
    concurrency: usize,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), switchyard::queue::QueueError>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (queue, runner) = (queue.clone(), runner(store, queue));
    let worker = tokio::spawn(async move {
        queue
            .work("test-worker", runner, concurrency, async {
                let _ = stopped.await;
            })
            .await
    });
    (stop, worker)
}

/// The test's store, a queue on it, and a scenario of `blueprint` with its webhook's id.
async fn hooked(db: &TestDb, name: &str, blueprint: &str) -> (Store, Queue, String, String) {
    let store = db.store.clone();
    let queue = Queue::new(&store, QueueOptions::default());
    let (scenario, _) = store.create_scenario(name, blueprint).await.unwrap();
    let hook = store.ensure_hook(&scenario, 1).await.unwrap();
    (store, queue, scenario, hook)
}

async fn wait_for(store: &Store, ids: &[String], status: ExecutionStatus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut done = 0;
        for id in ids {
            if store.get_execution(id).await.unwrap().status == status {
                done += 1;
            }
        }
        if done == ids.len() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let mut late = Vec::new();
            for id in ids {
                let e = store.get_execution(id).await.unwrap();
                if e.status != status {
                    late.push(format!("{id}: {:?} attempt {}", e.status, e.attempt));
                }
            }
            panic!(
                "{done} of {} executions reached {status:?}; {late:?}",
                ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_are_queued_with_their_jobs_and_run_once() {
    each_backend(|db| async move {
        let (store, queue, scenario, hook) = hooked(&db, "Echo", BLUEPRINT).await;
        let intake = Intake::new(runner(&store, &queue), 0, SLOT_WAIT);

        // 200 deliveries at once: they share transactions, and each gets its own answer.
        let mut handles = Vec::new();
        for n in 0..200 {
            let (intake, hook, scenario) = (intake.clone(), hook.clone(), scenario.clone());
            handles.push(tokio::spawn(async move {
                let key = (n % 50 == 0).then(|| format!("evt-{}", n % 100));
                let delivery =
                    NewDelivery::new(&hook, key.as_deref(), &scenario, 1, &json!({"n": n}))
                        .unwrap();
                intake.accept(delivery, RunHere::IfFree).await.unwrap()
            }));
        }
        let mut accepted = Vec::new();
        let mut duplicates = 0;
        for h in handles {
            match h.await.unwrap() {
                Delivery::Accepted { execution_id } => accepted.push(execution_id),
                Delivery::Duplicate { .. } => duplicates += 1,
            }
        }
        // Keys evt-0 (n = 0, 100) and evt-50 (n = 50, 150): one of each pair is a duplicate.
        assert_eq!((accepted.len(), duplicates), (198, 2));
        assert_eq!(jobs(&store).await, 198, "each accepted delivery is queued");

        // A delivery that cannot be stored fails alone, in the middle of good ones.
        let mut handles = Vec::new();
        for n in 0..20 {
            let (intake, hook, scenario) = (intake.clone(), hook.clone(), scenario.clone());
            handles.push(tokio::spawn(async move {
                let version = if n == 7 { 42 } else { 1 };
                let delivery =
                    NewDelivery::new(&hook, None, &scenario, version, &json!({"n": n})).unwrap();
                intake.accept(delivery, RunHere::IfFree).await
            }));
        }
        let mut failed = 0;
        for h in handles {
            match h.await.unwrap() {
                Ok(Delivery::Accepted { execution_id }) => accepted.push(execution_id),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => {
                    assert!(e.to_string().contains("v42"), "{e}");
                    failed += 1;
                }
            }
        }
        assert_eq!(failed, 1);
        assert_eq!(jobs(&store).await, 217);

        // Workers run each once, and nothing is left queued.
        let (stop, worker) = start_worker(&queue, &store, 8);
        wait_for(&store, &accepted, ExecutionStatus::Success).await;
        for id in &accepted {
            assert_eq!(store.get_execution(id).await.unwrap().attempt, 1, "{id}");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while jobs(&store).await > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(jobs(&store).await, 0, "every queued execution ran");
        let _ = stop.send(());
        worker.await.unwrap().unwrap();
    })
    .await;
}

/// Idle workers wait for no poll: polls an hour apart, executions queued by the workers'
/// own process start at once, and on PostgreSQL so do those another process queues
/// (LISTEN/NOTIFY from the executions table's trigger). Two processes' workers on one
/// database run each execution once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_wake_when_executions_are_queued_and_two_processes_run_each_once() {
    each_backend(|db| async move {
        let store = db.store.clone();
        let other = db.another_store().await;
        let hourly = QueueOptions {
            poll_interval: Duration::from_secs(3600),
            ..QueueOptions::default()
        };
        let (queue, other_queue) = (
            Queue::new(&store, hourly.clone()),
            Queue::new(&other, hourly),
        );
        let (scenario, _) = store.create_scenario("Echo", BLUEPRINT).await.unwrap();
        let (stop, worker) = start_worker(&queue, &store, 4);
        let (other_stop, other_worker) = start_worker(&other_queue, &other, 4);
        // Both have looked at the empty queue and wait.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let mut ids = Vec::new();
        for n in 0..60 {
            ids.push(
                queue
                    .run_now(&scenario, Some(&json!({"n": n})))
                    .await
                    .unwrap(),
            );
        }
        wait_for(&store, &ids, ExecutionStatus::Success).await;
        for id in &ids {
            assert_eq!(store.get_execution(id).await.unwrap().attempt, 1, "{id}");
        }
        assert_eq!(jobs(&store).await, 0);
        let _ = stop.send(());
        worker.await.unwrap().unwrap();

        if matches!(store.pool(), StorePool::Postgres(_)) {
            // Only the other process works now: it hears of this one's execution.
            let id = queue
                .run_now(&scenario, Some(&json!({"n": "far"})))
                .await
                .unwrap();
            wait_for(&store, std::slice::from_ref(&id), ExecutionStatus::Success).await;
        }
        let _ = other_stop.send(());
        other_worker.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_executions_run_here_unqueued_and_are_taken_over_if_their_process_dies() {
    each_backend(|db| async move {
        let (store, queue, scenario, hook) = hooked(&db, "Echo", BLUEPRINT).await;
        let delivery =
            |n: i64| NewDelivery::new(&hook, None, &scenario, 1, &json!({"n": n})).unwrap();

        // No worker runs here: whatever runs, the intake's direct path ran it. (With more
        // deliveries in flight than slots, the rest would wait for the workers.)
        let intake = Intake::new(runner(&store, &queue), 16, SLOT_WAIT);
        let mut direct = Vec::new();
        for n in 0..10 {
            match intake.accept(delivery(n), RunHere::IfFree).await.unwrap() {
                Delivery::Accepted { execution_id } => {
                    assert!(!is_queued(&store, &execution_id).await, "never queued");
                    direct.push(execution_id);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        wait_for(&store, &direct, ExecutionStatus::Success).await;
        assert_eq!(jobs(&store).await, 0);

        // Not allowed to run here (a sequential scenario's): queued for the workers.
        let Delivery::Accepted {
            execution_id: queued,
        } = intake.accept(delivery(99), RunHere::No).await.unwrap()
        else {
            panic!("expected a new delivery")
        };
        assert!(is_queued(&store, &queued).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            store.get_execution(&queued).await.unwrap().status,
            ExecutionStatus::Queued,
            "left to the workers"
        );

        // A process that accepted an execution to run itself, and died: the execution stays
        // `running`, never queued; once its heartbeats are missed it is runnable again.
        let mut orphan = delivery(7);
        orphan.claim_for("a-dead-process");
        let mut tx = store.begin_write().await.unwrap();
        tx.accept_deliveries(std::slice::from_ref(&orphan))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let orphan = orphan.execution_id().to_string();
        assert!(!is_queued(&store, &orphan).await);
        let silent_for = Duration::from_millis(200);
        let runnable = || async {
            let alive_since = now_ms() - silent_for.as_millis() as i64;
            store.runnable_executions(10, alive_since).await.unwrap()
        };
        assert_eq!(
            runnable().await,
            vec![queued.clone()],
            "its heartbeats are not missed yet"
        );
        tokio::time::sleep(silent_for * 2).await;
        assert_eq!(
            runnable().await,
            vec![orphan.clone(), queued.clone()],
            "the silent one first, then the queued one"
        );
        let (stop, worker) = start_worker(&queue, &store, 2);
        wait_for(&store, &[orphan.clone(), queued], ExecutionStatus::Success).await;
        let recovered = store.get_execution(&orphan).await.unwrap();
        assert_eq!(recovered.attempt, 2, "run again by a worker");
        let _ = stop.send(());
        worker.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_waiting_for_a_reply_waits_for_a_run_slot_the_others_do_not() {
    const SLEEPY: &str = r#"{"name": "Sleepy", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
        {"id": 2, "module": "util:FunctionSleep", "mapper": {"duration": 1}}
    ]}"#;
    each_backend(|db| async move {
        let (store, queue, scenario, hook) = hooked(&db, "Sleepy", SLEEPY).await;
        let delivery = || NewDelivery::new(&hook, None, &scenario, 1, &json!({})).unwrap();
        let accepted = |d: Delivery| match d {
            Delivery::Accepted { execution_id } => execution_id,
            other => panic!("unexpected {other:?}"),
        };
        // One run slot, taken for a second by the first delivery; no worker runs, so what
        // has no job ran here.
        let intake = Intake::new(runner(&store, &queue), 1, Duration::from_secs(10));
        let first = accepted(intake.accept(delivery(), RunHere::IfFree).await.unwrap());
        assert!(!is_queued(&store, &first).await, "ran here");
        let not_waiting = accepted(intake.accept(delivery(), RunHere::IfFree).await.unwrap());
        assert!(is_queued(&store, &not_waiting).await, "queued at once");
        let waiting = accepted(intake.accept(delivery(), RunHere::Wait).await.unwrap());
        assert_eq!(
            store.get_execution(&first).await.unwrap().status,
            ExecutionStatus::Success,
            "it got the slot the first one left"
        );
        assert!(!is_queued(&store, &waiting).await, "runs here");
        wait_for(&store, &[waiting], ExecutionStatus::Success).await;

        // A slot wait shorter than the run: the waiting delivery goes to the queue too.
        let intake = Intake::new(runner(&store, &queue), 1, Duration::from_millis(50));
        let busy = accepted(intake.accept(delivery(), RunHere::IfFree).await.unwrap());
        let waited = accepted(intake.accept(delivery(), RunHere::Wait).await.unwrap());
        assert!(is_queued(&store, &waited).await, "queued after the wait");
        wait_for(&store, &[busy], ExecutionStatus::Success).await;
        assert_eq!(
            store.get_execution(&waited).await.unwrap().status,
            ExecutionStatus::Queued
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sequential_scenario_runs_in_arrival_order_across_processes() {
    each_backend(|db| async move {
        let blueprint = r#"{"name": "One at a time", "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
            {"id": 2, "module": "util:FunctionSleep", "mapper": {"duration": "1"}}
        ], "metadata": {"scenario": {"sequential": true}}}"#;
        let (scenario, _) = db.store.create_scenario("Seq", blueprint).await.unwrap();
        let payload = json!({});
        let mut ids = Vec::new();
        for _ in 0..3 {
            let new = NewExecution {
                scenario_id: &scenario,
                version: 1,
                source: switchyard::store::ExecutionSource::Webhook,
                payload: Some(&payload),
            };
            ids.push(db.store.create_execution(new).await.unwrap());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Two processes' runners, given the executions latest first.
        let other = db.another_store().await;
        let (queue, other_queue) = (
            Queue::new(&db.store, QueueOptions::default()),
            Queue::new(&other, QueueOptions::default()),
        );
        // Heartbeats every second: a loaded machine (CI runs the suites in parallel) can delay
        // 100 ms beats past the three that mark a worker dead, and then the other process
        // rightly takes the execution over — which is not what this test is about.
        let beat = Duration::from_secs(1);
        let (first, second) = (
            runner_beating(&db.store, &queue, beat),
            runner_beating(&other, &other_queue, beat),
        );
        let runs = [
            (second.clone(), ids[2].clone()),
            (first.clone(), ids[1].clone()),
            (second.clone(), ids[0].clone()),
        ]
        .map(|(runner, id)| tokio::spawn(async move { runner.execute(&id).await }));
        for run in runs {
            run.await.unwrap().unwrap();
        }
        let mut finished = Vec::new();
        for id in &ids {
            let e = db.store.get_execution(id).await.unwrap();
            assert_eq!(e.status, ExecutionStatus::Success, "{id}");
            finished.push(e.finished_at.unwrap());
        }
        for pair in finished.windows(2) {
            assert!(
                pair[1] - pair[0] >= 900,
                "each starts after the one before it ends: finished at {finished:?}"
            );
        }
    })
    .await;
}

/// What the queue hands out, pinned on both backends (the queue owns its table: there is no
/// other): running executions whose worker is silent, then queued ones, each oldest first,
/// up to the limit; never a running one with a live worker, nor one that has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runnable_executions_are_the_silent_running_then_the_queued_oldest_first() {
    each_backend(|db| async move {
        let store = db.store.clone();
        let (scenario, _) = store.create_scenario("Echo", BLUEPRINT).await.unwrap();
        let payload = json!({"n": 1});
        let new = NewExecution {
            scenario_id: &scenario,
            version: 1,
            source: ExecutionSource::Manual,
            payload: Some(&payload),
        };
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(store.create_execution(new).await.unwrap());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let [silent, live, queued, ended, last] = <[String; 5]>::try_from(ids).unwrap();
        store
            .claim_execution(&silent, "dead", 3)
            .await
            .unwrap()
            .unwrap();
        store
            .claim_execution(&live, "alive", 3)
            .await
            .unwrap()
            .unwrap();
        let outcome = ExecutionOutcome {
            status: FinalStatus::Success,
            operations: 0,
            cycles: 0,
            report: None,
            error: None,
            trigger: None,
        };
        assert!(store.finish_execution(&ended, outcome).await.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(store.heartbeat_execution(&live, "alive").await.unwrap());
        let alive_since = now_ms() - 25;
        assert_eq!(
            store.runnable_executions(10, alive_since).await.unwrap(),
            vec![silent.clone(), queued.clone(), last.clone()]
        );
        assert_eq!(
            store.runnable_executions(2, alive_since).await.unwrap(),
            vec![silent.clone(), queued.clone()],
            "up to the limit"
        );
        // Nobody is silent yet: only the queued ones.
        assert_eq!(
            store.runnable_executions(10, 0).await.unwrap(),
            vec![queued, last]
        );
    })
    .await;
}

/// A worker runs what is queued once, never an execution that ended before it looked, and
/// goes on running what comes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_each_queued_execution_once_and_never_one_that_ended() {
    each_backend(|db| async move {
        let store = db.store.clone();
        let queue = Queue::new(&store, QueueOptions::default());
        let (scenario, _) = store.create_scenario("Echo", BLUEPRINT).await.unwrap();
        let payload = json!({"n": 1});
        let new = NewExecution {
            scenario_id: &scenario,
            version: 1,
            source: ExecutionSource::Manual,
            payload: Some(&payload),
        };
        // Recorded (so queued) before any worker looks; one of them ends first.
        let first = store.create_execution(new).await.unwrap();
        let finished = store.create_execution(new).await.unwrap();
        let outcome = ExecutionOutcome {
            status: FinalStatus::Success,
            operations: 7,
            cycles: 1,
            report: None,
            error: None,
            trigger: None,
        };
        assert!(store.finish_execution(&finished, outcome).await.unwrap());
        let (stop, worker) = start_worker(&queue, &store, 2);
        wait_for(
            &store,
            std::slice::from_ref(&first),
            ExecutionStatus::Success,
        )
        .await;
        let e = store.get_execution(&finished).await.unwrap();
        assert_eq!(
            (e.attempt, e.operations),
            (0, 7),
            "never claimed, never run"
        );

        // The same worker goes on running executions, each once.
        let last = queue.run_now(&scenario, Some(&payload)).await.unwrap();
        wait_for(
            &store,
            std::slice::from_ref(&last),
            ExecutionStatus::Success,
        )
        .await;
        assert!(!worker.is_finished(), "the worker is still running");
        for id in [&first, &last] {
            assert_eq!(store.get_execution(id).await.unwrap().attempt, 1, "{id}");
        }
        assert_eq!(jobs(&store).await, 0);
        let _ = stop.send(());
        worker.await.unwrap().unwrap();
    })
    .await;
}

/// A runner asked to run an execution a live worker is running (a waiting sub-scenario call
/// whose callee a worker took first, a process that just died) does not run it a second
/// time: it waits while that worker's heartbeats are recent, and takes the execution over
/// only once the worker has been silent for three heartbeats; if the worker finishes it
/// meanwhile, the runner ends without a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_workers_running_execution_is_never_claimed() {
    each_backend(|db| async move {
        let (store, queue, scenario, _) = hooked(&db, "Echo", BLUEPRINT).await;
        let payload = json!({"n": 1});
        let new = NewExecution {
            scenario_id: &scenario,
            version: 1,
            source: ExecutionSource::Manual,
            payload: Some(&payload),
        };
        let runner = runner(&store, &queue);
        // An execution run by worker "alive", and its job handed out again to `runner`.
        let handed_out_again = || async {
            let id = store.create_execution(new).await.unwrap();
            store
                .claim_execution(&id, "alive", 3)
                .await
                .unwrap()
                .unwrap();
            let (runner, job) = (runner.clone(), id.clone());
            (id, tokio::spawn(async move { runner.execute(&job).await }))
        };

        // Alive, then silent: taken over once presumed dead.
        let (id, waiting) = handed_out_again().await;
        for _ in 0..6 {
            assert!(store.heartbeat_execution(&id, "alive").await.unwrap());
            tokio::time::sleep(Duration::from_millis(100)).await;
            let e = store.get_execution(&id).await.unwrap();
            assert_eq!(e.status, ExecutionStatus::Running);
            assert_eq!((e.attempt, e.worker_id.as_deref()), (1, Some("alive")));
            assert!(
                !waiting.is_finished(),
                "the job ended while its worker lives"
            );
        }
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("taken over once silent")
            .unwrap()
            .unwrap();
        let e = store.get_execution(&id).await.unwrap();
        assert_eq!(e.status, ExecutionStatus::Success, "{:?}", e.error);
        assert_eq!(e.attempt, 2);
        assert_ne!(e.worker_id.as_deref(), Some("alive"));

        // Alive, then finished by its worker: the job ends, nothing runs again.
        let (id, waiting) = handed_out_again().await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!waiting.is_finished());
        let report = json!({"status": "success"});
        let outcome = ExecutionOutcome {
            status: FinalStatus::Success,
            operations: 1,
            cycles: 1,
            report: Some(&report),
            error: None,
            trigger: None,
        };
        assert!(store.finish_execution(&id, outcome).await.unwrap());
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the job ends once its execution is finished")
            .unwrap()
            .unwrap();
        let e = store.get_execution(&id).await.unwrap();
        assert_eq!((e.attempt, e.operations), (1, 1), "not run again");
        assert!(store.module_data(&id).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_payload_round_trips_and_a_malformed_one_ends_its_execution() {
    each_backend(|db| async move {
        let store = db.store.clone();
        let queue = Queue::new(&store, QueueOptions::default());
        let (scenario, _) = store.create_scenario("Echo", BLUEPRINT).await.unwrap();
        let create = |payload: Option<serde_json::Value>| {
            let store = store.clone();
            let scenario = scenario.clone();
            async move {
                let new = NewExecution {
                    scenario_id: &scenario,
                    version: 1,
                    source: ExecutionSource::Retry,
                    payload: payload.as_ref(),
                };
                store.create_execution(new).await.unwrap()
            }
        };

        // What a retry stores is what the runner reads.
        let point = ResumePoint {
            incomplete: None,
            module: 2,
            bundle: json!({"1": {"n": "resumed"}}).as_object().cloned().unwrap(),
        };
        let payload = ExecutionPayload::Resume(point);
        let resumed = create(payload.to_stored()).await;
        let stored = store.get_execution(&resumed).await.unwrap();
        assert_eq!(
            ExecutionPayload::from_stored(stored.source, stored.payload.clone()),
            Ok(payload)
        );
        let runner = runner(&store, &queue);
        runner.execute(&resumed).await.unwrap();
        let done = store.get_execution(&resumed).await.unwrap();
        assert_eq!(done.status, ExecutionStatus::Success, "{:?}", done.error);
        let outputs = store.module_data(&resumed).await.unwrap();
        assert_eq!(outputs.len(), 1, "resumed at module 2");
        assert_eq!(outputs[0].output, json!({"n": "resumed"}));

        // A resume that cannot be read ends its execution with an error saying where,
        // instead of running from a default module.
        let malformed = create(Some(json!({"resume": {"module": "two", "bundle": {}}}))).await;
        runner.execute(&malformed).await.unwrap();
        let ended = store.get_execution(&malformed).await.unwrap();
        assert_eq!(ended.status, ExecutionStatus::Error);
        let error = ended.error.expect("an error is recorded");
        assert_eq!(error["name"], "DataError", "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("payload cannot be read") && message.contains("resume.module"),
            "{message}"
        );
        assert!(store.module_data(&malformed).await.unwrap().is_empty());
    })
    .await;
}

/// An execution whose runs kept ending with their process (claimed, never finished) is run
/// at most `max_run_attempts` times: over the cap, the worker that finds it silent does not
/// start it again; it ends as error "crashed the worker N times". One below the cap still
/// runs. The scenario's HTTP call counts the runs that really happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_that_keeps_crashing_its_worker_is_not_run_forever() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    each_backend(|db| async move {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let app = axum::Router::new().route(
            "/count",
            axum::routing::any(move || {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }
            }),
        );
        let addr = common::server::serve(app).await;
        let blueprint = json!({"name": "Counted", "flow": [
            {"id": 1, "module": "http:MakeRequest",
             "mapper": {"url": format!("http://{addr}/count"), "method": "get"}}
        ]})
        .to_string();
        let store = db.store.clone();
        let options = QueueOptions {
            max_run_attempts: 3,
            ..QueueOptions::default()
        };
        let queue = Queue::new(&store, options);
        let (scenario, _) = store.create_scenario("Counted", &blueprint).await.unwrap();
        // Claimed `claims` times by processes that died mid-run.
        let crashed = |claims: u32| {
            let (store, scenario) = (store.clone(), scenario.clone());
            async move {
                let id = store
                    .create_execution(NewExecution {
                        scenario_id: &scenario,
                        version: 1,
                        source: ExecutionSource::Manual,
                        payload: None,
                    })
                    .await
                    .unwrap();
                for n in 0..claims {
                    let dead = format!("dead-{n}");
                    store.claim_execution(&id, &dead, 3).await.unwrap().unwrap();
                }
                id
            }
        };
        let over_cap = crashed(3).await;
        let below_cap = crashed(2).await;
        let crash_error = json!({
            "name": "QueueError",
            "message": "crashed the worker 3 times; not run again",
        });

        // Once both are silent, a worker finds them: it ends the one over the cap and runs
        // the other.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (stop, worker) = start_worker(&queue, &store, 2);
        wait_for(
            &store,
            std::slice::from_ref(&below_cap),
            ExecutionStatus::Success,
        )
        .await;
        wait_for(
            &store,
            std::slice::from_ref(&over_cap),
            ExecutionStatus::Error,
        )
        .await;
        let e = store.get_execution(&over_cap).await.unwrap();
        assert_eq!(e.error, Some(crash_error));
        assert_eq!(e.attempt, 3, "the refused claim counts no attempt");
        assert_eq!(store.get_execution(&below_cap).await.unwrap().attempt, 3);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "only the execution below the cap ran its modules"
        );
        // Ended for good: a further claim neither runs nor reopens it.
        assert!(
            store
                .claim_execution(&over_cap, "w", 10)
                .await
                .unwrap()
                .is_none()
        );
        let _ = stop.send(());
        worker.await.unwrap().unwrap();
    })
    .await;
}

/// Submitting has one failure behaviour (issue 23 point 2): recording the execution is the
/// acceptance and the queueing at once (a queued execution is the queue's job: there is no
/// second write to fail), so the caller gets the id of an execution that is queued with its
/// payload; an execution that cannot be recorded is an error and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_execution_is_queued_by_its_record_alone() {
    each_backend(|db| async move {
        let (store, queue, scenario, _hook) = hooked(&db, "Echo", BLUEPRINT).await;
        let execution = queue
            .run_now(&scenario, Some(&json!({"n": 1})))
            .await
            .expect("recorded, so accepted");
        let recorded = store.get_execution(&execution).await.unwrap();
        assert_eq!(recorded.status, ExecutionStatus::Queued);
        assert_eq!(recorded.payload, Some(json!({"n": 1})));
        assert_eq!(jobs(&store).await, 1);

        // Nothing recorded: the caller is told, and no execution exists.
        let missing = "0123456789abcdef0123456789abcdef";
        let error = queue.run_now(missing, None).await.unwrap_err();
        assert!(
            matches!(&error, switchyard::queue::QueueError::Store(e) if e.is_not_found()),
            "{error}"
        );
        assert_eq!(jobs(&store).await, 1);
    })
    .await;
}
