//! Stored connections: the credentials scenarios name in `parameters.__IMTCONN__`, kept in the
//! store sealed under a master key that is never in the database. [`Vault`] is the one way in
//! and out for a process: the CLI's `connections …` commands and the HTTP API create, list,
//! test, remove and re-key them through it, and it is the [`Connections`] source the runner and
//! `switchyard run` hand to modules (as a [`ConnectionsHandle`] in the execution's extensions).
//!
//! - `keys.rs`: the master key (`SWITCHYARD_MASTER_KEY`, or `master.key` in the data directory,
//!   created `0600`), its id, and the keyring of a rotation in progress;
//! - `seal.rs`: AES-256-GCM sealing with a random nonce and the row and key ids as associated
//!   data.
//!
//! Invariants:
//! - **Secrets stay sealed at rest and out of sight.** Only the sealed blob holds a
//!   connection's values; every listing is metadata only (name, id, app, kind, key id, times);
//!   errors name a connection by name or id and a field by its name, never a value.
//! - **Unsealed connections live in memory only, and briefly.** A connection is unsealed
//!   when a call asks for it ([`Connections::resolve`]) and kept in the vault's memory for
//!   [`OPENED_TTL`] (10 s) so that the next calls need no store round trip; every change made
//!   through the vault forgets them all. Nothing unsealed is ever written anywhere.
//! - **Kinds are universal.** A connection's `kind` is one of [`KINDS`] and carries the
//!   standard fields of its kind ([`validate`]); an app may add fields of its own, such as
//!   ChatBot's `baseUrl`.

pub mod integrations;
pub mod keys;
pub mod oauth;
pub mod seal;
pub mod tokens;

pub use integrations::{
    Context, Grant, Integration, IntegrationError, MissingSetting, load_files, load_files_with,
    oauth_env_var,
};
pub use oauth::{Connected, OAuthSettings};
pub use tokens::{AppAuthorization, NewServiceAccountConnection, NewTokenConnection, OAuthAppType};

pub use keys::{
    KEY_FILE_NAME, KeyError, KeySource, Keyring, MASTER_KEY_ENV, MasterKey, NEW_MASTER_KEY_ENV,
    NEXT_KEY_FILE_NAME, next_key_file,
};
pub use seal::SealError;

use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use serde_json::{Map, Value};

use crate::apps::defined::DefinedApps;
use crate::module::{Connection, Connections, ConnectionsHandle, ModuleError, Secrets};
use crate::store::{
    ConnectionRow, IntegrationLink, NewConnection, Resealed, SealedConnection, Store, StoreError,
    check_connection_name, is_make_id, new_id,
};

/// The universal connection kinds.
pub const KINDS: &[&str] = &["api_key", "bearer", "basic", "secret"];
/// The optional field every kind may carry: the base URL of the app's API.
pub const BASE_URL_FIELD: &str = "baseUrl";
/// Where an `api_key` connection puts its key.
pub const PLACEMENTS: &[&str] = &["header", "query"];
/// The largest connection, its values written as JSON, in bytes.
const MAX_VALUES_BYTES: usize = 32 * 1024;
/// Connection ids an error lists before saying "and N more".
const IDS_SHOWN: usize = 10;

/// One problem with a connection to store: the field path (`fields.token`, `kind` …) and what
/// was expected. Never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub path: String,
    pub reason: String,
}

impl FieldProblem {
    fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldProblem {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Why a connection operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The connection to store is invalid: every problem, each with its field path.
    #[error("{}", describe_problems(.0))]
    Invalid(Vec<FieldProblem>),
    /// Not found, a duplicate name (`Conflict`), a refused value, or the database failing.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored connection's sealed values do not open.
    #[error(transparent)]
    Sealed(#[from] SealError),
    /// A stored connection is sealed under a key this process does not have.
    #[error(
        "{count} stored connection(s) ({ids}) are sealed under master key id(s) {sealed_with}, \
         but this process has master key id(s) {have} (from {source_name}); start it with the \
         master key they were sealed with ({MASTER_KEY_ENV}, --master-key-file, or the key file \
         {KEY_FILE_NAME} of the data directory where they were stored)"
    )]
    WrongKey {
        count: usize,
        ids: String,
        sealed_with: String,
        have: String,
        source_name: String,
    },
    /// The unsealed values are not a JSON object (written by something else than this layer).
    #[error("the values of connection {id} are unreadable: {reason}")]
    Unreadable { id: String, reason: String },
    /// The connection's app has no test request this process can run.
    #[error("connection \"{name}\" opens with the master key, but cannot be tested: {reason}")]
    TestUnavailable { name: String, reason: String },
    /// The connection's app answered its test request with a failure.
    #[error("connection \"{name}\" failed its test: {reason}")]
    TestFailed { name: String, reason: String },
    /// The master key could not be had.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A key rotation cannot go on as asked.
    #[error("{0}")]
    Rotation(String),
    /// No integration has this alias.
    #[error("there is no integration \"{alias}\" (declare it in an --integrations file)")]
    UnknownIntegration { alias: String },
    /// An integration's flow failed or does not apply.
    #[error("integration \"{alias}\": {reason}")]
    OAuth { alias: String, reason: String },
    /// A callback or link that cannot be trusted (unknown, replayed or expired `state`, a
    /// link whose signature does not match). Nothing was stored.
    #[error("refused: {0}")]
    Csrf(String),
}

