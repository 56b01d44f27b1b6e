//! Functions only app definitions may call, for the Notion app (`modules/notion.json`): what
//! Make's Notion modules do in their own code to turn a database item's fields, as a blueprint
//! maps them, into the API's property values, and a page's content into blocks.
//!
//! - `notionProperties(fields, schema)`: `fields` as Make maps them — a collection keyed by
//!   property ID or name (`{"title": "Ann", "U%7CNl": "High"}`, Make's *Select from the list*),
//!   or an array of `{key, type, value}` items (Make's *Map*, a date item's value in `date`) —
//!   written as the Notion API's property values (`{"Name": {"title": [{"text": {"content":
//!   "Ann"}}]}, "Priority": {"select": {"name": "High"}}}`), each by the type `schema` (the
//!   database's `properties`, keyed by name, each with `id` and `type`) gives it. Empty values
//!   are left out, as Make leaves a field it was given nothing for.
//! - `notionBlocks(items)`: page content items `{type, text}` (`paragraph`, `heading_1` …,
//!   `to_do` with `checked`, `code` with `language`) as Notion blocks; an item that already is a
//!   block (it has its type's key, `{"type": "paragraph", "paragraph": {…}}`) is kept.
//!
//! Invariants: a field naming no property of the database, or a property of a type the API
//! computes (formula, rollup, created time …), is an error naming the field; nothing here
//! grows a value beyond its arguments but by a constant per item.

use serde_json::{Map, Value, json};

use super::{FnCtx, FnError, FnResult, Function, arg, arity, short};
use crate::expr::value;

pub fn lookup(name: &str) -> Option<Function> {
    Some(match name {
        "notionProperties" => notion_properties,
        "notionBlocks" => notion_blocks,
        _ => return None,
    })
}

/// Rich text from a text (an array is taken as rich text already).
fn rich_text(v: &Value) -> Value {
    match v {
        Value::Array(parts) => Value::Array(parts.clone()),
        other => {
            let text = value::to_text(other);
            json!([{"type": "text", "text": {"content": text}}])
        }
    }
}

/// A list from an array, or a comma-separated text.
fn list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items.clone(),
        other => value::to_text(other)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_string()))
            .collect(),
    }
}

/// The id of a list item: an id text, or an object's `id`.
fn with_id(item: &Value) -> Value {
    match item {
        Value::Object(o) if o.contains_key("id") => json!({"id": o["id"].clone()}),
        other => json!({"id": value::to_text(other)}),
    }
}

/// The name of a select option: a text, or an object's `name`.
fn with_name(item: &Value) -> Value {
    match item {
        Value::Object(o) if o.contains_key("name") => json!({"name": o["name"].clone()}),
        other => json!({"name": value::to_text(other)}),
    }
}

/// The value of property `name` of `kind` for `v`, or why it cannot be written.
fn property_value(name: &str, kind: &str, v: &Value) -> Result<Value, FnError> {
    let text = || value::to_text(v).trim().to_string();
    Ok(match kind {
        "title" | "rich_text" => json!({ kind: rich_text(v) }),
        "number" => {
            let n = value::to_number(v).ok_or_else(|| {
                FnError::new(format!("field {name}: expected a number, got {}", short(v)))
            })?;
            json!({"number": n})
        }
        "checkbox" => json!({"checkbox": value::truthy(v)}),
        "select" | "status" => json!({ kind: with_name(v) }),
        "multi_select" => {
            json!({"multi_select": list(v).iter().map(with_name).collect::<Vec<_>>()})
        }
        "date" => match v {
            Value::Object(o) => {
                let mut date = Map::new();
                for key in ["start", "end", "time_zone"] {
                    if let Some(x) = o.get(key).filter(|x| !value::is_empty(x)) {
                        date.insert(key.to_string(), x.clone());
                    }
                }
                json!({"date": date})
            }
            _ => json!({"date": {"start": text()}}),
        },
        "url" | "email" | "phone_number" => json!({ kind: text() }),
        "people" | "relation" => json!({ kind: list(v).iter().map(with_id).collect::<Vec<_>>() }),
        "files" => json!({"files": list(v).iter().map(|u| {
            let url = value::to_text(u);
            json!({"name": url, "type": "external", "external": {"url": url}})
        }).collect::<Vec<_>>()}),
        other => {
            return Err(FnError::new(format!(
                "field {name}: the property is of type {other}, which Notion computes and cannot be written"
            )));
        }
    })
}

fn notion_properties(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 2, 2)?;
    let Value::Object(schema) = arg(args, 1) else {
        return Err(FnError::new(format!(
            "expects the database's properties as its second argument, got {}",
            short(arg(args, 1))
        )));
    };
    // (field as given, property type given by a Map item, value)
    let given: Vec<(String, Option<String>, Value)> = match arg(args, 0) {
        Value::Null => Vec::new(),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| (k.clone(), None, v.clone()))
            .collect(),
        Value::Array(items) => {
            let mut given = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let Value::Object(item) = item else {
                    return Err(FnError::new(format!(
                        "field {}: expected a collection of key, type and value",
                        i + 1
                    )));
                };
                let key = item.get("key").map(value::to_text).unwrap_or_default();
                if key.trim().is_empty() {
                    return Err(FnError::new(format!("field {}: it has no key", i + 1)));
                }
                let kind = item
                    .get("type")
                    .map(value::to_text)
                    .filter(|t| !t.trim().is_empty());
                let v = match item.get("date") {
                    Some(date) if kind.as_deref() == Some("date") => date.clone(),
                    _ => item.get("value").cloned().unwrap_or(Value::Null),
                };
                given.push((key, kind, v));
            }
            given
        }
        other => {
            return Err(FnError::new(format!(
                "expects the fields as a collection or an array of key, type and value, got {}",
                short(other)
            )));
        }
    };
    let mut out = Map::new();
    for (key, kind, v) in given {
        if value::is_empty(&v) {
            continue;
        }
        let found = schema.iter().find(|(name, p)| {
            p.get("id").and_then(Value::as_str) == Some(key.as_str()) || **name == key
        });
        let Some((name, property)) = found else {
            return Err(FnError::new(format!(
                "field {key}: the database has no property with this ID or name"
            )));
        };
        let kind =
            kind.unwrap_or_else(|| property.get("type").map(value::to_text).unwrap_or_default());
        out.insert(name.clone(), property_value(&key, &kind, &v)?);
    }
    Ok(Value::Object(out))
}

