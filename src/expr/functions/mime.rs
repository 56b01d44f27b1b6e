//! E-mail messages for app definitions (the app dialect): the one place where a Make-shaped
//! e-mail becomes RFC 5322/2045 MIME and back, both by maintained crates (`mail-builder`,
//! `mail-parser`), so a definition such as `modules/google-email.json` never writes MIME.
//!
//! - `mimeMessage(message)`: a collection `{from, to, cc, bcc, replyTo, subject, text, html,
//!   attachments: [{fileName, data, contentType, contentId}], headers: [{key, value}],
//!   inReplyTo, references}` as the message's bytes in base64 — Gmail's `raw` (standard
//!   base64 with padding, the `format: byte` of Google's description; Gmail's JSON accepts it
//!   as it accepts base64url, and answers with base64url, which `gmailMessage` reads). UTF-8
//!   subjects and display names are RFC 2047 encoded, `text` and `html` become
//!   `multipart/alternative`, attachments with a `contentId` (or `cid`) are inline parts of a
//!   `multipart/related` beside the HTML, the others attachments of a `multipart/mixed`.
//! - `gmailMessage(message)`: a Gmail API message resource read with `format=raw` as Make's
//!   e-mail bundle: Gmail's own fields (`id`, `threadId`, `labelIds`, `snippet`,
//!   `internalDate` as an ISO date, `sizeEstimate`, `historyId`) and the parsed message
//!   (`subject`, `from`/`sender` `{name, address}`, `fromName`, `fromEmail`, `to`, `cc`,
//!   `bcc`, `replyTo` as lists of `{name, address}`, `date`, `messageId`, `headers` keyed by
//!   lower-case name, `text`, `html`, `fullTextBody`, `attachments: [{fileName, contentType,
//!   size, contentId, data}]`, `data` a binary buffer).
//!
//! Invariants: no header text a mapping supplies can add a header (CR and LF in subjects and
//! names become spaces; an address, header name or header value with a line break is an
//! error naming the field); an address without `@` is an error naming its field; attachment
//! bytes are read through [`value::as_buffer`] (text is taken as its UTF-8) and written with
//! [`value::buffer`]; a result over the value size limit is refused before it is built.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as OutAddress;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use mail_parser::{Address, HeaderName, HeaderValue, MessageParser, MimeHeaders};
use serde_json::{Map, Value, json};

use super::{FnCtx, FnError, FnResult, Function, arg, arity, ensure_fits};
use crate::expr::value::{self, estimated_size};

