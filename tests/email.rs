//! The Email app (`email:*`, Make's version 7) against real mail servers the tests start on
//! 127.0.0.1: Dovecot (`dovecot-imapd`) for IMAP, run from a configuration generated into a
//! temporary directory (users from a password file, STARTTLS and implicit TLS with a
//! self-signed certificate made here), and Python's `aiosmtpd` for SMTP (STARTTLS required,
//! AUTH checked, each accepted message appended to the user's `Delivered` folder over IMAP
//! and its envelope recorded). `.ci/run` installs both. Connections are stored sealed through
//! the real `Vault` on SQLite (in-process tests) or `POST /api/connections` (the service test).
//! What each test proves:
//!
//! - `sent_mail_with_attachments_reads_back_through_imap`: `ActionSendEmail` over STARTTLS
//!   (self-signed certificate accepted through `rejectUnauthorized: false` for a host the
//!   operator allowed) sends to, cc and bcc (bcc in the envelope only), HTML, an attachment
//!   from binary data, the sender's name and priority, a copy kept in `Sent`; `TriggerNewEmail` reads it back as
//!   Make's bundle (`from`, `to`, `subject`, `html`, `attachments[]` with the same bytes), then
//!   `MarkAsRead` and `MoveEmail` change it on the server.
//! - `trigger_emits_each_message_once_across_restarts`: a scheduled `TriggerNewEmail` (implicit
//!   TLS, unread only, `markSeen`, limit 2) under `serve` forwards each new message once,
//!   oldest first — none already there when it started, none twice when `serve` restarts.
//! - `wrong_passwords_and_certificates_are_clear_errors`: a refused IMAP or SMTP login is an
//!   `InvalidAccessTokenError` that names the connection and never the password; a
//!   self-signed certificate is refused unless allowed, and `rejectUnauthorized: false` for a
//!   host the operator did not allow says how to allow it; a connection without its host is
//!   refused when stored, naming the field.

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use serde_json::{Value, json};
use switchyard::apps::{AppOptions, AppRegistry, EgressPolicy, HttpOptions};
use switchyard::connections::{Keyring, NewConnectionInput, Vault};
use switchyard::engine::{self, Report, RunInput, Status};
use switchyard::module::{ConnectionsHandle, ErrorKind, ExecutionContext, TriggerState};
use switchyard::store::Store;

use harness::{Backend, TestDb};

const USER: &str = "alice@example.test";
const PASSWORD: &str = "imap-and-smtp-pw-5f1c";
const CONNECTION_ID: &str = "4095630";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

/// Waits until `port` on 127.0.0.1 accepts connections.
fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process of the test, stopped (SIGTERM, then SIGKILL) and reaped on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Dovecot and aiosmtpd for one test, with their ports and files.
struct MailServers {
    dir: tempfile::TempDir,
    /// IMAP with STARTTLS offered (plain text allowed, for the test's own client).
    imap_port: u16,
    /// IMAP over implicit TLS.
    imaps_port: u16,
    /// SMTP with STARTTLS required before AUTH.
    smtp_port: u16,
    _smtp: Server,
    _dovecot: Server,
}

/// The Python interpreter that has `aiosmtpd` (Debian's `python3-aiosmtpd` installs it for
/// the system Python, which may not be the first `python3` on the path).
fn python_with_aiosmtpd() -> String {
    for candidate in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(candidate)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return candidate.to_string();
        }
    }
    panic!("no Python with aiosmtpd: install python3-aiosmtpd (as .ci/run does)");
}

const SMTP_SERVER: &str = r#"
import imaplib, json, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, user, password, imap_port, record = sys.argv[1:8]

def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login.decode() == user and auth_data.password.decode() == password)
    return AuthResult(success=ok, handled=False)

class Deliver:
    async def handle_DATA(self, server, session, envelope):
        imap = imaplib.IMAP4("127.0.0.1", int(imap_port))
        imap.login(user, password)
        imap.append("Delivered", None, None, envelope.content)
        imap.logout()
        with open(record, "a") as f:
            f.write(json.dumps({"from": envelope.mail_from, "rcpt": envelope.rcpt_tos}) + "\n")
        return "250 OK delivered"

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
controller = Controller(Deliver(), hostname="127.0.0.1", port=int(port), tls_context=context,
                        require_starttls=True, authenticator=authenticate, auth_required=True,
                        auth_require_tls=True)
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"#;

