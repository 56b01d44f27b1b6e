//! `/api/datastores`: create a data store (`POST {name, fields?, maxSizeBytes?, id?}` → 201),
//! list them, read one (structure, record count, size), delete one, page through its records,
//! export them as JSON lines and import JSON lines (`{"key": …, "data": {…}}` a line; all or
//! nothing). The rules (names, types, sizes) are the store's; these handlers translate HTTP.
//! [`datastore_json`] and [`parse_records`] are shared with `switchyard datastores`.
//!
//! Errors: a bad body or record is 422 `invalid_input` (an import names the line), a name
//! already taken or a full store 409 `conflict`, an unknown store 404.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Json, Path, Query, Text};
use super::{ApiError, ApiResult, AppState, rfc3339};
use crate::module::datastore::{
    DEFAULT_MAX_SIZE_BYTES, DataStore, Field, FieldKind, Record, parse_fields,
};
use crate::store::{NewDataStore, StoreError};

/// The largest page of records.
pub const MAX_RECORDS_PAGE: u32 = 1000;

/// A data store as the API and `switchyard datastores … --json` show it.
pub fn datastore_json(store: &DataStore) -> Value {
    json!({
        "id": store.id,
        "name": store.name,
        "fields": store.fields,
        "records": store.records,
        "sizeBytes": store.size_bytes,
        "maxSizeBytes": store.max_size_bytes,
        "createdAt": rfc3339(store.created_at),
    })
}

/// Reads JSON lines of records (`{"key": "…", "data": {…}}`; blank lines skipped), each with
/// its line number. The error names the first wrong line and what was expected.
pub fn parse_records(text: &str) -> Result<Vec<(usize, Record)>, String> {
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("line {number}: not JSON ({e})"))?;
        let Value::Object(mut object) = value else {
            return Err(format!(
                "line {number}: expected an object {{\"key\": …, \"data\": {{…}}}}"
            ));
        };
        if let Some(other) = object.keys().find(|k| *k != "key" && *k != "data") {
            let shown: String = other.chars().filter(|c| !c.is_control()).take(60).collect();
            return Err(format!(
                "line {number}: unexpected field \"{shown}\" (a record is {{\"key\", \"data\"}})"
            ));
        }
        let key = match object.remove("key") {
            Some(Value::String(key)) if !key.is_empty() => key,
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(format!("line {number}: \"key\" must be non-empty text")),
        };
        let data = match object.remove("data") {
            Some(Value::Object(data)) => data,
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(_) => {
                return Err(format!(
                    "line {number}: \"data\" must be an object of the store's fields"
                ));
            }
        };
        records.push((number, Record { key, data }));
    }
    Ok(records)
}

/// The records as JSON lines, one `{"key", "data"}` each.
pub fn records_jsonl(records: &[Record]) -> String {
    let mut out = String::new();
    for record in records {
        out.push_str(&json!({"key": record.key, "data": record.data}).to_string());
        out.push('\n');
    }
    out
}

fn invalid(path: &str, reason: impl Into<String>) -> ApiError {
    let error = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
        reason.into(),
    );
    if path.is_empty() {
        error
    } else {
        error.at(path)
    }
}

/// Store errors: a conflict (name taken, store full) is 409; the rest as everywhere.
fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { reason, .. } => {
            ApiError::new(StatusCode::CONFLICT, "conflict", reason)
        }
        e => e.into(),
    }
}

/// Reads `fields` as `"email:text,count:number"` or `[{"name", "type", "required"?}]`.
fn read_fields(value: Option<&Value>) -> ApiResult<Vec<Field>> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(spec)) => parse_fields(spec).map_err(|e| invalid("fields", e)),
        Some(Value::Array(items)) => {
            let mut fields = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let at = format!("fields[{i}]");
                let name = item.get("name").and_then(Value::as_str).ok_or_else(|| {
                    invalid(
                        &format!("{at}.name"),
                        format!("body field \"{at}.name\" must be text"),
                    )
                })?;
                let kind = match item.get("type") {
                    None | Some(Value::Null) => FieldKind::Text,
                    Some(Value::String(t)) => FieldKind::parse(t).ok_or_else(|| {
                        invalid(
                            &format!("{at}.type"),
                            format!(
                                "body field \"{at}.type\": unknown type, expected one of {}",
                                FieldKind::ALL.map(FieldKind::name).join(", ")
                            ),
                        )
                    })?,
                    Some(_) => {
                        return Err(invalid(
                            &format!("{at}.type"),
                            format!("body field \"{at}.type\" must be text"),
                        ));
                    }
                };
                let required = item
                    .get("required")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                fields.push(Field {
                    name: name.to_string(),
                    kind,
                    required,
                });
            }
            crate::module::datastore::check_fields(&fields).map_err(|e| invalid("fields", e))?;
            Ok(fields)
        }
        Some(_) => Err(invalid(
            "fields",
            "body field \"fields\" must be \"name:type,…\" or [{name, type}]",
        )),
    }
}

