//! Scenarios: the blueprint model ([`model`]), its compilation into a runnable, checked graph
//! ([`compiled`]), filters and schedules.
//!
//! Loading is three steps, each with errors that say where: JSON syntax (line and column),
//! shape (JSON path of the first mismatch), then meaning (every problem, each with its path).

mod compile;
pub mod compiled;
pub mod filter;
pub mod model;
pub mod schedule;

pub use compile::{CompileOptions, FLOW_CONTROL};
pub use compiled::Scenario;
pub use model::Blueprint;

use crate::module::Registry;

/// One thing wrong with a scenario, at a JSON path such as `flow[2].mapper.name`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Shape { path: String, message: String },
    #[error("{} problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl LoadError {
    /// Every problem as a list (a syntax or shape error is one problem).
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            LoadError::Syntax {
                line,
                column,
                message,
            } => {
                vec![Problem {
                    path: String::new(),
                    message: format!("invalid JSON at line {line}, column {column}: {message}"),
                }]
            }
            LoadError::Shape { path, message } => vec![Problem {
                path: path.clone(),
                message: message.clone(),
            }],
            LoadError::Invalid(p) => p.clone(),
        }
    }
}

/// Parses blueprint JSON text into the model, with the path of the first shape mismatch.
pub fn parse(text: &str) -> Result<Blueprint, LoadError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| LoadError::Syntax {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    from_value(value)
}

/// Converts an already-parsed JSON value into the model.
pub fn from_value(value: serde_json::Value) -> Result<Blueprint, LoadError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        LoadError::Shape {
            path,
            message: e.into_inner().to_string(),
        }
    })
}

/// Parses and compiles: the scenario ready to run, or every problem found.
pub fn load(text: &str, registry: &dyn Registry) -> Result<Scenario, LoadError> {
    compile(&parse(text)?, registry)
}

/// Compiles a parsed blueprint against the modules `registry` provides.
pub fn compile(blueprint: &Blueprint, registry: &dyn Registry) -> Result<Scenario, LoadError> {
    compile_with(blueprint, registry, &CompileOptions::default())
}

/// [`compile`] with a deployment's [`CompileOptions`].
pub fn compile_with(
    blueprint: &Blueprint,
    registry: &dyn Registry,
    options: &CompileOptions,
) -> Result<Scenario, LoadError> {
    compile::compile(blueprint, registry, options).map_err(LoadError::Invalid)
}

/// The JSON Schema of the blueprint format.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Blueprint)).unwrap_or_default()
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}
