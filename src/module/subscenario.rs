//! Sub-scenarios as a module sees them (Make's Scenarios app): a scenario's declared inputs
//! and outputs ([`Interface`], the blueprint's `interface` or its `StartSubscenario`'s
//! `metadata.interface`), the check of a call's inputs against the declared types
//! ([`check_inputs`]), and the [`Subscenarios`] service through which
//! `scenario-service:CallSubscenario` starts another scenario — put in the execution's
//! [`Extensions`](super::Extensions) as a [`SubscenariosHandle`] by the layer that can queue
//! executions (the runner), the way [`ConnectionsHandle`](super::ConnectionsHandle) reaches
//! modules.
//!
//! Invariants: a call never nests deeper than [`MAX_CALL_DEPTH`] and never calls a scenario
//! already in its chain of callers (the implementation refuses it with an error naming the
//! chain); inputs are checked before any execution is created, each problem naming
//! `mapper.data.NAME`; checking walks only as deep as the declared interface, which the
//! blueprint's JSON nesting cap bounds.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ModuleError;

/// How deep calls may nest: a scenario called by a scenario called by … at most this many
/// calls below the execution that started the chain.
pub const MAX_CALL_DEPTH: usize = 10;

/// One declared input or output (Make's scenario interface item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterfaceField {
    /// Empty for an array's single item type (`"spec": {"type": "text"}`).
    #[serde(default)]
    pub name: String,
    /// Make's type name: `text`, `number`, `boolean`, `date`, `array`, `collection`, `select`,
    /// `any` … (an unknown one is read as `any`).
    #[serde(rename = "type", default = "any_type")]
    pub kind: String,
    #[serde(default)]
    pub required: bool,
    /// The value used when the call gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// A collection's fields, or an array's item fields.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "spec"
    )]
    pub spec: Vec<InterfaceField>,
    /// A `select`'s allowed values (`[{value, label}]` or plain values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<Value>,
}

fn any_type() -> String {
    "any".into()
}

/// `spec` is a list of fields, or (for an array of one primitive type) a single field.
fn spec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<InterfaceField>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Spec {
        Many(Vec<InterfaceField>),
        One(Box<InterfaceField>),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Spec::deserialize(d)? {
        Spec::Many(fields) => fields,
        Spec::One(field) if !field.name.is_empty() => vec![*field],
        // A single unnamed item type (`{"type": "text"}`): items are checked as that type.
        Spec::One(field) => vec![*field],
        Spec::Other(_) => Vec::new(),
    })
}

/// A scenario's declared inputs and outputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    #[serde(default)]
    pub input: Vec<InterfaceField>,
    #[serde(default)]
    pub output: Vec<InterfaceField>,
}

/// Checks a call's `data` against the declared `inputs`: each value converted as Make
/// converts it (numeric text to a number, `"true"` to a boolean, numbers to text …), defaults
/// filled in, names not declared dropped. Every problem is `(path, reason)` with the path
/// under `at` (`mapper.data.NAME`).
pub fn check_inputs(
    inputs: &[InterfaceField],
    data: &Map<String, Value>,
    at: &str,
) -> Result<Map<String, Value>, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let checked = collection(inputs, data, at, &mut problems);
    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(problems)
    }
}

