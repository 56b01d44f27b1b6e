//! A received e-mail (raw RFC 5322/MIME bytes) as the bundle of Make's mailhook
//! (`gateway:CustomMailHook`): `sender` `{name, email}`, `to` and `cc` as lists of
//! `{name, email}`, `subject`, `date`, `messageId`, `text`, `html`, `headers` (a collection
//! keyed by lower-case header name; a repeated header is a list of its values in order) and
//! `attachments` (`[{fileName, contentType, fileSize, data}]`, `data` a file: its bytes
//! stored once in the binaries directory, a handle in the bundle, `crate::module::binary`).
//!
//! The bundle is written as JSON text directly. Should the binaries directory refuse a write,
//! that attachment's `data` is Make's JSON form of a buffer (`{"type": "Buffer", "data":
//! [bytes]}`) written as text, never a value tree of one node per byte: nothing is lost. Parsing is `mail-parser`'s, which
//! reads any bytes (it never fails on malformed MIME; missing parts are empty); only input
//! that is not a message at all (no header) is refused.

use serde_json::{Map, Value, json};

use mail_parser::{Address, HeaderName, HeaderValue, MessageParser, MimeHeaders};

use crate::module::binary;

/// The raw input is not an e-mail message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the message cannot be read as an e-mail (RFC 5322): {0}")]
pub struct NotAMessage(&'static str);

/// The mailhook bundle of `raw`, as JSON text.
pub fn mail_bundle(raw: &[u8]) -> Result<String, NotAMessage> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(NotAMessage("it is empty"));
    }
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(NotAMessage("it has no header section"))?;
    if message.headers().is_empty() {
        return Err(NotAMessage("it has no header section"));
    }
    let mut fields = Map::new();
    let sender = message
        .from()
        .and_then(Address::first)
        .map(address_json)
        .unwrap_or_else(|| json!({"name": "", "email": ""}));
    fields.insert("sender".into(), sender);
    fields.insert("to".into(), addresses_json(message.to()));
    fields.insert("cc".into(), addresses_json(message.cc()));
    fields.insert(
        "subject".into(),
        Value::from(message.subject().unwrap_or_default()),
    );
    fields.insert(
        "date".into(),
        message
            .date()
            .map(|d| Value::from(d.to_rfc3339()))
            .unwrap_or(Value::Null),
    );
    fields.insert(
        "messageId".into(),
        message.message_id().map(Value::from).unwrap_or(Value::Null),
    );
    let text = message
        .text_part(0)
        .filter(|p| p.is_text() && !p.is_text_html())
        .and_then(|p| p.text_contents());
    let html = message
        .html_part(0)
        .filter(|p| p.is_text_html())
        .and_then(|p| p.text_contents());
    fields.insert("text".into(), Value::from(text.unwrap_or_default()));
    fields.insert("html".into(), Value::from(html.unwrap_or_default()));
    fields.insert("headers".into(), headers_json(&message, raw));

    // Everything but the attachments as a value; the attachments' bytes written as text.
    let head = Value::Object(fields).to_string();
    let mut out = String::with_capacity(head.len() + 64 + raw.len() * 4);
    out.push_str(&head[..head.len() - 1]);
    out.push_str(",\"attachments\":[");
    for (i, part) in message.attachments().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let bytes = part.contents();
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| "application/octet-stream".into())
            .to_ascii_lowercase();
        let file_name = part.attachment_name().unwrap_or_default();
        let mut meta = json!({
            "fileName": file_name,
            "contentType": content_type,
            "fileSize": bytes.len(),
        });
        match binary::store(bytes, &content_type, file_name) {
            Ok(file) => {
                meta["data"] = file.to_value();
                out.push_str(&meta.to_string());
            }
            Err(error) => {
                tracing::warn!(%error, "the binaries directory refused an attachment; its bytes stay in the bundle");
                let meta = meta.to_string();
                out.push_str(&meta[..meta.len() - 1]);
                out.push_str(",\"data\":{\"type\":\"Buffer\",\"data\":[");
                push_bytes(&mut out, bytes);
                out.push_str("]}}");
            }
        }
    }
    out.push_str("]}");
    Ok(out)
}

/// Bytes as comma-separated decimal numbers.
fn push_bytes(out: &mut String, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let (hundreds, tens, ones) = (b / 100, b / 10 % 10, b % 10);
        if hundreds > 0 {
            out.push(char::from(b'0' + hundreds));
        }
        if hundreds > 0 || tens > 0 {
            out.push(char::from(b'0' + tens));
        }
        out.push(char::from(b'0' + ones));
    }
}

fn address_json(addr: &mail_parser::Addr<'_>) -> Value {
    json!({
        "name": addr.name().unwrap_or_default(),
        "email": addr.address().unwrap_or_default(),
    })
}

fn addresses_json(address: Option<&Address<'_>>) -> Value {
    Value::Array(
        address
            .map(|a| a.iter().map(address_json).collect())
            .unwrap_or_default(),
    )
}

