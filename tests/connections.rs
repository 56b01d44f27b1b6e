//! Stored connections end to end: the `switchyard connections …` commands on a data directory,
//! `switchyard run --data-dir` resolving `__IMTCONN__`, the HTTP API on SQLite and PostgreSQL,
//! Make's credential HTTP modules against a loopback server, the master key (its file `0600`,
//! a wrong key named by connection ids, rotation), a tampered or moved sealed blob refused, and
//! a planted secret never found in any output, response, execution history, error or file of
//! the data directory (the SQLite WAL included).

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use switchyard::apps::{AppOptions, AppRegistry};
use switchyard::connections::{
    ConnectionError, KEY_FILE_NAME, Keyring, MasterKey, NEXT_KEY_FILE_NAME, NewConnectionInput,
    Vault,
};
use switchyard::engine::{self, RunInput};
use switchyard::module::{Connections, ConnectionsHandle, ErrorKind, ExecutionContext};
use switchyard::store::{Store, StorePool};

use common::backends::{Place, TestDb, each_backend};
use common::connections::{Recorder, file_count, files_containing, planted, switchyard, texts};

/// A scenario: a webhook trigger, then the HTTP module `module` with `parameters` calling `url`.
fn http_scenario(module: &str, parameters: Value, url: &str) -> Value {
    let version = if module == "http:MakeRequest" { 4 } else { 3 };
    json!({
        "name": "credentials",
        "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "version": 1, "parameters": {"hook": "in"}},
            {"id": 2, "module": module, "version": version, "parameters": parameters,
             "mapper": {"url": url, "method": "get", "parseResponse": true}}
        ],
        "metadata": {"scenario": {"roundtrips": 1}}
    })
}

fn input(name: &str, app: &str, kind: &str, fields: Value) -> NewConnectionInput {
    NewConnectionInput {
        id: None,
        name: name.into(),
        app: app.into(),
        kind: Some(kind.into()),
        fields: fields.as_object().unwrap().clone(),
        test: false,
    }
}

// ---------------------------------------------------------------------------------------------
// The command line

