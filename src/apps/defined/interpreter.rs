//! The one [`Module`] implementation behind every module of every app defined as data
//! ([`AppModule`]): it checks the input against the module's field specs, finds the stored
//! connection named by `parameters.__IMTCONN__`, renders each request of the definition,
//! sends it through the shared [`Transport`] with the connection as its [`Auth`], retries what
//! a retry can fix, maps error statuses to Make's error kinds and turns responses into
//! bundles (`output`, `iterate`, `limit`, following `pagination` until the limit).
//!
//! Invariants:
//! - Input is checked before any request: a missing, mistyped or out-of-options field is a
//!   `DataError` naming it and nothing is sent.
//! - Credentials reach the wire only as the request's [`Auth`] (applied by `Auth::apply`),
//!   so an app's own headers, a user's headers in "Make an API Call" or a redirect to
//!   another origin cannot override or carry them; the values of the stored connection are
//!   scrubbed from every error this module returns.
//! - A relative URL stays under the base URL (same origin, under its path); a universal
//!   module's URL must be such a path — absolute URLs, `//host`, `..` (also percent-encoded),
//!   backslashes and other schemes are refused with a `DataError` before anything is sent.
//! - 429, 5xx, timeouts and failed connections are retried within the call (a few attempts,
//!   exponential backoff, `Retry-After` honoured up to [`MAX_RETRY_WAIT`]); what is left is
//!   returned with its Make kind (`RateLimitError` keeps the delay for a later retry).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use percent_encoding::percent_decode_str;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde_json::{Map, Value, json};

use super::files;
use super::input::{self, Mode};
use super::load::{App, AuthPlace, CompiledModule};
use super::model::{BodyType, ModuleType};
use super::template::{self, CompiledRequest, CompiledResponse, Rendered, Vars};
use crate::apps::auth::Signer;
use crate::apps::transport::{
    self, Auth, Body, ErrorStatus, Payload, Request, Response, Transport,
};
use crate::expr::value;
use crate::module::connection::{self, CONNECTION_PARAMETER, Connection, ConnectionsHandle};
use crate::module::{
    ErrorKind, ExecutionContext, InstantTrigger, Invocation, Module, ModuleError, ModuleKind,
    PollRequest, Polled, Scrubber,
};

/// Attempts of one request (the first and its retries).
pub(crate) const MAX_ATTEMPTS: u32 = 4;
/// The first retry's wait; each next one doubles it.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between two attempts: a longer `Retry-After` ends the call with a
/// `RateLimitError` carrying it, for the execution to be retried later.
pub(crate) const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);
/// Pages one call may read before its pagination is deemed endless.
pub(crate) const MAX_PAGES: usize = 1000;
/// Characters of an error response's body kept in the error's details.
const BODY_EXCERPT_CHARS: usize = 1000;
/// Headers a user of "Make an API Call" may not set: the connection's own, and those that
/// would change where or how the request goes.
const RESERVED_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
];

/// One module of an app defined as data.
pub(crate) struct AppModule {
    pub(crate) app: Arc<App>,
    pub(crate) module: Arc<CompiledModule>,
    pub(crate) transport: Arc<Transport>,
}

/// Everything one call knows before its first request.
pub(crate) struct Call {
    pub module_id: u32,
    /// The stored connection's id (`""` without one).
    pub connection_id: String,
    /// What the app's rate is counted by: the connection's id, and the rendered
    /// `base.rateLimit.key` when the app declares one ([`rate_key`]).
    pub rate_key: String,
    /// The checked input (static parameters and mapper), as templates read `parameters`.
    pub parameters: Value,
    /// The stored connection's fields with the configuration's defaults (`null` without one).
    pub connection: Value,
    /// `data.lastDate` / `data.lastId` for polling triggers.
    pub data: Value,
    /// `webhook.*` for attach and detach.
    pub webhook: Value,
    pub base_url: Option<Url>,
    pub base_qs: Vec<(String, String)>,
    pub base_headers: Vec<(String, String)>,
    /// The call's credential, applied to each request (refreshed once on a 401 when it is
    /// an OAuth2 token).
    pub signer: Signer,
    /// The header and query names that carry the credential (refused from users).
    auth_header: Option<String>,
    auth_query: Option<String>,
    /// Connection values scrubbed from errors.
    secrets: Vec<String>,
    pub now: chrono::DateTime<Utc>,
}

impl Call {
    pub(crate) fn vars<'a>(&'a self, temp: &'a Value) -> Vars<'a> {
        Vars {
            parameters: &self.parameters,
            connection: &self.connection,
            data: &self.data,
            webhook: &self.webhook,
            temp,
            ..Vars::empty(self.now)
        }
    }

    /// `error` with every connection value (the credential the signer sent and every other
    /// text field of the connection) replaced by `[redacted]`, in every spelling.
    pub(crate) fn scrub(&self, error: ModuleError) -> ModuleError {
        Scrubber::of(&self.secrets).error(self.signer.scrub(error))
    }
}

/// A response as templates read it.
#[derive(Debug, Clone)]
pub(crate) struct Exchanged {
    pub status: Value,
    pub headers: Value,
    pub body: Value,
}

impl Exchanged {
    pub(crate) fn vars<'a>(&'a self, vars: Vars<'a>) -> Vars<'a> {
        Vars {
            body: &self.body,
            headers: &self.headers,
            status_code: &self.status,
            ..vars
        }
    }
}

fn kind_of_module(kind: ModuleType) -> ModuleKind {
    match kind {
        ModuleType::Trigger => ModuleKind::Trigger,
        ModuleType::InstantTrigger => ModuleKind::InstantTrigger,
        ModuleType::Search => ModuleKind::Search,
        ModuleType::Action | ModuleType::Universal => ModuleKind::Action,
    }
}

impl AppModule {
    pub(crate) fn type_name(&self) -> String {
        self.module.type_name()
    }

    fn is_universal(&self) -> bool {
        self.module.kind == ModuleType::Universal
    }

