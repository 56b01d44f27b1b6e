//! What one execution produced: the report printed by `switchyard run --json` and stored
//! with each execution. Its JSON shape is a contract: `{status, operations, cycles, log, error}`
//! plus `response` when the scenario answered a webhook, `incomplete` when bundles were
//! stored by a Break and `outputs` when a called scenario returned data.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::module::TriggerCommit;

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    Error,
    /// At least one bundle was stored as an incomplete execution (Break).
    Incomplete,
}

/// One output bundle, in execution order.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub module: u32,
    pub output: Arc<Value>,
}

/// The bundle one operation of a module ran on: its mapper, evaluated (Make's "input" of an
/// operation), in execution order. Not part of the JSON report: the service stores it with
/// the execution's module data for the inspector.
#[derive(Debug, Clone, Serialize)]
pub struct InputEntry {
    pub module: u32,
    pub input: Arc<Value>,
}

/// The error that stopped (or, for Break, paused) an execution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportError {
    pub module: u32,
    /// Make's error class, e.g. `DataError`.
    pub name: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// A `gateway:WebhookRespond` reply (read back from a stored report by the webhook handler).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookResponse {
    pub status: u16,
    pub headers: Map<String, Value>,
    pub body: Value,
}

/// A bundle parked by Break (or by an unhandled error with incomplete executions on):
/// enough to resume the flow at the failing module later.
#[derive(Debug, Clone, Serialize)]
pub struct Incomplete {
    /// The module that failed and where the flow resumes.
    pub module: u32,
    pub error: ReportError,
    /// Outputs of the modules before it, by module id: the bundle's ancestry.
    pub bundle: Map<String, Value>,
    /// Break's retry settings: `{retry, count, interval}` as mapped, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Value>,
}

/// Per-module counters for the human-readable trace.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModuleStats {
    pub module: u32,
    pub runs: u64,
    /// Every output bundle, logged or not.
    pub bundles_out: u64,
    /// Output bundles kept in the report's log: the first ones, up to the budget's
    /// `log_bundles_per_module`; `bundles_out - logged` were left out.
    pub logged: u64,
    /// Inputs kept in the report's `inputs`: those of the first operations, up to the same
    /// budget.
    pub inputs_logged: u64,
    pub errors: u64,
    pub filtered: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub status: Status,
    pub operations: u64,
    pub cycles: u32,
    pub log: Vec<LogEntry>,
    /// The inputs of the first operations of each module, up to the budget's
    /// `log_bundles_per_module` (not part of the JSON report).
    #[serde(skip)]
    pub inputs: Vec<InputEntry>,
    pub error: Option<ReportError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<WebhookResponse>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<Incomplete>,
    /// Per-module counters in order of first run (not part of the JSON report).
    #[serde(skip)]
    pub stats: Vec<ModuleStats>,
    /// A polling trigger's state change from the cycles that committed, to store with the
    /// execution; `None` when no cycle of a polling trigger committed (not part of the JSON
    /// report).
    #[serde(skip)]
    pub trigger: Option<TriggerCommit>,
    /// A called scenario's outputs: the mapper of the `scenario-service:ReturnData` that
    /// ended it (`None`: none ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Map<String, Value>>,
}

impl Report {
    /// Replaces each of `secrets`, in every spelling ([`crate::module::scrub`]), by
    /// `[redacted]` wherever it appears in text the report keeps: bundles of the log,
    /// operations' inputs, the error, the webhook response, parked bundles. For the secrets an
    /// execution revealed to its bundles and the connection values its modules sent
    /// ([`crate::module::Redactions`]).
    pub fn redact(&mut self, secrets: &[String]) {
        let scrubber = crate::module::Scrubber::of(secrets);
        if scrubber.is_empty() {
            return;
        }
        let value = |v: &mut Value, scrubber: &crate::module::Scrubber| scrubber.value(v);
        let error = |e: &mut ReportError, scrubber: &crate::module::Scrubber| {
            scrubber.text(&mut e.message);
            if let Some(details) = &mut e.details {
                scrubber.value(details);
            }
        };
        let secrets = &scrubber;
        for entry in &mut self.log {
            value(Arc::make_mut(&mut entry.output), secrets);
        }
        for entry in &mut self.inputs {
            value(Arc::make_mut(&mut entry.input), secrets);
        }
        if let Some(e) = &mut self.error {
            error(e, secrets);
        }
        if let Some(response) = &mut self.response {
            value(&mut response.body, secrets);
            response
                .headers
                .values_mut()
                .for_each(|h| value(h, secrets));
        }
        if let Some(outputs) = &mut self.outputs {
            outputs.values_mut().for_each(|o| value(o, secrets));
        }
        for parked in &mut self.incomplete {
            error(&mut parked.error, secrets);
            parked.bundle.values_mut().for_each(|b| value(b, secrets));
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// [`Report::to_json`] without `log`: what is stored with an execution, whose log is its
    /// per-module data. The bundles are not copied to be thrown away.
    pub fn to_json_without_log(&self) -> Value {
        #[derive(Serialize)]
        struct WithoutLog<'a> {
            status: &'a Status,
            operations: u64,
            cycles: u32,
            error: Option<&'a ReportError>,
            #[serde(skip_serializing_if = "Option::is_none")]
            response: Option<&'a WebhookResponse>,
            #[serde(skip_serializing_if = "<[Incomplete]>::is_empty")]
            incomplete: &'a [Incomplete],
            #[serde(skip_serializing_if = "Option::is_none")]
            outputs: Option<&'a Map<String, Value>>,
        }
        serde_json::to_value(WithoutLog {
            status: &self.status,
            operations: self.operations,
            cycles: self.cycles,
            error: self.error.as_ref(),
            response: self.response.as_ref(),
            incomplete: &self.incomplete,
            outputs: self.outputs.as_ref(),
        })
        .unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(with_extras: bool) -> Report {
        let error = ReportError {
            module: 2,
            name: "DataError".into(),
            message: "bad".into(),
            details: None,
        };
        Report {
            status: if with_extras {
                Status::Incomplete
            } else {
                Status::Success
            },
            operations: 3,
            cycles: 1,
            log: vec![LogEntry {
                module: 1,
                output: Arc::new(serde_json::json!({"big": [1, 2, 3]})),
            }],
            inputs: vec![InputEntry {
                module: 1,
                input: Arc::new(serde_json::json!({"url": "https://example.com"})),
            }],
            error: with_extras.then(|| error.clone()),
            response: with_extras.then(|| WebhookResponse {
                status: 201,
                headers: Map::new(),
                body: Value::String("ok".into()),
            }),
            incomplete: if with_extras {
                vec![Incomplete {
                    module: 2,
                    error,
                    bundle: Map::new(),
                    retry: None,
                }]
            } else {
                Vec::new()
            },
            stats: Vec::new(),
            trigger: None,
            outputs: with_extras.then(|| {
                let mut outputs = Map::new();
                outputs.insert("total".into(), Value::from(3));
                outputs
            }),
        }
    }

    #[test]
    fn the_stored_report_is_the_report_without_its_log() {
        for with_extras in [false, true] {
            let report = report(with_extras);
            let mut expected = report.to_json();
            expected.as_object_mut().unwrap().remove("log");
            assert_eq!(
                report.to_json_without_log(),
                expected,
                "extras: {with_extras}"
            );
        }
    }
}
