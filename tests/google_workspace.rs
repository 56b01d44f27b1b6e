//! The Google Calendar, Forms and Docs apps (`modules/google-calendar.json`,
//! `modules/google-forms.json`, `modules/google-docs.json`) run by the real binary against a stateful fake of the Calendar
//! API v3 (events per calendar, paged as Google pages them, free/busy computed from them) and
//! of the Forms API v1 (responses per form, filtered by submission time, paged) and the Docs
//! API v1 (documents as text) on 127.0.0.1, reached through `--app-base-url`; the fake checks the bearer token as Google does (401 for a token it
//! does not know, 403 "insufficient authentication scopes" for a read-only token that writes),
//! and issues tokens at its own `/token` (the `google` integration's token URL overridden), so
//! a refused token is refreshed for real. What Google's published description accepts is
//! `tests/app_prism.rs`'s; this file checks what the modules do to a calendar:
//!
//! - `calendar_events_end_to_end`: `createAnEvent` as a Make export maps it (attendees,
//!   reminders, Google Meet) after a 401 whose token is refreshed once and the request resent;
//!   `updateAnEvent` changes only the mapped fields; `searchEvents` pages up to its limit;
//!   `getFreeBusy` answers the busy periods; `makeApiCall` calls below `/calendar`; a 429
//!   with `Retry-After` and a 503 are retried; `deleteAnEvent` deletes, and an unknown event
//!   is the API's 404 as a `DataError`; a read-only token that writes fails with
//!   `InvalidAccessTokenError` naming the missing scope.
//! - `form_responses_are_read`: Google Forms' `getResponse` after a refused token is refreshed
//!   and a 429 (`Retry-After`) and a 500 retried; an unknown response is the API's 404 as a
//!   `DataError`; a form ID that could leave the API's path, and a token not granted the
//!   Forms scope, are refused before any request.
//! - `documents_are_written_and_read`: Google Docs' `createADocument` (title, then its text),
//!   `insertText` at an index, `appendText` at the end and `getADocument`, after a refused
//!   token is refreshed and a 503 retried; an index past the end is the API's 400 and an
//!   unknown document its 404, both `DataError`s.
//! - `watch_triggers_emit_each_new_item_once`: scheduled `watchEvents` and `watchResponses`
//!   scenarios served by `serve` copy each new event of a calendar, and note each new form
//!   response, exactly once — what is there when they start is not emitted, what comes between
//!   polls is (responses over two pages) — also after `serve` restarts.
//! - `the_example_turns_rows_into_events`: `scenarios/google-sheets-rows-to-calendar.json`
//!   (Sheets' `watchRows` → Calendar's `createAnEvent`), served, makes one event per new row.

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use harness::{Backend, TestDb, binary};

/// A token with every scope; one that can only read; the refresh token the fake honours.
const FRESH: &str = "ya29.calendar-fresh";
const READONLY: &str = "ya29.calendar-readonly";
const REFRESH: &str = "1//calendar-refresh";
/// Events per page, whatever `maxResults` asks (Google may return fewer, its docs say).
const PAGE: usize = 2;

#[derive(Default)]
struct Calendar {
    /// Events by calendar ID, in creation order.
    events: BTreeMap<String, Vec<Value>>,
    next_id: u64,
    /// Answers given instead of the next requests: status and `Retry-After`.
    failures: VecDeque<(u16, Option<u64>)>,
    /// `METHOD path?query` of every request that passed authentication.
    requests: Vec<String>,
    /// Refresh grants issued.
    grants: usize,
    /// The `Sessions` sheet of the example's spreadsheet.
    sheet: Vec<Vec<Value>>,
    /// Google Forms: responses by form ID, in submission order.
    forms: BTreeMap<String, Vec<Value>>,
    /// Google Docs: title and body text (ending in the body's final newline) by document ID,
    /// and each document's revision.
    documents: BTreeMap<String, (String, String, u64)>,
}

type Shared = Arc<Mutex<Calendar>>;

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": status.as_u16(), "message": message}})),
    )
        .into_response()
}

/// Google's refusals, then any scripted failure; `None` lets the request through.
fn gate(cal: &mut Calendar, method: &Method, headers: &HeaderMap, uri: &str) -> Option<Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        Some(FRESH) => {}
        Some(READONLY) if method == Method::GET => {}
        Some(READONLY) => {
            return Some(error(
                StatusCode::FORBIDDEN,
                "Request had insufficient authentication scopes.",
            ));
        }
        _ => {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "Request had invalid authentication credentials.",
            ));
        }
    }
    cal.requests.push(format!("{method} {uri}"));
    let (status, retry_after) = cal.failures.pop_front()?;
    let mut response = error(StatusCode::from_u16(status).unwrap(), "try again later");
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", seconds.to_string().parse().unwrap());
    }
    Some(response)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An event as Google stores it: the body given, with Google's own fields.
