//! The `switchyard` command line: parses arguments and wires the layers together. This is
//! the binary's edge, so errors here are `anyhow` and end as a message and an exit code.

mod admin;
mod connections;
mod datastores;
mod eval;
mod integrations;
mod run;
mod service;
mod validate;

pub use service::DEFAULT_CONCURRENCY;

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::apps::{AppOptions, AppRegistry, EgressAllowance, EgressPolicy, HttpOptions};
use crate::engine::Budget;

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
    /// Runs one execution of a scenario in-process (with the stored connections of
    /// `--data-dir`, when given) and prints a trace.
    Run(run::RunArgs),
    /// Checks scenario files and reports every problem with its JSON path.
    Validate(validate::ValidateArgs),
    /// Prints the JSON Schema of the scenario format (with --app, of the app definition format).
    Schema {
        /// Print the JSON Schema of app definitions (`modules/*.json`) instead.
        #[arg(long)]
        app: bool,
    },
    /// Evaluates one IML expression, like Make's function tester.
    Eval(eval::EvalArgs),
    /// Lists the apps this binary runs (built in, and defined as data in `modules/` or
    /// `SWITCHYARD_APPS_DIR`), or with APP that app's module types.
    Apps {
        #[command(subcommand)]
        command: AppsCommand,
    },
    /// Checks integrations files: what each entry lacks before it can be connected.
    Integrations {
        #[command(subcommand)]
        command: integrations::IntegrationsCommand,
    },
    /// Runs the service: HTTP API, webhooks, scheduler and workers (embedded SQLite by default).
    // Boxed: its flags make it much larger than the other commands.
    Serve(Box<service::ServeArgs>),
    /// Runs workers only, sharing a PostgreSQL database with other processes.
    Worker(service::WorkerArgs),
    /// Manages stored scenarios.
    Scenarios {
        #[command(flatten)]
        args: admin::AdminArgs,
        #[command(flatten)]
        egress: EgressArgs,
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
    /// Manages stored connections (credentials), sealed under the master key.
    Connections {
        #[command(flatten)]
        args: admin::AdminArgs,
        #[command(flatten)]
        egress: EgressArgs,
        #[command(subcommand)]
        command: connections::ConnectionsCommand,
    },
    /// Manages data stores (the records `datastore:*` modules read and write).
    Datastores {
        #[command(flatten)]
        args: admin::AdminArgs,
        #[command(subcommand)]
        command: datastores::DatastoresCommand,
    },
}

#[derive(Subcommand)]
enum AppsCommand {
    /// The apps and how many modules each has; with APP, its module types.
    List {
        /// One app (`google-sheets`).
        app: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `switchyard apps list [APP]`.
fn apps_list(modules: &crate::apps::AppRegistry, app: Option<&str>, json: bool) -> ExitCode {
    use crate::module::Registry as _;
    let types = modules.module_types();
    let mut apps: Vec<(&str, Vec<&str>)> = Vec::new();
    for t in &types {
        let Some((name, module)) = t.split_once(':') else {
            continue;
        };
        match apps.last_mut() {
            Some((last, modules)) if *last == name => modules.push(module),
            _ => apps.push((name, vec![module])),
        }
    }
    match app {
        Some(app) => {
            let Some((_, modules)) = apps.iter().find(|(name, _)| *name == app) else {
                let names: Vec<&str> = apps.iter().map(|(name, _)| *name).collect();
                eprintln!(
                    "error: no app \"{app}\" is installed (apps: {})",
                    names.join(", ")
                );
                return ExitCode::from(1);
            };
            if json {
                println!("{}", serde_json::json!({"app": app, "modules": modules}));
            } else {
                for module in modules {
                    println!("{app}:{module}");
                }
            }
        }
        None if json => {
            let listed: Vec<serde_json::Value> = apps
                .iter()
                .map(|(name, modules)| serde_json::json!({"app": name, "modules": modules.len()}))
                .collect();
            println!("{}", serde_json::json!({"apps": listed}));
        }
        None => {
            for (name, modules) in &apps {
                let plural = if modules.len() == 1 { "" } else { "s" };
                println!("{name:<20} {} module{plural}", modules.len());
            }
        }
    }
    ExitCode::SUCCESS
}

/// Where the database lives when no `--data-dir` is given (the README's first command).
pub const DEFAULT_DATA_DIR: &str = "./switchyard-data";

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
        Command::Schema { app } => {
            let schema = if app {
                crate::apps::defined::json_schema()
            } else {
                crate::scenario::json_schema()
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(args) => eval::eval(args),
        Command::Apps {
            command: AppsCommand::List { app, json },
        } => modules(&EgressArgs::default())
            .map(|modules| apps_list(modules.as_ref(), app.as_deref(), json)),
        Command::Integrations { command } => modules(&EgressArgs::default())
            .and_then(|modules| integrations::run(command, modules.as_ref())),
        Command::Serve(args) => modules(&args.worker.egress)
            .and_then(|modules| service_main(service::serve(*args, modules))),
        Command::Worker(args) => {
            modules(&args.egress).and_then(|modules| service_main(service::worker(args, modules)))
        }
        // Activating a scenario may register its instant trigger's hook on a service.
        Command::Scenarios {
            args,
            egress,
            command,
        } => modules(&egress)
            .and_then(|modules| service_main(admin::scenarios(args, command, modules))),
        Command::Executions { args, command } => service_main(admin::executions(args, command)),
        Command::Connections {
            args,
            egress,
            command,
        } => modules(&egress).and_then(|modules| {
            service_main(connections::connections(args, command, modules, egress))
        }),
        Command::Datastores { args, command } => {
            service_main(datastores::datastores(args, command))
        }
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
        // Colour codes only for a person at a terminal, never into a file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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

/// The outgoing requests of a command that runs scenarios: the egress guard's allowances and
/// the apps' base URL overrides.
#[derive(Args, Clone, Default)]
pub struct EgressArgs {
    /// Let outgoing requests (HTTP and RSS modules) reach this host name, IP address or CIDR
    /// block although it is not public (loopback, private, link-local …, refused by default).
    /// Repeatable, or comma-separated.
    #[arg(
        long = "allow-egress",
        value_name = "HOST|CIDR",
        env = "SWITCHYARD_ALLOW_EGRESS",
        value_delimiter = ',',
        global = true
    )]
    pub allow_egress: Vec<EgressAllowance>,
    /// Let HTTP modules that turn certificate checks off (Make's `rejectUnauthorized:
    /// false`) do so for this host name or IP address; elsewhere such a module fails and
    /// checks stay on. Repeatable, or comma-separated.
    #[arg(
        long = "allow-insecure-tls",
        value_name = "HOST",
        env = "SWITCHYARD_ALLOW_INSECURE_TLS",
        value_delimiter = ',',
        global = true
    )]
    pub allow_insecure_tls: Vec<String>,
    /// Sends the requests of app APP to URL instead of its own base URL (a sandbox, a proxy
    /// or a test server standing in for the real API; the egress guard still applies).
    /// Repeatable, or comma-separated in SWITCHYARD_APP_BASE_URLS.
    #[arg(
        long = "app-base-url",
        value_name = "APP=URL",
        env = "SWITCHYARD_APP_BASE_URLS",
        value_delimiter = ',',
        value_parser = parse_app_base_url,
        global = true
    )]
    pub app_base_url: Vec<(String, reqwest::Url)>,
}

