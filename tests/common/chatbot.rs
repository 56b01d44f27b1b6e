//! A fake ChatBot API (`reference/chatbot-api.md`, Part B) on 127.0.0.1 for tests: users,
//! stories and webhooks in memory, the bearer check with the documented 401 body, error
//! bodies `{"status": {"code", "type"}, "message"}`, `after`/`limit` paging with `count`,
//! sorting and filters, 404 for unknown ids, 409 for a duplicate `userId`, webhook
//! registration that verifies the hook (`GET url?challenge=…&token=…`) and event delivery
//! with an `x-request-id` (and redelivery of one id).
//!
//! For assertions it counts calls per method and path, records every request's
//! `Authorization` header, and can be told to fail the next N requests to a path (429 with
//! `Retry-After`, or a 5xx) before handling them.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value, json};

/// The largest page.
pub const MAX_LIMIT: usize = 40;

/// An answer forced on the next requests to a path.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    /// `Retry-After` in seconds.
    pub retry_after: Option<u64>,
}

impl Fault {
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Fault {
            status: 429,
            retry_after: Some(retry_after_secs),
        }
    }

    pub fn server_error() -> Self {
        Fault {
            status: 500,
            retry_after: None,
        }
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// One event sent to a registered webhook.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub request_id: String,
    pub url: String,
    pub body: Value,
    /// The receiver's answer (0 when it could not be reached).
    pub status: u16,
}

#[derive(Default)]
struct Data {
    token: String,
    users: Vec<Value>,
    /// Position of each user in `users` by `id`, and the `userId`s taken: lookups stay
    /// constant-time however many users a benchmark creates.
    user_index: std::collections::HashMap<String, usize>,
    user_ids: std::collections::HashSet<String>,
    stories: Vec<Value>,
    webhooks: Vec<Value>,
    faults: Vec<(String, String, usize, Fault)>,
    seen: Vec<Seen>,
    deliveries: Vec<Delivery>,
    clock: i64,
    ids: u64,
}

type Shared = Arc<Mutex<Data>>;

/// The running fake.
#[derive(Clone)]
pub struct FakeChatBot {
    /// `http://127.0.0.1:<port>`: the base URL a connection points at.
    pub base_url: String,
    data: Shared,
    client: reqwest::Client,
}

/// Where the fake's clock starts: users are created a second apart from here.
pub fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

/// ChatBot's own date form (A.2): `2019-01-23 13:32:30.163Z`.
pub fn chatbot_date(date: DateTime<Utc>) -> String {
    date.to_rfc3339_opts(SecondsFormat::Millis, true)
        .replacen('T', " ", 1)
}

fn error(code: u16, kind: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(json!({"status": {"code": code, "type": kind}, "message": message})),
    )
        .into_response()
}