#[test]
fn cli_round_trip_on_a_data_dir() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (recorder, base) = runtime.block_on(Recorder::start());
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let data_arg = data.to_str().unwrap();
    let token = planted("token");
    let password = planted("password");
    let api_key = planted("apikey");
    let mut outputs = Vec::new();
    let mut cli = |args: &[&str], stdin: Option<&str>| {
        let out = switchyard(args, &[], stdin);
        outputs.push(texts(&out));
        out
    };

    let out = cli(
        &[
            "connections",
            "add",
            "bot",
            "--app",
            "chatbot",
            "--token",
            &token,
            "--base-url",
            "https://api.chatbot.com",
            // Storage is what this test is about; testing on creation is in chatbot_service.
            "--no-test",
            "--data-dir",
            data_arg,
        ],
        None,
    );
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.starts_with("stored connection \"bot\""), "{stdout}");
    let out = cli(
        &[
            "connections",
            "add",
            "ops",
            "--app",
            "http",
            "--kind",
            "basic",
            "--username",
            "ann",
            "--password-stdin",
            "--data-dir",
            data_arg,
        ],
        Some(&format!("{password}\n")),
    );
    assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);
    let out = cli(
        &[
            "connections",
            "--data-dir",
            data_arg,
            "add",
            "keyed",
            "--app",
            "http",
            "--kind",
            "api_key",
            "--key-name",
            "api_key",
            "--placement",
            "query",
            "--token-stdin",
        ],
        Some(&api_key),
    );
    assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);

    // The key file: created on first use, owner-only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join(KEY_FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A name is taken once; bad input says where.
    let out = cli(
        &[
            "connections",
            "add",
            "bot",
            "--app",
            "chatbot",
            "--token",
            "x",
            "--data-dir",
            data_arg,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        texts(&out)
            .1
            .contains("a connection named \"bot\" already exists")
    );
    let out = cli(
        &[
            "connections",
            "add",
            "bad",
            "--app",
            "chatbot",
            "--token-stdin",
            "--base-url",
            "ftp://x",
            "--data-dir",
            data_arg,
        ],
        Some(&token),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        texts(&out)
            .1
            .contains("fields.baseUrl: must be an http:// or https:// URL with a host"),
        "{}",
        texts(&out).1
    );

    // The list: metadata only.
    let out = cli(
        &["connections", "list", "--data-dir", data_arg, "--json"],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = listed["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bot", "keyed", "ops"]);
    let first = &listed["connections"][0];
    assert_eq!(first["app"], "chatbot");
    assert_eq!(first["kind"], "bearer");
    let old_key = first["keyId"].as_str().unwrap().to_string();
    assert_eq!(old_key.len(), 16);
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "name",
            "app",
            "provider",
            "kind",
            "alias",
            "context",
            "user",
            "status",
            "expiresAt",
            "keyId",
            "createdAt",
            "updatedAt"
        ]
    );
    let out = cli(&["connections", "list", "--data-dir", data_arg], None);
    let human = texts(&out).0;
    assert!(human.starts_with("NAME"), "{human}");
    assert!(
        human.contains("keyed") && human.contains(&old_key),
        "{human}"
    );

    // `test` opens the connection; the http app has no test request and says so.
    let out = cli(
        &["connections", "test", "ops", "--data-dir", data_arg],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = texts(&out).1;
    assert!(
        stderr.contains("connection \"ops\" opens with the master key, but cannot be tested: the http app's connections have no test request"),
        "{stderr}"
    );

    // `run --data-dir` resolves `__IMTCONN__` by name.
    let scenario = root.path().join("basic.json");
    std::fs::write(
        &scenario,
        http_scenario(
            "http:ActionSendDataBasicAuth",
            json!({"__IMTCONN__": "ops", "handleErrors": true}),
            &format!("{base}/basic"),
        )
        .to_string(),
    )
    .unwrap();
    let run = |cli: &mut dyn FnMut(&[&str], Option<&str>) -> std::process::Output| {
        let out = cli(
            &[
                "run",
                scenario.to_str().unwrap(),
                "--input",
                "{}",
                "--data-dir",
                data_arg,
                "--json",
            ],
            None,
        );
        let (stdout, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        let report: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["status"], "success", "{report}");
    };
    run(&mut cli);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("ann:{password}"))
    );
    assert_eq!(
        recorder.last().authorization.as_deref(),
        Some(expected.as_str())
    );

    // Rotation: a new key id, the old key file replaced, every connection still opens.
    let out = cli(&["connections", "rotate-key", "--data-dir", data_arg], None);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.starts_with("re-sealed 3 connection(s) under master key "),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("(was {old_key})")), "{stdout}");
    assert!(!data.join(NEXT_KEY_FILE_NAME).exists());
    let out = cli(
        &["connections", "list", "--data-dir", data_arg, "--json"],
        None,
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    for connection in listed["connections"].as_array().unwrap() {
        assert_ne!(connection["keyId"], old_key.as_str(), "{connection}");
    }
    run(&mut cli);
    assert_eq!(recorder.requests().len(), 2);
    assert_eq!(
        recorder.last().authorization.as_deref(),
        Some(expected.as_str())
    );

    // Remove.
    let out = cli(
        &["connections", "remove", "ops", "--data-dir", data_arg],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);
    let out = cli(
        &["connections", "remove", "ops", "--data-dir", data_arg],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(texts(&out).1.contains("connection \"ops\" not found"));
    let out = cli(
        &["connections", "list", "--data-dir", data_arg, "--json"],
        None,
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["connections"].as_array().unwrap().len(), 2);

    // No secret in any output (debug logs included) or any file of the data directory.
    for secret in [&token, &password, &api_key] {
        for (stdout, stderr) in &outputs {
            assert!(!stdout.contains(secret.as_str()), "{stdout}");
            assert!(!stderr.contains(secret.as_str()), "{stderr}");
        }
        assert!(file_count(&data) >= 2);
        assert_eq!(
            files_containing(&data, secret),
            Vec::<std::path::PathBuf>::new()
        );
    }
}

#[test]
fn a_wrong_master_key_names_the_connections_not_their_secrets() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let data_arg = data.to_str().unwrap();
    let token = planted("token");
    let out = switchyard(
        &[
            "connections",
            "add",
            "bot",
            "--app",
            "chatbot",
            "--token-stdin",
            // Nothing listens there (and the egress guard refuses it): the test request
            // fails without leaving this machine, after the connection opened.
            "--base-url",
            "http://127.0.0.1:9",
            "--no-test",
            "--data-dir",
            data_arg,
        ],
        &[],
        Some(&token),
    );
    assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);
    let listed: Value = serde_json::from_slice(
        &switchyard(
            &["connections", "list", "--json", "--data-dir", data_arg],
            &[],
            None,
        )
        .stdout,
    )
    .unwrap();
    let id = listed["connections"][0]["id"].as_str().unwrap().to_string();

    let other = MasterKey::generate();
    let env = [("SWITCHYARD_MASTER_KEY", other.to_hex())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let scenario = root.path().join("s.json");
    std::fs::write(
        &scenario,
        http_scenario(
            "http:ActionSendDataAPIKeyAuth",
            json!({"__IMTCONN__": "bot"}),
            "http://127.0.0.1:9/x",
        )
        .to_string(),
    )
    .unwrap();
    for args in [
        vec!["connections", "test", "bot", "--data-dir", data_arg],
        vec![
            "run",
            scenario.to_str().unwrap(),
            "--data-dir",
            data_arg,
            "--json",
        ],
    ] {
        let out = switchyard(&args, &env, None);
        let (stdout, stderr) = texts(&out);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(
            stderr.contains(&format!(
                "1 stored connection(s) ({id}) are sealed under master key id(s)"
            )),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(other.id()), "{stderr}");
        assert!(stderr.contains("SWITCHYARD_MASTER_KEY"), "{stderr}");
        assert!(!stderr.contains(&token) && !stdout.contains(&token));
        assert!(
            !stderr.contains(&other.to_hex()),
            "the key is never printed"
        );
    }
    // A malformed key is refused without being repeated.
    let out = switchyard(
        &["connections", "list", "--data-dir", data_arg],
        &[("SWITCHYARD_MASTER_KEY", "not-a-key-but-secret")],
        None,
    );
    let stderr = texts(&out).1;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("SWITCHYARD_MASTER_KEY is not a master key"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-a-key-but-secret"));
    // With the right key given in the environment, it opens.
    let key = std::fs::read_to_string(data.join(KEY_FILE_NAME)).unwrap();
    let out = switchyard(
        &["connections", "test", "bot", "--data-dir", data_arg],
        &[("SWITCHYARD_MASTER_KEY", key.trim())],
        None,
    );
    let stderr = texts(&out).1;
    assert!(
        stderr.contains("connection \"bot\" failed its test") && !stderr.contains("sealed under"),
        "{stderr}"
    );
    assert!(!stderr.contains(&token), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Make's credential HTTP modules, in-process

async fn sqlite_vault() -> (tempfile::TempDir, Arc<Vault>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).await.unwrap();
    let keys = Keyring::load_file(dir.path()).unwrap();
    (dir, Arc::new(Vault::new(store, keys)))
}

async fn run_with(vault: &Arc<Vault>, scenario: &Value) -> engine::Report {
    let registry = AppRegistry::build(AppOptions::allowing_loopback()).unwrap();
    let scenario = switchyard::scenario::load(&scenario.to_string(), &registry).unwrap();
    let mut context = ExecutionContext::new("test");
    context
        .extensions
        .insert::<ConnectionsHandle>(vault.handle());
    engine::run(
        &scenario,
        RunInput {
            bundles: vec![json!({})],
            context,
            ..RunInput::default()
        },
    )
    .await
}

#[tokio::test]
async fn http_modules_send_the_credentials_of_stored_connections() {
    let (_dir, vault) = sqlite_vault().await;
    let (recorder, base) = Recorder::start().await;
    let key = planted("key");
    let password = planted("password");
    vault
        .create(&input(
            "header-key",
            "http",
            "api_key",
            json!({"key": key, "name": "X-Api-Key"}),
        ))
        .await
        .unwrap();
    vault
        .create(&input(
            "query-key",
            "http",
            "api_key",
            json!({"key": key, "name": "api_key", "placement": "query"}),
        ))
        .await
        .unwrap();
    let basic = vault
        .create(&input(
            "ops",
            "http",
            "basic",
            json!({"username": "ann", "password": password}),
        ))
        .await
        .unwrap();
    vault
        .create(&input(
            "bearer",
            "chatbot",
            "bearer",
            json!({"token": planted("token")}),
        ))
        .await
        .unwrap();
    let basic_header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("ann:{password}"))
    );

    // v4 with an API-key keychain, in a header.
    let report = run_with(
        &vault,
        &http_scenario(
            "http:MakeRequest",
            json!({"authenticationType": "apiKey", "apiKeyKeychain": "header-key"}),
            &format!("{base}/v4-key"),
        ),
    )
    .await;
    assert!(report.error.is_none(), "{:?}", report.error);
    let seen = recorder.last();
    assert_eq!(seen.path, "/v4-key");
    assert_eq!(seen.api_key_header.as_deref(), Some(key.as_str()));
    assert_eq!(seen.authorization, None);

    // v3 API-key module (Make's `parameters.auth`), in the query.
    let report = run_with(
        &vault,
        &http_scenario(
            "http:ActionSendDataAPIKeyAuth",
            json!({"auth": "query-key", "handleErrors": false}),
            &format!("{base}/v3-key?x=1"),
        ),
    )
    .await;
    assert!(report.error.is_none(), "{:?}", report.error);
    let seen = recorder.last();
    assert_eq!(seen.query["api_key"], key.as_str());
    assert_eq!(seen.query["x"], "1");
    assert_eq!(seen.api_key_header, None);

    // v4 basic keychain, by id; v3 basic module by name.
    let report = run_with(
        &vault,
        &http_scenario(
            "http:MakeRequest",
            json!({"authenticationType": "basicAuth", "basicAuthKeychain": basic.id}),
            &format!("{base}/v4-basic"),
        ),
    )
    .await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(
        recorder.last().authorization.as_deref(),
        Some(basic_header.as_str())
    );
    let report = run_with(
        &vault,
        &http_scenario(
            "http:ActionSendDataBasicAuth",
            json!({"__IMTCONN__": "ops"}),
            &format!("{base}/v3-basic"),
        ),
    )
    .await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(
        recorder.last().authorization.as_deref(),
        Some(basic_header.as_str())
    );
    let calls = recorder.requests().len();
    assert_eq!(calls, 4);

    // A connection of the wrong kind, or an unknown one, is refused before any request.
    for (module, parameters, message) in [
        (
            "http:ActionSendDataBasicAuth",
            json!({"__IMTCONN__": "bearer"}),
            "parameters.__IMTCONN__: connection \"bearer\" is a bearer connection; \
             http:ActionSendDataBasicAuth needs a basic connection",
        ),
        (
            "http:MakeRequest",
            json!({"authenticationType": "apiKey", "apiKeyKeychain": "ops"}),
            "parameters.apiKeyKeychain: connection \"ops\" is a basic connection; \
             http:MakeRequest needs a api_key connection",
        ),
        (
            "http:ActionSendDataAPIKeyAuth",
            json!({"auth": 14964}),
            "connection \"14964\" not found: store it with `switchyard connections add` (the \
             reference is a connection's name or id)",
        ),
    ] {
        let report = run_with(
            &vault,
            &http_scenario(module, parameters, &format!("{base}/no")),
        )
        .await;
        let error = report.error.expect("an error");
        assert_eq!(error.name, "InvalidConfigurationError");
        assert_eq!(error.message, message);
        assert!(!error.message.contains(&key) && !error.message.contains(&password));
    }
    assert_eq!(recorder.requests().len(), calls, "no request was sent");

    // Without connections in the process, the module says what is missing.
    let registry = AppRegistry::build(AppOptions::allowing_loopback()).unwrap();
    let scenario = http_scenario(
        "http:ActionSendDataBasicAuth",
        json!({"__IMTCONN__": "ops"}),
        &format!("{base}/none"),
    );
    let scenario = switchyard::scenario::load(&scenario.to_string(), &registry).unwrap();
    let report = engine::run(
        &scenario,
        RunInput {
            bundles: vec![json!({})],
            ..RunInput::default()
        },
    )
    .await;
    let error = report.error.expect("an error");
    assert!(
        error
            .message
            .contains("this process has no stored connections"),
        "{}",
        error.message
    );
    // A missing keychain is a load-time problem.
    let missing = http_scenario(
        "http:MakeRequest",
        json!({"authenticationType": "basicAuth"}),
        "https://x.org",
    );
    let err = switchyard::scenario::load(&missing.to_string(), &registry).unwrap_err();
    assert!(
        err.to_string().contains(
            "parameters.basicAuthKeychain: is required with authenticationType basicAuth"
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// The store: sealed blobs on both backends

/// The keys of a test: a key file in a directory of its own (the data directory on SQLite).
fn keyring_for(db: &TestDb, keys_dir: &std::path::Path) -> Keyring {
    match &db.place {
        Place::Sqlite(dir) => Keyring::load_file(dir).unwrap(),
        Place::Postgres(_) => Keyring::load_file(keys_dir).unwrap(),
    }
}

async fn execute(db: &TestDb, sql: &str, bytes: Option<&[u8]>, id: &str) {
    match db.store.pool() {
        StorePool::Sqlite(pool) => {
            let query = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
            let query = match bytes {
                Some(b) => query.bind(b.to_vec()),
                None => query,
            };
            query.bind(id.to_string()).execute(pool).await.unwrap();
        }
        StorePool::Postgres(pool) => {
            let query = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
            let query = match bytes {
                Some(b) => query.bind(b.to_vec()),
                None => query,
            };
            query.bind(id.to_string()).execute(pool).await.unwrap();
        }
    }
}

async fn sealed_of(db: &TestDb, id: &str) -> Vec<u8> {
    match db.store.pool() {
        StorePool::Sqlite(pool) => {
            sqlx::query_scalar("SELECT sealed FROM connections WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap()
        }
        StorePool::Postgres(pool) => {
            sqlx::query_scalar("SELECT sealed FROM connections WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_moved_blob_is_refused() {
    each_backend(|db| async move {
        let keys_dir = tempfile::tempdir().unwrap();
        let vault = Vault::new(db.store.clone(), keyring_for(&db, keys_dir.path()));
        let token = planted("token");
        let a = vault
            .create(&input("a", "chatbot", "bearer", json!({"token": token})))
            .await
            .unwrap();
        let b = vault
            .create(&input("b", "chatbot", "bearer", json!({"token": "other"})))
            .await
            .unwrap();
        let opened = vault.open("a").await.unwrap();
        assert_eq!(opened.fields.text("token").as_deref(), Some(token.as_str()));
        assert_eq!(vault.check_keys().await.unwrap(), 2);

        // b's blob copied into a's row: refused, naming a's id.
        let b_blob = sealed_of(&db, &b.id).await;
        execute(
            &db,
            "UPDATE connections SET sealed = $1 WHERE id = $2",
            Some(&b_blob),
            &a.id,
        )
        .await;
        let err = vault.open("a").await.unwrap_err();
        assert!(matches!(err, ConnectionError::Sealed(_)), "{err}");
        assert!(err.to_string().contains(&a.id), "{err}");
        // One flipped bit.
        let mut flipped = sealed_of(&db, &b.id).await;
        let last = flipped.len() - 1;
        flipped[last] ^= 0x01;
        execute(
            &db,
            "UPDATE connections SET sealed = $1 WHERE id = $2",
            Some(&flipped),
            &b.id,
        )
        .await;
        let err = vault.resolve("b").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidConfigurationError);
        assert!(
            err.message.contains(&b.id) && err.message.contains("do not open"),
            "{}",
            err.message
        );
        // A relabelled key id: another key this process lacks.
        execute(
            &db,
            "UPDATE connections SET key_id = 'ffffffffffffffff' WHERE id = $1",
            None,
            &b.id,
        )
        .await;
        let err = vault.check_keys().await.unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "1 stored connection(s) ({}) are sealed under master key id(s) ffffffffffffffff",
                b.id
            )),
            "{err}"
        );
        assert!(!err.to_string().contains(&token));
        // Rotation refuses to go on while a row does not open, and changes nothing.
        let before = sealed_of(&db, &a.id).await;
        let err = vault.rotate_key(None).await.unwrap_err();
        assert!(
            matches!(
                err,
                ConnectionError::Sealed(_) | ConnectionError::WrongKey { .. }
            ),
            "{err}"
        );
        assert_eq!(sealed_of(&db, &a.id).await, before);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reseals_every_row_under_the_new_key() {
    each_backend(|db| async move {
        let keys_dir = tempfile::tempdir().unwrap();
        let keys = keyring_for(&db, keys_dir.path());
        let old = keys.current().clone();
        let vault = Vault::new(db.store.clone(), keys);
        let token = planted("token");
        for name in ["a", "b", "c"] {
            vault
                .create(&input(name, "chatbot", "bearer", json!({"token": token})))
                .await
                .unwrap();
        }
        let given = MasterKey::generate();
        let rotation = vault.rotate_key(Some(given.clone())).await.unwrap();
        assert_eq!(rotation.resealed, 3);
        assert_eq!(rotation.old_key_id, old.id());
        assert_eq!(rotation.new_key_id, given.id());
        for row in vault.list().await.unwrap() {
            assert_eq!(row.key_id, given.id());
        }
        // Another process reading the key file now gets the new key only.
        let dir = match &db.place {
            Place::Sqlite(dir) => dir.clone(),
            Place::Postgres(_) => keys_dir.path().to_path_buf(),
        };
        let fresh = Vault::new(db.store.clone(), Keyring::load_file(&dir).unwrap());
        assert_eq!(fresh.keyring().current().id(), given.id());
        assert!(fresh.keyring().find(old.id()).is_none());
        assert_eq!(
            fresh
                .open("c")
                .await
                .unwrap()
                .fields
                .text("token")
                .as_deref(),
            Some(token.as_str())
        );
        // An interrupted rotation (new key file written, rows not yet re-sealed) keeps both
        // keys accepted and is finished by running it again.
        let pending = MasterKey::generate();
        pending
            .write_new_file(&dir.join(NEXT_KEY_FILE_NAME))
            .unwrap();
        let both = Keyring::load_file(&dir).unwrap();
        assert!(both.find(given.id()).is_some() && both.find(pending.id()).is_some());
        let resumed = Vault::new(db.store.clone(), both);
        let err = resumed
            .rotate_key(Some(MasterKey::generate()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("was interrupted"), "{err}");
        let rotation = resumed.rotate_key(None).await.unwrap();
        assert_eq!(rotation.new_key_id, pending.id());
        assert_eq!(rotation.resealed, 3);
        assert!(!dir.join(NEXT_KEY_FILE_NAME).exists());
        assert_eq!(resumed.check_keys().await.unwrap(), 3);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The HTTP API and the runner, and the planted token everywhere it must not be

const API_TOKEN: &str = "connections-test-api-token-0123456789";

struct Service {
    base: String,
    http: reqwest::Client,
    runner: Arc<switchyard::queue::Runner>,
}

impl Service {
    async fn start(store: &Store, vault: Arc<Vault>) -> Service {
        let queue =
            switchyard::queue::Queue::new(store, switchyard::queue::QueueOptions::default());
        let registry = Arc::new(AppRegistry::build(AppOptions::allowing_loopback()).unwrap());
        let mut services = switchyard::module::Extensions::default();
        services.insert::<ConnectionsHandle>(vault.handle());
        let catalog = switchyard::catalog::Catalog::new(
            store.clone(),
            registry,
            switchyard::catalog::CatalogOptions {
                services,
                ..switchyard::catalog::CatalogOptions::default()
            },
        );
        let options = switchyard::queue::RunnerOptions::default();
        let runner = Arc::new(
            switchyard::queue::Runner::new(
                catalog,
                &queue,
                options,
                switchyard::queue::Completions::default(),
            )
            .unwrap(),
        );
        let state = switchyard::api::AppState::new(
            queue,
            runner.clone(),
            switchyard::api::token_hash(API_TOKEN),
            switchyard::api::HookLimits::default(),
            0,
        )
        .with_connections(vault);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, switchyard::api::app(state)).await });
        Service {
            base,
            http: reqwest::Client::new(),
            runner,
        }
    }

    /// `METHOD /api/PATH` with the token and `body`: the status and the body's text.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut request = self
            .http
            .request(method, format!("{}/api/{path}", self.base))
            .bearer_auth(API_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = request.send().await.unwrap();
        (reply.status().as_u16(), reply.text().await.unwrap())
    }
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_crud_and_a_planted_token_never_leaves_the_vault() {
    each_backend(|db| async move {
        use reqwest::Method;
        let keys_dir = tempfile::tempdir().unwrap();
        let vault = Arc::new(Vault::new(db.store.clone(), keyring_for(&db, keys_dir.path())));
        let service = Service::start(&db.store, vault.clone()).await;
        let (recorder, base) = Recorder::start().await;
        let token = planted("token");
        let mut bodies = Vec::new();

        // Create: 201 with metadata only.
        let (status, body) = service
            .call(
                Method::POST,
                "connections",
                Some(json!({"name": "bot", "app": "chatbot", "fields": {"key": token, "name": "X-Api-Key", "baseUrl": base}})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let created = json_of(&body);
        assert_eq!(created["kind"], "api_key", "inferred from the fields");
        assert_eq!(created["name"], "bot");
        let id = created["id"].as_str().unwrap().to_string();
        bodies.push(body);

        // A duplicate name, bad values, an unknown key: each names its place.
        for (request, status, code, path) in [
            (json!({"name": "bot", "app": "chatbot", "kind": "bearer", "fields": {"token": token}}), 409, "conflict", "name"),
            (json!({"name": "x", "app": "chatbot", "kind": "bearer", "fields": {}}), 422, "invalid_input", "fields.token"),
            (json!({"name": "x", "app": "chatbot", "kind": "bearer", "fields": {"token": 5}}), 422, "invalid_input", "fields.token"),
            (json!({"name": "x", "app": "chatbot", "kind": "oauth", "fields": {"token": token}}), 422, "invalid_input", "kind"),
            (json!({"name": "x", "app": "chatbot", "fields": "secret"}), 422, "invalid_input", "fields"),
            (json!({"name": "x", "app": "chatbot", "token": token}), 422, "invalid_input", "token"),
            (json!({"app": "chatbot", "fields": {"token": token}}), 422, "invalid_input", "name"),
        ] {
            let (got, body) = service.call(Method::POST, "connections", Some(request.clone())).await;
            assert_eq!(got, status, "{request}: {body}");
            let error = &json_of(&body)["error"];
            assert_eq!(error["code"], code, "{body}");
            assert_eq!(error["path"], path, "{body}");
            bodies.push(body);
        }

        // Read, list, test.
        for path in ["connections/bot", &format!("connections/{id}")] {
            let (status, body) = service.call(Method::GET, path, None).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(json_of(&body)["id"], id.as_str());
            bodies.push(body);
        }
        let (status, body) = service.call(Method::GET, "connections", None).await;
        assert_eq!(status, 200);
        assert_eq!(json_of(&body)["connections"].as_array().unwrap().len(), 1);
        bodies.push(body);
        let (status, body) = service.call(Method::POST, "connections/bot/test", None).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(json_of(&body)["error"]["code"], "test_unavailable");
        bodies.push(body);
        let (status, body) = service.call(Method::GET, "connections/nope", None).await;
        assert_eq!(status, 404, "{body}");
        bodies.push(body);
        let reply = service
            .http
            .get(format!("{}/api/connections", service.base))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status().as_u16(), 401);

        // An execution through the runner sends the key and records nothing of it.
        let scenario = http_scenario(
            "http:MakeRequest",
            json!({"authenticationType": "apiKey", "apiKeyKeychain": "bot"}),
            &format!("{base}/hello"),
        );
        let (status, body) = service.call(Method::POST, "scenarios", Some(scenario)).await;
        assert_eq!(status, 201, "{body}");
        let scenario_id = json_of(&body)["id"].as_str().unwrap().to_string();
        let wrong_kind = http_scenario(
            "http:ActionSendDataBasicAuth",
            json!({"__IMTCONN__": "bot"}),
            &format!("{base}/never"),
        );
        let (status, body) = service.call(Method::POST, "scenarios", Some(wrong_kind)).await;
        assert_eq!(status, 201, "{body}");
        let failing_id = json_of(&body)["id"].as_str().unwrap().to_string();
        let mut executions = Vec::new();
        for scenario in [&scenario_id, &failing_id] {
            let (status, body) = service
                .call(Method::POST, &format!("scenarios/{scenario}/run"), Some(json!({"n": 1})))
                .await;
            assert_eq!(status, 202, "{body}");
            let execution = json_of(&body)["executionId"].as_str().unwrap().to_string();
            service.runner.execute(&execution).await.unwrap();
            executions.push(execution);
        }
        assert_eq!(recorder.requests().len(), 1);
        assert_eq!(recorder.last().api_key_header.as_deref(), Some(token.as_str()));
        for (execution, expected) in executions.iter().zip(["success", "error"]) {
            let (status, body) = service.call(Method::GET, &format!("executions/{execution}"), None).await;
            assert_eq!(status, 200, "{body}");
            let summary = json_of(&body);
            assert_eq!(summary["status"], expected, "{body}");
            if expected == "error" {
                assert_eq!(summary["error"]["name"], "InvalidConfigurationError", "{body}");
            }
            bodies.push(body);
            for module in [1, 2] {
                let (_, body) = service
                    .call(Method::GET, &format!("executions/{execution}?module={module}"), None)
                    .await;
                bodies.push(body);
            }
        }

        // Delete.
        let (status, body) = service.call(Method::DELETE, "connections/bot", None).await;
        assert_eq!(status, 204, "{body}");
        let (status, _) = service.call(Method::GET, &format!("connections/{id}"), None).await;
        assert_eq!(status, 404);

        // The planted token: in no response, nowhere in the data directory (SQLite: the
        // database, its WAL and the key file; PostgreSQL: the key file) and nowhere in the
        // database's own rows.
        for body in &bodies {
            assert!(!body.contains(&token), "{body}");
        }
        let dir = match &db.place {
            Place::Sqlite(dir) => dir.clone(),
            Place::Postgres(_) => keys_dir.path().to_path_buf(),
        };
        assert!(file_count(&dir) >= 1);
        assert_eq!(files_containing(&dir, &token), Vec::<std::path::PathBuf>::new());
        if let StorePool::Postgres(pool) = db.store.pool() {
            let dump: Vec<String> = sqlx::query_scalar(
                "SELECT coalesce(report::text, '') || coalesce(error::text, '') || coalesce(modules::text, '') FROM executions",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            assert!(dump.iter().all(|row| !row.contains(&token)));
            let outputs: Vec<String> = sqlx::query_scalar("SELECT output::text FROM execution_modules")
                .fetch_all(pool)
                .await
                .unwrap();
            assert!(!outputs.is_empty());
            assert!(outputs.iter().all(|row| !row.contains(&token)));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    })
    .await;
}

/// Module calls reuse an opened connection for a while instead of reading and unsealing it
/// each time; a change made through the vault is seen at once.
#[tokio::test]
async fn a_removed_connection_is_not_served_from_memory() {
    let (_dir, vault) = sqlite_vault().await;
    let bearer = |token: &str| input("bot", "http", "bearer", json!({"token": token}));
    vault.create(&bearer("first")).await.unwrap();
    let resolved = Connections::resolve(vault.as_ref(), "bot").await.unwrap();
    assert_eq!(resolved.fields.text("token").as_deref(), Some("first"));
    vault.remove("bot").await.unwrap();
    let gone = Connections::resolve(vault.as_ref(), "bot")
        .await
        .unwrap_err();
    assert_eq!(gone.kind, ErrorKind::InvalidConfigurationError, "{gone:?}");
    vault.create(&bearer("second")).await.unwrap();
    let again = Connections::resolve(vault.as_ref(), "bot").await.unwrap();
    assert_eq!(again.fields.text("token").as_deref(), Some("second"));
}
