//! Every provider preset of `src/connections/providers.json` — google, microsoft, facebook,
//! linkedin, slack, hubspot, airtable, notion, dropbox, zoom — through one full cycle on the
//! real `switchyard serve`: authorize → callback → userinfo → a call with the token → refresh,
//! against the real OAuth2 server of the OAuth tests (the npm package `oauth2-mock-server`,
//! `tests/common/oauth.rs`), with the preset's URLs overridden (only their origin: the paths,
//! `{tenant}` and the query stay the preset's).
//!
//! `oauth2-mock-server` speaks plain OAuth2 at fixed paths. What each provider does
//! differently is played by a small **provider front** in this file (axum on 127.0.0.1),
//! written from the provider's documentation (the `source` links of its preset): it sits at
//! the provider's own paths, checks client authentication the provider's way (HTTP Basic or
//! the form) and refuses the other as the provider does, forwards authorize and token
//! requests to the mock server (which keeps the codes, checks PKCE, and issues, rotates and
//! revokes the tokens) and reshapes its answers into the provider's documented shape (Slack's
//! `ok` and `authed_user`, Notion's `owner.user`, Dropbox's refresh token only with
//! `token_access_type=offline` …). The mock server cannot model two things, which the front
//! therefore answers itself: Facebook's `fb_exchange_token` grant (a custom grant type the
//! mock refuses) and the providers' userinfo shapes. A protected `/resource` accepts only the
//! access tokens the front handed out and has not invalidated.
//!
//! One table row per preset drives one helper, [`cycle`]; each row states the quirks the
//! provider has and the cycle checks them: the authorize URL's parameters, the token
//! requests' client authentication and grant types, the token the call carries, the
//! normalized user info, and how the token is renewed (a refresh token, Facebook's
//! re-exchange, or not at all for Notion, whose token never expires: the connection then
//! needs re-authorization), and that a renewal the provider refuses in its own error shape
//! (Slack's `ok: false` with HTTP 200, Facebook's `OAuthException` …) marks the connection
//! `needs_reauth`. No token or the client secret may appear in the log, the API's answers or
//! the data files.

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use serde_json::{Value, json};

use common::oauth::MockOAuth;
use harness::*;

const CLIENT_ID: &str = "switchyard-preset-client";
const CLIENT_SECRET: &str = "preset-client-secret-7d2e";
/// The end user of the `context: user` presets.
const END_USER: &str = "user-42";

/// How a provider wants the client to authenticate at its token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    /// `Authorization: Basic base64(client_id:client_secret)`.
    Basic,
    /// `client_id` and `client_secret` in the form.
    Body,
}

/// How a provider's token is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Renewal {
    /// `grant_type=refresh_token`.
    RefreshToken,
    /// Facebook: the current token is exchanged again (`grant_type=fb_exchange_token`).
    Exchange,
    /// Notion: the token never expires and there is nothing to refresh it with.
    Never,
}

/// One preset and the provider's documented behaviour.
struct Case {
    provider: &'static str,
    context: &'static str,
    /// The scope as the integrations entry writes it.
    scope: &'static str,
    /// Further fields of the entry (Microsoft's `tenant`).
    extra: fn() -> Value,
    client_auth: ClientAuth,
    /// The authorize URL's quirks, as (parameter, expected value); `None`: must be absent.
    authorize: &'static [(&'static str, Option<&'static str>)],
    /// The normalized token info the cycle must read, as (field, value).
    info: &'static [(&'static str, &'static str)],
    renewal: Renewal,
}

fn no_extra() -> Value {
    json!({})
}

fn contoso_tenant() -> Value {
    json!({"tenant": "contoso.onmicrosoft.com"})
}

const GOOGLE: Case = Case {
    provider: "google",
    context: "user",
    scope: "openid email profile",
    extra: no_extra,
    client_auth: ClientAuth::Body,
    authorize: &[
        ("scope", Some("openid email profile")),
        ("access_type", Some("offline")),
        ("prompt", Some("consent")),
    ],
    info: &[
        ("name", "Ada Lovelace"),
        ("first_name", "Ada"),
        ("last_name", "Lovelace"),
        ("email", "ada@example.com"),
    ],
    renewal: Renewal::RefreshToken,
};

const MICROSOFT: Case = Case {
    provider: "microsoft",
    context: "bot",
    scope: "openid profile email User.Read",
    extra: contoso_tenant,
    client_auth: ClientAuth::Body,
    authorize: &[(
        "scope",
        Some("openid profile email User.Read offline_access"),
    )],
    info: &[
        ("name", "Ada Lovelace"),
        ("first_name", "Ada"),
        ("email", "ada@example.com"),
    ],
    renewal: Renewal::RefreshToken,
};

