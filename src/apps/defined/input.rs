//! A module's input checked against its field specs before any request: required fields,
//! types (with Make's lenient conversions: `"40"` for a number, `"true"` for a boolean, one
//! value for an array), `select` options and the fields their chosen option nests, `validate`
//! patterns and bounds, defaults. The checked values are what templates read as
//! `parameters`.
//!
//! Invariants: every problem names its field by path (`userId`, `filters[0].type`) and never
//! quotes the value, which may be personal data; nothing here does I/O; recursion follows the
//! definition's field nesting (bounded by its JSON), never the input's.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use std::sync::Arc;

use super::model::{FieldSpec, FieldType, OneOrMany};
use crate::expr::regexp::{self, JsRegex};
use crate::expr::value;

/// A field spec with its `validate.pattern` compiled (a JavaScript regular expression, as in
/// Make's Custom Apps: [`regexp`]).
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub spec: FieldSpec,
    pattern: Option<Arc<JsRegex>>,
    nested: Vec<Vec<Field>>,
    items: Items,
}

/// What an `array` or `collection` field holds.
#[derive(Debug, Clone)]
enum Items {
    None,
    /// Items of one field's type.
    One(Box<Field>),
    /// Collections of these fields.
    Fields(Vec<Field>),
}

/// How strictly a value is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// At call time: every value is final.
    Call,
    /// At load time (`Module::check`): strings holding `{{…}}` are mapped later, skipped.
    Static,
}

impl Field {
    /// Compiles `specs`; a bad pattern or a select without options is `(path, reason)`.
    pub(crate) fn compile_all(
        specs: &[FieldSpec],
        path: &str,
        problems: &mut Vec<(String, String)>,
    ) -> Vec<Field> {
        let mut seen = std::collections::HashSet::new();
        specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let at = format!("{path}[{i}]");
                if !seen.insert(spec.name.as_str()) {
                    problems.push((
                        format!("{at}.name"),
                        format!("the field `{}` is listed twice", spec.name),
                    ));
                }
                Field::compile(spec, &at, problems)
            })
            .collect()
    }

    fn compile(spec: &FieldSpec, path: &str, problems: &mut Vec<(String, String)>) -> Field {
        if spec.name.is_empty() {
            problems.push((format!("{path}.name"), "must not be empty".into()));
        }
        let pattern = spec
            .validate
            .as_ref()
            .and_then(|v| v.pattern.as_ref())
            .and_then(|p| {
                regexp::cached(p, regexp::Flags::default())
                    .map_err(|e| {
                        problems.push((
                            format!("{path}.validate.pattern"),
                            format!("not a regular expression: {}", e.reason()),
                        ))
                    })
                    .ok()
            });
        if spec.kind == FieldType::Select && spec.options.is_empty() {
            problems.push((
                format!("{path}.options"),
                "a select field needs options".into(),
            ));
        }
        if spec.kind != FieldType::Select && !spec.options.is_empty() {
            problems.push((
                format!("{path}.options"),
                "only select fields have options".into(),
            ));
        }
        let nested = spec
            .options
            .iter()
            .enumerate()
            .map(|(i, option)| {
                Field::compile_all(
                    &option.nested,
                    &format!("{path}.options[{i}].nested"),
                    problems,
                )
            })
            .collect();
        let items =
            match (spec.kind, spec.spec.as_deref()) {
                (_, None) => Items::None,
                (FieldType::Array, Some(OneOrMany::One(one))) => Items::One(Box::new(
                    Field::compile(one, &format!("{path}.spec"), problems),
                )),
                (FieldType::Array | FieldType::Collection, Some(OneOrMany::Many(fields))) => {
                    Items::Fields(Field::compile_all(
                        fields,
                        &format!("{path}.spec"),
                        problems,
                    ))
                }
                (FieldType::Collection, Some(OneOrMany::One(_))) => {
                    problems.push((
                        format!("{path}.spec"),
                        "a collection's spec is a list of fields".into(),
                    ));
                    Items::None
                }
                (kind, Some(_)) => {
                    problems.push((
                        format!("{path}.spec"),
                        format!("a {} field has no spec", kind.name()),
                    ));
                    Items::None
                }
            };
        let field = Field {
            spec: spec.clone(),
            pattern,
            nested,
            items,
        };
        if let Some(default) = &spec.default {
            let mut out = Map::new();
            let mut input = Map::new();
            input.insert(spec.name.clone(), default.clone());
            let mut found = Vec::new();
            check(
                std::slice::from_ref(&field),
                &input,
                "",
                Mode::Static,
                &mut out,
                &mut found,
            );
            problems.extend(
                found
                    .into_iter()
                    .map(|(_, reason)| (format!("{path}.default"), reason)),
            );
        }
        field
    }
}

