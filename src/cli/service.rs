//! `switchyard serve` (API, webhooks, scheduler and workers in one process) and
//! `switchyard worker` (workers only, for scale-out on PostgreSQL), plus the database
//! options every service command shares. Both open the stored connections with the master key
//! (`--master-key-file`, `SWITCHYARD_MASTER_KEY`, or the data directory's key file) and refuse
//! to start when stored connections are sealed under another key; their executions' modules
//! resolve connections through it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::api::{self, AppState, HookLimits};
use crate::apps::{AppRegistry, EgressPolicy};
use crate::catalog::{Catalog, CatalogOptions};
use crate::connections::{KEY_FILE_NAME, Keyring, MASTER_KEY_ENV, OAuthSettings, Vault};
use crate::module::{ConnectionsHandle, DataStoresHandle, Extensions};
use crate::queue::{Completions, Queue, QueueOptions, Runner, RunnerOptions};
use crate::store::{SqliteSync, Store};
use crate::triggers::scheduler::Scheduler;

/// Where the data lives: embedded SQLite in `--data-dir`, or PostgreSQL. Global, so that
/// `switchyard scenarios list --data-dir DIR` works as well as `scenarios --data-dir DIR list`.
#[derive(Args, Clone)]
pub struct DatabaseArgs {
    /// Directory of the embedded SQLite database.
    #[arg(long, global = true, default_value = super::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// `postgres://…` (or `sqlite://…`) instead of the data directory.
    #[arg(long, global = true, env = "SWITCHYARD_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The master key of stored connections, read from this file (64 hex digits or base64 of
    /// 32 bytes), kept apart from the data directory: it must exist, and may not lie inside
    /// the data directory. Instead of SWITCHYARD_MASTER_KEY or the data directory's
    /// master.key.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "SWITCHYARD_MASTER_KEY_FILE"
    )]
    pub master_key_file: Option<PathBuf>,
}

impl DatabaseArgs {
    /// Opens the database for a one-shot command (`scenarios …`, `executions …`): works next
    /// to a running `serve` (no owner lock, see `store`'s "One owner per SQLite database").
    pub async fn open(&self) -> anyhow::Result<Store> {
        Ok(match &self.database_url {
            Some(url) => Store::connect(url).await?,
            None => Store::open_sqlite(&self.data_dir).await?,
        })
    }

    /// Where the master key file of stored connections is (unless `SWITCHYARD_MASTER_KEY` is
    /// set): the data directory, or for a `sqlite://PATH` URL the directory of that file.
    pub fn key_dir(&self) -> PathBuf {
        let sqlite_file = self.database_url.as_deref().and_then(|url| {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))?;
            Some(PathBuf::from(path.split('?').next().unwrap_or(path)))
        });
        match sqlite_file.as_deref().and_then(std::path::Path::parent) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            Some(_) => PathBuf::from("."),
            None => self.data_dir.clone(),
        }
    }

    /// The master key (and the key of a rotation in progress) of this process: from
    /// `--master-key-file`, else `SWITCHYARD_MASTER_KEY`, else the key file of
    /// [`DatabaseArgs::key_dir`] (created when missing). A key file given with
    /// `--master-key-file` must exist and hold a key, and is refused when it lies inside the
    /// data directory (a copy or backup of the data would carry the key that opens it), as is
    /// giving both it and `SWITCHYARD_MASTER_KEY`.
    pub fn keyring(&self) -> anyhow::Result<Keyring> {
        let Some(file) = &self.master_key_file else {
            return Keyring::load(&self.key_dir()).context("cannot load the master key");
        };
        if std::env::var_os(MASTER_KEY_ENV).is_some() {
            anyhow::bail!(
                "both --master-key-file and {MASTER_KEY_ENV} give a master key: give one of them"
            );
        }
        let keys = Keyring::load_key_file(file).with_context(|| {
            format!(
                "cannot load the master key from --master-key-file {}",
                file.display()
            )
        })?;
        let on_postgres = self
            .database_url
            .as_deref()
            .is_some_and(|url| url.starts_with("postgres"));
        if !on_postgres {
            let data_dir = self.key_dir();
            if let (Ok(key), Ok(dir)) = (file.canonicalize(), data_dir.canonicalize())
                && key.starts_with(&dir)
            {
                anyhow::bail!(
                    "the master key file {} (--master-key-file) lies inside the data directory \
                     {}: keep it apart from the data, so that a copy or backup of the data \
                     does not carry the key that opens its connections; move it outside {}, \
                     or leave out --master-key-file to use {}",
                    file.display(),
                    data_dir.display(),
                    data_dir.display(),
                    data_dir.join(KEY_FILE_NAME).display()
                );
            }
        }
        Ok(keys)
    }

    /// Opens the database for a process that runs executions (`serve`, `worker`): on SQLite
    /// it becomes the database's one owner, and is refused while another process is or when
    /// the database fails its integrity check; its commits are synced as `sync` says.
    pub async fn open_owned(&self, sync: SqliteSynchronous) -> anyhow::Result<Store> {
        let sync = match sync {
            SqliteSynchronous::Full => SqliteSync::Full,
            SqliteSynchronous::Normal => SqliteSync::Normal,
        };
        Ok(match &self.database_url {
            Some(url) => Store::connect_owned(url, sync).await?,
            None => Store::open_sqlite_owned(&self.data_dir, sync).await?,
        })
    }
}

