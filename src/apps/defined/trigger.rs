//! The trigger parts of app modules: polling triggers (`Module::poll` with
//! `response.trigger`) and instant triggers (the [`InstantTrigger`] side of a module with a
//! `webhook`).
//!
//! **Polling.** The trigger state's cursor is `{"date": D, "ids": [...]}`: the newest item
//! date emitted (RFC 3339, `null` before any dated item) and the ids emitted at exactly that
//! date; the store's seen ids hold every emitted id (capped). An item is new when it is not
//! older than `D` and its id is neither seen nor in `ids`, so items sharing a timestamp are
//! each emitted once even when a cycle's limit splits them. A poll reads the module's pages
//! (stopping at the first item older than the cursor when the API lists newest first,
//! `order: desc`), emits the new items oldest first, at most the limit, and says whether more
//! were left. Where a fresh trigger starts is `parameters.start`: `now` (Make's *From now
//! on*, the default: what the API lists at the first poll counts as processed), `since` (items
//! dated `parameters.since` or later) or `all`; a `sinceLastDate` trigger whose first poll from
//! now lists nothing keeps that poll's time as its cursor. Templates read the cursor as `data.lastDate`
//! and `data.lastId`.
//!
//! **Instant.** `attach` renders and sends `webhook.attach` (with `webhook.url`,
//! `webhook.token`, `parameters`, `connection`) and returns its `response.data`; `detach`
//! sends `webhook.detach` with `webhook.*` holding that data (a 404 counts as removed);
//! `verify` answers 401 to any request `authenticate` does not hold for (a provider's
//! signature, computed with the module's stored connection as `connection`, which
//! `credentials` resolves once per hook route — an `authenticate` whose module's connection is
//! unavailable refuses every request), then a request `verification.condition` recognises — `respond` when
//! `verification.valid` holds, 401 otherwise; `delivery_id` renders `deliveryId`.

use std::collections::HashSet;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::input::parse_date;
use super::interpreter::{AppModule, Call, Pager, output, resolve};
use super::load::CompiledWebhook;
use super::model::{Order, RespondType};
use super::template::{CompiledRequest, CompiledResponse, Vars};
use crate::expr::value;
use crate::module::polling::{self, DateCursor, PollRequest, Polled, TriggerCommit, TriggerState};
use crate::module::{
    Connection, ExecutionContext, HookReply, HookRequest, HookTarget, InstantTrigger, Invocation,
    ModuleError, Scrubber,
};

/// Items one poll reads at most; the pages beyond are left for the next poll.
const MAX_SCANNED: usize = 10 * polling::MAX_LIMIT;

/// Where a fresh trigger starts (Make's "Choose where to start").
#[derive(Debug, Clone, Copy, PartialEq)]
enum Epoch {
    Now,
    All,
    Since(DateTime<Utc>),
}

fn epoch(parameters: &Value) -> Result<Epoch, ModuleError> {
    let start = parameters
        .get("start")
        .map(value::to_text)
        .unwrap_or_default();
    match start.trim().to_ascii_lowercase().as_str() {
        "" | "now" => Ok(Epoch::Now),
        "all" => Ok(Epoch::All),
        "since" => parameters
            .get("since")
            .and_then(parse_date)
            .map(Epoch::Since)
            .ok_or_else(|| ModuleError::data("since: a date is required when start is `since`")),
        _ => Err(ModuleError::data("start: expected now, since or all")),
    }
}

