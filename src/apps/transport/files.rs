//! Files in the transport: request bodies streamed from the binaries directory (a file, a
//! `multipart/form-data` form, a `multipart/related` body — each built again for every hop and
//! every resend, since sending consumes it) and response bodies streamed into it, with the
//! file name and type a response gives them. The invariants are the transport's own (see its
//! module documentation): nothing here holds a whole file in memory.

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderMap};

use super::{Failure, FormPart, PartContent, RelatedPart};
use crate::expr::binary::{self, Binary};
use crate::module::error::{ErrorKind, ModuleError};

/// A stored binary as a streamed request body: opened now, read chunk by chunk as it is sent.
pub(super) fn file_body(file: &Binary) -> Result<reqwest::Body, ModuleError> {
    let opened = file.open().map_err(|e| no_longer_stored(file, &e))?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(opened));
    Ok(reqwest::Body::wrap_stream(stream))
}

fn no_longer_stored(file: &Binary, error: &std::io::Error) -> ModuleError {
    ModuleError::data(format!(
        "the file {:?} ({}) cannot be read from the binaries directory: {error}",
        file.file_name,
        file.summary()
    ))
}

/// A `multipart/form-data` form of `parts`, built for one attempt (sending consumes it); file
/// parts stream from the binaries directory with their length.
pub(super) fn form(parts: &[FormPart]) -> Result<reqwest::multipart::Form, ModuleError> {
    use reqwest::multipart::{Form, Part};
    // Names quoted as browsers quote them, not percent-encoded as `reqwest` would.
    let quote = |s: &str| {
        s.replace('"', "%22")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let mut form = Form::new().percent_encode_noop();
    for part in parts {
        let mut built = match &part.content {
            PartContent::Text(text) if part.file_name.is_none() => Part::text(text.clone()),
            PartContent::Text(text) => Part::bytes(text.clone().into_bytes()),
            PartContent::Bytes(bytes) => Part::bytes(bytes.clone()),
            PartContent::File(file) => Part::stream_with_length(file_body(file)?, file.size),
        };
        if let Some(file_name) = &part.file_name {
            built = built.file_name(quote(file_name));
        }
        if let Some(content_type) = &part.content_type {
            built = built.mime_str(content_type).map_err(|_| {
                ModuleError::data(format!(
                    "the multipart part {:?} has an invalid content type {content_type:?}",
                    part.name
                ))
            })?;
        }
        form = form.part(quote(&part.name), built);
    }
    Ok(form)
}

/// A `multipart/related` body of `parts` for one attempt, with its `Content-Type`: each part's
/// headers and bytes in order, files streamed from the binaries directory.
pub(super) fn related(parts: &[RelatedPart]) -> Result<(String, reqwest::Body), ModuleError> {
    use futures::StreamExt;
    use futures::stream::BoxStream;
    type Chunks = BoxStream<'static, std::io::Result<bytes::Bytes>>;
    let boundary = format!("switchyard-{}", uuid::Uuid::new_v4().simple());
    let once = |bytes: Vec<u8>| -> Chunks {
        futures::stream::once(futures::future::ready(Ok(bytes::Bytes::from(bytes)))).boxed()
    };
    let mut streams: Vec<Chunks> = Vec::with_capacity(parts.len() * 2 + 1);
    for part in parts {
        let content_type: String = part
            .content_type
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        streams.push(once(
            format!("--{boundary}\r\nContent-Type: {content_type}\r\n\r\n").into_bytes(),
        ));
        streams.push(match &part.content {
            PartContent::Text(text) => once(text.clone().into_bytes()),
            PartContent::Bytes(bytes) => once(bytes.clone()),
            PartContent::File(file) => {
                let opened = file.open().map_err(|e| no_longer_stored(file, &e))?;
                tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(opened)).boxed()
            }
        });
        streams.push(once(b"\r\n".to_vec()));
    }
    streams.push(once(format!("--{boundary}--\r\n").into_bytes()));
    Ok((
        format!("multipart/related; boundary={boundary}"),
        reqwest::Body::wrap_stream(futures::stream::iter(streams).flatten()),
    ))
}

/// Whether a `Content-Type` is read as text (no type at all counts as text, as before files
/// existed): `text/*`, JSON, XML, forms, JavaScript.
pub fn is_text_type(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media.is_empty()
        || media.starts_with("text/")
        || media.ends_with("+json")
        || media.ends_with("+xml")
        || matches!(
            media.as_str(),
            "application/json"
                | "application/xml"
                | "application/x-www-form-urlencoded"
                | "application/javascript"
                | "application/ecmascript"
                | "application/x-ndjson"
        )
}

/// The file name a response names: `Content-Disposition`'s `filename*` or `filename`, else
/// the URL's last path segment, else `file`.
pub fn response_file_name(headers: &HeaderMap, url: &Url) -> String {
    let disposition = headers
        .get(reqwest::header::CONTENT_DISPOSITION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let mut plain = None;
    for param in disposition.split(';').map(str::trim) {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "filename*" => {
                // RFC 5987: charset'language'percent-encoded
                if let Some((_, encoded)) = value.trim().rsplit_once('\'') {
                    let decoded = percent_encoding::percent_decode_str(encoded)
                        .decode_utf8_lossy()
                        .into_owned();
                    if !decoded.is_empty() {
                        return sanitize_file_name(&decoded);
                    }
                }
            }
            "filename" => plain = Some(value.trim().trim_matches('"').to_string()),
            _ => {}
        }
    }
    if let Some(name) = plain.filter(|n| !n.is_empty()) {
        return sanitize_file_name(&name);
    }
    url.path_segments()
        .and_then(|mut segments| segments.next_back().map(str::to_string))
        .map(|s| {
            percent_encoding::percent_decode_str(&s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .filter(|s| !s.is_empty())
        .map(|s| sanitize_file_name(&s))
        .unwrap_or_else(|| "file".to_string())
}

/// A file name without directories or control characters.
fn sanitize_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    last.chars().filter(|c| !c.is_control()).collect()
}

/// Streams the body into the binaries directory, within `limit` bytes.
pub(super) async fn save_body(
    response: &mut reqwest::Response,
    limit: usize,
    headers: &HeaderMap,
    url: &Url,
) -> Result<Binary, Failure> {
    if let Some(declared) = response.content_length()
        && declared > limit as u64
    {
        return Err(Failure::TooLarge {
            declared: Some(declared),
        });
    }
    let storage = |e: std::io::Error| {
        Failure::Module(ModuleError::new(
            ErrorKind::RuntimeError,
            format!("the response body could not be stored in the binaries directory: {e}"),
        ))
    };
    let mut writer = binary::Writer::new().map_err(storage)?;
    while let Some(chunk) = response.chunk().await? {
        if writer.size() + chunk.len() as u64 > limit as u64 {
            return Err(Failure::TooLarge { declared: None });
        }
        writer.write(&chunk).map_err(storage)?;
    }
    let mime = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    writer
        .finish(&mime, &response_file_name(headers, url))
        .map_err(storage)
}