fn stored(cal: &mut Calendar, calendar: &str, body: &Value, query: &Map<String, Value>) -> Value {
    cal.next_id += 1;
    let id = format!("evt{:04}", cal.next_id);
    let mut event = body.clone();
    let at = now();
    event["id"] = json!(id);
    event["kind"] = json!("calendar#event");
    event["status"] = json!("confirmed");
    event["created"] = json!(at);
    event["updated"] = json!(at);
    event["htmlLink"] = json!(format!("https://www.google.com/calendar/event?eid={id}"));
    event["organizer"] = json!({"email": calendar, "self": true});
    if event["conferenceData"]["createRequest"].is_object()
        && query.get("conferenceDataVersion").and_then(Value::as_str) == Some("1")
    {
        event["conferenceData"]["conferenceId"] = json!("abc-defg-hij");
        event["hangoutLink"] = json!("https://meet.google.com/abc-defg-hij");
    }
    event
}

async fn events(
    State(state): State<Shared>,
    method: Method,
    UrlPath(calendar): UrlPath<String>,
    Query(query): Query<Map<String, Value>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut cal = state.lock().unwrap();
    let uri = format!(
        "/calendar/v3/calendars/{calendar}/events?{}",
        query
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join("&")
    );
    if let Some(refused) = gate(&mut cal, &method, &headers, &uri) {
        return refused;
    }
    if method == Method::POST {
        let body: Value = serde_json::from_str(&body).unwrap();
        let event = stored(&mut cal, &calendar, &body, &query);
        cal.events.entry(calendar).or_default().push(event.clone());
        return axum::Json(event).into_response();
    }
    let text = |key: &str| query.get(key).and_then(Value::as_str).map(str::to_string);
    let mut found: Vec<Value> = cal
        .events
        .get(&calendar)
        .into_iter()
        .flatten()
        .filter(|e| text("updatedMin").is_none_or(|min| e["updated"].as_str().unwrap() >= &*min))
        .filter(|e| {
            text("timeMin").is_none_or(|min| e["end"]["dateTime"].as_str().unwrap_or("") > &*min)
        })
        .filter(|e| {
            text("timeMax").is_none_or(|max| e["start"]["dateTime"].as_str().unwrap_or("") < &*max)
        })
        .filter(|e| text("q").is_none_or(|q| e["summary"].as_str().unwrap_or("").contains(&*q)))
        .cloned()
        .collect();
    if text("orderBy").as_deref() == Some("updated") {
        found.sort_by(|a, b| a["updated"].as_str().cmp(&b["updated"].as_str()));
    }
    let size = text("maxResults")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(250)
        .min(PAGE);
    let from: usize = text("pageToken").map_or(0, |t| t.parse().unwrap());
    let page: Vec<Value> = found.iter().skip(from).take(size).cloned().collect();
    let mut answer = json!({"kind": "calendar#events", "summary": calendar, "items": page});
    if from + size < found.len() {
        answer["nextPageToken"] = json!((from + size).to_string());
    }
    axum::Json(answer).into_response()
}

async fn event(
    State(state): State<Shared>,
    method: Method,
    UrlPath((calendar, id)): UrlPath<(String, String)>,
    Query(query): Query<Map<String, Value>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut cal = state.lock().unwrap();
    let uri = format!("/calendar/v3/calendars/{calendar}/events/{id}");
    if let Some(refused) = gate(&mut cal, &method, &headers, &uri) {
        return refused;
    }
    let events = cal.events.entry(calendar).or_default();
    let Some(at) = events.iter().position(|e| e["id"] == id.as_str()) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if method == Method::DELETE {
        events.remove(at);
        return StatusCode::NO_CONTENT.into_response();
    }
    if method == Method::PATCH {
        let patch: Value = serde_json::from_str(&body).unwrap();
        let event = &mut events[at];
        for (key, value) in patch.as_object().unwrap() {
            event[key] = value.clone();
        }
        event["updated"] = json!(now());
        let _ = query;
    }
    axum::Json(events[at].clone()).into_response()
}

async fn free_busy(
    State(state): State<Shared>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut cal = state.lock().unwrap();
    if let Some(refused) = gate(&mut cal, &Method::POST, &headers, "/calendar/v3/freeBusy") {
        return refused;
    }
    let (min, max) = (
        body["timeMin"].as_str().unwrap(),
        body["timeMax"].as_str().unwrap(),
    );
    let mut calendars = Map::new();
    for item in body["items"].as_array().unwrap() {
        let id = item["id"].as_str().unwrap();
        let busy: Vec<Value> = cal
            .events
            .get(id)
            .into_iter()
            .flatten()
            .filter(|e| {
                e["start"]["dateTime"].as_str().unwrap_or("") < max
                    && e["end"]["dateTime"].as_str().unwrap_or("") > min
            })
            .map(|e| json!({"start": e["start"]["dateTime"], "end": e["end"]["dateTime"]}))
            .collect();
        calendars.insert(id.to_string(), json!({"busy": busy}));
    }
    axum::Json(
        json!({"kind": "calendar#freeBusy", "timeMin": min, "timeMax": max,
                      "calendars": calendars}),
    )
    .into_response()
}

