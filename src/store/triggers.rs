//! What triggers and retries remember between executions: polling trigger state (cursor and
//! recently seen ids), schedule ticks, incomplete executions.
//!
//! - **Trigger state** is keyed by (scenario, trigger key), where the key is a stable trigger
//!   identity chosen by the caller (e.g. the module id and its connection), never the
//!   scenario version: editing a scenario keeps its cursor. Commits merge seen ids under a
//!   row lock, so concurrent commits lose nothing.
//! - **Schedule ticks** are claimed with `INSERT … ON CONFLICT DO NOTHING`: of any number of
//!   schedulers racing for one (scenario, tick), exactly one sees a row inserted.
//! - **Incomplete executions** are bundles parked by Break; a retrier takes due ones with
//!   [`Store::due_incomplete`] and claims each attempt with [`Store::bump_incomplete`]. The
//!   bundles a run parks are written by [`WriteTx::park_bundles`] in the transaction that
//!   finishes the execution, numbered by position: (execution, `seq`) is unique (migration
//!   0012), so a finish written twice parks each bundle once.

use serde_json::Value;
use sqlx::FromRow;

use super::error::is_foreign_key_violation;
use sqlx::types::Json;

use super::json::{self, JsonText};
use super::types::{parse_stored, stored_u32};
use super::{
    ExecutionSource, IncompleteExecution, IncompleteStatus, NewIncomplete, Result, Store,
    StoreError, TriggerState, TriggerStateChange, WriteTx, begin_write, check_text, for_update,
    for_update_in, is_id, new_id, now_ms,
};

/// The longest trigger key, in bytes.
pub const MAX_TRIGGER_KEY_BYTES: usize = 500;

const INCOMPLETE_COLUMNS: &str = "id, execution_id, scenario_id, version, module_id, bundle, \
     error, retry, attempts, next_attempt_at, status, created_at, updated_at";

