//! The HTTP app: `http:MakeRequest` (Make's current "Make a request", v4) and
//! `http:ActionSendData` (the legacy v3 "Make a request"). This file is Make's dialect only:
//! it reads the module's fields liberally (the field spellings found in real exports) into a
//! [`transport::Request`], sends it through the registry's shared [`Transport`], and answers
//! with Make's HTTP output bundle:
//! `{statusCode, headers: {lower-cased name: value}, cookieHeaders?: [...], data}`.
//!
//! The request body is built by `http/body.rs`, the stored connection a keychain field names
//! is found and turned into the request's `Auth` by `http/keychain.rs`.
//!
//! One parser, [`read_spec`], reads the fields for both `check()` (load time) and `call()`
//! (run time); every problem it finds says whether it is already known at load time (not when
//! its value is still an IML expression), so the two can never disagree on what a field means.
//!
//! Errors are typed as Make types them (the mapping lives in the transport): an HTTP error
//! status is a `RuntimeError` (429 a `RateLimitError` carrying `Retry-After`) unless the
//! module's "stop on HTTP error" / `handleErrors` switch says to return the response instead;
//! an unreachable host is a `ConnectionError`, an expired timeout a `ModuleTimeoutError`, a bad
//! URL or body a `DataError`, a Make feature Switchyard lacks an `InvalidConfigurationError`.
//! v3's basic-authentication fields become an [`Auth::Basic`]. Header values, query strings and
//! bodies are never logged or echoed: they can hold secrets.
//!
//! Make's credential-taking variants take their credentials from stored connections (Make's
//! keychains), resolved at call time through the execution's [`ConnectionsHandle`] and applied
//! only as the request's [`Auth`]: `http:ActionSendDataBasicAuth` (a `basic` connection named by
//! `parameters.__IMTCONN__`), `http:ActionSendDataAPIKeyAuth` (an `api_key` connection, by
//! `__IMTCONN__` or Make's `parameters.auth`), `http:ActionSendDataOAuth` (an integration's
//! OAuth2 token, a service account's or a bearer token, sent as `Authorization: Bearer`) and
//! `http:MakeRequest` with `authenticationType` `basicAuth` (`basicAuthKeychain`), `apiKey`
//! (`apiKeyKeychain`) or `oAuth` (`oAuthKeychain`). A connection of another kind is refused
//! with an error naming it and the kind needed. An OAuth token the server refuses with 401 is
//! refreshed once (through the connections' single-flight refresh) and the request sent again.
//! Every credential a request carries is scrubbed from the module's errors and kept out of the
//! execution's history ([`crate::apps::auth::Signer`]), in every spelling an API may echo.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, SET_COOKIE};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value, json};

use super::fields::{
    self, Pair, flag, is_blank, json_error_reason, number, object, pairs, pick, text,
};
use crate::apps::transport::{
    Auth, Body, ErrorStatus, MAX_TIMEOUT_SECS, Redirects, Request, SaveBody, Transport,
};
use crate::module::error::ModuleError;
use crate::module::{Connection, ConnectionsHandle, ExecutionContext, Invocation, Module};

mod body;
mod keychain;

use body::*;
use keychain::*;

const METHODS: &[&str] = &["get", "head", "post", "put", "patch", "delete", "options"];

/// Which of Make's HTTP module shapes a module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `http:MakeRequest` v4.
    MakeRequest,
    /// `http:ActionSendData` v3.
    SendData,
}

/// Where a module's credentials come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// As its fields say: v4's `authenticationType` and keychain, v3's `authUser`/`authPass`.
    Fields,
    /// Always a stored `basic` connection (`http:ActionSendDataBasicAuth`).
    Basic,
    /// Always a stored `api_key` connection (`http:ActionSendDataAPIKeyAuth`).
    ApiKey,
    /// Always a stored OAuth2 connection (`http:ActionSendDataOAuth`).
    OAuth,
}

/// One HTTP module.
pub(crate) struct HttpModule {
    dialect: Dialect,
    credentials: Credentials,
    transport: Arc<Transport>,
    /// `http:ActionGetFile`: the body is always a file, answered as `{fileName, fileSize,
    /// data}` (Make's "Get a file").
    get_file: bool,
}

impl HttpModule {
    pub(crate) fn new(dialect: Dialect, transport: Arc<Transport>) -> Self {
        HttpModule::with_credentials(dialect, Credentials::Fields, transport)
    }

    pub(crate) fn with_credentials(
        dialect: Dialect,
        credentials: Credentials,
        transport: Arc<Transport>,
    ) -> Self {
        HttpModule {
            dialect,
            credentials,
            transport,
            get_file: false,
        }
    }

    /// `http:ActionGetFile`: a GET of `mapper.url` whose body is saved as a file.
    pub(crate) fn get_file(transport: Arc<Transport>) -> Self {
        HttpModule {
            get_file: true,
            ..HttpModule::new(Dialect::SendData, transport)
        }
    }
}

impl Module for HttpModule {
    fn check(&self, parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        check(self.dialect, self.credentials, parameters, mapper)
    }

    fn warnings(&self, parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> =
            match read_spec(self.dialect, self.credentials, parameters, mapper) {
                Ok(_) => Vec::new(),
                Err(problems) => problems
                    .into_iter()
                    .filter(|p| p.at_load && placeholder_url(p))
                    .map(|p| (p.field, p.reason))
                    .collect(),
            };
        if !verifies_tls(self.dialect, object(mapper)) {
            found.push((
                "mapper.rejectUnauthorized".into(),
                "is false: certificate checks stay on unless the operator allows the host \
                 (--allow-insecure-tls HOST); otherwise the module fails when it runs"
                    .into(),
            ));
        }
        found
    }

