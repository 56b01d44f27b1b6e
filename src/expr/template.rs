//! [`Template`]: one parsed string of IML — text with `{{…}}` parts, or one bare expression —
//! ready to evaluate many times; and [`ModuleRef`], a module it reads. Text joined from
//! parts is measured part by part and refused over [`value::MAX_VALUE_BYTES`].

use std::sync::Arc;

use serde_json::Value;

use super::ast::Node;
use super::error::{EvalError, ParseError};
use super::eval::{EvalCtx, eval};
use super::functions::too_large;
use super::parser::{self, Part};
use super::{Dialect, Scope, value};

/// A module id referenced by a template (`{{3.name}}` → id 3), with the 1-based column of the
/// reference in the template's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleRef {
    pub id: u32,
    pub column: usize,
}

/// A parsed template. Cheap to clone (the source and tree are shared).
#[derive(Debug, Clone)]
pub struct Template {
    source: Arc<str>,
    body: Arc<Body>,
}

#[derive(Debug)]
enum Body {
    /// No `{{…}}`: evaluates to the source text.
    Static(Value),
    /// Exactly one `{{…}}` and nothing else (or a bare expression): keeps its value's JSON type.
    Single(Node),
    /// Text and expressions joined as text.
    Parts(Vec<Part>),
}

impl Template {
    /// Parses text with `{{…}}` parts.
    pub fn parse(src: &str, dialect: Dialect) -> Result<Template, ParseError> {
        let mut parts = parser::parse_template(src, dialect)?;
        let body = match parts.as_slice() {
            [] => Body::Static(Value::from("")),
            [Part::Text(t)] => Body::Static(Value::from(t.as_str())),
            [Part::Expr(_)] => match parts.pop() {
                Some(Part::Expr(node)) => Body::Single(node),
                _ => Body::Parts(parts),
            },
            _ => Body::Parts(parts),
        };
        Ok(Template {
            source: Arc::from(src),
            body: Arc::new(body),
        })
    }

    /// Parses one bare expression, without braces: `lower(1.email)`, `body.id > 100`.
    pub fn parse_expression(src: &str, dialect: Dialect) -> Result<Template, ParseError> {
        let node = parser::parse_expression(src, dialect)?;
        Ok(Template {
            source: Arc::from(src),
            body: Arc::new(Body::Single(node)),
        })
    }

    /// Evaluates over `scope`. A template that is exactly one `{{…}}` keeps the JSON type of
    /// its value; any other is text.
    pub fn eval(&self, scope: &dyn Scope) -> Result<Value, EvalError> {
        if let Body::Static(v) = &*self.body {
            return Ok(v.clone());
        }
        self.eval_in(&EvalCtx::new(scope))
    }

    pub(crate) fn eval_in(&self, cx: &EvalCtx<'_>) -> Result<Value, EvalError> {
        match &*self.body {
            Body::Static(v) => Ok(v.clone()),
            Body::Single(node) => Ok(eval(node, cx)?.into_owned()),
            Body::Parts(parts) => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        Part::Text(t) => out.push_str(t),
                        Part::Expr(node) => {
                            let v = eval(node, cx)?;
                            let len = out.len().saturating_add(value::text_len(&v));
                            if len > value::MAX_VALUE_BYTES {
                                let e = too_large(len);
                                return Err(EvalError::new(node.column, format!("text: {}", e.0)));
                            }
                            value::write_text(&mut out, &v);
                        }
                    }
                }
                Ok(Value::String(out))
            }
        }
    }

    /// The source text as given to [`Template::parse`] or [`Template::parse_expression`].
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the template holds no `{{…}}` (its value is its text). A bare expression is
    /// never static.
    pub fn is_static(&self) -> bool {
        matches!(&*self.body, Body::Static(_))
    }

    /// Every module id referenced, in source order, with its column (repeats included).
    pub fn module_refs(&self) -> Vec<ModuleRef> {
        let mut refs = Vec::new();
        let mut push = |id, column| refs.push(ModuleRef { id, column });
        match &*self.body {
            Body::Static(_) => {}
            Body::Single(node) => node.visit_module_refs(&mut push),
            Body::Parts(parts) => {
                for part in parts {
                    if let Part::Expr(node) = part {
                        node.visit_module_refs(&mut push);
                    }
                }
            }
        }
        refs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::test_support::TestScope;
    use serde_json::json;

    fn assert_traits<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}

    #[test]
    fn template_is_shareable() {
        assert_traits::<Template>();
        assert_traits::<ModuleRef>();
        assert_traits::<ParseError>();
        assert_traits::<EvalError>();
    }

    #[test]
    fn static_and_source() {
        let t = Template::parse("no braces here } {", Dialect::Scenario).unwrap();
        assert!(t.is_static());
        assert_eq!(t.source(), "no braces here } {");
        assert_eq!(
            t.eval(&TestScope::new(json!({}))).unwrap(),
            json!("no braces here } {")
        );
        let t = Template::parse("{{\"x\"}}", Dialect::Scenario).unwrap();
        assert!(!t.is_static());
        let t = Template::parse_expression("\"x\"", Dialect::Scenario).unwrap();
        assert!(!t.is_static());
        assert_eq!(t.source(), "\"x\"");
    }

    #[test]
    fn module_refs_in_source_order() {
        let t = Template::parse(
            "{{1.a}} and {{lower(2.b[3.i])}} {{`4`}} {{if(1.x; 5.y; 6.z)}}",
            Dialect::Scenario,
        )
        .unwrap();
        let refs: Vec<(u32, usize)> = t.module_refs().iter().map(|r| (r.id, r.column)).collect();
        assert_eq!(
            refs,
            [(1, 3), (2, 21), (3, 25), (4, 35), (1, 46), (5, 51), (6, 56)]
        );
        let t = Template::parse_expression("1.a + 12.b", Dialect::Scenario).unwrap();
        assert_eq!(
            t.module_refs(),
            [
                ModuleRef { id: 1, column: 1 },
                ModuleRef { id: 12, column: 7 }
            ]
        );
        assert!(
            Template::parse("x", Dialect::Scenario)
                .unwrap()
                .module_refs()
                .is_empty()
        );
    }

    #[test]
    fn bare_expression_evaluates() {
        let scope = TestScope::new(json!({"1": {"email": "A@B.C"}, "body": {"id": 7}}));
        let t = Template::parse_expression("lower(1.email)", Dialect::Scenario).unwrap();
        assert_eq!(t.eval(&scope).unwrap(), json!("a@b.c"));
        let t = Template::parse_expression("body.id > 5", Dialect::App).unwrap();
        assert_eq!(t.eval(&scope).unwrap(), json!(true));
    }
}
