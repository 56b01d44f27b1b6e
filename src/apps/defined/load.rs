//! Loading app definitions: the files embedded in the binary (`modules/*.json`) and any extra
//! files or folders, each read, deserialised with `serde_path_to_error`, checked (names,
//! semver, references between parts, what each module type needs) and compiled — every
//! `{{…}}` parsed once — into an [`App`].
//!
//! Invariants: a definition with any problem is refused whole, and the error names the file
//! and the JSON path of every problem found (an IML problem also its column); nothing loaded
//! is half-checked; two files may not define the same app, except that an extra file replaces
//! an embedded app of the same name (so a user whose API differs edits a copy, not Rust).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use rust_embed::RustEmbed;
use serde_json::{Map, Value};

use super::input::Field;
use super::model::{
    AppDefinition, ConnectionKind, ConnectionType, ModuleSpec, ModuleType, RespondType,
};
use super::template::{
    CompiledErrors, CompiledRequest, Expr, Json, compile_errors, compile_pagination,
    compile_request, compile_response, join,
};
use crate::apps::builtin::BuiltinRegistry;

/// The definitions built into the binary.
#[derive(RustEmbed)]
#[folder = "modules/"]
#[include = "*.json"]
struct Embedded;

/// One problem of a definition: where (a JSON path, empty for the whole file) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub(crate) fn new(path: &str, message: impl Into<String>) -> Self {
        Problem {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

/// A definition that could not be loaded: its file and every problem found in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "app definition {}:", self.file)?;
        // One problem on the same line; several, one per line.
        let sep = if self.problems.len() == 1 {
            " "
        } else {
            "\n  "
        };
        for p in &self.problems {
            if p.path.is_empty() {
                write!(f, "{sep}{}", p.message)?;
            } else {
                write!(f, "{sep}{}: {}", p.path, p.message)?;
            }
        }
        Ok(())
    }
}

impl LoadError {
    fn one(file: &str, path: &str, message: impl Into<String>) -> Self {
        LoadError {
            file: file.to_string(),
            problems: vec![Problem::new(path, message)],
        }
    }
}

/// A loaded, checked and compiled app definition.
#[derive(Debug)]
pub struct App {
    definition: AppDefinition,
    file: String,
    /// Built into the binary (an extra file may replace it).
    embedded: bool,
    pub(crate) base: CompiledBase,
    pub(crate) connections: Vec<CompiledConnection>,
    pub(crate) modules: IndexMap<String, Arc<CompiledModule>>,
    /// The base URL this process uses instead of `base.baseUrl` (`--app-base-url`).
    pub(crate) base_url_override: Option<reqwest::Url>,
}

impl App {
    /// The app's name, the prefix of its module types.
    pub fn name(&self) -> &str {
        &self.definition.name
    }

    /// The definition as written.
    pub fn definition(&self) -> &AppDefinition {
        &self.definition
    }

    /// Where the definition came from (`modules/chatbot.json`, or the extra file's path).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The app's connection types.
    pub fn connection_types(&self) -> &[ConnectionType] {
        &self.definition.connections
    }

    /// The connection type `name` (`token`).
    pub fn connection_type(&self, name: &str) -> Option<&ConnectionType> {
        self.definition.connections.iter().find(|c| c.name == name)
    }

    /// The scopes a connection of type `name` must be granted for every module of the app
    /// that uses it: the type's own `scopes` and each such module's, in order, without
    /// repeats (what connecting asks for).
    pub fn scopes(&self, name: &str) -> Vec<String> {
        let Some(index) = self.connections.iter().position(|c| c.name == name) else {
            return Vec::new();
        };
        let mut scopes = self.connections[index].scopes.clone();
        for module in self.modules.values() {
            if module.accepted.contains(&index) {
                for scope in &module.scopes {
                    if !scopes.contains(scope) {
                        scopes.push(scope.clone());
                    }
                }
            }
        }
        scopes
    }

    /// The OAuth provider of connection type `name` (`oauth2` and `service_account` types;
    /// a service account's is `google_service_account` unless it names one).
    pub fn provider(&self, name: &str) -> Option<&str> {
        self.connections
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.provider.as_deref())
    }

    /// The module types this app serves (`chatbot:GetUser` …).
    pub fn module_types(&self) -> impl Iterator<Item = String> + '_ {
        self.modules.keys().map(|m| format!("{}:{m}", self.name()))
    }
}

