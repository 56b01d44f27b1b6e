//! Functions only app definitions may call (the app dialect), beyond Make's catalogue: what a
//! Make Custom App writes as its own IML functions, kept here once for every app defined as data.
//! Today the spreadsheet shapes Make's Google Sheets modules use:
//!
//! - `columnsToArray(values[, gap])`: Make maps a row as an object keyed by column index
//!   (`{"0": "Ann", "2": "ann@example.com"}`); the API wants the row as an array, a column left
//!   out being an empty cell, or `gap` (`["Ann", "", "ann@example.com"]`). An array is kept.
//! - `rowsToBundles(values, firstRow[, skipFirst])`: the API's rows (arrays of cells) as Make's
//!   row bundles, `{"0": …, "1": …, "__ROW_NUMBER__": n}`, numbered from `firstRow`; with
//!   `skipFirst` true the first row (a header) makes no bundle.
//! - `columnLetter(index)`: a 0-based column index as its A1 letters (`0` → `A`, `26` → `AA`).
//! - `rangeRow(range)`: the first row number of an A1 range (`'Sheet 1'!A5:C5` → `5`).
//!
//! Invariants: every function refuses a result over the value size limit before building it;
//! a column index map with a key that is no whole number is an error naming the key.

use serde_json::{Map, Value};

use super::{FnCtx, FnError, FnResult, Function, arg, arity, ensure_fits, integer_arg, text_arg};
use crate::expr::value::{self, estimated_size};

/// The largest column index a sheet has (Google Sheets: 18,278 columns, `ZZZ`).
const MAX_COLUMN: i64 = 18_277;

pub fn lookup(name: &str) -> Option<Function> {
    Some(match name {
        "columnsToArray" => columns_to_array,
        "rowsToBundles" => rows_to_bundles,
        "columnLetter" => column_letter,
        "rangeRow" => range_row,
        // The Google apps' own, the AI apps', e-mail's (MIME) and Notion's: one file each.
        _ => {
            return super::app_google::lookup(name)
                .or_else(|| super::app_ai::lookup(name))
                .or_else(|| super::mime::lookup(name))
                .or_else(|| super::app_notion::lookup(name));
        }
    })
}

fn columns_to_array(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 2)?;
    // A column left out: an empty cell, or what the second argument says (`null`: the API
    // leaves that cell as it is).
    let gap = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| Value::String(String::new()));
    let columns = match arg(args, 0) {
        Value::Null => return Ok(Value::Array(Vec::new())),
        Value::Array(items) => return Ok(Value::Array(items.clone())),
        Value::Object(columns) => columns,
        other => {
            return Err(FnError::new(format!(
                "expects an object of cells by column index or an array, got {}",
                super::short(other)
            )));
        }
    };
    let mut cells: Vec<(usize, &Value)> = Vec::with_capacity(columns.len());
    for (key, cell) in columns {
        let index = key
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|i| (0..=MAX_COLUMN).contains(i))
            .ok_or_else(|| {
                FnError::new(format!(
                    "the key \"{}\" is not a column index (0 to {MAX_COLUMN})",
                    key.chars().take(40).collect::<String>()
                ))
            })?;
        cells.push((index as usize, cell));
    }
    let width = cells.iter().map(|(i, _)| i + 1).max().unwrap_or(0);
    ensure_fits(estimated_size(arg(args, 0)).saturating_add(width * 8))?;
    let mut row = vec![gap.clone(); width];
    for (index, cell) in cells {
        row[index] = if cell.is_null() {
            gap.clone()
        } else {
            cell.clone()
        };
    }
    Ok(Value::Array(row))
}

fn rows_to_bundles(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 3)?;
    let skip = usize::from(value::truthy(arg(args, 2)));
    let rows = match arg(args, 0) {
        Value::Null => return Ok(Value::Array(Vec::new())),
        Value::Array(rows) => rows,
        other => {
            return Err(FnError::new(format!(
                "expects the rows as an array of arrays, got {}",
                super::short(other)
            )));
        }
    };
    let first = if value::is_empty(arg(args, 1)) {
        1
    } else {
        integer_arg(args, 1, 1, i64::from(u32::MAX))?
    };
    // Each cell gains a key and each row a number: about twice the rows' own size.
    ensure_fits(estimated_size(arg(args, 0)).saturating_mul(2))?;
    let bundles = rows
        .iter()
        .enumerate()
        .skip(skip)
        .map(|(i, row)| {
            let mut bundle = Map::new();
            match row {
                Value::Array(cells) => {
                    for (column, cell) in cells.iter().enumerate() {
                        bundle.insert(column.to_string(), cell.clone());
                    }
                }
                Value::Null => {}
                other => {
                    bundle.insert("0".into(), other.clone());
                }
            }
            bundle.insert("__ROW_NUMBER__".into(), Value::from(first + i as i64));
            Value::Object(bundle)
        })
        .collect();
    Ok(Value::Array(bundles))
}

