//! The schema migrations, embedded from `migrations/sqlite/` and `migrations/postgres/`
//! (identical file names, one dialect each) and applied when a store opens.
//!
//! The files are embedded with `include_str!`, so editing one rebuilds the crate (the
//! `sqlx::migrate!` macro needs a build script for that). A unit test checks that the lists
//! below match the folders. Applied versions are recorded in `_switchyard_migrations` (sqlx's
//! default `_sqlx_migrations` was apalis's, until migration 0013 dropped it with apalis's tables).

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, PgPool, SqlSafeStr, SqlitePool};

use super::{Result, StoreError};

/// The table that records applied migrations, on both backends.
pub const MIGRATIONS_TABLE: &str = "_switchyard_migrations";

/// `(file name, SQL)` of every SQLite migration, in order.
const SQLITE: &[(&str, &str)] = &[
    (
        "0001_store.sql",
        include_str!("../../migrations/sqlite/0001_store.sql"),
    ),
    (
        "0002_module_pages.sql",
        include_str!("../../migrations/sqlite/0002_module_pages.sql"),
    ),
    (
        "0003_connections.sql",
        include_str!("../../migrations/sqlite/0003_connections.sql"),
    ),
    (
        "0004_hook_attachments.sql",
        include_str!("../../migrations/sqlite/0004_hook_attachments.sql"),
    ),
    (
        "0005_datastores.sql",
        include_str!("../../migrations/sqlite/0005_datastores.sql"),
    ),
    (
        "0006_oauth.sql",
        include_str!("../../migrations/sqlite/0006_oauth.sql"),
    ),
    (
        "0007_console_sessions.sql",
        include_str!("../../migrations/sqlite/0007_console_sessions.sql"),
    ),
    (
        "0008_operation_inputs.sql",
        include_str!("../../migrations/sqlite/0008_operation_inputs.sql"),
    ),
    (
        "0010_called_executions.sql",
        include_str!("../../migrations/sqlite/0010_called_executions.sql"),
    ),
    (
        "0011_app_authorizations.sql",
        include_str!("../../migrations/sqlite/0011_app_authorizations.sql"),
    ),
    (
        "0012_parked_bundles.sql",
        include_str!("../../migrations/sqlite/0012_parked_bundles.sql"),
    ),
    (
        "0013_queue_owns_its_table.sql",
        include_str!("../../migrations/sqlite/0013_queue_owns_its_table.sql"),
    ),
    (
        "0015_deactivation_reason.sql",
        include_str!("../../migrations/sqlite/0015_deactivation_reason.sql"),
    ),
    (
        "0016_trigger_generation.sql",
        include_str!("../../migrations/sqlite/0016_trigger_generation.sql"),
    ),
    (
        "0017_booking_calendar.sql",
        include_str!("../../migrations/sqlite/0017_booking_calendar.sql"),
    ),
];

/// `(file name, SQL)` of every PostgreSQL migration, in order.
const POSTGRES: &[(&str, &str)] = &[
    (
        "0001_store.sql",
        include_str!("../../migrations/postgres/0001_store.sql"),
    ),
    (
        "0002_module_pages.sql",
        include_str!("../../migrations/postgres/0002_module_pages.sql"),
    ),
    (
        "0003_connections.sql",
        include_str!("../../migrations/postgres/0003_connections.sql"),
    ),
    (
        "0004_hook_attachments.sql",
        include_str!("../../migrations/postgres/0004_hook_attachments.sql"),
    ),
    (
        "0005_datastores.sql",
        include_str!("../../migrations/postgres/0005_datastores.sql"),
    ),
    (
        "0006_oauth.sql",
        include_str!("../../migrations/postgres/0006_oauth.sql"),
    ),
    (
        "0007_console_sessions.sql",
        include_str!("../../migrations/postgres/0007_console_sessions.sql"),
    ),
    (
        "0008_operation_inputs.sql",
        include_str!("../../migrations/postgres/0008_operation_inputs.sql"),
    ),
    (
        "0010_called_executions.sql",
        include_str!("../../migrations/postgres/0010_called_executions.sql"),
    ),
    (
        "0011_app_authorizations.sql",
        include_str!("../../migrations/postgres/0011_app_authorizations.sql"),
    ),
    (
        "0012_parked_bundles.sql",
        include_str!("../../migrations/postgres/0012_parked_bundles.sql"),
    ),
    (
        "0013_queue_owns_its_table.sql",
        include_str!("../../migrations/postgres/0013_queue_owns_its_table.sql"),
    ),
    (
        "0015_deactivation_reason.sql",
        include_str!("../../migrations/postgres/0015_deactivation_reason.sql"),
    ),
    (
        "0016_trigger_generation.sql",
        include_str!("../../migrations/postgres/0016_trigger_generation.sql"),
    ),
    (
        "0017_booking_calendar.sql",
        include_str!("../../migrations/postgres/0017_booking_calendar.sql"),
    ),
];

