//! The request body of an HTTP module, from Make's body fields: which kind the module asks
//! for (none, JSON, URL-encoded form, multipart form, raw text with its content type), the
//! JSON checked before it is sent, form fields encoded as browsers do, multipart parts with
//! their file names and content types (files streamed, never read into memory).
//!
//! Invariants: a JSON body that does not parse is a problem naming its field, never sent; a
//! part's name and file name are quoted as RFC 7578 says.

use super::*;
use crate::apps::transport::{FormPart, PartContent, Payload};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyKind {
    None,
    Json,
    UrlEncoded,
    Multipart,
    /// Text sent as is, with an optional content type.
    Raw,
}

pub(super) fn normalise(selector: &str) -> String {
    selector
        .trim()
        .to_ascii_lowercase()
        .replace(['_', '/', ' '], "-")
}

/// The kind of body configured, with the field that chose it.
pub(super) fn body_kind(
    dialect: Dialect,
    m: Option<&Map<String, Value>>,
) -> Result<BodyKind, (String, String)> {
    match dialect {
        Dialect::MakeRequest => {
            let Some((_, selector)) = pick(m, &["contentType"]) else {
                return Ok(BodyKind::None);
            };
            let raw = text(selector);
            match normalise(&raw).as_str() {
                "" => Ok(BodyKind::None),
                "json" | "application-json" => Ok(BodyKind::Json),
                "urlencoded"
                | "x-www-form-urlencoded"
                | "application-x-www-form-urlencoded"
                | "form" => Ok(BodyKind::UrlEncoded),
                "multipart" | "multipart-form-data" | "form-data" | "formdata" => {
                    Ok(BodyKind::Multipart)
                }
                "custom" | "raw" => Ok(BodyKind::Raw),
                // A MIME type given directly: a custom body of that type.
                _ if raw.contains('/') => Ok(BodyKind::Raw),
                _ => Err((
                    "mapper.contentType".into(),
                    format!("'{raw}' is not one of json, urlEncoded, multipart, custom"),
                )),
            }
        }
        Dialect::SendData => {
            let selector = pick(m, &["bodyType"])
                .map(|(_, v)| text(v))
                .unwrap_or_default();
            match normalise(&selector).as_str() {
                // No body type but data given: send it raw, as the v3 default did.
                "" if !is_blank(pick(m, &["data", "body"]).map(|(_, v)| v)) => Ok(BodyKind::Raw),
                "" => Ok(BodyKind::None),
                "raw" => Ok(BodyKind::Raw),
                "x-www-form-urlencoded" | "application-x-www-form-urlencoded" | "urlencoded" => {
                    Ok(BodyKind::UrlEncoded)
                }
                "multipart-form-data" | "form-data" | "multipart" => Ok(BodyKind::Multipart),
                _ => Err((
                    "mapper.bodyType".into(),
                    format!(
                        "'{selector}' is not one of raw, x-www-form-urlencoded, multipart/form-data"
                    ),
                )),
            }
        }
    }
}

pub(super) const JSON_TEXT_FIELDS: &[&str] = &["jsonStringBodyContent"];
pub(super) const JSON_DATA_FIELDS: &[&str] = &["dataStructureBodyContent"];

pub(super) fn field_list(dialect: Dialect, kind: BodyKind) -> &'static [&'static str] {
    match (dialect, kind) {
        (Dialect::MakeRequest, BodyKind::UrlEncoded) => &["urlEncodedBodyContent", "formFields"],
        (Dialect::MakeRequest, BodyKind::Multipart) => &["multipartBodyContent", "formDataFields"],
        (Dialect::SendData, BodyKind::UrlEncoded) => &["formFields", "urlEncodedBodyContent"],
        (Dialect::SendData, BodyKind::Multipart) => {
            &["formDataFields", "formFields", "multipartBodyContent"]
        }
        _ => &[],
    }
}

pub(super) fn raw_fields(dialect: Dialect) -> &'static [&'static str] {
    match dialect {
        Dialect::MakeRequest => &["customBodyContent", "bodyContent", "body", "data"],
        Dialect::SendData => &["data", "body", "bodyContent"],
    }
}

