//! Per-execution budgets end to end, through the real `switchyard` binary: `run` (nested
//! repeaters, a 1,000,000-item iterator, a quadratic `replace`, the wall time) with its peak
//! memory read from `/proc` while it runs, and `serve`, where an execution that runs out of
//! its budget ends `error` while the service keeps answering and runs the next one.
//!
//! The operation budgets are lowered in these tests (the debug build runs flow control about
//! ten times slower than the release build); `docs/reliability.md` has the figures of the
//! release build with the defaults.

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use harness::*;

/// What one `switchyard run --json` did.
struct Measured {
    code: Option<i32>,
    report: Value,
    stderr: String,
    /// Peak resident memory (VmHWM) in MB, as last read while the process ran.
    peak_mb: f64,
    elapsed: Duration,
}

/// Runs `switchyard run FILE --json ARGS…` to its end, reading its peak resident memory from
/// `/proc/PID/status` every few milliseconds while it runs.
fn run_measured(dir: &Path, file: &Path, args: &[&str]) -> Measured {
    let stdout_path = dir.join("report.json");
    let stderr_path = dir.join("stderr.txt");
    let started = Instant::now();
    let mut child = Command::new(binary())
        .arg("run")
        .arg(file)
        .arg("--json")
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn switchyard run");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    let status = loop {
        if let Some(kb) = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|s| vm_hwm_kb(&s))
        {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "switchyard run did not end within 300 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    Measured {
        code: status.code(),
        report: serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("stdout is not a report ({e}): {stdout}\n{stderr}")),
        stderr,
        peak_mb: peak_kb as f64 / 1024.0,
        elapsed,
    }
}

/// The `VmHWM:` line of `/proc/PID/status`, in kB.
fn vm_hwm_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Webhook → repeater (`outer`) → repeater (`inner`) → set variable. The repeats are read
/// from the bundle, `{{1.outer}}` and `{{1.inner}}`.
fn nested_repeaters() -> Value {
    json!({"name": "nested repeaters", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "nested"}},
        {"id": 2, "module": "builtin:BasicRepeater",
         "mapper": {"start": 1, "repeats": "{{1.outer}}", "step": 1}},
        {"id": 3, "module": "builtin:BasicRepeater",
         "mapper": {"start": 1, "repeats": "{{1.inner}}", "step": 1}},
        {"id": 4, "module": "util:SetVariable2",
         "mapper": {"name": "x", "scope": "roundtrip", "value": "{{2.i * 3.i}}"}}
    ]})
}

fn write(dir: &Path, name: &str, value: &Value) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path
}

/// The report's error, which must be the budget `budget` running out.
fn interrupted<'a>(m: &'a Measured, budget: &str) -> &'a Value {
    assert_eq!(m.code, Some(1), "exit code; stderr: {}", m.stderr);
    assert_eq!(m.report["status"], "error", "{}", m.report["error"]);
    let error = &m.report["error"];
    assert_eq!(error["name"], "ExecutionInterruptedError", "{error}");
    assert_eq!(error["details"]["budget"], budget, "{error}");
    error
}

#[test]
fn nested_repeaters_stop_at_the_operations_budget_and_the_log_keeps_the_first_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "nested.json", &nested_repeaters());
    let m = run_measured(
        dir.path(),
        &file,
        &[
            "--input",
            r#"{"outer": 10000, "inner": 10000}"#,
            "--max-operations",
            "300000",
            "--log-bundles-per-module",
            "50",
        ],
    );
    let error = interrupted(&m, "operations");
    assert_eq!(
        error["message"],
        "the execution ran 300000 operations, its limit (--max-operations 300000)"
    );
    assert_eq!(m.report["operations"], 300_000);
    let log = m.report["log"].as_array().unwrap();
    for module in 1..=4 {
        let kept: Vec<&Value> = log.iter().filter(|e| e["module"] == module).collect();
        assert_eq!(
            kept.len(),
            if module == 1 { 1 } else { 50 },
            "module {module}"
        );
    }
    // The first bundles are kept: module 3's first fifty are i = 1…50 of the first run.
    let firsts: Vec<&Value> = log
        .iter()
        .filter(|e| e["module"] == 3)
        .map(|e| &e["output"]["i"])
        .collect();
    assert_eq!(firsts.first(), Some(&&json!(1)));
    assert_eq!(firsts.last(), Some(&&json!(50)));
    assert!(m.peak_mb < 200.0, "peak RSS {:.0} MB", m.peak_mb);
}

#[test]
fn the_wall_time_ends_a_run_that_would_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "nested.json", &nested_repeaters());
    let m = run_measured(
        dir.path(),
        &file,
        &[
            "--input",
            r#"{"outer": 10000, "inner": 10000}"#,
            "--max-execution-seconds",
            "2",
        ],
    );
    let error = interrupted(&m, "wallTime");
    assert_eq!(
        error["message"],
        "the execution ran for 2 s, its time limit (--max-execution-seconds 2)"
    );
    assert!(
        m.elapsed < Duration::from_secs(15),
        "ended after {:?}",
        m.elapsed
    );
}

