//! How JSON documents are written and read: [`JsonText`] binds as TEXT on SQLite and as JSONB
//! on PostgreSQL; columns are read back with `sqlx::types::Json<Value>` on both.
//!
//! Both backends accept and refuse the same documents:
//! - PostgreSQL's JSONB cannot hold U+0000, so every NUL character in a string or a key is
//!   replaced with U+FFFD on both backends (a webhook body is not refused for it);
//! - serde_json refuses to read documents nested deeper than [`MAX_JSON_DEPTH`], so deeper
//!   ones are refused when written rather than left unreadable.
//!
//! JSONB does not keep object key order or duplicate keys; values compare equal either way
//! (`serde_json::Map` equality ignores order), and scenario blueprints, where the text
//! matters, are stored as TEXT on both backends.

use serde_json::Value;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo};
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo};
use sqlx::types::Json;
use sqlx::{Encode, Postgres, Sqlite, Type};

use super::{Result, StoreError};

/// The deepest nesting of arrays and objects serde_json reads back (its recursion limit).
pub const MAX_JSON_DEPTH: usize = 127;

/// A serialised JSON document, checked and ready to bind.
#[derive(Debug, Clone)]
pub(crate) struct JsonText(String);

impl JsonText {
    /// Serialises `value`, replacing NUL characters; refuses documents nested deeper than
    /// [`MAX_JSON_DEPTH`]. `what` names the document in the error.
    pub(crate) fn new(what: &'static str, value: &Value) -> Result<JsonText> {
        let scan = scan(value);
        if scan.depth > MAX_JSON_DEPTH {
            return Err(StoreError::InvalidInput {
                what,
                reason: format!("JSON nested deeper than {MAX_JSON_DEPTH} levels"),
            });
        }
        let text = if scan.has_nul {
            serde_json::to_string(&without_nul(value.clone()))
        } else {
            serde_json::to_string(value)
        };
        text.map(JsonText).map_err(|e| StoreError::InvalidInput {
            what,
            reason: format!("cannot serialise JSON: {e}"),
        })
    }

    /// Takes a document already serialised (a webhook body kept as sent), with the checks of
    /// [`JsonText::new`]: valid JSON (read without building it), nested at most
    /// [`MAX_JSON_DEPTH`] levels, and `\u0000` escapes replaced — the only case that parses
    /// the document into a value.
    pub(crate) fn from_text(what: &'static str, text: String) -> Result<JsonText> {
        let invalid = |reason: String| StoreError::InvalidInput { what, reason };
        let scan = scan_text(&text);
        if scan.depth > MAX_JSON_DEPTH {
            return Err(invalid(format!(
                "JSON nested deeper than {MAX_JSON_DEPTH} levels"
            )));
        }
        if scan.has_nul {
            let value: Value =
                serde_json::from_str(&text).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
            return JsonText::new(what, &value);
        }
        serde_json::from_str::<serde::de::IgnoredAny>(&text)
            .map_err(|e| invalid(format!("not valid JSON: {e}")))?;
        Ok(JsonText(text))
    }

