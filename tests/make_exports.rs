//! A corpus of blueprints in the Make exporter's full shape (`tests/data/exports/*.json`:
//! designer metadata, `restore`/`expect`/`interface` blocks, `metadata.scenario` with keys
//! newer exporters add, placeholder modules, unknown keys) loaded and run as a new user would
//! (issue 12). Each file covers several of the compatibility gaps:
//!
//! - `lead-intake.json`: system variables (1), a labelled filter without conditions (3),
//!   unknown keys as warnings (5), a placeholder module (7), doubled quotes (8), an empty
//!   argument (10), and the Text parser modules;
//! - `order-routing.json`: a disabled branch (2), a nested if-else and a filter on an if-else
//!   (4), `json:ParseJSON` of constant invalid JSON as a warning handled by its error route
//!   (5), one-item arrays where one value is expected (9);
//! - `half-finished.json`: every error of every module in one pass, each with its path (6);
//! - `order-emails.json`: the Text parser modules of a published export, unchanged, over
//!   e-mails with CRLF lines, matched with JavaScript's regular expressions (issue 20).
//!
//! `tests/data/exports/README.md` says where each export comes from.

use serde_json::{Value, json};
use switchyard::apps::AppRegistry;
use switchyard::engine::{self, RunInput};
use switchyard::module::ExecutionContext;
use switchyard::scenario::{self, Checked};

fn check(file: &str) -> Checked {
    let path = format!("{}/tests/data/exports/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("export file");
    let registry = AppRegistry::build(Default::default()).expect("registry");
    scenario::check(&text, &registry, &Default::default()).expect("valid JSON")
}

fn listed(problems: &[scenario::Problem]) -> Vec<String> {
    problems.iter().map(ToString::to_string).collect()
}

/// Runs the export with `bundles` as its webhook's input; the outputs of module `id`.
async fn run(checked: &Checked, bundles: Vec<Value>) -> (engine::Report, Vec<(u32, Value)>) {
    let scenario = checked.scenario.as_ref().expect("the export loads");
    let input = RunInput {
        bundles,
        context: ExecutionContext {
            scenario_id: Some("scn-7".into()),
            ..ExecutionContext::new("exec-1")
        },
        public_url: Some("https://flows.example.com/".into()),
        ..RunInput::default()
    };
    let report = engine::run(scenario, input).await;
    let outputs = report
        .log
        .iter()
        .map(|e| (e.module, (*e.output).clone()))
        .collect();
    (report, outputs)
}

fn outputs_of(outputs: &[(u32, Value)], id: u32) -> Vec<Value> {
    outputs
        .iter()
        .filter(|(m, _)| *m == id)
        .map(|(_, v)| v.clone())
        .collect()
}

#[tokio::test]
async fn lead_intake_loads_with_warnings_and_runs() {
    let checked = check("lead-intake.json");
    assert!(checked.errors.is_empty(), "{:#?}", checked.errors);
    assert_eq!(
        listed(&checked.warnings),
        [
            "metadata.scenario.autoRetry: unknown key `autoRetry` is ignored",
            "flow[4]._public_note: unknown key `_public_note` is ignored",
            "flow[5].routes[1].flow[0]: an empty placeholder module (placeholder:Placeholder) is skipped",
        ]
    );
    let (report, outputs) = run(
        &checked,
        vec![json!({
            "message": "Hi, I am Ann (ANN@Example.org), see https://ann.example.org/cv.",
            "phone": "+1 (555) 010-0199",
            "html": "<p>Dear team,<br>please call &amp; write.</p><script>track()</script>"
        })],
    )
    .await;
    assert_eq!(report.status, engine::Status::Success, "{:?}", report.error);
    assert_eq!(
        outputs_of(&outputs, 2),
        [json!({"i": 1, "email": "ANN@Example.org", "__IMTMATCH__": "ANN@Example.org"})]
    );
    assert_eq!(outputs_of(&outputs, 3), [json!({"text": "+15550100199"})]);
    assert_eq!(
        outputs_of(&outputs, 4),
        [json!({"text": "Dear team,\nplease call & write."})]
    );
    assert_eq!(
        outputs_of(&outputs, 5),
        [json!({
            "summary": "Lead intake run exec-1 after 5 operations",
            "quoted": "\"ANN@Example.org\"",
            "phone": "+1 (555) 010-0199",
            "digits": "+15550100199",
            "text": "Dear team,\nplease call & write."
        })]
    );
    assert_eq!(
        outputs_of(&outputs, 7),
        [json!({"i": 1, "element": "https://ann.example.org/cv"})]
    );
}

#[tokio::test]
async fn order_routing_runs_nested_if_else_and_handles_the_bad_json_at_run_time() {
    let checked = check("order-routing.json");
    assert!(checked.errors.is_empty(), "{:#?}", checked.errors);
    let warnings = listed(&checked.warnings);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].starts_with("flow[1].routes[0].flow[0].mapper.json: ")
            && warnings[0].ends_with("(the module will fail when it runs)"),
        "{warnings:#?}"
    );
    let order = |total: u32| {
        json!({"kind": "order", "total": total,
               "items": [{"date": "2026-03-01T10:00:00Z", "qty": 3}]})
    };
    let (report, outputs) = run(
        &checked,
        vec![
            order(5000),
            order(500),
            order(5),
            json!({"kind": "refund", "total": 500, "items": []}),
        ],
    )
    .await;
    // The bad constant JSON fails at run time and its error route (Ignore) handles it.
    assert_eq!(report.status, engine::Status::Success, "{:?}", report.error);
    assert!(outputs_of(&outputs, 3).is_empty());
    assert_eq!(
        outputs_of(&outputs, 13),
        [
            json!({"line": "huge order of 2026-03-01 for 6 units"}),
            json!({"line": "large order of 2026-03-01 for 6 units"}),
            json!({"line": "small order of 2026-03-01 for 6 units"}),
        ]
    );
    assert!(
        outputs_of(&outputs, 6).is_empty(),
        "the disabled branch never runs"
    );
}

