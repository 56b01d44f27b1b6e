//! Runs one execution of a compiled scenario with Make's semantics: cycles, depth-first bundle
//! flow, routers, filters, iterators and aggregators, variables, error routes and directives.
//!
//! The flow is walked with an explicit work stack rather than recursion, so a bundle's path
//! can be arbitrarily long without growing the thread's stack, and "after every bundle below
//! this module is done" (an aggregator's flush, a router's next route) is just an item pushed
//! underneath the bundles it waits for.
//!
//! Every execution runs within its [`Budget`]: operations are counted before they run, the
//! wall time is checked every 64th work item and bounds each module call (a call that hangs
//! is cut off at the deadline), and the bytes of bundles held (on the work stack, in open
//! aggregations, in the log, parked) are metered as they are produced. Running out ends the
//! execution at once, rolled back, with an `ExecutionInterruptedError` no handler catches.
//! The log keeps the first [`Budget::log_bundles_per_module`] outputs of each module, and
//! the report the inputs (evaluated mappers) of as many of its first operations.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use tokio::time::Instant;

use crate::expr::value::{
    MAX_VALUE_BYTES, estimated_size, text_len, to_number, to_text, write_text,
};
use crate::scenario::compiled::*;

use super::budget::{BUNDLE_OVERHEAD, Budget, Exceeded, Meter};
use super::bundle::{Ancestry, BundleScope};
use super::filter::passes;
use super::report::*;
use super::system::SystemVariables;
use crate::module::polling::{self, PollRequest, TriggerCommit, TriggerState};
use crate::module::{ErrorKind, ExecutionContext, Invocation, ModuleError, ModuleKind};

/// The largest input of an operation kept whole in the report, in estimated bytes
/// ([`estimated_size`]); a larger one is kept as a truncation marker.
pub const MAX_LOGGED_INPUT_BYTES: usize = 256 << 10;

/// What an execution starts from.
#[derive(Debug, Clone, Default)]
pub struct RunInput {
    /// Bundles for an input trigger (`gateway:CustomWebHook`, `util:BasicTrigger`).
    pub bundles: Vec<Value>,
    /// The execution's identity and the services modules may reach
    /// ([`Invocation::context`](crate::module::Invocation::context)).
    pub context: ExecutionContext,
    /// Counters of `util:FunctionIncrement` modules that never reset, by module id.
    pub counters: HashMap<u32, i64>,
    /// Resume a bundle parked by Break: run module `module` again on the stored ancestry
    /// instead of reading the trigger.
    pub resume: Option<Resume>,
    /// A polling trigger's stored state (`None`: empty, as on its first run).
    pub trigger: Option<TriggerState>,
    /// Told the `gateway:WebhookRespond` reply the moment that module runs, as Make answers
    /// the webhook's caller then and not when the execution ends.
    pub respond: Option<Responder>,
    /// What the execution may spend (time, operations, bytes held, bundles logged).
    pub budget: Budget,
    /// The base URL the service is reached at (`--public-url`), for the system variables
    /// `var.scenario.url` and `var.execution.url`; `None` leaves them `null`.
    pub public_url: Option<String>,
    /// Further system roots the process provides, by name: the integrations' `bot` and
    /// `user` (`crate::module::connection::token_roots`). A root not given reads as `null`.
    pub roots: serde_json::Map<String, Value>,
}

/// Hands a `gateway:WebhookRespond` reply to whoever waits for it (see
/// [`RunInput::respond`]).
#[derive(Clone)]
pub struct Responder(Arc<dyn Fn(&WebhookResponse) + Send + Sync>);

