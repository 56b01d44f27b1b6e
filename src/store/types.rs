//! The typed rows and enums of the store's public API. Status and source enums are stored as
//! lowercase text; reading an unknown value is a [`StoreError::Corrupt`], never a panic.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

use super::{Result, StoreError};

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored (and serialised) text.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = StoreError;

            /// Parses the stored text; anything else is [`StoreError::InvalidInput`].
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(StoreError::InvalidInput {
                        what: $what,
                        reason: format!("expected one of: {}", [$($text),+].join(", ")),
                    }),
                }
            }
        }
    };
}

text_enum!(
    /// Where an execution is in its life. `queued` and `running` can change; the others are
    /// terminal and never change again.
    ExecutionStatus, "execution status" {
        Queued => "queued",
        Running => "running",
        Success => "success",
        Error => "error",
        /// Finished with at least one bundle parked as an incomplete execution.
        Incomplete => "incomplete",
    }
);

text_enum!(
    /// How an execution ended: the statuses [`crate::store::Store::finish_execution`] accepts.
    FinalStatus, "final status" {
        Success => "success",
        Error => "error",
        Incomplete => "incomplete",
    }
);

text_enum!(
    /// What started an execution.
    ExecutionSource, "execution source" {
        Webhook => "webhook",
        Schedule => "schedule",
        Manual => "manual",
        /// A retry of an incomplete execution.
        Retry => "retry",
    }
);

text_enum!(
    /// Where an incomplete execution is: waiting for a retry, resolved, or given up.
    IncompleteStatus, "incomplete execution status" {
        Pending => "pending",
        Resolved => "resolved",
        Failed => "failed",
    }
);

impl ExecutionStatus {
    /// Whether the status can no longer change.
    pub fn is_terminal(self) -> bool {
        !matches!(self, ExecutionStatus::Queued | ExecutionStatus::Running)
    }
}

impl From<FinalStatus> for ExecutionStatus {
    fn from(status: FinalStatus) -> ExecutionStatus {
        match status {
            FinalStatus::Success => ExecutionStatus::Success,
            FinalStatus::Error => ExecutionStatus::Error,
            FinalStatus::Incomplete => ExecutionStatus::Incomplete,
        }
    }
}

/// Parses a stored enum value; an unknown one means the database holds data this version
/// cannot read.
pub(crate) fn parse_stored<T: FromStr>(what: &'static str, text: &str) -> Result<T> {
    text.parse()
        .map_err(|_| StoreError::corrupt(what, "unknown value"))
}

/// Reads a stored non-negative integer as `u32`.
pub(crate) fn stored_u32(what: &'static str, n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| StoreError::corrupt(what, format!("{n} is out of range")))
}

/// Reads a stored non-negative integer as `u64`.
pub(crate) fn stored_u64(what: &'static str, n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| StoreError::corrupt(what, format!("{n} is out of range")))
}

/// Writes a `u64` into a signed 64-bit column.
pub(crate) fn to_i64(what: &'static str, n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::InvalidInput {
        what,
        reason: format!("{n} does not fit a 64-bit signed integer"),
    })
}

/// A scenario's metadata. The blueprint of a version is in [`ScenarioVersion`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScenarioRow {
    pub id: String,
    pub name: String,
    /// The current version: what new executions run.
    pub version: u32,
    pub active: bool,
    /// Why Switchyard turned the scenario off (`maxErrors` consecutive errors); `None` while
    /// it is active or when a person turned it off.
    pub deactivated_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One version of a scenario's blueprint, kept as the exact text submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScenarioVersion {
    pub scenario_id: String,
    pub version: u32,
    pub blueprint: String,
    pub created_at: i64,
}

/// A version in a scenario's history, without its blueprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub version: u32,
    pub created_at: i64,
}

