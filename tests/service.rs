//! The service end to end: the real `switchyard` binary run as `serve` and `worker` child
//! processes, driven over HTTP and through the admin CLI, on SQLite and on PostgreSQL.
//!
//! Every test runs on a fresh SQLite data directory (`sqlite::…`) and on a freshly created
//! PostgreSQL database (`postgres::…`) when `SWITCHYARD_TEST_DATABASE_URL` is set
//! (`eval "$(.ci/postgres.sh)"`); without it the PostgreSQL tests print
//! `PostgreSQL tests skipped: …` and pass. Scale-out with two `worker` processes is a
//! PostgreSQL feature and runs only there.
//!
//! - `api_and_webhooks`: auth, validation, hooks and every kind of webhook body, synchronous
//!   webhook responses, limits (404, 410, 413, 429, 400), idempotency keys, versions,
//!   run-now, retry, health, metrics and OpenAPI; each execution's report equals what
//!   `switchyard run --json` prints for the same scenario and input.
//! - `api_conventions`: every rejection (query string, path parameter, body), unknown route
//!   and wrong method answers with the JSON error envelope; times are RFC 3339 strings.
//! - `cli_admin`: `switchyard scenarios …` and `switchyard executions …` next to a running
//!   `serve`, human and `--json` output.
//! - `crash_recovery`: 2,000 keyed webhooks, `kill -9` mid-way, restart: each acknowledged
//!   webhook has exactly one successful execution and a re-sent key is a duplicate.
//! - `two_workers` (PostgreSQL): 1,000 queued executions, two worker processes, each
//!   execution's HTTP call made exactly once, both workers busy.
//! - `two_schedulers`: two `serve` processes on one database never run a schedule tick twice
//!   (on SQLite the second is refused: one owner per data directory); after downtime the
//!   missed ticks are caught up with one run.
//! - `one_owner_per_sqlite_data_directory` (SQLite): a second `serve` or a `worker` on a data
//!   directory a `serve` runs on is refused with a message naming it; admin commands still
//!   work; the lock is released by a graceful stop and by `kill -9`.
//!
//! - `consecutive_errors_turn_a_scenario_off`: Make's `maxErrors` on a webhook scenario: an
//!   error, a success, then two errors in a row turn it off with the reason in the API; every
//!   failure is logged at `warn` and POSTed to `--notify-url` with the deactivation;
//!   activating it again clears the reason.
//! - `polling_cursor`: `rss:TriggerNewArticle` on a fake feed that publishes 500 items over
//!   time and lists only the newest 50; the scenario is edited and re-activated and the
//!   server stopped with SIGTERM and restarted: each item reaches the sink exactly once; after
//!   `kill -9` only uncommitted items repeat; `scenarios reset-trigger` starts afresh.

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use common::json_diff;
use harness::*;

common::backend_tests!(
    both: [
        api_and_webhooks,
        api_conventions,
        cli_admin,
        crash_recovery,
        two_schedulers,
        database_outage,
        polling_cursor,
        first_five_minutes,
        slow_clients_are_cut_off,
        consecutive_errors_turn_a_scenario_off,
    ],
    postgres_only: [two_workers],
);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `second`, started on the SQLite data directory of `db` while the process `owner` runs
/// there, exits non-zero within 30 s saying which data directory (and which process holds it).
fn assert_refused_as_second_owner(db: &TestDb, mut second: Proc, owner: u32) {
    let status = second
        .wait_exit(30)
        .unwrap_or_else(|| panic!("{} was not refused:\n{}", second.name, second.log()));
    let log = second.log();
    assert!(!status.success(), "{}: {status}:\n{log}", second.name);
    let dir = db.data_dir().display().to_string();
    assert!(
        log.contains(&format!("the SQLite data directory {dir} is already used")),
        "{}: the refusal names the data directory:\n{log}",
        second.name
    );
    assert!(
        log.contains(&format!("(process {owner})")) && log.contains("PostgreSQL"),
        "{}: the refusal names the owner and the way out:\n{log}",
        second.name
    );
}

/// One owner per SQLite data directory: a second `serve` or a `worker` next to a running
/// `serve` is refused (exit non-zero, the data directory named) while the first keeps
/// serving and admin commands keep working; the OS lock goes with its process, after a
/// graceful stop and after `kill -9`, and the next `serve` starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_per_sqlite_data_directory() {
    let db = TestDb::new(Backend::Sqlite)
        .await
        .expect("a SQLite database");
    let mut first = db.serve(&[]).await;
    let owner = first.proc.pid();
    assert_refused_as_second_owner(&db, db.spawn_serve(&[]), owner);
    assert_refused_as_second_owner(&db, db.worker(&[]), owner);
    let health = first
        .api
        .client
        .get(first.url("/health"))
        .send()
        .await
        .expect("the first still serves");
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    let listed = db.cli(&["scenarios", "list"]);
    assert!(
        listed.status.success(),
        "admin commands open without owning: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(first.proc.running(), "the first is still running");

    // `kill -9`: the OS lock dies with its process.
    first.kill();
    let mut second = db.serve(&[]).await;
    assert_refused_as_second_owner(&db, db.worker(&[]), second.proc.pid());
    // A graceful stop releases it too.
    assert!(second.proc.terminate(30), "serve did not stop on SIGTERM");
    let mut worker = db.worker(&[]);
    assert!(
        worker.wait_exit(3).is_none(),
        "a worker owns the directory once serve is gone:\n{}",
        worker.log()
    );
    assert_refused_as_second_owner(&db, db.spawn_serve(&[]), worker.pid());
    worker.kill();
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The report `switchyard run FILE --input INPUT --json` prints.
fn run_json(db: &TestDb, blueprint: &Value, input: &Value) -> Value {
    let file = db.write_json(
        &format!("run-{}.json", switchyard::store::new_id()),
        blueprint,
    );
    let out = std::process::Command::new(binary())
        .arg("run")
        .arg(&file)
        .args(["--input", &input.to_string(), "--json"])
        .output()
        .expect("run switchyard run");
    stdout_json(&out, "switchyard run --json")
}

/// The execution as the API shows it is `switchyard run --json`'s report for the same
/// scenario and input, its log read in pages (`log`, from [`Api::log`]), plus ids, timings
/// and a summary of each module that adds up to the log.
fn assert_same_report(execution: &Value, log: &Value, run: &Value) {
    for key in ["status", "operations", "cycles", "error", "response"] {
        assert_eq!(
            execution.get(key),
            run.get(key),
            "`{key}` differs between GET /api/executions/{{id}} and `switchyard run --json`\n\
             API: {execution}\nrun: {run}"
        );
    }
    assert_eq!(
        Some(log),
        run.get("log"),
        "the log read in pages differs from `switchyard run --json`'s"
    );
    assert!(
        execution.get("log").is_none(),
        "the summary has no log: {execution}"
    );
    let modules = execution["modules"].as_array().expect("modules");
    let stored: u64 = modules.iter().map(|m| m["stored"].as_u64().unwrap()).sum();
    assert_eq!(
        stored as usize,
        log.as_array().unwrap().len(),
        "{execution}"
    );
    for m in modules {
        assert_eq!(m["bundles"], m["stored"], "nothing omitted: {m}");
        assert_eq!(
            (&m["omitted"], &m["truncated"]),
            (&json!(0), &json!(0)),
            "{m}"
        );
    }
    for key in [
        "id",
        "scenarioId",
        "createdAt",
        "startedAt",
        "finishedAt",
        "workerId",
    ] {
        assert!(
            !execution[key].is_null(),
            "execution lacks `{key}`: {execution}"
        );
    }
    let duration = execution["durationMs"].as_i64().expect("durationMs");
    assert!(duration >= 0, "{execution}");
    let created = timestamp(&execution["createdAt"], "createdAt");
    let started = timestamp(&execution["startedAt"], "startedAt");
    let finished = timestamp(&execution["finishedAt"], "finishedAt");
    assert!(created <= started && started <= finished, "{execution}");
    assert_eq!(
        (finished - started).num_milliseconds(),
        duration,
        "durationMs is finishedAt - startedAt: {execution}"
    );
}

/// An API time: an RFC 3339 string in UTC with milliseconds, `2026-12-03T07:33:11.120Z`.
fn timestamp(value: &Value, what: &str) -> chrono::DateTime<chrono::Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("`{what}` is not a string: {value}"));
    let shape = text.len() == 24
        && text.ends_with('Z')
        && text.as_bytes()[10] == b'T'
        && text.as_bytes()[19] == b'.';
    assert!(shape, "`{what}` is not YYYY-MM-DDTHH:MM:SS.mmmZ: {text}");
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("`{what}` {text}: {e}"))
        .to_utc()
}

/// `instant` is within `seconds` of now.
fn assert_recent(instant: chrono::DateTime<chrono::Utc>, seconds: i64, what: &str) {
    let off = (chrono::Utc::now() - instant).num_seconds().abs();
    assert!(off <= seconds, "{what} {instant} is {off} s away from now");
}

/// Webhook → `POST {counter}/count` with the bundle's `n`.
fn counting_scenario(counter: &str) -> Value {
    json!({"name": "count", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "count"}},
        {"id": 2, "module": "http:MakeRequest", "mapper": {
            "url": format!("{counter}/count"), "method": "post", "contentType": "json",
            "inputMethod": "jsonString", "jsonStringBodyContent": "{\"n\": {{1.n}}}",
            "parseResponse": true}}
    ]})
}

fn api_error_code(reply: &Reply) -> &str {
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "an error is JSON: {}",
        reply.text
    );
    assert!(
        reply.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message: {}",
        reply.text
    );
    reply.json["error"]["code"].as_str().unwrap_or("")
}

/// One sample of a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.rsplit_once(' ')?;
        (n == name).then(|| v.parse().ok()).flatten()
    })
}

// ---------------------------------------------------------------------------------------------
// API and webhooks
// ---------------------------------------------------------------------------------------------

