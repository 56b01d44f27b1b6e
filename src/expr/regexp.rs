//! ECMAScript regular expressions: the one place where every pattern a user writes is compiled
//! and run — IML's `replace(text; /re/flags; …)`, the Text parser modules (`regexp:*`),
//! `util:Switcher`'s regular-expression cases, the filter operators `text:pattern` and
//! `text:notpattern`. Make runs JavaScript, so a pattern means what it means in JavaScript:
//! look-ahead and look-behind, back-references (`\1`, `\k<name>`), named groups
//! `(?<name>…)`, flags `i m s` (and `g`, read by the callers), `\d`/`\w` ASCII-only, `.`
//! stopping at every line terminator, Annex B's lenient escapes (`\/`, a lone `{`).
//!
//! Engine: the JavaScript syntax is translated here, token by token, to `fancy-regex`'s, which
//! runs it: parts without look-around or back-references go to the `regex` crate (linear
//! time), the rest to a backtracking VM with a **backtrack limit** ([`backtrack_limit`]). That
//! limit is why this engine: the ECMAScript engine `regress` (0.12) offers no step limit and
//! no cancellation, and a thread cannot be stopped from outside, so a runaway `regress` match
//! would keep a core busy for ever after its deadline. With the limit, one evaluation of a
//! pattern does a bounded amount of work and then fails with [`RegexError::TooComplex`],
//! naming the pattern and the flag that raises the limit (`--regex-backtrack-limit`).
//! Not counted: the linear-time calls themselves, so a look-around followed by a failing
//! unbounded repetition (`(?<=a)a*x`) can still take time quadratic in the text's length, as in
//! JavaScript (documented in `docs/make-compatibility.md`).
//!
//! Invariants: a translated pattern matches what the JavaScript pattern matches, except for
//! the documented differences (`docs/make-compatibility.md`): a look-behind must have a fixed
//! length, `\b` counts non-ASCII letters as word characters, a back-reference to a group that
//! did not take part fails instead of matching empty. Compiled patterns are cached ([`cached`])
//! by pattern, flags and limit, at most [`CACHE_CAPACITY`] of them.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Backtracking steps one evaluation of a pattern may take by default. A million steps take
/// well under a second; the `regex` crate's linear-time matching of the parts without
/// look-around or back-references is not counted (it cannot run away).
pub const DEFAULT_BACKTRACK_LIMIT: usize = 1_000_000;
/// Compiled patterns kept before the cache is emptied.
pub const CACHE_CAPACITY: usize = 256;
/// Upper bound on the compiled size of one pattern's linear-time parts.
const SIZE_LIMIT: usize = 4 * 1024 * 1024;

static BACKTRACK_LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_BACKTRACK_LIMIT);

/// Sets the backtrack limit of the patterns compiled from now on, for the whole process (the
/// `run`, `serve` and `worker` commands' `--regex-backtrack-limit`); at least 1.
pub fn set_backtrack_limit(limit: usize) {
    BACKTRACK_LIMIT.store(limit.max(1), Ordering::Relaxed);
}

/// Backtracking steps one evaluation of a pattern may take.
pub fn backtrack_limit() -> usize {
    BACKTRACK_LIMIT.load(Ordering::Relaxed)
}

/// JavaScript's flags that change what a pattern matches; `g` (every match or the first) is
/// the caller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags {
    /// `i`
    pub ignore_case: bool,
    /// `m`: `^` and `$` at line breaks too.
    pub multiline: bool,
    /// `s`: `.` matches line terminators too.
    pub dot_all: bool,
    /// `u`: `\u{…}` and `\p{…}` escapes.
    pub unicode: bool,
}

impl Flags {
    /// The flags of a literal `/re/flags`, as letters (`g` and `y` are the caller's).
    pub fn from_letters(letters: &str) -> Flags {
        Flags {
            ignore_case: letters.contains('i'),
            multiline: letters.contains('m'),
            dot_all: letters.contains('s'),
            unicode: letters.contains('u'),
        }
    }

    fn letters(self) -> String {
        [
            (self.ignore_case, 'i'),
            (self.multiline, 'm'),
            (self.dot_all, 's'),
            (self.unicode, 'u'),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| *c)
        .collect()
    }
}

