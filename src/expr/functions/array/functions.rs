//! The array functions themselves; conventions are in the parent module. `join`, `merge`
//! and `add` measure their result before building it and refuse one over
//! [`MAX_VALUE_BYTES`](crate::expr::value::MAX_VALUE_BYTES); every other function here
//! returns at most (copies of) what its arguments hold.

use rand::seq::SliceRandom;
use serde_json::{Map, Value};

use super::{arg, array_arg, compare, describe, get_path, key_arg, loosely_same, same};
use crate::expr::functions::{FnCtx, FnError, FnResult, ensure_fits};
use crate::expr::value::{self, is_empty, to_number, to_text};

/// `map(array; key; [filterKey]; [filterValues])`: the `key` of each item, skipping items
/// without it; with a filter, only items whose `filterKey` is one of `filterValues` (text
/// separated by commas, or an array).
pub(super) fn map(args: &[Value], _: &FnCtx) -> FnResult {
    const NAME: &str = "map";
    let items = array_arg(NAME, args, 0)?;
    let key = key_arg(args, 1).ok_or_else(|| {
        FnError::new(format!(
            "{NAME}: argument 2 must be the key to read, got {}",
            describe(arg(args, 1))
        ))
    })?;
    let filter = match (key_arg(args, 2), arg(args, 3)) {
        (Some(filter_key), values) if !is_empty(values) => {
            let allowed: Vec<String> = match values {
                Value::Array(values) => values.iter().map(to_text).collect(),
                other => to_text(other)
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .collect(),
            };
            Some((filter_key, allowed))
        }
        _ => None,
    };
    let out = items
        .iter()
        .filter(|item| match &filter {
            None => true,
            Some((filter_key, allowed)) => get_path(item, filter_key)
                .is_some_and(|v| allowed.iter().any(|a| a.trim() == to_text(v).trim())),
        })
        .filter_map(|item| get_path(item, &key).cloned())
        .collect();
    Ok(Value::Array(out))
}

/// `join(array; [separator])`: the items as text (`null` as nothing), separated by
/// `separator` (`,` when omitted, as JavaScript's `join`).
pub(super) fn join(args: &[Value], _: &FnCtx) -> FnResult {
    let items = array_arg("join", args, 0)?;
    let separator = match arg(args, 1) {
        Value::Null => ",".to_string(),
        other => to_text(other),
    };
    // A long separator between many items multiplies: measured before it is built.
    let len = items
        .iter()
        .map(value::text_len)
        .fold(0usize, usize::saturating_add)
        .saturating_add(
            separator
                .len()
                .saturating_mul(items.len().saturating_sub(1)),
        );
    ensure_fits(len)?;
    let mut out = String::with_capacity(len);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&separator);
        }
        value::write_text(&mut out, item);
    }
    Ok(Value::String(out))
}

/// `first(array)`: the first item, `null` for an empty array.
pub(super) fn first(args: &[Value], _: &FnCtx) -> FnResult {
    Ok(array_arg("first", args, 0)?
        .first()
        .cloned()
        .unwrap_or(Value::Null))
}

/// `last(array)`: the last item, `null` for an empty array.
pub(super) fn last(args: &[Value], _: &FnCtx) -> FnResult {
    Ok(array_arg("last", args, 0)?
        .last()
        .cloned()
        .unwrap_or(Value::Null))
}

/// `sort(array; [order]; [key])`. `order` is `asc` (default: 1, 2, 3; A, B, C, a, b, c),
/// `desc`, `asc ci` or `desc ci`; when argument 2 is not an order it is the key
/// (`sort(Contacts[]; name)`). Equal items keep their order; items without the key go last.
pub(super) fn sort(args: &[Value], _: &FnCtx) -> FnResult {
    const NAME: &str = "sort";
    let items = array_arg(NAME, args, 0)?;
    let second = to_text(arg(args, 1));
    let order = match second.trim().to_ascii_lowercase().as_str() {
        "" => Some((false, false)),
        "asc" => Some((false, false)),
        "desc" => Some((true, false)),
        "asc ci" => Some((false, true)),
        "desc ci" => Some((true, true)),
        _ => None,
    };
    let ((descending, ignore_case), key) = match order {
        Some(order) => (order, key_arg(args, 2)),
        None if arg(args, 2).is_null() => ((false, false), Some(second)),
        None => {
            return Err(FnError::new(format!(
                "{NAME}: argument 2 must be asc, desc, asc ci or desc ci, got {}",
                describe(arg(args, 1))
            )));
        }
    };
    let mut keyed: Vec<(&Value, &Value)> = items
        .iter()
        .map(|item| {
            let sort_key = match &key {
                Some(key) => get_path(item, key).unwrap_or(&Value::Null),
                None => item,
            };
            (sort_key, item)
        })
        .collect();
    keyed.sort_by(|(a, _), (b, _)| match (a.is_null(), b.is_null()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        (false, false) => {
            let ordering = compare(a, b, ignore_case);
            if descending {
                ordering.reverse()
            } else {
                ordering
            }
        }
    });
    Ok(Value::Array(
        keyed.into_iter().map(|(_, item)| item.clone()).collect(),
    ))
}

