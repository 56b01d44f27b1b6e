//! The Slack app (`modules/slack.json`) against a stateful fake of the Slack Web API written
//! from its reference (https://api.slack.com/web): methods under `/api/<method>`, the token as
//! `Authorization: Bearer` (a wrong one answered `{"ok": false, "error": "invalid_auth"}` with
//! HTTP 200, as Slack does), arguments as a form or query, errors as `{"ok": false, "error"}`,
//! cursor paging (`response_metadata.next_cursor`), 429 with `Retry-After`, and the external
//! file upload (`files.getUploadURLExternal`, the upload URL, `files.completeUploadExternal`);
//! and against Prism serving an excerpt of Slack's published OpenAPI description
//! (`tests/apps/specs/slack-web-v2.json`).
//!
//! - Every module: success, a wrong token (`InvalidAccessTokenError` naming `invalid_auth`, the
//!   token in no error), an unknown channel (`DataError` naming `channel_not_found`), 429 waited
//!   for as `Retry-After` says, 5xx retried then a `ConnectionError`.
//! - `ListChannels` and `SearchMessages` page to their limit; `WatchPublicChannelMessages` emits
//!   each new message once, also across a restart of `serve`.
//! - `connections add NAME --app slack --token T` stores the token and checks it with
//!   `auth.test` first.
//! - `WatchEvents` (the Events API): every request's `X-Slack-Signature` is checked with the
//!   signing secret of its `signingSecret` connection (resolved through the connections, a
//!   token connection refused) and its timestamp held to 5 minutes before the URL verification
//!   challenge is answered; through `serve`, activation refuses a missing or mistyped
//!   connection, a forged or stale delivery is refused, Slack's retry of an event (same
//!   `event_id`) runs once, and the secret appears in no API answer.

// The fake's checks return the API's refusal as an axum response.
#![allow(clippy::result_large_err)]

mod common;

use common::modules::{OneConnection, context_with};
#[path = "service/harness.rs"]
mod harness;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{Map, Value, json};
use switchyard::apps::{AppOptions, AppRegistry};
use switchyard::module::connection::{Connection, ConnectionsHandle, Secrets};
use switchyard::module::polling::{PollRequest, TriggerState};
use switchyard::module::{ErrorKind, ExecutionContext, Invocation, ModuleError, Registry};

use common::prism::Prism;
use harness::{Backend, TestDb};

const TOKEN: &str = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx";
const WRONG: &str = "xoxb-1234567890-0987654321-WrongTokenWrongToken00";

#[derive(Default)]
struct SlackState {
    base: String,
    /// Channel id → its messages, oldest first.
    channels: Vec<(String, String)>,
    messages: HashMap<String, Vec<Value>>,
    next_ts: u64,
    uploads: HashMap<String, (String, u64, Option<Vec<u8>>)>,
    /// Method and arguments of every request with the right token, and when it arrived.
    seen: Vec<(String, Map<String, Value>, Instant)>,
    /// Faults for the next requests of a method: (method, times, status, Retry-After, body).
    faults: Vec<(String, usize, u16, Option<u64>, Value)>,
}

#[derive(Clone, Default)]
struct FakeSlack(Arc<Mutex<SlackState>>);