impl MailServers {
    fn start() -> MailServers {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        std::fs::write(base.join("cert.pem"), certified.cert.pem()).unwrap();
        std::fs::write(base.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
        std::fs::write(
            base.join("passwd"),
            format!("{USER}:{{PLAIN}}{PASSWORD}::::::\n"),
        )
        .unwrap();
        for sub in ["run", "state", "mail", "home"] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        // Dovecot never lets a mailbox be accessed as root: as root (CI), mail belongs to
        // `nobody`; otherwise to the user running the test, who also runs every process.
        let root = unsafe { libc::geteuid() } == 0;
        let (uid, gid, extra) = if root {
            for sub in ["mail", "home"] {
                let path = base.join(sub);
                std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
            ("65534".to_string(), "65534".to_string(), String::new())
        } else {
            let user = std::env::var("USER").unwrap_or_else(|_| "nobody".into());
            let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
            (
                uid.to_string(),
                gid.to_string(),
                format!(
                    "default_login_user = {user}\ndefault_internal_user = {user}\n\
                     default_internal_group = {gid}\n"
                ),
            )
        };
        let imap_port = free_port();
        let imaps_port = free_port();
        let smtp_port = free_port();
        let b = base.display();
        let config = format!(
            "base_dir = {b}/run\nstate_dir = {b}/state\nlog_path = {b}/dovecot.log\n\
             protocols = imap\nlisten = 127.0.0.1\nssl = yes\nssl_cert = <{b}/cert.pem\n\
             ssl_key = <{b}/key.pem\ndisable_plaintext_auth = no\n\
             auth_mechanisms = plain login\nmail_location = maildir:{b}/mail/%u\n\
             first_valid_uid = 1\nfirst_valid_gid = 1\nauth_failure_delay = 0\n{extra}\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {b}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={b}/home/%u\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    port = {imap_port}\n  }}\n\
               inet_listener imaps {{\n    port = {imaps_port}\n    ssl = yes\n  }}\n  chroot =\n}}\n\
             service anvil {{\n  chroot =\n}}\n"
        );
        std::fs::write(base.join("dovecot.conf"), config).unwrap();
        let dovecot_log = base.join("dovecot.out");
        let dovecot = Command::new("dovecot")
            .args(["-F", "-c"])
            .arg(base.join("dovecot.conf"))
            .stdout(Stdio::from(std::fs::File::create(&dovecot_log).unwrap()))
            .stderr(Stdio::from(
                std::fs::File::create(base.join("dovecot.err")).unwrap(),
            ))
            .spawn()
            .expect("dovecot: install dovecot-imapd (as .ci/run does)");
        let dovecot = Server(dovecot);
        wait_for_port(imap_port, "dovecot", &base.join("dovecot.err"));
        wait_for_port(imaps_port, "dovecot", &base.join("dovecot.err"));

        std::fs::write(base.join("smtp.py"), SMTP_SERVER).unwrap();
        let mut smtp = Command::new(python_with_aiosmtpd())
            .arg(base.join("smtp.py"))
            .args([
                smtp_port.to_string(),
                base.join("cert.pem").display().to_string(),
                base.join("key.pem").display().to_string(),
                USER.to_string(),
                PASSWORD.to_string(),
                imap_port.to_string(),
                base.join("smtp.jsonl").display().to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(base.join("smtp.err")).unwrap(),
            ))
            .spawn()
            .expect("python");
        let mut ready = String::new();
        std::io::BufReader::new(smtp.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(
            ready.trim(),
            "ready",
            "{}",
            std::fs::read_to_string(base.join("smtp.err")).unwrap_or_default()
        );
        let servers = MailServers {
            dir,
            imap_port,
            imaps_port,
            smtp_port,
            _smtp: Server(smtp),
            _dovecot: dovecot,
        };
        servers.create_folder("Delivered");
        servers.create_folder("Archive");
        servers.create_folder("Sent");
        servers
    }

    /// The test's own IMAP session (plain text on loopback), for seeding and looking.
    async fn session(&self) -> async_imap::Session<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.imap_port))
            .await
            .unwrap();
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.unwrap();
        client.login(USER, PASSWORD).await.map_err(|e| e.0).unwrap()
    }