/// A webhook endpoint of one trigger module of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRow {
    /// 64 hex characters; the secret part of the hook URL. Not `Serialize` on purpose.
    pub id: String,
    pub scenario_id: String,
    pub module_id: u32,
    /// The current version of its scenario: what a delivery now would run.
    pub scenario_version: u32,
    /// The module is still in the scenario (set by `ensure_hook`, cleared by `retire_hooks`).
    pub attached: bool,
    /// The hook accepts deliveries: it is attached and its scenario is active.
    pub active: bool,
    pub created_at: i64,
    /// What the instant trigger's `attach` returned when the scenario was activated, kept for
    /// its `detach`; `None` while nothing is registered on the service.
    pub attachment: Option<serde_json::Value>,
}

/// What [`crate::store::Store::create_execution`] needs.
#[derive(Debug, Clone, Copy)]
pub struct NewExecution<'a> {
    pub scenario_id: &'a str,
    pub version: u32,
    pub source: ExecutionSource,
    /// The trigger's payload (webhook body, poll bundle, manual input).
    pub payload: Option<&'a Value>,
}

/// One execution, with its documents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Execution {
    pub id: String,
    pub scenario_id: String,
    /// The scenario version it ran (or will run).
    pub version: u32,
    pub status: ExecutionStatus,
    pub source: ExecutionSource,
    pub payload: Option<Value>,
    pub operations: u64,
    pub cycles: u32,
    pub report: Option<Value>,
    pub error: Option<Value>,
    /// How many times a worker claimed it (1 on a first run; more after crashes).
    pub attempt: u32,
    pub worker_id: Option<String>,
    pub created_at: i64,
    /// When the latest claim started it.
    pub started_at: Option<i64>,
    /// The latest sign of life from its worker (claim or heartbeat).
    pub heartbeat_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// An execution without its payload and report, for listings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionSummary {
    pub id: String,
    pub scenario_id: String,
    pub version: u32,
    pub status: ExecutionStatus,
    pub source: ExecutionSource,
    pub operations: u64,
    pub cycles: u32,
    pub error: Option<Value>,
    pub attempt: u32,
    pub worker_id: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub heartbeat_at: Option<i64>,
    pub finished_at: Option<i64>,
}

impl ExecutionSummary {
    /// The cursor that lists the executions after this one.
    pub fn cursor(&self) -> ExecutionCursor {
        ExecutionCursor {
            created_at: self.created_at,
            id: self.id.clone(),
        }
    }
}

/// How an execution ended: what [`crate::store::Store::finish_execution`] records.
#[derive(Debug, Clone, Copy)]
pub struct ExecutionOutcome<'a> {
    pub status: FinalStatus,
    pub operations: u64,
    pub cycles: u32,
    pub report: Option<&'a Value>,
    pub error: Option<&'a Value>,
    /// A polling trigger's state change, committed in the same transaction, only when this
    /// call is the one that finishes the execution.
    pub trigger: Option<TriggerStateChange<'a>>,
}

/// One execution to finish in [`crate::store::WriteTx::finish_executions`], with the module
/// outputs (and their summary) to store if it is the one that finishes it.
#[derive(Debug, Clone, Copy)]
pub struct ExecutionFinish<'a> {
    pub id: &'a str,
    pub outcome: ExecutionOutcome<'a>,
    pub module_data: &'a super::ModuleData,
}

/// A polling trigger's progress, as [`crate::store::Store::commit_trigger_state`] takes it:
/// a new cursor (`None` keeps the stored one) and ids to add to the seen list, which keeps
/// the newest `cap`.
#[derive(Debug, Clone, Copy)]
pub struct TriggerStateChange<'a> {
    pub scenario_id: &'a str,
    /// The trigger's stable identity ([`crate::scenario::Scenario::trigger_key`]).
    pub key: &'a str,
    pub cursor: Option<&'a Value>,
    pub new_seen_ids: &'a [String],
    pub cap: usize,
    /// The generation of the state the poll read (0 when there was none): the change
    /// applies only if no reset came since.
    pub generation: i64,
}