/// The token endpoint of the `google` integration (its URL overridden): a refresh grant for
/// the known refresh token gets [`FRESH`].
async fn token(
    State(state): State<Shared>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    if form.get("grant_type").map(String::as_str) != Some("refresh_token")
        || form.get("refresh_token").map(String::as_str) != Some(REFRESH)
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    state.lock().unwrap().grants += 1;
    axum::Json(
        json!({"access_token": FRESH, "token_type": "Bearer", "expires_in": 3599,
                      "scope": concat!("https://www.googleapis.com/auth/calendar ",
                                       "https://www.googleapis.com/auth/forms.responses.readonly ",
                                       "https://www.googleapis.com/auth/documents")}),
    )
    .into_response()
}

/// The example's sheet: `GET …/values/{range}` of the `Sessions` sheet from the range's row.
async fn sheet_values(
    State(state): State<Shared>,
    UrlPath((_, range)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut cal = state.lock().unwrap();
    if let Some(refused) = gate(&mut cal, &Method::GET, &headers, "/v4/spreadsheets") {
        return refused;
    }
    let cells = range.rsplit_once('!').unwrap().1;
    let first: usize = cells
        .chars()
        .skip_while(char::is_ascii_alphabetic)
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap();
    let values: Vec<Value> = cal
        .sheet
        .iter()
        .skip(first - 1)
        .map(|row| json!(row))
        .collect();
    axum::Json(json!({"range": range, "majorDimension": "ROWS", "values": values})).into_response()
}

/// `GET /v1/forms/{form}/responses`: the responses submitted at or after the filter's
/// timestamp (`timestamp >= T`, the one filter the trigger sends), paged.
async fn form_responses(
    State(state): State<Shared>,
    UrlPath(form): UrlPath<String>,
    Query(query): Query<Map<String, Value>>,
    headers: HeaderMap,
) -> Response {
    let mut cal = state.lock().unwrap();
    let uri = format!("/v1/forms/{form}/responses");
    if let Some(refused) = gate(&mut cal, &Method::GET, &headers, &uri) {
        return refused;
    }
    let since = match query.get("filter").and_then(Value::as_str) {
        None => String::new(),
        Some(filter) => match filter.strip_prefix("timestamp >= ") {
            Some(t) if t.ends_with('Z') => t.to_string(),
            _ => return error(StatusCode::BAD_REQUEST, "Invalid filter"),
        },
    };
    let found: Vec<Value> = cal
        .forms
        .get(&form)
        .into_iter()
        .flatten()
        .filter(|r| r["lastSubmittedTime"].as_str().unwrap() >= since.as_str())
        .cloned()
        .collect();
    let from: usize = query
        .get("pageToken")
        .and_then(Value::as_str)
        .map_or(0, |t| t.parse().unwrap());
    let page: Vec<Value> = found.iter().skip(from).take(PAGE).cloned().collect();
    let mut answer = json!({"responses": page});
    if from + PAGE < found.len() {
        answer["nextPageToken"] = json!((from + PAGE).to_string());
    }
    axum::Json(answer).into_response()
}

async fn form_response(
    State(state): State<Shared>,
    UrlPath((form, id)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut cal = state.lock().unwrap();
    let uri = format!("/v1/forms/{form}/responses/{id}");
    if let Some(refused) = gate(&mut cal, &Method::GET, &headers, &uri) {
        return refused;
    }
    match cal
        .forms
        .get(&form)
        .and_then(|all| all.iter().find(|r| r["responseId"] == id.as_str()))
    {
        Some(response) => axum::Json(response.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "Requested entity was not found."),
    }
}

fn submit(state: &Shared, form: &str, email: &str, answer: &str) -> String {
    let mut cal = state.lock().unwrap();
    cal.next_id += 1;
    let id = format!("ACYDBNj{:04}", cal.next_id);
    let at = now();
    let response = json!({"responseId": id, "createTime": at, "lastSubmittedTime": at,
        "respondentEmail": email,
        "answers": {"5a1b2c3d": {"questionId": "5a1b2c3d",
                                 "textAnswers": {"answers": [{"value": answer}]}}}});
    cal.forms
        .entry(form.to_string())
        .or_default()
        .push(response);
    id
}

fn document_json(id: &str, (title, text, revision): &(String, String, u64)) -> Value {
    let end = text.encode_utf16().count() + 1;
    json!({"documentId": id, "title": title, "revisionId": format!("rev{revision}"),
           "body": {"content": [{"startIndex": 1, "endIndex": end,
               "paragraph": {"elements": [{"startIndex": 1, "endIndex": end,
                                           "textRun": {"content": text}}]}}]}})
}

/// `POST /v1/documents` (a blank document with the title) and `POST /v1/documents/{id}:batchUpdate`
/// (`insertText` at an index, 1 being the body's start, or at the end of the body).
async fn documents_post(
    State(state): State<Shared>,
    path: Option<UrlPath<String>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut cal = state.lock().unwrap();
    if let Some(refused) = gate(&mut cal, &Method::POST, &headers, "/v1/documents") {
        return refused;
    }
    let Some(UrlPath(target)) = path else {
        cal.next_id += 1;
        let id = format!("1DocId{:04}", cal.next_id);
        let doc = (
            body["title"]
                .as_str()
                .unwrap_or("Untitled document")
                .to_string(),
            "\n".to_string(),
            1,
        );
        let answer = document_json(&id, &doc);
        cal.documents.insert(id, doc);
        return axum::Json(answer).into_response();
    };
    let id = target.strip_suffix(":batchUpdate").expect(":batchUpdate");
    let Some(doc) = cal.documents.get_mut(id) else {
        return error(StatusCode::NOT_FOUND, "Requested entity was not found.");
    };
    for request in body["requests"].as_array().unwrap() {
        let insert = &request["insertText"];
        let text = insert["text"].as_str().unwrap();
        let units: Vec<u16> = doc.1.encode_utf16().collect();
        let at = if insert.get("endOfSegmentLocation").is_some() {
            units.len() - 1
        } else {
            let index = insert["location"]["index"].as_u64().unwrap() as usize;
            if index < 1 || index > units.len() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Index must be less than the end index of the referenced segment.",
                );
            }
            index - 1
        };
        let mut out = String::from_utf16(&units[..at]).unwrap();
        out.push_str(text);
        out.push_str(&String::from_utf16(&units[at..]).unwrap());
        doc.1 = out;
    }
    doc.2 += 1;
    axum::Json(json!({"documentId": id, "replies": [{}],
                      "writeControl": {"requiredRevisionId": format!("rev{}", doc.2)}}))
    .into_response()
}

