//! The SMTP receiver of mailhooks (`serve --smtp-listen ADDR --mail-domain DOMAIN`): a small
//! RFC 5321 server taking mail for `<hook id>@<mail domain>`, with RFC 3207 STARTTLS when a
//! certificate is given. Each message becomes the mailhook bundle ([`crate::queue::mail_bundle`])
//! and is accepted through the same durable intake as a webhook delivery
//! ([`crate::queue::Intake::deliver_mail`]): `250` is sent only after
//! the delivery and its queued execution are committed.
//!
//! Replies: `550` for a recipient that is not an active mailhook at this domain, `552` for a
//! message over the size limit (announced as `SIZE`), `503` for a command out of sequence,
//! `451`/`452` when the message cannot be taken now (the store failed, too many large
//! messages at once, a hook over its rate, too many recipients): the sender retries, and a
//! message sent again is accepted once per mailhook (its `Message-ID` is its key).
//!
//! Bounds: command lines of [`MAX_COMMAND_LINE`] bytes, [`MAX_RECIPIENTS`] recipients per
//! message, [`COMMAND_TIMEOUT`] per command and [`DATA_TIMEOUT`] per message, up to
//! [`MAX_SESSIONS`] connections at once; a session that sends [`MAX_ERRORS`] bad commands is
//! closed. A message's text is held in memory while it is read, under the payload gate that
//! webhook bodies share.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};

use super::AppState;
use crate::queue::{MailRefusal, Route};

/// Longest command line accepted (RFC 5321 asks for 512 at least; extensions add parameters).
pub const MAX_COMMAND_LINE: usize = 4096;
/// Recipients of one message at most (RFC 5321 §4.5.3.1.8's minimum).
pub const MAX_RECIPIENTS: usize = 100;
/// How long the server waits for a command (RFC 5321 §4.5.3.2 suggests 5 minutes).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a message's text may take to arrive.
pub const DATA_TIMEOUT: Duration = Duration::from_secs(600);
/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_SESSIONS: usize = 1000;
/// Bad commands before the session is closed.
pub const MAX_ERRORS: usize = 10;
/// How long a message waits for room among the large payloads in flight before `451`.
const ADMISSION_WAIT: Duration = Duration::from_secs(10);
/// How long the TLS handshake after `STARTTLS` may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the SMTP receiver.
#[derive(Clone)]
pub struct SmtpOptions {
    /// The domain mail is taken for (`--mail-domain`); also the server's name in replies.
    pub domain: String,
    /// Largest message in bytes (larger get `552`).
    pub max_message_bytes: usize,
    /// The certificate `STARTTLS` is offered with; `None`: no `STARTTLS`.
    pub tls: Option<Arc<ServerConfig>>,
}

/// The SMTP receiver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("the SMTP TLS certificate or key {path}: {reason}")]
    Tls { path: String, reason: String },
}

/// The TLS configuration of `STARTTLS` from a PEM certificate chain and private key.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, SmtpError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let err = |path: &Path, reason: String| SmtpError::Tls {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(err(cert, "no certificate in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| err(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| err(key, e.to_string()))?;
    Ok(Arc::new(config))
}

/// Serves SMTP on `listener` for the mailhooks of `state`'s catalog, until dropped.
pub async fn serve_smtp(listener: TcpListener, state: AppState, options: SmtpOptions) {
    let options = Arc::new(options);
    let slots = Arc::new(Semaphore::new(MAX_SESSIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "SMTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (state, options) = (state.clone(), options.clone());
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = connection(stream, peer, &state, &options).await {
                tracing::debug!(%peer, error = %e, "SMTP session ended");
            }
        });
    }
}

/// One connection: a session in clear text, then, after `STARTTLS`, one over TLS.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: &AppState,
    options: &SmtpOptions,
) -> std::io::Result<()> {
    let mut io = BufReader::new(stream);
    reply(
        &mut io,
        &format!("220 {} Switchyard ESMTP ready", options.domain),
    )
    .await?;
    let mut session = Session::new(state, options, peer, false);
    if session.run(&mut io).await? != End::StartTls {
        return Ok(());
    }
    let Some(tls) = &options.tls else {
        return Ok(());
    };
    let stream = io.into_inner();
    let handshake = TlsAcceptor::from(tls.clone()).accept(stream);
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
    // RFC 3207 §4.2: everything known before the handshake is forgotten, EHLO included.
    let mut io = BufReader::new(stream);
    Session::new(state, options, peer, true)
        .run(&mut io)
        .await?;
    Ok(())
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Closed,
    StartTls,
}

