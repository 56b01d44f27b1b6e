//! Blueprint → [`Scenario`]: resolves module types, parses every expression, links the flow
//! and checks it, collecting every problem with its JSON path instead of stopping at the first.
//! Problems that make the scenario unrunnable are errors; what only makes a module fail when
//! it runs (`Module::warnings`) is a warning, as Make loads such a scenario and lets the
//! module's error route handle the failure.

use std::collections::HashMap;

use petgraph::algo::has_path_connecting;
use petgraph::graph::DiGraph;
use serde_json::{Map, Value};

use crate::expr::{Dialect, Mapping, Template};
use crate::module::{ModuleKind, Registry};

use super::Problem;
use super::compiled::*;
use super::filter::CompiledFilter;
use super::model::{Blueprint, BranchKind, Node};
use super::schedule;

/// Module types the executor implements itself.
pub const FLOW_CONTROL: &[&str] = &[
    "gateway:CustomWebHook",
    MAILHOOK,
    "util:BasicTrigger",
    "builtin:BasicRouter",
    "builtin:BasicFeeder",
    "builtin:BasicAggregator",
    "util:TextAggregator",
    "util:NumericalAggregator",
    "builtin:BasicRepeater",
    "util:SetVariable2",
    "util:SetVariables",
    "util:GetVariable2",
    "util:GetVariables",
    "util:FunctionIncrement",
    "builtin:BasicIfElse",
    "builtin:BasicMerge",
    "gateway:WebhookRespond",
    "builtin:Ignore",
    "builtin:Resume",
    "builtin:Commit",
    "builtin:Rollback",
    "builtin:Break",
    "scenario-service:StartSubscenario",
    "scenario-service:ReturnData",
];

/// More modules than any designer can draw; the limit keeps validation's cost bounded.
pub const MAX_MODULES: usize = 2_000;

const DIRECTIVES: &[&str] = &[
    "builtin:Ignore",
    "builtin:Resume",
    "builtin:Commit",
    "builtin:Rollback",
    "builtin:Break",
];

/// Where a flow sits, which decides what may appear in it.
#[derive(Clone, Copy)]
enum FlowRole {
    Main,
    Route,
    Branch,
    ErrorRoute { handles: Ix },
}

/// Settings of a deployment that change what is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileOptions {
    /// Shortest accepted `indefinitely` interval, in seconds.
    pub min_interval: u64,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            min_interval: schedule::MIN_INTERVAL_SECONDS,
        }
    }
}

/// What compilation found: the scenario (when nothing stops it from running), errors and
/// warnings (the blueprint's own, from reading it, first).
pub(super) struct Compiled {
    pub scenario: Option<Scenario>,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

pub(super) fn compile(
    blueprint: &Blueprint,
    registry: &dyn Registry,
    options: &CompileOptions,
) -> Compiled {
    let mut c = Compiler {
        registry,
        nodes: Vec::new(),
        problems: Vec::new(),
        warnings: blueprint.warnings.clone(),
        paths: HashMap::new(),
        visible_at: HashMap::new(),
        not_before: Vec::new(),
    };
    c.collect_ids(&blueprint.flow, "flow");
    if c.paths.len() > MAX_MODULES {
        let message = format!(
            "a scenario can have at most {MAX_MODULES} modules, this one has {}",
            c.paths.len()
        );
        return Compiled {
            scenario: None,
            errors: vec![Problem {
                path: "flow".into(),
                message,
            }],
            warnings: c.warnings,
        };
    }
    if blueprint.flow.is_empty() {
        c.problem("flow", "a scenario needs at least one module");
    }
    let entry = c.flow(&blueprint.flow, "flow", &[], FlowRole::Main, Next::End);
    let settings = blueprint
        .metadata
        .as_ref()
        .map(|m| m.scenario.clone())
        .unwrap_or_default();
    if let Some(s) = &blueprint.scheduling {
        for (path, reason) in schedule::check(s, options.min_interval) {
            c.problem(&format!("scheduling{path}"), reason);
        }
    }
    let (graph, feeds) = c.link_graph();
    c.check_feeders(&graph);
    let by_id: HashMap<u32, Ix> = c
        .nodes
        .iter()
        .enumerate()
        .map(|(ix, n)| (n.id, ix))
        .collect();
    c.check_not_before(&graph, &by_id);
    let (interface, interface_problems) = super::interface::declared(blueprint);
    c.problems.extend(interface_problems);
    if !c.problems.is_empty() {
        return Compiled {
            scenario: None,
            errors: c.problems,
            warnings: c.warnings,
        };
    }
    let mut settings = settings;
    settings.roundtrips = settings.roundtrips.max(1);
    let scenario = Scenario {
        name: blueprint.name.clone(),
        settings,
        scheduling: blueprint.scheduling.clone(),
        nodes: c.nodes,
        entry,
        by_id,
        feeds,
        graph,
        warnings: c.warnings.clone(),
        interface,
    };
    Compiled {
        scenario: Some(scenario),
        errors: Vec::new(),
        warnings: c.warnings,
    }
}

struct Compiler<'a> {
    registry: &'a dyn Registry,
    nodes: Vec<CompiledNode>,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
    /// Every module id with the path of its first occurrence.
    paths: HashMap<u32, String>,
    /// Modules visible to each module's input (its ancestry), by module id.
    visible_at: HashMap<u32, Vec<u32>>,
    /// References to existing modules that do not run before their reader.
    not_before: Vec<NotBefore>,
}