    fn create_folder(&self, name: &str) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut session = self.session().await;
            session.create(name).await.unwrap();
            session.logout().await.unwrap();
        });
    }

    /// Appends a message from `from` with `subject` to the INBOX.
    async fn deliver(&self, from: &str, subject: &str) {
        let raw = format!(
            "From: {from}\r\nTo: {USER}\r\nSubject: {subject}\r\nMessage-ID: <{}@example.test>\r\n\
             Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\nBody of {subject}\r\n",
            uuid::Uuid::new_v4().simple()
        );
        let mut session = self.session().await;
        session.append("INBOX", None, None, raw).await.unwrap();
        session.logout().await.unwrap();
    }

    /// The messages of `folder`: (uid, flags, raw), by UID.
    async fn messages(&self, folder: &str) -> Vec<(u32, Vec<String>, Vec<u8>)> {
        let mut session = self.session().await;
        let mailbox = session.select(folder).await.unwrap();
        let mut out = Vec::new();
        if mailbox.exists > 0 {
            let fetched: Vec<_> = session
                .uid_fetch("1:*", "(UID FLAGS BODY.PEEK[])")
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            for f in fetched {
                let flags = f.flags().map(|fl| format!("{fl:?}")).collect();
                out.push((f.uid.unwrap(), flags, f.body().unwrap_or_default().to_vec()));
            }
        }
        session.logout().await.unwrap();
        out.sort_by_key(|m| m.0);
        out
    }

    /// The envelopes the SMTP server accepted.
    fn envelopes(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("smtp.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The connection's fields: IMAP with `imap_tls` (`starttls` on the plain port,
    /// `implicit` on the TLS one), SMTP with STARTTLS, self-signed certificates accepted.
    fn fields(&self, imap_tls: &str, password: &str) -> serde_json::Map<String, Value> {
        let port = if imap_tls == "implicit" {
            self.imaps_port
        } else {
            self.imap_port
        };
        json!({
            "host": "localhost", "port": port, "tls": imap_tls,
            "smtpHost": "localhost", "smtpPort": self.smtp_port, "smtpTls": "starttls",
            "username": USER, "password": password, "rejectUnauthorized": false
        })
        .as_object()
        .cloned()
        .unwrap()
    }
}

fn options(insecure_hosts: &[&str]) -> AppOptions {
    AppOptions {
        http: HttpOptions {
            egress: EgressPolicy::allowing_loopback(),
            insecure_tls_hosts: insecure_hosts.iter().map(|h| h.to_string()).collect(),
            ..HttpOptions::default()
        },
        ..AppOptions::default()
    }
}

/// A vault on a fresh SQLite store that checks connections against the app definitions.
async fn vault(registry: &AppRegistry) -> (tempfile::TempDir, Arc<Vault>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).await.unwrap();
    let keys = Keyring::load_file(dir.path()).unwrap();
    let vault = Vault::new(store, keys).with_apps(registry.defined().clone());
    (dir, Arc::new(vault))
}

fn email_connection(
    name: &str,
    id: &str,
    fields: serde_json::Map<String, Value>,
) -> NewConnectionInput {
    NewConnectionInput {
        id: Some(id.to_string()),
        name: name.to_string(),
        app: "email".into(),
        kind: Some("basic".into()),
        fields,
        test: false,
    }
}

async fn run(
    registry: &AppRegistry,
    vault: &Arc<Vault>,
    blueprint: &Value,
    state: Option<TriggerState>,
) -> Report {
    let scenario = switchyard::scenario::load(&blueprint.to_string(), registry).unwrap();
    let mut context = ExecutionContext::new("test");
    context
        .extensions
        .insert::<ConnectionsHandle>(vault.handle());
    engine::run(
        &scenario,
        RunInput {
            bundles: vec![json!({})],
            context,
            trigger: state,
            ..RunInput::default()
        },
    )
    .await
}

