//! The one way an execution is submitted outside the webhook intake: run now (API and
//! console), retry, resume, a schedule's tick and a sub-scenario call all go through
//! [`Queue::submit`]. (A webhook delivery goes through [`super::Intake`], which records the
//! delivery and its execution in one transaction of the store writer.)
//!
//! One failure behaviour: recording the execution, `queued`, is the acceptance and the
//! queueing at once (a queued execution is the queue's job) — an error means nothing was
//! created, and the caller is told; once recorded, the caller gets the execution's id and a
//! worker runs it.

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
    /// the caller runs it at once itself: workers are not woken for it (should another
    /// claim it first, the caller waits for its end).
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
                    Some(id) => Ok(Some(self.queued(id))),
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
                Ok(Some(if run_here { id } else { self.queued(id) }))
            }
        }
    }

    /// [`Queue::submit`] of a new execution (run now, retry, resume), whose id it always has.
    pub async fn submit_new(&self, new: NewExecution<'_>) -> Result<String, QueueError> {
        let id = self.store.create_execution(new).await?;
        Ok(self.queued(id))
    }

    /// Wakes this process's workers for recorded execution `execution_id`.
    fn queued(&self, execution_id: String) -> String {
        self.wake_workers();
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
