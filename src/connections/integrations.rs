//! Integrations files: the list a bot (or any of its skills) declares of the services it may
//! connect to, in the seeds' format (YAML or JSON) — `provider`, `alias`, `scope`,
//! `context: bot|user`, `description`, `title`, `icon`, and for `provider: oauth2` the `flow`,
//! `client_id`, `client_secret` and the provider's URLs, and Microsoft's `tenant`. Each entry is
//! read once into an [`Integration`] with its provider's preset (`src/connections/providers.json`:
//! URLs, `{tenant}`, required scopes, and the provider's quirks as [`ProviderQuirks`]) applied,
//! so the rest of the layer never looks at the file again.
//!
//! Invariants:
//! - Every problem names the file and the entry (`integrations.yaml: [2].client_id: …`); a
//!   client secret is never repeated.
//! - Aliases are unique across all files (skills gather into one list); a duplicate names
//!   both files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value};

/// The provider presets, embedded from `providers.json` beside this file.
const PRESETS_JSON: &str = include_str!("providers.json");

#[derive(Debug, Deserialize)]
struct Presets {
    providers: BTreeMap<String, Preset>,
    userinfo: BTreeMap<String, Vec<String>>,
}

/// One provider's preset as `providers.json` writes it (its `$comment` describes the fields).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Preset {
    grant: String,
    /// Where the facts come from (the provider's documentation).
    #[serde(default)]
    #[allow(dead_code)]
    source: Vec<String>,
    #[serde(default)]
    authorize_url: Option<String>,
    #[serde(default)]
    token_url: Option<String>,
    #[serde(default)]
    userinfo_url: Option<String>,
    #[serde(default)]
    authorize_params: BTreeMap<String, String>,
    #[serde(default)]
    userinfo: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    client_auth: ClientAuth,
    #[serde(default)]
    scope_separator: Option<String>,
    #[serde(default)]
    required_scopes: Vec<String>,
    #[serde(default)]
    user_scope_param: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    token_response: TokenResponseQuirks,
    #[serde(default)]
    exchange: Option<String>,
    #[serde(default)]
    userinfo_request: UserinfoRequest,
    /// `grant: app` (a studio provider): the app whose connection type holds its credentials.
    #[serde(default)]
    app: Option<String>,
}

static PRESETS: LazyLock<Presets> = LazyLock::new(|| {
    serde_json::from_str(PRESETS_JSON).expect("src/connections/providers.json is valid (tested)")
});

pub use crate::module::connection::TOKEN_INFO_FIELDS;

/// Who an integration's connection belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Connected once by the designer; every execution uses it (`bot.tokens.<alias>`).
    Bot,
    /// Connected by each end user through an OAuth link (`user.tokens.<alias>`).
    User,
}

impl Context {
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Bot => "bot",
            Context::User => "user",
        }
    }
}

/// How an integration obtains its token.
#[derive(Clone, PartialEq, Eq)]
pub enum Grant {
    /// Authorization code with PKCE and `state`, through `/oauth/start/{alias}`.
    AuthCode(OAuthEndpoints),
    /// Client credentials: re-requested whenever the token expires.
    ClientCredentials(OAuthEndpoints),
    /// A Google service account's JSON key, exchanged with a JWT-bearer grant.
    ServiceAccount,
    /// A value the designer types in (`provider: secret`, or any bot-level entry with
    /// `secret:`).
    Secret,
    /// A studio provider (`twilio`, `mailgun` …): a connection of the app's connection type,
    /// typed in on `/connect` and stored under the entry's alias.
    App { app: String },
    /// The built-in booking calendar (`provider: calendar`): declared, nothing to connect.
    Calendar,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Grant {
    pub fn name(&self) -> &'static str {
        match self {
            Grant::AuthCode(_) => "auth_code",
            Grant::ClientCredentials(_) => "client_credentials",
            Grant::ServiceAccount => "service_account",
            Grant::Secret => "secret",
            Grant::App { .. } => "app_connection",
            Grant::Calendar => "builtin",
        }
    }

    pub fn endpoints(&self) -> Option<&OAuthEndpoints> {
        match self {
            Grant::AuthCode(e) | Grant::ClientCredentials(e) => Some(e),
            _ => None,
        }
    }
}

/// An OAuth2 client and the provider's endpoints.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OAuthEndpoints {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub authorize_url: Option<String>,
    pub token_url: String,
    pub userinfo_url: Option<String>,
    /// Extra query parameters of the authorize URL (Google's `access_type=offline` …).
    pub authorize_params: BTreeMap<String, String>,
    /// How the provider departs from plain OAuth2 (its preset's data).
    pub quirks: ProviderQuirks,
}

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `Authorization: Basic base64(client_id:client_secret)` (RFC 6749 §2.3.1's preferred form).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

/// How the user's info is asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserinfoRequest {
    /// `GET` with the bearer token.
    #[default]
    Get,
    /// `POST` with the bearer token and no body (Dropbox's RPC endpoints).
    Post,
    /// An RFC 7662 introspection: `POST` of `client_id`, `client_secret` and `token`
    /// (HubSpot's v3 token metadata).
    Introspect,
}

