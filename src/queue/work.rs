//! The queue's workers: each process runs one loop that reads runnable executions
//! ([`crate::store::Store::runnable_executions`]) into its free run slots and hands each to
//! the runner, whose claim (compare-and-set in the store) decides who runs it.
//!
//! # Invariants
//! - At most `concurrency` executions started here run at once: an execution holds its slot
//!   from the moment it is read until its run is recorded.
//! - An execution is never handed to two of this process's slots at once (the loop skips the
//!   ids it has in flight); across processes the claim lets one of them run it.
//! - No wake is lost: the loop marks the wake count seen before it reads, and waits only for
//!   a count newer than that; so a commit between the read and the wait wakes it at once.
//! - A database error never ends the loop: it looks again after a pause that grows from 1 s
//!   to 30 s while the errors go on, and at once when they stop.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::{Queue, QueueError, Runner};

/// The channel migration 0013's trigger notifies when executions are queued.
pub const QUEUED_CHANNEL: &str = "switchyard_executions";

/// The first pause after a failed look at the database; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// The executions this process's loop has handed to its slots and not seen end.
#[derive(Default, Clone)]
struct InFlight(Arc<Mutex<HashSet<String>>>);

impl InFlight {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Queue {
    /// Runs `concurrency` executions at a time from the queue until `shutdown` resolves.
    /// Executions already started keep running (the caller decides how long to wait for
    /// them: see the runner's `drain`).
    pub async fn work(
        &self,
        name: &str,
        runner: Arc<Runner>,
        concurrency: usize,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), QueueError> {
        runner.remember();
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        let in_flight = InFlight::default();
        let mut wake = self.wake.subscribe();
        let _notifications = self.forward_notifications(name);
        let mut pause = FIRST_PAUSE;
        tokio::pin!(shutdown);
        loop {
            let first = tokio::select! {
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return Ok(()),
                },
                () = &mut shutdown => return Ok(()),
            };
            wake.borrow_and_update();
            let free = 1 + slots.available_permits();
            let skipped = in_flight.set().len();
            let limit = u32::try_from(free + skipped).unwrap_or(u32::MAX);
            let found = tokio::select! {
                found = self.store.runnable_executions(limit, runner.alive_since()) => found,
                () = &mut shutdown => return Ok(()),
            };
            let ids = match found {
                Ok(ids) => {
                    pause = FIRST_PAUSE;
                    ids
                }
                Err(e) => {
                    drop(first);
                    tracing::warn!(worker = %name, error = %e,
                        "could not look for executions to run; looking again in {pause:?}");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = &mut shutdown => return Ok(()),
                    }
                    pause = (pause * 2).min(MAX_PAUSE);
                    continue;
                }
            };
            let fresh: Vec<String> = {
                let set = in_flight.set();
                ids.into_iter()
                    .filter(|id| !set.contains(id))
                    .take(free)
                    .collect()
            };
            // Every slot filled: there may be more to run, so look again as soon as one frees.
            let more = fresh.len() == free;
            let mut first = Some(first);
            for id in fresh {
                let permit = match first.take() {
                    Some(permit) => permit,
                    None => match slots.clone().try_acquire_owned() {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                };
                in_flight.set().insert(id.clone());
                tokio::spawn(run_one(
                    runner.clone(),
                    id,
                    permit,
                    in_flight.clone(),
                    name.to_string(),
                ));
            }
            drop(first);
            if runner.is_draining() {
                shutdown.as_mut().await;
                return Ok(());
            }
            if !more {
                tokio::select! {
                    _ = wake.changed() => {}
                    () = tokio::time::sleep(self.options.poll_interval) => {}
                    () = &mut shutdown => return Ok(()),
                }
            }
        }
    }

    /// On PostgreSQL, a task that turns the notifications of migration 0013's trigger (any
    /// process queued executions) into wakes of this process's workers, reconnecting after
    /// a pause when its connection is lost; aborted when the returned guard drops. `None` on
    /// SQLite, whose other processes' executions are found by the poll.
    fn forward_notifications(&self, name: &str) -> Option<AbortOnDrop> {
        let pool = self.store.postgres_pool()?.clone();
        let wake = self.wake.clone();
        let name = name.to_string();
        Some(AbortOnDrop(tokio::spawn(async move {
            let mut pause = FIRST_PAUSE;
            loop {
                match listen(&pool).await {
                    Ok(mut listener) => {
                        pause = FIRST_PAUSE;
                        // A wake now: executions queued while nobody listened are not missed.
                        bump(&wake);
                        while listener.recv().await.is_ok() {
                            bump(&wake);
                        }
                    }
                    Err(e) => tracing::warn!(worker = %name, error = %e,
                        "could not listen for queued executions; polling meanwhile"),
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        })))
    }
}

async fn listen(pool: &sqlx::PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(QUEUED_CHANNEL).await?;
    Ok(listener)
}

pub(super) fn bump(wake: &watch::Sender<u64>) {
    wake.send_modify(|n| *n = n.wrapping_add(1));
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs execution `id` in the slot `_permit` if this process's claim wins, then frees the slot.
async fn run_one(
    runner: Arc<Runner>,
    id: String,
    _permit: OwnedSemaphorePermit,
    in_flight: InFlight,
    worker: String,
) {
    if let Err(e) = runner.run_found(&id).await {
        tracing::warn!(%worker, execution = %id, error = %e,
            "the execution could not be run; it is taken over once its heartbeats stop");
    }
    in_flight.set().remove(&id);
}
