//! A corpus of blueprints in the Make exporter's full shape (`tests/data/exports/*.json`:
//! designer metadata, `restore`/`expect`/`interface` blocks, `metadata.scenario` with keys
//! newer exporters add, placeholder modules, unknown keys) loaded and run as a new user would
//! (issue 12). Each file covers several of the compatibility gaps:
//!
//! - `lead-intake.json`: system variables (1), a labelled filter without conditions (3),
//!   unknown keys as warnings (5), a placeholder module (7), doubled quotes (8), an empty
//!   argument (10), and the Text parser modules;
//! - `order-routing.json`: a disabled branch (2), a nested if-else and a filter on an if-else
//!   (4), `json:ParseJSON` of constant invalid JSON as a warning handled by its error route
//!   (5), one-item arrays where one value is expected (9);
//! - `half-finished.json`: every error of every module in one pass, each with its path (6);
//! - `mailhook-leads.json` (trimmed from a public export, see `tests/data/exports/README.md`):
//!   a `gateway:CustomMailHook` scenario run on the bundle an e-mail becomes — a filter on
//!   `1.subject`, `1.html`/`1.text` and `get(1.headers; "reply-to")` as the export maps them;
//! - `subscenario-callee.json`, `subscenario-caller.json` (issue 20, point 7): a called
//!   scenario's declared inputs (`interface`, `StartSubscenario`'s `metadata.interface`) read
//!   as `{{var.input.NAME}}`, `ReturnData` ending the execution with its outputs, and a
//!   `CallSubscenario` run without the service (`tests/subscenarios.rs` runs them through it);
//! - `keychains-and-tls.json` (issue 20, points 1, 2, 4, 5, 6) and `call-log-keychain.json`
//!   (a published export whose keychains are named by Make's id);
//! - `order-emails.json`: the Text parser modules of a published export, unchanged, over
//!   e-mails with CRLF lines, matched with JavaScript's regular expressions (issue 20).
//!
//! `tests/data/exports/README.md` says where each export comes from.

use serde_json::{Value, json};
use switchyard::apps::AppRegistry;
use switchyard::engine::{self, RunInput};
use switchyard::module::ExecutionContext;
use switchyard::scenario::{self, Checked};