fn notion_blocks(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 1)?;
    let items = match arg(args, 0) {
        Value::Null => return Ok(Value::Array(Vec::new())),
        Value::Array(items) => items,
        other => {
            return Err(FnError::new(format!(
                "expects an array of content items, got {}",
                short(other)
            )));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(item) = item else {
            return Err(FnError::new(format!(
                "item {}: expected a collection of type and text",
                i + 1
            )));
        };
        let kind = item
            .get("type")
            .map(value::to_text)
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| "paragraph".to_string());
        if item.contains_key(&kind) {
            out.push(Value::Object(item.clone()));
            continue;
        }
        let mut content = json!({"rich_text": rich_text(item.get("text").unwrap_or(&Value::Null))});
        match kind.as_str() {
            "paragraph" | "heading_1" | "heading_2" | "heading_3" | "bulleted_list_item"
            | "numbered_list_item" | "quote" => {}
            "to_do" => {
                content["checked"] = json!(item.get("checked").is_some_and(value::truthy));
            }
            "code" => {
                content["language"] = item
                    .get("language")
                    .filter(|l| !value::is_empty(l))
                    .cloned()
                    .unwrap_or_else(|| json!("plain text"));
            }
            other => {
                return Err(FnError::new(format!(
                    "item {}: `{other}` is not a block type written from a text (paragraph, \
                     heading_1, heading_2, heading_3, bulleted_list_item, numbered_list_item, \
                     quote, to_do, code); give the block itself instead",
                    i + 1
                )));
            }
        }
        let mut block = Map::new();
        block.insert("object".into(), json!("block"));
        block.insert("type".into(), json!(kind));
        block.insert(kind, content);
        out.push(Value::Object(block));
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(f: Function, args: &[Value]) -> FnResult {
        let ctx = FnCtx {
            now: chrono::Utc::now(),
            timezone: chrono_tz::UTC,
        };
        f(args, &ctx)
    }

    fn schema() -> Value {
        json!({"Name": {"id": "title", "type": "title"},
               "Priority": {"id": "U%7CNl", "type": "select"},
               "Tags": {"id": "t%40gs", "type": "multi_select"},
               "Due": {"id": "d%3Ee", "type": "date"},
               "Score": {"id": "sc0r", "type": "number"},
               "Made": {"id": "m4de", "type": "created_time"}})
    }

    #[test]
    fn fields_by_id_or_name_become_property_values() {
        let fields = json!({"title": "Ann", "U%7CNl": "High", "Tags": "a, b", "Score": "4",
                            "Due": "2026-12-01", "d%3Ee": null});
        let out = call(notion_properties, &[fields, schema()]).unwrap();
        assert_eq!(
            out,
            json!({"Name": {"title": [{"type": "text", "text": {"content": "Ann"}}]},
                   "Priority": {"select": {"name": "High"}},
                   "Tags": {"multi_select": [{"name": "a"}, {"name": "b"}]},
                   "Score": {"number": 4.0},
                   "Due": {"date": {"start": "2026-12-01"}}})
        );
        let mapped = json!([{"key": "Name", "type": "title", "value": "Bo"},
                            {"key": "Due", "type": "date", "date": {"start": "2026-12-02", "end": ""}}]);
        let out = call(notion_properties, &[mapped, schema()]).unwrap();
        assert_eq!(out["Due"], json!({"date": {"start": "2026-12-02"}}));
        let err = call(notion_properties, &[json!({"Nope": "x"}), schema()]).unwrap_err();
        assert!(err.to_string().contains("field Nope"), "{err}");
        let err = call(notion_properties, &[json!({"Made": "x"}), schema()]).unwrap_err();
        assert!(err.to_string().contains("created_time"), "{err}");
        let err = call(notion_properties, &[json!({"Score": "many"}), schema()]).unwrap_err();
        assert!(err.to_string().contains("expected a number"), "{err}");
    }

    #[test]
    fn content_items_become_blocks() {
        let items = json!([{"type": "heading_2", "text": "Notes"}, {"text": "Hello"},
                           {"type": "to_do", "text": "Call", "checked": true},
                           {"type": "divider", "divider": {}}]);
        let out = call(notion_blocks, &[items]).unwrap();
        assert_eq!(
            out[0]["heading_2"]["rich_text"][0]["text"]["content"],
            "Notes"
        );
        assert_eq!(out[1]["type"], "paragraph");
        assert_eq!(out[2]["to_do"]["checked"], true);
        assert_eq!(out[3], json!({"type": "divider", "divider": {}}));
        assert!(call(notion_blocks, &[json!([{"type": "table"}])]).is_err());
    }
}
