//! Reading `multipart/form-data` bodies in the fakes of third-party APIs: text fields and
//! file parts with their bytes, exactly as they were sent (no crate normalises them first).

use serde_json::{Value, json};

/// A file part of a form: its field name and bytes.
pub type Upload = (String, Vec<u8>);

/// The fields of a `multipart/form-data` body: text fields as JSON strings, file parts as
/// `{"file_name", "mime_type", "size"}` with their bytes in `files` (by field name).
pub fn form_fields(content_type: &str, body: &[u8]) -> Option<(Value, Vec<Upload>)> {
    let boundary = content_type.split("boundary=").nth(1)?.trim_matches('"');
    let delimiter = format!("--{boundary}");
    let mut fields = serde_json::Map::new();
    let mut files = Vec::new();
    let mut rest = body;
    loop {
        let start = find(rest, delimiter.as_bytes())? + delimiter.len();
        rest = &rest[start..];
        if rest.starts_with(b"--") {
            return Some((Value::Object(fields), files));
        }
        let part_end = find(rest, delimiter.as_bytes())?;
        let part = &rest[2..part_end - 2]; // after the CRLF, before the CRLF of the next delimiter
        let head_end = find(part, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&part[..head_end]).to_string();
        let content = part[head_end + 4..].to_vec();
        let attribute = |key: &str| {
            let at = head.find(&format!("{key}=\""))? + key.len() + 2;
            Some(head[at..].split('"').next()?.to_string())
        };
        let name = attribute("name")?;
        match attribute("filename") {
            Some(file_name) => {
                let mime_type = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("content-type: ")
                            .or_else(|| l.strip_prefix("Content-Type: "))
                    })
                    .unwrap_or("")
                    .to_string();
                fields.insert(
                    name.clone(),
                    json!({"file_name": file_name, "mime_type": mime_type, "size": content.len()}),
                );
                files.push((name, content));
            }
            None => {
                fields.insert(name, Value::String(String::from_utf8(content).ok()?));
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
