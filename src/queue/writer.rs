//! Group commit. One writer task takes what request handlers and runners hand it — webhook
//! deliveries with their executions (queued, unless the process that accepted them runs
//! them at once), and finished executions with their module data, parked bundles and trigger
//! state — writes all that is waiting in one transaction, and answers each after that single commit. While a
//! commit is in flight the next writes queue up and go together in the next one, so batches
//! grow with the load and a lone write waits for nothing.
//!
//! Nothing is answered before its commit: a delivery is `Ok` only once its execution is
//! durable (a queued execution is the queue's job). A failed batch is retried one write per transaction, so one bad write
//! fails alone.
//!
//! No transaction holds the database for long (on SQLite one connection serves every request,
//! `/health` included): a finish's module outputs are serialised by [`Writer::finish`] on the
//! caller's side (off the async runtime when there are many), and an execution with more than
//! [`MODULE_ROWS_PER_COMMIT`] outputs (or [`MODULE_BYTES_PER_COMMIT`] bytes of them) has the
//! leading parts written in transactions of their own before its finish — each only while the
//! execution is still claimed by the worker that ran it, and the finish then only on the same
//! condition, so a re-run elsewhere never mixes its data with this one's. A round of writes is
//! split into transactions of at most that many module outputs.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{Queue, QueueError};
use crate::module::polling::SEEN_IDS_CAP;
use crate::store::{
    Delivery, ExecutionFinish, ExecutionOutcome, FinalStatus, ModuleCounts, ModuleData,
    ModuleEntry, NewDelivery, NewIncomplete, Store, StoreError, TriggerStateChange, WriteTx,
};

/// Most writes in one transaction.
const MAX_BATCH: usize = 512;

/// Most module outputs, and most bytes of them, written in one transaction (a larger
/// execution's are written in parts). Measured in `docs/reliability.md`: a part this size
/// commits in a few milliseconds, so other requests wait at most that long for the database.
pub(crate) const MODULE_ROWS_PER_COMMIT: usize = 2048;
pub(crate) const MODULE_BYTES_PER_COMMIT: usize = 2 << 20;

/// Up to this many outputs are serialised on the caller's task; more on a blocking thread.
const SERIALISE_INLINE: usize = 32;

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
    /// The inputs of modules' first operations, in order (shared with the report); empty for
    /// a confidential scenario.
    pub module_inputs: Vec<(u32, Arc<Value>)>,
    /// The engine's per-module counts, in order of first run: with what is stored, the
    /// execution's module summary.
    pub modules: Vec<ModuleCounts>,
    /// The worker that ran it: module data written in parts is written only while the
    /// execution is still claimed by it.
    pub worker_id: String,
    /// The bundles it parked as incomplete executions, in order: stored with the finish,
    /// only when this finish ends the execution.
    pub parked: Vec<Parked>,
}

/// A bundle an execution parked, to store as a pending incomplete execution.
pub(crate) struct Parked {
    pub scenario_id: String,
    pub version: u32,
    /// The module that failed, where a retry resumes.
    pub module_id: u32,
    pub bundle: Value,
    pub error: Option<Value>,
    /// Break's `{retry, count, interval}` settings, if any.
    pub retry: Option<Value>,
    /// When an automatic retry is due; `None` for manual replay only.
    pub next_attempt_at: Option<i64>,
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
    /// The generation of the state read: a reset since then drops this progress.
    pub generation: i64,
}

/// A [`Finish`] with its module data (or the last part of it) serialised.
struct Prepared {
    id: String,
    status: FinalStatus,
    operations: u64,
    cycles: u32,
    report: Value,
    error: Option<Value>,
    trigger: Option<TriggerProgress>,
    module_data: ModuleData,
    /// Set when leading parts of the data were written before: finish only while the
    /// execution is claimed by this worker.
    owner: Option<String>,
    parked: Vec<Parked>,
}

/// A leading part of an execution's module data, written ahead of its finish.
struct Append {
    id: String,
    worker_id: String,
    part: ModuleData,
}

impl Prepared {
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
                generation: t.generation,
            }),
        }
    }
}

