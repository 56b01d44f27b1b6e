//! Scenarios: the blueprint model ([`model`]), its compilation into a runnable, checked graph
//! ([`compiled`]), filters and schedules.
//!
//! Loading is three steps, each with problems that say where: JSON syntax (line and column),
//! shape (every module read on its own: each mismatch with its JSON path), then meaning
//! (every problem, each with its path). Problems are **errors** (the scenario cannot run) or
//! **warnings** (it runs, but a key is ignored, a placeholder is skipped or a module will
//! fail when it runs); only errors stop a load. [`check`] returns both lists.

mod compile;
pub mod compiled;
pub mod filter;
pub mod interface;
pub mod model;
pub mod schedule;
mod shape;

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
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
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
    #[error("{} problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl LoadError {
    /// Every problem as a list (a syntax error is one problem).
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
            LoadError::Invalid(p) => p.clone(),
        }
    }
}

/// Parses blueprint JSON text into the model: every shape mismatch of every module, each
/// with its path. The warnings found on the way travel in [`Blueprint::warnings`].
pub fn parse(text: &str) -> Result<Blueprint, LoadError> {
    from_value(parse_json(text)?)
}

/// `text` without the UTF-8 byte-order mark that Windows editors put at the start of a file:
/// JSON itself forbids it, but a blueprint saved so is still the designer's blueprint.
pub fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

fn parse_json(text: &str) -> Result<serde_json::Value, LoadError> {
    serde_json::from_str(without_bom(text)).map_err(|e| LoadError::Syntax {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })
}

/// Converts an already-parsed JSON value into the model (see [`parse`]).
pub fn from_value(value: serde_json::Value) -> Result<Blueprint, LoadError> {
    let read = shape::read(value);
    match read.blueprint {
        Some(mut blueprint) if read.errors.is_empty() => {
            blueprint.warnings = read.warnings;
            Ok(blueprint)
        }
        _ => Err(LoadError::Invalid(read.errors)),
    }
}

/// Parses and compiles: the scenario ready to run (its warnings in [`Scenario::warnings`]),
/// or every error found.
pub fn load(text: &str, registry: &dyn Registry) -> Result<Scenario, LoadError> {
    compile(&parse(text)?, registry)
}

/// Everything wrong with a blueprint, errors and warnings, and the scenario when there is no
/// error.
#[derive(Debug)]
pub struct Checked {
    pub scenario: Option<Scenario>,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// Reads and compiles blueprint text, collecting every error and warning in one pass (shape
/// errors of one module do not hide compile problems of the others). Only invalid JSON
/// syntax is returned as an `Err`.
pub fn check(
    text: &str,
    registry: &dyn Registry,
    options: &CompileOptions,
) -> Result<Checked, LoadError> {
    let read = shape::read(parse_json(text)?);
    let (mut errors, mut warnings) = (read.errors, read.warnings);
    let Some(mut blueprint) = read.blueprint else {
        return Ok(Checked {
            scenario: None,
            errors,
            warnings,
        });
    };
    blueprint.warnings = std::mem::take(&mut warnings);
    let compiled = compile::compile(&blueprint, registry, options);
    errors.extend(compiled.errors);
    warnings.extend(compiled.warnings);
    Ok(Checked {
        scenario: compiled.scenario.filter(|_| errors.is_empty()),
        errors,
        warnings,
    })
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
    let compiled = compile::compile(blueprint, registry, options);
    match compiled.scenario {
        Some(scenario) if compiled.errors.is_empty() => Ok(scenario),
        _ => Err(LoadError::Invalid(compiled.errors)),
    }
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
