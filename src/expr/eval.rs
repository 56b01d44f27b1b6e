//! The evaluator: walks a parsed [`Node`] over a [`Scope`]. Owns IML's run-time semantics —
//! path lookup (1-based indexes, `[]` mapping, missing → `null`), operators, the lazy
//! `if`/`ifempty`/`switch`, variables — and turns function failures into [`EvalError`]s
//! that name the function and its column. Values borrowed from the scope are not cloned
//! until a result needs to own them. `+` on text measures its result first and refuses one
//! over [`value::MAX_VALUE_BYTES`] (doubling a text at every cycle would otherwise run out
//! of memory).

use std::borrow::Cow;
use std::cell::OnceCell;

use chrono::SecondsFormat;
use serde_json::Value;

use super::Scope;
use super::ast::{BinOp, Expr, Lazy, Node, Reference, Root, Segment, Var};
use super::error::EvalError;
use super::functions::{FnCtx, item_at, short, too_large};
use super::value::{self, compare, loose_eq, to_number, truthy};

static NULL: Value = Value::Null;

/// What one evaluation reads: the scope, and the function context built from it on first use
/// (so `now` is one instant across a whole template or mapping).
pub(crate) struct EvalCtx<'a> {
    scope: &'a dyn Scope,
    fn_ctx: OnceCell<FnCtx>,
}

impl<'a> EvalCtx<'a> {
    pub(crate) fn new(scope: &'a dyn Scope) -> Self {
        EvalCtx {
            scope,
            fn_ctx: OnceCell::new(),
        }
    }

    fn fn_ctx(&self) -> &FnCtx {
        self.fn_ctx.get_or_init(|| FnCtx {
            now: self.scope.now(),
            timezone: self.scope.timezone(),
        })
    }
}

type Out<'a> = Result<Cow<'a, Value>, EvalError>;

/// Evaluates `node`; the result borrows from the node or the scope where it can.
pub(crate) fn eval<'a>(node: &'a Node, cx: &EvalCtx<'a>) -> Out<'a> {
    match &node.expr {
        Expr::Literal(v) => Ok(Cow::Borrowed(v)),
        Expr::Ref(r) => eval_ref(r, cx),
        Expr::Var(v) => Ok(Cow::Owned(variable(*v, cx))),
        Expr::Call(call) => {
            let mut args = Vec::with_capacity(call.args.len());
            for a in &call.args {
                args.push(eval(a, cx)?.into_owned());
            }
            (call.func)(&args, cx.fn_ctx())
                .map(Cow::Owned)
                .map_err(|e| EvalError::new(node.column, format!("{}(): {}", call.name, e.0)))
        }
        Expr::Lazy(kind, args) => eval_lazy(*kind, args, cx),
        Expr::Neg(operand) => {
            let v = eval(operand, cx)?;
            let n = arith_operand(&v, "-", node.column)?;
            Ok(Cow::Owned(value::number(-n)))
        }
        Expr::Binary(op, lhs, rhs) => eval_binary(*op, lhs, rhs, node.column, cx),
    }
}

fn variable(v: Var, cx: &EvalCtx<'_>) -> Value {
    match v {
        Var::Now => Value::from(cx.fn_ctx().now.to_rfc3339_opts(SecondsFormat::Millis, true)),
        Var::Timestamp => Value::from(cx.fn_ctx().now.timestamp()),
        Var::Random => value::number(rand::random::<f64>()),
        Var::Uuid => Value::from(uuid::Uuid::new_v4().to_string()),
        Var::ExecutionId => cx.scope.execution_id().map_or(Value::Null, Value::from),
    }
}

