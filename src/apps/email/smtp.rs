//! `email:ActionSendEmail` (Make's "Send an Email", version 7): the message is built by the
//! one MIME builder (`expr::functions::mime::build_message`, `mail-builder`), sent by `lettre`
//! over SMTP (implicit TLS, STARTTLS required, or plain) to the address the egress guard
//! checked, the TLS name being the configured host.
//!
//! With `saveAfterSent` the message (without its `Bcc`) is then appended, read, to the IMAP
//! folder `folder` (`Sent` by default) of the same connection.
//!
//! Invariants: `bcc` recipients are in the envelope only, never in the message's headers; an
//! SMTP refusal is an error whose kind says whether a retry may help (4xx transient, 5xx a
//! `DataError`, a refused login `InvalidAccessTokenError`), its text without the password.

use std::sync::Arc;

use lettre::address::{Address as SmtpAddress, Envelope};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::{Map, Value, json};

use super::{
    Account, Call, NETWORK_TIMEOUT, Network, Security, Server, account_for, connection_problems,
    connection_reference, flag, setting,
};
use crate::expr::functions::mime;
use crate::expr::value;
use crate::module::{ErrorKind, Invocation, Module, ModuleError, ModuleKind, Reference};

/// `email:ActionSendEmail`.
pub(crate) struct SendEmail {
    net: Arc<Network>,
}

impl SendEmail {
    pub(crate) fn new(net: Arc<Network>) -> SendEmail {
        SendEmail { net }
    }
}

impl Module for SendEmail {
    fn kind(&self) -> ModuleKind {
        ModuleKind::Action
    }

    fn check(&self, parameters: &Map<String, Value>, _mapper: &Value) -> Vec<(String, String)> {
        connection_problems(parameters)
    }

    fn references(&self, parameters: &Map<String, Value>) -> Vec<Reference> {
        connection_reference(parameters)
    }

    fn call<'a>(&'a self, invocation: Invocation<'a>) -> Call<'a> {
        Box::pin(async move {
            let account =
                account_for(invocation.parameters, invocation.context, invocation.module).await?;
            let message = message_of(invocation.parameters, &invocation.mapper, &account)?;
            let recipients = recipients(&message)?;
            let from = sender_address(&message)?;
            let mut headers_only = message.clone();
            headers_only.remove("bcc");
            let bytes = mime::build_message(&headers_only)
                .map_err(|e| ModuleError::new(ErrorKind::DataError, e.0))?;
            let envelope = Envelope::new(Some(from), recipients.clone())
                .map_err(|e| ModuleError::new(ErrorKind::DataError, e.to_string()))?;
            let server = account.smtp()?;
            let transport = transport(&self.net, &account, server).await?;
            let response = transport
                .send_raw(&envelope, &bytes)
                .await
                .map_err(|e| smtp_error(&account, server, e))?;
            if flag(
                invocation.parameters,
                &invocation.mapper,
                "saveAfterSent",
                false,
            )? {
                let folder = setting(invocation.parameters, &invocation.mapper, "folder")
                    .map(value::to_text)
                    .filter(|f| !f.trim().is_empty())
                    .unwrap_or_else(|| "Sent".into());
                super::imap::append_sent(&self.net, &account, folder.trim(), &bytes).await?;
            }
            let message_id = mail_parser::MessageParser::default()
                .parse_headers(&bytes)
                .and_then(|m| m.message_id().map(|id| format!("<{id}>")));
            Ok(vec![json!({
                "messageId": message_id,
                "accepted": recipients.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "rejected": [],
                "response": account.scrub(format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                )),
            })])
        })
    }
}

/// Make's mapper as the collection `build_message` reads: `to`, `cc`, `bcc`, `subject`,
/// `html` or `text` by `contentType`, `attachments`, `replyTo`, `inReplyTo`, `references`,
/// `headers`, `priority`, and the sender: `from` (an address; the connection's by default)
/// named `sender` when the mapping gives a name.
fn message_of(
    parameters: &Map<String, Value>,
    mapper: &Value,
    account: &Account,
) -> Result<Map<String, Value>, ModuleError> {
    let get = |name: &str| setting(parameters, mapper, name).cloned();
    let mut message = Map::new();
    let from = get("from")
        .map(|v| value::to_text(&v))
        .or_else(|| account.default_from.clone())
        .ok_or_else(|| {
            ModuleError::config(
                "from: no sender address: map one, or give the connection a from field (its user \
                 name is not an address)",
            )
        })?;
    let from = match get("sender").map(|v| value::to_text(&v)) {
        Some(name) if !from.contains('<') => json!({"name": name, "address": from}),
        _ => Value::String(from),
    };
    message.insert("from".into(), from);
    for field in [
        "to",
        "cc",
        "bcc",
        "replyTo",
        "subject",
        "attachments",
        "headers",
    ] {
        if let Some(v) = get(field) {
            message.insert(field.into(), v);
        }
    }
    for field in ["inReplyTo", "references"] {
        match get(field) {
            Some(Value::Array(items)) if items.is_empty() => {}
            Some(Value::Array(items)) => {
                let ids: Vec<String> = items.iter().map(value::to_text).collect();
                message.insert(field.into(), Value::String(ids.join(" ")));
            }
            Some(v) => {
                message.insert(field.into(), v);
            }
            None => {}
        }
    }
    let content_type = get("contentType")
        .map(|v| value::to_text(&v).to_ascii_lowercase())
        .unwrap_or_else(|| "html".into());
    match content_type.as_str() {
        "html" => {
            for field in ["html", "text"] {
                if let Some(v) = get(field) {
                    message.insert(field.into(), v);
                }
            }
        }
        "text" => {
            if let Some(v) = get("text").or_else(|| get("html")) {
                message.insert("text".into(), v);
            }
        }
        other => {
            return Err(ModuleError::config(format!(
                "contentType: expected html or text, got \"{other}\""
            )));
        }
    }
    if let Some(priority) = get("priority").map(|v| value::to_text(&v).to_ascii_lowercase()) {
        let (x_priority, importance) = match priority.as_str() {
            "high" => ("1 (Highest)", "High"),
            "normal" => ("3 (Normal)", "Normal"),
            "low" => ("5 (Lowest)", "Low"),
            other => {
                return Err(ModuleError::config(format!(
                    "priority: expected high, normal or low, got \"{other}\""
                )));
            }
        };
        if priority != "normal" {
            let mut headers = match message.remove("headers") {
                Some(Value::Array(items)) => items,
                Some(Value::Object(map)) => map
                    .into_iter()
                    .map(|(k, v)| json!({"key": k, "value": v}))
                    .collect(),
                _ => Vec::new(),
            };
            headers.push(json!({"key": "X-Priority", "value": x_priority}));
            headers.push(json!({"key": "Importance", "value": importance}));
            message.insert("headers".into(), Value::Array(headers));
        }
    }
    Ok(message)
}

