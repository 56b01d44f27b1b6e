//! The Airtable app (`modules/airtable.json`) against a stateful fake of Airtable's Web API
//! written from its reference (https://airtable.com/developers/web/api/introduction; Airtable
//! publishes no OpenAPI description): records in memory per base and table, fields by name or
//! ID, `filterByFormula` for the simple formulas these tests use, `POST …/listRecords` paged by
//! `offset` (pageSize at most 100), `typecast`, `returnFieldsByFieldId`, errors in Airtable's
//! shapes (`{"error": {"type", "message"}}`, a bare `{"error": "NOT_FOUND"}`), the bearer token
//! checked on every request (401 `AUTHENTICATION_REQUIRED`), and Airtable's rate: more than 5
//! requests in a second to one base is answered 429 and the base refuses everything for the
//! next 30 seconds.
//!
//! - Every module: success as Make's exports map it, a wrong token, 404, 422, 429 (waited 30 s
//!   for, the base's other requests held too), 5xx retried then a `ConnectionError`;
//!   `ActionSearchRecords` pages by `offset` to its limit.
//! - The rate is counted per base: a burst against one base never meets a 429, while another
//!   base of the same connection is not held by it.
//! - `TriggerWatchRecords` emits created and modified records once each, also across `serve`
//!   restarts; `connections add --app airtable --token T` checks the token with `whoami`.

// The fake's checks return the API's refusal as an axum response.
#![allow(clippy::result_large_err)]

mod common;

use common::modules::context_with;
#[path = "service/harness.rs"]
mod harness;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Map, Value, json};
use switchyard::apps::{AppOptions, AppRegistry};
use switchyard::module::connection::{Connection, Secrets};
use switchyard::module::{ErrorKind, ExecutionContext, Invocation, ModuleError, Registry};

use harness::{Backend, TestDb};

const TOKEN: &str = "patQ3vKx81mNcRt0a.7f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d";
const BASE: &str = "appMipeYj3rKOJv4z";
/// Airtable's rate: requests per second per base, and how long a base refuses after a 429.
const PER_SECOND: usize = 5;
const PENALTY: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The fake
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Number,
    Checkbox,
    Created,
    Modified,
}

struct Field {
    id: String,
    name: String,
    kind: Kind,
}

struct Record {
    id: String,
    created: String,
    modified: String,
    values: Map<String, Value>,
}

struct Table {
    id: String,
    name: String,
    fields: Vec<Field>,
    records: Vec<Record>,
}

#[derive(Default)]
struct AirtableState {
    /// Tables by base.
    bases: HashMap<String, Vec<Table>>,
    next_id: u64,
    /// Method, path, JSON body and arrival of every request with the right token.
    seen: Vec<(String, String, Value, Instant)>,
    /// Faults for the next requests whose path contains the text: (text, times, status, body).
    faults: Vec<(String, usize, u16, Value)>,
    /// Arrivals per base in the last second, and until when a base refuses (after a 429).
    arrivals: HashMap<String, VecDeque<Instant>>,
    penalty: HashMap<String, Instant>,
    /// 429s answered because a base was over its rate or in its penalty.
    rate_refusals: usize,
}

#[derive(Clone, Default)]
struct FakeAirtable(Arc<Mutex<AirtableState>>);

fn answer(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

fn error(status: u16, kind: &str, message: &str) -> Response {
    answer(status, json!({"error": {"type": kind, "message": message}}))
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0 && !n.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

// A small evaluator of Airtable formulas: `{Field}`, 'text' and "text", numbers, comparisons
// (= != < > <= >=), AND, OR, NOT, TRUE(), FALSE(), BLANK(), RECORD_ID().

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Field(String),
    Text(String),
    Number(f64),
    Name(String),
    Open,
    Close,
    Comma,
    Op(String),
}

fn lex(formula: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = formula.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\n' | '\t' => i += 1,
            '{' => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == '}')
                    .ok_or("a field reference is not closed")?;
                tokens.push(Token::Field(chars[i + 1..i + end].iter().collect()));
                i += end + 1;
            }
            '\'' | '"' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&q| q == c)
                    .ok_or("a text is not closed")?;
                tokens.push(Token::Text(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            '(' => (tokens.push(Token::Open), i += 1).1,
            ')' => (tokens.push(Token::Close), i += 1).1,
            ',' => (tokens.push(Token::Comma), i += 1).1,
            '=' | '!' | '<' | '>' => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let op = if ["!=", "<=", ">="].contains(&two.as_str()) {
                    two
                } else if c == '!' {
                    return Err("unexpected !".into());
                } else {
                    c.to_string()
                };
                i += op.len();
                tokens.push(Token::Op(op));
            }
            c if c.is_ascii_digit() => {
                let end = chars[i..]
                    .iter()
                    .position(|c| !(c.is_ascii_digit() || *c == '.'))
                    .unwrap_or(chars.len() - i);
                let text: String = chars[i..i + end].iter().collect();
                tokens.push(Token::Number(text.parse().map_err(|_| "a bad number")?));
                i += end;
            }
            c if c.is_ascii_alphabetic() => {
                let end = chars[i..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
                    .unwrap_or(chars.len() - i);
                tokens.push(Token::Name(chars[i..i + end].iter().collect()));
                i += end;
            }
            other => return Err(format!("unexpected {other}")),
        }
    }
    Ok(tokens)
}