fn eval_lazy<'a>(kind: Lazy, args: &'a [Node], cx: &EvalCtx<'a>) -> Out<'a> {
    let arg = |i: usize| -> Out<'a> {
        match args.get(i) {
            Some(n) => eval(n, cx),
            None => Ok(Cow::Borrowed(&NULL)),
        }
    };
    match kind {
        Lazy::If => {
            if truthy(&*arg(0)?) {
                arg(1)
            } else {
                arg(2)
            }
        }
        Lazy::IfEmpty => {
            let v = arg(0)?;
            if value::is_empty(&v) { arg(1) } else { Ok(v) }
        }
        Lazy::Switch => {
            let subject = arg(0)?;
            let mut i = 1;
            while i + 1 < args.len() {
                if loose_eq(&subject, &*arg(i)?) {
                    return arg(i + 1);
                }
                i += 2;
            }
            // An odd number of cases leaves a final "else" value.
            if i < args.len() {
                arg(i)
            } else {
                Ok(Cow::Borrowed(&NULL))
            }
        }
    }
}

fn eval_binary<'a>(
    op: BinOp,
    lhs: &'a Node,
    rhs: &'a Node,
    col: usize,
    cx: &EvalCtx<'a>,
) -> Out<'a> {
    let l = eval(lhs, cx)?;
    let result = match op {
        BinOp::And => Value::Bool(truthy(&l) && truthy(&*eval(rhs, cx)?)),
        BinOp::Or => Value::Bool(truthy(&l) || truthy(&*eval(rhs, cx)?)),
        _ => {
            let r = eval(rhs, cx)?;
            binary_values(op, &l, &r, col)?
        }
    };
    Ok(Cow::Owned(result))
}

/// Applies a non-short-circuit binary operator to two values.
fn binary_values(op: BinOp, l: &Value, r: &Value, col: usize) -> Result<Value, EvalError> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let ordered = |accept: &[std::cmp::Ordering]| {
        Value::Bool(compare(l, r).is_some_and(|o| accept.contains(&o)))
    };
    Ok(match op {
        BinOp::Eq => Value::Bool(loose_eq(l, r)),
        BinOp::Ne => Value::Bool(!loose_eq(l, r)),
        BinOp::Lt => ordered(&[Less]),
        BinOp::Gt => ordered(&[Greater]),
        BinOp::Le => ordered(&[Less, Equal]),
        BinOp::Ge => ordered(&[Greater, Equal]),
        BinOp::Add => {
            if is_plain_text(l) || is_plain_text(r) || !addable(l) || !addable(r) {
                let len = value::text_len(l).saturating_add(value::text_len(r));
                if len > value::MAX_VALUE_BYTES {
                    let e = too_large(len);
                    return Err(EvalError::new(col, format!("operator \"+\": {}", e.0)));
                }
                let mut s = String::with_capacity(len);
                value::write_text(&mut s, l);
                value::write_text(&mut s, r);
                Value::String(s)
            } else {
                value::number(arith_operand(l, "+", col)? + arith_operand(r, "+", col)?)
            }
        }
        BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
            let a = arith_operand(l, op.symbol(), col)?;
            let b = arith_operand(r, op.symbol(), col)?;
            let n = match op {
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                _ if b == 0.0 => return Err(EvalError::new(col, "division by zero")),
                BinOp::Div => a / b,
                _ => a % b,
            };
            value::number(n)
        }
        BinOp::And => Value::Bool(truthy(l) && truthy(r)),
        BinOp::Or => Value::Bool(truthy(l) || truthy(r)),
    })
}

/// Text that does not read as a number: `+` concatenates when either side is one.
fn is_plain_text(v: &Value) -> bool {
    matches!(v, Value::String(s) if value::parse_number_text(s).is_none())
}

/// Values `+` can add as numbers: numbers, numeric text, booleans and `null` (as 0).
fn addable(v: &Value) -> bool {
    matches!(v, Value::Null) || to_number(v).is_some()
}

/// The number an arithmetic operand stands for; `null` (a missing value) counts as 0.
fn arith_operand(v: &Value, symbol: &str, col: usize) -> Result<f64, EvalError> {
    if v.is_null() {
        return Ok(0.0);
    }
    to_number(v).ok_or_else(|| {
        EvalError::new(
            col,
            format!("operator \"{symbol}\" needs numbers, got {}", short(v)),
        )
    })
}

