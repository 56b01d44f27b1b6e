//! The durable store: scenarios and their versions, webhook endpoints and deliveries,
//! executions with their per-module data, polling cursors, incomplete executions, schedule
//! ticks, the API token, retention. One API, the same behaviour on SQLite and PostgreSQL.
//!
//! # Layout
//! - this file: [`Store`], opening and migrating a database, the backend switch;
//! - `error.rs`: [`StoreError`];
//! - `types.rs`: the typed rows and enums the rest of the system reads;
//! - `json.rs`: how JSON documents are written (TEXT on SQLite, JSONB on PostgreSQL);
//! - `migrate.rs`: the embedded migrations (`migrations/{sqlite,postgres}/`);
//! - `scenarios.rs`: scenarios, versions, hooks;
//! - `executions.rs`: executions, per-module data, webhook deliveries;
//! - `triggers.rs`: trigger state, schedule ticks, incomplete executions;
//! - `connections.rs`: stored connections (metadata and sealed values, never opened here);
//! - `datastores.rs`: Make's data stores and their records (the modules' `DataStores`);
//! - `runnable.rs`: what the job queue hands out (the queue is the executions table itself);
//! - `maintenance.rs`: retention, SQLite maintenance, metrics, the API token;
//! - `files.rs`: the data directory's and the database files' permissions (owner only);
//! - `integrity.rs`: the integrity check of a SQLite database and the health `/health` reports.
//!
//! # Invariants
//! - **Only this module knows which database it is on, and it owns every statement** — the
//!   job queue's included (`runnable.rs`): the queue's jobs are executions. Queries are runtime `sqlx::query` calls (never the `query!`
//!   macros, see `shared/reference/rust-stack.md`) written once with `$N` placeholders, which
//!   both drivers accept, and run through `on_pool!`, which expands the same code for each
//!   pool type. Where the dialects differ (row locks, write transactions), the `Dialect`
//!   trait says so.
//! - **Ids are generated in Rust**: time-ordered UUID v7 (milliseconds, then 74 random
//!   bits) as 32 lowercase hex characters ([`new_id`]); hook ids, which are bearer secrets in
//!   a URL, have 256 random bits.
//!   A lookup with a string that cannot be an id answers "not found" without a query.
//! - **Time is UTC milliseconds** in `BIGINT`/`INTEGER` columns, identical on both dialects.
//! - **State changes are compare-and-set.** A finished execution is never touched again, a
//!   schedule tick is claimed once, a webhook key accepted once — whichever process races.
//! - **Errors carry no secrets and no payloads**: ids and reasons only, never a hook id,
//!   a connection URL or a bundle.
//! - **One owner per SQLite database.** The long-running processes (`serve`, `worker`) open
//!   SQLite with [`Store::open_sqlite_owned`] / [`Store::connect_owned`], which hold an
//!   exclusive OS file lock ([`SQLITE_LOCK_FILE_NAME`] next to the database, `flock`) for the
//!   store's lifetime — one lock per database file however it is named (`--data-dir D` or
//!   `sqlite://D/switchyard.db`, relative, absolute, through a symlink, with query
//!   parameters: [`owner_lock_of`]): a second one is refused with [`StoreError::Locked`],
//!   because two processes running one SQLite queue run its executions twice. The lock dies
//!   with its process (even `kill -9`). One-shot admin commands (`scenarios …`,
//!   `executions …`) open without it ([`Store::open_sqlite`]): they run no executions and
//!   write through SQLite's own locking, so they work next to a running `serve`. PostgreSQL takes no lock: several
//!   processes on one PostgreSQL database is the supported way to scale out.
//! - **At rest, SQLite is owner-only and durable**: the data directory is created `0700` and
//!   the database files are `0600` (`files.rs`); commits are `synchronous = FULL` unless the
//!   caller asks for [`SqliteSync::Normal`], so an acknowledged webhook survives a power
//!   loss; an owning open refuses a database that fails its integrity check, and every open
//!   one whose damage shows while opening it (`integrity.rs`).

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Postgres, Sqlite, Transaction};

