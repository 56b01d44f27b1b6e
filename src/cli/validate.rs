//! `switchyard validate FILE…`: every problem of every file, each with its JSON path.
//! Exit code 0 when all are valid, 1 when any is invalid, 2 when any cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::module::Registry;
use crate::scenario::{self, LoadError};

#[derive(Args)]
pub struct ValidateArgs {
    /// Scenario blueprint files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print the problems as JSON: `[{"file", "valid", "problems": [{path, message}]}]`.
    #[arg(long)]
    json: bool,
}

pub fn validate(args: ValidateArgs, registry: &dyn Registry) -> anyhow::Result<ExitCode> {
    let mut worst = 0u8;
    let mut results = Vec::new();
    for file in &args.files {
        let name = file.display().to_string();
        let (code, problems) = match std::fs::read_to_string(file) {
            Err(e) => (super::EXIT_UNREADABLE, vec![format!("cannot read: {e}")]),
            Ok(text) => match scenario::load(&text, registry) {
                Ok(_) => (0, Vec::new()),
                Err(e @ LoadError::Syntax { .. }) => (super::EXIT_UNREADABLE, vec![e.to_string()]),
                Err(e) => (1, e.problems().iter().map(ToString::to_string).collect()),
            },
        };
        worst = worst.max(code);
        if args.json {
            results
                .push(serde_json::json!({"file": name, "valid": code == 0, "problems": problems}));
        } else if problems.is_empty() {
            println!("{name}: valid");
        } else {
            for p in &problems {
                println!("{name}: {p}");
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(ExitCode::from(worst))
}
