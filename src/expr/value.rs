//! Make's coercions between JSON values: how a value reads as text, as a number, as a
//! boolean, when it counts as empty, and how two values compare. Shared by operators,
//! functions and filters. Also owns the two special value shapes IML produces: binaries (a
//! handle to bytes stored once, [`crate::expr::binary`]; Make's own JSON form of a buffer,
//! `{"type":"Buffer","data":[…]}`, is read too) and the `erase` marker,
//! and the measure of a value's size: [`estimated_size`] (memory) and [`text_len`] (its text),
//! with [`MAX_VALUE_BYTES`], the most one value built by a function, an operator or a
//! template may take. Both measures walk nesting with an explicit stack.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

use crate::expr::binary;

/// Key of the object the `erase` keyword evaluates to (see [`erase`]).
pub const ERASE_KEY: &str = "__IMTERASE__";

/// The most one value built by a function, an operator or a template may take: 64 MiB (text
/// by its UTF-8 length, anything else by [`estimated_size`]). Checked before the value is
/// built, so an expression that multiplies its input (`replace(A; ""; A)` nested, a text
/// doubled at every cycle) fails at once with a `DataError` naming the function instead of
/// exhausting memory. Values read from bundles are not limited by it, only values built.
pub const MAX_VALUE_BYTES: usize = 64 * 1024 * 1024;

/// What [`estimated_size`] counts for one value: the size of a `serde_json::Value` (72 bytes
/// with the ordered maps this crate uses).
pub const VALUE_BYTES: usize = std::mem::size_of::<Value>();

/// What [`estimated_size`] counts for one entry of a collection besides its key's bytes and
/// its value: the key's `String` (24 bytes) and the ordered map's hash and index (16).
const ENTRY_BYTES: usize = 40;

/// The memory a value takes, estimated cheaply and without recursion: [`VALUE_BYTES`] per
/// value (nested ones included), plus the bytes of every text, plus per collection entry its
/// key's bytes and 40 bytes of bookkeeping. Allocator overhead is not counted.
pub fn estimated_size(value: &Value) -> usize {
    enum Children<'a> {
        Items(std::slice::Iter<'a, Value>),
        Entries(serde_json::map::Iter<'a>),
    }
    let mut total = 0usize;
    let mut stack: Vec<Children<'_>> = Vec::new();
    let mut next = Some(value);
    loop {
        if let Some(v) = next.take() {
            total = total.saturating_add(VALUE_BYTES);
            match v {
                Value::String(s) => total = total.saturating_add(s.len()),
                Value::Array(items) => stack.push(Children::Items(items.iter())),
                Value::Object(map) => stack.push(Children::Entries(map.iter())),
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
        let Some(children) = stack.last_mut() else {
            return total;
        };
        match children {
            Children::Items(items) => next = items.next(),
            Children::Entries(entries) => {
                next = entries.next().map(|(key, v)| {
                    total = total.saturating_add(key.len() + ENTRY_BYTES);
                    v
                });
            }
        }
        if next.is_none() {
            stack.pop();
        }
    }
}

/// The length in bytes of [`to_text`]'s result, without building it: nested arrays are
/// walked with an explicit stack, a collection is measured by writing its JSON into a counter.
pub fn text_len(value: &Value) -> usize {
    let mut total = 0usize;
    let mut stack = vec![std::slice::from_ref(value).iter()];
    while let Some(items) = stack.last_mut() {
        match items.next() {
            None => {
                stack.pop();
            }
            Some(Value::Array(inner)) => {
                // `, ` between items.
                total = total.saturating_add(2 * inner.len().saturating_sub(1));
                stack.push(inner.iter());
            }
            Some(other) => total = total.saturating_add(scalar_text_len(other)),
        }
    }
    total
}

/// The largest file [`text_len`] reads to measure exactly; a larger one counts its size.
const EXACT_TEXT_LEN_BYTES: u64 = 1024 * 1024;

/// [`text_len`] of a value that is not an array.
fn scalar_text_len(value: &Value) -> usize {
    /// Counts what is written to it.
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(bytes.len());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    match value {
        Value::Null => 0,
        Value::String(s) => s.len(),
        Value::Bool(b) => {
            if *b {
                4
            } else {
                5
            }
        }
        Value::Number(n) => {
            let mut s = String::new();
            write_number(&mut s, n);
            s.len()
        }
        Value::Array(_) => text_len(value),
        Value::Object(_) => {
            if is_erase(value) {
                0
            } else if let Some(stored) = binary::Binary::from_value(value)
                && stored.size > EXACT_TEXT_LEN_BYTES
            {
                // Not read to be measured: its size, exact for UTF-8 text (each invalid
                // byte would read as a 3-byte replacement character).
                usize::try_from(stored.size).unwrap_or(usize::MAX)
            } else if let Some(bytes) = as_buffer(value) {
                String::from_utf8_lossy(&bytes).len()
            } else {
                let mut counter = Counter(0);
                let _ = serde_json::to_writer(&mut counter, value);
                counter.0
            }
        }
    }
}

/// Text form of a value, as Make prints it inside a template: `null` is empty, numbers are
/// written without a trailing `.0`, arrays are joined with `, `, objects are JSON, a buffer
/// is its bytes read as UTF-8, the `erase` marker is empty.
pub fn to_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        _ => {
            let mut out = String::new();
            write_text(&mut out, value);
            out
        }
    }
}

/// Appends the text form of `value` (see [`to_text`]) to `out` without an intermediate string.
pub fn write_text(out: &mut String, value: &Value) {
    match value {
        Value::Null => {}
        Value::String(s) => out.push_str(s),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_text(out, item);
            }
        }
        Value::Object(_) => {
            if is_erase(value) {
            } else if let Some(bytes) = as_buffer(value) {
                out.push_str(&String::from_utf8_lossy(&bytes));
            } else {
                let _ = write!(out, "{value}");
            }
        }
    }
}

