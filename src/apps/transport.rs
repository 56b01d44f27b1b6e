//! The HTTP transport every app shares: one `reqwest` client (one connection pool, user agent
//! and timeouts from [`HttpOptions`]), a typed [`Request`], the credentials of a request as an
//! [`Auth`] value, the exchange (send, follow redirects, read the body within the size cap) and
//! the mapping of HTTP statuses and transport failures to Make's error kinds.
//!
//! Invariants:
//! - An [`Auth`] is applied in exactly one place, [`Auth::apply`], called for each hop of a
//!   request while the hop stays on the origin (scheme, host, port) the request started on.
//!   Redirects are followed here rather than by `reqwest`, so that once a redirect leaves that
//!   origin no credential of the `Auth` — `Authorization`, an API-key header or query parameter —
//!   is sent again, and the headers the caller set are dropped too (see below).
//! - Secrets never reach logs or errors: `Auth`'s `Debug` redacts them, header values are marked
//!   sensitive, and neither the URL (its query may carry a key) nor any header value is put in a
//!   message; only the host is logged.
//! - A response body is never read past its cap: a larger one is an error, not a truncation.
//!   A body saved as a file ([`SaveBody`]) streams to the binaries directory chunk by chunk,
//!   within [`HttpOptions::max_file_bytes`]; a file or multipart body ([`Payload`]) streams
//!   from there, opened (and a multipart form built) again for every hop and every resend,
//!   so a file is never held in memory whole.
//! - Every hop passes the egress guard of [`HttpOptions::egress`] before anything is sent: its
//!   IP-literal host is checked here, a host name by the client's [`GuardedResolver`], so that
//!   a redirect cannot lead to an address the first URL could not. A hop that leaves the origin
//!   of the one before it also loses the caller's custom headers (only content negotiation
//!   and body headers go along), as one of them may be a credential under another name.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::Utc;
use reqwest::header::{
    ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE, AUTHORIZATION, CACHE_CONTROL, CONTENT_ENCODING,
    CONTENT_LANGUAGE, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION,
    PRAGMA, REFERER, RETRY_AFTER, TRANSFER_ENCODING,
};
use reqwest::redirect::Policy;
use reqwest::{Client, Method, StatusCode, Url};
use serde_json::{Map, Value, json};

use crate::apps::egress::{EgressPolicy, EgressRefused, GuardedResolver};
use crate::expr::binary::Binary;

mod files;

use crate::module::error::{ErrorKind, ModuleError};
use files::{file_body, form, related, save_body};
pub use files::{is_text_type, response_file_name};

/// Longest timeout a request may ask for, in seconds (Make's limit for its HTTP modules), and
/// the default timeout.
pub const MAX_TIMEOUT_SECS: u64 = 300;
/// How many redirects are followed before giving up.
pub const MAX_REDIRECTS: usize = 10;
/// How much of an error response's body is kept in the error's `details`.
const ERROR_BODY_EXCERPT_CHARS: usize = 1000;
/// How much of an error response is read to build that excerpt.
const ERROR_BODY_READ_BYTES: usize = 64 * 1024;
/// Longest `Retry-After` honoured, so a hostile server cannot freeze a scenario for ever.
const MAX_RETRY_AFTER_MS: u64 = 24 * 60 * 60 * 1000;

/// Settings shared by every request of a [`Transport`].
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Timeout of a request that sets none (Make's default is its maximum, 300 s).
    pub timeout: Duration,
    /// Timeout for establishing a connection; a host that does not answer in time is a
    /// `ConnectionError`.
    pub connect_timeout: Duration,
    /// Largest response body accepted unless a request sets its own cap.
    pub max_response_bytes: usize,
    /// Largest response body saved as a file ([`SaveBody`]) unless a request sets its own cap.
    pub max_file_bytes: usize,
    /// `User-Agent` sent unless the request sets its own header.
    pub user_agent: String,
    /// Which non-public hosts and addresses requests may reach (by default none).
    pub egress: EgressPolicy,
    /// Hosts whose certificates a request may ask not to check (Make's
    /// `rejectUnauthorized: false`): `--allow-insecure-tls HOST`. Elsewhere such a request
    /// fails; without any, certificate checks are always on.
    pub insecure_tls_hosts: Vec<String>,
}

impl HttpOptions {
    /// The defaults with loopback addresses allowed: for tests and local development.
    pub fn allowing_loopback() -> Self {
        HttpOptions {
            egress: EgressPolicy::allowing_loopback(),
            ..HttpOptions::default()
        }
    }
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(MAX_TIMEOUT_SECS),
            connect_timeout: Duration::from_secs(30),
            max_response_bytes: 10 * 1024 * 1024,
            max_file_bytes: 1024 * 1024 * 1024,
            user_agent: concat!("Switchyard/", env!("CARGO_PKG_VERSION")).to_string(),
            egress: EgressPolicy::default(),
            insecure_tls_hosts: Vec::new(),
        }
    }
}

