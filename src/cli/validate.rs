//! `switchyard validate FILE… [--strict] [--json]`: every error and warning of every file, each
//! with its JSON path, found in one pass. Errors make a scenario unrunnable; warnings (unknown
//! keys, skipped placeholders, modules that will fail when they run) do not.
//! Exit code 0 when no file has an error (with `--strict`: nor a warning), 1 otherwise, 2 when
//! any file cannot be read or is not JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::module::Registry;
use crate::scenario::{self, CompileOptions, LoadError, Problem};

#[derive(Args)]
pub struct ValidateArgs {
    /// Scenario blueprint files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print the results as JSON: `[{"file", "valid", "problems": ["path: message"…],
    /// "errors": [{path, message}], "warnings": [{path, message}]}]` (`problems` lists the
    /// errors as text; `valid` is false when there is an error).
    #[arg(long)]
    json: bool,
    /// Fail (exit 1) on warnings too, not only on errors.
    #[arg(long)]
    strict: bool,
}

pub fn validate(args: ValidateArgs, registry: &dyn Registry) -> anyhow::Result<ExitCode> {
    let mut worst = 0u8;
    let mut results = Vec::new();
    for file in &args.files {
        let name = file.display().to_string();
        let (errors, warnings, unreadable) = match std::fs::read_to_string(file) {
            Err(e) => (vec![problem(format!("cannot read: {e}"))], Vec::new(), true),
            Ok(text) => match scenario::check(&text, registry, &CompileOptions::default()) {
                Ok(checked) => (checked.errors, checked.warnings, false),
                Err(e @ LoadError::Syntax { .. }) => {
                    (vec![problem(e.to_string())], Vec::new(), true)
                }
                Err(e) => (e.problems(), Vec::new(), false),
            },
        };
        let code = if unreadable {
            super::EXIT_UNREADABLE
        } else if !errors.is_empty() || (args.strict && !warnings.is_empty()) {
            1
        } else {
            0
        };
        worst = worst.max(code);
        if args.json {
            results.push(serde_json::json!({
                "file": name,
                "valid": errors.is_empty(),
                "problems": errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "errors": errors,
                "warnings": warnings,
            }));
            continue;
        }
        for p in &errors {
            println!("{name}: {p}");
        }
        for p in &warnings {
            println!("{name}: warning: {p}");
        }
        match (errors.is_empty(), warnings.len()) {
            (false, _) => {}
            (true, 0) => println!("{name}: valid"),
            (true, n) => println!("{name}: valid, with {n} warning(s)"),
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(ExitCode::from(worst))
}

/// A problem of the file as a whole (no JSON path).
fn problem(message: String) -> Problem {
    Problem {
        path: String::new(),
        message,
    }
}
