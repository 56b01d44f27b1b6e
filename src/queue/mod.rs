//! The job queue: apalis on the store's own database (SQLite by default, PostgreSQL for
//! several workers). A job says "run execution E"; everything else about the execution —
//! its scenario version, its trigger payload, its status — is in the store, so a job can be
//! delivered twice without harm: the store's compare-and-set status decides who runs it and
//! a finished execution is never run again.
//!
//! Delivery is at least once: a job whose worker died is handed out again after its
//! heartbeats stop (`heartbeat × missed_heartbeats`), and [`Queue::requeue_orphans`] pushes
//! executions that were committed but never reached the queue (a crash between the two) and
//! those the process that accepted them was running itself, without a job, when it died.
//!
//! An execution is run at most [`QueueOptions::max_run_attempts`] times: each claim counts
//! an attempt in the store before the run starts, and one whose runs keep ending with their
//! process (out of memory, killed) ends as error "crashed the worker N times" — neither the
//! claim nor the orphan sweep starts it again.
//!
//! Executions come in two ways: webhook and mailhook deliveries through the [`Intake`]
//! ([`Intake::deliver`] makes every decision about a webhook request below the HTTP layer, and
//! hands the caller the scenario's reply as a future), and everything else — run now, retry,
//! resume, a schedule's tick, a sub-scenario call — through [`Queue::submit`].
//!
//! Writes go through one store writer per process ([`writer`]): new deliveries with their
//! jobs and finished executions with their job's deletion, many per transaction.
//!
//! apalis sets up its tables and runs the workers that fetch, lock and acknowledge jobs; every
//! other statement on its table — pushing, deleting, sweeping jobs — is the store's
//! (`store::WriteTx::push_jobs` and its neighbours): this module holds no SQL and does not
//! know which database it is on beyond handing apalis its pool.

mod calls;
mod engine_pool;
mod gate;
mod hook_bundle;
mod intake;
mod mail;
mod payload;
pub mod retry;
mod runner;
mod submit;
mod webhook;
mod writer;

pub use calls::CallService;
pub use engine_pool::EnginePool;
pub use gate::{Admission, DEFAULT_PAYLOAD_BUDGET, GATED_PAYLOAD_BYTES, PayloadGate};
pub use hook_bundle::BadBody;
pub use intake::{Intake, RunHere, SLOT_WAIT};
pub use mail::{NotAMessage, mail_bundle};
pub use payload::{ExecutionPayload, PayloadError, ResumePoint};
pub use runner::{Completions, Finished, Runner, RunnerOptions};
pub use submit::Submission;
pub use webhook::{
    Accepted, CROSS_PROCESS_POLL, Delivered, HookLimits, MailRefusal, PendingReply, Refusal, Reply,
    Route, WebhookRequest,
};

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::{PostgresStorage, Pubsub};
use apalis_sqlite::SqliteStorage;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::store::{JobPush, NewJob, Store, WriteTx};

/// The apalis queue name shared by every process.
pub const QUEUE: &str = "switchyard.executions";

/// Run execution `execution_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionJob {
    pub execution_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("job queue database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("could not queue execution {execution_id}: {message}")]
    Push {
        execution_id: String,
        message: String,
    },
    #[error("worker stopped: {0}")]
    Worker(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("could not set up the job queue's tables: {0}")]
    Setup(String),
}

/// When an idle PostgreSQL worker looks for jobs without being notified (a missed NOTIFY,
/// jobs handed back after a worker died).
const POSTGRES_FALLBACK_POLL: Duration = Duration::from_secs(1);

/// Runs of one execution by default before it ends as crashed ([`QueueOptions::max_run_attempts`]).
pub const DEFAULT_MAX_RUN_ATTEMPTS: u32 = 3;

/// How workers poll and when they give a dead worker's jobs away.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// How often an idle SQLite worker looks for jobs pushed by other processes (its own
    /// process wakes it at once; PostgreSQL workers are woken by NOTIFY).
    pub poll_interval: Duration,
    pub heartbeat: Duration,
    pub missed_heartbeats: usize,
    /// Deliveries of one job before it is given up (each delivery re-runs the execution).
    pub max_attempts: usize,
    /// Runs of one execution before it is given up (`--max-attempts`): every claim counts
    /// one in the store before the run starts, so an execution whose runs end with their
    /// process (out of memory, killed) is claimed at most this many times, then ends as
    /// error "crashed the worker N times" ([`crate::store::crash_error`]) instead of being
    /// pushed again by every orphan sweep.
    pub max_run_attempts: u32,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            poll_interval: Duration::from_secs(1),
            heartbeat: Duration::from_secs(5),
            missed_heartbeats: 2,
            max_attempts: 5,
            max_run_attempts: DEFAULT_MAX_RUN_ATTEMPTS,
        }
    }
}

