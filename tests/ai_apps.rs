//! The AI apps defined as data — `modules/openai-gpt-3.json`, `modules/anthropic-claude.json`,
//! `modules/gemini-ai.json` — and the outbound rate an app declares per connection.
//!
//! - OpenAI against Prism serving OpenAI's published description (`tests/apps/specs/
//!   openai-v1.yaml`), run by the real binary with a connection stored by `connections add
//!   --app openai-gpt-3 --token`: every module's method, path and credential are the
//!   description's (Prism does not check request bodies against this OpenAPI 3.1 description;
//!   the fake below checks the bodies the modules send).
//! - The three apps against a stateful fake of their APIs (below), written from their API
//!   references and checking credentials as the real ones do (OpenAI's bearer key, Anthropic's
//!   `x-api-key` with `anthropic-version`, Gemini's `x-goog-api-key` or `key`): success, auth
//!   failure (the key scrubbed from the error even when the API echoes it), 404, 429 retried
//!   after its `Retry-After`, 5xx retried then a `ConnectionError`, and `connections add
//!   --token` of api-key apps running the connection test against the fake.
//! - `ratedemo` (`tests/apps/ratedemo.json`, 20 requests per second): 200 calls from four
//!   concurrent executions through one connection never put more than 20 requests in any
//!   second at the fake (counted there, per window), and none fails with a 429; a 429 whose
//!   wait is in its body (Telegram's `parameters.retry_after`) is honoured.

// The fake's checks return the API's refusal as an axum response.
#![allow(clippy::result_large_err)]

mod common;

use common::modules::context_with as context;
use common::multipart::form_fields;
#[path = "service/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Map, Value, json};
use switchyard::apps::{AppOptions, AppRegistry};
use switchyard::module::connection::{Connection, Secrets};
use switchyard::module::{ErrorKind, ExecutionContext, Invocation, ModuleError, Registry};

use common::prism::Prism;
use harness::binary;

const OPENAI_KEY: &str = "sk-test-openai-7f3a9c2e";
const ANTHROPIC_KEY: &str = "sk-ant-test-91c2d4e6";
const GEMINI_KEY: &str = "AIzaTest-55d1b7f3a0";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

// ---------------------------------------------------------------------------------------------
// The fake AI APIs

/// A fault served instead of the next answers of a path.
#[derive(Clone)]
struct Fault {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Value,
}

#[derive(Default)]
struct FakeState {
    /// Method, path and body of every request, in order.
    seen: Vec<(String, String, Value)>,
    /// When each request arrived, by path.
    arrived: Vec<(String, Instant)>,
    faults: Vec<(String, usize, Fault)>,
    /// Arrival times of `/ping` (the rate test) and the 429s it answered.
    pings: Vec<Instant>,
    pings_refused: usize,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

impl Fake {
    async fn start() -> (Fake, String) {
        let fake = Fake::default();
        let app = Router::new()
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(openai_chat))
            .route("/v1/completions", post(openai_chat))
            .route("/v1/responses", post(openai_response))
            .route("/v1/images/generations", post(openai_image))
            .route("/v1/audio/transcriptions", post(openai_transcription))
            .route("/v1/messages", post(anthropic_message))
            .route("/v1beta/models", get(gemini_models))
            .route("/v1beta/models/{action}", post(gemini_generate))
            .route("/ping", any(ping))
            .fallback(|uri: Uri| async move {
                (StatusCode::NOT_FOUND, axum::Json(json!({"error": {"message": format!("Unknown request URL: {}", uri.path()), "type": "invalid_request_error"}})))
            })
            .with_state(fake.clone());
        let addr = common::server::serve(app).await;
        (fake, format!("http://{addr}"))
    }

    fn fail_next(&self, path: &str, times: usize, fault: Fault) {
        self.0
            .lock()
            .unwrap()
            .faults
            .push((path.to_string(), times, fault));
    }

    fn calls(&self, path: &str) -> usize {
        let state = self.0.lock().unwrap();
        state.seen.iter().filter(|(_, p, _)| p == path).count()
    }

    fn last_body(&self, path: &str) -> Value {
        let state = self.0.lock().unwrap();
        state
            .seen
            .iter()
            .rev()
            .find(|(_, p, _)| p == path)
            .map(|(_, _, b)| b.clone())
            .unwrap_or(Value::Null)
    }

    /// Records the request; the fault to answer with, if one is pending for `path`.
    fn record(&self, method: &Method, path: &str, body: &Value) -> Option<Response> {
        let mut state = self.0.lock().unwrap();
        state
            .seen
            .push((method.to_string(), path.to_string(), body.clone()));
        state.arrived.push((path.to_string(), Instant::now()));
        let fault = state
            .faults
            .iter_mut()
            .find(|(p, n, _)| p == path && *n > 0)?;
        fault.1 -= 1;
        Some(reply(fault.2.clone()))
    }
}

