//! OAuth2 and the other integration grants, on top of the [`Vault`]: starting an
//! authorization (PKCE + single-use, expiring `state`), finishing it at the callback, client
//! credentials, refresh, Google service-account JWT-bearer tokens, secrets, signed per-user
//! links, and the token helpers' view of a token (info, redacted structure). The `oauth2`
//! crate speaks the protocol; this file decides when, and bends it to each provider's
//! documented departures, which its preset states as data ([`ProviderQuirks`]: client
//! authentication, scope parameter, token answers in another shape, a long-lived-token
//! exchange instead of refresh tokens, how the user's info is asked for).
//!
//! [`ProviderQuirks`]: super::integrations::ProviderQuirks
//!
//! Invariants:
//! - **One refresh per connection at a time**, across executions and processes: a refresh
//!   holds the connection's in-process lock *and* its store lease
//!   ([`Store::lease_refresh`](crate::store::Store::lease_refresh)); whoever waited re-reads
//!   the connection and uses the token the winner stored. A rotated refresh token is stored
//!   with the new access token in one update.
//! - A token refused by the provider (`invalid_grant`, a revoked refresh token) marks the
//!   connection `needs_reauth`; executions then fail with `InvalidAccessTokenError` saying how
//!   to connect it again. A provider that is down changes nothing (the next call tries again).
//! - No token value, client secret, code or verifier appears in an error or a log line: errors
//!   say which integration and what the provider's error code was.
//! - Every token call goes through the egress guard, without following redirects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AsyncHttpClient, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    HttpClientError, HttpRequest, HttpResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use reqwest::Url;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::integrations::{
    ClientAuth, Context, Grant, Integration, OAuthEndpoints, UserinfoRequest, dotted,
};
use super::{ConnectionError, Vault, seal};
use crate::apps::EgressPolicy;
use crate::apps::egress::GuardedResolver;
use crate::apps::transport::error_chain;
use crate::module::{Connection, ErrorKind, ModuleError, Secrets};
use crate::store::{
    ConnectionRow, IntegrationLink, NewConnection, OAuthState, STATUS_NEEDS_REAUTH, StoreError,
    new_id, now_ms,
};

/// The kind of a connection holding an OAuth2 token set.
pub const KIND_OAUTH2: &str = "oauth2";
/// The kind of a connection holding a Google service account's JSON key.
pub const KIND_SERVICE_ACCOUNT: &str = "service_account";
/// How long before its expiry a token is refreshed (a request under way must not see it
/// lapse); a token that lives less than twice this is refreshed at half its life.
pub const REFRESH_SKEW_MS: i64 = 60_000;
/// How long an authorization may take between `/oauth/start` and the callback.
pub const STATE_TTL_MS: i64 = 10 * 60_000;
/// How long a per-user link (`oauthLink`) stays valid.
pub const LINK_TTL_SECS: i64 = 24 * 3600;
/// How long one process may hold a connection's refresh lease.
const LEASE_MS: i64 = 30_000;
/// Timeout of one call to a token or userinfo endpoint.
const TOKEN_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The JWT-bearer grant type (RFC 7523), used for service accounts.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google's token endpoint, when a service account key names none.
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// What a process knows of its integrations.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub integrations: Vec<Integration>,
    /// The service's public base URL: the callback is `<public_url>/oauth/callback`.
    pub public_url: Url,
    /// Which non-public hosts token calls may reach (the HTTP modules' policy).
    pub egress: EgressPolicy,
}

/// The integrations of a vault and what their grants need at run time.
pub(crate) struct OAuth {
    settings: OAuthSettings,
    callback: Url,
    http: reqwest::Client,
    egress: Arc<EgressPolicy>,
    /// One lock per connection id: the in-process half of single-flight refresh.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Service-account access tokens, by connection id: (expires at ms, token).
    minted: Mutex<HashMap<String, (i64, String)>>,
}

impl OAuth {
    pub(crate) fn new(settings: OAuthSettings) -> Result<OAuth, ConnectionError> {
        let egress = Arc::new(settings.egress.clone());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TOKEN_CALL_TIMEOUT)
            .dns_resolver(Arc::new(GuardedResolver::new(egress.clone())))
            .build()
            .map_err(|e| ConnectionError::OAuth {
                alias: "(all)".into(),
                reason: format!("the HTTP client cannot be built: {e}"),
            })?;
        let callback = callback_url(&settings.public_url);
        Ok(OAuth {
            settings,
            callback,
            http,
            egress,
            locks: Mutex::default(),
            minted: Mutex::default(),
        })
    }

    fn lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.len() > 10_000 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(id.to_string()).or_default().clone()
    }

    /// The service-account token minted for connection `id`, while it is fresh.
    fn minted_token(&self, id: &str) -> Option<String> {
        self.minted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .filter(|(at, _)| at - REFRESH_SKEW_MS > now_ms())
            .map(|(_, token)| token.clone())
    }

    fn check_url(&self, alias: &str, url: &str) -> Result<Url, ConnectionError> {
        let url = Url::parse(url).map_err(|_| oauth_error(alias, "an endpoint is not a URL"))?;
        self.egress
            .check_url(&url)
            .map_err(|e| oauth_error(alias, &e.to_string()))?;
        Ok(url)
    }
}

/// `<public_url>/oauth/callback`.
pub fn callback_url(public_url: &Url) -> Url {
    let mut url = public_url.clone();
    let path = format!("{}/oauth/callback", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    url
}

fn oauth_error(alias: &str, reason: &str) -> ConnectionError {
    ConnectionError::OAuth {
        alias: alias.to_string(),
        reason: reason.to_string(),
    }
}

/// What a provider's refusal or failure means for the connection.
enum GrantFailure {
    /// The grant itself was refused (`invalid_grant`, `unauthorized_client` …): connecting
    /// again is the only way.
    Refused(String),
    /// The provider could not be reached or answered nonsense: try again later.
    Unavailable(String),
}

fn grant_failure<E: std::error::Error + 'static>(
    error: RequestTokenError<E, oauth2::StandardErrorResponse<BasicErrorResponseType>>,
) -> GrantFailure {
    match error {
        RequestTokenError::ServerResponse(response) => {
            let code = response.error().as_ref().to_string();
            match response.error() {
                BasicErrorResponseType::InvalidGrant
                | BasicErrorResponseType::UnauthorizedClient
                | BasicErrorResponseType::InvalidClient => {
                    GrantFailure::Refused(format!("the provider answered {code}"))
                }
                _ => GrantFailure::Unavailable(format!("the provider answered {code}")),
            }
        }
        RequestTokenError::Request(e) => GrantFailure::Unavailable(format!(
            "the token endpoint could not be reached: {}",
            error_chain(&e)
        )),
        // The body may hold a token: say only that it was not understood.
        RequestTokenError::Parse(_, _) => {
            GrantFailure::Unavailable("the token endpoint's answer is not a token response".into())
        }
        RequestTokenError::Other(reason) => GrantFailure::Unavailable(reason),
    }
}

