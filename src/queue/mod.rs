//! The job queue: apalis on the store's own database (SQLite by default, PostgreSQL for
//! several workers). A job says "run execution E"; everything else about the execution —
//! its scenario version, its trigger payload, its status — is in the store, so a job can be
//! delivered twice without harm: the store's compare-and-set status decides who runs it and
//! a finished execution is never run again.
//!
//! Delivery is at least once: a job whose worker died is handed out again after its
//! heartbeats stop (`heartbeat × missed_heartbeats`), and [`Queue::requeue_orphans`] pushes
//! executions that were committed but never reached the queue (a crash between the two).

pub mod retry;
mod runner;

pub use runner::{Completions, Runner, RunnerOptions};

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::store::{Store, StorePool};

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
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            poll_interval: Duration::from_secs(1),
            heartbeat: Duration::from_secs(5),
            missed_heartbeats: 2,
            max_attempts: 5,
        }
    }
}

/// A handle for pushing jobs; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    backend: Backend,
    options: QueueOptions,
    /// Wakes this process's SQLite workers when it pushes a job, so they fetch at once
    /// instead of waiting for the next poll (PostgreSQL workers are woken by NOTIFY).
    wake: Arc<Notify>,
}

/// Jobs fetched per poll.
const BATCH: usize = 100;

#[derive(Clone)]
enum Backend {
    Sqlite(SqliteStorage<ExecutionJob>),
    Postgres(PostgresStorage<ExecutionJob>),
}

impl Queue {
    /// Creates apalis's tables if needed and returns a handle on the store's database.
    pub async fn open(store: &Store, options: QueueOptions) -> Result<Queue, QueueError> {
        let backend = match store.pool() {
            StorePool::Sqlite(pool) => {
                // apalis's setup switches its connection to `synchronous = OFF`; give it a
                // connection of its own so the store's connections keep `NORMAL`.
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
            }
            StorePool::Postgres(pool) => {
                PostgresStorage::setup(pool)
                    .await
                    .map_err(|e| QueueError::Setup(e.to_string()))?;
                let config = apalis_postgres::Config::default()
                    .queue(QUEUE)
                    .heartbeat_interval(options.heartbeat)
                    .missed_heartbeats(options.missed_heartbeats)
                    .batch_size(BATCH);
                Backend::Postgres(PostgresStorage::new(pool).with_config(config))
            }
        };
        Ok(Queue {
            backend,
            options,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Queues an execution. Pushing the same execution twice is harmless: the execution id
    /// is the job's idempotency key.
    pub async fn enqueue(&self, execution_id: &str) -> Result<(), QueueError> {
        let task = TaskBuilder::new(ExecutionJob {
            execution_id: execution_id.to_string(),
        })
        .idempotency_key(execution_id)
        .max_attempts(self.options.max_attempts)
        .build();
        let pushed = match &self.backend {
            Backend::Sqlite(s) => s.clone().push_task(task).await.map_err(|e| e.to_string()),
            Backend::Postgres(s) => s.clone().push_task(task).await.map_err(|e| e.to_string()),
        };
        match pushed {
            Ok(()) => {
                self.wake.notify_one();
                Ok(())
            }
            // PostgreSQL reports a repeated idempotency key as a unique violation: the job
            // is already queued, which is what was asked.
            Err(message) if message.contains("23505") || message.contains("idempotency") => Ok(()),
            Err(message) => Err(QueueError::Push {
                execution_id: execution_id.to_string(),
                message,
            }),
        }
    }

    /// Pushes every execution still `queued` (or `running` without heartbeats) after
    /// `older_than`: those whose push was lost to a crash between the store commit and the
    /// queue insert. Executions whose job exists are not duplicated (idempotency key).
    pub async fn requeue_orphans(
        &self,
        store: &Store,
        older_than: Duration,
    ) -> Result<usize, QueueError> {
        let stale = store
            .stale_executions(
                crate::store::now_ms() - older_than.as_millis() as i64,
                10_000,
            )
            .await?;
        for execution in &stale {
            self.enqueue(&execution.id).await?;
        }
        Ok(stale.len())
    }

    /// Runs `concurrency` executions at a time from the queue until `shutdown` resolves.
    pub async fn work(
        &self,
        name: &str,
        runner: Arc<Runner>,
        concurrency: usize,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), QueueError> {
        let concurrency = concurrency.max(1);
        let name = name.to_string();
        let signal = async move {
            shutdown.await;
            Ok(())
        };
        let result = match &self.backend {
            Backend::Sqlite(storage) => {
                let (storage, interval, wake) = (
                    storage.clone(),
                    self.options.poll_interval,
                    self.wake.clone(),
                );
                Monitor::new()
                    .register(move |_| {
                        // Fetch when this process pushes, and every `interval` for pushes
                        // from other processes.
                        let strategy = Strategy::new()
                            .stream(wake_stream(wake.clone()))
                            .interval(interval);
                        WorkerBuilder::new(name.as_str())
                            .backend(storage.clone().poll_with_strategy(strategy))
                            .data(runner.clone())
                            .concurrency(concurrency)
                            .build(handle)
                    })
                    .run_with_signal(signal)
                    .await
            }
            Backend::Postgres(storage) => {
                let storage = storage.clone();
                Monitor::new()
                    .register(move |_| {
                        WorkerBuilder::new(name.as_str())
                            .backend(storage.clone().with_pubsub())
                            .data(runner.clone())
                            .concurrency(concurrency)
                            .build(handle)
                    })
                    .run_with_signal(signal)
                    .await
            }
        };
        result.map_err(|e| QueueError::Worker(e.to_string()))
    }
}

/// A stream that yields each time `wake` is notified.
fn wake_stream(
    wake: Arc<Notify>,
) -> std::pin::Pin<Box<dyn futures::Stream<Item = ()> + Send + Sync>> {
    Box::pin(futures::stream::unfold(wake, |wake| async move {
        wake.notified().await;
        Some(((), wake))
    }))
}

async fn handle(job: ExecutionJob, runner: Data<Arc<Runner>>) -> Result<(), BoxDynError> {
    runner
        .execute(&job.execution_id)
        .await
        .map_err(|e| Box::new(e) as BoxDynError)
}