/// `0` → `A`, `25` → `Z`, `26` → `AA`.
pub fn letters(mut index: u64) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (index % 26) as u8);
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn column_letter(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 1)?;
    let index = integer_arg(args, 0, 0, MAX_COLUMN)?;
    Ok(Value::String(letters(index as u64)))
}

fn range_row(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 1)?;
    let range = text_arg(args, 0);
    // The sheet's name may hold anything (quoted): the cells are after the last `!`.
    let cells = range.rsplit_once('!').map_or(range.as_str(), |(_, c)| c);
    let digits: String = cells
        .chars()
        .skip_while(|c| c.is_ascii_alphabetic() || *c == '$')
        .take_while(char::is_ascii_digit)
        .collect();
    match digits.parse::<u64>() {
        Ok(row) if row > 0 => Ok(Value::from(row)),
        _ => Ok(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(f: Function, args: &[Value]) -> FnResult {
        let ctx = FnCtx {
            now: chrono::Utc::now(),
            timezone: chrono_tz::UTC,
        };
        f(args, &ctx)
    }

    #[test]
    fn only_app_definitions_may_call_them() {
        use crate::expr::{Dialect, Template};
        let err = Template::parse("{{columnsToArray(1.values)}}", Dialect::Scenario)
            .expect_err("a scenario mapping cannot call it");
        assert!(err.to_string().contains("unknown function"), "{err}");
        assert!(Template::parse("{{columnsToArray(parameters.values)}}", Dialect::App).is_ok());
    }

    #[test]
    fn columns_become_a_row_with_empty_cells_between() {
        let row = call(
            columns_to_array,
            &[json!({"0": "Ann", "2": "ann@example.com", "3": 4, "5": null})],
        )
        .unwrap();
        assert_eq!(row, json!(["Ann", "", "ann@example.com", 4, "", ""]));
        assert_eq!(
            call(columns_to_array, &[json!({"1": "b"}), json!(null)]).unwrap(),
            json!([null, "b"])
        );
        assert_eq!(
            call(columns_to_array, &[json!(["a", "b"])]).unwrap(),
            json!(["a", "b"])
        );
        assert_eq!(call(columns_to_array, &[json!(null)]).unwrap(), json!([]));
        let err = call(columns_to_array, &[json!({"A": "x"})]).unwrap_err();
        assert!(err.0.contains("\"A\" is not a column index"), "{err}");
        assert!(call(columns_to_array, &[json!({"99999": "x"})]).is_err());
        assert!(call(columns_to_array, &[json!("text")]).is_err());
    }

    #[test]
    fn rows_become_numbered_bundles() {
        let bundles = call(rows_to_bundles, &[json!([["a", "b"], [], ["c"]]), json!(2)]).unwrap();
        assert_eq!(
            bundles,
            json!([
                {"0": "a", "1": "b", "__ROW_NUMBER__": 2},
                {"__ROW_NUMBER__": 3},
                {"0": "c", "__ROW_NUMBER__": 4}
            ])
        );
        assert_eq!(
            call(rows_to_bundles, &[json!([["x"]])]).unwrap(),
            json!([{"0": "x", "__ROW_NUMBER__": 1}])
        );
        assert_eq!(call(rows_to_bundles, &[json!(null)]).unwrap(), json!([]));
        assert_eq!(
            call(
                rows_to_bundles,
                &[json!([["Name"], ["Ann"]]), json!(1), json!(true)]
            )
            .unwrap(),
            json!([{"0": "Ann", "__ROW_NUMBER__": 2}])
        );
        assert!(call(rows_to_bundles, &[json!([["x"]]), json!(0)]).is_err());
    }

    #[test]
    fn columns_have_letters_and_ranges_rows() {
        for (index, expected) in [
            (0, "A"),
            (25, "Z"),
            (26, "AA"),
            (51, "AZ"),
            (701, "ZZ"),
            (702, "AAA"),
        ] {
            assert_eq!(
                call(column_letter, &[json!(index)]).unwrap(),
                json!(expected)
            );
        }
        assert!(call(column_letter, &[json!(-1)]).is_err());
        for (range, row) in [
            ("Sheet1!A5:C5", json!(5)),
            ("'My sheet!'!$B$12:D", json!(12)),
            ("A1", json!(1)),
            ("Sheet1!A:C", json!(null)),
        ] {
            assert_eq!(call(range_row, &[json!(range)]).unwrap(), row, "{range}");
        }
    }
}