fn reply(fault: Fault) -> Response {
    let mut response = (
        StatusCode::from_u16(fault.status).unwrap(),
        axum::Json(fault.body),
    )
        .into_response();
    for (name, value) in fault.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

fn error(status: u16, body: Value) -> Response {
    reply(Fault {
        status,
        headers: Vec::new(),
        body,
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn parse(body: &str) -> Result<Value, Response> {
    serde_json::from_str(body).map_err(|_| {
        error(
            400,
            json!({"error": {"message": "We could not parse the JSON body of your request.", "type": "invalid_request_error"}}),
        )
    })
}

/// OpenAI's bearer key check (its 401 echoes the key it was given, as OpenAI's does).
fn openai_auth(headers: &HeaderMap) -> Result<(), Response> {
    let given = header(headers, "authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if given == OPENAI_KEY {
        return Ok(());
    }
    Err(error(
        401,
        json!({"error": {"message": format!("Incorrect API key provided: {given}. You can find your API key at https://platform.openai.com/account/api-keys."), "type": "invalid_request_error", "code": "invalid_api_key"}}),
    ))
}

/// Anthropic's checks: `x-api-key`, then the required `anthropic-version`.
fn anthropic_auth(headers: &HeaderMap) -> Result<(), Response> {
    if header(headers, "x-api-key") != Some(ANTHROPIC_KEY) {
        return Err(error(
            401,
            json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
        ));
    }
    if header(headers, "anthropic-version").is_none() {
        return Err(error(
            400,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "anthropic-version: header is required"}}),
        ));
    }
    Ok(())
}

/// Gemini's key, from `x-goog-api-key` or `?key=`: none is 403, a wrong one 400.
fn gemini_auth(headers: &HeaderMap, query: &Map<String, Value>) -> Result<(), Response> {
    let given = header(headers, "x-goog-api-key")
        .map(str::to_string)
        .or_else(|| query.get("key").and_then(Value::as_str).map(str::to_string));
    match given.as_deref() {
        Some(GEMINI_KEY) => Ok(()),
        None => Err(error(
            403,
            json!({"error": {"code": 403, "message": "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.", "status": "PERMISSION_DENIED"}}),
        )),
        Some(_) => Err(error(
            400,
            json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT"}}),
        )),
    }
}

async fn models(
    State(fake): State<Fake>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<Map<String, Value>>,
) -> Response {
    if let Some(fault) = fake.record(&method, "/v1/models", &Value::Object(query.clone())) {
        return fault;
    }
    if header(&headers, "x-api-key").is_some() {
        // Anthropic's List Models: paged by `limit` and `after_id`.
        if let Err(refused) = anthropic_auth(&headers) {
            return refused;
        }
        let data = json!([{"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5", "created_at": "2025-09-29T00:00:00Z"}]);
        return axum::Json(json!({"data": data, "has_more": false, "first_id": "claude-sonnet-4-5", "last_id": "claude-sonnet-4-5"})).into_response();
    }
    if let Err(refused) = openai_auth(&headers) {
        return refused;
    }
    axum::Json(json!({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"}]})).into_response()
}

/// The text of the last message's content (text, or text parts).
fn last_text(messages: &Value) -> String {
    let content = &messages
        .as_array()
        .and_then(|m| m.last())
        .unwrap_or(&Value::Null)["content"];
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

async fn openai_chat(
    State(fake): State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let path = uri.path().to_string();
    let body = match parse(&body) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if let Some(fault) = fake.record(&method, &path, &body) {
        return fault;
    }
    if let Err(refused) = openai_auth(&headers) {
        return refused;
    }
    let model = body["model"].as_str().unwrap_or_default();
    if model == "no-such-model" {
        return error(
            404,
            json!({"error": {"message": format!("The model `{model}` does not exist or you do not have access to it."), "type": "invalid_request_error", "code": "model_not_found"}}),
        );
    }
    if path == "/v1/completions" {
        let prompt = body["prompt"].as_str().unwrap_or_default();
        return axum::Json(json!({"id": "cmpl-1", "object": "text_completion", "created": 1700000000, "model": model,
            "choices": [{"text": format!("Completed: {prompt}"), "index": 0, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})).into_response();
    }
    // The Chat Completions API refuses keys it does not know in a message.
    for (i, message) in body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if let Some(extra) = message.as_object().and_then(|m| {
            m.keys()
                .find(|k| !["role", "content", "name"].contains(&k.as_str()))
        }) {
            return error(
                400,
                json!({"error": {"message": format!("Unrecognized request argument supplied: messages[{i}].{extra}"), "type": "invalid_request_error"}}),
            );
        }
    }
    let content = if body["response_format"]["type"] == "json_object" {
        json!({"urgency": "high", "summary": last_text(&body["messages"])}).to_string()
    } else {
        format!("Echo: {}", last_text(&body["messages"]))
    };
    let n = body["n"].as_u64().unwrap_or(1);
    let choices: Vec<Value> = (0..n)
        .map(|i| json!({"index": i, "message": {"role": "assistant", "content": content, "refusal": null}, "logprobs": null, "finish_reason": "stop"}))
        .collect();
    axum::Json(json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": model,
        "choices": choices, "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
        "system_fingerprint": "fp_1"})).into_response()
}

async fn openai_response(
    State(fake): State<Fake>,
    method: Method,
    headers: HeaderMap,
    body: String,
) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if let Some(fault) = fake.record(&method, "/v1/responses", &body) {
        return fault;
    }
    if let Err(refused) = openai_auth(&headers) {
        return refused;
    }
    let input = body["input"].as_str().unwrap_or_default();
    axum::Json(json!({"id": "resp_1", "object": "response", "created_at": 1741476542, "status": "completed",
        "model": body["model"], "instructions": body["instructions"],
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": "Answer to ", "annotations": []},
                         {"type": "output_text", "text": input, "annotations": []}]}],
        "usage": {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12}})).into_response()
}

async fn openai_image(
    State(fake): State<Fake>,
    method: Method,
    headers: HeaderMap,
    body: String,
) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if let Some(fault) = fake.record(&method, "/v1/images/generations", &body) {
        return fault;
    }
    if let Err(refused) = openai_auth(&headers) {
        return refused;
    }
    let n = body["n"].as_u64().unwrap_or(1);
    let data: Vec<Value> = (0..n)
        .map(|i| json!({"url": format!("https://images.example/{i}.png"), "revised_prompt": body["prompt"]}))
        .collect();
    axum::Json(json!({"created": 1700000000, "data": data})).into_response()
}