    /// The input checked against the field specs: static `parameters` and the `mapper`
    /// (which wins), or a `DataError` naming every bad field.
    pub(crate) fn checked_input(
        &self,
        parameters: &Map<String, Value>,
        mapper: &Value,
    ) -> Result<Value, ModuleError> {
        let mut out = Map::new();
        let mut problems = Vec::new();
        let mapper = match mapper {
            Value::Object(map) => map.clone(),
            Value::Null => Map::new(),
            _ => {
                return Err(ModuleError::data(format!(
                    "{}: the mapper must be a collection",
                    self.type_name()
                )));
            }
        };
        input::check(
            &self.module.parameters,
            parameters,
            "",
            Mode::Call,
            &mut out,
            &mut problems,
        );
        let mut mapped = Map::new();
        input::check(
            &self.module.expect,
            &mapper,
            "",
            Mode::Call,
            &mut mapped,
            &mut problems,
        );
        out.extend(mapped);
        if problems.is_empty() {
            return Ok(Value::Object(out));
        }
        let listed: Vec<String> = problems
            .iter()
            .map(|(field, reason)| format!("{field}: {reason}"))
            .collect();
        Err(
            ModuleError::data(format!("{}: {}", self.type_name(), listed.join("; "))).with_details(
                json!({"fields": problems.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>()}),
            ),
        )
    }

    /// Resolves the connection (when the module has one) and prepares the call.
    pub(crate) async fn prepare(
        &self,
        module_id: u32,
        raw_parameters: &Map<String, Value>,
        parameters: Value,
        context: &ExecutionContext,
    ) -> Result<Call, ModuleError> {
        let connection = match self.module.connection {
            None => None,
            Some(_) => {
                let (index, found) = resolve(
                    &self.app,
                    &self.module.accepted,
                    &self.type_name(),
                    raw_parameters,
                    context,
                )
                .await?;
                check_scopes(&self.module.scopes, &self.type_name(), &found)?;
                Some((index, found))
            }
        };
        let call = prepare_call(
            &self.app,
            connection.as_ref().map(|(i, c)| (*i, c)),
            context.extensions.get::<ConnectionsHandle>().cloned(),
            module_id,
            parameters,
        )?;
        // The credential sent is kept out of the execution's history (an API that echoes it
        // in a body the module outputs) as it is out of the call's errors.
        call.signer.keep_out_of_history(context);
        Ok(call)
    }

    /// Runs an action, search or universal module: its requests in order, the last one's
    /// pages until the limit.
    async fn run(&self, invocation: Invocation<'_>) -> Result<Vec<Value>, ModuleError> {
        let parameters = self.checked_input(invocation.parameters, &invocation.mapper)?;
        let call = self
            .prepare(
                invocation.module_id,
                invocation.parameters,
                parameters,
                invocation.context,
            )
            .await?;
        self.run_prepared(&call).await.map_err(|e| call.scrub(e))
    }

    async fn run_prepared(&self, call: &Call) -> Result<Vec<Value>, ModuleError> {
        let (last, temp) = match self.before_last(call).await? {
            Some(found) => found,
            None => return Ok(Vec::new()),
        };
        let default = CompiledResponse::default();
        let response = last.response.as_ref().unwrap_or(&default);
        let vars = call.vars(&temp);
        let limit = limit(response, &vars)?;
        let mut out = Vec::new();
        if limit == Some(0) {
            return Ok(out);
        }
        let rendered = last.render(&vars, &call.base_qs, &call.base_headers)?;
        let mut pager = Pager::new(self, call, last, response, rendered, &temp);
        while let Some(page) = pager.next_page().await? {
            let page_vars = page.response.vars(vars);
            match &page.items {
                None => out.push(output(response, &page_vars)?),
                Some(items) => {
                    for item in items {
                        if limit.is_some_and(|l| out.len() >= l) {
                            break;
                        }
                        out.push(output(response, &Vars { item, ..page_vars })?);
                    }
                }
            }
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }

    /// Runs every request before the last (their `temp` collected) and returns the last one
    /// with the `temp` it sees; `None` when the last request's `condition` skips it.
    pub(crate) async fn before_last<'m>(
        &'m self,
        call: &Call,
    ) -> Result<Option<(&'m CompiledRequest, Value)>, ModuleError> {
        let requests = &self.module.requests;
        let mut temp = Value::Object(Map::new());
        for (i, request) in requests.iter().enumerate() {
            if let Some(condition) = &request.condition
                && !condition.truthy(&call.vars(&temp))?
            {
                if i + 1 == requests.len() {
                    return Ok(None);
                }
                continue;
            }
            if let Some(spec) = &request.temp {
                let value = spec.eval(&call.vars(&temp))?;
                merge_temp(&mut temp, value, spec.path())?;
            }
            if i + 1 == requests.len() {
                return Ok(Some((request, temp)));
            }
            let rendered = request.render(&call.vars(&temp), &call.base_qs, &call.base_headers)?;
            let default = CompiledResponse::default();
            let response = request.response.as_ref().unwrap_or(&default);
            let exchanged = self.exchange(call, &rendered, response, &temp).await?;
            if let Some(spec) = &response.temp {
                let value = spec.eval(&exchanged.vars(call.vars(&temp)))?;
                merge_temp(&mut temp, value, spec.path())?;
            }
        }
        Ok(None)
    }

    /// Sends one rendered request (with retries) and judges its response: an error status or
    /// an invalid response is the error the definition describes.
    pub(crate) async fn exchange(
        &self,
        call: &Call,
        rendered: &Rendered,
        response: &CompiledResponse,
        temp: &Value,
    ) -> Result<Exchanged, ModuleError> {
        exchange(
            &self.app,
            &self.transport,
            call,
            rendered,
            response,
            temp,
            self.is_universal(),
        )
        .await
    }
}

impl AppModule {
    /// `response.each`: sends the per-item request for every listed item, in order, and
    /// returns the items replaced by its output (each request is retried and judged like any
    /// other; its failure fails the call).
    async fn each_item(
        &self,
        call: &Call,
        each: &CompiledRequest,
        listed: Vec<Value>,
        temp: &Value,
    ) -> Result<Vec<Value>, ModuleError> {
        let default = CompiledResponse::default();
        let response = each.response.as_ref().unwrap_or(&default);
        let mut out = Vec::with_capacity(listed.len());
        for item in listed {
            let vars = Vars {
                item: &item,
                ..call.vars(temp)
            };
            if let Some(condition) = &each.condition
                && !condition.truthy(&vars)?
            {
                out.push(item);
                continue;
            }
            let rendered = each.render(&vars, &call.base_qs, &call.base_headers)?;
            let exchanged = self.exchange(call, &rendered, response, temp).await?;
            let got = output(response, &exchanged.vars(vars))?;
            out.push(got);
        }
        Ok(out)
    }
}

impl Module for AppModule {
    fn kind(&self) -> ModuleKind {
        kind_of_module(self.module.kind)
    }

