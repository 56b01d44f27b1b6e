//! The Google Drive app (`modules/google-drive.json`) run by the real binary against a
//! stateful fake of the Drive API v3 (files, their bytes, parents, permissions; on
//! 127.0.0.1, reached through `--app-base-url google-drive=…`), which checks the bearer token
//! as Google does and follows Drive's documented shapes: `multipart/related` uploads under
//! `/upload/drive/v3/files`, `alt=media` downloads, `/export` of Google documents, `q`
//! queries, `pageToken` paging, Google's error envelope.
//!
//! - `every_module_against_a_stateful_drive`: a PDF downloaded (`getAFile`) and uploaded
//!   again (`uploadAFile`) arrives byte for byte with its name, type and folder; a Google
//!   document is exported as PDF; `createAFolder`, `searchForFilesFolders` (paged up to its
//!   limit), `moveAFile`, `shareAFile`, `deleteAFile` (trash and for good), `makeApiCall`;
//!   404 is a `DataError` with Google's message, 403 an `InvalidAccessTokenError`, a refused
//!   token too, 429 with `Retry-After` and a 503 are retried within the call.
//! - `a_refused_token_is_refreshed_and_the_request_sent_again`: a connection stored with a
//!   refresh token and a `google` integration whose token endpoint is the fake's: Drive's 401
//!   makes one refresh grant and the request is sent again with the new token.
//! - `requests_follow_the_published_contract`: every module but the upload (Google's
//!   description has no `/upload` paths) against Prism serving an excerpt of Google's Drive v3
//!   description (`tests/apps/specs/google-drive-v3.yaml`): method, path, query, body and
//!   bearer token as Google's contract says; a page size it does not allow gets Prism's 422.
//! - `a_20_mb_drive_file_downloads_and_uploads_in_little_memory`: `getAFile` → `uploadAFile`
//!   of 20 MiB by `switchyard run`, its peak RSS under three times the file's size.
//! - `watch_emits_each_new_file_once_across_a_restart`: a scheduled `watchFilesInAFolder`
//!   scenario served by `serve` copies each new file of the folder once (files already there
//!   are not emitted), also after `serve` restarts.

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use harness::{Backend, TestDb, binary};

const TOKEN: &str = "ya29.drive-test-token";
const CONNECTION: u64 = 6668027;
const REFRESH: &str = "1//drive-refresh-token";

#[derive(Clone, Debug)]
struct File {
    id: String,
    name: String,
    mime_type: String,
    parents: Vec<String>,
    bytes: Vec<u8>,
    created: String,
    trashed: bool,
}

#[derive(Default)]
struct Drive {
    files: Vec<File>,
    permissions: Vec<(String, Value)>,
    next_id: u64,
    /// Faults answered to the next requests: (status, Retry-After).
    faults: Vec<(u16, Option<u64>)>,
    requests: Vec<String>,
    /// The access token Drive accepts (`TOKEN` unless a test rotates it).
    token: Option<String>,
    /// Refresh grants the token endpoint answered.
    refreshes: usize,
}

type Shared = Arc<Mutex<Drive>>;

impl Drive {
    fn add(&mut self, name: &str, mime: &str, parent: &str, bytes: Vec<u8>) -> String {
        self.next_id += 1;
        let id = format!("file{:04}", self.next_id);
        let created = format!(
            "2026-01-01T00:{:02}:{:02}.000Z",
            self.next_id / 60,
            self.next_id % 60
        );
        self.files.push(File {
            id: id.clone(),
            name: name.into(),
            mime_type: mime.into(),
            parents: vec![parent.into()],
            bytes,
            created,
            trashed: false,
        });
        id
    }

    fn file(&self, id: &str) -> Option<&File> {
        self.files.iter().find(|f| f.id == id)
    }
}

