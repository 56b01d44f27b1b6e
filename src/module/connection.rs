//! Stored connections as a module sees them: a [`Connection`] found by the name or id a
//! blueprint gives in `parameters.__IMTCONN__`, through a [`Connections`] source that a higher
//! layer (the `connections` layer, which unseals them) puts in the execution's
//! [`Extensions`](super::Extensions) as a [`ConnectionsHandle`].
//!
//! Invariant: a connection's secret fields are never printed — [`Secrets`]' `Debug` redacts
//! them — and an error about a connection names it, never its values.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Map, Value};

use super::ModuleError;

/// The normalized token-info fields of an integration's token, in the order `getTokenInfo`
/// returns them (the seeds' list).
pub const TOKEN_INFO_FIELDS: &[&str] = &[
    "name",
    "first_name",
    "last_name",
    "nickname",
    "email",
    "location",
    "description",
    "phone",
    "urls",
];

/// The blueprint parameter that names a module's connection (Make's own key).
pub const CONNECTION_PARAMETER: &str = "__IMTCONN__";

/// The parameters Make's modules name their connection in, in the order they are read:
/// `__IMTCONN__` (most apps) and `account` (`http:ActionSendDataOAuth`, Gmail's
/// `ActionSendEmail` and `TriggerNewEmail` …). Make's keychains (`key`, `apiKeyKeychain` …)
/// are read by the HTTP modules that use them, not by every module.
pub const CONNECTION_PARAMETERS: &[&str] = &[CONNECTION_PARAMETER, "account"];

/// One stored connection, unsealed for the call that asked for it.
#[derive(Debug, Clone)]
pub struct Connection {
    pub id: String,
    pub name: String,
    /// The app whose connection type this is (`chatbot`, `http` …).
    pub app: String,
    /// The connection type's name within its app (`token`, `basic`, `apiKey` …).
    pub kind: String,
    /// The values the connection was stored with (its `configuration`), secrets included.
    pub fields: Secrets,
}

impl Connection {
    /// The token a request or `tokens:GetAccessToken` uses: an OAuth2 or service-account
    /// access token, a bearer token, an API key, or a secret's value.
    pub fn access_token(&self) -> Option<String> {
        match self.credential().ok()? {
            Credential::OAuth2 { access_token } | Credential::ServiceAccount { access_token } => {
                Some(access_token)
            }
            Credential::Bearer(token) => Some(token),
            Credential::ApiKey { key, .. } => Some(key),
            Credential::Secret(value) => Some(value),
            Credential::Basic { .. } => None,
        }
    }
}

/// Where an API key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPlacement {
    Header,
    Query,
}

/// A stored connection's credential, typed by its kind: what the transport sends (the one
/// conversion to the transport's `Auth` is `apps::auth::auth_of`). `Debug` shows no value.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `api_key`: a key under a header or query parameter name.
    ApiKey {
        name: String,
        key: String,
        placement: KeyPlacement,
    },
    /// `bearer`: a token sent as `Authorization: Bearer`.
    Bearer(String),
    /// `basic`: a user name and password.
    Basic { user: String, password: String },
    /// `oauth2`: an access token obtained through an integration (refreshable).
    OAuth2 { access_token: String },
    /// `service_account`: an access token minted from a service account's key.
    ServiceAccount { access_token: String },
    /// `secret`: a value only an app's templates read.
    Secret(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Credential::ApiKey { .. } => "ApiKey",
            Credential::Bearer(_) => "Bearer",
            Credential::Basic { .. } => "Basic",
            Credential::OAuth2 { .. } => "OAuth2",
            Credential::ServiceAccount { .. } => "ServiceAccount",
            Credential::Secret(_) => "Secret",
        };
        write!(f, "{kind}(<redacted>)")
    }
}

impl Credential {
    /// Whether a refused request may be retried once with a refreshed credential.
    pub fn is_refreshable(&self) -> bool {
        matches!(self, Credential::OAuth2 { .. })
    }
}