/// A token response as the fields of an `oauth2` connection; a refresh that brings no new
/// refresh token keeps the old one.
fn token_fields(
    token: &BasicTokenResponse,
    previous: Option<&Map<String, Value>>,
) -> (Map<String, Value>, Option<i64>) {
    let mut fields = previous.cloned().unwrap_or_default();
    fields.insert(
        "access_token".into(),
        token.access_token().secret().clone().into(),
    );
    if let Some(refresh) = token.refresh_token() {
        fields.insert("refresh_token".into(), refresh.secret().clone().into());
    }
    fields.insert(
        "token_type".into(),
        token.token_type().as_ref().to_lowercase().into(),
    );
    if let Some(scopes) = token.scopes() {
        let scope: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        fields.insert("scope".into(), scope.join(" ").into());
    }
    let lifetime = token
        .expires_in()
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4));
    let expires_at = lifetime.map(|ms| now_ms() + ms);
    match (expires_at, lifetime) {
        (Some(at), Some(ms)) => {
            fields.insert("expires_at".into(), at.into());
            // Ahead of expiry by the skew, or by half its life when that is shorter (a
            // token that lives 10 s is not refreshed at once).
            fields.insert(
                "refresh_at".into(),
                (at - REFRESH_SKEW_MS.min(ms / 2)).into(),
            );
        }
        _ => {
            fields.remove("expires_at");
            fields.remove("refresh_at");
        }
    }
    (fields, expires_at)
}

/// When a connection's token is to be refreshed (ms), from its fields.
fn refresh_at(connection: &Connection) -> Option<i64> {
    let field = |name: &str| connection.fields.get(name).and_then(Value::as_i64);
    field("refresh_at").or_else(|| field("expires_at").map(|at| at - REFRESH_SKEW_MS))
}

/// Whether a connection's token must be refreshed before use.
pub fn is_expiring(connection: &Connection) -> bool {
    connection.kind == KIND_OAUTH2 && refresh_at(connection).is_some_and(|at| at <= now_ms())
}

/// The outcome of a callback: the connection stored and for whom.
#[derive(Debug, Clone)]
pub struct Connected {
    pub connection: ConnectionRow,
    pub alias: String,
    pub context: Context,
    pub subject: Option<String>,
    /// The app whose connection it is, when the authorization connected an app's `oauth2`
    /// connection type rather than the integration itself.
    pub app: Option<String>,
}

impl Vault {
    fn oauth(&self) -> Result<&OAuth, ConnectionError> {
        self.oauth.as_deref().ok_or_else(|| {
            oauth_error(
                "(none)",
                "this process declares no integrations (start it with --integrations FILE)",
            )
        })
    }

    /// The declared integrations (empty without `--integrations`).
    pub fn integrations(&self) -> &[Integration] {
        self.oauth
            .as_deref()
            .map(|o| o.settings.integrations.as_slice())
            .unwrap_or(&[])
    }

    /// The integration `alias`.
    pub fn integration(&self, alias: &str) -> Result<&Integration, ConnectionError> {
        self.integrations()
            .iter()
            .find(|i| i.alias == alias)
            .ok_or_else(|| ConnectionError::UnknownIntegration {
                alias: alias.chars().take(100).collect(),
            })
    }

    /// The key that signs per-user links, derived from the master key.
    fn link_key(&self) -> Vec<u8> {
        let mut hash = Sha256::new();
        hash.update(b"switchyard oauth link v1\0");
        hash.update(self.keyring().current().to_hex().as_bytes());
        hash.finalize().to_vec()
    }

