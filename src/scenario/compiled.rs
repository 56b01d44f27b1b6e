//! The compiled scenario: an arena of modules linked by index, every expression parsed,
//! every module type resolved. The executor runs this, never the raw blueprint.

use std::collections::HashMap;
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::{Map, Value};

use crate::expr::{Mapping, Template};
use crate::module::subscenario::Interface;
use crate::module::{Module, ModuleKind, Reference};

use super::filter::CompiledFilter;
use super::model::{Scheduling, Settings};

/// Make's mailhook trigger: a webhook whose deliveries are e-mails (`<hook id>@<mail domain>`
/// over SMTP, or the raw message posted to the hook's URL), each one bundle.
pub const MAILHOOK: &str = "gateway:CustomMailHook";

/// Index of a module in [`Scenario::nodes`].
pub type Ix = usize;

/// A scenario ready to run.
#[derive(Clone)]
pub struct Scenario {
    pub name: String,
    pub settings: Settings,
    pub scheduling: Option<Scheduling>,
    pub nodes: Vec<CompiledNode>,
    /// The first module of the top-level flow.
    pub entry: Option<Ix>,
    pub by_id: HashMap<u32, Ix>,
    /// Aggregators fed by each module, indexed like `nodes`.
    pub feeds: Vec<Vec<Ix>>,
    /// The flow as a graph of module ids: next, route, branch, merge, error and feeder edges.
    pub graph: DiGraph<u32, Edge>,
    /// What loading found that does not stop the scenario from running (unknown keys,
    /// skipped placeholders, modules that will fail when they run), each with its path.
    pub warnings: Vec<super::Problem>,
    /// The declared inputs and outputs ([`super::interface`]): what a call must give
    /// (`{{var.input.NAME}}`) and what it gets back.
    pub interface: Interface,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenario")
            .field("name", &self.name)
            .field("modules", &self.nodes.len())
            .finish()
    }
}

/// A stored resource one module names ([`Scenario::references`]).
#[derive(Clone)]
pub struct ModuleReference<'a> {
    /// The module that names it.
    pub node: &'a CompiledNode,
    /// JSON path of the naming field, e.g. `flow[2].parameters.__IMTCONN__`.
    pub path: String,
    pub reference: Reference,
}

/// Kinds of edges in [`Scenario::graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Next,
    Route(usize),
    Branch(usize),
    Merge,
    OnError,
    Feeds,
}

/// Where a bundle goes when a module has finished with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The end of this route.
    End,
    Node(Ix),
    /// The end of an if-else branch that merges: into the merge module, as its `slot`-th input.
    Merge {
        node: Ix,
        slot: usize,
    },
}

/// One module of the compiled scenario.
#[derive(Clone)]
pub struct CompiledNode {
    pub id: u32,
    pub module: String,
    /// The designer's label (`metadata.designer.name`), if any.
    pub label: Option<String>,
    /// JSON path of the module in the blueprint, e.g. `flow[2].routes[0].flow[0]`.
    pub path: String,
    pub kind: NodeKind,
    pub parameters: Map<String, Value>,
    pub mapper: Option<Mapping>,
    pub filter: Option<CompiledFilter>,
    pub next: Next,
    /// First module of this module's error-handler route.
    pub on_error: Option<Ix>,
    /// For modules inside an error-handler route: the module whose errors it handles.
    pub handles: Option<Ix>,
}

impl CompiledNode {
    /// The module's configuration outside any execution — its parameters, plus the mapper
    /// fields that need no bundle (an instant trigger's, whose mapper nothing precedes) — for
    /// calls made when no bundle exists: registering a hook, answering its verification.
    /// Parameters win over mapper fields of the same name.
    pub fn configuration(&self) -> Map<String, Value> {
        struct NoBundles;
        impl crate::expr::Scope for NoBundles {
            fn module_output(&self, _: u32) -> Option<&Value> {
                None
            }
        }
        let mut configuration = self.parameters.clone();
        if let Some(Ok(Value::Object(fields))) = self.mapper.as_ref().map(|m| m.eval(&NoBundles)) {
            for (name, value) in fields {
                configuration.entry(name).or_insert(value);
            }
        }
        configuration
    }
}

/// What a module does, as far as the executor is concerned.
#[derive(Clone)]
pub enum NodeKind {
    /// `gateway:CustomWebHook`, `gateway:CustomMailHook`, `util:BasicTrigger` or an app's
    /// instant trigger (`ModuleKind::InstantTrigger`): bundles come from the caller.
    InputTrigger {
        max_results: Option<usize>,
        /// Bundles arrive on a webhook (`gateway:CustomWebHook`, `gateway:CustomMailHook`, an
        /// instant trigger): the scenario gets a hook URL.
        webhook: bool,
        /// The app's instant trigger module, whose stored references (the connection its
        /// requests are checked with) are checked as other modules' are.
        instant: Option<Arc<dyn Module>>,
    },
    Router {
        routes: Vec<CompiledRoute>,
    },
    Iterator,
    Aggregator(Aggregator),
    Repeater,
    SetVariables {
        scope: VariableScope,
        form: VariableForm,
        /// `util:SetVariable2` with a constant name: the name and its value's mapping, so a
        /// run evaluates only the value.
        single: Option<(String, Mapping)>,
    },
    GetVariables {
        form: VariableForm,
    },
    Increment {
        reset: IncrementReset,
    },
    IfElse {
        branches: Vec<CompiledBranch>,
    },
    Merge {
        outputs: Vec<(String, Vec<Template>)>,
    },
    WebhookRespond,
    /// `scenario-service:ReturnData`: ends the execution with its mapper as the outputs.
    ReturnData,
    Directive(Directive),
    /// Any other module, run through the [`Module`] trait.
    Module(Arc<dyn Module>),
}

