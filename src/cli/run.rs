//! `switchyard run FILE [--input JSON|@file|-] [--json] [--data-dir DIR | --database-url URL]
//! [--integrations FILE]`:
//! one execution in-process. Prints a readable trace, or with `--json` exactly the execution
//! report. The execution is not stored; with `--data-dir` (or `--database-url`) its modules
//! resolve `parameters.__IMTCONN__` among that database's stored connections, unsealed with the
//! master key (`SWITCHYARD_MASTER_KEY` or the data directory's key file), and `datastore:*`
//! modules read and write that database's data stores.
//! A called scenario (`scenario-service:StartSubscenario`) takes `--input` as its inputs,
//! checked against their declared types; a `CallSubscenario` module fails here saying it
//! needs `serve`/`worker` (a call starts a stored scenario's execution).
//! Before it runs, every stored connection and data store the scenario names is checked to
//! exist (and each connection to be of the app and kind its module needs), every problem on
//! its own line with its JSON path (`catalog::references`).
//! Exit code 0 on success, 1 when the execution ended in error or incomplete, 2 when the
//! scenario or the input cannot be read, or names missing or mismatched resources.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use crate::apps::AppRegistry;
use crate::console::plural;
use crate::engine::{self, Report, RunInput, Status};
use crate::module::{
    ConnectionsHandle, DataStoresHandle, ExecutionContext, Extensions, Redactions,
};
use crate::scenario::{self, Scenario};

#[derive(Args)]
pub struct RunArgs {
    /// The scenario blueprint file.
    file: PathBuf,
    /// Trigger input: JSON, @file or - (standard input). An object is one bundle, an array
    /// one bundle per element.
    #[arg(long)]
    input: Option<String>,
    /// Print the execution report as JSON.
    #[arg(long)]
    json: bool,
    /// The data directory whose stored connections the scenario's modules use.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A `postgres://…` (or `sqlite://…`) database whose stored connections the modules use
    /// (the master key then comes from --master-key-file, SWITCHYARD_MASTER_KEY, or the key
    /// file of --data-dir).
    #[arg(long)]
    database_url: Option<String>,
    /// The master key of the stored connections, from this file kept apart from the data
    /// directory (as `serve --master-key-file`).
    #[arg(long, value_name = "PATH", env = "SWITCHYARD_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// An integrations file (as `serve --integrations`): OAuth2 connections made through its
    /// integrations are refreshed in this run as `serve` refreshes them. Repeatable.
    #[arg(long = "integrations", value_name = "FILE")]
    integrations: Vec<PathBuf>,
    #[command(flatten)]
    pub egress: super::EgressArgs,
    #[command(flatten)]
    pub budget: super::BudgetArgs,
}

/// The stored connections `args` name, with every one checked to open with the master key,
/// and the data stores of that database; none without `--data-dir` or `--database-url`.
async fn connections(args: &RunArgs, apps: &AppRegistry) -> anyhow::Result<Extensions> {
    let mut extensions = Extensions::default();
    if args.data_dir.is_none() && args.database_url.is_none() {
        return Ok(extensions);
    }
    let db = super::service::DatabaseArgs {
        data_dir: args
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(super::DEFAULT_DATA_DIR)),
        database_url: args.database_url.clone(),
        master_key_file: args.master_key_file.clone(),
    };
    // Without --integrations too: a service account's tokens are minted for its app.
    let integrations = Some(crate::connections::OAuthSettings {
        integrations: crate::connections::load_files(&args.integrations)?,
        public_url: reqwest::Url::parse("http://127.0.0.1:8080")?,
        egress: crate::apps::EgressPolicy::new(args.egress.allow_egress.clone()),
    });
    // One pool for the connections and the data stores.
    let store = db.open().await?;
    let vault = super::connections::vault_on(store.clone(), &db, Some(apps), integrations)?;
    vault.check_keys().await?;
    extensions.insert::<ConnectionsHandle>(vault.handle());
    extensions.insert::<DataStoresHandle>(store.datastores_handle());
    Ok(extensions)
}

