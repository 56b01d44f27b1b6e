//! `/api/scenarios`: create from blueprint JSON (validated first: an invalid scenario is a
//! 422 with every problem and its path), read, update (a new version; hooks keep their
//! URLs), delete, activate/deactivate, run now, list hooks, reset a polling trigger. The
//! rules (compile options, hooks, the compiled cache) are the catalog's: these handlers
//! translate HTTP to catalog calls.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::extract::{Path, Text};
use super::{ApiError, ApiResult, AppState, rfc3339};
use crate::catalog::{CatalogError, Hook, Stored};
use crate::module::ErrorKind;
use crate::scenario::LoadError;
use crate::store::ScenarioRow;

/// An invalid blueprint: 422 with every problem and its path (the first one's as `path`).
fn invalid(e: LoadError) -> ApiError {
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
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Invalid(e) => invalid(e),
            CatalogError::Store(e) => e.into(),
            CatalogError::References(problems) => {
                let first = problems.first().map(|p| p.path.clone());
                let mut error = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "missing_references",
                    format!(
                        "the scenario cannot be activated: {} of the stored connections or data \
                         stores it names are missing or of the wrong app or kind",
                        problems.len()
                    ),
                )
                .with_details(json!({"problems": problems}));
                if let Some(path) = first {
                    error = error.at(path);
                }
                error
            }
            // The deployment's or the scenario's configuration (no connection, no public URL)
            // is the caller's to fix; anything else is the service's answer.
            CatalogError::Attach { ref error, .. } => {
                let status = match error.kind {
                    ErrorKind::InvalidConfigurationError | ErrorKind::DataError => {
                        StatusCode::UNPROCESSABLE_ENTITY
                    }
                    _ => StatusCode::BAD_GATEWAY,
                };
                ApiError::new(status, "webhook_attach_failed", e.to_string())
            }
        }
    }
}

/// A hook: its module and URL path, and a mailhook's e-mail address as `address`.
fn hook_json(hook: &Hook) -> Value {
    let mut out = json!({"module": hook.module, "url": hook.path()});
    if let Some(address) = &hook.address {
        out["address"] = json!(address);
    }
    out
}

/// A stored version; `warnings` lists what loading found that does not stop the scenario
/// from running (`[{path, message}]`, empty when nothing was found).
fn stored_json(stored: &Stored) -> Value {
    json!({"id": stored.id, "version": stored.version,
           "hooks": stored.hooks.iter().map(hook_json).collect::<Vec<_>>(),
           "warnings": stored.warnings})
}

fn scenario_json(row: &ScenarioRow) -> Value {
    json!({"id": row.id, "name": row.name, "version": row.version, "active": row.active,
           "deactivatedReason": row.deactivated_reason,
           "createdAt": rfc3339(row.created_at), "updatedAt": rfc3339(row.updated_at)})
}

pub async fn create(
    State(state): State<AppState>,
    Text(body): Text,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let stored = state.catalog().create(&body).await?;
    Ok((StatusCode::CREATED, Json(stored_json(&stored))))
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
    let hooks = state.catalog().hooks(&id).await?;
    let mut out = scenario_json(&row);
    out["blueprint"] = blueprint;
    out["hooks"] = hooks.iter().map(hook_json).collect();
    Ok(Json(out))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Text(body): Text,
) -> ApiResult<Json<Value>> {
    let stored = state.catalog().update(&id, &body).await?;
    state.scenarios_changed();
    Ok(Json(stored_json(&stored)))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.catalog().delete(&id).await?;
    state.scenarios_changed();
    Ok(StatusCode::NO_CONTENT)
}

pub async fn activate(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let row = state.catalog().set_active(&id, true).await?;
    state.scenarios_changed();
    Ok(Json(scenario_json(&row)))
}

pub async fn deactivate(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let row = state.catalog().set_active(&id, false).await?;
    state.scenarios_changed();
    Ok(Json(scenario_json(&row)))
}

/// Queues an execution now; the request body (JSON, optional) is the trigger's bundle.
pub async fn run_now(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Text(body): Text,
) -> ApiResult<(StatusCode, Json<Value>)> {
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
    let execution_id = state.queue().run_now(&id, payload.as_ref()).await?;
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
    // The attached hooks as the catalog sees them carry a mailhook's address.
    let attached = state.catalog().hooks(&id).await?;
    let hooks: Vec<Value> = state
        .store()
        .hooks_for(&id)
        .await?
        .into_iter()
        .map(|h| {
            let mut out = json!({"id": h.id, "module": h.module_id, "url": format!("/hooks/{}", h.id), "active": h.active});
            if let Some(address) = attached
                .iter()
                .find(|a| a.id == h.id)
                .and_then(|a| a.address.as_ref())
            {
                out["address"] = json!(address);
            }
            out
        })
        .collect();
    Ok(Json(json!({"hooks": hooks})))
}

pub async fn reset_trigger(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (key, reset) = state.catalog().reset_trigger(&id).await?;
    Ok(Json(json!({"trigger": key, "reset": reset})))
}
