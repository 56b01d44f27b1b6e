//! Array functions (`reference/make.md` §2.2 "Arrays"): `map`, `join`, `first`, `last`,
//! `sort`, `distinct`, `deduplicate`, `flatten`, `keys`, `slice`, `merge`, `add`, `remove`,
//! `reverse`, `shuffle`, `arrayDiff`, `arrayIntersect`, `toArray` and `toCollection`, plus the
//! helpers they share: dot-path keys ([`get_path`]), value equality and [`describe`] for error
//! messages.
//!
//! `contains` and `length` also take arrays, but they are text functions too and are
//! registered (and dispatch on type) with the text family, not here.
//!
//! Conventions:
//! - an argument that must be an array and is `null` (a missing field) counts as an empty
//!   array; anything else that is not an array is an error naming the argument and what it got
//!   (`sort: argument 1 must be an array, got text "abc"`);
//! - keys are raw field names, case-sensitive; a dot path walks collections
//!   (`sender.name`) and 1-based array indexes (`emails.1.address`, `emails[1].address`);
//! - equality is deep and numbers compare by value (`1` equals `1.0`); only `remove` is
//!   looser and also matches a number with its text (`"2"` removes `2`).

mod functions;
mod path;

use std::cmp::Ordering;

use serde_json::Value;

use super::{FnError, Function};
use crate::expr::value::{to_number, to_text};

pub use path::get_path;

/// The array functions by their IML names (case-sensitive, as Make spells them).
pub fn lookup(name: &str) -> Option<Function> {
    use functions as f;
    let function: Function = match name {
        "map" => f::map,
        "join" => f::join,
        "first" => f::first,
        "last" => f::last,
        "sort" => f::sort,
        "distinct" => f::distinct,
        "deduplicate" => f::deduplicate,
        "flatten" => f::flatten,
        "keys" => f::keys,
        "slice" => f::slice,
        "merge" => f::merge,
        "add" => f::add,
        "remove" => f::remove,
        "reverse" => f::reverse,
        "shuffle" => f::shuffle,
        "arrayDiff" => f::array_diff,
        "arrayIntersect" => f::array_intersect,
        "toArray" => f::to_array,
        "toCollection" => f::to_collection,
        _ => return None,
    };
    Some(function)
}

/// How an error message names a value: `null`, `boolean true`, `number 5`, `text "abc"`
/// (long text cut at 40 characters), `an array (3 items)`, `a collection`.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => {
            const LIMIT: usize = 40;
            if s.chars().count() > LIMIT {
                let cut: String = s.chars().take(LIMIT).collect();
                format!("text {cut:?}…")
            } else {
                format!("text {s:?}")
            }
        }
        Value::Array(items) if items.len() == 1 => "an array (1 item)".to_string(),
        Value::Array(items) => format!("an array ({} items)", items.len()),
        Value::Object(_) => "a collection".to_string(),
    }
}

static NULL: Value = Value::Null;

/// Argument `i`, `null` when absent.
fn arg(args: &[Value], i: usize) -> &Value {
    args.get(i).unwrap_or(&NULL)
}

/// The array in argument `i`; `null` reads as an empty array.
fn array_arg<'a>(name: &str, args: &'a [Value], i: usize) -> Result<&'a [Value], FnError> {
    match arg(args, i) {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(&[]),
        other => Err(FnError::new(format!(
            "{name}: argument {} must be an array, got {}",
            i + 1,
            describe(other)
        ))),
    }
}

/// A key argument as text; `None` when it is empty.
fn key_arg(args: &[Value], i: usize) -> Option<String> {
    let key = to_text(arg(args, i));
    (!key.is_empty()).then_some(key)
}

/// Deep equality with numbers compared by value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// [`same`], or a number and a text holding that number.
fn loosely_same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(n), text @ Value::String(_))
        | (text @ Value::String(_), Value::Number(n)) => {
            to_number(text).is_some_and(|t| Some(t) == n.as_f64())
        }
        _ => same(a, b),
    }
}

/// Make's sort order for one type of value: numbers numerically, text by code point
/// (`A B C a b c`) or ignoring case, `false` before `true`. Values of different types order
/// numbers, text, booleans, arrays, collections; arrays and collections keep their order.
fn compare(a: &Value, b: &Value, ignore_case: bool) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) if ignore_case => {
            x.to_lowercase().cmp(&y.to_lowercase())
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn describes_values() {
        assert_eq!(describe(&json!(null)), "null");
        assert_eq!(describe(&json!(true)), "boolean true");
        assert_eq!(describe(&json!(5)), "number 5");
        assert_eq!(describe(&json!(2.5)), "number 2.5");
        assert_eq!(describe(&json!("abc")), "text \"abc\"");
        assert_eq!(describe(&json!("say \"hi\"")), "text \"say \\\"hi\\\"\"");
        assert_eq!(
            describe(&json!("ž".repeat(50))),
            format!("text \"{}\"…", "ž".repeat(40))
        );
        assert_eq!(describe(&json!([1])), "an array (1 item)");
        assert_eq!(describe(&json!([1, 2])), "an array (2 items)");
        assert_eq!(describe(&json!({"a": 1})), "a collection");
    }

    #[test]
    fn equality() {
        assert!(same(&json!(1), &json!(1.0)));
        assert!(same(
            &json!({"a": [1, {"b": 2}]}),
            &json!({"a": [1.0, {"b": 2}]})
        ));
        assert!(same(&json!({"a": 1, "b": 2}), &json!({"b": 2, "a": 1})));
        assert!(!same(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!same(&json!(1), &json!("1")));
        assert!(loosely_same(&json!(1), &json!("1")));
        assert!(loosely_same(&json!(" 2.0 "), &json!(2)));
        assert!(!loosely_same(&json!("a"), &json!(0)));
        assert!(!loosely_same(&json!(true), &json!("true")));
    }

    #[test]
    fn registered_names() {
        for name in [
            "map",
            "join",
            "first",
            "last",
            "sort",
            "distinct",
            "deduplicate",
            "flatten",
            "keys",
            "slice",
            "merge",
            "add",
            "remove",
            "reverse",
            "shuffle",
            "arrayDiff",
            "arrayIntersect",
            "toArray",
            "toCollection",
        ] {
            assert!(lookup(name).is_some(), "{name}");
        }
        for name in [
            "contains",
            "length",
            "arraydiff",
            "arrayintersect",
            "Map",
            "toarray",
        ] {
            assert!(lookup(name).is_none(), "{name}");
        }
    }
}