#[tokio::test]
async fn order_emails_parse_subjects_and_crlf_lines_as_javascript_does() {
    let checked = check("order-emails.json");
    assert!(checked.errors.is_empty(), "{:#?}", checked.errors);
    assert!(checked.warnings.is_empty(), "{:#?}", checked.warnings);
    let email = |subject: &str, text: &str| {
        json!({"subject": subject, "text": text, "messageId": "m-1",
               "from": {"address": "shop@example.com"}})
    };
    let (report, outputs) = run(
        &checked,
        vec![
            email(
                "[Invoice] Order No. A1042: paid",
                "Hello,\r\nyour ORDER A1042 has shipped.\r\nThanks",
            ),
            email("Newsletter", "Nothing\r\nhere"),
        ],
    )
    .await;
    assert_eq!(report.status, engine::Status::Success, "{:?}", report.error);
    // Case-insensitive (`sensitive: false`); `.` in "no." matches any character.
    assert_eq!(
        outputs_of(&outputs, 17),
        [
            json!({"i": 1, "$1": "Invoice", "$2": "A1042", "$3": "paid",
                   "__IMTMATCH__": "[Invoice] Order No. A1042: paid"}),
            json!({}),
        ]
    );
    // `^(.*order.*)$` with `multiline`: in JavaScript a line also ends at `\r`, so the match
    // stops before it (the `regex` crate's `.` and `$` kept the `\r`).
    assert_eq!(
        outputs_of(&outputs, 23),
        [
            json!({"i": 1, "$1": "your ORDER A1042 has shipped.",
                   "__IMTMATCH__": "your ORDER A1042 has shipped."}),
            json!({}),
        ]
    );
    let rows = outputs_of(&outputs, 22);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        json!({"from": "shop@example.com", "type": "Invoice", "order": "A1042",
               "status": "paid", "line": "your ORDER A1042 has shipped.",
               "messageId": "m-1"})
    );
    assert_eq!(rows[1]["order"], json!(null), "{}", rows[1]);
}

#[test]
fn half_finished_export_reports_every_error_in_one_pass() {
    let checked = check("half-finished.json");
    assert!(checked.scenario.is_none());
    let errors = listed(&checked.errors);
    let expected = [
        "metadata.scenario.roundtrips: invalid type: string \"one\", expected u32",
        "flow[1].id: invalid type: string \"2\", expected u32",
        "flow[4].routes[0].flow[0].routes: invalid type: string \"none\", expected a sequence",
        "flow[2].mapper.value: column 3: unknown module 9 in {{9.…}}",
        "flow[2].filter.conditions[0][0].o: unknown operator \"text:sortof\"",
        "flow[3].module: unknown module type \"google-sheets:addRow\"",
    ];
    assert_eq!(errors, expected);
}

#[test]
fn validate_command_exits_by_errors_and_strictness() {
    let exe = env!("CARGO_BIN_EXE_switchyard");
    let dir = format!("{}/tests/data/exports", env!("CARGO_MANIFEST_DIR"));
    let status = |args: &[&str]| {
        let out = std::process::Command::new(exe)
            .arg("validate")
            .args(args)
            .output()
            .expect("switchyard runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let lead = format!("{dir}/lead-intake.json");
    let (code, stdout) = status(&[&lead]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("warning: flow[4]._public_note: unknown key"),
        "{stdout}"
    );
    assert!(stdout.contains("valid, with 3 warning(s)"), "{stdout}");
    let (code, _) = status(&[&lead, "--strict"]);
    assert_eq!(code, Some(1));
    let (code, stdout) = status(&[&format!("{dir}/half-finished.json"), "--json"]);
    assert_eq!(code, Some(1));
    let results: Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(results[0]["valid"], false);
    assert_eq!(results[0]["errors"].as_array().map(Vec::len), Some(6));
    assert_eq!(results[0]["errors"][1]["path"], "flow[1].id");
    assert_eq!(results[0]["warnings"], json!([]));
}
