//! `/health`, `/metrics` (Prometheus text: queue depth, executions by status, webhooks
//! accepted, execution durations) and `/openapi.json`.
//!
//! `/health` is cheap (one small read and the integrity check's last result,
//! [`crate::store::Store::health`]): 200 `{"status": "ok"}`; 503 `{"status": "degraded",
//! "store": "…what failed…"}` when the database failed its integrity check or a read met a
//! damaged page; 503 `{"status": "unavailable", "reason": "database unreachable"}` when the
//! database cannot be reached (the detail is logged, not sent).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::extract::Json;
use super::{ApiResult, AppState};
use crate::store::StoreHealth;

/// Counters kept by this process.
#[derive(Default)]
pub struct Metrics {
    webhooks_accepted: AtomicU64,
}

impl Metrics {
    pub fn webhook_accepted(&self) {
        self.webhooks_accepted.fetch_add(1, Ordering::Relaxed);
    }
}

pub async fn health(State(state): State<AppState>) -> impl IntoResponse {
    match state.store().health().await {
        StoreHealth::Ok => (StatusCode::OK, Json(json!({"status": "ok"}))),
        StoreHealth::Degraded(problem) => {
            tracing::error!(%problem, "health check: the store is degraded");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "degraded", "store": problem})),
            )
        }
        StoreHealth::Unavailable(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "reason": "database unreachable"})),
            )
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let counts = state.store().count_executions_by_status().await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP switchyard_executions Executions in the store by status.\n# TYPE switchyard_executions gauge"
    );
    let mut queued = 0;
    for (status, n) in &counts {
        let _ = writeln!(
            out,
            "switchyard_executions{{status=\"{}\"}} {n}",
            status.as_str()
        );
        if status.as_str() == "queued" {
            queued = *n;
        }
    }
    let _ = writeln!(
        out,
        "# HELP switchyard_queue_depth Executions waiting for a worker.\n# TYPE switchyard_queue_depth gauge\nswitchyard_queue_depth {queued}"
    );
    let accepted = state
        .inner
        .metrics
        .webhooks_accepted
        .load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP switchyard_webhooks_accepted_total Webhook deliveries accepted by this process.\n# TYPE switchyard_webhooks_accepted_total counter\nswitchyard_webhooks_accepted_total {accepted}"
    );
    let (count, sum_ms) = state.inner.runner.duration_totals();
    let _ = writeln!(
        out,
        "# HELP switchyard_execution_duration_seconds Time spent running executions in this process.\n# TYPE switchyard_execution_duration_seconds summary\nswitchyard_execution_duration_seconds_sum {}\nswitchyard_execution_duration_seconds_count {count}",
        sum_ms as f64 / 1000.0
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}

pub async fn openapi() -> Json<Value> {
    Json(serde_json::from_str(include_str!("openapi.json")).unwrap_or(Value::Null))
}