/// Runs `$body` with `$pool` bound to the concrete pool of `$store`: the same tokens are
/// compiled once for SQLite and once for PostgreSQL, so one query text serves both.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store.pool() {
            $crate::store::StorePool::Sqlite($pool) => $body,
            $crate::store::StorePool::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` with `$tx` bound to the backend's transaction (like `on_pool!`).
macro_rules! on_tx {
    ($tx:expr, $t:ident => $body:expr) => {
        match $tx {
            $crate::store::WriteTx::Sqlite($t) => $body,
            $crate::store::WriteTx::Postgres($t) => $body,
        }
    };
}

mod calendars;
mod calls;
mod connections;
mod datastores;
mod error;
mod executions;
mod files;
mod intake;
mod integrity;
mod json;
mod maintenance;
mod migrate;
mod oauth_states;
mod overview;
mod runnable;
mod scenarios;
mod sessions;
mod ticks;
mod triggers;
mod types;

pub use calendars::{
    Booking, BookingCalendar, BookingStatus, FreeSlot, MAX_CALENDAR_ALIAS_BYTES,
    MAX_CALENDAR_SPAN_DAYS, Window, check_calendar_alias, check_windows, iso,
};
pub use calls::{CallLink, ExecutionLinks, MAX_LISTED_CALLS};
pub use connections::{
    ConnectionRow, IntegrationLink, MAX_CONNECTION_NAME_BYTES, MAX_SEALED_BYTES, NewConnection,
    Resealed, STATUS_CONNECTED, STATUS_NEEDS_REAUTH, SealedConnection, check_connection_name,
    is_make_id,
};
pub use datastores::{
    MAX_DATASTORE_BYTES, MAX_DATASTORE_NAME_BYTES, NewDataStore, check_datastore_name, check_key,
};
pub use error::StoreError;
pub use executions::{CRASH_ERROR_NAME, ModuleData, crash_error};
pub use files::{DATA_DIR_MODE, DATABASE_FILE_MODE, ensure_data_dir};
pub use intake::{NewDelivery, WriteTx};
pub use integrity::{STARTUP_CHECK_WAIT, StoreHealth};
pub use json::MAX_JSON_DEPTH;
pub use maintenance::TICK_RETENTION_DAYS;
pub use migrate::MIGRATIONS_TABLE;
pub use oauth_states::OAuthState;
pub use overview::ScenarioActivity;
pub use scenarios::{MAX_BLUEPRINT_BYTES, MAX_NAME_BYTES};
pub use sessions::ConsoleSession;
pub use triggers::MAX_TRIGGER_KEY_BYTES;
pub use types::*;

/// Shorthand for results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The file [`Store::open_sqlite`] creates inside its directory.
pub const SQLITE_FILE_NAME: &str = "switchyard.db";

/// The lock file an owning process ([`Store::open_sqlite_owned`]) holds in the data directory.
pub const SQLITE_LOCK_FILE_NAME: &str = "switchyard.lock";

/// How long a SQLite connection waits for the write lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// When SQLite makes a commit durable (`PRAGMA synchronous`; the WAL journal either way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SqliteSync {
    /// The WAL is synced at every commit: a committed write (an acknowledged webhook)
    /// survives a power loss or an operating-system crash. The default.
    #[default]
    Full,
    /// The WAL is synced only at checkpoints: faster commits; a crash of the process loses
    /// nothing, a power loss can lose the last commits before the checkpoint.
    Normal,
}

/// The durable store. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Store {
    pool: StorePool,
    /// SQLite's checkpointer connection ([`checkpoint_wal`]), closed by [`Store::close`].
    checkpointer: Option<SqlitePool>,
    /// Dropped with the last clone, which also ends the checkpointer.
    _alive: Arc<()>,
    /// The exclusive lock of an owning SQLite store: held until [`Store::close`] or until the
    /// last clone is dropped (or the process ends).
    owner_lock: Option<Arc<std::sync::Mutex<Option<File>>>>,
    /// The integrity check's last failure ([`Store::check_integrity`]).
    integrity: Arc<integrity::Integrity>,
}

/// The connection pool behind a [`Store`], exposed so that the job queue can LISTEN on
/// PostgreSQL and tests can look at rows the store's API does not read.
#[derive(Clone)]
pub enum StorePool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Which database a [`Store`] is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

impl fmt::Debug for Store {
    /// Names the backend only: connection options hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) `dir/switchyard.db` in WAL mode and applies migrations.
    ///
    /// A new `dir` is created owner-only (`0700`) and the database files are made `0600`
    /// (`files.rs`). Every connection gets `busy_timeout` 5 s, `synchronous=FULL` and foreign
    /// keys on; a new file gets `auto_vacuum=INCREMENTAL` before its first table, so that
    /// [`Store::maintain`] can give freed pages back to the file system.
    pub async fn open_sqlite(dir: &Path) -> Result<Store> {
        Store::open_sqlite_synced(dir, SqliteSync::default()).await
    }

    async fn open_sqlite_synced(dir: &Path, sync: SqliteSync) -> Result<Store> {
        files::ensure_data_dir(dir)?;
        let file = dir.join(SQLITE_FILE_NAME);
        files::ensure_database_file(&file)?;
        let options = SqliteConnectOptions::new().filename(file);
        Store::open_sqlite_with(options, sync).await
    }

    /// As [`Store::open_sqlite`], for the one process that runs executions on this data
    /// directory (`serve`, `worker`), with commits synced as `sync` says: first takes the
    /// exclusive lock of its database file ([`owner_lock_of`]: `dir/switchyard.lock`), and
    /// fails with [`StoreError::Locked`] naming `dir` when another process holds it; then
    /// checks the database's integrity ([`Store::check_integrity`], waiting up to
    /// [`STARTUP_CHECK_WAIT`]) and fails with [`StoreError::Damaged`] when it is damaged.
    pub async fn open_sqlite_owned(dir: &Path, sync: SqliteSync) -> Result<Store> {
        files::ensure_data_dir(dir)?;
        let lock = take_database_lock(&dir.join(SQLITE_FILE_NAME))?;
        let mut store = Store::open_sqlite_synced(dir, sync).await?;
        store.owner_lock = Some(Arc::new(std::sync::Mutex::new(Some(lock))));
        store.check_integrity(STARTUP_CHECK_WAIT).await?;
        Ok(store)
    }

    /// As [`Store::connect`], for the one process that runs executions on the database: on
    /// SQLite (`sqlite://PATH`, commits synced as `sync` says) first takes the exclusive lock
    /// of the database file — the same lock as [`Store::open_sqlite_owned`] for the same file
    /// however the URL spells it ([`owner_lock_of`]) — and then checks the database's
    /// integrity; PostgreSQL takes no lock (several processes may share it) and ignores `sync`.
    pub async fn connect_owned(url: &str, sync: SqliteSync) -> Result<Store> {
        let lock = if url.starts_with("sqlite:") && !url.contains(":memory:") {
            let options = sqlite_url_options(url)?;
            Some(take_database_lock(options.get_filename())?)
        } else {
            None
        };
        let mut store = Store::connect_synced(url, sync).await?;
        store.owner_lock = lock.map(|l| Arc::new(std::sync::Mutex::new(Some(l))));
        store.check_integrity(STARTUP_CHECK_WAIT).await?;
        Ok(store)
    }

    /// Connects to `sqlite://PATH` (created if missing, `0600`, commits `synchronous=FULL`)
    /// or `postgres://…` (`postgresql://` also works) and applies migrations.
    ///
    /// In-memory SQLite is refused: every pooled connection would see its own empty database.
    pub async fn connect(url: &str) -> Result<Store> {
        Store::connect_synced(url, SqliteSync::default()).await
    }

    async fn connect_synced(url: &str, sync: SqliteSync) -> Result<Store> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        match scheme {
            "sqlite" => {
                if url.contains(":memory:") || url.contains("mode=memory") {
                    return Err(StoreError::InvalidInput {
                        what: "database URL",
                        reason: "in-memory SQLite is not supported; give a file path".into(),
                    });
                }
                let options = sqlite_url_options(url)?;
                files::ensure_database_file(options.get_filename())?;
                Store::open_sqlite_with(options, sync).await
            }
            "postgres" | "postgresql" => {
                let options =
                    PgConnectOptions::from_str(url).map_err(|_| StoreError::InvalidInput {
                        what: "database URL",
                        reason: "not a valid postgres:// URL".into(),
                    })?;
                let pool = PgPoolOptions::new()
                    .max_connections(10)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(quiet_statements(options.application_name("switchyard")))
                    .await?;
                migrate::run_postgres(&pool).await?;
                Ok(Store {
                    pool: StorePool::Postgres(pool),
                    checkpointer: None,
                    _alive: Arc::new(()),
                    owner_lock: None,
                    integrity: Default::default(),
                })
            }
            _ => Err(StoreError::UnsupportedUrl {
                scheme: scheme.chars().take(20).collect(),
            }),
        }
    }

    /// Opens the SQLite database of `options`; damage met on the way (a bad header, a
    /// truncated file, an unreadable schema) is [`StoreError::Damaged`] naming the file.
    async fn open_sqlite_with(options: SqliteConnectOptions, sync: SqliteSync) -> Result<Store> {
        let file = options.get_filename().to_path_buf();
        integrity::check_header(&file)?;
        Store::open_sqlite_unchecked(options, sync)
            .await
            .map_err(|e| integrity::damage_when_opening(&file, e))
    }

    async fn open_sqlite_unchecked(
        options: SqliteConnectOptions,
        sync: SqliteSync,
    ) -> Result<Store> {
        let options = options
            .create_if_missing(true)
            // `auto_vacuum` is applied before `journal_mode` and so before the first table.
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL syncs the WAL at every commit: the writer's group commit makes that one
            // sync per batch of webhooks (measured in `docs/performance.md`).
            .synchronous(match sync {
                SqliteSync::Full => SqliteSynchronous::Full,
                SqliteSync::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            // Commits never checkpoint (a checkpoint syncs the file, stalling the one
            // writer); [`checkpoint_wal`] does it on a connection of its own, and the
            // WAL file is cut back to this size after each reset.
            .pragma("wal_autocheckpoint", "0")
            .pragma("journal_size_limit", "67108864")
            // Room for every shape of the multi-row statements ([`pow2_chunks`]) besides the
            // single-row ones.
            .statement_cache_capacity(256);
        let options = quiet_statements(options);
        let mut conn = sqlx::ConnectOptions::connect(&options).await?;
        maintenance::ensure_incremental_vacuum(&mut conn).await?;
        sqlx::Connection::close(conn).await?;
        // One connection: SQLite has one writer at a time, and queueing statements in the
        // pool is far cheaper than connections contending for the file lock (whose busy
        // handler sleeps).
        // Every commit on the writer wakes an idle checkpointer ([`checkpoint_wal`]).
        let committed = Arc::new(tokio::sync::Notify::new());
        let hook = committed.clone();
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            // A ping per acquire is a round trip to the connection's thread for every
            // statement; a broken SQLite connection shows on the statement itself anyway.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                let hook = hook.clone();
                Box::pin(async move {
                    conn.lock_handle().await?.set_commit_hook(move || {
                        hook.notify_one();
                        true // `false` would turn the commit into a rollback
                    });
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await?;
        migrate::run_sqlite(&pool).await?;
        let alive = Arc::new(());
        // The checkpointer's connection only checkpoints; it opens at its first checkpoint.
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options);
        tokio::spawn(checkpoint_wal(
            checkpointer.clone(),
            pool.clone(),
            committed,
            Arc::downgrade(&alive),
        ));
        Ok(Store {
            pool: StorePool::Sqlite(pool),
            checkpointer: Some(checkpointer),
            _alive: alive,
            owner_lock: None,
            integrity: Default::default(),
        })
    }

    /// The connection pool, for the job queue to share.
    pub fn pool(&self) -> &StorePool {
        &self.pool
    }

    /// The SQLite pool, when the store is on SQLite.
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.pool {
            StorePool::Sqlite(pool) => Some(pool),
            StorePool::Postgres(_) => None,
        }
    }

    /// The PostgreSQL pool, when the store is on PostgreSQL.
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.pool {
            StorePool::Postgres(pool) => Some(pool),
            StorePool::Sqlite(_) => None,
        }
    }

    /// Which database this store is on.
    pub fn backend(&self) -> Backend {
        match &self.pool {
            StorePool::Sqlite(_) => Backend::Sqlite,
            StorePool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes the pool: waits for connections in use to be returned, then closes them all.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.close().await;
        }
        // The database is closed: another process may own it now.
        if let Some(lock) = &self.owner_lock {
            drop(lock.lock().map(|mut held| held.take()));
        }
    }
}

