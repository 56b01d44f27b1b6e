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
//! - `google_calendar_follows_the_published_contract`: every module of the Google Calendar
//!   app (events inserted in detail and quickly, patched, listed, deleted, free/busy asked,
//!   an API call, the polling trigger's list), mapped as a Make export maps it, sends what
//!   Google's Calendar v3 description accepts; an `orderBy` it does not allow gets Prism's 422.
//! - `google_forms_follows_the_published_contract`: the Google Forms app's trigger list (its
//!   `timestamp >=` filter), `getResponse` and an API call send what Google's Forms v1
//!   description accepts.
//! - `google_docs_follows_the_published_contract`: the Google Docs app's modules (create with
//!   text, insert, append, get, an API call) send what Google's Docs v1 description accepts.
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
            "filterRows",
            json!({"includesHeaders": true, "tableFirstRow": "A1:CZ1", "limit": "5",
                   "filter": [[{"a": "D", "b": "pending", "o": "text:equal"}]],
                   "sortOrder": "asc", "valueRenderOption": "FORMATTED_VALUE",
                   "dateTimeRenderOption": "FORMATTED_STRING"}),
        ),
        (
            "addSheet",
            json!({"properties": {"title": "Q3", "index": 1, "hidden": false}}),
        ),
        (
            "createSpreadsheet",
            json!({"title": "Budget", "locale": "en_US", "timeZone": "Europe/Prague",
                   "recalculationInterval": "HOUR", "sheets": [{"title": "Income"}]}),
        ),
        (
            "makeApiCall",
            json!({"url": "/v4/spreadsheets/1sHP64/values/A1:B2", "method": "GET",
                   "qs": [{"key": "majorDimension", "value": "COLUMNS"}]}),
        ),
    ] {
        let report = run(&bases, dir.path(), &data, sheet(module, mapper));
        assert_eq!(report["status"], "success", "{module}: {report}");
    }
    // Delete a Row reads the spreadsheet's sheets first (Prism's accepts the request: what
    // fails is the lookup of the sheet's name among the sheets it invents, the module's own
    // error, not Prism's 422); the fake in tests/google_sheets.rs deletes for real.
    let report = run(
        &bases,
        dir.path(),
        &data,
        sheet("deleteRow", json!({"rowNumber": 4})),
    );
    assert!(
        report["status"] == "success"
            || report["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("has no sheet named")),
        "{report}"
    );
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

/// Every module of the Google Calendar app (`modules/google-calendar.json`), mapped as a Make
/// export maps it, sends what Google's Calendar description accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_calendar_follows_the_published_contract() {
    let prism = Prism::start(&repo("tests/apps/specs/google-calendar-v3.yaml")).await;
    let bases = format!("google-calendar={}", prism.url);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = switchyard(
        &bases,
        &[
            "connections",
            "add",
            "calendar",
            "--app",
            "google-calendar",
            "--access-token",
            "ya29.test-token",
            "--id",
            "4728231",
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
    let calendar = |module: &str, mapper: Value| {
        json!({"id": 1, "module": format!("google-calendar:{module}"), "version": 5,
               "parameters": {"__IMTCONN__": 4728231}, "mapper": mapper})
    };
    for (module, mapper) in [
        (
            "createAnEvent",
            json!({"calendar": "primary", "select": "detail", "summary": "Planning",
                   "description": "Q1", "start": "2026-12-10T09:00:00Z",
                   "end": "2026-12-10T10:00:00Z", "allDayEvent": false,
                   "visibility": "default", "transparency": "opaque", "conferenceDate": true,
                   "attendees": [{"email": "ann@example.com"}],
                   "overrides": [{"method": "popup", "minutes": 10}],
                   "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"], "sendUpdates": "none"}),
        ),
        (
            "createAnEvent",
            json!({"calendar": "team@example.com", "select": "detail", "summary": "Offsite",
                   "start": "2026-12-10", "end": "2026-12-11", "allDayEvent": true,
                   "timeZone": "Europe/Prague"}),
        ),
        (
            "createAnEvent",
            json!({"calendar": "primary", "select": "quick",
                   "text": "Lunch with Ann tomorrow at noon"}),
        ),
        (
            "updateAnEvent",
            json!({"calendar": "primary", "eventId": "evt0001", "summary": "Moved",
                   "start": "2026-12-10T11:00:00Z", "duration": "0:45"}),
        ),
        (
            "deleteAnEvent",
            json!({"calendar": "primary", "eventId": "evt0001", "sendUpdates": "all"}),
        ),
        (
            "searchEvents",
            json!({"calendar": "primary", "start": "2026-12-01T00:00:00Z",
                   "end": "2026-12-31T00:00:00Z", "q": "Planning", "singleEvents": true,
                   "orderBy": "startTime", "limit": 5}),
        ),
        (
            "watchEvents",
            json!({"calendar": "primary", "watch": "updated", "limit": 2}),
        ),
        (
            "getFreeBusy",
            json!({"calendars": ["primary", "team@example.com"],
                   "timeMin": "2026-12-10T00:00:00Z", "timeMax": "2026-12-11T00:00:00Z",
                   "timeZone": "UTC"}),
        ),
        (
            "makeApiCall",
            json!({"url": "/v3/calendars/primary/events", "method": "GET",
                   "qs": [{"key": "maxResults", "value": "5"}]}),
        ),
    ] {
        let report = run(&bases, dir.path(), &data, calendar(module, mapper));
        assert_eq!(report["status"], "success", "{module}: {report}");
    }
    // A value Google's description does not allow is refused.
    let report = run(
        &bases,
        dir.path(),
        &data,
        calendar(
            "makeApiCall",
            json!({"url": "/v3/calendars/primary/events", "method": "GET",
                   "qs": [{"key": "orderBy", "value": "summary"}]}),
        ),
    );
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(report["error"]["details"]["statusCode"], 422, "{report}");
}

/// Every module of the Google Forms app (`modules/google-forms.json`) sends what Google's
/// Forms description accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_forms_follows_the_published_contract() {
    let prism = Prism::start(&repo("tests/apps/specs/google-forms-v1.yaml")).await;
    let bases = format!("google-forms={}", prism.url);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = switchyard(
        &bases,
        &[
            "connections",
            "add",
            "forms",
            "--app",
            "google-forms",
            "--access-token",
            "ya29.test-token",
            "--id",
            "5551",
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
    for (module, mapper) in [
        (
            "watchResponses",
            json!({"formId": "1FAIpQLSf-form", "limit": 3}),
        ),
        (
            "getResponse",
            json!({"formId": "1FAIpQLSf-form", "responseId": "ACYDBNj0001"}),
        ),
        (
            "makeApiCall",
            json!({"url": "/v1/forms/1FAIpQLSf-form/responses", "method": "GET",
                   "qs": [{"key": "pageSize", "value": "10"}]}),
        ),
    ] {
        let blueprint = json!({"id": 1, "module": format!("google-forms:{module}"),
            "version": 1, "parameters": {"__IMTCONN__": 5551}, "mapper": mapper});
        let report = run(&bases, dir.path(), &data, blueprint);
        // Prism invents a `lastSubmittedTime` that is no date (the description's format is
        // Google's own `google-datetime`): the trigger then refuses the item it was answered
        // with, which proves the list request was accepted.
        let invented = report["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("an item's date is not a date"));
        assert!(
            report["status"] == "success" || (module == "watchResponses" && invented),
            "{module}: {report}"
        );
    }
    // A path the description does not have is Prism's 404.
    let report = run(
        &bases,
        dir.path(),
        &data,
        json!({"id": 1, "module": "google-forms:makeApiCall", "version": 1,
               "parameters": {"__IMTCONN__": 5551},
               "mapper": {"url": "/v1/forms/1FAIpQLSf-form/answers", "method": "GET"}}),
    );
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(report["error"]["details"]["statusCode"], 404, "{report}");
}

/// Every module of the Google Docs app (`modules/google-docs.json`) sends what Google's Docs
/// description accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_docs_follows_the_published_contract() {
    let prism = Prism::start(&repo("tests/apps/specs/google-docs-v1.yaml")).await;
    let bases = format!("google-docs={}", prism.url);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = switchyard(
        &bases,
        &[
            "connections",
            "add",
            "docs",
            "--app",
            "google-docs",
            "--access-token",
            "ya29.test-token",
            "--id",
            "6661",
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
    for (module, mapper) in [
        (
            "createADocument",
            json!({"name": "Minutes", "content": "Agreed: ship."}),
        ),
        ("createADocument", json!({"name": "Empty"})),
        (
            "insertText",
            json!({"documentId": "/1DocId0001", "text": "Hello\n", "index": 1}),
        ),
        (
            "appendText",
            json!({"documentId": "1DocId0001", "text": "Bye"}),
        ),
        (
            "getADocument",
            json!({"select": "map", "documentId": "1DocId0001"}),
        ),
        (
            "makeApiCall",
            json!({"url": "/v1/documents/1DocId0001", "method": "GET"}),
        ),
    ] {
        let blueprint = json!({"id": 1, "module": format!("google-docs:{module}"),
            "version": 1, "parameters": {"__IMTCONN__": 6661}, "mapper": mapper});
        let report = run(&bases, dir.path(), &data, blueprint);
        assert_eq!(report["status"], "success", "{module}: {report}");
    }
    // A query the description does not allow is Prism's 422.
    let report = run(
        &bases,
        dir.path(),
        &data,
        json!({"id": 1, "module": "google-docs:makeApiCall", "version": 1,
               "parameters": {"__IMTCONN__": 6661},
               "mapper": {"url": "/v1/documents/1DocId0001", "method": "GET",
                          "qs": [{"key": "suggestionsViewMode", "value": "ALL"}]}}),
    );
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(report["error"]["details"]["statusCode"], 422, "{report}");
}