fn eval_ref<'a>(r: &'a Reference, cx: &EvalCtx<'a>) -> Out<'a> {
    let root = match &r.root {
        Root::Module(id) => cx.scope.module_output(*id),
        Root::Named(name) => cx.scope.named(name),
    };
    match root {
        Some(v) => walk(v, &r.path, cx),
        None => Ok(Cow::Borrowed(&NULL)),
    }
}

/// Follows `path` from `cur`; any step that finds nothing ends in `null`.
fn walk<'a>(mut cur: &'a Value, path: &'a [Segment], cx: &EvalCtx<'a>) -> Out<'a> {
    for (i, seg) in path.iter().enumerate() {
        let next = match seg {
            Segment::Key(k) => match cur {
                Value::Object(map) => map.get(k.as_str()),
                _ => None,
            },
            Segment::Index(n) => index(cur, *n),
            Segment::Computed(node) => {
                let key = eval(node, cx)?;
                match (&*key, cur) {
                    (Value::String(k), Value::Object(map)) => map.get(k.as_str()),
                    (k, Value::Array(_)) => match to_number(k) {
                        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => index(cur, f as i64),
                        _ => None,
                    },
                    (k @ Value::Number(_), Value::Object(map)) => {
                        map.get(value::to_text(k).as_str())
                    }
                    _ => None,
                }
            }
            Segment::Each => match cur {
                Value::Array(items) => {
                    let rest = path.get(i + 1..).unwrap_or(&[]);
                    let mut out = Vec::with_capacity(items.len());
                    for item in items {
                        out.push(walk(item, rest, cx)?.into_owned());
                    }
                    return Ok(Cow::Owned(Value::Array(out)));
                }
                // `[]` on something that is not an array leaves it as it is.
                other => Some(other),
            },
        };
        match next {
            Some(v) => cur = v,
            None => return Ok(Cow::Borrowed(&NULL)),
        }
    }
    Ok(Cow::Borrowed(cur))
}

