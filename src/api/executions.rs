//! `/api/executions` and `/api/incomplete`: list and inspect executions (the report of
//! `switchyard run --json` plus ids and timings, with per-module data), re-run one, and
//! retry or resolve incomplete executions (bundles parked by Break). Times are RFC 3339
//! strings ([`rfc3339`]); `durationMs` is a number of milliseconds.

use std::str::FromStr;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::extract::{Json, Path, Query};
use super::{ApiError, ApiResult, AppState, rfc3339};
use crate::store::{
    Execution, ExecutionCursor, ExecutionFilter, ExecutionStatus, ExecutionSummary,
    IncompleteExecution,
};
use crate::store::{Store, StoreError};

#[derive(Deserialize)]
pub struct ListQuery {
    scenario: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    before: Option<String>,
}

fn summary_json(e: &ExecutionSummary) -> Value {
    json!({"id": e.id, "scenarioId": e.scenario_id, "version": e.version, "status": e.status.as_str(),
           "source": e.source.as_str(), "operations": e.operations, "cycles": e.cycles, "error": e.error,
           "attempt": e.attempt, "workerId": e.worker_id, "createdAt": rfc3339(e.created_at), "startedAt": e.started_at.map(rfc3339), "finishedAt": e.finished_at.map(rfc3339),
           "durationMs": e.finished_at.zip(e.started_at).map(|(f, s)| f - s)})
}

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let status = match &q.status {
        None => None,
        Some(s) => Some(ExecutionStatus::from_str(s).map_err(|_| {
            ApiError::bad_request(format!(
                "unknown status \"{s}\": expected queued, running, success, error or incomplete"
            ))
            .at("status")
        })?),
    };
    let before = match &q.before {
        None => None,
        Some(c) => Some(
            ExecutionCursor::from_str(c)
                .map_err(|e| ApiError::bad_request(e.to_string()).at("before"))?,
        ),
    };
    let limit = q
        .limit
        .unwrap_or(ExecutionFilter::DEFAULT_LIMIT)
        .clamp(1, ExecutionFilter::MAX_LIMIT);
    let filter = ExecutionFilter {
        scenario_id: q.scenario.clone(),
        status,
        limit,
        before,
    };
    let rows = state.store().list_executions(&filter).await?;
    // A full page may have a next one; its cursor is the last row's position.
    let next = (rows.len() as u32 == limit)
        .then(|| rows.last().map(|r| r.cursor().to_string()))
        .flatten();
    Ok(Json(
        json!({"executions": rows.iter().map(summary_json).collect::<Vec<_>>(), "next": next}),
    ))
}

/// The execution report (`status, operations, cycles, log, error` and, when present,
/// `response` and `incomplete`) plus ids and timings.
pub async fn execution_report(store: &Store, e: &Execution) -> Result<Value, StoreError> {
    let log: Vec<Value> = store
        .module_data(&e.id)
        .await?
        .into_iter()
        .map(|m| json!({"module": m.module_id, "output": m.output}))
        .collect();
    let mut out = Map::new();
    out.insert("status".into(), json!(e.status.as_str()));
    out.insert("operations".into(), json!(e.operations));
    out.insert("cycles".into(), json!(e.cycles));
    out.insert("log".into(), Value::Array(log));
    out.insert("error".into(), e.error.clone().unwrap_or(Value::Null));
    if let Some(report) = &e.report {
        for key in ["response", "incomplete"] {
            if let Some(v) = report.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
    }
    for (k, v) in [
        ("id", json!(e.id)),
        ("scenarioId", json!(e.scenario_id)),
        ("version", json!(e.version)),
        ("source", json!(e.source.as_str())),
        ("attempt", json!(e.attempt)),
        ("workerId", json!(e.worker_id)),
        ("createdAt", json!(rfc3339(e.created_at))),
        ("startedAt", json!(e.started_at.map(rfc3339))),
        ("finishedAt", json!(e.finished_at.map(rfc3339))),
        (
            "durationMs",
            json!(e.finished_at.zip(e.started_at).map(|(f, s)| f - s)),
        ),
    ] {
        out.insert(k.into(), v);
    }
    Ok(Value::Object(out))
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let e = state.store().get_execution(&id).await?;
    Ok(Json(execution_report(state.store(), &e).await?))
}

/// Runs the execution's trigger payload again, on the scenario's current version.
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let e = state.store().get_execution(&id).await?;
    let execution_id = crate::queue::retry::rerun(state.store(), &state.inner.queue, &e).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"executionId": execution_id})),
    ))
}

#[derive(Deserialize)]
pub struct IncompleteQuery {
    scenario: String,
    limit: Option<u32>,
}

fn incomplete_json(i: &IncompleteExecution) -> Value {
    json!({"id": i.id, "executionId": i.execution_id, "scenarioId": i.scenario_id, "version": i.version,
           "module": i.module_id, "bundle": i.bundle, "error": i.error, "retry": i.retry, "attempts": i.attempts,
           "nextAttemptAt": i.next_attempt_at.map(rfc3339), "status": i.status.as_str(), "createdAt": rfc3339(i.created_at)})
}

pub async fn list_incomplete(
    State(state): State<AppState>,
    Query(q): Query<IncompleteQuery>,
) -> ApiResult<Json<Value>> {
    let rows = state
        .store()
        .list_incomplete(&q.scenario, None, q.limit.unwrap_or(100))
        .await?;
    Ok(Json(
        json!({"incomplete": rows.iter().map(incomplete_json).collect::<Vec<_>>()}),
    ))
}

/// Resumes a parked bundle at the module that failed, as a new execution of the version it
/// was parked on. The incomplete execution is resolved when that execution succeeds.
pub async fn retry_incomplete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let i = state.store().get_incomplete(&id).await?;
    let execution_id = crate::queue::retry::resume(state.store(), &state.inner.queue, &i).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"executionId": execution_id})),
    ))
}

pub async fn resolve_incomplete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state.store().get_incomplete(&id).await?;
    let resolved = state.store().resolve_incomplete(&id).await?;
    Ok(Json(json!({"id": id, "resolved": resolved})))
}
