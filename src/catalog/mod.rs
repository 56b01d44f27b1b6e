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
//! - **Instant triggers are registered while active.** Activating a scenario whose trigger
//!   is an app's instant trigger registers its hook URL on the service (`attach`) before the
//!   scenario is marked active — a failed registration leaves it inactive — and keeps what the
//!   service answered with the hook; deactivating or deleting it removes the registration
//!   (`detach`), and so does an edit of an active scenario that changes the trigger (the new
//!   one is registered in its place). The service reaches the hook at
//!   [`CatalogOptions::public_url`] `/hooks/{id}`.
//! - **Missing connections and data stores are warnings when stored** ([`missing_references`]):
//!   an export loads before its designer creates them, as in Make.
//! - **A mailhook's hook has an address**, `<hook id>@<`[`CatalogOptions::mail_domain`]`>`,
//!   listed with its URL (which also takes the raw message).
//! - **Changes are announced**: whoever plans work from the stored scenarios (the
//!   scheduler) is woken through [`Catalog::changes`].

pub mod references;

pub use references::missing_references;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::module::{ExecutionContext, Extensions, HookTarget, Module, ModuleError, Registry};
use crate::scenario::compiled::CompiledNode;
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
    /// The scenario names stored connections or data stores that do not exist, or
    /// connections of another app or kind than its modules need: every problem, each at its
    /// JSON path (the scenario stays inactive).
    #[error("the scenario cannot be activated: {}", references::describe(.0))]
    References(Vec<references::ReferenceProblem>),
    /// An instant trigger's hook could not be registered on its service (the scenario stays
    /// inactive), or could not be registered there without a public URL.
    #[error("module {module} ({app}) could not register its webhook: {error}")]
    Attach {
        module: u32,
        app: String,
        error: ModuleError,
    },
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
    /// The base URL external services reach this deployment's hooks at (`serve
    /// --public-url`, else the address `serve` listens on), without a trailing slash.
    /// `None`: scenarios whose trigger registers its hook on a service cannot be activated.
    pub public_url: Option<String>,
    /// Services of higher layers that modules need outside executions too (the connections
    /// an instant trigger registers its hook with).
    pub services: Extensions,
    /// The domain mailhooks receive mail at (`serve --mail-domain`): a mailhook's address is
    /// `<hook id>@<domain>`. `None`: mailhooks have no address (their URL still takes mail).
    pub mail_domain: Option<String>,
}

