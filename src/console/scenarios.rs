//! The scenario pages: the list, one scenario drawn as a graph with its actions, and the
//! actions' forms (activate, deactivate, run now, delete), which call the same catalog and
//! queue operations as the JSON API.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::error::ConsoleError;
use super::executions::*;
use super::extract::ConsoleForm;
use super::graph::{self, Runs, app_of};
use super::session::{Session, found, see_other};
use super::widgets::*;
use super::{layout, page};
use crate::api::AppState;
use crate::scenario::Scenario;
use crate::store::{ExecutionFilter, StoreError};

/// `GET /`: the scenarios when signed in, else the sign-in page.
pub async fn home(session: Result<Session, Response>) -> Response {
    match session {
        Ok(_) => found("/scenarios"),
        Err(_) => found("/login"),
    }
}

/// Midnight (UTC) today, in ms.
fn start_of_today() -> i64 {
    let now = chrono::Utc::now();
    now.date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp_millis())
}

/// How a scenario starts, in words: its schedule, or its hook URL.
fn trigger_text(state: &AppState, scenario: &Scenario, hooks: &[(u32, String)]) -> Markup {
    if let Some((_, hook)) = hooks.first() {
        let url = state
            .catalog()
            .hook_url(hook)
            .unwrap_or_else(|| format!("/hooks/{hook}"));
        // The secret part of the URL is long: the list shows its start, the title all of it.
        let short = match url.rsplit_once('/') {
            Some((head, id)) if id.len() > 12 => format!("{head}/{}…", &id[..10]),
            _ => url.clone(),
        };
        return html! { code.hook title=(url) { (short) } };
    }
    match &scenario.scheduling {
        Some(s) => {
            let v = serde_json::to_value(s).unwrap_or(Value::Null);
            let kind = v.get("type").and_then(Value::as_str).unwrap_or("schedule");
            let text = match (kind, v.get("interval"), v.get("time"), v.get("cron")) {
                ("indefinitely", Some(i), _, _) => format!("every {i} s"),
                (_, _, _, Some(Value::String(c))) => format!("cron {c}"),
                (k, _, Some(Value::String(t)), _) => format!("{k} at {t}"),
                (k, _, _, _) => k.replace('-', " "),
            };
            html! { span { (text) } }
        }
        None => html! { span.muted { "on demand" } },
    }
}

