//! Bad input to the console and the API over real HTTP (issue 22 point 8): a console page's
//! query string or a console form's body that cannot be read is answered with the console's
//! own error page (HTML, the problem named), and an `/api` route's bad query with the JSON
//! error envelope — never the framework's plain-text message. A form without the session's
//! CSRF token is the console's 403 page, whatever its body.

use std::sync::Arc;

use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;

const TOKEN: &str = "console-errors-test-token";

/// `switchyard serve`'s application (API and console) on a fresh SQLite store, on loopback.
async fn serve(dir: &std::path::Path) -> String {
    let store = switchyard::store::Store::open_sqlite(dir).await.unwrap();
    let queue = switchyard::queue::Queue::new(&store, switchyard::queue::QueueOptions::default());
    let registry = Arc::new(
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::default()).unwrap(),
    );
    // The data stores, as `serve` gives them, so activation checks a module's data store.
    let mut services = switchyard::module::Extensions::default();
    services.insert::<switchyard::module::DataStoresHandle>(store.datastores_handle());
    let options = switchyard::catalog::CatalogOptions {
        services,
        ..switchyard::catalog::CatalogOptions::default()
    };
    let catalog = switchyard::catalog::Catalog::new(store.clone(), registry, options);
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
        runner,
        switchyard::api::token_hash(TOKEN),
        switchyard::api::HookLimits::default(),
        0,
    );
    let console = switchyard::console::router(switchyard::console::ConsoleOptions::default());
    let app = switchyard::api::app_with(state, console);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in; returns the session cookie and the session's CSRF token (from a page's form).
