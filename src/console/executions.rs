//! Executions: a scenario's list (live over server-sent events), the execution inspector and
//! its pages of bundles, and the retry and resolve forms, which call the same queue
//! operations as the JSON API.

use std::convert::Infallible;
use std::str::FromStr;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::error::ConsoleError;
use super::extract::{ConsoleForm, ConsoleQuery};
use super::graph::{self, NodeRun, Runs};
use super::scenarios::*;
use super::session::{Session, see_other};
use super::widgets::*;
use super::{layout, page};
use crate::api::{AppState, Bundles, PageRequest, module_page, rfc3339};
use crate::store::{ExecutionFilter, ExecutionStatus, ExecutionSummary, StoreError};

/// Bundles shown per page in the inspector.
const BUNDLE_PAGE: u32 = 20;

/// Executions listed per page.
const EXECUTION_PAGE: u32 = 50;

fn duration_text(e: &ExecutionSummary) -> String {
    match e.finished_at.zip(e.started_at) {
        Some((f, s)) if f - s >= 1000 => format!("{:.1} s", (f - s) as f64 / 1000.0),
        Some((f, s)) => format!("{} ms", f - s),
        None => "—".to_string(),
    }
}

fn execution_rows(rows: &[ExecutionSummary]) -> Markup {
    html! {
        @for e in rows {
            tr data-execution=(e.id) {
                td { a href=(format!("/executions/{}", e.id)) { code { (e.id.get(..12).unwrap_or(&e.id)) "…" } } }
                td { (status_badge(e.status.as_str())) }
                td.num { (e.operations) }
                td.num { (duration_text(e)) }
                td { time { (rfc3339(e.started_at.unwrap_or(e.created_at))) } }
                td.muted { (e.source.as_str()) }
            }
        }
        @if rows.is_empty() { tr { td colspan="6" .muted { "No executions." } } }
    }
}

pub(super) fn executions_table(rows: &[ExecutionSummary]) -> Markup {
    html! {
        table.list.executions {
            thead { tr { th { "Execution" } th { "Status" } th.num { "Operations" } th.num { "Duration" } th { "Started" } th { "Source" } } }
            tbody { (execution_rows(rows)) }
        }
    }
}

#[derive(Deserialize)]
pub struct StatusQuery {
    status: Option<String>,
}

fn parse_status(status: &Option<String>) -> Result<Option<ExecutionStatus>, String> {
    match status.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => ExecutionStatus::from_str(s).map(Some).map_err(|_| {
            format!(
                "unknown status \"{s}\": expected queued, running, success, error or incomplete"
            )
        }),
    }
}

async fn execution_list(
    state: &AppState,
    id: &str,
    status: Option<ExecutionStatus>,
) -> Result<Vec<ExecutionSummary>, StoreError> {
    state
        .store()
        .list_executions(&ExecutionFilter {
            scenario_id: Some(id.to_string()),
            status,
            limit: EXECUTION_PAGE,
            before: None,
        })
        .await
}

