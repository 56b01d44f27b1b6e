//! The console's pages and forms: the scenario list, a scenario drawn as a graph with its
//! actions, import with every validation problem at its JSON path, versions and their diff,
//! executions (live over server-sent events) and the execution inspector, and the connect
//! page. Each handler translates HTTP to the same catalog, store, queue and vault calls the
//! JSON API makes; every form is checked against the session's CSRF token first.

use std::collections::HashMap;
use std::convert::Infallible;
use std::str::FromStr;
use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::graph::{self, NodeRun, Runs, app_of};
use super::session::{Session, found, see_other};
use super::{layout, page};
use crate::api::{
    AppState, Bundles, PageRequest, connection_json, integrations_json, module_page, rfc3339,
};
use crate::catalog::CatalogError;
use crate::connections::{ConnectionError, NewConnectionInput};
use crate::queue::QueueError;
use crate::scenario::Scenario;
use crate::store::{ExecutionFilter, ExecutionStatus, ExecutionSummary, StoreError};

/// Bundles shown per page in the inspector.
const BUNDLE_PAGE: u32 = 20;
/// Executions listed per page.
const EXECUTION_PAGE: u32 = 50;

type Form_ = HashMap<String, String>;

/// An error page for a failed store or catalog call: 404 for what does not exist, 422 for a
/// refused input, 503 otherwise (the detail goes to the log, not the page).
fn failure(session: &Session, status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        layout(
            title,
            Some(&session.csrf),
            html! { section.card { h1 { (title) } p.problem role="alert" { (message) } p { a href="/scenarios" { "Back to the scenarios" } } } },
        ),
    )
}

fn store_failure(session: &Session, e: StoreError) -> Response {
    if e.is_not_found() {
        return failure(session, StatusCode::NOT_FOUND, "Not found", &e.to_string());
    }
    if matches!(e, StoreError::InvalidInput { .. }) {
        return failure(
            session,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Refused",
            &e.to_string(),
        );
    }
    tracing::error!(error = %e, "a console page's store call failed");
    failure(
        session,
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        "The store could not answer; see the server's log.",
    )
}