/// The credentials of a request.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Auth {
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: Basic base64(user:password)`.
    Basic { user: String, password: String },
    /// An API key in a header of its own (`X-Api-Key: <value>` …).
    ApiKeyHeader { name: HeaderName, value: String },
    /// An API key in a query parameter (`?api_key=<value>`); it replaces a parameter of the
    /// same name already in the URL.
    ApiKeyQuery { name: String, value: String },
}

/// What `Debug` prints instead of a secret.
const REDACTED: &str = "<redacted>";

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Bearer(_) => f.debug_tuple("Bearer").field(&REDACTED).finish(),
            Auth::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &REDACTED)
                .finish(),
            Auth::ApiKeyHeader { name, .. } => f
                .debug_struct("ApiKeyHeader")
                .field("name", name)
                .field("value", &REDACTED)
                .finish(),
            Auth::ApiKeyQuery { name, .. } => f
                .debug_struct("ApiKeyQuery")
                .field("name", name)
                .field("value", &REDACTED)
                .finish(),
        }
    }
}

impl Auth {
    /// Puts the credentials on one hop of a request: the only place they are applied. A value
    /// that cannot be a header is a `DataError` that does not quote it.
    fn apply(&self, url: &mut Url, headers: &mut HeaderMap) -> Result<(), ModuleError> {
        let secret_header = |value: String, what: &str| {
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                ModuleError::data(format!(
                    "the {what} contains characters not allowed in an HTTP header"
                ))
            })?;
            value.set_sensitive(true);
            Ok::<_, ModuleError>(value)
        };
        match self {
            Auth::None => {}
            Auth::Bearer(token) => {
                let value = secret_header(format!("Bearer {token}"), "bearer token")?;
                headers.insert(AUTHORIZATION, value);
            }
            Auth::Basic { user, password } => {
                let encoded = BASE64.encode(format!("{user}:{password}"));
                let value = secret_header(format!("Basic {encoded}"), "basic credential")?;
                headers.insert(AUTHORIZATION, value);
            }
            Auth::ApiKeyHeader { name, value } => {
                let value = secret_header(value.clone(), "API key")?;
                headers.insert(name.clone(), value);
            }
            Auth::ApiKeyQuery { name, value } => {
                // The query is re-encoded only when a parameter has to be replaced.
                if url.query_pairs().any(|(key, _)| key == name.as_str()) {
                    let kept: Vec<(String, String)> = url
                        .query_pairs()
                        .filter(|(key, _)| key != name)
                        .map(|(key, value)| (key.into_owned(), value.into_owned()))
                        .collect();
                    url.query_pairs_mut().clear().extend_pairs(kept);
                }
                url.query_pairs_mut().append_pair(name, value);
            }
        }
        Ok(())
    }
}

/// A request body and the content type it implies.
#[derive(Clone, PartialEq, Eq)]
pub struct Body {
    pub payload: Payload,
    /// Sent as `Content-Type` unless the request's headers already have one (a multipart
    /// body always sends its own, with its boundary).
    pub content_type: Option<String>,
}

impl Body {
    /// A body of bytes held in memory.
    pub fn bytes(bytes: Vec<u8>, content_type: Option<String>) -> Body {
        Body {
            payload: Payload::Bytes(bytes),
            content_type,
        }
    }

    /// The bytes of a body held in memory; `None` for a streamed one.
    pub fn in_memory(&self) -> Option<&[u8]> {
        match &self.payload {
            Payload::Bytes(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The body's size when it is known before sending.
    fn len(&self) -> Option<u64> {
        match &self.payload {
            Payload::Bytes(bytes) => Some(bytes.len() as u64),
            Payload::File(file) => Some(file.size),
            Payload::Multipart(_) | Payload::Related(_) => None,
        }
    }
}

/// What a request body carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Bytes(Vec<u8>),
    /// A stored binary, streamed from the binaries directory.
    File(Binary),
    /// `multipart/form-data`: the parts, from which a `reqwest` form (which sending consumes)
    /// is built for every attempt.
    Multipart(Vec<FormPart>),
    /// `multipart/related` (RFC 2387; Google's upload of metadata and media in one request):
    /// each part with its own type, files streamed.
    Related(Vec<RelatedPart>),
}

/// One part of a `multipart/related` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelatedPart {
    pub content_type: String,
    pub content: PartContent,
}

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormPart {
    pub name: String,
    pub content: PartContent,
    /// A file part's file name (`filename=` of its `Content-Disposition`).
    pub file_name: Option<String>,
    /// A file part's `Content-Type`.
    pub content_type: Option<String>,
}

/// What a multipart part holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartContent {
    Text(String),
    Bytes(Vec<u8>),
    /// A stored binary, streamed.
    File(Binary),
}

/// Where a response body goes: into memory ([`Response::body`]) or, streamed, into the
/// binaries directory ([`Response::file`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaveBody {
    #[default]
    Memory,
    /// Always a file (a download).
    File,
    /// A file unless the response's `Content-Type` is text ([`is_text_type`]): a response
    /// read as text, JSON or a form when it is one, as a file when it is an image, a PDF …
    FileUnlessText,
}

/// Whether redirects are followed or handed back as the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirects {
    Follow,
    Return,
}

/// What an HTTP error status (4xx, 5xx) becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStatus {
    /// An error, as [`status_error`] maps it.
    Raise,
    /// The response, like any other (the caller maps it).
    Return,
}

/// One request, as an app describes it. Its `Debug` shows no value that may be a secret: the
/// URL without its query, the names of the query parameters and headers, the body's size.
#[derive(Clone)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    /// Appended to the URL's own query.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Option<Body>,
    pub auth: Auth,
    /// The whole exchange's timeout; `None` means [`HttpOptions::timeout`].
    pub timeout: Option<Duration>,
    pub redirects: Redirects,
    pub error_status: ErrorStatus,
    /// Largest response body accepted; `None` means [`HttpOptions::max_response_bytes`].
    pub max_response_bytes: Option<usize>,
    /// Whether the server's certificate is checked. False (Make's `rejectUnauthorized:
    /// false`) is honoured only for [`HttpOptions::insecure_tls_hosts`].
    pub verify_tls: bool,
    /// Where a successful response's body goes.
    pub save_body: SaveBody,
}