/// Why a pattern could not be compiled or evaluated; both name the pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegexError {
    #[error("/{pattern}/{flags} is not a valid regular expression: {reason}")]
    Syntax {
        pattern: String,
        flags: String,
        reason: String,
    },
    #[error(
        "the regular expression /{pattern}/{flags} needed more than {limit} backtracking steps on this text (catastrophic backtracking); simplify the pattern or raise the limit with --regex-backtrack-limit"
    )]
    TooComplex {
        pattern: String,
        flags: String,
        limit: usize,
    },
}

impl RegexError {
    /// For a syntax error, what is wrong without the pattern (for messages that already name
    /// the field holding it); otherwise the whole message.
    pub fn reason(&self) -> String {
        match self {
            RegexError::Syntax { reason, .. } => reason.clone(),
            other => other.to_string(),
        }
    }
}

/// A compiled JavaScript regular expression.
#[derive(Debug)]
pub struct JsRegex {
    source: String,
    flags: Flags,
    limit: usize,
    compiled: fancy_regex::Regex,
    /// Each group's name (index 0 is the whole match).
    names: Vec<Option<String>>,
}

/// One match: the byte range of the whole match (index 0) and of each group that took part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub groups: Vec<Option<Range<usize>>>,
}

impl Found {
    /// The whole match's range.
    pub fn whole(&self) -> Range<usize> {
        self.groups.first().cloned().flatten().unwrap_or(0..0)
    }

    /// Group `n`'s text in `text`, if it took part.
    pub fn group<'t>(&self, text: &'t str, n: usize) -> Option<&'t str> {
        self.groups
            .get(n)
            .cloned()
            .flatten()
            .and_then(|r| text.get(r))
    }
}

/// How `$<name>` in a replacement is read: as the named group (JavaScript, `regexp:Replace`)
/// or as an error (IML `replace`, as Make documents it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedReferences {
    Expand,
    Refuse,
}

/// Why a replacement failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplaceError {
    #[error(transparent)]
    Regex(#[from] RegexError),
    #[error("the replaced text would take more than {0} bytes")]
    TooLarge(usize),
    #[error("named capture groups ($<name>) are not supported in the replacement")]
    NamedReference,
}

impl JsRegex {
    /// Compiles `pattern` with `flags` and the process's [`backtrack_limit`].
    pub fn new(pattern: &str, flags: Flags) -> Result<JsRegex, RegexError> {
        Self::with_limit(pattern, flags, backtrack_limit())
    }

    /// Compiles `pattern` with `flags`, allowing `limit` backtracking steps per evaluation.
    pub fn with_limit(pattern: &str, flags: Flags, limit: usize) -> Result<JsRegex, RegexError> {
        let syntax = |reason: String| RegexError::Syntax {
            pattern: pattern.to_string(),
            flags: flags.letters(),
            reason,
        };
        let translated = translate(pattern, flags).map_err(syntax)?;
        let compiled = fancy_regex::RegexBuilder::new(&translated)
            .case_insensitive(flags.ignore_case)
            .backtrack_limit(limit.max(1))
            .delegate_size_limit(SIZE_LIMIT)
            .delegate_dfa_size_limit(SIZE_LIMIT)
            .build()
            .map_err(|e| syntax(engine_error(&e)))?;
        let names = compiled
            .capture_names()
            .map(|n| n.map(str::to_string))
            .collect();
        Ok(JsRegex {
            source: pattern.to_string(),
            flags,
            limit: limit.max(1),
            compiled,
            names,
        })
    }

    /// The pattern as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Each group's name, index 0 being the whole match (`None` for unnamed groups).
    pub fn group_names(&self) -> &[Option<String>] {
        &self.names
    }

    /// Whether the pattern matches somewhere in `text`.
    pub fn is_match(&self, text: &str) -> Result<bool, RegexError> {
        self.compiled.is_match(text).map_err(|e| self.run_error(e))
    }