fn ok(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

impl Data {
    fn next_id(&mut self) -> String {
        self.ids += 1;
        format!(
            "{:024x}",
            0x5b7f_f84c_0000_0000_0000_0000u128 + self.ids as u128
        )
    }

    fn tick(&mut self) -> DateTime<Utc> {
        self.clock += 1000;
        epoch() + Duration::milliseconds(self.clock)
    }

    fn new_user(
        &mut self,
        user_id: Option<String>,
        segments: Value,
        attributes: Map<String, Value>,
        at: DateTime<Utc>,
    ) -> Value {
        let id = self.next_id();
        let user = json!({
            "id": id,
            "userId": user_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            "banned": false,
            "segments": segments,
            "attributes": attributes,
            "conversations": 0,
            "createdAt": chatbot_date(at),
            "lastSeen": chatbot_date(at),
        });
        let id = user["id"].as_str().unwrap_or_default().to_string();
        self.user_index.insert(id, self.users.len());
        if let Some(user_id) = user["userId"].as_str() {
            self.user_ids.insert(user_id.to_string());
        }
        self.users.push(user.clone());
        user
    }

    fn user_mut(&mut self, id: &str) -> Option<&mut Value> {
        let index = *self.user_index.get(id)?;
        self.users.get_mut(index)
    }
}

impl FakeChatBot {
    /// Starts the fake; requests must carry `Authorization: Bearer <token>`.
    pub async fn start(token: &str) -> FakeChatBot {
        let data: Shared = Arc::new(Mutex::new(Data {
            token: token.to_string(),
            ..Data::default()
        }));
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap();
        let fake = FakeChatBot {
            base_url: String::new(),
            data: data.clone(),
            client,
        };
        let app = Router::new().fallback(handle).with_state(fake.clone());
        let addr = super::server::serve(app).await;
        FakeChatBot {
            base_url: format!("http://{addr}"),
            ..fake
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap()
    }

    /// Adds a user created one second after the previous one.
    pub fn add_user(&self, email: Option<&str>) -> Value {
        let mut data = self.lock();
        let at = data.tick();
        let mut attributes = Map::new();
        if let Some(email) = email {
            attributes.insert("default_email".into(), json!(email));
        }
        data.new_user(None, json!([]), attributes, at)
    }

    /// Adds `n` users a second apart; returns them oldest first.
    pub fn add_users(&self, n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| self.add_user(Some(&format!("user{i}@example.com"))))
            .collect()
    }

    /// Adds a user created at exactly `at` (several may share it).
    pub fn add_user_at(&self, at: DateTime<Utc>) -> Value {
        let mut data = self.lock();
        data.new_user(None, json!([]), Map::new(), at)
    }

    /// Adds a user with these fields.
    pub fn add_user_with(&self, user_id: &str, segments: &[&str], attributes: Value) -> Value {
        let mut data = self.lock();
        let at = data.tick();
        let attributes = attributes.as_object().cloned().unwrap_or_default();
        data.new_user(Some(user_id.to_string()), json!(segments), attributes, at)
    }

    pub fn add_story(&self, name: &str, description: &str) -> Value {
        let mut data = self.lock();
        let at = data.tick();
        let id = data.next_id();
        let story = json!({
            "id": id, "name": name, "description": description, "version": 2, "published": false,
            "integrations": ["widget"], "createdAt": chatbot_date(at), "updatedAt": chatbot_date(at),
        });
        data.stories.push(story.clone());
        story
    }

    pub fn user_count(&self) -> usize {
        self.lock().users.len()
    }

    pub fn users(&self) -> Vec<Value> {
        self.lock().users.clone()
    }

    pub fn user(&self, id: &str) -> Option<Value> {
        self.lock().user_mut(id).map(|u| u.clone())
    }

    pub fn stories(&self) -> Vec<Value> {
        self.lock().stories.clone()
    }

    pub fn webhooks(&self) -> Vec<Value> {
        self.lock().webhooks.clone()
    }

    /// The next `times` requests with `method` to `path` (without query) answer `fault`.
    pub fn fail_next(&self, method: &str, path: &str, times: usize, fault: Fault) {
        self.lock()
            .faults
            .push((method.to_ascii_uppercase(), path.to_string(), times, fault));
    }

    /// How many requests with `method` to `path` (without query) arrived, faults included.
    pub fn calls(&self, method: &str, path: &str) -> usize {
        self.lock()
            .seen
            .iter()
            .filter(|s| s.method.eq_ignore_ascii_case(method) && s.path == path)
            .count()
    }

    pub fn total_calls(&self) -> usize {
        self.lock().seen.len()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.clone()
    }

    /// POSTs `event` to every registered webhook with a new `x-request-id`; returns the
    /// deliveries made.
    pub async fn deliver(&self, event: &Value) -> Vec<Delivery> {
        let request_id = uuid::Uuid::new_v4().to_string();
        self.send_event(&request_id, event).await
    }

    /// Sends the event of `request_id` again, with the same id.
    pub async fn redeliver(&self, request_id: &str) -> Vec<Delivery> {
        let event = self
            .lock()
            .deliveries
            .iter()
            .find(|d| d.request_id == request_id)
            .map(|d| d.body.clone())
            .expect("a delivered request id");
        self.send_event(request_id, &event).await
    }

    async fn send_event(&self, request_id: &str, event: &Value) -> Vec<Delivery> {
        let urls: Vec<String> = self
            .lock()
            .webhooks
            .iter()
            .filter_map(|w| w["url"].as_str().map(str::to_string))
            .collect();
        let mut made = Vec::new();
        for url in urls {
            let status = self
                .client
                .post(&url)
                .header("x-request-id", request_id)
                .json(event)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            let delivery = Delivery {
                request_id: request_id.to_string(),
                url,
                body: event.clone(),
                status,
            };
            self.lock().deliveries.push(delivery.clone());
            made.push(delivery);
        }
        made
    }
}

async fn handle(
    State(fake): State<FakeChatBot>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    {
        let mut data = fake.lock();
        data.seen.push(Seen {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            authorization: authorization.clone(),
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        if authorization.as_deref() != Some(format!("Bearer {}", data.token).as_str()) {
            return error(401, "unauthorized", "Invalid access token");
        }
        let method_name = method.to_string();
        if let Some(i) = data
            .faults
            .iter()
            .position(|(m, p, left, _)| *m == method_name && *p == path && *left > 0)
        {
            data.faults[i].2 -= 1;
            let fault = data.faults[i].3.clone();
            let mut response = match fault.status {
                429 => error(429, "too_many_requests", "Too many requests"),
                code => error(code, "internal_server_error", "Something went wrong"),
            };
            if let Some(secs) = fault.retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, secs.to_string().parse().unwrap());
            }
            return response;
        }
    }
    let query: Vec<(String, String)> = url_pairs(&query);
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return error(400, "bad_request", "body: expected JSON"),
        }
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["users"]) => list_users(&fake, &query),
        ("POST", ["users"]) => create_user(&fake, &body),
        ("GET", ["users", id]) => with_user(&fake, id, |u| ok(json!({"data": u}))),
        ("PUT", ["users", id]) => update_user(&fake, id, &body),
        ("PUT", ["users", id, "ban"]) => ban_user(&fake, id, &body),
        ("GET", ["v2", "stories"]) => list_stories(&fake, &query),
        ("POST", ["v2", "stories"]) => create_story(&fake, &body),
        ("GET", ["v2", "stories", id]) => with_story(&fake, id, |s| ok(json!({"data": s}))),
        ("PUT", ["v2", "stories", id]) => update_story(&fake, id, &body),
        ("DELETE", ["v2", "stories", id]) => delete_story(&fake, id),
        ("POST", ["webhooks"]) => create_webhook(&fake, &body).await,
        ("DELETE", ["webhooks", id]) => delete_webhook(&fake, id),
        _ => error(404, "not_found", "Not found"),
    }
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `limit` (1..=40, default 40) and `after` applied to `items`: a page and its count.
fn page(items: Vec<Value>, query: &[(String, String)], what: &str) -> Response {
    let limit = match param(query, "limit") {
        None => MAX_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return error(400, "bad_request", "limit: must be a number from 1 to 40"),
        },
    };
    let start = match param(query, "after") {
        None | Some("") => 0,
        Some(after) => match items.iter().position(|i| i["id"] == after) {
            Some(i) => i + 1,
            None => {
                return error(
                    400,
                    "bad_request",
                    &format!("after: no {what} with this id"),
                );
            }
        },
    };
    let data: Vec<Value> = items.into_iter().skip(start).take(limit).collect();
    ok(json!({"count": data.len(), "data": data}))
}