/// Items whose key (or whole value) was not seen before, in order.
fn unique_by(items: &[Value], key: Option<&str>) -> Vec<Value> {
    let mut seen: Vec<&Value> = Vec::new();
    let mut out = Vec::new();
    for item in items {
        let identity = match key {
            Some(key) => get_path(item, key).unwrap_or(&Value::Null),
            None => item,
        };
        if !seen.iter().any(|s| same(s, identity)) {
            seen.push(identity);
            out.push(item.clone());
        }
    }
    out
}

/// `distinct(array; [key])`: drops items equal to an earlier one, compared by `key` when given
/// (`distinct(Contacts[]; name)`).
pub(super) fn distinct(args: &[Value], _: &FnCtx) -> FnResult {
    let items = array_arg("distinct", args, 0)?;
    let key = key_arg(args, 1);
    Ok(Value::Array(unique_by(items, key.as_deref())))
}

/// `deduplicate(array)`: drops items equal to an earlier one.
pub(super) fn deduplicate(args: &[Value], _: &FnCtx) -> FnResult {
    let items = array_arg("deduplicate", args, 0)?;
    Ok(Value::Array(unique_by(items, None)))
}

/// `flatten(array; [depth])`, like `Array.prototype.flat`: nested arrays are spliced in up to
/// `depth` levels (default 1; 0 or less copies the array).
pub(super) fn flatten(args: &[Value], _: &FnCtx) -> FnResult {
    const NAME: &str = "flatten";
    let items = array_arg(NAME, args, 0)?;
    let depth = match arg(args, 1) {
        Value::Null => 1,
        other => {
            let depth = to_number(other).ok_or_else(|| {
                FnError::new(format!(
                    "{NAME}: argument 2 must be a number, got {}",
                    describe(other)
                ))
            })?;
            // Saturating cast; negative depths flatten nothing.
            depth.trunc().max(0.0) as u64
        }
    };
    // An explicit stack, so deep nesting cannot exhaust the call stack.
    let mut out = Vec::new();
    let mut stack = vec![(items.iter(), depth)];
    while let Some((iter, level)) = stack.last_mut() {
        let level = *level;
        match iter.next() {
            None => {
                stack.pop();
            }
            Some(Value::Array(inner)) if level > 0 => stack.push((inner.iter(), level - 1)),
            Some(item) => out.push(item.clone()),
        }
    }
    Ok(Value::Array(out))
}

/// `keys(collection | array)`: a collection's keys, or an array's indexes as text from `"0"`
/// (JavaScript's `Object.keys`).
pub(super) fn keys(args: &[Value], _: &FnCtx) -> FnResult {
    match arg(args, 0) {
        Value::Object(map) => Ok(Value::Array(
            map.keys().map(|k| Value::String(k.clone())).collect(),
        )),
        Value::Array(items) => Ok(Value::Array(
            (0..items.len())
                .map(|i| Value::String(i.to_string()))
                .collect(),
        )),
        Value::Null => Ok(Value::Array(Vec::new())),
        other => Err(FnError::new(format!(
            "keys: argument 1 must be a collection or an array, got {}",
            describe(other)
        ))),
    }
}

