//! The Telegram app (`modules/telegram.json`) against a stateful fake of the Bot API written
//! from its reference (https://core.telegram.org/bots/api): the bot token in the request path
//! (`/bot<token>/method`, a wrong one answered 401 `Unauthorized`), `{ok, result}` and
//! `{ok: false, error_code, description}` bodies, and 429s that say how long to wait only in
//! their body (`parameters.retry_after`).
//!
//! - Every module: success, a wrong token (401, the token in no error), an unknown method
//!   (404), a refused request (400 `chat not found`), 429 waited for as its body says, 5xx
//!   retried then a `ConnectionError`; `GetUpdates` pages by `offset` until its limit.
//! - `SendPhoto`/`SendDocument` post `multipart/form-data` (parsed by the fake, which keeps the
//!   uploaded bytes): an upload under the mapped or the file's own name and type, or a URL or
//!   file_id as a text field; fields not given are not sent; a 429 or 5xx sends the file again.
//! - `connections add NAME --app telegram --token T` stores the bot token and checks it with
//!   `getMe` first.

// The fake's checks return the API's refusal as an axum response.
#![allow(clippy::result_large_err)]

mod common;

use common::multipart::form_fields;

use common::modules::context_with;
#[path = "service/harness.rs"]
mod harness;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use switchyard::apps::{AppOptions, AppRegistry};
use switchyard::module::connection::{Connection, Secrets};
use switchyard::module::{ErrorKind, ExecutionContext, Invocation, ModuleError, Registry};

const TOKEN: &str = "7712345678:AAH-test_Token-9f8e7d6c";

#[derive(Default)]
struct BotState {
    next_message_id: i64,
    messages: Vec<Value>,
    updates: Vec<Value>,
    /// The bytes of every file uploaded to sendPhoto/sendDocument, in order.
    uploads: Vec<Vec<u8>>,
    /// Method and body of every request with the right token, and when it arrived.
    seen: Vec<(String, Value, Instant)>,
    /// Faults for the next requests of a method: (method, times, status, body).
    faults: Vec<(String, usize, u16, Value)>,
}

#[derive(Clone, Default)]
struct FakeBot(Arc<Mutex<BotState>>);