/// Checks `input` against `fields`: the checked values go into `out` (absent, empty fields
/// without a default are left out), problems into `problems` as `(field path, reason)`.
/// Keys no field describes are copied as they are.
pub(crate) fn check(
    fields: &[Field],
    input: &Map<String, Value>,
    prefix: &str,
    mode: Mode,
    out: &mut Map<String, Value>,
    problems: &mut Vec<(String, String)>,
) {
    check_fields(fields, input, prefix, mode, out, problems);
    for (key, value) in input {
        if !out.contains_key(key)
            && !fields.iter().any(|f| &f.spec.name == key)
            && !nested_name(fields, key)
        {
            out.insert(key.clone(), value.clone());
        }
    }
}

/// [`check`] of `fields` alone: a chosen option's nested fields are checked here too, without
/// copying the keys they do not describe (a described field left empty stays out).
fn check_fields(
    fields: &[Field],
    input: &Map<String, Value>,
    prefix: &str,
    mode: Mode,
    out: &mut Map<String, Value>,
    problems: &mut Vec<(String, String)>,
) {
    for field in fields {
        let spec = &field.spec;
        let path = if prefix.is_empty() {
            spec.name.clone()
        } else {
            format!("{prefix}.{}", spec.name)
        };
        let raw = input
            .get(&spec.name)
            .filter(|v| !is_empty(v))
            .or(spec.default.as_ref());
        let Some(raw) = raw else {
            if spec.required {
                problems.push((path, "this field is required".into()));
            }
            continue;
        };
        if mode == Mode::Static && holds_template(raw) {
            out.insert(spec.name.clone(), raw.clone());
            continue;
        }
        match convert(field, raw, &path, mode, problems) {
            Some(value) => {
                if spec.kind == FieldType::Select
                    && let Some(i) = spec
                        .options
                        .iter()
                        .position(|o| same_option(&o.value, &value))
                {
                    check_fields(&field.nested[i], input, prefix, mode, out, problems);
                }
                out.insert(spec.name.clone(), value);
            }
            None => continue,
        }
    }
}

/// Whether `key` is a field nested under some option (checked only when that option is chosen).
fn nested_name(fields: &[Field], key: &str) -> bool {
    fields.iter().any(|f| {
        f.nested.iter().any(|n| {
            n.iter()
                .any(|g| g.spec.name == key || nested_name(std::slice::from_ref(g), key))
        })
    })
}

/// Make's "empty": absent, `null`, empty text.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn holds_template(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains("{{"),
        Value::Array(items) => items.iter().any(holds_template),
        Value::Object(map) => map.values().any(holds_template),
        _ => false,
    }
}

fn same_option(option: &Value, value: &Value) -> bool {
    value::to_text(option) == value::to_text(value)
}

