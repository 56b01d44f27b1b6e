//! The store's health as `/health` reports it, and the quick integrity check of a SQLite
//! database.
//!
//! # Invariants
//! - A process that owns a SQLite database (`serve`, `worker`: [`super::Store::open_sqlite_owned`],
//!   [`super::Store::connect_owned`]) runs `PRAGMA quick_check` on a connection of its own
//!   before it starts, and waits for it up to [`STARTUP_CHECK_WAIT`]: a database that fails
//!   it is refused with [`StoreError::Damaged`], which says how to recover. `quick_check`
//!   reads every page (about 2 s per GB, measured in `docs/reliability.md`); a larger
//!   database is checked on in the background while the process runs, and a failure then
//!   makes [`Store::health`] report the store degraded (and is logged as an error).
//! - [`Store::health`] is cheap: one small read per call (a page or two of `executions`)
//!   and the check's last result. A read that meets a damaged page reports the store
//!   degraded too; a database that cannot be reached at all is [`StoreHealth::Unavailable`].
//! - Damage met before the check — while opening, setting up or migrating the database (a
//!   bad header, a truncated file, an unreadable schema) — is [`StoreError::Damaged`] too,
//!   with the same message, for every open ([`damage_when_opening`]).
//! - The check never runs on the store's own connection: on SQLite that one serves every
//!   request, and a check holds its connection for as long as it reads.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::sqlite::SqliteConnectOptions;

use super::{Result, Store, StoreError};

/// How long an owning open waits for the integrity check before letting it go on in the
/// background: about 1.5 GB of database at the measured 2 s per GB.
pub const STARTUP_CHECK_WAIT: Duration = Duration::from_secs(3);

/// Problems `quick_check` lists at most (its own limit): enough to say what is wrong.
const MAX_PROBLEMS: u32 = 5;

/// What `/health` says of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    Ok,
    /// The database answers, but is damaged: what failed (the integrity check, a read).
    Degraded(String),
    /// The database cannot be reached (for the log; not for clients).
    Unavailable(String),
}

/// The last integrity check's failure, shared by a store's clones.
#[derive(Debug, Default)]
pub(crate) struct Integrity(Mutex<Option<String>>);

impl Integrity {
    fn failed(&self, problems: &str) {
        if let Ok(mut failure) = self.0.lock() {
            *failure = Some(problems.to_string());
        }
    }

    fn failure(&self) -> Option<String> {
        self.0.lock().ok().and_then(|failure| failure.clone())
    }
}

impl Store {
    /// Runs SQLite's `PRAGMA quick_check` on a connection of its own and waits up to `wait`
    /// for it: [`StoreError::Damaged`] when it finds problems within that time; `Ok` when it
    /// finds none, is still reading (it goes on in the background, and a failure then shows
    /// in [`Store::health`] and the log) or cannot run (logged). Nothing to do on
    /// PostgreSQL: its server owns its files.
    pub async fn check_integrity(&self, wait: Duration) -> Result<()> {
        let Some(pool) = self.sqlite_pool() else {
            return Ok(());
        };
        let options = (*pool.connect_options()).clone();
        let file = options.get_filename().to_path_buf();
        let integrity = self.integrity.clone();
        let shown = file.clone();
        // The outcome goes to the waiter, or, once the waiter has gone on, to the log.
        let (report, outcome) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = quick_check(options).await;
            if let Ok(Some(problems)) = &result {
                integrity.failed(problems);
            }
            let Err(result) = report.send(result) else {
                return;
            };
            match result {
                Ok(None) => tracing::info!(
                    file = %shown.display(),
                    elapsed = ?started.elapsed(),
                    "integrity check passed"
                ),
                Ok(Some(problems)) => tracing::error!(
                    file = %shown.display(),
                    "the database failed its integrity check; /health reports the store \
                     degraded: {problems}"
                ),
                Err(e) => tracing::warn!(
                    file = %shown.display(),
                    error = %e,
                    "the integrity check could not run"
                ),
            }
        });
        let waited = Instant::now();
        match tokio::time::timeout(wait, outcome).await {
            Ok(Ok(Ok(None))) => {
                tracing::info!(
                    file = %file.display(),
                    elapsed = ?waited.elapsed(),
                    "integrity check passed"
                );
                Ok(())
            }
            Ok(Ok(Ok(Some(problems)))) => Err(StoreError::Damaged {
                path: file,
                found_by: "PRAGMA quick_check",
                problems,
            }),
            // Not a sign of damage: the store is used as it is, as without the check.
            Ok(Ok(Err(e))) => {
                tracing::warn!(file = %file.display(), error = %e, "the integrity check could not run");
                Ok(())
            }
            Ok(Err(_)) => {
                tracing::warn!(file = %file.display(), "the integrity check stopped");
                Ok(())
            }
            Err(_) => {
                tracing::info!(
                    file = %file.display(),
                    "the integrity check goes on in the background (/health reports the store \
                     degraded if it fails)"
                );
                Ok(())
            }
        }
    }

    /// The store's health for `/health`: the last integrity check's failure, else one small
    /// read.
    pub async fn health(&self) -> StoreHealth {
        if let Some(problems) = self.integrity.failure() {
            return StoreHealth::Degraded(format!("integrity check failed: {problems}"));
        }
        let probe: std::result::Result<Option<String>, sqlx::Error> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM executions LIMIT 1")
                .fetch_optional(pool)
                .await
        });
        match probe {
            Ok(_) => StoreHealth::Ok,
            Err(e) => match corruption(&e) {
                Some(message) => StoreHealth::Degraded(format!("database read failed: {message}")),
                None => StoreHealth::Unavailable(e.to_string()),
            },
        }
    }
}