    fn check(&self, parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mapper = match mapper {
            Value::Object(map) => map.clone(),
            Value::Null => Map::new(),
            _ => {
                problems.push(("mapper".to_string(), "must be a collection".to_string()));
                Map::new()
            }
        };
        let mut ignored = Map::new();
        let mut found = Vec::new();
        input::check(
            &self.module.parameters,
            parameters,
            "",
            Mode::Static,
            &mut ignored,
            &mut found,
        );
        problems.extend(found.drain(..).map(|(f, r)| (format!("parameters.{f}"), r)));
        // An instant trigger's fields may sit in its parameters (its hook is attached with them).
        let expect_input = if self.module.kind == ModuleType::InstantTrigger {
            let mut merged = parameters.clone();
            merged.extend(mapper);
            merged
        } else {
            mapper
        };
        input::check(
            &self.module.expect,
            &expect_input,
            "",
            Mode::Static,
            &mut ignored,
            &mut found,
        );
        problems.extend(found.into_iter().map(|(f, r)| (format!("mapper.{f}"), r)));
        if self.module.connection.is_some() && connection::reference(parameters).is_none() {
            problems.push((
                format!("parameters.{CONNECTION_PARAMETER}"),
                format!(
                    "{} needs a connection: the name or id of a stored {} connection \
                     (switchyard connections add NAME --app {} …)",
                    self.type_name(),
                    self.app.name(),
                    self.app.name()
                ),
            ));
        }
        problems
    }

    fn references(&self, parameters: &Map<String, Value>) -> Vec<crate::module::Reference> {
        let (Some(_), Some((field, reference))) = (
            self.module.connection,
            connection::reference_in(parameters, connection::CONNECTION_PARAMETERS),
        ) else {
            return Vec::new();
        };
        let mut kinds = Vec::new();
        for &accepted in &self.module.accepted {
            let wanted = &self.app.connections[accepted];
            for kind in [wanted.name.clone(), wanted.kind.name().to_string()] {
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
        }
        // Where the blueprint names it: `__IMTCONN__`, or `account` (Make's Gmail v1/v2 …).
        vec![crate::module::Reference::Connection {
            path: format!("parameters.{field}"),
            reference,
            app: Some(self.app.name().to_string()),
            kinds,
        }]
    }

    fn instant(&self) -> Option<&dyn InstantTrigger> {
        (self.module.kind == ModuleType::InstantTrigger).then_some(self as &dyn InstantTrigger)
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async move {
            match self.module.kind {
                ModuleType::Trigger => super::trigger::call_fresh(self, invocation).await,
                ModuleType::InstantTrigger => Err(ModuleError::config(format!(
                    "{} is an instant trigger: its bundles arrive on the scenario's webhook",
                    self.type_name()
                ))),
                _ => self.run(invocation).await,
            }
        })
    }