/// sqlx logs every statement at `debug` and a slow one (over a second) at `warn` with its
/// whole SQL text, many lines into the operator's log. Both go to `debug`: a slow statement
/// is the store's concern, its text is seen with `SWITCHYARD_LOG=sqlx=debug`.
fn quiet_statements<O: sqlx::ConnectOptions>(options: O) -> O {
    options
        .log_statements(log::LevelFilter::Debug)
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1))
}

/// The connection options of a `sqlite://` URL.
fn sqlite_url_options(url: &str) -> Result<SqliteConnectOptions> {
    SqliteConnectOptions::from_str(url).map_err(|_| StoreError::InvalidInput {
        what: "database URL",
        reason: "not a valid sqlite:// URL".into(),
    })
}

/// The owner lock of one SQLite database file ([`owner_lock_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerLock {
    /// The lock file.
    pub lock_file: PathBuf,
    /// How a refusal names the database: "data directory" or "database".
    pub what: &'static str,
    /// The data directory (for the default file `switchyard.db`) or the database file,
    /// resolved: what a refusal names.
    pub shown: PathBuf,
}

/// Where the owner lock of the SQLite database file `file` is, and how a refusal names the
/// database: one answer for one file however it was spelled. The directory (and the file,
/// when it is a symlink) is resolved to its canonical path; the lock is
/// [`SQLITE_LOCK_FILE_NAME`] next to the default file [`SQLITE_FILE_NAME`] (the name the data
/// directory's lock has always had) and `FILE.lock` next to any other file. The directory
/// must exist.
pub fn owner_lock_of(file: &Path) -> Result<OwnerLock> {
    let resolved = match std::fs::canonicalize(file) {
        Ok(resolved) => resolved,
        // Not created yet: its directory exists and is resolved.
        Err(_) => {
            let dir = match file.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            let dir = std::fs::canonicalize(dir).map_err(|source| StoreError::Io {
                action: "find the database's directory",
                source,
            })?;
            let name = file.file_name().ok_or_else(|| StoreError::InvalidInput {
                what: "database path",
                reason: "it names no file".into(),
            })?;
            dir.join(name)
        }
    };
    let dir = resolved.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = resolved.file_name().unwrap_or_default();
    Ok(if name == SQLITE_FILE_NAME {
        OwnerLock {
            lock_file: dir.join(SQLITE_LOCK_FILE_NAME),
            what: "data directory",
            shown: dir,
        }
    } else {
        let mut lock = name.to_owned();
        lock.push(".lock");
        OwnerLock {
            lock_file: dir.join(lock),
            what: "database",
            shown: resolved,
        }
    })
}

