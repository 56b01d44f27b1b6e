//! The Google Sheets app (`modules/google-sheets.json`) run by the real binary against a
//! stateful fake of the Sheets API v4 values endpoints (a grid per sheet, on 127.0.0.1,
//! reached through `--app-base-url google-sheets=…`), which checks the bearer token as Google
//! does. What Google's published description accepts is `tests/app_prism.rs`'s; this file
//! checks what the modules do to a sheet:
//!
//! - `rows_and_cells`: `addRow` appends below the table with the columns Make maps by index
//!   (a column left out is an empty cell), `updateRow` writes only the mapped cells,
//!   `getSheetContent` gives a bundle per row keyed by column index with `__ROW_NUMBER__`
//!   (the header row skipped), `getCell`/`updateCell`/`clearCell`/`clearValuesFromRange` read,
//!   write and clear; a refused token fails the module with `InvalidAccessTokenError`.
//! - `search_delete_and_sheets`: `filterRows` (Search Rows) applies Make's filter (OR of AND,
//!   columns by letter), sort and limit to the table's rows and numbers the bundles as Make
//!   does; with `continue` a search without match still passes one bundle; a malformed filter
//!   says where; `deleteRow` finds the sheet's numeric id and deletes the row (a sheet name the
//!   spreadsheet lacks is a `DataError`, nothing deleted); `addSheet` and `createSpreadsheet`.
//! - `the_example_logs_an_order`: `scenarios/google-sheets-log-orders.json` (a webhook's order
//!   appended as a row, the webhook answered with where it went) run as the README runs
//!   examples.
//! - `watch_rows_emits_each_new_row_once`: a scheduled `watchRows` scenario served by `serve`
//!   copies each new row into a log sheet exactly once — rows already there when it starts
//!   are not emitted, rows added between polls are, oldest first — also after `serve`
//!   restarts.

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use harness::{Backend, TestDb, binary};

const TOKEN: &str = "ya29.sheets-test-token";

/// Sheets by name, each rows of cells (row 1 first).
type Grid = Arc<Mutex<BTreeMap<String, Vec<Vec<Value>>>>>;

/// `A` → 0, `AB` → 27.
fn column(letters: &str) -> usize {
    letters.bytes().fold(0usize, |n, b| {
        n * 26 + usize::from(b.to_ascii_uppercase() - b'A' + 1)
    }) - 1
}

fn letters(mut index: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (index % 26) as u8);
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

/// An A1 range as the fake understands it: sheet, first cell, last column and row.
#[derive(Debug)]
struct Range {
    sheet: String,
    col: usize,
    row: usize,
    end_col: Option<usize>,
    end_row: Option<usize>,
}

fn cell_ref(text: &str) -> (Option<usize>, Option<usize>) {
    let text = text.replace('$', "");
    let split = text
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(text.len());
    let (l, d) = text.split_at(split);
    ((!l.is_empty()).then(|| column(l)), d.parse::<usize>().ok())
}

fn parse_range(text: &str) -> Range {
    let (sheet, cells) = text.rsplit_once('!').expect("a sheet name in the range");
    let sheet = sheet
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .map(|s| s.replace("''", "'"))
        .unwrap_or_else(|| sheet.to_string());
    let (start, end) = cells.split_once(':').unwrap_or((cells, ""));
    let (col, row) = cell_ref(start);
    let (end_col, end_row) = if end.is_empty() {
        (col, row)
    } else {
        cell_ref(end)
    };
    Range {
        sheet,
        col: col.unwrap_or(0),
        row: row.unwrap_or(1),
        end_col,
        end_row,
    }
}

/// Google's 401 for a request without the fake's token; `None` when it has it.
fn refusal(headers: &HeaderMap) -> Option<Response> {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"))
    {
        return None;
    }
    Some(
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"code": 401, "status": "UNAUTHENTICATED",
            "message": "Request had invalid authentication credentials."}})),
        )
            .into_response(),
    )
}

