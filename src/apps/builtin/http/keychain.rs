//! Make's keychains: the stored connection an HTTP module's parameters name (v4's
//! `basicAuthKeychain`, `apiKeyKeychain`, `oAuthKeychain`; the credential-taking variants'
//! `__IMTCONN__` or `auth`), the kinds of connection each accepts, and the one conversion of
//! that connection into the transport's [`Auth`].
//!
//! Invariant: a connection of a kind the module cannot use is refused with an error naming the
//! field, the connection and the kind needed, never sent.

use super::*;

/// The kind of stored connection a module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeychainKind {
    Basic,
    ApiKey,
    /// A connection with an access token sent as `Authorization: Bearer …`: an `oauth2`
    /// integration's (refreshed as needed), a service account's or a `bearer` token.
    OAuth,
}

impl KeychainKind {
    /// The connection kind it needs, as messages name it: the first it accepts.
    pub(super) fn connection_kind(self) -> &'static str {
        self.accepted_kinds()[0]
    }

    /// The stored connection kinds it accepts: what the activation check asks of the
    /// connection and what a call refuses otherwise.
    pub(super) fn accepted_kinds(self) -> &'static [&'static str] {
        match self {
            KeychainKind::Basic => &["basic"],
            KeychainKind::ApiKey => &["api_key"],
            // An integration's token, a service account's, or a bearer token.
            KeychainKind::OAuth => &["oauth2", "service_account", "bearer"],
        }
    }
}

/// The stored connection a request authenticates with: the parameter that names it and the
/// name or id it gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Keychain {
    pub(super) field: String,
    pub(super) reference: String,
    pub(super) kind: KeychainKind,
}

/// The stored connection the module's parameters name, if it uses one. A missing reference or
/// an authentication type Switchyard lacks is a configuration problem known at load time.
pub(super) fn keychain(
    dialect: Dialect,
    credentials: Credentials,
    parameters: &Map<String, Value>,
) -> Result<Option<Keychain>, Problem> {
    let config_problem = |field: &str, reason: String| Problem {
        field: field.to_string(),
        reason,
        unsupported: true,
        at_load: true,
    };
    let named = |fields: &[&'static str], kind: KeychainKind, why: &str| {
        match crate::module::connection::reference_in(parameters, fields) {
            Some((field, reference)) => Ok(Some(Keychain {
                field: format!("parameters.{field}"),
                reference,
                kind,
            })),
            None => Err(config_problem(
                &format!("parameters.{}", fields[0]),
                format!(
                    "is required{why}: the name or id of a stored {} connection \
                     (`switchyard connections add`)",
                    kind.connection_kind()
                ),
            )),
        }
    };
    const CONNECTION: &str = crate::module::connection::CONNECTION_PARAMETER;
    match (dialect, credentials) {
        // Make's exports name the keychain `key` (basic, API key) or `account` (OAuth).
        (_, Credentials::Basic) => named(&[CONNECTION, "key"], KeychainKind::Basic, ""),
        (_, Credentials::ApiKey) => named(&[CONNECTION, "key", "auth"], KeychainKind::ApiKey, ""),
        (_, Credentials::OAuth) => named(&[CONNECTION, "account", "auth"], KeychainKind::OAuth, ""),
        (Dialect::SendData, Credentials::Fields) => Ok(None),
        (Dialect::MakeRequest, Credentials::Fields) => {
            let auth = parameters.get("authenticationType").map(text);
            match auth.as_deref().map(str::trim) {
                None | Some("") | Some("noAuth") => Ok(None),
                Some("apiKey") => named(
                    &["apiKeyKeychain", CONNECTION],
                    KeychainKind::ApiKey,
                    " with authenticationType apiKey",
                ),
                Some("basicAuth") => named(
                    &["basicAuthKeychain", CONNECTION],
                    KeychainKind::Basic,
                    " with authenticationType basicAuth",
                ),
                Some("oAuth") => named(
                    &["oAuthKeychain", "oauthKeychain", CONNECTION],
                    KeychainKind::OAuth,
                    " with authenticationType oAuth",
                ),
                Some(other) => Err(config_problem(
                    "parameters.authenticationType",
                    format!("'{other}' is not one of noAuth, apiKey, basicAuth, oAuth"),
                )),
            }
        }
    }
}

/// The execution's connections, or an error saying that this process has none.
pub(super) fn connections<'c>(
    keychain: &Keychain,
    context: &'c ExecutionContext,
) -> Result<&'c ConnectionsHandle, ModuleError> {
    context
        .extensions
        .get::<ConnectionsHandle>()
        .ok_or_else(|| {
            ModuleError::config(format!(
                "{}: connection \"{}\" cannot be used: this process has no stored connections \
             (`switchyard run` needs the --data-dir that holds them)",
                keychain.field, keychain.reference
            ))
        })
}

/// The credentials of the stored connection `keychain` names, found through the execution's
/// connections, with the connection.
pub(super) async fn keychain_auth(
    keychain: &Keychain,
    module: &str,
    context: &ExecutionContext,
) -> Result<(Auth, Connection), ModuleError> {
    let connection = connections(keychain, context)?
        .resolve(&keychain.reference)
        .await?;
    let auth = connection_auth(keychain, module, &connection)?;
    Ok((auth, connection))
}

/// The [`Auth`] of `connection`, which must be of the kind `keychain` needs.
pub(super) fn connection_auth(
    keychain: &Keychain,
    module: &str,
    connection: &Connection,
) -> Result<Auth, ModuleError> {
    if !keychain
        .kind
        .accepted_kinds()
        .contains(&connection.kind.as_str())
    {
        let needed = match keychain.kind {
            KeychainKind::OAuth => {
                "an OAuth2 connection (an integration's token, or a bearer token)".to_string()
            }
            kind => format!("a {} connection", kind.connection_kind()),
        };
        return Err(ModuleError::config(format!(
            "{}: connection \"{}\" is a {} connection; {module} needs {needed}",
            keychain.field, connection.name, connection.kind
        )));
    }
    // The one conversion: the connection's typed credential, then its transport `Auth`.
    let credential = connection.credential().map_err(|mut e| {
        e.message = format!("{}: {}", keychain.field, e.message);
        e
    })?;
    crate::apps::auth::auth_of(&credential).map_err(|mut e| {
        e.message = format!(
            "{}: connection \"{}\": {}",
            keychain.field, connection.name, e.message
        );
        e
    })
}
