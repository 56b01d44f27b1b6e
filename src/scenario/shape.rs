//! Reading blueprint JSON into the model one module at a time, so that every shape problem of
//! every module is found in one pass, each with its JSON path, instead of serde stopping at
//! the first.
//!
//! Invariants:
//! - a wrong type or a missing field is an **error**; a key the model does not know (at the
//!   top level, in `metadata.scenario`, `scheduling`, on a module, route, branch, filter or
//!   condition) is a **warning** with a "did you mean" hint when it is close to a known key —
//!   Make's exporter adds keys over time (`_public_note` …) and Make itself ignores them;
//! - a placeholder module (`placeholder:Placeholder`, usually with `"id": null`: an empty slot
//!   in the designer) is dropped with a warning; the modules around it keep their positions
//!   in paths ([`Node::position`]);
//! - a module whose own fields do not fit the model is replaced by an [`UNREADABLE`] stand-in
//!   when its id can be read, so compilation still checks everything around it (references to
//!   it are not reported twice) and adds no problem of its own for it;
//! - exporter-owned data (`metadata` outside `metadata.scenario`, `parameters`, `mapper`,
//!   `interface`, `designer` …) is never inspected for unknown keys.

use std::sync::LazyLock;

use schemars::JsonSchema;
use serde_json::{Map, Value};

use super::Problem;
use super::model::{
    Blueprint, Branch, Condition, Filter, MergeOutput, Node, Restriction, Route, Scheduling,
    Settings,
};

/// Module type of the stand-in for a module that could not be read (its problems are
/// already reported); compilation accepts it silently.
pub const UNREADABLE: &str = "switchyard:Unreadable";

/// Module type of Make's empty designer slot.
pub const PLACEHOLDER: &str = "placeholder:Placeholder";

/// What reading found: the model (unless the top level itself could not be read), the
/// errors and the warnings.
pub(super) struct Read {
    pub blueprint: Option<Blueprint>,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// Known keys of each shape Make defines, taken from the model's JSON Schema so they can
/// never drift from the serde types.
struct Known {
    blueprint: Vec<String>,
    settings: Vec<String>,
    scheduling: Vec<String>,
    restriction: Vec<String>,
    node: Vec<String>,
    route: Vec<String>,
    branch: Vec<String>,
    filter: Vec<String>,
    condition: Vec<String>,
    merge_output: Vec<String>,
}

fn keys_of<T: JsonSchema>() -> Vec<String> {
    let schema = schemars::schema_for!(T);
    schema
        .as_value()
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

static KNOWN: LazyLock<Known> = LazyLock::new(|| Known {
    blueprint: keys_of::<Blueprint>(),
    settings: keys_of::<Settings>(),
    scheduling: keys_of::<Scheduling>(),
    restriction: keys_of::<Restriction>(),
    node: keys_of::<Node>(),
    route: keys_of::<Route>(),
    branch: keys_of::<Branch>(),
    filter: keys_of::<Filter>(),
    condition: keys_of::<Condition>(),
    merge_output: keys_of::<MergeOutput>(),
});

struct Reader {
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

pub(super) fn read(value: Value) -> Read {
    let mut r = Reader {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let blueprint = r.blueprint(value);
    Read {
        blueprint,
        errors: r.errors,
        warnings: r.warnings,
    }
}

impl Reader {
    fn error(&mut self, path: String, message: impl Into<String>) {
        self.errors.push(Problem {
            path,
            message: message.into(),
        });
    }

    fn blueprint(&mut self, value: Value) -> Option<Blueprint> {
        let Value::Object(mut top) = value else {
            self.error(
                String::new(),
                "expected a blueprint: a JSON object with `flow`",
            );
            return None;
        };
        self.unknown_keys(&top, "", &KNOWN.blueprint);
        let flow = top.remove("flow");
        if let Some(Value::Object(metadata)) = top.get("metadata")
            && let Some(Value::Object(settings)) = metadata.get("scenario")
        {
            self.unknown_keys(settings, "metadata.scenario", &KNOWN.settings);
        }
        if let Some(Value::Object(scheduling)) = top.get("scheduling") {
            self.unknown_keys(scheduling, "scheduling", &KNOWN.scheduling);
            if let Some(Value::Array(windows)) = scheduling.get("restrict") {
                for (i, w) in windows.iter().enumerate() {
                    if let Value::Object(w) = w {
                        self.unknown_keys(
                            w,
                            &format!("scheduling.restrict[{i}]"),
                            &KNOWN.restriction,
                        );
                    }
                }
            }
        }
        top.insert("flow".into(), Value::Array(Vec::new()));
        // A top-level key that does not fit is reported and left out, and the rest read
        // again, so that a bad `scheduling` does not hide the modules' problems.
        let blueprint = loop {
            match serde_path_to_error::deserialize::<_, Blueprint>(Value::Object(top.clone())) {
                Ok(b) => break Some(b),
                Err(e) => {
                    let path = e.path().to_string();
                    let key = path
                        .split(['.', '['])
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let path = if path == "." { String::new() } else { path };
                    self.error(path, e.into_inner().to_string());
                    if key == "flow" || top.remove(&key).is_none() {
                        break None;
                    }
                }
            }
        };
        let flow = match flow {
            None => {
                self.error(String::new(), "missing field `flow`");
                Vec::new()
            }
            Some(flow) => self.flow(flow, "flow"),
        };
        blueprint.map(|mut b| {
            // `metadata.scenario`'s unknown keys were reported above, with their paths.
            b.flow = flow;
            b
        })
    }

    /// Deserialises `value` as `T`, reporting a mismatch under `base`.
    fn deserialize<T: serde::de::DeserializeOwned>(
        &mut self,
        value: Value,
        base: &str,
    ) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let inner = e.path().to_string();
                let inner = if inner == "." { String::new() } else { inner };
                let message = e.into_inner().to_string();
                self.error(join(base, &inner), message);
                None
            }
        }
    }

    fn flow(&mut self, flow: Value, path: &str) -> Vec<Node> {
        let Value::Array(items) = flow else {
            self.error(
                path.to_string(),
                format!("expected an array of modules, got {}", kind_of(&flow)),
            );
            return Vec::new();
        };
        let mut nodes = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let at = format!("{path}[{i}]");
            if let Some(node) = self.node(item, &at, i) {
                nodes.push(node);
            }
        }
        nodes
    }