/// `--sqlite-synchronous`: SQLite's `PRAGMA synchronous` for the store's commits.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SqliteSynchronous {
    /// Sync the journal at every commit: an acknowledged webhook survives a power loss.
    Full,
    /// Sync at checkpoints only: faster commits; a power loss can lose the last ones.
    Normal,
}

/// Run slots per process by default: at 64 concurrent webhook callers, 8 slots gave 2,200
/// req/s, 32 gave 3,450, 128 gave 5,400 (`benches/load/run.sh`, SQLite, sync).
pub const DEFAULT_CONCURRENCY: usize = 128;

#[derive(Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Executions run at the same time by this process. Executions mostly wait (on HTTP
    /// calls, the store's commits), and a webhook delivery that finds every slot taken goes
    /// through the slower queue, so the default is high: measured in `docs/performance.md`.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Seconds between a worker's heartbeats; a worker silent for three is presumed dead.
    #[arg(long, default_value_t = 5)]
    pub heartbeat_seconds: u64,
    /// Runs of one execution before it is given up: an execution whose runs keep ending
    /// with their process (out of memory, killed) ends as error "crashed the worker N times"
    /// after this many instead of being run again at every restart.
    #[arg(long, default_value_t = crate::queue::DEFAULT_MAX_RUN_ATTEMPTS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Threads an execution moves to once it has computed for 2 ms, apart from those
    /// answering HTTP requests (so a CPU-heavy execution cannot stall the API and webhooks)
    /// [default: one per CPU].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub engine_threads: Option<u16>,
    #[command(flatten)]
    pub egress: super::EgressArgs,
    #[command(flatten)]
    pub budget: super::BudgetArgs,
    /// POST a JSON event to this URL for every failed execution (`execution.failed`) and
    /// every scenario turned off after its consecutive errors (`scenario.deactivated`).
    #[arg(long, env = "SWITCHYARD_NOTIFY_URL", value_name = "URL")]
    pub notify_url: Option<String>,
    /// The base URL external services and users reach the server at: an app's instant
    /// trigger registers `URL/hooks/<id>` on its service when its scenario is activated, and
    /// OAuth providers send users back to `URL/oauth/callback`. Default: the address `serve`
    /// listens on (`worker`: http://127.0.0.1:8080).
    #[arg(long, env = "SWITCHYARD_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
    /// An integrations file (YAML or JSON: `- provider: google …`): the OAuth2 providers,
    /// secrets and service accounts scenarios may use. Repeatable (a bot and its skills):
    /// the entries of every file are gathered; an alias declared twice is an error.
    #[arg(long = "integrations", value_name = "FILE")]
    pub integrations: Vec<PathBuf>,
    /// When SQLite makes a commit durable: `full` syncs at every commit (an acknowledged
    /// webhook survives a power loss), `normal` only at checkpoints (faster; a power loss
    /// can lose the last commits). Ignored on PostgreSQL.
    #[arg(long, value_enum, default_value_t = SqliteSynchronous::Full)]
    pub sqlite_synchronous: SqliteSynchronous,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Import the scenarios (`*.json`) of this folder on first start (empty database).
    #[arg(long)]
    pub import: Option<PathBuf>,
    /// Run no workers in this process (API, webhooks and scheduler only).
    #[arg(long)]
    pub no_workers: bool,
    /// Smallest accepted `indefinitely` interval in seconds (Make's minimum is 60).
    #[arg(long, default_value_t = 60)]
    pub min_interval_seconds: u64,
    /// Delete finished executions older than this many days.
    #[arg(long)]
    pub keep_executions_days: Option<u32>,
    /// Keep at most this many finished executions.
    #[arg(long)]
    pub keep_executions: Option<u32>,
    /// Largest webhook body in bytes (larger get 413).
    #[arg(long, default_value_t = 5 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Webhook requests per hook per 10 seconds before 429.
    #[arg(long, default_value_t = 300)]
    pub hook_rate: u32,
    /// Seconds a client has to send a request's headers (and an idle keep-alive connection
    /// to start its next request) before the connection is closed.
    #[arg(long, default_value_t = 10)]
    pub header_timeout_seconds: u64,
    /// Seconds a request's body may take to arrive once the server reads it (slower ones
    /// get 408).
    #[arg(long, default_value_t = 30)]
    pub body_timeout_seconds: u64,
    /// Open HTTP connections at most; more wait to be accepted.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Seconds a webhook caller waits for a scenario's response before 202.
    #[arg(long, default_value_t = 40)]
    pub respond_timeout_seconds: u64,
    /// Receive mailhooks' mail over SMTP on this address (`127.0.0.1:2525`); needs
    /// `--mail-domain`.
    #[arg(long, requires = "mail_domain")]
    pub smtp_listen: Option<String>,
    /// The domain of mailhooks' addresses: a mailhook receives mail at
    /// `<hook id>@<domain>` (point the domain's MX record at `--smtp-listen`).
    #[arg(long, env = "SWITCHYARD_MAIL_DOMAIN", value_parser = parse_mail_domain)]
    pub mail_domain: Option<String>,
    /// Largest e-mail in bytes received over SMTP (larger get 552; one posted to a
    /// mailhook's URL is a webhook body, `--max-body-bytes`). Default: `--max-body-bytes`.
    #[arg(long)]
    pub max_mail_bytes: Option<usize>,
    /// PEM certificate chain offered with SMTP STARTTLS (with `--smtp-tls-key`).
    #[arg(long, requires = "smtp_tls_key")]
    pub smtp_tls_cert: Option<PathBuf>,
    /// PEM private key of `--smtp-tls-cert`.
    #[arg(long, requires = "smtp_tls_cert")]
    pub smtp_tls_key: Option<PathBuf>,
}