/// 1-based array index; negative counts from the end (`-1` is the last element); `0` is nothing.
fn index(v: &Value, n: i64) -> Option<&Value> {
    item_at(v.as_array()?, n)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::expr::test_support::TestScope;
    use crate::expr::{Dialect, EvalError, Template, value};

    fn bundle() -> Value {
        json!({
            "1": {
                "user": {"name": "Ada", "email": "Ada@Example.com", "age": 36},
                "Customer Name": "ACME",
                "0": "zero",
                "items": [
                    {"name": "a", "price": 10, "tags": ["x", "y"]},
                    {"name": "b", "price": "2.5", "tags": []},
                    {"name": "c", "price": null}
                ],
                "i": 2,
                "n": 42,
                "flag": false,
                "empty": "",
                "choices": [{"message": {"content": "hi"}}, {"message": {"content": "yo"}}]
            },
            "2": {"status": "active", "count": "10"},
            "body": {"id": 101, "user": "u1", "items": [1, 2, 3]}
        })
    }

    fn run_in(src: &str, dialect: Dialect) -> Result<Value, EvalError> {
        let t = Template::parse(src, dialect).unwrap_or_else(|e| panic!("{src}: {e}"));
        t.eval(&TestScope::new(bundle()))
    }

    fn run(src: &str) -> Value {
        run_in(src, Dialect::Scenario).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn fail(src: &str) -> EvalError {
        match run_in(src, Dialect::Scenario) {
            Ok(v) => panic!("{src} evaluated to {v}"),
            Err(e) => e,
        }
    }

    #[test]
    fn references() {
        assert_eq!(run("{{1.user.name}}"), json!("Ada"));
        assert_eq!(run("{{1.`Customer Name`}}"), json!("ACME"));
        assert_eq!(run("{{1.`0`}}"), json!("zero"));
        assert_eq!(run("{{`2`}}"), json!({"status": "active", "count": "10"}));
        assert_eq!(run("{{`2`.status}}"), json!("active"));
        assert_eq!(run("{{1.items[1].name}}"), json!("a"));
        assert_eq!(run("{{1.items[-1].name}}"), json!("c"));
        assert_eq!(run("{{1.items[1.i].name}}"), json!("b"));
        assert_eq!(run("{{1.items[1 + 1].price}}"), json!("2.5"));
        assert_eq!(run("{{1.items[\"1\"].name}}"), json!("a"));
        assert_eq!(run("{{1.user[\"name\"]}}"), json!("Ada"));
        assert_eq!(run("{{1.choices[].message.content}}"), json!(["hi", "yo"]));
        assert_eq!(run("{{1.items[].tags}}"), json!([["x", "y"], [], null]));
        assert_eq!(run("{{1.items[].tags[1]}}"), json!(["x", null, null]));
        assert_eq!(run("{{1.items[]}}"), bundle()["1"]["items"]);
        assert_eq!(run("{{1.user[]}}"), bundle()["1"]["user"]);
    }

    #[test]
    fn missing_paths_are_null() {
        for src in [
            "{{1.nope}}",
            "{{1.nope.deeper[3]}}",
            "{{9.a}}",
            "{{1.items[0]}}",
            "{{1.items[4]}}",
            "{{1.items[-4]}}",
            "{{1.items[1.5]}}",
            "{{1.user.name.first}}",
            "{{1.items.name}}",
            "{{1.items[\"x\"]}}",
            "{{1.nope[]}}",
        ] {
            assert_eq!(run(src), Value::Null, "{src}");
        }
        assert_eq!(run("a{{1.nope}}b"), json!("ab"));
    }

    #[test]
    fn single_expression_keeps_its_type() {
        assert_eq!(run("{{1.n}}"), json!(42));
        assert_eq!(run("{{1.flag}}"), json!(false));
        assert_eq!(run("{{1.user}}")["age"], json!(36));
        assert_eq!(run(" {{1.n}}"), json!(" 42"));
        assert_eq!(run("{{1.n}}{{1.n}}"), json!("4242"));
        assert_eq!(run("{{1.items[1].tags}}!"), json!("x, y!"));
        assert_eq!(run("{{1.user}}.")["x"], Value::Null);
        assert_eq!(
            run("{{1.user}}."),
            json!(r#"{"name":"Ada","email":"Ada@Example.com","age":36}."#)
        );
        assert_eq!(run("plain text"), json!("plain text"));
        assert_eq!(run(""), json!(""));
    }

    #[test]
    fn arithmetic_and_precedence() {
        assert_eq!(run("{{1 + 2 * 3}}"), json!(7));
        assert_eq!(run("{{(1 + 2) * 3}}"), json!(9));
        assert_eq!(run("{{10 - 4 - 3}}"), json!(3));
        assert_eq!(run("{{2 * 3 % 4}}"), json!(2));
        assert_eq!(run("{{7 / 2}}"), json!(3.5));
        assert_eq!(run("{{-1.n + 2}}"), json!(-40));
        assert_eq!(run("{{2 - -3}}"), json!(5));
        assert_eq!(run("{{-(1 + 2)}}"), json!(-3));
        assert_eq!(run("{{1.n + 1}}"), json!(43));
        assert_eq!(run("{{\"1\" + 2}}"), json!(3));
        assert_eq!(run("{{2.count + 1.items[2].price}}"), json!(12.5));
        assert_eq!(run("{{\"a\" + 1}}"), json!("a1"));
        assert_eq!(run("{{1.user.name + \" \" + 1.n}}"), json!("Ada 42"));
        assert_eq!(run("{{1.nope + 1}}"), json!(1));
        assert_eq!(run("{{1.nope * 2}}"), json!(0));
        assert_eq!(run("{{0.1 + 0.2}}"), json!(0.30000000000000004));
    }

    #[test]
    fn arithmetic_errors_name_the_operator() {
        let e = fail("{{1.n / 0}}");
        assert_eq!((e.column, e.message.as_str()), (7, "division by zero"));
        let e = fail("{{1 % (1 - 1)}}");
        assert_eq!((e.column, e.message.as_str()), (5, "division by zero"));
        let e = fail("{{1.user.name * 2}}");
        assert_eq!(e.column, 15);
        assert_eq!(e.message, "operator \"*\" needs numbers, got \"Ada\"");
        let e = fail("{{-1.user.name}}");
        assert_eq!(e.column, 3);
    }

    #[test]
    fn comparisons() {
        assert_eq!(run("{{1 = 1}}"), json!(true));
        assert_eq!(run("{{1 == 1.0}}"), json!(true));
        assert_eq!(run("{{2.count = 10}}"), json!(true));
        assert_eq!(run("{{2.count > 9}}"), json!(true));
        assert_eq!(run("{{\"10\" > \"9\"}}"), json!(false));
        assert_eq!(run("{{\"b\" >= \"a\"}}"), json!(true));
        assert_eq!(run("{{1 != 2}}"), json!(true));
        assert_eq!(run("{{1 <= 1}}"), json!(true));
        assert_eq!(run("{{1 < \"x\"}}"), json!(false));
        assert_eq!(run("{{1 > \"x\"}}"), json!(false));
        assert_eq!(run("{{2.status = \"active\"}}"), json!(true));
        assert_eq!(run("{{1.nope = \"\"}}"), json!(true));
        assert_eq!(run("{{1.flag = false}}"), json!(true));
    }

    #[test]
    fn logic_words_and_symbols() {
        assert_eq!(run("{{1 = 2 and 1 = 2}}"), json!(false));
        assert_eq!(run("{{1 = 1 AND 2 = 2}}"), json!(true));
        assert_eq!(run("{{1 = 2 or 2 = 2}}"), json!(true));
        assert_eq!(run("{{1 = 2 OR 2 = 3}}"), json!(false));
        assert_eq!(run("{{1 = 1 & 2 = 2}}"), json!(true));
        assert_eq!(run("{{1 = 2 | 2 = 2}}"), json!(true));
        assert_eq!(run("{{true && false || true}}"), json!(true));
        // & binds tighter than |: true | (false & false).
        assert_eq!(run("{{true | false & false}}"), json!(true));
        assert_eq!(run("{{(true | false) & false}}"), json!(false));
        // Short-circuit: the right side is not evaluated.
        assert_eq!(run("{{false & 1 / 0}}"), json!(false));
        assert_eq!(run("{{true | 1 / 0}}"), json!(true));
        assert_eq!(run("{{\"a\" & \"b\"}}"), json!(true));
    }

    #[test]
    fn lazy_special_forms() {
        assert_eq!(run("{{if(1.n > 40; \"big\"; 1 / 0)}}"), json!("big"));
        assert_eq!(run("{{if(1.flag; 1 / 0; \"no\")}}"), json!("no"));
        assert_eq!(run("{{if(1.flag; \"yes\")}}"), Value::Null);
        assert_eq!(run("{{if(\"false\"; 1; 2)}}"), json!(2));
        assert_eq!(run("{{ifempty(1.user.name; 1 / 0)}}"), json!("Ada"));
        assert_eq!(run("{{ifempty(1.empty; \"fallback\")}}"), json!("fallback"));
        assert_eq!(run("{{ifempty(emptyarray; 1.n)}}"), json!(42));
        assert_eq!(
            run("{{switch(2.status; \"x\"; 1 / 0; \"active\"; \"on\"; 1 / 0)}}"),
            json!("on")
        );
        assert_eq!(
            run("{{switch(2.count; 10; \"ten\"; \"other\")}}"),
            json!("ten")
        );
        assert_eq!(run("{{switch(\"q\"; \"a\"; 1; \"b\"; 2)}}"), Value::Null);
        assert_eq!(
            run("{{switch(\"q\"; \"a\"; 1; \"b\"; 2; \"else\")}}"),
            json!("else")
        );
        assert!(
            fail("{{if(true; 1 / 0; 1)}}")
                .message
                .contains("division by zero")
        );
    }

    #[test]
    fn function_errors_carry_name_and_column() {
        let e = fail("{{\"x\" & lower(1; 2)}}");
        assert_eq!(e.column, 9);
        assert_eq!(e.message, "lower(): expects 1 argument, got 2");
        let e = fail("{{1.n + abs(1.user.name)}}");
        assert_eq!(e.column, 9);
        assert!(
            e.message.starts_with("abs(): argument 1 must be a number"),
            "{}",
            e.message
        );
    }

    #[test]
    fn keywords_and_variables() {
        assert_eq!(run("{{null}}"), Value::Null);
        assert_eq!(run("{{ignore}}"), Value::Null);
        assert_eq!(run("{{true}}"), json!(true));
        assert_eq!(run("{{emptystring}}"), json!(""));
        assert_eq!(run("{{emptyarray}}"), json!([]));
        assert_eq!(
            run("a{{space}}b{{tab}}c{{newline}}d{{carriagereturn}}{{nbsp}}"),
            json!("a b\tc\nd\r\u{a0}")
        );
        assert!(value::is_erase(&run("{{erase}}")));
        assert_eq!(run("x{{erase}}y"), json!("xy"));
        assert_eq!(run("{{pi}}"), json!(std::f64::consts::PI));
        assert_eq!(run("{{now}}"), json!("2016-12-08T15:55:57.536Z"));
        assert_eq!(run("{{timestamp}}"), json!(1481212557));
        assert_eq!(run("{{executionId}}"), json!("exec-42"));
        let r = run("{{random}}").as_f64().unwrap_or(-1.0);
        assert!((0.0..1.0).contains(&r));
        let u = run("{{uuid}}");
        assert_eq!(u.as_str().map(str::len), Some(36));
        assert_ne!(u, run("{{uuid}}"));
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            run(r#"{{"a\"b\\c\nd\u00e9\ud83d\ude00"}}"#),
            json!("a\"b\\c\nd\u{e9}\u{1F600}")
        );
        assert_eq!(run(r#"{{"\d+"}}"#), json!("\\d+"));
        assert_eq!(run(r#"{{"a}}b"}}"#), json!("a}}b"));
        assert_eq!(run("{{1.n}}}"), json!("42}"));
        assert_eq!(run("{ {{1.n}} }"), json!("{ 42 }"));
    }

    /// Evaluates `src` over `bundle`; the error it must end with.
    fn refused(src: &str, bundle: Value) -> EvalError {
        let t = Template::parse(src, Dialect::Scenario).unwrap_or_else(|e| panic!("{src}: {e}"));
        let started = std::time::Instant::now();
        let result = t.eval(&TestScope::new(bundle));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{src} took {:?} to be refused",
            started.elapsed()
        );
        match result {
            Ok(v) => panic!("{src} was not refused: {} bytes", value::to_text(&v).len()),
            Err(e) => {
                assert!(
                    e.message
                        .contains("more than one value may take (67108864 bytes)"),
                    "{src}: {}",
                    e.message
                );
                e
            }
        }
    }

    #[test]
    fn results_over_the_value_cap_are_refused_before_they_are_built() {
        // `replace(A; ""; A)` is quadratic: three deep, a 200-character A would make 1.6 GB.
        let a = json!({"1": {"a": "a".repeat(200)}});
        let e = refused(
            r#"{{replace(replace(replace(1.a; ""; 1.a); ""; 1.a); ""; 1.a)}}"#,
            a.clone(),
        );
        assert_eq!(e.column, 3);
        assert!(
            e.message
                .starts_with("replace(): the result would take at least 16"),
            "{}",
            e.message
        );
        // Two deep is 8 MB and allowed.
        let two = run_in_scope(r#"{{replace(replace(1.a; ""; 1.a); ""; 1.a)}}"#, a.clone());
        assert_eq!(two.as_str().map(str::len), Some(8_120_600));
        // Regex replacements are checked piece by piece (`$'` copies the rest of the text).
        let e = refused(
            r#"{{replace(1.t; "/x/g"; 1.r)}}"#,
            json!({"1": {"t": "x".repeat(10_000), "r": "$'".repeat(1_000)}}),
        );
        assert!(e.message.starts_with("replace(): "), "{}", e.message);

        let big = "x".repeat(33 << 20);
        let e = refused("{{1.big + 1.big}}", json!({"1": {"big": big.clone()}}));
        assert!(e.message.starts_with("operator \"+\": "), "{}", e.message);
        assert_eq!(e.column, 9);
        let e = refused("{{1.big}}{{1.big}}", json!({"1": {"big": big.clone()}}));
        assert!(e.message.starts_with("text: "), "{}", e.message);
        drop(big);

        let cases: [(&str, Value, &str); 9] = [
            (
                "{{split(1.t; \",\")}}",
                json!({"1": {"t": ",".repeat(1_000_000)}}),
                "split(): ",
            ),
            (
                "{{join(1.items; 1.sep)}}",
                json!({"1": {"items": vec![1; 1_000], "sep": "-".repeat(100_000)}}),
                "join(): ",
            ),
            (
                "{{merge(1.items; 1.items)}}",
                json!({"1": {"items": vec![Value::Null; 500_000]}}),
                "merge(): ",
            ),
            (
                "{{add(1.items; 1.items)}}",
                json!({"1": {"items": vec![Value::Null; 500_000]}}),
                "add(): ",
            ),
            (
                "{{toString(1.o)}}",
                json!({"1": {"o": {"s": "\u{0}".repeat(12_000_000)}}}),
                "toString(): ",
            ),
            (
                "{{toBinary(1.t)}}",
                json!({"1": {"t": "x".repeat(crate::expr::value::MAX_VALUE_BYTES + 1)}}),
                "toBinary(): ",
            ),
            (
                "{{escapeHTML(1.t)}}",
                json!({"1": {"t": "\"".repeat(12_000_000)}}),
                "escapeHTML(): ",
            ),
            (
                "{{replaceEmojiCharacters(1.t; 1.r)}}",
                json!({"1": {"t": "😀".repeat(1_000), "r": "r".repeat(100_000)}}),
                "replaceEmojiCharacters(): ",
            ),
            (
                "{{formatNumber(1e300; 0; \",\"; 1.sep)}}",
                json!({"1": {"sep": ".".repeat(1_000_000)}}),
                "formatNumber(): ",
            ),
        ];
        for (src, bundle, prefix) in cases {
            let e = refused(src, bundle);
            assert!(e.message.starts_with(prefix), "{src}: {}", e.message);
        }
        // Under the cap, the same functions work as before.
        assert_eq!(run("{{join(1.items[].name; \"--\")}}"), json!("a--b--c"));
        assert_eq!(run("{{1.user.name + \"!\"}}"), json!("Ada!"));
    }

    fn run_in_scope(src: &str, bundle: Value) -> Value {
        let t = Template::parse(src, Dialect::Scenario).unwrap_or_else(|e| panic!("{src}: {e}"));
        t.eval(&TestScope::new(bundle))
            .unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    #[test]
    fn app_dialect_reads_named_roots() {
        let app = |src: &str| run_in(src, Dialect::App).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(app("{{if(body.id > 100, body.user, false)}}"), json!("u1"));
        assert_eq!(app("{{body.items[-1]}}"), json!(3));
        assert_eq!(app("{{`body`.id}}"), json!(101));
        assert_eq!(app("{{parameters.id}}"), Value::Null);
        assert_eq!(app("{{lower('ABC')}}"), json!("abc"));
        assert_eq!(app("{{body.id == 101 && body.user != 'x'}}"), json!(true));
        assert_eq!(app("{{now}}"), json!("2016-12-08T15:55:57.536Z"));
    }
}
