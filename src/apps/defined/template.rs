//! IML in app definitions: every `{{…}}` string of a definition is parsed once, at load, into
//! an [`Expr`] or [`Json`] that remembers its JSON path, and evaluated per call over [`Vars`],
//! the named roots a definition can read (`parameters`, `connection`, `body`, `headers`,
//! `item`, `statusCode`, `data`, `webhook`, `query`, `method`, `temp`, `now`). This file also
//! holds the compiled request and response directives and renders a request's parts (method,
//! URL, query, headers, body) from them; sending is the interpreter's.
//!
//! Invariants: evaluation never parses; an evaluation error names the directive's JSON path
//! and column, never a value; rendered query and header values are text, a JSON body keeps
//! its types, and the `{{...}}` key spreads a collection into the object around it (Make's
//! convention for "Make an API Call" headers and query).

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Map, Value};

use super::load::Problem;
use super::model::{
    BodyType, ErrorSpec, Order, PaginationSpec, RequestSpec, ResponseSpec, TriggerSpec,
};
use crate::expr::{Dialect, Mapping, Scope, Template, value};
use crate::module::{ErrorKind, ModuleError};

/// The key that spreads a collection into the object that holds it.
pub(crate) const SPREAD_KEY: &str = "{{...}}";
/// How deep the values a body or query holds are cleaned (nulls dropped, spreads applied):
/// definitions are shallow; deeper values (mapped data) are sent as they are.
const CLEAN_DEPTH: usize = 32;

static NULL: Value = Value::Null;

/// The named roots one evaluation sees. Cheap to copy: a variant for an item or a response
/// is `Vars { item, ..vars }`.
#[derive(Clone, Copy)]
pub(crate) struct Vars<'a> {
    pub parameters: &'a Value,
    pub connection: &'a Value,
    pub data: &'a Value,
    pub webhook: &'a Value,
    pub temp: &'a Value,
    pub query: &'a Value,
    pub method: &'a Value,
    pub body: &'a Value,
    /// A hook request's body as received (text), for signatures computed over its bytes.
    pub raw_body: &'a Value,
    pub headers: &'a Value,
    pub status_code: &'a Value,
    pub item: &'a Value,
    pub now: DateTime<Utc>,
}

impl Vars<'static> {
    /// Every root `null`, `now` fixed at `now`.
    pub(crate) fn empty(now: DateTime<Utc>) -> Self {
        Vars {
            parameters: &NULL,
            connection: &NULL,
            data: &NULL,
            webhook: &NULL,
            temp: &NULL,
            query: &NULL,
            method: &NULL,
            body: &NULL,
            raw_body: &NULL,
            headers: &NULL,
            status_code: &NULL,
            item: &NULL,
            now,
        }
    }
}

impl Scope for Vars<'_> {
    fn module_output(&self, _: u32) -> Option<&Value> {
        None
    }

    fn named(&self, name: &str) -> Option<&Value> {
        Some(match name {
            "parameters" => self.parameters,
            "connection" => self.connection,
            "data" => self.data,
            "webhook" => self.webhook,
            "temp" => self.temp,
            "query" => self.query,
            "method" => self.method,
            "body" => self.body,
            "rawBody" => self.raw_body,
            "headers" => self.headers,
            "statusCode" => self.status_code,
            "item" => self.item,
            _ => return None,
        })
    }

    fn now(&self) -> DateTime<Utc> {
        self.now
    }
}

/// One IML string of a definition, parsed.
#[derive(Debug, Clone)]
pub(crate) struct Expr {
    template: Template,
    path: String,
}

impl Expr {
    /// Parses `source`; a malformed one is a problem at `path` with its column.
    pub(crate) fn compile(source: &str, path: &str, problems: &mut Vec<Problem>) -> Option<Expr> {
        match Template::parse(source, Dialect::App) {
            Ok(template) => Some(Expr {
                template,
                path: path.to_string(),
            }),
            Err(e) => {
                problems.push(Problem::new(path, e.to_string()));
                None
            }
        }
    }