/// `{{module.…}}` read by module `reader`, which `module` does not run before.
struct NotBefore {
    path: String,
    column: usize,
    module: u32,
    reader: u32,
    /// Where its error or warning goes among the others (found in flow order).
    at: (usize, usize),
}

impl Compiler<'_> {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn warning(&mut self, path: &str, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn collect_ids(&mut self, flow: &[Node], path: &str) {
        for (i, node) in flow.iter().enumerate() {
            let at = node_path(path, node, i);
            if let Some(first) = self.paths.get(&node.id) {
                let message = format!("duplicate module id {} (first used at {first})", node.id);
                self.problem(&format!("{at}.id"), message);
            } else {
                self.paths.insert(node.id, at.clone());
            }
            for (k, route) in node.routes.iter().flatten().enumerate() {
                self.collect_ids(&route.flow, &format!("{at}.routes[{k}].flow"));
            }
            for (k, branch) in node.branches.iter().flatten().enumerate() {
                self.collect_ids(&branch.flow, &format!("{at}.branches[{k}].flow"));
            }
            if let Some(onerror) = &node.onerror {
                self.collect_ids(onerror, &format!("{at}.onerror"));
            }
        }
    }

    /// Compiles a flow; returns the index of its first module. `visible` are the module ids
    /// whose outputs are in the ancestry of the flow's first bundle; `end` is where a bundle
    /// goes after the last module.
    fn flow(
        &mut self,
        flow: &[Node],
        path: &str,
        visible: &[u32],
        role: FlowRole,
        end: Next,
    ) -> Option<Ix> {
        let mut visible = visible.to_vec();
        let mut previous: Option<Ix> = None;
        let mut first = None;
        let mut i = 0;
        while i < flow.len() {
            let node = &flow[i];
            let at = node_path(path, node, i);
            let is_first_of_scenario = matches!(role, FlowRole::Main) && i == 0;
            self.visible_at.insert(node.id, visible.clone());
            let ix = self.node(
                node,
                &at,
                &visible,
                role,
                is_first_of_scenario,
                i + 1 == flow.len(),
            );
            if let Some(prev) = previous {
                self.nodes[prev].next = Next::Node(ix);
            } else {
                first = Some(ix);
            }
            visible = self.visible_after(ix, &visible);
            previous = Some(ix);
            let (is_router, is_ifelse, is_merge) = match &self.nodes[ix].kind {
                NodeKind::Router { .. } => (true, false, false),
                NodeKind::IfElse { .. } => (false, true, false),
                NodeKind::Merge { .. } => (false, false, true),
                _ => (false, false, false),
            };
            if is_router && i + 1 < flow.len() {
                self.problem(
                    &node_path(path, &flow[i + 1], i + 1),
                    "modules after a router never run: move them into a route",
                );
                break;
            }
            if is_ifelse {
                // The merge that must follow takes the branches' bundles and continues the flow.
                match flow.get(i + 1) {
                    Some(merge) if merge.module == "builtin:BasicMerge" => {
                        let merge_at = node_path(path, merge, i + 1);
                        let merge_ix =
                            self.node(merge, &merge_at, &visible, role, false, i + 2 == flow.len());
                        self.visible_at.insert(merge.id, visible.clone());
                        self.link_branches(ix, node, &at, &visible, Some(merge_ix));
                        visible.push(merge.id);
                        previous = Some(merge_ix);
                        i += 2;
                        continue;
                    }
                    _ => self.link_branches(ix, node, &at, &visible, None),
                }
            }
            if is_merge {
                self.problem(
                    &at,
                    "builtin:BasicMerge must directly follow a builtin:BasicIfElse",
                );
            }
            i += 1;
        }
        if let Some(last) = previous
            && self.nodes[last].next == Next::End
        {
            self.nodes[last].next = end;
        }
        first
    }

    fn visible_after(&self, ix: Ix, visible: &[u32]) -> Vec<u32> {
        let node = &self.nodes[ix];
        match &node.kind {
            // Modules between the feeder and the aggregator are swallowed by it.
            NodeKind::Aggregator(agg) => {
                let feeder_id = self.nodes[agg.feeder].id;
                let mut v = self.visible_at.get(&feeder_id).cloned().unwrap_or_default();
                v.push(node.id);
                v
            }
            _ => {
                let mut v = visible.to_vec();
                v.push(node.id);
                v
            }
        }
    }

    fn link_branches(
        &mut self,
        ifelse: Ix,
        node: &Node,
        at: &str,
        visible: &[u32],
        merge: Option<Ix>,
    ) {
        let Some(branches) = &node.branches else {
            self.problem(at, "builtin:BasicIfElse needs `branches`");
            return;
        };
        let mut compiled = Vec::with_capacity(branches.len());
        let mut slot = 0;
        let mut elses = 0;
        for (k, branch) in branches.iter().enumerate() {
            let bat = format!("{at}.branches[{k}]");
            let end = match (branch.merge, merge) {
                (true, Some(m)) => {
                    slot += 1;
                    Next::Merge {
                        node: m,
                        slot: slot - 1,
                    }
                }
                (true, None) => {
                    self.problem(
                        &format!("{bat}.merge"),
                        "this branch merges but no builtin:BasicMerge follows the if-else",
                    );
                    Next::End
                }
                (false, _) => Next::End,
            };
            let condition = match (branch.kind, &branch.conditions) {
                (BranchKind::Else, _) => {
                    elses += 1;
                    None
                }
                (BranchKind::Condition, Some(groups)) => {
                    match CompiledFilter::compile(&branch.label, groups) {
                        Ok(f) => Some(f),
                        Err(problems) => {
                            for (p, m) in problems {
                                self.problem(&format!("{bat}.conditions{p}"), m);
                            }
                            None
                        }
                    }
                }
                (BranchKind::Condition, None) => {
                    self.problem(
                        &format!("{bat}.conditions"),
                        "a condition branch needs `conditions`",
                    );
                    None
                }
            };
            if let Some(f) = &condition {
                self.check_refs(
                    f.module_refs(),
                    &format!("{bat}.conditions"),
                    visible,
                    node.id,
                );
            }
            let first = self.flow(
                &branch.flow,
                &format!("{bat}.flow"),
                visible,
                FlowRole::Branch,
                end,
            );
            compiled.push(CompiledBranch {
                condition,
                first,
                end,
                disabled: branch.disabled,
            });
        }
        if elses > 1 {
            self.problem(
                &format!("{at}.branches"),
                "at most one `else` branch is allowed",
            );
        }
        if let Some(m) = merge {
            let merging = slot;
            let mut problems = Vec::new();
            if let NodeKind::Merge { outputs } = &self.nodes[m].kind {
                for (k, (name, mappings)) in outputs.iter().enumerate() {
                    if mappings.len() != merging {
                        let path = format!("{}.outputs[{k}].mappings", self.nodes[m].path);
                        let message = format!(
                            "output \"{name}\" has {} mappings but {merging} branches merge",
                            mappings.len()
                        );
                        problems.push(Problem { path, message });
                    }
                }
            }
            self.problems.extend(problems);
        }
        self.nodes[ifelse].kind = NodeKind::IfElse { branches: compiled };
    }

    fn node(
        &mut self,
        node: &Node,
        at: &str,
        visible: &[u32],
        role: FlowRole,
        is_first: bool,
        is_last: bool,
    ) -> Ix {
        let ix = self.nodes.len();
        let label = node
            .metadata
            .as_ref()
            .and_then(|m| m.pointer("/designer/name"))
            .and_then(Value::as_str)
            .map(str::to_string);
        // Placeholder so nested flows get later indexes; the kind is filled in below.
        self.nodes.push(CompiledNode {
            id: node.id,
            module: node.module.clone(),
            label,
            path: at.to_string(),
            kind: NodeKind::Directive(Directive::Ignore),
            parameters: node.parameters.clone(),
            mapper: None,
            filter: None,
            next: Next::End,
            on_error: None,
            handles: match role {
                FlowRole::ErrorRoute { handles } => Some(handles),
                _ => None,
            },
        });

        if let Some(mapper) = &node.mapper {
            match Mapping::compile(mapper, Dialect::Scenario) {
                Ok(m) => {
                    self.check_refs(m.module_refs(), &format!("{at}.mapper"), visible, node.id);
                    self.nodes[ix].mapper = Some(m);
                }
                Err(errors) => {
                    for (p, e) in errors {
                        self.problem(&join_path(&format!("{at}.mapper"), &p), e.to_string());
                    }
                }
            }
        }
        if let Some(filter) = &node.filter {
            if is_first {
                self.problem(
                    &format!("{at}.filter"),
                    "the first module of a scenario cannot have a filter",
                );
            }
            // An if-else's filter decides whether the bundle reaches it at all (real exports
            // carry one); a merge's input is the branches', so a filter there means nothing.
            if node.module == "builtin:BasicMerge" {
                self.problem(
                    &format!("{at}.filter"),
                    format!("{} cannot have a filter", node.module),
                );
            }
            match CompiledFilter::compile(&filter.name, &filter.conditions) {
                Ok(f) => {
                    self.check_refs(
                        f.module_refs(),
                        &format!("{at}.filter.conditions"),
                        visible,
                        node.id,
                    );
                    self.nodes[ix].filter = Some(f);
                }
                Err(problems) => {
                    for (p, m) in problems {
                        self.problem(&format!("{at}.filter.conditions{p}"), m);
                    }
                }
            }
        }

        let kind = self.kind(node, at, visible, role, is_first, is_last);
        self.nodes[ix].kind = kind;

        if let Some(onerror) = &node.onerror {
            if node.module == "builtin:BasicRouter" || DIRECTIVES.contains(&node.module.as_str()) {
                self.problem(
                    &format!("{at}.onerror"),
                    format!("{} cannot have an error handler", node.module),
                );
            }
            if onerror.is_empty() {
                self.problem(
                    &format!("{at}.onerror"),
                    "an error-handler route needs at least one module",
                );
            }
            let mut handler_visible = visible.to_vec();
            handler_visible.push(node.id);
            let first = self.flow(
                onerror,
                &format!("{at}.onerror"),
                &handler_visible,
                FlowRole::ErrorRoute { handles: ix },
                Next::End,
            );
            self.nodes[ix].on_error = first;
        }
        ix
    }

    /// A reference to a module that runs later on the reader's path is a warning and reads
    /// as empty, as in Make, where reordering modules leaves such mappings standing; one to
    /// a module on another route (or swallowed by an aggregator) stays an error.
    fn check_not_before(&mut self, graph: &DiGraph<u32, Edge>, index: &HashMap<u32, Ix>) {
        // Inserted where they were found, so every problem stays in flow order.
        let (mut errors_added, mut warnings_added) = (0, 0);
        for found in std::mem::take(&mut self.not_before) {
            let NotBefore {
                path,
                column,
                module,
                reader,
                at: (error_at, warning_at),
            } = found;
            let later = match (index.get(&reader), index.get(&module)) {
                (Some(&from), Some(&to)) => has_path_connecting(
                    graph,
                    Scenario::graph_index(from),
                    Scenario::graph_index(to),
                    None,
                ),
                _ => false,
            };
            if later {
                let message = format!(
                    "column {column}: module {module} runs after module {reader} on this path, \
                     so {{{{{module}.…}}}} reads as empty (as in Make)"
                );
                self.warnings
                    .insert(warning_at + warnings_added, Problem { path, message });
                warnings_added += 1;
            } else {
                let message = format!(
                    "column {column}: module {module} does not run before module {reader} on \
                     this path"
                );
                self.problems
                    .insert(error_at + errors_added, Problem { path, message });
                errors_added += 1;
            }
        }
    }

    fn check_refs(
        &mut self,
        refs: Vec<(String, crate::expr::ModuleRef)>,
        base: &str,
        visible: &[u32],
        own_id: u32,
    ) {
        for (p, r) in refs {
            if visible.contains(&r.id) {
                continue;
            }
            let path = join_path(base, &p);
            let message = if r.id == own_id {
                format!(
                    "column {}: module {} cannot read its own output",
                    r.column, r.id
                )
            } else if self.paths.contains_key(&r.id) {
                // Decided once the flow is linked: a module that runs later on this path is
                // Make's "reordered modules" case (a warning), any other one an error.
                self.not_before.push(NotBefore {
                    path,
                    column: r.column,
                    module: r.id,
                    reader: own_id,
                    at: (self.problems.len(), self.warnings.len()),
                });
                continue;
            } else {
                format!(
                    "column {}: unknown module {} in {{{{{}.…}}}}",
                    r.column, r.id, r.id
                )
            };
            self.problem(&path, message);
        }
    }

    /// `parameters.maxResults` of a trigger fed by its caller: a whole number ≥ 1, or none.
    fn max_results(&mut self, node: &Node, at: &str) -> Option<usize> {
        match node.parameters.get("maxResults") {
            None | Some(Value::Null) => None,
            Some(v) => match v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            {
                Some(n) if n >= 1 => Some(n as usize),
                _ => {
                    self.problem(
                        &format!("{at}.parameters.maxResults"),
                        "expected a whole number ≥ 1",
                    );
                    None
                }
            },
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn kind(
        &mut self,
        node: &Node,
        at: &str,
        visible: &[u32],
        role: FlowRole,
        is_first: bool,
        is_last: bool,
    ) -> NodeKind {
        let p = &node.parameters;
        let kind = match node.module.as_str() {
            "gateway:CustomWebHook" | MAILHOOK | "util:BasicTrigger" => NodeKind::InputTrigger {
                max_results: self.max_results(node, at),
                webhook: node.module != "util:BasicTrigger",
                instant: None,
            },
            "builtin:BasicRouter" => {
                let routes = node.routes.clone().unwrap_or_default();
                if routes.is_empty() {
                    self.problem(&format!("{at}.routes"), "a router needs at least one route");
                }
                if routes.iter().filter(|r| r.fallback).count() > 1 {
                    self.problem(
                        &format!("{at}.routes"),
                        "at most one route can be the fallback route",
                    );
                }
                let mut compiled = Vec::with_capacity(routes.len());
                for (k, route) in routes.iter().enumerate() {
                    let rat = format!("{at}.routes[{k}].flow");
                    if route.flow.is_empty() && route.placeholders == 0 {
                        self.problem(&rat, "a route needs at least one module");
                    }
                    let first = self.flow(&route.flow, &rat, visible, FlowRole::Route, Next::End);
                    compiled.push(CompiledRoute {
                        first,
                        fallback: route.fallback,
                        disabled: route.disabled,
                    });
                }
                NodeKind::Router { routes: compiled }
            }
            "builtin:BasicFeeder" => {
                self.require_mapper_key(node, at, "array");
                NodeKind::Iterator
            }
            "builtin:BasicAggregator" | "util:TextAggregator" | "util:NumericalAggregator" => {
                self.aggregator(node, at)
            }
            "builtin:BasicRepeater" => {
                self.require_mapper_key(node, at, "repeats");
                NodeKind::Repeater
            }
            "util:SetVariable2" | "util:SetVariables" => {
                let scope = match node
                    .mapper
                    .as_ref()
                    .and_then(|m| m.get("scope"))
                    .and_then(Value::as_str)
                {
                    None | Some("roundtrip") => VariableScope::Roundtrip,
                    Some("execution") => VariableScope::Execution,
                    Some(other) => {
                        self.problem(
                            &format!("{at}.mapper.scope"),
                            format!("expected \"roundtrip\" or \"execution\", got \"{other}\""),
                        );
                        VariableScope::Roundtrip
                    }
                };
                let form = if node.module == "util:SetVariable2" {
                    self.require_mapper_key(node, at, "name");
                    VariableForm::One
                } else {
                    self.require_mapper_key(node, at, "variables");
                    VariableForm::List
                };
                let single = match (form, node.mapper.as_ref()) {
                    (VariableForm::One, Some(m)) => match (m.get("name"), m.get("value")) {
                        (Some(Value::String(name)), value)
                            if !name.is_empty() && !name.contains("{{") =>
                        {
                            Mapping::compile(value.unwrap_or(&Value::Null), Dialect::Scenario)
                                .ok()
                                .map(|v| (name.clone(), v))
                        }
                        _ => None,
                    },
                    _ => None,
                };
                NodeKind::SetVariables {
                    scope,
                    form,
                    single,
                }
            }
            "util:GetVariable2" => {
                self.require_mapper_key(node, at, "name");
                NodeKind::GetVariables {
                    form: VariableForm::One,
                }
            }
            "util:GetVariables" => {
                self.require_mapper_key(node, at, "variables");
                NodeKind::GetVariables {
                    form: VariableForm::List,
                }
            }
            "util:FunctionIncrement" => {
                let reset = match p.get("reset").and_then(Value::as_str) {
                    None | Some("run") => IncrementReset::Cycle,
                    Some("execution") => IncrementReset::Execution,
                    Some("scenario") => IncrementReset::Never,
                    Some(other) => {
                        self.problem(
                            &format!("{at}.parameters.reset"),
                            format!(
                                "expected \"run\", \"execution\" or \"scenario\", got \"{other}\""
                            ),
                        );
                        IncrementReset::Cycle
                    }
                };
                NodeKind::Increment { reset }
            }
            // Branches are compiled by the enclosing flow, which knows the merge that follows.
            // Nested inside a branch too: the inner merge continues into the outer branch's end.
            "builtin:BasicIfElse" => NodeKind::IfElse {
                branches: Vec::new(),
            },
            "builtin:BasicMerge" => {
                let mut outputs = Vec::new();
                for (k, out) in node.outputs.iter().flatten().enumerate() {
                    let mut templates = Vec::new();
                    for (m, mapping) in out.mappings.iter().enumerate() {
                        let mat = format!("{at}.outputs[{k}].mappings[{m}]");
                        let text = match mapping {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        match Template::parse(&text, Dialect::Scenario) {
                            Ok(t) => templates.push(t),
                            Err(e) => self.problem(&mat, e.to_string()),
                        }
                    }
                    outputs.push((out.name.clone(), templates));
                }
                NodeKind::Merge { outputs }
            }
            "gateway:WebhookRespond" => NodeKind::WebhookRespond,
            // A called scenario's trigger: its bundle is the call's inputs.
            super::interface::START_SUBSCENARIO => NodeKind::InputTrigger {
                max_results: None,
                webhook: false,
                instant: None,
            },
            super::interface::RETURN_DATA => {
                if !is_last {
                    self.problem(
                        &format!("{at}.module"),
                        "scenario-service:ReturnData ends the execution: it must be the last module of its route",
                    );
                }
                NodeKind::ReturnData
            }
            "builtin:Ignore" | "builtin:Resume" | "builtin:Commit" | "builtin:Rollback"
            | "builtin:Break" => {
                let directive = match node.module.as_str() {
                    "builtin:Ignore" => Directive::Ignore,
                    "builtin:Resume" => Directive::Resume,
                    "builtin:Commit" => Directive::Commit,
                    "builtin:Rollback" => Directive::Rollback,
                    _ => Directive::Break,
                };
                if !matches!(role, FlowRole::ErrorRoute { .. }) {
                    self.problem(
                        &format!("{at}.module"),
                        format!(
                            "{} is an error-handler directive: it can only end an `onerror` route",
                            node.module
                        ),
                    );
                } else if !is_last {
                    self.problem(
                        &format!("{at}.module"),
                        format!(
                            "{} must be the last module of its error-handler route",
                            node.module
                        ),
                    );
                }
                NodeKind::Directive(directive)
            }
            // Already reported by the reader: it stands in so references to it resolve.
            super::shape::UNREADABLE => NodeKind::Directive(Directive::Ignore),
            name => match self.registry.module(name) {
                Some(module) => {
                    let mapper = node.mapper.as_ref().unwrap_or(&Value::Null);
                    for (field, reason) in module.check(p, mapper) {
                        self.problem(&format!("{at}.{field}"), reason);
                    }
                    for (field, reason) in module.warnings(p, mapper) {
                        self.warning(&format!("{at}.{field}"), reason);
                    }
                    match module.kind() {
                        // An app's instant trigger is fed by its hook, as a custom webhook is.
                        ModuleKind::InstantTrigger => NodeKind::InputTrigger {
                            max_results: self.max_results(node, at),
                            webhook: true,
                            instant: Some(module),
                        },
                        ModuleKind::Trigger if !is_first => {
                            self.problem(
                                &format!("{at}.module"),
                                format!("{name} is a trigger: it can only be the first module"),
                            );
                            NodeKind::Module(module)
                        }
                        _ => NodeKind::Module(module),
                    }
                }
                None => {
                    self.problem(
                        &format!("{at}.module"),
                        unknown_module(name, &self.registry.module_types()),
                    );
                    NodeKind::Directive(Directive::Ignore)
                }
            },
        };
        if matches!(kind, NodeKind::InputTrigger { .. }) && !is_first {
            self.problem(
                &format!("{at}.module"),
                format!(
                    "{} is a trigger: it can only be the first module",
                    node.module
                ),
            );
        }
        kind
    }

    fn require_mapper_key(&mut self, node: &Node, at: &str, key: &str) {
        if node.mapper.as_ref().and_then(|m| m.get(key)).is_none() {
            self.problem(
                &format!("{at}.mapper.{key}"),
                format!("{} needs `mapper.{key}`", node.module),
            );
        }
    }

    /// Compiles an aggregator; a feeder that cannot be resolved is reported here and left
    /// pointing at the aggregator itself, which later checks skip.
    fn aggregator(&mut self, node: &Node, at: &str) -> NodeKind {
        let own_ix = self.nodes.len() - 1;
        let p = &node.parameters;
        let feeder_id = match p.get("feeder") {
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok())),
            None => None,
        };
        let feeder = match feeder_id {
            None => {
                self.problem(
                    &format!("{at}.parameters.feeder"),
                    "an aggregator needs `parameters.feeder`: the id of its source module",
                );
                own_ix
            }
            Some(id) => match self.nodes.iter().position(|n| u64::from(n.id) == id) {
                Some(ix) => ix,
                None => {
                    let message = if self.paths.contains_key(&(id as u32)) {
                        format!(
                            "source module {id} is not upstream of aggregator {}",
                            node.id
                        )
                    } else {
                        format!("unknown source module {id}")
                    };
                    self.problem(&format!("{at}.parameters.feeder"), message);
                    own_ix
                }
            },
        };
        let mapper = node.mapper.as_ref().and_then(Value::as_object);
        let group_by = match mapper.and_then(|m| m.get("groupBy")) {
            None | Some(Value::Null) => None,
            Some(v) => {
                let text = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                if text.is_empty() {
                    None
                } else {
                    match Template::parse(&text, Dialect::Scenario) {
                        Ok(t) => Some(t),
                        Err(e) => {
                            self.problem(&format!("{at}.mapper.groupBy"), e.to_string());
                            None
                        }
                    }
                }
            }
        };
        // The group-by formula is not an aggregated field: the mapper run per bundle leaves it out.
        if let Some(mut fields) = mapper.filter(|m| m.contains_key("groupBy")).cloned() {
            fields.remove("groupBy");
            self.nodes[own_ix].mapper =
                Mapping::compile(&Value::Object(fields), Dialect::Scenario).ok();
        }
        let stop_if_empty = flag(p, "stopIfEmpty") || flag(p, "stop");
        let kind = match node.module.as_str() {
            "util:TextAggregator" => {
                let separator = match p.get("rowSeparator").and_then(Value::as_str) {
                    None | Some("") => String::new(),
                    Some("\\n") | Some("\n") => "\n".into(),
                    Some("\\t") | Some("\t") => "\t".into(),
                    Some("other") => p
                        .get("otherRowSeparator")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    Some(other) => {
                        self.problem(
                            &format!("{at}.parameters.rowSeparator"),
                            format!("expected \"\\n\", \"\\t\" or \"other\", got \"{other}\""),
                        );
                        String::new()
                    }
                };
                AggregatorKind::Text { separator }
            }
            "util:NumericalAggregator" => {
                let name = p
                    .get("function")
                    .or_else(|| mapper.and_then(|m| m.get("function")));
                let function = match name
                    .and_then(Value::as_str)
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    Some("sum") => NumericFunction::Sum,
                    Some("avg") | Some("average") => NumericFunction::Avg,
                    Some("count") => NumericFunction::Count,
                    Some("min") => NumericFunction::Min,
                    Some("max") => NumericFunction::Max,
                    _ => {
                        self.problem(
                            &format!("{at}.parameters.function"),
                            "expected one of SUM, AVG, COUNT, MIN, MAX",
                        );
                        NumericFunction::Sum
                    }
                };
                AggregatorKind::Numeric(function)
            }
            _ => AggregatorKind::Array,
        };
        NodeKind::Aggregator(Aggregator {
            feeder,
            kind,
            group_by,
            stop_if_empty,
        })
    }

    /// Builds the petgraph view of the flow and the feeder → aggregators map.
    fn link_graph(&self) -> (DiGraph<u32, Edge>, Vec<Vec<Ix>>) {
        let mut graph = DiGraph::with_capacity(self.nodes.len(), self.nodes.len() * 2);
        for node in &self.nodes {
            graph.add_node(node.id);
        }
        let mut feeds: Vec<Vec<Ix>> = vec![Vec::new(); self.nodes.len()];
        let at = Scenario::graph_index;
        for (ix, node) in self.nodes.iter().enumerate() {
            match node.next {
                Next::Node(n) => {
                    graph.add_edge(at(ix), at(n), Edge::Next);
                }
                Next::Merge { node: m, .. } => {
                    graph.add_edge(at(ix), at(m), Edge::Merge);
                }
                Next::End => {}
            }
            if let Some(h) = node.on_error {
                graph.add_edge(at(ix), at(h), Edge::OnError);
            }
            match &node.kind {
                NodeKind::Router { routes } => {
                    for (k, r) in routes.iter().enumerate() {
                        if let Some(first) = r.first {
                            graph.add_edge(at(ix), at(first), Edge::Route(k));
                        }
                    }
                }
                NodeKind::IfElse { branches } => {
                    for (k, b) in branches.iter().enumerate() {
                        let target = match (b.first, b.end) {
                            (Some(first), _) => Some(first),
                            (None, Next::Merge { node, .. }) => Some(node),
                            _ => None,
                        };
                        if let Some(t) = target {
                            graph.add_edge(at(ix), at(t), Edge::Branch(k));
                        }
                    }
                }
                NodeKind::Aggregator(agg) if agg.feeder != ix => {
                    feeds[agg.feeder].push(ix);
                }
                _ => {}
            }
        }
        (graph, feeds)
    }

    /// An aggregator's source must be upstream of it on the same path (not on another route,
    /// not in an error route that is not its own).
    fn check_feeders(&mut self, graph: &DiGraph<u32, Edge>) {
        let mut problems = Vec::new();
        for (ix, node) in self.nodes.iter().enumerate() {
            if let NodeKind::Aggregator(agg) = &node.kind {
                let feeder = agg.feeder;
                if feeder != ix
                    && !has_path_connecting(
                        graph,
                        Scenario::graph_index(feeder),
                        Scenario::graph_index(ix),
                        None,
                    )
                {
                    problems.push(Problem {
                        path: format!("{}.parameters.feeder", node.path),
                        message: format!(
                            "source module {} is not upstream of aggregator {}",
                            self.nodes[feeder].id, node.id
                        ),
                    });
                }
            }
        }
        self.problems.extend(problems);
    }
}

