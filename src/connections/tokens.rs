//! Connections of an app's `oauth2` connection type made from tokens obtained elsewhere
//! (`switchyard connections add NAME --app APP --access-token T [--refresh-token R
//! --integration ALIAS] [--expires-in S]`): servers without a browser, and tests.
//!
//! Such a connection is a row like those the OAuth flows make — kind `oauth2`, the tokens
//! sealed, its expiry — linked to the integration that refreshes it (context `app`: it is
//! the app's connection, never the bot's `bot.tokens.<alias>`), so the vault refreshes it
//! ahead of expiry and once after a 401 exactly as it refreshes an integration's own.
//!
//! An app's `service_account` connection holds a service account's JSON key (`connections add
//! NAME --app APP --service-account-key FILE`): the vault mints its access tokens with the
//! JWT-bearer grant for the scopes of the app's type and modules (or of the integration named
//! with `--integration`), cached until they expire.
//!
//! Invariants: nothing is stored when a check fails or the app's test request refuses the
//! token (unless the test is skipped); errors name the field or flag, never a token.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::integrations::{Grant, Integration};
use super::oauth::{KIND_OAUTH2, KIND_SERVICE_ACCOUNT, REFRESH_SKEW_MS};
use super::{ConnectionError, FieldProblem, Unsealed, Vault};
use crate::apps::defined::{App, ConnectionKind, ConnectionType, DefinedApps};
use crate::module::{Connection, Secrets};
use crate::store::{ConnectionRow, IntegrationLink, check_connection_name, new_id, now_ms};

/// The context of an app connection linked to an integration.
pub const CONTEXT_APP: &str = "app";

/// An OAuth2 connection to store from tokens.
#[derive(Debug, Clone, Default)]
pub struct NewTokenConnection {
    pub name: String,
    /// Make's numeric id of the connection (`--id`), else a new id.
    pub id: Option<String>,
    pub app: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// The integration (its alias) whose provider issued the tokens and which refreshes them.
    pub integration: Option<String>,
    /// Seconds the access token lives from now.
    pub expires_in: Option<i64>,
    /// The scopes granted, as the provider wrote them.
    pub scope: Option<String>,
    /// Other fields of the connection type's configuration (`baseUrl` …).
    pub fields: Map<String, Value>,
    /// Whether the app's test request must accept the token before it is stored.
    pub test: bool,
}

/// An app connection's authorization in progress.
#[derive(Debug, Clone)]
pub struct AppAuthorization {
    /// The provider's authorize URL, for the person connecting to open.
    pub url: reqwest::Url,
    /// The SHA-256 of its state: pending until the callback takes it.
    pub state_hash: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
}

/// An app's `oauth2` connection type, as the connect page offers it.
#[derive(Debug, Clone)]
pub struct OAuthAppType {
    pub app: String,
    /// The type's name (`oauth`).
    pub name: String,
    pub label: Option<String>,
    /// The provider its tokens come from (`google`, or `oauth2` for any).
    pub provider: String,
    /// What connecting asks for: the type's and its modules' scopes.
    pub scopes: Vec<String>,
    /// The `auth_code` integrations it can be connected through (their aliases).
    pub integrations: Vec<String>,
}

/// The link of an app connection to the integration that refreshes it.
fn app_link(alias: &str) -> IntegrationLink {
    IntegrationLink {
        alias: alias.to_string(),
        context: CONTEXT_APP.into(),
        subject: None,
    }
}

/// A service-account connection to store from its JSON key.
#[derive(Debug, Clone, Default)]
pub struct NewServiceAccountConnection {
    pub name: String,
    /// Make's numeric id of the connection (`--id`), else a new id.
    pub id: Option<String>,
    pub app: String,
    /// The service account's JSON key (`client_email`, `private_key`, `token_uri` …).
    pub key: Value,
    /// A `google_service_account` integration whose scope to request instead of the app's.
    pub integration: Option<String>,
    pub fields: Map<String, Value>,
    /// Whether a token is minted and the app's test request run before it is stored.
    pub test: bool,
}

fn problem(path: &str, reason: impl Into<String>) -> ConnectionError {
    ConnectionError::Invalid(vec![FieldProblem::new(path, reason)])
}

