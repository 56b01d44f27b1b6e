//! Make's data store modules (`datastore:*`): add/replace, update, get, check existence, delete,
//! delete all, search and count records of the store `parameters.datastore` names (by name or
//! id). The records live behind the execution's [`DataStoresHandle`] (the `store` layer, so
//! they survive restarts and are shared by every worker); this file reads the mapper as Make
//! writes it and shapes the outputs as Make does.
//!
//! Invariants: without a data stores handle (`switchyard run` with no `--data-dir`) every module
//! fails with an `InvalidConfigurationError` that says how to give one; an unknown store is an
//! `InvalidConfigurationError` naming the module and the reference; errors name the module.

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::fields::{flag, is_blank, is_dynamic, number, object, pick, text};
use crate::module::datastore::{
    self, AddMode, DataStore, DataStoresHandle, Record, RecordCondition, RecordQuery, SortBy,
};
use crate::module::{ErrorKind, Invocation, Module, ModuleError, ModuleKind};

/// What one `datastore:*` module does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Add,
    Update,
    Get,
    Exist,
    Delete,
    DeleteAll,
    Search,
    Count,
}

/// The module types served, Make's names (`SearchRecord` is what Make's exporter writes;
/// `SearchRecords` is accepted too).
pub(super) const MODULES: &[(&str, super::Constructor)] = &[
    ("datastore:AddRecord", |_| {
        std::sync::Arc::new(DataStoreModule(Operation::Add))
    }),
    ("datastore:UpdateRecord", |_| {
        std::sync::Arc::new(DataStoreModule(Operation::Update))
    }),
    ("datastore:GetRecord", |_| {
        std::sync::Arc::new(DataStoreModule(Operation::Get))
    }),
    ("datastore:ExistRecord", |_| {
        std::sync::Arc::new(DataStoreModule(Operation::Exist))
    }),
    ("datastore:DeleteRecord", |_| {
        std::sync::Arc::new(DataStoreModule(Operation::Delete))
    }),
    ("datastore:DeleteAllRecords", |_| {
        std::sync::Arc::new(DataStoreModule(Operation::DeleteAll))
    }),
    ("datastore:SearchRecord", |_| {
        std::sync::Arc::new(DataStoreModule(Operation::Search))
    }),
    ("datastore:SearchRecords", |_| {
        std::sync::Arc::new(DataStoreModule(Operation::Search))
    }),
    ("datastore:CountRecords", |_| {
        std::sync::Arc::new(DataStoreModule(Operation::Count))
    }),
];

/// One `datastore:*` module.
pub(crate) struct DataStoreModule(pub(crate) Operation);

impl Operation {
    fn needs_key(self) -> bool {
        matches!(
            self,
            Operation::Update | Operation::Get | Operation::Exist | Operation::Delete
        )
    }
}

impl Module for DataStoreModule {
    fn kind(&self) -> ModuleKind {
        match self.0 {
            Operation::Search => ModuleKind::Search,
            _ => ModuleKind::Action,
        }
    }

    fn references(&self, parameters: &Map<String, Value>) -> Vec<crate::module::Reference> {
        datastore::reference(parameters)
            .map(|reference| crate::module::Reference::DataStore {
                path: "parameters.datastore".into(),
                reference,
            })
            .into_iter()
            .collect()
    }

    fn check(&self, parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if datastore::reference(parameters).is_none() {
            problems.push((
                "parameters.datastore".to_string(),
                "is required: the name or id of a data store (switchyard datastores list)"
                    .to_string(),
            ));
        }
        let mapper = object(mapper);
        if self.0.needs_key() && is_blank(mapper.and_then(|m| m.get("key"))) {
            problems.push(("mapper.key".to_string(), "is required".to_string()));
        }
        if let Some(data) = mapper.and_then(|m| m.get("data"))
            && !data.is_null()
            && !data.is_object()
            && !is_dynamic(data)
        {
            problems.push((
                "mapper.data".to_string(),
                "must be a collection of the store's fields".to_string(),
            ));
        }
        if self.0 == Operation::Search
            && let Some(filter) = mapper.and_then(|m| m.get("filter"))
            && !is_dynamic(filter)
            && let Err(e) = read_filter(filter)
        {
            problems.push(("mapper.filter".to_string(), e));
        }
        problems
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async move {
            let module = invocation.module;
            let named = |e: ModuleError| ModuleError {
                message: format!("{module}: {}", e.message),
                ..e
            };
            let Some(stores) = invocation.context.extensions.get::<DataStoresHandle>() else {
                return Err(ModuleError::config(format!(
                    "{module}: data stores are kept in the database: run the scenario with \
                     --data-dir DIR or --database-url URL (or under switchyard serve/worker)"
                )));
            };
            let Some(reference) = datastore::reference(invocation.parameters) else {
                return Err(ModuleError::config(format!(
                    "{module}: parameters.datastore is required (a data store's name or id)"
                )));
            };
            let store = stores.resolve(&reference).await.map_err(named)?;
            run(self.0, stores, &store, &invocation)
                .await
                .map_err(named)
        })
    }
}

