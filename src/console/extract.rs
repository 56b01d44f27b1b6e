//! The console's extractors: [`ConsoleForm`], a posted form checked against the session (a
//! signed-in session, else 302 to `/login`) and its CSRF token (403 without it), and
//! [`ConsoleQuery`], a query string, and [`PlainForm`], the sign-in form (no session yet). A body or query that cannot be read is the console's
//! error page ([`ConsoleError`]), never the framework's plain-text message; no handler
//! repeats these checks.

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::error::ConsoleError;
use super::session::Session;
use crate::api::AppState;

/// A posted form of a signed-in session that carried the session's CSRF token (`csrf`).
pub struct ConsoleForm {
    pub session: Session,
    /// The form's fields, `csrf` among them.
    pub fields: HashMap<String, String>,
}

impl FromRequest<AppState> for ConsoleForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let request = Request::from_parts(parts, body);
        let axum::Form(fields) =
            axum::Form::<HashMap<String, String>>::from_request(request, state)
                .await
                .map_err(|rejection| {
                    ConsoleError::bad_request(
                        "Bad form",
                        format!("The form could not be read: {}", rejection.body_text()),
                    )
                    .into_response()
                })?;
        if !session.csrf_matches(fields.get("csrf").map(String::as_str).unwrap_or("")) {
            return Err(ConsoleError::Forbidden.into_response());
        }
        Ok(ConsoleForm { session, fields })
    }
}

/// A page's query string, read as `T`.
pub struct ConsoleQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ConsoleQuery<T> {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ConsoleError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(value)| ConsoleQuery(value))
            .map_err(|rejection| {
                ConsoleError::bad_request(
                    "Bad query",
                    format!(
                        "The address's query string could not be read: {}",
                        rejection.body_text()
                    ),
                )
            })
    }
}

/// A posted form read as `T`, before any session exists (the sign-in form).
pub struct PlainForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for PlainForm<T> {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ConsoleError> {
        axum::Form::<T>::from_request(request, state)
            .await
            .map(|axum::Form(value)| PlainForm(value))
            .map_err(|rejection| {
                ConsoleError::bad_request(
                    "Bad form",
                    format!("The form could not be read: {}", rejection.body_text()),
                )
            })
    }
}
