//! Make's data stores on both backends: one row per store (name, data structure, size limit and
//! the bytes and records it holds) and one row per record (store, key, data as serialised JSON,
//! size). Implements the module layer's [`DataStores`] service, so `datastore:*` modules reach
//! it through a [`DataStoresHandle`] in the execution's extensions.
//!
//! Invariants:
//! - **Every write runs in a transaction that first locks the store's row** (`BEGIN IMMEDIATE`
//!   on SQLite, `SELECT … FOR UPDATE` on PostgreSQL), then reads the record, decides, writes it
//!   and the store's counters. So concurrent writes to one key never lose an update, an
//!   insert-if-absent (`AddRecord` with `overwrite: false`) succeeds exactly once per key, and
//!   the size limit holds whichever process writes. Modules reach the records through a
//!   [`DataStoreService`], which runs the writes waiting at the same moment in one such
//!   transaction, one after the other (group commit), and the reads of one store in one query.
//! - **A record is validated against the structure before it is written**: no unknown field,
//!   each value of its field's type (text, number, boolean, date, array, collection, any; text
//!   that reads as the type is converted, dates are stored as ISO 8601 in UTC), required fields
//!   not empty. Errors name the store, the key and the field.
//! - A record's size is its key's bytes plus its serialised data's; a store's size is the sum.
//! - Searches use Make's filter operators (`scenario::filter::Operator`) on concrete values.

use std::cmp::Ordering as CmpOrdering;
use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;
use serde_json::{Map, Value};
use sqlx::FromRow;
use tokio::sync::{mpsc, oneshot};

use crate::module::ModuleError;
use crate::module::datastore::{
    AddMode, DataStore, DataStores, DataStoresHandle, Field, FieldKind, MAX_KEY_BYTES, Record,
    RecordCondition, RecordQuery, check_fields,
};
use crate::scenario::filter::Operator;

use super::error::StoreError;
use super::{Result, Store, begin_write, check_text, for_update_in, now_ms};

/// The longest data store name, in bytes.
pub const MAX_DATASTORE_NAME_BYTES: usize = 200;
/// The largest size limit a store can be given (1 GiB).
pub const MAX_DATASTORE_BYTES: u64 = 1 << 30;

/// What `StoreError::Conflict` names for a key that exists (a `DataError` for modules).
const RECORD_EXISTS: &str = "data store record";
/// What `StoreError::Conflict` names for a full store (a `RuntimeError` for modules).
const STORE_FULL: &str = "data store size";

/// A store to create.
#[derive(Debug, Clone)]
pub struct NewDataStore<'a> {
    pub name: &'a str,
    /// An id to give the store (Make's numeric ids, so exported blueprints find it); a new id
    /// when `None`.
    pub id: Option<&'a str>,
    pub fields: Vec<Field>,
    pub max_size_bytes: u64,
}

#[derive(FromRow)]
struct StoreRow {
    id: String,
    name: String,
    structure: String,
    max_size_bytes: i64,
    size_bytes: i64,
    record_count: i64,
    created_at: i64,
}

impl StoreRow {
    fn into_store(self) -> Result<DataStore> {
        let fields: Vec<Field> = serde_json::from_str(&self.structure)
            .map_err(|e| StoreError::corrupt("data store structure", e.to_string()))?;
        Ok(DataStore {
            id: self.id,
            name: self.name,
            fields,
            max_size_bytes: self.max_size_bytes.max(0) as u64,
            size_bytes: self.size_bytes.max(0) as u64,
            records: self.record_count.max(0) as u64,
            created_at: self.created_at,
        })
    }
}

const STORE_COLUMNS: &str = "SELECT id, name, structure, max_size_bytes, size_bytes, record_count, \
                             created_at FROM datastores";

fn record_from(key: String, data: &str) -> Result<Record> {
    match serde_json::from_str(data) {
        Ok(Value::Object(data)) => Ok(Record { key, data }),
        Ok(_) => Err(StoreError::corrupt(
            "data store record",
            "data is not an object",
        )),
        Err(e) => Err(StoreError::corrupt("data store record", e.to_string())),
    }
}

/// Whether `reference` can name a store at all; anything else is "not found" without a query.
fn is_reference(reference: &str) -> bool {
    !reference.is_empty()
        && reference.len() <= MAX_DATASTORE_NAME_BYTES
        && !reference.chars().any(char::is_control)
}

fn store_not_found(reference: &str) -> StoreError {
    let id = if is_reference(reference) {
        format!("\"{reference}\"")
    } else {
        "(malformed reference)".to_string()
    };
    StoreError::NotFound {
        what: "data store",
        id,
    }
}

/// Refuses a store name no backend should store.
pub fn check_datastore_name(name: &str) -> Result<()> {
    check_text("data store name", name, MAX_DATASTORE_NAME_BYTES)?;
    let reason = if name.trim() != name {
        "must not start or end with white space"
    } else if name.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidInput {
        what: "data store name",
        reason: reason.into(),
    })
}

/// Refuses a record key: empty, longer than [`MAX_KEY_BYTES`], or with control characters.
pub fn check_key(key: &str) -> Result<()> {
    check_text("data store record key", key, MAX_KEY_BYTES)?;
    if key.chars().any(char::is_control) {
        return Err(StoreError::InvalidInput {
            what: "data store record key",
            reason: "must not contain control characters".into(),
        });
    }
    Ok(())
}

/// `$first, $first+1, …`: `count` numbered parameters.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A new record key (Make generates one when the key is left empty).
fn new_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn invalid(store: &DataStore, reason: String) -> StoreError {
    StoreError::InvalidInput {
        what: "data store record",
        reason: format!("data store \"{}\": {reason}", store.name),
    }
}

