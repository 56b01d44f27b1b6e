//! Executions, their per-module data, and webhook deliveries.
//!
//! An execution's module data is one row per stored output bundle (`execution_modules`, keyed
//! by execution, module and `seq`, its position in the log), each capped in bytes
//! ([`truncated_marker`]), plus a per-module summary
//! ([`ModuleSummary`], the `modules` column) written with the finish. The inputs of modules'
//! first operations are rows of the same table flagged `input`, placed after the outputs
//! ([`ModuleData::add_inputs`]); every reader of outputs skips them. It is read a page of one
//! module at a time ([`Store::module_page`], [`Store::input_page`]), never whole, so a large
//! execution costs a reader what it asks for. The outputs are serialised before any transaction ([`ModuleData`]), and
//! the data of a large execution can be written in parts ([`WriteTx::append_module_part`])
//! that commit before its finish, so that no transaction holds the database for long; a part
//! is written only while the execution is still claimed by the worker that ran it.
//!
//! An execution's life is `queued → running → success | error | incomplete`. Every change is
//! a compare-and-set on the current status: a worker claims only a queued or running
//! execution (running again means the previous worker died and the queue re-delivered the
//! job), and a terminal status is written once and never replaced, whichever of two racing
//! workers finishes first. A webhook delivery and its queued execution are written in one
//! transaction, so the HTTP answer can wait for the commit and a duplicate key finds the
//! first delivery's execution.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use sqlx::FromRow;

use super::error::is_foreign_key_violation;
use sqlx::types::Json;

use super::json::{self, JsonText};
use super::types::{parse_stored, stored_u32, stored_u64, to_i64};
use super::{
    Execution, ExecutionFilter, ExecutionFinish, ExecutionOutcome, ExecutionStatus,
    ExecutionSummary, ModuleCounts, ModuleEntry, ModulePage, ModuleRecord, ModuleSummary,
    NewExecution, Result, Store, StoreError, WriteTx, for_update, for_update_in, is_id, new_id,
    now_ms, positional_in, pow2_chunks, values_rows,
};

/// The longest worker id, in bytes.
const MAX_WORKER_ID_BYTES: usize = 200;

/// The `name` of the error an execution ends with when its runs kept ending with their
/// process ([`crash_error`]).
pub const CRASH_ERROR_NAME: &str = "QueueError";

/// The error of an execution claimed `attempts` times without ever finishing — each run
/// ended with its process (out of memory, killed): `{"name": "QueueError", "message":
/// "crashed the worker N times; not run again"}`. Such an execution is never run again.
pub fn crash_error(attempts: u32) -> Value {
    json!({
        "name": CRASH_ERROR_NAME,
        "message": format!("crashed the worker {attempts} times; not run again"),
    })
}

/// Most module entries written per `INSERT` statement (5 parameters each).
const MODULE_ROWS_PER_INSERT: usize = 128;

/// Most executions finished per `UPDATE` statement (7 parameters each).
const FINISHES_PER_UPDATE: usize = 64;

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

