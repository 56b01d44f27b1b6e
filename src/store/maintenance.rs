//! Keeping the database small and observable: retention ([`Store::prune`]), SQLite file
//! maintenance ([`Store::maintain`]), execution counts for metrics, and the API token hash.
//!
//! Retention deletes in bounded batches (`DELETE … WHERE id IN (SELECT … LIMIT n)`), each its
//! own short statement, so pruning a large history never holds the database for long.
//! SQLite files are created with `auto_vacuum=INCREMENTAL`, so `maintain` can return freed
//! pages to the file system and truncate the WAL: the file really shrinks.

use sqlx::SqliteConnection;

use super::types::stored_u64;
use super::{ExecutionStatus, Result, Store, StoreError, begin_write, new_id, now_ms};

const DAY_MS: i64 = 86_400_000;

/// Claimed schedule ticks are kept this long; a scheduler must not claim older occurrences.
pub const TICK_RETENTION_DAYS: i64 = 7;

/// Largest batch [`Store::prune`] deletes per statement.
const MAX_BATCH: u32 = 10_000;

/// Finished executions with no pending incomplete execution: what retention may delete.
const PRUNABLE: &str = "e.status IN ('success', 'error', 'incomplete') AND NOT EXISTS \
     (SELECT 1 FROM incomplete_executions i WHERE i.execution_id = e.id AND i.status = 'pending')";

impl Store {
    /// Deletes old finished executions with their module data, deliveries (so a webhook
    /// dedupe key is remembered only while its execution is kept) and resolved incomplete
    /// executions; queued and running executions, and executions with a pending incomplete
    /// execution, are never touched. Both limits apply when both are given:
    /// - `keep_days`: delete executions that finished more than this many days ago;
    /// - `keep_last`: per scenario, delete finished executions beyond the newest this many.
    ///
    /// Also deletes schedule ticks older than [`TICK_RETENTION_DAYS`]. Works in batches of
    /// `batch` rows (1 to 10,000). Returns how many executions were deleted.
    pub async fn prune(
        &self,
        keep_days: Option<u32>,
        keep_last: Option<u32>,
        batch: u32,
    ) -> Result<u64> {
        self.prune_at(now_ms(), keep_days, keep_last, batch).await
    }

    /// [`Store::prune`] as if the time were `now` (UTC ms).
    pub async fn prune_at(
        &self,
        now: i64,
        keep_days: Option<u32>,
        keep_last: Option<u32>,
        batch: u32,
    ) -> Result<u64> {
        let batch = i64::from(batch.clamp(1, MAX_BATCH));
        let mut deleted = 0;
        if let Some(days) = keep_days {
            let cutoff = now.saturating_sub(i64::from(days).saturating_mul(DAY_MS));
            let sql = format!(
                "DELETE FROM executions WHERE id IN (SELECT e.id FROM executions e \
                 WHERE e.finished_at < $1 AND {PRUNABLE} LIMIT $2)"
            );
            deleted += self.delete_in_batches(&sql, &[cutoff], batch).await?;
        }
        if let Some(keep) = keep_last {
            let scenarios: Vec<String> = on_pool!(self, pool => {
                sqlx::query_scalar("SELECT id FROM scenarios ORDER BY id")
                    .fetch_all(pool)
                    .await?
            });
            for scenario_id in scenarios {
                deleted += self
                    .prune_scenario_beyond(&scenario_id, keep, batch)
                    .await?;
            }
        }
        let tick_cutoff = now.saturating_sub(TICK_RETENTION_DAYS * DAY_MS);
        self.delete_in_batches(
            "DELETE FROM schedule_ticks WHERE (scenario_id, tick_at) IN \
             (SELECT scenario_id, tick_at FROM schedule_ticks WHERE tick_at < $1 LIMIT $2)",
            &[tick_cutoff],
            batch,
        )
        .await?;
        Ok(deleted)
    }

