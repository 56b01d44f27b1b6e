//! Stored connections: one row per connection, its metadata in plain columns (id, name, app,
//! kind, the id of the master key that sealed it, times) and its values as one sealed blob the
//! store never opens. Sealing and unsealing are the `connections` layer's; the store keeps the
//! bytes, looks rows up by name or id and re-seals every row in one transaction when the master
//! key rotates.
//!
//! Invariants: a name is unique and never looks like an id (so a reference is either one or the
//! other); errors name a connection by its name or id, never by anything from its blob.

use sqlx::FromRow;

use super::error::StoreError;
use super::{Result, Store, begin_write, check_text, is_id, now_ms};

/// The longest connection name, in bytes.
pub const MAX_CONNECTION_NAME_BYTES: usize = 200;
/// The longest app or kind name, in bytes.
const MAX_LABEL_BYTES: usize = 100;
/// The largest sealed blob, in bytes (a connection's values are a few small fields).
pub const MAX_SEALED_BYTES: usize = 64 * 1024;

/// A stored connection without its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRow {
    pub id: String,
    pub name: String,
    pub app: String,
    pub kind: String,
    /// The id of the master key the values are sealed under (not a secret).
    pub key_id: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Set for a connection made through an integration (`serve --integrations`).
    pub integration: Option<IntegrationLink>,
    /// [`STATUS_CONNECTED`] or [`STATUS_NEEDS_REAUTH`].
    pub status: String,
    /// When its access token expires (ms since the epoch), when it has one that does.
    pub expires_at: Option<i64>,
}

/// A connection that works.
pub const STATUS_CONNECTED: &str = "connected";
/// A connection whose token can no longer be refreshed: someone must connect it again.
pub const STATUS_NEEDS_REAUTH: &str = "needs_reauth";

/// Which integration a connection was made for, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationLink {
    pub alias: String,
    /// `bot` or `user`.
    pub context: String,
    /// The end user a `user` connection belongs to.
    pub subject: Option<String>,
}

/// A stored connection with its sealed values.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedConnection {
    pub row: ConnectionRow,
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedConnection")
            .field("row", &self.row)
            .field("sealed", &self.sealed.len())
            .finish()
    }
}

/// A connection to insert: its id is chosen by the caller, who sealed the values with it.
#[derive(Debug, Clone, Copy)]
pub struct NewConnection<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub app: &'a str,
    pub kind: &'a str,
    pub key_id: &'a str,
    pub sealed: &'a [u8],
    pub integration: Option<&'a IntegrationLink>,
    pub expires_at: Option<i64>,
}

/// A row's values sealed again, under the master key `key_id`.
#[derive(Debug, Clone)]
pub struct Resealed {
    pub key_id: String,
    pub sealed: Vec<u8>,
}

#[derive(FromRow)]
struct ConnectionRecord {
    id: String,
    name: String,
    app: String,
    kind: String,
    key_id: String,
    sealed: Vec<u8>,
    created_at: i64,
    updated_at: i64,
    alias: Option<String>,
    context: Option<String>,
    subject: Option<String>,
    status: String,
    expires_at: Option<i64>,
}

impl From<ConnectionRecord> for SealedConnection {
    fn from(r: ConnectionRecord) -> Self {
        SealedConnection {
            row: ConnectionRow {
                id: r.id,
                name: r.name,
                app: r.app,
                kind: r.kind,
                key_id: r.key_id,
                created_at: r.created_at,
                updated_at: r.updated_at,
                integration: r.alias.map(|alias| IntegrationLink {
                    alias,
                    context: r.context.unwrap_or_default(),
                    subject: r.subject,
                }),
                status: r.status,
                expires_at: r.expires_at,
            },
            sealed: r.sealed,
        }
    }
}

/// The columns of a [`ConnectionRecord`].
const FIELDS: &str = "id, name, app, kind, key_id, sealed, created_at, updated_at, alias, context, \
                      subject, status, expires_at";
const COLUMNS: &str = "SELECT id, name, app, kind, key_id, sealed, created_at, updated_at, alias, \
                       context, subject, status, expires_at FROM connections";

/// Refuses a name no backend should store or that could be mistaken for an id.
pub fn check_connection_name(name: &str) -> Result<()> {
    check_text("connection name", name, MAX_CONNECTION_NAME_BYTES)?;
    let reason = if name.trim() != name {
        "must not start or end with white space"
    } else if name.chars().any(char::is_control) {
        "must not contain control characters"
    } else if is_id(name) {
        "must not look like a connection id (32 or 64 hex digits)"
    } else if is_make_id(name) {
        "must not be a number: a number names a connection by its Make id (connections add --id)"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidInput {
        what: "connection name",
        reason: reason.into(),
    })
}

/// Whether `id` is a Make connection id (`connections add --id`): a positive whole number of
/// at most 18 digits, as Make's exports write in `__IMTCONN__`, `account` and `key`. A
/// number never names a connection (names cannot be numbers), so it resolves by id alone.
pub fn is_make_id(id: &str) -> bool {
    (1..=18).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit()) && !id.starts_with('0')
}

