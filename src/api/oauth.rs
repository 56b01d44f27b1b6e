//! The integrations' HTTP side: `GET /oauth/start/{alias}` (302 to the provider's authorize
//! URL, with PKCE and a single-use `state`), `GET /oauth/callback` (exchanges the code, stores
//! the token sealed, answers a small HTML page, and for a `user` integration queues a
//! `token:<alias>` event on every active scenario that watches it), `GET /api/integrations`
//! (what is declared and how each stands) and `PUT /api/secrets/{alias}` (a secret's value or
//! a service account's key). The flows themselves are the `connections` layer's.
//!
//! Who may start a flow:
//! - a `user` integration: whoever holds a per-user link (`tokens:OAuthLink`), which is signed
//!   and expires, so nobody can make a token land under another user's name;
//! - a `bot` integration: the API token's holder (`Authorization: Bearer`), the holder of a
//!   signed `connectUrl` from `GET /api/integrations`, or — while the bot has no working
//!   connection for it yet — anyone reaching the server (the designer's first connection from
//!   a browser). An established bot connection is never replaced by an unauthenticated
//!   request.
//!
//! Invariants: a callback with an unknown, replayed or expired `state` is 400 and stores
//! nothing; no page or response carries a token, code or verifier.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Json, Path};
use super::{ApiError, ApiResult, AppState, connection_json, rfc3339};
use crate::connections::{Connected, ConnectionError, Context, Grant, Vault};
use crate::store::{NewDelivery, STATUS_CONNECTED};

/// The trigger module that receives `token:<alias>` events.
const TOKEN_EVENTS_MODULE: &str = "tokens:WatchTokenEvents";

fn vault(state: &AppState) -> ApiResult<&Vault> {
    state.connections.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this server has no connections store",
        )
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct StartQuery {
    user: Option<String>,
    expires: Option<String>,
    sig: Option<String>,
}

/// A page for the person in the browser.
fn page(status: StatusCode, title: &str, message: &str) -> Response {
    page_with_link(status, title, message, None)
}

/// [`page`] with a link under the message: `(href, text)`.
fn page_with_link(
    status: StatusCode,
    title: &str,
    message: &str,
    link: Option<(&str, &str)>,
) -> Response {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;\
         margin:4rem auto;padding:0 1rem;color:#1f2933}}h1{{font-size:1.4rem}}\
         .ok{{color:#1a7f37}}.bad{{color:#b42318}}</style></head><body>\
         <h1 class=\"{class}\">{title}</h1><p>{message}</p>{link}</body></html>",
        title = escape(title),
        message = escape(message),
        link = link.map_or(String::new(), |(href, text)| format!(
            "<p><a class=\"back\" href=\"{}\">{}</a></p>",
            escape(href),
            escape(text)
        )),
        class = if status.is_success() { "ok" } else { "bad" },
    );
    (status, Html(html)).into_response()
}

fn flow_error(e: ConnectionError) -> Response {
    match e {
        ConnectionError::Csrf(reason) => page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            &format!("This authorization cannot be trusted: {reason}."),
        ),
        e @ ConnectionError::UnknownIntegration { .. } => {
            page(StatusCode::NOT_FOUND, "Not connected", &e.to_string())
        }
        e @ (ConnectionError::OAuth { .. }
        | ConnectionError::Invalid(_)
        | ConnectionError::TestFailed { .. }
        | ConnectionError::TestUnavailable { .. }) => {
            page(StatusCode::BAD_GATEWAY, "Not connected", &e.to_string())
        }
        e => {
            tracing::error!(error = %e, "an OAuth flow failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Not connected",
                "The server could not store the connection; see its log.",
            )
        }
    }
}

