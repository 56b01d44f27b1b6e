//! Make's coercions between JSON values: how a value reads as text, as a number, as a
//! boolean, and when it counts as empty. Shared by operators, functions and filters.

use serde_json::{Number, Value};

/// Text form of a value, as Make prints it inside a template: `null` is empty, numbers are
/// written without a trailing `.0`, arrays are joined with `, `, objects are JSON.
pub fn to_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_text(n),
        Value::Array(items) => items.iter().map(to_text).collect::<Vec<_>>().join(", "),
        Value::Object(_) => value.to_string(),
    }
}

fn number_text(n: &Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

/// Numeric reading of a value: numbers as is, numeric text parsed (after trimming), booleans
/// as 1/0. Anything else is not a number.
pub fn to_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                None
            } else {
                t.parse::<f64>().ok().filter(|f| f.is_finite())
            }
        }
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// A JSON number from an `f64`, integral values stored as integers so they print as `2`, not `2.0`.
/// Non-finite results become `null` (JSON has no NaN).
pub fn number(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::from(f as i64)
    } else {
        Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// Make's "empty": missing, `null`, empty text, empty array. (`ifempty`, `exist`.)
pub fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Truthiness used by `if`, `&`, `|`: `false`, `null`, `0`, `""` and the text `"false"` are false.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !(s.is_empty() || s == "false"),
        Value::Array(_) | Value::Object(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_of_values() {
        assert_eq!(to_text(&json!(null)), "");
        assert_eq!(to_text(&json!(2.0)), "2");
        assert_eq!(to_text(&json!(2.5)), "2.5");
        assert_eq!(to_text(&json!([1, "a"])), "1, a");
        assert_eq!(to_text(&json!({"a": 1})), r#"{"a":1}"#);
    }

    #[test]
    fn numbers_and_truth() {
        assert_eq!(to_number(&json!(" 12.5 ")), Some(12.5));
        assert_eq!(to_number(&json!("abc")), None);
        assert_eq!(number(3.0), json!(3));
        assert_eq!(number(f64::NAN), json!(null));
        assert!(!truthy(&json!("false")));
        assert!(truthy(&json!("0")));
        assert!(is_empty(&json!([])));
        assert!(!is_empty(&json!(0)));
    }
}
