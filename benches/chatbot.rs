//! The ChatBot app against the fake ChatBot API (`tests/common/chatbot.rs`), two figures of
//! `docs/performance.md`:
//!
//! 1. **Engine overhead per app module call**, in-process: Search User (100 users over 3
//!    pages of 40) → Create a Story per bundle (103 requests), run through `engine::run`
//!    with the stored connection resolved by the real vault (SQLite, sealed). The same 103
//!    requests sent by a bare `reqwest` client, one after the other, are the fake's and the
//!    loopback's own time; the difference divided by 103 is what the engine adds per call
//!    (rendering, input checks, the connection, response mapping, the executor).
//! 2. **Watch New Messages through `serve`** → Create a User: the release binary with its
//!    defaults (embedded SQLite), events POSTed to the scenario's hook by 16 concurrent
//!    senders as ChatBot would send them; events accepted per second, and executions finished
//!    per second (each one a Create a User: a POST and a GET on the fake).
//!
//! `cargo bench --bench chatbot` (a plain `main`, not criterion: figures are printed).

#[path = "../tests/common/chatbot.rs"]
mod chatbot;
#[path = "../tests/common/server.rs"]
#[allow(dead_code)]
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use switchyard::apps::{AppOptions, AppRegistry};
use switchyard::connections::{KeySource, Keyring, MasterKey, NewConnectionInput, Vault};
use switchyard::engine::{self, RunInput, Status};
use switchyard::module::{Connections, ConnectionsHandle, ExecutionContext, Extensions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOKEN: &str = "bench-token-0123456789";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        module_call_overhead().await;
        serve_throughput().await;
    });
}

async fn module_call_overhead() {
    let fake = chatbot::FakeChatBot::start(TOKEN).await;
    fake.add_users(100);
    let dir = tempfile::tempdir().unwrap();
    let store = switchyard::store::Store::open_sqlite(dir.path())
        .await
        .unwrap();
    let vault = Arc::new(Vault::new(
        store,
        Keyring::new(MasterKey::generate(), KeySource::Environment),
    ));
    let mut fields = Map::new();
    fields.insert("token".into(), json!(TOKEN));
    fields.insert("baseUrl".into(), json!(fake.base_url));
    vault
        .create(&NewConnectionInput {
            id: None,
            name: "chatbot".into(),
            app: "chatbot".into(),
            kind: None,
            fields,
            test: false,
        })
        .await
        .unwrap();
    // What a module call pays to find its connection: a store read and an unseal the first
    // time, the vault's memory afterwards.
    let started = Instant::now();
    for _ in 0..1000 {
        vault.open("chatbot").await.unwrap();
    }
    let open_us = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    for _ in 0..1000 {
        Connections::resolve(vault.as_ref(), "chatbot")
            .await
            .unwrap();
    }
    let resolve_us = started.elapsed().as_secs_f64() * 1e3;
    let mut extensions = Extensions::default();
    extensions.insert::<ConnectionsHandle>(vault.handle());

    let registry = AppRegistry::build(AppOptions::allowing_loopback()).unwrap();
    let blueprint = json!({
        "name": "bench",
        "flow": [
            {"id": 1, "module": "util:BasicTrigger", "parameters": {}},
            {"id": 2, "module": "chatbot:SearchUsers", "parameters": {"__IMTCONN__": "chatbot"},
             "mapper": {"sortField": "createdAt", "sortOrder": "asc", "limit": 100}},
            {"id": 3, "module": "chatbot:CreateStory", "parameters": {"__IMTCONN__": "chatbot"},
             "mapper": {"name": "Story for {{2.id}}", "description": "{{2.attributes.default_email}}"}}
        ]
    });
    let scenario = switchyard::scenario::load(&blueprint.to_string(), &registry).unwrap();
    let run = || {
        engine::run(
            &scenario,
            RunInput {
                bundles: vec![json!({})],
                context: ExecutionContext {
                    execution_id: "bench".into(),
                    scenario_id: None,
                    extensions: extensions.clone(),
                },
                ..RunInput::default()
            },
        )
    };
    let before = fake.total_calls();
    let check = run().await;
    assert_eq!(check.status, Status::Success, "{:?}", check.error);
    let calls = fake.total_calls() - before;

    // The same requests, bare: the fake's and the loopback's own time.
    let client = reqwest::Client::new();
    let bearer = format!("Bearer {TOKEN}");
    let bare = || async {
        let mut after: Option<String> = None;
        let mut ids = Vec::new();
        for _ in 0..3 {
            let mut request = client
                .get(format!("{}/users", fake.base_url))
                .header("authorization", &bearer)
                .query(&[
                    ("limit", "40"),
                    ("sort.field", "createdAt"),
                    ("sort.order", "asc"),
                ]);
            if let Some(after) = &after {
                request = request.query(&[("after", after)]);
            }
            let page: Value = request.send().await.unwrap().json().await.unwrap();
            for user in page["data"].as_array().unwrap() {
                ids.push(user["id"].as_str().unwrap().to_string());
            }
            after = ids.last().cloned();
        }
        for id in ids.iter().take(100) {
            client
                .post(format!("{}/v2/stories", fake.base_url))
                .header("authorization", &bearer)
                .json(&json!({"name": format!("Story for {id}"), "description": "x"}))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
        }
    };
    let before = fake.total_calls();
    bare().await;
    assert_eq!(
        fake.total_calls() - before,
        calls,
        "the bare client makes the same requests"
    );
    let rounds = 30;
    let (mut engine_times, mut bare_times) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Alternate, so drift of the machine affects both sides alike.
        let started = Instant::now();
        let report = run().await;
        engine_times.push(started.elapsed().as_secs_f64());
        assert_eq!(report.status, Status::Success);
        let started = Instant::now();
        bare().await;
        bare_times.push(started.elapsed().as_secs_f64());
    }
    // Medians: a round disturbed by the rest of the machine does not move them.
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (engine_run, bare_run) = (median(engine_times), median(bare_times));
    let overhead_us = (engine_run - bare_run) / calls as f64 * 1e6;
    println!(
        "chatbot/module calls: Search User (100 over 3 pages) → Create a Story ×100 = {calls} \
         requests; engine {:.1} ms, bare client {:.1} ms per run (medians); engine overhead {overhead_us:.1} \
         µs per app module call ({rounds} rounds); opening the connection {open_us:.1} µs, \
         resolving it again {resolve_us:.2} µs",
        engine_run * 1e3,
        bare_run * 1e3,
    );
}

