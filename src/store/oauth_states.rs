//! Authorizations in progress: one row per `GET /oauth/start/…` until its callback comes back.
//! The row is found by the SHA-256 of the `state` the provider hands back (the state itself
//! lives only in the user's browser and the provider's redirect), holds the PKCE verifier
//! sealed by the `connections` layer, and is taken exactly once: [`Store::take_oauth_state`]
//! deletes and returns it in one statement, so a replayed or concurrent callback finds nothing.
//! Expired rows are refused like missing ones and swept on each insert. A row may name the app
//! connection the authorization makes (`app`, `connection_name`, migration 0011).

use sqlx::FromRow;

use super::error::StoreError;
use super::{Result, Store, check_text, now_ms};

/// An authorization in progress, as stored.
#[derive(Clone, FromRow, PartialEq, Eq)]
pub struct OAuthState {
    pub state_hash: String,
    /// The integration being connected.
    pub alias: String,
    /// The end user of a `user` integration's flow.
    pub subject: Option<String>,
    /// The app whose connection this authorization makes (an app's `oauth2` connection
    /// type); `None` for an integration's own connection.
    pub app: Option<String>,
    /// The name of that app connection.
    pub connection_name: Option<String>,
    pub key_id: String,
    /// The PKCE verifier, sealed under `key_id` with `state_hash` as the row id.
    pub sealed: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for OAuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthState")
            .field("alias", &self.alias)
            .field("subject", &self.subject)
            .field("app", &self.app)
            .field("connection_name", &self.connection_name)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Records an authorization in progress (and forgets the expired ones).
    pub async fn insert_oauth_state(&self, state: &OAuthState) -> Result<()> {
        check_text("integration alias", &state.alias, 200)?;
        if let Some(subject) = &state.subject {
            check_text("user", subject, 200)?;
        }
        if let Some(app) = &state.app {
            check_text("app", app, 200)?;
        }
        if let Some(name) = &state.connection_name {
            check_text("connection name", name, 200)?;
        }
        let now = now_ms();
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM oauth_states WHERE expires_at < $1")
                .bind(now)
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO oauth_states \
                 (state_hash, alias, subject, key_id, sealed, created_at, expires_at, app, \
                 connection_name) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&state.state_hash)
            .bind(&state.alias)
            .bind(&state.subject)
            .bind(&state.key_id)
            .bind(&state.sealed)
            .bind(state.created_at)
            .bind(state.expires_at)
            .bind(&state.app)
            .bind(&state.connection_name)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// Whether the authorization whose state hashes to `state_hash` is still waiting for its
    /// callback (not taken, not expired): what `connections authorize` watches.
    pub async fn oauth_state_pending(&self, state_hash: &str) -> Result<bool> {
        let found: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT expires_at FROM oauth_states WHERE state_hash = $1")
                .bind(state_hash)
                .fetch_optional(pool)
                .await?
        });
        Ok(found.is_some_and(|at| at >= now_ms()))
    }

    /// Takes the authorization whose state hashes to `state_hash`: returned once, then gone.
    /// `None` when there is none, or it has expired (it is removed all the same).
    pub async fn take_oauth_state(&self, state_hash: &str) -> Result<Option<OAuthState>> {
        if state_hash.len() != 64 || !state_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::InvalidInput {
                what: "state",
                reason: "expected the SHA-256 of a state, in hex".into(),
            });
        }
        let taken: Option<OAuthState> = on_pool!(self, pool => {
            sqlx::query_as(
                "DELETE FROM oauth_states WHERE state_hash = $1 \
                 RETURNING state_hash, alias, subject, key_id, sealed, created_at, expires_at, \
                 app, connection_name",
            )
            .bind(state_hash)
            .fetch_optional(pool)
            .await?
        });
        Ok(taken.filter(|s| s.expires_at >= now_ms()))
    }
}
