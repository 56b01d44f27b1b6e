//! `switchyard validate FILE… [--strict] [--json]`: every error and warning of every file, each
//! with its JSON path, found in one pass. Errors make a scenario unrunnable; warnings (unknown
//! keys, skipped placeholders, modules that will fail when they run) do not.
//! References to connections and data stores that do not exist (in `--data-dir`, or the
//! default data directory when it has a database) are warnings naming the command that
//! creates them: an export can be looked at before its connections exist.
//! Exit code 0 when no file has an error (with `--strict`: nor a warning), 1 otherwise, 2 when
//! any file cannot be read or is not JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::catalog::missing_references;
use crate::module::Registry;
use crate::scenario::{self, CompileOptions, LoadError, Problem};
use crate::store::Store;

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
    /// The data directory whose connections and data stores the scenarios' references are
    /// looked up in (`./switchyard-data` when it holds a database); a reference to one that
    /// does not exist there is a warning naming the command that creates it. Without a
    /// database every reference is reported so.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A `postgres://…` (or `sqlite://…`) database to look the references up in instead.
    #[arg(long, env = "SWITCHYARD_DATABASE_URL")]
    database_url: Option<String>,
    /// Accepted as every command that opens the store accepts it (`serve
    /// --master-key-file`); validating reads no connection's sealed values, so the key is not
    /// needed, and the file is not read.
    #[arg(long, value_name = "PATH", env = "SWITCHYARD_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
}

/// The database references are looked up in: the one named, else the default data
/// directory when it already holds a database (never created by validating).
async fn reference_store(args: &ValidateArgs) -> anyhow::Result<Option<Store>> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(super::DEFAULT_DATA_DIR));
    if args.database_url.is_none() && !data_dir.join(crate::store::SQLITE_FILE_NAME).exists() {
        if args.data_dir.is_some() {
            anyhow::bail!("{} holds no Switchyard database", data_dir.display());
        }
        return Ok(None);
    }
    let db = super::service::DatabaseArgs {
        data_dir,
        database_url: args.database_url.clone(),
        master_key_file: args.master_key_file.clone(),
    };
    Ok(Some(db.open().await?))
}

pub fn validate(args: ValidateArgs, registry: &dyn Registry) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = runtime.block_on(reference_store(&args))?;
    let mut worst = 0u8;
    let mut results = Vec::new();
    for file in &args.files {
        let name = file.display().to_string();
        let (errors, warnings, unreadable) = match std::fs::read_to_string(file) {
            Err(e) => (vec![problem(format!("cannot read: {e}"))], Vec::new(), true),
            Ok(text) => match scenario::check(&text, registry, &CompileOptions::default()) {
                Ok(checked) => {
                    let mut warnings = checked.warnings;
                    if let Some(scenario) = &checked.scenario {
                        warnings.extend(
                            runtime.block_on(missing_references(store.as_ref(), scenario))?,
                        );
                    }
                    (checked.errors, warnings, false)
                }
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
    if let Some(store) = store {
        runtime.block_on(store.close());
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