fn check(file: &str) -> Checked {
    let path = format!("{}/tests/data/exports/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("export file");
    let registry = AppRegistry::build(Default::default()).expect("registry");
    scenario::check(&text, &registry, &Default::default()).expect("valid JSON")
}

fn listed(problems: &[scenario::Problem]) -> Vec<String> {
    problems.iter().map(ToString::to_string).collect()
}

/// Runs the export with `bundles` as its webhook's input; the outputs of module `id`.
async fn run(checked: &Checked, bundles: Vec<Value>) -> (engine::Report, Vec<(u32, Value)>) {
    let scenario = checked.scenario.as_ref().expect("the export loads");
    let input = RunInput {
        bundles,
        context: ExecutionContext {
            scenario_id: Some("scn-7".into()),
            ..ExecutionContext::new("exec-1")
        },
        public_url: Some("https://flows.example.com/".into()),
        ..RunInput::default()
    };
    let report = engine::run(scenario, input).await;
    let outputs = report
        .log
        .iter()
        .map(|e| (e.module, (*e.output).clone()))
        .collect();
    (report, outputs)
}

fn outputs_of(outputs: &[(u32, Value)], id: u32) -> Vec<Value> {
    outputs
        .iter()
        .filter(|(m, _)| *m == id)
        .map(|(_, v)| v.clone())
        .collect()
}

#[tokio::test]
async fn lead_intake_loads_with_warnings_and_runs() {
    let checked = check("lead-intake.json");
    assert!(checked.errors.is_empty(), "{:#?}", checked.errors);
    assert_eq!(
        listed(&checked.warnings),
        [
            "metadata.scenario.autoRetry: unknown key `autoRetry` is ignored",
            "flow[4]._public_note: unknown key `_public_note` is ignored",
            "flow[5].routes[1].flow[0]: an empty placeholder module (placeholder:Placeholder) is skipped",
        ]
    );
    let (report, outputs) = run(
        &checked,
        vec![json!({
            "message": "Hi, I am Ann (ANN@Example.org), see https://ann.example.org/cv.",
            "phone": "+1 (555) 010-0199",
            "html": "<p>Dear team,<br>please call &amp; write.</p><script>track()</script>"
        })],
    )
    .await;
    assert_eq!(report.status, engine::Status::Success, "{:?}", report.error);
    assert_eq!(
        outputs_of(&outputs, 2),
        [json!({"i": 1, "email": "ANN@Example.org", "__IMTMATCH__": "ANN@Example.org"})]
    );
    assert_eq!(outputs_of(&outputs, 3), [json!({"text": "+15550100199"})]);
    assert_eq!(
        outputs_of(&outputs, 4),
        [json!({"text": "Dear team,\nplease call & write."})]
    );
    assert_eq!(
        outputs_of(&outputs, 5),
        [json!({
            "summary": "Lead intake run exec-1 after 5 operations",
            "quoted": "\"ANN@Example.org\"",
            "phone": "+1 (555) 010-0199",
            "digits": "+15550100199",
            "text": "Dear team,\nplease call & write."
        })]
    );
    assert_eq!(
        outputs_of(&outputs, 7),
        [json!({"i": 1, "element": "https://ann.example.org/cv"})]
    );
}

#[tokio::test]
async fn order_routing_runs_nested_if_else_and_handles_the_bad_json_at_run_time() {
    let checked = check("order-routing.json");
    assert!(checked.errors.is_empty(), "{:#?}", checked.errors);
    let warnings = listed(&checked.warnings);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].starts_with("flow[1].routes[0].flow[0].mapper.json: ")
            && warnings[0].ends_with("(the module will fail when it runs)"),
        "{warnings:#?}"
    );
    let order = |total: u32| {
        json!({"kind": "order", "total": total,
               "items": [{"date": "2026-03-01T10:00:00Z", "qty": 3}]})
    };
    let (report, outputs) = run(
        &checked,
        vec![
            order(5000),
            order(500),
            order(5),
            json!({"kind": "refund", "total": 500, "items": []}),
        ],
    )
    .await;
    // The bad constant JSON fails at run time and its error route (Ignore) handles it.
    assert_eq!(report.status, engine::Status::Success, "{:?}", report.error);
    assert!(outputs_of(&outputs, 3).is_empty());
    assert_eq!(
        outputs_of(&outputs, 13),
        [
            json!({"line": "huge order of 2026-03-01 for 6 units"}),
            json!({"line": "large order of 2026-03-01 for 6 units"}),
            json!({"line": "small order of 2026-03-01 for 6 units"}),
        ]
    );
    assert!(
        outputs_of(&outputs, 6).is_empty(),
        "the disabled branch never runs"
    );
}