fn resource(f: &File) -> Value {
    json!({"kind": "drive#file", "id": f.id, "name": f.name, "mimeType": f.mime_type,
           "parents": f.parents, "size": f.bytes.len().to_string(), "createdTime": f.created,
           "modifiedTime": f.created, "trashed": f.trashed,
           "webViewLink": format!("https://drive.google.com/file/d/{}/view", f.id)})
}

/// Google's error envelope.
fn error(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap();
    (
        code,
        axum::Json(json!({"error": {"code": status, "message": message,
        "errors": [{"message": message, "domain": "global"}]}})),
    )
        .into_response()
}

/// The token check and the injected faults, before any request is served.
fn gate(drive: &Shared, headers: &HeaderMap, what: String) -> Option<Response> {
    let mut d = drive.lock().unwrap();
    d.requests.push(what);
    let valid = d.token.clone().unwrap_or_else(|| TOKEN.to_string());
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {valid}"))
    {
        return Some(error(
            401,
            "Request had invalid authentication credentials.",
        ));
    }
    if !d.faults.is_empty() {
        let (status, retry) = d.faults.remove(0);
        let mut response = error(status, "injected");
        if let Some(secs) = retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, secs.to_string().parse().unwrap());
        }
        return Some(response);
    }
    None
}

async fn get_file(
    State(drive): State<Shared>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = gate(&drive, &headers, format!("GET {id}")) {
        return refused;
    }
    let d = drive.lock().unwrap();
    let Some(f) = d.file(&id) else {
        return error(404, &format!("File not found: {id}."));
    };
    if q.get("alt").map(String::as_str) == Some("media") {
        if f.mime_type.starts_with("application/vnd.google-apps.") {
            return error(
                403,
                "Only files with binary content can be downloaded. Use Export with Docs Editors files.",
            );
        }
        return (
            [(header::CONTENT_TYPE, f.mime_type.clone())],
            f.bytes.clone(),
        )
            .into_response();
    }
    axum::Json(resource(f)).into_response()
}

async fn export(
    State(drive): State<Shared>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = gate(&drive, &headers, format!("EXPORT {id}")) {
        return refused;
    }
    let d = drive.lock().unwrap();
    let Some(f) = d.file(&id) else {
        return error(404, &format!("File not found: {id}."));
    };
    let Some(mime) = q.get("mimeType") else {
        return error(400, "Required parameter: mimeType");
    };
    let body = format!("%PDF {} exported from {}", f.name, f.mime_type);
    ([(header::CONTENT_TYPE, mime.clone())], body).into_response()
}

async fn patch_file(
    State(drive): State<Shared>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = gate(&drive, &headers, format!("PATCH {id}")) {
        return refused;
    }
    let patch: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let mut d = drive.lock().unwrap();
    let Some(f) = d.files.iter_mut().find(|f| f.id == id) else {
        return error(404, &format!("File not found: {id}."));
    };
    if let Some(remove) = q.get("removeParents") {
        f.parents.retain(|p| !remove.split(',').any(|r| r == p));
    }
    if let Some(add) = q.get("addParents") {
        f.parents.extend(add.split(',').map(str::to_string));
    }
    if let Some(name) = patch["name"].as_str() {
        f.name = name.into();
    }
    if let Some(trashed) = patch["trashed"].as_bool() {
        f.trashed = trashed;
    }
    axum::Json(resource(f)).into_response()
}

