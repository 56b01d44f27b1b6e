//! Executions, their per-module data, and webhook deliveries.
//!
//! An execution's life is `queued → running → success | error | incomplete`. Every change is
//! a compare-and-set on the current status: a worker claims only a queued or running
//! execution (running again means the previous worker died and the queue re-delivered the
//! job), and a terminal status is written once and never replaced, whichever of two racing
//! workers finishes first. A webhook delivery and its queued execution are written in one
//! transaction, so the HTTP answer can wait for the commit and a duplicate key finds the
//! first delivery's execution.

use serde_json::{Value, json};
use sqlx::FromRow;

use super::error::is_foreign_key_violation;
use sqlx::types::Json;

use super::json::{self, JsonText};
use super::types::{parse_stored, stored_u32, stored_u64, to_i64};
use super::{
    Delivery, Execution, ExecutionFilter, ExecutionOutcome, ExecutionSource, ExecutionStatus,
    ExecutionSummary, ModuleEntry, ModuleRecord, NewExecution, Result, Store, StoreError,
    begin_write, for_update, is_id, new_id, now_ms,
};

/// Dedupe keys longer than this (or with control characters) are stored as their SHA-256.
const MAX_PLAIN_DEDUPE_KEY_BYTES: usize = 200;

/// The longest worker id, in bytes.
const MAX_WORKER_ID_BYTES: usize = 200;

/// Module entries written per `INSERT` statement.
const MODULE_ROWS_PER_INSERT: usize = 200;

const EXECUTION_COLUMNS: &str = "id, scenario_id, version, status, source, payload, operations, \
     cycles, report, error, attempt, worker_id, created_at, started_at, heartbeat_at, finished_at";

const SUMMARY_COLUMNS: &str = "id, scenario_id, version, status, source, operations, cycles, \
     error, attempt, worker_id, created_at, started_at, heartbeat_at, finished_at";

#[derive(FromRow)]
struct ExecutionRecord {
    id: String,
    scenario_id: String,
    version: i64,
    status: String,
    source: String,
    payload: Option<Json<Value>>,
    operations: i64,
    cycles: i64,
    report: Option<Json<Value>>,
    error: Option<Json<Value>>,
    attempt: i64,
    worker_id: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    heartbeat_at: Option<i64>,
    finished_at: Option<i64>,
}

impl TryFrom<ExecutionRecord> for Execution {
    type Error = StoreError;

    fn try_from(r: ExecutionRecord) -> Result<Execution> {
        Ok(Execution {
            version: stored_u32("execution version", r.version)?,
            status: parse_stored("execution status", &r.status)?,
            source: parse_stored("execution source", &r.source)?,
            operations: stored_u64("execution operations", r.operations)?,
            cycles: stored_u32("execution cycles", r.cycles)?,
            attempt: stored_u32("execution attempt", r.attempt)?,
            payload: json::unwrap_opt(r.payload),
            report: json::unwrap_opt(r.report),
            error: json::unwrap_opt(r.error),
            id: r.id,
            scenario_id: r.scenario_id,
            worker_id: r.worker_id,
            created_at: r.created_at,
            started_at: r.started_at,
            heartbeat_at: r.heartbeat_at,
            finished_at: r.finished_at,
        })
    }
}

#[derive(FromRow)]
struct SummaryRecord {
    id: String,
    scenario_id: String,
    version: i64,
    status: String,
    source: String,
    operations: i64,
    cycles: i64,
    error: Option<Json<Value>>,
    attempt: i64,
    worker_id: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    heartbeat_at: Option<i64>,
    finished_at: Option<i64>,
}

impl TryFrom<SummaryRecord> for ExecutionSummary {
    type Error = StoreError;

    fn try_from(r: SummaryRecord) -> Result<ExecutionSummary> {
        Ok(ExecutionSummary {
            version: stored_u32("execution version", r.version)?,
            status: parse_stored("execution status", &r.status)?,
            source: parse_stored("execution source", &r.source)?,
            operations: stored_u64("execution operations", r.operations)?,
            cycles: stored_u32("execution cycles", r.cycles)?,
            attempt: stored_u32("execution attempt", r.attempt)?,
            error: json::unwrap_opt(r.error),
            id: r.id,
            scenario_id: r.scenario_id,
            worker_id: r.worker_id,
            created_at: r.created_at,
            started_at: r.started_at,
            heartbeat_at: r.heartbeat_at,
            finished_at: r.finished_at,
        })
    }
}

