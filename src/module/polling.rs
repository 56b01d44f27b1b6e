//! Polling-trigger state as the executor sees it: what a trigger module remembers between
//! executions (a cursor and the ids it has already emitted), what one poll returns, how many
//! bundles a poll may return (`maxResults`/`limit`), and what an execution hands back to be
//! committed.
//!
//! The executor threads the state through an execution's cycles: cycle k+1 polls with the
//! state cycle k produced. The engine's report carries the change of the cycles that
//! committed ([`TriggerCommit`]); a cycle that rolled back contributes nothing, so its items are
//! read again next time (Make "puts the epoch back"). The service stores the committed change
//! in the same transaction that finishes the execution.

use serde_json::{Map, Value};

/// How many seen ids are kept per trigger (the oldest are dropped first).
pub const SEEN_IDS_CAP: usize = 1000;
/// The limit of a trigger whose blueprint sets none: Make's documented default for triggers.
pub const DEFAULT_LIMIT: usize = 1;
/// The largest limit accepted (Make's pagination cap for polling triggers).
pub const MAX_LIMIT: usize = 3200;

/// What a polling trigger remembers between executions. Empty before its first commit and
/// after `scenarios reset-trigger`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriggerState {
    /// The module's own cursor, opaque to the engine and the store.
    pub cursor: Option<Value>,
    /// Ids already emitted, oldest first (at most [`SEEN_IDS_CAP`] as stored).
    pub seen_ids: Vec<String>,
}

impl TriggerState {
    /// True before the trigger's first committed poll.
    pub fn is_fresh(&self) -> bool {
        self.cursor.is_none() && self.seen_ids.is_empty()
    }

    /// The state after `change`: its cursor (when it sets one) and its ids appended.
    pub fn apply(&mut self, change: &TriggerCommit) {
        if let Some(cursor) = &change.cursor {
            self.cursor = Some(cursor.clone());
        }
        self.seen_ids.extend(change.new_seen_ids.iter().cloned());
    }
}

/// One poll's request: the state to read from and the most bundles to return.
#[derive(Debug, Clone, Copy)]
pub struct PollRequest<'a> {
    pub state: &'a TriggerState,
    pub limit: usize,
}

/// What one poll read.
#[derive(Debug, Clone, Default)]
pub struct Polled {
    /// The new items, oldest first, at most the request's limit.
    pub bundles: Vec<Value>,
    /// The change to the state once these bundles are processed.
    pub change: TriggerCommit,
    /// Whether more new items were left for the next cycle.
    pub more: bool,
}

/// A change to a trigger's state: a new cursor (`None` keeps the stored one) and ids to add to
/// the seen list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriggerCommit {
    pub cursor: Option<Value>,
    pub new_seen_ids: Vec<String>,
}

impl TriggerCommit {
    /// This change followed by `later`.
    pub fn then(&mut self, later: TriggerCommit) {
        if later.cursor.is_some() {
            self.cursor = later.cursor;
        }
        self.new_seen_ids.extend(later.new_seen_ids);
    }
}

/// A trigger's bundle limit per cycle: `parameters.maxResults` (RSS, webhooks) or
/// `parameters.limit` (most app triggers), a whole number from 1 to [`MAX_LIMIT`];
/// [`DEFAULT_LIMIT`] when neither is set. The error names the field.
pub fn limit(parameters: &Map<String, Value>) -> Result<usize, (String, String)> {
    let Some((name, value)) = ["maxResults", "limit"]
        .iter()
        .find_map(|k| parameters.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
    else {
        return Ok(DEFAULT_LIMIT);
    };
    let n = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if !s.trim().is_empty() => s.trim().parse::<f64>().ok(),
        Value::String(_) => return Ok(DEFAULT_LIMIT),
        _ => None,
    };
    match n {
        Some(n) if n.fract() == 0.0 && (1.0..=MAX_LIMIT as f64).contains(&n) => Ok(n as usize),
        _ => Err((
            format!("parameters.{name}"),
            format!("expected a whole number from 1 to {MAX_LIMIT}, got {value}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn limit_reads_max_results_or_limit() {
        assert_eq!(limit(&params(json!({}))), Ok(DEFAULT_LIMIT));
        assert_eq!(limit(&params(json!({"maxResults": 10}))), Ok(10));
        assert_eq!(limit(&params(json!({"maxResults": "7"}))), Ok(7));
        assert_eq!(limit(&params(json!({"limit": 2}))), Ok(2));
        assert_eq!(limit(&params(json!({"maxResults": ""}))), Ok(DEFAULT_LIMIT));
        for bad in [json!(0), json!(1.5), json!("x"), json!(true), json!(3201)] {
            let err = limit(&params(json!({"maxResults": bad}))).unwrap_err();
            assert_eq!(err.0, "parameters.maxResults");
        }
    }

    #[test]
    fn changes_compose() {
        let mut a = TriggerCommit {
            cursor: Some(json!(1)),
            new_seen_ids: vec!["a".into()],
        };
        a.then(TriggerCommit {
            cursor: None,
            new_seen_ids: vec!["b".into()],
        });
        assert_eq!(a.cursor, Some(json!(1)));
        a.then(TriggerCommit {
            cursor: Some(json!(2)),
            new_seen_ids: vec![],
        });
        assert_eq!(a.cursor, Some(json!(2)));
        assert_eq!(a.new_seen_ids, vec!["a", "b"]);
        let mut state = TriggerState::default();
        assert!(state.is_fresh());
        state.apply(&a);
        assert_eq!(state.cursor, Some(json!(2)));
        assert_eq!(state.seen_ids, vec!["a", "b"]);
    }
}
