//! Math functions: `abs`, `ceil`, `floor`, `round`, `trunc`, the aggregates `sum`, `average`,
//! `min`, `max`, `median`, `stdevS`, `stdevP` (separate values or arrays), and number text:
//! `formatNumber` (decimal `,` and thousands `.` by default) and `parseNumber`.
//! Rounding follows JavaScript (`Math.round`, `toFixed`), as Make's does.

use serde_json::Value;

use super::{
    FnCtx, FnError, FnResult, Function, arg, arity, integer_arg, number_arg, short, text_arg,
};
use crate::expr::value::{self, number};

pub fn lookup(name: &str) -> Option<Function> {
    Some(match name {
        "abs" => abs,
        "ceil" => ceil,
        "floor" => floor,
        "round" => round,
        "trunc" => trunc,
        "sum" => sum,
        "average" => average,
        "min" => min,
        "max" => max,
        "median" => median,
        "stdevS" => stdev_s,
        "stdevP" => stdev_p,
        "formatNumber" => format_number,
        "parseNumber" => parse_number,
        _ => return None,
    })
}

fn one_number(args: &[Value]) -> Result<f64, FnError> {
    arity(args, 1, 1)?;
    number_arg(args, 0)
}

fn abs(args: &[Value], _: &FnCtx) -> FnResult {
    Ok(number(one_number(args)?.abs()))
}

fn ceil(args: &[Value], _: &FnCtx) -> FnResult {
    Ok(number(one_number(args)?.ceil()))
}

fn floor(args: &[Value], _: &FnCtx) -> FnResult {
    Ok(number(one_number(args)?.floor()))
}

/// `x · 10^by` computed on the decimal text, so `1.005` shifted by 2 is exactly `100.5`.
fn shift(x: f64, by: i32) -> f64 {
    let s = format!("{x:e}");
    s.split_once('e')
        .and_then(|(mantissa, exp)| {
            let exp = exp.parse::<i32>().ok()?.saturating_add(by);
            format!("{mantissa}e{exp}").parse::<f64>().ok()
        })
        .unwrap_or(x * 10f64.powi(by))
}

/// JavaScript's `Math.round`: halves go towards +∞ (`-1.5` → `-1`).
fn js_round(x: f64) -> f64 {
    let r = x.round();
    if (r - x).abs() == 0.5 { x.ceil() } else { r }
}

/// Optional decimals argument: `None` when absent or empty.
fn decimals(args: &[Value], i: usize) -> Result<Option<i32>, FnError> {
    if value::is_empty(arg(args, i)) {
        return Ok(None);
    }
    Ok(Some(integer_arg(args, i, -20, 100)? as i32))
}

/// `round(number; [decimals])`.
fn round(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 2)?;
    let x = number_arg(args, 0)?;
    Ok(number(match decimals(args, 1)? {
        None | Some(0) => js_round(x),
        Some(d) => shift(js_round(shift(x, d)), -d),
    }))
}

/// `trunc(number; [decimals])`: drops digits towards zero.
fn trunc(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 2)?;
    let x = number_arg(args, 0)?;
    Ok(number(match decimals(args, 1)? {
        None | Some(0) => x.trunc(),
        Some(d) => shift(shift(x, d).trunc(), -d),
    }))
}

/// The numbers of an aggregate's arguments: separate values and arrays of values; empty
/// values are skipped.
fn numbers(args: &[Value]) -> Result<Vec<f64>, FnError> {
    let mut out = Vec::new();
    let mut push = |v: &Value| -> Result<(), FnError> {
        if value::is_empty(v) {
            return Ok(());
        }
        match value::to_number(v) {
            Some(n) => {
                out.push(n);
                Ok(())
            }
            None => Err(FnError::new(format!("{} is not a number", short(v)))),
        }
    };
    for a in args {
        match a {
            Value::Array(items) => items.iter().try_for_each(&mut push)?,
            other => push(other)?,
        }
    }
    Ok(out)
}