const FACEBOOK: Case = Case {
    provider: "facebook",
    context: "user",
    scope: "email public_profile",
    extra: no_extra,
    client_auth: ClientAuth::Body,
    authorize: &[("scope", Some("email,public_profile"))],
    info: &[
        ("name", "Ada Lovelace"),
        ("first_name", "Ada"),
        ("email", "ada@example.com"),
        ("location", "London, United Kingdom"),
    ],
    renewal: Renewal::Exchange,
};

const LINKEDIN: Case = Case {
    provider: "linkedin",
    context: "bot",
    scope: "openid profile email",
    extra: no_extra,
    client_auth: ClientAuth::Body,
    authorize: &[("scope", Some("openid profile email"))],
    info: &[
        ("name", "Ada Lovelace"),
        ("last_name", "Lovelace"),
        ("email", "ada@example.com"),
    ],
    renewal: Renewal::RefreshToken,
};

const SLACK: Case = Case {
    provider: "slack",
    context: "user",
    scope: "identity.basic identity.email",
    extra: no_extra,
    client_auth: ClientAuth::Basic,
    authorize: &[
        ("user_scope", Some("identity.basic,identity.email")),
        ("scope", None),
    ],
    info: &[("name", "Ada Lovelace"), ("email", "ada@example.com")],
    renewal: Renewal::RefreshToken,
};

const HUBSPOT: Case = Case {
    provider: "hubspot",
    context: "bot",
    scope: "oauth crm.objects.contacts.read",
    extra: no_extra,
    client_auth: ClientAuth::Body,
    authorize: &[("scope", Some("oauth crm.objects.contacts.read"))],
    info: &[
        ("email", "ada@example.com"),
        ("nickname", "ada@example.com"),
    ],
    renewal: Renewal::RefreshToken,
};

const AIRTABLE: Case = Case {
    provider: "airtable",
    context: "bot",
    scope: "data.records:read user.email:read",
    extra: no_extra,
    client_auth: ClientAuth::Basic,
    authorize: &[
        ("scope", Some("data.records:read user.email:read")),
        ("code_challenge_method", Some("S256")),
    ],
    info: &[("email", "ada@example.com")],
    renewal: Renewal::RefreshToken,
};

const NOTION: Case = Case {
    provider: "notion",
    context: "bot",
    scope: "",
    extra: no_extra,
    client_auth: ClientAuth::Basic,
    authorize: &[("owner", Some("user")), ("scope", None)],
    info: &[("name", "Ada Lovelace"), ("email", "ada@example.com")],
    renewal: Renewal::Never,
};

const DROPBOX: Case = Case {
    provider: "dropbox",
    context: "bot",
    scope: "account_info.read files.metadata.read",
    extra: no_extra,
    client_auth: ClientAuth::Basic,
    authorize: &[
        ("token_access_type", Some("offline")),
        ("scope", Some("account_info.read files.metadata.read")),
    ],
    info: &[
        ("name", "Ada Lovelace"),
        ("first_name", "Ada"),
        ("last_name", "Lovelace"),
        ("email", "ada@example.com"),
    ],
    renewal: Renewal::RefreshToken,
};

const ZOOM: Case = Case {
    provider: "zoom",
    context: "bot",
    scope: "user:read:user",
    extra: no_extra,
    client_auth: ClientAuth::Basic,
    authorize: &[("scope", Some("user:read:user"))],
    info: &[
        ("name", "Ada Lovelace"),
        ("first_name", "Ada"),
        ("phone", "+44 20 7946 0000"),
        ("email", "ada@example.com"),
    ],
    renewal: Renewal::RefreshToken,
};

macro_rules! preset_tests {
    ($($test:ident => $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                cycle(&$case).await;
            }
        )*
    };
}

preset_tests!(
    google => GOOGLE,
    microsoft => MICROSOFT,
    facebook => FACEBOOK,
    linkedin => LINKEDIN,
    slack => SLACK,
    hubspot => HUBSPOT,
    airtable => AIRTABLE,
    notion => NOTION,
    dropbox => DROPBOX,
    zoom => ZOOM,
);

/// Every preset with an authorization-code grant has a row in the table above.
#[test]
fn every_preset_has_a_cycle() {
    let tested: HashSet<&str> = [
        &GOOGLE, &MICROSOFT, &FACEBOOK, &LINKEDIN, &SLACK, &HUBSPOT, &AIRTABLE, &NOTION, &DROPBOX,
        &ZOOM,
    ]
    .iter()
    .map(|c| c.provider)
    .collect();
    let presets: Value = serde_json::from_str(PROVIDERS_JSON).unwrap();
    for (name, preset) in presets["providers"].as_object().unwrap() {
        if preset["grant"] == "auth_code" {
            assert!(tested.contains(name.as_str()), "preset {name} has no cycle");
            assert!(
                preset["source"].as_array().is_some_and(|s| !s.is_empty()),
                "preset {name} names no source"
            );
        }
    }
}