/// Takes the owner lock of the SQLite database file `file` ([`owner_lock_of`]).
fn take_database_lock(file: &Path) -> Result<File> {
    let owner = owner_lock_of(file)?;
    take_owner_lock(&owner.lock_file, owner.what, &owner.shown)
}

/// Takes the exclusive, non-blocking OS lock (`flock`) on `lock_path`, created if missing,
/// and writes this process's id into it (for whoever is refused). [`StoreError::Locked`]
/// names `shown` (the data directory or database file, a `what`) when another process holds
/// the lock.
fn take_owner_lock(lock_path: &Path, what: &'static str, shown: &Path) -> Result<File> {
    use std::io::{Read, Seek, Write};
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, DATABASE_FILE_MODE);
    let mut file = options.open(lock_path).map_err(|source| StoreError::Io {
        action: "open the data directory's lock file",
        source,
    })?;
    files::restrict_lock_file(&file, lock_path);
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(StoreError::Locked {
                what,
                path: shown.to_path_buf(),
                holder: if !holder.is_empty() && holder.bytes().all(|b| b.is_ascii_digit()) {
                    format!(" (process {holder})")
                } else {
                    String::new()
                },
            });
        }
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(StoreError::Io {
                action: "lock the data directory",
                source,
            });
        }
    }
    // Informational only: the lock, not this text, decides who owns the database.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(file)
}

