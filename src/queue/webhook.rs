//! Webhook and mailhook deliveries, from a request's parts to the committed execution and the
//! caller's reply: every decision below the HTTP layer (and below the SMTP session) is made
//! here, behind [`Intake::deliver`] (and [`Intake::deliver_mail`]). The HTTP handler only
//! reads the request and translates the outcome.
//!
//! In order: the hook's route (cached, [`RouteCache`]); an inactive hook is refused unless
//! it feeds an app's instant trigger, whose service may verify the hook while it is being
//! registered; the hook's rate ([`RateLimiter`], Make's 300 per 10 s); room for the body in
//! the payload gate, before it is read (a sender held too long is told to retry); the
//! instant trigger's verification and delivery id; the deduplication key (a provider event
//! id, `Idempotency-Key`, a mail's `Message-ID`); the bundle; where the execution runs
//! ([`RunHere`]); the commit.
//!
//! The reply of a scenario with `gateway:WebhookRespond` is [`Accepted::reply`], a future:
//! - an execution run by this process (it was handed straight to this process's runner) is
//!   answered by the runner's [`Completions`](super::Completions) when the module runs or
//!   the execution ends; nothing reads the store;
//! - an execution handed to the queue may be run by any process's worker (several processes
//!   share a PostgreSQL store), so the store is read every [`CROSS_PROCESS_POLL`] until
//!   the execution ends there or is claimed: once the store shows it claimed by this
//!   process's runner, only the completions are awaited (no more reads); claimed by
//!   another process, the store's record of the ended execution is the reply (the store has
//!   no notification of an execution's end to listen for, so this cross-process case is the
//!   one that polls); a duplicate delivery's execution, which may have ended long ago, is
//!   read from the store the same way.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::hook_bundle::{BadBody, bundle};
use super::intake::{Intake, RunHere};
use super::{Admission, Finished, QueueError};
use crate::catalog::Hook;
use crate::engine::report::WebhookResponse;
use crate::module::{Connection, ExecutionContext, HookReply, HookRequest, HookTarget, Module};
use crate::scenario::compiled::NodeKind;
use crate::store::{Delivery, ExecutionStatus, NewDelivery, Store, StoreError};

/// Limits on webhook traffic.
#[derive(Debug, Clone)]
pub struct HookLimits {
    /// Larger bodies get 413.
    pub max_body_bytes: usize,
    /// Requests per hook per window before 429 (Make: 300 per 10 s).
    pub rate_per_window: u32,
    pub rate_window: Duration,
    /// How long a caller waits for a `gateway:WebhookRespond` reply before getting 202.
    pub respond_timeout: Duration,
}

impl Default for HookLimits {
    fn default() -> Self {
        HookLimits {
            max_body_bytes: 5 * 1024 * 1024,
            rate_per_window: 300,
            rate_window: Duration::from_secs(10),
            respond_timeout: Duration::from_secs(40),
        }
    }
}

/// How long a large body waits for room to be read before its sender is told to retry.
const LARGE_BODY_WAIT: Duration = Duration::from_secs(10);

/// The `Retry-After` of that answer, in seconds.
const LARGE_BODY_RETRY_SECS: u64 = 5;

/// How often the store is read for the reply of an execution another process may run.
pub const CROSS_PROCESS_POLL: Duration = Duration::from_millis(200);

/// Headers that carry a provider's event id, checked in order.
const DEDUPE_HEADERS: &[&str] = &[
    "idempotency-key",
    "x-idempotency-key",
    "x-event-id",
    "x-github-delivery",
    "x-shopify-webhook-id",
    "x-webhook-id",
];

/// Where a hook's deliveries go, as last read from the store.
#[derive(Clone)]
pub struct Route {
    scenario_id: String,
    version: u32,
    active: bool,
    /// The scenario answers the caller (`gateway:WebhookRespond`).
    responds: bool,
    /// Its executions must run one at a time, in arrival order (only the queue keeps that).
    sequential: bool,
    /// The app instant trigger the hook feeds, if it is one.
    instant: Option<Arc<InstantRoute>>,
    /// The hook is a mailhook's (`gateway:CustomMailHook`): deliveries are e-mails.
    mail: bool,
    read_at: Instant,
}

impl Route {
    /// The hook's scenario is active (and so is the hook).
    pub fn active(&self) -> bool {
        self.active
    }

