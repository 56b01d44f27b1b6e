//! Make's condition operators (`text:contain:ci`, `number:greater`, `exist` …): parsed from
//! their names into [`Operator`] and what each means for two values ([`Operator::holds`]),
//! with Make's coercions. Shared by the engine's filters (`scenario::filter` compiles the
//! operands), data store searches, and app definitions that filter an API's items as Make's
//! own app does (`sheetSearch` in `functions::app`).
//!
//! Invariants: an unknown operator name parses to `None` (the caller reports where); a value
//! that does not read as the operator's type makes only the "not equal" comparisons hold.

use std::cmp::Ordering as CmpOrdering;

use serde_json::Value;

use crate::expr::functions::date::to_datetime;
use crate::expr::regexp::{self, JsRegex};
use crate::expr::value::{is_empty, to_number, to_text};

/// How a condition compares its operands (`reference/make.md` §1.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Exist,
    NotExist,
    Text(
        TextOp,
        bool, /* negated */
        bool, /* case-insensitive */
    ),
    Number(Ordering),
    Date(Ordering),
    Time(Ordering),
    Boolean(bool /* negated */),
    ArrayContains(bool /* negated */, bool /* case-insensitive */),
    ArrayLength(Ordering),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOp {
    Equal,
    Contain,
    StartWith,
    EndWith,
    Pattern,
}

/// The six comparisons shared by numbers, dates, times and array lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    Equal,
    NotEqual,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
}

impl Ordering {
    fn parse(name: &str) -> Option<Ordering> {
        Some(match name {
            "equal" => Ordering::Equal,
            "notequal" => Ordering::NotEqual,
            "less" | "before" => Ordering::Less,
            "greater" | "after" => Ordering::Greater,
            "lessorequal" => Ordering::LessOrEqual,
            "greaterorequal" => Ordering::GreaterOrEqual,
            _ => return None,
        })
    }

    /// Whether `ord` (a compared with b) satisfies this comparison.
    pub fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Ordering::Equal => ord == Equal,
            Ordering::NotEqual => ord != Equal,
            Ordering::Less => ord == Less,
            Ordering::Greater => ord == Greater,
            Ordering::LessOrEqual => ord != Greater,
            Ordering::GreaterOrEqual => ord != Less,
        }
    }
}

impl Operator {
    /// Parses a Make operator name such as `text:contain:ci`. `text:startswith`/`endswith` and
    /// `date:before`/`after` are accepted too, since Make's own guides use both spellings.
    pub fn parse(name: &str) -> Option<Operator> {
        let (name, ci) = match name.strip_suffix(":ci") {
            Some(base) => (base, true),
            None => (name, false),
        };
        let (family, op) = name.split_once(':').unwrap_or((name, ""));
        let op = match (family, op) {
            ("exist", "") => Operator::Exist,
            ("notexist", "") => Operator::NotExist,
            ("text", op) => {
                let (negated, base) = match op.strip_prefix("not") {
                    Some(rest) => (true, rest),
                    None => (false, op),
                };
                let text = match base {
                    "equal" => TextOp::Equal,
                    "contain" => TextOp::Contain,
                    "startwith" | "startswith" => TextOp::StartWith,
                    "endwith" | "endswith" => TextOp::EndWith,
                    "pattern" => TextOp::Pattern,
                    _ => return None,
                };
                return Some(Operator::Text(text, negated, ci));
            }
            ("array", "contain") => return Some(Operator::ArrayContains(false, ci)),
            ("array", "notcontain") => return Some(Operator::ArrayContains(true, ci)),
            ("number", op) => Operator::Number(Ordering::parse(op)?),
            ("date", op) => Operator::Date(Ordering::parse(op)?),
            ("time", op) => Operator::Time(Ordering::parse(op)?),
            ("array", op) => Operator::ArrayLength(Ordering::parse(op)?),
            ("boolean", "equal") => Operator::Boolean(false),
            ("boolean", "notequal") => Operator::Boolean(true),
            _ => return None,
        };
        // `:ci` only means something for text and array membership.
        if ci { None } else { Some(op) }
    }

    /// Whether the operator reads a second operand.
    pub fn takes_b(self) -> bool {
        !matches!(self, Operator::Exist | Operator::NotExist)
    }
}

