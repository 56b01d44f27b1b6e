//! Webhook deliveries, accepted in batches inside a [`WriteTx`]: one transaction records many
//! deliveries and their queued executions, so that the job queue can push their jobs in the
//! same transaction and every sender is answered after a single commit (group commit).
//!
//! A delivery with a dedupe key (provider event id, `Idempotency-Key`) is accepted once per
//! hook: a later one — in the same batch or long after — stores nothing and is answered with
//! the first delivery's execution.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::{Postgres, Sqlite, Transaction};

use super::error::is_foreign_key_violation;
use super::json::JsonText;
use super::{
    Delivery, Execution, ExecutionSource, ExecutionStatus, Result, Store, StoreError, is_id,
    new_id, now_ms, positional_in, pow2_chunks, values_rows,
};

/// Dedupe keys longer than this (or with control characters) are stored as their SHA-256.
const MAX_PLAIN_DEDUPE_KEY_BYTES: usize = 200;

/// Most executions written per multi-row `INSERT` (11 parameters each).
const EXECUTIONS_PER_INSERT: usize = 64;

/// The columns a delivery's execution is created with.
const INSERT_EXECUTION: &str = "INSERT INTO executions (id, scenario_id, version, status, \
     source, payload, created_at, attempt, worker_id, started_at, heartbeat_at)";

/// A write transaction on the store's database, for writes of several kinds that must commit
/// together (webhook deliveries, their executions and their jobs; finished executions and the
/// deletion of their jobs).
pub enum WriteTx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A webhook delivery to accept: checked and serialised when made, so that the batch that
/// writes it only binds.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    execution_id: String,
    hook_id: String,
    dedupe_key: Option<String>,
    scenario_id: String,
    version: u32,
    payload: JsonText,
    /// The worker that claims the execution as it is created (it runs it at once).
    claimed_by: Option<String>,
}

impl NewDelivery {
    /// A delivery to hook `hook_id` that queues an execution of `scenario_id`/`version` with
    /// `payload`. An empty dedupe key counts as none; long keys are stored as their digest.
    pub fn new(
        hook_id: &str,
        dedupe_key: Option<&str>,
        scenario_id: &str,
        version: u32,
        payload: &Value,
    ) -> Result<NewDelivery> {
        let payload = JsonText::new("webhook payload", payload)?;
        Ok(NewDelivery::with(
            hook_id,
            dedupe_key,
            scenario_id,
            version,
            payload,
        ))
    }

    /// [`NewDelivery::new`] with a payload that is already JSON text (a webhook body kept as
    /// sent, without building it as a value: a large body costs its size, not ten times
    /// that). Refused like a value: invalid JSON, or nested deeper than the store reads back.
    pub fn with_json_text(
        hook_id: &str,
        dedupe_key: Option<&str>,
        scenario_id: &str,
        version: u32,
        payload: String,
    ) -> Result<NewDelivery> {
        let payload = JsonText::from_text("webhook payload", payload)?;
        Ok(NewDelivery::with(
            hook_id,
            dedupe_key,
            scenario_id,
            version,
            payload,
        ))
    }

    fn with(
        hook_id: &str,
        dedupe_key: Option<&str>,
        scenario_id: &str,
        version: u32,
        payload: JsonText,
    ) -> NewDelivery {
        NewDelivery {
            execution_id: new_id(),
            hook_id: hook_id.to_string(),
            dedupe_key: dedupe_key.filter(|k| !k.is_empty()).map(stored_dedupe_key),
            scenario_id: scenario_id.to_string(),
            version,
            payload,
            claimed_by: None,
        }
    }

    /// The size of the payload's JSON text, in bytes.
    pub fn payload_bytes(&self) -> usize {
        self.payload.len()
    }

    /// Has the execution created `running`, claimed by `worker_id` (attempt 1), instead of
    /// `queued`: that worker runs it at once ([`NewDelivery::claimed_execution`]).
    pub fn claim_for(&mut self, worker_id: &str) {
        self.claimed_by = Some(worker_id.to_string());
    }

    /// Whether [`NewDelivery::claim_for`] claimed its execution for a worker.
    pub fn is_claimed(&self) -> bool {
        self.claimed_by.is_some()
    }