/// `base`, compiled.
#[derive(Debug)]
pub(crate) struct CompiledBase {
    pub base_url: Option<Expr>,
    pub qs: Option<Json>,
    pub headers: Option<Json>,
    pub valid: Option<Json>,
    pub error: CompiledErrors,
    /// `base.rateLimit`: the limiter every request of the app passes, and the IML reading a
    /// 429 body's wait.
    pub rate: Option<super::rate::RateLimiter>,
    pub retry_after: Option<Expr>,
    /// `base.rateLimit.key`: what the rate is counted by within a connection.
    pub rate_key: Option<Expr>,
}

/// A connection type, compiled.
#[derive(Debug)]
pub(crate) struct CompiledConnection {
    pub name: String,
    pub kind: ConnectionKind,
    /// `oauth2`/`service_account` types: the provider and the scopes of the type itself.
    pub provider: Option<String>,
    pub scopes: Vec<String>,
    /// At most one header or query parameter (the transport applies one credential).
    pub auth: Option<(AuthPlace, String, Expr)>,
    pub test: Option<CompiledRequest>,
    /// The configuration's property defaults, used for fields a stored connection lacks.
    pub defaults: Map<String, Value>,
}

/// Where a connection's credential goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthPlace {
    Header,
    Query,
}

/// A module, compiled.
#[derive(Debug)]
pub(crate) struct CompiledModule {
    pub app: String,
    pub name: String,
    pub kind: ModuleType,
    /// Index into the app's connections: the first type the module names.
    pub connection: Option<usize>,
    /// Every type the module accepts (`"connection": "bot,user"`, Make's
    /// `account:slack2,slack3`), the first one first; a stored connection of any of them works.
    pub accepted: Vec<usize>,
    /// The scopes the module needs: its connection type's and its own.
    pub scopes: Vec<String>,
    pub parameters: Vec<Field>,
    pub expect: Vec<Field>,
    /// The requests in order; the module's own `response`/`pagination` are folded into the
    /// last one when it has none.
    pub requests: Vec<CompiledRequest>,
    pub webhook: Option<CompiledWebhook>,
}

impl CompiledModule {
    /// `app:Name`.
    pub(crate) fn type_name(&self) -> String {
        format!("{}:{}", self.app, self.name)
    }
}

/// `webhook`, compiled.
#[derive(Debug)]
pub(crate) struct CompiledWebhook {
    pub attach: Option<CompiledRequest>,
    pub detach: Option<CompiledRequest>,
    pub authenticate: Option<Json>,
    pub verification: Option<CompiledVerification>,
    pub delivery_id: Option<Expr>,
}

/// `webhook.verification`, compiled.
#[derive(Debug)]
pub(crate) struct CompiledVerification {
    pub condition: Json,
    pub valid: Option<Json>,
    pub status: u16,
    pub body_type: RespondType,
    pub body: Option<Json>,
}

/// Every app this process serves, by name.
#[derive(Debug, Default)]
pub struct Apps {
    apps: IndexMap<String, Arc<App>>,
}

impl Apps {
    /// The apps built into the binary (`modules/*.json`).
    pub fn embedded() -> Result<Apps, LoadError> {
        Apps::load(&[])
    }

    /// The same apps with the base URL of each app named in `overrides` replaced (a sandbox,
    /// a proxy or a test server standing in for the real API). An override must name a
    /// loaded app and be an absolute http(s) URL without credentials.
    pub fn with_base_urls(
        mut self,
        overrides: &[(String, reqwest::Url)],
    ) -> Result<Apps, LoadError> {
        for (name, url) in overrides {
            let label = format!("--app-base-url {name}");
            let ok = matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some()
                && url.username().is_empty()
                && url.password().is_none();
            if !ok {
                return Err(LoadError::one(
                    &label,
                    "",
                    "expected an absolute http(s) URL without credentials",
                ));
            }
            let Some(app) = self.apps.get_mut(name) else {
                return Err(LoadError::one(
                    &label,
                    "",
                    format!(
                        "no app named \"{name}\" is loaded (apps: {})",
                        self.apps.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            };
            let Some(app) = Arc::get_mut(app) else {
                return Err(LoadError::one(&label, "", "the app is already in use"));
            };
            app.base_url_override = Some(url.clone());
        }
        Ok(self)
    }

    /// The embedded apps plus those of `extra`: files, or folders whose `*.json` files are
    /// read (in name order). An extra app replaces an embedded one of the same name.
    pub fn load(extra: &[PathBuf]) -> Result<Apps, LoadError> {
        let mut apps = Apps::default();
        let mut names: Vec<_> = Embedded::iter().collect();
        names.sort();
        for name in names {
            let label = format!("modules/{name}");
            let Some(file) = Embedded::get(&name) else {
                continue;
            };
            let text = std::str::from_utf8(&file.data)
                .map_err(|_| LoadError::one(&label, "", "not UTF-8 text"))?;
            apps.add(parse_app(&label, text)?, false)?;
        }
        for path in extra {
            for file in files(path)? {
                let label = file.display().to_string();
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| LoadError::one(&label, "", format!("cannot read: {e}")))?;
                apps.add(parse_app(&label, text.as_str())?, true)?;
            }
        }
        Ok(apps)
    }

    fn add(&mut self, mut app: App, extra: bool) -> Result<(), LoadError> {
        app.embedded = !extra;
        if let Some(existing) = self.apps.get(app.name()) {
            if !(extra && existing.embedded) {
                return Err(LoadError::one(
                    &app.file,
                    "name",
                    format!(
                        "the app `{}` is already defined by {}",
                        app.name(),
                        existing.file
                    ),
                ));
            }
            tracing::info!(
                app = app.name(),
                file = app.file(),
                "an extra app definition replaces the built-in one"
            );
        }
        self.apps.insert(app.name().to_string(), Arc::new(app));
        Ok(())
    }

    /// The app named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<App>> {
        self.apps.get(name)
    }

    /// Every app, in load order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<App>> {
        self.apps.values()
    }
}