impl Vault {
    /// Checks and stores an OAuth2 connection of `input.app` from its tokens, after running
    /// the connection type's test request with it (when `input.test` and the type has one).
    pub async fn create_from_tokens(
        &self,
        input: &NewTokenConnection,
    ) -> Result<ConnectionRow, ConnectionError> {
        if let Err(e) = check_connection_name(&input.name) {
            return Err(problem("name", e.to_string()));
        }
        let id = super::connection_id(input.id.as_deref())?;
        if input.access_token.trim().is_empty() {
            return Err(problem("access_token", "must not be empty"));
        }
        if input.refresh_token.is_some() && input.integration.is_none() {
            return Err(problem(
                "integration",
                "a refresh token is used through the integration that issued it: name it \
                 (--integration ALIAS)",
            ));
        }
        let (apps, app, connection_type) = self.app_type(&input.app, ConnectionKind::OAuth2)?;
        let link = match &input.integration {
            None => None,
            Some(alias) => {
                self.app_integration(app, connection_type, alias)?;
                Some(app_link(alias))
            }
        };
        let mut fields = input.fields.clone();
        let problems = super::check_app_fields(apps, &input.app, &connection_type.name, &fields);
        if !problems.is_empty() {
            return Err(ConnectionError::Invalid(problems));
        }
        fields.insert("access_token".into(), input.access_token.clone().into());
        if let Some(refresh) = &input.refresh_token {
            fields.insert("refresh_token".into(), refresh.clone().into());
        }
        fields.insert("token_type".into(), "bearer".into());
        if let Some(scope) = &input.scope {
            fields.insert("scope".into(), scope.clone().into());
        }
        let expires_at = match input.expires_in {
            None => None,
            Some(secs) if secs >= 0 => {
                let ms = secs.saturating_mul(1000);
                let at = now_ms().saturating_add(ms);
                fields.insert("expires_at".into(), at.into());
                fields.insert(
                    "refresh_at".into(),
                    (at - REFRESH_SKEW_MS.min(ms / 2)).into(),
                );
                Some(at)
            }
            Some(_) => return Err(problem("expires_in", "must be 0 or more seconds")),
        };
        if input.test {
            self.test_token(connection_type, &input.name, &input.app, &fields)
                .await?;
        }
        self.insert_sealed(Unsealed {
            id: &id,
            name: &input.name,
            app: &input.app,
            kind: KIND_OAUTH2,
            fields: &fields,
            integration: link.as_ref(),
            expires_at,
        })
        .await
    }

    /// Checks and stores a service-account connection of `input.app` from its JSON key, after
    /// minting a token with it and running the connection type's test request (when
    /// `input.test`).
    pub async fn create_service_account(
        &self,
        input: &NewServiceAccountConnection,
    ) -> Result<ConnectionRow, ConnectionError> {
        if let Err(e) = check_connection_name(&input.name) {
            return Err(problem("name", e.to_string()));
        }
        let id = super::connection_id(input.id.as_deref())?;
        super::oauth::check_service_account_key(&input.key)
            .map_err(|(path, reason)| problem(&path.replacen("value", "key", 1), reason))?;
        let (apps, _, connection_type) =
            self.app_type(&input.app, ConnectionKind::ServiceAccount)?;
        let link = match &input.integration {
            None => None,
            Some(alias) => {
                let integration = self.integration(alias)?;
                if !matches!(integration.grant, Grant::ServiceAccount) {
                    return Err(problem(
                        "integration",
                        format!(
                            "\"{alias}\" is a {} integration, not a google_service_account one",
                            integration.grant.name()
                        ),
                    ));
                }
                Some(app_link(alias))
            }
        };
        let mut fields = input.fields.clone();
        let problems = super::check_app_fields(apps, &input.app, &connection_type.name, &fields);
        if !problems.is_empty() {
            return Err(ConnectionError::Invalid(problems));
        }
        fields.insert("key".into(), input.key.clone());
        if input.test {
            let candidate = Connection {
                id: id.clone(),
                name: input.name.clone(),
                app: input.app.clone(),
                kind: KIND_SERVICE_ACCOUNT.into(),
                fields: Secrets(fields.clone()),
            };
            let minted = self
                .with_minted_token(candidate, input.integration.as_deref())
                .await
                .map_err(|e| ConnectionError::TestFailed {
                    name: input.name.clone(),
                    reason: format!("{}: {}", e.kind.name(), e.message),
                })?;
            if connection_type.test.is_some() {
                self.run_app_test(&minted).await?;
            }
        }
        self.insert_sealed(Unsealed {
            id: &id,
            name: &input.name,
            app: &input.app,
            kind: KIND_SERVICE_ACCOUNT,
            fields: &fields,
            integration: link.as_ref(),
            expires_at: None,
        })
        .await
    }