/// `POST /v1/audio/transcriptions`: a `multipart/form-data` body with the audio as the `file`
/// part and `model`; records the text fields (the file as its name, type and size) and keeps
/// the uploaded bytes under the path `/v1/audio/transcriptions#file`.
async fn openai_transcription(
    State(fake): State<Fake>,
    method: Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let content_type = header(&headers, "content-type").unwrap_or("").to_string();
    let Some((fields, files)) = form_fields(&content_type, &body) else {
        return error(
            400,
            json!({"error": {"message": "Could not parse multipart form", "type": "invalid_request_error"}}),
        );
    };
    if let Some(fault) = fake.record(&method, "/v1/audio/transcriptions", &fields) {
        return fault;
    }
    if let Err(refused) = openai_auth(&headers) {
        return refused;
    }
    let Some((_, audio)) = files.iter().find(|(name, _)| name == "file") else {
        return error(
            400,
            json!({"error": {"message": "Missing required parameter: 'file'.", "type": "invalid_request_error"}}),
        );
    };
    if fields["model"].as_str().unwrap_or("").is_empty() {
        return error(
            400,
            json!({"error": {"message": "Missing required parameter: 'model'.", "type": "invalid_request_error"}}),
        );
    }
    let audio = String::from_utf8_lossy(audio).into_owned();
    fake.record(&method, "/v1/audio/transcriptions#file", &json!(audio));
    axum::Json(json!({"text": format!("Transcribed {} bytes of {}", audio.len(), fields["file"]["file_name"].as_str().unwrap_or(""))})).into_response()
}

async fn anthropic_message(
    State(fake): State<Fake>,
    method: Method,
    headers: HeaderMap,
    body: String,
) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if let Some(fault) = fake.record(&method, "/v1/messages", &body) {
        return fault;
    }
    if let Err(refused) = anthropic_auth(&headers) {
        return refused;
    }
    let invalid = |message: String| {
        error(
            400,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}}),
        )
    };
    if body["max_tokens"].as_u64().is_none_or(|n| n < 1) {
        return invalid("max_tokens: Field required".into());
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    if messages.is_empty() {
        return invalid("messages: Field required".into());
    }
    for (i, message) in messages.iter().enumerate() {
        if let Some(extra) = message.as_object().and_then(|m| {
            m.keys()
                .find(|k| !["role", "content"].contains(&k.as_str()))
        }) {
            return invalid(format!(
                "messages.{i}.{extra}: Extra inputs are not permitted"
            ));
        }
        if !["user", "assistant"].contains(&message["role"].as_str().unwrap_or_default()) {
            return invalid(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            ));
        }
    }
    let model = body["model"].as_str().unwrap_or_default();
    if model == "no-such-model" {
        return error(
            404,
            json!({"type": "error", "error": {"type": "not_found_error", "message": format!("model: {model}")}}),
        );
    }
    let text = format!(
        "{}Echo: {}",
        body["system"]
            .as_str()
            .map(|s| format!("[{s}] "))
            .unwrap_or_default(),
        last_text(&body["messages"])
    );
    axum::Json(json!({"id": "msg_01", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5}})).into_response()
}

async fn gemini_models(
    State(fake): State<Fake>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<Map<String, Value>>,
) -> Response {
    if let Some(fault) = fake.record(&method, "/v1beta/models", &Value::Object(query.clone())) {
        return fault;
    }
    if let Err(refused) = gemini_auth(&headers, &query) {
        return refused;
    }
    axum::Json(json!({"models": [{"name": "models/gemini-2.5-flash", "displayName": "Gemini 2.5 Flash"}], "nextPageToken": "p2"})).into_response()
}

async fn gemini_generate(
    State(fake): State<Fake>,
    method: Method,
    UrlPath(action): UrlPath<String>,
    headers: HeaderMap,
    Query(query): Query<Map<String, Value>>,
    body: String,
) -> Response {
    let path = format!("/v1beta/models/{action}");
    let body = match parse(&body) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if let Some(fault) = fake.record(&method, &path, &body) {
        return fault;
    }
    if let Err(refused) = gemini_auth(&headers, &query) {
        return refused;
    }
    let Some(model) = action.strip_suffix(":generateContent") else {
        return error(
            404,
            json!({"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}}),
        );
    };
    if model != "gemini-2.5-flash" && model != "gemini-2.5-pro" {
        return error(
            404,
            json!({"error": {"code": 404, "message": format!("models/{model} is not found for API version v1beta, or is not supported for generateContent."), "status": "NOT_FOUND"}}),
        );
    }
    let contents = body["contents"].as_array().cloned().unwrap_or_default();
    if contents.is_empty() {
        return error(
            400,
            json!({"error": {"code": 400, "message": "* GenerateContentRequest.contents: contents is not specified", "status": "INVALID_ARGUMENT"}}),
        );
    }
    for (i, content) in contents.iter().enumerate() {
        for (j, part) in content["parts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if let Some(extra) = part.as_object().and_then(|p| {
                p.keys().find(|k| {
                    !["text", "inlineData", "inline_data", "fileData", "file_data"]
                        .contains(&k.as_str())
                })
            }) {
                return error(
                    400,
                    json!({"error": {"code": 400, "message": format!("Invalid JSON payload received. Unknown name \"{extra}\" at 'contents[{i}].parts[{j}]': Cannot find field."), "status": "INVALID_ARGUMENT"}}),
                );
            }
        }
    }
    let asked = contents
        .last()
        .and_then(|c| c["parts"].as_array())
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let parts = if body["generationConfig"]["responseMimeType"] == "application/json" {
        json!([{"text": "{\"relevance_score\": 7,"}, {"text": " \"label\": \"ok\"}"}])
    } else {
        json!([{"text": "Echo: "}, {"text": asked}])
    };
    axum::Json(json!({"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 6, "totalTokenCount": 10},
        "modelVersion": model, "responseId": "r-1"})).into_response()
}