/// What differs between the two dialects beyond what [`on_pool!`] hides.
trait Dialect: Sized + sqlx::Database {
    /// Appended to a `SELECT` that reads a row the transaction is about to rewrite.
    /// SQLite needs nothing: a write transaction holds the database lock from its start.
    const FOR_UPDATE: &'static str;

    /// Whether multi-row statements take plain `?` parameters ([`positional_in`]).
    const POSITIONAL: bool;

    /// Starts a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so a read followed by a write cannot fail with `SQLITE_BUSY`
    /// halfway; the wait for the lock is bounded by `busy_timeout`.
    fn begin_write(
        pool: &sqlx::Pool<Self>,
    ) -> impl std::future::Future<Output = Result<Transaction<'static, Self>, sqlx::Error>> + Send;
}

impl Dialect for Sqlite {
    const FOR_UPDATE: &'static str = "";
    const POSITIONAL: bool = true;

    fn begin_write(
        pool: &sqlx::Pool<Self>,
    ) -> impl std::future::Future<Output = Result<Transaction<'static, Self>, sqlx::Error>> + Send
    {
        pool.begin_with("BEGIN IMMEDIATE")
    }
}

impl Dialect for Postgres {
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const POSITIONAL: bool = false;

    fn begin_write(
        pool: &sqlx::Pool<Self>,
    ) -> impl std::future::Future<Output = Result<Transaction<'static, Self>, sqlx::Error>> + Send
    {
        pool.begin()
    }
}

/// Starts a write transaction on `pool` (see [`Dialect::begin_write`]).
async fn begin_write<DB: Dialect>(
    pool: &sqlx::Pool<DB>,
) -> Result<Transaction<'static, DB>, sqlx::Error> {
    DB::begin_write(pool).await
}

/// The `FOR UPDATE` clause for the dialect of `pool`.
fn for_update<DB: Dialect>(_pool: &sqlx::Pool<DB>) -> &'static str {
    DB::FOR_UPDATE
}

