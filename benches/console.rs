//! The console's two performance figures of `docs/performance.md`, through the `serve` binary
//! (embedded SQLite, its defaults but `--log-bundles-per-module 10000`) on 127.0.0.1:
//!
//! 1. **The scenario list with 1,000 scenarios** (`GET /scenarios`): the first request (which
//!    compiles every scenario once into the catalog's cache) and then the median and worst of
//!    20 — the goal is under 300 ms.
//! 2. **An execution page for an execution with 10,000 bundles** (`GET /executions/{id}`,
//!    then the first page of a module's bundles the inspector fetches on click): median and
//!    worst of 20 — the goal is under 1 s; the page holds per-module summaries, never the
//!    bundles themselves.
//!
//! `cargo bench --bench console` (a plain `main`, not criterion: figures are printed).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TOKEN: &str = "bench-console-token-0123";
const SCENARIOS: usize = 1_000;
const BUNDLES: u64 = 10_000;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(data: &std::path::Path) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--host", "127.0.0.1", "--port", "0"])
        .args(["--log-bundles-per-module", "10000", "--data-dir"])
        .arg(data)
        .env("SWITCHYARD_API_TOKEN", TOKEN)
        .env_remove("SWITCHYARD_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchyard serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let base = loop {
        let line = lines.next().expect("serve exited").expect("stderr");
        if let Some(url) = line.strip_prefix("switchyard listening on ") {
            break url.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (Killed(child), base)
}

/// Times `n` GETs of `url` with the session `cookie`; each must answer 200.
async fn timings(http: &reqwest::Client, url: &str, cookie: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let reply = http.get(url).header("cookie", cookie).send().await.unwrap();
        assert_eq!(reply.status(), 200, "{url}");
        let body = reply.text().await.unwrap();
        out.push(started.elapsed());
        assert!(!body.is_empty());
    }
    out.sort();
    out
}

fn describe(what: &str, t: &[Duration]) {
    println!(
        "{what}: median {:.1} ms, worst {:.1} ms ({} requests)",
        t[t.len() / 2].as_secs_f64() * 1000.0,
        t[t.len() - 1].as_secs_f64() * 1000.0,
        t.len()
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let data = tempfile::tempdir().expect("tempdir");
    let (_server, base) = start_server(data.path());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let signed_in = http
        .post(format!("{base}/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_string();

    // 1. 1,000 scenarios (every other one a webhook, the rest scheduled), a few executions.
    let started = Instant::now();
    let mut first_id = String::new();
    for n in 0..SCENARIOS {
        let trigger = if n % 2 == 0 {
            json!({"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": format!("h{n}")}})
        } else {
            json!({"id": 1, "module": "json:CreateJSON", "mapper": {"n": n}})
        };
        let mut blueprint = json!({
            "name": format!("Scenario {n:04}"),
            "flow": [trigger,
                {"id": 2, "module": "builtin:BasicRouter", "routes": [
                    {"flow": [{"id": 3, "module": "util:ComposeTransformer", "mapper": {"value": "a"}}]},
                    {"flow": [{"id": 4, "module": "util:ComposeTransformer", "mapper": {"value": "b"}}]}]}],
            "metadata": {"scenario": {"roundtrips": 1}}
        });
        if n % 2 == 1 {
            blueprint["scheduling"] = json!({"type": "indefinitely", "interval": 900});
        }
        let reply = http
            .post(format!("{base}/api/scenarios"))
            .bearer_auth(TOKEN)
            .body(blueprint.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 201, "{}", reply.text().await.unwrap());
        if n == 0 {
            let body: Value = reply.json().await.unwrap();
            first_id = body["id"].as_str().unwrap().to_string();
        }
    }
    println!(
        "stored {SCENARIOS} scenarios in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let cold = timings(&http, &format!("{base}/scenarios"), &cookie, 1).await;
    describe(
        "GET /scenarios, 1,000 scenarios, first (compiles all)",
        &cold,
    );
    let warm = timings(&http, &format!("{base}/scenarios"), &cookie, 20).await;
    describe("GET /scenarios, 1,000 scenarios", &warm);
    assert!(!first_id.is_empty());

    // 2. One execution with 10,000 bundles from a repeater (and 10,000 more below it).
    let blueprint = json!({
        "name": "Ten thousand bundles",
        "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "many"}},
            {"id": 2, "module": "builtin:BasicRepeater", "mapper": {"start": 1, "repeats": BUNDLES, "step": 1}},
            {"id": 3, "module": "util:SetVariable2", "mapper": {"name": "i", "scope": "roundtrip", "value": "item {{2.i}}"}}
        ],
        "metadata": {"scenario": {"roundtrips": 1}}
    });
    let created: Value = http
        .post(format!("{base}/api/scenarios"))
        .bearer_auth(TOKEN)
        .body(blueprint.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let run: Value = http
        .post(format!("{base}/api/scenarios/{id}/run"))
        .bearer_auth(TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let execution = run["executionId"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let report: Value = http
            .get(format!("{base}/api/executions/{execution}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if report["status"] == "success" {
            let stored: u64 = report["modules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["stored"].as_u64().unwrap_or(0))
                .sum();
            println!("the execution stored {stored} bundles");
            break;
        }
        assert!(report["status"] != "error", "{report}");
        assert!(Instant::now() < deadline, "the execution did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = timings(
        &http,
        &format!("{base}/executions/{execution}"),
        &cookie,
        20,
    )
    .await;
    describe("GET /executions/{id}, 20,001 bundles stored", &page);
    let bundles = timings(
        &http,
        &format!("{base}/executions/{execution}/bundles?module=2&offset=5000"),
        &cookie,
        20,
    )
    .await;
    describe(
        "GET /executions/{id}/bundles (a page of 20 at offset 5,000)",
        &bundles,
    );
    // Module 3's inputs come after its 10,000 outputs in its key range.
    let inputs = timings(
        &http,
        &format!("{base}/executions/{execution}/bundles?module=3&offset=5000&bundles=input"),
        &cookie,
        20,
    )
    .await;
    describe(
        "GET /executions/{id}/bundles?bundles=input (a page of 20 inputs at offset 5,000)",
        &inputs,
    );
}
