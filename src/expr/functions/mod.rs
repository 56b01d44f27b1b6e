//! The function catalogue (`reference/make.md` §2.2), one file per family. Functions receive
//! already-evaluated arguments; the few that must not evaluate every argument (`if`,
//! `ifempty`, `switch`) are handled by the evaluator itself.

pub mod array;
pub mod date;

use chrono::{DateTime, Utc};
use serde_json::Value;

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

/// Looks a function up by its IML name (case-sensitive, as Make's).
pub fn lookup(name: &str) -> Option<Function> {
    date::lookup(name).or_else(|| array::lookup(name))
}
