//! The harness of `tests/service.rs`: a fresh database per test (a SQLite data directory, or
//! a PostgreSQL database created for the test from `SWITCHYARD_TEST_DATABASE_URL` and dropped
//! afterwards), the real `switchyard` binary as `serve`/`worker` child processes (killed on
//! drop, their logs printed when a test fails), an HTTP client with the API token, and
//! polling helpers that fail with a clear message when a condition is not reached in time.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use switchyard::store::Store;

/// The API token every child process is started with.
pub const TOKEN: &str = "service-test-token-0123456789abcdef";

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_switchyard")
}

// ---------------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One fresh database for one test, plus a directory for child logs and files.
pub struct TestDb {
    pub backend: Backend,
    /// Logs, scenario files, and on SQLite the data directory (`dir/data`).
    pub dir: tempfile::TempDir,
    /// The test database's URL on PostgreSQL.
    pg: Option<PgDatabase>,
}

struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl Drop for PgDatabase {
    /// Drops the test database (children are gone by now; FORCE closes what is left).
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(crate::common::backends::drop_pg_database(&admin_url, &name))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

impl TestDb {
    /// A fresh database on `backend`; `None` (after printing the notice once) for PostgreSQL
    /// when `SWITCHYARD_TEST_DATABASE_URL` is not set.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        let dir = tempfile::tempdir().expect("tempdir");
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let created = crate::common::backends::create_pg_database("switchyard_svc").await?;
                Some(PgDatabase {
                    admin_url: created.admin_url,
                    name: created.name,
                    url: created.url,
                })
            }
        };
        Some(TestDb { backend, dir, pg })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The arguments that point a command at this database.
    pub fn db_args(&self) -> Vec<String> {
        match &self.pg {
            // The data directory holds the master key of stored connections.
            Some(pg) => vec![
                "--database-url".into(),
                pg.url.clone(),
                "--data-dir".into(),
                self.data_dir().to_string_lossy().into_owned(),
            ],
            None => vec![
                "--data-dir".into(),
                self.data_dir().to_string_lossy().into_owned(),
            ],
        }
    }

    /// A store on the test database (its own pool, like another process).
    pub async fn store(&self) -> Store {
        match &self.pg {
            Some(pg) => Store::connect(&pg.url)
                .await
                .expect("connect test database"),
            None => Store::open_sqlite(&self.data_dir())
                .await
                .expect("open test database"),
        }
    }

    /// Makes the database unavailable to every other connection for `duration`: on
    /// PostgreSQL it refuses connections and ends the open ones; on SQLite it holds the write
    /// lock (longer than the store's 5 s busy timeout, so writers fail).
    pub async fn outage(&self, duration: Duration) {
        match &self.pg {
            Some(pg) => {
                let admin = sqlx::PgPool::connect(&pg.admin_url)
                    .await
                    .expect("connect admin");
                let allow =
                    |on: bool| format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS {on}", pg.name);
                sqlx::query(sqlx::AssertSqlSafe(allow(false)))
                    .execute(&admin)
                    .await
                    .expect("refuse connections");
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                )
                .bind(&pg.name)
                .execute(&admin)
                .await
                .expect("end connections");
                tokio::time::sleep(duration).await;
                sqlx::query(sqlx::AssertSqlSafe(allow(true)))
                    .execute(&admin)
                    .await
                    .expect("accept connections");
                admin.close().await;
            }
            None => {
                use sqlx::Connection;
                let file = self.data_dir().join(switchyard::store::SQLITE_FILE_NAME);
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
                        .await
                        .expect("open the SQLite file");
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut conn)
                    .await
                    .expect("take the write lock");
                tokio::time::sleep(duration).await;
                sqlx::query("ROLLBACK")
                    .execute(&mut conn)
                    .await
                    .expect("release the write lock");
                conn.close().await.expect("close");
            }
        }
    }

    /// Writes `value` as a file in the test directory; returns its path.
    pub fn write_json(&self, name: &str, value: &Value) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).expect("write file");
        path
    }

    /// Starts `switchyard serve` on this database and waits for `/health`.
    pub async fn serve(&self, extra: &[&str]) -> Service {
        Service::start(self, "serve", extra).await
    }

    /// Starts `switchyard serve` on this database on a free port without waiting for it
    /// (for a start that is meant to fail).
    pub fn spawn_serve(&self, extra: &[&str]) -> Proc {
        let mut args: Vec<String> = vec!["serve".into()];
        args.extend(self.db_args());
        args.extend(["--port".into(), free_port().to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        Proc::spawn(self, "serve", &args)
    }

    /// Starts `switchyard worker` on this database (no HTTP; ready when it says so).
    pub fn worker(&self, extra: &[&str]) -> Proc {
        let mut args: Vec<String> = vec!["worker".into()];
        args.extend(self.db_args());
        args.extend(extra.iter().map(|s| s.to_string()));
        Proc::spawn(self, "worker", &args)
    }

    /// Runs a one-shot CLI command (`scenarios …`, `executions …`) on this database; the
    /// database arguments go after the subcommand, as users type them.
    /// Stores an `oauth2` connection of `app` named `name` with Make's id `id` from a token
    /// obtained elsewhere (`connections add --access-token … --no-test`), the app pointed at a
    /// test server by `app_base_urls` (`APP=URL,…`).
    pub fn add_access_token_connection(
        &self,
        name: &str,
        app: &str,
        token: &str,
        id: &str,
        app_base_urls: &str,
    ) {
        let out = self.cli(&[
            "connections",
            "add",
            name,
            "--app",
            app,
            "--access-token",
            token,
            "--id",
            id,
            "--no-test",
            "--app-base-url",
            app_base_urls,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// How many executions of the database have ended (`executions list --json`; a poll
    /// reads its source while its execution runs: items added before it ends may be its).
    pub fn ended_executions(&self) -> usize {
        let out = self.cli(&["executions", "list", "--json"]);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        list["executions"].as_array().map_or(0, |all| {
            all.iter()
                .filter(|e| !matches!(e["status"].as_str(), Some("queued" | "running")))
                .count()
        })
    }

    /// Waits until `n` executions have ended (polls that found items or none alike).
    pub async fn executions_at_least(&self, n: usize) {
        eventually(&format!("{n} executions to end"), 60, || async move {
            let count = self.ended_executions();
            if count >= n {
                Ok(())
            } else {
                Err(format!("{count} ended"))
            }
        })
        .await
    }

    /// Waits until no execution of the database is queued or running.
    pub async fn executions_settled(&self) {
        eventually("every execution to end", 60, || async move {
            let out = self.cli(&["executions", "list", "--json"]);
            let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let all = list["executions"].as_array().cloned().unwrap_or_default();
            match all
                .iter()
                .all(|e| !matches!(e["status"].as_str(), Some("queued" | "running")))
            {
                true => Ok(()),
                false => Err(list.to_string()),
            }
        })
        .await
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(self.db_args());
        command(&all).output().expect("run switchyard")
    }
}

fn command(args: &[String]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env("SWITCHYARD_API_TOKEN", TOKEN)
        .env_remove("SWITCHYARD_DATABASE_URL")
        // The scenarios of these tests call fakes on loopback.
        .env("SWITCHYARD_ALLOW_EGRESS", "127.0.0.1")
        .env(
            "SWITCHYARD_LOG",
            std::env::var("SWITCHYARD_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null());
    cmd
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// A child process, killed (SIGKILL) and reaped on drop. When the test is failing, its log
/// (standard error) is printed.
pub struct Proc {
    child: Option<Child>,
    pub name: String,
    log: PathBuf,
}

impl Proc {
    fn spawn(db: &TestDb, what: &str, args: &[String]) -> Proc {
        let log = tempfile::Builder::new()
            .prefix(&format!("{what}-"))
            .suffix(".log")
            .tempfile_in(db.dir.path())
            .expect("log file")
            .into_temp_path()
            .keep()
            .expect("keep log file");
        let file = std::fs::File::create(&log).expect("log file");
        let child = command(args)
            .stdout(Stdio::from(file.try_clone().expect("log file")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn switchyard");
        Proc {
            name: format!("{what} (pid {})", child.id()),
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL (`kill -9`) and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (a graceful stop) and wait up to `secs` for the process to exit; true when it
    /// exited in time (it is killed otherwise).
    pub fn terminate(&mut self, secs: u64) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + Duration::from_secs(secs);
        while sent && Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Waits up to `secs` for the process to exit on its own; its exit status, or `None`
    /// when it is still running (it is left running).
    pub fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(200).collect();
            eprintln!("--- last lines of {} ---", self.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A `serve` process with its address and an API client.
pub struct Service {
    pub proc: Proc,
    pub base: String,
    pub api: Api,
}

/// A port nobody listens on right now (bind port 0, read it, let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

impl Service {
    async fn start(db: &TestDb, what: &str, extra: &[&str]) -> Service {
        for _ in 0..3 {
            let port = free_port();
            let mut args: Vec<String> = vec![what.into()];
            args.extend(db.db_args());
            args.extend(["--port".into(), port.to_string()]);
            args.extend(extra.iter().map(|s| s.to_string()));
            let mut proc = Proc::spawn(db, what, &args);
            let base = format!("http://127.0.0.1:{port}");
            let api = Api::new(&base);
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(r) = api.client.get(format!("{base}/health")).send().await
                    && r.status() == StatusCode::OK
                {
                    return Service { proc, base, api };
                }
                if !proc.running() {
                    let log = proc.log();
                    if log.contains("in use") {
                        break; // the port was taken in between: try another
                    }
                    panic!("{} exited before answering /health:\n{log}", proc.name);
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not answer /health within 60 s:\n{}",
                    proc.name,
                    proc.log()
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        panic!("could not start {what} on a free port");
    }

    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// The URL of a hook path (`/hooks/…`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// A response: status, headers, body text and the body as JSON (`Null` when it is not).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub async fn from(r: reqwest::Response) -> Reply {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Panics unless the status is `expected`, showing the body.
    pub fn expect(self, expected: u16, what: &str) -> Reply {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "{what}: expected HTTP {expected}, got {}: {}",
            self.status,
            self.text
        );
        self
    }
}

/// The JSON API of one `serve` process, with the bearer token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.to_string(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(32)
                .build()
                .expect("http client"),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        Reply::from(r).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(reqwest::Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(reqwest::Method::PUT, path, body).await
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> Reply {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if !body.is_null() {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let r = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        Reply::from(r).await
    }

    /// Creates a scenario (201 expected); returns the creation answer.
    pub async fn create(&self, blueprint: &Value) -> Value {
        self.post("/api/scenarios", blueprint)
            .await
            .expect(201, "create scenario")
            .json
    }

    /// Creates and activates a scenario; returns its id and its first hook's path.
    pub async fn create_active(&self, blueprint: &Value) -> (String, Option<String>) {
        let created = self.create(blueprint).await;
        let id = created["id"].as_str().expect("scenario id").to_string();
        self.post(&format!("/api/scenarios/{id}/activate"), &Value::Null)
            .await
            .expect(200, "activate");
        let hook = created["hooks"][0]["url"].as_str().map(str::to_string);
        (id, hook)
    }

    pub async fn execution(&self, id: &str) -> Value {
        self.get(&format!("/api/executions/{id}"))
            .await
            .expect(200, "get execution")
            .json
    }

    /// Every stored bundle of `module` in execution `id`, read page by page
    /// (`?module=&offset=&limit=`, following `next`): `[{seq, output}]`.
    pub async fn module_bundles(&self, id: &str, module: u64, limit: u32) -> Vec<Value> {
        let mut all = Vec::new();
        let mut offset = 0;
        loop {
            let path =
                format!("/api/executions/{id}?module={module}&offset={offset}&limit={limit}");
            let page = self.get(&path).await.expect(200, "module page").json;
            all.extend(page["bundles"].as_array().cloned().unwrap_or_default());
            match page["next"].as_u64() {
                Some(next) => offset = next,
                None => return all,
            }
        }
    }

    /// Execution `id`'s log as `switchyard run --json` prints it (`[{module, output}]` in
    /// execution order), put back together from the pages of every module its summary names.
    pub async fn log(&self, id: &str) -> Value {
        let summary = self.execution(id).await;
        let mut log = Vec::new();
        for m in summary["modules"].as_array().into_iter().flatten() {
            let module = m["module"].as_u64().expect("module id");
            for bundle in self.module_bundles(id, module, 1000).await {
                log.push((
                    bundle["seq"].as_u64().expect("seq"),
                    module,
                    bundle["output"].clone(),
                ));
            }
        }
        log.sort_by_key(|(seq, _, _)| *seq);
        Value::Array(
            log.into_iter()
                .map(|(_, module, output)| json!({"module": module, "output": output}))
                .collect(),
        )
    }

    /// Every execution of a scenario (all pages), newest first.
    pub async fn executions(&self, scenario: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let mut path = format!("/api/executions?scenario={scenario}&limit=1000");
            if let Some(b) = &before {
                path.push_str(&format!("&before={b}"));
            }
            let page = self.get(&path).await.expect(200, "list executions").json;
            all.extend(page["executions"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(next) => before = Some(next.to_string()),
                None => return all,
            }
        }
    }

    /// Waits until execution `id` is finished (success, error or incomplete); returns it.
    pub async fn finished(&self, id: &str) -> Value {
        eventually(&format!("execution {id} to finish"), 30, || async move {
            let e = self.execution(id).await;
            let status = e["status"].as_str().unwrap_or("").to_string();
            if is_terminal(&status) {
                Ok(e)
            } else {
                Err(format!("status {status}"))
            }
        })
        .await
    }

    /// Waits until every execution of `scenario` has finished and there are at least
    /// `at_least` of them; returns them.
    pub async fn all_finished(&self, scenario: &str, at_least: usize, secs: u64) -> Vec<Value> {
        eventually(
            &format!("{at_least} executions of scenario {scenario} to finish"),
            secs,
            || async move {
                let all = self.executions(scenario).await;
                let open = all
                    .iter()
                    .filter(|e| !is_terminal(e["status"].as_str().unwrap_or("")))
                    .count();
                if all.len() >= at_least && open == 0 {
                    Ok(all)
                } else {
                    Err(format!("{} executions, {open} not finished", all.len()))
                }
            },
        )
        .await
    }
}

pub fn is_terminal(status: &str) -> bool {
    matches!(status, "success" | "error" | "incomplete")
}

/// Polls `check` every 50 ms until it returns `Ok`, for at most `secs` seconds; then fails
/// with `what` and the last `Err` it gave.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {secs} s waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POSTs to a hook with optional headers, a content type and a raw body.
pub async fn hook(
    client: &reqwest::Client,
    url: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = client.post(url).body(body);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let r = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e:?}"));
    Reply::from(r).await
}

/// POSTs a JSON body to a hook.
pub async fn hook_json(client: &reqwest::Client, url: &str, body: &Value) -> Reply {
    hook(client, url, Some("application/json"), body.to_string(), &[]).await
}

/// The execution id a webhook acknowledgement names.
pub fn execution_header(reply: &Reply) -> String {
    reply
        .header("x-switchyard-execution")
        .unwrap_or_else(|| panic!("no x-switchyard-execution header: {reply:?}"))
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Blueprints
// ---------------------------------------------------------------------------------------------

/// Webhook → one variable: the smallest scenario with a hook and no response module.
pub fn hook_scenario(name: &str) -> Value {
    json!({
        "name": name,
        "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": name}},
            {"id": 2, "module": "util:SetVariable2",
             "mapper": {"name": "n", "scope": "roundtrip", "value": "{{1.n}}"}}
        ]
    })
}

/// The text of a file of the repository.
pub fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Standard output of a command that must have succeeded.
pub fn stdout_ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard output of a command that must have succeeded, as JSON.
pub fn stdout_json(out: &Output, what: &str) -> Value {
    let text = stdout_ok(out, what);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

// ---------------------------------------------------------------------------------------------
// A loopback counter standing in for a third-party API
// ---------------------------------------------------------------------------------------------

/// How often each `n` was POSTed to the counter.
pub type Counts = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u64, u32>>>;

/// Starts `POST /count` (JSON `{"n": N}`) on 127.0.0.1; each call takes `delay` and is
/// counted per `n`. Returns the base URL and the counts.
pub async fn counter_server(delay: Duration) -> (String, Counts) {
    use axum::Json;
    use axum::routing::post;
    let counts: Counts = Default::default();
    let seen = counts.clone();
    let app = axum::Router::new().route(
        "/count",
        post(move |Json(body): Json<Value>| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(delay).await;
                let n = body["n"].as_u64().unwrap_or(u64::MAX);
                *seen.lock().unwrap().entry(n).or_default() += 1;
                Json(json!({"counted": n}))
            }
        }),
    );
    let addr = crate::common::server::serve(app).await;
    (format!("http://{addr}"), counts)
}

/// How many distinct numbers the counter saw.
pub fn distinct(counts: &Counts) -> u64 {
    counts.lock().unwrap().len() as u64
}

/// Waits until the counter saw `n` distinct numbers.
pub async fn wait_distinct(counts: &Counts, n: u64, secs: u64) {
    eventually(&format!("{n} distinct items at the sink"), secs, || async {
        let d = distinct(counts);
        if d >= n {
            Ok(())
        } else {
            Err(format!("{d} so far"))
        }
    })
    .await;
}

/// The numbers the counter saw other than once, with their counts, in order.
pub fn duplicates(counts: &Counts) -> Vec<(u64, u32)> {
    let mut d: Vec<(u64, u32)> = counts
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, c)| **c != 1)
        .map(|(n, c)| (*n, *c))
        .collect();
    d.sort();
    d
}
