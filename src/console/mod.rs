//! The web console `switchyard serve` answers at `/`: server-rendered pages (`maud`) with one
//! embedded stylesheet and a little script (`assets/console/`, embedded with `rust-embed`, no
//! Node build). [`router`] gives the API's router ([`crate::api::app_with`]) the console's
//! routes, which share its [`AppState`].
//!
//! Sessions: signing in posts the API token (`name="token"`); a good one starts a session — a
//! random id in an HttpOnly, SameSite=Strict cookie (Secure when the public URL is https),
//! stored only as its SHA-256 with an expiry and a CSRF token of its own
//! (`store::ConsoleSession`). Every state-changing form carries that CSRF token and is refused
//! with 403 without it. A page asked for without a live session redirects (302) to `/login`.
//! The JSON API keeps its bearer token; a session cookie opens nothing under `/api`.
//!
//! Every console response carries the security headers of [`headers`] (no framing, a
//! Content-Security-Policy without inline script, `no-store`). Sign-in shares the API's
//! throttle of failed guesses per client address: while it holds, `/login` answers 429 with
//! the wait.
//!
//! Invariants: no page, fragment or redirect carries a stored secret (connections are shown
//! by their metadata only); every text reaching HTML is escaped by `maud`.

mod authorize;
mod blueprints;
mod connect;
mod connection_form;
mod error;
mod executions;
mod extract;
mod graph;
mod headers;
mod scenarios;
mod session;
mod widgets;

pub use graph::{Layout, LinkKind, layout as graph_layout};
pub use session::{SESSION_COOKIE, SESSION_TTL_MS};
pub use widgets::plural;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use rust_embed::RustEmbed;

use crate::api::AppState;

/// How the console is served.
#[derive(Debug, Clone, Default)]
pub struct ConsoleOptions {
    /// Session cookies are marked `Secure` (the public URL is https).
    pub secure_cookies: bool,
}

#[derive(RustEmbed)]
#[folder = "assets/console/"]
struct Assets;

/// The console's routes, to merge into the API's router, each response with the console's
/// security headers ([`headers`]).
pub fn router(options: ConsoleOptions) -> Router<AppState> {
    let routes = Router::new()
        .route("/", get(scenarios::home))
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/scenarios", get(scenarios::scenarios))
        .route(
            "/scenarios/new",
            get(blueprints::import_form).post(blueprints::import),
        )
        .route("/scenarios/{id}", get(scenarios::scenario))
        .route("/scenarios/{id}/activate", post(scenarios::activate))
        .route("/scenarios/{id}/deactivate", post(scenarios::deactivate))
        .route("/scenarios/{id}/run", post(scenarios::run_now))
        .route("/scenarios/{id}/delete", post(scenarios::delete))
        .route("/scenarios/{id}/versions", get(blueprints::versions))
        .route("/scenarios/{id}/executions", get(executions::executions))
        .route(
            "/scenarios/{id}/executions/events",
            get(executions::execution_events),
        )
        .route("/executions/{id}", get(executions::execution))
        .route("/executions/{id}/bundles", get(executions::bundles))
        .route("/binaries/{id}", get(executions::download))
        .route("/executions/{id}/retry", post(executions::retry_execution))
        .route("/incomplete/{id}/retry", post(executions::retry_incomplete))
        .route(
            "/incomplete/{id}/resolve",
            post(executions::resolve_incomplete),
        )
        .route("/connect", get(connect::connect))
        .route("/connect/connections", post(connect::create_connection))
        .route("/connect/authorize", post(authorize::authorize))
        .route(
            "/connect/connections/{id}/test",
            post(connect::test_connection),
        )
        .route(
            "/connect/connections/{id}/remove",
            post(connect::remove_connection),
        )
        .route("/connect/secrets/{alias}", post(connect::put_secret))
        .route("/console/assets/{*file}", get(asset))
        .layer(axum::Extension(options));
    headers::secure(routes)
}

/// An embedded asset, cached for an hour.
async fn asset(Path(file): Path<String>) -> Response {
    match Assets::get(&file) {
        Some(content) => {
            let mime = match file.rsplit_once('.').map(|(_, ext)| ext) {
                Some("css") => "text/css; charset=utf-8",
                Some("js") => "text/javascript; charset=utf-8",
                Some("svg") => "image/svg+xml",
                _ => "application/octet-stream",
            }
            .to_string();
            (
                [
                    (header::CONTENT_TYPE, mime),
                    (header::CACHE_CONTROL, "public, max-age=3600".to_string()),
                ],
                content.data.into_owned(),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// The page around every view: the header with the navigation (and the sign-out form, which
/// carries the session's CSRF token), then `body`.
pub(crate) fn layout(title: &str, csrf: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Switchyard" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/scenarios" { span.logo { "⇄" } " Switchyard" }
                    @if let Some(csrf) = csrf {
                        nav {
                            a href="/scenarios" { "Scenarios" }
                            a href="/scenarios/new" { "Import" }
                            a href="/connect" { "Connect" }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page with `status` (an error page, a refused form).
pub(crate) fn page(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}
