//! The stored resources a scenario's modules name — connections and data stores — checked
//! against what exists, in one place for the two moments that need it:
//!
//! - **When a scenario is stored or validated** ([`missing_references`]): Make imports an
//!   export before its designer creates its connections, so a missing one is a *warning*
//!   naming the module's path and the command that creates it (`validate`, `scenarios
//!   import`, `serve --import`, the API and the console's import).
//! - **When it is activated, or run by `switchyard run`** ([`check`]): every missing or
//!   mismatched reference (a connection of another app or kind) is an error, all of them at
//!   once with their JSON paths (API 422, console, admin CLI through
//!   [`Catalog::set_active`](super::Catalog::set_active); `run` exits non-zero), so a
//!   wrong connection is found once instead of by each execution that reaches the module.
//!
//! Invariants: both read metadata only (names, apps, kinds), never unseal a connection nor
//! name a value; a reference is reported by what the blueprint wrote (a name or Make's
//! numeric id); a reference holding `{{` resolves per execution and is not checked.

use std::collections::HashMap;

use crate::module::connection::{ConnectionInfo, ConnectionsHandle};
use crate::module::{DataStoresHandle, ModuleError, Reference};
use crate::scenario::compiled::ModuleReference;
use crate::scenario::{Problem, Scenario};
use crate::store::{Store, StoreError, is_make_id};

/// One problem found by the activation check: a JSON path and what is wrong there.
pub type ReferenceProblem = Problem;

/// The problems, one per line (`path: message`).
pub fn describe(problems: &[ReferenceProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("\n  {p}"))
        .collect::<String>()
}

/// Every missing or mismatched reference of `scenario`, in the order of its modules. Without
/// a connections (or data stores) source nothing of that sort is checked; a source that
/// cannot answer is a problem naming why.
pub async fn check(
    scenario: &Scenario,
    connections: Option<&ConnectionsHandle>,
    data_stores: Option<&DataStoresHandle>,
) -> Vec<ReferenceProblem> {
    let mut problems = Vec::new();
    let mut found: HashMap<String, Result<Option<ConnectionInfo>, ModuleError>> = HashMap::new();
    for named in checked_references(scenario) {
        let module = named.node.module.as_str();
        let message = match &named.reference {
            Reference::Connection {
                reference,
                app,
                kinds,
                ..
            } => {
                let Some(connections) = connections else {
                    continue;
                };
                if !found.contains_key(reference) {
                    let info = connections.find(reference).await;
                    found.insert(reference.clone(), info);
                }
                match &found[reference] {
                    Err(e) => Some(format!(
                        "connection \"{reference}\" could not be checked: {}",
                        e.message
                    )),
                    Ok(None) => Some(missing_message(&named)),
                    Ok(Some(info)) => mismatch(module, info, app.as_deref(), kinds),
                }
            }
            Reference::DataStore { reference, .. } => {
                let Some(data_stores) = data_stores else {
                    continue;
                };
                match data_stores.resolve(reference).await {
                    Ok(_) => None,
                    Err(e) if e.kind == crate::module::ErrorKind::InvalidConfigurationError => {
                        Some(missing_message(&named))
                    }
                    Err(e) => Some(format!("{module}: {}", e.message)),
                }
            }
        };
        if let Some(message) = message {
            problems.push(Problem {
                path: named.path,
                message,
            });
        }
    }
    problems
}

/// Every reference of `scenario` to a connection or data store that `store` does not hold
/// (without a store: every reference), each at its JSON path with the command that creates
/// it: the warnings of storing or validating a blueprint. A database that fails is an error,
/// not a list of everything missing.
pub async fn missing_references(
    store: Option<&Store>,
    scenario: &Scenario,
) -> Result<Vec<Problem>, StoreError> {
    let mut missing = Vec::new();
    for named in checked_references(scenario) {
        let exists = match (store, &named.reference) {
            (None, _) => false,
            (Some(store), Reference::Connection { reference, .. }) => {
                held(store.get_connection(reference).await)?
            }
            (Some(store), Reference::DataStore { reference, .. }) => {
                held(store.get_datastore(reference).await)?
            }
        };
        if !exists {
            missing.push(Problem {
                message: missing_message(&named),
                path: named.path,
            });
        }
    }
    Ok(missing)
}

/// The references a check looks up: all but those resolved per execution (`{{…}}`, such as
/// a token reference `{{user.tokens.crm}}`).
fn checked_references(scenario: &Scenario) -> impl Iterator<Item = ModuleReference<'_>> {
    scenario.references().into_iter().filter(|named| {
        let (Reference::Connection { reference, .. } | Reference::DataStore { reference, .. }) =
            &named.reference;
        !reference.contains("{{")
    })
}

/// Whether a lookup found its row: "not found" is an answer, any other failure an error.
fn held<T>(looked_up: Result<T, StoreError>) -> Result<bool, StoreError> {
    match looked_up {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// `module 3 (http:ActionSendDataBasicAuth) uses connection 71843, which does not exist
/// here: create it with …`: by Make's id when the blueprint gives a number, else by name.
fn missing_message(named: &ModuleReference<'_>) -> String {
    let module_type = named.node.module.as_str();
    let module_id = named.node.id;
    let reference = match &named.reference {
        Reference::Connection { reference, app, .. } => {
            let app = app.as_deref().unwrap_or(app_of(module_type));
            let create = if is_make_id(reference) {
                format!("switchyard connections add NAME --app {app} --id {reference} …")
            } else {
                format!("switchyard connections add \"{reference}\" --app {app} …")
            };
            let shown = shown(reference);
            return format!(
                "module {module_id} ({module_type}) uses connection {shown}, which does not \
                 exist here: create it with `{create}` (or on the console's Connect page)"
            );
        }
        Reference::DataStore { reference, .. } => reference,
    };
    let create = if is_make_id(reference) {
        format!("switchyard datastores create NAME --id {reference} --fields …")
    } else {
        format!("switchyard datastores create \"{reference}\" --fields …")
    };
    format!(
        "module {module_id} ({module_type}) uses data store {}, which does not exist here: \
         create it with `{create}`",
        shown(reference)
    )
}

/// The app part of a module type (`http` of `http:ActionSendDataBasicAuth`).
fn app_of(module_type: &str) -> &str {
    module_type.split(':').next().unwrap_or(module_type)
}

/// A reference as the blueprint wrote it: a number bare, a name quoted.
fn shown(reference: &str) -> String {
    if is_make_id(reference) {
        reference.to_string()
    } else {
        format!("\"{reference}\"")
    }
}

/// Why connection `info` does not fit a module that needs `app` and one of `kinds`.
fn mismatch(
    module: &str,
    info: &ConnectionInfo,
    app: Option<&str>,
    kinds: &[String],
) -> Option<String> {
    if let Some(app) = app
        && !info.app.is_empty()
        && info.app != app
    {
        return Some(format!(
            "the connection \"{}\" is a {} connection; {module} needs a {app} connection",
            info.name, info.app
        ));
    }
    if !kinds.is_empty() && !info.kind.is_empty() && !kinds.contains(&info.kind) {
        return Some(format!(
            "the connection \"{}\" is of kind {}; {module} needs one of kind {}",
            info.name,
            info.kind,
            kinds.join(" or ")
        ));
    }
    None
}
