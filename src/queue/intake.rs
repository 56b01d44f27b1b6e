//! Group commit for webhook deliveries. Request handlers hand their delivery to one intake
//! task, which writes everything that is waiting — deliveries, their executions and their
//! jobs — in one transaction and answers every handler after that single commit. While a
//! commit is in flight the next deliveries queue up and go together in the next one, so the
//! batch grows with the load and a lone delivery waits for nothing.
//!
//! A delivery is answered `Ok` only once its execution and job are committed; a failed batch
//! is retried one delivery per transaction, so one bad delivery fails alone.
//!
//! With a [`DirectRun`], the process runs what it accepted itself while it has capacity: the
//! execution is created already claimed by this process's runner, its job is pushed with a
//! lease ([`super::LEASE`]), and it goes straight to the runner, sparing the workers' fetch,
//! lock and acknowledgement and the claim. The job stays in the queue until the
//! execution finishes, so if the process dies another worker runs it once the lease ends.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::{Push, Queue, QueueError, Runner};
use crate::store::{Delivery, NewDelivery, Store, StoreError};

/// Most deliveries written in one transaction.
const MAX_BATCH: usize = 512;

/// Deliveries waiting for the intake task before handlers wait to hand theirs over.
const BACKLOG: usize = 4096;

type Reply = oneshot::Sender<Result<Delivery, QueueError>>;

/// One delivery waiting for the intake task.
struct Request {
    delivery: NewDelivery,
    /// Its execution may run in this process at once (not a sequential scenario's).
    may_run_here: bool,
    reply: Reply,
}

/// Running accepted executions in the accepting process: the runner and how many it may run
/// at once this way.
pub struct DirectRun {
    pub runner: Arc<Runner>,
    pub concurrency: usize,
}

/// A handle on the intake task; cheap to clone.
#[derive(Clone)]
pub struct Intake {
    requests: mpsc::Sender<Request>,
}

impl Intake {
    /// Starts the intake task on the current tokio runtime. It ends when every handle is
    /// dropped.
    pub fn start(store: Store, queue: Queue, direct: Option<DirectRun>) -> Intake {
        let (requests, receiver) = mpsc::channel(BACKLOG);
        let direct = direct.map(|d| Direct {
            runner: d.runner,
            permits: Arc::new(Semaphore::new(d.concurrency.max(1))),
        });
        tokio::spawn(run(store, queue, direct, receiver));
        Intake { requests }
    }

    /// Records the delivery and queues its execution; returns once both are committed
    /// (or the key was seen before: [`Delivery::Duplicate`]). With `may_run_here`, the
    /// execution may be run by this process at once ([`DirectRun`]).
    pub async fn accept(
        &self,
        delivery: NewDelivery,
        may_run_here: bool,
    ) -> Result<Delivery, QueueError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || QueueError::Worker("the webhook intake has stopped".into());
        let request = Request {
            delivery,
            may_run_here,
            reply,
        };
        self.requests.send(request).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

struct Direct {
    runner: Arc<Runner>,
    permits: Arc<Semaphore>,
}

async fn run(
    store: Store,
    queue: Queue,
    direct: Option<Direct>,
    mut receiver: mpsc::Receiver<Request>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut deliveries = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        // A run slot for each delivery that may take one now; the others go to the workers.
        let mut slots: Vec<Option<OwnedSemaphorePermit>> = Vec::with_capacity(batch.len());
        for mut request in batch.drain(..) {
            let slot = match &direct {
                Some(d) if request.may_run_here => d.permits.clone().try_acquire_owned().ok(),
                _ => None,
            };
            if let (Some(d), Some(_)) = (&direct, &slot) {
                request.delivery.claim_for(d.runner.worker_id());
            }
            deliveries.push(request.delivery);
            replies.push(request.reply);
            slots.push(slot);
        }
        let leased: Vec<bool> = slots.iter().map(Option::is_some).collect();
        let outcome = commit(&store, &queue, &deliveries, &leased).await;
        let results: Vec<Result<Delivery, QueueError>> = match outcome {
            Ok(results) => {
                queue.pushed();
                results
                    .into_iter()
                    .map(|r| r.map_err(QueueError::from))
                    .collect()
            }
            Err(error) if deliveries.len() == 1 => vec![Err(error)],
            Err(error) => {
                tracing::debug!(%error, deliveries = deliveries.len(), "batch failed; accepting its deliveries one by one");
                let mut results = Vec::with_capacity(deliveries.len());
                for (delivery, leased) in deliveries.iter().zip(&leased) {
                    let one = std::slice::from_ref(delivery);
                    let result = commit(&store, &queue, one, &[*leased])
                        .await
                        .and_then(|mut r| {
                            r.pop()
                                .unwrap_or_else(|| Err(missing()))
                                .map_err(Into::into)
                        });
                    if result.is_ok() {
                        queue.pushed();
                    }
                    results.push(result);
                }
                results
            }
        };
        for (((reply, result), slot), delivery) in
            replies.into_iter().zip(results).zip(slots).zip(&deliveries)
        {
            if let (Some(d), Some(slot), Ok(Delivery::Accepted { .. })) = (&direct, slot, &result)
                && let Some(execution) = delivery.claimed_execution()
            {
                let runner = d.runner.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let id = execution.id.clone();
                    if let Err(e) = runner.execute_claimed(execution).await {
                        tracing::warn!(execution = %id, error = %e, "run failed; the queue will retry it when its lease ends");
                    }
                });
            }
            let _ = reply.send(result);
        }
    }
}

/// One transaction: the deliveries, their executions and their jobs (`leased` for those
/// this process runs itself).
async fn commit(
    store: &Store,
    queue: &Queue,
    deliveries: &[NewDelivery],
    leased: &[bool],
) -> Result<Vec<Result<Delivery, StoreError>>, QueueError> {
    let mut tx = store.begin_write().await?;
    let results = tx.accept_deliveries(deliveries).await?;
    let jobs: Vec<Push<'_>> = results
        .iter()
        .zip(leased)
        .filter_map(|(r, leased)| match r {
            Ok(Delivery::Accepted { execution_id }) => Some(Push {
                execution_id,
                leased: *leased,
            }),
            _ => None,
        })
        .collect();
    queue.push_in(&mut tx, &jobs).await?;
    tx.commit().await?;
    Ok(results)
}

fn missing() -> StoreError {
    StoreError::Conflict {
        what: "webhook delivery",
        reason: "the store gave no answer for it; retry".into(),
    }
}