    /// The matches in `text`, left to right, not overlapping (an empty match advances one
    /// character, as JavaScript's global matching does); stops after `limit` matches.
    pub fn matches<'r, 't>(
        &'r self,
        text: &'t str,
        limit: usize,
    ) -> impl Iterator<Item = Result<Found, RegexError>> + use<'r, 't> {
        self.compiled
            .captures_iter(text)
            .take(limit)
            .map(move |found| {
                let captures = found.map_err(|e| self.run_error(e))?;
                Ok(Found {
                    groups: (0..captures.len())
                        .map(|n| captures.get(n).map(|m| m.range()))
                        .collect(),
                })
            })
    }

    /// `text` with its first match (every match when `all`) replaced by `replacement`, in
    /// JavaScript's replacement syntax: `$$`, `$&`, `` $` ``, `$'`, `$1`…`$99`, `$<name>`.
    /// The result is measured as it grows and refused past `max_bytes`.
    pub fn replace(
        &self,
        text: &str,
        replacement: &str,
        all: bool,
        named: NamedReferences,
        max_bytes: usize,
    ) -> Result<String, ReplaceError> {
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        let push = |out: &mut String, piece: &str| {
            if out.len().saturating_add(piece.len()) > max_bytes {
                return Err(ReplaceError::TooLarge(max_bytes));
            }
            out.push_str(piece);
            Ok(())
        };
        for found in self.matches(text, if all { usize::MAX } else { 1 }) {
            let found = found?;
            let whole = found.whole();
            push(&mut out, text.get(last..whole.start).unwrap_or(""))?;
            self.expand(replacement, &found, text, named, &mut |piece| {
                push(&mut out, piece)
            })?;
            last = whole.end;
        }
        push(&mut out, text.get(last..).unwrap_or(""))?;
        Ok(out)
    }

    /// Writes `replacement` for one match through `push`, piece by piece (`$'` repeated in a
    /// long replacement would otherwise copy the text once per repeat before any check).
    fn expand(
        &self,
        replacement: &str,
        found: &Found,
        text: &str,
        named: NamedReferences,
        push: &mut dyn FnMut(&str) -> Result<(), ReplaceError>,
    ) -> Result<(), ReplaceError> {
        let whole = found.whole();
        let groups = found.groups.len().saturating_sub(1);
        let has_names = self.names.iter().any(Option::is_some);
        let mut rest = replacement;
        while let Some(dollar) = rest.find('$') {
            push(&rest[..dollar])?;
            let after = &rest[dollar + 1..];
            let mut chars = after.chars();
            let (piece, used): (&str, usize) = match chars.next() {
                Some('$') => ("$", 1),
                Some('&') => (&text[whole.clone()], 1),
                Some('`') => (text.get(..whole.start).unwrap_or(""), 1),
                Some('\'') => (text.get(whole.end..).unwrap_or(""), 1),
                Some('<') if named == NamedReferences::Refuse => {
                    return Err(ReplaceError::NamedReference);
                }
                Some('<') if has_names => match after.find('>') {
                    Some(close) => {
                        let name = &after[1..close];
                        let n = self.names.iter().position(|n| n.as_deref() == Some(name));
                        (
                            n.and_then(|n| found.group(text, n)).unwrap_or(""),
                            close + 1,
                        )
                    }
                    None => ("$", 0),
                },
                Some(d) if d.is_ascii_digit() => {
                    let one = d as usize - '0' as usize;
                    let two = chars
                        .next()
                        .and_then(|e| e.to_digit(10))
                        .map(|e| one * 10 + e as usize);
                    if let Some(n) = two.filter(|n| (1..=groups).contains(n)) {
                        (found.group(text, n).unwrap_or(""), 2)
                    } else if (1..=groups).contains(&one) {
                        (found.group(text, one).unwrap_or(""), 1)
                    } else {
                        ("$", 0)
                    }
                }
                _ => ("$", 0),
            };
            push(piece)?;
            rest = &after[used..];
        }
        push(rest)
    }

    fn run_error(&self, error: fancy_regex::Error) -> RegexError {
        match error {
            fancy_regex::Error::RuntimeError(_) => RegexError::TooComplex {
                pattern: self.source.clone(),
                flags: self.flags.letters(),
                limit: self.limit,
            },
            other => RegexError::Syntax {
                pattern: self.source.clone(),
                flags: self.flags.letters(),
                reason: engine_error(&other),
            },
        }
    }
}