/// The SMTP receiver `args` asks for: its listener (bound) and settings, the certificate
/// read — so a bad address or certificate stops `serve` before anything else starts.
async fn smtp_receiver(
    args: &ServeArgs,
) -> anyhow::Result<Option<(tokio::net::TcpListener, api::SmtpOptions)>> {
    let Some(address) = &args.smtp_listen else {
        return Ok(None);
    };
    let tls = match (&args.smtp_tls_cert, &args.smtp_tls_key) {
        (Some(cert), Some(key)) => Some(api::tls_config(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("--smtp-listen {address}"))?;
    let options = api::SmtpOptions {
        domain: args.mail_domain.clone().unwrap_or_default(),
        max_message_bytes: args.max_mail_bytes.unwrap_or(args.max_body_bytes),
        tls,
    };
    Ok(Some((listener, options)))
}

/// A mail domain: a host name (letters, digits, `-`, `.`), stored in lower case.
pub fn parse_mail_domain(text: &str) -> Result<String, String> {
    let domain = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(domain)
    } else {
        Err(format!(
            "`{text}` is not a domain name (letters, digits, `-` and `.`, like mail.example.com)"
        ))
    }
}

fn queue_options(max_run_attempts: u32) -> QueueOptions {
    QueueOptions {
        max_run_attempts,
        ..QueueOptions::default()
    }
}

/// The integrations `args` declares, their callbacks under `public_url`.
fn integration_settings(args: &WorkerArgs, public_url: &str) -> anyhow::Result<OAuthSettings> {
    let integrations = crate::connections::load_files(&args.integrations)?;
    if !integrations.is_empty() {
        tracing::info!(
            integrations = integrations.len(),
            "integrations declared by --integrations"
        );
    }
    Ok(OAuthSettings {
        integrations,
        public_url: reqwest::Url::parse(public_url)?,
        egress: EgressPolicy::new(args.egress.allow_egress.clone()),
    })
}

/// The stored connections of `store`, checked to open with this process's master key, with
/// the declared integrations when given.
pub(super) async fn vault(
    store: &Store,
    db: &DatabaseArgs,
    apps: &AppRegistry,
    integrations: Option<OAuthSettings>,
) -> anyhow::Result<Arc<Vault>> {
    let vault = super::connections::vault_on(store.clone(), db, Some(apps), integrations)?;
    let stored = vault.check_keys().await?;
    tracing::info!(
        connections = stored,
        key = vault.keyring().current().id(),
        "stored connections open with the master key"
    );
    Ok(vault)
}

/// What modules are handed by this process: the stored connections and the data stores of
/// `store`.
pub fn services(vault: &Arc<Vault>, store: &Store) -> Extensions {
    let mut services = Extensions::default();
    services.insert::<ConnectionsHandle>(vault.handle());
    services.insert::<DataStoresHandle>(store.datastores_handle());
    services
}

fn runner(catalog: &Catalog, queue: &Queue, args: &WorkerArgs) -> anyhow::Result<Arc<Runner>> {
    let defaults = RunnerOptions::default();
    let options = RunnerOptions {
        heartbeat: Duration::from_secs(args.heartbeat_seconds.max(1)),
        engine_threads: args
            .engine_threads
            .map_or(defaults.engine_threads, usize::from),
        budget: args.budget.budget()?,
        notify: args
            .notify_url
            .as_deref()
            .map(crate::queue::Notifier::new)
            .transpose()?,
        ..defaults
    };
    let runner = Runner::new(catalog.clone(), queue, options, Completions::default())
        .context("could not start the engine's threads")?;
    Ok(Arc::new(runner))
}

/// How long a stopping `serve` waits for running executions.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Resolves once the process is told to stop and the runner has finished the executions it
/// was running (at most [`SHUTDOWN_GRACE`]): the moment to stop the queue's workers.
async fn drained(runner: Arc<Runner>) {
    shutdown_signal().await;
    runner.drain();
    wait_idle(&runner).await;
}

/// Waits until the runner runs nothing, for at most [`SHUTDOWN_GRACE`].
async fn wait_idle(runner: &Runner) {
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while runner.running() > 0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("running executions did not finish in time; they will run again");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The bearer token's hash: from `SWITCHYARD_API_TOKEN`, else the stored one, else a new
/// token printed once.
async fn api_token_hash(store: &Store) -> anyhow::Result<String> {
    if let Ok(token) = std::env::var("SWITCHYARD_API_TOKEN") {
        if token.trim().len() < 16 {
            anyhow::bail!("SWITCHYARD_API_TOKEN must be at least 16 characters");
        }
        let hash = api::token_hash(token.trim());
        store.set_api_token_hash(&hash).await?;
        return Ok(hash);
    }
    if let Some(hash) = store.api_token_hash().await? {
        return Ok(hash);
    }
    let token = format!("sy_{}", hex::encode(rand::random::<[u8; 24]>()));
    let hash = api::token_hash(&token);
    store.set_api_token_hash(&hash).await?;
    eprintln!("API token (shown once, stored hashed): {token}");
    Ok(hash)
}

/// Imports the scenarios of `dir` (with their hooks) into an empty database and says what
/// it imported, hook URLs included, so the examples can be triggered at once.
async fn import_scenarios(catalog: &Catalog, dir: &std::path::Path) -> anyhow::Result<()> {
    if !catalog.store().list_scenarios().await?.is_empty() {
        return Ok(());
    }
    let imported = catalog
        .import_dir(dir)
        .await
        .map_err(|e| anyhow::anyhow!("cannot import {}: {e}", dir.display()))?;
    for (file, result) in imported {
        match result {
            Ok(stored) => {
                let hooks: Vec<String> = stored
                    .hooks
                    .iter()
                    .map(|h| match &h.address {
                        Some(address) => format!("{} (mail to {address})", h.path()),
                        None => h.path(),
                    })
                    .collect();
                eprintln!(
                    "imported {} → scenario {} \"{}\"{}",
                    file.display(),
                    stored.id,
                    stored.name,
                    if hooks.is_empty() {
                        String::new()
                    } else {
                        format!(", hook {}", hooks.join(", "))
                    }
                );
                for warning in &stored.warnings {
                    eprintln!("  warning: {warning}");
                }
            }
            Err(e) => eprintln!("not imported {}: {e}", file.display()),
        }
    }
    Ok(())
}

/// A `--public-url`: an absolute http(s) URL without query or fragment, kept without a
/// trailing slash.
pub fn parse_public_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("expected an http:// or https:// URL with a host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the public URL cannot have a query or a fragment".into());
    }
    Ok(text.trim_end_matches('/').to_string())
}

