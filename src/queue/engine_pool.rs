//! Where the engine runs executions: on the caller's runtime while they are light, on a Tokio
//! runtime of their own (`--engine-threads`) once they prove heavy.
//!
//! Flow control does not wait, so a CPU-bound execution (an iterator over a large array,
//! nested repeaters, heavy expressions) holds a thread for as long as it computes. On the
//! service's runtime two of them took every worker thread and `/health` stalled for half a
//! minute. Moving every execution to other threads costs a hand-over each way, which is most
//! of a light webhook execution's time (−15 to −30 % req/s measured). So an execution starts
//! where it was asked for; the executor gives its thread back every so often (Tokio's
//! cooperative budget), and once its polls have taken [`INLINE_CPU`] it is moved, as it is,
//! to the engine's runtime, where the operating system shares the CPU between it and the
//! threads that answer requests and commit.
//!
//! Invariants:
//! - only [`engine::run`] runs here: claiming, heartbeats, recording and webhook replies stay
//!   on the caller's runtime;
//! - dropping the future returned by [`EnginePool::run`] cancels the execution, wherever it
//!   runs;
//! - an execution that panics on the pool ends as an error report instead of taking its
//!   caller down.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::engine::report::ReportError;
use crate::engine::{self, Report, RunInput, Status};
use crate::module::ErrorKind;
use crate::scenario::Scenario;

/// CPU time an execution may take on its caller's runtime before it is moved to the pool.
pub const INLINE_CPU: Duration = Duration::from_millis(2);

/// The runtime heavy executions run on (see the module documentation).
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

    /// Runs one execution, moved to the pool once heavy, and waits for its report.
    pub async fn run(&self, scenario: Arc<Scenario>, input: RunInput) -> Report {
        let mut run: Pin<Box<dyn Future<Output = Report> + Send>> =
            Box::pin(async move { engine::run(&scenario, input).await });
        let mut spent = Duration::ZERO;
        let light = std::future::poll_fn(|cx| {
            let started = Instant::now();
            let poll = run.as_mut().poll(cx);
            spent += started.elapsed();
            match poll {
                Poll::Ready(report) => Poll::Ready(Some(report)),
                Poll::Pending if spent >= INLINE_CPU => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        if let Some(report) = light {
            return report;
        }
        let Some(runtime) = &self.runtime else {
            return failed("the engine is shutting down".into());
        };
        let mut task = AbortOnDrop(runtime.spawn(run));
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
        inputs: Vec::new(),
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
        outputs: None,
    }
}
