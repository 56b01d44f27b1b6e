//! Make's Scenarios app, the caller's side: `scenario-service:CallSubscenario` starts an
//! execution of the scenario `parameters.scenario` names (its id, Make's `SCN_<id>`, or its
//! name) with `mapper.data` as its inputs, through the execution's [`SubscenariosHandle`]
//! (the runner's, which queues it as a durable execution linked to this one). With
//! `mapper.shouldWaitForExecutionEnd` (Make's default: true) the module's output is the
//! callee's outputs, flat (`{{N.NAME}}`); without, `{executionId}` at once. The callee's side
//! (`StartSubscenario`, `ReturnData`) is the executor's own (`scenario::interface`).
//!
//! Invariants: without a handle (`switchyard run FILE`) the module fails with an
//! `InvalidConfigurationError` saying a service is needed; `parameters.scenario` is checked at
//! load; a `data` that is not a collection is a `DataError` at `mapper.data`.

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::fields::{flag, is_blank, is_dynamic, text};
use crate::module::subscenario::{CallOutcome, CallRequest, SubscenariosHandle};
use crate::module::{Invocation, Module, ModuleError};

/// The module's type name.
pub const CALL_SUBSCENARIO: &str = "scenario-service:CallSubscenario";

/// `scenario-service:CallSubscenario`.
pub(crate) struct CallSubscenario;

/// `shouldWaitForExecutionEnd`, from the mapper (where Make's designer writes it) or the
/// parameters (where some hand-written blueprints put it).
fn wait_flag(parameters: &Map<String, Value>, mapper: &Value) -> Option<Value> {
    mapper
        .get("shouldWaitForExecutionEnd")
        .or_else(|| parameters.get("shouldWaitForExecutionEnd"))
        .cloned()
}

impl Module for CallSubscenario {
    fn check(&self, parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        match parameters.get("scenario") {
            None | Some(Value::Null) => problems.push((
                "parameters.scenario".into(),
                "is required (the called scenario's id or name)".into(),
            )),
            Some(Value::String(s)) if s.trim().is_empty() => problems.push((
                "parameters.scenario".into(),
                "is required (the called scenario's id or name)".into(),
            )),
            Some(Value::String(_) | Value::Number(_)) => {}
            Some(_) => problems.push((
                "parameters.scenario".into(),
                "expected the called scenario's id or name (text)".into(),
            )),
        }
        if let Some(wait) = wait_flag(parameters, mapper).filter(|v| !is_dynamic(v))
            && let Err(reason) = flag(Some(&wait), true)
        {
            problems.push(("mapper.shouldWaitForExecutionEnd".into(), reason));
        }
        if let Some(data) = mapper.get("data")
            && !is_dynamic(data)
            && !(data.is_object() || data.is_null())
        {
            problems.push((
                "mapper.data".into(),
                "expected a collection of the called scenario's inputs".into(),
            ));
        }
        problems
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async move {
            let Some(service) = invocation.context.extensions.get::<SubscenariosHandle>() else {
                return Err(ModuleError::config(format!(
                    "{CALL_SUBSCENARIO}: calling another scenario starts a stored scenario's \
                     execution: run the calling scenario under switchyard serve or worker"
                )));
            };
            let scenario = match invocation.parameters.get("scenario") {
                Some(v) if !is_blank(Some(v)) => text(v),
                _ => {
                    return Err(ModuleError::config(
                        "parameters.scenario is required (the called scenario's id or name)",
                    ));
                }
            };
            let wait = flag(
                wait_flag(invocation.parameters, &invocation.mapper).as_ref(),
                true,
            )
            .map_err(|reason| {
                ModuleError::data(format!("mapper.shouldWaitForExecutionEnd: {reason}"))
            })?;
            let data = match invocation.mapper.get("data") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(data)) => data.clone(),
                Some(Value::String(s)) if s.is_empty() => Map::new(),
                Some(_) => {
                    return Err(ModuleError::data(
                        "mapper.data: expected a collection of the called scenario's inputs",
                    ));
                }
            };
            let request = CallRequest {
                caller_execution: invocation.context.execution_id.clone(),
                caller_module: invocation.module_id,
                scenario,
                data,
                wait,
            };
            Ok(vec![match service.0.call(request).await? {
                CallOutcome::Started { execution_id } => json!({"executionId": execution_id}),
                CallOutcome::Finished { outputs, .. } => Value::Object(outputs),
            }])
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::module::subscenario::Subscenarios;
    use crate::module::{ErrorKind, ExecutionContext};

