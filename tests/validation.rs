//! `switchyard validate` semantics through the library: every problem is reported with its
//! JSON path, and bad input of any shape or size gives an error, never a panic.

use serde_json::{Value, json};
use switchyard::scenario::{self, LoadError};

fn problems(blueprint: Value) -> Vec<String> {
    match scenario::load(
        &blueprint.to_string(),
        &switchyard::apps::AppRegistry::build(Default::default()).expect("registry"),
    ) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    }
}

fn hook(id: u32) -> Value {
    json!({"id": id, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}})
}

fn set(id: u32, value: &str) -> Value {
    json!({"id": id, "module": "util:SetVariable2", "mapper": {"name": "v", "value": value}})
}

#[test]
fn references_must_run_before_on_the_same_path() {
    let p = problems(
        json!({"flow": [hook(1), {"id": 2, "module": "builtin:BasicRouter", "routes": [
            {"flow": [set(3, "{{1.a}}")]},
            {"flow": [set(4, "{{3.v}}"), set(5, "{{6.v}}"), set(6, "{{7.v}}")]}
        ]}]}),
    );
    // Module 6 runs after module 5 on its path: a warning (below), not an error.
    assert_eq!(
        p,
        [
            "flow[1].routes[1].flow[0].mapper.value: column 3: module 3 does not run before module 4 on this path",
            "flow[1].routes[1].flow[2].mapper.value: column 3: unknown module 7 in {{7.…}}",
        ]
    );
}

/// Make lets a mapping of a module that runs later stand after modules are reordered: it
/// loads with a warning and reads as empty (issue 20).
#[tokio::test]
async fn a_reference_to_a_module_that_runs_later_warns_and_reads_empty() {
    let registry = switchyard::apps::AppRegistry::build(Default::default()).expect("registry");
    let blueprint = json!({"flow": [hook(1), set(2, "[{{3.v}}]"), set(3, "{{1.a}}"),
        set(4, "{{2.v}}|{{3.v}}")]});
    let checked =
        scenario::check(&blueprint.to_string(), &registry, &Default::default()).expect("JSON");
    assert!(checked.errors.is_empty(), "{:?}", checked.errors);
    let warnings: Vec<String> = checked.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "flow[1].mapper.value: column 4: module 3 runs after module 2 on this path, so {{3.…}} reads as empty (as in Make)"
        ]
    );
    let report = switchyard::engine::run(
        checked.scenario.as_ref().expect("runs"),
        switchyard::engine::RunInput {
            bundles: vec![json!({"a": "x"})],
            ..Default::default()
        },
    )
    .await;
    let last = report.log.last().expect("module 4 ran");
    assert_eq!(last.module, 4);
    assert_eq!(*last.output, json!({"v": "[]|x"}));
}

#[test]
fn aggregators_swallow_their_source_and_need_it_upstream() {
    let iter =
        json!({"id": 2, "module": "builtin:BasicFeeder", "mapper": {"array": "{{1.items}}"}});
    let agg = |id: u32, feeder: u32| json!({"id": id, "module": "builtin:BasicAggregator", "parameters": {"feeder": feeder}, "mapper": {"x": "{{2.value}}"}});
    // After the aggregator, the iterator's bundles are gone.
    let p = problems(
        json!({"flow": [hook(1), iter.clone(), set(3, "{{2.value}}"), agg(4, 2), set(5, "{{3.v}}{{4.array}}{{1.items}}")]}),
    );
    assert_eq!(
        p,
        ["flow[4].mapper.value: column 3: module 3 does not run before module 5 on this path"]
    );
    // A source on another route is not upstream.
    let p = problems(
        json!({"flow": [hook(1), {"id": 9, "module": "builtin:BasicRouter", "routes": [
        {"flow": [iter.clone()]}, {"flow": [agg(4, 2)]}]}]}),
    );
    assert!(p.iter().any(|m| m == "flow[1].routes[1].flow[0].parameters.feeder: source module 2 is not upstream of aggregator 4"), "{p:?}");
    let p = problems(
        json!({"flow": [hook(1), {"id": 4, "module": "builtin:BasicAggregator", "parameters": {}}]}),
    );
    assert_eq!(
        p,
        [
            "flow[1].parameters.feeder: an aggregator needs `parameters.feeder`: the id of its source module"
        ]
    );
}

