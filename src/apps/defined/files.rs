//! Files in apps defined as data: what the interpreter does with binary values, in one place.
//!
//! - A response whose `Content-Type` is not text (a download: `alt=media`, a PDF export …),
//!   or any response of a request whose `response.type` is `binary`, is streamed to the
//!   binaries directory, and `body` is the file's handle (`crate::expr::binary`) instead of
//!   parsed JSON or text.
//! - A request whose whole rendered `body` is a file (`"body": "{{parameters.data}}"`) sends
//!   the file's bytes, streamed from the binaries directory, typed as the file unless the
//!   headers say otherwise — whatever the request's `type`.
//! - `"type": "multipart"` sends `multipart/form-data` from an object: a file value becomes a
//!   file part (its name and type the file's), `null` is left out, anything else a text field.
//!   An entry `{"file": F, "fileName": N, "mimeType": M}` (only those keys) is F as a file part
//!   named N of type M (empty: the file's own) when F is a file, else F as a text field — one
//!   field that takes either an upload or a URL/id (Telegram's `photo`, `document`).
//! - `"type": "related"` sends `multipart/related` from an object (Google's upload of a file's
//!   metadata and its bytes in one request): each entry in order is a part, a file with its
//!   own type (streamed), anything else as JSON.
//!
//! Make's JSON form of a buffer (`{"type":"Buffer","data":[…]}`) counts as a file too.

use serde_json::Value;

use super::model::{BodyType, ResponseBody};
use crate::apps::transport::{
    Body, FormPart, PartContent, Payload, RelatedPart, Response, SaveBody,
};
use crate::expr::binary::Binary;
use crate::expr::value;
use crate::module::ModuleError;

/// Where a response body goes: a file when the response says `"type": "binary"`, else a
/// file unless it is text.
pub(super) fn save_body(body: Option<ResponseBody>) -> SaveBody {
    match body {
        Some(ResponseBody::Binary) => SaveBody::File,
        Some(ResponseBody::Auto) | None => SaveBody::FileUnlessText,
    }
}

/// The `body` a file response is read as: the file's handle. `None` for a body read into
/// memory (parsed as JSON or text by the caller).
pub(super) fn response_body(answer: &Response) -> Option<Value> {
    answer.file.as_ref().map(Binary::to_value)
}

/// The body when it is a file or a multipart form; `None` for the other kinds, encoded by
/// the caller.
pub(super) fn request_body(body: &Value, body_type: BodyType) -> Result<Option<Body>, ModuleError> {
    match body_type {
        BodyType::Multipart => return multipart(body).map(Some),
        BodyType::Related => return related(body).map(Some),
        _ => {}
    }
    if !is_file(body) {
        return Ok(None);
    }
    let file = stored(body, "body")?;
    let content_type = Some(file.mime_type.clone());
    Ok(Some(Body {
        payload: Payload::File(file),
        content_type,
    }))
}

/// Whether `value` is a file (a handle, or Make's JSON form of a buffer).
fn is_file(value: &Value) -> bool {
    Binary::from_value(value).is_some()
        || value
            .as_object()
            .is_some_and(|m| m.len() == 2 && m.get("type") == Some(&Value::from("Buffer")))
}

fn stored(value: &Value, path: &str) -> Result<Binary, ModuleError> {
    value::as_binary(value).ok_or_else(|| {
        ModuleError::data(format!(
            "{path}: the file cannot be read from the binaries directory"
        ))
    })
}

/// `multipart/form-data` from an object of fields.
fn multipart(body: &Value) -> Result<Body, ModuleError> {
    let Value::Object(fields) = body else {
        return Err(ModuleError::data(
            "body: a multipart body must be an object of fields",
        ));
    };
    let mut parts = Vec::with_capacity(fields.len());
    for (name, field) in fields {
        let (field, file_name, mime_type) = match named_file(field) {
            Some(named) => named,
            None => (field, None, None),
        };
        if field.is_null() {
            continue;
        }
        let part = if is_file(field) {
            let file = stored(field, &format!("body.{name}"))?.renamed(file_name, mime_type);
            FormPart {
                name: name.clone(),
                file_name: Some(if file.file_name.is_empty() {
                    "file".to_string()
                } else {
                    file.file_name.clone()
                }),
                content_type: Some(file.mime_type.clone()),
                content: PartContent::File(file),
            }
        } else {
            FormPart {
                name: name.clone(),
                content: PartContent::Text(match field {
                    Value::Object(_) | Value::Array(_) => field.to_string(),
                    other => value::to_text(other),
                }),
                file_name: None,
                content_type: None,
            }
        };
        parts.push(part);
    }
    Ok(Body {
        payload: Payload::Multipart(parts),
        content_type: None,
    })
}