fn describe_problems(problems: &[FieldProblem]) -> String {
    let mut text = problems
        .iter()
        .map(|p| format!("{}: {}", p.path, p.reason))
        .collect::<Vec<_>>()
        .join("; ");
    if text.is_empty() {
        text.push_str("the connection is invalid");
    }
    text
}

impl ConnectionError {
    /// The error as a module sees it when resolving `reference`: an unknown connection or one
    /// that does not open is a configuration problem (retrying cannot help); a database failure
    /// is a runtime error.
    pub fn to_module_error(&self, reference: &str) -> ModuleError {
        match self {
            ConnectionError::Store(e) if e.is_not_found() => ModuleError::config(format!(
                "connection \"{reference}\" not found: store it with `switchyard connections \
                 add` (the reference is a connection's name or id)"
            )),
            ConnectionError::Store(StoreError::InvalidInput { .. }) => ModuleError::config(
                format!("connection \"{reference}\" not found (not a valid name or id)"),
            ),
            ConnectionError::Store(e) => {
                ModuleError::runtime(format!("connection \"{reference}\" could not be read: {e}"))
            }
            ConnectionError::OAuth { .. } => ModuleError::new(
                crate::module::ErrorKind::InvalidAccessTokenError,
                self.to_string(),
            ),
            other => ModuleError::config(other.to_string()),
        }
    }
}

/// A new connection's row with its values still in the clear ([`Vault::insert_sealed`]).
pub(crate) struct Unsealed<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub app: &'a str,
    pub kind: &'a str,
    pub fields: &'a Map<String, Value>,
    pub integration: Option<&'a IntegrationLink>,
    pub expires_at: Option<i64>,
}

/// The id of a new connection: Make's numeric id when one is given (so exports naming the
/// connection by number find it), else a new one.
pub(crate) fn connection_id(requested: Option<&str>) -> Result<String, ConnectionError> {
    match requested {
        Some(id) if is_make_id(id) => Ok(id.to_string()),
        Some(_) => Err(ConnectionError::Invalid(vec![FieldProblem::new(
            "id",
            "must be Make's connection id: a positive whole number of at most 18 digits",
        )])),
        None => Ok(new_id()),
    }
}

/// A connection to store, as the CLI and the API receive it.
#[derive(Debug, Clone, Default)]
pub struct NewConnectionInput {
    /// Make's numeric id of the connection (`connections add --id`), so an export's
    /// `"__IMTCONN__": 33477` finds it; a new id when absent.
    pub id: Option<String>,
    pub name: String,
    pub app: String,
    /// One of [`KINDS`]; when absent, inferred from the standard fields given.
    pub kind: Option<String>,
    pub fields: Map<String, Value>,
    /// Run the connection type's test request first and refuse the connection when it fails
    /// (`connections add` without `--no-test`, the API, the console's form); types without a
    /// test request are stored as they are.
    pub test: bool,
}

/// A connection type an app declares, for forms that create connections of it (the
/// console's connect page): its `configuration` JSON Schema and the universal kind to store.
#[derive(Debug, Clone)]
pub struct ConnectionTypeInfo {
    pub app: String,
    pub name: String,
    pub label: Option<String>,
    /// One of [`KINDS`].
    pub kind: &'static str,
    pub configuration: Value,
    /// Where the type's `auth` puts the credential: `("header", name)` or `("query", name)`;
    /// `None` when its requests carry none (a `secret` read by templates only).
    pub credential_place: Option<(&'static str, String)>,
}

/// The result of a connection's test.
#[derive(Debug, Clone)]
pub struct TestReport {
    pub connection: ConnectionRow,
    /// What the test found, in words (never a value of the connection).
    pub detail: String,
}

/// The result of a key rotation.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// Connections re-sealed under the new key.
    pub resealed: usize,
    pub old_key_id: String,
    pub new_key_id: String,
    /// Where the new key now is (the key file, or the environment the caller must update).
    pub source: KeySource,
}

/// Checks a connection to store by its kind's rules and returns its kind and fields as they
/// will be sealed (an `api_key`'s placement written out). Every problem is reported, each with
/// its path.
pub fn validate(
    input: &NewConnectionInput,
) -> Result<(String, Map<String, Value>), Vec<FieldProblem>> {
    validate_as(input, true)
}