fn answer(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

fn refused(code: u16, description: &str) -> Response {
    answer(
        code,
        json!({"ok": false, "error_code": code, "description": description}),
    )
}

fn ok(result: Value) -> Response {
    answer(200, json!({"ok": true, "result": result}))
}

async fn bot_api(
    State(fake): State<FakeBot>,
    UrlPath((bot, method_name)): UrlPath<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if bot.strip_prefix("bot") != Some(TOKEN) {
        return refused(401, "Unauthorized");
    }
    if method != Method::POST && method != Method::GET {
        return refused(405, "Method Not Allowed");
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut files = Vec::new();
    let body: Value = if content_type.starts_with("multipart/form-data") {
        match form_fields(content_type, &body) {
            Some((fields, parts)) => {
                files = parts;
                fields
            }
            None => return refused(400, "Bad Request: can't parse multipart form"),
        }
    } else if body.trim_ascii().is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(_) => return refused(400, "Bad Request: can't parse JSON"),
        }
    };
    let mut state = fake.0.lock().unwrap();
    state
        .seen
        .push((method_name.clone(), body.clone(), Instant::now()));
    if let Some(fault) = state
        .faults
        .iter_mut()
        .find(|(m, n, ..)| *m == method_name && *n > 0)
    {
        fault.1 -= 1;
        return answer(fault.2, fault.3.clone());
    }
    match method_name.as_str() {
        "getMe" => ok(
            json!({"id": 7712345678u64, "is_bot": true, "first_name": "Triage", "username": "triage_bot"}),
        ),
        "sendMessage" => {
            let (Some(chat), Some(text)) = (body.get("chat_id"), body["text"].as_str()) else {
                return refused(400, "Bad Request: message text is empty");
            };
            let chat = chat
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| chat.to_string());
            if chat == "404404" {
                return refused(400, "Bad Request: chat not found");
            }
            if let Some(markup) = body.get("reply_markup")
                && !markup.is_object()
            {
                return refused(
                    400,
                    "Bad Request: can't parse reply keyboard markup JSON object",
                );
            }
            state.next_message_id += 1;
            let mut message = json!({"message_id": state.next_message_id,
                "from": {"id": 7712345678u64, "is_bot": true, "first_name": "Triage"},
                "chat": {"id": chat.parse::<i64>().unwrap_or(0), "type": "private"},
                "date": 1765100000, "text": text});
            if let Some(markup) = body.get("reply_markup") {
                message["reply_markup"] = markup.clone();
            }
            if let Some(reply) = body["reply_parameters"]["message_id"].as_i64() {
                message["reply_to_message"] = json!({"message_id": reply});
            }
            if let Some(thread) = body["message_thread_id"].as_i64() {
                message["message_thread_id"] = json!(thread);
            }
            state.messages.push(message.clone());
            ok(message)
        }
        "editMessageText" => {
            let id = body["message_id"].as_i64();
            let Some(message) = state
                .messages
                .iter_mut()
                .find(|m| Some(m["message_id"].as_i64().unwrap_or(-1)) == id)
            else {
                return refused(400, "Bad Request: message to edit not found");
            };
            message["text"] = body["text"].clone();
            message["edit_date"] = json!(1765100100);
            ok(message.clone())
        }
        "sendPhoto" | "sendDocument" => {
            let field = if method_name == "sendPhoto" {
                "photo"
            } else {
                "document"
            };
            let Some(chat) = body["chat_id"].as_str().map(str::to_string) else {
                return refused(400, "Bad Request: chat_id is empty");
            };
            if chat == "404404" {
                return refused(400, "Bad Request: chat not found");
            }
            // An upload (its bytes kept), or a URL or file_id as text.
            let (file_name, mime_type, size, file_id) = match &body[field] {
                Value::String(reference) => (
                    reference.rsplit('/').next().unwrap_or("").to_string(),
                    String::new(),
                    0,
                    format!("ref:{reference}"),
                ),
                Value::Object(upload) => {
                    let bytes = files
                        .iter()
                        .find(|(name, _)| name == field)
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default();
                    state.uploads.push(bytes);
                    (
                        upload["file_name"].as_str().unwrap_or("").to_string(),
                        upload["mime_type"].as_str().unwrap_or("").to_string(),
                        upload["size"].as_u64().unwrap_or(0),
                        format!("upload:{}", state.uploads.len()),
                    )
                }
                _ => {
                    return refused(
                        400,
                        &format!("Bad Request: there is no {field} in the request"),
                    );
                }
            };
            for json_field in ["reply_markup", "reply_parameters"] {
                if let Some(text) = body[json_field].as_str()
                    && !serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object())
                {
                    return refused(
                        400,
                        &format!("Bad Request: can't parse {json_field} JSON object"),
                    );
                }
            }
            state.next_message_id += 1;
            let mut message = json!({"message_id": state.next_message_id,
                "chat": {"id": chat.parse::<i64>().unwrap_or(0), "type": "private"},
                "date": 1765100000});
            message[field] = if field == "photo" {
                json!([{"file_id": file_id, "file_unique_id": "AQAD1", "file_size": size, "width": 1, "height": 1}])
            } else {
                json!({"file_id": file_id, "file_unique_id": "AQAD2", "file_name": file_name,
                       "mime_type": mime_type, "file_size": size})
            };
            if let Some(caption) = body["caption"].as_str() {
                message["caption"] = json!(caption);
            }
            if let Some(thread) = body["message_thread_id"].as_str() {
                message["message_thread_id"] = json!(thread.parse::<i64>().unwrap_or(0));
            }
            if let Some(markup) = body["reply_markup"].as_str() {
                message["reply_markup"] = serde_json::from_str(markup).unwrap();
            }
            state.messages.push(message.clone());
            ok(message)
        }
        "getUpdates" => {
            let offset = body["offset"].as_i64().unwrap_or(0);
            let limit = body["limit"].as_u64().unwrap_or(100).clamp(1, 100) as usize;
            let page: Vec<Value> = state
                .updates
                .iter()
                .filter(|u| u["update_id"].as_i64().unwrap_or(0) >= offset)
                .take(limit)
                .cloned()
                .collect();
            ok(Value::Array(page))
        }
        _ => refused(404, "Not Found"),
    }
}

impl FakeBot {
    async fn start(updates: usize) -> (FakeBot, String) {
        let fake = FakeBot::default();
        {
            let mut state = fake.0.lock().unwrap();
            state.updates = (0..updates)
                .map(|i| {
                    json!({"update_id": 5000 + i, "message": {"message_id": i + 1,
                        "chat": {"id": 42, "type": "private"}, "date": 1765000000 + i, "text": format!("update {i}")}})
                })
                .collect();
        }
        let app = Router::new()
            .route("/{bot}/{method}", any(bot_api))
            .with_state(fake.clone());
        let addr = common::server::serve(app).await;
        (fake, format!("http://{addr}"))
    }