pub async fn scenarios(State(state): State<AppState>, session: Session) -> Response {
    let store = state.store();
    let rows = match store.list_scenarios().await {
        Ok(rows) => rows,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let activity = match store.scenario_activity(start_of_today()).await {
        Ok(a) => a,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let hooks = match store.attached_hooks().await {
        Ok(h) => h,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let compiled = state.catalog().compiled(&row.id, row.version).await;
        let its_hooks: Vec<(u32, String)> = hooks.get(&row.id).cloned().unwrap_or_default();
        let trigger = match &compiled {
            Ok(Ok(s)) => trigger_text(&state, s, &its_hooks),
            _ => html! { span.problem { "does not compile" } },
        };
        items.push((
            row,
            trigger,
            activity.get(&row.id).cloned().unwrap_or_default(),
        ));
    }
    let body = html! {
        div.head {
            h1 { "Scenarios" }
            a.button.primary href="/scenarios/new" { "Import a blueprint" }
        }
        @if items.is_empty() {
            section.card.empty { p { "No scenarios yet. " a href="/scenarios/new" { "Import a blueprint" } " to start." } }
        } @else {
            table.list #scenarios {
                thead { tr { th { "Name" } th { "Active" } th { "Starts" } th { "Last run" } th.num { "Runs today" } } }
                tbody {
                    @for (row, trigger, act) in &items {
                        tr data-scenario=(row.id) {
                            td { a href=(format!("/scenarios/{}", row.id)) { (row.name) } span.muted { " v" (row.version) } }
                            td {
                                @if row.active { span.pill.on { "active" } } @else { span.pill.off { "inactive" } }
                                @if row.deactivated_reason.is_some() { " " span.problem title=[row.deactivated_reason.as_deref()] { "after errors" } }
                            }
                            td { (trigger) }
                            td { @match &act.last_status { Some(s) => (status_badge(s)), None => span.muted { "never" } } }
                            td.num { (act.runs_since) }
                        }
                    }
                }
            }
        }
    };
    page(
        StatusCode::OK,
        layout("Scenarios", Some(&session.csrf), body),
    )
}

/// The stored blueprint of a scenario version, parsed (`Null` when unreadable).
pub(super) async fn blueprint_value(
    state: &AppState,
    id: &str,
    version: u32,
) -> Result<Value, StoreError> {
    let stored = state.store().get_version(id, version).await?;
    Ok(serde_json::from_str(&stored.blueprint).unwrap_or(Value::Null))
}

/// The errors of one execution by module: `(kind, message)` of the error that ended it and of
/// each bundle it parked.
pub(super) type ModuleErrors = HashMap<u32, Vec<(String, String)>>;

/// The side panel of each module: its parameters and mapper as pretty JSON (hidden until its
/// node is clicked), and with an execution, its figures and a place for its bundles.
pub(super) fn module_details(
    scenario: &Scenario,
    raw: &graph::Raw<'_>,
    execution: Option<(&str, &Runs, &ModuleErrors)>,
) -> Markup {
    html! {
        @for node in &scenario.nodes {
            @let module = raw.get(&node.id);
            section.detail id=(format!("detail-{}", node.id)) data-detail=(node.id) hidden {
                h2 { (node.label.clone().unwrap_or_else(|| node.module.clone())) }
                p.muted { code { (node.module) } " · module " (node.id) " · app " (app_of(&node.module)) }
                @if let Some((execution_id, runs, errors)) = execution {
                    @let run = runs.get(&node.id).cloned().unwrap_or_default();
                    p.figures {
                        span { "Operations: " strong { (run.operations) } }
                        @if run.errors > 0 { span.error-text { " · errors: " strong { (run.errors) } } }
                    }
                    @for (kind, message) in errors.get(&node.id).map(Vec::as_slice).unwrap_or(&[]) {
                        div.module-error role="alert" { strong { (kind) } ": " (message) }
                    }
                    @let mapper = module.and_then(|m| m.get("mapper")).unwrap_or(&Value::Null);
                    @let mapped = !mapper_fields(mapper).is_empty();
                    h3 { "Input" }
                    div.bundles.inputs data-src=(format!("/executions/{execution_id}/bundles?module={}&bundles=input{}", node.id, if mapped { "&mapped=true" } else { "" })) {
                        p.muted { "Loading…" }
                    }
                    h3 { "Output bundles" }
                    div.bundles.outputs data-src=(format!("/executions/{execution_id}/bundles?module={}", node.id)) {
                        p.muted { "Loading…" }
                    }
                }
                @if let Some(filter) = module.and_then(|m| m.get("filter")).filter(|f| !f.is_null()) {
                    h3 { "Filter on the link into it" }
                    pre.json { (pretty(filter)) }
                }
                h3 { "Parameters" }
                pre.json { (pretty(module.and_then(|m| m.get("parameters")).unwrap_or(&json!({})))) }
                h3 { "Mapper" }
                @let mapper = module.and_then(|m| m.get("mapper")).unwrap_or(&Value::Null);
                @match execution {
                    Some((_, _, errors)) if !mapper_fields(mapper).is_empty() => {
                        (mapper_table(mapper, errors.get(&node.id).map(Vec::as_slice).unwrap_or(&[])))
                    }
                    _ => { pre.json { (pretty(module.and_then(|m| m.get("mapper")).unwrap_or(&json!({})))) } }
                }
            }
        }
    }
}

/// A mapper's fields, leaf by leaf: `(path below mapper, expression or JSON text)`, e.g.
/// `("variables[0].value", "{{1.x}}")`, in the blueprint's order.
fn mapper_fields(mapper: &Value) -> Vec<(String, String)> {
    fn walk(value: &Value, path: String, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(fields) => {
                for (key, v) in fields {
                    let path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    walk(v, path, out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, format!("{path}[{i}]"), out);
                }
            }
            Value::String(text) => out.push((path, text.clone())),
            Value::Null => {}
            other => out.push((path, other.to_string())),
        }
    }
    let mut out = Vec::new();
    walk(mapper, String::new(), &mut out);
    out
}

/// The mapper field an evaluation error names, and the column in its text (1-based): the
/// engine's messages start `mapper.FIELD: column N: …`.
fn failed_field(message: &str) -> Option<(&str, usize)> {
    let rest = message.strip_prefix("mapper.")?;
    let (field, rest) = rest.split_once(": column ")?;
    let column = rest.split_once(':')?.0.parse().ok()?;
    Some((field, column))
}

