//! The IMAP modules: `email:TriggerNewEmail` and `email:WatchEmails` (Make's "Watch Emails",
//! polling), `email:MoveEmail`, `email:MarkAsRead`; one session per call (`async-imap` over
//! tokio, TLS by `tokio-rustls`: implicit, STARTTLS — required when asked, never skipped — or
//! none).
//!
//! The trigger's cursor is `{"uidValidity": V, "uid": N}`: the mailbox's UIDVALIDITY and the
//! highest UID emitted. A poll searches `UID N+1:*` with the criteria, emits the lowest UIDs
//! first (at most the limit) and moves the cursor to the last one emitted, so each message is
//! emitted once across polls and restarts (the cursor is committed with the execution). A
//! fresh trigger starts at the mailbox's current end (`start: all` reads what is already
//! there); a changed UIDVALIDITY (the mailbox was rebuilt, its UIDs mean something else)
//! starts again at the end rather than emit the whole mailbox twice.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use async_imap::types::{Fetch, Flag};
use futures::TryStreamExt;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{
    Account, Call, NETWORK_TIMEOUT, Network, Security, Server, account_for, connection_problems,
    connection_reference, flag, setting, tls_config,
};
use crate::expr::functions::mime;
use crate::expr::value;
use crate::module::polling::{self, PollRequest, Polled, TriggerCommit};
use crate::module::{ErrorKind, Invocation, Module, ModuleError, ModuleKind, Reference};

/// Any stream an IMAP session runs over (plain TCP or TLS).
trait Io: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Io for T {}

type Session = async_imap::Session<Box<dyn Io>>;

/// A logged-in session on the account's IMAP server.
async fn open(net: &Network, account: &Account) -> Result<Session, ModuleError> {
    let server = account.imap()?;
    let verify = net.verify_certificates(account, server)?;
    let tcp = net.connect(server).await?;
    let failed = |what: &str, e: &dyn fmt::Display| {
        ModuleError::new(
            ErrorKind::ConnectionError,
            account.scrub(format!(
                "IMAP server {}:{}: {what}: {e}",
                server.host, server.port
            )),
        )
    };
    let stream: Box<dyn Io> = match server.security {
        Security::Implicit => Box::new(tls(server, verify, tcp).await?),
        Security::None => Box::new(tcp),
        Security::StartTls => {
            let mut client = async_imap::Client::new(tcp);
            greeting(&mut client, server).await?;
            timed(server, client.run_command_and_check_ok("STARTTLS", None))
                .await?
                .map_err(|e| failed("STARTTLS was refused", &e))?;
            let tcp = client.into_inner();
            Box::new(tls(server, verify, tcp).await?)
        }
    };
    let mut client = async_imap::Client::new(stream);
    if server.security != Security::StartTls {
        greeting(&mut client, server).await?;
    }
    match timed(server, client.login(&account.username, &account.password)).await? {
        Ok(session) => Ok(session),
        Err((async_imap::error::Error::No(text), _))
        | Err((async_imap::error::Error::Bad(text), _)) => Err(ModuleError::new(
            ErrorKind::InvalidAccessTokenError,
            account.scrub(format!(
                "IMAP server {}:{} refused the login of connection \"{}\" (user name or \
                     password wrong): {text}",
                server.host, server.port, account.name
            )),
        )),
        Err((e, _)) => Err(failed("the login failed", &e)),
    }
}

/// Reads the server's greeting.
async fn greeting<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug>(
    client: &mut async_imap::Client<T>,
    server: &Server,
) -> Result<(), ModuleError> {
    match timed(server, client.read_response()).await? {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ModuleError::new(
            ErrorKind::ConnectionError,
            format!(
                "IMAP server {}:{} closed the connection before its greeting",
                server.host, server.port
            ),
        )),
        Err(e) => Err(ModuleError::new(
            ErrorKind::ConnectionError,
            format!(
                "IMAP server {}:{}: no greeting: {e}",
                server.host, server.port
            ),
        )),
    }
}

