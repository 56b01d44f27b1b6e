//! `/api/executions` and `/api/incomplete`: list and inspect executions, re-run one, and
//! retry or resolve incomplete executions (bundles parked by Break). Times are RFC 3339
//! strings ([`rfc3339`]); `durationMs` is a number of milliseconds.
//!
//! An execution is read as a summary plus pages, so that its size never reaches a response:
//! `GET /api/executions/{id}` is the report of `switchyard run --json` without its `log`,
//! plus ids, timings and `modules` (per module, in order of first run: runs, bundles
//! produced, stored, omitted, errors, filtered, truncated); `?module=M&offset=O&limit=L`
//! (`limit` 1 to [`MAX_PAGE`], default [`DEFAULT_PAGE`]) is one page of module M's stored
//! output bundles, `{module, offset, limit, total, bundles: [{seq, output}], next}`, where
//! `seq` is the bundle's position in the execution's log (so pages of several modules merge
//! back into it) and `next` the offset of the next page, or null. With `&bundles=input` the
//! page is of the inputs of the module's first operations (its mapper, evaluated), in the
//! order they ran, each `{seq, input}`.

use std::str::FromStr;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::extract::{Json, Path, Query};
use super::{ApiError, ApiResult, AppState, rfc3339};
use crate::store::{
    CallLink, Execution, ExecutionCursor, ExecutionFilter, ExecutionStatus, ExecutionSummary,
    IncompleteExecution,
};
use crate::store::{Store, StoreError};

/// The largest page of a module's bundles, and the page when no `limit` is given.
pub const MAX_PAGE: u32 = 1000;
pub const DEFAULT_PAGE: u32 = 100;

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

/// The execution report without its log (`status, operations, cycles, error` and, when
/// present, `response`, `incomplete` and a called scenario's `outputs`), its per-module
/// summary (`modules`), its sub-scenario links (`calledBy`: the execution that called it, or
/// null; `calledExecutions`: the executions it called), ids and timings. Its size does not grow with the bundles the execution produced.
pub async fn execution_report(store: &Store, e: &Execution) -> Result<Value, StoreError> {
    let modules = store.module_summaries(&e.id).await?;
    let mut out = Map::new();
    out.insert("status".into(), json!(e.status.as_str()));
    out.insert("operations".into(), json!(e.operations));
    out.insert("cycles".into(), json!(e.cycles));
    out.insert("error".into(), e.error.clone().unwrap_or(Value::Null));
    if let Some(report) = &e.report {
        for key in ["response", "incomplete", "outputs"] {
            if let Some(v) = report.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
    }
    out.insert("modules".into(), json!(modules));
    let links = store.execution_links(&e.id).await?;
    out.insert(
        "calledBy".into(),
        links.called_by.as_ref().map_or(Value::Null, link_json),
    );
    out.insert(
        "calledExecutions".into(),
        Value::Array(links.called.iter().map(link_json).collect()),
    );
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

/// One end of a sub-scenario call: `{executionId, scenarioId, module, status}` (`module`: the
/// caller's module that made the call).
fn link_json(link: &CallLink) -> Value {
    json!({"executionId": link.execution_id, "scenarioId": link.scenario_id,
           "module": link.module_id, "status": link.status.as_str()})
}

/// `GET /api/executions/{id}`'s query: none for the summary, `module` (with `offset` and
/// `limit`) for a page.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionQuery {
    module: Option<u32>,
    offset: Option<u64>,
    limit: Option<u32>,
    bundles: Option<Bundles>,
}

/// Which of a module's bundles a page reads: what it produced, or what its operations ran on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bundles {
    Input,
    #[default]
    Output,
}

impl Bundles {
    /// The key of each bundle in a page: `input` or `output`.
    pub fn key(self) -> &'static str {
        match self {
            Bundles::Input => "input",
            Bundles::Output => "output",
        }
    }
}

/// Which page of which module's bundles to read.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub module: u32,
    pub offset: u64,
    pub limit: u32,
    pub bundles: Bundles,
}

impl ExecutionQuery {
    /// The page asked for, `None` for the summary; a 400 naming the parameter when the
    /// values are out of range or `offset`/`limit` come without `module`.
    fn page(&self) -> ApiResult<Option<PageRequest>> {
        let Some(module) = self.module else {
            if self.offset.is_some() || self.limit.is_some() || self.bundles.is_some() {
                return Err(ApiError::bad_request(
                    "query parameter \"module\" is required with offset, limit and bundles: \
                     they page one module's bundles",
                )
                .at("module"));
            }
            return Ok(None);
        };
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "query parameter \"limit\": expected 1 to {MAX_PAGE}, got {limit}"
            ))
            .at("limit"));
        }
        Ok(Some(PageRequest {
            module,
            offset: self.offset.unwrap_or(0),
            limit,
            bundles: self.bundles.unwrap_or_default(),
        }))
    }
}

/// One page of a module's stored bundles in execution `e`: `{module, offset, limit, total,
/// bundles: [{seq, output}], next}` (`{seq, input}` for inputs). [`StoreError::NotFound`] when `e` has finished and
/// module `page.module` neither ran in it nor has stored bundles (while it runs, a module
/// may still come).
pub async fn module_page(
    store: &Store,
    e: &Execution,
    page: PageRequest,
) -> Result<Value, StoreError> {
    let execution_id = e.id.as_str();
    let found = match page.bundles {
        Bundles::Output => {
            store
                .module_page(execution_id, page.module, page.offset, page.limit)
                .await?
        }
        Bundles::Input => {
            store
                .input_page(execution_id, page.module, page.offset, page.limit)
                .await?
        }
    };
    if found.total == 0
        && e.status.is_terminal()
        && !store
            .module_summaries(execution_id)
            .await?
            .iter()
            .any(|m| m.module == page.module)
    {
        return Err(StoreError::NotFound {
            what: "module",
            id: format!("{} in execution {execution_id}", page.module),
        });
    }
    let end = page.offset.saturating_add(found.records.len() as u64);
    let next = (!found.records.is_empty() && end < found.total).then_some(end);
    let bundles: Vec<Value> = found
        .records
        .into_iter()
        .map(|r| json!({"seq": r.seq, page.bundles.key(): r.output}))
        .collect();
    Ok(json!({
        "module": page.module,
        "offset": page.offset,
        "limit": page.limit,
        "total": found.total,
        "bundles": bundles,
        "next": next,
    }))
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ExecutionQuery>,
) -> ApiResult<Json<Value>> {
    let page = q.page()?;
    let e = state.store().get_execution(&id).await?;
    Ok(Json(match page {
        Some(page) => {
            let mut found = module_page(state.store(), &e, page)
                .await
                .map_err(|err| match err.is_not_found() {
                    true => ApiError::from(err).at("module"),
                    false => err.into(),
                })?;
            // A file shows as its summary and a link, never as its bytes.
            super::binaries::annotate(&mut found, "/api/binaries");
            found
        }
        None => execution_report(state.store(), &e).await?,
    }))
}

/// Runs the execution's trigger payload again, on the scenario's current version.
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let e = state.store().get_execution(&id).await?;
    let execution_id = crate::queue::retry::rerun(&state.inner.queue, &e).await?;
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
    let execution_id = crate::queue::retry::resume(&state.inner.queue, &i).await?;
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
