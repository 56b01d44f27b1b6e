//! The HTTP app: `http:MakeRequest` (Make's current "Make a request", v4) and
//! `http:ActionSendData` (the legacy v3 "Make a request"). Both read their configuration
//! liberally (the field spellings found in real exports), send one request through a shared
//! `reqwest` client, and answer with Make's HTTP output bundle:
//! `{statusCode, headers: {lower-cased name: value}, cookieHeaders?: [...], data}`.
//!
//! Errors are typed as Make types them: an HTTP error status is a `RuntimeError` (429 a
//! `RateLimitError` carrying `Retry-After`) unless the module's "stop on HTTP error" /
//! `handleErrors` switch says to return the response instead; an unreachable host is a
//! `ConnectionError`, an expired timeout a `ModuleTimeoutError`, a bad URL or body a `DataError`.
//! Header values, query strings and bodies are never logged: they can hold secrets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::BoxFuture;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::{Client, Method, Response, StatusCode, Url};
use serde_json::{Map, Value, json};

use super::fields::{
    self, Pair, flag, is_blank, json_error_reason, number, object, pairs, pick, report, text,
};
use crate::module::error::{ErrorKind, ModuleError};
use crate::module::{Invocation, Module};

/// Longest timeout a module may ask for, in seconds (Make's limit for both versions).
pub const MAX_TIMEOUT_SECS: u64 = 300;
/// How many redirects are followed before giving up.
const MAX_REDIRECTS: usize = 10;
/// How much of an error response's body is kept in the error's `details`.
const ERROR_BODY_EXCERPT_CHARS: usize = 1000;
/// How much of an error response is read to build that excerpt.
const ERROR_BODY_READ_BYTES: usize = 64 * 1024;
/// Longest `Retry-After` honoured, so a hostile server cannot freeze a scenario for ever.
const MAX_RETRY_AFTER_MS: u64 = 24 * 60 * 60 * 1000;
const METHODS: &[&str] = &["get", "head", "post", "put", "patch", "delete", "options"];

/// Settings shared by every HTTP module of a registry.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Timeout of a request whose module sets none (Make's default is its maximum, 300 s).
    pub timeout: Duration,
    /// Timeout for establishing a connection; a host that does not answer in time is a
    /// `ConnectionError`.
    pub connect_timeout: Duration,
    /// Largest response body accepted; a larger one fails the module.
    pub max_response_bytes: usize,
    /// `User-Agent` sent unless the module sets its own header.
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(MAX_TIMEOUT_SECS),
            connect_timeout: Duration::from_secs(30),
            max_response_bytes: 10 * 1024 * 1024,
            user_agent: concat!("Switchyard/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// The shared clients. reqwest fixes the redirect policy per client, so there are two: one
/// that follows redirects and one that returns them. Both share the options.
pub(crate) struct HttpClients {
    follow: Client,
    direct: Client,
    options: HttpOptions,
}

impl HttpClients {
    pub(crate) fn new(options: HttpOptions) -> Result<Self, reqwest::Error> {
        let build = |policy: Policy| {
            Client::builder()
                .user_agent(options.user_agent.clone())
                .connect_timeout(options.connect_timeout)
                .redirect(policy)
                .build()
        };
        Ok(HttpClients {
            follow: build(Policy::limited(MAX_REDIRECTS))?,
            direct: build(Policy::none())?,
            options,
        })
    }
}

/// Which of Make's HTTP module shapes a module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `http:MakeRequest` v4.
    MakeRequest,
    /// `http:ActionSendData` v3.
    SendData,
}

/// One HTTP module.
pub(crate) struct HttpModule {
    dialect: Dialect,
    clients: Arc<HttpClients>,
}

impl HttpModule {
    pub(crate) fn new(dialect: Dialect, clients: Arc<HttpClients>) -> Self {
        HttpModule { dialect, clients }
    }
}

