//! Compiled filters: Make's condition operators parsed once into [`Operator`], operands
//! compiled to IML mappings. Evaluation lives in the engine; this file owns what is valid.

use serde_json::Value;

use crate::expr::{Dialect, Mapping, ModuleRef};

use super::model::Condition;

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

/// One compiled condition.
#[derive(Debug, Clone)]
pub struct CompiledCondition {
    pub a: Mapping,
    pub op: Operator,
    pub b: Option<Mapping>,
    /// For `text:pattern` with a constant pattern: the regex, compiled once.
    pub pattern: Option<regex::Regex>,
}

/// OR of AND-groups.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    pub name: String,
    pub groups: Vec<Vec<CompiledCondition>>,
}

impl CompiledFilter {
    /// Compiles the conditions; each problem is `(path relative to the conditions, reason)`.
    pub fn compile(
        name: &str,
        groups: &[Vec<Condition>],
    ) -> Result<CompiledFilter, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut compiled = Vec::with_capacity(groups.len());
        for (g, group) in groups.iter().enumerate() {
            let mut conditions = Vec::with_capacity(group.len());
            for (c, cond) in group.iter().enumerate() {
                let at = format!("[{g}][{c}]");
                let operand = |v: &Value, key: &str, problems: &mut Vec<(String, String)>| {
                    Mapping::compile(v, Dialect::Scenario)
                        .map_err(|errs| {
                            for (_, e) in errs {
                                problems.push((format!("{at}.{key}"), e.to_string()));
                            }
                        })
                        .ok()
                };
                let a = operand(&cond.a, "a", &mut problems);
                let b = cond.b.as_ref().and_then(|b| operand(b, "b", &mut problems));
                let Some(op) = Operator::parse(&cond.o) else {
                    problems.push((
                        format!("{at}.o"),
                        format!("unknown operator \"{}\"", cond.o),
                    ));
                    continue;
                };
                let mut pattern = None;
                if let (Operator::Text(TextOp::Pattern, _, ci), Some(Value::String(p))) =
                    (op, &cond.b)
                    && !p.contains("{{")
                {
                    match regex::RegexBuilder::new(p).case_insensitive(ci).build() {
                        Ok(re) => pattern = Some(re),
                        Err(e) => {
                            problems.push((format!("{at}.b"), format!("invalid pattern: {e}")))
                        }
                    }
                }
                if let Some(a) = a {
                    conditions.push(CompiledCondition { a, op, b, pattern });
                }
            }
            compiled.push(conditions);
        }
        if problems.is_empty() {
            Ok(CompiledFilter {
                name: name.to_string(),
                groups: compiled,
            })
        } else {
            Err(problems)
        }
    }

    /// Every module reference in the operands, with its path relative to the conditions.
    pub fn module_refs(&self) -> Vec<(String, ModuleRef)> {
        let mut refs = Vec::new();
        for (g, group) in self.groups.iter().enumerate() {
            for (c, cond) in group.iter().enumerate() {
                for (key, m) in [("a", Some(&cond.a)), ("b", cond.b.as_ref())] {
                    if let Some(m) = m {
                        refs.extend(
                            m.module_refs()
                                .into_iter()
                                .map(|(_, r)| (format!("[{g}][{c}].{key}"), r)),
                        );
                    }
                }
            }
        }
        refs
    }
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
