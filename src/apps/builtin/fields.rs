//! Reading module configuration liberally: field aliases, Make's many spellings of booleans and
//! numbers, `[{name, value}]` lists, and telling static values from `{{…}}` expressions so that
//! `check()` validates only what is already known at load time.

use serde_json::{Map, Value};

use crate::expr::value::{to_number, to_text};

/// The object form of a mapper or parameters value; anything else reads as empty.
pub(crate) fn object(value: &Value) -> Option<&Map<String, Value>> {
    value.as_object()
}

/// The first of `names` present in `obj` with a non-null value, with the name it was found under.
pub(crate) fn pick<'a>(
    obj: Option<&'a Map<String, Value>>,
    names: &[&'static str],
) -> Option<(&'static str, &'a Value)> {
    let obj = obj?;
    names
        .iter()
        .find_map(|name| obj.get(*name).filter(|v| !v.is_null()).map(|v| (*name, v)))
}

/// True when a value still holds an IML expression (seen by `check()` before evaluation).
pub(crate) fn is_dynamic(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains("{{"),
        Value::Array(items) => items.iter().any(is_dynamic),
        Value::Object(map) => map.values().any(is_dynamic),
        _ => false,
    }
}

/// True for values Make treats as "not filled in": missing, `null`, empty text.
pub(crate) fn is_blank(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        _ => false,
    }
}

/// Text form of a value (Make's template rendering).
pub(crate) fn text(value: &Value) -> String {
    to_text(value)
}

/// Reads a yes/no switch: booleans, `"true"`/`"false"`, `"yes"`/`"no"`, `1`/`0`. Blank means
/// `default`.
pub(crate) fn flag(value: Option<&Value>, default: bool) -> Result<bool, String> {
    if is_blank(value) {
        return Ok(default);
    }
    match value {
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Number(n)) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f == 0.0 {
                Ok(false)
            } else if f == 1.0 {
                Ok(true)
            } else {
                Err("must be true or false".into())
            }
        }
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Ok(true),
            "false" | "no" | "0" | "off" => Ok(false),
            _ => Err("must be true or false".into()),
        },
        _ => Err("must be true or false".into()),
    }
}

/// Reads a number given as a JSON number or numeric text. Blank means `None`.
pub(crate) fn number(value: Option<&Value>) -> Result<Option<f64>, String> {
    if is_blank(value) {
        return Ok(None);
    }
    match value {
        Some(v @ (Value::Number(_) | Value::String(_))) => to_number(v)
            .map(Some)
            .ok_or_else(|| "must be a number".to_string()),
        _ => Err("must be a number".into()),
    }
}

/// Reads Make's `[{name, value}]` lists (also `{key, value}` items, or a plain object). Null
/// items, which Make leaves in arrays it has emptied, are skipped. Each item keeps its object so
/// callers can read extra keys (`fieldType`, `fileName` …).
pub(crate) fn pairs(value: Option<&Value>) -> Result<Vec<Pair>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                match item {
                    Value::Null => {}
                    Value::Object(obj) => {
                        let name = pick(Some(obj), &["name", "key"])
                            .map(|(_, v)| text(v))
                            .unwrap_or_default();
                        let value = pick(Some(obj), &["value"])
                            .map(|(_, v)| v.clone())
                            .unwrap_or(Value::Null);
                        out.push(Pair {
                            name,
                            value,
                            item: obj.clone(),
                        });
                    }
                    _ => {
                        return Err(format!(
                            "item {} must be an object {{name, value}}",
                            index + 1
                        ));
                    }
                }
            }
            Ok(out)
        }
        Some(Value::Object(obj)) => Ok(obj
            .iter()
            .map(|(name, value)| Pair {
                name: name.clone(),
                value: value.clone(),
                item: Map::new(),
            })
            .collect()),
        Some(_) => Err("must be a list of {name, value} items".into()),
    }
}

/// serde's message for a JSON error without its trailing " at line L column C".
pub(crate) fn json_error_reason(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message,
    }
}

/// One `{name, value}` item of a list.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    pub name: String,
    pub value: Value,
    /// The whole item, for extra keys.
    pub item: Map<String, Value>,
}

/// Appends `(field, reason)` to `problems` when `result` is an error and the value is static.
pub(crate) fn report<T>(
    problems: &mut Vec<(String, String)>,
    field: impl Into<String>,
    value: Option<&Value>,
    result: Result<T, String>,
) {
    if value.is_some_and(is_dynamic) {
        return;
    }
    if let Err(reason) = result {
        problems.push((field.into(), reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flags_accept_make_spellings() {
        assert_eq!(flag(Some(&json!(true)), false), Ok(true));
        assert_eq!(flag(Some(&json!("false")), true), Ok(false));
        assert_eq!(flag(Some(&json!("Yes")), false), Ok(true));
        assert_eq!(flag(Some(&json!(0)), true), Ok(false));
        assert_eq!(flag(Some(&json!("")), true), Ok(true));
        assert_eq!(flag(None, false), Ok(false));
        assert!(flag(Some(&json!("maybe")), false).is_err());
        assert!(flag(Some(&json!([1])), false).is_err());
    }

    #[test]
    fn numbers_from_text_or_json() {
        assert_eq!(number(Some(&json!("30"))), Ok(Some(30.0)));
        assert_eq!(number(Some(&json!(2.5))), Ok(Some(2.5)));
        assert_eq!(number(Some(&json!(""))), Ok(None));
        assert!(number(Some(&json!("abc"))).is_err());
        assert!(number(Some(&json!({}))).is_err());
    }

    #[test]
    fn pairs_read_lists_and_objects() {
        let list = pairs(Some(&json!([
            {"name": "a", "value": 1},
            null,
            {"key": "b", "value": "x", "fieldType": "text"}
        ])))
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name, "a");
        assert_eq!(list[0].value, json!(1));
        assert_eq!(list[1].name, "b");
        assert_eq!(list[1].item.get("fieldType"), Some(&json!("text")));
        let obj = pairs(Some(&json!({"k": "v"}))).unwrap();
        assert_eq!((obj[0].name.as_str(), &obj[0].value), ("k", &json!("v")));
        assert!(pairs(Some(&json!([1]))).is_err());
        assert!(pairs(Some(&json!(5))).is_err());
    }

    #[test]
    fn dynamic_values_are_not_reported() {
        let mut problems = Vec::new();
        let dynamic = json!("{{1.x}}");
        report(
            &mut problems,
            "a",
            Some(&dynamic),
            flag(Some(&dynamic), false),
        );
        assert!(problems.is_empty());
        let bad = json!("nope");
        report(&mut problems, "a", Some(&bad), flag(Some(&bad), false));
        assert_eq!(
            problems,
            vec![("a".to_string(), "must be true or false".to_string())]
        );
    }
}
