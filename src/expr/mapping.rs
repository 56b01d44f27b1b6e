//! [`Mapping`]: a JSON value (a module's `mapper`, an app's request template) whose strings
//! may hold templates, compiled once and evaluated per bundle. Errors carry the JSON path of
//! the string they come from: `name`, `headers[0].value`, or `` for the root.

use serde_json::{Map, Value};

use super::error::{EvalError, ParseError};
use super::eval::EvalCtx;
use super::template::{ModuleRef, Template};
use super::{Dialect, Scope};

/// Deepest JSON nesting a mapping may have (serde_json's own parser stops at 128).
const MAX_JSON_DEPTH: usize = 512;

/// A compiled JSON value with templates in its strings. Object key order is kept.
#[derive(Debug, Clone)]
pub struct Mapping {
    root: Node,
}

#[derive(Debug, Clone)]
enum Node {
    /// A subtree without any template: evaluated by cloning.
    Static(Value),
    Template(Template),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Mapping {
    /// Compiles every string of `value` as a template. All parse errors are returned, each
    /// with the JSON path of its string.
    pub fn compile(value: &Value, dialect: Dialect) -> Result<Mapping, Vec<(String, ParseError)>> {
        let mut errors = Vec::new();
        let mut path = String::new();
        let root = compile_node(value, dialect, &mut path, 0, &mut errors);
        if errors.is_empty() {
            Ok(Mapping { root })
        } else {
            Err(errors)
        }
    }

    /// Evaluates every template; the first failure comes with its JSON path.
    pub fn eval(&self, scope: &dyn Scope) -> Result<Value, (String, EvalError)> {
        if let Node::Static(v) = &self.root {
            return Ok(v.clone());
        }
        let cx = EvalCtx::new(scope);
        eval_node(&self.root, &cx).map_err(|(path, e)| (path.unwrap_or_default(), e))
    }

    /// Every module id referenced, with the JSON path of the string that references it.
    pub fn module_refs(&self) -> Vec<(String, ModuleRef)> {
        let mut out = Vec::new();
        let mut path = String::new();
        collect_refs(&self.root, &mut path, &mut out);
        out
    }

    /// True when no string holds a template: evaluation returns the value unchanged.
    pub fn is_static(&self) -> bool {
        matches!(self.root, Node::Static(_))
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

fn push_index(path: &mut String, i: usize) {
    path.push('[');
    path.push_str(&i.to_string());
    path.push(']');
}

fn compile_node(
    value: &Value,
    dialect: Dialect,
    path: &mut String,
    depth: usize,
    errors: &mut Vec<(String, ParseError)>,
) -> Node {
    if depth > MAX_JSON_DEPTH {
        errors.push((
            path.clone(),
            ParseError::new(
                1,
                format!("the value nests more than {MAX_JSON_DEPTH} levels deep"),
            ),
        ));
        return Node::Static(Value::Null);
    }
    match value {
        Value::String(s) => match Template::parse(s, dialect) {
            Ok(t) if t.is_static() => Node::Static(value.clone()),
            Ok(t) => Node::Template(t),
            Err(e) => {
                errors.push((path.clone(), e));
                Node::Static(Value::Null)
            }
        },
        Value::Array(items) => {
            let mut nodes = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                push_index(path, i);
                nodes.push(compile_node(item, dialect, path, depth + 1, errors));
                path.truncate(len);
            }
            if nodes.iter().all(|n| matches!(n, Node::Static(_))) {
                Node::Static(value.clone())
            } else {
                Node::Array(nodes)
            }
        }
        Value::Object(map) => {
            let mut entries = Vec::with_capacity(map.len());
            for (k, v) in map {
                let len = path.len();
                push_key(path, k);
                entries.push((k.clone(), compile_node(v, dialect, path, depth + 1, errors)));
                path.truncate(len);
            }
            if entries.iter().all(|(_, n)| matches!(n, Node::Static(_))) {
                Node::Static(value.clone())
            } else {
                Node::Object(entries)
            }
        }
        _ => Node::Static(value.clone()),
    }
}

/// On failure the path is built from the failing leaf outwards (`None` until a step adds one).
type NodeResult = Result<Value, (Option<String>, EvalError)>;

fn eval_node(node: &Node, cx: &EvalCtx<'_>) -> NodeResult {
    match node {
        Node::Static(v) => Ok(v.clone()),
        Node::Template(t) => t.eval_in(cx).map_err(|e| (None, e)),
        Node::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(eval_node(item, cx).map_err(|(rest, e)| {
                    let mut p = String::new();
                    push_index(&mut p, i);
                    (Some(join(p, rest)), e)
                })?);
            }
            Ok(Value::Array(out))
        }
        Node::Object(entries) => {
            let mut out = Map::with_capacity(entries.len());
            for (k, v) in entries {
                let value =
                    eval_node(v, cx).map_err(|(rest, e)| (Some(join(k.clone(), rest)), e))?;
                out.insert(k.clone(), value);
            }
            Ok(Value::Object(out))
        }
    }
}

/// Joins a path step with the path below it: `headers` + `[0].value`, `[0]` + `value`.
fn join(step: String, rest: Option<String>) -> String {
    match rest {
        None => step,
        Some(r) if r.starts_with('[') => step + &r,
        Some(r) => step + "." + &r,
    }
}

fn collect_refs(node: &Node, path: &mut String, out: &mut Vec<(String, ModuleRef)>) {
    match node {
        Node::Static(_) => {}
        Node::Template(t) => out.extend(t.module_refs().into_iter().map(|r| (path.clone(), r))),
        Node::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                push_index(path, i);
                collect_refs(item, path, out);
                path.truncate(len);
            }
        }
        Node::Object(entries) => {
            for (k, v) in entries {
                let len = path.len();
                push_key(path, k);
                collect_refs(v, path, out);
                path.truncate(len);
            }
        }
    }
}