/// `slice(array; start; [end])`, 0-based like JavaScript's: negative positions count from the
/// end, `end` is exclusive and defaults to the length.
pub(super) fn slice(args: &[Value], _: &FnCtx) -> FnResult {
    const NAME: &str = "slice";
    let items = array_arg(NAME, args, 0)?;
    let len = items.len();
    let position = |i: usize, default: usize| -> Result<usize, FnError> {
        let value = arg(args, i);
        if value.is_null() {
            return Ok(default);
        }
        let n = to_number(value).ok_or_else(|| {
            FnError::new(format!(
                "{NAME}: argument {} must be a number, got {}",
                i + 1,
                describe(value)
            ))
        })?;
        let n = n.trunc();
        let len = len as f64;
        // Both branches stay within 0..=len, so the casts are exact.
        Ok(if n < 0.0 {
            (len + n).max(0.0) as usize
        } else {
            n.min(len) as usize
        })
    };
    let start = position(1, 0)?;
    let end = position(2, len)?;
    Ok(Value::Array(
        items
            .get(start..end)
            .map(<[Value]>::to_vec)
            .unwrap_or_default(),
    ))
}

/// `merge(array1; array2; …)`: the arrays one after another.
pub(super) fn merge(args: &[Value], _: &FnCtx) -> FnResult {
    let mut size = value::VALUE_BYTES;
    for i in 0..args.len() {
        let items = array_arg("merge", args, i)?;
        size = items
            .iter()
            .map(value::estimated_size)
            .fold(size, usize::saturating_add);
    }
    ensure_fits(size)?;
    let mut out = Vec::new();
    for i in 0..args.len() {
        out.extend_from_slice(array_arg("merge", args, i)?);
    }
    Ok(Value::Array(out))
}

/// `add(array; value1; value2; …)`: the array with the values appended.
pub(super) fn add(args: &[Value], _: &FnCtx) -> FnResult {
    let items = array_arg("add", args, 0)?;
    ensure_fits(
        items
            .iter()
            .chain(args.iter().skip(1))
            .map(value::estimated_size)
            .fold(value::VALUE_BYTES, usize::saturating_add),
    )?;
    let mut out = items.to_vec();
    out.extend(args.iter().skip(1).cloned());
    Ok(Value::Array(out))
}

/// `remove(array; value1; value2; …)`: the array without items equal to any value (a number
/// also matches its text).
pub(super) fn remove(args: &[Value], _: &FnCtx) -> FnResult {
    let items = array_arg("remove", args, 0)?;
    let unwanted = args.get(1..).unwrap_or_default();
    Ok(Value::Array(
        items
            .iter()
            .filter(|item| !unwanted.iter().any(|u| loosely_same(item, u)))
            .cloned()
            .collect(),
    ))
}

/// `reverse(array)`.
pub(super) fn reverse(args: &[Value], _: &FnCtx) -> FnResult {
    Ok(Value::Array(
        array_arg("reverse", args, 0)?
            .iter()
            .rev()
            .cloned()
            .collect(),
    ))
}

/// `shuffle(array)`: the items in random order.
pub(super) fn shuffle(args: &[Value], _: &FnCtx) -> FnResult {
    let mut out = array_arg("shuffle", args, 0)?.to_vec();
    out.shuffle(&mut rand::rng());
    Ok(Value::Array(out))
}

/// Items of argument 1 that are (`keep_common`) or are not in argument 2, in order.
fn compare_arrays(name: &str, args: &[Value], keep_common: bool) -> FnResult {
    let a = array_arg(name, args, 0)?;
    let b = array_arg(name, args, 1)?;
    Ok(Value::Array(
        a.iter()
            .filter(|x| b.iter().any(|y| same(x, y)) == keep_common)
            .cloned()
            .collect(),
    ))
}

/// `arrayDiff(array1; array2)`: items of `array1` not in `array2`.
pub(super) fn array_diff(args: &[Value], _: &FnCtx) -> FnResult {
    compare_arrays("arrayDiff", args, false)
}

/// `arrayIntersect(array1; array2)`: items of `array1` also in `array2`.
pub(super) fn array_intersect(args: &[Value], _: &FnCtx) -> FnResult {
    compare_arrays("arrayIntersect", args, true)
}

