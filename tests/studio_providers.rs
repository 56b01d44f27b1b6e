//! The seeds' integrations files and the studio providers, end to end through the binary:
//! the files of `tests/data/integrations/` (copied from the seeds as written) start `serve`
//! (`/health` 200) and list their integrations with what each lacks; `integrations check` names
//! the missing client credentials and their environment variables, and finds them there;
//! `connections add NAME --app twilio --field …` is checked against the app's connection
//! schema (each problem naming its field) and tested against a fake of Twilio's REST API that
//! checks basic auth as Twilio does; and in a real browser, `/connect` shows each studio
//! provider as a card with its form, the Twilio one saved (tested first) under its alias —
//! screenshots in `docs/console/`. No page, output or error shows a secret.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use base64::Engine as _;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const TOKEN: &str = "studio-providers-test-token";
const SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-auth-token-s3cret";

fn seeds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/integrations")
}

fn seed(name: &str) -> String {
    seeds().join(name).display().to_string()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `switchyard serve` on a free port with `args`; its base URL once it listens.
fn serve(data: &Path, args: &[&str], env: &[(&str, &str)]) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir"])
        .arg(data)
        .args(args)
        .env("SWITCHYARD_API_TOKEN", TOKEN)
        .env("SWITCHYARD_ALLOW_EGRESS", "127.0.0.1")
        .env_remove("SWITCHYARD_DATABASE_URL")
        .env_remove("SWITCHYARD_PUBLIC_URL")
        .env_remove("SWITCHYARD_APPS_DIR")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchyard serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut said = Vec::new();
    let base = loop {
        let Some(Ok(line)) = lines.next() else {
            panic!("serve exited before listening: {}", said.join("\n"));
        };
        if let Some(url) = line.strip_prefix("switchyard listening on ") {
            break url.trim().to_string();
        }
        said.push(line);
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (Killed(child), base)
}

fn switchyard(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env_remove("SWITCHYARD_DATABASE_URL")
        .env_remove("SWITCHYARD_APPS_DIR")
        .env_remove("SWITCHYARD_OAUTH_GOOGLE_CLIENT_ID")
        .env_remove("SWITCHYARD_OAUTH_FACEBOOK_CLIENT_ID")
        .env_remove("SWITCHYARD_OAUTH_LINKEDIN_CLIENT_ID")
        .envs(env.iter().copied())
        .output()
        .expect("run switchyard")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn integrations(base: &str) -> Vec<Value> {
    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let listed: Value = reqwest::Client::new()
        .get(format!("{base}/api/integrations"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    listed["integrations"].as_array().cloned().unwrap()
}

fn find<'a>(list: &'a [Value], alias: &str) -> &'a Value {
    list.iter()
        .find(|i| i["alias"] == alias)
        .unwrap_or_else(|| panic!("no integration {alias} in {list:?}"))
}

fn missing(integration: &Value) -> Vec<String> {
    integration["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["field"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_integrations_files_serve_as_written() {
    // Seed 000: its main example and every snippet, together (twilio is in both: one card).
    let data = tempfile::tempdir().unwrap();
    let main = seed("seed-000-main.yaml");
    let studio = seed("seed-000-studio.yaml");
    let (_server, base) = serve(
        data.path(),
        &["--integrations", &main, "--integrations", &studio],
        &[],
    );
    let list = integrations(&base).await;
    let aliases: Vec<&str> = list.iter().map(|i| i["alias"].as_str().unwrap()).collect();
    assert_eq!(
        aliases,
        [
            "google",
            "facebook",
            "linkedin",
            "twilio",
            "dialogflow",
            "mailgun",
            "pushwoosh",
            "dialog",
            "masvoz_sms",
            "bigquery",
            "booking",
            "myapi_key"
        ]
    );
    for alias in ["google", "facebook", "linkedin"] {
        let entry = find(&list, alias);
        assert_eq!(missing(entry), ["client_id", "client_secret"], "{alias}");
        let how = entry["missing"][0]["how"].as_str().unwrap();
        let var = format!("SWITCHYARD_OAUTH_{}_CLIENT_ID", alias.to_uppercase());
        assert!(how.contains(&var), "{how}");
    }
    for (alias, app) in [
        ("twilio", "twilio"),
        ("dialogflow", "dialogflow"),
        ("mailgun", "mailgun"),
        ("pushwoosh", "pushwoosh"),
        ("dialog", "dialog"),
        ("masvoz_sms", "masvoz-sms"),
    ] {
        let entry = find(&list, alias);
        assert_eq!(entry["flow"], "app_connection", "{alias}");
        assert_eq!(entry["app"], app, "{alias}");
        assert_eq!(entry["status"], "not_connected", "{alias}");
    }
    assert_eq!(
        find(&list, "twilio")["description"],
        "Allow bot to send SMS notifications",
        "the first declaration is kept"
    );
    assert_eq!(find(&list, "booking")["status"], "builtin");
    assert_eq!(find(&list, "booking")["title"], "Booking");
    assert_eq!(missing(find(&list, "bigquery")), ["scope"]);
    assert_eq!(find(&list, "myapi_key")["flow"], "secret");

    // Seed 001, dashes lost as in its copy, with Facebook's client id from the environment.
    let data = tempfile::tempdir().unwrap();
    let (_server, base) = serve(
        data.path(),
        &["--integrations", &seed("seed-001.yaml")],
        &[("SWITCHYARD_OAUTH_FACEBOOK_CLIENT_ID", "fb-client-from-env")],
    );
    let list = integrations(&base).await;
    assert_eq!(list.len(), 2);
    assert_eq!(find(&list, "google")["scope"], "email");
    assert_eq!(
        missing(find(&list, "google")),
        ["client_id", "client_secret"]
    );
    assert_eq!(missing(find(&list, "facebook")), ["client_secret"]);
}

#[test]
fn integrations_check_names_what_is_missing_and_finds_it_in_the_environment() {
    let main = seed("seed-000-main.yaml");
    let out = switchyard(&["integrations", "check", &main], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("google (google · user · auth_code): cannot be connected yet"),
        "{stdout}"
    );
    assert!(
        stdout.contains("missing client_id: add `client_id:` to the entry, or set SWITCHYARD_OAUTH_GOOGLE_CLIENT_ID"),
        "{stdout}"
    );
    assert!(
        stdout.contains("connections add twilio --app twilio --field accountSid=… --field authToken=… --field from=…"),
        "{stdout}"
    );
    let env = [
        ("SWITCHYARD_OAUTH_GOOGLE_CLIENT_ID", "g-id-value"),
        ("SWITCHYARD_OAUTH_FACEBOOK_CLIENT_ID", "f-id-value"),
        ("SWITCHYARD_OAUTH_LINKEDIN_CLIENT_ID", "l-id-value"),
    ];
    let out = switchyard(&["integrations", "check", "--json", &main], &env);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ready"], true);
    assert!(
        !stdout.contains("-id-value"),
        "no value is printed: {stdout}"
    );
    // A file that does not load says where.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("i.yaml");
    std::fs::write(&bad, "- provider: twilio\n  context: user\n").unwrap();
    let out = switchyard(&["integrations", "check", bad.to_str().unwrap()], &[]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("[0].context") && stderr.contains("context: bot"),
        "{stderr}"
    );
}

/// A fake of Twilio's REST API (2010-04-01) as its reference describes it: HTTP basic auth
/// with the account SID and auth token (else 401 with Twilio's error body, code 20003), the
/// account resource, and Messages created from a form body (`To` required: 400, code 21604).
async fn fake_twilio() -> String {
    fn authorized(headers: &HeaderMap, sid: &str) -> bool {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{AUTH_TOKEN}"))
        );
        sid == SID
            && headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == expected)
    }
    fn refused() -> (StatusCode, axum::Json<Value>) {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"code": 20003, "message": "Authenticate",
                              "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401})),
        )
    }
    let app = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{account}",
            get(|UrlPath(account): UrlPath<String>, headers: HeaderMap| async move {
                let sid = account.trim_end_matches(".json");
                if !authorized(&headers, sid) {
                    return refused();
                }
                (
                    StatusCode::OK,
                    axum::Json(json!({"sid": sid, "status": "active", "friendly_name": "Test"})),
                )
            }),
        )
        .route(
            "/2010-04-01/Accounts/{account}/Messages.json",
            post(
                |UrlPath(account): UrlPath<String>,
                 headers: HeaderMap,
                 axum::Form(form): axum::Form<std::collections::HashMap<String, String>>| async move {
                    if !authorized(&headers, &account) {
                        return refused();
                    }
                    let Some(to) = form.get("To") else {
                        return (
                            StatusCode::BAD_REQUEST,
                            axum::Json(json!({"code": 21604, "status": 400,
                                              "message": "A 'To' phone number is required."})),
                        );
                    };
                    (
                        StatusCode::CREATED,
                        axum::Json(json!({"sid": "SM0123456789abcdef0123456789abcdef",
                                          "account_sid": account, "to": to,
                                          "from": form.get("From"), "body": form.get("Body"),
                                          "status": "queued"})),
                    )
                },
            ),
        );
    let app = app.route(
        "/2010-04-01/Accounts/{account}/Calls.json",
        post(
            |UrlPath(account): UrlPath<String>,
             headers: HeaderMap,
             axum::Form(form): axum::Form<std::collections::HashMap<String, String>>| async move {
                if !authorized(&headers, &account) {
                    return refused();
                }
                // One of Url, Twiml or ApplicationSid says what the call does.
                if !["Url", "Twiml", "ApplicationSid"]
                    .iter()
                    .any(|k| form.contains_key(*k))
                {
                    return (
                        StatusCode::BAD_REQUEST,
                        axum::Json(json!({"code": 21205, "status": 400,
                                          "message": "Url parameter is required."})),
                    );
                }
                (
                    StatusCode::CREATED,
                    axum::Json(json!({"sid": "CA0123456789abcdef0123456789abcdef",
                                      "to": form.get("To"), "from": form.get("From"),
                                      "status": "queued"})),
                )
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_add_takes_the_fields_of_the_apps_connection_schema() {
    let twilio = fake_twilio().await;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_string();
    let add = |fields: &[String], test: bool| {
        let mut args: Vec<String> = [
            "connections",
            "--data-dir",
            &dir,
            "--allow-egress",
            "127.0.0.1",
            "add",
            "twilio",
            "--app",
            "twilio",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for f in fields {
            args.push("--field".into());
            args.push(f.clone());
        }
        if !test {
            args.push("--no-test".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = switchyard(&args, &[]);
        (out.status.success(), text(&out.stdout) + &text(&out.stderr))
    };
    let sid = format!("accountSid={SID}");
    let token = format!("authToken={AUTH_TOKEN}");
    let from = "from=+15017122661".to_string();
    let base = format!("baseUrl={twilio}");

    // A field missing, a malformed one, an unknown one: each named, no value repeated.
    let (ok, said) = add(&[sid.clone(), from.clone()], false);
    assert!(
        !ok && said.contains("fields: \"authToken\" is required"),
        "{said}"
    );
    let (ok, said) = add(
        &["accountSid=XY12".into(), token.clone(), from.clone()],
        false,
    );
    assert!(!ok && said.contains("fields.accountSid"), "{said}");
    assert!(!said.contains(AUTH_TOKEN), "{said}");
    let (ok, said) = add(
        &[
            sid.clone(),
            token.clone(),
            from.clone(),
            "colour=red".into(),
        ],
        false,
    );
    assert!(!ok && said.contains("colour"), "{said}");

    // Tested on save against the API: a wrong token is refused with Twilio's message.
    let (ok, said) = add(
        &[
            sid.clone(),
            "authToken=wrong-token".into(),
            from.clone(),
            base.clone(),
        ],
        true,
    );
    assert!(!ok && said.contains("Authenticate"), "{said}");
    assert!(!said.contains("wrong-token"), "{said}");
    let (ok, said) = add(&[sid, token, from, base], true);
    assert!(ok, "{said}");
    assert!(said.contains("stored connection \"twilio\""), "{said}");
    assert!(!said.contains(AUTH_TOKEN), "{said}");

    // The stored connection, named by the alias, sends an SMS: a form body with basic auth;
    // the sender defaults to the connection's.
    let blueprint = json!({"name": "SMS", "flow": [
        {"id": 1, "module": "twilio:SendSMS", "version": 1,
         "parameters": {"__IMTCONN__": "twilio"},
         "mapper": {"to": "+31612345678", "body": "Your table is booked"}}
    ], "metadata": {}});
    let file = data.path().join("sms.json");
    std::fs::write(&file, blueprint.to_string()).unwrap();
    let run = |file: &Path| {
        switchyard(
            &[
                "run",
                file.to_str().unwrap(),
                "--json",
                "--data-dir",
                &dir,
                "--allow-egress",
                "127.0.0.1",
            ],
            &[],
        )
    };
    let out = run(&file);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("SM0123456789abcdef0123456789abcdef"),
        "{stdout}"
    );
    assert!(
        stdout.contains("+15017122661"),
        "the connection's sender: {stdout}"
    );
    assert!(!stdout.contains(AUTH_TOKEN), "{stdout}");
    // A missing recipient is refused before any request, naming the field.
    let mut without_to = blueprint.clone();
    without_to["flow"][0]["mapper"] = json!({"to": "", "body": "x"});
    std::fs::write(&file, without_to.to_string()).unwrap();
    let out = run(&file);
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("to: this field is required"), "{said}");

    // WhatsApp (Twilio's `whatsapp:` prefix on both numbers), a call, and an API call.
    let flow = json!({"name": "Twilio", "flow": [
        {"id": 1, "module": "twilio:SendWhatsApp", "version": 1,
         "parameters": {"__IMTCONN__": "twilio"},
         "mapper": {"to": "+31612345678", "body": "Booked"}},
        {"id": 2, "module": "twilio:MakeACall", "version": 1,
         "parameters": {"__IMTCONN__": "twilio"},
         "mapper": {"to": "+31612345678", "twiml": "<Response><Say>Booked</Say></Response>"}},
        {"id": 3, "module": "twilio:makeApiCall", "version": 1,
         "parameters": {"__IMTCONN__": "twilio"},
         "mapper": {"url": format!("/2010-04-01/Accounts/{SID}.json"), "method": "GET"}}
    ], "metadata": {}});
    std::fs::write(&file, flow.to_string()).unwrap();
    let out = run(&file);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("whatsapp:+31612345678"), "{stdout}");
    assert!(stdout.contains("whatsapp:+15017122661"), "{stdout}");
    assert!(
        stdout.contains("CA0123456789abcdef0123456789abcdef"),
        "{stdout}"
    );
    assert!(stdout.contains("\"active\""), "the account, read: {stdout}");
    // A call without instructions: Twilio's 400 message is the module's error.
    let mut no_twiml = flow.clone();
    no_twiml["flow"] = json!([flow["flow"][1].clone()]);
    no_twiml["flow"][0]["mapper"] = json!({"to": "+31612345678"});
    std::fs::write(&file, no_twiml.to_string()).unwrap();
    let out = run(&file);
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(said.contains("Url parameter is required."), "{said}");
    assert!(said.contains("21205"), "{said}");
    assert!(!said.contains(AUTH_TOKEN), "{said}");
}

// ---------------------------------------------------------------------------------------
// The connect page in a real browser.

async fn start_chromedriver() -> Option<(Killed, String)> {
    let found = Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromedriver is not installed, and CI is set: the browser test must run"
        );
        eprintln!("NOTICE: chromedriver is not installed; the browser test is skipped");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reqwest::get(format!("{url}/status"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some((Killed(child), url))
}

async fn css(client: &Client, selector: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("no element {selector}: {e}"))
}

async fn screenshot(client: &Client, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_studio_providers_cards_in_a_real_browser() {
    let Some((_driver, driver_url)) = start_chromedriver().await else {
        return;
    };
    let twilio = fake_twilio().await;
    let data = tempfile::tempdir().unwrap();
    let (main, studio) = (seed("seed-000-main.yaml"), seed("seed-000-studio.yaml"));
    let (_server, base) = serve(
        data.path(),
        &["--integrations", &main, "--integrations", &studio],
        &[],
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": "/usr/bin/chromium",
               "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                        "--disable-gpu", "--window-size=1360,2400"]}),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver_url)
        .await
        .expect("a browser session");
    let outcome = tokio::spawn(walk(client.clone(), base, twilio)).await;
    let _ = client.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn walk(client: Client, base: String, twilio: String) {
    let client = &client;
    client.goto(&format!("{base}/login")).await.unwrap();
    css(client, "input[name=token]")
        .await
        .send_keys(TOKEN)
        .await
        .unwrap();
    css(client, "form[action='/login'] button")
        .await
        .click()
        .await
        .unwrap();
    css(client, "a[href='/scenarios/new']").await;
    client.goto(&format!("{base}/connect")).await.unwrap();

    // Every studio provider is a card with the form of its app's connection schema.
    for (alias, fields) in [
        ("twilio", &["accountSid", "authToken", "from"][..]),
        ("mailgun", &["apiKey", "domain", "region", "from"][..]),
        ("pushwoosh", &["apiToken", "applicationCode"][..]),
        ("dialog", &["apiKey"][..]),
        ("masvoz_sms", &["username", "password"][..]),
        ("dialogflow", &["value", "projectId", "language"][..]),
    ] {
        for field in fields {
            css(
                client,
                &format!("section.integration[data-alias='{alias}'] form [name='field.{field}']"),
            )
            .await;
        }
    }
    let token_input = css(
        client,
        "section.integration[data-alias='twilio'] [name='field.authToken']",
    )
    .await;
    assert_eq!(
        token_input.attr("type").await.unwrap().as_deref(),
        Some("password")
    );
    // An OAuth entry without client credentials says what is missing and where it goes.
    let google = css(client, "section.integration[data-alias='google'] .missing")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        google.contains("SWITCHYARD_OAUTH_GOOGLE_CLIENT_ID"),
        "{google}"
    );
    let booking = css(client, "section.integration[data-alias='booking']")
        .await
        .text()
        .await
        .unwrap();
    assert!(booking.contains("built in"), "{booking}");
    screenshot(client, "connect-studio-providers").await;

    // Saving the Twilio card: tested against the API first, stored under the alias.
    let card = "section.integration[data-alias='twilio']";
    for (field, value) in [
        ("accountSid", SID),
        ("authToken", AUTH_TOKEN),
        ("from", "+15017122661"),
        ("baseUrl", twilio.as_str()),
    ] {
        let input = css(client, &format!("{card} [name='field.{field}']")).await;
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }
    css(client, &format!("{card} button[type=submit]"))
        .await
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The submit navigates: an element found on the old page may go stale before it is
        // read (WebDriver's StaleElementReference), which is only a reason to look again.
        let status = css(client, &format!("{card} .status"))
            .await
            .text()
            .await
            .unwrap_or_else(|e| format!("(page changing: {e})"));
        if status == "connected" {
            break;
        }
        assert!(Instant::now() < deadline, "twilio card: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = css(client, "tr[data-connection='twilio']")
        .await
        .text()
        .await
        .unwrap();
    assert!(row.contains("twilio"), "{row}");
    let page = client.source().await.unwrap();
    assert!(!page.contains(AUTH_TOKEN), "the token is never shown");
    screenshot(client, "connect-twilio-connected").await;
}