async fn document_get(
    State(state): State<Shared>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let mut cal = state.lock().unwrap();
    if let Some(refused) = gate(&mut cal, &Method::GET, &headers, "/v1/documents") {
        return refused;
    }
    match cal.documents.get(&id) {
        Some(doc) => axum::Json(document_json(&id, doc)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Requested entity was not found."),
    }
}

async fn fake_google() -> (String, Shared) {
    let state: Shared = Arc::default();
    let app = Router::new()
        .route(
            "/calendar/v3/calendars/{calendar}/events",
            get(events).post(events),
        )
        .route(
            "/calendar/v3/calendars/{calendar}/events/{id}",
            get(event).patch(event).delete(event),
        )
        .route("/calendar/v3/freeBusy", post(free_busy))
        .route("/v1/forms/{form}/responses", get(form_responses))
        .route("/v1/forms/{form}/responses/{id}", get(form_response))
        .route("/v1/documents", post(documents_post))
        .route("/v1/documents/{id}", get(document_get).post(documents_post))
        .route("/token", post(token))
        .route("/v4/spreadsheets/{id}/values/{range}", get(sheet_values))
        .with_state(state.clone());
    let addr = common::server::serve(app).await;
    (format!("http://{addr}"), state)
}

fn switchyard(api: &str, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("SWITCHYARD_ALLOW_EGRESS", "127.0.0.1")
        .env(
            "SWITCHYARD_APP_BASE_URLS",
            format!(
                "google-calendar={api},google-sheets={api},google-forms={api},google-docs={api}"
            ),
        )
        .env_remove("SWITCHYARD_DATABASE_URL")
        .env_remove("SWITCHYARD_MASTER_KEY")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The `google` integration with its token URL on the fake.
fn integrations(api: &str, dir: &Path) -> std::path::PathBuf {
    let file = dir.join("integrations.json");
    let entry = json!([{"provider": "google", "alias": "google", "context": "bot",
        "scope": concat!("https://www.googleapis.com/auth/calendar ",
            "https://www.googleapis.com/auth/forms.responses.readonly ",
            "https://www.googleapis.com/auth/documents"),
        "client_id": "cid.apps.googleusercontent.com",
        "client_secret": "calendar-test-secret", "token_url": format!("{api}/token")}]);
    std::fs::write(&file, entry.to_string()).unwrap();
    file
}

fn run(api: &str, dir: &Path, data: &Path, integrations: &Path, flow: Vec<Value>) -> Value {
    let file = dir.join("scenario.json");
    std::fs::write(&file, json!({"name": "calendar", "flow": flow}).to_string()).unwrap();
    let out = switchyard(
        api,
        &[
            "run",
            file.to_str().unwrap(),
            "--json",
            "--data-dir",
            data.to_str().unwrap(),
            "--integrations",
            integrations.to_str().unwrap(),
        ],
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no report: {}", String::from_utf8_lossy(&out.stderr)))
}

/// A Calendar module as a Make export writes it: version 5, the connection by Make's id.
fn module(id: u32, name: &str, connection: u64, mapper: Value) -> Value {
    json!({"id": id, "module": format!("google-calendar:{name}"), "version": 5,
           "parameters": {"__IMTCONN__": connection}, "mapper": mapper})
}

fn outputs(report: &Value, id: u32) -> Vec<Value> {
    report["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["module"] == id)
        .map(|e| e["output"].clone())
        .collect()
}

fn requests(state: &Shared) -> Vec<String> {
    state.lock().unwrap().requests.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendar_events_end_to_end() {
    let (api, state) = fake_google().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let integrations = integrations(&api, dir.path());
    let add = |name: &str, id: &str, extra: &[&str]| {
        let mut args = vec![
            "connections",
            "add",
            name,
            "--app",
            "google-calendar",
            "--id",
            id,
            "--no-test",
            "--data-dir",
            data.to_str().unwrap(),
            "--integrations",
            integrations.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = switchyard(&api, &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A stale access token with a refresh token: the first call meets a 401.
    add(
        "google",
        "4728231",
        &[
            "--access-token",
            "ya29.stale",
            "--refresh-token",
            REFRESH,
            "--integration",
            "google",
        ],
    );
    let run = |flow: Vec<Value>| run(&api, dir.path(), &data, &integrations, flow);

    // Create an Event as Make maps it: refused once (401), refreshed once, resent.
    let report = run(vec![module(
        1,
        "createAnEvent",
        4728231,
        json!({"calendar": "team@example.com", "select": "detail", "summary": "Planning",
               "description": "Q1", "location": "Room 4", "start": "2026-12-10T09:00:00Z",
               "duration": "1:30", "timeZone": "Europe/Prague", "allDayEvent": false,
               "visibility": "default", "transparency": "opaque", "conferenceDate": true,
               "attendees": [{"email": "ann@example.com", "displayName": "Ann"}],
               "overrides": [{"method": "popup", "minutes": 10}], "sendUpdates": "all"}),
    )]);
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(state.lock().unwrap().grants, 1, "refreshed once");
    let created = &outputs(&report, 1)[0];
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["summary"], "Planning");
    assert_eq!(
        created["start"],
        json!({"dateTime": "2026-12-10T09:00:00.000Z", "timeZone": "Europe/Prague"})
    );
    assert_eq!(
        created["end"],
        json!({"dateTime": "2026-12-10T10:30:00.000Z", "timeZone": "Europe/Prague"})
    );
    assert_eq!(
        created["attendees"],
        json!([{"email": "ann@example.com", "displayName": "Ann"}])
    );
    assert_eq!(
        created["reminders"],
        json!({"useDefault": false, "overrides": [{"method": "popup", "minutes": 10}]})
    );
    assert_eq!(
        created["hangoutLink"],
        "https://meet.google.com/abc-defg-hij"
    );
    let sent = requests(&state);
    assert!(
        sent[0].contains("sendUpdates=all") && sent[0].contains("conferenceDataVersion=1"),
        "{sent:?}"
    );

    // Update an Event: only the mapped fields change.
    let report = run(vec![module(
        1,
        "updateAnEvent",
        4728231,
        json!({"calendar": "team@example.com", "eventId": id, "summary": "Planning (moved)"}),
    )]);
    assert_eq!(report["status"], "success", "{report}");
    let updated = &outputs(&report, 1)[0];
    assert_eq!(updated["summary"], "Planning (moved)");
    assert_eq!(updated["location"], "Room 4");
    assert_eq!(updated["start"], created["start"]);

    // Search Events pages up to its limit (the fake answers two events a page).
    for day in 11..=14 {
        let report = run(vec![module(
            1,
            "createAnEvent",
            4728231,
            json!({"calendar": "team@example.com", "summary": format!("Standup {day}"),
                   "start": format!("2026-12-{day}T08:00:00Z"),
                   "end": format!("2026-12-{day}T08:15:00Z")}),
        )]);
        assert_eq!(report["status"], "success", "{report}");
    }
    let before = requests(&state).len();
    let report = run(vec![module(
        1,
        "searchEvents",
        4728231,
        json!({"calendar": "team@example.com", "q": "Standup", "limit": 3}),
    )]);
    assert_eq!(report["status"], "success", "{report}");
    let found: Vec<Value> = outputs(&report, 1)
        .iter()
        .map(|e| e["summary"].clone())
        .collect();
    assert_eq!(found, ["Standup 11", "Standup 12", "Standup 13"]);
    assert_eq!(requests(&state).len() - before, 2, "two pages read");
    let report = run(vec![module(
        1,
        "searchEvents",
        4728231,
        json!({"calendar": "team@example.com", "start": "2026-12-12T00:00:00Z",
               "end": "2026-12-14T00:00:00Z"}),
    )]);
    let found: Vec<Value> = outputs(&report, 1)
        .iter()
        .map(|e| e["summary"].clone())
        .collect();
    assert_eq!(found, ["Standup 12", "Standup 13"], "{report}");

    // A 429 with Retry-After, then a 503: both retried within the call.
    state
        .lock()
        .unwrap()
        .failures
        .extend([(429, Some(1)), (503, None)]);
    let before = requests(&state).len();
    let report = run(vec![module(
        1,
        "getFreeBusy",
        4728231,
        json!({"calendars": ["team@example.com"], "timeMin": "2026-12-10T00:00:00Z",
               "timeMax": "2026-12-11T00:00:00Z", "timeZone": "UTC"}),
    )]);
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(requests(&state).len() - before, 3, "sent three times");
    assert_eq!(
        outputs(&report, 1)[0]["calendars"]["team@example.com"]["busy"],
        json!([{"start": "2026-12-10T09:00:00.000Z", "end": "2026-12-10T10:30:00.000Z"}])
    );

    // Make an API Call: the path is below /calendar, as Make's module writes it.
    let report = run(vec![module(
        1,
        "makeApiCall",
        4728231,
        json!({"url": format!("/v3/calendars/team@example.com/events/{id}"), "method": "GET"}),
    )]);
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(outputs(&report, 1)[0]["statusCode"], 200);
    assert_eq!(
        outputs(&report, 1)[0]["body"]["summary"],
        "Planning (moved)"
    );

    // Delete an Event; an event that is not there is the API's 404, a DataError.
    let report = run(vec![module(
        1,
        "deleteAnEvent",
        4728231,
        json!({"calendar": "team@example.com", "eventId": id}),
    )]);
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(outputs(&report, 1)[0], json!({"eventId": id}));
    assert_eq!(state.lock().unwrap().events["team@example.com"].len(), 4);
    let report = run(vec![module(
        1,
        "deleteAnEvent",
        4728231,
        json!({"calendar": "team@example.com", "eventId": id}),
    )]);
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(report["error"]["name"], "DataError", "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[404] Not Found"),
        "{report}"
    );

    // A token granted only reading: writing is Google's 403, InvalidAccessTokenError, and
    // nothing is created.
    add("reader", "77", &["--access-token", READONLY]);
    let report = run(vec![module(
        1,
        "createAnEvent",
        77,
        json!({"calendar": "team@example.com", "summary": "Nope",
               "start": "2026-12-20T08:00:00Z", "end": "2026-12-20T09:00:00Z"}),
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
            .contains("insufficient authentication scopes"),
        "{report}"
    );
    assert_eq!(state.lock().unwrap().events["team@example.com"].len(), 4);
    // Reading with it works.
    let report = run(vec![module(
        1,
        "searchEvents",
        77,
        json!({"calendar": "team@example.com", "limit": 1}),
    )]);
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(state.lock().unwrap().grants, 1, "no other refresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_responses_are_read() {
    let (api, state) = fake_google().await;
    let id = submit(&state, "1FAIpQLSf-form", "ann@example.com", "Yes, twice");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let integrations = integrations(&api, dir.path());
    let out = switchyard(
        &api,
        &[
            "connections",
            "add",
            "forms",
            "--app",
            "google-forms",
            "--id",
            "5551",
            "--no-test",
            "--access-token",
            "ya29.stale",
            "--refresh-token",
            REFRESH,
            "--integration",
            "google",
            "--data-dir",
            data.to_str().unwrap(),
            "--integrations",
            integrations.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let forms = |name: &str, mapper: Value| {
        json!({"id": 1, "module": format!("google-forms:{name}"), "version": 1,
               "parameters": {"__IMTCONN__": 5551}, "mapper": mapper})
    };
    // Get a Response after a refused token is refreshed, a 429 and a 500 retried.
    state
        .lock()
        .unwrap()
        .failures
        .extend([(429, Some(1)), (500, None)]);
    let report = run(
        &api,
        dir.path(),
        &data,
        &integrations,
        vec![forms(
            "getResponse",
            json!({"formId": "1FAIpQLSf-form", "responseId": id}),
        )],
    );
    assert_eq!(report["status"], "success", "{report}");
    let response = &outputs(&report, 1)[0];
    assert_eq!(response["respondentEmail"], "ann@example.com");
    assert_eq!(
        response["answers"]["5a1b2c3d"]["textAnswers"]["answers"][0]["value"],
        "Yes, twice"
    );
    assert_eq!(state.lock().unwrap().grants, 1);
    assert!(state.lock().unwrap().failures.is_empty());
    // An unknown response is the API's 404, a DataError; a form ID that could leave the path
    // is refused before anything is sent.
    let report = run(
        &api,
        dir.path(),
        &data,
        &integrations,
        vec![forms(
            "getResponse",
            json!({"formId": "1FAIpQLSf-form", "responseId": "nope"}),
        )],
    );
    assert_eq!(report["error"]["name"], "DataError", "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[404] Requested entity was not found."),
        "{report}"
    );
    let before = requests(&state).len();
    let file = dir.path().join("bad-form.json");
    let flow = vec![forms(
        "getResponse",
        json!({"formId": "../../v1/forms", "responseId": id}),
    )];
    std::fs::write(&file, json!({"name": "bad", "flow": flow}).to_string()).unwrap();
    let out = switchyard(
        &api,
        &[
            "run",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("flow[0].mapper.formId"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(requests(&state).len(), before, "nothing sent");

    // A token granted only Calendar's scope: refused before any request, naming the scope.
    let out = switchyard(
        &api,
        &[
            "connections",
            "add",
            "calendar-only",
            "--app",
            "google-forms",
            "--id",
            "5552",
            "--no-test",
            "--access-token",
            FRESH,
            "--scope",
            "https://www.googleapis.com/auth/calendar",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let mut module = forms(
        "getResponse",
        json!({"formId": "1FAIpQLSf-form", "responseId": id}),
    );
    module["parameters"]["__IMTCONN__"] = json!(5552);
    let report = run(&api, dir.path(), &data, &integrations, vec![module]);
    assert_eq!(
        report["error"]["name"], "InvalidAccessTokenError",
        "{report}"
    );
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("forms.responses.readonly"),
        "{report}"
    );
    assert_eq!(requests(&state).len(), before, "nothing sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_written_and_read() {
    let (api, state) = fake_google().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let integrations = integrations(&api, dir.path());
    let out = switchyard(
        &api,
        &[
            "connections",
            "add",
            "docs",
            "--app",
            "google-docs",
            "--id",
            "6661",
            "--no-test",
            "--access-token",
            "ya29.stale",
            "--refresh-token",
            REFRESH,
            "--integration",
            "google",
            "--data-dir",
            data.to_str().unwrap(),
            "--integrations",
            integrations.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = |id: u32, name: &str, mapper: Value| {
        json!({"id": id, "module": format!("google-docs:{name}"), "version": 1,
               "parameters": {"__IMTCONN__": 6661}, "mapper": mapper})
    };
    // Create (after the refused token is refreshed), insert at the start, append, read back;
    // a 503 on the way is retried.
    state.lock().unwrap().failures.push_back((503, None));
    let report = run(
        &api,
        dir.path(),
        &data,
        &integrations,
        vec![
            docs(
                1,
                "createADocument",
                json!({"name": "Minutes", "content": "Agreed: ship.\n"}),
            ),
            docs(
                2,
                "insertText",
                json!({"documentId": "{{1.documentId}}",
                                          "text": "Minutes of Monday\n", "index": 1}),
            ),
            docs(
                3,
                "appendText",
                json!({"documentId": "/{{1.documentId}}", "text": "Next: Friday."}),
            ),
            docs(
                4,
                "getADocument",
                json!({"select": "map", "documentId": "{{1.documentId}}"}),
            ),
        ],
    );
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(state.lock().unwrap().grants, 1);
    let created = &outputs(&report, 1)[0];
    assert_eq!(created["title"], "Minutes");
    let id = created["documentId"].as_str().unwrap().to_string();
    assert_eq!(
        state.lock().unwrap().documents[&id].1,
        "Minutes of Monday\nAgreed: ship.\nNext: Friday.\n"
    );
    let read = &outputs(&report, 4)[0];
    assert_eq!(
        read["body"]["content"][0]["paragraph"]["elements"][0]["textRun"]["content"],
        "Minutes of Monday\nAgreed: ship.\nNext: Friday.\n"
    );
    // An index past the end is the API's 400, a DataError; an unknown document its 404.
    let report = run(
        &api,
        dir.path(),
        &data,
        &integrations,
        vec![docs(
            1,
            "insertText",
            json!({"documentId": id, "text": "x", "index": 999}),
        )],
    );
    assert_eq!(report["error"]["name"], "DataError", "{report}");
    let report = run(
        &api,
        dir.path(),
        &data,
        &integrations,
        vec![docs(1, "getADocument", json!({"documentId": "1NoSuchDoc"}))],
    );
    assert_eq!(report["error"]["name"], "DataError", "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[404]"),
        "{report}"
    );
}

fn add_event(state: &Shared, calendar: &str, summary: &str) {
    let mut cal = state.lock().unwrap();
    let body = json!({"summary": summary,
                      "start": {"dateTime": "2026-12-10T09:00:00.000Z"},
                      "end": {"dateTime": "2026-12-10T10:00:00.000Z"}});
    let event = stored(&mut cal, calendar, &body, &Map::new());
    cal.events
        .entry(calendar.to_string())
        .or_default()
        .push(event);
}

fn summaries(state: &Shared, calendar: &str) -> Vec<String> {
    state
        .lock()
        .unwrap()
        .events
        .get(calendar)
        .into_iter()
        .flatten()
        .map(|e| e["summary"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn wait_for(what: impl Fn() -> usize, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while what() < count {
        assert!(Instant::now() < deadline, "only {} of {count}", what());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_triggers_emit_each_new_item_once() {
    let (api, state) = fake_google().await;
    add_event(&state, "team@example.com", "Old");
    submit(&state, "1FAIpQLSf-form", "old@example.com", "before");
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let bases = format!("google-calendar={api},google-forms={api}");
    db.add_access_token_connection(
        "google-calendar",
        "google-calendar",
        FRESH,
        "4728231",
        &bases,
    );
    db.add_access_token_connection("google-forms", "google-forms", FRESH, "5551", &bases);
    let blueprint = json!({
        "name": "copy new team events",
        "flow": [
            module(1, "watchEvents", 4728231, json!({"calendar": "team@example.com",
                "watch": "created", "limit": 5})),
            module(2, "createAnEvent", 4728231, json!({"calendar": "log@example.com",
                "select": "detail", "summary": "{{1.summary}}",
                "start": "{{1.start.dateTime}}", "end": "{{1.end.dateTime}}"}))
        ],
        "scheduling": {"type": "indefinitely", "interval": 1}
    });
    let serve_args = ["--min-interval-seconds", "1", "--app-base-url", &bases];
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
    // Form responses, each noted as an event of another calendar.
    let responses = json!({
        "name": "note new form responses",
        "flow": [
            {"id": 1, "module": "google-forms:watchResponses", "version": 1,
             "parameters": {"__IMTCONN__": 5551},
             "mapper": {"formId": "1FAIpQLSf-form", "limit": 10}},
            module(2, "createAnEvent", 4728231, json!({"calendar": "forms@example.com",
                "summary": "{{1.respondentEmail}}: {{1.answers.`5a1b2c3d`.textAnswers.answers[1].value}}",
                "start": "2026-12-10T09:00:00Z", "end": "2026-12-10T09:05:00Z"}))
        ],
        "scheduling": {"type": "indefinitely", "interval": 1}
    });
    let forms_id = service.api.create(&responses).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = service
        .api
        .post(&format!("/api/scenarios/{forms_id}/activate"), &json!({}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let logged = || summaries(&state, "log@example.com").len();
    let noted = || summaries(&state, "forms@example.com").len();

    // The first polls count the events and responses already there as seen; later ones are
    // copied (three responses: two pages).
    db.executions_at_least(2).await;
    add_event(&state, "team@example.com", "Ann's review");
    add_event(&state, "team@example.com", "Bob's review");
    for (who, what) in [("ann", "yes"), ("bob", "no"), ("cy", "maybe")] {
        submit(
            &state,
            "1FAIpQLSf-form",
            &format!("{who}@example.com"),
            what,
        );
    }
    wait_for(logged, 2).await;
    wait_for(noted, 3).await;
    assert_eq!(
        summaries(&state, "log@example.com"),
        ["Ann's review", "Bob's review"]
    );
    assert_eq!(
        summaries(&state, "forms@example.com"),
        [
            "ann@example.com: yes",
            "bob@example.com: no",
            "cy@example.com: maybe"
        ]
    );

    // Across a restart the cursor holds: nothing copied twice, a new event copied once.
    db.executions_settled().await;
    drop(service);
    let service = db.serve(&serve_args).await;
    add_event(&state, "team@example.com", "Cy's review");
    submit(&state, "1FAIpQLSf-form", "di@example.com", "later");
    wait_for(logged, 3).await;
    wait_for(noted, 4).await;
    let before = db.ended_executions();
    db.executions_at_least(before + 4).await;
    assert_eq!(
        summaries(&state, "log@example.com"),
        ["Ann's review", "Bob's review", "Cy's review"]
    );
    assert_eq!(noted(), 4, "{:?}", summaries(&state, "forms@example.com"));
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_turns_rows_into_events() {
    let (api, state) = fake_google().await;
    state.lock().unwrap().sheet = vec![
        vec![
            json!("Session"),
            json!("Starts"),
            json!("Ends"),
            json!("Speaker"),
            json!("Room"),
        ],
        vec![
            json!("Kick-off"),
            json!("2026-12-01T09:00:00Z"),
            json!("2026-12-01T10:00:00Z"),
            json!("old@example.com"),
            json!("A"),
        ],
    ];
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let bases = format!("google-calendar={api},google-sheets={api}");
    db.add_access_token_connection("google-sheets", "google-sheets", FRESH, "41", &bases);
    db.add_access_token_connection("google-calendar", "google-calendar", FRESH, "42", &bases);
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/google-sheets-rows-to-calendar.json");
    let mut blueprint: Value = serde_json::from_slice(&std::fs::read(example).unwrap()).unwrap();
    // Polled every second here (the example says every 15 minutes).
    blueprint["scheduling"]["interval"] = json!(1);
    let serve_args = ["--min-interval-seconds", "1", "--app-base-url", &bases];
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
    db.executions_at_least(1).await;
    state.lock().unwrap().sheet.push(vec![
        json!("Rust in production"),
        json!("2026-12-02T13:00:00Z"),
        json!("2026-12-02T14:00:00Z"),
        json!("ann@example.com"),
        json!("B"),
    ]);
    wait_for(|| summaries(&state, "primary").len(), 1).await;
    db.executions_settled().await;
    let events = state.lock().unwrap().events["primary"].clone();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["summary"], "Rust in production");
    assert_eq!(event["location"], "Room B");
    assert_eq!(event["start"]["dateTime"], "2026-12-02T13:00:00.000Z");
    assert_eq!(event["end"]["dateTime"], "2026-12-02T14:00:00.000Z");
    assert_eq!(event["attendees"], json!([{"email": "ann@example.com"}]));
    assert_eq!(event["description"], "From row 3 of the sessions sheet.");
    drop(service);
}