impl Responder {
    pub fn new(respond: impl Fn(&WebhookResponse) + Send + Sync + 'static) -> Self {
        Responder(Arc::new(respond))
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

/// Where and with what a parked bundle resumes.
#[derive(Debug, Clone)]
pub struct Resume {
    pub module: u32,
    /// Outputs of the modules before it, by module id ([`Incomplete::bundle`]).
    pub bundle: Map<String, Value>,
}

/// Runs one execution to its end and reports what happened.
pub async fn run(scenario: &Scenario, input: RunInput) -> Report {
    let resume = input.resume.clone();
    let mut execution = Execution::new(scenario, input);
    execution.run(resume).await;
    execution.report()
}

enum Work {
    /// A bundle arrives at a module (its filter already checked when `filtered`).
    Run {
        node: Ix,
        ancestry: Ancestry,
        filtered: bool,
    },
    /// Offer the bundle to the router's route `route`, then the following ones.
    Route {
        router: Ix,
        route: usize,
        ancestry: Ancestry,
        any_passed: bool,
    },
    /// A merging if-else branch ended: the merge module gets the bundle as its `slot`-th input.
    Merge {
        node: Ix,
        slot: usize,
        ancestry: Ancestry,
    },
    /// Every bundle below one run of the aggregator's feeder is done: emit the aggregate.
    Flush { aggregator: Ix, ancestry: Ancestry },
}

impl Work {
    /// The module this item is about.
    fn node(&self) -> Ix {
        match self {
            Work::Run { node, .. } | Work::Merge { node, .. } => *node,
            Work::Route { router, .. } => *router,
            Work::Flush { aggregator, .. } => *aggregator,
        }
    }
}

enum Stop {
    Commit,
    Rollback(ReportError),
}

#[derive(Default)]
struct Accumulation {
    groups: Vec<(Option<String>, Vec<Value>)>,
    index: HashMap<String, usize>,
    /// The bytes of its items and keys, counted by the execution's meter until it is flushed.
    bytes: u64,
}

struct Execution<'s> {
    scenario: &'s Scenario,
    context: ExecutionContext,
    input: std::vec::IntoIter<Value>,
    timezone: chrono_tz::Tz,
    stack: Vec<Work>,
    /// Open aggregations per aggregator, indexed like `Scenario::nodes`; the innermost last.
    accumulations: Vec<Vec<Accumulation>>,
    execution_vars: Map<String, Value>,
    cycle_vars: Map<String, Value>,
    counters: HashMap<u32, i64>,
    cycle_counters: HashMap<u32, i64>,
    stop: Option<Stop>,
    operations: u64,
    cycles: u32,
    log: Vec<LogEntry>,
    inputs: Vec<InputEntry>,
    response: Option<WebhookResponse>,
    respond: Option<Responder>,
    incomplete: Vec<Incomplete>,
    stats: Vec<ModuleStats>,
    /// Position in `stats` of each module's counters, indexed like `Scenario::nodes`.
    stats_index: Vec<Option<usize>>,
    trigger: TriggerRun,
    budget: Budget,
    /// When the wall time runs out (`None`: too far to represent).
    deadline: Option<Instant>,
    /// Bytes of bundle data held right now.
    meter: Meter,
    /// Make's system variables (`{{var.…}}`) of this execution.
    system: SystemVariables,
    /// Bytes of module output produced so far (`var.execution.dataConsumed`).
    data_bytes: u64,
    /// What `scenario-service:ReturnData` returned (the execution ended there).
    outputs: Option<Map<String, Value>>,
}

/// A polling trigger's state through an execution.
#[derive(Default)]
struct TriggerRun {
    /// What the next poll reads: the stored state plus every poll of this execution.
    state: TriggerState,
    /// The change read by the current cycle, committed when the cycle ends without rollback.
    pending: Option<TriggerCommit>,
    /// The change of every committed cycle: what the report hands back to be stored.
    committed: Option<TriggerCommit>,
    /// Whether the last poll left new items for another cycle.
    more: bool,
}

impl<'s> Execution<'s> {
    fn new(scenario: &'s Scenario, input: RunInput) -> Self {
        let system = SystemVariables::new(
            scenario,
            &input.context,
            input.public_url.as_deref(),
            chrono::Utc::now(),
        )
        .with_roots(input.roots.clone());
        // A called scenario reads its inputs as `var.input` too: every declared input, then
        // what the call gave.
        let system = if scenario.is_callable() {
            let mut inputs: Map<String, Value> = scenario
                .interface
                .input
                .iter()
                .map(|f| (f.name.clone(), Value::Null))
                .collect();
            if let Some(Value::Object(given)) = input.bundles.first() {
                inputs.extend(given.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            system.with_input(Value::Object(inputs))
        } else {
            system
        };
        Execution {
            outputs: None,
            system,
            data_bytes: 0,
            scenario,
            context: input.context,
            input: input.bundles.into_iter(),
            timezone: chrono_tz::UTC,
            stack: Vec::new(),
            accumulations: (0..scenario.nodes.len()).map(|_| Vec::new()).collect(),
            execution_vars: Map::new(),
            cycle_vars: Map::new(),
            counters: input.counters,
            cycle_counters: HashMap::new(),
            stop: None,
            operations: 0,
            cycles: 0,
            log: Vec::new(),
            inputs: Vec::new(),
            response: None,
            respond: input.respond,
            incomplete: Vec::new(),
            stats: Vec::new(),
            stats_index: vec![None; scenario.nodes.len()],
            trigger: TriggerRun {
                state: input.trigger.unwrap_or_default(),
                ..TriggerRun::default()
            },
            budget: input.budget,
            deadline: Instant::now().checked_add(input.budget.wall_time()),
            meter: Meter::default(),
        }
    }

    /// Ends the execution because budget `exceeded` ran out at module `ix` (`spent`: what
    /// it would have taken): rolled back, as an unhandled error, but no error route or `dlq`
    /// setting takes it.
    fn interrupt(&mut self, ix: Ix, exceeded: Exceeded, spent: u64) {
        let module = self.scenario.nodes[ix].id;
        tracing::debug!(module, budget = exceeded.name(), "execution interrupted");
        if self.stop.is_none() {
            self.stop = Some(Stop::Rollback(exceeded.error(&self.budget, module, spent)));
        }
    }

    /// Counts one operation of module `ix`, unless the budget is spent: then the execution
    /// is interrupted and `false` returned (the operation must not run).
    fn spend_operation(&mut self, ix: Ix) -> bool {
        if self.operations >= self.budget.operations() {
            self.interrupt(ix, Exceeded::Operations, self.operations + 1);
            return false;
        }
        self.operations += 1;
        true
    }

    /// Keeps the input of an operation of module `ix` — its evaluated mapper, unless that is
    /// empty — when it is among the module's first [`Budget::log_bundles_per_module`]; held
    /// until the end like a logged output. An input over [`MAX_LOGGED_INPUT_BYTES`] is kept
    /// as `{"__truncated__": true, "bytes": N}` (N estimated) instead of being copied: an
    /// iterator's array is its upstream's output again, and more than the store keeps of one
    /// bundle. `input` is made only when it is kept. False when holding it is over the budget
    /// (the execution is then interrupted).
    fn log_input<'v>(&mut self, ix: Ix, input: impl FnOnce() -> Cow<'v, Value>) -> bool {
        let room = self.budget.log_bundles_per_module();
        if self.stats(ix).inputs_logged >= room {
            return true;
        }
        let input = input();
        if input.as_object().is_some_and(Map::is_empty) || input.is_null() {
            return true;
        }
        self.stats(ix).inputs_logged += 1;
        let size = estimated_size(&input);
        let input = match size > MAX_LOGGED_INPUT_BYTES {
            true => json!({"__truncated__": true, "bytes": size}),
            false => input.into_owned(),
        };
        let bytes = estimated_size(&input) as u64 + BUNDLE_OVERHEAD;
        self.inputs.push(InputEntry {
            module: self.scenario.nodes[ix].id,
            input: Arc::new(input),
        });
        self.hold(ix, bytes)
    }

    /// Counts `bytes` more held (the caller gives them back, or they stay until the end);
    /// interrupts the execution at module `ix` (and returns `false`) when that is over the
    /// budget.
    fn hold(&mut self, ix: Ix, bytes: u64) -> bool {
        self.within_bytes(ix, self.meter.add(bytes))
    }

    /// Whether `held` bytes are within the budget; interrupts the execution at `ix` if not.
    fn within_bytes(&mut self, ix: Ix, held: u64) -> bool {
        if held > self.budget.bundle_bytes() {
            self.interrupt(ix, Exceeded::BundleBytes, held);
            return false;
        }
        true
    }

    fn out_of_time(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn report(self) -> Report {
        let (status, error) = match self.stop {
            Some(Stop::Rollback(e)) => (Status::Error, Some(e)),
            _ if !self.incomplete.is_empty() => (Status::Incomplete, None),
            _ => (Status::Success, None),
        };
        Report {
            status,
            operations: self.operations,
            cycles: self.cycles,
            log: self.log,
            inputs: self.inputs,
            error,
            response: self.response,
            incomplete: self.incomplete,
            stats: self.stats,
            trigger: self.trigger.committed,
            outputs: self.outputs,
        }
    }

    fn stats(&mut self, ix: Ix) -> &mut ModuleStats {
        let i = match self.stats_index[ix] {
            Some(i) => i,
            None => {
                self.stats.push(ModuleStats {
                    module: self.scenario.nodes[ix].id,
                    ..ModuleStats::default()
                });
                self.stats_index[ix] = Some(self.stats.len() - 1);
                self.stats.len() - 1
            }
        };
        &mut self.stats[i]
    }

    async fn run(&mut self, resume: Option<Resume>) {
        if let Some(resume) = resume {
            return self.resume(resume).await;
        }
        let Some(entry) = self.scenario.entry else {
            return;
        };
        for cycle in 1..=self.scenario.settings.roundtrips {
            self.cycle_vars.clear();
            self.cycle_counters.clear();
            let node = &self.scenario.nodes[entry];
            match &node.kind {
                NodeKind::InputTrigger { max_results, .. } => {
                    let bundles: Vec<Value> = match max_results {
                        Some(n) => self.input.by_ref().take(*n).collect(),
                        None => self.input.by_ref().collect(),
                    };
                    if bundles.is_empty() && cycle > 1 {
                        break;
                    }
                    self.cycles += 1;
                    if !self.spend_operation(entry) {
                        break;
                    }
                    self.stats(entry).runs += 1;
                    self.emit(entry, &Ancestry::default(), bundles);
                }
                NodeKind::Module(module) if module.kind() == ModuleKind::Trigger => {
                    self.cycles += 1;
                    let produced = self.call(entry, &Ancestry::default()).await;
                    if produced == Some(0) {
                        // Nothing new, but the poll may still have moved the cursor.
                        self.end_cycle();
                        break;
                    }
                }
                // A scenario that does not start with a trigger runs its first module once.
                _ => {
                    if cycle > 1 {
                        break;
                    }
                    self.cycles += 1;
                    self.stack.push(Work::Run {
                        node: entry,
                        ancestry: Ancestry::default(),
                        filtered: true,
                    });
                }
            }
            self.drain().await;
            self.end_cycle();
            let exhausted = match node.kind {
                NodeKind::InputTrigger { .. } => self.input.len() == 0,
                NodeKind::Module(_) => !self.trigger.more,
                _ => false,
            };
            if self.stop.is_some() || exhausted {
                break;
            }
        }
    }

    /// A cycle ended: its trigger state change is committed unless it rolled back.
    fn end_cycle(&mut self) {
        let Some(change) = self.trigger.pending.take() else {
            return;
        };
        if matches!(self.stop, Some(Stop::Rollback(_))) {
            return;
        }
        match &mut self.trigger.committed {
            Some(committed) => committed.then(change),
            None => self.trigger.committed = Some(change),
        }
    }

    async fn resume(&mut self, resume: Resume) {
        let Some(&ix) = self.scenario.by_id.get(&resume.module) else {
            let message = format!(
                "module {} no longer exists in this scenario version",
                resume.module
            );
            let error = ReportError {
                module: resume.module,
                name: ErrorKind::InconsistencyError.name().into(),
                message,
                details: None,
            };
            self.stop = Some(Stop::Rollback(error));
            return;
        };
        self.cycles = 1;
        self.stack.push(Work::Run {
            node: ix,
            ancestry: Ancestry::from_map(&resume.bundle),
            filtered: true,
        });
        self.drain().await;
        self.end_cycle();
    }

    async fn drain(&mut self) {
        let mut items = 0u32;
        while let Some(work) = self.stack.pop() {
            // Reading the clock costs about as much as a small work item: every 64th item
            // (a module call is bounded by the deadline on its own).
            items = items.wrapping_add(1);
            if items % 64 == 1 && self.stop.is_none() && self.out_of_time() {
                self.interrupt(work.node(), Exceeded::WallTime, 0);
            }
            if self.stop.is_some() {
                self.stack.clear();
                break;
            }
            // Flow control never waits: give the thread back now and then (after Tokio's
            // cooperative budget of work), so a long flow shares its thread and its caller
            // can tell a light execution from a heavy one (`queue::EnginePool`).
            tokio::task::consume_budget().await;
            match work {
                Work::Run {
                    node,
                    ancestry,
                    filtered,
                } => self.arrive(node, ancestry, filtered).await,
                Work::Route {
                    router,
                    route,
                    ancestry,
                    any_passed,
                } => self.route(router, route, ancestry, any_passed),
                Work::Merge {
                    node,
                    slot,
                    ancestry,
                } => self.merge(node, slot, ancestry),
                Work::Flush {
                    aggregator,
                    ancestry,
                } => self.flush(aggregator, ancestry),
            }
        }
    }

    fn scope<'a>(&'a self, ancestry: &'a Ancestry) -> BundleScope<'a> {
        BundleScope {
            ancestry,
            execution_id: &self.context.execution_id,
            timezone: self.timezone,
            system: &self.system,
            operations: self.operations,
            data_bytes: self.data_bytes,
            var: std::cell::OnceCell::new(),
        }
    }

    /// Whether the bundle passes the module's filter; a failing filter is the module's error.
    fn filter_passes(&mut self, ix: Ix, ancestry: &Ancestry) -> bool {
        let node = &self.scenario.nodes[ix];
        let Some(filter) = &node.filter else {
            return true;
        };
        match passes(filter, &self.scope(ancestry)) {
            Ok(true) => true,
            Ok(false) => {
                self.stats(ix).filtered += 1;
                false
            }
            Err(e) => {
                self.fail(ix, ancestry, e);
                false
            }
        }
    }

    /// Sends a bundle on to wherever `next` points.
    fn forward(&mut self, next: Next, ancestry: Ancestry) {
        match next {
            Next::End => {}
            Next::Node(node) => self.stack.push(Work::Run {
                node,
                ancestry,
                filtered: false,
            }),
            Next::Merge { node, slot } => self.stack.push(Work::Merge {
                node,
                slot,
                ancestry,
            }),
        }
    }

    /// Records a module's output bundles and sends each, depth first, down the rest of the flow.
    /// The first [`Budget::log_bundles_per_module`] of the module's outputs are logged (and
    /// held until the end); every other output's bytes are held while its bundle is in flight.
    fn emit(&mut self, ix: Ix, ancestry: &Ancestry, outputs: Vec<Value>) {
        let scenario = self.scenario;
        let node = &scenario.nodes[ix];
        let log_room = self.budget.log_bundles_per_module();
        let stats = self.stats(ix);
        stats.bundles_out += outputs.len() as u64;
        let logged = log_room
            .saturating_sub(stats.logged)
            .min(outputs.len() as u64);
        stats.logged += logged;
        let mut bundles = Vec::with_capacity(outputs.len());
        let mut logged_bytes = 0u64;
        for (k, output) in outputs.into_iter().enumerate() {
            let bytes = estimated_size(&output) as u64 + BUNDLE_OVERHEAD;
            self.data_bytes += bytes - BUNDLE_OVERHEAD;
            let output = Arc::new(output);
            if (k as u64) < logged {
                self.log.push(LogEntry {
                    module: node.id,
                    output: Arc::clone(&output),
                });
                logged_bytes += bytes;
                bundles.push((output, None));
            } else {
                bundles.push((output, Some(self.meter.hold(bytes))));
            }
        }
        if !self.hold(ix, logged_bytes) {
            return;
        }
        for &a in &scenario.feeds[ix] {
            self.accumulations[a].push(Accumulation::default());
            self.stack.push(Work::Flush {
                aggregator: a,
                ancestry: ancestry.clone(),
            });
        }
        for (output, held) in bundles.into_iter().rev() {
            self.forward(node.next, ancestry.with_held(node.id, output, held));
        }
    }

    async fn arrive(&mut self, ix: Ix, ancestry: Ancestry, filtered: bool) {
        if !filtered && !self.filter_passes(ix, &ancestry) {
            return;
        }
        let scenario = self.scenario;
        let node = &scenario.nodes[ix];
        match &node.kind {
            NodeKind::Router { .. } => {
                self.stack.push(Work::Route {
                    router: ix,
                    route: 0,
                    ancestry,
                    any_passed: false,
                });
            }
            NodeKind::IfElse { branches } => {
                for branch in branches.iter().filter(|b| !b.disabled) {
                    let chosen = match &branch.condition {
                        None => true,
                        Some(condition) => match passes(condition, &self.scope(&ancestry)) {
                            Ok(pass) => pass,
                            Err(e) => return self.fail(ix, &ancestry, e),
                        },
                    };
                    if chosen {
                        match branch.first {
                            Some(first) => self.stack.push(Work::Run {
                                node: first,
                                ancestry,
                                filtered: false,
                            }),
                            None => self.forward(branch.end, ancestry),
                        }
                        return;
                    }
                }
            }
            NodeKind::Directive(directive) => self.directive(ix, *directive, ancestry),
            NodeKind::Aggregator(agg) => self.accumulate(ix, agg, &ancestry),
            NodeKind::ReturnData => self.return_data(ix, ancestry),
            NodeKind::Module(_) | NodeKind::InputTrigger { .. } => {
                self.call(ix, &ancestry).await;
            }
            _ => {
                if !self.spend_operation(ix) {
                    return;
                }
                self.stats(ix).runs += 1;
                match self.builtin(ix, &ancestry) {
                    Ok(Some(outputs)) => self.emit(ix, &ancestry, outputs),
                    Ok(None) => self.forward(node.next, ancestry),
                    Err(e) => self.fail(ix, &ancestry, e),
                }
            }
        }
    }

    /// Evaluates a module's mapper against the bundle (an empty object when it has none).
    fn mapper(&self, ix: Ix, ancestry: &Ancestry) -> Result<Value, ModuleError> {
        match &self.scenario.nodes[ix].mapper {
            None => Ok(Value::Object(Map::new())),
            Some(m) => m.eval(&self.scope(ancestry)).map_err(|(path, e)| {
                ModuleError::data(format!("mapper.{path}: {e}").replace("mapper.:", "mapper:"))
            }),
        }
    }

    /// Runs a [`Module`](crate::module::Module); returns how many bundles it produced, or
    /// `None` when it failed.
    async fn call(&mut self, ix: Ix, ancestry: &Ancestry) -> Option<usize> {
        let scenario = self.scenario;
        let node = &scenario.nodes[ix];
        let NodeKind::Module(module) = &node.kind else {
            return Some(0);
        };
        if !self.spend_operation(ix) {
            return None;
        }
        self.stats(ix).runs += 1;
        let deadline = self.deadline;
        // Set when the call was cut off at the deadline (the wall time ran out inside it).
        let mut out_of_time = false;
        let result = match self.mapper(ix, ancestry) {
            Ok(mapper) => {
                if !self.log_input(ix, || Cow::Borrowed(&mapper)) {
                    return None;
                }
                let invocation = Invocation {
                    module_id: node.id,
                    module: &node.module,
                    parameters: &node.parameters,
                    mapper,
                    context: &self.context,
                };
                if module.kind() == ModuleKind::Trigger {
                    match polling::limit(&node.parameters) {
                        Ok(limit) => {
                            self.trigger.more = false;
                            let request = PollRequest {
                                state: &self.trigger.state,
                                limit,
                            };
                            match before(deadline, module.poll(invocation, request)).await {
                                Some(Ok(polled)) => {
                                    self.trigger.state.apply(&polled.change);
                                    self.trigger.pending = Some(polled.change);
                                    self.trigger.more = polled.more;
                                    Ok(polled.bundles)
                                }
                                Some(Err(e)) => Err(e),
                                None => {
                                    out_of_time = true;
                                    Ok(Vec::new())
                                }
                            }
                        }
                        Err((field, reason)) => {
                            Err(ModuleError::config(format!("{field}: {reason}")))
                        }
                    }
                } else {
                    before(deadline, module.call(invocation))
                        .await
                        .unwrap_or_else(|| {
                            out_of_time = true;
                            Ok(Vec::new())
                        })
                }
            }
            Err(e) => Err(e),
        };
        if out_of_time {
            self.interrupt(ix, Exceeded::WallTime, 0);
            return None;
        }
        match result {
            Ok(outputs) => {
                let n = outputs.len();
                self.emit(ix, ancestry, outputs);
                Some(n)
            }
            Err(e) => {
                self.fail(ix, ancestry, e);
                None
            }
        }
    }

    /// `scenario-service:ReturnData`: its mapper, evaluated, is the execution's outputs, and
    /// the execution ends here, committed (Make: "always finishes the scenario run"; the
    /// modules of later routes do not run). It costs no operation, as in Make.
    fn return_data(&mut self, ix: Ix, ancestry: Ancestry) {
        self.stats(ix).runs += 1;
        let mapper = match self.mapper(ix, &ancestry) {
            Ok(mapper) => mapper,
            Err(e) => return self.fail(ix, &ancestry, e),
        };
        if !self.log_input(ix, || Cow::Borrowed(&mapper)) {
            return;
        }
        let outputs = into_object(mapper);
        self.emit(ix, &ancestry, vec![Value::Object(outputs.clone())]);
        self.outputs = Some(outputs);
        if self.stop.is_none() {
            self.stop = Some(Stop::Commit);
        }
    }

    fn variables(&mut self, scope: VariableScope) -> &mut Map<String, Value> {
        match scope {
            VariableScope::Roundtrip => &mut self.cycle_vars,
            VariableScope::Execution => &mut self.execution_vars,
        }
    }

    /// The executor's own modules. `Ok(None)` passes the bundle on unchanged.
    fn builtin(&mut self, ix: Ix, ancestry: &Ancestry) -> Result<Option<Vec<Value>>, ModuleError> {
        let scenario = self.scenario;
        let node = &scenario.nodes[ix];
        let mapper = match &node.kind {
            NodeKind::SetVariables {
                single: Some(_), ..
            } => Value::Null,
            _ => self.mapper(ix, ancestry)?,
        };
        if !self.log_input(ix, || Cow::Borrowed(&mapper)) {
            // Interrupted: nothing runs after this.
            return Ok(Some(Vec::new()));
        }
        Ok(Some(match &node.kind {
            NodeKind::Iterator => {
                let array = match mapper {
                    Value::Object(mut fields) => fields.remove("array"),
                    _ => None,
                };
                let items = match array {
                    Some(Value::Array(items)) => items,
                    None | Some(Value::Null) => Vec::new(),
                    Some(other) => vec![other],
                };
                // Every bundle an iterator makes is held at once (they wait on the work
                // stack): measured before any is built, as that is where a big array would
                // take an execution's memory.
                let room = self.budget.bundle_bytes().saturating_sub(self.meter.held());
                let wrapper = iterator_wrapper_bytes();
                let mut projected = 0u64;
                for item in &items {
                    projected += estimated_size(item) as u64 + BUNDLE_OVERHEAD;
                    projected += if item.is_object() {
                        wrapper.counters
                    } else {
                        wrapper.object
                    };
                    if projected > room {
                        let spent = self.meter.held() + projected;
                        self.interrupt(ix, Exceeded::BundleBytes, spent);
                        return Ok(Some(Vec::new()));
                    }
                }
                let total = items.len();
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let mut bundle = match item {
                            Value::Object(map) => map,
                            other => Map::from_iter([("value".to_string(), other)]),
                        };
                        bundle.insert("__IMTINDEX__".into(), json!(i + 1));
                        bundle.insert("__IMTLENGTH__".into(), json!(total));
                        Value::Object(bundle)
                    })
                    .collect()
            }
            NodeKind::Repeater => {
                let number = |key: &str, default: f64| match mapper.get(key) {
                    None | Some(Value::Null) => Ok(default),
                    Some(v) => to_number(v).ok_or_else(|| {
                        ModuleError::data(format!("mapper.{key}: expected a number, got {v}"))
                    }),
                };
                let (start, repeats, step) = (
                    number("start", 1.0)?,
                    number("repeats", 1.0)?,
                    number("step", 1.0)?,
                );
                if !(0.0..=10_000.0).contains(&repeats) || repeats.fract() != 0.0 {
                    return Err(ModuleError::data(format!(
                        "mapper.repeats: expected a whole number from 0 to 10000, got {repeats}"
                    )));
                }
                (0..repeats as u64)
                    .map(|k| json!({"i": crate::expr::value::number(start + k as f64 * step)}))
                    .collect()
            }
            NodeKind::SetVariables {
                scope,
                single: Some((name, value)),
                ..
            } => {
                let value = value.eval(&self.scope(ancestry)).map_err(|(path, e)| {
                    ModuleError::data(format!(
                        "mapper.value{}: {e}",
                        if path.is_empty() {
                            String::new()
                        } else {
                            format!(".{path}")
                        }
                    ))
                })?;
                // Its input as Make shows it: the variable's name, scope and value.
                let scope_name = match scope {
                    VariableScope::Roundtrip => "roundtrip",
                    VariableScope::Execution => "execution",
                };
                let input =
                    || Cow::Owned(json!({"name": name, "scope": scope_name, "value": value}));
                if !self.log_input(ix, input) {
                    return Ok(Some(Vec::new()));
                }
                let vars = self.variables(*scope);
                vars.insert(name.clone(), value.clone());
                vec![Value::Object(Map::from_iter([(name.clone(), value)]))]
            }
            NodeKind::SetVariables {
                scope,
                form,
                single: None,
            } => {
                let mut fields = into_object(mapper);
                let pairs: Vec<(String, Value)> = if *form == VariableForm::One {
                    let name = variable_name(fields.remove("name"), "mapper.name")?;
                    vec![(name, fields.remove("value").unwrap_or(Value::Null))]
                } else {
                    let list = match fields.remove("variables") {
                        Some(Value::Array(list)) => list,
                        _ => Vec::new(),
                    };
                    let mut pairs = Vec::with_capacity(list.len());
                    for (k, item) in list.into_iter().enumerate() {
                        let mut item = into_object(item);
                        let name = variable_name(
                            item.remove("name"),
                            &format!("mapper.variables[{k}].name"),
                        )?;
                        pairs.push((name, item.remove("value").unwrap_or(Value::Null)));
                    }
                    pairs
                };
                let vars = self.variables(*scope);
                let mut output = Map::new();
                for (name, value) in pairs {
                    output.insert(name.clone(), value.clone());
                    vars.insert(name, value);
                }
                vec![Value::Object(output)]
            }
            NodeKind::GetVariables { form } => {
                let mut fields = into_object(mapper);
                let names: Vec<String> = if *form == VariableForm::One {
                    vec![variable_name(fields.remove("name"), "mapper.name")?]
                } else {
                    let list = match fields.remove("variables") {
                        Some(Value::Array(list)) => list,
                        _ => Vec::new(),
                    };
                    list.into_iter()
                        .enumerate()
                        .map(|(k, v)| match v {
                            Value::Object(mut item) => variable_name(
                                item.remove("name"),
                                &format!("mapper.variables[{k}].name"),
                            ),
                            other => variable_name(Some(other), &format!("mapper.variables[{k}]")),
                        })
                        .collect::<Result<_, _>>()?
                };
                let mut output = Map::new();
                for name in names {
                    // A cycle variable shadows an execution variable of the same name.
                    let value = self
                        .cycle_vars
                        .get(&name)
                        .or_else(|| self.execution_vars.get(&name))
                        .cloned();
                    output.insert(name, value.unwrap_or(Value::Null));
                }
                vec![Value::Object(output)]
            }
            NodeKind::Increment { reset } => {
                let counter = match reset {
                    IncrementReset::Cycle => self.cycle_counters.entry(node.id).or_insert(0),
                    IncrementReset::Execution | IncrementReset::Never => {
                        self.counters.entry(node.id).or_insert(0)
                    }
                };
                *counter += 1;
                vec![json!({"i": *counter})]
            }
            NodeKind::WebhookRespond => {
                let response = webhook_response(&mapper)?;
                if self.response.is_some() {
                    return Err(ModuleError::runtime(
                        "this execution has already answered its webhook call",
                    ));
                }
                if let Some(respond) = &self.respond {
                    (respond.0)(&response);
                }
                self.response = Some(response);
                return Ok(None);
            }
            _ => return Ok(None),
        }))
    }