fn outputs(report: &Report, module: u32) -> Vec<Value> {
    report
        .log
        .iter()
        .filter(|e| e.module == module)
        .map(|e| (*e.output).clone())
        .collect()
}

fn watch(folder: &str, extra: Value) -> Value {
    let mut parameters = json!({
        "to": "", "from": "", "text": "", "folder": folder, "account": CONNECTION_ID.parse::<u64>().unwrap(),
        "subject": "", "criteria": "ALL", "markSeen": false, "maxResults": 10
    });
    for (k, v) in extra.as_object().unwrap() {
        parameters[k] = v.clone();
    }
    json!({"id": 1, "module": "email:TriggerNewEmail", "version": 7, "parameters": parameters,
           "mapper": {}})
}

#[tokio::test(flavor = "multi_thread")]
async fn sent_mail_with_attachments_reads_back_through_imap() {
    let servers = tokio::task::spawn_blocking(MailServers::start)
        .await
        .unwrap();
    let registry = AppRegistry::build(options(&["localhost"])).unwrap();
    let (_dir, vault) = vault(&registry).await;
    vault
        .create(&email_connection(
            "mail",
            CONNECTION_ID,
            servers.fields("starttls", PASSWORD),
        ))
        .await
        .unwrap();

    // A fresh trigger starts at the folder's end: this first poll emits nothing.
    let reader = json!({"name": "read", "flow": [
        watch("Delivered", json!({})),
        {"id": 2, "module": "email:MarkAsRead", "version": 7,
         "parameters": {"account": 4095630},
         "mapper": {"emailId": "{{1.uid}}", "folder": "Delivered"}},
        {"id": 3, "module": "email:MoveEmail", "version": 7,
         "parameters": {"account": 4095630},
         "mapper": {"emailId": "{{1.uid}}", "folder": "Delivered", "destinationFolder": "Archive"}}
    ]});
    let first = run(&registry, &vault, &reader, None).await;
    assert_eq!(first.status, Status::Success, "{:?}", first.error);
    assert!(outputs(&first, 1).is_empty());
    let mut state = TriggerState::default();
    state.apply(first.trigger.as_ref().expect("the poll commits its cursor"));

    let csv = "region,total\nnorth,12\nsouth,7\n";
    let sender = json!({"name": "send", "flow": [
        {"id": 1, "module": "email:ActionSendEmail", "version": 7,
         "parameters": {"account": 4095630, "saveAfterSent": true, "folder": "Sent"},
         "mapper": {
            "to": ["bob@example.test"], "cc": ["carol@example.test"], "bcc": ["dave@example.test"],
            "from": USER, "sender": "Alice Example", "headers": [], "replyTo": "",
            "subject": "Quarterly report ✓", "priority": "high", "inReplyTo": "",
            "references": [], "contentType": "html",
            "html": "<p>Hello <b>Bob</b>, the figures are attached.</p>",
            "attachments": [{"fileName": "report.csv", "data": format!("{{{{toBinary(\"{}\")}}}}", csv.replace('\n', "\\n"))}]
         }}
    ]});
    let sent = run(&registry, &vault, &sender, None).await;
    assert_eq!(sent.status, Status::Success, "{:?}", sent.error);
    let output = &outputs(&sent, 1)[0];
    assert!(
        output["messageId"].as_str().unwrap().starts_with('<'),
        "{output}"
    );
    assert_eq!(
        output["accepted"],
        json!([
            "bob@example.test",
            "carol@example.test",
            "dave@example.test"
        ])
    );
    assert!(
        output["response"].as_str().unwrap().starts_with("250"),
        "{output}"
    );
    let envelopes = servers.envelopes();
    assert_eq!(envelopes.len(), 1);
    assert_eq!(envelopes[0]["from"], USER);
    assert_eq!(
        envelopes[0]["rcpt"],
        json!([
            "bob@example.test",
            "carol@example.test",
            "dave@example.test"
        ])
    );

    // `saveAfterSent` kept a copy, read, in the folder the module names.
    let saved = servers.messages("Sent").await;
    assert_eq!(saved.len(), 1);
    assert!(saved[0].1.iter().any(|f| f == "Seen"), "{:?}", saved[0].1);
    let copy = mail_parser::MessageParser::default()
        .parse(&saved[0].2)
        .unwrap();
    assert_eq!(copy.subject(), Some("Quarterly report ✓"));

    let read = run(&registry, &vault, &reader, Some(state.clone())).await;
    assert_eq!(read.status, Status::Success, "{:?}", read.error);
    let bundles = outputs(&read, 1);
    assert_eq!(bundles.len(), 1, "{bundles:?}");
    let mail = &bundles[0];
    assert_eq!(mail["subject"], "Quarterly report ✓");
    assert_eq!(mail["folder"], "Delivered");
    assert_eq!(
        mail["from"],
        json!({"name": "Alice Example", "address": USER})
    );
    assert_eq!(
        mail["to"],
        json!([{"name": "", "address": "bob@example.test"}])
    );
    assert_eq!(
        mail["cc"],
        json!([{"name": "", "address": "carol@example.test"}])
    );
    assert_eq!(
        mail["bcc"],
        json!([]),
        "bcc is not written into the message"
    );
    assert!(mail["headers"].get("bcc").is_none(), "{}", mail["headers"]);
    assert_eq!(mail["headers"]["x-priority"], "1 (Highest)");
    assert!(mail["html"].as_str().unwrap().contains("<b>Bob</b>"));
    let attachment = &mail["attachments"][0];
    assert_eq!(attachment["fileName"], "report.csv");
    assert_eq!(attachment["contentType"], "text/csv");
    let bytes = switchyard::expr::value::as_buffer(&attachment["data"]).expect("binary data");
    assert_eq!(String::from_utf8(bytes).unwrap(), csv);
    let uid = mail["uid"].as_u64().unwrap();
    assert_eq!(outputs(&read, 2)[0]["uid"], uid);
    assert_eq!(outputs(&read, 3)[0]["destinationFolder"], "Archive");

    // Marked as read, then moved: the Delivered folder is empty, the archive has it, seen.
    assert!(servers.messages("Delivered").await.is_empty());
    let archived = servers.messages("Archive").await;
    assert_eq!(archived.len(), 1);
    assert!(
        archived[0].1.iter().any(|f| f == "Seen"),
        "{:?}",
        archived[0].1
    );
    let raw = String::from_utf8_lossy(&archived[0].2);
    assert!(!raw.to_ascii_lowercase().contains("\nbcc:"), "{raw}");

    // The next poll emits nothing again; the message is not there to be read twice anyway,
    // and the cursor has moved past it.
    state.apply(read.trigger.as_ref().unwrap());
    assert_eq!(state.cursor.as_ref().unwrap()["uid"], uid);
    let again = run(&registry, &vault, &reader, Some(state)).await;
    assert!(outputs(&again, 1).is_empty());

    // A cursor of another UIDVALIDITY (the folder was rebuilt: its UIDs name other messages)
    // starts again at the folder's end instead of emitting the folder twice; a state that is
    // not an IMAP cursor is an error saying how to start again.
    let archive = json!({"name": "archive", "flow": [watch("Archive", json!({}))]});
    let renumbered = TriggerState {
        cursor: Some(json!({"uidValidity": 1, "uid": 0})),
        seen_ids: Vec::new(),
    };
    let report = run(&registry, &vault, &archive, Some(renumbered)).await;
    assert_eq!(report.status, Status::Success, "{:?}", report.error);
    assert!(outputs(&report, 1).is_empty());
    let cursor = report.trigger.unwrap().cursor.unwrap();
    assert_ne!(cursor["uidValidity"], 1);
    assert_eq!(
        cursor["uid"], 1,
        "the archive's one message is behind the new cursor"
    );
    let corrupt = TriggerState {
        cursor: Some(json!({"page": 3})),
        seen_ids: Vec::new(),
    };
    let error = run(&registry, &vault, &archive, Some(corrupt))
        .await
        .error
        .unwrap();
    assert_eq!(error.name, "InconsistencyError");
    assert!(error.message.contains("reset-trigger"), "{}", error.message);

    // A message the module cannot find is a DataError naming it.
    let missing = json!({"name": "mark", "flow": [
        {"id": 1, "module": "email:MarkAsRead", "version": 7, "parameters": {"account": 4095630},
         "mapper": {"emailId": "999", "folder": "Archive"}}]});
    let report = run(&registry, &vault, &missing, None).await;
    let error = report.error.expect("an error");
    assert_eq!(error.name, "DataError", "{error:?}");
    assert!(
        error.message.contains("no message with UID 999"),
        "{}",
        error.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passwords_and_certificates_are_clear_errors() {
    let servers = tokio::task::spawn_blocking(MailServers::start)
        .await
        .unwrap();
    let registry = AppRegistry::build(options(&["localhost"])).unwrap();
    let (_dir, vault) = vault(&registry).await;
    let wrong = format!("wrong-{}", uuid::Uuid::new_v4().simple());
    vault
        .create(&email_connection(
            "bad",
            CONNECTION_ID,
            servers.fields("starttls", &wrong),
        ))
        .await
        .unwrap();
    let report = run(
        &registry,
        &vault,
        &json!({"name": "watch", "flow": [watch("INBOX", json!({}))]}),
        None,
    )
    .await;
    let error = report.error.expect("a refused login fails the poll");
    assert_eq!(
        error.name,
        ErrorKind::InvalidAccessTokenError.name(),
        "{error:?}"
    );
    assert!(
        error
            .message
            .contains("refused the login of connection \"bad\""),
        "{}",
        error.message
    );
    assert!(!format!("{error:?}").contains(&wrong));

    let send = json!({"name": "send", "flow": [
        {"id": 1, "module": "email:ActionSendEmail", "version": 7,
         "parameters": {"account": 4095630},
         "mapper": {"to": ["bob@example.test"], "subject": "x", "contentType": "text", "text": "x"}}]});
    let report = run(&registry, &vault, &send, None).await;
    let error = report.error.expect("a refused SMTP login fails the module");
    assert_eq!(
        error.name,
        ErrorKind::InvalidAccessTokenError.name(),
        "{error:?}"
    );
    assert!(
        error.message.contains("SMTP server localhost"),
        "{}",
        error.message
    );
    assert!(!format!("{error:?}").contains(&wrong));
    assert!(servers.envelopes().is_empty());

    // Certificates: checked when the connection does not say otherwise (self-signed: refused),
    // and `rejectUnauthorized: false` is honoured only for hosts the operator allowed.
    let mut checked = servers.fields("implicit", PASSWORD);
    checked.remove("rejectUnauthorized");
    vault
        .create(&email_connection("checked", "4095631", checked))
        .await
        .unwrap();
    let watch_checked = json!({"name": "watch", "flow": [
        {"id": 1, "module": "email:TriggerNewEmail", "version": 7,
         "parameters": {"account": 4095631, "folder": "INBOX", "criteria": "ALL"}, "mapper": {}}]});
    let error = run(&registry, &vault, &watch_checked, None)
        .await
        .error
        .expect("a self-signed certificate is refused");
    assert_eq!(error.name, "ConnectionError", "{error:?}");
    assert!(
        error.message.contains("TLS handshake failed"),
        "{}",
        error.message
    );

    let strict = AppRegistry::build(options(&[])).unwrap();
    let error = run(
        &strict,
        &vault,
        &json!({"name": "watch", "flow": [watch("INBOX", json!({}))]}),
        None,
    )
    .await
    .error
    .expect("rejectUnauthorized false needs the operator's consent");
    assert!(
        error.message.contains("--allow-insecure-tls localhost"),
        "{}",
        error.message
    );

    // `connections test` logs in over IMAP and SMTP.
    let refused = vault.test("bad").await.unwrap_err().to_string();
    assert!(refused.contains("refused the login"), "{refused}");
    assert!(!refused.contains(&wrong), "{refused}");
    let mut good = servers.fields("starttls", PASSWORD);
    good.insert("from".into(), json!(USER));
    vault
        .create(&email_connection("good", "4095632", good))
        .await
        .unwrap();
    vault
        .test("good")
        .await
        .expect("a connection that logs in passes its test");

    // Stored connections are checked against the connection type's schema.
    let mut no_host = servers.fields("starttls", PASSWORD);
    no_host.remove("host");
    let refused = vault
        .create(&email_connection("nohost", "4095633", no_host))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("\"host\" is required"), "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn trigger_emits_each_message_once_across_restarts() {
    let servers = tokio::task::spawn_blocking(MailServers::start)
        .await
        .unwrap();
    servers.deliver("old@example.test", "Already there").await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let serve_args = [
        "--min-interval-seconds",
        "1",
        "--allow-insecure-tls",
        "localhost",
    ];
    let service = db.serve(&serve_args).await;
    let mut fields = servers.fields("implicit", PASSWORD);
    fields.insert("from".into(), json!(USER));
    let reply = service
        .api
        .post(
            "/api/connections",
            &json!({"id": 8852424, "name": "mailbox", "app": "email", "kind": "basic",
                    "fields": fields}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert!(!reply.text.contains(PASSWORD));
    // As a Make export writes it: unread mail of the inbox, marked as read when fetched, each
    // forwarded with its sender and subject.
    let blueprint = json!({
        "name": "forward new mail",
        "flow": [
            {"id": 1, "module": "email:TriggerNewEmail", "version": 7,
             "parameters": {"to": "", "from": "", "text": "", "folder": "INBOX",
                            "account": 8852424, "subject": "", "criteria": "UNSEEN",
                            "markSeen": true, "maxResults": 2},
             "mapper": {}},
            {"id": 2, "module": "email:ActionSendEmail", "version": 7,
             "parameters": {"account": 8852424, "saveAfterSent": false},
             "mapper": {"to": ["log@example.test"], "subject": "Fwd: {{1.subject}}",
                        "contentType": "text", "text": "{{1.from.address}}: {{1.text}}"}}
        ],
        "scheduling": {"type": "indefinitely", "interval": 1}
    });
    let id = service.api.create(&blueprint).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = service
        .api
        .post(&format!("/api/scenarios/{id}/activate"), &json!({}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    let forwarded = || async {
        servers
            .messages("Delivered")
            .await
            .into_iter()
            .map(|(_, _, raw)| {
                let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
                m.subject().unwrap_or_default().to_string()
            })
            .collect::<Vec<_>>()
    };
    let wait_for = |count: usize| {
        let forwarded = &forwarded;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let now = forwarded().await;
                if now.len() >= count {
                    return now;
                }
                assert!(Instant::now() < deadline, "only {now:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };

    db.executions_at_least(1).await;
    for (from, subject) in [
        ("ann@example.test", "First"),
        ("bob@example.test", "Second"),
        ("cy@example.test", "Third"),
    ] {
        servers.deliver(from, subject).await;
    }
    assert_eq!(
        wait_for(3).await,
        ["Fwd: First", "Fwd: Second", "Fwd: Third"]
    );
    db.executions_settled().await;
    drop(service);

    servers.deliver("dee@example.test", "Fourth").await;
    let service = db.serve(&serve_args).await;
    assert_eq!(
        wait_for(4).await,
        ["Fwd: First", "Fwd: Second", "Fwd: Third", "Fwd: Fourth"]
    );
    let before = db.ended_executions();
    db.executions_at_least(before + 2).await;
    assert_eq!(forwarded().await.len(), 4, "nothing is forwarded twice");
    let inbox = servers.messages("INBOX").await;
    let seen: Vec<bool> = inbox
        .iter()
        .map(|(_, flags, _)| flags.iter().any(|f| f == "Seen"))
        .collect();
    assert_eq!(
        seen,
        [false, true, true, true, true],
        "the message there before the first poll stays unread"
    );
    let text = String::from_utf8_lossy(&servers.messages("Delivered").await[0].2).to_string();
    assert!(text.contains("ann@example.test: Body of First"), "{text}");
    drop(service);
}
