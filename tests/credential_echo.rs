//! Credentials an API echoes never reach history (issue 22 point 2): a fake API on loopback
//! answers every request with what it received — the request URL with its query (`?api_key=…`),
//! the `Authorization` header, the `X-Api-Key` header — in a 200 body the module outputs and in
//! a 400 body the module's error keeps. Scenarios call it through every credential the built-in
//! `http:*` modules send (an API key in a header and in the query, a basic password from a
//! connection and from v3's `authUser`/`authPass`, a bearer token) and through an app defined
//! as data (ChatBot's token). Every value of every connection, in every spelling the API
//! echoes (raw, percent-encoded, basic's base64 `user:password`), is then looked for in the
//! execution history as the API serves it and as `switchyard executions show` prints it, in
//! every file of the data directory (the SQLite database and its WAL) and in everything the
//! process logged (at `debug`): never found.
//!
//! - `credentials_an_api_echoes_stay_out_of_history_and_logs`

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::any;
use base64::Engine as _;
use serde_json::{Value, json};
use switchyard::apps::{AppOptions, AppRegistry};
use switchyard::connections::{Keyring, NewConnectionInput, Vault};
use switchyard::module::ConnectionsHandle;
use switchyard::store::Store;

use common::connections::{file_count, files_containing, planted, switchyard, texts};

const API_TOKEN: &str = "credential-echo-test-api-token-0123456789";

/// The fake API: everything it received, echoed — as JSON with 200 under `/ok…`, as text
/// with 400 for a path with `fail` (as an API's error page quoting the request does).
async fn echo(uri: Uri, headers: HeaderMap) -> axum::response::Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let text = format!(
        "request {uri} authorization={} x-api-key={}",
        header("authorization"),
        header("x-api-key")
    );
    if uri.path().contains("fail") {
        (StatusCode::BAD_REQUEST, format!("invalid request: {text}")).into_response()
    } else {
        axum::Json(json!({"echo": text, "data": {"id": "ok", "note": text}})).into_response()
    }
}

/// A log sink for `tracing`: everything the process logs while the guard lives.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn input(name: &str, app: &str, kind: &str, fields: Value) -> NewConnectionInput {
    NewConnectionInput {
        id: None,
        name: name.into(),
        app: app.into(),
        kind: Some(kind.into()),
        fields: fields.as_object().unwrap().clone(),
        test: false,
    }
}

/// A scenario: a trigger, then `module` with `parameters` and `mapper` calling `/ok` (its
/// output is kept), then the same calling `/fail` (its error is kept).
fn scenario(name: &str, module: &str, parameters: Value, mapper: Value, base: &str) -> Value {
    let version = if module == "http:MakeRequest" { 4 } else { 3 };
    let mut flow = vec![
        json!({"id": 1, "module": "gateway:CustomWebHook", "version": 1,
                               "parameters": {"hook": "in"}}),
    ];
    for (id, path) in [(2, "ok"), (3, "fail")] {
        let mut mapper = mapper.clone();
        if mapper.get("url").is_some() || module.starts_with("http:") {
            mapper["url"] = json!(format!("{base}/{path}?x=1"));
            mapper["method"] = json!("get");
        } else {
            // ChatBot's `GetUser` reads `/users/{userId}` from the connection's baseUrl.
            mapper["userId"] = json!(path);
        }
        flow.push(json!({"id": id, "module": module, "version": version,
                         "parameters": parameters, "mapper": mapper}));
    }
    json!({"name": name, "flow": flow, "metadata": {"scenario": {"roundtrips": 1}}})
}