/// A handle for pushing jobs; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    /// Writes and deletes the job rows (apalis's workers fetch and acknowledge them).
    store: Store,
    backend: Backend,
    options: QueueOptions,
    /// Wakes this process's SQLite workers when it pushes a job, so they fetch at once
    /// instead of waiting for the next poll (PostgreSQL workers are woken by NOTIFY).
    wake: Arc<Notify>,
}

/// Jobs fetched per poll.
const BATCH: usize = 100;

/// The row of the job that runs execution `execution_id`: apalis's id (a ULID), the execution
/// id as idempotency key, and the job as apalis's JSON codec reads it.
fn job_row(execution_id: &str) -> Result<NewJob<'_>, QueueError> {
    let job = ExecutionJob {
        execution_id: execution_id.to_string(),
    };
    let args = serde_json::to_vec(&job).map_err(|e| QueueError::Push {
        execution_id: execution_id.to_string(),
        message: e.to_string(),
    })?;
    Ok(NewJob {
        id: ulid::Ulid::generate().to_string(),
        key: execution_id,
        args,
    })
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqliteStorage<ExecutionJob>),
    Postgres(PostgresStorage<ExecutionJob>),
}

impl Queue {
    /// Creates apalis's tables if needed and returns a handle on the store's database.
    pub async fn open(store: &Store, options: QueueOptions) -> Result<Queue, QueueError> {
        let backend = if let Some(pool) = store.sqlite_pool() {
            // apalis's setup switches its connection to `synchronous = OFF`; give it a
            // connection of its own so the store's connections keep theirs (`FULL` by default).
            let setup = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with((*pool.connect_options()).clone())
                .await?;
            SqliteStorage::setup(&setup)
                .await
                .map_err(|e| QueueError::Setup(e.to_string()))?;
            setup.close().await;
            let config = apalis_sqlite::Config::default()
                .queue(QUEUE)
                .heartbeat_interval(options.heartbeat)
                .missed_heartbeats(options.missed_heartbeats)
                .batch_size(BATCH);
            Backend::Sqlite(SqliteStorage::new(pool).with_config(config))
        } else if let Some(pool) = store.postgres_pool() {
            PostgresStorage::setup(pool)
                .await
                .map_err(|e| QueueError::Setup(e.to_string()))?;
            let config = apalis_postgres::Config::default()
                .queue(QUEUE)
                .heartbeat_interval(options.heartbeat)
                .missed_heartbeats(options.missed_heartbeats)
                .batch_size(BATCH);
            Backend::Postgres(PostgresStorage::new(pool).with_config(config))
        } else {
            return Err(QueueError::Setup(format!(
                "no job queue for a store on {}",
                store.backend()
            )));
        };
        Ok(Queue {
            store: store.clone(),
            backend,
            options,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Queues an execution. Pushing the same execution twice is harmless: the execution id
    /// is the job's idempotency key, and a job already queued is left as it is
    /// ([`JobPush::AlreadyQueued`]).
    pub async fn enqueue(&self, execution_id: &str) -> Result<JobPush, QueueError> {
        let job = job_row(execution_id)?;
        let pushed = self.store.push_job(QUEUE, self.max_attempts(), job).await?;
        if pushed == JobPush::Queued {
            self.wake.notify_one();
        }
        Ok(pushed)
    }

    /// Queues executions inside the caller's transaction, so they are queued if and only if
    /// the transaction commits. Call [`Queue::pushed`] after the commit. The transaction
    /// must be on the queue's database (it is: the queue shares the store's).
    pub async fn push_in(
        &self,
        tx: &mut WriteTx,
        execution_ids: &[&str],
    ) -> Result<(), QueueError> {
        if execution_ids.is_empty() {
            return Ok(());
        }
        let jobs = execution_ids
            .iter()
            .map(|id| job_row(id))
            .collect::<Result<Vec<_>, _>>()?;
        tx.push_jobs(QUEUE, self.max_attempts(), &jobs).await?;
        Ok(())
    }

    fn max_attempts(&self) -> u32 {
        u32::try_from(self.options.max_attempts).unwrap_or(u32::MAX)
    }

    /// Claims of one execution before it ends as crashed ([`QueueOptions::max_run_attempts`]).
    pub fn max_run_attempts(&self) -> u32 {
        self.options.max_run_attempts.max(1)
    }

    /// Tells this process's workers that jobs were pushed (and committed) by [`Queue::push_in`].
    pub fn pushed(&self) {
        self.wake.notify_one();
    }

    /// Deletes the jobs of executions `execution_ids` inside the transaction that finishes
    /// them: a job is done exactly when its execution is, and the job table keeps only work
    /// still to do (apalis's own acknowledgement, which follows, then finds no row).
    /// Executions run without a job (by the process that accepted them) have none to delete.
    pub(crate) async fn delete_jobs_in(
        tx: &mut WriteTx,
        execution_ids: &[&str],
    ) -> Result<(), QueueError> {
        tx.delete_jobs(QUEUE, execution_ids).await?;
        Ok(())
    }

    /// Pushes every execution running with no sign of life for `silent_for` (its worker
    /// died: an execution run by the process that accepted it has no job until then) and,
    /// with `queued_for`, every one queued for longer (its push was lost to a crash between
    /// the store commit and the queue insert). Executions whose job exists are not
    /// duplicated (idempotency key). A silent execution already claimed
    /// [`QueueOptions::max_run_attempts`] times is not pushed: its runs keep ending with
    /// their process, so it ends as error ([`crate::store::crash_error`]). Returns how many
    /// executions were pushed.
    pub async fn requeue_orphans(
        &self,
        store: &Store,
        queued_for: Option<Duration>,
        silent_for: Duration,
    ) -> Result<usize, QueueError> {
        let now = crate::store::now_ms();
        let before = |age: Duration| now - age.as_millis() as i64;
        let stale = store
            .stale_executions(queued_for.map(before), before(silent_for), 10_000)
            .await?;
        let mut pushed = 0;
        for execution in &stale {
            if execution.attempt >= self.max_run_attempts() {
                let error = crate::store::crash_error(execution.attempt);
                let (ended, _) = store
                    .abandon_execution(&execution.id, &error, before(silent_for))
                    .await?;
                if ended {
                    tracing::warn!(
                        execution = %execution.id,
                        attempts = execution.attempt,
                        "an execution whose runs kept ending with their process was not run again"
                    );
                }
                continue;
            }
            self.enqueue(&execution.id).await?;
            pushed += 1;
        }
        Ok(pushed)
    }

    /// Clears out jobs the queue is done with — done, killed, or failed with no attempt
    /// left — that the runner did not delete when it finished their execution (it had been
    /// finished elsewhere, or it never ran to its end). An execution still open behind such
    /// a job, with no sign of life since `stale_after`, ends with status `error` saying the
    /// queue gave up; one that may still be running keeps its job until a later sweep.
    /// Returns how many executions were ended.
    pub async fn settle_spent_jobs(
        &self,
        store: &Store,
        stale_after: Duration,
    ) -> Result<usize, QueueError> {
        let spent = store.spent_jobs(QUEUE).await?;
        let stale_before = crate::store::now_ms() - stale_after.as_millis() as i64;
        let mut ended = 0;
        let mut settled = Vec::new();
        for job in spent {
            let still_open = match &job.execution_id {
                Some(execution_id) => {
                    let error = serde_json::json!({
                        "name": "QueueError",
                        "message": format!(
                            "the job queue gave up on this execution after {} attempt(s)",
                            job.attempts
                        ),
                        "details": job.last_result,
                    });
                    let (ended_now, after) = store
                        .abandon_execution(execution_id, &error, stale_before)
                        .await?;
                    ended += usize::from(ended_now);
                    after.is_some_and(|s| !s.is_terminal())
                }
                None => false,
            };
            if !still_open {
                settled.push(job.id);
            }
        }
        for job_id in &settled {
            store.delete_job(job_id).await?;
        }
        Ok(ended)
    }

    /// Runs `concurrency` executions at a time from the queue until `shutdown` resolves.
    ///
    /// apalis ends a worker for good on the first database error (a fetch or heartbeat
    /// failing while the database restarts or is locked), so a worker that stops before
    /// `shutdown` is started again, under a new name, after a pause that grows from 1 s to
    /// 30 s while it keeps failing. Jobs the stopped worker held are handed out again once
    /// its heartbeats are missed.
    pub async fn work(
        &self,
        name: &str,
        runner: Arc<Runner>,
        concurrency: usize,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), QueueError> {
        runner.remember();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let mut pause = Duration::from_secs(1);
        let mut run = 0u64;
        loop {
            let name = if run == 0 {
                name.to_string()
            } else {
                format!("{name}.{run}")
            };
            run += 1;
            let mut signal = stopped.clone();
            let signal = async move {
                let _ = signal.wait_for(|stop| *stop).await;
                Ok(())
            };
            let started = std::time::Instant::now();
            let result = self
                .run_workers(&name, runner.clone(), concurrency, signal)
                .await;
            if *stopped.borrow() {
                return result;
            }
            let error = result
                .err()
                .map_or_else(|| "ended".to_string(), |e| e.to_string());
            if started.elapsed() > Duration::from_secs(60) {
                pause = Duration::from_secs(1);
            }
            tracing::error!(worker = %name, %error, "workers stopped; starting them again in {pause:?}");
            let mut signal = stopped.clone();
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = signal.wait_for(|stop| *stop) => return Ok(()),
            }
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    }

    /// One apalis worker until `signal` or its first error. (Not under apalis's `Monitor`:
    /// it only returns once the signal comes, even when its worker has died.)
    async fn run_workers(
        &self,
        name: &str,
        runner: Arc<Runner>,
        concurrency: usize,
        signal: impl std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    ) -> Result<(), QueueError> {
        let concurrency = concurrency.max(1);
        let result = match &self.backend {
            Backend::Sqlite(storage) => {
                // Fetch when this process pushes a job, and every `poll_interval` for jobs
                // pushed by other processes.
                let wake =
                    Wake::notified(wake_stream(self.wake.clone()), self.options.poll_interval);
                WorkerBuilder::new(name)
                    .backend(storage.clone().poll_with_strategy(wake))
                    .data(runner)
                    .concurrency(concurrency)
                    .build(handle)
                    .run_until(signal)
                    .await
            }
            Backend::Postgres(storage) => {
                let notify = Pubsub::new(storage.pool().clone(), QUEUE.to_string());
                let wake = Wake::notified(notify, POSTGRES_FALLBACK_POLL);
                WorkerBuilder::new(name)
                    .backend(storage.clone().poll_with_strategy(wake))
                    .data(runner)
                    .concurrency(concurrency)
                    .build(handle)
                    .run_until(signal)
                    .await
            }
        };
        result.map_err(|e| QueueError::Worker(e.to_string()))
    }
}

/// A stream that yields each time `wake` is notified.
fn wake_stream(wake: Arc<Notify>) -> Pin<Box<dyn Stream<Item = ()> + Send + Sync>> {
    Box::pin(futures::stream::unfold(wake, |wake| async move {
        wake.notified().await;
        Some(((), wake))
    }))
}

/// When a worker looks for jobs again: every `every`, and on PostgreSQL whenever a job is
/// inserted (LISTEN/NOTIFY).
///
/// Used instead of apalis's `poll_with_interval`/`with_pubsub`: their strategies re-arm the
/// timer (or take a notification) without polling it again, so when that happens in the
/// same poll in which the fetch comes back empty, nothing will wake the worker and it sleeps
/// until its next heartbeat (seconds of latency for a queued execution). This one always
/// leaves both the timer and the notification stream pending, i.e. armed with the waker.
struct Wake<S> {
    every: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    notify: Option<S>,
}

impl<S> Wake<S> {
    /// A timer and a notification stream (this process's pushes on SQLite, NOTIFY on
    /// PostgreSQL).
    fn notified(notify: S, every: Duration) -> Self {
        Wake {
            every,
            timer: None,
            notify: Some(notify),
        }
    }
}

impl<S: Stream + Unpin> PollStrategy for Wake<S> {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let mut woken = false;
        if let Some(notify) = self.notify.as_mut() {
            loop {
                match notify.poll_next_unpin(cx) {
                    Poll::Ready(Some(_)) => woken = true,
                    // The listener is gone: the timer still wakes the worker.
                    Poll::Ready(None) => {
                        self.notify = None;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        let every = self.every;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
        while timer.as_mut().poll(cx).is_ready() {
            timer.as_mut().reset(tokio::time::Instant::now() + every);
            woken = true;
        }
        if woken {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}

async fn handle(job: ExecutionJob, runner: Data<Arc<Runner>>) -> Result<(), BoxDynError> {
    runner
        .execute(&job.execution_id)
        .await
        .map_err(|e| Box::new(e) as BoxDynError)
}
