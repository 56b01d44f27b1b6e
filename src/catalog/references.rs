//! The stored things a scenario names — connections and data stores — checked against one
//! database. Make loads an export whose connections do not exist yet (its designer connects
//! them afterwards), so a missing one is a *warning* here, naming the module's path and the
//! command that creates it; activating and running refuse what is still missing.
//!
//! Invariant: a reference is reported by what the blueprint wrote (a name or Make's numeric
//! id) and never by anything read from the store.

use crate::module::{StoredKind, StoredReference};
use crate::scenario::compiled::ModuleReference;
use crate::scenario::{Problem, Scenario};
use crate::store::{Store, StoreError, is_make_id};

/// Every reference of `scenario` to a connection or data store that `store` does not hold
/// (without a store: every reference), each at its JSON path with the command that creates
/// it. A database that fails is an error, not a list of everything missing.
pub async fn missing_references(
    store: Option<&Store>,
    scenario: &Scenario,
) -> Result<Vec<Problem>, StoreError> {
    let mut missing = Vec::new();
    for found in scenario.references() {
        let reference = found.reference.reference.as_str();
        let exists = match (store, found.reference.kind) {
            (None, _) => false,
            (Some(store), StoredKind::Connection) => held(store.get_connection(reference).await)?,
            (Some(store), StoredKind::DataStore) => held(store.get_datastore(reference).await)?,
        };
        if !exists {
            missing.push(missing_problem(scenario, &found));
        }
    }
    Ok(missing)
}

/// Whether a lookup found its row: "not found" is an answer, any other failure an error.
fn held<T>(looked_up: Result<T, StoreError>) -> Result<bool, StoreError> {
    match looked_up {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// `flow[2].parameters.__IMTCONN__: connection 33477 does not exist here: create it with …`.
fn missing_problem(scenario: &Scenario, found: &ModuleReference) -> Problem {
    let module_type = scenario
        .by_id
        .get(&found.module_id)
        .map(|ix| scenario.node(*ix).module.as_str())
        .unwrap_or_default();
    Problem {
        path: found.path.clone(),
        message: describe(module_type, found.module_id, &found.reference),
    }
}

fn describe(module_type: &str, module_id: u32, reference: &StoredReference) -> String {
    let app = module_type.split(':').next().unwrap_or(module_type);
    let numeric = is_make_id(&reference.reference);
    let shown = if numeric {
        reference.reference.clone()
    } else {
        format!("\"{}\"", reference.reference)
    };
    match reference.kind {
        StoredKind::Connection => {
            let create = if numeric {
                format!("switchyard connections add NAME --app {app} --id {shown} …")
            } else {
                format!("switchyard connections add {shown} --app {app} …")
            };
            format!(
                "module {module_id} ({module_type}) uses connection {shown}, which does not \
                 exist here: create it with `{create}` (or on the console's Connect page)"
            )
        }
        StoredKind::DataStore => {
            let create = if numeric {
                format!("switchyard datastores create NAME --id {shown} --fields …")
            } else {
                format!("switchyard datastores create {shown} --fields …")
            };
            format!(
                "module {module_id} ({module_type}) uses data store {shown}, which does not \
                 exist here: create it with `{create}`"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_references_are_created_with_make_ids_and_names_by_name() {
        let by_id = describe(
            "google-email:ActionSendEmail",
            3,
            &StoredReference::connection("account", "33477".into()),
        );
        assert_eq!(
            by_id,
            "module 3 (google-email:ActionSendEmail) uses connection 33477, which does not \
             exist here: create it with `switchyard connections add NAME --app google-email \
             --id 33477 …` (or on the console's Connect page)"
        );
        let by_name = describe(
            "datastore:GetRecord",
            4,
            &StoredReference::data_store("datastore", "seen".into()),
        );
        assert!(
            by_name.contains("`switchyard datastores create \"seen\" --fields …`"),
            "{by_name}"
        );
    }
}
