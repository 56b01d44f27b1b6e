//! [`ConsoleError`], the one error type of the console's handlers: it renders itself as the
//! console's error page — 404 for what does not exist, 422 for a refused input (its problems
//! listed at their paths), 400 for a query string or form body that cannot be read, 403 for
//! a form without the session's CSRF token, 503 when the store cannot answer (the detail goes
//! to the log, never to the page).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::{layout, page};
use crate::catalog::CatalogError;
use crate::queue::QueueError;
use crate::scenario::LoadError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum ConsoleError {
    /// What was asked for does not exist.
    NotFound(String),
    /// The input was read but refused: why, and each problem at its path.
    Refused {
        title: &'static str,
        message: String,
        problems: Vec<(String, String)>,
    },
    /// The query string or form body cannot be read as the page expects.
    BadRequest {
        title: &'static str,
        message: String,
    },
    /// A form without the session's CSRF token.
    Forbidden,
    /// The store (or the queue) could not answer; `context` says what was being done.
    Unavailable {
        title: &'static str,
        context: String,
    },
}

impl ConsoleError {
    /// A refused input without problems of its own.
    pub fn refused(title: &'static str, message: impl Into<String>) -> Self {
        ConsoleError::Refused {
            title,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    pub fn bad_request(title: &'static str, message: impl Into<String>) -> Self {
        ConsoleError::BadRequest {
            title,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ConsoleError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ConsoleError::Forbidden => StatusCode::FORBIDDEN,
            ConsoleError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<StoreError> for ConsoleError {
    fn from(e: StoreError) -> Self {
        if e.is_not_found() {
            return ConsoleError::NotFound(e.to_string());
        }
        if matches!(e, StoreError::InvalidInput { .. }) {
            return ConsoleError::refused("Refused", e.to_string());
        }
        tracing::error!(error = %e, "a console page's store call failed");
        ConsoleError::Unavailable {
            title: "Unavailable",
            context: "The store could not answer; see the server's log.".into(),
        }
    }
}

impl From<CatalogError> for ConsoleError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Store(e) => e.into(),
            CatalogError::Invalid(LoadError::Invalid(ref problems))
            | CatalogError::References(ref problems) => ConsoleError::Refused {
                title: "Refused",
                message: e.to_string(),
                problems: problems
                    .iter()
                    .map(|p| (p.path.clone(), p.message.clone()))
                    .collect(),
            },
            other => ConsoleError::refused("Refused", other.to_string()),
        }
    }
}

impl From<QueueError> for ConsoleError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Store(e) => e.into(),
            other => {
                tracing::error!(error = %other, "a console action's queue call failed");
                ConsoleError::Unavailable {
                    title: "Not queued",
                    context: "The job queue could not take it; see the server's log.".into(),
                }
            }
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (title, message, problems) = match self {
            ConsoleError::NotFound(message) => ("Not found", message, Vec::new()),
            ConsoleError::Refused {
                title,
                message,
                problems,
            } => (title, message, problems),
            ConsoleError::BadRequest { title, message } => (title, message, Vec::new()),
            ConsoleError::Forbidden => (
                "Refused",
                "This form did not carry the page's security token (CSRF). Reload the page and try again.".to_string(),
                Vec::new(),
            ),
            ConsoleError::Unavailable { title, context } => (title, context, Vec::new()),
        };
        page(
            status,
            layout(
                title,
                None,
                html! {
                    section.card {
                        h1 { (title) }
                        p.problem role="alert" { (message) }
                        @if !problems.is_empty() {
                            ul #problems {
                                @for (path, problem) in &problems {
                                    li { code { (path) } ": " (problem) }
                                }
                            }
                        }
                        p { a href="/scenarios" { "Back to the scenarios" } }
                    }
                },
            ),
        )
    }
}
