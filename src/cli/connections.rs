//! `switchyard connections add|list|test|remove|rotate-key`: the stored connections of a data
//! directory (or `--database-url`), sealed under the master key (`SWITCHYARD_MASTER_KEY`, or
//! `master.key` in the data directory). Secrets can come from standard input instead of the
//! command line (`--token-stdin`, `--password-stdin`), where other users could read them; no
//! output ever shows one.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::admin::AdminArgs;
use super::service::DatabaseArgs;
use crate::api::{connection_json, rfc3339};
use crate::apps::{AppRegistry, EgressPolicy};
use crate::connections::{
    KINDS, MasterKey, NEW_MASTER_KEY_ENV, NewConnectionInput, OAuthSettings, Vault,
};
use crate::store::{ConnectionRow, Store};

#[derive(Subcommand)]
pub enum ConnectionsCommand {
    /// Stores a connection, sealed under the master key.
    Add(Box<AddArgs>),
    /// Lists the stored connections (name, id, app, kind, created, key id; never a secret).
    List,
    /// Opens a connection with the master key and runs its app's test request; a connection
    /// an integration made is checked with its provider (token refreshed when expiring and
    /// shown to its userinfo endpoint, a service account's token minted, a secret opened).
    Test {
        name: String,
        /// The integrations file(s) declaring the integration that made it (as `serve
        /// --integrations`): needed to test an integration's connection.
        #[arg(long = "integrations", value_name = "FILE")]
        integrations: Vec<PathBuf>,
    },
    /// Deletes a connection.
    Remove { name: String },
    /// Stores the value of a `provider: secret` integration, or the JSON key of a
    /// `provider: google_service_account` one, sealed like a token. The value is read from
    /// standard input (all of it, without the final newline) or from --file.
    SetSecret {
        /// The integration's alias.
        alias: String,
        /// The integrations file(s) that declare it (as `serve --integrations`).
        #[arg(long = "integrations", value_name = "FILE", required = true)]
        integrations: Vec<PathBuf>,
        /// Reads the value from this file (a service account's JSON key, say).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Connects NAME, a connection of APP's oauth2 connection type, in a browser through the
    /// auth_code integration ALIAS: prints the provider's URL to open (the first line of
    /// standard output), then waits until the running `serve` of this data directory (or
    /// database), started with the same --integrations and --public-url, has stored it from
    /// the provider's callback. Connecting an existing oauth2 connection of APP made through
    /// ALIAS again gives it new tokens.
    Authorize(AuthorizeArgs),
    /// Re-seals every connection under a new master key, in one transaction.
    RotateKey {
        /// The new key (64 hex digits or base64 of 32 bytes) from this file; else from
        /// SWITCHYARD_NEW_MASTER_KEY; else a new random key (key file only).
        #[arg(long)]
        new_key_file: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct AuthorizeArgs {
    /// The connection's name, as scenarios give it in `parameters.__IMTCONN__`.
    name: String,
    /// The app whose oauth2 connection type to connect.
    #[arg(long)]
    app: String,
    /// The auth_code integration (its alias) to connect through.
    #[arg(long)]
    integration: String,
    /// The integrations file(s) declaring it, as the running `serve` was given them.
    #[arg(long = "integrations", value_name = "FILE", required = true)]
    integrations: Vec<PathBuf>,
    /// The running `serve`'s public URL (the provider sends the browser back to
    /// `URL/oauth/callback`): as `serve --public-url`, whose default is the address it listens on.
    #[arg(long, env = "SWITCHYARD_PUBLIC_URL", value_parser = super::service::parse_public_url,
          default_value = "http://127.0.0.1:8080")]
    public_url: String,
    /// How long to wait for the callback, in seconds (an authorization lives 10 minutes).
    #[arg(long, value_name = "SECONDS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    timeout: u64,
}

#[derive(Args)]
pub struct AddArgs {
    /// The connection's name, as scenarios give it in `parameters.__IMTCONN__`.
    name: String,
    /// Make's id of the connection, so that exports naming it by number
    /// (`"__IMTCONN__": 33477`, `"account": 33477`, `"key": 33477`) use this one.
    #[arg(long, value_name = "N")]
    id: Option<u64>,
    /// The app whose connection this is (`chatbot`, `http` …).
    #[arg(long)]
    app: String,
    /// One of api_key, bearer, basic, secret [default: basic with --username, else the kind of
    /// the app's one connection type that is typed in (an api_key type's key going where the
    /// app puts it), else bearer].
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(KINDS))]
    kind: Option<String>,
    /// The secret: a bearer token, an API key (`--kind api_key`) or a secret's value
    /// (`--kind secret`). Others on this machine may see it in the process list: prefer
    /// --token-stdin.
    #[arg(long, conflicts_with = "token_stdin")]
    token: Option<String>,
    /// Reads the secret from the first line of standard input.
    #[arg(long)]
    token_stdin: bool,
    /// The user name of a basic connection.
    #[arg(long)]
    username: Option<String>,
    /// The password of a basic connection (prefer --password-stdin).
    #[arg(long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Reads a basic connection's password from the first line of standard input.
    #[arg(long, conflicts_with = "token_stdin")]
    password_stdin: bool,
    /// The header or query parameter an api_key connection's key goes in (`X-Api-Key`).
    #[arg(long)]
    key_name: Option<String>,
    /// Where an api_key connection's key goes: header (default) or query.
    #[arg(long, value_parser = ["header", "query"])]
    placement: Option<String>,
    /// The base URL of the app's API (http:// or https://).
    #[arg(long)]
    base_url: Option<String>,
    /// Another field of the connection, as NAME=VALUE (repeatable). Without --token,
    /// --username or --password, the fields are the whole connection of the app's own type,
    /// checked against its connection schema (Twilio: `--field accountSid=AC… --field
    /// authToken=… --field from=+15017122661`).
    #[arg(long = "field", value_name = "NAME=VALUE")]
    fields: Vec<String>,
    /// An OAuth2 access token obtained elsewhere: stores a connection of the app's `oauth2`
    /// connection type (servers without a browser; tests).
    #[arg(long, conflicts_with_all = ["token", "token_stdin", "username", "kind"])]
    access_token: Option<String>,
    /// The refresh token issued with --access-token (needs --integration).
    #[arg(long, requires = "access_token")]
    refresh_token: Option<String>,
    /// The integration (its alias, declared in --integrations) that issued the tokens and
    /// refreshes them (with --service-account-key: whose scope its tokens get).
    #[arg(long)]
    integration: Option<String>,
    /// Seconds the access token lives from now (refreshed ahead of its expiry).
    #[arg(long, value_name = "SECONDS", requires = "access_token")]
    expires_in: Option<i64>,
    /// The scopes the token was granted (as the provider lists them).
    #[arg(long, requires = "access_token")]
    scope: Option<String>,
    /// A service account's JSON key file: stores a connection of the app's
    /// `service_account` connection type (its tokens are minted for the app's scopes, or
    /// those of --integration).
    #[arg(long, value_name = "FILE",
          conflicts_with_all = ["token", "token_stdin", "username", "kind", "access_token"])]
    service_account_key: Option<PathBuf>,
    /// Stores the connection without running its connection type's test request.
    #[arg(long)]
    no_test: bool,
    /// The integrations file(s) declaring --integration (as `serve --integrations`).
    #[arg(long = "integrations", value_name = "FILE")]
    integrations: Vec<PathBuf>,
}

