//! `switchyard integrations check FILE…`: reads integrations files as `serve --integrations`
//! does and says, per entry, whether it can be connected and what it still lacks (an OAuth
//! client's credentials, in the file or from `SWITCHYARD_OAUTH_<ALIAS>_CLIENT_ID` /
//! `_CLIENT_SECRET`; a studio provider's credentials, typed in on `/connect`). Never prints a
//! value of the file or the environment.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::apps::AppRegistry;
use crate::connections::{Grant, Integration};

#[derive(Subcommand)]
pub enum IntegrationsCommand {
    /// Loads the files (as `serve --integrations`) and reports, per integration, what it
    /// lacks before it can be connected. Exit code 1 when one cannot be connected yet.
    Check {
        /// The integrations files (a bot and its skills).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What one integration needs, in words, and whether it can be connected as it is.
fn report(integration: &Integration, apps: &AppRegistry) -> (bool, Vec<String>) {
    let mut notes: Vec<String> = integration
        .missing
        .iter()
        .map(|m| {
            let severity = if m.blocking { "missing" } else { "not set" };
            format!("{severity} {}: {}", m.field, m.how)
        })
        .collect();
    let mut ready = integration.check_configured().is_ok();
    match &integration.grant {
        Grant::App { app } => match apps.defined().app(app) {
            Some(defined) => {
                let schema = defined
                    .connection_types()
                    .first()
                    .map(|t| t.configuration.clone())
                    .unwrap_or(Value::Null);
                let names = |key: &str| -> Vec<String> {
                    match schema.get(key) {
                        Some(Value::Object(p)) => p.keys().cloned().collect(),
                        Some(Value::Array(r)) => {
                            r.iter().filter_map(Value::as_str).map(String::from).collect()
                        }
                        _ => Vec::new(),
                    }
                };
                notes.push(format!(
                    "type its credentials ({}) on /connect, or: switchyard connections add {} \
                     --app {app} {}",
                    names("properties").join(", "),
                    integration.alias,
                    names("required")
                        .iter()
                        .map(|f| format!("--field {f}=…"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
            None => {
                ready = false;
                notes.push(format!("the {app} app is not loaded (modules/{app}.json)"));
            }
        },
        Grant::Secret => notes.push(format!(
            "type its value on /connect, or: switchyard connections set-secret {} --integrations FILE",
            integration.alias
        )),
        Grant::Calendar => notes.push("built in: nothing to connect".into()),
        _ => {}
    }
    (ready, notes)
}

pub fn run(command: IntegrationsCommand, apps: &AppRegistry) -> anyhow::Result<ExitCode> {
    let IntegrationsCommand::Check { files, json } = command;
    let integrations = crate::connections::load_files(&files)?;
    let mut all_ready = true;
    let mut listed = Vec::new();
    for integration in &integrations {
        let (ready, notes) = report(integration, apps);
        all_ready &= ready;
        if json {
            listed.push(json!({
                "alias": integration.alias,
                "provider": integration.provider,
                "context": integration.context.as_str(),
                "flow": integration.grant.name(),
                "ready": ready,
                "missing": integration.missing.iter().map(|m| json!({
                    "field": m.field, "how": m.how, "blocking": m.blocking
                })).collect::<Vec<_>>(),
                "notes": notes,
            }));
        } else {
            println!(
                "{} ({} · {} · {}): {}",
                integration.alias,
                integration.provider,
                integration.context.as_str(),
                integration.grant.name(),
                if ready {
                    "ready"
                } else {
                    "cannot be connected yet"
                }
            );
            for note in notes {
                println!("  - {note}");
            }
        }
    }
    if json {
        println!("{}", json!({"integrations": listed, "ready": all_ready}));
    }
    Ok(if all_ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
