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

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::{ErrorKind, ModuleError};

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

/// The cursor of a trigger whose items carry dates (RSS items, an app's `trigger.date`): the
/// newest date emitted and the ids emitted at exactly that date (at most [`SEEN_IDS_CAP`]),
/// so items that share the newest date are neither lost nor emitted twice. Stored as
/// `{"date": RFC 3339 | null, "ids": [...]}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DateCursor {
    pub date: Option<DateTime<Utc>>,
    pub ids: Vec<String>,
}

impl DateCursor {
    /// Reads a stored cursor; anything else is an `InconsistencyError` saying the state is
    /// not `what` (e.g. "an RSS cursor") and how to start again.
    pub fn from_value(value: &Value, what: &str) -> Result<DateCursor, ModuleError> {
        let corrupt = || {
            ModuleError::new(
                ErrorKind::InconsistencyError,
                format!(
                    "the stored trigger state is not {what}; reset the trigger \
                     (switchyard scenarios reset-trigger) to start again"
                ),
            )
        };
        let map = value.as_object().ok_or_else(corrupt)?;
        let date = match map.get("date") {
            Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                DateTime::parse_from_rfc3339(s)
                    .map_err(|_| corrupt())?
                    .with_timezone(&Utc),
            ),
            _ => return Err(corrupt()),
        };
        let ids = match map.get("ids") {
            Some(v @ Value::Array(_)) => {
                serde_json::from_value(v.clone()).map_err(|_| corrupt())?
            }
            _ => return Err(corrupt()),
        };
        Ok(DateCursor { date, ids })
    }

    pub fn to_value(&self) -> Value {
        let date = self
            .date
            .map(|d| d.to_rfc3339_opts(SecondsFormat::Millis, true));
        json!({"date": date, "ids": self.ids})
    }

    /// The cursor after emitting item `id` dated `date` (an undated item leaves it as is).
    pub fn advance(&mut self, id: &str, date: Option<DateTime<Utc>>) {
        let Some(date) = date else { return };
        match self.date {
            Some(current) if current > date => {}
            Some(current) if current == date => self.ids.push(id.to_string()),
            _ => {
                self.date = Some(date);
                self.ids = vec![id.to_string()];
            }
        }
        let excess = self.ids.len().saturating_sub(SEEN_IDS_CAP);
        self.ids.drain(..excess);
    }
}

/// A trigger's bundle limit per cycle: `parameters.maxResults` (RSS, webhooks),
/// `parameters.limit` (most app triggers) or `parameters.maxRecords` (Airtable's Watch
/// Records), a whole number from 1 to [`MAX_LIMIT`];
/// [`DEFAULT_LIMIT`] when neither is set. The error names the field.
pub fn limit(parameters: &Map<String, Value>) -> Result<usize, (String, String)> {
    let Some((name, value)) = ["maxResults", "limit", "maxRecords"]
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

    fn at(seconds: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(seconds, 0)
    }

    #[test]
    fn date_cursors_round_trip_and_refuse_foreign_state() {
        let mut cursor = DateCursor::default();
        cursor.advance("a", at(10));
        cursor.advance("b", at(20));
        cursor.advance("c", at(20));
        cursor.advance("old", at(5));
        cursor.advance("undated", None);
        assert_eq!(cursor.ids, ["b", "c"]);
        let value = cursor.to_value();
        assert_eq!(
            value,
            json!({"date": "1970-01-01T00:00:20.000Z", "ids": ["b", "c"]})
        );
        assert_eq!(DateCursor::from_value(&value, "a cursor").unwrap(), cursor);
        for bad in [
            json!(5),
            json!({"page": 3}),
            json!({"date": "soon", "ids": []}),
            json!({"date": null, "ids": [1]}),
            json!({"date": null}),
        ] {
            let err = DateCursor::from_value(&bad, "an RSS cursor").unwrap_err();
            assert_eq!(err.kind, ErrorKind::InconsistencyError);
            assert!(err.message.contains("not an RSS cursor"), "{}", err.message);
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
