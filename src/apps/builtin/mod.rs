//! The modules built into Switchyard in Rust (HTTP, RSS, JSON, text parsing, tools), and
//! [`BuiltinRegistry`], which serves them by Make module type. Each module family has its own
//! file; `fields` holds the lenient configuration readers they share.

use std::collections::HashMap;
use std::sync::Arc;

use crate::apps::transport::{HttpOptions, Transport};
use crate::module::{Module, Registry};

mod datastore;
mod fields;
pub mod http;
mod json;
mod regexp;
mod rss;
mod scenarios;
pub mod text;
mod tokens;
pub mod util;

/// Builds one module on the shared HTTP transport.
type Constructor = fn(&Arc<Transport>) -> Arc<dyn Module>;

/// Every module type [`BuiltinRegistry`] serves, with how it is built: adding a built-in
/// module is adding a row.
const MODULES: &[(&str, Constructor)] = &[
    ("http:MakeRequest", |transport| {
        Arc::new(http::HttpModule::new(
            http::Dialect::MakeRequest,
            transport.clone(),
        ))
    }),
    ("http:ActionSendData", |transport| {
        Arc::new(http::HttpModule::new(
            http::Dialect::SendData,
            transport.clone(),
        ))
    }),
    ("http:ActionSendDataBasicAuth", |transport| {
        Arc::new(http::HttpModule::with_credentials(
            http::Dialect::SendData,
            http::Credentials::Basic,
            transport.clone(),
        ))
    }),
    ("http:ActionSendDataAPIKeyAuth", |transport| {
        Arc::new(http::HttpModule::with_credentials(
            http::Dialect::SendData,
            http::Credentials::ApiKey,
            transport.clone(),
        ))
    }),
    ("http:ActionSendDataOAuth", |transport| {
        Arc::new(http::HttpModule::with_credentials(
            http::Dialect::SendData,
            http::Credentials::OAuth,
            transport.clone(),
        ))
    }),
    ("http:ActionGetFile", |transport| {
        Arc::new(http::HttpModule::get_file(transport.clone()))
    }),
    ("json:ParseJSON", |_| Arc::new(json::ParseJson)),
    ("json:CreateJSON", |_| {
        Arc::new(json::ToJson::new(json::Source::Mapper))
    }),
    ("json:TransformToJSON", |_| {
        Arc::new(json::ToJson::new(json::Source::Object))
    }),
    ("regexp:Parser", |_| Arc::new(text::Parser::default())),
    ("regexp:AdvancedParser", |_| {
        Arc::new(regexp::AdvancedParser::default())
    }),
    ("regexp:Replace", |_| Arc::new(regexp::Replace::default())),
    ("regexp:HTMLToText", |_| Arc::new(regexp::HtmlToText)),
    ("regexp:GetElementsFromText", |_| {
        Arc::new(regexp::GetElementsFromText)
    }),
    ("rss:TriggerNewArticle", |transport| {
        Arc::new(rss::WatchFeed::new(transport.clone()))
    }),
    ("tokens:GetAccessToken", |_| {
        Arc::new(tokens::TokenHelper(tokens::Helper::GetAccessToken))
    }),
    ("tokens:GetTokenInfo", |_| {
        Arc::new(tokens::TokenHelper(tokens::Helper::GetTokenInfo))
    }),
    ("tokens:GetFullToken", |_| {
        Arc::new(tokens::TokenHelper(tokens::Helper::GetFullToken))
    }),
    ("tokens:DeleteToken", |_| {
        Arc::new(tokens::TokenHelper(tokens::Helper::DeleteToken))
    }),
    ("tokens:OAuthLink", |_| {
        Arc::new(tokens::TokenHelper(tokens::Helper::OAuthLink))
    }),
    ("tokens:WatchTokenEvents", |_| {
        Arc::new(tokens::WatchTokenEvents)
    }),
    ("util:Switcher", |_| Arc::new(util::Switcher::default())),
    ("util:ComposeTransformer", |_| Arc::new(util::Compose)),
    ("util:FunctionSleep", |_| Arc::new(util::Sleep::new())),
    (scenarios::CALL_SUBSCENARIO, |_| {
        Arc::new(scenarios::CallSubscenario)
    }),
];

/// The registry could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The HTTP client could not be created (TLS set-up, an invalid user agent …).
    #[error("could not create the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
}

/// Serves the built-in modules. The HTTP and RSS modules share one [`Transport`] (one client
/// and connection pool) configured by [`HttpOptions`].
pub struct BuiltinRegistry {
    modules: HashMap<&'static str, Arc<dyn Module>>,
}

impl BuiltinRegistry {
    pub fn new(options: HttpOptions) -> Result<Self, RegistryError> {
        let transport = Arc::new(Transport::new(options)?);
        let modules = MODULES
            .iter()
            .chain(datastore::MODULES)
            .map(|(name, build)| (*name, build(&transport)))
            .collect();
        Ok(BuiltinRegistry { modules })
    }

    /// The module types this registry serves.
    pub fn names() -> impl Iterator<Item = &'static str> {
        MODULES
            .iter()
            .chain(datastore::MODULES)
            .map(|(name, _)| *name)
    }
}

impl Registry for BuiltinRegistry {
    fn module(&self, name: &str) -> Option<Arc<dyn Module>> {
        self.modules.get(name).cloned()
    }

    fn module_types(&self) -> Vec<String> {
        Self::names().map(str::to_string).collect()
    }
}

/// Calls `module` once with `parameters` and `mapper` (objects), as module 1 of an execution
/// named "test": how the built-in modules' unit tests run them.
#[cfg(test)]
pub(crate) async fn call_once(
    module: &dyn Module,
    parameters: serde_json::Value,
    mapper: serde_json::Value,
) -> Result<Vec<serde_json::Value>, crate::module::ModuleError> {
    let parameters = parameters.as_object().cloned().unwrap_or_default();
    module
        .call(crate::module::Invocation {
            module_id: 1,
            module: "test:Module",
            parameters: &parameters,
            mapper,
            context: &crate::module::ExecutionContext::new("test"),
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::ModuleKind;

    #[test]
    fn serves_exactly_the_listed_names() {
        let registry = BuiltinRegistry::new(HttpOptions::default()).unwrap();
        for name in BuiltinRegistry::names() {
            assert!(
                registry.module(name).is_some(),
                "{name} is listed but not served"
            );
        }
        assert_eq!(registry.modules.len(), BuiltinRegistry::names().count());
        assert!(registry.module("http:ActionSendDataBasicAuth").is_some());
        assert!(
            registry
                .module("http:ActionSendDataClientCertAuth")
                .is_none()
        );
        assert!(registry.module("").is_none());
    }

    #[test]
    fn kinds() {
        let registry = BuiltinRegistry::new(HttpOptions::default()).unwrap();
        let kind = |name: &str| registry.module(name).unwrap().kind();
        assert_eq!(kind("regexp:Parser"), ModuleKind::Search);
        assert_eq!(kind("json:ParseJSON"), ModuleKind::Search);
        assert_eq!(kind("http:MakeRequest"), ModuleKind::Action);
        assert_eq!(kind("util:Switcher"), ModuleKind::Action);
        assert_eq!(kind("rss:TriggerNewArticle"), ModuleKind::Trigger);
    }

    #[test]
    fn invalid_user_agent_is_an_error_not_a_panic() {
        let options = HttpOptions {
            user_agent: "bad\nagent".into(),
            ..HttpOptions::default()
        };
        assert!(BuiltinRegistry::new(options).is_err());
    }
}
