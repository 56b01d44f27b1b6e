//! Every backend a test should run on: a fresh SQLite file in a temporary directory always,
//! and PostgreSQL when `SWITCHYARD_TEST_DATABASE_URL` is set (`eval "$(.ci/postgres.sh)"`),
//! each test in its own freshly created database so tests run in parallel.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Once;

use switchyard::store::{Backend, SQLITE_FILE_NAME, Store};

const PG_URL_VAR: &str = "SWITCHYARD_TEST_DATABASE_URL";
static PG_NOTICE: Once = Once::new();

/// One database for one test on one backend.
pub struct TestDb {
    pub backend: Backend,
    pub store: Store,
    /// The SQLite directory (kept alive for the test) or the PostgreSQL URL of the test's own
    /// database, to open more pools on the same database.
    pub place: Place,
}

pub enum Place {
    /// The directory; the `TempDir` itself stays with `each_backend` until the test ends.
    Sqlite(PathBuf),
    Postgres(String),
}

impl TestDb {
    /// Another store on the same database, with its own pool (like another process).
    pub async fn another_store(&self) -> Store {
        match &self.place {
            Place::Sqlite(dir) => Store::open_sqlite(dir).await.expect("open sqlite"),
            Place::Postgres(url) => Store::connect(url).await.expect("connect postgres"),
        }
    }

    pub fn sqlite_file(&self) -> Option<PathBuf> {
        match &self.place {
            Place::Sqlite(dir) => Some(dir.join(SQLITE_FILE_NAME)),
            Place::Postgres(_) => None,
        }
    }
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let prefix = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{prefix}/{db}?{q}"),
        None => format!("{prefix}/{db}"),
    }
}

/// A PostgreSQL database created for one test.
pub struct PgTestDatabase {
    /// `SWITCHYARD_TEST_DATABASE_URL`: the server, to drop the database from afterwards.
    pub admin_url: String,
    pub name: String,
    pub url: String,
}

/// Creates a fresh database named `{prefix}_{random}` on the server of
/// `SWITCHYARD_TEST_DATABASE_URL`; `None`, after printing a notice once per test binary, when
/// the variable is not set.
pub async fn create_pg_database(prefix: &str) -> Option<PgTestDatabase> {
    let Ok(admin_url) = std::env::var(PG_URL_VAR) else {
        PG_NOTICE.call_once(|| {
            // Written to the real stderr, not the test's captured output, so it is seen.
            let _ = writeln!(
                std::io::stderr(),
                "PostgreSQL tests skipped: {PG_URL_VAR} not set (see .ci/postgres.sh)"
            );
        });
        return None;
    };
    let admin = sqlx::PgPool::connect(&admin_url)
        .await
        .expect("connect to SWITCHYARD_TEST_DATABASE_URL");
    // The random end of an id: its start is the clock.
    let name = format!("{prefix}_{}", &switchyard::store::new_id()[16..]);
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&admin)
        .await
        .expect("create test database (the user needs CREATEDB)");
    admin.close().await;
    let url = with_database(&admin_url, &name);
    Some(PgTestDatabase {
        admin_url,
        name,
        url,
    })
}

/// Drops test database `name` on the server of `admin_url`. An autovacuum worker on it runs as
/// the superuser, whom `WITH (FORCE)` may not end for a plain user (42501): that is waited out,
/// trying again for up to 5 s.
pub async fn drop_pg_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let admin = sqlx::PgPool::connect(admin_url).await?;
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    let mut tries = 0;
    let dropped = loop {
        match sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&admin)
            .await
        {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") && tries < 25 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            other => break other.map(|_| ()),
        }
    };
    admin.close().await;
    dropped
}

/// Runs `test` on a fresh SQLite store, then on a fresh PostgreSQL database when
/// `SWITCHYARD_TEST_DATABASE_URL` is set. A failure names the backend.
pub async fn each_backend<F, Fut>(test: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(dir.path()).await.expect("open sqlite");
    let db = TestDb {
        backend: Backend::Sqlite,
        store,
        place: Place::Sqlite(dir.path().to_path_buf()),
    };
    let outcome = tokio::spawn(test(db)).await;
    drop(dir);
    if let Err(e) = outcome {
        eprintln!("test failed on SQLite");
        std::panic::resume_unwind(e.into_panic());
    }

    let Some(PgTestDatabase {
        admin_url,
        name,
        url,
    }) = create_pg_database("switchyard_test").await
    else {
        return;
    };
    let store = Store::connect(&url).await.expect("connect test database");
    let db = TestDb {
        backend: Backend::Postgres,
        store: store.clone(),
        place: Place::Postgres(url),
    };
    let outcome = tokio::spawn(test(db)).await;
    store.close().await;
    drop_pg_database(&admin_url, &name)
        .await
        .expect("drop test database");
    if let Err(e) = outcome {
        eprintln!("test failed on PostgreSQL");
        std::panic::resume_unwind(e.into_panic());
    }
}
