//! Make's Email app (`email:*`, version 7) in Rust: SMTP and IMAP are not HTTP, so these
//! modules are native rather than interpreted from `modules/`; `modules/email.json` declares
//! only the app and its connection type (`imap`, kind `basic`: `host`, `port`, `tls`,
//! `smtpHost`, `smtpPort`, `smtpTls`, `username`, `password`, `rejectUnauthorized`), so the
//! connection is stored sealed, listed and validated like every other app's. [`EmailRegistry`]
//! serves the modules; `smtp.rs` sends (`ActionSendEmail`), `imap.rs` reads and changes
//! mailboxes (`TriggerNewEmail`/`WatchEmails`, `MoveEmail`, `MarkAsRead`).
//!
//! Invariants:
//! - every connection goes through the egress guard: the host is resolved once, each address
//!   checked by [`EgressPolicy::check_address`] and the connection made to that address;
//! - certificate checks stay on unless the connection sets `rejectUnauthorized: false` *and*
//!   the operator allowed its host (`--allow-insecure-tls`), as for HTTP;
//! - the password is added to the execution's [`Redactions`] before it is sent, and no error
//!   carries it (server answers are scrubbed of it: [`Account::scrub`]).

mod imap;
mod smtp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Map, Value};

use crate::apps::transport::HttpOptions;
use crate::module::connection::{self, Connection, Credential};
use crate::module::{
    ConnectionsHandle, ErrorKind, ExecutionContext, Module, ModuleError, Redactions, Reference,
    Registry, Scrubber,
};

/// The app's name: the prefix of its module types and the `app` of its connections.
pub const APP: &str = "email";
/// The connection type `modules/email.json` declares.
pub const CONNECTION_TYPE: &str = "imap";

/// How long connecting, the TLS handshake and each protocol exchange may take.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds one module with the process's network options.
type Constructor = fn(&Arc<Network>) -> Arc<dyn Module>;

/// Every module type [`EmailRegistry`] serves.
const MODULES: &[(&str, Constructor)] = &[
    ("email:ActionSendEmail", |net| {
        Arc::new(smtp::SendEmail::new(net.clone()))
    }),
    ("email:TriggerNewEmail", |net| {
        Arc::new(imap::WatchEmails::new(net.clone()))
    }),
    ("email:WatchEmails", |net| {
        Arc::new(imap::WatchEmails::new(net.clone()))
    }),
    ("email:MoveEmail", |net| {
        Arc::new(imap::ChangeEmail::new(imap::Change::Move, net.clone()))
    }),
    ("email:MarkAsRead", |net| {
        Arc::new(imap::ChangeEmail::new(imap::Change::MarkRead, net.clone()))
    }),
];

/// Serves the `email:*` modules.
pub struct EmailRegistry {
    modules: HashMap<&'static str, Arc<dyn Module>>,
}

impl EmailRegistry {
    /// The modules, reaching the network under `options`' egress policy and TLS exceptions.
    pub fn new(options: &HttpOptions) -> EmailRegistry {
        let net = Arc::new(Network {
            options: options.clone(),
        });
        EmailRegistry {
            modules: MODULES
                .iter()
                .map(|(name, build)| (*name, build(&net)))
                .collect(),
        }
    }
}

impl Registry for EmailRegistry {
    fn module(&self, name: &str) -> Option<Arc<dyn Module>> {
        self.modules.get(name).cloned()
    }

    fn module_types(&self) -> Vec<String> {
        MODULES.iter().map(|(name, _)| name.to_string()).collect()
    }
}

/// Tests a stored email connection: an IMAP login (and a `SELECT INBOX`) and, when it names an
/// SMTP server, an SMTP session with authentication. The error names what failed, never a
/// value of the connection.
pub async fn test_connection(
    options: &HttpOptions,
    connection: &Connection,
) -> Result<(), ModuleError> {
    let net = Network {
        options: options.clone(),
    };
    let account = Account::of(connection)?;
    imap::test(&net, &account).await?;
    if account.smtp.is_some() {
        smtp::test(&net, &account).await?;
    }
    Ok(())
}

/// What every module shares: the egress policy and the hosts allowed without certificate
/// checks.
pub(crate) struct Network {
    options: HttpOptions,
}