pub fn lookup(name: &str) -> Option<Function> {
    Some(match name {
        "mimeMessage" => mime_message,
        "gmailMessage" => gmail_message,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Building

/// One attachment of the message to build.
struct Part {
    file_name: String,
    content_type: String,
    content_id: Option<String>,
    bytes: Vec<u8>,
}

fn mime_message(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 1)?;
    let Value::Object(message) = arg(args, 0) else {
        return Err(FnError::new(format!(
            "expects a collection describing the message, got {}",
            super::short(arg(args, 0))
        )));
    };
    // base64 of the message: 4/3 of its size, and the message about its parts' size.
    ensure_fits(estimated_size(arg(args, 0)).saturating_mul(4) / 3 + 4096)?;
    let bytes = build_message(message)?;
    ensure_fits(bytes.len().saturating_mul(4) / 3 + 4)?;
    Ok(Value::String(STANDARD.encode(bytes)))
}

/// The RFC 5322/MIME bytes of a Make-shaped message (`mimeMessage`'s collection, without the
/// base64): what the Gmail app sends as `raw` and the Email app hands to SMTP.
pub fn build_message(message: &Map<String, Value>) -> Result<Vec<u8>, FnError> {
    let field = |name: &str| message.get(name).filter(|v| !is_empty(v));

    let mut builder = MessageBuilder::new();
    if let Some(from) = field("from") {
        builder = builder.from(one_or_list(addresses(from, "from")?));
    }
    for (name, header) in [
        ("to", "To"),
        ("cc", "Cc"),
        ("bcc", "Bcc"),
        ("replyTo", "Reply-To"),
    ] {
        if let Some(found) = field(name) {
            let list = addresses(found, name)?;
            if !list.is_empty() {
                builder = builder.header(header, one_or_list(list));
            }
        }
    }
    if let Some(subject) = field("subject") {
        builder = builder.subject(single_line(&value::to_text(subject)));
    }
    for (name, header) in [("inReplyTo", "In-Reply-To"), ("references", "References")] {
        if let Some(found) = field(name) {
            builder = builder.header(header, Raw::new(header_value(found, name)?));
        }
    }
    if let Some(headers) = field("headers") {
        for (name, value) in custom_headers(headers)? {
            builder = builder.header(name, Raw::new(value));
        }
    }

    let text = field("text").map(value::to_text);
    let html = field("html").map(value::to_text);
    let parts = match field("attachments") {
        None => Vec::new(),
        Some(found) => attachments(found)?,
    };
    let (inline, attached): (Vec<Part>, Vec<Part>) =
        parts.into_iter().partition(|p| p.content_id.is_some());
    builder = builder.body(body(text, html, inline, attached));

    builder
        .write_to_vec()
        .map_err(|e| FnError::new(format!("the message could not be written: {e}")))
}

/// The bare e-mail addresses of a message field (`to`, `cc`, `bcc` as `build_message` reads
/// them): what an SMTP envelope lists.
pub fn address_list(value: &Value, field: &str) -> Result<Vec<String>, FnError> {
    if is_empty(value) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for address in addresses(value, field)? {
        emails_of(address, &mut out);
    }
    Ok(out)
}

fn emails_of(address: OutAddress<'static>, out: &mut Vec<String>) {
    match address {
        OutAddress::Address(one) => out.push(one.email.into_owned()),
        OutAddress::Group(group) => group.addresses.into_iter().for_each(|a| emails_of(a, out)),
        OutAddress::List(list) => list.into_iter().for_each(|a| emails_of(a, out)),
    }
}

/// The body's MIME tree: the text alternatives, inline parts related to them, attachments
/// mixed in.
fn body(
    text: Option<String>,
    html: Option<String>,
    inline: Vec<Part>,
    attached: Vec<Part>,
) -> MimePart<'static> {
    let alternatives: Vec<MimePart<'static>> = [
        text.map(|t| MimePart::new("text/plain", t)),
        html.map(|h| MimePart::new("text/html", h)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut content = match alternatives.len() {
        0 => MimePart::new("text/plain", String::new()),
        1 => alternatives.into_iter().next().unwrap_or_else(|| {
            // Unreachable by the length just matched; an empty body keeps it total.
            MimePart::new("text/plain", String::new())
        }),
        _ => MimePart::new("multipart/alternative", alternatives),
    };
    if !inline.is_empty() {
        let mut related = vec![content];
        related.extend(inline.into_iter().map(|p| {
            let cid = p.content_id.clone().unwrap_or_default();
            MimePart::new(p.content_type, p.bytes)
                .inline()
                .cid(cid)
                .header(
                    "Content-Disposition",
                    mail_builder::headers::content_type::ContentType::new("inline")
                        .attribute("filename", p.file_name),
                )
        }));
        content = MimePart::new("multipart/related", related);
    }
    if attached.is_empty() {
        return content;
    }
    let mut mixed = vec![content];
    mixed.extend(
        attached
            .into_iter()
            .map(|p| MimePart::new(p.content_type, p.bytes).attachment(p.file_name)),
    );
    MimePart::new("multipart/mixed", mixed)
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn one_or_list(mut list: Vec<OutAddress<'static>>) -> OutAddress<'static> {
    if list.len() == 1 {
        list.remove(0)
    } else {
        OutAddress::new_list(list)
    }
}

/// Header text on one line: a line break a mapping carries becomes a space.
fn single_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ").trim().to_string()
}

/// Addresses as Make maps them: a text (`a@x.org`, `Ann <a@x.org>`, several separated by
/// commas), a collection `{name, address}` (or `email`), or an array of those.
fn addresses(value: &Value, field: &str) -> Result<Vec<OutAddress<'static>>, FnError> {
    let mut out = Vec::new();
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if !is_empty(item) {
                    out.extend(addresses(item, &format!("{field}[{i}]"))?);
                }
            }
        }
        Value::Object(map) => {
            let address = map
                .get("address")
                .or_else(|| map.get("email"))
                .map(value::to_text)
                .unwrap_or_default();
            let name = map.get("name").map(value::to_text).unwrap_or_default();
            out.push(address_of(&name, &address, field)?);
        }
        other => {
            for one in split_addresses(&value::to_text(other)) {
                let (name, address) = match (one.rfind('<'), one.ends_with('>')) {
                    (Some(open), true) => (
                        one[..open].trim().trim_matches('"').to_string(),
                        one[open + 1..one.len() - 1].to_string(),
                    ),
                    _ => (String::new(), one.clone()),
                };
                out.push(address_of(&name, &address, field)?);
            }
        }
    }
    Ok(out)
}