fn trimmed(mut row: Vec<Value>) -> Vec<Value> {
    while row.last().is_some_and(|c| c == "" || c.is_null()) {
        row.pop();
    }
    row
}

/// Writes `values` from `(row, col)` (1-based row, 0-based column); a `null` cell is left as
/// it is, as Google does.
fn write(rows: &mut Vec<Vec<Value>>, row: usize, col: usize, values: &[Value]) -> usize {
    let mut cells = 0;
    for (i, line) in values.iter().enumerate() {
        let r = row - 1 + i;
        if rows.len() <= r {
            rows.resize(r + 1, Vec::new());
        }
        for (j, cell) in line.as_array().into_iter().flatten().enumerate() {
            if cell.is_null() {
                continue;
            }
            let c = col + j;
            if rows[r].len() <= c {
                rows[r].resize(c + 1, json!(""));
            }
            rows[r][c] = cell.clone();
            cells += 1;
        }
    }
    cells
}

async fn values_get(
    State(grid): State<Grid>,
    UrlPath((id, range)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refusal(&headers) {
        return refused;
    }
    let r = parse_range(&range);
    let grid = grid.lock().unwrap();
    let Some(rows) = grid.get(&r.sheet) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"code": 400, "message": format!("Unable to parse range: {range}")}})),
        )
            .into_response();
    };
    let last = r.end_row.unwrap_or(rows.len()).min(rows.len());
    let mut values: Vec<Value> = (r.row..=last)
        .map(|n| {
            let row = &rows[n - 1];
            let end = r.end_col.map_or(row.len(), |c| (c + 1).min(row.len()));
            Value::Array(trimmed(row.get(r.col..end).unwrap_or(&[]).to_vec()))
        })
        .collect();
    while values
        .last()
        .is_some_and(|v| v.as_array().is_some_and(Vec::is_empty))
    {
        values.pop();
    }
    let _ = id;
    axum::Json(json!({"range": range, "majorDimension": "ROWS", "values": values})).into_response()
}

async fn values_put(
    State(grid): State<Grid>,
    UrlPath((id, range)): UrlPath<(String, String)>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(refused) = refusal(&headers) {
        return refused;
    }
    let r = parse_range(&range);
    let mut grid = grid.lock().unwrap();
    let rows = grid.entry(r.sheet.clone()).or_default();
    let values = body["values"].as_array().cloned().unwrap_or_default();
    let cells = write(rows, r.row, r.col, &values);
    axum::Json(
        json!({"spreadsheetId": id, "updatedRange": range, "updatedRows": values.len(),
                      "updatedCells": cells}),
    )
    .into_response()
}

#[derive(serde::Deserialize)]
struct AppendQuery {
    #[serde(rename = "valueInputOption")]
    value_input_option: Option<String>,
}

/// `…/values/{range}:append` and `…/values/{range}:clear` (one path segment in axum).
async fn values_post(
    State(grid): State<Grid>,
    UrlPath((id, range)): UrlPath<(String, String)>,
    Query(query): Query<AppendQuery>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(refused) = refusal(&headers) {
        return refused;
    }
    let mut grid = grid.lock().unwrap();
    if let Some(range) = range.strip_suffix(":append") {
        assert!(
            query.value_input_option.is_some(),
            "append needs valueInputOption"
        );
        let r = parse_range(range);
        let rows = grid.entry(r.sheet.clone()).or_default();
        let table = rows.len();
        let values = body["values"].as_array().cloned().unwrap_or_default();
        let width = values
            .iter()
            .filter_map(Value::as_array)
            .map(Vec::len)
            .max()
            .unwrap_or(1);
        let cells = write(rows, table + 1, 0, &values);
        let quoted = format!("'{}'", r.sheet.replace('\'', "''"));
        let updated = format!(
            "{quoted}!A{}:{}{}",
            table + 1,
            letters(width - 1),
            table + values.len()
        );
        return axum::Json(
            json!({"spreadsheetId": id, "tableRange": format!("{quoted}!A1:Z{table}"),
            "updates": {"spreadsheetId": id, "updatedRange": updated, "updatedRows": values.len(),
                        "updatedColumns": width, "updatedCells": cells}}),
        )
        .into_response();
    }
    let range = range.strip_suffix(":clear").expect(":append or :clear");
    let r = parse_range(range);
    let rows = grid.entry(r.sheet.clone()).or_default();
    let last = r.end_row.unwrap_or(rows.len()).min(rows.len());
    for n in r.row..=last {
        let row = &mut rows[n - 1];
        let end = r.end_col.map_or(row.len(), |c| (c + 1).min(row.len()));
        for cell in row.iter_mut().take(end).skip(r.col) {
            *cell = json!("");
        }
    }
    axum::Json(json!({"spreadsheetId": id, "clearedRange": range})).into_response()
}

