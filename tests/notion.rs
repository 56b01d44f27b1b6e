//! The Notion app (`modules/notion.json`) against a stateful fake of the Notion API (version
//! 2022-06-28) written from its reference (https://developers.notion.com/reference; Notion
//! publishes no OpenAPI description): databases with their property schemas, pages (database
//! items) whose property values are checked against the schema, page content blocks, search by
//! title and database queries paged by `start_cursor` (`page_size` at most 100), errors in
//! Notion's shape (`{"object": "error", "status", "code", "message"}`), the bearer token and
//! the `Notion-Version` header checked on every request, and Notion's rate: more than 3
//! requests in a second is answered 429 with a `Retry-After`.
//!
//! - Every module: success as Make's exports map it, a wrong token (401), 404, 400, 429
//!   (waited as `Retry-After` says), 5xx retried then a `ConnectionError`; `searchObjects`
//!   pages by cursor to its limit; a burst through one connection never meets a 429.
//! - `watchDatabaseItems` emits each new item (or, watching updates, each edit) once, also
//!   across `serve` restarts;
//!   `connections add --app notion --token T` checks the token with `/v1/users/me`.

// The fake's checks return the API's refusal as an axum response.
#![allow(clippy::result_large_err)]

mod common;

use common::modules::context_with;
#[path = "service/harness.rs"]
mod harness;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, patch, post};
use serde_json::{Map, Value, json};
use switchyard::apps::{AppOptions, AppRegistry};
use switchyard::module::connection::{Connection, Secrets};
use switchyard::module::{ErrorKind, ExecutionContext, Invocation, ModuleError, Registry};

use harness::{Backend, TestDb};

const TOKEN: &str = "secret_nT0k3nForTheFakeNotionApi0123456789abcdefXYZ";
const VERSION: &str = "2022-06-28";
const TASKS: &str = "97fef15e-70f8-4543-9002-add3d0e0f797";
const LOG: &str = "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9";
const EDITS: &str = "2c3d4e5f-6071-4829-93a4-b5c6d7e8f9a0";
/// Notion's rate: requests per second per integration.
const PER_SECOND: usize = 3;

// ---------------------------------------------------------------------------------------------
// The fake
// ---------------------------------------------------------------------------------------------

struct Database {
    id: String,
    title: String,
    /// Property name → (id, type).
    schema: Vec<(String, String, String)>,
}

struct Page {
    id: String,
    database: String,
    created: String,
    edited: String,
    archived: bool,
    /// Property name → the property's value object (`{"select": {...}}`).
    properties: Map<String, Value>,
    children: Vec<Value>,
}

#[derive(Default)]
struct NotionState {
    databases: Vec<Database>,
    pages: Vec<Page>,
    next_id: u64,
    /// Method, path, JSON body and arrival of every request with the right token and version.
    seen: Vec<(String, String, Value, Instant)>,
    /// Faults for the next requests whose path contains the text: (text, times, status, body).
    faults: Vec<(String, usize, u16, Value)>,
    arrivals: VecDeque<Instant>,
    /// 429s answered because the integration went over its rate.
    rate_refusals: usize,
}

#[derive(Clone, Default)]
struct FakeNotion(Arc<Mutex<NotionState>>);

