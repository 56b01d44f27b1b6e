//! Files are binary data, not JSON arrays of numbers (issue 24 point 2), checked on the real
//! `switchyard` binary against a file server of this test on 127.0.0.1:
//!
//! - `a_20_mb_file_goes_through_download_and_multipart_upload_in_little_memory`: `switchyard
//!   run` downloads a 20 MiB PDF (`http:ActionGetFile`) and uploads it again as a multipart
//!   file part (`http:MakeRequest`); the server receives the same bytes, the report carries a
//!   small handle, and the child's peak RSS (its `ru_maxrss`, read with `wait4`) stays under
//!   three times the file's size;
//! - `get_a_file_fails_on_an_error_status`: a 404 is the module's error, not a file of the
//!   error page;
//! - `history_shows_a_file_as_its_summary_with_a_download_link`: `switchyard serve` runs a
//!   webhook → get a file → set variable scenario; the API's page of module 2 shows
//!   `(binary, 2.5 MB, application/pdf)` and a link that returns the bytes with the token
//!   (and 401 without); the console's bundles page shows the summary and its own link, which
//!   returns the bytes under the session only; Make's `{"type":"Buffer"}` JSON from the
//!   webhook still reads as bytes (`base64`, `length`, `toBinary`).

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::json;

use harness::{Backend, TOKEN, TestDb, hook_json};

/// The bytes of the served file of `size` bytes: a pattern that no shifted copy matches.
fn file_bytes(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| ((i * 31 + i / 4096) % 251) as u8)
        .collect()
}

/// One upload received: its content type and raw body.
type Upload = (String, Vec<u8>);

/// Uploads received.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Upload>>>);

/// `GET /files/{size}/report.pdf`: `size` pattern bytes as `application/pdf`, streamed in
/// 64 KiB chunks; `POST /upload`: the body is kept.
async fn file_server() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route(
            "/files/{size}/report.pdf",
            get(|Path(size): Path<usize>| async move {
                let bytes = file_bytes(size);
                let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
                    .chunks(64 * 1024)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect();
                (
                    [
                        (header::CONTENT_TYPE, "application/pdf".to_string()),
                        (header::CONTENT_LENGTH, size.to_string()),
                    ],
                    Body::from_stream(futures::stream::iter(chunks)),
                )
            }),
        )
        .route(
            "/upload",
            post(
                |State(received): State<Received>, request: axum::extract::Request| async move {
                    let content_type = request
                        .headers()
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let mut body = Vec::new();
                    let mut stream = request.into_body().into_data_stream();
                    while let Some(chunk) = stream.next().await {
                        body.extend_from_slice(&chunk.unwrap());
                    }
                    received.0.lock().unwrap().push((content_type, body));
                    axum::Json(json!({"ok": true})).into_response()
                },
            ),
        )
        .with_state(received.clone());
    let addr = common::server::serve(app).await;
    (format!("http://{addr}"), received)
}

