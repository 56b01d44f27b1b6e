//! The web console's sign-in sessions (`console_sessions`). A session is found by the SHA-256
//! of its id (the id itself lives only in the browser's cookie), carries the CSRF token every
//! state-changing form of that session must send back, and expires: an expired row is refused
//! like a missing one, and expired rows are swept on each insert.

use sqlx::FromRow;

use super::error::StoreError;
use super::{Result, Store, now_ms};

/// A signed-in console session, as stored.
#[derive(Clone, FromRow, PartialEq, Eq)]
pub struct ConsoleSession {
    /// Hex SHA-256 of the session id.
    pub id_sha256: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for ConsoleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSession")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

fn check_hash(id_sha256: &str) -> Result<()> {
    if id_sha256.len() != 64 || !id_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::InvalidInput {
            what: "session",
            reason: "expected the SHA-256 of a session id, in hex".into(),
        });
    }
    Ok(())
}

impl Store {
    /// Records a new session (and forgets the expired ones).
    pub async fn insert_console_session(&self, session: &ConsoleSession) -> Result<()> {
        check_hash(&session.id_sha256)?;
        let now = now_ms();
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1")
                .bind(now)
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO console_sessions (id_sha256, csrf_token, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&session.id_sha256)
            .bind(&session.csrf_token)
            .bind(session.created_at)
            .bind(session.expires_at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// The live session whose id hashes to `id_sha256`; `None` when there is none or it has
    /// expired.
    pub async fn console_session(&self, id_sha256: &str) -> Result<Option<ConsoleSession>> {
        check_hash(id_sha256)?;
        let found: Option<ConsoleSession> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id_sha256, csrf_token, created_at, expires_at FROM console_sessions \
                 WHERE id_sha256 = $1",
            )
            .bind(id_sha256)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.filter(|s| s.expires_at >= now_ms()))
    }

    /// Ends a session (signing out); whether there was one.
    pub async fn delete_console_session(&self, id_sha256: &str) -> Result<bool> {
        check_hash(id_sha256)?;
        let deleted = on_pool!(self, pool => {
            sqlx::query("DELETE FROM console_sessions WHERE id_sha256 = $1")
                .bind(id_sha256)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted > 0)
    }
}