/// A sheet's numeric id as Google gives one: stable for its name.
fn sheet_number(name: &str) -> u32 {
    name.bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        & 0x7fff_ffff
}

/// `GET /v4/spreadsheets/{id}`: the spreadsheet's sheets (their properties).
async fn spreadsheet_get(
    State(grid): State<Grid>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refusal(&headers) {
        return refused;
    }
    let grid = grid.lock().unwrap();
    let sheets: Vec<Value> = grid
        .keys()
        .enumerate()
        .map(|(index, title)| {
            json!({"properties": {"sheetId": sheet_number(title), "title": title,
                                  "index": index, "sheetType": "GRID"}})
        })
        .collect();
    axum::Json(json!({"spreadsheetId": id, "sheets": sheets})).into_response()
}

/// `POST /v4/spreadsheets/{id}:batchUpdate` with `addSheet` and `deleteDimension` requests.
async fn spreadsheet_post(
    State(grid): State<Grid>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(refused) = refusal(&headers) {
        return refused;
    }
    let id = id.strip_suffix(":batchUpdate").expect(":batchUpdate");
    let mut grid = grid.lock().unwrap();
    let mut replies = Vec::new();
    for request in body["requests"].as_array().unwrap() {
        if let Some(add) = request.get("addSheet") {
            let title = add["properties"]["title"].as_str().unwrap().to_string();
            if grid.contains_key(&title) {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": {"code": 400,
                    "message": format!("A sheet with the name \"{title}\" already exists.")}})),
                )
                    .into_response();
            }
            grid.insert(title.clone(), Vec::new());
            replies.push(
                json!({"addSheet": {"properties": {"sheetId": sheet_number(&title),
                "title": title, "index": grid.len() - 1, "sheetType": "GRID"}}}),
            );
        } else if let Some(delete) = request.get("deleteDimension") {
            let range = &delete["range"];
            assert_eq!(range["dimension"], "ROWS");
            let (start, end) = (
                range["startIndex"].as_u64().unwrap() as usize,
                range["endIndex"].as_u64().unwrap() as usize,
            );
            let Some(rows) = grid
                .iter_mut()
                .find(|(name, _)| Some(u64::from(sheet_number(name))) == range["sheetId"].as_u64())
                .map(|(_, rows)| rows)
            else {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": {"code": 400,
                    "message": "No grid with id"}})),
                )
                    .into_response();
            };
            let end = end.min(rows.len());
            if start < end {
                rows.drain(start..end);
            }
            replies.push(json!({}));
        } else {
            panic!("unexpected request {request}");
        }
    }
    axum::Json(json!({"spreadsheetId": id, "replies": replies})).into_response()
}