/// The rate test's endpoint: refuses (429, Telegram's body) a request that would be the 21st
/// in one second.
async fn ping(State(fake): State<Fake>, method: Method) -> Response {
    if let Some(fault) = fake.record(&method, "/ping", &Value::Null) {
        return fault;
    }
    let now = Instant::now();
    let mut state = fake.0.lock().unwrap();
    let in_window = state
        .pings
        .iter()
        .filter(|t| now.duration_since(**t) < Duration::from_secs(1))
        .count();
    state.pings.push(now);
    if in_window >= 20 {
        state.pings_refused += 1;
        return error(
            429,
            json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}),
        );
    }
    axum::Json(json!({"ok": true, "n": state.pings.len()})).into_response()
}

// ---------------------------------------------------------------------------------------------
// Calling modules in process

fn connection(app: &str, kind: &str, fields: Value) -> Connection {
    Connection {
        id: format!("{app}-1"),
        name: "conn".into(),
        app: app.into(),
        kind: kind.into(),
        fields: Secrets(fields.as_object().cloned().unwrap()),
    }
}

fn registry() -> AppRegistry {
    let mut options = AppOptions::allowing_loopback();
    options.apps = vec![repo("tests/apps")];
    AppRegistry::build(options).unwrap()
}

async fn call(
    registry: &AppRegistry,
    module: &str,
    mapper: Value,
    context: &ExecutionContext,
) -> Result<Value, ModuleError> {
    let found = registry
        .module(module)
        .unwrap_or_else(|| panic!("{module} is served"));
    let parameters = json!({"__IMTCONN__": "conn"}).as_object().cloned().unwrap();
    let mut out = found
        .call(Invocation {
            module_id: 2,
            module,
            parameters: &parameters,
            mapper,
            context,
        })
        .await?;
    assert_eq!(out.len(), 1, "{module}: {out:?}");
    Ok(out.remove(0))
}

/// Asserts `secret` appears nowhere in `error`.
fn assert_hidden(error: &ModuleError, secret: &str) {
    let shown = format!(
        "{error:?} {error} {}",
        serde_json::to_string(error).unwrap()
    );
    assert!(!shown.contains(secret), "the key leaked: {shown}");
}

fn rate_limited(seconds: u64, body: Value) -> Fault {
    Fault {
        status: 429,
        headers: vec![("retry-after", seconds.to_string())],
        body,
    }
}