/// One line read from the client.
enum Line {
    Complete,
    TooLong,
    Eof,
}

/// A recipient accepted by `RCPT`: a mailhook and where its deliveries go.
struct Recipient {
    hook: String,
    route: Route,
}

struct Session<'a> {
    state: &'a AppState,
    options: &'a SmtpOptions,
    peer: SocketAddr,
    tls: bool,
    /// The client's `EHLO`/`HELO` name, once given.
    helo: Option<String>,
    /// The reverse path of the transaction under way, once `MAIL` was accepted.
    from: Option<String>,
    /// The size `MAIL` declared (RFC 1870 `SIZE=`): the message may not exceed it.
    declared_size: Option<usize>,
    recipients: Vec<Recipient>,
    errors: usize,
}

impl<'a> Session<'a> {
    fn new(state: &'a AppState, options: &'a SmtpOptions, peer: SocketAddr, tls: bool) -> Self {
        Session {
            state,
            options,
            peer,
            tls,
            helo: None,
            from: None,
            declared_size: None,
            recipients: Vec::new(),
            errors: 0,
        }
    }

    fn reset(&mut self) {
        self.from = None;
        self.declared_size = None;
        self.recipients.clear();
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut BufReader<S>,
    ) -> std::io::Result<End> {
        let mut line = Vec::with_capacity(256);
        loop {
            let read =
                tokio::time::timeout(COMMAND_TIMEOUT, read_line(io, &mut line, MAX_COMMAND_LINE))
                    .await;
            let answer = match read {
                Err(_) => {
                    reply(io, "421 4.4.2 timeout waiting for a command").await?;
                    return Ok(End::Closed);
                }
                Ok(Err(e)) => return Err(e),
                Ok(Ok(Line::Eof)) => return Ok(End::Closed),
                Ok(Ok(Line::TooLong)) => "500 5.5.2 line too long".to_string(),
                Ok(Ok(Line::Complete)) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\r', '\n']);
                    let (verb, arg) = text.split_once(' ').unwrap_or((text, ""));
                    let verb = verb.to_ascii_uppercase();
                    match verb.as_str() {
                        "QUIT" => {
                            reply(io, "221 2.0.0 bye").await?;
                            return Ok(End::Closed);
                        }
                        "STARTTLS" => match self.starttls(io) {
                            Ok(()) => {
                                reply(io, "220 2.0.0 ready to start TLS").await?;
                                return Ok(End::StartTls);
                            }
                            Err(answer) => answer,
                        },
                        "DATA" => self.data(io).await?,
                        _ => self.command(&verb, arg.trim()).await,
                    }
                }
            };
            if answer.starts_with('5') {
                self.errors += 1;
            }
            reply(io, &answer).await?;
            if self.errors >= MAX_ERRORS {
                reply(io, "421 4.7.0 too many errors, closing").await?;
                return Ok(End::Closed);
            }
        }
    }

    /// Every command but `DATA`, `STARTTLS` and `QUIT`: the reply.
    async fn command(&mut self, verb: &str, arg: &str) -> String {
        let domain = &self.options.domain;
        match verb {
            "EHLO" | "HELO" if arg.is_empty() => "501 5.5.4 a domain or address is needed".into(),
            "HELO" => {
                self.reset();
                self.helo = Some(arg.to_string());
                format!("250 {domain}")
            }
            "EHLO" => {
                self.reset();
                self.helo = Some(arg.to_string());
                let mut lines = vec![
                    format!("250-{domain} greets {arg}"),
                    format!("250-SIZE {}", self.options.max_message_bytes),
                    "250-8BITMIME".to_string(),
                ];
                if self.options.tls.is_some() && !self.tls {
                    lines.push("250-STARTTLS".into());
                }
                lines.push("250 SMTPUTF8".into());
                lines.join("\r\n")
            }
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg).await,
            "RSET" => {
                self.reset();
                "250 2.0.0 OK".into()
            }
            "NOOP" => "250 2.0.0 OK".into(),
            "VRFY" => "252 2.1.5 cannot verify, but will try".into(),
            "HELP" => "214 2.0.0 see RFC 5321".into(),
            _ => "500 5.5.1 command not recognized".into(),
        }
    }

    /// Whether `STARTTLS` may begin now; else the reply saying why not.
    fn starttls<S: AsyncRead>(&self, io: &BufReader<S>) -> Result<(), String> {
        if self.options.tls.is_none() {
            return Err("502 5.5.1 STARTTLS is not offered".into());
        }
        if self.tls {
            return Err("503 5.5.1 TLS is already on".into());
        }
        // Commands sent after STARTTLS in the same packet would cross into the TLS session
        // (CVE-2011-0411's command injection).
        if !io.buffer().is_empty() {
            return Err("501 5.5.2 nothing may follow STARTTLS before the handshake".into());
        }
        Ok(())
    }

    fn mail(&mut self, arg: &str) -> String {
        if self.helo.is_none() {
            return "503 5.5.1 send EHLO or HELO first".into();
        }
        if self.from.is_some() {
            return "503 5.5.1 a transaction is already under way".into();
        }
        let Some(rest) = strip_keyword(arg, "FROM:") else {
            return "501 5.5.4 expected MAIL FROM:<address>".into();
        };
        let Some((path, params)) = path_and_params(rest) else {
            return "501 5.1.7 expected MAIL FROM:<address>".into();
        };
        let mut declared_size = None;
        for param in params.split_ascii_whitespace() {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if name.eq_ignore_ascii_case("SIZE") {
                match value.parse::<usize>() {
                    Ok(size) if size > self.options.max_message_bytes => {
                        return format!(
                            "552 5.3.4 the message is larger than the limit of {} bytes",
                            self.options.max_message_bytes
                        );
                    }
                    Ok(size) => declared_size = Some(size),
                    Err(_) => return "501 5.5.4 SIZE takes a number of bytes".into(),
                }
            }
        }
        self.from = Some(path.to_string());
        self.declared_size = declared_size;
        "250 2.1.0 OK".into()
    }

    async fn rcpt(&mut self, arg: &str) -> String {
        if self.from.is_none() {
            return "503 5.5.1 send MAIL first".into();
        }
        let Some(rest) = strip_keyword(arg, "TO:") else {
            return "501 5.5.4 expected RCPT TO:<address>".into();
        };
        let Some((path, _)) = path_and_params(rest) else {
            return "501 5.1.3 expected RCPT TO:<address>".into();
        };
        if self.recipients.len() >= MAX_RECIPIENTS {
            return "452 4.5.3 too many recipients".into();
        }
        let unknown = format!("550 5.1.1 <{path}>: no such mailhook here");
        let Some((local, domain)) = path.rsplit_once('@') else {
            return unknown;
        };
        if !domain.eq_ignore_ascii_case(&self.options.domain) {
            return format!(
                "550 5.7.1 <{path}>: this server takes mail for {} only",
                self.options.domain
            );
        }
        // Hook ids are lower-case hex; senders may change the case of a local part.
        let hook = local.to_ascii_lowercase();
        let route = match self.state.inner.intake.route(&hook).await {
            Ok(Some(route)) if route.mail() && route.active() => route,
            Ok(_) => return unknown,
            Err(e) => {
                tracing::warn!(error = %e, "SMTP: a mailhook could not be looked up");
                return "451 4.3.0 temporary failure; try again later".into();
            }
        };
        if self.recipients.iter().any(|r| r.hook == hook) {
            return "250 2.1.5 OK".into();
        }
        if let Err(wait) = self.state.inner.intake.check_rate(&hook) {
            return format!("451 4.7.1 this mailhook takes too many messages; retry in {wait} s");
        }
        self.recipients.push(Recipient { hook, route });
        "250 2.1.5 OK".into()
    }

    /// `DATA`: reads the message and answers once every recipient's delivery is committed.
    async fn data<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut BufReader<S>,
    ) -> std::io::Result<String> {
        if self.from.is_none() {
            return Ok("503 5.5.1 send MAIL first".into());
        }
        if self.recipients.is_empty() {
            return Ok("503 5.5.1 send RCPT first".into());
        }
        // A message that declared its size may not exceed it (RFC 1870 §6.3), so the room it
        // waits for among the large payloads in flight is that size, else the limit.
        let max = self
            .declared_size
            .unwrap_or(usize::MAX)
            .min(self.options.max_message_bytes);
        let gate = self.state.inner.runner.payload_gate().clone();
        let Ok(admission) = tokio::time::timeout(ADMISSION_WAIT, gate.admit(max)).await else {
            self.reset();
            return Ok("451 4.3.2 too many large messages at once; try again later".into());
        };
        reply(io, "354 end data with <CR><LF>.<CR><LF>").await?;
        let mut message = self.received_header().into_bytes();
        let read = tokio::time::timeout(DATA_TIMEOUT, read_data(io, &mut message, max)).await;
        let complete = match read {
            Err(_) => {
                reply(io, "421 4.4.2 timeout reading the message").await?;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "message data",
                ));
            }
            Ok(result) => result?,
        };
        let recipients = std::mem::take(&mut self.recipients);
        let declared = self.declared_size;
        self.reset();
        if !complete {
            let what = match declared {
                Some(_) if max < self.options.max_message_bytes => "its declared SIZE",
                _ => "this server's limit",
            };
            return Ok(format!(
                "552 5.3.4 the message is larger than {max} bytes, {what}"
            ));
        }
        let recipients = recipients.into_iter().map(|r| (r.hook, r.route)).collect();
        let intake = &self.state.inner.intake;
        let executions = match intake.deliver_mail(recipients, message, admission).await {
            Ok(executions) => executions,
            Err(MailRefusal::Rejected(reason)) => return Ok(format!("554 5.6.0 {reason}")),
            Err(MailRefusal::Failed(e)) => {
                tracing::warn!(error = %e, "SMTP: a message could not be stored");
                return Ok("451 4.3.0 the message could not be stored; try again later".into());
            }
        };
        for _ in &executions {
            self.state.inner.metrics.webhook_accepted();
        }
        tracing::debug!(peer = %self.peer, executions = executions.len(), "SMTP message accepted");
        Ok(format!("250 2.0.0 OK queued as {}", executions.join(" ")))
    }

    /// The trace header this server adds on top of the message (RFC 5321 §4.4).
    fn received_header(&self) -> String {
        format!(
            "Received: from {} ([{}])\r\n\tby {} with {};\r\n\t{}\r\n",
            self.helo.as_deref().unwrap_or("unknown"),
            self.peer.ip(),
            self.options.domain,
            if self.tls { "ESMTPS" } else { "ESMTP" },
            chrono::Utc::now().to_rfc2822(),
        )
    }
}