/// The `FOR UPDATE` clause for the dialect of transaction `tx`.
fn for_update_in<DB: Dialect>(_tx: &Transaction<'_, DB>) -> &'static str {
    DB::FOR_UPDATE
}

/// How often the SQLite checkpointer copies the WAL into the database file while there is
/// something to copy, and how long at most it waits for the next commit after finding nothing.
const CHECKPOINT_BUSY: Duration = Duration::from_millis(500);
const CHECKPOINT_IDLE: Duration = Duration::from_secs(5);

/// WAL frames (pages) past which the checkpointer makes the writer start the WAL over.
const WAL_RESTART_FRAMES: i64 = 16_384;

/// Copies the WAL into the database file on a connection of its own while the writer goes on
/// appending: `PASSIVE` never waits for or blocks the writer or readers, so the file syncs a
/// checkpoint needs stay off the path of every commit. Under steady writes a passive
/// checkpoint never reaches the end of the WAL, which would then only grow (and every
/// lookup in it slow down): once it passes [`WAL_RESTART_FRAMES`], a `RESTART` checkpoint has
/// the writer start the WAL over (`journal_size_limit` then trims the file). That one runs on
/// the store's own connection (`writer`), taking its turn between transactions — on a
/// connection of its own it would lose every race for the write lock to a busy writer — and
/// after the passive one has little left to copy.
///
/// While idle it waits for the writer's next commit (`committed`, notified by the
/// connection's commit hook), not for a fixed time: a burst of writes after a quiet spell
/// is checkpointed from its first commit on, so the WAL grows by at most what the writer
/// appends in one [`CHECKPOINT_BUSY`] before it is restarted. Ends when the last [`Store`]
/// clone is dropped or [`Store::close`] is called (an idle wait ends after
/// [`CHECKPOINT_IDLE`] to notice that).
async fn checkpoint_wal(
    pool: SqlitePool,
    writer: SqlitePool,
    committed: Arc<tokio::sync::Notify>,
    alive: std::sync::Weak<()>,
) {
    let mut next = Next::Busy;
    let mut last = (-1, -1);
    loop {
        match next {
            Next::Busy => tokio::time::sleep(CHECKPOINT_BUSY).await,
            Next::Quiet => {
                let _ = tokio::time::timeout(CHECKPOINT_IDLE, committed.notified()).await;
            }
            Next::Failed => tokio::time::sleep(CHECKPOINT_IDLE).await,
        }
        if alive.upgrade().is_none() || pool.is_closed() || writer.is_closed() {
            break;
        }
        let mut result: Result<(i64, i64, i64), sqlx::Error> =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&pool)
                .await;
        if let Ok((_, frames, _)) = result
            && frames >= WAL_RESTART_FRAMES
        {
            result = sqlx::query_as("PRAGMA wal_checkpoint(RESTART)")
                .fetch_one(&writer)
                .await;
        }
        next = match result {
            // Frames in the WAL and frames copied: all copied and nothing new since the last
            // look means nobody is writing.
            Ok((_, frames, copied)) => {
                let quiet = copied >= frames && (frames, copied) == last;
                last = (frames, copied);
                if quiet { Next::Quiet } else { Next::Busy }
            }
            Err(e) => {
                tracing::warn!(error = %e, "SQLite WAL checkpoint failed");
                Next::Failed
            }
        };
    }
    pool.close().await;

    /// What the checkpointer waits for before its next look.
    enum Next {
        /// [`CHECKPOINT_BUSY`]: the writer is appending.
        Busy,
        /// The writer's next commit (at most [`CHECKPOINT_IDLE`]).
        Quiet,
        /// [`CHECKPOINT_IDLE`]: the last checkpoint failed; do not retry at every commit.
        Failed,
    }
}

/// Splits `items` into runs whose lengths are powers of two, longest first, none longer
/// than `max`: a multi-row statement then comes in a few shapes, which stay prepared in the
/// connection's statement cache, instead of one shape (parsed again) per batch size.
pub(crate) fn pow2_chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let n = rest.len().min(max);
        if n == 0 {
            return None;
        }
        let (chunk, tail) = rest.split_at(1 << n.ilog2());
        rest = tail;
        Some(chunk)
    })
}

/// `sql`, written with `$1`, `$2`, … in order, each once, as the backend of `tx` takes it
/// best: unchanged on PostgreSQL; on SQLite with plain `?`, because SQLite looks numbered
/// parameters up by name, one linear scan per parameter at parse time and again at every
/// bind (quadratic in a multi-row statement's parameters).
fn positional_in<DB: Dialect>(_tx: &Transaction<'_, DB>, sql: String) -> String {
    if !DB::POSITIONAL {
        return sql;
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut expected = 1u32;
    while let Some(c) = chars.next() {
        if c != '$' || !chars.peek().is_some_and(char::is_ascii_digit) {
            out.push(c);
            continue;
        }
        let mut number = 0u32;
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            number = number * 10 + d;
            chars.next();
        }
        debug_assert_eq!(number, expected, "parameters out of order in {sql}");
        expected += 1;
        out.push('?');
    }
    out
}