impl Default for CatalogOptions {
    fn default() -> Self {
        CatalogOptions {
            min_interval: scenario::schedule::MIN_INTERVAL_SECONDS,
            public_url: None,
            services: Extensions::default(),
            mail_domain: None,
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
    /// A mailhook's e-mail address, `<id>@<mail domain>`, when the deployment has a mail
    /// domain; `None` for every other hook.
    pub address: Option<String>,
}

impl Hook {
    /// The hook's URL path, `/hooks/{id}`.
    pub fn path(&self) -> String {
        format!("/hooks/{}", self.id)
    }

    /// The verification token of hook `id` handed to services that echo one back: derived
    /// from the hook's secret, so it needs no storage, and does not reveal it.
    pub fn token(id: &str) -> String {
        let digest = Sha256::digest(format!("switchyard hook token\0{id}"));
        hex::encode(&digest[..16])
    }
}

/// A version just stored, with the hooks of that version.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: String,
    pub version: u32,
    pub name: String,
    pub hooks: Vec<Hook>,
    /// What loading found that does not stop the scenario from running (unknown keys,
    /// skipped placeholders …), each with its JSON path.
    pub warnings: Vec<scenario::Problem>,
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

    /// The services of higher layers modules are handed (the connections), for
    /// registrations here and for every execution the runner starts.
    pub fn services(&self) -> &Extensions {
        &self.inner.options.services
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
        let text = scenario::without_bom(text);
        let (blueprint, compiled) = self.check(text)?;
        let (id, version) = self.store().create_scenario(&blueprint.name, text).await?;
        self.stored(id, version, blueprint.name, compiled).await
    }

    /// Stores a new version of scenario `id` (checked first); its hooks follow it. When the
    /// scenario is active and the new version's instant trigger differs from the old one's,
    /// the old registration is removed and the new one made.
    pub async fn update(&self, id: &str, text: &str) -> Result<Stored, CatalogError> {
        let row = self.store().get_scenario(id).await?;
        let text = scenario::without_bom(text);
        let (blueprint, compiled) = self.check(text)?;
        let previous = if row.active {
            self.compiled(id, row.version).await?.ok()
        } else {
            None
        };
        let changed = previous.as_ref().is_some_and(|old| {
            let key = |s: &Scenario| {
                s.webhook_trigger()
                    .map(|n| (n.id, n.module.clone(), n.configuration()))
            };
            key(old) != key(&compiled)
        });
        if changed && let Some(old) = &previous {
            self.detach(id, old).await?;
        }
        let version = self.store().update_scenario(id, text).await?;
        let stored = self
            .stored(id.to_string(), version, blueprint.name, compiled)
            .await?;
        if changed {
            let current = self
                .compiled(id, version)
                .await?
                .map_err(CatalogError::Invalid)?;
            if let Err(e) = self.attach(id, &current).await {
                // Not receiving events while shown as active would be worse than inactive.
                self.store().set_active(id, false).await?;
                self.inner.changes.notify_one();
                return Err(e);
            }
        }
        Ok(stored)
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
        let warnings = self.warnings(&compiled).await?;
        if let Ok(mut cache) = self.inner.compiled.lock() {
            cache.insert((id.clone(), version), Arc::new(compiled));
        }
        self.inner.changes.notify_one();
        Ok(Stored {
            id,
            version,
            name,
            hooks,
            warnings,
        })
    }

    /// What a checked scenario would be stored with, but deserves a look: its compile
    /// warnings (misspelt keys, placeholders …) and the connections and data stores it names
    /// that do not exist. The import forms show them before storing; the scenario page keeps
    /// showing them.
    pub async fn warnings(
        &self,
        compiled: &Scenario,
    ) -> Result<Vec<scenario::Problem>, StoreError> {
        let mut warnings = compiled.warnings.clone();
        warnings.extend(missing_references(Some(self.store()), compiled).await?);
        Ok(warnings)
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
                address: self.mail_address(scenario, trigger.id, &hook),
                id: hook,
            });
        }
        self.store().retire_hooks(id, &keep).await?;
        Ok(hooks)
    }

    /// The scenario's attached hooks (the ones its current version receives on).
    pub async fn hooks(&self, id: &str) -> Result<Vec<Hook>, StoreError> {
        let rows = self.store().hooks_for(id).await?;
        // Only a mailhook's hook has an address: the current version says which one is.
        let current = match self.inner.options.mail_domain {
            Some(_) if rows.iter().any(|h| h.attached) => {
                let row = self.store().get_scenario(id).await?;
                self.compiled(id, row.version).await?.ok()
            }
            _ => None,
        };
        Ok(rows
            .into_iter()
            .filter(|h| h.attached)
            .map(|h| Hook {
                module: h.module_id,
                address: current
                    .as_deref()
                    .and_then(|s| self.mail_address(s, h.module_id, &h.id)),
                id: h.id,
            })
            .collect())
    }

    /// The address of hook `hook_id` of module `module` when that module is `scenario`'s
    /// mailhook and the deployment has a mail domain.
    fn mail_address(&self, scenario: &Scenario, module: u32, hook_id: &str) -> Option<String> {
        let domain = self.inner.options.mail_domain.as_deref()?;
        scenario
            .mail_trigger()
            .filter(|node| node.id == module)
            .map(|_| format!("{hook_id}@{domain}"))
    }

    /// Activates or deactivates scenario `id`; its row afterwards. An instant trigger's hook is
    /// registered on its service before the scenario becomes active (an error leaves it
    /// inactive) and removed after it stops being active.
    pub async fn set_active(&self, id: &str, active: bool) -> Result<ScenarioRow, CatalogError> {
        let row = self.store().get_scenario(id).await?;
        let current = self.compiled(id, row.version).await?.ok();
        if active && let Some(scenario) = &current {
            let services = &self.inner.options.services;
            let problems = references::check(
                scenario,
                services.get::<crate::module::ConnectionsHandle>(),
                services.get::<crate::module::DataStoresHandle>(),
            )
            .await;
            if !problems.is_empty() {
                return Err(CatalogError::References(problems));
            }
            self.attach(id, scenario).await?;
        }
        self.store().set_active(id, active).await?;
        self.inner.changes.notify_one();
        if !active && let Some(scenario) = &current {
            self.detach(id, scenario).await?;
        }
        Ok(self.store().get_scenario(id).await?)
    }

    /// Turns scenario `id` off, as Make does, once its last `maxErrors` executions (the
    /// setting of `scenario`, the version that just ran) all ended with an error — whatever
    /// its trigger, instant ones included. Records why (shown by the API and the console),
    /// stops its schedule and removes its instant trigger's registration. Returns the reason
    /// when this call turned it off; `maxErrors: 0` never does.
    pub async fn deactivate_after_errors(
        &self,
        id: &str,
        scenario: &Scenario,
    ) -> Result<Option<String>, CatalogError> {
        let max_errors = scenario.settings.max_errors;
        let plural = if max_errors == 1 { "" } else { "s" };
        let reason = format!(
            "turned off after {max_errors} consecutive execution{plural} ended with an error \
             (maxErrors {max_errors})"
        );
        if !self
            .store()
            .deactivate_after_errors(id, max_errors, &reason)
            .await?
        {
            return Ok(None);
        }
        tracing::warn!(scenario = id, max_errors, "{reason}");
        self.inner.changes.notify_one();
        self.detach(id, scenario).await?;
        Ok(Some(reason))
    }

    /// The registration of `scenario`'s instant trigger, when its first module is one: the
    /// module, its configuration, its hook and the context a registration call runs in.
    async fn registration<'s>(
        &self,
        id: &str,
        scenario: &'s Scenario,
    ) -> Result<Option<Registration<'s>>, StoreError> {
        let Some(node) = scenario.webhook_trigger() else {
            return Ok(None);
        };
        let Some(module) = self.registry().module(&node.module) else {
            return Ok(None);
        };
        if module.instant().is_none() {
            return Ok(None);
        }
        let hook = self
            .store()
            .hooks_for(id)
            .await?
            .into_iter()
            .find(|h| h.module_id == node.id);
        Ok(hook.map(|hook| Registration {
            token: Hook::token(&hook.id),
            url: self.hook_url(&hook.id),
            context: ExecutionContext {
                execution_id: String::new(),
                scenario_id: Some(id.to_string()),
                extensions: self.inner.options.services.clone(),
            },
            configuration: node.configuration(),
            node,
            module,
            hook,
        }))
    }

    /// The base URL the service is reached at (`--public-url`), when known.
    pub fn public_url(&self) -> Option<&str> {
        self.inner.options.public_url.as_deref()
    }

    /// The URL a service calls for hook `hook_id`, when the public URL is known.
    pub fn hook_url(&self, hook_id: &str) -> Option<String> {
        let base = self.inner.options.public_url.as_deref()?;
        Some(format!("{}/hooks/{hook_id}", base.trim_end_matches('/')))
    }

    /// Registers the hook of `scenario`'s instant trigger on its service (again, when an
    /// earlier registration is recorded: it is removed first) and records the answer.
    async fn attach(&self, id: &str, scenario: &Scenario) -> Result<(), CatalogError> {
        let Some(r) = self.registration(id, scenario).await? else {
            return Ok(());
        };
        let Some(trigger) = r.module.instant() else {
            return Ok(());
        };
        if r.hook.attachment.is_some() {
            self.detach(id, scenario).await?;
        }
        let Some(url) = &r.url else {
            return Err(r.failed(ModuleError::config(
                "the service needs this deployment's public URL to call the webhook: \
                 start `switchyard serve` with --public-url URL (or pass it to this command)",
            )));
        };
        let target = HookTarget {
            url,
            token: &r.token,
            data: &Value::Null,
        };
        let attachment = trigger
            .attach(&r.configuration, target, &r.context)
            .await
            .map_err(|e| r.failed(e))?;
        self.store()
            .set_hook_attachment(&r.hook.id, Some(&attachment))
            .await?;
        tracing::info!(scenario = id, module = r.node.id, app = %r.node.module, "webhook registered");
        Ok(())
    }

    /// Removes the registration recorded for `scenario`'s instant trigger, if any. A service
    /// that no longer knows the hook (404) counts as removed.
    async fn detach(&self, id: &str, scenario: &Scenario) -> Result<(), CatalogError> {
        let Some(r) = self.registration(id, scenario).await? else {
            return Ok(());
        };
        let (Some(trigger), Some(attachment), Some(url)) =
            (r.module.instant(), &r.hook.attachment, &r.url)
        else {
            return Ok(());
        };
        let target = HookTarget {
            url,
            token: &r.token,
            data: attachment,
        };
        match trigger.detach(&r.configuration, target, &r.context).await {
            Ok(()) => {}
            Err(error) if error.status() == Some(404) => {}
            Err(error) => return Err(r.failed(error)),
        }
        self.store().set_hook_attachment(&r.hook.id, None).await?;
        tracing::info!(scenario = id, module = r.node.id, app = %r.node.module, "webhook removed");
        Ok(())
    }

    /// Deletes scenario `id` with its versions, hooks and executions, removing its instant
    /// trigger's registration first.
    pub async fn delete(&self, id: &str) -> Result<(), CatalogError> {
        let row = self.store().get_scenario(id).await?;
        if let Ok(scenario) = self.compiled(id, row.version).await? {
            self.detach(id, &scenario).await?;
        }
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

/// What registering an instant trigger's hook on its service needs.
struct Registration<'s> {
    node: &'s CompiledNode,
    module: Arc<dyn Module>,
    /// Its parameters and static mapper fields (`CompiledNode::configuration`).
    configuration: serde_json::Map<String, Value>,
    hook: crate::store::HookRow,
    url: Option<String>,
    token: String,
    context: ExecutionContext,
}

impl Registration<'_> {
    fn failed(&self, error: ModuleError) -> CatalogError {
        CatalogError::Attach {
            module: self.node.id,
            app: self.node.module.clone(),
            error,
        }
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