/// Where a provider's token response departs from RFC 6749 §5.1.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenResponseQuirks {
    /// A body whose flag is `false` is an error even with HTTP 200 (Slack's `ok`).
    #[serde(default)]
    pub ok_flag: Option<String>,
    /// Where a `context: user` integration's token set is (Slack's `authed_user`).
    #[serde(default)]
    pub user_token_in: Option<String>,
    /// Where the user's info is when the provider has no userinfo endpoint (Notion's
    /// `owner.user`); a dotted path.
    #[serde(default)]
    pub userinfo_in: Option<String>,
    /// The provider's error codes → the RFC 6749 ones, so that a refused grant is known as
    /// such (Slack's `invalid_refresh_token` → `invalid_grant`).
    #[serde(default)]
    pub error_codes: BTreeMap<String, String>,
}

/// A provider's departures from plain OAuth2, read from its preset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderQuirks {
    pub client_auth: ClientAuth,
    /// How scopes are joined in the authorize URL (`" "`, or Facebook's and Slack's `","`).
    pub scope_separator: String,
    /// The authorize parameter a `context: user` integration's scopes go in (Slack's
    /// `user_scope`); `scope` otherwise.
    pub user_scope_param: Option<String>,
    pub token_response: TokenResponseQuirks,
    /// The grant type that swaps a short-lived token for a long-lived one, used right after
    /// the callback and instead of a refresh (Facebook's `fb_exchange_token`).
    pub exchange: Option<String>,
    pub userinfo_request: UserinfoRequest,
}

impl Default for ProviderQuirks {
    fn default() -> Self {
        ProviderQuirks {
            client_auth: ClientAuth::Basic,
            scope_separator: " ".into(),
            user_scope_param: None,
            token_response: TokenResponseQuirks::default(),
            exchange: None,
            userinfo_request: UserinfoRequest::Get,
        }
    }
}

/// One declared integration, checked and with its provider's preset applied.
#[derive(Debug, Clone)]
pub struct Integration {
    pub provider: String,
    pub alias: String,
    pub context: Context,
    /// The scope as written (Google separates by spaces, Facebook by commas).
    pub scope: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub icon: Option<String>,
    pub grant: Grant,
    /// Normalized token-info field → the provider's userinfo keys, first present wins.
    pub userinfo: BTreeMap<String, Vec<String>>,
    /// The file it was declared in.
    pub file: PathBuf,
    /// What the entry lacks before it can be connected (an OAuth client's credentials, a
    /// service account's scope): it loads, and says so on `/connect` and in
    /// `switchyard integrations check`.
    pub missing: Vec<MissingSetting>,
}

/// A setting an integration lacks, and how to supply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSetting {
    /// The entry's key (`client_id`).
    pub field: String,
    /// How to supply it, in words (the key in the file, or the environment variable).
    pub how: String,
    /// Whether connecting is refused without it (a client secret is not needed by every
    /// provider: a public client connects with PKCE alone).
    pub blocking: bool,
}

/// The environment variable that supplies `setting` (`CLIENT_ID`, `CLIENT_SECRET`) of the
/// integration `alias`: `SWITCHYARD_OAUTH_<ALIAS>_<SETTING>`, the alias upper-cased with `-`
/// as `_`.
pub fn oauth_env_var(alias: &str, setting: &str) -> String {
    format!(
        "SWITCHYARD_OAUTH_{}_{setting}",
        alias.to_ascii_uppercase().replace('-', "_")
    )
}

impl Integration {
    /// `Ok` when the integration can be connected; else why not, naming each missing setting
    /// and how to supply it (never a value).
    pub fn check_configured(&self) -> Result<(), String> {
        if !self.missing.iter().any(|m| m.blocking) {
            return Ok(());
        }
        let list: Vec<String> = self
            .missing
            .iter()
            .map(|m| format!("{} ({})", m.field, m.how))
            .collect();
        Err(format!(
            "is not configured yet: missing {}",
            list.join("; ")
        ))
    }

    /// The scopes, split as the provider writes them (spaces or commas).
    pub fn scopes(&self) -> Vec<String> {
        split_scopes(self.scope.as_deref().unwrap_or(""))
    }

    /// The authorize URL's scope parameter: its name (`scope`, or the preset's
    /// `user_scope_param` for a `context: user` integration) and the scopes joined by the
    /// provider's separator; `None` without scopes.
    pub fn scope_param(&self) -> Option<(String, String)> {
        let scopes = self.scopes();
        if scopes.is_empty() {
            return None;
        }
        let quirks = self
            .grant
            .endpoints()
            .map(|e| e.quirks.clone())
            .unwrap_or_default();
        let name = match (self.context, quirks.user_scope_param) {
            (Context::User, Some(param)) => param,
            _ => "scope".to_string(),
        };
        Some((name, scopes.join(&quirks.scope_separator)))
    }