    fn node(&mut self, item: Value, at: &str, position: usize) -> Option<Node> {
        if is_placeholder(&item) {
            self.warning(
                at.to_string(),
                "an empty placeholder module (placeholder:Placeholder) is skipped".into(),
            );
            return None;
        }
        let Value::Object(mut raw) = item else {
            self.error(
                at.to_string(),
                format!("expected a module (a JSON object), got {}", kind_of(&item)),
            );
            return None;
        };
        self.unknown_keys(&raw, at, &KNOWN.node);
        // Nested flows are read on their own below, each module with its own path.
        let mut route_flows = Vec::new();
        if let Some(Value::Array(routes)) = raw.get_mut("routes") {
            for (k, route) in routes.iter_mut().enumerate() {
                if let Value::Object(route) = route {
                    self.unknown_keys(route, &format!("{at}.routes[{k}]"), &KNOWN.route);
                    route_flows.push((k, route.insert("flow".into(), Value::Array(Vec::new()))));
                }
            }
        }
        let mut branch_flows = Vec::new();
        if let Some(Value::Array(branches)) = raw.get_mut("branches") {
            for (k, branch) in branches.iter_mut().enumerate() {
                if let Value::Object(branch) = branch {
                    let bat = format!("{at}.branches[{k}]");
                    self.unknown_keys(branch, &bat, &KNOWN.branch);
                    if let Some(groups) = branch.get("conditions") {
                        self.conditions(groups, &format!("{bat}.conditions"));
                    }
                    if branch.contains_key("flow") {
                        branch_flows
                            .push((k, branch.insert("flow".into(), Value::Array(Vec::new()))));
                    }
                }
            }
        }
        if let Some(Value::Object(filter)) = raw.get("filter") {
            self.unknown_keys(filter, &format!("{at}.filter"), &KNOWN.filter);
            if let Some(groups) = filter.get("conditions") {
                self.conditions(groups, &format!("{at}.filter.conditions"));
            }
        }
        if let Some(Value::Array(outputs)) = raw.get("outputs") {
            for (k, out) in outputs.iter().enumerate() {
                if let Value::Object(out) = out {
                    self.unknown_keys(out, &format!("{at}.outputs[{k}]"), &KNOWN.merge_output);
                }
            }
        }
        let onerror = match raw.get("onerror") {
            Some(Value::Array(_)) => raw.insert("onerror".into(), Value::Array(Vec::new())),
            _ => None,
        };
        let id = raw
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok());
        let node = self.deserialize::<Node>(Value::Object(raw), at);
        let mut node = match node {
            Some(node) => node,
            // A stand-in keeps the id known to the modules that read it.
            None => Node {
                id: id?,
                module: UNREADABLE.into(),
                version: None,
                parameters: Map::new(),
                mapper: None,
                filter: None,
                routes: None,
                onerror: None,
                branches: None,
                outputs: None,
                filters: None,
                listener: None,
                metadata: None,
                position: None,
            },
        };
        node.position = Some(position);
        for (k, flow) in route_flows {
            let Some(flow) = flow else {
                self.error(format!("{at}.routes[{k}]"), "missing field `flow`");
                continue;
            };
            let placeholders = match &flow {
                Value::Array(items) => items.iter().filter(|m| is_placeholder(m)).count(),
                _ => 0,
            };
            let flow = self.flow(flow, &format!("{at}.routes[{k}].flow"));
            if let Some(route) = node.routes.as_mut().and_then(|r| r.get_mut(k)) {
                route.flow = flow;
                route.placeholders = placeholders;
            }
        }
        for (k, flow) in branch_flows {
            let flow = match flow {
                Some(flow) => self.flow(flow, &format!("{at}.branches[{k}].flow")),
                None => Vec::new(),
            };
            if let Some(branch) = node.branches.as_mut().and_then(|b| b.get_mut(k)) {
                branch.flow = flow;
            }
        }
        if let Some(onerror) = onerror {
            let flow = self.flow(onerror, &format!("{at}.onerror"));
            if node.module != UNREADABLE {
                node.onerror = Some(flow);
            }
        }
        Some(node)
    }

    /// Unknown keys of the conditions `[[{a, o, b}]]` at `path`.
    fn conditions(&mut self, groups: &Value, path: &str) {
        let Value::Array(groups) = groups else { return };
        for (g, group) in groups.iter().enumerate() {
            let Value::Array(group) = group else { continue };
            for (c, condition) in group.iter().enumerate() {
                if let Value::Object(condition) = condition {
                    self.unknown_keys(condition, &format!("{path}[{g}][{c}]"), &KNOWN.condition);
                }
            }
        }
    }

    fn warning(&mut self, path: String, message: String) {
        self.warnings.push(Problem { path, message });
    }

    fn unknown_keys(&mut self, object: &Map<String, Value>, path: &str, known: &[String]) {
        for key in object.keys() {
            if known.iter().any(|k| k == key) {
                continue;
            }
            let message = match did_you_mean(key, known) {
                Some(close) => format!("unknown key `{key}` is ignored (did you mean `{close}`?)"),
                None => format!("unknown key `{key}` is ignored"),
            };
            self.warning(join(path, key), message);
        }
    }
}

