//! The Text parser modules real exports use besides `regexp:Parser` (which lives in `text`):
//! `regexp:AdvancedParser` (Match pattern with every field mappable), `regexp:Replace`,
//! `regexp:HTMLToText` and `regexp:GetElementsFromText`.
//!
//! Every setting is read from the mapper first, then from the parameters: newer exports map
//! them (`{{…}}` allowed), older ones keep them static. Patterns share `text`'s compiled-regex
//! cache and syntax (JavaScript's, through [`crate::expr::regexp`]), and its output shape: one
//! bundle per match `{"i", "$1", "<name>", "__IMTMATCH__"}`.
//!
//! Invariants: a static pattern that does not compile is reported by `check()` with its field;
//! a mapped one that does not compile is an `InvalidConfigurationError` when the module runs;
//! no call outputs more than [`text::MAX_MATCHES`] bundles, and a replacement is measured
//! before it is built (it cannot exceed `expr::value::MAX_VALUE_BYTES`).

use std::sync::{Arc, LazyLock};

use futures::future::BoxFuture;
use regex::Regex;
use serde_json::{Map, Value, json};

use super::fields::{flag, is_blank, is_dynamic, object, report, text};
use super::text::{self as parser, Flags, RegexCache};
use crate::expr::regexp::{JsRegex, NamedReferences, ReplaceError};
use crate::module::error::{ErrorKind, ModuleError};
use crate::module::{Invocation, Module, ModuleKind};

/// A setting: the mapper's value, else the parameters'.
fn setting<'a>(
    parameters: &'a Map<String, Value>,
    mapper: &'a Value,
    name: &str,
) -> Option<&'a Value> {
    object(mapper)
        .and_then(|m| m.get(name))
        .filter(|v| !v.is_null())
        .or_else(|| parameters.get(name).filter(|v| !v.is_null()))
}

/// Where a setting was found, for problem paths.
fn field(parameters: &Map<String, Value>, mapper: &Value, name: &str) -> String {
    match object(mapper).and_then(|m| m.get(name)) {
        Some(v) if !v.is_null() => format!("mapper.{name}"),
        _ if parameters.contains_key(name) => format!("parameters.{name}"),
        _ => format!("mapper.{name}"),
    }
}

/// The pattern and its options, as the Text parser names them.
struct Pattern {
    pattern: String,
    flags: Flags,
    global: bool,
    continue_when_no_result: bool,
}

fn pattern(
    parameters: &Map<String, Value>,
    mapper: &Value,
    global_default: bool,
) -> Result<Pattern, (String, String)> {
    let value = setting(parameters, mapper, "pattern");
    if is_blank(value) {
        return Err((field(parameters, mapper, "pattern"), "is required".into()));
    }
    let read = |name: &str, default: bool| {
        flag(setting(parameters, mapper, name), default)
            .map_err(|e| (field(parameters, mapper, name), e))
    };
    Ok(Pattern {
        pattern: value.map(text).unwrap_or_default(),
        flags: Flags {
            // "Case sensitive" is on by default, as in `regexp:Parser`.
            case_insensitive: !read("sensitive", true)?,
            multi_line: read("multiline", false)?,
            dot_matches_new_line: read("singleline", false)?,
            unicode: false,
        },
        global: read("global", global_default)?,
        continue_when_no_result: read("continueWhenNoRes", false)?,
    })
}

/// `check()` for a module with a pattern: its options, and the pattern itself when static.
fn check_pattern(parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if !(mapper.is_object() || mapper.is_null()) {
        problems.push(("mapper".into(), "must be an object".into()));
        return problems;
    }
    let options = [
        "global",
        "sensitive",
        "multiline",
        "singleline",
        "continueWhenNoRes",
    ];
    if options
        .iter()
        .any(|o| setting(parameters, mapper, o).is_some_and(is_dynamic))
    {
        // An option mapped from data is only known when the module runs.
        return problems;
    }
    match pattern(parameters, mapper, false) {
        Err(problem) => {
            if !setting(parameters, mapper, "pattern").is_some_and(is_dynamic) {
                problems.push(problem);
            }
        }
        Ok(p) => report(
            &mut problems,
            field(parameters, mapper, "pattern"),
            setting(parameters, mapper, "pattern"),
            parser::compile(&p.pattern, p.flags),
        ),
    }
    problems
}

fn config_error((field, reason): (String, String)) -> ModuleError {
    ModuleError::config(format!("{field}: {reason}"))
}

