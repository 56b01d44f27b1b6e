//! `switchyard scenarios …` and `switchyard executions …`: manage the store directly
//! (the same database `serve` uses). Human output by default, `--json` for scripts.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::service::DatabaseArgs;
use crate::apps::AppRegistry;
use crate::catalog::{Catalog, CatalogOptions, Hook};
use crate::store::{ExecutionFilter, ExecutionStatus, Store};

#[derive(Subcommand)]
pub enum ScenariosCommand {
    /// Validates and stores scenario files, all or nothing: when any file is refused, none
    /// is stored (unless `--continue`), and every file's outcome is reported. A file whose
    /// scenario name is taken is refused, or with `--update` stored as that scenario's new
    /// version.
    Import {
        files: Vec<PathBuf>,
        /// Store the file as a new version of this scenario (one file only).
        #[arg(long, conflicts_with = "update")]
        id: Option<String>,
        /// A file named like a stored scenario becomes that scenario's new version.
        #[arg(long)]
        update: bool,
        /// Store the valid files even when others are refused.
        #[arg(long = "continue")]
        keep_going: bool,
    },
    List,
    /// Prints the blueprint JSON of a scenario's current version (or `--version N`), as
    /// `scenarios import` and Make's import take it.
    Export {
        /// The scenario's id or name.
        scenario: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Activates a scenario (by id or name): its triggers start.
    Activate {
        /// The scenario's id or name.
        id: String,
    },
    /// Deactivates a scenario (by id or name).
    Deactivate {
        /// The scenario's id or name.
        id: String,
    },
    /// A scenario's summary: its version, whether it is active (and why not, when Switchyard
    /// turned it off), its hooks and the warnings of its current version.
    Show {
        /// The scenario's id or name.
        scenario: String,
    },
    /// Deletes a scenario with its versions, hooks and executions (its instant trigger's
    /// registration on a service is removed first).
    Delete {
        /// The scenario's id or name.
        scenario: String,
    },
    /// Forgets a polling trigger's cursor: the next run starts afresh.
    ResetTrigger {
        /// The scenario's id or name.
        id: String,
    },
}

/// The id of the scenario `reference` names: its id, or else its name (which must be
/// unique: several scenarios of one name are listed by id).
pub async fn scenario_id(store: &Store, reference: &str) -> anyhow::Result<String> {
    match store.get_scenario(reference).await {
        Ok(row) => return Ok(row.id),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    let named: Vec<String> = store
        .list_scenarios()
        .await?
        .into_iter()
        .filter(|row| row.name == reference)
        .map(|row| row.id)
        .collect();
    match named.as_slice() {
        [id] => Ok(id.clone()),
        [] => anyhow::bail!(
            "no scenario has the id or name \"{reference}\" (`switchyard scenarios list` lists them)"
        ),
        ids => anyhow::bail!(
            "{} scenarios are named \"{reference}\": give one of their ids ({})",
            ids.len(),
            ids.join(", ")
        ),
    }
}

#[derive(Subcommand)]
pub enum ExecutionsCommand {
    List {
        /// Only this scenario's executions (its id or name).
        #[arg(long)]
        scenario: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// An execution's summary (per module: bundles produced, stored, omitted, …), or with
    /// `--module` one page of that module's stored output bundles.
    Show {
        id: String,
        /// Show this module's stored output bundles instead of the summary.
        #[arg(long)]
        module: Option<u32>,
        /// With `--module`: skip this many bundles.
        #[arg(long, default_value_t = 0, requires = "module")]
        offset: u64,
        /// With `--module`: show at most this many bundles.
        #[arg(long, default_value_t = crate::api::DEFAULT_PAGE, requires = "module",
              value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::api::MAX_PAGE)))]
        limit: u32,
        /// With `--module`: show the inputs of its first operations (its mapper, evaluated)
        /// instead of its output bundles.
        #[arg(long, requires = "module")]
        inputs: bool,
    },
    /// Queues a new execution with the same trigger payload.
    Retry { id: String },
}

#[derive(Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[arg(long, global = true)]
    pub json: bool,
    /// The base URL services reach the server's hooks at, needed to activate a scenario whose
    /// instant trigger registers its hook on a service (as `serve --public-url`).
    #[arg(long, global = true, env = "SWITCHYARD_PUBLIC_URL",
          value_parser = super::service::parse_public_url)]
    pub public_url: Option<String>,
}

fn print(json_out: bool, value: &Value, human: impl FnOnce() -> String) {
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        println!("{}", human());
    }
}