#[test]
fn structural_rules_are_all_reported() {
    let p = problems(json!({"flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "filter": {"name": "f", "conditions": [[{"a": "1", "o": "exist"}]]}},
        {"id": 2, "module": "builtin:Ignore"},
        {"id": 3, "module": "nope:Nothing"},
        {"id": 2, "module": "util:SetVariable2", "mapper": {"name": "x", "value": 1},
         "onerror": [{"id": 7, "module": "builtin:Commit"}, set(8, "x")]},
        {"id": 4, "module": "builtin:BasicRouter", "routes": [{"flow": []}, {"fallback": true, "flow": [set(10, "")]}, {"fallback": true, "flow": [set(11, "")]}]},
        set(5, "never runs")
    ], "scheduling": {"type": "indefinitely", "interval": 5}}));
    let expected = [
        "flow[3].id: duplicate module id 2 (first used at flow[1])",
        "flow[0].filter: the first module of a scenario cannot have a filter",
        "flow[1].module: builtin:Ignore is an error-handler directive: it can only end an `onerror` route",
        "flow[2].module: unknown module type \"nope:Nothing\": no app \"nope\" is installed (`switchyard apps list` lists the apps; an app can be added as data, docs/apps.md)",
        "flow[3].onerror[0].module: builtin:Commit must be the last module of its error-handler route",
        "flow[4].routes: at most one route can be the fallback route",
        "flow[4].routes[0].flow: a route needs at least one module",
        "flow[5]: modules after a router never run: move them into a route",
        "scheduling.interval: Invalid interval: 5 s is below the minimum of 60 s",
    ];
    for e in expected {
        assert!(p.iter().any(|m| m == e), "missing problem {e:?} in {p:#?}");
    }
    assert_eq!(p.len(), expected.len(), "{p:#?}");
}

#[test]
fn triggers_only_come_first_and_merges_follow_if_else() {
    let p = problems(
        json!({"flow": [set(1, "x"), hook(2), {"id": 3, "module": "builtin:BasicMerge", "outputs": []}]}),
    );
    assert_eq!(
        p,
        [
            "flow[1].module: gateway:CustomWebHook is a trigger: it can only be the first module",
            "flow[2]: builtin:BasicMerge must directly follow a builtin:BasicIfElse",
        ]
    );
}