/// The file part of a multipart body: the bytes between its headers and the next boundary.
fn file_part<'a>(content_type: &str, body: &'a [u8], file_name: &str) -> &'a [u8] {
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap_or_else(|| panic!("not multipart: {content_type}"));
    let marker = format!("filename=\"{file_name}\"");
    let at = find(body, marker.as_bytes()).expect("the file part");
    let start = at + find(&body[at..], b"\r\n\r\n").expect("the part's headers end") + 4;
    let end = start
        + find(&body[start..], format!("\r\n--{boundary}").as_bytes()).expect("the part's end");
    &body[start..end]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_file_goes_through_download_and_multipart_upload_in_little_memory() {
    const SIZE: usize = 20 * 1024 * 1024;
    let (base, received) = file_server().await;
    let dir = tempfile::tempdir().unwrap();
    let blueprint = json!({"name": "download and upload", "flow": [
        {"id": 1, "module": "http:ActionGetFile", "version": 3,
         "mapper": {"url": format!("{base}/files/{SIZE}/report.pdf"), "method": "get"}},
        {"id": 2, "module": "http:MakeRequest", "version": 4,
         "mapper": {"url": format!("{base}/upload"), "method": "post", "contentType": "multipart",
                    "multipartBodyContent": [
                        {"name": "title", "value": "{{1.fileName}} of {{1.fileSize}} bytes"},
                        {"name": "file", "fieldType": "file", "data": "{{1.data}}",
                         "fileName": "{{1.fileName}}"}
                    ]}}
    ]});
    let file = dir.path().join("blueprint.json");
    std::fs::write(&file, blueprint.to_string()).unwrap();
    let temp = dir.path().join("tmp");
    std::fs::create_dir(&temp).unwrap();
    let path = file.to_string_lossy().to_string();
    let (code, stdout, peak) = tokio::task::spawn_blocking(move || {
        let args = [
            "run",
            path.as_str(),
            "--json",
            "--allow-egress",
            "127.0.0.1",
        ];
        common::rss::run_measured(harness::binary(), &args, &temp)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stdout}");

    // The server got the very bytes, as a file part with the downloaded file's name and type.
    let uploads = received.0.lock().unwrap().clone();
    assert_eq!(uploads.len(), 1);
    let (content_type, body) = &uploads[0];
    let part = file_part(content_type, body, "report.pdf");
    assert_eq!(part.len(), SIZE);
    assert!(
        part == file_bytes(SIZE).as_slice(),
        "the uploaded bytes differ"
    );
    let headers_at = find(body, b"filename=\"report.pdf\"").unwrap();
    assert!(
        body[headers_at..]
            .starts_with(b"filename=\"report.pdf\"\r\nContent-Type: application/pdf\r\n"),
        "{}",
        String::from_utf8_lossy(&body[headers_at..headers_at + 80])
    );
    assert!(find(body, format!("report.pdf of {SIZE} bytes").as_bytes()).is_some());

    // The report carries a handle, not 20 million numbers.
    assert!(stdout.len() < 64 * 1024, "{} bytes of report", stdout.len());
    assert!(stdout.contains("__IMTBINARY__"), "{stdout}");
    assert!(stdout.contains(&SIZE.to_string()), "{stdout}");

    eprintln!("peak RSS of `switchyard run`: {peak} bytes for a {SIZE}-byte file");
    assert!(
        peak < 3 * SIZE as u64,
        "peak RSS {peak} bytes is not under three times the file's {SIZE} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_a_file_fails_on_an_error_status() {
    let (base, _) = file_server().await;
    let dir = tempfile::tempdir().unwrap();
    let blueprint = json!({"name": "missing", "flow": [
        {"id": 1, "module": "http:ActionGetFile", "version": 3,
         "mapper": {"url": format!("{base}/nothing-here.pdf")}}
    ]});
    let file = dir.path().join("blueprint.json");
    std::fs::write(&file, blueprint.to_string()).unwrap();
    let out = Command::new(harness::binary())
        .args([
            "run",
            file.to_str().unwrap(),
            "--json",
            "--allow-egress",
            "127.0.0.1",
        ])
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(report["error"]["details"]["statusCode"], 404, "{report}");
}

/// Signs in to the console; the session cookie.
async fn console_session(http: &reqwest::Client, base: &str) -> String {
    let signed = http
        .post(format!("{base}/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303);
    signed.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_shows_a_file_as_its_summary_with_a_download_link() {
    const SIZE: usize = 2_500_000;
    let (files, _) = file_server().await;
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let svc = db.serve(&["--allow-egress", "127.0.0.1"]).await;
    let api = &svc.api;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let blueprint = json!({"name": "files", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "files"}},
        {"id": 2, "module": "http:ActionGetFile", "version": 3,
         "mapper": {"url": "{{1.url}}"}},
        {"id": 3, "module": "util:SetVariables",
         "mapper": {"scope": "roundtrip", "variables": [
             {"name": "fromMake", "value": "{{base64(1.buf)}}"},
             {"name": "makeLength", "value": "{{length(1.buf)}}"},
             {"name": "asFile", "value": "{{toBinary(1.buf)}}"},
             {"name": "fileLength", "value": "{{length(2.data)}}"}
         ]}}
    ]});
    let (_, hook) = api.create_active(&blueprint).await;
    let body = json!({"url": format!("{files}/files/{SIZE}/report.pdf"),
                      "buf": {"type": "Buffer", "data": [1, 2, 3]}});
    let reply = hook_json(&http, &svc.url(&hook.unwrap()), &body)
        .await
        .expect(200, "webhook");
    let id = harness::execution_header(&reply);
    let execution = api.finished(&id).await;
    assert_eq!(execution["status"], "success", "{execution}");

    // Make's JSON form of a buffer is still read as bytes.
    let page = api.get(&format!("/api/executions/{id}?module=3")).await;
    let vars = &page.json["bundles"][0]["output"];
    assert_eq!(vars["fromMake"], "AQID", "{vars}");
    assert_eq!(vars["makeLength"], 3, "{vars}");
    assert_eq!(vars["fileLength"], SIZE, "{vars}");
    assert_eq!(vars["asFile"]["size"], 3, "{vars}");

    // The API shows the file as its summary and a link, not as its bytes.
    let page = api.get(&format!("/api/executions/{id}?module=2")).await;
    assert!(page.text.len() < 4096, "{} bytes", page.text.len());
    let output = &page.json["bundles"][0]["output"];
    assert_eq!(output["fileName"], "report.pdf", "{output}");
    assert_eq!(output["fileSize"], SIZE, "{output}");
    let data = &output["data"];
    assert_eq!(
        data["summary"], "(binary, 2.5 MB, application/pdf)",
        "{data}"
    );
    let link = data["download"].as_str().expect("a download link");
    assert!(link.starts_with("/api/binaries/"), "{link}");

    let downloaded = api
        .client
        .get(svc.url(link))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(downloaded.status(), 200);
    assert_eq!(
        downloaded.headers()[header::CONTENT_TYPE],
        "application/pdf"
    );
    let disposition = downloaded.headers()[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(disposition, "attachment; filename*=UTF-8''report%2Epdf");
    assert_eq!(downloaded.headers()["x-content-type-options"], "nosniff");
    let bytes = downloaded.bytes().await.unwrap();
    assert!(
        bytes.as_ref() == file_bytes(SIZE).as_slice(),
        "the downloaded bytes differ"
    );
    let anonymous = http.get(svc.url(link)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let unknown = api.get(&format!("/api/binaries/{}", "0".repeat(64))).await;
    assert_eq!(unknown.status, 404);
    let traversal = api.get("/api/binaries/..%2F..%2Fetc%2Fpasswd").await;
    assert_eq!(traversal.status, 404);

    // The console: the summary, a link of its own, the bytes under the session only.
    let cookie = console_session(&http, &svc.base).await;
    let fragment = http
        .get(svc.url(&format!(
            "/executions/{id}/bundles?module=2&offset=0&bundles=output"
        )))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        fragment.contains("(binary, 2.5 MB, application/pdf)"),
        "{fragment}"
    );
    let start = fragment
        .find("href=\"/binaries/")
        .expect("a console download link")
        + "href=\"".len();
    let console_link = fragment[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let downloaded = http
        .get(svc.url(&console_link))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(downloaded.status(), 200);
    let bytes = downloaded.bytes().await.unwrap();
    assert_eq!(bytes.len(), SIZE);
    let signed_out = http.get(svc.url(&console_link)).send().await.unwrap();
    assert_ne!(signed_out.status(), 200);
}