/// [`validate`]; with `standard_fields` false the kind's standard fields (a basic
/// connection's `username` …) are not required, for a connection of an app's own type whose
/// `configuration` schema names its fields (Twilio's `accountSid` and `authToken`, its `auth`
/// template building the credential) and is checked instead ([`check_app_fields`]).
pub fn validate_as(
    input: &NewConnectionInput,
    standard_fields: bool,
) -> Result<(String, Map<String, Value>), Vec<FieldProblem>> {
    let mut problems = Vec::new();
    if let Err(e) = check_connection_name(&input.name) {
        problems.push(FieldProblem::new("name", store_reason(&e)));
    }
    let app_ok = !input.app.is_empty()
        && input.app.len() <= 100
        && input
            .app
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'#'));
    if !app_ok {
        problems.push(FieldProblem::new(
            "app",
            "must be an app name: 1 to 100 letters, digits, '-', '_' or '#'",
        ));
    }
    let mut fields = input.fields.clone();
    for (name, value) in &fields {
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            problems.push(FieldProblem::new(
                "fields",
                "field names must be 1 to 100 characters without control characters",
            ));
        } else if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
            problems.push(FieldProblem::new(
                format!("fields.{name}"),
                "must be text, a number or true/false",
            ));
        }
    }
    let kind = match &input.kind {
        Some(kind) if KINDS.contains(&kind.as_str()) => Some(kind.clone()),
        Some(_) => {
            problems.push(FieldProblem::new(
                "kind",
                format!("must be one of {}", KINDS.join(", ")),
            ));
            None
        }
        None => match ["token", "username", "key", "value"]
            .iter()
            .position(|f| fields.contains_key(*f))
        {
            Some(i) => Some(["bearer", "basic", "api_key", "secret"][i].to_string()),
            None => {
                problems.push(FieldProblem::new(
                    "kind",
                    format!(
                        "is required when no standard field (token, username, key, value) is \
                         given: one of {}",
                        KINDS.join(", ")
                    ),
                ));
                None
            }
        },
    };
    let text = |fields: &Map<String, Value>, name: &str| match fields.get(name) {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        None => Ok(None),
        Some(_) => Err(FieldProblem::new(format!("fields.{name}"), "must be text")),
    };
    let mut required =
        |fields: &Map<String, Value>, name: &str, allow_empty: bool| match text(fields, name) {
            Ok(Some(s)) if allow_empty || !s.is_empty() => {}
            Ok(Some(_)) => problems.push(FieldProblem::new(
                format!("fields.{name}"),
                "must not be empty",
            )),
            Ok(None) => problems.push(FieldProblem::new(
                format!("fields.{name}"),
                format!(
                    "is required for a {} connection",
                    kind.as_deref().unwrap_or("")
                ),
            )),
            Err(p) => problems.push(p),
        };
    match kind.as_deref().filter(|_| standard_fields) {
        Some("bearer") => required(&fields, "token", false),
        Some("basic") => {
            required(&fields, "username", false);
            // Some APIs take a key as the user name and no password.
            required(&fields, "password", true);
        }
        Some("secret") => required(&fields, "value", false),
        Some("api_key") => {
            required(&fields, "key", false);
            required(&fields, "name", false);
            let placement = match text(&fields, "placement") {
                Ok(None) => Some("header".to_string()),
                Ok(Some(p)) if PLACEMENTS.contains(&p.as_str()) => Some(p),
                Ok(Some(_)) | Err(_) => {
                    problems.push(FieldProblem::new(
                        "fields.placement",
                        format!("must be one of {}", PLACEMENTS.join(", ")),
                    ));
                    None
                }
            };
            if let (Some(placement), Ok(Some(name))) = (&placement, text(&fields, "name"))
                && placement == "header"
                && !name.is_empty()
                && reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
            {
                problems.push(FieldProblem::new(
                    "fields.name",
                    format!("'{name}' is not a valid HTTP header name"),
                ));
            }
            if let Some(placement) = placement {
                fields.insert("placement".into(), Value::String(placement));
            }
        }
        _ => {}
    }
    match text(&fields, BASE_URL_FIELD) {
        Ok(Some(url)) => {
            let valid = reqwest::Url::parse(&url).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some_and(|h| !h.is_empty())
            });
            if !valid {
                problems.push(FieldProblem::new(
                    format!("fields.{BASE_URL_FIELD}"),
                    "must be an http:// or https:// URL with a host",
                ));
            }
        }
        Ok(None) => {}
        Err(p) => problems.push(p),
    }
    if serde_json::to_vec(&fields).map_or(0, |v| v.len()) > MAX_VALUES_BYTES {
        problems.push(FieldProblem::new(
            "fields",
            format!("take more than {MAX_VALUES_BYTES} bytes as JSON"),
        ));
    }
    match kind {
        Some(kind) if problems.is_empty() => Ok((kind, fields)),
        _ => Err(problems),
    }
}

