//! The scheduler loop: for every active scenario with a timed schedule, claims each due
//! occurrence once (a unique row per scenario and tick, so several schedulers in several
//! processes never double it) and queues its execution. After downtime, missed occurrences
//! collapse into one run at the latest of them. It sleeps until the next occurrence or until
//! told that scenarios changed: no polling while idle.
//!
//! A scenario that starts with a polling trigger is not queued again while an execution of it
//! is still queued or running (as Make does not start a scheduled run before the previous one
//! ends): the due occurrence is claimed on a later pass, once the previous poll has committed.
//! The runner serialises a polling scenario's executions in each process as well.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::catalog::Catalog;
use crate::queue::{Queue, Submission};
use crate::store::{ExecutionFilter, ExecutionStatus, Store};

use super::schedule::Schedule;

/// The longest the loop sleeps without looking again (schedules edited by another process).
const MAX_SLEEP: Duration = Duration::from_secs(30);

pub struct Scheduler {
    store: Store,
    queue: Queue,
    catalog: Catalog,
    /// Smallest `indefinitely` interval accepted, in seconds (Make's minimum is 60).
    pub min_interval: u64,
    changed: Arc<Notify>,
}

impl Scheduler {
    /// A scheduler of `catalog`'s scenarios, woken by the catalog's changes (a scenario
    /// activated, edited or deactivated through it).
    pub fn new(catalog: Catalog, queue: Queue, min_interval: u64) -> Scheduler {
        Scheduler {
            store: catalog.store().clone(),
            changed: catalog.changes(),
            queue,
            catalog,
            min_interval,
        }
    }

    /// Runs until the task is dropped.
    pub async fn run(self) {
        loop {
            let wait = match self.tick(Utc::now()).await {
                Ok(next) => next
                    .map(|at| (at - Utc::now()).to_std().unwrap_or_default())
                    .unwrap_or(MAX_SLEEP)
                    .min(MAX_SLEEP),
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler pass failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.changed.notified() => {}
            }
        }
    }

    /// One pass: queues every due occurrence; returns the earliest future one.
    pub async fn tick(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, crate::queue::QueueError> {
        let mut earliest: Option<DateTime<Utc>> = None;
        for row in self.store.list_scenarios().await? {
            if !row.active {
                continue;
            }
            let Ok(Ok(scenario)) = self.catalog.compiled(&row.id, row.version).await else {
                continue;
            };
            // A called scenario (`scenario-service:StartSubscenario`) runs on call only,
            // whatever schedule its blueprint carries.
            if scenario.is_callable() {
                continue;
            }
            let Some(spec) = &scenario.scheduling else {
                continue;
            };
            let Ok(mut schedule) = Schedule::new(spec) else {
                continue;
            };
            schedule.min_interval = self.min_interval;
            if !schedule.is_timed() {
                continue;
            }
            let anchor = DateTime::<Utc>::from_timestamp_millis(row.updated_at).unwrap_or(now);
            let last = self
                .store
                .last_tick(&row.id)
                .await?
                .and_then(DateTime::<Utc>::from_timestamp_millis);
            let Some(mut next) = schedule.next_after(last.unwrap_or(anchor), anchor) else {
                continue;
            };
            if next <= now && scenario.polling_trigger().is_some() && self.busy(&row.id).await? {
                // The previous poll is still running: look again at the next occurrence.
                let mut after = next;
                for _ in 0..100_000 {
                    match schedule.next_after(after, anchor) {
                        Some(a) if after <= now => after = a,
                        _ => break,
                    }
                }
                if after > now {
                    earliest = Some(earliest.map_or(after, |e| e.min(after)));
                }
                continue;
            }
            if next <= now {
                // Collapse missed occurrences into the latest one that is due.
                let mut due = next;
                for _ in 0..100_000 {
                    match schedule.next_after(due, anchor) {
                        Some(after) if after <= now => due = after,
                        _ => break,
                    }
                }
                let tick = Submission::Tick {
                    scenario_id: &row.id,
                    version: row.version,
                    tick_at: due.timestamp_millis(),
                };
                if self.queue.submit(tick).await?.is_some() {
                    tracing::info!(scenario = %row.id, tick = %due, "scheduled run queued");
                }
                match schedule.next_after(due, anchor) {
                    Some(after) => next = after,
                    None => continue,
                }
            }
            earliest = Some(earliest.map_or(next, |e| e.min(next)));
        }
        Ok(earliest)
    }

    /// Whether the scenario has an execution still queued or running.
    async fn busy(&self, scenario_id: &str) -> Result<bool, crate::queue::QueueError> {
        for status in [ExecutionStatus::Running, ExecutionStatus::Queued] {
            let filter = ExecutionFilter {
                scenario_id: Some(scenario_id.to_string()),
                status: Some(status),
                limit: 1,
                before: None,
            };
            if !self.store.list_executions(&filter).await?.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