#[tokio::test]
async fn order_emails_parse_subjects_and_crlf_lines_as_javascript_does() {
    let checked = check("order-emails.json");
    assert!(checked.errors.is_empty(), "{:#?}", checked.errors);
    assert!(checked.warnings.is_empty(), "{:#?}", checked.warnings);
    let email = |subject: &str, text: &str| {
        json!({"subject": subject, "text": text, "messageId": "m-1",
               "from": {"address": "shop@example.com"}})
    };
    let (report, outputs) = run(
        &checked,
        vec![
            email(
                "[Invoice] Order No. A1042: paid",
                "Hello,\r\nyour ORDER A1042 has shipped.\r\nThanks",
            ),
            email("Newsletter", "Nothing\r\nhere"),
        ],
    )
    .await;
    assert_eq!(report.status, engine::Status::Success, "{:?}", report.error);
    // Case-insensitive (`sensitive: false`); `.` in "no." matches any character.
    assert_eq!(
        outputs_of(&outputs, 17),
        [
            json!({"i": 1, "$1": "Invoice", "$2": "A1042", "$3": "paid",
                   "__IMTMATCH__": "[Invoice] Order No. A1042: paid"}),
            json!({}),
        ]
    );
    // `^(.*order.*)$` with `multiline`: in JavaScript a line also ends at `\r`, so the match
    // stops before it (the `regex` crate's `.` and `$` kept the `\r`).
    assert_eq!(
        outputs_of(&outputs, 23),
        [
            json!({"i": 1, "$1": "your ORDER A1042 has shipped.",
                   "__IMTMATCH__": "your ORDER A1042 has shipped."}),
            json!({}),
        ]
    );
    let rows = outputs_of(&outputs, 22);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        json!({"from": "shop@example.com", "type": "Invoice", "order": "A1042",
               "status": "paid", "line": "your ORDER A1042 has shipped.",
               "messageId": "m-1"})
    );
    assert_eq!(rows[1]["order"], json!(null), "{}", rows[1]);
}

#[test]
fn half_finished_export_reports_every_error_in_one_pass() {
    let checked = check("half-finished.json");
    assert!(checked.scenario.is_none());
    let errors = listed(&checked.errors);
    let expected = [
        "metadata.scenario.roundtrips: invalid type: string \"one\", expected u32",
        "flow[1].id: invalid type: string \"2\", expected u32",
        "flow[4].routes[0].flow[0].routes: invalid type: string \"none\", expected a sequence",
        "flow[2].mapper.value: column 3: unknown module 9 in {{9.…}}",
        "flow[2].filter.conditions[0][0].o: unknown operator \"text:sortof\"",
        "flow[3].module: unknown module type \"acme-crm:AddLead\": no app \"acme-crm\" is installed (`switchyard apps list` lists the apps; an app can be added as data, docs/apps.md)",
    ];
    assert_eq!(errors, expected);
}