/// The parts of an entry `{"file", "fileName", "mimeType"}` (only those keys, `file` among
/// them): the file (or text) and the name and type it is sent under.
fn named_file(field: &Value) -> Option<(&Value, Option<&str>, Option<&str>)> {
    let entry = field.as_object()?;
    let file = entry.get("file")?;
    if !entry
        .keys()
        .all(|k| matches!(k.as_str(), "file" | "fileName" | "mimeType"))
    {
        return None;
    }
    let text = |key: &str| entry.get(key).and_then(Value::as_str);
    Some((file, text("fileName"), text("mimeType")))
}

/// A JSON part without the object entries that are `null` (fields not given), as a `json`
/// body is sent.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `multipart/related` from an object: its entries in order.
fn related(body: &Value) -> Result<Body, ModuleError> {
    let Value::Object(fields) = body else {
        return Err(ModuleError::data(
            "body: a related body must be an object of parts",
        ));
    };
    let mut parts = Vec::with_capacity(fields.len());
    for (name, field) in fields {
        parts.push(if is_file(field) {
            let file = stored(field, &format!("body.{name}"))?;
            RelatedPart {
                content_type: file.mime_type.clone(),
                content: PartContent::File(file),
            }
        } else {
            RelatedPart {
                content_type: "application/json; charset=UTF-8".into(),
                content: PartContent::Text(without_nulls(field).to_string()),
            }
        });
    }
    Ok(Body {
        payload: Payload::Related(parts),
        content_type: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_file_body_streams_and_other_bodies_are_left_alone() {
        let file = crate::expr::binary::store(b"%PDF", "application/pdf", "r.pdf").unwrap();
        let body = request_body(&file.to_value(), BodyType::Json)
            .unwrap()
            .unwrap();
        assert_eq!(body.payload, Payload::File(file.clone()));
        assert_eq!(body.content_type.as_deref(), Some("application/pdf"));
        assert!(
            request_body(&json!({"a": 1}), BodyType::Json)
                .unwrap()
                .is_none()
        );
        let form = request_body(
            &json!({"meta": {"name": "r"}, "file": file.to_value()}),
            BodyType::Multipart,
        )
        .unwrap()
        .unwrap();
        let Payload::Multipart(parts) = form.payload else {
            panic!("not multipart")
        };
        assert_eq!(
            parts[0].content,
            PartContent::Text(r#"{"name":"r"}"#.into())
        );
        assert_eq!(parts[1].file_name.as_deref(), Some("r.pdf"));
        assert!(request_body(&json!("x"), BodyType::Multipart).is_err());
        let related = request_body(
            &json!({"metadata": {"name": "r.pdf", "parents": null}, "media": file.to_value()}),
            BodyType::Related,
        )
        .unwrap()
        .unwrap();
        let Payload::Related(parts) = related.payload else {
            panic!("not related")
        };
        assert_eq!(
            parts[0].content,
            PartContent::Text(r#"{"name":"r.pdf"}"#.into())
        );
        assert_eq!(parts[1].content_type, "application/pdf");
    }

    #[test]
    fn a_named_file_entry_is_a_renamed_upload_or_its_text_and_nulls_are_left_out() {
        let file = crate::expr::binary::store(b"\x89PNG", "application/octet-stream", "").unwrap();
        let form = request_body(
            &json!({"chat_id": "42", "caption": null,
                    "photo": {"file": file.to_value(), "fileName": "cat.png", "mimeType": "image/png"},
                    "thumbnail": {"file": "https://example.com/t.jpg", "fileName": null}}),
            BodyType::Multipart,
        )
        .unwrap()
        .unwrap();
        let Payload::Multipart(parts) = form.payload else {
            panic!("not multipart")
        };
        let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["chat_id", "photo", "thumbnail"]);
        assert_eq!(parts[1].file_name.as_deref(), Some("cat.png"));
        assert_eq!(parts[1].content_type.as_deref(), Some("image/png"));
        assert_eq!(
            parts[2].content,
            PartContent::Text("https://example.com/t.jpg".into())
        );
        assert_eq!(parts[2].file_name, None);
    }
}
