//! The regular-expression backtrack limit end to end, through the real `switchyard` binary: a
//! catastrophic pattern (`^(a+)+\1$` on 30,000 `a`s and a `!`) in a Text parser module ends
//! its execution with a `DataError` naming the pattern and the flag, under `run` (default and
//! lowered `--regex-backtrack-limit`) and under `serve`, where `/health` and another
//! execution are answered while it still runs.

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use harness::*;

const CATASTROPHIC: &str = r"^(a+)+\1$";

/// Webhook → `regexp:Parser` with the catastrophic pattern over `{{1.text}}` → a variable.
fn catastrophic_parser(hook: &str) -> Value {
    json!({"name": "catastrophic", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": hook}},
        {"id": 2, "module": "regexp:Parser",
         "parameters": {"pattern": CATASTROPHIC, "global": false, "sensitive": true,
                        "multiline": false, "singleline": false, "continueWhenNoRes": false},
         "mapper": {"text": "{{1.text}}"}},
        {"id": 3, "module": "util:SetVariable2",
         "mapper": {"name": "m", "scope": "roundtrip", "value": "{{2.i}}"}}
    ]})
}

fn runaway_text() -> String {
    format!("{}!", "a".repeat(30_000))
}

/// `switchyard run FILE --json --input … ARGS…`: exit code and report.
fn run(dir: &Path, text: &str, args: &[&str]) -> (Option<i32>, Value) {
    let file = dir.join("catastrophic.json");
    std::fs::write(&file, catastrophic_parser("c").to_string()).unwrap();
    let input = json!({ "text": text }).to_string();
    let out = Command::new(binary())
        .arg("run")
        .arg(&file)
        .args(["--json", "--input", &input])
        .args(args)
        .output()
        .expect("switchyard run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not a report ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

fn assert_too_complex(error: &Value, limit: u64) {
    assert_eq!(error["name"], "DataError", "{error}");
    assert_eq!(error["module"], 2, "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("/{CATASTROPHIC}/"))
            && message.contains(&format!("more than {limit} backtracking steps"))
            && message.contains("--regex-backtrack-limit"),
        "{message}"
    );
}

#[test]
fn run_ends_a_catastrophic_pattern_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = run(dir.path(), &runaway_text(), &[]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["status"], "error", "{report}");
    assert_too_complex(&report["error"], 1_000_000);

    // The limit is the flag's.
    let (code, report) = run(
        dir.path(),
        &runaway_text(),
        &["--regex-backtrack-limit", "5000"],
    );
    assert_eq!(code, Some(1), "{report}");
    assert_too_complex(&report["error"], 5_000);

    // Text the pattern matches runs as JavaScript would: group 1 is one `a`.
    let (code, report) = run(dir.path(), "aaaa", &["--regex-backtrack-limit", "5000"]);
    assert_eq!(code, Some(0), "{report}");
    let parsed: Vec<&Value> = report["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["module"] == 2)
        .map(|e| &e["output"])
        .collect();
    assert_eq!(
        parsed,
        [&json!({"i": 1, "$1": "a", "__IMTMATCH__": "aaaa"})]
    );
}

#[test]
fn the_flag_is_on_every_command_that_runs_scenarios_and_is_checked() {
    for command in ["run", "serve", "worker"] {
        let out = Command::new(binary())
            .args([command, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("--regex-backtrack-limit"),
            "`{command} --help`:\n{help}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.json");
    std::fs::write(&file, catastrophic_parser("c").to_string()).unwrap();
    let out = Command::new(binary())
        .arg("run")
        .arg(&file)
        .args(["--regex-backtrack-limit", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("0 is not in 1.."), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_health_and_other_executions_while_a_pattern_runs_away() {
    let db = TestDb::new(Backend::Sqlite)
        .await
        .expect("a SQLite database");
    // A limit high enough that the runaway evaluation is still going when the probes below
    // are answered (seconds in the debug build), and low enough to end the test soon.
    let svc = db.serve(&["--regex-backtrack-limit", "20000000"]).await;
    let (_, heavy_hook) = svc.api.create_active(&catastrophic_parser("heavy")).await;
    let (_, light_hook) = svc.api.create_active(&hook_scenario("light")).await;
    let http = reqwest::Client::new();

    let heavy = hook_json(
        &http,
        &svc.url(&heavy_hook.expect("a hook")),
        &json!({ "text": runaway_text() }),
    )
    .await;
    let heavy = execution_header(&heavy);
    // The heavy execution has started its module call before the probes.
    eventually("the heavy execution to start", 60, || async {
        let execution = svc.api.execution(&heavy).await;
        match execution["status"].as_str() {
            Some("running") => Ok(()),
            _ => Err(execution.to_string()),
        }
    })
    .await;

    let health = Reply::from(http.get(svc.url("/health")).send().await.unwrap()).await;
    assert_eq!(health.status.as_u16(), 200, "{}", health.text);
    let light = hook_json(
        &http,
        &svc.url(&light_hook.expect("a hook")),
        &json!({"n": 1}),
    )
    .await;
    let light = svc.api.finished(&execution_header(&light)).await;
    assert_eq!(light["status"], "success", "{light}");
    let still = svc.api.execution(&heavy).await;
    assert!(
        !is_terminal(still["status"].as_str().unwrap_or("")),
        "the runaway pattern ended before the probes were answered, so they prove nothing: {still}"
    );

    let execution = svc.api.finished(&heavy).await;
    assert_eq!(execution["status"], "error", "{execution}");
    assert_too_complex(&execution["error"], 20_000_000);
}
