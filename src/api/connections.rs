//! `/api/connections`: store a connection (`POST {name, app, kind?, fields}` → 201), list them,
//! read one, delete one and test one, by name or id; `POST /api/authorizations {name, app,
//! integration}` starts connecting an app's `oauth2` connection type in a browser (the
//! provider's URL to open; the callback stores the connection). Responses carry metadata only (name, id,
//! app, kind, key id, times): a connection's values go in sealed and never come out. The rules
//! (kinds, fields, sealing) are the `connections` layer's; these handlers translate HTTP.
//!
//! Errors: a bad value is 422 `invalid_input` naming the field path (`fields.token`), a name
//! already taken 409 `conflict`, an unknown connection 404; none quotes a value.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::extract::{Json, Path};
use super::{ApiError, ApiResult, AppState, rfc3339};
use crate::connections::{ConnectionError, NewConnectionInput, Vault};
use crate::store::{ConnectionRow, StoreError};

/// A connection as the API and `switchyard connections … --json` show it: never its values.
/// A connection made through an integration also says which (`alias`, `context`, `user`);
/// `provider` is its app, `status` `connected` or `needs_reauth`, `expiresAt` when its access
/// token expires (null when it does not).
pub fn connection_json(row: &ConnectionRow) -> Value {
    let link = row.integration.as_ref();
    json!({"id": row.id, "name": row.name, "app": row.app, "provider": row.app,
           "kind": row.kind, "alias": link.map(|l| &l.alias),
           "context": link.map(|l| &l.context), "user": link.and_then(|l| l.subject.as_ref()),
           "status": row.status, "expiresAt": row.expires_at.map(rfc3339),
           "keyId": row.key_id, "createdAt": rfc3339(row.created_at),
           "updatedAt": rfc3339(row.updated_at)})
}

impl From<ConnectionError> for ApiError {
    fn from(e: ConnectionError) -> Self {
        match e {
            ConnectionError::Invalid(problems) => {
                let message = format!(
                    "the connection is invalid: {}",
                    ConnectionError::Invalid(problems.clone())
                );
                let details: Vec<Value> = problems
                    .iter()
                    .map(|p| json!({"path": p.path, "reason": p.reason}))
                    .collect();
                let mut error =
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
                        .with_details(json!({"problems": details}));
                if let Some(first) = problems.first() {
                    error = error.at(first.path.clone());
                }
                error
            }
            ConnectionError::Store(StoreError::Conflict { reason, .. }) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", reason).at("name")
            }
            ConnectionError::Store(e) => e.into(),
            e @ ConnectionError::TestUnavailable { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "test_unavailable",
                e.to_string(),
            ),
            e @ ConnectionError::TestFailed { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "test_failed",
                e.to_string(),
            ),
            // A stored connection that does not open: the server's data or key, not the
            // request. The message names ids and key ids only.
            e @ (ConnectionError::Sealed(_)
            | ConnectionError::WrongKey { .. }
            | ConnectionError::Unreadable { .. }) => {
                tracing::error!(error = %e, "a stored connection does not open");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "connection_unreadable",
                    e.to_string(),
                )
            }
            e @ ConnectionError::UnknownIntegration { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            e @ ConnectionError::OAuth { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "integration_refused",
                e.to_string(),
            ),
            ConnectionError::Csrf(reason) => ApiError::bad_request(format!("refused: {reason}")),
            e => ApiError::internal("connections", e),
        }
    }
}

fn vault(state: &AppState) -> ApiResult<&Vault> {
    state.connections.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "stored connections are not served by this process",
        )
    })
}

fn invalid(path: &str, reason: &str) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
        if path.is_empty() {
            format!("the body {reason}")
        } else {
            format!("body field \"{path}\": {reason}")
        },
    );
    if !path.is_empty() {
        error = error.at(path);
    }
    error
}

/// Reads `{id?, name, app, kind?, fields, test?}`; a wrong shape names its field and never quotes a value.
fn new_connection(body: Value) -> ApiResult<NewConnectionInput> {
    let Value::Object(body) = body else {
        return Err(invalid(
            "",
            "must be a JSON object {name, app, kind?, fields}",
        ));
    };
    if let Some(key) = body.keys().find(|k| {
        !matches!(
            k.as_str(),
            "id" | "name" | "app" | "kind" | "fields" | "test"
        )
    }) {
        let shown: String = key.chars().filter(|c| !c.is_control()).take(100).collect();
        return Err(invalid(
            &shown,
            "is not a connection field (id, name, app, kind, fields, test)",
        ));
    }
    // The type's test request runs first unless the body says `"test": false`.
    let test = match body.get("test") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("test", "must be true or false")),
    };
    // Make's connection id, as its exports write it: a number (or its digits as text).
    let id = match body.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid("id", "must be Make's numeric connection id")),
    };
    let text = |name: &str, required: bool| match body.get(name) {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        None | Some(Value::Null) if !required => Ok(None),
        None => Err(invalid(name, "is required")),
        Some(_) => Err(invalid(name, "must be text")),
    };
    let fields = match body.get("fields") {
        Some(Value::Object(fields)) => fields.clone(),
        None => Map::new(),
        Some(_) => return Err(invalid("fields", "must be an object of field values")),
    };
    Ok(NewConnectionInput {
        id,
        name: text("name", true)?.unwrap_or_default(),
        app: text("app", true)?.unwrap_or_default(),
        kind: text("kind", false)?,
        fields,
        test,
    })
}

pub async fn create(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let input = new_connection(body)?;
    let row = vault(&state)?.create(&input).await?;
    Ok((StatusCode::CREATED, Json(connection_json(&row))))
}

pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let rows = vault(&state)?.list().await?;
    Ok(Json(
        json!({"connections": rows.iter().map(connection_json).collect::<Vec<_>>()}),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> ApiResult<Json<Value>> {
    let row = vault(&state)?.get(&reference).await?;
    Ok(Json(connection_json(&row)))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> ApiResult<StatusCode> {
    vault(&state)?.remove(&reference).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn test(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> ApiResult<Json<Value>> {
    let report = vault(&state)?.test(&reference).await?;
    Ok(Json(json!({
        "connection": connection_json(&report.connection),
        "ok": true,
        "detail": report.detail,
    })))
}

/// `POST /api/authorizations`'s body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationBody {
    name: String,
    app: String,
    integration: String,
}

/// `POST /api/authorizations {name, app, integration}`: the authorize URL (valid 10 minutes)
/// that connects `name`, a connection of `app`'s `oauth2` type, through the `auth_code`
/// integration `integration`, asking for the scopes the app's modules need; opening it and
/// consenting brings the browser to `/oauth/callback`, which stores the connection (or gives an
/// existing one of that app and integration new tokens).
pub async fn authorize(
    State(state): State<AppState>,
    Json(body): Json<AuthorizationBody>,
) -> ApiResult<Json<Value>> {
    let started = vault(&state)?
        .start_app_authorization(&body.name, &body.app, &body.integration)
        .await?;
    Ok(Json(json!({
        "authorizeUrl": started.url.as_str(),
        "name": body.name,
        "app": body.app,
        "integration": body.integration,
        "scopes": started.scopes,
    })))
}