/// A text of addresses split at the commas outside quotes.
fn split_addresses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' | ';' if !quoted => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    out.push(current);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn address_of(name: &str, address: &str, field: &str) -> Result<OutAddress<'static>, FnError> {
    let address = address.trim();
    let valid = address.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    }) && !address
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | '"'));
    if !valid {
        return Err(FnError::new(format!(
            "{field}: \"{}\" is not an e-mail address",
            address.chars().take(80).collect::<String>()
        )));
    }
    let name = single_line(name);
    Ok(OutAddress::new_address(
        (!name.is_empty()).then_some(name),
        address.to_string(),
    ))
}

/// A header value mapped by the user: text on one line.
fn header_value(value: &Value, field: &str) -> Result<String, FnError> {
    let text = match value {
        Value::Array(items) => items
            .iter()
            .map(value::to_text)
            .collect::<Vec<_>>()
            .join(" "),
        other => value::to_text(other),
    };
    if text.contains(['\r', '\n']) {
        return Err(FnError::new(format!(
            "{field}: a header value cannot hold a line break"
        )));
    }
    Ok(text.trim().to_string())
}

/// `headers`: `[{key, value}]` (or `name`) as Make's modules map them, or a collection.
fn custom_headers(value: &Value) -> Result<Vec<(String, String)>, FnError> {
    let mut pairs = Vec::new();
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let name = item
                    .get("key")
                    .or_else(|| item.get("name"))
                    .map(value::to_text)
                    .unwrap_or_default();
                pairs.push((
                    name,
                    item.get("value").cloned().unwrap_or(Value::Null),
                    format!("headers[{i}]"),
                ));
            }
        }
        Value::Object(map) => {
            for (name, v) in map {
                pairs.push((name.clone(), v.clone(), format!("headers.{name}")));
            }
        }
        other => {
            return Err(FnError::new(format!(
                "headers: expected a list of {{key, value}}, got {}",
                super::short(other)
            )));
        }
    }
    let mut out = Vec::with_capacity(pairs.len());
    for (name, v, at) in pairs {
        let name = name.trim().to_string();
        if name.is_empty() {
            continue;
        }
        // RFC 5322 §3.6.8: a field name is printable ASCII without `:`.
        if !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
            return Err(FnError::new(format!(
                "{at}: \"{}\" is not a header name",
                name.chars().take(80).collect::<String>()
            )));
        }
        out.push((name, header_value(&v, &at)?));
    }
    Ok(out)
}

