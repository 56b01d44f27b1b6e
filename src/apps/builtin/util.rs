//! The Tools app's transformers: `util:Switcher` (first matching case's output),
//! `util:ComposeTransformer` (a composed value, passed through) and `util:FunctionSleep`
//! (waits 1–300 seconds). Flow control (`util:SetVariable2`, aggregators …) belongs to the
//! executor, not here.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::fields::{flag, is_blank, is_dynamic, number, object, report, text};
use super::text::{Flags, RegexCache, compile, run_error};
use crate::module::error::ModuleError;
use crate::module::{Invocation, Module};

/// Longest sleep Make allows, in seconds.
pub const MAX_SLEEP_SECS: f64 = 300.0;

// ---------------------------------------------------------------------------------------------
// util:Switcher

/// `util:Switcher`: mapper `{input, useRegExpMatch, casesTable: [{pattern, output}],
/// elseOutput}` → `{"output": …}`. Cases are tried in order; the first whose pattern equals the
/// input (or, with `useRegExpMatch`, matches somewhere in it) wins. With no match the output is
/// `elseOutput`, or `null` when there is none. Regular expressions are JavaScript's
/// ([`crate::expr::regexp`]), written plain or as `/pattern/flags` (flags `i`, `m`, `s`, `u`;
/// `g` and `y` are ignored).
#[derive(Default)]
pub(crate) struct Switcher {
    cache: RegexCache,
}

struct Case<'a> {
    pattern: String,
    pattern_value: Option<&'a Value>,
    output: Value,
}

fn cases(mapper: Option<&Map<String, Value>>) -> Result<Vec<Case<'_>>, String> {
    match mapper.and_then(|m| m.get("casesTable")) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter(|(_, item)| !item.is_null())
            .map(|(index, item)| match item {
                Value::Object(case) => Ok(Case {
                    pattern: case.get("pattern").map(text).unwrap_or_default(),
                    pattern_value: case.get("pattern"),
                    output: case.get("output").cloned().unwrap_or(Value::Null),
                }),
                _ => Err(format!(
                    "case {} must be an object {{pattern, output}}",
                    index + 1
                )),
            })
            .collect(),
        Some(_) => Err("must be a list of {pattern, output} cases".into()),
    }
}

/// Splits a JavaScript-style `/body/flags` literal; other text is a plain pattern.
fn regex_literal(pattern: &str) -> (String, Flags) {
    if let Some(rest) = pattern.strip_prefix('/')
        && let Some(end) = rest.rfind('/')
    {
        let (body, flags) = (&rest[..end], &rest[end + 1..]);
        if !body.is_empty() && flags.chars().all(|c| "gimsuy".contains(c)) {
            return (
                body.to_string(),
                Flags {
                    case_insensitive: flags.contains('i'),
                    multi_line: flags.contains('m'),
                    dot_matches_new_line: flags.contains('s'),
                    unicode: flags.contains('u'),
                },
            );
        }
    }
    (pattern.to_string(), Flags::default())
}

impl Module for Switcher {
    fn check(&self, _parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let m = object(mapper);
        let regex_flag = m.and_then(|m| m.get("useRegExpMatch"));
        report(
            &mut problems,
            "mapper.useRegExpMatch",
            regex_flag,
            flag(regex_flag, false),
        );
        let table = m.and_then(|m| m.get("casesTable"));
        match cases(m) {
            Err(reason) => report(
                &mut problems,
                "mapper.casesTable",
                table,
                Err::<(), _>(reason),
            ),
            Ok(cases) => {
                let static_regex = regex_flag.is_none_or(|v| !is_dynamic(v));
                if static_regex && flag(regex_flag, false) == Ok(true) {
                    for (index, case) in cases.iter().enumerate() {
                        let (body, flags) = regex_literal(&case.pattern);
                        report(
                            &mut problems,
                            format!("mapper.casesTable[{}].pattern", index + 1),
                            case.pattern_value,
                            compile(&body, flags),
                        );
                    }
                }
            }
        }
        problems
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async move {
            let m = object(&invocation.mapper);
            let input = m.and_then(|m| m.get("input")).map(text).unwrap_or_default();
            let use_regex = flag(m.and_then(|m| m.get("useRegExpMatch")), false)
                .map_err(|e| ModuleError::data(format!("mapper.useRegExpMatch: {e}")))?;
            let cases =
                cases(m).map_err(|e| ModuleError::data(format!("mapper.casesTable: {e}")))?;
            for (index, case) in cases.into_iter().enumerate() {
                let hit = if use_regex {
                    let (body, flags) = regex_literal(&case.pattern);
                    let regex = self.cache.get(&body, flags).map_err(|reason| {
                        ModuleError::data(format!(
                            "mapper.casesTable[{}].pattern: {reason}",
                            index + 1
                        ))
                    })?;
                    regex.is_match(&input).map_err(run_error)?
                } else {
                    case.pattern == input
                };
                if hit {
                    return Ok(vec![json!({ "output": case.output })]);
                }
            }
            let fallback = m
                .and_then(|m| m.get("elseOutput"))
                .cloned()
                .unwrap_or(Value::Null);
            Ok(vec![json!({ "output": fallback })])
        })
    }
}