fn write_number(out: &mut String, n: &Number) {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => {
            let _ = write!(out, "{}", f as i64);
        }
        _ => {
            let _ = write!(out, "{n}");
        }
    }
}

/// The one value an array stands for where one value is expected (Make's coercion, as
/// JavaScript's: `[x]` reads as `x`, nested one-item arrays too, `[]` as nothing (`null`)).
/// Anything else, an array of several items included, is returned as it is: text joins such
/// an array with `, ` ([`to_text`]), a number or a date refuses it.
pub fn single(value: &Value) -> &Value {
    let mut value = value;
    // Bounded by the value's own depth, which serde_json caps when parsing.
    while let Value::Array(items) = value {
        match items.as_slice() {
            [] => return &Value::Null,
            [one] => value = one,
            _ => break,
        }
    }
    value
}

/// Numeric reading of a value: numbers as is, numeric text parsed (after trimming), booleans
/// as 1/0, a one-item array as its item ([`single`]). Anything else is not a number.
pub fn to_number(value: &Value) -> Option<f64> {
    let value = single(value);
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_number_text(s),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// Parses decimal text (`12`, ` -3.5 `, `1e3`); `inf`, `NaN` and empty text are not numbers.
pub fn parse_number_text(s: &str) -> Option<f64> {
    let t = s.trim();
    let first = t.chars().next()?;
    // Rust also accepts "inf", "infinity" and "nan"; JSON and Make do not.
    if !(first.is_ascii_digit() || matches!(first, '-' | '+' | '.')) {
        return None;
    }
    if t.chars()
        .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
    {
        return None;
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite())
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

/// Make's "empty": missing, `null`, empty text, empty array, the `erase` marker. (`ifempty`, `exist`.)
pub fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(_) => is_erase(value),
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

/// What the `erase` keyword evaluates to: a marker object an update module reads as "clear
/// this field" (an empty value or `null` means "leave it unchanged"). Prints as empty text.
pub fn erase() -> Value {
    let mut map = Map::new();
    map.insert(ERASE_KEY.to_string(), Value::Bool(true));
    Value::Object(map)
}

/// Whether `value` is the marker produced by the `erase` keyword.
pub fn is_erase(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.len() == 1 && map.get(ERASE_KEY) == Some(&Value::Bool(true)),
        _ => false,
    }
}

/// A binary value of `bytes`: stored once ([`crate::expr::binary::store`]), a handle in the
/// bundle. Should the binaries directory refuse the write, the bytes are kept in Make's own
/// JSON form of a buffer instead, so nothing is lost.
pub fn buffer(bytes: &[u8]) -> Value {
    match binary::store(bytes, binary::DEFAULT_MIME, "") {
        Ok(stored) => stored.to_value(),
        Err(error) => {
            tracing::warn!(%error, "the binaries directory refused a write; the bytes stay in the bundle");
            node_buffer(bytes)
        }
    }
}

/// Make's (Node's) JSON form of a buffer: `{"type":"Buffer","data":[…]}`.
pub fn node_buffer(bytes: &[u8]) -> Value {
    let mut map = Map::new();
    map.insert("type".to_string(), Value::from("Buffer"));
    map.insert(
        "data".to_string(),
        Value::Array(bytes.iter().map(|b| Value::from(*b)).collect()),
    );
    Value::Object(map)
}

/// The bytes of a binary value: a handle's stored bytes (see [`buffer`]) or Make's JSON form
/// of a buffer; `None` for anything else, and for a handle whose bytes are no longer stored.
pub fn as_buffer(value: &Value) -> Option<Vec<u8>> {
    if let Some(stored) = binary::Binary::from_value(value) {
        return stored.read().ok();
    }
    let map = value.as_object()?;
    if map.len() != 2 || map.get("type")?.as_str()? != "Buffer" {
        return None;
    }
    map.get("data")?
        .as_array()?
        .iter()
        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
        .collect()
}

/// The bytes of a binary value, as [`as_buffer`]: the one function modules read a file
/// (an attachment, an upload) through.
pub fn bytes_of(value: &Value) -> Option<Vec<u8>> {
    as_buffer(value)
}

/// The size in bytes of a binary value without reading it; `None` for anything else.
pub fn binary_len(value: &Value) -> Option<u64> {
    if let Some(stored) = binary::Binary::from_value(value) {
        return Some(stored.size);
    }
    as_buffer(value).map(|bytes| bytes.len() as u64)
}

/// A binary value as a stored binary: a handle as it is, Make's JSON form of a buffer stored
/// now; `None` for anything else (or when the bytes cannot be stored).
pub fn as_binary(value: &Value) -> Option<binary::Binary> {
    if let Some(stored) = binary::Binary::from_value(value) {
        return Some(stored);
    }
    let bytes = as_buffer(value)?;
    binary::store(&bytes, binary::DEFAULT_MIME, "").ok()
}

/// The bytes a value stands for: a buffer's bytes, or the UTF-8 of its text form.
pub fn to_bytes(value: &Value) -> Vec<u8> {
    as_buffer(value).unwrap_or_else(|| to_text(value).into_bytes())
}

/// Numeric reading used when the other side of a comparison is a number: like [`to_number`]
/// but only for numbers and numeric text.
fn comparable_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_number_text(s),
        _ => None,
    }
}