    fn route(&mut self, router: Ix, k: usize, ancestry: Ancestry, any_passed: bool) {
        let scenario = self.scenario;
        let NodeKind::Router { routes } = &scenario.nodes[router].kind else {
            return;
        };
        let Some(route) = routes.get(k) else {
            // Every ordinary route has been offered the bundle: the fallback runs if none took it.
            if !any_passed
                && let Some(first) = routes
                    .iter()
                    .find(|r| r.fallback && !r.disabled)
                    .and_then(|r| r.first)
            {
                self.stack.push(Work::Run {
                    node: first,
                    ancestry,
                    filtered: false,
                });
            }
            return;
        };
        let Some(first) = route.first.filter(|_| !route.disabled && !route.fallback) else {
            self.stack.push(Work::Route {
                router,
                route: k + 1,
                ancestry,
                any_passed,
            });
            return;
        };
        let pass = self.filter_passes(first, &ancestry);
        self.stack.push(Work::Route {
            router,
            route: k + 1,
            ancestry: ancestry.clone(),
            any_passed: any_passed || pass,
        });
        if pass {
            self.stack.push(Work::Run {
                node: first,
                ancestry,
                filtered: true,
            });
        }
    }

    fn merge(&mut self, ix: Ix, slot: usize, ancestry: Ancestry) {
        let scenario = self.scenario;
        let NodeKind::Merge { outputs } = &scenario.nodes[ix].kind else {
            return;
        };
        let mut bundle = Map::new();
        for (name, mappings) in outputs {
            let value = match mappings.get(slot) {
                Some(t) => match t.eval(&self.scope(&ancestry)) {
                    Ok(v) => v,
                    Err(e) => {
                        return self.fail(
                            ix,
                            &ancestry,
                            ModuleError::data(format!("output \"{name}\": {e}")),
                        );
                    }
                },
                None => Value::Null,
            };
            bundle.insert(name.clone(), value);
        }
        self.stats(ix).runs += 1;
        self.emit(ix, &ancestry, vec![Value::Object(bundle)]);
    }