const PROVIDERS_JSON: &str = include_str!("../src/connections/providers.json");

/// A preset's URL for `field` (`authorize_url` …) with its origin replaced by `base`:
/// `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token` →
/// `http://127.0.0.1:PORT/{tenant}/oauth2/v2.0/token`.
fn overridden(provider: &str, field: &str, base: &str) -> Option<String> {
    let presets: Value = serde_json::from_str(PROVIDERS_JSON).unwrap();
    let url = presets["providers"][provider][field].as_str()?;
    let after_scheme = url.split_once("://").expect("an absolute URL").1;
    let path = &after_scheme[after_scheme.find('/').unwrap_or(after_scheme.len())..];
    Some(format!("{base}{path}"))
}

/// The path of a URL (no query), `{tenant}` as written.
fn path_of(url: &str) -> String {
    let after_scheme = url.split_once("://").unwrap().1;
    let path = &after_scheme[after_scheme.find('/').unwrap_or(after_scheme.len())..];
    path.split('?').next().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------
// The provider front
// ---------------------------------------------------------------------------------------------

/// One request at the front's token endpoint.
#[derive(Debug, Clone)]
struct TokenSeen {
    path: String,
    grant_type: String,
    client_auth: Option<ClientAuth>,
    /// The token presented for a `fb_exchange_token` grant.
    exchanged: Option<String>,
}

#[derive(Default)]
struct Seen {
    authorize: Vec<HashMap<String, String>>,
    tokens: Vec<TokenSeen>,
    /// Every access and refresh token handed to the client.
    handed_out: Vec<String>,
    /// The access token each successful token answer gives the integration (Slack's
    /// `authed_user` one for a user integration, Facebook's long-lived one …).
    primary: Vec<String>,
    /// Access tokens the resource and userinfo accept.
    live: HashSet<String>,
    userinfo_calls: usize,
    resource_bearers: Vec<String>,
    /// Facebook: the user took the app's access back; no token is exchanged any more.
    revoked: bool,
}

struct Front {
    case: &'static Case,
    base: String,
    mock: String,
    http: reqwest::Client,
    seen: Mutex<Seen>,
}

type Shared = Arc<Front>;

impl Front {
    async fn start(case: &'static Case, mock: &MockOAuth) -> Shared {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let front = Arc::new(Front {
            case,
            base: base.clone(),
            mock: mock.issuer.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            seen: Mutex::default(),
        });
        let route = |field: &str| {
            overridden(case.provider, field, &base).map(|u| path_of(&u).replace("{tenant}", "{t}"))
        };
        let mut app = axum::Router::new()
            .route(
                &route("authorize_url").unwrap(),
                axum::routing::get(authorize),
            )
            .route(&route("token_url").unwrap(), axum::routing::post(token))
            .route("/resource", axum::routing::get(resource));
        if let Some(userinfo_path) = route("userinfo_url") {
            app = app.route(&userinfo_path, axum::routing::any(userinfo));
        }
        let app = app.with_state(front.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        front
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }

    /// The resource and userinfo refuse every token handed out so far.
    fn invalidate(&self) {
        self.seen().live.clear();
    }

    /// The provider's answer to a refused client or grant.
    fn refusal(&self, status: StatusCode, error: &str) -> Response {
        match self.case.provider {
            // Slack answers every error with HTTP 200 and `ok: false`.
            "slack" => {
                let code = match error {
                    "invalid_client" => "bad_client_secret",
                    "invalid_grant" => "invalid_refresh_token",
                    other => other,
                };
                axum::Json(json!({"ok": false, "error": code})).into_response()
            }
            // Facebook's Graph API errors are objects.
            "facebook" => (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": {"message": format!("refused: {error}"),
                    "type": "OAuthException", "code": 100, "fbtrace_id": "AbCdEf"}})),
            )
                .into_response(),
            _ => (status, axum::Json(json!({"error": error}))).into_response(),
        }
    }

    /// Records a token answer: its tokens are handed out, the access token is live.
    fn hand_out(&self, primary: &str, others: &[&str]) {
        let mut seen = self.seen();
        seen.primary.push(primary.to_string());
        seen.live.insert(primary.to_string());
        seen.handed_out.push(primary.to_string());
        for t in others {
            seen.handed_out.push(t.to_string());
        }
    }
}