/// `quick_check`'s problems on a connection of its own to the database of `options`, or
/// `None` when it finds none. A check that stops on a damaged page counts as one problem.
async fn quick_check(
    options: SqliteConnectOptions,
) -> std::result::Result<Option<String>, sqlx::Error> {
    let mut conn = sqlx::ConnectOptions::connect(&options).await?;
    let rows: std::result::Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(
        sqlx::AssertSqlSafe(format!("PRAGMA quick_check({MAX_PROBLEMS})")),
    )
    .fetch_all(&mut conn)
    .await;
    let _ = sqlx::Connection::close(conn).await;
    match rows {
        Ok(rows) if rows.len() == 1 && rows[0] == "ok" => Ok(None),
        Ok(rows) => Ok(Some(rows.join("; ").replace('\n', " "))),
        Err(e) => match corruption(&e) {
            Some(message) => Ok(Some(message)),
            None => Err(e),
        },
    }
}

/// The first bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Refuses an existing, non-empty `file` that does not start with SQLite's header: SQLite
/// itself takes a file shorter than a page for an empty database and would write a new one
/// over what is left. An empty file is a new database (its first pages may still be in the
/// WAL).
pub(crate) fn check_header(file: &std::path::Path) -> Result<()> {
    use std::io::Read;
    let Ok(mut opened) = std::fs::File::open(file) else {
        return Ok(());
    };
    let mut head = Vec::with_capacity(SQLITE_MAGIC.len());
    let read = (&mut opened)
        .take(SQLITE_MAGIC.len() as u64)
        .read_to_end(&mut head);
    match read {
        Ok(0) => Ok(()),
        Ok(_) if head.as_slice() == SQLITE_MAGIC => Ok(()),
        Ok(n) => Err(StoreError::Damaged {
            path: file.to_path_buf(),
            found_by: "opening it",
            problems: if n < SQLITE_MAGIC.len() {
                format!("the file is {n} bytes long, too short for SQLite's header")
            } else {
                "the file does not start with SQLite's header".into()
            },
        }),
        Err(_) => Ok(()),
    }
}

/// `error`, met while opening the SQLite database `file` (connecting, setting it up,
/// migrating it), as [`StoreError::Damaged`] when it says the database is damaged: the file
/// and the way out instead of the driver's error. Other errors are returned as they are.
pub(crate) fn damage_when_opening(file: &std::path::Path, error: StoreError) -> StoreError {
    use sqlx::migrate::MigrateError;
    let driver = match &error {
        StoreError::Database(e)
        | StoreError::Migrate(MigrateError::Execute(e))
        | StoreError::Migrate(MigrateError::ExecuteMigration(e, _)) => e,
        _ => return error,
    };
    match corruption(driver) {
        Some(problems) => StoreError::Damaged {
            path: file.to_path_buf(),
            found_by: "opening it",
            problems,
        },
        None => error,
    }
}

/// The database's own message when `e` says the database is damaged (SQLite
/// `SQLITE_CORRUPT`/`SQLITE_NOTADB`, PostgreSQL `XX001`/`XX002`).
pub(crate) fn corruption(e: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    let code = db.code()?;
    let damaged = match code.parse::<i64>() {
        // SQLite: the primary result code is the low byte of an extended one.
        Ok(n) => matches!(n & 0xff, 11 | 26),
        Err(_) => matches!(code.as_ref(), "XX001" | "XX002"),
    };
    damaged.then(|| db.message().to_string())
}
