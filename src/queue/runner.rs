//! Runs one queued execution: claims it in the store (compare-and-set), compiles its
//! scenario version (cached), runs the engine, stores the report, the per-module data and
//! any incomplete executions, and finishes it — once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use super::calls::CallService;
use super::engine_pool::EnginePool;
use super::gate::{Admission, PayloadGate};
use super::writer::{Finish, Parked, TriggerProgress, Writer};
use super::{ExecutionPayload, Queue};
use crate::catalog::Catalog;
use crate::engine::report::WebhookResponse;
use crate::engine::{Budget, Report, Responder, Resume, RunInput, Status};
use crate::module::connection::token_roots;
use crate::module::error::ErrorKind;
use crate::module::{
    ConnectionsHandle, ExecutionContext, Redactions, SubscenariosHandle, TriggerState,
};
use crate::scenario::Scenario;
use crate::store::{Execution, ExecutionOutcome, FinalStatus, Store, StoreError};

/// Why an execution could not be run (the execution itself failing is not an error here:
/// it is a finished execution with status `error`).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] Box<super::QueueError>),
}

impl From<super::QueueError> for RunnerError {
    fn from(e: super::QueueError) -> Self {
        RunnerError::Queue(Box::new(e))
    }
}

#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// This process's worker name, recorded on the executions it runs.
    pub worker_id: String,
    /// Per-module output bundles larger than this are stored as a truncation marker.
    pub module_data_cap: usize,
    /// How often a running execution proves its worker is alive.
    pub heartbeat: Duration,
    /// Threads of the runtime heavy executions move to ([`EnginePool`]).
    pub engine_threads: usize,
    /// Bytes of large payloads read or run at once ([`PayloadGate`]).
    pub payload_budget: usize,
    /// What each execution may spend (`engine::Budget`).
    pub budget: Budget,
    /// Where failures and deactivations are announced (`--notify-url`).
    pub notify: Option<super::Notifier>,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            worker_id: format!("worker-{}", std::process::id()),
            module_data_cap: 64 * 1024,
            heartbeat: Duration::from_secs(5),
            engine_threads: EnginePool::default_threads(),
            payload_budget: super::DEFAULT_PAYLOAD_BUDGET,
            budget: Budget::default(),
            notify: None,
        }
    }
}

/// How an execution that someone waited for ended, as far as this process knows.
#[derive(Debug, Clone)]
pub enum Finished {
    /// This process ran it: the scenario's `gateway:WebhookRespond` reply (the report's
    /// `response`), told as soon as that module runs (the execution goes on and is
    /// recorded afterwards); `None`, told once the execution is recorded, when it gave none.
    Ran { response: Option<WebhookResponse> },
    /// It had finished before (a repeated job) or is gone: read the store.
    Unknown,
}

/// Wakes whoever waits for an execution of this process to finish (a webhook caller
/// expecting a `gateway:WebhookRespond` reply).
#[derive(Clone, Default)]
pub struct Completions {
    waiting: Arc<Mutex<HashMap<String, Vec<oneshot::Sender<Finished>>>>>,
}

impl Completions {
    /// A receiver that resolves when execution `id` finishes in this process.
    pub fn subscribe(&self, id: &str) -> oneshot::Receiver<Finished> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.entry(id.to_string()).or_default().push(tx);
        }
        rx
    }

    pub fn forget(&self, id: &str) {
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.remove(id);
        }
    }

    fn notify(&self, id: &str, finished: Finished) {
        let senders = self.waiting.lock().ok().and_then(|mut w| w.remove(id));
        for tx in senders.into_iter().flatten() {
            let _ = tx.send(finished.clone());
        }
    }
}

/// How often an execution of a sequential scenario checks whether its turn has come.
const SEQUENTIAL_POLL: Duration = Duration::from_millis(100);

pub struct Runner {
    store: Store,
    catalog: Catalog,
    options: RunnerOptions,
    completions: Completions,
    /// One lock per sequential or polling scenario, so its executions run one at a time.
    sequential: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    executions_run: AtomicU64,
    run_millis: AtomicU64,
    /// Executions claimed by this process and not yet recorded.
    running: Arc<AtomicU64>,
    /// Set when the process is stopping: no new execution is claimed.
    draining: std::sync::atomic::AtomicBool,
    writer: Writer,
    /// Runs `engine::run`: here while light, on threads of its own once heavy.
    engine: EnginePool,
    /// Room for large payloads, shared with the process's intake.
    payload_gate: PayloadGate,
    /// Claims of one execution before it ends as crashed (the queue's
    /// [`super::QueueOptions::max_run_attempts`]).
    max_run_attempts: u32,
    /// The queue, for the executions this one's `CallSubscenario` modules start.
    queue: Queue,
    /// This runner, once shared ([`Runner::remember`]): waiting sub-scenario calls run their
    /// callee on it. Until then executions get no sub-scenario service.
    shared: std::sync::OnceLock<std::sync::Weak<Runner>>,
}

