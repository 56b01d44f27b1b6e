//! The Gmail app (`modules/google-email.json`) run by the real binary against a stateful fake
//! of the Gmail API v1 (`/gmail/v1/users/me/...` on 127.0.0.1, reached through
//! `--app-base-url google-email=…`), which checks the bearer token as Google does and keeps a
//! mailbox: messages with labels and raw MIME, what was sent, drafts. Its token endpoint
//! refreshes the connection's access token. What each test proves:
//!
//! - `sent_messages_are_mime_built_by_the_crate`: `sendAnEmail` (v4, Raw HTML, attachments,
//!   an inline image by Content-ID, cc, bcc, reply-to, UTF-8 subject and names, extra
//!   headers), `ActionSendEmail` (v2, the connection in `parameters.account`, text and HTML
//!   alternatives) and `createDraft`: the `raw` Gmail receives, parsed back with
//!   `mail-parser`, has every part and header.
//! - `read_modules_follow_the_mailbox`: `getEmail` gives Make's e-mail bundle (`subject`,
//!   `from.address`, `text`, `html`, `attachments[]` with binary data), `searchEmails` pages
//!   with `pageToken` up to `maxResults`, `markAsRead` removes `UNREAD`, `moveEmail` moves
//!   between labels and to the trash, `makeApiCall` reads a path under `/gmail`.
//! - `every_module_meets_the_errors_google_answers`: for every module, a refused access
//!   token is refreshed once and the request sent again; 403 (missing scope) is an
//!   `InvalidAccessTokenError`, 404 a `DataError`, 429 with `Retry-After` and 503 are retried
//!   to success; a token granted without Gmail's scope fails before any request.
//! - `watch_emails_emits_each_new_message_once`: a scheduled `TriggerNewEmail` (v2, unread
//!   only, `markSeen`) served by `serve` sends one e-mail per new message — messages already
//!   there when it starts are not emitted, messages arriving between polls are, oldest
//!   first, and lose `UNREAD` — also after `serve` restarts.
//! - `gmail_follows_the_published_contract`: every module against Prism serving the excerpt
//!   of Google's Gmail description (`tests/apps/specs/gmail-v1.yaml`).

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::{Value, json};

use harness::{Backend, TestDb, binary};

const TOKEN: &str = "ya29.gmail-first-token";
const REFRESHED: &str = "ya29.gmail-refreshed-token";
const REFRESH: &str = "1//gmail-refresh-token";

#[derive(Clone)]
struct Message {
    id: String,
    labels: BTreeSet<String>,
    internal_date: i64,
    raw: Vec<u8>,
}

#[derive(Default)]
struct Mailbox {
    messages: Vec<Message>,
    sent: Vec<Vec<u8>>,
    drafts: Vec<Vec<u8>>,
    /// Access tokens the API accepts.
    tokens: BTreeSet<String>,
    /// Answers given instead of the next requests: status and `Retry-After`.
    faults: VecDeque<(u16, Option<u64>)>,
    /// Requests answered, by `METHOD path`.
    calls: Vec<String>,
    refreshes: usize,
    next_id: u64,
}

type Shared = Arc<Mutex<Mailbox>>;

fn raw_message(from: &str, subject: &str, text: &str) -> Vec<u8> {
    // `Name <address>` or a bare address.
    let sender = match from.split_once('<') {
        Some((name, rest)) => mail_builder::headers::address::Address::new_address(
            Some(name.trim().to_string()),
            rest.trim_end_matches('>').to_string(),
        ),
        None => {
            mail_builder::headers::address::Address::new_address(None::<String>, from.to_string())
        }
    };
    mail_builder::MessageBuilder::new()
        .from(sender)
        .to("me@example.org")
        .subject(subject)
        .text_body(text)
        .html_body(format!("<p>{text}</p>"))
        .attachment("text/csv", "data.csv", b"a,b\n1,2\n".to_vec())
        .write_to_vec()
        .unwrap()
}

fn deliver(mailbox: &Shared, from: &str, subject: &str) -> String {
    let mut m = mailbox.lock().unwrap();
    m.next_id += 1;
    let id = format!("18c{:05x}", m.next_id);
    // Each delivery a second after the last, as Gmail's `after:` has second granularity.
    let date = m
        .messages
        .last()
        .map_or(1_760_000_000_000, |l| l.internal_date + 1500);
    m.messages.push(Message {
        id: id.clone(),
        labels: ["INBOX", "UNREAD"].iter().map(|s| s.to_string()).collect(),
        internal_date: date,
        raw: raw_message(from, subject, &format!("Body of {subject}")),
    });
    id
}