    /// The hook is a mailhook's: its deliveries are e-mails.
    pub fn mail(&self) -> bool {
        self.mail
    }

    /// The delivery of `payload` (JSON text) along this route to hook `id`, deduplicated by
    /// `key`; a payload no backend stores is [`BadBody`].
    fn delivery(
        &self,
        id: &str,
        key: Option<&str>,
        payload: String,
    ) -> Result<NewDelivery, Refusal> {
        NewDelivery::with_json_text(id, key, &self.scenario_id, self.version, payload).map_err(
            |e| match e {
                // Nested one level too deep once wrapped in `{"value": …}`, say.
                StoreError::InvalidInput { reason, .. } => {
                    Refusal::BadBody(BadBody(format!("the body cannot be accepted: {reason}")))
                }
                e => Refusal::Store(e),
            },
        )
    }
}

/// What verifying and naming a delivery to an instant trigger needs.
struct InstantRoute {
    module: Arc<dyn Module>,
    parameters: Map<String, Value>,
    /// The stored connection the trigger checks requests with (a signing secret), resolved
    /// with the route (`None`: it needs none, or it could not be resolved — then `verify`
    /// refuses). Held in memory only, like the route.
    connection: Option<Connection>,
    url: String,
    token: String,
    attachment: Value,
}

impl InstantRoute {
    fn target(&self) -> HookTarget<'_> {
        HookTarget {
            url: &self.url,
            token: &self.token,
            data: &self.attachment,
        }
    }
}

/// Webhook routes cached for a second: the hot path then touches the database only to store
/// the delivery. Changes made through this process clear it at once ([`Intake::forget_routes`]);
/// changes made elsewhere (the CLI, another process) are seen within [`RouteCache::TTL`].
#[derive(Default)]
struct RouteCache {
    routes: Mutex<HashMap<String, Route>>,
}

impl RouteCache {
    const TTL: Duration = Duration::from_secs(1);

    fn clear(&self) {
        if let Ok(mut r) = self.routes.lock() {
            r.clear();
        }
    }

    fn get(&self, hook: &str) -> Option<Route> {
        let routes = self.routes.lock().ok()?;
        routes
            .get(hook)
            .filter(|r| r.read_at.elapsed() < Self::TTL)
            .cloned()
    }

    fn put(&self, hook: &str, route: Route) {
        if let Ok(mut routes) = self.routes.lock() {
            if routes.len() > 10_000 {
                routes.clear();
            }
            routes.insert(hook.to_string(), route);
        }
    }
}

