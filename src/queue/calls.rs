//! The runner's side of `scenario-service:CallSubscenario` ([`Subscenarios`]): a call
//! becomes an execution of the callee like any other — stored, then run — linked to its
//! caller (`Store::create_called_execution`), so it is durable, shows in history and is
//! taken over by the queue's workers if this process dies.
//!
//! - **Resolution.** `parameters.scenario` is the callee's id, Make's `SCN_<id>`, or its name
//!   (exactly one scenario of that name). The callee must be active and start with
//!   `scenario-service:StartSubscenario`.
//! - **Inputs** are checked against the callee's declared types before anything is stored
//!   (`module::subscenario::check_inputs`): the error names `mapper.data.NAME`.
//! - **Nesting.** The chain of callers is read from the stored links; a call deeper than
//!   [`MAX_CALL_DEPTH`], or to a scenario already in the chain, is refused with an error
//!   naming the chain.
//! - **Waiting** calls run the callee in this process at once, on a task of its own (outside
//!   the process's worker slots, so a caller waiting in the last slot cannot starve its
//!   callee), and wait for that task: no polling. The caller's own deadline bounds the wait
//!   (the engine drops the call at the deadline; the callee goes on and finishes on its own).
//!   Calls that do not wait are pushed to the queue, as "run now" does, and answer the new
//!   execution's id at once.

use std::sync::{Arc, Weak};

use futures::future::BoxFuture;
use serde_json::{Map, Value};

use super::runner::Runner;
use super::{Queue, QueueError, Submission};
use crate::catalog::Catalog;
use crate::module::ModuleError;
use crate::module::subscenario::{
    CallOutcome, CallRequest, MAX_CALL_DEPTH, Subscenarios, check_inputs,
};
use crate::scenario::Scenario;
use crate::store::{ExecutionSource, ExecutionStatus, NewExecution, ScenarioRow, StoreError};

/// Starts called scenarios' executions for the modules of one runner's executions.
pub struct CallService {
    catalog: Catalog,
    queue: Queue,
    runner: Weak<Runner>,
}

impl CallService {
    pub fn new(catalog: Catalog, queue: Queue, runner: Weak<Runner>) -> CallService {
        CallService {
            catalog,
            queue,
            runner,
        }
    }

    /// The scenario `reference` names: an id, `SCN_<id>`, or a name.
    async fn resolve(&self, reference: &str) -> Result<ScenarioRow, ModuleError> {
        let reference = reference.trim();
        let id = reference.strip_prefix("SCN_").unwrap_or(reference);
        match self.catalog.store().get_scenario(id).await {
            Ok(row) => return Ok(row),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(store_error(e)),
        }
        let named: Vec<ScenarioRow> = self
            .catalog
            .store()
            .list_scenarios()
            .await
            .map_err(store_error)?
            .into_iter()
            .filter(|s| s.name == reference)
            .collect();
        match named.len() {
            1 => Ok(named.into_iter().next().expect("one")),
            0 => Err(ModuleError::config(format!(
                "parameters.scenario: no scenario has the id or name \"{reference}\""
            ))),
            n => Err(ModuleError::config(format!(
                "parameters.scenario: {n} scenarios are named \"{reference}\": give the id"
            ))),
        }
    }

    /// The chain of scenarios that led to this call, outermost first, as `«name» (id)`,
    /// ending with the callee; `Err` when the call nests too deep or loops.
    async fn check_chain(
        &self,
        caller_execution: &str,
        callee: &ScenarioRow,
    ) -> Result<(), ModuleError> {
        let chain = self
            .catalog
            .store()
            .call_chain(caller_execution, MAX_CALL_DEPTH + 1)
            .await
            .map_err(store_error)?;
        let looping = chain.iter().any(|(_, scenario)| *scenario == callee.id);
        if !looping && chain.len() <= MAX_CALL_DEPTH {
            return Ok(());
        }
        let mut names = Vec::new();
        for (_, scenario) in chain.iter().rev() {
            names.push(match self.catalog.store().get_scenario(scenario).await {
                Ok(row) => format!("«{}» ({})", row.name, row.id),
                Err(_) => format!("({scenario})"),
            });
        }
        names.push(format!("«{}» ({})", callee.name, callee.id));
        let chain = names.join(" → ");
        Err(ModuleError::config(if looping {
            format!(
                "calling «{}» again would make a cycle: {chain}",
                callee.name
            )
        } else {
            format!("calls nest at most {MAX_CALL_DEPTH} deep: {chain}")
        }))
    }