    /// The execution as [`NewDelivery::claim_for`] has it stored once accepted (`None`
    /// without a claim), for its worker to run without reading it back.
    pub fn claimed_execution(&self) -> Option<Execution> {
        let worker_id = self.claimed_by.clone()?;
        let now = now_ms();
        Some(Execution {
            id: self.execution_id.clone(),
            scenario_id: self.scenario_id.clone(),
            version: self.version,
            status: ExecutionStatus::Running,
            source: ExecutionSource::Webhook,
            payload: serde_json::from_str(self.payload.as_str()).ok(),
            operations: 0,
            cycles: 0,
            report: None,
            error: None,
            attempt: 1,
            worker_id: Some(worker_id),
            created_at: now,
            started_at: Some(now),
            heartbeat_at: Some(now),
            finished_at: None,
        })
    }

    /// The row values that depend on a claim: status, attempt, worker, started.
    fn claim_columns(&self, now: i64) -> (&'static str, i64, Option<&str>, Option<i64>) {
        match &self.claimed_by {
            Some(worker) => ("running", 1, Some(worker.as_str()), Some(now)),
            None => ("queued", 0, None, None),
        }
    }

    /// The id its execution gets if the delivery is accepted (a duplicate answers with the
    /// first delivery's instead), known in advance so a caller can wait for it.
    pub fn execution_id(&self) -> &str {
        &self.execution_id
    }
}

impl Store {
    /// Starts a write transaction (on SQLite it takes the write lock at once).
    pub async fn begin_write(&self) -> Result<WriteTx> {
        Ok(on_pool!(self, pool => super::begin_write(pool).await?.into()))
    }

    /// Accepts one webhook delivery in a transaction of its own (see
    /// [`WriteTx::accept_deliveries`]); the caller queues the execution afterwards.
    pub async fn accept_delivery(
        &self,
        hook_id: &str,
        dedupe_key: Option<&str>,
        scenario_id: &str,
        version: u32,
        payload: &Value,
    ) -> Result<Delivery> {
        let delivery = NewDelivery::new(hook_id, dedupe_key, scenario_id, version, payload)?;
        let mut tx = self.begin_write().await?;
        let delivery = tx
            .accept_deliveries(std::slice::from_ref(&delivery))
            .await?
            .pop()
            .unwrap_or_else(|| Err(hook_not_found()))?;
        tx.commit().await?;
        Ok(delivery)
    }
}

impl From<Transaction<'static, Sqlite>> for WriteTx {
    fn from(tx: Transaction<'static, Sqlite>) -> WriteTx {
        WriteTx::Sqlite(tx)
    }
}

impl From<Transaction<'static, Postgres>> for WriteTx {
    fn from(tx: Transaction<'static, Postgres>) -> WriteTx {
        WriteTx::Postgres(tx)
    }
}

impl WriteTx {
    pub async fn commit(self) -> Result<()> {
        on_tx!(self, tx => tx.commit().await?);
        Ok(())
    }