    fn accumulate(&mut self, ix: Ix, agg: &Aggregator, ancestry: &Ancestry) {
        let scenario = self.scenario;
        let node = &scenario.nodes[ix];
        let item = match &node.mapper {
            None => ancestry
                .get(scenario.nodes[agg.feeder].id)
                .cloned()
                .unwrap_or(Value::Null),
            Some(_) => match self.mapper(ix, ancestry) {
                Ok(Value::Object(mut fields)) => match agg.kind {
                    AggregatorKind::Array => Value::Object(fields),
                    _ => fields.remove("value").unwrap_or(Value::Null),
                },
                Ok(other) => other,
                Err(e) => return self.fail(ix, ancestry, e),
            },
        };
        let key = match &agg.group_by {
            None => None,
            Some(t) => match t.eval(&self.scope(ancestry)) {
                Ok(v) => Some(to_text(&v)),
                Err(e) => {
                    return self.fail(
                        ix,
                        ancestry,
                        ModuleError::data(format!("mapper.groupBy: {e}")),
                    );
                }
            },
        };
        let Some(acc) = self.accumulations[ix].last_mut() else {
            let message = format!(
                "aggregator {} received a bundle that did not come from its source module",
                node.id
            );
            return self.fail(
                ix,
                ancestry,
                ModuleError::new(ErrorKind::InconsistencyError, message),
            );
        };
        let slot = match &key {
            None => {
                if acc.groups.is_empty() {
                    acc.groups.push((None, Vec::new()));
                }
                0
            }
            Some(k) => match acc.index.get(k) {
                Some(&i) => i,
                None => {
                    acc.groups.push((key.clone(), Vec::new()));
                    acc.index.insert(k.clone(), acc.groups.len() - 1);
                    acc.groups.len() - 1
                }
            },
        };
        let bytes = (estimated_size(&item) + key.as_ref().map_or(0, String::len)) as u64;
        acc.bytes += bytes;
        acc.groups[slot].1.push(item);
        self.hold(ix, bytes);
    }

