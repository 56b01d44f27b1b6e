//! The module contract: the boundary between the executor and the modules that do work
//! (HTTP calls, parsing, app modules). Flow control (routers, iterators, aggregators,
//! variables, directives) is the executor's own; everything else is a [`Module`] found
//! through a [`Registry`], so the executor does I/O only through modules.
//!
//! This layer sits below `scenario` (which resolves module types at compile time) and
//! `engine` (which calls them), and above `expr` only: it imports nothing else of the crate.
//! Its parts: the [`Module`] and [`Registry`] traits with one call's [`Invocation`] and
//! its execution's [`context`], Make's typed errors ([`error`]), polling-trigger state
//! ([`polling`]), the webhook side of instant triggers ([`webhook`]) and the stored
//! connections a module authenticates with ([`connection`]) and how their values are kept out
//! of errors and history ([`scrub`]), Make's data stores
//! ([`datastore`]) and the calls of other scenarios ([`subscenario`]).

pub mod connection;
pub mod context;
pub mod datastore;
pub mod error;
pub mod polling;
pub mod scrub;
pub mod subscenario;
pub mod webhook;

/// Files: the binary values modules produce and consume (see [`crate::expr::binary`]),
/// re-exported for the layers above that show and serve them.
pub use crate::expr::binary;
pub use connection::{Connection, Connections, ConnectionsHandle, Secrets};
pub use context::{ExecutionContext, Extensions, Redactions};
pub use datastore::{DataStores, DataStoresHandle};
pub use error::{ErrorKind, ModuleError};
pub use polling::{PollRequest, Polled, TriggerCommit, TriggerState};
pub use scrub::Scrubber;
pub use subscenario::{Subscenarios, SubscenariosHandle};
pub use webhook::{HookReply, HookRequest, HookTarget, InstantTrigger};

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Map, Value};

/// How Make counts and places a module (`imt-proto` `ModuleType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// One operation per bundle in, one bundle out.
    Action,
    /// One operation per bundle in, zero or more bundles out (a search, a list).
    Search,
    /// Starts a scenario: polled for bundles once per cycle ([`Module::poll`]), one operation
    /// per cycle.
    Trigger,
    /// Starts a scenario from its webhook: each delivery is a bundle, as for
    /// `gateway:CustomWebHook`; the module's [`Module::instant`] part registers the hook on the
    /// service that calls it.
    InstantTrigger,
}

/// A stored resource a module's parameters name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A stored connection, which must be of `app` (when given) and one of `kinds` (a
    /// connection type's name or a universal kind; any when empty).
    Connection {
        /// Where the blueprint names it (`parameters.__IMTCONN__`).
        path: String,
        reference: String,
        app: Option<String>,
        kinds: Vec<String>,
    },
    /// A data store, by name or id.
    DataStore { path: String, reference: String },
}

/// One call of a module on one bundle.
pub struct Invocation<'a> {
    /// The module's id in the scenario (`{{N.…}}`).
    pub module_id: u32,
    /// The module type, e.g. `http:MakeRequest`.
    pub module: &'a str,
    /// Static parameters, exactly as written in the blueprint.
    pub parameters: &'a Map<String, Value>,
    /// The mapper with every `{{…}}` evaluated against the current bundle.
    pub mapper: Value,
    /// The execution this call belongs to, with the services higher layers provide.
    pub context: &'a ExecutionContext,
}

/// A module implementation. Implementations hold their configuration and shared clients.
pub trait Module: Send + Sync {
    fn kind(&self) -> ModuleKind {
        ModuleKind::Action
    }

    /// Checks static configuration at load time; each problem is `(field, reason)`, e.g.
    /// `("mapper.url", "is required")`. The default accepts anything.
    fn check(&self, _parameters: &Map<String, Value>, _mapper: &Value) -> Vec<(String, String)> {
        Vec::new()
    }

    /// What, seen at load time, will make the module fail when it runs, without stopping the
    /// scenario from loading (Make loads it; the module's error route handles the failure):
    /// reported as warnings, `(field, reason)` like [`Module::check`]. The default finds none.
    fn warnings(&self, _parameters: &Map<String, Value>, _mapper: &Value) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The stored resources `parameters` name (its connection, its data store), with what
    /// each must be: checked together, every problem at its path, when a scenario is stored
    /// (warnings) and when it is activated or run (errors) (`catalog::references`), instead
    /// of on every call.
    fn references(&self, _parameters: &Map<String, Value>) -> Vec<Reference> {
        Vec::new()
    }

    /// The webhook side of an instant trigger (`ModuleKind::InstantTrigger`).
    fn instant(&self) -> Option<&dyn InstantTrigger> {
        None
    }

    /// Runs the module: the output bundles, or a typed error.
    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>>;

    /// Polls a trigger (`ModuleKind::Trigger`) once: the new items after `request.state`,
    /// oldest first and at most `request.limit`, with the state change that records them.
    /// The executor calls this instead of [`Module::call`] for triggers. The default calls
    /// `call` and keeps no state.
    fn poll<'a>(
        &'a self,
        invocation: Invocation<'a>,
        request: PollRequest<'a>,
    ) -> BoxFuture<'a, Result<Polled, ModuleError>> {
        let _ = request;
        Box::pin(async move {
            let bundles = self.call(invocation).await?;
            Ok(Polled {
                more: !bundles.is_empty(),
                bundles,
                ..Polled::default()
            })
        })
    }
}

/// Resolves module type names (`app:Name`) to implementations.
pub trait Registry: Send + Sync {
    fn module(&self, name: &str) -> Option<Arc<dyn Module>>;
    /// Every module type it serves (`app:Module`), for messages that name what exists; empty
    /// when it cannot list them.
    fn module_types(&self) -> Vec<String> {
        Vec::new()
    }
}
