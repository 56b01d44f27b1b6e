//! The Text parser app: `regexp:Parser` ("Match pattern"), and the compiled-regex cache it
//! shares with `util:Switcher`.
//!
//! Output, one bundle per match (only the first unless `global`):
//! `{"i": <1-based match number>, "$1": …, "<name>": …, "__IMTMATCH__": <whole match>}` —
//! unnamed groups as `$n` (n counts every group, as in JavaScript), named groups by name, groups
//! that did not take part in the match left out. This is the shape Make's exported module
//! interfaces show (`i`, `$1`, named groups, `__IMTMATCH__`). No match gives no bundle, so the
//! route stops; with `continueWhenNoRes` it gives one empty bundle `{}` so the route goes on
//! with empty fields.
//!
//! Patterns are JavaScript's, as in Make (look-around, back-references, named groups), compiled
//! and run by [`crate::expr::regexp`]; one evaluation that backtracks past the process's limit
//! is a `DataError` naming the pattern.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::fields::{flag, is_blank, object, report, text};
use crate::expr::regexp::{self, JsRegex, RegexError};
use crate::module::error::{ErrorKind, ModuleError};
use crate::module::{Invocation, Module, ModuleKind};

/// Most bundles one `regexp:Parser` call may output.
pub const MAX_MATCHES: usize = 10_000;
/// Compiled patterns kept per cache before it is emptied.
const CACHE_CAPACITY: usize = 256;

/// Matching options, as Make's Text parser names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct Flags {
    pub case_insensitive: bool,
    pub multi_line: bool,
    pub dot_matches_new_line: bool,
    /// JavaScript's `u` (a `/…/u` literal in `util:Switcher`).
    pub unicode: bool,
}

impl Flags {
    /// The same options as JavaScript's flags `i`, `m`, `s` and `u`.
    pub(crate) fn js(self) -> regexp::Flags {
        regexp::Flags {
            ignore_case: self.case_insensitive,
            multiline: self.multi_line,
            dot_all: self.dot_matches_new_line,
            unicode: self.unicode,
        }
    }
}

/// Compiled regular expressions keyed by pattern and flags; patterns come from static
/// parameters or mapped values, so the cache is bounded and simply emptied when full.
#[derive(Default)]
pub(crate) struct RegexCache {
    compiled: Mutex<HashMap<(String, Flags), Arc<JsRegex>>>,
}