/// `toArray(collection)`: `[{key, value}, …]` in the collection's order.
pub(super) fn to_array(args: &[Value], _: &FnCtx) -> FnResult {
    match arg(args, 0) {
        Value::Object(map) => Ok(Value::Array(
            map.iter()
                .map(|(k, v)| {
                    let mut pair = Map::new();
                    pair.insert("key".to_string(), Value::String(k.clone()));
                    pair.insert("value".to_string(), v.clone());
                    Value::Object(pair)
                })
                .collect(),
        )),
        Value::Null => Ok(Value::Array(Vec::new())),
        other => Err(FnError::new(format!(
            "toArray: argument 1 must be a collection, got {}",
            describe(other)
        ))),
    }
}

/// `toCollection(array; keyField; valueField)`: one entry per item, named by the item's
/// `keyField` (as text) and holding its `valueField` (`null` when missing). Items without a
/// key are skipped; a repeated key keeps its first position and takes the later value.
pub(super) fn to_collection(args: &[Value], _: &FnCtx) -> FnResult {
    const NAME: &str = "toCollection";
    let items = array_arg(NAME, args, 0)?;
    let field = |i: usize, what: &str| {
        key_arg(args, i).ok_or_else(|| {
            FnError::new(format!(
                "{NAME}: argument {} must be the name of the {what} field, got {}",
                i + 1,
                describe(arg(args, i))
            ))
        })
    };
    let key_field = field(1, "key")?;
    let value_field = field(2, "value")?;
    let mut out = Map::new();
    for item in items {
        let Some(key) = get_path(item, &key_field).filter(|k| !k.is_null()) else {
            continue;
        };
        let value = get_path(item, &value_field).cloned().unwrap_or(Value::Null);
        out.insert(to_text(key), value);
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::super::lookup;
    use crate::expr::functions::{FnCtx, FnResult};
    use chrono::DateTime;
    use serde_json::{Value, json};

    fn call(name: &str, args: &[Value]) -> FnResult {
        let f = lookup(name).expect("registered");
        f(
            args,
            &FnCtx {
                now: DateTime::default(),
                timezone: chrono_tz::UTC,
            },
        )
    }

    fn ok(name: &str, args: &[Value]) -> Value {
        call(name, args).unwrap_or_else(|e| panic!("{name}({args:?}) failed: {e}"))
    }

    fn err(name: &str, args: &[Value], needle: &str) {
        match call(name, args) {
            Ok(v) => panic!("{name}({args:?}) returned {v}, expected an error"),
            Err(e) => assert!(e.0.contains(needle), "{name}: {:?} lacks {needle:?}", e.0),
        }
    }

    fn contacts() -> Value {
        json!([
            {"name": "bob", "email": "bob@x.com", "label": "work", "sender": {"name": "Zed"}},
            {"name": "Alice", "email": "alice@x.com", "label": "home", "sender": {"name": "amy"}},
            {"name": "carol", "email": "carol@x.com", "label": "other", "sender": {"name": "Bea"}},
            {"name": "Alice", "email": "alice2@x.com", "label": "work", "sender": {"name": "Cy"}},
            {"name": "Bob", "email": "bob2@x.com", "sender": {"name": "al"}}
        ])
    }

    #[test]
    fn array_diff_and_intersect_documented() {
        assert_eq!(
            ok("arrayDiff", &[json!([1, 2, 3, 4]), json!([3, 4, 5, 6])]),
            json!([1, 2])
        );
        assert_eq!(
            ok("arrayDiff", &[json!(["a", "b", "c"]), json!(["b", "d"])]),
            json!(["a", "c"])
        );
        assert_eq!(
            ok(
                "arrayIntersect",
                &[json!([1, 2, 3, 4]), json!([3, 4, 5, 6])]
            ),
            json!([3, 4])
        );
        assert_eq!(
            ok(
                "arrayIntersect",
                &[json!(["a", "b", "c"]), json!(["b", "c", "d"])]
            ),
            json!(["b", "c"])
        );
    }

    #[test]
    fn array_diff_edges() {
        assert_eq!(
            ok("arrayDiff", &[json!([1, 1, 2, 3]), json!([3])]),
            json!([1, 1, 2])
        );
        assert_eq!(
            ok("arrayDiff", &[json!([1, "1"]), json!([1.0])]),
            json!(["1"])
        );
        assert_eq!(
            ok(
                "arrayIntersect",
                &[json!([{"a": 1}, {"a": 2}]), json!([{"a": 2}])]
            ),
            json!([{"a": 2}])
        );
        assert_eq!(
            ok("arrayDiff", &[json!([1, 2]), json!(null)]),
            json!([1, 2])
        );
        assert_eq!(ok("arrayIntersect", &[json!(null), json!([1])]), json!([]));
        err(
            "arrayDiff",
            &[json!([1]), json!("1,2")],
            "arrayDiff: argument 2 must be an array, got text \"1,2\"",
        );
        err(
            "arrayIntersect",
            &[json!(5), json!([1])],
            "argument 1 must be an array, got number 5",
        );
    }

    #[test]
    fn map_documented() {
        assert_eq!(
            ok("map", &[contacts(), json!("email")]),
            json!([
                "bob@x.com",
                "alice@x.com",
                "carol@x.com",
                "alice2@x.com",
                "bob2@x.com"
            ])
        );
        assert_eq!(
            ok(
                "map",
                &[
                    contacts(),
                    json!("email"),
                    json!("label"),
                    json!("work,home")
                ]
            ),
            json!(["bob@x.com", "alice@x.com", "alice2@x.com"])
        );
    }

    #[test]
    fn map_edges() {
        assert_eq!(
            ok(
                "map",
                &[
                    contacts(),
                    json!("email"),
                    json!("label"),
                    json!("work, home")
                ]
            ),
            json!(["bob@x.com", "alice@x.com", "alice2@x.com"])
        );
        assert_eq!(
            ok(
                "map",
                &[contacts(), json!("email"), json!("label"), json!(["other"])]
            ),
            json!(["carol@x.com"])
        );
        // Keys are case-sensitive; items without the key are skipped; paths walk collections.
        assert_eq!(ok("map", &[contacts(), json!("Email")]), json!([]));
        assert_eq!(
            ok("map", &[contacts(), json!("label")]),
            json!(["work", "home", "other", "work"])
        );
        assert_eq!(
            ok("map", &[contacts(), json!("sender.name")]),
            json!(["Zed", "amy", "Bea", "Cy", "al"])
        );
        // A filter key without values does not filter.
        assert_eq!(
            ok(
                "map",
                &[json!([{"a": 1}]), json!("a"), json!("b"), json!("")]
            ),
            json!([1])
        );
        assert_eq!(
            ok(
                "map",
                &[json!([{"a": 1}]), json!("a"), json!("b"), json!([])]
            ),
            json!([1])
        );
        assert_eq!(
            ok("map", &[json!([{"a": 1}]), json!("a"), json!("b")]),
            json!([1])
        );
        assert_eq!(
            ok("map", &[json!([{"a": null}, {"b": 1}, 5]), json!("a")]),
            json!([null])
        );
        assert_eq!(
            ok(
                "map",
                &[
                    json!([{"n": 1, "k": 2}]),
                    json!("n"),
                    json!("k"),
                    json!("2")
                ]
            ),
            json!([1])
        );
        assert_eq!(ok("map", &[json!(null), json!("a")]), json!([]));
        err(
            "map",
            &[contacts()],
            "map: argument 2 must be the key to read, got null",
        );
        err(
            "map",
            &[json!({"a": 1}), json!("a")],
            "map: argument 1 must be an array, got a collection",
        );
    }

    #[test]
    fn join_first_last() {
        assert_eq!(
            ok("join", &[json!(["a", "b", "c"]), json!(", ")]),
            json!("a, b, c")
        );
        assert_eq!(
            ok("join", &[json!([1, 2.5, true, null, "x"]), json!("-")]),
            json!("1-2.5-true--x")
        );
        assert_eq!(ok("join", &[json!(["a", "b"])]), json!("a,b"));
        assert_eq!(ok("join", &[json!(["a", "b"]), json!("")]), json!("ab"));
        assert_eq!(ok("join", &[json!([]), json!(",")]), json!(""));
        assert_eq!(
            ok("join", &[json!([{"a": 1}, [1, 2]]), json!("|")]),
            json!("{\"a\":1}|1, 2")
        );
        err(
            "join",
            &[json!("abc"), json!(",")],
            "join: argument 1 must be an array, got text \"abc\"",
        );
        assert_eq!(ok("first", &[json!([1, 2, 3])]), json!(1));
        assert_eq!(ok("last", &[json!([1, 2, 3])]), json!(3));
        assert_eq!(ok("first", &[json!([])]), json!(null));
        assert_eq!(ok("last", &[json!(null)]), json!(null));
        err(
            "first",
            &[json!("abc")],
            "first: argument 1 must be an array, got text \"abc\"",
        );
        err(
            "last",
            &[json!({"a": 1})],
            "last: argument 1 must be an array, got a collection",
        );
    }

    #[test]
    fn sort_documented_orders() {
        let text = json!(["b", "a", "C", "A", "c", "B"]);
        assert_eq!(
            ok("sort", std::slice::from_ref(&text)),
            json!(["A", "B", "C", "a", "b", "c"])
        );
        assert_eq!(
            ok("sort", &[text.clone(), json!("asc")]),
            json!(["A", "B", "C", "a", "b", "c"])
        );
        assert_eq!(
            ok("sort", &[text.clone(), json!("desc")]),
            json!(["c", "b", "a", "C", "B", "A"])
        );
        assert_eq!(
            ok("sort", &[text.clone(), json!("asc ci")]),
            json!(["a", "A", "b", "B", "C", "c"])
        );
        assert_eq!(
            ok("sort", &[text, json!("desc ci")]),
            json!(["C", "c", "b", "B", "a", "A"])
        );
        assert_eq!(ok("sort", &[json!([3, 1, 10, 2])]), json!([1, 2, 3, 10]));
        assert_eq!(
            ok("sort", &[json!([3, 1, 10, 2]), json!("desc")]),
            json!([10, 3, 2, 1])
        );
    }

    #[test]
    fn sort_by_key_documented() {
        let names = |v: Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .map(|c| c["name"].as_str().unwrap_or("?").to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(
            names(ok("sort", &[contacts(), json!("name")])),
            ["Alice", "Alice", "Bob", "bob", "carol"]
        );
        assert_eq!(
            names(ok("sort", &[contacts(), json!("desc"), json!("name")])),
            ["carol", "bob", "Bob", "Alice", "Alice"]
        );
        assert_eq!(
            names(ok("sort", &[contacts(), json!("asc ci"), json!("name")])),
            ["Alice", "Alice", "bob", "Bob", "carol"]
        );
        let senders = ok("sort", &[contacts(), json!("sender.name")]);
        let order: Vec<&str> = senders
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["sender"]["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(order, ["Bea", "Cy", "Zed", "al", "amy"]);
    }

    #[test]
    fn sort_edges() {
        // Numbers before text before booleans; missing keys last in either order.
        assert_eq!(
            ok("sort", &[json!([true, "b", 2, null, "a", 1, false])]),
            json!([1, 2, "a", "b", false, true, null])
        );
        assert_eq!(
            ok(
                "sort",
                &[
                    json!([{"n": 2}, {"x": 1}, {"n": 1}]),
                    json!("desc"),
                    json!("n")
                ]
            ),
            json!([{"n": 2}, {"n": 1}, {"x": 1}])
        );
        assert_eq!(ok("sort", &[json!([2, 1]), json!(" DESC ")]), json!([2, 1]));
        assert_eq!(ok("sort", &[json!(null)]), json!([]));
        assert_eq!(
            ok("sort", &[json!([1.5, -1, 1e300, -0.0, 0])]),
            json!([-1, -0.0, 0, 1.5, 1e300])
        );
        err(
            "sort",
            &[json!("abc")],
            "sort: argument 1 must be an array, got text \"abc\"",
        );
        err(
            "sort",
            &[json!([1]), json!("upwards"), json!("name")],
            "sort: argument 2 must be asc, desc, asc ci or desc ci",
        );
    }

    #[test]
    fn distinct_and_deduplicate() {
        let names: Vec<Value> = ok("distinct", &[contacts(), json!("name")])
            .as_array()
            .map(|a| a.iter().map(|c| c["email"].clone()).collect())
            .unwrap_or_default();
        assert_eq!(
            names,
            [
                json!("bob@x.com"),
                json!("alice@x.com"),
                json!("carol@x.com"),
                json!("bob2@x.com")
            ]
        );
        assert_eq!(
            ok("distinct", &[json!([1, 2, 1, "1", 2.0, 3])]),
            json!([1, 2, "1", 3])
        );
        assert_eq!(
            ok(
                "distinct",
                &[json!([{"a": 1}, {"b": 2}, {"a": 1}]), json!("a")]
            ),
            json!([{"a": 1}, {"b": 2}])
        );
        assert_eq!(
            ok(
                "distinct",
                &[json!([{"s": {"n": 1}}, {"s": {"n": 1}}]), json!("s.n")]
            ),
            json!([{"s": {"n": 1}}])
        );
        assert_eq!(
            ok("deduplicate", &[json!(["a", "b", "a", "c", "b"])]),
            json!(["a", "b", "c"])
        );
        assert_eq!(
            ok("deduplicate", &[json!([1, 1.0, [1], [1]])]),
            json!([1, [1]])
        );
        err(
            "deduplicate",
            &[json!(true)],
            "deduplicate: argument 1 must be an array, got boolean true",
        );
    }

    #[test]
    fn flatten_like_array_flat() {
        let nested = json!([1, [2, [3, [4, [5]]]], [], "x"]);
        assert_eq!(
            ok("flatten", std::slice::from_ref(&nested)),
            json!([1, 2, [3, [4, [5]]], "x"])
        );
        assert_eq!(
            ok("flatten", &[nested.clone(), json!(2)]),
            json!([1, 2, 3, [4, [5]], "x"])
        );
        assert_eq!(
            ok("flatten", &[nested.clone(), json!("10")]),
            json!([1, 2, 3, 4, 5, "x"])
        );
        assert_eq!(
            ok("flatten", &[nested.clone(), json!(1e300)]),
            json!([1, 2, 3, 4, 5, "x"])
        );
        assert_eq!(ok("flatten", &[nested.clone(), json!(0)]), nested);
        assert_eq!(ok("flatten", &[nested.clone(), json!(-3)]), nested);
        err(
            "flatten",
            &[nested, json!("deep")],
            "flatten: argument 2 must be a number",
        );
        // Deep nesting needs no recursion.
        let mut deep = json!(1);
        for _ in 0..100_000 {
            deep = Value::Array(vec![deep]);
        }
        let mut args = vec![deep, json!(1e9)];
        assert_eq!(ok("flatten", &args), json!([1]));
        // Dropping a 100 000-level value recursively would overflow the test thread's stack.
        let mut deep = args.swap_remove(0);
        while let Value::Array(mut items) = deep {
            deep = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn keys_of_collections_and_arrays() {
        assert_eq!(ok("keys", &[json!({"b": 1, "a": 2})]), json!(["b", "a"]));
        assert_eq!(ok("keys", &[json!(["x", "y"])]), json!(["0", "1"]));
        assert_eq!(ok("keys", &[json!({})]), json!([]));
        assert_eq!(ok("keys", &[json!(null)]), json!([]));
        err(
            "keys",
            &[json!("abc")],
            "keys: argument 1 must be a collection or an array, got text \"abc\"",
        );
    }

    #[test]
    fn slice_is_zero_based_with_negatives() {
        let a = json!(["a", "b", "c", "d", "e"]);
        let cases = [
            (json!(1), json!(null), json!(["b", "c", "d", "e"])),
            (json!(1), json!(3), json!(["b", "c"])),
            (json!(0), json!(2), json!(["a", "b"])),
            (json!(-2), json!(null), json!(["d", "e"])),
            (json!(1), json!(-1), json!(["b", "c", "d"])),
            (json!(-100), json!(2), json!(["a", "b"])),
            (json!(3), json!(1), json!([])),
            (json!(10), json!(null), json!([])),
            (json!("2"), json!(1e300), json!(["c", "d", "e"])),
            (
                json!(-1e300),
                json!(i64::MAX),
                json!(["a", "b", "c", "d", "e"]),
            ),
            (json!(1.9), json!(3.9), json!(["b", "c"])),
        ];
        for (start, end, expected) in cases {
            assert_eq!(
                ok("slice", &[a.clone(), start.clone(), end.clone()]),
                expected,
                "slice({start}; {end})"
            );
        }
        assert_eq!(ok("slice", std::slice::from_ref(&a)), a);
        err(
            "slice",
            &[a.clone(), json!("x")],
            "slice: argument 2 must be a number, got text \"x\"",
        );
        err(
            "slice",
            &[a, json!(0), json!([1, 2])],
            "slice: argument 3 must be a number",
        );
    }

    #[test]
    fn merge_add_remove() {
        assert_eq!(
            ok(
                "merge",
                &[json!([1, 2]), json!([3]), json!([]), json!(["a"])]
            ),
            json!([1, 2, 3, "a"])
        );
        assert_eq!(ok("merge", &[json!([1]), json!(null)]), json!([1]));
        assert_eq!(ok("merge", &[]), json!([]));
        err(
            "merge",
            &[json!([1]), json!(2)],
            "merge: argument 2 must be an array, got number 2",
        );
        assert_eq!(
            ok(
                "add",
                &[json!([1, 2]), json!(3), json!("x"), json!({"a": 1})]
            ),
            json!([1, 2, 3, "x", {"a": 1}])
        );
        assert_eq!(ok("add", &[json!(null), json!(1)]), json!([1]));
        assert_eq!(ok("add", &[json!([1])]), json!([1]));
        err(
            "add",
            &[json!("a"), json!(1)],
            "add: argument 1 must be an array",
        );
        assert_eq!(
            ok(
                "remove",
                &[json!([1, 2, 3, 2, "a", "b"]), json!(2), json!("a")]
            ),
            json!([1, 3, "b"])
        );
        assert_eq!(ok("remove", &[json!([1, 2, 3]), json!("2")]), json!([1, 3]));
        assert_eq!(ok("remove", &[json!(["1", "2"]), json!(1)]), json!(["2"]));
        assert_eq!(ok("remove", &[json!([1, 2])]), json!([1, 2]));
        err(
            "remove",
            &[json!(12), json!(1)],
            "remove: argument 1 must be an array, got number 12",
        );
    }

    #[test]
    fn reverse_and_shuffle() {
        assert_eq!(ok("reverse", &[json!([1, "b", [3]])]), json!([[3], "b", 1]));
        assert_eq!(ok("reverse", &[json!([])]), json!([]));
        err(
            "reverse",
            &[json!("abc")],
            "reverse: argument 1 must be an array",
        );
        let items: Vec<Value> = (0..50).map(Value::from).collect();
        let shuffled = ok("shuffle", &[Value::Array(items.clone())]);
        let mut sorted: Vec<i64> = shuffled
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<i64>>());
        assert_eq!(ok("shuffle", &[json!([7])]), json!([7]));
        err(
            "shuffle",
            &[json!({"a": 1})],
            "shuffle: argument 1 must be an array",
        );
    }

    #[test]
    fn to_array_and_back() {
        let collection = json!({"name": "Make", "age": 10, "tags": ["a"]});
        let pairs = ok("toArray", std::slice::from_ref(&collection));
        assert_eq!(
            pairs,
            json!([
                {"key": "name", "value": "Make"},
                {"key": "age", "value": 10},
                {"key": "tags", "value": ["a"]}
            ])
        );
        assert_eq!(
            ok("toCollection", &[pairs, json!("key"), json!("value")]),
            collection
        );
        assert_eq!(ok("toArray", &[json!({})]), json!([]));
        assert_eq!(ok("toArray", &[json!(null)]), json!([]));
        err(
            "toArray",
            &[json!([1])],
            "toArray: argument 1 must be a collection, got an array (1 item)",
        );
    }

    #[test]
    fn to_collection_edges() {
        let items = json!([
            {"k": "a", "v": 1},
            {"k": 2, "v": {"deep": true}},
            {"v": "no key"},
            {"k": null, "v": "null key"},
            {"k": "a", "v": 3},
            {"k": "b"},
            "not an object",
            {"k": "c", "v": {"x": 9}}
        ]);
        assert_eq!(
            ok("toCollection", &[items.clone(), json!("k"), json!("v")]),
            json!({"a": 3, "2": {"deep": true}, "b": null, "c": {"x": 9}})
        );
        assert_eq!(
            ok(
                "toCollection",
                &[json!([{"k": "c", "v": {"x": 9}}]), json!("k"), json!("v.x")]
            ),
            json!({"c": 9})
        );
        err(
            "toCollection",
            &[items.clone(), json!("k")],
            "toCollection: argument 3 must be the name of the value field, got null",
        );
        err(
            "toCollection",
            &[items, json!(""), json!("v")],
            "argument 2 must be the name of the key field",
        );
        err(
            "toCollection",
            &[json!("x"), json!("k"), json!("v")],
            "toCollection: argument 1 must be an array",
        );
    }
}