pub async fn serve(args: ServeArgs, modules: Arc<AppRegistry>) -> anyhow::Result<()> {
    binaries_in(&args.worker.db);
    let store = args
        .worker
        .db
        .open_owned(args.worker.sqlite_synchronous)
        .await?;
    let token_hash = api_token_hash(&store).await?;
    // Bound first: the address is the public URL unless one is given.
    let addr: SocketAddr = format!("{}:{}", args.host, args.port).parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let smtp = smtp_receiver(&args).await?;
    let public_url = args
        .worker
        .public_url
        .clone()
        .unwrap_or(format!("http://{local}"));
    let settings = integration_settings(&args.worker, &public_url)?;
    // Session cookies are `Secure` when browsers reach the console over https.
    let secure_cookies = public_url.starts_with("https://");
    let vault = vault(&store, &args.worker.db, &modules, Some(settings)).await?;
    let queue = Queue::new(&store, queue_options(args.worker.max_attempts));
    let catalog = Catalog::new(
        store.clone(),
        modules,
        CatalogOptions {
            min_interval: args.min_interval_seconds,
            public_url: Some(public_url),
            services: services(&vault, &store),
            mail_domain: args.mail_domain.clone(),
        },
    );
    let runner = runner(&catalog, &queue, &args.worker)?;
    if let Some(dir) = &args.import {
        import_scenarios(&catalog, dir).await?;
    }
    let scheduler = Scheduler::new(catalog, queue.clone(), args.min_interval_seconds);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(scheduler.run());
    tasks.spawn(crate::queue::retry::run_retries(
        store.clone(),
        queue.clone(),
        Duration::from_secs(15),
    ));
    tasks.spawn(maintain(
        store.clone(),
        args.keep_executions_days,
        args.keep_executions,
    ));
    if !args.no_workers {
        let (queue, runner, concurrency) = (queue.clone(), runner.clone(), args.worker.concurrency);
        tasks.spawn(async move {
            if let Err(e) = queue
                .work(
                    &format!("serve-{}", std::process::id()),
                    runner.clone(),
                    concurrency,
                    drained(runner),
                )
                .await
            {
                tracing::error!(error = %e, "workers stopped");
            }
        });
    }
    let stopping = runner.clone();
    let limits = HookLimits {
        max_body_bytes: args.max_body_bytes,
        rate_per_window: args.hook_rate,
        rate_window: Duration::from_secs(10),
        respond_timeout: Duration::from_secs(args.respond_timeout_seconds),
    };
    let state = AppState::new(
        queue,
        runner,
        token_hash,
        limits,
        if args.no_workers {
            0
        } else {
            args.worker.concurrency
        },
    )
    .with_connections(vault);
    eprintln!("switchyard listening on http://{local}");
    if let Some((listener, options)) = smtp {
        eprintln!(
            "switchyard receiving mail for {} on smtp://{}",
            options.domain,
            listener.local_addr()?
        );
        tasks.spawn(api::serve_smtp(listener, state.clone(), options));
    }
    let server = api::ServerLimits {
        header_timeout: Duration::from_secs(args.header_timeout_seconds.max(1)),
        max_connections: args.max_connections,
        body_timeout: Duration::from_secs(args.body_timeout_seconds.max(1)),
    };
    let console = crate::console::router(crate::console::ConsoleOptions { secure_cookies });
    api::serve(
        listener,
        api::app_with(state, console),
        server,
        shutdown_signal(),
    )
    .await;
    // Executions already running finish (and commit) before the process ends; no new ones
    // start once the signal came.
    stopping.drain();
    wait_idle(&stopping).await;
    tasks.abort_all();
    store.close().await;
    Ok(())
}