/// The TLS handshake over `tcp`, for the configured host name.
async fn tls(
    server: &Server,
    verify: bool,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ModuleError> {
    let name = rustls_pki_types::ServerName::try_from(server.host.clone()).map_err(|_| {
        ModuleError::config(format!(
            "\"{}\" is not a valid TLS server name",
            server.host
        ))
    })?;
    let connector = tokio_rustls::TlsConnector::from(tls_config(verify)?);
    timed(server, connector.connect(name, tcp))
        .await?
        .map_err(|e| {
            ModuleError::new(
                ErrorKind::ConnectionError,
                format!(
                    "IMAP server {}:{}: the TLS handshake failed: {e}",
                    server.host, server.port
                ),
            )
        })
}

/// `future` within the network timeout; past it, a `ConnectionError` naming the server.
async fn timed<T>(server: &Server, future: impl Future<Output = T>) -> Result<T, ModuleError> {
    tokio::time::timeout(NETWORK_TIMEOUT, future)
        .await
        .map_err(|_| {
            ModuleError::new(
                ErrorKind::ConnectionError,
                format!(
                    "IMAP server {}:{} did not answer in time",
                    server.host, server.port
                ),
            )
        })
}

/// An IMAP command's failure as a module error: a `NO` is the server's refusal of the data
/// (an unknown folder, a message that is not there), the rest the connection's.
fn imap_error(account: &Account, what: &str, error: async_imap::error::Error) -> ModuleError {
    let kind = match error {
        async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_) => ErrorKind::DataError,
        _ => ErrorKind::ConnectionError,
    };
    ModuleError::new(kind, account.scrub(format!("{what}: {error}")))
}

/// Text as an IMAP quoted string (a SEARCH argument); line breaks are refused.
fn quoted(text: &str, field: &str) -> Result<String, ModuleError> {
    if text.contains(['\r', '\n', '\0']) {
        return Err(ModuleError::config(format!(
            "{field}: a line break cannot be sent to an IMAP server"
        )));
    }
    Ok(format!(
        "\"{}\"",
        text.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// A mailbox name for the commands that quote it themselves; line breaks are refused.
fn mailbox_name<'a>(text: &'a str, field: &str) -> Result<&'a str, ModuleError> {
    quoted(text, field)?;
    Ok(text)
}

/// Selects `folder`, answering its UIDVALIDITY and UIDNEXT.
async fn select(
    session: &mut Session,
    account: &Account,
    folder: &str,
) -> Result<(u32, u32), ModuleError> {
    let mailbox = session
        .select(mailbox_name(folder, "folder")?)
        .await
        .map_err(|e| imap_error(account, &format!("folder \"{folder}\" cannot be opened"), e))?;
    Ok((
        mailbox.uid_validity.unwrap_or(0),
        mailbox.uid_next.unwrap_or(1),
    ))
}

/// Logs out, ignoring a server that already closed (the work is done).
async fn close(mut session: Session) {
    let _ = session.logout().await;
}

/// The folder a module works in: `folder` of the mapper or parameters, `INBOX` by default.
fn folder_of(parameters: &Map<String, Value>, mapper: &Value) -> String {
    setting(parameters, mapper, "folder")
        .map(value::to_text)
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| "INBOX".into())
}

// ---------------------------------------------------------------------------------------------
// Watch Emails

/// `email:TriggerNewEmail` and `email:WatchEmails`.
pub(crate) struct WatchEmails {
    net: Arc<Network>,
}

impl WatchEmails {
    pub(crate) fn new(net: Arc<Network>) -> WatchEmails {
        WatchEmails { net }
    }
}

/// The stored cursor.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cursor {
    uid_validity: u32,
    uid: u32,
}

