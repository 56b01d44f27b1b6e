//! The SQLite store at rest: owner-only files, durable commits, and a damaged database
//! found at start-up and reported by `/health`.
//!
//! - `serve_keeps_its_files_owner_only`: `switchyard serve` started under `umask 000` on a new
//!   data directory, then on a data directory a previous version left open, then on a
//!   `sqlite://` URL: the directory is `0700`, `switchyard.db`, `-wal`, `-shm` and the lock
//!   file `0600`; an open existing directory is left as it is, with a warning.
//! - `commits_are_synced_in_full_unless_asked`: `PRAGMA synchronous` of the store's
//!   connection: FULL by default, NORMAL when asked (`--sqlite-synchronous normal`).
//! - `serve_refuses_a_damaged_database`: one page of a copy of a database with real data
//!   written over with zeros, as a disk or a careless copy does: `serve` (and `worker`) exit
//!   non-zero saying the database is damaged and how to recover, where `/health` said "ok".
//! - `health_reports_a_damaged_store`: the same damage found by the check after start-up
//!   (a database too large to check before serving): `/health` answers 503 "degraded".
//! - `damage_met_when_opening_is_refused_with_the_same_message`: a database whose header,
//!   length or schema page is damaged fails before any integrity check can run; `serve`,
//!   `worker` and `scenarios list` still exit naming the file and the `.recover` way out, not
//!   the driver's error.
//! - `one_owner_whatever_the_database_is_called`: with `serve` on a data directory (or on its
//!   file through a symlinked directory), a `worker` given the same database in any spelling —
//!   `--data-dir` absolute, relative, through a symlink; `--database-url
//!   sqlite://…/switchyard.db` absolute, relative, through a symlink, with query parameters —
//!   is refused with the one message naming the resolved data directory and the owner.

#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard::store::{
    ExecutionFinish, ExecutionOutcome, ExecutionSource, FinalStatus, ModuleData, ModuleEntry,
    NewExecution, SQLITE_FILE_NAME, SQLITE_LOCK_FILE_NAME, SqliteSync, Store, StoreError,
    StoreHealth,
};

const TOKEN: &str = "at-rest-test-token-0123456789abcdef";

