//! `/api/scenarios`: create from blueprint JSON (validated first: an invalid scenario is a
//! 422 with every problem and its path), read, update (a new version; hooks keep their
//! URLs), delete, activate/deactivate, run now, list hooks, reset a polling trigger.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::extract::{Path, Text};
use super::{ApiError, ApiResult, AppState, rfc3339};
use crate::scenario::compiled::NodeKind;
use crate::scenario::{self, Scenario};
use crate::store::{ExecutionSource, NewExecution, ScenarioRow};

/// The stable identity of a scenario's trigger: its first module's id. Editing the
/// scenario keeps it, so a polling cursor survives edits.
pub fn trigger_key(scenario: &Scenario) -> String {
    scenario.trigger_key()
}

fn compile(state: &AppState, text: &str) -> ApiResult<(scenario::Blueprint, Scenario)> {
    let invalid = |e: scenario::LoadError| {
        let problems = e.problems();
        let first = problems.first().cloned();
        let mut error = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_scenario",
            format!("the scenario is invalid: {e}"),
        )
        .with_details(json!({"problems": problems}));
        if let Some(p) = first.filter(|p| !p.path.is_empty()) {
            error = error.at(p.path);
        }
        error
    };
    let blueprint = scenario::parse(text).map_err(invalid)?;
    let compiled = state.inner.runner.compile(&blueprint).map_err(invalid)?;
    Ok((blueprint, compiled))
}

/// Hooks for the scenario's instant trigger (a `gateway:CustomWebHook` first module).
async fn sync_hooks(state: &AppState, id: &str, scenario: &Scenario) -> ApiResult<Vec<Value>> {
    let mut hooks = Vec::new();
    let mut keep = Vec::new();
    if let Some(entry) = scenario.entry {
        let node = scenario.node(entry);
        if matches!(node.kind, NodeKind::InputTrigger { .. })
            && node.module == "gateway:CustomWebHook"
        {
            let hook = state.store().ensure_hook(id, node.id).await?;
            keep.push(node.id);
            hooks.push(json!({"module": node.id, "url": format!("/hooks/{hook}")}));
        }
    }
    state.store().retire_hooks(id, &keep).await?;
    Ok(hooks)
}

fn scenario_json(row: &ScenarioRow) -> Value {
    json!({"id": row.id, "name": row.name, "version": row.version, "active": row.active,
           "createdAt": rfc3339(row.created_at), "updatedAt": rfc3339(row.updated_at)})
}

pub async fn create(
    State(state): State<AppState>,
    Text(body): Text,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (blueprint, compiled) = compile(&state, &body)?;
    let (id, version) = state
        .store()
        .create_scenario(&blueprint.name, &body)
        .await?;
    let hooks = sync_hooks(&state, &id, &compiled).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "version": version, "hooks": hooks})),
    ))
}

pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let rows = state.store().list_scenarios().await?;
    Ok(Json(
        json!({"scenarios": rows.iter().map(scenario_json).collect::<Vec<_>>()}),
    ))
}

pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let row = state.store().get_scenario(&id).await?;
    let version = state.store().get_version(&id, row.version).await?;
    let blueprint: Value = serde_json::from_str(&version.blueprint).unwrap_or(Value::Null);
    let hooks: Vec<Value> = state
        .store()
        .hooks_for(&id)
        .await?
        .into_iter()
        .filter(|h| h.active || row.active)
        .map(|h| json!({"module": h.module_id, "url": format!("/hooks/{}", h.id)}))
        .collect();
    let mut out = scenario_json(&row);
    out["blueprint"] = blueprint;
    out["hooks"] = Value::Array(hooks);
    Ok(Json(out))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Text(body): Text,
) -> ApiResult<Json<Value>> {
    state.store().get_scenario(&id).await?;
    let (_, compiled) = compile(&state, &body)?;
    let version = state.store().update_scenario(&id, &body).await?;
    let hooks = sync_hooks(&state, &id, &compiled).await?;
    state.scenarios_changed();
    Ok(Json(json!({"id": id, "version": version, "hooks": hooks})))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.store().delete_scenario(&id).await?;
    state.scenarios_changed();
    Ok(StatusCode::NO_CONTENT)
}

pub async fn activate(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state.store().set_active(&id, true).await?;
    state.scenarios_changed();
    Ok(Json(scenario_json(&state.store().get_scenario(&id).await?)))
}

pub async fn deactivate(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state.store().set_active(&id, false).await?;
    state.scenarios_changed();
    Ok(Json(scenario_json(&state.store().get_scenario(&id).await?)))
}

/// Queues an execution now; the request body (JSON, optional) is the trigger's bundle.
pub async fn run_now(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Text(body): Text,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let row = state.store().get_scenario(&id).await?;
    let payload: Option<Value> = if body.trim().is_empty() {
        None
    } else {
        Some(serde_json::from_str(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body is not JSON (line {}, column {}): {e}",
                e.line(),
                e.column()
            ))
        })?)
    };
    let new = NewExecution {
        scenario_id: &id,
        version: row.version,
        source: ExecutionSource::Manual,
        payload: payload.as_ref(),
    };
    let execution_id = state.store().create_execution(new).await?;
    state.inner.queue.enqueue(&execution_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"executionId": execution_id})),
    ))
}

pub async fn hooks(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state.store().get_scenario(&id).await?;
    let hooks: Vec<Value> = state
        .store()
        .hooks_for(&id)
        .await?
        .into_iter()
        .map(|h| json!({"id": h.id, "module": h.module_id, "url": format!("/hooks/{}", h.id), "active": h.active}))
        .collect();
    Ok(Json(json!({"hooks": hooks})))
}

pub async fn reset_trigger(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let row = state.store().get_scenario(&id).await?;
    let scenario = match state
        .inner
        .runner
        .scenario(&id, row.version)
        .await
        .map_err(|e| ApiError::internal("scenario", e))?
    {
        Ok(s) => s,
        Err(problem) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_scenario",
                problem,
            ));
        }
    };
    let key = trigger_key(&scenario);
    let reset = state.store().reset_trigger_state(&id, &key).await?;
    Ok(Json(json!({"trigger": key, "reset": reset})))
}