    /// The normalized token info of a provider's userinfo answer: every field of
    /// [`TOKEN_INFO_FIELDS`], `null` when the provider said nothing of it; `urls` is an object.
    pub fn token_info(&self, userinfo: &Value) -> Map<String, Value> {
        let mut info = Map::new();
        for field in TOKEN_INFO_FIELDS {
            let keys = self.userinfo.get(*field).map(Vec::as_slice).unwrap_or(&[]);
            if *field == "urls" {
                let urls: Map<String, Value> = keys
                    .iter()
                    .filter_map(|k| {
                        let v = dotted(userinfo, k)?;
                        let text = v.as_str().filter(|s| !s.is_empty())?;
                        // Named by the last step that says what it is: `picture.data.url`
                        // is the picture, `user.image_192` the image.
                        let name = k
                            .rsplit('.')
                            .find(|step| !matches!(*step, "url" | "data"))
                            .unwrap_or(k);
                        Some((name.to_string(), text.into()))
                    })
                    .collect();
                info.insert("urls".into(), Value::Object(urls));
                continue;
            }
            let value = keys
                .iter()
                .find_map(|k| dotted(userinfo, k).filter(|v| !v.is_null()))
                .map(|v| match v {
                    Value::Object(o) => o.get("name").cloned().unwrap_or(Value::Null),
                    other => other.clone(),
                })
                .unwrap_or(Value::Null);
            info.insert((*field).into(), value);
        }
        info
    }
}

/// A scope as written, split on spaces and commas.
fn split_scopes(scope: &str) -> Vec<String> {
    scope
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `a.b.c` in `value`.
pub fn dotted<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

/// A problem with an integrations file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {path}: {reason}")]
pub struct IntegrationError {
    pub file: String,
    /// Where in the file: `[2].client_id`, or `(file)`.
    pub path: String,
    pub reason: String,
}

/// One entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    provider: String,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    icon: Option<String>,
    #[serde(default)]
    flow: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    authorize_url: Option<String>,
    #[serde(default)]
    token_url: Option<String>,
    #[serde(default)]
    userinfo_url: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    /// Seed 000: "for bot-level providers, secret can be specified to indicate this is a
    /// user-editable secret, not connected to an OAuth flow".
    #[serde(default)]
    secret: Option<Value>,
}

/// Every integration declared by `files`, gathered into one list (skills: each file adds its
/// entries). A duplicate alias is an error naming both files.
pub fn load_files(files: &[PathBuf]) -> Result<Vec<Integration>, IntegrationError> {
    load_files_with(files, &|name| std::env::var(name).ok())
}

/// A studio provider declared twice (skills that each need Twilio; seed 000 lists `twilio` in
/// its main example and again in its snippet): the bot has one such connection, so the
/// declarations are one integration, the first kept. Any other alias declared twice stays an
/// error.
fn same_declaration(a: &Integration, b: &Integration) -> bool {
    matches!(a.grant, Grant::App { .. } | Grant::Calendar)
        && a.provider == b.provider
        && a.grant == b.grant
}

/// [`load_files`] with `env` for the `SWITCHYARD_OAUTH_<ALIAS>_CLIENT_ID`/`_CLIENT_SECRET`
/// lookups.
pub fn load_files_with(
    files: &[PathBuf],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Integration>, IntegrationError> {
    let mut all: Vec<Integration> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| IntegrationError {
            file: file.display().to_string(),
            path: "(file)".into(),
            reason: format!("cannot be read: {e}"),
        })?;
        for integration in parse_with(file, &text, env)? {
            if let Some(first) = all.iter().find(|i| i.alias == integration.alias) {
                if same_declaration(first, &integration) {
                    continue;
                }
                return Err(IntegrationError {
                    file: file.display().to_string(),
                    path: format!("alias \"{}\"", integration.alias),
                    reason: format!(
                        "is declared twice: in {} and in {} (give one of them another alias)",
                        first.file.display(),
                        file.display()
                    ),
                });
            }
            all.push(integration);
        }
    }
    Ok(all)
}

/// The integrations of one file's text (YAML, of which JSON is a subset).
pub fn parse(file: &Path, text: &str) -> Result<Vec<Integration>, IntegrationError> {
    parse_with(file, text, &|name| std::env::var(name).ok())
}

