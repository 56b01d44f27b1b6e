//! What a module may know about the execution it runs in: built once per execution by
//! whoever starts it (the runner, `switchyard run`) and handed to every module call through
//! [`Invocation::context`](super::Invocation::context), so a module never re-reads raw
//! blueprint or payload JSON to find it.
//!
//! [`Extensions`] carries services of higher layers (a connections handle, later) by type,
//! without this layer knowing them: the layer that provides one inserts it, the module that
//! needs it asks for its type.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// The execution a module call belongs to.
#[derive(Debug, Clone, Default)]
pub struct ExecutionContext {
    pub execution_id: String,
    /// The stored scenario's id (`None` for `switchyard run FILE`).
    pub scenario_id: Option<String>,
    pub extensions: Extensions,
}

impl ExecutionContext {
    /// A context for execution `execution_id` with no scenario id and no extensions.
    pub fn new(execution_id: impl Into<String>) -> Self {
        ExecutionContext {
            execution_id: execution_id.into(),
            ..ExecutionContext::default()
        }
    }
}

/// The secret values an execution revealed to its bundles (an access token from
/// `tokens:GetAccessToken`) or sent with its requests (every value of the connections its
/// modules authenticated with): the runner and `switchyard run` replace each of them, in every
/// spelling ([`super::scrub`]), by `[redacted]` in everything they store or print about the
/// execution, so a token a scenario needed to read, or an API echoed, never reaches its
/// history. One per execution, shared by its module calls.
#[derive(Clone, Default)]
pub struct Redactions(Arc<std::sync::Mutex<Vec<String>>>);

impl std::fmt::Debug for Redactions {
    /// The count only: the values are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.0.lock().map(|s| s.len()).unwrap_or_default();
        write!(f, "Redactions({count} value(s))")
    }
}

impl Redactions {
    /// Adds a value to hide (values shorter than 4 characters would hide too much text and
    /// are too short to be secrets).
    pub fn add(&self, secret: &str) {
        if secret.chars().count() < super::scrub::MIN_SECRET_CHARS {
            return;
        }
        let mut secrets = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !secrets.iter().any(|s| s == secret) {
            secrets.push(secret.to_string());
        }
    }

    /// The values to hide, longest first (so a secret containing another is hidden whole).
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets
    }
}

/// Values keyed by their type; cheap to clone (the values are shared).
#[derive(Clone, Default)]
pub struct Extensions(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl Extensions {
    /// Adds `value`, replacing any earlier value of the same type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// The value of type `T`, if one was inserted.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>())?.downcast_ref()
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Extensions({} value(s))", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Handle(u32);

    #[test]
    fn extensions_are_found_by_type() {
        let mut extensions = Extensions::default();
        assert!(extensions.get::<Handle>().is_none());
        extensions.insert(Handle(1));
        extensions.insert(Handle(2));
        extensions.insert(String::from("other"));
        assert_eq!(extensions.get::<Handle>(), Some(&Handle(2)));
        assert_eq!(
            extensions.get::<String>().map(String::as_str),
            Some("other")
        );
        let copy = extensions.clone();
        assert_eq!(copy.get::<Handle>(), Some(&Handle(2)));
    }
}
