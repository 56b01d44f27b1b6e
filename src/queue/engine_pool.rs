//! Where the engine runs executions: a Tokio runtime of its own (`--engine-threads`), apart
//! from the one that answers HTTP requests, accepts webhooks and commits to the store.
//!
//! The executor walks a flow without awaiting between bundles when no module does I/O, so a
//! CPU-bound execution (an iterator over a large array, nested repeaters, heavy expressions)
//! holds its thread for as long as it computes. On the service's runtime two of them took
//! every worker thread and `/health` stalled for half a minute; on threads of their own the
//! operating system's scheduler shares the CPU, and the HTTP side wakes within a time slice.
//!
//! Invariants:
//! - only [`engine::run`] runs here: claiming, heartbeats, recording and webhook replies stay
//!   on the caller's runtime;
//! - dropping the future returned by [`EnginePool::run`] cancels the execution on the pool
//!   (a stopping service that gives up on an execution does not leave it computing);
//! - an execution that panics ends as an error report instead of taking its caller down.

use std::sync::Arc;

use crate::engine::report::ReportError;
use crate::engine::{self, Report, RunInput, Status};
use crate::module::ErrorKind;
use crate::scenario::Scenario;

/// The runtime executions run on (see the module documentation).
pub struct EnginePool {
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
}

impl EnginePool {
    /// A pool of `threads` worker threads (at least one), named `switchyard-engine`.
    pub fn new(threads: usize) -> std::io::Result<EnginePool> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("switchyard-engine")
            .enable_all()
            .build()?;
        Ok(EnginePool {
            runtime: Some(runtime),
        })
    }

    /// The default number of engine threads: one per CPU.
    pub fn default_threads() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    /// Runs one execution on the pool and waits for its report.
    pub async fn run(&self, scenario: Arc<Scenario>, input: RunInput) -> Report {
        let Some(runtime) = &self.runtime else {
            return failed("the engine is shutting down".into());
        };
        let mut task =
            AbortOnDrop(runtime.spawn(async move { engine::run(&scenario, input).await }));
        match (&mut task.0).await {
            Ok(report) => report,
            Err(e) if e.is_panic() => {
                let message = e
                    .into_panic()
                    .downcast::<String>()
                    .map(|s| *s)
                    .or_else(|p| p.downcast::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|_| "no message".into());
                tracing::error!(panic = %message, "an execution panicked");
                failed(format!("the engine failed on this execution: {message}"))
            }
            Err(_) => failed("the execution was cancelled".into()),
        }
    }
}

impl Drop for EnginePool {
    fn drop(&mut self) {
        // A runtime may not be dropped (blocking) inside another; executions still on it are
        // cancelled, as their callers are gone.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Aborts the pool's task when the caller stops waiting for it.
struct AbortOnDrop(tokio::task::JoinHandle<Report>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The report of an execution the engine could not finish.
fn failed(message: String) -> Report {
    Report {
        status: Status::Error,
        operations: 0,
        cycles: 0,
        log: Vec::new(),
        error: Some(ReportError {
            module: 0,
            name: ErrorKind::RuntimeError.name().into(),
            message,
            details: None,
        }),
        response: None,
        incomplete: Vec::new(),
        stats: Vec::new(),
        trigger: None,
    }
}
