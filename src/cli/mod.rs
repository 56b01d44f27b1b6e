//! The `switchyard` command line: parses arguments and wires the layers together. This is
//! the binary's edge, so errors here are `anyhow` and end as a message and an exit code.

mod admin;
mod eval;
mod run;
mod service;
mod validate;

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::apps::{AppOptions, AppRegistry, EgressAllowance, EgressPolicy, HttpOptions};
use crate::module::Registry;

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
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    /// Runs the service: HTTP API, webhooks, scheduler and workers (embedded SQLite by default).
    Serve(service::ServeArgs),
    /// Runs workers only, sharing a PostgreSQL database with other processes.
    Worker(service::WorkerArgs),
    /// Manages stored scenarios.
    Scenarios {
        #[command(flatten)]
        args: admin::AdminArgs,
        #[command(subcommand)]
        command: admin::ScenariosCommand,
    },
    /// Inspects and retries stored executions.
    Executions {
        #[command(flatten)]
        args: admin::AdminArgs,
        #[command(subcommand)]
        command: admin::ExecutionsCommand,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Run(args) => {
            modules(&args.egress).and_then(|modules| run::run(args, modules.as_ref()))
        }
        Command::Validate(args) => modules(&EgressArgs::default())
            .and_then(|modules| validate::validate(args, modules.as_ref())),
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::scenario::json_schema()).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(args) => eval::eval(args),
        Command::Serve(args) => modules(&args.worker.egress)
            .and_then(|modules| service_main(service::serve(args, modules))),
        Command::Worker(args) => {
            modules(&args.egress).and_then(|modules| service_main(service::worker(args, modules)))
        }
        // Stored scenarios are only compiled here, never run: no target needs allowing.
        Command::Scenarios { args, command } => modules(&EgressArgs::default())
            .and_then(|modules| service_main(admin::scenarios(args, command, modules))),
        Command::Executions { args, command } => service_main(admin::executions(args, command)),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(EXIT_UNREADABLE)
    })
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| "warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs a service command on a multi-threaded runtime; its error ends the process with 1.
fn service_main(
    future: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(future) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The egress guard's allowances of a command that runs scenarios.
#[derive(Args, Clone, Default)]
pub struct EgressArgs {
    /// Let outgoing requests (HTTP and RSS modules) reach this host name, IP address or CIDR
    /// block although it is not public (loopback, private, link-local …, refused by default).
    /// Repeatable, or comma-separated.
    #[arg(
        long = "allow-egress",
        value_name = "HOST|CIDR",
        env = "SWITCHYARD_ALLOW_EGRESS",
        value_delimiter = ','
    )]
    pub allow_egress: Vec<EgressAllowance>,
}

/// The modules of this process, built here once and handed to every layer that compiles or
/// runs scenarios (the catalog, the runner, the API and the scheduler through them); their
/// outgoing requests obey the egress guard with `egress`'s allowances.
fn modules(egress: &EgressArgs) -> anyhow::Result<Arc<dyn Registry>> {
    let options = AppOptions {
        http: HttpOptions {
            egress: EgressPolicy::new(egress.allow_egress.clone()),
            ..HttpOptions::default()
        },
    };
    Ok(Arc::new(AppRegistry::build(options)?))
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
