//! Evaluates compiled filters against a bundle: each condition's operands evaluated in the
//! bundle's scope, then its operator ([`crate::scenario::filter::Operator::holds`]).

use serde_json::Value;

use crate::expr::Scope;
use crate::scenario::filter::{CompiledCondition, CompiledFilter};

use crate::module::ModuleError;

/// Whether a bundle passes: any group whose conditions all hold. An empty filter passes.
pub fn passes(filter: &CompiledFilter, scope: &dyn Scope) -> Result<bool, ModuleError> {
    if filter.groups.iter().all(Vec::is_empty) {
        return Ok(true);
    }
    for group in &filter.groups {
        if group.is_empty() {
            continue;
        }
        let mut all = true;
        for condition in group {
            if !holds(&filter.name, condition, scope)? {
                all = false;
                break;
            }
        }
        if all {
            return Ok(true);
        }
    }
    Ok(false)
}

fn operand(
    m: &crate::expr::Mapping,
    scope: &dyn Scope,
    name: &str,
    filter: &str,
) -> Result<Value, ModuleError> {
    m.eval(scope)
        .map_err(|(_, e)| ModuleError::data(format!("filter \"{filter}\", operand {name}: {e}")))
}

fn holds(filter: &str, c: &CompiledCondition, scope: &dyn Scope) -> Result<bool, ModuleError> {
    let a = operand(&c.a, scope, "a", filter)?;
    let b = match &c.b {
        Some(b) => operand(b, scope, "b", filter)?,
        None => Value::Null,
    };
    c.op.holds(&a, &b, c.pattern.as_deref(), scope.timezone())
        .map_err(ModuleError::data)
}