    fn poll<'a>(
        &'a self,
        invocation: Invocation<'a>,
        request: PollRequest<'a>,
    ) -> BoxFuture<'a, Result<Polled, ModuleError>> {
        Box::pin(async move {
            if self.module.kind == ModuleType::Trigger {
                return super::trigger::poll(self, invocation, request).await;
            }
            let bundles = self.call(invocation).await?;
            Ok(Polled {
                more: !bundles.is_empty(),
                bundles,
                ..Polled::default()
            })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Connections and the call's base

/// The stored connection named by `parameters.__IMTCONN__`, checked to be of one of `app`'s
/// connection types `accepted` (indexes, the module's first type first), with the index of
/// the type it is of: the type whose name it names, else the first whose kind it has.
pub(crate) async fn resolve(
    app: &App,
    accepted: &[usize],
    module: &str,
    parameters: &Map<String, Value>,
    context: &ExecutionContext,
) -> Result<(usize, Connection), ModuleError> {
    let named = format!("parameters.{CONNECTION_PARAMETER}");
    let Some(reference) = connection::reference(parameters) else {
        return Err(ModuleError::config(format!(
            "{named}: {module} needs a connection: the name or id of a stored {} connection",
            app.name()
        )));
    };
    let Some(connections) = context.extensions.get::<ConnectionsHandle>() else {
        return Err(ModuleError::config(format!(
            "{named}: this run has no stored connections, so the connection \"{reference}\" cannot be found"
        )));
    };
    let found = connections.resolve(&reference).await.map_err(|mut e| {
        if !e.message.contains(CONNECTION_PARAMETER) {
            e.message = format!("{named}: {}", e.message);
        }
        e
    })?;
    let index = accepted
        .iter()
        .copied()
        .find(|&i| found.kind == app.connections[i].name)
        .or_else(|| {
            accepted
                .iter()
                .copied()
                .find(|&i| found.kind == app.connections[i].kind.name())
        })
        .unwrap_or(accepted[0]);
    let wanted = &app.connections[index];
    if !found.app.is_empty() && found.app != app.name() {
        return Err(ModuleError::config(format!(
            "{named}: the connection \"{}\" is a {} connection; {module} needs a {} connection",
            found.name,
            found.app,
            app.name()
        )));
    }
    if !found.kind.is_empty() && found.kind != wanted.name && found.kind != wanted.kind.name() {
        let names: Vec<&str> = accepted
            .iter()
            .map(|&i| app.connections[i].name.as_str())
            .collect();
        if names.len() > 1 {
            return Err(ModuleError::config(format!(
                "{named}: the connection \"{}\" is of type {}; {module} needs one of the types {}",
                found.name,
                found.kind,
                names.join(", ")
            )));
        }
        return Err(ModuleError::config(format!(
            "{named}: the connection \"{}\" is of type {}; {module} needs one of type {} ({})",
            found.name,
            found.kind,
            wanted.name,
            wanted.kind.name()
        )));
    }
    Ok((index, found))
}

/// Fails with an `InvalidAccessTokenError` naming the first scope of `needed` the token of
/// `connection` was not granted. A token whose grant does not list its scopes passes (the
/// provider then granted what was asked).
fn check_scopes(
    needed: &[String],
    module: &str,
    connection: &Connection,
) -> Result<(), ModuleError> {
    if needed.is_empty() {
        return Ok(());
    }
    let Some(granted) = connection.granted_scopes() else {
        return Ok(());
    };
    match needed.iter().find(|s| !granted.contains(s)) {
        None => Ok(()),
        Some(missing) => Err(ModuleError::new(
            ErrorKind::InvalidAccessTokenError,
            format!(
                "{module} needs the scope {missing}, which the token of connection \"{}\" was \
                 not granted: connect it again, granting that scope",
                connection.name
            ),
        )
        .with_details(json!({"scope": missing, "connection": connection.name}))),
    }
}

/// The call's roots, base URL, base query and headers and credential. `connection` is the
/// app's connection type index and the stored connection, when the call has one; with
/// `connections`, an OAuth2 token the service refuses is refreshed through it.
pub(crate) fn prepare_call(
    app: &App,
    connection: Option<(usize, &Connection)>,
    connections: Option<ConnectionsHandle>,
    module_id: u32,
    parameters: Value,
) -> Result<Call, ModuleError> {
    let now = Utc::now();
    let (connection_value, secrets, compiled) = match connection {
        None => (Value::Null, Vec::new(), None),
        Some((index, stored)) => {
            let compiled = &app.connections[index];
            let mut fields = stored.fields.0.clone();
            for (name, default) in &compiled.defaults {
                if fields
                    .get(name)
                    .is_none_or(|v| v.is_null() || v.as_str().is_some_and(|s| s.trim().is_empty()))
                {
                    fields.insert(name.clone(), default.clone());
                }
            }
            // Every text value is scrubbed from errors except base URLs, which are addresses,
            // and the name of the header or parameter the credential goes in (an `api_key`
            // connection's `name`), which the definition itself declares.
            let place = compiled.auth.as_ref().map(|(_, name, _)| name.as_str());
            let secrets = stored
                .fields
                .0
                .values()
                .filter_map(Value::as_str)
                .filter(|s| s.len() >= 4 && !s.starts_with("http://") && !s.starts_with("https://"))
                .filter(|s| place.is_none_or(|name| !name.eq_ignore_ascii_case(s)))
                .map(str::to_string)
                .collect();
            (Value::Object(fields), secrets, Some((compiled, stored)))
        }
    };
    let mut call = Call {
        module_id,
        connection_id: connection.map(|(_, c)| c.id.clone()).unwrap_or_default(),
        rate_key: String::new(),
        parameters,
        connection: connection_value,
        data: Value::Null,
        webhook: Value::Null,
        base_url: None,
        base_qs: Vec::new(),
        base_headers: Vec::new(),
        signer: Signer::fixed(Auth::None),
        auth_header: None,
        auth_query: None,
        secrets,
        now,
    };
    let result = (|| {
        let empty = Value::Object(Map::new());
        let vars = call.vars(&empty);
        let base_url = match &app.base.base_url {
            _ if app.base_url_override.is_some() => app.base_url_override.clone(),
            Some(expr) => {
                let text = expr.text(&vars)?;
                let text = text.trim();
                if text.is_empty() {
                    None
                } else {
                    Some(base_url(text)?)
                }
            }
            None => None,
        };
        let base_qs = match &app.base.qs {
            Some(qs) => template::pairs(&qs.eval(&vars)?, qs.path())?,
            None => Vec::new(),
        };
        let base_headers = match &app.base.headers {
            Some(headers) => template::pairs(&headers.eval(&vars)?, headers.path())?,
            None => Vec::new(),
        };
        let mut auth = (Signer::fixed(Auth::None), None, None);
        if let Some((compiled, stored)) = compiled {
            if compiled.kind.is_token_grant() {
                // The access token is the credential as it is: nothing to render.
                auth = (
                    Signer::for_connection(stored, connections.clone())?,
                    Some("authorization".to_string()),
                    None,
                );
            } else if let Some((place, name, expr)) = &compiled.auth {
                let value = expr.text(&vars)?;
                let (fixed, header, query) = credential(*place, name, value.trim(), &stored.name)?;
                auth = (Signer::fixed(fixed), header, query);
            }
        }
        let rate_key = rate_key(app, &call.connection_id, &vars)?;
        Ok::<_, ModuleError>((base_url, base_qs, base_headers, auth, rate_key))
    })();
    match result {
        Ok((base_url, base_qs, base_headers, (signer, header, query), rate_key)) => {
            call.rate_key = rate_key;
            call.base_url = base_url;
            call.base_qs = base_qs;
            call.base_headers = base_headers;
            call.signer = signer;
            call.auth_header = header;
            call.auth_query = query;
            Ok(call)
        }
        Err(e) => Err(call.scrub(e)),
    }
}

/// What a call's requests are counted by in the app's declared rate: the stored connection's
/// id, followed by the rendered `base.rateLimit.key` when the app declares one and it is not
/// empty (Airtable's limit is per base: `{{parameters.base}}`).
fn rate_key(app: &App, connection_id: &str, vars: &Vars<'_>) -> Result<String, ModuleError> {
    let Some(key) = &app.base.rate_key else {
        return Ok(connection_id.to_string());
    };
    let key = key.text(vars)?;
    let key = key.trim();
    Ok(if key.is_empty() {
        connection_id.to_string()
    } else {
        format!("{connection_id}\u{1f}{key}")
    })
}

/// The base URL: absolute http(s), without credentials.
fn base_url(text: &str) -> Result<Url, ModuleError> {
    let url = Url::parse(text).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some()
            && u.username().is_empty()
            && u.password().is_none()
    });
    url.ok_or_else(|| {
        ModuleError::config(
            "base.baseUrl: the base URL (from the connection or the app) is not an absolute http(s) URL without credentials",
        )
    })
}

/// The transport credential for a rendered `auth` entry: `Authorization: Bearer …` and
/// `Basic …` become bearer and basic credentials, any other header or parameter an API key.
fn credential(
    place: AuthPlace,
    name: &str,
    value: &str,
    connection: &str,
) -> Result<(Auth, Option<String>, Option<String>), ModuleError> {
    let missing = || {
        ModuleError::config(format!(
            "parameters.{CONNECTION_PARAMETER}: the connection \"{connection}\" has no credential (its secret field is empty)"
        ))
    };
    if place == AuthPlace::Query {
        if value.is_empty() {
            return Err(missing());
        }
        return Ok((
            Auth::ApiKeyQuery {
                name: name.to_string(),
                value: value.to_string(),
            },
            None,
            Some(name.to_string()),
        ));
    }
    let header = Some(name.to_ascii_lowercase());
    if name.eq_ignore_ascii_case("authorization") {
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            if rest.is_empty() {
                return Err(missing());
            }
            return Ok((Auth::Bearer(rest.to_string()), header, None));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                return Err(ModuleError::config(format!(
                    "parameters.{CONNECTION_PARAMETER}: the connection \"{connection}\" does not render a basic credential (base64 of user:password)"
                )));
            };
            if user.is_empty() {
                return Err(missing());
            }
            return Ok((
                Auth::Basic {
                    user: user.to_string(),
                    password: password.to_string(),
                },
                header,
                None,
            ));
        }
    }
    if value.is_empty() {
        return Err(missing());
    }
    let header_name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ModuleError::config(format!("connections: `{name}` is not a header name")))?;
    Ok((
        Auth::ApiKeyHeader {
            name: header_name,
            value: value.to_string(),
        },
        header,
        None,
    ))
}