/// The reason of a store refusal, without its "invalid X:" prefix.
fn store_reason(e: &StoreError) -> String {
    match e {
        StoreError::InvalidInput { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Checks `fields` against the connection type `kind` (its name, or its universal kind) of
/// `app` as `apps` defines it: the type must exist and the fields must match its
/// `configuration` JSON Schema (checked with the `jsonschema` crate). Each problem names the
/// field (`fields.baseUrl`), never its value. The built-in `http` app has no definition: its
/// connections are checked by their kind's rules alone ([`validate`]).
pub fn check_app_fields(
    apps: &DefinedApps,
    app: &str,
    kind: &str,
    fields: &Map<String, Value>,
) -> Vec<FieldProblem> {
    if app == "http" {
        return Vec::new();
    }
    if apps.app(app).is_none() {
        return vec![FieldProblem::new(
            "app",
            format!("no app named \"{app}\" is defined (see `modules/`)"),
        )];
    }
    let Some(connection_type) = apps.connection_type(app, kind) else {
        return vec![FieldProblem::new(
            "kind",
            format!("the {app} app has no connection type \"{kind}\""),
        )];
    };
    let validator = match jsonschema::validator_for(&connection_type.configuration) {
        Ok(v) => v,
        Err(e) => {
            return vec![FieldProblem::new(
                "app",
                format!("the {app} app's connection schema is invalid: {e}"),
            )];
        }
    };
    let instance = Value::Object(fields.clone());
    validator
        .iter_errors(&instance)
        .map(|error| {
            let pointer = error.instance_path().to_string();
            let field = pointer.trim_start_matches('/').replace('/', ".");
            let path = if field.is_empty() {
                "fields".to_string()
            } else {
                format!("fields.{field}")
            };
            // The message of `jsonschema` quotes the value: say what was expected instead.
            FieldProblem::new(path, schema_expectation(&error))
        })
        .collect()
}

/// What a schema error expected, without the value that failed it.
fn schema_expectation(error: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    match error.kind() {
        K::Required { property } => format!("{property} is required"),
        K::AdditionalProperties { unexpected } => {
            format!("unknown field(s): {}", unexpected.join(", "))
        }
        K::Type { kind } => format!("must be of type {kind:?}"),
        K::MinLength { limit } => format!("must be at least {limit} character(s) long"),
        K::MaxLength { limit } => format!("must be at most {limit} characters long"),
        K::Pattern { pattern } => format!("must match the pattern {pattern}"),
        K::Format { format } => format!("must be a valid {format}"),
        K::Enum { options } => format!("must be one of {options}"),
        _ => "does not match the connection type's schema".to_string(),
    }
}

/// Where an app's `auth` puts its one credential entry (a header, else a query parameter).
fn credential_place(
    auth: &crate::apps::defined::model::AuthSpec,
) -> Option<(&'static str, String)> {
    let first = |entries: &Option<Map<String, Value>>| {
        entries.as_ref().and_then(|m| m.keys().next().cloned())
    };
    first(&auth.headers)
        .map(|name| ("header", name))
        .or_else(|| first(&auth.qs).map(|name| ("query", name)))
}

/// The stored connections of a process, over its store and master keys.
pub struct Vault {
    store: Store,
    keys: RwLock<Keyring>,
    /// The apps defined as data: their connection types check new connections and test them.
    apps: Option<Arc<DefinedApps>>,
    /// The declared integrations and their grants (`serve --integrations`).
    oauth: Option<Arc<oauth::OAuth>>,
    /// Connections opened recently, by the reference they were asked for: a module call would
    /// otherwise read and unseal its connection every time (a store round trip each). Cleared
    /// by every change made through this vault; a change made by another process is seen
    /// within [`OPENED_TTL`].
    opened: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Connection)>>,
    /// The bot's token references (`bot.tokens`), read at most once per [`OPENED_TTL`] (every
    /// execution asks for them); cleared with `opened`.
    bot_tokens: std::sync::Mutex<Option<(std::time::Instant, Map<String, Value>)>>,
}

/// How long an opened connection is reused.
pub const OPENED_TTL: std::time::Duration = std::time::Duration::from_secs(10);

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("store", &self.store)
            .field("keys", &self.keyring().ids())
            .finish()
    }
}

impl Vault {
    pub fn new(store: Store, keys: Keyring) -> Vault {
        Vault {
            store,
            keys: RwLock::new(keys),
            apps: None,
            oauth: None,
            opened: Default::default(),
            bot_tokens: Default::default(),
        }
    }

    /// The same vault with integrations: OAuth2 flows, refresh, secrets, service accounts.
    pub fn with_integrations(mut self, settings: OAuthSettings) -> Result<Vault, ConnectionError> {
        self.oauth = Some(Arc::new(oauth::OAuth::new(settings)?));
        Ok(self)
    }

    /// The same vault checking and testing connections with the connection types of `apps`.
    pub fn with_apps(mut self, apps: Arc<DefinedApps>) -> Vault {
        self.apps = Some(apps);
        self
    }

    /// The connection types of the apps this vault checks connections with, by app.
    pub fn connection_types(&self) -> Vec<ConnectionTypeInfo> {
        let Some(apps) = &self.apps else {
            return Vec::new();
        };
        apps.apps()
            .flat_map(|app| {
                // Token types are connected through their integration, not typed in a form.
                app.connection_types()
                    .iter()
                    .filter(|t| !t.kind.is_token_grant())
                    .map(|t| ConnectionTypeInfo {
                        app: app.name().to_string(),
                        name: t.name.clone(),
                        label: t.label.clone(),
                        kind: t.kind.name(),
                        configuration: t.configuration.clone(),
                        credential_place: credential_place(&t.auth),
                    })
            })
            .collect()
    }