impl Cursor {
    fn from_value(value: &Value) -> Result<Cursor, ModuleError> {
        let number = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
        };
        match (number("uidValidity"), number("uid")) {
            (Some(uid_validity), Some(uid)) => Ok(Cursor { uid_validity, uid }),
            _ => Err(ModuleError::new(
                ErrorKind::InconsistencyError,
                "the stored trigger state is not an IMAP cursor; reset the trigger \
                 (switchyard scenarios reset-trigger) to start again",
            )),
        }
    }

    fn to_value(self) -> Value {
        json!({"uidValidity": self.uid_validity, "uid": self.uid})
    }
}

/// The IMAP SEARCH keys of the trigger's criteria and filters.
fn search_keys(parameters: &Map<String, Value>, mapper: &Value) -> Result<String, ModuleError> {
    let criteria = setting(parameters, mapper, "criteria")
        .map(|v| value::to_text(v).trim().to_ascii_uppercase())
        .unwrap_or_else(|| "ALL".into());
    let mut keys = match criteria.as_str() {
        "ALL" | "SEEN" | "UNSEEN" => criteria,
        other => {
            return Err(ModuleError::config(format!(
                "criteria: expected ALL, SEEN or UNSEEN, got \"{other}\""
            )));
        }
    };
    for (field, key) in [
        ("from", "FROM"),
        ("to", "TO"),
        ("subject", "SUBJECT"),
        ("text", "TEXT"),
    ] {
        if let Some(v) = setting(parameters, mapper, field) {
            let text = value::to_text(v);
            keys.push_str(&format!(" {key} {}", quoted(text.trim(), field)?));
        }
    }
    Ok(keys)
}

impl Module for WatchEmails {
    fn kind(&self) -> ModuleKind {
        ModuleKind::Trigger
    }

    fn check(&self, parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        let mut problems = connection_problems(parameters);
        if let Err(problem) = polling::limit(parameters) {
            problems.push(problem);
        }
        if let Err(e) = search_keys(parameters, mapper) {
            problems.push(("parameters.criteria".into(), e.message));
        }
        problems
    }

    fn references(&self, parameters: &Map<String, Value>) -> Vec<Reference> {
        connection_reference(parameters)
    }

    fn call<'a>(&'a self, invocation: Invocation<'a>) -> Call<'a> {
        Box::pin(async move {
            let state = polling::TriggerState::default();
            let limit = polling::limit(invocation.parameters)
                .map_err(|(f, r)| ModuleError::config(format!("{f}: {r}")))?;
            let polled = self
                .poll(
                    invocation,
                    PollRequest {
                        state: &state,
                        limit,
                    },
                )
                .await?;
            Ok(polled.bundles)
        })
    }

    fn poll<'a>(
        &'a self,
        invocation: Invocation<'a>,
        request: PollRequest<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Polled, ModuleError>> {
        Box::pin(async move {
            let parameters = invocation.parameters;
            let mapper = &invocation.mapper;
            let keys = search_keys(parameters, mapper)?;
            let mark_seen = flag(parameters, mapper, "markSeen", false)?;
            let start_all = setting(parameters, mapper, "start")
                .map(value::to_text)
                .is_some_and(|s| s.trim().eq_ignore_ascii_case("all"));
            let stored = request
                .state
                .cursor
                .as_ref()
                .map(Cursor::from_value)
                .transpose()?;
            let folder = folder_of(parameters, mapper);
            let account = account_for(parameters, invocation.context, invocation.module).await?;
            let mut session = open(&self.net, &account).await?;
            let result = watch(
                &mut session,
                &account,
                &folder,
                &keys,
                stored,
                start_all,
                mark_seen,
                request.limit,
            )
            .await;
            close(session).await;
            result
        })
    }
}