    /// Records webhook deliveries and queues an execution for each new one: one result per
    /// delivery, in order. A delivery whose hook is not its scenario's gets
    /// [`StoreError::NotFound`] (without the hook id); a key already seen on the hook (while
    /// its first execution is retained) gets [`Delivery::Duplicate`] with the first
    /// execution's id. A database error — a scenario version deleted meanwhile included —
    /// fails the whole batch: the transaction must then be dropped, and the deliveries can be
    /// retried one by one to find the culprit.
    pub async fn accept_deliveries(
        &mut self,
        batch: &[NewDelivery],
    ) -> Result<Vec<Result<Delivery>>> {
        let result = on_tx!(self, tx => {
            async {
                let now = now_ms();
                let mut hooks: HashMap<(&str, &str), bool> = HashMap::new();
                for d in batch {
                    let pair = (d.hook_id.as_str(), d.scenario_id.as_str());
                    if hooks.contains_key(&pair) {
                        continue;
                    }
                    let found = is_id(pair.0)
                        && sqlx::query_scalar::<_, String>(
                            "SELECT id FROM hooks WHERE id = $1 AND scenario_id = $2",
                        )
                        .bind(pair.0)
                        .bind(pair.1)
                        .fetch_optional(&mut **tx)
                        .await?
                        .is_some();
                    hooks.insert(pair, found);
                }
                let mut results: Vec<Result<Delivery>> = Vec::with_capacity(batch.len());
                // Deliveries without a key are written together; keyed ones one by one, after them.
                let mut unkeyed: Vec<&NewDelivery> = Vec::new();
                for d in batch {
                    if !hooks[&(d.hook_id.as_str(), d.scenario_id.as_str())] {
                        results.push(Err(hook_not_found()));
                    } else if d.dedupe_key.is_none() {
                        results.push(Ok(Delivery::Accepted {
                            execution_id: d.execution_id.clone(),
                        }));
                        unkeyed.push(d);
                    } else {
                        // Filled in below.
                        results.push(Err(hook_not_found()));
                    }
                }
                for chunk in pow2_chunks(&unkeyed, EXECUTIONS_PER_INSERT) {
                    let rows = values_rows("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", chunk.len(), 1);
                    let sql = positional_in(tx, format!("{INSERT_EXECUTION} VALUES {rows}"));
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for d in chunk {
                        let (status, attempt, worker, started) = d.claim_columns(now);
                        query = query
                            .bind(d.execution_id.as_str())
                            .bind(d.scenario_id.as_str())
                            .bind(i64::from(d.version))
                            .bind(status)
                            .bind(ExecutionSource::Webhook.as_str())
                            .bind(&d.payload)
                            .bind(now)
                            .bind(attempt)
                            .bind(worker)
                            .bind(started)
                            .bind(started);
                    }
                    query.execute(&mut **tx).await?;
                }
                for (slot, d) in batch.iter().enumerate() {
                    let (Some(key), true) = (&d.dedupe_key, hooks[&(d.hook_id.as_str(), d.scenario_id.as_str())])
                    else {
                        continue;
                    };
                    let id = d.execution_id.clone();
                    let (status, attempt, worker, started) = d.claim_columns(now);
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "{INSERT_EXECUTION} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)"
                    )))
                    .bind(id.as_str())
                    .bind(d.scenario_id.as_str())
                    .bind(i64::from(d.version))
                    .bind(status)
                    .bind(ExecutionSource::Webhook.as_str())
                    .bind(d.payload.clone())
                    .bind(now)
                    .bind(attempt)
                    .bind(worker)
                    .bind(started)
                    .execute(&mut **tx)
                    .await?;
                    let inserted = sqlx::query(
                        "INSERT INTO webhook_deliveries (hook_id, dedupe_key, execution_id, received_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (hook_id, dedupe_key) DO NOTHING",
                    )
                    .bind(d.hook_id.as_str())
                    .bind(key.as_str())
                    .bind(id.as_str())
                    .bind(now)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                    results[slot] = if inserted == 1 {
                        Ok(Delivery::Accepted { execution_id: id })
                    } else {
                        sqlx::query("DELETE FROM executions WHERE id = $1")
                            .bind(id.as_str())
                            .execute(&mut **tx)
                            .await?;
                        let first = sqlx::query_scalar::<_, String>(
                            "SELECT execution_id FROM webhook_deliveries \
                             WHERE hook_id = $1 AND dedupe_key = $2",
                        )
                        .bind(d.hook_id.as_str())
                        .bind(key.as_str())
                        .fetch_optional(&mut **tx)
                        .await?;
                        match first {
                            Some(execution_id) => Ok(Delivery::Duplicate { execution_id }),
                            // The first delivery's execution was pruned between the two statements.
                            None => Err(StoreError::Conflict {
                                what: "webhook delivery",
                                reason: "the first delivery with this key was just removed; retry".into(),
                            }),
                        }
                    };
                }
                Ok::<_, sqlx::Error>(results)
            }
            .await
        });
        result.map_err(|e| match e {
            e if is_foreign_key_violation(&e) => match batch {
                [one] => version_not_found(&one.scenario_id, one.version),
                _ => StoreError::Database(e),
            },
            e => StoreError::Database(e),
        })
    }
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

fn hook_not_found() -> StoreError {
    StoreError::NotFound {
        what: "hook",
        id: "(hook id withheld)".into(),
    }
}

pub(super) fn version_not_found(scenario_id: &str, version: u32) -> StoreError {
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
}
