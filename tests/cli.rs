//! The `switchyard` binary as users call it: exit codes, output formats, input sources.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SWITCHYARD_ALLOW_EGRESS", "127.0.0.1")
        .output()
        .expect("run switchyard")
}

fn switchyard_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SWITCHYARD_ALLOW_EGRESS", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchyard");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn run_json_prints_exactly_the_report_of_the_case() {
    let case: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/cases/example-router-filters.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let input = case["input"].to_string();
    let out = switchyard(&[
        "run",
        "scenarios/router-filters.json",
        "--input",
        &input,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(
        common::json_diff(&case["expected"], &report),
        Vec::<String>::new()
    );
    let keys: Vec<&String> = report.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["status", "operations", "cycles", "log", "error"]);
}

#[test]
fn run_reads_input_from_a_file_and_from_stdin_and_prints_a_trace() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.json");
    std::fs::write(
        &file,
        r#"{"id": "A-1", "lines": [{"sku": "x", "qty": 1, "price": 2}]}"#,
    )
    .unwrap();
    let out = switchyard(&[
        "run",
        "scenarios/iterator-aggregator.json",
        "--input",
        &format!("@{}", file.display()),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let trace = text(&out.stdout);
    assert!(
        trace.starts_with("Order summary — success · 5 operations · 1 cycle"),
        "{trace}"
    );
    assert!(
        trace.contains("[2] builtin:BasicFeeder \"Each line\": 1 run → 1 bundle"),
        "{trace}"
    );
    assert!(
        trace.contains("response: 200 {\"order\": \"A-1\", \"lines\": 1, \"total\": 2}"),
        "{trace}"
    );

    let out = switchyard_stdin(
        &[
            "run",
            "scenarios/iterator-aggregator.json",
            "--input",
            "-",
            "--json",
        ],
        r#"{"id": "B", "lines": []}"#,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["response"]["body"],
        json!("{\"order\": \"B\", \"lines\": 0, \"total\": 0}")
    );
}

#[test]
fn run_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let failing = dir.path().join("fails.json");
    std::fs::write(
        &failing,
        r#"{"flow": [{"id": 1, "module": "builtin:BasicRepeater", "mapper": {"repeats": -1}}]}"#,
    )
    .unwrap();
    let out = switchyard(&["run", failing.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "error");
    assert_eq!(report["error"]["module"], 1);

    let out = switchyard(&["run", "scenarios/does-not-exist.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read scenarios/does-not-exist.json"));

    let out = switchyard(&[
        "run",
        "scenarios/router-filters.json",
        "--input",
        "{not json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--input is not valid JSON (line 1, column 2)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn validate_exit_codes_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let invalid = dir.path().join("invalid.json");
    std::fs::write(&invalid, r#"{"flow": [{"id": 1, "module": "gateway:CustomWebHook"}, {"id": 2, "module": "util:SetVariable2", "mapper": {"name": "x", "value": "{{7.name}}"}}]}"#).unwrap();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"flow\": [").unwrap();

    let out = switchyard(&[
        "validate",
        "scenarios/iterator-aggregator.json",
        "scenarios/router-filters.json",
        "scenarios/error-handler.json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(text(&out.stdout).matches(": valid").count(), 3);

    let out = switchyard(&[
        "validate",
        "scenarios/router-filters.json",
        invalid.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout)
            .contains("invalid.json: flow[1].mapper.value: column 3: unknown module 7 in {{7.…}}"),
        "{}",
        text(&out.stdout)
    );

    let out = switchyard(&[
        "validate",
        invalid.to_str().unwrap(),
        broken.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results[0]["valid"], false);
    assert!(
        results[1]["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON at line 1")
    );
}

#[test]
fn eval_prints_json_values() {
    let out = switchyard(&[
        "eval",
        "{{1.items}}",
        "--bundle",
        r#"{"1": {"items": [1, 2]}}"#,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "[1,2]");
    let out = switchyard(&["eval", "--bundle", "[1]", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--bundle must be an object"));
}

#[test]
fn schema_describes_the_blueprint_format() {
    let out = switchyard(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["title"], "Blueprint");
    assert!(schema["properties"]["flow"].is_object());
    assert_eq!(schema["required"], json!(["flow"]));
}

/// `switchyard run` refuses requests to loopback unless `--allow-egress` or
/// `SWITCHYARD_ALLOW_EGRESS` (comma-separated) allows them; a bad allowance is an argument
/// error naming it. `serve` and `worker` take the same option.
#[tokio::test(flavor = "multi_thread")]
async fn run_obeys_the_egress_guard_and_its_allowances() {
    let server = common::server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("call.json");
    let scenario = json!({"name": "call", "flow": [{
        "id": 1, "module": "http:MakeRequest", "version": 4,
        "mapper": {"url": format!("http://{server}/json"), "method": "get", "parseResponse": true}
    }]});
    std::fs::write(&file, scenario.to_string()).unwrap();
    let run = |args: &[&str], env: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .arg("run")
            .arg(&file)
            .arg("--json")
            .args(args)
            .env_remove("SWITCHYARD_ALLOW_EGRESS");
        if let Some(value) = env {
            command.env("SWITCHYARD_ALLOW_EGRESS", value);
        }
        command.output().expect("run switchyard")
    };

    let out = run(&[], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "error", "{report}");
    let shown = report["error"].to_string();
    assert!(shown.contains("InvalidConfigurationError"), "{shown}");
    assert!(shown.contains("--allow-egress 127.0.0.1"), "{shown}");
    assert!(shown.contains("SWITCHYARD_ALLOW_EGRESS"), "{shown}");

    for (args, env) in [
        (&["--allow-egress", "127.0.0.1"][..], None),
        (
            &[
                "--allow-egress",
                "10.0.0.0/8",
                "--allow-egress",
                "127.0.0.0/8",
            ][..],
            None,
        ),
        (&[][..], Some("10.0.0.0/8, 127.0.0.1")),
        (&["--allow-egress", "::1,127.0.0.1"][..], None),
    ] {
        let out = run(args, env);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?} {env:?}: {}",
            text(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            report["log"][0]["output"]["data"]["users"][0]["name"], "Ann",
            "{report}"
        );
    }

    let out = run(&["--allow-egress", "127.1"], None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--allow-egress"), "{stderr}");
    assert!(
        stderr.contains("\"127.1\" is not an egress allowance"),
        "{stderr}"
    );
    let out = run(&[], Some("127.0.0.1,http://x"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("\"http://x\""),
        "{}",
        text(&out.stderr)
    );

    for command in ["serve", "worker"] {
        let out = switchyard(&[command, "--help"]);
        let help = text(&out.stdout);
        assert!(help.contains("--allow-egress <HOST|CIDR>"), "{help}");
        assert!(help.contains("SWITCHYARD_ALLOW_EGRESS"), "{help}");
    }
}

#[test]
fn a_public_url_that_services_cannot_call_is_refused() {
    for (url, expected) in [
        ("ftp://hooks.example.com", "http:// or https://"),
        ("https://hooks.example.com/?k=v", "query or a fragment"),
        ("not a url", "not a URL"),
    ] {
        for command in [&["serve"][..], &["scenarios", "list"][..]] {
            let mut args = command.to_vec();
            args.extend(["--public-url", url]);
            let out = switchyard(&args);
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            let stderr = text(&out.stderr);
            assert!(
                stderr.contains("--public-url") && stderr.contains(expected),
                "{args:?}: {stderr}"
            );
        }
    }
}

#[test]
fn run_takes_a_called_scenarios_input_as_its_declared_inputs_and_a_call_needs_the_service() {
    let callee = "tests/data/exports/subscenario-callee.json";
    let out = switchyard(&[
        "run",
        callee,
        "--input",
        r#"{"orderNumber": "C-3", "quantity": "4", "express": "true"}"#,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["outputs"],
        json!({"orderNumber": "C-3", "total": 40, "shipping": "express"})
    );

    let out = switchyard(&["run", callee, "--input", r#"{"quantity": "four"}"#]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--input.orderNumber: is required (text)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--input.quantity: expected a number, got text \"four\""),
        "{stderr}"
    );

    let out = switchyard(&[
        "run",
        "tests/data/exports/subscenario-caller.json",
        "--input",
        r#"{"order": "C-3"}"#,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["error"]["module"], json!(2));
    assert_eq!(report["error"]["name"], json!("InvalidConfigurationError"));
}

#[test]
fn apps_list_names_the_apps_and_an_unknown_module_says_which_part_is_missing() {
    let out = switchyard(&["apps", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    for app in ["chatbot", "google-sheets", "http"] {
        assert!(
            listed.lines().any(|l| l.starts_with(&format!("{app} "))),
            "{app} in {listed}"
        );
    }
    let out = switchyard(&["apps", "list", "google-sheets", "--json"]);
    let modules: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        modules["modules"]
            .as_array()
            .unwrap()
            .contains(&json!("addRow")),
        "{modules}"
    );
    let out = switchyard(&["apps", "list", "acme-crm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no app \"acme-crm\" is installed"));

    // validate: a missing app, and a module its app lacks, each with the way on.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("unknown.json");
    std::fs::write(
        &file,
        json!({"name": "unknown", "flow": [
            {"id": 1, "module": "acme-crm:AddLead", "mapper": {}},
            {"id": 2, "module": "google-sheets:noSuchModule", "version": 2, "mapper": {}}
        ]})
        .to_string(),
    )
    .unwrap();
    let out = switchyard(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(
        said.contains("flow[0].module: unknown module type \"acme-crm:AddLead\": no app \"acme-crm\" is installed (`switchyard apps list` lists the apps"),
        "{said}"
    );
    assert!(
        said.contains("flow[1].module: unknown module type \"google-sheets:noSuchModule\": the google-sheets app has no module \"noSuchModule\" (`switchyard apps list google-sheets` lists its modules)"),
        "{said}"
    );
}