fn iso(date: DateTime<Utc>) -> String {
    date.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One new item.
struct Candidate {
    id: String,
    date: Option<DateTime<Utc>>,
    bundle: Value,
}

/// A trigger called outside a poll (no state): the items up to its limit.
pub(crate) async fn call_fresh(
    module: &AppModule,
    invocation: Invocation<'_>,
) -> Result<Vec<Value>, ModuleError> {
    let state = TriggerState::default();
    let limit = polling::limit(invocation.parameters).unwrap_or(polling::DEFAULT_LIMIT);
    Ok(poll(
        module,
        invocation,
        PollRequest {
            state: &state,
            limit,
        },
    )
    .await?
    .bundles)
}

pub(crate) async fn poll(
    module: &AppModule,
    invocation: Invocation<'_>,
    request: PollRequest<'_>,
) -> Result<Polled, ModuleError> {
    let parameters = module.checked_input(invocation.parameters, &invocation.mapper)?;
    let epoch = epoch(&parameters)?;
    let cursor = request
        .state
        .cursor
        .as_ref()
        .map(|v| DateCursor::from_value(v, "this trigger's cursor"))
        .transpose()?;
    let mut call = module
        .prepare(
            invocation.module_id,
            invocation.parameters,
            parameters,
            invocation.context,
        )
        .await?;
    let last_date = match (&cursor, epoch) {
        (Some(c), _) => c.date.map(iso),
        (None, Epoch::All) => Some("1970-01-01T00:00:00.000Z".to_string()),
        (None, Epoch::Since(date)) => Some(iso(date)),
        (None, Epoch::Now) => Some(iso(call.now)),
    };
    call.data = json!({
        "lastDate": last_date,
        "lastId": cursor.as_ref().and_then(|c| c.ids.last().cloned()),
    });
    poll_prepared(
        module,
        &call,
        cursor,
        epoch,
        &request.state.seen_ids,
        request.limit,
    )
    .await
    .map_err(|e| call.scrub(e))
}

async fn poll_prepared(
    module: &AppModule,
    call: &Call,
    cursor: Option<DateCursor>,
    epoch: Epoch,
    seen: &[String],
    limit: usize,
) -> Result<Polled, ModuleError> {
    let Some((last, temp)) = module.before_last(call).await? else {
        return Ok(Polled::default());
    };
    let default = CompiledResponse::default();
    let response = last.response.as_ref().unwrap_or(&default);
    let Some(trigger) = &response.trigger else {
        return Err(ModuleError::config(format!(
            "{} has no response.trigger",
            module.type_name()
        )));
    };
    // A fresh trigger starting from now only records what is listed.
    let from_now = cursor.is_none() && epoch == Epoch::Now;
    let start = match (cursor, epoch) {
        (Some(cursor), _) => cursor,
        (None, Epoch::Since(date)) => DateCursor {
            date: Some(date),
            ids: Vec::new(),
        },
        (None, Epoch::All | Epoch::Now) => DateCursor::default(),
    };
    let mut known: HashSet<&str> = seen.iter().map(String::as_str).collect();
    known.extend(start.ids.iter().map(String::as_str));
    let mut emitted: HashSet<String> = HashSet::new();

    let vars = call.vars(&temp);
    let rendered = last.render(&vars, &call.base_qs, &call.base_headers)?;
    let mut pager = Pager::new(module, call, last, response, rendered, &temp);
    let mut fresh: Vec<Candidate> = Vec::new();
    let mut scanned = 0;
    while let Some(page) = pager.next_page().await? {
        let page_vars = page.response.vars(vars);
        let items = page
            .items
            .unwrap_or_else(|| vec![page.response.body.clone()]);
        let mut older = false;
        for item in &items {
            scanned += 1;
            let item_vars = Vars { item, ..page_vars };
            let id = trigger.id.text(&item_vars)?;
            if id.is_empty() {
                return Err(ModuleError::data(format!(
                    "{}: an item has no id",
                    trigger.id.path()
                )));
            }
            let date = match &trigger.date {
                None => None,
                Some(expr) => match expr.eval(&item_vars)? {
                    Value::Null => None,
                    v => Some(parse_date(&v).ok_or_else(|| {
                        ModuleError::data(format!("{}: an item's date is not a date", expr.path()))
                    })?),
                },
            };
            if let (Some(d), Some(c)) = (date, start.date)
                && d < c
            {
                older = true;
                continue;
            }
            if known.contains(id.as_str()) || !emitted.insert(id.clone()) {
                continue;
            }
            let bundle = if from_now {
                Value::Null
            } else {
                output(response, &item_vars)?
            };
            fresh.push(Candidate { id, date, bundle });
        }
        let enough = match trigger.order {
            Order::Desc => older || from_now,
            Order::Asc => !from_now && fresh.len() > limit,
            Order::Unordered => false,
        };
        if enough || scanned >= MAX_SCANNED {
            break;
        }
    }

    // Oldest first: an API that lists newest first is read backwards, then by date (undated
    // items, which only the seen ids track, first).
    if trigger.order == Order::Desc {
        fresh.reverse();
    }
    fresh.sort_by_key(|c| c.date);

    let mut next = start;
    if from_now {
        let mut ids = Vec::with_capacity(fresh.len());
        for candidate in fresh {
            next.advance(&candidate.id, candidate.date);
            ids.push(candidate.id);
        }
        if trigger.since_last_date {
            start_from_now(&mut next, call.now);
        }
        return Ok(Polled {
            bundles: Vec::new(),
            change: TriggerCommit {
                cursor: Some(next.to_value()),
                new_seen_ids: ids,
            },
            more: false,
        });
    }
    let more = fresh.len() > limit;
    let mut bundles = Vec::with_capacity(limit.min(fresh.len()));
    let mut ids = Vec::with_capacity(bundles.capacity());
    for candidate in fresh.into_iter().take(limit) {
        next.advance(&candidate.id, candidate.date);
        ids.push(candidate.id);
        bundles.push(candidate.bundle);
    }
    if let Some(emitted) = &trigger.emitted {
        acknowledge(module, call, emitted, &bundles, &temp).await?;
    }
    Ok(Polled {
        bundles,
        change: TriggerCommit {
            cursor: Some(next.to_value()),
            new_seen_ids: ids,
        },
        more,
    })
}

/// A fresh *From now on* trigger that asks the API only for items since `data.lastDate`
/// (`trigger.sinceLastDate`: Google Calendar's `updatedMin`, Google Forms' `timestamp >=`)
/// and whose first poll listed none starts at the time that poll was told: a cursor left
/// without a date would make the next poll ask for, and emit, everything from the start.
fn start_from_now(next: &mut DateCursor, now: DateTime<Utc>) {
    if next.date.is_none() {
        next.date = DateTime::from_timestamp_millis(now.timestamp_millis());
    }
}

/// `response.trigger.emitted`: the request sent for each emitted bundle, in order. A failure
/// fails the poll, so nothing is committed and the bundles come again at the next poll (an
/// acknowledgement such as "mark as read" is idempotent).
async fn acknowledge(
    module: &AppModule,
    call: &Call,
    emitted: &CompiledRequest,
    bundles: &[Value],
    temp: &Value,
) -> Result<(), ModuleError> {
    let default = CompiledResponse::default();
    let response = emitted.response.as_ref().unwrap_or(&default);
    for bundle in bundles {
        let vars = Vars {
            item: bundle,
            ..call.vars(temp)
        };
        if let Some(condition) = &emitted.condition
            && !condition.truthy(&vars)?
        {
            continue;
        }
        let rendered = emitted.render(&vars, &call.base_qs, &call.base_headers)?;
        module.exchange(call, &rendered, response, temp).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Instant triggers

/// `webhook.*`: the hook's URL and token, and what attach kept.
fn hook_value(hook: &HookTarget<'_>) -> Value {
    let mut map = Map::new();
    map.insert("url".into(), Value::from(hook.url));
    map.insert("token".into(), Value::from(hook.token));
    if let Value::Object(data) = hook.data {
        for (key, value) in data {
            map.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    Value::Object(map)
}

/// A hook request's query, headers and body as templates read them.
struct Received {
    method: Value,
    query: Value,
    headers: Value,
    body: Value,
    raw_body: Value,
}

impl Received {
    fn new(request: &HookRequest<'_>, with_body: bool) -> Self {
        let mut query = Map::new();
        for (name, value) in request.query {
            query
                .entry(name.clone())
                .or_insert_with(|| Value::from(value.as_str()));
        }
        let mut headers = Map::new();
        for (name, value) in request.headers {
            headers
                .entry(name.to_ascii_lowercase())
                .or_insert_with(|| Value::from(value.as_str()));
        }
        let body = if !with_body || request.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(request.body).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(request.body).into_owned())
            })
        };
        let raw_body = if with_body {
            Value::String(String::from_utf8_lossy(request.body).into_owned())
        } else {
            Value::Null
        };
        Received {
            method: Value::from(request.method),
            query: Value::Object(query),
            headers: Value::Object(headers),
            body,
            raw_body,
        }
    }

    fn vars<'a>(&'a self, parameters: &'a Value, webhook: &'a Value) -> Vars<'a> {
        self.vars_with(parameters, &Value::Null, webhook)
    }

    fn vars_with<'a>(
        &'a self,
        parameters: &'a Value,
        connection: &'a Value,
        webhook: &'a Value,
    ) -> Vars<'a> {
        Vars {
            parameters,
            connection,
            webhook,
            method: &self.method,
            query: &self.query,
            headers: &self.headers,
            body: &self.body,
            raw_body: &self.raw_body,
            ..Vars::empty(Utc::now())
        }
    }
}