/// The numbers to compare `a` and `b` by, when they compare numerically: both numbers, or
/// one a number and the other numeric text.
fn numeric_pair(a: &Value, b: &Value) -> Option<(f64, f64)> {
    if a.is_number() || b.is_number() {
        Some((comparable_number(a)?, comparable_number(b)?))
    } else {
        None
    }
}

/// Equality of the `=` operator, `switch` and `contains`: numerically when both sides are
/// numbers or one side is a number and the other numeric text; booleans as booleans;
/// arrays and collections structurally; everything else by text (so a missing value equals `""`).
pub fn loose_eq(a: &Value, b: &Value) -> bool {
    if let Some((x, y)) = numeric_pair(a, b) {
        return x == y;
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => deep_eq(a, b),
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => {
            // A collection never equals a scalar, even one whose text happens to match.
            false
        }
        _ => text_cmp(a, b) == Ordering::Equal,
    }
}

/// Structural equality where numbers compare by value (`1` equals `1.0`).
pub fn deep_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| deep_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| deep_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Ordering of `<`, `>`, `<=`, `>=`: numerically when both sides are numbers or one side is a
/// number and the other numeric text; otherwise by text. `None` when one side is a number and
/// the other is not numeric (every ordering comparison is then false).
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    if let Some((x, y)) = numeric_pair(a, b) {
        return x.partial_cmp(&y);
    }
    if a.is_number() || b.is_number() {
        return None;
    }
    Some(text_cmp(a, b))
}

