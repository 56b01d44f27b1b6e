//! Webhook ingest, `POST|GET|PUT /hooks/{id}`. A 2xx is sent only after the delivery and its
//! queued execution are committed; with `gateway:WebhookRespond` in the scenario the caller
//! waits for that reply (202 with the execution id when it does not come in time).
//! Deliveries carrying a provider event id or `Idempotency-Key` are accepted once per hook.
//! A hook fed to an app's instant trigger lets the module answer its service's verification
//! requests (even before the scenario is active: services verify while the hook is being
//! registered) and name each delivery for that deduplication (ChatBot's `x-request-id`).
//! A mailhook's URL takes the raw message (RFC 5322, as mail providers' inbound routes post
//! it), read into the same bundle as mail received over SMTP ([`super::smtp`]) and keyed by
//! its `Message-ID` when no idempotency header names it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use indexmap::IndexMap;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::extract::{Path, Query, RawBody};
use super::{ApiError, ApiResult, AppState};
use crate::catalog::Hook;
use crate::engine::report::WebhookResponse;
use crate::module::{HookReply, HookRequest, HookTarget, Module};
use crate::queue::{Finished, RunHere};
use crate::scenario::compiled::NodeKind;
use crate::store::{Delivery, NewDelivery, StoreError};
use tokio::sync::oneshot;

/// Limits on webhook traffic.
#[derive(Debug, Clone)]
pub struct HookLimits {
    /// Larger bodies get 413.
    pub max_body_bytes: usize,
    /// Requests per hook per window before 429 (Make: 300 per 10 s).
    pub rate_per_window: u32,
    pub rate_window: Duration,
    /// How long a caller waits for a `gateway:WebhookRespond` reply before getting 202.
    pub respond_timeout: Duration,
}

impl Default for HookLimits {
    fn default() -> Self {
        HookLimits {
            max_body_bytes: 5 * 1024 * 1024,
            rate_per_window: 300,
            rate_window: Duration::from_secs(10),
            respond_timeout: Duration::from_secs(40),
        }
    }
}

/// How long a large body waits for room to be read before its sender is told to retry.
const LARGE_BODY_WAIT: Duration = Duration::from_secs(10);

/// The `Retry-After` of that answer, in seconds.
const LARGE_BODY_RETRY_SECS: u64 = 5;

/// Headers that carry a provider's event id, checked in order.
const DEDUPE_HEADERS: &[&str] = &[
    "idempotency-key",
    "x-idempotency-key",
    "x-event-id",
    "x-github-delivery",
    "x-shopify-webhook-id",
    "x-webhook-id",
];

pub fn router(max_body_bytes: usize) -> Router<AppState> {
    super::reply_headers::guard(
        Router::new()
            .route("/hooks/{id}", get(ingest).post(ingest).put(ingest))
            .layer(DefaultBodyLimit::max(max_body_bytes)),
    )
}

/// Where a hook's deliveries go, as last read from the store.
#[derive(Clone)]
pub(super) struct Route {
    scenario_id: String,
    version: u32,
    pub(super) active: bool,
    /// The scenario answers the caller (`gateway:WebhookRespond`).
    responds: bool,
    /// Its executions must run one at a time, in arrival order (only the queue keeps that).
    pub(super) sequential: bool,
    /// The app instant trigger the hook feeds, if it is one.
    instant: Option<std::sync::Arc<InstantRoute>>,
    /// The hook is a mailhook's (`gateway:CustomMailHook`): deliveries are e-mails.
    pub(super) mail: bool,
    read_at: Instant,
}

/// What verifying and naming a delivery to an instant trigger needs.
struct InstantRoute {
    module: std::sync::Arc<dyn Module>,
    parameters: Map<String, Value>,
    url: String,
    token: String,
    attachment: Value,
}

impl InstantRoute {
    fn target(&self) -> HookTarget<'_> {
        HookTarget {
            url: &self.url,
            token: &self.token,
            data: &self.attachment,
        }
    }
}

/// Webhook routes cached for a second: the hot path then touches the database only to store
/// the delivery. Changes made through this process's API clear it at once; changes made
/// elsewhere (the CLI, another process) are seen within [`HookCache::TTL`].
#[derive(Default)]
pub struct HookCache {
    routes: Mutex<HashMap<String, Route>>,
}

impl HookCache {
    const TTL: Duration = Duration::from_secs(1);

