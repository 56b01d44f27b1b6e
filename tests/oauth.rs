//! OAuth2 integrations through the real `switchyard serve`, against a real OAuth2 server (the
//! npm package `oauth2-mock-server`, `tests/common/oauth.rs`), on SQLite and PostgreSQL:
//!
//! - `auth_code_end_to_end`: `/oauth/start/{alias}` redirects with PKCE (S256) and a state; an
//!   HTTP client following the redirects lands on the callback's "Connected" page; the
//!   connection is listed with its provider, context, status and expiry and without a token;
//!   `http:ActionSendDataOAuth` calls a protected resource with it; `tokens:GetAccessToken`
//!   hands the token to a later module while the history shows `[redacted]`; no issued token
//!   or the client secret appears in the log, any API response or any data file.
//! - `csrf_is_refused`: a made-up state, a replayed state and a callback without state are
//!   400 and store nothing; an established bot connection is not replaced without the token.
//! - `user_links_and_token_events`: a per-user link from `tokens:OAuthLink`, a tampered one
//!   refused, the completed flow fires `token:<alias>` into the watching scenario, whose
//!   `tokens:GetTokenInfo` reads the normalized userinfo of `{{user.tokens.google}}`.
//! - `refresh_single_flight`: an expired token with 50 concurrent executions is refreshed by
//!   exactly one request; a 401 refreshes once and retries; a revoked refresh token marks the
//!   connection `needs_reauth` and runs fail with `InvalidAccessTokenError`.
//! - `client_credentials_and_secrets`: a client-credentials integration connects on first use
//!   and is re-requested on expiry; a `secret` stored with `PUT /api/secrets/{alias}` reaches
//!   a request through `getAccessToken` and nowhere else.
//! - `service_account`: a Google service account key (RSA, made by `openssl`) is exchanged
//!   with a JWT-bearer grant at a local token endpoint that verifies the RS256 signature with
//!   the key's public half and the claims; the token is cached until it expires.

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use common::oauth::MockOAuth;
use harness::*;

common::backend_tests!(
    auth_code_end_to_end,
    csrf_is_refused,
    user_links_and_token_events,
    refresh_single_flight,
    client_credentials_and_secrets,
    service_account,
);

const CLIENT_SECRET: &str = "test-client-secret-5f1c";

/// Starts `serve` with `integrations` written as the integrations file.
async fn serve_with(db: &TestDb, integrations: &Value) -> Service {
    let file = db.write_json("integrations.json", integrations);
    db.serve(&["--integrations", file.to_str().unwrap()]).await
}

/// A client that follows redirects (the user's browser) and one that does not.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Opens `url` in the "browser" (following every redirect); the final page.
async fn open(url: &str) -> Reply {
    Reply::from(browser().get(url).send().await.expect("GET")).await
}