impl Request {
    /// A request with no query, headers, body or credentials that follows redirects, raises
    /// HTTP error statuses and uses the transport's timeout and size cap.
    pub fn new(method: Method, url: Url) -> Self {
        Request {
            method,
            url,
            query: Vec::new(),
            headers: HeaderMap::new(),
            body: None,
            auth: Auth::None,
            timeout: None,
            redirects: Redirects::Follow,
            error_status: ErrorStatus::Raise,
            max_response_bytes: None,
            verify_tls: true,
            save_body: SaveBody::Memory,
        }
    }

    /// The `Content-Type` that will be sent: a header set on the request wins over the type
    /// its body implies.
    pub fn content_type(&self) -> Option<&str> {
        match self.headers.get(CONTENT_TYPE) {
            Some(value) => value.to_str().ok(),
            None => self.body.as_ref()?.content_type.as_deref(),
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("bytes", &self.len())
            .field("content_type", &self.content_type)
            .finish()
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.url.clone();
        let _ = url.set_password(None);
        let url_query: Vec<String> = url
            .query_pairs()
            .map(|(name, _)| name.into_owned())
            .collect();
        url.set_query(None);
        let query: Vec<&str> = url_query
            .iter()
            .map(String::as_str)
            .chain(self.query.iter().map(|(name, _)| name.as_str()))
            .collect();
        let headers: Vec<&str> = self.headers.keys().map(HeaderName::as_str).collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &url.as_str())
            .field("query", &query)
            .field("headers", &headers)
            .field("body", &self.body)
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .field("redirects", &self.redirects)
            .field("error_status", &self.error_status)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

/// A response read in full (within the size cap).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body, unless it was saved as a file (then empty).
    pub body: Vec<u8>,
    /// The body saved as a file ([`Request::save_body`]).
    pub file: Option<Binary>,
}

/// The shared client. It never follows redirects itself: [`Transport::send`] does, so that it
/// decides per hop which credentials go along.
pub struct Transport {
    client: Client,
    /// The same client without certificate checks, for the hosts the operator allowed
    /// ([`HttpOptions::insecure_tls_hosts`]); none when no host is.
    insecure_client: Option<Client>,
    options: HttpOptions,
}

/// Why an exchange failed before a response could be returned.
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

impl From<ModuleError> for Failure {
    fn from(e: ModuleError) -> Self {
        Failure::Module(e)
    }
}

/// One request on the wire: the first, or one a redirect led to.
struct Hop {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Payload>,
    /// False once a redirect has left the origin the request started on.
    credentials: bool,
}

impl Transport {
    /// The client for `options`; fails on an invalid user agent or a TLS set-up error.
    pub fn new(options: HttpOptions) -> Result<Self, reqwest::Error> {
        let builder = || {
            Client::builder()
                .user_agent(options.user_agent.clone())
                .connect_timeout(options.connect_timeout)
                .redirect(Policy::none())
                .dns_resolver(Arc::new(GuardedResolver::new(Arc::new(
                    options.egress.clone(),
                ))))
        };
        let client = builder().build()?;
        let insecure_client = if options.insecure_tls_hosts.is_empty() {
            None
        } else {
            Some(builder().danger_accept_invalid_certs(true).build()?)
        };
        Ok(Transport {
            client,
            insecure_client,
            options,
        })
    }

    /// The client for one hop: certificate checks stay on unless the request asks them off
    /// and the operator allowed the hop's host; asked off elsewhere, the request fails.
    fn client_for(&self, url: &Url, verify_tls: bool) -> Result<&Client, ModuleError> {
        if verify_tls {
            return Ok(&self.client);
        }
        let host = url.host_str().unwrap_or_default().trim_end_matches('.');
        let allowed = self
            .options
            .insecure_tls_hosts
            .iter()
            .any(|h| h.trim_end_matches('.').eq_ignore_ascii_case(host));
        match (&self.insecure_client, allowed) {
            (Some(insecure), true) => Ok(insecure),
            _ => Err(ModuleError::config(format!(
                "rejectUnauthorized is false, but certificate checks stay on for {host}: an \
                 operator can turn them off for this host with --allow-insecure-tls {host} \
                 (or SWITCHYARD_ALLOW_INSECURE_TLS={host})"
            ))),
        }
    }