#[test]
fn shape_errors_name_the_json_path() {
    // An unknown key is a warning (Make's exporter adds keys over time), not an error.
    let registry = switchyard::apps::AppRegistry::build(Default::default()).expect("registry");
    let checked = scenario::check(
        r#"{"flow": [{"id": 1, "module": "util:SetVariable2", "mapper": {"name": "v"}, "colour": "red"}]}"#,
        &registry,
        &Default::default(),
    )
    .unwrap();
    assert!(checked.errors.is_empty(), "{:?}", checked.errors);
    assert_eq!(checked.warnings.len(), 1, "{:?}", checked.warnings);
    assert_eq!(checked.warnings[0].path, "flow[0].colour");
    assert!(checked.warnings[0].message.contains("unknown key `colour`"));
    let err = scenario::load(r#"{"flow": [{"id": -1, "module": "a:B"}]}"#, &registry).unwrap_err();
    assert!(
        err.problems().iter().any(|p| p.path == "flow[0].id"),
        "{err:?}"
    );
    let err = scenario::load(r#"{"name": "x"}"#, &registry).unwrap_err();
    assert!(err.to_string().contains("missing field `flow`"), "{err}");
}

#[test]
fn malformed_json_reports_line_and_column() {
    let err = scenario::load(
        "{\n  \"flow\": [\n    {\"id\": 1,, }\n]}",
        &switchyard::apps::AppRegistry::build(Default::default()).expect("registry"),
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::Syntax { line: 3, .. }), "{err:?}");
}

#[test]
fn ten_thousand_levels_of_nesting_is_an_error_not_a_crash() {
    let deep = format!(
        "{{\"flow\": [{{\"id\": 1, \"module\": \"a:B\", \"mapper\": {}1{}}}]}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let err = scenario::load(
        &deep,
        &switchyard::apps::AppRegistry::build(Default::default()).expect("registry"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("recursion limit"), "{err}");
    // Routers nested in routers, 10,000 deep (built as text: a Value that deep is itself a hazard).
    let mut text = String::new();
    for id in 1..=10_000u32 {
        text.push_str(&format!(
            "{{\"flow\": [{{\"id\": {id}, \"module\": \"builtin:BasicRouter\", \"routes\": ["
        ));
    }
    text.push_str("{\"flow\": []}");
    text.push_str(&"]}]}".repeat(10_000));
    assert!(
        scenario::load(
            &text,
            &switchyard::apps::AppRegistry::build(Default::default()).expect("registry")
        )
        .is_err()
    );
}

#[test]
fn huge_flows_are_refused_with_a_reason_and_huge_values_load() {
    let flow: Vec<Value> = (1..=5_000).map(|id| set(id, "x")).collect();
    let p = problems(json!({"flow": flow}));
    assert_eq!(
        p,
        ["flow: a scenario can have at most 2000 modules, this one has 5000"]
    );
    let big: Vec<Value> = (0..200_000).map(Value::from).collect();
    let p = problems(
        json!({"flow": [{"id": 1, "module": "builtin:BasicFeeder", "mapper": {"array": big}}]}),
    );
    assert!(p.is_empty(), "{p:?}");
}

fn check(blueprint: Value) -> scenario::Checked {
    scenario::check(
        &blueprint.to_string(),
        &switchyard::apps::AppRegistry::build(Default::default()).expect("registry"),
        &Default::default(),
    )
    .expect("valid JSON")
}

fn listed(problems: &[scenario::Problem]) -> Vec<String> {
    problems.iter().map(ToString::to_string).collect()
}

/// Gap 6: one wrong field no longer hides the rest: every shape error of every module, and
/// the compile problems of the modules around them, in one pass.
#[test]
fn every_problem_of_every_module_is_reported_in_one_pass() {
    let checked = check(json!({"flow": [
        hook(1),
        {"id": 2, "module": "util:SetVariable2", "mapper": {"name": "v", "value": "{{9.x}}"}},
        {"id": "three", "module": "util:SetVariable2"},
        {"id": 4, "module": 7},
        {"id": 5, "module": "builtin:BasicRouter", "routes": [
            {"flow": [{"id": 6, "module": "nope:Nothing"}, {"id": 7, "module": "util:SetVariable2", "filter": {"conditions": "x"}}]},
            {"flow": "not a flow"}
        ]}
    ], "scheduling": {"type": "sometimes"}}));
    let errors = listed(&checked.errors);
    for expected in [
        "flow[2].id: invalid type: string \"three\", expected u32",
        "flow[3].module: invalid type: integer `7`, expected a string",
        "flow[4].routes[0].flow[1].filter.conditions: invalid type: string \"x\", expected a sequence",
        "flow[4].routes[1].flow: expected an array of modules, got a string",
        "flow[1].mapper.value: column 3: unknown module 9 in {{9.…}}",
        "flow[4].routes[0].flow[0].module: unknown module type \"nope:Nothing\": no app \"nope\" is installed (`switchyard apps list` lists the apps; an app can be added as data, docs/apps.md)",
    ] {
        assert!(
            errors.iter().any(|e| e == expected),
            "missing {expected:?} in {errors:#?}"
        );
    }
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("scheduling.type: unknown variant `sometimes`")),
        "{errors:#?}"
    );
    assert!(checked.scenario.is_none());
}

/// Gap 5: unknown keys anywhere Make defines the shape are warnings with a hint; a module
/// that will fail when it runs (constant invalid JSON for json:ParseJSON) is a warning too,
/// and the scenario loads.
#[test]
fn unknown_keys_and_run_time_failures_are_warnings_with_hints() {
    let checked = check(json!({
        "name": "x",
        "flow": [
            hook(1),
            {"id": 2, "module": "json:ParseJSON", "maper": {}, "mapper": {"json": "{not json"},
             "_public_note": "n", "onerror": [{"id": 3, "module": "builtin:Commit"}]},
            {"id": 4, "module": "builtin:BasicRouter", "routes": [
                {"flow": [set(5, "x")], "name": "first", "disabld": true}
            ]}
        ],
        "metadata": {"scenario": {"roundtrips": 1, "autocommit": true}, "designer": {"orphans": []}},
        "sheduling": {"type": "immediately"}
    }));
    assert!(checked.errors.is_empty(), "{:#?}", checked.errors);
    let warnings = listed(&checked.warnings);
    for expected in [
        "sheduling: unknown key `sheduling` is ignored (did you mean `scheduling`?)",
        "metadata.scenario.autocommit: unknown key `autocommit` is ignored (did you mean `autoCommit`?)",
        "flow[1].maper: unknown key `maper` is ignored (did you mean `mapper`?)",
        "flow[1]._public_note: unknown key `_public_note` is ignored",
        "flow[2].routes[0].name: unknown key `name` is ignored",
        "flow[2].routes[0].disabld: unknown key `disabld` is ignored (did you mean `disabled`?)",
    ] {
        assert!(
            warnings.iter().any(|w| w == expected),
            "missing {expected:?} in {warnings:#?}"
        );
    }
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("flow[1].mapper.json: ")
                && w.ends_with("(the module will fail when it runs)")),
        "{warnings:#?}"
    );
    assert_eq!(warnings.len(), 7, "{warnings:#?}");
    let scenario = checked.scenario.expect("warnings do not stop the load");
    assert_eq!(scenario.warnings.len(), 7);
}