/// `arg` after a case-insensitive `keyword` (`FROM:`, `TO:`), blanks after it skipped.
fn strip_keyword<'t>(arg: &'t str, keyword: &str) -> Option<&'t str> {
    let head = arg.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| arg[keyword.len()..].trim_start())
}

/// `<path> params` → the address inside the angle brackets (empty for the null path `<>`)
/// and the parameters after it.
fn path_and_params(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix('<')?;
    let end = rest.find('>')?;
    let path = &rest[..end];
    // A source route (`<@a,@b:user@c>`) is read as its last part (RFC 5321 §4.1.2).
    let path = path.rsplit_once(':').map_or(path, |(_, p)| p);
    if path.chars().any(|c| c.is_control() || c == ' ') {
        return None;
    }
    Some((path, rest[end + 1..].trim()))
}

/// Reads one line into `buf` (cleared first), at most `max` bytes; the rest of a longer line
/// is read and dropped.
async fn read_line<R: AsyncBufReadExt + Unpin>(
    io: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let n = (&mut *io).take(max as u64).read_until(b'\n', buf).await?;
    if n == 0 {
        return Ok(Line::Eof);
    }
    if buf.ends_with(b"\n") {
        return Ok(Line::Complete);
    }
    if buf.len() < max {
        // The connection closed in the middle of a line.
        return Ok(Line::Eof);
    }
    let mut rest = Vec::new();
    loop {
        rest.clear();
        let n = (&mut *io)
            .take(max as u64)
            .read_until(b'\n', &mut rest)
            .await?;
        if n == 0 {
            return Ok(Line::Eof);
        }
        if rest.ends_with(b"\n") {
            return Ok(Line::TooLong);
        }
    }
}

