//! Compiled filters: Make's condition operators parsed once into [`Operator`] (defined in
//! `expr::condition` with what an operator means for two values, [`Operator::holds`]) and
//! operands compiled to IML mappings; evaluating the operands in a bundle's scope is the
//! engine's.

use std::sync::Arc;

use serde_json::Value;

use crate::expr::condition::pattern_flags;
use crate::expr::regexp::{self, JsRegex};
use crate::expr::{Dialect, Mapping, ModuleRef};

pub use crate::expr::condition::{Operator, Ordering, TextOp};

use super::model::Condition;

/// One compiled condition.
#[derive(Debug, Clone)]
pub struct CompiledCondition {
    pub a: Mapping,
    pub op: Operator,
    pub b: Option<Mapping>,
    /// For `text:pattern` with a constant pattern: the regex, compiled once.
    pub pattern: Option<Arc<JsRegex>>,
}

/// OR of AND-groups.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    pub name: String,
    pub groups: Vec<Vec<CompiledCondition>>,
}

impl CompiledFilter {
    /// Compiles the conditions; each problem is `(path relative to the conditions, reason)`.
    pub fn compile(
        name: &str,
        groups: &[Vec<Condition>],
    ) -> Result<CompiledFilter, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut compiled = Vec::with_capacity(groups.len());
        for (g, group) in groups.iter().enumerate() {
            let mut conditions = Vec::with_capacity(group.len());
            for (c, cond) in group.iter().enumerate() {
                let at = format!("[{g}][{c}]");
                let operand = |v: &Value, key: &str, problems: &mut Vec<(String, String)>| {
                    Mapping::compile(v, Dialect::Scenario)
                        .map_err(|errs| {
                            for (_, e) in errs {
                                problems.push((format!("{at}.{key}"), e.to_string()));
                            }
                        })
                        .ok()
                };
                let a = operand(&cond.a, "a", &mut problems);
                let b = cond.b.as_ref().and_then(|b| operand(b, "b", &mut problems));
                let Some(op) = Operator::parse(&cond.o) else {
                    problems.push((
                        format!("{at}.o"),
                        format!("unknown operator \"{}\"", cond.o),
                    ));
                    continue;
                };
                let mut pattern = None;
                if let (Operator::Text(TextOp::Pattern, _, ci), Some(Value::String(p))) =
                    (op, &cond.b)
                    && !p.contains("{{")
                {
                    match regexp::cached(p, pattern_flags(ci)) {
                        Ok(re) => pattern = Some(re),
                        Err(e) => problems.push((
                            format!("{at}.b"),
                            format!("invalid pattern: {}", e.reason()),
                        )),
                    }
                }
                if let Some(a) = a {
                    conditions.push(CompiledCondition { a, op, b, pattern });
                }
            }
            compiled.push(conditions);
        }
        if problems.is_empty() {
            Ok(CompiledFilter {
                name: name.to_string(),
                groups: compiled,
            })
        } else {
            Err(problems)
        }
    }

    /// Every module reference in the operands, with its path relative to the conditions.
    pub fn module_refs(&self) -> Vec<(String, ModuleRef)> {
        let mut refs = Vec::new();
        for (g, group) in self.groups.iter().enumerate() {
            for (c, cond) in group.iter().enumerate() {
                for (key, m) in [("a", Some(&cond.a)), ("b", cond.b.as_ref())] {
                    if let Some(m) = m {
                        refs.extend(
                            m.module_refs()
                                .into_iter()
                                .map(|(_, r)| (format!("[{g}][{c}].{key}"), r)),
                        );
                    }
                }
            }
        }
        refs
    }
}
