//! App-dialect functions for the Google apps defined as data (`modules/google-*.json`) that
//! their plain API cannot do and Make's own apps do on Make's side:
//!
//! - `sheetSearch(rows, filter, orderBy, sortOrder, limit)`: Google Sheets' Search Rows. Make
//!   queries the sheet through the Visualization API; the Sheets API v4 has no query, so the
//!   module reads the table's values and this function applies Make's filter to the row
//!   bundles of `rowsToBundles`: `filter` is Make's OR-of-AND array of `{a, o, b}` with `a` a
//!   column letter (`"D"`, or a bundle key such as `__ROW_NUMBER__`) and `o` one of Make's
//!   operators (`expr::condition`); rows without any value are no table rows; `orderBy` (a
//!   column letter or `__ROW_NUMBER__`) and `sortOrder` (`asc`/`desc`) sort them (numbers as
//!   numbers when both cells read as numbers, else text); at most `limit` are kept (none or
//!   `0`: all); each bundle gains `__IMTINDEX__` (1-based) and `__IMTLENGTH__`, as Make's
//!   search modules emit. With `continueIfNone` true and no row found, one bundle
//!   `{__IMTINDEX__: 0, __IMTLENGTH__: 0}` stands for "no match" so the route goes on (Make's
//!   "Continue the execution of the route even if the module finds no matches").
//! - `wrapEach(items, key)`: each item as `{key: item}` (Sheets' `[{title}]` become
//!   `[{properties: {title}}]`).
//!
//! Invariants: a malformed filter is an error naming its place (`[0][1].o`), never an empty
//! result; the result is no larger than the rows given plus the two counters per row.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::{FnCtx, FnError, FnResult, Function, arg, arity, ensure_fits};
use crate::expr::condition::Operator;
use crate::expr::value::{self, estimated_size, is_empty, to_number, to_text};

pub fn lookup(name: &str) -> Option<Function> {
    Some(match name {
        "sheetSearch" => sheet_search,
        "wrapEach" => wrap_each,
        _ => return None,
    })
}

/// One condition of a Search Rows filter, read once.
struct SheetCondition {
    key: String,
    op: Operator,
    b: Value,
}

/// A column reference as a bundle key: letters (`A`, `ab`) become the 0-based index; any
/// other key (`__ROW_NUMBER__`, `3`) is kept.
fn column_key(reference: &str) -> String {
    let reference = reference.trim();
    if !reference.is_empty()
        && reference.len() <= 3
        && reference.bytes().all(|b| b.is_ascii_alphabetic())
    {
        let index = reference.bytes().fold(0u64, |n, b| {
            n * 26 + u64::from(b.to_ascii_uppercase() - b'A' + 1)
        }) - 1;
        return index.to_string();
    }
    reference.to_string()
}

fn read_filter(filter: &Value) -> Result<Vec<Vec<SheetCondition>>, FnError> {
    let groups = match filter {
        Value::Null => return Ok(Vec::new()),
        Value::Array(groups) => groups,
        other => {
            return Err(FnError::new(format!(
                "expects the filter as [[{{a, o, b}}]], got {}",
                super::short(other)
            )));
        }
    };
    groups
        .iter()
        .enumerate()
        .map(|(g, group)| {
            let conditions = match group {
                Value::Array(conditions) => conditions.as_slice(),
                // One condition where a group is expected: Make's UI writes groups, a
                // hand-written filter may not.
                Value::Object(_) => std::slice::from_ref(group),
                other => {
                    return Err(FnError::new(format!(
                        "filter[{g}]: expected an array of conditions, got {}",
                        super::short(other)
                    )));
                }
            };
            conditions
                .iter()
                .enumerate()
                .map(|(c, condition)| {
                    let at = format!("filter[{g}][{c}]");
                    let Value::Object(condition) = condition else {
                        return Err(FnError::new(format!("{at}: expected {{a, o, b}}")));
                    };
                    let key = match condition.get("a") {
                        Some(Value::String(a)) if !a.trim().is_empty() => column_key(a),
                        _ => {
                            return Err(FnError::new(format!(
                                "{at}.a: expected a column letter such as \"A\""
                            )));
                        }
                    };
                    let name = condition.get("o").and_then(Value::as_str).unwrap_or("");
                    let op = Operator::parse(name).ok_or_else(|| {
                        FnError::new(format!(
                            "{at}.o: unknown operator \"{}\"",
                            name.chars().take(40).collect::<String>()
                        ))
                    })?;
                    Ok(SheetCondition {
                        key,
                        op,
                        b: condition.get("b").cloned().unwrap_or(Value::Null),
                    })
                })
                .collect()
        })
        .collect()
}