    pub fn clear(&self) {
        if let Ok(mut r) = self.routes.lock() {
            r.clear();
        }
    }

    fn get(&self, hook: &str) -> Option<Route> {
        let routes = self.routes.lock().ok()?;
        routes
            .get(hook)
            .filter(|r| r.read_at.elapsed() < Self::TTL)
            .cloned()
    }

    fn put(&self, hook: &str, route: Route) {
        if let Ok(mut routes) = self.routes.lock() {
            if routes.len() > 10_000 {
                routes.clear();
            }
            routes.insert(hook.to_string(), route);
        }
    }
}

/// The route of a hook: from the cache, else from the store. `None` for an unknown hook.
pub(super) async fn route(state: &AppState, id: &str) -> ApiResult<Option<Route>> {
    if let Some(r) = state.inner.hook_cache.get(id) {
        return Ok(Some(r));
    }
    let Some(hook) = state.store().get_hook(id).await? else {
        return Ok(None);
    };
    let scenario = state.store().get_scenario(&hook.scenario_id).await?;
    let compiled = state
        .catalog()
        .compiled(&hook.scenario_id, scenario.version)
        .await?
        .ok();
    let instant = compiled
        .as_ref()
        .and_then(|s| s.webhook_trigger())
        .and_then(|node| {
            let module = state.catalog().registry().module(&node.module)?;
            module.instant()?;
            Some(std::sync::Arc::new(InstantRoute {
                parameters: node.configuration(),
                url: state.catalog().hook_url(id).unwrap_or_default(),
                token: Hook::token(id),
                attachment: hook.attachment.clone().unwrap_or(Value::Null),
                module,
            }))
        });
    let route = Route {
        instant,
        mail: compiled
            .as_ref()
            .is_some_and(|s| s.mail_trigger().is_some()),
        responds: compiled.as_ref().is_some_and(|s| {
            s.nodes
                .iter()
                .any(|n| matches!(n.kind, NodeKind::WebhookRespond))
        }),
        sequential: compiled.as_ref().is_none_or(|s| s.settings.sequential),
        scenario_id: hook.scenario_id,
        version: scenario.version,
        active: hook.active && scenario.active,
        read_at: Instant::now(),
    };
    state.inner.hook_cache.put(id, route.clone());
    Ok(Some(route))
}

