//! Mailhooks (`gateway:CustomMailHook`) end to end: the real `switchyard serve` started with
//! `--smtp-listen 127.0.0.1:PORT --mail-domain DOMAIN`, spoken to by a small SMTP client over
//! loopback (in clear text and after STARTTLS with a certificate made for the test). The
//! first three run on SQLite and, when the test matrix has it, PostgreSQL.
//!
//! - `smtp_delivery_runs_the_scenario`: the scenario lists its mailhook's address (API and
//!   console); `550` for an unknown hook, another domain, a webhook's id or an inactive
//!   scenario's mailhook; `503` out of sequence; `250` names the execution, which is stored
//!   by then; the bundle is Make's (sender, to, cc, subject, text, html, headers,
//!   attachments with binary data);
//! - `over_the_size_limit_is_552`: announced (`SIZE=`) and actual size;
//! - `raw_mime_posted_to_the_hook`: the hook URL takes the raw message; the same
//!   `Message-ID` twice runs once;
//! - `acknowledged_mail_survives_kill_9`: `250` from a server with no workers, `kill -9`,
//!   restart: the execution runs;
//! - `starttls`: STARTTLS is offered with a certificate, the session after the handshake
//!   takes mail, and it is not offered twice;
//! - `a_store_outage_is_a_temporary_failure`: `451` while the store is locked, `250` for the
//!   same message afterwards, one execution;
//! - the flags checked before anything starts (`--smtp-listen` needs `--mail-domain`, a bad
//!   domain, a missing certificate), and `serve --import` naming a mailhook's address.

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use harness::*;

const DOMAIN: &str = "mail.test";

common::backend_tests!(
    smtp_delivery_runs_the_scenario,
    raw_mime_posted_to_the_hook,
    acknowledged_mail_survives_kill_9,
);

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

/// `serve` with an SMTP receiver on a free port; the service and that port.
async fn serve_mail(db: &TestDb, extra: &[&str]) -> (Service, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["--smtp-listen", &listen, "--mail-domain", DOMAIN];
    args.extend_from_slice(extra);
    (db.serve(&args).await, port)
}

/// Mailhook → variables read from the mail bundle.
fn mail_scenario() -> Value {
    json!({
        "name": "mail intake",
        "flow": [
            {"id": 1, "module": "gateway:CustomMailHook", "version": 1,
             "parameters": {"hook": 3409412, "maxResults": 1}},
            {"id": 2, "module": "util:SetVariables", "version": 1, "mapper": {
                "scope": "roundtrip",
                "variables": [
                    {"name": "from", "value": "{{1.sender.email}}"},
                    {"name": "files", "value": "{{length(1.attachments)}}"},
                    {"name": "replyTo", "value": "{{get(1.headers; \"reply-to\")}}"}
                ]}}
        ]
    })
}

/// A tiny SMTP client: one command, one (possibly multi-line) reply.
struct Client<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), self.io.read_line(&mut line))
                .await
                .expect("a reply within 30 s")
                .expect("read a reply");
            assert!(n > 0, "the server closed the connection; so far: {text}");
            text.push_str(&line);
            // The last line of a reply has a space after its code (RFC 5321 §4.2.1).
            if line.as_bytes().get(3) != Some(&b'-') {
                let code = line[..3].parse().expect("a reply code");
                return (code, text);
            }
        }
    }

    async fn send(&mut self, command: &str) -> (u16, String) {
        self.io
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .expect("send");
        self.io.flush().await.expect("flush");
        self.reply().await
    }

    /// Sends `message` (lines ending in CRLF) as DATA's text, dot-stuffed, and its end.
    async fn data(&mut self, message: &str) -> (u16, String) {
        let (code, text) = self.send("DATA").await;
        assert_eq!(code, 354, "DATA: {text}");
        let mut stuffed = String::new();
        for line in message.split_inclusive("\r\n") {
            if line.starts_with('.') {
                stuffed.push('.');
            }
            stuffed.push_str(line);
        }
        stuffed.push_str(".\r\n");
        self.io
            .write_all(stuffed.as_bytes())
            .await
            .expect("send data");
        self.io.flush().await.expect("flush");
        self.reply().await
    }

    async fn expect(&mut self, command: &str, code: u16) -> String {
        let (got, text) = self.send(command).await;
        assert_eq!(got, code, "{command}: {text}");
        text
    }
}