/// The vault over `store`, with the master key `db`'s data directory (or the environment)
/// gives; with `apps`, new connections are checked against their app's connection type and
/// can be tested.
pub fn vault_on(
    store: Store,
    db: &DatabaseArgs,
    apps: Option<&AppRegistry>,
    integrations: Option<OAuthSettings>,
) -> anyhow::Result<Arc<Vault>> {
    let keys = db.keyring()?;
    let mut vault = Vault::new(store, keys);
    if let Some(apps) = apps {
        vault = vault.with_apps(apps.defined().clone());
    }
    if let Some(settings) = integrations {
        vault = vault.with_integrations(settings)?;
    }
    Ok(Arc::new(vault))
}

pub async fn connections(
    args: AdminArgs,
    command: ConnectionsCommand,
    modules: Arc<AppRegistry>,
    egress: super::EgressArgs,
) -> anyhow::Result<()> {
    let store = args.db.open().await?;
    // `add` may name an integration, and mints a service account's token to test it.
    let integrations = match &command {
        ConnectionsCommand::Add(add) => Some(OAuthSettings {
            integrations: crate::connections::load_files(&add.integrations)?,
            public_url: reqwest::Url::parse("http://127.0.0.1:8080")?,
            egress: EgressPolicy::new(egress.allow_egress.clone()),
        }),
        ConnectionsCommand::Test { integrations, .. } if !integrations.is_empty() => {
            Some(OAuthSettings {
                integrations: crate::connections::load_files(integrations)?,
                public_url: reqwest::Url::parse("http://127.0.0.1:8080")?,
                egress: EgressPolicy::new(egress.allow_egress.clone()),
            })
        }
        ConnectionsCommand::Authorize(authorize) => Some(OAuthSettings {
            integrations: crate::connections::load_files(&authorize.integrations)?,
            public_url: reqwest::Url::parse(&authorize.public_url)?,
            egress: EgressPolicy::new(egress.allow_egress.clone()),
        }),
        _ => None,
    };
    let vault = vault_on(store, &args.db, Some(&modules), integrations)?;
    let result = run(&vault, args.json, command).await;
    vault.store().close().await;
    result
}