/// A value bound into a query built at run time.
enum Bind<'a> {
    Text(&'a str),
    Int(i64),
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
            Err(e) if is_foreign_key_violation(&e) => Err(super::intake::version_not_found(
                new.scenario_id,
                new.version,
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Claims an execution for `worker_id`: `queued → running`, or `running → running` when
    /// a worker takes over the execution of a worker that died. Increments the attempt (counted
    /// before the run starts, so a run that kills its process is counted), stamps
    /// `started_at`/`heartbeat_at`, and on a re-claim drops the per-module data of the lost
    /// attempt (the new attempt runs from the start). `None` when the execution has already
    /// finished; [`StoreError::NotFound`] when it does not exist.
    ///
    /// An open execution already claimed `max_attempts` times (each of those runs ended with
    /// its process) is not run again: it ends here as `error` with [`crash_error`], and the
    /// answer is `None` as for any finished execution.
    pub async fn claim_execution(
        &self,
        id: &str,
        worker_id: &str,
        max_attempts: u32,
    ) -> Result<Option<Execution>> {
        self.claim_execution_unless_alive(id, worker_id, max_attempts, i64::MAX)
            .await
    }

    /// [`Store::claim_execution`], except that a `running` execution whose worker gave a
    /// sign of life at `alive_since` or later (milliseconds) is left to that worker: its job
    /// handed out again (a missed queue heartbeat, a slow database) does not run it twice.
    /// The answer is then `None`, as for a finished execution; should that worker die, its
    /// heartbeats stop and the queue's workers take the execution over
    /// ([`Store::runnable_executions`]).
    pub async fn claim_execution_unless_alive(
        &self,
        id: &str,
        worker_id: &str,
        max_attempts: u32,
        alive_since: i64,
    ) -> Result<Option<Execution>> {
        check_worker(worker_id)?;
        if !is_id(id) {
            return Err(StoreError::not_found("execution", id));
        }
        let now = now_ms();
        let sql = format!(
            "UPDATE executions SET status = 'running', attempt = attempt + 1, worker_id = $2, \
             started_at = $3, heartbeat_at = $3 \
             WHERE id = $1 AND attempt < $4 \
             AND (status = 'queued' OR (status = 'running' AND COALESCE(heartbeat_at, 0) < $5)) \
             RETURNING {EXECUTION_COLUMNS}"
        );
        // One statement in the common case; a re-claim then drops the lost attempt's data
        // (should it die before, the next re-claim does it).
        let record: Option<ExecutionRecord> = on_pool!(self, pool => {
            let record: Option<ExecutionRecord> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(worker_id)
                .bind(now)
                .bind(i64::from(max_attempts))
                .bind(alive_since)
                .fetch_optional(pool)
                .await?;
            if record.as_ref().is_some_and(|r| r.attempt > 1) {
                sqlx::query("DELETE FROM execution_modules WHERE execution_id = $1")
                    .bind(id)
                    .execute(pool)
                    .await?;
            }
            record
        });
        match record {
            Some(r) => Ok(Some(r.try_into()?)),
            None if self.execution_exists(id).await? => {
                self.end_crashed(id, max_attempts).await?;
                Ok(None)
            }
            None => Err(StoreError::not_found("execution", id)),
        }
    }

    /// Ends execution `id` with [`crash_error`] if it is still open with at least
    /// `max_attempts` claims (compare-and-set on the attempt read, so the message counts
    /// right). Returns whether this call ended it.
    async fn end_crashed(&self, id: &str, max_attempts: u32) -> Result<bool> {
        let open: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT attempt FROM executions \
                 WHERE id = $1 AND status IN ('queued', 'running') AND attempt >= $2",
            )
            .bind(id)
            .bind(i64::from(max_attempts))
            .fetch_optional(pool)
            .await?
        });
        let Some(attempts) = open else {
            return Ok(false);
        };
        let error = crash_error(stored_u32("execution attempt", attempts)?);
        let error = JsonText::new("execution error", &error)?;
        let ended = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE executions SET status = 'error', error = $2, finished_at = $3 \
                 WHERE id = $1 AND status IN ('queued', 'running') AND attempt = $4",
            )
            .bind(id)
            .bind(error)
            .bind(now_ms())
            .bind(attempts)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if ended == 1 {
            tracing::warn!(
                execution = %id,
                attempts,
                "an execution whose runs kept ending with their process was not run again"
            );
        }
        Ok(ended == 1)
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

    /// Sets the final status and results, once (see [`WriteTx::finish_execution`]).
    /// [`StoreError::NotFound`] when the execution does not exist.
    pub async fn finish_execution(&self, id: &str, outcome: ExecutionOutcome<'_>) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let finished = tx.finish_execution(id, outcome).await?;
        tx.commit().await?;
        if finished || self.execution_exists(id).await? {
            Ok(finished)
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

    /// The length of execution `id`'s payload as JSON text (0 without one): what reading it
    /// will cost, asked before reading it.
    pub async fn payload_bytes(&self, id: &str) -> Result<usize> {
        if !is_id(id) {
            return Err(StoreError::not_found("execution", id));
        }
        let length: Option<Option<i64>> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT CAST(length(CAST(payload AS TEXT)) AS BIGINT) FROM executions \
                 WHERE id = $1",
            )
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        match length {
            Some(bytes) => Ok(bytes.map_or(0, |b| usize::try_from(b).unwrap_or(0))),
            None => Err(StoreError::not_found("execution", id)),
        }
    }

    /// Whether execution `id` is still queued or running (false when finished or missing).
    pub async fn is_open(&self, id: &str) -> Result<bool> {
        if !is_id(id) {
            return Ok(false);
        }
        let found: Option<String> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT id FROM executions WHERE id = $1 AND status IN ('queued', 'running')",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.is_some())
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

    /// Whether an execution of `scenario_id` that arrived before the one created at
    /// `created_at` with id `id` is still to finish: queued, or running with a sign of life
    /// since `alive_since` (a worker that died does not hold the others back).
    pub async fn earlier_open_execution(
        &self,
        scenario_id: &str,
        created_at: i64,
        id: &str,
        alive_since: i64,
    ) -> Result<bool> {
        let found: Option<String> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT id FROM executions WHERE scenario_id = $1 AND (created_at, id) < ($2, $3) \
                 AND (status = 'queued' OR (status = 'running' \
                 AND COALESCE(heartbeat_at, started_at, created_at) >= $4)) LIMIT 1",
            )
            .bind(scenario_id)
            .bind(created_at)
            .bind(id)
            .bind(alive_since)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.is_some())
    }

    /// Appends module outputs to an execution's data (see
    /// [`WriteTx::append_module_data`]); returns how many entries were truncated. The
    /// caller skips this for confidential scenarios.
    pub async fn append_module_data(
        &self,
        execution_id: &str,
        entries: &[ModuleEntry<'_>],
        cap_bytes: usize,
    ) -> Result<u32> {
        if !is_id(execution_id) {
            return Err(StoreError::not_found("execution", execution_id));
        }
        let lock = on_pool!(self, pool => for_update(pool));
        let lock_sql = format!("SELECT id FROM executions WHERE id = $1{lock}");
        let mut tx = self.begin_write().await?;
        let found: Option<String> = on_tx!(&mut tx, tx => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(lock_sql))
                .bind(execution_id)
                .fetch_optional(&mut **tx)
                .await?
        });
        if found.is_none() {
            return Err(StoreError::not_found("execution", execution_id));
        }
        let truncated = tx
            .append_module_data(execution_id, entries, cap_bytes)
            .await?;
        tx.commit().await?;
        Ok(truncated)
    }

    /// One page of module `module_id`'s stored outputs in execution `execution_id`: at most
    /// `limit` of them after the first `offset`, in order, and how many it has in all. Reads
    /// the rows of that module only (an index range), whatever the execution's size. Empty
    /// when there are none (or no such execution).
    pub async fn module_page(
        &self,
        execution_id: &str,
        module_id: u32,
        offset: u64,
        limit: u32,
    ) -> Result<ModulePage> {
        self.bundle_page(execution_id, module_id, false, offset, limit)
            .await
    }

    /// As [`Store::module_page`], for the stored inputs of the module's first operations, in
    /// the order they ran.
    pub async fn input_page(
        &self,
        execution_id: &str,
        module_id: u32,
        offset: u64,
        limit: u32,
    ) -> Result<ModulePage> {
        self.bundle_page(execution_id, module_id, true, offset, limit)
            .await
    }

    async fn bundle_page(
        &self,
        execution_id: &str,
        module_id: u32,
        input: bool,
        offset: u64,
        limit: u32,
    ) -> Result<ModulePage> {
        if !is_id(execution_id) {
            return Ok(ModulePage {
                total: 0,
                records: Vec::new(),
            });
        }
        // Past the end of any table: clamped rather than refused.
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let (total, rows): (i64, Vec<ModuleRow>) = on_pool!(self, pool => {
            let total = sqlx::query_scalar(
                "SELECT COUNT(*) FROM execution_modules \
                 WHERE execution_id = $1 AND module_id = $2 AND input = $3",
            )
            .bind(execution_id)
            .bind(i64::from(module_id))
            .bind(input)
            .fetch_one(pool)
            .await?;
            let rows = sqlx::query_as(
                "SELECT seq, module_id, output, truncated FROM execution_modules \
                 WHERE execution_id = $1 AND module_id = $2 AND input = $3 \
                 ORDER BY seq LIMIT $4 OFFSET $5",
            )
            .bind(execution_id)
            .bind(i64::from(module_id))
            .bind(input)
            .bind(i64::from(limit))
            .bind(offset)
            .fetch_all(pool)
            .await?;
            (total, rows)
        });
        Ok(ModulePage {
            total: stored_u64("module data count", total)?,
            records: rows.into_iter().map(module_record).collect::<Result<_>>()?,
        })
    }

    /// The per-module summary of execution `execution_id`, in order of first run: the one
    /// recorded with its finish; none while it is queued or running (its data is being
    /// written); for a finished execution without one (finished before summaries were
    /// recorded, or never run), what its stored rows say, with the engine's counts `None`.
    /// [`StoreError::NotFound`] when the execution does not exist.
    pub async fn module_summaries(&self, execution_id: &str) -> Result<Vec<ModuleSummary>> {
        if !is_id(execution_id) {
            return Err(StoreError::not_found("execution", execution_id));
        }
        let recorded: Option<(String, Option<Json<Value>>)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT status, modules FROM executions WHERE id = $1")
                .bind(execution_id)
                .fetch_optional(pool)
                .await?
        });
        match recorded {
            None => Err(StoreError::not_found("execution", execution_id)),
            Some((_, Some(Json(modules)))) => serde_json::from_value(modules)
                .map_err(|e| StoreError::corrupt("execution module summary", e.to_string())),
            Some((status, None)) if matches!(status.as_str(), "queued" | "running") => {
                Ok(Vec::new())
            }
            Some((_, None)) => {
                let tallies: Vec<(i64, i64, i64, i64)> = on_pool!(self, pool => {
                    sqlx::query_as(
                        "SELECT module_id, \
                         SUM(CASE WHEN input THEN 0 ELSE 1 END), \
                         SUM(CASE WHEN truncated AND NOT input THEN 1 ELSE 0 END), \
                         SUM(CASE WHEN input THEN 1 ELSE 0 END) \
                         FROM execution_modules WHERE execution_id = $1 \
                         GROUP BY module_id ORDER BY MIN(seq)",
                    )
                    .bind(execution_id)
                    .fetch_all(pool)
                    .await?
                });
                tallies
                    .into_iter()
                    .map(|(module, stored, truncated, inputs)| {
                        Ok(ModuleSummary {
                            module: stored_u32("module data module id", module)?,
                            runs: None,
                            bundles: None,
                            stored: stored_u64("module data count", stored)?,
                            omitted: None,
                            errors: None,
                            filtered: None,
                            truncated: stored_u64("module data count", truncated)?,
                            inputs: stored_u64("module data count", inputs)?,
                        })
                    })
                    .collect()
            }
        }
    }

    /// An execution's module outputs in log order (`seq`). Empty when there is none (or the
    /// execution does not exist). Reads all of it: the API reads pages ([`Store::module_page`]).
    pub async fn module_data(&self, execution_id: &str) -> Result<Vec<ModuleRecord>> {
        if !is_id(execution_id) {
            return Ok(Vec::new());
        }
        let rows: Vec<ModuleRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT seq, module_id, output, truncated FROM execution_modules \
                 WHERE execution_id = $1 AND NOT input ORDER BY seq",
            )
            .bind(execution_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(module_record).collect()
    }
}

