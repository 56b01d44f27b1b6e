//! The activation check: every stored resource a scenario's modules name — connections and
//! data stores — must exist, and each connection must be of the app and kind its module
//! needs. Used when a scenario is activated (API 422, console, admin CLI, through
//! [`Catalog::set_active`](super::Catalog::set_active)) and before `switchyard run` runs one
//! (non-zero exit), so a missing or wrong connection is found once, with every problem at
//! its JSON path, instead of by each execution that reaches the module.
//!
//! Invariant: the check reads metadata only (names, apps, kinds) through the same
//! [`Connections`](crate::module::Connections) and [`DataStores`] sources the modules use; it
//! never unseals a connection or names a value.

use std::collections::HashMap;

use crate::module::connection::{ConnectionInfo, ConnectionsHandle};
use crate::module::{DataStoresHandle, ModuleError, Reference};
use crate::scenario::Scenario;
use crate::scenario::compiled::NodeKind;

/// One problem found by the activation check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReferenceProblem {
    /// The JSON path in the blueprint: `flow[1].parameters.__IMTCONN__`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ReferenceProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

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
    for node in &scenario.nodes {
        let NodeKind::Module(module) = &node.kind else {
            continue;
        };
        for reference in module.references(&node.parameters) {
            let (Reference::Connection {
                reference: name, ..
            }
            | Reference::DataStore {
                reference: name, ..
            }) = &reference;
            if name.contains("{{") {
                // Resolved per execution (a token reference such as `{{user.tokens.crm}}`).
                continue;
            }
            match reference {
                Reference::Connection {
                    path,
                    reference,
                    app,
                    kinds,
                } => {
                    let Some(connections) = connections else {
                        continue;
                    };
                    let at = format!("{}.{path}", node.path);
                    if !found.contains_key(&reference) {
                        let info = connections.find(&reference).await;
                        found.insert(reference.clone(), info);
                    }
                    let message = match &found[&reference] {
                        Err(e) => Some(format!(
                            "connection \"{reference}\" could not be checked: {}",
                            e.message
                        )),
                        Ok(None) => Some(format!(
                            "{} names the connection \"{reference}\", which does not exist: \
                             store it with `switchyard connections add` (or connect it)",
                            node.module
                        )),
                        Ok(Some(info)) => mismatch(&node.module, info, app.as_deref(), &kinds),
                    };
                    if let Some(message) = message {
                        problems.push(ReferenceProblem { path: at, message });
                    }
                }
                Reference::DataStore { path, reference } => {
                    let Some(data_stores) = data_stores else {
                        continue;
                    };
                    if let Err(e) = data_stores.resolve(&reference).await {
                        problems.push(ReferenceProblem {
                            path: format!("{}.{path}", node.path),
                            message: format!("{}: {}", node.module, e.message),
                        });
                    }
                }
            }
        }
    }
    problems
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
