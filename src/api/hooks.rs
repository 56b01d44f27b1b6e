//! Webhook ingest, `POST|GET|PUT /hooks/{id}`: the HTTP side only. The request's parts go
//! to the queue's intake ([`crate::queue::Intake::deliver`]), which decides everything else
//! — the hook's route, its rate, room for the body, an instant trigger's verification, the
//! deduplication key, where the execution runs — and this handler turns the outcome into the
//! HTTP answer. A 2xx is sent only after the delivery and its queued execution are
//! committed; with `gateway:WebhookRespond` in the scenario the caller waits for that reply
//! (202 with the execution id when it does not come in time).

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::extract::{Path, Query, RawBody};
use super::{ApiError, ApiResult, AppState};
use crate::engine::report::WebhookResponse;
use crate::module::HookReply;
use crate::queue::{Delivered, Refusal, Reply, WebhookRequest};

pub fn router(max_body_bytes: usize) -> Router<AppState> {
    super::reply_headers::guard(
        Router::new()
            .route("/hooks/{id}", get(ingest).post(ingest).put(ingest))
            .layer(DefaultBodyLimit::max(max_body_bytes)),
    )
}

async fn ingest(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<Map<String, Value>>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let method = request.method().as_str().to_string();
    let body_state = state.clone();
    let request = WebhookRequest {
        hook: id,
        method,
        query,
        headers: headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
            .collect(),
        declared_length,
        body: async move {
            let RawBody(body) = RawBody::from_request(request, &body_state).await?;
            Ok::<_, ApiError>(body.to_vec())
        },
    };
    let accepted = match state.inner.intake.deliver(request).await {
        Ok(Delivered::Verified(reply)) => return Ok(verification_reply(reply)),
        Ok(Delivered::Accepted(accepted)) => accepted,
        Err(refusal) => return Ok(refused(refusal)),
    };
    state.inner.metrics.webhook_accepted();
    let Some(pending) = accepted.reply else {
        return Ok(accepted_response(&accepted.execution, accepted.duplicate));
    };
    Ok(match pending.await? {
        Reply::Responded(response) => reply(&accepted.execution, Some(&response)),
        Reply::Ended => reply(&accepted.execution, None),
        Reply::TimedOut => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"executionId": accepted.execution, "status": "queued"})),
        )
            .into_response(),
    })
}

/// The HTTP answer to a delivery the intake refused.
fn refused(refusal: Refusal<ApiError>) -> Response {
    match refusal {
        Refusal::UnknownHook => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_hook",
            "there is no webhook at this address",
        )
        .into_response(),
        Refusal::Inactive => ApiError::new(
            StatusCode::GONE,
            "inactive_hook",
            "this webhook's scenario is not active",
        )
        .into_response(),
        Refusal::RateLimited { retry_after } => retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests to this webhook; retry in {retry_after} s"),
            retry_after,
        ),
        Refusal::Busy { retry_after } => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many large bodies are being handled at once; retry in a few seconds".into(),
            retry_after,
        ),
        Refusal::Body(e) => e.into_response(),
        Refusal::BadBody(bad) => ApiError::bad_request(bad.0).into_response(),
        Refusal::Store(e) => ApiError::from(e).into_response(),
        Refusal::Queue(e) => ApiError::from(e).into_response(),
    }
}

/// An instant trigger's answer to its service's verification request.
fn verification_reply(reply: HookReply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    let mut response = (status, reply.body).into_response();
    if let Ok(value) = HeaderValue::from_str(&reply.content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// The error envelope of a request to send again in `seconds`, with `Retry-After`.
fn retry_later(status: StatusCode, code: &'static str, message: String, seconds: u64) -> Response {
    let mut response = ApiError::new(status, code, message).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

fn accepted_response(execution_id: &str, duplicate: bool) -> Response {
    let mut response = (StatusCode::OK, "Accepted").into_response();
    if let Ok(v) = HeaderValue::from_str(execution_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-switchyard-execution"), v);
    }
    if duplicate {
        response.headers_mut().insert(
            HeaderName::from_static("x-switchyard-duplicate"),
            HeaderValue::from_static("true"),
        );
    }
    response
}

/// The scenario's reply, or a plain acknowledgement when it gave none.
fn reply(execution_id: &str, response: Option<&WebhookResponse>) -> Response {
    match response {
        Some(r) => webhook_reply(r),
        None => accepted_response(execution_id, false),
    }
}

/// The HTTP response for a `WebhookRespond` reply: its status, its headers (a header whose
/// name or value HTTP does not allow is left out, and so is one a scenario may not set:
/// [`super::reply_headers`]) and its body, text as is and other JSON values as JSON text.
fn webhook_reply(r: &WebhookResponse) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let body = match &r.body {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut response = (status, body).into_response();
    for (k, v) in &r.headers {
        if let (Ok(name), Some(Ok(value))) = (
            HeaderName::from_bytes(k.as_bytes()),
            v.as_str().map(HeaderValue::from_str),
        ) && super::reply_headers::scenario_may_set(&name)
        {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
        response.headers().get(name).and_then(|v| v.to_str().ok())
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn typed() -> WebhookResponse {
        WebhookResponse {
            status: 201,
            headers: Map::from_iter([
                ("X-Order".to_string(), json!("A-9")),
                ("Content-Type".to_string(), json!("application/json")),
                // Not allowed by HTTP: left out, the rest of the reply goes.
                ("bad header".to_string(), json!("x")),
                ("X-Line".to_string(), json!("a\nb")),
                // Not a scenario's to set: left out too.
                ("Set-Cookie".to_string(), json!("session=x; Path=/")),
                ("Access-Control-Allow-Origin".to_string(), json!("*")),
            ]),
            body: json!({"order": "A-9"}),
        }
    }

    #[tokio::test]
    async fn the_reply_is_built_from_the_typed_response() {
        let response = reply("e1", Some(&typed()));
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(header(&response, "x-order"), Some("A-9"));
        assert_eq!(header(&response, "content-type"), Some("application/json"));
        assert_eq!(header(&response, "x-line"), None);
        assert_eq!(header(&response, "set-cookie"), None);
        assert_eq!(header(&response, "access-control-allow-origin"), None);
        assert_eq!(response.headers().len(), 2, "{:?}", response.headers());
        assert_eq!(body(response).await, r#"{"order":"A-9"}"#);

        let text = WebhookResponse {
            status: 418,
            headers: Map::new(),
            body: json!("short and stout"),
        };
        let response = reply("e1", Some(&text));
        assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
        assert_eq!(body(response).await, "short and stout");

        let response = reply("e1", None);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-switchyard-execution"), Some("e1"));
        assert_eq!(body(response).await, "Accepted");
    }
}