/// Whether a value counts as empty for a field (`null`, empty text).
fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// `value` as field `field` stores it, or why it cannot be.
fn coerce(field: &Field, value: Value) -> std::result::Result<Value, String> {
    if is_blank(&value) {
        return Ok(Value::Null);
    }
    let wrong = |value: &Value| {
        let shown = value.to_string();
        let shown: String = shown.chars().take(60).collect();
        format!(
            "expected {} for field \"{}\", got {shown}",
            field.kind, field.name
        )
    };
    Ok(match (field.kind, value) {
        (FieldKind::Any, v) => v,
        (FieldKind::Text, Value::String(s)) => Value::String(s),
        (FieldKind::Text, Value::Number(n)) => Value::String(n.to_string()),
        (FieldKind::Text, Value::Bool(b)) => Value::String(b.to_string()),
        (FieldKind::Number, Value::Number(n)) => Value::Number(n),
        (FieldKind::Number, Value::String(s)) => match number_of_text(&s) {
            Some(n) => n,
            None => return Err(wrong(&Value::String(s))),
        },
        (FieldKind::Boolean, Value::Bool(b)) => Value::Bool(b),
        (FieldKind::Boolean, Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(wrong(&Value::String(s))),
        },
        (FieldKind::Date, v) => match date_of(&v) {
            Some(d) => Value::String(d.to_rfc3339_opts(SecondsFormat::Millis, true)),
            None => return Err(wrong(&v)),
        },
        (FieldKind::Array, Value::Array(a)) => Value::Array(a),
        (FieldKind::Collection, Value::Object(o)) => Value::Object(o),
        (_, v) => return Err(wrong(&v)),
    })
}

fn number_of_text(s: &str) -> Option<Value> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::from(i));
    }
    let f: f64 = s.parse().ok()?;
    serde_json::Number::from_f64(f).map(Value::Number)
}

/// A date from ISO 8601 text (with or without a time or zone; UTC when none) or epoch
/// milliseconds.
fn date_of(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(s) => {
            let s = s.trim();
            if let Ok(d) = DateTime::parse_from_rfc3339(s) {
                return Some(d.with_timezone(&Utc));
            }
            for format in [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M",
            ] {
                if let Ok(d) = NaiveDateTime::parse_from_str(s, format) {
                    return Some(d.and_utc());
                }
            }
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        }
        Value::Number(n) => DateTime::from_timestamp_millis(n.as_f64()? as i64),
        _ => None,
    }
}