fn text_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => to_text(a).cmp(&to_text(b)),
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
        assert_eq!(to_text(&buffer(b"Make")), "Make");
        assert_eq!(to_text(&erase()), "");
    }

    #[test]
    fn numbers_and_truth() {
        assert_eq!(to_number(&json!(" 12.5 ")), Some(12.5));
        assert_eq!(to_number(&json!("abc")), None);
        assert_eq!(to_number(&json!("inf")), None);
        assert_eq!(to_number(&json!("NaN")), None);
        assert_eq!(to_number(&json!("1e3")), Some(1000.0));
        assert_eq!(number(3.0), json!(3));
        assert_eq!(number(f64::NAN), json!(null));
        assert!(!truthy(&json!("false")));
        assert!(truthy(&json!("0")));
        assert!(is_empty(&json!([])));
        assert!(!is_empty(&json!(0)));
        assert!(is_empty(&erase()));
    }

    #[test]
    fn text_len_is_the_length_of_the_text() {
        for v in [
            json!(null),
            json!("héllo"),
            json!(true),
            json!(false),
            json!(2.0),
            json!(-2.5),
            json!(12345678901234567u64),
            json!([1, "a", [2, [3, null]], {"k": "v\n"}]),
            json!([]),
            json!({"a": [1, 2], "b": {"c": "ž"}}),
            buffer(b"Make"),
            buffer(&[0xff, 0x41]),
            erase(),
        ] {
            assert_eq!(text_len(&v), to_text(&v).len(), "{v}");
        }
    }

    #[test]
    fn estimated_size_counts_values_texts_and_keys() {
        const V: usize = VALUE_BYTES;
        assert_eq!(estimated_size(&json!(null)), V);
        assert_eq!(estimated_size(&json!("abcd")), V + 4);
        assert_eq!(estimated_size(&json!([1, "ab"])), V * 3 + 2);
        assert_eq!(estimated_size(&json!({"key": 1})), V * 2 + 3 + 40);
        assert_eq!(
            estimated_size(&json!({"a": {"b": ["xyz"]}})),
            V * 4 + (1 + 40) * 2 + 3
        );
        // Deep nesting needs no recursion.
        let mut deep = json!(1);
        for _ in 0..100_000 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(estimated_size(&deep), V * 100_001);
        assert_eq!(text_len(&deep), 1);
        while let Value::Array(mut items) = deep {
            deep = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn buffers() {
        let node = json!({"type": "Buffer", "data": [1, 255]});
        assert_eq!(node_buffer(&[1, 255]), node);
        assert_eq!(as_buffer(&node), Some(vec![1, 255]));
        let b = buffer(&[1, 255]);
        assert!(b.get(binary::MARKER).is_some(), "{b}");
        assert_eq!(as_buffer(&b), Some(vec![1, 255]));
        assert_eq!(binary_len(&b), Some(2));
        assert_eq!(as_binary(&node).map(|s| s.size), Some(2));
        assert_eq!(as_buffer(&json!({"type": "Buffer", "data": [256]})), None);
        assert_eq!(as_buffer(&json!({"type": "Buffer"})), None);
        assert_eq!(to_bytes(&json!("é")), "é".as_bytes());
    }

    #[test]
    fn equality_and_ordering() {
        assert!(loose_eq(&json!(1), &json!("1.0")));
        assert!(loose_eq(&json!(1), &json!(1.0)));
        assert!(!loose_eq(&json!("1"), &json!("1.0")));
        assert!(loose_eq(&json!(null), &json!("")));
        assert!(loose_eq(&json!(true), &json!("true")));
        assert!(loose_eq(&json!([1, {"a": 2}]), &json!([1.0, {"a": 2.0}])));
        assert!(!loose_eq(&json!(["a"]), &json!("a")));
        assert_eq!(compare(&json!(10), &json!("9")), Some(Ordering::Greater));
        assert_eq!(compare(&json!("10"), &json!("9")), Some(Ordering::Less));
        assert_eq!(compare(&json!(1), &json!("x")), None);
        assert_eq!(compare(&json!("b"), &json!("a")), Some(Ordering::Greater));
    }
}