    /// The serialised document.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The length of the serialised document in bytes.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

struct Scan {
    depth: usize,
    has_nul: bool,
}

/// Measures nesting depth and looks for NUL characters without recursion.
fn scan(value: &Value) -> Scan {
    let mut out = Scan {
        depth: 0,
        has_nul: false,
    };
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            Value::String(s) => out.has_nul |= s.contains('\0'),
            Value::Array(items) => {
                out.depth = out.depth.max(depth + 1);
                stack.extend(items.iter().map(|i| (i, depth + 1)));
            }
            Value::Object(map) => {
                out.depth = out.depth.max(depth + 1);
                for (k, v) in map {
                    out.has_nul |= k.contains('\0');
                    stack.push((v, depth + 1));
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
        if out.depth > MAX_JSON_DEPTH {
            break;
        }
    }
    out
}

/// [`scan`] on JSON text: the nesting depth of arrays and objects, and whether a string
/// holds a `\u0000` escape (JSON text cannot hold a raw NUL in a string). One pass over the
/// bytes; the text is assumed to be JSON (checked separately).
fn scan_text(text: &str) -> Scan {
    let mut out = Scan {
        depth: 0,
        has_nul: false,
    };
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
                out.has_nul |= b == b'u' && bytes.get(i + 1..i + 5) == Some(b"0000");
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                out.depth = out.depth.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    out
}

/// Replaces U+0000 with U+FFFD in every string and key, without recursion.
fn without_nul(mut value: Value) -> Value {
    let mut stack = vec![&mut value];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => {
                if s.contains('\0') {
                    *s = s.replace('\0', "\u{FFFD}");
                }
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    let old = std::mem::take(map);
                    *map = old
                        .into_iter()
                        .map(|(k, v)| (k.replace('\0', "\u{FFFD}"), v))
                        .collect();
                }
                stack.extend(map.values_mut());
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    value
}

/// Serialises an optional document.
pub(crate) fn opt(what: &'static str, value: Option<&Value>) -> Result<Option<JsonText>> {
    value.map(|v| JsonText::new(what, v)).transpose()
}

/// Unwraps an optional JSON column.
pub(crate) fn unwrap_opt(value: Option<Json<Value>>) -> Option<Value> {
    value.map(|Json(v)| v)
}

impl Type<Sqlite> for JsonText {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl Encode<'_, Sqlite> for JsonText {
    fn encode(self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(self.0, buf)
    }

    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode_by_ref(&self.0, buf)
    }
}

impl Type<Postgres> for JsonText {
    fn type_info() -> PgTypeInfo {
        <Json<Value> as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for JsonText {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        // JSONB's binary format: a version byte (1) followed by the JSON text.
        buf.push(1);
        buf.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn size_hint(&self) -> usize {
        self.0.len() + 1
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nested(depth: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..depth {
            v = json!([v]);
        }
        v
    }

    #[test]
    fn depth_limit_matches_what_serde_json_reads_back() {
        let ok = JsonText::new("doc", &nested(MAX_JSON_DEPTH)).unwrap();
        let back: Value = serde_json::from_str(&ok.0).unwrap();
        assert_eq!(back, nested(MAX_JSON_DEPTH));
        assert!(serde_json::from_str::<Value>(&nested(MAX_JSON_DEPTH + 1).to_string()).is_err());
        let err = JsonText::new("doc", &nested(MAX_JSON_DEPTH + 1)).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
    }

    #[test]
    fn nul_is_replaced_in_strings_and_keys() {
        let v = json!({"a\u{0}b": ["x\u{0}", {"k": "\u{0}"}], "plain": "\\u0000"});
        let text = JsonText::new("doc", &v).unwrap();
        let back: Value = serde_json::from_str(&text.0).unwrap();
        assert_eq!(
            back,
            json!({"a\u{FFFD}b": ["x\u{FFFD}", {"k": "\u{FFFD}"}], "plain": "\\u0000"})
        );
    }

    #[test]
    fn text_is_taken_as_is_with_the_same_checks() {
        let text = r#"{"b": [1, {"k": "a\\\"[{"}], "a": "\\u0000 is text"}"#;
        assert_eq!(JsonText::from_text("doc", text.into()).unwrap().0, text);
        let deepest = nested(MAX_JSON_DEPTH).to_string();
        assert!(JsonText::from_text("doc", deepest).is_ok());
        let err = JsonText::from_text("doc", nested(MAX_JSON_DEPTH + 1).to_string()).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
        // Brackets inside strings do not count.
        let in_strings = format!("[{:?}]", "[".repeat(500));
        assert!(JsonText::from_text("doc", in_strings).is_ok());
        let err = JsonText::from_text("doc", "{\"a\": }".into()).unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        // A NUL escape is replaced as in a value.
        let text = JsonText::from_text("doc", r#"{"a\u0000": "x\u0000"}"#.into()).unwrap();
        assert_eq!(
            text.0,
            r#"{"a\uFFFD":"x\uFFFD"}"#.replace("\\uFFFD", "\u{FFFD}")
        );
    }

    #[test]
    fn plain_documents_are_serialised_as_is() {
        let v = json!({"b": 1, "a": [true, null, "é"]});
        let text = JsonText::new("doc", &v).unwrap();
        assert_eq!(text.0, r#"{"b":1,"a":[true,null,"é"]}"#);
        assert_eq!(text.len(), text.0.len());
    }
}