/// Validates `data` against the store's structure: every field converted to its type, no
/// unknown field. With `complete`, fields not given are stored empty (`null`).
fn validate(
    store: &DataStore,
    key: &str,
    data: Map<String, Value>,
    complete: bool,
) -> Result<Map<String, Value>> {
    let mut problems = Vec::new();
    let mut out = Map::with_capacity(store.fields.len());
    for (name, value) in data {
        let Some(field) = store.fields.iter().find(|f| f.name == name) else {
            let known = if store.fields.is_empty() {
                "the store has no data structure: it keeps keys only".to_string()
            } else {
                format!(
                    "its fields are {}",
                    store
                        .fields
                        .iter()
                        .map(|f| format!("\"{}\"", f.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            problems.push(format!("unknown field \"{name}\" ({known})"));
            continue;
        };
        match coerce(field, value) {
            Ok(v) => {
                out.insert(name, v);
            }
            Err(reason) => problems.push(reason),
        }
    }
    if complete {
        // The structure's order, every field present.
        let mut ordered = Map::with_capacity(store.fields.len());
        for field in &store.fields {
            ordered.insert(
                field.name.clone(),
                out.remove(&field.name).unwrap_or(Value::Null),
            );
        }
        out = ordered;
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(invalid(
            store,
            format!(
                "record \"{key}\": validation failed for {} field(s): {}",
                problems.len(),
                problems.join("; ")
            ),
        ))
    }
}

/// Refuses a record whose required fields are empty.
fn check_required(store: &DataStore, key: &str, data: &Map<String, Value>) -> Result<()> {
    let missing: Vec<String> = store
        .fields
        .iter()
        .filter(|f| f.required && data.get(&f.name).is_none_or(is_blank))
        .map(|f| format!("\"{}\"", f.name))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(invalid(
            store,
            format!(
                "record \"{key}\": required field(s) {} are empty",
                missing.join(", ")
            ),
        ))
    }
}

/// What a write does with the record it finds under its key.
enum Change {
    /// Store this data (validated) under the key.
    Put(Map<String, Value>),
    /// Remove the record.
    Remove,
}

/// Decides a write's change from the record found under its key. `Fn`, not `FnOnce`: a
/// batch the database fails is retried one write at a time.
type Decide =
    Box<dyn Fn(&DataStore, &str, Option<Map<String, Value>>) -> Result<Change> + Send + Sync>;

/// One validated write, waiting for its transaction.
struct Write {
    store: DataStore,
    key: String,
    decide: Decide,
}

/// What a write did.
struct Written {
    /// The data stored (`None` for a removal).
    data: Option<Map<String, Value>>,
    /// Whether a record was under the key before.
    existed: bool,
}

impl Write {
    /// `AddRecord`: validated here; with [`AddMode::InsertIfAbsent`] an existing key is a
    /// conflict.
    fn add(
        store: &DataStore,
        key: Option<&str>,
        data: Map<String, Value>,
        mode: AddMode,
    ) -> Result<Write> {
        let key = match key.map(str::trim) {
            Some(key) if !key.is_empty() => key.to_string(),
            _ => new_key(),
        };
        check_key(&key)?;
        let data = validate(store, &key, data, true)?;
        check_required(store, &key, &data)?;
        Ok(Write {
            store: store.clone(),
            key,
            decide: Box::new(move |store, key, old| {
                if old.is_some() && mode == AddMode::InsertIfAbsent {
                    return Err(StoreError::Conflict {
                        what: RECORD_EXISTS,
                        reason: format!(
                            "data store \"{}\" already has a record with key \"{key}\" \
                             (overwrite is off)",
                            store.name
                        ),
                    });
                }
                Ok(Change::Put(data.clone()))
            }),
        })
    }

    /// `UpdateRecord`: the fields given replace theirs; a missing record is created only when
    /// `insert_missing`.
    fn update(
        store: &DataStore,
        key: &str,
        data: Map<String, Value>,
        insert_missing: bool,
    ) -> Result<Write> {
        check_key(key)?;
        let data = validate(store, key, data, false)?;
        Ok(Write {
            store: store.clone(),
            key: key.to_string(),
            decide: Box::new(move |store, key, old| {
                let merged = match old {
                    Some(mut old) => {
                        old.extend(data.clone());
                        old
                    }
                    None if insert_missing => validate(store, key, data.clone(), true)?,
                    None => {
                        return Err(invalid(
                            store,
                            format!(
                                "no record with key \"{key}\" to update (insert missing \
                                 records is off)"
                            ),
                        ));
                    }
                };
                check_required(store, key, &merged)?;
                Ok(Change::Put(merged))
            }),
        })
    }

    fn delete(store: &DataStore, key: &str) -> Write {
        Write {
            store: store.clone(),
            key: key.to_string(),
            decide: Box::new(|_, _, _| Ok(Change::Remove)),
        }
    }
}

fn record_size(key: &str, data: &str) -> i64 {
    (key.len() + data.len()) as i64
}

impl Store {
    /// Creates a data store. A name (or id) already taken is [`StoreError::Conflict`].
    pub async fn create_datastore(&self, new: NewDataStore<'_>) -> Result<DataStore> {
        check_datastore_name(new.name)?;
        check_fields(&new.fields).map_err(|reason| StoreError::InvalidInput {
            what: "data store structure",
            reason,
        })?;
        if new.max_size_bytes == 0 || new.max_size_bytes > MAX_DATASTORE_BYTES {
            return Err(StoreError::InvalidInput {
                what: "data store size limit",
                reason: format!("must be 1 to {MAX_DATASTORE_BYTES} bytes"),
            });
        }
        let id = match new.id {
            Some(id) => {
                let fine = !id.is_empty()
                    && id.len() <= 64
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !fine {
                    return Err(StoreError::InvalidInput {
                        what: "data store id",
                        reason: "must be 1 to 64 letters, digits, '-' or '_'".into(),
                    });
                }
                id.to_string()
            }
            None => super::new_id(),
        };
        let structure =
            serde_json::to_string(&new.fields).map_err(|e| StoreError::InvalidInput {
                what: "data store structure",
                reason: e.to_string(),
            })?;
        let now = now_ms();
        let inserted = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO datastores (id, name, structure, max_size_bytes, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&id)
            .bind(new.name)
            .bind(&structure)
            .bind(new.max_size_bytes as i64)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ())
        });
        match inserted {
            Ok(()) => Ok(DataStore {
                id,
                name: new.name.to_string(),
                fields: new.fields,
                max_size_bytes: new.max_size_bytes,
                size_bytes: 0,
                records: 0,
                created_at: now,
            }),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                Err(StoreError::Conflict {
                    what: "data store",
                    reason: match new.id {
                        Some(_) => format!(
                            "a data store named \"{}\" or with id \"{id}\" already exists",
                            new.name
                        ),
                        None => format!("a data store named \"{}\" already exists", new.name),
                    },
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every data store, by name.
    pub async fn list_datastores(&self) -> Result<Vec<DataStore>> {
        let rows: Vec<StoreRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{STORE_COLUMNS} ORDER BY name")))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(StoreRow::into_store).collect()
    }

    /// The store whose id or name is `reference` (an id wins over another store's name).
    pub async fn get_datastore(&self, reference: &str) -> Result<DataStore> {
        if !is_reference(reference) {
            return Err(store_not_found(reference));
        }
        let row: Option<StoreRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{STORE_COLUMNS} WHERE id = $1 OR name = $1 \
                 ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END LIMIT 1"
            )))
            .bind(reference)
            .fetch_optional(pool)
            .await?
        });
        row.ok_or_else(|| store_not_found(reference))?.into_store()
    }

    /// Deletes a store and its records; returns what it was.
    pub async fn delete_datastore(&self, reference: &str) -> Result<DataStore> {
        let store = self.get_datastore(reference).await?;
        let deleted = on_pool!(self, pool => {
            let mut tx = begin_write(pool).await?;
            sqlx::query("DELETE FROM datastore_records WHERE store_id = $1")
                .bind(&store.id)
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query("DELETE FROM datastores WHERE id = $1")
                .bind(&store.id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            done
        });
        if deleted == 0 {
            return Err(store_not_found(reference));
        }
        Ok(store)
    }

    /// The record under `key` in store `store_id`.
    pub async fn datastore_record(&self, store_id: &str, key: &str) -> Result<Option<Record>> {
        if check_key(key).is_err() {
            return Ok(None);
        }
        let row: Option<(String,)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT data FROM datastore_records WHERE store_id = $1 AND key = $2")
                .bind(store_id)
                .bind(key)
                .fetch_optional(pool)
                .await?
        });
        row.map(|(data,)| record_from(key.to_string(), &data))
            .transpose()
    }

    /// Whether a record is stored under `key`.
    pub async fn datastore_record_exists(&self, store_id: &str, key: &str) -> Result<bool> {
        if check_key(key).is_err() {
            return Ok(false);
        }
        let row: Option<(String,)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT key FROM datastore_records WHERE store_id = $1 AND key = $2")
                .bind(store_id)
                .bind(key)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.is_some())
    }

    /// Records of store `store_id` in key order, after `after` (exclusive), at most `limit`.
    pub async fn datastore_records_page(
        &self,
        store_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Record>> {
        let rows: Vec<(String, String)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT key, data FROM datastore_records WHERE store_id = $1 AND key > $2 \
                 ORDER BY key LIMIT $3",
            )
            .bind(store_id)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(key, data)| record_from(key, &data))
            .collect()
    }

    /// Writes a record (see [`DataStores::add`]); `key: None` generates one.
    pub async fn add_datastore_record(
        &self,
        store: &DataStore,
        key: Option<&str>,
        data: Map<String, Value>,
        mode: AddMode,
    ) -> Result<Record> {
        let write = Write::add(store, key, data, mode)?;
        let key = write.key.clone();
        let written = self.write_one(write).await?;
        Ok(Record {
            key,
            data: written.data.unwrap_or_default(),
        })
    }

    /// Merges `data` into the record under `key` (see [`DataStores::update`]).
    pub async fn update_datastore_record(
        &self,
        store: &DataStore,
        key: &str,
        data: Map<String, Value>,
        insert_missing: bool,
    ) -> Result<Record> {
        let written = self
            .write_one(Write::update(store, key, data, insert_missing)?)
            .await?;
        Ok(Record {
            key: key.to_string(),
            data: written.data.unwrap_or_default(),
        })
    }

    /// Deletes the record under `key`; whether there was one.
    pub async fn delete_datastore_record(&self, store: &DataStore, key: &str) -> Result<bool> {
        if check_key(key).is_err() {
            return Ok(false);
        }
        Ok(self.write_one(Write::delete(store, key)).await?.existed)
    }

    async fn write_one(&self, write: Write) -> Result<Written> {
        self.write_batch(std::slice::from_ref(&write))
            .await?
            .pop()
            .unwrap_or_else(|| Err(store_not_found(&write.store.name)))
    }

    /// The one write path, for one write or a batch of them (in order, one transaction): locks
    /// the rows of the stores written (in id order, so two batches never wait on each other in
    /// a cycle), then for each write reads the record under its key, lets it decide the change
    /// and writes that; then the stores' counters; commits. A write its store refuses (the
    /// key exists, the store is full, validation) fails alone; the outer `Err` is the
    /// database failing the whole transaction.
    async fn write_batch(&self, writes: &[Write]) -> Result<Vec<Result<Written>>> {
        let now = now_ms();
        let mut ids: Vec<&str> = writes.iter().map(|w| w.store.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        on_pool!(self, pool => {
            let mut tx = begin_write(pool).await?;
            // (max size, size, records) of each store, `None` when it is gone.
            let mut counters: HashMap<&str, Option<(i64, i64, i64)>> = HashMap::new();
            for id in ids {
                let locked: Option<(i64, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT max_size_bytes, size_bytes, record_count FROM datastores \
                     WHERE id = $1{}",
                    for_update_in(&tx)
                )))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                counters.insert(id, locked);
            }
            // The records the batch writes, read at once, (store, key) → (data, size) or
            // `None`; kept current as the writes apply and written at the end (`dirty`).
            let mut current: HashMap<(&str, &str), Option<(String, i64)>> = HashMap::new();
            let mut keys_of: HashMap<&str, Vec<&str>> = HashMap::new();
            for write in writes {
                keys_of
                    .entry(write.store.id.as_str())
                    .or_default()
                    .push(write.key.as_str());
            }
            for (id, keys) in &mut keys_of {
                keys.sort_unstable();
                keys.dedup();
                for key in keys.iter() {
                    current.insert((*id, *key), None);
                }
                for chunk in super::pow2_chunks(keys, 64) {
                    let sql = format!(
                        "SELECT key, data, size FROM datastore_records \
                         WHERE store_id = $1 AND key IN ({})",
                        placeholders(2, chunk.len())
                    );
                    let mut query =
                        sqlx::query_as::<_, (String, String, i64)>(sqlx::AssertSqlSafe(sql))
                            .bind(*id);
                    for key in chunk {
                        query = query.bind(*key);
                    }
                    for (key, data, size) in query.fetch_all(&mut *tx).await? {
                        if let Some(key) = chunk.iter().find(|k| **k == key) {
                            current.insert((*id, *key), Some((data, size)));
                        }
                    }
                }
            }
            let mut dirty: Vec<(&str, &str)> = Vec::new();
            let mut results = Vec::with_capacity(writes.len());
            for write in writes {
                let (store, key) = (&write.store, write.key.as_str());
                let Some(Some((max, used, count))) = counters.get(store.id.as_str()).copied() else {
                    results.push(Err(store_not_found(&store.name)));
                    continue;
                };
                let at = (store.id.as_str(), key);
                let old = current.get(&at).cloned().flatten();
                let old_size = old.as_ref().map_or(0, |(_, size)| *size);
                let existed = old.is_some();
                let change = old
                    .as_ref()
                    .map(|(data, _)| record_from(key.to_string(), data).map(|r| r.data))
                    .transpose()
                    .and_then(|old_data| (write.decide)(store, key, old_data));
                let change = match change {
                    Ok(change) => change,
                    Err(e) => {
                        results.push(Err(e));
                        continue;
                    }
                };
                match change {
                    Change::Put(data) => {
                        let text = match serde_json::to_string(&data) {
                            Ok(text) => text,
                            Err(e) => {
                                results.push(Err(StoreError::InvalidInput {
                                    what: "data store record",
                                    reason: e.to_string(),
                                }));
                                continue;
                            }
                        };
                        let size = record_size(key, &text);
                        let new_used = used - old_size + size;
                        if new_used > max && size > old_size {
                            results.push(Err(StoreError::Conflict {
                                what: STORE_FULL,
                                reason: format!(
                                    "data store \"{}\" is full: record \"{key}\" takes {size} \
                                     bytes, {} of {max} bytes are free",
                                    store.name,
                                    (max - used + old_size).max(0)
                                ),
                            }));
                            continue;
                        }
                        current.insert(at, Some((text, size)));
                        if !dirty.contains(&at) {
                            dirty.push(at);
                        }
                        counters.insert(
                            store.id.as_str(),
                            Some((max, new_used, count + i64::from(!existed))),
                        );
                        results.push(Ok(Written { data: Some(data), existed }));
                    }
                    Change::Remove => {
                        if existed {
                            current.insert(at, None);
                            if !dirty.contains(&at) {
                                dirty.push(at);
                            }
                            counters.insert(
                                store.id.as_str(),
                                Some((max, used - old_size, count - 1)),
                            );
                        }
                        results.push(Ok(Written { data: None, existed }));
                    }
                }
            }
            for at in &dirty {
                match &current[at] {
                    Some((text, size)) => {
                        sqlx::query(
                            "INSERT INTO datastore_records (store_id, key, data, size, updated_at) \
                             VALUES ($1, $2, $3, $4, $5) \
                             ON CONFLICT (store_id, key) DO UPDATE SET data = excluded.data, \
                             size = excluded.size, updated_at = excluded.updated_at",
                        )
                        .bind(at.0)
                        .bind(at.1)
                        .bind(text)
                        .bind(*size)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    None => {
                        sqlx::query(
                            "DELETE FROM datastore_records WHERE store_id = $1 AND key = $2",
                        )
                        .bind(at.0)
                        .bind(at.1)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            for (id, counter) in &counters {
                if let Some((_, used, count)) = counter {
                    sqlx::query(
                        "UPDATE datastores SET size_bytes = $2, record_count = $3 WHERE id = $1",
                    )
                    .bind(*id)
                    .bind(*used)
                    .bind(*count)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(results)
        })
    }

    /// The records under `keys` of store `store_id` (one statement per chunk of keys).
    async fn records_by_key(
        &self,
        store_id: &str,
        keys: &[&str],
    ) -> Result<HashMap<String, String>> {
        let mut found = HashMap::with_capacity(keys.len());
        for chunk in super::pow2_chunks(keys, 64) {
            let sql = format!(
                "SELECT key, data FROM datastore_records WHERE store_id = $1 AND key IN ({})",
                placeholders(2, chunk.len())
            );
            let rows: Vec<(String, String)> = on_pool!(self, pool => {
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(store_id);
                for key in chunk {
                    query = query.bind(*key);
                }
                query.fetch_all(pool).await?
            });
            found.extend(rows);
        }
        Ok(found)
    }

    /// Deletes every record of the store; how many there were.
    pub async fn delete_all_datastore_records(&self, store: &DataStore) -> Result<u64> {
        on_pool!(self, pool => {
            let mut tx = begin_write(pool).await?;
            let locked: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT record_count FROM datastores WHERE id = $1{}",
                for_update_in(&tx)
            )))
            .bind(&store.id)
            .fetch_optional(&mut *tx)
            .await?;
            if locked.is_none() {
                return Err(store_not_found(&store.name));
            }
            let deleted = sqlx::query("DELETE FROM datastore_records WHERE store_id = $1")
                .bind(&store.id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("UPDATE datastores SET size_bytes = 0, record_count = 0 WHERE id = $1")
                .bind(&store.id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(deleted)
        })
    }

    /// Adds or replaces many records in one transaction: all of them or, on the first record
    /// the structure or the size limit refuses, none. Each record comes with its line number
    /// (of a JSON lines file) and is validated first; a refused one's error starts `line N`.
    pub async fn import_datastore_records(
        &self,
        store: &DataStore,
        records: Vec<(usize, Record)>,
    ) -> Result<usize> {
        let mut checked = Vec::with_capacity(records.len());
        for (line, record) in records {
            let at = |e: StoreError| StoreError::InvalidInput {
                what: "data store import",
                reason: format!("line {line}: {e}"),
            };
            check_key(&record.key).map_err(at)?;
            let data = validate(store, &record.key, record.data, true).map_err(at)?;
            check_required(store, &record.key, &data).map_err(at)?;
            let text = serde_json::to_string(&data).map_err(|e| StoreError::InvalidInput {
                what: "data store import",
                reason: e.to_string(),
            })?;
            checked.push((record.key, text));
        }
        let now = now_ms();
        let written = checked.len();
        on_pool!(self, pool => {
            let mut tx = begin_write(pool).await?;
            let locked: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT max_size_bytes FROM datastores WHERE id = $1{}",
                for_update_in(&tx)
            )))
            .bind(&store.id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((max,)) = locked else {
                return Err(store_not_found(&store.name));
            };
            for (key, text) in &checked {
                sqlx::query(
                    "INSERT INTO datastore_records (store_id, key, data, size, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (store_id, key) DO UPDATE SET data = excluded.data, \
                     size = excluded.size, updated_at = excluded.updated_at",
                )
                .bind(&store.id)
                .bind(key)
                .bind(text)
                .bind(record_size(key, text))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let (used, count): (i64, i64) = sqlx::query_as(
                "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT), COUNT(*) FROM datastore_records \
                 WHERE store_id = $1",
            )
            .bind(&store.id)
            .fetch_one(&mut *tx)
            .await?;
            if used > max {
                return Err(StoreError::Conflict {
                    what: STORE_FULL,
                    reason: format!(
                        "data store \"{}\" is full: the import needs {used} bytes, its limit \
                         is {max}; nothing was imported",
                        store.name
                    ),
                });
            }
            sqlx::query("UPDATE datastores SET size_bytes = $2, record_count = $3 WHERE id = $1")
                .bind(&store.id)
                .bind(used)
                .bind(count)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(written)
    }

    /// The records matching `query` (see [`DataStores::search`]).
    pub async fn search_datastore_records(
        &self,
        store: &DataStore,
        query: &RecordQuery,
    ) -> Result<Vec<Record>> {
        let filter = compile_filter(store, &query.filter)?;
        for sort in &query.sort {
            check_field_name(store, &sort.field, "sort")?;
        }
        let rows: Vec<(String, String)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT key, data FROM datastore_records WHERE store_id = $1 ORDER BY key",
            )
            .bind(&store.id)
            .fetch_all(pool)
            .await?
        });
        let mut found = Vec::new();
        for (key, data) in rows {
            let record = record_from(key, &data)?;
            if filter_passes(store, &filter, &record)? {
                found.push(record);
                if query.sort.is_empty() && query.limit.is_some_and(|l| found.len() >= l) {
                    break;
                }
            }
        }
        if !query.sort.is_empty() {
            found.sort_by(|x, y| {
                for sort in &query.sort {
                    let ord =
                        compare_values(&field_value(x, &sort.field), &field_value(y, &sort.field));
                    let ord = if sort.descending { ord.reverse() } else { ord };
                    if ord != CmpOrdering::Equal {
                        return ord;
                    }
                }
                CmpOrdering::Equal
            });
            if let Some(limit) = query.limit {
                found.truncate(limit);
            }
        }
        Ok(found)
    }

    /// A [`DataStoresHandle`] on this store, for an execution's extensions: a
    /// [`DataStoreService`] whose task (spawned here, on the current tokio runtime) batches the
    /// record reads and writes of every execution of the process. Call it once per process.
    pub fn datastores_handle(&self) -> DataStoresHandle {
        std::sync::Arc::new(DataStoreService::start(self.clone()))
    }
}

fn check_field_name(store: &DataStore, name: &str, what: &str) -> Result<()> {
    if name == "key" || store.fields.iter().any(|f| f.name == name) {
        Ok(())
    } else {
        Err(invalid(
            store,
            format!("{what}: unknown field \"{name}\" (use \"key\" or a field of the structure)"),
        ))
    }
}

fn compile_filter<'q>(
    store: &DataStore,
    groups: &'q [Vec<RecordCondition>],
) -> Result<Vec<Vec<(Operator, &'q RecordCondition)>>> {
    groups
        .iter()
        .enumerate()
        .map(|(g, group)| {
            group
                .iter()
                .enumerate()
                .map(|(c, condition)| {
                    let at = format!("filter[{g}][{c}]");
                    check_field_name(store, &condition.a, &at)?;
                    let op = Operator::parse(&condition.o).ok_or_else(|| {
                        invalid(store, format!("{at}: unknown operator \"{}\"", condition.o))
                    })?;
                    Ok((op, condition))
                })
                .collect()
        })
        .collect()
}