fn list_users(fake: &FakeChatBot, query: &[(String, String)]) -> Response {
    let field = param(query, "sort.field").unwrap_or("createdAt");
    if !matches!(field, "createdAt" | "lastSeen") {
        return error(
            400,
            "bad_request",
            "sort.field: must be createdAt or lastSeen",
        );
    }
    let order = param(query, "sort.order").unwrap_or("desc");
    if !matches!(order, "asc" | "desc") {
        return error(400, "bad_request", "sort.order: must be asc or desc");
    }
    let any = match param(query, "match").unwrap_or("all") {
        "all" => false,
        "any" => true,
        _ => return error(400, "bad_request", "match: must be all or any"),
    };
    let filters: Vec<Value> = match param(query, "filters") {
        None => Vec::new(),
        Some(text) => match serde_json::from_str::<Vec<Value>>(text) {
            Ok(f) if f.len() <= 5 && f.iter().all(|f| f["type"].is_string()) => f,
            _ => {
                return error(
                    400,
                    "bad_request",
                    "filters: expected a JSON array of 1 to 5 {type, value, attribute}",
                );
            }
        },
    };
    let mut users = fake.users();
    users.retain(|user| {
        if filters.is_empty() {
            return true;
        }
        let mut results = filters.iter().map(|f| matches_filter(user, f));
        if any {
            results.any(|r| r)
        } else {
            results.all(|r| r)
        }
    });
    users.sort_by(|a, b| {
        let key = |u: &Value| {
            (
                u[field].as_str().unwrap_or_default().to_string(),
                u["id"].as_str().unwrap_or_default().to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    if order == "desc" {
        users.reverse();
    }
    page(users, query, "user")
}

fn matches_filter(user: &Value, filter: &Value) -> bool {
    let value = match &filter["value"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let attributes = &user["attributes"];
    match filter["type"].as_str().unwrap_or_default() {
        "segment" => user["segments"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x == value.as_str())),
        "userId" => user["userId"] == value.as_str(),
        "email" => attributes["default_email"] == value.as_str(),
        "name" => attributes["default_name"] == value.as_str(),
        "attribute" => filter["attribute"]
            .as_str()
            .is_some_and(|a| attributes[a] == value.as_str()),
        "banned" => user["banned"] == (value == "true"),
        "createdAt" => user["createdAt"].as_str().unwrap_or_default() >= value.as_str(),
        "lastSeen" => user["lastSeen"].as_str().unwrap_or_default() >= value.as_str(),
        _ => false,
    }
}

fn with_user(fake: &FakeChatBot, id: &str, f: impl FnOnce(&Value) -> Response) -> Response {
    match fake.user(id) {
        Some(user) => f(&user),
        None => error(404, "not_found", "User not found"),
    }
}

/// The `attributes` of a create or update body, checked as A.2 documents them.
fn attributes(body: &Value) -> Result<Map<String, Value>, String> {
    match &body["attributes"] {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => {
            for (name, value) in map {
                let max = if name == "default_name" { 256 } else { 1024 };
                if !value
                    .as_str()
                    .is_some_and(|s| (1..=max).contains(&s.chars().count()))
                {
                    return Err(format!(
                        "attributes.{name}: must be text of 1 to {max} characters"
                    ));
                }
            }
            Ok(map.clone())
        }
        _ => Err("attributes: must be an object".into()),
    }
}

fn segments(body: &Value) -> Result<Option<Value>, String> {
    match &body["segments"] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(json!([s]))),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            Ok(Some(Value::Array(items.clone())))
        }
        _ => Err("segments: must be an id or an array of ids".into()),
    }
}

fn create_user(fake: &FakeChatBot, body: &Value) -> Response {
    if !body.is_object() {
        return error(400, "bad_request", "body: expected an object");
    }
    let attributes = match attributes(body) {
        Ok(a) => a,
        Err(message) => return error(400, "bad_request", &message),
    };
    let segments = match segments(body) {
        Ok(s) => s.unwrap_or(json!([])),
        Err(message) => return error(400, "bad_request", &message),
    };
    let user_id = match &body["userId"] {
        Value::Null => None,
        Value::String(s) if (1..=256).contains(&s.chars().count()) => Some(s.clone()),
        _ => {
            return error(
                400,
                "bad_request",
                "userId: must be text of 1 to 256 characters",
            );
        }
    };
    let mut data = fake.lock();
    if let Some(user_id) = &user_id
        && data.user_ids.contains(user_id.as_str())
    {
        return error(409, "conflict", "A user with this userId already exists");
    }
    let at = data.tick();
    let user = data.new_user(user_id, segments, attributes, at);
    ok(
        json!([{"id": user["id"], "timestamp": chatbot_date(at), "status": {"code": 200, "type": "success"}}]),
    )
}

fn update_user(fake: &FakeChatBot, id: &str, body: &Value) -> Response {
    let attributes = match attributes(body) {
        Ok(a) => a,
        Err(message) => return error(400, "bad_request", &message),
    };
    let segments = match segments(body) {
        Ok(s) => s,
        Err(message) => return error(400, "bad_request", &message),
    };
    let mut data = fake.lock();
    let Some(user) = data.user_mut(id) else {
        return error(404, "not_found", "User not found");
    };
    if let Some(segments) = segments {
        user["segments"] = segments;
    }
    if let Some(existing) = user["attributes"].as_object_mut() {
        existing.extend(attributes);
    }
    ok(json!({"data": user}))
}

fn ban_user(fake: &FakeChatBot, id: &str, body: &Value) -> Response {
    let Some(banned) = body["banned"].as_bool() else {
        return error(400, "bad_request", "banned: must be true or false");
    };
    let mut data = fake.lock();
    let Some(user) = data.user_mut(id) else {
        return error(404, "not_found", "User not found");
    };
    user["banned"] = json!(banned);
    ok(json!({"data": user}))
}

fn list_stories(fake: &FakeChatBot, query: &[(String, String)]) -> Response {
    page(fake.stories(), query, "story")
}

fn with_story(fake: &FakeChatBot, id: &str, f: impl FnOnce(&Value) -> Response) -> Response {
    match fake.stories().into_iter().find(|s| s["id"] == id) {
        Some(story) => f(&story),
        None => error(404, "not_found", "Story not found"),
    }
}

fn create_story(fake: &FakeChatBot, body: &Value) -> Response {
    let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
        return error(400, "bad_request", "name: is required");
    };
    let description = body["description"].as_str().unwrap_or_default();
    ok(json!({"data": fake.add_story(name, description)}))
}