/// A position in the newest-first list of executions: list what comes after it.
/// Its text form (`Display`/`FromStr`) is `CREATED_AT-ID`, opaque to API clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionCursor {
    pub created_at: i64,
    pub id: String,
}

impl fmt::Display for ExecutionCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.created_at, self.id)
    }
}

impl FromStr for ExecutionCursor {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = || StoreError::InvalidInput {
            what: "execution cursor",
            reason: "expected CREATED_AT-ID".into(),
        };
        let (created_at, id) = s.rsplit_once('-').ok_or_else(invalid)?;
        let created_at = created_at.parse().map_err(|_| invalid())?;
        if !super::is_id(id) {
            return Err(invalid());
        }
        Ok(ExecutionCursor {
            created_at,
            id: id.to_string(),
        })
    }
}

/// Which executions [`crate::store::Store::list_executions`] returns, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionFilter {
    pub scenario_id: Option<String>,
    pub status: Option<ExecutionStatus>,
    /// At most this many (1 to [`ExecutionFilter::MAX_LIMIT`]; 0 means the default).
    pub limit: u32,
    /// Only executions after this position in the list.
    pub before: Option<ExecutionCursor>,
}

impl ExecutionFilter {
    /// The page size when `limit` is 0.
    pub const DEFAULT_LIMIT: u32 = 50;
    /// The largest page.
    pub const MAX_LIMIT: u32 = 1000;
}

impl Default for ExecutionFilter {
    fn default() -> Self {
        ExecutionFilter {
            scenario_id: None,
            status: None,
            limit: ExecutionFilter::DEFAULT_LIMIT,
            before: None,
        }
    }
}

/// One module output to record with an execution.
#[derive(Debug, Clone, Copy)]
pub struct ModuleEntry<'a> {
    pub module_id: u32,
    pub output: &'a Value,
}

/// One recorded module output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleRecord {
    /// Position in the execution, from 0, in the order appended.
    pub seq: u32,
    pub module_id: u32,
    /// The output (or, read by [`crate::store::Store::input_page`], the input), or
    /// `{"__truncated__": true, "bytes": N}` when it was larger than the cap.
    pub output: Value,
    pub truncated: bool,
}

/// What the engine counted for one module of an execution (its `Report::stats`), the part of
/// a [`ModuleSummary`] the store cannot count itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleCounts {
    pub module_id: u32,
    /// Bundles the module ran on.
    pub runs: u64,
    /// Output bundles it produced (stored or not).
    pub bundles: u64,
    pub errors: u64,
    /// Bundles its filter stopped.
    pub filtered: u64,
}

/// What an execution's history holds of one module: the engine's counts and what of its
/// output was stored. `omitted` is `bundles - stored` (bundles left out of the log or the
/// store by a cap, or all of them for a confidential scenario); `truncated` counts stored
/// outputs replaced by the truncation marker (over the byte cap).
///
/// The engine's counts are `None` only for an execution whose summary was not recorded (one
/// still running, or finished before summaries existed): its summary is then what the
/// stored rows say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ModuleSummary {
    pub module: u32,
    pub runs: Option<u64>,
    pub bundles: Option<u64>,
    pub stored: u64,
    pub omitted: Option<u64>,
    pub errors: Option<u64>,
    pub filtered: Option<u64>,
    pub truncated: u64,
    /// Inputs of its first operations stored (none before inputs were recorded).
    #[serde(default)]
    pub inputs: u64,
}

/// One page of a module's stored outputs ([`crate::store::Store::module_page`]) or inputs
/// ([`crate::store::Store::input_page`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ModulePage {
    /// The module's stored outputs in all.
    pub total: u64,
    /// The outputs of the page, in order.
    pub records: Vec<ModuleRecord>,
}

