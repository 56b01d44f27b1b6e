//! The IML conformance catalogue: runs every case of every `tests/data/iml/*.json` file and
//! reports each failing case by file and index (all of them, not just the first).
//!
//! A file is a JSON array of cases. A case is an object with:
//! - `expr` (required): template text, parsed with `Template::parse` (so write `{{…}}`);
//! - `expected`: the JSON value the template must evaluate to (`null` included); or
//! - `error`: a substring of the parse or evaluation error, as displayed
//!   (`column 3: unknown function "x"`), so a case may pin the column too;
//! - `bundle` (optional): module outputs by id (`{"1": {…}}`); non-numeric keys are named
//!   roots for the app dialect (`{"body": {…}}`);
//! - `dialect` (optional): `"scenario"` (default) or `"app"`;
//! - `now` (optional, default `2016-12-08T15:55:57.536Z`) and `timezone` (optional, a tz
//!   database name, default `UTC`): what the scope reports, so date cases are deterministic;
//! - `note` (optional): free text.
//!
//! Any other key is reported as a failure, so a misspelt `expect` cannot pass silently.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::Value;
use switchyard::expr::{Dialect, Scope, Template};

const DEFAULT_NOW: &str = "2016-12-08T15:55:57.536Z";
const KNOWN_KEYS: [&str; 8] = [
    "expr", "expected", "error", "bundle", "dialect", "now", "timezone", "note",
];

struct CaseScope {
    modules: HashMap<u32, Value>,
    named: HashMap<String, Value>,
    now: DateTime<Utc>,
    timezone: chrono_tz::Tz,
}

impl Scope for CaseScope {
    fn module_output(&self, id: u32) -> Option<&Value> {
        self.modules.get(&id)
    }
    fn named(&self, name: &str) -> Option<&Value> {
        self.named.get(name)
    }
    fn now(&self) -> DateTime<Utc> {
        self.now
    }
    fn timezone(&self) -> chrono_tz::Tz {
        self.timezone
    }
    fn execution_id(&self) -> Option<&str> {
        Some("test-execution")
    }
}

fn scope_for(case: &serde_json::Map<String, Value>) -> Result<CaseScope, String> {
    let mut modules = HashMap::new();
    let mut named = HashMap::new();
    match case.get("bundle") {
        None => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                match k.parse::<u32>() {
                    Ok(id) => modules.insert(id, v.clone()).map(|_| ()),
                    Err(_) => named.insert(k.clone(), v.clone()).map(|_| ()),
                };
            }
        }
        Some(other) => return Err(format!("\"bundle\" must be an object, got {other}")),
    }
    let now_text = match case.get("now") {
        None => DEFAULT_NOW,
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(format!("\"now\" must be text, got {other}")),
    };
    let now = DateTime::parse_from_rfc3339(now_text)
        .map_err(|e| format!("\"now\" {now_text:?}: {e}"))?
        .with_timezone(&Utc);
    let timezone = match case.get("timezone") {
        None => chrono_tz::UTC,
        Some(Value::String(s)) => s
            .parse::<chrono_tz::Tz>()
            .map_err(|e| format!("\"timezone\" {s:?}: {e}"))?,
        Some(other) => return Err(format!("\"timezone\" must be text, got {other}")),
    };
    Ok(CaseScope {
        modules,
        named,
        now,
        timezone,
    })
}

/// Runs one case; `Err` describes how it failed.
fn check_case(case: &Value) -> Result<(), String> {
    let Some(case) = case.as_object() else {
        return Err(format!("a case must be an object, got {case}"));
    };
    if let Some(unknown) = case.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "unknown key {unknown:?} (known: {})",
            KNOWN_KEYS.join(", ")
        ));
    }
    let Some(Value::String(expr)) = case.get("expr") else {
        return Err("missing \"expr\" text".to_string());
    };
    let dialect = match case.get("dialect").and_then(Value::as_str) {
        None | Some("scenario") => Dialect::Scenario,
        Some("app") => Dialect::App,
        Some(other) => return Err(format!("unknown dialect {other:?}")),
    };
    let expected = case.get("expected");
    let error = match case.get("error") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => return Err(format!("\"error\" must be text, got {other}")),
    };
    let scope = scope_for(case)?;
    let outcome = Template::parse(expr, dialect)
        .map_err(|e| format!("parse error: {e}"))
        .and_then(|t| t.eval(&scope).map_err(|e| format!("evaluation error: {e}")))
        .map(as_make_buffer);
    match (expected, error, outcome) {
        (Some(_), Some(_), _) => Err("a case has \"expected\" or \"error\", not both".to_string()),
        (None, None, _) => Err("a case needs \"expected\" or \"error\"".to_string()),
        (Some(want), None, Ok(got)) if &got == want => Ok(()),
        (Some(want), None, Ok(got)) => Err(format!(
            "{expr}\n      expected {want}\n      got      {got}"
        )),
        (Some(want), None, Err(e)) => {
            Err(format!("{expr}\n      expected {want}\n      got      {e}"))
        }
        (None, Some(want), Ok(got)) => Err(format!(
            "{expr}\n      expected an error containing {want:?}\n      got      {got}"
        )),
        (None, Some(want), Err(e)) if e.contains(want) => Ok(()),
        (None, Some(want), Err(e)) => Err(format!(
            "{expr}\n      expected an error containing {want:?}\n      got      {e}"
        )),
    }
}