/// The top-level headers, keyed by lower-case name: unstructured ones decoded (RFC 2047),
/// the others as sent, unfolded. A header seen more than once is the list of its values.
fn headers_json(message: &mail_parser::Message<'_>, raw: &[u8]) -> Value {
    let mut headers = Map::new();
    for header in message.headers() {
        // Unstructured headers (RFC 5322 §3.6.5 and unknown ones) are decoded; structured
        // ones (`Message-ID: <…>`, addresses, dates) are kept as written.
        let unstructured = matches!(header.name, HeaderName::Subject | HeaderName::Comments)
            || header.name.is_other();
        let value = match header.value() {
            HeaderValue::Text(text) if unstructured => text.to_string(),
            _ => {
                let start = header.offset_start() as usize;
                let end = header.offset_end() as usize;
                let bytes = raw.get(start..end).unwrap_or_default();
                unfold(&String::from_utf8_lossy(bytes))
            }
        };
        let name = header.name().to_ascii_lowercase();
        match headers.get_mut(&name) {
            None => {
                headers.insert(name, Value::from(value));
            }
            Some(Value::Array(values)) => values.push(Value::from(value)),
            Some(first) => {
                let first = first.take();
                headers.insert(name, json!([first, value]));
            }
        }
    }
    Value::Object(headers)
}

/// A header value without its line folding (RFC 5322 §2.2.3) and surrounding blanks.
fn unfold(value: &str) -> String {
    value
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The message's `Message-ID`, the key a mailhook accepts a message once by: a message sent
/// again (a retry after a temporary failure) does not run twice.
pub fn message_id(raw: &[u8]) -> Option<String> {
    let message = MessageParser::default().parse_headers(raw)?;
    message.message_id().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a file value (a handle to the binaries directory).
    fn as_buffer(value: &Value) -> Option<Vec<u8>> {
        binary::Binary::from_value(value)?.read().ok()
    }

    const MIXED: &str = "From: \"Ann Lee\" <ann@example.org>\r\n\
To: Orders <orders@example.com>, bob@example.com\r\n\
Cc: carol@example.net\r\n\
Subject: =?UTF-8?B?T3JkZXIg4oSWIDQy?=\r\n\
Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n\
Message-ID: <m1@example.org>\r\n\
Reply-To: Sales\r\n  <sales@example.org>\r\n\
Received: from a\r\n\
Received: from b\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: multipart/alternative; boundary=\"b2\"\r\n\
\r\n\
--b2\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Hello, plain.\r\n\
--b2\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Hello, <b>html</b>.</p>\r\n\
--b2--\r\n\
--b1\r\n\
Content-Type: application/octet-stream; name=\"bytes.bin\"\r\n\
Content-Disposition: attachment; filename=\"bytes.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AP8QgA==\r\n\
--b1--\r\n";

    #[test]
    fn a_multipart_message_becomes_makes_bundle() {
        let bundle: Value = serde_json::from_str(&mail_bundle(MIXED.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            bundle["sender"],
            json!({"name": "Ann Lee", "email": "ann@example.org"})
        );
        assert_eq!(
            bundle["to"],
            json!([{"name": "Orders", "email": "orders@example.com"},
                   {"name": "", "email": "bob@example.com"}])
        );
        assert_eq!(
            bundle["cc"],
            json!([{"name": "", "email": "carol@example.net"}])
        );
        assert_eq!(bundle["subject"], json!("Order № 42"));
        assert_eq!(bundle["date"], json!("2026-12-07T10:00:00Z"));
        assert_eq!(bundle["messageId"], json!("m1@example.org"));
        assert_eq!(bundle["text"], json!("Hello, plain."));
        assert_eq!(bundle["html"], json!("<p>Hello, <b>html</b>.</p>"));
        assert_eq!(
            bundle["headers"]["reply-to"],
            json!("Sales <sales@example.org>")
        );
        assert_eq!(bundle["headers"]["subject"], json!("Order № 42"));
        assert_eq!(bundle["headers"]["received"], json!(["from a", "from b"]));
        assert_eq!(bundle["headers"]["message-id"], json!("<m1@example.org>"));
        let attachments = bundle["attachments"].as_array().unwrap();
        assert_eq!(attachments.len(), 1);
        assert_eq!(attachments[0]["fileName"], json!("bytes.bin"));
        assert_eq!(
            attachments[0]["contentType"],
            json!("application/octet-stream")
        );
        assert_eq!(attachments[0]["fileSize"], json!(4));
        assert_eq!(
            as_buffer(&attachments[0]["data"]),
            Some(vec![0, 255, 16, 128])
        );
    }

    #[test]
    fn a_plain_message_has_empty_lists_and_no_html() {
        let raw = "From: a@example.org\nSubject: hi\n\nbody\n";
        let bundle: Value = serde_json::from_str(&mail_bundle(raw.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            bundle["sender"],
            json!({"name": "", "email": "a@example.org"})
        );
        assert_eq!(bundle["to"], json!([]));
        assert_eq!(bundle["text"], json!("body\n"));
        assert_eq!(bundle["html"], json!(""));
        assert_eq!(bundle["attachments"], json!([]));
        assert_eq!(bundle["date"], Value::Null);
    }

    #[test]
    fn input_without_a_header_is_refused() {
        assert!(mail_bundle(b"").is_err());
        assert!(mail_bundle(b" \r\n").is_err());
    }

    #[test]
    fn bytes_are_printed_as_numbers() {
        let mut out = String::new();
        push_bytes(&mut out, &[0, 7, 10, 99, 100, 200, 255]);
        assert_eq!(out, "0,7,10,99,100,200,255");
    }

    #[test]
    fn the_message_id_is_read_from_the_headers() {
        assert_eq!(
            message_id(MIXED.as_bytes()).as_deref(),
            Some("m1@example.org")
        );
        assert_eq!(message_id(b"Subject: x\r\n\r\nbody"), None);
    }
}