/// `GET /oauth/start/{alias}`.
pub(super) async fn start(
    State(state): State<AppState>,
    Path(alias): Path<String>,
    Query(query): Query<StartQuery>,
    headers: HeaderMap,
) -> Response {
    let vault = match vault(&state) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let integration = match vault.integration(&alias) {
        Ok(i) => i.clone(),
        Err(e) => return flow_error(e),
    };
    let signed = |subject: &str| -> Result<(), ConnectionError> {
        vault.check_link(
            &alias,
            subject,
            query.expires.as_deref().unwrap_or(""),
            query.sig.as_deref().unwrap_or(""),
        )
    };
    let subject = match integration.context {
        Context::User => {
            let Some(user) = query.user.as_deref() else {
                return page(
                    StatusCode::BAD_REQUEST,
                    "Not connected",
                    "This integration is connected by each user through their own link \
                     (tokens:OAuthLink).",
                );
            };
            if let Err(e) = signed(user) {
                return flow_error(e);
            }
            Some(user.to_string())
        }
        Context::Bot => {
            let trusted =
                state.bearer_matches(&headers) || (query.sig.is_some() && signed("").is_ok());
            if !trusted {
                let connected = vault
                    .get(&alias)
                    .await
                    .is_ok_and(|row| row.status == STATUS_CONNECTED);
                if connected {
                    return page(
                        StatusCode::UNAUTHORIZED,
                        "Not connected",
                        "This integration is already connected. Replacing its connection \
                         needs the API token, or the signed connectUrl of GET /api/integrations.",
                    );
                }
            }
            None
        }
    };
    if let Grant::ClientCredentials(_) = integration.grant {
        return match vault.connect_client_credentials(&alias).await {
            Ok(_) => page(
                StatusCode::OK,
                "Connected",
                &format!("{} is connected (client credentials).", title(&integration)),
            ),
            Err(e) => flow_error(e),
        };
    }
    match vault.start_authorization(&alias, subject.as_deref()).await {
        Ok(url) => (
            StatusCode::FOUND,
            [
                (header::LOCATION, url.to_string()),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
        )
            .into_response(),
        Err(e) => flow_error(e),
    }
}

fn title(integration: &crate::connections::Integration) -> String {
    integration
        .title
        .clone()
        .unwrap_or_else(|| integration.alias.clone())
}

#[derive(Debug, Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /oauth/callback`.
pub(super) async fn callback(
    State(state): State<AppState>,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let vault = match vault(&state) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let Some(flow_state) = query.state.as_deref().filter(|s| !s.is_empty()) else {
        return flow_error(ConnectionError::Csrf("the callback has no state".into()));
    };
    if let Some(error) = &query.error {
        // The user said no (or the provider failed): the state is spent all the same.
        let _ = vault.finish_authorization("", flow_state).await;
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(60)
            .collect();
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            &format!("The provider did not authorize the connection ({error})."),
        );
    }
    let Some(code) = query.code.as_deref().filter(|c| !c.is_empty()) else {
        return flow_error(ConnectionError::Csrf("the callback has no code".into()));
    };
    let connected = match vault.finish_authorization(code, flow_state).await {
        Ok(c) => c,
        Err(e) => return flow_error(e),
    };
    if let Some(app) = &connected.app {
        tracing::info!(integration = %connected.alias, connection = %connected.connection.id,
            app = %app, "app connection connected");
        return page_with_link(
            StatusCode::OK,
            "Connected",
            &format!(
                "The {app} connection \"{}\" is connected.",
                connected.connection.name
            ),
            Some(("/connect", "Back to Connect")),
        );
    }
    let integration = vault.integration(&connected.alias).ok().cloned();
    tracing::info!(integration = %connected.alias, connection = %connected.connection.id,
        context = connected.context.as_str(), "integration connected");
    if connected.context == Context::User
        && let Err(e) = fire_token_event(&state, &connected).await
    {
        tracing::error!(integration = %connected.alias, error = ?e,
            "the token event could not be queued");
    }
    let name = integration
        .as_ref()
        .map(title)
        .unwrap_or(connected.alias.clone());
    match connected.context {
        // The designer connected the bot from the console: back to it.
        Context::Bot => page_with_link(
            StatusCode::OK,
            "Connected",
            &format!("{name} is connected."),
            Some(("/connect", "Back to Connect")),
        ),
        // An end user, who has no console.
        Context::User => page(
            StatusCode::OK,
            "Connected",
            &format!("{name} is connected. You can close this window."),
        ),
    }
}