    #[derive(Default)]
    struct Recorder(Mutex<Vec<CallRequest>>);

    impl Subscenarios for Recorder {
        fn call(&self, request: CallRequest) -> BoxFuture<'_, Result<CallOutcome, ModuleError>> {
            Box::pin(async move {
                let wait = request.wait;
                self.0.lock().unwrap().push(request);
                Ok(if wait {
                    CallOutcome::Finished {
                        execution_id: "e2".into(),
                        outputs: json!({"ok": true}).as_object().cloned().unwrap(),
                    }
                } else {
                    CallOutcome::Started {
                        execution_id: "e2".into(),
                    }
                })
            })
        }
    }

    async fn call(
        context: &ExecutionContext,
        parameters: Value,
        mapper: Value,
    ) -> Result<Vec<Value>, ModuleError> {
        let parameters = parameters.as_object().cloned().unwrap_or_default();
        CallSubscenario
            .call(Invocation {
                module_id: 4,
                module: CALL_SUBSCENARIO,
                parameters: &parameters,
                mapper,
                context,
            })
            .await
    }

    #[tokio::test]
    async fn a_call_reads_makes_fields_and_returns_the_outputs_or_the_execution_id() {
        let recorder = Arc::new(Recorder::default());
        let mut context = ExecutionContext::new("e1");
        context
            .extensions
            .insert(SubscenariosHandle(recorder.clone()));
        let waited = call(
            &context,
            json!({"scenario": "SCN_42"}),
            json!({"data": {"city": "Oslo"}, "shouldWaitForExecutionEnd": true}),
        )
        .await
        .unwrap();
        assert_eq!(waited, [json!({"ok": true})]);
        let started = call(
            &context,
            json!({"scenario": 42, "shouldWaitForExecutionEnd": "false"}),
            json!({}),
        )
        .await
        .unwrap();
        assert_eq!(started, [json!({"executionId": "e2"})]);
        let calls = recorder.0.lock().unwrap();
        assert_eq!(
            (
                calls[0].scenario.as_str(),
                calls[0].caller_module,
                calls[0].wait
            ),
            ("SCN_42", 4, true)
        );
        assert_eq!(calls[0].data, *json!({"city": "Oslo"}).as_object().unwrap());
        assert_eq!((calls[1].scenario.as_str(), calls[1].wait), ("42", false));
    }

    #[tokio::test]
    async fn without_a_service_or_with_bad_fields_the_call_fails_saying_why() {
        let e = call(
            &ExecutionContext::new("e1"),
            json!({"scenario": "x"}),
            json!({}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfigurationError);
        assert!(
            e.message.contains("switchyard serve or worker"),
            "{}",
            e.message
        );
        let mut context = ExecutionContext::new("e1");
        context
            .extensions
            .insert(SubscenariosHandle(Arc::new(Recorder::default())));
        let e = call(&context, json!({"scenario": "x"}), json!({"data": [1]}))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::DataError);
        assert!(e.message.starts_with("mapper.data:"), "{}", e.message);
        assert_eq!(
            CallSubscenario.check(&Map::new(), &json!({"shouldWaitForExecutionEnd": "maybe"})),
            vec![
                (
                    "parameters.scenario".to_string(),
                    "is required (the called scenario's id or name)".to_string()
                ),
                (
                    "mapper.shouldWaitForExecutionEnd".to_string(),
                    "must be true or false".to_string()
                ),
            ]
        );
    }
}