/// The definition files under `path`: the file itself, or a folder's `*.json` files.
fn files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let label = path.display().to_string();
    let meta = std::fs::metadata(path)
        .map_err(|e| LoadError::one(&label, "", format!("cannot read: {e}")))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    let entries = std::fs::read_dir(path)
        .map_err(|e| LoadError::one(&label, "", format!("cannot read the folder: {e}")))?;
    for entry in entries {
        let entry = entry
            .map_err(|e| LoadError::one(&label, "", format!("cannot read the folder: {e}")))?;
        let file = entry.path();
        if file.extension().is_some_and(|e| e == "json") && file.is_file() {
            found.push(file);
        }
    }
    found.sort();
    Ok(found)
}

/// Reads, checks and compiles one definition; `file` labels errors.
pub fn parse_app(file: &str, text: &str) -> Result<App, LoadError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let definition: AppDefinition =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let inner = e.into_inner();
            let message = if inner.is_syntax() || inner.is_eof() {
                inner.to_string()
            } else {
                strip_position(&inner.to_string())
            };
            LoadError::one(file, &path, message)
        })?;
    deserializer.end().map_err(|e| {
        LoadError::one(
            file,
            "",
            format!("trailing characters after the definition: {e}"),
        )
    })?;
    compile(file, definition)
}

/// serde_json appends ` at line L column C` to shape errors; the JSON path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn is_app_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn is_identifier(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `base.rateLimit`'s limiter, or its problem at its path.
fn compile_rate(
    spec: Option<&super::model::RateLimitSpec>,
    problems: &mut Vec<Problem>,
) -> Option<super::rate::RateLimiter> {
    match super::rate::RateLimiter::new(spec?) {
        Ok(limiter) => Some(limiter),
        Err((key, reason)) => {
            problems.push(Problem::new(&format!("base.rateLimit.{key}"), reason));
            None
        }
    }
}

/// App names taken by built-in module families.
fn reserved(name: &str) -> bool {
    ["builtin", "gateway", "flow", "placeholder"].contains(&name)
        || BuiltinRegistry::names().any(|m| m.split(':').next() == Some(name))
}

