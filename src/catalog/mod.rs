//! The scenario catalog: the one place where stored scenarios are created, edited,
//! (de)activated and deleted, and where a stored version becomes a runnable [`Scenario`].
//! The API, the CLI's admin commands, `serve --import`, the scheduler and the runner all go
//! through it, so each rule lives once:
//!
//! - **Compile options.** A new blueprint is checked with the deployment's options
//!   (`indefinitely` intervals down to [`CatalogOptions::min_interval`]); a stored version
//!   was checked when it was stored, so it is compiled again without that minimum (the
//!   scheduler applies its own when it computes run times).
//! - **One compiled scenario per version and process** ([`Catalog::compiled`]): versions
//!   never change once stored, so the cache needs no invalidation.
//! - **Hooks follow the current version.** Storing a version whose first module receives
//!   webhooks ensures that module's hook (the same URL across edits) and detaches the hooks
//!   of modules it no longer has ([`Catalog::create`], [`Catalog::update`]).
//! - **Changes are announced**: whoever plans work from the stored scenarios (the
//!   scheduler) is woken through [`Catalog::changes`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::module::Registry;
use crate::scenario::{self, Blueprint, CompileOptions, LoadError, Scenario};
use crate::store::{ScenarioRow, Store, StoreError};

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The blueprint is not valid: every problem, each with its JSON path.
    #[error(transparent)]
    Invalid(#[from] LoadError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CatalogError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, CatalogError::Store(e) if e.is_not_found())
    }
}

/// Deployment settings for new blueprints.
#[derive(Debug, Clone)]
pub struct CatalogOptions {
    /// Smallest `indefinitely` interval, in seconds, accepted from new blueprints (Make's
    /// minimum unless `serve --min-interval-seconds` lowers it).
    pub min_interval: u64,
}

impl Default for CatalogOptions {
    fn default() -> Self {
        CatalogOptions {
            min_interval: scenario::schedule::MIN_INTERVAL_SECONDS,
        }
    }
}

/// A webhook URL of a scenario: deliveries to `/hooks/{id}` start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// The module that receives the deliveries.
    pub module: u32,
    /// The secret part of the URL.
    pub id: String,
}

impl Hook {
    /// The hook's URL path, `/hooks/{id}`.
    pub fn path(&self) -> String {
        format!("/hooks/{}", self.id)
    }
}

/// A version just stored, with the hooks of that version.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: String,
    pub version: u32,
    pub name: String,
    pub hooks: Vec<Hook>,
}

/// The catalog; cheap to clone (clones share the compiled cache).
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    registry: Arc<dyn Registry>,
    options: CatalogOptions,
    compiled: Mutex<HashMap<(String, u32), Arc<Scenario>>>,
    changes: Arc<Notify>,
}

