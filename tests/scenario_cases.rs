//! Scenario behaviour as data: every `tests/cases/*.json` is a scenario (inline, or a path to
//! one of the examples in `scenarios/`), the trigger input, and the exact execution report
//! expected. One runner executes them all; adding a case is adding a file.
//!
//! `$SERVER` in a case is replaced by the address of a loopback HTTP server (see
//! `common::server`), and `"$any"` in an expected report matches any value.

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;
use switchyard::engine::{self, RunInput};
use switchyard::scenario;

struct Case {
    name: String,
    scenario_text: String,
    input: Vec<Value>,
    expected: Value,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load_case(path: &Path, server: &str) -> Result<Case, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())?
        .replace("$SERVER", server);
    let case: Value = serde_json::from_str(&text).map_err(|e| format!("case is not JSON: {e}"))?;
    let scenario_text = match &case["scenario"] {
        Value::String(file) => std::fs::read_to_string(root().join(file))
            .map_err(|e| format!("{file}: {e}"))?
            .replace("$SERVER", server),
        Value::Object(_) => case["scenario"].to_string(),
        other => {
            return Err(format!(
                "\"scenario\" must be an object or a path, got {other}"
            ));
        }
    };
    let input = match &case["input"] {
        Value::Null => Vec::new(),
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    if case.get("expected").is_none() {
        return Err("missing \"expected\"".into());
    }
    Ok(Case {
        name: path.file_name().unwrap().to_string_lossy().into_owned(),
        scenario_text,
        input,
        expected: case["expected"].clone(),
    })
}

pub fn case_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("tests/cases"))
        .expect("tests/cases exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn every_case_produces_its_expected_report() {
    let server = common::server::start().await;
    let registry =
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback())
            .expect("registry");
    let files = case_files();
    assert!(
        files.len() >= 10,
        "expected the case library, found {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let case = match load_case(file, &server.to_string()) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        let scenario = match scenario::load(&case.scenario_text, &registry) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{}: scenario does not load: {e}", case.name));
                continue;
            }
        };
        let input = RunInput {
            bundles: case.input,
            context: switchyard::module::ExecutionContext::new("test"),
            ..RunInput::default()
        };
        let report = engine::run(&scenario, input).await.to_json();
        let diffs = common::json_diff(&case.expected, &report);
        if !diffs.is_empty() {
            failures.push(format!(
                "{}:\n    {}\n    actual: {report}",
                case.name,
                diffs.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// Each example in `scenarios/` is exercised by at least one case.
#[test]
fn every_example_scenario_has_a_case() {
    // A case of tests/cases, or a test of its own (examples that call an app's API run
    // against its fake in a test file, e.g. tests/chatbot_service.rs).
    let test_files = std::fs::read_dir(root().join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"));
    let cases: Vec<String> = case_files()
        .into_iter()
        .chain(test_files)
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let mut examples = 0;
    for entry in std::fs::read_dir(root().join("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "json") {
            examples += 1;
            let reference = format!(
                "\"scenarios/{}\"",
                path.file_name().unwrap().to_string_lossy()
            );
            assert!(
                cases.iter().any(|c| c.contains(&reference)),
                "no case in tests/cases and no test in tests/ runs {reference}"
            );
        }
    }
    assert!(
        examples >= 3,
        "expected at least 3 example scenarios, found {examples}"
    );
}
