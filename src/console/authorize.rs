//! The connect page's part for apps that sign in with OAuth2: a card per app `oauth2`
//! connection type (the scopes connecting asks for, a connection name, the integration to
//! connect through) and `POST /connect/authorize`, which starts the authorization with the same
//! vault call as `POST /api/authorizations` and sends the browser to the provider; the
//! provider's callback (`/oauth/callback`) stores the connection. An app connection made this
//! way is connected again from its row of the connections table (after the provider revoked
//! its tokens, it shows as needing re-authorisation).
//!
//! Invariants: every form carries the session's CSRF token and is refused without it
//! ([`ConsoleForm`]); a
//! refused form comes back on the connect page with the problem at its field; no page shows a
//! token.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::Value;

use super::connect::{refused, without_vault};
use super::extract::ConsoleForm;
use super::session::Session;
use super::widgets::csrf_field;
use crate::api::AppState;
use crate::connections::tokens::CONTEXT_APP;
use crate::connections::{OAuthAppType, Vault};

use super::widgets::Form_;

/// The "Apps that sign in" cards: one per app `oauth2` connection type; `posted` is a refused
/// form of this section, filled in again.
pub fn sign_in_section(session: &Session, vault: &Vault, posted: Option<&Form_>) -> Markup {
    let types = vault.oauth_app_types();
    if types.is_empty() {
        return html! {};
    }
    html! {
        h2 { "Apps that sign in" }
        p.muted { "Connecting opens the provider's consent page, asking for the scopes the app's modules need; the provider sends you back here." }
        div.grid.integrations {
            @for t in &types { (type_card(session, t, posted)) }
        }
    }
}

fn type_card(session: &Session, t: &OAuthAppType, posted: Option<&Form_>) -> Markup {
    // A connection form of the page's other section has a `kind`; this one has none.
    let posted =
        posted.filter(|form| form.get("app") == Some(&t.app) && !form.contains_key("kind"));
    let name = posted.and_then(|form| form.get("name")).cloned();
    let chosen = posted.and_then(|form| form.get("integration")).cloned();
    html! {
        section.card.integration.app-sign-in data-app=(t.app) {
            h3 { (t.label.as_deref().unwrap_or(&t.name)) " " span.muted { "(" (t.app) ")" } }
            p.muted { "Provider " code { (t.provider) }
                @if !t.scopes.is_empty() { " · asks for " @for (i, scope) in t.scopes.iter().enumerate() { @if i > 0 { ", " } code { (scope) } } } }
            @if t.integrations.is_empty() {
                p.muted.missing { "No integration can connect it: declare an auth_code integration of provider " code { (t.provider) } " (" code { "serve --integrations FILE" } ")." }
            } @else {
                form.stack method="post" action="/connect/authorize" {
                    (csrf_field(session))
                    input type="hidden" name="app" value=(t.app);
                    label { "Connection name"
                        input type="text" name="name" required placeholder=(format!("my-{}", t.app)) value=[name]; }
                    label { "Integration"
                        select name="integration" {
                            @for alias in &t.integrations {
                                option value=(alias) selected[chosen.as_deref() == Some(alias.as_str())] { (alias) }
                            }
                        } }
                    button.primary.connect type="submit" { "Connect" }
                }
            }
        }
    }
}

/// The button that connects again an app connection made through an integration (the
/// connections table's row `connection`, as `connection_json` shows it); nothing for others.
pub fn reconnect_button(session: &Session, connection: &Value) -> Markup {
    let text = |k: &str| connection.get(k).and_then(Value::as_str).unwrap_or("");
    if text("context") != CONTEXT_APP || text("kind") != "oauth2" || text("alias").is_empty() {
        return html! {};
    }
    let class = if text("status") == "needs_reauth" {
        "primary"
    } else {
        "secondary"
    };
    html! {
        form.inline method="post" action="/connect/authorize" {
            (csrf_field(session))
            input type="hidden" name="name" value=(text("name"));
            input type="hidden" name="app" value=(text("app"));
            input type="hidden" name="integration" value=(text("alias"));
            button class=(class) type="submit" { "Reconnect" }
        }
    }
}

/// `POST /connect/authorize` (`name`, `app`, `integration`): 303 to the provider's consent
/// page, or the connect page with the problem.
pub async fn authorize(
    State(state): State<AppState>,
    ConsoleForm {
        session,
        fields: form,
    }: ConsoleForm,
) -> Response {
    let Some(vault) = state.vault() else {
        return without_vault(&state, &session).await;
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    match vault
        .start_app_authorization(field("name"), field("app"), field("integration"))
        .await
    {
        Ok(started) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, started.url.to_string()),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
        )
            .into_response(),
        Err(e) => refused(&state, &session, &e, Some(&form)).await,
    }
}