    pub fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// Sends `request` and reads its answer within the size cap and timeout. `module_id` only
    /// labels the log lines (which name the method, host, status and duration, nothing else).
    pub async fn send(&self, request: Request, module_id: u32) -> Result<Response, ModuleError> {
        let limit = request
            .max_response_bytes
            .unwrap_or(self.options.max_response_bytes);
        let timeout = request.timeout.unwrap_or(self.options.timeout);
        let method = request.method.clone();
        let host = request.url.host_str().unwrap_or_default().to_string();

        let started = Instant::now();
        let outcome =
            match tokio::time::timeout(timeout, self.exchange(request, limit, timeout)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Failure::Module(timeout_error(timeout))),
            };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match outcome {
            Ok(response) => {
                tracing::debug!(module_id, %method, host, status = response.status.as_u16(), elapsed_ms, "http request done");
                Ok(response)
            }
            Err(failure) => {
                let error = match failure {
                    Failure::Transport(e) => transport_error(e, timeout),
                    Failure::TooLarge { declared } => too_large(limit, declared),
                    Failure::Module(e) => e,
                };
                tracing::debug!(module_id, %method, host, elapsed_ms, kind = error.kind.name(), "http request failed");
                Err(error)
            }
        }
    }

    async fn exchange(
        &self,
        request: Request,
        limit: usize,
        timeout: Duration,
    ) -> Result<Response, Failure> {
        let mut url = request.url;
        if !request.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&request.query);
        }
        let first_url = url.clone();
        let mut headers = request.headers;
        let mut body = None;
        if let Some(Body {
            payload,
            content_type,
        }) = request.body
        {
            if let Payload::Multipart(_) | Payload::Related(_) = payload {
                // The form sends its own type, with its boundary.
                headers.remove(CONTENT_TYPE);
            } else if let Some(content_type) = content_type
                && !headers.contains_key(CONTENT_TYPE)
                && let Ok(value) = HeaderValue::from_str(&content_type)
            {
                headers.insert(CONTENT_TYPE, value);
            }
            body = Some(payload);
        }
        let mut hop = Hop {
            method: request.method,
            url,
            headers,
            body,
            credentials: true,
        };

        let mut redirects = 0;
        let mut response = loop {
            self.options
                .egress
                .check_url(&hop.url)
                .map_err(ModuleError::from)?;
            let client = self.client_for(&hop.url, request.verify_tls)?;
            let response = self
                .build(client, &hop, &request.auth, timeout)?
                .send()
                .await?;
            if request.redirects == Redirects::Return {
                break response;
            }
            let Some(next) = redirect_target(&response, &hop.url)? else {
                break response;
            };
            if redirects == MAX_REDIRECTS {
                return Err(Failure::Module(too_many_redirects()));
            }
            redirects += 1;
            hop.redirect(response.status(), next, &first_url);
        };

        let status = response.status();
        let headers = response.headers().clone();
        if status.as_u16() >= 400 && request.error_status == ErrorStatus::Raise {
            let (body, _) = read_body(&mut response, limit.min(ERROR_BODY_READ_BYTES)).await?;
            return Err(Failure::Module(status_error(status, &headers, &body)));
        }
        let to_file = match request.save_body {
            SaveBody::Memory => false,
            SaveBody::File => true,
            SaveBody::FileUnlessText => !is_text_type(
                headers
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default(),
            ),
        };
        if to_file && hop.method != Method::HEAD {
            let limit = request
                .max_response_bytes
                .unwrap_or(self.options.max_file_bytes);
            let file = save_body(&mut response, limit, &headers, &hop.url).await?;
            return Ok(Response {
                status,
                headers,
                body: Vec::new(),
                file: Some(file),
            });
        }
        if hop.method != Method::HEAD
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
        Ok(Response {
            status,
            headers,
            body,
            file: None,
        })
    }

    /// The `reqwest` request for one hop, with the credentials when the hop may carry them.
    fn build(
        &self,
        client: &Client,
        hop: &Hop,
        auth: &Auth,
        timeout: Duration,
    ) -> Result<reqwest::RequestBuilder, ModuleError> {
        let mut url = hop.url.clone();
        let mut headers = hop.headers.clone();
        if hop.credentials {
            auth.apply(&mut url, &mut headers)?;
        }
        let mut builder = client
            .request(hop.method.clone(), url)
            .headers(headers)
            .timeout(timeout);
        match &hop.body {
            None => {}
            Some(Payload::Bytes(bytes)) => builder = builder.body(bytes.clone()),
            Some(Payload::File(file)) => builder = builder.body(file_body(file)?),
            Some(Payload::Multipart(parts)) => builder = builder.multipart(form(parts)?),
            Some(Payload::Related(parts)) => {
                let (content_type, body) = related(parts)?;
                builder = builder.header(CONTENT_TYPE, content_type).body(body);
            }
        }
        Ok(builder)
    }
}

impl Hop {
    /// Turns this hop into the one a redirect with `status` to `next` asks for, as browsers
    /// (and `reqwest`) do: 301/302 turn a POST into a GET without body, 303 turns anything but
    /// HEAD into one, 307/308 repeat the request. Leaving the current origin drops the
    /// caller's `Authorization`/`Cookie` headers; leaving the first origin ends the `Auth`.
    fn redirect(&mut self, status: StatusCode, next: Url, first_url: &Url) {
        let drop_payload = match status {
            StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => {
                let post = self.method == Method::POST;
                if post {
                    self.method = Method::GET;
                }
                post
            }
            StatusCode::SEE_OTHER => {
                if self.method != Method::HEAD {
                    self.method = Method::GET;
                }
                true
            }
            _ => false,
        };
        if drop_payload {
            self.body = None;
            for header in [
                CONTENT_TYPE,
                CONTENT_LENGTH,
                CONTENT_ENCODING,
                TRANSFER_ENCODING,
            ] {
                self.headers.remove(header);
            }
        }
        if !same_origin(&next, &self.url) {
            let custom: Vec<HeaderName> = self
                .headers
                .keys()
                .filter(|name| !CROSS_ORIGIN_HEADERS.contains(name))
                .cloned()
                .collect();
            for header in custom {
                self.headers.remove(header);
            }
        }
        if !same_origin(&next, first_url) {
            self.credentials = false;
        }
        self.headers.remove(REFERER);
        if let Some(referer) = referer(&next, &self.url) {
            self.headers.insert(REFERER, referer);
        }
        self.url = next;
    }
}