    fn references(&self, parameters: &Map<String, Value>) -> Vec<crate::module::Reference> {
        let Ok(Some(keychain)) = keychain(self.dialect, self.credentials, parameters) else {
            return Vec::new();
        };
        vec![crate::module::Reference::Connection {
            kinds: keychain
                .kind
                .accepted_kinds()
                .iter()
                .map(|k| k.to_string())
                .collect(),
            path: keychain.field,
            reference: keychain.reference,
            app: None,
        }]
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async move {
            let mut spec = build_spec(
                self.dialect,
                self.credentials,
                invocation.parameters,
                &invocation.mapper,
            )?;
            // A body that is not text is a file (Make's buffer), streamed to the binaries
            // directory instead of read into memory.
            if self.get_file {
                // An error status is an error, not a file of its error page.
                spec.request.save_body = SaveBody::File;
                spec.request.error_status = ErrorStatus::Raise;
            } else {
                // The response cap holds for every body of a request module, a file's too.
                spec.request.save_body = SaveBody::FileUnlessText;
                spec.request.max_response_bytes = spec
                    .request
                    .max_response_bytes
                    .or(Some(self.transport.options().max_response_bytes));
            }
            let mut signer = None;
            if let Some(keychain) = &spec.keychain {
                let (auth, connection) =
                    keychain_auth(keychain, invocation.module, invocation.context).await?;
                // The signer sets the request's credential. An OAuth token refused with 401 is
                // refreshed once and the request sent again: the authenticated send every app
                // shares.
                signer = Some(if keychain.kind == KeychainKind::OAuth {
                    let connections = connections(keychain, invocation.context)?.clone();
                    crate::apps::auth::Signer::for_connection(&connection, Some(connections))?
                } else {
                    crate::apps::auth::Signer::fixed(auth)
                });
            } else if spec.request.auth != Auth::None {
                // v3's basic-authentication fields: sent, and so scrubbed, the same way.
                signer = Some(crate::apps::auth::Signer::fixed(spec.request.auth.clone()));
            }
            // What an API echoes of the credential stays out of errors and of the history.
            if let Some(signer) = &signer {
                signer.keep_out_of_history(invocation.context);
            }
            let response = match &signer {
                Some(signer) => signer
                    .send(spec.request, |request| {
                        self.transport.send(request, invocation.module_id)
                    })
                    .await
                    .map_err(|e| signer.scrub(e)),
                None => {
                    self.transport
                        .send(spec.request, invocation.module_id)
                        .await
                }
            };
            let response = response?;
            if self.get_file {
                return Ok(vec![file_bundle(response)]);
            }
            let bundle = match response.file {
                Some(file) => {
                    let mut bundle =
                        output_bundle(response.status, &response.headers, Vec::new(), false)?;
                    bundle["data"] = file.to_value();
                    bundle
                }
                None => output_bundle(
                    response.status,
                    &response.headers,
                    response.body,
                    spec.parse_response,
                )?,
            };
            Ok(vec![bundle])
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Field names per dialect

impl Dialect {
    fn query_fields(self) -> &'static [&'static str] {
        match self {
            Dialect::MakeRequest => &["queryParameters", "qs"],
            Dialect::SendData => &["qs", "queryParameters"],
        }
    }
    fn redirect_fields(self) -> &'static [&'static str] {
        match self {
            Dialect::MakeRequest => &["allowRedirects", "followRedirect"],
            Dialect::SendData => &["followRedirect", "allowRedirects"],
        }
    }
    /// Make v3 leaves "Parse response" off by default; v4 has it on.
    fn parse_default(self) -> bool {
        self == Dialect::MakeRequest
    }
}

/// Where an HTTP error status is configured, and whether it raises an error by default.
fn stop_on_error(
    dialect: Dialect,
    parameters: &Map<String, Value>,
    mapper: Option<&Map<String, Value>>,
) -> (String, Option<Value>, Result<bool, String>) {
    let (field, value, default) = match dialect {
        // v4 "Return error if HTTP request fails", on by default.
        Dialect::MakeRequest => match pick(mapper, &["stopOnHttpError"]) {
            Some((_, v)) => ("mapper.stopOnHttpError", Some(v), true),
            None => (
                "parameters.stopOnHttpError",
                parameters.get("stopOnHttpError"),
                true,
            ),
        },
        // v3 "Evaluate all states as errors (except for 2xx and 3xx)", off by default.
        Dialect::SendData => match parameters.get("handleErrors").filter(|v| !v.is_null()) {
            Some(v) => ("parameters.handleErrors", Some(v), false),
            None => (
                "mapper.handleErrors",
                pick(mapper, &["handleErrors"]).map(|(_, v)| v),
                false,
            ),
        },
    };
    (field.to_string(), value.cloned(), flag(value, default))
}

// ---------------------------------------------------------------------------------------------
// Reading single fields

pub(crate) fn parse_url(value: Option<&Value>) -> Result<Url, String> {
    if is_blank(value) {
        return Err("is required".into());
    }
    let raw = value.map(text).unwrap_or_default();
    let url = Url::parse(raw.trim()).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must start with http:// or https://".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(url)
}

fn parse_method(value: Option<&Value>) -> Result<Method, String> {
    if is_blank(value) {
        return Ok(Method::GET);
    }
    let name = value
        .map(text)
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !METHODS.contains(&name.as_str()) {
        return Err(format!(
            "'{name}' is not a supported method (one of {})",
            METHODS.join(", ")
        ));
    }
    Method::from_bytes(name.to_ascii_uppercase().as_bytes()).map_err(|e| e.to_string())
}

/// The module's timeout; `None` leaves the transport's default.
fn parse_timeout(value: Option<&Value>) -> Result<Option<Duration>, String> {
    match number(value)? {
        None => Ok(None),
        Some(secs) if (1.0..=MAX_TIMEOUT_SECS as f64).contains(&secs) => {
            Ok(Some(Duration::from_secs_f64(secs)))
        }
        Some(_) => Err(format!("must be between 1 and {MAX_TIMEOUT_SECS} seconds")),
    }
}

fn parse_headers(value: Option<&Value>) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for Pair { name, value, .. } in pairs(value)? {
        let name = name.trim();
        let value = text(&value);
        if name.is_empty() {
            if value.is_empty() {
                continue;
            }
            return Err("a header has no name".into());
        }
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("'{name}' is not a valid header name"))?;
        // The value is never echoed: it may be a credential.
        let mut header_value = HeaderValue::from_bytes(value.as_bytes())
            .map_err(|_| format!("the value of header '{name}' contains invalid characters"))?;
        header_value.set_sensitive(true);
        headers.append(header, header_value);
    }
    Ok(headers)
}