fn row_json(row: &ConnectionRow) -> Value {
    connection_json(row)
}

fn print(json_out: bool, value: &Value, human: impl FnOnce() -> String) {
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        println!("{}", human());
    }
}

async fn run(vault: &Vault, json_out: bool, command: ConnectionsCommand) -> anyhow::Result<()> {
    match command {
        ConnectionsCommand::Add(args) if args.service_account_key.is_some() => {
            let path = args.service_account_key.clone().unwrap_or_default();
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let key: Value = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{}: not a service account's JSON key (line {}, column {})",
                    path.display(),
                    e.line(),
                    e.column()
                )
            })?;
            let fields = token_type_fields(&args)?;
            let input = crate::connections::NewServiceAccountConnection {
                name: args.name.clone(),
                id: args.id.map(|n| n.to_string()),
                app: args.app.clone(),
                key,
                integration: args.integration.clone(),
                fields,
                test: !args.no_test,
            };
            let row = vault.create_service_account(&input).await?;
            print(json_out, &row_json(&row), || {
                format!(
                    "stored connection \"{}\" (id {}, app {}, kind {}, sealed under key {})",
                    row.name, row.id, row.app, row.kind, row.key_id
                )
            });
        }
        ConnectionsCommand::Add(args) if args.access_token.is_some() => {
            let input = token_input(*args)?;
            let row = vault.create_from_tokens(&input).await?;
            print(json_out, &row_json(&row), || {
                format!(
                    "stored connection \"{}\" (id {}, app {}, kind {}, sealed under key {})",
                    row.name, row.id, row.app, row.kind, row.key_id
                )
            });
        }
        ConnectionsCommand::Add(args) => {
            let input = input(*args, &vault.connection_types())?;
            let row = vault.create(&input).await?;
            print(json_out, &row_json(&row), || {
                format!(
                    "stored connection \"{}\" (id {}, app {}, kind {}, sealed under key {})",
                    row.name, row.id, row.app, row.kind, row.key_id
                )
            });
        }
        ConnectionsCommand::SetSecret {
            alias,
            integrations,
            file,
        } => {
            let text = match &file {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None => {
                    let mut text = String::new();
                    std::io::stdin().read_to_string(&mut text)?;
                    text
                }
            };
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            let settings = OAuthSettings {
                integrations: crate::connections::load_files(&integrations)?,
                public_url: reqwest::Url::parse("http://127.0.0.1:8080")?,
                egress: Default::default(),
            };
            let vault =
                Vault::new(vault.store().clone(), vault.keyring()).with_integrations(settings)?;
            let row = vault
                .set_secret(&alias, &Value::String(text.to_string()))
                .await?;
            print(json_out, &row_json(&row), || {
                format!(
                    "stored the secret of integration \"{alias}\" (connection {}, sealed under \
                     key {})",
                    row.id, row.key_id
                )
            });
        }
        ConnectionsCommand::Authorize(args) => {
            let row = authorize(vault, &args).await?;
            print(json_out, &row_json(&row), || {
                format!(
                    "connected \"{}\" (id {}, app {}, through integration \"{}\")",
                    row.name, row.id, row.app, args.integration
                )
            });
        }
        ConnectionsCommand::List => {
            let rows = vault.list().await?;
            let value = json!({"connections": rows.iter().map(row_json).collect::<Vec<_>>()});
            print(json_out, &value, || {
                if rows.is_empty() {
                    return "no stored connections".to_string();
                }
                let mut lines = vec![format!(
                    "{:<24} {:<32} {:<12} {:<8} {:<24} KEY",
                    "NAME", "ID", "APP", "KIND", "CREATED"
                )];
                lines.extend(rows.iter().map(|r| {
                    format!(
                        "{:<24} {:<32} {:<12} {:<8} {:<24} {}",
                        r.name,
                        r.id,
                        r.app,
                        r.kind,
                        rfc3339(r.created_at),
                        r.key_id
                    )
                }));
                lines.join("\n")
            });
        }
        ConnectionsCommand::Test { name, .. } => {
            let report = vault.test(&name).await?;
            print(
                json_out,
                &json!({"connection": row_json(&report.connection), "ok": true,
                        "detail": report.detail}),
                || {
                    format!(
                        "connection \"{}\": {}",
                        report.connection.name, report.detail
                    )
                },
            );
        }
        ConnectionsCommand::Remove { name } => {
            let row = vault.remove(&name).await?;
            print(json_out, &json!({"removed": row_json(&row)}), || {
                format!("removed connection \"{}\" (id {})", row.name, row.id)
            });
        }
        ConnectionsCommand::RotateKey { new_key_file } => {
            let new_key = match (new_key_file, std::env::var(NEW_MASTER_KEY_ENV)) {
                (Some(path), _) => Some(MasterKey::read_file(&path)?),
                (None, Ok(text)) => Some(MasterKey::parse(&text, NEW_MASTER_KEY_ENV)?),
                (None, Err(_)) => None,
            };
            let rotation = vault.rotate_key(new_key).await?;
            print(
                json_out,
                &json!({"resealed": rotation.resealed, "oldKeyId": rotation.old_key_id,
                        "newKeyId": rotation.new_key_id, "key": rotation.source.to_string()}),
                || {
                    let mut text = format!(
                        "re-sealed {} connection(s) under master key {} (was {}); the key is in {}",
                        rotation.resealed,
                        rotation.new_key_id,
                        rotation.old_key_id,
                        rotation.source
                    );
                    if rotation.source == crate::connections::KeySource::Environment {
                        text.push_str(
                            ": set it to the new key for every process before they next start",
                        );
                    }
                    text
                },
            );
        }
    }
    Ok(())
}