/// The value of one field converted to its type, or a problem.
fn convert(
    field: &Field,
    raw: &Value,
    path: &str,
    mode: Mode,
    problems: &mut Vec<(String, String)>,
) -> Option<Value> {
    let spec = &field.spec;
    macro_rules! fail {
        ($reason:expr) => {{
            problems.push((path.to_string(), $reason));
            return None;
        }};
    }
    let value = match spec.kind {
        FieldType::Any | FieldType::Hidden => raw.clone(),
        FieldType::Text | FieldType::Timezone | FieldType::Email | FieldType::Url => {
            let text = match raw {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => value::to_text(raw),
                other => fail!(format!("expected text, got {}", kind(other))),
            };
            if spec.kind == FieldType::Email && !is_email(&text) {
                fail!("expected an email address (name@example.com)".into());
            }
            if spec.kind == FieldType::Url && !is_url(&text) {
                fail!("expected an absolute http(s) URL".into());
            }
            Value::String(text)
        }
        FieldType::Number | FieldType::Integer | FieldType::Uinteger => {
            let n = match raw {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => value::parse_number_text(s.trim()),
                _ => None,
            };
            let Some(n) = n else {
                fail!(format!("expected a number, got {}", kind(raw)));
            };
            if spec.kind != FieldType::Number && n.fract() != 0.0 {
                fail!("expected a whole number".into());
            }
            if spec.kind == FieldType::Uinteger && n < 0.0 {
                fail!("expected a whole number of 0 or more".into());
            }
            value::number(n)
        }
        FieldType::Boolean => match raw {
            Value::Bool(b) => Value::Bool(*b),
            Value::Number(n) if n.as_f64() == Some(1.0) => Value::Bool(true),
            Value::Number(n) if n.as_f64() == Some(0.0) => Value::Bool(false),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Value::Bool(true),
                "false" | "0" | "no" => Value::Bool(false),
                _ => fail!("expected true or false".into()),
            },
            other => fail!(format!("expected true or false, got {}", kind(other))),
        },
        FieldType::Date => match parse_date(raw) {
            Some(date) => Value::String(date.to_rfc3339_opts(SecondsFormat::Millis, true)),
            None => {
                fail!("expected a date (ISO 8601, e.g. 2024-01-31 or 2024-01-31T12:00:00Z)".into())
            }
        },
        FieldType::Select => {
            let allowed = || {
                spec.options
                    .iter()
                    .map(|o| value::to_text(&o.value))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let pick = |v: &Value| {
                spec.options
                    .iter()
                    .find(|o| same_option(&o.value, v))
                    .map(|o| o.value.clone())
            };
            if spec.multiple {
                let items = match raw {
                    Value::Array(items) => items.clone(),
                    other => vec![other.clone()],
                };
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match pick(item) {
                        Some(v) => out.push(v),
                        None => {
                            problems.push((
                                format!("{path}[{i}]"),
                                format!("expected one of: {}", allowed()),
                            ));
                            return None;
                        }
                    }
                }
                Value::Array(out)
            } else {
                match pick(raw) {
                    Some(v) => v,
                    None => fail!(format!("expected one of: {}", allowed())),
                }
            }
        }
        FieldType::Array => {
            let items = match raw {
                Value::Array(items) => items.clone(),
                Value::Object(_) | Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                    vec![raw.clone()]
                }
                Value::Null => Vec::new(),
            };
            let mut out = Vec::with_capacity(items.len());
            let before = problems.len();
            for (i, item) in items.iter().enumerate() {
                let at = format!("{path}[{i}]");
                match &field.items {
                    Items::None => out.push(item.clone()),
                    Items::One(one) => {
                        if is_empty(item) {
                            continue;
                        }
                        if let Some(v) = convert(one, item, &at, mode, problems) {
                            out.push(v);
                        }
                    }
                    Items::Fields(fields) => match item {
                        Value::Object(map) => {
                            let mut checked = Map::new();
                            check(fields, map, &at, mode, &mut checked, problems);
                            out.push(Value::Object(checked));
                        }
                        other => {
                            problems
                                .push((at, format!("expected a collection, got {}", kind(other))));
                        }
                    },
                }
            }
            if problems.len() > before {
                return None;
            }
            Value::Array(out)
        }
        FieldType::Collection => match raw {
            Value::Object(map) => match &field.items {
                Items::Fields(fields) => {
                    let mut checked = Map::new();
                    let before = problems.len();
                    check(fields, map, path, mode, &mut checked, problems);
                    if problems.len() > before {
                        return None;
                    }
                    Value::Object(checked)
                }
                _ => raw.clone(),
            },
            other => fail!(format!("expected a collection, got {}", kind(other))),
        },
    };
    if let Some(reason) = validate(field, &value) {
        fail!(reason);
    }
    Some(value)
}

/// `validate`: the pattern (text) and bounds (numbers, or lengths of text and arrays).
fn validate(field: &Field, value: &Value) -> Option<String> {
    let rules = field.spec.validate.as_ref()?;
    if let (Some(pattern), Value::String(text)) = (&field.pattern, value) {
        match pattern.is_match(text) {
            Ok(true) => {}
            Ok(false) => {
                return Some(format!("does not match the pattern {}", pattern.source()));
            }
            Err(too_complex) => return Some(too_complex.to_string()),
        }
    }
    let (measure, what) = match value {
        Value::Number(n) => (n.as_f64()?, "the value"),
        Value::String(s) => (s.chars().count() as f64, "the length"),
        Value::Array(a) => (a.len() as f64, "the number of items"),
        _ => return None,
    };
    if let Some(min) = rules.min
        && measure < min
    {
        return Some(format!(
            "{what} must be at least {}",
            value::to_text(&value::number(min))
        ));
    }
    if let Some(max) = rules.max
        && measure > max
    {
        return Some(format!(
            "{what} must be at most {}",
            value::to_text(&value::number(max))
        ));
    }
    None
}

fn kind(value: &Value) -> &'static str {
    super::template::kind_of(value)
}

fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.chars().any(char::is_whitespace)
}