impl Operator {
    /// Whether the operator holds between operands `a` and `b` (already evaluated), with
    /// Make's coercions: dates and times read in `tz`; a text pattern is `pattern` when
    /// compiled ahead, else `b` compiled now (an invalid one is the error). Shared by the
    /// engine's filters and data store searches.
    pub fn holds(
        self,
        a: &Value,
        b: &Value,
        pattern: Option<&JsRegex>,
        tz: chrono_tz::Tz,
    ) -> Result<bool, String> {
        Ok(match self {
            Operator::Exist => !is_empty(a),
            Operator::NotExist => is_empty(a),
            Operator::Text(op, negated, ci) => text(op, ci, a, b, pattern)? != negated,
            Operator::Number(ord) => {
                compare(ord, to_number(a), to_number(b), |x, y| x.partial_cmp(y))
            }
            Operator::Date(ord) => compare(ord, to_datetime(a, tz), to_datetime(b, tz), |x, y| {
                Some(x.cmp(y))
            }),
            Operator::Time(ord) => compare(ord, time_of_day(a, tz), time_of_day(b, tz), |x, y| {
                Some(x.cmp(y))
            }),
            Operator::Boolean(negated) => match (boolean(a), boolean(b)) {
                (Some(x), Some(y)) => (x == y) != negated,
                _ => negated,
            },
            Operator::ArrayContains(negated, ci) => {
                let needle = fold(&to_text(b), ci);
                let found = items(a)
                    .iter()
                    .any(|item| fold(&to_text(item), ci) == needle);
                found != negated
            }
            Operator::ArrayLength(ord) => {
                let len = items(a).len() as f64;
                compare(ord, Some(len), to_number(b), |x, y| x.partial_cmp(y))
            }
        })
    }
}

/// Orders two readings; when either side does not read as the type, only "not equal" holds.
fn compare<T>(
    ord: Ordering,
    a: Option<T>,
    b: Option<T>,
    cmp: impl Fn(&T, &T) -> Option<CmpOrdering>,
) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => cmp(&a, &b).is_some_and(|o| ord.holds(o)),
        _ => ord == Ordering::NotEqual,
    }
}

/// A filter's pattern is a JavaScript regular expression written without slashes; the `:ci`
/// operators add the flag `i`.
pub fn pattern_flags(ci: bool) -> regexp::Flags {
    regexp::Flags {
        ignore_case: ci,
        ..regexp::Flags::default()
    }
}

fn fold(s: &str, ci: bool) -> String {
    if ci { s.to_lowercase() } else { s.to_string() }
}

fn text(
    op: TextOp,
    ci: bool,
    a: &Value,
    b: &Value,
    pattern: Option<&JsRegex>,
) -> Result<bool, String> {
    if op == TextOp::Pattern {
        let subject = to_text(a);
        let compiled;
        let re = match pattern {
            Some(re) => re,
            None => {
                compiled = regexp::cached(&to_text(b), pattern_flags(ci))
                    .map_err(|e| format!("invalid pattern in filter: {e}"))?;
                &compiled
            }
        };
        return re.is_match(&subject).map_err(|e| e.to_string());
    }
    let (a, b) = (fold(&to_text(a), ci), fold(&to_text(b), ci));
    Ok(match op {
        TextOp::Equal => a == b,
        TextOp::Contain => a.contains(&b),
        TextOp::StartWith => a.starts_with(&b),
        TextOp::EndWith => a.ends_with(&b),
        TextOp::Pattern => unreachable!("handled above"),
    })
}

fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" | "" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::Null => Some(false),
        _ => None,
    }
}

/// Seconds after midnight of a `HH:MM[:SS]` text, or of a date's time of day in the scenario zone.
fn time_of_day(v: &Value, tz: chrono_tz::Tz) -> Option<u32> {
    if let Some(t) = v.as_str().and_then(parse_time) {
        return Some(t);
    }
    to_datetime(v, tz).map(|d| {
        use chrono::Timelike;
        d.with_timezone(&tz).num_seconds_from_midnight()
    })
}

/// An array operand's items; a single value counts as a one-item array, `null` as none.
fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        Value::Null => &[],
        other => std::slice::from_ref(other),
    }
}

/// `HH:MM` (or `HH:MM:SS`) → seconds after midnight.
pub fn parse_time(t: &str) -> Option<u32> {
    let mut parts = t.split(':');
    let h: u32 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let s: u32 = match parts.next() {
        Some(s) => s.parse().ok()?,
        None => 0,
    };
    if parts.next().is_some() || h > 23 || m > 59 || s > 59 {
        return None;
    }
    Some(h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_operator() {
        for name in [
            "exist",
            "notexist",
            "boolean:equal",
            "boolean:notequal",
            "text:equal",
            "text:notequal",
            "text:contain",
            "text:notcontain",
            "text:startwith",
            "text:notstartwith",
            "text:endwith",
            "text:notendwith",
            "text:pattern",
            "text:notpattern",
            "text:equal:ci",
            "text:pattern:ci",
            "number:equal",
            "number:notequal",
            "number:less",
            "number:greater",
            "number:lessorequal",
            "number:greaterorequal",
            "date:less",
            "date:greater",
            "date:before",
            "time:equal",
            "time:lessorequal",
            "array:contain",
            "array:notcontain:ci",
            "array:greater",
            "array:equal",
        ] {
            assert!(Operator::parse(name).is_some(), "{name}");
        }
    }

    #[test]
    fn rejects_unknown_operators() {
        for name in [
            "string:equal",
            "number:greaterequal",
            "number:equal:ci",
            "text:",
            "exist:ci",
            "",
        ] {
            assert_eq!(Operator::parse(name), None, "{name}");
        }
    }
}