pub async fn worker(args: WorkerArgs, modules: Arc<AppRegistry>) -> anyhow::Result<()> {
    binaries_in(&args.db);
    let store = args.db.open_owned(args.sqlite_synchronous).await?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_string());
    let settings = integration_settings(&args, &public_url)?;
    let vault = vault(&store, &args.db, &modules, Some(settings)).await?;
    let queue = Queue::new(&store, queue_options(args.max_attempts));
    let options = CatalogOptions {
        public_url: Some(public_url),
        services: services(&vault, &store),
        ..CatalogOptions::default()
    };
    let catalog = Catalog::new(store.clone(), modules, options);
    let runner = runner(&catalog, &queue, &args)?;
    eprintln!(
        "switchyard worker {} running {} at a time",
        std::process::id(),
        args.concurrency
    );
    let worked = queue
        .work(
            &format!("worker-{}", std::process::id()),
            runner.clone(),
            args.concurrency,
            drained(runner),
        )
        .await;
    worked?;
    store.close().await;
    Ok(())
}

/// Files modules produce are stored in the data directory's `binaries` folder (workers of one
/// PostgreSQL database share it when their data directories are one shared folder).
fn binaries_in(db: &DatabaseArgs) {
    crate::expr::binary::set_dir(db.data_dir.join("binaries"));
}

