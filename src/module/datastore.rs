//! Make's data stores as a module sees them: a store found by the name or id a blueprint gives
//! in `parameters.datastore`, its records keyed by text, read and written through a
//! [`DataStores`] service that a higher layer (the `store` layer, on SQLite or PostgreSQL) puts
//! in the execution's [`Extensions`](super::Extensions) as a [`DataStoresHandle`] — the way
//! [`ConnectionsHandle`](super::ConnectionsHandle) reaches modules.
//!
//! Invariants the implementations keep: a write is validated against the store's data structure
//! (typed fields) before it is stored; the store's size limit holds; writes to one key never
//! lose an update (each one is one transaction holding the store's lock); `AddRecord` with
//! `overwrite: false` is an atomic insert-if-absent. Errors are Make's kinds: `DataError` for a
//! value the structure refuses or a key that already exists, `InvalidConfigurationError` for a
//! store that does not exist, `RuntimeError` for the rest (full store, database failure), each
//! naming the store, key or field.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ModuleError;

/// The blueprint parameter that names a module's data store (Make's own key).
pub const DATASTORE_PARAMETER: &str = "datastore";

/// The size limit of a store created without one: 1 MB, Make's smallest data store.
pub const DEFAULT_MAX_SIZE_BYTES: u64 = 1024 * 1024;

/// The longest record key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// The type of one field of a data structure (Make's data structure types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    Text,
    Number,
    Boolean,
    Date,
    Array,
    Collection,
    /// Any JSON value (Make's `any`).
    Any,
}

impl FieldKind {
    pub const ALL: [FieldKind; 7] = [
        FieldKind::Text,
        FieldKind::Number,
        FieldKind::Boolean,
        FieldKind::Date,
        FieldKind::Array,
        FieldKind::Collection,
        FieldKind::Any,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Number => "number",
            FieldKind::Boolean => "boolean",
            FieldKind::Date => "date",
            FieldKind::Array => "array",
            FieldKind::Collection => "collection",
            FieldKind::Any => "any",
        }
    }

    /// Reads a type name (`text`, `number` …; `string` and `object` are accepted as the JSON
    /// spellings of `text` and `collection`).
    pub fn parse(name: &str) -> Option<FieldKind> {
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "string" => Some(FieldKind::Text),
            "object" => Some(FieldKind::Collection),
            "integer" => Some(FieldKind::Number),
            _ => FieldKind::ALL.into_iter().find(|k| k.name() == name),
        }
    }
}

impl fmt::Display for FieldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One field of a store's data structure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FieldKind,
    /// A required field cannot be empty in a record that is written.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

/// A data store: its identity, structure and how full it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataStore {
    pub id: String,
    pub name: String,
    /// The data structure; empty means keys only (Make's store without a structure).
    pub fields: Vec<Field>,
    pub max_size_bytes: u64,
    /// Bytes the records take (key plus serialised data of each).
    pub size_bytes: u64,
    pub records: u64,
    pub created_at: i64,
}

/// One record: its key and its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub key: String,
    pub data: Map<String, Value>,
}

/// What `AddRecord` does with a key that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddMode {
    /// Replace the record (Make's "Overwrite an existing record": yes).
    Replace,
    /// Fail with a `DataError` (atomic insert-if-absent).
    InsertIfAbsent,
}

/// One condition of a record search: `{a: field, o: operator, b: value}`, Make's filter shape
/// with `a` naming a field of the structure (or `key`) and `b` already evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordCondition {
    pub a: String,
    pub o: String,
    #[serde(default)]
    pub b: Value,
}

/// How search results are ordered: a field (or `key`), ascending or descending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortBy {
    pub field: String,
    pub descending: bool,
}

/// A record search: OR of AND-groups of conditions (no groups: every record), an order (by
/// key when empty) and at most `limit` records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordQuery {
    pub filter: Vec<Vec<RecordCondition>>,
    pub sort: Vec<SortBy>,
    pub limit: Option<usize>,
}

/// Where a module finds data stores and their records. Every method but
/// [`DataStores::resolve`] takes the store it resolved.
pub trait DataStores: Send + Sync {
    /// The store named or numbered `reference`. Unknown: an `InvalidConfigurationError`
    /// naming it.
    fn resolve<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<DataStore, ModuleError>>;

    /// The record under `key`, if any.
    fn get<'a>(
        &'a self,
        store: &'a DataStore,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Record>, ModuleError>>;

