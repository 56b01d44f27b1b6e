//! General functions: `get`, `pick`, `omit`, `mergeCollections`, `toString`, `toNumber`,
//! `equal`. (`if`, `ifempty` and `switch` are lazy, so the evaluator owns them.)
//! `mergeCollections` and `toString` measure their result first and refuse one over
//! [`value::MAX_VALUE_BYTES`].

use serde_json::{Map, Value};

use super::{FnCtx, FnError, FnResult, Function, arg, arity, ensure_fits, item_at, short};
use crate::expr::value::{self, loose_eq};

pub fn lookup(name: &str) -> Option<Function> {
    Some(match name {
        "get" => get,
        "pick" => pick,
        "omit" => omit,
        "mergeCollections" => merge_collections,
        "toString" => to_string,
        "toNumber" => to_number,
        "equal" => equal,
        _ => return None,
    })
}

/// `get(object or array; path)`: the path is a number (a 1-based array position) or text
/// with dot-separated keys, where array positions are 1-based numbers or `[n]`
/// (`items.2.name`, `items[2].name`).
fn get(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 2, 2)?;
    let target = arg(args, 0);
    let found = match arg(args, 1) {
        Value::Number(n) => n.as_f64().and_then(|f| step_number(target, f)),
        path => {
            let path = value::to_text(path);
            let mut cur = Some(target);
            for key in split_path(&path) {
                cur = cur.and_then(|c| step(c, key));
            }
            cur
        }
    };
    Ok(found.cloned().unwrap_or(Value::Null))
}

fn step_number(target: &Value, f: f64) -> Option<&Value> {
    match target {
        Value::Array(items) if f.fract() == 0.0 && f.abs() < 9.0e15 => item_at(items, f as i64),
        Value::Object(map) => map.get(value::to_text(&value::number(f)).as_str()),
        _ => None,
    }
}

fn step<'v>(cur: &'v Value, key: &str) -> Option<&'v Value> {
    match cur {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|n| item_at(items, n)),
        _ => None,
    }
}

/// `a.b[2].c` → `a`, `b`, `2`, `c`. A part whose brackets do not close is a plain key.
fn split_path(path: &str) -> Vec<&str> {
    let mut keys = Vec::new();
    for part in path.split('.') {
        match part.find('[') {
            Some(open) if part.ends_with(']') => {
                let (base, mut rest) = part.split_at(open);
                let mut indexes = Vec::new();
                let mut ok = true;
                while let Some(inner) = rest.strip_prefix('[') {
                    match inner.find(']') {
                        Some(close) => {
                            indexes.push(&inner[..close]);
                            rest = &inner[close + 1..];
                        }
                        None => {
                            ok = false;
                            break;
                        }
                    }
                }
                if ok && rest.is_empty() {
                    if !base.is_empty() {
                        keys.push(base);
                    }
                    keys.extend(indexes);
                } else {
                    keys.push(part);
                }
            }
            _ => keys.push(part),
        }
    }
    keys
}

/// The key names given after the collection: separate arguments or arrays of names.
fn key_list(args: &[Value]) -> Vec<String> {
    let mut keys = Vec::new();
    for a in args.get(1..).unwrap_or(&[]) {
        match a {
            Value::Array(items) => keys.extend(items.iter().map(value::to_text)),
            other => keys.push(value::to_text(other)),
        }
    }
    keys
}

fn collection<'v>(v: &'v Value, what: &str) -> Result<Option<&'v Map<String, Value>>, FnError> {
    match v {
        Value::Object(map) => Ok(Some(map)),
        Value::Null => Ok(None),
        other => Err(FnError::new(format!(
            "{what} must be a collection, got {}",
            short(other)
        ))),
    }
}

/// `pick(collection; key1; key2 …)`: only the named keys, in the collection's order.
fn pick(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, usize::MAX)?;
    let Some(map) = collection(arg(args, 0), "argument 1")? else {
        return Ok(Value::Null);
    };
    let keys = key_list(args);
    Ok(Value::Object(
        map.iter()
            .filter(|(k, _)| keys.iter().any(|w| w == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    ))
}

/// `omit(collection; key1; key2 …)`: the collection without the named keys.
fn omit(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, usize::MAX)?;
    let Some(map) = collection(arg(args, 0), "argument 1")? else {
        return Ok(Value::Null);
    };
    let keys = key_list(args);
    Ok(Value::Object(
        map.iter()
            .filter(|(k, _)| !keys.iter().any(|w| w == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    ))
}

/// `mergeCollections(c1; c2 …)`: later collections' keys win; empty arguments are skipped.
fn merge_collections(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, usize::MAX)?;
    ensure_fits(
        args.iter()
            .map(value::estimated_size)
            .fold(0usize, usize::saturating_add),
    )?;
    let mut out = Map::new();
    for (i, a) in args.iter().enumerate() {
        if let Some(map) = collection(a, &format!("argument {}", i + 1))? {
            for (k, v) in map {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(Value::Object(out))
}

/// `toString(value)`: the text form; a buffer is read as UTF-8.
fn to_string(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 1)?;
    let v = arg(args, 0);
    // The JSON of a collection can be several times its size (escapes, numbers' digits).
    if !v.is_string() {
        ensure_fits(value::text_len(v))?;
    }
    Ok(Value::String(value::to_text(v)))
}

/// `toNumber(value)`: numbers as is, numeric text parsed, booleans 1/0; empty stays `null`.
fn to_number(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 1)?;
    let v = arg(args, 0);
    if value::is_empty(v) {
        return Ok(Value::Null);
    }
    match value::to_number(v) {
        Some(n) => Ok(value::number(n)),
        None => Err(FnError::new(format!("{} is not a valid number", short(v)))),
    }
}

/// `equal(a; b)`: the `=` operator's equality; collections and arrays compare deeply.
fn equal(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 2, 2)?;
    Ok(Value::Bool(loose_eq(arg(args, 0), arg(args, 1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split() {
        assert_eq!(split_path("a.b[2].c"), ["a", "b", "2", "c"]);
        assert_eq!(split_path("a[1][2]"), ["a", "1", "2"]);
        assert_eq!(split_path("a[1"), ["a[1"]);
        assert_eq!(split_path("a[1]x]"), ["a[1]x]"]);
        assert_eq!(split_path("raw_name"), ["raw_name"]);
    }
}
