//! Automatic retries of incomplete executions (bundles parked by Break, or by an unhandled
//! error with incomplete executions on): a Break with `retry: true` is retried `count` times
//! every `interval` minutes; transient errors (rate limit, connection, timeout) follow Make's
//! backoff (+1 min, +10, +10, +30, +30, +30, +3 h, +3 h). A retry is a new execution that
//! resumes the flow at the module that failed; when it succeeds the incomplete execution is
//! resolved (see `Runner`). Other errors wait for a person (`/api/incomplete/{id}/retry`).

use std::time::Duration;

use serde_json::{Value, json};

use super::{ExecutionPayload, Queue, QueueError, ResumePoint};
use crate::module::error::ErrorKind;
use crate::store::{
    Execution, ExecutionSource, IncompleteExecution, NewExecution, Store, StoreError, now_ms,
};

const MINUTE: i64 = 60_000;
/// Make's automatic-retry schedule for transient errors, in minutes after each attempt.
const BACKOFF_MINUTES: [i64; 8] = [1, 10, 10, 30, 30, 30, 180, 180];

/// How a parked bundle is retried automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Break with `retry: true`: `count` attempts, `interval` minutes apart.
    Fixed { count: u32, interval: i64 },
    /// A transient error: Make's backoff schedule.
    Backoff,
}

impl Plan {
    fn of(error: Option<&Value>, retry: Option<&Value>) -> Option<Plan> {
        if let Some(r) = retry.filter(|r| {
            r.get("retry")
                .is_some_and(|v| v == &json!(true) || v == &json!("true"))
        }) {
            let number = |key: &str, default: i64| {
                r.get(key)
                    .and_then(|v| v.as_i64().or_else(|| v.as_str()?.trim().parse().ok()))
                    .unwrap_or(default)
            };
            return Some(Plan::Fixed {
                count: number("count", 3).clamp(1, 10_000) as u32,
                interval: number("interval", 15).clamp(1, 44_640),
            });
        }
        // A name that is not one of Make's kinds is no transient error: a person looks at it.
        let kind: ErrorKind = error
            .and_then(|e| e.get("name"))
            .and_then(Value::as_str)?
            .parse()
            .ok()?;
        kind.is_transient().then_some(Plan::Backoff)
    }

    fn allowed(self) -> u32 {
        match self {
            Plan::Fixed { count, .. } => count,
            Plan::Backoff => BACKOFF_MINUTES.len() as u32,
        }
    }

    /// Minutes to wait before attempt `n` (0-based).
    fn minutes_before(self, n: u32) -> i64 {
        match self {
            Plan::Fixed { interval, .. } => interval,
            Plan::Backoff => BACKOFF_MINUTES[(n as usize).min(BACKOFF_MINUTES.len() - 1)],
        }
    }
}

/// When a newly parked bundle is first retried automatically, if ever.
pub fn first_attempt_at(error: Option<&Value>, retry: Option<&Value>, now: i64) -> Option<i64> {
    Plan::of(error, retry).map(|p| now + p.minutes_before(0) * MINUTE)
}

/// Queues a new execution that resumes a parked bundle at the module that failed, on the
/// scenario version it was parked on (the payload `Runner` reads). The incomplete execution
/// is resolved when that execution succeeds.
pub async fn resume(queue: &Queue, i: &IncompleteExecution) -> Result<String, QueueError> {
    let bundle = match &i.bundle {
        Value::Object(bundle) => bundle.clone(),
        other => {
            return Err(QueueError::Store(StoreError::Corrupt {
                what: "incomplete execution bundle",
                reason: format!(
                    "expected an object of module outputs, found {}",
                    json_type(other)
                ),
            }));
        }
    };
    let payload = ExecutionPayload::Resume(ResumePoint {
        incomplete: Some(i.id.clone()),
        module: i.module_id,
        bundle,
    })
    .to_stored();
    let new = NewExecution {
        scenario_id: &i.scenario_id,
        version: i.version,
        source: ExecutionSource::Retry,
        payload: payload.as_ref(),
    };
    queue.submit_new(new).await
}