fn refused(status: u16, code: &str, message: &str) -> Response {
    let body = json!({"object": "error", "status": status, "code": code, "message": message});
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn not_found(kind: &str, id: &str) -> Response {
    refused(
        404,
        "object_not_found",
        &format!(
            "Could not find {kind} with ID: {id}. Make sure the relevant pages and databases are shared with your integration."
        ),
    )
}

impl Database {
    fn render(&self) -> Value {
        let properties: Map<String, Value> = self
            .schema
            .iter()
            .map(|(name, id, kind)| {
                (
                    name.clone(),
                    json!({"id": id, "name": name, "type": kind, kind.clone(): {}}),
                )
            })
            .collect();
        json!({"object": "database", "id": self.id,
               "title": [{"type": "text", "text": {"content": self.title}, "plain_text": self.title}],
               "properties": properties})
    }

    /// `properties` of a create or update checked against the schema: each a property of
    /// the database (by name or id) whose value has the property's type key.
    fn check(&self, properties: &Value) -> Result<Map<String, Value>, Response> {
        let Some(properties) = properties.as_object() else {
            return Err(refused(
                400,
                "validation_error",
                "body failed validation: body.properties should be an object.",
            ));
        };
        let mut out = Map::new();
        for (key, value) in properties {
            let Some((name, _, kind)) = self.schema.iter().find(|(n, id, _)| n == key || id == key)
            else {
                return Err(refused(
                    400,
                    "validation_error",
                    &format!("{key} is not a property that exists."),
                ));
            };
            if value.get(kind).is_none() {
                return Err(refused(
                    400,
                    "validation_error",
                    &format!("{name} is expected to be {kind}."),
                ));
            }
            if ["created_time", "last_edited_time", "formula"].contains(&kind.as_str()) {
                return Err(refused(
                    400,
                    "validation_error",
                    &format!("{name} cannot be written."),
                ));
            }
            out.insert(name.clone(), json!({kind.clone(): value[kind]}));
        }
        Ok(out)
    }
}

impl NotionState {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!(
            "5a1f{:0>4}-0000-4000-8000-{:0>12}",
            self.next_id % 10000,
            self.next_id
        )
    }

    fn render_page(&self, page: &Page) -> Value {
        let database = self.databases.iter().find(|d| d.id == page.database);
        let mut properties = Map::new();
        if let Some(database) = database {
            for (name, id, kind) in &database.schema {
                let value = match kind.as_str() {
                    "created_time" => json!(page.created),
                    "last_edited_time" => json!(page.edited),
                    _ => page
                        .properties
                        .get(name)
                        .and_then(|v| v.get(kind))
                        .cloned()
                        .unwrap_or(match kind.as_str() {
                            "title" | "rich_text" | "multi_select" | "people" | "relation" => {
                                json!([])
                            }
                            _ => Value::Null,
                        }),
                };
                properties.insert(
                    name.clone(),
                    json!({"id": id, "type": kind, kind.clone(): value}),
                );
            }
        }
        json!({"object": "page", "id": page.id, "created_time": page.created,
               "last_edited_time": page.edited, "archived": page.archived,
               "parent": {"type": "database_id", "database_id": page.database},
               "url": format!("https://www.notion.so/{}", page.id.replace('-', "")),
               "properties": properties})
    }

    fn title(&self, page: &Page) -> String {
        page.properties
            .values()
            .find_map(|v| v.get("title"))
            .and_then(Value::as_array)
            .map(|parts| {
                parts
                    .iter()
                    .map(|p| p["text"]["content"].as_str().unwrap_or(""))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A page of `items` from `start_cursor` (an item's id), at most `page_size` (≤ 100).
    fn paged(&self, items: Vec<Value>, body: &Value) -> Response {
        let size = body["page_size"].as_u64().unwrap_or(100) as usize;
        if size == 0 || size > 100 {
            return refused(
                400,
                "validation_error",
                "body failed validation: body.page_size should be ≤ `100`.",
            );
        }
        let start = match body["start_cursor"].as_str() {
            None => 0,
            Some(cursor) => match items.iter().position(|i| i["id"] == cursor) {
                Some(at) => at,
                None => {
                    return refused(
                        400,
                        "validation_error",
                        "body failed validation: body.start_cursor should be a valid cursor.",
                    );
                }
            },
        };
        let end = (start + size).min(items.len());
        let next = items
            .get(end)
            .map(|i| i["id"].clone())
            .unwrap_or(Value::Null);
        ok(
            json!({"object": "list", "results": items[start..end].to_vec(),
                  "next_cursor": next, "has_more": end < items.len()}),
        )
    }
}

/// The token, the version header, the rate and the injected faults, in Notion's order.
fn admit(
    fake: &FakeNotion,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
    body: &Value,
) -> Option<Response> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {TOKEN}") {
        return Some(refused(401, "unauthorized", "API token is invalid."));
    }
    if headers.get("notion-version").and_then(|v| v.to_str().ok()) != Some(VERSION) {
        return Some(refused(
            400,
            "missing_version",
            "Notion-Version header failed validation: Notion-Version header should be defined, instead was `undefined`.",
        ));
    }
    let now = Instant::now();
    let mut state = fake.0.lock().unwrap();
    state
        .seen
        .push((method.to_string(), path.to_string(), body.clone(), now));
    while state
        .arrivals
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        state.arrivals.pop_front();
    }
    state.arrivals.push_back(now);
    if state.arrivals.len() > PER_SECOND {
        state.rate_refusals += 1;
        let mut response = refused(
            429,
            "rate_limited",
            "You have been rate limited. Please try again in a few minutes.",
        );
        response
            .headers_mut()
            .insert("retry-after", "1".parse().unwrap());
        return Some(response);
    }
    if let Some(fault) = state
        .faults
        .iter_mut()
        .find(|(p, n, ..)| path.contains(p.as_str()) && *n > 0)
    {
        fault.1 -= 1;
        let (status, body) = (fault.2, fault.3.clone());
        let mut response =
            (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
        if status == 429 {
            response
                .headers_mut()
                .insert("retry-after", "1".parse().unwrap());
        }
        return Some(response);
    }
    None
}

fn parse(body: &str) -> Result<Value, Response> {
    if body.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(body).map_err(|_| refused(400, "invalid_json", "Error parsing JSON body."))
}

async fn users_me(State(fake): State<FakeNotion>, method: Method, headers: HeaderMap) -> Response {
    if let Some(r) = admit(&fake, &headers, &method, "/v1/users/me", &Value::Null) {
        return r;
    }
    ok(
        json!({"object": "user", "id": "9a3b5c7d-0000-4000-8000-000000000001", "type": "bot",
              "name": "Switchyard", "bot": {"owner": {"type": "workspace", "workspace": true}}}),
    )
}

async fn database_get(
    State(fake): State<FakeNotion>,
    UrlPath(id): UrlPath<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admit(
        &fake,
        &headers,
        &method,
        &format!("/v1/databases/{id}"),
        &Value::Null,
    ) {
        return r;
    }
    let state = fake.0.lock().unwrap();
    match state.databases.iter().find(|d| d.id == id) {
        Some(database) => ok(database.render()),
        None => not_found("database", &id),
    }
}

async fn database_query(
    State(fake): State<FakeNotion>,
    UrlPath(id): UrlPath<String>,
    method: Method,
    headers: HeaderMap,
    body: String,
) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Some(r) = admit(
        &fake,
        &headers,
        &method,
        &format!("/v1/databases/{id}/query"),
        &body,
    ) {
        return r;
    }
    let state = fake.0.lock().unwrap();
    if !state.databases.iter().any(|d| d.id == id) {
        return not_found("database", &id);
    }
    let mut pages: Vec<&Page> = state
        .pages
        .iter()
        .filter(|p| p.database == id && !p.archived)
        .collect();
    if let Some(sort) = body["sorts"].as_array().and_then(|s| s.first()) {
        let edited = sort["timestamp"] == "last_edited_time";
        pages.sort_by(|a, b| {
            let (x, y) = if edited {
                (&a.edited, &b.edited)
            } else {
                (&a.created, &b.created)
            };
            x.cmp(y)
        });
        if sort["direction"] == "descending" {
            pages.reverse();
        }
    }
    let items = pages.iter().map(|p| state.render_page(p)).collect();
    state.paged(items, &body)
}

async fn pages_create(
    State(fake): State<FakeNotion>,
    method: Method,
    headers: HeaderMap,
    body: String,
) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Some(r) = admit(&fake, &headers, &method, "/v1/pages", &body) {
        return r;
    }
    let mut state = fake.0.lock().unwrap();
    let Some(database_id) = body["parent"]["database_id"].as_str().map(str::to_string) else {
        return refused(
            400,
            "validation_error",
            "body failed validation: body.parent.database_id should be defined.",
        );
    };
    let Some(database) = state.databases.iter().find(|d| d.id == database_id) else {
        return not_found("database", &database_id);
    };
    let properties = match database.check(&body["properties"]) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let id = state.new_id();
    let stamp = now_iso();
    let page = Page {
        id,
        database: database_id,
        created: stamp.clone(),
        edited: stamp,
        archived: false,
        properties,
        children: body["children"].as_array().cloned().unwrap_or_default(),
    };
    let out = state.render_page(&page);
    state.pages.push(page);
    ok(out)
}