async fn delete_file(
    State(drive): State<Shared>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = gate(&drive, &headers, format!("DELETE {id}")) {
        return refused;
    }
    let mut d = drive.lock().unwrap();
    let before = d.files.len();
    d.files.retain(|f| f.id != id);
    if d.files.len() == before {
        return error(404, &format!("File not found: {id}."));
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn permissions(
    State(drive): State<Shared>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = gate(&drive, &headers, format!("SHARE {id}")) {
        return refused;
    }
    let permission: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut d = drive.lock().unwrap();
    if d.file(&id).is_none() {
        return error(404, &format!("File not found: {id}."));
    }
    d.permissions.push((id, permission.clone()));
    let mut out = permission;
    out["kind"] = json!("drive#permission");
    out["id"] = json!("perm1");
    axum::Json(out).into_response()
}

/// `q` as the modules write it: `'ID' in parents`, `name contains 'x'`, `trashed = false`,
/// `mimeType = …` / `!= …`, joined by `and`.
fn matches(f: &File, q: &str) -> bool {
    q.split(" and ").all(|clause| {
        let clause = clause.trim();
        let quoted = |s: &str| s.trim().trim_matches('\'').replace("\\'", "'");
        if let Some(parent) = clause.strip_suffix(" in parents") {
            f.parents.contains(&quoted(parent))
        } else if let Some(text) = clause.strip_prefix("name contains ") {
            f.name.contains(&quoted(text))
        } else if clause == "trashed = false" {
            !f.trashed
        } else if let Some(mime) = clause.strip_prefix("mimeType != ") {
            f.mime_type != quoted(mime)
        } else if let Some(mime) = clause.strip_prefix("mimeType = ") {
            f.mime_type == quoted(mime)
        } else {
            panic!("the fake does not know the query clause {clause:?}")
        }
    })
}

async fn list_or_create(
    State(drive): State<Shared>,
    method: axum::http::Method,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = gate(&drive, &headers, format!("{method} files")) {
        return refused;
    }
    let mut d = drive.lock().unwrap();
    if method == axum::http::Method::POST {
        let meta: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
        let parent = meta["parents"][0].as_str().unwrap_or("root").to_string();
        let id = d.add(
            meta["name"].as_str().unwrap_or("Untitled"),
            meta["mimeType"]
                .as_str()
                .unwrap_or("application/octet-stream"),
            &parent,
            Vec::new(),
        );
        return axum::Json(resource(d.file(&id).unwrap())).into_response();
    }
    let query = q.get("q").cloned().unwrap_or_default();
    let mut found: Vec<&File> = d.files.iter().filter(|f| matches(f, &query)).collect();
    if q.get("orderBy").is_some_and(|o| o.ends_with(" desc")) {
        found.reverse();
    }
    let size: usize = q
        .get("pageSize")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let start: usize = q.get("pageToken").and_then(|s| s.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = found
        .iter()
        .skip(start)
        .take(size)
        .map(|f| resource(f))
        .collect();
    let mut out = json!({"kind": "drive#fileList", "files": page});
    if start + size < found.len() {
        out["nextPageToken"] = json!((start + size).to_string());
    }
    axum::Json(out).into_response()
}

/// `POST /upload/drive/v3/files?uploadType=multipart`: a `multipart/related` body of the
/// metadata (JSON) and the media, as Drive documents it.
async fn upload(
    State(drive): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = gate(&drive, &headers, "UPLOAD".into()) {
        return refused;
    }
    if q.get("uploadType").map(String::as_str) != Some("multipart") {
        return error(400, "uploadType must be multipart here");
    }
    let content_type = headers[header::CONTENT_TYPE].to_str().unwrap().to_string();
    let Some(boundary) = content_type.strip_prefix("multipart/related; boundary=") else {
        return error(400, &format!("not multipart/related: {content_type}"));
    };
    let delimiter = format!("--{boundary}\r\n");
    let mut parts = Vec::new();
    let mut rest: &[u8] = &body;
    while let Some(at) = find(rest, delimiter.as_bytes()) {
        rest = &rest[at + delimiter.len()..];
        let headers_end = find(rest, b"\r\n\r\n").unwrap();
        let part_headers = String::from_utf8_lossy(&rest[..headers_end]).to_string();
        let content = &rest[headers_end + 4..];
        let end = find(content, format!("\r\n--{boundary}").as_bytes()).unwrap();
        parts.push((part_headers, content[..end].to_vec()));
        rest = &content[end + 2..];
    }
    if parts.len() != 2 || !parts[0].0.contains("application/json") {
        return error(400, "expected the metadata and the media");
    }
    let meta: Value = serde_json::from_slice(&parts[0].1).unwrap();
    let media_type = parts[1].0.trim_start_matches("Content-Type: ").to_string();
    let mut d = drive.lock().unwrap();
    let parent = meta["parents"][0].as_str().unwrap_or("root").to_string();
    let mime = meta["mimeType"].as_str().unwrap_or(&media_type).to_string();
    let id = d.add(
        meta["name"].as_str().unwrap_or("Untitled"),
        &mime,
        &parent,
        std::mem::take(&mut parts[1].1),
    );
    axum::Json(resource(d.file(&id).unwrap())).into_response()
}

/// Google's token endpoint for the refresh grant: the client's credentials and the refresh
/// token issued with the connection give Drive's current access token.
async fn token(State(drive): State<Shared>, body: Bytes) -> Response {
    let url = reqwest::Url::parse(&format!(
        "http://form.invalid/?{}",
        String::from_utf8_lossy(&body)
    ))
    .unwrap();
    let form: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let ok = form.get("grant_type").map(String::as_str) == Some("refresh_token")
        && form.get("refresh_token").map(String::as_str) == Some(REFRESH);
    if !ok {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    let mut d = drive.lock().unwrap();
    d.refreshes += 1;
    let token = d.token.clone().unwrap_or_else(|| TOKEN.to_string());
    axum::Json(
        json!({"access_token": token, "token_type": "Bearer", "expires_in": 3599,
                      "scope": "https://www.googleapis.com/auth/drive"}),
    )
    .into_response()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn fake_drive() -> (String, Shared) {
    let drive: Shared = Arc::default();
    let app = Router::new()
        .route("/drive/v3/files", get(list_or_create).post(list_or_create))
        .route(
            "/drive/v3/files/{id}",
            get(get_file).patch(patch_file).delete(delete_file),
        )
        .route("/drive/v3/files/{id}/export", get(export))
        .route("/drive/v3/files/{id}/permissions", post(permissions))
        .route("/upload/drive/v3/files", post(upload))
        .route("/token", post(token))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(drive.clone());
    let addr = common::server::serve(app).await;
    (format!("http://{addr}"), drive)
}

fn switchyard(api: &str, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("SWITCHYARD_ALLOW_EGRESS", "127.0.0.1")
        .env("SWITCHYARD_APP_BASE_URLS", format!("google-drive={api}"))
        .env_remove("SWITCHYARD_DATABASE_URL")
        .env_remove("SWITCHYARD_MASTER_KEY")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn add_connection(api: &str, data: &Path, token: &str) {
    let out = switchyard(
        api,
        &[
            "connections",
            "add",
            "drive",
            "--app",
            "google-drive",
            "--access-token",
            token,
            "--id",
            &CONNECTION.to_string(),
            "--no-test",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A module as a Make export writes it: version 4, the connection by Make's id.
fn module(id: u32, name: &str, mapper: Value) -> Value {
    json!({"id": id, "module": format!("google-drive:{name}"), "version": 4,
           "parameters": {"__IMTCONN__": CONNECTION}, "mapper": mapper})
}

fn run(api: &str, dir: &Path, data: &Path, flow: Vec<Value>) -> Value {
    let file = dir.join("scenario.json");
    std::fs::write(&file, json!({"name": "drive", "flow": flow}).to_string()).unwrap();
    let out = switchyard(
        api,
        &[
            "run",
            file.to_str().unwrap(),
            "--json",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no report: {}", String::from_utf8_lossy(&out.stderr)))
}

/// The output of module `id` in a report's log.
fn output(report: &Value, id: u64) -> Value {
    report["log"]
        .as_array()
        .and_then(|log| log.iter().find(|e| e["module"] == id))
        .map(|e| e["output"].clone())
        .unwrap_or_else(|| panic!("no output of module {id}: {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_module_against_a_stateful_drive() {
    let (api, drive) = fake_drive().await;
    let pdf: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let (seed, doc, folder) = {
        let mut d = drive.lock().unwrap();
        let folder = d.add(
            "Invoices",
            "application/vnd.google-apps.folder",
            "root",
            Vec::new(),
        );
        let seed = d.add("invoice 7.pdf", "application/pdf", "root", pdf.clone());
        let doc = d.add(
            "Notes",
            "application/vnd.google-apps.document",
            "root",
            Vec::new(),
        );
        (seed, doc, folder)
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    add_connection(&api, &data, TOKEN);

    // Download, then upload again into a folder picked in Make's picker (`/ID`).
    let report = run(
        &api,
        dir.path(),
        &data,
        vec![
            module(1, "getAFile", json!({"select": "map", "file": seed})),
            module(
                2,
                "uploadAFile",
                json!({"select": "map", "destination": "drive",
            "folderId": format!("/{folder}"), "filename": "{{1.fileName}}",
            "title": "copy of {{1.fileName}}", "data": "{{1.data}}", "convert": false}),
            ),
        ],
    );
    assert_eq!(report["status"], "success", "{report}");
    let got = output(&report, 1);
    assert_eq!(got["fileName"], "invoice 7.pdf", "{got}");
    assert_eq!(got["data"]["size"], pdf.len(), "{got}");
    assert_eq!(got["data"]["mimeType"], "application/pdf", "{got}");
    let uploaded = output(&report, 2);
    let new_id = uploaded["id"]
        .as_str()
        .expect("the new file's id")
        .to_string();
    {
        let d = drive.lock().unwrap();
        let f = d.file(&new_id).unwrap();
        assert_eq!(f.name, "copy of invoice 7.pdf");
        assert_eq!(f.mime_type, "application/pdf");
        assert_eq!(f.parents, std::slice::from_ref(&folder));
        assert!(f.bytes == pdf, "the uploaded bytes differ");
    }

    // A Google document is exported in the format chosen for documents.
    let report = run(
        &api,
        dir.path(),
        &data,
        vec![module(
            1,
            "getAFile",
            json!({"select": "map", "file": doc, "formatDocuments": "application/pdf"}),
        )],
    );
    assert_eq!(report["status"], "success", "{report}");
    let exported = output(&report, 1);
    assert_eq!(exported["fileName"], "Notes", "{exported}");
    assert_eq!(exported["mimeType"], "application/pdf", "{exported}");
    assert_eq!(
        exported["data"]["mimeType"], "application/pdf",
        "{exported}"
    );

    // A folder, a search paged up to its limit, a move, a share, a trash, a deletion.
    let report = run(
        &api,
        dir.path(),
        &data,
        vec![
            module(
                1,
                "createAFolder",
                json!({"name": "Archive", "folderId": format!("/{folder}")}),
            ),
            module(
                2,
                "searchForFilesFolders",
                json!({"searchType": "files", "query": "invoice",
            "limit": 1}),
            ),
            module(
                3,
                "moveAFile",
                json!({"file": seed, "folderId": "{{1.id}}"}),
            ),
            module(
                4,
                "shareAFile",
                json!({"file": seed, "role": "writer", "type": "user",
            "emailAddress": "ann@example.com", "sendNotificationEmail": false}),
            ),
            module(
                5,
                "makeApiCall",
                json!({"url": format!("/drive/v3/files/{seed}"),
            "method": "GET"}),
            ),
        ],
    );
    assert_eq!(report["status"], "success", "{report}");
    let archive = output(&report, 1);
    assert_eq!(
        archive["mimeType"], "application/vnd.google-apps.folder",
        "{archive}"
    );
    assert_eq!(archive["parents"], json!([folder]), "{archive}");
    let found: Vec<Value> = report["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["module"] == 2)
        .map(|e| e["output"].clone())
        .collect();
    assert_eq!(found.len(), 1, "the limit holds: {report}");
    assert!(
        found[0]["name"].as_str().unwrap().contains("invoice"),
        "{found:?}"
    );
    assert_eq!(
        output(&report, 3)["parents"],
        json!([archive["id"]]),
        "{report}"
    );
    assert_eq!(output(&report, 4)["role"], "writer", "{report}");
    assert_eq!(
        output(&report, 5)["body"]["name"],
        "invoice 7.pdf",
        "{report}"
    );
    {
        let d = drive.lock().unwrap();
        assert_eq!(
            d.permissions,
            [(
                seed.clone(),
                json!({"role": "writer", "type": "user",
            "emailAddress": "ann@example.com"})
            )]
        );
        let query = d.requests.iter().filter(|r| *r == "GET files").count();
        assert_eq!(
            query, 1,
            "one page was enough for the limit: {:?}",
            d.requests
        );
    }
    let report = run(
        &api,
        dir.path(),
        &data,
        vec![
            module(
                1,
                "deleteAFile",
                json!({"file": new_id, "permanently": false}),
            ),
            module(2, "deleteAFile", json!({"file": doc, "permanently": true})),
        ],
    );
    assert_eq!(report["status"], "success", "{report}");
    {
        let d = drive.lock().unwrap();
        assert!(d.file(&new_id).unwrap().trashed);
        assert!(d.file(&doc).is_none());
    }

    // Errors: 404 with Google's message, 403, 429 and 503 retried within the call.
    let report = run(
        &api,
        dir.path(),
        &data,
        vec![module(1, "getAFile", json!({"file": "nope"}))],
    );
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(report["error"]["name"], "DataError", "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("File not found: nope."),
        "{report}"
    );
    drive.lock().unwrap().faults = vec![(403, None)];
    let report = run(
        &api,
        dir.path(),
        &data,
        vec![module(1, "getAFile", json!({"file": seed}))],
    );
    assert_eq!(
        report["error"]["name"], "InvalidAccessTokenError",
        "{report}"
    );
    drive.lock().unwrap().faults = vec![(429, Some(1)), (503, None)];
    let before = drive.lock().unwrap().requests.len();
    let report = run(
        &api,
        dir.path(),
        &data,
        vec![module(1, "getAFile", json!({"file": seed}))],
    );
    assert_eq!(report["status"], "success", "{report}");
    // Two refused attempts, then the metadata and the bytes.
    assert_eq!(drive.lock().unwrap().requests.len() - before, 4);

    // A token Google refuses fails the module as Make does.
    let other = tempfile::tempdir().unwrap();
    add_connection(&api, other.path(), "ya29.revoked");
    let report = run(
        &api,
        dir.path(),
        other.path(),
        vec![module(1, "getAFile", json!({"file": seed}))],
    );
    assert_eq!(
        report["error"]["name"], "InvalidAccessTokenError",
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_refreshed_and_the_request_sent_again() {
    let (api, drive) = fake_drive().await;
    let seed = drive
        .lock()
        .unwrap()
        .add("a.pdf", "application/pdf", "root", b"%PDF-1".to_vec());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let integrations = dir.path().join("integrations.json");
    std::fs::write(
        &integrations,
        json!([{"provider": "google", "alias": "g", "context": "user",
                "client_id": "drive-client", "client_secret": "drive-secret",
                "token_url": format!("{api}/token")}])
        .to_string(),
    )
    .unwrap();
    let integrations = integrations.to_str().unwrap();
    let out = switchyard(
        &api,
        &[
            "connections",
            "add",
            "drive",
            "--app",
            "google-drive",
            "--access-token",
            TOKEN,
            "--refresh-token",
            REFRESH,
            "--integration",
            "g",
            "--integrations",
            integrations,
            "--expires-in",
            "3600",
            "--id",
            &CONNECTION.to_string(),
            "--no-test",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Drive now refuses the stored token; the token endpoint hands out the new one.
    drive.lock().unwrap().token = Some("ya29.rotated-token".into());
    let file = dir.path().join("scenario.json");
    let flow = vec![module(1, "getAFile", json!({"file": seed}))];
    std::fs::write(&file, json!({"name": "drive", "flow": flow}).to_string()).unwrap();
    let out = switchyard(
        &api,
        &[
            "run",
            file.to_str().unwrap(),
            "--json",
            "--data-dir",
            data.to_str().unwrap(),
            "--integrations",
            integrations,
        ],
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no report: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(output(&report, 1)["data"]["size"], 6, "{report}");
    let d = drive.lock().unwrap();
    assert_eq!(d.refreshes, 1, "one refresh grant");
    assert_eq!(
        d.requests.first().map(String::as_str),
        Some(format!("GET {seed}").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_follow_the_published_contract() {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/specs/google-drive-v3.yaml");
    let prism = common::prism::Prism::start(&spec).await;
    let api = prism.url.trim_end_matches('/').to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    add_connection(&api, &data, TOKEN);
    for (name, mapper) in [
        (
            "getAFile",
            json!({"select": "map", "file": "/1AbC", "formatDocuments": "application/pdf"}),
        ),
        (
            "createAFolder",
            json!({"name": "Archive", "folderId": "/1Parent"}),
        ),
        (
            "searchForFilesFolders",
            json!({"searchType": "folders", "folderId": "/1Parent",
            "query": "O'Brien", "limit": 2}),
        ),
        (
            "watchFilesInAFolder",
            json!({"folderId": "/1Parent", "watch": "modifiedTime", "limit": 2}),
        ),
        ("moveAFile", json!({"file": "1AbC", "folderId": "/1Target"})),
        (
            "shareAFile",
            json!({"file": "1AbC", "role": "reader", "type": "anyone",
            "allowFileDiscovery": false}),
        ),
        (
            "shareAFile",
            json!({"file": "1AbC", "role": "writer", "type": "user",
            "emailAddress": "ann@example.com", "sendNotificationEmail": true,
            "emailMessage": "For you"}),
        ),
        ("deleteAFile", json!({"file": "1AbC", "permanently": false})),
        ("deleteAFile", json!({"file": "1AbC", "permanently": true})),
        (
            "makeApiCall",
            json!({"url": "/drive/v3/files", "method": "GET",
            "qs": [{"key": "pageSize", "value": "5"}]}),
        ),
    ] {
        let report = run(&api, dir.path(), &data, vec![module(1, name, mapper)]);
        assert_eq!(report["status"], "success", "{name}: {report}");
    }
    // A page size Google's description does not allow is refused before it reaches Drive.
    let report = run(
        &api,
        dir.path(),
        &data,
        vec![module(
            1,
            "makeApiCall",
            json!({"url": "/drive/v3/files", "method": "GET",
               "qs": [{"key": "pageSize", "value": "5000"}]}),
        )],
    );
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(report["error"]["details"]["statusCode"], 422, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_drive_file_downloads_and_uploads_in_little_memory() {
    const SIZE: usize = 20 * 1024 * 1024;
    let (api, drive) = fake_drive().await;
    let bytes: Vec<u8> = (0..SIZE)
        .map(|i| ((i * 7 + i / 1000) % 251) as u8)
        .collect();
    let seed = drive
        .lock()
        .unwrap()
        .add("big.pdf", "application/pdf", "root", bytes.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    add_connection(&api, &data, TOKEN);
    let file = dir.path().join("scenario.json");
    let flow = vec![
        module(1, "getAFile", json!({"select": "map", "file": seed})),
        module(
            2,
            "uploadAFile",
            json!({"folderId": "/root", "filename": "again.pdf",
            "data": "{{1.data}}"}),
        ),
    ];
    std::fs::write(&file, json!({"name": "big", "flow": flow}).to_string()).unwrap();
    let temp = dir.path().join("tmp");
    std::fs::create_dir(&temp).unwrap();
    let (path, data_dir) = (
        file.to_string_lossy().to_string(),
        data.to_string_lossy().to_string(),
    );
    let base = format!("google-drive={api}");
    let (code, stdout, peak) = tokio::task::spawn_blocking(move || {
        let args = [
            "run",
            path.as_str(),
            "--json",
            "--data-dir",
            data_dir.as_str(),
            "--allow-egress",
            "127.0.0.1",
            "--app-base-url",
            base.as_str(),
        ];
        common::rss::run_measured(binary(), &args, &temp)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stdout}");
    let d = drive.lock().unwrap();
    let again = d
        .files
        .iter()
        .find(|f| f.name == "again.pdf")
        .expect("uploaded");
    assert!(again.bytes == bytes, "the uploaded bytes differ");
    assert!(stdout.len() < 64 * 1024, "{} bytes of report", stdout.len());
    eprintln!("peak RSS of `switchyard run`: {peak} bytes for a {SIZE}-byte Drive file");
    assert!(
        peak < 3 * SIZE as u64,
        "peak RSS {peak} bytes is not under three times the file's {SIZE} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_emits_each_new_file_once_across_a_restart() {
    let (api, drive) = fake_drive().await;
    let (folder, log) = {
        let mut d = drive.lock().unwrap();
        let folder = d.add(
            "Inbox",
            "application/vnd.google-apps.folder",
            "root",
            Vec::new(),
        );
        let log = d.add(
            "Log",
            "application/vnd.google-apps.folder",
            "root",
            Vec::new(),
        );
        d.add("old.txt", "text/plain", &folder, b"old".to_vec());
        (folder, log)
    };
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let base = format!("google-drive={api}");
    db.add_access_token_connection(
        "drive",
        "google-drive",
        TOKEN,
        &CONNECTION.to_string(),
        &base,
    );
    // Each new file is copied into the log folder under its own name.
    let blueprint = json!({
        "name": "copy new files",
        "flow": [
            module(1, "watchFilesInAFolder", json!({"folderId": format!("/{folder}"),
                "watch": "createdTime", "limit": 5})),
            module(2, "getAFile", json!({"file": "{{1.id}}"})),
            module(3, "uploadAFile", json!({"folderId": log, "filename": "{{1.name}}",
                "data": "{{2.data}}"}))
        ],
        "scheduling": {"type": "indefinitely", "interval": 1}
    });
    let serve_args = [
        "--min-interval-seconds",
        "1",
        "--allow-egress",
        "127.0.0.1",
        "--app-base-url",
        &base,
    ];
    let service = db.serve(&serve_args).await;
    let id = service.api.create(&blueprint).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = service
        .api
        .post(&format!("/api/scenarios/{id}/activate"), &json!({}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    let logged = || -> Vec<(String, Vec<u8>)> {
        let d = drive.lock().unwrap();
        d.files
            .iter()
            .filter(|f| f.parents == [log.clone()])
            .map(|f| (f.name.clone(), f.bytes.clone()))
            .collect()
    };
    let add = |name: &str| {
        drive
            .lock()
            .unwrap()
            .add(name, "text/plain", &folder, name.as_bytes().to_vec());
    };
    let wait_for = |count: usize| async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while logged().len() < count {
            assert!(Instant::now() < deadline, "only {:?} copied", logged());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    db.executions_at_least(1).await;
    add("a.txt");
    add("b.txt");
    wait_for(2).await;
    let names = |all: Vec<(String, Vec<u8>)>| {
        all.into_iter()
            .map(|(n, b)| {
                assert_eq!(n.as_bytes(), b.as_slice(), "the copy of {n} has its bytes");
                n
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(names(logged()), ["a.txt", "b.txt"]);

    db.executions_settled().await;
    drop(service);
    let service = db.serve(&serve_args).await;
    add("c.txt");
    wait_for(3).await;
    let before = db.ended_executions();
    db.executions_at_least(before + 2).await;
    assert_eq!(names(logged()), ["a.txt", "b.txt", "c.txt"]);
    drop(service);
}