    /// This vault as the connections handle of an execution's extensions.
    pub fn handle(self: &Arc<Self>) -> ConnectionsHandle {
        self.clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The keys in use (a copy).
    pub fn keyring(&self) -> Keyring {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_keyring(&self, keyring: Keyring) {
        self.forget_opened();
        match self.keys.write() {
            Ok(mut keys) => *keys = keyring,
            Err(poisoned) => *poisoned.into_inner() = keyring,
        }
    }

    /// The key `key_id`; when this process does not have it and its keys come from a key file,
    /// the file is read again first (another process may have rotated it).
    fn key(&self, key_id: &str) -> Option<MasterKey> {
        let keyring = self.keyring();
        if let Some(key) = keyring.find(key_id) {
            return Some(key.clone());
        }
        let KeySource::File(path) = keyring.source() else {
            return None;
        };
        let reloaded = Keyring::load_key_file(path).ok()?;
        let key = reloaded.find(key_id).cloned();
        if key.is_some() {
            self.set_keyring(reloaded);
        }
        key
    }

    /// Checks that every stored connection is sealed under a key this process has; otherwise
    /// [`ConnectionError::WrongKey`] with their count and ids. Returns how many are stored.
    pub async fn check_keys(&self) -> Result<usize, ConnectionError> {
        let rows = self.store.list_connections().await?;
        let missing: Vec<&SealedConnection> = rows
            .iter()
            .filter(|c| self.key(&c.row.key_id).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(rows.len());
        }
        let mut ids: Vec<&str> = missing.iter().map(|c| c.row.id.as_str()).collect();
        let more = ids.len().saturating_sub(IDS_SHOWN);
        ids.truncate(IDS_SHOWN);
        let mut ids = ids.join(", ");
        if more > 0 {
            ids.push_str(&format!(" and {more} more"));
        }
        let mut sealed_with: Vec<&str> = missing.iter().map(|c| c.row.key_id.as_str()).collect();
        sealed_with.sort_unstable();
        sealed_with.dedup();
        let keyring = self.keyring();
        Err(ConnectionError::WrongKey {
            count: missing.len(),
            ids,
            sealed_with: sealed_with.join(", "),
            have: keyring.ids().join(", "),
            source_name: keyring.source().to_string(),
        })
    }

    /// Validates and stores a new connection, sealed under the current key.
    pub async fn create(
        &self,
        input: &NewConnectionInput,
    ) -> Result<ConnectionRow, ConnectionError> {
        let app_typed = self.apps.as_ref().is_some_and(|apps| {
            input.app != "http"
                && input
                    .kind
                    .as_deref()
                    .and_then(|kind| apps.connection_type(&input.app, kind))
                    .is_some_and(|t| t.configuration.get("properties").is_some())
        });
        let (kind, fields) = validate_as(input, !app_typed).map_err(ConnectionError::Invalid)?;
        if let Some(apps) = &self.apps {
            let problems = check_app_fields(apps, &input.app, &kind, &fields);
            if !problems.is_empty() {
                return Err(ConnectionError::Invalid(problems));
            }
        }
        let id = connection_id(input.id.as_deref())?;
        let has_test = self
            .apps
            .as_ref()
            .and_then(|apps| apps.connection_type(&input.app, &kind))
            .is_some_and(|t| t.test.is_some());
        if input.test && has_test {
            // A name already taken is refused before the provider is asked anything (the
            // insert below refuses it again, whatever happens in between).
            if self.store.get_connection(&input.name).await.is_ok() {
                return Err(StoreError::Conflict {
                    what: "connection",
                    reason: format!("a connection named \"{}\" already exists", input.name),
                }
                .into());
            }
            let candidate = Connection {
                id: id.clone(),
                name: input.name.clone(),
                app: input.app.clone(),
                kind: kind.clone(),
                fields: Secrets(fields.clone()),
            };
            self.run_app_test(&candidate).await?;
        }
        self.insert_sealed(Unsealed {
            id: &id,
            name: &input.name,
            app: &input.app,
            kind: &kind,
            fields: &fields,
            integration: None,
            expires_at: None,
        })
        .await
    }

    /// Seals a new connection's values under the current key (its id as associated data)
    /// and stores its row: the one place a connection is first written.
    pub(crate) async fn insert_sealed(
        &self,
        new: Unsealed<'_>,
    ) -> Result<ConnectionRow, ConnectionError> {
        let plaintext =
            serde_json::to_vec(new.fields).map_err(|e| ConnectionError::Unreadable {
                id: new.id.to_string(),
                reason: e.to_string(),
            })?;
        let key = self.keyring().current().clone();
        let sealed = seal::seal(&key, new.id, &plaintext)?;
        let row = self
            .store
            .insert_connection(NewConnection {
                id: new.id,
                name: new.name,
                app: new.app,
                kind: new.kind,
                key_id: key.id(),
                sealed: &sealed,
                integration: new.integration,
                expires_at: new.expires_at,
            })
            .await?;
        self.forget_opened();
        Ok(row)
    }

    /// Seals new values of the stored connection `id` under the current key and marks it
    /// connected: the one place a connection's values are replaced (new tokens from a
    /// callback or a refresh).
    pub(crate) async fn reseal(
        &self,
        id: &str,
        fields: &Map<String, Value>,
        expires_at: Option<i64>,
    ) -> Result<(), ConnectionError> {
        let plaintext = serde_json::to_vec(fields).map_err(|e| ConnectionError::Unreadable {
            id: id.to_string(),
            reason: e.to_string(),
        })?;
        let key = self.keyring().current().clone();
        let sealed = seal::seal(&key, id, &plaintext)?;
        self.store
            .update_connection_values(
                id,
                key.id(),
                &sealed,
                expires_at,
                crate::store::STATUS_CONNECTED,
            )
            .await?;
        self.forget_opened();
        Ok(())
    }

    /// Every stored connection, by name (metadata only).
    pub async fn list(&self) -> Result<Vec<ConnectionRow>, ConnectionError> {
        Ok(self
            .store
            .list_connections()
            .await?
            .into_iter()
            .map(|c| c.row)
            .collect())
    }

    /// The connection named or numbered `reference` (metadata only).
    pub async fn get(&self, reference: &str) -> Result<ConnectionRow, ConnectionError> {
        Ok(self.store.get_connection(reference).await?.row)
    }

    /// Deletes the connection named or numbered `reference`.
    pub async fn remove(&self, reference: &str) -> Result<ConnectionRow, ConnectionError> {
        let removed = self.store.delete_connection(reference).await;
        self.forget_opened();
        Ok(removed?)
    }

    /// The connection named or numbered `reference`, unsealed, for one use.
    pub async fn open(&self, reference: &str) -> Result<Connection, ConnectionError> {
        Ok(self.open_with_status(reference).await?.0)
    }

    /// [`Vault::open`], with the connection's status.
    pub async fn open_with_status(
        &self,
        reference: &str,
    ) -> Result<(Connection, String), ConnectionError> {
        let stored = self.store.get_connection(reference).await?;
        let fields = self.unseal(&stored)?;
        let row = stored.row;
        Ok((
            Connection {
                id: row.id,
                name: row.name,
                app: row.app,
                kind: row.kind,
                fields: Secrets(fields),
            },
            row.status,
        ))
    }

    /// The connection opened for `reference` within [`OPENED_TTL`], if any.
    fn recently_opened(&self, reference: &str) -> Option<Connection> {
        let opened = self.opened.lock().ok()?;
        let (at, connection) = opened.get(reference)?;
        (at.elapsed() < OPENED_TTL).then(|| connection.clone())
    }

    /// Forgets every opened connection (after a change to the stored ones).
    fn forget_opened(&self) {
        if let Ok(mut opened) = self.opened.lock() {
            opened.clear();
        }
        if let Ok(mut bot) = self.bot_tokens.lock() {
            *bot = None;
        }
    }

    fn unseal(&self, stored: &SealedConnection) -> Result<Map<String, Value>, ConnectionError> {
        let row = &stored.row;
        let Some(key) = self.key(&row.key_id) else {
            let keyring = self.keyring();
            return Err(ConnectionError::WrongKey {
                count: 1,
                ids: row.id.clone(),
                sealed_with: row.key_id.clone(),
                have: keyring.ids().join(", "),
                source_name: keyring.source().to_string(),
            });
        };
        let plaintext = seal::unseal(&key, &row.id, &stored.sealed)?;
        match serde_json::from_slice(&plaintext) {
            Ok(Value::Object(fields)) => Ok(fields),
            // serde_json's message could quote the text: say only what was wrong.
            _ => Err(ConnectionError::Unreadable {
                id: row.id.clone(),
                reason: "not a JSON object".into(),
            }),
        }
    }

    /// Runs the test request of `connection`'s connection type (the app definition's `test`,
    /// e.g. a `GET` of one user with a token) and says what it proved. The built-in `http`
    /// app's connections have no test request of their own.
    async fn run_app_test(&self, connection: &Connection) -> Result<String, ConnectionError> {
        let unavailable = |reason: String| ConnectionError::TestUnavailable {
            name: connection.name.clone(),
            reason,
        };
        if connection.app == "http" {
            return Err(unavailable(
                "the http app's connections have no test request (they are tried by the \
                 HTTP modules that use them)"
                    .into(),
            ));
        }
        let Some(apps) = &self.apps else {
            return Err(unavailable(format!(
                "the {} app's definition is not loaded in this command",
                connection.app
            )));
        };
        match apps.test_connection(connection).await {
            Ok(()) => Ok(format!(
                "the {} app's test request succeeded",
                connection.app
            )),
            Err(error) => Err(ConnectionError::TestFailed {
                name: connection.name.clone(),
                reason: format!("{}: {}", error.kind.name(), error.message),
            }),
        }
    }

    /// Unseals the connection named or numbered `reference` (proving the key and the blob) and
    /// runs its app's test request, or for an integration's own connection asks its provider
    /// ([`Vault::test_integration_connection`]).
    pub async fn test(&self, reference: &str) -> Result<TestReport, ConnectionError> {
        let (connection, status) = self.open_with_status(reference).await?;
        let row = self.get(&connection.id).await?;
        // An integration's own connection (the bot's, an end user's) has no app to define a
        // test request: its provider is asked instead. An app's connection runs its type's.
        let detail = match row
            .integration
            .as_ref()
            .filter(|link| link.context != tokens::CONTEXT_APP)
        {
            Some(link) => {
                self.test_integration_connection(connection.clone(), &status, &link.alias)
                    .await?
            }
            None => self.run_app_test(&connection).await?,
        };
        let row = self.get(&connection.id).await?;
        Ok(TestReport {
            connection: row,
            detail,
        })
    }

    /// Re-seals every stored connection under a new master key, in one transaction.
    ///
    /// With a key file: the new key is `new_key` or a generated one, written first to
    /// `master.key.next` (so both keys open every row whatever happens next), then the rows are
    /// re-sealed, then the file replaces `master.key`. A rotation interrupted before that last
    /// step is finished by running it again (with no new key, or the same one). With
    /// `SWITCHYARD_MASTER_KEY`, `new_key` is required and the caller must then put it in the
    /// environment of every process.
    pub async fn rotate_key(
        &self,
        new_key: Option<MasterKey>,
    ) -> Result<Rotation, ConnectionError> {
        let mut keyring = self.keyring();
        if let KeySource::File(path) = keyring.source() {
            // Another process may have changed the files since this one read them.
            keyring = Keyring::load_key_file(path)?;
        }
        let old_key_id = keyring.current().id().to_string();
        let (new_key, files) = match (keyring.source().clone(), keyring.next().cloned()) {
            (KeySource::Environment, _) => {
                let new_key = new_key.ok_or_else(|| {
                    ConnectionError::Rotation(format!(
                        "the master key comes from {MASTER_KEY_ENV}: give the new key with \
                         --new-key-file or {NEW_MASTER_KEY_ENV}, then set {MASTER_KEY_ENV} to it"
                    ))
                })?;
                (new_key, None)
            }
            (KeySource::File(path), Some(pending)) => {
                if new_key.as_ref().is_some_and(|k| k != &pending) {
                    return Err(ConnectionError::Rotation(format!(
                        "a rotation to master key {} was interrupted: run `connections \
                         rotate-key` without a new key to finish it first",
                        pending.id()
                    )));
                }
                let next = keys::next_key_file(&path);
                (pending, Some((path, next)))
            }
            (KeySource::File(path), None) => {
                let new_key = new_key.unwrap_or_else(MasterKey::generate);
                let next = keys::next_key_file(&path);
                new_key.write_new_file(&next)?;
                (new_key, Some((path, next)))
            }
        };
        if new_key.id() == old_key_id {
            return Err(ConnectionError::Rotation(
                "the new master key is the key in use".into(),
            ));
        }
        let during = keyring.clone();
        let resealed =
            self.store
                .reseal_connections(|stored| {
                    if stored.row.key_id == new_key.id() {
                        return Ok(None);
                    }
                    let key = during.find(&stored.row.key_id).ok_or_else(|| {
                        ConnectionError::WrongKey {
                            count: 1,
                            ids: stored.row.id.clone(),
                            sealed_with: stored.row.key_id.clone(),
                            have: during.ids().join(", "),
                            source_name: during.source().to_string(),
                        }
                    })?;
                    let plaintext = seal::unseal(key, &stored.row.id, &stored.sealed)?;
                    let sealed = seal::seal(&new_key, &stored.row.id, &plaintext)?;
                    Ok::<_, ConnectionError>(Some(Resealed {
                        key_id: new_key.id().to_string(),
                        sealed,
                    }))
                })
                .await??;
        let source = match files {
            Some((path, next)) => {
                std::fs::rename(&next, &path).map_err(|source| KeyError::Io {
                    action: "replace",
                    path: path.clone(),
                    source,
                })?;
                KeySource::File(path)
            }
            None => KeySource::Environment,
        };
        let new_key_id = new_key.id().to_string();
        self.set_keyring(Keyring::new(new_key, source.clone()));
        Ok(Rotation {
            resealed,
            old_key_id,
            new_key_id,
            source,
        })
    }
}

impl Connections for Vault {
    fn resolve<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<Connection, ModuleError>> {
        Box::pin(async move {
            if let Some(connection) = self.recently_opened(reference)
                && !oauth::is_expiring(&connection)
            {
                return Ok(connection);
            }
            let opened = match self.open_with_status(reference).await {
                // A client-credentials integration connects itself on first use.
                Err(ConnectionError::Store(e))
                    if e.is_not_found()
                        && self.integration(reference).is_ok_and(|i| {
                            matches!(i.grant, integrations::Grant::ClientCredentials(_))
                        }) =>
                {
                    self.connect_client_credentials(reference)
                        .await
                        .map_err(|e| e.to_module_error(reference))?;
                    self.open_with_status(reference).await
                }
                other => other,
            };
            let (connection, status) = opened.map_err(|e| e.to_module_error(reference))?;
            let connection = self.ready(connection, &status).await?;
            if let Ok(mut opened) = self.opened.lock() {
                if opened.len() >= 1000 {
                    opened.clear();
                }
                opened.insert(
                    reference.to_string(),
                    (std::time::Instant::now(), connection.clone()),
                );
            }
            Ok(connection)
        })
    }

    fn find<'a>(
        &'a self,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<Option<crate::module::connection::ConnectionInfo>, ModuleError>> {
        Box::pin(async move {
            let info = |row: ConnectionRow| crate::module::connection::ConnectionInfo {
                id: row.id,
                name: row.name,
                app: row.app,
                kind: row.kind,
            };
            match self.get(reference).await {
                Ok(row) => Ok(Some(info(row))),
                Err(ConnectionError::Store(e)) if e.is_not_found() => {
                    // A client-credentials integration connects itself on first use.
                    Ok(self.integration(reference).ok().and_then(|i| {
                        matches!(i.grant, integrations::Grant::ClientCredentials(_)).then(|| {
                            crate::module::connection::ConnectionInfo {
                                id: String::new(),
                                name: i.alias.clone(),
                                app: i.provider.clone(),
                                kind: oauth::KIND_OAUTH2.into(),
                            }
                        })
                    }))
                }
                Err(ConnectionError::Store(StoreError::InvalidInput { .. })) => Ok(None),
                Err(e) => Err(e.to_module_error(reference)),
            }
        })
    }

    fn refresh<'a>(
        &'a self,
        id: &'a str,
        stale: &'a str,
    ) -> BoxFuture<'a, Result<Connection, ModuleError>> {
        Box::pin(async move {
            let (connection, status) = self
                .open_with_status(id)
                .await
                .map_err(|e| e.to_module_error(id))?;
            if connection.kind != oauth::KIND_OAUTH2 {
                return Err(ModuleError::new(
                    crate::module::ErrorKind::InvalidAccessTokenError,
                    format!(
                        "connection \"{}\": the service refused its credentials",
                        connection.name
                    ),
                ));
            }
            if status == crate::store::STATUS_NEEDS_REAUTH {
                return self.ready(connection, &status).await;
            }
            self.refreshed(&connection.id, Some(stale)).await
        })
    }

    fn delete<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<bool, ModuleError>> {
        Box::pin(async move {
            match self.remove(reference).await {
                Ok(_) => Ok(true),
                Err(ConnectionError::Store(e)) if e.is_not_found() => Ok(false),
                Err(ConnectionError::Store(StoreError::InvalidInput { .. })) => Ok(false),
                Err(e) => Err(e.to_module_error(reference)),
            }
        })
    }

    fn describe<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<Value, ModuleError>> {
        Box::pin(async move {
            let (connection, _) = self
                .open_with_status(reference)
                .await
                .map_err(|e| e.to_module_error(reference))?;
            let row = self
                .get(&connection.id)
                .await
                .map_err(|e| e.to_module_error(reference))?;
            Ok(oauth::redacted_token(&row, &connection))
        })
    }

    fn oauth_link(&self, alias: &str, user: &str) -> Result<String, ModuleError> {
        Vault::oauth_link(self, alias, user).map_err(|e| e.to_module_error(alias))
    }

    fn token_references<'a>(
        &'a self,
        user: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Value, ModuleError>> {
        Box::pin(async move {
            // Most processes declare no integrations: nothing to read for every execution.
            if self.integrations().is_empty() {
                return Ok(serde_json::json!({"bot": {}, "user": {}}));
            }
            let failed = |e: ConnectionError| {
                ModuleError::runtime(format!("the token references cannot be read: {e}"))
            };
            let bot = self.bot_tokens().await.map_err(failed)?;
            let user = match user {
                Some(u) => self.user_tokens(u).await.map_err(failed)?,
                None => Map::new(),
            };
            Ok(serde_json::json!({"bot": bot, "user": user}))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(kind: Option<&str>, fields: Value) -> NewConnectionInput {
        NewConnectionInput {
            id: None,
            name: "bot".into(),
            app: "chatbot".into(),
            kind: kind.map(str::to_string),
            fields: fields.as_object().unwrap().clone(),
            test: false,
        }
    }

    fn paths(problems: Vec<FieldProblem>) -> Vec<String> {
        problems.into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn kinds_need_their_standard_fields() {
        let (kind, _) = validate(&input(
            None,
            json!({"token": "t", "baseUrl": "https://x.org"}),
        ))
        .unwrap();
        assert_eq!(kind, "bearer");
        let (kind, fields) = validate(&input(
            Some("api_key"),
            json!({"key": "k", "name": "X-Api-Key"}),
        ))
        .unwrap();
        assert_eq!(kind, "api_key");
        assert_eq!(
            fields["placement"], "header",
            "the default placement is written out"
        );
        let (kind, _) = validate(&input(None, json!({"username": "u", "password": ""}))).unwrap();
        assert_eq!(kind, "basic");

        assert_eq!(
            paths(validate(&input(Some("bearer"), json!({}))).unwrap_err()),
            ["fields.token"]
        );
        assert_eq!(
            paths(validate(&input(Some("basic"), json!({"username": 5}))).unwrap_err()),
            ["fields.username", "fields.password"]
        );
        assert_eq!(
            paths(
                validate(&input(
                    Some("api_key"),
                    json!({"key": "k", "name": "Bad Name", "placement": "body"})
                ))
                .unwrap_err()
            ),
            ["fields.placement"]
        );
        assert_eq!(
            paths(
                validate(&input(
                    Some("api_key"),
                    json!({"key": "k", "name": "Bad Name"})
                ))
                .unwrap_err()
            ),
            ["fields.name"]
        );
        assert_eq!(
            paths(validate(&input(Some("oauth"), json!({"token": "t"}))).unwrap_err()),
            ["kind"]
        );
        assert_eq!(
            paths(validate(&input(None, json!({"other": "x"}))).unwrap_err()),
            ["kind"]
        );
        assert_eq!(
            paths(
                validate(&input(
                    Some("secret"),
                    json!({"value": "v", "baseUrl": "ftp://x.org", "nested": {"a": 1}})
                ))
                .unwrap_err()
            ),
            ["fields.nested", "fields.baseUrl"]
        );
    }

    #[test]
    fn problems_never_quote_values() {
        let secret = "planted-secret-value";
        let problems = validate(&NewConnectionInput {
            id: None,
            name: String::new(),
            app: "bad app".into(),
            kind: Some("basic".into()),
            fields: json!({"username": "", "password": 1, "baseUrl": secret})
                .as_object()
                .unwrap()
                .clone(),
            test: false,
        })
        .unwrap_err();
        let text = ConnectionError::Invalid(problems).to_string();
        assert!(!text.contains(secret), "{text}");
        for path in [
            "name:",
            "app:",
            "fields.username:",
            "fields.password:",
            "fields.baseUrl:",
        ] {
            assert!(text.contains(path), "{path} in {text}");
        }
    }
}