/// Queues `token:<alias>` on every active scenario whose trigger watches `alias`, with the
/// new token's id as its payload (the seed's `event.payload`). Deduplicated per connection
/// and time, so a redelivery cannot run twice.
async fn fire_token_event(state: &AppState, connected: &Connected) -> ApiResult<usize> {
    let mut queued = 0;
    for scenario in state.store().list_scenarios().await? {
        if !scenario.active {
            continue;
        }
        let Ok(compiled) = state
            .catalog()
            .compiled(&scenario.id, scenario.version)
            .await?
        else {
            continue;
        };
        let Some(node) = compiled.webhook_trigger() else {
            continue;
        };
        let watches = node.module == TOKEN_EVENTS_MODULE
            && node
                .configuration()
                .get("integration")
                .and_then(Value::as_str)
                == Some(connected.alias.as_str());
        if !watches {
            continue;
        }
        let Some(hook) = state
            .store()
            .hooks_for(&scenario.id)
            .await?
            .into_iter()
            .find(|h| h.module_id == node.id && h.active)
        else {
            continue;
        };
        let payload = json!({
            "event": format!("token:{}", connected.alias),
            "integration": connected.alias,
            "token": connected.connection.id,
            "user": connected.subject,
        });
        let key = format!(
            "token:{}:{}",
            connected.connection.id, connected.connection.updated_at
        );
        let delivery = NewDelivery::with_json_text(
            &hook.id,
            Some(&key),
            &scenario.id,
            scenario.version,
            payload.to_string(),
        )?;
        state
            .inner
            .intake
            .accept(delivery, crate::queue::RunHere::No)
            .await?;
        queued += 1;
    }
    Ok(queued)
}

/// `GET /api/integrations`: every declared integration, how it stands, and for a bot
/// integration connected through the browser a signed `connectUrl` (valid 10 minutes).
pub(super) async fn list(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(integrations_json(vault(&state)?).await?))
}

/// `GET /api/integrations`'s body: every declared integration, its status and, for a bot's
/// OAuth flow, its signed `connectUrl` (also the console's connect page).
pub async fn integrations_json(vault: &Vault) -> ApiResult<Value> {
    let connections = vault.list().await?;
    let mut out = Vec::new();
    for integration in vault.integrations() {
        let bot = connections.iter().find(|c| {
            c.integration
                .as_ref()
                .is_some_and(|l| l.alias == integration.alias && l.context == "bot")
        });
        let users = connections
            .iter()
            .filter(|c| {
                c.integration
                    .as_ref()
                    .is_some_and(|l| l.alias == integration.alias && l.context == "user")
            })
            .count();
        // A studio provider's connection is the app connection named by the alias.
        let app = match &integration.grant {
            Grant::App { app } => Some(app.as_str()),
            _ => None,
        };
        let bot = bot.or_else(|| {
            app.and_then(|app| {
                connections
                    .iter()
                    .find(|c| c.name == integration.alias && c.app == app)
            })
        });
        let status = match (&integration.grant, integration.context, bot) {
            (Grant::Calendar, ..) => "builtin",
            (_, Context::User, _) => "per_user",
            (_, Context::Bot, Some(row)) => row.status.as_str(),
            (_, Context::Bot, None) if integration.check_configured().is_err() => {
                "needs_configuration"
            }
            (_, Context::Bot, None) => "not_connected",
        };
        let missing: Vec<Value> = integration
            .missing
            .iter()
            .map(|m| json!({"field": m.field, "how": m.how, "blocking": m.blocking}))
            .collect();
        let connect_url = match (&integration.grant, integration.context) {
            (Grant::AuthCode(_) | Grant::ClientCredentials(_), Context::Bot)
                if integration.check_configured().is_ok() =>
            {
                Some(vault.bot_connect_url(&integration.alias)?)
            }
            _ => None,
        };
        out.push(json!({
            "alias": integration.alias,
            "provider": integration.provider,
            "context": integration.context.as_str(),
            "flow": integration.grant.name(),
            "scope": integration.scope,
            "title": integration.title,
            "description": integration.description,
            "icon": integration.icon,
            "status": status,
            "expiresAt": bot.and_then(|b| b.expires_at).map(rfc3339),
            "connection": bot.map(|b| b.id.clone()),
            "userConnections": users,
            "connectUrl": connect_url,
            "app": app,
            "missing": missing,
        }));
    }
    Ok(json!({"integrations": out}))
}

#[derive(Debug, Deserialize)]
pub(super) struct SecretBody {
    value: Value,
}

/// `PUT /api/secrets/{alias}` `{"value": …}`: a `secret` integration's value (text) or a
/// `google_service_account`'s JSON key (object or its text). Answers the connection's
/// metadata, never the value.
pub(super) async fn put_secret(
    State(state): State<AppState>,
    Path(alias): Path<String>,
    Json(body): Json<SecretBody>,
) -> ApiResult<axum::Json<Value>> {
    let vault = vault(&state)?;
    let row = vault.set_secret(&alias, &body.value).await?;
    Ok(axum::Json(connection_json(&row)))
}