    pub(crate) fn eval(&self, vars: &Vars<'_>) -> Result<Value, ModuleError> {
        self.template
            .eval(vars)
            .map_err(|e| ModuleError::data(format!("{}: {e}", self.path)))
    }

    /// The value as text (`null` is empty text).
    pub(crate) fn text(&self, vars: &Vars<'_>) -> Result<String, ModuleError> {
        Ok(value::to_text(&self.eval(vars)?))
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Whether the source mentions `word` (e.g. whether a root needs to be built at all).
    pub(crate) fn mentions(&self, word: &str) -> bool {
        self.template.source().contains(word)
    }
}

/// A JSON value of a definition whose strings are IML, parsed.
#[derive(Debug, Clone)]
pub(crate) struct Json {
    mapping: Mapping,
    path: String,
}

impl Json {
    /// Parses every string of `value`; each malformed one is a problem at its own path.
    pub(crate) fn compile(value: &Value, path: &str, problems: &mut Vec<Problem>) -> Option<Json> {
        match Mapping::compile(value, Dialect::App) {
            Ok(mapping) => Some(Json {
                mapping,
                path: path.to_string(),
            }),
            Err(errors) => {
                for (inner, e) in errors {
                    problems.push(Problem::new(&join(path, &inner), e.to_string()));
                }
                None
            }
        }
    }

    pub(crate) fn eval(&self, vars: &Vars<'_>) -> Result<Value, ModuleError> {
        self.mapping
            .eval(vars)
            .map_err(|(inner, e)| ModuleError::data(format!("{}: {e}", join(&self.path, &inner))))
    }