impl Connection {
    /// The connection's credential by its kind. A connection whose kind is not a universal
    /// one, or that lacks its kind's field, is an error naming the connection and the field
    /// (an OAuth2 or service account connection without an access token: an
    /// `InvalidAccessTokenError`).
    pub fn credential(&self) -> Result<Credential, ModuleError> {
        let field = |name: &str| {
            self.fields
                .text(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    ModuleError::config(format!("connection \"{}\" has no {name} field", self.name))
                })
        };
        let token = |name: &str| {
            self.fields
                .text(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    ModuleError::new(
                        super::ErrorKind::InvalidAccessTokenError,
                        format!(
                            "connection \"{}\" has no access token: connect it again",
                            self.name
                        ),
                    )
                })
        };
        Ok(match self.kind.as_str() {
            "api_key" => Credential::ApiKey {
                name: field("name")?,
                key: field("key")?,
                placement: match self.fields.text("placement").as_deref() {
                    None | Some("header") => KeyPlacement::Header,
                    Some("query") => KeyPlacement::Query,
                    Some(_) => {
                        return Err(ModuleError::config(format!(
                            "connection \"{}\": its placement must be header or query",
                            self.name
                        )));
                    }
                },
            },
            "bearer" => Credential::Bearer(field("token")?),
            "basic" => Credential::Basic {
                user: field("username")?,
                password: self.fields.text("password").unwrap_or_default(),
            },
            "oauth2" => Credential::OAuth2 {
                access_token: token("access_token")?,
            },
            "service_account" => Credential::ServiceAccount {
                access_token: token("access_token")?,
            },
            "secret" => Credential::Secret(field("value")?),
            other => {
                return Err(ModuleError::config(format!(
                    "connection \"{}\" is of kind {other}, which carries no credential",
                    self.name
                )));
            }
        })
    }

    /// The scopes the connection's token was granted (`scope`, separated by spaces or
    /// commas as the provider wrote them); `None` when the provider did not say.
    pub fn granted_scopes(&self) -> Option<Vec<String>> {
        let scope = self.fields.text("scope")?;
        Some(
            scope
                .split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }
}

/// A connection's values; `Debug` shows the field names only.
#[derive(Clone, Default, PartialEq)]
pub struct Secrets(pub Map<String, Value>);

impl Secrets {
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field)
    }

    /// A field as text (strings as they are, numbers and booleans written out).
    pub fn text(&self, field: &str) -> Option<String> {
        match self.0.get(field)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// What a connection is, without its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub id: String,
    pub name: String,
    pub app: String,
    pub kind: String,
}

/// Where a module finds connections.
pub trait Connections: Send + Sync {
    /// The connection named or numbered `reference`. Unknown: an
    /// `InvalidConfigurationError` naming the reference.
    fn resolve<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<Connection, ModuleError>>;

    /// The name, app and kind of the connection named or numbered `reference`, without
    /// using it; `None` when there is no such connection. By default, found by resolving it.
    fn find<'a>(
        &'a self,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConnectionInfo>, ModuleError>> {
        Box::pin(async move {
            match self.resolve(reference).await {
                Ok(c) => Ok(Some(ConnectionInfo {
                    id: c.id,
                    name: c.name,
                    app: c.app,
                    kind: c.kind,
                })),
                Err(e) if e.kind == super::ErrorKind::InvalidConfigurationError => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    /// A new token for connection `id`, whose token `stale` a service just refused (401):
    /// refreshed once however many requests ask at the same time. A source without
    /// refreshable connections says the token is invalid.
    fn refresh<'a>(
        &'a self,
        id: &'a str,
        _stale: &'a str,
    ) -> BoxFuture<'a, Result<Connection, ModuleError>> {
        Box::pin(async move {
            Err(ModuleError::new(
                super::ErrorKind::InvalidAccessTokenError,
                format!("connection {id}: its token was refused and cannot be refreshed"),
            ))
        })
    }

    /// Deletes the connection `reference` (the token helpers' `deleteToken`): true when it
    /// was there.
    fn delete<'a>(&'a self, _reference: &'a str) -> BoxFuture<'a, Result<bool, ModuleError>> {
        Box::pin(async {
            Err(ModuleError::config(
                "this process cannot delete connections",
            ))
        })
    }

    /// The connection `reference` as `getFullToken` shows it: its metadata and which
    /// credentials it holds, every secret replaced by `[redacted]`.
    fn describe<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<Value, ModuleError>> {
        Box::pin(async move {
            let connection = self.resolve(reference).await?;
            let fields: Map<String, Value> = connection
                .fields
                .0
                .keys()
                .map(|k| (k.clone(), Value::String("[redacted]".into())))
                .collect();
            Ok(serde_json::json!({
                "id": connection.id, "name": connection.name, "provider": connection.app,
                "kind": connection.kind, "credentials": fields,
            }))
        })
    }

    /// The link end user `user` opens to connect the user-level integration `alias`.
    fn oauth_link(&self, alias: &str, _user: &str) -> Result<String, ModuleError> {
        Err(ModuleError::config(format!(
            "integration \"{alias}\" is not declared: start the service with --integrations"
        )))
    }

    /// The token references an execution sees as `bot.tokens` and, for end user `user`,
    /// `user.tokens`: `{"bot": {alias: id}, "user": {alias: id}}`.
    fn token_references<'a>(
        &'a self,
        _user: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Value, ModuleError>> {
        Box::pin(async { Ok(serde_json::json!({"bot": {}, "user": {}})) })
    }
}

/// The system roots `bot` and `user` of an execution: `bot.tokens.<alias>` and, for the end
/// user of the execution (the text `user` of its first bundle, as a token event or a webhook
/// carrying `user` gives it), `user.id` and `user.tokens.<alias>` — token references the
/// `tokens:*` modules and OAuth connections take. Empty without a connections source; a
/// source that cannot answer leaves them empty (a module using a token then fails, saying
/// which).
pub async fn token_roots(
    connections: Option<&ConnectionsHandle>,
    bundles: &[Value],
) -> Map<String, Value> {
    let user = bundles
        .first()
        .and_then(|b| b.get("user"))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty());
    let mut roots = Map::new();
    let references = match connections {
        Some(c) => match c.token_references(user).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e.message, "token references unavailable to this execution");
                Value::Null
            }
        },
        None => Value::Null,
    };
    let tokens = |key: &str| match references.get(key) {
        Some(Value::Object(m)) => Value::Object(m.clone()),
        _ => Value::Object(Map::new()),
    };
    roots.insert("bot".into(), serde_json::json!({"tokens": tokens("bot")}));
    roots.insert(
        "user".into(),
        serde_json::json!({"id": user, "tokens": tokens("user")}),
    );
    roots
}