    fn flush(&mut self, ix: Ix, ancestry: Ancestry) {
        let scenario = self.scenario;
        let NodeKind::Aggregator(agg) = &scenario.nodes[ix].kind else {
            return;
        };
        let acc = self.accumulations[ix].pop().unwrap_or_default();
        // Its items move into the aggregate, counted again when it is emitted.
        self.meter.sub(acc.bytes);
        let mut groups = acc.groups;
        if groups.is_empty() {
            if agg.stop_if_empty {
                return;
            }
            if agg.group_by.is_none() {
                groups.push((None, Vec::new()));
            }
        }
        if !self.spend_operation(ix) {
            return;
        }
        self.stats(ix).runs += 1;
        let outputs = groups
            .into_iter()
            .map(|(key, items)| aggregate(&agg.kind, key, items))
            .collect::<Result<_, _>>();
        match outputs {
            Ok(outputs) => self.emit(ix, &ancestry, outputs),
            Err(e) => self.fail(ix, &ancestry, e),
        }
    }

    fn directive(&mut self, ix: Ix, directive: Directive, ancestry: Ancestry) {
        let scenario = self.scenario;
        let node = &scenario.nodes[ix];
        let Some(failed) = node.handles else { return };
        let failed_node = &scenario.nodes[failed];
        let error = ancestry
            .get(failed_node.id)
            .and_then(|o| o.get("error"))
            .cloned()
            .unwrap_or(Value::Null);
        let report_error = report_error_from(failed_node.id, &error);
        match directive {
            Directive::Ignore => {}
            Directive::Commit => self.stop = Some(Stop::Commit),
            Directive::Rollback => self.stop = Some(Stop::Rollback(report_error)),
            Directive::Resume => match self.mapper(ix, &ancestry) {
                Ok(output) => self.emit(failed, &ancestry.before(failed_node.id), vec![output]),
                Err(e) => self.fail(ix, &ancestry, e),
            },
            Directive::Break => {
                let retry = self
                    .mapper(ix, &ancestry)
                    .ok()
                    .filter(|m| m.as_object().is_some_and(|o| !o.is_empty()));
                self.park(
                    failed,
                    &ancestry.before(failed_node.id),
                    report_error,
                    retry,
                );
            }
        }
    }