/// The module's pattern settings ([`pattern`]) and their regex, compiled through `cache`; a
/// configuration error naming the field otherwise.
fn compiled(
    cache: &RegexCache,
    parameters: &Map<String, Value>,
    mapper: &Value,
    global_default: bool,
) -> Result<(Pattern, Arc<JsRegex>), ModuleError> {
    let p = pattern(parameters, mapper, global_default).map_err(config_error)?;
    let regex = cache.get(&p.pattern, p.flags).map_err(|reason| {
        let at = field(parameters, mapper, "pattern");
        ModuleError::config(format!("{at}: {reason}"))
    })?;
    Ok((p, regex))
}

fn input_text(mapper: &Value, name: &str) -> String {
    object(mapper)
        .and_then(|m| m.get(name))
        .map(text)
        .unwrap_or_default()
}

/// `regexp:AdvancedParser`: Make's Match pattern with every field mappable.
#[derive(Default)]
pub(crate) struct AdvancedParser {
    cache: RegexCache,
}

impl Module for AdvancedParser {
    fn kind(&self) -> ModuleKind {
        ModuleKind::Search
    }

    fn check(&self, parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        check_pattern(parameters, mapper)
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async move {
            let (p, regex) = compiled(
                &self.cache,
                invocation.parameters,
                &invocation.mapper,
                false,
            )?;
            let bundles =
                parser::matches(&regex, &input_text(&invocation.mapper, "text"), p.global)?;
            if bundles.is_empty() && p.continue_when_no_result {
                return Ok(vec![Value::Object(Map::new())]);
            }
            Ok(bundles)
        })
    }
}

/// `regexp:Replace`: `{"text": …}` with the pattern's matches (every one with `global`, the
/// default, else the first) replaced by `value`, written as JavaScript writes a replacement
/// (`$1`, `$<name>`, `$&`, `$$`).
#[derive(Default)]
pub(crate) struct Replace {
    cache: RegexCache,
}

impl Module for Replace {
    fn check(&self, parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        check_pattern(parameters, mapper)
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async move {
            let (parameters, mapper) = (invocation.parameters, &invocation.mapper);
            let (p, regex) = compiled(&self.cache, parameters, mapper, true)?;
            let replacement = setting(parameters, mapper, "value")
                .map(text)
                .unwrap_or_default();
            let input = input_text(mapper, "text");
            let out = replace(&regex, &input, &replacement, p.global)?;
            Ok(vec![json!({ "text": out })])
        })
    }
}

/// Replaces matches of `regex` in `input` by a JavaScript-style `replacement`, measuring the
/// result as it grows.
fn replace(
    regex: &JsRegex,
    input: &str,
    replacement: &str,
    global: bool,
) -> Result<String, ModuleError> {
    let max = crate::expr::value::MAX_VALUE_BYTES;
    regex
        .replace(input, replacement, global, NamedReferences::Expand, max)
        .map_err(|e| match e {
            ReplaceError::Regex(e) => parser::run_error(e),
            ReplaceError::TooLarge(_) => ModuleError::data(format!(
                "the replaced text would take more than {max} bytes"
            )),
            other => ModuleError::data(other.to_string()),
        })
}

/// `regexp:HTMLToText`: `{"text": …}`, the text a reader sees in `mapper.html` ([`html_to_text`]):
/// tags removed (`script`, `style` and comments with their content), blocks and `<br>` as line
/// breaks, entities decoded, runs of blanks collapsed.
pub(crate) struct HtmlToText;

impl Module for HtmlToText {
    fn check(&self, _parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        if mapper.is_object() || mapper.is_null() {
            Vec::new()
        } else {
            vec![("mapper".into(), "must be an object".into())]
        }
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async move {
            let html = input_text(&invocation.mapper, "html");
            Ok(vec![json!({ "text": html_to_text(&html) })])
        })
    }
}

static BLANKS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[ \t\r\f\u{a0}]+").expect("static pattern"));
static LINES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r" *\n[ \n]*").expect("static pattern"));

/// Widest line the converter lays out: paragraphs are never wrapped.
const NO_WRAP: usize = 1 << 20;

/// The text of `html` as an HTML5 parser reads it (`html2text`: entities decoded from the
/// full table, `script`, `style`, `head` and comments left out), without decorations (no list
/// bullets or heading marks), in Make's shape: one line per block or `<br>`, runs of blanks as
/// one space, no empty lines.
fn html_to_text(html: &str) -> String {
    let text = html2text::config::with_decorator(html2text::render::TrivialDecorator::new())
        .raw_mode(true)
        .allow_width_overflow()
        .string_from_read(html.as_bytes(), NO_WRAP)
        // The parser recovers from any input; an error is a layout limit: keep the source.
        .unwrap_or_else(|_| html.to_string());
    let collapsed = BLANKS.replace_all(&text, " ");
    LINES.replace_all(&collapsed, "\n").trim().to_string()
}