fn server_error(status: u16, body: Value) -> Fault {
    Fault {
        status,
        headers: Vec::new(),
        body,
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAI against Prism and OpenAI's published description

fn switchyard(bases: &str, data: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(binary());
    command
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("SWITCHYARD_APPS_DIR", repo("tests/apps"))
        .env("SWITCHYARD_ALLOW_EGRESS", "127.0.0.1")
        .env_remove("SWITCHYARD_DATABASE_URL")
        .env_remove("SWITCHYARD_MASTER_KEY")
        .env("SWITCHYARD_APP_BASE_URLS", bases)
        .stdin(Stdio::null());
    if bases.is_empty() {
        command.env_remove("SWITCHYARD_APP_BASE_URLS");
    }
    command.output().unwrap()
}

/// `switchyard run` of a one-module scenario; its report.
fn run(bases: &str, dir: &Path, data: &Path, module: Value) -> Value {
    let file = dir.join("scenario.json");
    let blueprint = json!({"name": "contract", "flow": [module]});
    std::fs::write(&file, serde_json::to_vec(&blueprint).unwrap()).unwrap();
    let out = switchyard(bases, data, &["run", file.to_str().unwrap(), "--json"]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no report: {}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_follows_the_published_contract() {
    let prism = Prism::start(&repo("tests/apps/specs/openai-v1.yaml")).await;
    let bases = format!("openai-gpt-3={}", prism.url);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // `--token` stores the app's key (its connection test, GET /v1/models, runs first).
    let out = switchyard(
        &bases,
        &data,
        &[
            "connections",
            "add",
            "openai",
            "--app",
            "openai-gpt-3",
            "--token",
            OPENAI_KEY,
            "--id",
            "1427740",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let module = |name: &str, mapper: Value| {
        json!({"id": 10, "module": format!("openai-gpt-3:{name}"), "version": 1,
               "parameters": {"__IMTCONN__": 1427740}, "mapper": mapper})
    };
    for (name, mapper) in [
        // As a real export maps it: numbers as text, Make's image keys on a message.
        (
            "CreateCompletion",
            json!({"model": "chatgpt-4o-latest", "top_p": "1", "select": "chat",
            "messages": [{"role": "system", "content": "You are an assistant."},
                         {"role": "user", "content": "Write the next paragraph.", "imageDetail": "auto"}],
            "max_tokens": "2048", "temperature": "1", "n_completions": "1", "response_format": "text"}),
        ),
        (
            "CreateCompletion",
            json!({"model": "gpt-4o", "select": "chat", "response_format": "json_object",
            "messages": [{"role": "user", "content": "What is this?", "imageInputType": "url",
                          "imageUrl": "https://example.com/cat.png", "imageDetail": "low"}],
            "stop": ["END"], "seed": 7, "logit_bias": [{"token": "50256", "probability": -100}],
            "additionalParameters": [{"key": "user", "type": "text", "value": "u-1"}]}),
        ),
        (
            "CreateCompletion",
            json!({"model": "gpt-3.5-turbo-instruct", "select": "prompt",
            "prompt": "Say this is a test", "max_tokens": 7}),
        ),
        (
            "createModelResponse",
            json!({"input": "<CONTEXT>x</CONTEXT>", "model": "gpt-4.1",
            "instructions": "Be brief.", "max_output_tokens": "10000", "inputContentType": "text",
            "createConversation": false, "store": false}),
        ),
        (
            "CreateImage",
            json!({"model": "dall-e-3", "prompt": "A lighthouse at dusk", "n": 1,
            "size": "1024x1024", "quality": "hd", "style": "natural", "response_format": "url"}),
        ),
        ("makeApiCall", json!({"url": "/v1/models", "method": "GET"})),
    ] {
        let report = run(&bases, dir.path(), &data, module(name, mapper));
        assert_eq!(report["status"], "success", "{name}: {report}");
        let output = &report["log"][0]["output"];
        assert!(output.is_object(), "{name}: {report}");
        if name == "CreateCompletion" || name == "createModelResponse" {
            assert!(output.get("result").is_some(), "{name}: {report}");
        }
    }
    // A path the description lacks is its 404, a DataError.
    let report = run(
        &bases,
        dir.path(),
        &data,
        module(
            "makeApiCall",
            json!({"url": "/v1/nothing-here", "method": "GET"}),
        ),
    );
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(report["error"]["name"], "DataError", "{report}");
    assert_eq!(report["error"]["details"]["statusCode"], 404, "{report}");
}

// ---------------------------------------------------------------------------------------------
// OpenAI, Anthropic and Gemini against the fake

/// `CreateTranscription` uploads another module's file as the `file` part, with the model and
/// options as text fields, and outputs the API's `{text}` (what `{{3.text}}` reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_transcription_uploads_the_audio() {
    let (fake, url) = Fake::start().await;
    let registry = registry();
    let ok = context(connection(
        "openai-gpt-3",
        "apiKey",
        json!({"token": OPENAI_KEY, "baseUrl": url}),
    ));
    let audio = switchyard::expr::binary::store(b"ID3 fake mp3 audio", "audio/mpeg", "").unwrap();
    let mapper = json!({"fileName": "call.mp3", "fileData": audio.to_value(), "model": "whisper-1",
        "language": "en", "prompt": "Names: Ana, Bo.", "temperature": 0.2});
    let out = call(
        &registry,
        "openai-gpt-3:CreateTranscription",
        mapper.clone(),
        &ok,
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"text": "Transcribed 18 bytes of call.mp3"}));
    let sent = fake.last_body("/v1/audio/transcriptions");
    assert_eq!(
        sent,
        json!({"file": {"file_name": "call.mp3", "mime_type": "audio/mpeg", "size": 18},
               "model": "whisper-1", "language": "en", "prompt": "Names: Ana, Bo.",
               "temperature": "0.2", "response_format": "json"}),
        "the options not given are not sent"
    );
    assert_eq!(
        fake.last_body("/v1/audio/transcriptions#file"),
        "ID3 fake mp3 audio"
    );
    // Only what is given is sent.
    call(
        &registry,
        "openai-gpt-3:CreateTranscription",
        json!({"fileName": "call.mp3", "fileData": audio.to_value(), "model": "whisper-1"}),
        &ok,
    )
    .await
    .unwrap();
    let sent = fake.last_body("/v1/audio/transcriptions");
    let keys: Vec<&str> = sent
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["file", "model", "response_format"], "{sent}");
    // A wrong key: 401, the key in no error.
    let wrong = context(connection(
        "openai-gpt-3",
        "apiKey",
        json!({"token": "sk-wrong-key-123456", "baseUrl": url}),
    ));
    let err = call(
        &registry,
        "openai-gpt-3:CreateTranscription",
        mapper,
        &wrong,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidAccessTokenError, "{err}");
    assert_hidden(&err, "sk-wrong-key-123456");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_modules_against_the_fake() {
    let (fake, url) = Fake::start().await;
    let registry = registry();
    let ok = context(connection(
        "openai-gpt-3",
        "apiKey",
        json!({"token": OPENAI_KEY, "baseUrl": url}),
    ));
    let chat = json!({"model": "gpt-4o-mini", "select": "chat", "response_format": "json_object",
        "parseJSONResponse": true, "n_completions": "2",
        "messages": [{"role": "user", "content": "Triage: my order is late", "imageDetail": "auto"}]});
    let out = call(
        &registry,
        "openai-gpt-3:CreateCompletion",
        chat.clone(),
        &ok,
    )
    .await
    .unwrap();
    // `result` is the first choice's answer, parsed as JSON on request (what `{{2.result.urgency}}` reads).
    assert_eq!(out["result"]["urgency"], "high", "{out}");
    assert_eq!(out["choices"].as_array().unwrap().len(), 2, "{out}");
    assert_eq!(out["usage"]["total_tokens"], 21);
    let sent = fake.last_body("/v1/chat/completions");
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": "Triage: my order is late"}])
    );
    assert_eq!(sent["response_format"], json!({"type": "json_object"}));
    assert_eq!(sent["n"], 2);
    assert!(sent.get("max_completion_tokens").is_none(), "{sent}");

    let out = call(&registry, "openai-gpt-3:CreateCompletion",
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 50}), &ok)
        .await
        .unwrap();
    assert_eq!(
        out["result"],
        "Echo: Hello",
        "{}",
        fake.last_body("/v1/chat/completions")
    );
    assert_eq!(
        fake.last_body("/v1/chat/completions")["max_completion_tokens"],
        50
    );

    let out = call(&registry, "openai-gpt-3:CreateCompletion",
        json!({"model": "gpt-3.5-turbo-instruct", "select": "prompt", "prompt": "Hi", "max_tokens": 5}), &ok)
        .await
        .unwrap();
    assert_eq!(out["result"], "Completed: Hi");
    assert_eq!(fake.last_body("/v1/completions")["max_tokens"], 5);

    let out = call(
        &registry,
        "openai-gpt-3:createModelResponse",
        json!({"model": "gpt-4.1", "input": "the question", "instructions": "Be brief."}),
        &ok,
    )
    .await
    .unwrap();
    assert_eq!(out["result"], "Answer to the question");
    assert_eq!(out["status"], "completed");

    let out = call(
        &registry,
        "openai-gpt-3:CreateImage",
        json!({"model": "dall-e-2", "prompt": "A fox", "n": "2", "size": "256x256"}),
        &ok,
    )
    .await
    .unwrap();
    assert_eq!(out["data"][1]["url"], "https://images.example/1.png");

    // A bad field is refused before anything is sent.
    let before = fake.calls("/v1/chat/completions");
    let err = call(&registry, "openai-gpt-3:CreateCompletion",
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "temperature": 3}), &ok)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);
    assert!(err.message.contains("temperature"), "{err}");
    assert_eq!(fake.calls("/v1/chat/completions"), before);

    // 404: an unknown model.
    let err = call(
        &registry,
        "openai-gpt-3:CreateCompletion",
        json!({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}),
        &ok,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);
    assert!(
        err.message
            .starts_with("[404] The model `no-such-model` does not exist"),
        "{err}"
    );

    // Auth failure: the API echoes the wrong key; the error does not.
    let wrong = "sk-wrong-key-0d9e8f7a";
    let bad = context(connection(
        "openai-gpt-3",
        "apiKey",
        json!({"token": wrong, "baseUrl": url}),
    ));
    let err = call(
        &registry,
        "openai-gpt-3:CreateCompletion",
        chat.clone(),
        &bad,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidAccessTokenError);
    assert!(err.message.contains("Incorrect API key provided"), "{err}");
    assert_hidden(&err, wrong);

    // 429 with Retry-After: waited for, then answered.
    let before = fake.calls("/v1/chat/completions");
    fake.fail_next("/v1/chat/completions", 1, rate_limited(1, json!({"error": {"message": "Rate limit reached for gpt-4o-mini", "type": "requests", "code": "rate_limit_exceeded"}})));
    let out = call(
        &registry,
        "openai-gpt-3:CreateCompletion",
        chat.clone(),
        &ok,
    )
    .await
    .unwrap();
    assert_eq!(out["result"]["urgency"], "high");
    assert_eq!(fake.calls("/v1/chat/completions"), before + 2);

    // 5xx: retried, then a ConnectionError with the API's message.
    let before = fake.calls("/v1/chat/completions");
    fake.fail_next("/v1/chat/completions", 4, server_error(500, json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error"}})));
    let err = call(
        &registry,
        "openai-gpt-3:CreateCompletion",
        chat.clone(),
        &ok,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ConnectionError);
    assert!(
        err.message.contains("[500] The server had an error"),
        "{err}"
    );
    assert_eq!(fake.calls("/v1/chat/completions"), before + 4);

    // Make an API Call: relative paths only; the connection's header cannot be replaced.
    let out = call(
        &registry,
        "openai-gpt-3:makeApiCall",
        json!({"url": "/v1/models"}),
        &ok,
    )
    .await
    .unwrap();
    assert_eq!(out["statusCode"], 200);
    assert_eq!(out["body"]["data"][0]["id"], "gpt-4o-mini");
    for bad_url in [
        "https://evil.test/v1/models",
        "//evil.test/x",
        "/v1/../../x",
    ] {
        let err = call(
            &registry,
            "openai-gpt-3:makeApiCall",
            json!({"url": bad_url}),
            &ok,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::DataError, "{bad_url}");
    }
    let err = call(&registry, "openai-gpt-3:makeApiCall",
        json!({"url": "/v1/models", "headers": [{"key": "Authorization", "value": "Bearer other"}]}), &ok)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_modules_against_the_fake() {
    let (fake, url) = Fake::start().await;
    let registry = registry();
    let fields =
        |key: &str| json!({"key": key, "name": "x-api-key", "placement": "header", "baseUrl": url});
    let ok = context(connection(
        "anthropic-claude",
        "apiKey",
        fields(ANTHROPIC_KEY),
    ));
    // As exports map it: Make's `inputType` on a message, numbers as text.
    let message = json!({"model": "claude-haiku-4-5-20251001", "system": "Be brief", "max_tokens": "1000",
        "temperature": "0", "messages": [{"role": "user", "content": "<message>hi</message>", "inputType": "single"}]});
    let out = call(
        &registry,
        "anthropic-claude:createAMessage",
        message.clone(),
        &ok,
    )
    .await
    .unwrap();
    assert_eq!(
        out["textResponse"], "[Be brief] Echo: <message>hi</message>",
        "{out}"
    );
    assert_eq!(out["content"][0]["type"], "text");
    assert_eq!(out["stop_reason"], "end_turn");
    let sent = fake.last_body("/v1/messages");
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": "<message>hi</message>"}])
    );
    assert_eq!(sent["max_tokens"], 1000);
    // Content blocks are sent as they are.
    let blocks = json!({"model": "claude-opus-4-6", "max_tokens": 10,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Summarize"}]}]});
    let out = call(&registry, "anthropic-claude:createAMessage", blocks, &ok)
        .await
        .unwrap();
    assert_eq!(out["textResponse"], "Echo: Summarize");

    // Required fields are checked before anything is sent.
    let before = fake.calls("/v1/messages");
    let err = call(
        &registry,
        "anthropic-claude:createAMessage",
        json!({"model": "claude-opus-4-6", "messages": [{"role": "user", "content": "x"}]}),
        &ok,
    )
    .await
    .unwrap_err();
    assert!(
        err.message.contains("max_tokens: this field is required"),
        "{err}"
    );
    assert_eq!(fake.calls("/v1/messages"), before);

    let mut unknown = message.clone();
    unknown["model"] = json!("no-such-model");
    let err = call(&registry, "anthropic-claude:createAMessage", unknown, &ok)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);
    assert_eq!(err.message, "[404] model: no-such-model");

    let wrong = "sk-ant-wrong-3b5d7f9a";
    let bad = context(connection("anthropic-claude", "apiKey", fields(wrong)));
    let err = call(
        &registry,
        "anthropic-claude:createAMessage",
        message.clone(),
        &bad,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidAccessTokenError);
    assert_eq!(err.message, "[401] invalid x-api-key");
    assert_hidden(&err, wrong);

    let before = fake.calls("/v1/messages");
    fake.fail_next("/v1/messages", 1, rate_limited(1, json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your per-minute rate limit"}})));
    call(
        &registry,
        "anthropic-claude:createAMessage",
        message.clone(),
        &ok,
    )
    .await
    .unwrap();
    assert_eq!(fake.calls("/v1/messages"), before + 2);

    // 529 (overloaded) is a server error: retried, then a ConnectionError.
    fake.fail_next("/v1/messages", 4, server_error(529, json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})));
    let err = call(
        &registry,
        "anthropic-claude:createAMessage",
        message.clone(),
        &ok,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ConnectionError);
    assert_eq!(err.message, "[529] Overloaded");

    let out = call(
        &registry,
        "anthropic-claude:makeApiCall",
        json!({"url": "/v1/models", "qs": [{"key": "limit", "value": "1"}]}),
        &ok,
    )
    .await
    .unwrap();
    assert_eq!(out["body"]["data"][0]["id"], "claude-sonnet-4-5");
    let err = call(
        &registry,
        "anthropic-claude:makeApiCall",
        json!({"url": "/v1/models", "headers": [{"key": "x-api-key", "value": "other"}]}),
        &ok,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_modules_against_the_fake() {
    let (fake, url) = Fake::start().await;
    let registry = registry();
    let fields = |key: &str| json!({"key": key, "name": "x-goog-api-key", "placement": "header", "baseUrl": url});
    let ok = context(connection("gemini-ai", "apiKey", fields(GEMINI_KEY)));
    let path = "/v1beta/models/gemini-2.5-flash:generateContent";
    // As exports map it: Make's `type` on a part, a system instruction, an empty config.
    let completion = json!({"model": "gemini-2.5-flash",
        "contents": [{"role": "user", "parts": [{"text": "Hola", "type": "text"}]}],
        "generationConfig": {}, "system_instruction": {"parts": [{"text": "Sos Luz."}]}});
    let out = call(
        &registry,
        "gemini-ai:createACompletionGeminiPro",
        completion.clone(),
        &ok,
    )
    .await
    .unwrap();
    assert_eq!(out["result"], "Echo: Hola", "{out}");
    assert_eq!(out["candidates"][0]["finishReason"], "STOP");
    let sent = fake.last_body(path);
    assert_eq!(
        sent["contents"],
        json!([{"role": "user", "parts": [{"text": "Hola"}]}])
    );
    assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Sos Luz.");

    // A JSON answer is parsed: what `{{4.result.relevance_score}}` reads.
    let mut json_mode = completion.clone();
    json_mode["model"] = json!("models/gemini-2.5-flash");
    json_mode["generationConfig"] =
        json!({"responseMimeType": "application/json", "temperature": "0.2"});
    let out = call(
        &registry,
        "gemini-ai:createACompletionGeminiPro",
        json_mode,
        &ok,
    )
    .await
    .unwrap();
    assert_eq!(out["result"]["relevance_score"], 7, "{out}");

    let out = call(
        &registry,
        "gemini-ai:simpleTextPrompt",
        json!({"model": "gemini-2.5-flash", "prompt": "Resumí esto"}),
        &ok,
    )
    .await
    .unwrap();
    assert_eq!(out["result"], "Echo: Resumí esto");

    // A model id that would change the path is refused before anything is sent.
    let before = fake.calls(path);
    let err = call(
        &registry,
        "gemini-ai:simpleTextPrompt",
        json!({"model": "../files", "prompt": "x"}),
        &ok,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);
    assert!(err.message.contains("model"), "{err}");
    assert_eq!(fake.calls(path), before);

    let err = call(
        &registry,
        "gemini-ai:simpleTextPrompt",
        json!({"model": "gemini-0-nope", "prompt": "x"}),
        &ok,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);
    assert!(
        err.message
            .starts_with("[404] models/gemini-0-nope is not found"),
        "{err}"
    );

    // A wrong key is Gemini's 400; the key is in no error.
    let wrong = "AIzaWrong-0a1b2c3d4e";
    let bad = context(connection("gemini-ai", "apiKey", fields(wrong)));
    let err = call(
        &registry,
        "gemini-ai:simpleTextPrompt",
        json!({"model": "gemini-2.5-flash", "prompt": "x"}),
        &bad,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.message,
        "[400] API key not valid. Please pass a valid API key."
    );
    assert_hidden(&err, wrong);

    let before = fake.calls(path);
    fake.fail_next(path, 1, rate_limited(1, json!({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}})));
    call(
        &registry,
        "gemini-ai:simpleTextPrompt",
        json!({"model": "gemini-2.5-flash", "prompt": "x"}),
        &ok,
    )
    .await
    .unwrap();
    assert_eq!(fake.calls(path), before + 2);

    fake.fail_next(path, 4, server_error(503, json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}})));
    let err = call(
        &registry,
        "gemini-ai:simpleTextPrompt",
        json!({"model": "gemini-2.5-flash", "prompt": "x"}),
        &ok,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ConnectionError);
    assert_eq!(
        err.message,
        "[503] The model is overloaded. Please try again later."
    );

    let out = call(
        &registry,
        "gemini-ai:makeApiCall",
        json!({"url": "/v1beta/models", "qs": [{"key": "pageSize", "value": "1"}]}),
        &ok,
    )
    .await
    .unwrap();
    assert_eq!(out["body"]["models"][0]["name"], "models/gemini-2.5-flash");
}

