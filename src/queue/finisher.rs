//! Group commit for finished executions: runners hand their results to one finisher task,
//! which writes everything waiting — each execution's final status (compare-and-set), its
//! module data, its polling trigger's state and the deletion of its job — in one transaction
//! and answers every runner after that single commit. As with the webhook intake, batches
//! grow with the load, a lone execution waits for nothing, and a failed batch is retried one
//! execution per transaction so that one bad result fails alone.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::Queue;
use super::runner::RunnerError;
use crate::engine::trigger::SEEN_IDS_CAP;
use crate::store::{ExecutionOutcome, FinalStatus, ModuleEntry, Store, TriggerStateChange};

/// Most executions finished in one transaction.
const MAX_BATCH: usize = 256;

/// Finished executions waiting for the finisher before runners wait to hand theirs over.
const BACKLOG: usize = 1024;

/// What a run produced, ready to be stored.
pub(crate) struct Finish {
    pub id: String,
    pub status: FinalStatus,
    pub operations: u64,
    pub cycles: u32,
    /// The report without its log (the log is the module data).
    pub report: Value,
    pub error: Option<Value>,
    /// The polling trigger's committed progress: (scenario, trigger key, cursor, new ids).
    pub trigger: Option<(String, String, Option<Value>, Vec<String>)>,
    /// Output bundles by module, in order (shared with the report's log); `None` for a
    /// confidential scenario.
    pub module_data: Option<Vec<(u32, Arc<Value>)>>,
}

impl Finish {
    fn outcome(&self) -> ExecutionOutcome<'_> {
        ExecutionOutcome {
            status: self.status,
            operations: self.operations,
            cycles: self.cycles,
            report: Some(&self.report),
            error: self.error.as_ref(),
            trigger: self
                .trigger
                .as_ref()
                .map(
                    |(scenario_id, key, cursor, new_seen_ids)| TriggerStateChange {
                        scenario_id,
                        key,
                        cursor: cursor.as_ref(),
                        new_seen_ids,
                        cap: SEEN_IDS_CAP,
                    },
                ),
        }
    }
}

type Reply = oneshot::Sender<Result<bool, RunnerError>>;

/// A handle on the finisher task; cheap to clone.
#[derive(Clone)]
pub(crate) struct Finisher {
    requests: mpsc::Sender<(Finish, Reply)>,
}

impl Finisher {
    /// Starts the finisher on the current tokio runtime; module outputs larger than
    /// `module_data_cap` bytes are stored as a truncation marker. It ends when every handle is
    /// dropped.
    pub fn start(store: Store, module_data_cap: usize) -> Finisher {
        let (requests, receiver) = mpsc::channel(BACKLOG);
        tokio::spawn(run(store, module_data_cap, receiver));
        Finisher { requests }
    }

    /// Stores the result; true when this call finished the execution (false: it had been
    /// finished before, and nothing was written).
    pub async fn finish(&self, finish: Finish) -> Result<bool, RunnerError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || RunnerError::Stopped("the finisher has stopped".into());
        self.requests
            .send((finish, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(store: Store, cap: usize, mut receiver: mpsc::Receiver<(Finish, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (finishes, replies): (Vec<Finish>, Vec<Reply>) = batch.drain(..).unzip();
        match commit(&store, &finishes, cap).await {
            Ok(finished) => {
                for (reply, finished) in replies.into_iter().zip(finished) {
                    let _ = reply.send(Ok(finished));
                }
            }
            Err(error) if finishes.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(error));
                }
            }
            Err(error) => {
                tracing::debug!(%error, executions = finishes.len(), "batch failed; finishing its executions one by one");
                for (finish, reply) in finishes.iter().zip(replies) {
                    let result = commit(&store, std::slice::from_ref(finish), cap)
                        .await
                        .map(|finished| finished.first().copied().unwrap_or(false));
                    let _ = reply.send(result);
                }
            }
        }
    }
}

/// One transaction: for each execution still open, its final status, module data, trigger
/// state and the deletion of its job.
async fn commit(store: &Store, finishes: &[Finish], cap: usize) -> Result<Vec<bool>, RunnerError> {
    let mut tx = store.begin_write().await?;
    let mut finished = Vec::with_capacity(finishes.len());
    for f in finishes {
        let done = tx.finish_execution(&f.id, f.outcome()).await?;
        if done {
            if let Some(data) = &f.module_data {
                let entries: Vec<ModuleEntry<'_>> = data
                    .iter()
                    .map(|(module_id, output)| ModuleEntry {
                        module_id: *module_id,
                        output: output.as_ref(),
                    })
                    .collect();
                tx.append_module_data(&f.id, &entries, cap).await?;
            }
            Queue::delete_job_in(&mut tx, &f.id).await?;
        }
        finished.push(done);
    }
    tx.commit().await?;
    Ok(finished)
}