/// The path of module `node`, the `index`-th of the flow at `path`: its position in the
/// blueprint as written (placeholders skipped by the reader still count).
fn node_path(path: &str, node: &Node, index: usize) -> String {
    format!("{path}[{}]", node.position.unwrap_or(index))
}

fn flag(p: &Map<String, Value>, key: &str) -> bool {
    matches!(p.get(key), Some(Value::Bool(true)))
}

fn join_path(base: &str, rest: &str) -> String {
    if rest.is_empty() {
        base.to_string()
    } else if rest.starts_with('[') {
        format!("{base}{rest}")
    } else {
        format!("{base}.{rest}")
    }
}

/// Why `name` is no module here, with the way on: the app is missing, or the app exists
/// without that module. (Not a list of what exists: `switchyard apps list` prints it, and the
/// message stays the same as apps are added.)
fn unknown_module(name: &str, known: &[String]) -> String {
    let Some((app, module)) = name.split_once(':') else {
        return format!("unknown module type \"{name}\": module types are APP:Module");
    };
    let app_exists = known
        .iter()
        .any(|t| t.split_once(':').is_some_and(|(a, _)| a == app));
    if app_exists {
        format!(
            "unknown module type \"{name}\": the {app} app has no module \"{module}\" \
             (`switchyard apps list {app}` lists its modules)"
        )
    } else {
        format!(
            "unknown module type \"{name}\": no app \"{app}\" is installed (`switchyard apps \
             list` lists the apps; an app can be added as data, docs/apps.md)"
        )
    }
}