async fn run(
    operation: Operation,
    stores: &DataStoresHandle,
    store: &DataStore,
    invocation: &Invocation<'_>,
) -> Result<Vec<Value>, ModuleError> {
    let mapper = object(&invocation.mapper);
    let switch = |names: &[&'static str], default: bool| -> Result<bool, ModuleError> {
        match pick(mapper, names) {
            Some((name, value)) => flag(Some(value), default)
                .map_err(|e| ModuleError::data(format!("mapper.{name}: {e}"))),
            None => Ok(default),
        }
    };
    Ok(match operation {
        Operation::Add => {
            let key = optional_key(mapper);
            let mode = if switch(&["overwrite"], false)? {
                AddMode::Replace
            } else {
                AddMode::InsertIfAbsent
            };
            let record = stores
                .add(store, key.as_deref(), data(mapper)?, mode)
                .await?;
            vec![wrapped(record)]
        }
        Operation::Update => {
            let key = required_key(mapper)?;
            let insert_missing = switch(&["upsert", "insertMissing"], false)?;
            let record = stores
                .update(store, &key, data(mapper)?, insert_missing)
                .await?;
            vec![wrapped(record)]
        }
        Operation::Get => {
            let key = required_key(mapper)?;
            let wrap = switch(&["returnWrapped"], false)?;
            match stores.get(store, &key).await? {
                Some(record) if wrap => vec![wrapped(record)],
                Some(record) => vec![flat(record)],
                // Make outputs an empty bundle, so the route goes on with empty fields.
                None => vec![json!({})],
            }
        }
        Operation::Exist => {
            let key = required_key(mapper)?;
            vec![json!({"exist": stores.exists(store, &key).await?})]
        }
        Operation::Delete => {
            let key = required_key(mapper)?;
            stores.delete(store, &key).await?;
            vec![json!({})]
        }
        Operation::DeleteAll => {
            stores.delete_all(store).await?;
            vec![json!({})]
        }
        Operation::Count => vec![json!({"count": stores.count(store).await?})],
        Operation::Search => {
            let parameters = invocation.parameters;
            let filter = match mapper.and_then(|m| m.get("filter")) {
                Some(filter) => read_filter(filter)
                    .map_err(|e| ModuleError::data(format!("mapper.filter: {e}")))?,
                None => Vec::new(),
            };
            let sort = match mapper.and_then(|m| m.get("sort")) {
                Some(sort) => {
                    read_sort(sort).map_err(|e| ModuleError::data(format!("mapper.sort: {e}")))?
                }
                None => Vec::new(),
            };
            let limit =
                match pick(mapper, &["limit"]).or_else(|| pick(Some(parameters), &["limit"])) {
                    Some((_, value)) => number(Some(value))
                        .map_err(|e| ModuleError::data(format!("limit: {e}")))?
                        .filter(|n| *n >= 0.0)
                        .map(|n| n as usize),
                    None => None,
                };
            let continue_when_empty = match parameters.get("continueWhenNoRes") {
                Some(value) => flag(Some(value), false)
                    .map_err(|e| ModuleError::data(format!("parameters.continueWhenNoRes: {e}")))?,
                None => false,
            };
            let query = RecordQuery {
                filter,
                sort,
                limit: limit.filter(|l| *l > 0),
            };
            let found = stores.search(store, &query).await?;
            if found.is_empty() && continue_when_empty {
                vec![json!({})]
            } else {
                found.into_iter().map(wrapped).collect()
            }
        }
    })
}

/// `{key, data: {…}}`: the shape of a search result, of add/update, and of a wrapped get.
fn wrapped(record: Record) -> Value {
    json!({"key": record.key, "data": Value::Object(record.data)})
}

/// The record's fields plus `key`: a get's output.
fn flat(record: Record) -> Value {
    let mut out = record.data;
    out.insert("key".to_string(), Value::String(record.key));
    Value::Object(out)
}

fn key_text(mapper: Option<&Map<String, Value>>) -> Option<String> {
    match mapper?.get("key")? {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        other => Some(text(other).trim().to_string()),
    }
}

