//! Webhook deliveries into the queue. A delivery is written by the store writer
//! ([`super::writer`]) together with whatever else is waiting, and its handler is answered
//! after that commit.
//!
//! While the process has room (its direct-run concurrency), it runs what it accepted
//! itself: the execution is created already claimed by this process's runner (`running`,
//! never `queued`) and handed straight to it — sparing the workers' look and the claim.
//! Should the process die, the execution is left `running` with no heartbeat, and the
//! workers (at the next start, or in any live process once its heartbeats are missed)
//! take it over. A
//! sequential scenario's deliveries always go through the queue, which keeps their order.
//!
//! A delivery whose caller waits for the scenario's `WebhookRespond` reply may wait a little
//! for a run slot before it is committed: the caller waits anyway, and the queue's path
//! (a worker's look and claim) is the slower one. One whose caller
//! is answered on acceptance never waits: it goes to the queue at once when every slot is
//! taken.
//!
//! Webhook requests come in through [`Intake::deliver`] ([`super::webhook`]), which makes
//! every decision about them before the delivery reaches [`Intake::accept_admitted`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::gate::Admission;
use super::webhook::{HookDesk, HookLimits};
use super::{QueueError, Runner};
use crate::store::{Delivery, NewDelivery};

/// Where an accepted delivery's execution may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunHere {
    /// Only through the queue (a sequential scenario's: the queue keeps their order).
    No,
    /// In this process if a run slot is free now, else through the queue.
    IfFree,
    /// In this process if a run slot is free within the intake's slot wait, else through
    /// the queue (the caller waits for a `WebhookRespond` reply anyway).
    Wait,
}

/// How long a delivery whose caller waits for a reply waits for a run slot by default.
pub const SLOT_WAIT: Duration = Duration::from_millis(250);

/// A handle on the intake; cheap to clone.
#[derive(Clone)]
pub struct Intake {
    runner: Arc<Runner>,
    /// Run slots for accepted executions; `None`: every one goes to the workers.
    direct: Option<Arc<Semaphore>>,
    slot_wait: Duration,
    /// Webhook limits, routes and rates.
    hooks: Arc<HookDesk>,
}

impl Intake {
    /// Accepts deliveries through `runner`'s store writer; up to `direct_concurrency` of
    /// their executions at a time run in this process at once (0: none), and a
    /// [`RunHere::Wait`] delivery waits up to `slot_wait` for one of those slots.
    pub fn new(runner: Arc<Runner>, direct_concurrency: usize, slot_wait: Duration) -> Intake {
        runner.remember();
        Intake {
            runner,
            direct: (direct_concurrency > 0).then(|| Arc::new(Semaphore::new(direct_concurrency))),
            slot_wait,
            hooks: Arc::new(HookDesk::new(HookLimits::default())),
        }
    }

    /// The same intake applying `limits` to webhook requests ([`Intake::deliver`]).
    pub fn with_hook_limits(mut self, limits: HookLimits) -> Intake {
        self.hooks = Arc::new(HookDesk::new(limits));
        self
    }

    pub(super) fn hooks(&self) -> &HookDesk {
        &self.hooks
    }

    pub(super) fn runner(&self) -> &Arc<Runner> {
        &self.runner
    }

    async fn slot(&self, run_here: RunHere) -> Option<OwnedSemaphorePermit> {
        let slots = self.direct.as_ref()?.clone();
        match run_here {
            RunHere::No => None,
            RunHere::IfFree => slots.try_acquire_owned().ok(),
            RunHere::Wait => tokio::time::timeout(self.slot_wait, slots.acquire_owned())
                .await
                .ok()
                .and_then(Result::ok),
        }
    }

    /// Records the delivery and queues its execution; returns once both are committed
    /// (or the key was seen before: [`Delivery::Duplicate`]). `run_here` says whether the
    /// execution may be run by this process at once. A large payload first waits for room in
    /// the runner's [`PayloadGate`](super::PayloadGate).
    pub async fn accept(
        &self,
        delivery: NewDelivery,
        run_here: RunHere,
    ) -> Result<Delivery, QueueError> {
        let admission = self
            .runner
            .payload_gate()
            .admit(delivery.payload_bytes())
            .await;
        self.accept_admitted(delivery, run_here, admission).await
    }

    /// [`Intake::accept`] for a delivery whose payload was admitted before its body was
    /// read: the admission is held until the execution run here ends (or, when it goes to
    /// the queue, until the delivery is committed).
    pub async fn accept_admitted(
        &self,
        delivery: NewDelivery,
        run_here: RunHere,
        admission: Admission,
    ) -> Result<Delivery, QueueError> {
        self.commit(delivery, run_here, admission).await.0
    }

    /// [`Intake::accept_admitted`], and whether this process runs the execution (it was
    /// handed to this process's runner rather than to the queue).
    pub(super) async fn commit(
        &self,
        mut delivery: NewDelivery,
        run_here: RunHere,
        admission: Admission,
    ) -> (Result<Delivery, QueueError>, bool) {
        let slot = self.slot(run_here).await;
        if slot.is_some() {
            delivery.claim_for(self.runner.worker_id());
        }
        let execution = delivery.claimed_execution();
        let result = self.runner.writer().accept(delivery).await;
        let mut ran_here = false;
        if let (Some(slot), Some(execution), Ok(Delivery::Accepted { .. })) =
            (slot, execution, &result)
        {
            ran_here = true;
            let runner = self.runner.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let id = execution.id.clone();
                if let Err(e) = runner.execute_claimed(execution, admission).await {
                    tracing::warn!(execution = %id, error = %e,
                        "run failed; the execution is pushed again once its heartbeats are missed");
                }
            });
        }
        (result, ran_here)
    }
}
