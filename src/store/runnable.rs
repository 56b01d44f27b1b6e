//! What the job queue hands out. The queue is the executions table itself
//! (`queue::work`): a `queued` execution is a job, a claim
//! ([`Store::claim_execution_unless_alive`], compare-and-set on status and attempt) is its
//! delivery, and its end — in the transaction that records it — is its acknowledgement. So
//! a job is committed exactly when its execution is, and done exactly when its execution is:
//! there is no second table to keep in step, and no row in another library's format.
//!
//! # Invariants
//! - Reading is not claiming: two workers may read the same id; the claim decides which one
//!   runs it, and the other moves on.
//! - Running executions whose worker stopped giving signs of life come first (they are the
//!   oldest work there is), then queued ones in arrival order (`created_at`, then id).

use super::{Result, Store};

impl Store {
    /// Ids of executions a worker may claim, at most `limit`: running ones with no sign of
    /// life (claim or heartbeat) since before `alive_since` — their worker died —, then
    /// queued ones, each oldest first.
    pub async fn runnable_executions(&self, limit: u32, alive_since: i64) -> Result<Vec<String>> {
        let limit = i64::from(limit);
        let mut ids: Vec<String> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT id FROM executions WHERE status = 'running' \
                 AND COALESCE(heartbeat_at, started_at, created_at) < $1 \
                 ORDER BY created_at, id LIMIT $2",
            )
            .bind(alive_since)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        let room = limit - ids.len() as i64;
        if room > 0 {
            let queued: Vec<String> = on_pool!(self, pool => {
                sqlx::query_scalar(
                    "SELECT id FROM executions WHERE status = 'queued' \
                     ORDER BY created_at, id LIMIT $1",
                )
                .bind(room)
                .fetch_all(pool)
                .await?
            });
            ids.extend(queued);
        }
        Ok(ids)
    }
}