async fn api_and_webhooks(db: TestDb) {
    let svc = db
        .serve(&["--max-body-bytes", "4096", "--hook-rate", "25"])
        .await;
    let api = &svc.api;
    let http = reqwest::Client::new();

    // Health and the OpenAPI document need no token.
    let health = Reply::from(http.get(svc.url("/health")).send().await.unwrap())
        .await
        .expect(200, "GET /health");
    assert_eq!(health.json, json!({"status": "ok"}));
    let openapi = Reply::from(http.get(svc.url("/openapi.json")).send().await.unwrap())
        .await
        .expect(200, "GET /openapi.json");
    assert!(
        openapi.json["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "not OpenAPI 3: {}",
        openapi.text
    );
    assert!(openapi.json["info"]["title"].is_string());
    for path in ["/api/scenarios", "/api/executions/{id}", "/hooks/{id}"] {
        assert!(
            openapi.json["paths"][path].is_object(),
            "OpenAPI document lacks {path}"
        );
    }

    // The API needs the bearer token.
    let no_token = Reply::from(http.get(svc.url("/api/scenarios")).send().await.unwrap()).await;
    let wrong_token = Reply::from(
        http.get(svc.url("/api/scenarios"))
            .bearer_auth("not-the-token-not-the-token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let bare_token = Reply::from(
        http.get(svc.url("/api/scenarios"))
            .header("authorization", TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    for reply in [no_token, wrong_token, bare_token] {
        let reply = reply.expect(401, "API call without a valid token");
        assert_eq!(api_error_code(&reply), "unauthorized");
    }
    api.get("/api/scenarios")
        .await
        .expect(200, "list scenarios");
    // The scheme is case-insensitive.
    Reply::from(
        http.get(svc.url("/api/scenarios"))
            .header("authorization", format!("bearer {TOKEN}"))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200, "a lowercase `bearer` scheme");

    // An invalid blueprint: 422 with every problem and its JSON path.
    let bad = json!({"name": "bad", "flow": [
        {"id": 1, "module": "nope:Nothing"},
        {"id": 2, "module": "util:SetVariable2",
         "mapper": {"name": "x", "scope": "roundtrip", "value": "{{9.a}}"}}
    ]});
    let reply = api
        .post("/api/scenarios", &bad)
        .await
        .expect(422, "invalid blueprint");
    assert_eq!(api_error_code(&reply), "invalid_scenario");
    let paths: Vec<&str> = reply.json["error"]["details"]["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p["path"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        paths,
        ["flow[0].module", "flow[1].mapper.value"],
        "{}",
        reply.text
    );
    // Without --min-interval-seconds, Make's 60 s minimum holds.
    let fast = json!({"name": "fast", "flow": [{"id": 1, "module": "util:SetVariable2",
        "mapper": {"name": "x", "scope": "roundtrip", "value": "1"}}],
        "scheduling": {"type": "indefinitely", "interval": 5}});
    let reply = api
        .post("/api/scenarios", &fast)
        .await
        .expect(422, "interval below the minimum");
    assert_eq!(
        reply.json["error"]["path"], "scheduling.interval",
        "{}",
        reply.text
    );

    // A blueprint with only warnings (an unknown key, a placeholder module) is imported;
    // the answer lists the warnings with their paths.
    let noted = json!({"name": "noted", "_public_note": "exported", "flow": [
        {"id": 1, "module": "util:SetVariable2",
         "mapper": {"name": "x", "scope": "roundtrip", "value": "1"}},
        {"id": null, "module": "placeholder:Placeholder"}]});
    let reply = api
        .post("/api/scenarios", &noted)
        .await
        .expect(201, "a blueprint with warnings only");
    let warnings: Vec<&str> = reply.json["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| w["path"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(warnings, ["_public_note", "flow[1]"], "{}", reply.text);
    let noted_id = reply.json["id"].as_str().expect("id");
    api.send(
        reqwest::Method::DELETE,
        &format!("/api/scenarios/{noted_id}"),
        &Value::Null,
    )
    .await
    .expect(204, "delete the noted scenario");

    // Create: 201 with the hook of the webhook trigger.
    let blueprint = hook_scenario("orders");
    let created = api.create(&blueprint).await;
    let id = created["id"].as_str().expect("id").to_string();
    assert!(is_hex(&id), "{created}");
    assert_eq!(created["version"], 1);
    let hooks = created["hooks"].as_array().expect("hooks");
    assert_eq!(hooks.len(), 1, "{created}");
    assert_eq!(hooks[0]["module"], 1);
    let hook_path = hooks[0]["url"].as_str().expect("hook url").to_string();
    let hook_id = hook_path.strip_prefix("/hooks/").expect("/hooks/ URL");
    assert!(
        hook_id.len() == 64 && is_hex(hook_id),
        "hook ids carry 256 bits: {hook_path}"
    );
    assert_eq!(hooks[0], json!({"module": 1, "url": hook_path}));
    let url = svc.url(&hook_path);

    // Inactive scenario: 410.
    let reply = hook_json(&http, &url, &json!({"n": 1}))
        .await
        .expect(410, "hook of an inactive scenario");
    assert_eq!(api_error_code(&reply), "inactive_hook");
    let activated = api
        .post(&format!("/api/scenarios/{id}/activate"), &Value::Null)
        .await
        .expect(200, "activate")
        .json;
    assert_eq!(activated["active"], true);

    // Every kind of body becomes one bundle; the execution is `run --json`'s report.
    let cases: Vec<(&str, Option<&str>, String, Value)> = vec![
        (
            "?q=1",
            Some("application/json"),
            json!({"n": 1, "nested": {"a": [1, 2]}, "q": "body wins"}).to_string(),
            json!({"n": 1, "nested": {"a": [1, 2]}, "q": "body wins"}),
        ),
        (
            "?q=7&a=9",
            Some("application/x-www-form-urlencoded"),
            "n=2&a=1&b=x+y&c=%C3%A9".to_string(),
            json!({"n": "2", "a": "1", "b": "x y", "c": "é", "q": "7"}),
        ),
        ("?n=3&m=x", None, String::new(), json!({"n": "3", "m": "x"})),
        (
            "",
            Some("text/plain"),
            "hello world".to_string(),
            json!({"value": "hello world"}),
        ),
        (
            "",
            Some("application/json"),
            "[1, 2]".to_string(),
            json!({"value": [1, 2]}),
        ),
    ];
    let mut first_execution = None;
    for (query, content_type, body, bundle) in cases {
        let reply = hook(&http, &format!("{url}{query}"), content_type, body, &[])
            .await
            .expect(200, "webhook");
        assert!(reply.header("x-switchyard-duplicate").is_none());
        let execution_id = execution_header(&reply);
        let execution = api.finished(&execution_id).await;
        let log = api.log(&execution_id).await;
        assert_eq!(
            log[0],
            json!({"module": 1, "output": bundle}),
            "{content_type:?} body with query {query:?}"
        );
        assert_eq!(execution["source"], "webhook");
        assert_eq!(execution["scenarioId"], id.as_str());
        assert_eq!(execution["version"], 1);
        assert_eq!(execution["id"], execution_id.as_str());
        assert_same_report(&execution, &log, &run_json(&db, &blueprint, &bundle));
        first_execution.get_or_insert(execution_id);
    }
    let first_execution = first_execution.unwrap();

    // Malformed JSON: 400 with the reason, nothing queued.
    let before = api.executions(&id).await.len();
    let reply = hook(&http, &url, Some("application/json"), "{\"n\": ", &[])
        .await
        .expect(400, "malformed JSON");
    assert_eq!(api_error_code(&reply), "bad_request");
    let message = reply.json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("not valid JSON") && message.contains("line 1"),
        "{message}"
    );
    // Over --max-body-bytes: 413, nothing queued.
    let big = json!({"n": 0, "pad": "x".repeat(5000)}).to_string();
    let reply = hook(&http, &url, Some("application/json"), big, &[])
        .await
        .expect(413, "body over --max-body-bytes");
    assert_eq!(api_error_code(&reply), "payload_too_large");
    assert_eq!(api.executions(&id).await.len(), before);

    // Idempotency-Key: the second delivery is a duplicate of the first execution.
    let key = [("Idempotency-Key", "evt-1")];
    let body = json!({"n": 5}).to_string();
    let one = hook(&http, &url, Some("application/json"), body.clone(), &key)
        .await
        .expect(200, "keyed webhook");
    let two = hook(&http, &url, Some("application/json"), body.clone(), &key)
        .await
        .expect(200, "repeated keyed webhook");
    assert_eq!(execution_header(&one), execution_header(&two));
    assert!(one.header("x-switchyard-duplicate").is_none());
    assert_eq!(two.header("x-switchyard-duplicate"), Some("true"));
    let other = hook(
        &http,
        &url,
        Some("application/json"),
        body,
        &[("Idempotency-Key", "evt-2")],
    )
    .await
    .expect(200, "another key");
    assert_ne!(execution_header(&one), execution_header(&other));
    assert_eq!(api.executions(&id).await.len(), before + 2);
    // A key over 200 bytes deduplicates too (stored as its hash, not dropped).
    let long_key = "evt-".repeat(80);
    let long = [("Idempotency-Key", long_key.as_str())];
    let body = json!({"n": 6}).to_string();
    let one = hook(&http, &url, Some("application/json"), body.clone(), &long)
        .await
        .expect(200, "long keyed webhook");
    let two = hook(&http, &url, Some("application/json"), body, &long)
        .await
        .expect(200, "repeated long keyed webhook");
    assert_eq!(execution_header(&one), execution_header(&two));
    assert_eq!(two.header("x-switchyard-duplicate"), Some("true"));
    assert_eq!(api.executions(&id).await.len(), before + 3);

    // Unknown hooks: 404.
    for path in [
        format!("/hooks/{}", "0".repeat(64)),
        "/hooks/abc".to_string(),
    ] {
        let reply = hook_json(&http, &svc.url(&path), &json!({}))
            .await
            .expect(404, "unknown hook");
        assert_eq!(api_error_code(&reply), "unknown_hook");
    }

    // --hook-rate: the 26th request within 10 s is refused with Retry-After; other hooks
    // are not affected.
    let (_, rate_hook) = api.create_active(&hook_scenario("rate")).await;
    let rate_url = svc.url(&rate_hook.unwrap());
    let mut statuses = Vec::new();
    for n in 0..26 {
        statuses.push(hook_json(&http, &rate_url, &json!({"n": n})).await);
    }
    let last = statuses.pop().unwrap();
    assert!(
        statuses.iter().all(|r| r.status == 200),
        "the first 25 requests pass"
    );
    let last = last.expect(429, "over --hook-rate");
    assert_eq!(api_error_code(&last), "rate_limited");
    let retry_after: u64 = last
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=10).contains(&retry_after), "Retry-After {retry_after}");
    hook_json(&http, &url, &json!({"n": 6}))
        .await
        .expect(200, "another hook after the limited one");

    // gateway:WebhookRespond answers the caller with the mapped status, headers and body.
    let respond = json!({"name": "respond", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "respond"}},
        {"id": 2, "module": "gateway:WebhookRespond", "mapper": {
            "status": "201",
            "headers": [{"key": "X-Order", "value": "{{1.id}}"}],
            "body": "{\"order\": \"{{1.id}}\", \"double\": {{1.qty * 2}}}"}}
    ]});
    let (respond_id, respond_hook) = api.create_active(&respond).await;
    let input = json!({"id": "A-9", "qty": 3});
    let reply = hook_json(&http, &svc.url(&respond_hook.unwrap()), &input)
        .await
        .expect(201, "scenario response");
    assert_eq!(reply.header("x-order"), Some("A-9"));
    assert_eq!(reply.json, json!({"order": "A-9", "double": 6}));
    let executions = api.all_finished(&respond_id, 1, 30).await;
    let execution_id = executions[0]["id"].as_str().unwrap();
    let execution = api.execution(execution_id).await;
    assert_eq!(execution["response"]["status"], 201, "{execution}");
    let log = api.log(execution_id).await;
    assert_same_report(&execution, &log, &run_json(&db, &respond, &input));

    // As in Make, the caller is answered when WebhookRespond runs, not when the execution
    // ends: here it is still sleeping when the reply arrives.
    let respond_then_sleep = json!({"name": "respond then sleep", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "early"}},
        {"id": 2, "module": "gateway:WebhookRespond", "mapper": {"status": "200", "body": "early"}},
        {"id": 3, "module": "util:FunctionSleep", "mapper": {"duration": 3}}
    ]});
    let (early_id, early_hook) = api.create_active(&respond_then_sleep).await;
    let reply = hook_json(&http, &svc.url(&early_hook.unwrap()), &json!({}))
        .await
        .expect(200, "early response");
    assert_eq!(reply.text, "early");
    let listed = api
        .get(&format!("/api/executions?scenario={early_id}"))
        .await
        .expect(200, "list while sleeping")
        .json;
    assert_eq!(listed["executions"][0]["status"], "running", "{listed}");
    let executions = api.all_finished(&early_id, 1, 30).await;
    assert_eq!(executions[0]["status"], "success");

    // The README's example scenario, through a webhook, answers what `run` answers.
    let text = repo_file("scenarios/iterator-aggregator.json");
    let example: Value = serde_json::from_str(&text).unwrap();
    let (example_id, example_hook) = api.create_active(&example).await;
    let input = json!({"id": "A-17", "lines": [{"sku": "ab-1", "qty": 2, "price": 3.5},
                                               {"sku": "cd-2", "qty": 1, "price": 10}]});
    let reply = hook_json(&http, &svc.url(&example_hook.unwrap()), &input)
        .await
        .expect(200, "example scenario");
    assert_eq!(
        reply.json,
        json!({"order": "A-17", "lines": 2, "total": 17})
    );
    let executions = api.all_finished(&example_id, 1, 30).await;
    let execution_id = executions[0]["id"].as_str().unwrap();
    let execution = api.execution(execution_id).await;
    let log = api.log(execution_id).await;
    assert_same_report(&execution, &log, &run_json(&db, &example, &input));

    // Update: version 2, the same hook URL.
    let mut v2 = hook_scenario("orders v2");
    v2["flow"][1]["mapper"]["value"] = json!("{{1.n * 10}}");
    let updated = api
        .put(&format!("/api/scenarios/{id}"), &v2)
        .await
        .expect(200, "update")
        .json;
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["hooks"], created["hooks"]);
    let scenario = api
        .get(&format!("/api/scenarios/{id}"))
        .await
        .expect(200, "get scenario")
        .json;
    assert_eq!(scenario["version"], 2);
    assert_eq!(scenario["active"], true);
    assert_eq!(scenario["hooks"], created["hooks"]);
    assert_eq!(scenario["blueprint"], v2);
    let reply = hook_json(&http, &url, &json!({"n": 4}))
        .await
        .expect(200, "webhook after update");
    let execution_id = execution_header(&reply);
    let execution = api.finished(&execution_id).await;
    assert_eq!(execution["version"], 2);
    assert_eq!(api.log(&execution_id).await[1]["output"], json!({"n": 40}));

    // Run now: the body is the trigger's bundle.
    let queued = api
        .post(&format!("/api/scenarios/{id}/run"), &json!({"n": 3}))
        .await
        .expect(202, "run now")
        .json;
    let execution_id = queued["executionId"].as_str().expect("executionId");
    let execution = api.finished(execution_id).await;
    assert_eq!(execution["source"], "manual");
    assert_eq!(execution["status"], "success");
    let log = api.log(execution_id).await;
    assert_eq!(log[0]["output"], json!({"n": 3}));
    assert_eq!(log[1]["output"], json!({"n": 30}));

    // Retry: the same payload again, on the current version.
    let queued = api
        .post(
            &format!("/api/executions/{first_execution}/retry"),
            &Value::Null,
        )
        .await
        .expect(202, "retry")
        .json;
    let retried_id = queued["executionId"].as_str().unwrap();
    let retried = api.finished(retried_id).await;
    assert_eq!(retried["source"], "retry");
    assert_eq!(retried["version"], 2);
    assert_eq!(
        api.log(retried_id).await[0],
        api.log(&first_execution).await[0]
    );

    // The list: newest first, summaries.
    let list = api
        .get(&format!("/api/executions?scenario={id}"))
        .await
        .expect(200, "list executions")
        .json;
    let rows = list["executions"].as_array().expect("executions");
    assert_eq!(rows.len(), api.executions(&id).await.len());
    assert_eq!(rows[0]["id"], retried["id"]);
    let diffs = json_diff(
        &json!({"id": "$any", "scenarioId": id, "version": 2, "status": "success",
                "source": "retry", "operations": 2, "cycles": 1, "error": null, "attempt": 1,
                "workerId": "$any", "createdAt": "$any", "startedAt": "$any",
                "finishedAt": "$any", "durationMs": "$any"}),
        &rows[0],
    );
    assert!(diffs.is_empty(), "{diffs:?}");
    let created_at: Vec<_> = rows
        .iter()
        .map(|r| timestamp(&r["createdAt"], "createdAt"))
        .collect();
    assert!(created_at.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let reply = api
        .get("/api/executions?status=bogus")
        .await
        .expect(400, "unknown status filter");
    assert_eq!(api_error_code(&reply), "bad_request");

    // Deactivate: the hook answers 410 again.
    api.post(&format!("/api/scenarios/{id}/deactivate"), &Value::Null)
        .await
        .expect(200, "deactivate");
    hook_json(&http, &url, &json!({"n": 1}))
        .await
        .expect(410, "hook after deactivation");

    // Unknown ids: 404 as JSON.
    for path in [
        format!("/api/executions/{}", "f".repeat(32)),
        format!("/api/scenarios/{}", "f".repeat(32)),
    ] {
        let reply = api.get(&path).await.expect(404, "unknown id");
        assert_eq!(api_error_code(&reply), "not_found");
    }

    // Metrics: Prometheus text; nothing is waiting, and the counts match the store.
    let metrics = Reply::from(http.get(svc.url("/metrics")).send().await.unwrap())
        .await
        .expect(200, "GET /metrics");
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        metrics.headers
    );
    assert_eq!(
        metric(&metrics.text, "switchyard_queue_depth"),
        Some(0.0),
        "{}",
        metrics.text
    );
    let all = api.get("/api/executions?limit=1000").await.json;
    let successes = all["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "success")
        .count();
    assert_eq!(
        metric(&metrics.text, "switchyard_executions{status=\"success\"}"),
        Some(successes as f64),
        "{}",
        metrics.text
    );
    assert!(
        metric(&metrics.text, "switchyard_webhooks_accepted_total").is_some_and(|n| n >= 30.0),
        "{}",
        metrics.text
    );
}