fn optional_key(mapper: Option<&Map<String, Value>>) -> Option<String> {
    key_text(mapper)
}

fn required_key(mapper: Option<&Map<String, Value>>) -> Result<String, ModuleError> {
    key_text(mapper).ok_or_else(|| {
        ModuleError::new(
            ErrorKind::DataError,
            "mapper.key: is required (it was empty)",
        )
    })
}

/// The record's fields from `mapper.data` (absent or empty: none).
fn data(mapper: Option<&Map<String, Value>>) -> Result<Map<String, Value>, ModuleError> {
    match mapper.and_then(|m| m.get("data")) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Map::new()),
        Some(Value::Object(data)) => Ok(data.clone()),
        Some(other) => Err(ModuleError::data(format!(
            "mapper.data: expected a collection of the store's fields, got {}",
            kind_of(other)
        ))),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "a collection",
    }
}

/// Make's filter shape, `[[{a, o, b}]]` (OR of AND-groups), with `a` a field name.
fn read_filter(value: &Value) -> Result<Vec<Vec<RecordCondition>>, String> {
    let groups = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(groups) => groups,
        other => return Err(format!("expected [[{{a, o, b}}]], got {}", kind_of(other))),
    };
    groups
        .iter()
        .enumerate()
        .map(|(g, group)| {
            let Value::Array(conditions) = group else {
                return Err(format!("[{g}]: expected an array of conditions"));
            };
            conditions
                .iter()
                .enumerate()
                .map(|(c, condition)| {
                    let at = format!("[{g}][{c}]");
                    let condition = condition
                        .as_object()
                        .ok_or_else(|| format!("{at}: expected {{a, o, b}}"))?;
                    let a = match condition.get("a") {
                        Some(Value::String(a)) if !a.trim().is_empty() => a.trim().to_string(),
                        _ => return Err(format!("{at}.a: expected a field name")),
                    };
                    let o = match condition.get("o") {
                        Some(Value::String(o)) if !o.is_empty() => o.clone(),
                        _ => return Err(format!("{at}.o: expected an operator")),
                    };
                    Ok(RecordCondition {
                        a,
                        o,
                        b: condition.get("b").cloned().unwrap_or(Value::Null),
                    })
                })
                .collect()
        })
        .collect()
}

/// The order of a search: `[{"key": field, "order": "asc"|"desc"}]` (`field` is accepted
/// for `key`).
fn read_sort(value: &Value) -> Result<Vec<SortBy>, String> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => return Err(format!("expected an array, got {}", kind_of(other))),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let item = item
                .as_object()
                .ok_or_else(|| format!("[{i}]: expected {{key, order}}"))?;
            let field = match pick(Some(item), &["key", "field"]) {
                Some((_, Value::String(f))) if !f.trim().is_empty() => f.trim().to_string(),
                _ => return Err(format!("[{i}].key: expected a field name")),
            };
            let descending = match item.get("order").and_then(Value::as_str) {
                None | Some("asc") | Some("") => false,
                Some("desc") => true,
                Some(other) => {
                    return Err(format!(
                        "[{i}].order: expected \"asc\" or \"desc\", got {other:?}"
                    ));
                }
            };
            Ok(SortBy { field, descending })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_reports_the_store_and_key() {
        let get = DataStoreModule(Operation::Get);
        let problems = get.check(&Map::new(), &json!({}));
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["parameters.datastore", "mapper.key"]);
        let params = json!({"datastore": 12}).as_object().unwrap().clone();
        assert!(get.check(&params, &json!({"key": "{{1.id}}"})).is_empty());
        let search = DataStoreModule(Operation::Search);
        let problems = search.check(&params, &json!({"filter": [[{"o": "exist"}]]}));
        assert_eq!(problems[0].0, "mapper.filter");
        assert!(problems[0].1.contains("[0][0].a"), "{problems:?}");
    }

    #[test]
    fn filter_and_sort_are_read_in_makes_shape() {
        let filter = read_filter(
            &json!([[{"a": "email", "o": "text:equal", "b": "x"}], [{"a": "n", "o": "exist"}]]),
        )
        .unwrap();
        assert_eq!(filter.len(), 2);
        assert_eq!(filter[1][0].b, Value::Null);
        let sort = read_sort(&json!([{"key": "n", "order": "desc"}])).unwrap();
        assert_eq!(
            sort,
            [SortBy {
                field: "n".into(),
                descending: true
            }]
        );
        assert!(read_sort(&json!([{"key": "n", "order": "up"}])).is_err());
    }
}