impl Module for HttpModule {
    fn check(&self, parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        check(self.dialect, parameters, mapper)
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async move {
            let spec = build_spec(
                self.dialect,
                invocation.parameters,
                &invocation.mapper,
                &self.clients.options,
            )?;
            let bundle = execute(&self.clients, spec, invocation.module_id).await?;
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
// Reading single fields (shared by check() and call())

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

fn parse_timeout(value: Option<&Value>, default: Duration) -> Result<Duration, String> {
    match number(value)? {
        None => Ok(default),
        Some(secs) if (1.0..=MAX_TIMEOUT_SECS as f64).contains(&secs) => {
            Ok(Duration::from_secs_f64(secs))
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
// Bodies

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    None,
    Json,
    UrlEncoded,
    Multipart,
    /// Text sent as is, with an optional content type.
    Raw,
}

/// A request body and the content type it implies.
struct Body {
    bytes: Vec<u8>,
    content_type: Option<String>,
}

fn normalise(selector: &str) -> String {
    selector
        .trim()
        .to_ascii_lowercase()
        .replace(['_', '/', ' '], "-")
}

/// The kind of body configured, with the field that chose it.
fn body_kind(
    dialect: Dialect,
    m: Option<&Map<String, Value>>,
) -> Result<BodyKind, (String, String)> {
    match dialect {
        Dialect::MakeRequest => {
            let Some((_, selector)) = pick(m, &["contentType"]) else {
                return Ok(BodyKind::None);
            };
            let raw = text(selector);
            match normalise(&raw).as_str() {
                "" => Ok(BodyKind::None),
                "json" | "application-json" => Ok(BodyKind::Json),
                "urlencoded"
                | "x-www-form-urlencoded"
                | "application-x-www-form-urlencoded"
                | "form" => Ok(BodyKind::UrlEncoded),
                "multipart" | "multipart-form-data" | "form-data" | "formdata" => {
                    Ok(BodyKind::Multipart)
                }
                "custom" | "raw" => Ok(BodyKind::Raw),
                // A MIME type given directly: a custom body of that type.
                _ if raw.contains('/') => Ok(BodyKind::Raw),
                _ => Err((
                    "mapper.contentType".into(),
                    format!("'{raw}' is not one of json, urlEncoded, multipart, custom"),
                )),
            }
        }
        Dialect::SendData => {
            let selector = pick(m, &["bodyType"])
                .map(|(_, v)| text(v))
                .unwrap_or_default();
            match normalise(&selector).as_str() {
                // No body type but data given: send it raw, as the v3 default did.
                "" if !is_blank(pick(m, &["data", "body"]).map(|(_, v)| v)) => Ok(BodyKind::Raw),
                "" => Ok(BodyKind::None),
                "raw" => Ok(BodyKind::Raw),
                "x-www-form-urlencoded" | "application-x-www-form-urlencoded" | "urlencoded" => {
                    Ok(BodyKind::UrlEncoded)
                }
                "multipart-form-data" | "form-data" | "multipart" => Ok(BodyKind::Multipart),
                _ => Err((
                    "mapper.bodyType".into(),
                    format!(
                        "'{selector}' is not one of raw, x-www-form-urlencoded, multipart/form-data"
                    ),
                )),
            }
        }
    }
}

const JSON_TEXT_FIELDS: &[&str] = &["jsonStringBodyContent"];
const JSON_DATA_FIELDS: &[&str] = &["dataStructureBodyContent"];

fn field_list(dialect: Dialect, kind: BodyKind) -> &'static [&'static str] {
    match (dialect, kind) {
        (Dialect::MakeRequest, BodyKind::UrlEncoded) => &["urlEncodedBodyContent", "formFields"],
        (Dialect::MakeRequest, BodyKind::Multipart) => &["multipartBodyContent", "formDataFields"],
        (Dialect::SendData, BodyKind::UrlEncoded) => &["formFields", "urlEncodedBodyContent"],
        (Dialect::SendData, BodyKind::Multipart) => {
            &["formDataFields", "formFields", "multipartBodyContent"]
        }
        _ => &[],
    }
}

fn raw_fields(dialect: Dialect) -> &'static [&'static str] {
    match dialect {
        Dialect::MakeRequest => &["customBodyContent", "bodyContent", "body", "data"],
        Dialect::SendData => &["data", "body", "bodyContent"],
    }
}

/// Whether the JSON body is written as text (`jsonString`) or as a structure.
fn json_input_is_text(m: Option<&Map<String, Value>>) -> Result<bool, (String, String)> {
    match pick(m, &["inputMethod"]).map(|(_, v)| text(v)) {
        None => Ok(pick(m, JSON_DATA_FIELDS).is_none() || pick(m, JSON_TEXT_FIELDS).is_some()),
        Some(s) => match normalise(&s).as_str() {
            "" | "jsonstring" => Ok(true),
            "datastructure" => Ok(false),
            _ => Err((
                "mapper.inputMethod".into(),
                format!("'{s}' is not one of jsonString, dataStructure"),
            )),
        },
    }
}

/// Serialises a value for a text body: text as is, anything else as JSON.
fn body_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn validate_json(field: &str, body: &str) -> Result<(), (String, String)> {
    serde_json::from_str::<serde::de::IgnoredAny>(body)
        .map(|_| ())
        .map_err(|e| {
            (
                field.to_string(),
                format!(
                    "is not valid JSON: {} at line {} column {}",
                    json_error_reason(&e),
                    e.line(),
                    e.column()
                ),
            )
        })
}

fn build_body(
    dialect: Dialect,
    m: Option<&Map<String, Value>>,
) -> Result<Option<Body>, (String, String)> {
    match body_kind(dialect, m)? {
        BodyKind::None => Ok(None),
        BodyKind::Json => {
            let json = if json_input_is_text(m)? {
                let (field, value) = pick(m, JSON_TEXT_FIELDS)
                    .or_else(|| pick(m, JSON_DATA_FIELDS))
                    .ok_or_else(|| {
                        (
                            "mapper.jsonStringBodyContent".to_string(),
                            "is required".to_string(),
                        )
                    })?;
                let body = body_text(value);
                validate_json(&format!("mapper.{field}"), &body)?;
                body
            } else {
                let (field, value) = pick(m, JSON_DATA_FIELDS).ok_or_else(|| {
                    (
                        "mapper.dataStructureBodyContent".to_string(),
                        "is required".to_string(),
                    )
                })?;
                match value {
                    // Some exports store the structure as JSON text.
                    Value::String(s) => {
                        validate_json(&format!("mapper.{field}"), s)?;
                        s.clone()
                    }
                    other => other.to_string(),
                }
            };
            Ok(Some(Body {
                bytes: json.into_bytes(),
                content_type: Some("application/json".into()),
            }))
        }
        BodyKind::UrlEncoded => {
            let names = field_list(dialect, BodyKind::UrlEncoded);
            let (field, value) = pick(m, names).unwrap_or((names[0], &Value::Null));
            let items = pairs(Some(value)).map_err(|e| (format!("mapper.{field}"), e))?;
            let encoded = items
                .iter()
                .filter(|p| !p.name.is_empty())
                .map(|p| format!("{}={}", form_encode(&p.name), form_encode(&text(&p.value))))
                .collect::<Vec<_>>()
                .join("&");
            Ok(Some(Body {
                bytes: encoded.into_bytes(),
                content_type: Some("application/x-www-form-urlencoded".into()),
            }))
        }
        BodyKind::Multipart => {
            let names = field_list(dialect, BodyKind::Multipart);
            let (field, value) = pick(m, names).unwrap_or((names[0], &Value::Null));
            let items = pairs(Some(value)).map_err(|e| (format!("mapper.{field}"), e))?;
            let (bytes, content_type) = multipart(&items);
            Ok(Some(Body {
                bytes,
                content_type: Some(content_type),
            }))
        }
        BodyKind::Raw => {
            let body = pick(m, raw_fields(dialect))
                .map(|(_, v)| body_text(v))
                .unwrap_or_default();
            Ok(Some(Body {
                bytes: body.into_bytes(),
                content_type: raw_content_type(dialect, m),
            }))
        }
    }
}

/// The content type of a raw/custom body: a MIME type, or `custom` with the type given apart.
fn raw_content_type(dialect: Dialect, m: Option<&Map<String, Value>>) -> Option<String> {
    let custom = || {
        pick(m, &["customContentType", "contentTypeValue"])
            .map(|(_, v)| text(v))
            .filter(|s| !s.trim().is_empty())
    };
    let selector = pick(m, &["contentType"])
        .map(|(_, v)| text(v))
        .unwrap_or_default();
    let selector = selector.trim();
    match dialect {
        Dialect::MakeRequest if selector.contains('/') => Some(selector.to_string()),
        Dialect::MakeRequest => custom(),
        Dialect::SendData if selector.eq_ignore_ascii_case("custom") => custom(),
        Dialect::SendData if selector.is_empty() => custom(),
        Dialect::SendData => Some(selector.to_string()),
    }
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b' ');

fn form_encode(s: &str) -> String {
    utf8_percent_encode(s, FORM).to_string().replace(' ', "+")
}

fn form_decode(s: &str) -> String {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Encodes `multipart/form-data`. An item with `fieldType: "file"` becomes a file part from its
/// `data` (or `value`) with `fileName`; others are text fields.
fn multipart(items: &[Pair]) -> (Vec<u8>, String) {
    let boundary = format!("switchyard-{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::new();
    for item in items.iter().filter(|p| !p.name.is_empty()) {
        let is_file = item
            .item
            .get("fieldType")
            .is_some_and(|t| text(t).eq_ignore_ascii_case("file"));
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!(
            "Content-Disposition: form-data; name=\"{}\"",
            quote_param(&item.name)
        );
        let data = if is_file {
            let file_name = pick(Some(&item.item), &["fileName", "filename"])
                .map(|(_, v)| text(v))
                .unwrap_or_else(|| "file".into());
            disposition.push_str(&format!("; filename=\"{}\"", quote_param(&file_name)));
            let content_type = pick(Some(&item.item), &["contentType", "mimeType", "mime"])
                .map(|(_, v)| text(v))
                .map(|t| t.chars().filter(|c| !c.is_control()).collect::<String>())
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| "application/octet-stream".into());
            body.extend_from_slice(disposition.as_bytes());
            body.extend_from_slice(format!("\r\nContent-Type: {content_type}\r\n\r\n").as_bytes());
            pick(Some(&item.item), &["data", "value"])
                .map(|(_, v)| body_text(v))
                .unwrap_or_default()
        } else {
            body.extend_from_slice(disposition.as_bytes());
            body.extend_from_slice(b"\r\n\r\n");
            text(&item.value)
        };
        body.extend_from_slice(data.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (body, format!("multipart/form-data; boundary={boundary}"))
}

/// Escapes a `Content-Disposition` parameter the way browsers do.
fn quote_param(s: &str) -> String {
    s.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
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
            let auth = parameters.get("authenticationType");
            let auth_text = auth.map(text).unwrap_or_default();
            if !(auth_text.is_empty() || auth_text == "noAuth") {
                add(
                    "parameters.authenticationType",
                    "needs a Make keychain, which Switchyard does not support; send the credential in a header instead",
                    auth,
                );
            }
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
            if let Some((_, v)) = pick(m, &["rejectUnauthorized"])
                && flag(Some(v), true) == Ok(false)
            {
                add(
                    "mapper.rejectUnauthorized",
                    "certificate checks cannot be turned off",
                    Some(v),
                );
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// check()

fn check(
    dialect: Dialect,
    parameters: &Map<String, Value>,
    mapper: &Value,
) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if !(mapper.is_object() || mapper.is_null()) {
        problems.push(("mapper".into(), "must be an object".into()));
        return problems;
    }
    let m = object(mapper);
    let get = |name: &str| m.and_then(|m| m.get(name));

    let url = get("url");
    if is_blank(url) {
        problems.push(("mapper.url".into(), "is required".into()));
    } else {
        report(&mut problems, "mapper.url", url, parse_url(url));
    }
    report(
        &mut problems,
        "mapper.method",
        get("method"),
        parse_method(get("method")),
    );
    report(
        &mut problems,
        "mapper.headers",
        get("headers"),
        parse_headers(get("headers")),
    );
    if let Some((field, value)) = pick(m, dialect.query_fields()) {
        report(
            &mut problems,
            format!("mapper.{field}"),
            Some(value),
            parse_query(Some(value)),
        );
    }
    let timeout = get("timeout");
    report(
        &mut problems,
        "mapper.timeout",
        timeout,
        parse_timeout(timeout, Duration::ZERO),
    );
    let parse = get("parseResponse");
    report(
        &mut problems,
        "mapper.parseResponse",
        parse,
        flag(parse, true),
    );
    if let Some((field, value)) = pick(m, dialect.redirect_fields()) {
        report(
            &mut problems,
            format!("mapper.{field}"),
            Some(value),
            flag(Some(value), true),
        );
    }
    let (field, value, stop) = stop_on_error(dialect, parameters, m);
    report(&mut problems, field, value.as_ref(), stop);

    // The body: its selectors always, its content when it is already known.
    let selectors = ["contentType", "bodyType", "inputMethod"];
    if !selectors
        .iter()
        .any(|s| get(s).is_some_and(fields::is_dynamic))
    {
        match body_kind(dialect, m).and_then(|kind| {
            if kind == BodyKind::Json {
                json_input_is_text(m).map(|_| kind)
            } else {
                Ok(kind)
            }
        }) {
            Err(problem) => problems.push(problem),
            Ok(BodyKind::Json) => {
                if let Some((field, value)) = pick(m, JSON_TEXT_FIELDS)
                    && let Value::String(body) = value
                    && !fields::is_dynamic(value)
                    && let Err(problem) = validate_json(&format!("mapper.{field}"), body)
                {
                    problems.push(problem);
                }
            }
            Ok(kind @ (BodyKind::UrlEncoded | BodyKind::Multipart)) => {
                if let Some((field, value)) = pick(m, field_list(dialect, kind)) {
                    report(
                        &mut problems,
                        format!("mapper.{field}"),
                        Some(value),
                        pairs(Some(value)),
                    );
                }
            }
            Ok(BodyKind::None | BodyKind::Raw) => {}
        }
    }

    for (field, reason, value) in unsupported(dialect, parameters, m) {
        if !value.as_ref().is_some_and(fields::is_dynamic) {
            problems.push((field, reason));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// call()

/// A request ready to send.
struct Spec {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    basic_auth: Option<(String, String)>,
    parse_response: bool,
    stop_on_http_error: bool,
    follow_redirects: bool,
    timeout: Duration,
}

fn data_error((field, reason): (String, String)) -> ModuleError {
    ModuleError::data(format!("{field}: {reason}"))
}

fn field_error(field: &str) -> impl FnOnce(String) -> ModuleError + '_ {
    move |reason| ModuleError::data(format!("{field}: {reason}"))
}

fn build_spec(
    dialect: Dialect,
    parameters: &Map<String, Value>,
    mapper: &Value,
    options: &HttpOptions,
) -> Result<Spec, ModuleError> {
    if !(mapper.is_object() || mapper.is_null()) {
        return Err(ModuleError::data("mapper: must be an object"));
    }
    let m = object(mapper);
    let get = |name: &str| m.and_then(|m| m.get(name));

    if let Some((field, reason, _)) = unsupported(dialect, parameters, m).into_iter().next() {
        return Err(ModuleError::config(format!("{field}: {reason}")));
    }

    let mut url = parse_url(get("url")).map_err(field_error("mapper.url"))?;
    let method = parse_method(get("method")).map_err(field_error("mapper.method"))?;
    let mut headers = parse_headers(get("headers")).map_err(field_error("mapper.headers"))?;
    if let Some((field, value)) = pick(m, dialect.query_fields()) {
        let query = parse_query(Some(value))
            .map_err(|e| ModuleError::data(format!("mapper.{field}: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
    }
    let timeout =
        parse_timeout(get("timeout"), options.timeout).map_err(field_error("mapper.timeout"))?;
    let parse_response = flag(get("parseResponse"), dialect.parse_default())
        .map_err(field_error("mapper.parseResponse"))?;
    let follow_redirects = match pick(m, dialect.redirect_fields()) {
        Some((field, value)) => flag(Some(value), true)
            .map_err(|e| ModuleError::data(format!("mapper.{field}: {e}")))?,
        None => true,
    };
    let (field, _, stop) = stop_on_error(dialect, parameters, m);
    let stop_on_http_error = stop.map_err(|e| ModuleError::data(format!("{field}: {e}")))?;

    let body = build_body(dialect, m).map_err(data_error)?;
    let body = body.map(
        |Body {
             bytes,
             content_type,
         }| {
            // A Content-Type header written by the designer wins over the one the body implies.
            if let Some(content_type) = content_type
                && !headers.contains_key(CONTENT_TYPE)
                && let Ok(value) = HeaderValue::from_str(&content_type)
            {
                headers.insert(CONTENT_TYPE, value);
            }
            bytes
        },
    );

    // v3 basic authentication fields.
    let basic_auth = match dialect {
        Dialect::SendData => pick(m, &["authUser"])
            .map(|(_, v)| text(v))
            .filter(|user| !user.is_empty())
            .map(|user| {
                let pass = pick(m, &["authPass"])
                    .map(|(_, v)| text(v))
                    .unwrap_or_default();
                (user, pass)
            }),
        Dialect::MakeRequest => None,
    };

    Ok(Spec {
        method,
        url,
        headers,
        body,
        basic_auth,
        parse_response,
        stop_on_http_error,
        follow_redirects,
        timeout,
    })
}

/// Why a request failed before a bundle could be built.
enum Failure {
    Transport(reqwest::Error),
    TooLarge { declared: Option<u64> },
    Module(ModuleError),
}

impl From<reqwest::Error> for Failure {
    fn from(e: reqwest::Error) -> Self {
        Failure::Transport(e)
    }
}

async fn execute(clients: &HttpClients, spec: Spec, module_id: u32) -> Result<Value, ModuleError> {
    let parse_response = spec.parse_response;
    let (status, headers, body) = exchange(clients, spec, module_id).await?;
    output_bundle(status, &headers, body, parse_response)
}

/// A GET for modules that read a document (a feed): the shared client following redirects,
/// the size cap and default timeout of the registry's [`HttpOptions`], an HTTP error status
/// as an error, and basic authentication when `basic_auth` is given (its password is never
/// logged). Returns the status, headers and raw body.
pub(crate) async fn get_document(
    clients: &HttpClients,
    url: Url,
    accept: &'static str,
    basic_auth: Option<(String, String)>,
    module_id: u32,
) -> Result<(StatusCode, HeaderMap, Vec<u8>), ModuleError> {
    let mut headers = HeaderMap::new();
    headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static(accept));
    let spec = Spec {
        method: Method::GET,
        url,
        headers,
        body: None,
        basic_auth,
        parse_response: false,
        stop_on_http_error: true,
        follow_redirects: true,
        timeout: clients.options.timeout,
    };
    exchange(clients, spec, module_id).await
}

/// Sends a request and reads its answer within the size cap and timeout.
async fn exchange(
    clients: &HttpClients,
    spec: Spec,
    module_id: u32,
) -> Result<(StatusCode, HeaderMap, Vec<u8>), ModuleError> {
    let client = if spec.follow_redirects {
        &clients.follow
    } else {
        &clients.direct
    };
    let limit = clients.options.max_response_bytes;
    let timeout = spec.timeout;
    let method = spec.method.clone();
    let host = spec.url.host_str().unwrap_or_default().to_string();

    let mut request = client
        .request(spec.method, spec.url)
        .headers(spec.headers)
        .timeout(timeout);
    if let Some((user, pass)) = spec.basic_auth {
        request = request.basic_auth(user, Some(pass));
    }
    if let Some(body) = spec.body {
        request = request.body(body);
    }

    let started = Instant::now();
    let exchange = async {
        let mut response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        if status.as_u16() >= 400 && spec.stop_on_http_error {
            let (body, _) = read_body(&mut response, limit.min(ERROR_BODY_READ_BYTES)).await?;
            return Err(Failure::Module(status_error(status, &headers, &body)));
        }
        if method != Method::HEAD
            && let Some(declared) = response.content_length()
            && declared > limit as u64
        {
            return Err(Failure::TooLarge {
                declared: Some(declared),
            });
        }
        let (body, truncated) = read_body(&mut response, limit).await?;
        if truncated {
            return Err(Failure::TooLarge { declared: None });
        }
        Ok((status, headers, body))
    };
    let outcome = match tokio::time::timeout(timeout, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure::Module(timeout_error(timeout))),
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let (status, headers, body) = match outcome {
        Ok(parts) => parts,
        Err(failure) => {
            let error = match failure {
                Failure::Transport(e) => transport_error(e, timeout),
                Failure::TooLarge { declared } => too_large(limit, declared),
                Failure::Module(e) => e,
            };
            tracing::debug!(module_id, %method, host, elapsed_ms, kind = error.kind.name(), "http request failed");
            return Err(error);
        }
    };
    tracing::debug!(module_id, %method, host, status = status.as_u16(), elapsed_ms, "http request done");
    Ok((status, headers, body))
}

/// Reads at most `limit` bytes of the body; the flag says whether more was left unread.
async fn read_body(
    response: &mut Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(body.len());
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

fn status_line(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// The error for an HTTP error status when the module is set to stop on them.
fn status_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ModuleError {
    let excerpt: String = String::from_utf8_lossy(body)
        .chars()
        .take(ERROR_BODY_EXCERPT_CHARS)
        .collect();
    let details = json!({"statusCode": status.as_u16(), "body": excerpt});
    if status == StatusCode::TOO_MANY_REQUESTS {
        let error =
            ModuleError::new(ErrorKind::RateLimitError, status_line(status)).with_details(details);
        return match retry_after_ms(headers) {
            Some(delay) => error.with_delay_ms(delay),
            None => error,
        };
    }
    ModuleError::runtime(status_line(status)).with_details(details)
}

/// `Retry-After` as milliseconds from now: delta-seconds or an HTTP date.
fn retry_after_ms(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let ms = if let Ok(secs) = value.parse::<u64>() {
        secs.saturating_mul(1000)
    } else {
        let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        let ms = when
            .with_timezone(&Utc)
            .signed_duration_since(Utc::now())
            .num_milliseconds();
        u64::try_from(ms).unwrap_or(0)
    };
    Some(ms.min(MAX_RETRY_AFTER_MS))
}

fn timeout_error(timeout: Duration) -> ModuleError {
    ModuleError::new(
        ErrorKind::ModuleTimeoutError,
        format!("the request timed out after {} s", timeout.as_secs_f64()),
    )
}

fn too_large(limit: usize, declared: Option<u64>) -> ModuleError {
    let mut details = Map::new();
    details.insert("limitBytes".into(), json!(limit));
    if let Some(declared) = declared {
        details.insert("contentLength".into(), json!(declared));
    }
    ModuleError::runtime(format!(
        "the response body exceeds the limit of {limit} bytes"
    ))
    .with_details(Value::Object(details))
}

/// Maps a transport failure to Make's error kinds. The URL is left out of the message: its
/// query string may carry a key.
fn transport_error(error: reqwest::Error, timeout: Duration) -> ModuleError {
    let error = error.without_url();
    let cause = error_chain(&error);
    if error.is_connect() {
        return ModuleError::new(
            ErrorKind::ConnectionError,
            format!("could not connect: {cause}"),
        );
    }
    if error.is_timeout() {
        return timeout_error(timeout);
    }
    if error.is_redirect() {
        return ModuleError::runtime(format!("too many redirects (more than {MAX_REDIRECTS})"));
    }
    if error.is_builder() {
        return ModuleError::data(format!("the request could not be built: {cause}"));
    }
    ModuleError::new(
        ErrorKind::ConnectionError,
        format!("the request failed: {cause}"),
    )
}

/// The messages of an error and its sources, joined, without repeats.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let message = e.to_string();
        if !parts.iter().any(|p| p.contains(&message)) {
            parts.push(message);
        }
        current = e.source();
    }
    parts.join(": ")
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

    fn spec(dialect: Dialect, params: Value, mapper: Value) -> Result<Spec, ModuleError> {
        let params = params.as_object().cloned().unwrap_or_default();
        build_spec(dialect, &params, &mapper, &HttpOptions::default())
    }

    fn problems(dialect: Dialect, params: Value, mapper: Value) -> Vec<String> {
        let params = params.as_object().cloned().unwrap_or_default();
        check(dialect, &params, &mapper)
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
            "parameters.authenticationType: needs a Make keychain",
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
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("mapper.rejectUnauthorized")),
            "{found:?}"
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
        assert!(v4.parse_response && v4.stop_on_http_error && v4.follow_redirects);
        assert_eq!(v4.method, Method::GET);
        assert_eq!(v4.timeout, Duration::from_secs(300));
        let v3 = spec(
            Dialect::SendData,
            json!({}),
            json!({"url": "https://x.org", "method": "POST", "timeout": "30"}),
        )
        .unwrap();
        assert!(!v3.parse_response && !v3.stop_on_http_error);
        assert_eq!(v3.method, Method::POST);
        assert_eq!(v3.timeout, Duration::from_secs(30));
        let v3 = spec(
            Dialect::SendData,
            json!({"handleErrors": true}),
            json!({"url": "https://x.org", "followRedirect": false}),
        )
        .unwrap();
        assert!(v3.stop_on_http_error && !v3.follow_redirects);
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
        assert_eq!(s.body.as_deref(), Some(&b"a+b=x%26y%3Dz&n=5"[..]));
        assert_eq!(s.headers[CONTENT_TYPE], "application/x-www-form-urlencoded");

        let s = spec(
            Dialect::MakeRequest,
            json!({}),
            json!({"url": "https://x.org", "contentType": "json", "inputMethod": "dataStructure",
                   "dataStructureBodyContent": {"k": [1, 2]}}),
        )
        .unwrap();
        assert_eq!(s.body.as_deref(), Some(&br#"{"k":[1,2]}"#[..]));
        assert_eq!(s.headers[CONTENT_TYPE], "application/json");

        // A designer's Content-Type header wins.
        let s = spec(
            Dialect::SendData,
            json!({}),
            json!({"url": "https://x.org", "bodyType": "raw", "contentType": "application/json",
                   "headers": [{"name": "Content-Type", "value": "text/csv"}], "data": "a,b"}),
        )
        .unwrap();
        assert_eq!(s.headers[CONTENT_TYPE], "text/csv");
        assert_eq!(s.body.as_deref(), Some(&b"a,b"[..]));

        let s = spec(
            Dialect::SendData,
            json!({}),
            json!({"url": "https://x.org", "bodyType": "raw", "contentType": "custom",
                   "customContentType": "application/octet-stream", "data": "zz"}),
        )
        .unwrap();
        assert_eq!(s.headers[CONTENT_TYPE], "application/octet-stream");
    }

    #[test]
    fn multipart_has_text_and_file_parts() {
        let items = pairs(Some(&json!([
            {"key": "title", "fieldType": "text", "value": "Hi \"there\""},
            {"key": "upload", "fieldType": "file", "data": "file-bytes", "fileName": "a.txt", "contentType": "text/plain"}
        ])))
        .unwrap();
        let (body, content_type) = multipart(&items);
        let boundary = content_type
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        let body = String::from_utf8(body).unwrap();
        assert!(body.starts_with(&format!("--{boundary}\r\n")));
        assert!(body.contains("name=\"title\"\r\n\r\nHi \"there\"\r\n"));
        assert!(body.contains(
            "name=\"upload\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nfile-bytes\r\n"
        ));
        assert!(body.ends_with(&format!("--{boundary}--\r\n")));
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
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after_ms(&headers), Some(120_000));
        let later = (Utc::now() + chrono::Duration::seconds(90))
            .to_rfc2822()
            .replace("+0000", "GMT");
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let ms = retry_after_ms(&headers).unwrap();
        assert!((85_000..=90_000).contains(&ms), "{ms}");
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after_ms(&headers), Some(0));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after_ms(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("99999999999"));
        assert_eq!(retry_after_ms(&headers), Some(MAX_RETRY_AFTER_MS));
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
    fn status_errors_carry_status_and_excerpt() {
        let err = status_error(
            StatusCode::NOT_FOUND,
            &HeaderMap::new(),
            "x".repeat(5000).as_bytes(),
        );
        assert_eq!(err.kind, ErrorKind::RuntimeError);
        assert_eq!(err.message, "404 Not Found");
        let details = err.details.unwrap();
        assert_eq!(details["statusCode"], 404);
        assert_eq!(
            details["body"].as_str().unwrap().len(),
            ERROR_BODY_EXCERPT_CHARS
        );
    }
}