/// The JSON type of `value`, to name it without its content.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Queues a new execution that runs `execution`'s trigger payload again, on the scenario's
/// current version.
pub async fn rerun(queue: &Queue, execution: &Execution) -> Result<String, QueueError> {
    let row = queue.store.get_scenario(&execution.scenario_id).await?;
    let new = NewExecution {
        scenario_id: &execution.scenario_id,
        version: row.version,
        source: ExecutionSource::Retry,
        payload: execution.payload.as_ref(),
    };
    queue.submit_new(new).await
}

/// Queues a resuming execution for every incomplete execution whose time has come; gives up
/// (status `failed`) on those that used up their attempts. `now` is UTC milliseconds. Safe with several processes: an
/// attempt is claimed by moving its time forward first.
pub async fn retry_due(store: &Store, queue: &Queue, now: i64) -> Result<usize, QueueError> {
    let mut queued = 0;
    for i in store.due_incomplete(now, 100).await? {
        let Some(plan) = Plan::of(i.error.as_ref(), i.retry.as_ref()) else {
            store.bump_incomplete(&i.id, now, None).await?;
            continue;
        };
        if i.attempts >= plan.allowed() {
            store.fail_incomplete(&i.id).await?;
            continue;
        }
        // After the last attempt the next look gives the bundle up if it is still pending.
        let next = Some(now + plan.minutes_before(i.attempts + 1) * MINUTE);
        if !store.bump_incomplete(&i.id, now, next).await? {
            continue; // another process took this attempt
        }
        resume(queue, &i).await?;
        queued += 1;
    }
    Ok(queued)
}

/// Runs [`retry_due`] every `every` until the task is dropped.
pub async fn run_retries(store: Store, queue: Queue, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match retry_due(&store, &queue, now_ms()).await {
            Ok(n) if n > 0 => tracing::info!(retries = n, "incomplete executions retried"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "automatic retries failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_break_settings_and_make_backoff() {
        let now = 1_000_000;
        let brk = json!({"retry": true, "count": "2", "interval": "5"});
        assert_eq!(
            first_attempt_at(None, Some(&brk), now),
            Some(now + 5 * MINUTE)
        );
        assert_eq!(
            Plan::of(None, Some(&brk)),
            Some(Plan::Fixed {
                count: 2,
                interval: 5
            })
        );
        let rate = json!({"name": "RateLimitError", "message": "slow down"});
        assert_eq!(first_attempt_at(Some(&rate), None, now), Some(now + MINUTE));
        let backoff = Plan::of(Some(&rate), None).unwrap();
        assert_eq!(
            (
                backoff.allowed(),
                backoff.minutes_before(1),
                backoff.minutes_before(6),
                backoff.minutes_before(99)
            ),
            (8, 10, 180, 180)
        );
        for transient in ["ConnectionError", "ModuleTimeoutError"] {
            let error = json!({"name": transient, "message": "later"});
            assert_eq!(
                Plan::of(Some(&error), None),
                Some(Plan::Backoff),
                "{transient}"
            );
        }
        for other in [
            "InvalidAccessTokenError",
            "QueueError",
            "rateLimitError",
            "",
        ] {
            let error = json!({"name": other, "message": "no"});
            assert_eq!(Plan::of(Some(&error), None), None, "{other:?}");
        }
        assert_eq!(Plan::of(Some(&json!({"name": 7})), None), None);
        let data = json!({"name": "DataError", "message": "bad"});
        assert_eq!(
            first_attempt_at(Some(&data), None, now),
            None,
            "data errors wait for a person"
        );
        assert_eq!(
            first_attempt_at(Some(&data), Some(&json!({"retry": false})), now),
            None
        );
    }
}