    /// The loaded app definitions, app `app` and its connection type of `kind`, or the
    /// problem at `app` saying which is missing.
    /// The integration `alias`, checked to be an OAuth2 one of the provider connection type
    /// `connection_type` of `app` works with.
    fn app_integration(
        &self,
        app: &App,
        connection_type: &ConnectionType,
        alias: &str,
    ) -> Result<&Integration, ConnectionError> {
        let integration = self.integration(alias)?;
        if !matches!(
            integration.grant,
            Grant::AuthCode(_) | Grant::ClientCredentials(_)
        ) {
            return Err(problem(
                "integration",
                format!(
                    "\"{alias}\" is a {} integration, not an OAuth2 one",
                    integration.grant.name()
                ),
            ));
        }
        let wanted = app.provider(&connection_type.name).unwrap_or("oauth2");
        if wanted != "oauth2" && integration.provider != wanted {
            return Err(problem(
                "integration",
                format!(
                    "\"{alias}\" is a {} integration; the {} app's connections are made \
                     with a {wanted} one",
                    integration.provider,
                    app.name()
                ),
            ));
        }
        Ok(integration)
    }

    /// Every app's `oauth2` connection type, with the integrations it can be connected
    /// through in a browser.
    pub fn oauth_app_types(&self) -> Vec<OAuthAppType> {
        let Some(apps) = &self.apps else {
            return Vec::new();
        };
        let mut types = Vec::new();
        for app in apps.apps() {
            for connection_type in app.connection_types() {
                if connection_type.kind != ConnectionKind::OAuth2 {
                    continue;
                }
                let integrations = self
                    .integrations()
                    .iter()
                    .filter(|i| matches!(i.grant, Grant::AuthCode(_)))
                    .filter(|i| self.app_integration(app, connection_type, &i.alias).is_ok())
                    .map(|i| i.alias.clone())
                    .collect();
                types.push(OAuthAppType {
                    app: app.name().to_string(),
                    name: connection_type.name.clone(),
                    label: connection_type.label.clone(),
                    provider: app
                        .provider(&connection_type.name)
                        .unwrap_or("oauth2")
                        .to_string(),
                    scopes: app.scopes(&connection_type.name),
                    integrations,
                });
            }
        }
        types
    }

    /// The origins (`https://accounts.google.com`) of the authorize URLs of the integrations
    /// that connect apps' `oauth2` types: where the connect page's forms lead.
    pub fn app_authorize_origins(&self) -> Vec<String> {
        let mut origins: Vec<String> = Vec::new();
        for t in self.oauth_app_types() {
            for alias in &t.integrations {
                let Ok(integration) = self.integration(alias) else {
                    continue;
                };
                let Grant::AuthCode(endpoints) = &integration.grant else {
                    continue;
                };
                let origin = endpoints
                    .authorize_url
                    .as_deref()
                    .and_then(|u| reqwest::Url::parse(u).ok())
                    .map(|u| u.origin().ascii_serialization())
                    .filter(|o| o != "null");
                if let Some(origin) = origin
                    && !origins.contains(&origin)
                {
                    origins.push(origin);
                }
            }
        }
        origins
    }