/// Inserts a queued execution (shared by `create_execution` and `accept_delivery`):
/// `insert_execution!(executor, id, &NewExecution, Option<JsonText>, now)`.
macro_rules! insert_execution {
    ($executor:expr, $id:expr, $new:expr, $payload:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO executions \
             (id, scenario_id, version, status, source, payload, created_at) \
             VALUES ($1, $2, $3, 'queued', $4, $5, $6)",
        )
        .bind($id)
        .bind($new.scenario_id)
        .bind(i64::from($new.version))
        .bind($new.source.as_str())
        .bind($payload)
        .bind($now)
        .execute($executor)
        .await
        .map(|_| ())
    };
}

/// Sets an execution's final status, compare-and-set (see [`Store::finish_execution`]); binds
/// `$1` id, `$2` status, `$3` operations, `$4` cycles, `$5` report, `$6` error, `$7` now.
pub(super) const FINISH_EXECUTION_SQL: &str = "UPDATE executions SET status = $2, operations = $3, cycles = $4, report = $5, \
     error = $6, finished_at = $7 WHERE id = $1 AND status IN ('queued', 'running')";

/// The values [`FINISH_EXECUTION_SQL`] binds.
pub(super) struct FinishRow<'a> {
    pub id: &'a str,
    pub status: &'static str,
    pub operations: i64,
    pub cycles: i64,
    pub report: Option<JsonText>,
    pub error: Option<JsonText>,
    pub now: i64,
}

/// A value bound into a query built at run time.
enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

/// The stored form of a dedupe key: the key itself when short and printable, else
/// `sha256:` and its digest, so any key a sender picks fits and is accepted on both backends.
fn stored_dedupe_key(key: &str) -> String {
    if key.len() <= MAX_PLAIN_DEDUPE_KEY_BYTES && !key.chars().any(char::is_control) {
        key.to_string()
    } else {
        use sha2::Digest;
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(key.as_bytes()))
        )
    }
}

/// The marker stored instead of an output larger than the cap.
fn truncated_marker(bytes: usize) -> Value {
    json!({"__truncated__": true, "bytes": bytes})
}

