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
//!
//! This file owns the walk; the executor's own modules (iterators, aggregators, variables,
//! the webhook reply) are `executor/builtins.rs`, the budgets' tests `executor/budget_tests.rs`.

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

mod builtins;

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

#[cfg(test)]
mod budget_tests;
