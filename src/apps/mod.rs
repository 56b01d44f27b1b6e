//! Modules that do work: the built-in ones (HTTP, JSON, text parsing …) and the apps defined
//! as data ([`defined`], `modules/*.json`, served as `app:ModuleName`). [`AppRegistry`] puts
//! them behind one [`Registry`]: it is built once per process (by `cli`) and handed to
//! whatever compiles or runs scenarios. [`transport`] is the HTTP client they all send
//! through, behind the [`egress`] guard.

pub mod auth;
pub mod builtin;
pub mod defined;
pub mod egress;
pub mod email;
pub mod transport;

pub use builtin::{BuiltinRegistry, RegistryError};
pub use defined::DefinedApps;
pub use egress::{EgressAllowance, EgressPolicy};
pub use transport::{Auth, HttpOptions, Transport};

use std::path::PathBuf;
use std::sync::Arc;

use crate::module::{Module, Registry};

/// How the process's modules are set up.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// The shared HTTP clients of every module that calls out.
    pub http: HttpOptions,
    /// App definition files, or folders of them, loaded beside the built-in ones (an app of
    /// the same name as a built-in one replaces it).
    pub apps: Vec<PathBuf>,
    /// Base URLs that replace apps' own (`--app-base-url APP=URL`), by app name.
    pub base_urls: Vec<(String, reqwest::Url)>,
}

impl AppOptions {
    /// The defaults with loopback addresses allowed (see [`EgressPolicy::allowing_loopback`]).
    pub fn allowing_loopback() -> Self {
        AppOptions {
            http: HttpOptions::allowing_loopback(),
            ..AppOptions::default()
        }
    }
}

/// Why the process's modules could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Builtin(#[from] RegistryError),
    #[error("could not create the HTTP client of the apps: {0}")]
    HttpClient(#[from] reqwest::Error),
    /// An app definition is invalid: the error names its file and JSON paths.
    #[error(transparent)]
    Apps(#[from] defined::LoadError),
}

/// Every module this process can run: registries consulted in order, the first that serves
/// a module type wins (built-in modules first, so a data-defined app cannot shadow one).
pub struct AppRegistry {
    layers: Vec<Arc<dyn Registry>>,
    defined: Arc<DefinedApps>,
}

impl AppRegistry {
    /// The registry of a process: the built-in modules, then the apps defined as data (those
    /// built into the binary and `options.apps`), each family with its shared HTTP client.
    pub fn build(options: AppOptions) -> Result<AppRegistry, BuildError> {
        let apps = defined::Apps::load(&options.apps)?.with_base_urls(&options.base_urls)?;
        let builtin = Arc::new(BuiltinRegistry::new(options.http.clone())?);
        // The Email app speaks IMAP and SMTP, not HTTP: native modules (`email/`) beside the
        // connection type `modules/email.json` declares.
        let email = Arc::new(email::EmailRegistry::new(&options.http));
        let defined = Arc::new(DefinedApps::new(
            apps,
            Arc::new(Transport::new(options.http)?),
        ));
        Ok(AppRegistry {
            layers: vec![builtin, email, defined.clone()],
            defined,
        })
    }

    /// The apps defined as data: their definitions, connection types and connection tests.
    pub fn defined(&self) -> &Arc<DefinedApps> {
        &self.defined
    }

    /// The same registry with `registry` consulted after the ones it has.
    pub fn with(mut self, registry: Arc<dyn Registry>) -> AppRegistry {
        self.layers.push(registry);
        self
    }
}

impl Registry for AppRegistry {
    fn module(&self, name: &str) -> Option<Arc<dyn Module>> {
        self.layers.iter().find_map(|layer| layer.module(name))
    }

    /// Every layer's module types, sorted, each once.
    fn module_types(&self) -> Vec<String> {
        let mut types: Vec<String> = self
            .layers
            .iter()
            .flat_map(|layer| layer.module_types())
            .collect();
        types.sort();
        types.dedup();
        types
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::{Invocation, ModuleError};
    use futures::future::BoxFuture;
    use serde_json::Value;

    struct Named(&'static str);

    impl Module for Named {
        fn call<'a>(&'a self, _: Invocation<'a>) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
            Box::pin(async move { Ok(vec![Value::from(self.0)]) })
        }
    }

    struct Extra;

    impl Registry for Extra {
        fn module(&self, name: &str) -> Option<Arc<dyn Module>> {
            match name {
                "extra:One" => Some(Arc::new(Named("extra"))),
                "json:ParseJSON" => Some(Arc::new(Named("shadow"))),
                _ => None,
            }
        }
    }

    #[tokio::test]
    async fn layers_are_consulted_in_order() {
        let registry = AppRegistry::build(AppOptions::default())
            .unwrap()
            .with(Arc::new(Extra));
        assert!(registry.module("http:MakeRequest").is_some());
        assert!(registry.module("chatbot:GetUser").is_some());
        assert!(registry.module("nope:Nope").is_none());
        let context = crate::module::ExecutionContext::new("test");
        let call = |name: &str| {
            let module = registry.module(name).unwrap();
            let parameters = serde_json::Map::new();
            let context = &context;
            async move {
                module
                    .call(Invocation {
                        module_id: 1,
                        module: "x",
                        parameters: &parameters,
                        mapper: serde_json::json!({"json": "1"}),
                        context,
                    })
                    .await
            }
        };
        assert_eq!(call("extra:One").await.unwrap(), vec![Value::from("extra")]);
        // The built-in module is found first: a later layer cannot shadow it.
        assert_ne!(
            call("json:ParseJSON").await.unwrap(),
            vec![Value::from("shadow")]
        );
    }
}