async fn page_one(
    State(fake): State<FakeNotion>,
    UrlPath(id): UrlPath<String>,
    method: Method,
    headers: HeaderMap,
    body: String,
) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Some(r) = admit(&fake, &headers, &method, &format!("/v1/pages/{id}"), &body) {
        return r;
    }
    let mut state = fake.0.lock().unwrap();
    let Some(index) = state.pages.iter().position(|p| p.id == id) else {
        return not_found("page", &id);
    };
    if method == Method::PATCH {
        let database = state.pages[index].database.clone();
        let none = json!({});
        let given = if body["properties"].is_null() {
            &none
        } else {
            &body["properties"]
        };
        let checked = {
            let database = state.databases.iter().find(|d| d.id == database).unwrap();
            database.check(given)
        };
        let properties = match checked {
            Ok(p) => p,
            Err(r) => return r,
        };
        let page = &mut state.pages[index];
        page.properties.extend(properties);
        if let Some(archived) = body["archived"].as_bool() {
            page.archived = archived;
        }
        page.edited = now_iso();
    }
    ok(state.render_page(&state.pages[index]))
}

async fn search(
    State(fake): State<FakeNotion>,
    method: Method,
    headers: HeaderMap,
    body: String,
) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Some(r) = admit(&fake, &headers, &method, "/v1/search", &body) {
        return r;
    }
    let state = fake.0.lock().unwrap();
    let query = body["query"].as_str().unwrap_or("").to_lowercase();
    let items: Vec<Value> = match body["filter"]["value"].as_str() {
        Some("database") => state
            .databases
            .iter()
            .filter(|d| d.title.to_lowercase().contains(&query))
            .map(Database::render)
            .collect(),
        Some("page") | None => state
            .pages
            .iter()
            .filter(|p| !p.archived && state.title(p).to_lowercase().contains(&query))
            .map(|p| state.render_page(p))
            .collect(),
        Some(other) => {
            return refused(
                400,
                "validation_error",
                &format!(
                    "body failed validation: body.filter.value should be `page` or `database`, instead was `\"{other}\"`."
                ),
            );
        }
    };
    state.paged(items, &body)
}