    async fn start(&self, request: CallRequest) -> Result<CallOutcome, ModuleError> {
        let row = self.resolve(&request.scenario).await?;
        if !row.active {
            return Err(ModuleError::config(format!(
                "the called scenario «{}» ({}) is inactive: activate it to call it",
                row.name, row.id
            )));
        }
        let scenario: Arc<Scenario> = match self.catalog.compiled(&row.id, row.version).await {
            Ok(Ok(s)) => s,
            Ok(Err(problem)) => {
                return Err(ModuleError::config(format!(
                    "the called scenario «{}» ({}) does not load: {problem}",
                    row.name, row.id
                )));
            }
            Err(e) => return Err(store_error(e)),
        };
        if !scenario.is_callable() {
            return Err(ModuleError::config(format!(
                "the called scenario «{}» ({}) does not start with \
                 scenario-service:StartSubscenario, so it cannot be called",
                row.name, row.id
            )));
        }
        self.check_chain(&request.caller_execution, &row).await?;
        let inputs = check_inputs(&scenario.interface.input, &request.data, "mapper.data")
            .map_err(|problems| {
                let listed: Vec<String> = problems
                    .iter()
                    .map(|(path, reason)| format!("{path}: {reason}"))
                    .collect();
                ModuleError::data(listed.join("; "))
            })?;
        let inputs = Value::Object(inputs);
        let new = NewExecution {
            scenario_id: &row.id,
            version: row.version,
            source: ExecutionSource::Manual,
            payload: Some(&inputs),
        };
        let store = self.catalog.store();
        let call = Submission::Call {
            new,
            caller: &request.caller_execution,
            module: request.caller_module,
            run_here: request.wait,
        };
        let execution_id = match self.queue.submit(call).await {
            Ok(Some(id)) => id,
            Ok(None) => return Err(ModuleError::runtime("the call was not recorded")),
            Err(QueueError::Store(e)) => return Err(store_error(e)),
            Err(e) => {
                return Err(ModuleError::runtime(format!(
                    "could not queue the call: {e}"
                )));
            }
        };
        if !request.wait {
            return Ok(CallOutcome::Started { execution_id });
        }
        let Some(runner) = self.runner.upgrade() else {
            return Err(ModuleError::runtime("the process is stopping"));
        };
        let id = execution_id.clone();
        // On a task of its own: the caller giving up (its deadline) does not stop the callee.
        let run = tokio::spawn(async move { runner.execute(&id).await });
        match run.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(ModuleError::runtime(format!(
                    "the called execution {execution_id} could not be run: {e}"
                )));
            }
            Err(e) => {
                return Err(ModuleError::runtime(format!(
                    "the called execution {execution_id} stopped: {e}"
                )));
            }
        }
        let finished = store
            .get_execution(&execution_id)
            .await
            .map_err(store_error)?;
        match finished.status {
            ExecutionStatus::Success => {
                let mut outputs: Map<String, Value> = scenario
                    .interface
                    .output
                    .iter()
                    .map(|f| (f.name.clone(), Value::Null))
                    .collect();
                if let Some(Value::Object(returned)) =
                    finished.report.as_ref().and_then(|r| r.get("outputs"))
                {
                    outputs.extend(returned.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                Ok(CallOutcome::Finished {
                    execution_id,
                    outputs,
                })
            }
            status => {
                let (name, message) = match &finished.error {
                    Some(e) => (
                        e.get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("Error")
                            .to_string(),
                        e.get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    ),
                    None => (status.to_string(), String::new()),
                };
                Err(ModuleError::runtime(format!(
                    "the called scenario «{}» ended {status} (execution {execution_id}): {name}: {message}",
                    row.name
                )))
            }
        }
    }
}

impl Subscenarios for CallService {
    fn call(&self, request: CallRequest) -> BoxFuture<'_, Result<CallOutcome, ModuleError>> {
        Box::pin(self.start(request))
    }
}

fn store_error(e: StoreError) -> ModuleError {
    ModuleError::runtime(format!("the store could not be read: {e}"))
}
