//! The connect page: integrations and how they stand, stored connections (metadata only)
//! with their Test and Remove forms, the new-connection forms, and secrets.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::Value;

use super::connection_form::*;
use super::error::ConsoleError;
use super::extract::ConsoleForm;
use super::session::{Session, see_other};
use super::widgets::*;
use super::{layout, page};
use crate::api::{AppState, connection_json, integrations_json};
use crate::connections::{ConnectionError, NewConnectionInput};

/// An expiry from the API's RFC 3339 text, as people read it (`2026-12-03 21:16 UTC`), in a
/// `<time>` carrying the exact instant.
pub(super) fn expiry(rfc3339: &str) -> Markup {
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
        "app_connection" => "credentials typed in",
        "builtin" => "built in",
        other => other,
    }
}

fn status_word(status: &str) -> &str {
    match status {
        "connected" => "connected",
        "needs_reauth" => "needs re-authorisation",
        "not_connected" => "not connected",
        "per_user" => "per user",
        "needs_configuration" => "needs configuration",
        "builtin" => "built in",
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
        return ConsoleError::Unavailable {
            title: "Connect",
            context: "This server has no connections store.".into(),
        }
        .into_response();
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
                        } @else if text(i, "context") == "bot" && status != "needs_configuration" && (flow == "auth_code" || flow == "client_credentials") {
                            a.button.primary.connect href=(format!("/oauth/start/{alias}")) { (label) }
                        }
                        @if let Some(missing) = i.get("missing").and_then(Value::as_array).filter(|m| !m.is_empty()) {
                            div.missing {
                                p { "Missing settings:" }
                                ul { @for m in missing {
                                    li { code { (text(m, "field")) } " — " (text(m, "how")) }
                                } }
                            }
                        }
                        @if flow == "builtin" {
                            p.muted { "Built in: the calendar is kept by this server; there is nothing to connect." }
                        }
                        @if flow == "app_connection" {
                            @let app = text(i, "app");
                            @let types: Vec<crate::connections::ConnectionTypeInfo> = vault.connection_types().into_iter().filter(|t| t.app == app).collect();
                            @if connected {
                                p.muted { "Stored as connection " code { (alias) } " (app " (app) "): remove it below to type in new credentials." }
                            } @else if let Some(t) = types.first() {
                                (integration_form(session, &alias, &app, t.kind, &t.configuration, posted))
                            } @else {
                                p.muted { "The " (app) " app is not loaded in this server, so its connection cannot be typed in." }
                            }
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
        (super::authorize::sign_in_section(session, vault, posted))
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
                            (super::authorize::reconnect_button(session, c))
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
    let mut response = page(status, layout("Connect", Some(&session.csrf), body));
    let origins = vault.app_authorize_origins();
    if !origins.is_empty()
        && let Ok(policy) =
            axum::http::HeaderValue::from_str(&super::headers::csp_with_form_targets(&origins))
    {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_SECURITY_POLICY, policy);
    }
    response
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

/// The connect page again, with why the vault refused a form (`posted`, filled in again).
pub(super) async fn refused(
    state: &AppState,
    session: &Session,
    e: &ConnectionError,
    posted: Option<&Form_>,
) -> Response {
    let (status, notice) = connection_problem(e);
    connect_page(state, session, status, Some(notice), posted).await
}

/// The connect page's answer to a form on a server without a connections store.
pub(super) async fn without_vault(state: &AppState, session: &Session) -> Response {
    connect_page(state, session, StatusCode::SERVICE_UNAVAILABLE, None, None).await
}

/// `POST /connect/connections`: a connection from a form of the connect page, its fields typed
/// by the connection type's schema ([`typed_fields`]). A refused form comes back, filled in
/// again, with every problem at its field (422).
pub async fn create_connection(
    State(state): State<AppState>,
    ConsoleForm {
        session,
        fields: form,
    }: ConsoleForm,
) -> Response {
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
        Err(e) => refused(&state, &session, &e, Some(&form)).await,
    }
}

pub async fn test_connection(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ConsoleForm { session, .. }: ConsoleForm,
) -> Response {
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
    Path(id): Path<String>,
    ConsoleForm { session, .. }: ConsoleForm,
) -> Response {
    let Some(vault) = state.vault() else {
        return without_vault(&state, &session).await;
    };
    match vault.remove(&id).await {
        Ok(_) => see_other("/connect"),
        Err(e) => refused(&state, &session, &e, None).await,
    }
}

/// `POST /connect/secrets/{alias}`: a secret integration's value (or a service account's key),
/// stored through the vault as `PUT /api/secrets/{alias}` does. The value goes as typed: a
/// secret is text even when it looks like JSON; the vault reads a service account's key from
/// its text.
pub async fn put_secret(
    State(state): State<AppState>,
    Path(alias): Path<String>,
    ConsoleForm {
        session,
        fields: form,
    }: ConsoleForm,
) -> Response {
    let Some(vault) = state.vault() else {
        return without_vault(&state, &session).await;
    };
    let value = Value::String(form.get("value").cloned().unwrap_or_default());
    match vault.set_secret(&alias, &value).await {
        Ok(_) => see_other("/connect"),
        Err(e) => refused(&state, &session, &e, None).await,
    }
}
