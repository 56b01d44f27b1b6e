//! Apps defined as data checked against the provider's published API description: Prism
//! (`@stoplight/prism-cli`, installed with the OAuth test server by `npm ci` in
//! `tests/oauth`) serves Google's Tasks description (`tests/apps/specs/`) as a validating
//! mock, and the test app `tests/apps/gtasks.json` (an `oauth2` connection type of provider
//! `google`) is run against it by the real binary through `--app-base-url`. Prism answers a
//! request that breaks the contract — method, path, query, body schema, or a missing bearer
//! token — with an error instead of a mock, so a module that sends what Google's API would
//! refuse fails here.
//!
//! - `google_sheets_follows_the_published_contract`: every module of the Google Sheets app,
//!   mapped as a real Make export maps it (connection by Make's numeric id, the picker's
//!   `/ID`, a sheet name with a space and a quote), sends what Google's Sheets v4 description
//!   accepts; a query it does not allow gets Prism's 422.
//! - `requests_follow_the_published_contract`: listing and creating task lists succeed (the
//!   token sent as the description's OAuth2 scheme wants); a module whose query breaks the
//!   contract fails with Prism's 422.

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use common::prism::Prism;
use harness::binary;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The binary with the test apps loaded and the apps' base URLs `bases` (`APP=URL,…`).
fn switchyard(bases: &str, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("SWITCHYARD_APPS_DIR", repo("tests/apps"))
        .env("SWITCHYARD_ALLOW_EGRESS", "127.0.0.1")
        .env_remove("SWITCHYARD_DATABASE_URL")
        .env_remove("SWITCHYARD_MASTER_KEY")
        .env("SWITCHYARD_APP_BASE_URLS", bases)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `switchyard run` of a one-module scenario; its report.
fn run(bases: &str, dir: &Path, data: &Path, module: Value) -> Value {
    let file = dir.join("scenario.json");
    let blueprint = json!({"name": "contract", "flow": [module]});
    std::fs::write(&file, serde_json::to_vec(&blueprint).unwrap()).unwrap();
    let out = switchyard(
        bases,
        &[
            "run",
            file.to_str().unwrap(),
            "--json",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "no report: {}",
            String::from_utf8_lossy(&out.stderr).into_owned()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_follow_the_published_contract() {
    let prism = Prism::start(&repo("tests/apps/specs/google-tasks-v1.yaml")).await;
    let bases = format!("gtasks={}/tasks/v1/", prism.url);
    let tasks = |module: &str, mapper: Value| {
        json!({"id": 1, "module": module, "version": 1,
               "parameters": {"__IMTCONN__": "tasks"}, "mapper": mapper})
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = switchyard(
        &bases,
        &[
            "connections",
            "add",
            "tasks",
            "--app",
            "gtasks",
            "--access-token",
            "ya29.test-token",
            "--scope",
            "https://www.googleapis.com/auth/tasks https://www.googleapis.com/auth/tasks.readonly",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let report = run(
        &bases,
        dir.path(),
        &data,
        tasks("gtasks:ListTaskLists", json!({"limit": 3})),
    );
    assert_eq!(report["status"], "success", "{report}");

    let report = run(
        &bases,
        dir.path(),
        &data,
        tasks("gtasks:CreateTaskList", json!({"title": "Groceries"})),
    );
    assert_eq!(report["status"], "success", "{report}");
    assert!(report["log"][0]["output"].is_object(), "{report}");

    // A query the description does not allow: Prism refuses it (422), the module fails.
    let report = run(
        &bases,
        dir.path(),
        &data,
        tasks("gtasks:BrokenQuery", json!({})),
    );
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(report["error"]["name"], "DataError", "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[422]"),
        "{report}"
    );
}

/// Every module of the Google Sheets app (`modules/google-sheets.json`), mapped as a Make
/// export maps it, sends what Google's Sheets description accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_sheets_follows_the_published_contract() {
    let prism = Prism::start(&repo("tests/apps/specs/google-sheets-v4.yaml")).await;
    let bases = format!("google-sheets={}", prism.url);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = switchyard(
        &bases,
        &[
            "connections",
            "add",
            "sheets",
            "--app",
            "google-sheets",
            "--access-token",
            "ya29.test-token",
            "--id",
            "5032701",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sheet = |module: &str, mapper: Value| {
        let mut mapper = mapper;
        for (k, v) in [
            ("from", json!("drive")),
            ("mode", json!("select")),
            ("spreadsheetId", json!("/1sHP64Jy2mvFSuWFvwFvxOx")),
            ("sheetId", json!("Raw UCC's")),
        ] {
            mapper[k] = v;
        }
        json!({"id": 1, "module": format!("google-sheets:{module}"), "version": 2,
               "parameters": {"__IMTCONN__": 5032701}, "mapper": mapper})
    };
    for (module, mapper) in [
        (
            "addRow",
            json!({"values": {"0": "Ann", "2": "ann@example.com"}, "includesHeaders": true,
                   "insertDataOption": "INSERT_ROWS", "valueInputOption": "USER_ENTERED",
                   "insertUnformatted": false}),
        ),
        (
            "updateRow",
            json!({"rowNumber": 5, "values": {"1": "paid"}, "valueInputOption": "RAW"}),
        ),
        (
            "getSheetContent",
            json!({"range": "A1:D20", "includesHeaders": true,
                   "valueRenderOption": "UNFORMATTED_VALUE"}),
        ),
        ("getCell", json!({"cell": "B7"})),
        ("updateCell", json!({"cell": "C3", "value": 42})),
        ("clearCell", json!({"cell": "C3"})),
        ("clearValuesFromRange", json!({"range": "A2:D9"})),
        (
            "makeApiCall",
            json!({"url": "/v4/spreadsheets/1sHP64/values/A1:B2", "method": "GET",
                   "qs": [{"key": "majorDimension", "value": "COLUMNS"}]}),
        ),
    ] {
        let report = run(&bases, dir.path(), &data, sheet(module, mapper));
        assert_eq!(report["status"], "success", "{module}: {report}");
    }
    // A query Google's description does not allow is refused before it reaches a sheet.
    let report = run(
        &bases,
        dir.path(),
        &data,
        sheet(
            "makeApiCall",
            json!({"url": "/v4/spreadsheets/1sHP64/values/A1:B2", "method": "GET",
                   "qs": [{"key": "majorDimension", "value": "DIAGONAL"}]}),
        ),
    );
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(report["error"]["details"]["statusCode"], 422, "{report}");
    assert!(
        report["error"]["details"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("majordimension")),
        "{report}"
    );
}