/// The API's conventions: whatever is wrong with a request (query string, path parameter,
/// body, route, method), the answer is the JSON error envelope naming what and where; every
/// time is an RFC 3339 string with milliseconds and `Z`, the instant the store holds.
async fn api_conventions(db: TestDb) {
    let svc = db.serve(&[]).await;
    let api = &svc.api;
    let http = reqwest::Client::new();
    let error = |reply: &Reply| reply.json["error"].clone();

    // Query strings: the parameter, by name.
    let reply = api
        .get("/api/executions?limit=abc")
        .await
        .expect(400, "limit=abc");
    assert_eq!(api_error_code(&reply), "bad_request");
    assert_eq!(
        error(&reply),
        json!({"code": "bad_request", "path": "limit",
               "message": "query parameter \"limit\": invalid digit found in string"})
    );
    let reply = api.get("/api/incomplete").await.expect(400, "no scenario");
    assert_eq!(api_error_code(&reply), "bad_request");
    assert_eq!(
        error(&reply)["message"],
        "query parameter \"scenario\" is required"
    );

    // Path parameters.
    let reply = api
        .get("/api/executions/%FF")
        .await
        .expect(400, "an id that is not UTF-8");
    assert_eq!(api_error_code(&reply), "bad_request");
    assert_eq!(
        error(&reply),
        json!({"code": "bad_request", "path": "id",
               "message": "path parameter \"id\" is not valid UTF-8"})
    );

    // Bodies: malformed JSON, text that is not UTF-8, more than the API takes.
    let blueprint = json!({"name": "times", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "times"}},
        {"id": 2, "module": "util:SetVariable2",
         "mapper": {"name": "x", "scope": "roundtrip", "value": "{{1.n}}"}}]});
    let created = api.create(&blueprint).await;
    let id = created["id"].as_str().expect("id").to_string();
    let raw = |path: String, body: Vec<u8>| {
        let request = http
            .post(svc.url(&path))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body);
        async move { Reply::from(request.send().await.unwrap()).await }
    };
    let reply = raw(format!("/api/scenarios/{id}/run"), b"{\"n\": ".to_vec())
        .await
        .expect(400, "run with malformed JSON");
    assert_eq!(api_error_code(&reply), "bad_request");
    let reply = raw("/api/scenarios".to_string(), b"{\"flow\": [".to_vec())
        .await
        .expect(422, "a blueprint that is not JSON");
    assert_eq!(api_error_code(&reply), "invalid_scenario");
    let reply = raw("/api/scenarios".to_string(), vec![b'{', 0xff, b'}'])
        .await
        .expect(400, "a body that is not UTF-8");
    assert_eq!(api_error_code(&reply), "bad_request");
    assert_eq!(error(&reply)["message"], "the body is not valid UTF-8 text");
    // On a connection of its own: the server closes it after a 413 without reading the body.
    let reply = Reply::from(
        reqwest::Client::new()
            .put(svc.url(&format!("/api/scenarios/{id}")))
            .bearer_auth(TOKEN)
            .body(vec![b' '; 3 * 1024 * 1024])
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(413, "a body over the API's limit");
    assert_eq!(api_error_code(&reply), "payload_too_large");

    // Unknown routes, with or without a token, under /api or not.
    for path in ["/api/nothing", "/api/executions/a/b", "/api", "/nothing"] {
        let reply = api.get(path).await.expect(404, path);
        assert_eq!(api_error_code(&reply), "not_found", "{path}");
        assert_eq!(error(&reply)["message"], format!("no route for GET {path}"));
        let reply = Reply::from(http.get(svc.url(path)).send().await.unwrap())
            .await
            .expect(404, path);
        assert_eq!(api_error_code(&reply), "not_found", "{path}");
    }

    // Wrong methods: 405 with `Allow`.
    for (method, path, allow) in [
        (
            reqwest::Method::DELETE,
            "/api/executions".to_string(),
            "GET",
        ),
        (
            reqwest::Method::GET,
            format!("/api/scenarios/{id}/run"),
            "POST",
        ),
        (reqwest::Method::POST, "/health".to_string(), "GET"),
        (reqwest::Method::DELETE, "/hooks/abc".to_string(), "POST"),
    ] {
        let reply = api
            .send(method.clone(), &path, &Value::Null)
            .await
            .expect(405, &format!("{method} {path}"));
        assert_eq!(api_error_code(&reply), "method_not_allowed", "{path}");
        assert_eq!(
            error(&reply)["message"],
            format!("{path} does not take {method}")
        );
        assert!(
            reply.header("allow").is_some_and(|a| a.contains(allow)),
            "{method} {path}: Allow {:?}",
            reply.headers
        );
    }

    // Times: the scenario's, as RFC 3339 strings, just now.
    let scenario = api
        .get(&format!("/api/scenarios/{id}"))
        .await
        .expect(200, "get scenario")
        .json;
    for key in ["createdAt", "updatedAt"] {
        assert_recent(timestamp(&scenario[key], key), 60, key);
    }
    let listed = api.get("/api/scenarios").await.expect(200, "list").json;
    let row = listed["scenarios"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == id.as_str()))
        .expect("listed")
        .clone();
    assert_eq!(row["createdAt"], scenario["createdAt"]);

    // An execution's: its report and its list row agree; the duration stays a number.
    let run = api
        .post(&format!("/api/scenarios/{id}/run"), &json!({"n": 1}))
        .await
        .expect(202, "run now")
        .json;
    let execution = api
        .finished(run["executionId"].as_str().expect("execution id"))
        .await;
    assert_eq!(execution["status"], "success", "{execution}");
    let started = timestamp(&execution["startedAt"], "startedAt");
    let finished = timestamp(&execution["finishedAt"], "finishedAt");
    assert_recent(
        timestamp(&execution["createdAt"], "createdAt"),
        60,
        "createdAt",
    );
    assert_eq!(
        execution["durationMs"].as_i64(),
        Some((finished - started).num_milliseconds()),
        "{execution}"
    );
    let page = api
        .get(&format!("/api/executions?scenario={id}"))
        .await
        .expect(200, "list executions")
        .json;
    for key in ["createdAt", "startedAt", "finishedAt", "durationMs"] {
        assert_eq!(page["executions"][0][key], execution[key], "{key}");
    }

    // An incomplete execution's: parked by Break, its next attempt a minute ahead.
    let flaky = json!({"name": "parked", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "parked"}},
        {"id": 2, "module": "http:MakeRequest", "mapper": {"url": "http://127.0.0.1:1/", "method": "get"},
         "onerror": [{"id": 9, "module": "builtin:Break",
                      "mapper": {"retry": true, "count": "2", "interval": "1"}}]}
    ], "metadata": {"scenario": {"dlq": true}}});
    let parked = api.create(&flaky).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let run = api
        .post(&format!("/api/scenarios/{parked}/run"), &json!({}))
        .await
        .expect(202, "run now")
        .json;
    let execution = api
        .finished(run["executionId"].as_str().expect("execution id"))
        .await;
    assert_eq!(execution["status"], "incomplete", "{execution}");
    let incomplete = api
        .get(&format!("/api/incomplete?scenario={parked}"))
        .await
        .expect(200, "list incomplete")
        .json;
    let row = &incomplete["incomplete"][0];
    let created = timestamp(&row["createdAt"], "createdAt");
    assert_recent(created, 60, "createdAt");
    let next = timestamp(&row["nextAttemptAt"], "nextAttemptAt");
    let ahead = (next - created).num_seconds();
    assert!(
        (50..=70).contains(&ahead),
        "next attempt {ahead} s ahead: {row}"
    );
}

// ---------------------------------------------------------------------------------------------
// A new user's first five minutes
// ---------------------------------------------------------------------------------------------

