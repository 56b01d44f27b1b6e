//! Group commit. One writer task takes what request handlers and runners hand it — webhook
//! deliveries with their executions (and the jobs of those no process runs at once), and
//! finished executions with their module data, trigger state and job deletion — writes all
//! that is waiting in one transaction, and answers each after that single commit. While a
//! commit is in flight the next writes queue up and go together in the next one, so batches
//! grow with the load and a lone write waits for nothing.
//!
//! Nothing is answered before its commit: a delivery is `Ok` only once its execution (and
//! job) are durable. A failed batch is retried one write per transaction, so one bad write
//! fails alone.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{Queue, QueueError};
use crate::module::polling::SEEN_IDS_CAP;
use crate::store::{
    Delivery, ExecutionFinish, ExecutionOutcome, FinalStatus, ModuleEntry, NewDelivery, Store,
    StoreError, TriggerStateChange,
};

/// Most writes in one transaction.
const MAX_BATCH: usize = 512;

/// Writes waiting for the writer before their senders wait to hand them over.
const BACKLOG: usize = 4096;

/// What a run produced, ready to be stored.
pub(crate) struct Finish {
    pub id: String,
    pub status: FinalStatus,
    pub operations: u64,
    pub cycles: u32,
    /// The report without its log (the log is the module data).
    pub report: Value,
    pub error: Option<Value>,
    /// The polling trigger's committed progress, stored with the finish.
    pub trigger: Option<TriggerProgress>,
    /// Output bundles by module, in order (shared with the report's log); `None` for a
    /// confidential scenario.
    pub module_data: Option<Vec<(u32, Arc<Value>)>>,
}

/// What the cycles of a polling trigger that committed processed, to merge into its state.
pub(crate) struct TriggerProgress {
    pub scenario_id: String,
    /// The trigger's key in its scenario (`Scenario::trigger_key`).
    pub key: String,
    /// The trigger's new cursor (`None`: unchanged).
    pub cursor: Option<Value>,
    /// Ids emitted since the state was read, added to the ids seen.
    pub new_seen_ids: Vec<String>,
}

impl Finish {
    fn outcome(&self) -> ExecutionOutcome<'_> {
        ExecutionOutcome {
            status: self.status,
            operations: self.operations,
            cycles: self.cycles,
            report: Some(&self.report),
            error: self.error.as_ref(),
            trigger: self.trigger.as_ref().map(|t| TriggerStateChange {
                scenario_id: &t.scenario_id,
                key: &t.key,
                cursor: t.cursor.as_ref(),
                new_seen_ids: &t.new_seen_ids,
                cap: SEEN_IDS_CAP,
            }),
        }
    }

    fn module_entries(&self) -> Vec<ModuleEntry<'_>> {
        self.module_data
            .iter()
            .flatten()
            .map(|(module_id, output)| ModuleEntry {
                module_id: *module_id,
                output: output.as_ref(),
            })
            .collect()
    }
}

type AcceptReply = oneshot::Sender<Result<Delivery, QueueError>>;
type FinishReply = oneshot::Sender<Result<bool, QueueError>>;

enum Write {
    Accept(NewDelivery, AcceptReply),
    Finish(Box<Finish>, FinishReply),
}

/// A handle on the writer task; cheap to clone.
#[derive(Clone)]
pub(crate) struct Writer {
    requests: mpsc::Sender<Write>,
}

impl Writer {
    /// Starts the writer on the current tokio runtime; module outputs larger than
    /// `module_data_cap` bytes are stored as a truncation marker. It ends when every handle
    /// is dropped.
    pub fn start(store: Store, queue: Queue, module_data_cap: usize) -> Writer {
        let (requests, receiver) = mpsc::channel(BACKLOG);
        tokio::spawn(run(store, queue, module_data_cap, receiver));
        Writer { requests }
    }