/// The client authentication of a token request: the style used, when the credentials are
/// right and only one style is used (RFC 6749 §2.3: "MUST NOT use more than one").
fn client_auth(headers: &HeaderMap, form: &HashMap<String, String>) -> Option<ClientAuth> {
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let in_body = form.contains_key("client_secret");
    match (basic, in_body) {
        (Some(pair), false) => {
            (pair == format!("{CLIENT_ID}:{CLIENT_SECRET}")).then_some(ClientAuth::Basic)
        }
        (None, true) => (form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET))
        .then_some(ClientAuth::Body),
        _ => None,
    }
}

/// The provider's authorize endpoint: records the query and sends the browser on to the
/// mock server's, which redirects back with a code.
async fn authorize(
    State(front): State<Shared>,
    uri: Uri,
    Form(query): Form<HashMap<String, String>>,
) -> Response {
    if query.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
    }
    front.seen().authorize.push(query);
    let mock_query = uri.query().unwrap_or_default();
    Redirect::to(&format!("{}/authorize?{mock_query}", front.mock)).into_response()
}

/// The provider's token endpoint.
async fn token(
    State(front): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let auth = client_auth(&headers, &form);
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    front.seen().tokens.push(TokenSeen {
        path: uri.path().to_string(),
        grant_type: grant.clone(),
        client_auth: auth,
        exchanged: form.get("fb_exchange_token").cloned(),
    });
    if auth != Some(front.case.client_auth) {
        return front.refusal(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let provider = front.case.provider;
    if provider == "facebook" && grant == "fb_exchange_token" {
        return facebook_exchange(&front, &form);
    }
    // Airtable requires PKCE (its token endpoint refuses a code without the verifier).
    if provider == "airtable"
        && grant == "authorization_code"
        && !form.contains_key("code_verifier")
    {
        return front.refusal(StatusCode::BAD_REQUEST, "invalid_request");
    }
    // The mock server issues the tokens; the client's id goes in the form.
    let mut forwarded = form.clone();
    forwarded.remove("client_secret");
    forwarded.insert("client_id".into(), CLIENT_ID.into());
    let answer = front
        .http
        .post(format!("{}/token", front.mock))
        .form(&forwarded)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let mock: Value = answer.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let error = mock["error"].as_str().unwrap_or("server_error").to_string();
        return front.refusal(StatusCode::BAD_REQUEST, &error);
    }
    let access = mock["access_token"].as_str().unwrap().to_string();
    let refresh = mock["refresh_token"].as_str().map(str::to_string);
    let expires_in = mock["expires_in"].clone();
    let last_authorize = front.seen().authorize.last().cloned().unwrap_or_default();
    let refresh_if = |granted: bool| refresh.clone().filter(|_| granted);
    // The provider's answer, as its documentation shows it.
    let (body, refresh) = match provider {
        // A refresh token only for `access_type=offline`.
        "google" => {
            let refresh = refresh_if(
                last_authorize.get("access_type").map(String::as_str) == Some("offline"),
            );
            (
                json!({"access_token": access, "expires_in": expires_in, "token_type": "Bearer",
                    "scope": "openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile",
                    "id_token": mock["id_token"], "refresh_token": refresh}),
                refresh,
            )
        }
        // A refresh token only for the `offline_access` scope.
        "microsoft" => {
            let refresh = refresh_if(
                last_authorize
                    .get("scope")
                    .is_some_and(|s| s.split(' ').any(|s| s == "offline_access")),
            );
            (
                json!({"token_type": "Bearer", "scope": "openid profile email User.Read",
                    "expires_in": expires_in, "ext_expires_in": expires_in,
                    "access_token": access, "refresh_token": refresh,
                    "id_token": mock["id_token"]}),
                refresh,
            )
        }
        "linkedin" => (
            json!({"access_token": access, "expires_in": expires_in,
                   "refresh_token": refresh, "refresh_token_expires_in": 31_536_000,
                   "scope": "email,openid,profile", "token_type": "Bearer",
                   "id_token": mock["id_token"]}),
            refresh,
        ),
        // The code's token is short-lived and there are no refresh tokens.
        "facebook" => (
            json!({"access_token": access, "token_type": "bearer", "expires_in": 5400}),
            None,
        ),
        // OAuth v2: user scopes give `authed_user`, bot scopes the top level; token rotation on.
        "slack" if grant == "authorization_code" => {
            let mut body = json!({"ok": true, "app_id": "A0SWITCH",
                "team": {"id": "T0ENGINE", "name": "Analytical Engines"},
                "enterprise": null, "is_enterprise_install": false});
            if last_authorize.contains_key("user_scope") {
                body["authed_user"] = json!({"id": "U0ADA", "scope": last_authorize["user_scope"],
                    "access_token": access, "token_type": "user",
                    "expires_in": expires_in, "refresh_token": refresh});
            }
            if last_authorize.contains_key("scope") {
                body["access_token"] = json!(access);
                body["token_type"] = json!("bot");
                body["scope"] = json!(last_authorize["scope"]);
                body["bot_user_id"] = json!("U0BOT");
                body["expires_in"] = expires_in.clone();
                body["refresh_token"] = json!(refresh);
            }
            (body, refresh)
        }
        "slack" => (
            json!({"ok": true, "app_id": "A0SWITCH", "access_token": access,
                   "token_type": "user", "expires_in": expires_in, "refresh_token": refresh,
                   "scope": "identity.basic,identity.email",
                   "team": {"id": "T0ENGINE", "name": "Analytical Engines"}}),
            refresh,
        ),
        "hubspot" => (
            json!({"token_type": "bearer", "access_token": access,
                   "refresh_token": refresh, "expires_in": 1800}),
            refresh,
        ),
        "airtable" => (
            json!({"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
                   "scope": "data.records:read user.email:read", "expires_in": 3600,
                   "refresh_expires_in": 5_184_000}),
            refresh,
        ),
        // No expiry and no refresh token; the user is in `owner.user`.
        "notion" => (
            json!({"access_token": access, "token_type": "bearer",
                   "bot_id": "b3414d65-1224-4ff7-8f4a-cc9d8773d601",
                   "workspace_id": "j565j4d7-2882-41bc-964a-7d9ee3c36f27",
                   "workspace_name": "Ada's Notion", "workspace_icon": "https://example.com/ws.png",
                   "owner": {"type": "user", "user": {"object": "user",
                       "id": "e79a0b74-3aba-4149-9f74-0bb5791a6ee6", "name": "Ada Lovelace",
                       "avatar_url": "https://example.com/ada.png", "type": "person",
                       "person": {"email": "ada@example.com"}}},
                   "duplicated_template_id": null,
                   "request_id": "f4e1d2c3-b4a5-4697-8876-a5b4c3d2e1f0"}),
            None,
        ),
        // A refresh token only for `token_access_type=offline`, and none from a refresh.
        "dropbox" => {
            let refresh = refresh_if(
                grant == "authorization_code"
                    && last_authorize.get("token_access_type").map(String::as_str)
                        == Some("offline"),
            );
            (
                json!({"access_token": access, "token_type": "bearer", "expires_in": 14_400,
                    "refresh_token": refresh, "scope": "account_info.read files.metadata.read",
                    "uid": "12345", "account_id": "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"}),
                refresh,
            )
        }
        "zoom" => (
            json!({"access_token": access, "token_type": "bearer", "refresh_token": refresh,
                   "expires_in": 3599, "scope": "user:read:user"}),
            refresh,
        ),
        other => panic!("no front for {other}"),
    };
    let mut body = body;
    if let Some(object) = body.as_object_mut() {
        // The provider leaves out what it does not give.
        for key in ["refresh_token", "id_token"] {
            if object.get(key).is_some_and(Value::is_null) {
                object.remove(key);
            }
        }
    }
    let others: Vec<&str> = refresh.iter().map(String::as_str).collect();
    front.hand_out(&access, &others);
    axum::Json(body).into_response()
}

/// Facebook's `grant_type=fb_exchange_token`: a live token of this app for a long-lived one
/// (60 days), the app's id and secret in the form.
fn facebook_exchange(front: &Front, form: &HashMap<String, String>) -> Response {
    let presented = form.get("fb_exchange_token").cloned().unwrap_or_default();
    let known = front.seen().handed_out.contains(&presented);
    if !known || front.seen().revoked {
        return front.refusal(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let long_lived = format!("EAAlong{}", uuid::Uuid::new_v4().simple());
    front.hand_out(&long_lived, &[]);
    axum::Json(json!({"access_token": long_lived, "token_type": "bearer",
                      "expires_in": 5_183_944}))
    .into_response()
}

/// The bearer token of a request, when the front handed it out and it is live.
fn live_bearer(front: &Front, headers: &HeaderMap) -> Option<String> {
    let token = headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?
        .to_string();
    front.seen().live.contains(&token).then_some(token)
}

/// The provider's userinfo, in its documented shape.
async fn userinfo(
    State(front): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    front.seen().userinfo_calls += 1;
    let provider = front.case.provider;
    let unauthorized = || {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_token"})),
        )
            .into_response()
    };
    let wrong_method = || (StatusCode::METHOD_NOT_ALLOWED, "wrong method").into_response();
    // HubSpot: an RFC 7662 introspection, the client's credentials and the token in the form.
    if provider == "hubspot" {
        if method != Method::POST {
            return wrong_method();
        }
        let form: HashMap<String, String> = form_pairs(&body);
        let client_ok = form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
        let token = form.get("token").cloned().unwrap_or_default();
        if !client_ok || !front.seen().live.contains(&token) {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"status": "BAD_REFRESH_TOKEN"})),
            )
                .into_response();
        }
        return axum::Json(
            json!({"token_use": "access_token", "active": true, "token": token,
            "hub_id": 62515, "user_id": 123456, "client_id": CLIENT_ID, "app_id": 456789,
            "scopes": ["oauth", "crm.objects.contacts.read"], "expires_in": 1700,
            "is_private_distribution": false, "token_type": "bearer",
            "user": "ada@example.com", "hub_domain": "ada-dev.hubspot.com"}),
        )
        .into_response();
    }
    // Dropbox's RPC endpoints are POST only.
    let expected_method = if provider == "dropbox" {
        Method::POST
    } else {
        Method::GET
    };
    if method != expected_method {
        return wrong_method();
    }
    if live_bearer(&front, &headers).is_none() {
        return unauthorized();
    }
    let answer = match provider {
        "google" | "microsoft" | "linkedin" => json!({
            "sub": "ada-1815", "name": "Ada Lovelace", "given_name": "Ada",
            "family_name": "Lovelace", "email": "ada@example.com",
            "picture": "https://example.com/ada.png"}),
        // The fields the preset's URL asks for, and only with `fields`.
        "facebook" => {
            if !uri.query().unwrap_or_default().contains("fields=") {
                return axum::Json(json!({"id": "10158", "name": "Ada Lovelace"})).into_response();
            }
            json!({"id": "10158", "name": "Ada Lovelace", "first_name": "Ada",
                   "last_name": "Lovelace", "email": "ada@example.com",
                   "location": {"id": "106078429431815", "name": "London, United Kingdom"},
                   "link": "https://www.facebook.com/app_scoped_user_id/10158/",
                   "picture": {"data": {"height": 50, "is_silhouette": false,
                       "url": "https://example.com/ada.png", "width": 50}}})
        }
        "slack" => json!({"ok": true,
            "user": {"name": "Ada Lovelace", "id": "U0ADA", "email": "ada@example.com",
                     "image_192": "https://example.com/ada-192.png"},
            "team": {"id": "T0ENGINE"}}),
        "airtable" => json!({"id": "usrAda1815", "email": "ada@example.com",
                             "scopes": ["data.records:read", "user.email:read"]}),
        "dropbox" => json!({"account_id": "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc",
            "name": {"given_name": "Ada", "surname": "Lovelace", "familiar_name": "Ada",
                     "display_name": "Ada Lovelace", "abbreviated_name": "AL"},
            "email": "ada@example.com", "email_verified": true, "disabled": false,
            "country": "GB", "locale": "en", "is_paired": false,
            "account_type": {".tag": "basic"},
            "profile_photo_url": "https://example.com/ada.png"}),
        "zoom" => json!({"id": "KdYKjnimT4KPd8FFgQt9FQ", "first_name": "Ada",
            "last_name": "Lovelace", "display_name": "Ada Lovelace",
            "email": "ada@example.com", "type": 1, "phone_number": "+44 20 7946 0000",
            "pic_url": "https://example.com/ada.png", "status": "active"}),
        other => panic!("{other} has no userinfo endpoint"),
    };
    axum::Json(answer).into_response()
}