fn attachments(value: &Value) -> Result<Vec<Part>, FnError> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![value],
        other => {
            return Err(FnError::new(format!(
                "attachments: expected a list of {{fileName, data}}, got {}",
                super::short(other)
            )));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("attachments[{i}]");
        let Value::Object(map) = item else {
            return Err(FnError::new(format!(
                "{at}: expected a collection {{fileName, data}}, got {}",
                super::short(item)
            )));
        };
        let text = |key: &str| {
            map.get(key)
                .filter(|v| !is_empty(v))
                .map(|v| single_line(&value::to_text(v)))
        };
        let file_name = text("fileName")
            .or_else(|| text("filename"))
            .or_else(|| text("name"))
            .ok_or_else(|| FnError::new(format!("{at}.fileName: a file name is required")))?;
        let data = map.get("data").unwrap_or(&Value::Null);
        let content_type = text("contentType")
            .or_else(|| text("mimeType"))
            .unwrap_or_else(|| guess_content_type(&file_name).to_string());
        if !content_type.contains('/') || content_type.contains([';', '"']) {
            return Err(FnError::new(format!(
                "{at}.contentType: \"{content_type}\" is not a media type"
            )));
        }
        let content_id = text("contentId")
            .or_else(|| text("cid"))
            .map(|cid| cid.trim_matches(['<', '>']).to_string());
        out.push(Part {
            file_name,
            content_type,
            content_id,
            bytes: attachment_bytes(data),
        });
    }
    Ok(out)
}

/// An attachment's bytes: a binary value's bytes, or the UTF-8 of text.
fn attachment_bytes(data: &Value) -> Vec<u8> {
    match value::as_buffer(data) {
        Some(bytes) => bytes,
        None if data.is_null() => Vec::new(),
        None => value::to_text(data).into_bytes(),
    }
}

/// The media type of a file name's extension, for an attachment mapped without one.
fn guess_content_type(file_name: &str) -> &'static str {
    let extension = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "zip" => "application/zip",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

fn gmail_message(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 1)?;
    let resource = match arg(args, 0) {
        Value::Object(map) => map,
        other => {
            return Err(FnError::new(format!(
                "expects a Gmail message resource (read with format=raw), got {}",
                super::short(other)
            )));
        }
    };
    let raw_text = resource.get("raw").map(value::to_text).unwrap_or_default();
    if raw_text.is_empty() {
        return Err(FnError::new(
            "the message has no `raw` field: read it with format=raw",
        ));
    }
    ensure_fits(raw_text.len().saturating_mul(4))?;
    let trimmed = raw_text.trim().trim_end_matches('=');
    let raw = URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|_| FnError::new("the message's `raw` field is not base64url"))?;
    let mut out = Map::new();
    for key in ["id", "threadId", "labelIds", "snippet", "historyId"] {
        out.insert(
            key.into(),
            resource.get(key).cloned().unwrap_or(Value::Null),
        );
    }
    out.insert(
        "internalDate".into(),
        resource
            .get("internalDate")
            .and_then(|d| value::to_text(d).trim().parse::<i64>().ok())
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|d| Value::from(d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
            .unwrap_or(Value::Null),
    );
    out.insert(
        "sizeEstimate".into(),
        resource
            .get("sizeEstimate")
            .cloned()
            .unwrap_or_else(|| Value::from(raw.len())),
    );
    parsed_into(&raw, &mut out)?;
    Ok(Value::Object(out))
}

/// The raw message `raw` as Make's e-mail bundle (the fields `parsed_into` writes): what
/// the Email app's IMAP modules emit.
pub fn read_message(raw: &[u8]) -> Result<Map<String, Value>, FnError> {
    let mut out = Map::new();
    parsed_into(raw, &mut out)?;
    Ok(out)
}

