//! Every Make filter operator, as data: `tests/data/filter-operators.json` lists
//! `{a, o, b, expected}` rows evaluated against a bundle where module 1 output
//! `{"name": "Ann", "tags": ["new", "vip"], "age": 30, "limit": 18}`.

use serde_json::{Value, json};
use switchyard::engine::filter::passes;
use switchyard::expr::Scope;
use switchyard::scenario::filter::CompiledFilter;
use switchyard::scenario::model::Condition;

struct Bundle(Value);

impl Scope for Bundle {
    fn module_output(&self, id: u32) -> Option<&Value> {
        (id == 1).then_some(&self.0)
    }
}

fn bundle() -> Bundle {
    Bundle(json!({"name": "Ann", "tags": ["new", "vip"], "age": 30, "limit": 18}))
}

fn condition(a: Value, o: &str, b: Option<Value>) -> Condition {
    Condition {
        a,
        o: o.to_string(),
        b,
    }
}

#[test]
fn every_operator_row_holds() {
    let rows: Vec<Value> =
        serde_json::from_str(include_str!("data/filter-operators.json")).unwrap();
    assert!(rows.len() > 70);
    let scope = bundle();
    let mut failures = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let o = row["o"].as_str().unwrap();
        let cond = condition(row["a"].clone(), o, row.get("b").cloned());
        let filter = match CompiledFilter::compile("row", &[vec![cond]]) {
            Ok(f) => f,
            Err(e) => {
                failures.push(format!("row {i} {row}: does not compile: {e:?}"));
                continue;
            }
        };
        match passes(&filter, &scope) {
            Ok(got) if Value::Bool(got) == row["expected"] => {}
            other => failures.push(format!("row {i} {row}: got {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn groups_are_or_of_ands() {
    let yes = || condition(json!("a"), "text:equal", Some(json!("a")));
    let no = || condition(json!("a"), "text:equal", Some(json!("b")));
    let scope = bundle();
    let check = |groups: Vec<Vec<Condition>>| {
        passes(&CompiledFilter::compile("f", &groups).unwrap(), &scope).unwrap()
    };
    assert!(check(vec![vec![yes(), yes()]]));
    assert!(!check(vec![vec![yes(), no()]]));
    assert!(check(vec![vec![no()], vec![yes()]]));
    assert!(!check(vec![vec![no()], vec![yes(), no()]]));
    assert!(check(vec![]), "an empty filter lets everything through");
}

#[test]
fn unknown_operators_and_bad_patterns_are_reported_with_their_path() {
    let groups = vec![
        vec![
            condition(json!("a"), "text:equal", Some(json!("a"))),
            condition(json!("a"), "string:equal", Some(json!("a"))),
        ],
        vec![condition(
            json!("a"),
            "text:pattern",
            Some(json!("(unclosed")),
        )],
    ];
    let problems = CompiledFilter::compile("f", &groups).unwrap_err();
    let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["[0][1].o", "[1][0].b"]);
    assert!(problems[0].1.contains("unknown operator \"string:equal\""));
    assert!(problems[1].1.contains("invalid pattern"));
}

#[test]
fn an_operand_that_fails_names_the_filter_and_the_operand() {
    let cond = condition(json!("{{1.age / 0}}"), "number:greater", Some(json!(1)));
    let filter = CompiledFilter::compile("adults only", &[vec![cond]]).unwrap();
    let error = passes(&filter, &bundle()).unwrap_err();
    assert!(
        error
            .message
            .starts_with("filter \"adults only\", operand a: column "),
        "{}",
        error.message
    );
}

#[test]
fn a_pattern_that_backtracks_past_the_limit_fails_the_filter_naming_it() {
    let runaway = format!("{}!", "a".repeat(30_000));
    let cond = condition(json!(runaway), "text:pattern", Some(json!(r"^(a+)+\1$")));
    let filter = CompiledFilter::compile("runaway", &[vec![cond]]).unwrap();
    let error = passes(&filter, &bundle()).unwrap_err();
    assert_eq!(error.kind.name(), "DataError");
    assert!(
        error.message.contains(r"/^(a+)+\1$/") && error.message.contains("--regex-backtrack-limit"),
        "{}",
        error.message
    );
    // The same pattern decides quickly on text it matches.
    let cond = condition(json!("aaaa"), "text:pattern", Some(json!(r"^(a+)+\1$")));
    let filter = CompiledFilter::compile("short", &[vec![cond]]).unwrap();
    assert_eq!(passes(&filter, &bundle()), Ok(true));
}
