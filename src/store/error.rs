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
    #[error(
        "the SQLite data directory {} is already used by another Switchyard process{holder} \
         (serve or worker); stop that process first, or use PostgreSQL (--database-url) to run \
         several processes on one database",
        path.display()
    )]
    Locked {
        /// The data directory (or the database file of a `sqlite://` URL).
        path: std::path::PathBuf,
        /// ` (process PID)` when the owner wrote its id into the lock file, else empty.
        holder: String,
    },

    /// The SQLite database failed its integrity check (see [`super::Store::check_integrity`]).
    #[error(
        "the SQLite database {} is damaged (PRAGMA quick_check: {problems}); Switchyard does \
         not run on a damaged database: restore it from a backup, or recover what it holds \
         with `sqlite3 {} .recover | sqlite3 recovered.db` and use that file",
        path.display(),
        path.display()
    )]
    Damaged {
        path: std::path::PathBuf,
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