fn compile(file: &str, definition: AppDefinition) -> Result<App, LoadError> {
    let mut problems: Vec<Problem> = Vec::new();
    if !is_app_name(&definition.name) {
        problems.push(Problem::new(
            "name",
            "expected lower-case letters, digits and single dashes, starting with a letter (e.g. `chatbot`)",
        ));
    } else if reserved(&definition.name) {
        problems.push(Problem::new(
            "name",
            format!("`{}` is the name of built-in modules", definition.name),
        ));
    }
    if let Err(e) = semver::Version::parse(&definition.version) {
        problems.push(Problem::new(
            "version",
            format!("expected a semantic version such as 1.0.0: {e}"),
        ));
    }
    if definition.title.trim().is_empty() {
        problems.push(Problem::new("title", "must not be empty"));
    }

    let base = &definition.base;
    let base_response = base.response.clone().unwrap_or_default();
    let compiled_base = CompiledBase {
        base_url: Expr::compile(&base.base_url, "base.baseUrl", &mut problems),
        qs: base
            .qs
            .as_ref()
            .and_then(|v| Json::compile(v, "base.qs", &mut problems)),
        headers: base
            .headers
            .as_ref()
            .and_then(|v| Json::compile(v, "base.headers", &mut problems)),
        valid: base_response
            .valid
            .as_ref()
            .and_then(|v| Json::compile(v, "base.response.valid", &mut problems)),
        error: compile_errors(
            base_response.error.as_ref(),
            "base.response.error",
            &mut problems,
        ),
        rate: compile_rate(base.rate_limit.as_ref(), &mut problems),
        retry_after: base
            .rate_limit
            .as_ref()
            .and_then(|r| r.retry_after.as_ref())
            .and_then(|e| Expr::compile(e, "base.rateLimit.retryAfter", &mut problems)),
        rate_key: base
            .rate_limit
            .as_ref()
            .and_then(|r| r.key.as_ref())
            .and_then(|e| Expr::compile(e, "base.rateLimit.key", &mut problems)),
    };

    let mut connections = Vec::with_capacity(definition.connections.len());
    for (i, connection) in definition.connections.iter().enumerate() {
        let path = format!("connections[{i}]");
        if definition.connections[..i]
            .iter()
            .any(|c| c.name == connection.name)
        {
            problems.push(Problem::new(
                &join(&path, "name"),
                format!("the connection type `{}` is defined twice", connection.name),
            ));
        }
        if !is_identifier(&connection.name) {
            problems.push(Problem::new(
                &join(&path, "name"),
                "expected letters, digits and underscores, starting with a letter",
            ));
        }
        connections.push(compile_connection(connection, &path, &mut problems));
    }

    let mut modules = IndexMap::with_capacity(definition.modules.len());
    for (name, spec) in &definition.modules {
        let path = format!("modules.{name}");
        if !is_identifier(name) {
            problems.push(Problem::new(
                &path,
                "a module name is letters, digits and underscores, starting with a letter",
            ));
        }
        let module = compile_module(&definition, name, spec, &path, &mut problems);
        modules.insert(name.clone(), Arc::new(module));
    }

    if !problems.is_empty() {
        return Err(LoadError {
            file: file.to_string(),
            problems,
        });
    }
    Ok(App {
        file: file.to_string(),
        embedded: false,
        base: compiled_base,
        connections,
        modules,
        definition,
        base_url_override: None,
    })
}

fn compile_connection(
    spec: &ConnectionType,
    path: &str,
    problems: &mut Vec<Problem>,
) -> CompiledConnection {
    let configuration = join(path, "configuration");
    let mut defaults = Map::new();
    match spec.configuration.as_object() {
        Some(schema) if schema.get("type").and_then(Value::as_str) == Some("object") => {
            match schema.get("properties") {
                None => {}
                Some(Value::Object(properties)) => {
                    for (field, property) in properties {
                        if let Some(default) = property.get("default") {
                            defaults.insert(field.clone(), default.clone());
                        }
                    }
                }
                Some(_) => problems.push(Problem::new(
                    &join(&configuration, "properties"),
                    "expected an object of JSON Schemas",
                )),
            }
        }
        _ => problems.push(Problem::new(
            &configuration,
            "expected a JSON Schema of an object (`\"type\": \"object\"`)",
        )),
    }

    let auth_path = join(path, "auth");
    let mut entries = Vec::new();
    for (place, key, map) in [
        (AuthPlace::Header, "headers", spec.auth.headers.as_ref()),
        (AuthPlace::Query, "qs", spec.auth.qs.as_ref()),
    ] {
        for (name, value) in map.into_iter().flatten() {
            let at = join(&join(&auth_path, key), name);
            let Some(source) = value.as_str() else {
                problems.push(Problem::new(&at, "expected an IML string"));
                continue;
            };
            if place == AuthPlace::Header
                && reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
            {
                problems.push(Problem::new(&at, "not a valid header name"));
            }
            if let Some(expr) = Expr::compile(source, &at, problems) {
                entries.push((place, name.clone(), expr));
            }
        }
    }
    let is_authorization = |e: &(AuthPlace, String, Expr)| {
        e.0 == AuthPlace::Header && e.1.eq_ignore_ascii_case("authorization")
    };
    let fits = match spec.kind {
        ConnectionKind::OAuth2 | ConnectionKind::ServiceAccount if !entries.is_empty() => Err(
            "an oauth2 or service_account connection sends its access token as the bearer \
             credential: leave `auth` out",
        ),
        _ if entries.len() > 1 => {
            Err("at most one header or query parameter: the transport applies one credential")
        }
        ConnectionKind::Bearer | ConnectionKind::Basic
            if !entries.first().is_some_and(is_authorization) =>
        {
            Err("a bearer or basic connection authenticates with `headers.Authorization`")
        }
        ConnectionKind::ApiKey if entries.is_empty() => {
            Err("an api_key connection needs one header or query parameter")
        }
        _ => Ok(()),
    };
    if let Err(reason) = fits {
        problems.push(Problem::new(&auth_path, reason));
    }
    let provider = spec
        .provider
        .as_deref()
        .map(str::trim)
        .map(str::to_lowercase);
    match (spec.kind, &provider) {
        (ConnectionKind::OAuth2, None) => problems.push(Problem::new(
            &join(path, "provider"),
            "an oauth2 connection type names its OAuth provider (`google`, `microsoft`, \
             `slack`, … or `oauth2`)",
        )),
        (ConnectionKind::OAuth2 | ConnectionKind::ServiceAccount, Some(p))
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            problems.push(Problem::new(
                &join(path, "provider"),
                "expected a provider name: letters, digits and underscores",
            ))
        }
        (ConnectionKind::OAuth2 | ConnectionKind::ServiceAccount, _) => {}
        (_, Some(_)) => problems.push(Problem::new(
            &join(path, "provider"),
            "only oauth2 and service_account connection types have a provider",
        )),
        (_, None) => {}
    }
    if !spec.scopes.is_empty() && !spec.kind.is_token_grant() {
        problems.push(Problem::new(
            &join(path, "scopes"),
            "only oauth2 and service_account connection types have scopes",
        ));
    }
    check_scopes(&spec.scopes, &join(path, "scopes"), problems);
    CompiledConnection {
        name: spec.name.clone(),
        kind: spec.kind,
        provider: provider.or_else(|| {
            (spec.kind == ConnectionKind::ServiceAccount)
                .then(|| "google_service_account".to_string())
        }),
        scopes: spec.scopes.clone(),
        auth: entries.into_iter().next(),
        test: spec
            .test
            .as_ref()
            .map(|t| compile_request(t, &join(path, "test"), problems)),
        defaults,
    }
}