fn field_value(record: &Record, field: &str) -> Value {
    if field == "key" {
        Value::String(record.key.clone())
    } else {
        record.data.get(field).cloned().unwrap_or(Value::Null)
    }
}

fn filter_passes(
    store: &DataStore,
    groups: &[Vec<(Operator, &RecordCondition)>],
    record: &Record,
) -> Result<bool> {
    if groups.iter().all(Vec::is_empty) {
        return Ok(true);
    }
    for group in groups.iter().filter(|g| !g.is_empty()) {
        let mut all = true;
        for (op, condition) in group {
            if !holds(store, *op, &field_value(record, &condition.a), &condition.b)? {
                all = false;
                break;
            }
        }
        if all {
            return Ok(true);
        }
    }
    Ok(false)
}

fn text_of(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// Whether a search condition holds for a record's field value `a`: Make's operators, read as
/// the engine's filters read them (dates and times in UTC).
fn holds(store: &DataStore, op: Operator, a: &Value, b: &Value) -> Result<bool> {
    op.holds(a, b, None, chrono_tz::UTC)
        .map_err(|reason| invalid(store, reason))
}

/// Sorts values: empty last, numbers by value, dates by time, the rest as text.
fn compare_values(a: &Value, b: &Value) -> CmpOrdering {
    match (is_blank(a), is_blank(b)) {
        (true, true) => return CmpOrdering::Equal,
        (true, false) => return CmpOrdering::Greater,
        (false, true) => return CmpOrdering::Less,
        _ => {}
    }
    if let (Value::Number(x), Value::Number(y)) = (a, b) {
        return x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(CmpOrdering::Equal);
    }
    text_of(a).cmp(&text_of(b))
}

/// How a store error reaches a module: a refused value or an existing key is Make's
/// `DataError`, an unknown store an `InvalidConfigurationError`, anything else a
/// `RuntimeError`.
fn module_error(e: StoreError) -> ModuleError {
    match &e {
        StoreError::InvalidInput { .. } => ModuleError::data(e.to_string()),
        StoreError::Conflict { what, reason } if *what == RECORD_EXISTS => {
            ModuleError::data(reason.clone())
        }
        StoreError::Conflict { reason, .. } => ModuleError::runtime(reason.clone()),
        // The blueprint names a store that is not there: its configuration is wrong.
        StoreError::NotFound { .. } => ModuleError::config(format!(
            "{e} (create it with switchyard datastores create, or see datastores list)"
        )),
        _ => ModuleError::runtime(e.to_string()),
    }
}

/// The data stores of one process as modules use them: record reads and writes go to one
/// task that takes every call waiting and runs them together — the reads of a store as one
/// `SELECT … IN (…)`, the writes in one transaction (group commit: one sync for the batch
/// instead of one per write). A batch the database fails is retried one write at a time, so
/// one bad write never fails the others. Other calls (resolve, search, count, delete all) go
/// straight to the store.
pub struct DataStoreService {
    store: Store,
    ops: mpsc::UnboundedSender<Op>,
}

/// One call waiting for the service's task.
enum Op {
    Read {
        store_id: String,
        key: String,
        reply: oneshot::Sender<Result<Option<Record>>>,
    },
    Write {
        write: Write,
        reply: oneshot::Sender<Result<Written>>,
    },
}

/// The most calls one batch takes.
const MAX_BATCH: usize = 256;

impl DataStoreService {
    /// Starts the service's task on the current tokio runtime; it ends with the service.
    pub fn start(store: Store) -> DataStoreService {
        let (ops, queue) = mpsc::unbounded_channel();
        tokio::spawn(serve_ops(store.clone(), queue));
        DataStoreService { store, ops }
    }

    fn stopped() -> StoreError {
        StoreError::corrupt("data store service", "its task has stopped")
    }

    async fn read(&self, store_id: &str, key: &str) -> Result<Option<Record>> {
        if check_key(key).is_err() {
            return Ok(None);
        }
        let (reply, answer) = oneshot::channel();
        self.ops
            .send(Op::Read {
                store_id: store_id.to_string(),
                key: key.to_string(),
                reply,
            })
            .map_err(|_| Self::stopped())?;
        answer.await.map_err(|_| Self::stopped())?
    }

    async fn write(&self, write: Write) -> Result<Written> {
        let (reply, answer) = oneshot::channel();
        self.ops
            .send(Op::Write { write, reply })
            .map_err(|_| Self::stopped())?;
        answer.await.map_err(|_| Self::stopped())?
    }
}

/// The service's task: takes the first call waiting and every other one waiting with it (up
/// to [`MAX_BATCH`]), runs the reads, then the writes, answers each; until the service is
/// dropped.
async fn serve_ops(store: Store, mut queue: mpsc::UnboundedReceiver<Op>) {
    while let Some(first) = queue.recv().await {
        let mut reads = Vec::new();
        let mut writes = Vec::new();
        let mut next = Some(first);
        while let Some(op) = next {
            match op {
                Op::Read {
                    store_id,
                    key,
                    reply,
                } => reads.push((store_id, key, reply)),
                Op::Write { write, reply } => writes.push((write, reply)),
            }
            next = if reads.len() + writes.len() < MAX_BATCH {
                queue.try_recv().ok()
            } else {
                None
            };
        }
        if !reads.is_empty() {
            read_batch(&store, reads).await;
        }
        if !writes.is_empty() {
            write_batch(&store, writes).await;
        }
    }
}

type ReadReply = oneshot::Sender<Result<Option<Record>>>;

async fn read_batch(store: &Store, reads: Vec<(String, String, ReadReply)>) {
    let mut by_store: HashMap<String, Vec<(String, ReadReply)>> = HashMap::new();
    for (store_id, key, reply) in reads {
        by_store.entry(store_id).or_default().push((key, reply));
    }
    for (store_id, reads) in by_store {
        let keys: Vec<&str> = reads.iter().map(|(key, _)| key.as_str()).collect();
        match store.records_by_key(&store_id, &keys).await {
            Ok(found) => {
                for (key, reply) in reads {
                    let record = found
                        .get(&key)
                        .map(|data| record_from(key, data))
                        .transpose();
                    let _ = reply.send(record);
                }
            }
            // Each read again on its own, with its own error.
            Err(_) => {
                for (key, reply) in reads {
                    let _ = reply.send(store.datastore_record(&store_id, &key).await);
                }
            }
        }
    }
}

async fn write_batch(store: &Store, writes: Vec<(Write, oneshot::Sender<Result<Written>>)>) {
    let (batch, replies): (Vec<Write>, Vec<_>) = writes.into_iter().unzip();
    match store.write_batch(&batch).await {
        Ok(results) => {
            for (result, reply) in results.into_iter().zip(replies) {
                let _ = reply.send(result);
            }
        }
        Err(_) if batch.len() > 1 => {
            for (write, reply) in batch.into_iter().zip(replies) {
                let _ = reply.send(store.write_one(write).await);
            }
        }
        Err(e) => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
    }
}

impl DataStores for DataStoreService {
    fn resolve<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<DataStore, ModuleError>> {
        Box::pin(async move {
            self.store
                .get_datastore(reference)
                .await
                .map_err(module_error)
        })
    }

    fn get<'a>(
        &'a self,
        store: &'a DataStore,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Record>, ModuleError>> {
        Box::pin(async move { self.read(&store.id, key).await.map_err(module_error) })
    }

    fn exists<'a>(
        &'a self,
        store: &'a DataStore,
        key: &'a str,
    ) -> BoxFuture<'a, Result<bool, ModuleError>> {
        Box::pin(async move {
            self.read(&store.id, key)
                .await
                .map(|record| record.is_some())
                .map_err(module_error)
        })
    }

    fn add<'a>(
        &'a self,
        store: &'a DataStore,
        key: Option<&'a str>,
        data: Map<String, Value>,
        mode: AddMode,
    ) -> BoxFuture<'a, Result<Record, ModuleError>> {
        Box::pin(async move {
            let write = Write::add(store, key, data, mode).map_err(module_error)?;
            let key = write.key.clone();
            let written = self.write(write).await.map_err(module_error)?;
            Ok(Record {
                key,
                data: written.data.unwrap_or_default(),
            })
        })
    }

    fn update<'a>(
        &'a self,
        store: &'a DataStore,
        key: &'a str,
        data: Map<String, Value>,
        insert_missing: bool,
    ) -> BoxFuture<'a, Result<Record, ModuleError>> {
        Box::pin(async move {
            let write = Write::update(store, key, data, insert_missing).map_err(module_error)?;
            let written = self.write(write).await.map_err(module_error)?;
            Ok(Record {
                key: key.to_string(),
                data: written.data.unwrap_or_default(),
            })
        })
    }

    fn delete<'a>(
        &'a self,
        store: &'a DataStore,
        key: &'a str,
    ) -> BoxFuture<'a, Result<bool, ModuleError>> {
        Box::pin(async move {
            if check_key(key).is_err() {
                return Ok(false);
            }
            let written = self
                .write(Write::delete(store, key))
                .await
                .map_err(module_error)?;
            Ok(written.existed)
        })
    }

    fn delete_all<'a>(&'a self, store: &'a DataStore) -> BoxFuture<'a, Result<u64, ModuleError>> {
        Box::pin(async move {
            self.store
                .delete_all_datastore_records(store)
                .await
                .map_err(module_error)
        })
    }

    fn search<'a>(
        &'a self,
        store: &'a DataStore,
        query: &'a RecordQuery,
    ) -> BoxFuture<'a, Result<Vec<Record>, ModuleError>> {
        Box::pin(async move {
            self.store
                .search_datastore_records(store, query)
                .await
                .map_err(module_error)
        })
    }

    fn count<'a>(&'a self, store: &'a DataStore) -> BoxFuture<'a, Result<u64, ModuleError>> {
        Box::pin(async move {
            self.store
                .get_datastore(&store.id)
                .await
                .map(|s| s.records)
                .map_err(module_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store(fields: &str) -> DataStore {
        DataStore {
            id: "1".into(),
            name: "s".into(),
            fields: crate::module::datastore::parse_fields(fields).unwrap(),
            max_size_bytes: 1000,
            size_bytes: 0,
            records: 0,
            created_at: 0,
        }
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn values_are_converted_to_their_field_types() {
        let s = store("t:text,n:number,b:boolean,d:date,a:array,c:collection,x:any");
        let out = validate(
            &s,
            "k",
            map(
                json!({"t": 5, "n": "2.5", "b": "TRUE", "d": "2026-01-02", "a": [1],
                        "c": {"z": 1}, "x": [true]}),
            ),
            true,
        )
        .unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"t": "5", "n": 2.5, "b": true, "d": "2026-01-02T00:00:00.000Z", "a": [1],
                   "c": {"z": 1}, "x": [true]})
        );
        let out = validate(&s, "k", map(json!({"n": ""})), true).unwrap();
        assert_eq!(out["n"], Value::Null);
        assert_eq!(out["t"], Value::Null, "missing fields are stored empty");
    }

    #[test]
    fn every_wrong_field_is_named() {
        let s = store("n:number,d:date");
        let err = validate(
            &s,
            "k1",
            map(json!({"n": "many", "d": "soon", "zz": 1})),
            true,
        )
        .unwrap_err()
        .to_string();
        for part in ["\"s\"", "\"k1\"", "3 field(s)", "\"n\"", "\"d\"", "\"zz\""] {
            assert!(err.contains(part), "{part} in {err}");
        }
        let err = check_required(&store("e:text!"), "k", &map(json!({"e": null})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("required") && err.contains("\"e\""), "{err}");
    }

    #[test]
    fn filters_use_makes_operators() {
        let s = store("email:text,count:number,seen:date,tags:array");
        let record = Record {
            key: "a1".into(),
            data: map(
                json!({"email": "Ann@x.org", "count": 3, "seen": "2026-01-02T00:00:00.000Z", "tags": ["x", "y"]}),
            ),
        };
        let check = |a: &str, o: &str, b: Value| {
            let conditions = vec![vec![RecordCondition {
                a: a.into(),
                o: o.into(),
                b,
            }]];
            let compiled = compile_filter(&s, &conditions).unwrap();
            filter_passes(&s, &compiled, &record).unwrap()
        };
        assert!(check("email", "text:equal:ci", json!("ann@x.org")));
        assert!(!check("email", "text:equal", json!("ann@x.org")));
        assert!(check("count", "number:greater", json!("2")));
        assert!(!check("count", "number:less", json!(3)));
        assert!(check("seen", "date:before", json!("2026-02-01")));
        assert!(check("tags", "array:contain", json!("y")));
        assert!(check("key", "text:startwith", json!("a")));
        assert!(check("email", "exist", Value::Null));
        let bad = vec![vec![RecordCondition {
            a: "nope".into(),
            o: "exist".into(),
            b: Value::Null,
        }]];
        assert!(compile_filter(&s, &bad).is_err());
        let bad = vec![vec![RecordCondition {
            a: "email".into(),
            o: "text:like".into(),
            b: Value::Null,
        }]];
        let err = compile_filter(&s, &bad).unwrap_err().to_string();
        assert!(
            err.contains("filter[0][0]") && err.contains("text:like"),
            "{err}"
        );
    }
}