/// `rows` copies of a row template, joined by `, `, for a multi-row `VALUES`: each `?` becomes
/// the next parameter (`$first`, `$first + 1`, …), so the template holds no `?` otherwise.
pub(crate) fn values_rows(template: &str, rows: usize, first: usize) -> String {
    let mut sql = String::new();
    let mut next = first;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        for c in template.chars() {
            if c == '?' {
                sql.push_str(&format!("${next}"));
                next += 1;
            } else {
                sql.push(c);
            }
        }
    }
    sql
}

/// Now, in UTC milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A new 128-bit id, time-ordered (UUIDv7): 32 lowercase hex characters. Not a secret (hook ids,
/// which are, come from [`new_hook_id`]).
pub fn new_id() -> String {
    // Time-ordered (UUIDv7: milliseconds, then random bits), so new rows land at the end of
    // every index keyed by id instead of on a random page each: fewer pages written per
    // commit, and the ones written stay in cache.
    uuid::Uuid::now_v7().simple().to_string()
}

/// A new 256-bit hook id: 64 lowercase hex characters.
fn new_hook_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Whether `s` can be an id this store generated (32 or 64 lowercase hex characters).
/// Lookups with anything else are answered "not found" without reaching the database,
/// which also keeps NUL bytes and other text PostgreSQL refuses away from it.
fn is_id(s: &str) -> bool {
    (s.len() == 32 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Refuses text PostgreSQL cannot store (NUL) and empty or oversized values, so both backends
/// accept and refuse the same input.
fn check_text(what: &'static str, value: &str, max_len: usize) -> Result<()> {
    let reason = if value.is_empty() {
        "must not be empty".to_string()
    } else if value.len() > max_len {
        format!("longer than {max_len} bytes")
    } else if value.contains('\0') {
        "contains a NUL character".to_string()
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidInput { what, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn one_database_file_has_one_owner_lock_however_it_is_spelled() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, root.path().join("link")).unwrap();
        let resolved = real.canonicalize().unwrap();
        let expected = OwnerLock {
            lock_file: resolved.join(SQLITE_LOCK_FILE_NAME),
            what: "data directory",
            shown: resolved.clone(),
        };
        for spelling in ["real", "link", "link/../real", "real/./"] {
            let file = root.path().join(spelling).join(SQLITE_FILE_NAME);
            assert_eq!(owner_lock_of(&file).unwrap(), expected, "{spelling}");
        }
        // The file of a URL with query parameters, as the store reads it.
        let url = format!(
            "sqlite://{}/link/{SQLITE_FILE_NAME}?mode=rwc",
            root.path().display()
        );
        let options = sqlite_url_options(&url).unwrap();
        assert_eq!(owner_lock_of(options.get_filename()).unwrap(), expected);
        // A file of another name: its own lock next to it, the file named.
        let other = owner_lock_of(&root.path().join("link").join("jobs.db")).unwrap();
        assert_eq!(other.lock_file, resolved.join("jobs.db.lock"));
        assert_eq!(
            (other.what, other.shown),
            ("database", resolved.join("jobs.db"))
        );
        // A directory that does not exist is an error, not a second lock somewhere else.
        assert!(owner_lock_of(&root.path().join("missing").join(SQLITE_FILE_NAME)).is_err());
    }

    #[test]
    fn values_rows_numbers_parameters() {
        assert_eq!(values_rows("(?, ?)", 0, 2), "");
        assert_eq!(
            values_rows("(?, $1, ?)", 2, 2),
            "($2, $1, $3), ($4, $1, $5)"
        );
        assert_eq!(values_rows("(?)", 3, 5), "($5), ($6), ($7)");
    }

    #[test]
    fn pow2_chunks_come_in_few_shapes() {
        let items: Vec<u32> = (0..203).collect();
        let sizes: Vec<usize> = pow2_chunks(&items, 64).map(<[u32]>::len).collect();
        assert_eq!(sizes, [64, 64, 64, 8, 2, 1]);
        let joined: Vec<u32> = pow2_chunks(&items, 64).flatten().copied().collect();
        assert_eq!(joined, items);
        assert_eq!(pow2_chunks(&items[..0], 64).count(), 0);
        assert_eq!(
            pow2_chunks(&items[..7], 100)
                .map(<[u32]>::len)
                .collect::<Vec<_>>(),
            [4, 2, 1]
        );
    }

    #[tokio::test]
    async fn positional_parameters_only_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path()).await.unwrap();
        let StorePool::Sqlite(pool) = store.pool() else {
            panic!("a SQLite store")
        };
        let tx = pool.begin().await.unwrap();
        let sql = "SELECT $1, '$x', $2 WHERE a = $3 AND b = $10".replace("$10", "$4");
        assert_eq!(
            positional_in(&tx, sql),
            "SELECT ?, '$x', ? WHERE a = ? AND b = ?"
        );
    }

    #[test]
    fn generated_ids_are_ids() {
        let id = new_id();
        assert_eq!(id.len(), 32);
        assert!(is_id(&id), "{id}");
        let hook = new_hook_id();
        assert_eq!(hook.len(), 64);
        assert!(is_id(&hook), "{hook}");
        assert_ne!(new_id(), new_id());
        // Time-ordered, so rows keyed by id are appended to their indexes.
        let ids: Vec<String> = (0..1000).map(|_| new_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in creation order");
    }

    #[test]
    fn is_id_rejects_other_text() {
        for s in [
            "",
            "abc",
            "0123456789ABCDEF0123456789abcdef",
            "0123456789abcdef0123456789abcde\0",
            "0123456789abcdef0123456789abcdeg",
            "0123456789abcdef0123456789abcdef0",
        ] {
            assert!(!is_id(s), "{s:?}");
        }
    }

    #[test]
    fn check_text_refuses_nul_empty_and_long() {
        assert!(check_text("name", "ok", 10).is_ok());
        assert!(check_text("name", "", 10).is_err());
        assert!(check_text("name", "a\0b", 10).is_err());
        let err = check_text("name", "abcdefghijk", 10).unwrap_err();
        assert!(err.to_string().contains("longer than 10"), "{err}");
    }

    #[tokio::test]
    async fn connect_refuses_unknown_schemes_and_memory() {
        let err = Store::connect("mysql://user:secret@host/db")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
        let err = Store::connect("sqlite::memory:").await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput { .. }), "{err}");
    }

    /// Compile-time check that every store future is `Send` when awaited inside another future,
    /// as axum handlers and `tokio::spawn` require. (sqlx's `Acquire` bounds once broke this for
    /// the migrations; see `migrate.rs`.) Never called.
    #[allow(dead_code)]
    fn store_futures_are_send(s: Store, v: serde_json::Value) {
        fn send<F: std::future::Future + Send>(_: F) {}
        macro_rules! check {
            ($s:ident, $v:ident; $($call:expr;)+) => {$({
                let $s = $s.clone();
                #[allow(unused_variables)]
                let $v = $v.clone();
                send(async move {
                    let _ = $call.await;
                });
            })+};
        }
        fn outcome(v: &serde_json::Value) -> ExecutionOutcome<'_> {
            ExecutionOutcome {
                status: FinalStatus::Error,
                operations: 1,
                cycles: 1,
                report: Some(v),
                error: None,
                trigger: None,
            }
        }
        fn incomplete(v: &serde_json::Value) -> NewIncomplete<'_> {
            NewIncomplete {
                execution_id: "a",
                scenario_id: "b",
                version: 1,
                module_id: 1,
                bundle: v,
                error: None,
                retry: None,
                next_attempt_at: None,
            }
        }
        send(async { Store::open_sqlite(Path::new("x")).await.ok() });
        send(async { Store::connect("x").await.ok() });
        check! { s, v;
            s.create_scenario("a", "b");
            s.update_scenario("a", "b");
            s.rename_scenario("a", "b");
            s.get_scenario("a");
            s.get_version("a", 1);
            s.list_versions("a");
            s.list_scenarios();
            s.delete_scenario("a");
            s.set_active("a", true);
            s.ensure_hook("a", 1);
            s.retire_hooks("a", &[1]);
            s.get_hook("a");
            s.hooks_for("a");
            s.create_execution(NewExecution {
                scenario_id: "a",
                version: 1,
                source: ExecutionSource::Manual,
                payload: Some(&v),
            });
            s.claim_execution("a", "w", 3);
            s.heartbeat_execution("a", "w");
            s.finish_execution("a", outcome(&v));
            s.get_execution("a");
            s.list_executions(&ExecutionFilter::default());
            s.append_module_data("a", &[ModuleEntry { module_id: 1, output: &v }], 1);
            s.module_data("a");
            s.module_page("a", 1, 0, 100);
            s.module_summaries("a");
            s.accept_delivery("a", Some("k"), "b", 1, &v);
            s.trigger_state("a", "k");
            s.commit_trigger_state("a", "k", Some(&v), &[], 1);
            s.reset_trigger_state("a", "k");
            s.claim_tick("a", 1);
            s.claim_tick_execution("a", 1, 1, Some(&v));
            s.insert_incomplete(incomplete(&v));
            s.get_incomplete("a");
            s.list_incomplete("a", None, 1);
            s.due_incomplete(0, 1);
            s.bump_incomplete("a", 0, None);
            s.resolve_incomplete("a");
            s.fail_incomplete("a");
            s.prune(None, None, 1);
            s.maintain();
            s.count_executions_by_status();
            s.api_token_hash();
            s.set_api_token_hash("a");
            s.runnable_executions(1, 0);
            s.close();
        }
    }
}