/// What `regexp:GetElementsFromText` looks for (`parameters.pattern` or `mapper.pattern`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    Email,
    Url,
    Phone,
    Ip,
}

impl Element {
    fn parse(name: &str) -> Option<Element> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "email" | "emails" => Element::Email,
            "url" | "urls" => Element::Url,
            "phone" | "phones" | "telephone" | "tel" => Element::Phone,
            "ip" | "ips" | "ipv4" => Element::Ip,
            _ => return None,
        })
    }

    fn regex(self) -> &'static Regex {
        static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}").expect("static pattern")
        });
        static URL: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r#"(?i)\b(?:https?://|ftp://|www\.)[^\s<>"']+[^\s<>"'.,;:!?)\]]"#)
                .expect("static pattern")
        });
        static PHONE: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"\+?\(?\d[\d ().-]{5,}\d").expect("static pattern"));
        static IP: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
                .expect("static pattern")
        });
        match self {
            Element::Email => &EMAIL,
            Element::Url => &URL,
            Element::Phone => &PHONE,
            Element::Ip => &IP,
        }
    }
}

/// `regexp:GetElementsFromText`: one bundle `{"i", "element"}` per email address, URL, phone
/// number or IPv4 address found in `mapper.text`, in order; none stops the route unless
/// `continueWhenNoRes` (then one empty bundle).
pub(crate) struct GetElementsFromText;

fn element(parameters: &Map<String, Value>, mapper: &Value) -> Result<Element, (String, String)> {
    let at = field(parameters, mapper, "pattern");
    match setting(parameters, mapper, "pattern") {
        None => Err((at, "is required: one of email, url, phone, ip".into())),
        Some(v) => Element::parse(&text(v)).ok_or_else(|| {
            (
                at,
                format!("expected one of email, url, phone, ip, got {v}"),
            )
        }),
    }
}

impl Module for GetElementsFromText {
    fn kind(&self) -> ModuleKind {
        ModuleKind::Search
    }