/// A `switchyard` child process, killed on drop; its output goes to a file.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// `switchyard ARGS` under `umask 000`, so that every mode it leaves was set on purpose.
    fn spawn(dir: &Path, args: &[&str]) -> Proc {
        Proc::spawn_in(dir, dir, args)
    }

    /// [`Proc::spawn`] in the working directory `cwd` (for relative paths).
    fn spawn_in(cwd: &Path, dir: &Path, args: &[&str]) -> Proc {
        let log = dir.join(format!("switchyard-{}.log", switchyard::store::new_id()));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new("sh")
            .current_dir(cwd)
            .arg("-c")
            .arg("umask 000 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .env("SWITCHYARD_API_TOKEN", TOKEN)
            .env_remove("SWITCHYARD_DATABASE_URL")
            .env("SWITCHYARD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().expect("log file")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("spawn switchyard");
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `secs` for the process to exit; its status, or `None` if it still runs.
    fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, and wait for a graceful stop.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        assert!(
            self.wait_exit(30).is_some(),
            "serve did not stop:\n{}",
            self.log()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- switchyard's log ---\n{}", self.log());
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

/// `switchyard serve DB_ARGS EXTRA` on a free port, once `/health` answers 200.
async fn serve(dir: &Path, db_args: &[&str], extra: &[&str]) -> Proc {
    let port = free_port().to_string();
    let mut args = vec!["serve", "--port", &port];
    args.extend_from_slice(db_args);
    args.extend_from_slice(extra);
    let mut proc = Proc::spawn(dir, &args);
    let health = format!("http://127.0.0.1:{port}/health");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(reply) = reqwest::get(&health).await
            && reply.status() == 200
        {
            return proc;
        }
        assert!(
            proc.child.try_wait().ok().flatten().is_none(),
            "serve exited:\n{}",
            proc.log()
        );
        assert!(
            Instant::now() < deadline,
            "serve did not start:\n{}",
            proc.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn assert_mode(path: &Path, expected: u32) {
    assert_eq!(
        mode(path),
        expected,
        "{} is {:04o}, expected {expected:04o}",
        path.display(),
        mode(path)
    );
}

/// `file`, `file-wal` and `file-shm`.
fn database_files(file: &Path) -> [PathBuf; 3] {
    ["", "-wal", "-shm"].map(|suffix| {
        let mut path = file.as_os_str().to_owned();
        path.push(suffix);
        PathBuf::from(path)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_its_files_owner_only() {
    let root = tempfile::tempdir().unwrap();
    // A new data directory, two levels deep.
    let data = root.path().join("new").join("data");
    let data_arg = data.to_str().unwrap();
    let mut svc = serve(root.path(), &["--data-dir", data_arg], &[]).await;
    assert_mode(&data, 0o700);
    assert_eq!(mode(&root.path().join("new")) & 0o077, 0, "its parent too");
    for file in database_files(&data.join(SQLITE_FILE_NAME)) {
        assert_mode(&file, 0o600);
    }
    assert_mode(&data.join(SQLITE_LOCK_FILE_NAME), 0o600);
    svc.stop();

    // A data directory a previous version left open: the files are made owner-only again,
    // the directory is left as it is (it may be shared on purpose), with a warning.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for file in database_files(&data.join(SQLITE_FILE_NAME))
        .into_iter()
        .chain([data.join(SQLITE_LOCK_FILE_NAME)])
    {
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let mut svc = serve(
        root.path(),
        &["--data-dir", data_arg],
        &["--sqlite-synchronous", "normal"],
    )
    .await;
    assert_mode(&data, 0o755);
    for file in database_files(&data.join(SQLITE_FILE_NAME)) {
        assert_mode(&file, 0o600);
    }
    assert_mode(&data.join(SQLITE_LOCK_FILE_NAME), 0o600);
    let log = svc.log();
    assert!(
        log.contains(&format!("the data directory {data_arg} is mode 0755"))
            && log.contains(&format!("chmod 700 {data_arg}")),
        "{log}"
    );
    svc.stop();

    // A database named by URL: its file, journal files and lock are owner-only.
    let file = root.path().join("by-url.db");
    let url = format!("sqlite://{}", file.display());
    let mut svc = serve(root.path(), &["--database-url", &url], &[]).await;
    for path in database_files(&file) {
        assert_mode(&path, 0o600);
    }
    assert_mode(&root.path().join("by-url.db.lock"), 0o600);
    svc.stop();

    let bad = Proc::spawn(root.path(), &["serve", "--sqlite-synchronous", "sometimes"])
        .wait_exit(30)
        .map(|s| s.success());
    assert_eq!(
        bad,
        Some(false),
        "an unknown --sqlite-synchronous is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_synced_in_full_unless_asked() {
    async fn synchronous(store: &Store) -> i64 {
        let pool = store.sqlite_pool().expect("sqlite");
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(pool)
            .await
            .unwrap()
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).await.unwrap();
    assert_eq!(synchronous(&store).await, 2, "FULL by default");
    store.close().await;
    let store = Store::open_sqlite_owned(dir.path(), SqliteSync::Full)
        .await
        .unwrap();
    assert_eq!(synchronous(&store).await, 2);
    store.close().await;
    let store = Store::open_sqlite_owned(dir.path(), SqliteSync::Normal)
        .await
        .unwrap();
    assert_eq!(synchronous(&store).await, 1, "NORMAL when asked");
    store.close().await;
    let url = format!("sqlite://{}", dir.path().join("other.db").display());
    let store = Store::connect_owned(&url, SqliteSync::Normal)
        .await
        .unwrap();
    assert_eq!(synchronous(&store).await, 1);
    store.close().await;
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(synchronous(&store).await, 2);
    store.close().await;
}

/// A data directory whose database holds 300 executions with module data (a few MB), closed
/// and checkpointed (no WAL left), and the database's size in pages.
async fn database_with_data(dir: &Path) -> u64 {
    let store = Store::open_sqlite(dir).await.unwrap();
    let blueprint = r#"{"name":"d","flow":[{"id":1,"module":"gateway:CustomWebHook"}]}"#;
    let (scenario_id, version) = store.create_scenario("data", blueprint).await.unwrap();
    let outputs: Vec<Value> = (0..20)
        .map(|i| json!({"i": i, "text": "some text of an output ".repeat(20)}))
        .collect();
    let entries: Vec<ModuleEntry<'_>> = outputs
        .iter()
        .enumerate()
        .map(|(i, output)| ModuleEntry {
            module_id: i as u32 % 4 + 1,
            output,
        })
        .collect();
    let report = json!({"status": "success"});
    for _ in 0..300 {
        let id = store
            .create_execution(NewExecution {
                scenario_id: &scenario_id,
                version,
                source: ExecutionSource::Manual,
                payload: Some(&outputs[0]),
            })
            .await
            .unwrap();
        let data = ModuleData::prepare(&entries, 1 << 16).unwrap();
        let mut tx = store.begin_write().await.unwrap();
        tx.finish_executions(&[ExecutionFinish {
            id: &id,
            outcome: ExecutionOutcome {
                status: FinalStatus::Success,
                operations: 20,
                cycles: 1,
                report: Some(&report),
                error: None,
                trigger: None,
            },
            module_data: &data,
        }])
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let pool = store.sqlite_pool().unwrap();
    let _: (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(pool)
        .await
        .unwrap();
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(pool)
        .await
        .unwrap();
    store.close().await;
    pages as u64
}

/// Writes zeros over page `page` (1-based) of `file`, as the found item did.
fn zero_page(file: &Path, page: u64) {
    use std::io::{Seek, SeekFrom, Write};
    const PAGE: u64 = 4096;
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start((page - 1) * PAGE)).unwrap();
    f.write_all(&[0; PAGE as usize]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_damaged_database() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let pages = database_with_data(&data).await;
    assert!(pages > 100, "{pages} pages");
    let data_arg = data.to_str().unwrap();
    // Intact, it serves.
    let mut svc = serve(root.path(), &["--data-dir", data_arg], &[]).await;
    svc.stop();

    // A page of module data (the largest table, the middle of the file) zeroed.
    let file = data.join(SQLITE_FILE_NAME);
    zero_page(&file, pages * 3 / 5);
    let store = Store::open_sqlite(&data).await.unwrap();
    assert_eq!(
        store.health().await,
        StoreHealth::Ok,
        "the damage is out of reach of a cheap read: only a check finds it"
    );
    store.close().await;
    let port = free_port().to_string();
    for command in ["serve", "worker"] {
        let mut args = vec![command, "--data-dir", data_arg];
        if command == "serve" {
            args.extend(["--port", &port]);
        }
        let mut refused = Proc::spawn(root.path(), &args);
        let status = refused
            .wait_exit(60)
            .unwrap_or_else(|| panic!("{command} was not refused:\n{}", refused.log()));
        let log = refused.log();
        assert!(!status.success(), "{command}: {status}\n{log}");
        assert!(
            log.contains(&format!(
                "the SQLite database {} is damaged (PRAGMA quick_check: ",
                file.display()
            )) && log.contains(".recover"),
            "{command}: a clear message naming the file and the way out:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_a_damaged_store() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let pages = database_with_data(&data).await;
    zero_page(&data.join(SQLITE_FILE_NAME), pages * 3 / 5);

    // A check waited for finds the damage; one that goes on in the background (a large
    // database) reports it through health.
    let store = Store::open_sqlite(&data).await.unwrap();
    let err = store
        .check_integrity(Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
    store.close().await;
    let store = Store::open_sqlite(&data).await.unwrap();
    assert_eq!(store.health().await, StoreHealth::Ok);
    store.check_integrity(Duration::ZERO).await.unwrap();

    // /health of a server on this store.
    let queue = switchyard::queue::Queue::new(&store, switchyard::queue::QueueOptions::default());
    let registry = Arc::new(
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::default()).unwrap(),
    );
    let catalog = switchyard::catalog::Catalog::new(
        store.clone(),
        registry,
        switchyard::catalog::CatalogOptions::default(),
    );
    let runner = Arc::new(
        switchyard::queue::Runner::new(
            catalog,
            &queue,
            switchyard::queue::RunnerOptions::default(),
            switchyard::queue::Completions::default(),
        )
        .unwrap(),
    );
    let state = switchyard::api::AppState::new(
        queue,
        runner,
        switchyard::api::token_hash(TOKEN),
        switchyard::api::HookLimits::default(),
        0,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health = format!("http://{}/health", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, switchyard::api::app(state)).await });
    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, body) = loop {
        let reply = reqwest::get(&health).await.unwrap();
        let status = reply.status().as_u16();
        let body: Value = reply.json().await.unwrap();
        if status != 200 || Instant::now() > deadline {
            break (status, body);
        }
        assert_eq!(body, json!({"status": "ok"}), "until the check is done");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    let problem = body["store"].as_str().unwrap();
    assert!(
        problem.starts_with("integrity check failed: "),
        "what failed: {problem}"
    );
}

/// `Store::health` on every backend, with executions in the store: ok, and no integrity
/// check to wait for on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_ok_on_a_sound_store() {
    common::backends::each_backend(|db| async move {
        let s = &db.store;
        assert_eq!(s.health().await, StoreHealth::Ok, "empty");
        let blueprint = r#"{"name":"h","flow":[{"id":1,"module":"gateway:CustomWebHook"}]}"#;
        let (scenario_id, version) = s.create_scenario("health", blueprint).await.unwrap();
        s.create_execution(NewExecution {
            scenario_id: &scenario_id,
            version,
            source: ExecutionSource::Manual,
            payload: None,
        })
        .await
        .unwrap();
        s.check_integrity(Duration::from_secs(30)).await.unwrap();
        assert_eq!(s.health().await, StoreHealth::Ok, "with an execution");
    })
    .await;
}

/// `switchyard ARGS` in `cwd` is refused within 60 s: exits non-zero with a log holding
/// `expected`; the log.
fn assert_refused(cwd: &Path, dir: &Path, args: &[&str], expected: &str) -> String {
    let mut refused = Proc::spawn_in(cwd, dir, args);
    let status = refused
        .wait_exit(60)
        .unwrap_or_else(|| panic!("{args:?} was not refused:\n{}", refused.log()));
    let log = refused.log();
    assert!(!status.success(), "{args:?}: {status}\n{log}");
    assert!(
        log.contains(expected),
        "{args:?}: expected {expected:?} in:\n{log}"
    );
    log
}

/// A way of damaging a database file's bytes.
type Damage = Box<dyn Fn(&mut Vec<u8>)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_met_when_opening_is_refused_with_the_same_message() {
    let root = tempfile::tempdir().unwrap();
    let intact = root.path().join("intact");
    let pages = database_with_data(&intact).await;
    let original = std::fs::read(intact.join(SQLITE_FILE_NAME)).unwrap();
    const PAGE: usize = 4096;
    let half = (pages as usize / 2) * PAGE;
    let damages: [(&str, Damage); 5] = [
        // The 100-byte header written over: SQLite does not recognise the file.
        ("header", Box::new(|db: &mut Vec<u8>| db[..100].fill(b'x'))),
        // Cut inside the header: a file too short to be a database.
        ("header cut", Box::new(|db: &mut Vec<u8>| db.truncate(60))),
        // Cut at a page boundary, half the pages gone.
        (
            "half cut",
            Box::new(move |db: &mut Vec<u8>| db.truncate(half)),
        ),
        // Page 1's b-tree (the schema) zeroed behind an intact header.
        (
            "schema page",
            Box::new(|db: &mut Vec<u8>| db[100..PAGE].fill(0)),
        ),
        // The schema's page turned into garbage that claims to be an interior page.
        (
            "schema page garbage",
            Box::new(|db: &mut Vec<u8>| {
                db[100] = 0x05;
                db[101..PAGE].fill(0xff);
            }),
        ),
    ];
    assert!(pages > 100, "{pages} pages");
    for (name, damage) in damages {
        let data = root.path().join(name.replace(' ', "-"));
        std::fs::create_dir(&data).unwrap();
        let mut bytes = original.clone();
        damage(&mut bytes);
        let file = data.join(SQLITE_FILE_NAME);
        std::fs::write(&file, bytes).unwrap();
        let expected = format!("the SQLite database {} is damaged (", file.display());
        let data_arg = data.to_str().unwrap();
        let port = free_port().to_string();
        for args in [
            vec!["serve", "--data-dir", data_arg, "--port", &port],
            vec!["worker", "--data-dir", data_arg],
            vec!["scenarios", "list", "--data-dir", data_arg],
        ] {
            let log = assert_refused(root.path(), root.path(), &args, &expected);
            assert!(
                log.contains(".recover"),
                "{name}: {args:?}: the way out:\n{log}"
            );
            assert!(
                !log.contains("database error") && !log.contains("error returned from database"),
                "{name}: {args:?}: not the driver's error:\n{log}"
            );
        }
        // The library says the same to its callers.
        let err = match Store::open_sqlite(&data).await {
            Ok(_) => panic!("{name}: opened"),
            Err(err) => err,
        };
        assert!(matches!(err, StoreError::Damaged { .. }), "{name}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_whatever_the_database_is_called() {
    let root = tempfile::tempdir().unwrap();
    let real = root.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = root.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let resolved = real.canonicalize().unwrap();
    let real_arg = real.to_str().unwrap().to_string();
    let link_arg = link.to_str().unwrap().to_string();
    let db_args = |spelling: &str| -> Vec<String> {
        match spelling {
            "dir" => vec!["--data-dir".into(), real_arg.clone()],
            "dir relative" => vec!["--data-dir".into(), "real".into()],
            "dir symlink" => vec!["--data-dir".into(), link_arg.clone()],
            "dir dotted" => vec!["--data-dir".into(), format!("{link_arg}/../real/.")],
            "url" => vec![
                "--database-url".into(),
                format!("sqlite://{real_arg}/{SQLITE_FILE_NAME}"),
            ],
            "url relative" => vec![
                "--database-url".into(),
                format!("sqlite://real/{SQLITE_FILE_NAME}"),
            ],
            "url symlink" => vec![
                "--database-url".into(),
                format!("sqlite://{link_arg}/{SQLITE_FILE_NAME}"),
            ],
            "url query" => vec![
                "--database-url".into(),
                format!("sqlite:{link_arg}/{SQLITE_FILE_NAME}?mode=rwc&cache=private"),
            ],
            other => unreachable!("{other}"),
        }
    };
    let spellings = [
        "dir",
        "dir relative",
        "dir symlink",
        "dir dotted",
        "url",
        "url relative",
        "url symlink",
        "url query",
    ];
    for owner_spelling in ["dir", "url symlink"] {
        let owner_args = db_args(owner_spelling);
        let owner_refs: Vec<&str> = owner_args.iter().map(String::as_str).collect();
        let mut owner = serve(root.path(), &owner_refs, &[]).await;
        let expected = format!(
            "the SQLite data directory {} is already used by another Switchyard process \
             (process {})",
            resolved.display(),
            owner.child.id()
        );
        for spelling in spellings {
            let mut args = vec!["worker".to_string()];
            args.extend(db_args(spelling));
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let log = assert_refused(root.path(), root.path(), &refs, &expected);
            assert!(
                log.contains("PostgreSQL"),
                "{owner_spelling}/{spelling}:\n{log}"
            );
        }
        owner.stop();
    }
}