/// Retention and, on SQLite, checkpoint + incremental vacuum so the file shrinks. Stored
/// files not written or reused within `keep_days` go with the executions that held them.
async fn maintain(store: Store, keep_days: Option<u32>, keep_last: Option<u32>) {
    loop {
        tokio::time::sleep(Duration::from_secs(600)).await;
        if keep_days.is_some() || keep_last.is_some() {
            match store.prune(keep_days, keep_last, 1000).await {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "old executions pruned"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning failed"),
            }
        }
        if let Some(days) = keep_days {
            let age = Duration::from_secs(u64::from(days) * 86_400);
            match tokio::task::spawn_blocking(move || crate::expr::binary::sweep(age)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(deleted = n, "old stored files swept"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "sweeping stored files failed"),
                Err(e) => tracing::warn!(error = %e, "sweeping stored files failed"),
            }
        }
        if let Err(e) = store.maintain().await {
            tracing::warn!(error = %e, "database maintenance failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_next_to_a_sqlite_url_else_in_the_data_dir() {
        let args = |url: Option<&str>| DatabaseArgs {
            data_dir: PathBuf::from("/data"),
            database_url: url.map(str::to_string),
            master_key_file: None,
        };
        assert_eq!(args(None).key_dir(), PathBuf::from("/data"));
        assert_eq!(
            args(Some("postgres://u:p@h/db")).key_dir(),
            PathBuf::from("/data")
        );
        assert_eq!(
            args(Some("sqlite:///var/lib/sy/store.db?mode=rwc")).key_dir(),
            PathBuf::from("/var/lib/sy")
        );
        assert_eq!(
            args(Some("sqlite://store.db")).key_dir(),
            PathBuf::from(".")
        );
    }
}
