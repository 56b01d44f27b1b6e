//! Each budget stops a real scenario: the execution ends `error` with an
//! `ExecutionInterruptedError` that no error route or `dlq` setting takes.

use std::time::{Duration, Instant as StdInstant};

use futures::future::BoxFuture;

use super::*;
use crate::module::{Module, Registry};

/// `test:Hang` never answers.
struct Hang;

impl Module for Hang {
    fn call<'a>(&'a self, _: Invocation<'a>) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(std::future::pending())
    }
}

struct TestModules;

impl Registry for TestModules {
    fn module(&self, name: &str) -> Option<Arc<dyn crate::module::Module>> {
        (name == "test:Hang").then(|| Arc::new(Hang) as Arc<dyn crate::module::Module>)
    }
}

fn load(blueprint: Value) -> Scenario {
    crate::scenario::load(&blueprint.to_string(), &TestModules)
        .unwrap_or_else(|e| panic!("scenario loads: {e}"))
}

async fn run_with(scenario: &Scenario, bundle: Value, budget: Budget) -> Report {
    run(
        scenario,
        RunInput {
            bundles: vec![bundle],
            budget,
            ..RunInput::default()
        },
    )
    .await
}

/// Webhook → repeater × repeater → set variable, every module with an error route that
/// ignores errors, and incomplete executions on: nothing catches a budget stop.
fn nested_repeaters(outer: u32, inner: u32) -> Scenario {
    let ignore = || json!([{"id": 99, "module": "builtin:Ignore"}]);
    let ignore2 = || json!([{"id": 98, "module": "builtin:Ignore"}]);
    load(json!({"name": "nested", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
        {"id": 2, "module": "builtin:BasicRepeater",
         "mapper": {"start": 1, "repeats": outer, "step": 1}},
        {"id": 3, "module": "builtin:BasicRepeater",
         "mapper": {"start": 1, "repeats": inner, "step": 1}, "onerror": ignore()},
        {"id": 4, "module": "util:SetVariable2",
         "mapper": {"name": "x", "scope": "roundtrip", "value": "{{2.i * 3.i}}"},
         "onerror": ignore2()}
    ], "metadata": {"scenario": {"dlq": true}}}))
}

fn assert_interrupted(report: &Report, budget: &str) -> ReportError {
    assert_eq!(report.status, Status::Error, "{:?}", report.error);
    assert!(report.incomplete.is_empty(), "nothing is parked");
    let error = report.error.clone().expect("an error");
    assert_eq!(error.name, "ExecutionInterruptedError", "{error:?}");
    let details = error.details.clone().expect("details");
    assert_eq!(details["budget"], budget, "{error:?}");
    error
}

#[tokio::test]
async fn the_operations_budget_stops_nested_repeaters() {
    let scenario = nested_repeaters(10_000, 10_000);
    let budget = Budget::default().with_operations(50_000).unwrap();
    let report = run_with(&scenario, json!({}), budget).await;
    let error = assert_interrupted(&report, "operations");
    assert_eq!(report.operations, 50_000);
    assert_eq!(
        error.message,
        "the execution ran 50000 operations, its limit (--max-operations 50000)"
    );
    assert_eq!(error.details.unwrap()["flag"], "--max-operations");
    // Within the budget the same scenario runs to its end.
    let report = run_with(&nested_repeaters(10, 10), json!({}), budget).await;
    assert_eq!(report.status, Status::Success);
    assert_eq!(report.operations, 1 + 1 + 10 + 100);
}

#[tokio::test]
async fn the_wall_time_cuts_off_a_module_that_hangs() {
    let scenario = load(json!({"name": "hang", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
        {"id": 2, "module": "test:Hang",
         "onerror": [{"id": 3, "module": "builtin:Ignore"}]}
    ], "metadata": {"scenario": {"dlq": true}}}));
    let budget = Budget::default()
        .with_wall_time(Duration::from_millis(300))
        .unwrap();
    let started = StdInstant::now();
    let report = run_with(&scenario, json!({}), budget).await;
    let elapsed = started.elapsed();
    let error = assert_interrupted(&report, "wallTime");
    assert_eq!(error.module, 2);
    assert_eq!(
        error.message,
        "the execution ran for 0.3 s, its time limit (--max-execution-seconds 0.3)"
    );
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn the_wall_time_stops_flow_control_between_bundles() {
    let scenario = nested_repeaters(10_000, 10_000);
    let budget = Budget::default()
        .with_wall_time(Duration::from_millis(300))
        .unwrap();
    let started = StdInstant::now();
    let report = run_with(&scenario, json!({}), budget).await;
    assert_interrupted(&report, "wallTime");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(report.operations < 10_000_000);
}