async fn connect(port: u16) -> Client<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the SMTP port");
    let mut client = Client {
        io: BufReader::new(stream),
    };
    let (code, text) = client.reply().await;
    assert_eq!(code, 220, "greeting: {text}");
    client
}

const ATTACHMENT: [u8; 6] = [0, 1, 127, 128, 254, 255];

/// A message with a text and an HTML body and a binary attachment (`AAF/gP7/` in base64).
fn message(id: &str, to: &str) -> String {
    format!(
        "From: Ann Lee <ann@example.org>\r\n\
To: {to}\r\n\
Cc: Bob <bob@example.net>\r\n\
Subject: Invoice 42\r\n\
Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n\
Message-ID: <{id}@example.org>\r\n\
Reply-To: sales@example.org\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\
\r\n\
--XX\r\n\
Content-Type: multipart/alternative; boundary=\"YY\"\r\n\
\r\n\
--YY\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Please pay.\r\n\
.a line that starts with a dot\r\n\
--YY\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Please pay.</p>\r\n\
--YY--\r\n\
--XX\r\n\
Content-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename=\"invoice.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAF/gP7/\r\n\
--XX--\r\n"
    )
}

/// The bytes of a file in history: its handle (shown with its summary) names the stored file
/// in the data directory's `binaries/`.
fn buffer_bytes(db: &TestDb, value: &Value) -> Vec<u8> {
    let id = value["__IMTBINARY__"]
        .as_str()
        .unwrap_or_else(|| panic!("not a file: {value}"));
    assert!(
        value["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("(binary, ")),
        "history shows a file as its summary: {value}"
    );
    std::fs::read(db.data_dir().join("binaries").join(id)).expect("the stored file")
}

/// Creates and activates the mail scenario; its id and its mailhook's address.
async fn mail_hook(api: &Api) -> (String, String) {
    let (id, _) = api.create_active(&mail_scenario()).await;
    let scenario = api
        .get(&format!("/api/scenarios/{id}"))
        .await
        .expect(200, "get scenario")
        .json;
    let hooks = scenario["hooks"].as_array().expect("hooks").clone();
    assert_eq!(hooks.len(), 1, "{scenario}");
    let address = hooks[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("a mailhook lists its address: {scenario}"))
        .to_string();
    let hook_id = hooks[0]["url"]
        .as_str()
        .and_then(|u| u.strip_prefix("/hooks/"))
        .expect("hook url");
    assert_eq!(address, format!("{hook_id}@{DOMAIN}"));
    (id, address)
}

/// A console page, read in a session signed in with the API token.
async fn console_page(svc: &Service, path: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = http
        .post(svc.url("/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .expect("sign in");
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie: {login:?}"))
        .to_string();
    let page = http
        .get(svc.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .expect("console page");
    assert_eq!(page.status().as_u16(), 200, "{path}");
    page.text().await.unwrap()
}

async fn smtp_delivery_runs_the_scenario(db: TestDb) {
    let (svc, port) = serve_mail(&db, &[]).await;
    let api = &svc.api;
    let (scenario, address) = mail_hook(api).await;
    // A webhook's id at the mail domain is no mailbox.
    let (_, webhook) = api.create_active(&hook_scenario("plain")).await;
    let webhook_id = webhook
        .expect("hook")
        .trim_start_matches("/hooks/")
        .to_string();
    // The hooks listing shows the address too, and only for the mailhook.
    let listed = api
        .get(&format!("/api/scenarios/{scenario}/hooks"))
        .await
        .expect(200, "hooks")
        .json;
    assert_eq!(listed["hooks"][0]["address"], json!(address), "{listed}");
    // So does the console's scenario page.
    let page = console_page(&svc, &format!("/scenarios/{scenario}")).await;
    assert!(page.contains(&address), "{page}");

    let mut smtp = connect(port).await;
    // Out of sequence.
    smtp.expect("MAIL FROM:<ann@example.org>", 503).await;
    let ehlo = smtp.expect("EHLO client.example.org", 250).await;
    assert!(ehlo.contains("SIZE "), "{ehlo}");
    assert!(
        !ehlo.contains("STARTTLS"),
        "no certificate, no STARTTLS: {ehlo}"
    );
    smtp.expect("RCPT TO:<x@y>", 503).await;
    smtp.expect("DATA", 503).await;
    smtp.expect("MAIL FROM:<ann@example.org>", 250).await;
    smtp.expect("DATA", 503).await;
    // Unknown recipients.
    smtp.expect(&format!("RCPT TO:<{}@{DOMAIN}>", "0".repeat(64)), 550)
        .await;
    smtp.expect("RCPT TO:<postmaster@elsewhere.example>", 550)
        .await;
    smtp.expect(&format!("RCPT TO:<{webhook_id}@{DOMAIN}>"), 550)
        .await;
    // The hook's address; its local part in capitals is the same mailbox.
    let hook_id = address.split('@').next().unwrap();
    smtp.expect(
        &format!("RCPT TO:<{}@{DOMAIN}>", hook_id.to_uppercase()),
        250,
    )
    .await;
    let (code, text) = smtp.data(&message("m1", &address)).await;
    assert_eq!(code, 250, "{text}");
    let execution = text
        .trim()
        .rsplit(' ')
        .next()
        .expect("the execution id")
        .to_string();
    // Acknowledged means stored: the execution is there at once.
    let stored = api.get(&format!("/api/executions/{execution}")).await;
    assert_eq!(stored.status.as_u16(), 200, "{}", stored.text);
    assert_eq!(
        stored.json["scenarioId"],
        json!(scenario),
        "{}",
        stored.text
    );
    smtp.expect("QUIT", 221).await;

    let done = api.finished(&execution).await;
    assert_eq!(done["status"], json!("success"), "{done}");
    let log = api.log(&execution).await;
    let bundle = log[0]["output"].clone();
    assert_eq!(log[0]["module"], json!(1), "{log}");
    assert_eq!(
        bundle["sender"],
        json!({"name": "Ann Lee", "email": "ann@example.org"})
    );
    assert_eq!(bundle["to"], json!([{"name": "", "email": address}]));
    assert_eq!(
        bundle["cc"],
        json!([{"name": "Bob", "email": "bob@example.net"}])
    );
    assert_eq!(bundle["subject"], json!("Invoice 42"));
    assert_eq!(
        bundle["text"],
        json!("Please pay.\r\n.a line that starts with a dot"),
        "dot-stuffing is undone"
    );
    assert_eq!(bundle["html"], json!("<p>Please pay.</p>"));
    assert_eq!(bundle["headers"]["message-id"], json!("<m1@example.org>"));
    assert!(
        bundle["headers"]["received"]
            .as_str()
            .is_some_and(|r| r.contains("client.example.org") && r.contains(DOMAIN)),
        "the receiver adds its trace header: {}",
        bundle["headers"]
    );
    let attachment = &bundle["attachments"][0];
    assert_eq!(attachment["fileName"], json!("invoice.bin"));
    assert_eq!(attachment["contentType"], json!("application/octet-stream"));
    assert_eq!(attachment["fileSize"], json!(ATTACHMENT.len()));
    assert_eq!(buffer_bytes(&db, &attachment["data"]), ATTACHMENT);
    assert_eq!(
        log[1]["output"],
        json!({"from": "ann@example.org", "files": 1, "replyTo": "sales@example.org"}),
        "{log}"
    );

    // An inactive scenario's mailhook takes no mail.
    api.post(
        &format!("/api/scenarios/{scenario}/deactivate"),
        &Value::Null,
    )
    .await
    .expect(200, "deactivate");
    let mut smtp = connect(port).await;
    smtp.expect("HELO c", 250).await;
    smtp.expect("MAIL FROM:<a@example.org>", 250).await;
    smtp.expect(&format!("RCPT TO:<{address}>"), 550).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_size_limit_is_552() {
    let db = TestDb::new(Backend::Sqlite).await.expect("a database");
    let (svc, port) = serve_mail(&db, &["--max-mail-bytes", "2000"]).await;
    let (scenario, address) = mail_hook(&svc.api).await;
    let mut smtp = connect(port).await;
    let ehlo = smtp.expect("EHLO c", 250).await;
    assert!(ehlo.contains("SIZE 2000"), "{ehlo}");
    smtp.expect("MAIL FROM:<a@example.org> SIZE=5000", 552)
        .await;
    smtp.expect("MAIL FROM:<a@example.org>", 250).await;
    smtp.expect(&format!("RCPT TO:<{address}>"), 250).await;
    let big = format!(
        "From: a@example.org\r\nSubject: big\r\n\r\n{}",
        "0123456789012345678901234567890123456789\r\n".repeat(100)
    );
    let (code, text) = smtp.data(&big).await;
    assert_eq!(code, 552, "{text}");
    // A message may not exceed the size it declared either.
    smtp.expect("MAIL FROM:<a@example.org> SIZE=100", 250).await;
    smtp.expect(&format!("RCPT TO:<{address}>"), 250).await;
    let (code, text) = smtp
        .data(&format!(
            "From: a@example.org\r\n\r\n{}\r\n",
            "x".repeat(200)
        ))
        .await;
    assert_eq!(code, 552, "{text}");
    assert!(text.contains("declared SIZE"), "{text}");
    // The session goes on, and a message within the limit is taken.
    smtp.expect("MAIL FROM:<a@example.org>", 250).await;
    smtp.expect(&format!("RCPT TO:<{address}>"), 250).await;
    let (code, text) = smtp
        .data("From: a@example.org\r\nSubject: small\r\n\r\nhi\r\n")
        .await;
    assert_eq!(code, 250, "{text}");
    let executions = svc.api.all_finished(&scenario, 1, 30).await;
    assert_eq!(
        executions.len(),
        1,
        "only the small one ran: {executions:?}"
    );
}

async fn raw_mime_posted_to_the_hook(db: TestDb) {
    let (svc, _) = serve_mail(&db, &[]).await;
    let (scenario, address) = mail_hook(&svc.api).await;
    let hook_id = address.split('@').next().unwrap();
    let url = svc.url(&format!("/hooks/{hook_id}"));
    let http = reqwest::Client::new();
    let raw = message("posted", &address);
    let first = hook(&http, &url, Some("message/rfc822"), raw.clone(), &[])
        .await
        .expect(200, "raw MIME POST");
    let execution = execution_header(&first);
    let done = svc.api.finished(&execution).await;
    assert_eq!(done["status"], json!("success"), "{done}");
    let log = svc.api.log(&execution).await;
    assert_eq!(log[0]["output"]["subject"], json!("Invoice 42"), "{log}");
    assert_eq!(
        buffer_bytes(&db, &log[0]["output"]["attachments"][0]["data"]),
        ATTACHMENT
    );
    // The same message again (a provider's retry) is accepted once.
    let again = hook(&http, &url, Some("message/rfc822"), raw, &[])
        .await
        .expect(200, "the same message again");
    assert_eq!(again.header("x-switchyard-duplicate"), Some("true"));
    assert_eq!(execution_header(&again), execution);
    // A body that is no message is refused, saying why.
    let bad = hook(&http, &url, Some("text/plain"), "", &[]).await;
    assert_eq!(bad.status.as_u16(), 400, "{}", bad.text);
    assert!(bad.text.contains("raw message"), "{}", bad.text);
    assert_eq!(svc.api.executions(&scenario).await.len(), 1);
}

async fn acknowledged_mail_survives_kill_9(db: TestDb) {
    // No workers: the execution waits in the queue, so the kill finds it not yet run.
    let (mut svc, port) = serve_mail(&db, &["--no-workers"]).await;
    let (_, address) = mail_hook(&svc.api).await;
    let mut smtp = connect(port).await;
    smtp.expect("HELO c", 250).await;
    smtp.expect("MAIL FROM:<a@example.org>", 250).await;
    smtp.expect(&format!("RCPT TO:<{address}>"), 250).await;
    let (code, text) = smtp.data(&message("kill", &address)).await;
    assert_eq!(code, 250, "{text}");
    let execution = text.trim().rsplit(' ').next().unwrap().to_string();
    svc.kill();
    drop(smtp);

    let (svc, _) = serve_mail(&db, &[]).await;
    let done = svc.api.finished(&execution).await;
    assert_eq!(done["status"], json!("success"), "{done}");
    let log = svc.api.log(&execution).await;
    assert_eq!(
        log[0]["output"]["messageId"],
        json!("kill@example.org"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls() {
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

    let db = TestDb::new(Backend::Sqlite).await.expect("a database");
    let certified = rcgen::generate_simple_self_signed(vec![DOMAIN.to_string()]).expect("cert");
    let cert = db.dir.path().join("smtp.crt");
    let key = db.dir.path().join("smtp.key");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let (svc, port) = serve_mail(
        &db,
        &[
            "--smtp-tls-cert",
            cert.to_str().unwrap(),
            "--smtp-tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    let (_, address) = mail_hook(&svc.api).await;

    let mut smtp = connect(port).await;
    let ehlo = smtp.expect("EHLO c", 250).await;
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    smtp.expect("STARTTLS", 220).await;
    let mut roots = RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(DOMAIN).unwrap();
    let stream = connector
        .connect(name, smtp.io.into_inner())
        .await
        .expect("TLS handshake with the test's certificate");
    let mut tls = Client {
        io: BufReader::new(stream),
    };
    // A new session: EHLO again, and STARTTLS no longer offered.
    tls.expect("MAIL FROM:<a@example.org>", 503).await;
    let ehlo = tls.expect("EHLO c", 250).await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    tls.expect("STARTTLS", 503).await;
    tls.expect("MAIL FROM:<a@example.org>", 250).await;
    tls.expect(&format!("RCPT TO:<{address}>"), 250).await;
    let (code, text) = tls.data(&message("tls", &address)).await;
    assert_eq!(code, 250, "{text}");
    let execution = text.trim().rsplit(' ').next().unwrap().to_string();
    let done = svc.api.finished(&execution).await;
    assert_eq!(done["status"], json!("success"), "{done}");
    let log = svc.api.log(&execution).await;
    assert!(
        log[0]["output"]["headers"]["received"]
            .as_str()
            .is_some_and(|r| r.contains("ESMTPS")),
        "{log}"
    );
}

#[test]
fn smtp_flags_are_checked_before_start() {
    let run = |args: &[&str]| {
        std::process::Command::new(binary())
            .args(args)
            .output()
            .expect("run switchyard")
    };
    let out = run(&["serve", "--smtp-listen", "127.0.0.1:0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--mail-domain"), "{stderr}");
    let out = run(&[
        "serve",
        "--smtp-listen",
        "127.0.0.1:0",
        "--mail-domain",
        "not a domain",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not a domain name"), "{stderr}");
    let out = run(&["serve", "--smtp-tls-cert", "cert.pem"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--smtp-tls-key"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_certificate_stops_the_start_naming_it() {
    let db = TestDb::new(Backend::Sqlite).await.expect("a database");
    let listen = format!("127.0.0.1:{}", free_port());
    let cert = db.dir.path().join("missing.crt");
    let key = db.dir.path().join("missing.key");
    let mut proc = db.spawn_serve(&[
        "--smtp-listen",
        &listen,
        "--mail-domain",
        DOMAIN,
        "--smtp-tls-cert",
        cert.to_str().unwrap(),
        "--smtp-tls-key",
        key.to_str().unwrap(),
    ]);
    let status = proc.wait_exit(60).expect("serve exits");
    assert!(!status.success());
    let log = proc.log();
    assert!(
        log.contains("SMTP TLS certificate or key") && log.contains("missing.crt"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_names_the_mailhooks_address() {
    let db = TestDb::new(Backend::Sqlite).await.expect("a database");
    let dir = db.dir.path().join("scenarios");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("mail.json"), mail_scenario().to_string()).unwrap();
    let (svc, _) = serve_mail(&db, &["--import", dir.to_str().unwrap()]).await;
    let log = svc.proc.log();
    let line = log
        .lines()
        .find(|l| l.starts_with("imported"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("(mail to ") && line.contains(&format!("@{DOMAIN})")),
        "{line}"
    );
}

/// A message the store cannot take now gets `451` (the sender retries); sent again once the
/// store is back, it is taken, and it runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_is_a_temporary_failure() {
    let db = TestDb::new(Backend::Sqlite).await.expect("a database");
    let (svc, port) = serve_mail(&db, &[]).await;
    let (scenario, address) = mail_hook(&svc.api).await;
    let mut smtp = connect(port).await;
    smtp.expect("HELO c", 250).await;
    smtp.expect("MAIL FROM:<a@example.org>", 250).await;
    smtp.expect(&format!("RCPT TO:<{address}>"), 250).await;
    // The write lock held past the store's busy timeout (5 s) and its retry.
    let outage = db.outage(Duration::from_secs(12));
    let send = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        smtp.data(&message("outage", &address)).await
    };
    let ((), (code, text)) = tokio::join!(outage, send);
    assert_eq!(code, 451, "{text}");
    smtp.expect("MAIL FROM:<a@example.org>", 250).await;
    smtp.expect(&format!("RCPT TO:<{address}>"), 250).await;
    let (code, text) = smtp.data(&message("outage", &address)).await;
    assert_eq!(code, 250, "{text}");
    let all = svc.api.all_finished(&scenario, 1, 30).await;
    assert_eq!(all.len(), 1, "{all:?}");
}