/// A row of `execution_modules` as read: `seq, module_id, output, truncated`.
type ModuleRow = (i64, i64, Json<Value>, bool);

fn module_record((seq, module_id, Json(output), truncated): ModuleRow) -> Result<ModuleRecord> {
    Ok(ModuleRecord {
        seq: stored_u32("module data seq", seq)?,
        module_id: stored_u32("module data module id", module_id)?,
        output,
        truncated,
    })
}

impl WriteTx {
    /// Sets the final status and results, once. Compare-and-set: only a queued or running
    /// execution changes (and is locked until the commit); a finished one is never
    /// downgraded or overwritten. False when nothing changed: finished before, or no such
    /// execution. A polling trigger's progress in `outcome.trigger` is merged into its state
    /// in the same transaction, only when this call finished the execution (a second finish
    /// cannot commit it twice).
    pub async fn finish_execution(
        &mut self,
        id: &str,
        outcome: ExecutionOutcome<'_>,
    ) -> Result<bool> {
        let finish = ExecutionFinish {
            id,
            outcome,
            module_data: &ModuleData::default(),
        };
        let finished = self.finish_executions(&[finish]).await?;
        Ok(finished.first().copied().unwrap_or(false))
    }

    /// [`WriteTx::finish_execution`] for many executions, in a few statements whatever
    /// their number; each one this call finishes also gets its `module_data` written (at
    /// the positions of its log) and the data's summary, if it has one, recorded. An
    /// execution's module data is written once, by its finish and the leading parts of the
    /// same data before it ([`WriteTx::append_module_part`]): a claim that re-runs an
    /// execution drops what a lost attempt wrote. One answer per entry, in order; an
    /// execution named twice is finished by its first entry.
    pub async fn finish_executions(&mut self, batch: &[ExecutionFinish<'_>]) -> Result<Vec<bool>> {
        // Everything is serialised before the first write, so a bad document writes nothing.
        let mut updates = Vec::with_capacity(batch.len());
        let mut named = HashSet::new();
        for (slot, f) in batch.iter().enumerate() {
            if !is_id(f.id) || !named.insert(f.id) {
                continue;
            }
            let outcome = &f.outcome;
            updates.push(FinishRow {
                slot,
                status: ExecutionStatus::from(outcome.status),
                operations: to_i64("operations", outcome.operations)?,
                report: json::opt("execution report", outcome.report)?,
                error: json::opt("execution error", outcome.error)?,
                modules: f.module_data.summary_json()?,
            });
        }
        let now = now_ms();
        let mut finished_ids: HashSet<String> = HashSet::new();
        for chunk in pow2_chunks(&updates, FINISHES_PER_UPDATE) {
            let sql = format!(
                "UPDATE executions SET status = v.column2, operations = v.column3, \
                 cycles = v.column4, report = v.column5, error = v.column6, \
                 modules = v.column7, finished_at = $1 \
                 FROM (VALUES {}) AS v \
                 WHERE executions.id = v.column1 AND executions.status IN ('queued', 'running') \
                 RETURNING executions.id",
                values_rows("(?, ?, ?, ?, ?, ?, ?)", chunk.len(), 2)
            );
            let ids: Vec<String> = on_tx!(self, tx => {
                let sql = positional_in(tx, sql);
                let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(now);
                for row in chunk {
                    let f = &batch[row.slot];
                    query = query
                        .bind(f.id)
                        .bind(row.status.as_str())
                        .bind(row.operations)
                        .bind(i64::from(f.outcome.cycles))
                        .bind(row.report.as_ref())
                        .bind(row.error.as_ref())
                        .bind(row.modules.as_ref());
                }
                query.fetch_all(&mut **tx).await?
            });
            finished_ids.extend(ids);
        }
        let mut finished = vec![false; batch.len()];
        let mut module_rows = Vec::new();
        for row in &updates {
            let f = &batch[row.slot];
            if !finished_ids.contains(f.id) {
                continue;
            }
            finished[row.slot] = true;
            if let Some(change) = f.outcome.trigger {
                self.merge_trigger_state(change).await?;
            }
            module_rows.extend(f.module_data.rows.iter().map(|row| (f.id, row)));
        }
        self.insert_module_rows(&module_rows, 0).await?;
        Ok(finished)
    }

    /// Appends a part of an execution's module data (see [`ModuleData::into_parts`]) ahead of
    /// its finish, only while the execution is running and claimed by `worker_id`: false,
    /// writing nothing, once it is finished or another worker has claimed it (that worker
    /// runs it from the start and drops what this one wrote). The execution's row is locked
    /// until the commit.
    pub async fn append_module_part(
        &mut self,
        execution_id: &str,
        worker_id: &str,
        part: &ModuleData,
    ) -> Result<bool> {
        if !self.claimed_by(execution_id, worker_id).await? {
            return Ok(false);
        }
        let rows: Vec<(&str, &PreparedRow)> =
            part.rows.iter().map(|row| (execution_id, row)).collect();
        self.insert_module_rows(&rows, 0).await?;
        Ok(true)
    }

    /// Whether execution `id` is running, claimed by `worker_id`; its row is locked until the
    /// commit. The finish of an execution whose data was written in parts is made only when
    /// this holds, so the finish and the parts are one worker's.
    pub async fn claimed_by(&mut self, id: &str, worker_id: &str) -> Result<bool> {
        if !is_id(id) {
            return Ok(false);
        }
        let found: Option<String> = on_tx!(self, tx => {
            let sql = format!(
                "SELECT id FROM executions WHERE id = $1 AND status = 'running' \
                 AND worker_id = $2{}",
                for_update_in(tx)
            );
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(worker_id)
                .fetch_optional(&mut **tx)
                .await?
        });
        Ok(found.is_some())
    }

    /// Appends module outputs to an execution's data, after what is already there. An
    /// output whose JSON is larger than `cap_bytes` (or nested too deep to read back) is
    /// stored as `{"__truncated__": true, "bytes": N}` with `truncated` set. Returns how
    /// many entries were truncated. The execution's row must be locked by this transaction
    /// ([`WriteTx::finish_execution`] does) so two appends cannot pick the same positions.
    pub async fn append_module_data(
        &mut self,
        execution_id: &str,
        entries: &[ModuleEntry<'_>],
        cap_bytes: usize,
    ) -> Result<u32> {
        let data = ModuleData::prepare(entries, cap_bytes)?;
        let next: i64 = on_tx!(self, tx => {
            sqlx::query_scalar(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM execution_modules WHERE execution_id = $1",
            )
            .bind(execution_id)
            .fetch_one(&mut **tx)
            .await?
        });
        let rows: Vec<(&str, &PreparedRow)> =
            data.rows.iter().map(|row| (execution_id, row)).collect();
        self.insert_module_rows(&rows, next).await?;
        Ok(data.rows.iter().map(|r| u32::from(r.truncated)).sum())
    }

    /// Writes module data rows (each with its execution's id) at `first_seq` plus their
    /// position in their data.
    async fn insert_module_rows(
        &mut self,
        rows: &[(&str, &PreparedRow)],
        first_seq: i64,
    ) -> Result<()> {
        on_tx!(self, tx => {
            for chunk in pow2_chunks(rows, MODULE_ROWS_PER_INSERT) {
                let sql = format!(
                    "INSERT INTO execution_modules \
                     (execution_id, module_id, seq, output, truncated, input) VALUES {}",
                    values_rows("(?, ?, ?, ?, ?, ?)", chunk.len(), 1)
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(positional_in(tx, sql)));
                for (execution_id, row) in chunk {
                    query = query
                        .bind(*execution_id)
                        .bind(i64::from(row.module_id))
                        .bind(first_seq + row.seq)
                        .bind(&row.output)
                        .bind(row.truncated)
                        .bind(row.input);
                }
                query.execute(&mut **tx).await?;
            }
        });
        Ok(())
    }
}

/// An execution's new final state, serialised for [`WriteTx::finish_executions`].
struct FinishRow {
    /// Its entry in the batch.
    slot: usize,
    status: ExecutionStatus,
    operations: i64,
    report: Option<JsonText>,
    error: Option<JsonText>,
    modules: Option<JsonText>,
}

/// Module outputs serialised for storage, in order — each output's JSON, or the truncation
/// marker when it is larger than the cap — with, for the data of a whole execution, its
/// per-module summary ([`ModuleData::summarise`]). Preparing is the CPU work of storing
/// module data (serialising every output), done before any transaction starts so that a
/// transaction only binds; for large data, do it off the async runtime. The default is no
/// data and no summary.
#[derive(Debug, Default)]
pub struct ModuleData {
    rows: Vec<PreparedRow>,
    /// The serialised outputs' length in bytes, in all.
    bytes: usize,
    summary: Option<Vec<ModuleSummary>>,
}

/// A module output ready to be written: its JSON, or the truncation marker.
#[derive(Debug)]
struct PreparedRow {
    module_id: u32,
    /// Its position in its data (the execution's log).
    seq: i64,
    output: JsonText,
    truncated: bool,
    /// An operation's input rather than an output.
    input: bool,
}

impl ModuleData {
    /// Serialises `entries` (the execution's log: their order is their position); an output
    /// whose JSON is larger than `cap_bytes` (or nested too deep to read back) becomes
    /// `{"__truncated__": true, "bytes": N}`. The rows are kept in the store's key order
    /// (module, then position), so that each part of the data is written at the end of the
    /// execution's key range.
    pub fn prepare(entries: &[ModuleEntry<'_>], cap_bytes: usize) -> Result<ModuleData> {
        let mut rows = entries
            .iter()
            .zip(0..)
            .map(|(entry, seq)| module_row(entry.module_id, entry.output, seq, false, cap_bytes))
            .collect::<Result<Vec<_>>>()?;
        rows.sort_by_key(|row| (row.module_id, row.seq));
        let bytes = rows.iter().map(|r| r.output.len()).sum();
        Ok(ModuleData {
            rows,
            bytes,
            summary: None,
        })
    }

    /// Adds the inputs of modules' operations — `(module id, input)`, in the order they ran —
    /// capped like the outputs, positioned after every output. Before
    /// [`ModuleData::summarise`], which counts them.
    pub fn add_inputs<'a>(
        &mut self,
        inputs: impl IntoIterator<Item = (u32, &'a Value)>,
        cap_bytes: usize,
    ) -> Result<()> {
        let first = self.rows.iter().map(|r| r.seq + 1).max().unwrap_or(0);
        for ((module_id, input), seq) in inputs.into_iter().zip(first..) {
            let row = module_row(module_id, input, seq, true, cap_bytes)?;
            self.bytes += row.output.len();
            self.rows.push(row);
        }
        self.rows.sort_by_key(|row| (row.module_id, row.seq));
        Ok(())
    }

    /// Records the per-module summary of this data with the engine's `counts`: one entry per
    /// module of `counts`, in their order (the order of first run), plus any module with
    /// stored outputs but no counts, in order of its first output.
    pub fn summarise(&mut self, counts: &[ModuleCounts]) {
        // Per module: stored outputs, truncated outputs, first position, inputs.
        let mut tallies: HashMap<u32, (u64, u64, i64, u64)> = HashMap::new();
        for row in &self.rows {
            let tally = tallies.entry(row.module_id).or_insert((0, 0, row.seq, 0));
            if row.input {
                tally.3 += 1;
            } else {
                tally.0 += 1;
                tally.1 += u64::from(row.truncated);
            }
            tally.2 = tally.2.min(row.seq);
        }
        let counted: HashSet<u32> = counts.iter().map(|c| c.module_id).collect();
        let mut uncounted: Vec<u32> = tallies
            .keys()
            .copied()
            .filter(|m| !counted.contains(m))
            .collect();
        uncounted.sort_by_key(|m| tallies[m].2);
        let mut summary: Vec<ModuleSummary> = counts
            .iter()
            .map(|c| {
                let (stored, truncated, _, inputs) =
                    tallies.get(&c.module_id).copied().unwrap_or((0, 0, 0, 0));
                ModuleSummary {
                    module: c.module_id,
                    runs: Some(c.runs),
                    bundles: Some(c.bundles.max(stored)),
                    stored,
                    omitted: Some(c.bundles.saturating_sub(stored)),
                    errors: Some(c.errors),
                    filtered: Some(c.filtered),
                    truncated,
                    inputs,
                }
            })
            .collect();
        summary.extend(uncounted.into_iter().map(|module| {
            let (stored, truncated, _, inputs) = tallies[&module];
            ModuleSummary {
                module,
                runs: None,
                bundles: Some(stored),
                stored,
                omitted: Some(0),
                errors: None,
                filtered: None,
                truncated,
                inputs,
            }
        }));
        self.summary = Some(summary);
    }

    /// The per-module summary, when [`ModuleData::summarise`] recorded one.
    pub fn summary(&self) -> Option<&[ModuleSummary]> {
        self.summary.as_deref()
    }

    /// How many outputs.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The serialised outputs' length in bytes, in all.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Splits the data, in key order, into parts of at most `max_rows` outputs and
    /// `max_bytes` bytes (a single larger output makes a part of its own). Always at least one part; the
    /// last one carries the summary. The leading parts are written with
    /// [`WriteTx::append_module_part`], the last with the finish.
    pub fn into_parts(self, max_rows: usize, max_bytes: usize) -> Vec<ModuleData> {
        let max_rows = max_rows.max(1);
        let mut parts = Vec::new();
        let mut current = ModuleData::default();
        for row in self.rows {
            let full = current.rows.len() >= max_rows
                || (!current.rows.is_empty() && current.bytes + row.output.len() > max_bytes);
            if full {
                parts.push(std::mem::take(&mut current));
            }
            current.bytes += row.output.len();
            current.rows.push(row);
        }
        current.summary = self.summary;
        parts.push(current);
        parts
    }

    /// The summary as the `modules` column stores it.
    fn summary_json(&self) -> Result<Option<JsonText>> {
        let Some(summary) = &self.summary else {
            return Ok(None);
        };
        let value = serde_json::to_value(summary).map_err(|e| StoreError::InvalidInput {
            what: "execution module summary",
            reason: e.to_string(),
        })?;
        JsonText::new("execution module summary", &value).map(Some)
    }
}

fn module_row(
    module_id: u32,
    bundle: &Value,
    seq: i64,
    input: bool,
    cap_bytes: usize,
) -> Result<PreparedRow> {
    let (output, truncated) = match JsonText::new("module output", bundle) {
        Ok(text) if text.len() <= cap_bytes => (text, false),
        Ok(text) => (
            JsonText::new("module output", &truncated_marker(text.len()))?,
            true,
        ),
        Err(StoreError::InvalidInput { .. }) => {
            let bytes = serde_json::to_vec(bundle).map_or(0, |v| v.len());
            (
                JsonText::new("module output", &truncated_marker(bytes))?,
                true,
            )
        }
        Err(e) => return Err(e),
    };
    Ok(PreparedRow {
        module_id,
        seq,
        output,
        truncated,
        input,
    })
}

fn check_worker(worker_id: &str) -> Result<()> {
    super::check_text("worker id", worker_id, MAX_WORKER_ID_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_marker_has_the_documented_shape() {
        assert_eq!(
            truncated_marker(12),
            json!({"__truncated__": true, "bytes": 12})
        );
    }
}