/// Reads a message's text up to the line holding only `.`, undoing dot-stuffing, appending
/// it to `message` while it stays within `max` bytes. `Ok(false)`: it was longer (read to
/// its end all the same, so the session can go on).
async fn read_data<R: AsyncBufReadExt + Unpin>(
    io: &mut R,
    message: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<bool> {
    const CHUNK: usize = 64 * 1024;
    let limit = message.len() + max;
    let mut within = true;
    let mut at_line_start = true;
    let mut chunk = Vec::with_capacity(1024);
    loop {
        chunk.clear();
        let n = (&mut *io)
            .take(CHUNK as u64)
            .read_until(b'\n', &mut chunk)
            .await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection closed during DATA",
            ));
        }
        let mut part = &chunk[..];
        if at_line_start {
            if part == b".\r\n" || part == b".\n" {
                return Ok(within);
            }
            if part.starts_with(b".") {
                part = &part[1..];
            }
        }
        at_line_start = chunk.ends_with(b"\n");
        if within && message.len() + part.len() <= limit {
            message.extend_from_slice(part);
        } else {
            within = false;
        }
    }
}

/// Sends one reply; a client that does not read its replies for [`COMMAND_TIMEOUT`] is
/// dropped rather than holding its session forever.
async fn reply<S: AsyncWrite + Unpin>(io: &mut S, text: &str) -> std::io::Result<()> {
    let send = async {
        io.write_all(text.as_bytes()).await?;
        io.write_all(b"\r\n").await?;
        io.flush().await
    };
    tokio::time::timeout(COMMAND_TIMEOUT, send)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "the client reads nothing")
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_parameters_are_read() {
        assert_eq!(
            path_and_params("<a@b.c> SIZE=10 BODY=8BITMIME"),
            Some(("a@b.c", "SIZE=10 BODY=8BITMIME"))
        );
        assert_eq!(path_and_params("<>"), Some(("", "")));
        assert_eq!(path_and_params("<@x,@y:u@z>"), Some(("u@z", "")));
        assert_eq!(path_and_params("a@b.c"), None);
        assert_eq!(path_and_params("<a b@c>"), None);
        assert_eq!(strip_keyword("from: <a@b>", "FROM:"), Some("<a@b>"));
        assert_eq!(strip_keyword("TO:<a@b>", "FROM:"), None);
    }

    #[tokio::test]
    async fn data_is_unstuffed_bounded_and_ends_at_the_dot() {
        let text = b"Subject: x\r\n\r\n..leading dot\r\nplain\r\n.\r\nNEXT\r\n";
        let mut io = BufReader::new(&text[..]);
        let mut message = Vec::new();
        assert!(read_data(&mut io, &mut message, 1000).await.unwrap());
        assert_eq!(message, b"Subject: x\r\n\r\n.leading dot\r\nplain\r\n");
        // What follows the end is the next command.
        let mut line = Vec::new();
        assert!(matches!(
            read_line(&mut io, &mut line, 100).await.unwrap(),
            Line::Complete
        ));
        assert_eq!(line, b"NEXT\r\n");

        let mut io = BufReader::new(&text[..]);
        let mut message = b"Received: x\r\n".to_vec();
        assert!(!read_data(&mut io, &mut message, 10).await.unwrap());
        assert_eq!(
            message, b"Received: x\r\n",
            "nothing past the limit is kept"
        );

        let mut io = BufReader::new(&b"no end\r\n"[..]);
        assert!(read_data(&mut io, &mut Vec::new(), 100).await.is_err());
    }

    #[tokio::test]
    async fn long_lines_are_dropped_whole() {
        let text = format!("{}\r\nNOOP\r\n", "x".repeat(50));
        let mut io = BufReader::new(text.as_bytes());
        let mut line = Vec::new();
        assert!(matches!(
            read_line(&mut io, &mut line, 16).await.unwrap(),
            Line::TooLong
        ));
        assert!(matches!(
            read_line(&mut io, &mut line, 16).await.unwrap(),
            Line::Complete
        ));
        assert_eq!(line, b"NOOP\r\n");
        assert!(matches!(
            read_line(&mut io, &mut line, 16).await.unwrap(),
            Line::Eof
        ));
    }
}