    /// Whether the value is true as IML reads it (`null`, `false`, `0` and empty text are not).
    pub(crate) fn truthy(&self, vars: &Vars<'_>) -> Result<bool, ModuleError> {
        Ok(value::truthy(&self.eval(vars)?))
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }
}

/// `a` + `b`, `a` + `[0].c`, or either alone.
pub(crate) fn join(path: &str, inner: &str) -> String {
    match (path.is_empty(), inner.is_empty()) {
        (_, true) => path.to_string(),
        (true, false) => inner.to_string(),
        (false, false) if inner.starts_with('[') => format!("{path}{inner}"),
        (false, false) => format!("{path}.{inner}"),
    }
}

fn compile_opt(
    value: Option<&Value>,
    path: &str,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<Json> {
    value.and_then(|v| Json::compile(v, &join(path, key), problems))
}

fn compile_text(
    value: Option<&String>,
    path: &str,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<Expr> {
    value.and_then(|v| Expr::compile(v, &join(path, key), problems))
}

/// Checks that a `qs` or `headers` directive is an object (or one IML string).
fn object_directive(value: Option<&Value>, path: &str, key: &str, problems: &mut Vec<Problem>) {
    if let Some(v) = value
        && !(v.is_object() || v.is_string())
    {
        problems.push(Problem::new(
            &join(path, key),
            "expected an object of IML values",
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Compiled directives

/// A request directive, compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRequest {
    pub url: Option<Expr>,
    pub method: Option<Expr>,
    pub qs: Option<Json>,
    pub headers: Option<Json>,
    pub body: Option<Json>,
    pub body_type: BodyType,
    pub condition: Option<Json>,
    pub temp: Option<Json>,
    pub response: Option<CompiledResponse>,
    pub pagination: Option<CompiledPagination>,
}

/// A response directive, compiled.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompiledResponse {
    pub output: Option<Json>,
    pub iterate: Option<(Expr, Option<Json>)>,
    pub limit: Option<Json>,
    pub valid: Option<Json>,
    pub error: CompiledErrors,
    pub trigger: Option<CompiledTrigger>,
    pub data: Option<Json>,
    pub temp: Option<Json>,
    /// `response.type` (`crate::apps::defined::files`).
    pub body: Option<super::model::ResponseBody>,
    /// `each`: the request sent per iterated item.
    pub each: Option<Box<CompiledRequest>>,
}

/// `response.error`, compiled.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompiledErrors {
    pub message: Option<Expr>,
    pub kind: Option<ErrorKind>,
    /// `type` as IML: the kind of an invalid 2xx response, by what it says.
    pub kind_of: Option<Expr>,
    pub statuses: Vec<(u16, Option<Expr>, Option<ErrorKind>)>,
}

impl CompiledErrors {
    /// The entry for `status`, if this directive has one.
    pub(crate) fn status(&self, status: u16) -> Option<(Option<&Expr>, Option<ErrorKind>)> {
        self.statuses
            .iter()
            .find(|(code, ..)| *code == status)
            .map(|(_, message, kind)| (message.as_ref(), *kind))
    }
}

/// `response.trigger`, compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledTrigger {
    pub id: Expr,
    pub date: Option<Expr>,
    pub order: Order,
    pub since_last_date: bool,
    /// `emitted`: the request sent per emitted bundle.
    pub emitted: Option<Box<CompiledRequest>>,
}

/// `pagination`, compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledPagination {
    pub condition: Option<Json>,
    pub url: Option<Expr>,
    pub method: Option<Expr>,
    pub qs: Option<Json>,
    pub headers: Option<Json>,
    pub body: Option<Json>,
    pub merge_with_parent: bool,
}

pub(crate) fn compile_request(
    spec: &RequestSpec,
    path: &str,
    problems: &mut Vec<Problem>,
) -> CompiledRequest {
    object_directive(spec.qs.as_ref(), path, "qs", problems);
    object_directive(spec.headers.as_ref(), path, "headers", problems);
    if spec.body_type == Some(BodyType::Urlencoded)
        && let Some(body) = &spec.body
        && !(body.is_object() || body.is_string())
    {
        problems.push(Problem::new(
            &join(path, "body"),
            "an urlencoded body must be an object of IML values",
        ));
    }
    CompiledRequest {
        url: Expr::compile(&spec.url, &join(path, "url"), problems),
        method: compile_text(spec.method.as_ref(), path, "method", problems),
        qs: compile_opt(spec.qs.as_ref(), path, "qs", problems),
        headers: compile_opt(spec.headers.as_ref(), path, "headers", problems),
        body: compile_opt(spec.body.as_ref(), path, "body", problems),
        body_type: spec.body_type.unwrap_or(BodyType::Json),
        condition: compile_opt(spec.condition.as_ref(), path, "condition", problems),
        temp: compile_opt(spec.temp.as_ref(), path, "temp", problems),
        response: spec
            .response
            .as_ref()
            .map(|r| compile_response(r, &join(path, "response"), problems)),
        pagination: spec
            .pagination
            .as_ref()
            .map(|p| compile_pagination(p, &join(path, "pagination"), problems)),
    }
}

pub(crate) fn compile_response(
    spec: &ResponseSpec,
    path: &str,
    problems: &mut Vec<Problem>,
) -> CompiledResponse {
    let iterate = spec.iterate.as_ref().and_then(|it| {
        let container = Expr::compile(&it.container, &join(path, "iterate"), problems)?;
        let condition = compile_opt(
            it.condition.as_ref(),
            &join(path, "iterate"),
            "condition",
            problems,
        );
        Some((container, condition))
    });
    CompiledResponse {
        output: compile_opt(spec.output.as_ref(), path, "output", problems),
        iterate,
        limit: compile_opt(spec.limit.as_ref(), path, "limit", problems),
        valid: compile_opt(spec.valid.as_ref(), path, "valid", problems),
        error: compile_errors(spec.error.as_ref(), &join(path, "error"), problems),
        trigger: spec
            .trigger
            .as_ref()
            .and_then(|t| compile_trigger(t, &join(path, "trigger"), problems)),
        data: compile_opt(spec.data.as_ref(), path, "data", problems),
        temp: compile_opt(spec.temp.as_ref(), path, "temp", problems),
        body: spec.body_type,
        each: compile_each(spec, path, problems),
    }
}

/// `response.each`: only with `iterate`, and it does not page itself.
fn compile_each(
    spec: &ResponseSpec,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<Box<CompiledRequest>> {
    let each = spec.each.as_ref()?;
    let at = join(path, "each");
    if spec.iterate.is_none() {
        problems.push(Problem::new(
            &at,
            "`each` needs `iterate` (a request per item)",
        ));
    }
    if each.pagination.is_some() {
        problems.push(Problem::new(
            &join(&at, "pagination"),
            "a request per item does not page",
        ));
    }
    Some(Box::new(compile_request(each, &at, problems)))
}

pub(crate) fn compile_errors(
    spec: Option<&ErrorSpec>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> CompiledErrors {
    let Some(spec) = spec else {
        return CompiledErrors::default();
    };
    CompiledErrors {
        message: compile_text(spec.message.as_ref(), path, "message", problems),
        kind: spec.kind,
        kind_of: compile_text(spec.kind_of.as_ref(), path, "type", problems),
        statuses: spec
            .statuses
            .iter()
            .map(|(code, status)| {
                let at = join(path, &code.to_string());
                (
                    *code,
                    compile_text(status.message.as_ref(), &at, "message", problems),
                    status.kind,
                )
            })
            .collect(),
    }
}

fn compile_trigger(
    spec: &TriggerSpec,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<CompiledTrigger> {
    let id = Expr::compile(&spec.id, &join(path, "id"), problems);
    let date = compile_text(spec.date.as_ref(), path, "date", problems);
    let emitted = spec.emitted.as_ref().map(|request| {
        let at = join(path, "emitted");
        if request.pagination.is_some() {
            problems.push(Problem::new(
                &join(&at, "pagination"),
                "a request per emitted bundle does not page",
            ));
        }
        Box::new(compile_request(request, &at, problems))
    });
    Some(CompiledTrigger {
        id: id?,
        date,
        order: spec.order,
        since_last_date: spec.since_last_date,
        emitted,
    })
}

pub(crate) fn compile_pagination(
    spec: &PaginationSpec,
    path: &str,
    problems: &mut Vec<Problem>,
) -> CompiledPagination {
    object_directive(spec.qs.as_ref(), path, "qs", problems);
    object_directive(spec.headers.as_ref(), path, "headers", problems);
    CompiledPagination {
        condition: compile_opt(spec.condition.as_ref(), path, "condition", problems),
        url: compile_text(spec.url.as_ref(), path, "url", problems),
        method: compile_text(spec.method.as_ref(), path, "method", problems),
        qs: compile_opt(spec.qs.as_ref(), path, "qs", problems),
        headers: compile_opt(spec.headers.as_ref(), path, "headers", problems),
        body: compile_opt(spec.body.as_ref(), path, "body", problems),
        merge_with_parent: spec.merge_with_parent,
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering

/// A request with every directive evaluated, before URL resolution and credentials.
#[derive(Debug, Clone)]
pub(crate) struct Rendered {
    pub method: Method,
    /// As rendered: absolute, or relative to the base URL.
    pub url: String,
    pub qs: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    pub body_type: BodyType,
}

impl CompiledRequest {
    /// Renders this request over `vars`, with `base_qs` and `base_headers` (already rendered)
    /// under its own.
    pub(crate) fn render(
        &self,
        vars: &Vars<'_>,
        base_qs: &[(String, String)],
        base_headers: &[(String, String)],
    ) -> Result<Rendered, ModuleError> {
        let Some(url) = &self.url else {
            return Err(ModuleError::config("the request has no URL"));
        };
        let mut qs = base_qs.to_vec();
        if let Some(own) = &self.qs {
            merge_pairs(&mut qs, pairs(&own.eval(vars)?, own.path())?, false);
        }
        let mut headers = base_headers.to_vec();
        if let Some(own) = &self.headers {
            merge_pairs(&mut headers, pairs(&own.eval(vars)?, own.path())?, true);
        }
        let body = match &self.body {
            // A text body is sent as the user wrote it; only a JSON or form body is cleaned.
            Some(body) if self.body_type == BodyType::Text => {
                Some(body.eval(vars)?).filter(|v| !v.is_null())
            }
            Some(body) => clean(body.eval(vars)?, 0),
            None => None,
        };
        Ok(Rendered {
            method: method(self.method.as_ref(), vars)?.unwrap_or(Method::GET),
            url: url.text(vars)?,
            qs,
            headers,
            body,
            body_type: self.body_type,
        })
    }
}

impl CompiledPagination {
    /// The next page's request: `previous` changed by this directive, over `vars` (which see
    /// the previous response).
    pub(crate) fn next(
        &self,
        previous: &Rendered,
        vars: &Vars<'_>,
    ) -> Result<Rendered, ModuleError> {
        let mut next = previous.clone();
        if let Some(url) = &self.url {
            next.url = url.text(vars)?;
        }
        if let Some(method) = method(self.method.as_ref(), vars)? {
            next.method = method;
        }
        if let Some(qs) = &self.qs {
            let own = pairs(&qs.eval(vars)?, qs.path())?;
            if self.merge_with_parent {
                merge_pairs(&mut next.qs, own, false);
            } else {
                next.qs = own;
            }
        }
        if let Some(headers) = &self.headers {
            let own = pairs(&headers.eval(vars)?, headers.path())?;
            if self.merge_with_parent {
                merge_pairs(&mut next.headers, own, true);
            } else {
                next.headers = own;
            }
        }
        if let Some(body) = &self.body {
            let own = clean(body.eval(vars)?, 0);
            next.body = match (self.merge_with_parent, next.body.take(), own) {
                (true, Some(Value::Object(mut parent)), Some(Value::Object(own))) => {
                    parent.extend(own);
                    Some(Value::Object(parent))
                }
                (_, _, own) => own,
            };
        }
        Ok(next)
    }
}

fn method(expr: Option<&Expr>, vars: &Vars<'_>) -> Result<Option<Method>, ModuleError> {
    let Some(expr) = expr else { return Ok(None) };
    let text = expr.text(vars)?.trim().to_ascii_uppercase();
    if text.is_empty() {
        return Ok(None);
    }
    match text.as_str() {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => Ok(Some(
            Method::from_bytes(text.as_bytes()).unwrap_or(Method::GET),
        )),
        _ => Err(ModuleError::data(format!(
            "{}: expected an HTTP method (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS), got \"{}\"",
            expr.path(),
            text.chars().take(20).collect::<String>()
        ))),
    }
}

/// The name/value pairs of a rendered `qs` or `headers` object: `null`, empty text and empty
/// arrays are left out, arrays and collections are sent as JSON text, anything else as text;
/// a `{{...}}` key spreads its collection in place.
pub(crate) fn pairs(value: &Value, path: &str) -> Result<Vec<(String, String)>, ModuleError> {
    let mut out = Vec::new();
    let map = match value {
        Value::Null => return Ok(out),
        Value::Object(map) => map,
        other => {
            return Err(ModuleError::data(format!(
                "{path}: expected a collection of names and values, got {}",
                kind_of(other)
            )));
        }
    };
    for (name, v) in map {
        if name == SPREAD_KEY {
            match v {
                Value::Null => {}
                Value::Object(_) => out.extend(pairs(v, path)?),
                other => {
                    return Err(ModuleError::data(format!(
                        "{path}: `{SPREAD_KEY}` must be a collection, got {}",
                        kind_of(other)
                    )));
                }
            }
            continue;
        }
        match v {
            Value::Null => {}
            Value::String(s) if s.is_empty() => {}
            Value::Array(items) if items.is_empty() => {}
            Value::Array(_) | Value::Object(_) => out.push((name.clone(), v.to_string())),
            _ => out.push((name.clone(), value::to_text(v))),
        }
    }
    Ok(out)
}

/// An `output` as its bundle: every `{{...}}` key's collection spread into the object around
/// it (Airtable's record: `{"id": …, "{{...}}": "{{body.fields}}"}` → the fields beside the
/// id); a `{{...}}` that is not a collection adds nothing. Unlike [`clean`], nulls are kept.
pub(crate) fn spread(value: Value) -> Value {
    match value {
        Value::Object(map) if map.contains_key(SPREAD_KEY) || map.values().any(has_spread) => {
            let mut out = Map::with_capacity(map.len());
            for (key, v) in map {
                if key == SPREAD_KEY {
                    if let Value::Object(fields) = spread(v) {
                        out.extend(fields);
                    }
                } else {
                    out.insert(key, spread(v));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) if items.iter().any(has_spread) => {
            Value::Array(items.into_iter().map(spread).collect())
        }
        other => other,
    }
}

fn has_spread(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.contains_key(SPREAD_KEY) || map.values().any(has_spread),
        Value::Array(items) => items.iter().any(has_spread),
        _ => false,
    }
}

/// Adds `own` to `pairs`, replacing entries of the same name (case-insensitively for headers).
pub(crate) fn merge_pairs(
    pairs: &mut Vec<(String, String)>,
    own: Vec<(String, String)>,
    headers: bool,
) {
    for (name, value) in own {
        pairs.retain(|(n, _)| {
            if headers {
                !n.eq_ignore_ascii_case(&name)
            } else {
                *n != name
            }
        });
        pairs.push((name, value));
    }
}

/// A rendered body as it is sent: object entries that are `null` are left out (an object
/// left empty by that is left out too), `erase` becomes `null`, and `{{...}}` keys spread
/// their collection. `None` when nothing is left.
pub(crate) fn clean(value: Value, depth: usize) -> Option<Value> {
    if depth > CLEAN_DEPTH {
        return Some(value);
    }
    match value {
        Value::Null => None,
        v if value::is_erase(&v) => Some(Value::Null),
        Value::Object(map) => {
            let was_empty = map.is_empty();
            let mut out = Map::with_capacity(map.len());
            for (key, v) in map {
                if key == SPREAD_KEY {
                    if let Some(Value::Object(spread)) = clean(v, depth + 1) {
                        out.extend(spread);
                    }
                    continue;
                }
                if let Some(v) = clean(v, depth + 1) {
                    out.insert(key, v);
                }
            }
            (was_empty || !out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(items) => Some(Value::Array(
            items
                .into_iter()
                .map(|v| clean(v, depth + 1).unwrap_or(Value::Null))
                .collect(),
        )),
        other => Some(other),
    }
}

/// A value's JSON type, for messages that must not quote it.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "a collection",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars_with<'a>(parameters: &'a Value, body: &'a Value) -> Vars<'a> {
        Vars {
            parameters,
            body,
            ..Vars::empty(Utc::now())
        }
    }

    #[test]
    fn expressions_report_their_path_and_column() {
        let mut problems = Vec::new();
        assert!(
            Expr::compile(
                "/users/{{parameters.id",
                "modules.A.request.url",
                &mut problems
            )
            .is_none()
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "modules.A.request.url");
        assert!(problems[0].message.contains("column"), "{:?}", problems[0]);

        let mut problems = Vec::new();
        let value = json!({"a": "ok", "b": ["{{1.x}}"], "c": {"d": "{{lower(}}"}});
        assert!(Json::compile(&value, "modules.A.request.qs", &mut problems).is_none());
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["modules.A.request.qs.b[0]", "modules.A.request.qs.c.d"]
        );
    }

    #[test]
    fn named_roots_are_read() {
        let mut problems = Vec::new();
        let expr = Expr::compile(
            "{{parameters.userId}}/{{body.data[1].id}}/{{missing.x}}",
            "x",
            &mut problems,
        )
        .unwrap();
        let parameters = json!({"userId": "u1"});
        let body = json!({"data": [{"id": "a"}, {"id": "b"}]});
        assert_eq!(expr.text(&vars_with(&parameters, &body)).unwrap(), "u1/a/");
        let last = Expr::compile("{{body.data[-1].id}}", "x", &mut problems).unwrap();
        assert_eq!(last.text(&vars_with(&parameters, &body)).unwrap(), "b");
    }

    #[test]
    fn pairs_drop_empty_values_encode_collections_and_spread() {
        let value = json!({
            "a": "1", "b": null, "c": "", "d": [], "e": [{"type": "x"}], "f": 2, "g": true,
            "{{...}}": {"h": "3", "a": "4"},
        });
        let got = pairs(&value, "qs").unwrap();
        assert_eq!(
            got,
            [
                ("a".to_string(), "1".to_string()),
                ("e".into(), r#"[{"type":"x"}]"#.into()),
                ("f".into(), "2".into()),
                ("g".into(), "true".into()),
                ("h".into(), "3".into()),
                ("a".into(), "4".into()),
            ]
        );
        assert!(pairs(&json!("x"), "qs").is_err());
        assert!(pairs(&json!({"{{...}}": [1]}), "qs").is_err());
        assert_eq!(
            spread(
                json!({"id": "rec1", "{{...}}": {"Name": "Ann", "Notes": null},
                          "list": [{"{{...}}": {"a": 1}}], "{{...}}x": 1})
            ),
            json!({"id": "rec1", "Name": "Ann", "Notes": null, "list": [{"a": 1}], "{{...}}x": 1})
        );
        assert_eq!(spread(json!({"id": 1, "{{...}}": null})), json!({"id": 1}));
        let mut merged = vec![("Accept".to_string(), "a".to_string())];
        merge_pairs(&mut merged, vec![("accept".into(), "b".into())], true);
        assert_eq!(merged, [("accept".to_string(), "b".to_string())]);
    }

    #[test]
    fn bodies_lose_nulls_and_spread_collections() {
        let body = json!({
            "userId": null,
            "segments": ["a"],
            "attributes": {"default_email": null, "{{...}}": {"plan": "pro"}},
            "empty": {"x": null},
            "kept": {},
            "cleared": value::erase(),
        });
        assert_eq!(
            clean(body, 0),
            Some(
                json!({"segments": ["a"], "attributes": {"plan": "pro"}, "kept": {}, "cleared": null})
            )
        );
        assert_eq!(clean(json!({"a": null}), 0), None);
        assert_eq!(clean(Value::Null, 0), None);
    }

    #[test]
    fn requests_render_and_paginate() {
        let mut problems = Vec::new();
        let spec: RequestSpec = serde_json::from_value(json!({
            "url": "/users",
            "qs": {"limit": "{{parameters.limit}}", "after": "{{parameters.after}}"},
            "headers": {"X-A": "1"},
            "pagination": {"qs": {"after": "{{body.data[-1].id}}"}},
        }))
        .unwrap();
        let request = compile_request(&spec, "r", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let parameters = json!({"limit": 40});
        let vars = vars_with(&parameters, &NULL);
        let rendered = request
            .render(
                &vars,
                &[("base".into(), "q".into())],
                &[("x-a".into(), "0".into())],
            )
            .unwrap();
        assert_eq!(rendered.method, Method::GET);
        assert_eq!(rendered.url, "/users");
        assert_eq!(
            rendered.qs,
            [
                ("base".to_string(), "q".to_string()),
                ("limit".into(), "40".into())
            ]
        );
        assert_eq!(rendered.headers, [("X-A".to_string(), "1".to_string())]);
        let body = json!({"data": [{"id": "a"}, {"id": "z"}]});
        let next = request
            .pagination
            .as_ref()
            .unwrap()
            .next(&rendered, &vars_with(&parameters, &body))
            .unwrap();
        assert_eq!(
            next.qs,
            [
                ("base".to_string(), "q".to_string()),
                ("limit".into(), "40".into()),
                ("after".into(), "z".into())
            ]
        );
    }

    #[test]
    fn a_method_must_be_one_of_http() {
        let mut problems = Vec::new();
        let expr = Expr::compile("{{parameters.m}}", "request.method", &mut problems).unwrap();
        let parameters = json!({"m": "patch"});
        assert_eq!(
            method(Some(&expr), &vars_with(&parameters, &NULL)).unwrap(),
            Some(Method::PATCH)
        );
        let parameters = json!({"m": "TRACE"});
        let err = method(Some(&expr), &vars_with(&parameters, &NULL)).unwrap_err();
        assert!(err.message.starts_with("request.method"), "{err:?}");
    }
}