/// Every `to`, `cc` and `bcc` address, for the envelope; none is an error.
fn recipients(message: &Map<String, Value>) -> Result<Vec<SmtpAddress>, ModuleError> {
    let mut out = Vec::new();
    for field in ["to", "cc", "bcc"] {
        let Some(value) = message.get(field) else {
            continue;
        };
        for address in mime::address_list(value, field)
            .map_err(|e| ModuleError::new(ErrorKind::DataError, e.0))?
        {
            out.push(smtp_address(&address, field)?);
        }
    }
    if out.is_empty() {
        return Err(ModuleError::new(
            ErrorKind::DataError,
            "to: at least one recipient (to, cc or bcc) is required",
        ));
    }
    Ok(out)
}

/// The envelope's sender: the `from` address.
fn sender_address(message: &Map<String, Value>) -> Result<SmtpAddress, ModuleError> {
    let from = message.get("from").unwrap_or(&Value::Null);
    let list = mime::address_list(from, "from")
        .map_err(|e| ModuleError::new(ErrorKind::DataError, e.0))?;
    let first = list
        .first()
        .ok_or_else(|| ModuleError::config("from: a sender address is required"))?;
    smtp_address(first, "from")
}

fn smtp_address(address: &str, field: &str) -> Result<SmtpAddress, ModuleError> {
    address.parse::<SmtpAddress>().map_err(|e| {
        ModuleError::new(
            ErrorKind::DataError,
            format!("{field}: \"{address}\" is not an e-mail address: {e}"),
        )
    })
}

/// The SMTP transport for `server`: to the address the egress guard checked, TLS named after
/// the configured host, authenticated with the account's user name and password.
async fn transport(
    net: &Network,
    account: &Account,
    server: &Server,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, ModuleError> {
    let verify = net.verify_certificates(account, server)?;
    let address = net
        .addresses(server)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            ModuleError::new(
                ErrorKind::ConnectionError,
                format!("{}: the name has no address", server.host),
            )
        })?;
    let tls = || {
        TlsParameters::builder(server.host.clone())
            .dangerous_accept_invalid_certs(!verify)
            .dangerous_accept_invalid_hostnames(!verify)
            .build_rustls()
            .map_err(|e| ModuleError::config(format!("TLS could not be set up: {e}")))
    };
    let tls = match server.security {
        Security::Implicit => Tls::Wrapper(tls()?),
        Security::StartTls => Tls::Required(tls()?),
        Security::None => Tls::None,
    };
    let mut builder =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address.ip().to_string())
            .port(address.port())
            .tls(tls)
            .hello_name(ClientId::Domain("switchyard.localhost".into()))
            .timeout(Some(NETWORK_TIMEOUT));
    if !account.username.is_empty() {
        builder = builder.credentials(Credentials::new(
            account.username.clone(),
            account.password.clone(),
        ));
    }
    Ok(builder.build())
}

/// A failed SMTP exchange as a module error: refused credentials, a refusal by status class,
/// or the connection; the text scrubbed of the password.
fn smtp_error(
    account: &Account,
    server: &Server,
    error: lettre::transport::smtp::Error,
) -> ModuleError {
    let code = error.status().map(|c| c.to_string());
    let text = account.scrub(error.to_string());
    let at = format!("SMTP server {}:{}", server.host, server.port);
    match code.as_deref() {
        Some("535") | Some("534") | Some("530") => ModuleError::new(
            ErrorKind::InvalidAccessTokenError,
            format!(
                "{at} refused the login of connection \"{}\" (user name or password wrong): {text}",
                account.name
            ),
        ),
        _ if error.is_transient() => ModuleError::new(
            ErrorKind::ConnectionError,
            format!("{at} refused the message for now (try again later): {text}"),
        ),
        _ if error.is_permanent() => ModuleError::new(
            ErrorKind::DataError,
            format!("{at} refused the message: {text}"),
        ),
        _ if error.is_tls() => ModuleError::new(
            ErrorKind::ConnectionError,
            format!("{at}: the TLS handshake failed: {text}"),
        ),
        _ => ModuleError::new(ErrorKind::ConnectionError, format!("{at}: {text}")),
    }
}

/// The SMTP half of a connection test: a session with STARTTLS and the login as configured.
pub(crate) async fn test(net: &Network, account: &Account) -> Result<(), ModuleError> {
    let server = account.smtp()?;
    let transport = transport(net, account, server).await?;
    transport
        .test_connection()
        .await
        .map_err(|e| smtp_error(account, server, e))?;
    Ok(())
}