// ---------------------------------------------------------------------------------------------
// Sending

/// Builds, sends (with retries) and judges one request.
pub(crate) async fn exchange(
    app: &App,
    transport: &Transport,
    call: &Call,
    rendered: &Rendered,
    response: &CompiledResponse,
    temp: &Value,
    universal: bool,
) -> Result<Exchanged, ModuleError> {
    let mut request = build(call, rendered, universal)?;
    request.save_body = files::save_body(response.body);
    let answer = call
        .signer
        .send(request, |request| send(app, transport, request, call))
        .await?;
    let exchanged = Exchanged {
        status: json!(answer.status.as_u16()),
        headers: headers_value(&answer.headers),
        body: files::response_body(&answer)
            .unwrap_or_else(|| parse_body(&answer.headers, &answer.body)),
    };
    let vars = exchanged.vars(call.vars(temp));
    let status = answer.status;
    if status.is_client_error() || status.is_server_error() {
        return Err(status_error(
            app,
            response,
            status,
            &answer.headers,
            &exchanged,
            &vars,
        ));
    }
    let valid = match response.valid.as_ref().or(app.base.valid.as_ref()) {
        Some(valid) => valid.truthy(&vars)?,
        None => true,
    };
    if !valid {
        let message = message(app, response, status.as_u16(), &vars)
            .unwrap_or_else(|| format!("[{}] the response is not valid", status.as_u16()));
        let kind = invalid_kind(app, response, &vars)
            .or_else(|| error_kind(app, response, status.as_u16()))
            .unwrap_or(ErrorKind::RuntimeError);
        return Err(ModuleError::new(kind, message).with_details(details(status, &exchanged.body)));
    }
    Ok(exchanged)
}

/// The transport request for `rendered`: URL resolved against the base and guarded, headers
/// and body encoded, the call's credential attached.
fn build(call: &Call, rendered: &Rendered, universal: bool) -> Result<Request, ModuleError> {
    let url = resolve_url(call.base_url.as_ref(), &rendered.url, universal)?;
    let mut request = Request::new(rendered.method.clone(), url);
    if universal {
        if let Some(name) = &call.auth_query
            && rendered.qs.iter().any(|(n, _)| n == name)
        {
            return Err(ModuleError::data(format!(
                "qs: `{name}` is the connection's own query parameter and cannot be set"
            )));
        }
        for (name, _) in &rendered.headers {
            let lower = name.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str())
                || call.auth_header.as_deref() == Some(lower.as_str())
            {
                return Err(ModuleError::data(format!(
                    "headers: `{name}` is set by the connection or the transport and cannot be set here"
                )));
            }
        }
    }
    request.query = rendered.qs.clone();
    let mut headers = HeaderMap::with_capacity(rendered.headers.len());
    for (name, value) in &rendered.headers {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ModuleError::data(format!("headers: `{name}` is not a valid header name"))
        })?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            ModuleError::data(format!(
                "headers.{name}: the value has characters not allowed in a header"
            ))
        })?;
        headers.insert(header, value);
    }
    request.headers = headers;
    request.body = match &rendered.body {
        None => None,
        Some(body) => Some(encode_body(body, rendered.body_type)?),
    };
    request.error_status = ErrorStatus::Return;
    Ok(request)
}

fn encode_body(body: &Value, body_type: BodyType) -> Result<Body, ModuleError> {
    if let Some(body) = files::request_body(body, body_type)? {
        return Ok(body);
    }
    Ok(match body_type {
        BodyType::Multipart | BodyType::Related => {
            unreachable!("files::request_body encodes every multipart body")
        }
        BodyType::Json => Body {
            payload: Payload::Bytes(serde_json::to_vec(body).unwrap_or_default()),
            content_type: Some("application/json".into()),
        },
        BodyType::Text => {
            let text = value::to_text(body);
            let json = matches!(body, Value::Object(_) | Value::Array(_))
                || (text.trim_start().starts_with(['{', '['])
                    && serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok());
            Body {
                payload: Payload::Bytes(text.into_bytes()),
                content_type: Some(
                    if json {
                        "application/json"
                    } else {
                        "text/plain; charset=utf-8"
                    }
                    .into(),
                ),
            }
        }
        BodyType::Urlencoded => {
            let pairs = template::pairs(body, "body")?;
            let mut form = Url::parse("http://form.invalid/").unwrap_or_else(|_| unreachable!());
            form.query_pairs_mut().extend_pairs(pairs);
            Body {
                payload: Payload::Bytes(form.query().unwrap_or_default().as_bytes().to_vec()),
                content_type: Some("application/x-www-form-urlencoded".into()),
            }
        }
    })
}

/// How long a 429 answer says to wait: its `Retry-After` header, else what the app's
/// `base.rateLimit.retryAfter` reads from its body (seconds).
fn retry_after(
    app: &App,
    headers: &HeaderMap,
    body: &Value,
    headers_value: &Value,
) -> Option<Duration> {
    if let Some(ms) = transport::retry_after_ms(headers) {
        return Some(Duration::from_millis(ms));
    }
    let expr = app.base.retry_after.as_ref()?;
    let now = Utc::now();
    let vars = Vars {
        body,
        headers: headers_value,
        ..Vars::empty(now)
    };
    let seconds = value::to_number(&expr.eval(&vars).ok()?)?;
    (seconds.is_finite() && (0.0..=86_400.0).contains(&seconds))
        .then(|| Duration::from_secs_f64(seconds))
}