    fn fail_next(&self, method: &str, times: usize, status: u16, body: Value) {
        self.0
            .lock()
            .unwrap()
            .faults
            .push((method.to_string(), times, status, body));
    }

    /// The bodies and arrival times of the requests of `method`.
    fn requests(&self, method: &str) -> Vec<(Value, Instant)> {
        let state = self.0.lock().unwrap();
        state
            .seen
            .iter()
            .filter(|(m, ..)| m == method)
            .map(|(_, b, t)| (b.clone(), *t))
            .collect()
    }
}

fn context(url: &str, token: &str) -> ExecutionContext {
    let connection = Connection {
        id: "tg-1".into(),
        name: "bot".into(),
        app: "telegram".into(),
        kind: "bot".into(),
        fields: Secrets(
            json!({"value": token, "baseUrl": url})
                .as_object()
                .cloned()
                .unwrap(),
        ),
    };
    context_with(connection)
}

async fn call(
    registry: &AppRegistry,
    module: &str,
    mapper: Value,
    context: &ExecutionContext,
) -> Result<Vec<Value>, ModuleError> {
    let found = registry
        .module(&format!("telegram:{module}"))
        .unwrap_or_else(|| panic!("telegram:{module} is served"));
    let parameters = json!({"__IMTCONN__": "bot"}).as_object().cloned().unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_modules_against_the_fake() {
    let (fake, url) = FakeBot::start(250).await;
    let registry = AppRegistry::build(AppOptions::allowing_loopback()).unwrap();
    let ctx = context(&url, TOKEN);

    // As exports map it: empty optional fields, the reply markup as JSON text.
    let sent = one(
        &registry,
        "SendReplyMessage",
        json!({"chatId": "42",
               "text": "Ticket received", "messageThreadId": "", "parseMode": "",
               "replyToMessageId": "7", "replyMarkupAssembleType": "reply_markup_enter",
               "replyMarkup": "{\"inline_keyboard\": [[{\"text\": \"Open\", \"url\": \"https://example.com/t/1\"}]]}",
               "disableWebPagePreview": true}),
        &ctx,
    )
    .await;
    assert_eq!(sent["text"], "Ticket received");
    assert_eq!(sent["reply_to_message"]["message_id"], 7);
    let (body, _) = fake.requests("sendMessage").pop().unwrap();
    assert_eq!(
        body,
        json!({"chat_id": "42", "text": "Ticket received",
               "link_preview_options": {"is_disabled": true},
               "reply_parameters": {"message_id": 7},
               "reply_markup": {"inline_keyboard": [[{"text": "Open", "url": "https://example.com/t/1"}]]}})
    );

    let edited = one(
        &registry,
        "EditMessageText",
        json!({"chatId": "42", "messageId": sent["message_id"], "text": "Ticket closed", "parseMode": "HTML"}),
        &ctx,
    )
    .await;
    assert_eq!(edited["text"], "Ticket closed");
    assert_eq!(edited["edit_date"], 1765100100);

    // Paging to the limit: pages of 100 linked by offset = last update_id + 1.
    let updates = call(&registry, "GetUpdates", json!({"limit": 230}), &ctx)
        .await
        .unwrap();
    assert_eq!(updates.len(), 230);
    assert_eq!(updates[0]["update_id"], 5000);
    assert_eq!(updates[229]["update_id"], 5229);
    let offsets: Vec<Value> = fake
        .requests("getUpdates")
        .iter()
        .map(|(b, _)| b["offset"].clone())
        .collect();
    assert_eq!(offsets, vec![Value::Null, json!(5100), json!(5200)]);
    let updates = call(
        &registry,
        "GetUpdates",
        json!({"offset": 5240, "limit": 100}),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(updates.len(), 10, "the last page is short: no more pages");

    // Refusals: the API's description, Make's kinds, the token in no error.
    let err = call(
        &registry,
        "SendReplyMessage",
        json!({"chatId": "404404", "text": "x"}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);
    assert_eq!(err.message, "[400] Bad Request: chat not found");
    let wrong = "7712345678:AAH-wrong_Token-000000";
    let err = call(
        &registry,
        "SendReplyMessage",
        json!({"chatId": "42", "text": "x"}),
        &context(&url, wrong),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidAccessTokenError);
    assert_eq!(err.message, "[401] Unauthorized");
    assert_no_token(&err, wrong);
    let err = call(
        &registry,
        "makeApiCall",
        json!({"url": "/noSuchMethod"}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.message, "[404] Not Found");
    assert_no_token(&err, TOKEN);
    let out = one(&registry, "makeApiCall", json!({"url": "/getMe"}), &ctx).await;
    assert_eq!(out["body"]["result"]["username"], "triage_bot");
    // Only a Bot API path: not another host, not out of the bot's path.
    for bad in ["https://evil.test/x", "getMe", "/../bot1:x/getMe"] {
        let err = call(&registry, "makeApiCall", json!({"url": bad}), &ctx)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::DataError, "{bad}");
        assert_no_token(&err, TOKEN);
    }

    // 429: the wait is in the body only; the retry comes after it (by the fake's clock).
    let before = fake.requests("sendMessage").len();
    fake.fail_next(
        "sendMessage",
        1,
        429,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}),
    );
    one(
        &registry,
        "SendReplyMessage",
        json!({"chatId": "42", "text": "again"}),
        &ctx,
    )
    .await;
    let tries = fake.requests("sendMessage");
    assert_eq!(tries.len(), before + 2);
    let gap = tries[before + 1].1.duration_since(tries[before].1);
    assert!(gap >= Duration::from_secs(1), "{gap:?}");

    // 5xx: retried, then a ConnectionError.
    fake.fail_next(
        "sendMessage",
        4,
        502,
        json!({"ok": false, "error_code": 502, "description": "Bad Gateway"}),
    );
    let err = call(
        &registry,
        "SendReplyMessage",
        json!({"chatId": "42", "text": "x"}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ConnectionError);
    assert_eq!(err.message, "[502] Bad Gateway");
    assert_no_token(&err, TOKEN);

    // A Bot API that cannot be reached: the error names no URL with the token in it.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        format!("http://127.0.0.1:{port}")
    };
    let err = call(
        &registry,
        "SendReplyMessage",
        json!({"chatId": "42", "text": "x"}),
        &context(&closed, TOKEN),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ConnectionError);
    assert_no_token(&err, TOKEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_and_documents_upload_their_bytes_or_send_a_url() {
    let (fake, url) = FakeBot::start(0).await;
    let registry = AppRegistry::build(AppOptions::allowing_loopback()).unwrap();
    let ctx = context(&url, TOKEN);
    // Bytes a multipart encoder could mangle: CR LF, a boundary-like line, NUL, non-UTF-8.
    let bytes = b"\x89PNG\r\n\x1a\n\r\n--boundary\r\n\x00\xff\xfe end".to_vec();
    let image = switchyard::expr::binary::store(&bytes, "application/octet-stream", "").unwrap();

    let sent = one(
        &registry,
        "SendPhoto",
        json!({"chatId": "42", "sendType": "send_bydata", "data": image.to_value(),
               "filename": "cat.png", "contentType": "image/png", "caption": "A <b>cat</b>",
               "parseMode": "HTML", "messageThreadId": 7, "replyToMessageId": "",
               "replyMarkupAssembleType": "reply_markup_enter",
               "replyMarkup": "{\"inline_keyboard\": [[{\"text\": \"Open\", \"url\": \"https://example.com\"}]]}"}),
        &ctx,
    )
    .await;
    assert_eq!(sent["caption"], "A <b>cat</b>");
    assert_eq!(sent["message_thread_id"], 7);
    assert_eq!(sent["photo"][0]["file_id"], "upload:1");
    assert_eq!(
        sent["reply_markup"]["inline_keyboard"][0][0]["text"],
        "Open"
    );
    assert_eq!(fake.0.lock().unwrap().uploads, vec![bytes.clone()]);
    let (body, _) = fake.requests("sendPhoto").pop().unwrap();
    assert_eq!(
        body,
        json!({"chat_id": "42", "caption": "A <b>cat</b>", "parse_mode": "HTML",
               "message_thread_id": "7",
               "photo": {"file_name": "cat.png", "mime_type": "image/png", "size": bytes.len()},
               "reply_markup": "{\"inline_keyboard\":[[{\"text\":\"Open\",\"url\":\"https://example.com\"}]]}"}),
        "empty fields are not sent"
    );

    // A document under its own name and type; a reply as reply_parameters.
    let pdf = switchyard::expr::binary::store(b"%PDF-1.7 report", "application/pdf", "report.pdf")
        .unwrap();
    let sent = one(
        &registry,
        "SendDocument",
        json!({"chatId": "42", "sendType": "send_bydata", "data": pdf.to_value(),
               "replyToMessageId": 1}),
        &ctx,
    )
    .await;
    assert_eq!(sent["document"]["file_name"], "report.pdf");
    assert_eq!(sent["document"]["mime_type"], "application/pdf");
    assert_eq!(fake.0.lock().unwrap().uploads[1], b"%PDF-1.7 report");
    let (body, _) = fake.requests("sendDocument").pop().unwrap();
    assert_eq!(body["reply_parameters"], "{\"message_id\":1}");

    // By URL or file_id: a text field, nothing uploaded.
    let sent = one(
        &registry,
        "SendDocument",
        json!({"chatId": "42", "sendType": "send_byurl", "httpUrl": "https://example.com/r.pdf",
               "filename": "ignored.pdf", "data": pdf.to_value()}),
        &ctx,
    )
    .await;
    assert_eq!(sent["document"]["file_id"], "ref:https://example.com/r.pdf");
    let sent = one(
        &registry,
        "SendPhoto",
        json!({"chatId": "42", "sendType": "send_byurl", "httpUrl": "AgACAgIAAxkBAAIB"}),
        &ctx,
    )
    .await;
    assert_eq!(sent["photo"][0]["file_id"], "ref:AgACAgIAAxkBAAIB");
    assert_eq!(fake.0.lock().unwrap().uploads.len(), 2);

    // An upload without its data: refused before any request.
    let before = fake.requests("sendPhoto").len();
    let err = call(
        &registry,
        "SendPhoto",
        json!({"chatId": "42", "sendType": "send_bydata", "filename": "x.png"}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert!(err.message.contains("data"), "{err:?}");
    assert_eq!(fake.requests("sendPhoto").len(), before);

    // Refusals, a wrong token (the token in no error).
    let err = call(
        &registry,
        "SendPhoto",
        json!({"chatId": "404404", "sendType": "send_bydata", "data": image.to_value()}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);
    assert_eq!(err.message, "[400] Bad Request: chat not found");
    let wrong = "7712345678:AAH-wrong_Token-000000";
    let err = call(
        &registry,
        "SendDocument",
        json!({"chatId": "42", "sendType": "send_bydata", "data": pdf.to_value()}),
        &context(&url, wrong),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidAccessTokenError);
    assert_eq!(err.message, "[401] Unauthorized");
    assert_no_token(&err, wrong);

    // 429: waited for as the body says, and the whole file sent again.
    let uploads_before = fake.0.lock().unwrap().uploads.len();
    let before = fake.requests("sendPhoto").len();
    fake.fail_next(
        "sendPhoto",
        1,
        429,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}),
    );
    one(
        &registry,
        "SendPhoto",
        json!({"chatId": "42", "sendType": "send_bydata", "data": image.to_value()}),
        &ctx,
    )
    .await;
    let tries = fake.requests("sendPhoto");
    assert_eq!(tries.len(), before + 2);
    assert!(tries[before + 1].1.duration_since(tries[before].1) >= Duration::from_secs(1));
    assert_eq!(tries[before + 1].0["photo"]["size"], bytes.len());
    let uploads = fake.0.lock().unwrap().uploads.clone();
    assert_eq!(uploads.len(), uploads_before + 1);
    assert_eq!(uploads.last().unwrap(), &bytes);

    // 5xx: retried (the form built again each time), then a ConnectionError.
    fake.fail_next(
        "sendDocument",
        4,
        503,
        json!({"ok": false, "error_code": 503, "description": "Service Unavailable"}),
    );
    let err = call(
        &registry,
        "SendDocument",
        json!({"chatId": "42", "sendType": "send_bydata", "data": pdf.to_value()}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ConnectionError);
    assert_eq!(err.message, "[503] Service Unavailable");
    assert_no_token(&err, TOKEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_token_is_added_with_token() {
    let (fake, url) = FakeBot::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let add = |name: &str, token: &str| {
        Command::new(harness::binary())
            .args([
                "connections",
                "add",
                name,
                "--app",
                "telegram",
                "--token",
                token,
            ])
            .args(["--base-url", &url, "--data-dir"])
            .arg(Path::new(dir.path()))
            .env("SWITCHYARD_ALLOW_EGRESS", "127.0.0.1")
            .env_remove("SWITCHYARD_DATABASE_URL")
            .env_remove("SWITCHYARD_MASTER_KEY")
            .env_remove("SWITCHYARD_APP_BASE_URLS")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = add("tg", TOKEN);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fake.requests("getMe").len(), 1, "getMe checked the token");
    let wrong = "7712345678:AAH-wrong_Token-000000";
    let out = add("tg2", wrong);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Unauthorized"), "{stderr}");
    assert!(!stderr.contains(wrong), "{stderr}");
    // Not a bot token at all: refused by the connection type's schema before any request.
    let out = add("tg3", "not a token");
    assert!(!out.status.success());
    assert_eq!(fake.requests("getMe").len(), 1);
}