/// Serialises module outputs and operations' inputs (capped at `cap` bytes each), summarises
/// them with the engine's `counts` and splits them into the parts of their own transactions
/// (the last, with the summary, goes with the finish).
fn prepare(
    outputs: &[(u32, Arc<Value>)],
    inputs: &[(u32, Arc<Value>)],
    counts: &[ModuleCounts],
    cap: usize,
) -> Result<Vec<ModuleData>, StoreError> {
    let entries: Vec<ModuleEntry<'_>> = outputs
        .iter()
        .map(|(module_id, output)| ModuleEntry {
            module_id: *module_id,
            output: output.as_ref(),
        })
        .collect();
    let mut data = ModuleData::prepare(&entries, cap)?;
    data.add_inputs(inputs.iter().map(|(m, input)| (*m, input.as_ref())), cap)?;
    data.summarise(counts);
    Ok(data.into_parts(MODULE_ROWS_PER_COMMIT, MODULE_BYTES_PER_COMMIT))
}

type AcceptReply = oneshot::Sender<Result<Delivery, QueueError>>;
type BoolReply = oneshot::Sender<Result<bool, QueueError>>;

enum Write {
    Accept(NewDelivery, AcceptReply),
    Append(Box<Append>, BoolReply),
    Finish(Box<Prepared>, BoolReply),
}

impl Write {
    /// The module outputs this write stores.
    fn module_rows(&self) -> usize {
        match self {
            Write::Accept(..) => 0,
            Write::Append(append, _) => append.part.len(),
            Write::Finish(finish, _) => finish.module_data.len(),
        }
    }
}

/// A handle on the writer task; cheap to clone.
#[derive(Clone)]
pub(crate) struct Writer {
    requests: mpsc::Sender<Write>,
    /// Module outputs larger than this many bytes are stored as a truncation marker.
    module_data_cap: usize,
}

impl Writer {
    /// Starts the writer on the current tokio runtime; module outputs larger than
    /// `module_data_cap` bytes are stored as a truncation marker. It ends when every handle
    /// is dropped.
    pub fn start(store: Store, queue: Queue, module_data_cap: usize) -> Writer {
        let (requests, receiver) = mpsc::channel(BACKLOG);
        tokio::spawn(run(store, queue, receiver));
        Writer {
            requests,
            module_data_cap,
        }
    }

    /// Records the delivery and its execution — queued, unless the execution was claimed
    /// for this process ([`NewDelivery::claim_for`]) — and returns once they are
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
    /// finished before, or, for one whose data was written in parts, it is no longer claimed
    /// by `finish.worker_id`, and no finish was written).
    pub async fn finish(&self, mut finish: Finish) -> Result<bool, QueueError> {
        let outputs = finish.module_data.take().unwrap_or_default();
        let inputs = std::mem::take(&mut finish.module_inputs);
        let counts = std::mem::take(&mut finish.modules);
        let cap = self.module_data_cap;
        let mut parts = if outputs.len() + inputs.len() <= SERIALISE_INLINE {
            prepare(&outputs, &inputs, &counts, cap)?
        } else {
            tokio::task::spawn_blocking(move || prepare(&outputs, &inputs, &counts, cap))
                .await
                .map_err(|e| QueueError::Worker(format!("serialising module data: {e}")))??
        };
        let last = parts.pop().unwrap_or_default();
        let in_parts = !parts.is_empty();
        for part in parts {
            let append = Append {
                id: finish.id.clone(),
                worker_id: finish.worker_id.clone(),
                part,
            };
            if !self
                .send(|reply| Write::Append(Box::new(append), reply))
                .await?
            {
                // Finished or claimed by another worker since: that one's data and finish
                // count, not this one's.
                return Ok(false);
            }
        }
        let prepared = Prepared {
            id: finish.id,
            status: finish.status,
            operations: finish.operations,
            cycles: finish.cycles,
            report: finish.report,
            error: finish.error,
            trigger: finish.trigger,
            module_data: last,
            owner: in_parts.then_some(finish.worker_id),
            parked: finish.parked,
        };
        self.send(|reply| Write::Finish(Box::new(prepared), reply))
            .await
    }