/// The answer to a webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The delivery was new; its execution is queued.
    Accepted { execution_id: String },
    /// The key was seen before; nothing was stored. `execution_id` is the first delivery's.
    Duplicate { execution_id: String },
}

impl Delivery {
    /// The execution the delivery belongs to.
    pub fn execution_id(&self) -> &str {
        match self {
            Delivery::Accepted { execution_id } | Delivery::Duplicate { execution_id } => {
                execution_id
            }
        }
    }
}

/// A polling trigger's memory: where it stopped and the ids it has seen lately.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriggerState {
    pub cursor: Option<Value>,
    /// Oldest first; at most the cap given to `commit_trigger_state`.
    pub seen_ids: Vec<String>,
    pub updated_at: i64,
    /// How many resets emptied this state ([`crate::store::Store::reset_trigger_state`]).
    pub generation: i64,
}

/// What [`crate::store::Store::insert_incomplete`] needs.
#[derive(Debug, Clone, Copy)]
pub struct NewIncomplete<'a> {
    pub execution_id: &'a str,
    pub scenario_id: &'a str,
    pub version: u32,
    /// The module that failed, where a retry resumes.
    pub module_id: u32,
    pub bundle: &'a Value,
    pub error: Option<&'a Value>,
    /// Break's `{retry, count, interval}` settings, if any.
    pub retry: Option<&'a Value>,
    /// When an automatic retry is due; `None` for manual replay only.
    pub next_attempt_at: Option<i64>,
}

/// A bundle parked for a later retry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncompleteExecution {
    pub id: String,
    pub execution_id: String,
    pub scenario_id: String,
    pub version: u32,
    pub module_id: u32,
    pub bundle: Value,
    pub error: Option<Value>,
    pub retry: Option<Value>,
    pub attempts: u32,
    pub next_attempt_at: Option<i64>,
    pub status: IncompleteStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_text() {
        for s in ExecutionStatus::ALL {
            assert_eq!(s.as_str().parse::<ExecutionStatus>().unwrap(), *s);
        }
        for s in ExecutionSource::ALL {
            assert_eq!(s.as_str().parse::<ExecutionSource>().unwrap(), *s);
        }
        for s in IncompleteStatus::ALL {
            assert_eq!(s.as_str().parse::<IncompleteStatus>().unwrap(), *s);
        }
        for s in FinalStatus::ALL {
            let status = ExecutionStatus::from(*s);
            assert_eq!(status.as_str(), s.as_str());
            assert!(status.is_terminal());
        }
        assert!(!ExecutionStatus::Queued.is_terminal());
        assert!(!ExecutionStatus::Running.is_terminal());
        assert!("Queued".parse::<ExecutionStatus>().is_err());
        let err = parse_stored::<ExecutionStatus>("execution status", "paused").unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn cursor_round_trips_and_rejects_junk() {
        let c = ExecutionCursor {
            created_at: 1_700_000_000_123,
            id: "0123456789abcdef0123456789abcdef".into(),
        };
        assert_eq!(c.to_string().parse::<ExecutionCursor>().unwrap(), c);
        let negative = ExecutionCursor {
            created_at: -5,
            ..c.clone()
        };
        assert_eq!(
            negative.to_string().parse::<ExecutionCursor>().unwrap(),
            negative
        );
        for junk in ["", "12", "x-0123456789abcdef0123456789abcdef", "12-zz"] {
            assert!(junk.parse::<ExecutionCursor>().is_err(), "{junk}");
        }
    }

    #[test]
    fn integer_conversions_refuse_out_of_range() {
        assert_eq!(stored_u32("n", 7).unwrap(), 7);
        assert!(stored_u32("n", -1).is_err());
        assert!(stored_u32("n", i64::from(u32::MAX) + 1).is_err());
        assert!(stored_u64("n", -1).is_err());
        assert!(to_i64("n", u64::MAX).is_err());
        assert_eq!(to_i64("n", 5).unwrap(), 5);
    }
}