/// One poll of `folder` after `stored`.
#[allow(clippy::too_many_arguments)]
async fn watch(
    session: &mut Session,
    account: &Account,
    folder: &str,
    keys: &str,
    stored: Option<Cursor>,
    start_all: bool,
    mark_seen: bool,
    limit: usize,
) -> Result<Polled, ModuleError> {
    let (uid_validity, uid_next) = select(session, account, folder).await?;
    let after = match stored {
        Some(cursor) if cursor.uid_validity == uid_validity => cursor.uid,
        // Fresh, or the mailbox's UIDs were renumbered: start at its end (or its beginning
        // when asked), never emit what was emitted under the old numbering again.
        Some(_) => uid_next.saturating_sub(1),
        None if start_all => 0,
        None => uid_next.saturating_sub(1),
    };
    let found: HashSet<u32> = session
        .uid_search(format!(
            "{}UID {}:* {keys}",
            if keys.is_ascii() {
                ""
            } else {
                "CHARSET UTF-8 "
            },
            after.saturating_add(1)
        ))
        .await
        .map_err(|e| imap_error(account, &format!("searching folder \"{folder}\" failed"), e))?;
    // `N:*` always includes the highest UID, even below N.
    let mut uids: Vec<u32> = found.into_iter().filter(|uid| *uid > after).collect();
    uids.sort_unstable();
    let more = uids.len() > limit;
    uids.truncate(limit);
    let mut bundles = Vec::with_capacity(uids.len());
    if !uids.is_empty() {
        let set = uids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let fetched: Vec<Fetch> = session
            .uid_fetch(&set, "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
            .await
            .map_err(|e| imap_error(account, "fetching messages failed", e))?
            .try_collect()
            .await
            .map_err(|e| imap_error(account, "fetching messages failed", e))?;
        let mut by_uid: Vec<(u32, Value)> = Vec::with_capacity(fetched.len());
        for fetch in &fetched {
            let Some(uid) = fetch.uid else { continue };
            if !uids.contains(&uid) {
                continue;
            }
            by_uid.push((uid, bundle(fetch, uid, folder)?));
        }
        by_uid.sort_by_key(|(uid, _)| *uid);
        bundles = by_uid.into_iter().map(|(_, b)| b).collect();
        if mark_seen {
            session
                .uid_store(&set, "+FLAGS.SILENT (\\Seen)")
                .await
                .map_err(|e| imap_error(account, "marking messages as read failed", e))?
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| imap_error(account, "marking messages as read failed", e))?;
        }
    }
    let last = uids.last().copied().unwrap_or(after);
    Ok(Polled {
        bundles,
        change: TriggerCommit {
            cursor: Some(
                Cursor {
                    uid_validity,
                    uid: last,
                }
                .to_value(),
            ),
            new_seen_ids: Vec::new(),
        },
        more,
    })
}

/// One fetched message as Make's e-mail bundle, with its IMAP `uid`, `folder`, `flags` and
/// `size`.
fn bundle(fetch: &Fetch, uid: u32, folder: &str) -> Result<Value, ModuleError> {
    let raw = fetch.body().ok_or_else(|| {
        ModuleError::new(
            ErrorKind::DataError,
            format!("message {uid} came without its content"),
        )
    })?;
    let mut out = Map::new();
    out.insert("uid".into(), Value::from(uid));
    out.insert("folder".into(), Value::from(folder));
    out.insert(
        "flags".into(),
        Value::Array(fetch.flags().map(|f| Value::from(flag_name(&f))).collect()),
    );
    out.insert(
        "size".into(),
        Value::from(fetch.size.map(u64::from).unwrap_or(raw.len() as u64)),
    );
    let parsed = mime::read_message(raw)
        .map_err(|e| ModuleError::new(ErrorKind::DataError, format!("message {uid}: {}", e.0)))?;
    out.extend(parsed);
    Ok(Value::Object(out))
}

