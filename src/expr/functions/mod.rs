//! The function catalogue (`reference/make.md` §2.2), one file per family. Functions receive
//! already-evaluated arguments; the few that must not evaluate every argument (`if`,
//! `ifempty`, `switch`) are handled by the evaluator itself. Also owns the argument helpers
//! every family uses (arity checks, numeric arguments, 1-based indexes) and [`ensure_fits`],
//! which every function whose result can grow larger than its arguments (`replace`, `join`,
//! `split`, `merge`, `add`, `toString`, encodings …) calls before building it.

pub mod app;
pub mod app_ai;
pub mod app_google;
pub mod app_notion;
pub mod array;
pub mod date;
pub mod general;
pub mod math;
pub mod mime;
pub mod text;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::value;

/// What a function may read besides its arguments.
#[derive(Debug, Clone, Copy)]
pub struct FnCtx {
    pub now: DateTime<Utc>,
    pub timezone: chrono_tz::Tz,
}

/// Why a function call failed; the evaluator adds the function name and column.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct FnError(pub String);

impl FnError {
    pub fn new(message: impl Into<String>) -> Self {
        FnError(message.into())
    }
}

pub type FnResult = Result<Value, FnError>;
pub type Function = fn(&[Value], &FnCtx) -> FnResult;

/// Looks a function up by its IML name (case-sensitive, as Make's). The general, text and
/// math families come first, so their `length` and `contains` (which also accept arrays)
/// win over any array-family function of the same name.
pub fn lookup(name: &str) -> Option<Function> {
    general::lookup(name)
        .or_else(|| text::lookup(name))
        .or_else(|| math::lookup(name))
        .or_else(|| date::lookup(name))
        .or_else(|| array::lookup(name))
}

/// Refuses a result that would take `bytes` (as [`value::MAX_VALUE_BYTES`] measures them)
/// before it is built.
pub fn ensure_fits(bytes: usize) -> Result<(), FnError> {
    if bytes > value::MAX_VALUE_BYTES {
        return Err(too_large(bytes));
    }
    Ok(())
}

/// The error of a result over [`value::MAX_VALUE_BYTES`]; the evaluator prefixes the
/// function's name.
pub fn too_large(bytes: usize) -> FnError {
    FnError::new(format!(
        "the result would take at least {bytes} bytes, more than one value may take ({} bytes)",
        value::MAX_VALUE_BYTES
    ))
}

/// Appends `piece` to a result being built, unless that takes it over
/// [`value::MAX_VALUE_BYTES`].
pub fn push_capped(out: &mut String, piece: &str) -> Result<(), FnError> {
    ensure_fits(out.len().saturating_add(piece.len()))?;
    out.push_str(piece);
    Ok(())
}

/// Checks the argument count: `min..=max` (`usize::MAX` for "no upper bound").
pub fn arity(args: &[Value], min: usize, max: usize) -> Result<(), FnError> {
    let n = args.len();
    if n >= min && n <= max {
        return Ok(());
    }
    let plural = |k: usize| if k == 1 { "argument" } else { "arguments" };
    let expected = if min == max {
        format!("{min} {}", plural(min))
    } else if max == usize::MAX {
        format!("at least {min} {}", plural(min))
    } else {
        format!("{min} to {max} arguments")
    };
    Err(FnError::new(format!("expects {expected}, got {n}")))
}

/// The `i`-th argument (0-based), `null` when absent.
pub fn arg(args: &[Value], i: usize) -> &Value {
    args.get(i).unwrap_or(&Value::Null)
}

/// The `i`-th argument as text (`null` and absent arguments are empty text).
pub fn text_arg(args: &[Value], i: usize) -> String {
    value::to_text(arg(args, i))
}

/// The `i`-th argument as a number, or an error naming it (1-based, as a user counts).
pub fn number_arg(args: &[Value], i: usize) -> Result<f64, FnError> {
    let v = arg(args, i);
    value::to_number(v).ok_or_else(|| {
        FnError::new(format!(
            "argument {} must be a number, got {}",
            i + 1,
            short(v)
        ))
    })
}

/// The `i`-th argument as a number when present and not empty.
pub fn opt_number_arg(args: &[Value], i: usize) -> Result<Option<f64>, FnError> {
    if value::is_empty(arg(args, i)) {
        Ok(None)
    } else {
        number_arg(args, i).map(Some)
    }
}

/// The `i`-th argument as an integer in `min..=max` (fractions are truncated).
pub fn integer_arg(args: &[Value], i: usize, min: i64, max: i64) -> Result<i64, FnError> {
    let f = number_arg(args, i)?.trunc();
    if f < min as f64 || f > max as f64 {
        return Err(FnError::new(format!(
            "argument {} must be between {min} and {max}, got {}",
            i + 1,
            value::to_text(&value::number(f))
        )));
    }
    Ok(f as i64)
}

/// The element at a 1-based position; negative positions count from the end (`-1` is the
/// last element); `0` and positions past either end are nothing.
pub fn item_at(items: &[Value], n: i64) -> Option<&Value> {
    let i = match n {
        0 => return None,
        n if n > 0 => usize::try_from(n - 1).ok()?,
        n => items
            .len()
            .checked_sub(usize::try_from(n.unsigned_abs()).ok()?)?,
    };
    items.get(i)
}

/// A value for an error message: JSON, cut to 40 characters.
pub fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        s.chars().take(40).collect::<String>() + "…"
    } else {
        s
    }
}