#[tokio::test]
async fn credentials_an_api_echoes_stay_out_of_history_and_logs() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let addr = common::server::serve(Router::new().route("/{*path}", any(echo))).await;
    let base = format!("http://{addr}");

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).await.unwrap();
    let vault = Arc::new(Vault::new(
        store.clone(),
        Keyring::load_file(dir.path()).unwrap(),
    ));
    // Secrets with characters a query string encodes, so that the echo is not the raw value.
    let header_key = format!("{} h/k", planted("header-key"));
    let query_key = format!("{} q/k+", planted("query-key"));
    let password = format!("{} p/w", planted("password"));
    let v3_password = planted("v3-password");
    let token = planted("token");
    let chatbot_key = planted("chatbot-key");
    for (name, app, kind, fields) in [
        (
            "header-key",
            "http",
            "api_key",
            json!({"key": header_key, "name": "X-Api-Key"}),
        ),
        (
            "query-key",
            "http",
            "api_key",
            json!({"key": query_key, "name": "api_key", "placement": "query"}),
        ),
        (
            "ops",
            "http",
            "basic",
            json!({"username": "ann", "password": password}),
        ),
        ("bearer", "chatbot", "bearer", json!({"token": token})),
        (
            "bot",
            "chatbot",
            "bearer",
            json!({"token": chatbot_key, "baseUrl": base}),
        ),
    ] {
        vault.create(&input(name, app, kind, fields)).await.unwrap();
    }
    let secrets = [
        header_key.clone(),
        query_key.clone(),
        password.clone(),
        v3_password.clone(),
        token.clone(),
        chatbot_key.clone(),
    ];
    // Every spelling the API echoes: percent-encoded as the query carries it, and the basic
    // credentials' base64.
    let mut needles: Vec<String> = secrets.to_vec();
    for secret in &secrets {
        // As the transport puts it in a query.
        let mut url = reqwest::Url::parse("http://x.test/").unwrap();
        url.query_pairs_mut().append_pair("k", secret);
        needles.push(url.query().unwrap()["k=".len()..].to_string());
    }
    for (user, password) in [("ann", &password), ("ann", &v3_password)] {
        needles
            .push(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
    }

    // The API and its runner, on that store.
    let queue = switchyard::queue::Queue::new(&store, switchyard::queue::QueueOptions::default());
    let registry = Arc::new(AppRegistry::build(AppOptions::allowing_loopback()).unwrap());
    let mut services = switchyard::module::Extensions::default();
    services.insert::<ConnectionsHandle>(vault.handle());
    let catalog = switchyard::catalog::Catalog::new(
        store.clone(),
        registry,
        switchyard::catalog::CatalogOptions {
            services,
            ..switchyard::catalog::CatalogOptions::default()
        },
    );
    let runner = Arc::new(
        switchyard::queue::Runner::new(
            catalog,
            &queue,
            switchyard::queue::RunnerOptions::default(),
            switchyard::queue::Completions::default(),
        )
        .unwrap(),
    );
    let state = switchyard::api::AppState::new(
        queue,
        runner.clone(),
        switchyard::api::token_hash(API_TOKEN),
        switchyard::api::HookLimits::default(),
        0,
    )
    .with_connections(vault.clone());
    let api = common::server::serve(switchyard::api::app(state)).await;
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut request = http
            .request(method, format!("http://{api}/api/{path}"))
            .bearer_auth(API_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let reply = request.send().await.unwrap();
            (reply.status().as_u16(), reply.text().await.unwrap())
        }
    };

    let scenarios = [
        scenario(
            "v4 key in a header",
            "http:MakeRequest",
            json!({"authenticationType": "apiKey", "apiKeyKeychain": "header-key"}),
            json!({"url": "", "parseResponse": true}),
            &base,
        ),
        scenario(
            "v3 key in the query",
            "http:ActionSendDataAPIKeyAuth",
            json!({"auth": "query-key", "handleErrors": true}),
            json!({"url": "", "parseResponse": true}),
            &base,
        ),
        scenario(
            "v3 basic connection",
            "http:ActionSendDataBasicAuth",
            json!({"__IMTCONN__": "ops", "handleErrors": true}),
            json!({"url": "", "parseResponse": true}),
            &base,
        ),
        scenario(
            "v3 basic fields",
            "http:ActionSendData",
            json!({"handleErrors": true}),
            json!({"url": "", "parseResponse": true, "authUser": "ann",
                        "authPass": v3_password}),
            &base,
        ),
        scenario(
            "v3 bearer",
            "http:ActionSendDataOAuth",
            json!({"__IMTCONN__": "bearer", "handleErrors": true}),
            json!({"url": "", "parseResponse": true}),
            &base,
        ),
        scenario(
            "defined app",
            "chatbot:GetUser",
            json!({"__IMTCONN__": "bot"}),
            json!({}),
            &base,
        ),
    ];
    let mut bodies = Vec::new();
    let mut executions = Vec::new();
    for blueprint in scenarios {
        let name = blueprint["name"].as_str().unwrap().to_string();
        let (status, body) = call(reqwest::Method::POST, "scenarios".into(), Some(blueprint)).await;
        assert_eq!(status, 201, "{name}: {body}");
        let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (status, body) = call(
            reqwest::Method::POST,
            format!("scenarios/{id}/run"),
            Some(json!({"n": 1})),
        )
        .await;
        assert_eq!(status, 202, "{name}: {body}");
        let execution = serde_json::from_str::<Value>(&body).unwrap()["executionId"]
            .as_str()
            .unwrap()
            .to_string();
        runner.execute(&execution).await.unwrap();
        executions.push(execution.clone());
        let (status, summary) = call(
            reqwest::Method::GET,
            format!("executions/{execution}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{name}: {summary}");
        let parsed: Value = serde_json::from_str(&summary).unwrap();
        assert_eq!(
            parsed["status"], "error",
            "{name}: the /fail call fails: {summary}"
        );
        bodies.push((name.clone(), summary));
        for module in [2, 3] {
            let (status, body) = call(
                reqwest::Method::GET,
                format!("executions/{execution}?module={module}"),
                None,
            )
            .await;
            assert_eq!(status, 200, "{name}: {body}");
            if module == 2 {
                // The echo reached the history, scrubbed: the API did quote the request.
                assert!(
                    body.contains("ok") && body.contains("request /"),
                    "{name}: {body}"
                );
                assert!(body.contains("[redacted]"), "{name}: {body}");
            }
            bodies.push((format!("{name}, module {module}"), body));
        }
    }
    store.close().await;

    // The command line shows the same history.
    let data_arg = dir.path().to_str().unwrap();
    for execution in &executions {
        for extra in [&[][..], &["--module", "2"], &["--module", "3"]] {
            let mut args = vec![
                "executions",
                "show",
                execution.as_str(),
                "--data-dir",
                data_arg,
            ];
            args.extend_from_slice(extra);
            let out = switchyard(&args, &[], None);
            let (stdout, stderr) = texts(&out);
            assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
            if extra.contains(&"2") {
                assert!(
                    stdout.contains("[redacted]"),
                    "{args:?}: the echo, scrubbed: {stdout}"
                );
            }
            bodies.push((format!("{args:?}"), format!("{stdout}\n{stderr}")));
        }
    }

    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(!logged.is_empty(), "the test sees the logs");
    assert!(file_count(dir.path()) >= 2);
    for needle in &needles {
        for (what, body) in &bodies {
            assert!(
                !body.contains(needle.as_str()),
                "{what} shows {needle:?}:\n{body}"
            );
        }
        // v3's `authPass` is written in the blueprint itself, which is stored as written.
        if *needle != v3_password {
            assert_eq!(
                files_containing(dir.path(), needle),
                Vec::<std::path::PathBuf>::new(),
                "{needle:?} is stored"
            );
        }
        assert!(
            !logged.contains(needle.as_str()),
            "{needle:?} is logged:\n{logged}"
        );
    }
}