/// The form pairs of a body.
fn form_pairs(body: &[u8]) -> HashMap<String, String> {
    reqwest::Url::parse(&format!(
        "http://form.invalid/?{}",
        String::from_utf8_lossy(body)
    ))
    .map(|u| u.query_pairs().into_owned().collect())
    .unwrap_or_default()
}

/// A protected API of the provider: only live tokens.
async fn resource(State(front): State<Shared>, headers: HeaderMap) -> Response {
    match live_bearer(&front, &headers) {
        Some(token) => {
            front.seen().resource_bearers.push(token);
            axum::Json(json!({"ok": true})).into_response()
        }
        None => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_token"})),
        )
            .into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// The cycle
// ---------------------------------------------------------------------------------------------

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Runs scenario `id` now and waits for the execution to finish.
async fn run_now(api: &Api, id: &str) -> Value {
    let started = api
        .post(&format!("/api/scenarios/{id}/run"), &json!({}))
        .await;
    assert!(started.status.is_success(), "run now: {}", started.text);
    let execution = started.json["executionId"]
        .as_str()
        .or(started.json["id"].as_str())
        .unwrap_or_else(|| panic!("run now answer: {}", started.text))
        .to_string();
    api.finished(&execution).await
}

/// The connection listed under `name` by `GET /api/connections`.
async fn listed(api: &Api, name: &str) -> Value {
    let list = api.get("/api/connections").await.expect(200, "list").json;
    list["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no connection {name} in {list}"))
}

