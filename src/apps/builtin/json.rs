//! The JSON app: `json:ParseJSON` (JSON text to bundles), `json:CreateJSON` and
//! `json:TransformToJSON` (values to JSON text, `{"json": "…"}`).

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter};
use serde_json::{Map, Value, json};

use super::fields::{is_blank, is_dynamic, json_error_reason, number, object, pick};
use crate::expr::value::number as json_number;
use crate::module::error::ModuleError;
use crate::module::{Invocation, Module, ModuleKind};

/// JSON.stringify caps indentation at ten characters; so does Make's `space`.
const MAX_SPACE: usize = 10;

/// `json:ParseJSON`: mapper `{json}`. An object becomes the bundle; a top-level array becomes one
/// bundle per element. Elements and top-level values that are not objects are wrapped as
/// `{"value": …}` so every bundle is an object. `parameters.type` (a data structure) is not
/// checked.
pub(crate) struct ParseJson;

impl Module for ParseJson {
    fn kind(&self) -> ModuleKind {
        ModuleKind::Search
    }

    fn check(&self, _parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        let source = object(mapper).and_then(|m| m.get("json"));
        let mut problems = Vec::new();
        if is_blank(source) {
            problems.push(("mapper.json".to_string(), "is required".to_string()));
        }
        problems
    }

    /// Constant text that is not JSON fails when the module runs, where its error route
    /// handles it; Make loads such a scenario.
    fn warnings(&self, _parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        let source = object(mapper).and_then(|m| m.get("json"));
        let mut problems = Vec::new();
        if let Some(value @ Value::String(s)) = source
            && !is_dynamic(value)
            && let Err(e) = parse(s)
        {
            problems.push((
                "mapper.json".to_string(),
                format!("{} (the module will fail when it runs)", e.message),
            ));
        }
        problems
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async move {
            let source = object(&invocation.mapper).and_then(|m| m.get("json"));
            let parsed = match source {
                None | Some(Value::Null) => {
                    return Err(ModuleError::data("mapper.json: is required"));
                }
                Some(Value::String(s)) => parse(s)?,
                // Already structured (the mapping was one expression yielding an object).
                Some(other) => other.clone(),
            };
            Ok(match parsed {
                Value::Array(items) => items.into_iter().map(as_bundle).collect(),
                other => vec![as_bundle(other)],
            })
        })
    }
}

fn parse(source: &str) -> Result<Value, ModuleError> {
    let trimmed = source.trim_start_matches('\u{feff}');
    serde_json::from_str(trimmed).map_err(|e| {
        ModuleError::data(format!(
            "the source is not valid JSON: {} at line {} column {}",
            json_error_reason(&e),
            e.line(),
            e.column()
        ))
        .with_details(json!({"line": e.line(), "column": e.column()}))
    })
}

fn as_bundle(value: Value) -> Value {
    match value {
        Value::Object(_) => value,
        other => json!({ "value": other }),
    }
}

/// Which value a "to JSON" module serialises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `json:CreateJSON`: the mapper itself is the data structure's fields (Make's exports),
    /// or a lone `{object}` wrapper (hand-written blueprints).
    Mapper,
    /// `json:TransformToJSON`: `mapper.object`.
    Object,
}

/// `json:CreateJSON` and `json:TransformToJSON`: output `{"json": "<text>"}`, indented by
/// `parameters.space` (a number of spaces up to 10, or `tab`; empty for compact).
pub(crate) struct ToJson {
    source: Source,
}

impl ToJson {
    pub(crate) fn new(source: Source) -> Self {
        ToJson { source }
    }
}