    fn link_signature(&self, alias: &str, subject: &str, expires: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.link_key()).expect("any key length");
        mac.update(format!("{alias}\0{subject}\0{expires}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The link an end user opens to connect the `user` integration `alias` (the seed's
    /// `oauth_link`): `<public>/oauth/start/<alias>?user=…&expires=…&sig=…`, signed so that
    /// nobody can start a flow that stores a token as another user's.
    pub fn oauth_link(&self, alias: &str, subject: &str) -> Result<String, ConnectionError> {
        let oauth = self.oauth()?;
        let integration = self.integration(alias)?;
        if integration.context != Context::User || !matches!(integration.grant, Grant::AuthCode(_))
        {
            return Err(oauth_error(
                alias,
                "links are for `context: user` integrations with the auth_code flow",
            ));
        }
        check_subject(subject)?;
        let expires = now_ms() / 1000 + LINK_TTL_SECS;
        Ok(self.signed_start_url(oauth, alias, Some(subject), expires))
    }

    /// `<public>/oauth/start/<alias>?[user=…&]expires=…&sig=…`, signed for `subject` (the
    /// bot's links sign the empty subject).
    fn signed_start_url(
        &self,
        oauth: &OAuth,
        alias: &str,
        subject: Option<&str>,
        expires: i64,
    ) -> String {
        let mut url = oauth.settings.public_url.clone();
        let path = format!("{}/oauth/start/{alias}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        let mut query = url.query_pairs_mut();
        query.clear();
        if let Some(subject) = subject {
            query.append_pair("user", subject);
        }
        query
            .append_pair("expires", &expires.to_string())
            .append_pair(
                "sig",
                &self.link_signature(alias, subject.unwrap_or(""), expires),
            );
        drop(query);
        url.to_string()
    }

    /// A signed link that starts (or replaces) the connection of the bot integration `alias`
    /// without the API token, valid for [`STATE_TTL_MS`]: what a designer opens in a browser.
    pub fn bot_connect_url(&self, alias: &str) -> Result<String, ConnectionError> {
        let oauth = self.oauth()?;
        let expires = (now_ms() + STATE_TTL_MS) / 1000;
        Ok(self.signed_start_url(oauth, alias, None, expires))
    }

    /// Checks a per-user link's signature and expiry.
    pub fn check_link(
        &self,
        alias: &str,
        subject: &str,
        expires: &str,
        signature: &str,
    ) -> Result<(), ConnectionError> {
        let refused = |reason: &str| ConnectionError::Csrf(reason.to_string());
        let expires: i64 = expires
            .parse()
            .map_err(|_| refused("the link's expiry is not a number"))?;
        if expires < now_ms() / 1000 {
            return Err(refused("the link has expired: ask for a new one"));
        }
        let expected = self.link_signature(alias, subject, expires);
        let same = expected.len() == signature.len()
            && expected
                .bytes()
                .zip(signature.bytes())
                .fold(0u8, |d, (a, b)| d | (a ^ b))
                == 0;
        if !same {
            return Err(refused("the link's signature does not match"));
        }
        Ok(())
    }

    /// Starts the authorization of integration `alias` (for end user `subject` when it is a
    /// `user` integration): records the state and the PKCE verifier and returns the
    /// provider's authorize URL to redirect to.
    pub async fn start_authorization(
        &self,
        alias: &str,
        subject: Option<&str>,
    ) -> Result<Url, ConnectionError> {
        let integration = self.integration(alias)?;
        match (integration.context, subject) {
            (Context::User, None) => {
                return Err(oauth_error(
                    alias,
                    "is a `context: user` integration: start it with a per-user link \
                     (the oauthLink module)",
                ));
            }
            (Context::Bot, Some(_)) => {
                return Err(oauth_error(
                    alias,
                    "is a `context: bot` integration: it has no per-user links",
                ));
            }
            _ => {}
        }
        let (url, _) = self
            .authorization_url(integration, subject, None, integration.scope_param())
            .await?;
        Ok(url)
    }

    /// The provider's authorize URL for `integration` (an `auth_code` one), asking for
    /// `scope` (`(parameter, scopes joined)`), with its state and PKCE verifier recorded for
    /// the callback; `app` names the app connection `(app, name)` the callback is to store
    /// instead of the integration's own. Returns the URL and the SHA-256 of its state.
    pub(super) async fn authorization_url(
        &self,
        integration: &Integration,
        subject: Option<&str>,
        app: Option<(&str, &str)>,
        scope: Option<(String, String)>,
    ) -> Result<(Url, String), ConnectionError> {
        let oauth = self.oauth()?;
        let alias = integration.alias.as_str();
        let Grant::AuthCode(endpoints) = &integration.grant else {
            return Err(oauth_error(
                alias,
                &format!(
                    "is a {} integration: it is not connected through an authorization",
                    integration.grant.name()
                ),
            ));
        };
        integration
            .check_configured()
            .map_err(|reason| oauth_error(alias, &reason))?;
        let authorize = endpoints.authorize_url.as_deref().unwrap_or_default();
        let client = BasicClient::new(ClientId::new(endpoints.client_id.clone()))
            .set_auth_uri(
                AuthUrl::new(authorize.to_string())
                    .map_err(|_| oauth_error(alias, "authorize_url is not a URL"))?,
            )
            .set_redirect_uri(RedirectUrl::from_url(oauth.callback.clone()));
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge);
        // Joined by the provider's separator, in its parameter (Slack's `user_scope`).
        if let Some((name, scopes)) = scope {
            request = request.add_extra_param(name, scopes);
        }
        for (k, v) in &endpoints.authorize_params {
            request = request.add_extra_param(k.clone(), v.clone());
        }
        let (url, state) = request.url();
        let state_hash = hex::encode(Sha256::digest(state.secret().as_bytes()));
        let key = self.keyring().current().clone();
        let sealed = seal::seal(&key, &state_hash, verifier.secret().as_bytes())?;
        let now = now_ms();
        self.store()
            .insert_oauth_state(&OAuthState {
                state_hash: state_hash.clone(),
                alias: alias.to_string(),
                subject: subject.map(str::to_string),
                app: app.map(|(app, _)| app.to_string()),
                connection_name: app.map(|(_, name)| name.to_string()),
                key_id: key.id().to_string(),
                sealed,
                created_at: now,
                expires_at: now + STATE_TTL_MS,
            })
            .await?;
        Ok((url, state_hash))
    }

    /// Finishes an authorization: takes its state (once; an unknown, replayed or expired state
    /// is [`ConnectionError::Csrf`] and nothing is stored), exchanges the code with the PKCE
    /// verifier, reads the user's info and stores the token set sealed.
    pub async fn finish_authorization(
        &self,
        code: &str,
        state: &str,
    ) -> Result<Connected, ConnectionError> {
        let oauth = self.oauth()?;
        let state_hash = hex::encode(Sha256::digest(state.as_bytes()));
        let taken = self
            .store()
            .take_oauth_state(&state_hash)
            .await?
            .ok_or_else(|| {
                ConnectionError::Csrf(
                    "the state is unknown, already used or expired: start the connection again"
                        .into(),
                )
            })?;
        let integration = self.integration(&taken.alias)?;
        let Grant::AuthCode(endpoints) = &integration.grant else {
            return Err(oauth_error(
                &taken.alias,
                "is no longer an auth_code integration",
            ));
        };
        let key = self.key(&taken.key_id).ok_or_else(|| {
            ConnectionError::Csrf("the state was sealed under another master key".into())
        })?;
        let verifier = seal::unseal(&key, &taken.state_hash, &taken.sealed)?;
        let verifier = String::from_utf8(verifier)
            .map_err(|_| ConnectionError::Csrf("the stored verifier is unreadable".into()))?;
        let alias = integration.alias.clone();
        oauth.check_url(&alias, &endpoints.token_url)?;
        let http = token_http(oauth, integration);
        let token = token_client(endpoints, &alias)?
            .set_redirect_uri(RedirectUrl::from_url(oauth.callback.clone()))
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .request_async(&http)
            .await
            .map_err(|e| match grant_failure(e) {
                GrantFailure::Refused(r) | GrantFailure::Unavailable(r) => {
                    oauth_error(&alias, &format!("the code exchange failed: {r}"))
                }
            })?;
        // The user's info where the token response carries it (Notion's `owner.user`).
        let info_in_token = endpoints
            .quirks
            .token_response
            .userinfo_in
            .as_deref()
            .map(|path| {
                http.raw()
                    .as_ref()
                    .and_then(|body| dotted(body, path))
                    .cloned()
                    .unwrap_or_else(|| json!({}))
            });
        // A short-lived token swapped for a long-lived one (Facebook's `fb_exchange_token`).
        let token = match &endpoints.quirks.exchange {
            None => token,
            Some(grant) => exchange_token(oauth, endpoints, grant, token.access_token().secret())
                .await
                .map_err(|e| match e {
                    GrantFailure::Refused(r) | GrantFailure::Unavailable(r) => oauth_error(
                        &alias,
                        &format!("the exchange for a long-lived token failed: {r}"),
                    ),
                })?,
        };
        let (mut fields, expires_at) = token_fields(&token, None);
        let userinfo = match info_in_token {
            Some(info) => info,
            None => {
                self.userinfo(integration, endpoints, token.access_token().secret())
                    .await
            }
        };
        fields.insert(
            "info".into(),
            Value::Object(integration.token_info(&userinfo)),
        );
        let connection = match (&taken.app, &taken.connection_name) {
            (Some(app), Some(name)) => {
                self.store_app_connection(app, name, integration, fields, expires_at)
                    .await?
            }
            _ => {
                self.store_integration_connection(
                    integration,
                    taken.subject.as_deref(),
                    KIND_OAUTH2,
                    fields,
                    expires_at,
                )
                .await?
            }
        };
        Ok(Connected {
            connection,
            alias,
            context: integration.context,
            subject: taken.subject,
            app: taken.app,
        })
    }

    /// The provider's userinfo for an access token; `{}` when it has no userinfo endpoint or
    /// it fails (the connection is stored all the same, its info empty).
    async fn userinfo(
        &self,
        integration: &Integration,
        endpoints: &OAuthEndpoints,
        access_token: &str,
    ) -> Value {
        let Some(url) = &endpoints.userinfo_url else {
            return json!({});
        };
        let Ok(oauth) = self.oauth() else {
            return json!({});
        };
        let Ok(url) = oauth.check_url(&integration.alias, url) else {
            return json!({});
        };
        let request = match endpoints.quirks.userinfo_request {
            UserinfoRequest::Get => oauth.http.get(url).bearer_auth(access_token),
            UserinfoRequest::Post => oauth.http.post(url).bearer_auth(access_token),
            UserinfoRequest::Introspect => oauth.http.post(url).form(&[
                ("client_id", endpoints.client_id.as_str()),
                (
                    "client_secret",
                    endpoints.client_secret.as_deref().unwrap_or(""),
                ),
                ("token", access_token),
                ("token_type_hint", "access_token"),
            ]),
        };
        let response = request.header("accept", "application/json").send().await;
        match response {
            Ok(r) if r.status().is_success() => {
                let body: Value = r.json().await.unwrap_or_else(|_| json!({}));
                // Slack answers errors with HTTP 200 and `ok: false`.
                let refused = endpoints
                    .quirks
                    .token_response
                    .ok_flag
                    .as_deref()
                    .is_some_and(|flag| body.get(flag) == Some(&Value::Bool(false)));
                if refused {
                    let code: String = body["error"]
                        .as_str()
                        .unwrap_or("no error code")
                        .chars()
                        .take(64)
                        .collect();
                    tracing::warn!(integration = %integration.alias, error = %code,
                        "the userinfo endpoint refused the new token; its info stays empty");
                    return json!({});
                }
                body
            }
            Ok(r) => {
                tracing::warn!(integration = %integration.alias, status = %r.status(),
                    "the userinfo endpoint refused the new token; its info stays empty");
                json!({})
            }
            Err(e) => {
                tracing::warn!(integration = %integration.alias,
                    error = %error_chain(&e),
                    "the userinfo endpoint could not be reached; its info stays empty");
                json!({})
            }
        }
    }

    /// Stores (or replaces) the connection of `integration` for the bot or for `subject`.
    /// A bot connection is named by its alias, a user's `<alias>:<user>`.
    pub(crate) async fn store_integration_connection(
        &self,
        integration: &Integration,
        subject: Option<&str>,
        kind: &str,
        fields: Map<String, Value>,
        expires_at: Option<i64>,
    ) -> Result<ConnectionRow, ConnectionError> {
        let name = match subject {
            Some(s) => format!("{}:{s}", integration.alias),
            None => integration.alias.clone(),
        };
        let link = IntegrationLink {
            alias: integration.alias.clone(),
            context: integration.context.as_str().into(),
            subject: subject.map(str::to_string),
        };
        let plaintext = serde_json::to_vec(&fields).map_err(|e| ConnectionError::Unreadable {
            id: name.clone(),
            reason: e.to_string(),
        })?;
        let key = self.keyring().current().clone();
        // Twice at most: a concurrent callback may insert the row between the lookup and ours.
        for _ in 0..2 {
            match self.store().get_connection(&name).await {
                Ok(existing) => {
                    if existing.row.integration.as_ref().map(|l| &l.alias)
                        != Some(&integration.alias)
                    {
                        return Err(ConnectionError::Store(StoreError::Conflict {
                            what: "connection",
                            reason: format!(
                                "a connection named \"{name}\" exists that integration \
                                 \"{}\" did not make; remove or rename it first",
                                integration.alias
                            ),
                        }));
                    }
                    self.reseal(&existing.row.id, &fields, expires_at).await?;
                    return Ok(self.store().get_connection(&existing.row.id).await?.row);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            let id = new_id();
            let sealed = seal::seal(&key, &id, &plaintext)?;
            let inserted = self
                .store()
                .insert_connection(NewConnection {
                    id: &id,
                    name: &name,
                    app: &integration.provider,
                    kind,
                    key_id: key.id(),
                    sealed: &sealed,
                    integration: Some(&link),
                    expires_at,
                })
                .await;
            match inserted {
                Err(StoreError::Conflict { .. }) => continue,
                other => {
                    self.forget_opened();
                    return Ok(other?);
                }
            }
        }
        Err(ConnectionError::Store(StoreError::Conflict {
            what: "connection",
            reason: format!("\"{name}\" is being stored by another request"),
        }))
    }

    /// Tests a connection an integration made (the bot's, or an end user's) — what its
    /// provider can check, since no app defines a test request for it: an OAuth2 token is
    /// refreshed when it is about to expire (re-requested for client credentials) and shown
    /// to the provider's userinfo endpoint when it has one; a service account's key mints a
    /// token; a secret is stored and opens. The detail names no value.
    pub(crate) async fn test_integration_connection(
        &self,
        connection: Connection,
        status: &str,
        alias: &str,
    ) -> Result<String, ConnectionError> {
        let name = connection.name.clone();
        let failed = |reason: String| ConnectionError::TestFailed {
            name: name.clone(),
            reason,
        };
        if connection.kind == "secret" {
            let stored = connection
                .fields
                .0
                .get("value")
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty());
            return if stored {
                Ok(format!(
                    "the secret of integration \"{alias}\" is stored and opens with the master key"
                ))
            } else {
                Err(failed("the stored secret is empty".into()))
            };
        }
        let integration =
            self.integration(alias)
                .map_err(|_| ConnectionError::TestUnavailable {
                    name: name.clone(),
                    reason: format!(
                        "integration \"{alias}\", which made it, is not declared in this process \
                     (give the --integrations file that declares it)"
                    ),
                })?;
        let kind = connection.kind.clone();
        let ready = self
            .ready(connection, status)
            .await
            .map_err(|e| failed(format!("{}: {}", e.kind.name(), e.message)))?;
        if kind == KIND_SERVICE_ACCOUNT {
            return Ok(format!(
                "a token was minted with the service account key of integration \"{alias}\""
            ));
        }
        let Some(token) = ready.access_token() else {
            return Err(failed("it holds no access token".into()));
        };
        let Some(endpoints) = integration
            .grant
            .endpoints()
            .filter(|e| e.userinfo_url.is_some())
        else {
            return Ok(format!(
                "its token from integration \"{alias}\" opens and has not expired (the provider \
                 has no userinfo endpoint to ask)"
            ));
        };
        let info = self.userinfo(integration, endpoints, &token).await;
        if info.as_object().is_none_or(Map::is_empty) {
            return Err(failed(format!(
                "the userinfo endpoint of integration \"{alias}\" did not accept its token: \
                 connect it again"
            )));
        }
        Ok(format!(
            "the provider of integration \"{alias}\" accepted its token (userinfo answered)"
        ))
    }

    /// Stores the value of a `secret` integration, or a `google_service_account`'s JSON key
    /// (an object, or its text).
    pub async fn set_secret(
        &self,
        alias: &str,
        value: &Value,
    ) -> Result<ConnectionRow, ConnectionError> {
        let integration = self.integration(alias)?.clone();
        let invalid = |path: &str, reason: &str| {
            ConnectionError::Invalid(vec![super::FieldProblem::new(path, reason)])
        };
        match integration.grant {
            Grant::Secret => {
                let Some(text) = value.as_str().filter(|s| !s.is_empty()) else {
                    return Err(invalid("value", "must be a non-empty string"));
                };
                let mut fields = Map::new();
                fields.insert("value".into(), text.into());
                self.store_integration_connection(&integration, None, "secret", fields, None)
                    .await
            }
            Grant::ServiceAccount => {
                let key = match value {
                    Value::String(text) => serde_json::from_str::<Value>(text)
                        .map_err(|_| invalid("value", "must be the service account's JSON key"))?,
                    other => other.clone(),
                };
                check_service_account_key(&key).map_err(|(p, r)| invalid(&p, &r))?;
                let mut fields = Map::new();
                fields.insert("key".into(), key);
                self.store_integration_connection(
                    &integration,
                    None,
                    KIND_SERVICE_ACCOUNT,
                    fields,
                    None,
                )
                .await
            }
            _ => Err(oauth_error(
                alias,
                "is not a `secret` or `google_service_account` integration: connect it through \
                 /oauth/start instead",
            )),
        }
    }

    /// Obtains a client-credentials token for the bot integration `alias` and stores it.
    pub async fn connect_client_credentials(
        &self,
        alias: &str,
    ) -> Result<ConnectionRow, ConnectionError> {
        let integration = self.integration(alias)?.clone();
        let (fields, expires_at) = self.client_credentials_token(&integration).await?;
        self.store_integration_connection(&integration, None, KIND_OAUTH2, fields, expires_at)
            .await
    }

    async fn client_credentials_token(
        &self,
        integration: &Integration,
    ) -> Result<(Map<String, Value>, Option<i64>), ConnectionError> {
        let oauth = self.oauth()?;
        let Grant::ClientCredentials(endpoints) = &integration.grant else {
            return Err(oauth_error(
                &integration.alias,
                "is not a client_credentials integration",
            ));
        };
        integration
            .check_configured()
            .map_err(|reason| oauth_error(&integration.alias, &reason))?;
        oauth.check_url(&integration.alias, &endpoints.token_url)?;
        let http = token_http(oauth, integration);
        let token = token_client(endpoints, &integration.alias)?
            .exchange_client_credentials()
            .add_scopes(integration.scopes().into_iter().map(Scope::new))
            .request_async(&http)
            .await
            .map_err(|e| match grant_failure(e) {
                GrantFailure::Refused(r) | GrantFailure::Unavailable(r) => oauth_error(
                    &integration.alias,
                    &format!("the client credentials grant failed: {r}"),
                ),
            })?;
        Ok(token_fields(&token, None))
    }

    /// `connection` ready to use: an OAuth2 token refreshed (or re-requested) when it is about
    /// to expire, a service account's access token minted; anything else as it is. A
    /// connection that needs re-authorization is an `InvalidAccessTokenError`.
    pub(crate) async fn ready(
        &self,
        connection: Connection,
        status: &str,
    ) -> Result<Connection, ModuleError> {
        if status == STATUS_NEEDS_REAUTH {
            return Err(needs_reauth(&connection));
        }
        match connection.kind.as_str() {
            KIND_OAUTH2 if is_expiring(&connection) => self.refreshed(&connection.id, None).await,
            KIND_SERVICE_ACCOUNT => self.with_minted_token(connection, None).await,
            _ => Ok(connection),
        }
    }

    /// A new token for OAuth2 connection `id`, once per connection at a time: with `stale`
    /// (the token a request was refused with) only when the stored token is still that one,
    /// otherwise only when it is about to expire. Whoever waited for another refresh gets
    /// the token it stored.
    pub(crate) async fn refreshed(
        &self,
        id: &str,
        stale: Option<&str>,
    ) -> Result<Connection, ModuleError> {
        let oauth = self.oauth().map_err(|e| e.to_module_error(id))?;
        let lock = oauth.lock(id);
        let _held = lock.lock().await;
        let deadline = now_ms() + LEASE_MS;
        loop {
            let (connection, status) = self
                .open_with_status(id)
                .await
                .map_err(|e| e.to_module_error(id))?;
            if status == STATUS_NEEDS_REAUTH {
                return Err(needs_reauth(&connection));
            }
            let still_needed = match stale {
                Some(stale) => connection.access_token().as_deref() == Some(stale),
                None => is_expiring(&connection),
            };
            if !still_needed {
                return Ok(connection);
            }
            if self
                .store()
                .lease_refresh(id, now_ms() + LEASE_MS)
                .await
                .map_err(|e| ModuleError::runtime(format!("connection {id}: {e}")))?
            {
                // Read again under the lease: another process may have stored a new token (and
                // a rotated refresh token) between the read above and the lease.
                let (connection, status) = match self.open_with_status(id).await {
                    Ok(opened) => opened,
                    Err(e) => {
                        let _ = self.store().release_refresh(id).await;
                        return Err(e.to_module_error(id));
                    }
                };
                let still_needed = status != STATUS_NEEDS_REAUTH
                    && match stale {
                        Some(stale) => connection.access_token().as_deref() == Some(stale),
                        None => is_expiring(&connection),
                    };
                if !still_needed {
                    let _ = self.store().release_refresh(id).await;
                    if status == STATUS_NEEDS_REAUTH {
                        return Err(needs_reauth(&connection));
                    }
                    return Ok(connection);
                }
                return self.refresh_leased(connection).await;
            }
            // Another process is refreshing it: wait for its result.
            if now_ms() > deadline {
                return Err(ModuleError::new(
                    ErrorKind::ConnectionError,
                    format!(
                        "connection \"{}\": another process has been refreshing its token for \
                         {} s",
                        connection.name,
                        LEASE_MS / 1000
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Refreshes `connection`'s token while holding its lease; stores the result (which
    /// gives the lease back) or marks it `needs_reauth`.
    async fn refresh_leased(&self, connection: Connection) -> Result<Connection, ModuleError> {
        let alias = connection_alias(self, &connection.id).await;
        let integration = alias.as_deref().and_then(|a| self.integration(a).ok());
        let Some(integration) = integration.cloned() else {
            let _ = self.store().release_refresh(&connection.id).await;
            return Err(ModuleError::new(
                ErrorKind::InvalidAccessTokenError,
                format!(
                    "connection \"{}\" has expired and its integration is not declared in this \
                     process (--integrations), so it cannot be refreshed",
                    connection.name
                ),
            ));
        };
        let outcome = match &integration.grant {
            Grant::ClientCredentials(_) => self
                .client_credentials_token(&integration)
                .await
                .map_err(|e| GrantFailure::Unavailable(e.to_string())),
            // No refresh tokens: the token is swapped again while it is still good.
            Grant::AuthCode(endpoints) if endpoints.quirks.exchange.is_some() => {
                let grant = endpoints.quirks.exchange.as_deref().unwrap_or_default();
                let oauth = self
                    .oauth()
                    .map_err(|e| e.to_module_error(&connection.id))?;
                match connection.access_token() {
                    None => Err(GrantFailure::Refused("it has no token to exchange".into())),
                    Some(current) => exchange_token(oauth, endpoints, grant, &current)
                        .await
                        .map(|t| token_fields(&t, Some(&connection.fields.0))),
                }
            }
            Grant::AuthCode(endpoints) => match connection.fields.text("refresh_token") {
                None => Err(GrantFailure::Refused(
                    "the provider gave no refresh token".into(),
                )),
                Some(refresh) => {
                    let oauth = self
                        .oauth()
                        .map_err(|e| e.to_module_error(&connection.id))?;
                    let http = token_http(oauth, &integration);
                    match oauth.check_url(&integration.alias, &endpoints.token_url) {
                        Err(e) => Err(GrantFailure::Unavailable(e.to_string())),
                        Ok(_) => match token_client(endpoints, &integration.alias) {
                            Err(e) => Err(GrantFailure::Unavailable(e.to_string())),
                            Ok(client) => client
                                .exchange_refresh_token(&RefreshToken::new(refresh))
                                .request_async(&http)
                                .await
                                .map(|t| token_fields(&t, Some(&connection.fields.0)))
                                .map_err(grant_failure),
                        },
                    }
                }
            },
            _ => Err(GrantFailure::Refused("it has no refreshable token".into())),
        };
        match outcome {
            Ok((fields, expires_at)) => {
                self.reseal(&connection.id, &fields, expires_at)
                    .await
                    .map_err(|e| {
                        ModuleError::runtime(format!("connection {}: {e}", connection.id))
                    })?;
                tracing::info!(connection = %connection.id, integration = %integration.alias,
                    "token refreshed");
                Ok(Connection {
                    fields: Secrets(fields),
                    ..connection
                })
            }
            Err(GrantFailure::Refused(reason)) => {
                let _ = self
                    .store()
                    .set_connection_status(&connection.id, STATUS_NEEDS_REAUTH)
                    .await;
                self.forget_opened();
                tracing::warn!(connection = %connection.id, integration = %integration.alias,
                    %reason, "token refresh refused; the connection needs re-authorization");
                Err(ModuleError::new(
                    ErrorKind::InvalidAccessTokenError,
                    format!(
                        "connection \"{}\" could not be refreshed ({reason}) and needs to be \
                         connected again (/oauth/start/{})",
                        connection.name, integration.alias
                    ),
                ))
            }
            Err(GrantFailure::Unavailable(reason)) => {
                let _ = self.store().release_refresh(&connection.id).await;
                Err(ModuleError::new(
                    ErrorKind::ConnectionError,
                    format!(
                        "connection \"{}\" could not be refreshed: {reason}",
                        connection.name
                    ),
                ))
            }
        }
    }

    /// A service account connection with an access token (minted, or the cached one).
    /// `alias` names its integration when the connection is not stored yet.
    pub(crate) async fn with_minted_token(
        &self,
        mut connection: Connection,
        alias: Option<&str>,
    ) -> Result<Connection, ModuleError> {
        let oauth = self
            .oauth()
            .map_err(|e| e.to_module_error(&connection.id))?;
        let cached = || oauth.minted_token(&connection.id);
        let token = match cached() {
            Some(token) => token,
            None => {
                let lock = oauth.lock(&connection.id);
                let _held = lock.lock().await;
                match cached() {
                    Some(token) => token,
                    None => {
                        let (token, expires_at) = self.mint(&connection, alias).await?;
                        oauth
                            .minted
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(connection.id.clone(), (expires_at, token.clone()));
                        token
                    }
                }
            }
        };
        connection
            .fields
            .0
            .insert("access_token".into(), token.into());
        Ok(connection)
    }

    /// Exchanges a service account's signed assertion for an access token.
    async fn mint(
        &self,
        connection: &Connection,
        alias: Option<&str>,
    ) -> Result<(String, i64), ModuleError> {
        let oauth = self
            .oauth()
            .map_err(|e| e.to_module_error(&connection.id))?;
        let alias = match alias {
            Some(alias) => alias.to_string(),
            None => connection_alias(self, &connection.id)
                .await
                .unwrap_or_default(),
        };
        // The integration's scope, else (an app's connection) its app's type and modules'.
        let scope = self
            .integration(&alias)
            .ok()
            .and_then(|i| i.scope.clone())
            .or_else(|| self.app_service_account_scope(&connection.app))
            .ok_or_else(|| {
                ModuleError::config(format!(
                    "connection \"{}\": its google_service_account integration is not declared \
                     (with its scope) in this process's --integrations",
                    connection.name
                ))
            })?;
        let key = connection.fields.get("key").cloned().unwrap_or(Value::Null);
        let failed = |reason: String| {
            ModuleError::new(
                ErrorKind::InvalidAccessTokenError,
                format!(
                    "connection \"{}\": the service account token could not be had: {reason}",
                    connection.name
                ),
            )
        };
        let token_uri = key["token_uri"].as_str().unwrap_or(GOOGLE_TOKEN_URI);
        let url = oauth
            .check_url(&alias, token_uri)
            .map_err(|e| failed(e.to_string()))?;
        let assertion = service_account_assertion(&key, &scope, token_uri, now_ms() / 1000)
            .map_err(|(_, r)| failed(r))?;
        let response = oauth
            .http
            .post(url)
            .form(&[
                ("grant_type", JWT_BEARER),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| {
                ModuleError::new(
                    ErrorKind::ConnectionError,
                    format!(
                        "connection \"{}\": the token endpoint could not be reached: {}",
                        connection.name,
                        error_chain(&e)
                    ),
                )
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let code = body["error"].as_str().unwrap_or("no error code");
            return Err(failed(format!(
                "the token endpoint answered {status} ({code})"
            )));
        }
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| failed("the answer has no access_token".into()))?;
        let expires_in = body["expires_in"].as_i64().unwrap_or(3600);
        Ok((token.to_string(), now_ms() + expires_in * 1000))
    }

    /// The scopes of app `app`'s service-account connection type and of its modules, as one
    /// space-separated scope; `None` when the app defines none.
    fn app_service_account_scope(&self, app: &str) -> Option<String> {
        let app = self.apps.as_ref()?.app(app)?;
        let kind = app
            .connection_types()
            .iter()
            .find(|t| t.kind == crate::apps::defined::ConnectionKind::ServiceAccount)?;
        let scopes = app.scopes(&kind.name);
        (!scopes.is_empty()).then(|| scopes.join(" "))
    }

    /// The user connections of end user `subject`: alias → connection id.
    pub async fn user_tokens(&self, subject: &str) -> Result<Map<String, Value>, ConnectionError> {
        Ok(self
            .store()
            .subject_connections(subject)
            .await?
            .into_iter()
            .filter_map(|row| Some((row.integration?.alias, Value::String(row.id))))
            .collect())
    }

    /// The bot connections of the declared integrations: alias → connection id (read again
    /// at most every [`super::OPENED_TTL`]).
    pub async fn bot_tokens(&self) -> Result<Map<String, Value>, ConnectionError> {
        if let Ok(cached) = self.bot_tokens.lock()
            && let Some((at, tokens)) = cached.as_ref()
            && at.elapsed() < super::OPENED_TTL
        {
            return Ok(tokens.clone());
        }
        let tokens: Map<String, Value> = self
            .store()
            .list_connections()
            .await?
            .into_iter()
            .filter_map(|c| {
                let link = c.row.integration?;
                (link.context == "bot").then_some((link.alias, Value::String(c.row.id)))
            })
            .collect();
        if let Ok(mut cached) = self.bot_tokens.lock() {
            *cached = Some((std::time::Instant::now(), tokens.clone()));
        }
        Ok(tokens)
    }
}

/// The integration alias of connection `id`, from its row.
async fn connection_alias(vault: &Vault, id: &str) -> Option<String> {
    vault
        .store()
        .get_connection(id)
        .await
        .ok()?
        .row
        .integration
        .map(|l| l.alias)
}

fn needs_reauth(connection: &Connection) -> ModuleError {
    ModuleError::new(
        ErrorKind::InvalidAccessTokenError,
        format!(
            "connection \"{}\" needs to be connected again: its token was refused when it was \
             refreshed",
            connection.name
        ),
    )
}

fn check_subject(subject: &str) -> Result<(), ConnectionError> {
    let ok = !subject.is_empty()
        && subject.len() <= 150
        && !subject.chars().any(char::is_control)
        && subject.trim() == subject;
    if ok {
        Ok(())
    } else {
        Err(ConnectionError::Invalid(vec![super::FieldProblem::new(
            "user",
            "must be 1 to 150 characters without control characters or surrounding spaces",
        )]))
    }
}

/// An `oauth2` client for the token endpoint of `endpoints`.
fn token_client(
    endpoints: &OAuthEndpoints,
    alias: &str,
) -> Result<
    BasicClient<
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointSet,
    >,
    ConnectionError,
> {
    let mut client = BasicClient::new(ClientId::new(endpoints.client_id.clone())).set_token_uri(
        TokenUrl::new(endpoints.token_url.clone())
            .map_err(|_| oauth_error(alias, "token_url is not a URL"))?,
    );
    if let Some(secret) = &endpoints.client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.clone()));
    }
    if endpoints.quirks.client_auth == ClientAuth::Body {
        client = client.set_auth_type(AuthType::RequestBody);
    }
    Ok(client)
}

/// The HTTP client of a token request to `integration`'s provider: the process's guarded
/// client, with the answer brought to RFC 6749's shape where the provider's differs (its
/// preset's `token_response`) before the `oauth2` crate reads it. The body as received is
/// kept in `raw` (Notion's user info is in it).
struct TokenHttp<'a> {
    oauth: &'a OAuth,
    integration: &'a Integration,
    raw: Mutex<Option<Value>>,
}

fn token_http<'a>(oauth: &'a OAuth, integration: &'a Integration) -> TokenHttp<'a> {
    TokenHttp {
        oauth,
        integration,
        raw: Mutex::new(None),
    }
}

impl TokenHttp<'_> {
    /// The last answer's body as received.
    fn raw(&self) -> Option<Value> {
        self.raw.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl<'c> AsyncHttpClient<'c> for TokenHttp<'_> {
    type Error = HttpClientError<reqwest::Error>;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.oauth.http.call(request).await?;
            Ok(shape_token_response(response, self.integration, &self.raw))
        })
    }
}

/// `response` as RFC 6749 §5.1/§5.2 would have it, per the provider's `token_response`
/// quirks: Slack's `ok: false` with HTTP 200 becomes a 400 with the error mapped to a
/// standard code; a `context: user` integration's token set is read where the provider puts
/// it (Slack's `authed_user`); a missing `token_type` is `bearer`.
fn shape_token_response(
    response: HttpResponse,
    integration: &Integration,
    raw: &Mutex<Option<Value>>,
) -> HttpResponse {
    let Some(endpoints) = integration.grant.endpoints() else {
        return response;
    };
    let quirks = &endpoints.quirks.token_response;
    let Ok(mut body) = serde_json::from_slice::<Value>(response.body()) else {
        return response;
    };
    *raw.lock().unwrap_or_else(|p| p.into_inner()) = Some(body.clone());
    let mut status = response.status();
    if let Some(flag) = &quirks.ok_flag
        && body.get(flag) == Some(&Value::Bool(false))
    {
        let code = body["error"]
            .as_str()
            .unwrap_or("unknown_error")
            .to_string();
        let standard = quirks
            .error_codes
            .get(&code)
            .cloned()
            .unwrap_or(code.clone());
        body = json!({"error": standard, "error_description": format!("the provider said {code}")});
        status = oauth2::http::StatusCode::BAD_REQUEST;
    } else if status.is_success() {
        if integration.context == Context::User
            && let Some(at) = &quirks.user_token_in
            && let Some(user) = body.get(at).filter(|u| u.get("access_token").is_some())
        {
            body = user.clone();
        }
        if let Some(object) = body.as_object_mut()
            && object.contains_key("access_token")
            && !object.contains_key("token_type")
        {
            object.insert("token_type".into(), "bearer".into());
        }
    }
    let mut shaped = HttpResponse::new(serde_json::to_vec(&body).unwrap_or_default());
    *shaped.status_mut() = status;
    shaped.headers_mut().insert(
        oauth2::http::header::CONTENT_TYPE,
        oauth2::http::HeaderValue::from_static("application/json"),
    );
    shaped
}

/// Swaps `token` for a long-lived one with the provider's exchange grant (Facebook's
/// `grant_type=fb_exchange_token&fb_exchange_token=…`, the client's id and secret in the
/// form). A refusal (HTTP 400/401, Facebook's `OAuthException` or `invalid_grant`) is
/// [`GrantFailure::Refused`].
async fn exchange_token(
    oauth: &OAuth,
    endpoints: &OAuthEndpoints,
    grant: &str,
    token: &str,
) -> Result<BasicTokenResponse, GrantFailure> {
    let url = Url::parse(&endpoints.token_url)
        .map_err(|_| GrantFailure::Unavailable("token_url is not a URL".into()))?;
    oauth
        .egress
        .check_url(&url)
        .map_err(|e| GrantFailure::Unavailable(e.to_string()))?;
    let response = oauth
        .http
        .post(url)
        .header("accept", "application/json")
        .form(&[
            ("grant_type", grant),
            ("client_id", endpoints.client_id.as_str()),
            (
                "client_secret",
                endpoints.client_secret.as_deref().unwrap_or(""),
            ),
            (grant, token),
        ])
        .send()
        .await
        .map_err(|e| {
            GrantFailure::Unavailable(format!(
                "the token endpoint could not be reached: {}",
                error_chain(&e.without_url())
            ))
        })?;
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    if status.is_success() {
        return serde_json::from_slice::<BasicTokenResponse>(&body).map_err(|_| {
            GrantFailure::Unavailable("the token endpoint's answer is not a token response".into())
        });
    }
    let error: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // Facebook: {"error": {"type": "OAuthException", "code": 190, …}}; RFC 6749: {"error": "…"}.
    let code = error["error"]["type"]
        .as_str()
        .or(error["error"].as_str())
        .unwrap_or("no error code")
        .to_string();
    let reason = format!("the provider answered {status} ({code})");
    if matches!(status.as_u16(), 400 | 401)
        && matches!(
            code.as_str(),
            "OAuthException" | "invalid_grant" | "invalid_client"
        )
    {
        Err(GrantFailure::Refused(reason))
    } else {
        Err(GrantFailure::Unavailable(reason))
    }
}

/// Checks a Google service account's JSON key: `(field path, what is wrong)` otherwise.
pub fn check_service_account_key(key: &Value) -> Result<(), (String, String)> {
    if !key.is_object() {
        return Err((
            "value".into(),
            "must be the service account's JSON key (an object)".into(),
        ));
    }
    for field in ["client_email", "private_key"] {
        if key[field].as_str().is_none_or(str::is_empty) {
            return Err((format!("value.{field}"), "is required".into()));
        }
    }
    let pem = key["private_key"].as_str().unwrap_or_default();
    jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| {
        (
            "value.private_key".to_string(),
            "is not an RSA private key in PEM form".to_string(),
        )
    })?;
    if let Some(uri) = key.get("token_uri") {
        let ok = uri
            .as_str()
            .and_then(|u| Url::parse(u).ok())
            .is_some_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return Err(("value.token_uri".into(), "must be an http(s) URL".into()));
        }
    }
    Ok(())
}

/// The RS256-signed JWT a service account presents (RFC 7523 §2.1, Google's claims).
pub fn service_account_assertion(
    key: &Value,
    scope: &str,
    audience: &str,
    now_secs: i64,
) -> Result<String, (String, String)> {
    check_service_account_key(key)?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = key["private_key_id"].as_str().map(str::to_string);
    let claims = json!({
        "iss": key["client_email"],
        "scope": scope.split([' ', ',']).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" "),
        "aud": audience,
        "iat": now_secs,
        "exp": now_secs + 3600,
    });
    let pem = key["private_key"].as_str().unwrap_or_default();
    let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| {
        (
            "value.private_key".to_string(),
            "is not an RSA private key in PEM form".to_string(),
        )
    })?;
    jsonwebtoken::encode(&header, &claims, &encoding)
        .map_err(|e| ("value.private_key".to_string(), format!("cannot sign: {e}")))
}