pub async fn create(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Value::Object(body) = body else {
        return Err(invalid(
            "",
            "the body must be a JSON object {name, fields?, maxSizeBytes?, id?}",
        ));
    };
    if let Some(key) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "fields" | "maxSizeBytes" | "id"))
    {
        let shown: String = key.chars().filter(|c| !c.is_control()).take(100).collect();
        return Err(invalid(
            &shown,
            format!(
                "body field \"{shown}\" is not a data store field (name, fields, maxSizeBytes, id)"
            ),
        ));
    }
    let name = match body.get("name") {
        Some(Value::String(name)) => name.clone(),
        _ => return Err(invalid("name", "body field \"name\" is required text")),
    };
    let id = match body.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(invalid("id", "body field \"id\" must be text or a number")),
    };
    let max_size_bytes = match body.get("maxSizeBytes") {
        None | Some(Value::Null) => DEFAULT_MAX_SIZE_BYTES,
        Some(v) => v.as_u64().ok_or_else(|| {
            invalid(
                "maxSizeBytes",
                "body field \"maxSizeBytes\" must be a positive integer",
            )
        })?,
    };
    let fields = read_fields(body.get("fields"))?;
    let store = state
        .store()
        .create_datastore(NewDataStore {
            name: &name,
            id: id.as_deref(),
            fields,
            max_size_bytes,
        })
        .await
        .map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(datastore_json(&store))))
}

pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let stores = state.store().list_datastores().await?;
    Ok(Json(
        json!({"datastores": stores.iter().map(datastore_json).collect::<Vec<_>>()}),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> ApiResult<Json<Value>> {
    let store = state.store().get_datastore(&reference).await?;
    Ok(Json(datastore_json(&store)))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> ApiResult<StatusCode> {
    state.store().delete_datastore(&reference).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    /// Records after this key (the `next` of the previous page).
    after: Option<String>,
    limit: Option<u32>,
}

pub async fn records(
    State(state): State<AppState>,
    Path(reference): Path<String>,
    Query(q): Query<RecordsQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_RECORDS_PAGE {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("query parameter \"limit\": must be 1 to {MAX_RECORDS_PAGE}"),
        )
        .at("limit"));
    }
    let store = state.store().get_datastore(&reference).await?;
    let page = state
        .store()
        .datastore_records_page(&store.id, q.after.as_deref(), limit)
        .await?;
    let next = if page.len() == limit as usize {
        page.last().map(|r| Value::String(r.key.clone()))
    } else {
        None
    };
    Ok(Json(json!({
        "records": page.iter().map(|r| json!({"key": r.key, "data": r.data})).collect::<Vec<_>>(),
        "next": next,
    })))
}

pub async fn export(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> ApiResult<Response> {
    let store = state.store().get_datastore(&reference).await?;
    let mut out = String::new();
    let mut after: Option<String> = None;
    loop {
        let page = state
            .store()
            .datastore_records_page(&store.id, after.as_deref(), MAX_RECORDS_PAGE)
            .await?;
        out.push_str(&records_jsonl(&page));
        if page.len() < MAX_RECORDS_PAGE as usize {
            break;
        }
        after = page.last().map(|r| r.key.clone());
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response())
}

pub async fn import(
    State(state): State<AppState>,
    Path(reference): Path<String>,
    Text(body): Text,
) -> ApiResult<Json<Value>> {
    let store = state.store().get_datastore(&reference).await?;
    let records = parse_records(&body).map_err(|e| invalid("", format!("the import {e}")))?;
    let imported = state
        .store()
        .import_datastore_records(&store, records)
        .await
        .map_err(store_error)?;
    let store = state.store().get_datastore(&store.id).await?;
    Ok(Json(
        json!({"imported": imported, "datastore": datastore_json(&store)}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_from_json_lines_naming_the_wrong_line() {
        let records = parse_records("{\"key\":\"a\",\"data\":{\"n\":1}}\n\n{\"key\":2}\n").unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].0, 3);
        assert_eq!(records[1].1.key, "2");
        let err = parse_records("{\"key\":\"a\"}\n{\"data\":{}}").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        let err = parse_records("{\"key\":\"a\"}\nnope").unwrap_err();
        assert!(err.starts_with("line 2: not JSON"), "{err}");
        let err = parse_records("{\"key\":\"a\",\"value\":1}").unwrap_err();
        assert!(err.contains("\"value\""), "{err}");
    }
}