/// The URL that starts the authorization: the bot's start with the API token, or the end
/// user's signed link made by `tokens:OAuthLink`.
async fn start_url(api: &Api, base: &str, case: &Case) -> String {
    if case.context == "bot" {
        return format!("{base}/oauth/start/{}", case.provider);
    }
    let linker = api
        .create(&json!({
            "name": "link",
            "flow": [{"id": 1, "module": "tokens:OAuthLink",
                      "mapper": {"integration": case.provider, "user": END_USER}}]
        }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let execution = run_now(api, &linker).await;
    assert_eq!(execution["status"], "success", "{execution}");
    let log = api.log(execution["id"].as_str().unwrap()).await;
    log[0]["output"]["url"].as_str().unwrap().to_string()
}

/// The full cycle of one preset.
async fn cycle(case: &'static Case) {
    let db = TestDb::new(Backend::Sqlite)
        .await
        .expect("a SQLite database");
    let mock = MockOAuth::start().await;
    let front = Front::start(case, &mock).await;
    let provider = case.provider;

    // The preset with its URLs' origin pointed at the front.
    let mut entry = json!({
        "provider": provider, "context": case.context, "scope": case.scope,
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
    });
    for field in ["authorize_url", "token_url", "userinfo_url"] {
        if let Some(url) = overridden(provider, field, &front.base) {
            entry[field] = json!(url);
        }
    }
    for (k, v) in (case.extra)().as_object().unwrap() {
        entry[k] = v.clone();
    }
    let file = db.write_json("integrations.json", &json!([entry]));
    let service = db.serve(&["--integrations", file.to_str().unwrap()]).await;
    let api = &service.api;
    let tenant = (case.extra)()["tenant"].as_str().map(str::to_string);
    let preset_path = |field: &str| {
        let path = path_of(&overridden(provider, field, &front.base).unwrap());
        match &tenant {
            Some(t) => path.replace("{tenant}", t),
            None => path,
        }
    };

    // Authorize: the provider's URL, PKCE, and the provider's parameters.
    let start = start_url(api, &service.base, case).await;
    let redirect = Reply::from(
        no_redirects()
            .get(&start)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(302, "start");
    let location = reqwest::Url::parse(redirect.header("location").unwrap()).unwrap();
    assert_eq!(
        location.path(),
        preset_path("authorize_url"),
        "{provider}: the preset's authorize path"
    );
    assert!(location.as_str().starts_with(&front.base), "{location}");
    let query: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(
        query["redirect_uri"],
        format!("{}/oauth/callback", service.base)
    );
    for (param, expected) in case.authorize {
        assert_eq!(
            query.get(*param).map(String::as_str),
            *expected,
            "{provider}: authorize parameter {param} in {location}"
        );
    }
    assert!(!location.as_str().contains(CLIENT_SECRET));

    // Callback: the browser goes through the provider and comes back connected.
    let page = Reply::from(
        reqwest::Client::new()
            .get(location.as_str())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, 200, "{provider}: {}", page.text);
    assert!(page.text.contains("Connected"), "{}", page.text);
    let tokens = front.seen().tokens.clone();
    assert_eq!(tokens[0].grant_type, "authorization_code", "{tokens:?}");
    assert_eq!(tokens[0].path, preset_path("token_url"), "{provider}");
    assert_eq!(
        tokens[0].client_auth,
        Some(case.client_auth),
        "{provider}: the client authenticates the provider's way"
    );
    let connected_with = front.seen().primary.last().cloned().unwrap();
    if case.renewal == Renewal::Exchange {
        // The code's short-lived token is exchanged at once for a long-lived one.
        assert_eq!(tokens.len(), 2, "{tokens:?}");
        assert_eq!(tokens[1].grant_type, "fb_exchange_token");
        assert_eq!(tokens[1].client_auth, Some(ClientAuth::Body));
        assert_eq!(
            tokens[1].exchanged.as_ref(),
            Some(&front.seen().primary[0]),
            "the code's token is the one exchanged"
        );
        assert!(connected_with.starts_with("EAAlong"), "{connected_with}");
    } else {
        assert_eq!(tokens.len(), 1, "{tokens:?}");
    }
    let userinfo_calls = front.seen().userinfo_calls;
    let has_userinfo = overridden(provider, "userinfo_url", "").is_some();
    assert_eq!(
        userinfo_calls,
        usize::from(has_userinfo),
        "{provider}: userinfo asked once, or never when the token answer carries it"
    );

    let name = match case.context {
        "user" => format!("{provider}:{END_USER}"),
        _ => provider.to_string(),
    };
    let connection = listed(api, &name).await;
    assert_eq!(connection["provider"], provider);
    assert_eq!(connection["context"], case.context);
    assert_eq!(connection["status"], "connected");
    assert_eq!(
        connection["expiresAt"].is_string(),
        case.renewal != Renewal::Never,
        "{provider}: {connection}"
    );

    // Call: the token reaches the provider's API; the user's info is normalized.
    let scenario = api
        .create(&json!({
            "name": format!("{provider} cycle"),
            "flow": [
                {"id": 1, "module": "http:ActionSendDataOAuth", "version": 3,
                 "parameters": {"__IMTCONN__": name, "handleErrors": true},
                 "mapper": {"url": format!("{}/resource", front.base), "method": "get",
                            "parseResponse": true}},
                {"id": 2, "module": "tokens:GetTokenInfo", "mapper": {"token": name}},
                {"id": 3, "module": "tokens:GetFullToken", "mapper": {"token": name}}
            ]
        }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let first = run_now(api, &scenario).await;
    assert_eq!(first["status"], "success", "{provider}: {first}");
    assert_eq!(
        front.seen().resource_bearers.last(),
        Some(&connected_with),
        "{provider}: the call carries the integration's token"
    );
    let log = api.log(first["id"].as_str().unwrap()).await;
    let info = &log[1]["output"];
    for (field, value) in case.info {
        assert_eq!(info[*field], *value, "{provider}: info.{field} in {info}");
    }
    let full = &log[2]["output"];
    assert_eq!(full["credentials"]["access_token"], "[redacted]", "{full}");

    // Refresh: the provider refuses the token; the connection renews it its way, once.
    let mut texts: Vec<String> = Vec::new();
    front.invalidate();
    let second = run_now(api, &scenario).await;
    let tokens = front.seen().tokens.clone();
    let before = if case.renewal == Renewal::Exchange {
        2
    } else {
        1
    };
    match case.renewal {
        Renewal::RefreshToken | Renewal::Exchange => {
            assert_eq!(second["status"], "success", "{provider}: {second}");
            assert_eq!(tokens.len(), before + 1, "one renewal: {tokens:?}");
            let renewal = &tokens[before];
            let grant = match case.renewal {
                Renewal::Exchange => "fb_exchange_token",
                _ => "refresh_token",
            };
            assert_eq!(renewal.grant_type, grant, "{provider}");
            assert_eq!(renewal.path, preset_path("token_url"));
            assert_eq!(renewal.client_auth, Some(case.client_auth), "{provider}");
            if case.renewal == Renewal::Exchange {
                assert_eq!(renewal.exchanged.as_ref(), Some(&connected_with));
            }
            let renewed = front.seen().primary.last().cloned().unwrap();
            assert_ne!(renewed, connected_with);
            assert_eq!(
                front.seen().resource_bearers.last(),
                Some(&renewed),
                "{provider}: the call was sent again with the renewed token"
            );
            assert_eq!(listed(api, &name).await["status"], "connected");

            // A renewal the provider refuses (in its own error shape: Slack's `ok: false`,
            // Facebook's OAuthException …) means connecting again.
            mock.revoke_refresh_tokens().await;
            front.seen().revoked = true;
            front.invalidate();
            let refused = run_now(api, &scenario).await;
            assert_eq!(refused["status"], "error", "{provider}: {refused}");
            assert_eq!(
                refused["error"]["name"], "InvalidAccessTokenError",
                "{provider}: {refused}"
            );
            assert_eq!(listed(api, &name).await["status"], "needs_reauth");
            texts.push(refused.to_string());
        }
        Renewal::Never => {
            assert_eq!(second["status"], "error", "{provider}: {second}");
            assert_eq!(
                second["error"]["name"], "InvalidAccessTokenError",
                "{second}"
            );
            assert_eq!(tokens.len(), before, "nothing to refresh with: {tokens:?}");
            assert_eq!(listed(api, &name).await["status"], "needs_reauth");
        }
    }

    // No token and not the client secret anywhere they could leak.
    let mut secrets = front.seen().handed_out.clone();
    secrets.push(CLIENT_SECRET.to_string());
    texts.extend([
        api.get("/api/connections").await.text,
        api.get("/api/integrations").await.text,
        log.to_string(),
        second.to_string(),
        page.text,
    ]);
    let data_log = service.proc.log();
    for secret in &secrets {
        assert!(
            !data_log.contains(secret.as_str()),
            "{provider}: a secret is in the log"
        );
        for text in &texts {
            assert!(
                !text.contains(secret.as_str()),
                "{provider}: a secret is in an answer"
            );
        }
        let files = common::connections::files_containing(&db.data_dir(), secret);
        assert!(files.is_empty(), "{provider}: a secret is in {files:?}");
    }
}