fn error(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap();
    (
        code,
        axum::Json(json!({"error": {"code": status, "message": message}})),
    )
        .into_response()
}

/// The fault or refusal answering this request, if any (Google's shapes).
fn gate(mailbox: &Shared, headers: &HeaderMap, call: String) -> Option<Response> {
    let mut m = mailbox.lock().unwrap();
    m.calls.push(call);
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    if !m.tokens.contains(&bearer) {
        return Some(error(
            401,
            "Request had invalid authentication credentials.",
        ));
    }
    let (status, retry_after) = m.faults.pop_front()?;
    let mut response = error(
        status,
        match status {
            403 => "Request had insufficient authentication scopes.",
            404 => "Requested entity was not found.",
            429 => "Too many requests.",
            _ => "The service is currently unavailable.",
        },
    );
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    Some(response)
}

fn resource(message: &Message) -> Value {
    json!({"id": message.id, "threadId": message.id, "labelIds": message.labels,
           "snippet": "", "internalDate": message.internal_date.to_string(),
           "sizeEstimate": message.raw.len(), "raw": URL_SAFE.encode(&message.raw)})
}

/// Whether `message` matches the parts of a Gmail query the fake understands.
fn matches(message: &Message, q: &str) -> bool {
    let parsed = MessageParser::default().parse(&message.raw).unwrap();
    let from = parsed
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_string();
    q.split_whitespace().all(|term| match term {
        "is:unread" => message.labels.contains("UNREAD"),
        "is:read" => !message.labels.contains("UNREAD"),
        _ if term.starts_with("after:") => {
            let secs: i64 = term[6..].parse().expect("after: epoch seconds");
            message.internal_date > secs * 1000
        }
        _ if term.starts_with("from:(") => from.contains(term[6..].trim_end_matches(')')),
        _ => true,
    })
}

async fn list(
    State(mailbox): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = gate(&mailbox, &headers, "GET list".into()) {
        return refused;
    }
    let m = mailbox.lock().unwrap();
    let q = query.get("q").cloned().unwrap_or_default();
    let label = query.get("labelIds");
    // Gmail lists newest first; this fake's pages hold at most 2, to be paged.
    let max: usize = query
        .get("maxResults")
        .map(|n| n.parse().unwrap())
        .unwrap_or(100);
    let page = max.min(2);
    let found: Vec<&Message> = m
        .messages
        .iter()
        .rev()
        .filter(|msg| label.is_none_or(|l| msg.labels.contains(l)) && matches(msg, &q))
        .collect();
    let start: usize = query
        .get("pageToken")
        .map(|t| t.parse().unwrap())
        .unwrap_or(0);
    let items: Vec<Value> = found
        .iter()
        .skip(start)
        .take(page)
        .map(|msg| json!({"id": msg.id, "threadId": msg.id}))
        .collect();
    let mut body = json!({"resultSizeEstimate": found.len()});
    if !items.is_empty() {
        body["messages"] = Value::Array(items);
    }
    if start + page < found.len() {
        body["nextPageToken"] = json!((start + page).to_string());
    }
    axum::Json(body).into_response()
}

async fn get_message(
    State(mailbox): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = gate(&mailbox, &headers, format!("GET {id}")) {
        return refused;
    }
    assert_eq!(query.get("format").map(String::as_str), Some("raw"));
    let m = mailbox.lock().unwrap();
    match m.messages.iter().find(|msg| msg.id == id) {
        Some(message) => axum::Json(resource(message)).into_response(),
        None => error(404, "Requested entity was not found."),
    }
}

async fn act(
    State(mailbox): State<Shared>,
    headers: HeaderMap,
    UrlPath(path): UrlPath<String>,
    body: Option<axum::Json<Value>>,
) -> Response {
    let (id, action) = path.split_once(':').unwrap_or((&path, ""));
    if let Some(refused) = gate(&mailbox, &headers, format!("POST {id}/{action}")) {
        return refused;
    }
    let body = body.map(|b| b.0).unwrap_or(Value::Null);
    let mut m = mailbox.lock().unwrap();
    let Some(message) = m.messages.iter_mut().find(|msg| msg.id == id) else {
        return error(404, "Requested entity was not found.");
    };
    match action {
        "modify" => {
            for label in body["addLabelIds"].as_array().into_iter().flatten() {
                message.labels.insert(label.as_str().unwrap().to_string());
            }
            for label in body["removeLabelIds"].as_array().into_iter().flatten() {
                message.labels.remove(label.as_str().unwrap());
            }
        }
        "trash" => {
            message.labels.remove("INBOX");
            message.labels.insert("TRASH".into());
        }
        other => panic!("unexpected action {other}"),
    }
    axum::Json(json!({"id": message.id, "threadId": message.id, "labelIds": message.labels}))
        .into_response()
}