/// `POST /v4/spreadsheets`: a new spreadsheet with the given sheets (one `Sheet1` without).
async fn spreadsheet_create(headers: HeaderMap, axum::Json(body): axum::Json<Value>) -> Response {
    if let Some(refused) = refusal(&headers) {
        return refused;
    }
    let mut spreadsheet = body.clone();
    let id = "1NewSpreadsheet";
    spreadsheet["spreadsheetId"] = json!(id);
    spreadsheet["spreadsheetUrl"] =
        json!(format!("https://docs.google.com/spreadsheets/d/{id}/edit"));
    if spreadsheet["sheets"].as_array().is_none_or(Vec::is_empty) {
        spreadsheet["sheets"] = json!([{"properties": {"title": "Sheet1"}}]);
    }
    axum::Json(spreadsheet).into_response()
}

async fn fake_sheets(sheets: &[(&str, Value)]) -> (String, Grid) {
    let grid: Grid = Arc::new(Mutex::new(
        sheets
            .iter()
            .map(|(name, rows)| {
                let rows = rows
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_array().unwrap().clone())
                    .collect();
                (name.to_string(), rows)
            })
            .collect(),
    ));
    let app = Router::new()
        .route(
            "/v4/spreadsheets/{id}/values/{range}",
            get(values_get).put(values_put).post(values_post),
        )
        .route(
            "/v4/spreadsheets/{id}",
            get(spreadsheet_get).post(spreadsheet_post),
        )
        .route("/v4/spreadsheets", post(spreadsheet_create))
        .with_state(grid.clone());
    let addr = common::server::serve(app).await;
    (format!("http://{addr}"), grid)
}

fn sheet(grid: &Grid, name: &str) -> Value {
    json!(grid.lock().unwrap().get(name).cloned().unwrap_or_default())
}