/// The known key closest to `key`, when it is close enough to be a likely typo: the same
/// letters in another case, or at most a third of its length in edits (and at most 3).
pub(crate) fn did_you_mean<'k>(key: &str, known: &'k [String]) -> Option<&'k str> {
    let lower = key.to_lowercase();
    let limit = (key.chars().count() / 3).clamp(1, 3);
    known
        .iter()
        .map(|k| (levenshtein(&lower, &k.to_lowercase()), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Edit distance (insertions, deletions, substitutions) between two strings, by characters.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

fn is_placeholder(module: &Value) -> bool {
    module.get("module").and_then(Value::as_str) == Some(PLACEHOLDER)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn join(base: &str, rest: &str) -> String {
    match (base.is_empty(), rest.is_empty()) {
        (_, true) => base.to_string(),
        (true, false) => rest.to_string(),
        (false, false) if rest.starts_with('[') => format!("{base}{rest}"),
        (false, false) => format!("{base}.{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_keys_are_suggested_and_far_ones_are_not() {
        let known: Vec<String> = ["mapper", "parameters", "metadata", "filter"]
            .map(String::from)
            .to_vec();
        assert_eq!(did_you_mean("maper", &known), Some("mapper"));
        assert_eq!(did_you_mean("Parameters", &known), Some("parameters"));
        assert_eq!(did_you_mean("colour", &known), None);
        assert_eq!(did_you_mean("_public_note", &known), None);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }

    #[test]
    fn known_keys_come_from_the_model() {
        assert!(KNOWN.node.iter().any(|k| k == "onerror"));
        assert!(KNOWN.branch.iter().any(|k| k == "disabled"));
        assert!(!KNOWN.node.iter().any(|k| k == "position"));
        assert!(KNOWN.settings.iter().any(|k| k == "autoCommit"));
    }
}