/// `POST /messages/{id}/modify` and `/trash`: axum's paths take the id and the action.
async fn modify(
    state: State<Shared>,
    headers: HeaderMap,
    UrlPath((id, action)): UrlPath<(String, String)>,
    body: Option<axum::Json<Value>>,
) -> Response {
    act(state, headers, UrlPath(format!("{id}:{action}")), body).await
}

fn decoded_raw(value: &Value) -> Vec<u8> {
    let text = value.as_str().expect("raw is text");
    // Google reads a `bytes` field as standard base64 or base64url, padded or not.
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .expect("raw is base64")
}

async fn send(State(mailbox): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if let Some(refused) = gate(&mailbox, &headers, "POST send".into()) {
        return refused;
    }
    let body: Value = serde_json::from_str(&body).unwrap();
    let mut m = mailbox.lock().unwrap();
    m.sent.push(decoded_raw(&body["raw"]));
    m.next_id += 1;
    let id = format!("sent{}", m.next_id);
    axum::Json(json!({"id": id, "threadId": id, "labelIds": ["SENT"]})).into_response()
}

async fn draft(State(mailbox): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if let Some(refused) = gate(&mailbox, &headers, "POST drafts".into()) {
        return refused;
    }
    let body: Value = serde_json::from_str(&body).unwrap();
    let mut m = mailbox.lock().unwrap();
    m.drafts.push(decoded_raw(&body["message"]["raw"]));
    axum::Json(
        json!({"id": "r-1", "message": {"id": "d1", "threadId": "d1", "labelIds": ["DRAFT"]}}),
    )
    .into_response()
}

async fn labels(State(mailbox): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(refused) = gate(&mailbox, &headers, "GET labels".into()) {
        return refused;
    }
    axum::Json(json!({"labels": [{"id": "INBOX", "name": "INBOX", "type": "system"}]}))
        .into_response()
}

/// Google's token endpoint for the refresh grant: the refresh token gives a new access token,
/// which the API accepts from then on.
async fn token(State(mailbox): State<Shared>, body: String) -> Response {
    let form: HashMap<String, String> = url_form(&body);
    if form.get("grant_type").map(String::as_str) != Some("refresh_token")
        || form.get("refresh_token").map(String::as_str) != Some(REFRESH)
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    let mut m = mailbox.lock().unwrap();
    m.refreshes += 1;
    m.tokens.insert(REFRESHED.into());
    axum::Json(json!({"access_token": REFRESHED, "token_type": "Bearer", "expires_in": 3599}))
        .into_response()
}

fn url_form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

async fn fake_gmail() -> (String, Shared) {
    let mailbox: Shared = Arc::new(Mutex::new(Mailbox::default()));
    mailbox.lock().unwrap().tokens.insert(TOKEN.into());
    let me = "/gmail/v1/users/me";
    let app = Router::new()
        .route(&format!("{me}/messages"), get(list))
        .route(&format!("{me}/messages/send"), post(send))
        .route(&format!("{me}/messages/{{id}}"), get(get_message))
        .route(&format!("{me}/messages/{{id}}/{{action}}"), post(modify))
        .route(&format!("{me}/drafts"), post(draft))
        .route(&format!("{me}/labels"), get(labels))
        .route("/token", post(token))
        .with_state(mailbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, mailbox)
}

