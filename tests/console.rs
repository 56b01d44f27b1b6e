//! The web console in a real browser: `switchyard serve` (the binary) on 127.0.0.1, driven by
//! headless Chromium through chromedriver (`fantoccini`). One walk through the console — sign
//! in, import (a refused blueprint with its problems at their JSON paths, then a scenario with
//! a router and an error route), its graph, run it, read a module's input and output bundles, retry the
//! incomplete execution, versions, store an API-key connection and see it listed without its
//! value, a form without its CSRF token refused, sign out — saving a screenshot of each page
//! under `docs/console/`.
//!
//! chromedriver and chromium come from Debian (`.ci/run` installs them). Without them the test
//! prints a notice and passes, except when `CI` is set: then it fails.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const TOKEN: &str = "console-browser-test-token";
const SECRET: &str = "k3y-that-must-never-reach-the-browser";

/// The blueprint the walk imports: a router with three routes (a filter on the second, the
/// third the fallback) and an error route with Break under the module that fails.
fn blueprint() -> Value {
    json!({
      "name": "Route orders and park failures",
      "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "version": 1, "parameters": {"hook": "orders"},
         "metadata": {"designer": {"name": "Order arrives"}}},
        {"id": 2, "module": "builtin:BasicRouter", "version": 1, "routes": [
          {"flow": [
            {"id": 3, "module": "util:ComposeTransformer", "version": 1,
             "mapper": {"value": "hello from route one"}, "metadata": {"designer": {"name": "Greet"}}}
          ]},
          {"flow": [
            {"id": 4, "module": "json:ParseJSON", "version": 1,
             "filter": {"name": "Always", "conditions": [[{"a": "x", "o": "text:equal", "b": "x"}]]},
             "mapper": {"json": "{{1.body}}{"}, "metadata": {"designer": {"name": "Parse payload"}},
             "onerror": [{"id": 5, "module": "builtin:Break", "version": 1, "mapper": {"retry": false}}]}
          ]},
          {"fallback": true, "flow": [
            {"id": 6, "module": "util:ComposeTransformer", "version": 1, "mapper": {"value": "nothing matched"}}
          ]}
        ]}
      ],
      "metadata": {"scenario": {"roundtrips": 1, "dlq": true}}
    })
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `switchyard serve` on a free port; returns it and its base URL.
fn start_server(data: &std::path::Path) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir"])
        .arg(data)
        .env("SWITCHYARD_API_TOKEN", TOKEN)
        .env_remove("SWITCHYARD_DATABASE_URL")
        .env_remove("SWITCHYARD_PUBLIC_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchyard serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .expect("read stderr");
        if let Some(url) = line.strip_prefix("switchyard listening on ") {
            break url.trim().to_string();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (Killed(child), base)
}

/// chromedriver on a free port, once it answers; `None` (with a notice) when it is not
/// installed outside CI.
async fn start_chromedriver() -> Option<(Killed, String)> {
    let found = Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromedriver is not installed, and CI is set: the console's browser test must run \
             (`apt-get install chromium chromium-driver`, as .ci/run does)"
        );
        eprintln!("NOTICE: chromedriver is not installed; the console's browser test is skipped");
        return None;
    }
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if reqwest::get(format!("{url}/status"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some((Killed(child), url))
}

async fn browser(driver: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": "/usr/bin/chromium",
               "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                        "--disable-gpu", "--window-size=1360,900"]}),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a browser session")
}

fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/console");
    std::fs::create_dir_all(&dir).expect("docs/console");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).expect("save screenshot");
}

async fn css(client: &Client, selector: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("no element {selector}: {e}"))
}

async fn count(client: &Client, selector: &str) -> usize {
    client
        .find_all(Locator::Css(selector))
        .await
        .expect("find_all")
        .len()
}

async fn current_path(client: &Client) -> String {
    client
        .current_url()
        .await
        .expect("current URL")
        .path()
        .to_string()
}

/// Sets a field's value through the page's script (long text without typing it).
async fn set_value(client: &Client, selector: &str, value: &str) {
    client
        .execute(
            "document.querySelector(arguments[0]).value = arguments[1];",
            vec![json!(selector), json!(value)],
        )
        .await
        .expect("set a field");
}

