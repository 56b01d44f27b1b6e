//! A loopback HTTP server for tests: `/echo` answers with what it received, `/status/{code}`
//! answers with that status, `/json` answers a fixed JSON document.

use std::net::SocketAddr;

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{Value, json};

async fn echo(
    method: Method,
    headers: HeaderMap,
    Query(query): Query<serde_json::Map<String, Value>>,
    body: String,
) -> Json<Value> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    Json(
        json!({"method": method.as_str(), "query": query, "contentType": content_type, "body": parsed}),
    )
}

async fn status(Path(code): Path<u16>) -> (StatusCode, Json<Value>) {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (code, Json(json!({"status": code.as_u16()})))
}

/// Starts the server on 127.0.0.1, port chosen by the OS; returns its address.
pub async fn start() -> SocketAddr {
    let app = Router::new()
        .route("/echo", any(echo))
        .route("/status/{code}", any(status))
        .route(
            "/json",
            any(|| async {
                Json(json!({"users": [{"id": 1, "name": "Ann"}, {"id": 2, "name": "Bob"}]}))
            }),
        );
    serve(app).await
}

/// Serves `app` on a free loopback port for the rest of the test; returns its address.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}