impl Store {
    /// Records a new queued execution of a scenario version; returns its id.
    pub async fn create_execution(&self, new: NewExecution<'_>) -> Result<String> {
        let payload = json::opt("execution payload", new.payload)?;
        let id = new_id();
        let now = now_ms();
        let result = on_pool!(self, pool => {
            insert_execution!(pool, &id, new, payload.clone(), now)
        });
        match result {
            Ok(()) => Ok(id),
            Err(e) if is_foreign_key_violation(&e) => {
                Err(version_not_found(new.scenario_id, new.version))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Claims an execution for `worker_id`: `queued → running`, or `running → running` when
    /// the queue re-delivers the job of a worker that died. Increments the attempt, stamps
    /// `started_at`/`heartbeat_at`, and on a re-claim drops the per-module data of the lost
    /// attempt (the new attempt runs from the start). `None` when the execution has already
    /// finished; [`StoreError::NotFound`] when it does not exist.
    pub async fn claim_execution(&self, id: &str, worker_id: &str) -> Result<Option<Execution>> {
        check_worker(worker_id)?;
        if !is_id(id) {
            return Err(StoreError::not_found("execution", id));
        }
        let now = now_ms();
        let sql = format!(
            "UPDATE executions SET status = 'running', attempt = attempt + 1, worker_id = $2, \
             started_at = $3, heartbeat_at = $3 \
             WHERE id = $1 AND status IN ('queued', 'running') RETURNING {EXECUTION_COLUMNS}"
        );
        let record: Option<ExecutionRecord> = on_pool!(self, pool => {
            let mut tx = begin_write(pool).await?;
            let record: Option<ExecutionRecord> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(worker_id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            if record.as_ref().is_some_and(|r| r.attempt > 1) {
                sqlx::query("DELETE FROM execution_modules WHERE execution_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            record
        });
        match record {
            Some(r) => Ok(Some(r.try_into()?)),
            None if self.execution_exists(id).await? => Ok(None),
            None => Err(StoreError::not_found("execution", id)),
        }
    }

    /// Records that `worker_id` is still running the execution. False when the execution is
    /// no longer running or another worker has claimed it since (this worker should stop).
    pub async fn heartbeat_execution(&self, id: &str, worker_id: &str) -> Result<bool> {
        check_worker(worker_id)?;
        if !is_id(id) {
            return Ok(false);
        }
        let now = now_ms();
        let rows = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE executions SET heartbeat_at = $3 \
                 WHERE id = $1 AND status = 'running' AND worker_id = $2",
            )
            .bind(id)
            .bind(worker_id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(rows == 1)
    }

    /// Sets the final status and results, once. Compare-and-set: only a queued or running
    /// execution changes; a finished one is never downgraded or overwritten and the call
    /// returns false. [`StoreError::NotFound`] when the execution does not exist. A polling
    /// trigger's state change in `outcome.trigger` is committed in the same transaction, only
    /// when this call finished the execution (a second finish cannot commit it twice).
    pub async fn finish_execution(&self, id: &str, outcome: ExecutionOutcome<'_>) -> Result<bool> {
        if !is_id(id) {
            return Err(StoreError::not_found("execution", id));
        }
        let report = json::opt("execution report", outcome.report)?;
        let error = json::opt("execution error", outcome.error)?;
        let operations = to_i64("operations", outcome.operations)?;
        let status = ExecutionStatus::from(outcome.status);
        let now = now_ms();
        let finished = match outcome.trigger {
            None => {
                on_pool!(self, pool => {
                    sqlx::query(FINISH_EXECUTION_SQL)
                        .bind(id)
                        .bind(status.as_str())
                        .bind(operations)
                        .bind(i64::from(outcome.cycles))
                        .bind(report.clone())
                        .bind(error.clone())
                        .bind(now)
                        .execute(pool)
                        .await?
                        .rows_affected()
                }) == 1
            }
            Some(change) => {
                let row = FinishRow {
                    id,
                    status: status.as_str(),
                    operations,
                    cycles: i64::from(outcome.cycles),
                    report,
                    error,
                    now,
                };
                self.finish_with_trigger_state(row, change).await?
            }
        };
        if finished {
            Ok(true)
        } else if self.execution_exists(id).await? {
            Ok(false)
        } else {
            Err(StoreError::not_found("execution", id))
        }
    }

    /// One execution with its payload, report and error.
    pub async fn get_execution(&self, id: &str) -> Result<Execution> {
        if !is_id(id) {
            return Err(StoreError::not_found("execution", id));
        }
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1");
        let record: Option<ExecutionRecord> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        record
            .ok_or_else(|| StoreError::not_found("execution", id))?
            .try_into()
    }

    async fn execution_exists(&self, id: &str) -> Result<bool> {
        let found: Option<String> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM executions WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(found.is_some())
    }

    /// Executions matching `filter`, newest first (by creation time, then id). Pass the last
    /// row's [`ExecutionSummary::cursor`] as `before` for the next page.
    pub async fn list_executions(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionSummary>> {
        let mut binds = Vec::new();
        let mut conditions = Vec::new();
        if let Some(scenario_id) = &filter.scenario_id {
            if !is_id(scenario_id) {
                return Ok(Vec::new());
            }
            binds.push(Bind::Text(scenario_id));
            conditions.push(format!("scenario_id = ${}", binds.len()));
        }
        if let Some(status) = filter.status {
            binds.push(Bind::Text(status.as_str()));
            conditions.push(format!("status = ${}", binds.len()));
        }
        if let Some(before) = &filter.before {
            binds.push(Bind::Int(before.created_at));
            binds.push(Bind::Text(&before.id));
            let n = binds.len();
            conditions.push(format!("(created_at, id) < (${}, ${n})", n - 1));
        }
        let limit = match filter.limit {
            0 => ExecutionFilter::DEFAULT_LIMIT,
            n => n.min(ExecutionFilter::MAX_LIMIT),
        };
        binds.push(Bind::Int(i64::from(limit)));
        let mut sql = format!("SELECT {SUMMARY_COLUMNS} FROM executions");
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(&format!(
            " ORDER BY created_at DESC, id DESC LIMIT ${}",
            binds.len()
        ));
        let records: Vec<SummaryRecord> = on_pool!(self, pool => {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for bind in &binds {
                query = match bind {
                    Bind::Text(s) => query.bind(*s),
                    Bind::Int(n) => query.bind(*n),
                };
            }
            query.fetch_all(pool).await?
        });
        records.into_iter().map(TryInto::try_into).collect()
    }

    /// Executions that look abandoned, oldest first: queued since before `older_than` (their
    /// job may never have reached the queue), or running with no sign of life (claim or
    /// heartbeat) since before `older_than`. A reaper re-enqueues or fails them.
    pub async fn stale_executions(
        &self,
        older_than: i64,
        limit: u32,
    ) -> Result<Vec<ExecutionSummary>> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM executions \
             WHERE (status = 'queued' AND created_at < $1) \
                OR (status = 'running' AND COALESCE(heartbeat_at, started_at, created_at) < $1) \
             ORDER BY created_at, id LIMIT $2"
        );
        let records: Vec<SummaryRecord> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(older_than)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        records.into_iter().map(TryInto::try_into).collect()
    }

    /// Appends module outputs to an execution's data, after what is already there. An
    /// output whose JSON is larger than `cap_bytes` (or nested too deep to read back) is
    /// stored as `{"__truncated__": true, "bytes": N}` with `truncated` set. Returns how
    /// many entries were truncated. The caller skips this for confidential scenarios.
    pub async fn append_module_data(
        &self,
        execution_id: &str,
        entries: &[ModuleEntry<'_>],
        cap_bytes: usize,
    ) -> Result<u32> {
        if !is_id(execution_id) {
            return Err(StoreError::not_found("execution", execution_id));
        }
        let mut rows = Vec::with_capacity(entries.len());
        let mut truncated_count = 0u32;
        for entry in entries {
            let (output, truncated) = match JsonText::new("module output", entry.output) {
                Ok(text) if text.len() <= cap_bytes => (text, false),
                Ok(text) => (
                    JsonText::new("module output", &truncated_marker(text.len()))?,
                    true,
                ),
                Err(StoreError::InvalidInput { .. }) => {
                    let bytes = serde_json::to_vec(entry.output).map_or(0, |v| v.len());
                    (
                        JsonText::new("module output", &truncated_marker(bytes))?,
                        true,
                    )
                }
                Err(e) => return Err(e),
            };
            truncated_count += u32::from(truncated);
            rows.push((i64::from(entry.module_id), output, truncated));
        }
        let lock = on_pool!(self, pool => for_update(pool));
        let lock_sql = format!("SELECT id FROM executions WHERE id = $1{lock}");
        let found = on_pool!(self, pool => {
            let mut tx = begin_write(pool).await?;
            let found: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(lock_sql))
                .bind(execution_id)
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_some() && !rows.is_empty() {
                let mut seq: i64 = sqlx::query_scalar(
                    "SELECT COALESCE(MAX(seq) + 1, 0) FROM execution_modules \
                     WHERE execution_id = $1",
                )
                .bind(execution_id)
                .fetch_one(&mut *tx)
                .await?;
                for chunk in rows.chunks(MODULE_ROWS_PER_INSERT) {
                    let mut sql = String::from(
                        "INSERT INTO execution_modules \
                         (execution_id, seq, module_id, output, truncated) VALUES ",
                    );
                    for i in 0..chunk.len() {
                        let p = i * 4 + 2;
                        if i > 0 {
                            sql.push_str(", ");
                        }
                        sql.push_str(&format!("($1, ${p}, ${}, ${}, ${})", p + 1, p + 2, p + 3));
                    }
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(execution_id);
                    for (module_id, output, truncated) in chunk {
                        query = query
                            .bind(seq)
                            .bind(*module_id)
                            .bind(output.clone())
                            .bind(*truncated);
                        seq += 1;
                    }
                    query.execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            found.is_some()
        });
        if !found {
            return Err(StoreError::not_found("execution", execution_id));
        }
        Ok(truncated_count)
    }

    /// An execution's module data in the order appended. Empty when there is none (or the
    /// execution does not exist).
    pub async fn module_data(&self, execution_id: &str) -> Result<Vec<ModuleRecord>> {
        if !is_id(execution_id) {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, i64, Json<Value>, bool)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT seq, module_id, output, truncated FROM execution_modules \
                 WHERE execution_id = $1 ORDER BY seq",
            )
            .bind(execution_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(seq, module_id, Json(output), truncated)| {
                Ok(ModuleRecord {
                    seq: stored_u32("module data seq", seq)?,
                    module_id: stored_u32("module data module id", module_id)?,
                    output,
                    truncated,
                })
            })
            .collect()
    }

    /// Accepts a webhook delivery: in ONE transaction, records the delivery under its
    /// dedupe key (when there is one) and queues an execution of `scenario_id`/`version` with
    /// `payload`. Answer the sender with 2xx only after this returns.
    ///
    /// The hook must belong to the scenario ([`StoreError::NotFound`] otherwise; the
    /// message never contains the hook id). A key already seen on this hook (while its first execution is retained) stores
    /// nothing and returns [`Delivery::Duplicate`] with the first execution's id, also when
    /// two deliveries race. An empty key counts as no key.
    pub async fn accept_delivery(
        &self,
        hook_id: &str,
        dedupe_key: Option<&str>,
        scenario_id: &str,
        version: u32,
        payload: &Value,
    ) -> Result<Delivery> {
        if !is_id(hook_id) {
            return Err(hook_not_found());
        }
        let payload = JsonText::new("webhook payload", payload)?;
        let key = dedupe_key.filter(|k| !k.is_empty()).map(stored_dedupe_key);
        let new = NewExecution {
            scenario_id,
            version,
            source: ExecutionSource::Webhook,
            payload: None,
        };
        // A duplicate whose first execution is deleted (pruned) between our insert and our
        // read is retried; after that the key is free and the next round accepts it.
        for _ in 0..3 {
            let execution_id = new_id();
            let now = now_ms();
            // Outer error: the database; inner error: the hook is not this scenario's.
            let outcome: Result<Result<Option<Delivery>>, sqlx::Error> = on_pool!(self, pool => {
                async {
                    let mut tx = begin_write(pool).await?;
                    let hook: Option<String> = sqlx::query_scalar(
                        "SELECT id FROM hooks WHERE id = $1 AND scenario_id = $2",
                    )
                    .bind(hook_id)
                    .bind(scenario_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if hook.is_none() {
                        tx.rollback().await?;
                        return Ok(Err(hook_not_found()));
                    }
                    insert_execution!(&mut *tx, &execution_id, new, Some(payload.clone()), now)?;
                    let Some(key) = &key else {
                        tx.commit().await?;
                        return Ok(Ok(Some(Delivery::Accepted {
                            execution_id: execution_id.clone(),
                        })));
                    };
                    let inserted = sqlx::query(
                        "INSERT INTO webhook_deliveries \
                         (hook_id, dedupe_key, execution_id, received_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (hook_id, dedupe_key) DO NOTHING",
                    )
                    .bind(hook_id)
                    .bind(key)
                    .bind(&execution_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if inserted == 1 {
                        tx.commit().await?;
                        return Ok(Ok(Some(Delivery::Accepted {
                            execution_id: execution_id.clone(),
                        })));
                    }
                    let first: Option<String> = sqlx::query_scalar(
                        "SELECT execution_id FROM webhook_deliveries \
                         WHERE hook_id = $1 AND dedupe_key = $2",
                    )
                    .bind(hook_id)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                    tx.rollback().await?;
                    Ok::<_, sqlx::Error>(Ok(first.map(|execution_id| Delivery::Duplicate {
                        execution_id,
                    })))
                }
                .await
            });
            match outcome {
                Ok(Ok(Some(delivery))) => return Ok(delivery),
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => return Err(e),
                Err(e) if is_foreign_key_violation(&e) => {
                    return Err(version_not_found(scenario_id, version));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict {
            what: "webhook delivery",
            reason: "the first delivery with this key kept disappearing; retry".into(),
        })
    }
}

fn check_worker(worker_id: &str) -> Result<()> {
    super::check_text("worker id", worker_id, MAX_WORKER_ID_BYTES)
}

fn hook_not_found() -> StoreError {
    StoreError::NotFound {
        what: "hook",
        id: "(hook id withheld)".into(),
    }
}

fn version_not_found(scenario_id: &str, version: u32) -> StoreError {
    if is_id(scenario_id) {
        StoreError::NotFound {
            what: "scenario version",
            id: format!("{scenario_id} v{version}"),
        }
    } else {
        StoreError::not_found("scenario", scenario_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_keys_are_kept_when_short_and_hashed_otherwise() {
        assert_eq!(stored_dedupe_key("evt_123"), "evt_123");
        let long = "k".repeat(MAX_PLAIN_DEDUPE_KEY_BYTES + 1);
        let stored = stored_dedupe_key(&long);
        assert!(
            stored.starts_with("sha256:") && stored.len() == 7 + 64,
            "{stored}"
        );
        assert_ne!(
            stored,
            stored_dedupe_key(&"k".repeat(MAX_PLAIN_DEDUPE_KEY_BYTES + 2))
        );
        assert!(stored_dedupe_key("a\0b").starts_with("sha256:"));
        assert!(stored_dedupe_key("a\nb").starts_with("sha256:"));
    }

    #[test]
    fn truncated_marker_has_the_documented_shape() {
        assert_eq!(
            truncated_marker(12),
            json!({"__truncated__": true, "bytes": 12})
        );
    }
}