async fn sign_in(http: &reqwest::Client, base: &str) -> (String, String) {
    let signed = http
        .post(format!("{base}/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303);
    let cookie = signed.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = http
        .get(format!("{base}/scenarios"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = r#"name="csrf" value=""#;
    let start = page.find(marker).expect("a form with the CSRF token") + marker.len();
    let csrf = page[start..].split('"').next().unwrap().to_string();
    (cookie, csrf)
}

/// The console's error page: HTML with the given status, its title in an `h1`, and the
/// problem in the alert.
async fn assert_error_page(response: reqwest::Response, status: u16, title: &str) -> String {
    assert_eq!(response.status(), status);
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let body = response.text().await.unwrap();
    assert!(body.contains(&format!("<h1>{title}</h1>")), "{body}");
    assert!(body.contains(r#"role="alert""#), "{body}");
    body
}

async fn a_scenario(http: &reqwest::Client, base: &str) -> String {
    let created: Value = http
        .post(format!("{base}/api/scenarios"))
        .bearer_auth(TOKEN)
        .body(
            r#"{"name": "Echo", "flow": [
                {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
                {"id": 2, "module": "util:SetVariable2", "mapper": {"name": "n", "value": "1"}}
            ]}"#,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["id"].as_str().expect("a scenario id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_strings_get_the_console_page_or_the_api_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(dir.path()).await;
    let http = client();
    let (cookie, _) = sign_in(&http, &base).await;
    let scenario = a_scenario(&http, &base).await;

    // A version number that is no number, on the versions page.
    let versions = http
        .get(format!("{base}/scenarios/{scenario}/versions?a=abc&b=1"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let body = assert_error_page(versions, 400, "Bad query").await;
    assert!(
        body.contains("a: invalid digit"),
        "names the parameter: {body}"
    );

    // A module that is no number, on the inspector's page of bundles.
    let bundles = http
        .get(format!(
            "{base}/executions/0123456789abcdef0123456789abcdef/bundles?module=abc"
        ))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let body = assert_error_page(bundles, 400, "Bad query").await;
    assert!(body.contains("module"), "{body}");

    // Without a session the page still sends the visitor to sign in first.
    let signed_out = http
        .get(format!("{base}/scenarios/{scenario}/versions?a=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 302);
    assert_eq!(signed_out.headers()[LOCATION], "/login");

    // The API answers its own bad query with the JSON envelope, at the parameter.
    let api = http
        .get(format!("{base}/api/executions?limit=abc"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 400);
    let envelope: Value = api.json().await.unwrap();
    assert_eq!(envelope["error"]["code"], "bad_request", "{envelope}");
    assert_eq!(envelope["error"]["path"], "limit", "{envelope}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_form_bodies_get_the_console_page() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(dir.path()).await;
    let http = client();
    let (cookie, csrf) = sign_in(&http, &base).await;
    let scenario = a_scenario(&http, &base).await;

    // A body that is not a form at all, sent to a console form.
    let posted = http
        .post(format!("{base}/scenarios/{scenario}/run"))
        .header(COOKIE, &cookie)
        .header(CONTENT_TYPE, "application/json")
        .body(format!(r#"{{"csrf": "{csrf}"}}"#))
        .send()
        .await
        .unwrap();
    let body = assert_error_page(posted, 400, "Bad form").await;
    assert!(body.contains("application/x-www-form-urlencoded"), "{body}");

    // A body without a content type.
    let posted = http
        .post(format!("{base}/connect/secrets/some-alias"))
        .header(COOKIE, &cookie)
        .body(format!("csrf={csrf}&value=x"))
        .send()
        .await
        .unwrap();
    assert_error_page(posted, 400, "Bad form").await;

    // The sign-in form too, before any session exists.
    let login = http
        .post(format!("{base}/login"))
        .header(CONTENT_TYPE, "text/plain")
        .body("token")
        .send()
        .await
        .unwrap();
    assert_error_page(login, 400, "Bad form").await;

    // A well-formed form without the CSRF token is the console's 403 page.
    let refused = http
        .post(format!("{base}/scenarios/{scenario}/run"))
        .header(COOKIE, &cookie)
        .form(&[("payload", "{}")])
        .send()
        .await
        .unwrap();
    assert_error_page(refused, 403, "Refused").await;

    // And with the token, the same form runs the scenario.
    let run = http
        .post(format!("{base}/scenarios/{scenario}/run"))
        .header(COOKIE, &cookie)
        .form(&[("payload", "{}"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 303);
    let location = run.headers()[LOCATION].to_str().unwrap();
    assert!(location.starts_with("/executions/"), "{location}");
}

/// A refused action is the console's 422 page with every problem at its JSON path: here
/// activating a scenario whose module names a data store that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_activation_lists_its_problems_at_their_paths() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(dir.path()).await;
    let http = client();
    let (cookie, csrf) = sign_in(&http, &base).await;
    let created: Value = http
        .post(format!("{base}/api/scenarios"))
        .bearer_auth(TOKEN)
        .body(
            r#"{"name": "Keep", "flow": [
                {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
                {"id": 2, "module": "datastore:AddRecord", "parameters": {"datastore": 4242},
                 "mapper": {"key": "k", "data": {"a": "1"}}}
            ]}"#,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let scenario = created["id"].as_str().expect("a scenario id");
    let refused = http
        .post(format!("{base}/scenarios/{scenario}/activate"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let body = assert_error_page(refused, 422, "Refused").await;
    assert!(body.contains(r#"<ul id="problems">"#), "{body}");
    assert!(
        body.contains("<code>flow[1].parameters.datastore</code>"),
        "{body}"
    );
}

/// A scenario Switchyard turned off after its consecutive errors (`maxErrors`) says so on its
/// console page, next to its status, in words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_turned_off_after_errors_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(dir.path()).await;
    let http = client();
    let (cookie, _) = sign_in(&http, &base).await;
    let id = a_scenario(&http, &base).await;
    let activated = http
        .post(format!("{base}/api/scenarios/{id}/activate"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(activated.status(), 200);
    // One execution that ended with an error, then the check a runner makes after it.
    let store = switchyard::store::Store::open_sqlite(dir.path())
        .await
        .unwrap();
    let execution = store
        .create_execution(switchyard::store::NewExecution {
            scenario_id: &id,
            version: 1,
            source: switchyard::store::ExecutionSource::Manual,
            payload: None,
        })
        .await
        .unwrap();
    let error = serde_json::json!({"name": "DataError", "message": "bad"});
    let outcome = switchyard::store::ExecutionOutcome {
        status: switchyard::store::FinalStatus::Error,
        operations: 1,
        cycles: 1,
        report: None,
        error: Some(&error),
        trigger: None,
    };
    assert!(store.finish_execution(&execution, outcome).await.unwrap());
    let reason = "turned off after 1 consecutive execution ended with an error (maxErrors 1)";
    assert!(store.deactivate_after_errors(&id, 1, reason).await.unwrap());

    let page = http
        .get(format!("{base}/scenarios/{id}"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("inactive"), "{page}");
    assert!(page.contains(reason), "{page}");
    let list = http
        .get(format!("{base}/scenarios"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(list.contains("after errors"), "{list}");
}