fn flag_name(flag: &Flag<'_>) -> String {
    match flag {
        Flag::Seen => "\\Seen".into(),
        Flag::Answered => "\\Answered".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Deleted => "\\Deleted".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Recent => "\\Recent".into(),
        Flag::MayCreate => "\\*".into(),
        Flag::Custom(name) => name.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Move an email, Mark an email as read

/// What [`ChangeEmail`] does to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// `MoveEmail`: to `destinationFolder` (MOVE, or COPY and expunge where the server lacks
    /// MOVE).
    Move,
    /// `MarkAsRead`: adds `\Seen`.
    MarkRead,
}

/// `email:MoveEmail` and `email:MarkAsRead`: one message, by its UID in `folder`.
pub(crate) struct ChangeEmail {
    change: Change,
    net: Arc<Network>,
}

impl ChangeEmail {
    pub(crate) fn new(change: Change, net: Arc<Network>) -> ChangeEmail {
        ChangeEmail { change, net }
    }
}

/// The message's UID: `emailId` (Make's "Email ID (UID)"), `uid` or `messageId`, a positive
/// whole number.
fn uid_of(parameters: &Map<String, Value>, mapper: &Value) -> Result<u32, ModuleError> {
    let (field, value) = ["emailId", "uid", "messageId"]
        .iter()
        .find_map(|f| setting(parameters, mapper, f).map(|v| (*f, v)))
        .ok_or_else(|| ModuleError::config("emailId: the message's UID (Email ID) is required"))?;
    value::to_text(value)
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|uid| *uid > 0)
        .ok_or_else(|| {
            ModuleError::new(
                ErrorKind::DataError,
                format!("{field}: expected a message UID (a whole number from 1), got {value}"),
            )
        })
}

impl Module for ChangeEmail {
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
            let parameters = invocation.parameters;
            let mapper = &invocation.mapper;
            let uid = uid_of(parameters, mapper)?;
            let folder = folder_of(parameters, mapper);
            let destination = match self.change {
                Change::Move => Some(
                    ["destinationFolder", "destination", "targetFolder"]
                        .iter()
                        .find_map(|f| setting(parameters, mapper, f))
                        .map(|v| value::to_text(v).trim().to_string())
                        .filter(|d| !d.is_empty())
                        .ok_or_else(|| {
                            ModuleError::config(
                                "destinationFolder: the folder to move the message to is required",
                            )
                        })?,
                ),
                Change::MarkRead => None,
            };
            let account = account_for(parameters, invocation.context, invocation.module).await?;
            let mut session = open(&self.net, &account).await?;
            let result = change(
                &mut session,
                &account,
                self.change,
                uid,
                &folder,
                destination.as_deref(),
            )
            .await;
            close(session).await;
            result.map(|out| vec![out])
        })
    }
}

async fn change(
    session: &mut Session,
    account: &Account,
    change: Change,
    uid: u32,
    folder: &str,
    destination: Option<&str>,
) -> Result<Value, ModuleError> {
    select(session, account, folder).await?;
    let there = session
        .uid_search(format!("UID {uid}"))
        .await
        .map_err(|e| imap_error(account, "searching the message failed", e))?;
    if !there.contains(&uid) {
        return Err(ModuleError::new(
            ErrorKind::DataError,
            format!("there is no message with UID {uid} in folder \"{folder}\""),
        ));
    }
    match (change, destination) {
        (Change::MarkRead, _) => {
            session
                .uid_store(uid.to_string(), "+FLAGS.SILENT (\\Seen)")
                .await
                .map_err(|e| imap_error(account, "marking the message as read failed", e))?
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| imap_error(account, "marking the message as read failed", e))?;
            Ok(json!({"uid": uid, "folder": folder, "seen": true}))
        }
        (Change::Move, Some(destination)) => {
            let target = mailbox_name(destination, "destinationFolder")?;
            let capabilities = session
                .capabilities()
                .await
                .map_err(|e| imap_error(account, "reading the server's capabilities failed", e))?;
            if capabilities.has_str("MOVE") {
                session.uid_mv(uid.to_string(), target).await.map_err(|e| {
                    imap_error(account, &format!("moving to \"{destination}\" failed"), e)
                })?;
            } else {
                session
                    .uid_copy(uid.to_string(), target)
                    .await
                    .map_err(|e| {
                        imap_error(account, &format!("copying to \"{destination}\" failed"), e)
                    })?;
                session
                    .uid_store(uid.to_string(), "+FLAGS.SILENT (\\Deleted)")
                    .await
                    .map_err(|e| imap_error(account, "removing the original failed", e))?
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(|e| imap_error(account, "removing the original failed", e))?;
                session
                    .uid_expunge(uid.to_string())
                    .await
                    .map_err(|e| imap_error(account, "removing the original failed", e))?
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(|e| imap_error(account, "removing the original failed", e))?;
            }
            Ok(json!({"uid": uid, "folder": folder, "destinationFolder": destination}))
        }
        (Change::Move, None) => Err(ModuleError::config(
            "destinationFolder: the folder to move the message to is required",
        )),
    }
}