/// A fixed-window counter per hook.
struct RateLimiter {
    limit: u32,
    window: Duration,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    fn new(limit: u32, window: Duration) -> Self {
        RateLimiter {
            limit,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` when the hook is over its limit.
    fn check(&self, hook: &str) -> Result<(), u64> {
        let Ok(mut windows) = self.windows.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let entry = windows.entry(hook.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            let left = self.window.saturating_sub(now.duration_since(entry.0));
            return Err(left.as_secs().max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

/// The webhook side of an [`Intake`]: its limits, route cache and rate counters.
pub(super) struct HookDesk {
    limits: HookLimits,
    routes: RouteCache,
    limiter: RateLimiter,
}

impl HookDesk {
    pub(super) fn new(limits: HookLimits) -> HookDesk {
        HookDesk {
            limiter: RateLimiter::new(limits.rate_per_window, limits.rate_window),
            routes: RouteCache::default(),
            limits,
        }
    }
}

/// A webhook request as the HTTP layer read it. `body` is read only once the payload gate
/// has room for it (its error, the HTTP layer's own, comes back as [`Refusal::Body`]).
pub struct WebhookRequest<B> {
    pub hook: String,
    /// Upper-case HTTP method.
    pub method: String,
    /// Query parameters, values as JSON strings, in order.
    pub query: Map<String, Value>,
    /// Headers with lower-case names, values as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body's declared length (`Content-Length`), if any.
    pub declared_length: Option<usize>,
    pub body: B,
}

impl<B> WebhookRequest<B> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Why a delivery was not accepted. `E` is the HTTP layer's own body-reading error.
#[derive(Debug)]
pub enum Refusal<E = std::convert::Infallible> {
    /// No hook has this id.
    UnknownHook,
    /// The hook's scenario is not active.
    Inactive,
    /// The hook is over its rate; retry in this many seconds.
    RateLimited { retry_after: u64 },
    /// Too many large bodies are being handled; retry in this many seconds.
    Busy { retry_after: u64 },
    /// The body could not be read.
    Body(E),
    /// The body cannot be read as its content type (or the mailhook) says.
    BadBody(BadBody),
    /// The store failed while the route was read or the delivery made.
    Store(StoreError),
    /// The delivery could not be committed.
    Queue(QueueError),
}

impl Refusal {
    /// The same refusal for a request whose body error is `E`.
    fn widen<E>(self) -> Refusal<E> {
        match self {
            Refusal::UnknownHook => Refusal::UnknownHook,
            Refusal::Inactive => Refusal::Inactive,
            Refusal::RateLimited { retry_after } => Refusal::RateLimited { retry_after },
            Refusal::Busy { retry_after } => Refusal::Busy { retry_after },
            Refusal::Body(never) => match never {},
            Refusal::BadBody(b) => Refusal::BadBody(b),
            Refusal::Store(e) => Refusal::Store(e),
            Refusal::Queue(e) => Refusal::Queue(e),
        }
    }
}

/// What became of a delivery.
pub enum Delivered {
    /// The request was the instant trigger's service verifying the hook: this is its answer,
    /// and nothing was queued.
    Verified(HookReply),
    /// The delivery and its execution are committed.
    Accepted(Accepted),
}

/// A committed delivery.
pub struct Accepted {
    pub execution: String,
    /// The delivery's key was seen before: `execution` is the first delivery's.
    pub duplicate: bool,
    /// The scenario's answer to the caller, when it has `gateway:WebhookRespond`.
    pub reply: Option<PendingReply>,
}

/// What a caller waiting for a `gateway:WebhookRespond` reply gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The scenario answered.
    Responded(WebhookResponse),
    /// The execution ended without answering.
    Ended,
    /// Neither within the intake's respond timeout: the execution goes on.
    TimedOut,
}

/// How a [`PendingReply`] learns of the execution's end.
enum Watch {
    /// This process runs the execution: its runner says when it ends; the store is not read.
    Here(oneshot::Receiver<Finished>),
    /// A worker of any process may run it: this process's runner says so if it is this one's,
    /// and the store is read for another's.
    Anywhere(Option<oneshot::Receiver<Finished>>),
}

/// The reply of an accepted delivery, to await ([`IntoFuture`]): resolved when the
/// scenario's `WebhookRespond` runs, the execution ends, or the respond timeout passes.
pub struct PendingReply {
    execution: String,
    watch: Watch,
    store: Store,
    completions: super::Completions,
    /// This delivery subscribed to the execution's completion (it is no duplicate).
    subscribed: bool,
    /// The name this process's runner claims executions under.
    worker_id: String,
    timeout: Duration,
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        // Only a delivery that subscribed forgets: a duplicate's execution is the first
        // delivery's, whose own caller may still be waiting for it.
        if self.subscribed {
            self.completions.forget(&self.execution);
        }
    }
}

impl IntoFuture for PendingReply {
    type Output = Result<Reply, StoreError>;
    type IntoFuture = BoxFuture<'static, Result<Reply, StoreError>>;

    fn into_future(mut self) -> Self::IntoFuture {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + self.timeout;
            let watch = std::mem::replace(&mut self.watch, Watch::Anywhere(None));
            let completion = match watch {
                Watch::Here(rx) => {
                    if let Some(reply) = from_runner(rx, deadline).await {
                        return Ok(reply);
                    }
                    None
                }
                Watch::Anywhere(rx) => rx,
            };
            self.wait_anywhere(completion, deadline).await
        })
    }
}

impl PendingReply {
    /// The cross-process path: the completion if this process's runner tells it, else the
    /// store's record of the ended execution, read every [`CROSS_PROCESS_POLL`].
    async fn wait_anywhere(
        &self,
        mut completion: Option<oneshot::Receiver<Finished>>,
        deadline: tokio::time::Instant,
    ) -> Result<Reply, StoreError> {
        loop {
            match self.stored().await? {
                Stored::Ended(reply) => return Ok(reply),
                // This process's worker claimed it: its runner tells the end, and the store
                // is not read again (unless that run fails before it is recorded).
                Stored::RunningHere if completion.is_some() => {
                    if let Some(rx) = completion.take()
                        && let Some(reply) = from_runner(rx, deadline).await
                    {
                        return Ok(reply);
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(Reply::TimedOut);
                    }
                    continue;
                }
                Stored::RunningHere | Stored::Open => {}
            }
            let finished = async {
                match completion.as_mut() {
                    Some(rx) => rx.await.unwrap_or(Finished::Unknown),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                finished = finished => {
                    completion = None;
                    if let Finished::Ran { response } = finished {
                        return Ok(ran(response));
                    }
                }
                _ = tokio::time::sleep(CROSS_PROCESS_POLL) => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(Reply::TimedOut),
            }
        }
    }

    /// Where the execution stands in the store: ended (with the reply recorded with it),
    /// running in this process, or still open elsewhere.
    async fn stored(&self) -> Result<Stored, StoreError> {
        let execution = self.store.get_execution(&self.execution).await?;
        if !execution.status.is_terminal() {
            let here = execution.status == ExecutionStatus::Running
                && execution.worker_id.as_deref() == Some(self.worker_id.as_str());
            return Ok(if here {
                Stored::RunningHere
            } else {
                Stored::Open
            });
        }
        let response =
            stored_response(execution.report.as_ref()).map_err(|reason| StoreError::Corrupt {
                what: "the execution's stored webhook response",
                reason,
            })?;
        Ok(Stored::Ended(ran(response)))
    }
}

/// An execution as the store has it, for a caller waiting for its reply.
enum Stored {
    Ended(Reply),
    /// Claimed by this process's runner.
    RunningHere,
    Open,
}

/// The reply this process's runner tells, or the timeout; `None` when the run ended
/// without being recorded (it is pushed again, maybe to another process: the store knows
/// what follows).
async fn from_runner(
    rx: oneshot::Receiver<Finished>,
    deadline: tokio::time::Instant,
) -> Option<Reply> {
    match tokio::time::timeout_at(deadline, rx).await {
        Err(_) => Some(Reply::TimedOut),
        Ok(Ok(Finished::Ran { response })) => Some(ran(response)),
        Ok(Ok(Finished::Unknown) | Err(_)) => None,
    }
}

fn ran(response: Option<WebhookResponse>) -> Reply {
    response.map_or(Reply::Ended, Reply::Responded)
}

/// The `WebhookRespond` reply recorded in a finished execution's report, if it gave one; an
/// unreadable one is an error naming the field (`response.status: …`).
fn stored_response(report: Option<&Value>) -> Result<Option<WebhookResponse>, String> {
    match report.and_then(|r| r.get("response")) {
        None | Some(Value::Null) => Ok(None),
        Some(response) => serde_path_to_error::deserialize(response)
            .map(Some)
            .map_err(|e| format!("response.{}: {}", e.path(), e.inner())),
    }
}

/// Why a mail message was not accepted for its mailhooks.
#[derive(Debug, thiserror::Error)]
pub enum MailRefusal {
    /// The message is no e-mail, or cannot be stored as one: the sender must not retry it.
    #[error("{0}")]
    Rejected(String),
    /// The delivery could not be committed now: the sender may retry.
    #[error("{0}")]
    Failed(QueueError),
}

/// The connection `module` (the instant trigger of hook `hook_id`) checks requests with,
/// resolved through the deployment's connections as its calls are; a failure (the connection
/// deleted or mistyped since activation) is logged without any value and leaves none, so
/// every request is refused until the route is read again.
async fn instant_credentials(
    catalog: &crate::catalog::Catalog,
    module: &Arc<dyn Module>,
    parameters: &Map<String, Value>,
    scenario_id: &str,
    hook_id: &str,
) -> Option<Connection> {
    let trigger = module.instant()?;
    let context = ExecutionContext {
        execution_id: String::new(),
        scenario_id: Some(scenario_id.to_string()),
        extensions: catalog.services().clone(),
    };
    match trigger.credentials(parameters, &context).await {
        Ok(connection) => connection,
        Err(e) => {
            tracing::warn!(hook = hook_id, scenario = scenario_id, error = %e.message, "the instant trigger's connection cannot be used: its requests are refused");
            None
        }
    }
}

impl Intake {
    /// The route of hook `id`: from the cache, else from the store. `None` for an unknown
    /// hook.
    pub async fn route(&self, id: &str) -> Result<Option<Route>, StoreError> {
        let desk = self.hooks();
        if let Some(r) = desk.routes.get(id) {
            return Ok(Some(r));
        }
        let catalog = self.runner().catalog();
        let Some(hook) = catalog.store().get_hook(id).await? else {
            return Ok(None);
        };
        let scenario = catalog.store().get_scenario(&hook.scenario_id).await?;
        let compiled = catalog
            .compiled(&hook.scenario_id, scenario.version)
            .await?
            .ok();
        let instant_node = compiled
            .as_ref()
            .and_then(|s| s.webhook_trigger())
            .and_then(|node| {
                let module = catalog.registry().module(&node.module)?;
                module.instant()?;
                Some((module, node.configuration()))
            });
        let instant = match instant_node {
            None => None,
            Some((module, parameters)) => {
                let connection =
                    instant_credentials(catalog, &module, &parameters, &hook.scenario_id, id).await;
                Some(Arc::new(InstantRoute {
                    parameters,
                    connection,
                    url: catalog.hook_url(id).unwrap_or_default(),
                    token: Hook::token(id),
                    attachment: hook.attachment.clone().unwrap_or(Value::Null),
                    module,
                }))
            }
        };
        let route = Route {
            instant,
            mail: compiled
                .as_ref()
                .is_some_and(|s| s.mail_trigger().is_some()),
            responds: compiled.as_ref().is_some_and(|s| {
                s.nodes
                    .iter()
                    .any(|n| matches!(n.kind, NodeKind::WebhookRespond))
            }),
            sequential: compiled.as_ref().is_none_or(|s| s.settings.sequential),
            scenario_id: hook.scenario_id,
            version: scenario.version,
            active: hook.active && scenario.active,
            read_at: Instant::now(),
        };
        desk.routes.put(id, route.clone());
        Ok(Some(route))
    }

    /// Scenarios were edited, (de)activated or deleted through this process: forget the
    /// cached routes.
    pub fn forget_routes(&self) {
        self.hooks().routes.clear();
    }

    /// Counts one request to hook `id` against its rate; `Err(seconds to wait)` when over.
    pub fn check_rate(&self, id: &str) -> Result<(), u64> {
        self.hooks().limiter.check(id)
    }

    /// The webhook limits this intake applies.
    pub fn hook_limits(&self) -> &HookLimits {
        &self.hooks().limits
    }

    /// Takes one webhook request: refuses it, answers the instant trigger's verification, or
    /// commits the delivery and its execution and says where its reply will come from.
    pub async fn deliver<B, E>(&self, request: WebhookRequest<B>) -> Result<Delivered, Refusal<E>>
    where
        B: Future<Output = Result<Vec<u8>, E>>,
    {
        let desk = self.hooks();
        let route = match self.route(&request.hook).await {
            Ok(Some(route)) => route,
            Ok(None) => return Err(Refusal::UnknownHook),
            Err(e) => return Err(Refusal::Store(e)),
        };
        // An instant trigger's service may verify the hook while it is being registered,
        // before the scenario is active: its request is read and offered to the module first.
        if !route.active && route.instant.is_none() {
            return Err(Refusal::Inactive);
        }
        if let Err(retry_after) = desk.limiter.check(&request.hook) {
            return Err(Refusal::RateLimited { retry_after });
        }
        // A large body waits for room before it is read (its declared length; a body sent
        // without one may be as large as the limit), and keeps it until its execution ends.
        let max = desk.limits.max_body_bytes;
        let admit = self
            .runner()
            .payload_gate()
            .admit(request.declared_length.unwrap_or(max).min(max));
        // Not for long, though: a sender held mid-upload is better told to come back
        // (webhook senders retry a 503), and its connection freed.
        let Ok(admission) = tokio::time::timeout(LARGE_BODY_WAIT, admit).await else {
            return Err(Refusal::Busy {
                retry_after: LARGE_BODY_RETRY_SECS,
            });
        };
        let WebhookRequest {
            hook,
            method,
            query,
            headers,
            body,
            declared_length,
        } = request;
        let body = body.await.map_err(Refusal::Body)?;
        let request = WebhookRequest {
            hook,
            method,
            query,
            headers,
            declared_length,
            body,
        };
        self.deliver_read(request, route, admission)
            .await
            .map_err(Refusal::widen)
    }

    /// [`Intake::deliver`] once the body is read.
    async fn deliver_read(
        &self,
        request: WebhookRequest<Vec<u8>>,
        route: Route,
        admission: Admission,
    ) -> Result<Delivered, Refusal> {
        let mut delivery_id = None;
        if let Some(instant) = &route.instant {
            let query = text_pairs(&request.query);
            let headers: Vec<(String, String)> = request
                .headers
                .iter()
                .filter_map(|(n, v)| Some((n.clone(), std::str::from_utf8(v).ok()?.to_string())))
                .collect();
            let hook_request = HookRequest {
                method: &request.method,
                query: &query,
                headers: &headers,
                body: &request.body,
            };
            let trigger = instant.module.instant();
            if let Some(reply) = trigger.and_then(|t| {
                t.verify(
                    &instant.parameters,
                    instant.connection.as_ref(),
                    instant.target(),
                    hook_request,
                )
            }) {
                return Ok(Delivered::Verified(reply));
            }
            delivery_id = trigger.and_then(|t| t.delivery_id(hook_request));
        }
        if !route.active {
            return Err(Refusal::Inactive);
        }
        let mut key = match delivery_id {
            Some(id) => key_of(id.as_bytes()),
            None => DEDUPE_HEADERS
                .iter()
                .find_map(|h| request.header(h))
                .and_then(key_of),
        };
        let payload = if route.mail {
            key = key.or_else(|| mail_key(&request.body));
            super::mail::mail_bundle(&request.body).map_err(|e| {
                Refusal::BadBody(BadBody(format!(
                    "a mailhook takes the raw message as its body: {e}"
                )))
            })?
        } else {
            let content_type = request.header("content-type").unwrap_or_default();
            let content_type = String::from_utf8_lossy(content_type).into_owned();
            bundle(&content_type, request.query, &request.body).map_err(Refusal::BadBody)?
        };
        drop(request.body);
        let delivery = route.delivery(&request.hook, key.as_deref(), payload)?;
        let run_here = if route.sequential {
            RunHere::No
        } else if route.responds {
            RunHere::Wait
        } else {
            RunHere::IfFree
        };
        let execution = delivery.execution_id().to_string();
        let completions = self.runner().completions().clone();
        // Subscribed before the execution can run, so its end cannot be missed.
        let completion = route.responds.then(|| completions.subscribe(&execution));
        let (delivery, ran_here) = self.commit(delivery, run_here, admission).await;
        let delivery = match delivery {
            Ok(delivery) => delivery,
            Err(e) => {
                completions.forget(&execution);
                return Err(Refusal::Queue(e));
            }
        };
        let duplicate = matches!(delivery, Delivery::Duplicate { .. });
        let reply = completion.map(|completion| {
            let watch = match (duplicate, ran_here) {
                // A duplicate's execution may have finished long ago: only the store knows.
                (true, _) => Watch::Anywhere(None),
                (false, true) => Watch::Here(completion),
                (false, false) => Watch::Anywhere(Some(completion)),
            };
            PendingReply {
                execution: delivery.execution_id().to_string(),
                watch,
                store: self.runner().catalog().store().clone(),
                completions: completions.clone(),
                subscribed: !duplicate,
                worker_id: self.runner().worker_id().to_string(),
                timeout: self.hooks().limits.respond_timeout,
            }
        });
        if duplicate {
            completions.forget(&execution);
        }
        Ok(Delivered::Accepted(Accepted {
            execution: delivery.execution_id().to_string(),
            duplicate,
            reply,
        }))
    }

    /// Takes one e-mail for `recipients` (their hook ids and routes, each an active
    /// mailhook's): one delivery per mailhook, keyed by the message's `Message-ID`. The
    /// message's `admission` goes with the first delivery, which may run here; the others go
    /// to the queue, whose workers admit their payloads themselves. Returns the executions.
    pub async fn deliver_mail(
        &self,
        recipients: Vec<(String, Route)>,
        message: Vec<u8>,
        admission: Admission,
    ) -> Result<Vec<String>, MailRefusal> {
        let payload =
            super::mail::mail_bundle(&message).map_err(|e| MailRefusal::Rejected(e.to_string()))?;
        let key = mail_key(&message);
        drop(message);
        let mut admission = Some(admission);
        let mut executions = Vec::new();
        for (hook, route) in recipients {
            let delivery = match route.delivery(&hook, key.as_deref(), payload.clone()) {
                Ok(delivery) => delivery,
                Err(Refusal::BadBody(BadBody(reason))) => {
                    return Err(MailRefusal::Rejected(reason));
                }
                Err(Refusal::Store(e)) => return Err(MailRefusal::Failed(e.into())),
                Err(other) => return Err(MailRefusal::Rejected(format!("{other:?}"))),
            };
            let run_here = match (&admission, route.sequential) {
                (Some(_), false) => RunHere::IfFree,
                _ => RunHere::No,
            };
            let accepted = self
                .accept_admitted(delivery, run_here, admission.take().unwrap_or_default())
                .await
                .map_err(MailRefusal::Failed)?;
            executions.push(accepted.execution_id().to_string());
        }
        Ok(executions)
    }
}

/// Query parameters as text pairs (the query was read as JSON strings).
fn text_pairs(query: &Map<String, Value>) -> Vec<(String, String)> {
    query
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k.clone(), s.clone()),
            other => (k.clone(), other.to_string()),
        })
        .collect()
}

/// The key a mail message is accepted once by: its `Message-ID`, as a header's key is.
fn mail_key(raw: &[u8]) -> Option<String> {
    super::mail::message_id(raw).and_then(|id| key_of(id.as_bytes()))
}

/// Longest deduplication key stored as sent; longer ones are stored as their hash.
const MAX_DEDUPE_KEY: usize = 200;

/// The deduplication key a delivery's id (a header's value, the module's delivery id, a
/// `Message-ID`) stands for: the trimmed value when it is short printable text, else
/// `sha256:` and the hex SHA-256 of its bytes — a long or binary key still deduplicates
/// instead of being dropped (which would run both copies).
fn key_of(bytes: &[u8]) -> Option<String> {
    let bytes = bytes.trim_ascii();
    if bytes.is_empty() {
        return None;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if text.len() <= MAX_DEDUPE_KEY && !text.starts_with("sha256:") => {
            Some(text.to_string())
        }
        _ => Some(format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn long_or_binary_dedupe_keys_are_hashed_not_dropped() {
        let key = |bytes: &[u8]| key_of(bytes);
        assert_eq!(key(b"  evt-1 ").as_deref(), Some("evt-1"));
        assert_eq!(key(b"   "), None);
        let long = "k".repeat(MAX_DEDUPE_KEY + 1);
        let hashed = key(long.as_bytes()).expect("a long key is kept");
        assert!(
            hashed.starts_with("sha256:") && hashed.len() == 7 + 64,
            "{hashed}"
        );
        assert_eq!(
            key(long.as_bytes()),
            Some(hashed.clone()),
            "the same key, the same hash"
        );
        let other = "k".repeat(MAX_DEDUPE_KEY + 2);
        assert_ne!(key(other.as_bytes()), Some(hashed));
        let exact = "k".repeat(MAX_DEDUPE_KEY);
        assert_eq!(key(exact.as_bytes()), Some(exact.clone()));
        // Bytes that are not UTF-8 still deduplicate.
        assert!(key(&[0xff, 0xfe]).is_some_and(|k| k.starts_with("sha256:")));
        // A sent key cannot pose as another key's hash.
        let posing = format!("sha256:{}", "0".repeat(64));
        assert_ne!(key(posing.as_bytes()), Some(posing));
    }

    fn typed() -> WebhookResponse {
        WebhookResponse {
            status: 201,
            headers: Map::from_iter([
                ("X-Order".to_string(), json!("A-9")),
                ("Content-Type".to_string(), json!("application/json")),
                ("bad header".to_string(), json!("x")),
                ("X-Line".to_string(), json!("a\nb")),
            ]),
            body: json!({"order": "A-9"}),
        }
    }

    #[test]
    fn a_stored_report_gives_back_the_same_response() {
        // As the runner stores it: the report without its log.
        let report = json!({"status": "success", "operations": 2, "cycles": 1, "error": null,
                            "response": serde_json::to_value(typed()).unwrap()});
        assert_eq!(stored_response(Some(&report)).unwrap(), Some(typed()));
        let none = json!({"status": "success", "operations": 1, "cycles": 1, "error": null});
        assert_eq!(stored_response(Some(&none)).unwrap(), None);
        assert_eq!(stored_response(None).unwrap(), None);
        let malformed = json!({"response": {"status": "soon", "headers": {}, "body": ""}});
        let error = stored_response(Some(&malformed)).unwrap_err();
        assert!(
            error.starts_with("response.status: invalid type"),
            "{error}"
        );
    }
}
