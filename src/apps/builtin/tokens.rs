//! The token helpers of integrations (`serve --integrations`), as modules of the `tokens` app
//! — the seeds' `get_access_token`, `get_token_info`, `get_full_token`, `delete_token` and
//! `oauth_link`, plus the trigger of their `token:<alias>` events:
//!
//! | module | mapper | output |
//! |---|---|---|
//! | `tokens:GetAccessToken` | `token` | `{accessToken}`: refreshed when expired; `null` when it cannot be |
//! | `tokens:GetTokenInfo` | `token` | `{name, first_name, last_name, nickname, email, location, description, phone, urls}` |
//! | `tokens:GetFullToken` | `token` | the token's metadata, every secret `[redacted]` |
//! | `tokens:DeleteToken` | `token` | `{deleted: true|false}` |
//! | `tokens:OAuthLink` | `integration`, `user` | `{url}`: the signed link that end user opens |
//! | `tokens:WatchTokenEvents` | parameters `integration` | one bundle per completed user authorization: `{event: "token:<alias>", integration, token, user}` |
//!
//! `token` is a token reference: `{{bot.tokens.<alias>}}`, `{{user.tokens.<alias>}}`, the
//! `token` of a token event, or a connection's name or id.
//!
//! Invariant: an access token a scenario reads is added to the execution's [`Redactions`], so
//! it is replaced by `[redacted]` in the stored history and printed reports.

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use crate::module::connection::TOKEN_INFO_FIELDS;
use crate::module::{
    ConnectionsHandle, ErrorKind, ExecutionContext, HookReply, HookRequest, HookTarget,
    InstantTrigger, Invocation, Module, ModuleError, ModuleKind, Redactions,
};

/// Which helper a module is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Helper {
    GetAccessToken,
    GetTokenInfo,
    GetFullToken,
    DeleteToken,
    OAuthLink,
}

/// One token helper module.
pub(crate) struct TokenHelper(pub(crate) Helper);

fn connections(context: &ExecutionContext) -> Result<&ConnectionsHandle, ModuleError> {
    context
        .extensions
        .get::<ConnectionsHandle>()
        .ok_or_else(|| {
            ModuleError::config(
                "tokens are stored connections: this process has none (`switchyard run` needs the \
             --data-dir that holds them)",
            )
        })
}

/// A required text field of the mapper.
fn required<'m>(mapper: &'m Value, field: &str, what: &str) -> Result<&'m str, ModuleError> {
    match mapper.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim()),
        Some(Value::Null) | None => Err(ModuleError::data(format!(
            "mapper.{field}: is required ({what})"
        ))),
        Some(Value::String(_)) => Err(ModuleError::data(format!(
            "mapper.{field}: is empty ({what})"
        ))),
        Some(_) => Err(ModuleError::data(format!(
            "mapper.{field}: must be text ({what})"
        ))),
    }
}

const TOKEN_WHAT: &str =
    "a token reference such as {{bot.tokens.google}} or {{user.tokens.google}}";

impl Module for TokenHelper {
    fn check(&self, _parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        let fields: &[&str] = match self.0 {
            Helper::OAuthLink => &["integration", "user"],
            _ => &["token"],
        };
        fields
            .iter()
            .filter(|f| mapper.get(**f).is_none())
            .map(|f| (format!("mapper.{f}"), "is required".to_string()))
            .collect()
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async move {
            let mapper = &invocation.mapper;
            let connections = connections(invocation.context)?;
            let output = match self.0 {
                Helper::GetAccessToken => {
                    let token = required(mapper, "token", TOKEN_WHAT)?;
                    match connections.resolve(token).await {
                        Ok(connection) => {
                            let access = connection.access_token();
                            if let (Some(access), Some(redactions)) =
                                (&access, invocation.context.extensions.get::<Redactions>())
                            {
                                redactions.add(access);
                            }
                            json!({"accessToken": access})
                        }
                        // Expired and not refreshable: the seed's nil.
                        Err(e) if e.kind == ErrorKind::InvalidAccessTokenError => {
                            json!({"accessToken": null})
                        }
                        Err(e) => return Err(e),
                    }
                }
                Helper::GetTokenInfo => {
                    let token = required(mapper, "token", TOKEN_WHAT)?;
                    let connection = connections.resolve(token).await?;
                    let info = connection.fields.get("info");
                    let mut out = Map::new();
                    for field in TOKEN_INFO_FIELDS {
                        let value = info.and_then(|i| i.get(*field)).cloned().unwrap_or(
                            if *field == "urls" {
                                json!({})
                            } else {
                                Value::Null
                            },
                        );
                        out.insert((*field).into(), value);
                    }
                    Value::Object(out)
                }
                Helper::GetFullToken => {
                    let token = required(mapper, "token", TOKEN_WHAT)?;
                    connections.describe(token).await?
                }
                Helper::DeleteToken => {
                    let token = required(mapper, "token", TOKEN_WHAT)?;
                    json!({"deleted": connections.delete(token).await?})
                }
                Helper::OAuthLink => {
                    let alias = required(mapper, "integration", "an integration's alias")?;
                    let user = required(mapper, "user", "the end user's id")?;
                    json!({"url": connections.oauth_link(alias, user)?})
                }
            };
            Ok(vec![output])
        })
    }
}

/// `tokens:WatchTokenEvents`: starts a scenario each time an end user completes the
/// authorization of a `user` integration (`parameters.integration`: its alias). The events
/// come from this process's own `/oauth/callback`, which queues them on the scenario's hook;
/// there is no outside service to register with.
pub(crate) struct WatchTokenEvents;

impl Module for WatchTokenEvents {
    fn kind(&self) -> ModuleKind {
        ModuleKind::InstantTrigger
    }

    fn check(&self, parameters: &Map<String, Value>, _mapper: &Value) -> Vec<(String, String)> {
        match parameters.get("integration") {
            Some(Value::String(s)) if !s.trim().is_empty() => Vec::new(),
            _ => vec![(
                "parameters.integration".into(),
                "is required: the alias of a `context: user` integration".into(),
            )],
        }
    }

    fn instant(&self) -> Option<&dyn InstantTrigger> {
        Some(self)
    }

    fn call<'a>(
        &'a self,
        _invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async {
            Err(ModuleError::config(
                "tokens:WatchTokenEvents starts a scenario; it cannot be called as an action",
            ))
        })
    }
}

impl InstantTrigger for WatchTokenEvents {
    fn verify(
        &self,
        _parameters: &Map<String, Value>,
        _connection: Option<&crate::module::Connection>,
        _hook: HookTarget<'_>,
        _request: HookRequest<'_>,
    ) -> Option<HookReply> {
        None
    }

    fn delivery_id(&self, request: HookRequest<'_>) -> Option<String> {
        request.header("x-switchyard-event-id").map(str::to_string)
    }

    fn attach<'a>(
        &'a self,
        _parameters: &'a Map<String, Value>,
        _hook: HookTarget<'a>,
        _context: &'a ExecutionContext,
    ) -> BoxFuture<'a, Result<Value, ModuleError>> {
        // The events are this process's own: nothing to register elsewhere.
        Box::pin(async { Ok(json!({})) })
    }

    fn detach<'a>(
        &'a self,
        _parameters: &'a Map<String, Value>,
        _hook: HookTarget<'a>,
        _context: &'a ExecutionContext,
    ) -> BoxFuture<'a, Result<(), ModuleError>> {
        Box::pin(async { Ok(()) })
    }
}