/// The fields of the parsed message, as Make's e-mail bundle.
fn parsed_into(raw: &[u8], out: &mut Map<String, Value>) -> Result<(), FnError> {
    let message = MessageParser::default()
        .parse(raw)
        .filter(|m| !m.headers().is_empty())
        .ok_or_else(|| FnError::new("the message cannot be read as an e-mail (RFC 5322)"))?;
    let from = message
        .from()
        .and_then(Address::first)
        .map(address_json)
        .unwrap_or_else(|| json!({"name": "", "address": ""}));
    out.insert(
        "subject".into(),
        Value::from(message.subject().unwrap_or_default()),
    );
    out.insert(
        "date".into(),
        message
            .date()
            .map(|d| Value::from(d.to_rfc3339()))
            .unwrap_or(Value::Null),
    );
    out.insert(
        "messageId".into(),
        message.message_id().map(Value::from).unwrap_or(Value::Null),
    );
    out.insert("fromName".into(), from["name"].clone());
    out.insert("fromEmail".into(), from["address"].clone());
    out.insert(
        "sender".into(),
        message
            .sender()
            .and_then(Address::first)
            .map(address_json)
            .unwrap_or_else(|| from.clone()),
    );
    out.insert("from".into(), from);
    out.insert("to".into(), addresses_json(message.to()));
    out.insert("cc".into(), addresses_json(message.cc()));
    out.insert("bcc".into(), addresses_json(message.bcc()));
    out.insert("replyTo".into(), addresses_json(message.reply_to()));
    let text = message
        .text_part(0)
        .filter(|p| p.is_text() && !p.is_text_html())
        .and_then(|p| p.text_contents())
        .unwrap_or_default()
        .to_string();
    let html = message
        .html_part(0)
        .filter(|p| p.is_text_html())
        .and_then(|p| p.text_contents())
        .unwrap_or_default()
        .to_string();
    out.insert("text".into(), Value::from(text.clone()));
    out.insert("fullTextBody".into(), Value::from(text));
    out.insert("html".into(), Value::from(html));
    out.insert("headers".into(), headers_json(&message));
    let mut attachments = Vec::new();
    for part in message.attachments() {
        let bytes = part.contents();
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| "application/octet-stream".into())
            .to_ascii_lowercase();
        attachments.push(json!({
            "fileName": part.attachment_name().unwrap_or_default(),
            "contentType": content_type,
            "size": bytes.len(),
            "contentId": part.content_id().map(|c| c.trim_matches(['<', '>']).to_string()),
            "data": value::buffer(bytes),
        }));
    }
    out.insert("attachments".into(), Value::Array(attachments));
    Ok(())
}

fn address_json(addr: &mail_parser::Addr<'_>) -> Value {
    json!({
        "name": addr.name().unwrap_or_default(),
        "address": addr.address().unwrap_or_default(),
    })
}

fn addresses_json(address: Option<&Address<'_>>) -> Value {
    Value::Array(
        address
            .map(|a| a.iter().map(address_json).collect())
            .unwrap_or_default(),
    )
}