/// Sends `request`, retrying 429 (after the wait it gives, or the backoff), 5xx, timeouts and
/// failed connections, at most [`MAX_ATTEMPTS`] times; every attempt first waits for a slot
/// of the app's declared rate for the call's connection, and a 429's wait holds the
/// connection's next slots too.
async fn send(
    app: &App,
    transport: &Transport,
    request: Request,
    call: &Call,
) -> Result<Response, ModuleError> {
    let module_id = call.module_id;
    let mut attempt = 1;
    loop {
        if let Some(rate) = &app.base.rate {
            rate.acquire(&call.rate_key).await;
        }
        let outcome = transport.send(request.clone(), module_id).await;
        let backoff = FIRST_BACKOFF * 2u32.pow(attempt - 1);
        let wait = match &outcome {
            Ok(answer) if answer.status == StatusCode::TOO_MANY_REQUESTS => {
                let body = parse_body(&answer.headers, &answer.body);
                let told =
                    retry_after(app, &answer.headers, &body, &headers_value(&answer.headers));
                if let (Some(rate), Some(told)) = (&app.base.rate, told) {
                    rate.pause(&call.rate_key, told);
                }
                Some(told.unwrap_or(backoff))
            }
            Ok(answer) if answer.status.is_server_error() => Some(backoff),
            Err(e)
                if matches!(
                    e.kind,
                    ErrorKind::ConnectionError | ErrorKind::ModuleTimeoutError
                ) =>
            {
                Some(backoff)
            }
            _ => None,
        };
        match wait {
            Some(wait) if attempt < MAX_ATTEMPTS && wait <= MAX_RETRY_WAIT => {
                tracing::debug!(
                    module_id,
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    "retrying an app request"
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            _ => {
                return outcome.map_err(|e| match e.kind {
                    ErrorKind::ModuleTimeoutError => ModuleError {
                        kind: ErrorKind::ConnectionError,
                        ..e
                    },
                    _ => e,
                });
            }
        }
    }
}

/// `url` (as rendered) resolved: relative ones under the base URL (same origin, under its
/// path), absolute ones as they are unless the module is universal.
pub(crate) fn resolve_url(
    base: Option<&Url>,
    url: &str,
    universal: bool,
) -> Result<Url, ModuleError> {
    let url = url.trim();
    if universal {
        guard_relative(url).map_err(|reason| ModuleError::data(format!("url: {reason}")))?;
    } else if has_scheme(url) || url.starts_with("//") {
        return Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| ModuleError::data("url: the request URL is not an http(s) URL"));
    }
    let Some(base) = base else {
        return Err(ModuleError::config(
            "base.baseUrl: the app has no base URL for this call (is the connection's base URL set?)",
        ));
    };
    let root = base.as_str().trim_end_matches('/');
    let joined = if url.starts_with('/') || url.is_empty() {
        format!("{root}{url}")
    } else {
        format!("{root}/{url}")
    };
    let resolved = Url::parse(&joined)
        .map_err(|e| ModuleError::data(format!("url: not a valid URL path: {e}")))?;
    let base_path = base.path().trim_end_matches('/');
    let path = resolved.path();
    let under =
        path == base_path || path.starts_with(&format!("{base_path}/")) || base_path.is_empty();
    if resolved.origin() != base.origin() || !under {
        return Err(ModuleError::data("url: the path leaves the app's base URL"));
    }
    Ok(resolved)
}

/// Why `url` is not a path relative to the base URL, if it is not.
fn guard_relative(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("a path relative to the base URL is required (e.g. /users)".into());
    }
    if url.chars().any(char::is_control) {
        return Err("control characters are not allowed".into());
    }
    if url.contains('\\') {
        return Err("backslashes are not allowed in the path".into());
    }
    if url.starts_with("//") {
        return Err("must be a path relative to the base URL (e.g. /users), not `//host`".into());
    }
    if has_scheme(url) {
        return Err(
            "must be a path relative to the base URL (e.g. /users), not an absolute URL".into(),
        );
    }
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let mut decoded = path.to_string();
    for _ in 0..4 {
        let next = percent_decode_str(&decoded)
            .decode_utf8_lossy()
            .into_owned();
        if next == decoded {
            break;
        }
        decoded = next;
    }
    if decoded.contains('\\') {
        return Err("backslashes are not allowed in the path (also percent-encoded)".into());
    }
    if decoded.starts_with("//") || has_scheme(&decoded) {
        return Err("must be a path relative to the base URL (also once percent-decoded)".into());
    }
    if decoded
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return Err("`.` and `..` segments are not allowed (also percent-encoded)".into());
    }
    Ok(())
}

/// Whether `text` starts with a URL scheme (`http:`, `javascript:`, `file:` …).
fn has_scheme(text: &str) -> bool {
    let Some((scheme, _)) = text.split_once(':') else {
        return false;
    };
    scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn headers_value(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for (name, value) in headers {
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match out.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&text);
            }
            _ => {
                out.insert(name.as_str().to_string(), Value::String(text));
            }
        }
    }
    Value::Object(out)
}

