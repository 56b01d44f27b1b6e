//! Executions started by other executions (`scenario-service:CallSubscenario`): the link from
//! a called execution to its caller (`parent_execution`, `parent_module`, migration 0010),
//! the chain of callers a new call is checked against, and both directions of the link for
//! history and the console.
//!
//! Invariants: a called execution is inserted queued with its link in one statement, so no
//! reader sees it unlinked; walking the chain stops after `limit` steps whatever the stored
//! links say (a chain is never read without bound).

use sqlx::FromRow;

use super::json;
use super::{NewExecution, Result, Store, StoreError, is_id, new_id, now_ms};

/// The caller of an execution, or one execution it called.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallLink {
    pub execution_id: String,
    pub scenario_id: String,
    /// The caller's module that made the call.
    pub module_id: Option<u32>,
    pub status: super::ExecutionStatus,
}

/// Both directions of an execution's call links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionLinks {
    /// The execution that called this one.
    pub called_by: Option<CallLink>,
    /// The executions this one called, oldest first (the first [`MAX_LISTED_CALLS`]).
    pub called: Vec<CallLink>,
}

/// Most called executions listed with an execution.
pub const MAX_LISTED_CALLS: i64 = 200;

#[derive(FromRow)]
struct LinkRecord {
    id: String,
    scenario_id: String,
    status: String,
    parent_module: Option<i64>,
}

impl TryFrom<LinkRecord> for CallLink {
    type Error = StoreError;

    fn try_from(r: LinkRecord) -> Result<CallLink> {
        Ok(CallLink {
            status: super::types::parse_stored("execution status", &r.status)?,
            module_id: r.parent_module.and_then(|m| u32::try_from(m).ok()),
            execution_id: r.id,
            scenario_id: r.scenario_id,
        })
    }
}

impl Store {
    /// Records a queued execution started by module `parent_module` of execution `parent`;
    /// returns its id.
    pub async fn create_called_execution(
        &self,
        new: NewExecution<'_>,
        parent: &str,
        parent_module: u32,
    ) -> Result<String> {
        let payload = json::opt("execution payload", new.payload)?;
        let id = new_id();
        let now = now_ms();
        let result = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO executions \
                 (id, scenario_id, version, status, source, payload, created_at, \
                  parent_execution, parent_module) \
                 VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8)",
            )
            .bind(&id)
            .bind(new.scenario_id)
            .bind(i64::from(new.version))
            .bind(new.source.as_str())
            .bind(payload.clone())
            .bind(now)
            .bind(parent)
            .bind(i64::from(parent_module))
            .execute(pool)
            .await
            .map(|_| ())
        });
        match result {
            Ok(()) => Ok(id),
            Err(e) if super::error::is_foreign_key_violation(&e) => Err(
                super::intake::version_not_found(new.scenario_id, new.version),
            ),
            Err(e) => Err(e.into()),
        }
    }

    /// The scenarios of execution `id` and of its callers, nearest first (`id`'s own first),
    /// at most `limit` of them.
    pub async fn call_chain(&self, id: &str, limit: usize) -> Result<Vec<(String, String)>> {
        let mut chain = Vec::new();
        let mut next = Some(id.to_string());
        while let Some(execution) = next.take() {
            if chain.len() >= limit || !is_id(&execution) {
                break;
            }
            let row: Option<(String, Option<String>)> = on_pool!(self, pool => {
                sqlx::query_as(
                    "SELECT scenario_id, parent_execution FROM executions WHERE id = $1",
                )
                .bind(&execution)
                .fetch_optional(pool)
                .await?
            });
            let Some((scenario, parent)) = row else { break };
            chain.push((execution, scenario));
            next = parent;
        }
        Ok(chain)
    }

    /// Who called execution `id`, and whom it called.
    pub async fn execution_links(&self, id: &str) -> Result<ExecutionLinks> {
        if !is_id(id) {
            return Err(StoreError::not_found("execution", id));
        }
        let parent: Option<(Option<String>, Option<i64>)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT parent_execution, parent_module FROM executions WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        let Some((parent, parent_module)) = parent else {
            return Err(StoreError::not_found("execution", id));
        };
        let called_by = match parent {
            None => None,
            Some(parent) => {
                let record: Option<LinkRecord> = on_pool!(self, pool => {
                    sqlx::query_as(
                        "SELECT id, scenario_id, status, CAST(NULL AS BIGINT) AS parent_module \
                         FROM executions WHERE id = $1",
                    )
                    .bind(&parent)
                    .fetch_optional(pool)
                    .await?
                });
                // A caller deleted by retention still names itself.
                Some(match record {
                    Some(r) => CallLink {
                        module_id: parent_module.and_then(|m| u32::try_from(m).ok()),
                        ..r.try_into()?
                    },
                    None => CallLink {
                        execution_id: parent,
                        scenario_id: String::new(),
                        module_id: parent_module.and_then(|m| u32::try_from(m).ok()),
                        status: super::ExecutionStatus::Success,
                    },
                })
            }
        };
        let records: Vec<LinkRecord> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, scenario_id, status, parent_module FROM executions \
                 WHERE parent_execution = $1 ORDER BY created_at, id LIMIT $2",
            )
            .bind(id)
            .bind(MAX_LISTED_CALLS)
            .fetch_all(pool)
            .await?
        });
        let called = records
            .into_iter()
            .map(CallLink::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(ExecutionLinks { called_by, called })
    }
}
