//! `GET /api/binaries/{id}`: the bytes of a file a module produced (a binary value's handle,
//! `crate::module::binary`), streamed from the binaries directory; and the links history
//! shows next to each file (`(binary, 20 MB, application/pdf)`). The console serves the same
//! download under its session (`/binaries/{id}`), through [`download`].
//!
//! Invariants: the id is a content hash (64 hex digits) or the answer is 404, so no path
//! outside the binaries directory is ever opened; the answer is always an attachment with
//! `nosniff` and a sandboxing CSP, so a stored HTML or SVG file never runs as a page of
//! this origin; the type and name come from the link (the handle's), checked.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::Value;

use super::extract::{Path, Query};
use super::{ApiError, AppState};
use crate::module::binary::{self, Binary};

/// The link's query: the name and type the file is served under.
#[derive(Debug, Default, Deserialize)]
pub struct DownloadQuery {
    name: Option<String>,
    #[serde(rename = "type")]
    mime_type: Option<String>,
}

/// The link to download `file` under `prefix` (`/api/binaries` or the console's `/binaries`).
pub fn link(prefix: &str, file: &Binary) -> String {
    let encode = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    format!(
        "{prefix}/{}?name={}&type={}",
        file.id,
        encode(&file.file_name),
        encode(&file.mime_type)
    )
}

/// `value` with each file's `summary` and `download` link (under `prefix`).
pub fn annotate(value: &mut Value, prefix: &str) {
    binary::annotate(value, &|file| link(prefix, file));
}

pub async fn get(
    State(_state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DownloadQuery>,
) -> Response {
    match download(&id, q).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// The file `id` as an attachment; 404 when the id is not a content id or the bytes are no
/// longer stored (history retention sweeps them with the executions).
pub async fn download(id: &str, q: DownloadQuery) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no stored file {id:?}: it may have been swept with the history that held it"),
        )
        .at("id")
    };
    if !binary::valid_id(id) {
        return Err(not_found());
    }
    let file = tokio::fs::File::open(binary::path_of(id))
        .await
        .map_err(|_| not_found())?;
    let size = file.metadata().await.map(|m| m.len()).ok();
    let mime = q
        .mime_type
        .filter(|t| valid_mime(t))
        .unwrap_or_else(|| binary::DEFAULT_MIME.to_string());
    let name = q
        .name
        .map(|n| n.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "file".to_string());
    let disposition = format!(
        "attachment; filename*=UTF-8''{}",
        utf8_percent_encode(&name, NON_ALPHANUMERIC)
    );
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&mime) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Some(size) = size {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    Ok(response)
}

/// `type/subtype` of token characters (RFC 9110), no parameters.
fn valid_mime(value: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    value.len() <= 255
        && value
            .split_once('/')
            .is_some_and(|(t, s)| token(t) && token(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_media_types_are_served() {
        assert!(valid_mime("application/pdf"));
        assert!(valid_mime("image/svg+xml"));
        assert!(!valid_mime("text/html; charset=utf-8"));
        assert!(!valid_mime("text/html\r\nSet-Cookie: a"));
        assert!(!valid_mime("pdf"));
    }
}