/// Gap 7: placeholder modules are empty designer slots: skipped with a warning, and the
/// modules after them keep their paths.
#[test]
fn placeholder_modules_are_skipped_with_a_warning() {
    let checked = check(json!({"flow": [
        hook(1),
        {"id": null, "module": "placeholder:Placeholder", "metadata": {"designer": {"x": 300, "y": 0}}},
        {"id": 2, "module": "nope:Nothing"},
        {"id": 3, "module": "builtin:BasicRouter", "routes": [
            {"flow": [{"id": null, "module": "placeholder:Placeholder"}]},
            {"flow": [set(4, "{{1.a}}")]}
        ]}
    ]}));
    assert_eq!(
        listed(&checked.warnings),
        [
            "flow[1]: an empty placeholder module (placeholder:Placeholder) is skipped",
            "flow[3].routes[0].flow[0]: an empty placeholder module (placeholder:Placeholder) is skipped",
        ]
    );
    // The error after the placeholder names the module's position as written.
    assert_eq!(
        listed(&checked.errors),
        [
            "flow[2].module: unknown module type \"nope:Nothing\": no app \"nope\" is installed (`switchyard apps list` lists the apps; an app can be added as data, docs/apps.md)"
        ]
    );
}

/// Gaps 2, 3, 4: a disabled if-else branch, a labelled filter without conditions, an if-else
/// nested in a branch and a filter on an if-else all load.
#[test]
fn real_export_shapes_of_if_else_and_filters_load() {
    let checked = check(json!({"flow": [
        hook(1),
        {"id": 2, "module": "builtin:BasicIfElse",
         "filter": {"name": "only orders", "conditions": [[{"a": "{{1.kind}}", "o": "text:equal", "b": "order"}]]},
         "branches": [
            {"type": "condition", "label": "off", "disabled": true, "merge": true,
             "conditions": [[{"a": "{{1.n}}", "o": "exist"}]], "flow": []},
            {"type": "condition", "label": "big", "merge": true,
             "conditions": [[{"a": "{{1.n}}", "o": "number:greater", "b": "10"}]],
             "flow": [
                {"id": 3, "module": "builtin:BasicIfElse", "branches": [
                    {"type": "condition", "label": "huge", "merge": true,
                     "conditions": [[{"a": "{{1.n}}", "o": "number:greater", "b": "100"}]],
                     "flow": [set(4, "huge")]},
                    {"type": "else", "merge": true, "flow": [set(5, "big")]}
                ]},
                {"id": 6, "module": "builtin:BasicMerge", "outputs": [{"name": "size", "mappings": ["{{4.v}}", "{{5.v}}"]}]}
             ]},
            {"type": "else", "merge": true, "flow": [set(7, "small")]}
         ]},
        {"id": 8, "module": "builtin:BasicMerge", "outputs": [{"name": "size", "mappings": ["off", "{{6.size}}", "{{7.v}}"]}]},
        {"id": 9, "module": "util:SetVariable2", "filter": {"name": "labelled pass-through"},
         "mapper": {"name": "out", "value": "{{8.size}}"}}
    ]}));
    assert!(checked.errors.is_empty(), "{:#?}", checked.errors);
    assert!(checked.warnings.is_empty(), "{:#?}", checked.warnings);
    assert!(checked.scenario.is_some());
}