impl Network {
    /// The addresses of `server` that the egress guard allows, resolved once.
    async fn addresses(&self, server: &Server) -> Result<Vec<SocketAddr>, ModuleError> {
        let found = tokio::time::timeout(
            NETWORK_TIMEOUT,
            tokio::net::lookup_host((server.host.as_str(), server.port)),
        )
        .await
        .map_err(|_| {
            ModuleError::new(
                ErrorKind::ConnectionError,
                format!("{}: the name lookup timed out", server.host),
            )
        })?
        .map_err(|e| {
            ModuleError::new(
                ErrorKind::ConnectionError,
                format!("{}: the name lookup failed: {e}", server.host),
            )
        })?;
        let mut allowed = Vec::new();
        let mut refusal = None;
        for address in found {
            match self
                .options
                .egress
                .check_address(&server.host, address.ip())
            {
                Ok(()) => allowed.push(address),
                Err(refused) => refusal = Some(refused),
            }
        }
        match (allowed.is_empty(), refusal) {
            (false, _) => Ok(allowed),
            (true, Some(refused)) => Err(ModuleError::new(
                ErrorKind::ConnectionError,
                refused.to_string(),
            )),
            (true, None) => Err(ModuleError::new(
                ErrorKind::ConnectionError,
                format!("{}: the name has no address", server.host),
            )),
        }
    }

    /// A TCP connection to the first allowed address of `server` that answers.
    async fn connect(&self, server: &Server) -> Result<tokio::net::TcpStream, ModuleError> {
        let mut last = None;
        for address in self.addresses(server).await? {
            match tokio::time::timeout(NETWORK_TIMEOUT, tokio::net::TcpStream::connect(address))
                .await
            {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => last = Some(e.to_string()),
                Err(_) => last = Some("timed out".into()),
            }
        }
        Err(ModuleError::new(
            ErrorKind::ConnectionError,
            format!(
                "{}:{}: could not connect: {}",
                server.host,
                server.port,
                last.unwrap_or_default()
            ),
        ))
    }

    /// Whether certificates of `server` are checked: always, unless the connection asked not
    /// to and the operator allowed the host; asked elsewhere, an error saying how to allow it.
    fn verify_certificates(&self, account: &Account, server: &Server) -> Result<bool, ModuleError> {
        if account.reject_unauthorized || server.security == Security::None {
            return Ok(true);
        }
        let host = server.host.trim_end_matches('.');
        let allowed = self
            .options
            .insecure_tls_hosts
            .iter()
            .any(|h| h.trim_end_matches('.').eq_ignore_ascii_case(host));
        if allowed {
            Ok(false)
        } else {
            Err(ModuleError::config(format!(
                "rejectUnauthorized is false, but certificate checks stay on for {host}: an \
                 operator can turn them off for this host with --allow-insecure-tls {host} \
                 (or SWITCHYARD_ALLOW_INSECURE_TLS={host})"
            )))
        }
    }
}

/// How a connection to a server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Security {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Implicit,
    /// Plain text upgraded by STARTTLS before logging in; a server that does not offer it is
    /// an error, never a plain-text login.
    StartTls,
    /// No encryption (loopback test servers, local relays).
    None,
}

impl Security {
    fn parse(text: Option<String>, field: &str, default: Security) -> Result<Security, String> {
        match text.as_deref().map(str::trim).map(str::to_ascii_lowercase) {
            None => Ok(default),
            Some(t) if t.is_empty() => Ok(default),
            Some(t) => match t.as_str() {
                "implicit" | "tls" | "ssl" | "true" => Ok(Security::Implicit),
                "starttls" => Ok(Security::StartTls),
                "none" | "false" | "plain" => Ok(Security::None),
                _ => Err(format!(
                    "{field} must be implicit, starttls or none, got \"{t}\""
                )),
            },
        }
    }
}

/// One server of an account.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    host: String,
    port: u16,
    security: Security,
}

/// A stored email connection, read: the IMAP server, the SMTP server (optional: only
/// sending needs it) and the credential both use.
pub(crate) struct Account {
    name: String,
    imap: Option<Server>,
    smtp: Option<Server>,
    username: String,
    password: String,
    reject_unauthorized: bool,
    /// The address mail is sent from when a module names none: the `from` field, else the
    /// user name when it is an address.
    default_from: Option<String>,
}