/// `GET /scenarios/{id}/executions[?status=…]`: the latest executions, updated live.
pub async fn executions(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    ConsoleQuery(q): ConsoleQuery<StatusQuery>,
) -> Response {
    let status = match parse_status(&q.status) {
        Ok(s) => s,
        Err(m) => return ConsoleError::bad_request("Bad filter", m).into_response(),
    };
    let row = match state.store().get_scenario(&id).await {
        Ok(r) => r,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let rows = match execution_list(&state, &id, status).await {
        Ok(r) => r,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let selected = status.map(|s| s.as_str()).unwrap_or("");
    let events = format!(
        "/scenarios/{id}/executions/events{}",
        if selected.is_empty() {
            String::new()
        } else {
            format!("?status={selected}")
        }
    );
    let body = html! {
        div.head {
            h1 { "Executions of " a href=(format!("/scenarios/{id}")) { (row.name) } }
            form.filters method="get" {
                label for="status" { "Status" }
                select #status name="status" data-autosubmit {
                    @for s in ["", "queued", "running", "success", "error", "incomplete"] {
                        option value=(s) selected[s == selected] { @if s.is_empty() { "any" } @else { (s) } }
                    }
                }
                noscript { button type="submit" { "Filter" } }
            }
        }
        p.muted.live { span.dot {} " Updates live as executions arrive." }
        table.list.executions {
            thead { tr { th { "Execution" } th { "Status" } th.num { "Operations" } th.num { "Duration" } th { "Started" } th { "Source" } } }
            tbody #execution-rows data-events=(events) { (execution_rows(&rows)) }
        }
    };
    page(
        StatusCode::OK,
        layout("Executions", Some(&session.csrf), body),
    )
}

/// `GET /scenarios/{id}/executions/events`: server-sent events, one `rows` event (the table's
/// body) whenever the list changes, polled every second. A stream ends after
/// [`EVENTS_LIFETIME`] (the browser reconnects at once), so an open page never holds a
/// shutting-down server for long.
pub async fn execution_events(
    State(state): State<AppState>,
    _session: Session,
    Path(id): Path<String>,
    ConsoleQuery(q): ConsoleQuery<StatusQuery>,
) -> Response {
    let status = match parse_status(&q.status) {
        Ok(s) => s,
        Err(m) => return ConsoleError::bad_request("Bad filter", m).into_response(),
    };
    let stream = rows_stream(state, id, status);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// How long one events stream lives.
const EVENTS_LIFETIME: Duration = Duration::from_secs(20);

fn rows_stream(
    state: AppState,
    id: String,
    status: Option<ExecutionStatus>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let until = tokio::time::Instant::now() + EVENTS_LIFETIME;
    futures::stream::unfold(
        (state, id, status, None::<String>),
        move |(state, id, status, mut last)| async move {
            loop {
                if tokio::time::Instant::now() >= until {
                    return None;
                }
                if let Ok(rows) = execution_list(&state, &id, status).await {
                    let html = execution_rows(&rows).into_string();
                    if last.as_deref() != Some(html.as_str()) {
                        let event = Event::default()
                            .event("rows")
                            .retry(Duration::from_millis(500))
                            .data(&html);
                        return Some((Ok(event), (state, id, status, Some(html))));
                    }
                    last = Some(html);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        },
    )
}

pub async fn execution(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let store = state.store();
    let e = match store.get_execution(&id).await {
        Ok(e) => e,
        Err(err) => return ConsoleError::from(err).into_response(),
    };
    let summaries = match store.module_summaries(&id).await {
        Ok(s) => s,
        Err(err) => return ConsoleError::from(err).into_response(),
    };
    let runs: Runs = summaries
        .iter()
        .map(|m| {
            (
                m.module,
                NodeRun {
                    operations: m.runs.unwrap_or(m.stored),
                    errors: m.errors.unwrap_or(0),
                },
            )
        })
        .collect();
    let scenario_name = store
        .get_scenario(&e.scenario_id)
        .await
        .map(|r| r.name)
        .unwrap_or_else(|_| e.scenario_id.clone());
    let blueprint = blueprint_value(&state, &e.scenario_id, e.version)
        .await
        .unwrap_or(Value::Null);
    let compiled = state.catalog().compiled(&e.scenario_id, e.version).await;
    let incomplete: Vec<_> = store
        .list_incomplete(&e.scenario_id, None, 100)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.execution_id == e.id)
        .collect();
    let response = e.report.as_ref().and_then(|r| r.get("response")).cloned();
    let outputs = e.report.as_ref().and_then(|r| r.get("outputs")).cloned();
    // Sub-scenario calls, both ways: who called this execution, and whom it called.
    let links = store.execution_links(&e.id).await.unwrap_or_default();
    let mut errors = ModuleErrors::new();
    let mut runs = runs;
    let error_docs = e
        .error
        .iter()
        .chain(incomplete.iter().filter_map(|i| i.error.as_ref()));
    for err in error_docs {
        let Some(module) = err
            .get("module")
            .and_then(Value::as_u64)
            .and_then(|m| u32::try_from(m).ok())
        else {
            continue;
        };
        let text = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        errors
            .entry(module)
            .or_default()
            .push((text("name"), text("message")));
        let run = runs.entry(module).or_default();
        run.errors = run.errors.max(1);
    }
    let raw = graph::raw_modules(&blueprint);
    let error_kind = e
        .error
        .as_ref()
        .and_then(|err| err.get("name"))
        .and_then(Value::as_str);
    let error_message = e
        .error
        .as_ref()
        .and_then(|err| err.get("message"))
        .and_then(Value::as_str);
    let body = html! {
        div.head {
            div {
                h1 { "Execution " code { (e.id.get(..12).unwrap_or(&e.id)) "…" } }
                p.muted {
                    "of " a href=(format!("/scenarios/{}", e.scenario_id)) { (scenario_name) } " v" (e.version) " · "
                    (status_badge(e.status.as_str())) " · " (e.operations) " operation" @if e.operations != 1 { "s" } " · " (e.cycles) " cycle" @if e.cycles != 1 { "s" } " · started "
                    (rfc3339(e.started_at.unwrap_or(e.created_at)))
                }
            }
            div.actions {
                @if e.status.is_terminal() {
                    (action_button(&session, &format!("/executions/{id}/retry"), "Run again", "secondary"))
                }
                a.button.secondary href=(format!("/scenarios/{}/executions", e.scenario_id)) { "All executions" }
            }
        }
        @if let Some(err) = &e.error {
            section.card.error-card role="alert" {
                h2 { "Error" @if let Some(kind) = error_kind { ": " span.kind { (kind) } } }
                @if let Some(message) = error_message { p { (message) } }
                details { summary { "Details" } pre.json { (pretty(err)) } }
            }
        }
        @if let Some(parent) = &links.called_by {
            section.card #called-by {
                h2 { "Called by" }
                p {
                    "Module " (parent.module_id.map(|m| m.to_string()).unwrap_or_default()) " of execution "
                    a href=(format!("/executions/{}", parent.execution_id)) { code { (parent.execution_id.get(..12).unwrap_or(&parent.execution_id)) "…" } }
                    " " (status_badge(parent.status.as_str()))
                }
            }
        }
        @if !links.called.is_empty() {
            section.card #called {
                h2 { "Called scenarios" }
                table.list {
                    thead { tr { th { "Execution" } th { "Scenario" } th { "By module" } th { "Status" } } }
                    tbody {
                        @for call in &links.called {
                            tr {
                                td { a href=(format!("/executions/{}", call.execution_id)) { code { (call.execution_id.get(..12).unwrap_or(&call.execution_id)) "…" } } }
                                td { a href=(format!("/scenarios/{}", call.scenario_id)) { (call.scenario_id) } }
                                td { (call.module_id.map(|m| m.to_string()).unwrap_or_default()) }
                                td { (status_badge(call.status.as_str())) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(outputs) = &outputs {
            section.card #outputs {
                h2 { "Outputs" }
                pre.json { (pretty(outputs)) }
            }
        }
        @if !incomplete.is_empty() {
            section.card #incomplete {
                h2 { "Incomplete executions" }
                table.list {
                    thead { tr { th { "Parked at module" } th { "Error" } th { "Status" } th { "Attempts" } th {} } }
                    tbody {
                        @for i in &incomplete {
                            tr data-incomplete=(i.id) {
                                td { (i.module_id) }
                                td { (i.error.as_ref().and_then(|v| v.get("message")).and_then(Value::as_str).unwrap_or("")) }
                                td { (status_badge(i.status.as_str())) }
                                td.num { (i.attempts) }
                                td {
                                    @if i.status.as_str() == "pending" {
                                        (action_button(&session, &format!("/incomplete/{}/retry", i.id), "Retry", "primary"))
                                        (action_button(&session, &format!("/incomplete/{}/resolve", i.id), "Resolve", "secondary"))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(response) = &response {
            section.card {
                h2 { "Webhook response" }
                pre.json #webhook-response { (pretty(response)) }
            }
        }
        @match &compiled {
            Ok(Ok(scenario)) => {
                div.workspace {
                    div.canvas { (graph::svg(scenario, &raw, Some(&runs))) }
                    aside.panel {
                        p.hint #hint { "Click a module to see its input and the bundles it produced." }
                        section.detail #filter-detail hidden { h2 { "Filter" } pre.json {} }
                        (module_details(scenario, &raw, Some((&id, &runs, &errors))))
                    }
                }
            }
            _ => { p.problem { "The scenario version this execution ran no longer compiles; its graph cannot be drawn." } }
        }
    };
    page(
        StatusCode::OK,
        layout("Execution", Some(&session.csrf), body),
    )
}

#[derive(Deserialize)]
pub struct BundlesQuery {
    module: u32,
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    bundles: Bundles,
    /// The module's mapper has fields (so no input means its evaluation failed).
    #[serde(default)]
    mapped: bool,
}

/// `GET /executions/{id}/bundles?module=M&offset=O[&bundles=input]`: one page of a module's
/// output bundles (or of its operations' inputs), as an HTML fragment for the inspector (a
/// "more" button fetches the next page).
pub async fn bundles(
    State(state): State<AppState>,
    _session: Session,
    Path(id): Path<String>,
    ConsoleQuery(q): ConsoleQuery<BundlesQuery>,
) -> Response {
    let e = match state.store().get_execution(&id).await {
        Ok(e) => e,
        Err(err) => return ConsoleError::from(err).into_response(),
    };
    let request = PageRequest {
        module: q.module,
        offset: q.offset,
        limit: BUNDLE_PAGE,
        bundles: q.bundles,
    };
    let found = match module_page(state.store(), &e, request).await {
        Ok(p) => p,
        Err(err) if err.is_not_found() => {
            return html! { p.muted { "This module did not run in this execution." } }
                .into_response();
        }
        Err(err) => return ConsoleError::from(err).into_response(),
    };
    let total = found.get("total").and_then(Value::as_u64).unwrap_or(0);
    let next = found.get("next").and_then(Value::as_u64);
    let mut items = found
        .get("bundles")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // A file shows as its summary and a download link, never as its bytes.
    for item in &mut items {
        crate::api::binaries::annotate(item, "/binaries");
    }
    let key = q.bundles.key();
    let (one, many) = match q.bundles {
        Bundles::Input => ("Operation", "operation input"),
        Bundles::Output => ("Bundle", "bundle"),
    };
    html! {
        @if q.offset == 0 {
            @if total == 0 && q.bundles == Bundles::Input && q.mapped {
                p.muted { "No input stored: the module failed before its mapper was evaluated in full (see its error and the marked field of its mapper)." }
            } @else if total == 0 && q.bundles == Bundles::Input {
                p.muted { "No input stored: the module maps no fields." }
            } @else {
                p.muted { (total) " " (many) @if total != 1 { "s" } " stored" }
            }
        }
        @for (k, b) in items.iter().enumerate() {
            details.bundle open[q.offset == 0 && k == 0] {
                summary { (one) " " (q.offset + k as u64 + 1) }
                pre class=(format!("json {key}")) { (pretty(b.get(key).unwrap_or(&Value::Null))) }
                (files(b.get(key).unwrap_or(&Value::Null)))
            }
        }
        @if let Some(next) = next {
            button.more.secondary type="button" data-src=(format!("/executions/{id}/bundles?module={}&offset={next}&bundles={key}", q.module)) { "Show more" }
        }
    }
    .into_response()
}

/// The files in a bundle, each its summary as a download link.
fn files(bundle: &Value) -> Markup {
    let found = crate::module::binary::handles(bundle);
    html! {
        @if !found.is_empty() {
            ul.files {
                @for file in &found {
                    li {
                        a href=(crate::api::binaries::link("/binaries", file)) download {
                            (file.summary())
                        }
                        @if !file.file_name.is_empty() { " " span.muted { (file.file_name) } }
                    }
                }
            }
        }
    }
}

/// `GET /binaries/{id}`: a file of the history, downloaded under the console's session.
pub async fn download(
    _session: Session,
    Path(id): Path<String>,
    ConsoleQuery(q): ConsoleQuery<crate::api::binaries::DownloadQuery>,
) -> Response {
    match crate::api::binaries::download(&id, q).await {
        Ok(response) => response,
        Err(_) => ConsoleError::NotFound(format!("no stored file {id:?}")).into_response(),
    }
}

/// `POST /executions/{id}/retry`: the new execution's page.
pub async fn retry_execution(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _form: ConsoleForm,
) -> Result<Response, ConsoleError> {
    let e = state.store().get_execution(&id).await?;
    let new = crate::queue::retry::rerun(state.queue(), &e).await?;
    Ok(see_other(&format!("/executions/{new}")))
}

/// `POST /incomplete/{id}/retry`: the resumed execution's page.
pub async fn retry_incomplete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _form: ConsoleForm,
) -> Result<Response, ConsoleError> {
    let i = state.store().get_incomplete(&id).await?;
    let new = crate::queue::retry::resume(state.queue(), &i).await?;
    Ok(see_other(&format!("/executions/{new}")))
}

/// `POST /incomplete/{id}/resolve`: back to the execution it came from.
pub async fn resolve_incomplete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _form: ConsoleForm,
) -> Result<Response, ConsoleError> {
    let i = state.store().get_incomplete(&id).await?;
    state.store().resolve_incomplete(&id).await?;
    Ok(see_other(&format!("/executions/{}", i.execution_id)))
}