    /// Stores a bundle as an incomplete execution, to resume at module `ix` later.
    /// Its copy of the ancestry is held until the execution ends.
    fn park(&mut self, ix: Ix, ancestry: &Ancestry, error: ReportError, retry: Option<Value>) {
        let module = self.scenario.nodes[ix].id;
        let bundle = ancestry.to_map();
        let bytes = bundle
            .iter()
            .map(|(id, output)| (id.len() + estimated_size(output)) as u64)
            .sum::<u64>()
            + BUNDLE_OVERHEAD;
        self.incomplete.push(Incomplete {
            module,
            error,
            bundle,
            retry,
        });
        self.hold(ix, bytes);
    }

    /// A module failed on a bundle: its error route takes over, or the scenario's default
    /// (Break when incomplete executions are on, else Rollback).
    fn fail(&mut self, ix: Ix, ancestry: &Ancestry, error: ModuleError) {
        self.stats(ix).errors += 1;
        let scenario = self.scenario;
        let node = &scenario.nodes[ix];
        tracing::debug!(module = node.id, kind = error.kind.name(), "module error");
        if let Some(handler) = node.on_error {
            let output = json!({"error": error});
            self.stack.push(Work::Run {
                node: handler,
                ancestry: ancestry.with(node.id, Arc::new(output)),
                filtered: false,
            });
            return;
        }
        let report_error = ReportError {
            module: node.id,
            name: error.kind.name().to_string(),
            message: error.message,
            details: error.details,
        };
        if scenario.settings.dlq {
            self.park(ix, ancestry, report_error, None);
        } else {
            self.stop = Some(Stop::Rollback(report_error));
        }
    }
}

/// What an iterator adds to an item to make its bundle (as `estimated_size` counts it).
struct IteratorWrapper {
    /// `__IMTINDEX__` and `__IMTLENGTH__`.
    counters: u64,
    /// The counters and the collection `{"value": item}` around an item that is not one.
    object: u64,
}

fn iterator_wrapper_bytes() -> IteratorWrapper {
    let counters = json!({"__IMTINDEX__": 1, "__IMTLENGTH__": 1});
    let object = json!({"value": null, "__IMTINDEX__": 1, "__IMTLENGTH__": 1});
    // Less the value each stands around: the item itself is measured on its own.
    let value = std::mem::size_of::<Value>();
    IteratorWrapper {
        counters: (estimated_size(&counters) - value) as u64,
        object: (estimated_size(&object) - value) as u64,
    }
}

/// Runs `call` until `deadline`; `None` when the deadline came first (the call is dropped).
async fn before<T>(deadline: Option<Instant>, call: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, call).await.ok(),
        None => Some(call.await),
    }
}

fn into_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A variable's name: non-empty text (other values are written as text).
fn variable_name(value: Option<Value>, path: &str) -> Result<String, ModuleError> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(other) if !other.is_null() && !matches!(&other, Value::String(_)) => {
            Ok(to_text(&other))
        }
        _ => Err(ModuleError::data(format!(
            "{path}: a variable needs a name"
        ))),
    }
}

fn report_error_from(module: u32, error: &Value) -> ReportError {
    ReportError {
        module,
        name: error
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("RuntimeError")
            .to_string(),
        message: error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        details: error.get("details").cloned(),
    }
}

/// One group's aggregate. A text aggregate over
/// [`MAX_VALUE_BYTES`](crate::expr::value::MAX_VALUE_BYTES) (a long separator between many
/// items) is refused before it is built.
fn aggregate(
    kind: &AggregatorKind,
    key: Option<String>,
    items: Vec<Value>,
) -> Result<Value, ModuleError> {
    let mut out = Map::new();
    if let Some(key) = key {
        out.insert("key".into(), Value::String(key));
    }
    match kind {
        AggregatorKind::Array => {
            let n = items.len();
            out.insert("array".into(), Value::Array(items));
            out.insert("__IMTAGGLENGTH__".into(), json!(n));
        }
        AggregatorKind::Text { separator } => {
            let len = items
                .iter()
                .map(text_len)
                .fold(0usize, usize::saturating_add)
                .saturating_add(
                    separator
                        .len()
                        .saturating_mul(items.len().saturating_sub(1)),
                );
            if len > MAX_VALUE_BYTES {
                return Err(ModuleError::data(format!(
                    "the text would take {len} bytes, more than one value may take ({MAX_VALUE_BYTES} bytes)"
                )));
            }
            let mut text = String::with_capacity(len);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    text.push_str(separator);
                }
                write_text(&mut text, item);
            }
            out.insert("text".into(), Value::String(text));
        }
        AggregatorKind::Numeric(function) => {
            let numbers: Vec<f64> = items.iter().filter_map(to_number).collect();
            let result = match function {
                NumericFunction::Count => Some(items.len() as f64),
                NumericFunction::Sum => Some(numbers.iter().sum()),
                NumericFunction::Avg if numbers.is_empty() => None,
                NumericFunction::Avg => Some(numbers.iter().sum::<f64>() / numbers.len() as f64),
                NumericFunction::Min => numbers.iter().copied().reduce(f64::min),
                NumericFunction::Max => numbers.iter().copied().reduce(f64::max),
            };
            out.insert(
                "result".into(),
                result
                    .map(crate::expr::value::number)
                    .unwrap_or(Value::Null),
            );
        }
    }
    Ok(Value::Object(out))
}