/// `connections add --app APP --token T` stores an api-key app's key where its definition
/// puts it; the connection's test request runs against the fake first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_apps_take_a_token() {
    let (fake, url) = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (name, app, key, test_path) in [
        ("claude", "anthropic-claude", ANTHROPIC_KEY, "/v1/models"),
        ("gemini", "gemini-ai", GEMINI_KEY, "/v1beta/models"),
        ("openai", "openai-gpt-3", OPENAI_KEY, "/v1/models"),
    ] {
        let before = fake.calls(test_path);
        let out = switchyard(
            "",
            &data,
            &[
                "connections",
                "add",
                name,
                "--app",
                app,
                "--token",
                key,
                "--base-url",
                &url,
            ],
        );
        assert!(
            out.status.success(),
            "{app}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            fake.calls(test_path),
            before + 1,
            "{app}: the connection test ran"
        );
        // A key the API refuses is not stored, and the refusal does not show it.
        let wrong = format!("{key}-wrong");
        let out = switchyard(
            "",
            &data,
            &[
                "connections",
                "add",
                &format!("{name}-2"),
                "--app",
                app,
                "--token",
                &wrong,
                "--base-url",
                &url,
            ],
        );
        assert!(!out.status.success(), "{app}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains(&wrong), "{app}: {stderr}");
    }
    let out = switchyard("", &data, &["connections", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut kinds: Vec<(String, String)> = listed["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("claude".to_string(), "api_key".to_string()),
            ("gemini".to_string(), "api_key".to_string()),
            ("openai".to_string(), "bearer".to_string())
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The declared rate

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_through_one_connection_keeps_the_declared_rate() {
    let (fake, url) = Fake::start().await;
    let registry = Arc::new(registry());
    let conn = connection("ratedemo", "token", json!({"token": "t-1", "baseUrl": url}));
    // Four executions at once, 50 bundles each, through the one connection.
    let mut tasks = Vec::new();
    for execution in 0..4 {
        let registry = registry.clone();
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let ctx = context(conn);
            let mut failures = Vec::new();
            for n in 0..50 {
                if let Err(e) = call(
                    &registry,
                    "ratedemo:Ping",
                    json!({"n": execution * 50 + n}),
                    &ctx,
                )
                .await
                {
                    failures.push(e);
                }
            }
            failures
        }));
    }
    for task in tasks {
        let failures = task.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    let state = fake.0.lock().unwrap();
    assert_eq!(state.pings.len(), 200);
    assert_eq!(
        state.pings_refused, 0,
        "the fake refused requests over its rate"
    );
    // Counted at the fake: no second holds more than 20 arrivals.
    let arrivals = &state.pings;
    for (i, start) in arrivals.iter().enumerate() {
        let in_window = arrivals
            .iter()
            .filter(|t| **t >= *start && t.duration_since(*start) < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= 20,
            "{in_window} requests in the second from arrival {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_given_in_the_body_is_honoured() {
    let (fake, url) = Fake::start().await;
    let registry = registry();
    let ctx = context(connection(
        "ratedemo",
        "token",
        json!({"token": "t-1", "baseUrl": url}),
    ));
    // Telegram's shape: no Retry-After header, the wait in `parameters.retry_after`.
    fake.fail_next("/ping", 1, server_error(429, json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 2", "parameters": {"retry_after": 2}})));
    call(&registry, "ratedemo:Ping", json!({"n": 1}), &ctx)
        .await
        .unwrap();
    let state = fake.0.lock().unwrap();
    let arrivals: Vec<Instant> = state
        .arrived
        .iter()
        .filter(|(p, _)| p == "/ping")
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(arrivals.len(), 2);
    // By the fake's clock, the second request came after the wait the body gave (the
    // backoff without it is 200 ms).
    assert!(
        arrivals[1].duration_since(arrivals[0]) >= Duration::from_secs(2),
        "{:?}",
        arrivals[1].duration_since(arrivals[0])
    );
}
