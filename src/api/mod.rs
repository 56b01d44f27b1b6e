//! The HTTP surface of `switchyard serve`: the JSON API under `/api` (bearer token; wrong
//! tokens throttled per client address, [`Throttle`]), webhook
//! ingest under `/hooks/{id}` (no token: the random hook id is the secret; a mailhook's also
//! over SMTP, [`serve_smtp`]; every reply sandboxed, `reply_headers`), `/health`,
//! `/metrics` (Prometheus) and `/openapi.json`. [`app`] builds the router from an
//! [`AppState`]; tests serve it on a real listener on 127.0.0.1 and talk HTTP to it.
//!
//! Conventions: every failure, including a rejected query string, path parameter or body, an
//! unknown route (404) and a wrong method (405), is the JSON error envelope of [`ApiError`]
//! (handlers take their input through [`extract`]'s extractors); every point in time is an
//! RFC 3339 string ([`rfc3339`]); durations are milliseconds.

pub mod binaries;
mod canned;
mod connections;
mod datastores;
mod error;
mod executions;
mod extract;
mod hooks;
mod oauth;
mod reply_headers;
mod scenarios;
mod server;
mod smtp;
mod status;
mod throttle;
mod time;

pub use crate::queue::{HookLimits, NotAMessage, mail_bundle};
pub use connections::connection_json;
pub use datastores::{datastore_json, parse_records, records_jsonl};
pub use error::{ApiError, ApiResult};
pub use executions::{Bundles, DEFAULT_PAGE, MAX_PAGE, PageRequest, execution_report, module_page};
pub use oauth::integrations_json;
pub use server::{ServerLimits, serve};
pub use smtp::{SmtpError, SmtpOptions, serve_smtp, tls_config};
pub use throttle::{ClientIp, Throttle, retry_after_secs};
pub use time::rfc3339;

use std::sync::Arc;

use axum::Router;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::connections::Vault;
use crate::queue::{Queue, Runner};
use crate::store::Store;

/// Everything the handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
    /// The stored connections (`/api/connections`); `None` answers those routes with 503.
    connections: Option<Arc<Vault>>,
}

struct Inner {
    catalog: Catalog,
    queue: Queue,
    intake: crate::queue::Intake,
    runner: Arc<Runner>,
    token_sha256: String,
    metrics: status::Metrics,
    throttle: throttle::Throttle,
}

impl AppState {
    /// The API over `runner`'s scenario catalog and store. `token_sha256` is the hex SHA-256
    /// of the API bearer token; webhook executions run in this process, up to
    /// `direct_concurrency` at a time, as soon as they are accepted (0: only the workers run
    /// them).
    pub fn new(
        queue: Queue,
        runner: Arc<Runner>,
        token_sha256: String,
        limits: HookLimits,
        direct_concurrency: usize,
    ) -> Self {
        let catalog = runner.catalog().clone();
        AppState {
            inner: Arc::new(Inner {
                intake: crate::queue::Intake::new(
                    runner.clone(),
                    direct_concurrency,
                    crate::queue::SLOT_WAIT,
                )
                .with_hook_limits(limits),
                catalog,
                queue,
                runner,
                token_sha256,
                metrics: status::Metrics::default(),
                throttle: throttle::Throttle::default(),
            }),
            connections: None,
        }
    }

    /// The same state serving the stored connections of `vault` under `/api/connections`.
    pub fn with_connections(mut self, vault: Arc<Vault>) -> Self {
        self.connections = Some(vault);
        self
    }

    pub fn store(&self) -> &Store {
        self.inner.catalog.store()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The job queue executions are pushed to ("run now", retries).
    pub fn queue(&self) -> &Queue {
        &self.inner.queue
    }

    /// The stored connections, when this server has them.
    pub fn vault(&self) -> Option<&Arc<Vault>> {
        self.connections.as_ref()
    }

    /// Whether `headers` carry the API token as `Authorization: Bearer <token>`.
    fn bearer_matches(&self, headers: &axum::http::HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            // The scheme is case-insensitive (RFC 9110 §11.1): `bearer x` is `Bearer x`.
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .is_some_and(|(_, token)| self.token_matches(token.trim()))
    }

    /// Whether `token` is the API token.
    pub fn token_matches(&self, token: &str) -> bool {
        constant_time_eq(
            token_hash(token).as_bytes(),
            self.inner.token_sha256.as_bytes(),
        )
    }

    /// The failed guesses at the API token by client address, shared by the API's bearer
    /// check and the console's sign-in.
    pub fn throttle(&self) -> &Throttle {
        &self.inner.throttle
    }

    /// A scenario was edited, (de)activated or deleted: forget cached webhook routes (the
    /// catalog tells the scheduler itself).
    pub fn scenarios_changed(&self) {
        self.inner.intake.forget_routes();
    }
}

/// Hex SHA-256 of a token, the form in which tokens are stored and compared.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    app_with(state, Router::new())
}