    /// Deletes a scenario's finished executions older than its newest `keep`.
    async fn prune_scenario_beyond(&self, scenario_id: &str, keep: u32, batch: i64) -> Result<u64> {
        // The newest execution beyond the kept ones: it and everything older goes.
        let boundary: Option<(i64, String)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT created_at, id FROM executions \
                 WHERE scenario_id = $1 AND status IN ('success', 'error', 'incomplete') \
                 ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET $2",
            )
            .bind(scenario_id)
            .bind(i64::from(keep))
            .fetch_optional(pool)
            .await?
        });
        let Some((created_at, id)) = boundary else {
            return Ok(0);
        };
        let sql = format!(
            "DELETE FROM executions WHERE id IN (SELECT e.id FROM executions e \
             WHERE e.scenario_id = $1 AND (e.created_at, e.id) <= ($2, $3) AND {PRUNABLE} \
             LIMIT $4)"
        );
        let mut deleted = 0;
        loop {
            let n = on_pool!(self, pool => {
                sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(scenario_id)
                    .bind(created_at)
                    .bind(&id)
                    .bind(batch)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
            deleted += n;
            if n < batch.unsigned_abs() {
                return Ok(deleted);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Runs `sql` (integer parameters `params`, then the batch size) until a run deletes
    /// fewer rows than the batch.
    async fn delete_in_batches(&self, sql: &str, params: &[i64], batch: i64) -> Result<u64> {
        let mut deleted = 0;
        loop {
            let n = on_pool!(self, pool => {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for p in params {
                    query = query.bind(*p);
                }
                query.bind(batch).execute(pool).await?.rows_affected()
            });
            deleted += n;
            if n < batch.unsigned_abs() {
                return Ok(deleted);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Gives space back to the file system. On SQLite: `PRAGMA incremental_vacuum` (frees
    /// every unused page) then `PRAGMA wal_checkpoint(TRUNCATE)` (copies the WAL into the
    /// file and truncates it). Run it after [`Store::prune`]. On PostgreSQL autovacuum does
    /// this work, and the call does nothing.
    pub async fn maintain(&self) -> Result<()> {
        let Some(pool) = self.sqlite_pool() else {
            return Ok(());
        };
        let mut conn = pool.acquire().await?;
        sqlx::query("PRAGMA incremental_vacuum")
            .execute(&mut *conn)
            .await?;
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await?;
        if busy != 0 {
            tracing::warn!("SQLite WAL checkpoint did not complete: readers were active");
        }
        Ok(())
    }

    /// How many executions are in each status; every status appears, in declaration order.
    pub async fn count_executions_by_status(&self) -> Result<Vec<(ExecutionStatus, u64)>> {
        let rows: Vec<(String, i64)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT status, COUNT(*) FROM executions GROUP BY status")
                .fetch_all(pool)
                .await?
        });
        let mut counts: Vec<(ExecutionStatus, u64)> =
            ExecutionStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for (status, n) in rows {
            let status: ExecutionStatus = super::types::parse_stored("execution status", &status)?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == status) {
                slot.1 = stored_u64("execution count", n)?;
            }
        }
        Ok(counts)
    }

    /// The SHA-256 (64 lowercase hex characters) of the API token, if one is set.
    pub async fn api_token_hash(&self) -> Result<Option<String>> {
        let hash: Option<String> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT hash FROM api_tokens ORDER BY created_at DESC, id LIMIT 1")
                .fetch_optional(pool)
                .await?
        });
        Ok(hash)
    }

    /// Replaces the API token: stores the SHA-256 of the new token (64 lowercase hex
    /// characters, never the token itself); the previous one stops working.
    pub async fn set_api_token_hash(&self, sha256_hex: &str) -> Result<()> {
        let valid = sha256_hex.len() == 64
            && sha256_hex
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(StoreError::InvalidInput {
                what: "API token hash",
                reason: "expected 64 lowercase hex characters (SHA-256)".into(),
            });
        }
        let id = new_id();
        let now = now_ms();
        on_pool!(self, pool => {
            let mut tx = begin_write(pool).await?;
            sqlx::query("DELETE FROM api_tokens").execute(&mut *tx).await?;
            sqlx::query("INSERT INTO api_tokens (id, hash, created_at) VALUES ($1, $2, $3)")
                .bind(&id)
                .bind(sha256_hex)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}

/// Makes sure a SQLite file can shrink. New files get `auto_vacuum=INCREMENTAL` from the
/// connection options before their first table; a file created without it (by an older
/// build, or by another tool) is converted once with `VACUUM` (best effort). Run on a connection of its
/// own before the pool opens: other connections would keep reporting the old mode until
/// their next transaction.
pub(crate) async fn ensure_incremental_vacuum(conn: &mut SqliteConnection) -> Result<()> {
    const INCREMENTAL: i64 = 2;
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&mut *conn)
        .await?;
    if mode != INCREMENTAL {
        tracing::info!("converting the SQLite file to incremental auto-vacuum (one-time VACUUM)");
        sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
            .execute(&mut *conn)
            .await?;
        // Not fatal: the store works without it, the file just does not shrink. VACUUM can
        // fail when another process keeps the file busy; the next open tries again.
        if let Err(e) = sqlx::query("VACUUM").execute(&mut *conn).await {
            tracing::warn!(error = %e, "SQLite VACUUM failed; the file will not shrink yet");
        }
    }
    Ok(())
}
