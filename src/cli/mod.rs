//! The `switchyard` command line: parses arguments and wires the layers together. This is
//! the binary's edge, so errors here are `anyhow` and end as a message and an exit code.

mod eval;
mod run;
mod validate;

use std::io::Read;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::apps::{BuiltinRegistry, HttpOptions};

/// Exit code for a file that cannot be read or parsed, or bad arguments.
pub const EXIT_UNREADABLE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Runs Make (Integromat) scenario blueprints"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one execution of a scenario in-process (no database) and prints a trace.
    Run(run::RunArgs),
    /// Checks scenario files and reports every problem with its JSON path.
    Validate(validate::ValidateArgs),
    /// Prints the JSON Schema of the scenario format.
    Schema,
    /// Evaluates one IML expression, like Make's function tester.
    Eval(eval::EvalArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Validate(args) => validate::validate(args),
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::scenario::json_schema()).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(args) => eval::eval(args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(EXIT_UNREADABLE)
    })
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The modules available to scenarios run from the command line.
pub fn registry() -> anyhow::Result<BuiltinRegistry> {
    Ok(BuiltinRegistry::new(HttpOptions::default())?)
}

/// Reads `JSON`, `@file` or `-` (standard input) as JSON.
fn read_json_arg(arg: &str, what: &str) -> anyhow::Result<serde_json::Value> {
    let text = if arg == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {what} file {path}: {e}"))?
    } else {
        arg.to_string()
    };
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{what} is not valid JSON (line {}, column {}): {e}",
            e.line(),
            e.column()
        )
    })
}