fn parse_query(value: Option<&Value>) -> Result<Vec<(String, String)>, String> {
    Ok(pairs(value)?
        .into_iter()
        .filter(|p| !p.name.trim().is_empty())
        .map(|p| (p.name, text(&p.value)))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Features Make offers that Switchyard does not

fn unsupported(
    dialect: Dialect,
    parameters: &Map<String, Value>,
    m: Option<&Map<String, Value>>,
) -> Vec<(String, String, Option<Value>)> {
    let mut out = Vec::new();
    let mut add = |field: &str, reason: &str, value: Option<&Value>| {
        out.push((field.to_string(), reason.to_string(), value.cloned()))
    };
    match dialect {
        Dialect::MakeRequest => {
            if let Some(tls) = parameters.get("tlsType")
                && text(tls).eq_ignore_ascii_case("mtls")
            {
                add(
                    "parameters.tlsType",
                    "mutual TLS is not supported",
                    Some(tls),
                );
            }
            if let Some(proxy) = parameters
                .get("proxyKeychain")
                .filter(|v| !is_blank(Some(v)))
            {
                add(
                    "parameters.proxyKeychain",
                    "proxies are not supported",
                    Some(proxy),
                );
            }
            if let Some((_, pagination)) =
                pick(m, &["paginationType"]).filter(|(_, v)| !is_blank(Some(v)))
            {
                add(
                    "mapper.paginationType",
                    "pagination is not supported",
                    Some(pagination),
                );
            }
        }
        Dialect::SendData => {
            if let Some((_, v)) = pick(m, &["useMtls"])
                && flag(Some(v), false) == Ok(true)
            {
                add("mapper.useMtls", "mutual TLS is not supported", Some(v));
            }
            if let Some((_, v)) = pick(m, &["ca"]).filter(|(_, v)| !is_blank(Some(v))) {
                add(
                    "mapper.ca",
                    "custom certificate authorities are not supported",
                    Some(v),
                );
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The one parser of the fields, for check() and call()

/// One problem with a module's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    field: String,
    reason: String,
    /// A Make feature Switchyard does not offer (an `InvalidConfigurationError` at run time)
    /// rather than a bad value (a `DataError`).
    unsupported: bool,
    /// Whether `check()` reports it: false when the value is still an IML expression that only
    /// the run will evaluate.
    at_load: bool,
}

impl Problem {
    fn invalid(field: impl Into<String>, reason: impl Into<String>, at_load: bool) -> Self {
        Problem {
            field: field.into(),
            reason: reason.into(),
            unsupported: false,
            at_load,
        }
    }
}

/// The problems found so far while reading the fields.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    /// The value `result` read from `value`, or `None` with its problem recorded against
    /// `field`.
    fn read<T>(
        &mut self,
        field: impl Into<String>,
        value: Option<&Value>,
        result: Result<T, String>,
    ) -> Option<T> {
        result
            .map_err(|reason| {
                let at_load = !value.is_some_and(fields::is_dynamic);
                self.0.push(Problem::invalid(field, reason, at_load));
            })
            .ok()
    }
}

/// A request ready to send, and how its answer is shown.
#[derive(Debug)]
struct Spec {
    request: Request,
    parse_response: bool,
    /// The stored connection whose credentials the request is sent with.
    keychain: Option<Keychain>,
}

/// Reads the module's fields into a [`Spec`], or returns every problem found in them, in the
/// order of the fields (URL, method, headers, query, timeout, switches, body, then the Make
/// features Switchyard lacks).
fn read_spec(
    dialect: Dialect,
    credentials: Credentials,
    parameters: &Map<String, Value>,
    mapper: &Value,
) -> Result<Spec, Vec<Problem>> {
    if !(mapper.is_object() || mapper.is_null()) {
        return Err(vec![Problem::invalid("mapper", "must be an object", true)]);
    }
    let m = object(mapper);
    let get = |name: &str| m.and_then(|m| m.get(name));
    let mut problems = Problems::default();

    let url = problems.read("mapper.url", get("url"), parse_url(get("url")));
    let method = problems.read("mapper.method", get("method"), parse_method(get("method")));
    let headers = problems.read(
        "mapper.headers",
        get("headers"),
        parse_headers(get("headers")),
    );
    let query = match pick(m, dialect.query_fields()) {
        Some((field, value)) => problems.read(
            format!("mapper.{field}"),
            Some(value),
            parse_query(Some(value)),
        ),
        None => Some(Vec::new()),
    };
    let timeout = problems.read(
        "mapper.timeout",
        get("timeout"),
        parse_timeout(get("timeout")),
    );
    let parse_response = problems.read(
        "mapper.parseResponse",
        get("parseResponse"),
        flag(get("parseResponse"), dialect.parse_default()),
    );
    let follow_redirects = match pick(m, dialect.redirect_fields()) {
        Some((field, value)) => problems.read(
            format!("mapper.{field}"),
            Some(value),
            flag(Some(value), true),
        ),
        None => Some(true),
    };
    let (field, value, stop) = stop_on_error(dialect, parameters, m);
    let stop_on_http_error = problems.read(field, value.as_ref(), stop);

    // While a body selector is mapped, nothing about the body is known before the run.
    let selectors_mapped = ["contentType", "bodyType", "inputMethod"]
        .iter()
        .any(|s| get(s).is_some_and(fields::is_dynamic));
    let body = match build_body(dialect, m) {
        Ok(body) => Some(body),
        Err(problem) => {
            problems.0.push(Problem {
                at_load: problem.at_load && !selectors_mapped,
                ..problem
            });
            None
        }
    };

    let keychain = match keychain(dialect, credentials, parameters) {
        Ok(keychain) => keychain,
        Err(problem) => {
            problems.0.push(problem);
            None
        }
    };
    for (field, reason, value) in unsupported(dialect, parameters, m) {
        problems.0.push(Problem {
            field,
            reason,
            unsupported: true,
            at_load: !value.as_ref().is_some_and(fields::is_dynamic),
        });
    }

    let (
        Some(url),
        Some(method),
        Some(headers),
        Some(query),
        Some(timeout),
        Some(parse_response),
        Some(follow_redirects),
        Some(stop_on_http_error),
        Some(body),
    ) = (
        url,
        method,
        headers,
        query,
        timeout,
        parse_response,
        follow_redirects,
        stop_on_http_error,
        body,
    )
    else {
        return Err(problems.0);
    };
    if !problems.0.is_empty() {
        return Err(problems.0);
    }
    let request = Request {
        query,
        headers,
        body,
        auth: basic_auth(dialect, m),
        timeout,
        redirects: if follow_redirects {
            Redirects::Follow
        } else {
            Redirects::Return
        },
        error_status: if stop_on_http_error {
            ErrorStatus::Raise
        } else {
            ErrorStatus::Return
        },
        verify_tls: verifies_tls(dialect, m),
        ..Request::new(method, url)
    };
    Ok(Spec {
        request,
        parse_response,
        keychain,
    })
}

/// v3's basic-authentication fields (`authUser`, `authPass`); v4 names a keychain instead
/// ([`keychain`]), whose credentials replace these at call time.
fn basic_auth(dialect: Dialect, m: Option<&Map<String, Value>>) -> Auth {
    match dialect {
        Dialect::SendData => match pick(m, &["authUser"]).map(|(_, v)| text(v)) {
            Some(user) if !user.is_empty() => Auth::Basic {
                user,
                password: pick(m, &["authPass"])
                    .map(|(_, v)| text(v))
                    .unwrap_or_default(),
            },
            _ => Auth::None,
        },
        Dialect::MakeRequest => Auth::None,
    }
}

/// Whether `problem` is a constant URL that is not one (`https://<organization>.example.com/`,
/// a placeholder the designer fills in): Make loads it and the module fails when it runs, so
/// loading warns instead of refusing.
fn placeholder_url(problem: &Problem) -> bool {
    problem.field == "mapper.url"
        && (problem.reason.starts_with("is not a valid URL") || problem.reason == "has no host")
}

/// Whether the server's certificate is to be checked: v3's `rejectUnauthorized: false` asks
/// not to (honoured only for hosts the operator allows: [`Request::verify_tls`]).
fn verifies_tls(dialect: Dialect, m: Option<&Map<String, Value>>) -> bool {
    match dialect {
        Dialect::SendData => {
            pick(m, &["rejectUnauthorized"]).is_none_or(|(_, v)| flag(Some(v), true) != Ok(false))
        }
        Dialect::MakeRequest => true,
    }
}

/// The problems known at load time, as `(field, reason)`; a placeholder URL is a warning
/// ([`Module::warnings`]).
fn check(
    dialect: Dialect,
    credentials: Credentials,
    parameters: &Map<String, Value>,
    mapper: &Value,
) -> Vec<(String, String)> {
    match read_spec(dialect, credentials, parameters, mapper) {
        Ok(_) => Vec::new(),
        Err(problems) => problems
            .into_iter()
            .filter(|p| p.at_load && !placeholder_url(p))
            .map(|p| (p.field, p.reason))
            .collect(),
    }
}

/// The request to send, or the first problem as an error: a missing Make feature first (an
/// `InvalidConfigurationError`), else the first bad field (a `DataError`).
fn build_spec(
    dialect: Dialect,
    credentials: Credentials,
    parameters: &Map<String, Value>,
    mapper: &Value,
) -> Result<Spec, ModuleError> {
    read_spec(dialect, credentials, parameters, mapper).map_err(|problems| {
        let problem = problems
            .iter()
            .find(|p| p.unsupported)
            .or_else(|| problems.first());
        match problem {
            Some(p) if p.unsupported => ModuleError::config(format!("{}: {}", p.field, p.reason)),
            Some(p) => ModuleError::data(format!("{}: {}", p.field, p.reason)),
            None => ModuleError::data("mapper: could not be read"),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The answer

/// `http:ActionGetFile`'s bundle: `{fileName, fileSize, data}` (the file's handle).
fn file_bundle(response: crate::apps::transport::Response) -> Value {
    let file = match response.file {
        Some(file) => file,
        // A HEAD-less GET always saves its body; an empty one is still a file.
        None => match crate::expr::binary::store(&response.body, "", "file") {
            Ok(file) => file,
            Err(_) => return json!({"fileName": "file", "fileSize": 0, "data": ""}),
        },
    };
    json!({"fileName": file.file_name, "fileSize": file.size, "data": file.to_value()})
}

/// Make's HTTP output bundle.
fn output_bundle(
    status: StatusCode,
    headers: &HeaderMap,
    body: Vec<u8>,
    parse_response: bool,
) -> Result<Value, ModuleError> {
    let mut header_map = Map::new();
    let mut cookies = Vec::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        if name == SET_COOKIE {
            cookies.extend(values.iter().cloned());
            header_map.insert(name.as_str().to_string(), json!(values));
        } else {
            header_map.insert(name.as_str().to_string(), Value::String(values.join(", ")));
        }
    }
    let data = response_data(headers, body, parse_response)?;
    let mut bundle = Map::new();
    bundle.insert("statusCode".into(), json!(status.as_u16()));
    bundle.insert("headers".into(), Value::Object(header_map));
    if !cookies.is_empty() {
        bundle.insert("cookieHeaders".into(), json!(cookies));
    }
    bundle.insert("data".into(), data);
    Ok(Value::Object(bundle))
}

/// The body as Make shows it: parsed when asked and the type is JSON or a URL-encoded form,
/// text otherwise (invalid UTF-8 replaced).
fn response_data(headers: &HeaderMap, body: Vec<u8>, parse: bool) -> Result<Value, ModuleError> {
    let body = match String::from_utf8(body) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    if !parse || body.trim().is_empty() {
        return Ok(Value::String(body));
    }
    let media_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if media_type == "application/json"
        || media_type == "text/json"
        || media_type.ends_with("+json")
    {
        let trimmed = body.trim_start_matches('\u{feff}');
        return serde_json::from_str(trimmed).map_err(|e| {
            ModuleError::data(format!(
                "the response body is not valid JSON: {} at line {} column {}",
                json_error_reason(&e),
                e.line(),
                e.column()
            ))
            .with_details(json!({"line": e.line(), "column": e.column()}))
        });
    }
    if media_type == "application/x-www-form-urlencoded" {
        return Ok(parse_form(&body));
    }
    Ok(Value::String(body))
}

/// A URL-encoded form as an object; a repeated name collects its values in an array.
fn parse_form(body: &str) -> Value {
    let mut out = Map::new();
    for part in body.trim().split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let (name, value) = (form_decode(name), Value::String(form_decode(value)));
        match out.get_mut(&name) {
            Some(Value::Array(values)) => values.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                out.insert(name, value);
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::error::ErrorKind;

    fn spec(dialect: Dialect, params: Value, mapper: Value) -> Result<Spec, ModuleError> {
        let params = params.as_object().cloned().unwrap_or_default();
        build_spec(dialect, Credentials::Fields, &params, &mapper)
    }

    fn body(spec: &Spec) -> Option<&[u8]> {
        spec.request.body.as_ref().and_then(|b| b.in_memory())
    }

    fn problems(dialect: Dialect, params: Value, mapper: Value) -> Vec<String> {
        let params = params.as_object().cloned().unwrap_or_default();
        check(dialect, Credentials::Fields, &params, &mapper)
            .into_iter()
            .map(|(f, r)| format!("{f}: {r}"))
            .collect()
    }

    #[test]
    fn check_requires_url_and_known_method() {
        let found = problems(Dialect::MakeRequest, json!({}), json!({"method": "fetch"}));
        assert!(
            found.iter().any(|p| p == "mapper.url: is required"),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("mapper.method: 'fetch'")),
            "{found:?}"
        );
        let ok = problems(
            Dialect::MakeRequest,
            json!({"authenticationType": "noAuth"}),
            json!({"url": "https://example.org/{{1.id}}", "method": "{{1.m}}"}),
        );
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn check_reports_static_problems_only() {
        let found = problems(
            Dialect::MakeRequest,
            json!({"authenticationType": "apiKey"}),
            json!({
                "url": "ftp://example.org",
                "timeout": 301,
                "contentType": "json",
                "inputMethod": "jsonString",
                "jsonStringBodyContent": "{\"a\": }",
                "stopOnHttpError": "sometimes",
                "paginationType": "pageBased"
            }),
        );
        for expected in [
            "mapper.url: must start with http:// or https://",
            "mapper.timeout: must be between 1 and 300 seconds",
            "mapper.stopOnHttpError: must be true or false",
            "parameters.apiKeyKeychain: is required with authenticationType apiKey",
            "mapper.paginationType: pagination is not supported",
            "mapper.jsonStringBodyContent: is not valid JSON",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(expected)),
                "{expected} not in {found:?}"
            );
        }
        let dynamic_body = problems(
            Dialect::MakeRequest,
            json!({}),
            json!({"url": "https://x.org", "contentType": "json", "jsonStringBodyContent": "{\"a\": {{1.a}}}"}),
        );
        assert!(dynamic_body.is_empty(), "{dynamic_body:?}");
    }

    #[test]
    fn check_v3_body_type_and_tls() {
        let found = problems(
            Dialect::SendData,
            json!({"handleErrors": false}),
            json!({"url": "https://x.org", "bodyType": "xml", "useMtls": true, "rejectUnauthorized": false}),
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("mapper.bodyType: 'xml'")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|p| p.starts_with("mapper.useMtls")),
            "{found:?}"
        );
        // Certificate checks turned off load with a warning (issue 20): they stay on at run
        // time unless the operator allows the host.
        assert!(
            !found
                .iter()
                .any(|p| p.starts_with("mapper.rejectUnauthorized")),
            "{found:?}"
        );
        let module = HttpModule::new(
            Dialect::SendData,
            Arc::new(Transport::new(Default::default()).unwrap()),
        );
        let tls_off = json!({"url": "https://x.org", "rejectUnauthorized": false});
        let warned = module.warnings(&Map::new(), &tls_off);
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert_eq!(warned[0].0, "mapper.rejectUnauthorized");
        assert!(warned[0].1.contains("--allow-insecure-tls"), "{warned:?}");
        let spec = build_spec(
            Dialect::SendData,
            Credentials::Fields,
            &Map::new(),
            &tls_off,
        )
        .map_err(|e| e.message)
        .unwrap();
        assert!(!spec.request.verify_tls);
        // A placeholder URL is a warning at load, a data error when the module runs.
        let placeholder = json!({"url": "https://<organization>.example.com/api"});
        assert!(
            check(
                Dialect::SendData,
                Credentials::Fields,
                &Map::new(),
                &placeholder
            )
            .is_empty()
        );
        let warned = module.warnings(&Map::new(), &placeholder);
        assert!(
            warned.len() == 1 && warned[0].0 == "mapper.url",
            "{warned:?}"
        );
        let ok = problems(
            Dialect::SendData,
            json!({"handleErrors": true}),
            json!({"url": "https://x.org", "bodyType": "multipart_form_data", "formDataFields": [{"key": "a", "value": "b"}], "timeout": ""}),
        );
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn unsupported_configuration_fails_at_call_time() {
        let err = spec(
            Dialect::MakeRequest,
            json!({"authenticationType": "basicAuth"}),
            json!({"url": "https://x.org"}),
        )
        .err()
        .unwrap();
        assert_eq!(err.kind, ErrorKind::InvalidConfigurationError);
    }

    #[test]
    fn invalid_url_and_json_body_are_data_errors() {
        let err = spec(Dialect::MakeRequest, json!({}), json!({"url": "not a url"}))
            .err()
            .unwrap();
        assert_eq!(err.kind, ErrorKind::DataError);
        assert!(err.message.starts_with("mapper.url:"), "{}", err.message);
        let err = spec(
            Dialect::MakeRequest,
            json!({}),
            json!({"url": "https://x.org", "contentType": "json", "jsonStringBodyContent": "{\n\"a\": 1,\n}"}),
        )
        .err()
        .unwrap();
        assert_eq!(err.kind, ErrorKind::DataError);
        assert!(err.message.contains("line 3"), "{}", err.message);
    }

    #[test]
    fn spec_defaults_differ_by_version() {
        let v4 = spec(
            Dialect::MakeRequest,
            json!({}),
            json!({"url": "https://x.org"}),
        )
        .unwrap();
        assert!(v4.parse_response);
        assert_eq!(v4.request.error_status, ErrorStatus::Raise);
        assert_eq!(v4.request.redirects, Redirects::Follow);
        assert_eq!(v4.request.method, Method::GET);
        // No timeout of its own: the transport's default, Make's 300 s.
        assert_eq!(v4.request.timeout, None);
        assert_eq!(
            crate::apps::transport::HttpOptions::default().timeout,
            Duration::from_secs(300)
        );
        let v3 = spec(
            Dialect::SendData,
            json!({}),
            json!({"url": "https://x.org", "method": "POST", "timeout": "30"}),
        )
        .unwrap();
        assert!(!v3.parse_response);
        assert_eq!(v3.request.error_status, ErrorStatus::Return);
        assert_eq!(v3.request.method, Method::POST);
        assert_eq!(v3.request.timeout, Some(Duration::from_secs(30)));
        let v3 = spec(
            Dialect::SendData,
            json!({"handleErrors": true}),
            json!({"url": "https://x.org", "followRedirect": false}),
        )
        .unwrap();
        assert_eq!(v3.request.error_status, ErrorStatus::Raise);
        assert_eq!(v3.request.redirects, Redirects::Return);
    }

    #[test]
    fn bodies_are_encoded_per_kind() {
        let s = spec(
            Dialect::MakeRequest,
            json!({}),
            json!({"url": "https://x.org", "contentType": "urlEncoded",
                   "urlEncodedBodyContent": [{"name": "a b", "value": "x&y=z"}, {"name": "n", "value": 5}]}),
        )
        .unwrap();
        assert_eq!(body(&s), Some(&b"a+b=x%26y%3Dz&n=5"[..]));
        assert_eq!(
            s.request.content_type().unwrap(),
            "application/x-www-form-urlencoded"
        );

        let s = spec(
            Dialect::MakeRequest,
            json!({}),
            json!({"url": "https://x.org", "contentType": "json", "inputMethod": "dataStructure",
                   "dataStructureBodyContent": {"k": [1, 2]}}),
        )
        .unwrap();
        assert_eq!(body(&s), Some(&br#"{"k":[1,2]}"#[..]));
        assert_eq!(s.request.content_type().unwrap(), "application/json");

        // A designer's Content-Type header wins.
        let s = spec(
            Dialect::SendData,
            json!({}),
            json!({"url": "https://x.org", "bodyType": "raw", "contentType": "application/json",
                   "headers": [{"name": "Content-Type", "value": "text/csv"}], "data": "a,b"}),
        )
        .unwrap();
        assert_eq!(s.request.content_type().unwrap(), "text/csv");
        assert_eq!(body(&s), Some(&b"a,b"[..]));

        let s = spec(
            Dialect::SendData,
            json!({}),
            json!({"url": "https://x.org", "bodyType": "raw", "contentType": "custom",
                   "customContentType": "application/octet-stream", "data": "zz"}),
        )
        .unwrap();
        assert_eq!(
            s.request.content_type().unwrap(),
            "application/octet-stream"
        );
    }

    #[test]
    fn multipart_has_text_and_file_parts() {
        use crate::apps::transport::{FormPart, PartContent};
        let stored = crate::expr::binary::store(b"%PDF", "application/pdf", "r.pdf").unwrap();
        let items = pairs(Some(&json!([
            {"key": "title", "fieldType": "text", "value": "Hi \"there\""},
            {"key": "upload", "fieldType": "file", "data": "file-bytes", "fileName": "a.txt", "contentType": "text/plain"},
            {"key": "say \"x\"", "fieldType": "file", "data": stored.to_value()},
            {"key": "node", "fieldType": "file", "data": {"type": "Buffer", "data": [1, 2]}, "fileName": "n.bin"}
        ])))
        .unwrap();
        let parts = multipart(&items);
        assert_eq!(
            parts[0],
            FormPart {
                name: "title".into(),
                content: PartContent::Text("Hi \"there\"".into()),
                file_name: None,
                content_type: None
            }
        );
        assert_eq!(
            parts[1],
            FormPart {
                name: "upload".into(),
                content: PartContent::Bytes(b"file-bytes".to_vec()),
                file_name: Some("a.txt".into()),
                content_type: Some("text/plain".into())
            }
        );
        // A binary streams from the store under its own name and type.
        assert_eq!(parts[2].name, "say \"x\"");
        assert_eq!(parts[2].content, PartContent::File(stored.clone()));
        assert_eq!(parts[2].file_name.as_deref(), Some("r.pdf"));
        assert_eq!(parts[2].content_type.as_deref(), Some("application/pdf"));
        // Make's JSON form of a buffer is still read.
        match &parts[3].content {
            PartContent::File(file) => assert_eq!(file.read().unwrap(), vec![1, 2]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn headers_reject_bad_names_without_echoing_values() {
        let err =
            parse_headers(Some(&json!([{"name": "Bad Name", "value": "secret"}]))).unwrap_err();
        assert!(err.contains("Bad Name") && !err.contains("secret"), "{err}");
        let err =
            parse_headers(Some(&json!([{"name": "X-Key", "value": "sec\nret"}]))).unwrap_err();
        assert!(err.contains("X-Key") && !err.contains("sec"), "{err}");
        let ok = parse_headers(Some(
            &json!([{"name": "", "value": ""}, {"name": "X-A", "value": 1}]),
        ))
        .unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok["x-a"], "1");
    }

    #[test]
    fn response_data_parses_json_and_forms_only_when_asked() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert_eq!(
            response_data(&headers, br#"{"a":1}"#.to_vec(), true).unwrap(),
            json!({"a": 1})
        );
        assert_eq!(
            response_data(&headers, br#"{"a":1}"#.to_vec(), false).unwrap(),
            json!("{\"a\":1}")
        );
        assert_eq!(
            response_data(&headers, Vec::new(), true).unwrap(),
            json!("")
        );
        let err = response_data(&headers, b"{oops".to_vec(), true).unwrap_err();
        assert_eq!(err.kind, ErrorKind::DataError);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        assert_eq!(
            response_data(&headers, b"a=1&b=x+y&a=%32".to_vec(), true).unwrap(),
            json!({"a": ["1", "2"], "b": "x y"})
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(
            response_data(&headers, vec![b'o', 0xff, b'k'], true).unwrap(),
            json!("o\u{fffd}k")
        );
    }

    #[test]
    fn check_and_the_request_builder_read_the_same_problems() {
        // Each problem check() reports is the one the builder fails on.
        for (dialect, params, mapper) in [
            (
                Dialect::MakeRequest,
                json!({}),
                json!({"url": "ftp://x.org"}),
            ),
            (
                Dialect::MakeRequest,
                json!({}),
                json!({"url": "https://x.org", "method": "fetch"}),
            ),
            (
                Dialect::SendData,
                json!({}),
                json!({"url": "https://x.org", "qs": 5}),
            ),
            (
                Dialect::SendData,
                json!({"handleErrors": "sometimes"}),
                json!({"url": "https://x.org"}),
            ),
            (
                Dialect::MakeRequest,
                json!({}),
                json!({"url": "https://x.org", "contentType": "json", "jsonStringBodyContent": "{"}),
            ),
            (
                Dialect::SendData,
                json!({}),
                json!({"url": "https://x.org", "bodyType": "xml"}),
            ),
            (Dialect::MakeRequest, json!({}), json!([1])),
        ] {
            let found = problems(dialect, params.clone(), mapper.clone());
            assert_eq!(found.len(), 1, "{mapper}: {found:?}");
            let err = spec(dialect, params, mapper.clone()).err().unwrap();
            assert_eq!(err.kind, ErrorKind::DataError, "{mapper}");
            assert_eq!(err.message, found[0], "{mapper}");
        }
        // What only the run can know is not reported at load time but fails the run.
        let mapped = json!({"url": "{{1.url}}", "contentType": "json", "jsonStringBodyContent": "{{1.body}}"});
        assert!(problems(Dialect::MakeRequest, json!({}), mapped).is_empty());
        let evaluated =
            json!({"url": "not a url", "contentType": "json", "jsonStringBodyContent": "{{"});
        let err = spec(Dialect::MakeRequest, json!({}), evaluated)
            .err()
            .unwrap();
        assert!(err.message.starts_with("mapper.url:"), "{}", err.message);
        // As before the parser was shared, a missing JSON body is left to the run.
        let no_body = json!({"url": "https://x.org", "contentType": "json"});
        assert!(problems(Dialect::MakeRequest, json!({}), no_body.clone()).is_empty());
        let err = spec(Dialect::MakeRequest, json!({}), no_body)
            .err()
            .unwrap();
        assert_eq!(err.message, "mapper.jsonStringBodyContent: is required");
    }

    #[test]
    fn v3_basic_authentication_is_an_auth() {
        let s = spec(
            Dialect::SendData,
            json!({}),
            json!({"url": "https://x.org", "authUser": "ann", "authPass": "pw-123"}),
        )
        .unwrap();
        assert_eq!(
            s.request.auth,
            Auth::Basic {
                user: "ann".into(),
                password: "pw-123".into()
            }
        );
        assert!(!format!("{s:?}").contains("pw-123"));
        let s = spec(
            Dialect::SendData,
            json!({}),
            json!({"url": "https://x.org", "authUser": ""}),
        )
        .unwrap();
        assert_eq!(s.request.auth, Auth::None);
        // v4 reads no such fields.
        let s = spec(
            Dialect::MakeRequest,
            json!({}),
            json!({"url": "https://x.org", "authUser": "ann"}),
        )
        .unwrap();
        assert_eq!(s.request.auth, Auth::None);
    }

    fn connection(kind: &str, fields: Value) -> Connection {
        Connection {
            id: "c1".into(),
            name: "stored".into(),
            app: "http".into(),
            kind: kind.into(),
            fields: crate::module::Secrets(fields.as_object().unwrap().clone()),
        }
    }

    #[test]
    fn keychains_are_read_from_make_parameter_names() {
        let read = |dialect, credentials, params: Value| {
            keychain(dialect, credentials, params.as_object().unwrap())
        };
        let k = read(
            Dialect::MakeRequest,
            Credentials::Fields,
            json!({"authenticationType": "apiKey", "apiKeyKeychain": 14964}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (k.field.as_str(), k.reference.as_str(), k.kind),
            ("parameters.apiKeyKeychain", "14964", KeychainKind::ApiKey)
        );
        let k = read(
            Dialect::MakeRequest,
            Credentials::Fields,
            json!({"authenticationType": "basicAuth", "basicAuthKeychain": "ops"}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(k.kind, KeychainKind::Basic);
        let k = read(
            Dialect::SendData,
            Credentials::ApiKey,
            json!({"auth": 6895, "handleErrors": false}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(k.field, "parameters.auth");
        let k = read(
            Dialect::SendData,
            Credentials::Basic,
            json!({"__IMTCONN__": "ops"}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(k.field, "parameters.__IMTCONN__");
        // Make's exports: `key` for the basic and API-key keychains, `account` for OAuth.
        for (credentials, params, field) in [
            (Credentials::Basic, json!({"key": 71843}), "parameters.key"),
            (Credentials::ApiKey, json!({"key": 71843}), "parameters.key"),
            (
                Credentials::OAuth,
                json!({"account": 33477}),
                "parameters.account",
            ),
        ] {
            let k = read(Dialect::SendData, credentials, params)
                .unwrap()
                .unwrap();
            assert_eq!((k.field.as_str(), k.reference.len()), (field, 5));
        }
        let k = read(
            Dialect::MakeRequest,
            Credentials::Fields,
            json!({"authenticationType": "oAuth", "oAuthKeychain": "crm"}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (k.field.as_str(), k.reference.as_str(), k.kind),
            ("parameters.oAuthKeychain", "crm", KeychainKind::OAuth)
        );
        assert_eq!(
            read(
                Dialect::MakeRequest,
                Credentials::Fields,
                json!({"authenticationType": "noAuth"})
            )
            .unwrap(),
            None
        );
        for (credentials, params, field) in [
            (Credentials::Basic, json!({}), "parameters.__IMTCONN__"),
            (
                Credentials::Fields,
                json!({"authenticationType": "oAuth"}),
                "parameters.oAuthKeychain",
            ),
            (Credentials::OAuth, json!({}), "parameters.__IMTCONN__"),
            (
                Credentials::Fields,
                json!({"authenticationType": "digest"}),
                "parameters.authenticationType",
            ),
        ] {
            let problem = read(Dialect::MakeRequest, credentials, params).unwrap_err();
            assert_eq!(problem.field, field);
            assert!(problem.unsupported && problem.at_load);
        }
    }

    #[test]
    fn connections_become_auth_of_their_kind_only() {
        let basic = Keychain {
            field: "parameters.__IMTCONN__".into(),
            reference: "stored".into(),
            kind: KeychainKind::Basic,
        };
        let auth = connection_auth(
            &basic,
            "http:ActionSendDataBasicAuth",
            &connection("basic", json!({"username": "ann", "password": "pw-1"})),
        )
        .unwrap();
        assert_eq!(
            auth,
            Auth::Basic {
                user: "ann".into(),
                password: "pw-1".into()
            }
        );
        let err = connection_auth(
            &basic,
            "http:ActionSendDataBasicAuth",
            &connection("bearer", json!({"token": "planted-token"})),
        )
        .unwrap_err();
        assert_eq!(
            err.kind,
            crate::module::ErrorKind::InvalidConfigurationError
        );
        assert_eq!(
            err.message,
            "parameters.__IMTCONN__: connection \"stored\" is a bearer connection; \
             http:ActionSendDataBasicAuth needs a basic connection"
        );
        let oauth = Keychain {
            kind: KeychainKind::OAuth,
            ..basic.clone()
        };
        for (kind, fields) in [
            (
                "oauth2",
                json!({"access_token": "at-1", "refresh_token": "rt-1"}),
            ),
            ("bearer", json!({"token": "at-1"})),
        ] {
            assert_eq!(
                connection_auth(&oauth, "m", &connection(kind, fields)).unwrap(),
                Auth::Bearer("at-1".into())
            );
        }
        let err = connection_auth(
            &oauth,
            "http:ActionSendDataOAuth",
            &connection("basic", json!({"username": "ann", "password": "planted"})),
        )
        .unwrap_err();
        assert!(
            err.message.contains("needs an OAuth2 connection"),
            "{err:?}"
        );
        assert!(!err.message.contains("planted"));
        let api_key = Keychain {
            kind: KeychainKind::ApiKey,
            ..basic.clone()
        };
        let auth = connection_auth(
            &api_key,
            "m",
            &connection(
                "api_key",
                json!({"key": "k-1", "name": "api_key", "placement": "query"}),
            ),
        )
        .unwrap();
        assert_eq!(
            auth,
            Auth::ApiKeyQuery {
                name: "api_key".into(),
                value: "k-1".into()
            }
        );
        let err = connection_auth(&api_key, "m", &connection("api_key", json!({"name": "X"})))
            .unwrap_err();
        assert!(err.message.ends_with("has no key field"), "{}", err.message);
    }
}