async fn block_children(
    State(fake): State<FakeNotion>,
    UrlPath(id): UrlPath<String>,
    method: Method,
    headers: HeaderMap,
    body: String,
) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Some(r) = admit(
        &fake,
        &headers,
        &method,
        &format!("/v1/blocks/{id}/children"),
        &body,
    ) {
        return r;
    }
    let mut state = fake.0.lock().unwrap();
    let Some(page) = state.pages.iter_mut().find(|p| p.id == id) else {
        return not_found("block", &id);
    };
    let Some(children) = body["children"].as_array() else {
        return refused(
            400,
            "validation_error",
            "body failed validation: body.children should be defined, instead was `undefined`.",
        );
    };
    if children.len() > 100 {
        return refused(
            400,
            "validation_error",
            "body failed validation: body.children.length should be ≤ `100`.",
        );
    }
    let mut results = Vec::new();
    for (i, child) in children.iter().enumerate() {
        let kind = child["type"].as_str().unwrap_or("");
        if kind.is_empty() || child.get(kind).is_none() {
            return refused(
                400,
                "validation_error",
                &format!("body failed validation: body.children[{i}] should have its type's key."),
            );
        }
        let mut block = child.clone();
        block["object"] = json!("block");
        block["id"] = json!(format!(
            "b10c{:0>4}-0000-4000-8000-{:0>12}",
            i,
            page.children.len() + i
        ));
        results.push(block);
    }
    page.children.extend(results.iter().cloned());
    ok(json!({"object": "list", "results": results, "next_cursor": null, "has_more": false}))
}