/// What a claim on an execution found.
enum Claim {
    /// This runner holds it now.
    Won(Box<Execution>),
    /// Open, and held by a worker with recent signs of life.
    Held,
    /// Ended (or never existed): nothing to run.
    Gone,
}

/// Counts one running execution for as long as it lives (even if its future is dropped).
struct RunningGuard(Arc<AtomicU64>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Runner {
    /// A runner for executions of the catalog's scenarios, which writes through a store
    /// writer of its own (also the one its process's [`super::Intake`] accepts deliveries
    /// through).
    pub fn new(
        catalog: Catalog,
        queue: &Queue,
        options: RunnerOptions,
        completions: Completions,
    ) -> std::io::Result<Runner> {
        let store = catalog.store().clone();
        Ok(Runner {
            engine: EnginePool::new(options.engine_threads)?,
            payload_gate: PayloadGate::new(options.payload_budget),
            writer: Writer::start(store.clone(), queue.clone(), options.module_data_cap),
            store,
            catalog,
            options,
            completions,
            sequential: Default::default(),
            executions_run: AtomicU64::new(0),
            run_millis: AtomicU64::new(0),
            running: Arc::new(AtomicU64::new(0)),
            draining: std::sync::atomic::AtomicBool::new(false),
            max_run_attempts: queue.max_run_attempts(),
            queue: queue.clone(),
            shared: std::sync::OnceLock::new(),
        })
    }

    /// This runner, shared, and known to itself (see [`Runner::remember`]).
    pub fn shared(self) -> Arc<Runner> {
        let runner = Arc::new(self);
        runner.remember();
        runner
    }

    /// Lets the runner hand its executions the sub-scenario service, which runs waited-for
    /// callees on this runner. The queue's workers and the intake call it with the runner
    /// they are given.
    pub fn remember(self: &Arc<Self>) {
        let _ = self.shared.set(Arc::downgrade(self));
    }

    pub(crate) fn writer(&self) -> &Writer {
        &self.writer
    }

    /// The process's budget for large payloads (see [`PayloadGate`]).
    pub fn payload_gate(&self) -> &PayloadGate {
        &self.payload_gate
    }

    pub fn completions(&self) -> &Completions {
        &self.completions
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// How many executions this process is running right now (a stopping service waits for
    /// them to finish).
    pub fn running(&self) -> u64 {
        self.running.load(Ordering::SeqCst)
    }

    /// Stops claiming executions: a job handed to this process from now on waits, unclaimed,
    /// until the process ends, and is handed out again after its heartbeats stop. The ones
    /// already running finish ([`Runner::running`] falls to 0).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Executions run by this process and the milliseconds they took in all.
    pub fn duration_totals(&self) -> (u64, u64) {
        (
            self.executions_run.load(Ordering::Relaxed),
            self.run_millis.load(Ordering::Relaxed),
        )
    }

    /// Runs execution `id` if it is still to be run; a finished one is left alone. While a
    /// live worker runs it, waits until that worker finishes it or is presumed dead (then
    /// takes it over): a waiting sub-scenario call needs its callee's end.
    pub async fn execute(&self, id: &str) -> Result<(), RunnerError> {
        if self.is_draining() {
            return std::future::pending().await;
        }
        self.running.fetch_add(1, Ordering::SeqCst);
        let _running = RunningGuard(self.running.clone());
        let _admission = self.admit(id).await?;
        loop {
            match self.claim(id).await? {
                Claim::Won(execution) => return self.run_to_the_end(*execution).await,
                Claim::Held => {
                    if self.is_draining() {
                        return std::future::pending().await;
                    }
                    tokio::time::sleep(self.options.heartbeat).await;
                }
                Claim::Gone => return Ok(()),
            }
        }
    }

    /// Runs execution `id`, which a queue worker found runnable, if this runner's claim wins;
    /// one another worker holds, or that has ended, is left alone. Claims nothing while the
    /// process is stopping.
    pub(crate) async fn run_found(&self, id: &str) -> Result<(), RunnerError> {
        if self.is_draining() {
            return Ok(());
        }
        self.running.fetch_add(1, Ordering::SeqCst);
        let _running = RunningGuard(self.running.clone());
        let _admission = self.admit(id).await?;
        match self.claim(id).await? {
            Claim::Won(execution) => self.run_to_the_end(*execution).await,
            Claim::Held | Claim::Gone => Ok(()),
        }
    }

    /// Room in the payload gate for execution `id`'s payload: a large one waits for room
    /// before it is read.
    async fn admit(&self, id: &str) -> Result<Admission, RunnerError> {
        match self.store.payload_bytes(id).await {
            Ok(bytes) => Ok(self.payload_gate.admit(bytes).await),
            Err(e) if e.is_not_found() => Ok(Admission::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// This runner's claim on execution `id` (see [`Claim`]). An execution that ended —
    /// finished, deleted, or ended by the claim as crashed (over `max_run_attempts`) — is
    /// reported to whoever waits for it here.
    async fn claim(&self, id: &str) -> Result<Claim, RunnerError> {
        let claimed = self
            .store
            .claim_execution_unless_alive(
                id,
                &self.options.worker_id,
                self.max_run_attempts,
                self.alive_since(),
            )
            .await;
        match claimed {
            Ok(Some(execution)) => Ok(Claim::Won(Box::new(execution))),
            Ok(None) if self.store.is_open(id).await? => Ok(Claim::Held),
            Ok(None) => {
                self.completions.notify(id, Finished::Unknown);
                Ok(Claim::Gone)
            }
            Err(e) if e.is_not_found() => {
                self.completions.notify(id, Finished::Unknown);
                Ok(Claim::Gone)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the process is stopping ([`Runner::drain`]).
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Runs an execution this worker claimed when it was created (see
    /// [`Runner::worker_id`]); otherwise as [`Runner::execute`].
    /// `_admission` (the payload's room in the [`PayloadGate`]) is held until it ends.
    pub async fn execute_claimed(
        &self,
        execution: Execution,
        _admission: Admission,
    ) -> Result<(), RunnerError> {
        if self.is_draining() {
            return std::future::pending().await;
        }
        self.running.fetch_add(1, Ordering::SeqCst);
        let _running = RunningGuard(self.running.clone());
        self.run_to_the_end(execution).await
    }

    /// The name this runner claims executions under.
    pub fn worker_id(&self) -> &str {
        &self.options.worker_id
    }

    /// Runs a claimed execution with heartbeats, records it and tells whoever waits.
    async fn run_to_the_end(&self, execution: Execution) -> Result<(), RunnerError> {
        let id = execution.id.clone();
        let heartbeat = self.spawn_heartbeat(&id);
        let result = self.run_claimed(execution).await;
        heartbeat.abort();
        // A `WebhookRespond` reply has been handed over when the module ran; whoever still
        // waits is told the execution ended without one.
        let finished = match &result {
            Ok(()) => Finished::Ran { response: None },
            Err(_) => Finished::Unknown,
        };
        self.completions.notify(&id, finished);
        result
    }

    /// Runs a claimed execution and records it.
    async fn run_claimed(&self, mut execution: Execution) -> Result<(), RunnerError> {
        let id = execution.id.as_str();
        let scenario = match self
            .catalog
            .compiled(&execution.scenario_id, execution.version)
            .await?
        {
            Ok(s) => s,
            Err(problem) => {
                return self
                    .end_unrun(
                        id,
                        ErrorKind::InvalidConfigurationError,
                        &problem.to_string(),
                    )
                    .await;
            }
        };
        let payload =
            match ExecutionPayload::from_stored(execution.source, execution.payload.take()) {
                Ok(payload) => payload,
                Err(problem) => {
                    return self
                        .end_unrun(id, ErrorKind::DataError, &problem.to_string())
                        .await;
                }
            };
        // A sequential scenario's executions run in arrival order across processes: wait for
        // earlier ones, wherever they run, before taking this process's lock (which an
        // earlier one here may still need).
        if scenario.settings.sequential {
            self.wait_for_earlier(&execution).await?;
        }
        // A polling trigger's executions run one at a time (in this process), each reading
        // the state the previous one committed: two polls never emit the same items.
        let polling = scenario.polling_trigger().map(|node| node.id);
        let lock = if scenario.settings.sequential || polling.is_some() {
            let mut locks = self.sequential.lock().await;
            Some(
                locks
                    .entry(execution.scenario_id.clone())
                    .or_default()
                    .clone(),
            )
        } else {
            None
        };
        let _guard = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let (bundles, resume, incomplete_id) = match payload {
            ExecutionPayload::Trigger(bundle) => (bundle.into_iter().collect(), None, None),
            ExecutionPayload::Resume(point) => (
                Vec::new(),
                Some(Resume {
                    module: point.module,
                    bundle: point.bundle,
                }),
                point.incomplete,
            ),
        };
        // The trigger's state, read under the lock; a resumed bundle reads it only when it
        // resumes at the trigger itself.
        let trigger_key = polling
            .filter(|&module| resume.as_ref().is_none_or(|r| r.module == module))
            .map(|_| scenario.trigger_key());
        // Its generation goes with the commit: a reset meanwhile drops this poll's progress.
        let mut generation = 0;
        let trigger = match &trigger_key {
            Some(key) => Some(
                self.store
                    .trigger_state(&execution.scenario_id, key)
                    .await?
                    .map(|stored| {
                        generation = stored.generation;
                        TriggerState {
                            cursor: stored.cursor,
                            seen_ids: stored.seen_ids,
                        }
                    })
                    .unwrap_or_default(),
            ),
            None => None,
        };
        let completions = self.completions.clone();
        let execution_id = id.to_string();
        let respond = Responder::new(move |response| {
            let response = Some(response.clone());
            completions.notify(&execution_id, Finished::Ran { response });
        });
        let mut extensions = self.catalog.services().clone();
        if let Some(me) = self.shared.get() {
            extensions.insert(SubscenariosHandle(Arc::new(CallService::new(
                self.catalog.clone(),
                self.queue.clone(),
                me.clone(),
            ))));
        }
        let redactions = Redactions::default();
        extensions.insert(redactions.clone());
        let roots = token_roots(extensions.get::<ConnectionsHandle>(), &bundles).await;
        let input = RunInput {
            bundles,
            context: ExecutionContext {
                execution_id: id.to_string(),
                scenario_id: Some(execution.scenario_id.clone()),
                extensions,
            },
            resume,
            trigger,
            respond: Some(respond),
            budget: self.options.budget,
            public_url: self.catalog.public_url().map(str::to_string),
            roots,
            ..RunInput::default()
        };
        let started = std::time::Instant::now();
        let mut report = self.engine.run(scenario.clone(), input).await;
        report.redact(&redactions.secrets());
        self.executions_run.fetch_add(1, Ordering::Relaxed);
        self.run_millis
            .fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        // A retry that parks its bundle again leaves the original incomplete execution
        // pending (its next attempt is already scheduled) instead of parking a copy.
        let park = incomplete_id.is_none();
        self.record(
            &execution.scenario_id,
            execution.version,
            id,
            &scenario,
            &report,
            park,
            trigger_key.as_deref().map(|key| (key, generation)),
        )
        .await?;
        if let (Some(incomplete), Status::Success) = (incomplete_id, report.status) {
            self.store.resolve_incomplete(&incomplete).await?;
        }
        Ok(())
    }

    /// Ends an execution that cannot be run (its scenario version does not compile, its
    /// payload cannot be read) with status `error` and a `kind` error saying why.
    async fn end_unrun(&self, id: &str, kind: ErrorKind, problem: &str) -> Result<(), RunnerError> {
        let error = serde_json::json!({"name": kind.name(), "message": problem});
        let outcome = ExecutionOutcome {
            status: FinalStatus::Error,
            operations: 0,
            cycles: 0,
            report: None,
            error: Some(&error),
            trigger: None,
        };
        self.store.finish_execution(id, outcome).await?;
        Ok(())
    }

    /// The oldest sign of life (milliseconds) of a worker still presumed alive: three
    /// missed heartbeats count as dead.
    pub(crate) fn alive_since(&self) -> i64 {
        crate::store::now_ms() - (self.options.heartbeat * 3).as_millis() as i64
    }

    /// Returns once no execution of the same scenario that arrived earlier is queued or
    /// running with signs of life (three missed heartbeats count as dead).
    async fn wait_for_earlier(&self, execution: &Execution) -> Result<(), RunnerError> {
        loop {
            let alive_since = self.alive_since();
            let earlier = self
                .store
                .earlier_open_execution(
                    &execution.scenario_id,
                    execution.created_at,
                    &execution.id,
                    alive_since,
                )
                .await?;
            if !earlier {
                return Ok(());
            }
            tokio::time::sleep(SEQUENTIAL_POLL).await;
        }
    }

    fn spawn_heartbeat(&self, id: &str) -> tokio::task::JoinHandle<()> {
        let (store, id, worker, every) = (
            self.store.clone(),
            id.to_string(),
            self.options.worker_id.clone(),
            self.options.heartbeat,
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match store.heartbeat_execution(&id, &worker).await {
                    Ok(true) => {}
                    // Finished, or claimed by another worker since: nothing to keep alive.
                    Ok(false) => break,
                    // The database is away for a moment: beat again at the next tick, or
                    // the execution would look abandoned once it is back.
                    Err(e) => {
                        tracing::debug!(execution = %id, error = %e, "heartbeat failed");
                    }
                }
            }
        })
    }

    /// Stores what the execution produced and finishes it; a polling trigger's committed
    /// state change (for `trigger_read`: its key and the generation read) is stored in the
    /// same transaction as the finish.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        scenario_id: &str,
        version: u32,
        id: &str,
        scenario: &Scenario,
        report: &Report,
        park: bool,
        trigger_read: Option<(&str, i64)>,
    ) -> Result<(), RunnerError> {
        // Stored with the finish, in its transaction: the execution ends with its parked
        // bundles or not at all.
        let now = crate::store::now_ms();
        let parked = report
            .incomplete
            .iter()
            .filter(|_| park)
            .map(|parked| {
                let error = serde_json::to_value(&parked.error).unwrap_or(Value::Null);
                Parked {
                    scenario_id: scenario_id.to_string(),
                    version,
                    module_id: parked.module,
                    bundle: Value::Object(parked.bundle.clone()),
                    next_attempt_at: super::retry::first_attempt_at(
                        Some(&error),
                        parked.retry.as_ref(),
                        now,
                    ),
                    error: Some(error),
                    retry: parked.retry.clone(),
                }
            })
            .collect();
        let status = match report.status {
            Status::Success => FinalStatus::Success,
            Status::Error => FinalStatus::Error,
            Status::Incomplete => FinalStatus::Incomplete,
        };
        // The log lives in the per-module data (size-capped, skipped when confidential).
        let json = report.to_json_without_log();
        let error = report
            .error
            .as_ref()
            .map(|e| serde_json::to_value(e).unwrap_or(Value::Null));
        let finish = Finish {
            id: id.to_string(),
            status,
            operations: report.operations,
            cycles: report.cycles,
            report: json,
            error,
            trigger: match (trigger_read, &report.trigger) {
                (Some((key, generation)), Some(change)) => Some(TriggerProgress {
                    scenario_id: scenario_id.to_string(),
                    key: key.to_string(),
                    cursor: change.cursor.clone(),
                    new_seen_ids: change.new_seen_ids.clone(),
                    generation,
                }),
                _ => None,
            },
            // What the log holds, and no more: the engine caps the bundles it keeps per
            // module; `modules` still counts every one (the summary's `omitted`).
            module_data: (!scenario.settings.confidential).then(|| {
                report
                    .log
                    .iter()
                    .map(|e| (e.module, e.output.clone()))
                    .collect()
            }),
            module_inputs: match scenario.settings.confidential {
                true => Vec::new(),
                false => report
                    .inputs
                    .iter()
                    .map(|e| (e.module, e.input.clone()))
                    .collect(),
            },
            modules: report
                .stats
                .iter()
                .map(|m| crate::store::ModuleCounts {
                    module_id: m.module,
                    runs: m.runs,
                    bundles: m.bundles_out,
                    errors: m.errors,
                    filtered: m.filtered,
                })
                .collect(),
            worker_id: self.options.worker_id.clone(),
            parked,
        };
        // The final status, the module data with its summary, the trigger's state and the
        // end of the job commit together, with other runners' (group commit); a large
        // execution's module data goes first, in parts (see `writer`).
        self.writer.finish(finish).await?;
        if status == FinalStatus::Error {
            self.after_error(scenario_id, id, scenario, report).await;
        }
        Ok(())
    }

    /// A recorded execution that ended with an error: said at `warn` (so a failure is never
    /// silent in the service's log), and counted towards the scenario's `maxErrors`, which
    /// turns the scenario off after that many in a row.
    async fn after_error(&self, scenario_id: &str, id: &str, scenario: &Scenario, report: &Report) {
        match &report.error {
            Some(error) => tracing::warn!(
                scenario = scenario_id,
                execution = id,
                module = error.module,
                kind = %error.name,
                message = %error.message,
                "an execution failed"
            ),
            None => tracing::warn!(
                scenario = scenario_id,
                execution = id,
                "an execution failed"
            ),
        }
        let notify = self.options.notify.as_ref();
        if let Some(notify) = notify {
            let error = report.error.as_ref().map(
                |e| serde_json::json!({"module": e.module, "name": e.name, "message": e.message}),
            );
            notify.execution_failed(scenario_id, id, error);
        }
        match self
            .catalog
            .deactivate_after_errors(scenario_id, scenario)
            .await
        {
            Ok(Some(reason)) => {
                if let Some(notify) = notify {
                    notify.scenario_deactivated(scenario_id, &reason);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(scenario = scenario_id, error = %e,
                "could not turn the scenario off after its consecutive errors"),
        }
    }
}
