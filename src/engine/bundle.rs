//! A bundle's ancestry: the outputs of the modules it passed through, as a persistent linked
//! list so that N output bundles share their common prefix instead of copying it. A frame
//! may carry the [`Held`] bytes of its output, given back to the execution's meter when the
//! last bundle that shares the frame is done.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use std::cell::OnceCell;

use super::budget::Held;
use super::system::SystemVariables;
use crate::expr::Scope;

struct Frame {
    id: u32,
    output: Arc<Value>,
    parent: Option<Arc<Frame>>,
    /// The output's bytes, counted while this frame lives (`None`: counted elsewhere — the
    /// log keeps it — or not at all).
    _held: Option<Held>,
}

/// The ancestry of one bundle; cloning is a reference-count increment.
#[derive(Clone, Default)]
pub struct Ancestry(Option<Arc<Frame>>);

impl Ancestry {
    /// This ancestry extended with module `id`'s output.
    pub fn with(&self, id: u32, output: Arc<Value>) -> Ancestry {
        self.with_held(id, output, None)
    }

    /// [`Ancestry::with`], the output's bytes counted for as long as the new frame lives.
    pub fn with_held(&self, id: u32, output: Arc<Value>, held: Option<Held>) -> Ancestry {
        Ancestry(Some(Arc::new(Frame {
            id,
            output,
            parent: self.0.clone(),
            _held: held,
        })))
    }

    /// The nearest output of module `id`.
    pub fn get(&self, id: u32) -> Option<&Value> {
        let mut frame = self.0.as_deref();
        while let Some(f) = frame {
            if f.id == id {
                return Some(&f.output);
            }
            frame = f.parent.as_deref();
        }
        None
    }

    /// The ancestry as it was before module `id` added its output (all of it if `id` is absent).
    pub fn before(&self, id: u32) -> Ancestry {
        let mut frame = self.0.as_ref();
        while let Some(f) = frame {
            if f.id == id {
                return Ancestry(f.parent.clone());
            }
            frame = f.parent.as_ref();
        }
        self.clone()
    }

    /// Every output by module id (oldest first), for storing a paused bundle.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut frames = Vec::new();
        let mut frame = self.0.as_deref();
        while let Some(f) = frame {
            frames.push(f);
            frame = f.parent.as_deref();
        }
        let mut map = Map::new();
        for f in frames.into_iter().rev() {
            map.insert(f.id.to_string(), (*f.output).clone());
        }
        map
    }

    /// Rebuilds an ancestry from [`Ancestry::to_map`]'s form.
    pub fn from_map(map: &Map<String, Value>) -> Ancestry {
        let mut ancestry = Ancestry::default();
        for (id, output) in map {
            if let Ok(id) = id.parse() {
                ancestry = ancestry.with(id, Arc::new(output.clone()));
            }
        }
        ancestry
    }
}

impl Drop for Ancestry {
    // Long chains are dropped iteratively so that a deep ancestry cannot overflow the stack.
    fn drop(&mut self) {
        let mut next = self.0.take();
        while let Some(frame) = next {
            match Arc::try_unwrap(frame) {
                Ok(mut f) => next = f.parent.take(),
                Err(_) => break,
            }
        }
    }
}

/// What an expression sees while one bundle is at one module.
pub struct BundleScope<'a> {
    pub ancestry: &'a Ancestry,
    pub execution_id: &'a str,
    pub timezone: chrono_tz::Tz,
    pub system: &'a SystemVariables,
    /// Operations run so far in the execution (`var.execution.operationsConsumed`).
    pub operations: u64,
    /// Bytes of module output produced so far (`var.execution.dataConsumed`).
    pub data_bytes: u64,
    /// The `var` object, built the first time an expression reads it.
    pub var: OnceCell<Value>,
}

impl Scope for BundleScope<'_> {
    fn module_output(&self, id: u32) -> Option<&Value> {
        self.ancestry.get(id)
    }
    fn named(&self, name: &str) -> Option<&Value> {
        match name {
            "var" => Some(
                self.var
                    .get_or_init(|| self.system.value(self.operations, self.data_bytes)),
            ),
            other => self.system.root(other),
        }
    }
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn timezone(&self) -> chrono_tz::Tz {
        self.timezone
    }
    fn execution_id(&self) -> Option<&str> {
        Some(self.execution_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nearest_output_wins_and_before_cuts() {
        let a = Ancestry::default()
            .with(1, Arc::new(json!({"x": 1})))
            .with(2, Arc::new(json!({"y": 2})));
        let b = a.with(1, Arc::new(json!({"x": 3})));
        assert_eq!(b.get(1), Some(&json!({"x": 3})));
        assert_eq!(b.before(1).get(1), Some(&json!({"x": 1})));
        assert_eq!(a.get(3), None);
        assert_eq!(Ancestry::from_map(&a.to_map()).to_map(), a.to_map());
    }

    #[test]
    fn held_bytes_are_given_back_when_the_last_bundle_sharing_them_is_done() {
        let meter = crate::engine::budget::Meter::default();
        let a = Ancestry::default().with_held(1, Arc::new(Value::Null), Some(meter.hold(100)));
        let routed = a.clone();
        let below = a.with(2, Arc::new(json!({"y": 2})));
        drop(a);
        drop(routed);
        assert_eq!(meter.held(), 100, "a bundle below still holds it");
        drop(below);
        assert_eq!(meter.held(), 0);
    }

    #[test]
    fn very_deep_ancestry_drops_without_overflow() {
        let mut a = Ancestry::default();
        for i in 0..200_000 {
            a = a.with(i, Arc::new(Value::Null));
        }
        drop(a);
    }
}