#[tokio::test]
async fn the_bytes_budget_stops_a_huge_iterator_before_it_builds_its_bundles() {
    let scenario = load(json!({"name": "iterate", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
        {"id": 2, "module": "builtin:BasicFeeder", "mapper": {"array": "{{1.items}}"},
         "onerror": [{"id": 4, "module": "builtin:Ignore"}]},
        {"id": 3, "module": "util:SetVariable2",
         "mapper": {"name": "x", "scope": "roundtrip", "value": "{{2.value}}"}}
    ], "metadata": {"scenario": {"dlq": true}}}));
    let items: Vec<u32> = (0..50_000).collect();
    let budget = Budget::default().with_bundle_bytes(10 << 20).unwrap();
    let report = run_with(&scenario, json!({"items": items}), budget).await;
    let error = assert_interrupted(&report, "bundleBytes");
    assert_eq!(error.module, 2);
    assert_eq!(
        error.message,
        "the execution's bundles would take more than 10485760 bytes, its limit \
         (--max-bundle-bytes 10485760)"
    );
    assert_eq!(report.operations, 2);
    assert!(
        report.stats.iter().all(|s| s.module != 3),
        "nothing ran after it"
    );
    // A smaller array fits.
    let items: Vec<u32> = (0..1_000).collect();
    let report = run_with(&scenario, json!({"items": items}), budget).await;
    assert_eq!(report.status, Status::Success);
}

#[tokio::test]
async fn the_bytes_budget_counts_an_aggregators_open_accumulation() {
    // 10,000 bundles of 10 KB each reach the aggregator: 100 MB in its accumulation.
    let scenario = load(json!({"name": "aggregate", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
        {"id": 2, "module": "builtin:BasicRepeater",
         "mapper": {"start": 1, "repeats": 10_000, "step": 1}},
        {"id": 3, "module": "util:SetVariable2",
         "mapper": {"name": "x", "scope": "roundtrip", "value": "{{2.i}}{{1.text}}"}},
        {"id": 4, "module": "builtin:BasicAggregator", "parameters": {"feeder": 2},
         "mapper": {"x": "{{3.x}}"}}
    ]}));
    let budget = Budget::default()
        .with_bundle_bytes(20 << 20)
        .unwrap()
        .with_log_bundles_per_module(0);
    let bundle = json!({"text": "t".repeat(10_000)});
    let report = run_with(&scenario, bundle.clone(), budget).await;
    let error = assert_interrupted(&report, "bundleBytes");
    assert_eq!(error.module, 4);
    // Each bundle of module 3 is given back once it has reached the aggregator; only
    // the accumulation grows (about 2,000 × 10 KB when it is stopped).
    let set = report.stats.iter().find(|s| s.module == 3).unwrap();
    assert!((1_500..2_500).contains(&set.runs), "{}", set.runs);
    // With room for it, the aggregate is built.
    let roomy = budget.with_bundle_bytes(200 << 20).unwrap();
    let report = run_with(&scenario, bundle, roomy).await;
    assert_eq!(report.status, Status::Success, "{:?}", report.error);
}

#[tokio::test]
async fn bytes_of_bundles_that_are_done_are_given_back() {
    // 10,000 bundles of about 400 bytes flow through, never more than 200 at a time: 4 MB
    // in all, under 1 MiB at once.
    let scenario = nested_repeaters(100, 100);
    let budget = Budget::default()
        .with_bundle_bytes(1 << 20)
        .unwrap()
        .with_log_bundles_per_module(0);
    let report = run_with(&scenario, json!({}), budget).await;
    assert_eq!(report.status, Status::Success, "{:?}", report.error);
    assert_eq!(report.operations, 1 + 1 + 100 + 10_000);
    assert!(report.log.is_empty());
}