/// The caller's headers a redirect to another origin keeps: content negotiation and those that
/// describe a body still sent (307/308). Any other may be a credential (`Authorization`,
/// `Cookie`, `X-Api-Token` …) and is dropped.
const CROSS_ORIGIN_HEADERS: [HeaderName; 8] = [
    ACCEPT,
    ACCEPT_ENCODING,
    ACCEPT_LANGUAGE,
    CACHE_CONTROL,
    CONTENT_ENCODING,
    CONTENT_LANGUAGE,
    CONTENT_TYPE,
    PRAGMA,
];

/// Whether two URLs have the same origin: scheme, host and port.
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Where a redirect response leads, if it is one that is followed (301, 302, 303, 307, 308
/// with a `Location` that resolves); a response that is not is returned as it is.
fn redirect_target(response: &reqwest::Response, current: &Url) -> Result<Option<Url>, Failure> {
    if !matches!(
        response.status(),
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    ) {
        return Ok(None);
    }
    let Some(next) = response
        .headers()
        .get(LOCATION)
        .and_then(|location| std::str::from_utf8(location.as_bytes()).ok())
        .and_then(|location| current.join(location).ok())
    else {
        return Ok(None);
    };
    if !matches!(next.scheme(), "http" | "https") {
        return Err(Failure::Module(ModuleError::data(
            "the request could not be built: a redirect leads to a URL that is not http:// or https://",
        )));
    }
    Ok(Some(next))
}

/// The `Referer` for a redirect: the previous URL without credentials or fragment, and none
/// from https to http (what `reqwest` sends when it follows redirects itself).
fn referer(next: &Url, previous: &Url) -> Option<HeaderValue> {
    if next.scheme() == "http" && previous.scheme() == "https" {
        return None;
    }
    let mut referer = previous.clone();
    let _ = referer.set_username("");
    let _ = referer.set_password(None);
    referer.set_fragment(None);
    HeaderValue::from_str(referer.as_str()).ok()
}

/// Reads at most `limit` bytes of the body; the flag says whether more was left unread.
async fn read_body(
    response: &mut reqwest::Response,
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

// ---------------------------------------------------------------------------------------------
// Errors

fn status_line(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// The error for an HTTP error status, as Make's HTTP app types it: 429 is a `RateLimitError`
/// that waits for `Retry-After`, any other a `RuntimeError`. Both carry the status and an
/// excerpt of the body in `details`.
pub fn status_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ModuleError {
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

/// `Retry-After` as milliseconds from now: delta-seconds or an HTTP date, at most a day.
pub fn retry_after_ms(headers: &HeaderMap) -> Option<u64> {
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

/// The error for an exchange that outlived its timeout.
pub fn timeout_error(timeout: Duration) -> ModuleError {
    ModuleError::new(
        ErrorKind::ModuleTimeoutError,
        format!("the request timed out after {} s", timeout.as_secs_f64()),
    )
}

fn too_many_redirects() -> ModuleError {
    ModuleError::runtime(format!("too many redirects (more than {MAX_REDIRECTS})"))
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
pub fn transport_error(error: reqwest::Error, timeout: Duration) -> ModuleError {
    let error = error.without_url();
    if let Some(refused) = egress_refusal(&error) {
        return refused.clone().into();
    }
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
        return too_many_redirects();
    }
    if error.is_builder() {
        return ModuleError::data(format!("the request could not be built: {cause}"));
    }
    ModuleError::new(
        ErrorKind::ConnectionError,
        format!("the request failed: {cause}"),
    )
}

/// The refusal of the egress guard's resolver, if that is why `error` happened.
fn egress_refusal<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a EgressRefused> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<EgressRefused>() {
            return Some(refused);
        }
        current = e.source();
    }
    None
}

/// The messages of an error and its sources, joined, without repeats.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::extract::Path;
    use axum::http::{HeaderMap as AxumHeaders, Method as AxumMethod, Uri};
    use axum::response::{IntoResponse, Redirect};
    use axum::routing::any;

    use super::*;

    /// What the echo route received, as JSON.
    async fn echo(method: AxumMethod, uri: Uri, headers: AxumHeaders, body: String) -> String {
        let headers: Map<String, Value> = headers
            .iter()
            .map(|(name, value)| {
                (
                    name.to_string(),
                    Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
                )
            })
            .collect();
        json!({"method": method.as_str(), "path": uri.path(), "query": uri.query(),
               "headers": headers, "body": body})
        .to_string()
    }

    /// A loopback server: `/echo`, `/status/{code}`, `/to?url=…&code=…` (a redirect with that
    /// status to that URL) and `/loop` (a redirect to itself).
    async fn serve() -> SocketAddr {
        let app = Router::new()
            .route("/echo", any(echo))
            .route(
                "/status/{code}",
                any(|Path(code): Path<u16>| async move {
                    let status = StatusCode::from_u16(code).unwrap();
                    (status, [("retry-after", "3")], "the API's message").into_response()
                }),
            )
            .route(
                "/to",
                any(
                    |axum::extract::Query(q): axum::extract::Query<Map<String, Value>>| async move {
                        let url = q["url"].as_str().unwrap().to_string();
                        match q.get("code").and_then(Value::as_str) {
                            Some("307") => Redirect::temporary(&url).into_response(),
                            Some("303") => Redirect::to(&url).into_response(),
                            _ => (StatusCode::FOUND, [("location", url)]).into_response(),
                        }
                    },
                ),
            )
            .route("/loop", any(|| async { Redirect::temporary("/loop") }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    fn transport() -> Transport {
        Transport::new(HttpOptions::allowing_loopback()).unwrap()
    }

    fn guarded(allowed: &[&str]) -> Transport {
        Transport::new(HttpOptions {
            egress: EgressPolicy::allowing(allowed).unwrap(),
            ..HttpOptions::default()
        })
        .unwrap()
    }

    /// A bare HTTP server on `address` that answers `200 ok` and counts the connections it
    /// accepted: how a test proves that a refused request never connected.
    async fn counting(address: &str) -> Option<(u16, Arc<std::sync::atomic::AtomicUsize>)> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind(address).await.ok()?;
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        Some((port, accepted))
    }

    fn get(url: &str) -> Request {
        Request::new(Method::GET, Url::parse(url).unwrap())
    }

    /// Sends `request` and returns what `/echo` saw.
    async fn echoed(request: Request) -> Value {
        let response = transport().send(request, 1).await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        serde_json::from_slice(&response.body).unwrap()
    }

    fn with_auth(mut request: Request, auth: Auth) -> Request {
        request.auth = auth;
        request
    }

    fn api_key_header() -> Auth {
        Auth::ApiKeyHeader {
            name: HeaderName::from_static("x-api-key"),
            value: "key-123".into(),
        }
    }

    #[tokio::test]
    async fn each_auth_arrives_as_the_server_expects() {
        let base = format!("http://{}", serve().await);
        let seen = echoed(with_auth(
            get(&format!("{base}/echo")),
            Auth::Bearer("tok-1".into()),
        ))
        .await;
        assert_eq!(seen["headers"]["authorization"], "Bearer tok-1");

        let seen = echoed(with_auth(
            get(&format!("{base}/echo")),
            Auth::Basic {
                user: "ann".into(),
                password: "pw".into(),
            },
        ))
        .await;
        assert_eq!(seen["headers"]["authorization"], "Basic YW5uOnB3");

        let seen = echoed(with_auth(get(&format!("{base}/echo")), api_key_header())).await;
        assert_eq!(seen["headers"]["x-api-key"], "key-123");
        assert!(seen["headers"].get("authorization").is_none(), "{seen}");

        // The key replaces a parameter of its name and keeps the others, query pairs included.
        let mut request = get(&format!("{base}/echo?api_key=old&a=1"));
        request.query = vec![("b".into(), "2 3".into())];
        let seen = echoed(with_auth(
            request,
            Auth::ApiKeyQuery {
                name: "api_key".into(),
                value: "k&y".into(),
            },
        ))
        .await;
        assert_eq!(seen["query"], "a=1&b=2+3&api_key=k%26y");

        let seen = echoed(get(&format!("{base}/echo"))).await;
        assert!(seen["headers"].get("authorization").is_none(), "{seen}");
        assert!(
            seen["headers"]["user-agent"]
                .as_str()
                .unwrap()
                .starts_with("Switchyard/")
        );
    }

    #[tokio::test]
    async fn a_credential_that_cannot_be_a_header_is_a_data_error_that_does_not_quote_it() {
        let base = format!("http://{}", serve().await);
        let err = transport()
            .send(
                with_auth(
                    get(&format!("{base}/echo")),
                    Auth::Bearer("sec\nret".into()),
                ),
                1,
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::DataError);
        assert!(!err.message.contains("sec"), "{}", err.message);
    }

    #[test]
    fn debug_of_auth_hides_the_secrets() {
        let all = [
            Auth::None,
            Auth::Bearer("s3cret-token".into()),
            Auth::Basic {
                user: "ann".into(),
                password: "s3cret-pw".into(),
            },
            Auth::ApiKeyHeader {
                name: HeaderName::from_static("x-api-key"),
                value: "s3cret-key".into(),
            },
            Auth::ApiKeyQuery {
                name: "api_key".into(),
                value: "s3cret-q".into(),
            },
        ];
        let shown = format!("{all:?} {all:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        for expected in ["Bearer", "ann", "x-api-key", "api_key", REDACTED] {
            assert!(shown.contains(expected), "{expected} not in {shown}");
        }
        let mut request = with_auth(get("http://x.test/"), all[1].clone());
        request.body = Some(Body {
            payload: crate::apps::transport::Payload::Bytes(b"{}".to_vec()),
            content_type: Some("application/json".into()),
        });
        request.url = Url::parse("http://u:s3cret-pw@x.test/p?token=s3cret-1").unwrap();
        request.query = vec![("key".into(), "s3cret-2".into())];
        request
            .headers
            .insert("x-key", HeaderValue::from_static("s3cret-3"));
        let shown = format!("{request:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        for expected in ["token", "key", "x-key", "x.test/p"] {
            assert!(shown.contains(expected), "{expected} not in {shown}");
        }
    }

    #[tokio::test]
    async fn error_statuses_raise_or_return() {
        let base = format!("http://{}", serve().await);
        let transport = transport();
        for (code, kind) in [
            (401, ErrorKind::RuntimeError),
            (403, ErrorKind::RuntimeError),
            (404, ErrorKind::RuntimeError),
            (500, ErrorKind::RuntimeError),
            (429, ErrorKind::RateLimitError),
        ] {
            let err = transport
                .send(get(&format!("{base}/status/{code}")), 1)
                .await
                .unwrap_err();
            assert_eq!(err.kind, kind, "{code}");
            assert!(err.message.starts_with(&code.to_string()), "{err:?}");
            assert_eq!(err.details.as_ref().unwrap()["body"], "the API's message");
            let delay = (code == 429).then_some(3000);
            assert_eq!(err.delay_ms, delay, "{code}");
        }
        let mut request = get(&format!("{base}/status/401"));
        request.error_status = ErrorStatus::Return;
        let response = transport.send(request, 1).await.unwrap();
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
        assert_eq!(response.body, b"the API's message");
    }

    /// A request to `from`'s `/to`, redirecting with `code` to `to`.
    fn redirected(from: &str, to: &str, code: u16, auth: Auth) -> Request {
        let mut url = Url::parse(&format!("{from}/to")).unwrap();
        url.query_pairs_mut()
            .append_pair("url", to)
            .append_pair("code", &code.to_string());
        with_auth(Request::new(Method::GET, url), auth)
    }

    #[tokio::test]
    async fn credentials_follow_a_redirect_only_within_the_origin() {
        let here = format!("http://{}", serve().await);
        // Another port is another origin.
        let there = format!("http://{}", serve().await);
        let query_key = Auth::ApiKeyQuery {
            name: "api_key".into(),
            value: "key-q".into(),
        };
        for auth in [
            Auth::Bearer("tok-1".into()),
            Auth::Basic {
                user: "ann".into(),
                password: "pw".into(),
            },
            api_key_header(),
            query_key.clone(),
        ] {
            let mut request = redirected(&here, &format!("{there}/echo"), 302, auth.clone());
            request
                .headers
                .insert("x-trace", HeaderValue::from_static("t-1"));
            request
                .headers
                .insert(ACCEPT, HeaderValue::from_static("application/json"));
            request.headers.insert(
                reqwest::header::COOKIE,
                HeaderValue::from_static("session=abc"),
            );
            let seen = echoed(request).await;
            assert_eq!(seen["path"], "/echo", "{auth:?}");
            let headers = seen["headers"].as_object().unwrap();
            for credential in ["authorization", "x-api-key", "cookie"] {
                assert!(!headers.contains_key(credential), "{auth:?}: {seen}");
            }
            assert!(seen["query"].is_null(), "{auth:?}: {seen}");
            // Custom headers may be credentials under another name: they stay behind too;
            // content negotiation goes along.
            assert!(!headers.contains_key("x-trace"), "{auth:?}: {seen}");
            assert_eq!(headers["accept"], "application/json");

            // Within the origin, the credentials are sent on every hop.
            let mut within = redirected(&here, &format!("{here}/echo"), 302, auth.clone());
            within
                .headers
                .insert("x-trace", HeaderValue::from_static("t-1"));
            let seen = echoed(within).await;
            let headers = seen["headers"].as_object().unwrap();
            assert_eq!(headers["x-trace"], "t-1");
            match &auth {
                Auth::ApiKeyQuery { .. } => assert_eq!(seen["query"], "api_key=key-q"),
                Auth::ApiKeyHeader { .. } => assert_eq!(headers["x-api-key"], "key-123"),
                _ => assert!(headers.contains_key("authorization"), "{auth:?}: {seen}"),
            }
        }

        // Once a redirect has left the origin, coming back does not bring the credentials back.
        let mut back = Url::parse(&format!("{there}/to")).unwrap();
        back.query_pairs_mut()
            .append_pair("url", &format!("{here}/echo"));
        let seen = echoed(redirected(
            &here,
            back.as_str(),
            302,
            Auth::Bearer("tok-1".into()),
        ))
        .await;
        assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    }

    #[tokio::test]
    async fn redirects_change_the_method_as_browsers_do() {
        let base = format!("http://{}", serve().await);
        let post = |code: u16| {
            let mut request = redirected(&base, &format!("{base}/echo"), code, Auth::None);
            request.method = Method::POST;
            request.body = Some(Body {
                payload: crate::apps::transport::Payload::Bytes(b"payload".to_vec()),
                content_type: Some("text/plain".into()),
            });
            request
        };
        let seen = echoed(post(303)).await;
        assert_eq!(
            (&seen["method"], &seen["body"]),
            (&json!("GET"), &json!(""))
        );
        assert!(seen["headers"].get("content-type").is_none(), "{seen}");
        let seen = echoed(post(307)).await;
        assert_eq!(
            (&seen["method"], &seen["body"]),
            (&json!("POST"), &json!("payload"))
        );
        assert_eq!(seen["headers"]["content-type"], "text/plain");
        // The Referer is the hop that redirected, as reqwest sends it.
        let referer = seen["headers"]["referer"].as_str().unwrap();
        assert!(referer.starts_with(&format!("{base}/to?")), "{referer}");

        let mut returned = post(307);
        returned.redirects = Redirects::Return;
        let response = transport().send(returned, 1).await.unwrap();
        assert_eq!(response.status, StatusCode::TEMPORARY_REDIRECT);

        let err = transport()
            .send(get(&format!("{base}/loop")), 1)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::RuntimeError);
        assert_eq!(err.message, "too many redirects (more than 10)");
    }

    /// Asserts that `url` is refused by the guard with a message naming `address`.
    /// Asserts the guard refuses `url`; with `address`, that the message names the allowance
    /// that would open it.
    async fn assert_refused(transport: &Transport, url: &str, address: Option<&str>) {
        let err = transport.send(get(url), 1).await.unwrap_err();
        assert_eq!(
            err.kind,
            ErrorKind::InvalidConfigurationError,
            "{url}: {err:?}"
        );
        if let Some(address) = address {
            assert!(
                err.message.contains(&format!("--allow-egress {address}`")),
                "{url}: {}",
                err.message
            );
        }
        assert!(
            err.message.contains("SWITCHYARD_ALLOW_EGRESS"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn every_form_of_a_local_address_is_refused_without_connecting_unless_allowed() {
        use std::sync::atomic::Ordering;
        let (port, accepted) = counting("127.0.0.1:0").await.unwrap();
        let ipv6 = counting("[::1]:0").await;
        let mut cases = vec![
            (
                "127.0.0.1",
                port,
                "127.0.0.1",
                "127.0.0.1",
                accepted.clone(),
            ),
            (
                "localhost",
                port,
                "127.0.0.1",
                "localhost",
                accepted.clone(),
            ),
            (
                "2130706433",
                port,
                "127.0.0.1",
                "127.0.0.1",
                accepted.clone(),
            ),
            (
                "0x7f000001",
                port,
                "127.0.0.1",
                "127.0.0.1",
                accepted.clone(),
            ),
            ("127.1", port, "127.0.0.1", "127.0.0.1", accepted.clone()),
            (
                "[::ffff:127.0.0.1]",
                port,
                "127.0.0.1",
                "127.0.0.1",
                accepted.clone(),
            ),
            ("0.0.0.0", port, "0.0.0.0", "0.0.0.0", accepted.clone()),
        ];
        if let Some((port6, accepted6)) = &ipv6 {
            cases.push(("[::1]", *port6, "::1", "::1", accepted6.clone()));
        }
        for (host, port, address, allowance, accepted) in cases {
            let url = format!("http://{host}:{port}/");
            let before = accepted.load(Ordering::SeqCst);
            let named = (host != "localhost").then_some(address);
            assert_refused(&guarded(&[]), &url, named).await;
            // Another loopback address is not allowed by this one.
            if address == "127.0.0.1" {
                let err = guarded(&["127.0.0.2"])
                    .send(get(&url), 1)
                    .await
                    .unwrap_err();
                assert_eq!(err.kind, ErrorKind::InvalidConfigurationError, "{url}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(accepted.load(Ordering::SeqCst), before, "{url} connected");

            let response = guarded(&[allowance]).send(get(&url), 1).await.unwrap();
            assert_eq!(response.body, b"ok", "{url}");
            assert_eq!(accepted.load(Ordering::SeqCst), before + 1, "{url}");
        }

        // Addresses nothing listens on here: refused by the guard, not by a failed connection.
        let transport = guarded(&[]);
        assert_refused(
            &transport,
            "http://169.254.169.254/latest/meta-data/",
            Some("169.254.169.254"),
        )
        .await;
        assert_refused(&transport, "http://10.1.2.3:8080/", Some("10.1.2.3")).await;
        assert_refused(&transport, "http://[fd00::1]/", Some("fd00::1")).await;
        // A name is opened by name, not by the address it resolves to.
        assert_refused(
            &guarded(&["example.internal"]),
            &format!("http://localhost:{port}/"),
            Some("127.0.0.1"),
        )
        .await;
    }

    #[tokio::test]
    async fn a_redirect_to_a_refused_address_is_refused_without_connecting() {
        use std::sync::atomic::Ordering;
        let here = format!("http://{}", serve().await);
        // Another loopback address, allowed in the first request's place but not here.
        let Some((port, accepted)) = counting("127.0.0.2:0").await else {
            return;
        };
        let transport = guarded(&["127.0.0.1"]);
        for target in [
            format!("http://127.0.0.2:{port}/"),
            format!("http://0x7f000002:{port}/"),
            "http://169.254.169.254/latest/meta-data/".to_string(),
        ] {
            let err = transport
                .send(redirected(&here, &target, 302, Auth::None), 1)
                .await
                .unwrap_err();
            assert_eq!(
                err.kind,
                ErrorKind::InvalidConfigurationError,
                "{target}: {err:?}"
            );
            assert!(err.message.contains("--allow-egress"), "{}", err.message);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
        // Allowed, the same redirect is followed.
        let response = guarded(&["127.0.0.1", "127.0.0.2"])
            .send(
                redirected(&here, &format!("http://127.0.0.2:{port}/"), 302, Auth::None),
                1,
            )
            .await
            .unwrap();
        assert_eq!(response.body, b"ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
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