/// Whether `reference` can name a stored connection at all (by name or id); anything else is
/// "not found" without a query (PostgreSQL refuses NUL in text).
fn is_reference(reference: &str) -> bool {
    !reference.is_empty()
        && reference.len() <= MAX_CONNECTION_NAME_BYTES.max(64)
        && !reference.contains('\0')
}

/// "Not found" for a reference, repeating it only when it is a plausible name or id: it comes
/// from a blueprint or a request, never from a secret.
fn connection_not_found(reference: &str) -> StoreError {
    let id = if is_reference(reference) && !reference.chars().any(char::is_control) {
        format!("\"{reference}\"")
    } else {
        "(malformed reference)".to_string()
    };
    StoreError::NotFound {
        what: "connection",
        id,
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl Store {
    /// Stores a new connection. A name already taken is [`StoreError::Conflict`].
    pub async fn insert_connection(&self, new: NewConnection<'_>) -> Result<ConnectionRow> {
        check_connection_name(new.name)?;
        check_text("connection app", new.app, MAX_LABEL_BYTES)?;
        check_text("connection kind", new.kind, MAX_LABEL_BYTES)?;
        check_text("key id", new.key_id, MAX_LABEL_BYTES)?;
        if !is_id(new.id) && !is_make_id(new.id) {
            return Err(StoreError::InvalidInput {
                what: "connection id",
                reason: "expected an id made by store::new_id, or a Make connection id (a \
                         positive whole number)"
                    .into(),
            });
        }
        if new.sealed.is_empty() || new.sealed.len() > MAX_SEALED_BYTES {
            return Err(StoreError::InvalidInput {
                what: "connection values",
                reason: format!("sealed, they must take 1 to {MAX_SEALED_BYTES} bytes"),
            });
        }
        let now = now_ms();
        let inserted = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO connections \
                 (id, name, app, kind, key_id, sealed, created_at, updated_at, alias, context, \
                  subject, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11)",
            )
            .bind(new.id)
            .bind(new.name)
            .bind(new.app)
            .bind(new.kind)
            .bind(new.key_id)
            .bind(new.sealed)
            .bind(now)
            .bind(new.integration.map(|i| i.alias.as_str()))
            .bind(new.integration.map(|i| i.context.as_str()))
            .bind(new.integration.and_then(|i| i.subject.as_deref()))
            .bind(new.expires_at)
            .execute(pool)
            .await
            .map(|_| ())
        });
        match inserted {
            Ok(_) => Ok(ConnectionRow {
                id: new.id.to_string(),
                name: new.name.to_string(),
                app: new.app.to_string(),
                kind: new.kind.to_string(),
                key_id: new.key_id.to_string(),
                created_at: now,
                updated_at: now,
                integration: new.integration.cloned(),
                status: STATUS_CONNECTED.to_string(),
                expires_at: new.expires_at,
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict {
                what: "connection",
                reason: if is_make_id(new.id) {
                    format!(
                        "a connection named \"{}\" or with id {} already exists",
                        new.name, new.id
                    )
                } else {
                    format!("a connection named \"{}\" already exists", new.name)
                },
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Every stored connection with its sealed values, by name.
    pub async fn list_connections(&self) -> Result<Vec<SealedConnection>> {
        let records: Vec<ConnectionRecord> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{COLUMNS} ORDER BY name")))
                .fetch_all(pool)
                .await?
        });
        Ok(records.into_iter().map(SealedConnection::from).collect())
    }

    /// The connection named or numbered `reference`.
    pub async fn get_connection(&self, reference: &str) -> Result<SealedConnection> {
        if !is_reference(reference) {
            return Err(connection_not_found(reference));
        }
        // Names never look like ids, so at most one row matches.
        let record: Option<ConnectionRecord> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{COLUMNS} WHERE name = $1 OR id = $1"
            )))
            .bind(reference)
            .fetch_optional(pool)
            .await?
        });
        record
            .map(SealedConnection::from)
            .ok_or_else(|| connection_not_found(reference))
    }

    /// Deletes the connection named or numbered `reference`; returns what it was.
    pub async fn delete_connection(&self, reference: &str) -> Result<ConnectionRow> {
        if !is_reference(reference) {
            return Err(connection_not_found(reference));
        }
        let record: Option<ConnectionRecord> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "DELETE FROM connections WHERE name = $1 OR id = $1 RETURNING {FIELDS}"
            )))
            .bind(reference)
            .fetch_optional(pool)
            .await?
        });
        record
            .map(|r| SealedConnection::from(r).row)
            .ok_or_else(|| connection_not_found(reference))
    }

    /// Replaces the values of connection `id` (sealed again by the caller, under `key_id`),
    /// its token's expiry and its status — one statement, so a reader sees the old values or
    /// the new ones. `NotFound` when the row is gone (removed meanwhile).
    pub async fn update_connection_values(
        &self,
        id: &str,
        key_id: &str,
        sealed: &[u8],
        expires_at: Option<i64>,
        status: &str,
    ) -> Result<()> {
        if sealed.is_empty() || sealed.len() > MAX_SEALED_BYTES {
            return Err(StoreError::InvalidInput {
                what: "connection values",
                reason: format!("sealed, they must take 1 to {MAX_SEALED_BYTES} bytes"),
            });
        }
        let now = now_ms();
        let updated = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE connections SET key_id = $2, sealed = $3, expires_at = $4, status = $5, \
                 updated_at = $6, refresh_lease = NULL WHERE id = $1",
            )
            .bind(id)
            .bind(key_id)
            .bind(sealed)
            .bind(expires_at)
            .bind(status)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated == 0 {
            return Err(connection_not_found(id));
        }
        Ok(())
    }

    /// Sets the status of connection `id` ([`STATUS_CONNECTED`], [`STATUS_NEEDS_REAUTH`]) and
    /// gives up its refresh lease.
    pub async fn set_connection_status(&self, id: &str, status: &str) -> Result<()> {
        let now = now_ms();
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE connections SET status = $2, updated_at = $3, refresh_lease = NULL \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(status)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// Takes the right to refresh connection `id`'s token until `until` (ms), unless another
    /// process holds it: true when this caller got it. One statement, so of many callers in
    /// any number of processes exactly one wins until the lease ends or is given back.
    pub async fn lease_refresh(&self, id: &str, until: i64) -> Result<bool> {
        let now = now_ms();
        let taken = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE connections SET refresh_lease = $2 \
                 WHERE id = $1 AND (refresh_lease IS NULL OR refresh_lease < $3)",
            )
            .bind(id)
            .bind(until)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(taken == 1)
    }

    /// Gives back the refresh lease of connection `id` (after a refresh that failed for a
    /// reason another try may not share).
    pub async fn release_refresh(&self, id: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE connections SET refresh_lease = NULL WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    /// The user connections of end user `subject` (metadata and sealed values), by name.
    pub async fn subject_connections(&self, subject: &str) -> Result<Vec<ConnectionRow>> {
        let records: Vec<ConnectionRecord> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{COLUMNS} WHERE subject = $1 ORDER BY name"
            )))
            .bind(subject)
            .fetch_all(pool)
            .await?
        });
        Ok(records
            .into_iter()
            .map(|r| SealedConnection::from(r).row)
            .collect())
    }

    /// Re-seals every stored connection in one transaction: `reseal` gets each row and returns
    /// its values sealed again (or `None` to leave the row as it is). When `reseal` fails for
    /// any row, nothing is changed and its error is returned as the inner `Err`. Returns how
    /// many rows were re-sealed.
    pub async fn reseal_connections<E, F>(&self, reseal: F) -> Result<Result<usize, E>>
    where
        F: Fn(&SealedConnection) -> std::result::Result<Option<Resealed>, E> + Sync,
        E: Send,
    {
        let now = now_ms();
        let outcome = on_pool!(self, pool => {
            let mut tx = begin_write(pool).await?;
            let records: Vec<ConnectionRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{COLUMNS} ORDER BY id{}",
                super::for_update_in(&tx)
            )))
            .fetch_all(&mut *tx)
            .await?;
            let mut changes = Vec::with_capacity(records.len());
            let mut failed = None;
            for record in records {
                let connection = SealedConnection::from(record);
                match reseal(&connection) {
                    Ok(Some(resealed)) => changes.push((connection.row.id, resealed)),
                    Ok(None) => {}
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                Some(e) => {
                    tx.rollback().await?;
                    Err(e)
                }
                None => {
                    for (id, resealed) in &changes {
                        sqlx::query(
                            "UPDATE connections SET key_id = $2, sealed = $3, updated_at = $4 \
                             WHERE id = $1",
                        )
                        .bind(id)
                        .bind(&resealed.key_id)
                        .bind(&resealed.sealed)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(changes.len())
                }
            }
        });
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_connection_name("chatbot-prod").is_ok());
        assert!(check_connection_name("v2-12345").is_ok());
        // A number names a connection by its Make id (`--id`), never by name.
        let number = check_connection_name("12345").unwrap_err().to_string();
        assert!(number.contains("--id"), "{number}");
        for bad in [
            "",
            " padded",
            "tab\there",
            "0123456789abcdef0123456789abcdef",
        ] {
            assert!(check_connection_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_connection_name(&"n".repeat(201)).is_err());
    }

    #[test]
    fn make_ids_are_positive_whole_numbers() {
        for id in ["1", "33477", "999999999999999999"] {
            assert!(is_make_id(id), "{id}");
        }
        for not in [
            "",
            "0",
            "012",
            "-5",
            "3.5",
            "1e3",
            "1234567890123456789",
            "a1",
        ] {
            assert!(!is_make_id(not), "{not}");
        }
    }

    #[test]
    fn not_found_repeats_only_plausible_references() {
        assert_eq!(
            connection_not_found("bot").to_string(),
            "connection \"bot\" not found"
        );
        assert_eq!(
            connection_not_found("a\0b").to_string(),
            "connection (malformed reference) not found"
        );
    }
}