async fn serve_throughput() {
    let fake = chatbot::FakeChatBot::start(TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let binary = env!("CARGO_BIN_EXE_switchyard");
    let data_arg = data.to_str().unwrap();
    let add = std::process::Command::new(binary)
        .args([
            "connections",
            "add",
            "chatbot",
            "--app",
            "chatbot",
            "--token",
            TOKEN,
        ])
        .args(["--base-url", &fake.base_url, "--data-dir", data_arg])
        .output()
        .unwrap();
    assert!(add.status.success(), "{add:?}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut serve = std::process::Command::new(binary)
        .args(["serve", "--data-dir", data_arg, "--port", &port.to_string()])
        // The one flag off the defaults: Make's per-hook limit (300 per 10 s) would cap one
        // hook at 30 events/s; this measures the engine, not that limit.
        .args(["--hook-rate", "1000000"])
        .env("SWITCHYARD_API_TOKEN", TOKEN)
        .env("SWITCHYARD_ALLOW_EGRESS", "127.0.0.1")
        .env("SWITCHYARD_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    while client.get(format!("{base}/health")).send().await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let blueprint = json!({
        "name": "messages to users",
        "flow": [
            {"id": 1, "module": "chatbot:WatchNewMessages", "parameters": {"__IMTCONN__": "chatbot"},
             "mapper": {"webhookName": "bench"}},
            {"id": 2, "module": "chatbot:CreateUser", "parameters": {"__IMTCONN__": "chatbot"},
             "mapper": {"userIdMode": "manual", "customUserId": "{{1.messageId}}",
                        "email": "{{1.userAttributes.default_email}}"}}
        ]
    });
    let api = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{base}{path}"))
            .bearer_auth(TOKEN)
    };
    let created: Value = api(reqwest::Method::POST, "/api/scenarios")
        .json(&blueprint)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let hook = format!("{base}{}", created["hooks"][0]["url"].as_str().unwrap());
    let activated = api(
        reqwest::Method::POST,
        &format!("/api/scenarios/{id}/activate"),
    )
    .send()
    .await
    .unwrap();
    assert!(activated.status().is_success());
    assert_eq!(fake.webhooks().len(), 1);

    let cpu_before = (cpu_seconds(serve.id()), cpu_seconds(std::process::id()));
    let window = Duration::from_secs(10);
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let senders: Vec<_> = (0..16)
        .map(|sender| {
            let (client, hook, sent) = (client.clone(), hook.clone(), sent.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while started.elapsed() < window {
                    n += 1;
                    let message = format!("m-{sender}-{n}");
                    let event = json!({"chatId": "c", "messageId": message, "userId": "u",
                        "userAttributes": {"default_email": format!("{message}@example.com")},
                        "attributes": {}});
                    let reply = client
                        .post(&hook)
                        .header("x-request-id", &message)
                        .json(&event)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(reply.status(), 200);
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    let accepted_in = started.elapsed();
    let accepted = sent.load(Ordering::Relaxed);
    while (fake.user_count() as u64) < accepted {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let finished_in = started.elapsed();
    let serve_cpu = cpu_seconds(serve.id()) - cpu_before.0;
    let bench_cpu = cpu_seconds(std::process::id()) - cpu_before.1;
    println!(
        "chatbot/serve: Watch New Messages → Create a User, 16 senders, SQLite defaults: \
         {accepted} events accepted in {:.1} s = {:.0} events/s; all users created after \
         {:.1} s = {:.0} executions/s",
        accepted_in.as_secs_f64(),
        accepted as f64 / accepted_in.as_secs_f64(),
        finished_in.as_secs_f64(),
        accepted as f64 / finished_in.as_secs_f64(),
    );
    println!(
        "chatbot/serve: CPU over the run: serve {serve_cpu:.1} s ({:.0} µs per event), the \
         senders and the fake {bench_cpu:.1} s, on {} cores",
        serve_cpu / accepted as f64 * 1e6,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = serve.kill();
    let _ = serve.wait();
}

/// User + system CPU seconds process `pid` has used (Linux `/proc`), 0 elsewhere.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) closed by ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}
