//! The ECMAScript wrapper's unit tests: patterns from Make's help pages and community answers,
//! JavaScript's own semantics where they differ from the `regex` crate's, and the backtrack
//! limit.

use super::*;

fn re(pattern: &str, flags: &str) -> JsRegex {
    JsRegex::new(pattern, Flags::from_letters(flags))
        .unwrap_or_else(|e| panic!("{pattern} should compile: {e}"))
}

/// Every match's groups as text (`None` for a group that did not take part).
fn all(pattern: &str, flags: &str, text: &str) -> Vec<Vec<Option<String>>> {
    let r = re(pattern, flags);
    r.matches(text, usize::MAX)
        .map(|found| {
            let found = found.unwrap();
            (0..found.groups.len())
                .map(|n| found.group(text, n).map(str::to_string))
                .collect()
        })
        .collect()
}

fn first(pattern: &str, flags: &str, text: &str) -> Option<String> {
    all(pattern, flags, text)
        .into_iter()
        .next()
        .and_then(|g| g[0].clone())
}

fn replace(pattern: &str, flags: &str, text: &str, with: &str) -> String {
    re(pattern, flags)
        .replace(
            text,
            with,
            flags.contains('g'),
            NamedReferences::Expand,
            1 << 20,
        )
        .unwrap()
}

#[test]
fn look_around_from_a_make_community_answer() {
    // The pattern of issue 20, from a Make community thread on parsing job e-mails.
    let text = "Title<br>FULL JOB DESCRIPTION We need a welder.&nbsp;Report this job";
    let groups = all(r"(?<=FULL JOB DESCRIPTION)(.*?)(?=&nbsp;Report)", "", text);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0][1].as_deref(), Some(" We need a welder."));
    assert_eq!(
        first(r"(?<!\$)\b\d+\b", "", "$5 and 7 items"),
        Some("7".into())
    );
    assert_eq!(first(r"\d+(?!px)\b", "", "12px 30em"), None);
    assert_eq!(first(r"\d+(?!px|\d)", "", "12px 30em"), Some("30".into()));
}