    fn check(&self, parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if !setting(parameters, mapper, "pattern").is_some_and(is_dynamic)
            && let Err(problem) = element(parameters, mapper)
        {
            problems.push(problem);
        }
        problems
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async move {
            let (parameters, mapper) = (invocation.parameters, &invocation.mapper);
            let kind = element(parameters, mapper).map_err(config_error)?;
            let continue_when_no_result =
                flag(setting(parameters, mapper, "continueWhenNoRes"), false).map_err(|e| {
                    config_error((field(parameters, mapper, "continueWhenNoRes"), e))
                })?;
            let input = input_text(mapper, "text");
            let mut bundles = Vec::new();
            for (n, found) in kind.regex().find_iter(&input).enumerate() {
                if n == parser::MAX_MATCHES {
                    return Err(ModuleError::new(
                        ErrorKind::MaxResultsExceededError,
                        format!("more than {} elements were found", parser::MAX_MATCHES),
                    ));
                }
                bundles.push(json!({"i": n + 1, "element": found.as_str()}));
            }
            if bundles.is_empty() && continue_when_no_result {
                bundles.push(Value::Object(Map::new()));
            }
            Ok(bundles)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::apps::builtin::call_once as run;

    #[tokio::test]
    async fn advanced_parser_reads_mapped_settings_and_outputs_groups() {
        let module = AdvancedParser::default();
        let out = run(
            &module,
            json!({}),
            json!({"pattern": "(?<user>\\w+)@(\\w+)\\.com", "global": true, "sensitive": false,
                   "text": "A@X.com, b@y.com"}),
        )
        .await
        .unwrap();
        assert_eq!(
            out,
            vec![
                json!({"i": 1, "user": "A", "$2": "X", "__IMTMATCH__": "A@X.com"}),
                json!({"i": 2, "user": "b", "$2": "y", "__IMTMATCH__": "b@y.com"}),
            ]
        );
        // Parameters still work (older exports); the mapper wins over them.
        let out = run(
            &module,
            json!({"pattern": "z", "continueWhenNoRes": true}),
            json!({"text": "abc"}),
        )
        .await
        .unwrap();
        assert_eq!(out, vec![json!({})]);
        let err = run(&module, json!({}), json!({"pattern": "(", "text": "x"}))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidConfigurationError);
        assert!(
            err.message.starts_with("mapper.pattern: "),
            "{}",
            err.message
        );
    }

    #[test]
    fn checks_report_static_problems_only() {
        let p = |v: Value| v.as_object().cloned().unwrap();
        let module = AdvancedParser::default();
        assert_eq!(
            module.check(&p(json!({})), &json!({"text": "x"})),
            [("mapper.pattern".to_string(), "is required".to_string())]
        );
        assert_eq!(
            module.check(&p(json!({})), &json!({"pattern": "("}))[0].0,
            "mapper.pattern"
        );
        assert!(
            module
                .check(&p(json!({})), &json!({"pattern": "{{1.p}}"}))
                .is_empty()
        );
        assert_eq!(
            module.check(&p(json!({"pattern": "a", "global": "often"})), &json!({}))[0].0,
            "parameters.global"
        );
        assert_eq!(
            GetElementsFromText.check(&p(json!({"pattern": "colours"})), &json!({}))[0].0,
            "parameters.pattern"
        );
    }

    #[tokio::test]
    async fn replace_uses_javascript_replacements() {
        let module = Replace::default();
        let out = run(
            &module,
            json!({}),
            json!({"pattern": "(\\d{3})-(?<rest>\\d{4})", "value": "[$1 $<rest> $& $$]",
                   "text": "call 555-0100 or 555-0199"}),
        )
        .await
        .unwrap();
        assert_eq!(
            out,
            vec![json!({"text": "call [555 0100 555-0100 $] or [555 0199 555-0199 $]"})]
        );
        let first = run(
            &module,
            json!({"global": false}),
            json!({"pattern": "a", "value": "b", "text": "aaa"}),
        )
        .await
        .unwrap();
        assert_eq!(first, vec![json!({"text": "baa"})]);
        // As in JavaScript, `$9` without a ninth group and a lone `$` stay as written.
        let literal = run(
            &module,
            json!({}),
            json!({"pattern": "(?<n>a)", "value": "$9x$<n>$x$", "text": "a"}),
        )
        .await
        .unwrap();
        assert_eq!(literal, vec![json!({"text": "$9xa$x$"})]);
    }

    #[tokio::test]
    async fn html_becomes_readable_text() {
        let out = run(
            &HtmlToText,
            json!({}),
            json!({"html": "<html><head><title>T</title><style>p{}</style></head><body>\n<h1>Hi&nbsp;there</h1><p>One &amp; <b>two</b><br/>three &#233;&#x41;</p>\n<!-- hidden --><script>x()</script><ul><li>a</li><li>b</li></ul></body></html>"}),
        )
        .await
        .unwrap();
        assert_eq!(
            out,
            vec![json!({"text": "Hi there\nOne & two\nthree éA\na\nb"})]
        );
        // An unknown name stays as written; `&amp` without `;` is decoded as HTML5 reads it.
        assert_eq!(html_to_text("a &unknown; & b &amp"), "a &unknown; & b &");
        // Names beyond the common few come from the full table.
        assert_eq!(
            html_to_text("caf&eacute; &hellip; &rarr; &NotEqualTilde;"),
            "café … → ≂̸"
        );
    }

    #[tokio::test]
    async fn elements_are_found_in_order() {
        let text = "Mail ann@example.org or see https://example.org/a?b=1. Call +1 (555) 010-0199";
        let found = |kind: &str| {
            let kind = kind.to_string();
            let text = if kind == "ip" {
                "host 10.0.0.255, not 999.1.1.1"
            } else {
                text
            };
            async move {
                run(
                    &GetElementsFromText,
                    json!({"pattern": kind}),
                    json!({"text": text}),
                )
                .await
                .unwrap()
            }
        };
        assert_eq!(
            found("email").await,
            vec![json!({"i": 1, "element": "ann@example.org"})]
        );
        assert_eq!(
            found("url").await,
            vec![json!({"i": 1, "element": "https://example.org/a?b=1"})]
        );
        assert_eq!(
            found("phone").await,
            vec![json!({"i": 1, "element": "+1 (555) 010-0199"})]
        );
        assert_eq!(
            found("ip").await,
            vec![json!({"i": 1, "element": "10.0.0.255"})]
        );
        let none = run(
            &GetElementsFromText,
            json!({"pattern": "email", "continueWhenNoRes": true}),
            json!({"text": "nothing"}),
        )
        .await
        .unwrap();
        assert_eq!(none, vec![json!({})]);
    }
}