/// Seed 001's copy of the list lost its dashes: one block of `key: value` lines in which keys
/// repeat. Each repeated key starts the next entry, so the text is read as the list it was
/// (with the dashes put back). `None` when the text is not such a block or no key repeats.
fn with_dashes_restored(text: &str) -> Option<String> {
    let indent_of = |line: &str| line.len() - line.trim_start().len();
    let meaningful = |line: &&str| {
        let t = line.trim_start();
        !t.is_empty() && !t.starts_with('#')
    };
    let top = text.lines().filter(meaningful).map(indent_of).min()?;
    let mut keys: Vec<String> = Vec::new();
    let mut repeated = false;
    let mut out = String::new();
    for line in text.lines() {
        if !meaningful(&line) {
            out.push_str(line);
        } else if indent_of(line) == top {
            let trimmed = line.trim_start();
            let (key, _) = trimmed.split_once(':')?;
            if trimmed.starts_with('-') || key.contains(' ') {
                return None;
            }
            let key = key.to_string();
            let starts_entry = keys.is_empty() || keys.contains(&key);
            if keys.contains(&key) {
                repeated = true;
                keys.clear();
            }
            keys.push(key);
            out.push_str(if starts_entry { "- " } else { "  " });
            out.push_str(trimmed);
        } else {
            out.push_str("  ");
            out.push_str(line);
        }
        out.push('\n');
    }
    repeated.then_some(out)
}

/// [`parse`] with `env` for the client credentials' environment variables.
pub fn parse_with(
    file: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Integration>, IntegrationError> {
    let problem = |path: String, reason: String| IntegrationError {
        file: file.display().to_string(),
        path,
        reason,
    };
    let as_list = |text: &str| -> Option<Value> {
        serde_yaml_ng::from_str::<Value>(text)
            .ok()
            .filter(Value::is_array)
    };
    let parsed = serde_yaml_ng::from_str::<Value>(text);
    let restored = match &parsed {
        Ok(Value::Array(_) | Value::Null) => None,
        _ => with_dashes_restored(text).and_then(|t| as_list(&t)),
    };
    let value: Value = match restored {
        Some(list) => Ok(list),
        None => parsed,
    }
    .map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("line {}, column {}", l.line(), l.column()))
            .unwrap_or_else(|| "(file)".into());
        // The parser's message may quote the text (a client secret): keep only its kind.
        let reason = e.to_string();
        let reason = reason.split(" at line").next().unwrap_or("").to_string();
        problem(at, format!("is not valid YAML or JSON: {reason}"))
    })?;
    let entries = match value {
        Value::Array(entries) => entries,
        Value::Null => Vec::new(),
        _ => {
            return Err(problem(
                "(file)".into(),
                "expected a list of integrations (`- provider: google …`)".into(),
            ));
        }
    };
    let mut out: Vec<Integration> = Vec::with_capacity(entries.len());
    for (i, raw) in entries.into_iter().enumerate() {
        let at = |field: &str| {
            if field.is_empty() {
                format!("[{i}]")
            } else {
                format!("[{i}].{field}")
            }
        };
        let entry: Entry = serde_json::from_value(raw).map_err(|e| {
            let reason = e.to_string();
            // `unknown field `x`, expected one of …` names keys, never values.
            problem(at(""), reason)
        })?;
        let integration = entry_to_integration(file, entry, &at, env)
            .map_err(|(path, reason)| problem(path, reason))?;
        if let Some(first) = out.iter().find(|o| o.alias == integration.alias) {
            if same_declaration(first, &integration) {
                continue;
            }
            return Err(problem(
                at("alias"),
                format!(
                    "\"{}\" is declared twice in this file (also by provider {})",
                    integration.alias, first.provider
                ),
            ));
        }
        out.push(integration);
    }
    Ok(out)
}