#[test]
fn a_million_item_iterator_ends_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "iterate.json",
        &json!({"name": "big iterator", "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "iterate"}},
            {"id": 2, "module": "builtin:BasicFeeder", "mapper": {"array": "{{1.items}}"}},
            {"id": 3, "module": "util:SetVariable2",
             "mapper": {"name": "x", "scope": "roundtrip", "value": "{{2.value}}"}}
        ]}),
    );
    let items: Vec<u32> = (0..1_000_000).collect();
    let input = write(dir.path(), "items.json", &json!({ "items": items }));
    let input_arg = format!("@{}", input.display());
    let m = run_measured(dir.path(), &file, &["--input", &input_arg]);
    // Its million bundles would take about 640 MB (2.5 GB of memory before budgets): the
    // iterator is stopped before it builds them.
    let error = interrupted(&m, "bundleBytes");
    assert_eq!(error["module"], 2);
    assert_eq!(
        error["message"],
        "the execution's bundles would take more than 268435456 bytes, its limit \
         (--max-bundle-bytes 268435456)"
    );
    assert!(m.peak_mb < 500.0, "peak RSS {:.0} MB", m.peak_mb);
    eprintln!(
        "1,000,000-item iterator: {:.1} s, peak RSS {:.0} MB",
        m.elapsed.as_secs_f64(),
        m.peak_mb
    );
}

#[test]
fn a_quadratic_replace_fails_fast_with_small_memory() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "replace.json",
        &json!({"name": "replace", "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "r"}},
            {"id": 2, "module": "util:SetVariable2", "mapper": {
                "name": "x", "scope": "roundtrip",
                "value": "{{replace(replace(replace(1.a; \"\"; 1.a); \"\"; 1.a); \"\"; 1.a)}}"}}
        ]}),
    );
    let input = json!({"a": "a".repeat(200)}).to_string();
    let m = run_measured(dir.path(), &file, &["--input", &input]);
    assert_eq!(m.code, Some(1), "{}", m.stderr);
    let error = &m.report["error"];
    assert_eq!(error["name"], "DataError", "{error}");
    assert_eq!(error["module"], 2);
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("mapper.value: column 3: replace(): the result would take at least "),
        "{message}"
    );
    assert!(m.peak_mb < 200.0, "peak RSS {:.0} MB", m.peak_mb);
    assert!(m.elapsed < Duration::from_secs(10), "{:?}", m.elapsed);
}

#[test]
fn budget_flags_are_on_every_command_that_runs_scenarios_and_are_checked() {
    for command in ["run", "serve", "worker"] {
        let out = Command::new(binary())
            .args([command, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in [
            "--max-execution-seconds",
            "--max-operations",
            "--max-bundle-bytes",
            "--log-bundles-per-module",
        ] {
            assert!(
                help.contains(flag),
                "`{command} --help` lacks {flag}:\n{help}"
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "nested.json", &nested_repeaters());
    for (flag, value, complaint) in [
        ("--max-operations", "0", "0 is not in 1.."),
        ("--max-execution-seconds", "0", "0 is not in 1.."),
        ("--max-bundle-bytes", "12MB", "unknown unit \"MB\""),
        (
            "--max-bundle-bytes",
            "0",
            "expected a positive number of bytes",
        ),
    ] {
        let out = Command::new(binary())
            .arg("run")
            .arg(&file)
            .args([flag, value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(complaint), "{flag} {value}: {stderr}");
    }
    // A unit is accepted: 16 KiB cannot hold the first repeater's hundred bundles.
    let m = run_measured(
        dir.path(),
        &file,
        &[
            "--input",
            r#"{"outer": 100, "inner": 100}"#,
            "--max-bundle-bytes",
            "16KiB",
        ],
    );
    let error = interrupted(&m, "bundleBytes");
    assert_eq!(error["details"]["limit"], 16 * 1024);
}

// ---------------------------------------------------------------------------------------------
// serve
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_ends_an_execution_over_budget_and_runs_the_next_sqlite() {
    let db = TestDb::new(Backend::Sqlite)
        .await
        .expect("a SQLite database");
    serve_ends_an_execution_over_budget_and_runs_the_next(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_ends_an_execution_over_budget_and_runs_the_next_postgres() {
    if let Some(db) = TestDb::new(Backend::Postgres).await {
        serve_ends_an_execution_over_budget_and_runs_the_next(db).await;
    }
}

async fn serve_ends_an_execution_over_budget_and_runs_the_next(db: TestDb) {
    let svc = db.serve(&["--max-operations", "200000"]).await;
    let (_, hook) = svc.api.create_active(&nested_repeaters()).await;
    let hook = svc.url(&hook.expect("a hook"));
    let http = reqwest::Client::new();

    // 10,000 × 10,000 nested repeaters: 100,000,000 operations, which used to exhaust the
    // memory of the process (every bundle was kept in the log).
    let heavy = hook_json(&http, &hook, &json!({"outer": 10_000, "inner": 10_000})).await;
    let heavy = execution_header(&heavy);
    let health = Reply::from(http.get(svc.url("/health")).send().await.unwrap()).await;
    assert_eq!(health.status.as_u16(), 200, "{}", health.text);
    let execution = svc.api.finished(&heavy).await;
    assert_eq!(execution["status"], "error", "{execution}");
    assert_eq!(execution["operations"], 200_000, "{execution}");
    let error = &execution["error"];
    assert_eq!(error["name"], "ExecutionInterruptedError", "{execution}");
    assert_eq!(
        error["message"],
        "the execution ran 200000 operations, its limit (--max-operations 200000)"
    );

    // The service lives and runs the next execution.
    let health = Reply::from(http.get(svc.url("/health")).send().await.unwrap()).await;
    assert_eq!(health.status.as_u16(), 200, "{}", health.text);
    let light = hook_json(&http, &hook, &json!({"outer": 3, "inner": 4})).await;
    let light = svc.api.finished(&execution_header(&light)).await;
    assert_eq!(light["status"], "success", "{light}");
    assert_eq!(light["operations"], 1 + 1 + 3 + 12);

    // A budget stop is not retried: the execution stays as it ended.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = svc.api.execution(&heavy).await;
    assert_eq!(again["status"], "error");
    assert_eq!(again["finishedAt"], execution["finishedAt"]);
}