/// The top-level headers keyed by lower-case name, decoded; a repeated one is the list of its
/// values.
fn headers_json(message: &mail_parser::Message<'_>) -> Value {
    let mut headers = Map::new();
    for header in message.headers() {
        let text = match header.value() {
            HeaderValue::Text(t) => t.to_string(),
            HeaderValue::TextList(list) => list.join(", "),
            HeaderValue::Address(a) => a
                .iter()
                .map(|addr| match (addr.name(), addr.address()) {
                    (Some(n), Some(a)) => format!("{n} <{a}>"),
                    (_, Some(a)) => a.to_string(),
                    (Some(n), None) => n.to_string(),
                    (None, None) => String::new(),
                })
                .collect::<Vec<_>>()
                .join(", "),
            HeaderValue::DateTime(d) => d.to_rfc822(),
            HeaderValue::ContentType(ct) => match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            },
            HeaderValue::Received(_) | HeaderValue::Empty => String::new(),
        };
        let text = match header.name {
            HeaderName::MessageId | HeaderName::InReplyTo | HeaderName::References => {
                match header.value() {
                    HeaderValue::Text(t) => format!("<{t}>"),
                    HeaderValue::TextList(list) => list
                        .iter()
                        .map(|t| format!("<{t}>"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => text,
                }
            }
            _ => text,
        };
        let name = header.name().to_ascii_lowercase();
        match headers.get_mut(&name) {
            None => {
                headers.insert(name, Value::from(text));
            }
            Some(Value::Array(values)) => values.push(Value::from(text)),
            Some(first) => {
                let first = first.take();
                headers.insert(name, json!([first, text]));
            }
        }
    }
    Value::Object(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> FnCtx {
        FnCtx {
            now: chrono::Utc::now(),
            timezone: chrono_tz::UTC,
        }
    }

    fn build(message: Value) -> Vec<u8> {
        let raw = mime_message(&[message], &ctx()).unwrap();
        STANDARD.decode(raw.as_str().unwrap()).unwrap()
    }

    #[test]
    fn a_message_reads_back_with_utf8_names_alternatives_and_parts() {
        let raw = build(json!({
            "from": "Zoë Ärger <zoe@example.org>",
            "to": ["ann@example.org", {"name": "Bob Ø", "address": "bob@example.org"}],
            "cc": "Carl <carl@example.org>, dee@example.org",
            "bcc": ["eve@example.org"],
            "replyTo": "replies@example.org",
            "subject": "Grüße — 你好",
            "text": "plain body",
            "html": "<p>html body <img src=\"cid:logo\"></p>",
            "headers": [{"key": "In-Reply-To", "value": "<a@b>"}],
            "attachments": [
                {"fileName": "report.pdf", "data": value::buffer(&[0, 1, 2, 255])},
                {"fileName": "logo.png", "data": value::buffer(&[137, 80]), "cid": "logo"}
            ]
        }));
        let mut out = Map::new();
        out.insert(
            "raw".into(),
            Value::from(base64::engine::general_purpose::URL_SAFE.encode(&raw)),
        );
        let parsed = gmail_message(&[Value::Object(out)], &ctx()).unwrap();
        assert_eq!(parsed["subject"], "Grüße — 你好");
        assert_eq!(parsed["from"]["name"], "Zoë Ärger");
        assert_eq!(parsed["fromEmail"], "zoe@example.org");
        assert_eq!(parsed["to"][1]["name"], "Bob Ø");
        assert_eq!(parsed["cc"][1]["address"], "dee@example.org");
        assert_eq!(parsed["bcc"][0]["address"], "eve@example.org");
        assert_eq!(parsed["replyTo"][0]["address"], "replies@example.org");
        assert_eq!(parsed["text"], "plain body");
        assert!(parsed["html"].as_str().unwrap().contains("cid:logo"));
        assert_eq!(parsed["headers"]["in-reply-to"], "<a@b>");
        let attachments = parsed["attachments"].as_array().unwrap();
        assert_eq!(attachments.len(), 2);
        let pdf = attachments
            .iter()
            .find(|a| a["fileName"] == "report.pdf")
            .unwrap();
        assert_eq!(pdf["contentType"], "application/pdf");
        assert_eq!(value::as_buffer(&pdf["data"]).unwrap(), vec![0, 1, 2, 255]);
        let logo = attachments
            .iter()
            .find(|a| a["fileName"] == "logo.png")
            .unwrap();
        assert_eq!(logo["contentId"], "logo");
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("multipart/related"), "{text}");
        assert!(text.contains("multipart/alternative"), "{text}");
    }

    #[test]
    fn line_breaks_cannot_add_headers() {
        let raw = build(json!({"to": "a@example.org", "subject": "hi\r\nBcc: x@evil.test"}));
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("\r\nBcc:"), "{text}");
        let err = mime_message(
            &[json!({"to": "a@example.org", "headers": [{"key": "X-A", "value": "1\r\nBcc: x@evil.test"}]})],
            &ctx(),
        )
        .unwrap_err();
        assert!(err.0.starts_with("headers[0]"), "{}", err.0);
        let err = mime_message(&[json!({"to": ["ok@example.org", "nobody"]})], &ctx()).unwrap_err();
        assert!(err.0.starts_with("to[1]"), "{}", err.0);
        let err = mime_message(
            &[json!({"to": "a@example.org", "attachments": [{"data": "x"}]})],
            &ctx(),
        )
        .unwrap_err();
        assert!(err.0.starts_with("attachments[0].fileName"), "{}", err.0);
    }

    #[test]
    fn a_resource_without_raw_is_refused() {
        let err = gmail_message(&[json!({"id": "1"})], &ctx()).unwrap_err();
        assert!(err.0.contains("format=raw"));
        let err = gmail_message(&[json!({"raw": "!!"})], &ctx()).unwrap_err();
        assert!(err.0.contains("base64url"));
    }
}