impl Catalog {
    /// A catalog of `store`'s scenarios whose modules come from `registry`.
    pub fn new(store: Store, registry: Arc<dyn Registry>, options: CatalogOptions) -> Catalog {
        Catalog {
            inner: Arc::new(Inner {
                store,
                registry,
                options,
                compiled: Mutex::new(HashMap::new()),
                changes: Arc::new(Notify::new()),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.inner.registry
    }

    /// Notified whenever a scenario is created, edited, (de)activated or deleted here.
    pub fn changes(&self) -> Arc<Notify> {
        self.inner.changes.clone()
    }

    /// Parses and checks a new blueprint with the deployment's options.
    pub fn check(&self, text: &str) -> Result<(Blueprint, Scenario), LoadError> {
        let blueprint = scenario::parse(text)?;
        if let Some(problem) = name_problem(&blueprint.name) {
            return Err(LoadError::Invalid(vec![scenario::Problem {
                path: "name".into(),
                message: problem,
            }]));
        }
        let options = CompileOptions {
            min_interval: self.inner.options.min_interval,
        };
        let compiled = scenario::compile_with(&blueprint, self.inner.registry.as_ref(), &options)?;
        Ok((blueprint, compiled))
    }

    /// Stores a new scenario from blueprint text (checked first) with its hooks.
    pub async fn create(&self, text: &str) -> Result<Stored, CatalogError> {
        let (blueprint, compiled) = self.check(text)?;
        let (id, version) = self.store().create_scenario(&blueprint.name, text).await?;
        self.stored(id, version, blueprint.name, compiled).await
    }

    /// Stores a new version of scenario `id` (checked first); its hooks follow it.
    pub async fn update(&self, id: &str, text: &str) -> Result<Stored, CatalogError> {
        self.store().get_scenario(id).await?;
        let (blueprint, compiled) = self.check(text)?;
        let version = self.store().update_scenario(id, text).await?;
        self.stored(id.to_string(), version, blueprint.name, compiled)
            .await
    }

    /// After a version is stored: its hooks, its compiled form cached, the news told.
    async fn stored(
        &self,
        id: String,
        version: u32,
        name: String,
        compiled: Scenario,
    ) -> Result<Stored, CatalogError> {
        let hooks = self.sync_hooks(&id, &compiled).await?;
        if let Ok(mut cache) = self.inner.compiled.lock() {
            cache.insert((id.clone(), version), Arc::new(compiled));
        }
        self.inner.changes.notify_one();
        Ok(Stored {
            id,
            version,
            name,
            hooks,
        })
    }

    /// Ensures the hook of the version's webhook trigger and detaches every other.
    async fn sync_hooks(&self, id: &str, scenario: &Scenario) -> Result<Vec<Hook>, StoreError> {
        let mut keep = Vec::new();
        let mut hooks = Vec::new();
        if let Some(trigger) = scenario.webhook_trigger() {
            let hook = self.store().ensure_hook(id, trigger.id).await?;
            keep.push(trigger.id);
            hooks.push(Hook {
                module: trigger.id,
                id: hook,
            });
        }
        self.store().retire_hooks(id, &keep).await?;
        Ok(hooks)
    }

    /// The scenario's attached hooks (the ones its current version receives on).
    pub async fn hooks(&self, id: &str) -> Result<Vec<Hook>, StoreError> {
        Ok(self
            .store()
            .hooks_for(id)
            .await?
            .into_iter()
            .filter(|h| h.attached)
            .map(|h| Hook {
                module: h.module_id,
                id: h.id,
            })
            .collect())
    }

    /// Activates or deactivates scenario `id`; its row afterwards.
    pub async fn set_active(&self, id: &str, active: bool) -> Result<ScenarioRow, StoreError> {
        self.store().set_active(id, active).await?;
        self.inner.changes.notify_one();
        self.store().get_scenario(id).await
    }

    /// Deletes scenario `id` with its versions, hooks and executions.
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.store().delete_scenario(id).await?;
        if let Ok(mut cache) = self.inner.compiled.lock() {
            cache.retain(|(scenario, _), _| scenario != id);
        }
        self.inner.changes.notify_one();
        Ok(())
    }

    /// Scenario `id` at `version`, compiled once per process; `Err(problems)` inside when the
    /// stored blueprint no longer compiles (a module type this build lacks, say).
    pub async fn compiled(
        &self,
        id: &str,
        version: u32,
    ) -> Result<Result<Arc<Scenario>, LoadError>, StoreError> {
        let key = (id.to_string(), version);
        if let Some(s) = self.cached(&key) {
            return Ok(Ok(s));
        }
        let stored = self.store().get_version(id, version).await?;
        let compiled = scenario::parse(&stored.blueprint).and_then(|b| {
            scenario::compile_with(
                &b,
                self.inner.registry.as_ref(),
                &CompileOptions { min_interval: 1 },
            )
        });
        Ok(compiled.map(|s| {
            let s = Arc::new(s);
            if let Ok(mut cache) = self.inner.compiled.lock() {
                cache.insert(key, s.clone());
            }
            s
        }))
    }

    /// The current version of scenario `id`, compiled.
    pub async fn current(&self, id: &str) -> Result<Result<Arc<Scenario>, LoadError>, StoreError> {
        let row = self.store().get_scenario(id).await?;
        self.compiled(id, row.version).await
    }

    fn cached(&self, key: &(String, u32)) -> Option<Arc<Scenario>> {
        self.inner.compiled.lock().ok()?.get(key).cloned()
    }

    /// Forgets the polling-trigger state of scenario `id`'s current version: its next run
    /// starts afresh. Returns the trigger's key and whether there was state to forget.
    pub async fn reset_trigger(&self, id: &str) -> Result<(String, bool), CatalogError> {
        let scenario = self.current(id).await??;
        let key = scenario.trigger_key();
        let reset = self.store().reset_trigger_state(id, &key).await?;
        Ok((key, reset))
    }

    /// Imports every `*.json` file of `dir`, in name order, as new scenarios with their
    /// hooks: each file's outcome, an invalid one's problems included (the others are
    /// imported all the same). A folder or file that cannot be read is an I/O error.
    pub async fn import_dir(
        &self,
        dir: &std::path::Path,
    ) -> std::io::Result<Vec<(std::path::PathBuf, Result<Stored, CatalogError>)>> {
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        let mut out = Vec::with_capacity(files.len());
        for file in files {
            let text = std::fs::read_to_string(&file)?;
            let result = self.create(&text).await;
            out.push((file, result));
        }
        Ok(out)
    }
}

/// Why `name` cannot name a stored scenario, if it cannot: it must have a visible character,
/// no control characters, and at most [`crate::store::MAX_NAME_BYTES`] bytes.
fn name_problem(name: &str) -> Option<String> {
    let max = crate::store::MAX_NAME_BYTES;
    if name.trim().is_empty() {
        Some("a stored scenario needs a name (a non-empty \"name\")".into())
    } else if name.len() > max {
        Some(format!(
            "the name is {} bytes long; at most {max} are allowed",
            name.len()
        ))
    } else {
        name.chars().find(|c| c.is_control()).map(|c| {
            format!(
                "the name contains the control character U+{:04X}; names are one line of text",
                u32::from(c)
            )
        })
    }
}
