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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::test_support::TestScope;
    use serde_json::json;

    fn scope() -> TestScope {
        TestScope::new(json!({"1": {"name": "Ada", "n": 3, "items": [1, 2]}}))
    }

    #[test]
    fn mapping_is_shareable() {
        fn assert_traits<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}
        assert_traits::<Mapping>();
    }

    #[test]
    fn evaluates_templates_and_keeps_order() {
        let value = json!({
            "z": "{{1.name}}",
            "a": {"count": "{{1.n}}", "fixed": [1, "two"]},
            "m": "n={{1.n}}",
            "list": ["{{1.items}}", "x", {"deep": "{{1.n * 2}}"}],
            "b": true
        });
        let m = Mapping::compile(&value, Dialect::Scenario).unwrap();
        assert!(!m.is_static());
        let out = m.eval(&scope()).unwrap();
        assert_eq!(
            out,
            json!({
                "z": "Ada",
                "a": {"count": 3, "fixed": [1, "two"]},
                "m": "n=3",
                "list": [[1, 2], "x", {"deep": 6}],
                "b": true
            })
        );
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["z", "a", "m", "list", "b"]);
    }

    #[test]
    fn static_mapping_is_returned_as_is() {
        let value = json!({"url": "https://x", "n": [1, {"a": null}]});
        let m = Mapping::compile(&value, Dialect::Scenario).unwrap();
        assert!(m.is_static());
        assert_eq!(m.eval(&scope()).unwrap(), value);
        assert!(m.module_refs().is_empty());
        let m = Mapping::compile(&json!("{{1.n}}"), Dialect::Scenario).unwrap();
        assert!(!m.is_static());
        assert_eq!(m.eval(&scope()).unwrap(), json!(3));
    }

    #[test]
    fn all_parse_errors_with_paths() {
        let value = json!({
            "name": "{{lower(}}",
            "ok": "{{1.name}}",
            "headers": [{"name": "a", "value": "{{foo}}"}, "{{1.a"],
        });
        let errors = Mapping::compile(&value, Dialect::Scenario).unwrap_err();
        let paths: Vec<(&str, usize)> =
            errors.iter().map(|(p, e)| (p.as_str(), e.column)).collect();
        assert_eq!(
            paths,
            [("name", 9), ("headers[0].value", 3), ("headers[1]", 1)]
        );
        let errors = Mapping::compile(&json!("{{"), Dialect::Scenario).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "");
    }

    #[test]
    fn eval_error_carries_its_path() {
        let value = json!({"a": [1, {"b": "{{1.n / 0}}"}]});
        let m = Mapping::compile(&value, Dialect::Scenario).unwrap();
        let (path, e) = m.eval(&scope()).unwrap_err();
        assert_eq!(path, "a[1].b");
        assert_eq!(e.message, "division by zero");
        let m = Mapping::compile(&json!("{{1.n / 0}}"), Dialect::Scenario).unwrap();
        assert_eq!(m.eval(&scope()).unwrap_err().0, "");
    }

    #[test]
    fn module_refs_with_paths() {
        let value = json!({"a": "{{1.x}}", "list": ["{{2.y}} {{3.z}}"]});
        let m = Mapping::compile(&value, Dialect::Scenario).unwrap();
        let refs: Vec<(String, u32)> = m
            .module_refs()
            .into_iter()
            .map(|(p, r)| (p, r.id))
            .collect();
        assert_eq!(
            refs,
            [
                ("a".to_string(), 1),
                ("list[0]".to_string(), 2),
                ("list[0]".to_string(), 3)
            ]
        );
    }

    #[test]
    fn too_deep_json_is_an_error() {
        let mut v = json!("{{1.n}}");
        for _ in 0..600 {
            v = json!([v]);
        }
        let errors = Mapping::compile(&v, Dialect::Scenario).unwrap_err();
        assert!(errors[0].1.message.contains("nests more than"));
        // Leak-free teardown of the deep value without recursion trouble is serde_json's
        // business; 600 levels is well within its recursive drop.
    }
}
