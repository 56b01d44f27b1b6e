//! IML, Make's mapping language: `{{1.user.name}}`, `{{lower(2.email)}}`, `{{if(1.total > 100; "big"; "small")}}`.
//!
//! A [`Template`] is parsed once (at scenario load) into an AST and evaluated many times over
//! JSON bundles through a [`Scope`]. This module knows nothing of scenarios or modules: a scope
//! only answers "what did module N output in this bundle's ancestry" and "what is the value
//! of the named root `body`" (the app-definition dialect).
//!
//! Invariants:
//! - parsing never panics and never recurses without bound: nesting depth is capped and a
//!   too-deep expression is a [`ParseError`] naming its column;
//! - evaluation never re-parses; a missing path yields `null`, not an error (Make's rule);
//! - no user code runs: functions are the fixed catalogue in [`functions`].
//!
//! Layout: `parser` (lexer + parser) builds the tree in `ast`; `eval` walks it; [`Template`]
//! and [`Mapping`] are the public entry points; [`value`] holds Make's coercions.

mod ast;
pub mod binary;
pub mod condition;
mod error;
mod eval;
pub mod functions;
mod mapping;
mod parser;
pub mod regexp;
mod template;
pub mod value;

pub use error::{EvalError, ParseError};
pub use mapping::Mapping;
pub use template::{ModuleRef, Template};

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Names that start a reference in the scenario dialect besides module ids: the system
/// variables (`{{var.scenario.id}}`, `{{var.execution.url}}` …) and the integrations' token
/// references (`{{bot.tokens.google}}`, `{{user.tokens.google}}`, `{{user.id}}`), read through
/// [`Scope::named`]. One list, so every system root parses the same way.
pub const SYSTEM_ROOTS: &[&str] = &["var", "bot", "user"];

/// Which flavour of IML a template is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Scenario mappings: arguments separated by `;`, references start with a module id (`1.name`).
    Scenario,
    /// App definitions (Custom Apps SDK): arguments separated by `,`, references start with a
    /// named root (`body.items`, `parameters.id`, `connection.token`).
    App,
}

/// What an expression can read while it is evaluated.
pub trait Scope {
    /// The output bundle of module `id` in the current bundle's ancestry.
    fn module_output(&self, id: u32) -> Option<&Value>;
    /// A named root (app dialect: `body`, `item`, `parameters`, `connection`, `temp` …;
    /// scenario dialect: the [`SYSTEM_ROOTS`], such as `var`).
    fn named(&self, _name: &str) -> Option<&Value> {
        None
    }
    /// The value of `now` (fixed for one evaluation context so a bundle sees one instant).
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    /// The scenario's time zone, used by date formatting when no zone is given.
    fn timezone(&self) -> chrono_tz::Tz {
        chrono_tz::UTC
    }
    /// The current execution's id (`executionId` keyword).
    fn execution_id(&self) -> Option<&str> {
        None
    }
}

/// A scope over a JSON map for unit tests: numeric keys are module outputs, other keys
/// named roots; `now` is fixed at 2016-12-08T15:55:57.536Z.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use std::collections::HashMap;

    pub(crate) struct TestScope {
        modules: HashMap<u32, Value>,
        named: HashMap<String, Value>,
    }

    impl TestScope {
        pub(crate) fn new(bundle: Value) -> Self {
            let mut modules = HashMap::new();
            let mut named = HashMap::new();
            if let Value::Object(map) = bundle {
                for (k, v) in map {
                    match k.parse::<u32>() {
                        Ok(id) => {
                            modules.insert(id, v);
                        }
                        Err(_) => {
                            named.insert(k, v);
                        }
                    }
                }
            }
            TestScope { modules, named }
        }
    }

    impl Scope for TestScope {
        fn module_output(&self, id: u32) -> Option<&Value> {
            self.modules.get(&id)
        }
        fn named(&self, name: &str) -> Option<&Value> {
            self.named.get(name)
        }
        fn now(&self) -> DateTime<Utc> {
            DateTime::parse_from_rfc3339("2016-12-08T15:55:57.536Z")
                .map(|d| d.with_timezone(&Utc))
                .unwrap_or_default()
        }
        fn execution_id(&self) -> Option<&str> {
            Some("exec-42")
        }
    }
}