    /// Hands a write to the writer and waits for its commit.
    async fn send(&self, write: impl FnOnce(BoolReply) -> Write) -> Result<bool, QueueError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || QueueError::Worker("the store writer has stopped".into());
        self.requests
            .send(write(reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The writes of one transaction, and whom to answer.
#[derive(Default)]
struct Round {
    deliveries: Vec<NewDelivery>,
    accept_replies: Vec<AcceptReply>,
    appends: Vec<Append>,
    append_replies: Vec<BoolReply>,
    finishes: Vec<Prepared>,
    finish_replies: Vec<BoolReply>,
    module_rows: usize,
}

impl Round {
    fn push(&mut self, write: Write) {
        self.module_rows += write.module_rows();
        match write {
            Write::Accept(delivery, reply) => {
                self.deliveries.push(delivery);
                self.accept_replies.push(reply);
            }
            Write::Append(append, reply) => {
                self.appends.push(*append);
                self.append_replies.push(reply);
            }
            Write::Finish(finish, reply) => {
                self.finishes.push(*finish);
                self.finish_replies.push(reply);
            }
        }
    }

    fn writes(&self) -> usize {
        self.deliveries.len() + self.appends.len() + self.finishes.len()
    }

    /// Commits the round and answers every write of it.
    async fn commit(self, store: &Store, queue: &Queue) {
        let writes = self.writes();
        if writes == 0 {
            return;
        }
        let (deliveries, appends, finishes) = (&self.deliveries, &self.appends, &self.finishes);
        let (accepted, appended, finished) =
            match commit(store, queue, deliveries, appends, finishes).await {
                Ok((accepted, appended, finished)) => (
                    accepted
                        .into_iter()
                        .map(|r| r.map_err(Into::into))
                        .collect(),
                    appended.into_iter().map(Ok).collect(),
                    finished.into_iter().map(Ok).collect(),
                ),
                Err(error) if writes == 1 => {
                    // The one write gets the error itself.
                    let mut error = Some(error);
                    (
                        the_error(&mut error, deliveries.len()),
                        the_error(&mut error, appends.len()),
                        the_error(&mut error, finishes.len()),
                    )
                }
                Err(error) => {
                    tracing::debug!(%error, deliveries = deliveries.len(),
                        parts = appends.len(), executions = finishes.len(),
                        "batch failed; writing its parts one by one");
                    one_by_one(store, queue, deliveries, appends, finishes).await
                }
            };
        for (reply, result) in self.accept_replies.into_iter().zip(accepted) {
            let _ = reply.send(result);
        }
        for (reply, result) in self.append_replies.into_iter().zip(appended) {
            let _ = reply.send(result);
        }
        for (reply, result) in self.finish_replies.into_iter().zip(finished) {
            let _ = reply.send(result);
        }
    }
}

/// The answers of `n` writes (0 or 1) when the one write of a round failed with `error`.
fn the_error<T>(error: &mut Option<QueueError>, n: usize) -> Vec<Result<T, QueueError>> {
    match n {
        1 => error.take().map(Err).into_iter().collect(),
        _ => Vec::new(),
    }
}

async fn run(store: Store, queue: Queue, mut receiver: mpsc::Receiver<Write>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut round = Round::default();
        for write in batch.drain(..) {
            // A transaction holds at most MODULE_ROWS_PER_COMMIT outputs (a write with more
            // goes alone); the writes that wait go together in the first one.
            if round.module_rows > 0
                && round.module_rows + write.module_rows() > MODULE_ROWS_PER_COMMIT
            {
                std::mem::take(&mut round).commit(&store, &queue).await;
            }
            round.push(write);
        }
        round.commit(&store, &queue).await;
    }
}

type Answers = (
    Vec<Result<Delivery, QueueError>>,
    Vec<Result<bool, QueueError>>,
    Vec<Result<bool, QueueError>>,
);

/// Each write in a transaction of its own, after a batch failed.
async fn one_by_one(
    store: &Store,
    queue: &Queue,
    deliveries: &[NewDelivery],
    appends: &[Append],
    finishes: &[Prepared],
) -> Answers {
    let mut accepted = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let one = std::slice::from_ref(delivery);
        let result = commit(store, queue, one, &[], &[])
            .await
            .and_then(|(mut r, _, _)| {
                r.pop()
                    .unwrap_or_else(|| Err(missing()))
                    .map_err(Into::into)
            });
        accepted.push(result);
    }
    let mut appended = Vec::with_capacity(appends.len());
    for append in appends {
        let one = std::slice::from_ref(append);
        let result = commit(store, queue, &[], one, &[])
            .await
            .map(|(_, a, _)| a.first().copied().unwrap_or(false));
        appended.push(result);
    }
    let mut finished = Vec::with_capacity(finishes.len());
    for finish in finishes {
        let one = std::slice::from_ref(finish);
        let result = commit(store, queue, &[], &[], one)
            .await
            .map(|(_, _, f)| f.first().copied().unwrap_or(false));
        finished.push(result);
    }
    (accepted, appended, finished)
}

/// What one transaction did: each delivery's answer, whether each part was appended and
/// whether each execution was finished.
type Committed = (Vec<Result<Delivery, StoreError>>, Vec<bool>, Vec<bool>);

/// One transaction: the deliveries and their executions (queued, unless claimed by the
/// process that accepted them); the leading parts of module data of executions still claimed
/// by their worker; then, for each execution still open (and, when its data was written in
/// parts, still claimed by its worker), its final status, module data and summary, parked
/// bundles and trigger state.
async fn commit(
    store: &Store,
    queue: &Queue,
    deliveries: &[NewDelivery],
    appends: &[Append],
    finishes: &[Prepared],
) -> Result<Committed, QueueError> {
    let mut tx = store.begin_write().await?;
    let accepted = tx.accept_deliveries(deliveries).await?;
    // Executions that wait for a worker (not claimed by the process that accepted them).
    let queued = accepted
        .iter()
        .zip(deliveries)
        .any(|(r, delivery)| matches!(r, Ok(Delivery::Accepted { .. })) && !delivery.is_claimed());
    let mut appended = Vec::with_capacity(appends.len());
    for a in appends {
        appended.push(tx.append_module_part(&a.id, &a.worker_id, &a.part).await?);
    }
    // A finish after parts is made only while its worker still holds the execution.
    let mut owned = Vec::with_capacity(finishes.len());
    for f in finishes {
        owned.push(match &f.owner {
            Some(worker_id) => tx.claimed_by(&f.id, worker_id).await?,
            None => true,
        });
    }
    let batch: Vec<ExecutionFinish<'_>> = finishes
        .iter()
        .zip(&owned)
        .filter(|(_, owned)| **owned)
        .map(|(f, _)| ExecutionFinish {
            id: &f.id,
            outcome: f.outcome(),
            module_data: &f.module_data,
        })
        .collect();
    let mut answers = tx.finish_executions(&batch).await?.into_iter();
    let finished: Vec<bool> = owned
        .iter()
        .map(|&owned| owned && answers.next().unwrap_or(false))
        .collect();
    let done: Vec<&Prepared> = finishes
        .iter()
        .zip(&finished)
        .filter(|(_, finished)| **finished)
        .map(|(f, _)| f)
        .collect();
    for f in &done {
        park(&mut tx, f).await?;
    }
    tx.commit().await?;
    if queued {
        queue.wake_workers();
    }
    Ok((accepted, appended, finished))
}

/// Stores the bundles `finish` parked, in the transaction that finishes its execution.
async fn park(tx: &mut WriteTx, finish: &Prepared) -> Result<(), QueueError> {
    let parked: Vec<NewIncomplete<'_>> = finish
        .parked
        .iter()
        .map(|p| NewIncomplete {
            execution_id: &finish.id,
            scenario_id: &p.scenario_id,
            version: p.version,
            module_id: p.module_id,
            bundle: &p.bundle,
            error: p.error.as_ref(),
            retry: p.retry.as_ref(),
            next_attempt_at: p.next_attempt_at,
        })
        .collect();
    tx.park_bundles(&parked).await?;
    Ok(())
}

fn missing() -> StoreError {
    StoreError::Conflict {
        what: "webhook delivery",
        reason: "the store gave no answer for it; retry".into(),
    }
}
