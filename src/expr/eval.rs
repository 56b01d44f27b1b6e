//! The evaluator: walks a parsed [`Node`] over a [`Scope`]. Owns IML's run-time semantics —
//! path lookup (1-based indexes, `[]` mapping, missing → `null`), operators, the lazy
//! `if`/`ifempty`/`switch`, variables — and turns function failures into [`EvalError`]s
//! that name the function and its column. Values borrowed from the scope are not cloned
//! until a result needs to own them.

use std::borrow::Cow;
use std::cell::OnceCell;

use chrono::SecondsFormat;
use serde_json::Value;

use super::Scope;
use super::ast::{BinOp, Expr, Lazy, Node, Reference, Root, Segment, Var};
use super::error::EvalError;
use super::functions::{FnCtx, item_at};
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
                let mut s = value::to_text(l);
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
        let mut shown = value::to_text(v);
        if shown.chars().count() > 40 {
            shown = shown.chars().take(40).collect::<String>() + "…";
        }
        EvalError::new(
            col,
            format!(
                "operator \"{symbol}\" needs numbers, got {}",
                Value::from(shown)
            ),
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
