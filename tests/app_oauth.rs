//! An app defined as data that signs in with OAuth2 (`tests/apps/oauthdemo.json`, loaded
//! through `SWITCHYARD_APPS_DIR`), run end to end by the real binary against the real OAuth2
//! server of the OAuth tests (npm `oauth2-mock-server`, `tests/common/oauth.rs`), whose
//! protected `/resource` stands in for the app's API through `--app-base-url` /
//! `SWITCHYARD_APP_BASE_URLS`:
//!
//! - `oauth2_app_end_to_end`: tokens obtained with the provider's authorization code grant
//!   are stored headless (`connections add --access-token --refresh-token --integration`),
//!   after the connection type's test request accepted them (a refused token is not stored,
//!   `--no-test` skips the test); `run --integrations` calls the API with the token; a token
//!   the API refuses (401) is refreshed once and the request resent; 16 runs at once that
//!   meet a refused token refresh it exactly once; an expiring token is refreshed before
//!   use; a module needing a scope the token lacks fails with `InvalidAccessTokenError`
//!   naming it; a revoked refresh token fails the module with `InvalidAccessTokenError` and
//!   marks the connection `needs_reauth`, shown so on the console's connect page; no token is
//!   in any output, page or data file.
//! - `oauth2_app_connected_in_a_browser`: `connections authorize` prints the provider's URL
//!   asking for the union of the scopes the app's type, its modules and the integration need,
//!   and returns once the running `serve` stored the connection from the callback (or says no
//!   callback came); the console's connect page offers the app's type with the integrations
//!   that can connect it, and its Reconnect button gives the stored connection new tokens;
//!   `POST /api/authorizations` answers the URL and refuses a wrong integration or body at its
//!   path; the connection made in the browser then runs the app's module.
//! - `service_account_app`: an app's `service_account` connection stored from a JSON key
//!   (`connections add --service-account-key`) after a token minted with it (a JWT-bearer
//!   grant whose RS256 assertion a local token endpoint verifies, for the scopes of the type
//!   and its modules) passed the type's test request; modules send the minted token; a key
//!   the endpoint refuses is not stored; no key or token in the data files.
//! - `run_lists_every_missing_reference`: `switchyard run` refuses a scenario naming a
//!   missing connection, a missing data store and a connection of the wrong kind, listing
//!   every one at its JSON path.
//! - `activation_lists_every_missing_reference`: `POST /api/scenarios/{id}/activate` answers
//!   422 with every problem at its path (the console's Activate button is refused alike), and
//!   the scenario stays inactive.

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::{Value, json};

use common::oauth::MockOAuth;
use harness::{Backend, TestDb, binary};

const CLIENT_ID: &str = "switchyard-test";
const CLIENT_SECRET: &str = "test-client-secret-5f1c";
const REDIRECT: &str = "http://127.0.0.1:9/callback";

fn apps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps")
}

/// The binary with the test app loaded, loopback allowed and the app's API at `api`.
fn switchyard(api: &str, args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env("SWITCHYARD_APPS_DIR", apps_dir())
        .env("SWITCHYARD_ALLOW_EGRESS", "127.0.0.1")
        .env("SWITCHYARD_APP_BASE_URLS", format!("oauthdemo={api}"))
        .env("SWITCHYARD_LOG", "info")
        .env_remove("SWITCHYARD_DATABASE_URL")
        .env_remove("SWITCHYARD_MASTER_KEY")
        .stdin(Stdio::null());
    command
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh access and refresh token from the provider's authorization code grant (for the
/// scopes `openid profile email`; the test server's token answer does not list them).
async fn tokens(mock: &MockOAuth) -> (String, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let authorize = client
        .get(format!("{}/authorize", mock.issuer))
        .query(&[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("scope", "openid profile email"),
            ("state", "test-state"),
        ])
        .send()
        .await
        .unwrap();
    let location = authorize
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("authorize answered {}", authorize.status()))
        .to_str()
        .unwrap()
        .to_string();
    let code = reqwest::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    let token: Value = client
        .post(format!("{}/token", mock.issuer))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let field = |name: &str| {
        token[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {token}"))
            .to_string()
    };
    (field("access_token"), field("refresh_token"))
}

/// The report of `switchyard run FILE --json` with the stored connections of `data`.
fn run(api: &str, file: &Path, data: &Path, integrations: &Path) -> (Value, Output) {
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
    )
    .output()
    .unwrap();
    let (stdout, stderr) = texts(&out);
    let report = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|_| panic!("run printed no report: {stdout}\n{stderr}"));
    (report, out)
}