/// An executed module's mapper as a table of fields and expressions; the field an error of
/// the module names is marked, with the failing part of its expression highlighted from the
/// column the error gives.
fn mapper_table(mapper: &Value, errors: &[(String, String)]) -> Markup {
    let failed: Vec<(&str, usize)> = errors.iter().filter_map(|(_, m)| failed_field(m)).collect();
    html! {
        table.list.mapper {
            thead { tr { th { "Field" } th { "Expression" } } }
            tbody {
                @for (field, text) in mapper_fields(mapper) {
                    @let column = failed.iter().find(|(f, _)| *f == field).map(|(_, c)| *c);
                    tr.failed[column.is_some()] data-field=(field) {
                        td { code { (field) } }
                        td {
                            @match column.map(|c| text.char_indices().nth(c.saturating_sub(1)).map_or(text.len(), |(i, _)| i)) {
                                Some(at) => {
                                    code.expression { (&text[..at]) mark { (&text[at..]) } }
                                    div.error-text { "failed at column " (column.unwrap_or(0)) " (see the error above)" }
                                }
                                None => { code.expression { (text) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn scenario(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let row = match state.store().get_scenario(&id).await {
        Ok(r) => r,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let blueprint = match blueprint_value(&state, &id, row.version).await {
        Ok(b) => b,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let compiled = match state.catalog().compiled(&id, row.version).await {
        Ok(c) => c,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    // What the import showed before storing stays in view until a new version fixes it.
    let warnings = match &compiled {
        Ok(scenario) => match state.catalog().warnings(scenario).await {
            Ok(w) => w,
            Err(e) => return ConsoleError::from(e).into_response(),
        },
        Err(_) => Vec::new(),
    };
    let hooks = state.store().hooks_for(&id).await.unwrap_or_default();
    // A mailhook's hook also has an e-mail address.
    let addresses: Vec<String> = state
        .catalog()
        .hooks(&id)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|h| h.address)
        .collect();
    let recent = state
        .store()
        .list_executions(&ExecutionFilter {
            scenario_id: Some(id.clone()),
            limit: 10,
            ..ExecutionFilter::default()
        })
        .await
        .unwrap_or_default();
    let raw = graph::raw_modules(&blueprint);
    let body = html! {
        div.head {
            div {
                h1 { (row.name) }
                p.muted {
                    "version " (row.version) " · "
                    @if row.active { span.pill.on { "active" } } @else { span.pill.off { "inactive" } }
                    @if let Some(reason) = &row.deactivated_reason {
                        " · " span.problem role="status" { (reason) }
                    }
                    @for hook in hooks.iter().filter(|h| h.attached) {
                        " · hook " code.hook { (state.catalog().hook_url(&hook.id).unwrap_or_else(|| format!("/hooks/{}", hook.id))) }
                    }
                    @for address in &addresses {
                        " · mail to " code.hook.mail { (address) }
                    }
                }
            }
            div.actions {
                @if row.active {
                    (action_button(&session, &format!("/scenarios/{id}/deactivate"), "Deactivate", "secondary"))
                } @else {
                    (action_button(&session, &format!("/scenarios/{id}/activate"), "Activate", "secondary"))
                }
                form.inline.run method="post" action=(format!("/scenarios/{id}/run")) {
                    (csrf_field(&session))
                    input.payload type="text" name="payload" value="{}" aria-label="Input bundle (JSON)" title="The trigger's input bundle (JSON); empty for none";
                    button.primary type="submit" { "Run now" }
                }
                a.button.secondary href=(format!("/scenarios/{id}/executions")) { "Executions" }
                a.button.secondary href=(format!("/scenarios/{id}/versions")) { "Versions" }
                form.inline.confirm method="post" action=(format!("/scenarios/{id}/delete")) data-confirm="Delete this scenario and its history?" {
                    (csrf_field(&session))
                    button.danger type="submit" { "Delete" }
                }
            }
        }
        @if !warnings.is_empty() {
            section.card.warning-card #warnings role="status" {
                h2 { (plural(warnings.len() as u64, "warning")) }
                (problems_list(&warnings))
            }
        }
        @match &compiled {
            Ok(scenario) => {
                div.workspace {
                    div.canvas { (graph::svg(scenario, &raw, None)) }
                    aside.panel {
                        p.hint #hint { "Click a module to see its parameters and mapper; click a filter to see its conditions." }
                        section.detail #filter-detail hidden { h2 { "Filter" } pre.json {} }
                        (module_details(scenario, &raw, None))
                    }
                }
            }
            Err(e) => {
                section.card {
                    h2 { "This version does not compile" }
                    (problems_list(&e.problems()))
                }
            }
        }
        h2 { "Latest executions" }
        (executions_table(&recent))
    };
    page(StatusCode::OK, layout(&row.name, Some(&session.csrf), body))
}

pub async fn activate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _form: ConsoleForm,
) -> Response {
    set_active(state, id, true).await
}

pub async fn deactivate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _form: ConsoleForm,
) -> Response {
    set_active(state, id, false).await
}

async fn set_active(state: AppState, id: String, active: bool) -> Response {
    match state.catalog().set_active(&id, active).await {
        Ok(_) => {
            state.scenarios_changed();
            see_other(&format!("/scenarios/{id}"))
        }
        Err(e) => ConsoleError::from(e).into_response(),
    }
}

pub async fn run_now(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ConsoleForm { fields: form, .. }: ConsoleForm,
) -> Response {
    // The trigger's input bundle (JSON), as the API's body; empty for none.
    let text = form.get("payload").map(|p| p.trim()).unwrap_or("");
    let payload: Option<Value> = if text.is_empty() {
        None
    } else {
        match serde_json::from_str(text) {
            Ok(v) => Some(v),
            Err(e) => {
                return ConsoleError::refused(
                    "Not run",
                    format!("The input bundle is not JSON (column {}): {e}", e.column()),
                )
                .into_response();
            }
        }
    };
    match state.queue().run_now(&id, payload.as_ref()).await {
        Ok(execution_id) => see_other(&format!("/executions/{execution_id}")),
        Err(e) => ConsoleError::from(e).into_response(),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _form: ConsoleForm,
) -> Response {
    match state.catalog().delete(&id).await {
        Ok(()) => {
            state.scenarios_changed();
            see_other("/scenarios")
        }
        Err(e) => ConsoleError::from(e).into_response(),
    }
}
