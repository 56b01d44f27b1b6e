//! The ChatBot app through the real `switchyard` binary, against the fake ChatBot API
//! (`tests/common/chatbot.rs`), on SQLite and PostgreSQL:
//!
//! - `watch_new_messages`: the example `scenarios/chatbot-upsert-user.json` imported and
//!   activated registers its hook on ChatBot (which verifies it), an event creates the user,
//!   a redelivered event (same `x-request-id`) runs nothing, a second message updates the
//!   user; deactivating and deleting the scenario remove the hook. The planted access token
//!   is in no log, API response or file of the data directory.
//! - `nightly_stories_report`: the example `scenarios/chatbot-nightly-stories.json` run with
//!   `switchyard run FILE --data-dir DIR --json` sends the stories to the report URL.
//! - `watch_users_cursor`: the polling-cursor acceptance test of the durable-engine issue on
//!   an app trigger: 500 users appear over time while the Watch Users scenario is edited,
//!   deactivated and re-activated and the server is stopped, restarted and killed (`kill -9`):
//!   every user is processed, none twice except what was in flight at the kill.

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::chatbot::FakeChatBot;
use harness::*;

common::backend_tests!(
    watch_new_messages,
    nightly_stories_report,
    watch_users_cursor
);

/// A token no other text contains, so finding it anywhere is a leak.
fn planted_token() -> String {
    format!("cb-planted-{}", uuid::Uuid::new_v4().simple())
}

/// Stores the connection `chatbot` (the name the examples use) pointing at `fake`, after its
/// test request (`GET /users?limit=1`) succeeded there.
fn add_connection(db: &TestDb, fake: &FakeChatBot, token: &str) {
    let tested = fake.calls("GET", "/users");
    let out = db.cli(&[
        "connections",
        "add",
        "chatbot",
        "--app",
        "chatbot",
        "--token",
        token,
        "--base-url",
        &fake.base_url,
    ]);
    let printed = stdout_ok(&out, "connections add");
    assert!(!printed.contains(token), "add printed the token: {printed}");
    assert_eq!(fake.calls("GET", "/users"), tested + 1, "tested when made");
}

/// A connection is tested when it is made (issue 21): a token the API refuses is not
/// stored, and the error carries the provider's answer, never the token; `--no-test` stores
/// it untested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_tested_when_added() {
    let db = TestDb::new(Backend::Sqlite)
        .await
        .expect("a SQLite database");
    let token = planted_token();
    let fake = FakeChatBot::start(&token).await;
    let wrong = planted_token();
    let add = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "connections",
            "add",
            name,
            "--app",
            "chatbot",
            "--token",
            &wrong,
            "--base-url",
            &fake.base_url,
        ];
        args.extend_from_slice(extra);
        db.cli(&args)
    };
    let out = add("refused", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("failed its test"), "{stderr}");
    assert!(stderr.contains("InvalidAccessTokenError"), "{stderr}");
    assert!(
        !stderr.contains(&wrong),
        "the error quoted the token: {stderr}"
    );
    let listed = stdout_ok(&db.cli(&["connections", "list"]), "connections list");
    assert!(!listed.contains("refused"), "{listed}");

    let out = add("untested", &["--no-test"]);
    stdout_ok(&out, "connections add --no-test");
    let listed = stdout_ok(&db.cli(&["connections", "list"]), "connections list");
    assert!(listed.contains("untested"), "{listed}");
    add_connection(&db, &fake, &token);

    // The API likewise: 422 `test_failed` with the provider's answer, or `"test": false`.
    let svc = db.serve(&[]).await;
    let body = |name: &str| {
        json!({"name": name, "app": "chatbot", "kind": "bearer",
               "fields": {"token": wrong, "baseUrl": fake.base_url}})
    };
    let refused = svc.api.post("/api/connections", &body("api-refused")).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(
        refused.json["error"]["code"], "test_failed",
        "{}",
        refused.text
    );
    assert!(!refused.text.contains(&wrong), "{}", refused.text);
    let mut untested = body("api-untested");
    untested["test"] = json!(false);
    let stored = svc.api.post("/api/connections", &untested).await;
    assert_eq!(stored.status, 201, "{}", stored.text);

    // Bad input is a 422 naming the field: a Make id that is no whole number, a test switch
    // that is no boolean.
    for (field, value) in [
        ("id", json!("33a77")),
        ("id", json!(-5)),
        ("test", json!("yes")),
    ] {
        let mut bad = body("api-bad");
        bad["test"] = json!(false);
        bad[field] = value.clone();
        let refused = svc.api.post("/api/connections", &bad).await;
        assert_eq!(refused.status, 422, "{field}={value}: {}", refused.text);
        assert!(
            refused.text.contains(field),
            "{field}={value}: {}",
            refused.text
        );
    }
}