/// `gateway:WebhookRespond`'s mapper `{status, body, headers: [{key, value}]}` → a reply.
fn webhook_response(mapper: &Value) -> Result<WebhookResponse, ModuleError> {
    let status = match mapper.get("status") {
        None | Some(Value::Null) => 200,
        Some(v) => match to_number(v) {
            Some(n) if (100.0..=599.0).contains(&n) && n.fract() == 0.0 => n as u16,
            _ => {
                return Err(ModuleError::data(format!(
                    "mapper.status: expected an HTTP status from 100 to 599, got {v}"
                )));
            }
        },
    };
    let mut headers = Map::new();
    let list = mapper
        .get("headers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if list.len() > 16 {
        return Err(ModuleError::data(format!(
            "mapper.headers: at most 16 headers, got {}",
            list.len()
        )));
    }
    for (k, h) in list.iter().enumerate() {
        let key = h
            .get("key")
            .or_else(|| h.get("name"))
            .map(to_text)
            .unwrap_or_default();
        let value = h.get("value").map(to_text).unwrap_or_default();
        if key.is_empty() || key.len() > 256 || value.len() > 4096 {
            return Err(ModuleError::data(format!(
                "mapper.headers[{k}]: expected a key of 1–256 characters and a value of at most 4096"
            )));
        }
        headers.insert(key, Value::String(value));
    }
    Ok(WebhookResponse {
        status,
        headers,
        body: mapper
            .get("body")
            .cloned()
            .unwrap_or(Value::String(String::new())),
    })
}

#[cfg(test)]
mod budget_tests {
    //! Each budget stops a real scenario: the execution ends `error` with an
    //! `ExecutionInterruptedError` that no error route or `dlq` setting takes.

    use std::time::{Duration, Instant as StdInstant};

    use futures::future::BoxFuture;

    use super::*;
    use crate::module::{Module, Registry};

    /// `test:Hang` never answers.
    struct Hang;