/// Whether the JSON body is written as text (`jsonString`) or as a structure.
pub(super) fn json_input_is_text(m: Option<&Map<String, Value>>) -> Result<bool, (String, String)> {
    match pick(m, &["inputMethod"]).map(|(_, v)| text(v)) {
        None => Ok(pick(m, JSON_DATA_FIELDS).is_none() || pick(m, JSON_TEXT_FIELDS).is_some()),
        Some(s) => match normalise(&s).as_str() {
            "" | "jsonstring" => Ok(true),
            "datastructure" => Ok(false),
            _ => Err((
                "mapper.inputMethod".into(),
                format!("'{s}' is not one of jsonString, dataStructure"),
            )),
        },
    }
}

/// Serialises a value for a text body: text as is, anything else as JSON.
pub(super) fn body_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub(super) fn validate_json(field: &str, body: &str) -> Result<(), (String, String)> {
    serde_json::from_str::<serde::de::IgnoredAny>(body)
        .map(|_| ())
        .map_err(|e| {
            (
                field.to_string(),
                format!(
                    "is not valid JSON: {} at line {} column {}",
                    json_error_reason(&e),
                    e.line(),
                    e.column()
                ),
            )
        })
}

/// The body the mapper describes. A problem is known at load time when the fields it comes
/// from are static (the caller also defers every body problem while a selector is mapped) —
/// except a missing JSON body and JSON given as text in the data-structure field, which only
/// the request builder has ever rejected.
pub(super) fn build_body(
    dialect: Dialect,
    m: Option<&Map<String, Value>>,
) -> Result<Option<Body>, Problem> {
    let static_problem = |(field, reason): (String, String)| Problem::invalid(field, reason, true);
    let run_time_problem =
        |(field, reason): (String, String)| Problem::invalid(field, reason, false);
    match body_kind(dialect, m).map_err(static_problem)? {
        BodyKind::None => Ok(None),
        BodyKind::Json => {
            let json = if json_input_is_text(m).map_err(static_problem)? {
                if let Some((field, value)) = pick(m, JSON_TEXT_FIELDS) {
                    let body = body_text(value);
                    validate_json(&format!("mapper.{field}"), &body).map_err(|problem| {
                        Problem::invalid(problem.0, problem.1, !fields::is_dynamic(value))
                    })?;
                    body
                } else {
                    let (field, value) = pick(m, JSON_DATA_FIELDS).ok_or_else(|| {
                        run_time_problem((
                            "mapper.jsonStringBodyContent".into(),
                            "is required".into(),
                        ))
                    })?;
                    let body = body_text(value);
                    validate_json(&format!("mapper.{field}"), &body).map_err(run_time_problem)?;
                    body
                }
            } else {
                let (field, value) = pick(m, JSON_DATA_FIELDS).ok_or_else(|| {
                    run_time_problem((
                        "mapper.dataStructureBodyContent".into(),
                        "is required".into(),
                    ))
                })?;
                match value {
                    // Some exports store the structure as JSON text.
                    Value::String(s) => {
                        validate_json(&format!("mapper.{field}"), s).map_err(run_time_problem)?;
                        s.clone()
                    }
                    other => other.to_string(),
                }
            };
            Ok(Some(Body {
                payload: Payload::Bytes(json.into_bytes()),
                content_type: Some("application/json".into()),
            }))
        }
        BodyKind::UrlEncoded => {
            let items = body_pairs(dialect, BodyKind::UrlEncoded, m)?;
            let encoded = items
                .iter()
                .filter(|p| !p.name.is_empty())
                .map(|p| format!("{}={}", form_encode(&p.name), form_encode(&text(&p.value))))
                .collect::<Vec<_>>()
                .join("&");
            Ok(Some(Body {
                payload: Payload::Bytes(encoded.into_bytes()),
                content_type: Some("application/x-www-form-urlencoded".into()),
            }))
        }
        BodyKind::Multipart => {
            let items = body_pairs(dialect, BodyKind::Multipart, m)?;
            Ok(Some(Body {
                payload: Payload::Multipart(multipart(&items)),
                content_type: None,
            }))
        }
        BodyKind::Raw => {
            let body = pick(m, raw_fields(dialect))
                .map(|(_, v)| body_text(v))
                .unwrap_or_default();
            Ok(Some(Body {
                payload: Payload::Bytes(body.into_bytes()),
                content_type: raw_content_type(dialect, m),
            }))
        }
    }
}