fn collection(
    fields: &[InterfaceField],
    data: &Map<String, Value>,
    at: &str,
    problems: &mut Vec<(String, String)>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for field in fields {
        let path = format!("{at}.{}", field.name);
        let given = data.get(&field.name).filter(|v| !is_empty(v));
        let Some(value) = given.or(field.default.as_ref().filter(|v| !is_empty(v))) else {
            if field.required {
                problems.push((path, format!("is required ({})", field.kind)));
            }
            out.insert(field.name.clone(), Value::Null);
            continue;
        };
        if let Some(v) = typed(field, value, &path, problems) {
            out.insert(field.name.clone(), v);
        }
    }
    out
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// `value` as `field`'s type, or a problem at `path`.
fn typed(
    field: &InterfaceField,
    value: &Value,
    path: &str,
    problems: &mut Vec<(String, String)>,
) -> Option<Value> {
    let mut refuse = |expected: &str| {
        problems.push((
            path.to_string(),
            format!("expected {expected}, got {}", describe(value)),
        ));
        None
    };
    match field.kind.as_str() {
        "text" | "string" | "email" | "url" | "uuid" | "filename" | "color" | "path" => match value
        {
            Value::String(_) => Some(value.clone()),
            Value::Number(n) => Some(Value::String(n.to_string())),
            Value::Bool(b) => Some(Value::String(b.to_string())),
            _ => refuse("text"),
        },
        "number" | "integer" | "uinteger" => {
            let number = match value {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
                _ => None,
            };
            match number {
                Some(n) if field.kind != "number" && n.fract() != 0.0 => refuse("a whole number"),
                Some(n) if field.kind == "uinteger" && n < 0.0 => refuse("a whole number ≥ 0"),
                Some(_) if value.is_number() => Some(value.clone()),
                Some(n) => Some(number_value(n)),
                None => refuse("a number"),
            }
        }
        "boolean" => match value {
            Value::Bool(_) => Some(value.clone()),
            Value::String(s) if s == "true" || s == "false" => Some(Value::Bool(s == "true")),
            Value::Number(n) if n.as_f64() == Some(1.0) || n.as_f64() == Some(0.0) => {
                Some(Value::Bool(n.as_f64() == Some(1.0)))
            }
            _ => refuse("a boolean (true or false)"),
        },
        "date" => match value {
            Value::String(s) if parses_as_date(s) => Some(value.clone()),
            _ => refuse("a date (ISO 8601, e.g. 2026-01-31 or 2026-01-31T10:00:00Z)"),
        },
        "array" => match value {
            Value::Array(items) => {
                let items = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| {
                        array_item(&field.spec, item, &format!("{path}[{i}]"), problems)
                    })
                    .collect();
                Some(Value::Array(items))
            }
            _ => refuse("an array"),
        },
        "collection" | "dynamicCollection" | "object" => match value {
            Value::Object(map) if field.spec.is_empty() => Some(Value::Object(map.clone())),
            Value::Object(map) => Some(Value::Object(collection(&field.spec, map, path, problems))),
            _ => refuse("a collection (an object)"),
        },
        "select" => {
            let allowed: Vec<&Value> = field
                .options
                .iter()
                .map(|o| o.get("value").unwrap_or(o))
                .collect();
            let text = crate::expr::value::to_text(value);
            if allowed.is_empty()
                || allowed
                    .iter()
                    .any(|a| crate::expr::value::to_text(a) == text)
            {
                Some(value.clone())
            } else {
                let names: Vec<String> = allowed
                    .iter()
                    .map(|a| crate::expr::value::to_text(a))
                    .collect();
                refuse(&format!("one of {}", names.join(", ")))
            }
        }
        // `any`, `json`, `buffer` and types this version does not know take any value.
        _ => Some(value.clone()),
    }
}

/// One item of an array whose item spec is `spec`: a collection of those fields, or (one
/// unnamed field) a value of that type; with no spec, any value.
fn array_item(
    spec: &[InterfaceField],
    item: &Value,
    path: &str,
    problems: &mut Vec<(String, String)>,
) -> Option<Value> {
    match spec {
        [] => Some(item.clone()),
        [one] if one.name.is_empty() => typed(one, item, path, problems),
        fields => match item {
            Value::Object(map) => Some(Value::Object(collection(fields, map, path, problems))),
            _ => {
                problems.push((
                    path.to_string(),
                    format!("expected a collection (an object), got {}", describe(item)),
                ));
                None
            }
        },
    }
}

fn number_value(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

fn parses_as_date(s: &str) -> bool {
    let s = s.trim();
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
        || chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").is_ok()
}

/// A short description of a value for an error message (its type, and short text itself).
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) if s.chars().count() <= 40 => format!("text {s:?}"),
        Value::String(_) => "text".into(),
        Value::Number(n) => format!("the number {n}"),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "a collection".into(),
        Value::Null => "nothing".into(),
    }
}

/// One `scenario-service:CallSubscenario` call.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// The calling execution.
    pub caller_execution: String,
    /// The calling module's id.
    pub caller_module: u32,
    /// The callee as the blueprint names it (`parameters.scenario`): its id, `SCN_<id>`, or
    /// its name.
    pub scenario: String,
    /// The callee's inputs as mapped (`mapper.data`), not yet checked.
    pub data: Map<String, Value>,
    /// Wait for the callee's end and return its outputs (`mapper.shouldWaitForExecutionEnd`).
    pub wait: bool,
}