fn switchyard(api: &str, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("SWITCHYARD_ALLOW_EGRESS", "127.0.0.1")
        .env("SWITCHYARD_APP_BASE_URLS", format!("google-sheets={api}"))
        .env_remove("SWITCHYARD_DATABASE_URL")
        .env_remove("SWITCHYARD_MASTER_KEY")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn add_connection(api: &str, data: &Path, name: &str, id: &str, token: &str) {
    let out = switchyard(
        api,
        &[
            "connections",
            "add",
            name,
            "--app",
            "google-sheets",
            "--access-token",
            token,
            "--id",
            id,
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

/// A module as a Make export writes it: version 2, the connection by Make's id, the
/// spreadsheet picked in Make's drive picker (`/ID`).
fn module(id: u32, name: &str, connection: u64, mapper: Value) -> Value {
    let mut mapper = mapper;
    mapper["from"] = json!("drive");
    mapper["mode"] = json!("select");
    mapper["spreadsheetId"] = json!("/1sHP64Jy2mvFSuWFvwFvxOxYli4TyicFSv4m");
    if mapper.get("sheetId").is_none() {
        mapper["sheetId"] = json!("Leads");
    }
    json!({"id": id, "module": format!("google-sheets:{name}"), "version": 2,
           "parameters": {"__IMTCONN__": connection}, "mapper": mapper})
}

fn run(api: &str, dir: &Path, data: &Path, flow: Vec<Value>) -> Value {
    let file = dir.join("scenario.json");
    std::fs::write(&file, json!({"name": "sheets", "flow": flow}).to_string()).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_and_cells() {
    let (api, grid) = fake_sheets(&[(
        "Leads",
        json!([
            ["Name", "Status", "Email"],
            ["Ann", "new", "ann@example.com"]
        ]),
    )])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    add_connection(&api, &data, "google", "5032701", TOKEN);
    let run = |flow: Vec<Value>| run(&api, dir.path(), &data, flow);

    // Add a Row: column B left out is an empty cell; the output is the API's answer.
    let report = run(vec![module(
        1,
        "addRow",
        5032701,
        json!({
        "values": {"0": "Bob", "2": "bob@example.com"}, "includesHeaders": true,
        "insertDataOption": "INSERT_ROWS", "valueInputOption": "USER_ENTERED",
        "insertUnformatted": false}),
    )]);
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(
        report["log"][0]["output"]["updates"]["updatedRange"], "'Leads'!A3:C3",
        "{report}"
    );
    assert_eq!(
        sheet(&grid, "Leads")[2],
        json!(["Bob", "", "bob@example.com"])
    );

    // Update a Row: only the mapped cell changes.
    let report = run(vec![module(
        1,
        "updateRow",
        5032701,
        json!({
        "rowNumber": 2, "values": {"1": "won"}, "valueInputOption": "RAW"}),
    )]);
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(
        sheet(&grid, "Leads")[1],
        json!(["Ann", "won", "ann@example.com"])
    );

    // Get Range Values: a bundle per row, by column index, numbered; the header skipped.
    let report = run(vec![module(
        1,
        "getSheetContent",
        5032701,
        json!({
        "range": "A1:C10", "includesHeaders": true}),
    )]);
    assert_eq!(report["status"], "success", "{report}");
    let rows: Vec<Value> = report["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["module"] == 1)
        .map(|entry| entry["output"].clone())
        .collect();
    assert_eq!(rows.len(), 2, "{report}");
    assert_eq!(rows[0]["0"], "Ann");
    assert_eq!(rows[0]["1"], "won");
    assert_eq!(rows[0]["__ROW_NUMBER__"], 2);
    assert_eq!(rows[1]["2"], "bob@example.com");
    assert_eq!(rows[1]["__ROW_NUMBER__"], 3);

    // Cells: update, read back, clear; a range cleared.
    let report = run(vec![
        module(
            1,
            "updateCell",
            5032701,
            json!({"cell": "D2", "value": 42, "valueInputOption": "RAW"}),
        ),
        module(2, "getCell", 5032701, json!({"cell": "D2"})),
        module(3, "clearCell", 5032701, json!({"cell": "A3"})),
        module(
            4,
            "clearValuesFromRange",
            5032701,
            json!({"range": "B2:C2"}),
        ),
    ]);
    assert_eq!(report["status"], "success", "{report}");
    let output = |id: u32| {
        report["log"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["module"] == id)
            .map(|e| e["output"].clone())
            .unwrap()
    };
    assert_eq!(output(2)["value"], 42);
    assert_eq!(output(4)["clearedRange"], "'Leads'!B2:C2");
    let leads = sheet(&grid, "Leads");
    assert_eq!(leads[1], json!(["Ann", "", "", 42]));
    assert_eq!(leads[2], json!(["", "", "bob@example.com"]));

    // A token the API refuses: the module fails as Make's does, and nothing is written.
    add_connection(&api, &data, "revoked", "77", "ya29.revoked");
    let before = sheet(&grid, "Leads");
    let report = run(vec![module(
        1,
        "addRow",
        77,
        json!({"values": {"0": "Eve"}}),
    )]);
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(
        report["error"]["name"], "InvalidAccessTokenError",
        "{report}"
    );
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connection \"revoked\""),
        "{report}"
    );
    assert_eq!(sheet(&grid, "Leads"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_delete_and_sheets() {
    let (api, grid) = fake_sheets(&[(
        "Leads",
        json!([
            ["Name", "Status", "Total"],
            ["Ann", "new", "12"],
            ["Bob", "won", "9"],
            [],
            ["Cy", "New", "100"],
            ["Di", "lost", "40"]
        ]),
    )])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    add_connection(&api, &data, "google", "5032701", TOKEN);
    let run = |flow: Vec<Value>| run(&api, dir.path(), &data, flow);
    let outputs = |report: &Value, id: u32| -> Vec<Value> {
        report["log"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["module"] == id)
            .map(|e| e["output"].clone())
            .collect()
    };

    // Search Rows as a Make export maps it: status new (any case) or total over 30, the
    // largest total first, two at most; the blank row is no row.
    let report = run(vec![module(
        1,
        "filterRows",
        5032701,
        json!({"includesHeaders": true, "tableFirstRow": "A1:Z1", "limit": "2",
               "filter": [[{"a": "B", "b": "new", "o": "text:equal:ci"}],
                          [{"a": "C", "b": "30", "o": "number:greater"}]],
               "sortOrder": "desc", "orderBy": "C",
               "valueRenderOption": "FORMATTED_VALUE", "dateTimeRenderOption": "FORMATTED_STRING"}),
    )]);
    assert_eq!(report["status"], "success", "{report}");
    let rows = outputs(&report, 1);
    assert_eq!(rows.len(), 2, "{report}");
    assert_eq!(
        rows[0],
        json!({"0": "Cy", "1": "New", "2": "100", "__ROW_NUMBER__": 5,
               "__IMTINDEX__": 1, "__IMTLENGTH__": 2})
    );
    assert_eq!(rows[1]["0"], "Di");
    assert_eq!(rows[1]["__ROW_NUMBER__"], 6);

    // No match: the route stops, unless the module is told to continue.
    let none = json!({"filter": [[{"a": "A", "b": "Zed", "o": "text:equal"}]]});
    let report = run(vec![module(1, "filterRows", 5032701, none.clone())]);
    assert_eq!(report["status"], "success", "{report}");
    assert!(outputs(&report, 1).is_empty(), "{report}");
    let mut go_on = none;
    go_on["continue"] = json!(true);
    let report = run(vec![module(1, "filterRows", 5032701, go_on)]);
    assert_eq!(
        outputs(&report, 1),
        [json!({"__IMTINDEX__": 0, "__IMTLENGTH__": 0})]
    );

    // A filter Make would not accept says where it is wrong, before anything is read.
    let report = run(vec![module(
        1,
        "filterRows",
        5032701,
        json!({"filter": [[{"a": "B", "b": "x", "o": "text:sounds-like"}]]}),
    )]);
    assert_eq!(report["status"], "error", "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("filter[0][0].o"),
        "{report}"
    );

    // Delete a Row: the sheet's numeric id is looked up, the row removed, rows below move up.
    let report = run(vec![module(
        1,
        "deleteRow",
        5032701,
        json!({"rowNumber": 3}),
    )]);
    assert_eq!(report["status"], "success", "{report}");
    let leads = sheet(&grid, "Leads");
    assert_eq!(leads.as_array().unwrap().len(), 5);
    assert_eq!(leads[2], json!([]));
    assert_eq!(leads[3], json!(["Cy", "New", "100"]));
    // A sheet name the spreadsheet lacks is the module's error, and nothing is deleted.
    let report = run(vec![module(
        1,
        "deleteRow",
        5032701,
        json!({"rowNumber": 2, "sheetId": "Leeds"}),
    )]);
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(report["error"]["name"], "DataError", "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no sheet named \"Leeds\""),
        "{report}"
    );
    assert_eq!(sheet(&grid, "Leads"), leads);

    // Add a Sheet, then write to it; Create a Spreadsheet.
    let report = run(vec![
        json!({"id": 1, "module": "google-sheets:addSheet", "version": 2,
               "parameters": {"__IMTCONN__": 5032701},
               "mapper": {"from": "drive", "mode": "select",
                          "spreadsheetId": "/1sHP64Jy2mvFSuWFvwFvxOxYli4TyicFSv4m",
                          "properties": {"title": "Q3 orders"}}}),
        module(
            2,
            "addRow",
            5032701,
            json!({"sheetId": "{{1.title}}", "values": {"0": "first"}}),
        ),
        json!({"id": 3, "module": "google-sheets:createSpreadsheet", "version": 2,
               "parameters": {"__IMTCONN__": 5032701},
               "mapper": {"title": "Budget", "locale": "en_GB", "timeZone": "Europe/London",
                          "recalculationInterval": "ON_CHANGE",
                          "sheets": [{"title": "Income"}, {"title": "Costs"}]}}),
    ]);
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(outputs(&report, 1)[0]["title"], "Q3 orders");
    assert_eq!(sheet(&grid, "Q3 orders"), json!([["first"]]));
    let created = &outputs(&report, 3)[0];
    assert_eq!(created["spreadsheetId"], "1NewSpreadsheet");
    assert_eq!(
        created["properties"],
        json!({"title": "Budget", "locale": "en_GB", "timeZone": "Europe/London",
               "autoRecalc": "ON_CHANGE"})
    );
    assert_eq!(
        created["sheets"],
        json!([{"properties": {"title": "Income"}}, {"properties": {"title": "Costs"}}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_rows_emits_each_new_row_once() {
    let (api, grid) = fake_sheets(&[
        (
            "Leads",
            json!([["Name", "Email"], ["Old", "old@example.com"]]),
        ),
        ("Log", json!([["Name", "Row"]])),
    ])
    .await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let base = format!("google-sheets={api}");
    db.add_access_token_connection("google", "google-sheets", TOKEN, "5032701", &base);
    let blueprint = json!({
        "name": "copy new leads",
        "flow": [
            module(1, "watchRows", 5032701, json!({"includesHeaders": true,
                "tableFirstRow": "A1:Z1", "limit": 5})),
            module(2, "addRow", 5032701, json!({"sheetId": "Log",
                "values": {"0": "{{1.`0`}}", "1": "{{1.__ROW_NUMBER__}}"}}))
        ],
        "scheduling": {"type": "indefinitely", "interval": 1}
    });
    let serve_args = ["--min-interval-seconds", "1", "--app-base-url", &base];
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

    let logged = || -> Vec<Value> { sheet(&grid, "Log").as_array().unwrap()[1..].to_vec() };
    let add_lead = |name: &str| {
        let mut grid = grid.lock().unwrap();
        grid.get_mut("Leads")
            .unwrap()
            .push(vec![json!(name), json!(format!("{name}@example.com"))]);
    };
    let wait_for = |count: usize| async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while logged().len() < count {
            assert!(Instant::now() < deadline, "only {:?} logged", logged());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // The first poll counts the rows already there as seen; later rows are copied, in order.
    db.executions_at_least(1).await;
    add_lead("Ann");
    add_lead("Bob");
    wait_for(2).await;
    assert_eq!(logged(), [json!(["Ann", 3]), json!(["Bob", 4])]);

    // Across a restart the cursor holds: nothing is copied twice, a new row is copied once.
    // (Stopped once the execution that copied them has ended: one killed half-way would run
    // again from its start after the restart, as an interrupted execution does.)
    db.executions_settled().await;
    drop(service);
    let service = db.serve(&serve_args).await;
    add_lead("Cy");
    wait_for(3).await;
    let before = db.ended_executions();
    db.executions_at_least(before + 2).await;
    assert_eq!(
        logged(),
        [json!(["Ann", 3]), json!(["Bob", 4]), json!(["Cy", 5])]
    );
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_logs_an_order() {
    let (api, grid) =
        fake_sheets(&[("Orders", json!([["Order", "Email", "Total", "Lines"]]))]).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    add_connection(&api, &data, "google", "41", TOKEN);
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/google-sheets-log-orders.json");
    let order = json!({"id": "A-1042", "customer": {"email": "ann@example.com"},
                       "lines": [{"sku": "tea", "price": 4.5}, {"sku": "cup", "price": 12}]});
    let out = switchyard(
        &api,
        &[
            "run",
            example.to_str().unwrap(),
            "--input",
            &order.to_string(),
            "--json",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no report: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(
        sheet(&grid, "Orders")[1],
        json!(["A-1042", "ann@example.com", 16.5, 2])
    );
    let body: Value = serde_json::from_str(report["response"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"order": "A-1042", "logged": "'Orders'!A2:D2"}));
}
