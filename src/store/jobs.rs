//! Rows of the job queue's table. apalis creates the table and runs the workers that fetch,
//! lock and acknowledge its rows (`queue::Queue`); every other statement on it is here, so
//! that only the store knows which database it is on: pushing jobs — many per statement,
//! inside the transaction that creates their executions, or one at a time — deleting the jobs
//! of finished executions in the transaction that finishes them, and reading and clearing
//! the jobs the queue is done with.
//!
//! A job's idempotency key is its execution's id, unique per queue: pushing a key that is
//! already queued writes nothing and says so ([`JobPush::AlreadyQueued`]), on both backends,
//! without failing the transaction it is part of.
//!
//! These statements follow apalis's table format (columns, `Pending`/`Done`/`Killed`/`Failed`
//! statuses, its JSON codec), which is not its public API: `tests/queue.rs`
//! (`apalis_runs_the_stores_jobs_once_and_its_acknowledgements_are_understood`) pins the
//! contract on both backends, so an apalis upgrade that changes it fails there.

use super::{Dialect, Result, Store, WriteTx, positional_in, pow2_chunks, values_rows};

/// Most jobs written per `INSERT` or deleted per `DELETE` (5 parameters each).
const JOBS_PER_STATEMENT: usize = 128;

/// Most spent jobs [`Store::spent_jobs`] reads at a time.
const SPENT_JOBS_PER_READ: i64 = 500;

/// A job, serialised by the queue, for apalis's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob<'a> {
    /// The row's id, in apalis's format (a ULID).
    pub id: String,
    /// The idempotency key: the id of the execution the job runs.
    pub key: &'a str,
    /// The job's arguments as apalis's codec reads them.
    pub args: Vec<u8>,
}

/// What pushing one job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobPush {
    /// A new row was written.
    Queued,
    /// A job with this idempotency key was already in the queue: nothing was written.
    AlreadyQueued,
}

/// A job the queue is done with (done, killed, or failed with no attempt left).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SpentJob {
    /// The row's id, for [`Store::delete_job`].
    pub id: String,
    /// Its idempotency key: the execution it ran, if it has one.
    pub execution_id: Option<String>,
    /// Deliveries the job had.
    pub attempts: i64,
    /// What its last delivery reported, as apalis wrote it.
    pub last_result: Option<String>,
}

/// apalis's job table in one dialect: its name and how its columns are written.
pub(super) struct JobTable {
    pub name: &'static str,
    /// Now, in the type and unit of `run_at`. On PostgreSQL the transaction's `now()`: apalis's
    /// insert trigger sends NOTIFY only for jobs due by then, so a job stamped with the wall
    /// clock a moment later would wait for a worker's fallback poll.
    pub due_now: &'static str,
    /// The `metadata` of a job that carries none.
    pub no_metadata: &'static str,
}

/// The job table of the dialect of `tx`.
fn jobs_in<DB: Dialect>(_tx: &sqlx::Transaction<'_, DB>) -> &'static JobTable {
    &DB::JOBS
}

/// The job table of the dialect of `pool`.
fn jobs_on<DB: Dialect>(_pool: &sqlx::Pool<DB>) -> &'static JobTable {
    &DB::JOBS
}

impl WriteTx {
    /// Pushes jobs onto queue `queue`, each allowed `max_attempts` deliveries and due now; they
    /// are queued if and only if the transaction commits. A job whose key is already queued
    /// is skipped. Returns how many were written.
    pub async fn push_jobs(
        &mut self,
        queue: &str,
        max_attempts: u32,
        jobs: &[NewJob<'_>],
    ) -> Result<u64> {
        let max_attempts = i32::try_from(max_attempts).unwrap_or(i32::MAX);
        let mut written = 0;
        on_tx!(self, tx => {
            let table = jobs_in(tx);
            for chunk in pow2_chunks(jobs, JOBS_PER_STATEMENT) {
                let row = format!(
                    "(?, ?, ?, 'Pending', 0, ?, {}, 0, {}, ?)",
                    table.due_now, table.no_metadata
                );
                let sql = format!(
                    "INSERT INTO {} (job, id, job_type, status, attempts, max_attempts, run_at, \
                     priority, metadata, idempotency_key) VALUES {} \
                     ON CONFLICT (job_type, idempotency_key) DO NOTHING",
                    table.name,
                    values_rows(&row, chunk.len(), 1)
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(positional_in(tx, sql)));
                for job in chunk {
                    query = query
                        .bind(job.args.as_slice())
                        .bind(job.id.as_str())
                        .bind(queue)
                        .bind(max_attempts)
                        .bind(job.key);
                }
                written += query.execute(&mut **tx).await?.rows_affected();
            }
        });
        Ok(written)
    }

    /// Deletes the jobs of queue `queue` whose keys (execution ids) are `keys`, if they have
    /// any: a job is done exactly when its execution is.
    pub async fn delete_jobs(&mut self, queue: &str, keys: &[&str]) -> Result<()> {
        on_tx!(self, tx => {
            let table = jobs_in(tx);
            for chunk in pow2_chunks(keys, JOBS_PER_STATEMENT) {
                let sql = format!(
                    "DELETE FROM {} WHERE job_type = $1 AND idempotency_key IN ({})",
                    table.name,
                    values_rows("?", chunk.len(), 2)
                );
                let mut query =
                    sqlx::query(sqlx::AssertSqlSafe(positional_in(tx, sql))).bind(queue);
                for key in chunk {
                    query = query.bind(*key);
                }
                query.execute(&mut **tx).await?;
            }
        });
        Ok(())
    }
}

impl Store {
    /// Pushes one job in a transaction of its own (see [`WriteTx::push_jobs`]).
    pub async fn push_job(
        &self,
        queue: &str,
        max_attempts: u32,
        job: NewJob<'_>,
    ) -> Result<JobPush> {
        let mut tx = self.begin_write().await?;
        let written = tx
            .push_jobs(queue, max_attempts, std::slice::from_ref(&job))
            .await?;
        tx.commit().await?;
        Ok(if written == 0 {
            JobPush::AlreadyQueued
        } else {
            JobPush::Queued
        })
    }

    /// Jobs of queue `queue` that will not run again — done, killed, or failed with no attempt
    /// left —, up to 500.
    pub async fn spent_jobs(&self, queue: &str) -> Result<Vec<SpentJob>> {
        let spent = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id, idempotency_key AS execution_id, CAST(attempts AS BIGINT) AS attempts, \
                 CAST(last_result AS TEXT) AS last_result FROM {} \
                 WHERE job_type = $1 AND (status IN ('Done', 'Killed') \
                 OR (status = 'Failed' AND attempts >= max_attempts)) LIMIT $2",
                jobs_on(pool).name
            )))
            .bind(queue)
            .bind(SPENT_JOBS_PER_READ)
            .fetch_all(pool)
            .await?
        });
        Ok(spent)
    }

    /// Deletes the job whose row id is `id` ([`SpentJob::id`]).
    pub async fn delete_job(&self, id: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {} WHERE id = $1",
                jobs_on(pool).name
            )))
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