fn answer(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn refused(error: &str) -> Response {
    answer(json!({"ok": false, "error": error}))
}

fn text(args: &Map<String, Value>, name: &str) -> Option<String> {
    args.get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A query string or form as an object (the last value of a repeated name).
fn form(text: &str) -> Map<String, Value> {
    let Ok(url) = reqwest::Url::parse(&format!("http://form.test/?{text}")) else {
        return Map::new();
    };
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

fn page_of(items: &[Value], cursor: Option<&str>, limit: usize) -> (Vec<Value>, String) {
    let start = cursor
        .and_then(|c| c.strip_prefix("next:"))
        .and_then(|n| n.parse().ok());
    let start: usize = start.unwrap_or(0).min(items.len());
    let end = (start + limit).min(items.len());
    let next = if end < items.len() {
        format!("next:{end}")
    } else {
        String::new()
    };
    (items[start..end].to_vec(), next)
}

async fn web_api(
    State(fake): State<FakeSlack>,
    UrlPath(method): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match authorization.strip_prefix("Bearer ") {
        None => return refused("not_authed"),
        Some(token) if token != TOKEN => return refused("invalid_auth"),
        Some(_) => {}
    }
    let mut args = form(query.as_deref().unwrap_or_default());
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        args.extend(form(&String::from_utf8_lossy(&body)));
    } else if content_type.starts_with("application/json") && !body.is_empty() {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(o)) => args.extend(o),
            _ => return refused("invalid_json"),
        }
    }
    let mut state = fake.0.lock().unwrap();
    state
        .seen
        .push((method.clone(), args.clone(), Instant::now()));
    if let Some(fault) = state
        .faults
        .iter_mut()
        .find(|(m, n, ..)| *m == method && *n > 0)
    {
        fault.1 -= 1;
        let mut response = (
            StatusCode::from_u16(fault.2).unwrap(),
            axum::Json(fault.4.clone()),
        )
            .into_response();
        if let Some(wait) = fault.3 {
            response
                .headers_mut()
                .insert("retry-after", wait.to_string().parse().unwrap());
        }
        return response;
    }
    let known = |state: &SlackState, channel: &Option<String>| {
        channel
            .as_ref()
            .is_some_and(|c| state.channels.iter().any(|(id, _)| id == c))
    };
    let channel = text(&args, "channel");
    match method.as_str() {
        "auth.test" => answer(
            json!({"ok": true, "url": "https://acme.slack.com/", "team": "Acme",
            "user": "triage", "team_id": "T0ACME", "user_id": "U0BOT", "bot_id": "B0BOT"}),
        ),
        "chat.postMessage" => {
            if !known(&state, &channel) {
                return refused("channel_not_found");
            }
            let channel = channel.unwrap();
            let (text_arg, blocks) = (text(&args, "text"), text(&args, "blocks"));
            if text_arg.is_none() && blocks.is_none() {
                return refused("no_text");
            }
            let blocks = match blocks.map(|b| serde_json::from_str::<Value>(&b)) {
                None => None,
                Some(Ok(b @ Value::Array(_))) => Some(b),
                Some(_) => return refused("invalid_blocks"),
            };
            let ts = state.ts();
            let mut message = json!({"type": "message", "user": "U0BOT", "bot_id": "B0BOT",
                "text": text_arg.unwrap_or_default(), "ts": ts});
            if let Some(blocks) = blocks {
                message["blocks"] = blocks;
            }
            if let Some(thread) = text(&args, "thread_ts") {
                message["thread_ts"] = json!(thread);
            }
            state
                .messages
                .entry(channel.clone())
                .or_default()
                .push(message.clone());
            answer(json!({"ok": true, "channel": channel, "ts": ts, "message": message}))
        }
        "chat.update" | "chat.delete" | "reactions.add" => {
            if !known(&state, &channel) {
                return refused("channel_not_found");
            }
            let channel = channel.unwrap();
            let ts = text(
                &args,
                if method == "reactions.add" {
                    "timestamp"
                } else {
                    "ts"
                },
            );
            let list = state.messages.entry(channel.clone()).or_default();
            let Some(at) = list.iter().position(|m| m["ts"].as_str() == ts.as_deref()) else {
                return refused("message_not_found");
            };
            match method.as_str() {
                "chat.update" => {
                    let new_text = text(&args, "text").unwrap_or_default();
                    list[at]["text"] = json!(new_text);
                    list[at]["edited"] = json!({"user": "U0BOT", "ts": "1765199999.000000"});
                    answer(
                        json!({"ok": true, "channel": channel, "ts": ts, "text": new_text,
                        "message": list[at].clone()}),
                    )
                }
                "chat.delete" => {
                    list.remove(at);
                    answer(json!({"ok": true, "channel": channel, "ts": ts}))
                }
                _ => {
                    let Some(name) = text(&args, "name") else {
                        return refused("invalid_name");
                    };
                    let reactions = list[at]["reactions"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    if reactions.iter().any(|r| r["name"] == name.as_str()) {
                        return refused("already_reacted");
                    }
                    let mut reactions = reactions;
                    reactions.push(json!({"name": name, "users": ["U0BOT"], "count": 1}));
                    list[at]["reactions"] = Value::Array(reactions);
                    answer(json!({"ok": true}))
                }
            }
        }
        "conversations.list" => {
            let types = text(&args, "types").unwrap_or_else(|| "public_channel".into());
            let limit = text(&args, "limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(100usize);
            if !(1..=1000).contains(&limit) {
                return refused("invalid_limit");
            }
            let all: Vec<Value> = state
                .channels
                .iter()
                .filter(|(_, kind)| types.split(',').any(|t| t == kind))
                .map(|(id, kind)| {
                    json!({"id": id, "name": id.to_lowercase(), "is_channel": true,
                           "is_private": kind == "private_channel", "is_archived": false})
                })
                .collect();
            let (page, next) = page_of(&all, text(&args, "cursor").as_deref(), limit);
            answer(
                json!({"ok": true, "channels": page, "response_metadata": {"next_cursor": next}}),
            )
        }
        "conversations.history" => {
            if !known(&state, &channel) {
                return refused("channel_not_found");
            }
            let limit = text(&args, "limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(100usize);
            let inclusive = text(&args, "inclusive").as_deref() == Some("true");
            let number = |ts: &str| ts.parse::<f64>().unwrap_or(0.0);
            let latest = text(&args, "latest").map(|t| number(&t));
            let oldest = text(&args, "oldest").map(|t| number(&t));
            let mut newest_first: Vec<Value> = state
                .messages
                .get(&channel.unwrap())
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|m| {
                    let ts = number(m["ts"].as_str().unwrap_or_default());
                    latest.is_none_or(|l| ts < l || (inclusive && ts == l))
                        && oldest.is_none_or(|o| ts > o || (inclusive && ts == o))
                })
                .collect();
            newest_first.reverse();
            let (page, next) = page_of(&newest_first, text(&args, "cursor").as_deref(), limit);
            answer(
                json!({"ok": true, "messages": page, "has_more": !next.is_empty(),
                          "response_metadata": {"next_cursor": next}}),
            )
        }
        "search.messages" => {
            let Some(query) = text(&args, "query") else {
                return refused("no_query");
            };
            let count = text(&args, "count")
                .and_then(|l| l.parse().ok())
                .unwrap_or(20usize);
            let page = text(&args, "page")
                .and_then(|l| l.parse().ok())
                .unwrap_or(1usize);
            let mut matches: Vec<Value> = Vec::new();
            for (id, _) in &state.channels {
                for m in state.messages.get(id).into_iter().flatten() {
                    if m["text"].as_str().unwrap_or_default().contains(&query) {
                        let mut found = m.clone();
                        found["channel"] = json!({"id": id, "name": id.to_lowercase()});
                        matches.push(found);
                    }
                }
            }
            let total = matches.len();
            let pages = total.div_ceil(count).max(1);
            let start = ((page - 1) * count).min(total);
            let end = (start + count).min(total);
            answer(
                json!({"ok": true, "query": query, "messages": {"total": total,
                "matches": matches[start..end],
                "paging": {"count": count, "total": total, "page": page, "pages": pages}}}),
            )
        }
        "files.getUploadURLExternal" => {
            let (Some(name), Some(length)) = (
                text(&args, "filename"),
                text(&args, "length").and_then(|l| l.parse::<u64>().ok()),
            ) else {
                return refused("invalid_arguments");
            };
            let id = format!("F0{}", 100 + state.uploads.len());
            state.uploads.insert(id.clone(), (name, length, None));
            let url = format!("{}/upload/v1/{id}", state.base);
            answer(json!({"ok": true, "upload_url": url, "file_id": id}))
        }
        "files.completeUploadExternal" => {
            let files: Vec<Value> = match text(&args, "files").map(|f| serde_json::from_str(&f)) {
                Some(Ok(Value::Array(files))) => files,
                _ => return refused("invalid_arguments"),
            };
            if channel.is_some() || args.contains_key("channel_id") {
                let channel_id = text(&args, "channel_id");
                if !known(&state, &channel_id) {
                    return refused("channel_not_found");
                }
            }
            let mut out = Vec::new();
            for file in files {
                let id = file["id"].as_str().unwrap_or_default();
                let Some((name, length, Some(bytes))) = state.uploads.get(id).cloned() else {
                    return refused("file_not_found");
                };
                if bytes.len() as u64 != length {
                    return refused("file_upload_size_mismatch");
                }
                out.push(json!({"id": id, "name": name, "title": file["title"],
                    "size": length, "mode": "hosted"}));
            }
            answer(json!({"ok": true, "files": out}))
        }
        _ => refused("unknown_method"),
    }
}

/// The upload URL `files.getUploadURLExternal` hands out: the file's bytes as the body.
async fn upload(
    State(fake): State<FakeSlack>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    let mut state = fake.0.lock().unwrap();
    match state.uploads.get_mut(&id) {
        Some(file) => {
            file.2 = Some(body.to_vec());
            (StatusCode::OK, format!("OK - {}", body.len())).into_response()
        }
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

impl SlackState {
    fn ts(&mut self) -> String {
        self.next_ts += 1;
        format!(
            "{}.{:06}",
            1_765_100_000 + self.next_ts,
            self.next_ts % 1000
        )
    }
}

impl FakeSlack {
    /// A workspace of `channels` public channels besides `C0GENERAL` (with `history` messages)
    /// and `C0LOG`; the URL to give the app is `<returned>/api`.
    async fn start(channels: usize, history: usize) -> (FakeSlack, String) {
        let fake = FakeSlack::default();
        let app = Router::new()
            .route("/api/{method}", any(web_api))
            .route("/upload/v1/{id}", post(upload))
            .with_state(fake.clone());
        let addr = common::server::serve(app).await;
        let base = format!("http://{addr}");
        {
            let mut state = fake.0.lock().unwrap();
            state.base = base.clone();
            state.channels = vec![
                ("C0GENERAL".into(), "public_channel".into()),
                ("C0LOG".into(), "public_channel".into()),
                ("G0SECRET".into(), "private_channel".into()),
            ];
            state
                .channels
                .extend((0..channels).map(|i| (format!("C{i:06}"), "public_channel".into())));
            for i in 0..history {
                fake.post_locked(&mut state, "C0GENERAL", &format!("update {i}"));
            }
        }
        (fake, base)
    }

    fn post_locked(&self, state: &mut SlackState, channel: &str, text: &str) -> String {
        let ts = state.ts();
        state
            .messages
            .entry(channel.into())
            .or_default()
            .push(json!({"type": "message", "user": "U0ANN", "text": text, "ts": ts}));
        ts
    }

    /// Someone posts `text` in `channel`.
    fn post(&self, channel: &str, text: &str) -> String {
        let mut state = self.0.lock().unwrap();
        self.post_locked(&mut state, channel, text)
    }

    fn texts(&self, channel: &str) -> Vec<String> {
        let state = self.0.lock().unwrap();
        state
            .messages
            .get(channel)
            .into_iter()
            .flatten()
            .map(|m| m["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn fail_next(&self, method: &str, times: usize, status: u16, wait: Option<u64>, body: Value) {
        self.0
            .lock()
            .unwrap()
            .faults
            .push((method.to_string(), times, status, wait, body));
    }

    /// The arguments and arrival times of the requests of `method`.
    fn requests(&self, method: &str) -> Vec<(Map<String, Value>, Instant)> {
        let state = self.0.lock().unwrap();
        state
            .seen
            .iter()
            .filter(|(m, ..)| m == method)
            .map(|(_, a, t)| (a.clone(), *t))
            .collect()
    }

    fn uploaded(&self, id: &str) -> Option<Vec<u8>> {
        self.0.lock().unwrap().uploads.get(id)?.2.clone()
    }
}

/// An execution's context with one stored `token` connection to the Web API at `api`.
fn context(api: &str, token: &str) -> ExecutionContext {
    let connection = Connection {
        id: "sl-1".into(),
        name: "slack".into(),
        app: "slack".into(),
        kind: "token".into(),
        fields: Secrets(
            json!({"token": token, "baseUrl": api})
                .as_object()
                .cloned()
                .unwrap(),
        ),
    };
    context_with(connection)
}

/// An execution's context whose one connection, `slack`, is a bot token.
fn context_for_token() -> ExecutionContext {
    let mut context = context("http://127.0.0.1:9/api", TOKEN);
    context.execution_id = "hook".into();
    context
}

async fn call(
    registry: &AppRegistry,
    module: &str,
    mapper: Value,
    context: &ExecutionContext,
) -> Result<Vec<Value>, ModuleError> {
    let found = registry
        .module(&format!("slack:{module}"))
        .unwrap_or_else(|| panic!("slack:{module} is served"));
    let mut parameters = json!({"__IMTCONN__": "slack"})
        .as_object()
        .cloned()
        .unwrap();
    // A polling trigger's fields are its parameters.
    if module.starts_with("Watch")
        && let Some(fields) = mapper.as_object()
    {
        parameters.extend(fields.clone());
    }
    found
        .call(Invocation {
            module_id: 3,
            module,
            parameters: &parameters,
            mapper,
            context,
        })
        .await
}

async fn one(
    registry: &AppRegistry,
    module: &str,
    mapper: Value,
    context: &ExecutionContext,
) -> Value {
    let mut out = call(registry, module, mapper, context)
        .await
        .unwrap_or_else(|e| panic!("{module}: {e:?}"));
    assert_eq!(out.len(), 1, "{module}: {out:?}");
    out.remove(0)
}

fn assert_no_token(error: &ModuleError, token: &str) {
    let shown = format!(
        "{error:?} {error} {}",
        serde_json::to_string(error).unwrap()
    );
    assert!(!shown.contains(token), "the token leaked: {shown}");
}

/// Make's in-memory file form, which request bodies read as a file.
fn buffer(bytes: &[u8]) -> Value {
    json!({"type": "Buffer", "data": bytes})
}

/// Each module with a mapper that succeeds on the fake, and the method it calls.
fn every_module(ts: &str) -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "CreateMessage",
            "chat.postMessage",
            json!({"channelWType": "manualy", "channel": "C0GENERAL", "text": "hello"}),
        ),
        (
            "EditMessage",
            "chat.update",
            json!({"channelWType": "manualy", "channel": "C0GENERAL", "ts": ts, "text": "edited"}),
        ),
        (
            "AddReaction",
            "reactions.add",
            json!({"channel": "C0GENERAL", "timestamp": ts, "name": ":eyes:"}),
        ),
        (
            "GetPublicChannelMessage",
            "conversations.history",
            json!({"channel": "C0GENERAL", "ts": ts}),
        ),
        ("ListChannels", "conversations.list", json!({"limit": 3})),
        (
            "SearchMessages",
            "search.messages",
            json!({"query": "update", "limit": 3}),
        ),
        (
            "WatchPublicChannelMessages",
            "conversations.history",
            json!({"channel": "C0GENERAL", "start": "all", "limit": 2}),
        ),
        (
            "UploadFile",
            "files.getUploadURLExternal",
            json!({"fileName": "a.txt", "data": buffer(b"abc"), "channels": "C0GENERAL"}),
        ),
        (
            "DeleteMessage",
            "chat.delete",
            json!({"channelWType": "manualy", "channel": "C0GENERAL", "ts": ts}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_modules_against_the_fake() {
    let (fake, base) = FakeSlack::start(450, 250).await;
    let api = format!("{base}/api");
    let registry = AppRegistry::build(AppOptions::allowing_loopback()).unwrap();
    let ctx = context(&api, TOKEN);

    // As Make exports it: channelWType/channelType, Make's booleans, blocks as JSON text.
    let sent = one(
        &registry,
        "CreateMessage",
        json!({"channelWType": "list", "channelType": "public", "channel": "C0GENERAL",
               "text": "Ticket *42* received", "parse": false, "mrkdwn": true,
               "unfurl_links": false, "thread_ts": "", "icon_emoji": "",
               "blocks": "[{\"type\": \"section\", \"text\": {\"type\": \"mrkdwn\", \"text\": \"*42*\"}}]"}),
        &ctx,
    )
    .await;
    let ts = sent["ts"].as_str().unwrap().to_string();
    assert_eq!(sent["channel"], "C0GENERAL");
    assert_eq!(sent["message"]["text"], "Ticket *42* received");
    assert_eq!(sent["message"]["blocks"][0]["type"], "section");
    let (args, _) = fake.requests("chat.postMessage").pop().unwrap();
    assert_eq!(
        Value::Object(args),
        json!({"channel": "C0GENERAL", "text": "Ticket *42* received", "parse": "none",
               "mrkdwn": "true", "unfurl_links": "false",
               "blocks": "[{\"type\": \"section\", \"text\": {\"type\": \"mrkdwn\", \"text\": \"*42*\"}}]"})
    );
    // A reply in its thread.
    let reply = one(
        &registry,
        "CreateMessage",
        json!({"channelWType": "manualy", "channel": "C0GENERAL", "text": "on it",
               "thread_ts": ts, "reply_broadcast": true}),
        &ctx,
    )
    .await;
    assert_eq!(reply["message"]["thread_ts"], ts.as_str());
    let (args, _) = fake.requests("chat.postMessage").pop().unwrap();
    assert_eq!(args["reply_broadcast"], "true");

    let edited = one(
        &registry,
        "EditMessage",
        json!({"channelWType": "manualy", "channel": "C0GENERAL", "ts": ts, "text": "Ticket 42 closed"}),
        &ctx,
    )
    .await;
    assert_eq!(edited["text"], "Ticket 42 closed");
    one(
        &registry,
        "AddReaction",
        json!({"channel": "C0GENERAL", "timestamp": ts, "name": ":white_check_mark:"}),
        &ctx,
    )
    .await;
    let (args, _) = fake.requests("reactions.add").pop().unwrap();
    assert_eq!(args["name"], "white_check_mark");
    let got = one(
        &registry,
        "GetPublicChannelMessage",
        json!({"channel": "C0GENERAL", "ts": ts}),
        &ctx,
    )
    .await;
    assert_eq!(got["text"], "Ticket 42 closed");
    assert_eq!(got["reactions"][0]["name"], "white_check_mark");
    let deleted = one(
        &registry,
        "DeleteMessage",
        json!({"channelWType": "manualy", "channel": "C0GENERAL", "ts": ts}),
        &ctx,
    )
    .await;
    assert_eq!(deleted, json!({"channel": "C0GENERAL", "ts": ts}));
    // Gone: Get answers with Slack's code, a DataError.
    let err = call(
        &registry,
        "GetPublicChannelMessage",
        json!({"channel": "C0GENERAL", "ts": ts}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);
    assert_eq!(err.message, "[200] Slack error: message_not_found");

    // Paging to the limit: conversations.list by cursor, pages of 200.
    let channels = call(&registry, "ListChannels", json!({"limit": 430}), &ctx)
        .await
        .unwrap();
    assert_eq!(channels.len(), 430);
    assert_eq!(channels[0]["id"], "C0GENERAL");
    assert_eq!(channels[429]["id"], "C000427");
    let cursors: Vec<Value> = fake
        .requests("conversations.list")
        .iter()
        .map(|(a, _)| a.get("cursor").cloned().unwrap_or(Value::Null))
        .collect();
    assert_eq!(
        cursors,
        vec![Value::Null, json!("next:200"), json!("next:400")]
    );
    let private = call(
        &registry,
        "ListChannels",
        json!({"types": ["private_channel"], "limit": 10}),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(private.len(), 1, "{private:?}");
    assert_eq!(private[0]["id"], "G0SECRET");

    // search.messages by page, pages of up to 100.
    let found = call(
        &registry,
        "SearchMessages",
        json!({"query": "update", "sort": "timestamp", "sort_dir": "asc", "limit": 130}),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(found.len(), 130);
    assert_eq!(found[0]["channel"]["id"], "C0GENERAL");
    let pages: Vec<(Value, Value)> = fake
        .requests("search.messages")
        .iter()
        .map(|(a, _)| {
            (
                a.get("page").cloned().unwrap_or(Value::Null),
                a["count"].clone(),
            )
        })
        .collect();
    assert_eq!(
        pages,
        vec![(Value::Null, json!("100")), (json!("2"), json!("100"))]
    );

    // A file: its bytes at the upload URL, then shared in the channel.
    let file = one(
        &registry,
        "UploadFile",
        json!({"fileName": "report.csv", "data": buffer(b"id,total\n1,16.5\n"),
               "channels": "C0GENERAL", "title": "Report", "initial_comment": "Today's"}),
        &ctx,
    )
    .await;
    assert_eq!(file["name"], "report.csv");
    assert_eq!(file["title"], "Report");
    assert_eq!(file["size"], 16);
    let id = file["id"].as_str().unwrap();
    assert_eq!(fake.uploaded(id).unwrap(), b"id,total\n1,16.5\n");
    let (args, _) = fake.requests("files.completeUploadExternal").pop().unwrap();
    assert_eq!(args["channel_id"], "C0GENERAL");
    assert_eq!(args["initial_comment"], "Today's");

    // Make an API Call: any method below /api, relative URLs only, the answer as it is.
    let out = one(
        &registry,
        "makeApiCall",
        json!({"url": "/conversations.history", "method": "GET",
               "qs": [{"key": "channel", "value": "C0GENERAL"}, {"key": "limit", "value": "2"}]}),
        &ctx,
    )
    .await;
    assert_eq!(out["statusCode"], 200);
    assert_eq!(out["body"]["messages"].as_array().unwrap().len(), 2);
    let out = one(&registry, "makeApiCall", json!({"url": "/no.such"}), &ctx).await;
    assert_eq!(out["body"]["error"], "unknown_method");
    for bad in [
        "https://evil.test/api/auth.test",
        "//evil.test/x",
        "/../admin",
    ] {
        let err = call(&registry, "makeApiCall", json!({"url": bad}), &ctx)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::DataError, "{bad}");
    }
    let err = call(
        &registry,
        "makeApiCall",
        json!({"url": "/auth.test", "headers": [{"key": "Authorization", "value": "Bearer x"}]}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_module_reports_slack_errors() {
    let (fake, base) = FakeSlack::start(5, 20).await;
    let api = format!("{base}/api");
    let registry = AppRegistry::build(AppOptions::allowing_loopback()).unwrap();
    let ctx = context(&api, TOKEN);
    let wrong = context(&api, WRONG);

    let ts = fake.post("C0GENERAL", "target");
    for (module, method, mapper) in every_module(&ts) {
        // A wrong token: HTTP 200 with `invalid_auth`, an InvalidAccessTokenError naming it.
        let err = call(&registry, module, mapper.clone(), &wrong)
            .await
            .unwrap_err();
        assert_eq!(
            err.kind,
            ErrorKind::InvalidAccessTokenError,
            "{module}: {err:?}"
        );
        assert_eq!(err.message, "[200] Slack error: invalid_auth", "{module}");
        assert_no_token(&err, WRONG);

        // An unknown channel: `channel_not_found`, a DataError.
        if let Some(map) = mapper.as_object()
            && map.contains_key("channel")
        {
            let mut missing = mapper.clone();
            missing["channel"] = json!("C404");
            let err = call(&registry, module, missing, &ctx).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::DataError, "{module}: {err:?}");
            assert_eq!(
                err.message, "[200] Slack error: channel_not_found",
                "{module}"
            );
        }
        if let Some(map) = mapper.as_object()
            && map.contains_key("channels")
        {
            let mut missing = mapper.clone();
            missing["channels"] = json!("C404");
            let err = call(&registry, module, missing, &ctx).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::DataError, "{module}: {err:?}");
            assert_eq!(
                err.message, "[200] Slack error: channel_not_found",
                "{module}"
            );
        }

        // 429: the retry waits as Retry-After says, then succeeds.
        let before = fake.requests(method).len();
        fake.fail_next(
            method,
            1,
            429,
            Some(1),
            json!({"ok": false, "error": "ratelimited"}),
        );
        let out = call(&registry, module, mapper.clone(), &ctx).await;
        assert!(out.is_ok(), "{module}: {out:?}");
        let tries = fake.requests(method);
        let gap = tries[before + 1].1.duration_since(tries[before].1);
        assert!(gap >= Duration::from_secs(1), "{module}: {gap:?}");
        // A Retry-After longer than the call waits: a RateLimitError carrying it.
        fake.fail_next(
            method,
            1,
            429,
            Some(120),
            json!({"ok": false, "error": "ratelimited"}),
        );
        let err = call(&registry, module, mapper.clone(), &ctx)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::RateLimitError, "{module}: {err:?}");
        assert_eq!(err.delay_ms, Some(120_000), "{module}");

        // 5xx: retried, then a ConnectionError.
        let before = fake.requests(method).len();
        fake.fail_next(
            method,
            4,
            503,
            None,
            json!({"ok": false, "error": "service_unavailable"}),
        );
        let err = call(&registry, module, mapper.clone(), &ctx)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::ConnectionError, "{module}: {err:?}");
        assert_eq!(
            err.message, "[503] Slack error: service_unavailable",
            "{module}"
        );
        assert_eq!(
            fake.requests(method).len(),
            before + 4,
            "{module}: 4 attempts"
        );
        assert_no_token(&err, TOKEN);
    }
    // A stored connection of neither accepted type is refused before any request.
    let mut other = context(&api, TOKEN);
    let connection = Connection {
        id: "sl-2".into(),
        name: "slack".into(),
        app: "slack".into(),
        kind: "basic".into(),
        fields: Secrets(Map::new()),
    };
    let handle: ConnectionsHandle = Arc::new(OneConnection(connection));
    other.extensions.insert(handle);
    let calls = fake.requests("chat.postMessage").len();
    let err = call(
        &registry,
        "CreateMessage",
        json!({"channel": "C0GENERAL", "text": "x"}),
        &other,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidConfigurationError, "{err:?}");
    assert!(
        err.message.contains("needs one of the types slack, token"),
        "{}",
        err.message
    );
    assert_eq!(fake.requests("chat.postMessage").len(), calls);

    // The module before the message's deletion used it; DeleteMessage (last) removed it.
    assert!(!fake.texts("C0GENERAL").contains(&"target".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_public_channel_messages_across_restarts() {
    let (fake, base) = FakeSlack::start(0, 3).await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let bases = format!("slack={base}/api");
    db.add_access_token_connection("slack", "slack", TOKEN, "2545853", &bases);
    let blueprint = json!({
        "name": "relay #general",
        "flow": [
            {"id": 1, "module": "slack:WatchPublicChannelMessages", "version": 4,
             "parameters": {"__IMTCONN__": 2545853, "channel": "C0GENERAL", "limit": 5}},
            {"id": 2, "module": "slack:CreateMessage", "version": 4,
             "parameters": {"__IMTCONN__": 2545853},
             "mapper": {"channelWType": "manualy", "channel": "C0LOG", "text": "relay: {{1.text}}",
                        "parse": false, "mrkdwn": true}}
        ],
        "scheduling": {"type": "indefinitely", "interval": 1}
    });
    let serve_args = ["--min-interval-seconds", "1", "--app-base-url", &bases];
    let service = db.serve(&serve_args).await;
    let id = service.api.create(&blueprint).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = service
        .api
        .post(&format!("/api/scenarios/{id}/activate"), &json!({}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let wait_for = |count: usize| {
        let fake = fake.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while fake.texts("C0LOG").len() < count {
                assert!(Instant::now() < deadline, "only {:?}", fake.texts("C0LOG"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    // The first poll counts what #general already holds as seen; later messages are relayed
    // oldest first.
    db.executions_at_least(1).await;
    fake.post("C0GENERAL", "Ann");
    fake.post("C0GENERAL", "Bob");
    wait_for(2).await;
    assert_eq!(fake.texts("C0LOG"), ["relay: Ann", "relay: Bob"]);

    // Across a restart the cursor holds: nothing is relayed twice, a new message once.
    db.executions_settled().await;
    drop(service);
    let service = db.serve(&serve_args).await;
    fake.post("C0GENERAL", "Cy");
    wait_for(3).await;
    let before = db.ended_executions();
    db.executions_at_least(before + 2).await;
    assert_eq!(
        fake.texts("C0LOG"),
        ["relay: Ann", "relay: Bob", "relay: Cy"]
    );
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_pages_back_to_the_cursor() {
    let (fake, base) = FakeSlack::start(0, 0).await;
    let api = format!("{base}/api");
    let registry = AppRegistry::build(AppOptions::allowing_loopback()).unwrap();
    let ctx = context(&api, TOKEN);
    let module = registry.module("slack:WatchPublicChannelMessages").unwrap();
    let parameters = json!({"__IMTCONN__": "slack", "channel": "C0GENERAL", "limit": 500})
        .as_object()
        .cloned()
        .unwrap();
    let poll = |state: TriggerState| {
        let module = module.clone();
        let parameters = parameters.clone();
        let ctx = &ctx;
        async move {
            module
                .poll(
                    Invocation {
                        module_id: 1,
                        module: "WatchPublicChannelMessages",
                        parameters: &parameters,
                        mapper: Value::Object(parameters.clone()),
                        context: ctx,
                    },
                    PollRequest {
                        state: &state,
                        limit: 500,
                    },
                )
                .await
                .unwrap()
        }
    };
    let first = poll(TriggerState::default()).await;
    assert!(first.bundles.is_empty(), "from now on: {first:?}");
    // 450 new messages: more than two pages of 200, read back until the cursor.
    for i in 0..450 {
        fake.post("C0GENERAL", &format!("m{i}"));
    }
    let state = TriggerState {
        cursor: first.change.cursor.clone(),
        ..TriggerState::default()
    };
    let second = poll(state).await;
    let texts: Vec<&str> = second
        .bundles
        .iter()
        .map(|b| b["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 450);
    assert_eq!((texts[0], texts[449]), ("m0", "m449"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_added_with_token() {
    let (fake, base) = FakeSlack::start(0, 0).await;
    let api = format!("{base}/api");
    let dir = tempfile::tempdir().unwrap();
    let add = |name: &str, token: &str| {
        Command::new(harness::binary())
            .args([
                "connections",
                "add",
                name,
                "--app",
                "slack",
                "--token",
                token,
            ])
            .args(["--base-url", &api, "--data-dir"])
            .arg(Path::new(dir.path()))
            .env("SWITCHYARD_ALLOW_EGRESS", "127.0.0.1")
            .env_remove("SWITCHYARD_DATABASE_URL")
            .env_remove("SWITCHYARD_MASTER_KEY")
            .env_remove("SWITCHYARD_APP_BASE_URLS")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = add("sl", TOKEN);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fake.requests("auth.test").len(),
        1,
        "auth.test checked the token"
    );
    let out = add("sl2", WRONG);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid_auth"), "{stderr}");
    assert!(!stderr.contains(WRONG), "{stderr}");
    // Not a Slack token at all: refused by the connection type's schema before any request.
    let out = add("sl3", "not a token");
    assert!(!out.status.success());
    assert_eq!(fake.requests("auth.test").len(), 1);
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_follow_slacks_published_contract() {
    let prism = Prism::start(&repo("tests/apps/specs/slack-web-v2.json")).await;
    let registry = AppRegistry::build(AppOptions::allowing_loopback()).unwrap();
    let ctx = context(&prism.url, TOKEN);
    let ts = "1765100001.000001";
    for (module, _, mapper) in every_module(ts) {
        if module == "UploadFile" {
            // The external upload methods are newer than the published description: the
            // stateful fake checks them.
            continue;
        }
        match call(&registry, module, mapper, &ctx).await {
            Ok(_) => {}
            // Prism's made-up history need not hold the asked message.
            Err(e) if module == "GetPublicChannelMessage" && e.kind == ErrorKind::DataError => {
                assert!(e.message.contains("message_not_found"), "{module}: {e:?}");
            }
            Err(e) => panic!("{module} broke the published contract: {e:?}"),
        }
    }
    // Prism does check: a message without its channel breaks the contract (422).
    let err = call(
        &registry,
        "makeApiCall",
        json!({"url": "/chat.postMessage", "method": "POST", "body": "text=no+channel",
               "headers": [{"key": "Content-Type", "value": "application/x-www-form-urlencoded"}]}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.details.as_ref().unwrap()["statusCode"], 422, "{err:?}");
}

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// Slack's request signature: `v0=` + hex HMAC-SHA256 of `v0:<timestamp>:<body>`.
fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn slack_headers(secret: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-slack-request-timestamp".into(), timestamp.to_string()),
        ("x-slack-signature".into(), sign(secret, timestamp, body)),
    ]
}

/// A stored `signingSecret` connection of the Slack app holding `secret`.
fn signing_connection(secret: &str) -> Connection {
    Connection {
        id: "sl-events".into(),
        name: "slack-events".into(),
        app: "slack".into(),
        kind: "secret".into(),
        fields: Secrets(json!({"value": secret}).as_object().cloned().unwrap()),
    }
}

#[tokio::test]
async fn watch_events_checks_every_request_of_the_events_api() {
    use switchyard::module::{HookRequest, HookTarget};
    let registry = AppRegistry::build(AppOptions::allowing_loopback()).unwrap();
    let module = registry.module("slack:WatchEvents").unwrap();
    let instant = module.instant().unwrap();
    let data = Value::Null;
    let target = HookTarget {
        url: "https://switchyard.test/hooks/5",
        token: "tok-5",
        data: &data,
    };
    let secret = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
    // The blueprint names the connection only; the route resolves it through the execution's
    // connections, as module calls do.
    let parameters = json!({"__IMTCONN__": "slack-events"})
        .as_object()
        .cloned()
        .unwrap();
    let mut context = ExecutionContext::new("hook");
    let handle: ConnectionsHandle = Arc::new(OneConnection(signing_connection(secret)));
    context.extensions.insert(handle);
    let connection = instant
        .credentials(&parameters, &context)
        .await
        .unwrap()
        .expect("the signing secret's connection");
    assert_eq!(connection.fields.text("value").as_deref(), Some(secret));
    // A connection of another type (the bot token) is refused by name, the value unnamed.
    let token_context = context_for_token();
    let err = instant
        .credentials(
            &json!({"__IMTCONN__": "slack"})
                .as_object()
                .cloned()
                .unwrap(),
            &token_context,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidConfigurationError, "{err:?}");
    assert!(
        err.message.contains("parameters.__IMTCONN__") && err.message.contains("signingSecret"),
        "{}",
        err.message
    );
    assert!(!err.message.contains(TOKEN));
    let now = chrono::Utc::now().timestamp();
    let verify = |headers: &[(String, String)], body: &[u8]| {
        instant.verify(
            &parameters,
            Some(&connection),
            target,
            HookRequest {
                method: "POST",
                query: &[],
                headers,
                body,
            },
        )
    };

    // The URL verification challenge, signed: answered with the challenge, not queued.
    let challenge = br#"{"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}"#;
    let reply = verify(&slack_headers(secret, now, challenge), challenge).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, "application/json");
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        body,
        json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    // Not signed with the app's secret: refused, even the challenge.
    let reply = verify(&slack_headers(SIGNING_SECRET, now, challenge), challenge).unwrap();
    assert_eq!(reply.status, 401);
    assert!(!reply.body.contains(secret));

    // An event signed now: a delivery (not answered here), named by its event id.
    let event = br#"{"token": "x", "team_id": "T0ACME", "api_app_id": "A0APP", "type": "event_callback", "event_id": "Ev0PV52K21", "event_time": 1765100000, "event": {"type": "message", "channel": "C0GENERAL", "user": "U0ANN", "text": "hi", "ts": "1765100000.000100"}}"#;
    assert!(verify(&slack_headers(secret, now, event), event).is_none());
    // Slack's retry repeats the event id: the intake runs it once.
    let mut retry = slack_headers(secret, now + 60, event);
    retry.push(("x-slack-retry-num".into(), "1".into()));
    retry.push(("x-slack-retry-reason".into(), "http_timeout".into()));
    assert!(verify(&retry, event).is_none());
    let request = HookRequest {
        method: "POST",
        query: &[],
        headers: &retry,
        body: event,
    };
    assert_eq!(instant.delivery_id(request).as_deref(), Some("Ev0PV52K21"));

    // Within five minutes either way the timestamp is accepted; beyond, refused (a replay).
    assert!(verify(&slack_headers(secret, now - 290, event), event).is_none());
    assert!(verify(&slack_headers(secret, now + 290, event), event).is_none());
    for stale in [now - 310, now + 310, now - 86_400] {
        let reply = verify(&slack_headers(secret, stale, event), event).unwrap();
        assert_eq!(reply.status, 401, "{stale}");
    }
    // A body changed after signing, a signature or timestamp missing: refused.
    let mut tampered = event.to_vec();
    tampered.extend_from_slice(b" ");
    assert_eq!(
        verify(&slack_headers(secret, now, event), &tampered)
            .unwrap()
            .status,
        401
    );
    let unsigned = vec![("content-type".to_string(), "application/json".to_string())];
    assert_eq!(verify(&unsigned, event).unwrap().status, 401);
    let mut no_time = slack_headers(secret, now, event);
    no_time.retain(|(n, _)| n != "x-slack-request-timestamp");
    assert_eq!(verify(&no_time, event).unwrap().status, 401);
    // Without its connection (deleted since activation), even a signed request is refused.
    let reply = instant
        .verify(
            &parameters,
            None,
            target,
            HookRequest {
                method: "POST",
                query: &[],
                headers: &slack_headers(secret, now, event),
                body: event,
            },
        )
        .unwrap();
    assert_eq!(reply.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_api_deliveries_run_once_per_event() {
    let (fake, base) = FakeSlack::start(0, 0).await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let bases = format!("slack={base}/api");
    db.add_access_token_connection("slack", "slack", TOKEN, "2545853", &bases);
    let secret = SIGNING_SECRET.replace(['y', 'z'], "e");
    let blueprint = |connection: Value| {
        json!({
            "name": "relay events",
            "flow": [
                {"id": 1, "module": "slack:WatchEvents", "version": 4,
                 "parameters": {"__IMTCONN__": connection}},
            {"id": 2, "module": "slack:CreateMessage", "version": 4,
             "parameters": {"__IMTCONN__": 2545853},
             "mapper": {"channelWType": "manualy", "channel": "C0LOG",
                        "text": "{{1.event.user}}: {{1.event.text}}"}}
            ],
            "scheduling": {"type": "immediately"}
        })
    };
    let service = db.serve(&["--app-base-url", &bases]).await;
    // The signing secret is a sealed connection of its own type; the blueprint names it.
    service
        .api
        .post(
            "/api/connections",
            &json!({"name": "slack-events", "id": 2545900, "app": "slack",
                    "kind": "secret", "fields": {"value": secret}}),
        )
        .await
        .expect(201, "store the signing secret");
    // Activation refuses a connection that does not exist or is of another type, by path.
    for (connection, expected) in [
        (
            json!("no-such"),
            "connection \\\"no-such\\\", which does not exist",
        ),
        (json!(2545853), "signingSecret"),
    ] {
        let created = service.api.create(&blueprint(connection)).await;
        let id = created["id"].as_str().unwrap();
        let refused = service
            .api
            .post(&format!("/api/scenarios/{id}/activate"), &Value::Null)
            .await
            .expect(422, "activate without its signing secret");
        assert!(
            refused.text.contains("flow[0].parameters.__IMTCONN__")
                && refused.text.contains(expected),
            "{}",
            refused.text
        );
    }
    let (id, hook) = service
        .api
        .create_active(&blueprint(json!("slack-events")))
        .await;
    let hook = hook.expect("the scenario's hook");
    let hook = if hook.starts_with('/') {
        format!("{}{hook}", service.base)
    } else {
        hook
    };
    let client = reqwest::Client::new();
    let send = |body: &'static [u8], headers: Vec<(String, String)>| {
        let client = client.clone();
        let hook = hook.clone();
        async move {
            let mut request = client.post(&hook).body(body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            request.send().await.unwrap()
        }
    };
    let now = chrono::Utc::now().timestamp();
    let challenge = br#"{"token": "x", "challenge": "ch-1", "type": "url_verification"}"#;
    let answer = send(challenge, slack_headers(&secret, now, challenge)).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.json::<Value>().await.unwrap(),
        json!({"challenge": "ch-1"})
    );
    let event = br#"{"type": "event_callback", "event_id": "Ev0001", "event_time": 1765100000, "event": {"type": "message", "channel": "C0GENERAL", "user": "U0ANN", "text": "hello", "ts": "1765100000.000100"}}"#;
    // A forged delivery is refused and runs nothing.
    let forged = send(event, slack_headers(SIGNING_SECRET, now, event)).await;
    assert_eq!(forged.status(), 401);
    // The event, then Slack's retry of it: relayed once.
    let first = send(event, slack_headers(&secret, now, event)).await;
    assert!(first.status().is_success(), "{}", first.status());
    let mut retry = slack_headers(&secret, now + 3, event);
    retry.push(("x-slack-retry-num".into(), "1".into()));
    let again = send(event, retry).await;
    assert!(again.status().is_success(), "{}", again.status());
    db.executions_at_least(1).await;
    db.executions_settled().await;
    assert_eq!(fake.texts("C0LOG"), ["U0ANN: hello"]);
    assert_eq!(db.ended_executions(), 1);
    // A stale timestamp, however well signed, is refused.
    let stale = send(event, slack_headers(&secret, now - 600, event)).await;
    assert_eq!(stale.status(), 401);
    // The secret is in no answer of the API: the scenario with its blueprint, the scenario
    // list, its hooks, the connection, its executions.
    let mut paths = vec![
        format!("/api/scenarios/{id}"),
        "/api/scenarios".to_string(),
        format!("/api/scenarios/{id}/hooks"),
        "/api/connections/slack-events".to_string(),
        "/api/connections".to_string(),
        format!("/api/executions?scenario={id}"),
    ];
    for execution in service.api.executions(&id).await {
        paths.push(format!(
            "/api/executions/{}",
            execution["id"].as_str().unwrap()
        ));
    }
    for path in &paths {
        let reply = service.api.get(path).await.expect(200, path);
        assert!(!reply.text.contains(&secret), "{path}: {}", reply.text);
    }
    let scenario = service.api.get(&format!("/api/scenarios/{id}")).await.json;
    assert!(
        scenario.to_string().contains("slack-events"),
        "the blueprint names the connection: {scenario}"
    );
    // Nor is it in the service's log.
    assert!(!service.proc.log().contains(&secret));
    drop(service);
}
