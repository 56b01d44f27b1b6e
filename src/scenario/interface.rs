//! A blueprint's declared inputs and outputs (Make's "scenario inputs and outputs"): read
//! from the blueprint's top-level `interface` (`{input: [...], output: [...]}`, the shape
//! Make's API sets and exports carry), or, when that declares no inputs, from the
//! `metadata.interface` list the designer writes on the scenario's
//! `scenario-service:StartSubscenario` trigger. Every malformed item is a problem with its
//! JSON path; two inputs with one name are an error.

use serde_json::Value;

use crate::module::subscenario::{Interface, InterfaceField};

use super::Problem;
use super::model::Blueprint;

/// The trigger of a scenario other scenarios call.
pub const START_SUBSCENARIO: &str = "scenario-service:StartSubscenario";
/// The module that ends a called scenario with its outputs.
pub const RETURN_DATA: &str = "scenario-service:ReturnData";

/// The declared interface of `blueprint`, and the problems found reading it.
pub fn declared(blueprint: &Blueprint) -> (Interface, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut interface = match &blueprint.interface {
        None | Some(Value::Null) => Interface::default(),
        Some(value) => match serde_path_to_error::deserialize::<_, Interface>(value) {
            Ok(i) => i,
            Err(e) => {
                problems.push(problem("interface", &e));
                Interface::default()
            }
        },
    };
    let mut inputs_at = "interface.input".to_string();
    if interface.input.is_empty()
        && let Some(first) = blueprint.flow.first()
        && first.module == START_SUBSCENARIO
        && let Some(list) = first.metadata.as_ref().and_then(|m| m.get("interface"))
        && !list.is_null()
    {
        let at = format!("flow[{}].metadata.interface", first.position.unwrap_or(0));
        match serde_path_to_error::deserialize::<_, Vec<InterfaceField>>(list) {
            Ok(fields) => interface.input = fields,
            Err(e) => problems.push(problem(&at, &e)),
        }
        inputs_at = at;
    }
    for (list, at) in [
        (&interface.input, inputs_at.as_str()),
        (&interface.output, "interface.output"),
    ] {
        for (i, field) in list.iter().enumerate() {
            if field.name.trim().is_empty() {
                problems.push(Problem {
                    path: format!("{at}[{i}].name"),
                    message: "a declared input or output needs a name".into(),
                });
            } else if list[..i].iter().any(|f| f.name == field.name) {
                problems.push(Problem {
                    path: format!("{at}[{i}].name"),
                    message: format!("`{}` is declared twice", field.name),
                });
            }
        }
    }
    (interface, problems)
}

fn problem(at: &str, e: &serde_path_to_error::Error<serde_json::Error>) -> Problem {
    let inner = e.path().to_string();
    let path = if inner == "." || inner.is_empty() {
        at.to_string()
    } else if inner.starts_with('[') {
        format!("{at}{inner}")
    } else {
        format!("{at}.{inner}")
    };
    Problem {
        path,
        message: e.inner().to_string(),
    }
}
