//! The bundle a webhook request's body and query become, as JSON text: a JSON object body's
//! fields, form fields, or `{"value": …}` for other bodies; query parameters are added as
//! fields the body does not set. A JSON body is not built as a value: its top-level fields
//! are kept as the text they were sent as (a 5 MB body costs about its size here, not the ten
//! times a value tree does).

use std::borrow::Cow;

use indexmap::IndexMap;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The body cannot be read as its content type says; the message says where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadBody(pub String);

/// The bundle of a request whose `Content-Type` is `content_type` (any case).
pub fn bundle(
    content_type: &str,
    query: Map<String, Value>,
    body: &[u8],
) -> Result<String, BadBody> {
    let content_type = content_type.to_ascii_lowercase();
    let is_json = content_type.starts_with("application/json") || content_type.ends_with("+json");
    let mut fields = if body.is_empty() {
        Map::new()
    } else if is_json {
        return json_bundle(body, query);
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        match form_pairs(body) {
            Some(map) => map,
            None => return Err(BadBody("the body is not valid form data".into())),
        }
    } else {
        Map::from_iter([(
            "value".to_string(),
            Value::String(String::from_utf8_lossy(body).into_owned()),
        )])
    };
    for (k, v) in query {
        fields.entry(k).or_insert(v);
    }
    Ok(Value::Object(fields).to_string())
}

/// [`bundle`] of a JSON body: its fields (the last of repeated keys wins, in the place of the
/// first, as when read as a value), or `{"value": body}` when it is not an object.
fn json_bundle(body: &[u8], query: Map<String, Value>) -> Result<String, BadBody> {
    let invalid = |e: serde_json::Error| {
        BadBody(format!(
            "the body is not valid JSON (line {}, column {}): {e}",
            e.line(),
            e.column()
        ))
    };
    let raw: &RawValue = serde_json::from_slice(body).map_err(invalid)?;
    let fields: IndexMap<Cow<'_, str>, &RawValue> = if raw.get().starts_with('{') {
        serde_json::from_str(raw.get()).map_err(invalid)?
    } else {
        IndexMap::from_iter([(Cow::Borrowed("value"), raw)])
    };
    let mut out = String::with_capacity(body.len() + 2);
    out.push('{');
    let mut first = true;
    let mut push = |key: &str, value: &str| {
        if !std::mem::take(&mut first) {
            out.push(',');
        }
        out.push_str(&Value::from(key).to_string());
        out.push(':');
        out.push_str(value);
    };
    for (key, value) in &fields {
        push(key, value.get());
    }
    for (key, value) in query {
        if !fields.contains_key(key.as_str()) {
            push(&key, &value.to_string());
        }
    }
    out.push('}');
    Ok(out)
}

/// An `application/x-www-form-urlencoded` body's fields; `None` when it is not UTF-8 text.
fn form_pairs(body: &[u8]) -> Option<Map<String, Value>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut map = Map::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
                .ok()
        };
        map.insert(decode(k)?, Value::String(decode(v)?));
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The JSON body kept as text means what reading it as a value meant: an object's
    /// fields (repeated keys: the last value, in the first one's place), other values under
    /// `value`, query parameters where the body sets nothing.
    #[test]
    fn json_bodies_become_the_bundles_their_values_would() {
        let json = "application/json; charset=utf-8";
        let query = |pairs: &[(&str, &str)]| -> Map<String, Value> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect()
        };
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Value);
        let cases: [Case; 6] = [
            (
                r#"{"b": 1, "a": {"x": [1, 2]}, "b": 3}"#,
                &[],
                json!({"b": 3, "a": {"x": [1, 2]}}),
            ),
            (
                r#" [1, "two"] "#,
                &[("q", "1")],
                json!({"value": [1, "two"], "q": "1"}),
            ),
            (r#""text""#, &[], json!({"value": "text"})),
            (
                r#"{"q": "body", "k\u00e9": null}"#,
                &[("q", "query"), ("r", "2")],
                json!({"q": "body", "ké": null, "r": "2"}),
            ),
            ("{}", &[], json!({})),
            ("", &[("q", "1")], json!({"q": "1"})),
        ];
        for (body, pairs, expected) in cases {
            let text = bundle(json, query(pairs), body.as_bytes()).unwrap();
            let value: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value, expected, "{body}");
            // Key order is the body's.
            assert_eq!(value.to_string(), expected.to_string(), "{body}");
        }
        for bad in ["{", "[1,]", "{\"a\": 1} x"] {
            let BadBody(message) = bundle(json, Map::new(), bad.as_bytes()).unwrap_err();
            assert!(message.contains("not valid JSON"), "{bad}: {message}");
        }
    }
}