impl FakeNotion {
    /// The fake with databases Tasks (`seeded` items) and Log, and its URL.
    async fn start(seeded: usize) -> (FakeNotion, String) {
        let fake = FakeNotion::default();
        {
            let mut state = fake.0.lock().unwrap();
            let schema = |props: &[(&str, &str, &str)]| {
                props
                    .iter()
                    .map(|(n, i, k)| (n.to_string(), i.to_string(), k.to_string()))
                    .collect()
            };
            state.databases.push(Database {
                id: TASKS.into(),
                title: "Tasks".into(),
                schema: schema(&[
                    ("Name", "title", "title"),
                    ("Priority", "U%7CNl", "select"),
                    ("Tags", "t%40gs", "multi_select"),
                    ("Due", "d%3Ee", "date"),
                    ("Estimate", "es%7Bt", "number"),
                    ("Done", "d0ne", "checkbox"),
                    ("Notes", "n%3Dts", "rich_text"),
                    ("Created", "cr%3At", "created_time"),
                ]),
            });
            for (id, title) in [(LOG, "Log"), (EDITS, "Edits")] {
                state.databases.push(Database {
                    id: id.into(),
                    title: title.into(),
                    schema: schema(&[("Name", "title", "title")]),
                });
            }
            for i in 0..seeded {
                let id = state.new_id();
                let stamp = now_iso();
                state.pages.push(Page {
                    id,
                    database: TASKS.into(),
                    created: stamp.clone(),
                    edited: stamp,
                    archived: false,
                    properties: json!({"Name": {"title": [{"type": "text", "text": {"content": format!("Seed {i:03}")}}]}})
                        .as_object()
                        .cloned()
                        .unwrap(),
                    children: Vec::new(),
                });
            }
        }
        let app = Router::new()
            .route("/v1/users/me", get(users_me))
            .route("/v1/databases/{id}", get(database_get))
            .route("/v1/databases/{id}/query", post(database_query))
            .route("/v1/pages", post(pages_create))
            .route("/v1/pages/{id}", any(page_one))
            .route("/v1/search", post(search))
            .route("/v1/blocks/{id}/children", patch(block_children))
            .with_state(fake.clone());
        let addr = common::server::serve(app).await;
        (fake, format!("http://{addr}"))
    }

    fn fail_next(&self, path: &str, times: usize, status: u16, body: Value) {
        self.0
            .lock()
            .unwrap()
            .faults
            .push((path.to_string(), times, status, body));
    }

    /// Method, body and arrival of the requests whose path ends with `suffix`.
    fn requests(&self, suffix: &str) -> Vec<(String, Value, Instant)> {
        let state = self.0.lock().unwrap();
        state
            .seen
            .iter()
            .filter(|(_, p, ..)| p.ends_with(suffix))
            .map(|(m, _, b, t)| (m.clone(), b.clone(), *t))
            .collect()
    }

    /// The titles of a database's items, oldest first.
    fn titles(&self, database: &str) -> Vec<String> {
        let state = self.0.lock().unwrap();
        state
            .pages
            .iter()
            .filter(|p| p.database == database)
            .map(|p| state.title(p))
            .collect()
    }

    fn add(&self, title: &str) -> String {
        let mut state = self.0.lock().unwrap();
        let id = state.new_id();
        let stamp = now_iso();
        state.pages.push(Page {
            id: id.clone(),
            database: TASKS.into(),
            created: stamp.clone(),
            edited: stamp,
            archived: false,
            properties: json!({"Name": {"title": [{"type": "text", "text": {"content": title}}]}})
                .as_object()
                .cloned()
                .unwrap(),
            children: Vec::new(),
        });
        id
    }

    /// An item edited in Notion (its priority set), as a person would.
    fn touch(&self, id: &str) {
        let mut state = self.0.lock().unwrap();
        let page = state.pages.iter_mut().find(|p| p.id == id).unwrap();
        page.properties
            .insert("Priority".into(), json!({"select": {"name": "High"}}));
        page.edited = now_iso();
    }

    fn rate_refusals(&self) -> usize {
        self.0.lock().unwrap().rate_refusals
    }
}

// ---------------------------------------------------------------------------------------------
// Calling the modules
// ---------------------------------------------------------------------------------------------

fn context(token: &str) -> ExecutionContext {
    let connection = Connection {
        id: "2882389".into(),
        name: "notion".into(),
        app: "notion".into(),
        kind: "notion2".into(),
        fields: Secrets(json!({"token": token}).as_object().cloned().unwrap()),
    };
    context_with(connection)
}

