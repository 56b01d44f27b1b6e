//! `switchyard datastores create|list|show|export|import|delete`: the data stores of a data
//! directory (or `--database-url`) that `datastore:*` modules read and write. Export and import
//! are JSON lines, one `{"key": …, "data": {…}}` a record; an import is all or nothing and
//! names the first line it refuses.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use super::admin::AdminArgs;
use crate::api::{datastore_json, parse_records, records_jsonl};
use crate::module::datastore::{DEFAULT_MAX_SIZE_BYTES, DataStore, parse_fields};
use crate::store::{NewDataStore, Store};

/// Records read from the database at a time by `export`.
const EXPORT_PAGE: u32 = 1000;

#[derive(Subcommand)]
pub enum DatastoresCommand {
    /// Creates a data store.
    Create {
        /// The store's name, as blueprints give it in `parameters.datastore`.
        name: String,
        /// The data structure: `name:type,…` with types text, number, boolean, date, array,
        /// collection, any (`name:type!` marks a required field). None: keys only.
        #[arg(long)]
        fields: Option<String>,
        /// The size limit in bytes (keys plus serialised data of every record).
        #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_SIZE_BYTES)]
        max_size: u64,
        /// The store's id (e.g. the number a Make export gives in `parameters.datastore`);
        /// a new one by default.
        #[arg(long)]
        id: Option<String>,
    },
    /// Lists the data stores (name, id, records, size).
    List,
    /// Shows one store: its structure, record count and size.
    Show { name: String },
    /// Prints every record as JSON lines (`{"key", "data"}`).
    Export { name: String },
    /// Adds or replaces records from a JSON lines file (`-`: standard input), all or none.
    Import { name: String, file: PathBuf },
    /// Deletes a store and its records.
    Delete { name: String },
}

pub async fn datastores(args: AdminArgs, command: DatastoresCommand) -> anyhow::Result<()> {
    let store = args.db.open().await?;
    let result = run(&store, args.json, command).await;
    store.close().await;
    result
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

fn structure(store: &DataStore) -> String {
    if store.fields.is_empty() {
        return "(keys only)".to_string();
    }
    store
        .fields
        .iter()
        .map(|f| format!("{}:{}{}", f.name, f.kind, if f.required { "!" } else { "" }))
        .collect::<Vec<_>>()
        .join(",")
}

async fn run(store: &Store, json_out: bool, command: DatastoresCommand) -> anyhow::Result<()> {
    match command {
        DatastoresCommand::Create {
            name,
            fields,
            max_size,
            id,
        } => {
            let fields = match fields {
                Some(spec) => parse_fields(&spec).map_err(|e| anyhow::anyhow!("--fields: {e}"))?,
                None => Vec::new(),
            };
            let created = store
                .create_datastore(NewDataStore {
                    name: &name,
                    id: id.as_deref(),
                    fields,
                    max_size_bytes: max_size,
                })
                .await?;
            print(json_out, &datastore_json(&created), || {
                format!(
                    "created data store {} ({}): {}, up to {} bytes",
                    created.name,
                    created.id,
                    structure(&created),
                    created.max_size_bytes
                )
            });
        }
        DatastoresCommand::List => {
            let stores = store.list_datastores().await?;
            let value =
                json!({"datastores": stores.iter().map(datastore_json).collect::<Vec<_>>()});
            print(json_out, &value, || {
                if stores.is_empty() {
                    return "no data stores".to_string();
                }
                let mut out = format!(
                    "{:<24} {:<34} {:>8} {:>22}",
                    "NAME", "ID", "RECORDS", "SIZE (BYTES)"
                );
                for s in &stores {
                    out.push_str(&format!(
                        "\n{:<24} {:<34} {:>8} {:>22}",
                        s.name,
                        s.id,
                        s.records,
                        format!("{}/{}", s.size_bytes, s.max_size_bytes)
                    ));
                }
                out
            });
        }
        DatastoresCommand::Show { name } => {
            let s = store.get_datastore(&name).await?;
            print(json_out, &datastore_json(&s), || {
                format!(
                    "name:      {}\nid:        {}\nfields:    {}\nrecords:   {}\nsize:      {} of {} bytes",
                    s.name,
                    s.id,
                    structure(&s),
                    s.records,
                    s.size_bytes,
                    s.max_size_bytes
                )
            });
        }
        DatastoresCommand::Export { name } => {
            let s = store.get_datastore(&name).await?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let mut after: Option<String> = None;
            loop {
                let page = store
                    .datastore_records_page(&s.id, after.as_deref(), EXPORT_PAGE)
                    .await?;
                out.write_all(records_jsonl(&page).as_bytes())?;
                if page.len() < EXPORT_PAGE as usize {
                    break;
                }
                after = page.last().map(|r| r.key.clone());
            }
            out.flush()?;
        }
        DatastoresCommand::Import { name, file } => {
            let s = store.get_datastore(&name).await?;
            let text = if file.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text)?;
                text
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let records =
                parse_records(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let imported = store
                .import_datastore_records(&s, records)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let s = store.get_datastore(&s.id).await?;
            let value = json!({"imported": imported, "datastore": datastore_json(&s)});
            print(json_out, &value, || {
                format!(
                    "imported {imported} record(s) into {}: {} records, {} of {} bytes",
                    s.name, s.records, s.size_bytes, s.max_size_bytes
                )
            });
        }
        DatastoresCommand::Delete { name } => {
            let deleted = store.delete_datastore(&name).await?;
            print(json_out, &datastore_json(&deleted), || {
                format!(
                    "deleted data store {} ({}) and its {} record(s)",
                    deleted.name, deleted.id, deleted.records
                )
            });
        }
    }
    Ok(())
}