/// Each scope is one non-empty word (no spaces: providers separate scopes with them).
fn check_scopes(scopes: &[String], path: &str, problems: &mut Vec<Problem>) {
    for (i, scope) in scopes.iter().enumerate() {
        if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c == ',') {
            problems.push(Problem::new(
                &format!("{path}[{i}]"),
                "a scope is one word without spaces or commas",
            ));
        }
    }
}

fn compile_module(
    definition: &AppDefinition,
    name: &str,
    spec: &ModuleSpec,
    path: &str,
    problems: &mut Vec<Problem>,
) -> CompiledModule {
    let accepted: Vec<usize> = spec
        .connection
        .iter()
        .flat_map(|c| c.split(','))
        .filter_map(|c| {
            let c = c.trim();
            let found = definition.connections.iter().position(|t| t.name == c);
            if found.is_none() {
                problems.push(Problem::new(
                    &join(path, "connection"),
                    format!("no connection type named `{c}` in `connections`"),
                ));
            }
            found
        })
        .collect();
    let connection = accepted.first().copied();
    check_scopes(&spec.scopes, &join(path, "scopes"), problems);
    let mut scopes = connection
        .map(|i| definition.connections[i].scopes.clone())
        .unwrap_or_default();
    if !spec.scopes.is_empty() {
        if !connection.is_some_and(|i| definition.connections[i].kind.is_token_grant()) {
            problems.push(Problem::new(
                &join(path, "scopes"),
                "scopes are for modules whose connection type is oauth2 or service_account",
            ));
        }
        for scope in &spec.scopes {
            if !scopes.contains(scope) {
                scopes.push(scope.clone());
            }
        }
    }
    let mut field_problems = Vec::new();
    let parameters = Field::compile_all(
        &spec.parameters,
        &join(path, "parameters"),
        &mut field_problems,
    );
    let expect = Field::compile_all(&spec.expect, &join(path, "expect"), &mut field_problems);
    problems.extend(field_problems.into_iter().map(|(p, m)| Problem::new(&p, m)));

    let mut requests: Vec<CompiledRequest> = match &spec.request {
        None => Vec::new(),
        Some(many) => {
            let slice = many.as_slice();
            let single = slice.len() == 1 && matches!(many, super::model::OneOrMany::One(_));
            slice
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let at = if single {
                        join(path, "request")
                    } else {
                        format!("{path}.request[{i}]")
                    };
                    compile_request(r, &at, problems)
                })
                .collect()
        }
    };
    if let Some(last) = requests.last_mut() {
        if last.response.is_none() {
            last.response = Some(match &spec.response {
                Some(r) => compile_response(r, &join(path, "response"), problems),
                None => Default::default(),
            });
        } else if spec.response.is_some() {
            problems.push(Problem::new(
                &join(path, "response"),
                "the last request has its own `response`",
            ));
        }
        if last.pagination.is_none() {
            last.pagination = spec
                .pagination
                .as_ref()
                .map(|p| compile_pagination(p, &join(path, "pagination"), problems));
        } else if spec.pagination.is_some() {
            problems.push(Problem::new(
                &join(path, "pagination"),
                "the last request has its own `pagination`",
            ));
        }
    } else if spec.response.is_some() || spec.pagination.is_some() {
        problems.push(Problem::new(
            path,
            "`response` and `pagination` need a `request`",
        ));
    }
    for (i, request) in requests.iter().enumerate() {
        if i + 1 < requests.len() && request.pagination.is_some() {
            problems.push(Problem::new(
                &format!("{path}.request[{i}].pagination"),
                "only the last request pages",
            ));
        }
    }

    let has_trigger = requests
        .last()
        .and_then(|r| r.response.as_ref())
        .is_some_and(|r| r.trigger.is_some());
    match spec.kind {
        ModuleType::Trigger => {
            if requests.is_empty() {
                problems.push(Problem::new(
                    &join(path, "request"),
                    "a trigger needs a request",
                ));
            } else if !has_trigger {
                problems.push(Problem::new(
                    &join(path, "response.trigger"),
                    "a trigger needs `response.trigger` (each item's id, and date)",
                ));
            }
        }
        ModuleType::InstantTrigger => {
            if spec.webhook.is_none() {
                problems.push(Problem::new(
                    &join(path, "webhook"),
                    "an instant trigger needs `webhook`",
                ));
            }
            if !requests.is_empty() {
                problems.push(Problem::new(
                    &join(path, "request"),
                    "an instant trigger has no request: its bundles are the webhook's deliveries",
                ));
            }
        }
        ModuleType::Search | ModuleType::Action | ModuleType::Universal => {
            if requests.is_empty() {
                problems.push(Problem::new(
                    &join(path, "request"),
                    "this module type needs a request",
                ));
            }
            if has_trigger {
                problems.push(Problem::new(
                    &join(path, "response.trigger"),
                    "only triggers have `response.trigger`",
                ));
            }
        }
    }
    if spec.kind != ModuleType::InstantTrigger && spec.webhook.is_some() {
        problems.push(Problem::new(
            &join(path, "webhook"),
            "only instant triggers have `webhook`",
        ));
    }

    let webhook = spec.webhook.as_ref().map(|w| {
        let at = join(path, "webhook");
        CompiledWebhook {
            attach: w
                .attach
                .as_ref()
                .map(|r| compile_request(r, &join(&at, "attach"), problems)),
            detach: w
                .detach
                .as_ref()
                .map(|r| compile_request(r, &join(&at, "detach"), problems)),
            authenticate: w
                .authenticate
                .as_ref()
                .and_then(|a| Json::compile(a, &join(&at, "authenticate"), problems)),
            verification: w.verification.as_ref().and_then(|v| {
                let vat = join(&at, "verification");
                let condition = Json::compile(&v.condition, &join(&vat, "condition"), problems);
                let valid = v
                    .valid
                    .as_ref()
                    .and_then(|x| Json::compile(x, &join(&vat, "valid"), problems));
                let body = v
                    .respond
                    .body
                    .as_ref()
                    .and_then(|x| Json::compile(x, &join(&vat, "respond.body"), problems));
                let status = v.respond.status.unwrap_or(200);
                if !(200..=599).contains(&status) {
                    problems.push(Problem::new(
                        &join(&vat, "respond.status"),
                        "expected an HTTP status from 200 to 599",
                    ));
                }
                Some(CompiledVerification {
                    condition: condition?,
                    valid,
                    status,
                    body_type: v.respond.body_type.unwrap_or(RespondType::Json),
                    body,
                })
            }),
            delivery_id: w
                .delivery_id
                .as_ref()
                .and_then(|d| Expr::compile(d, &join(&at, "deliveryId"), problems)),
        }
    });

    CompiledModule {
        app: definition.name.clone(),
        name: name.to_string(),
        kind: spec.kind,
        connection,
        accepted,
        scopes,
        parameters,
        expect,
        requests,
        webhook,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        json!({
            "name": "demo",
            "version": "1.2.3",
            "title": "Demo",
            "base": {"baseUrl": "{{connection.baseUrl}}"},
            "connections": [{
                "name": "key", "kind": "api_key",
                "configuration": {"type": "object", "properties": {"key": {"type": "string"},
                    "baseUrl": {"type": "string", "default": "https://api.demo.test"}}},
                "auth": {"qs": {"api_key": "{{connection.key}}"}},
            }],
            "modules": {
                "GetThing": {
                    "label": "Get a thing", "type": "action", "connection": "key",
                    "expect": [{"name": "id", "type": "text", "required": true}],
                    "request": {"url": "/things/{{parameters.id}}"},
                    "response": {"output": "{{body.data}}"},
                }
            }
        })
    }

    fn load(v: Value) -> Result<App, LoadError> {
        parse_app("demo.json", &v.to_string())
    }

    #[test]
    fn per_item_and_per_emitted_requests_are_checked() {
        let mut v = minimal();
        v["modules"]["GetThing"]["response"] = json!({
            "each": {"url": "/things/{{item.id}}",
                     "pagination": {"qs": {"page": "2"}}}});
        let err = load(v).unwrap_err().to_string();
        assert!(
            err.contains("modules.GetThing.response.each: `each` needs `iterate`"),
            "{err}"
        );
        assert!(
            err.contains(
                "modules.GetThing.response.each.pagination: a request per item does not page"
            ),
            "{err}"
        );
        let mut v = minimal();
        v["modules"]["GetThing"]["type"] = json!("trigger");
        v["modules"]["GetThing"]["response"] = json!({
            "iterate": "{{body.data}}",
            "each": {"url": "/things/{{item.id}}", "qs": {"full": "{{item.id"}},
            "trigger": {"id": "{{item.id}}",
                        "emitted": {"url": "/things/{{item.id}}/seen", "method": "POST",
                                    "pagination": {"qs": {"page": "2"}}}}});
        let err = load(v).unwrap_err().to_string();
        assert!(
            err.contains("modules.GetThing.response.each.qs.full"),
            "{err}"
        );
        assert!(
            err.contains("modules.GetThing.response.trigger.emitted.pagination"),
            "{err}"
        );
    }

    #[test]
    fn a_minimal_app_loads() {
        let app = load(minimal()).unwrap();
        assert_eq!(app.name(), "demo");
        assert_eq!(app.module_types().collect::<Vec<_>>(), ["demo:GetThing"]);
        let connection = &app.connections[0];
        assert_eq!(connection.defaults["baseUrl"], "https://api.demo.test");
        assert_eq!(connection.auth.as_ref().unwrap().0, AuthPlace::Query);
        assert!(app.connection_type("key").is_some());
        let module = &app.modules["GetThing"];
        assert!(
            module.requests[0]
                .response
                .as_ref()
                .unwrap()
                .output
                .is_some()
        );
    }

    #[test]
    fn shape_errors_name_the_file_and_path() {
        let mut v = minimal();
        v["modules"]["GetThing"]["request"]["methd"] = json!("GET");
        let err = load(v).unwrap_err();
        assert_eq!(err.file, "demo.json");
        assert_eq!(err.problems[0].path, "modules.GetThing.request.methd");
        assert!(
            err.problems[0].message.contains("unknown field `methd`"),
            "{err}"
        );
        assert!(!err.problems[0].message.contains("line"), "{err}");
        let shown = err.to_string();
        assert!(
            shown.starts_with(
                "app definition demo.json: modules.GetThing.request.methd: unknown field"
            ),
            "{shown}"
        );

        let err = parse_app("x.json", "{\"name\": ").unwrap_err();
        assert!(err.problems[0].message.contains("line 1"), "{err}");
    }

    #[test]
    fn iml_errors_name_the_path_and_column() {
        let mut v = minimal();
        v["modules"]["GetThing"]["request"]["url"] = json!("/things/{{parameters.id");
        v["modules"]["GetThing"]["response"]["output"] = json!({"a": ["{{lower(}}"]});
        let err = load(v).unwrap_err();
        let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "modules.GetThing.request.url",
                "modules.GetThing.response.output.a[0]"
            ]
        );
        assert!(
            err.problems
                .iter()
                .all(|p| p.message.starts_with("column ")),
            "{err}"
        );
    }

    #[test]
    fn semantic_problems_are_all_reported() {
        let mut v = minimal();
        v["name"] = json!("http");
        v["version"] = json!("1.0");
        v["connections"][0]["auth"] =
            json!({"headers": {"X-A": "{{connection.a}}"}, "qs": {"b": "{{connection.b}}"}});
        v["modules"]["GetThing"]["connection"] = json!("nope");
        v["modules"]["Watch"] = json!({"label": "W", "type": "trigger", "request": {"url": "/x"}});
        v["modules"]["Hook"] = json!({"label": "H", "type": "instant_trigger"});
        let err = load(v).unwrap_err();
        let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "name",
                "version",
                "connections[0].auth",
                "modules.GetThing.connection",
                "modules.Watch.response.trigger",
                "modules.Hook.webhook",
            ],
            "{err}"
        );
    }

    #[test]
    fn token_connection_types_are_checked_and_scopes_gathered() {
        let mut v = minimal();
        v["connections"] = json!([{"name": "google", "kind": "oauth2", "provider": "Google",
                                   "scopes": ["a"]}]);
        v["modules"]["GetThing"]["connection"] = json!("google");
        v["modules"]["GetThing"]["scopes"] = json!(["b", "a"]);
        v["modules"]["Other"] = json!({"label": "O", "type": "action", "connection": "google",
                                       "scopes": ["c"], "request": {"url": "/o"}});
        let app = load(v.clone()).unwrap();
        assert_eq!(app.scopes("google"), ["a", "b", "c"]);
        assert_eq!(app.provider("google"), Some("google"));
        assert_eq!(app.modules["GetThing"].scopes, ["a", "b"]);

        let mut bad = v.clone();
        bad["connections"][0]["auth"] = json!({"headers": {"Authorization": "Bearer x"}});
        bad["connections"][0]
            .as_object_mut()
            .unwrap()
            .remove("provider");
        bad["connections"][0]["scopes"] = json!(["two words"]);
        bad["connections"].as_array_mut().unwrap().push(
            json!({"name": "key", "kind": "bearer", "provider": "google", "scopes": ["a"],
                         "configuration": {"type": "object"},
                         "auth": {"headers": {"Authorization": "Bearer {{connection.t}}"}}}),
        );
        bad["modules"]["Other"]["connection"] = json!("key");
        let err = load(bad).unwrap_err();
        let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "connections[0].auth",
                "connections[0].provider",
                "connections[0].scopes[0]",
                "connections[1].provider",
                "connections[1].scopes",
                "modules.Other.scopes",
            ],
            "{err}"
        );
        let mut service = minimal();
        service["connections"] = json!([{"name": "robot", "kind": "service_account"}]);
        service["modules"]["GetThing"]["connection"] = json!("robot");
        let app = load(service).unwrap();
        assert_eq!(app.provider("robot"), Some("google_service_account"));
    }

    #[test]
    fn multiple_requests_take_the_module_response_last() {
        let mut v = minimal();
        v["modules"]["GetThing"]["request"] = json!([
            {"url": "/a", "method": "POST", "response": {"temp": {"id": "{{body.id}}"}}},
            {"url": "/things/{{temp.id}}"},
        ]);
        let app = load(v).unwrap();
        let module = &app.modules["GetThing"];
        assert_eq!(module.requests.len(), 2);
        assert!(module.requests[0].response.as_ref().unwrap().temp.is_some());
        assert!(
            module.requests[1]
                .response
                .as_ref()
                .unwrap()
                .output
                .is_some()
        );
        let mut v = minimal();
        v["modules"]["GetThing"]["request"] = json!([{"url": "/a"}, {"ur": "/b"}]);
        let err = load(v).unwrap_err();
        assert_eq!(err.problems[0].path, "modules.GetThing.request[1].ur");
    }

    #[test]
    fn the_embedded_apps_load() {
        let apps = Apps::embedded().unwrap();
        let chatbot = apps.get("chatbot").expect("chatbot is built in");
        assert_eq!(chatbot.file(), "modules/chatbot.json");
    }

    #[test]
    fn extra_files_add_apps_and_may_replace_embedded_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("demo.json"), minimal().to_string()).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not an app").unwrap();
        let apps = Apps::load(&[dir.path().to_path_buf()]).unwrap();
        assert!(apps.get("demo").is_some());
        assert!(apps.get("chatbot").is_some());

        let mut copy = minimal();
        copy["name"] = json!("chatbot");
        std::fs::write(dir.path().join("demo.json"), copy.to_string()).unwrap();
        let apps = Apps::load(&[dir.path().to_path_buf()]).unwrap();
        assert!(apps.get("chatbot").unwrap().file().ends_with("demo.json"));

        std::fs::write(dir.path().join("other.json"), copy.to_string()).unwrap();
        let err = Apps::load(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(err.file.ends_with("other.json"), "{err}");
        assert!(
            err.problems[0].message.contains("already defined by"),
            "{err}"
        );

        let err = Apps::load(&[dir.path().join("missing.json")]).unwrap_err();
        assert!(err.problems[0].message.starts_with("cannot read"), "{err}");
    }
}