impl AppModule {
    fn webhook(&self) -> Result<&CompiledWebhook, ModuleError> {
        self.module
            .webhook
            .as_ref()
            .ok_or_else(|| ModuleError::config(format!("{} has no webhook", self.type_name())))
    }

    async fn attach_inner(
        &self,
        parameters: &Map<String, Value>,
        hook: HookTarget<'_>,
        context: &ExecutionContext,
    ) -> Result<Value, ModuleError> {
        let Some(attach) = &self.webhook()?.attach else {
            return Ok(Value::Null);
        };
        // An instant trigger's fields come with its parameters (its mapper is never run).
        let checked = self.checked_input(parameters, &Value::Object(parameters.clone()))?;
        let mut call = self.prepare(0, parameters, checked, context).await?;
        call.webhook = hook_value(&hook);
        let result = async {
            let temp = Value::Object(Map::new());
            let rendered = attach.render(&call.vars(&temp), &call.base_qs, &call.base_headers)?;
            let default = CompiledResponse::default();
            let response = attach.response.as_ref().unwrap_or(&default);
            let exchanged = self.exchange(&call, &rendered, response, &temp).await?;
            match &response.data {
                Some(data) => data.eval(&exchanged.vars(call.vars(&temp))),
                None => Ok(Value::Null),
            }
        };
        result.await.map_err(|e| call.scrub(e))
    }