    /// Records the delivery and its execution — with a job, unless the execution was
    /// claimed for this process ([`NewDelivery::claim_for`]) — and returns once they are
    /// committed (or the key was seen before: [`Delivery::Duplicate`]).
    pub async fn accept(&self, delivery: NewDelivery) -> Result<Delivery, QueueError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || QueueError::Worker("the store writer has stopped".into());
        self.requests
            .send(Write::Accept(delivery, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Stores the result; true when this call finished the execution (false: it had been
    /// finished before, and nothing was written).
    pub async fn finish(&self, finish: Finish) -> Result<bool, QueueError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || QueueError::Worker("the store writer has stopped".into());
        self.requests
            .send(Write::Finish(Box::new(finish), reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(store: Store, queue: Queue, cap: usize, mut receiver: mpsc::Receiver<Write>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (mut deliveries, mut accept_replies) = (Vec::new(), Vec::new());
        let (mut finishes, mut finish_replies) = (Vec::new(), Vec::new());
        for write in batch.drain(..) {
            match write {
                Write::Accept(delivery, reply) => {
                    deliveries.push(delivery);
                    accept_replies.push(reply);
                }
                Write::Finish(finish, reply) => {
                    finishes.push(*finish);
                    finish_replies.push(reply);
                }
            }
        }
        let (accepted, finished) = match commit(&store, &queue, &deliveries, &finishes, cap).await {
            Ok((accepted, finished)) => (
                accepted
                    .into_iter()
                    .map(|r| r.map_err(Into::into))
                    .collect(),
                finished.into_iter().map(Ok).collect(),
            ),
            Err(error) if deliveries.len() + finishes.len() == 1 => {
                if deliveries.is_empty() {
                    (Vec::new(), vec![Err(error)])
                } else {
                    (vec![Err(error)], Vec::new())
                }
            }
            Err(error) => {
                tracing::debug!(%error, deliveries = deliveries.len(), executions = finishes.len(),
                    "batch failed; writing its parts one by one");
                one_by_one(&store, &queue, &deliveries, &finishes, cap).await
            }
        };
        for (reply, result) in accept_replies.into_iter().zip(accepted) {
            let _ = reply.send(result);
        }
        for (reply, result) in finish_replies.into_iter().zip(finished) {
            let _ = reply.send(result);
        }
    }
}

/// Each delivery and each finish in a transaction of its own, after a batch failed.
async fn one_by_one(
    store: &Store,
    queue: &Queue,
    deliveries: &[NewDelivery],
    finishes: &[Finish],
    cap: usize,
) -> (
    Vec<Result<Delivery, QueueError>>,
    Vec<Result<bool, QueueError>>,
) {
    let mut accepted = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let one = std::slice::from_ref(delivery);
        let result = commit(store, queue, one, &[], cap)
            .await
            .and_then(|(mut r, _)| {
                r.pop()
                    .unwrap_or_else(|| Err(missing()))
                    .map_err(Into::into)
            });
        accepted.push(result);
    }
    let mut finished = Vec::with_capacity(finishes.len());
    for finish in finishes {
        let one = std::slice::from_ref(finish);
        let result = commit(store, queue, &[], one, cap)
            .await
            .map(|(_, f)| f.first().copied().unwrap_or(false));
        finished.push(result);
    }
    (accepted, finished)
}

/// One transaction: the deliveries, their executions and the jobs of those not claimed;
/// then, for each execution still open, its final status, module data, trigger state and
/// the deletion of its job.
async fn commit(
    store: &Store,
    queue: &Queue,
    deliveries: &[NewDelivery],
    finishes: &[Finish],
    cap: usize,
) -> Result<(Vec<Result<Delivery, StoreError>>, Vec<bool>), QueueError> {
    let mut tx = store.begin_write().await?;
    let accepted = tx.accept_deliveries(deliveries).await?;
    let jobs: Vec<&str> = accepted
        .iter()
        .zip(deliveries)
        .filter_map(|(r, delivery)| match r {
            Ok(Delivery::Accepted { execution_id }) if !delivery.is_claimed() => {
                Some(execution_id.as_str())
            }
            _ => None,
        })
        .collect();
    queue.push_in(&mut tx, &jobs).await?;
    let entries: Vec<Vec<ModuleEntry<'_>>> = finishes.iter().map(Finish::module_entries).collect();
    let batch: Vec<ExecutionFinish<'_>> = finishes
        .iter()
        .zip(&entries)
        .map(|(f, entries)| ExecutionFinish {
            id: &f.id,
            outcome: f.outcome(),
            module_data: entries,
        })
        .collect();
    let finished = tx.finish_executions(&batch, cap).await?;
    let done: Vec<&str> = batch
        .iter()
        .zip(&finished)
        .filter(|(_, finished)| **finished)
        .map(|(f, _)| f.id)
        .collect();
    Queue::delete_jobs_in(&mut tx, &done).await?;
    tx.commit().await?;
    if !jobs.is_empty() {
        queue.pushed();
    }
    Ok((accepted, finished))
}

fn missing() -> StoreError {
    StoreError::Conflict {
        what: "webhook delivery",
        reason: "the store gave no answer for it; retry".into(),
    }
}