fn registry(url: &str) -> AppRegistry {
    let mut options = AppOptions::allowing_loopback();
    options.base_urls = vec![("notion".into(), url.parse().unwrap())];
    AppRegistry::build(options).unwrap()
}

async fn call(
    registry: &AppRegistry,
    module: &str,
    mapper: Value,
    context: &ExecutionContext,
) -> Result<Vec<Value>, ModuleError> {
    let found = registry
        .module(&format!("notion:{module}"))
        .unwrap_or_else(|| panic!("notion:{module} is served"));
    let parameters = json!({"__IMTCONN__": 2882389})
        .as_object()
        .cloned()
        .unwrap();
    found
        .call(Invocation {
            module_id: 2,
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

fn assert_no_token(error: &ModuleError) {
    let shown = format!(
        "{error:?} {error} {}",
        serde_json::to_string(error).unwrap()
    );
    assert!(!shown.contains(TOKEN), "the token leaked: {shown}");
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notion_modules_against_the_fake() {
    let (fake, url) = FakeNotion::start(0).await;
    let registry = registry(&url);
    let ctx = context(TOKEN);

    // Create, as Make's exports map it: fields keyed by property ID ("title", "U%7CNl"),
    // written by the types the database gives them.
    let created = one(
        &registry,
        "createAPage",
        json!({"select": "list", "database": TASKS,
               "fields": {"title": "Call Ann", "U%7CNl": "High", "Tags": ["crm", "mail"],
                          "es%7Bt": "2.5", "Due": "2026-12-24", "Notes": ""}}),
        &ctx,
    )
    .await;
    let page = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["object"], "page");
    assert_eq!(
        created["properties"]["Name"]["title"][0]["text"]["content"],
        "Call Ann"
    );
    assert_eq!(created["properties"]["Priority"]["select"]["name"], "High");
    let (_, body, _) = fake.requests("/v1/pages").pop().unwrap();
    assert_eq!(
        body,
        json!({"parent": {"database_id": TASKS}, "properties": {
            "Name": {"title": [{"type": "text", "text": {"content": "Call Ann"}}]},
            "Priority": {"select": {"name": "High"}},
            "Tags": {"multi_select": [{"name": "crm"}, {"name": "mail"}]},
            "Estimate": {"number": 2.5},
            "Due": {"date": {"start": "2026-12-24"}}}})
    );
    // Make's "map" shape: an array of key, type and value.
    let mapped = one(
        &registry,
        "createAPage",
        json!({"select": "map", "database": TASKS,
               "fields": [{"key": "Name", "type": "title", "value": "Write notes"},
                          {"key": "Due", "type": "date", "date": {"start": "2026-12-26", "includeTime": true}}]}),
        &ctx,
    )
    .await;
    assert_eq!(
        mapped["properties"]["Due"]["date"],
        json!({"start": "2026-12-26"})
    );
    // A field the database does not have: refused before any write.
    let before = fake.requests("/v1/pages").len();
    let err = call(
        &registry,
        "createAPage",
        json!({"select": "list", "database": TASKS, "fields": {"Nope": "x"}}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert!(err.message.contains("field Nope"), "{}", err.message);
    assert_eq!(fake.requests("/v1/pages").len(), before);
    // An unknown database: Notion's 404.
    let err = call(
        &registry,
        "createAPage",
        json!({"select": "list", "database": "00000000-0000-4000-8000-000000000000", "fields": {"title": "x"}}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);
    assert!(
        err.message
            .starts_with("[404] Could not find database with ID"),
        "{}",
        err.message
    );

    // Update: the item's database is read from the item; only the given fields change.
    let updated = one(
        &registry,
        "updateAPage",
        json!({"select": "list", "page": page, "fields": {"d0ne": true, "U%7CNl": "Low"}}),
        &ctx,
    )
    .await;
    assert_eq!(updated["properties"]["Done"]["checkbox"], true);
    assert_eq!(updated["properties"]["Priority"]["select"]["name"], "Low");
    assert_eq!(
        updated["properties"]["Name"]["title"][0]["text"]["content"],
        "Call Ann"
    );
    let err = call(
        &registry,
        "updateAPage",
        json!({"page": "00000000-0000-4000-8000-00000000dead", "fields": {"d0ne": true}}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert!(
        err.message.starts_with("[404] Could not find page"),
        "{}",
        err.message
    );

    // Append content: items of type and text become blocks.
    let appended = one(
        &registry,
        "appendBlocks",
        json!({"pageId": page, "content": [{"type": "heading_2", "text": "Call notes"},
                                           {"type": "to_do", "text": "Send the quote", "checked": false}]}),
        &ctx,
    )
    .await;
    assert_eq!(appended["results"].as_array().unwrap().len(), 2);
    assert_eq!(
        appended["results"][0]["heading_2"]["rich_text"][0]["text"]["content"],
        "Call notes"
    );
    let err = call(
        &registry,
        "appendBlocks",
        json!({"pageId": "00000000-0000-4000-8000-00000000beef", "content": [{"text": "x"}]}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert!(
        err.message.starts_with("[404] Could not find block"),
        "{}",
        err.message
    );

    // Search by title.
    let found = call(
        &registry,
        "searchObjects",
        json!({"query": "call", "select": "page", "limit": 10}),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], json!(page));
    let databases = call(
        &registry,
        "searchObjects",
        json!({"query": "", "select": "database"}),
        &ctx,
    )
    .await
    .unwrap();
    let ids: Vec<&str> = databases
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [TASKS, LOG, EDITS], "every database the fake holds");

    // makeApiCall: relative paths only; the version header is added.
    let out = one(
        &registry,
        "makeApiCall",
        json!({"url": "/v1/users/me"}),
        &ctx,
    )
    .await;
    assert_eq!(out["body"]["type"], "bot");
    for bad in ["https://evil.test/v1/users/me", "//evil.test/x", "/v1/../x"] {
        let err = call(&registry, "makeApiCall", json!({"url": bad}), &ctx)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::DataError, "{bad}");
    }

    // A wrong token: 401 for every module, the token in no error.
    let wrong = context("secret_wrongWrongWrong000000000000000000000000000");
    for (module, m) in [
        (
            "createAPage",
            json!({"database": TASKS, "fields": {"title": "x"}}),
        ),
        ("updateAPage", json!({"page": page, "fields": {}})),
        ("searchObjects", json!({"query": "x"})),
        (
            "appendBlocks",
            json!({"pageId": page, "content": [{"text": "x"}]}),
        ),
        ("makeApiCall", json!({"url": "/v1/users/me"})),
    ] {
        let err = call(&registry, module, m, &wrong).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidAccessTokenError, "{module}");
        assert_eq!(err.message, "[401] API token is invalid.", "{module}");
        assert_no_token(&err);
    }

    // 429: Notion's Retry-After is waited for.
    fake.fail_next(
        "/v1/search",
        1,
        429,
        json!({"object": "error", "status": 429, "code": "rate_limited", "message": "You have been rate limited."}),
    );
    let before = fake.requests("/v1/search").len();
    call(&registry, "searchObjects", json!({"query": "call"}), &ctx)
        .await
        .unwrap();
    let tries = fake.requests("/v1/search");
    assert_eq!(tries.len(), before + 2);
    assert!(tries[before + 1].2.duration_since(tries[before].2) >= Duration::from_secs(1));

    // 5xx: retried, then a ConnectionError with Notion's message.
    fake.fail_next(
        "/v1/pages",
        4,
        503,
        json!({"object": "error", "status": 503, "code": "service_unavailable", "message": "Notion is unavailable, please try again later."}),
    );
    let err = call(
        &registry,
        "createAPage",
        json!({"database": TASKS, "fields": {"title": "x"}}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ConnectionError);
    assert_eq!(
        err.message,
        "[503] Notion is unavailable, please try again later."
    );
    assert_eq!(fake.rate_refusals(), 0, "no request went over the rate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_pages_by_cursor_and_a_burst_keeps_the_rate() {
    let (fake, url) = FakeNotion::start(250).await;
    let registry = Arc::new(registry(&url));
    let ctx = Arc::new(context(TOKEN));
    let found = call(
        &registry,
        "searchObjects",
        json!({"query": "seed", "limit": 230}),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(found.len(), 230);
    let cursors: Vec<Value> = fake
        .requests("/v1/search")
        .iter()
        .map(|(_, b, _)| b["start_cursor"].clone())
        .collect();
    assert_eq!(cursors.len(), 3);
    assert_eq!(cursors[0], Value::Null);
    assert_eq!(cursors[1], found[100]["id"]);
    assert_eq!(cursors[2], found[200]["id"]);

    // A burst of 10 creates at once through one connection: held to 3 a second, no 429.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (registry, ctx) = (registry.clone(), ctx.clone());
        tasks.push(tokio::spawn(async move {
            one(
                &registry,
                "createAPage",
                json!({"database": LOG, "fields": {"title": format!("burst {i}")}}),
                &ctx,
            )
            .await
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(fake.titles(LOG).len(), 10);
    assert_eq!(fake.rate_refusals(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_added_with_token_and_checked() {
    let (fake, url) = FakeNotion::start(0).await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let base = format!("notion={url}");
    let add = |name: &str, token: &str| {
        db.cli(&[
            "connections",
            "add",
            name,
            "--app",
            "notion",
            "--token",
            token,
            "--app-base-url",
            &base,
        ])
    };
    let out = add("n", TOKEN);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fake.requests("/v1/users/me").len(), 1);
    let wrong = "secret_wrongWrongWrong000000000000000000000000000";
    let out = add("n2", wrong);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("API token is invalid"), "{stderr}");
    assert!(!stderr.contains(wrong), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_database_items_emits_each_new_item_once_across_restarts() {
    let (fake, url) = FakeNotion::start(2).await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let base = format!("notion={url}");
    let out = db.cli(&[
        "connections",
        "add",
        "notion",
        "--app",
        "notion",
        "--token",
        TOKEN,
        "--id",
        "2882389",
        "--app-base-url",
        &base,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blueprint = json!({
        "name": "log new tasks",
        "flow": [
            {"id": 1, "module": "notion:watchDatabaseItems", "version": 1,
             "parameters": {"__IMTCONN__": 2882389, "select": "create", "database": TASKS, "limit": 5},
             "mapper": {}},
            {"id": 2, "module": "notion:createAPage", "version": 1,
             "parameters": {"__IMTCONN__": 2882389},
             "mapper": {"select": "list", "database": LOG,
                        "fields": {"title": "{{1.properties.Name.title[1].text.content}}"}}}
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

    // A second scenario watches edits (`select: update`) into Edits.
    let mut edits = blueprint.clone();
    edits["name"] = json!("log edited tasks");
    edits["flow"][0]["parameters"]["select"] = json!("update");
    edits["flow"][1]["mapper"]["database"] = json!(EDITS);
    let edits_id = service.api.create(&edits).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = service
        .api
        .post(&format!("/api/scenarios/{edits_id}/activate"), &json!({}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let edited = || fake.titles(EDITS);

    let logged = || fake.titles(LOG);
    let wait_for = |count: usize| async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while logged().len() < count {
            assert!(Instant::now() < deadline, "only {:?} logged", logged());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    db.executions_at_least(2).await;
    let ann = fake.add("Ann");
    fake.add("Bob");
    wait_for(2).await;
    assert_eq!(logged(), ["Ann", "Bob"]);

    db.executions_settled().await;
    drop(service);
    let service = db.serve(&serve_args).await;
    fake.add("Cy");
    wait_for(3).await;
    // An edit is emitted by the update watcher (again for Ann), never by the create watcher.
    fake.touch(&ann);
    let deadline = Instant::now() + Duration::from_secs(60);
    while edited().len() < 4 {
        assert!(Instant::now() < deadline, "only {:?} edited", edited());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = db.ended_executions();
    db.executions_at_least(before + 2).await;
    // (No rate check here: the rate is kept per process, so the restarted process may meet a
    // 429 right after the old one's last requests; it waits as `Retry-After` says.)
    assert_eq!(logged(), ["Ann", "Bob", "Cy"]);
    assert_eq!(edited(), ["Ann", "Bob", "Cy", "Ann"]);
    drop(service);
}
