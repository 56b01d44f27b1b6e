//! Make's system variables: `{{var.scenario.id}}`, `{{var.execution.url}}` … — what an
//! expression may read about the scenario and the execution it runs in, under the `var` root
//! ([`crate::expr::SYSTEM_ROOTS`]).
//!
//! The constant part is built once per execution; the counters (operations and data consumed
//! so far) are filled in when an expression first reads `var` in an evaluation, so a
//! scenario that never reads it pays nothing. URLs exist only when the deployment's public
//! URL is known (`--public-url`); Switchyard has no organizations or teams, so their fields
//! are `null` (see `docs/iml.md`). A called scenario (`scenario-service:StartSubscenario`)
//! also has `var.input`, its inputs.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::expr::functions::date::iso_string;
use crate::module::ExecutionContext;
use crate::scenario::Scenario;

/// The system variables of one execution, without its counters.
#[derive(Debug, Clone)]
pub struct SystemVariables {
    scenario: Value,
    execution: Map<String, Value>,
    team: Value,
    organization: Value,
    /// The other system roots of this execution (`bot`, `user`), as the process gave them.
    roots: Map<String, Value>,
    /// A called scenario's inputs (`var.input`); `None` for other scenarios.
    input: Option<Value>,
}

impl SystemVariables {
    /// The variables of an execution of `scenario` in `context`, started at `started`;
    /// `public_url` is the base URL the service is reached at, if known.
    pub fn new(
        scenario: &Scenario,
        context: &ExecutionContext,
        public_url: Option<&str>,
        started: DateTime<Utc>,
    ) -> Self {
        let base = public_url.map(|u| u.trim_end_matches('/'));
        let scenario_url = match (base, &context.scenario_id) {
            (Some(base), Some(id)) => Value::String(format!("{base}/api/scenarios/{id}")),
            _ => Value::Null,
        };
        let execution_url = match base {
            Some(base) if !context.execution_id.is_empty() => {
                Value::String(format!("{base}/api/executions/{}", context.execution_id))
            }
            _ => Value::Null,
        };
        let mut execution = Map::new();
        execution.insert("id".into(), Value::String(context.execution_id.clone()));
        execution.insert("url".into(), execution_url);
        execution.insert("startedAt".into(), Value::String(iso_string(started)));
        let zone = base.and_then(host).map_or(Value::Null, Value::String);
        SystemVariables {
            scenario: json!({
                "id": context.scenario_id,
                "name": scenario.name,
                "url": scenario_url,
            }),
            execution,
            team: json!({"id": null, "name": null}),
            organization: json!({
                "id": null,
                "name": null,
                "operationsLeft": null,
                "dataLeft": null,
                "zoneDomain": zone,
            }),
            roots: Map::new(),
            input: None,
        }
    }

    /// The same variables with a called scenario's inputs (`{{var.input.NAME}}`).
    pub fn with_input(mut self, input: Value) -> Self {
        self.input = Some(input);
        self
    }

    /// The same variables with the other system roots `roots` (`bot`, `user`).
    pub fn with_roots(mut self, roots: Map<String, Value>) -> Self {
        self.roots = roots;
        self
    }

    /// The system root `name` other than `var`, when the process gave it.
    pub fn root(&self, name: &str) -> Option<&Value> {
        self.roots.get(name)
    }

    /// The `var` object with the counters as they are now: `operations` run so far in this
    /// execution and `data_bytes` of module output produced so far.
    pub fn value(&self, operations: u64, data_bytes: u64) -> Value {
        let mut execution = self.execution.clone();
        execution.insert("operationsConsumed".into(), operations.into());
        execution.insert("dataConsumed".into(), data_bytes.into());
        let mut var = json!({
            "scenario": self.scenario,
            "execution": execution,
            "team": self.team,
            "organization": self.organization,
        });
        if let (Some(input), Value::Object(var)) = (&self.input, &mut var) {
            var.insert("input".into(), input.clone());
        }
        var
    }
}

/// The host of a URL such as `https://flows.example.com:8443/base` (`flows.example.com`).
fn host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoModules;
    impl crate::module::Registry for NoModules {
        fn module(&self, _: &str) -> Option<std::sync::Arc<dyn crate::module::Module>> {
            None
        }
    }

    #[test]
    fn urls_come_from_the_public_url_and_counters_from_the_call() {
        let scenario = crate::scenario::load(
            r#"{"name": "Leads", "flow": [{"id": 1, "module": "util:SetVariable2", "mapper": {"name": "a"}}]}"#,
            &NoModules,
        )
        .unwrap();
        let context = ExecutionContext {
            scenario_id: Some("s1".into()),
            ..ExecutionContext::new("e1")
        };
        let started = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .to_utc();
        let vars = SystemVariables::new(&scenario, &context, Some("https://x.example/"), started);
        assert_eq!(
            vars.value(3, 120),
            json!({
                "scenario": {"id": "s1", "name": "Leads", "url": "https://x.example/api/scenarios/s1"},
                "execution": {"id": "e1", "url": "https://x.example/api/executions/e1",
                              "startedAt": "2026-01-02T03:04:05.000Z",
                              "operationsConsumed": 3, "dataConsumed": 120},
                "team": {"id": null, "name": null},
                "organization": {"id": null, "name": null, "operationsLeft": null,
                                 "dataLeft": null, "zoneDomain": "x.example"},
            })
        );
        let without = SystemVariables::new(&scenario, &context, None, started).value(0, 0);
        assert_eq!(without["scenario"]["url"], Value::Null);
        assert_eq!(without["execution"]["url"], Value::Null);
    }

    #[test]
    fn hosts_of_public_urls() {
        assert_eq!(
            host("https://flows.example.com:8443/base").as_deref(),
            Some("flows.example.com")
        );
        assert_eq!(host("http://[::1]:8080").as_deref(), Some("::1"));
        assert_eq!(host("not a url"), None);
    }
}
