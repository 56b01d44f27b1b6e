//! Functions only app definitions may call, for the AI apps (`modules/openai-gpt-3.json`,
//! `modules/anthropic-claude.json`, `modules/gemini-ai.json`): what Make's own apps do in
//! their custom IML to turn the module's fields into an API's shapes and back.
//!
//! - `chatMessages(messages)`: Make's message items (`{role, content, imageInputType,
//!   imageUrl, imageDetail}`) as the Chat Completions API's messages: `{role, content}`, the
//!   content a list of parts (`text`, `image_url` with its detail) when an image URL is given.
//!   Keys only Make's form uses are left out, since the API refuses unknown keys. An item whose
//!   content is already a list of parts is kept as it is.
//! - `claudeMessages(messages)`: Make's message items as the Anthropic Messages API's: `{role,
//!   content}` only (Make's form adds keys such as `inputType`, which the API refuses); text
//!   content as text, a list of content blocks as it is.
//! - `geminiContents(contents)`: Make's `contents` as Gemini's: `{role, parts}`, each part
//!   without the `type` key Make's form adds (`{"text": …, "type": "text"}` → `{"text": …}`);
//!   a text given instead of parts becomes one text part.
//! - `parseJSONText(text)`: a model's answer asked for as JSON (`response_format:
//!   json_object`) parsed, as Make's "Parse JSON response" option does; text that is no JSON
//!   is an error quoting its start.
//!
//! Invariants: nothing here grows a value beyond what its arguments hold but by a constant
//! per item; a message item that is not a collection, or lacks a role, is an error naming its
//! (1-based) position.

use serde_json::{Map, Value, json};

use super::{FnCtx, FnError, FnResult, Function, arg, arity, short};
use crate::expr::value;

pub fn lookup(name: &str) -> Option<Function> {
    Some(match name {
        "chatMessages" => chat_messages,
        "parseJSONText" => parse_json_text,
        "claudeMessages" => claude_messages,
        "geminiContents" => gemini_contents,
        _ => return None,
    })
}

fn chat_messages(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 1)?;
    let items = match arg(args, 0) {
        Value::Null => return Ok(Value::Null),
        Value::Array(items) => items,
        other => {
            return Err(FnError::new(format!(
                "expects an array of messages, got {}",
                short(other)
            )));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let position = i + 1;
        let Value::Object(item) = item else {
            return Err(FnError::new(format!(
                "message {position} is not a collection of role and content"
            )));
        };
        let role = item
            .get("role")
            .map(value::to_text)
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .ok_or_else(|| FnError::new(format!("message {position} has no role")))?;
        let content = item.get("content").cloned().unwrap_or(Value::Null);
        let image_url = item
            .get("imageUrl")
            .map(value::to_text)
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty());
        if item.get("imageFile").is_some_and(|f| !value::is_empty(f)) {
            return Err(FnError::new(format!(
                "message {position}: an image file cannot be sent in a message; give its \
                 public URL in imageUrl"
            )));
        }
        let content = match (content, image_url) {
            (Value::Array(parts), None) => Value::Array(parts),
            (content, None) => Value::String(value::to_text(&content)),
            (content, Some(url)) => {
                let detail = item
                    .get("imageDetail")
                    .map(value::to_text)
                    .filter(|d| !d.trim().is_empty())
                    .unwrap_or_else(|| "auto".to_string());
                let mut parts = Vec::with_capacity(2);
                let text = value::to_text(&content);
                if !text.is_empty() {
                    parts.push(json!({"type": "text", "text": text}));
                }
                parts.push(
                    json!({"type": "image_url", "image_url": {"url": url, "detail": detail}}),
                );
                Value::Array(parts)
            }
        };
        let mut message = Map::with_capacity(3);
        message.insert("role".into(), Value::String(role));
        message.insert("content".into(), content);
        if let Some(name) = item.get("name").filter(|n| !value::is_empty(n)) {
            message.insert("name".into(), Value::String(value::to_text(name)));
        }
        out.push(Value::Object(message));
    }
    Ok(Value::Array(out))
}