/// The name/value pairs of a form or multipart body (`kind`), from the first of its fields
/// the mapper has; a malformed list is a problem at that field.
pub(super) fn body_pairs(
    dialect: Dialect,
    kind: BodyKind,
    m: Option<&Map<String, Value>>,
) -> Result<Vec<Pair>, Problem> {
    let names = field_list(dialect, kind);
    let (field, value) = pick(m, names).unwrap_or((names[0], &Value::Null));
    pairs(Some(value)).map_err(|reason| {
        Problem::invalid(
            format!("mapper.{field}"),
            reason,
            !fields::is_dynamic(value),
        )
    })
}

pub(super) fn raw_content_type(dialect: Dialect, m: Option<&Map<String, Value>>) -> Option<String> {
    let custom = || {
        pick(m, &["customContentType", "contentTypeValue"])
            .map(|(_, v)| text(v))
            .filter(|s| !s.trim().is_empty())
    };
    let selector = pick(m, &["contentType"])
        .map(|(_, v)| text(v))
        .unwrap_or_default();
    let selector = selector.trim();
    match dialect {
        Dialect::MakeRequest if selector.contains('/') => Some(selector.to_string()),
        Dialect::MakeRequest => custom(),
        Dialect::SendData if selector.eq_ignore_ascii_case("custom") => custom(),
        Dialect::SendData if selector.is_empty() => custom(),
        Dialect::SendData => Some(selector.to_string()),
    }
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
pub(super) const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b' ');

pub(super) fn form_encode(s: &str) -> String {
    utf8_percent_encode(s, FORM).to_string().replace(' ', "+")
}

pub(super) fn form_decode(s: &str) -> String {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// The parts of a `multipart/form-data` body (`reqwest` encodes and streams them, building
/// the form again for every attempt). An item with `fieldType: "file"` becomes a file part
/// from its `data` (or `value`) with `fileName` and `contentType`: a binary streams from the
/// binaries directory (its own file name and type are the defaults), text is sent as its
/// UTF-8; others are text fields. The transport quotes names as browsers do.
pub(super) fn multipart(items: &[Pair]) -> Vec<FormPart> {
    let mut parts = Vec::new();
    for item in items.iter().filter(|p| !p.name.is_empty()) {
        let is_file = item
            .item
            .get("fieldType")
            .is_some_and(|t| text(t).eq_ignore_ascii_case("file"));
        let name = item.name.clone();
        if !is_file {
            parts.push(FormPart {
                name,
                content: PartContent::Text(text(&item.value)),
                file_name: None,
                content_type: None,
            });
            continue;
        }
        let data = pick(Some(&item.item), &["data", "value"]).map(|(_, v)| v);
        let file = data.and_then(crate::expr::value::as_binary);
        let file_name = pick(Some(&item.item), &["fileName", "filename"])
            .map(|(_, v)| text(v))
            .filter(|n| !n.is_empty())
            .or_else(|| file.as_ref().map(|f| f.file_name.clone()))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "file".into());
        let content_type = pick(Some(&item.item), &["contentType", "mimeType", "mime"])
            .map(|(_, v)| text(v))
            .map(|t| t.chars().filter(|c| !c.is_control()).collect::<String>())
            .filter(|t| !t.trim().is_empty())
            .or_else(|| file.as_ref().map(|f| f.mime_type.clone()))
            .unwrap_or_else(|| "application/octet-stream".into());
        let content = match file {
            Some(file) => PartContent::File(file),
            None => PartContent::Bytes(data.map(body_text).unwrap_or_default().into_bytes()),
        };
        parts.push(FormPart {
            name,
            content,
            file_name: Some(file_name),
            content_type: Some(content_type),
        });
    }
    parts
}