/// `APP=URL`.
fn parse_app_base_url(text: &str) -> Result<(String, reqwest::Url), String> {
    let (app, url) = text
        .split_once('=')
        .ok_or_else(|| format!("expected APP=URL, got {text:?}"))?;
    let url = reqwest::Url::parse(url.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| format!("{app}: expected an absolute http(s) URL"))?;
    Ok((app.trim().to_string(), url))
}

/// What each execution of a command that runs scenarios may spend (`engine::Budget`);
/// exceeding one ends the execution with an `ExecutionInterruptedError`.
#[derive(Args, Clone)]
pub struct BudgetArgs {
    /// Wall time of one execution in seconds, module calls included (Make: 40 minutes).
    #[arg(long, value_name = "SECONDS", default_value_t = Budget::DEFAULT_WALL_TIME.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_execution_seconds: u64,
    /// Operations one execution may run (counted as Make counts them).
    #[arg(long, value_name = "N", default_value_t = Budget::DEFAULT_OPERATIONS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_operations: u64,
    /// Bytes of bundle data one execution may hold at once (in flight, in open aggregations,
    /// in its log): bytes, or with a KiB, MiB or GiB suffix.
    #[arg(long, value_name = "BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub max_bundle_bytes: u64,
    /// Output bundles of each module kept in an execution's log (the first ones); the others
    /// are counted but not kept.
    #[arg(long, value_name = "N", default_value_t = Budget::DEFAULT_LOG_BUNDLES_PER_MODULE)]
    pub log_bundles_per_module: u64,
    /// Backtracking steps one evaluation of a regular expression may take (IML `replace`, the
    /// Text parser, filters' "Matches pattern" …) before it fails with an error naming the
    /// pattern; a million take well under a second. For the whole process.
    #[arg(long, value_name = "N", default_value_t = crate::expr::regexp::DEFAULT_BACKTRACK_LIMIT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub regex_backtrack_limit: usize,
}

impl BudgetArgs {
    pub fn budget(&self) -> anyhow::Result<Budget> {
        // The regular-expression limit is the process's (patterns are compiled and cached
        // once, outside any one execution): set here, where every command that runs
        // scenarios reads its budget.
        crate::expr::regexp::set_backtrack_limit(self.regex_backtrack_limit);
        Ok(Budget::default()
            .with_wall_time(std::time::Duration::from_secs(self.max_execution_seconds))?
            .with_operations(self.max_operations)?
            .with_bundle_bytes(self.max_bundle_bytes)?
            .with_log_bundles_per_module(self.log_bundles_per_module))
    }
}

/// A positive number of bytes: `1048576`, `512KiB`, `256MiB`, `1GiB`.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} (expected KiB, MiB or GiB)")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("expected a positive number of bytes, got {text:?}"))
}

/// The modules of this process, built here once and handed to every layer that compiles or
/// runs scenarios (the catalog, the runner, the API and the scheduler through them); their
/// outgoing requests obey the egress guard with `egress`'s allowances. App definitions beyond
/// the built-in ones are read from `SWITCHYARD_APPS_DIR` (files or folders, separated as
/// `PATH` is); an invalid one stops the command with its file and JSON path.
fn modules(egress: &EgressArgs) -> anyhow::Result<Arc<AppRegistry>> {
    let options = AppOptions {
        http: HttpOptions {
            egress: EgressPolicy::new(egress.allow_egress.clone()),
            insecure_tls_hosts: egress
                .allow_insecure_tls
                .iter()
                .map(|host| host.trim().to_string())
                .filter(|host| !host.is_empty())
                .collect(),
            ..HttpOptions::default()
        },
        apps: std::env::var_os("SWITCHYARD_APPS_DIR")
            .map(|paths| std::env::split_paths(&paths).collect())
            .unwrap_or_default(),
        base_urls: egress.app_base_url.clone(),
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

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn bytes_are_plain_or_with_a_binary_unit() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        for bad in [
            "0",
            "",
            "MiB",
            "12MB",
            "-1",
            "1.5MiB",
            "99999999999999999999GiB",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }
}