/// Builds a migrator from `VERSION_DESCRIPTION.sql` files.
fn migrator(files: &'static [(&'static str, &'static str)]) -> Result<Migrator> {
    let mut migrations = Vec::with_capacity(files.len());
    for (name, sql) in files {
        let stem = name.strip_suffix(".sql").unwrap_or(name);
        let (version, description) = stem.split_once('_').unwrap_or((stem, ""));
        let version: i64 = version.parse().map_err(|_| {
            StoreError::corrupt("migration", format!("{name}: no numeric version prefix"))
        })?;
        migrations.push(Migration::new(
            version,
            Cow::Owned(description.replace('_', " ")),
            MigrationType::Simple,
            AssertSqlSafe(*sql).into_sql_str(),
            false,
        ));
    }
    let mut migrator = Migrator::with_migrations(migrations);
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    Ok(migrator)
}

// `run_direct` (public but hidden in sqlx) instead of `run`: `run` goes through `Acquire`,
// whose higher-ranked bounds make the caller's future fail to prove `Send`, and every store
// future must be `Send` (axum handlers, `tokio::spawn`).

/// Applies the SQLite migrations inside one `BEGIN IMMEDIATE` transaction: two processes
/// opening a new file at once cannot both apply them (sqlx's migration lock is a no-op on
/// SQLite). Each migration runs in a savepoint of that transaction.
pub(crate) async fn run_sqlite(pool: &SqlitePool) -> Result<()> {
    let migrator = migrator(SQLITE)?;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    migrator.run_direct(None, &mut *tx, false).await?;
    tx.commit().await?;
    Ok(())
}

/// Applies the PostgreSQL migrations (sqlx serialises concurrent runs with an advisory lock).
pub(crate) async fn run_postgres(pool: &PgPool) -> Result<()> {
    let mut conn = pool.acquire().await?;
    migrator(POSTGRES)?
        .run_direct(None, &mut *conn, false)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn listing(dialect: &str) -> Vec<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dialect);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn both_dialects_have_the_same_files_and_all_are_embedded() {
        let sqlite = listing("sqlite");
        let postgres = listing("postgres");
        assert!(!sqlite.is_empty());
        assert_eq!(
            sqlite, postgres,
            "migrations/sqlite and migrations/postgres differ"
        );
        let embedded: Vec<String> = SQLITE.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(
            embedded, sqlite,
            "add new files to SQLITE in src/store/migrate.rs"
        );
        let embedded: Vec<String> = POSTGRES.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(
            embedded, postgres,
            "add new files to POSTGRES in src/store/migrate.rs"
        );
    }

    #[test]
    fn migrators_parse_versions_in_order() {
        for files in [SQLITE, POSTGRES] {
            let m = migrator(files).unwrap();
            let versions: Vec<i64> = m.iter().map(|m| m.version).collect();
            assert_eq!(versions.len(), files.len());
            assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
            assert_eq!(versions[0], 1);
        }
    }
}