impl Account {
    /// Reads `connection` (of the `email` app); a missing or malformed field is an
    /// `InvalidConfigurationError` naming the connection and the field.
    pub(crate) fn of(connection: &Connection) -> Result<Account, ModuleError> {
        let bad = |reason: String| {
            ModuleError::config(format!("connection \"{}\": {reason}", connection.name))
        };
        if connection.app != APP {
            return Err(bad(format!(
                "is a connection of the {} app; the email modules need one of the email app \
                 (switchyard connections add NAME --app email …)",
                connection.app
            )));
        }
        let (username, password) = match connection.credential()? {
            Credential::Basic { user, password } => (user, password),
            _ => {
                return Err(bad(
                    "is not a user name and password (kind basic) connection".into(),
                ));
            }
        };
        let fields = &connection.fields;
        let text = |name: &str| fields.text(name).map(|t| t.trim().to_string());
        let server = |host: &str,
                      port: &str,
                      tls: &str,
                      implicit_port: u16,
                      starttls_port: u16,
                      default: Security|
         -> Result<Option<Server>, ModuleError> {
            let Some(host) = text(host).filter(|h| !h.is_empty()) else {
                return Ok(None);
            };
            if host.contains(|c: char| c.is_whitespace() || c == '/') {
                return Err(bad(format!("{tls}'s host \"{host}\" is not a host name")));
            }
            let security = Security::parse(text(tls), tls, default).map_err(bad)?;
            let port =
                match text(port).filter(|p| !p.is_empty()) {
                    None => match security {
                        Security::Implicit => implicit_port,
                        _ => starttls_port,
                    },
                    Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                        bad(format!("{port} must be a port number from 1 to 65535"))
                    })?,
                };
            Ok(Some(Server {
                host,
                port,
                security,
            }))
        };
        let imap = server("host", "port", "tls", 993, 143, Security::Implicit)?;
        let smtp = server(
            "smtpHost",
            "smtpPort",
            "smtpTls",
            465,
            587,
            Security::StartTls,
        )?;
        let reject_unauthorized = match fields.get("rejectUnauthorized") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
            Some(_) => return Err(bad("rejectUnauthorized must be true or false".into())),
        };
        let default_from = text("from")
            .filter(|f| !f.is_empty())
            .or_else(|| username.contains('@').then(|| username.clone()));
        Ok(Account {
            name: connection.name.clone(),
            imap,
            smtp,
            username,
            password,
            reject_unauthorized,
            default_from,
        })
    }

    /// The IMAP server, or an error saying the connection has none.
    fn imap(&self) -> Result<&Server, ModuleError> {
        self.imap.as_ref().ok_or_else(|| {
            ModuleError::config(format!(
                "connection \"{}\" names no IMAP server: set its host field",
                self.name
            ))
        })
    }

    /// The SMTP server, or an error saying the connection has none.
    fn smtp(&self) -> Result<&Server, ModuleError> {
        self.smtp.as_ref().ok_or_else(|| {
            ModuleError::config(format!(
                "connection \"{}\" names no SMTP server: set its smtpHost field",
                self.name
            ))
        })
    }

    /// `text` without the password, in any spelling a server may echo it.
    fn scrub(&self, text: impl Into<String>) -> String {
        let mut text = text.into();
        if !self.password.is_empty() {
            Scrubber::of([self.password.as_str()]).text(&mut text);
        }
        text
    }
}

/// The connection a module's parameters name (`account`, as Make's Email modules keep it, or
/// `__IMTCONN__`), opened, its password kept out of the execution's history.
pub(crate) async fn account_for(
    parameters: &Map<String, Value>,
    context: &ExecutionContext,
    module: &str,
) -> Result<Account, ModuleError> {
    let Some((field, reference)) =
        connection::reference_in(parameters, connection::CONNECTION_PARAMETERS)
    else {
        return Err(ModuleError::config(format!(
            "parameters.account: {module} needs a connection, the name or id of a stored email \
             connection (switchyard connections add NAME --app email …)"
        )));
    };
    let Some(connections) = context.extensions.get::<ConnectionsHandle>() else {
        return Err(ModuleError::config(format!(
            "parameters.{field}: no stored connections are available to this run"
        )));
    };
    let connection = connections.resolve(&reference).await?;
    let account = Account::of(&connection)?;
    if let Some(redactions) = context.extensions.get::<Redactions>()
        && !account.password.is_empty()
    {
        redactions.add(&account.password);
    }
    Ok(account)
}

/// The reference every email module declares: its connection, of the email app.
fn connection_reference(parameters: &Map<String, Value>) -> Vec<Reference> {
    match connection::reference_in(parameters, connection::CONNECTION_PARAMETERS) {
        Some((field, reference)) => vec![Reference::Connection {
            path: format!("parameters.{field}"),
            reference,
            app: Some(APP.to_string()),
            kinds: vec![CONNECTION_TYPE.to_string(), "basic".to_string()],
        }],
        None => Vec::new(),
    }
}

/// The load-time check every email module makes: a connection is named.
fn connection_problems(parameters: &Map<String, Value>) -> Vec<(String, String)> {
    if connection::reference_in(parameters, connection::CONNECTION_PARAMETERS).is_some() {
        return Vec::new();
    }
    vec![(
        "parameters.account".into(),
        "is required: the name or id of a stored email connection".into(),
    )]
}

/// A setting read from the mapper first, then the parameters (newer exports map what older
/// ones keep static), `None` when absent, null or empty text.
fn setting<'a>(
    parameters: &'a Map<String, Value>,
    mapper: &'a Value,
    name: &str,
) -> Option<&'a Value> {
    let present = |v: &&Value| !v.is_null() && v.as_str().is_none_or(|s| !s.trim().is_empty());
    mapper
        .get(name)
        .filter(present)
        .or_else(|| parameters.get(name).filter(present))
}