fn matches(
    row: &Map<String, Value>,
    groups: &[Vec<SheetCondition>],
    tz: chrono_tz::Tz,
) -> Result<bool, FnError> {
    if groups.is_empty() {
        return Ok(true);
    }
    for group in groups {
        let mut all = true;
        for condition in group {
            let a = row.get(&condition.key).unwrap_or(&Value::Null);
            if !condition
                .op
                .holds(a, &condition.b, None, tz)
                .map_err(FnError::new)?
            {
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

/// Cells compare as numbers when both read as numbers, else as text; an empty cell sorts
/// before any value (as the Visualization API orders nulls).
fn compare_cells(a: &Value, b: &Value) -> Ordering {
    match (is_empty(a), is_empty(b)) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        _ => {}
    }
    match (to_number(a), to_number(b)) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => to_text(a).cmp(&to_text(b)),
    }
}

fn sheet_search(args: &[Value], ctx: &FnCtx) -> FnResult {
    arity(args, 1, 6)?;
    let rows: &[Value] = match arg(args, 0) {
        Value::Null => &[],
        Value::Array(rows) => rows,
        other => {
            return Err(FnError::new(format!(
                "expects the row bundles of rowsToBundles, got {}",
                super::short(other)
            )));
        }
    };
    let groups = read_filter(arg(args, 1))?;
    let order_by = value::to_text(arg(args, 2));
    let descending = match value::to_text(arg(args, 3)).trim() {
        "" | "asc" => false,
        "desc" => true,
        other => {
            return Err(FnError::new(format!(
                "the sort order is asc or desc, got \"{}\"",
                other.chars().take(20).collect::<String>()
            )));
        }
    };
    let limit = match arg(args, 4) {
        v if is_empty(v) => usize::MAX,
        v => match to_number(v) {
            Some(n) if n >= 0.0 && n.fract() == 0.0 => {
                if n == 0.0 {
                    usize::MAX
                } else {
                    n as usize
                }
            }
            _ => {
                return Err(FnError::new(format!(
                    "the limit is a whole number, got {}",
                    super::short(v)
                )));
            }
        },
    };
    ensure_fits(estimated_size(arg(args, 0)).saturating_add(rows.len().saturating_mul(48)))?;

    let mut found: Vec<&Map<String, Value>> = Vec::new();
    for row in rows {
        let Value::Object(row) = row else {
            return Err(FnError::new(format!(
                "expects row bundles (objects), got {}",
                super::short(row)
            )));
        };
        // A row without any value is no row of the table.
        let blank = row
            .iter()
            .filter(|(k, _)| !k.starts_with("__"))
            .all(|(_, v)| is_empty(v));
        if !blank && matches(row, &groups, ctx.timezone)? {
            found.push(row);
        }
    }
    if !order_by.trim().is_empty() {
        let key = column_key(&order_by);
        found.sort_by(|a, b| {
            compare_cells(
                a.get(&key).unwrap_or(&Value::Null),
                b.get(&key).unwrap_or(&Value::Null),
            )
        });
    }
    if descending {
        found.reverse();
    }
    found.truncate(limit);
    let total = found.len();
    if total == 0 && value::truthy(arg(args, 5)) {
        let mut none = Map::new();
        none.insert("__IMTINDEX__".into(), Value::from(0));
        none.insert("__IMTLENGTH__".into(), Value::from(0));
        return Ok(Value::Array(vec![Value::Object(none)]));
    }
    Ok(Value::Array(
        found
            .into_iter()
            .enumerate()
            .map(|(i, row)| {
                let mut bundle = row.clone();
                bundle.insert("__IMTINDEX__".into(), Value::from(i + 1));
                bundle.insert("__IMTLENGTH__".into(), Value::from(total));
                Value::Object(bundle)
            })
            .collect(),
    ))
}

fn wrap_each(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 2, 2)?;
    let key = value::to_text(arg(args, 1));
    let items = match arg(args, 0) {
        Value::Null => return Ok(Value::Array(Vec::new())),
        Value::Array(items) => items.as_slice(),
        other => std::slice::from_ref(other),
    };
    ensure_fits(
        estimated_size(arg(args, 0)).saturating_add(items.len().saturating_mul(key.len() + 8)),
    )?;
    Ok(Value::Array(
        items
            .iter()
            .map(|item| {
                let mut wrapped = Map::new();
                wrapped.insert(key.clone(), item.clone());
                Value::Object(wrapped)
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn search(args: &[Value]) -> FnResult {
        let ctx = FnCtx {
            now: chrono::Utc::now(),
            timezone: chrono_tz::UTC,
        };
        sheet_search(args, &ctx)
    }

    fn rows() -> Value {
        json!([
            {"0": "Ann", "1": "new", "2": "12", "__ROW_NUMBER__": 2},
            {"__ROW_NUMBER__": 3},
            {"0": "Bob", "1": "won", "2": "9", "__ROW_NUMBER__": 4},
            {"0": "Cy", "1": "NEW", "2": "100", "__ROW_NUMBER__": 5}
        ])
    }

    fn names(result: &Value) -> Vec<&str> {
        result
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["0"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn filters_by_column_letter_as_or_of_and() {
        let all = search(&[rows()]).unwrap();
        assert_eq!(names(&all), ["Ann", "Bob", "Cy"], "the blank row is no row");
        assert_eq!(all[2]["__IMTINDEX__"], 3);
        assert_eq!(all[2]["__IMTLENGTH__"], 3);

        let filter = json!([[{"a": "B", "o": "text:equal:ci", "b": "new"},
                             {"a": "C", "o": "number:greater", "b": "10"}],
                            [{"a": "A", "o": "text:equal", "b": "Bob"}]]);
        let found = search(&[rows(), filter]).unwrap();
        assert_eq!(names(&found), ["Ann", "Bob", "Cy"]);
        let filter = json!([[{"a": "B", "o": "text:equal", "b": "new"}]]);
        let found = search(&[rows(), filter]).unwrap();
        assert_eq!(names(&found), ["Ann"]);
        assert_eq!(found[0]["__ROW_NUMBER__"], 2);
        assert_eq!(found[0]["__IMTLENGTH__"], 1);
        let filter = json!([[{"a": "D", "o": "notexist"}]]);
        assert_eq!(
            search(&[rows(), filter]).unwrap().as_array().unwrap().len(),
            3
        );
    }

    #[test]
    fn sorts_and_limits() {
        let found = search(&[rows(), Value::Null, json!("C"), json!("desc"), json!(2)]).unwrap();
        assert_eq!(names(&found), ["Cy", "Ann"], "numbers sort as numbers");
        let found = search(&[
            rows(),
            Value::Null,
            json!("__ROW_NUMBER__"),
            json!("desc"),
            json!("1"),
        ])
        .unwrap();
        assert_eq!(names(&found), ["Cy"]);
        assert_eq!(found[0]["__IMTLENGTH__"], 1);
        let found = search(&[rows(), Value::Null, json!(""), json!("asc"), json!(0)]).unwrap();
        assert_eq!(names(&found), ["Ann", "Bob", "Cy"]);
        let none = json!([[{"a": "A", "o": "text:equal", "b": "Zed"}]]);
        let found = search(&[rows(), none.clone()]).unwrap();
        assert_eq!(found, json!([]));
        let found = search(&[
            rows(),
            none,
            Value::Null,
            Value::Null,
            Value::Null,
            json!(true),
        ]);
        assert_eq!(
            found.unwrap(),
            json!([{"__IMTINDEX__": 0, "__IMTLENGTH__": 0}])
        );
    }

    #[test]
    fn wraps_each_item() {
        let ctx = FnCtx {
            now: chrono::Utc::now(),
            timezone: chrono_tz::UTC,
        };
        let wrapped = wrap_each(&[json!([{"title": "A"}]), json!("properties")], &ctx);
        assert_eq!(wrapped.unwrap(), json!([{"properties": {"title": "A"}}]));
    }

    #[test]
    fn a_malformed_filter_says_where() {
        let err = search(&[rows(), json!([[{"a": "A", "o": "text:like", "b": "x"}]])]).unwrap_err();
        assert!(err.0.contains("filter[0][0].o"), "{err}");
        let err = search(&[rows(), json!([[{"o": "exist"}]])]).unwrap_err();
        assert!(err.0.contains("filter[0][0].a"), "{err}");
        let err = search(&[rows(), json!("A = 1")]).unwrap_err();
        assert!(err.0.contains("[[{a, o, b}]]"), "{err}");
        let err = search(&[rows(), Value::Null, Value::Null, json!("up")]).unwrap_err();
        assert!(err.0.contains("asc or desc"), "{err}");
    }
}