fn scenario(dir: &Path, name: &str, module: &str, connection: &str) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    let blueprint = json!({
        "name": name,
        "flow": [{"id": 1, "module": module, "version": 1,
                  "parameters": {"__IMTCONN__": connection},
                  "mapper": {"n": name}}],
        "metadata": {"scenario": {"roundtrips": 1}}
    });
    std::fs::write(&path, serde_json::to_vec(&blueprint).unwrap()).unwrap();
    path
}

fn listed(api: &str, data: &Path, name: &str) -> Value {
    let out = switchyard(
        api,
        &[
            "connections",
            "list",
            "--json",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).expect("list json");
    list["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Signs in to the console at `base` with the API token; the session cookie.
async fn sign_in(client: &reqwest::Client, base: &str, token: &str) -> String {
    let login = client
        .post(format!("{base}/login"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// The console page at `path`, signed in with `cookie`.
async fn console_page(client: &reqwest::Client, base: &str, path: &str, cookie: &str) -> String {
    client
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The CSRF token a console page's forms carry.
fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF token in {page}"))
        .to_string()
}

/// The console's connect page of `serve` on `data`, signed in with the API token.
async fn connect_page(api: &str, data: &Path) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let token = "app-oauth-test-token-0123456789abcdef";
    let mut serve = switchyard(
        api,
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--port",
            &port.to_string(),
        ],
    )
    .env("SWITCHYARD_API_TOKEN", token)
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !client
        .get(format!("{base}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let cookie = sign_in(&client, &base, token).await;
    let page = console_page(&client, &base, "/connect", &cookie).await;
    let _ = serve.kill();
    let _ = serve.wait();
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_app_end_to_end() {
    let mock = MockOAuth::start().await;
    let api = mock.control.clone();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let integrations = dir.path().join("integrations.json");
    std::fs::write(
        &integrations,
        serde_json::to_vec(&json!([mock.integration("demo", "bot", "auth_code")])).unwrap(),
    )
    .unwrap();
    let mut outputs: Vec<String> = Vec::new();
    let mut keep = |out: &Output| {
        let (stdout, stderr) = texts(out);
        outputs.push(stdout);
        outputs.push(stderr);
    };
    let add = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "connections",
            "add",
            name,
            "--app",
            "oauthdemo",
            "--data-dir",
            data.to_str().unwrap(),
            "--integrations",
            integrations.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        switchyard(&api, &args).output().unwrap()
    };

    // A token the provider never issued is refused by the type's test request: not stored.
    let planted = format!("planted-{}", uuid::Uuid::new_v4().simple());
    let out = add("bogus", &["--access-token", &planted]);
    keep(&out);
    assert_ne!(out.status.code(), Some(0), "{:?}", texts(&out));
    assert!(
        texts(&out).1.contains("failed its test"),
        "{:?}",
        texts(&out)
    );
    assert!(texts(&out).1.contains("InvalidAccessTokenError"));
    assert_eq!(listed(&api, &data, "bogus"), Value::Null, "not stored");
    // --no-test stores it unchecked.
    let out = add("unchecked", &["--access-token", &planted, "--no-test"]);
    keep(&out);
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    // A refresh token needs the integration that issued it.
    let out = switchyard(
        &api,
        &[
            "connections",
            "add",
            "orphan",
            "--app",
            "oauthdemo",
            "--access-token",
            &planted,
            "--refresh-token",
            "r",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    keep(&out);
    assert_ne!(out.status.code(), Some(0));
    assert!(texts(&out).1.contains("integration"), "{:?}", texts(&out));

    // Connect: tokens from the provider, checked by the test request, stored sealed.
    let (access, refresh) = tokens(&mock).await;
    let scope = "openid profile email";
    let out = add(
        "demo-conn",
        &[
            "--access-token",
            &access,
            "--refresh-token",
            &refresh,
            "--integration",
            "demo",
            "--expires-in",
            "3600",
            "--scope",
            scope,
        ],
    );
    keep(&out);
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    let row = listed(&api, &data, "demo-conn");
    assert_eq!(row["kind"], "oauth2", "{row}");
    assert_eq!(row["app"], "oauthdemo", "{row}");

    // Call.
    let get = scenario(dir.path(), "get", "oauthdemo:GetResource", "demo-conn");
    let (report, out) = run(&api, &get, &data, &integrations);
    keep(&out);
    assert_eq!(report["status"], "success", "{report}");
    let output = &report["log"][0]["output"];
    assert_eq!(output["query"]["n"], "get", "{report}");
    assert_eq!(mock.grants("refresh_token").await, 0);

    // A token the API refuses: refreshed once, the request resent.
    mock.invalidate_access_tokens().await;
    let (report, out) = run(&api, &get, &data, &integrations);
    keep(&out);
    assert_eq!(report["status"], "success", "{report} {:?}", texts(&out).1);
    assert_eq!(mock.grants("refresh_token").await, 1);

    // 16 runs at once meet a refused token: one refresh between them.
    mock.invalidate_access_tokens().await;
    let children: Vec<_> = (0..16)
        .map(|_| {
            switchyard(
                &api,
                &[
                    "run",
                    get.to_str().unwrap(),
                    "--json",
                    "--data-dir",
                    data.to_str().unwrap(),
                    "--integrations",
                    integrations.to_str().unwrap(),
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        keep(&out);
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("no report: {:?}", texts(&out)));
        assert_eq!(report["status"], "success", "{report}");
    }
    assert_eq!(
        mock.grants("refresh_token").await,
        2,
        "exactly one refresh for 16 concurrent calls"
    );

    // A module needing a scope the token was not granted.
    let admin = scenario(dir.path(), "admin", "oauthdemo:AdminResource", "demo-conn");
    let (report, out) = run(&api, &admin, &data, &integrations);
    keep(&out);
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(
        report["error"]["name"], "InvalidAccessTokenError",
        "{report}"
    );
    let message = report["error"]["message"].as_str().unwrap();
    assert!(message.contains("scope admin"), "{message}");

    // An expiring token is refreshed before it is used (half its life of 2 s).
    let (access2, refresh2) = tokens(&mock).await;
    let out = add(
        "short",
        &[
            "--access-token",
            &access2,
            "--refresh-token",
            &refresh2,
            "--integration",
            "demo",
            "--expires-in",
            "2",
        ],
    );
    keep(&out);
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    let before = mock.grants("refresh_token").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let short = scenario(dir.path(), "short", "oauthdemo:GetResource", "short");
    let (report, out) = run(&api, &short, &data, &integrations);
    keep(&out);
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(mock.grants("refresh_token").await, before + 1);

    // A revoked refresh token: the module fails, the connection needs to be connected again.
    mock.revoke_refresh_tokens().await;
    mock.invalidate_access_tokens().await;
    let (report, out) = run(&api, &get, &data, &integrations);
    keep(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(
        report["error"]["name"], "InvalidAccessTokenError",
        "{report}"
    );
    assert_eq!(listed(&api, &data, "demo-conn")["status"], "needs_reauth");

    // The connect page shows it as needing to be connected again.
    let page = connect_page(&api, &data).await;
    let row = page
        .split("<tr data-connection=\"demo-conn\">")
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap_or_else(|| panic!("no demo-conn row in /connect"));
    assert!(row.contains("status-needs_reauth"), "{row}");
    assert!(row.contains("needs re-authorisation"), "{row}");
    assert!(
        row.contains("action=\"/connect/authorize\"") && row.contains(">Reconnect<"),
        "a Reconnect button: {row}"
    );
    outputs.push(page);

    // No token anywhere: outputs, logs, data files.
    let mut secrets = mock.issued().await;
    secrets.push(planted);
    for secret in &secrets {
        for text in &outputs {
            assert!(!text.contains(secret.as_str()), "a token is in an output");
        }
        let files = common::connections::files_containing(&data, secret);
        assert!(files.is_empty(), "a token is in {files:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_lists_every_missing_reference() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let api = "http://127.0.0.1:9";
    let out = switchyard(
        api,
        &[
            "connections",
            "add",
            "ops",
            "--app",
            "http",
            "--token",
            "t-1234567",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    let file = dir.path().join("refs.json");
    let blueprint = json!({
        "name": "refs",
        "flow": [
            {"id": 1, "module": "oauthdemo:GetResource", "version": 1,
             "parameters": {"__IMTCONN__": "nowhere"}, "mapper": {}},
            {"id": 2, "module": "datastore:GetRecord", "version": 1,
             "parameters": {"datastore": "no-such-store"}, "mapper": {"key": "k"}},
            {"id": 3, "module": "http:ActionSendDataBasicAuth", "version": 3,
             "parameters": {"__IMTCONN__": "ops"},
             "mapper": {"url": "http://127.0.0.1:9/x", "method": "get"}},
            {"id": 4, "module": "oauthdemo:GetResource", "version": 1,
             "parameters": {"__IMTCONN__": "ops"}, "mapper": {}}
        ]
    });
    std::fs::write(&file, serde_json::to_vec(&blueprint).unwrap()).unwrap();
    let out = switchyard(
        api,
        &[
            "run",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("  flow")).collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    assert!(
        lines[0].starts_with("  flow[0].parameters.__IMTCONN__: ") && lines[0].contains("nowhere"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("  flow[1].parameters.datastore: "),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with("  flow[2].parameters.__IMTCONN__: ")
            && lines[2].contains("of kind bearer"),
        "{stderr}"
    );
    assert!(
        lines[3].starts_with("  flow[3].parameters.__IMTCONN__: ")
            && lines[3].contains("needs a oauthdemo connection"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_lists_every_missing_reference() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let service = db.serve(&[]).await;
    let api = &service.api;
    let blueprint = json!({
        "name": "refs",
        "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
            {"id": 2, "module": "http:ActionSendDataBasicAuth", "version": 3,
             "parameters": {"__IMTCONN__": "missing-conn"},
             "mapper": {"url": "http://127.0.0.1:9/x", "method": "get"}},
            {"id": 3, "module": "datastore:GetRecord", "version": 1,
             "parameters": {"datastore": "missing-store"}, "mapper": {"key": "k"}}
        ]
    });
    let id = api.create(&blueprint).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = api
        .post(&format!("/api/scenarios/{id}/activate"), &json!({}))
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    let error = &reply.json["error"];
    assert_eq!(error["code"], "missing_references", "{}", reply.text);
    let paths: Vec<&str> = error["details"]["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", reply.text))
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "flow[1].parameters.__IMTCONN__",
            "flow[2].parameters.datastore"
        ]
    );
    let row = api.get(&format!("/api/scenarios/{id}")).await.json;
    assert_eq!(row["active"], false, "{row}");

    // The console's Activate button is refused the same way, listing every problem.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = sign_in(&client, &service.base, harness::TOKEN).await;
    let page = console_page(&client, &service.base, &format!("/scenarios/{id}"), &cookie).await;
    let csrf = csrf_of(&page);
    let refused = client
        .post(format!("{}/scenarios/{id}/activate", service.base))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let text = refused.text().await.unwrap();
    for path in [
        "flow[1].parameters.__IMTCONN__",
        "flow[2].parameters.datastore",
    ] {
        assert!(text.contains(path), "{path} in {text}");
    }

    // With the connection and the data store there, it activates.
    let out = db.cli(&[
        "connections",
        "add",
        "missing-conn",
        "--app",
        "http",
        "--username",
        "u",
        "--password",
        "p",
    ]);
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    let out = db.cli(&["datastores", "create", "missing-store"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    let reply = api
        .post(&format!("/api/scenarios/{id}/activate"), &json!({}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

/// An RSA key pair made by `openssl`: (private PEM, public PEM).
fn rsa_key_pair(dir: &Path) -> (String, String) {
    let private = dir.join("sa.pem");
    let public = dir.join("sa.pub.pem");
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private)
        .stderr(Stdio::null())
        .status()
        .expect("openssl")
        .success();
    assert!(ok, "openssl genpkey");
    let ok = Command::new("openssl")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_app() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let (private_pem, public_pem) = rsa_key_pair(dir.path());
    // A JWT-bearer token endpoint that verifies the assertion as Google's does, and the app's
    // API, which takes only the tokens it minted.
    let claims: Arc<Mutex<Vec<Value>>> = Arc::default();
    let minted: Arc<Mutex<Vec<String>>> = Arc::default();
    let audience: Arc<Mutex<String>> = Arc::default();
    let decoding = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap();
    let (seen, issued, expected) = (claims.clone(), minted.clone(), audience.clone());
    let accepted = minted.clone();
    let app = axum::Router::new()
        .route(
            "/token",
            axum::routing::post(
                move |axum::Form(form): axum::Form<HashMap<String, String>>| {
                    let (seen, issued, expected, decoding) = (
                        seen.clone(),
                        issued.clone(),
                        expected.clone(),
                        decoding.clone(),
                    );
                    async move {
                        let mut validation =
                            jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
                        validation.set_audience(&[expected.lock().unwrap().clone()]);
                        let assertion = form.get("assertion").cloned().unwrap_or_default();
                        match jsonwebtoken::decode::<Value>(&assertion, &decoding, &validation) {
                            Ok(token)
                                if form.get("grant_type").map(String::as_str)
                                    == Some("urn:ietf:params:oauth:grant-type:jwt-bearer") =>
                            {
                                seen.lock().unwrap().push(token.claims);
                                let access = format!("ya29.sa-{}", uuid::Uuid::new_v4().simple());
                                issued.lock().unwrap().push(access.clone());
                                (
                                    axum::http::StatusCode::OK,
                                    axum::Json(json!({"access_token": access,
                                                      "expires_in": 3599, "token_type": "Bearer"})),
                                )
                            }
                            _ => (
                                axum::http::StatusCode::BAD_REQUEST,
                                axum::Json(json!({"error": "invalid_grant"})),
                            ),
                        }
                    }
                },
            ),
        )
        .route(
            "/api/thing",
            axum::routing::any(move |headers: axum::http::HeaderMap| {
                let accepted = accepted.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let ok = auth
                        .strip_prefix("Bearer ")
                        .is_some_and(|t| accepted.lock().unwrap().iter().any(|m| m == t));
                    if ok {
                        (axum::http::StatusCode::OK, axum::Json(json!({"ok": true})))
                    } else {
                        (
                            axum::http::StatusCode::UNAUTHORIZED,
                            axum::Json(json!({"message": "invalid token"})),
                        )
                    }
                }
            }),
        );
    let addr = common::server::serve(app).await;
    let token_uri = format!("http://{addr}/token");
    *audience.lock().unwrap() = token_uri.clone();
    let api = format!("http://{addr}/api/");
    let key = json!({
        "type": "service_account", "project_id": "switchyard-test", "private_key_id": "k1",
        "private_key": private_pem, "client_email": "robot@switchyard-test.iam.gserviceaccount.com",
        "token_uri": token_uri,
    });
    let key_file = dir.path().join("key.json");
    std::fs::write(&key_file, key.to_string()).unwrap();
    let data = dir.path().join("data");
    let with_base = |args: &[&str]| {
        let mut command = switchyard("http://127.0.0.1:9", args);
        command.env("SWITCHYARD_APP_BASE_URLS", format!("sademo={api}"));
        command.output().unwrap()
    };

    // Stored after a token was minted with it and the type's test request took that token.
    let out = with_base(&[
        "connections",
        "add",
        "robot",
        "--app",
        "sademo",
        "--service-account-key",
        key_file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    assert_eq!(minted.lock().unwrap().len(), 1);
    // The assertion asks for the scopes of the type and of every module using it.
    assert_eq!(
        claims.lock().unwrap()[0]["scope"],
        "https://example.test/auth/read https://example.test/auth/write"
    );
    assert_eq!(
        claims.lock().unwrap()[0]["iss"],
        "robot@switchyard-test.iam.gserviceaccount.com"
    );

    let file = scenario(dir.path(), "write", "sademo:WriteThing", "robot");
    let out = with_base(&[
        "run",
        file.to_str().unwrap(),
        "--json",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no report: {:?}", texts(&out)));
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(report["log"][0]["output"]["ok"], true, "{report}");

    // A key the token endpoint refuses is not stored.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (other_private, _) = rsa_key_pair(&other);
    let mut wrong = key.clone();
    wrong["private_key"] = Value::String(other_private);
    std::fs::write(&key_file, wrong.to_string()).unwrap();
    let out = with_base(&[
        "connections",
        "add",
        "wrong",
        "--app",
        "sademo",
        "--service-account-key",
        key_file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        texts(&out).1.contains("failed its test"),
        "{:?}",
        texts(&out)
    );
    assert_eq!(listed("http://127.0.0.1:9", &data, "wrong"), Value::Null);

    // The private key and the minted tokens are nowhere in the data files.
    let needle = private_pem.lines().nth(1).unwrap().to_string();
    assert!(common::connections::files_containing(&data, &needle).is_empty());
    for token in minted.lock().unwrap().iter() {
        assert!(common::connections::files_containing(&data, token).is_empty());
    }
}

/// The `serve` of `data` on a free port, with the integrations of `integrations`; its base URL.
async fn serve_app(api: &str, data: &Path, integrations: &Path, token: &str) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let serve = switchyard(
        api,
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "--integrations",
            integrations.to_str().unwrap(),
        ],
    )
    .env("SWITCHYARD_API_TOKEN", token)
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !reqwest::get(format!("{base}/health"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (serve, base)
}

/// A browser that consents at once: follows the provider's authorize URL to the callback of
/// `base` and answers the callback's page.
async fn consent(client: &reqwest::Client, authorize_url: &str, base: &str) -> (u16, String) {
    let consent = client.get(authorize_url).send().await.unwrap();
    let callback = consent
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("the provider answered {}", consent.status()))
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        callback.starts_with(&format!("{base}/oauth/callback?")),
        "{callback}"
    );
    let page = client.get(&callback).send().await.unwrap();
    (page.status().as_u16(), page.text().await.unwrap())
}

fn scopes_asked(authorize_url: &str) -> Vec<String> {
    reqwest::Url::parse(authorize_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.split(' ').map(str::to_string).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_app_connected_in_a_browser() {
    let mock = MockOAuth::start().await;
    let api = mock.control.clone();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let integrations = dir.path().join("integrations.json");
    std::fs::write(
        &integrations,
        serde_json::to_vec(&json!([
            mock.integration("demo", "bot", "auth_code"),
            mock.integration("machine", "bot", "client_credentials"),
        ]))
        .unwrap(),
    )
    .unwrap();
    let token = "app-oauth-browser-token-0123456789abcdef";
    let (mut serve, base) = serve_app(&api, &data, &integrations, token).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The type's scope, its modules' (AdminResource's `admin`), then the integration's own.
    let wanted = ["profile", "admin", "openid", "email"];
    let mut outputs: Vec<String> = Vec::new();

    // `connections authorize`: the URL first, then it waits for the running serve.
    let authorize = |name: &str, timeout: &str| {
        switchyard(
            &api,
            &[
                "connections",
                "authorize",
                name,
                "--app",
                "oauthdemo",
                "--integration",
                "demo",
                "--integrations",
                integrations.to_str().unwrap(),
                "--public-url",
                &base,
                "--data-dir",
                data.to_str().unwrap(),
                "--timeout",
                timeout,
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let mut waiting = authorize("browser-conn", "60");
    let mut stdout = std::io::BufReader::new(waiting.stdout.take().unwrap());
    let url = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        (line.trim().to_string(), stdout)
    })
    .await
    .unwrap();
    let (url, mut stdout) = url;
    assert!(
        url.starts_with(&format!("{}/authorize?", mock.issuer)),
        "{url}"
    );
    assert_eq!(scopes_asked(&url), wanted, "{url}");
    let (status, page) = consent(&client, &url, &base).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("The oauthdemo connection &quot;browser-conn&quot; is connected"),
        "{page}"
    );
    let out = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let out = waiting.wait_with_output().unwrap();
        (
            out.status.code(),
            rest,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap();
    assert_eq!(out.0, Some(0), "{out:?}");
    assert!(out.1.contains("connected \"browser-conn\""), "{out:?}");
    outputs.extend([out.1, out.2, page]);
    let stored = listed(&api, &data, "browser-conn");
    assert_eq!(stored["kind"], "oauth2", "{stored}");
    assert_eq!(stored["context"], "app", "{stored}");
    assert_eq!(stored["alias"], "demo", "{stored}");
    assert_eq!(stored["status"], "connected", "{stored}");

    // Without a callback it gives up, saying why.
    let out = authorize("never-conn", "1").wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let (stdout_text, stderr_text) = texts(&out);
    assert!(
        stderr_text.contains("no callback came within 1 s"),
        "{stderr_text}"
    );
    assert_eq!(listed(&api, &data, "never-conn"), Value::Null);
    outputs.extend([stdout_text, stderr_text]);

    // The console: the app's type with the integrations that can connect it (an auth_code
    // one of its provider), and a Reconnect button on the stored connection.
    let cookie = sign_in(&client, &base, token).await;
    let connect = console_page(&client, &base, "/connect", &cookie).await;
    let card = connect
        .split("data-app=\"oauthdemo\"")
        .nth(1)
        .and_then(|rest| rest.split("</section>").next())
        .unwrap_or_else(|| panic!("no oauthdemo card on /connect: {connect}"));
    assert!(card.contains("<option value=\"demo\""), "{card}");
    assert!(
        !card.contains("machine"),
        "a client_credentials integration is offered: {card}"
    );
    // The card names what the app needs (the integration adds its own when connecting).
    assert!(
        card.contains("asks for <code>profile</code>, <code>admin</code></p>"),
        "{card}"
    );
    let row = connect
        .split("<tr data-connection=\"browser-conn\">")
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap_or_else(|| panic!("no browser-conn row"));
    assert!(row.contains(">Reconnect<"), "{row}");
    let csrf = csrf_of(&connect);
    let post = |form: Vec<(&'static str, String)>| {
        client
            .post(format!("{base}/connect/authorize"))
            .header("cookie", &cookie)
            .form(&form)
            .send()
    };
    let form = |name: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", name.to_string()),
            ("app", "oauthdemo".to_string()),
            ("integration", "demo".to_string()),
        ]
    };
    // Reconnecting gives the same connection new tokens.
    let started = post(form("browser-conn")).await.unwrap();
    assert_eq!(started.status(), 303);
    let location = started.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(scopes_asked(&location), wanted, "{location}");
    let (status, page) = consent(&client, &location, &base).await;
    assert_eq!(status, 200, "{page}");
    let again = listed(&api, &data, "browser-conn");
    assert_eq!(again["id"], stored["id"], "the same connection");
    assert_ne!(again["updatedAt"], stored["updatedAt"], "new tokens");
    // A name that is another kind of connection is refused at its field.
    let out = switchyard(
        &api,
        &[
            "connections",
            "add",
            "typed-conn",
            "--app",
            "oauthdemo",
            "--access-token",
            "typed-in",
            "--no-test",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    let refused = post(form("typed-conn")).await.unwrap();
    assert_eq!(refused.status(), 422);
    let text = refused.text().await.unwrap();
    assert!(text.contains("<code>name</code>"), "{text}");
    assert!(text.contains("choose another name"), "{text}");
    // Without the CSRF token: refused.
    let mut forged = form("forged-conn");
    forged[0].1 = "not-the-token".into();
    assert_eq!(post(forged).await.unwrap().status(), 403);

    // The API.
    let api_post = |body: Value| {
        client
            .post(format!("{base}/api/authorizations"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let reply = api_post(json!({"name": "api-conn", "app": "oauthdemo", "integration": "demo"}))
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let body: Value = reply.json().await.unwrap();
    let authorize_url = body["authorizeUrl"].as_str().unwrap().to_string();
    assert!(authorize_url.starts_with(&mock.issuer), "{body}");
    assert_eq!(body["scopes"], json!(wanted), "{body}");
    let reply = api_post(json!({"name": "api-conn", "app": "oauthdemo", "integration": "machine"}))
        .await
        .unwrap();
    assert_eq!(reply.status(), 422);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["error"]["path"], "integration", "{body}");
    let reply = api_post(
        json!({"name": "api-conn", "app": "oauthdemo", "integration": "demo",
                                "scope": "more"}),
    )
    .await
    .unwrap();
    assert_eq!(reply.status(), 422);
    let body: Value = reply.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("scope"),
        "{body}"
    );
    let (status, page) = consent(&client, &authorize_url, &base).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(listed(&api, &data, "api-conn")["context"], "app");
    outputs.push(connect);
    let _ = serve.kill();
    let _ = serve.wait();

    // The connection made in the browser runs the app's module.
    let get = scenario(
        dir.path(),
        "browser",
        "oauthdemo:GetResource",
        "browser-conn",
    );
    let (report, out) = run(&api, &get, &data, &integrations);
    assert_eq!(report["status"], "success", "{report}");
    let (stdout_text, stderr_text) = texts(&out);
    outputs.extend([stdout_text, stderr_text]);

    // No token anywhere.
    for secret in mock.issued().await {
        for text in &outputs {
            assert!(!text.contains(secret.as_str()), "a token is in an output");
        }
        let files = common::connections::files_containing(&data, &secret);
        assert!(files.is_empty(), "a token is in {files:?}");
    }
}