/// A token as `getFullToken` shows it: everything but the secrets, which are replaced by
/// whether they are present.
pub fn redacted_token(row: &ConnectionRow, connection: &Connection) -> Value {
    let mut token = Map::new();
    token.insert("id".into(), row.id.clone().into());
    token.insert("name".into(), row.name.clone().into());
    token.insert("provider".into(), row.app.clone().into());
    token.insert("kind".into(), row.kind.clone().into());
    if let Some(link) = &row.integration {
        token.insert("alias".into(), link.alias.clone().into());
        token.insert("context".into(), link.context.clone().into());
        token.insert("user".into(), link.subject.clone().into());
    }
    token.insert("status".into(), row.status.clone().into());
    token.insert(
        "expiresAt".into(),
        row.expires_at
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
            .unwrap_or(Value::Null),
    );
    let mut credentials = Map::new();
    for (field, value) in &connection.fields.0 {
        let shown = match field.as_str() {
            "info" | "scope" | "token_type" | "expires_at" | "refresh_at" => value.clone(),
            "key" => json!({
                "client_email": value["client_email"],
                "private_key": "[redacted]",
            }),
            _ => Value::String("[redacted]".into()),
        };
        credentials.insert(field.clone(), shown);
    }
    token.insert("credentials".into(), Value::Object(credentials));
    Value::Object(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callback_is_under_the_public_url() {
        let u = |s: &str| callback_url(&Url::parse(s).unwrap()).to_string();
        assert_eq!(
            u("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080/oauth/callback"
        );
        assert_eq!(
            u("https://x.example/base/"),
            "https://x.example/base/oauth/callback"
        );
    }

    fn slack(context: &str) -> Integration {
        super::super::integrations::parse(
            std::path::Path::new("integrations.yaml"),
            &format!("- provider: slack\n  context: {context}\n  client_id: s\n  scope: a\n"),
        )
        .unwrap()
        .remove(0)
    }

    fn shaped(integration: &Integration, body: Value) -> (u16, Value) {
        let raw = Mutex::new(None);
        let response = HttpResponse::new(serde_json::to_vec(&body).unwrap());
        let shaped = shape_token_response(response, integration, &raw);
        assert_eq!(
            raw.lock().unwrap().as_ref(),
            Some(&body),
            "the body as received"
        );
        (
            shaped.status().as_u16(),
            serde_json::from_slice(shaped.body()).unwrap(),
        )
    }

    #[test]
    fn slacks_answers_are_read_as_rfc_6749_ones() {
        // `ok: false` with HTTP 200 is an error, its code mapped to the standard one.
        let (status, body) = shaped(
            &slack("user"),
            json!({"ok": false, "error": "invalid_refresh_token"}),
        );
        assert_eq!(status, 400);
        assert_eq!(body["error"], "invalid_grant");
        let (_, body) = shaped(&slack("bot"), json!({"ok": false, "error": "ratelimited"}));
        assert_eq!(
            body["error"], "ratelimited",
            "an unknown code stays as it is"
        );
        // A user integration's token is the `authed_user` one; a bot's the top level one.
        let answer = json!({"ok": true, "access_token": "xoxb-1", "token_type": "bot",
            "authed_user": {"id": "U1", "access_token": "xoxp-1", "token_type": "user"}});
        let (status, body) = shaped(&slack("user"), answer.clone());
        assert_eq!(status, 200);
        assert_eq!(body["access_token"], "xoxp-1");
        let (_, body) = shaped(&slack("bot"), answer);
        assert_eq!(body["access_token"], "xoxb-1");
        // A refreshed user token comes at the top level.
        let (_, body) = shaped(
            &slack("user"),
            json!({"ok": true, "access_token": "xoxp-2", "token_type": "user"}),
        );
        assert_eq!(body["access_token"], "xoxp-2");
        // No token_type is a bearer token.
        let (_, body) = shaped(&slack("bot"), json!({"ok": true, "access_token": "xoxb-3"}));
        assert_eq!(body["token_type"], "bearer");
    }

    #[test]
    fn a_bad_service_account_key_is_named_by_field() {
        let e = check_service_account_key(&json!({"client_email": "a@b"})).unwrap_err();
        assert_eq!(e.0, "value.private_key");
        let e = check_service_account_key(
            &json!({"client_email": "a@b", "private_key": "-----BEGIN NOT A KEY-----"}),
        )
        .unwrap_err();
        assert!(e.1.contains("RSA"), "{e:?}");
        assert!(!e.1.contains("BEGIN"));
    }
}
