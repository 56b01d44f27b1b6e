//! Console sessions: sign-in with the API token (wrong tokens throttled per client address,
//! with the API's bearer failures), the session cookie, sign-out, and the [`Session`]
//! extractor every page takes (302 to `/login` without a live session); forms are checked
//! against its CSRF token by [`super::extract::ConsoleForm`].
//!
//! The cookie holds a random 256-bit id; the store keeps only its SHA-256
//! (`store::ConsoleSession`), so the database alone signs nobody in.

use axum::Extension;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use rand::RngCore;
use serde::Deserialize;

use super::extract::{ConsoleForm, PlainForm};
use super::{ConsoleOptions, layout, page};
use crate::api::{AppState, ClientIp, retry_after_secs, token_hash};
use crate::store::{ConsoleSession, now_ms};

/// The cookie that carries the session id.
pub const SESSION_COOKIE: &str = "switchyard_session";
/// How long a session lives: twelve hours.
pub const SESSION_TTL_MS: i64 = 12 * 60 * 60 * 1000;

/// A signed-in request's session.
#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
    id_sha256: String,
}

/// A 302 to `location`.
pub fn found(location: &str) -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

/// A 303 to `location`: the answer to a form post.
pub fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(id) = cookie_value(&parts.headers, SESSION_COOKIE) else {
            return Err(found("/login"));
        };
        let id_sha256 = token_hash(id);
        match state.store().console_session(&id_sha256).await {
            Ok(Some(row)) => Ok(Session {
                csrf: row.csrf_token,
                id_sha256,
            }),
            Ok(None) => Err(found("/login")),
            Err(e) => {
                tracing::error!(error = %e, "reading a console session failed");
                Err(page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    layout(
                        "Unavailable",
                        None,
                        html! { h1 { "The store is unavailable" } },
                    ),
                ))
            }
        }
    }
}

impl Session {
    /// Whether `presented` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        presented.len() == self.csrf.len()
            && presented
                .bytes()
                .zip(self.csrf.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn login_page(status: StatusCode, problem: Option<&str>) -> Response {
    page(
        status,
        layout(
            "Sign in",
            None,
            html! {
                section.card.narrow {
                    h1 { "Sign in" }
                    p.muted { "Use the API token this server was started with." }
                    @if let Some(problem) = problem {
                        p.problem role="alert" { (problem) }
                    }
                    form method="post" action="/login" {
                        label for="token" { "API token" }
                        input #token type="password" name="token" autocomplete="current-password" required autofocus;
                        button.primary type="submit" { "Sign in" }
                    }
                }
            },
        ),
    )
}

/// The sign-in page of an address blocked for its failed guesses: 429, `Retry-After` and the
/// wait in words. `status` is 200 for the form asked for with `GET`.
fn blocked_page(status: StatusCode, wait: std::time::Duration) -> Response {
    let secs = retry_after_secs(wait);
    let mut response = login_page(
        status,
        Some(&format!(
            "Too many wrong tokens from your address. Try again in {secs} second{}.",
            if secs == 1 { "" } else { "s" }
        )),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// `GET /login`: the form, saying how long to wait while this address is blocked.
pub async fn login_form(State(state): State<AppState>, client: ClientIp) -> Response {
    match state.throttle().blocked(client) {
        Some(wait) => blocked_page(StatusCode::OK, wait),
        None => login_page(StatusCode::OK, None),
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /login`: a good API token starts a session (cookie, 303 to `/scenarios`); a bad one
/// is 401 with the form again. Wrong tokens count against the client's address with the
/// API's (`crate::api::Throttle`): once it is blocked, 429 with the wait, the token unread.
pub async fn login(
    State(state): State<AppState>,
    Extension(options): Extension<ConsoleOptions>,
    client: ClientIp,
    PlainForm(form): PlainForm<LoginForm>,
) -> Response {
    let throttle = state.throttle();
    if let Some(wait) = throttle.blocked(client) {
        return blocked_page(StatusCode::TOO_MANY_REQUESTS, wait);
    }
    if !state.token_matches(form.token.trim()) {
        if let Some(wait) = throttle.failed(client) {
            return blocked_page(StatusCode::TOO_MANY_REQUESTS, wait);
        }
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not this server's API token."),
        );
    }
    throttle.succeeded(client);
    let id = random_hex();
    let now = now_ms();
    let session = ConsoleSession {
        id_sha256: token_hash(&id),
        csrf_token: random_hex(),
        created_at: now,
        expires_at: now + SESSION_TTL_MS,
    };
    if let Err(e) = state.store().insert_console_session(&session).await {
        tracing::error!(error = %e, "storing a console session failed");
        return login_page(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("The server could not start a session; see its log."),
        );
    }
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL_MS / 1000,
        if options.secure_cookies {
            "; Secure"
        } else {
            ""
        }
    );
    let mut response = see_other("/scenarios");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /logout`: ends the session and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    ConsoleForm { session, .. }: ConsoleForm,
) -> Response {
    if let Err(e) = state
        .store()
        .delete_console_session(&session.id_sha256)
        .await
    {
        tracing::error!(error = %e, "ending a console session failed");
    }
    let mut response = see_other("/login");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "switchyard_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}