/// The README's first command (`serve --import scenarios/`), then what a new user does: find
/// "Order summary" and the hook it reports, activate it, post the README's order to that hook
/// and read the answer and the execution.
async fn first_five_minutes(db: TestDb) {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let svc = db.serve(&["--import", &examples.to_string_lossy()]).await;
    let api = &svc.api;
    let http = reqwest::Client::new();
    let list = api.get("/api/scenarios").await.expect(200, "list").json;
    let scenarios = list["scenarios"].as_array().expect("scenarios");
    let files = std::fs::read_dir(&examples).unwrap().count();
    assert_eq!(scenarios.len(), files, "every example imported: {list}");
    let id = scenarios
        .iter()
        .find(|s| s["name"] == "Order summary")
        .and_then(|s| s["id"].as_str())
        .expect("Order summary imported")
        .to_string();

    // Its hook exists from the import on, and `serve` said where.
    let scenario = api
        .get(&format!("/api/scenarios/{id}"))
        .await
        .expect(200, "scenario")
        .json;
    let hook_url = scenario["hooks"][0]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("GET /api/scenarios/{{id}} has no hook: {scenario}"))
        .to_string();
    assert_eq!(scenario["hooks"][0]["module"], 1, "{scenario}");
    let log = svc.proc.log();
    assert!(
        log.lines()
            .any(|l| l.contains("iterator-aggregator.json") && l.contains(&hook_url)),
        "serve --import does not print the hook it created:\n{log}"
    );
    let hooks = api
        .get(&format!("/api/scenarios/{id}/hooks"))
        .await
        .expect(200, "hooks")
        .json;
    assert_eq!(hooks["hooks"][0]["url"], hook_url.as_str(), "{hooks}");

    // Inactive: the hook refuses deliveries; activated: the README's order is answered.
    let order = json!({"id": "A-17", "lines": [{"sku": "ab-1", "qty": 2, "price": 3.5},
                                               {"sku": "cd-2", "qty": 1, "price": 10}]});
    let refused = hook_json(&http, &svc.url(&hook_url), &order).await;
    assert_ne!(
        refused.status, 200,
        "an inactive scenario's hook took a delivery"
    );
    api.post(&format!("/api/scenarios/{id}/activate"), &Value::Null)
        .await
        .expect(200, "activate");
    let reply = hook_json(&http, &svc.url(&hook_url), &order)
        .await
        .expect(200, "the README's order on the imported hook");
    assert_eq!(
        reply.json,
        json!({"order": "A-17", "lines": 2, "total": 17})
    );
    let executions = api.all_finished(&id, 1, 30).await;
    assert_eq!(executions.len(), 1, "{executions:?}");
    let execution = api.execution(executions[0]["id"].as_str().unwrap()).await;
    assert_eq!(execution["status"], "success", "{execution}");
    assert_eq!(execution["operations"], 6, "{execution}");
    assert_eq!(execution["response"]["status"], 200, "{execution}");
}

/// Slowloris: 300 connections that send half a request's headers, and 100 that send nothing,
/// are closed by the server once `--header-timeout-seconds` has passed, while `/health` keeps
/// answering at once.
async fn slow_clients_are_cut_off(db: TestDb) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let svc = db.serve(&["--header-timeout-seconds", "2"]).await;
    let address = svc.base.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for k in 0..400 {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        if k < 300 {
            stream
                .write_all(b"POST /hooks/abc HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
                .await
                .expect("half a request");
        }
        slow.push(stream);
    }
    let started = Instant::now();
    for _ in 0..5 {
        let asked = Instant::now();
        svc.api
            .get("/health")
            .await
            .expect(200, "health among slow clients");
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "/health took {:?} among slow clients",
            asked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each slow connection is closed by the server: a read ends (0 bytes or an error, after
    // perhaps an error response) well within the deadline plus a margin.
    for (k, mut stream) in slow.into_iter().enumerate() {
        let mut buffer = [0u8; 1024];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "slow connection {k} still open {:?} after it was opened",
            started.elapsed()
        );
    }
    svc.api
        .get("/health")
        .await
        .expect(200, "health after the slow clients");
}

/// CPU-heavy executions run on the engine's own threads (`--engine-threads`, one per CPU): while
/// two of them compute (nested repeaters, a hash per bundle), `/health` and a light scenario's
/// hook keep answering. Before, the executor ran on the HTTP server's threads and both stalled
/// for as long as the heavy executions ran (about 35 s in the issue's reproduction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_executions_do_not_stall_the_service() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let svc = db.serve(&[]).await;
    let client = reqwest::Client::new();
    let heavy = json!({
        "name": "heavy",
        "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "heavy"}},
            {"id": 2, "module": "builtin:BasicRepeater", "mapper": {"repeats": "{{1.n}}"}},
            {"id": 3, "module": "builtin:BasicRepeater", "mapper": {"repeats": "{{1.n}}"}},
            {"id": 4, "module": "util:SetVariable2",
             "mapper": {"name": "h", "scope": "roundtrip", "value": "{{sha256(2.i + \"/\" + 3.i)}}"}}
        ]
    });
    let (heavy_id, heavy_hook) = svc.api.create_active(&heavy).await;
    let (_, light_hook) = svc.api.create_active(&hook_scenario("light")).await;
    let (heavy_url, light_url) = (svc.url(&heavy_hook.unwrap()), svc.url(&light_hook.unwrap()));
    for _ in 0..2 {
        hook_json(&client, &heavy_url, &json!({"n": 2000}))
            .await
            .expect(200, "heavy delivery");
    }
    let running = || async {
        let all = svc.api.executions(&heavy_id).await;
        all.iter().filter(|e| e["status"] == "running").count()
    };
    eventually("both heavy executions to run", 20, || async {
        let running = running().await;
        if running == 2 {
            Ok(())
        } else {
            Err(format!("{running} running"))
        }
    })
    .await;
    let mut slowest = Duration::ZERO;
    for n in 0..40 {
        let asked = Instant::now();
        svc.api.get("/health").await.expect(200, "health");
        hook_json(&client, &light_url, &json!({"n": n}))
            .await
            .expect(200, "light delivery");
        slowest = slowest.max(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        running().await,
        2,
        "the heavy executions ended before the probes did: make them heavier"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "/health plus a light delivery took {slowest:?} while two heavy executions ran"
    );
}

/// The peak resident memory of process `pid` so far (Linux: `VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib * 1024
}

/// Large webhook bodies in parallel are bounded: 16 bodies of 5 MB (a JSON array of 115,000
/// objects each) sent at once are all accepted and run, and the process's peak memory stays
/// under 500 MB (it reached 1.8 GB when every body was parsed and run at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_large_bodies_are_bounded() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let svc = db.serve(&[]).await;
    let (id, hook_path) = svc
        .api
        .create_active(&json!({
            "name": "large bodies",
            "flow": [
                {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "large"}},
                {"id": 2, "module": "util:SetVariable2",
                 "mapper": {"name": "n", "scope": "roundtrip", "value": "{{length(1.value)}}"}}
            ]
        }))
        .await;
    let url = svc.url(&hook_path.unwrap());
    let items: Vec<Value> = (0..115_000)
        .map(|i| json!({"id": i, "name": format!("user {i}"), "ok": true}))
        .collect();
    let body = Value::Array(items).to_string();
    assert!(
        (4_500_000..5 << 20).contains(&body.len()),
        "{} bytes",
        body.len()
    );
    let before = peak_rss(svc.proc.pid());
    let client = reqwest::Client::new();
    // Sent as webhook senders do: a 503 (too many large bodies at once: the sender is told
    // rather than held mid-upload) is retried after its `Retry-After`, with the same key.
    let busy = AtomicUsize::new(0);
    let sends = (0..16).map(|n| {
        let (client, url, body, busy) = (&client, &url, &body, &busy);
        async move {
            let key = format!("large-{n}");
            loop {
                let reply = hook(
                    client,
                    url,
                    Some("application/json"),
                    body.clone(),
                    &[("idempotency-key", &key)],
                )
                .await;
                if reply.status != 503 {
                    return reply;
                }
                assert_eq!(reply.json["error"]["code"], "busy", "{:?}", reply.json);
                let wait: u64 = reply.header("retry-after").unwrap().parse().unwrap();
                busy.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
        }
    });
    for reply in futures::future::join_all(sends).await {
        reply.expect(200, "large delivery");
    }
    eprintln!(
        "large bodies: {} answers were 503 busy, then retried",
        busy.load(Ordering::SeqCst)
    );
    let done = svc.api.all_finished(&id, 16, 120).await;
    assert_eq!(done.len(), 16, "each body accepted once");
    for e in &done {
        assert_eq!(e["status"], "success", "{e}");
    }
    let variable = svc
        .api
        .module_bundles(done[0]["id"].as_str().unwrap(), 2, 10)
        .await;
    assert_eq!(
        variable,
        vec![json!({"seq": 1, "output": {"n": 115000}})],
        "the bundle reached the flow whole"
    );
    let peak = peak_rss(svc.proc.pid());
    assert!(
        peak < 500 << 20,
        "peak memory {} MB (before the bodies: {} MB)",
        peak >> 20,
        before >> 20
    );
}