fn entry_to_integration(
    file: &Path,
    entry: Entry,
    at: &dyn Fn(&str) -> String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Integration, (String, String)> {
    let presets = &*PRESETS;
    let provider = entry.provider.trim().to_lowercase();
    // `secret:` makes any bot-level entry a typed-in secret, whatever its provider is called.
    let user_editable_secret = match &entry.secret {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !matches!(s.trim(), "" | "false" | "no"),
        Some(_) => {
            return Err((
                at("secret"),
                "must be true or false (true: a user-editable secret, not an OAuth flow)".into(),
            ));
        }
    };
    let preset_name = if user_editable_secret {
        "secret"
    } else {
        provider.as_str()
    };
    let Some(preset) = presets.providers.get(preset_name) else {
        return Err((
            at("provider"),
            format!(
                "\"{provider}\" is not a supported provider; expected one of: {}",
                presets
                    .providers
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let alias = entry.alias.clone().unwrap_or_else(|| provider.clone());
    let alias_ok = !alias.is_empty()
        && alias.len() <= 100
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !alias_ok {
        return Err((
            at("alias"),
            "must be 1 to 100 letters, digits, `_` or `-` (it names the token: bot.tokens.<alias>)"
                .into(),
        ));
    }
    let context = match entry.context.as_deref().map(str::trim) {
        Some("bot") => Context::Bot,
        Some("user") => Context::User,
        None => {
            return Err((at("context"), "is required: `bot` or `user`".into()));
        }
        Some(other) => {
            return Err((
                at("context"),
                format!("\"{other}\" is not one of `bot`, `user`"),
            ));
        }
    };
    let url = |field: &str, value: Option<String>| -> Result<Option<String>, (String, String)> {
        match value {
            None => Ok(None),
            Some(v) => match reqwest::Url::parse(&v) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(Some(v)),
                _ => Err((at(field), "must be an http(s) URL".into())),
            },
        }
    };
    let tenant = match (&preset.tenant, entry.tenant.as_deref().map(str::trim)) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err((
                at("tenant"),
                format!("provider {provider} has no tenant (only microsoft does)"),
            ));
        }
        (Some(default), None) => Some(default.clone()),
        (Some(_), Some(t)) => {
            // A tenant is a GUID, a domain or one of `common`, `organizations`, `consumers`:
            // it goes into a URL path, so nothing else is let through.
            let ok = !t.is_empty()
                && t.len() <= 100
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
            if !ok {
                return Err((
                    at("tenant"),
                    "must be a tenant ID or domain (letters, digits, `-`, `.`, `_`), or \
                     `common`, `organizations` or `consumers`"
                        .into(),
                ));
            }
            Some(t.to_string())
        }
    };
    // `{tenant}` in a preset's URL, or in an override of it, is the entry's tenant.
    let with_tenant = |u: Option<String>| match (&tenant, u) {
        (Some(t), Some(u)) => Some(u.replace("{tenant}", t)),
        (_, u) => u,
    };
    let authorize_url =
        with_tenant(url("authorize_url", entry.authorize_url)?.or(preset.authorize_url.clone()));
    let token_url = with_tenant(url("token_url", entry.token_url)?.or(preset.token_url.clone()));
    let userinfo_url =
        with_tenant(url("userinfo_url", entry.userinfo_url)?.or(preset.userinfo_url.clone()));
    let mut missing: Vec<MissingSetting> = Vec::new();
    let grant = match preset.grant.as_str() {
        "none" => {
            if context != Context::Bot {
                return Err((
                    at("context"),
                    "a secret is the bot's: use `context: bot`".into(),
                ));
            }
            Grant::Secret
        }
        "app" | "calendar" => {
            if context != Context::Bot {
                return Err((
                    at("context"),
                    format!(
                        "provider {provider} is a studio provider, configured once for the \
                         bot: use `context: bot`"
                    ),
                ));
            }
            match &preset.app {
                Some(app) if preset.grant == "app" => Grant::App { app: app.clone() },
                _ => Grant::Calendar,
            }
        }
        "jwt_bearer" => {
            if entry.scope.as_deref().is_none_or(|s| s.trim().is_empty()) {
                missing.push(MissingSetting {
                    field: "scope".into(),
                    how: "add `scope:` to the entry: the Google OAuth scopes its tokens are \
                          minted for (e.g. https://www.googleapis.com/auth/bigquery); without \
                          it only an app's own scopes are asked for"
                        .into(),
                    blocking: false,
                });
            }
            Grant::ServiceAccount
        }
        grant => {
            let flow = match (grant, entry.flow.as_deref().map(str::trim)) {
                (_, Some("auth_code")) => "auth_code",
                (_, Some("client_credentials")) => "client_credentials",
                (_, Some(other)) => {
                    return Err((
                        at("flow"),
                        format!("\"{other}\" is not one of `auth_code`, `client_credentials`"),
                    ));
                }
                ("auth_code", None) => "auth_code",
                _ => {
                    return Err((
                        at("flow"),
                        "is required for provider oauth2: `auth_code` or `client_credentials`"
                            .into(),
                    ));
                }
            };
            // The file's value, else the environment's (so the file can be committed
            // without secrets); neither is an error only when connecting.
            let setting = |written: Option<String>, name: &str| {
                written
                    .filter(|v| !v.trim().is_empty())
                    .or_else(|| env(&oauth_env_var(&alias, name)).filter(|v| !v.trim().is_empty()))
            };
            let client_id = setting(entry.client_id, "CLIENT_ID");
            let client_secret = setting(entry.client_secret, "CLIENT_SECRET");
            if client_id.is_none() {
                missing.push(MissingSetting {
                    field: "client_id".into(),
                    how: format!(
                        "add `client_id:` to the entry, or set {}",
                        oauth_env_var(&alias, "CLIENT_ID")
                    ),
                    blocking: true,
                });
            }
            if client_secret.is_none() {
                missing.push(MissingSetting {
                    field: "client_secret".into(),
                    how: format!(
                        "add `client_secret:` to the entry, or set {}{}",
                        oauth_env_var(&alias, "CLIENT_SECRET"),
                        if flow == "client_credentials" {
                            ""
                        } else {
                            " (not needed by a provider that accepts a public client with PKCE)"
                        }
                    ),
                    blocking: flow == "client_credentials",
                });
            }
            let Some(token_url) = token_url else {
                return Err((at("token_url"), "is required for provider oauth2".into()));
            };
            let endpoints = OAuthEndpoints {
                client_id: client_id.unwrap_or_default(),
                client_secret,
                authorize_url,
                token_url,
                userinfo_url,
                authorize_params: preset.authorize_params.clone(),
                quirks: ProviderQuirks {
                    client_auth: preset.client_auth,
                    scope_separator: preset.scope_separator.clone().unwrap_or_else(|| " ".into()),
                    user_scope_param: preset.user_scope_param.clone(),
                    token_response: preset.token_response.clone(),
                    exchange: preset.exchange.clone(),
                    userinfo_request: preset.userinfo_request,
                },
            };
            if flow == "auth_code" {
                if endpoints.authorize_url.is_none() {
                    return Err((
                        at("authorize_url"),
                        "is required for the auth_code flow".into(),
                    ));
                }
                Grant::AuthCode(endpoints)
            } else {
                if context == Context::User {
                    return Err((
                        at("flow"),
                        "client_credentials has no end user: use `context: bot`".into(),
                    ));
                }
                Grant::ClientCredentials(endpoints)
            }
        }
    };
    let mut userinfo = presets.userinfo.clone();
    userinfo.extend(preset.userinfo.clone());
    let separator = preset.scope_separator.as_deref().unwrap_or(" ");
    let mut scope = entry.scope.filter(|s| !s.trim().is_empty());
    let written = scope.as_deref().map(split_scopes).unwrap_or_default();
    for required in &preset.required_scopes {
        if !written.contains(required) {
            scope = Some(match scope {
                Some(s) => format!("{}{separator}{required}", s.trim_end()),
                None => required.clone(),
            });
        }
    }
    Ok(Integration {
        provider,
        alias,
        context,
        scope,
        title: entry.title,
        description: entry.description,
        icon: entry.icon,
        grant,
        userinfo,
        file: file.to_path_buf(),
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_text(text: &str) -> Result<Vec<Integration>, IntegrationError> {
        parse(Path::new("integrations.yaml"), text)
    }

    #[test]
    fn presets_parse() {
        assert!(PRESETS.providers.contains_key("google"));
        for p in PRESETS.providers.values() {
            assert!(
                [
                    "auth_code",
                    "from_flow",
                    "jwt_bearer",
                    "none",
                    "app",
                    "calendar"
                ]
                .contains(&p.grant.as_str())
            );
            assert_eq!(
                p.grant == "app",
                p.app.is_some(),
                "an app preset names its app"
            );
        }
    }

    #[test]
    fn the_seeds_list_loads() {
        let list = parse_text(
            "- provider: google\n  alias: google\n  scope: email profile\n  context: user\n  client_id: gid\n\
             - provider: facebook\n  context: user\n  scope: email,user_friends\n  client_id: fid\n\
             - provider: secret\n  alias: myapi_key\n  context: bot\n  description: API key\n\
             - context: bot\n  alias: discord1\n  provider: oauth2\n  icon: lightning\n  title: Discord\n  scope: identify\n  flow: client_credentials\n  client_id: xxx\n  client_secret: yyy\n  token_url: https://discord.com/api/oauth2/token\n\
             - provider: google_service_account\n  context: bot\n  alias: bigquery\n  scope: https://www.googleapis.com/auth/bigquery\n",
        )
        .unwrap();
        let aliases: Vec<&str> = list.iter().map(|i| i.alias.as_str()).collect();
        assert_eq!(
            aliases,
            ["google", "facebook", "myapi_key", "discord1", "bigquery"]
        );
        assert_eq!(list[1].scopes(), ["email", "user_friends"]);
        assert_eq!(list[0].scopes(), ["email", "profile"]);
        assert!(matches!(list[0].grant, Grant::AuthCode(_)));
        assert!(matches!(list[2].grant, Grant::Secret));
        assert!(matches!(list[3].grant, Grant::ClientCredentials(_)));
        assert!(matches!(list[4].grant, Grant::ServiceAccount));
        assert_eq!(list[3].title.as_deref(), Some("Discord"));
    }

    #[test]
    fn problems_name_the_entry_and_never_the_secret() {
        let e = parse_text("- provider: oauth2\n  context: bot\n  client_id: a\n  client_secret: hunter2\n  token_url: https://x/t\n").unwrap_err();
        assert_eq!(e.path, "[0].flow");
        assert!(!e.to_string().contains("hunter2"));
        let e = parse_text("- provider: myspace\n  context: bot\n").unwrap_err();
        assert_eq!(e.path, "[0].provider");
        assert!(e.reason.contains("google"), "{e}");
        // Without client credentials (seed 000's own example) the entry loads and says what
        // it lacks; connecting it is refused with the same words.
        let list = parse_text("- provider: google\n  context: user\n").unwrap();
        let missing: Vec<&str> = list[0].missing.iter().map(|m| m.field.as_str()).collect();
        assert_eq!(missing, ["client_id", "client_secret"]);
        let why = list[0].check_configured().unwrap_err();
        assert!(why.contains("SWITCHYARD_OAUTH_GOOGLE_CLIENT_ID"), "{why}");
        let e = parse_text("- provider: google\n  client_id: a\n").unwrap_err();
        assert_eq!(e.path, "[0].context");
        let list = parse_text("- provider: google_service_account\n  context: bot\n").unwrap();
        assert_eq!(list[0].missing[0].field, "scope");
        let e = parse_text("- provider: google\n  context: user\n  client_id: a\n  colour: red\n")
            .unwrap_err();
        assert!(e.reason.contains("colour"), "{e}");
        let e = parse_text("provider: google").unwrap_err();
        assert!(e.reason.contains("list"), "{e}");
        let e = parse_text("- provider: google\n  context: user\n  client_id: a\n- provider: google\n  context: bot\n  client_id: b\n").unwrap_err();
        assert_eq!(e.path, "[1].alias");
    }

    #[test]
    fn client_credentials_come_from_the_environment_by_alias() {
        let env = |name: &str| match name {
            "SWITCHYARD_OAUTH_MY_CRM_CLIENT_ID" => Some("from-env".to_string()),
            "SWITCHYARD_OAUTH_MY_CRM_CLIENT_SECRET" => Some("env-secret".to_string()),
            _ => None,
        };
        let text = "- provider: oauth2\n  alias: my-crm\n  context: bot\n  flow: client_credentials\n  token_url: https://crm.example/token\n";
        let list = parse_with(Path::new("i.yaml"), text, &env).unwrap();
        let endpoints = list[0].grant.endpoints().unwrap();
        assert_eq!(endpoints.client_id, "from-env");
        assert_eq!(endpoints.client_secret.as_deref(), Some("env-secret"));
        assert!(list[0].missing.is_empty());
        assert!(list[0].check_configured().is_ok());
        // The file wins over the environment; without either, a client_credentials entry
        // cannot be connected without its secret either.
        let list = parse_with(Path::new("i.yaml"), text, &|_| None).unwrap();
        assert!(list[0].missing.iter().all(|m| m.blocking));
        let why = list[0].check_configured().unwrap_err();
        assert!(
            why.contains("SWITCHYARD_OAUTH_MY_CRM_CLIENT_ID")
                && why.contains("SWITCHYARD_OAUTH_MY_CRM_CLIENT_SECRET"),
            "{why}"
        );
        let written = format!("{text}  client_id: from-file\n");
        let list = parse_with(Path::new("i.yaml"), &written, &env).unwrap();
        assert_eq!(list[0].grant.endpoints().unwrap().client_id, "from-file");
    }

    #[test]
    fn a_list_that_lost_its_dashes_is_read_as_the_list_it_was() {
        // Seed 001's copy: keys repeat in one block; each repeated key starts an entry.
        let list = parse_text(
            "  provider: google\n  alias: google\n  scope: email\n  context: user\n  provider: facebook\n  context: user\n",
        )
        .unwrap();
        let aliases: Vec<&str> = list.iter().map(|i| i.alias.as_str()).collect();
        assert_eq!(aliases, ["google", "facebook"]);
        assert_eq!(list[0].scopes(), ["email"]);
        assert_eq!(list[1].context, Context::User);
    }

    #[test]
    fn studio_providers_secret_keys_and_repeated_declarations() {
        let list = parse_text(
            "- provider: twilio\n  context: bot\n  description: Allow bot to send SMS notifications\n\
             - provider: twilio\n  context: bot\n  description: Integrate with Twilio\n\
             - provider: masvoz_sms\n  context: bot\n\
             - provider: calendar\n  context: bot\n  icon: calendar\n  title: Booking\n  alias: booking\n\
             - provider: weather_api\n  context: bot\n  secret: true\n",
        )
        .unwrap();
        let aliases: Vec<&str> = list.iter().map(|i| i.alias.as_str()).collect();
        assert_eq!(aliases, ["twilio", "masvoz_sms", "booking", "weather_api"]);
        assert_eq!(
            list[0].grant,
            Grant::App {
                app: "twilio".into()
            }
        );
        assert_eq!(
            list[0].description.as_deref(),
            Some("Allow bot to send SMS notifications")
        );
        assert_eq!(
            list[1].grant,
            Grant::App {
                app: "masvoz-sms".into()
            }
        );
        assert_eq!(list[2].grant, Grant::Calendar);
        assert_eq!(list[3].grant, Grant::Secret);
        assert_eq!(list[3].provider, "weather_api");
        let e = parse_text("- provider: twilio\n  context: user\n").unwrap_err();
        assert_eq!(e.path, "[0].context");
        assert!(e.reason.contains("context: bot"), "{e}");
        let e =
            parse_text("- provider: weather_api\n  context: user\n  secret: true\n").unwrap_err();
        assert_eq!(e.path, "[0].context");
        let e = parse_text("- provider: x\n  context: bot\n  secret: [1]\n").unwrap_err();
        assert_eq!(e.path, "[0].secret");
        // The same alias for something else is still refused.
        let e = parse_text("- provider: twilio\n  context: bot\n- provider: secret\n  alias: twilio\n  context: bot\n")
            .unwrap_err();
        assert_eq!(e.path, "[1].alias");
    }

    #[test]
    fn files_gather_and_a_duplicate_alias_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("main.yaml");
        let b = dir.path().join("skill.json");
        std::fs::write(&a, "- provider: secret\n  alias: k\n  context: bot\n").unwrap();
        std::fs::write(
            &b,
            r#"[{"provider": "google", "context": "user", "client_id": "c"}]"#,
        )
        .unwrap();
        let all = load_files(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(all.len(), 2);
        std::fs::write(
            &b,
            r#"[{"provider": "secret", "alias": "k", "context": "bot"}]"#,
        )
        .unwrap();
        let e = load_files(&[a, b]).unwrap_err().to_string();
        assert!(e.contains("main.yaml") && e.contains("skill.json"), "{e}");
    }

    #[test]
    fn microsofts_tenant_goes_into_its_urls_and_offline_access_into_its_scope() {
        let list = parse_text(
            "- provider: microsoft\n  context: bot\n  client_id: m\n  scope: User.Read\n\
             - provider: microsoft\n  alias: contoso\n  context: bot\n  client_id: m\n  tenant: contoso.onmicrosoft.com\n  scope: openid offline_access\n  token_url: http://127.0.0.1:9/{tenant}/token\n",
        )
        .unwrap();
        let common = list[0].grant.endpoints().unwrap();
        assert_eq!(
            common.authorize_url.as_deref(),
            Some("https://login.microsoftonline.com/common/oauth2/v2.0/authorize")
        );
        assert_eq!(list[0].scopes(), ["User.Read", "offline_access"]);
        let contoso = list[1].grant.endpoints().unwrap();
        assert_eq!(
            contoso.token_url,
            "http://127.0.0.1:9/contoso.onmicrosoft.com/token"
        );
        assert_eq!(list[1].scopes(), ["openid", "offline_access"], "not twice");
        assert_eq!(contoso.quirks.client_auth, ClientAuth::Body);

        let e = parse_text("- provider: google\n  context: bot\n  client_id: g\n  tenant: x\n")
            .unwrap_err();
        assert_eq!(e.path, "[0].tenant");
        let e = parse_text(
            "- provider: microsoft\n  context: bot\n  client_id: m\n  tenant: ../evil?x=\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "[0].tenant");
    }

    #[test]
    fn scopes_go_in_the_providers_parameter_with_its_separator() {
        let list = parse_text(
            "- provider: facebook\n  context: user\n  client_id: f\n  scope: email public_profile\n\
             - provider: slack\n  context: user\n  client_id: s\n  scope: identity.basic identity.email\n\
             - provider: slack\n  alias: slackbot\n  context: bot\n  client_id: s\n  scope: chat:write,commands\n\
             - provider: zoom\n  context: bot\n  client_id: z\n\
             - provider: google\n  context: user\n  client_id: g\n  scope: email,profile\n",
        )
        .unwrap();
        let params: Vec<Option<(String, String)>> =
            list.iter().map(Integration::scope_param).collect();
        let p = |name: &str, value: &str| Some((name.to_string(), value.to_string()));
        assert_eq!(params[0], p("scope", "email,public_profile"));
        assert_eq!(params[1], p("user_scope", "identity.basic,identity.email"));
        assert_eq!(params[2], p("scope", "chat:write,commands"));
        assert_eq!(params[3], None);
        assert_eq!(params[4], p("scope", "email profile"));
        let slack = &list[1].grant.endpoints().unwrap().quirks;
        assert_eq!(
            slack.token_response.user_token_in.as_deref(),
            Some("authed_user")
        );
        assert_eq!(
            slack.token_response.error_codes["invalid_refresh_token"],
            "invalid_grant"
        );
    }

    #[test]
    fn every_oauth_preset_is_complete() {
        for (name, preset) in &PRESETS.providers {
            if preset.grant != "auth_code" {
                continue;
            }
            assert!(!preset.source.is_empty(), "{name} names no source");
            assert!(preset.authorize_url.is_some(), "{name}");
            assert!(preset.token_url.is_some(), "{name}");
            assert!(
                preset.userinfo_url.is_some() || preset.token_response.userinfo_in.is_some(),
                "{name} has no way to the user's info"
            );
            for keys in preset.userinfo.keys() {
                assert!(TOKEN_INFO_FIELDS.contains(&keys.as_str()), "{name}: {keys}");
            }
        }
    }

    #[test]
    fn userinfo_is_normalized() {
        let list = parse_text("- provider: google\n  context: user\n  client_id: c\n").unwrap();
        let info = list[0].token_info(&json!({
            "sub": "1", "name": "Ada Lovelace", "given_name": "Ada", "family_name": "Lovelace",
            "email": "ada@example.com", "picture": "https://p/1.png"
        }));
        assert_eq!(info["first_name"], "Ada");
        assert_eq!(info["last_name"], "Lovelace");
        assert_eq!(info["email"], "ada@example.com");
        assert_eq!(info["nickname"], "ada@example.com");
        assert_eq!(info["phone"], Value::Null);
        assert_eq!(info["urls"]["picture"], "https://p/1.png");
        let keys: Vec<&String> = info.keys().collect();
        assert_eq!(keys, TOKEN_INFO_FIELDS);
    }
}