/// The first line of standard input, without its line ending.
fn stdin_line(what: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the {what} from standard input"))?;
    let line = text.lines().next().unwrap_or_default().to_string();
    if line.is_empty() {
        anyhow::bail!("standard input gave no {what} (an empty first line)");
    }
    Ok(line)
}

/// The `--field NAME=VALUE` pairs of `args`.
/// A connection of the app's own type given field by field (`--field accountSid=AC… --field
/// authToken=… --field from=+1…`): each value typed as the type's `configuration` schema
/// declares it (a number, true/false, else text); the vault then checks them against the
/// schema, each problem naming its field.
fn schema_fields_input(
    args: AddArgs,
    app_type: &crate::connections::ConnectionTypeInfo,
    kind: String,
) -> anyhow::Result<NewConnectionInput> {
    let properties = app_type
        .configuration
        .get("properties")
        .and_then(Value::as_object);
    let mut fields = Map::new();
    if let Some(url) = &args.base_url {
        fields.insert(
            crate::connections::BASE_URL_FIELD.into(),
            Value::String(url.clone()),
        );
    }
    extra_fields(&args, &mut fields)?;
    for (name, value) in fields.iter_mut() {
        let declared = properties
            .and_then(|p| p.get(name))
            .and_then(|f| f.get("type"))
            .and_then(Value::as_str);
        let Value::String(text) = value else { continue };
        let typed = match declared {
            Some("integer") => text.trim().parse::<i64>().ok().map(Value::from),
            Some("number") => text
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number),
            Some("boolean") => match text.trim() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            _ => continue,
        };
        // The value itself is never repeated: it may be a secret.
        *value = typed.with_context(|| {
            format!(
                "--field {name}: the {} app's connection expects {} here",
                app_type.app,
                declared.unwrap_or("text")
            )
        })?;
    }
    Ok(NewConnectionInput {
        id: args.id.map(|id| id.to_string()),
        name: args.name,
        app: args.app,
        kind: Some(kind),
        fields,
        test: !args.no_test,
    })
}