pub async fn scenarios(
    args: AdminArgs,
    command: ScenariosCommand,
    modules: Arc<AppRegistry>,
) -> anyhow::Result<()> {
    let store = args.db.open().await?;
    let vault = super::service::vault(&store, &args.db, &modules, None).await?;
    let options = CatalogOptions {
        public_url: args.public_url.clone(),
        services: super::service::services(&vault, &store),
        ..CatalogOptions::default()
    };
    let catalog = Catalog::new(store.clone(), modules, options);
    let result = scenarios_on(&catalog, args.json, command).await;
    store.close().await;
    result
}

fn hooks_json(hooks: &[Hook]) -> Value {
    hooks
        .iter()
        .map(|h| json!({"module": h.module, "url": h.path()}))
        .collect()
}

/// Where `scenarios import` stores each file.
enum ImportTarget {
    /// A new version of this scenario (`--id`).
    Scenario(String),
    /// A new scenario, or with `update` a new version of the one its name names.
    ByName { update: bool },
}

/// What importing one file will do, once every file is checked.
enum Planned {
    Create(String),
    Update { id: String, text: String },
}

/// Checks every file first (its JSON, its blueprint, where it goes), then stores them: all,
/// or none when one is refused unless `keep_going`. Prints each file's outcome; fails when
/// any file was refused.
async fn import_files(
    catalog: &Catalog,
    json_out: bool,
    files: &[PathBuf],
    target: &ImportTarget,
    keep_going: bool,
) -> anyhow::Result<()> {
    let stored_names = catalog.store().list_scenarios().await?;
    let mut plans: Vec<Result<Planned, String>> = Vec::with_capacity(files.len());
    let mut names_here: Vec<(String, &PathBuf)> = Vec::new();
    for file in files {
        plans.push(match plan_import(catalog, file, target, &stored_names) {
            Ok((name, plan)) => match names_here.iter().find(|(n, _)| *n == name) {
                Some((_, first)) if matches!(target, ImportTarget::ByName { .. }) => Err(format!(
                    "{} also has the scenario name \"{name}\": import one of them",
                    first.display()
                )),
                _ => {
                    names_here.push((name, file));
                    Ok(plan)
                }
            },
            Err(problem) => Err(problem),
        });
    }
    let refused = plans.iter().filter(|p| p.is_err()).count();
    let store_any = refused == 0 || keep_going;
    let (mut imported, mut refusals, mut lines) = (Vec::new(), Vec::new(), Vec::new());
    for (file, plan) in files.iter().zip(plans) {
        let shown = file.display().to_string();
        let plan = match plan {
            Ok(plan) if store_any => plan,
            Ok(_) => {
                lines.push(format!("{shown}: valid, not imported"));
                continue;
            }
            Err(problem) => {
                lines.push(format!("{shown}: refused: {problem}"));
                refusals.push(json!({"file": shown, "error": problem}));
                continue;
            }
        };
        let stored = match plan {
            Planned::Create(text) => catalog.create(&text).await,
            Planned::Update { id, text } => catalog.update(&id, &text).await,
        };
        let stored = match stored {
            Ok(stored) => stored,
            Err(e) => {
                lines.push(format!("{shown}: refused: {e}"));
                refusals.push(json!({"file": shown, "error": e.to_string()}));
                continue;
            }
        };
        lines.push(format!(
            "{shown} → scenario {} (version {}){}",
            stored.id,
            stored.version,
            hooks_text(&stored.hooks)
        ));
        lines.extend(stored.warnings.iter().map(|w| format!("  warning: {w}")));
        imported.push(
            json!({"file": shown, "id": stored.id, "version": stored.version,
            "hooks": hooks_json(&stored.hooks), "warnings": stored.warnings}),
        );
    }
    let failed = refusals.len();
    print(
        json_out,
        &json!({"imported": imported, "refused": refusals}),
        || lines.join("\n"),
    );
    match (failed, store_any) {
        (0, _) => Ok(()),
        (n, false) => anyhow::bail!(
            "nothing imported: {n} of {} files refused (`--continue` imports the others)",
            files.len()
        ),
        (n, true) => anyhow::bail!("{n} of {} files refused", files.len()),
    }
}

/// Reads and checks one file and decides where it goes: its scenario name and plan, or why
/// it is refused.
fn plan_import(
    catalog: &Catalog,
    file: &std::path::Path,
    target: &ImportTarget,
    stored: &[crate::store::ScenarioRow],
) -> Result<(String, Planned), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read it: {e}"))?;
    let (blueprint, _) = catalog
        .check(crate::scenario::without_bom(&text))
        .map_err(|e| e.to_string())?;
    let name = blueprint.name;
    let update = match target {
        ImportTarget::Scenario(id) => {
            return Ok((
                name,
                Planned::Update {
                    id: id.clone(),
                    text,
                },
            ));
        }
        ImportTarget::ByName { update } => *update,
    };
    let named: Vec<&str> = stored
        .iter()
        .filter(|row| row.name == name)
        .map(|row| row.id.as_str())
        .collect();
    match (named.as_slice(), update) {
        ([], _) => Ok((name, Planned::Create(text))),
        ([id], true) => Ok((
            name,
            Planned::Update {
                id: id.to_string(),
                text,
            },
        )),
        ([id], false) => Err(format!(
            "a scenario named \"{name}\" exists ({id}): `--update` stores this file as its new \
             version"
        )),
        (ids, _) => Err(format!(
            "{} scenarios are named \"{name}\" ({}): give one with `--id`",
            ids.len(),
            ids.join(", ")
        )),
    }
}