pub fn run(args: RunArgs, registry: &AppRegistry) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?;
    let scenario = match scenario::load(&text, registry) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: {e}", args.file.display());
            return Ok(ExitCode::from(super::EXIT_UNREADABLE));
        }
    };
    let bundles = match &args.input {
        None => Vec::new(),
        Some(arg) => match super::read_json_arg(arg, "--input")? {
            Value::Array(items) => items,
            other => vec![other],
        },
    };
    // A scenario started by `scenario-service:StartSubscenario` run on its own: `--input` is
    // the call's inputs (none: one call without inputs), checked against the declared types
    // as a call's are. Its own `CallSubscenario` modules need a service (serve/worker).
    let bundles = if scenario.is_callable() {
        match called_inputs(&scenario, bundles) {
            Ok(bundles) => bundles,
            Err(problems) => {
                eprintln!(
                    "{}: the input does not fit the declared inputs:",
                    args.file.display()
                );
                for problem in problems {
                    eprintln!("  {problem}");
                }
                return Ok(ExitCode::from(super::EXIT_UNREADABLE));
            }
        }
    } else {
        bundles
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut extensions = runtime.block_on(connections(&args, registry))?;
    let problems = runtime.block_on(crate::catalog::references::check(
        &scenario,
        extensions.get::<ConnectionsHandle>(),
        extensions.get::<DataStoresHandle>(),
    ));
    if !problems.is_empty() {
        eprintln!(
            "{}: the stored connections or data stores it names are missing or of the wrong \
             app or kind:",
            args.file.display()
        );
        for problem in &problems {
            eprintln!("  {problem}");
        }
        return Ok(ExitCode::from(super::EXIT_UNREADABLE));
    }
    let redactions = Redactions::default();
    extensions.insert(redactions.clone());
    let roots = runtime.block_on(crate::module::connection::token_roots(
        extensions.get::<ConnectionsHandle>(),
        &bundles,
    ));
    let input = RunInput {
        bundles,
        context: ExecutionContext {
            extensions,
            ..ExecutionContext::new(uuid::Uuid::new_v4().simple().to_string())
        },
        budget: args.budget.budget()?,
        roots,
        ..RunInput::default()
    };
    let mut report = runtime.block_on(engine::run(&scenario, input));
    report.redact(&redactions.secrets());
    if args.json {
        println!("{}", serde_json::to_string(&report.to_json())?);
    } else {
        print_trace(&scenario, &report);
    }
    Ok(if report.status == Status::Success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Each bundle of `--input` checked as a call's inputs (`--input.NAME` in problems); no
/// bundle is one call without inputs.
fn called_inputs(scenario: &Scenario, bundles: Vec<Value>) -> Result<Vec<Value>, Vec<String>> {
    let bundles = if bundles.is_empty() {
        vec![Value::Object(Default::default())]
    } else {
        bundles
    };
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    for (i, bundle) in bundles.iter().enumerate() {
        let at = if i == 0 && checked.is_empty() && bundles.len() == 1 {
            "--input".to_string()
        } else {
            format!("--input[{i}]")
        };
        let Value::Object(data) = bundle else {
            problems.push(format!("{at}: expected an object of the scenario's inputs"));
            continue;
        };
        match crate::module::subscenario::check_inputs(&scenario.interface.input, data, &at) {
            Ok(inputs) => checked.push(Value::Object(inputs)),
            Err(found) => problems.extend(
                found
                    .into_iter()
                    .map(|(path, reason)| format!("{path}: {reason}")),
            ),
        }
    }
    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(problems)
    }
}

fn print_trace(scenario: &Scenario, report: &Report) {
    let status = match report.status {
        Status::Success => "success",
        Status::Error => "error",
        Status::Incomplete => "incomplete",
    };
    println!(
        "{} — {status} · {} · {}",
        if scenario.name.is_empty() {
            "scenario"
        } else {
            &scenario.name
        },
        plural(report.operations, "operation"),
        plural(report.cycles.into(), "cycle"),
    );
    for s in &report.stats {
        let node = scenario.by_id.get(&s.module).map(|&ix| scenario.node(ix));
        let module = node.map(|n| n.module.as_str()).unwrap_or("?");
        let label = node
            .and_then(|n| n.label.as_deref())
            .map(|l| format!(" \"{l}\""))
            .unwrap_or_default();
        let mut line = format!(
            "  [{}] {module}{label}: {} → {}",
            s.module,
            plural(s.runs, "run"),
            plural(s.bundles_out, "bundle")
        );
        if s.filtered > 0 {
            line.push_str(&format!(", {} filtered out", plural(s.filtered, "bundle")));
        }
        if s.errors > 0 {
            line.push_str(&format!(", {}", plural(s.errors, "error")));
        }
        if s.logged < s.bundles_out {
            line.push_str(&format!(" (the first {} logged)", s.logged));
        }
        println!("{line}");
    }
    if let Some(e) = &report.error {
        println!("error in module {}: {}: {}", e.module, e.name, e.message);
    }
    for i in &report.incomplete {
        println!(
            "incomplete: module {} stored for retry after {}: {}",
            i.module, i.error.name, i.error.message
        );
    }
    if let Some(r) = &report.response {
        let body = match &r.body {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!("response: {} {body}", r.status);
    }
}
