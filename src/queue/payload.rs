//! What an execution runs on: its trigger's bundle, or a parked bundle to resume. It is
//! stored as the execution's `payload` (JSON) when the execution is created and read back by
//! the runner, whichever process that is.
//!
//! The stored shape is kept as it has always been, so executions already in a database run
//! as before: a trigger's payload is the bundle itself (any JSON value; none or `null`: the
//! trigger reads its own input), and a resume is `{"resume": {"incomplete", "module",
//! "bundle"}}` on an execution whose source is `retry` (a webhook body that happens to have a
//! `resume` field stays a webhook body). A resume that cannot be read is an error naming the
//! field, never a run from a default module.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::store::ExecutionSource;

/// What an execution runs on.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutionPayload {
    /// The trigger's bundle: a webhook body, a "run now" input; `None`: the trigger reads
    /// its own (a polling trigger, a schedule without input).
    Trigger(Option<Value>),
    /// A bundle parked as an incomplete execution, resumed at the module that failed.
    Resume(ResumePoint),
}

/// Where a parked bundle resumes, and with what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumePoint {
    /// The incomplete execution this resumes, resolved when the run succeeds (`None`: it
    /// resolves nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
    /// The module that failed, where the flow resumes.
    pub module: u32,
    /// Outputs of the modules before it, by module id.
    pub bundle: Map<String, Value>,
}

/// The stored form of [`ExecutionPayload::Resume`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored<T> {
    resume: T,
}

/// A stored payload that cannot be read as what its execution runs on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the execution's payload cannot be read: {path}: {reason}")]
pub struct PayloadError {
    /// Where in the payload, e.g. `resume.module`.
    pub path: String,
    pub reason: String,
}

impl ExecutionPayload {
    /// The JSON to store as the execution's payload.
    pub fn to_stored(&self) -> Option<Value> {
        match self {
            ExecutionPayload::Trigger(bundle) => bundle.clone(),
            ExecutionPayload::Resume(point) => serde_json::to_value(Stored { resume: point }).ok(),
        }
    }

    /// Reads the payload stored with an execution from `source` (taking it: a webhook's
    /// bundle may be large, and is not copied).
    pub fn from_stored(
        source: ExecutionSource,
        stored: Option<Value>,
    ) -> Result<ExecutionPayload, PayloadError> {
        match stored {
            None | Some(Value::Null) => Ok(ExecutionPayload::Trigger(None)),
            Some(value)
                if source == ExecutionSource::Retry
                    && value.as_object().is_some_and(|o| o.contains_key("resume")) =>
            {
                let stored: Stored<ResumePoint> =
                    serde_path_to_error::deserialize(value).map_err(|e| PayloadError {
                        path: e.path().to_string(),
                        reason: e.inner().to_string(),
                    })?;
                Ok(ExecutionPayload::Resume(stored.resume))
            }
            Some(value) => Ok(ExecutionPayload::Trigger(Some(value))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(source: ExecutionSource, stored: Value) -> Result<ExecutionPayload, PayloadError> {
        ExecutionPayload::from_stored(source, Some(stored))
    }

    #[test]
    fn payloads_stored_before_keep_their_meaning() {
        // As `retry::resume` wrote it before the payload was typed.
        let old = json!({"resume": {"incomplete": "abc", "module": 2, "bundle": {"1": {"n": 1}}}});
        let point = ResumePoint {
            incomplete: Some("abc".into()),
            module: 2,
            bundle: json!({"1": {"n": 1}}).as_object().cloned().unwrap(),
        };
        assert_eq!(
            read(ExecutionSource::Retry, old.clone()),
            Ok(ExecutionPayload::Resume(point.clone()))
        );
        assert_eq!(
            ExecutionPayload::Resume(point).to_stored(),
            Some(old.clone())
        );
        // Only a retry resumes: a webhook body with a `resume` field is a body.
        assert_eq!(
            read(ExecutionSource::Webhook, old.clone()),
            Ok(ExecutionPayload::Trigger(Some(old)))
        );
        assert_eq!(
            read(ExecutionSource::Retry, json!({"order": 1})),
            Ok(ExecutionPayload::Trigger(Some(json!({"order": 1}))))
        );
        for none in [None, Some(Value::Null)] {
            assert_eq!(
                ExecutionPayload::from_stored(ExecutionSource::Schedule, none),
                Ok(ExecutionPayload::Trigger(None))
            );
        }
        assert_eq!(ExecutionPayload::Trigger(None).to_stored(), None);
    }

    #[test]
    fn a_malformed_resume_names_what_is_wrong() {
        let cases = [
            (
                json!({"resume": {"module": "two", "bundle": {}}}),
                "resume.module",
            ),
            (
                json!({"resume": {"module": -1, "bundle": {}}}),
                "resume.module",
            ),
            (json!({"resume": {"bundle": {}}}), "resume"),
            (
                json!({"resume": {"module": 2, "bundle": [1]}}),
                "resume.bundle",
            ),
            (json!({"resume": 7}), "resume"),
            (
                json!({"resume": {"module": 2, "bundle": {}}, "extra": 1}),
                "extra",
            ),
        ];
        for (stored, path) in cases {
            let error = read(ExecutionSource::Retry, stored.clone()).unwrap_err();
            assert_eq!(error.path, path, "{stored}: {error}");
            assert!(
                error
                    .to_string()
                    .starts_with("the execution's payload cannot be read"),
                "{error}"
            );
        }
    }
}