/// Reloads `path` until `selector` is on the page (an execution still queued or running).
async fn until_present(client: &Client, url: &str, selector: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        client.goto(url).await.expect("goto");
        if count(client, selector).await > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never showed {selector}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let Some((_driver, driver_url)) = start_chromedriver().await else {
        return;
    };
    let data = tempfile::tempdir().expect("tempdir");
    let (_server, base) = start_server(data.path());
    let client = browser(&driver_url).await;
    let outcome = tokio::spawn(walk(client.clone(), base)).await;
    let _ = client.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn walk(client: Client, base: String) {
    let (client, base) = (&client, base.as_str());
    // Signed out, `/` goes to the sign-in form.
    client.goto(&format!("{base}/")).await.expect("goto /");
    assert_eq!(current_path(client).await, "/login");
    css(client, "input[name=token]").await;
    assert_eq!(count(client, "form button[type=submit]").await, 1);
    screenshot(client, "login").await;

    // A wrong token is refused; the right one signs in.
    css(client, "input[name=token]")
        .await
        .send_keys("not-the-token")
        .await
        .unwrap();
    css(client, "form[action='/login'] button")
        .await
        .click()
        .await
        .unwrap();
    let alert = css(client, ".problem").await.text().await.unwrap();
    assert!(alert.contains("not this server's API token"), "{alert}");
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
    assert_eq!(current_path(client).await, "/scenarios");
    let cookie = client
        .get_named_cookie("switchyard_session")
        .await
        .expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");

    // Import: a bad blueprint shows every problem at its JSON path.
    client.goto(&format!("{base}/scenarios/new")).await.unwrap();
    let mut bad = blueprint();
    bad["flow"][1]["routes"][0]["flow"][0]["module"] = json!("nosuch:Module");
    bad["flow"][1]["routes"][1]["flow"][0]["mapper"]["json"] = json!("{{1.body");
    set_value(client, "#blueprint", &bad.to_string()).await;
    css(client, "form[action='/scenarios/new'] button")
        .await
        .click()
        .await
        .unwrap();
    let problems = css(client, "#problems").await.text().await.unwrap();
    assert!(
        problems.contains("flow[1].routes[0].flow[0].module"),
        "{problems}"
    );
    assert!(
        problems.contains("flow[1].routes[1].flow[0].mapper.json"),
        "{problems}"
    );
    screenshot(client, "import-problems").await;

    // The good one: its page draws the graph.
    set_value(client, "#blueprint", &blueprint().to_string()).await;
    css(client, "form[action='/scenarios/new'] button")
        .await
        .click()
        .await
        .unwrap();
    css(client, "svg.flow").await;
    let scenario_path = current_path(client).await;
    assert!(scenario_path.starts_with("/scenarios/"), "{scenario_path}");
    assert_eq!(count(client, "svg.flow [data-module]").await, 6);
    assert_eq!(count(client, "svg.flow [data-from][data-to]").await, 5);
    for (from, to) in [("1", "2"), ("2", "3"), ("2", "4"), ("4", "5"), ("2", "6")] {
        let selector = format!("svg.flow [data-from='{from}'][data-to='{to}']");
        assert_eq!(count(client, &selector).await, 1, "{selector}");
    }
    assert_eq!(count(client, "svg.flow .link.error-route").await, 1);
    assert_eq!(count(client, "svg.flow .link.fallback").await, 1);
    assert_eq!(count(client, "svg.flow .filter").await, 1);
    // Clicking a module shows its mapper.
    css(client, "svg.flow [data-module='4']")
        .await
        .click()
        .await
        .unwrap();
    let detail = css(client, "#detail-4").await;
    assert!(detail.is_displayed().await.unwrap());
    let text = detail.text().await.unwrap();
    assert!(text.contains("{{1.body}}{"), "{text}");
    // Clicking a filter shows its conditions.
    css(client, "svg.flow .filter").await.click().await.unwrap();
    let conditions = css(client, "#filter-detail pre")
        .await
        .text()
        .await
        .unwrap();
    assert!(conditions.contains("text:equal"), "{conditions}");
    css(client, "svg.flow [data-module='4']")
        .await
        .click()
        .await
        .unwrap();
    screenshot(client, "scenario").await;

    // The list links to it.
    client.goto(&format!("{base}/scenarios")).await.unwrap();
    let link = format!("#scenarios a[href='{scenario_path}']");
    assert_eq!(count(client, &link).await, 1);

    // Run it now: the execution page, once finished, draws operations per module.
    client
        .goto(&format!("{base}{scenario_path}"))
        .await
        .unwrap();
    css(client, "form.run button").await.click().await.unwrap();
    css(client, "svg.flow").await;
    let execution_url = client.current_url().await.unwrap().to_string();
    assert!(execution_url.contains("/executions/"), "{execution_url}");
    until_present(client, &execution_url, "#incomplete").await;
    assert_eq!(
        count(client, "svg.flow [data-module][data-operations]").await,
        6
    );
    let ops = css(client, "svg.flow [data-module='3']")
        .await
        .attr("data-operations")
        .await
        .unwrap();
    assert_eq!(ops.as_deref(), Some("1"));
    let fallback_ops = css(client, "svg.flow [data-module='6']")
        .await
        .attr("data-operations")
        .await
        .unwrap();
    assert_eq!(fallback_ops.as_deref(), Some("0"));
    // The module that failed is marked, in colour and in words.
    let failed = css(client, "svg.flow [data-module='4']").await;
    assert!(
        failed
            .attr("class")
            .await
            .unwrap()
            .unwrap_or_default()
            .contains("errored")
    );
    assert!(failed.text().await.unwrap().contains("error"));
    // The failed module's panel names the error's kind and message.
    failed.click().await.unwrap();
    let error = css(client, "#detail-4 .module-error")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        error.contains("DataError") && error.contains("not valid JSON"),
        "{error}"
    );
    // Its input: the mapper as evaluated for the bundle it failed on (`{{1.body}}{` with no
    // body is the unparseable `{`).
    let input = css(client, "#detail-4 pre.input")
        .await
        .text()
        .await
        .unwrap();
    assert!(input.contains(r#""json": "{""#), "{input}");
    // Clicking a node shows its output bundle.
    css(client, "svg.flow [data-module='3']")
        .await
        .click()
        .await
        .unwrap();
    let output = css(client, "#detail-3 pre.output")
        .await
        .text()
        .await
        .unwrap();
    assert!(output.contains("hello from route one"), "{output}");
    screenshot(client, "execution").await;

    // Retry the incomplete execution: a new execution.
    css(client, "#incomplete form[action$='/retry'] button")
        .await
        .click()
        .await
        .unwrap();
    css(client, "svg.flow").await;
    let retried = client.current_url().await.unwrap().to_string();
    assert!(
        retried.contains("/executions/") && retried != execution_url,
        "{retried}"
    );

    // The list shows the last run and today's runs.
    client.goto(&format!("{base}/scenarios")).await.unwrap();
    let row = css(client, "#scenarios tbody tr")
        .await
        .text()
        .await
        .unwrap();
    assert!(row.contains("2"), "{row}");
    screenshot(client, "scenarios").await;

    // The executions list has both, and filters by status.
    client
        .goto(&format!("{base}{scenario_path}/executions"))
        .await
        .unwrap();
    css(client, "#execution-rows tr[data-execution]").await;
    let before = count(client, "#execution-rows tr[data-execution]").await;
    assert!(before >= 2, "{before}");
    // A new execution appears without a reload (server-sent events).
    let http = reqwest::Client::new();
    let id = scenario_path.trim_start_matches("/scenarios/").to_string();
    let started = http
        .post(format!("{base}/api/scenarios/{id}/run"))
        .bearer_auth(TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(client, "#execution-rows tr[data-execution]").await <= before {
        assert!(Instant::now() < deadline, "the list did not update live");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    screenshot(client, "executions").await;
    // Filtered by status.
    client
        .goto(&format!("{base}{scenario_path}/executions?status=success"))
        .await
        .unwrap();
    css(client, "#execution-rows").await;
    assert_eq!(count(client, "#execution-rows tr[data-execution]").await, 0);
    client
        .goto(&format!(
            "{base}{scenario_path}/executions?status=incomplete"
        ))
        .await
        .unwrap();
    css(client, "#execution-rows tr[data-execution]").await;

    // Versions: a second version, and the diff of the two.
    let mut second = blueprint();
    second["flow"][1]["routes"][0]["flow"][0]["mapper"]["value"] = json!("hello, version two");
    let updated = http
        .put(format!("{base}/api/scenarios/{id}"))
        .bearer_auth(TOKEN)
        .body(second.to_string())
        .send()
        .await
        .unwrap();
    assert!(updated.status().is_success());
    client
        .goto(&format!("{base}{scenario_path}/versions?a=1&b=2"))
        .await
        .unwrap();
    let removed = css(client, "pre.diff .del").await.text().await.unwrap();
    let added = css(client, "pre.diff .ins").await.text().await.unwrap();
    assert!(removed.contains("hello from route one"), "{removed}");
    assert!(added.contains("hello, version two"), "{added}");
    screenshot(client, "versions").await;

    // An API-key connection through the form: listed, its value nowhere.
    client.goto(&format!("{base}/connect")).await.unwrap();
    let form = "#new-http-api_key";
    css(client, &format!("{form} input[name=name]"))
        .await
        .send_keys("crm-key")
        .await
        .unwrap();
    css(client, &format!("{form} input[name='field.name']"))
        .await
        .send_keys("X-Api-Key")
        .await
        .unwrap();
    css(client, &format!("{form} input[name='field.key']"))
        .await
        .send_keys(SECRET)
        .await
        .unwrap();
    css(client, &format!("{form} button[type=submit]"))
        .await
        .click()
        .await
        .unwrap();
    let row = css(client, "#connections tr[data-connection='crm-key']").await;
    assert!(row.text().await.unwrap().contains("api_key"));
    let source = client.source().await.unwrap();
    assert!(
        !source.contains(SECRET),
        "the connect page carries the stored key"
    );
    screenshot(client, "connect").await;
    // Test answers on the page (the built-in http app has no test request); Remove removes.
    css(
        client,
        "#connections tr[data-connection='crm-key'] form[action$='/test'] button",
    )
    .await
    .click()
    .await
    .unwrap();
    css(client, "#test-result").await;
    css(
        client,
        "#connections tr[data-connection='crm-key'] form[action$='/remove'] button",
    )
    .await
    .click()
    .await
    .unwrap();
    css(client, "#connections").await;
    assert_eq!(
        count(client, "#connections tr[data-connection='crm-key']").await,
        0
    );

    // A form without the CSRF token is refused: in the browser, and with the session cookie.
    client
        .goto(&format!("{base}{scenario_path}"))
        .await
        .unwrap();
    client
        .execute(
            "const f = document.querySelector('form.run'); f.querySelector('[name=csrf]').remove(); f.submit();",
            vec![],
        )
        .await
        .unwrap();
    let refused = css(client, "main h1").await.text().await.unwrap();
    assert_eq!(refused, "Refused");
    let session = client.get_named_cookie("switchyard_session").await.unwrap();
    let cookie = format!("switchyard_session={}", session.value());
    let posted = http
        .post(format!("{base}{scenario_path}/run"))
        .header("cookie", &cookie)
        .form(&[("payload", "{}")])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 403);
    let posted = http
        .post(format!("{base}{scenario_path}/run"))
        .header("cookie", &cookie)
        .form(&[("payload", "{}"), ("csrf", "not-the-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 403);
    // The cookie opens nothing under /api: the JSON API keeps its bearer token.
    let api = http
        .get(format!("{base}/api/scenarios"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);

    // Sign out: the session is gone.
    client.goto(&format!("{base}/scenarios")).await.unwrap();
    css(client, "form[action='/logout'] button")
        .await
        .click()
        .await
        .unwrap();
    css(client, "input[name=token]").await;
    let after = http
        .get(format!("{base}/scenarios"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.url().path(),
        "/login",
        "a signed-out session still opens pages"
    );
}