/// The IMAP half of a connection test: a login and `SELECT INBOX`.
pub(crate) async fn test(net: &Network, account: &Account) -> Result<(), ModuleError> {
    let mut session = open(net, account).await?;
    let result = select(&mut session, account, "INBOX").await.map(|_| ());
    close(session).await;
    result
}

/// Appends `message` to `folder`, marked as read: the copy `ActionSendEmail` keeps with
/// `saveAfterSent`.
pub(crate) async fn append_sent(
    net: &Network,
    account: &Account,
    folder: &str,
    message: &[u8],
) -> Result<(), ModuleError> {
    let name = mailbox_name(folder, "folder")?;
    let mut session = open(net, account).await?;
    let result = session
        .append(name, Some("(\\Seen)"), None, message)
        .await
        .map_err(|e| {
            imap_error(
                account,
                &format!("the sent message could not be saved in \"{folder}\""),
                e,
            )
        });
    close(session).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn criteria_and_filters_become_search_keys() {
        let p = params(json!({"criteria": "UNSEEN", "from": "ann@example.org",
                              "subject": "say \"hi\"", "to": "", "text": null}));
        assert_eq!(
            search_keys(&p, &json!({})).unwrap(),
            "UNSEEN FROM \"ann@example.org\" SUBJECT \"say \\\"hi\\\"\""
        );
        // The mapper wins over the parameters (WatchEmails maps them).
        assert_eq!(
            search_keys(&p, &json!({"criteria": "all", "from": "bob@x.org"})).unwrap(),
            "ALL FROM \"bob@x.org\" SUBJECT \"say \\\"hi\\\"\""
        );
        let err = search_keys(&params(json!({"criteria": "NEW"})), &json!({})).unwrap_err();
        assert!(
            err.message.contains("ALL, SEEN or UNSEEN"),
            "{}",
            err.message
        );
        let err = search_keys(&params(json!({"subject": "a\r\nb"})), &json!({})).unwrap_err();
        assert!(err.message.starts_with("subject:"), "{}", err.message);
    }

    #[test]
    fn cursors_round_trip_and_refuse_foreign_state() {
        let cursor = Cursor {
            uid_validity: 7,
            uid: 42,
        };
        assert_eq!(Cursor::from_value(&cursor.to_value()).unwrap(), cursor);
        for bad in [
            json!({"date": null, "ids": []}),
            json!({"uidValidity": -1, "uid": 2}),
        ] {
            let err = Cursor::from_value(&bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InconsistencyError);
        }
    }

    #[test]
    fn uids_are_whole_positive_numbers() {
        assert_eq!(
            uid_of(&params(json!({})), &json!({"emailId": "12"})).unwrap(),
            12
        );
        assert_eq!(uid_of(&params(json!({"uid": 3})), &json!({})).unwrap(), 3);
        for bad in [json!("0"), json!("abc"), json!(1.5)] {
            let err = uid_of(&params(json!({})), &json!({"emailId": bad})).unwrap_err();
            assert_eq!(err.kind, ErrorKind::DataError);
        }
        assert!(uid_of(&params(json!({})), &json!({})).is_err());
    }
}