#[derive(FromRow)]
struct IncompleteRecord {
    id: String,
    execution_id: String,
    scenario_id: String,
    version: i64,
    module_id: i64,
    bundle: Json<Value>,
    error: Option<Json<Value>>,
    retry: Option<Json<Value>>,
    attempts: i64,
    next_attempt_at: Option<i64>,
    status: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<IncompleteRecord> for IncompleteExecution {
    type Error = StoreError;

    fn try_from(r: IncompleteRecord) -> Result<IncompleteExecution> {
        Ok(IncompleteExecution {
            version: stored_u32("incomplete execution version", r.version)?,
            module_id: stored_u32("incomplete execution module id", r.module_id)?,
            attempts: stored_u32("incomplete execution attempts", r.attempts)?,
            status: parse_stored("incomplete execution status", &r.status)?,
            bundle: r.bundle.0,
            error: json::unwrap_opt(r.error),
            retry: json::unwrap_opt(r.retry),
            id: r.id,
            execution_id: r.execution_id,
            scenario_id: r.scenario_id,
            next_attempt_at: r.next_attempt_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(FromRow)]
struct TriggerStateRecord {
    cursor: Option<Json<Value>>,
    seen_ids: Json<Value>,
    updated_at: i64,
    generation: i64,
}

/// Reads a stored seen-id list; anything but an array of strings is corrupt.
fn seen_ids_from(value: Value) -> Result<Vec<String>> {
    serde_json::from_value(value)
        .map_err(|_| StoreError::corrupt("trigger seen ids", "not an array of strings"))
}

/// Appends the ids not yet in `seen` (in order, once each) and keeps the newest `cap`.
fn merge_seen(mut seen: Vec<String>, new_ids: &[String], cap: usize) -> Vec<String> {
    let mut known: std::collections::HashSet<String> = seen.iter().cloned().collect();
    for id in new_ids {
        if known.insert(id.clone()) {
            seen.push(id.clone());
        }
    }
    let excess = seen.len().saturating_sub(cap);
    seen.drain(..excess);
    seen
}

/// Merges a trigger state change into the stored state inside the write transaction `$tx`
/// (shared by [`Store::commit_trigger_state`] and [`Store::finish_execution`]): creates the
/// row if needed, reads it under a row lock (`$lock` is the dialect's `FOR UPDATE`), sets
/// the cursor unless `$cursor` (`Option<JsonText>`) is `None`, appends `$new_seen_ids`
/// keeping the newest `$cap`, and stamps `$now`. With `$generation` `Some(g)` the change
/// applies only if the row is still in generation `g` (no reset since the poll read it);
/// otherwise the stored state is left as it is. Evaluates to `(old cursor, seen ids,
/// generation)` as stored afterwards; `?` propagates database errors to the enclosing
/// `Result<_, StoreError>`.
macro_rules! merge_trigger_state {
    ($tx:expr, $lock:expr, $scenario_id:expr, $key:expr, $cursor:expr, $new_seen_ids:expr,
     $cap:expr, $generation:expr, $now:expr) => {{
        let empty = JsonText::new("trigger seen ids", &Value::Array(Vec::new()))?;
        // Create the row if needed, so that there is a row to lock.
        sqlx::query(
            "INSERT INTO trigger_state (scenario_id, trigger_key, cursor, seen_ids, \
             updated_at) VALUES ($1, $2, NULL, $3, $4) \
             ON CONFLICT (scenario_id, trigger_key) DO NOTHING",
        )
        .bind($scenario_id)
        .bind($key)
        .bind(empty)
        .bind($now)
        .execute(&mut *$tx)
        .await?;
        let select = format!(
            "SELECT cursor, seen_ids, generation FROM trigger_state \
             WHERE scenario_id = $1 AND trigger_key = $2{}",
            $lock
        );
        let (old_cursor, Json(seen), generation): (Option<Json<Value>>, Json<Value>, i64) =
            sqlx::query_as(sqlx::AssertSqlSafe(select))
                .bind($scenario_id)
                .bind($key)
                .fetch_one(&mut *$tx)
                .await?;
        let seen = seen_ids_from(seen)?;
        if $generation.is_some_and(|read: i64| read != generation) {
            // A reset came between the poll's read and this commit: its progress belongs
            // to the state the reset forgot.
            (old_cursor, seen, generation)
        } else {
            let seen = merge_seen(seen, $new_seen_ids, $cap);
            let seen_text = JsonText::new(
                "trigger seen ids",
                &Value::Array(seen.iter().cloned().map(Value::String).collect()),
            )?;
            sqlx::query(
                "UPDATE trigger_state SET cursor = COALESCE($3, cursor), seen_ids = $4, \
             updated_at = $5 WHERE scenario_id = $1 AND trigger_key = $2",
            )
            .bind($scenario_id)
            .bind($key)
            .bind($cursor)
            .bind(seen_text)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
            (old_cursor, seen, generation)
        }
    }};
}

impl Store {
    /// A polling trigger's state, or `None` before its first commit. After a reset it is
    /// empty (no cursor, no seen ids) in a new generation.
    pub async fn trigger_state(
        &self,
        scenario_id: &str,
        key: &str,
    ) -> Result<Option<TriggerState>> {
        check_text("trigger key", key, MAX_TRIGGER_KEY_BYTES)?;
        if !is_id(scenario_id) {
            return Ok(None);
        }
        let row: Option<TriggerStateRecord> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT cursor, seen_ids, updated_at, generation FROM trigger_state \
                 WHERE scenario_id = $1 AND trigger_key = $2",
            )
            .bind(scenario_id)
            .bind(key)
            .fetch_optional(pool)
            .await?
        });
        row.map(|r| {
            Ok(TriggerState {
                cursor: json::unwrap_opt(r.cursor),
                seen_ids: seen_ids_from(r.seen_ids.0)?,
                updated_at: r.updated_at,
                generation: r.generation,
            })
        })
        .transpose()
    }

    /// Records a poll's progress: sets the cursor (unless `cursor` is `None`, which keeps
    /// the stored one) and adds `new_seen_ids` to the seen list, which keeps the newest
    /// `cap` ids. Atomic: concurrent commits are serialised and none is lost. Returns the
    /// state as stored. Unconditional: a poll's own commit goes with its execution's finish
    /// ([`TriggerStateChange`]), which applies only within the generation the poll read.
    pub async fn commit_trigger_state(
        &self,
        scenario_id: &str,
        key: &str,
        cursor: Option<&Value>,
        new_seen_ids: &[String],
        cap: usize,
    ) -> Result<TriggerState> {
        check_text("trigger key", key, MAX_TRIGGER_KEY_BYTES)?;
        if !is_id(scenario_id) {
            return Err(StoreError::not_found("scenario", scenario_id));
        }
        let cursor = json::opt("trigger cursor", cursor)?;
        let now = now_ms();
        let result: Result<TriggerState> = on_pool!(self, pool => {
            async {
                let mut tx = begin_write(pool).await?;
                let (old_cursor, seen, generation) = merge_trigger_state!(
                    tx,
                    for_update(pool),
                    scenario_id,
                    key,
                    cursor.clone(),
                    new_seen_ids,
                    cap,
                    None,
                    now
                );
                tx.commit().await?;
                let cursor = match cursor {
                    Some(_) => cursor_value(&cursor),
                    None => json::unwrap_opt(old_cursor),
                };
                Ok::<_, StoreError>(TriggerState {
                    cursor,
                    seen_ids: seen,
                    updated_at: now,
                    generation,
                })
            }
            .await
        });
        match result {
            Err(StoreError::Database(e)) if is_foreign_key_violation(&e) => {
                Err(StoreError::not_found("scenario", scenario_id))
            }
            other => other,
        }
    }

    /// Forgets a trigger's state; the next poll starts afresh. Returns whether there was any.
    /// The row stays, empty, in a new generation: a poll that read the old state and has not
    /// finished yet cannot commit its progress back (see [`TriggerStateChange::generation`]).
    /// An empty state needs no new generation: a poll that read it started afresh already.
    pub async fn reset_trigger_state(&self, scenario_id: &str, key: &str) -> Result<bool> {
        check_text("trigger key", key, MAX_TRIGGER_KEY_BYTES)?;
        if !is_id(scenario_id) {
            return Ok(false);
        }
        let empty = JsonText::new("trigger seen ids", &Value::Array(Vec::new()))?;
        let rows = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE trigger_state SET cursor = NULL, seen_ids = $3, \
                 generation = generation + 1, updated_at = $4 \
                 WHERE scenario_id = $1 AND trigger_key = $2 \
                 AND (cursor IS NOT NULL OR seen_ids <> $3)",
            )
            .bind(scenario_id)
            .bind(key)
            .bind(empty.clone())
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(rows == 1)
    }

