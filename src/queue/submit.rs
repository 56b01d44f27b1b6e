//! The one way an execution is submitted outside the webhook intake: run now (API and
//! console), retry, resume, a schedule's tick and a sub-scenario call all go through
//! [`Queue::submit`]. (A webhook delivery goes through [`super::Intake`], which records the
//! delivery, its execution and its job in one transaction of the store writer.)
//!
//! One failure behaviour: the execution is recorded first, and that is the acceptance — an
//! error before it means nothing was created, and the caller is told. Once recorded, a job
//! that cannot be pushed is not the caller's failure: the execution stays `queued` and the
//! orphan sweep ([`Queue::requeue_orphans`]) pushes it, so the caller gets the execution's
//! id either way and never an error about an execution that exists.

use serde_json::Value;

use super::{Queue, QueueError};
use crate::store::{ExecutionSource, NewExecution};

/// What to record: the kinds of execution submitted outside the webhook intake.
pub enum Submission<'a> {
    /// A new execution as it stands (run now, retry, resume).
    New(NewExecution<'a>),
    /// A schedule's occurrence at `tick_at` (ms): recorded once per scenario and time, by
    /// whichever process claims it first.
    Tick {
        scenario_id: &'a str,
        version: u32,
        tick_at: i64,
    },
    /// A sub-scenario called by module `module` of execution `caller`. With `run_here`
    /// the caller runs it at once itself: no job is pushed (should that process die, the
    /// orphan sweep pushes the execution).
    Call {
        new: NewExecution<'a>,
        caller: &'a str,
        module: u32,
        run_here: bool,
    },
}

impl Queue {
    /// Records the execution `submission` describes and queues it. `None` when there was
    /// nothing to record (a tick another process claimed). See the module's failure
    /// behaviour.
    pub async fn submit(&self, submission: Submission<'_>) -> Result<Option<String>, QueueError> {
        match submission {
            Submission::New(new) => self.submit_new(new).await.map(Some),
            Submission::Tick {
                scenario_id,
                version,
                tick_at,
            } => {
                let claimed = self
                    .store
                    .claim_tick_execution(scenario_id, version, tick_at, None)
                    .await?;
                match claimed {
                    Some(id) => Ok(Some(self.queued(id).await)),
                    None => Ok(None),
                }
            }
            Submission::Call {
                new,
                caller,
                module,
                run_here,
            } => {
                let id = self
                    .store
                    .create_called_execution(new, caller, module)
                    .await?;
                Ok(Some(if run_here { id } else { self.queued(id).await }))
            }
        }
    }

    /// [`Queue::submit`] of a new execution (run now, retry, resume), whose id it always has.
    pub async fn submit_new(&self, new: NewExecution<'_>) -> Result<String, QueueError> {
        let id = self.store.create_execution(new).await?;
        Ok(self.queued(id).await)
    }

    /// Pushes the job of recorded execution `execution_id`; a push that fails is left to the
    /// orphan sweep (the execution is recorded: it is not lost).
    async fn queued(&self, execution_id: String) -> String {
        if let Err(e) = self.enqueue(&execution_id).await {
            tracing::warn!(execution = %execution_id, error = %e,
                "the execution is recorded but its job could not be pushed; the orphan sweep pushes it");
        }
        execution_id
    }

    /// Runs scenario `scenario_id` now, on its current version, with `payload` as its
    /// trigger's bundle ("run now", from the API and the console alike).
    pub async fn run_now(
        &self,
        scenario_id: &str,
        payload: Option<&Value>,
    ) -> Result<String, QueueError> {
        let row = self.store.get_scenario(scenario_id).await?;
        self.submit_new(NewExecution {
            scenario_id,
            version: row.version,
            source: ExecutionSource::Manual,
            payload,
        })
        .await
    }
}