/// A fixed-window counter per hook.
pub struct RateLimiter {
    limit: u32,
    window: Duration,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        RateLimiter {
            limit,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` when the hook is over its limit.
    pub(super) fn check(&self, hook: &str) -> Result<(), u64> {
        let Ok(mut windows) = self.windows.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let entry = windows.entry(hook.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            let left = self.window.saturating_sub(now.duration_since(entry.0));
            return Err(left.as_secs().max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

/// The bundle a request becomes, as JSON text: a JSON object body's fields, form fields, or
/// `{"value": …}` for other bodies; query parameters are added as fields the body does not
/// set. A JSON body is not built as a value: its top-level fields are kept as the text they
/// were sent as (a 5 MB body costs about its size here, not the ten times a value tree does).
fn bundle(headers: &HeaderMap, query: Map<String, Value>, body: &[u8]) -> ApiResult<String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let is_json = content_type.starts_with("application/json") || content_type.ends_with("+json");
    let mut fields = if body.is_empty() {
        Map::new()
    } else if is_json {
        return json_bundle(body, query);
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        match serde_urlencoded_pairs(body) {
            Some(map) => map,
            None => return Err(ApiError::bad_request("the body is not valid form data")),
        }
    } else {
        Map::from_iter([(
            "value".to_string(),
            Value::String(String::from_utf8_lossy(body).into_owned()),
        )])
    };
    for (k, v) in query {
        fields.entry(k).or_insert(v);
    }
    Ok(Value::Object(fields).to_string())
}

/// [`bundle`] of a JSON body: its fields (the last of repeated keys wins, in the place of the
/// first, as when read as a value), or `{"value": body}` when it is not an object.
fn json_bundle(body: &[u8], query: Map<String, Value>) -> ApiResult<String> {
    let invalid = |e: serde_json::Error| {
        ApiError::bad_request(format!(
            "the body is not valid JSON (line {}, column {}): {e}",
            e.line(),
            e.column()
        ))
    };
    let raw: &RawValue = serde_json::from_slice(body).map_err(invalid)?;
    let fields: IndexMap<Cow<'_, str>, &RawValue> = if raw.get().starts_with('{') {
        serde_json::from_str(raw.get()).map_err(invalid)?
    } else {
        IndexMap::from_iter([(Cow::Borrowed("value"), raw)])
    };
    let mut out = String::with_capacity(body.len() + 2);
    out.push('{');
    let mut first = true;
    let mut push = |key: &str, value: &str| {
        if !std::mem::take(&mut first) {
            out.push(',');
        }
        out.push_str(&Value::from(key).to_string());
        out.push(':');
        out.push_str(value);
    };
    for (key, value) in &fields {
        push(key, value.get());
    }
    for (key, value) in query {
        if !fields.contains_key(key.as_str()) {
            push(&key, &value.to_string());
        }
    }
    out.push('}');
    Ok(out)
}

fn serde_urlencoded_pairs(body: &[u8]) -> Option<Map<String, Value>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut map = Map::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
                .ok()
        };
        map.insert(decode(k)?, Value::String(decode(v)?));
    }
    Some(map)
}

async fn ingest(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<Map<String, Value>>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    let Some(route) = route(&state, &id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_hook",
            "there is no webhook at this address",
        ));
    };
    let inactive = || {
        ApiError::new(
            StatusCode::GONE,
            "inactive_hook",
            "this webhook's scenario is not active",
        )
    };
    // An instant trigger's service may verify the hook while it is being registered, before
    // the scenario is active: its request is read and offered to the module first.
    if !route.active && route.instant.is_none() {
        return Err(inactive());
    }
    if let Err(wait) = state.inner.limiter.check(&id) {
        return Ok(retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests to this webhook; retry in {wait} s"),
            wait,
        ));
    }
    // A large body waits for room before it is read (its declared length; a body sent
    // without one may be as large as the limit), and keeps it until its execution ends.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(state.inner.limits.max_body_bytes);
    let admit = state
        .inner
        .runner
        .payload_gate()
        .admit(declared.min(state.inner.limits.max_body_bytes));
    // Not for long, though: a sender held mid-upload is better told to come back (webhook
    // senders retry a 503), and its connection freed.
    let Ok(admission) = tokio::time::timeout(LARGE_BODY_WAIT, admit).await else {
        return Ok(retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many large bodies are being handled at once; retry in a few seconds".into(),
            LARGE_BODY_RETRY_SECS,
        ));
    };
    let method = request.method().as_str().to_string();
    let RawBody(body) = RawBody::from_request(request, &state).await?;
    let mut delivery_id = None;
    if let Some(instant) = &route.instant {
        let (query, headers) = (pairs(&query), header_pairs(&headers));
        let request = HookRequest {
            method: &method,
            query: &query,
            headers: &headers,
            body: &body,
        };
        let trigger = instant.module.instant();
        if let Some(reply) =
            trigger.and_then(|t| t.verify(&instant.parameters, instant.target(), request))
        {
            return Ok(verification_reply(reply));
        }
        delivery_id = trigger.and_then(|t| t.delivery_id(request));
    }
    if !route.active {
        return Err(inactive());
    }
    let mut key = match delivery_id {
        Some(id) => HeaderValue::from_str(&id).ok().and_then(|v| dedupe_key(&v)),
        None => DEDUPE_HEADERS
            .iter()
            .find_map(|h| headers.get(*h))
            .and_then(dedupe_key),
    };
    let payload = if route.mail {
        key = key.or_else(|| mail_key(&body));
        super::mail::mail_bundle(&body).map_err(|e| {
            ApiError::bad_request(format!("a mailhook takes the raw message as its body: {e}"))
        })?
    } else {
        bundle(&headers, query, &body)?
    };
    drop(body);
    let delivery = new_delivery(&id, &route, key.as_deref(), payload)?;
    // Subscribed before the execution can run, so its end cannot be missed.
    let completion = route.responds.then(|| {
        state
            .inner
            .runner
            .completions()
            .subscribe(delivery.execution_id())
    });
    let expected = delivery.execution_id().to_string();
    let run_here = if route.sequential {
        RunHere::No
    } else if route.responds {
        RunHere::Wait
    } else {
        RunHere::IfFree
    };
    let delivery = state
        .inner
        .intake
        .accept_admitted(delivery, run_here, admission)
        .await;
    if completion.is_some() && !matches!(&delivery, Ok(Delivery::Accepted { .. })) {
        state.inner.runner.completions().forget(&expected);
    }
    let delivery = delivery?;
    state.inner.metrics.webhook_accepted();
    let execution_id = delivery.execution_id().to_string();
    let duplicate = matches!(delivery, Delivery::Duplicate { .. });
    let Some(completion) = completion else {
        return Ok(accepted(&execution_id, duplicate));
    };
    // A duplicate's execution may have finished long ago: only the store knows.
    let completion = (!duplicate).then_some(completion);
    let response = wait_for_response(&state, &execution_id, completion).await;
    state.inner.runner.completions().forget(&execution_id);
    Ok(match response? {
        Some(reply) => reply,
        None => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"executionId": execution_id, "status": "queued"})),
        )
            .into_response(),
    })
}

/// The delivery of `payload` (JSON text) to hook `id`, deduplicated by `key`.
pub(super) fn new_delivery(
    id: &str,
    route: &Route,
    key: Option<&str>,
    payload: String,
) -> ApiResult<NewDelivery> {
    NewDelivery::with_json_text(id, key, &route.scenario_id, route.version, payload).map_err(|e| {
        match e {
            // Nested one level too deep once wrapped in `{"value": …}`, say.
            StoreError::InvalidInput { reason, .. } => {
                ApiError::bad_request(format!("the body cannot be accepted: {reason}"))
            }
            e => e.into(),
        }
    })
}

/// The key a mail message is accepted once by: its `Message-ID`, as a header's key is.
pub(super) fn mail_key(raw: &[u8]) -> Option<String> {
    super::mail::message_id(raw).and_then(|id| key_of(id.as_bytes()))
}

/// Query parameters as text pairs (the query was read as JSON strings).
fn pairs(query: &Map<String, Value>) -> Vec<(String, String)> {
    query
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k.clone(), s.clone()),
            other => (k.clone(), other.to_string()),
        })
        .collect()
}

/// Headers with lower-case names; values that are not text are left out.
fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.into())))
        .collect()
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

fn accepted(execution_id: &str, duplicate: bool) -> Response {
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

/// Longest deduplication key stored as sent; longer ones are stored as their hash.
const MAX_DEDUPE_KEY: usize = 200;

/// The deduplication key a delivery's header value stands for: the trimmed value when it is
/// short printable text, else `sha256:` and the hex SHA-256 of its bytes — a long or binary
/// key still deduplicates instead of being dropped (which would run both copies).
fn dedupe_key(value: &HeaderValue) -> Option<String> {
    key_of(value.as_bytes())
}

/// [`dedupe_key`] of any bytes.
fn key_of(bytes: &[u8]) -> Option<String> {
    let bytes = bytes.trim_ascii();
    if bytes.is_empty() {
        return None;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if text.len() <= MAX_DEDUPE_KEY && !text.starts_with("sha256:") => {
            Some(text.to_string())
        }
        _ => Some(format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
        )),
    }
}

/// Waits for the execution to finish and turns its `response` into the HTTP reply: told by
/// this process's runner when it runs the execution here, else by reading the store every
/// 200 ms (another process runs it, or it finished before). `None` after the timeout.
async fn wait_for_response(
    state: &AppState,
    execution_id: &str,
    mut completion: Option<oneshot::Receiver<Finished>>,
) -> ApiResult<Option<Response>> {
    let deadline = tokio::time::Instant::now() + state.inner.limits.respond_timeout;
    let mut first = completion.is_none();
    loop {
        if !first {
            let finished = async {
                match completion.as_mut() {
                    Some(rx) => rx.await.unwrap_or(Finished::Unknown),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                finished = finished => {
                    completion = None;
                    if let Finished::Ran { response } = finished {
                        return Ok(Some(reply(execution_id, response.as_ref())));
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
            }
        }
        first = false;
        let execution = state.store().get_execution(execution_id).await?;
        if execution.status.is_terminal() {
            let response = stored_response(execution.report.as_ref())
                .map_err(|e| ApiError::internal("the execution's stored webhook response", e))?;
            return Ok(Some(reply(execution_id, response.as_ref())));
        }
    }
}

/// The `WebhookRespond` reply recorded in a finished execution's report, if it gave one; an
/// unreadable one is an error naming the field (`response.status: …`).
fn stored_response(report: Option<&Value>) -> Result<Option<WebhookResponse>, String> {
    match report.and_then(|r| r.get("response")) {
        None | Some(Value::Null) => Ok(None),
        Some(response) => serde_path_to_error::deserialize(response)
            .map(Some)
            .map_err(|e| format!("response.{}: {}", e.path(), e.inner())),
    }
}

/// The scenario's reply, or a plain acknowledgement when it gave none.
fn reply(execution_id: &str, response: Option<&WebhookResponse>) -> Response {
    match response {
        Some(r) => webhook_reply(r),
        None => accepted(execution_id, false),
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

    /// The JSON body kept as text means what reading it as a value meant: an object's
    /// fields (repeated keys: the last value, in the first one's place), other values under
    /// `value`, query parameters where the body sets nothing.
    #[test]
    fn json_bodies_become_the_bundles_their_values_would() {
        let json = HeaderMap::from_iter([(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )]);
        let query = |pairs: &[(&str, &str)]| -> Map<String, Value> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect()
        };
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Value);
        let cases: [Case; 6] = [
            (
                r#"{"b": 1, "a": {"x": [1, 2]}, "b": 3}"#,
                &[],
                json!({"b": 3, "a": {"x": [1, 2]}}),
            ),
            (
                r#" [1, "two"] "#,
                &[("q", "1")],
                json!({"value": [1, "two"], "q": "1"}),
            ),
            (r#""text""#, &[], json!({"value": "text"})),
            (
                r#"{"q": "body", "k\u00e9": null}"#,
                &[("q", "query"), ("r", "2")],
                json!({"q": "body", "ké": null, "r": "2"}),
            ),
            ("{}", &[], json!({})),
            ("", &[("q", "1")], json!({"q": "1"})),
        ];
        for (body, pairs, expected) in cases {
            let text = bundle(&json, query(pairs), body.as_bytes()).unwrap();
            let value: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value, expected, "{body}");
            // Key order is the body's.
            assert_eq!(value.to_string(), expected.to_string(), "{body}");
        }
        for bad in ["{", "[1,]", "{\"a\": 1} x"] {
            let err = bundle(&json, Map::new(), bad.as_bytes()).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(
                err.message.contains("not valid JSON"),
                "{bad}: {}",
                err.message
            );
        }
    }

    #[test]
    fn long_or_binary_dedupe_keys_are_hashed_not_dropped() {
        let key = |bytes: &[u8]| dedupe_key(&HeaderValue::from_bytes(bytes).unwrap());
        assert_eq!(key(b"  evt-1 ").as_deref(), Some("evt-1"));
        assert_eq!(key(b"   "), None);
        let long = "k".repeat(MAX_DEDUPE_KEY + 1);
        let hashed = key(long.as_bytes()).expect("a long key is kept");
        assert!(
            hashed.starts_with("sha256:") && hashed.len() == 7 + 64,
            "{hashed}"
        );
        assert_eq!(
            key(long.as_bytes()),
            Some(hashed.clone()),
            "the same key, the same hash"
        );
        let other = "k".repeat(MAX_DEDUPE_KEY + 2);
        assert_ne!(key(other.as_bytes()), Some(hashed));
        let exact = "k".repeat(MAX_DEDUPE_KEY);
        assert_eq!(key(exact.as_bytes()), Some(exact.clone()));
        // Bytes that are not UTF-8 still deduplicate.
        assert!(key(&[0xff, 0xfe]).is_some_and(|k| k.starts_with("sha256:")));
        // A sent key cannot pose as another key's hash.
        let posing = format!("sha256:{}", "0".repeat(64));
        assert_ne!(key(posing.as_bytes()), Some(posing));
    }

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

    #[test]
    fn a_stored_report_gives_back_the_same_response() {
        // As the runner stores it: the report without its log.
        let report = json!({"status": "success", "operations": 2, "cycles": 1, "error": null,
                            "response": serde_json::to_value(typed()).unwrap()});
        assert_eq!(stored_response(Some(&report)).unwrap(), Some(typed()));
        let none = json!({"status": "success", "operations": 1, "cycles": 1, "error": null});
        assert_eq!(stored_response(Some(&none)).unwrap(), None);
        assert_eq!(stored_response(None).unwrap(), None);
        let malformed = json!({"response": {"status": "soon", "headers": {}, "body": ""}});
        let error = stored_response(Some(&malformed)).unwrap_err();
        assert!(
            error.starts_with("response.status: invalid type"),
            "{error}"
        );
    }
}