/// The HTTP application with `extra` routes (the web console's) merged in: they share the
/// API's state, and unknown paths still get the API's 404 envelope (axum allows one fallback).
pub fn app_with(state: AppState, extra: Router<AppState>) -> Router {
    let api = Router::new()
        .route("/scenarios", post(scenarios::create).get(scenarios::list))
        .route(
            "/scenarios/{id}",
            get(scenarios::get)
                .put(scenarios::update)
                .delete(scenarios::delete),
        )
        .route("/scenarios/{id}/activate", post(scenarios::activate))
        .route("/scenarios/{id}/deactivate", post(scenarios::deactivate))
        .route("/scenarios/{id}/run", post(scenarios::run_now))
        .route("/scenarios/{id}/hooks", get(scenarios::hooks))
        .route(
            "/scenarios/{id}/reset-trigger",
            post(scenarios::reset_trigger),
        )
        .route("/executions", get(executions::list))
        .route("/executions/{id}", get(executions::get))
        .route("/executions/{id}/retry", post(executions::retry))
        .route("/incomplete", get(executions::list_incomplete))
        .route("/binaries/{id}", get(binaries::get))
        .route("/incomplete/{id}/retry", post(executions::retry_incomplete))
        .route(
            "/connections",
            get(connections::list).post(connections::create),
        )
        .route(
            "/connections/{reference}",
            get(connections::get).delete(connections::delete),
        )
        .route("/connections/{reference}/test", post(connections::test))
        .route("/authorizations", post(connections::authorize))
        .route("/integrations", get(oauth::list))
        .route("/secrets/{alias}", axum::routing::put(oauth::put_secret))
        .route(
            "/datastores",
            get(datastores::list).post(datastores::create),
        )
        .route(
            "/datastores/{reference}",
            get(datastores::get).delete(datastores::delete),
        )
        .route("/datastores/{reference}/records", get(datastores::records))
        .route("/datastores/{reference}/export", get(datastores::export))
        .route("/datastores/{reference}/import", post(datastores::import))
        .route(
            "/incomplete/{id}/resolve",
            post(executions::resolve_incomplete),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        // Set per router: a nested router's routes are out of the outer one's reach.
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .nest("/api", api)
        .merge(hooks::router(
            state.inner.intake.hook_limits().max_body_bytes,
        ))
        .route("/oauth/start/{alias}", get(oauth::start))
        .route("/oauth/callback", get(oauth::callback))
        .route("/health", get(status::health))
        .route("/metrics", get(status::metrics))
        .route("/openapi.json", get(status::openapi))
        .merge(extra)
        .method_not_allowed_fallback(method_not_allowed)
        // Also answers unknown paths under `/api`: a nested router without a fallback of its
        // own uses this one.
        .fallback(no_route)
        .with_state(state)
}

/// 404 for a path no route matches (before any token check: there is nothing to guard).
async fn no_route(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {method} {}", uri.path()),
    )
}

/// 405 for a known path with a method it does not take; axum adds the `Allow` header.
async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}", uri.path()),
    )
}

/// The bearer check of `/api`, throttled per client address ([`throttle`]): a request that
/// presents a wrong `Authorization` counts as a failed guess, and an address blocked for its
/// failures gets 429 with `Retry-After` without its token being looked at.
async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, Response> {
    let presented = request.headers().contains_key(header::AUTHORIZATION);
    let client = ClientIp::of(request.extensions());
    let throttle = state.throttle();
    if presented && let Some(wait) = throttle.blocked(client) {
        return Err(too_many_failures(wait));
    }
    if !state.bearer_matches(request.headers()) {
        if presented && let Some(wait) = throttle.failed(client) {
            return Err(too_many_failures(wait));
        }
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` header is required",
        )
        .into_response());
    }
    throttle.succeeded(client);
    Ok(next.run(request).await)
}

/// 429 `too_many_failures` with `Retry-After`: this address guessed wrong too often.
fn too_many_failures(wait: std::time::Duration) -> Response {
    let secs = retry_after_secs(wait);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failures",
        format!("too many wrong tokens from this address; retry in {secs} s"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
    response
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
