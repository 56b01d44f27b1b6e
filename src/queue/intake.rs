//! Group commit for webhook deliveries. Request handlers hand their delivery to one intake
//! task, which writes everything that is waiting — deliveries, their executions and their
//! jobs — in one transaction and answers every handler after that single commit. While a
//! commit is in flight the next deliveries queue up and go together in the next one, so the
//! batch grows with the load and a lone delivery waits for nothing.
//!
//! A delivery is answered `Ok` only once its execution and job are committed; a failed batch
//! is retried one delivery per transaction, so one bad delivery fails alone.

use tokio::sync::{mpsc, oneshot};

use super::{Queue, QueueError};
use crate::store::{Delivery, NewDelivery, Store, StoreError};

/// Most deliveries written in one transaction.
const MAX_BATCH: usize = 512;

/// Deliveries waiting for the intake task before handlers wait to hand theirs over.
const BACKLOG: usize = 4096;

type Reply = oneshot::Sender<Result<Delivery, QueueError>>;

/// A handle on the intake task; cheap to clone.
#[derive(Clone)]
pub struct Intake {
    requests: mpsc::Sender<(NewDelivery, Reply)>,
}

impl Intake {
    /// Starts the intake task on the current tokio runtime. It ends when every handle is
    /// dropped.
    pub fn start(store: Store, queue: Queue) -> Intake {
        let (requests, receiver) = mpsc::channel(BACKLOG);
        tokio::spawn(run(store, queue, receiver));
        Intake { requests }
    }

    /// Records the delivery and queues its execution; returns once both are committed
    /// (or the key was seen before: [`Delivery::Duplicate`]).
    pub async fn accept(&self, delivery: NewDelivery) -> Result<Delivery, QueueError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || QueueError::Worker("the webhook intake has stopped".into());
        self.requests
            .send((delivery, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(store: Store, queue: Queue, mut receiver: mpsc::Receiver<(NewDelivery, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (deliveries, replies): (Vec<NewDelivery>, Vec<Reply>) = batch.drain(..).unzip();
        match commit(&store, &queue, &deliveries).await {
            Ok(results) => {
                queue.pushed();
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result.map_err(QueueError::from));
                }
            }
            Err(error) if deliveries.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(error));
                }
            }
            Err(error) => {
                tracing::debug!(%error, deliveries = deliveries.len(), "batch failed; accepting its deliveries one by one");
                for (delivery, reply) in deliveries.iter().zip(replies) {
                    let result = commit(&store, &queue, std::slice::from_ref(delivery))
                        .await
                        .and_then(|mut r| {
                            r.pop()
                                .unwrap_or_else(|| Err(missing()))
                                .map_err(Into::into)
                        });
                    if result.is_ok() {
                        queue.pushed();
                    }
                    let _ = reply.send(result);
                }
            }
        }
    }
}

/// One transaction: the deliveries, their executions and their jobs.
async fn commit(
    store: &Store,
    queue: &Queue,
    deliveries: &[NewDelivery],
) -> Result<Vec<Result<Delivery, StoreError>>, QueueError> {
    let mut tx = store.begin_write().await?;
    let results = tx.accept_deliveries(deliveries).await?;
    let accepted: Vec<&str> = results
        .iter()
        .filter_map(|r| match r {
            Ok(Delivery::Accepted { execution_id }) => Some(execution_id.as_str()),
            _ => None,
        })
        .collect();
    queue.push_in(&mut tx, &accepted).await?;
    tx.commit().await?;
    Ok(results)
}

fn missing() -> StoreError {
    StoreError::Conflict {
        what: "webhook delivery",
        reason: "the store gave no answer for it; retry".into(),
    }
}