fn update_story(fake: &FakeChatBot, id: &str, body: &Value) -> Response {
    let mut data = fake.lock();
    let at = data.tick();
    let Some(story) = data.stories.iter_mut().find(|s| s["id"] == id) else {
        return error(404, "not_found", "Story not found");
    };
    for field in ["name", "description"] {
        if let Some(value) = body[field].as_str() {
            story[field] = json!(value);
        }
    }
    story["updatedAt"] = json!(chatbot_date(at));
    ok(json!({"data": story}))
}

fn delete_story(fake: &FakeChatBot, id: &str) -> Response {
    let mut data = fake.lock();
    let before = data.stories.len();
    data.stories.retain(|s| s["id"] != id);
    if data.stories.len() == before {
        return error(404, "not_found", "Story not found");
    }
    ok(json!({"status": {"code": 200, "type": "success"}}))
}

/// Registers a webhook after verifying it as ChatBot does: `GET url?challenge=c&token=t` must
/// answer 200 with the body `c`.
async fn create_webhook(fake: &FakeChatBot, body: &Value) -> Response {
    let (Some(name), Some(url), Some(token)) = (
        body["name"].as_str(),
        body["url"].as_str(),
        body["token"].as_str(),
    ) else {
        return error(400, "bad_request", "name, url and token are required");
    };
    let challenge = uuid::Uuid::new_v4().simple().to_string();
    let verified = fake
        .client
        .get(url)
        .query(&[("challenge", challenge.as_str()), ("token", token)])
        .send()
        .await;
    let answer = match verified {
        Ok(r) if r.status() == StatusCode::OK => r.text().await.unwrap_or_default(),
        Ok(r) => {
            return error(
                400,
                "bad_request",
                &format!(
                    "url: the verification request was answered {}",
                    r.status().as_u16()
                ),
            );
        }
        Err(_) => {
            return error(
                400,
                "bad_request",
                "url: the verification request could not be sent",
            );
        }
    };
    if answer != challenge {
        return error(
            400,
            "bad_request",
            "url: the verification request was not answered with the challenge",
        );
    }
    let mut data = fake.lock();
    let id = data.next_id();
    let webhook = json!({"id": id, "name": name, "url": url, "token": token});
    data.webhooks.push(webhook.clone());
    ok(json!({"data": {"id": id, "name": name, "url": url}}))
}

fn delete_webhook(fake: &FakeChatBot, id: &str) -> Response {
    let mut data = fake.lock();
    let before = data.webhooks.len();
    data.webhooks.retain(|w| w["id"] != id);
    if data.webhooks.len() == before {
        return error(404, "not_found", "Webhook not found");
    }
    ok(json!({"status": {"code": 200, "type": "success"}}))
}