    async fn detach_inner(
        &self,
        parameters: &Map<String, Value>,
        hook: HookTarget<'_>,
        context: &ExecutionContext,
    ) -> Result<(), ModuleError> {
        let Some(detach) = &self.webhook()?.detach else {
            return Ok(());
        };
        let checked = self.checked_input(parameters, &Value::Object(parameters.clone()))?;
        let mut call = self.prepare(0, parameters, checked, context).await?;
        call.webhook = hook_value(&hook);
        let result = async {
            let temp = Value::Object(Map::new());
            let rendered = detach.render(&call.vars(&temp), &call.base_qs, &call.base_headers)?;
            let default = CompiledResponse::default();
            let response = detach.response.as_ref().unwrap_or(&default);
            match self.exchange(&call, &rendered, response, &temp).await {
                Ok(_) => Ok(()),
                // Already gone on the service.
                Err(e) if e.details.as_ref().is_some_and(|d| d["statusCode"] == 404) => Ok(()),
                Err(e) => Err(e),
            }
        };
        result.await.map_err(|e| call.scrub(e))
    }
}

/// The 401 of a request `authenticate` does not hold for.
fn not_authentic() -> HookReply {
    HookReply {
        status: 401,
        content_type: "application/json".into(),
        body: json!({"error": "the request is not authentic for this hook"}).to_string(),
    }
}

impl AppModule {
    /// `connection`'s fields as templates read them (`connection.*`), its type's defaults
    /// filled in, and a scrubber of its secret values for what is logged.
    fn connection_root(&self, connection: Option<&Connection>) -> (Value, Scrubber) {
        let Some(connection) = connection else {
            return (Value::Null, Scrubber::default());
        };
        let mut fields = connection.fields.0.clone();
        let kind = self
            .app
            .connections
            .iter()
            .find(|t| t.name == connection.kind)
            .or_else(|| {
                let accepted = self
                    .module
                    .accepted
                    .iter()
                    .map(|&i| &self.app.connections[i]);
                accepted.clone().find(|t| t.kind.name() == connection.kind)
            });
        if let Some(kind) = kind {
            for (name, default) in &kind.defaults {
                if fields.get(name).is_none_or(Value::is_null) {
                    fields.insert(name.clone(), default.clone());
                }
            }
        }
        let scrubber = Scrubber::of(
            connection
                .fields
                .0
                .values()
                .filter_map(Value::as_str)
                .filter(|s| s.len() >= 4),
        );
        (Value::Object(fields), scrubber)
    }
}