/// A boolean setting (`true`/`false` or their text); `default` when absent.
fn flag(
    parameters: &Map<String, Value>,
    mapper: &Value,
    name: &str,
    default: bool,
) -> Result<bool, ModuleError> {
    match setting(parameters, mapper, name) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(ModuleError::config(format!(
            "{name}: expected true or false, got {other}"
        ))),
    }
}

/// The TLS client configuration: the web PKI roots, or no certificate check at all when
/// `verify` is false (only reached for a host the operator allowed).
fn tls_config(verify: bool) -> Result<Arc<tokio_rustls::rustls::ClientConfig>, ModuleError> {
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ModuleError::config(format!("TLS could not be set up: {e}")))?;
    let config = if verify {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The verifier of a connection whose certificates the operator allowed unchecked: any
/// certificate is taken, the handshake's signatures are still verified.
#[derive(Debug)]
struct AnyCertificate(Arc<tokio_rustls::rustls::crypto::CryptoProvider>);

impl tokio_rustls::rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<tokio_rustls::rustls::client::danger::ServerCertVerified, tokio_rustls::rustls::Error>
    {
        Ok(tokio_rustls::rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        tokio_rustls::rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        tokio_rustls::rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<tokio_rustls::rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A module future: every email module's `call`.
type Call<'a> = BoxFuture<'a, Result<Vec<Value>, ModuleError>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::Secrets;
    use serde_json::json;

    fn connection(app: &str, fields: Value) -> Connection {
        Connection {
            id: "1".into(),
            name: "mail".into(),
            app: app.into(),
            kind: "basic".into(),
            fields: Secrets(fields.as_object().cloned().unwrap()),
        }
    }

    #[test]
    fn accounts_take_defaults_by_tls_mode() {
        let account = Account::of(&connection(
            APP,
            json!({"host": "imap.example.org", "smtpHost": "smtp.example.org", "smtpTls": "implicit",
                   "username": "ann@example.org", "password": "pw"}),
        ))
        .unwrap();
        let imap = account.imap().unwrap();
        assert_eq!((imap.port, imap.security), (993, Security::Implicit));
        let smtp = account.smtp().unwrap();
        assert_eq!((smtp.port, smtp.security), (465, Security::Implicit));
        assert!(account.reject_unauthorized);
        assert_eq!(account.default_from.as_deref(), Some("ann@example.org"));

        let account = Account::of(&connection(
            APP,
            json!({"host": "h", "tls": "starttls", "username": "ann", "password": "pw",
                   "rejectUnauthorized": "false", "port": "1143"}),
        ))
        .unwrap();
        assert_eq!(account.imap().unwrap().port, 1143);
        assert!(!account.reject_unauthorized);
        assert!(account.default_from.is_none());
        let err = account.smtp().err().unwrap();
        assert!(err.message.contains("smtpHost"), "{}", err.message);
    }

    #[test]
    fn bad_accounts_name_the_field_and_never_the_password() {
        for (fields, expected) in [
            (
                json!({"host": "h", "tls": "maybe"}),
                "tls must be implicit, starttls or none",
            ),
            (
                json!({"host": "h", "port": "99999"}),
                "port must be a port number",
            ),
            (
                json!({"host": "h", "rejectUnauthorized": 3}),
                "rejectUnauthorized must be",
            ),
            (json!({"host": "a b"}), "is not a host name"),
        ] {
            let mut fields = fields;
            fields["username"] = json!("ann");
            fields["password"] = json!("s3cret-pw");
            let err = Account::of(&connection(APP, fields)).err().unwrap();
            assert!(err.message.contains(expected), "{}", err.message);
            assert!(!err.message.contains("s3cret-pw"));
        }
        let err = Account::of(&connection(
            "http",
            json!({"username": "ann", "password": "pw"}),
        ))
        .err()
        .unwrap();
        assert!(err.message.contains("--app email"), "{}", err.message);
        let account = Account::of(&connection(
            APP,
            json!({"host": "h", "username": "ann", "password": "s3cret-pw"}),
        ))
        .unwrap();
        assert_eq!(
            account.scrub("NO [AUTHENTICATIONFAILED] s3cret-pw"),
            "NO [AUTHENTICATIONFAILED] [redacted]"
        );
    }

    #[test]
    fn serves_every_listed_module() {
        let registry = EmailRegistry::new(&HttpOptions::default());
        for name in registry.module_types() {
            assert!(registry.module(&name).is_some(), "{name}");
        }
        assert_eq!(
            registry.module("email:TriggerNewEmail").unwrap().kind(),
            crate::module::ModuleKind::Trigger
        );
        assert!(registry.module("email:Nope").is_none());
    }
}