    /// Whether a record is stored under `key`.
    fn exists<'a>(
        &'a self,
        store: &'a DataStore,
        key: &'a str,
    ) -> BoxFuture<'a, Result<bool, ModuleError>>;

    /// Writes a record; `key: None` (or empty) generates one. With
    /// [`AddMode::InsertIfAbsent`] an existing key is a `DataError` and nothing changes.
    fn add<'a>(
        &'a self,
        store: &'a DataStore,
        key: Option<&'a str>,
        data: Map<String, Value>,
        mode: AddMode,
    ) -> BoxFuture<'a, Result<Record, ModuleError>>;

    /// Merges `data` into the record under `key` (fields not given keep their values). A
    /// missing record is created when `insert_missing`, else it is a `DataError`.
    fn update<'a>(
        &'a self,
        store: &'a DataStore,
        key: &'a str,
        data: Map<String, Value>,
        insert_missing: bool,
    ) -> BoxFuture<'a, Result<Record, ModuleError>>;

    /// Deletes the record under `key`; whether there was one.
    fn delete<'a>(
        &'a self,
        store: &'a DataStore,
        key: &'a str,
    ) -> BoxFuture<'a, Result<bool, ModuleError>>;

    /// Deletes every record; how many there were.
    fn delete_all<'a>(&'a self, store: &'a DataStore) -> BoxFuture<'a, Result<u64, ModuleError>>;

    /// The records matching `query`, in its order.
    fn search<'a>(
        &'a self,
        store: &'a DataStore,
        query: &'a RecordQuery,
    ) -> BoxFuture<'a, Result<Vec<Record>, ModuleError>>;

    /// How many records the store holds.
    fn count<'a>(&'a self, store: &'a DataStore) -> BoxFuture<'a, Result<u64, ModuleError>>;
}

/// What the layer that provides data stores inserts into an execution's extensions.
pub type DataStoresHandle = Arc<dyn DataStores>;

/// The data store reference of a module's `parameters`: `datastore` as text (Make writes a
/// number, the store's id), `None` when absent or empty.
pub fn reference(parameters: &Map<String, Value>) -> Option<String> {
    match parameters.get(DATASTORE_PARAMETER)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads a data structure written `name:type,name:type!,…` (`!` marks a required field; a
/// name without a type is `text`). Each problem names the entry.
pub fn parse_fields(spec: &str) -> Result<Vec<Field>, String> {
    let mut fields: Vec<Field> = Vec::new();
    for (i, entry) in spec.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let (name, kind) = entry.split_once(':').unwrap_or((entry, "text"));
        let (kind, required) = match kind.trim().strip_suffix('!') {
            Some(kind) => (kind, true),
            None => (kind, false),
        };
        let name = name.trim();
        let kind = FieldKind::parse(kind).ok_or_else(|| {
            format!(
                "field {} ({entry:?}): unknown type {:?}, expected one of {}",
                i + 1,
                kind.trim(),
                FieldKind::ALL.map(FieldKind::name).join(", ")
            )
        })?;
        fields.push(Field {
            name: name.to_string(),
            kind,
            required,
        });
    }
    check_fields(&fields)?;
    Ok(fields)
}

/// Refuses a structure with an empty, oversized, reserved or repeated field name.
pub fn check_fields(fields: &[Field]) -> Result<(), String> {
    for (i, field) in fields.iter().enumerate() {
        let name = &field.name;
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(format!(
                "field {}: a name must be 1 to 100 printable characters",
                i + 1
            ));
        }
        if name == "key" {
            return Err(format!(
                "field {} \"key\": the name is the record key's own",
                i + 1
            ));
        }
        if fields[..i].iter().any(|f| &f.name == name) {
            return Err(format!("field \"{name}\" is defined twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reference_reads_names_and_ids() {
        let p = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            reference(&p(json!({"datastore": " seen "}))).as_deref(),
            Some("seen")
        );
        assert_eq!(
            reference(&p(json!({"datastore": 148248}))).as_deref(),
            Some("148248")
        );
        assert_eq!(reference(&p(json!({"datastore": ""}))), None);
        assert_eq!(reference(&p(json!({}))), None);
    }

    #[test]
    fn fields_are_parsed_with_types_and_required_marks() {
        let fields = parse_fields("email:text!, count:number,seen:date,tags:array,raw").unwrap();
        assert_eq!(fields.len(), 5);
        assert_eq!(fields[0].kind, FieldKind::Text);
        assert!(fields[0].required);
        assert_eq!(fields[1].kind, FieldKind::Number);
        assert_eq!(fields[2].kind, FieldKind::Date);
        assert_eq!(fields[3].kind, FieldKind::Array);
        assert_eq!(fields[4].kind, FieldKind::Text);
        let err = parse_fields("a:text,b:nubmer").unwrap_err();
        assert!(
            err.contains("\"nubmer\"") && err.contains("field 2"),
            "{err}"
        );
        assert!(parse_fields("a,a").unwrap_err().contains("twice"));
        assert!(parse_fields("key:text").is_err());
        assert!(parse_fields("").unwrap().is_empty());
    }
}
