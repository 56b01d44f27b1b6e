//! Instant triggers: modules whose bundles arrive on a scenario's webhook (`/hooks/{id}`) from
//! a service that was told the hook's URL. The [`InstantTrigger`] part of such a module
//! registers the URL on the service when its scenario is activated ([`InstantTrigger::attach`])
//! and removes it when the scenario is deactivated or deleted ([`InstantTrigger::detach`]),
//! answers the service's verification requests ([`InstantTrigger::verify`]) and names each
//! delivery so a redelivered event runs once ([`InstantTrigger::delivery_id`]).
//!
//! The catalog calls `attach`/`detach` and stores what `attach` returns with the hook; the
//! webhook endpoint calls `verify` and `delivery_id` before a delivery is queued.
//!
//! A trigger that checks requests with a secret (a provider's signing secret) keeps it in its
//! stored connection, never in the blueprint: the webhook route resolves that connection once
//! ([`InstantTrigger::credentials`], through the execution's connections as module calls do)
//! and hands it to every `verify` of the route.

use futures::future::BoxFuture;
use serde_json::{Map, Value};

use super::{Connection, ExecutionContext, ModuleError};

/// A scenario's hook as the service sees it.
#[derive(Debug, Clone, Copy)]
pub struct HookTarget<'a> {
    /// The URL the service calls: the public base URL (`serve --public-url`) + `/hooks/{id}`.
    pub url: &'a str,
    /// A secret derived from the hook, for services that echo a verification token.
    pub token: &'a str,
    /// What `attach` returned (`Value::Null` before it ran): the service's id for the hook.
    pub data: &'a Value,
}

/// One request that arrived on a hook, as far as verification and deduplication need it.
#[derive(Debug, Clone, Copy)]
pub struct HookRequest<'a> {
    /// Upper-case HTTP method.
    pub method: &'a str,
    /// Query parameters in order, decoded.
    pub query: &'a [(String, String)],
    /// Headers with lower-case names.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl HookRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The answer to a verification request, sent instead of queueing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookReply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// The webhook side of an instant-trigger module.
pub trait InstantTrigger: Send + Sync {
    /// `Some(reply)` when `request` is the service verifying the hook or is not authentic
    /// (answered, not queued); `None` for a delivery. `connection` is what
    /// [`InstantTrigger::credentials`] resolved for the hook's route (`None`: none, or it could
    /// not be resolved).
    fn verify(
        &self,
        parameters: &Map<String, Value>,
        connection: Option<&Connection>,
        hook: HookTarget<'_>,
        request: HookRequest<'_>,
    ) -> Option<HookReply>;

    /// The stored connection `verify` checks requests with, resolved through `context`'s
    /// connections (unsealed, checked to be of the module's app and type): once per hook route,
    /// not per request. `None` when the trigger checks requests with no connection.
    fn credentials<'a>(
        &'a self,
        parameters: &'a Map<String, Value>,
        context: &'a ExecutionContext,
    ) -> BoxFuture<'a, Result<Option<Connection>, ModuleError>> {
        let _ = (parameters, context);
        Box::pin(async { Ok(None) })
    }

    /// The service's id of this delivery, the same when it redelivers it: a second delivery
    /// with the same id on the same hook is acknowledged and dropped.
    fn delivery_id(&self, request: HookRequest<'_>) -> Option<String>;

    /// Registers `hook` on the service; the value returned (the service's id for it) is kept
    /// with the hook and handed back to `detach`. Services whose hooks are pasted by hand
    /// return `Value::Null` without a request.
    fn attach<'a>(
        &'a self,
        parameters: &'a Map<String, Value>,
        hook: HookTarget<'a>,
        context: &'a ExecutionContext,
    ) -> BoxFuture<'a, Result<Value, ModuleError>>;

    /// Removes `hook` (with `hook.data` as `attach` returned it) from the service.
    fn detach<'a>(
        &'a self,
        parameters: &'a Map<String, Value>,
        hook: HookTarget<'a>,
        context: &'a ExecutionContext,
    ) -> BoxFuture<'a, Result<(), ModuleError>>;
}