// ---------------------------------------------------------------------------------------------
// util:ComposeTransformer

/// `util:ComposeTransformer` ("Compose a string"): mapper `{value}` → `{"value": …}`.
pub(crate) struct Compose;

impl Module for Compose {
    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async move {
            let value = object(&invocation.mapper)
                .and_then(|m| m.get("value"))
                .cloned()
                .unwrap_or(Value::Null);
            Ok(vec![json!({ "value": value })])
        })
    }
}

// ---------------------------------------------------------------------------------------------
// util:FunctionSleep

/// `util:FunctionSleep`: mapper `{duration}` in seconds, 1–300 → waits, then outputs `{}`.
pub(crate) struct Sleep {
    /// How long one unit of `duration` lasts: a second, shorter in tests.
    second: Duration,
}

impl Sleep {
    pub(crate) fn new() -> Self {
        Sleep {
            second: Duration::from_secs(1),
        }
    }
}

fn duration(value: Option<&Value>) -> Result<f64, String> {
    if is_blank(value) {
        return Err("is required".into());
    }
    match number(value)? {
        Some(secs) if (1.0..=MAX_SLEEP_SECS).contains(&secs) => Ok(secs),
        _ => Err(format!("must be between 1 and {MAX_SLEEP_SECS} seconds")),
    }
}

impl Module for Sleep {
    fn check(&self, _parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let value = object(mapper).and_then(|m| m.get("duration"));
        report(&mut problems, "mapper.duration", value, duration(value));
        problems
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async move {
            let secs = duration(object(&invocation.mapper).and_then(|m| m.get("duration")))
                .map_err(|e| ModuleError::data(format!("mapper.duration: {e}")))?;
            tokio::time::sleep(self.second.mul_f64(secs)).await;
            Ok(vec![Value::Object(Map::new())])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::error::ErrorKind;
    use std::time::Instant;

    async fn run(module: &dyn Module, mapper: Value) -> Result<Vec<Value>, ModuleError> {
        super::super::call_once(module, json!({}), mapper).await
    }

    fn table() -> Value {
        json!([
            {"pattern": "red", "output": "stop"},
            null,
            {"pattern": "green", "output": {"go": true}},
            {"pattern": "green", "output": "second green"}
        ])
    }

    #[tokio::test]
    async fn switcher_picks_first_equal_case() {
        let s = Switcher::default();
        let out = run(
            &s,
            json!({"input": "green", "casesTable": table(), "elseOutput": "?"}),
        )
        .await
        .unwrap();
        assert_eq!(out, vec![json!({"output": {"go": true}})]);
        let out = run(
            &s,
            json!({"input": "Red", "casesTable": table(), "elseOutput": "?"}),
        )
        .await
        .unwrap();
        assert_eq!(out, vec![json!({"output": "?"})]);
        let out = run(&s, json!({"input": "blue", "casesTable": table()}))
            .await
            .unwrap();
        assert_eq!(out, vec![json!({"output": null})]);
        let numeric = run(
            &s,
            json!({"input": 5, "casesTable": [{"pattern": "5", "output": "five"}]}),
        )
        .await
        .unwrap();
        assert_eq!(numeric, vec![json!({"output": "five"})]);
    }

    #[tokio::test]
    async fn switcher_regex_cases() {
        let s = Switcher::default();
        let cases = json!([
            {"pattern": "^\\d+$", "output": "number"},
            {"pattern": "/^HELLO/i", "output": "greeting"},
        ]);
        let out = run(
            &s,
            json!({"input": "hello there", "useRegExpMatch": true, "casesTable": cases.clone()}),
        )
        .await
        .unwrap();
        assert_eq!(out, vec![json!({"output": "greeting"})]);
        let out = run(
            &s,
            json!({"input": "42", "useRegExpMatch": true, "casesTable": cases.clone()}),
        )
        .await
        .unwrap();
        assert_eq!(out, vec![json!({"output": "number"})]);
        // Without the switch the same patterns compare as text.
        let out = run(
            &s,
            json!({"input": "42", "useRegExpMatch": false, "casesTable": cases}),
        )
        .await
        .unwrap();
        assert_eq!(out, vec![json!({"output": null})]);
        let err = run(&s, json!({"input": "x", "useRegExpMatch": true, "casesTable": [{"pattern": "(", "output": 1}]})).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::DataError);
    }

    #[tokio::test]
    async fn switcher_cases_are_javascript_regular_expressions() {
        let s = Switcher::default();
        let cases = json!([
            {"pattern": "/^(?!re:)(?<word>\\w+) \\k<word>/i", "output": "doubled"},
            {"pattern": "(?<=\\$)\\d+", "output": "dollars"},
        ]);
        let route = |input: &'static str| json!({"input": input, "useRegExpMatch": true, "casesTable": cases.clone()});
        let out = run(&s, route("Hello hello there")).await.unwrap();
        assert_eq!(out, vec![json!({"output": "doubled"})]);
        let out = run(&s, route("re: hello hello")).await.unwrap();
        assert_eq!(out, vec![json!({"output": null})]);
        let out = run(&s, route("costs $12")).await.unwrap();
        assert_eq!(out, vec![json!({"output": "dollars"})]);
    }

    #[test]
    fn switcher_check() {
        let s = Switcher::default();
        let p = Map::new();
        let bad = s.check(
            &p,
            &json!({"useRegExpMatch": true, "casesTable": [{"pattern": "(", "output": 1}]}),
        );
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, "mapper.casesTable[1].pattern");
        assert!(s.check(&p, &json!({"useRegExpMatch": true, "casesTable": [{"pattern": "{{1.p}}", "output": 1}]})).is_empty());
        assert!(
            s.check(
                &p,
                &json!({"useRegExpMatch": false, "casesTable": [{"pattern": "(", "output": 1}]})
            )
            .is_empty()
        );
        assert_eq!(
            s.check(&p, &json!({"casesTable": "nope"}))[0].0,
            "mapper.casesTable"
        );
    }

