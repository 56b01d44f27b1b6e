//! Webhook deliveries into the queue. A delivery is written by the store writer
//! ([`super::writer`]) together with whatever else is waiting, and its handler is answered
//! after that commit.
//!
//! While the process has room (its direct-run concurrency), it runs what it accepted
//! itself: the execution is created already claimed by this process's runner and handed
//! straight to it, with no job — sparing the job's insert and deletion, the workers' fetch,
//! lock and acknowledgement, and the claim. Should the process die, the execution is left
//! `running` with no heartbeat, and [`super::Queue::requeue_orphans`] (at the next start, or
//! in any live process once its heartbeats are missed) pushes it to the workers. A
//! sequential scenario's deliveries always go through the queue, which keeps their order.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::{QueueError, Runner};
use crate::store::{Delivery, NewDelivery};

/// A handle on the intake; cheap to clone.
#[derive(Clone)]
pub struct Intake {
    runner: Arc<Runner>,
    /// Run slots for accepted executions; `None`: every one goes to the workers.
    direct: Option<Arc<Semaphore>>,
}

impl Intake {
    /// Accepts deliveries through `runner`'s store writer; up to `direct_concurrency` of
    /// their executions at a time run in this process at once (0: none).
    pub fn new(runner: Arc<Runner>, direct_concurrency: usize) -> Intake {
        Intake {
            runner,
            direct: (direct_concurrency > 0).then(|| Arc::new(Semaphore::new(direct_concurrency))),
        }
    }

    /// Records the delivery and queues its execution; returns once both are committed
    /// (or the key was seen before: [`Delivery::Duplicate`]). With `may_run_here`, the
    /// execution may be run by this process at once.
    pub async fn accept(
        &self,
        mut delivery: NewDelivery,
        may_run_here: bool,
    ) -> Result<Delivery, QueueError> {
        let slot = match &self.direct {
            Some(slots) if may_run_here => slots.clone().try_acquire_owned().ok(),
            _ => None,
        };
        if slot.is_some() {
            delivery.claim_for(self.runner.worker_id());
        }
        let execution = delivery.claimed_execution();
        let result = self.runner.writer().accept(delivery).await;
        if let (Some(slot), Some(execution), Ok(Delivery::Accepted { .. })) =
            (slot, execution, &result)
        {
            let runner = self.runner.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let id = execution.id.clone();
                if let Err(e) = runner.execute_claimed(execution).await {
                    tracing::warn!(execution = %id, error = %e,
                        "run failed; the execution is pushed again once its heartbeats are missed");
                }
            });
        }
        result
    }
}