#[test]
fn named_groups_and_back_references() {
    let groups = all(
        r"(?<user>[\w.]+)@(?<domain>[\w.]+)",
        "g",
        "ann@example.org, bob@test.net",
    );
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[1][2].as_deref(), Some("test.net"));
    let r = re(r"(?<user>[\w.]+)@(?<domain>[\w.]+)", "");
    assert_eq!(
        r.group_names(),
        [None, Some("user".to_string()), Some("domain".to_string())]
    );
    assert_eq!(
        first(r"(\w)\1", "", "abccba"),
        Some("cc".into()),
        "a numbered back-reference"
    );
    assert_eq!(
        first(r"<(?<tag>\w+)>.*?</\k<tag>>", "", "x <b>bold</b> y"),
        Some("<b>bold</b>".into())
    );
    assert_eq!(
        first(r#"(['"]).*?\1"#, "", r#"say "it's" now"#),
        Some(r#""it's""#.into())
    );
}

#[test]
fn flags_i_m_s() {
    assert_eq!(first("^hello$", "i", "HELLO"), Some("HELLO".into()));
    assert_eq!(first("^hello$", "", "HELLO"), None);
    assert_eq!(first("^b$", "m", "a\nb\nc"), Some("b".into()));
    assert_eq!(first("^b$", "", "a\nb\nc"), None);
    assert_eq!(first("a.b", "s", "a\nb"), Some("a\nb".into()));
    // With `m`, lines end at `\r` too, as in JavaScript (e-mails have CRLF lines).
    assert_eq!(
        first("^(.*order.*)$", "mi", "Hi\r\nYour ORDER 42\r\nBye"),
        Some("Your ORDER 42".into())
    );
    assert_eq!(replace("^", "gm", "a\r\nb", "> "), "> a\r> \n> b");
    assert_eq!(replace("$", "gm", "a\u{2028}b", "."), "a.\u{2028}b.");
    assert_eq!(first("a.b", "", "a\nb"), None);
}

#[test]
fn javascript_classes_and_dot() {
    // `\d` and `\w` are ASCII in JavaScript; `\s` includes the byte-order mark.
    assert_eq!(first(r"\d+", "", "٣4"), Some("4".into()));
    assert_eq!(first(r"\w+", "", "éa"), Some("a".into()));
    assert_eq!(first(r"\s", "", "a\u{FEFF}b"), Some("\u{FEFF}".into()));
    assert_eq!(first(r"\S+", "", "  é\u{FEFF}"), Some("é".into()));
    // `.` stops at every line terminator, not only `\n`.
    assert_eq!(first("a.b", "", "a\rb"), None);
    assert_eq!(first("a.b", "", "a\u{2028}b"), None);
    assert_eq!(first("a.b", "", "a-b"), Some("a-b".into()));
    // `[^]` is any character, `[]` none.
    assert_eq!(first("a[^]b", "", "a\nb"), Some("a\nb".into()));
    assert_eq!(first("a[]", "", "a]"), None);
    assert_eq!(
        first(r"[\d.,]+", "", "total: 1,234.50 EUR"),
        Some("1,234.50".into())
    );
    assert_eq!(first(r"[^\s@]+", "", "  ann@x"), Some("ann".into()));
    assert_eq!(first(r"[\W]+", "", "ab-+cd"), Some("-+".into()));
    assert_eq!(first(r"[a-\d]+", "", "x-a9"), Some("-a9".into()));
    assert_eq!(first(r"[[\]]+", "", "x[]]y"), Some("[]]".into()));
    assert_eq!(first(r"[&~]+", "", "a&~b"), Some("&~".into()));
}

#[test]
fn annex_b_escapes_and_literal_braces() {
    assert_eq!(
        first(r"https?:\/\/[^\/]+", "", "see https://make.com/en"),
        Some("https://make.com".into())
    );
    assert_eq!(
        first(r"{{\w+}}", "", "Hi {{name}}!"),
        Some("{{name}}".into())
    );
    assert_eq!(first(r"a{2}", "", "caaat"), Some("aa".into()));
    assert_eq!(first(r"a{,2}", "", "a{,2}"), Some("a{,2}".into()));
    assert_eq!(
        first(r"\x41\u00e9\u{1F600}", "u", "Aé😀"),
        Some("Aé😀".into())
    );
    assert_eq!(first(r"\uD83D\uDE00", "", "x😀"), Some("😀".into()));
    assert_eq!(first(r"\cJ", "", "a\nb"), Some("\n".into()));
    assert_eq!(first(r"\q\-\#", "", "q-#"), Some("q-#".into()));
    assert_eq!(first(r"a b#c", "", "a b#c"), Some("a b#c".into()));
    assert_eq!(first(r"\p{Lu}+", "u", "abcDÉF"), Some("DÉF".into()));
    assert_eq!(first(r"\0", "", "a\0b"), Some("\0".into()));
}

#[test]
fn invalid_patterns_name_the_pattern_and_the_reason() {
    for bad in [
        "(unclosed",
        "a{2,1}",
        "[z-a]",
        "(?i)abc",
        "(?P<n>a)",
        "*a",
        "a\\",
    ] {
        let error = JsRegex::new(bad, Flags::default()).unwrap_err();
        assert!(
            matches!(&error, RegexError::Syntax { pattern, .. } if pattern == bad),
            "{bad}: {error:?}"
        );
        assert!(
            error.to_string().starts_with(&format!("/{bad}/")),
            "{error}"
        );
    }
    let error = JsRegex::new(r"(?<=a+)b", Flags::default()).unwrap_err();
    assert!(
        error.reason().contains("fixed number of characters"),
        "{error}"
    );
    let error = JsRegex::new(r"\uD83D", Flags::default()).unwrap_err();
    assert!(error.reason().contains("surrogate"), "{error}");
}

#[test]
fn replacement_uses_javascript_syntax() {
    assert_eq!(
        replace(
            r"(\w+)@(\w+)\.com",
            "g",
            "ann@make.com bob@x.com",
            "$2:$1 [$&]"
        ),
        "make:ann [ann@make.com] x:bob [bob@x.com]"
    );
    assert_eq!(
        replace(
            r"(?<first>\w+) (?<last>\w+)",
            "",
            "Ann Lee",
            "$<last>, $<first>"
        ),
        "Lee, Ann"
    );
    assert_eq!(replace("b", "", "abc", "[$`|$']"), "a[a|c]c");
    assert_eq!(replace("b", "", "abc", "$$1 $1 $0 $"), "a$1 $1 $0 $c");
    assert_eq!(replace("(b)", "", "abc", "$11"), "ab1c", "$11 is $1 then 1");
    assert_eq!(replace("o", "g", "foo", "0"), "f00");
    assert_eq!(replace("o", "", "foo", "0"), "f0o");
    assert_eq!(replace("x*", "g", "abc", "-"), "-a-b-c-");
    let r = re("(?<n>a)", "");
    assert_eq!(
        r.replace("a", "$<n>", true, NamedReferences::Refuse, 100),
        Err(ReplaceError::NamedReference)
    );
    assert_eq!(
        r.replace("aaaa", "$&$&$&", true, NamedReferences::Expand, 10),
        Err(ReplaceError::TooLarge(10))
    );
}

#[test]
fn catastrophic_backtracking_ends_with_an_error_naming_the_pattern() {
    let text = format!("{}!", "a".repeat(30_000));
    // Without look-around or back-references the pattern runs in linear time: no error, and
    // JavaScript's answer (no match).
    assert_eq!(first("(a+)+$", "", &text), None);
    // With a back-reference it backtracks; the limit ends it.
    let pattern = r"^(a+)+\1$";
    let r = JsRegex::with_limit(pattern, Flags::default(), 10_000).unwrap();
    let error = r.is_match(&text).unwrap_err();
    assert_eq!(
        error,
        RegexError::TooComplex {
            pattern: pattern.into(),
            flags: String::new(),
            limit: 10_000
        }
    );
    let message = error.to_string();
    assert!(message.contains(pattern) && message.contains("--regex-backtrack-limit"));
    // The same pattern within the limit is fine.
    assert!(r.is_match("aaaa").unwrap());
}

#[test]
fn the_cache_keys_on_pattern_flags_and_limit() {
    let a = cached("ca+che", Flags::default()).unwrap();
    let again = cached("ca+che", Flags::default()).unwrap();
    assert!(Arc::ptr_eq(&a, &again));
    let insensitive = cached("ca+che", Flags::from_letters("i")).unwrap();
    assert!(!Arc::ptr_eq(&a, &insensitive));
    assert!(cached("(", Flags::default()).is_err());
}