    #[test]
    fn regex_literals() {
        assert_eq!(regex_literal("/a.b/is").0, "a.b");
        assert!(
            regex_literal("/a.b/is").1.case_insensitive
                && regex_literal("/a.b/is").1.dot_matches_new_line
        );
        assert_eq!(
            regex_literal("/path/to"),
            ("/path/to".to_string(), Flags::default())
        );
        assert_eq!(regex_literal("//"), ("//".to_string(), Flags::default()));
        assert_eq!(
            regex_literal("plain"),
            ("plain".to_string(), Flags::default())
        );
    }

    #[tokio::test]
    async fn compose_passes_value_through() {
        let out = run(&Compose, json!({"value": "Hello {{1.name}} rendered"}))
            .await
            .unwrap();
        assert_eq!(out, vec![json!({"value": "Hello {{1.name}} rendered"})]);
        let out = run(&Compose, json!({"value": [1, 2]})).await.unwrap();
        assert_eq!(out, vec![json!({"value": [1, 2]})]);
        let out = run(&Compose, json!({})).await.unwrap();
        assert_eq!(out, vec![json!({"value": null})]);
    }

    fn fast_sleep() -> Sleep {
        Sleep {
            second: Duration::from_millis(20),
        }
    }

    #[tokio::test]
    async fn sleep_waits_the_scaled_duration() {
        let started = Instant::now();
        let out = run(&fast_sleep(), json!({"duration": "3"})).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(60),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(out, vec![json!({})]);
    }

    #[tokio::test]
    async fn sleep_rejects_out_of_range() {
        for bad in [json!(0), json!(301), json!("soon"), json!(null)] {
            let err = run(&fast_sleep(), json!({ "duration": bad }))
                .await
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::DataError, "{bad}");
            assert!(
                err.message.starts_with("mapper.duration"),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn sleep_check() {
        let p = Map::new();
        assert_eq!(Sleep::new().check(&p, &json!({"duration": 500})).len(), 1);
        assert_eq!(Sleep::new().check(&p, &json!({})).len(), 1);
        assert!(Sleep::new().check(&p, &json!({"duration": 300})).is_empty());
        assert!(
            Sleep::new()
                .check(&p, &json!({"duration": "{{1.wait}}"}))
                .is_empty()
        );
    }
}