fn sum(args: &[Value], _: &FnCtx) -> FnResult {
    Ok(number(numbers(args)?.iter().sum()))
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn average(args: &[Value], _: &FnCtx) -> FnResult {
    let xs = numbers(args)?;
    Ok(if xs.is_empty() {
        Value::Null
    } else {
        number(mean(&xs))
    })
}

fn min(args: &[Value], _: &FnCtx) -> FnResult {
    let xs = numbers(args)?;
    Ok(xs.into_iter().reduce(f64::min).map_or(Value::Null, number))
}

fn max(args: &[Value], _: &FnCtx) -> FnResult {
    let xs = numbers(args)?;
    Ok(xs.into_iter().reduce(f64::max).map_or(Value::Null, number))
}

/// The middle value; with an even count, the mean of the two middle values.
fn median(args: &[Value], _: &FnCtx) -> FnResult {
    let mut xs = numbers(args)?;
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let mid = n / 2;
    Ok(match (xs.get(mid.wrapping_sub(1)), xs.get(mid)) {
        (_, None) => Value::Null,
        (Some(a), Some(b)) if n % 2 == 0 => number((a + b) / 2.0),
        (_, Some(m)) => number(*m),
    })
}

/// Standard deviation; `sample` divides by n − 1 (stdevS), otherwise by n (stdevP).
fn stdev(args: &[Value], sample: bool) -> FnResult {
    let xs = numbers(args)?;
    let n = xs.len();
    let needed = if sample { 2 } else { 1 };
    if n < needed {
        return Err(FnError::new(format!(
            "needs at least {needed} values, got {n}"
        )));
    }
    let m = mean(&xs);
    let squares: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    let divisor = if sample { n - 1 } else { n } as f64;
    Ok(number((squares / divisor).sqrt()))
}

fn stdev_s(args: &[Value], _: &FnCtx) -> FnResult {
    stdev(args, true)
}

fn stdev_p(args: &[Value], _: &FnCtx) -> FnResult {
    stdev(args, false)
}

/// JavaScript's `toFixed` for `x ≥ 0`: `d` decimals, halves rounded up.
fn to_fixed(x: f64, d: usize) -> String {
    // 30 extra digits are enough to tell an exact half from a value next to it.
    let s = format!("{:.*}", d + 30, x);
    let (int, frac) = s.split_once('.').unwrap_or((s.as_str(), ""));
    let keep = frac.get(..d).unwrap_or(frac);
    let round_up = frac.as_bytes().get(d).is_some_and(|b| *b >= b'5');
    let mut digits: Vec<u8> = int.bytes().chain(keep.bytes()).collect();
    if round_up {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                break;
            }
            i -= 1;
            if digits.get(i) == Some(&b'9') {
                if let Some(x) = digits.get_mut(i) {
                    *x = b'0';
                }
            } else {
                if let Some(x) = digits.get_mut(i) {
                    *x += 1;
                }
                break;
            }
        }
    }
    let split = digits.len().saturating_sub(d);
    let (i, f) = digits.split_at(split);
    let mut out = String::from_utf8_lossy(i).into_owned();
    if d > 0 {
        out.push('.');
        out.push_str(&String::from_utf8_lossy(f));
    }
    out
}

/// `formatNumber(number; decimals; [decimal separator]; [thousands separator])`; the
/// separators default to `,` (decimal) and `.` (thousands).
fn format_number(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 4)?;
    let x = number_arg(args, 0)?;
    let d = if value::is_empty(arg(args, 1)) {
        0
    } else {
        integer_arg(args, 1, 0, 100)? as usize
    };
    let sep = |i: usize, default: &str| match args.get(i) {
        None | Some(Value::Null) => default.to_string(),
        Some(v) => value::to_text(v),
    };
    let decimal = sep(2, ",");
    let thousands = sep(3, ".");
    let fixed = to_fixed(x.abs(), d);
    let (int, frac) = fixed.split_once('.').unwrap_or((fixed.as_str(), ""));
    // Up to 102 thousands separators (1e308): a long one multiplies.
    super::ensure_fits(
        thousands
            .len()
            .saturating_mul(int.len() / 3)
            .saturating_add(decimal.len())
            .saturating_add(fixed.len()),
    )?;
    let mut out = String::new();
    if x < 0.0 && fixed.bytes().any(|b| b.is_ascii_digit() && b != b'0') {
        out.push('-');
    }
    let len = int.len();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (len - i) % 3 == 0 {
            out.push_str(&thousands);
        }
        out.push(c);
    }
    if d > 0 {
        out.push_str(&decimal);
        out.push_str(frac);
    }
    Ok(Value::String(out))
}

/// `parseNumber(text; [decimal separator])`: reads numbers written with thousands
/// separators (`1 756,456` with `,` → 1756.456). The decimal separator defaults to `.`.
fn parse_number(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 2)?;
    let v = arg(args, 0);
    if let Value::Number(_) = v {
        return Ok(v.clone());
    }
    let text = text_arg(args, 0);
    let decimal = match text_arg(args, 1) {
        s if s.is_empty() => ".".to_string(),
        s => s,
    };
    let invalid = || {
        FnError::new(format!(
            "{} is not a valid number with decimal separator {:?}",
            short(v),
            decimal
        ))
    };
    let trimmed = text.trim();
    let (negative, body) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    let mut parts = body.split(decimal.as_str());
    let int_part = parts.next().unwrap_or("");
    let frac_part = parts.next();
    if parts.next().is_some() {
        return Err(invalid());
    }
    let mut digits = String::new();
    for c in int_part.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '\u{a0}' | '\u{202f}' | '.' | ',' | '\'' | '’' | '_' => {}
            _ => return Err(invalid()),
        }
    }
    if let Some(frac) = frac_part {
        if !frac.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid());
        }
        digits.push('.');
        digits.push_str(frac);
    }
    if !digits.bytes().any(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let n: f64 = digits.parse().map_err(|_| invalid())?;
    Ok(number(if negative { -n } else { n }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_fixed_rounds_like_javascript() {
        assert_eq!(to_fixed(0.125, 2), "0.13");
        assert_eq!(to_fixed(1.005, 2), "1.00");
        assert_eq!(to_fixed(9.995, 2), "9.99");
        assert_eq!(to_fixed(9.5, 0), "10");
        assert_eq!(to_fixed(99.96, 1), "100.0");
        assert_eq!(to_fixed(123456789.0, 3), "123456789.000");
        assert_eq!(to_fixed(0.0, 0), "0");
    }

    #[test]
    fn shifting_and_rounding() {
        assert_eq!(shift(1.005, 2), 100.5);
        assert_eq!(js_round(-1.5), -1.0);
        assert_eq!(js_round(2.5), 3.0);
        assert_eq!(js_round(0.49999999999999994), 0.0);
    }
}