fn catalog_failure(session: &Session, e: CatalogError) -> Response {
    match e {
        CatalogError::Store(e) => store_failure(session, e),
        other => failure(
            session,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Refused",
            &other.to_string(),
        ),
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn status_badge(status: &str) -> Markup {
    html! { span class=(format!("status status-{status}")) { (status) } }
}

fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A one-button form posting to `action`.
fn action_button(session: &Session, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf_field(session))
            button class=(class) type="submit" { (label) }
        }
    }
}

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
        Err(e) => return store_failure(&session, e),
    };
    let activity = match store.scenario_activity(start_of_today()).await {
        Ok(a) => a,
        Err(e) => return store_failure(&session, e),
    };
    let hooks = match store.attached_hooks().await {
        Ok(h) => h,
        Err(e) => return store_failure(&session, e),
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
                            td { @if row.active { span.pill.on { "active" } } @else { span.pill.off { "inactive" } } }
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
async fn blueprint_value(state: &AppState, id: &str, version: u32) -> Result<Value, StoreError> {
    let stored = state.store().get_version(id, version).await?;
    Ok(serde_json::from_str(&stored.blueprint).unwrap_or(Value::Null))
}

/// The side panel of each module: its parameters and mapper as pretty JSON (hidden until its
/// node is clicked), and with an execution, its figures and a place for its bundles.
/// The errors of one execution by module: `(kind, message)` of the error that ended it and of
/// each bundle it parked.
type ModuleErrors = HashMap<u32, Vec<(String, String)>>;

fn module_details(
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
                    h3 { "Input" }
                    div.bundles.inputs data-src=(format!("/executions/{execution_id}/bundles?module={}&bundles=input", node.id)) {
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
                pre.json { (pretty(module.and_then(|m| m.get("mapper")).unwrap_or(&json!({})))) }
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
        Err(e) => return store_failure(&session, e),
    };
    let blueprint = match blueprint_value(&state, &id, row.version).await {
        Ok(b) => b,
        Err(e) => return store_failure(&session, e),
    };
    let compiled = match state.catalog().compiled(&id, row.version).await {
        Ok(c) => c,
        Err(e) => return store_failure(&session, e),
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

fn problems_list(problems: &[crate::scenario::Problem]) -> Markup {
    html! {
        table.list.problems {
            thead { tr { th { "Where (JSON path)" } th { "Problem" } } }
            tbody {
                @for p in problems {
                    tr { td { code { @if p.path.is_empty() { "(document)" } @else { (p.path) } } } td { (p.message) } }
                }
            }
        }
    }
}

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

fn executions_table(rows: &[ExecutionSummary]) -> Markup {
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
    Query(q): Query<StatusQuery>,
) -> Response {
    let status = match parse_status(&q.status) {
        Ok(s) => s,
        Err(m) => return failure(&session, StatusCode::BAD_REQUEST, "Bad filter", &m),
    };
    let row = match state.store().get_scenario(&id).await {
        Ok(r) => r,
        Err(e) => return store_failure(&session, e),
    };
    let rows = match execution_list(&state, &id, status).await {
        Ok(r) => r,
        Err(e) => return store_failure(&session, e),
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
                select #status name="status" onchange="this.form.submit()" {
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
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<StatusQuery>,
) -> Response {
    let status = match parse_status(&q.status) {
        Ok(s) => s,
        Err(m) => return failure(&session, StatusCode::BAD_REQUEST, "Bad filter", &m),
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
        Err(err) => return store_failure(&session, err),
    };
    let summaries = match store.module_summaries(&id).await {
        Ok(s) => s,
        Err(err) => return store_failure(&session, err),
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
}

/// `GET /executions/{id}/bundles?module=M&offset=O[&bundles=input]`: one page of a module's
/// output bundles (or of its operations' inputs), as an HTML fragment for the inspector (a
/// "more" button fetches the next page).
pub async fn bundles(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<BundlesQuery>,
) -> Response {
    let e = match state.store().get_execution(&id).await {
        Ok(e) => e,
        Err(err) => return store_failure(&session, err),
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
        Err(err) => return store_failure(&session, err),
    };
    let total = found.get("total").and_then(Value::as_u64).unwrap_or(0);
    let next = found.get("next").and_then(Value::as_u64);
    let items = found
        .get("bundles")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let key = q.bundles.key();
    let (one, many) = match q.bundles {
        Bundles::Input => ("Operation", "operation input"),
        Bundles::Output => ("Bundle", "bundle"),
    };
    html! {
        @if q.offset == 0 {
            @if total == 0 && q.bundles == Bundles::Input {
                p.muted { "No input stored: the module maps no fields." }
            } @else {
                p.muted { (total) " " (many) @if total != 1 { "s" } " stored" }
            }
        }
        @for (k, b) in items.iter().enumerate() {
            details.bundle open[q.offset == 0 && k == 0] {
                summary { (one) " " (q.offset + k as u64 + 1) }
                pre class=(format!("json {key}")) { (pretty(b.get(key).unwrap_or(&Value::Null))) }
            }
        }
        @if let Some(next) = next {
            button.more.secondary type="button" data-src=(format!("/executions/{id}/bundles?module={}&offset={next}&bundles={key}", q.module)) { "Show more" }
        }
    }
    .into_response()
}

pub async fn activate(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<Form_>,
) -> Response {
    set_active(state, session, id, form, true).await
}

pub async fn deactivate(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<Form_>,
) -> Response {
    set_active(state, session, id, form, false).await
}

async fn set_active(
    state: AppState,
    session: Session,
    id: String,
    form: Form_,
    active: bool,
) -> Response {
    if let Some(refused) = session.refusal(&form) {
        return refused;
    }
    match state.catalog().set_active(&id, active).await {
        Ok(_) => {
            state.scenarios_changed();
            see_other(&format!("/scenarios/{id}"))
        }
        Err(e) => catalog_failure(&session, e),
    }
}

pub async fn run_now(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<Form_>,
) -> Response {
    if let Some(refused) = session.refusal(&form) {
        return refused;
    }
    // The trigger's input bundle (JSON), as the API's body; empty for none.
    let text = form.get("payload").map(|p| p.trim()).unwrap_or("");
    let payload: Option<Value> = if text.is_empty() {
        None
    } else {
        match serde_json::from_str(text) {
            Ok(v) => Some(v),
            Err(e) => {
                return failure(
                    &session,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Not run",
                    &format!("The input bundle is not JSON (column {}): {e}", e.column()),
                );
            }
        }
    };
    match state.queue().run_now(&id, payload.as_ref()).await {
        Ok(execution_id) => see_other(&format!("/executions/{execution_id}")),
        Err(QueueError::Store(e)) => store_failure(&session, e),
        Err(e) => failure(
            &session,
            StatusCode::SERVICE_UNAVAILABLE,
            "Not run",
            &e.to_string(),
        ),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<Form_>,
) -> Response {
    if let Some(refused) = session.refusal(&form) {
        return refused;
    }
    match state.catalog().delete(&id).await {
        Ok(()) => {
            state.scenarios_changed();
            see_other("/scenarios")
        }
        Err(e) => catalog_failure(&session, e),
    }
}

/// Where a retry leads: the new execution's page, or the reason there is none.
fn to_new_execution(session: &Session, queued: Result<String, QueueError>) -> Response {
    match queued {
        Ok(new) => see_other(&format!("/executions/{new}")),
        Err(err) => failure(
            session,
            StatusCode::SERVICE_UNAVAILABLE,
            "Not retried",
            &err.to_string(),
        ),
    }
}

pub async fn retry_execution(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<Form_>,
) -> Response {
    if let Some(refused) = session.refusal(&form) {
        return refused;
    }
    let e = match state.store().get_execution(&id).await {
        Ok(e) => e,
        Err(err) => return store_failure(&session, err),
    };
    let retried = crate::queue::retry::rerun(state.queue(), &e).await;
    to_new_execution(&session, retried)
}

pub async fn retry_incomplete(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<Form_>,
) -> Response {
    if let Some(refused) = session.refusal(&form) {
        return refused;
    }
    let i = match state.store().get_incomplete(&id).await {
        Ok(i) => i,
        Err(err) => return store_failure(&session, err),
    };
    let resumed = crate::queue::retry::resume(state.queue(), &i).await;
    to_new_execution(&session, resumed)
}

pub async fn resolve_incomplete(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<Form_>,
) -> Response {
    if let Some(refused) = session.refusal(&form) {
        return refused;
    }
    let i = match state.store().get_incomplete(&id).await {
        Ok(i) => i,
        Err(err) => return store_failure(&session, err),
    };
    match state.store().resolve_incomplete(&id).await {
        Ok(_) => see_other(&format!("/executions/{}", i.execution_id)),
        Err(err) => store_failure(&session, err),
    }
}

fn import_page(session: &Session, text: &str, problems: Option<Markup>) -> Markup {
    layout(
        "Import",
        Some(&session.csrf),
        html! {
            h1 { "Import a blueprint" }
            p.muted { "Paste a Make blueprint (the JSON of " em { "Export blueprint" } "). It is checked before it is stored; every problem is listed with its JSON path." }
            @if let Some(problems) = problems {
                section.card.error-card #problems role="alert" { h2 { "The blueprint was not imported" } (problems) }
            }
            form.stack method="post" action="/scenarios/new" {
                (csrf_field(session))
                label.upload { "Or upload a file: " input #blueprint-file type="file" accept=".json,application/json"; }
                label for="blueprint" { "Blueprint JSON" }
                textarea #blueprint name="blueprint" rows="18" spellcheck="false" required { (text) }
                div { button.primary type="submit" { "Import" } }
            }
        },
    )
}

pub async fn import_form(session: Session) -> Response {
    page(StatusCode::OK, import_page(&session, "", None))
}

pub async fn import(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<Form_>,
) -> Response {
    if let Some(refused) = session.refusal(&form) {
        return refused;
    }
    let text = form.get("blueprint").cloned().unwrap_or_default();
    match state.catalog().create(&text).await {
        Ok(stored) => see_other(&format!("/scenarios/{}", stored.id)),
        Err(CatalogError::Invalid(e)) => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            import_page(&session, &text, Some(problems_list(&e.problems()))),
        ),
        Err(e) => catalog_failure(&session, e),
    }
}

#[derive(Deserialize)]
pub struct VersionsQuery {
    a: Option<u32>,
    b: Option<u32>,
}

/// `GET /scenarios/{id}/versions[?a=&b=]`: the versions, and the diff of two (pretty-printed
/// JSON, line by line).
pub async fn versions(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<VersionsQuery>,
) -> Response {
    let row = match state.store().get_scenario(&id).await {
        Ok(r) => r,
        Err(e) => return store_failure(&session, e),
    };
    let versions = match state.store().list_versions(&id).await {
        Ok(v) => v,
        Err(e) => return store_failure(&session, e),
    };
    let b = q.b.unwrap_or(row.version);
    let a = q.a.unwrap_or(b.saturating_sub(1).max(1));
    let mut diff = None;
    if a != b || q.a.is_some() {
        let left = blueprint_value(&state, &id, a).await;
        let right = blueprint_value(&state, &id, b).await;
        match (left, right) {
            (Ok(l), Ok(r)) => diff = Some((pretty(&l), pretty(&r))),
            (Err(e), _) | (_, Err(e)) => return store_failure(&session, e),
        }
    }
    let body = html! {
        h1 { "Versions of " a href=(format!("/scenarios/{id}")) { (row.name) } }
        form.filters method="get" {
            label for="a" { "Compare" }
            select #a name="a" { @for v in &versions { option value=(v.version) selected[v.version == a] { "v" (v.version) } } }
            label for="b" { "with" }
            select #b name="b" { @for v in &versions { option value=(v.version) selected[v.version == b] { "v" (v.version) } } }
            button.secondary type="submit" { "Show the difference" }
        }
        table.list {
            thead { tr { th { "Version" } th { "Stored" } } }
            tbody { @for v in versions.iter().rev() { tr { td { "v" (v.version) @if v.version == row.version { " " span.pill.on { "current" } } } td { (rfc3339(v.created_at)) } } } }
        }
        @if let Some((left, right)) = &diff {
            h2 { "v" (a) " → v" (b) }
            (diff_view(left, right))
        }
    };
    page(
        StatusCode::OK,
        layout("Versions", Some(&session.csrf), body),
    )
}

fn diff_view(left: &str, right: &str) -> Markup {
    let diff = similar::TextDiff::from_lines(left, right);
    let changed = diff.ratio() < 1.0;
    html! {
        @if !changed { p.muted { "The two versions' blueprints are the same." } }
        pre.diff {
            @for group in diff.grouped_ops(3) {
                span.hunk { "@@\n" }
                @for op in group {
                    @for change in diff.iter_changes(&op) {
                        @let (class, sign) = match change.tag() {
                            similar::ChangeTag::Delete => ("del", "-"),
                            similar::ChangeTag::Insert => ("ins", "+"),
                            similar::ChangeTag::Equal => ("same", " "),
                        };
                        span class=(class) { (sign) " " (change.value()) }
                    }
                }
            }
        }
    }
}

/// The standard connection kinds of the built-in `http` app, as JSON Schemas for forms.
fn http_connection_types() -> Vec<(String, &'static str, Value)> {
    vec![
        (
            "API key".to_string(),
            "api_key",
            json!({"type": "object", "required": ["name", "key"], "properties": {
                "name": {"type": "string", "title": "Header or query parameter name"},
                "key": {"type": "string", "title": "API key", "format": "password"},
                "placement": {"type": "string", "title": "Placement", "enum": ["header", "query"]},
                "baseUrl": {"type": "string", "title": "Base URL", "format": "uri"}}}),
        ),
        (
            "Bearer token".to_string(),
            "bearer",
            json!({"type": "object", "required": ["token"], "properties": {
                "token": {"type": "string", "title": "Token", "format": "password"},
                "baseUrl": {"type": "string", "title": "Base URL", "format": "uri"}}}),
        ),
        (
            "Basic auth".to_string(),
            "basic",
            json!({"type": "object", "required": ["username"], "properties": {
                "username": {"type": "string", "title": "User name"},
                "password": {"type": "string", "title": "Password", "format": "password"},
                "baseUrl": {"type": "string", "title": "Base URL", "format": "uri"}}}),
        ),
    ]
}

/// The schema of the connection type a form was posted for, found as the vault finds the type:
/// one of the `http` app's standard kinds, else the app's type named `kind`, else its only type
/// of that kind.
fn posted_schema(vault: &crate::connections::Vault, app: &str, kind: &str) -> Option<Value> {
    if app == "http" {
        return http_connection_types()
            .into_iter()
            .find(|(_, k, _)| *k == kind)
            .map(|(_, _, schema)| schema);
    }
    let types: Vec<crate::connections::ConnectionTypeInfo> = vault
        .connection_types()
        .into_iter()
        .filter(|t| t.app == app)
        .collect();
    if let Some(named) = types.iter().find(|t| t.name == kind) {
        return Some(named.configuration.clone());
    }
    let mut of_kind = types.into_iter().filter(|t| t.kind == kind);
    match (of_kind.next(), of_kind.next()) {
        (Some(only), None) => Some(only.configuration),
        _ => None,
    }
}

/// Whether a field holds a secret: typed as a password, or named like one.
fn secret_field(name: &str, schema: &Value) -> bool {
    schema.get("format").and_then(Value::as_str) == Some("password")
        || schema.get("writeOnly").and_then(Value::as_bool) == Some(true)
        || [
            "key",
            "token",
            "password",
            "secret",
            "value",
            "apiKey",
            "clientSecret",
        ]
        .contains(&name)
}

/// How a schema property is entered in the form and sent to the vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    /// Text (a password input for a secret).
    Text,
    /// A whole number: `<input type=number step=1>`, sent as a JSON integer.
    Integer,
    /// `<input type=number step=any>`, sent as a JSON number.
    Number,
    /// A checkbox, sent as `true`/`false`.
    Boolean,
    /// An `enum`: a select, sent as the chosen value with its JSON type.
    Choice,
}

fn field_kind(field: &Value) -> FieldKind {
    if field.get("enum").is_some_and(Value::is_array) {
        return FieldKind::Choice;
    }
    // `"type": ["integer", "null"]` is an optional integer.
    let ty = match field.get("type") {
        Some(Value::String(ty)) => Some(ty.as_str()),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|ty| *ty != "null"),
        _ => None,
    };
    match ty {
        Some("integer") => FieldKind::Integer,
        Some("number") => FieldKind::Number,
        Some("boolean") => FieldKind::Boolean,
        _ => FieldKind::Text,
    }
}

/// An enum value or a default as the text a form shows and posts.
fn form_text(value: &Value) -> String {
    value
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| value.to_string())
}

/// The number `text` holds: an integer when it is whole, a fraction only when `whole` is
/// false; `None` when it is not a finite number (or not whole when `whole` is asked).
fn parse_number(text: &str, whole: bool) -> Option<serde_json::Number> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(i.into());
    }
    if let Ok(u) = text.parse::<u64>() {
        return Some(u.into());
    }
    let f = text.parse::<f64>().ok().filter(|f| f.is_finite())?;
    if whole {
        // `10.0` is whole; `10.5` is not. Beyond 2^53 an f64 no longer says which it is.
        return (f.fract() == 0.0 && f.abs() < 9.0e15).then(|| (f as i64).into());
    }
    serde_json::Number::from_f64(f)
}

/// The fields of a posted connection form — its `field.<name>` entries — typed by the connection
/// type's JSON Schema, as the vault and the app's schema expect them:
/// - `integer` / `number`: a JSON number (an integer refuses a fraction);
/// - `boolean`: a checkbox, `true` when posted checked; HTML leaves an unchecked box out of the
///   form, so a boolean of the schema that was not posted is `false`;
/// - `enum`: the chosen value with its JSON type;
/// - anything else: the text as typed.
///
/// An empty optional field is left out (the vault and the schema decide about required ones);
/// a `field.<name>` the schema does not have is refused. Every problem is reported at once,
/// each at `fields.<name>`, and a secret field's value is never quoted in one.
fn typed_fields(
    schema: &Value,
    form: &Form_,
) -> Result<Map<String, Value>, Vec<crate::connections::FieldProblem>> {
    let properties = schema.get("properties").and_then(Value::as_object);
    let mut fields = Map::new();
    let mut problems = Vec::new();
    for (name, field) in properties.into_iter().flatten() {
        let posted = form.get(&format!("field.{name}")).map(String::as_str);
        let kind = field_kind(field);
        let refuse = |expected: String, text: &str| {
            let got = if secret_field(name, field) {
                String::new()
            } else {
                format!(", got {text:?}")
            };
            crate::connections::FieldProblem {
                path: format!("fields.{name}"),
                reason: format!("expected {expected}{got}"),
            }
        };
        let value = match (kind, posted) {
            (FieldKind::Boolean, None) => Some(Value::Bool(false)),
            (_, None) => None,
            (FieldKind::Boolean, Some("true" | "on")) => Some(Value::Bool(true)),
            (FieldKind::Boolean, Some("false")) => Some(Value::Bool(false)),
            (FieldKind::Boolean, Some(text)) => {
                problems.push(refuse("true or false".into(), text));
                None
            }
            (FieldKind::Integer | FieldKind::Number, Some(text)) => {
                let text = text.trim();
                if text.is_empty() {
                    None
                } else {
                    let whole = kind == FieldKind::Integer;
                    match parse_number(text, whole) {
                        Some(n) => Some(Value::Number(n)),
                        None => {
                            let expected = if whole { "a whole number" } else { "a number" };
                            problems.push(refuse(expected.into(), text));
                            None
                        }
                    }
                }
            }
            (FieldKind::Choice | FieldKind::Text, Some("")) => None,
            (FieldKind::Choice, Some(text)) => {
                let options = field
                    .get("enum")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                match options.iter().find(|o| form_text(o) == text) {
                    Some(chosen) => Some(chosen.clone()),
                    None => {
                        let listed: Vec<String> = options
                            .iter()
                            .map(|o| format!("{:?}", form_text(o)))
                            .collect();
                        problems.push(refuse(format!("one of {}", listed.join(", ")), text));
                        None
                    }
                }
            }
            (FieldKind::Text, Some(text)) => Some(Value::String(text.to_string())),
        };
        if let Some(value) = value {
            fields.insert(name.clone(), value);
        }
    }
    let mut unknown: Vec<&str> = form
        .keys()
        .filter_map(|k| k.strip_prefix("field."))
        .filter(|name| !properties.is_some_and(|p| p.contains_key(*name)))
        .collect();
    unknown.sort_unstable();
    let known: Vec<&str> = properties
        .into_iter()
        .flat_map(|p| p.keys().map(String::as_str))
        .collect();
    for name in unknown {
        problems.push(crate::connections::FieldProblem {
            path: format!("fields.{name}"),
            reason: if known.is_empty() {
                "this connection type has no fields".to_string()
            } else {
                format!(
                    "not a field of this connection type (its fields: {})",
                    known.join(", ")
                )
            },
        });
    }
    if problems.is_empty() {
        Ok(fields)
    } else {
        Err(problems)
    }
}

/// One field of a connection form, from its schema property: a number input for numbers, a
/// checkbox for booleans, a select for an enum (with an empty "—" first choice when the field
/// is optional), a text input otherwise (a password input for a secret); its title and
/// description. Pre-filled with what `posted` holds when the form comes back refused, else with
/// the property's `default` — never for a secret field.
fn schema_field(name: &str, field: &Value, required: bool, posted: Option<&Form_>) -> Markup {
    let input_name = format!("field.{name}");
    let title = field.get("title").and_then(Value::as_str).unwrap_or(name);
    let description = field.get("description").and_then(Value::as_str);
    let secret = secret_field(name, field);
    let prefill: Option<String> = match posted {
        _ if secret => None,
        Some(form) => form.get(&input_name).filter(|v| !v.is_empty()).cloned(),
        None => field.get("default").map(form_text),
    };
    let kind = field_kind(field);
    let bound = |key: &str| {
        field
            .get(key)
            .filter(|v| v.is_number())
            .map(Value::to_string)
    };
    html! {
        @if kind == FieldKind::Boolean {
            label.check {
                input type="checkbox" name=(input_name) value="true" checked[prefill.as_deref() == Some("true")];
                span { (title) }
                @if let Some(d) = description { small.muted { (d) } }
            }
        } @else {
            label {
                (title) @if required { " *" }
                @match kind {
                    FieldKind::Choice => {
                        select name=(input_name) required[required] {
                            @if !required { option value="" selected[prefill.is_none()] { "—" } }
                            @for o in field.get("enum").and_then(Value::as_array).into_iter().flatten() {
                                @let text = form_text(o);
                                option value=(text) selected[prefill.as_deref() == Some(text.as_str())] { (text) }
                            }
                        }
                    }
                    FieldKind::Integer | FieldKind::Number => {
                        input type="number" name=(input_name)
                            step=(if kind == FieldKind::Integer { "1" } else { "any" })
                            min=[bound("minimum")] max=[bound("maximum")]
                            value=[prefill] required[required] autocomplete="off";
                    }
                    _ => {
                        input type=(if secret { "password" } else { "text" }) name=(input_name)
                            value=[prefill] required[required] autocomplete="off";
                    }
                }
                @if let Some(d) = description { small.muted { (d) } }
            }
        }
    }
}

/// A form creating a connection of `kind` for `app`, its fields generated from `schema`
/// (an object schema: properties, required, type, enum, default, title, description), filled
/// again from `posted` when it is this form coming back refused.
fn schema_form(
    session: &Session,
    app: &str,
    kind: &str,
    title: &str,
    schema: &Value,
    posted: Option<&Form_>,
) -> Markup {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let posted = posted.filter(|form| {
        form.get("app").map(String::as_str) == Some(app)
            && form.get("kind").map(String::as_str) == Some(kind)
    });
    let name = posted.and_then(|form| form.get("name")).cloned();
    let make_id = posted.and_then(|form| form.get("id")).cloned();
    let form_id = format!("new-{app}-{kind}");
    html! {
        form.card.connection-form method="post" action="/connect/connections" id=(form_id) data-app=(app) data-kind=(kind) {
            h3 { (title) " " span.muted { "(" (app) ")" } }
            (csrf_field(session))
            input type="hidden" name="app" value=(app);
            input type="hidden" name="kind" value=(kind);
            label { "Connection name" input type="text" name="name" required placeholder="my-connection" value=[name]; }
            label { "Make connection id"
                input type="text" name="id" inputmode="numeric" pattern="[1-9][0-9]{0,17}" placeholder="33477" value=[make_id];
                small.muted { "Optional: the number imported blueprints name this connection by." } }
            @for (name, field) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
                (schema_field(name, field, required.contains(&name.as_str()), posted))
            }
            label.check {
                input type="checkbox" name="test" value="true" checked[posted.is_none_or(|form| form.contains_key("test"))];
                span { "Test the connection before saving" }
                small.muted { "Runs the app's test request; a connection that fails it is not stored." }
            }
            button.primary type="submit" { "Save connection" }
        }
    }
}