/// What the layer that provides connections inserts into an execution's extensions.
pub type ConnectionsHandle = Arc<dyn Connections>;

/// The connection reference of a module's `parameters`: the first of
/// [`CONNECTION_PARAMETERS`] that holds one, as text (Make writes a number, a stored
/// connection's id), `None` when none does.
pub fn reference(parameters: &Map<String, Value>) -> Option<String> {
    reference_in(parameters, CONNECTION_PARAMETERS).map(|(_, reference)| reference)
}

/// The first of `fields` of `parameters` that names a stored thing, with the field: text
/// (trimmed, not empty) or a number (Make's numeric ids).
pub fn reference_in(
    parameters: &Map<String, Value>,
    fields: &[&'static str],
) -> Option<(&'static str, String)> {
    fields
        .iter()
        .find_map(|field| match parameters.get(*field)? {
            Value::String(s) if !s.trim().is_empty() => Some((*field, s.trim().to_string())),
            Value::Number(n) => Some((*field, n.to_string())),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_debug_shows_names_only() {
        let secrets = Secrets(json!({"token": "s3cr3t"}).as_object().unwrap().clone());
        let printed = format!("{secrets:?}");
        assert!(printed.contains("token"));
        assert!(!printed.contains("s3cr3t"));
    }

    #[test]
    fn credentials_are_typed_by_kind_and_never_printed() {
        let connection = |kind: &str, fields: Value| Connection {
            id: "1".into(),
            name: "c".into(),
            app: "a".into(),
            kind: kind.into(),
            fields: Secrets(fields.as_object().unwrap().clone()),
        };
        let oauth = connection("oauth2", json!({"access_token": "at-9", "scope": "a b,c"}));
        assert_eq!(
            oauth.credential().unwrap(),
            Credential::OAuth2 {
                access_token: "at-9".into()
            }
        );
        assert!(oauth.credential().unwrap().is_refreshable());
        assert_eq!(oauth.granted_scopes().unwrap(), ["a", "b", "c"]);
        assert!(!format!("{:?}", oauth.credential().unwrap()).contains("at-9"));
        let err = connection("oauth2", json!({})).credential().unwrap_err();
        assert_eq!(err.kind, super::super::ErrorKind::InvalidAccessTokenError);
        let key = connection(
            "api_key",
            json!({"name": "X-Key", "key": "k", "placement": "query"}),
        );
        assert_eq!(
            key.credential().unwrap(),
            Credential::ApiKey {
                name: "X-Key".into(),
                key: "k".into(),
                placement: KeyPlacement::Query
            }
        );
        let err = connection("basic", json!({})).credential().unwrap_err();
        assert!(err.message.contains("username"), "{}", err.message);
        assert!(connection("other", json!({})).credential().is_err());
    }

    #[test]
    fn reference_reads_names_and_ids() {
        let p = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            reference(&p(json!({"__IMTCONN__": " bot "}))).as_deref(),
            Some("bot")
        );
        assert_eq!(
            reference(&p(json!({"__IMTCONN__": 42}))).as_deref(),
            Some("42")
        );
        assert_eq!(reference(&p(json!({"__IMTCONN__": ""}))), None);
        assert_eq!(reference(&p(json!({}))), None);
        // Make's own modules that name their connection `account` (Gmail, HTTP OAuth).
        assert_eq!(
            reference(&p(json!({"account": 33477}))).as_deref(),
            Some("33477")
        );
        assert_eq!(
            reference_in(
                &p(json!({"account": "", "key": 71843})),
                &["account", "key"]
            ),
            Some(("key", "71843".to_string()))
        );
    }
}
