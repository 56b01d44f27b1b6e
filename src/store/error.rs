//! [`StoreError`], the one error type of the store. Messages name what was involved (a kind
//! of record and its id, a reason) and never a secret, a URL or a stored document.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist. `id` is the id the caller gave, or a description for
    /// records whose id is a secret (hooks).
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },

    /// The operation clashes with what is stored (a uniqueness rule, a concurrent writer).
    #[error("conflict on {what}: {reason}")]
    Conflict { what: &'static str, reason: String },

    /// The caller passed a value the store refuses on every backend.
    #[error("invalid {what}: {reason}")]
    InvalidInput { what: &'static str, reason: String },

    /// A stored value cannot be read back as its type (an unknown status, a negative count).
    #[error("unreadable {what} in the database: {reason}")]
    Corrupt { what: &'static str, reason: String },

    /// The database URL has a scheme the store does not handle. Only the scheme is kept.
    #[error("unsupported database URL scheme {scheme:?}: expected sqlite:// or postgres://")]
    UnsupportedUrl { scheme: String },

    /// A file-system operation around the database failed.
    #[error("cannot {action}: {source}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// Another process owns the SQLite database (see [`super::Store::open_sqlite_owned`]).
    /// However the database was named (`--data-dir D`, `sqlite://D/switchyard.db`, relative,
    /// through a symlink, with query parameters), `path` is the one resolved spelling.
    #[error(
        "the SQLite {what} {} is already used by another Switchyard process{holder} \
         (serve or worker); stop that process first, or use PostgreSQL (--database-url) to run \
         several processes on one database",
        path.display()
    )]
    Locked {
        /// "data directory" for the default database file `switchyard.db` (then `path` is
        /// its directory), else "database" (then `path` is the file).
        what: &'static str,
        /// The data directory or database file, symlinks resolved.
        path: std::path::PathBuf,
        /// ` (process PID)` when the owner wrote its id into the lock file, else empty.
        holder: String,
    },

    /// The SQLite database is damaged: its integrity check failed (see
    /// [`super::Store::check_integrity`]), or opening it met the damage first (a bad header,
    /// a truncated file, an unreadable schema). Never the driver's error alone: always the
    /// file and the way out.
    #[error(
        "the SQLite database {} is damaged ({found_by}: {problems}); Switchyard does \
         not run on a damaged database: restore it from a backup, or recover what it holds \
         with `sqlite3 {} .recover | sqlite3 recovered.db` and use that file",
        path.display(),
        path.display()
    )]
    Damaged {
        path: std::path::PathBuf,
        /// What found the damage: "PRAGMA quick_check", or "opening it".
        found_by: &'static str,
        problems: String,
    },

    /// Applying the schema migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    /// The database or the driver reported an error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether this is [`StoreError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    pub(crate) fn not_found(what: &'static str, id: &str) -> StoreError {
        // Anything that is not one of our ids is not repeated: messages carry no caller data.
        let id = if super::is_id(id) {
            id.to_string()
        } else {
            "(malformed id)".to_string()
        };
        StoreError::NotFound { what, id }
    }

    pub(crate) fn corrupt(what: &'static str, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            what,
            reason: reason.into(),
        }
    }
}

/// Whether `err` is a foreign-key violation: the row referred to does not exist.
pub(crate) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}