/// An expiry from the API's RFC 3339 text, as people read it (`2026-12-03 21:16 UTC`), in a
/// `<time>` carrying the exact instant.
fn expiry(rfc3339: &str) -> Markup {
    let readable = chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_string());
    html! { time datetime=(rfc3339) title=(rfc3339) { (readable) } }
}

/// How an integration is connected, in words.
fn flow_words(flow: &str) -> &str {
    match flow {
        "auth_code" => "authorization code",
        "client_credentials" => "client credentials",
        "service_account" => "service account key",
        other => other,
    }
}

fn status_word(status: &str) -> &str {
    match status {
        "connected" => "connected",
        "needs_reauth" => "needs re-authorisation",
        "not_connected" => "not connected",
        "per_user" => "per user",
        other => other,
    }
}

/// The connect page, with a notice (a test's result) or problems (a refused form); `posted`
/// is the refused connection form, filled in again (except its secrets).
async fn connect_page(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    notice: Option<Markup>,
    posted: Option<&Form_>,
) -> Response {
    let Some(vault) = state.vault() else {
        return failure(
            session,
            StatusCode::SERVICE_UNAVAILABLE,
            "Connect",
            "This server has no connections store.",
        );
    };
    let integrations = match integrations_json(vault).await {
        Ok(v) => v
            .get("integrations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        Err(e) => {
            tracing::error!(error = ?e, "listing integrations failed");
            Vec::new()
        }
    };
    let connections: Vec<Value> = match vault.list().await {
        Ok(rows) => rows.iter().map(connection_json).collect(),
        Err(e) => {
            tracing::error!(error = %e, "listing connections failed");
            Vec::new()
        }
    };
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let body = html! {
        h1 { "Connect" }
        p.muted { "Integrations declared for the bot and the apps' connection types. Stored values never leave the server: only names and status are shown." }
        @if let Some(notice) = notice { (notice) }
        h2 { "Integrations" }
        @if integrations.is_empty() {
            p.muted { "No integrations are declared (" code { "serve --integrations FILE" } ")." }
        } @else {
            div.grid.integrations {
                @for i in &integrations {
                    @let alias = text(i, "alias");
                    @let flow = text(i, "flow");
                    @let status = text(i, "status");
                    @let connected = status == "connected";
                    section.card.integration data-alias=(alias) data-status=(status) {
                        h3 { (i.get("title").and_then(Value::as_str).unwrap_or(&alias)) }
                        p.muted { code { (alias) } " · " (text(i, "provider")) " · " (text(i, "context"))
                            @if flow != text(i, "provider") { " · " (flow_words(&flow)) } }
                        @if let Some(d) = i.get("description").and_then(Value::as_str) { p.muted { (d) } }
                        p { span class=(format!("status status-{status}")) { (status_word(&status)) }
                            @if let Some(exp) = i.get("expiresAt").and_then(Value::as_str) { span.muted.expires { " expires " (expiry(exp)) } } }
                        @let label = if connected { "Connect again" } else { "Connect" };
                        @if let Some(url) = i.get("connectUrl").and_then(Value::as_str) {
                            a.button.primary.connect href=(url) { (label) }
                        } @else if text(i, "context") == "bot" && (flow == "auth_code" || flow == "client_credentials") {
                            a.button.primary.connect href=(format!("/oauth/start/{alias}")) { (label) }
                        }
                        @if flow == "secret" || flow == "service_account" {
                            form.stack.secret method="post" action=(format!("/connect/secrets/{alias}")) {
                                (csrf_field(session))
                                label { @if flow == "secret" { "Secret value" } @else { "Service account key (JSON)" }
                                    @let hint = if connected { "stored · type to replace" } else { "" };
                                    @if flow == "secret" { input type="password" name="value" required autocomplete="off" placeholder=(hint); }
                                    @else { textarea name="value" rows="4" required placeholder=(hint) {} } }
                                button.secondary type="submit" { @if connected { "Replace" } @else { "Save" } }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Connections" }
        table.list #connections {
            thead { tr { th { "Name" } th { "App" } th { "Kind" } th { "Status" } th { "Expires" } th {} } }
            tbody {
                @for c in &connections {
                    @let id = text(c, "id");
                    tr data-connection=(text(c, "name")) {
                        td { (text(c, "name")) }
                        td { (text(c, "app")) }
                        td { (text(c, "kind")) }
                        td { span class=(format!("status status-{}", text(c, "status"))) { (status_word(&text(c, "status"))) } }
                        td.muted { @if let Some(exp) = c.get("expiresAt").and_then(Value::as_str) { (expiry(exp)) } @else { "—" } }
                        td.actions {
                            (action_button(session, &format!("/connect/connections/{id}/test"), "Test", "secondary"))
                            (action_button(session, &format!("/connect/connections/{id}/remove"), "Remove", "danger"))
                        }
                    }
                }
                @if connections.is_empty() { tr { td colspan="6" .muted { "No connections stored." } } }
            }
        }
        h2 { "New connection" }
        div.grid {
            @for (title, kind, schema) in http_connection_types() {
                (schema_form(session, "http", kind, &title, &schema, posted))
            }
            @for t in vault.connection_types() {
                (schema_form(session, &t.app, t.kind, t.label.as_deref().unwrap_or(&t.name), &t.configuration, posted))
            }
        }
    };
    page(status, layout("Connect", Some(&session.csrf), body))
}

pub async fn connect(State(state): State<AppState>, session: Session) -> Response {
    connect_page(&state, &session, StatusCode::OK, None, None).await
}

fn connection_problem(e: &ConnectionError) -> (StatusCode, Markup) {
    let status = match e {
        ConnectionError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        e if e.to_string().contains("not found") => StatusCode::NOT_FOUND,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let items: Vec<(String, String)> = match e {
        ConnectionError::Invalid(problems) => problems
            .iter()
            .map(|p| (p.path.clone(), p.reason.clone()))
            .collect(),
        other => vec![(String::new(), other.to_string())],
    };
    (
        status,
        html! {
            section.card.error-card #problems role="alert" {
                h2 { "Not saved" }
                ul { @for (path, reason) in &items { li { @if !path.is_empty() { code { (path) } ": " } (reason) } } }
            }
        },
    )
}

/// The connect page's answer to a form on a server without a connections store.
async fn without_vault(state: &AppState, session: &Session) -> Response {
    connect_page(state, session, StatusCode::SERVICE_UNAVAILABLE, None, None).await
}

/// `POST /connect/connections`: a connection from a form of the connect page, its fields typed
/// by the connection type's schema ([`typed_fields`]). A refused form comes back, filled in
/// again, with every problem at its field (422).
pub async fn create_connection(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<Form_>,
) -> Response {
    if let Some(refused) = session.refusal(&form) {
        return refused;
    }
    let Some(vault) = state.vault() else {
        return without_vault(&state, &session).await;
    };
    let app = form.get("app").cloned().unwrap_or_default();
    let kind = form.get("kind").cloned().unwrap_or_default();
    let typed = match posted_schema(vault, &app, &kind) {
        Some(schema) => typed_fields(&schema, &form),
        None => Err(vec![crate::connections::FieldProblem {
            path: "kind".into(),
            reason: format!("the connect page offers no connection type {kind:?} of app {app:?}"),
        }]),
    };
    let created = match typed {
        Ok(fields) => {
            let input = NewConnectionInput {
                id: form
                    .get("id")
                    .map(|id| id.trim().to_string())
                    .filter(|id| !id.is_empty()),
                name: form.get("name").cloned().unwrap_or_default(),
                app,
                kind: Some(kind),
                fields,
                // "Test before saving" is checked unless unticked.
                test: form.contains_key("test"),
            };
            vault.create(&input).await.map(|_| ())
        }
        Err(problems) => Err(ConnectionError::Invalid(problems)),
    };
    match created {
        Ok(()) => see_other("/connect"),
        Err(e) => {
            let (status, notice) = connection_problem(&e);
            connect_page(&state, &session, status, Some(notice), Some(&form)).await
        }
    }
}

pub async fn test_connection(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<Form_>,
) -> Response {
    if let Some(refused) = session.refusal(&form) {
        return refused;
    }
    let Some(vault) = state.vault() else {
        return without_vault(&state, &session).await;
    };
    let notice = match vault.test(&id).await {
        Ok(report) => html! {
            section.card.ok-card #test-result role="status" {
                h2 { "Test of " (report.connection.name) " passed" }
                p { (report.detail) }
            }
        },
        Err(e) => html! {
            section.card.error-card #test-result role="alert" {
                h2 { "Test failed" }
                p { (e.to_string()) }
            }
        },
    };
    connect_page(&state, &session, StatusCode::OK, Some(notice), None).await
}

pub async fn remove_connection(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<Form_>,
) -> Response {
    if let Some(refused) = session.refusal(&form) {
        return refused;
    }
    let Some(vault) = state.vault() else {
        return without_vault(&state, &session).await;
    };
    match vault.remove(&id).await {
        Ok(_) => see_other("/connect"),
        Err(e) => {
            let (status, notice) = connection_problem(&e);
            connect_page(&state, &session, status, Some(notice), None).await
        }
    }
}

/// `POST /connect/secrets/{alias}`: a secret integration's value (or a service account's key),
/// stored through the vault as `PUT /api/secrets/{alias}` does. The value goes as typed: a
/// secret is text even when it looks like JSON; the vault reads a service account's key from
/// its text.
pub async fn put_secret(
    State(state): State<AppState>,
    session: Session,
    Path(alias): Path<String>,
    Form(form): Form<Form_>,
) -> Response {
    if let Some(refused) = session.refusal(&form) {
        return refused;
    }
    let Some(vault) = state.vault() else {
        return without_vault(&state, &session).await;
    };
    let value = Value::String(form.get("value").cloned().unwrap_or_default());
    match vault.set_secret(&alias, &value).await {
        Ok(_) => see_other("/connect"),
        Err(e) => {
            let (status, notice) = connection_problem(&e);
            connect_page(&state, &session, status, Some(notice), None).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Form_ {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn schema() -> Value {
        json!({"type": "object", "required": ["host", "port"], "properties": {
            "host": {"type": "string", "title": "Host"},
            "port": {"type": "integer", "default": 5432, "minimum": 1, "maximum": 65535},
            "timeout": {"type": "number", "description": "Seconds"},
            "tls": {"type": "boolean", "default": true},
            "mode": {"type": "string", "enum": ["fast", "safe"]},
            "level": {"enum": [1, 2, 3]},
            "pin": {"type": ["integer", "null"], "writeOnly": true},
            "password": {"type": "string", "format": "password", "default": "hunter2"}}})
    }

    #[test]
    fn numbers_and_booleans_are_sent_typed() {
        let posted = form(&[
            ("name", "db"),
            ("field.host", "db.example.com"),
            ("field.port", "5432"),
            ("field.timeout", "2.5"),
            ("field.tls", "true"),
            ("field.level", "2"),
            ("field.mode", "safe"),
        ]);
        let fields = typed_fields(&schema(), &posted).unwrap();
        assert_eq!(
            Value::Object(fields),
            json!({"host": "db.example.com", "port": 5432, "timeout": 2.5, "tls": true,
                   "mode": "safe", "level": 2})
        );
        // A whole number given to a `number` stays an integer; `10.0` is a whole number.
        let fields = typed_fields(
            &schema(),
            &form(&[("field.timeout", " 3 "), ("field.port", "10.0")]),
        )
        .unwrap();
        assert_eq!(fields["timeout"], json!(3));
        assert_eq!(fields["port"], json!(10));
    }

    #[test]
    fn an_unchecked_box_is_false_and_an_empty_optional_field_is_omitted() {
        let fields = typed_fields(
            &schema(),
            &form(&[
                ("field.host", "h"),
                ("field.timeout", ""),
                ("field.mode", ""),
                ("field.pin", ""),
            ]),
        )
        .unwrap();
        assert_eq!(Value::Object(fields), json!({"host": "h", "tls": false}));
        let fields = typed_fields(&schema(), &form(&[("field.tls", "false")])).unwrap();
        assert_eq!(fields["tls"], json!(false));
        // A schema without booleans adds nothing for an empty form.
        let plain = json!({"properties": {"host": {"type": "string"}}});
        assert!(typed_fields(&plain, &form(&[])).unwrap().is_empty());
    }

    #[test]
    fn what_is_not_of_the_field_type_is_refused_naming_the_field() {
        let problems = typed_fields(
            &schema(),
            &form(&[
                ("field.timeout", "abc"),
                ("field.port", "1.5"),
                ("field.tls", "maybe"),
                ("field.mode", "reckless"),
                ("field.level", "4"),
            ]),
        )
        .unwrap_err();
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.reason))
            .collect();
        assert_eq!(
            text,
            [
                r#"fields.port: expected a whole number, got "1.5""#,
                r#"fields.timeout: expected a number, got "abc""#,
                r#"fields.tls: expected true or false, got "maybe""#,
                r#"fields.mode: expected one of "fast", "safe", got "reckless""#,
                r#"fields.level: expected one of "1", "2", "3", got "4""#,
            ]
        );
        for bad in ["NaN", "inf", "1e400", "0x10", "5 kg"] {
            let problems = typed_fields(&schema(), &form(&[("field.timeout", bad)])).unwrap_err();
            assert_eq!(problems[0].path, "fields.timeout", "{bad}");
        }
    }

    #[test]
    fn a_secret_field_is_never_quoted_in_a_problem() {
        let problems = typed_fields(&schema(), &form(&[("field.pin", "12x4-secret")])).unwrap_err();
        assert_eq!(problems[0].path, "fields.pin");
        assert_eq!(problems[0].reason, "expected a whole number");
        assert!(!format!("{problems:?}").contains("12x4-secret"));
    }

    #[test]
    fn a_field_the_schema_does_not_have_is_refused() {
        let problems = typed_fields(
            &schema(),
            &form(&[("field.host", "h"), ("field.hots", "x"), ("field.x", "y")]),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].path, "fields.hots");
        assert_eq!(
            problems[0].reason,
            "not a field of this connection type (its fields: host, port, timeout, tls, mode, level, pin, password)"
        );
        assert_eq!(problems[1].path, "fields.x");
        let none = typed_fields(&json!({"type": "object"}), &form(&[("field.a", "1")]));
        assert_eq!(
            none.unwrap_err()[0].reason,
            "this connection type has no fields"
        );
    }

    #[test]
    fn fields_are_drawn_by_their_type_with_defaults_except_secrets() {
        let s = schema();
        let field = |name: &str, required: bool, posted: Option<&Form_>| {
            schema_field(name, &s["properties"][name], required, posted).into_string()
        };
        let port = field("port", true, None);
        assert!(port.contains(r#"type="number""#), "{port}");
        assert!(port.contains(r#"step="1""#), "{port}");
        assert!(
            port.contains(r#"min="1""#) && port.contains(r#"max="65535""#),
            "{port}"
        );
        assert!(port.contains(r#"value="5432""#), "{port}");
        assert!(port.contains("required"), "{port}");
        let timeout = field("timeout", false, None);
        assert!(timeout.contains(r#"step="any""#), "{timeout}");
        assert!(timeout.contains("Seconds"), "{timeout}");
        assert!(!timeout.contains("value="), "{timeout}");
        let tls = field("tls", false, None);
        assert!(
            tls.contains(r#"type="checkbox""#) && tls.contains(r#"value="true""#),
            "{tls}"
        );
        assert!(tls.contains("checked"), "{tls}");
        let mode = field("mode", false, None);
        assert!(
            mode.contains(r#"<option value="" selected>—</option>"#),
            "{mode}"
        );
        let mode = field("mode", true, None);
        assert!(!mode.contains("—"), "{mode}");
        let password = field("password", false, None);
        assert!(password.contains(r#"type="password""#), "{password}");
        assert!(!password.contains("hunter2"), "{password}");
        // A refused form comes back with what was typed, unchecked boxes unchecked, and
        // secrets empty.
        let posted = form(&[
            ("field.port", "abc"),
            ("field.mode", "safe"),
            ("field.password", "typed-secret"),
        ]);
        assert!(field("port", true, Some(&posted)).contains(r#"value="abc""#));
        assert!(!field("tls", false, Some(&posted)).contains("checked"));
        assert!(field("mode", false, Some(&posted)).contains(r#"<option value="safe" selected>"#));
        assert!(!field("password", false, Some(&posted)).contains("typed-secret"));
    }
}