fn is_url(text: &str) -> bool {
    reqwest::Url::parse(text.trim())
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

/// A date as the APIs and users write it: RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff][Z]` (ChatBot's
/// own form), a date alone (midnight UTC), or milliseconds since 1970.
pub(crate) fn parse_date(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Number(n) => DateTime::from_timestamp_millis(n.as_f64()? as i64),
        Value::String(s) => parse_date_text(s.trim()),
        _ => None,
    }
}

pub(crate) fn parse_date_text(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let spaced = text.replacen(' ', "T", 1);
    if let Ok(t) = DateTime::parse_from_rfc3339(&spaced) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = spaced.trim_end_matches('Z');
    if let Ok(t) = NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M") {
        return Some(t.and_utc());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(specs: Value) -> Vec<Field> {
        let specs: Vec<FieldSpec> = serde_json::from_value(specs).unwrap();
        let mut problems = Vec::new();
        let fields = Field::compile_all(&specs, "expect", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        fields
    }

    fn run(fields: &[Field], input: Value, mode: Mode) -> Result<Value, Vec<(String, String)>> {
        let mut out = Map::new();
        let mut problems = Vec::new();
        check(
            fields,
            input.as_object().unwrap(),
            "",
            mode,
            &mut out,
            &mut problems,
        );
        if problems.is_empty() {
            Ok(Value::Object(out))
        } else {
            Err(problems)
        }
    }

    #[test]
    fn a_chosen_option_leaves_empty_siblings_out() {
        // Telegram's SendReplyMessage as exports map it: a select whose option has no nested
        // fields, beside fields left empty.
        let f = fields(json!([
            {"name": "text", "type": "text", "required": true},
            {"name": "parseMode", "type": "select", "options": [{"value": "HTML"}]},
            {"name": "threadId", "type": "number"},
            {"name": "assemble", "type": "select", "options": [
                {"value": "enter", "nested": [{"name": "markup", "type": "text"}]},
                {"value": "build"}]},
        ]));
        let ok = run(
            &f,
            json!({"text": "hi", "parseMode": "", "threadId": "", "assemble": "build", "extra": 1}),
            Mode::Call,
        )
        .unwrap();
        assert_eq!(ok, json!({"text": "hi", "assemble": "build", "extra": 1}));
        let ok = run(
            &f,
            json!({"text": "hi", "assemble": "enter", "markup": "m", "threadId": ""}),
            Mode::Call,
        )
        .unwrap();
        assert_eq!(
            ok,
            json!({"text": "hi", "assemble": "enter", "markup": "m"})
        );
    }

    #[test]
    fn required_types_options_and_defaults() {
        let f = fields(json!([
            {"name": "userId", "type": "text", "required": true, "validate": {"pattern": "^[a-z0-9]+$"}},
            {"name": "limit", "type": "uinteger", "default": 10, "validate": {"min": 1, "max": 100}},
            {"name": "order", "type": "select", "options": [{"value": "asc"}, {"value": "desc"}]},
            {"name": "banned", "type": "boolean"},
            {"name": "since", "type": "date"},
            {"name": "email", "type": "email"},
        ]));
        let ok = run(
            &f,
            json!({"userId": "abc1", "limit": "40", "order": "asc", "banned": "true",
            "since": "2019-01-23 13:32:30.163Z", "email": "a@b.co", "__IMTCONN__": "bot"}),
            Mode::Call,
        )
        .unwrap();
        assert_eq!(
            ok,
            json!({"userId": "abc1", "limit": 40, "order": "asc", "banned": true,
                "since": "2019-01-23T13:32:30.163Z", "email": "a@b.co", "__IMTCONN__": "bot"})
        );
        let defaults = run(&f, json!({"userId": "x", "order": ""}), Mode::Call).unwrap();
        assert_eq!(defaults, json!({"userId": "x", "limit": 10}));

        let err = run(&f, json!({}), Mode::Call).unwrap_err();
        assert_eq!(
            err,
            [("userId".to_string(), "this field is required".to_string())]
        );
        let err = run(
            &f,
            json!({"userId": "../x", "limit": 0, "order": "up", "banned": "maybe",
            "since": "yesterday", "email": "nope"}),
            Mode::Call,
        )
        .unwrap_err();
        let fields: Vec<&str> = err.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            ["userId", "limit", "order", "banned", "since", "email"]
        );
        assert!(err[2].1.contains("asc, desc"), "{err:?}");
        let err = run(&f, json!({"userId": {"a": 1}}), Mode::Call).unwrap_err();
        assert_eq!(err[0].1, "expected text, got a collection");
        let err = run(&f, json!({"userId": "a", "limit": 1.5}), Mode::Call).unwrap_err();
        assert_eq!(
            err[0],
            ("limit".to_string(), "expected a whole number".to_string())
        );
    }

    #[test]
    fn nested_fields_of_the_chosen_option() {
        let f = fields(json!([
            {"name": "userIdMode", "type": "select", "default": "auto", "options": [
                {"value": "manual", "nested": [{"name": "customUserId", "type": "text", "required": true}]},
                {"value": "auto"},
            ]},
        ]));
        assert_eq!(
            run(&f, json!({}), Mode::Call).unwrap(),
            json!({"userIdMode": "auto"})
        );
        let err = run(&f, json!({"userIdMode": "manual"}), Mode::Call).unwrap_err();
        assert_eq!(err[0].0, "customUserId");
        assert_eq!(
            run(
                &f,
                json!({"userIdMode": "manual", "customUserId": 7}),
                Mode::Call
            )
            .unwrap(),
            json!({"userIdMode": "manual", "customUserId": "7"})
        );
    }

    #[test]
    fn arrays_and_collections() {
        let f = fields(json!([
            {"name": "filters", "type": "array", "spec": [
                {"name": "type", "type": "select", "required": true, "options": [{"value": "email"}, {"value": "banned"}]},
                {"name": "value", "type": "text"},
            ]},
            {"name": "segments", "type": "array", "spec": {"name": "segment", "type": "text"}},
            {"name": "customFields", "type": "collection"},
        ]));
        let ok = run(
            &f,
            json!({"filters": [{"type": "email", "value": "a@b.c"}], "segments": "vip",
            "customFields": {"plan": "pro"}}),
            Mode::Call,
        )
        .unwrap();
        assert_eq!(ok["filters"], json!([{"type": "email", "value": "a@b.c"}]));
        assert_eq!(ok["segments"], json!(["vip"]));
        let err = run(
            &f,
            json!({"filters": [{"value": "x"}, {"type": "nope"}]}),
            Mode::Call,
        )
        .unwrap_err();
        let paths: Vec<&str> = err.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["filters[0].type", "filters[1].type"]);
        let err = run(&f, json!({"customFields": "x"}), Mode::Call).unwrap_err();
        assert_eq!(err[0].0, "customFields");
    }

    #[test]
    fn validate_patterns_are_javascript_regular_expressions() {
        // Look-ahead, as Custom Apps' password and code rules use it.
        let f = fields(json!([
            {"name": "code", "type": "text", "validate": {"pattern": "^(?=.*\\d)(?=.*[A-Z])\\S{8,}$"}},
        ]));
        assert!(run(&f, json!({"code": "Secret123"}), Mode::Call).is_ok());
        let err = run(&f, json!({"code": "secret123"}), Mode::Call).unwrap_err();
        assert_eq!(err[0].0, "code");
        assert!(
            err[0].1.contains("does not match the pattern ^(?=.*"),
            "{err:?}"
        );
    }

    #[test]
    fn static_mode_skips_mapped_values() {
        let f = fields(json!([{"name": "limit", "type": "uinteger", "required": true}]));
        assert!(run(&f, json!({"limit": "{{1.count}}"}), Mode::Static).is_ok());
        assert!(run(&f, json!({"limit": "{{1.count}}"}), Mode::Call).is_err());
        assert!(run(&f, json!({}), Mode::Static).is_err());
    }

    #[test]
    fn bad_specs_are_reported() {
        let specs: Vec<FieldSpec> = serde_json::from_value(json!([
            {"name": "a", "type": "select"},
            {"name": "a", "type": "text", "validate": {"pattern": "("}},
            {"name": "n", "type": "number", "default": "x"},
        ]))
        .unwrap();
        let mut problems = Vec::new();
        Field::compile_all(&specs, "expect", &mut problems);
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "expect[0].options",
                "expect[1].name",
                "expect[1].validate.pattern",
                "expect[2].default"
            ]
        );
    }

    #[test]
    fn dates() {
        for (text, expected) in [
            ("2019-01-23 13:32:30.163Z", "2019-01-23T13:32:30.163Z"),
            ("2019-01-23T13:32:30Z", "2019-01-23T13:32:30.000Z"),
            ("2019-01-23T15:32:30+02:00", "2019-01-23T13:32:30.000Z"),
            ("2019-01-23", "2019-01-23T00:00:00.000Z"),
            ("2019-01-23 13:32:30", "2019-01-23T13:32:30.000Z"),
        ] {
            let date = parse_date(&json!(text)).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(date.to_rfc3339_opts(SecondsFormat::Millis, true), expected);
        }
        assert!(parse_date(&json!("soon")).is_none());
        assert!(parse_date(&json!(1_548_250_350_163u64)).is_some());
    }
}