#[tokio::test]
async fn the_log_keeps_the_first_bundles_of_each_module_and_counts_the_rest() {
    let scenario = nested_repeaters(5, 10);
    let budget = Budget::default().with_log_bundles_per_module(7);
    let report = run_with(&scenario, json!({}), budget).await;
    assert_eq!(report.status, Status::Success);
    let logged = |module: u32| -> Vec<Value> {
        report
            .log
            .iter()
            .filter(|e| e.module == module)
            .map(|e| (*e.output).clone())
            .collect()
    };
    assert_eq!(logged(1).len(), 1);
    assert_eq!(
        logged(2),
        (1..=5).map(|i| json!({"i": i})).collect::<Vec<_>>()
    );
    // The first seven of module 3's fifty, in execution order.
    assert_eq!(
        logged(3),
        (1..=7).map(|i| json!({"i": i})).collect::<Vec<_>>()
    );
    assert_eq!(logged(4).len(), 7);
    for (module, out, kept) in [(1, 1, 1), (2, 5, 5), (3, 50, 7), (4, 50, 7)] {
        let stats = report.stats.iter().find(|s| s.module == module).unwrap();
        assert_eq!(
            (stats.bundles_out, stats.logged),
            (out, kept),
            "module {module}"
        );
    }
}

#[tokio::test]
async fn the_report_keeps_the_evaluated_inputs_of_the_first_operations_of_each_module() {
    let scenario = load(json!({"name": "inputs", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
        {"id": 2, "module": "builtin:BasicRepeater",
         "mapper": {"start": 1, "repeats": 10, "step": 1}},
        {"id": 3, "module": "util:SetVariables",
         "mapper": {"scope": "roundtrip", "variables": [{"name": "twice", "value": "{{2.i * 2}}"}]}},
        {"id": 4, "module": "util:SetVariable2",
         "mapper": {"name": "last", "scope": "execution", "value": "{{2.i}}"}}
    ]}));
    let budget = Budget::default().with_log_bundles_per_module(4);
    let report = run_with(&scenario, json!({}), budget).await;
    assert_eq!(report.status, Status::Success, "{:?}", report.error);
    let inputs = |module: u32| -> Vec<Value> {
        report
            .inputs
            .iter()
            .filter(|e| e.module == module)
            .map(|e| (*e.input).clone())
            .collect()
    };
    // The trigger has no mapper: no input is kept for it.
    assert!(inputs(1).is_empty());
    assert_eq!(
        inputs(2),
        vec![json!({"start": 1, "repeats": 10, "step": 1})]
    );
    // Evaluated against each bundle, the first four of ten operations.
    assert_eq!(
        inputs(3),
        (1..=4)
            .map(
                |i| json!({"scope": "roundtrip", "variables": [{"name": "twice", "value": i * 2}]})
            )
            .collect::<Vec<_>>()
    );
    assert_eq!(
        inputs(4)[..2],
        [
            json!({"name": "last", "scope": "execution", "value": 1}),
            json!({"name": "last", "scope": "execution", "value": 2})
        ]
    );
    let stats = report.stats.iter().find(|s| s.module == 3).unwrap();
    assert_eq!((stats.runs, stats.inputs_logged), (10, 4));

    // An input larger than the cap is kept as a marker, not copied.
    let scenario = load(json!({"name": "big input", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
        {"id": 2, "module": "builtin:BasicFeeder", "mapper": {"array": "{{1.items}}"}}
    ]}));
    let items: Vec<Value> = (0..5_000).map(|i| json!({"id": i, "name": "x"})).collect();
    let report = run_with(&scenario, json!({"items": items}), Budget::default()).await;
    assert_eq!(report.status, Status::Success, "{:?}", report.error);
    let input = &report.inputs[0];
    assert_eq!(
        (input.module, &input.input["__truncated__"]),
        (2, &json!(true))
    );
    assert!(
        input.input["bytes"].as_u64().unwrap() > MAX_LOGGED_INPUT_BYTES as u64,
        "{:?}",
        input.input
    );
}