/// `  hook /hooks/…` for a human line (nothing without hooks).
fn hooks_text(hooks: &[Hook]) -> String {
    hooks
        .iter()
        .map(|h| format!("  hook {}", h.path()))
        .collect()
}

async fn scenarios_on(
    catalog: &Catalog,
    json_out: bool,
    command: ScenariosCommand,
) -> anyhow::Result<()> {
    match command {
        ScenariosCommand::Import {
            files,
            id,
            update,
            keep_going,
        } => {
            if id.is_some() && files.len() != 1 {
                anyhow::bail!("--id updates one scenario: give exactly one file");
            }
            let target = match id {
                Some(id) => ImportTarget::Scenario(scenario_id(catalog.store(), &id).await?),
                None if update => ImportTarget::ByName { update: true },
                None => ImportTarget::ByName { update: false },
            };
            import_files(catalog, json_out, &files, &target, keep_going).await?;
        }
        ScenariosCommand::List => {
            let rows = catalog.store().list_scenarios().await?;
            let mut listed = Vec::with_capacity(rows.len());
            for row in rows {
                let hooks = catalog.hooks(&row.id).await?;
                listed.push((row, hooks));
            }
            let value = json!({"scenarios": listed.iter().map(|(r, hooks)| json!({"id": r.id, "name": r.name, "version": r.version, "active": r.active, "hooks": hooks_json(hooks)})).collect::<Vec<_>>()});
            print(json_out, &value, || {
                listed
                    .iter()
                    .map(|(r, hooks)| {
                        format!(
                            "{}  v{}  {}  {}{}",
                            r.id,
                            r.version,
                            if r.active { "active  " } else { "inactive" },
                            r.name,
                            hooks_text(hooks)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ScenariosCommand::Export { scenario, version } => {
            let id = scenario_id(catalog.store(), &scenario).await?;
            let version = match version {
                Some(v) => v,
                None => catalog.store().get_scenario(&id).await?.version,
            };
            let stored = catalog.store().get_version(&id, version).await?;
            // The blueprint as stored, pretty-printed (it was valid JSON when it was stored).
            let blueprint: Value = serde_json::from_str(&stored.blueprint)?;
            println!("{}", serde_json::to_string_pretty(&blueprint)?);
        }
        ScenariosCommand::Activate { id } => {
            let id = scenario_id(catalog.store(), &id).await?;
            catalog.set_active(&id, true).await?;
            print(json_out, &json!({"id": id, "active": true}), || {
                format!("scenario {id} activated")
            });
        }
        ScenariosCommand::Deactivate { id } => {
            let id = scenario_id(catalog.store(), &id).await?;
            catalog.set_active(&id, false).await?;
            print(json_out, &json!({"id": id, "active": false}), || {
                format!("scenario {id} deactivated")
            });
        }
        ScenariosCommand::Show { scenario } => {
            let id = scenario_id(catalog.store(), &scenario).await?;
            let row = catalog.store().get_scenario(&id).await?;
            let hooks = catalog.hooks(&id).await?;
            let warnings = match catalog.compiled(&id, row.version).await? {
                Ok(compiled) => catalog.warnings(&compiled).await?,
                Err(e) => e.problems(),
            };
            let value = json!({"id": id, "name": row.name, "version": row.version,
                "active": row.active, "deactivatedReason": row.deactivated_reason,
                "hooks": hooks_json(&hooks), "warnings": warnings});
            print(json_out, &value, || {
                let mut lines = vec![
                    format!("{}  {}", row.id, row.name),
                    format!(
                        "version {} · {}",
                        row.version,
                        if row.active { "active" } else { "inactive" }
                    ),
                ];
                lines.extend(
                    row.deactivated_reason
                        .iter()
                        .map(|r| format!("turned off: {r}")),
                );
                lines.extend(hooks.iter().map(|h| format!("hook {}", h.path())));
                lines.extend(warnings.iter().map(|w| format!("warning: {w}")));
                lines.join("\n")
            });
        }
        ScenariosCommand::Delete { scenario } => {
            let id = scenario_id(catalog.store(), &scenario).await?;
            catalog.delete(&id).await?;
            print(json_out, &json!({"id": id, "deleted": true}), || {
                format!("scenario {id} deleted")
            });
        }
        ScenariosCommand::ResetTrigger { id } => {
            let id = scenario_id(catalog.store(), &id).await?;
            let (key, reset) = catalog.reset_trigger(&id).await?;
            print(
                json_out,
                &json!({"id": id, "trigger": key, "reset": reset}),
                || {
                    if reset {
                        format!("trigger {key} of scenario {id} reset")
                    } else {
                        format!("trigger {key} of scenario {id} had no state")
                    }
                },
            );
        }
    }
    Ok(())
}

pub async fn executions(args: AdminArgs, command: ExecutionsCommand) -> anyhow::Result<()> {
    let store = args.db.open().await?;
    let result = executions_on(&store, args.json, command).await;
    store.close().await;
    result
}

async fn executions_on(
    store: &Store,
    json_out: bool,
    command: ExecutionsCommand,
) -> anyhow::Result<()> {
    match command {
        ExecutionsCommand::List {
            scenario,
            status,
            limit,
        } => {
            let status = status
                .as_deref()
                .map(ExecutionStatus::from_str)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--status: {e}"))?;
            let scenario_id = match &scenario {
                Some(reference) => Some(self::scenario_id(store, reference).await?),
                None => None,
            };
            let rows = store
                .list_executions(&ExecutionFilter {
                    scenario_id,
                    status,
                    limit,
                    before: None,
                })
                .await?;
            let value = json!({"executions": rows.iter().map(|e| json!({"id": e.id, "scenarioId": e.scenario_id, "status": e.status.as_str(), "operations": e.operations, "createdAt": crate::api::rfc3339(e.created_at)})).collect::<Vec<_>>()});
            print(json_out, &value, || {
                rows.iter()
                    .map(|e| {
                        format!(
                            "{}  {:<10}  {:>5} ops  scenario {}",
                            e.id,
                            e.status.as_str(),
                            e.operations,
                            e.scenario_id
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ExecutionsCommand::Show {
            id,
            module: Some(module),
            offset,
            limit,
            inputs,
        } => {
            let e = store.get_execution(&id).await?;
            let side = match inputs {
                true => crate::api::Bundles::Input,
                false => crate::api::Bundles::Output,
            };
            let page = crate::api::PageRequest {
                module,
                offset,
                limit,
                bundles: side,
            };
            let value = crate::api::module_page(store, &e, page).await?;
            print(json_out, &value, || {
                let bundles = value["bundles"].as_array().map_or(&[][..], Vec::as_slice);
                let mut s = format!(
                    "module {module} of execution {}: {} bundles {}–{} of {} stored",
                    e.id,
                    side.key(),
                    offset.saturating_add(u64::from(!bundles.is_empty())),
                    offset.saturating_add(bundles.len() as u64),
                    value["total"]
                );
                for bundle in bundles {
                    s.push_str(&format!("\n#{}  {}", bundle["seq"], bundle[side.key()]));
                }
                if let Some(next) = value["next"].as_u64() {
                    s.push_str(&format!("\nmore: --offset {next}"));
                }
                s
            });
        }
        ExecutionsCommand::Show { id, .. } => {
            let e = store.get_execution(&id).await?;
            let value = crate::api::execution_report(store, &e).await?;
            print(json_out, &value, || {
                let mut s = format!(
                    "execution {} of scenario {} (v{}): {} · {} operations · {} cycles",
                    e.id,
                    e.scenario_id,
                    e.version,
                    e.status.as_str(),
                    e.operations,
                    e.cycles
                );
                if let Some(err) = &e.error {
                    s.push_str(&format!("\nerror: {err}"));
                }
                let modules = value["modules"].as_array().map_or(&[][..], Vec::as_slice);
                let count = |m: &Value, key: &str| m[key].as_u64().unwrap_or(0);
                let stored: u64 = modules.iter().map(|m| count(m, "stored")).sum();
                s.push_str(&format!("\n{stored} output bundles stored"));
                for m in modules {
                    let mut line =
                        format!("\nmodule {}: {} stored", m["module"], count(m, "stored"));
                    if let Some(bundles) = m["bundles"].as_u64() {
                        line.push_str(&format!(" of {bundles} bundles"));
                    }
                    for key in ["omitted", "truncated", "errors", "filtered"] {
                        if count(m, key) > 0 {
                            line.push_str(&format!(", {} {key}", count(m, key)));
                        }
                    }
                    s.push_str(&line);
                }
                s
            });
        }
        ExecutionsCommand::Retry { id } => {
            let e = store.get_execution(&id).await?;
            let queue = crate::queue::Queue::new(store, crate::queue::QueueOptions::default());
            let execution_id = crate::queue::retry::rerun(&queue, &e).await?;
            print(json_out, &json!({"executionId": execution_id}), || {
                format!("queued execution {execution_id}")
            });
        }
    }
    Ok(())
}