impl RegexCache {
    pub(crate) fn get(&self, pattern: &str, flags: Flags) -> Result<Arc<JsRegex>, String> {
        let key = (pattern.to_string(), flags);
        if let Some(found) = self.lock().get(&key) {
            return Ok(found.clone());
        }
        let compiled = Arc::new(compile(pattern, flags)?);
        let mut cache = self.lock();
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(key, compiled.clone());
        Ok(compiled)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Flags), Arc<JsRegex>>> {
        // A panic elsewhere while holding the lock leaves a usable map.
        self.compiled.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `pattern` compiled as JavaScript would with `flags`; the problem, for the field holding
/// the pattern, otherwise.
pub(crate) fn compile(pattern: &str, flags: Flags) -> Result<JsRegex, String> {
    JsRegex::new(pattern, flags.js())
        .map_err(|e| format!("is not a valid regular expression: {}", e.reason()))
}

/// A pattern that failed while it ran (it backtracked past the limit): a `DataError`, since
/// the same pattern on the same text fails again.
pub(crate) fn run_error(error: RegexError) -> ModuleError {
    ModuleError::data(error.to_string())
}

/// `regexp:Parser`.
#[derive(Default)]
pub(crate) struct Parser {
    cache: RegexCache,
}

/// The static configuration of a parser.
struct Config {
    pattern: String,
    flags: Flags,
    global: bool,
    continue_when_no_result: bool,
}

fn config(parameters: &Map<String, Value>) -> Result<Config, (String, String)> {
    let pattern = parameters.get("pattern");
    if is_blank(pattern) {
        return Err(("parameters.pattern".into(), "is required".into()));
    }
    let read = |name: &str, default: bool| {
        flag(parameters.get(name), default).map_err(|e| (format!("parameters.{name}"), e))
    };
    Ok(Config {
        pattern: pattern.map(text).unwrap_or_default(),
        flags: Flags {
            // Make's "Case sensitive" is on by default.
            case_insensitive: !read("sensitive", true)?,
            multi_line: read("multiline", false)?,
            dot_matches_new_line: read("singleline", false)?,
            unicode: false,
        },
        global: read("global", false)?,
        continue_when_no_result: read("continueWhenNoRes", false)?,
    })
}

impl Module for Parser {
    fn kind(&self) -> ModuleKind {
        ModuleKind::Search
    }

    fn check(&self, parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        match config(parameters) {
            Err(problem) => problems.push(problem),
            Ok(config) => report(
                &mut problems,
                "parameters.pattern",
                parameters.get("pattern"),
                compile(&config.pattern, config.flags),
            ),
        }
        if !(mapper.is_object() || mapper.is_null()) {
            problems.push(("mapper".into(), "must be an object".into()));
        }
        problems
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async move {
            let config = config(invocation.parameters)
                .map_err(|(field, reason)| ModuleError::config(format!("{field}: {reason}")))?;
            let regex = self
                .cache
                .get(&config.pattern, config.flags)
                .map_err(|reason| ModuleError::config(format!("parameters.pattern: {reason}")))?;
            let input = object(&invocation.mapper)
                .and_then(|m| m.get("text"))
                .map(text)
                .unwrap_or_default();
            let bundles = matches(&regex, &input, config.global)?;
            if bundles.is_empty() && config.continue_when_no_result {
                return Ok(vec![Value::Object(Map::new())]);
            }
            Ok(bundles)
        })
    }
}

pub(crate) fn matches(
    regex: &JsRegex,
    input: &str,
    global: bool,
) -> Result<Vec<Value>, ModuleError> {
    let names = regex.group_names();
    let mut bundles = Vec::new();
    let most = if global { MAX_MATCHES + 1 } else { 1 };
    for (index, found) in regex.matches(input, most).enumerate() {
        let found = found.map_err(run_error)?;
        if bundles.len() == MAX_MATCHES {
            return Err(ModuleError::new(
                ErrorKind::MaxResultsExceededError,
                format!("the pattern matched more than {MAX_MATCHES} times"),
            ));
        }
        let mut bundle = Map::new();
        bundle.insert("i".into(), json!(index + 1));
        for (group, name) in names.iter().enumerate().skip(1) {
            let Some(text) = found.group(input, group) else {
                continue;
            };
            let key = match name {
                Some(name) => name.clone(),
                None => format!("${group}"),
            };
            bundle.insert(key, Value::String(text.to_string()));
        }
        let whole = found.group(input, 0).unwrap_or_default();
        bundle.insert("__IMTMATCH__".into(), Value::String(whole.to_string()));
        bundles.push(Value::Object(bundle));
        if !global {
            break;
        }
    }
    Ok(bundles)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(parameters: Value, input: &str) -> Result<Vec<Value>, ModuleError> {
        super::super::call_once(&Parser::default(), parameters, json!({ "text": input })).await
    }

    #[tokio::test]
    async fn first_match_with_numbered_and_named_groups() {
        let out = run(
            json!({"pattern": "(\\w+)@(?<domain>[\\w.]+)", "global": false, "sensitive": true}),
            "mail ann@example.org and bob@test.net",
        )
        .await
        .unwrap();
        assert_eq!(
            out,
            vec![
                json!({"i": 1, "$1": "ann", "domain": "example.org", "__IMTMATCH__": "ann@example.org"})
            ]
        );
    }

    #[tokio::test]
    async fn global_gives_one_bundle_per_match() {
        let out = run(
            json!({"pattern": "(\\d+)(x)?", "global": true}),
            "a1 b22x c333",
        )
        .await
        .unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], json!({"i": 1, "$1": "1", "__IMTMATCH__": "1"}));
        assert_eq!(
            out[1],
            json!({"i": 2, "$1": "22", "$2": "x", "__IMTMATCH__": "22x"})
        );
        assert_eq!(out[2]["i"], 3);
    }

    #[tokio::test]
    async fn flags_follow_make_options() {
        let insensitive = run(
            json!({"pattern": "^hello.world$", "sensitive": false}),
            "HELLO world",
        )
        .await
        .unwrap();
        assert_eq!(insensitive.len(), 1);
        let sensitive = run(json!({"pattern": "^hello", "sensitive": true}), "HELLO")
            .await
            .unwrap();
        assert!(sensitive.is_empty());
        let multiline = run(json!({"pattern": "^b$", "multiline": true}), "a\nb\nc")
            .await
            .unwrap();
        assert_eq!(multiline.len(), 1);
        let not_multiline = run(json!({"pattern": "^b$", "multiline": false}), "a\nb\nc")
            .await
            .unwrap();
        assert!(not_multiline.is_empty());
        let singleline = run(json!({"pattern": "a.b", "singleline": true}), "a\nb")
            .await
            .unwrap();
        assert_eq!(singleline.len(), 1);
        let not_singleline = run(json!({"pattern": "a.b"}), "a\nb").await.unwrap();
        assert!(not_singleline.is_empty());
    }

    #[tokio::test]
    async fn javascript_look_around_and_back_references() {
        // The pattern of issue 20 (a Make community answer on parsing job e-mails).
        let out = run(
            json!({"pattern": "(?<=FULL JOB DESCRIPTION)(.*?)(?=&nbsp;Report)", "global": true}),
            "FULL JOB DESCRIPTION Welder wanted&nbsp;Report it",
        )
        .await
        .unwrap();
        assert_eq!(
            out,
            vec![json!({"i": 1, "$1": " Welder wanted", "__IMTMATCH__": " Welder wanted"})]
        );
        let out = run(
            json!({"pattern": "(?:(\\w)\\1)(?!\\1)", "global": true}),
            "aab xxxy",
        )
        .await
        .unwrap();
        let found: Vec<&Value> = out.iter().map(|b| &b["__IMTMATCH__"]).collect();
        assert_eq!(found, [&json!("aa"), &json!("xx")]);
    }

    #[tokio::test]
    async fn no_match_stops_or_continues() {
        let none = run(json!({"pattern": "z+", "continueWhenNoRes": false}), "abc")
            .await
            .unwrap();
        assert!(none.is_empty());
        let empty = run(json!({"pattern": "z+", "continueWhenNoRes": true}), "abc")
            .await
            .unwrap();
        assert_eq!(empty, vec![json!({})]);
    }

    #[tokio::test]
    async fn too_many_matches_is_an_error() {
        let input = "a".repeat(MAX_MATCHES + 1);
        let err = run(json!({"pattern": "a", "global": true}), &input)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::MaxResultsExceededError);
        let ok = run(json!({"pattern": "a", "global": true}), &input[1..])
            .await
            .unwrap();
        assert_eq!(ok.len(), MAX_MATCHES);
    }

    #[tokio::test]
    async fn bad_pattern_is_a_configuration_error() {
        // Look-ahead is JavaScript's (and so Make's); an unclosed one is not.
        let err = run(json!({"pattern": "(?=x"}), "x").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidConfigurationError);
    }

    #[test]
    fn check_reports_pattern_problems() {
        let parser = Parser::default();
        let p = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(
            parser.check(&p(json!({})), &json!({}))[0].0,
            "parameters.pattern"
        );
        let unclosed = parser.check(&p(json!({"pattern": "(?<=a b"})), &json!({}));
        assert_eq!(unclosed.len(), 1);
        assert!(
            unclosed[0]
                .1
                .starts_with("is not a valid regular expression")
        );
        assert!(
            parser
                .check(&p(json!({"pattern": "(?<=a)b"})), &json!({}))
                .is_empty(),
            "look-behind is JavaScript's"
        );
        assert_eq!(
            parser.check(&p(json!({"pattern": "a", "global": "often"})), &json!({}))[0].0,
            "parameters.global"
        );
        assert!(
            parser
                .check(
                    &p(json!({"pattern": "(?<n>a)", "global": true})),
                    &json!({"text": "{{1.t}}"})
                )
                .is_empty()
        );
    }

    #[test]
    fn cache_reuses_and_bounds_entries() {
        let cache = RegexCache::default();
        let a = cache.get("a+", Flags::default()).unwrap();
        let again = cache.get("a+", Flags::default()).unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        let other_flags = cache
            .get(
                "a+",
                Flags {
                    case_insensitive: true,
                    ..Flags::default()
                },
            )
            .unwrap();
        assert!(!Arc::ptr_eq(&a, &other_flags));
        for i in 0..(CACHE_CAPACITY * 2) {
            cache.get(&format!("x{i}"), Flags::default()).unwrap();
        }
        assert!(cache.lock().len() <= CACHE_CAPACITY);
        assert!(cache.get("(", Flags::default()).is_err());
    }
}