fn extra_fields(args: &AddArgs, fields: &mut Map<String, Value>) -> anyhow::Result<()> {
    for field in &args.fields {
        let (name, value) = field
            .split_once('=')
            // Not repeated: it may be a secret given the wrong way.
            .context("--field: expected NAME=VALUE")?;
        if fields.contains_key(name) {
            anyhow::bail!("--field {name}: the connection already has this field");
        }
        fields.insert(name.to_string(), Value::String(value.to_string()));
    }
    Ok(())
}

/// The type fields of an `oauth2` or `service_account` connection: `--base-url` and the
/// `--field NAME=VALUE`s (its token or key is the vault's).
fn token_type_fields(args: &AddArgs) -> anyhow::Result<Map<String, Value>> {
    let mut fields = Map::new();
    if let Some(url) = &args.base_url {
        fields.insert(
            crate::connections::BASE_URL_FIELD.into(),
            Value::String(url.clone()),
        );
    }
    extra_fields(args, &mut fields)?;
    Ok(fields)
}

/// The OAuth2 connection `args` describe (with --access-token).
fn token_input(args: AddArgs) -> anyhow::Result<crate::connections::NewTokenConnection> {
    if args.key_name.is_some() || args.placement.is_some() || args.password.is_some() {
        anyhow::bail!("--key-name, --placement and --password are not for OAuth2 connections");
    }
    let fields = token_type_fields(&args)?;
    Ok(crate::connections::NewTokenConnection {
        name: args.name,
        id: args.id.map(|n| n.to_string()),
        app: args.app,
        access_token: args.access_token.unwrap_or_default(),
        refresh_token: args.refresh_token,
        integration: args.integration,
        expires_in: args.expires_in,
        scope: args.scope,
        fields,
        test: !args.no_test,
    })
}