/// The items of the array argument, each a collection (`what` names them in errors).
fn collections<'a>(
    args: &'a [Value],
    what: &str,
) -> Result<Option<Vec<&'a Map<String, Value>>>, FnError> {
    let items = match arg(args, 0) {
        Value::Null => return Ok(None),
        Value::Array(items) => items,
        other => {
            return Err(FnError::new(format!(
                "expects an array of {what}s, got {}",
                short(other)
            )));
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(map) => Ok(map),
            _ => Err(FnError::new(format!(
                "{what} {} is not a collection",
                i + 1
            ))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The `role` of item `position`, required.
fn role_of(item: &Map<String, Value>, what: &str, position: usize) -> Result<String, FnError> {
    item.get("role")
        .map(value::to_text)
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| FnError::new(format!("{what} {position} has no role")))
}

fn claude_messages(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 1)?;
    let Some(items) = collections(args, "message")? else {
        return Ok(Value::Null);
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let role = role_of(item, "message", i + 1)?;
        let content = match item.get("content").cloned().unwrap_or(Value::Null) {
            Value::Array(blocks) => Value::Array(blocks),
            other => Value::String(value::to_text(&other)),
        };
        out.push(json!({"role": role, "content": content}));
    }
    Ok(Value::Array(out))
}

fn gemini_contents(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 1)?;
    let Some(items) = collections(args, "content")? else {
        return Ok(Value::Null);
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let position = i + 1;
        let parts = match item.get("parts").cloned().unwrap_or(Value::Null) {
            Value::Array(parts) => parts
                .into_iter()
                .map(|part| match part {
                    Value::Object(mut part) => {
                        part.remove("type");
                        part.retain(|_, v| !v.is_null());
                        Value::Object(part)
                    }
                    other => json!({"text": value::to_text(&other)}),
                })
                .collect(),
            Value::Null => {
                return Err(FnError::new(format!("content {position} has no parts")));
            }
            other => vec![json!({"text": value::to_text(&other)})],
        };
        let mut content = Map::with_capacity(2);
        if let Some(role) = item.get("role").filter(|r| !value::is_empty(r)) {
            content.insert("role".into(), Value::String(value::to_text(role)));
        }
        content.insert("parts".into(), Value::Array(parts));
        out.push(Value::Object(content));
    }
    Ok(Value::Array(out))
}

fn parse_json_text(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 1)?;
    let text = match arg(args, 0) {
        Value::Null => return Ok(Value::Null),
        Value::String(text) => text,
        other => return Ok(other.clone()),
    };
    serde_json::from_str(text.trim()).map_err(|e| {
        FnError::new(format!(
            "the text is not JSON (line {}, column {}): {}",
            e.line(),
            e.column(),
            text.chars().take(40).collect::<String>()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[Value]) -> FnResult {
        let ctx = FnCtx {
            now: chrono::Utc::now(),
            timezone: chrono_tz::UTC,
        };
        lookup(name).unwrap()(args, &ctx)
    }

    #[test]
    fn make_messages_become_chat_messages() {
        let messages = json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is this?", "imageInputType": "url",
             "imageUrl": "https://example.com/cat.png", "imageDetail": "low"},
            {"role": "user", "content": "Plain", "imageDetail": "auto"},
            {"role": "assistant", "content": 42},
        ]);
        assert_eq!(
            call("chatMessages", &[messages]).unwrap(),
            json!([
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}}]},
                {"role": "user", "content": "Plain"},
                {"role": "assistant", "content": "42"},
            ])
        );
        assert_eq!(call("chatMessages", &[Value::Null]).unwrap(), Value::Null);
        let err = call(
            "chatMessages",
            &[json!([{"role": "user"}, {"content": "x"}])],
        )
        .unwrap_err();
        assert_eq!(err.0, "message 2 has no role");
        let err = call("chatMessages", &[json!(["hi"])]).unwrap_err();
        assert!(err.0.starts_with("message 1 "), "{err}");
        let err = call(
            "chatMessages",
            &[json!([{"role": "user", "imageFile": {"imageData": "x"}}])],
        )
        .unwrap_err();
        assert!(err.0.contains("imageUrl"), "{err}");
    }

    #[test]
    fn claude_and_gemini_shapes_lose_make_keys() {
        let messages = json!([
            {"role": "user", "content": "Hi", "inputType": "single"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
        ]);
        assert_eq!(
            call("claudeMessages", &[messages]).unwrap(),
            json!([
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
            ])
        );
        let err = call("claudeMessages", &[json!([{"content": "x"}])]).unwrap_err();
        assert_eq!(err.0, "message 1 has no role");
        let contents = json!([
            {"role": "user", "parts": [{"text": "Hi", "type": "text"}]},
            {"role": "model", "parts": "Hello"},
        ]);
        assert_eq!(
            call("geminiContents", &[contents]).unwrap(),
            json!([
                {"role": "user", "parts": [{"text": "Hi"}]},
                {"role": "model", "parts": [{"text": "Hello"}]},
            ])
        );
        let err = call("geminiContents", &[json!([{"role": "user"}])]).unwrap_err();
        assert_eq!(err.0, "content 1 has no parts");
        let err = call("geminiContents", &[json!("x")]).unwrap_err();
        assert!(err.0.starts_with("expects an array of contents"), "{err}");
    }

    #[test]
    fn json_answers_parse_or_say_why() {
        assert_eq!(
            call("parseJSONText", &[json!(" {\"urgency\": \"high\"} ")]).unwrap(),
            json!({"urgency": "high"})
        );
        let err = call("parseJSONText", &[json!("Sure! {\"a\": 1}")]).unwrap_err();
        assert!(err.0.contains("not JSON"), "{err}");
        assert_eq!(call("parseJSONText", &[json!([1])]).unwrap(), json!([1]));
    }
}
