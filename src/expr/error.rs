//! The two error types of IML: [`ParseError`] (the template is malformed; found once, at load)
//! and [`EvalError`] (evaluating it over one bundle failed). Both carry a 1-based character
//! column within the template's source string.

/// A malformed template: where (1-based character column in the source) and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(column: usize, message: impl Into<String>) -> Self {
        ParseError {
            column,
            message: message.into(),
        }
    }
}

/// A failed evaluation: the column of the operator or function call that failed, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct EvalError {
    pub column: usize,
    pub message: String,
}

impl EvalError {
    pub(crate) fn new(column: usize, message: impl Into<String>) -> Self {
        EvalError {
            column,
            message: message.into(),
        }
    }
}