    /// Starts connecting the connection `name` of `app`'s `oauth2` connection type through the
    /// `auth_code` integration `alias` (the console's connect page, `switchyard connections
    /// authorize`): the provider is asked for the union of the scopes the app's modules need
    /// and the integration's own. The callback stores the connection, or — when `name` is an
    /// `oauth2` connection of `app` made through `alias` already — gives it the new tokens
    /// (connecting again after the provider revoked them).
    pub async fn start_app_authorization(
        &self,
        name: &str,
        app: &str,
        alias: &str,
    ) -> Result<AppAuthorization, ConnectionError> {
        if let Err(e) = check_connection_name(name) {
            return Err(problem("name", e.to_string()));
        }
        let (_, found, connection_type) = self.app_type(app, ConnectionKind::OAuth2)?;
        let integration = self.app_integration(found, connection_type, alias)?;
        let Grant::AuthCode(endpoints) = &integration.grant else {
            return Err(problem(
                "integration",
                format!(
                    "\"{alias}\" is a {} integration: an app's connection is authorized \
                     through an auth_code one",
                    integration.grant.name()
                ),
            ));
        };
        self.reconnectable(name, app, alias).await?;
        let mut scopes = found.scopes(&connection_type.name);
        for scope in integration.scopes() {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        let scope = (!scopes.is_empty()).then(|| {
            (
                "scope".to_string(),
                scopes.join(&endpoints.quirks.scope_separator),
            )
        });
        let (url, state_hash) = self
            .authorization_url(integration, None, Some((app, name)), scope)
            .await?;
        Ok(AppAuthorization {
            url,
            state_hash,
            scopes,
        })
    }

    /// The stored connection `name` when connecting `app` through `alias` may give it new
    /// tokens (an `oauth2` connection of `app` made through `alias`); `None` when there is
    /// none; refused when the name is another connection's.
    async fn reconnectable(
        &self,
        name: &str,
        app: &str,
        alias: &str,
    ) -> Result<Option<ConnectionRow>, ConnectionError> {
        match self.store().get_connection(name).await {
            Ok(existing) => {
                let row = existing.row;
                let same = row.app == app
                    && row.kind == KIND_OAUTH2
                    && row
                        .integration
                        .as_ref()
                        .is_some_and(|l| l.alias == alias && l.context == CONTEXT_APP);
                if same {
                    Ok(Some(row))
                } else {
                    Err(problem(
                        "name",
                        format!(
                            "a connection named \"{name}\" exists (app {}, kind {}); connecting \
                             again replaces only an oauth2 connection of the {app} app made \
                             through integration \"{alias}\": remove it or choose another name",
                            row.app, row.kind
                        ),
                    ))
                }
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores the tokens an authorization of `app` brought as its connection `name` (see
    /// [`Vault::start_app_authorization`]), after the app's test request accepted them.
    pub(super) async fn store_app_connection(
        &self,
        app: &str,
        name: &str,
        integration: &Integration,
        fields: Map<String, Value>,
        expires_at: Option<i64>,
    ) -> Result<ConnectionRow, ConnectionError> {
        let (_, _, connection_type) = self.app_type(app, ConnectionKind::OAuth2)?;
        self.test_token(connection_type, name, app, &fields).await?;
        match self.reconnectable(name, app, &integration.alias).await? {
            Some(row) => {
                self.reseal(&row.id, &fields, expires_at).await?;
                Ok(self.store().get_connection(&row.id).await?.row)
            }
            None => {
                let id = new_id();
                self.insert_sealed(Unsealed {
                    id: &id,
                    name,
                    app,
                    kind: KIND_OAUTH2,
                    fields: &fields,
                    integration: Some(&app_link(&integration.alias)),
                    expires_at,
                })
                .await
            }
        }
    }

    /// Runs the test request of `app`'s `oauth2` type with the token `fields` hold, before
    /// they are stored (nothing to run when the type has no test).
    async fn test_token(
        &self,
        connection_type: &ConnectionType,
        name: &str,
        app: &str,
        fields: &Map<String, Value>,
    ) -> Result<(), ConnectionError> {
        if connection_type.test.is_none() {
            return Ok(());
        }
        let candidate = Connection {
            id: String::new(),
            name: name.to_string(),
            app: app.to_string(),
            kind: KIND_OAUTH2.into(),
            fields: Secrets(fields.clone()),
        };
        self.run_app_test(&candidate).await.map(|_| ())
    }

    fn app_type(
        &self,
        app: &str,
        kind: ConnectionKind,
    ) -> Result<(&DefinedApps, &Arc<App>, &ConnectionType), ConnectionError> {
        let Some(apps) = &self.apps else {
            return Err(problem(
                "app",
                "the app definitions are not loaded in this command",
            ));
        };
        let Some(found) = apps.app(app) else {
            return Err(problem("app", format!("no app named \"{app}\" is defined")));
        };
        let Some(connection_type) = found.connection_types().iter().find(|t| t.kind == kind) else {
            return Err(problem(
                "app",
                format!("the {app} app has no {} connection type", kind.name()),
            ));
        };
        Ok((apps, found, connection_type))
    }
}