#[test]
fn validate_command_exits_by_errors_and_strictness() {
    let exe = env!("CARGO_BIN_EXE_switchyard");
    let dir = format!("{}/tests/data/exports", env!("CARGO_MANIFEST_DIR"));
    let status = |args: &[&str]| {
        let out = std::process::Command::new(exe)
            .arg("validate")
            .args(args)
            .output()
            .expect("switchyard runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let lead = format!("{dir}/lead-intake.json");
    let (code, stdout) = status(&[&lead]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("warning: flow[4]._public_note: unknown key"),
        "{stdout}"
    );
    assert!(stdout.contains("valid, with 3 warning(s)"), "{stdout}");
    let (code, _) = status(&[&lead, "--strict"]);
    assert_eq!(code, Some(1));
    let (code, stdout) = status(&[&format!("{dir}/half-finished.json"), "--json"]);
    assert_eq!(code, Some(1));
    let results: Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(results[0]["valid"], false);
    assert_eq!(results[0]["errors"].as_array().map(Vec::len), Some(6));
    assert_eq!(results[0]["errors"][1]["path"], "flow[1].id");
    assert_eq!(results[0]["warnings"], json!([]));
}

/// Runs the `switchyard` binary with a fixed master key and no database from the
/// environment: its exit code, its standard output and error together, and its standard
/// output alone.
fn switchyard_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("SWITCHYARD_MASTER_KEY", "00".repeat(32))
        .env_remove("SWITCHYARD_DATABASE_URL")
        .output()
        .expect("switchyard runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let both = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), both, stdout)
}

/// The path of an export of the corpus.
fn export_path(file: &str) -> String {
    format!("{}/tests/data/exports/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// `keychains-and-tls.json` (issue 20): saved with a byte-order mark; Make's keychains named
/// by number in `key` (basic and API-key auth); a module reading one that runs after it;
/// certificate checks turned off; a placeholder URL; a data store named by number. It loads
/// with a warning for each, at its path, and no error.
#[tokio::test]
async fn keychains_tls_and_forward_references_load_with_warnings() {
    let checked = check("keychains-and-tls.json");
    assert!(checked.errors.is_empty(), "{:#?}", checked.errors);
    assert_eq!(
        listed(&checked.warnings),
        [
            "flow[1].mapper.value: column 3: module 4 runs after module 2 on this path, so {{4.…}} reads as empty (as in Make)",
            "flow[2].mapper.rejectUnauthorized: is false: certificate checks stay on unless the operator allows the host (--allow-insecure-tls HOST); otherwise the module fails when it runs",
            "flow[4].mapper.url: is not a valid URL (invalid international domain name)",
        ]
    );
    let scenario = checked.scenario.as_ref().expect("loads");
    // Nothing is stored yet: every connection and data store it names is reported, with
    // the command that creates it.
    let missing = switchyard::catalog::missing_references(None, scenario)
        .await
        .expect("no database to fail");
    assert_eq!(
        listed(&missing),
        [
            "flow[2].parameters.key: module 3 (http:ActionSendDataBasicAuth) uses connection 71843, which does not exist here: create it with `switchyard connections add NAME --app http --id 71843 …` (or on the console's Connect page)",
            "flow[3].parameters.key: module 4 (http:ActionSendDataAPIKeyAuth) uses connection 14964, which does not exist here: create it with `switchyard connections add NAME --app http --id 14964 …` (or on the console's Connect page)",
            "flow[5].parameters.datastore: module 6 (datastore:AddRecord) uses data store 148248, which does not exist here: create it with `switchyard datastores create NAME --id 148248 --fields …`",
        ]
    );
}

/// The contract of issue 20: `validate` exits 0 with only warnings, each printed with its
/// JSON path; `connections add … --id N` stores a connection that `"key": N` resolves to,
/// after which its warning is gone; importing the file (BOM and all) keeps the warnings.
#[test]
fn validate_and_import_report_missing_connections_until_they_exist() {
    let file = export_path("keychains-and-tls.json");
    let data = tempfile::tempdir().expect("temp dir");
    let data_dir = data.path().to_str().expect("UTF-8 path");
    let switchyard = switchyard_cli;
    // No database yet: every reference is a warning; the file still validates.
    let (code, out, _) = switchyard(&["validate", &file]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("warning: flow[2].parameters.key: module 3 (http:ActionSendDataBasicAuth) uses connection 71843"),
        "{out}"
    );
    assert!(out.contains("valid, with 6 warning(s)"), "{out}");

    let (code, out, _) = switchyard(&[
        "connections",
        "add",
        "intranet",
        "--app",
        "http",
        "--kind",
        "basic",
        "--username",
        "sync",
        "--password",
        "pw-0123",
        "--id",
        "71843",
        "--data-dir",
        data_dir,
    ]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out, _) = switchyard(&[
        "connections",
        "add",
        "status-api",
        "--app",
        "http",
        "--kind",
        "api_key",
        "--key-name",
        "X-Api-Key",
        "--token",
        "k-0123456789",
        "--id",
        "14964",
        "--data-dir",
        data_dir,
    ]);
    assert_eq!(code, Some(0), "{out}");
    // A number is Make's id, never a name; an id is taken once.
    let (code, out, _) = switchyard(&[
        "connections",
        "add",
        "71843",
        "--app",
        "http",
        "--kind",
        "bearer",
        "--token",
        "t",
        "--data-dir",
        data_dir,
    ]);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("must not be a number"), "{out}");
    let (code, out, _) = switchyard(&[
        "connections",
        "add",
        "again",
        "--app",
        "http",
        "--kind",
        "bearer",
        "--token",
        "t",
        "--id",
        "71843",
        "--data-dir",
        data_dir,
    ]);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("or with id 71843 already exists"), "{out}");

    let (code, out, _) = switchyard(&["validate", &file, "--data-dir", data_dir]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("connection 71843"), "{out}");
    assert!(!out.contains("connection 14964"), "{out}");
    assert!(out.contains("uses data store 148248"), "{out}");
    assert!(out.contains("valid, with 4 warning(s)"), "{out}");

    // Imported with its byte-order mark, through the catalog the API and console use too.
    let (code, out, stdout) = switchyard(&[
        "scenarios",
        "import",
        &file,
        "--data-dir",
        data_dir,
        "--json",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let imported: Value = serde_json::from_str(&stdout).expect("JSON output");
    let warnings = imported["imported"][0]["warnings"]
        .as_array()
        .expect("warnings");
    assert_eq!(warnings.len(), 4, "{warnings:?}");
    assert_eq!(warnings[3]["path"], "flow[5].parameters.datastore");
    let (code, out, _) = switchyard(&["scenarios", "list", "--data-dir", data_dir, "--json"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Intranet order sync"), "{out}");
}

/// An HTTPS server on 127.0.0.1 with a self-signed certificate, answering every request with
/// `{"ok": true}`; its port.
async fn self_signed_server() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).expect("cert");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .expect("TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to answer.
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"ok": true}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

/// Make's `rejectUnauthorized: false` (issue 20): certificate checks stay on unless the
/// operator allows the host (`--allow-insecure-tls`); the module's error says how. Allowed,
/// the request reaches a self-signed server; a module that did not ask keeps its checks.
#[tokio::test]
async fn certificate_checks_are_off_only_for_hosts_the_operator_allows() {
    use switchyard::apps::{AppOptions, HttpOptions};
    let port = self_signed_server().await;
    let blueprint = |reject: bool| {
        json!({"name": "tls", "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "h"}},
            {"id": 2, "module": "http:ActionSendData", "version": 3,
             "parameters": {"handleErrors": false},
             "mapper": {"url": format!("https://127.0.0.1:{port}/status"), "method": "get",
                        "parseResponse": true, "rejectUnauthorized": reject}}
        ]})
        .to_string()
    };
    let run_with = |insecure: Vec<String>, reject: bool| {
        let text = blueprint(reject);
        async move {
            let registry = AppRegistry::build(AppOptions {
                http: HttpOptions {
                    insecure_tls_hosts: insecure,
                    ..HttpOptions::allowing_loopback()
                },
                ..AppOptions::default()
            })
            .expect("registry");
            let scenario = scenario::load(&text, &registry).expect("loads");
            engine::run(
                &scenario,
                RunInput {
                    bundles: vec![json!({})],
                    ..RunInput::default()
                },
            )
            .await
        }
    };
    let refused = run_with(Vec::new(), false).await;
    assert_eq!(refused.status, engine::Status::Error);
    let error = refused.error.expect("an error");
    assert_eq!(error.name, "InvalidConfigurationError", "{error:?}");
    assert!(
        error.message.contains("--allow-insecure-tls 127.0.0.1"),
        "{}",
        error.message
    );

    let allowed = run_with(vec!["127.0.0.1".into()], false).await;
    assert_eq!(
        allowed.status,
        engine::Status::Success,
        "{:?}",
        allowed.error
    );
    let output = allowed.log.last().expect("module 2 ran");
    assert_eq!(output.output["data"], json!({"ok": true}));

    // Allowing a host does not turn checks off for modules that keep them.
    let checked = run_with(vec!["127.0.0.1".into()], true).await;
    assert_eq!(checked.status, engine::Status::Error);
    assert_eq!(checked.error.expect("an error").name, "ConnectionError");
}

/// A lead e-mail as the portal sends it, in the bundle a mailhook makes of it.
fn lead_mail(subject: &str) -> Value {
    let raw = format!(
        "From: Portal <noreply@portal.example>\r\n\
To: leads@mail.example\r\n\
Subject: {subject}\r\n\
Reply-To: Maria K <maria@example.gr>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b\"\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
plain text part\r\n\
--b\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<html><style>p {{color: red}}</style><div>Ακίνητο #1234567</div><p>Maria&nbsp;K &amp; family</p><p>+306900000000</p></html>\r\n\
--b--\r\n"
    );
    let bundle = switchyard::api::mail_bundle(raw.as_bytes()).expect("a message");
    serde_json::from_str(&bundle).expect("JSON")
}

#[tokio::test]
async fn a_mailhook_export_runs_on_a_received_mail() {
    let checked = check("mailhook-leads.json");
    assert!(checked.errors.is_empty(), "{:#?}", checked.errors);
    let scenario = checked.scenario.as_ref().expect("loads");
    assert_eq!(
        scenario.mail_trigger().map(|n| n.id),
        Some(1),
        "the mailhook is the scenario's mail trigger"
    );

    let (report, outputs) = run(&checked, vec![lead_mail("Νέος Πελάτης για ακίνητό σας")]).await;
    assert_eq!(report.status, engine::Status::Success, "{:?}", report.error);
    let body = outputs_of(&outputs, 4);
    assert_eq!(body.len(), 1, "{outputs:?}");
    let text = body[0]["bodyText"].as_str().expect("bodyText");
    // The HTML (over 99 characters) is the one read, its markup and entities gone.
    assert!(text.contains("Ακίνητο #1234567"), "{text:?}");
    assert!(text.contains("Maria K & family"), "{text:?}");
    assert!(!text.contains('<') && !text.contains("color"), "{text:?}");
    assert!(!text.contains("plain text part"), "{text:?}");
    assert_eq!(
        outputs_of(&outputs, 2),
        [json!({"adIdRaw": "1234567", "replyTo": "maria@example.gr"})]
    );

    // Another portal mail: the filter on `1.subject` stops it.
    let (report, outputs) = run(&checked, vec![lead_mail("Your weekly report")]).await;
    assert_eq!(report.status, engine::Status::Success, "{:?}", report.error);
    assert!(outputs_of(&outputs, 4).is_empty(), "{outputs:?}");
    assert!(outputs_of(&outputs, 2).is_empty(), "{outputs:?}");
}

#[tokio::test]
async fn subscenario_callee_reads_its_declared_inputs_and_ends_at_the_first_return_data() {
    let checked = check("subscenario-callee.json");
    assert!(checked.errors.is_empty(), "{:#?}", checked.errors);
    let scenario = checked.scenario.as_ref().expect("the export loads");
    assert!(scenario.is_callable());
    let inputs: Vec<&str> = scenario
        .interface
        .input
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(inputs, ["orderNumber", "quantity", "express"]);
    assert_eq!(scenario.interface.output.len(), 4);

    // Express: the first route's ReturnData ends the execution; the second route never runs.
    let (report, outputs) = run(
        &checked,
        vec![json!({"orderNumber": "A-1", "quantity": 3, "express": true})],
    )
    .await;
    assert_eq!(report.status, engine::Status::Success, "{:?}", report.error);
    let returned = json!({"orderNumber": "A-1", "total": 30, "shipping": "express"});
    assert_eq!(
        report.outputs.clone().map(Value::Object),
        Some(returned.clone())
    );
    assert_eq!(outputs_of(&outputs, 4), std::slice::from_ref(&returned));
    assert!(outputs_of(&outputs, 5).is_empty());
    assert_eq!(report.to_json()["outputs"], returned);
    // ReturnData costs no operation (Make does not bill it): trigger, variable.
    assert_eq!(report.operations, 2);

    let (report, _) = run(&checked, vec![json!({"orderNumber": "B-2", "quantity": 1})]).await;
    assert_eq!(
        report.outputs.map(Value::Object),
        Some(json!({"orderNumber": "B-2", "total": 10, "shipping": "standard"}))
    );
}

#[tokio::test]
async fn subscenario_caller_loads_and_its_call_says_a_service_is_needed_when_run_alone() {
    let checked = check("subscenario-caller.json");
    assert!(checked.errors.is_empty(), "{:#?}", checked.errors);
    let (report, _) = run(&checked, vec![json!({"order": "A-1", "qty": 2})]).await;
    assert_eq!(report.status, engine::Status::Error);
    let error = report.error.expect("the call fails");
    assert_eq!(
        (error.module, error.name.as_str()),
        (2, "InvalidConfigurationError")
    );
    assert!(
        error
            .message
            .contains("run the calling scenario under switchyard serve or worker"),
        "{}",
        error.message
    );
}

#[test]
fn a_return_data_followed_by_a_module_or_a_malformed_interface_is_an_error_with_its_path() {
    let registry = AppRegistry::build(Default::default()).expect("registry");
    let checked = scenario::check(
        r#"{"name": "x", "interface": {"input": [{"name": "a", "type": "text"}, {"name": "a"}], "output": 3},
            "flow": [
              {"id": 1, "module": "scenario-service:StartSubscenario"},
              {"id": 2, "module": "scenario-service:ReturnData", "mapper": {"a": "{{1.a}}"}},
              {"id": 3, "module": "util:SetVariable2", "mapper": {"name": "n", "value": "1"}}]}"#,
        &registry,
        &Default::default(),
    )
    .expect("valid JSON");
    assert_eq!(
        listed(&checked.errors),
        [
            "flow[1].module: scenario-service:ReturnData ends the execution: it must be the last module of its route",
            "interface.output: invalid type: integer `3`, expected a sequence",
        ]
    );
    let checked = scenario::check(
        r#"{"name": "x", "flow": [
              {"id": 1, "module": "scenario-service:StartSubscenario",
               "metadata": {"interface": [{"name": "a", "type": "text"}, {"name": "a", "type": "number"}]}}]}"#,
        &registry,
        &Default::default(),
    )
    .expect("valid JSON");
    assert_eq!(
        listed(&checked.errors),
        ["flow[0].metadata.interface[1].name: `a` is declared twice"]
    );
}

/// `call-log-keychain.json`, a published export (`tests/data/exports/README.md`): its HTTP
/// modules name their basic-auth keychain by Make's id (`"key": 199013`). The export loads;
/// each use of the missing keychain is a warning at its path until a connection carrying that
/// id exists (`connections add … --id 199013`), after which only the placeholder is left.
#[test]
fn a_published_export_finds_its_keychain_by_make_id() {
    let file = export_path("call-log-keychain.json");
    let data = tempfile::tempdir().expect("temp dir");
    let data_dir = data.path().to_str().expect("UTF-8 path");
    let switchyard = |args: &[&str]| {
        let (code, out, _) = switchyard_cli(args);
        (code, out)
    };
    let (code, out) = switchyard(&[
        "connections",
        "add",
        "crm-basic",
        "--app",
        "http",
        "--kind",
        "basic",
        "--username",
        "calls",
        "--password",
        "pw-4567",
        "--data-dir",
        data_dir,
    ]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = switchyard(&["validate", &file, "--data-dir", data_dir]);
    assert_eq!(code, Some(0), "{out}");
    for path in [
        "flow[2].parameters.key",
        "flow[3].branches[0].flow[0].parameters.key",
    ] {
        assert!(
            out.contains(&format!("warning: {path}: ")) && out.contains("connection 199013"),
            "{path}: {out}"
        );
    }
    // A connection with another id does not stand in for it; one with Make's id does.
    let (code, out) = switchyard(&[
        "connections",
        "add",
        "estate-prime",
        "--app",
        "http",
        "--kind",
        "basic",
        "--username",
        "calls",
        "--password",
        "pw-4567",
        "--id",
        "199013",
        "--data-dir",
        data_dir,
    ]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = switchyard(&["validate", &file, "--data-dir", data_dir]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("199013"), "{out}");
    assert!(out.contains("valid, with 1 warning(s)"), "{out}");
}
