//! Evaluates compiled filters against a bundle: Make's operators with Make's coercions.

use std::cmp::Ordering as CmpOrdering;

use serde_json::Value;

use crate::expr::Scope;
use crate::expr::functions::date::to_datetime;
use crate::expr::value::{is_empty, to_number, to_text};
use crate::scenario::filter::{CompiledCondition, CompiledFilter, Operator, TextOp};
use crate::scenario::schedule::parse_time;

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
    Ok(match c.op {
        Operator::Exist => !is_empty(&a),
        Operator::NotExist => is_empty(&a),
        Operator::Text(op, negated, ci) => text(op, ci, &a, &b, c.pattern.as_ref())? != negated,
        Operator::Number(ord) => {
            compare(ord, to_number(&a), to_number(&b), |x, y| x.partial_cmp(y))
        }
        Operator::Date(ord) => {
            let tz = scope.timezone();
            compare(ord, to_datetime(&a, tz), to_datetime(&b, tz), |x, y| {
                Some(x.cmp(y))
            })
        }
        Operator::Time(ord) => compare(
            ord,
            time_of_day(&a, scope),
            time_of_day(&b, scope),
            |x, y| Some(x.cmp(y)),
        ),
        Operator::Boolean(negated) => match (boolean(&a), boolean(&b)) {
            (Some(x), Some(y)) => (x == y) != negated,
            _ => negated,
        },
        Operator::ArrayContains(negated, ci) => {
            let needle = fold(&to_text(&b), ci);
            let found = items(&a)
                .iter()
                .any(|item| fold(&to_text(item), ci) == needle);
            found != negated
        }
        Operator::ArrayLength(ord) => {
            let len = items(&a).len() as f64;
            compare(ord, Some(len), to_number(&b), |x, y| x.partial_cmp(y))
        }
    })
}

/// Orders two readings; when either side does not read as the type, only "not equal" holds.
fn compare<T>(
    ord: crate::scenario::filter::Ordering,
    a: Option<T>,
    b: Option<T>,
    cmp: impl Fn(&T, &T) -> Option<CmpOrdering>,
) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => cmp(&a, &b).is_some_and(|o| ord.holds(o)),
        _ => ord == crate::scenario::filter::Ordering::NotEqual,
    }
}

fn fold(s: &str, ci: bool) -> String {
    if ci { s.to_lowercase() } else { s.to_string() }
}

fn text(
    op: TextOp,
    ci: bool,
    a: &Value,
    b: &Value,
    pattern: Option<&regex::Regex>,
) -> Result<bool, ModuleError> {
    if op == TextOp::Pattern {
        let subject = to_text(a);
        return match pattern {
            Some(re) => Ok(re.is_match(&subject)),
            None => regex::RegexBuilder::new(&to_text(b))
                .case_insensitive(ci)
                .build()
                .map(|re| re.is_match(&subject))
                .map_err(|e| ModuleError::data(format!("invalid pattern in filter: {e}"))),
        };
    }
    let (a, b) = (fold(&to_text(a), ci), fold(&to_text(b), ci));
    Ok(match op {
        TextOp::Equal => a == b,
        TextOp::Contain => a.contains(&b),
        TextOp::StartWith => a.starts_with(&b),
        TextOp::EndWith => a.ends_with(&b),
        TextOp::Pattern => unreachable!("handled above"),
    })
}

fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" | "" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::Null => Some(false),
        _ => None,
    }
}

/// Seconds after midnight of a `HH:MM[:SS]` text, or of a date's time of day in the scenario zone.
fn time_of_day(v: &Value, scope: &dyn Scope) -> Option<u32> {
    if let Some(t) = v.as_str().and_then(parse_time) {
        return Some(t);
    }
    let tz = scope.timezone();
    to_datetime(v, tz).map(|d| {
        use chrono::Timelike;
        d.with_timezone(&tz).num_seconds_from_midnight()
    })
}

/// An array operand's items; a single value counts as a one-item array, `null` as none.
fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        Value::Null => &[],
        other => std::slice::from_ref(other),
    }
}