/// A body as templates read it: JSON when it is JSON, else text; `null` when empty.
fn parse_body(headers: &HeaderMap, bytes: &[u8]) -> Value {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    let declared_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    let looks_json = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['));
    if (declared_json || looks_json)
        && let Ok(value) = serde_json::from_slice(bytes)
    {
        return value;
    }
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

fn details(status: StatusCode, body: &Value) -> Value {
    let text = match body {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    json!({"statusCode": status.as_u16(), "body": text.chars().take(BODY_EXCERPT_CHARS).collect::<String>()})
}

/// The message the definition gives for `status`: the module's entry for it, the base's, the
/// module's default, the base's default.
fn message(app: &App, response: &CompiledResponse, status: u16, vars: &Vars<'_>) -> Option<String> {
    let module = &response.error;
    let base = &app.base.error;
    let template = module
        .status(status)
        .and_then(|(m, _)| m)
        .or_else(|| base.status(status).and_then(|(m, _)| m))
        .or(module.message.as_ref())
        .or(base.message.as_ref())?;
    let text = template.text(vars).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// The kind an invalid 2xx response is, when the module's (else the base's) `error.type` is
/// IML naming one by what the response says; an empty or unknown name leaves it to
/// [`error_kind`].
fn invalid_kind(app: &App, response: &CompiledResponse, vars: &Vars<'_>) -> Option<ErrorKind> {
    let expr = response
        .error
        .kind_of
        .as_ref()
        .or(app.base.error.kind_of.as_ref())?;
    expr.text(vars).ok()?.trim().parse().ok()
}

/// The kind the definition gives for `status`, in the same order as [`message`].
fn error_kind(app: &App, response: &CompiledResponse, status: u16) -> Option<ErrorKind> {
    let module = &response.error;
    let base = &app.base.error;
    module
        .status(status)
        .and_then(|(_, k)| k)
        .or_else(|| base.status(status).and_then(|(_, k)| k))
        .or(module.kind)
        .or(base.kind)
}

/// The error of an HTTP error status: Make's kind for it (401/403 invalid token, 429 rate
/// limit with its delay, other 4xx data, 5xx connection) unless the definition names one, and
/// the definition's message (by default the status and the API's `message`).
fn status_error(
    app: &App,
    response: &CompiledResponse,
    status: StatusCode,
    headers: &HeaderMap,
    exchanged: &Exchanged,
    vars: &Vars<'_>,
) -> ModuleError {
    let code = status.as_u16();
    let default_kind = match code {
        401 | 403 => ErrorKind::InvalidAccessTokenError,
        429 => ErrorKind::RateLimitError,
        400..=499 => ErrorKind::DataError,
        _ => ErrorKind::ConnectionError,
    };
    let kind = error_kind(app, response, code).unwrap_or(default_kind);
    let message = message(app, response, code, vars).unwrap_or_else(|| {
        let reason = status.canonical_reason().unwrap_or("error");
        match exchanged.body.get("message").and_then(Value::as_str) {
            Some(api) => format!("[{code}] {api}"),
            None => format!("[{code}] {reason}"),
        }
    });
    let mut error = ModuleError::new(kind, message).with_details(details(status, &exchanged.body));
    if code == 429
        && let Some(delay) = retry_after(app, headers, &exchanged.body, &exchanged.headers)
    {
        error = error.with_delay_ms(delay.as_millis() as u64);
    }
    error
}

// ---------------------------------------------------------------------------------------------
// Responses and pages

/// `response.limit`: a whole number of bundles, `None` for no limit.
pub(crate) fn limit(
    response: &CompiledResponse,
    vars: &Vars<'_>,
) -> Result<Option<usize>, ModuleError> {
    let Some(spec) = &response.limit else {
        return Ok(None);
    };
    let value = spec.eval(vars)?;
    if value::is_empty(&value) {
        return Ok(None);
    }
    match value::to_number(&value) {
        Some(n) if n >= 0.0 && n.fract() == 0.0 => Ok(Some(n as usize)),
        _ => Err(ModuleError::data(format!(
            "{}: expected a whole number of 0 or more",
            spec.path()
        ))),
    }
}

/// One bundle: `output` over `vars`, or the item (when iterating) or the body.
pub(crate) fn output(response: &CompiledResponse, vars: &Vars<'_>) -> Result<Value, ModuleError> {
    match &response.output {
        Some(output) => output.eval(vars).map(template::spread),
        None if response.iterate.is_some() => Ok(vars.item.clone()),
        None => Ok(vars.body.clone()),
    }
}

/// The items of a response: `iterate`'s array, filtered by its condition.
fn items(response: &CompiledResponse, vars: &Vars<'_>) -> Result<Option<Vec<Value>>, ModuleError> {
    let Some((container, condition)) = &response.iterate else {
        return Ok(None);
    };
    let items = match container.eval(vars)? {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => {
            return Err(ModuleError::data(format!(
                "{}: expected an array to iterate, got {}",
                container.path(),
                template::kind_of(&other)
            )));
        }
    };
    let Some(condition) = condition else {
        return Ok(Some(items));
    };
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        if condition.truthy(&Vars {
            item: &item,
            ..*vars
        })? {
            kept.push(item);
        }
    }
    Ok(Some(kept))
}

/// One page of the last request.
pub(crate) struct Page {
    pub response: Exchanged,
    /// The iterated items; `None` when the response is one bundle.
    pub items: Option<Vec<Value>>,
}

/// Reads the pages of a request one at a time, as long as its `pagination` finds a next one.
pub(crate) struct Pager<'a> {
    module: &'a AppModule,
    call: &'a Call,
    request: &'a CompiledRequest,
    response: &'a CompiledResponse,
    temp: &'a Value,
    next: Option<Rendered>,
    pages: usize,
}

impl<'a> Pager<'a> {
    pub(crate) fn new(
        module: &'a AppModule,
        call: &'a Call,
        request: &'a CompiledRequest,
        response: &'a CompiledResponse,
        first: Rendered,
        temp: &'a Value,
    ) -> Self {
        Pager {
            module,
            call,
            request,
            response,
            temp,
            next: Some(first),
            pages: 0,
        }
    }

    /// The next page, or `None` after the last.
    pub(crate) async fn next_page(&mut self) -> Result<Option<Page>, ModuleError> {
        let Some(rendered) = self.next.take() else {
            return Ok(None);
        };
        let exchanged = self
            .module
            .exchange(self.call, &rendered, self.response, self.temp)
            .await?;
        self.pages += 1;
        let vars = exchanged.vars(self.call.vars(self.temp));
        let mut items = items(self.response, &vars)?;
        if let Some(each) = &self.response.each
            && let Some(listed) = items.take()
        {
            items = Some(
                self.module
                    .each_item(self.call, each, listed, self.temp)
                    .await?,
            );
        }
        if let Some(pagination) = &self.request.pagination {
            let found = items
                .as_ref()
                .map_or(!exchanged.body.is_null(), |i| !i.is_empty());
            let go_on = found
                && match &pagination.condition {
                    Some(condition) => condition.truthy(&vars)?,
                    None => true,
                };
            if go_on {
                if self.pages >= MAX_PAGES {
                    return Err(ModuleError::runtime(format!(
                        "{}: the pagination did not end after {MAX_PAGES} pages",
                        self.module.type_name()
                    )));
                }
                let next = pagination.next(&rendered, &vars)?;
                // A next page that asks for the same thing would be read for ever.
                if next.url != rendered.url || next.qs != rendered.qs || next.body != rendered.body
                {
                    self.next = Some(next);
                }
            }
        }
        Ok(Some(Page {
            response: exchanged,
            items,
        }))
    }
}

fn merge_temp(temp: &mut Value, value: Value, path: &str) -> Result<(), ModuleError> {
    match (temp, value) {
        (_, Value::Null) => Ok(()),
        (Value::Object(temp), Value::Object(more)) => {
            temp.extend(more);
            Ok(())
        }
        (_, other) => Err(ModuleError::data(format!(
            "{path}: expected a collection of temp values, got {}",
            template::kind_of(&other)
        ))),
    }
}

/// Runs connection type `index`'s test request with `connection`.
pub(crate) async fn test_connection(
    app: &App,
    index: usize,
    transport: &Transport,
    connection: &Connection,
) -> Result<(), ModuleError> {
    let compiled = &app.connections[index];
    let Some(test) = &compiled.test else {
        return Err(ModuleError::config(format!(
            "the {} connection type `{}` defines no test request",
            app.name(),
            compiled.name
        )));
    };
    let call = prepare_call(
        app,
        Some((index, connection)),
        None,
        0,
        Value::Object(Map::new()),
    )?;
    let run = async {
        let temp = Value::Object(Map::new());
        let rendered = test.render(&call.vars(&temp), &call.base_qs, &call.base_headers)?;
        let default = CompiledResponse::default();
        let response = test.response.as_ref().unwrap_or(&default);
        exchange(app, transport, &call, &rendered, response, &temp, false).await?;
        Ok(())
    };
    run.await.map_err(|e| call.scrub(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(url: &str) -> Url {
        Url::parse(url).unwrap()
    }

    #[test]
    fn relative_urls_stay_under_the_base() {
        let b = base("https://api.chatbot.com");
        assert_eq!(
            resolve_url(Some(&b), "/users", true).unwrap().as_str(),
            "https://api.chatbot.com/users"
        );
        assert_eq!(
            resolve_url(Some(&b), "users?limit=1", true)
                .unwrap()
                .as_str(),
            "https://api.chatbot.com/users?limit=1"
        );
        // `@host` after the base is a path, not credentials.
        assert_eq!(
            resolve_url(Some(&b), "@evil.test/x", true)
                .unwrap()
                .host_str(),
            Some("api.chatbot.com")
        );
        let v2 = base("http://127.0.0.1:9/v2/");
        assert_eq!(
            resolve_url(Some(&v2), "/stories", false).unwrap().as_str(),
            "http://127.0.0.1:9/v2/stories"
        );
        let err = resolve_url(Some(&v2), "/a/../../admin", false).unwrap_err();
        assert_eq!(err.message, "url: the path leaves the app's base URL");
        let err = resolve_url(Some(&v2), "/%2e%2e/admin", false).unwrap_err();
        assert_eq!(err.kind, ErrorKind::DataError);
        assert!(resolve_url(None, "/users", false).is_err());
    }

    #[test]
    fn the_universal_guard_refuses_every_escape() {
        let b = base("https://api.chatbot.com");
        for bad in [
            "https://evil.test/users",
            "http:evil.test",
            "HTTPS://evil.test",
            "//evil.test/users",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "/../admin",
            "/users/../../admin",
            "..",
            "/%2e%2e/admin",
            "/%2E%2E/admin",
            "/.%2e/admin",
            "/%252e%252e/admin",
            "\\\\evil.test\\x",
            "/users\\..\\admin",
            "/%5c%5cevil.test",
            "%2F%2Fevil.test",
            "https%3A%2F%2Fevil.test",
            "/users\r\nHost: evil",
            "",
        ] {
            let err = resolve_url(Some(&b), bad, true).unwrap_err();
            assert_eq!(err.kind, ErrorKind::DataError, "{bad}");
            assert!(err.message.starts_with("url: "), "{bad}: {}", err.message);
        }
        // Without the guard (a definition's own URL), an absolute URL is allowed.
        assert!(resolve_url(Some(&b), "https://other.test/x", false).is_ok());
    }

    #[test]
    fn credentials_from_rendered_auth() {
        let (auth, header, _) =
            credential(AuthPlace::Header, "Authorization", "Bearer tok-1", "c").unwrap();
        assert_eq!(auth, Auth::Bearer("tok-1".into()));
        assert_eq!(header.as_deref(), Some("authorization"));
        let (auth, ..) =
            credential(AuthPlace::Header, "Authorization", "Basic YW5uOnB3", "c").unwrap();
        assert_eq!(
            auth,
            Auth::Basic {
                user: "ann".into(),
                password: "pw".into()
            }
        );
        let (auth, header, _) = credential(AuthPlace::Header, "X-Api-Key", "k", "c").unwrap();
        assert!(matches!(auth, Auth::ApiKeyHeader { .. }));
        assert_eq!(header.as_deref(), Some("x-api-key"));
        let (auth, _, query) = credential(AuthPlace::Query, "api_key", "k", "c").unwrap();
        assert!(matches!(auth, Auth::ApiKeyQuery { .. }));
        assert_eq!(query.as_deref(), Some("api_key"));
        for (place, name, value) in [
            (AuthPlace::Header, "Authorization", "Bearer "),
            (AuthPlace::Header, "X-Key", ""),
            (AuthPlace::Query, "k", ""),
        ] {
            let err = credential(place, name, value, "bot").unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidConfigurationError);
            assert!(err.message.contains("__IMTCONN__"), "{}", err.message);
        }
    }

    #[test]
    fn bodies_parse_as_json_or_text() {
        let mut headers = HeaderMap::new();
        assert_eq!(parse_body(&headers, b""), Value::Null);
        assert_eq!(parse_body(&headers, b"[1]"), json!([1]));
        assert_eq!(parse_body(&headers, b"hello"), json!("hello"));
        assert_eq!(parse_body(&headers, b"{not json"), json!("{not json"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert_eq!(parse_body(&headers, b"42"), json!(42));
    }

    #[test]
    fn text_bodies_say_when_they_are_json() {
        let body = encode_body(&json!("{\"a\": 1}"), BodyType::Text).unwrap();
        assert_eq!(body.content_type.as_deref(), Some("application/json"));
        let body = encode_body(&json!("plain"), BodyType::Text).unwrap();
        assert_eq!(
            body.content_type.as_deref(),
            Some("text/plain; charset=utf-8")
        );
        let body = encode_body(&json!({"a": "b c", "d": 1}), BodyType::Urlencoded).unwrap();
        assert_eq!(body.in_memory(), Some(&b"a=b+c&d=1"[..]));
    }

    #[test]
    fn scrubbing_removes_connection_values() {
        let call = Call {
            module_id: 1,
            connection_id: String::new(),
            rate_key: String::new(),
            parameters: Value::Null,
            connection: Value::Null,
            data: Value::Null,
            webhook: Value::Null,
            base_url: None,
            base_qs: Vec::new(),
            base_headers: Vec::new(),
            signer: Signer::fixed(Auth::None),
            auth_header: None,
            auth_query: None,
            secrets: vec!["s3cr3t-token".into()],
            now: Utc::now(),
        };
        let error = ModuleError::data("bad s3cr3t-token here")
            .with_details(json!({"body": "echo s3cr3t-token"}));
        let scrubbed = call.scrub(error);
        assert_eq!(scrubbed.message, "bad [redacted] here");
        assert_eq!(scrubbed.details.unwrap()["body"], "echo [redacted]");
    }
}