/// The engine's complaint about a translated pattern, without its positions (they count in
/// the translation, not in what the user wrote).
fn engine_error(error: &fancy_regex::Error) -> String {
    use fancy_regex::{CompileError, Error};
    match error {
        Error::ParseError(_, kind) => kind.to_string(),
        Error::CompileError(e) => match e {
            CompileError::LookBehindNotConst => {
                "a look-behind must match a fixed number of characters here (a limit of this engine: write `(?<=ab|cd)` rather than `(?<=a+)`)".to_string()
            }
            CompileError::InnerError(inner) => inner
                .to_string()
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid")
                .trim()
                .to_string(),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

/// `cached(pattern, flags)`: the compiled pattern, from the process's cache when it was
/// compiled before with the same flags and backtrack limit.
pub fn cached(pattern: &str, flags: Flags) -> Result<Arc<JsRegex>, RegexError> {
    type Key = (String, Flags, usize);
    static CACHE: Mutex<Option<HashMap<Key, Arc<JsRegex>>>> = Mutex::new(None);
    fn lock() -> MutexGuard<'static, Option<HashMap<Key, Arc<JsRegex>>>> {
        // A panic elsewhere while holding the lock leaves a usable map.
        CACHE.lock().unwrap_or_else(|e| e.into_inner())
    }
    let key = (pattern.to_string(), flags, backtrack_limit());
    if let Some(found) = lock().as_ref().and_then(|c| c.get(&key)) {
        return Ok(found.clone());
    }
    let compiled = Arc::new(JsRegex::with_limit(pattern, flags, key.2)?);
    let mut cache = lock();
    let cache = cache.get_or_insert_with(HashMap::new);
    if cache.len() >= CACHE_CAPACITY {
        cache.clear();
    }
    cache.insert(key, compiled.clone());
    Ok(compiled)
}

// ---- translation ------------------------------------------------------------------------

/// JavaScript's white space and line terminators (`\s`), as class items.
const SPACE: &str = r"\t\n\x0B\x0C\r\x20\xA0\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}";
const DIGIT: &str = "0-9";
const WORD: &str = "0-9A-Za-z_";

/// What one item of a character class stands for.
enum ClassItem {
    Char(char),
    /// Class items in the engine's syntax (`0-9`, `[^0-9]`, `\p{L}`).
    Set(String),
}

/// The engine's spelling of a literal character: ASCII punctuation and blanks as `\x{…}`
/// (meaningful to one syntax or the other, or in classes), anything else as itself.
fn literal(c: char) -> String {
    if c.is_ascii_punctuation() || c.is_whitespace() || c.is_control() {
        format!("\\x{{{:X}}}", c as u32)
    } else {
        c.to_string()
    }
}

/// Translates a JavaScript pattern into the engine's syntax; the error says what is wrong.
fn translate(pattern: &str, flags: Flags) -> Result<String, String> {
    let p: Vec<char> = pattern.chars().collect();
    let (groups, named) = count_groups(&p);
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut i = 0;
    while let Some(&c) = p.get(i) {
        match c {
            '\\' => i = escape(&p, i, flags, groups, named, &mut out)?,
            '[' => i = class(&p, i, flags, &mut out)?,
            '.' if flags.dot_all => {
                out.push_str("(?s:.)");
                i += 1;
            }
            '.' => {
                out.push_str(r"[^\n\r\x{2028}\x{2029}]");
                i += 1;
            }
            '(' => i = group(&p, i, &mut out)?,
            // With `m`, JavaScript's `^` and `$` also match after and before `\r`, U+2028
            // and U+2029, not only `\n` (an e-mail's CRLF lines).
            '^' if flags.multiline => {
                out.push_str(r"(?<![^\n\r\x{2028}\x{2029}])");
                i += 1;
            }
            '$' if flags.multiline => {
                out.push_str(r"(?![^\n\r\x{2028}\x{2029}])");
                i += 1;
            }
            '{' => match quantifier_len(&p, i) {
                Some(len) => {
                    out.extend(&p[i..i + len]);
                    i += len;
                }
                None => {
                    // Annex B: a `{` that does not start a quantifier is itself.
                    out.push_str(&literal('{'));
                    i += 1;
                }
            },
            '}' | ']' => {
                out.push_str(&literal(c));
                i += 1;
            }
            '#' | ' ' | '&' | '~' | '-' => {
                out.push_str(&literal(c));
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// The number of capturing groups, and whether any is named.
fn count_groups(p: &[char]) -> (usize, bool) {
    let (mut count, mut named, mut in_class) = (0, false, false);
    let mut i = 0;
    while let Some(&c) = p.get(i) {
        match c {
            '\\' => i += 1,
            '[' => in_class = true,
            ']' => in_class = false,
            '(' if !in_class => match (p.get(i + 1), p.get(i + 2), p.get(i + 3)) {
                (Some('?'), Some('<'), Some(n)) if *n != '=' && *n != '!' => {
                    count += 1;
                    named = true;
                }
                (Some('?'), _, _) => {}
                _ => count += 1,
            },
            _ => {}
        }
        i += 1;
    }
    (count, named)
}

/// `{n}`, `{n,}` or `{n,m}` at `i` (with a lazy `?`): its length, if it is one.
fn quantifier_len(p: &[char], i: usize) -> Option<usize> {
    let mut j = i + 1;
    let digits = |j: &mut usize| {
        let start = *j;
        while p.get(*j).is_some_and(char::is_ascii_digit) {
            *j += 1;
        }
        *j > start
    };
    if !digits(&mut j) {
        return None;
    }
    if p.get(j) == Some(&',') {
        j += 1;
        digits(&mut j);
    }
    (p.get(j) == Some(&'}')).then_some(j + 1 - i)
}

/// A group opening at `i`: `(`, `(?:`, `(?=`, `(?!`, `(?<=`, `(?<!` or `(?<name>`.
fn group(p: &[char], i: usize, out: &mut String) -> Result<usize, String> {
    if p.get(i + 1) != Some(&'?') {
        out.push('(');
        return Ok(i + 1);
    }
    match (p.get(i + 2), p.get(i + 3)) {
        (Some(k @ (':' | '=' | '!')), _) => {
            out.push_str("(?");
            out.push(*k);
            Ok(i + 3)
        }
        (Some('<'), Some(k @ ('=' | '!'))) => {
            out.push_str("(?<");
            out.push(*k);
            Ok(i + 4)
        }
        (Some('<'), _) => {
            let name_start = i + 3;
            let close = p[name_start..]
                .iter()
                .position(|c| *c == '>')
                .ok_or("a group name is not closed by `>`")?;
            let name: String = p[name_start..name_start + close].iter().collect();
            check_group_name(&name)?;
            out.push_str(&format!("(?<{name}>"));
            Ok(name_start + close + 1)
        }
        _ => Err(format!(
            "invalid group `(?{}`: JavaScript has no inline flags or other group kinds",
            p.get(i + 2).map(char::to_string).unwrap_or_default()
        )),
    }
}

fn check_group_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid group name {name:?} (use letters, digits and `_`, not starting with a digit)"
        ))
    }
}

/// `\uXXXX` (a surrogate pair as one character) or, with `u`, `\u{X…}` at `i` (the `u`):
/// the character and the index after it.
fn unicode_escape(p: &[char], i: usize, flags: Flags) -> Result<Option<(char, usize)>, String> {
    let hex = |from: usize, len: usize| -> Option<u32> {
        let digits: String = p.get(from..from + len)?.iter().collect();
        (digits.len() == len && digits.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(&digits, 16).ok())
            .flatten()
    };
    if flags.unicode && p.get(i + 1) == Some(&'{') {
        let close = p[i + 2..]
            .iter()
            .position(|c| *c == '}')
            .ok_or("`\\u{` is not closed")?;
        let value = hex(i + 2, close).ok_or("invalid `\\u{…}` escape")?;
        let c = char::from_u32(value).ok_or("`\\u{…}` names no character")?;
        return Ok(Some((c, i + 3 + close)));
    }
    let Some(unit) = hex(i + 1, 4) else {
        return Ok(None);
    };
    if (0xD800..0xDC00).contains(&unit)
        && p.get(i + 5) == Some(&'\\')
        && p.get(i + 6) == Some(&'u')
        && let Some(low) = hex(i + 7, 4).filter(|l| (0xDC00..0xE000).contains(l))
    {
        let c = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
        return Ok(char::from_u32(c).map(|c| (c, i + 11)));
    }
    match char::from_u32(unit) {
        Some(c) => Ok(Some((c, i + 5))),
        None => Err(format!(
            "`\\u{unit:04X}` is half of a surrogate pair, which text never contains"
        )),
    }
}

/// A legacy octal escape (Annex B) at `i`: up to three octal digits, at most `\377`.
fn octal(p: &[char], i: usize) -> (char, usize) {
    let mut value = 0u32;
    let mut j = i;
    while j < i + 3
        && let Some(d) = p.get(j).and_then(|c| c.to_digit(8))
    {
        if value * 8 + d > 0o377 {
            break;
        }
        value = value * 8 + d;
        j += 1;
    }
    (char::from_u32(value).unwrap_or('\0'), j)
}

/// An escape outside a class at `i` (the `\`); the index after it.
fn escape(
    p: &[char],
    i: usize,
    flags: Flags,
    groups: usize,
    named: bool,
    out: &mut String,
) -> Result<usize, String> {
    let Some(&e) = p.get(i + 1) else {
        return Err("`\\` at the end of the pattern".into());
    };
    let next = i + 2;
    match e {
        'd' => out.push_str(&format!("[{DIGIT}]")),
        'D' => out.push_str(&format!("[^{DIGIT}]")),
        'w' => out.push_str(&format!("[{WORD}]")),
        'W' => out.push_str(&format!("[^{WORD}]")),
        's' => out.push_str(&format!("[{SPACE}]")),
        'S' => out.push_str(&format!("[^{SPACE}]")),
        'b' => out.push_str(r"\b"),
        'B' => out.push_str(r"\B"),
        '1'..='9' => {
            let mut j = i + 1;
            let mut n = 0usize;
            while let Some(d) = p.get(j).and_then(|c| c.to_digit(10)) {
                n = n.saturating_mul(10).saturating_add(d as usize);
                j += 1;
            }
            if n <= groups {
                out.push_str(&format!("(?:\\{n})"));
                return Ok(j);
            }
            // Annex B: not a group, so an octal escape or the digit itself.
            if e <= '7' {
                let (c, after) = octal(p, i + 1);
                out.push_str(&literal(c));
                return Ok(after);
            }
            out.push(e);
        }
        '0' => {
            let (c, after) = octal(p, i + 1);
            out.push_str(&literal(c));
            return Ok(after);
        }
        'k' if named => {
            if p.get(next) != Some(&'<') {
                return Err("`\\k` must be followed by a group name in `<…>`".into());
            }
            let close = p[next..]
                .iter()
                .position(|c| *c == '>')
                .ok_or("a group name is not closed by `>`")?;
            let name: String = p[next + 1..next + close].iter().collect();
            check_group_name(&name)?;
            out.push_str(&format!("\\k<{name}>"));
            return Ok(next + close + 1);
        }
        'p' | 'P' if flags.unicode && p.get(next) == Some(&'{') => {
            let close = p[next..]
                .iter()
                .position(|c| *c == '}')
                .ok_or("`\\p{` is not closed")?;
            out.extend(&p[i..next + close + 1]);
            return Ok(next + close + 1);
        }
        'c' => match p.get(next).filter(|c| c.is_ascii_alphabetic()) {
            Some(letter) => {
                out.push_str(&literal(char::from(*letter as u8 % 32)));
                return Ok(next + 1);
            }
            // Annex B: `\c` not followed by a letter is a backslash and a `c`.
            None => out.push_str(&format!("{}c", literal('\\'))),
        },
        _ => {
            let (c, after) = simple_escape(p, i, flags)?;
            out.push_str(&literal(c));
            return Ok(after);
        }
    }
    Ok(next)
}

/// The escapes that stand for one character, in and out of classes (`\b` aside): control
/// escapes, `\xHH`, `\uHHHH`, and Annex B's identity escapes (`\/`, `\q` …).
fn simple_escape(p: &[char], i: usize, flags: Flags) -> Result<(char, usize), String> {
    let e = p[i + 1];
    let next = i + 2;
    Ok(match e {
        't' => ('\t', next),
        'n' => ('\n', next),
        'r' => ('\r', next),
        'v' => ('\x0B', next),
        'f' => ('\x0C', next),
        'x' => {
            let digits: String = p.get(next..next + 2).unwrap_or(&[]).iter().collect();
            match u32::from_str_radix(&digits, 16)
                .ok()
                .filter(|_| digits.len() == 2 && !digits.starts_with(['+', '-']))
            {
                Some(v) => (char::from_u32(v).unwrap_or('x'), next + 2),
                None => ('x', next),
            }
        }
        'u' => unicode_escape(p, i + 1, flags)?.unwrap_or(('u', next)),
        other => (other, next),
    })
}

/// A character class at `i` (the `[`); the index after its `]`.
fn class(p: &[char], i: usize, flags: Flags, out: &mut String) -> Result<usize, String> {
    let mut j = i + 1;
    let negated = p.get(j) == Some(&'^');
    if negated {
        j += 1;
    }
    if p.get(j) == Some(&']') {
        // `[]` matches nothing, `[^]` any character.
        out.push_str(if negated {
            "(?s:.)"
        } else {
            r"[^\x{0}-\x{10FFFF}]"
        });
        return Ok(j + 1);
    }
    let mut body = String::new();
    loop {
        match p.get(j) {
            None => return Err("a character class `[` is not closed by `]`".into()),
            Some(']') => break,
            Some(_) => {}
        }
        let (item, after) = class_item(p, j, flags)?;
        j = after;
        if let ClassItem::Char(low) = item {
            if p.get(j) == Some(&'-') && p.get(j + 1).is_some_and(|c| *c != ']') {
                let (high, after) = class_item(p, j + 1, flags)?;
                j = after;
                match high {
                    ClassItem::Char(high) if high < low => {
                        return Err(format!(
                            "the range {low}-{high} in a character class is out of order"
                        ));
                    }
                    ClassItem::Char(high) => {
                        body.push_str(&format!("{}-{}", literal(low), literal(high)));
                    }
                    // Annex B: `[a-\d]` is `a`, `-` and the digits.
                    ClassItem::Set(set) => {
                        body.push_str(&literal(low));
                        body.push_str(&literal('-'));
                        body.push_str(&set);
                    }
                }
                continue;
            }
            body.push_str(&literal(low));
        } else if let ClassItem::Set(set) = item {
            body.push_str(&set);
        }
    }
    out.push('[');
    if negated {
        out.push('^');
    }
    out.push_str(&body);
    out.push(']');
    Ok(j + 1)
}

/// One item of a class at `i`: a character or a set escape; the index after it.
fn class_item(p: &[char], i: usize, flags: Flags) -> Result<(ClassItem, usize), String> {
    let c = p[i];
    if c != '\\' {
        return Ok((ClassItem::Char(c), i + 1));
    }
    let Some(&e) = p.get(i + 1) else {
        return Err("`\\` at the end of the pattern".into());
    };
    let next = i + 2;
    let set = |s: String| Ok((ClassItem::Set(s), next));
    match e {
        'd' => set(DIGIT.into()),
        'D' => set(format!("[^{DIGIT}]")),
        'w' => set(WORD.into()),
        'W' => set(format!("[^{WORD}]")),
        's' => set(SPACE.into()),
        'S' => set(format!("[^{SPACE}]")),
        'b' => Ok((ClassItem::Char('\x08'), next)),
        '0'..='7' => {
            let (c, after) = octal(p, i + 1);
            Ok((ClassItem::Char(c), after))
        }
        'p' | 'P' if flags.unicode && p.get(next) == Some(&'{') => {
            let close = p[next..]
                .iter()
                .position(|c| *c == '}')
                .ok_or("`\\p{` is not closed")?;
            let text: String = p[i..next + close + 1].iter().collect();
            Ok((ClassItem::Set(text), next + close + 1))
        }
        'c' => match p
            .get(next)
            .filter(|c| c.is_ascii_alphanumeric() || **c == '_')
        {
            Some(ch) => Ok((ClassItem::Char(char::from(*ch as u8 % 32)), next + 1)),
            None => Ok((ClassItem::Char('\\'), i + 1)),
        },
        _ => {
            let (c, after) = simple_escape(p, i, flags)?;
            Ok((ClassItem::Char(c), after))
        }
    }
}

#[cfg(test)]
mod tests;
