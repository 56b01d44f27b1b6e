//! Helpers for the stored-connections tests: a planted secret (a unique random string a test
//! then looks for everywhere it must not be), a loopback server that records the credentials
//! each request carried without ever echoing them, a grep of the raw bytes of every file under
//! a directory, and the `switchyard` binary with its output and standard input.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::any;
use serde_json::{Map, Value, json};

/// A unique secret for one test: `planted-` and 32 random hex digits.
pub fn planted(what: &str) -> String {
    format!("planted-{what}-{}", uuid::Uuid::new_v4().simple())
}

/// What one request to the [`Recorder`] carried.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub path: String,
    pub authorization: Option<String>,
    pub api_key_header: Option<String>,
    pub query: Map<String, Value>,
}

/// A loopback server answering `{"ok": true}` to anything, recording each request's
/// `Authorization` and `X-Api-Key` headers and its query.
#[derive(Clone, Default)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    /// Starts one; returns it and its base URL.
    pub async fn start() -> (Recorder, String) {
        let recorder = Recorder::default();
        let app = Router::new()
            .route("/{*path}", any(record))
            .with_state(recorder.clone());
        let addr: SocketAddr = super::server::serve(app).await;
        (recorder, format!("http://{addr}"))
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.requests()
            .last()
            .cloned()
            .expect("a request reached the recorder")
    }
}

async fn record(
    State(recorder): State<Recorder>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(query): Query<Map<String, Value>>,
) -> axum::Json<Value> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    recorder.seen.lock().unwrap().push(Seen {
        path: uri.path().to_string(),
        authorization: header("authorization"),
        api_key_header: header("x-api-key"),
        query,
    });
    axum::Json(json!({"ok": true}))
}

/// Every file under `dir` (recursively) whose raw bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            if bytes
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
            {
                found.push(path);
            }
        }
    }
    found
}

/// How many files (recursively) `dir` holds: to be sure a grep looked at something.
pub fn file_count(dir: &Path) -> usize {
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        } else {
            count += 1;
        }
    }
    count
}

/// `switchyard ARGS` with `env` set (and loopback egress allowed, debug logs on, no master
/// key or database URL inherited), `stdin` on its standard input.
pub fn switchyard(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SWITCHYARD_ALLOW_EGRESS", "127.0.0.1")
        .env("SWITCHYARD_LOG", "debug")
        .env_remove("SWITCHYARD_MASTER_KEY")
        .env_remove("SWITCHYARD_NEW_MASTER_KEY")
        .env_remove("SWITCHYARD_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn switchyard");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// Standard output and error of `output` as text.
pub fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