/// What a call gives back.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOutcome {
    /// Not waited for: the callee's execution was queued.
    Started { execution_id: String },
    /// Waited for: the callee succeeded with these outputs (its `ReturnData`'s, or none).
    Finished {
        execution_id: String,
        outputs: Map<String, Value>,
    },
}

/// Starts other scenarios' executions on behalf of a module.
pub trait Subscenarios: Send + Sync {
    fn call(&self, request: CallRequest) -> BoxFuture<'_, Result<CallOutcome, ModuleError>>;
}

/// The [`Subscenarios`] service as found in an execution's extensions.
#[derive(Clone)]
pub struct SubscenariosHandle(pub Arc<dyn Subscenarios>);

impl std::fmt::Debug for SubscenariosHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubscenariosHandle")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Vec<InterfaceField> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn inputs_are_converted_to_their_declared_types() {
        let inputs = fields(json!([
            {"name": "count", "type": "number", "required": true},
            {"name": "urgent", "type": "boolean"},
            {"name": "label", "type": "text"},
            {"name": "due", "type": "date"},
            {"name": "tier", "type": "select", "options": [{"value": "a"}, {"value": "b"}], "default": "a"},
            {"name": "lines", "type": "array", "spec": [{"name": "sku", "type": "text", "required": true}, {"name": "qty", "type": "number"}]},
        ]));
        let data = json!({
            "count": "42", "urgent": "true", "label": 7, "due": "2026-01-31",
            "lines": [{"sku": "X1", "qty": "2"}], "extra": "dropped"
        });
        let checked = check_inputs(&inputs, data.as_object().unwrap(), "mapper.data").unwrap();
        assert_eq!(
            Value::Object(checked),
            json!({"count": 42, "urgent": true, "label": "7", "due": "2026-01-31", "tier": "a",
                   "lines": [{"sku": "X1", "qty": 2}]})
        );
    }

    #[test]
    fn every_wrong_input_is_named_with_its_path() {
        let inputs = fields(json!([
            {"name": "count", "type": "number", "required": true},
            {"name": "email", "type": "text", "required": true},
            {"name": "urgent", "type": "boolean"},
            {"name": "tier", "type": "select", "options": [{"value": "a"}, {"value": "b"}]},
            {"name": "lines", "type": "array", "spec": [{"name": "sku", "type": "text", "required": true}]},
            {"name": "when", "type": "date"},
        ]));
        let data = json!({"count": "many", "urgent": "yes", "tier": "c", "lines": [{"qty": 1}], "when": "soon"});
        let problems = check_inputs(&inputs, data.as_object().unwrap(), "mapper.data").unwrap_err();
        assert_eq!(
            problems,
            vec![
                ("mapper.data.count".into(), "expected a number, got text \"many\"".into()),
                ("mapper.data.email".into(), "is required (text)".into()),
                ("mapper.data.urgent".into(), "expected a boolean (true or false), got text \"yes\"".into()),
                ("mapper.data.tier".into(), "expected one of a, b, got text \"c\"".into()),
                ("mapper.data.lines[0].sku".into(), "is required (text)".into()),
                ("mapper.data.when".into(), "expected a date (ISO 8601, e.g. 2026-01-31 or 2026-01-31T10:00:00Z), got text \"soon\"".into()),
            ]
        );
    }

    #[test]
    fn an_interface_reads_makes_shape_with_a_single_item_spec() {
        let interface: Interface = serde_json::from_value(json!({
            "input": [{"name": "tags", "type": "array", "spec": {"type": "text"}}, {"name": "x"}],
            "output": [{"name": "ok", "type": "boolean", "label": "ok", "required": true}]
        }))
        .unwrap();
        assert_eq!(interface.input[1].kind, "any");
        let checked = check_inputs(
            &interface.input,
            json!({"tags": [1, "b"]}).as_object().unwrap(),
            "mapper.data",
        )
        .unwrap();
        assert_eq!(
            Value::Object(checked),
            json!({"tags": ["1", "b"], "x": null})
        );
        let bad = check_inputs(
            &interface.input,
            json!({"tags": [[1]]}).as_object().unwrap(),
            "d",
        );
        assert_eq!(bad.unwrap_err()[0].0, "d.tags[0]");
    }
}