#[derive(Debug, Clone)]
pub struct CompiledRoute {
    pub first: Option<Ix>,
    pub fallback: bool,
    pub disabled: bool,
}

#[derive(Debug, Clone)]
pub struct CompiledBranch {
    /// `None` for the `else` branch.
    pub condition: Option<CompiledFilter>,
    pub first: Option<Ix>,
    /// Where the branch goes when it has no modules.
    pub end: Next,
    /// Never taken: the bundle is offered to the next branch.
    pub disabled: bool,
}

#[derive(Debug, Clone)]
pub struct Aggregator {
    pub feeder: Ix,
    pub kind: AggregatorKind,
    /// Group-by formula: one output bundle per distinct value.
    pub group_by: Option<Template>,
    /// Output nothing when no bundle arrived.
    pub stop_if_empty: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AggregatorKind {
    /// `builtin:BasicAggregator` → `{array: […]}`.
    Array,
    /// `util:TextAggregator` → `{text}`.
    Text { separator: String },
    /// `util:NumericalAggregator` → `{result}`.
    Numeric(NumericFunction),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericFunction {
    Sum,
    Avg,
    Count,
    Min,
    Max,
}

/// How a variables module's mapper names its variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariableForm {
    /// `util:SetVariable2`/`util:GetVariable2`: one `name` (and `value`).
    One,
    /// `util:SetVariables`/`util:GetVariables`: a `variables` list.
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariableScope {
    /// Reset at the start of each cycle ("One cycle").
    Roundtrip,
    /// Kept for the whole execution.
    Execution,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncrementReset {
    /// After one cycle.
    Cycle,
    /// After one execution.
    Execution,
    /// Never: the counter lives in the scenario's state.
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    Ignore,
    Resume,
    Commit,
    Rollback,
    Break,
}

impl Scenario {
    pub fn node(&self, ix: Ix) -> &CompiledNode {
        &self.nodes[ix]
    }

    /// Graph node of a module index (the graph is built with the same order as `nodes`).
    pub fn graph_index(ix: Ix) -> NodeIndex {
        NodeIndex::new(ix)
    }

    /// The stable identity of the scenario's trigger: its first module's id. Editing the
    /// scenario keeps it, so a polling trigger's state survives edits and re-activation.
    pub fn trigger_key(&self) -> String {
        let id = self.entry.map(|ix| self.node(ix).id).unwrap_or(0);
        format!("module:{id}")
    }

    /// The first module when its bundles arrive on a webhook: the module a hook URL is for.
    pub fn webhook_trigger(&self) -> Option<&CompiledNode> {
        let node = self.node(self.entry?);
        matches!(node.kind, NodeKind::InputTrigger { webhook: true, .. }).then_some(node)
    }

    /// Every stored resource (connection, data store) the scenario's modules name, in the
    /// order of its modules, each with the module that names it and the field's JSON path.
    pub fn references(&self) -> Vec<ModuleReference<'_>> {
        let mut found = Vec::new();
        for node in &self.nodes {
            let module = match &node.kind {
                NodeKind::Module(module)
                | NodeKind::InputTrigger {
                    instant: Some(module),
                    ..
                } => module,
                _ => continue,
            };
            for reference in module.references(&node.parameters) {
                let field = match &reference {
                    Reference::Connection { path, .. } | Reference::DataStore { path, .. } => path,
                };
                found.push(ModuleReference {
                    node,
                    path: format!("{}.{field}", node.path),
                    reference,
                });
            }
        }
        found
    }

    /// The first module when it is a mailhook ([`MAILHOOK`]): its hook receives e-mails.
    pub fn mail_trigger(&self) -> Option<&CompiledNode> {
        self.webhook_trigger()
            .filter(|node| node.module == MAILHOOK)
    }

    /// The first module when it is a polling trigger (a module of kind `Trigger`).
    pub fn polling_trigger(&self) -> Option<&CompiledNode> {
        let node = self.node(self.entry?);
        match &node.kind {
            NodeKind::Module(module) if module.kind() == ModuleKind::Trigger => Some(node),
            _ => None,
        }
    }

    /// Whether other scenarios may call this one: its trigger is
    /// `scenario-service:StartSubscenario`.
    pub fn is_callable(&self) -> bool {
        self.entry
            .is_some_and(|ix| self.node(ix).module == super::interface::START_SUBSCENARIO)
    }
}
