//! Apps defined as data (`modules/*.json`, `docs/apps.md`): the definition format ([`model`]),
//! loading and checking it ([`load`]), IML in definitions ([`template`]), the input checks of
//! a module's fields ([`input`]), the one interpreter that runs every module of every app
//! ([`interpreter`]), its trigger parts ([`trigger`]) and the outbound rate an app declares
//! per connection ([`rate`]).
//!
//! [`DefinedApps`] is the registry of these modules (`app:ModuleName`, e.g. `chatbot:GetUser`)
//! and the public face of the definitions for the layers that store connections: find an app,
//! its connection types (kind, configuration schema, test request) and run a connection
//! type's test request with a stored connection.
//!
//! Invariant: adding an app is adding a file; nothing here names an app.

mod files;
mod input;
mod interpreter;
pub mod load;
pub mod model;
mod rate;
mod template;
mod trigger;

use std::collections::HashMap;
use std::sync::Arc;

pub use load::{App, Apps, LoadError, Problem, parse_app};
pub use model::{AppDefinition, ConnectionKind, ConnectionType, json_schema};

use crate::apps::transport::Transport;
use crate::module::{Connection, Module, ModuleError, Registry};
use interpreter::AppModule;

/// The loaded apps and their modules, sending through one shared [`Transport`].
pub struct DefinedApps {
    apps: Apps,
    modules: HashMap<String, Arc<dyn Module>>,
    transport: Arc<Transport>,
}

impl DefinedApps {
    /// Serves the modules of `apps` over `transport`.
    pub fn new(apps: Apps, transport: Arc<Transport>) -> Self {
        let mut modules: HashMap<String, Arc<dyn Module>> = HashMap::new();
        for app in apps.iter() {
            for module in app.modules.values() {
                modules.insert(
                    module.type_name(),
                    Arc::new(AppModule {
                        app: app.clone(),
                        module: module.clone(),
                        transport: transport.clone(),
                    }),
                );
            }
        }
        DefinedApps {
            apps,
            modules,
            transport,
        }
    }

    /// The app named `name` (`chatbot`).
    pub fn app(&self, name: &str) -> Option<&Arc<App>> {
        self.apps.get(name)
    }

    /// Every app, in load order.
    pub fn apps(&self) -> impl Iterator<Item = &Arc<App>> {
        self.apps.iter()
    }

    /// Connection type `kind` of app `app`: by the type's name (`token`) or, when only one of
    /// the app's types has it, by its universal kind (`bearer`).
    pub fn connection_type(&self, app: &str, kind: &str) -> Option<&ConnectionType> {
        let app = self.apps.get(app)?;
        connection_index(app, kind).map(|i| &app.connection_types()[i])
    }

    /// Runs the test request of `connection`'s type (found from its `app` and `kind`, as in
    /// [`DefinedApps::connection_type`]) with it: `Ok` on a 2xx answer, else the error a
    /// module would get (401 → `InvalidAccessTokenError` …), with no secret in it. An unknown
    /// app or type, or a type without a test, is an `InvalidConfigurationError`.
    pub async fn test_connection(&self, connection: &Connection) -> Result<(), ModuleError> {
        // The Email app's connections are tried over IMAP and SMTP, not by a request.
        if connection.app == crate::apps::email::APP {
            return crate::apps::email::test_connection(self.transport.options(), connection).await;
        }
        let app = self.apps.get(&connection.app).ok_or_else(|| {
            ModuleError::config(format!("no app named \"{}\" is defined", connection.app))
        })?;
        let index = connection_index(app, &connection.kind).ok_or_else(|| {
            ModuleError::config(format!(
                "the {} app has no connection type \"{}\"",
                app.name(),
                connection.kind
            ))
        })?;
        interpreter::test_connection(app, index, &self.transport, connection).await
    }

    /// The module types served (`chatbot:GetUser` …), sorted.
    pub fn module_types(&self) -> Vec<String> {
        let mut names: Vec<String> = self.modules.keys().cloned().collect();
        names.sort();
        names
    }
}

/// The index of `app`'s connection type named `kind`, or of the only one of that universal kind.
fn connection_index(app: &App, kind: &str) -> Option<usize> {
    let types = app.connection_types();
    types.iter().position(|t| t.name == kind).or_else(|| {
        let mut of_kind = types
            .iter()
            .enumerate()
            .filter(|(_, t)| t.kind.name() == kind);
        match (of_kind.next(), of_kind.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    })
}

impl Registry for DefinedApps {
    fn module(&self, name: &str) -> Option<Arc<dyn Module>> {
        self.modules.get(name).cloned()
    }

    fn module_types(&self) -> Vec<String> {
        DefinedApps::module_types(self)
    }
}