/// The example blueprint at `path` (`scenarios/…`).
fn example(path: &str) -> Value {
    serde_json::from_str(&repo_file(path)).expect("example JSON")
}

/// A ChatBot webhook event (chatbot-api.md A.5) from the user with `email`.
fn event(message: &str, user_id: &str, email: &str) -> Value {
    json!({
        "chatId": "602313f00000000000000001", "messageId": message, "userId": user_id,
        "externalId": "26565d77-dd8f-4f34-bb46-4daaa8a22895",
        "node": {"id": "4b0d6bea", "name": "Ask", "type": "WEBHOOK",
                 "webhookId": "602313f00000000000000000", "webhookName": "Switchyard: new messages"},
        "userAttributes": {"default_name": "Ann", "default_email": email},
        "attributes": {}
    })
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            found.push(path.display().to_string());
        }
    }
    found
}

async fn watch_new_messages(db: TestDb) {
    let token = planted_token();
    let fake = FakeChatBot::start(&token).await;
    add_connection(&db, &fake, &token);
    let svc = db.serve(&[]).await;

    let created = svc
        .api
        .create(&example("scenarios/chatbot-upsert-user.json"))
        .await;
    let id = created["id"].as_str().expect("scenario id").to_string();
    let hook = created["hooks"][0]["url"]
        .as_str()
        .expect("the instant trigger's hook")
        .to_string();
    assert!(fake.webhooks().is_empty(), "registered before activation");

    // Activation registers the hook on ChatBot, which verified it before answering.
    svc.api
        .post(&format!("/api/scenarios/{id}/activate"), &Value::Null)
        .await
        .expect(200, "activate");
    let webhooks = fake.webhooks();
    assert_eq!(webhooks.len(), 1, "{webhooks:?}");
    assert_eq!(webhooks[0]["url"], svc.url(&hook));
    assert_eq!(webhooks[0]["name"], "Switchyard: new messages");
    assert!(
        fake.calls("GET", "/users") == 1 && fake.calls("POST", "/webhooks") == 1,
        "one registration after the connection's test, nothing else"
    );
    // A verification with another token is refused; it starts nothing.
    let client = reqwest::Client::new();
    let refused = client
        .get(format!(
            "{}?challenge=c-1&token=not-the-token",
            svc.url(&hook)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // A message from an unknown email: the user is created.
    let first = fake
        .deliver(&event("m-1", "0735887f-aaaa", "ann@example.com"))
        .await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].status, 200, "{first:?}");
    svc.api.all_finished(&id, 1, 30).await;
    assert_eq!(fake.calls("POST", "/users"), 1, "exactly one user created");
    let ann = fake
        .users()
        .into_iter()
        .find(|u| u["attributes"]["default_email"] == "ann@example.com")
        .expect("Ann was created");
    assert_eq!(ann["userId"], "0735887f-aaaa");
    assert_eq!(ann["attributes"]["last_message_id"], "m-1");

    // ChatBot sends the same event again (same x-request-id): nothing runs twice.
    let again = fake.redeliver(&first[0].request_id).await;
    assert_eq!(again[0].status, 200, "{again:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(svc.api.executions(&id).await.len(), 1, "a redelivery ran");
    assert_eq!(fake.calls("POST", "/users"), 1);

    // A second message from Ann: found by email, updated, not created again.
    fake.deliver(&event("m-2", "0735887f-aaaa", "ann@example.com"))
        .await;
    let executions = svc.api.all_finished(&id, 2, 30).await;
    for e in &executions {
        assert_eq!(e["status"], "success", "{e}");
    }
    assert_eq!(fake.calls("POST", "/users"), 1);
    let ann_id = ann["id"].as_str().unwrap();
    assert_eq!(fake.calls("PUT", &format!("/users/{ann_id}")), 1);
    assert_eq!(
        fake.user(ann_id).unwrap()["attributes"]["last_message_id"],
        "m-2"
    );

    // Deactivating removes the hook from ChatBot; activating registers it again.
    svc.api
        .post(&format!("/api/scenarios/{id}/deactivate"), &Value::Null)
        .await
        .expect(200, "deactivate");
    assert!(fake.webhooks().is_empty(), "{:?}", fake.webhooks());
    svc.api
        .post(&format!("/api/scenarios/{id}/activate"), &Value::Null)
        .await
        .expect(200, "activate again");
    assert_eq!(fake.webhooks().len(), 1);
    assert_eq!(fake.calls("POST", "/webhooks"), 2);

    // The token went to ChatBot in the Authorization header and nowhere else.
    let execution = svc
        .api
        .get(&format!(
            "/api/executions/{}",
            executions[0]["id"].as_str().unwrap()
        ))
        .await
        .expect(200, "execution");
    let listed = svc.api.get("/api/connections").await.expect(200, "list");
    for (what, text) in [
        ("the execution", execution.text.clone()),
        ("the connections list", listed.text.clone()),
        ("the server's log", svc.proc.log()),
    ] {
        assert!(!text.contains(&token), "the token is in {what}");
    }
    for seen in fake.requests() {
        assert_eq!(
            seen.authorization.as_deref(),
            Some(format!("Bearer {token}").as_str()),
            "{} {} without the connection's header",
            seen.method,
            seen.path
        );
    }

    // A trigger whose connection does not exist cannot register: activation's check of the
    // references names it at its path, and the scenario stays inactive.
    let mut orphan = example("scenarios/chatbot-upsert-user.json");
    orphan["name"] = json!("no connection");
    orphan["flow"][0]["parameters"]["__IMTCONN__"] = json!("nobody");
    let orphan = svc.api.create(&orphan).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = svc
        .api
        .post(&format!("/api/scenarios/{orphan}/activate"), &Value::Null)
        .await
        .expect(422, "activate without a connection");
    assert_eq!(
        refused.json["error"]["code"], "missing_references",
        "{refused:?}"
    );
    assert_eq!(
        refused.json["error"]["path"], "flow[0].parameters.__IMTCONN__",
        "{refused:?}"
    );
    assert!(refused.text.contains("nobody"), "{}", refused.text);
    let row = svc
        .api
        .get(&format!("/api/scenarios/{orphan}"))
        .await
        .expect(200, "get");
    assert_eq!(row.json["active"], false);
    assert_eq!(fake.webhooks().len(), 1, "only the first scenario's hook");

    // Deleting the scenario removes the hook too.
    svc.api
        .send(
            reqwest::Method::DELETE,
            &format!("/api/scenarios/{id}"),
            &Value::Null,
        )
        .await
        .expect(204, "delete");
    assert!(fake.webhooks().is_empty(), "{:?}", fake.webhooks());
    let leaked = files_containing(&db.data_dir(), &token);
    assert!(
        leaked.is_empty(),
        "the token is stored in clear in {leaked:?}"
    );
}

async fn nightly_stories_report(db: TestDb) {
    use axum::routing::post;
    let token = planted_token();
    let fake = FakeChatBot::start(&token).await;
    for (name, description) in [
        ("Welcome", "Greets"),
        ("Orders", "Tracks"),
        ("FAQ", "Answers"),
    ] {
        fake.add_story(name, description);
    }
    add_connection(&db, &fake, &token);
    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let sink = reports.clone();
    let app = axum::Router::new().route(
        "/chatbot/stories",
        post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let addr = common::server::serve(app).await;
    let mut blueprint = example("scenarios/chatbot-nightly-stories.json");
    blueprint["flow"][3]["mapper"]["url"] = json!(format!("http://{addr}/chatbot/stories"));
    let file = db.write_json("nightly.json", &blueprint);

    let out = db.cli(&["run", file.to_str().unwrap(), "--json"]);
    let report = stdout_json(&out, "run the nightly report");
    assert_eq!(report["status"], "success", "{report}");
    assert!(!report.to_string().contains(&token));
    let reports = reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["count"], 3);
    let names: Vec<&str> = reports[0]["stories"]
        .as_array()
        .expect("the stories as an array")
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Welcome", "Orders", "FAQ"]);
    assert_eq!(fake.calls("GET", "/v2/stories"), 1);
}

const USERS: u64 = 500;

/// Watch Users (start: all, 25 per cycle, two cycles) → POST `{"n": attributes.n}` to the
/// counter, every second.
fn watch_users_scenario(counter: &str, name: &str) -> Value {
    json!({
        "name": name,
        "flow": [
            {"id": 1, "module": "chatbot:WatchUsers", "version": 1,
             "parameters": {"__IMTCONN__": "chatbot", "start": "all", "limit": 25}},
            {"id": 2, "module": "http:ActionSendData", "version": 3,
             "mapper": {"url": format!("{counter}/count"), "method": "post",
                        "bodyType": "raw", "contentType": "application/json",
                        "data": "{\"n\": {{1.attributes.n}}}"}}
        ],
        "metadata": {"scenario": {"roundtrips": 2}},
        "scheduling": {"type": "indefinitely", "interval": 1}
    })
}

async fn watch_users_cursor(db: TestDb) {
    let started = Instant::now();
    let args = ["--min-interval-seconds", "1", "--heartbeat-seconds", "1"];
    let token = planted_token();
    let fake = FakeChatBot::start(&token).await;
    add_connection(&db, &fake, &token);
    let (counter, counts) = counter_server(Duration::ZERO).await;
    let mut svc = db.serve(&args).await;
    let (id, _) = svc
        .api
        .create_active(&watch_users_scenario(&counter, "users v1"))
        .await;

    // Users appear in bursts, some sharing a creation time, for as long as the test runs.
    let publisher = {
        let (fake, counts) = (fake.clone(), counts.clone());
        tokio::spawn(async move {
            let bursts = [7u64, 23, 12, 18, 9, 21, 15, 11, 20, 4];
            let (mut added, mut k) = (0u64, 0usize);
            while added < USERS {
                if added - distinct(&counts) < 60 {
                    let burst = bursts[k % bursts.len()].min(USERS - added);
                    for _ in 0..burst {
                        added += 1;
                        fake.add_user_with(&format!("user-{added}"), &[], json!({"n": added}));
                    }
                    k += 1;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };

    // An edit and a deactivate/activate keep the cursor.
    wait_distinct(&counts, 120, 60).await;
    svc.api
        .put(
            &format!("/api/scenarios/{id}"),
            &watch_users_scenario(&counter, "users v2"),
        )
        .await
        .expect(200, "edit");
    for action in ["deactivate", "activate"] {
        svc.api
            .post(&format!("/api/scenarios/{id}/{action}"), &Value::Null)
            .await
            .expect(200, action);
    }

    // A graceful stop commits what ran; the restart goes on from the cursor.
    wait_distinct(&counts, 250, 60).await;
    assert!(svc.proc.terminate(30), "serve did not stop on SIGTERM");
    assert_eq!(
        duplicates(&counts),
        [],
        "exactly once through edits and SIGTERM"
    );
    let stopped_at = distinct(&counts);
    svc = db.serve(&args).await;

    // kill -9: only what was in flight (not yet committed) may be sent again, once.
    wait_distinct(&counts, stopped_at.max(350) + 10, 60).await;
    svc.kill();
    let seen_at_kill: HashSet<u64> = counts.lock().unwrap().keys().copied().collect();
    assert_eq!(duplicates(&counts), [], "exactly once before the kill");
    let svc = db.serve(&args).await;

    wait_distinct(&counts, USERS, 90).await;
    publisher.await.unwrap();
    let executions = svc.api.all_finished(&id, 1, 30).await;
    for e in &executions {
        assert_ne!(e["status"], "error", "{e}");
    }
    let final_counts = counts.lock().unwrap().clone();
    let got: HashSet<u64> = final_counts.keys().copied().collect();
    assert_eq!(got, (1..=USERS).collect(), "every user, nothing else");
    let again = duplicates(&counts);
    for (n, c) in &again {
        assert!(
            seen_at_kill.contains(n) && *c == 2,
            "user {n} processed {c} times: only users in flight at the kill may repeat, once"
        );
    }
    // One execution (two cycles of 25) at most was in flight.
    assert!(
        again.len() <= 50,
        "{} users repeated after the kill",
        again.len()
    );
    eprintln!(
        "watch_users_cursor ({:?}): {USERS} users, {} repeated after kill -9, {} executions, \
         {:.1} s",
        db.backend,
        again.len(),
        executions.len(),
        started.elapsed().as_secs_f64()
    );
}