    /// Claims the schedule occurrence `tick_at` (UTC ms) of a scenario. True for exactly one
    /// caller, however many schedulers in however many processes race for it.
    pub async fn claim_tick(&self, scenario_id: &str, tick_at: i64) -> Result<bool> {
        if !is_id(scenario_id) {
            return Err(StoreError::not_found("scenario", scenario_id));
        }
        let now = now_ms();
        let result: Result<u64, sqlx::Error> = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO schedule_ticks (scenario_id, tick_at, execution_id, claimed_at) \
                 VALUES ($1, $2, NULL, $3) ON CONFLICT (scenario_id, tick_at) DO NOTHING",
            )
            .bind(scenario_id)
            .bind(tick_at)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        });
        match result {
            Ok(rows) => Ok(rows == 1),
            Err(e) if is_foreign_key_violation(&e) => {
                Err(StoreError::not_found("scenario", scenario_id))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Claims a schedule occurrence and queues its execution in one transaction, so a
    /// claimed tick always has its execution (a crash between the two cannot lose it).
    /// Returns the execution id for the one caller that claimed the tick, `None` for others.
    pub async fn claim_tick_execution(
        &self,
        scenario_id: &str,
        version: u32,
        tick_at: i64,
        payload: Option<&Value>,
    ) -> Result<Option<String>> {
        if !is_id(scenario_id) {
            return Err(StoreError::not_found("scenario", scenario_id));
        }
        let payload = json::opt("execution payload", payload)?;
        let execution_id = new_id();
        let now = now_ms();
        let result: Result<bool, sqlx::Error> = on_pool!(self, pool => {
            async {
                let mut tx = begin_write(pool).await?;
                sqlx::query(
                    "INSERT INTO executions \
                     (id, scenario_id, version, status, source, payload, created_at) \
                     VALUES ($1, $2, $3, 'queued', $4, $5, $6)",
                )
                .bind(&execution_id)
                .bind(scenario_id)
                .bind(i64::from(version))
                .bind(ExecutionSource::Schedule.as_str())
                .bind(payload.clone())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let claimed = sqlx::query(
                    "INSERT INTO schedule_ticks (scenario_id, tick_at, execution_id, claimed_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (scenario_id, tick_at) DO NOTHING",
                )
                .bind(scenario_id)
                .bind(tick_at)
                .bind(&execution_id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if claimed {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                Ok::<_, sqlx::Error>(claimed)
            }
            .await
        });
        match result {
            Ok(true) => Ok(Some(execution_id)),
            Ok(false) => Ok(None),
            Err(e) if is_foreign_key_violation(&e) => Err(StoreError::NotFound {
                what: "scenario version",
                id: format!("{scenario_id} v{version}"),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Parks a bundle as a pending incomplete execution; returns its id.
    pub async fn insert_incomplete(&self, new: NewIncomplete<'_>) -> Result<String> {
        if !is_id(new.execution_id) {
            return Err(StoreError::not_found("execution", new.execution_id));
        }
        let bundle = JsonText::new("incomplete bundle", new.bundle)?;
        let error = json::opt("incomplete error", new.error)?;
        let retry = json::opt("incomplete retry settings", new.retry)?;
        let id = new_id();
        let now = now_ms();
        let result: Result<(), sqlx::Error> = on_pool!(self, pool => {
            // Numbered after the execution's bundles parked so far.
            sqlx::query(
                "INSERT INTO incomplete_executions (id, execution_id, scenario_id, version, \
                 module_id, bundle, error, retry, attempts, next_attempt_at, status, created_at, \
                 updated_at, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, 'pending', $10, \
                 $10, (SELECT COALESCE(MAX(seq) + 1, 0) FROM incomplete_executions \
                 WHERE execution_id = $2))",
            )
            .bind(&id)
            .bind(new.execution_id)
            .bind(new.scenario_id)
            .bind(i64::from(new.version))
            .bind(i64::from(new.module_id))
            .bind(bundle.clone())
            .bind(error.clone())
            .bind(retry.clone())
            .bind(new.next_attempt_at)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ())
        });
        match result {
            Ok(()) => Ok(id),
            Err(e) if is_foreign_key_violation(&e) => Err(StoreError::NotFound {
                what: "execution or scenario version",
                id: new.execution_id.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// One incomplete execution.
    pub async fn get_incomplete(&self, id: &str) -> Result<IncompleteExecution> {
        if !is_id(id) {
            return Err(StoreError::not_found("incomplete execution", id));
        }
        let sql = format!("SELECT {INCOMPLETE_COLUMNS} FROM incomplete_executions WHERE id = $1");
        let record: Option<IncompleteRecord> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        record
            .ok_or_else(|| StoreError::not_found("incomplete execution", id))?
            .try_into()
    }

    /// A scenario's incomplete executions, newest first, optionally of one status.
    pub async fn list_incomplete(
        &self,
        scenario_id: &str,
        status: Option<IncompleteStatus>,
        limit: u32,
    ) -> Result<Vec<IncompleteExecution>> {
        if !is_id(scenario_id) {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {INCOMPLETE_COLUMNS} FROM incomplete_executions \
             WHERE scenario_id = $1 AND ($2 = '' OR status = $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        );
        let status = status.map_or("", IncompleteStatus::as_str);
        let records: Vec<IncompleteRecord> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(scenario_id)
                .bind(status)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        records.into_iter().map(TryInto::try_into).collect()
    }

    /// Pending incomplete executions whose automatic retry is due at `now`, earliest first.
    pub async fn due_incomplete(&self, now: i64, limit: u32) -> Result<Vec<IncompleteExecution>> {
        let sql = format!(
            "SELECT {INCOMPLETE_COLUMNS} FROM incomplete_executions \
             WHERE status = 'pending' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, id LIMIT $2"
        );
        let records: Vec<IncompleteRecord> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        records.into_iter().map(TryInto::try_into).collect()
    }

    /// Claims one retry attempt: counts it and moves the next automatic retry to
    /// `next_attempt_at` (`None`: manual only). Only a pending incomplete execution that is
    /// due at `now` (or has no automatic retry) changes, so of several retriers racing for
    /// one due row exactly one gets true.
    pub async fn bump_incomplete(
        &self,
        id: &str,
        now: i64,
        next_attempt_at: Option<i64>,
    ) -> Result<bool> {
        if !is_id(id) {
            return Ok(false);
        }
        let rows = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE incomplete_executions SET attempts = attempts + 1, next_attempt_at = $3, \
                 updated_at = $2 WHERE id = $1 AND status = 'pending' \
                 AND (next_attempt_at IS NULL OR next_attempt_at <= $2)",
            )
            .bind(id)
            .bind(now)
            .bind(next_attempt_at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(rows == 1)
    }

    /// Marks a pending incomplete execution resolved (its retry succeeded). False when it was
    /// not pending.
    pub async fn resolve_incomplete(&self, id: &str) -> Result<bool> {
        self.close_incomplete(id, IncompleteStatus::Resolved).await
    }

    /// Marks a pending incomplete execution failed (given up). False when it was not pending.
    pub async fn fail_incomplete(&self, id: &str) -> Result<bool> {
        self.close_incomplete(id, IncompleteStatus::Failed).await
    }

    async fn close_incomplete(&self, id: &str, status: IncompleteStatus) -> Result<bool> {
        if !is_id(id) {
            return Ok(false);
        }
        let now = now_ms();
        let rows = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE incomplete_executions SET status = $2, next_attempt_at = NULL, \
                 updated_at = $3 WHERE id = $1 AND status = 'pending'",
            )
            .bind(id)
            .bind(status.as_str())
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(rows == 1)
    }
}

/// The value of a cursor that was just written.
fn cursor_value(cursor: &Option<JsonText>) -> Option<Value> {
    cursor
        .as_ref()
        .and_then(|c| serde_json::from_str(c.as_str()).ok())
}

impl WriteTx {
    /// Merges a polling trigger's progress into its state (see
    /// [`Store::commit_trigger_state`]) inside this transaction.
    pub(super) async fn merge_trigger_state(
        &mut self,
        change: TriggerStateChange<'_>,
    ) -> Result<()> {
        check_text("trigger key", change.key, MAX_TRIGGER_KEY_BYTES)?;
        if !is_id(change.scenario_id) {
            return Err(StoreError::not_found("scenario", change.scenario_id));
        }
        let cursor = json::opt("trigger cursor", change.cursor)?;
        let now = now_ms();
        let result: Result<()> = on_tx!(self, tx => {
            async {
                merge_trigger_state!(
                    (*tx),
                    for_update_in(tx),
                    change.scenario_id,
                    change.key,
                    cursor.clone(),
                    change.new_seen_ids,
                    change.cap,
                    Some(change.generation),
                    now
                );
                Ok::<_, StoreError>(())
            }
            .await
        });
        match result {
            Err(StoreError::Database(e)) if is_foreign_key_violation(&e) => {
                Err(StoreError::not_found("scenario", change.scenario_id))
            }
            other => other,
        }
    }
}

impl WriteTx {
    /// Pending incomplete executions of the bundles an execution parked, numbered by their
    /// position in `parked` (they all belong to the execution of the first). Meant for the
    /// transaction that finishes the execution, so that the execution ends with its parked
    /// bundles or not at all; a bundle already stored under its number is not stored again
    /// (the finish written twice parks once). Returns how many were written.
    pub async fn park_bundles(&mut self, parked: &[NewIncomplete<'_>]) -> Result<u64> {
        let Some(first) = parked.first() else {
            return Ok(0);
        };
        if !is_id(first.execution_id) || parked.iter().any(|p| p.execution_id != first.execution_id)
        {
            return Err(StoreError::InvalidInput {
                what: "parked bundles",
                reason: "expected the bundles of one stored execution".into(),
            });
        }
        let now = now_ms();
        let mut written = 0;
        for (seq, new) in parked.iter().enumerate() {
            let bundle = JsonText::new("incomplete bundle", new.bundle)?;
            let error = json::opt("incomplete error", new.error)?;
            let retry = json::opt("incomplete retry settings", new.retry)?;
            let seq = i64::try_from(seq).unwrap_or(i64::MAX);
            written += on_tx!(self, tx => {
                sqlx::query(
                    "INSERT INTO incomplete_executions (id, execution_id, scenario_id, version, \
                     module_id, bundle, error, retry, attempts, next_attempt_at, status, \
                     created_at, updated_at, seq) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, 'pending', $10, $10, $11) \
                     ON CONFLICT (execution_id, seq) DO NOTHING",
                )
                .bind(new_id())
                .bind(new.execution_id)
                .bind(new.scenario_id)
                .bind(i64::from(new.version))
                .bind(i64::from(new.module_id))
                .bind(bundle)
                .bind(error)
                .bind(retry)
                .bind(new.next_attempt_at)
                .bind(now)
                .bind(seq)
                .execute(&mut **tx)
                .await?
                .rows_affected()
            });
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn merge_seen_appends_new_ids_once_and_keeps_the_newest() {
        let seen = merge_seen(ids(&["a", "b"]), &ids(&["b", "c", "c", "d"]), 10);
        assert_eq!(seen, ids(&["a", "b", "c", "d"]));
        let capped = merge_seen(seen, &ids(&["e"]), 3);
        assert_eq!(capped, ids(&["c", "d", "e"]));
        assert!(merge_seen(ids(&["a"]), &ids(&["b"]), 0).is_empty());
    }

    #[test]
    fn seen_ids_must_be_strings() {
        assert!(seen_ids_from(serde_json::json!(["a", "b"])).is_ok());
        let err = seen_ids_from(serde_json::json!([1])).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }
}