fn catalogue_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/iml")
}

/// Every failure in every file, as `file[index]: why`, and the number of cases run.
fn run_catalogue(dir: &Path) -> (Vec<String>, usize) {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(e) => return (vec![format!("{}: {e}", dir.display())], 0),
    };
    files.sort();
    let mut failures = Vec::new();
    let mut count = 0;
    for path in files {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let cases = match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str::<Value>(&text).map_err(|e| e.to_string()))
        {
            Ok(Value::Array(cases)) if !cases.is_empty() => cases,
            Ok(_) => {
                failures.push(format!("{name}: must be a non-empty JSON array of cases"));
                continue;
            }
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        for (i, case) in cases.iter().enumerate() {
            count += 1;
            if let Err(why) = check_case(case) {
                failures.push(format!("{name}[{i}]: {why}"));
            }
        }
    }
    (failures, count)
}

#[test]
fn iml_catalogue() {
    let (failures, count) = run_catalogue(&catalogue_dir());
    assert!(
        count > 0,
        "no cases found under {}",
        catalogue_dir().display()
    );
    assert!(
        failures.is_empty(),
        "{} of {count} IML cases failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// The runner itself must be able to fail: each of these cases is wrong in one way.
#[test]
fn runner_reports_bad_cases() {
    let bad = serde_json::json!([
        {"expr": "{{lower(\"A\")}}", "expected": "A"},
        {"expr": "{{lower(\"A\")}}", "expected": null},
        {"expr": "{{1.n}}", "bundle": {"1": {"n": 1}}, "expected": "1"},
        {"expr": "{{lower(\"A\")}}", "error": "anything"},
        {"expr": "{{lowr(\"A\")}}", "error": "division by zero"},
        {"expr": "{{lowr(\"A\")}}", "expected": "a"},
        {"expr": "{{lower(\"A\")}}", "expect": "a"},
        {"expr": "{{lower(\"A\")}}"},
        {"expr": "{{lower(\"A\")}}", "expected": "a", "error": "x"},
        {"expected": "a"},
        {"expr": "{{now}}", "now": "yesterday", "expected": "x"},
        {"expr": "{{now}}", "timezone": "Mars/Olympus", "expected": "x"},
        {"expr": "{{now}}", "dialect": "klingon", "expected": "x"},
        "not an object"
    ]);
    let bad = bad.as_array().map(Vec::as_slice).unwrap_or_default();
    for (i, case) in bad.iter().enumerate() {
        assert!(check_case(case).is_err(), "bad case {i} passed: {case}");
    }
    let good = serde_json::json!([
        {"expr": "{{lower(\"A\")}}", "expected": "a"},
        {"expr": "{{1.n}}", "bundle": {"1": {"n": 1}}, "expected": 1},
        {"expr": "{{lowr(\"A\")}}", "error": "column 3: unknown function \"lowr\""},
        {"expr": "{{now}}", "expected": DEFAULT_NOW},
        {"expr": "{{body.x}}", "dialect": "app", "bundle": {"body": {"x": [1]}}, "expected": [1]},
    ]);
    for case in good.as_array().map(Vec::as_slice).unwrap_or_default() {
        assert_eq!(check_case(case), Ok(()), "{case}");
    }
}

#[test]
fn runner_reports_every_failure_by_file_and_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write =
        |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
    write(
        "a.json",
        r#"[{"expr": "{{1 + 1}}", "expected": 2}, {"expr": "{{1 + 1}}", "expected": 3}]"#,
    );
    write(
        "b.json",
        r#"[{"expr": "{{\"x\"}}", "expected": "y"}, {"expr": "x", "expected": "x"}]"#,
    );
    write("c.json", "not json");
    write("d.json", "[]");
    write("ignored.txt", "[]");
    let (failures, count) = run_catalogue(dir.path());
    assert_eq!(count, 4);
    let heads: Vec<&str> = failures
        .iter()
        .map(|f| f.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(heads, ["a.json[1]", "b.json[0]", "c.json", "d.json"]);
}

/// A binary result in Make's JSON form of a buffer, `{"type":"Buffer","data":[…]}`, the form
/// the cases are written in (from Make's documentation): the engine holds a binary as a
/// handle to its stored bytes, and the bytes are what a case checks.
fn as_make_buffer(value: Value) -> Value {
    match switchyard::expr::binary::Binary::from_value(&value) {
        Some(stored) => switchyard::expr::value::node_buffer(&stored.read().unwrap_or_default()),
        None => value,
    }
}