struct Formula<'a> {
    tokens: Vec<Token>,
    at: usize,
    record: &'a Map<String, Value>,
    id: &'a str,
}

impl Formula<'_> {
    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn expr(&mut self) -> Result<Value, String> {
        let left = self.primary()?;
        if let Some(Token::Op(op)) = self.tokens.get(self.at).cloned() {
            self.at += 1;
            let right = self.primary()?;
            return Ok(Value::Bool(compare(&left, &op, &right)));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Value, String> {
        match self.next() {
            Some(Token::Field(name)) => {
                if !self.record.contains_key(&name) && name != "__known" {
                    // The caller passes every field of the table, empty ones as null.
                    return Err(format!("Unknown field names: {}", name.to_lowercase()));
                }
                Ok(self.record[&name].clone())
            }
            Some(Token::Text(t)) => Ok(Value::String(t)),
            Some(Token::Number(n)) => Ok(json!(n)),
            Some(Token::Open) => {
                let v = self.expr()?;
                (self.next() == Some(Token::Close))
                    .then_some(v)
                    .ok_or_else(|| "a ( is not closed".to_string())
            }
            Some(Token::Name(name)) => {
                if self.next() != Some(Token::Open) {
                    return Err(format!("{name} is not a function call"));
                }
                let mut args = Vec::new();
                if self.tokens.get(self.at) == Some(&Token::Close) {
                    self.at += 1;
                } else {
                    loop {
                        args.push(self.expr()?);
                        match self.next() {
                            Some(Token::Comma) => continue,
                            Some(Token::Close) => break,
                            _ => return Err(format!("{name}( is not closed")),
                        }
                    }
                }
                Ok(match name.to_uppercase().as_str() {
                    "AND" => Value::Bool(args.iter().all(truthy)),
                    "OR" => Value::Bool(args.iter().any(truthy)),
                    "NOT" if args.len() == 1 => Value::Bool(!truthy(&args[0])),
                    "TRUE" => Value::Bool(true),
                    "FALSE" => Value::Bool(false),
                    "BLANK" => Value::Null,
                    "RECORD_ID" => Value::String(self.id.to_string()),
                    other => return Err(format!("unknown function {other}")),
                })
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Null => Some(0.0),
        Value::Bool(b) => Some(*b as u8 as f64),
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s.is_empty() => Some(0.0),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn compare(a: &Value, op: &str, b: &Value) -> bool {
    let ordering = if a.is_number() || b.is_number() || a.is_boolean() || b.is_boolean() {
        number(a).partial_cmp(&number(b))
    } else {
        let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_default();
        Some(text(a).cmp(&text(b)))
    };
    let Some(ordering) = ordering else {
        return false;
    };
    match op {
        "=" => ordering.is_eq(),
        "!=" => ordering.is_ne(),
        "<" => ordering.is_lt(),
        ">" => ordering.is_gt(),
        "<=" => ordering.is_le(),
        _ => ordering.is_ge(),
    }
}

impl Table {
    fn field(&self, key: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.id == key || f.name == key)
    }

    /// Every field of `record` by name, computed ones included, empty ones as null.
    fn cells(&self, record: &Record) -> Map<String, Value> {
        self.fields
            .iter()
            .map(|f| {
                let v = match f.kind {
                    Kind::Created => json!(record.created),
                    Kind::Modified => json!(record.modified),
                    _ => record.values.get(&f.name).cloned().unwrap_or(Value::Null),
                };
                (f.name.clone(), v)
            })
            .collect()
    }

    /// A record as the API returns it: empty fields left out, keys names or IDs.
    fn render(&self, record: &Record, by_id: bool, only: Option<&[String]>) -> Value {
        let mut fields = Map::new();
        for (name, value) in self.cells(record) {
            let field = self.field(&name).unwrap();
            if !truthy(&value) && !value.is_number() {
                continue;
            }
            if only.is_some_and(|only| !only.iter().any(|o| *o == field.name || *o == field.id)) {
                continue;
            }
            let key = if by_id { &field.id } else { &field.name };
            fields.insert(key.clone(), value);
        }
        json!({"id": record.id, "createdTime": record.created, "fields": fields})
    }

    /// `fields` of a create or update checked and converted: unknown names, computed fields
    /// and values of the wrong type (unless `typecast`) are refused with 422.
    fn write(&self, fields: &Value, typecast: bool) -> Result<Map<String, Value>, Response> {
        let Some(fields) = fields.as_object() else {
            return Err(error(
                422,
                "INVALID_REQUEST_MISSING_FIELDS",
                "Could not find field \"fields\" in the request body",
            ));
        };
        let mut out = Map::new();
        for (key, value) in fields {
            let Some(field) = self.field(key) else {
                return Err(error(
                    422,
                    "UNKNOWN_FIELD_NAME",
                    &format!("Unknown field name: \"{key}\""),
                ));
            };
            let refused = || {
                error(
                    422,
                    "INVALID_VALUE_FOR_COLUMN",
                    &format!("Field \"{}\" cannot accept the provided value", field.name),
                )
            };
            let converted = match (field.kind, value) {
                (Kind::Created | Kind::Modified, _) => {
                    return Err(error(
                        422,
                        "INVALID_VALUE_FOR_COLUMN",
                        &format!(
                            "Field \"{}\" cannot accept a value because the field is computed",
                            field.name
                        ),
                    ));
                }
                (_, Value::Null) => Value::Null,
                (Kind::Text, Value::String(_)) => value.clone(),
                (Kind::Text, other) if typecast => json!(other.to_string()),
                (Kind::Number, Value::Number(_)) => value.clone(),
                (Kind::Number, Value::String(s)) if typecast => {
                    json!(s.trim().parse::<f64>().map_err(|_| refused())?)
                }
                (Kind::Checkbox, Value::Bool(_)) => value.clone(),
                (Kind::Checkbox, Value::String(s)) if typecast => json!(s == "true" || s == "1"),
                _ => return Err(refused()),
            };
            out.insert(field.name.clone(), converted);
        }
        Ok(out)
    }
}

/// What a list request asks (from `POST …/listRecords`'s body or `GET`'s query).
#[derive(Default)]
struct ListParams {
    formula: Option<String>,
    view: Option<String>,
    sort: Vec<(String, bool)>,
    fields: Option<Vec<String>>,
    max_records: Option<usize>,
    page_size: Option<usize>,
    offset: Option<String>,
    by_id: bool,
}

impl ListParams {
    fn from_body(body: &Value) -> ListParams {
        let text = |k: &str| body[k].as_str().map(str::to_string);
        ListParams {
            formula: text("filterByFormula"),
            view: text("view"),
            sort: body["sort"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .map(|s| {
                            (
                                s["field"].as_str().unwrap_or("").to_string(),
                                s["direction"] == "desc",
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            fields: body["fields"].as_array().map(|f| {
                f.iter()
                    .map(|f| f.as_str().unwrap_or("").to_string())
                    .collect()
            }),
            max_records: body["maxRecords"].as_u64().map(|n| n as usize),
            page_size: body["pageSize"].as_u64().map(|n| n as usize),
            offset: text("offset"),
            by_id: body["returnFieldsByFieldId"] == true,
        }
    }

    fn from_query(pairs: &[(String, String)]) -> ListParams {
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        ListParams {
            formula: get("filterByFormula"),
            view: get("view"),
            max_records: get("maxRecords").and_then(|n| n.parse().ok()),
            page_size: get("pageSize").and_then(|n| n.parse().ok()),
            offset: get("offset"),
            by_id: get("returnFieldsByFieldId").as_deref() == Some("true"),
            ..ListParams::default()
        }
    }
}

fn list(table: &Table, params: &ListParams) -> Response {
    let page_size = params.page_size.unwrap_or(100);
    if page_size == 0 || page_size > 100 {
        return error(
            422,
            "INVALID_REQUEST_UNKNOWN",
            "Invalid request: parameter validation failed. Check your request data.",
        );
    }
    if let Some(view) = &params.view
        && !view.is_empty()
        && view != "Grid view"
        && view != "viwGrid0000000000"
    {
        return error(
            422,
            "VIEW_NAME_NOT_FOUND",
            &format!("Could not find view \"{view}\""),
        );
    }
    let mut rows: Vec<&Record> = Vec::new();
    for record in &table.records {
        if let Some(formula) = params.formula.as_deref().filter(|f| !f.trim().is_empty()) {
            let cells = table.cells(record);
            let result = lex(formula).and_then(|tokens| {
                let mut f = Formula {
                    tokens,
                    at: 0,
                    record: &cells,
                    id: &record.id,
                };
                let v = f.expr()?;
                (f.at == f.tokens.len())
                    .then_some(v)
                    .ok_or_else(|| "unexpected text after the formula".to_string())
            });
            match result {
                Ok(v) if truthy(&v) => {}
                Ok(_) => continue,
                Err(why) => {
                    return error(
                        422,
                        "INVALID_FILTER_BY_FORMULA",
                        &format!("The formula for filtering records is invalid: {why}"),
                    );
                }
            }
        }
        rows.push(record);
    }
    for (field, desc) in params.sort.iter().rev() {
        if table.field(field).is_none() {
            return error(
                422,
                "UNKNOWN_FIELD_NAME",
                &format!("Unknown field name: \"{field}\""),
            );
        }
        let name = table.field(field).unwrap().name.clone();
        rows.sort_by(|a, b| {
            let (x, y) = (&table.cells(a)[&name], &table.cells(b)[&name]);
            let o = match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                _ => x.as_str().unwrap_or("").cmp(y.as_str().unwrap_or("")),
            };
            if *desc { o.reverse() } else { o }
        });
    }
    if let Some(max) = params.max_records {
        rows.truncate(max);
    }
    let start = match &params.offset {
        None => 0,
        Some(o) => match o.strip_prefix("itr").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if n <= rows.len() => n,
            _ => {
                return error(
                    422,
                    "LIST_RECORDS_ITERATOR_NOT_AVAILABLE",
                    "The offset is not valid",
                );
            }
        },
    };
    let end = (start + page_size).min(rows.len());
    let records: Vec<Value> = rows[start..end]
        .iter()
        .map(|r| table.render(r, params.by_id, params.fields.as_deref()))
        .collect();
    let mut body = json!({"records": records});
    if end < rows.len() {
        body["offset"] = json!(format!("itr{end}"));
    }
    answer(200, body)
}

impl AirtableState {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("rec{:0>14}", self.next_id)
    }

    fn table(&mut self, base: &str, table: &str) -> Result<&mut Table, Response> {
        let Some(tables) = self.bases.get_mut(base) else {
            return Err(answer(404, json!({"error": "NOT_FOUND"})));
        };
        tables
            .iter_mut()
            .find(|t| t.id == table || t.name == table)
            .ok_or_else(|| {
                error(
                    404,
                    "TABLE_NOT_FOUND",
                    &format!("Could not find table {table} in application {base}"),
                )
            })
    }

    /// Airtable's rate per base: over 5 requests in a second, or within 30 s of that, is 429.
    fn over_rate(&mut self, base: &str, now: Instant) -> bool {
        if self.penalty.get(base).is_some_and(|until| now < *until) {
            return true;
        }
        let arrivals = self.arrivals.entry(base.to_string()).or_default();
        while arrivals
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            arrivals.pop_front();
        }
        arrivals.push_back(now);
        if arrivals.len() > PER_SECOND {
            self.penalty.insert(base.to_string(), now + PENALTY);
            return true;
        }
        false
    }
}

fn rate_limited() -> Response {
    error(
        429,
        "RATE_LIMIT_REACHED",
        "Rate limit exceeded. Please try again later",
    )
}

async fn whoami(State(fake): State<FakeAirtable>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refusal(&headers) {
        return refusal;
    }
    let mut state = fake.0.lock().unwrap();
    state.seen.push((
        "GET".into(),
        "/v0/meta/whoami".into(),
        Value::Null,
        Instant::now(),
    ));
    answer(
        200,
        json!({"id": "usrCQEOCGSxy9AxCW", "scopes": ["data.records:read", "data.records:write"]}),
    )
}

fn refusal(headers: &HeaderMap) -> Option<Response> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    (auth != format!("Bearer {TOKEN}"))
        .then(|| error(401, "AUTHENTICATION_REQUIRED", "Authentication required"))
}

async fn records_api(
    State(fake): State<FakeAirtable>,
    UrlPath(parts): UrlPath<Vec<(String, String)>>,
    Query(query): Query<Vec<(String, String)>>,
    method: Method,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(refusal) = refusal(&headers) {
        return refusal;
    }
    let part = |name: &str| {
        parts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let (base, table, record) = (
        part("base").unwrap_or_default(),
        part("table").unwrap_or_default(),
        part("record"),
    );
    let body: Value = if body.trim().is_empty() {
        Value::Null
    } else {
        match serde_json::from_str(&body) {
            Ok(b) => b,
            Err(_) => {
                return error(422, "INVALID_REQUEST_BODY", "Could not parse request body");
            }
        }
    };
    let now = Instant::now();
    let path = format!(
        "/v0/{base}/{table}{}",
        record.as_ref().map(|r| format!("/{r}")).unwrap_or_default()
    );
    let mut state = fake.0.lock().unwrap();
    state
        .seen
        .push((method.to_string(), path.clone(), body.clone(), now));
    if state.over_rate(&base, now) {
        state.rate_refusals += 1;
        return rate_limited();
    }
    if let Some(fault) = state
        .faults
        .iter_mut()
        .find(|(p, n, ..)| path.contains(p.as_str()) && *n > 0)
    {
        fault.1 -= 1;
        let (status, body) = (fault.2, fault.3.clone());
        if status == 429 {
            // Airtable's 429 means the base refuses for 30 seconds.
            state.penalty.insert(base.clone(), now + PENALTY);
        }
        return answer(status, body);
    }
    let new_id = state.new_id();
    let table = match state.table(&base, &table) {
        Ok(t) => t,
        Err(refusal) => return refusal,
    };
    let by_id = query
        .iter()
        .any(|(k, v)| k == "returnFieldsByFieldId" && v == "true");
    match (method.as_str(), record.as_deref()) {
        ("GET", None) => list(table, &ListParams::from_query(&query)),
        ("POST", Some("listRecords")) => list(table, &ListParams::from_body(&body)),
        ("POST", None) => {
            let values = match table.write(&body["fields"], body["typecast"] == true) {
                Ok(v) => v,
                Err(refusal) => return refusal,
            };
            let stamp = now_iso();
            let created = Record {
                id: new_id,
                created: stamp.clone(),
                modified: stamp,
                values,
            };
            let out = table.render(&created, body["returnFieldsByFieldId"] == true, None);
            table.records.push(created);
            answer(200, out)
        }
        (method, Some(id)) => {
            let Some(index) = table.records.iter().position(|r| r.id == id) else {
                return answer(404, json!({"error": "NOT_FOUND"}));
            };
            match method {
                "GET" => answer(200, table.render(&table.records[index], by_id, None)),
                "PATCH" => {
                    let values = match table.write(&body["fields"], body["typecast"] == true) {
                        Ok(v) => v,
                        Err(refusal) => return refusal,
                    };
                    let record = &mut table.records[index];
                    record.values.extend(values);
                    record.modified = now_iso();
                    let record = &table.records[index];
                    answer(
                        200,
                        table.render(record, body["returnFieldsByFieldId"] == true, None),
                    )
                }
                "DELETE" => {
                    let gone = table.records.remove(index);
                    answer(200, json!({"deleted": true, "id": gone.id}))
                }
                _ => error(404, "NOT_FOUND", "Could not find what you are looking for"),
            }
        }
        _ => error(404, "NOT_FOUND", "Could not find what you are looking for"),
    }
}

fn leads_table(records: usize) -> Table {
    let field = |id: &str, name: &str, kind| Field {
        id: id.into(),
        name: name.into(),
        kind,
    };
    let stamp = now_iso();
    Table {
        id: "tblEq5gEDiiCmbZgp".into(),
        name: "Leads".into(),
        fields: vec![
            field("fld6rWq5V5kSfBiPY", "Name", Kind::Text),
            field("fldHABoZOee5ZUUTr", "Count", Kind::Number),
            field("fldQwXy2VOsJMSvd8", "Done", Kind::Checkbox),
            field("fldl0qW8PLVkJSArn", "Created", Kind::Created),
            field("fldVjJGWNrl52pVbH", "Modified", Kind::Modified),
        ],
        records: (0..records)
            .map(|i| Record {
                id: format!("recSeed{i:0>10}"),
                created: stamp.clone(),
                modified: stamp.clone(),
                values: json!({"Name": format!("Lead {i:03}"), "Count": i, "Done": i % 2 == 0})
                    .as_object()
                    .cloned()
                    .unwrap(),
            })
            .collect(),
    }
}

fn log_table() -> Table {
    Table {
        id: "tblLog0000000000a".into(),
        name: "Log".into(),
        fields: vec![Field {
            id: "fldLogName0000000".into(),
            name: "Name".into(),
            kind: Kind::Text,
        }],
        records: Vec::new(),
    }
}

impl FakeAirtable {
    /// The fake with base `BASE` (tables Leads with `seeded` records and Log) and an empty
    /// second base `appSecondBase0000`, and its URL.
    async fn start(seeded: usize) -> (FakeAirtable, String) {
        let fake = FakeAirtable::default();
        {
            let mut state = fake.0.lock().unwrap();
            state
                .bases
                .insert(BASE.into(), vec![leads_table(seeded), log_table()]);
            state
                .bases
                .insert("appSecondBase0000".into(), vec![leads_table(0)]);
        }
        let app = Router::new()
            .route("/v0/meta/whoami", get(whoami))
            .route("/v0/{base}/{table}", any(records_api))
            .route("/v0/{base}/{table}/{record}", any(records_api))
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

    fn names(&self, base: &str, table: &str) -> Vec<String> {
        let mut state = self.0.lock().unwrap();
        let table = state.table(base, table).ok().unwrap();
        table
            .records
            .iter()
            .map(|r| r.values["Name"].as_str().unwrap_or("").to_string())
            .collect()
    }

    fn add(&self, name: &str) -> String {
        let mut state = self.0.lock().unwrap();
        let id = state.new_id();
        let stamp = now_iso();
        let table = state.table(BASE, "Leads").ok().unwrap();
        table.records.push(Record {
            id: id.clone(),
            created: stamp.clone(),
            modified: stamp,
            values: json!({"Name": name}).as_object().cloned().unwrap(),
        });
        id
    }

    fn touch(&self, id: &str, count: i64) {
        let mut state = self.0.lock().unwrap();
        let table = state.table(BASE, "Leads").ok().unwrap();
        let record = table.records.iter_mut().find(|r| r.id == id).unwrap();
        record.values.insert("Count".into(), json!(count));
        record.modified = now_iso();
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
        id: "1505942".into(),
        name: "airtable".into(),
        app: "airtable".into(),
        kind: "airtable2".into(),
        fields: Secrets(json!({"token": token}).as_object().cloned().unwrap()),
    };
    context_with(connection)
}

fn registry(url: &str) -> AppRegistry {
    let mut options = AppOptions::allowing_loopback();
    options.base_urls = vec![("airtable".into(), url.parse().unwrap())];
    AppRegistry::build(options).unwrap()
}

async fn call(
    registry: &AppRegistry,
    module: &str,
    mapper: Value,
    context: &ExecutionContext,
) -> Result<Vec<Value>, ModuleError> {
    let found = registry
        .module(&format!("airtable:{module}"))
        .unwrap_or_else(|| panic!("airtable:{module} is served"));
    let parameters = json!({"__IMTCONN__": 1505942})
        .as_object()
        .cloned()
        .unwrap();
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

fn assert_no_token(error: &ModuleError) {
    let shown = format!(
        "{error:?} {error} {}",
        serde_json::to_string(error).unwrap()
    );
    assert!(!shown.contains(TOKEN), "the token leaked: {shown}");
}

/// A mapper as Make's exports write it: base and table by ID, the two switches set.
fn mapper(extra: Value) -> Value {
    let mut m = json!({"base": BASE, "table": "tblEq5gEDiiCmbZgp", "useColumnId": false});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_created_read_updated_searched_and_deleted() {
    let (fake, url) = FakeAirtable::start(0).await;
    let registry = registry(&url);
    let ctx = context(TOKEN);

    // Create: the record keyed by field IDs (as Make's exports map it), typecast converting
    // the count; the bundle is the record's id and createdTime with its fields flattened.
    let created = one(
        &registry,
        "ActionCreateRecord",
        mapper(json!({"typecast": true, "record": {
            "fld6rWq5V5kSfBiPY": "Ann", "fldHABoZOee5ZUUTr": "3", "fldQwXy2VOsJMSvd8": true}})),
        &ctx,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("rec"), "{created}");
    assert_eq!(created["Name"], "Ann");
    assert_eq!(created["Count"], 3.0);
    assert_eq!(created["Done"], true);
    assert!(created["createdTime"].as_str().unwrap().ends_with('Z'));
    assert!(created.get("fields").is_none(), "{created}");
    let (method, body, _) = fake.requests("/tblEq5gEDiiCmbZgp").pop().unwrap();
    assert_eq!(method, "POST");
    assert_eq!(
        body,
        json!({"fields": {"fld6rWq5V5kSfBiPY": "Ann", "fldHABoZOee5ZUUTr": "3", "fldQwXy2VOsJMSvd8": true},
               "typecast": true, "returnFieldsByFieldId": false})
    );

    // Without typecast the API refuses the text for a number field: 422 as a DataError.
    let err = call(
        &registry,
        "ActionCreateRecord",
        mapper(json!({"typecast": false, "record": {"Count": "three"}})),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);
    assert_eq!(
        err.message,
        "[422] Field \"Count\" cannot accept the provided value"
    );

    // Update: only the given fields change; useColumnId keys the output by field IDs.
    let updated = one(
        &registry,
        "ActionUpdateRecords",
        mapper(json!({"id": id, "typecast": false, "useColumnId": true,
                      "record": {"Name": "Ann Lee"}})),
        &ctx,
    )
    .await;
    assert_eq!(updated["id"], json!(id));
    assert_eq!(updated["fld6rWq5V5kSfBiPY"], "Ann Lee");
    assert_eq!(updated["fldHABoZOee5ZUUTr"], 3.0);
    let got = one(
        &registry,
        "ActionGetRecord",
        mapper(json!({"id": id})),
        &ctx,
    )
    .await;
    assert_eq!(got["Name"], "Ann Lee");
    assert_eq!(got["Done"], true);

    // Search: a formula, a sort, the output fields; Make's limit as text.
    for (name, count) in [("Bob", 5), ("Cy", 1), ("Dee", 9)] {
        one(
            &registry,
            "ActionCreateRecord",
            mapper(json!({"record": {"Name": name, "Count": count}})),
            &ctx,
        )
        .await;
    }
    let found = call(
        &registry,
        "ActionSearchRecords",
        mapper(json!({"formula": "AND({Count} > 2, NOT({Name} = 'Dee'))",
                      "sort": [{"field": "Count", "direction": "desc"}],
                      "fields": ["Name"], "maxRecords": "10", "view": ""})),
        &ctx,
    )
    .await
    .unwrap();
    let names: Vec<&Value> = found.iter().map(|r| &r["Name"]).collect();
    assert_eq!(names, [&json!("Bob"), &json!("Ann Lee")]);
    assert!(found[0].get("Count").is_none(), "only the asked fields");
    let (_, body, _) = fake.requests("/listRecords").pop().unwrap();
    assert_eq!(
        body,
        json!({"filterByFormula": "AND({Count} > 2, NOT({Name} = 'Dee'))",
               "sort": [{"field": "Count", "direction": "desc"}], "fields": ["Name"],
               "maxRecords": 10, "pageSize": 100, "returnFieldsByFieldId": false})
    );
    // A formula the API cannot read: its 422 message.
    let err = call(
        &registry,
        "ActionSearchRecords",
        mapper(json!({"formula": "AND({Count} > 2"})),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);
    assert!(
        err.message
            .starts_with("[422] The formula for filtering records is invalid"),
        "{}",
        err.message
    );

    // Delete, then the record is gone: a 404 whose body is Airtable's bare `NOT_FOUND`.
    let deleted = one(
        &registry,
        "ActionDeleteRecord",
        json!({"base": BASE, "table": "Leads", "id": id}),
        &ctx,
    )
    .await;
    assert_eq!(deleted, json!({"id": id, "deleted": true}));
    for module in [
        "ActionGetRecord",
        "ActionUpdateRecords",
        "ActionDeleteRecord",
    ] {
        let err = call(
            &registry,
            module,
            mapper(json!({"id": id, "record": {"Name": "x"}})),
            &ctx,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::DataError, "{module}");
        assert_eq!(err.message, "[404] NOT_FOUND", "{module}");
    }
    // An unknown table: the typed 404.
    let err = call(
        &registry,
        "ActionCreateRecord",
        json!({"base": BASE, "table": "Nope", "record": {"Name": "x"}}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.message,
        format!("[404] Could not find table Nope in application {BASE}")
    );

    // A wrong token: 401 for every module, the token in no error.
    let wrong = context("patWrongToken00000.0000000000000000000000000000");
    for (module, m) in [
        (
            "ActionCreateRecord",
            mapper(json!({"record": {"Name": "x"}})),
        ),
        (
            "ActionUpdateRecords",
            mapper(json!({"id": "rec1", "record": {}})),
        ),
        ("ActionGetRecord", mapper(json!({"id": "rec1"}))),
        ("ActionSearchRecords", mapper(json!({}))),
        ("ActionDeleteRecord", mapper(json!({"id": "rec1"}))),
        ("makeApiCall", json!({"url": "/v0/meta/whoami"})),
    ] {
        let err = call(&registry, module, m, &wrong).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidAccessTokenError, "{module}");
        assert_eq!(err.message, "[401] Authentication required", "{module}");
        assert_no_token(&err);
    }

    // makeApiCall: relative paths only, the connection's token added.
    let out = one(
        &registry,
        "makeApiCall",
        json!({"url": "/v0/meta/whoami", "method": "GET"}),
        &ctx,
    )
    .await;
    assert_eq!(out["statusCode"], 200);
    assert_eq!(out["body"]["id"], "usrCQEOCGSxy9AxCW");
    let out = one(
        &registry,
        "makeApiCall",
        json!({"url": format!("/v0/{BASE}/Leads"), "qs": [{"key": "filterByFormula", "value": "{Name} = 'Cy'"}]}),
        &ctx,
    )
    .await;
    assert_eq!(out["body"]["records"][0]["fields"]["Name"], "Cy");
    for bad in [
        "https://evil.test/v0/meta/whoami",
        "//evil.test/x",
        "/v0/../x",
    ] {
        let err = call(&registry, "makeApiCall", json!({"url": bad}), &ctx)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::DataError, "{bad}");
    }
    let err = call(
        &registry,
        "makeApiCall",
        json!({"url": "/v0/meta/whoami", "headers": [{"key": "Authorization", "value": "Bearer x"}]}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);

    // 5xx: retried, then a ConnectionError with the API's message.
    let before = fake.requests("/tblEq5gEDiiCmbZgp").len();
    fake.fail_next(
        "/tblEq5gEDiiCmbZgp",
        4,
        503,
        json!({"error": {"type": "SERVICE_UNAVAILABLE", "message": "Service temporarily unavailable"}}),
    );
    let err = call(
        &registry,
        "ActionCreateRecord",
        mapper(json!({"record": {"Name": "x"}})),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ConnectionError);
    assert_eq!(err.message, "[503] Service temporarily unavailable");
    assert_eq!(fake.requests("/tblEq5gEDiiCmbZgp").len(), before + 4);
    // One 5xx then success: the retry makes the record once.
    fake.fail_next(
        "/listRecords",
        1,
        502,
        json!({"error": {"type": "SERVER_ERROR", "message": "Bad gateway"}}),
    );
    let all = call(&registry, "ActionSearchRecords", mapper(json!({})), &ctx)
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(fake.rate_refusals(), 0, "no request went over the rate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_pages_by_offset_to_its_limit() {
    let (fake, url) = FakeAirtable::start(250).await;
    let registry = registry(&url);
    let ctx = context(TOKEN);
    let found = call(
        &registry,
        "ActionSearchRecords",
        mapper(json!({"maxRecords": 230, "sort": [{"field": "Count", "direction": "asc"}]})),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(found.len(), 230);
    assert_eq!(found[0]["Name"], "Lead 000");
    assert_eq!(found[229]["Name"], "Lead 229");
    let offsets: Vec<Value> = fake
        .requests("/listRecords")
        .iter()
        .map(|(_, b, _)| b["offset"].clone())
        .collect();
    assert_eq!(offsets, [Value::Null, json!("itr100"), json!("itr200")]);
    // Without a limit every page is read; the last has no offset, so paging ends there.
    let all = call(&registry, "ActionSearchRecords", mapper(json!({})), &ctx)
        .await
        .unwrap();
    assert_eq!(all.len(), 250);
    // A filter that matches half: pages of what matches.
    let done = call(
        &registry,
        "ActionSearchRecords",
        mapper(json!({"formula": "{Done} = 1", "maxRecords": 120})),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(done.len(), 120);
    assert!(done.iter().all(|r| r["Done"] == true));
    assert_eq!(fake.rate_refusals(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_is_kept_per_base_and_a_429_holds_the_base_for_30_seconds() {
    let (fake, url) = FakeAirtable::start(0).await;
    let registry = Arc::new(registry(&url));
    let ctx = Arc::new(context(TOKEN));

    // A burst of 12 creates in each of two bases through one connection, all at once: no
    // 429 (the fake refuses a sixth request in a second), and the second base is not held
    // by the first: its first five go out with the first base's first five.
    let mut tasks = Vec::new();
    for base in [BASE, "appSecondBase0000"] {
        for i in 0..12 {
            let (registry, ctx) = (registry.clone(), ctx.clone());
            tasks.push(tokio::spawn(async move {
                one(
                    &registry,
                    "ActionCreateRecord",
                    json!({"base": base, "table": "Leads", "record": {"Name": format!("{base} {i}")}}),
                    &ctx,
                )
                .await
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(fake.rate_refusals(), 0);
    assert_eq!(fake.names(BASE, "Leads").len(), 12);
    assert_eq!(fake.names("appSecondBase0000", "Leads").len(), 12);
    let arrivals = |base: &str| -> Vec<Instant> {
        let state = fake.0.lock().unwrap();
        let mut t: Vec<Instant> = state
            .seen
            .iter()
            .filter(|(_, p, ..)| p.starts_with(&format!("/v0/{base}/")))
            .map(|(.., t)| *t)
            .collect();
        t.sort();
        t
    };
    let (first, second) = (arrivals(BASE), arrivals("appSecondBase0000"));
    assert!(
        second[4] < first[5] && first[4] < second[5],
        "each base's first five went out before either base's sixth"
    );

    // A 429: Airtable's base refuses for 30 s, so the retry comes 30 s later, and a request
    // to the same base sent meanwhile is held too (no request meets the penalty).
    fake.fail_next(
        "/v0/appSecondBase0000/",
        1,
        429,
        json!({"error": {"type": "RATE_LIMIT_REACHED", "message": "Rate limit exceeded. Please try again later"}}),
    );
    let started = Instant::now();
    let held = {
        let (registry, ctx) = (registry.clone(), ctx.clone());
        tokio::spawn(async move {
            one(
                &registry,
                "ActionCreateRecord",
                json!({"base": "appSecondBase0000", "table": "Leads", "record": {"Name": "after 429"}}),
                &ctx,
            )
            .await
        })
    };
    // The 429 has been answered before the second request is sent.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.0.lock().unwrap().penalty.is_empty() {
        assert!(Instant::now() < deadline, "no 429 was answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let other = call(
        &registry,
        "ActionGetRecord",
        json!({"base": "appSecondBase0000", "table": "Leads", "id": "recMissing"}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(other.message, "[404] NOT_FOUND");
    let retried = held.await.unwrap();
    assert_eq!(retried["Name"], "after 429");
    assert!(started.elapsed() >= PENALTY, "{:?}", started.elapsed());
    // Both were answered by requests sent once the base's 30 s had passed.
    let penalty_from = fake.requests("/v0/appSecondBase0000/Leads")[12].2;
    for suffix in ["/recMissing", "/v0/appSecondBase0000/Leads"] {
        let (_, _, last) = fake.requests(suffix).pop().unwrap();
        assert!(last.duration_since(penalty_from) >= PENALTY, "{suffix}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_added_with_token_and_checked_with_whoami() {
    let (fake, url) = FakeAirtable::start(0).await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let base = format!("airtable={url}");
    let add = |name: &str, token: &str| {
        db.cli(&[
            "connections",
            "add",
            name,
            "--app",
            "airtable",
            "--token",
            token,
            "--app-base-url",
            &base,
        ])
    };
    let out = add("at", TOKEN);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fake.requests("/v0/meta/whoami").len(), 1);
    let wrong = "patWrongToken00000.0000000000000000000000000000";
    let out = add("at2", wrong);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Authentication required"), "{stderr}");
    assert!(!stderr.contains(wrong), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_records_emits_created_and_modified_records_once_across_restarts() {
    let (fake, url) = FakeAirtable::start(2).await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let base = format!("airtable={url}");
    let out = db.cli(&[
        "connections",
        "add",
        "airtable",
        "--app",
        "airtable",
        "--token",
        TOKEN,
        "--id",
        "1505942",
        "--app-base-url",
        &base,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // As Make exports it: version 3, the trigger on a Last Modified Time field.
    let blueprint = json!({
        "name": "log modified leads",
        "flow": [
            {"id": 1, "module": "airtable:TriggerWatchRecords", "version": 3,
             "parameters": {"__IMTCONN__": 1505942, "base": BASE, "useColumnId": false,
                            "table": "tblEq5gEDiiCmbZgp",
                            "config": {"triggerField": "Modified", "labelField": "Name"},
                            "maxRecords": 10, "view": "", "formula": ""},
             "mapper": {}},
            {"id": 2, "module": "airtable:ActionCreateRecord", "version": 3,
             "parameters": {"__IMTCONN__": 1505942},
             "mapper": {"base": BASE, "table": "tblLog0000000000a", "typecast": false,
                        "useColumnId": false, "record": {"fldLogName0000000": "{{1.Name}}"}}}
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

    let logged = || fake.names(BASE, "Log");
    let wait_for = |count: usize| async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while logged().len() < count {
            assert!(Instant::now() < deadline, "only {:?} logged", logged());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // The first poll counts the records already there as seen; later ones are logged.
    db.executions_at_least(1).await;
    let ann = fake.add("Ann");
    // Created a moment apart, as two requests to Airtable are: records of the same
    // millisecond have no order for the trigger to keep.
    tokio::time::sleep(Duration::from_millis(5)).await;
    fake.add("Bob");
    wait_for(2).await;
    assert_eq!(logged(), ["Ann", "Bob"]);

    // Across a restart the cursor holds: a new record and a modified one are logged once.
    db.executions_settled().await;
    drop(service);
    let service = db.serve(&serve_args).await;
    fake.add("Cy");
    wait_for(3).await;
    fake.touch(&ann, 7);
    wait_for(4).await;
    let before = db.ended_executions();
    db.executions_at_least(before + 2).await;
    assert_eq!(logged(), ["Ann", "Bob", "Cy", "Ann"]);
    assert_eq!(fake.rate_refusals(), 0);
    drop(service);
}