/// The connection `args` describe. Without `--kind`, an app defined as data with one
/// connection type (of those typed in, not OAuth2) gives it: `--token T` is then that type's
/// secret — an `api_key` type's key going where the app's `auth` puts it, unless
/// `--key-name`/`--placement` say otherwise.
fn input(
    args: AddArgs,
    types: &[crate::connections::ConnectionTypeInfo],
) -> anyhow::Result<NewConnectionInput> {
    let mut of_app = types.iter().filter(|t| t.app == args.app);
    let app_type = match (of_app.next(), of_app.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    };
    let kind = args.kind.clone().unwrap_or_else(|| {
        if args.username.is_some() {
            "basic".into()
        } else {
            app_type.map_or_else(|| "bearer".into(), |t| t.kind.to_string())
        }
    });
    // The key's place an api_key type's `auth` declares, when the command line says none.
    let declared = app_type
        .filter(|t| t.kind == kind)
        .and_then(|t| t.credential_place.clone());
    let key_name = args
        .key_name
        .clone()
        .or_else(|| declared.as_ref().map(|(_, name)| name.clone()));
    let placement = args
        .placement
        .clone()
        .or_else(|| declared.as_ref().map(|(place, _)| place.to_string()));
    let standard_flags = args.token.is_some()
        || args.token_stdin
        || args.username.is_some()
        || args.password.is_some()
        || args.password_stdin
        || args.key_name.is_some()
        || args.placement.is_some();
    if let Some(app_type) = app_type.filter(|t| t.kind == kind)
        && !standard_flags
        && !args.fields.is_empty()
    {
        return schema_fields_input(args, app_type, kind);
    }
    let secret = match (&args.token, args.token_stdin) {
        (Some(token), _) => Some(token.clone()),
        (None, true) => Some(stdin_line("secret")?),
        (None, false) => None,
    };
    let mut fields = Map::new();
    let mut put = |name: &str, value: String| {
        fields.insert(name.to_string(), Value::String(value));
    };
    match kind.as_str() {
        "basic" => {
            if secret.is_some() {
                anyhow::bail!(
                    "a basic connection takes --username and --password(-stdin), not --token"
                );
            }
            let username = args
                .username
                .clone()
                .context("a basic connection needs --username")?;
            let password = match (&args.password, args.password_stdin) {
                (Some(password), _) => password.clone(),
                (None, true) => stdin_line("password")?,
                (None, false) => {
                    anyhow::bail!("a basic connection needs --password-stdin (or --password)")
                }
            };
            put("username", username);
            put("password", password);
        }
        other => {
            if args.username.is_some() || args.password.is_some() || args.password_stdin {
                anyhow::bail!("--username and --password are for basic connections only");
            }
            let secret = secret.with_context(|| {
                format!("a {other} connection needs --token-stdin (or --token)")
            })?;
            match other {
                "bearer" => put("token", secret),
                "secret" => put("value", secret),
                _ => {
                    put("key", secret);
                    put(
                        "name",
                        key_name
                            .clone()
                            .context("an api_key connection needs --key-name (e.g. X-Api-Key)")?,
                    );
                    put(
                        "placement",
                        placement.clone().unwrap_or_else(|| "header".into()),
                    );
                }
            }
        }
    }
    if kind != "api_key" && (args.key_name.is_some() || args.placement.is_some()) {
        anyhow::bail!("--key-name and --placement are for api_key connections only");
    }
    if let Some(url) = &args.base_url {
        put(crate::connections::BASE_URL_FIELD, url.clone());
    }
    extra_fields(&args, &mut fields)?;
    Ok(NewConnectionInput {
        id: args.id.map(|id| id.to_string()),
        name: args.name,
        app: args.app,
        kind: Some(kind),
        fields,
        test: !args.no_test,
    })
}

/// How long the callback may take to store the connection once it has taken the state: the
/// code exchange, the userinfo call and the app's test request.
const CALLBACK_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// `connections authorize`: starts the authorization, prints its URL and waits for the
/// running `serve` to store the connection (the state taken, then the connection written).
async fn authorize(vault: &Vault, args: &AuthorizeArgs) -> anyhow::Result<ConnectionRow> {
    let store = vault.store();
    let before = match store.get_connection(&args.name).await {
        Ok(existing) => Some(existing.row.updated_at),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let started = vault
        .start_app_authorization(&args.name, &args.app, &args.integration)
        .await?;
    println!("{}", started.url);
    use std::io::Write as _;
    std::io::stdout().flush()?;
    eprintln!(
        "Open the URL above in a browser and consent (scopes: {}). Waiting up to {} s for the \
         provider to send the browser back to {}/oauth/callback …",
        if started.scopes.is_empty() {
            "none".to_string()
        } else {
            started.scopes.join(" ")
        },
        args.timeout,
        args.public_url.trim_end_matches('/'),
    );
    let poll = std::time::Duration::from_millis(250);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(args.timeout);
    while store.oauth_state_pending(&started.state_hash).await? {
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "no callback came within {} s: is `serve` running on this data directory with \
                 --public-url {} and these --integrations? Run this command again to get a new URL",
                args.timeout,
                args.public_url
            );
        }
        tokio::time::sleep(poll).await;
    }
    let grace = tokio::time::Instant::now() + CALLBACK_GRACE;
    loop {
        match store.get_connection(&args.name).await {
            Ok(stored) if Some(stored.row.updated_at) != before => return Ok(stored.row),
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        if tokio::time::Instant::now() >= grace {
            anyhow::bail!(
                "the authorization ended without storing \"{}\": the provider refused, the \
                 authorization expired, or the app's test request failed (the browser's page and \
                 serve's log say which)",
                args.name
            );
        }
        tokio::time::sleep(poll).await;
    }
}
