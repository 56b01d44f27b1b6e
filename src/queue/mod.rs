//! The job queue: the executions table of the store's own database (SQLite by default,
//! PostgreSQL for several workers). A `queued` execution is a job; everything about it — its
//! scenario version, its trigger payload, its status — is in that one row, so there is no
//! second table to keep in step with it: a job is committed exactly when its execution is
//! (in the same transaction), and acknowledged exactly when its execution ends (in the
//! transaction that records the end). Parked bundles of an incomplete execution commit in
//! that transaction too.
//!
//! Workers ([`Queue::work`], `work.rs`) read runnable executions and claim each with the
//! store's compare-and-set (`queued → running`, attempt + 1, stamped with the worker's id):
//! two workers reading one id run it once. Delivery is at least once: an execution whose
//! worker died (its heartbeats stopped for three beats) is runnable again and taken over by
//! the next claim, and so is one run by the process that accepted it, without ever being
//! `queued`, when that process died.
//!
//! An execution is run at most [`QueueOptions::max_run_attempts`] times: each claim counts
//! an attempt in the store before the run starts, and one whose runs keep ending with their
//! process (out of memory, killed) ends as error "crashed the worker N times" at the claim
//! that would exceed the cap.
//!
//! Executions come in two ways: webhook and mailhook deliveries through the [`Intake`]
//! ([`Intake::deliver`] makes every decision about a webhook request below the HTTP layer, and
//! hands the caller the scenario's reply as a future), and everything else — run now, retry,
//! resume, a schedule's tick, a sub-scenario call — through [`Queue::submit`].
//!
//! Writes go through one store writer per process ([`writer`]): new deliveries with their
//! executions and finished executions, many per transaction.
//!
//! Idle workers wake when their own process queues an execution, on PostgreSQL when any
//! process does (LISTEN/NOTIFY: migration 0013's trigger notifies on commit), and otherwise
//! every [`QueueOptions::poll_interval`]. This module holds no SQL.

mod calls;
mod engine_pool;
mod gate;
mod hook_bundle;
mod intake;
mod mail;
mod notify;
mod payload;
pub mod retry;
mod runner;
mod submit;
mod webhook;
mod work;
mod writer;

pub use calls::CallService;
pub use engine_pool::EnginePool;
pub use gate::{Admission, DEFAULT_PAYLOAD_BUDGET, GATED_PAYLOAD_BYTES, PayloadGate};
pub use hook_bundle::BadBody;
pub use intake::{Intake, RunHere, SLOT_WAIT};
pub use mail::{NotAMessage, mail_bundle};
pub use notify::{Notifier, NotifyUrlError};
pub use payload::{ExecutionPayload, PayloadError, ResumePoint};
pub use runner::{Completions, Finished, Runner, RunnerOptions};
pub use submit::Submission;
pub use webhook::{
    Accepted, CROSS_PROCESS_POLL, Delivered, HookLimits, MailRefusal, PendingReply, Refusal, Reply,
    Route, WebhookRequest,
};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("job queue database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("worker stopped: {0}")]
    Worker(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Runs of one execution by default before it ends as crashed ([`QueueOptions::max_run_attempts`]).
pub const DEFAULT_MAX_RUN_ATTEMPTS: u32 = 3;

/// How idle workers look for executions, and how often one execution may be run.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// How often an idle worker looks for executions queued by other processes (its own
    /// process wakes it at once, and so does any process on PostgreSQL), and for executions
    /// whose worker died.
    pub poll_interval: Duration,
    /// Runs of one execution before it is given up (`--max-attempts`): every claim counts
    /// one in the store before the run starts, so an execution whose runs end with their
    /// process (out of memory, killed) is claimed at most this many times, then ends as
    /// error "crashed the worker N times" ([`crate::store::crash_error`]).
    pub max_run_attempts: u32,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            poll_interval: Duration::from_secs(1),
            max_run_attempts: DEFAULT_MAX_RUN_ATTEMPTS,
        }
    }
}

/// A handle on the queue; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    store: Store,
    options: QueueOptions,
    /// Counts this process's commits of queued executions: its idle workers look at once
    /// when it moves instead of at their next poll (a count, so no wake is lost between a
    /// worker's look and its wait, and every worker of the process sees it).
    wake: Arc<watch::Sender<u64>>,
}

impl Queue {
    /// The queue of the store's database: its executions.
    pub fn new(store: &Store, options: QueueOptions) -> Queue {
        Queue {
            store: store.clone(),
            options,
            wake: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Claims of one execution before it ends as crashed ([`QueueOptions::max_run_attempts`]).
    pub fn max_run_attempts(&self) -> u32 {
        self.options.max_run_attempts.max(1)
    }

    /// Tells this process's idle workers that executions were queued (and committed).
    pub fn wake_workers(&self) {
        work::bump(&self.wake);
    }
}