impl InstantTrigger for AppModule {
    fn credentials<'a>(
        &'a self,
        parameters: &'a Map<String, Value>,
        context: &'a ExecutionContext,
    ) -> BoxFuture<'a, Result<Option<Connection>, ModuleError>> {
        Box::pin(async move {
            if self.module.connection.is_none() {
                return Ok(None);
            }
            let (_, found) = resolve(
                &self.app,
                &self.module.accepted,
                &self.type_name(),
                parameters,
                context,
            )
            .await?;
            Ok(Some(found))
        })
    }

    fn verify(
        &self,
        parameters: &Map<String, Value>,
        connection: Option<&Connection>,
        hook: HookTarget<'_>,
        request: HookRequest<'_>,
    ) -> Option<HookReply> {
        let spec = self.module.webhook.as_ref()?;
        if spec.authenticate.is_none() && spec.verification.is_none() {
            return None;
        }
        // Authenticated with a connection it does not have, nothing is authentic.
        if spec.authenticate.is_some() && self.module.connection.is_some() && connection.is_none() {
            tracing::warn!(module = %self.type_name(), "the hook's connection is unavailable: every request is refused");
            return Some(not_authentic());
        }
        let received = Received::new(&request, true);
        let parameters = Value::Object(parameters.clone());
        let (connection, scrubber) = self.connection_root(connection);
        let webhook = hook_value(&hook);
        let vars = received.vars_with(&parameters, &connection, &webhook);
        if let Some(authenticate) = &spec.authenticate {
            let genuine = authenticate.truthy(&vars).unwrap_or_else(|e| {
                let mut error = e.message;
                scrubber.text(&mut error);
                tracing::warn!(module = %self.type_name(), %error, "the webhook authentication failed");
                false
            });
            if !genuine {
                return Some(not_authentic());
            }
        }
        let verification = spec.verification.as_ref()?;
        match verification.condition.truthy(&vars) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                let mut error = e.message;
                scrubber.text(&mut error);
                tracing::warn!(module = %self.type_name(), %error, "the webhook verification condition failed");
                return None;
            }
        }
        let valid = match &verification.valid {
            None => true,
            Some(valid) => valid.truthy(&vars).unwrap_or(false),
        };
        if !valid {
            return Some(HookReply {
                status: 401,
                content_type: "application/json".into(),
                body: json!({"error": "the verification request is not valid for this hook"})
                    .to_string(),
            });
        }
        let body = match &verification.body {
            None => Value::Null,
            Some(body) => match body.eval(&vars) {
                Ok(v) => v,
                Err(e) => {
                    let mut error = e.message;
                    scrubber.text(&mut error);
                    tracing::warn!(module = %self.type_name(), %error, "the webhook verification reply failed");
                    return Some(HookReply {
                        status: 500,
                        content_type: "application/json".into(),
                        body: json!({"error": "the verification reply could not be rendered"})
                            .to_string(),
                    });
                }
            },
        };
        let (content_type, body) = match verification.body_type {
            RespondType::Text => ("text/plain; charset=utf-8", value::to_text(&body)),
            RespondType::Json => ("application/json", body.to_string()),
        };
        Some(HookReply {
            status: verification.status,
            content_type: content_type.into(),
            body,
        })
    }

    fn delivery_id(&self, request: HookRequest<'_>) -> Option<String> {
        let expr = self.module.webhook.as_ref()?.delivery_id.as_ref()?;
        let received = Received::new(&request, expr.mentions("body"));
        let empty = Value::Null;
        let id = expr.text(&received.vars(&empty, &empty)).ok()?;
        let id = id.trim();
        (!id.is_empty()).then(|| id.to_string())
    }

    fn attach<'a>(
        &'a self,
        parameters: &'a Map<String, Value>,
        hook: HookTarget<'a>,
        context: &'a ExecutionContext,
    ) -> BoxFuture<'a, Result<Value, ModuleError>> {
        Box::pin(self.attach_inner(parameters, hook, context))
    }

    fn detach<'a>(
        &'a self,
        parameters: &'a Map<String, Value>,
        hook: HookTarget<'a>,
        context: &'a ExecutionContext,
    ) -> BoxFuture<'a, Result<(), ModuleError>> {
        Box::pin(self.detach_inner(parameters, hook, context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(secs, 0)
    }

    #[test]
    fn epochs() {
        assert_eq!(epoch(&json!({})).unwrap(), Epoch::Now);
        assert_eq!(epoch(&json!({"start": "all"})).unwrap(), Epoch::All);
        assert_eq!(
            epoch(&json!({"start": "since", "since": "2024-01-02"})).unwrap(),
            Epoch::Since(at(1_704_153_600).unwrap())
        );
        assert!(
            epoch(&json!({"start": "since"}))
                .unwrap_err()
                .message
                .starts_with("since")
        );
        assert!(
            epoch(&json!({"start": "later"}))
                .unwrap_err()
                .message
                .starts_with("start")
        );
    }

    #[test]
    fn hook_values_merge_what_attach_kept() {
        let data = json!({"webhookId": "w1", "url": "ignored"});
        let hook = HookTarget {
            url: "https://x.test/hooks/1",
            token: "t",
            data: &data,
        };
        assert_eq!(
            hook_value(&hook),
            json!({"url": "https://x.test/hooks/1", "token": "t", "webhookId": "w1"})
        );
    }
}