/// The connection listed under `name` by `GET /api/connections`.
async fn listed(api: &Api, name: &str) -> Option<Value> {
    let list = api.get("/api/connections").await.expect(200, "list").json;
    list["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
}

/// Runs scenario `id` now and waits for the execution to finish.
async fn run_now(api: &Api, id: &str) -> Value {
    let started = api
        .post(&format!("/api/scenarios/{id}/run"), &json!({}))
        .await;
    assert!(
        started.status.is_success(),
        "run now: {} {}",
        started.status,
        started.text
    );
    let execution = started.json["executionId"]
        .as_str()
        .or(started.json["id"].as_str())
        .unwrap_or_else(|| panic!("run now answer: {}", started.text))
        .to_string();
    api.finished(&execution).await
}

/// Asserts that none of `secrets` is in the service's log, the given API texts, or any file
/// of the data directory.
fn assert_nowhere(service: &Service, db: &TestDb, texts: &[&str], secrets: &[String]) {
    let log = service.proc.log();
    for secret in secrets {
        assert!(!log.contains(secret.as_str()), "a token is in the log");
        for text in texts {
            assert!(
                !text.contains(secret.as_str()),
                "a token is in an API response"
            );
        }
        let files = common::connections::files_containing(&db.data_dir(), secret);
        assert!(files.is_empty(), "a token is in {files:?}");
    }
}

/// A scenario calling the mock's protected resource with connection `connection`, through
/// `http:ActionSendDataOAuth`.
fn resource_scenario(mock: &MockOAuth, connection: &str) -> Value {
    json!({
        "name": format!("resource with {connection}"),
        "flow": [
            {"id": 1, "module": "http:ActionSendDataOAuth", "version": 3,
             "parameters": {"__IMTCONN__": connection, "handleErrors": true},
             "mapper": {"url": format!("{}/resource?from=switchyard", mock.control),
                        "method": "get", "parseResponse": true}}
        ]
    })
}

async fn auth_code_end_to_end(db: TestDb) {
    let mock = MockOAuth::start().await;
    let service = serve_with(&db, &json!([mock.integration("crm", "bot", "auth_code")])).await;
    let api = &service.api;

    // The redirect carries PKCE and a state, and names our callback.
    let start = Reply::from(
        no_redirects()
            .get(format!("{}/oauth/start/crm", service.base))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(302, "start");
    let location = reqwest::Url::parse(start.header("location").unwrap()).unwrap();
    assert!(
        location
            .as_str()
            .starts_with(&format!("{}/authorize", mock.issuer))
    );
    let query: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43, "{query:?}");
    assert!(query["state"].len() >= 16, "{query:?}");
    assert_eq!(query["client_id"], "switchyard-test");
    assert_eq!(query["scope"], "openid profile email");
    assert_eq!(
        query["redirect_uri"],
        format!("{}/oauth/callback", service.base)
    );
    assert!(!location.as_str().contains(CLIENT_SECRET));

    // The whole flow, as a browser follows it.
    let page = open(&format!("{}/oauth/start/crm", service.base)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("Connected"), "{}", page.text);
    assert!(page.text.contains("Test crm"), "{}", page.text);
    assert_eq!(mock.grants("authorization_code").await, 1);

    let connection = listed(api, "crm").await.expect("crm is listed");
    assert_eq!(connection["provider"], "oauth2");
    assert_eq!(connection["alias"], "crm");
    assert_eq!(connection["context"], "bot");
    assert_eq!(connection["status"], "connected");
    assert_eq!(connection["kind"], "oauth2");
    assert!(connection["expiresAt"].as_str().is_some(), "{connection}");
    let integrations = api
        .get("/api/integrations")
        .await
        .expect(200, "integrations");
    assert_eq!(integrations.json["integrations"][0]["status"], "connected");
    assert_eq!(integrations.json["integrations"][0]["flow"], "auth_code");

    // Tested with its provider (it has no app to define a test request): the API, and the
    // CLI with the integrations file; without the file the CLI says what it needs.
    let tested = api
        .post("/api/connections/crm/test", &json!({}))
        .await
        .expect(200, "test crm");
    assert!(
        tested.json["detail"]
            .as_str()
            .is_some_and(|d| d.contains("accepted its token")),
        "{}",
        tested.text
    );
    let file = db.write_json(
        "integrations.json",
        &json!([mock.integration("crm", "bot", "auth_code")]),
    );
    let out = db.cli(&[
        "connections",
        "test",
        "crm",
        "--integrations",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("accepted its token"));
    let out = db.cli(&["connections", "test", "crm"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        said.contains("--integrations") && !said.contains("no app named"),
        "{said}"
    );

    // A module uses it; GetAccessToken hands it on, redacted in the history.
    let (recorder, recorder_url) = common::connections::Recorder::start().await;
    let blueprint = json!({
        "name": "crm",
        "flow": [
            {"id": 1, "module": "http:ActionSendDataOAuth", "version": 3,
             "parameters": {"__IMTCONN__": "crm", "handleErrors": true},
             "mapper": {"url": format!("{}/resource", mock.control), "method": "get",
                        "parseResponse": true}},
            {"id": 2, "module": "tokens:GetAccessToken", "mapper": {"token": "{{bot.tokens.crm}}"}},
            {"id": 3, "module": "http:ActionSendData", "version": 3,
             "mapper": {"url": format!("{recorder_url}/echo"), "method": "get",
                        "headers": [{"name": "Authorization", "value": "Bearer {{2.accessToken}}"}]}}
        ]
    });
    let id = api.create(&blueprint).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let execution = run_now(api, &id).await;
    assert_eq!(execution["status"], "success", "{execution}");
    let log = api.log(execution["id"].as_str().unwrap()).await;
    assert_eq!(log[0]["output"]["data"]["ok"], true, "{log}");
    assert_eq!(log[1]["output"]["accessToken"], "[redacted]", "{log}");
    // So is the input of the module it was mapped into.
    let input = api
        .get(&format!(
            "/api/executions/{}?module=3&bundles=input",
            execution["id"].as_str().unwrap()
        ))
        .await
        .expect(200, "module 3's input")
        .json;
    assert_eq!(
        input["bundles"][0]["input"]["headers"][0]["value"], "Bearer [redacted]",
        "{input}"
    );
    let issued = mock.issued().await;
    assert_eq!(
        recorder.last().authorization.as_deref(),
        Some(format!("Bearer {}", issued[0]).as_str()),
        "the later module got the real token"
    );

    // A token the provider no longer accepts fails the test, with the way out.
    mock.invalidate_access_tokens().await;
    let refused = api.post("/api/connections/crm/test", &json!({})).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(
        refused.json["error"]["code"], "test_failed",
        "{}",
        refused.text
    );
    assert!(
        refused.text.contains("connect it again"),
        "{}",
        refused.text
    );

    let texts = [
        api.get("/api/connections").await.text,
        integrations.text,
        tested.text,
        refused.text,
        api.get(&format!(
            "/api/executions/{}",
            execution["id"].as_str().unwrap()
        ))
        .await
        .text,
        log.to_string(),
        page.text,
    ];
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut secrets = issued;
    secrets.push(CLIENT_SECRET.to_string());
    assert_nowhere(&service, &db, &texts, &secrets);
}

async fn csrf_is_refused(db: TestDb) {
    let mock = MockOAuth::start().await;
    let service = serve_with(&db, &json!([mock.integration("crm", "bot", "auth_code")])).await;
    let api = &service.api;
    let client = no_redirects();

    // A state nobody issued.
    let forged = Reply::from(
        client
            .get(format!(
                "{}/oauth/callback?code=abc&state=made-up-state",
                service.base
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(forged.status, 400, "{}", forged.text);
    let missing = Reply::from(
        client
            .get(format!("{}/oauth/callback?code=abc", service.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(missing.status, 400);
    assert!(listed(api, "crm").await.is_none(), "nothing was stored");
    let unknown = Reply::from(
        client
            .get(format!("{}/oauth/start/nope", service.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);

    // The user said no at the provider: 400, and the state is spent.
    let start = Reply::from(
        client
            .get(format!("{}/oauth/start/crm", service.base))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(302, "start");
    let location = reqwest::Url::parse(start.header("location").unwrap()).unwrap();
    let state = location
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let denied = Reply::from(
        client
            .get(format!("{}/oauth/callback", service.base))
            .query(&[("error", "access_denied"), ("state", state.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(denied.status, 400, "{}", denied.text);
    assert!(denied.text.contains("access_denied"), "{}", denied.text);
    let after = Reply::from(
        client
            .get(format!("{}/oauth/callback", service.base))
            .query(&[("code", "abc"), ("state", state.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(after.status, 400, "{}", after.text);
    assert!(listed(api, "crm").await.is_none(), "nothing was stored");

    // The real flow step by step, then its callback replayed.
    let start = Reply::from(
        client
            .get(format!("{}/oauth/start/crm", service.base))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(302, "start");
    let authorize = Reply::from(
        client
            .get(start.header("location").unwrap())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(authorize.status, 302, "{}", authorize.text);
    let callback = authorize.header("location").unwrap().to_string();
    assert!(callback.starts_with(&format!("{}/oauth/callback?", service.base)));
    let first = Reply::from(client.get(&callback).send().await.unwrap()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let replay = Reply::from(client.get(&callback).send().await.unwrap()).await;
    assert_eq!(replay.status, 400, "{}", replay.text);
    assert!(replay.text.contains("already used"), "{}", replay.text);
    assert_eq!(
        mock.grants("authorization_code").await,
        1,
        "the replay reached no provider"
    );

    // An established bot connection is not replaced by an unauthenticated start…
    let again = Reply::from(
        client
            .get(format!("{}/oauth/start/crm", service.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(again.status, 401, "{}", again.text);
    // …but is with the API token, or with the signed connect link.
    let with_token = Reply::from(
        client
            .get(format!("{}/oauth/start/crm", service.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(with_token.status, 302, "{}", with_token.text);
    let integrations = api.get("/api/integrations").await.expect(200, "list").json;
    let connect = integrations["integrations"][0]["connectUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let signed = Reply::from(client.get(&connect).send().await.unwrap()).await;
    assert_eq!(signed.status, 302, "{}", signed.text);
    let tampered = connect.replace("sig=", "sig=0");
    let refused = Reply::from(client.get(&tampered).send().await.unwrap()).await;
    assert_eq!(refused.status, 401, "{}", refused.text);
}

async fn user_links_and_token_events(db: TestDb) {
    let mock = MockOAuth::start().await;
    // The google preset, its endpoints pointed at the mock.
    let google = json!({
        "provider": "google", "context": "user", "scope": "email profile",
        "client_id": "switchyard-test", "client_secret": CLIENT_SECRET,
        "authorize_url": format!("{}/authorize", mock.issuer),
        "token_url": format!("{}/token", mock.issuer),
        "userinfo_url": format!("{}/userinfo", mock.issuer),
    });
    let service = serve_with(&db, &json!([google])).await;
    let api = &service.api;

    // The link, from the module.
    let linker = api
        .create(&json!({
            "name": "link",
            "flow": [{"id": 1, "module": "tokens:OAuthLink",
                      "mapper": {"integration": "google", "user": "user-42"}}]
        }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let execution = run_now(api, &linker).await;
    assert_eq!(execution["status"], "success", "{execution}");
    let log = api.log(execution["id"].as_str().unwrap()).await;
    let link = log[0]["output"]["url"].as_str().unwrap().to_string();
    assert!(
        link.starts_with(&format!("{}/oauth/start/google?user=user-42", service.base)),
        "{link}"
    );

    // The scenario that listens for token:google.
    let (watcher, _) = api
        .create_active(&json!({
            "name": "welcome",
            "flow": [
                {"id": 1, "module": "tokens:WatchTokenEvents",
                 "parameters": {"integration": "google"}},
                {"id": 2, "module": "tokens:GetTokenInfo", "mapper": {"token": "{{user.tokens.google}}"}},
                {"id": 3, "module": "tokens:GetFullToken", "mapper": {"token": "{{1.token}}"}},
                {"id": 4, "module": "util:SetVariable2",
                 "mapper": {"name": "who", "scope": "roundtrip", "value": "{{user.id}} via {{user.tokens.google}}"}}
            ]
        }))
        .await;

    // A link for another user made by editing this one is refused.
    let forged = open(&link.replace("user-42", "user-43")).await;
    assert_eq!(forged.status, 400, "{}", forged.text);

    let page = open(&link).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let connection = listed(api, "google:user-42")
        .await
        .expect("the user's token");
    assert_eq!(connection["context"], "user");
    assert_eq!(connection["user"], "user-42");
    assert_eq!(connection["provider"], "google");

    let runs = api.all_finished(&watcher, 1, 30).await;
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["status"], "success", "{run}");
    let log = api.log(run["id"].as_str().unwrap()).await;
    assert_eq!(log[0]["output"]["event"], "token:google");
    assert_eq!(log[0]["output"]["token"], connection["id"]);
    assert_eq!(log[0]["output"]["user"], "user-42");
    let info = &log[1]["output"];
    assert_eq!(info["first_name"], "Ada", "{info}");
    assert_eq!(info["last_name"], "Lovelace");
    assert_eq!(info["email"], "ada@example.com");
    assert_eq!(info["phone"], "+44 20 7946 0000");
    assert_eq!(info["urls"]["picture"], "https://example.com/ada.png");
    let full = &log[2]["output"];
    assert_eq!(full["credentials"]["access_token"], "[redacted]", "{full}");
    assert_eq!(full["credentials"]["refresh_token"], "[redacted]");
    assert_eq!(full["alias"], "google");
    let who = format!("user-42 via {}", connection["id"].as_str().unwrap());
    assert_eq!(log[3]["output"]["who"], who.as_str(), "{log}");

    let texts = [log.to_string(), api.get("/api/connections").await.text];
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_nowhere(&service, &db, &texts, &mock.issued().await);
}

async fn refresh_single_flight(db: TestDb) {
    let mock = MockOAuth::start().await;
    let service = serve_with(&db, &json!([mock.integration("crm", "bot", "auth_code")])).await;
    let api = &service.api;
    // Issued to live 4 s: refreshed once half of that has passed.
    mock.set_expires_in(4).await;
    let page = open(&format!("{}/oauth/start/crm", service.base)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    mock.set_expires_in(3600).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // 50 concurrent executions meet the expired token: one refresh.
    let mut blueprint = resource_scenario(&mock, "crm");
    blueprint["flow"].as_array_mut().unwrap().insert(
        0,
        json!({"id": 9, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}}),
    );
    blueprint["flow"][1]["mapper"]["url"] =
        json!(format!("{}/resource?n={{{{9.n}}}}", mock.control));
    let (id, hook) = api.create_active(&blueprint).await;
    let hook = service.url(&hook.unwrap());
    let client = reqwest::Client::new();
    let sends = (0..50).map(|n| {
        let (client, hook) = (client.clone(), hook.clone());
        async move { hook_json(&client, &hook, &json!({"n": n})).await }
    });
    for reply in futures::future::join_all(sends).await {
        assert!(reply.status.is_success(), "{}", reply.text);
    }
    let runs = api.all_finished(&id, 50, 60).await;
    let failed: Vec<&Value> = runs.iter().filter(|r| r["status"] != "success").collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(mock.grants("refresh_token").await, 1, "exactly one refresh");
    assert!(
        listed(api, "crm").await.unwrap()["expiresAt"]
            .as_str()
            .is_some()
    );

    // A token the resource refuses (401) is refreshed once and the request sent again.
    mock.invalidate_access_tokens().await;
    let single = api.create(&resource_scenario(&mock, "crm")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let execution = run_now(api, &single).await;
    assert_eq!(execution["status"], "success", "{execution}");
    assert_eq!(mock.grants("refresh_token").await, 2);

    // A revoked refresh token: needs_reauth, and runs fail visibly.
    mock.revoke_refresh_tokens().await;
    mock.invalidate_access_tokens().await;
    let execution = run_now(api, &single).await;
    assert_eq!(execution["status"], "error", "{execution}");
    assert_eq!(
        execution["error"]["name"], "InvalidAccessTokenError",
        "{execution}"
    );
    assert_eq!(listed(api, "crm").await.unwrap()["status"], "needs_reauth");
    let again = run_now(api, &single).await;
    assert_eq!(again["error"]["name"], "InvalidAccessTokenError");
    assert_eq!(
        mock.stats().await["refused"],
        1,
        "no refresh is tried again"
    );
    let integrations = api.get("/api/integrations").await.json;
    assert_eq!(integrations["integrations"][0]["status"], "needs_reauth");
    // Connecting again repairs it (the designer's browser, with the signed link).
    let connect = integrations["integrations"][0]["connectUrl"]
        .as_str()
        .unwrap();
    assert_eq!(open(connect).await.status, 200);
    assert_eq!(listed(api, "crm").await.unwrap()["status"], "connected");
    assert_eq!(run_now(api, &single).await["status"], "success");

    let texts = [
        execution.to_string(),
        api.get("/api/connections").await.text,
    ];
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_nowhere(&service, &db, &texts, &mock.issued().await);
}

async fn client_credentials_and_secrets(db: TestDb) {
    let mock = MockOAuth::start().await;
    let secret_value = common::connections::planted("secret");
    let service = serve_with(
        &db,
        &json!([
            mock.integration("machine", "bot", "client_credentials"),
            {"provider": "secret", "alias": "myapi_key", "context": "bot",
             "description": "API key for the test"}
        ]),
    )
    .await;
    let api = &service.api;

    // Connected on first use; re-requested when it expires (at half its 4 s life).
    mock.set_expires_in(4).await;
    let id = api.create(&resource_scenario(&mock, "machine")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(run_now(api, &id).await["status"], "success");
    assert_eq!(mock.grants("client_credentials").await, 1);
    let connection = listed(api, "machine").await.unwrap();
    assert_eq!(connection["status"], "connected");
    mock.set_expires_in(3600).await;
    assert_eq!(run_now(api, &id).await["status"], "success");
    assert_eq!(
        mock.grants("client_credentials").await,
        1,
        "used while fresh"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(run_now(api, &id).await["status"], "success");
    assert_eq!(
        mock.grants("client_credentials").await,
        2,
        "the expired token was re-requested"
    );
    assert_eq!(run_now(api, &id).await["status"], "success");
    assert_eq!(
        mock.grants("client_credentials").await,
        2,
        "and then reused"
    );

    // A secret: stored through the API, read only through getAccessToken.
    let unknown = api.put("/api/secrets/nope", &json!({"value": "x"})).await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    let empty = api
        .put("/api/secrets/myapi_key", &json!({"value": ""}))
        .await;
    assert_eq!(empty.status, 422, "{}", empty.text);
    let stored = api
        .put("/api/secrets/myapi_key", &json!({"value": secret_value}))
        .await
        .expect(200, "put secret");
    assert_eq!(stored.json["kind"], "secret");
    // Its test says it is stored and opens, and shows nothing of it.
    let tested = api
        .post("/api/connections/myapi_key/test", &json!({}))
        .await
        .expect(200, "test the secret");
    assert!(
        tested.text.contains("is stored and opens"),
        "{}",
        tested.text
    );
    assert!(
        !tested.text.contains(&secret_value),
        "the secret is in the test's answer"
    );
    let (recorder, recorder_url) = common::connections::Recorder::start().await;
    let use_secret = api
        .create(&json!({
            "name": "secret",
            "flow": [
                {"id": 1, "module": "tokens:GetAccessToken", "mapper": {"token": "myapi_key"}},
                {"id": 2, "module": "http:ActionSendData", "version": 3,
                 "mapper": {"url": format!("{recorder_url}/s"), "method": "get",
                            "headers": [{"name": "X-Api-Key", "value": "{{1.accessToken}}"}]}}
            ]
        }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let execution = run_now(api, &use_secret).await;
    assert_eq!(execution["status"], "success", "{execution}");
    assert_eq!(
        recorder.last().api_key_header.as_deref(),
        Some(secret_value.as_str())
    );
    let log = api.log(execution["id"].as_str().unwrap()).await;
    assert_eq!(log[0]["output"]["accessToken"], "[redacted]");

    // deleteToken: true once, then false.
    let delete = api
        .create(&json!({
            "name": "delete",
            "flow": [{"id": 1, "module": "tokens:DeleteToken", "mapper": {"token": "myapi_key"}}]
        }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let first = run_now(api, &delete).await;
    assert_eq!(
        api.log(first["id"].as_str().unwrap()).await[0]["output"]["deleted"],
        true
    );
    let second = run_now(api, &delete).await;
    assert_eq!(
        api.log(second["id"].as_str().unwrap()).await[0]["output"]["deleted"],
        false
    );

    let texts = [
        log.to_string(),
        stored.text,
        api.get("/api/connections").await.text,
    ];
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut secrets = mock.issued().await;
    secrets.push(secret_value);
    assert_nowhere(&service, &db, &texts, &secrets);
}

/// An RSA key pair made by `openssl`: (private PKCS#8 PEM, public PEM).
fn rsa_key_pair(dir: &std::path::Path) -> (String, String) {
    let private = dir.join("sa.pem");
    let public = dir.join("sa.pub.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl")
        .success();
    assert!(ok, "openssl genpkey");
    let ok = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .expect("openssl")
        .success();
    assert!(ok, "openssl pkey");
    (
        std::fs::read_to_string(private).unwrap(),
        std::fs::read_to_string(public).unwrap(),
    )
}

async fn service_account(db: TestDb) {
    let keys = tempfile::tempdir().unwrap();
    let (private_pem, public_pem) = rsa_key_pair(keys.path());
    // Google's token endpoint, as far as the JWT-bearer grant goes: the assertion must be
    // RS256-signed by the key, for the right audience and scope.
    let minted: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = minted.clone();
    let decoding = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap();
    let audience: Arc<Mutex<String>> = Arc::default();
    let expected_audience = audience.clone();
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(
            move |axum::Form(form): axum::Form<std::collections::HashMap<String, String>>| {
                let (seen, decoding, audience) =
                    (seen.clone(), decoding.clone(), expected_audience.clone());
                async move {
                    if form.get("grant_type").map(String::as_str)
                        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
                    {
                        return (axum::http::StatusCode::BAD_REQUEST,
                                axum::Json(json!({"error": "unsupported_grant_type"})));
                    }
                    let mut validation =
                        jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
                    validation.set_audience(&[audience.lock().unwrap().clone()]);
                    match jsonwebtoken::decode::<Value>(
                        form.get("assertion").map(String::as_str).unwrap_or(""),
                        &decoding,
                        &validation,
                    ) {
                        Ok(token) => {
                            seen.lock().unwrap().push(token.claims.clone());
                            let n = seen.lock().unwrap().len();
                            (axum::http::StatusCode::OK, axum::Json(json!({
                                "access_token": format!("ya29.minted-{n}-{}", uuid::Uuid::new_v4().simple()),
                                "expires_in": 3599, "token_type": "Bearer"})))
                        }
                        Err(e) => (axum::http::StatusCode::BAD_REQUEST,
                                   axum::Json(json!({"error": "invalid_grant",
                                                     "error_description": e.to_string()}))),
                    }
                }
            },
        ),
    );
    let addr = common::server::serve(app).await;
    let token_uri = format!("http://{addr}/token");
    *audience.lock().unwrap() = token_uri.clone();

    let service = serve_with(
        &db,
        &json!([{"provider": "google_service_account", "context": "bot", "alias": "bigquery",
                 "scope": "https://www.googleapis.com/auth/bigquery https://www.googleapis.com/auth/drive.readonly",
                 "description": "BigQuery"}]),
    )
    .await;
    let api = &service.api;
    let key = json!({
        "type": "service_account", "project_id": "switchyard-test",
        "private_key_id": "k1", "private_key": private_pem,
        "client_email": "robot@switchyard-test.iam.gserviceaccount.com",
        "token_uri": token_uri,
    });
    let bad = api
        .put(
            "/api/secrets/bigquery",
            &json!({"value": {"client_email": "x"}}),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert!(bad.text.contains("value.private_key"), "{}", bad.text);
    let stored = api
        .put("/api/secrets/bigquery", &json!({"value": key.to_string()}))
        .await
        .expect(200, "put the key");
    assert_eq!(stored.json["kind"], "service_account");
    // Its test mints a token with the key.
    let tested = api
        .post("/api/connections/bigquery/test", &json!({}))
        .await
        .expect(200, "test the service account");
    assert!(
        tested.text.contains("a token was minted"),
        "{}",
        tested.text
    );

    let id = api
        .create(&json!({
            "name": "bq",
            "flow": [
                {"id": 1, "module": "tokens:GetAccessToken", "mapper": {"token": "bigquery"}},
                {"id": 2, "module": "tokens:GetFullToken", "mapper": {"token": "bigquery"}}
            ]
        }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let first = run_now(api, &id).await;
    assert_eq!(first["status"], "success", "{first}");
    let second = run_now(api, &id).await;
    assert_eq!(second["status"], "success", "{second}");
    let claims = minted.lock().unwrap().clone();
    assert_eq!(claims.len(), 1, "the token is cached until it expires");
    assert_eq!(
        claims[0]["iss"],
        "robot@switchyard-test.iam.gserviceaccount.com"
    );
    assert_eq!(
        claims[0]["scope"],
        "https://www.googleapis.com/auth/bigquery https://www.googleapis.com/auth/drive.readonly"
    );
    let log = api.log(first["id"].as_str().unwrap()).await;
    assert_eq!(log[0]["output"]["accessToken"], "[redacted]", "{log}");
    assert_eq!(
        log[1]["output"]["credentials"]["key"]["private_key"],
        "[redacted]"
    );
    let texts = [
        log.to_string(),
        stored.text,
        api.get("/api/connections").await.text,
    ];
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let key_body: String = private_pem.lines().nth(1).unwrap_or_default().to_string();
    assert_nowhere(&service, &db, &texts, &[key_body]);
}

/// Token calls go through the egress guard: with the default policy (no loopback), connecting
/// a client-credentials integration whose token endpoint is on 127.0.0.1 is refused before any
/// request, with an error naming the host, and nothing is stored; the provider sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_calls_respect_the_egress_guard() {
    use switchyard::connections::{KeySource, Keyring, MasterKey, OAuthSettings, Vault};
    let mock = MockOAuth::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = switchyard::store::Store::open_sqlite(dir.path())
        .await
        .unwrap();
    let file = dir.path().join("integrations.json");
    std::fs::write(
        &file,
        json!([mock.integration("machine", "bot", "client_credentials")]).to_string(),
    )
    .unwrap();
    let vault = Vault::new(
        store,
        Keyring::new(MasterKey::generate(), KeySource::Environment),
    )
    .with_integrations(OAuthSettings {
        integrations: switchyard::connections::load_files(&[file]).unwrap(),
        public_url: reqwest::Url::parse("http://127.0.0.1:8080").unwrap(),
        egress: Default::default(),
    })
    .unwrap();
    let refused = vault
        .connect_client_credentials("machine")
        .await
        .unwrap_err();
    let message = refused.to_string();
    assert!(message.contains("127.0.0.1"), "{message}");
    assert!(message.contains("machine"), "{message}");
    assert!(!message.contains(CLIENT_SECRET));
    assert_eq!(mock.grants("client_credentials").await, 0);
    assert!(vault.list().await.unwrap().is_empty(), "nothing stored");
}