fn switchyard(api: &str, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("SWITCHYARD_ALLOW_EGRESS", "127.0.0.1")
        .env("SWITCHYARD_APP_BASE_URLS", format!("google-email={api}"))
        .env_remove("SWITCHYARD_DATABASE_URL")
        .env_remove("SWITCHYARD_MASTER_KEY")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// An integrations file whose Google integration refreshes at the fake's token endpoint.
fn integrations(api: &str, dir: &Path) -> String {
    let file = dir.join("integrations.yaml");
    std::fs::write(
        &file,
        format!(
            "- provider: google\n  alias: gmail-test\n  context: user\n  client_id: test-client\n  \
             client_secret: test-secret-9d2e\n  scope: https://mail.google.com/\n  token_url: {api}/token\n"
        ),
    )
    .unwrap();
    file.to_str().unwrap().to_string()
}

fn add_connection(api: &str, data: &Path, integrations: &str, name: &str, id: &str, scope: &str) {
    let out = switchyard(
        api,
        &[
            "connections",
            "add",
            name,
            "--app",
            "google-email",
            "--access-token",
            TOKEN,
            "--refresh-token",
            REFRESH,
            "--integration",
            "gmail-test",
            "--integrations",
            integrations,
            "--expires-in",
            "3600",
            "--scope",
            scope,
            "--id",
            id,
            "--no-test",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A module as a Make export writes it; the connection by Make's id, in `account` for the
/// version 1 and 2 modules.
fn module(id: u32, name: &str, mapper: Value) -> Value {
    let (version, parameters) = match name {
        "ActionSendEmail" => (2, json!({"account": 4854887})),
        _ => (4, json!({"__IMTCONN__": 4854887})),
    };
    json!({"id": id, "module": format!("google-email:{name}"), "version": version,
           "parameters": parameters, "mapper": mapper})
}

fn run(api: &str, dir: &Path, data: &Path, integrations: &str, flow: Vec<Value>) -> Value {
    let file = dir.join("scenario.json");
    std::fs::write(&file, json!({"name": "gmail", "flow": flow}).to_string()).unwrap();
    let out = switchyard(
        api,
        &[
            "run",
            file.to_str().unwrap(),
            "--json",
            "--integrations",
            integrations,
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no report: {}", String::from_utf8_lossy(&out.stderr)))
}

fn outputs(report: &Value, id: u32) -> Vec<Value> {
    report["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["module"] == id)
        .map(|e| e["output"].clone())
        .collect()
}

struct Fixture {
    api: String,
    mailbox: Shared,
    dir: tempfile::TempDir,
    data: std::path::PathBuf,
    integrations: String,
}

impl Fixture {
    async fn new() -> Fixture {
        let (api, mailbox) = fake_gmail().await;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let integrations = integrations(&api, dir.path());
        add_connection(
            &api,
            &data,
            &integrations,
            "gmail",
            "4854887",
            "https://mail.google.com/",
        );
        Fixture {
            api,
            mailbox,
            dir,
            data,
            integrations,
        }
    }

    fn run(&self, flow: Vec<Value>) -> Value {
        run(
            &self.api,
            self.dir.path(),
            &self.data,
            &self.integrations,
            flow,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_messages_are_mime_built_by_the_crate() {
    let f = Fixture::new().await;
    let pdf = json!({"type": "Buffer", "data": [37, 80, 68, 70, 0, 255]});
    let png = json!({"type": "Buffer", "data": [137, 80, 78, 71]});
    let report = f.run(vec![module(
        1,
        "sendAnEmail",
        json!({
            "to": ["Zoë Ärger <zoe@example.org>", "bob@example.org"],
            "cc": "Carl <carl@example.org>",
            "bcc": ["eve@example.org"],
            "replyTo": "replies@example.org",
            "subject": "Grüße — order 42",
            "bodyType": "rawHtml",
            "content": "<p>Hello <img src=\"cid:logo\"></p>",
            "attachments": [
                {"fileName": "invoice.pdf", "data": pdf},
                {"fileName": "logo.png", "data": png, "cid": "logo"}
            ],
            "emailHeaders": [{"key": "In-Reply-To", "value": "<orig@example.org>"}]
        }),
    )]);
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(outputs(&report, 1)[0]["labelIds"], json!(["SENT"]));

    let sent = f.mailbox.lock().unwrap().sent.clone();
    let message = MessageParser::default().parse(&sent[0]).unwrap();
    assert_eq!(message.subject(), Some("Grüße — order 42"));
    let to = message.to().unwrap();
    assert_eq!(to.first().unwrap().name(), Some("Zoë Ärger"));
    assert_eq!(to.first().unwrap().address(), Some("zoe@example.org"));
    assert_eq!(to.iter().count(), 2);
    assert_eq!(
        message.cc().unwrap().first().unwrap().address(),
        Some("carl@example.org")
    );
    assert_eq!(
        message.bcc().unwrap().first().unwrap().address(),
        Some("eve@example.org")
    );
    assert_eq!(
        message.reply_to().unwrap().first().unwrap().address(),
        Some("replies@example.org")
    );
    assert_eq!(message.in_reply_to().as_text(), Some("orig@example.org"));
    assert!(message.body_html(0).unwrap().contains("cid:logo"));
    let attachments: Vec<_> = message.attachments().collect();
    assert_eq!(attachments.len(), 2);
    let invoice = attachments
        .iter()
        .find(|a| a.attachment_name() == Some("invoice.pdf"))
        .unwrap();
    assert_eq!(invoice.contents(), &[37, 80, 68, 70, 0, 255]);
    assert_eq!(invoice.content_type().unwrap().subtype(), Some("pdf"));
    let logo = attachments
        .iter()
        .find(|a| a.content_id() == Some("logo"))
        .unwrap();
    assert_eq!(logo.contents(), &[137, 80, 78, 71]);
    let text = String::from_utf8_lossy(&sent[0]);
    assert!(text.contains("multipart/related"), "{text}");

    // Version 2, the connection in `account`: text and HTML alternatives from v1's fields.
    let report = f.run(vec![module(
        1,
        "ActionSendEmail",
        json!({"to": ["ann@example.org"], "subject": "Plain", "content": "just text",
               "contentType": "text"}),
    )]);
    assert_eq!(report["status"], "success", "{report}");
    let report = f.run(vec![module(
        1,
        "ActionSendEmail",
        json!({"to": "ann@example.org", "subject": "Rich", "html": "<b>rich</b>"}),
    )]);
    assert_eq!(report["status"], "success", "{report}");
    let sent = f.mailbox.lock().unwrap().sent.clone();
    let plain = MessageParser::default().parse(&sent[1]).unwrap();
    assert_eq!(plain.body_text(0).as_deref(), Some("just text"));
    assert!(plain.html_part(0).is_none_or(|p| !p.is_text_html()));
    let rich = MessageParser::default().parse(&sent[2]).unwrap();
    assert_eq!(rich.body_html(0).as_deref(), Some("<b>rich</b>"));

    // A connection named in `account` that does not exist is reported at that field.
    let file = f.dir.path().join("missing.json");
    let mut missing = module(
        1,
        "ActionSendEmail",
        json!({"to": "ann@example.org", "subject": "x", "html": "x"}),
    );
    missing["parameters"] = json!({"account": 777});
    std::fs::write(&file, json!({"name": "m", "flow": [missing]}).to_string()).unwrap();
    let out = switchyard(
        &f.api,
        &[
            "run",
            file.to_str().unwrap(),
            "--data-dir",
            f.data.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("flow[0].parameters.account:") && stderr.contains("777"),
        "{stderr}"
    );

    // A draft carries the message too; an address that is none fails before any request.
    let report = f.run(vec![module(
        1,
        "createDraft",
        json!({"to": "ann@example.org", "subject": "Later", "bodyType": "text",
               "content": "draft body"}),
    )]);
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(
        outputs(&report, 1)[0]["message"]["labelIds"],
        json!(["DRAFT"])
    );
    let drafts = f.mailbox.lock().unwrap().drafts.clone();
    let draft = MessageParser::default().parse(&drafts[0]).unwrap();
    assert_eq!(draft.subject(), Some("Later"));
    assert_eq!(draft.body_text(0).as_deref(), Some("draft body"));

    let before = f.mailbox.lock().unwrap().calls.len();
    let report = f.run(vec![module(
        1,
        "sendAnEmail",
        json!({"to": ["ok@example.org", "not an address"], "subject": "x",
               "bodyType": "text", "content": "x"}),
    )]);
    assert_eq!(report["status"], "error", "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("to[1]"),
        "{report}"
    );
    assert_eq!(f.mailbox.lock().unwrap().calls.len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_modules_follow_the_mailbox() {
    let f = Fixture::new().await;
    let ids: Vec<String> = (1..=5)
        .map(|i| deliver(&f.mailbox, "Ann Ö <ann@example.org>", &format!("Order {i}")))
        .collect();

    let report = f.run(vec![module(1, "getEmail", json!({"messageId": ids[0]}))]);
    assert_eq!(report["status"], "success", "{report}");
    let email = &outputs(&report, 1)[0];
    assert_eq!(email["subject"], "Order 1");
    assert_eq!(email["from"]["address"], "ann@example.org");
    assert_eq!(email["from"]["name"], "Ann Ö");
    assert_eq!(email["fromEmail"], "ann@example.org");
    assert_eq!(email["text"], "Body of Order 1");
    assert_eq!(email["html"], "<p>Body of Order 1</p>");
    assert_eq!(email["threadId"], json!(ids[0]));
    assert_eq!(email["internalDate"], "2025-10-09T08:53:20.000Z");
    assert_eq!(email["attachments"][0]["fileName"], "data.csv");
    // A file, stored once (`src/expr/binary.rs`): its handle reads back as the bytes.
    let data = &email["attachments"][0]["data"];
    assert_eq!(
        switchyard::expr::value::as_buffer(data),
        Some(b"a,b\n1,2\n".to_vec()),
        "{data}"
    );

    // Search: newest first, paged by pageToken (the fake's pages hold 2), up to maxResults.
    let report = f.run(vec![module(
        1,
        "searchEmails",
        json!({"searchType": "gmail", "xGmRaw": "from:(ann@example.org)", "maxResults": 3}),
    )]);
    assert_eq!(report["status"], "success", "{report}");
    let found: Vec<Value> = outputs(&report, 1)
        .iter()
        .map(|e| e["subject"].clone())
        .collect();
    assert_eq!(
        found,
        [json!("Order 5"), json!("Order 4"), json!("Order 3")]
    );
    assert_eq!(
        f.mailbox
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|c| *c == "GET list")
            .count(),
        2
    );

    let report = f.run(vec![
        module(1, "markAsRead", json!({"messageId": ids[1]})),
        module(
            2,
            "moveEmail",
            json!({"messageId": ids[2], "destinationLabel": "Label_7"}),
        ),
        module(
            3,
            "moveEmail",
            json!({"messageId": ids[3], "destinationLabel": "TRASH"}),
        ),
        module(
            4,
            "makeApiCall",
            json!({"url": "/v1/users/me/labels", "method": "GET"}),
        ),
    ]);
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(outputs(&report, 4)[0]["body"]["labels"][0]["id"], "INBOX");
    let m = f.mailbox.lock().unwrap();
    let labels = |i: usize| m.messages[i].labels.iter().cloned().collect::<Vec<_>>();
    assert_eq!(labels(1), ["INBOX"]);
    assert_eq!(labels(2), ["Label_7", "UNREAD"]);
    assert_eq!(labels(3), ["TRASH", "UNREAD"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_module_meets_the_errors_google_answers() {
    let f = Fixture::new().await;
    let id = deliver(&f.mailbox, "ann@example.org", "Hello");
    let modules = [
        module(1, "getEmail", json!({"messageId": id})),
        module(
            1,
            "searchEmails",
            json!({"searchType": "gmail", "xGmRaw": "", "maxResults": 1}),
        ),
        module(1, "markAsRead", json!({"messageId": id})),
        module(
            1,
            "moveEmail",
            json!({"messageId": id, "destinationLabel": "INBOX", "sourceLabel": "SPAM"}),
        ),
        module(
            1,
            "sendAnEmail",
            json!({"to": "a@example.org", "subject": "s", "bodyType": "text", "content": "c"}),
        ),
        module(
            1,
            "ActionSendEmail",
            json!({"to": "a@example.org", "subject": "s", "html": "c"}),
        ),
        module(
            1,
            "createDraft",
            json!({"to": "a@example.org", "subject": "s", "bodyType": "text", "content": "c"}),
        ),
        module(
            1,
            "makeApiCall",
            json!({"url": "/gmail/v1/users/me/labels", "method": "GET"}),
        ),
        json!({"id": 1, "module": "google-email:TriggerNewEmail", "version": 2,
               "parameters": {"account": 4854887, "searchType": "gmail", "xGmRaw": "",
                              "maxResults": 2, "start": "all"}}),
    ];
    for (i, blueprint) in modules.iter().enumerate() {
        let name = blueprint["module"].as_str().unwrap();
        // A refused access token (the API accepts none until a refresh): refreshed once,
        // the request sent again.
        f.mailbox.lock().unwrap().tokens.clear();
        let refreshes = f.mailbox.lock().unwrap().refreshes;
        let report = f.run(vec![blueprint.clone()]);
        assert_eq!(report["status"], "success", "{name}: {report}");
        assert_eq!(
            f.mailbox.lock().unwrap().refreshes,
            refreshes + 1,
            "{name}: one refresh"
        );
        let _ = i;

        for (status, retry_after, outcome) in [
            (403, None, Some("InvalidAccessTokenError")),
            (404, None, Some("DataError")),
            (429, Some(1), None),
            (503, None, None),
        ] {
            f.mailbox
                .lock()
                .unwrap()
                .faults
                .push_back((status, retry_after));
            let started = Instant::now();
            let report = f.run(vec![blueprint.clone()]);
            f.mailbox.lock().unwrap().faults.clear();
            match outcome {
                Some(kind) => {
                    assert_eq!(report["status"], "error", "{name} {status}: {report}");
                    assert_eq!(report["error"]["name"], kind, "{name} {status}: {report}");
                    assert!(
                        report["error"]["message"]
                            .as_str()
                            .unwrap()
                            .contains(&format!("[{status}]")),
                        "{name} {status}: {report}"
                    );
                }
                None => {
                    assert_eq!(report["status"], "success", "{name} {status}: {report}");
                    if retry_after.is_some() {
                        assert!(
                            started.elapsed() >= Duration::from_secs(1),
                            "{name}: Retry-After honoured"
                        );
                    }
                }
            }
        }
    }

    // A token granted without Gmail's scope: refused before any request.
    add_connection(
        &f.api,
        &f.data,
        &f.integrations,
        "narrow",
        "99",
        "https://www.googleapis.com/auth/gmail.readonly",
    );
    let before = f.mailbox.lock().unwrap().calls.len();
    let mut narrow = module(1, "getEmail", json!({"messageId": id}));
    narrow["parameters"] = json!({"__IMTCONN__": 99});
    let report = f.run(vec![narrow]);
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(
        report["error"]["name"], "InvalidAccessTokenError",
        "{report}"
    );
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("https://mail.google.com/"),
        "{report}"
    );
    assert_eq!(f.mailbox.lock().unwrap().calls.len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_emails_emits_each_new_message_once() {
    let (api, mailbox) = fake_gmail().await;
    deliver(&mailbox, "old@example.org", "Already there");
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let base = format!("google-email={api}");
    db.add_access_token_connection("gmail", "google-email", TOKEN, "4854887", &base);
    // As a Make export writes it: version 2, the connection in `account`, unread mail of
    // the inbox, marked as read when fetched; each new e-mail forwarded as a note.
    let blueprint = json!({
        "name": "forward new mail",
        "flow": [
            {"id": 1, "module": "google-email:TriggerNewEmail", "version": 2,
             "parameters": {"account": 4854887, "folder": "INBOX", "searchType": "simple",
                            "criteria": "UNSEEN", "markSeen": true, "maxResults": 5},
             "mapper": {}},
            {"id": 2, "module": "google-email:sendAnEmail", "version": 4,
             "parameters": {"__IMTCONN__": 4854887},
             "mapper": {"to": ["log@example.org"], "subject": "{{1.subject}}",
                        "bodyType": "text",
                        "content": "{{1.from.address}}: {{1.text}} ({{1.attachments[1].fileName}})"}}
        ],
        "scheduling": {"type": "indefinitely", "interval": 1}
    });
    let serve_args = ["--min-interval-seconds", "1", "--app-base-url", &base];
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

    let forwarded = || -> Vec<(String, String)> {
        mailbox
            .lock()
            .unwrap()
            .sent
            .iter()
            .map(|raw| {
                let m = MessageParser::default().parse(raw).unwrap();
                (
                    m.subject().unwrap_or_default().to_string(),
                    m.body_text(0).unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let wait_for = |count: usize| {
        let forwarded = &forwarded;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while forwarded().len() < count {
                assert!(Instant::now() < deadline, "only {:?}", forwarded());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let unread = |id: &str| {
        mailbox
            .lock()
            .unwrap()
            .messages
            .iter()
            .find(|m| m.id == id)
            .unwrap()
            .labels
            .contains("UNREAD")
    };

    executions_at_least(&db, 1).await;
    let ann = deliver(&mailbox, "ann@example.org", "First");
    let bob = deliver(&mailbox, "bob@example.org", "Second");
    wait_for(2).await;
    assert_eq!(
        forwarded(),
        [
            (
                "First".to_string(),
                "ann@example.org: Body of First (data.csv)".to_string()
            ),
            (
                "Second".to_string(),
                "bob@example.org: Body of Second (data.csv)".to_string()
            ),
        ]
    );
    assert!(!unread(&ann) && !unread(&bob));
    let old = mailbox.lock().unwrap().messages[0].id.clone();
    assert!(
        unread(&old),
        "the message there before the first poll stays unread"
    );

    executions_settled(&db).await;
    drop(service);
    // A message read elsewhere reappearing as unread is not new to the trigger either.
    mailbox.lock().unwrap().messages[1]
        .labels
        .insert("UNREAD".into());
    let service = db.serve(&serve_args).await;
    deliver(&mailbox, "cy@example.org", "Third");
    wait_for(3).await;
    let before = service_executions(&db).await;
    executions_at_least(&db, before + 2).await;
    let subjects: Vec<String> = forwarded().into_iter().map(|(s, _)| s).collect();
    assert_eq!(subjects, ["First", "Second", "Third"]);
    drop(service);
}

/// Waits until `n` executions have ended.
async fn executions_at_least(db: &TestDb, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count = service_executions(db).await;
        if count >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {count} executions");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until no execution is queued or running.
async fn executions_settled(db: &TestDb) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = db.cli(&["executions", "list", "--json"]);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let all = list["executions"].as_array().cloned().unwrap_or_default();
        if all
            .iter()
            .all(|e| !matches!(e["status"].as_str(), Some("queued" | "running")))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "executions still running: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many executions have ended.
async fn service_executions(db: &TestDb) -> usize {
    let out = db.cli(&["executions", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    list["executions"].as_array().map_or(0, |all| {
        all.iter()
            .filter(|e| !matches!(e["status"].as_str(), Some("queued" | "running")))
            .count()
    })
}

/// Every module of the Gmail app, mapped as a Make export maps it, sends what Google's Gmail
/// description (`tests/apps/specs/gmail-v1.yaml`) accepts: Prism answers a request that breaks
/// it (method, path, query, body schema, no bearer token) with 4xx instead of a mock. Prism
/// makes up the messages it lists (their `raw` is no e-mail), so the reading modules end at
/// `gmailMessage` — after every request of theirs was accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmail_follows_the_published_contract() {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/specs/gmail-v1.yaml");
    let prism = common::prism::Prism::start(&spec).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let integrations = integrations(&prism.url, dir.path());
    add_connection(
        &prism.url,
        &data,
        &integrations,
        "gmail",
        "4854887",
        "https://mail.google.com/",
    );
    let png = json!({"type": "Buffer", "data": [137, 80, 78, 71]});
    let writes = [
        module(
            1,
            "sendAnEmail",
            json!({"to": ["Zoë <zoe@example.org>"], "cc": "c@example.org", "subject": "Grüße",
                   "bodyType": "rawHtml", "content": "<img src=\"cid:logo\">",
                   "attachments": [{"fileName": "logo.png", "data": png, "cid": "logo"}]}),
        ),
        module(
            1,
            "ActionSendEmail",
            json!({"to": ["ann@example.org"], "subject": "Hi", "html": "<p>hi</p>"}),
        ),
        module(
            1,
            "createDraft",
            json!({"to": "ann@example.org", "subject": "Later", "bodyType": "text", "content": "x"}),
        ),
        module(1, "markAsRead", json!({"messageId": "18c2f0a1b2"})),
        module(
            1,
            "moveEmail",
            json!({"messageId": "18c2f0a1b2", "destinationLabel": "Label_3"}),
        ),
        module(
            1,
            "moveEmail",
            json!({"messageId": "18c2f0a1b2", "destinationLabel": "TRASH"}),
        ),
        module(
            1,
            "makeApiCall",
            json!({"url": "/v1/users/me/profile", "method": "GET"}),
        ),
    ];
    for blueprint in writes {
        let report = run(
            &prism.url,
            dir.path(),
            &data,
            &integrations,
            vec![blueprint.clone()],
        );
        assert!(request_accepted(&report), "{blueprint}: {report}");
    }
    let reads = [
        module(1, "getEmail", json!({"messageId": "18c2f0a1b2"})),
        module(
            1,
            "searchEmails",
            json!({"searchType": "simple", "from": "ann@example.org", "criteria": "UNSEEN",
                   "folder": "INBOX", "maxResults": 2}),
        ),
    ];
    for blueprint in reads {
        let report = run(
            &prism.url,
            dir.path(),
            &data,
            &integrations,
            vec![blueprint.clone()],
        );
        let message = report["error"]["message"].as_str().unwrap_or_default();
        assert!(
            request_accepted(&report) || message.contains("gmailMessage"),
            "{blueprint}: {report}"
        );
    }
    // A query the description does not allow is refused before it reaches a mailbox.
    let report = run(
        &prism.url,
        dir.path(),
        &data,
        &integrations,
        vec![module(
            1,
            "makeApiCall",
            json!({"url": "/v1/users/me/messages/1", "method": "GET",
                   "qs": [{"key": "format", "value": "everything"}]}),
        )],
    );
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(report["error"]["details"]["statusCode"], 422, "{report}");
}

/// Whether Prism accepted every request of the run: it succeeded, or Prism's only complaint is
/// about the response it made up itself (`--dynamic` fills `raw`, a `format: byte` string,
/// with text that breaks its own format, and answers 500 with the violation located in
/// `response`).
fn request_accepted(report: &Value) -> bool {
    if report["status"] == "success" {
        return true;
    }
    let details = &report["error"]["details"];
    if details["statusCode"] != 500 {
        return false;
    }
    let text = details["body"].as_str().unwrap_or_default();
    match serde_json::from_str::<Value>(text) {
        Ok(body) => body["validation"].as_array().is_some_and(|all| {
            !all.is_empty() && all.iter().all(|v| v["location"][0] == "response")
        }),
        // The stored body is cut at the error details' cap when Prism made up many messages:
        // judge by the violations it shows, which must all be the response's.
        Err(_) => {
            text.contains(r#""location":["response""#) && !text.contains(r#""location":["request""#)
        }
    }
}