    impl Module for Hang {
        fn call<'a>(&'a self, _: Invocation<'a>) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
            Box::pin(std::future::pending())
        }
    }

    struct TestModules;

    impl Registry for TestModules {
        fn module(&self, name: &str) -> Option<Arc<dyn crate::module::Module>> {
            (name == "test:Hang").then(|| Arc::new(Hang) as Arc<dyn crate::module::Module>)
        }
    }

    fn load(blueprint: Value) -> Scenario {
        crate::scenario::load(&blueprint.to_string(), &TestModules)
            .unwrap_or_else(|e| panic!("scenario loads: {e}"))
    }

    async fn run_with(scenario: &Scenario, bundle: Value, budget: Budget) -> Report {
        run(
            scenario,
            RunInput {
                bundles: vec![bundle],
                budget,
                ..RunInput::default()
            },
        )
        .await
    }

    /// Webhook → repeater × repeater → set variable, every module with an error route that
    /// ignores errors, and incomplete executions on: nothing catches a budget stop.
    fn nested_repeaters(outer: u32, inner: u32) -> Scenario {
        let ignore = || json!([{"id": 99, "module": "builtin:Ignore"}]);
        let ignore2 = || json!([{"id": 98, "module": "builtin:Ignore"}]);
        load(json!({"name": "nested", "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
            {"id": 2, "module": "builtin:BasicRepeater",
             "mapper": {"start": 1, "repeats": outer, "step": 1}},
            {"id": 3, "module": "builtin:BasicRepeater",
             "mapper": {"start": 1, "repeats": inner, "step": 1}, "onerror": ignore()},
            {"id": 4, "module": "util:SetVariable2",
             "mapper": {"name": "x", "scope": "roundtrip", "value": "{{2.i * 3.i}}"},
             "onerror": ignore2()}
        ], "metadata": {"scenario": {"dlq": true}}}))
    }

    fn assert_interrupted(report: &Report, budget: &str) -> ReportError {
        assert_eq!(report.status, Status::Error, "{:?}", report.error);
        assert!(report.incomplete.is_empty(), "nothing is parked");
        let error = report.error.clone().expect("an error");
        assert_eq!(error.name, "ExecutionInterruptedError", "{error:?}");
        let details = error.details.clone().expect("details");
        assert_eq!(details["budget"], budget, "{error:?}");
        error
    }

    #[tokio::test]
    async fn the_operations_budget_stops_nested_repeaters() {
        let scenario = nested_repeaters(10_000, 10_000);
        let budget = Budget::default().with_operations(50_000).unwrap();
        let report = run_with(&scenario, json!({}), budget).await;
        let error = assert_interrupted(&report, "operations");
        assert_eq!(report.operations, 50_000);
        assert_eq!(
            error.message,
            "the execution ran 50000 operations, its limit (--max-operations 50000)"
        );
        assert_eq!(error.details.unwrap()["flag"], "--max-operations");
        // Within the budget the same scenario runs to its end.
        let report = run_with(&nested_repeaters(10, 10), json!({}), budget).await;
        assert_eq!(report.status, Status::Success);
        assert_eq!(report.operations, 1 + 1 + 10 + 100);
    }

    #[tokio::test]
    async fn the_wall_time_cuts_off_a_module_that_hangs() {
        let scenario = load(json!({"name": "hang", "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
            {"id": 2, "module": "test:Hang",
             "onerror": [{"id": 3, "module": "builtin:Ignore"}]}
        ], "metadata": {"scenario": {"dlq": true}}}));
        let budget = Budget::default()
            .with_wall_time(Duration::from_millis(300))
            .unwrap();
        let started = StdInstant::now();
        let report = run_with(&scenario, json!({}), budget).await;
        let elapsed = started.elapsed();
        let error = assert_interrupted(&report, "wallTime");
        assert_eq!(error.module, 2);
        assert_eq!(
            error.message,
            "the execution ran for 0.3 s, its time limit (--max-execution-seconds 0.3)"
        );
        assert!(
            elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5),
            "{elapsed:?}"
        );
    }

    #[tokio::test]
    async fn the_wall_time_stops_flow_control_between_bundles() {
        let scenario = nested_repeaters(10_000, 10_000);
        let budget = Budget::default()
            .with_wall_time(Duration::from_millis(300))
            .unwrap();
        let started = StdInstant::now();
        let report = run_with(&scenario, json!({}), budget).await;
        assert_interrupted(&report, "wallTime");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(report.operations < 10_000_000);
    }

    #[tokio::test]
    async fn the_bytes_budget_stops_a_huge_iterator_before_it_builds_its_bundles() {
        let scenario = load(json!({"name": "iterate", "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
            {"id": 2, "module": "builtin:BasicFeeder", "mapper": {"array": "{{1.items}}"},
             "onerror": [{"id": 4, "module": "builtin:Ignore"}]},
            {"id": 3, "module": "util:SetVariable2",
             "mapper": {"name": "x", "scope": "roundtrip", "value": "{{2.value}}"}}
        ], "metadata": {"scenario": {"dlq": true}}}));
        let items: Vec<u32> = (0..50_000).collect();
        let budget = Budget::default().with_bundle_bytes(10 << 20).unwrap();
        let report = run_with(&scenario, json!({"items": items}), budget).await;
        let error = assert_interrupted(&report, "bundleBytes");
        assert_eq!(error.module, 2);
        assert_eq!(
            error.message,
            "the execution's bundles would take more than 10485760 bytes, its limit \
             (--max-bundle-bytes 10485760)"
        );
        assert_eq!(report.operations, 2);
        assert!(
            report.stats.iter().all(|s| s.module != 3),
            "nothing ran after it"
        );
        // A smaller array fits.
        let items: Vec<u32> = (0..1_000).collect();
        let report = run_with(&scenario, json!({"items": items}), budget).await;
        assert_eq!(report.status, Status::Success);
    }

    #[tokio::test]
    async fn the_bytes_budget_counts_an_aggregators_open_accumulation() {
        // 10,000 bundles of 10 KB each reach the aggregator: 100 MB in its accumulation.
        let scenario = load(json!({"name": "aggregate", "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
            {"id": 2, "module": "builtin:BasicRepeater",
             "mapper": {"start": 1, "repeats": 10_000, "step": 1}},
            {"id": 3, "module": "util:SetVariable2",
             "mapper": {"name": "x", "scope": "roundtrip", "value": "{{2.i}}{{1.text}}"}},
            {"id": 4, "module": "builtin:BasicAggregator", "parameters": {"feeder": 2},
             "mapper": {"x": "{{3.x}}"}}
        ]}));
        let budget = Budget::default()
            .with_bundle_bytes(20 << 20)
            .unwrap()
            .with_log_bundles_per_module(0);
        let bundle = json!({"text": "t".repeat(10_000)});
        let report = run_with(&scenario, bundle.clone(), budget).await;
        let error = assert_interrupted(&report, "bundleBytes");
        assert_eq!(error.module, 4);
        // Each bundle of module 3 is given back once it has reached the aggregator; only
        // the accumulation grows (about 2,000 × 10 KB when it is stopped).
        let set = report.stats.iter().find(|s| s.module == 3).unwrap();
        assert!((1_500..2_500).contains(&set.runs), "{}", set.runs);
        // With room for it, the aggregate is built.
        let roomy = budget.with_bundle_bytes(200 << 20).unwrap();
        let report = run_with(&scenario, bundle, roomy).await;
        assert_eq!(report.status, Status::Success, "{:?}", report.error);
    }

    #[tokio::test]
    async fn bytes_of_bundles_that_are_done_are_given_back() {
        // 10,000 bundles of about 400 bytes flow through, never more than 200 at a time: 4 MB
        // in all, under 1 MiB at once.
        let scenario = nested_repeaters(100, 100);
        let budget = Budget::default()
            .with_bundle_bytes(1 << 20)
            .unwrap()
            .with_log_bundles_per_module(0);
        let report = run_with(&scenario, json!({}), budget).await;
        assert_eq!(report.status, Status::Success, "{:?}", report.error);
        assert_eq!(report.operations, 1 + 1 + 100 + 10_000);
        assert!(report.log.is_empty());
    }

    #[tokio::test]
    async fn the_log_keeps_the_first_bundles_of_each_module_and_counts_the_rest() {
        let scenario = nested_repeaters(5, 10);
        let budget = Budget::default().with_log_bundles_per_module(7);
        let report = run_with(&scenario, json!({}), budget).await;
        assert_eq!(report.status, Status::Success);
        let logged = |module: u32| -> Vec<Value> {
            report
                .log
                .iter()
                .filter(|e| e.module == module)
                .map(|e| (*e.output).clone())
                .collect()
        };
        assert_eq!(logged(1).len(), 1);
        assert_eq!(
            logged(2),
            (1..=5).map(|i| json!({"i": i})).collect::<Vec<_>>()
        );
        // The first seven of module 3's fifty, in execution order.
        assert_eq!(
            logged(3),
            (1..=7).map(|i| json!({"i": i})).collect::<Vec<_>>()
        );
        assert_eq!(logged(4).len(), 7);
        for (module, out, kept) in [(1, 1, 1), (2, 5, 5), (3, 50, 7), (4, 50, 7)] {
            let stats = report.stats.iter().find(|s| s.module == module).unwrap();
            assert_eq!(
                (stats.bundles_out, stats.logged),
                (out, kept),
                "module {module}"
            );
        }
    }

    #[tokio::test]
    async fn the_report_keeps_the_evaluated_inputs_of_the_first_operations_of_each_module() {
        let scenario = load(json!({"name": "inputs", "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
            {"id": 2, "module": "builtin:BasicRepeater",
             "mapper": {"start": 1, "repeats": 10, "step": 1}},
            {"id": 3, "module": "util:SetVariables",
             "mapper": {"scope": "roundtrip", "variables": [{"name": "twice", "value": "{{2.i * 2}}"}]}},
            {"id": 4, "module": "util:SetVariable2",
             "mapper": {"name": "last", "scope": "execution", "value": "{{2.i}}"}}
        ]}));
        let budget = Budget::default().with_log_bundles_per_module(4);
        let report = run_with(&scenario, json!({}), budget).await;
        assert_eq!(report.status, Status::Success, "{:?}", report.error);
        let inputs = |module: u32| -> Vec<Value> {
            report
                .inputs
                .iter()
                .filter(|e| e.module == module)
                .map(|e| (*e.input).clone())
                .collect()
        };
        // The trigger has no mapper: no input is kept for it.
        assert!(inputs(1).is_empty());
        assert_eq!(
            inputs(2),
            vec![json!({"start": 1, "repeats": 10, "step": 1})]
        );
        // Evaluated against each bundle, the first four of ten operations.
        assert_eq!(
            inputs(3),
            (1..=4)
                .map(|i| json!({"scope": "roundtrip", "variables": [{"name": "twice", "value": i * 2}]}))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            inputs(4)[..2],
            [
                json!({"name": "last", "scope": "execution", "value": 1}),
                json!({"name": "last", "scope": "execution", "value": 2})
            ]
        );
        let stats = report.stats.iter().find(|s| s.module == 3).unwrap();
        assert_eq!((stats.runs, stats.inputs_logged), (10, 4));

        // An input larger than the cap is kept as a marker, not copied.
        let scenario = load(json!({"name": "big input", "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
            {"id": 2, "module": "builtin:BasicFeeder", "mapper": {"array": "{{1.items}}"}}
        ]}));
        let items: Vec<Value> = (0..5_000).map(|i| json!({"id": i, "name": "x"})).collect();
        let report = run_with(&scenario, json!({"items": items}), Budget::default()).await;
        assert_eq!(report.status, Status::Success, "{:?}", report.error);
        let input = &report.inputs[0];
        assert_eq!(
            (input.module, &input.input["__truncated__"]),
            (2, &json!(true))
        );
        assert!(
            input.input["bytes"].as_u64().unwrap() > MAX_LOGGED_INPUT_BYTES as u64,
            "{:?}",
            input.input
        );
    }
}