impl Module for ToJson {
    fn check(&self, parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Err(reason) = indent(parameters) {
            problems.push(("parameters.space".to_string(), reason));
        }
        if !(mapper.is_object() || mapper.is_null()) {
            problems.push(("mapper".to_string(), "must be an object".to_string()));
        }
        problems
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async move {
            let indent = indent(invocation.parameters)
                .map_err(|r| ModuleError::config(format!("parameters.space: {r}")))?;
            let value = match self.source {
                Source::Object => object(&invocation.mapper)
                    .and_then(|m| m.get("object"))
                    .cloned()
                    .unwrap_or(Value::Null),
                Source::Mapper => mapper_value(&invocation.mapper),
            };
            let json = stringify(&normalise_numbers(value), indent.as_deref())?;
            Ok(vec![json!({ "json": json })])
        })
    }
}

/// The value `json:CreateJSON` serialises: Make's internal `__IMT…` keys are dropped; a mapper
/// whose only key is `object` is unwrapped.
fn mapper_value(mapper: &Value) -> Value {
    let Some(m) = object(mapper) else {
        return Value::Object(Map::new());
    };
    if m.len() == 1
        && let Some((_, inner)) = pick(Some(m), &["object"])
    {
        return inner.clone();
    }
    Value::Object(
        m.iter()
            .filter(|(k, _)| !k.starts_with("__IMT"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// The indentation asked for by `parameters.space`: `None` for compact output.
fn indent(parameters: &Map<String, Value>) -> Result<Option<String>, String> {
    let space = parameters.get("space");
    if let Some(Value::String(s)) = space {
        match s.trim().to_ascii_lowercase().as_str() {
            "tab" | "\\t" => return Ok(Some("\t".into())),
            _ if s == "\t" => return Ok(Some("\t".into())),
            _ => {}
        }
    }
    match number(space).map_err(|_| "must be a number of spaces or tab".to_string())? {
        None => Ok(None),
        Some(n) if n.fract() == 0.0 && n >= 0.0 => {
            let n = (n as usize).min(MAX_SPACE);
            Ok((n > 0).then(|| " ".repeat(n)))
        }
        Some(_) => Err("must be a number of spaces or tab".into()),
    }
}

fn stringify(value: &Value, indent: Option<&str>) -> Result<String, ModuleError> {
    let mut out = Vec::new();
    let result = match indent {
        Some(indent) => write(
            value,
            &mut out,
            PrettyFormatter::with_indent(indent.as_bytes()),
        ),
        None => write(value, &mut out, CompactFormatter),
    };
    result.map_err(|e| ModuleError::data(format!("could not serialise to JSON: {e}")))?;
    String::from_utf8(out)
        .map_err(|e| ModuleError::data(format!("could not serialise to JSON: {e}")))
}

fn write<F: Formatter>(value: &Value, out: &mut Vec<u8>, formatter: F) -> serde_json::Result<()> {
    let mut serializer = serde_json::Serializer::with_formatter(out, formatter);
    value.serialize(&mut serializer)
}

/// Writes integral floats as integers, as JavaScript's JSON.stringify does (`1.0` → `1`).
fn normalise_numbers(value: Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => n.as_f64().map(json_number).unwrap_or(Value::Number(n)),
        Value::Array(items) => Value::Array(items.into_iter().map(normalise_numbers).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, normalise_numbers(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::apps::builtin::call_once as run;

    #[tokio::test]
    async fn parse_object_is_one_bundle() {
        let out = run(
            &ParseJson,
            json!({"type": 7}),
            json!({"json": "{\"a\": {\"b\": [1, 2]}}"}),
        )
        .await
        .unwrap();
        assert_eq!(out, vec![json!({"a": {"b": [1, 2]}})]);
    }

    #[tokio::test]
    async fn parse_array_is_one_bundle_per_element() {
        let out = run(
            &ParseJson,
            json!({}),
            json!({"json": "[{\"id\": 1}, {\"id\": 2}, 3]"}),
        )
        .await
        .unwrap();
        assert_eq!(
            out,
            vec![json!({"id": 1}), json!({"id": 2}), json!({"value": 3})]
        );
        let empty = run(&ParseJson, json!({}), json!({"json": "[]"}))
            .await
            .unwrap();
        assert!(empty.is_empty());
    }

    #[tokio::test]
    async fn parse_accepts_structured_input() {
        let out = run(&ParseJson, json!({}), json!({"json": {"x": 1}}))
            .await
            .unwrap();
        assert_eq!(out, vec![json!({"x": 1})]);
    }

    #[tokio::test]
    async fn invalid_json_is_a_data_error_with_position() {
        let err = run(
            &ParseJson,
            json!({}),
            json!({"json": "{\n  \"a\": 1,\n  oops\n}"}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, crate::module::error::ErrorKind::DataError);
        assert!(err.message.contains("line 3 column 3"), "{}", err.message);
        assert_eq!(err.details, Some(json!({"line": 3, "column": 3})));
        let err = run(&ParseJson, json!({}), json!({})).await.unwrap_err();
        assert_eq!(err.message, "mapper.json: is required");
    }

    #[test]
    fn parse_check_flags_missing_and_static_invalid_json() {
        let p = Map::new();
        assert_eq!(ParseJson.check(&p, &json!({})).len(), 1);
        // Constant invalid JSON is a warning (the module fails when it runs), not an error.
        assert!(ParseJson.check(&p, &json!({"json": "{bad"})).is_empty());
        assert_eq!(ParseJson.warnings(&p, &json!({"json": "{bad"})).len(), 1);
        assert!(
            ParseJson
                .check(&p, &json!({"json": "{{1.body}}"}))
                .is_empty()
        );
        assert!(
            ParseJson
                .warnings(&p, &json!({"json": "{{1.body}}"}))
                .is_empty()
        );
        assert!(ParseJson.check(&p, &json!({"json": "[1]"})).is_empty());
    }

    #[tokio::test]
    async fn create_json_serialises_the_mapper() {
        let module = ToJson::new(Source::Mapper);
        let out = run(
            &module,
            json!({"type": 5, "space": ""}),
            json!({"name": "Ann", "n": 2.0, "__IMTINDEX__": 1}),
        )
        .await
        .unwrap();
        assert_eq!(out, vec![json!({"json": "{\"name\":\"Ann\",\"n\":2}"})]);
        let wrapped = run(&module, json!({}), json!({"object": {"a": [1]}}))
            .await
            .unwrap();
        assert_eq!(wrapped, vec![json!({"json": "{\"a\":[1]}"})]);
    }

    #[tokio::test]
    async fn space_indents_like_json_stringify() {
        let module = ToJson::new(Source::Object);
        let out = run(
            &module,
            json!({"space": "2"}),
            json!({"object": {"a": [1, {"b": null}]}}),
        )
        .await
        .unwrap();
        assert_eq!(
            out[0]["json"],
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ]\n}"
        );
        let tab = run(
            &module,
            json!({"space": "tab"}),
            json!({"object": {"a": 1}}),
        )
        .await
        .unwrap();
        assert_eq!(tab[0]["json"], "{\n\t\"a\": 1\n}");
        let capped = run(&module, json!({"space": 40}), json!({"object": {"a": 1}}))
            .await
            .unwrap();
        assert_eq!(
            capped[0]["json"],
            format!("{{\n{}\"a\": 1\n}}", " ".repeat(10))
        );
        let text = run(&module, json!({}), json!({"object": "he said \"hi\""}))
            .await
            .unwrap();
        assert_eq!(text[0]["json"], "\"he said \\\"hi\\\"\"");
    }

    #[test]
    fn bad_space_is_reported() {
        let module = ToJson::new(Source::Object);
        let mut p = Map::new();
        p.insert("space".into(), json!("wide"));
        assert_eq!(module.check(&p, &json!({}))[0].0, "parameters.space");
        p.insert("space".into(), json!(-1));
        assert_eq!(module.check(&p, &json!({})).len(), 1);
        p.insert("space".into(), json!(4));
        assert!(module.check(&p, &json!({})).is_empty());
    }
}