/// Input the service refuses, with the error envelope and where: a webhook body nested deeper
/// than the store reads back once wrapped (400, not 500), scenario names that cannot be
/// stored (422 at `name`), requests hyper cannot read (400/414/431, answered before any
/// handler), and a body that trickles in slower than `--body-timeout-seconds` (408, while
/// other requests are served).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_refused_with_the_envelope() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let svc = db.serve(&["--body-timeout-seconds", "2"]).await;
    let client = reqwest::Client::new();
    let (id, hook_path) = svc.api.create_active(&hook_scenario("deep")).await;
    let url = svc.url(&hook_path.unwrap());
    // An array body is wrapped in `{"value": …}`: 126 levels fit, 127 do not; an object body
    // is not wrapped, so 127 fit.
    let array = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let object = |depth: usize| format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    for (body, expected) in [
        (array(126), 200),
        (array(127), 400),
        (object(127), 200),
        (array(300), 400),
    ] {
        let reply = hook(&client, &url, Some("application/json"), body.clone(), &[]).await;
        let reply = reply.expect(expected, "deep body");
        if expected == 400 {
            assert_eq!(
                reply.json["error"]["code"], "bad_request",
                "{:?}",
                reply.json
            );
        }
    }
    assert_eq!(svc.api.all_finished(&id, 2, 30).await.len(), 2);
    // Names that cannot be stored.
    for (name, expected) in [
        ("", "needs a name"),
        ("a\u{0}b", "U+0000"),
        (&*"n".repeat(1001), "at most 1000"),
    ] {
        let mut blueprint = hook_scenario("named");
        blueprint["name"] = json!(name);
        let reply = svc
            .api
            .post("/api/scenarios", &blueprint)
            .await
            .expect(422, "bad name");
        let error = &reply.json["error"];
        assert_eq!(error["code"], "invalid_scenario", "{error}");
        assert_eq!(error["path"], "name", "{error}");
        assert!(
            error["message"].as_str().unwrap().contains(expected),
            "{error}"
        );
    }
    // Requests hyper rejects before any handler runs get the envelope too; on a kept-alive
    // connection, after a request that was served.
    let long_uri = format!(
        "GET /health?x={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(200_000)
    );
    let many_headers = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..200)
            .map(|i| format!("X-H{i}: a\r\n"))
            .collect::<String>()
    );
    let big_header = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(500_000)
    );
    let served_then_long = format!("GET /health HTTP/1.1\r\nHost: x\r\n\r\n{long_uri}");
    for (request, status, code) in [
        (long_uri.as_str(), "414", "uri_too_long"),
        (&many_headers, "431", "headers_too_large"),
        (&big_header, "431", "headers_too_large"),
        ("GARBAGE\r\n\r\n", "400", "bad_request"),
        (&served_then_long, "414", "uri_too_long"),
    ] {
        let address = svc.base.trim_start_matches("http://").to_string();
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        let _ = stream.write_all(request.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        let last = &answer[answer.rfind("HTTP/1.1 ").unwrap_or(0)..];
        assert!(last.starts_with(&format!("HTTP/1.1 {status} ")), "{answer}");
        assert!(last.contains("content-type: application/json"), "{answer}");
        assert!(
            last.contains(&format!(r#"{{"error":{{"code":"{code}","#)),
            "{answer}"
        );
        if request.starts_with("GET /health HTTP/1.1\r\nHost: x\r\n\r\n") {
            assert!(
                answer.starts_with("HTTP/1.1 200 "),
                "served first: {answer}"
            );
        }
    }

    // A body sent a byte at a time: cut off with 408 once its deadline passed.
    let address = svc.base.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let path = url.trim_start_matches(&svc.base);
    slow.write_all(
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[")
            .as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if slow.write_all(b"1,").await.is_err() {
                break;
            }
            if started.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
    };
    let health = async {
        for _ in 0..5 {
            svc.api
                .get("/health")
                .await
                .expect(200, "health beside a slow body");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::join!(trickle, health);
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the slow body was cut off after {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// The admin CLI
// ---------------------------------------------------------------------------------------------

async fn cli_admin(db: TestDb) {
    let svc = db.serve(&[]).await;
    let api = &svc.api;
    let http = reqwest::Client::new();
    let blueprint = hook_scenario("from the CLI");
    let file = db.write_json("cli.json", &blueprint);
    let file_arg = file.to_string_lossy().into_owned();

    // import, --json and human.
    let imported = stdout_json(
        &db.cli(&["scenarios", "import", &file_arg, "--json"]),
        "scenarios import --json",
    );
    let id = imported["imported"][0]["id"]
        .as_str()
        .expect("imported id")
        .to_string();
    // The import created the webhook trigger's hook, and says where it is.
    let hook_url = imported["imported"][0]["hooks"][0]["url"]
        .as_str()
        .expect("imported hook url")
        .to_string();
    assert!(hook_url.starts_with("/hooks/"), "{imported}");
    assert_eq!(
        imported,
        json!({"imported": [{"file": file_arg, "id": id, "version": 1,
                             "hooks": [{"module": 1, "url": hook_url}], "warnings": []}],
               "refused": []})
    );
    // The same blueprint again is refused (its name is taken), and says how to update.
    let again = db.cli(&["scenarios", "import", &file_arg]);
    assert_ne!(again.status.code(), Some(0));
    let human = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(
        human.contains(&format!(
            "refused: a scenario named \"from the CLI\" exists ({id}): `--update`"
        )),
        "{human}"
    );
    // `--update` stores it as the named scenario's new version.
    let mut v2 = blueprint.clone();
    v2["flow"][1]["mapper"]["value"] = json!("{{1.n + 1}}");
    let v2_file = db.write_json("cli-v2.json", &v2);
    let v2_arg = v2_file.to_string_lossy().into_owned();
    let updated = stdout_json(
        &db.cli(&["scenarios", "import", &v2_arg, "--update", "--json"]),
        "scenarios import --update",
    );
    assert_eq!(updated["imported"][0]["id"], id.as_str(), "{updated}");
    assert_eq!(updated["imported"][0]["version"], 2, "{updated}");
    // A second scenario of that name (the API does not refuse one): `--update` cannot
    // choose, `--id` can.
    let second_id = api.create(&blueprint).await["id"]
        .as_str()
        .expect("second id")
        .to_string();
    assert_ne!(second_id, id);
    let ambiguous = db.cli(&["scenarios", "import", &v2_arg, "--update"]);
    assert_ne!(ambiguous.status.code(), Some(0));
    let human = String::from_utf8_lossy(&ambiguous.stdout).into_owned();
    assert!(
        human.contains("2 scenarios are named \"from the CLI\"") && human.contains(&second_id),
        "{human}"
    );
    let updated = stdout_json(
        &db.cli(&["scenarios", "import", &v2_arg, "--id", &second_id, "--json"]),
        "scenarios import --id",
    );
    assert_eq!(updated["imported"][0]["id"], second_id.as_str());
    assert_eq!(updated["imported"][0]["version"], 2);
    // An invalid file is refused with the problem's path.
    let bad = db.write_json(
        "bad.json",
        &json!({"name": "bad", "flow": [{"id": 1, "module": "nope:Nothing"}]}),
    );
    let bad_arg = bad.to_string_lossy().into_owned();
    let out = db.cli(&["scenarios", "import", &bad_arg]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("flow[0].module"), "{stdout}");
    // Several files: all or nothing, every file's outcome reported; `--continue` stores the
    // valid ones.
    let one = db.write_json("one.json", &hook_scenario("batch one"));
    let two = db.write_json("two.json", &hook_scenario("batch two"));
    let (one_arg, two_arg) = (one.to_string_lossy(), two.to_string_lossy());
    let batch = [
        "scenarios",
        "import",
        &one_arg,
        &bad_arg,
        &two_arg,
        "--json",
    ];
    let out = db.cli(&batch);
    assert_ne!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["imported"], json!([]), "{report}");
    assert_eq!(report["refused"][0]["file"], bad_arg.as_ref(), "{report}");
    assert_eq!(report["refused"].as_array().unwrap().len(), 1, "{report}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nothing imported: 1 of 3 files refused (`--continue` imports the others)"),
        "{stderr}"
    );
    let human = String::from_utf8_lossy(&db.cli(&batch[..5]).stdout).into_owned();
    assert!(
        human.contains(&format!("{one_arg}: valid, not imported"))
            && human.contains(&format!("{bad_arg}: refused:"))
            && human.contains(&format!("{two_arg}: valid, not imported")),
        "{human}"
    );
    let scenarios = |db: &TestDb| {
        stdout_json(&db.cli(&["scenarios", "list", "--json"]), "scenarios list")["scenarios"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(scenarios(&db), 2, "a refused batch stored nothing");
    let out = db.cli(&[&batch[..], &["--continue"]].concat());
    assert_ne!(
        out.status.code(),
        Some(0),
        "a refused file still fails the command"
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    let files: Vec<&str> = report["imported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, [one_arg.as_ref(), two_arg.as_ref()], "{report}");
    assert_eq!(scenarios(&db), 4);

    // list.
    let list = stdout_json(
        &db.cli(&["scenarios", "list", "--json"]),
        "scenarios list --json",
    );
    let row = list["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .cloned()
        .expect("imported scenario listed");
    // A new version keeps its hook's URL.
    assert_eq!(
        row,
        json!({"id": id, "name": "from the CLI", "version": 2, "active": false,
               "hooks": [{"module": 1, "url": hook_url}]})
    );
    assert_eq!(list["scenarios"].as_array().unwrap().len(), 4);
    let human = stdout_ok(&db.cli(&["scenarios", "list"]), "scenarios list");
    let line = human
        .lines()
        .find(|l| l.starts_with(&id))
        .expect("listed")
        .to_string();
    assert!(
        line.contains("v2")
            && line.contains("inactive")
            && line.contains("from the CLI")
            && line.contains(&hook_url),
        "{line}"
    );

    // activate: the running service takes webhooks for it.
    let out = stdout_ok(&db.cli(&["scenarios", "activate", &id]), "activate");
    assert_eq!(out.trim(), format!("scenario {id} activated"));
    let hooks = api
        .get(&format!("/api/scenarios/{id}/hooks"))
        .await
        .expect(200, "hooks")
        .json;
    let hook_path = hooks["hooks"][0]["url"].as_str().expect("hook").to_string();
    assert_eq!(hook_path, hook_url, "the hook the import printed");
    let reply = hook_json(&http, &svc.url(&hook_path), &json!({"n": 41}))
        .await
        .expect(200, "webhook of a CLI-imported scenario");
    let execution_id = execution_header(&reply);
    let execution = api.finished(&execution_id).await;
    assert_eq!(execution["status"], "success");
    assert_eq!(api.log(&execution_id).await[1]["output"], json!({"n": 42}));

    // executions list / show.
    let list = stdout_json(
        &db.cli(&["executions", "list", "--scenario", &id, "--json"]),
        "executions list --json",
    );
    assert_eq!(
        list["executions"],
        json!([{"id": execution_id, "scenarioId": id, "status": "success", "operations": 2,
                "createdAt": execution["createdAt"]}])
    );
    assert_recent(
        timestamp(&list["executions"][0]["createdAt"], "createdAt"),
        120,
        "executions list --json createdAt",
    );
    let human = stdout_ok(
        &db.cli(&["executions", "list", "--scenario", &id]),
        "executions list",
    );
    assert!(
        human.starts_with(&execution_id) && human.contains("success") && human.contains("2 ops"),
        "{human}"
    );
    // A scenario is also named by its name, when only one has it.
    let twice = db.cli(&["executions", "list", "--scenario", "from the CLI"]);
    assert_ne!(twice.status.code(), Some(0));
    let refusal = String::from_utf8_lossy(&twice.stderr).into_owned();
    assert!(
        refusal.contains("2 scenarios are named \"from the CLI\"") && refusal.contains(&id),
        "{refusal}"
    );
    let once = db.write_json("once.json", &hook_scenario("named once"));
    let once_id = stdout_json(
        &db.cli(&["scenarios", "import", &once.to_string_lossy(), "--json"]),
        "scenarios import named once",
    )["imported"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let by_name = stdout_json(
        &db.cli(&["executions", "list", "--scenario", "named once", "--json"]),
        "executions list --scenario NAME",
    );
    assert_eq!(by_name["executions"], json!([]));
    let unknown = db.cli(&["executions", "list", "--scenario", "no such scenario"]);
    assert_ne!(unknown.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no scenario has the id or name"),
        "{unknown:?}"
    );
    // Export prints the blueprint as imported, by name or id.
    let exported = stdout_json(
        &db.cli(&["scenarios", "export", "named once"]),
        "scenarios export NAME",
    );
    assert_eq!(exported, hook_scenario("named once"));
    let exported = stdout_json(
        &db.cli(&["scenarios", "export", &once_id]),
        "scenarios export ID",
    );
    assert_eq!(exported["name"], "named once");
    // show: the summary, by name; delete: gone, by name.
    let shown = stdout_json(
        &db.cli(&["scenarios", "show", "named once", "--json"]),
        "scenarios show --json",
    );
    assert_eq!(shown["id"], once_id.as_str(), "{shown}");
    assert_eq!(
        (&shown["version"], &shown["active"], &shown["warnings"]),
        (&json!(1), &json!(false), &json!([])),
        "{shown}"
    );
    assert_eq!(shown["hooks"].as_array().map(Vec::len), Some(1), "{shown}");
    let human = stdout_ok(&db.cli(&["scenarios", "show", &once_id]), "scenarios show");
    assert!(
        human.contains("version 1 · inactive") && human.contains("hook /hooks/"),
        "{human}"
    );
    let deleted = stdout_ok(
        &db.cli(&["scenarios", "delete", "named once"]),
        "scenarios delete",
    );
    assert_eq!(deleted.trim(), format!("scenario {once_id} deleted"));
    let gone = db.cli(&["scenarios", "show", &once_id]);
    assert_ne!(gone.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("no scenario has the id or name"),
        "{gone:?}"
    );
    let shown = stdout_json(
        &db.cli(&["executions", "show", &execution_id, "--json"]),
        "executions show --json",
    );
    for key in [
        "id",
        "status",
        "operations",
        "cycles",
        "modules",
        "error",
        "version",
    ] {
        assert_eq!(shown[key], execution[key], "`{key}` of executions show");
    }
    let human = stdout_ok(
        &db.cli(&["executions", "show", &execution_id]),
        "executions show",
    );
    assert!(
        human.contains("success · 2 operations · 1 cycles")
            && human.contains("2 output bundles stored")
            && human.contains("module 2: 1 stored of 1 bundles"),
        "{human}"
    );
    // A module's bundles, a page at a time, as the API pages them.
    let page = stdout_json(
        &db.cli(&[
            "executions",
            "show",
            &execution_id,
            "--module",
            "2",
            "--json",
        ]),
        "executions show --module --json",
    );
    assert_eq!(
        page,
        api.get(&format!("/api/executions/{execution_id}?module=2"))
            .await
            .expect(200, "module page")
            .json
    );
    assert_eq!(page["bundles"][0]["output"], json!({"n": 42}), "{page}");
    let human = stdout_ok(
        &db.cli(&["executions", "show", &execution_id, "--module", "2"]),
        "executions show --module",
    );
    assert!(
        human.contains("bundles 1–1 of 1 stored") && human.contains(r#"{"n":42}"#),
        "{human}"
    );
    // And the input of its operation (its mapper, evaluated), as the API pages it.
    let inputs = stdout_json(
        &db.cli(&[
            "executions",
            "show",
            &execution_id,
            "--module",
            "2",
            "--inputs",
            "--json",
        ]),
        "executions show --module --inputs --json",
    );
    assert_eq!(
        inputs,
        api.get(&format!(
            "/api/executions/{execution_id}?module=2&bundles=input"
        ))
        .await
        .expect(200, "module input page")
        .json
    );
    assert_eq!(
        inputs["bundles"][0]["input"],
        json!({"name": "n", "scope": "roundtrip", "value": 42}),
        "{inputs}"
    );
    let human = stdout_ok(
        &db.cli(&[
            "executions",
            "show",
            &execution_id,
            "--module",
            "2",
            "--inputs",
        ]),
        "executions show --module --inputs",
    );
    assert!(human.contains("input bundles 1–1 of 1 stored"), "{human}");

    // retry: queued by the CLI, run by the service.
    let retried = stdout_json(
        &db.cli(&["executions", "retry", &execution_id, "--json"]),
        "executions retry --json",
    );
    let retry_id = retried["executionId"].as_str().expect("executionId");
    let execution = api.finished(retry_id).await;
    assert_eq!(execution["source"], "retry");
    assert_eq!(execution["status"], "success");
    assert_eq!(api.log(retry_id).await[0]["output"], json!({"n": 41}));
    let human = stdout_ok(
        &db.cli(&["executions", "retry", &execution_id]),
        "executions retry",
    );
    assert!(human.starts_with("queued execution "), "{human}");
    let execution = api
        .finished(human.trim().trim_start_matches("queued execution "))
        .await;
    assert_eq!(execution["status"], "success");
    let list = stdout_json(
        &db.cli(&["executions", "list", "--status", "success", "--json"]),
        "executions list --status",
    );
    assert_eq!(list["executions"].as_array().unwrap().len(), 3);

    // reset-trigger: a webhook trigger keeps no cursor.
    let reset = stdout_json(
        &db.cli(&["scenarios", "reset-trigger", &id, "--json"]),
        "reset-trigger --json",
    );
    assert_eq!(
        reset,
        json!({"id": id, "trigger": "module:1", "reset": false})
    );
    let human = stdout_ok(
        &db.cli(&["scenarios", "reset-trigger", &id]),
        "reset-trigger",
    );
    assert_eq!(
        human.trim(),
        format!("trigger module:1 of scenario {id} had no state")
    );

    // deactivate: the service refuses the hook.
    let out = stdout_json(
        &db.cli(&["scenarios", "deactivate", &id, "--json"]),
        "deactivate --json",
    );
    assert_eq!(out, json!({"id": id, "active": false}));
    hook_json(&http, &svc.url(&hook_path), &json!({"n": 1}))
        .await
        .expect(410, "hook after CLI deactivation");

    // Unknown ids fail with a message.
    for args in [
        ["scenarios", "activate", "0123456789abcdef0123456789abcdef"],
        ["executions", "show", "0123456789abcdef0123456789abcdef"],
    ] {
        let out = db.cli(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("0123456789abcdef0123456789abcdef"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// kill -9 while webhooks arrive
// ---------------------------------------------------------------------------------------------

enum Outcome {
    Acked {
        execution: String,
        duplicate: bool,
    },
    /// No HTTP answer (the process died under the request, or was already dead).
    Lost,
    Refused(u16, String),
}

async fn send_keyed(client: &reqwest::Client, url: &str, n: usize) -> Outcome {
    let response = client
        .post(url)
        .header("idempotency-key", format!("crash-{n}"))
        .header("content-type", "application/json")
        .body(json!({"n": n}).to_string())
        .send()
        .await;
    let Ok(response) = response else {
        return Outcome::Lost;
    };
    let reply = Reply::from(response).await;
    match reply.header("x-switchyard-execution") {
        Some(execution) if reply.status.is_success() => Outcome::Acked {
            execution: execution.to_string(),
            duplicate: reply.header("x-switchyard-duplicate") == Some("true"),
        },
        _ => Outcome::Refused(reply.status.as_u16(), reply.text),
    }
}

async fn crash_recovery(db: TestDb) {
    const TOTAL: usize = 2_000;
    const KILL_AFTER: usize = 700;
    let started = Instant::now();
    // Each execution calls a loopback API (10 ms); the first process runs two at a time, so
    // a backlog of queued executions, and some running ones, die with it.
    let (counter, counts) = counter_server(Duration::from_millis(10)).await;
    let args = ["--hook-rate", "1000000", "--heartbeat-seconds", "1"];
    let mut first = db
        .serve(&[&args[..], &["--concurrency", "2"]].concat())
        .await;
    let (scenario, hook) = first.api.create_active(&counting_scenario(&counter)).await;
    let hook = hook.unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(16)
        .build()
        .unwrap();

    // 2,000 keyed webhooks, 16 at a time; SIGKILL once KILL_AFTER are acknowledged.
    let acked = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (client, url, acked) = (client.clone(), first.url(&hook), acked.clone());
        tokio::spawn(async move {
            futures::stream::iter(0..TOTAL)
                .map(|n| {
                    let (client, url, acked) = (&client, &url, &acked);
                    async move {
                        let outcome = send_keyed(client, url, n).await;
                        if matches!(outcome, Outcome::Acked { .. }) {
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        (n, outcome)
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
        })
    };
    let counter = &acked;
    eventually(
        &format!("{KILL_AFTER} acknowledged webhooks"),
        120,
        || async move {
            let n = counter.load(Ordering::SeqCst);
            if n >= KILL_AFTER {
                Ok(())
            } else {
                Err(format!("{n} acknowledged"))
            }
        },
    )
    .await;
    first.kill();
    let killed_at = acked.load(Ordering::SeqCst);
    let store = db.store().await;
    let at_kill = store.count_executions_by_status().await.unwrap();
    store.close().await;
    let outcomes = sender.await.expect("sender task");
    let mut acks: HashMap<usize, String> = HashMap::new();
    let mut lost = Vec::new();
    for (n, outcome) in outcomes {
        match outcome {
            Outcome::Acked {
                execution,
                duplicate,
            } => {
                assert!(!duplicate, "webhook {n} was a duplicate on first delivery");
                acks.insert(n, execution);
            }
            Outcome::Lost => lost.push(n),
            Outcome::Refused(status, text) => {
                panic!("webhook {n} refused before the kill: HTTP {status}: {text}")
            }
        }
    }
    assert!(
        acks.len() >= KILL_AFTER && acks.len() < TOTAL,
        "the kill came mid-way: {} of {TOTAL} acknowledged",
        acks.len()
    );
    assert_eq!(acks.len() + lost.len(), TOTAL);
    let sent_phase = started.elapsed();

    // Restart on the same data; the senders retry what was not acknowledged and re-send
    // every acknowledged key too.
    let second = db.serve(&args).await;
    let url = second.url(&hook);
    let resent: Vec<(usize, Outcome)> = futures::stream::iter(0..TOTAL)
        .map(|n| {
            let (client, url) = (&client, &url);
            async move { (n, send_keyed(client, url, n).await) }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut by_key: HashMap<usize, String> = HashMap::new();
    for (n, outcome) in resent {
        match outcome {
            Outcome::Acked {
                execution,
                duplicate,
            } => {
                if let Some(first_ack) = acks.get(&n) {
                    assert!(
                        duplicate && &execution == first_ack,
                        "re-sent key crash-{n} after the restart: expected a duplicate of \
                         {first_ack}, got {execution} (duplicate: {duplicate})"
                    );
                }
                by_key.insert(n, execution);
            }
            Outcome::Lost => panic!("webhook {n} got no answer after the restart"),
            Outcome::Refused(status, text) => {
                panic!("webhook {n} refused after the restart: HTTP {status}: {text}")
            }
        }
    }
    let distinct: HashSet<&String> = by_key.values().collect();
    assert_eq!(distinct.len(), TOTAL, "one execution per key");

    // Every execution finishes; exactly one per key, all successful.
    let executions = second.api.all_finished(&scenario, TOTAL, 120).await;
    let statuses: HashMap<String, (String, u64)> = executions
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                (
                    e["status"].as_str().unwrap().to_string(),
                    e["attempt"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect();
    assert_eq!(
        executions.len(),
        TOTAL,
        "exactly one execution per webhook key"
    );
    for (n, execution) in &acks {
        match statuses.get(execution) {
            Some((status, _)) if status == "success" => {}
            Some((status, _)) => panic!("acknowledged webhook {n}: execution {execution} {status}"),
            None => panic!("acknowledged webhook {n}: execution {execution} is missing"),
        }
    }
    assert!(
        statuses.values().all(|(s, _)| s == "success"),
        "every execution succeeded"
    );
    // Each acknowledged execution ran on its own payload.
    let sample: Vec<(usize, String)> = acks
        .iter()
        .filter(|(n, _)| *n % 7 == 0)
        .map(|(n, e)| (*n, e.clone()))
        .collect();
    let api = &second.api;
    futures::stream::iter(sample)
        .for_each_concurrent(8, |(n, id)| async move {
            let log = api.log(&id).await;
            assert_eq!(log[0]["output"], json!({"n": n}), "execution {id}");
        })
        .await;
    // Each execution made its call once per attempt: once, or again after being killed.
    let counts = counts.lock().unwrap().clone();
    for (n, execution) in &by_key {
        let calls = counts.get(&(*n as u64)).copied().unwrap_or(0);
        let attempts = statuses[execution].1;
        assert!(
            calls >= 1 && u64::from(calls) <= attempts,
            "webhook {n}: {calls} calls in {attempts} attempts of execution {execution}"
        );
    }
    let metrics = Reply::from(client.get(second.url("/metrics")).send().await.unwrap()).await;
    assert_eq!(metric(&metrics.text, "switchyard_queue_depth"), Some(0.0));
    let rerun = statuses.values().filter(|(_, a)| *a > 1).count();
    eprintln!(
        "crash_recovery ({:?}): killed after {killed_at} acks ({} acknowledged, {} lost) in \
         {sent_phase:?}, executions then {at_kill:?}; {rerun} executions re-run after the \
         crash; total {:?}",
        db.backend,
        acks.len(),
        lost.len(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// A database outage
// ---------------------------------------------------------------------------------------------

/// The service's workers come back after the database was unavailable for a while.
async fn database_outage(db: TestDb) {
    let svc = db.serve(&["--heartbeat-seconds", "1"]).await;
    let http = reqwest::Client::new();
    let (scenario, hook) = svc.api.create_active(&hook_scenario("outage")).await;
    let url = svc.url(&hook.unwrap());
    let reply = hook_json(&http, &url, &json!({"n": 1}))
        .await
        .expect(200, "webhook before the outage");
    let before = svc.api.finished(&execution_header(&reply)).await;
    assert_eq!(before["status"], "success");

    db.outage(Duration::from_secs(match db.backend {
        Backend::Sqlite => 7,
        Backend::Postgres => 3,
    }))
    .await;

    let reply = eventually("a webhook to be accepted after the outage", 30, || {
        let (http, url) = (&http, &url);
        async move {
            let reply = hook_json(http, url, &json!({"n": 2})).await;
            if reply.status == 200 {
                Ok(reply)
            } else {
                Err(format!("HTTP {}: {}", reply.status, reply.text))
            }
        }
    })
    .await;
    let after_id = execution_header(&reply);
    let after = svc.api.finished(&after_id).await;
    assert_eq!(after["status"], "success", "{after}");
    assert_eq!(svc.api.log(&after_id).await[1]["output"], json!({"n": 2}));
    let all = svc.api.all_finished(&scenario, 2, 30).await;
    assert!(all.iter().all(|e| e["status"] == "success"), "{all:?}");
}

// ---------------------------------------------------------------------------------------------
// Two workers on PostgreSQL
// ---------------------------------------------------------------------------------------------

async fn two_workers(db: TestDb) {
    const TOTAL: u64 = 1_000;
    let started = Instant::now();
    let (counter, counts) = counter_server(Duration::from_millis(3)).await;
    let svc = db.serve(&["--no-workers"]).await;
    let api = &svc.api;
    let (scenario, _) = api.create_active(&counting_scenario(&counter)).await;
    let run_path = &format!("/api/scenarios/{scenario}/run");
    let queued: Vec<String> = futures::stream::iter(0..TOTAL)
        .map(|n| async move {
            api.post(run_path, &json!({"n": n}))
                .await
                .expect(202, "run now")
                .json["executionId"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(queued.iter().collect::<HashSet<_>>().len(), TOTAL as usize);
    let waiting = api.executions(&scenario).await;
    assert!(
        waiting.iter().all(|e| e["status"] == "queued"),
        "serve --no-workers runs nothing"
    );
    assert!(counts.lock().unwrap().is_empty());

    let workers = [
        db.worker(&["--concurrency", "4", "--heartbeat-seconds", "1"]),
        db.worker(&["--concurrency", "4", "--heartbeat-seconds", "1"]),
    ];
    let executions = api.all_finished(&scenario, TOTAL as usize, 120).await;
    assert_eq!(executions.len(), TOTAL as usize);
    let mut per_worker: HashMap<String, usize> = HashMap::new();
    for e in &executions {
        assert_eq!(e["status"], "success", "{e}");
        assert_eq!(e["attempt"], 1, "run once: {e}");
        *per_worker
            .entry(e["workerId"].as_str().unwrap_or("none").to_string())
            .or_default() += 1;
    }
    let names: HashSet<String> = workers
        .iter()
        .map(|w| format!("worker-{}", w.pid()))
        .collect();
    assert_eq!(
        per_worker.keys().cloned().collect::<HashSet<_>>(),
        names,
        "both workers ran executions, nobody else did: {per_worker:?}"
    );
    let counts = counts.lock().unwrap().clone();
    assert_eq!(counts.len(), TOTAL as usize, "every n reached the counter");
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c != 1).collect();
    assert!(twice.is_empty(), "called more than once: {twice:?}");
    assert!((0..TOTAL).all(|n| counts.contains_key(&n)));
    eprintln!("two_workers: {per_worker:?} in {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// Two schedulers
// ---------------------------------------------------------------------------------------------

/// A claimed schedule occurrence.
#[derive(Debug, Clone)]
struct Tick {
    at: i64,
    claimed_at: i64,
    execution: Option<String>,
}

async fn ticks(store: &switchyard::store::Store, scenario: &str) -> Vec<Tick> {
    const SQL: &str = "SELECT tick_at, claimed_at, execution_id FROM schedule_ticks \
                       WHERE scenario_id = $1 ORDER BY tick_at";
    let rows: Vec<(i64, i64, Option<String>)> = if let Some(pool) = store.sqlite_pool() {
        sqlx::query_as(SQL).bind(scenario).fetch_all(pool).await
    } else {
        sqlx::query_as(SQL)
            .bind(scenario)
            .fetch_all(store.postgres_pool().unwrap())
            .await
    }
    .expect("read schedule_ticks");
    rows.into_iter()
        .map(|(at, claimed_at, execution)| Tick {
            at,
            claimed_at,
            execution,
        })
        .collect()
}

fn now_ms() -> i64 {
    switchyard::store::now_ms()
}

async fn two_schedulers(db: TestDb) {
    const INTERVAL: i64 = 1000;
    let args = ["--min-interval-seconds", "1", "--heartbeat-seconds", "1"];
    let mut a = db.serve(&args).await;
    let store = db.store().await;
    let blueprint = json!({"name": "every second",
        "flow": [{"id": 1, "module": "util:SetVariable2",
                  "mapper": {"name": "x", "scope": "roundtrip", "value": "tick"}}],
        "scheduling": {"type": "indefinitely", "interval": 1}});
    let created = a.api.create(&blueprint).await;
    let id = created["id"].as_str().unwrap().to_string();
    let activated = a
        .api
        .post(&format!("/api/scenarios/{id}/activate"), &Value::Null)
        .await
        .expect(200, "activate")
        .json;
    let activated_at = Instant::now();
    let anchor = timestamp(&activated["updatedAt"], "updatedAt").timestamp_millis();
    // Two `serve` on one SQLite data directory are refused (one owner per SQLite
    // database); on PostgreSQL both schedulers race for every tick.
    let mut b = match db.backend {
        Backend::Postgres => Some(db.serve(&args).await),
        Backend::Sqlite => {
            assert_refused_as_second_owner(&db, db.spawn_serve(&args), a.proc.pid());
            None
        }
    };

    // Both schedulers race for every tick for about 6 s.
    let scheduled = |api: Api| {
        let id = id.clone();
        async move {
            api.executions(&id)
                .await
                .into_iter()
                .filter(|e| e["source"] == "schedule")
                .collect::<Vec<_>>()
        }
    };
    let count = eventually("6 scheduled executions", 30, || {
        let f = scheduled(a.api.clone());
        async move {
            let n = f.await.len();
            if n >= 6 {
                Ok(n)
            } else {
                Err(format!("{n} so far"))
            }
        }
    })
    .await;
    let elapsed = activated_at.elapsed().as_secs_f64();
    assert!(
        count as f64 <= elapsed.floor() + 1.0 && count >= 3,
        "{count} scheduled executions in {elapsed:.1} s: a tick ran twice"
    );
    let claimed = ticks(&store, &id).await;
    for (i, tick) in claimed.iter().enumerate() {
        assert_eq!(
            tick.at,
            anchor + (i as i64 + 1) * INTERVAL,
            "tick {i}: every occurrence once, none skipped: {claimed:?}"
        );
        assert!(tick.execution.is_some(), "{tick:?}");
    }

    // Downtime: both stop; about 5 ticks are missed.
    a.kill();
    if let Some(b) = &mut b {
        b.kill();
    }
    let last_before = ticks(&store, &id).await.last().expect("ticks").at;
    let stopped_at = now_ms();
    // Restart 100 ms after an occurrence at least 5 s later, so that the latest missed tick
    // is known: `restart - 100`. (Sleeping is the point here: the service must be down.)
    let after = stopped_at + 5000 - anchor;
    let restart_at = anchor + (after / INTERVAL + 1) * INTERVAL + 100;
    tokio::time::sleep(Duration::from_millis((restart_at - now_ms()).max(0) as u64)).await;
    let spawned_at = now_ms();
    let a2 = db.serve(&args).await;
    let ready_at = now_ms();
    let after_restart = eventually("2 ticks after the restart", 30, || {
        let store = &store;
        let id = &id;
        async move {
            let t: Vec<Tick> = ticks(store, id)
                .await
                .into_iter()
                .filter(|t| t.claimed_at >= spawned_at)
                .collect();
            if t.len() >= 2 {
                Ok(t)
            } else {
                Err(format!("{t:?}"))
            }
        }
    })
    .await;
    let missed_run: Vec<&Tick> = after_restart.iter().filter(|t| t.at < spawned_at).collect();
    assert!(
        missed_run.len() <= 1,
        "missed ticks run {} times after the restart: {missed_run:?}",
        missed_run.len()
    );
    assert!(
        after_restart[0].at >= spawned_at - INTERVAL,
        "an old missed tick ran: {after_restart:?} (restart at {spawned_at})"
    );
    assert!(
        after_restart[0].at - last_before >= 4 * INTERVAL,
        "the downtime missed ticks: last before {last_before}, first after {:?}",
        after_restart[0]
    );
    // The occurrences around the restart (the sleep may have overshot its target).
    let latest_missed = anchor + (spawned_at - anchor) / INTERVAL * INTERVAL;
    let next_occurrence = latest_missed + INTERVAL;
    if after_restart[0].claimed_at < next_occurrence {
        // The first pass came before the next occurrence: it ran the latest missed tick, once.
        assert_eq!(
            missed_run.len(),
            1,
            "exactly one catch-up run: {after_restart:?}"
        );
        assert_eq!(missed_run[0].at, latest_missed, "the latest missed tick");
    } else {
        // Nothing was claimed before the next occurrence: acceptable only when the process
        // itself came up late (a loaded machine), not when it skipped the missed ticks.
        assert!(
            ready_at - spawned_at > 300,
            "no catch-up run: the restarted scheduler was ready after {} ms but first ran \
             {after_restart:?} (restart at {spawned_at})",
            ready_at - spawned_at
        );
        eprintln!(
            "two_schedulers: slow start ({} ms); the catch-up run was only bounded",
            ready_at - spawned_at
        );
    }
    eprintln!(
        "two_schedulers ({:?}): {count} runs in {elapsed:.1} s; down {} ms; restarted {} ms \
         after a tick, ready in {} ms; ticks after the restart at {:?} ms, claimed at {:?} ms",
        db.backend,
        spawned_at - stopped_at,
        spawned_at - latest_missed,
        ready_at - spawned_at,
        after_restart
            .iter()
            .map(|t| t.at - spawned_at)
            .collect::<Vec<_>>(),
        after_restart
            .iter()
            .map(|t| t.claimed_at - spawned_at)
            .collect::<Vec<_>>(),
    );
    for pair in after_restart.windows(2) {
        assert_eq!(pair[1].at - pair[0].at, INTERVAL, "{after_restart:?}");
    }

    // Stop scheduling; then every claimed tick has exactly one execution, and all ran.
    a2.api
        .post(&format!("/api/scenarios/{id}/deactivate"), &Value::Null)
        .await
        .expect(200, "deactivate");
    let (claimed, executions) = eventually("every tick's execution to finish", 30, || {
        let (store, id, api) = (&store, &id, &a2.api);
        async move {
            let claimed = ticks(store, id).await;
            let executions = api.executions(id).await;
            let open = executions
                .iter()
                .filter(|e| !is_terminal(e["status"].as_str().unwrap_or("")))
                .count();
            if open == 0 && executions.len() == claimed.len() {
                Ok((claimed, executions))
            } else {
                Err(format!(
                    "{} ticks, {} executions, {open} unfinished",
                    claimed.len(),
                    executions.len()
                ))
            }
        }
    })
    .await;
    let tick_executions: HashSet<&str> = claimed
        .iter()
        .map(|t| t.execution.as_deref().expect("tick execution"))
        .collect();
    assert_eq!(tick_executions.len(), claimed.len());
    for e in &executions {
        assert_eq!(e["source"], "schedule", "{e}");
        assert!(tick_executions.contains(e["id"].as_str().unwrap()), "{e}");
        assert_eq!(e["status"], "success", "{e}");
    }
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// Polling trigger cursor: items over time, edits, restarts
// ---------------------------------------------------------------------------------------------

/// A feed standing in for a third-party site: items are published over time and the feed
/// lists only the newest `FEED_WINDOW`, newest first; items come in groups of 4 that share a
/// publication date.
#[derive(Default)]
struct FakeFeed {
    published: u64,
    requests: u64,
}

const FEED_ITEMS: u64 = 500;
const FEED_WINDOW: u64 = 50;

type SharedFeed = Arc<std::sync::Mutex<FakeFeed>>;

fn feed_xml(published: u64) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\"><channel>\
         <title>Fake</title><link>http://fake.test/</link><description>d</description>\n",
    );
    let oldest = published.saturating_sub(FEED_WINDOW) + 1;
    for n in (oldest..=published).rev() {
        let date = chrono::DateTime::from_timestamp(1_700_000_000 + (n as i64 / 4) * 60, 0)
            .unwrap()
            .to_rfc2822();
        xml.push_str(&format!(
            "<item><title>Item {n}</title><link>http://fake.test/{n}</link>\
             <guid isPermaLink=\"false\">{n}</guid><pubDate>{date}</pubDate></item>\n"
        ));
    }
    xml.push_str("</channel></rss>\n");
    xml
}

async fn feed_server() -> (String, SharedFeed) {
    use axum::routing::get;
    let feed: SharedFeed = Default::default();
    let shared = feed.clone();
    let app = axum::Router::new().route(
        "/feed",
        get(move || {
            let shared = shared.clone();
            async move {
                let published = {
                    let mut f = shared.lock().unwrap();
                    f.requests += 1;
                    f.published
                };
                (
                    [("content-type", "application/rss+xml")],
                    feed_xml(published),
                )
            }
        }),
    );
    let addr = common::server::serve(app).await;
    (format!("http://{addr}/feed"), feed)
}

/// RSS → POST `{"n": id}` to the counter, polled every second, 2 cycles of 25 items.
fn rss_scenario(feed: &str, counter: &str, name: &str, epoch: Option<&str>) -> Value {
    let mut parameters = json!({"url": feed, "maxResults": 25, "gzip": true, "include": [],
        "username": "", "password": ""});
    if let Some(epoch) = epoch {
        parameters["epoch"] = json!(epoch);
    }
    json!({
        "name": name,
        "flow": [
            {"id": 1, "module": "rss:TriggerNewArticle", "version": 4,
             "parameters": parameters, "mapper": {}},
            {"id": 2, "module": "http:ActionSendData", "version": 3,
             "mapper": {"url": format!("{counter}/count"), "method": "post",
                        "bodyType": "raw", "contentType": "application/json",
                        "data": "{\"n\": {{1.id}}}"}}
        ],
        "metadata": {"scenario": {"roundtrips": 2}},
        "scheduling": {"type": "indefinitely", "interval": 1}
    })
}

/// The acceptance test of polling triggers: 500 items appear over time on a feed that lists
/// only the newest 50; the scenario is edited, deactivated and re-activated, and the server
/// is stopped gracefully and restarted: every item reaches the sink exactly once. Then the
/// server is killed (`kill -9`): side effects are at least once, but the committed cursor
/// never re-emits a committed item nor skips one. Finally `scenarios reset-trigger` makes
/// the next poll start afresh.
async fn polling_cursor(db: TestDb) {
    let started = Instant::now();
    let args = ["--min-interval-seconds", "1", "--heartbeat-seconds", "1"];
    let (feed_url, feed) = feed_server().await;
    let (counter, counts) = counter_server(Duration::ZERO).await;
    let mut svc = db.serve(&args).await;
    // The default start: from now on (the feed is empty at the first poll).
    let (id, _) = svc
        .api
        .create_active(&rss_scenario(&feed_url, &counter, "rss v1", None))
        .await;

    // Publish in bursts once the first poll has happened, never letting the unprocessed
    // backlog reach the feed's window (items that scroll out unread are lost by any poller).
    let publisher = {
        let (feed, counts) = (feed.clone(), counts.clone());
        tokio::spawn(async move {
            let bursts = [7u64, 23, 12, 18, 9, 21, 15, 11, 20, 4];
            let mut k = 0;
            loop {
                let (published, requests) = {
                    let f = feed.lock().unwrap();
                    (f.published, f.requests)
                };
                if published >= FEED_ITEMS {
                    return;
                }
                if requests > 0 && published - distinct(&counts) < 25 {
                    let burst = bursts[k % bursts.len()].min(FEED_ITEMS - published);
                    feed.lock().unwrap().published += burst;
                    k += 1;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };

    // Mid-way: a new version of the scenario, and deactivate + activate. The cursor stays.
    wait_distinct(&counts, 120, 40).await;
    let edited = rss_scenario(&feed_url, &counter, "rss v2", None);
    let version = svc
        .api
        .put(&format!("/api/scenarios/{id}"), &edited)
        .await
        .expect(200, "edit")
        .json["version"]
        .clone();
    assert_eq!(version, 2);
    for action in ["deactivate", "activate"] {
        svc.api
            .post(&format!("/api/scenarios/{id}/{action}"), &Value::Null)
            .await
            .expect(200, action);
    }

    // A graceful stop lets the running execution finish and commit; then restart.
    wait_distinct(&counts, 250, 40).await;
    assert!(svc.proc.terminate(30), "serve did not stop on SIGTERM");
    assert_eq!(
        duplicates(&counts),
        [],
        "exactly once through edits and SIGTERM"
    );
    let stopped_at = distinct(&counts);
    svc = db.serve(&args).await;

    // kill -9: what the sink saw but the store did not commit is sent again after the
    // restart; what was committed never is.
    wait_distinct(&counts, stopped_at.max(350) + 10, 40).await;
    svc.kill();
    let store = db.store().await;
    let key = "module:1";
    let committed: HashSet<u64> = store
        .trigger_state(&id, key)
        .await
        .unwrap()
        .expect("a committed cursor")
        .seen_ids
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let seen_at_kill: HashSet<u64> = counts.lock().unwrap().keys().copied().collect();
    assert!(
        committed.is_subset(&seen_at_kill),
        "the cursor committed an item whose side effect did not happen"
    );
    assert_eq!(duplicates(&counts), [], "exactly once before the kill");
    let svc = db.serve(&args).await;

    wait_distinct(&counts, FEED_ITEMS, 60).await;
    publisher.await.unwrap();
    let final_counts = counts.lock().unwrap().clone();
    let expected: HashSet<u64> = (1..=FEED_ITEMS).collect();
    let got: HashSet<u64> = final_counts.keys().copied().collect();
    assert_eq!(got, expected, "every item reached the sink, nothing else");
    for (n, c) in &final_counts {
        if *c > 1 {
            assert!(
                !committed.contains(n) && seen_at_kill.contains(n) && *c == 2,
                "item {n} sent {c} times: only items in flight at the kill may repeat, once"
            );
        }
    }
    let repeated = final_counts.values().filter(|c| **c > 1).count();
    // The committed cursor covered at least the newest item of the last committed poll.
    assert!(
        committed.iter().max().copied().unwrap_or(0) + 50 >= seen_at_kill.len() as u64,
        "the committed cursor lagged by more than one execution"
    );

    // Executions: all finished, all successful, none after the last item re-sent anything.
    let executions = svc.api.all_finished(&id, 1, 30).await;
    for e in &executions {
        assert_ne!(e["status"], "error", "{e}");
    }
    let before_reset = counts.lock().unwrap().clone();

    // Editing the start to "all" does not reset the trigger: nothing is sent again.
    let all = rss_scenario(&feed_url, &counter, "rss v3", Some("all"));
    svc.api
        .put(&format!("/api/scenarios/{id}"), &all)
        .await
        .expect(200, "edit to all");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        *counts.lock().unwrap(),
        before_reset,
        "an edit reset the cursor"
    );

    // reset-trigger: the next poll starts afresh, from "all": the 50 listed items again.
    let out = db.cli(&["scenarios", "reset-trigger", &id, "--json"]);
    let reset = stdout_json(&out, "reset-trigger");
    assert_eq!(reset["reset"], true, "{reset}");
    assert_eq!(reset["trigger"], key);
    eventually("the listed items to be sent again", 30, || async {
        let now = counts.lock().unwrap().clone();
        let again: Vec<u64> = (1..=FEED_ITEMS)
            .filter(|n| now.get(n) != before_reset.get(n))
            .collect();
        if again == (FEED_ITEMS - FEED_WINDOW + 1..=FEED_ITEMS).collect::<Vec<_>>() {
            Ok(())
        } else {
            Err(format!("{} items sent again", again.len()))
        }
    })
    .await;
    let now = counts.lock().unwrap().clone();
    for n in FEED_ITEMS - FEED_WINDOW + 1..=FEED_ITEMS {
        assert_eq!(now[&n], before_reset[&n] + 1, "item {n} once more");
    }
    eprintln!(
        "polling_cursor ({:?}): {} items, {repeated} repeated after kill -9, {} executions, \
         {:.1} s",
        db.backend,
        FEED_ITEMS,
        executions.len(),
        started.elapsed().as_secs_f64()
    );
    store.close().await;
}

/// Make's `maxErrors`: an active scenario is turned off once its last `maxErrors` executions
/// all ended with an error (instant triggers included); a success in between breaks the run.
async fn consecutive_errors_turn_a_scenario_off(db: TestDb) {
    // The operator's endpoint for `--notify-url`: it keeps what it is sent.
    let events: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let kept = events.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |axum::Json(event): axum::Json<Value>| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(event);
                "ok"
            }
        }),
    );
    let notify = format!("http://{}/events", common::server::serve(app).await);
    let svc = db.serve(&["--notify-url", &notify]).await;
    let api = &svc.api;
    let http = reqwest::Client::new();
    let blueprint = json!({
        "name": "Parses",
        "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "parses"}},
            {"id": 2, "module": "json:ParseJSON", "mapper": {"json": "{{1.text}}"}}
        ],
        "metadata": {"scenario": {"maxErrors": 2}}
    });
    let (id, hook) = api.create_active(&blueprint).await;
    let hook = svc.url(&hook.expect("a hook"));
    let send = |text: &'static str| {
        let (http, hook) = (http.clone(), hook.clone());
        async move {
            let reply = hook_json(&http, &hook, &json!({"text": text}))
                .await
                .expect(200, "hook");
            api.finished(&execution_header(&reply)).await
        }
    };
    let scenario = || async {
        api.get(&format!("/api/scenarios/{id}"))
            .await
            .expect(200, "get")
            .json
    };

    // An error, a success, an error: never two in a row.
    for (text, status) in [
        ("{oops", "error"),
        ("{\"ok\": 1}", "success"),
        ("{oops", "error"),
    ] {
        assert_eq!(send(text).await["status"], status, "{text}");
        let now = scenario().await;
        assert_eq!(now["active"], true, "after {text}: {now}");
        assert_eq!(now["deactivatedReason"], Value::Null);
    }
    // The second error in a row turns it off, saying why.
    assert_eq!(send("{oops").await["status"], "error");
    let off = eventually("the scenario to be turned off", 20, || async {
        let now = scenario().await;
        if now["active"] == false {
            Ok(now)
        } else {
            Err(now.to_string())
        }
    })
    .await;
    let reason = off["deactivatedReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("2 consecutive executions") && reason.contains("maxErrors 2"),
        "{off}"
    );
    // Each failure was logged, with its module and error kind.
    let log = svc.proc.log();
    assert_eq!(log.matches("an execution failed").count(), 3, "{log}");
    assert!(log.contains("DataError"), "{log}");
    // Written to a file, not a terminal: no colour codes.
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in a log file: {log:?}"
    );
    // Its hook no longer takes deliveries (once the process's cached route, kept for up to
    // a second, is read again).
    eventually("the hook to refuse deliveries", 10, || async {
        let reply = hook_json(&http, &hook, &json!({"text": "{}"})).await;
        if reply.status == 200 {
            Err(format!("{reply:?}"))
        } else {
            Ok(())
        }
    })
    .await;

    // The operator was told of each failure and of the deactivation.
    let (failed, deactivated) = eventually("the notifications", 10, || async {
        let events = events.lock().unwrap().clone();
        let of = |kind: &str| -> Vec<Value> {
            events
                .iter()
                .filter(|e| e["event"] == kind)
                .cloned()
                .collect()
        };
        let (failed, deactivated) = (of("execution.failed"), of("scenario.deactivated"));
        if failed.len() >= 3 && !deactivated.is_empty() {
            Ok((failed, deactivated))
        } else {
            Err(format!("{events:?}"))
        }
    })
    .await;
    assert_eq!(failed.len(), 3, "{failed:?}");
    for event in &failed {
        assert_eq!(event["scenario"], json!(id), "{event}");
        assert_eq!(event["error"]["module"], 2, "{event}");
        assert_eq!(event["error"]["name"], "DataError", "{event}");
        assert!(
            event["execution"].is_string() && event["at"].is_string(),
            "{event}"
        );
    }
    assert_eq!(deactivated.len(), 1, "{deactivated:?}");
    assert_eq!(deactivated[0]["reason"], off["deactivatedReason"]);

    // Turned on again: the reason is gone and the count starts afresh.
    api.post(&format!("/api/scenarios/{id}/activate"), &Value::Null)
        .await
        .expect(200, "activate");
    let again = scenario().await;
    assert_eq!(
        (again["active"].clone(), again["deactivatedReason"].clone()),
        (json!(true), Value::Null)
    );
}
