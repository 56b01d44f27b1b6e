//! Apps defined as data checked against the provider's published API description: Prism
//! (`@stoplight/prism-cli`, installed with the OAuth test server by `npm ci` in
//! `tests/oauth`) serves Google's Tasks description (`tests/apps/specs/`) as a validating
//! mock, and the test app `tests/apps/gtasks.json` (an `oauth2` connection type of provider
//! `google`) is run against it by the real binary through `--app-base-url`. Prism answers a
//! request that breaks the contract — method, path, query, body schema, or a missing bearer
//! token — with an error instead of a mock, so a module that sends what Google's API would
//! refuse fails here.
//!
//! - `requests_follow_the_published_contract`: listing and creating task lists succeed (the
//!   token sent as the description's OAuth2 scheme wants); a module whose query breaks the
//!   contract fails with Prism's 422.

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use harness::binary;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Prism serving `spec` on a free loopback port; killed on drop.
struct Prism {
    child: Child,
    url: String,
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prism {
    async fn start(spec: &Path) -> Prism {
        common::oauth::ensure_installed();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut child = Command::new(repo("tests/oauth/node_modules/.bin/prism"))
            .args([
                "mock",
                "--errors",
                "--dynamic",
                "--host",
                "127.0.0.1",
                "--port",
            ])
            .arg(port.to_string())
            .arg(spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("Prism (npm ci in tests/oauth) is needed");
        let stdout = child.stdout.take().unwrap();
        // Ready when it says it listens (its first lines list the operations it serves); its
        // output is read to the end, or Prism fails writing to a closed pipe.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap_or_default();
                if line.contains("Prism is listening") {
                    let _ = tx.send(());
                }
            }
        });
        let ready =
            tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)).is_ok())
                .await
                .unwrap();
        assert!(ready, "Prism did not start");
        Prism {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

fn switchyard(api: &str, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("SWITCHYARD_APPS_DIR", repo("tests/apps"))
        .env("SWITCHYARD_ALLOW_EGRESS", "127.0.0.1")
        .env_remove("SWITCHYARD_DATABASE_URL")
        .env_remove("SWITCHYARD_MASTER_KEY")
        .env_remove("SWITCHYARD_APP_BASE_URLS")
        .arg("--app-base-url")
        .arg(format!("gtasks={api}/tasks/v1/"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn run(api: &str, dir: &Path, data: &Path, module: &str, mapper: Value) -> Value {
    let file = dir.join("scenario.json");
    let blueprint = json!({
        "name": module,
        "flow": [{"id": 1, "module": module, "version": 1,
                  "parameters": {"__IMTCONN__": "tasks"}, "mapper": mapper}]
    });
    std::fs::write(&file, serde_json::to_vec(&blueprint).unwrap()).unwrap();
    let out = switchyard(
        api,
        &[
            "run",
            file.to_str().unwrap(),
            "--json",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "no report: {}",
            String::from_utf8_lossy(&out.stderr).into_owned()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_follow_the_published_contract() {
    let prism = Prism::start(&repo("tests/apps/specs/google-tasks-v1.yaml")).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = switchyard(
        &prism.url,
        &[
            "connections",
            "add",
            "tasks",
            "--app",
            "gtasks",
            "--access-token",
            "ya29.test-token",
            "--scope",
            "https://www.googleapis.com/auth/tasks https://www.googleapis.com/auth/tasks.readonly",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let report = run(
        &prism.url,
        dir.path(),
        &data,
        "gtasks:ListTaskLists",
        json!({"limit": 3}),
    );
    assert_eq!(report["status"], "success", "{report}");

    let report = run(
        &prism.url,
        dir.path(),
        &data,
        "gtasks:CreateTaskList",
        json!({"title": "Groceries"}),
    );
    assert_eq!(report["status"], "success", "{report}");
    assert!(report["log"][0]["output"].is_object(), "{report}");

    // A query the description does not allow: Prism refuses it (422), the module fails.
    let report = run(
        &prism.url,
        dir.path(),
        &data,
        "gtasks:BrokenQuery",
        json!({}),
    );
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(report["error"]["name"], "DataError", "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[422]"),
        "{report}"
    );
}
