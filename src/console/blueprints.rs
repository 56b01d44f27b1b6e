//! Blueprints: the import form (every validation problem at its JSON path) and a scenario's
//! versions with their diff.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::error::ConsoleError;
use super::extract::{ConsoleForm, ConsoleQuery};
use super::scenarios::*;
use super::session::{Session, see_other};
use super::widgets::*;
use super::{layout, page};
use crate::api::{AppState, rfc3339};
use crate::catalog::CatalogError;

/// What the import form says about the text it shows again: why it was not stored, or the
/// warnings to read before storing it anyway.
enum Checked<'a> {
    Fresh,
    Invalid(Markup),
    Warnings(&'a [crate::scenario::Problem]),
}

fn import_page(session: &Session, text: &str, checked: Checked<'_>) -> Markup {
    layout(
        "Import",
        Some(&session.csrf),
        html! {
            h1 { "Import a blueprint" }
            p.muted { "Paste a Make blueprint (the JSON of " em { "Export blueprint" } "). It is checked before it is stored; every problem is listed with its JSON path." }
            @match &checked {
                Checked::Invalid(problems) => {
                    section.card.error-card #problems role="alert" { h2 { "The blueprint was not imported" } (problems) }
                }
                Checked::Warnings(warnings) => {
                    section.card.warning-card #warnings role="status" {
                        h2 { "Not imported yet: " (plural(warnings.len() as u64, "warning")) " to read first" }
                        p { "The blueprint is valid, but these may not do what you mean. Fix them below and check again, or import it as it is (the scenario page keeps showing them)." }
                        (problems_list(warnings))
                    }
                }
                Checked::Fresh => {}
            }
            form.stack method="post" action="/scenarios/new" {
                (csrf_field(session))
                label.upload { "Or upload a file: " input #blueprint-file type="file" accept=".json,application/json"; }
                label for="blueprint" { "Blueprint JSON" }
                textarea #blueprint name="blueprint" rows="18" spellcheck="false" required { (text) }
                div.buttons {
                    @if matches!(checked, Checked::Warnings(_)) {
                        button.primary type="submit" name="confirm" value="yes" { "Import anyway" }
                        button.secondary type="submit" { "Check again" }
                    } @else {
                        button.primary type="submit" { "Import" }
                    }
                }
            }
        },
    )
}

pub async fn import_form(session: Session) -> Response {
    page(StatusCode::OK, import_page(&session, "", Checked::Fresh))
}

pub async fn import(
    State(state): State<AppState>,
    ConsoleForm {
        session,
        fields: form,
    }: ConsoleForm,
) -> Response {
    let text = form.get("blueprint").cloned().unwrap_or_default();
    let invalid = |e: crate::scenario::LoadError| {
        page(
            StatusCode::UNPROCESSABLE_ENTITY,
            import_page(
                &session,
                &text,
                Checked::Invalid(problems_list(&e.problems())),
            ),
        )
    };
    // Warnings are shown before anything is stored, until the designer confirms.
    if form.get("confirm").is_none_or(|c| c != "yes") {
        let compiled = match state.catalog().check(crate::scenario::without_bom(&text)) {
            Ok((_, compiled)) => compiled,
            Err(e) => return invalid(e),
        };
        match state.catalog().warnings(&compiled).await {
            Ok(warnings) if warnings.is_empty() => {}
            Ok(warnings) => {
                let body = import_page(&session, &text, Checked::Warnings(&warnings));
                return page(StatusCode::OK, body);
            }
            Err(e) => return ConsoleError::from(e).into_response(),
        }
    }
    match state.catalog().create(&text).await {
        Ok(stored) => see_other(&format!("/scenarios/{}", stored.id)),
        Err(CatalogError::Invalid(e)) => invalid(e),
        Err(e) => ConsoleError::from(e).into_response(),
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
    ConsoleQuery(q): ConsoleQuery<VersionsQuery>,
) -> Response {
    let row = match state.store().get_scenario(&id).await {
        Ok(r) => r,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let versions = match state.store().list_versions(&id).await {
        Ok(v) => v,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let b = q.b.unwrap_or(row.version);
    let a = q.a.unwrap_or(b.saturating_sub(1).max(1));
    let mut diff = None;
    if a != b || q.a.is_some() {
        let left = blueprint_value(&state, &id, a).await;
        let right = blueprint_value(&state, &id, b).await;
        match (left, right) {
            (Ok(l), Ok(r)) => diff = Some((pretty(&l), pretty(&r))),
            (Err(e), _) | (_, Err(e)) => return ConsoleError::from(e).into_response(),
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
